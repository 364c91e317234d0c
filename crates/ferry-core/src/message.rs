//! What sits in the spool: a message's envelope and bytes, under one id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A queue id: time-ordered (UUIDv7), 32 hex digits, safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(String);

impl QueueId {
    pub fn generate() -> Self {
        QueueId(uuid::Uuid::now_v7().simple().to_string().to_ascii_uppercase())
    }

    /// Accepts only the form [`QueueId::generate`] makes, so an id from a
    /// command line can never name a path outside the spool.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| QueueId(s.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the id was made (ms since the epoch): UUIDv7 starts with it.
    pub fn time_ms(&self) -> u64 {
        self.0
            .get(..12)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .unwrap_or(0)
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A spooled message: envelope and content are stored and removed together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: QueueId,
    pub tenant: String,
    pub app: String,
    /// Empty for the null sender (bounces).
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub received_ms: u64,
    pub attempts: u32,
    /// The content needs 8BITMIME from the next hop.
    #[serde(default)]
    pub eight_bit: bool,
    /// The envelope needs SMTPUTF8 from the next hop.
    #[serde(default)]
    pub smtputf8: bool,
    /// Final answers, per recipient; a recipient without one is still pending.
    #[serde(default)]
    pub outcomes: BTreeMap<String, RecipientOutcome>,
    /// Delivery attempts, oldest first (the last [`MAX_HISTORY`] are kept).
    #[serde(default)]
    pub history: Vec<DeliveryAttempt>,
    /// The message with the headers the relay added, CRLF line endings.
    #[serde(skip)]
    pub content: Vec<u8>,
    /// The lease this copy was taken under (set by the queue's `lease`,
    /// never stored with the envelope): a delivery result is saved only
    /// while it is still the message's lease, so a walk that lost its lease
    /// to another node cannot overwrite what that node records.
    #[serde(skip)]
    pub lease: Option<String>,
    /// For a tenant with a bounce domain: each recipient's own
    /// envelope-From (see [`crate::return_path`]), in `recipients`' order;
    /// empty: `mail_from` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub return_paths: Vec<String>,
}

/// How many delivery attempts a message remembers.
pub const MAX_HISTORY: usize = 50;

/// The final answer for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecipientOutcome {
    Delivered {
        at_ms: u64,
        reply: String,
    },
    /// A permanent failure (or a temporary one that outlived the retry
    /// period); the sender gets a DSN.
    Failed {
        at_ms: u64,
        status: String,
        reply: String,
        remote: Option<String>,
    },
}

/// One try at handing recipients to a next hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub at_ms: u64,
    /// The route or host tried, e.g. `mx1.example.net` or `capture`.
    pub destination: String,
    /// The address connected to, when there was a connection.
    pub address: Option<String>,
    /// The TLS version and cipher, when the hop was encrypted.
    pub tls: Option<String>,
    pub recipients: Vec<String>,
    /// The answer (or why there was none).
    pub reply: String,
}

impl QueuedMessage {
    /// A message Ferry itself sends for `tenant`'s `app` (a bounce, an
    /// alert, a forwarded report): from the null sender, so a failure
    /// cannot bounce back, to one recipient.
    pub fn notice(id: QueueId, tenant: &str, app: &str, to: &str, content: Vec<u8>, now_ms: u64) -> QueuedMessage {
        QueuedMessage {
            id,
            tenant: tenant.to_string(),
            app: app.to_string(),
            mail_from: String::new(),
            recipients: vec![to.to_string()],
            received_ms: now_ms,
            attempts: 0,
            eight_bit: false,
            smtputf8: !to.is_ascii(),
            outcomes: Default::default(),
            history: Vec::new(),
            content,
            lease: None,
            return_paths: Vec::new(),
        }
    }

    /// Recipients without a final answer yet.
    pub fn pending(&self) -> Vec<String> {
        self.recipients
            .iter()
            .filter(|r| !self.outcomes.contains_key(*r))
            .cloned()
            .collect()
    }

    /// The envelope-From to send `rcpt` with.
    pub fn return_path(&self, rcpt: &str) -> &str {
        self.recipients
            .iter()
            .position(|r| r == rcpt)
            .and_then(|i| self.return_paths.get(i))
            .map_or(self.mail_from.as_str(), String::as_str)
    }

    pub fn failed(&self) -> Vec<(&String, &RecipientOutcome)> {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, RecipientOutcome::Failed { .. }))
            .collect()
    }

    pub fn record_attempt(&mut self, attempt: DeliveryAttempt) {
        self.history.push(attempt);
        if self.history.len() > MAX_HISTORY {
            self.history.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_parse_back() {
        let a = QueueId::generate();
        let b = QueueId::generate();
        assert_ne!(a, b);
        assert_eq!(QueueId::parse(a.as_str()), Some(a));
        assert_eq!(QueueId::parse("../etc/passwd"), None);
    }
}
