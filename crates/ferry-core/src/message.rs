//! What sits in the spool: a message's envelope and bytes, under one id.

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
    /// Empty for the null sender.
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub received_ms: u64,
    pub attempts: u32,
    /// The message with the headers the relay added, CRLF line endings.
    #[serde(skip)]
    pub content: Vec<u8>,
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
