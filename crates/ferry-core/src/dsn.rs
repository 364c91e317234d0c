//! Delivery status notifications (RFC 3464): the bounce sent to the
//! envelope sender for recipients that failed. Never for a null sender, so
//! never a bounce of a bounce.

use crate::clock::rfc5322_date;
use crate::message::{QueueId, QueuedMessage, RecipientOutcome};

/// The DSN for `original`'s failed recipients, ready to enqueue; None when
/// nothing failed or the sender is null.
pub fn bounce(original: &QueuedMessage, reporting_mta: &str, now_ms: u64) -> Option<QueuedMessage> {
    let failed = original.failed();
    if original.mail_from.is_empty() || failed.is_empty() {
        return None;
    }
    let id = QueueId::generate();
    let boundary = format!("{id}/{reporting_mta}");
    let mut text = String::new();
    let mut status = String::new();
    for (rcpt, outcome) in &failed {
        let RecipientOutcome::Failed {
            status: code,
            reply,
            remote,
            ..
        } = outcome
        else {
            continue;
        };
        text.push_str(&format!("<{rcpt}>: {reply}\r\n"));
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {code}\r\n"
        ));
        if let Some(remote) = remote {
            status.push_str(&format!("Remote-MTA: dns; {remote}\r\n"));
        }
        status.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(reply)));
    }
    let content = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{reporting_mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at {reporting_mta}.\r\n\
         Your message {queue_id} could not be delivered to these recipients:\r\n\r\n{text}\
         \r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {reporting_mta}\r\n\
         X-Ferry-Queue-ID: {queue_id}\r\n\
         Arrival-Date: {arrival}\r\n{status}\
         \r\n--{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n{headers}\
         \r\n--{boundary}--\r\n",
        to = original.mail_from,
        date = rfc5322_date(now_ms),
        queue_id = original.id,
        arrival = rfc5322_date(original.received_ms),
        headers = String::from_utf8_lossy(header_section(&original.content)),
    );
    let mut bounce = QueuedMessage::notice(
        id,
        &original.tenant,
        &original.app,
        &original.mail_from,
        content.into_bytes(),
        now_ms,
    );
    bounce.eight_bit = original.eight_bit;
    Some(bounce)
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The header section, up to and including the blank line's first CRLF.
fn header_section(content: &[u8]) -> &[u8] {
    match content.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &content[..end + 2],
        None => content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_message(from: &str) -> QueuedMessage {
        let mut m = QueuedMessage {
            id: QueueId::generate(),
            tenant: "t".into(),
            app: "a".into(),
            mail_from: from.into(),
            recipients: vec!["ok@x.test".into(), "gone@x.test".into()],
            received_ms: 0,
            attempts: 1,
            eight_bit: false,
            smtputf8: false,
            outcomes: Default::default(),
            history: vec![],
            content: b"From: a@b.test\r\nSubject: hi\r\n\r\nsecret body\r\n".to_vec(),
            lease: None,
            return_paths: Vec::new(),
        };
        m.outcomes.insert(
            "ok@x.test".into(),
            RecipientOutcome::Delivered {
                at_ms: 1,
                reply: "250 ok".into(),
            },
        );
        m.outcomes.insert(
            "gone@x.test".into(),
            RecipientOutcome::Failed {
                at_ms: 1,
                status: "5.1.1".into(),
                reply: "550 5.1.1 no such user".into(),
                remote: Some("mx.x.test".into()),
            },
        );
        m
    }

    #[test]
    fn bounces_only_failed_recipients_with_headers_not_body() {
        let dsn = bounce(&failed_message("a@b.test"), "relay.test", 1_000).expect("a bounce");
        assert_eq!(dsn.mail_from, "");
        assert_eq!(dsn.recipients, ["a@b.test"]);
        let text = String::from_utf8(dsn.content).expect("utf8");
        assert!(text.contains("multipart/report; report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; gone@x.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Remote-MTA: dns; mx.x.test"));
        assert!(!text.contains("Final-Recipient: rfc822; ok@x.test"));
        assert!(text.contains("Subject: hi") && !text.contains("secret body"));
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn never_for_a_null_sender() {
        assert!(bounce(&failed_message(""), "relay.test", 1_000).is_none());
    }
}
