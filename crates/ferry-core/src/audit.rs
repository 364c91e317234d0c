//! The audit log: every change made through the admin API or the CLI, who
//! made it, when, and the record before and after. Secrets never enter it:
//! callers pass the public forms (no password hashes, no smart-host
//! passwords, no token secrets).

use serde::{Deserialize, Serialize};

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique, and in time order with `at_ms`.
    pub id: String,
    pub at_ms: u64,
    /// The token id that made the change, or `cli` for the CLI on the store.
    pub actor: String,
    /// The actor's role (`admin`, `tenant-admin`; `cli`).
    pub role: String,
    /// What was done, e.g. `app.create`, `tenant.update`, `dkim.activate`.
    pub action: String,
    /// What it was done to, e.g. the application's username.
    pub object: String,
    /// The record before the change (absent when created).
    pub before: Option<serde_json::Value>,
    /// The record after the change (absent when deleted).
    pub after: Option<serde_json::Value>,
}

impl AuditEntry {
    /// An id that sorts by time: the instant, then random bits so that two
    /// changes in one millisecond stay apart.
    pub fn new_id(at_ms: u64) -> String {
        format!("{at_ms:013}-{:08x}", rand::random::<u32>())
    }
}
