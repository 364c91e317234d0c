//! What happened to each recipient of each message, as the application
//! that sent it sees it: `accepted`, `delivered`, `deferred`, `bounced`,
//! `complained`, `suppressed`, `expired`.
//!
//! The store keeps one [`EventRecord`] per state change of a set of
//! recipients that share it (a delivery of 40 recipients in one SMTP
//! transaction is one record), written in the same atomic step as the
//! change; readers see one [`Event`] per recipient. A record's place in
//! its tenant's log (the store's cursor) and the recipient's index in the
//! record make the event's id, stable across reads and retries, which is
//! what webhook receivers de-duplicate by.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::message::{QueuedMessage, RecipientOutcome};

/// The state a recipient reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Taken in with `250` and queued.
    Accepted,
    /// The receiving server said `250`.
    Delivered,
    /// Not delivered yet; tried again at `next_attempt_ms`.
    Deferred,
    /// Refused for good: during delivery, or later by a report (DSN).
    Bounced,
    /// The recipient reported the message as unwanted (ARF).
    Complained,
    /// Not sent: the recipient is on the tenant's suppression list.
    Suppressed,
    /// Deferred for longer than the retry period; given up.
    Expired,
    /// Taken in while its application is under an incident: kept, not sent.
    Held,
    /// Held, then released by a person: sent as usual from then on.
    Released,
    /// Held, then discarded by a person (or past the held mail's retention).
    Discarded,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Accepted,
        EventKind::Delivered,
        EventKind::Deferred,
        EventKind::Bounced,
        EventKind::Complained,
        EventKind::Suppressed,
        EventKind::Expired,
        EventKind::Held,
        EventKind::Released,
        EventKind::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Accepted => "accepted",
            EventKind::Delivered => "delivered",
            EventKind::Deferred => "deferred",
            EventKind::Bounced => "bounced",
            EventKind::Complained => "complained",
            EventKind::Suppressed => "suppressed",
            EventKind::Expired => "expired",
            EventKind::Held => "held",
            EventKind::Released => "released",
            EventKind::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A bounce that will not change by trying again (`5.x.x`), or one that
/// might (`4.x.x`, a full mailbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Hard,
    Soft,
}

/// What the state change says beyond its kind; the same for every
/// recipient of the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Detail {
    /// The receiving server's reply (delivered, deferred, bounced during delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The enhanced status code (RFC 3463), e.g. `5.1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The host that answered, when it was a remote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Bounces: hard or soft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// When a deferred recipient is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<u64>,
    /// Bounces and complaints that came later: `dsn`, `arf` or `guessed`
    /// (a report that is not a standard one, read by its text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Complaints: the report's feedback type (`abuse`, `fraud`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_type: Option<String>,
}

/// One state change of some recipients of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at_ms: u64,
    pub tenant: String,
    pub app: String,
    /// The message's queue id; empty when no message was queued (a
    /// recipient suppressed at `RCPT`).
    pub queue_id: String,
    pub kind: EventKind,
    pub recipients: Vec<String>,
    #[serde(default)]
    pub detail: Detail,
}

/// One recipient's event, as the API and webhooks give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique and stable: the record's cursor and the recipient's index.
    pub id: String,
    pub at_ms: u64,
    pub tenant: String,
    pub app: String,
    pub queue_id: String,
    pub recipient: String,
    pub kind: EventKind,
    #[serde(flatten)]
    pub detail: Detail,
}

impl EventRecord {
    /// `message`'s recipients, taken in; none for the null sender (the
    /// relay's own bounces and alerts are no application's mail).
    pub fn accepted(message: &QueuedMessage) -> Option<EventRecord> {
        if message.mail_from.is_empty() {
            return None;
        }
        Some(EventRecord::about(message, EventKind::Accepted, message.received_ms))
    }

    /// A change of all of `message`'s recipients at `at_ms`.
    pub fn about(message: &QueuedMessage, kind: EventKind, at_ms: u64) -> EventRecord {
        EventRecord {
            at_ms,
            tenant: message.tenant.clone(),
            app: message.app.clone(),
            queue_id: message.id.to_string(),
            kind,
            recipients: message.recipients.clone(),
            detail: Detail::default(),
        }
    }

    /// The record's events; `cursor` is the record's place in the log.
    pub fn events(&self, cursor: &str) -> Vec<Event> {
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, recipient)| Event {
                id: format!("{cursor}.{i}"),
                at_ms: self.at_ms,
                tenant: self.tenant.clone(),
                app: self.app.clone(),
                queue_id: self.queue_id.clone(),
                recipient: recipient.clone(),
                kind: self.kind,
                detail: self.detail.clone(),
            })
            .collect()
    }
}

/// Where a tenant's or an application's events are POSTed, in batches,
/// each body signed with `secret` (`X-Ferry-Signature: sha256=<hex>`, as
/// the charge-back alerts are) and carrying the time it was sent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsWebhook {
    pub url: String,
    pub secret: String,
    pub created_ms: u64,
}

impl std::fmt::Debug for EventsWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsWebhook")
            .field("url", &self.url)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// How far a webhook receiver has got through its tenant's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverState {
    /// The last record it took (answered 2xx for); from the oldest kept when none.
    pub cursor: Option<String>,
    /// Failed tries in a row since the last success.
    pub failures: u32,
    /// No try before this (backoff after failures).
    pub next_try_ms: u64,
}

/// The state changes a delivery record makes: recipients with a final
/// answer that `before` (the outcomes saved last) did not have, and, when
/// the message waits for another try at `retry_at`, every recipient still
/// pending. Bounces the relay itself sends (the null sender) have none:
/// they are not the application's mail.
pub fn at_delivery(
    before: &BTreeMap<String, RecipientOutcome>,
    message: &QueuedMessage,
    retry_at: Option<u64>,
) -> Vec<EventRecord> {
    if message.mail_from.is_empty() {
        return Vec::new();
    }
    let mut changes: BTreeMap<(EventKind, Detail), (u64, Vec<String>)> = BTreeMap::new();
    for (rcpt, outcome) in &message.outcomes {
        if before.contains_key(rcpt) {
            continue;
        }
        let (kind, at_ms, detail) = finished(outcome);
        let entry = changes.entry((kind, detail)).or_insert((at_ms, Vec::new()));
        entry.1.push(rcpt.clone());
    }
    if let Some(next) = retry_at {
        for rcpt in message.pending() {
            let last = message.history.iter().rev().find(|a| a.recipients.contains(&rcpt));
            let detail = Detail {
                reply: last.map(|a| a.reply.clone()),
                status: last.and_then(|a| enhanced_status(&a.reply)),
                remote: last.and_then(|a| a.address.clone()),
                next_attempt_ms: Some(next),
                ..Detail::default()
            };
            let at_ms = last.map_or(message.received_ms, |a| a.at_ms);
            let entry = changes
                .entry((EventKind::Deferred, detail))
                .or_insert((at_ms, Vec::new()));
            entry.1.push(rcpt);
        }
    }
    changes
        .into_iter()
        .map(|((kind, detail), (at_ms, recipients))| EventRecord {
            at_ms,
            tenant: message.tenant.clone(),
            app: message.app.clone(),
            queue_id: message.id.to_string(),
            kind,
            recipients,
            detail,
        })
        .collect()
}

fn finished(outcome: &RecipientOutcome) -> (EventKind, u64, Detail) {
    match outcome {
        RecipientOutcome::Delivered { at_ms, reply } => (
            EventKind::Delivered,
            *at_ms,
            Detail {
                reply: Some(reply.clone()),
                status: enhanced_status(reply),
                ..Detail::default()
            },
        ),
        RecipientOutcome::Failed {
            at_ms,
            status,
            reply,
            remote,
        } => {
            // A temporary failure that outlived the retry period is the
            // only final failure with a 4.x.x status.
            let expired = status.starts_with('4');
            let kind = if expired {
                EventKind::Expired
            } else {
                EventKind::Bounced
            };
            let detail = Detail {
                reply: Some(reply.clone()),
                status: Some(status.clone()),
                remote: remote.clone(),
                severity: (!expired).then_some(Severity::Hard),
                ..Detail::default()
            };
            (kind, *at_ms, detail)
        }
    }
}

/// The enhanced status code (RFC 3463) in a reply such as
/// `250 2.0.0 Ok: queued`, if it has one.
pub fn enhanced_status(reply: &str) -> Option<String> {
    reply
        .split_ascii_whitespace()
        .take(3)
        .find(|word| is_enhanced_status(word))
        .map(str::to_string)
}

fn is_enhanced_status(word: &str) -> bool {
    let mut parts = word.split('.');
    let class_ok = matches!(parts.next(), Some("2" | "4" | "5"));
    let numbers_ok = parts
        .by_ref()
        .take(2)
        .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        .count()
        == 2;
    class_ok && numbers_ok && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DeliveryAttempt, QueueId};

    fn message(rcpts: &[&str]) -> QueuedMessage {
        QueuedMessage {
            id: QueueId::generate(),
            tenant: "hr".into(),
            app: "payroll".into(),
            mail_from: "payroll@hr.example".into(),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            received_ms: 1_000,
            attempts: 0,
            eight_bit: false,
            smtputf8: false,
            outcomes: BTreeMap::new(),
            history: Vec::new(),
            content: Vec::new(),
            lease: None,
            return_paths: Vec::new(),
        }
    }

    fn attempt(at_ms: u64, rcpts: &[&str], reply: &str) -> DeliveryAttempt {
        DeliveryAttempt {
            at_ms,
            destination: "mx.example".into(),
            address: Some("192.0.2.1:25".into()),
            tls: None,
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            reply: reply.into(),
        }
    }

    #[test]
    fn accepted_names_every_recipient_and_expands_with_stable_ids() {
        let m = message(&["a@x.test", "b@y.test"]);
        let Some(record) = EventRecord::accepted(&m) else {
            panic!("an application's message is accepted");
        };
        let events = record.events("42");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].id, "42.1");
        assert_eq!(events[1].recipient, "b@y.test");
        assert_eq!(events[0].kind, EventKind::Accepted);
        assert_eq!(events[0].queue_id, m.id.to_string());
    }

    #[test]
    fn a_delivery_reports_only_what_changed_since_the_last_save() {
        let mut m = message(&["a@x.test", "b@x.test", "c@y.test"]);
        m.outcomes.insert(
            "a@x.test".into(),
            RecipientOutcome::Delivered {
                at_ms: 2_000,
                reply: "250 2.0.0 ok".into(),
            },
        );
        let before = m.outcomes.clone();
        m.outcomes.insert(
            "b@x.test".into(),
            RecipientOutcome::Failed {
                at_ms: 3_000,
                status: "5.1.1".into(),
                reply: "550 5.1.1 no such user".into(),
                remote: Some("mx.x.test".into()),
            },
        );
        m.record_attempt(attempt(3_000, &["c@y.test"], "451 4.7.1 greylisted"));
        let records = at_delivery(&before, &m, Some(9_000));
        let kinds: Vec<_> = records.iter().map(|r| (r.kind, r.recipients.clone())).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Deferred, vec!["c@y.test".to_string()]),
                (EventKind::Bounced, vec!["b@x.test".to_string()]),
            ]
        );
        let deferred = &records[0].detail;
        assert_eq!(deferred.next_attempt_ms, Some(9_000));
        assert_eq!(deferred.status.as_deref(), Some("4.7.1"));
        assert_eq!(records[1].detail.severity, Some(Severity::Hard));
        assert!(at_delivery(&m.outcomes.clone(), &m, None).is_empty());
    }

    #[test]
    fn recipients_sharing_a_reply_share_a_record_and_expiry_is_its_own_kind() {
        let mut m = message(&["a@x.test", "b@x.test", "c@x.test"]);
        for r in ["a@x.test", "b@x.test"] {
            m.outcomes.insert(
                r.into(),
                RecipientOutcome::Delivered {
                    at_ms: 2_000,
                    reply: "250 2.0.0 ok".into(),
                },
            );
        }
        m.outcomes.insert(
            "c@x.test".into(),
            RecipientOutcome::Failed {
                at_ms: 2_000,
                status: "4.4.7".into(),
                reply: "554 4.4.7 delivery time expired".into(),
                remote: None,
            },
        );
        let records = at_delivery(&BTreeMap::new(), &m, None);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].kind, EventKind::Delivered);
        assert_eq!(records[0].recipients.len(), 2);
        assert_eq!(records[1].kind, EventKind::Expired);
        assert_eq!(records[1].detail.severity, None);
    }

    #[test]
    fn the_relays_own_bounces_have_no_events() {
        let mut m = message(&["a@x.test"]);
        m.mail_from.clear();
        m.record_attempt(attempt(2_000, &["a@x.test"], "451 later"));
        assert_eq!(EventRecord::accepted(&m), None);
        assert!(at_delivery(&BTreeMap::new(), &m, Some(5_000)).is_empty());
    }

    #[test]
    fn enhanced_status_is_read_from_a_reply() {
        assert_eq!(enhanced_status("250 2.0.0 Ok: queued").as_deref(), Some("2.0.0"));
        assert_eq!(enhanced_status("550 5.1.10 unknown").as_deref(), Some("5.1.10"));
        assert_eq!(enhanced_status("550 user unknown 5.1.1"), None);
        assert_eq!(enhanced_status("451 4.x.1 odd"), None);
        assert_eq!(enhanced_status(""), None);
    }

    #[test]
    fn kinds_read_back_from_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(EventKind::parse("sent"), None);
    }
}
