//! The store: every fact that must outlive a process (credentials, queued
//! mail, later counters and reports) behind one set of traits, with the
//! embedded single-file backend and the conformance suite every backend passes.
//!
//! Layout:
//! - this file: the traits ([`Directory`], [`Queue`], [`Ledger`],
//!   [`SignIns`], [`Samples`], [`Events`], [`Suppressions`], [`Incidents`];
//!   [`Store`] is all of them) and [`StoreError`].
//! - [`embedded`]: the redb backend with group commit; `ledger`: its counters
//!   and alerts; `log`: its events, suppression lists and return-path keys;
//!   `incidents`: its incidents and held mail.
//! - [`conformance`] (feature `test-util`): the shared test suite.
//!
//! Atomic units are shaped to fit one Redis Cluster slot later: a message's
//! envelope and content are written and removed together; a tenant's records
//! together. No operation spans unrelated keys.

use std::net::IpAddr;

use async_trait::async_trait;
use ferry_core::audit::AuditEntry;
use ferry_core::contract::ContractYear;
use ferry_core::dkim::DkimKeyRecord;
use ferry_core::event::{EventRecord, ReceiverState};
use ferry_core::incident::{HourFigures, Incident, Resolution, SignInFact};
use ferry_core::lockout::{Lockout, LockoutRules, SignInState};
use ferry_core::metering::{Alert, Metering, Window};
use ferry_core::outcome::OutcomeCount;
use ferry_core::return_path::{BounceKey, Sent};
use ferry_core::sample::Sample;
use ferry_core::suppression::Suppression;
use ferry_core::token::ApiToken;
use ferry_core::usage::{HourUsage, Scope, Usage};
use ferry_core::{Application, QueueId, QueuedMessage, Tenant};

#[cfg(feature = "test-util")]
pub mod conformance;
pub mod embedded;
mod incidents;
mod ledger;
mod log;
mod signins;

pub use embedded::EmbeddedStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Refused because other records still refer to it.
    #[error("{0}")]
    InUse(String),
    /// Another process holds the embedded store's file.
    #[error("the store {0} is in use by another process (a running `ferry serve`?)")]
    Locked(String),
    /// The backend failed or is unreachable; callers answer `451 4.3.0`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A hard cap would be passed; nothing was written.
    #[error("{name} reached")]
    CapReached { name: String, temporary: bool },
    /// More writes wait for the embedded store's writer than it may hold:
    /// nothing was written; the session answers `451 4.3.0` and the client
    /// tries again.
    #[error("the store is busy: too many writes waiting")]
    Busy,
    /// A delivery result from a walk whose lease is no longer the message's
    /// (it ran out and the message was leased again): nothing was written.
    #[error("the lease on message {0} is no longer held")]
    LeaseLost(String),
    /// An argument the backend cannot use (a cursor it never gave out).
    #[error("not a valid {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A record (tenant, application, envelope, alert) in the JSON form every
/// backend stores it in.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain data types cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A record back from its stored form; a record that does not parse is a
/// store failure, not the caller's.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Unavailable(format!("corrupt record: {e}")))
}

/// Tenants and applications.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Fails with [`StoreError::AlreadyExists`] when the name is taken.
    async fn create_tenant(&self, tenant: Tenant) -> Result<()>;
    /// Replaces an existing tenant; [`StoreError::NotFound`] if there is none.
    async fn update_tenant(&self, tenant: Tenant) -> Result<()>;
    async fn tenant(&self, name: &str) -> Result<Option<Tenant>>;
    async fn tenants(&self) -> Result<Vec<Tenant>>;
    /// Fails with [`StoreError::AlreadyExists`] when the username is taken
    /// and [`StoreError::NotFound`] when its tenant does not exist.
    async fn create_app(&self, app: Application) -> Result<()>;
    /// Replaces an existing application; [`StoreError::NotFound`] if there is none.
    async fn update_app(&self, app: Application) -> Result<()>;
    async fn app(&self, username: &str) -> Result<Option<Application>>;
    /// All applications, or those of one tenant.
    async fn apps(&self, tenant: Option<&str>) -> Result<Vec<Application>>;
    /// Adds or replaces a DKIM key (by domain and selector).
    async fn put_dkim_key(&self, key: DkimKeyRecord) -> Result<()>;
    async fn dkim_keys(&self) -> Result<Vec<DkimKeyRecord>>;
    /// Adds `key` as the newest return-path key, only if the newest now is
    /// `after` (none: there is no key yet), so two nodes rotating at once
    /// make one key, not two; false when another was first.
    async fn add_bounce_key(&self, key: BounceKey, after: Option<char>) -> Result<bool>;
    async fn bounce_keys(&self) -> Result<Vec<BounceKey>>;
    /// A number that changes whenever a tenant, an application or a DKIM
    /// key is written. Must be cheap (one read): every node polls it to
    /// learn that its copies of directory records are stale.
    async fn directory_version(&self) -> Result<u64>;
    /// Adds or replaces an admin API token (by id).
    async fn put_token(&self, token: ApiToken) -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<ApiToken>>;
    async fn tokens(&self) -> Result<Vec<ApiToken>>;
    /// Removes an application; [`StoreError::NotFound`] if there is none.
    async fn delete_app(&self, username: &str) -> Result<()>;
    /// Removes a tenant; [`StoreError::InUse`] while it has applications.
    async fn delete_tenant(&self, name: &str) -> Result<()>;
    /// Adds an entry to the audit log (durable before it returns).
    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;
    /// Audit entries made in [from_ms, to_ms), oldest first, at most `limit`.
    async fn audit(&self, from_ms: u64, to_ms: u64, limit: usize) -> Result<Vec<AuditEntry>>;
}

/// What happens to a message after a delivery attempt was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Every recipient has a final answer: remove the message.
    Done,
    /// Some recipients are pending: due again at this time, one more attempt counted.
    RetryAt(u64),
    /// Progress within an attempt: keep the lease, save the answers so far.
    Continue,
}

/// A queued message as listed: envelope and state without content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub message: QueuedMessage,
    pub due_ms: u64,
    pub size: usize,
}

/// The shared queue of spooled messages.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Stores envelope and content together and makes the message due now
    /// — or, while its application is under an incident that holds its
    /// mail, keeps it held (neither due nor counted, a `held` event) —
    /// with its [`Sent`] record when it has return paths, its `accepted` event (none for the null sender: the relay's
    /// own bounces and alerts are not an application's mail), and in the
    /// same atomic operation applies `metering`: refuses with
    /// [`StoreError::CapReached`] (writing nothing) when a hard cap would be
    /// passed, adds the counts, and raises each alert whose threshold the
    /// counts cross. Returns only once the write is durable (synced): the
    /// caller may then answer 250. Concurrent calls share one sync.
    async fn enqueue(&self, message: QueuedMessage, metering: Option<Metering>) -> Result<()>;
    /// Takes up to `max` due messages, reserving each until `now_ms + lease_ms`;
    /// a message not recorded as done or rescheduled by then is due again.
    async fn lease(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<QueuedMessage>>;
    /// Moves the lease of each message in `held` (id, the end of the lease
    /// the caller holds) to `until_ms`: later to renew it while the message
    /// is worked on, now to hand it back. A message whose lease no longer
    /// ends at the time given (it ran out and another node took it, or it
    /// was recorded since) is left alone. Returns the ids moved. Need not
    /// be durable: a lost renewal only makes a message due sooner.
    async fn extend_leases(&self, held: &[(QueueId, u64)], until_ms: u64) -> Result<Vec<QueueId>>;
    /// Durably saves the message's outcomes and history, then applies
    /// `next`, and in the same atomic step appends `changes`' events and
    /// suppression entries (what the caller computed with
    /// [`ferry_core::event::at_delivery`] since its last save).
    /// Fenced by the lease: when `message.lease` is set and is no longer the
    /// message's lease (it was leased again since), nothing is written and
    /// the answer is [`StoreError::LeaseLost`], checked in the same atomic
    /// step as the write.
    /// Recipients recorded as delivered are never handed out as pending again.
    /// In the same atomic step it adds [`ferry_core::outcome::at_delivery`]'s
    /// counts (for `Done` and `RetryAt`), once: not for a message already gone.
    async fn record(&self, message: &QueuedMessage, next: Next, changes: &Changes) -> Result<()>;
    /// One message with its content.
    async fn get(&self, id: &QueueId) -> Result<Option<QueuedMessage>>;
    /// Up to `limit` messages in due order, without content.
    async fn list(&self, limit: usize) -> Result<Vec<QueueEntry>>;
    /// Makes a message due now (an operator's retry).
    async fn retry_now(&self, id: &QueueId, now_ms: u64) -> Result<()>;
    /// Removes a message (delivered, or deleted by an operator).
    async fn complete(&self, id: &QueueId) -> Result<()>;
    /// Messages in the queue (due, leased or waiting).
    async fn depth(&self) -> Result<usize>;
    /// The queue as a platform team watches it (cluster-wide).
    async fn backlog(&self, now_ms: u64) -> Result<Backlog>;
    /// From now on, `wake` is notified whenever another process enqueues a
    /// message: a hint to lease sooner than the next poll. Must be cheap;
    /// the default does nothing (one process sees its own enqueues).
    fn watch_enqueues(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        let _ = wake;
    }
}

/// Usage counters and the alert log with its outbox.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The count of one scope in one window.
    async fn usage(&self, scope: &Scope, window: Window) -> Result<Usage>;
    /// The hour buckets of every scope in [from_hour, to_hour).
    async fn hours(&self, from_hour: u64, to_hour: u64) -> Result<Vec<HourUsage>>;
    /// The peak hour of a scope in a contract year: (hour, units).
    async fn peak(&self, scope: &Scope, year: ContractYear) -> Result<Option<(u64, u64)>>;
    /// Alerts raised in [from_ms, to_ms), oldest first.
    async fn alerts(&self, from_ms: u64, to_ms: u64) -> Result<Vec<Alert>>;
    /// Takes up to `max` undelivered alerts whose next try is due and
    /// reserves them until `now_ms + lease_ms`, so that the dispatcher of
    /// another node does not send them too; one neither delivered nor
    /// retried by then is due again.
    async fn claim_alerts(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<Alert>>;
    /// Raises an alert that is not a threshold's (held mail discarded past
    /// its retention), once per id: whether it was raised now.
    async fn raise_alert(&self, alert: Alert) -> Result<bool>;
    /// The alert was delivered: it leaves the outbox (and stays in the log).
    async fn alert_delivered(&self, id: &str, at_ms: u64) -> Result<()>;
    /// Delivery failed: try again at `due_ms`.
    async fn alert_retry(&self, id: &str, due_ms: u64) -> Result<()>;
    /// Adds to the per-application outcome counts (refusals; delivery
    /// outcomes are added by [`Queue::record`]). Need not be durable.
    async fn count_outcomes(&self, counts: Vec<OutcomeCount>) -> Result<()>;
    /// The outcome counts of every application in [from_hour, to_hour).
    async fn outcomes(&self, from_hour: u64, to_hour: u64) -> Result<Vec<OutcomeCount>>;
}

/// What a state change adds besides the message itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub events: Vec<EventRecord>,
    /// Entries for tenants' suppression lists (added, or replacing one for
    /// the same recipient).
    pub suppress: Vec<Suppression>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.suppress.is_empty()
    }
}

/// Each tenant's log of events (see `ferry_core::event`), read by cursor.
/// A cursor is an opaque string, increasing within a tenant's log.
#[async_trait]
pub trait Events: Send + Sync {
    /// Appends state changes that are not a queued message's (a later
    /// bounce, a complaint, a recipient suppressed at `RCPT`), durably, with
    /// their suppression entries in the same atomic step.
    async fn append_events(&self, changes: Changes) -> Result<()>;
    /// The tenant's records after `after` (from the oldest kept when
    /// `None`), oldest first, at most `limit`, each with its cursor.
    async fn events(&self, tenant: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, EventRecord)>>;
    /// The cursor after which a log reads the records made from `at_ms` on.
    fn cursor_at(&self, at_ms: u64) -> String;
    /// Removes the records made before `before_ms`, and the [`Sent`]
    /// records of messages received before then; how many records.
    async fn purge_events(&self, before_ms: u64) -> Result<usize>;
    /// What a message sent with Ferry's return path went out as (written
    /// with its enqueue when it has `return_paths`).
    async fn sent(&self, id: &QueueId) -> Result<Option<Sent>>;
    /// Takes the sending of `receiver`'s events for `holder` until
    /// `now_ms + hold_ms` (or keeps it, for the holder it already is), unless
    /// another holder's hold still runs; its state. One node at a time
    /// sends to a webhook, so its events go out in order.
    async fn hold_receiver(
        &self,
        receiver: &str,
        holder: &str,
        now_ms: u64,
        hold_ms: u64,
    ) -> Result<Option<ReceiverState>>;
    /// Saves a receiver's state, only while `holder` holds it; whether it did.
    async fn save_receiver(&self, receiver: &str, holder: &str, state: &ReceiverState) -> Result<bool>;
}

/// Incidents on applications (see `ferry_core::incident`).
#[async_trait]
pub trait Incidents: Send + Sync {
    /// Opens `incident` unless its application has one open, atomically,
    /// with its alert in the outbox (see [`Incident::alert`]),
    /// so two nodes that see the same breach open one: whether it did.
    /// Durable before it returns.
    async fn open_incident(&self, incident: Incident) -> Result<bool>;
    /// The application's open incident, if it has one.
    async fn open_incident_of(&self, tenant: &str, app: &str) -> Result<Option<Incident>>;
    async fn incident(&self, id: &str) -> Result<Option<Incident>>;
    /// Newest first, at most `limit`: one tenant's, or every one.
    async fn incidents(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<Incident>>;
    /// Closes an open incident and returns it closed; [`StoreError::NotFound`]
    /// when there is none, [`StoreError::InUse`] when it is closed already.
    /// The application's new mail is no longer held; what is held stays.
    async fn resolve_incident(&self, id: &str, resolution: Resolution) -> Result<Incident>;
    /// Held messages (without content) and the incident each is held
    /// under, oldest first: one tenant's or all, at most `limit`.
    async fn held(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<(QueuedMessage, String)>>;
    /// Releases a held message: due now, counted by `metering` as if sent
    /// now (its caps are not applied: a person decided), with its
    /// `released` event, in one atomic step. [`StoreError::NotFound`] when
    /// it is not held.
    async fn release_held(&self, id: &QueueId, metering: Option<Metering>, now_ms: u64) -> Result<()>;
    /// Removes a held message with its `discarded` event.
    /// [`StoreError::NotFound`] when it is not held.
    async fn discard_held(&self, id: &QueueId, now_ms: u64) -> Result<()>;
    /// Keeps an application's figures of finished hours for its baseline
    /// (an hour saved again is replaced), and forgets its hours before
    /// `keep_from`.
    async fn save_figures(&self, tenant: &str, app: &str, figures: &[HourFigures], keep_from: u64) -> Result<()>;
    /// An application's kept figures for the hours `from..to`, in order.
    async fn figures(&self, tenant: &str, app: &str, from: u64, to: u64) -> Result<Vec<HourFigures>>;
    /// Remembers that the application signed in from `address`. When the
    /// address is new to it and it had signed in from others before, keeps
    /// that as a fact for the watch and says so.
    async fn note_source(&self, tenant: &str, app: &str, address: IpAddr, at_ms: u64) -> Result<bool>;
    /// Keeps the fact that the application signed in soon after a
    /// password-guessing lockout on it.
    async fn note_after_lockout(&self, tenant: &str, app: &str, at_ms: u64) -> Result<()>;
    /// Every application's sign-in facts since `since_ms`, oldest first
    /// (kept for [`SIGN_IN_FACTS_MS`](ferry_core::incident::SIGN_IN_FACTS_MS)).
    async fn sign_in_facts(&self, since_ms: u64) -> Result<Vec<SignInFact>>;
}

/// Each tenant's suppression list (see `ferry_core::suppression`).
#[async_trait]
pub trait Suppressions: Send + Sync {
    /// The entry for `recipient` (normalised) in force at `now_ms`.
    async fn suppression(&self, tenant: &str, recipient: &str, now_ms: u64) -> Result<Option<Suppression>>;
    /// The tenant's entries whose address contains `search` (all when
    /// `None`), in address order, at most `limit`; lapsed ones included.
    async fn suppressions(&self, tenant: &str, search: Option<&str>, limit: usize) -> Result<Vec<Suppression>>;
    /// Removes an entry; whether there was one.
    async fn unsuppress(&self, tenant: &str, recipient: &str) -> Result<bool>;
    /// Counts one soft bounce for each recipient at `now_ms` and returns
    /// each one's count within the last `window_ms` (this one included).
    /// Need not be durable.
    async fn count_soft_bounces(
        &self,
        tenant: &str,
        recipients: &[String],
        now_ms: u64,
        window_ms: u64,
    ) -> Result<Vec<u32>>;
}

/// Which samples to read: all the conditions given hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleQuery {
    pub tenant: Option<String>,
    pub app: Option<String>,
    pub id: Option<String>,
    pub from_ms: u64,
    pub to_ms: u64,
    pub limit: usize,
}

impl SampleQuery {
    pub fn matches(&self, s: &Sample) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == s.tenant)
            && self.app.as_ref().is_none_or(|a| *a == s.app)
            && self.id.as_ref().is_none_or(|i| i.eq_ignore_ascii_case(&s.id))
    }
}

/// Kept messages (see `ferry_core::sample`). Not durable beyond the
/// store's own: a sample lost in a crash is only a sample.
#[async_trait]
pub trait Samples: Send + Sync {
    async fn put_sample(&self, sample: Sample) -> Result<()>;
    /// Oldest first, within [from_ms, to_ms), at most `limit`.
    async fn samples(&self, query: SampleQuery) -> Result<Vec<Sample>>;
    /// Removes the samples taken before `before_ms`; how many.
    async fn purge_samples(&self, before_ms: u64) -> Result<usize>;
}

/// How much mail waits, and how long the most overdue of it has waited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub queued: usize,
    /// Due now (not leased, not waiting for a retry).
    pub due: usize,
    /// The earliest due time among queued messages (leased ones count
    /// from their lease's end).
    pub earliest_due_ms: Option<u64>,
}

/// Failed sign-ins, counted for every node alike (see `ferry_core::lockout`).
/// None of it needs to survive a crash: a lost count only forgives.
#[async_trait]
pub trait SignIns: Send + Sync {
    /// The three counters of `username` at `address`.
    async fn sign_in_state(&self, username: &str, address: IpAddr) -> Result<SignInState>;
    /// Counts one failure under all three rules; returns the lockouts it started.
    async fn count_failure(
        &self,
        username: &str,
        address: IpAddr,
        rules: &LockoutRules,
        now_ms: u64,
    ) -> Result<Vec<Lockout>>;
    /// Forgets the pair's failures after a success.
    async fn clear_pair(&self, username: &str, address: IpAddr) -> Result<()>;
    /// Every lockout in force at `now_ms`.
    async fn lockouts(&self, now_ms: u64) -> Result<Vec<Lockout>>;
    /// Lifts the lockouts in force that name `username` or `address`,
    /// forgetting their failures; returns how many it lifted.
    async fn lift_lockouts(&self, username: Option<&str>, address: Option<IpAddr>, now_ms: u64) -> Result<usize>;
}

/// A complete backend.
pub trait Store: Directory + Queue + Ledger + SignIns + Samples + Events + Suppressions + Incidents {}
impl<T: Directory + Queue + Ledger + SignIns + Samples + Events + Suppressions + Incidents> Store for T {}

/// Whether `units` more would stay within every hard cap of the tenant and
/// the application: the check at MAIL and RCPT (and in explain), before a
/// message exists. The enqueue applies the same caps atomically.
pub async fn cap_room(
    ledger: &dyn Ledger,
    terms: &ferry_core::contract::Terms,
    tenant: &Tenant,
    app: &Application,
    units: u64,
    now_ms: u64,
) -> std::result::Result<(), ferry_core::refusal::Refusal> {
    use ferry_core::refusal::Refusal;
    // Only caps matter here: no thresholds or forecasts on the MAIL/RCPT path.
    let wanted = Usage {
        messages: 1,
        recipients: units,
        bytes: 0,
    }
    .units(terms.unit);
    for cap in ferry_core::metering::caps(terms, tenant, app, now_ms) {
        let used = match ledger.usage(&cap.scope, cap.window).await {
            Ok(u) => u.units(terms.unit),
            Err(e) => return Err(Refusal::StoreUnavailable(e.to_string())),
        };
        if used + wanted > cap.limit {
            return Err(Refusal::CapReached {
                name: cap.name.clone(),
                temporary: cap.temporary,
            });
        }
    }
    Ok(())
}
