//! What happened to each application's mail, counted per hour: the
//! per-application outcome report. Messages relayed are the ledger's
//! message counts; this adds refusals (by the reason label of
//! [`crate::refusal::Refusal`]) and the fate of each recipient at delivery.
//!
//! Units: a refusal counts one message (or one sign-in attempt, for the
//! authentication reasons); `delivered` and `bounced` count recipients when
//! their message leaves the queue; `deferred` counts recipients left
//! pending by an attempt (so one recipient deferred three times counts
//! three), as Postfix's `status=deferred` lines do.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::message::{QueuedMessage, RecipientOutcome};
use crate::usage::HOUR_MS;

/// One kind of outcome.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Delivered,
    Deferred,
    Bounced,
    /// Bounced by a report that came back after the receiving server had
    /// said 250 (see `ferry_relay::inbound`), counted when it came.
    BouncedLater,
    /// Reported as unwanted by its recipient (an ARF complaint).
    Complained,
    /// Accepted while its application was under an incident that holds its
    /// mail (see `ferry_core::incident`): kept, not delivered. Messages.
    Held,
    /// Held, then released by a person: delivered as normal. Messages.
    Released,
    /// Held, then discarded by a person or past the retention. Messages.
    Discarded,
    /// Refused, with the refusal's reason label (`auth_failed`, `virus`, ...).
    Refused(String),
}

impl Outcome {
    /// Reads back the stored name ([`Outcome`]'s `Display`): `delivered`,
    /// `deferred`, `bounced`, `refused.<reason>`.
    pub fn parse(key: &str) -> Option<Outcome> {
        match key {
            "delivered" => Some(Outcome::Delivered),
            "deferred" => Some(Outcome::Deferred),
            "bounced" => Some(Outcome::Bounced),
            "bounced_later" => Some(Outcome::BouncedLater),
            "complained" => Some(Outcome::Complained),
            "held" => Some(Outcome::Held),
            "released" => Some(Outcome::Released),
            "discarded" => Some(Outcome::Discarded),
            _ => key
                .strip_prefix("refused.")
                .filter(|reason| !reason.is_empty())
                .map(|reason| Outcome::Refused(reason.to_string())),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("delivered"),
            Outcome::Deferred => f.write_str("deferred"),
            Outcome::Bounced => f.write_str("bounced"),
            Outcome::BouncedLater => f.write_str("bounced_later"),
            Outcome::Complained => f.write_str("complained"),
            Outcome::Held => f.write_str("held"),
            Outcome::Released => f.write_str("released"),
            Outcome::Discarded => f.write_str("discarded"),
            Outcome::Refused(reason) => write!(f, "refused.{reason}"),
        }
    }
}

/// A count of one outcome of one application in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCount {
    /// Hours since the epoch (UTC).
    pub hour: u64,
    pub tenant: String,
    pub app: String,
    pub outcome: Outcome,
    pub count: u64,
}

impl OutcomeCount {
    /// The field a store keys the count by within its hour.
    pub fn field(&self) -> String {
        format!("{}\t{}\t{}", self.tenant, self.app, self.outcome)
    }

    /// The count stored under `field` in `hour`, or `None` for a field that
    /// is not one of ours.
    pub fn from_field(hour: u64, field: &str, count: u64) -> Option<OutcomeCount> {
        let mut parts = field.splitn(3, '\t');
        let (tenant, app, outcome) = (parts.next()?, parts.next()?, parts.next()?);
        Some(OutcomeCount {
            hour,
            tenant: tenant.to_string(),
            app: app.to_string(),
            outcome: Outcome::parse(outcome)?,
            count,
        })
    }

    /// One message of `message`'s application, held, released or
    /// discarded at `at_ms`.
    pub fn message(message: &QueuedMessage, outcome: Outcome, at_ms: u64) -> OutcomeCount {
        OutcomeCount {
            hour: at_ms / HOUR_MS,
            tenant: message.tenant.clone(),
            app: message.app.clone(),
            outcome,
            count: 1,
        }
    }

    /// One refusal of `app`'s mail at `at_ms`.
    pub fn refusal(tenant: &str, app: &str, reason: &str, at_ms: u64) -> OutcomeCount {
        OutcomeCount {
            hour: at_ms / HOUR_MS,
            tenant: tenant.to_string(),
            app: app.to_string(),
            outcome: Outcome::Refused(reason.to_string()),
            count: 1,
        }
    }
}

/// What a delivery record adds: when the message leaves the queue
/// (`done`), its recipients delivered and bounced; when it waits for
/// another attempt, its recipients still pending. Counted in the hour of
/// the last attempt. Bounces the relay itself sends (the null sender) count
/// nothing: they are not the application's mail.
pub fn at_delivery(message: &QueuedMessage, done: bool) -> Vec<OutcomeCount> {
    if message.mail_from.is_empty() {
        return Vec::new();
    }
    let at = message.history.last().map_or(message.received_ms, |a| a.at_ms);
    let count = |outcome: Outcome, count: usize| OutcomeCount {
        hour: at / HOUR_MS,
        tenant: message.tenant.clone(),
        app: message.app.clone(),
        outcome,
        count: count as u64,
    };
    let counts = if done {
        let delivered = message
            .outcomes
            .values()
            .filter(|o| matches!(o, RecipientOutcome::Delivered { .. }))
            .count();
        let bounced = message.outcomes.len() - delivered;
        vec![count(Outcome::Delivered, delivered), count(Outcome::Bounced, bounced)]
    } else {
        vec![count(Outcome::Deferred, message.pending().len())]
    };
    counts.into_iter().filter(|c| c.count > 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        for outcome in [
            Outcome::Delivered,
            Outcome::Deferred,
            Outcome::Bounced,
            Outcome::Held,
            Outcome::Released,
            Outcome::Discarded,
            Outcome::Refused("virus".into()),
        ] {
            assert_eq!(Outcome::parse(&outcome.to_string()), Some(outcome));
        }
        assert_eq!(Outcome::parse("refused."), None);
        assert_eq!(Outcome::parse("lost"), None);
        let count = OutcomeCount::refusal("acme", "billing", "spam", 3 * HOUR_MS + 5);
        assert_eq!(OutcomeCount::from_field(3, &count.field(), 1), Some(count));
    }

    #[test]
    fn delivery_counts_recipients_when_done_and_pending_when_deferred() {
        let mut message = QueuedMessage {
            id: crate::QueueId::generate(),
            tenant: "acme".into(),
            app: "billing".into(),
            mail_from: "a@acme.example".into(),
            recipients: vec!["x@a.example".into(), "y@b.example".into(), "z@c.example".into()],
            received_ms: 7 * HOUR_MS,
            attempts: 0,
            eight_bit: false,
            smtputf8: false,
            outcomes: Default::default(),
            history: Vec::new(),
            content: Vec::new(),
            lease: None,
            return_paths: Vec::new(),
        };
        message.outcomes.insert(
            "x@a.example".into(),
            RecipientOutcome::Delivered {
                at_ms: 7 * HOUR_MS,
                reply: "250".into(),
            },
        );
        let deferred = at_delivery(&message, false);
        assert_eq!(deferred.len(), 1);
        assert_eq!((deferred[0].outcome.clone(), deferred[0].count), (Outcome::Deferred, 2));
        message.outcomes.insert(
            "y@b.example".into(),
            RecipientOutcome::Failed {
                at_ms: 8 * HOUR_MS,
                status: "5.1.1".into(),
                reply: "550".into(),
                remote: None,
            },
        );
        let done: Vec<(Outcome, u64)> = at_delivery(&message, true)
            .into_iter()
            .map(|c| (c.outcome, c.count))
            .collect();
        assert_eq!(done, vec![(Outcome::Delivered, 1), (Outcome::Bounced, 1)]);
        message.mail_from.clear();
        assert!(
            at_delivery(&message, true).is_empty(),
            "the relay's own bounces count nothing"
        );
    }
}
