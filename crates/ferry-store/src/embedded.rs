//! The embedded backend: one redb file (ACID, fsync on commit).
//!
//! All writes go through one writer thread that takes every request waiting
//! at that moment and commits them in one transaction: group commit, so a
//! hundred sessions finishing DATA together share one fsync instead of
//! paying one each. Reads run on tokio's blocking pool against redb's MVCC
//! snapshots and never wait for the writer.
//!
//! The writer is a [`StoreWriter`]: [`EmbeddedStore::open`] runs it on a
//! thread of its own; [`EmbeddedStore::open_supervised`] hands it to the
//! relay's supervisor, which runs it again should it ever die.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_core::audit::AuditEntry;
use ferry_core::lockout::{self, Lockout, LockoutRules, SignInState, Subject};
use ferry_core::outcome::{self, Outcome as OutcomeKind, OutcomeCount};
use ferry_core::sample::Sample;
use ferry_core::token::ApiToken;
use ferry_core::{Application, QueueId, QueuedMessage, Tenant};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::ledger::{self, ALERT_TIMES, ALERTS, COUNTERS};
use crate::{
    Backlog, Changes, Directory, Events, Ledger, Next, Queue, QueueEntry, Result, SampleQuery, Samples, SignIns,
    StoreError, Suppressions, decode, encode,
};
use crate::{Incidents, incidents, log, signins};
use ferry_core::contract::ContractYear;
use ferry_core::dkim::DkimKeyRecord;
use ferry_core::event::{EventKind, EventRecord, ReceiverState};
use ferry_core::incident::{HourFigures, Incident, Resolution, SignInFact, SignInKind};
use ferry_core::metering::{Alert, Metering, Window};
use ferry_core::return_path::{BounceKey, Sent};
use ferry_core::suppression::Suppression;
use ferry_core::usage::{HourUsage, Scope, Usage};

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
/// "domain/selector" → DKIM key.
const DKIM_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("dkim_keys");
const ENVELOPES: TableDefinition<&str, &[u8]> = TableDefinition::new("envelopes");
const CONTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contents");
/// (due time, id): the queue in due order.
const SCHEDULE: TableDefinition<(u64, &str), ()> = TableDefinition::new("schedule");
/// id → due time, to find a message's schedule entry.
const DUE: TableDefinition<&str, u64> = TableDefinition::new("due");
/// id → the due time a leased message had before it was taken.
const LEASES: TableDefinition<&str, u64> = TableDefinition::new("leases");
/// id → the token of the message's latest lease, which fences `record`.
const LEASE_TOKENS: TableDefinition<&str, &str> = TableDefinition::new("lease_tokens");
/// Admin API tokens by id.
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// (at, entry id) → the audit entry.
const AUDIT: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("audit");
/// Single numbers: `directory_version`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (taken at, id) → the sample (JSON).
const SAMPLES: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("samples");
const DIRECTORY_VERSION: &str = "directory_version";

/// Requests served by the writer thread; the largest batch it commits at once.
const MAX_BATCH: usize = 512;

/// Writes that may wait for the writer at once: four batches. Past it a
/// write that can be shed (a message to spool, a count, a sample) is
/// refused with [`StoreError::Busy`] at once, and the others (delivery's
/// leases and results, the directory) wait for room: under a burst beyond
/// what the disk commits, clients are told to retry instead of memory
/// growing until the process dies.
pub const WRITE_QUEUE_MAX: usize = 4 * MAX_BATCH;

enum WriteOp {
    CreateTenant(Tenant),
    PutDkimKey(Box<DkimKeyRecord>),
    AddBounceKey(Box<BounceKey>, Option<char>),
    PutToken(Box<ApiToken>),
    UpdateTenant(Tenant),
    CreateApp(Application),
    UpdateApp(Application),
    DeleteApp(String),
    DeleteTenant(String),
    AppendAudit(Box<AuditEntry>),
    CountOutcomes(Vec<OutcomeCount>),
    Enqueue(Box<QueuedMessage>, Option<Box<Metering>>),
    AlertDelivered(String, u64),
    AlertRetry(String, u64),
    Lease {
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    },
    ClaimAlerts {
        now_ms: u64,
        lease_ms: u64,
        max: usize,
    },
    Complete(QueueId),
    Record(Box<QueuedMessage>, Next, Box<Changes>),
    AppendEvents(Box<Changes>),
    OpenIncident(Box<Incident>),
    ReleaseHeld {
        id: QueueId,
        metering: Option<Box<Metering>>,
        now_ms: u64,
    },
    DiscardHeld(QueueId, u64),
    ResolveIncident(String, Box<Resolution>),
    NoteSignIn(Box<SignInFact>),
    RaiseAlert(Box<Alert>),
    SaveFigures {
        tenant: String,
        app: String,
        figures: Vec<HourFigures>,
        keep_from: u64,
    },
    HoldReceiver {
        receiver: String,
        holder: String,
        now_ms: u64,
        hold_ms: u64,
    },
    SaveReceiver {
        receiver: String,
        holder: String,
        state: Box<ReceiverState>,
    },
    PurgeEvents(u64),
    Unsuppress {
        tenant: String,
        recipient: String,
    },
    CountSoftBounces {
        tenant: String,
        recipients: Vec<String>,
        now_ms: u64,
        window_ms: u64,
    },
    RetryNow(QueueId, u64),
    ExtendLeases {
        held: Vec<(QueueId, u64)>,
        until_ms: u64,
    },
    CountFailure {
        username: String,
        address: IpAddr,
        rules: LockoutRules,
        now_ms: u64,
    },
    ClearPair {
        username: String,
        address: IpAddr,
    },
    LiftLockouts {
        username: Option<String>,
        address: Option<IpAddr>,
        now_ms: u64,
    },
    PutSample(Box<Sample>),
    PurgeSamples(u64),
}

impl WriteOp {
    /// Whether the caller relies on the write surviving a crash. A lost
    /// lease or claim only makes a message or an alert due again sooner.
    fn needs_sync(&self) -> bool {
        !matches!(
            self,
            WriteOp::Lease { .. }
                | WriteOp::ClaimAlerts { .. }
                | WriteOp::ExtendLeases { .. }
                | WriteOp::CountOutcomes(_)
                | WriteOp::CountFailure { .. }
                | WriteOp::ClearPair { .. }
                | WriteOp::LiftLockouts { .. }
                | WriteOp::PutSample(_)
                | WriteOp::PurgeSamples(_)
                | WriteOp::PurgeEvents(_)
                | WriteOp::CountSoftBounces { .. }
                // Lost, a webhook's hold or progress only sends some events again.
                | WriteOp::HoldReceiver { .. }
                | WriteOp::SaveReceiver { .. }
        )
    }

    /// Whether a full writer refuses this write rather than waiting for
    /// room: what a client retries (a message to spool) or what may be
    /// lost (counts, samples); never a delivery result or a lockout count.
    fn sheddable(&self) -> bool {
        matches!(
            self,
            WriteOp::Enqueue(..) | WriteOp::CountOutcomes(_) | WriteOp::PutSample(_)
        )
    }

    fn changes_directory(&self) -> bool {
        matches!(
            self,
            WriteOp::CreateTenant(_)
                | WriteOp::UpdateTenant(_)
                | WriteOp::CreateApp(_)
                | WriteOp::UpdateApp(_)
                | WriteOp::DeleteApp(_)
                | WriteOp::DeleteTenant(_)
                | WriteOp::PutDkimKey(_)
                | WriteOp::AddBounceKey(..)
        )
    }
}

enum Outcome {
    Done,
    Leased(Vec<QueuedMessage>),
    Claimed(Vec<Alert>),
    Extended(Vec<QueueId>),
    Lockouts(Vec<Lockout>),
    Removed(usize),
    Counts(Vec<u32>),
    /// A conditional write: whether it was made.
    Applied(bool),
    Receiver(Option<ReceiverState>),
    Incident(Box<Incident>),
}

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Job>,
}

pub(crate) fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

/// The one writer of an embedded store. Whoever runs it owns the store's
/// commits; while it is not running, writes wait for it (none is lost).
pub struct StoreWriter {
    db: Arc<Database>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
}

impl StoreWriter {
    /// Commits batches until every handle of the store is gone; blocks. A
    /// panic in a commit fails that batch's callers (their replies are
    /// dropped) and unwinds out of here; running it again resumes with the
    /// requests still waiting.
    pub fn run(&self) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        write_loop(&self.db, &mut jobs);
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        let (store, writer) = Self::open_supervised(path)?;
        std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(store)
    }

    /// Opens (or creates) the store file; its writer is the caller's to run.
    pub fn open_supervised(path: &Path) -> Result<(Self, StoreWriter)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.display().to_string()),
            other => StoreError::Unavailable(format!("{}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(TENANTS).map_err(backend)?;
            txn.open_table(APPS).map_err(backend)?;
            txn.open_table(ENVELOPES).map_err(backend)?;
            txn.open_table(CONTENTS).map_err(backend)?;
            txn.open_table(SCHEDULE).map_err(backend)?;
            txn.open_table(DUE).map_err(backend)?;
            txn.open_table(DKIM_KEYS).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
            txn.open_table(TOKENS).map_err(backend)?;
            txn.open_table(AUDIT).map_err(backend)?;
            txn.open_table(SAMPLES).map_err(backend)?;
            ledger::create_tables(&txn)?;
            log::create_tables(&txn)?;
            incidents::create_tables(&txn)?;
            signins::create_tables(&txn)?;
            release_leases(&txn)?;
        }
        txn.commit().map_err(backend)?;
        let db = Arc::new(db);
        let (writer, jobs) = mpsc::channel(WRITE_QUEUE_MAX);
        let runner = StoreWriter {
            db: db.clone(),
            jobs: Arc::new(Mutex::new(jobs)),
        };
        Ok((EmbeddedStore { db, writer }, runner))
    }

    async fn write(&self, op: WriteOp) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("writer thread stopped".into());
        let job = Job { op, reply };
        if job.op.sheddable() {
            self.writer.try_send(job).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => stopped(),
            })?;
        } else {
            self.writer.send(job).await.map_err(|_| stopped())?;
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db.begin_read().map_err(backend)?))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }
}

fn write_loop(db: &Database, jobs: &mut mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(db, batch);
    }
}

/// Applies every job in one transaction. A job's own refusal (a name
/// taken) fails that job alone; a storage failure fails them all, and no
/// caller is told "done" before the commit returned.
fn commit_batch(db: &Database, batch: Vec<Job>) {
    let sync = batch.iter().any(|j| j.op.needs_sync());
    let (ops, replies): (Vec<WriteOp>, Vec<_>) = batch.into_iter().map(|j| (j.op, j.reply)).unzip();
    let result = (|| -> Result<Vec<Result<Outcome>>> {
        let mut txn = db.begin_write().map_err(backend)?;
        txn.set_durability(if sync { Durability::Immediate } else { Durability::None });
        let outcomes = ops
            .iter()
            .map(|op| apply_counted(&txn, op))
            .collect::<Result<Vec<_>>>()?;
        txn.commit().map_err(backend)?;
        Ok(outcomes)
    })();
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, jobs = replies.len(), "store commit failed");
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
            }
        }
    }
}

/// [`apply`], and a directory change bumps the directory version.
fn apply_counted(txn: &redb::WriteTransaction, op: &WriteOp) -> Result<Result<Outcome>> {
    let outcome = apply(txn, op)?;
    if outcome.is_ok() && op.changes_directory() {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let version = meta.get(DIRECTORY_VERSION).map_err(backend)?.map_or(0, |v| v.value());
        meta.insert(DIRECTORY_VERSION, version + 1).map_err(backend)?;
    }
    Ok(outcome)
}

/// One operation inside the batch transaction. The outer error is a storage
/// failure (abort everything); the inner one is this job's own answer.
fn apply(txn: &redb::WriteTransaction, op: &WriteOp) -> Result<Result<Outcome>> {
    match op {
        WriteOp::CreateTenant(t) | WriteOp::UpdateTenant(t) => {
            let creating = matches!(op, WriteOp::CreateTenant(_));
            let mut table = txn.open_table(TENANTS).map_err(backend)?;
            let exists = table.get(t.name.as_str()).map_err(backend)?.is_some();
            if creating && exists {
                return Ok(Err(StoreError::AlreadyExists(format!("tenant {}", t.name))));
            }
            if !creating && !exists {
                return Ok(Err(StoreError::NotFound(format!("tenant {}", t.name))));
            }
            table.insert(t.name.as_str(), encode(t).as_slice()).map_err(backend)?;
        }
        WriteOp::CreateApp(app) | WriteOp::UpdateApp(app) => {
            let creating = matches!(op, WriteOp::CreateApp(_));
            if txn
                .open_table(TENANTS)
                .map_err(backend)?
                .get(app.tenant.as_str())
                .map_err(backend)?
                .is_none()
            {
                return Ok(Err(StoreError::NotFound(format!("tenant {}", app.tenant))));
            }
            let mut table = txn.open_table(APPS).map_err(backend)?;
            let exists = table.get(app.username.as_str()).map_err(backend)?.is_some();
            if creating && exists {
                return Ok(Err(StoreError::AlreadyExists(format!("application {}", app.username))));
            }
            if !creating && !exists {
                return Ok(Err(StoreError::NotFound(format!("application {}", app.username))));
            }
            table
                .insert(app.username.as_str(), encode(app).as_slice())
                .map_err(backend)?;
        }
        WriteOp::Enqueue(m, metering) => return enqueue(txn, m, metering.as_deref()),
        WriteOp::AddBounceKey(key, after) => {
            return log::add_bounce_key(txn, key, *after).map(|added| Ok(Outcome::Applied(added)));
        }
        WriteOp::PutDkimKey(key) => {
            let name = format!("{}/{}", key.domain, key.selector);
            txn.open_table(DKIM_KEYS)
                .map_err(backend)?
                .insert(name.as_str(), encode(key).as_slice())
                .map_err(backend)?;
        }
        WriteOp::PutToken(token) => {
            txn.open_table(TOKENS)
                .map_err(backend)?
                .insert(token.id.as_str(), encode(token).as_slice())
                .map_err(backend)?;
        }
        WriteOp::AlertDelivered(id, at_ms) => {
            return ledger::alert_state(txn, id, |alert, outbox| {
                alert.attempts += 1;
                alert.delivered_ms = Some(*at_ms);
                outbox.remove(id.as_str()).map_err(backend)?;
                Ok(())
            })
            .map(|r| r.map(|()| Outcome::Done));
        }
        WriteOp::AlertRetry(id, due_ms) => {
            return ledger::alert_state(txn, id, |alert, outbox| {
                alert.attempts += 1;
                outbox.insert(id.as_str(), *due_ms).map_err(backend)?;
                Ok(())
            })
            .map(|r| r.map(|()| Outcome::Done));
        }
        WriteOp::Lease { now_ms, lease_ms, max } => {
            return lease(txn, *now_ms, *lease_ms, *max).map(|l| Ok(Outcome::Leased(l)));
        }
        WriteOp::ExtendLeases { held, until_ms } => {
            return extend_leases(txn, held, *until_ms).map(|ids| Ok(Outcome::Extended(ids)));
        }
        WriteOp::ClaimAlerts { now_ms, lease_ms, max } => {
            return ledger::claim_alerts(txn, *now_ms, now_ms.saturating_add(*lease_ms), *max)
                .map(|a| Ok(Outcome::Claimed(a)));
        }
        WriteOp::Complete(id) => remove_message(txn, id.as_str())?,
        WriteOp::DeleteApp(name) => {
            let mut apps = txn.open_table(APPS).map_err(backend)?;
            if apps.remove(name.as_str()).map_err(backend)?.is_none() {
                return Ok(Err(StoreError::NotFound(format!("application {name}"))));
            }
        }
        WriteOp::DeleteTenant(name) => return delete_tenant(txn, name),
        WriteOp::AppendAudit(entry) => {
            txn.open_table(AUDIT)
                .map_err(backend)?
                .insert((entry.at_ms, entry.id.as_str()), encode(entry).as_slice())
                .map_err(backend)?;
        }
        WriteOp::CountOutcomes(counts) => ledger::add_outcomes(txn, counts)?,
        WriteOp::PutSample(sample) => {
            txn.open_table(SAMPLES)
                .map_err(backend)?
                .insert((sample.at_ms, sample.id.as_str()), encode(sample).as_slice())
                .map_err(backend)?;
        }
        WriteOp::PurgeSamples(before_ms) => {
            let mut table = txn.open_table(SAMPLES).map_err(backend)?;
            let mut removed = 0;
            for entry in table
                .extract_from_if((0, "")..(*before_ms, ""), |_, _| true)
                .map_err(backend)?
            {
                entry.map_err(backend)?;
                removed += 1;
            }
            return Ok(Ok(Outcome::Removed(removed)));
        }
        WriteOp::CountFailure {
            username,
            address,
            rules,
            now_ms,
        } => {
            let started = signins::count_failure(txn, username, *address, rules, *now_ms)?;
            return Ok(Ok(Outcome::Lockouts(started)));
        }
        WriteOp::ClearPair { username, address } => {
            let [pair, ..] = Subject::of_attempt(username, *address);
            signins::forget(txn, &pair)?;
        }
        WriteOp::LiftLockouts {
            username,
            address,
            now_ms,
        } => {
            let removed = signins::remove(txn, |s, count| {
                count.locked(*now_ms)
                    && (username.is_some() && s.username == *username || address.is_some() && s.address == *address)
            })?;
            return Ok(Ok(Outcome::Removed(removed)));
        }
        WriteOp::AppendEvents(changes) => log::append(txn, changes)?,
        WriteOp::ReleaseHeld { id, metering, now_ms } => {
            return unhold(txn, id, *now_ms, Some(metering.as_deref()));
        }
        WriteOp::DiscardHeld(id, now_ms) => return unhold(txn, id, *now_ms, None),
        WriteOp::OpenIncident(incident) => {
            return incidents::open(txn, incident).map(|opened| Ok(Outcome::Applied(opened)));
        }
        WriteOp::ResolveIncident(id, resolution) => {
            return incidents::resolve(txn, id, resolution).map(|r| r.map(|i| Outcome::Incident(Box::new(i))));
        }
        WriteOp::SaveFigures {
            tenant,
            app,
            figures,
            keep_from,
        } => incidents::save_figures(txn, tenant, app, figures, *keep_from)?,
        WriteOp::RaiseAlert(alert) => {
            let exists = txn
                .open_table(ledger::ALERTS)
                .map_err(backend)?
                .get(alert.id.as_str())
                .map_err(backend)?
                .is_some();
            if !exists {
                ledger::put_alert(txn, alert)?;
            }
            return Ok(Ok(Outcome::Applied(!exists)));
        }
        WriteOp::NoteSignIn(fact) => {
            let kept = match fact.kind {
                SignInKind::NewSource(_) => incidents::note_source(txn, fact)?,
                SignInKind::AfterLockout => incidents::keep_fact(txn, fact).map(|()| true)?,
            };
            return Ok(Ok(Outcome::Applied(kept)));
        }
        WriteOp::HoldReceiver {
            receiver,
            holder,
            now_ms,
            hold_ms,
        } => {
            let held = log::hold_receiver(txn, receiver, holder, *now_ms, *hold_ms)?;
            return Ok(Ok(Outcome::Receiver(held)));
        }
        WriteOp::SaveReceiver {
            receiver,
            holder,
            state,
        } => {
            return log::save_receiver(txn, receiver, holder, state).map(|saved| Ok(Outcome::Applied(saved)));
        }
        WriteOp::PurgeEvents(before_ms) => return log::purge(txn, *before_ms).map(|n| Ok(Outcome::Removed(n))),
        WriteOp::Unsuppress { tenant, recipient } => {
            let removed = log::unsuppress(txn, tenant, recipient)?;
            return Ok(Ok(Outcome::Removed(usize::from(removed))));
        }
        WriteOp::CountSoftBounces {
            tenant,
            recipients,
            now_ms,
            window_ms,
        } => {
            let counts = log::count_soft_bounces(txn, tenant, recipients, *now_ms, *window_ms)?;
            return Ok(Ok(Outcome::Counts(counts)));
        }
        WriteOp::Record(message, next, changes) => {
            let id = message.id.as_str();
            let mut envelopes = txn.open_table(ENVELOPES).map_err(backend)?;
            let Some(stored) = envelopes.get(id).map_err(backend)?.map(|v| v.value().to_vec()) else {
                return Ok(Err(StoreError::NotFound(format!("message {id}"))));
            };
            if !holds_lease(txn, id, message.lease.as_deref())? {
                return Ok(Err(StoreError::LeaseLost(id.to_string())));
            }
            let due_ms = match next {
                Next::Done => {
                    drop(envelopes);
                    remove_message(txn, id)?;
                    ledger::add_outcomes(txn, &outcome::at_delivery(message, true))?;
                    log::append(txn, changes)?;
                    return Ok(Ok(Outcome::Done));
                }
                Next::RetryAt(due_ms) => Some(*due_ms),
                Next::Continue => None,
            };
            let mut saved = (**message).clone();
            saved.attempts += u32::from(due_ms.is_some());
            let encoded = encode(&saved);
            // The same record again (a retry after a lost reply) counts nothing twice.
            if stored == encoded {
                return Ok(Ok(Outcome::Done));
            }
            envelopes.insert(id, encoded.as_slice()).map_err(backend)?;
            drop(envelopes);
            log::append(txn, changes)?;
            if let Some(due_ms) = due_ms {
                ledger::add_outcomes(txn, &outcome::at_delivery(message, false))?;
                unschedule(txn, id)?;
                schedule(txn, id, due_ms)?;
            }
        }
        WriteOp::RetryNow(id, now_ms) => {
            if txn
                .open_table(DUE)
                .map_err(backend)?
                .get(id.as_str())
                .map_err(backend)?
                .is_none()
            {
                return Ok(Err(StoreError::NotFound(format!("message {id}"))));
            }
            unschedule(txn, id.as_str())?;
            schedule(txn, id.as_str(), *now_ms)?;
        }
    }
    Ok(Ok(Outcome::Done))
}

/// A held message released (`Some(metering)`: due now, counted now) or
/// discarded (`None`: removed), with its event.
fn unhold(
    txn: &redb::WriteTransaction,
    id: &QueueId,
    now_ms: u64,
    release: Option<Option<&Metering>>,
) -> Result<Result<Outcome>> {
    if !incidents::unhold(txn, id.as_str())? {
        return Ok(Err(StoreError::NotFound(format!("held message {id}"))));
    }
    let message: QueuedMessage = {
        let envelopes = txn.open_table(ENVELOPES).map_err(backend)?;
        let envelope = envelopes.get(id.as_str()).map_err(backend)?;
        match envelope {
            Some(e) => decode(e.value())?,
            None => return Ok(Err(StoreError::NotFound(format!("message {id}")))),
        }
    };
    let kind = match release {
        Some(metering) => {
            schedule(txn, id.as_str(), now_ms)?;
            if let Some(metering) = metering {
                ledger::apply_metering(txn, metering)?;
            }
            EventKind::Released
        }
        None => {
            remove_message(txn, id.as_str())?;
            EventKind::Discarded
        }
    };
    let outcome = match kind {
        EventKind::Released => OutcomeKind::Released,
        _ => OutcomeKind::Discarded,
    };
    ledger::add_outcomes(txn, &[OutcomeCount::message(&message, outcome, now_ms)])?;
    let changes = Changes {
        events: vec![EventRecord::about(&message, kind, now_ms)],
        suppress: Vec::new(),
    };
    log::append(txn, &changes)?;
    Ok(Ok(Outcome::Done))
}

/// Spools a message: due now and metered, or held (neither) while its
/// application is under an incident that holds its mail.
fn enqueue(txn: &redb::WriteTransaction, m: &QueuedMessage, metering: Option<&Metering>) -> Result<Result<Outcome>> {
    let holding = incidents::holding(txn, &m.tenant, &m.app)?;
    if holding.is_none()
        && let Some(metering) = metering
        && let Err(refusal) = ledger::check_caps(txn, metering)?
    {
        return Ok(Err(refusal));
    }
    let id = m.id.as_str();
    txn.open_table(ENVELOPES)
        .map_err(backend)?
        .insert(id, encode(m).as_slice())
        .map_err(backend)?;
    txn.open_table(CONTENTS)
        .map_err(backend)?
        .insert(id, m.content.as_slice())
        .map_err(backend)?;
    let mut events: Vec<EventRecord> = EventRecord::accepted(m).into_iter().collect();
    match &holding {
        None => {
            schedule(txn, id, m.received_ms)?;
            if let Some(metering) = metering {
                ledger::apply_metering(txn, metering)?;
            }
        }
        Some(incident) => {
            incidents::hold(txn, id, incident)?;
            events.push(EventRecord::about(m, EventKind::Held, m.received_ms));
            ledger::add_outcomes(txn, &[OutcomeCount::message(m, OutcomeKind::Held, m.received_ms)])?;
        }
    }
    if let Some(sent) = Sent::of(m) {
        log::put_sent(txn, &sent)?;
    }
    log::append(
        txn,
        &Changes {
            events,
            suppress: Vec::new(),
        },
    )?;
    Ok(Ok(Outcome::Done))
}

/// The file lock means no other process can hold a lease on this store, so
/// every lease found at open belonged to a process that died: its messages
/// are due again at once instead of when the lease would have run out.
fn release_leases(txn: &redb::WriteTransaction) -> Result<()> {
    let leased: Vec<(String, u64)> = {
        let table = txn.open_table(LEASES).map_err(backend)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(backend)? {
            let (id, due) = entry.map_err(backend)?;
            out.push((id.value().to_string(), due.value()));
        }
        out
    };
    for (id, due) in &leased {
        unschedule(txn, id)?;
        schedule(txn, id, *due)?;
    }
    if !leased.is_empty() {
        tracing::info!(messages = leased.len(), "released the leases of a previous process");
    }
    txn.delete_table(LEASES).map_err(backend)?;
    txn.open_table(LEASES).map_err(backend)?;
    Ok(())
}

/// Whether `lease` (None: a write not made under a lease) is still the
/// message's latest lease.
fn holds_lease(txn: &redb::WriteTransaction, id: &str, lease: Option<&str>) -> Result<bool> {
    let Some(lease) = lease else { return Ok(true) };
    let tokens = txn.open_table(LEASE_TOKENS).map_err(backend)?;
    let current = tokens.get(id).map_err(backend)?;
    Ok(current.is_some_and(|t| t.value() == lease))
}

fn remove_message(txn: &redb::WriteTransaction, id: &str) -> Result<()> {
    unschedule(txn, id)?;
    txn.open_table(LEASE_TOKENS)
        .map_err(backend)?
        .remove(id)
        .map_err(backend)?;
    txn.open_table(ENVELOPES)
        .map_err(backend)?
        .remove(id)
        .map_err(backend)?;
    txn.open_table(CONTENTS).map_err(backend)?.remove(id).map_err(backend)?;
    Ok(())
}

fn schedule(txn: &redb::WriteTransaction, id: &str, due_ms: u64) -> Result<()> {
    txn.open_table(SCHEDULE)
        .map_err(backend)?
        .insert((due_ms, id), ())
        .map_err(backend)?;
    txn.open_table(DUE)
        .map_err(backend)?
        .insert(id, due_ms)
        .map_err(backend)?;
    Ok(())
}

fn unschedule(txn: &redb::WriteTransaction, id: &str) -> Result<()> {
    txn.open_table(LEASES).map_err(backend)?.remove(id).map_err(backend)?;
    let due = txn
        .open_table(DUE)
        .map_err(backend)?
        .remove(id)
        .map_err(backend)?
        .map(|v| v.value());
    if let Some(due) = due {
        txn.open_table(SCHEDULE)
            .map_err(backend)?
            .remove((due, id))
            .map_err(backend)?;
    }
    Ok(())
}

/// A lease is the schedule moved forward: the message is due again when the
/// lease runs out, so a worker that dies loses nothing.
fn lease(txn: &redb::WriteTransaction, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<QueuedMessage>> {
    let due: Vec<String> = {
        let table = txn.open_table(SCHEDULE).map_err(backend)?;
        let range = table
            .range((0u64, "")..(now_ms.saturating_add(1), ""))
            .map_err(backend)?;
        let mut ids = Vec::new();
        for entry in range.take(max) {
            let (key, _) = entry.map_err(backend)?;
            ids.push(key.value().1.to_string());
        }
        ids
    };
    let mut leased = Vec::with_capacity(due.len());
    let token = uuid::Uuid::now_v7().simple().to_string();
    for id in due {
        let previous = txn
            .open_table(DUE)
            .map_err(backend)?
            .get(id.as_str())
            .map_err(backend)?
            .map(|v| v.value());
        unschedule(txn, &id)?;
        schedule(txn, &id, now_ms.saturating_add(lease_ms))?;
        if let Some(previous) = previous {
            txn.open_table(LEASES)
                .map_err(backend)?
                .insert(id.as_str(), previous)
                .map_err(backend)?;
        }
        txn.open_table(LEASE_TOKENS)
            .map_err(backend)?
            .insert(id.as_str(), token.as_str())
            .map_err(backend)?;
        let mut message = load_message(
            &txn.open_table(ENVELOPES).map_err(backend)?,
            &txn.open_table(CONTENTS).map_err(backend)?,
            &id,
        )?;
        message.lease = Some(token.clone());
        leased.push(message);
    }
    Ok(leased)
}

/// Moves each lease still ending where its holder says to `until_ms`,
/// keeping the due time it had before it was leased (for a restart).
fn extend_leases(txn: &redb::WriteTransaction, held: &[(QueueId, u64)], until_ms: u64) -> Result<Vec<QueueId>> {
    let mut moved = Vec::with_capacity(held.len());
    for (id, held_until) in held {
        let id_str = id.as_str();
        let due = txn
            .open_table(DUE)
            .map_err(backend)?
            .get(id_str)
            .map_err(backend)?
            .map(|v| v.value());
        if due != Some(*held_until) {
            continue;
        }
        let before = txn
            .open_table(LEASES)
            .map_err(backend)?
            .get(id_str)
            .map_err(backend)?
            .map(|v| v.value());
        unschedule(txn, id_str)?;
        schedule(txn, id_str, until_ms)?;
        if let Some(before) = before {
            txn.open_table(LEASES)
                .map_err(backend)?
                .insert(id_str, before)
                .map_err(backend)?;
        }
        moved.push(id.clone());
    }
    Ok(moved)
}

fn load_message(
    envelopes: &impl ReadableTable<&'static str, &'static [u8]>,
    contents: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<QueuedMessage> {
    let envelope = envelopes
        .get(id)
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
    let mut m: QueuedMessage = decode(envelope.value())?;
    m.content = contents
        .get(id)
        .map_err(backend)?
        .map(|c| c.value().to_vec())
        .unwrap_or_default();
    Ok(m)
}

fn list<T: serde::de::DeserializeOwned>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>> {
    let table = txn.open_table(def).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(backend)? {
        let (_, value) = entry.map_err(backend)?;
        out.push(decode(value.value())?);
    }
    Ok(out)
}

fn get<T: serde::de::DeserializeOwned>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>> {
    let table = txn.open_table(def).map_err(backend)?;
    let value = table.get(key).map_err(backend)?;
    value.map(|v| decode(v.value())).transpose()
}

/// Refused while an application of the tenant remains.
fn delete_tenant(txn: &redb::WriteTransaction, name: &str) -> Result<Result<Outcome>> {
    let apps = txn.open_table(APPS).map_err(backend)?;
    for entry in apps.iter().map_err(backend)? {
        let (_, value) = entry.map_err(backend)?;
        let app: Application = decode(value.value())?;
        if app.tenant == name {
            return Ok(Err(StoreError::InUse(format!(
                "tenant {name} still has applications (such as {}); delete them first",
                app.username
            ))));
        }
    }
    let mut tenants = txn.open_table(TENANTS).map_err(backend)?;
    if tenants.remove(name).map_err(backend)?.is_none() {
        return Ok(Err(StoreError::NotFound(format!("tenant {name}"))));
    }
    Ok(Ok(Outcome::Done))
}

fn done(outcome: Result<Outcome>) -> Result<()> {
    outcome.map(|_| ())
}

#[async_trait]
impl Directory for EmbeddedStore {
    async fn create_tenant(&self, tenant: Tenant) -> Result<()> {
        done(self.write(WriteOp::CreateTenant(tenant)).await)
    }
    async fn put_dkim_key(&self, key: DkimKeyRecord) -> Result<()> {
        done(self.write(WriteOp::PutDkimKey(Box::new(key))).await)
    }
    async fn directory_version(&self) -> Result<u64> {
        self.read(|txn| {
            let meta = txn.open_table(META).map_err(backend)?;
            Ok(meta.get(DIRECTORY_VERSION).map_err(backend)?.map_or(0, |v| v.value()))
        })
        .await
    }
    async fn put_token(&self, token: ApiToken) -> Result<()> {
        done(self.write(WriteOp::PutToken(Box::new(token))).await)
    }
    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        let id = id.to_string();
        self.read(move |txn| get(txn, TOKENS, &id)).await
    }
    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        self.read(|txn| list(txn, TOKENS)).await
    }
    async fn dkim_keys(&self) -> Result<Vec<DkimKeyRecord>> {
        self.read(|txn| list(txn, DKIM_KEYS)).await
    }
    async fn add_bounce_key(&self, key: BounceKey, after: Option<char>) -> Result<bool> {
        match self.write(WriteOp::AddBounceKey(Box::new(key), after)).await? {
            Outcome::Applied(added) => Ok(added),
            _ => Ok(false),
        }
    }
    async fn bounce_keys(&self) -> Result<Vec<BounceKey>> {
        self.read(|txn| list(txn, log::BOUNCE_KEYS)).await
    }
    async fn update_tenant(&self, tenant: Tenant) -> Result<()> {
        done(self.write(WriteOp::UpdateTenant(tenant)).await)
    }
    async fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let name = name.to_string();
        self.read(move |txn| get(txn, TENANTS, &name)).await
    }
    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|txn| list(txn, TENANTS)).await
    }
    async fn create_app(&self, app: Application) -> Result<()> {
        done(self.write(WriteOp::CreateApp(app)).await)
    }
    async fn update_app(&self, app: Application) -> Result<()> {
        done(self.write(WriteOp::UpdateApp(app)).await)
    }
    async fn app(&self, username: &str) -> Result<Option<Application>> {
        let username = username.to_string();
        self.read(move |txn| get(txn, APPS, &username)).await
    }
    async fn apps(&self, tenant: Option<&str>) -> Result<Vec<Application>> {
        let tenant = tenant.map(str::to_string);
        let apps: Vec<Application> = self.read(|txn| list(txn, APPS)).await?;
        Ok(apps
            .into_iter()
            .filter(|a| tenant.as_ref().is_none_or(|t| *t == a.tenant))
            .collect())
    }
    async fn delete_app(&self, username: &str) -> Result<()> {
        done(self.write(WriteOp::DeleteApp(username.to_string())).await)
    }
    async fn delete_tenant(&self, name: &str) -> Result<()> {
        done(self.write(WriteOp::DeleteTenant(name.to_string())).await)
    }
    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        done(self.write(WriteOp::AppendAudit(Box::new(entry))).await)
    }
    async fn audit(&self, from_ms: u64, to_ms: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(move |txn| {
            let table = txn.open_table(AUDIT).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.range((from_ms, "")..(to_ms, "")).map_err(backend)?.take(limit) {
                let (_, value) = entry.map_err(backend)?;
                out.push(decode(value.value())?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Queue for EmbeddedStore {
    async fn enqueue(&self, message: QueuedMessage, metering: Option<Metering>) -> Result<()> {
        done(
            self.write(WriteOp::Enqueue(Box::new(message), metering.map(Box::new)))
                .await,
        )
    }
    async fn lease(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<QueuedMessage>> {
        match self.write(WriteOp::Lease { now_ms, lease_ms, max }).await? {
            Outcome::Leased(messages) => Ok(messages),
            _ => Ok(Vec::new()),
        }
    }
    async fn extend_leases(&self, held: &[(QueueId, u64)], until_ms: u64) -> Result<Vec<QueueId>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let op = WriteOp::ExtendLeases {
            held: held.to_vec(),
            until_ms,
        };
        match self.write(op).await? {
            Outcome::Extended(ids) => Ok(ids),
            _ => Ok(Vec::new()),
        }
    }
    async fn record(&self, message: &QueuedMessage, next: Next, changes: &Changes) -> Result<()> {
        let mut state = message.clone();
        state.content = Vec::new();
        let op = WriteOp::Record(Box::new(state), next, Box::new(changes.clone()));
        done(self.write(op).await)
    }
    async fn get(&self, id: &QueueId) -> Result<Option<QueuedMessage>> {
        let id = id.clone();
        self.read(move |txn| {
            let envelopes = txn.open_table(ENVELOPES).map_err(backend)?;
            let contents = txn.open_table(CONTENTS).map_err(backend)?;
            match load_message(&envelopes, &contents, id.as_str()) {
                Ok(m) => Ok(Some(m)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }
    async fn list(&self, limit: usize) -> Result<Vec<QueueEntry>> {
        self.read(move |txn| {
            let schedule = txn.open_table(SCHEDULE).map_err(backend)?;
            let envelopes = txn.open_table(ENVELOPES).map_err(backend)?;
            let contents = txn.open_table(CONTENTS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in schedule.iter().map_err(backend)?.take(limit) {
                let (key, _) = entry.map_err(backend)?;
                let (due_ms, id) = key.value();
                let Some(envelope) = envelopes.get(id).map_err(backend)? else {
                    continue;
                };
                let size = contents.get(id).map_err(backend)?.map_or(0, |c| c.value().len());
                out.push(QueueEntry {
                    message: decode(envelope.value())?,
                    due_ms,
                    size,
                });
            }
            Ok(out)
        })
        .await
    }
    async fn retry_now(&self, id: &QueueId, now_ms: u64) -> Result<()> {
        done(self.write(WriteOp::RetryNow(id.clone(), now_ms)).await)
    }
    async fn complete(&self, id: &QueueId) -> Result<()> {
        done(self.write(WriteOp::Complete(id.clone())).await)
    }
    async fn depth(&self) -> Result<usize> {
        self.read(|txn| Ok(txn.open_table(ENVELOPES).map_err(backend)?.len().map_err(backend)? as usize))
            .await
    }
    async fn backlog(&self, now_ms: u64) -> Result<Backlog> {
        self.read(move |txn| {
            let queued = txn.open_table(ENVELOPES).map_err(backend)?.len().map_err(backend)? as usize;
            let schedule = txn.open_table(SCHEDULE).map_err(backend)?;
            let earliest_due_ms = schedule.first().map_err(backend)?.map(|(key, _)| key.value().0);
            // Counting walks what is due; a gauge read, not the hot path.
            let due = schedule.range((0, "")..(now_ms + 1, "")).map_err(backend)?.count();
            Ok(Backlog {
                queued,
                due,
                earliest_due_ms,
            })
        })
        .await
    }
}

#[async_trait]
impl Ledger for EmbeddedStore {
    async fn usage(&self, scope: &Scope, window: Window) -> Result<Usage> {
        let scope = scope.clone();
        self.read(move |txn| ledger::read_counter(&txn.open_table(COUNTERS).map_err(backend)?, window, &scope))
            .await
    }
    async fn hours(&self, from_hour: u64, to_hour: u64) -> Result<Vec<HourUsage>> {
        self.read(move |txn| {
            let table = txn.open_table(COUNTERS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.range((1u8, from_hour, "")..(1u8, to_hour, "")).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let (_, hour, scope) = key.value();
                let Some(scope) = Scope::parse(scope) else { continue };
                let (messages, recipients, bytes) = value.value();
                out.push(HourUsage {
                    hour,
                    scope,
                    usage: Usage {
                        messages,
                        recipients,
                        bytes,
                    },
                });
            }
            Ok(out)
        })
        .await
    }
    async fn peak(&self, scope: &Scope, year: ContractYear) -> Result<Option<(u64, u64)>> {
        let scope = scope.clone();
        self.read(move |txn| ledger::peak(txn, &scope, year)).await
    }
    async fn alerts(&self, from_ms: u64, to_ms: u64) -> Result<Vec<Alert>> {
        self.read(move |txn| {
            let times = txn.open_table(ALERT_TIMES).map_err(backend)?;
            let alerts = txn.open_table(ALERTS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in times.range((from_ms, "")..(to_ms, "")).map_err(backend)? {
                let (key, _) = entry.map_err(backend)?;
                if let Some(bytes) = alerts.get(key.value().1).map_err(backend)? {
                    out.push(decode(bytes.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
    async fn claim_alerts(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<Alert>> {
        match self.write(WriteOp::ClaimAlerts { now_ms, lease_ms, max }).await? {
            Outcome::Claimed(alerts) => Ok(alerts),
            _ => Ok(Vec::new()),
        }
    }
    async fn raise_alert(&self, alert: Alert) -> Result<bool> {
        match self.write(WriteOp::RaiseAlert(Box::new(alert))).await? {
            Outcome::Applied(raised) => Ok(raised),
            _ => Ok(false),
        }
    }
    async fn alert_delivered(&self, id: &str, at_ms: u64) -> Result<()> {
        done(self.write(WriteOp::AlertDelivered(id.to_string(), at_ms)).await)
    }
    async fn alert_retry(&self, id: &str, due_ms: u64) -> Result<()> {
        done(self.write(WriteOp::AlertRetry(id.to_string(), due_ms)).await)
    }
    async fn count_outcomes(&self, counts: Vec<OutcomeCount>) -> Result<()> {
        done(self.write(WriteOp::CountOutcomes(counts)).await)
    }
    async fn outcomes(&self, from_hour: u64, to_hour: u64) -> Result<Vec<OutcomeCount>> {
        self.read(move |txn| ledger::outcomes(txn, from_hour, to_hour)).await
    }
}

#[async_trait]
impl SignIns for EmbeddedStore {
    async fn sign_in_state(&self, username: &str, address: IpAddr) -> Result<SignInState> {
        let username = username.to_string();
        self.read(move |txn| signins::state(txn, &username, address)).await
    }
    async fn count_failure(
        &self,
        username: &str,
        address: IpAddr,
        rules: &LockoutRules,
        now_ms: u64,
    ) -> Result<Vec<Lockout>> {
        let op = WriteOp::CountFailure {
            username: username.to_string(),
            address,
            rules: *rules,
            now_ms,
        };
        match self.write(op).await? {
            Outcome::Lockouts(started) => Ok(started),
            _ => Ok(Vec::new()),
        }
    }
    async fn clear_pair(&self, username: &str, address: IpAddr) -> Result<()> {
        let username = username.to_string();
        done(self.write(WriteOp::ClearPair { username, address }).await)
    }
    async fn lockouts(&self, now_ms: u64) -> Result<Vec<Lockout>> {
        self.read(move |txn| signins::lockouts(txn, now_ms)).await
    }
    async fn lift_lockouts(&self, username: Option<&str>, address: Option<IpAddr>, now_ms: u64) -> Result<usize> {
        let op = WriteOp::LiftLockouts {
            username: username.map(|u| lockout::bounded(u).to_string()),
            address: address.map(ferry_core::policy::canonical_ip),
            now_ms,
        };
        match self.write(op).await? {
            Outcome::Removed(n) => Ok(n),
            _ => Ok(0),
        }
    }
}

#[async_trait]
impl Samples for EmbeddedStore {
    async fn put_sample(&self, sample: Sample) -> Result<()> {
        done(self.write(WriteOp::PutSample(Box::new(sample))).await)
    }
    async fn samples(&self, query: SampleQuery) -> Result<Vec<Sample>> {
        self.read(move |txn| {
            let table = txn.open_table(SAMPLES).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.range((query.from_ms, "")..(query.to_ms, "")).map_err(backend)? {
                let (_, value) = entry.map_err(backend)?;
                let sample: Sample = decode(value.value())?;
                if query.matches(&sample) {
                    out.push(sample);
                    if out.len() >= query.limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }
    async fn purge_samples(&self, before_ms: u64) -> Result<usize> {
        match self.write(WriteOp::PurgeSamples(before_ms)).await? {
            Outcome::Removed(n) => Ok(n),
            _ => Ok(0),
        }
    }
}

#[async_trait]
impl Events for EmbeddedStore {
    async fn append_events(&self, changes: Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        done(self.write(WriteOp::AppendEvents(Box::new(changes))).await)
    }
    fn cursor_at(&self, at_ms: u64) -> String {
        log::cursor_at(at_ms)
    }
    async fn events(&self, tenant: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, EventRecord)>> {
        let (tenant, after) = (tenant.to_string(), after.map(str::to_string));
        self.read(move |txn| log::events(txn, &tenant, after.as_deref(), limit))
            .await
    }
    async fn hold_receiver(
        &self,
        receiver: &str,
        holder: &str,
        now_ms: u64,
        hold_ms: u64,
    ) -> Result<Option<ReceiverState>> {
        let op = WriteOp::HoldReceiver {
            receiver: receiver.to_string(),
            holder: holder.to_string(),
            now_ms,
            hold_ms,
        };
        match self.write(op).await? {
            Outcome::Receiver(state) => Ok(state),
            _ => Ok(None),
        }
    }
    async fn save_receiver(&self, receiver: &str, holder: &str, state: &ReceiverState) -> Result<bool> {
        let op = WriteOp::SaveReceiver {
            receiver: receiver.to_string(),
            holder: holder.to_string(),
            state: Box::new(state.clone()),
        };
        match self.write(op).await? {
            Outcome::Applied(saved) => Ok(saved),
            _ => Ok(false),
        }
    }
    async fn sent(&self, id: &QueueId) -> Result<Option<Sent>> {
        let id = id.to_string();
        self.read(move |txn| log::sent(txn, &id)).await
    }
    async fn purge_events(&self, before_ms: u64) -> Result<usize> {
        match self.write(WriteOp::PurgeEvents(before_ms)).await? {
            Outcome::Removed(n) => Ok(n),
            _ => Ok(0),
        }
    }
}

#[async_trait]
impl Suppressions for EmbeddedStore {
    async fn suppression(&self, tenant: &str, recipient: &str, now_ms: u64) -> Result<Option<Suppression>> {
        let (tenant, recipient) = (tenant.to_string(), recipient.to_string());
        let found = self.read(move |txn| log::suppression(txn, &tenant, &recipient)).await?;
        Ok(found.filter(|s| s.in_force(now_ms)))
    }
    async fn suppressions(&self, tenant: &str, search: Option<&str>, limit: usize) -> Result<Vec<Suppression>> {
        let (tenant, search) = (tenant.to_string(), search.map(str::to_string));
        self.read(move |txn| log::suppressions(txn, &tenant, search.as_deref(), limit))
            .await
    }
    async fn unsuppress(&self, tenant: &str, recipient: &str) -> Result<bool> {
        let op = WriteOp::Unsuppress {
            tenant: tenant.to_string(),
            recipient: recipient.to_string(),
        };
        match self.write(op).await? {
            Outcome::Removed(n) => Ok(n > 0),
            _ => Ok(false),
        }
    }
    async fn count_soft_bounces(
        &self,
        tenant: &str,
        recipients: &[String],
        now_ms: u64,
        window_ms: u64,
    ) -> Result<Vec<u32>> {
        let op = WriteOp::CountSoftBounces {
            tenant: tenant.to_string(),
            recipients: recipients.to_vec(),
            now_ms,
            window_ms,
        };
        match self.write(op).await? {
            Outcome::Counts(counts) => Ok(counts),
            _ => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl Incidents for EmbeddedStore {
    async fn open_incident(&self, incident: Incident) -> Result<bool> {
        match self.write(WriteOp::OpenIncident(Box::new(incident))).await? {
            Outcome::Applied(opened) => Ok(opened),
            _ => Ok(false),
        }
    }
    async fn open_incident_of(&self, tenant: &str, app: &str) -> Result<Option<Incident>> {
        let (tenant, app) = (tenant.to_string(), app.to_string());
        self.read(move |txn| incidents::open_of(txn, &tenant, &app)).await
    }
    async fn incident(&self, id: &str) -> Result<Option<Incident>> {
        let id = id.to_string();
        self.read(move |txn| incidents::get(txn, &id)).await
    }
    async fn incidents(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<Incident>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |txn| incidents::list(txn, tenant.as_deref(), limit))
            .await
    }
    async fn held(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<(QueuedMessage, String)>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |txn| {
            let table = txn.open_table(incidents::HELD).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(backend)? {
                if out.len() >= limit {
                    break;
                }
                let (id, incident) = entry.map_err(backend)?;
                let message: QueuedMessage = get(txn, ENVELOPES, id.value())?
                    .ok_or_else(|| StoreError::Unavailable(format!("held message {} has no envelope", id.value())))?;
                if tenant.as_deref().is_none_or(|t| t == message.tenant) {
                    out.push((message, incident.value().to_string()));
                }
            }
            Ok(out)
        })
        .await
    }
    async fn release_held(&self, id: &QueueId, metering: Option<Metering>, now_ms: u64) -> Result<()> {
        let op = WriteOp::ReleaseHeld {
            id: id.clone(),
            metering: metering.map(Box::new),
            now_ms,
        };
        done(self.write(op).await)
    }
    async fn discard_held(&self, id: &QueueId, now_ms: u64) -> Result<()> {
        done(self.write(WriteOp::DiscardHeld(id.clone(), now_ms)).await)
    }
    async fn resolve_incident(&self, id: &str, resolution: Resolution) -> Result<Incident> {
        match self
            .write(WriteOp::ResolveIncident(id.to_string(), Box::new(resolution)))
            .await?
        {
            Outcome::Incident(incident) => Ok(*incident),
            _ => Err(StoreError::NotFound(format!("incident {id}"))),
        }
    }
    async fn save_figures(&self, tenant: &str, app: &str, figures: &[HourFigures], keep_from: u64) -> Result<()> {
        let op = WriteOp::SaveFigures {
            tenant: tenant.to_string(),
            app: app.to_string(),
            figures: figures.to_vec(),
            keep_from,
        };
        self.write(op).await.map(drop)
    }
    async fn note_source(&self, tenant: &str, app: &str, address: IpAddr, at_ms: u64) -> Result<bool> {
        let fact = SignInFact {
            at_ms,
            tenant: tenant.to_string(),
            app: app.to_string(),
            kind: SignInKind::NewSource(address),
        };
        match self.write(WriteOp::NoteSignIn(Box::new(fact))).await? {
            Outcome::Applied(new) => Ok(new),
            _ => Ok(false),
        }
    }
    async fn note_after_lockout(&self, tenant: &str, app: &str, at_ms: u64) -> Result<()> {
        let fact = SignInFact {
            at_ms,
            tenant: tenant.to_string(),
            app: app.to_string(),
            kind: SignInKind::AfterLockout,
        };
        self.write(WriteOp::NoteSignIn(Box::new(fact))).await.map(drop)
    }
    async fn sign_in_facts(&self, since_ms: u64) -> Result<Vec<SignInFact>> {
        self.read(move |txn| incidents::sign_in_facts(txn, since_ms)).await
    }
    async fn figures(&self, tenant: &str, app: &str, from: u64, to: u64) -> Result<Vec<HourFigures>> {
        let (tenant, app) = (tenant.to_string(), app.to_string());
        self.read(move |txn| incidents::figures(txn, &tenant, &app, from, to))
            .await
    }
}
