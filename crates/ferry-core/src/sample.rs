//! Message samples: what was sent, kept for a while so an application owner
//! can be shown it. A tenant chooses the share of its accepted messages to
//! keep (none by default, for privacy); the headers of every refused message
//! are kept too. Samples leave the store when `samples.retention_days` have
//! passed, and never appear in logs.

use serde::{Deserialize, Serialize};

/// The most of one message a sample keeps: the headers whole (up to this),
/// then the body up to what is left. Longer content is cut and marked.
pub const MAX_SAMPLE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The queue id of an accepted message; a fresh id for a refused one.
    pub id: String,
    pub tenant: String,
    pub app: String,
    pub at_ms: u64,
    /// `accepted`, or the refusal's reason.
    pub outcome: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub headers: String,
    /// None for a refused message: only its headers are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The content was longer than [`MAX_SAMPLE_BYTES`] and was cut.
    pub truncated: bool,
}

/// What to sample of one message.
pub struct Sampled<'a> {
    pub id: String,
    pub tenant: &'a str,
    pub app: &'a str,
    pub at_ms: u64,
    pub outcome: &'a str,
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    pub content: &'a [u8],
    pub with_body: bool,
}

impl Sample {
    pub fn of(m: Sampled<'_>) -> Sample {
        let split = m
            .content
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(m.content.len(), |p| p + 2);
        let (headers, rest) = m.content.split_at(split);
        let headers_kept = headers.len().min(MAX_SAMPLE_BYTES);
        let body_room = MAX_SAMPLE_BYTES - headers_kept;
        let body = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let truncated = headers.len() > headers_kept || m.with_body && body.len() > body_room;
        Sample {
            id: m.id,
            tenant: m.tenant.to_string(),
            app: m.app.to_string(),
            at_ms: m.at_ms,
            outcome: m.outcome.to_string(),
            mail_from: m.mail_from.to_string(),
            recipients: m.recipients.to_vec(),
            headers: String::from_utf8_lossy(&headers[..headers_kept]).into_owned(),
            body: m
                .with_body
                .then(|| String::from_utf8_lossy(&body[..body.len().min(body_room)]).into_owned()),
            truncated,
        }
    }
}

/// Whether an accepted message is sampled, for a tenant keeping `percent`
/// of them: decided by the message's id (its random bits), so the share is
/// honoured without a random source to inject, and the same message is
/// always decided alike.
pub fn chosen(percent: u8, queue_id: &str) -> bool {
    if percent == 0 {
        return false;
    }
    let tail = queue_id.get(queue_id.len().saturating_sub(8)..).unwrap_or("");
    u32::from_str_radix(tail, 16).is_ok_and(|n| n % 100 < u32::from(percent.min(100)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(content: &[u8], with_body: bool) -> Sample {
        Sample::of(Sampled {
            id: "Q1".into(),
            tenant: "t",
            app: "a",
            at_ms: 5,
            outcome: "accepted",
            mail_from: "a@t.test",
            recipients: &["r@x.test".to_string()],
            content,
            with_body,
        })
    }

    #[test]
    fn headers_and_body_are_split_and_bounded() {
        let s = sampled(b"From: a@t.test\r\nSubject: hi\r\n\r\nbody\r\n", true);
        assert_eq!(s.headers, "From: a@t.test\r\nSubject: hi\r\n");
        assert_eq!(s.body.as_deref(), Some("body\r\n"));
        assert!(!s.truncated);
        assert_eq!(sampled(b"Subject: x\r\n\r\nsecret\r\n", false).body, None);
        let big = [b"Subject: big\r\n\r\n".as_slice(), &vec![b'x'; 2 * MAX_SAMPLE_BYTES]].concat();
        let s = sampled(&big, true);
        assert!(s.truncated);
        assert_eq!(
            s.headers.len() + s.body.as_deref().map_or(0, str::len),
            MAX_SAMPLE_BYTES
        );
    }

    #[test]
    fn the_share_is_honoured() {
        let ids: Vec<String> = (0..10_000).map(|_| crate::QueueId::generate().to_string()).collect();
        let kept = |percent| ids.iter().filter(|id| chosen(percent, id)).count();
        assert_eq!(kept(0), 0);
        assert_eq!(kept(100), ids.len());
        let ten = kept(10);
        assert!((800..1200).contains(&ten), "{ten} of 10000 at 10 %");
    }
}
