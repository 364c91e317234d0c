//! A tenant's suppression list: recipients its applications' mail is no
//! longer sent to, because they bounced for good, complained, bounced
//! softly too often, or an admin put them there. Checked at `RCPT`.
//!
//! Addresses are kept lower case: mailbox providers treat local parts
//! case-insensitively, and a list that missed `Jo@x` because `jo@x`
//! bounced would protect nothing.

use serde::{Deserialize, Serialize};

use crate::event::{EventKind, EventRecord, Severity};

/// Why a recipient is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A permanent failure (`5.x.x`) for this recipient.
    HardBounce,
    /// The recipient reported the tenant's mail as unwanted.
    Complaint,
    /// Temporary failures, [`SoftBounceRule::count`] of them within its window.
    SoftBounces,
    /// Put there by an admin or tenant-admin.
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HardBounce => "hard_bounce",
            Reason::Complaint => "complaint",
            Reason::SoftBounces => "soft_bounces",
            Reason::Manual => "manual",
        }
    }
}

/// One recipient on one tenant's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub tenant: String,
    /// Lower case (see [`normalise`]).
    pub recipient: String,
    pub reason: Reason,
    pub at_ms: u64,
    /// When the entry lapses; never when `None`.
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// What put it there: the event's queue id and status, or who added it.
    #[serde(default)]
    pub source: String,
}

impl Suppression {
    /// The entry with its recipient in the form it is kept in.
    pub fn normalised(mut self) -> Suppression {
        self.recipient = normalise(&self.recipient);
        self
    }

    pub fn in_force(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

/// The form a recipient is kept and looked up in.
pub fn normalise(recipient: &str) -> String {
    recipient
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

/// Whether `recipient` (normalised) is an address a list can hold.
pub fn valid_recipient(recipient: &str) -> bool {
    ferry_smtp::address::validate_mailbox(recipient).is_ok()
}

/// When soft bounces suppress: `count` of them for one recipient within
/// `window_ms` (a full mailbox for days is as good as gone; one greylisting
/// is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftBounceRule {
    pub count: u32,
    pub window_ms: u64,
}

/// What an event does to the list, given the soft bounces counted for its
/// recipient within the rule's window (this one included): the entries to
/// add. A delivery-time bounce suppresses like a later one.
pub fn from_event(
    record: &EventRecord,
    soft_bounces: impl Fn(&str) -> u32,
    rule: SoftBounceRule,
    expires_ms: Option<u64>,
) -> Vec<Suppression> {
    let reason = match record.kind {
        EventKind::Complained => Reason::Complaint,
        EventKind::Bounced => match bounce_reason(record.detail.status.as_deref(), record.detail.severity) {
            Some(reason) => reason,
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    let source = match (&record.detail.status, record.queue_id.is_empty()) {
        (Some(status), false) => format!("{} {} {}", record.kind.as_str(), record.queue_id, status),
        (None, false) => format!("{} {}", record.kind.as_str(), record.queue_id),
        (_, true) => record.kind.as_str().to_string(),
    };
    record
        .recipients
        .iter()
        .filter(|r| reason != Reason::SoftBounces || soft_bounces(&normalise(r)) >= rule.count)
        .map(|r| Suppression {
            tenant: record.tenant.clone(),
            recipient: normalise(r),
            reason,
            at_ms: record.at_ms,
            expires_ms,
            source: source.clone(),
        })
        .collect()
}

/// Whether a bounce is the address's fault, by its status (RFC 3463):
/// `5.1.x` (no such address) and `5.2.x` (mailbox disabled) suppress at
/// once, except `5.2.2` (mailbox full), which like any `4.x.x` counts as a
/// soft bounce; other classes (`5.7.x` policy, `5.3.x` system, `5.6.x`
/// content) are about the sender or the message, not the recipient, and
/// suppress nothing. A bounce without a status goes by its severity alone
/// only when soft.
pub fn bounce_reason(status: Option<&str>, severity: Option<Severity>) -> Option<Reason> {
    let Some(status) = status else {
        return (severity == Some(Severity::Soft)).then_some(Reason::SoftBounces);
    };
    let mut parts = status.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("5"), Some("2"), Some("2")) | (Some("4"), _, _) => Some(Reason::SoftBounces),
        (Some("5"), Some("1" | "2"), _) => Some(Reason::HardBounce),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Detail;

    fn record(kind: EventKind, severity: Option<Severity>) -> EventRecord {
        let status = if severity == Some(Severity::Soft) {
            "4.2.2"
        } else {
            "5.1.1"
        };
        EventRecord {
            at_ms: 5_000,
            tenant: "hr".into(),
            app: "payroll".into(),
            queue_id: "0192AB".into(),
            kind,
            recipients: vec!["Jo@X.test".into()],
            detail: Detail {
                status: Some(status.into()),
                severity,
                ..Detail::default()
            },
        }
    }

    const RULE: SoftBounceRule = SoftBounceRule {
        count: 3,
        window_ms: 1_000,
    };

    #[test]
    fn hard_bounces_and_complaints_suppress_at_once() {
        let hard = from_event(&record(EventKind::Bounced, Some(Severity::Hard)), |_| 0, RULE, None);
        assert_eq!(hard.len(), 1);
        assert_eq!(hard[0].recipient, "jo@x.test");
        assert_eq!(hard[0].reason, Reason::HardBounce);
        assert_eq!(hard[0].source, "bounced 0192AB 5.1.1");
        let complaint = from_event(&record(EventKind::Complained, None), |_| 0, RULE, Some(9));
        assert_eq!(complaint[0].reason, Reason::Complaint);
        assert_eq!(complaint[0].expires_ms, Some(9));
    }

    #[test]
    fn soft_bounces_suppress_only_at_the_rules_count() {
        let soft = record(EventKind::Bounced, Some(Severity::Soft));
        assert!(from_event(&soft, |_| 2, RULE, None).is_empty());
        let third = from_event(&soft, |r| if r == "jo@x.test" { 3 } else { 0 }, RULE, None);
        assert_eq!(third[0].reason, Reason::SoftBounces);
    }

    #[test]
    fn only_bounces_about_the_address_suppress() {
        let cases = [
            (Some("5.1.1"), Some(Reason::HardBounce)),
            (Some("5.1.10"), Some(Reason::HardBounce)),
            (Some("5.2.1"), Some(Reason::HardBounce)),
            (Some("5.2.2"), Some(Reason::SoftBounces)),
            (Some("4.2.2"), Some(Reason::SoftBounces)),
            (Some("5.7.1"), None),
            (Some("5.3.4"), None),
            (Some("5.4.4"), None),
            (None, None),
        ];
        for (status, expected) in cases {
            assert_eq!(bounce_reason(status, Some(Severity::Hard)), expected, "{status:?}");
        }
        assert_eq!(bounce_reason(None, Some(Severity::Soft)), Some(Reason::SoftBounces));
    }

    #[test]
    fn other_events_suppress_nothing() {
        for kind in [
            EventKind::Delivered,
            EventKind::Deferred,
            EventKind::Expired,
            EventKind::Accepted,
        ] {
            assert!(from_event(&record(kind, None), |_| 99, RULE, None).is_empty());
        }
    }

    #[test]
    fn entries_lapse_when_they_expire() {
        let mut s = from_event(&record(EventKind::Complained, None), |_| 0, RULE, Some(10)).remove(0);
        assert!(s.in_force(9));
        assert!(!s.in_force(10));
        s.expires_ms = None;
        assert!(s.in_force(u64::MAX));
        assert_eq!(normalise(" <A@B.Test> "), "a@b.test");
    }
}
