//! The Redis backend: the store every node of a cluster shares, so ingress
//! and delivery nodes keep nothing of their own and any of them may die.
//!
//! Layout:
//! - [`RedisStore`]: the connection and the store traits over it.
//! - `plan`: a message's metering plan, turned into the keys and fields
//!   the enqueue script works on.
//! - `lua/`: the scripts that make each multi-key change atomic (Redis runs
//!   a script alone): enqueue with its metering, lease, record, directory
//!   writes, alert state.
//!
//! Keys, all under `store.redis.key_prefix` (`P` here):
//! - `P:tenants`, `P:apps`, `P:dkim`: hashes of JSON records by name;
//!   `P:directory_version`: a counter bumped with each of their writes, which
//!   every node polls to learn that its copies are stale; `P:tokens`: admin
//!   API tokens by id (the hash of their secret, never the secret).
//! - `P:msg:{id}`: one message: `e` its envelope (JSON), `b` its content.
//! - `P:due`: message ids by due time (ms). A lease moves a message's due
//!   time to the lease's end, so a node that dies with it loses nothing.
//! - `P:lease:{token}`: the ids one lease took, until it ends, so a lease
//!   whose reply was lost can be handed back at once.
//! - `P:c:{window}:{period}`: a counting window (0 minute, 1 hour, 2 year),
//!   fields `{scope}|m`, `|r`, `|b` (messages, recipients, bytes).
//! - `P:hours`: the hours that have counts; `P:peak:{year start}`: scope →
//!   `"{hour} {units}"`, the year's peak hour.
//! - `P:outcome_hours`: the hours that have outcome counts; `P:o:{hour}`:
//!   `{tenant}\t{app}\t{outcome}` → count (the per-application outcomes).
//! - `P:audit`: the audit log, entries (JSON) scored by time (ms).
//! - `P:f:{subject}`: a failed sign-in counter (`n`, `s` window start, `u`
//!   locked until), expiring with its window; `P:lockouts`: the subjects
//!   locked out, by until (ms).
//! - `P:samples`: kept messages (JSON) by id; `P:sample_times`: their ids
//!   by when they were taken (ms), for reading by period and purging.
//! - `P:alert:{id}`, with `P:alert_times` (by time raised) and `P:outbox`
//!   (undelivered, by due time).
//! - `P:ev:{tenant}`: the tenant's event log, a stream of records (field
//!   `r`, JSON) whose ids start with the record's time (ms), so the stream
//!   id is the cursor and a purge is `XTRIM MINID`; `P:event_tenants`: the
//!   tenants that have one.
//! - `P:sent:{id}`: what a message with Ferry's return path went out as
//!   (JSON), `P:sent_times`: those ids by time received, for purging;
//!   `P:bounce_keys`: return-path keys by id, `P:bounce_key_newest` the
//!   newest one's id.
//! - `P:recv:{receiver}`: a webhook receiver's state (`s`, JSON), holder
//!   (`h`) and hold's end (`u`, ms).
//! - `P:incidents`: incidents (JSON) by id; `P:open_incidents`:
//!   `{tenant}\t{app}` → the id of its open one; `P:incident_times`: ids by
//!   time opened; `P:figures:{tenant}\t{app}`: an application's figures
//!   of finished hours (hour → JSON), for its baseline;
//!   `P:sources:{tenant}\t{app}`: the addresses it signed in from (→ first
//!   seen, ms); `P:sign_in_facts`: sign-ins worth the watch's attention
//!   (JSON), scored by time.
//! - `P:sup:{tenant}`: the tenant's suppression list, recipient → entry
//!   (JSON); `P:soft:{tenant}:{recipient}`: the times of its recent soft
//!   bounces, expiring with the window.
//!
//! The scripts name keys they were not passed, so this is a backend for one
//! Redis server (with or without replicas), not for Redis Cluster.
//!
//! What a 250 promises is the server's configuration plus
//! `store.redis.wait_replicas`: with `appendonly yes` and `appendfsync
//! always` the primary has written and fsynced the message before it
//! answers (Redis syncs once per event-loop turn, so concurrent sessions
//! share one fsync: group commit); with `everysec` up to a second of
//! acknowledged mail can be lost with the machine; `wait_replicas = n`
//! also waits until n replicas have received it.

mod link;
mod plan;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::audit::AuditEntry;
use ferry_core::config::{RedisDurability, RedisStore as RedisConfig};
use ferry_core::contract::ContractYear;
use ferry_core::dkim::DkimKeyRecord;
use ferry_core::event::{EventKind, EventRecord, ReceiverState};
use ferry_core::incident::{HourFigures, Incident, Resolution, SIGN_IN_FACTS_MS, SignInFact, SignInKind};
use ferry_core::lockout::{FailureCount, Lockout, LockoutRules, SignInState, Subject};
use ferry_core::metering::{Alert, Metering, Window};
use ferry_core::outcome::{self, Outcome, OutcomeCount};
use ferry_core::return_path::{BounceKey, Sent};
use ferry_core::sample::Sample;
use ferry_core::suppression::{self, Suppression};
use ferry_core::token::ApiToken;
use ferry_core::usage::{HourUsage, Scope, Usage};
use ferry_core::{Application, QueueId, QueuedMessage, Tenant};
use ferry_store::{
    Backlog, Changes, Directory, Events, Incidents, Ledger, Next, Queue, QueueEntry, Result, SampleQuery, Samples,
    SignIns, StoreError, Suppressions, decode, encode,
};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::link::{Link, SharedLink, Target};
use crate::plan::Keys;

/// The Redis store. Cheap to clone: clones share one multiplexed connection
/// that reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    link: SharedLink,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    /// (replicas, timeout ms, mode) for `WAIT` or `WAITAOF` after each durable write.
    wait: Option<(u32, u64, RedisDurability)>,
}

struct Scripts {
    enqueue: Script,
    lease: Script,
    record: Script,
    put: Script,
    rescore: Script,
    alert: Script,
    claim: Script,
    release: Script,
    extend: Script,
    delete: Script,
    fail: Script,
    withdraw: Script,
    append: Script,
    bounce_key: Script,
    receiver: Script,
    incident: Script,
    held: Script,
    sign_in: Script,
    raise: Script,
}

/// How long a message waits for its replicas before it falls due anyway
/// (the release after their confirmation makes it due at once).
const PENDING_MS: u64 = 60_000;

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt {what} in redis: {e}"))
}

impl RedisStore {
    /// `changes` in the form the scripts' `log_changes` takes (log.lua).
    fn changes_arg(&self, changes: &Changes) -> Vec<u8> {
        if changes.is_empty() {
            return Vec::new();
        }
        let events: Vec<_> = changes
            .events
            .iter()
            .map(|e| {
                let record = String::from_utf8(encode(e)).unwrap_or_default();
                [
                    self.keys.events(&e.tenant),
                    e.tenant.clone(),
                    e.at_ms.to_string(),
                    record,
                ]
            })
            .collect();
        let suppress: Vec<_> = changes
            .suppress
            .iter()
            .map(|s| {
                let s = s.clone().normalised();
                let entry = String::from_utf8(encode(&s)).unwrap_or_default();
                [self.keys.suppressed(&s.tenant), s.recipient, entry]
            })
            .collect();
        encode(&serde_json::json!({ "events": events, "suppress": suppress }))
    }

    /// Connects (`store.redis`) and checks the server answers; warns when its persistence
    /// settings promise less than "synced before 250".
    pub async fn connect(c: &RedisConfig) -> Result<RedisStore> {
        let target = Arc::new(Target::new(c)?);
        let link: SharedLink = Arc::new(RwLock::new(Arc::new(target.connect().await?)));
        let store = RedisStore {
            link: link.clone(),
            keys: Arc::new(Keys::new(&c.key_prefix)),
            scripts: Arc::new(Scripts {
                enqueue: Script::new(concat!(
                    include_str!("lua/log.lua"),
                    include_str!("lua/meter.lua"),
                    include_str!("lua/enqueue.lua")
                )),
                lease: Script::new(include_str!("lua/lease.lua")),
                record: Script::new(concat!(include_str!("lua/log.lua"), include_str!("lua/record.lua"))),
                put: Script::new(include_str!("lua/put.lua")),
                rescore: Script::new(include_str!("lua/rescore.lua")),
                alert: Script::new(include_str!("lua/alert.lua")),
                claim: Script::new(include_str!("lua/claim.lua")),
                release: Script::new(include_str!("lua/release.lua")),
                extend: Script::new(include_str!("lua/extend.lua")),
                delete: Script::new(include_str!("lua/delete.lua")),
                fail: Script::new(include_str!("lua/fail.lua")),
                withdraw: Script::new(include_str!("lua/withdraw.lua")),
                append: Script::new(concat!(include_str!("lua/log.lua"), include_str!("lua/append.lua"))),
                bounce_key: Script::new(include_str!("lua/bounce_key.lua")),
                receiver: Script::new(include_str!("lua/receiver.lua")),
                incident: Script::new(include_str!("lua/incident.lua")),
                sign_in: Script::new(include_str!("lua/sign_in.lua")),
                raise: Script::new(include_str!("lua/raise.lua")),
                held: Script::new(concat!(
                    include_str!("lua/log.lua"),
                    include_str!("lua/meter.lua"),
                    include_str!("lua/held.lua")
                )),
            }),
            wait: (c.wait_replicas > 0).then_some((c.wait_replicas, c.wait_timeout_ms, c.durability)),
        };
        store
            .query::<()>(&redis::cmd("PING"))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store.redis.url: {e}")))?;
        store.check_persistence().await;
        if c.wait_replicas > 0 && c.durability == RedisDurability::WaitAof {
            store.check_waitaof().await?;
        }
        target.follow(&link);
        Ok(store)
    }

    /// Takes back a message its replicas did not confirm; best effort (the
    /// primary may be gone: then so is the message, or a replica has it
    /// and it is delivered once after all).
    async fn withdraw(&self, id: &str, plan: &[u8]) {
        let mut invocation = self.scripts.withdraw.key(self.keys.message(id));
        invocation.key(&self.keys.due).arg(id).arg(plan);
        match self.run::<i64>(&invocation).await {
            Ok(_) => tracing::warn!(queue_id = id, "the replicas did not confirm a message; took it back"),
            Err(e) => {
                tracing::warn!(queue_id = id, error = %e, "cannot take back a message the replicas did not confirm")
            }
        }
    }

    /// Makes a confirmed message due now; if this is lost, it falls due
    /// [`PENDING_MS`] later anyway.
    async fn make_due(&self, id: &str, due_ms: u64) {
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(&self.keys.due)
            .arg("XX")
            .arg(due_ms)
            .arg(id)
            .ignore();
        pipe.cmd("PUBLISH").arg(&self.keys.enqueued).arg(id).ignore();
        if let Err(e) = pipe.query_async::<()>(&mut self.conn()).await {
            tracing::warn!(queue_id = id, error = %e, "cannot make a confirmed message due now; it falls due in a minute");
        }
    }

    /// `WAITAOF` came with Redis 7.2 (and Valkey): refuse to start without
    /// it rather than answer every message 451.
    async fn check_waitaof(&self) -> Result<()> {
        let info: Vec<Value> = self.query(redis::cmd("COMMAND").arg("INFO").arg("WAITAOF")).await?;
        if matches!(info.as_slice(), [] | [Value::Nil]) {
            return Err(StoreError::Unavailable(
                "store.redis.durability: waitaof needs WAITAOF (Redis 7.2 or later, or Valkey); this server has none"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Managed services often refuse CONFIG: then say so, and go on.
    async fn check_persistence(&self) {
        let settings: Vec<String> = match self.query(redis::cmd("CONFIG").arg("GET").arg("append*")).await {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Redis server's persistence settings; make sure it syncs each write (appendfsync always) or set store.redis.wait_replicas");
                return;
            }
        };
        let get = |name: &str| {
            settings
                .chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1))
                .cloned()
                .unwrap_or_default()
        };
        let (aof, fsync) = (get("appendonly"), get("appendfsync"));
        if aof != "yes" || fsync != "always" {
            tracing::warn!(
                appendonly = %aof,
                appendfsync = %fsync,
                "the Redis server does not fsync each write before answering: a crash of its machine can lose mail already acknowledged with 250; set appendonly yes and appendfsync always (or store.redis.wait_replicas)"
            );
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.link.read().unwrap_or_else(|p| p.into_inner()).conn.clone()
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        cmd.query_async(&mut self.conn()).await.map_err(unavailable)
    }

    async fn run<T: redis::FromRedisValue>(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<T> {
        invocation.invoke_async(&mut self.conn()).await.map_err(unavailable)
    }

    /// A script that answers 0 when `what` is not there, and 1 when it changed it.
    async fn change(&self, invocation: &redis::ScriptInvocation<'_>, what: String) -> Result<()> {
        if self.run::<i64>(invocation).await? == 0 {
            return Err(StoreError::NotFound(what));
        }
        self.replicated().await
    }

    /// Waits for the configured replicas to have every write made so far:
    /// received (`WAIT`), or also fsynced to their append-only files and
    /// to the primary's (`WAITAOF 1 n`).
    async fn replicated(&self) -> Result<()> {
        let Some((replicas, timeout_ms, mode)) = self.wait else {
            return Ok(());
        };
        let acked: u32 = match mode {
            RedisDurability::Wait => self.query(redis::cmd("WAIT").arg(replicas).arg(timeout_ms)).await?,
            RedisDurability::WaitAof => {
                let (local, acked): (u32, u32) = self
                    .query(redis::cmd("WAITAOF").arg(1).arg(replicas).arg(timeout_ms))
                    .await?;
                if local < 1 {
                    return Err(StoreError::Unavailable(format!(
                        "redis: the primary did not fsync the write within {timeout_ms} ms"
                    )));
                }
                acked
            }
        };
        if acked < replicas {
            return Err(StoreError::Unavailable(format!(
                "redis: {acked} of {replicas} replicas confirmed the write within {timeout_ms} ms"
            )));
        }
        Ok(())
    }

    /// Creates or replaces a directory record; see `lua/put.lua`.
    async fn put(
        &self,
        hash: &str,
        name: &str,
        json: Vec<u8>,
        create: bool,
        parent: Option<(&str, &str)>,
    ) -> Result<i64> {
        let mut invocation = self.scripts.put.key(hash);
        if let Some((parent_hash, _)) = parent {
            invocation.key(parent_hash);
        }
        invocation
            .arg(name)
            .arg(json)
            .arg(if create { "create" } else { "update" })
            .arg(parent.map_or("", |(_, field)| field))
            .arg(&self.keys.directory_version);
        let outcome = self.run(&invocation).await?;
        self.replicated().await?;
        Ok(outcome)
    }

    /// Deletes a directory record; see `lua/delete.lua`.
    async fn delete(&self, hash: &str, name: &str, tenant: bool) -> Result<()> {
        let mut invocation = self.scripts.delete.key(hash);
        if tenant {
            invocation.key(&self.keys.apps);
        }
        invocation.arg(name).arg(&self.keys.directory_version);
        let what = if tenant { "tenant" } else { "application" };
        match self.run::<Value>(&invocation).await? {
            Value::Int(1) => self.replicated().await,
            Value::Int(_) => Err(StoreError::NotFound(format!("{what} {name}"))),
            other => {
                let app: String = redis::from_redis_value(other).map_err(|e| corrupt("delete answer", e))?;
                Err(StoreError::InUse(format!(
                    "tenant {name} still has applications (such as {app}); delete them first"
                )))
            }
        }
    }

    /// The members of a sorted set scored in [from, to).
    async fn scored_between<T: redis::FromRedisValue>(&self, key: &str, from: u64, to: u64) -> Result<Vec<T>> {
        self.query(redis::cmd("ZRANGEBYSCORE").arg(key).arg(from).arg(format!("({to}")))
            .await
    }

    async fn record_of<T: serde::de::DeserializeOwned>(&self, hash: &str, name: &str) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("HGET").arg(hash).arg(name)).await?;
        bytes.map(|b| decode(&b)).transpose()
    }

    async fn records<T: serde::de::DeserializeOwned>(&self, hash: &str) -> Result<Vec<T>> {
        let all: Vec<(String, Vec<u8>)> = self.query(redis::cmd("HGETALL").arg(hash)).await?;
        let mut out = Vec::with_capacity(all.len());
        for (_, bytes) in all {
            out.push(decode(&bytes)?);
        }
        Ok(out)
    }

    async fn load_alerts(&self, ids: Vec<String>) -> Result<Vec<Alert>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.keys.alert(id));
        }
        let raw: Vec<Vec<(String, Vec<u8>)>> = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        raw.into_iter()
            .filter(|fields| !fields.is_empty())
            .map(plan::alert_from_fields)
            .collect()
    }
}

fn created(outcome: i64, what: &str, name: &str) -> Result<()> {
    match outcome {
        1 => Ok(()),
        -1 => Err(StoreError::NotFound(what.to_string())),
        _ => Err(StoreError::AlreadyExists(name.to_string())),
    }
}

fn updated(outcome: i64, what: &str) -> Result<()> {
    match outcome {
        1 => Ok(()),
        _ => Err(StoreError::NotFound(what.to_string())),
    }
}

#[async_trait]
impl Directory for RedisStore {
    async fn create_tenant(&self, tenant: Tenant) -> Result<()> {
        let outcome = self
            .put(&self.keys.tenants, &tenant.name, encode(&tenant), true, None)
            .await?;
        created(outcome, "", &format!("tenant {}", tenant.name))
    }
    async fn update_tenant(&self, tenant: Tenant) -> Result<()> {
        let outcome = self
            .put(&self.keys.tenants, &tenant.name, encode(&tenant), false, None)
            .await?;
        updated(outcome, &format!("tenant {}", tenant.name))
    }
    async fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        self.record_of(&self.keys.tenants, name).await
    }
    async fn tenants(&self) -> Result<Vec<Tenant>> {
        let mut all: Vec<Tenant> = self.records(&self.keys.tenants).await?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }
    async fn create_app(&self, app: Application) -> Result<()> {
        let parent = Some((self.keys.tenants.as_str(), app.tenant.as_str()));
        let outcome = self
            .put(&self.keys.apps, &app.username, encode(&app), true, parent)
            .await?;
        created(
            outcome,
            &format!("tenant {}", app.tenant),
            &format!("application {}", app.username),
        )
    }
    async fn update_app(&self, app: Application) -> Result<()> {
        let parent = Some((self.keys.tenants.as_str(), app.tenant.as_str()));
        match self
            .put(&self.keys.apps, &app.username, encode(&app), false, parent)
            .await?
        {
            -1 => Err(StoreError::NotFound(format!("tenant {}", app.tenant))),
            outcome => updated(outcome, &format!("application {}", app.username)),
        }
    }
    async fn app(&self, username: &str) -> Result<Option<Application>> {
        self.record_of(&self.keys.apps, username).await
    }
    async fn apps(&self, tenant: Option<&str>) -> Result<Vec<Application>> {
        let mut all: Vec<Application> = self.records(&self.keys.apps).await?;
        all.retain(|a| tenant.is_none_or(|t| t == a.tenant));
        all.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(all)
    }
    async fn put_dkim_key(&self, key: DkimKeyRecord) -> Result<()> {
        let name = format!("{}/{}", key.domain, key.selector);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&self.keys.dkim)
            .arg(name)
            .arg(encode(&key))
            .ignore()
            .cmd("INCR")
            .arg(&self.keys.directory_version)
            .ignore();
        pipe.query_async::<()>(&mut self.conn()).await.map_err(unavailable)?;
        self.replicated().await
    }
    async fn put_token(&self, token: ApiToken) -> Result<()> {
        self.query::<()>(
            redis::cmd("HSET")
                .arg(&self.keys.tokens)
                .arg(&token.id)
                .arg(encode(&token)),
        )
        .await?;
        self.replicated().await
    }
    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        self.record_of(&self.keys.tokens, id).await
    }
    async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let mut all: Vec<ApiToken> = self.records(&self.keys.tokens).await?;
        all.sort_by_key(|t| t.created_ms);
        Ok(all)
    }
    async fn directory_version(&self) -> Result<u64> {
        let version: Option<u64> = self.query(redis::cmd("GET").arg(&self.keys.directory_version)).await?;
        Ok(version.unwrap_or(0))
    }
    async fn add_bounce_key(&self, key: BounceKey, after: Option<char>) -> Result<bool> {
        let mut invocation = self.scripts.bounce_key.key(&self.keys.bounce_keys);
        invocation
            .key(&self.keys.bounce_key_newest)
            .key(&self.keys.directory_version)
            .arg(key.id.to_string())
            .arg(encode(&key))
            .arg(after.map(String::from).unwrap_or_default());
        let added: i64 = self.run(&invocation).await?;
        self.replicated().await?;
        Ok(added == 1)
    }

    async fn bounce_keys(&self) -> Result<Vec<BounceKey>> {
        self.records(&self.keys.bounce_keys).await
    }

    async fn dkim_keys(&self) -> Result<Vec<DkimKeyRecord>> {
        let mut all: Vec<DkimKeyRecord> = self.records(&self.keys.dkim).await?;
        all.sort_by(|a, b| (&a.domain, &a.selector).cmp(&(&b.domain, &b.selector)));
        Ok(all)
    }
    async fn delete_app(&self, username: &str) -> Result<()> {
        self.delete(&self.keys.apps, username, false).await
    }
    async fn delete_tenant(&self, name: &str) -> Result<()> {
        self.delete(&self.keys.tenants, name, true).await
    }
    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        let json = encode(&entry);
        self.query::<()>(redis::cmd("ZADD").arg(&self.keys.audit).arg(entry.at_ms).arg(json))
            .await?;
        self.replicated().await
    }
    async fn audit(&self, from_ms: u64, to_ms: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let raw: Vec<Vec<u8>> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&self.keys.audit)
                    .arg(from_ms)
                    .arg(format!("({to_ms}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        raw.iter().map(|bytes| decode(bytes)).collect()
    }
}

#[async_trait]
impl Queue for RedisStore {
    /// With `wait_replicas`, the message is written pending (due only in
    /// [`PENDING_MS`]) and made due once the replicas confirm it; if they do
    /// not, it is taken back, so the 451 the client gets means "not sent"
    /// (a failover in between can still leave it, the duplicate SMTP
    /// clients are warned of, never a loss).
    async fn enqueue(&self, message: QueuedMessage, metering: Option<Metering>) -> Result<()> {
        let id = message.id.as_str();
        let plan = metering
            .as_ref()
            .map(|m| encode(&self.keys.plan(m)))
            .unwrap_or_default();
        let pending = self.wait.is_some();
        let (due, channel) = if pending {
            (message.received_ms.saturating_add(PENDING_MS), "")
        } else {
            (message.received_ms, self.keys.enqueued.as_str())
        };
        let accepted = EventRecord::accepted(&message).map(|e| encode(&e)).unwrap_or_default();
        let held_count = OutcomeCount::message(&message, Outcome::Held, message.received_ms);
        let refused: i64 = self
            .run(
                self.scripts
                    .enqueue
                    .key(self.keys.message(id))
                    .key(&self.keys.due)
                    .key(self.keys.events(&message.tenant))
                    .key(&self.keys.event_tenants)
                    .key(self.keys.sent(id))
                    .key(&self.keys.sent_times)
                    .key(&self.keys.holding)
                    .key(&self.keys.held)
                    .key(&self.keys.outcome_hours)
                    .key(self.keys.outcomes(held_count.hour))
                    .arg(id)
                    .arg(due)
                    .arg(encode(&message))
                    .arg(message.content.as_slice())
                    .arg(plan.as_slice())
                    .arg(channel)
                    .arg(accepted)
                    .arg(&message.tenant)
                    .arg(message.received_ms)
                    .arg(Sent::of(&message).map(|s| encode(&s)).unwrap_or_default())
                    .arg(message.id.time_ms())
                    .arg(format!("{}\t{}", message.tenant, message.app))
                    .arg(encode(&EventRecord::about(
                        &message,
                        EventKind::Held,
                        message.received_ms,
                    )))
                    .arg(held_count.field())
                    .arg(held_count.hour),
            )
            .await?;
        if refused < 0 {
            // Held: nothing due, nothing to wait for replicas to make due.
            return self.replicated().await;
        }
        let refused = usize::try_from(refused).unwrap_or(0);
        if let Some(cap) = refused.checked_sub(1).and_then(|i| metering.as_ref()?.caps.get(i)) {
            return Err(StoreError::CapReached {
                name: cap.name.clone(),
                temporary: cap.temporary,
            });
        }
        if !pending {
            return Ok(());
        }
        if let Err(e) = self.replicated().await {
            self.withdraw(id, &plan).await;
            return Err(e);
        }
        self.make_due(id, message.received_ms).await;
        Ok(())
    }

    async fn lease(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<QueuedMessage>> {
        let token = uuid::Uuid::now_v7().simple().to_string();
        let until_ms = now_ms.saturating_add(lease_ms);
        let leased: redis::RedisResult<Vec<Vec<u8>>> = self
            .scripts
            .lease
            .key(&self.keys.due)
            .key(self.keys.lease(&token))
            .arg(now_ms)
            .arg(until_ms)
            .arg(max)
            .arg(self.keys.message(""))
            .arg(lease_ms)
            .arg(&token)
            .invoke_async(&mut self.conn())
            .await;
        let raw = match leased {
            Ok(raw) => raw,
            Err(e) => {
                // Unless the request never left, the script may have run
                // with its reply lost: hand back whatever it took rather
                // than hold it for the whole lease.
                if !e.is_connection_refusal() {
                    tokio::spawn(self.clone().release(token, until_ms, now_ms, lease_ms));
                }
                return Err(unavailable(e));
            }
        };
        // A lease the replicas lack is lost with a failed primary, and the
        // promoted replica would hand the message out again while this
        // node sends it: with `wait_replicas`, nothing is sent until the
        // lease (and its fencing token) is on the replicas too.
        if !raw.is_empty()
            && let Err(e) = self.replicated().await
        {
            tokio::spawn(self.clone().release(token, until_ms, now_ms, lease_ms));
            return Err(e);
        }
        raw.chunks_exact(2)
            .map(|m| {
                let mut message: QueuedMessage = decode(&m[0])?;
                message.content = m[1].clone();
                message.lease = Some(token.clone());
                Ok(message)
            })
            .collect()
    }

    async fn extend_leases(&self, held: &[(QueueId, u64)], until_ms: u64) -> Result<Vec<QueueId>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.scripts.extend.key(&self.keys.due);
        invocation.arg(until_ms);
        for (id, held_until) in held {
            invocation.arg(id.as_str()).arg(held_until);
        }
        let moved: Vec<String> = self.run(&invocation).await?;
        // A renewal the replicas lack would be undone by a failover: count
        // it only once they have it, so the holder never outlives its lease.
        self.replicated().await?;
        Ok(moved.iter().filter_map(|id| QueueId::parse(id)).collect())
    }

    async fn record(&self, message: &QueuedMessage, next: Next, changes: &Changes) -> Result<()> {
        let id = message.id.as_str();
        let mut saved = message.clone();
        saved.content = Vec::new();
        let (mode, due) = match next {
            Next::Done => ("done", 0),
            Next::RetryAt(due) => {
                saved.attempts += 1;
                ("retry", due)
            }
            Next::Continue => ("continue", 0),
        };
        let counts = match next {
            Next::Continue => Vec::new(),
            _ => outcome::at_delivery(message, next == Next::Done),
        };
        let hour = counts.first().map_or(0, |c| c.hour);
        let mut invocation = self.scripts.record.key(self.keys.message(id));
        invocation
            .key(&self.keys.due)
            .key(&self.keys.outcome_hours)
            .key(self.keys.outcomes(hour))
            .key(&self.keys.event_tenants)
            .arg(id)
            .arg(mode)
            .arg(encode(&saved))
            .arg(due)
            .arg(hour)
            .arg(message.lease.as_deref().unwrap_or(""))
            .arg(self.changes_arg(changes));
        for count in &counts {
            invocation.arg(count.field()).arg(count.count);
        }
        match self.run::<i64>(&invocation).await? {
            0 => Err(StoreError::NotFound(format!("message {id}"))),
            -2 => Err(StoreError::LeaseLost(id.to_string())),
            _ => self.replicated().await,
        }
    }

    async fn get(&self, id: &QueueId) -> Result<Option<QueuedMessage>> {
        let (envelope, content): (Option<Vec<u8>>, Option<Vec<u8>>) = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.message(id.as_str()))
                    .arg("e")
                    .arg("b"),
            )
            .await?;
        let Some(envelope) = envelope else { return Ok(None) };
        let mut message: QueuedMessage = decode(&envelope)?;
        message.content = content.unwrap_or_default();
        Ok(Some(message))
    }

    async fn list(&self, limit: usize) -> Result<Vec<QueueEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let due: Vec<(String, u64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(&self.keys.due)
                    .arg(0)
                    .arg(limit - 1)
                    .arg("WITHSCORES"),
            )
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, _) in &due {
            let key = self.keys.message(id);
            pipe.cmd("HGET").arg(&key).arg("e").cmd("HSTRLEN").arg(&key).arg("b");
        }
        let details: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        let mut out = Vec::with_capacity(due.len());
        for ((_, due_ms), pair) in due.into_iter().zip(details.chunks_exact(2)) {
            let envelope: Option<Vec<u8>> =
                redis::from_redis_value_ref(&pair[0]).map_err(|e| corrupt("envelope", e))?;
            let size: usize = redis::from_redis_value_ref(&pair[1]).map_err(|e| corrupt("content", e))?;
            if let Some(envelope) = envelope {
                out.push(QueueEntry {
                    message: decode(&envelope)?,
                    due_ms,
                    size,
                });
            }
        }
        Ok(out)
    }

    async fn retry_now(&self, id: &QueueId, now_ms: u64) -> Result<()> {
        let mut invocation = self.scripts.rescore.key(&self.keys.due);
        invocation.arg(id.as_str()).arg(now_ms);
        self.change(&invocation, format!("message {id}")).await
    }

    async fn complete(&self, id: &QueueId) -> Result<()> {
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(self.keys.message(id.as_str()))
            .ignore()
            .cmd("ZREM")
            .arg(&self.keys.due)
            .arg(id.as_str())
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)?;
        self.replicated().await
    }

    async fn depth(&self) -> Result<usize> {
        self.query(redis::cmd("ZCARD").arg(&self.keys.due)).await
    }

    async fn backlog(&self, now_ms: u64) -> Result<Backlog> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(&self.keys.due);
        pipe.cmd("ZCOUNT").arg(&self.keys.due).arg("-inf").arg(now_ms);
        pipe.cmd("ZRANGE").arg(&self.keys.due).arg(0).arg(0).arg("WITHSCORES");
        let (queued, due, first): (usize, usize, Vec<(String, u64)>) =
            pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        Ok(Backlog {
            queued,
            due,
            earliest_due_ms: first.first().map(|(_, due)| *due),
        })
    }

    fn watch_enqueues(&self, wake: Arc<tokio::sync::Notify>) {
        tokio::spawn(announcements(
            Arc::downgrade(&self.link),
            self.keys.enqueued.clone(),
            wake,
        ));
    }
}

#[async_trait]
impl Ledger for RedisStore {
    async fn usage(&self, scope: &Scope, window: Window) -> Result<Usage> {
        let field = scope.key();
        let (messages, recipients, bytes): (Option<u64>, Option<u64>, Option<u64>) = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.counter(window))
                    .arg(format!("{field}|m"))
                    .arg(format!("{field}|r"))
                    .arg(format!("{field}|b")),
            )
            .await?;
        Ok(Usage {
            messages: messages.unwrap_or(0),
            recipients: recipients.unwrap_or(0),
            bytes: bytes.unwrap_or(0),
        })
    }

    async fn hours(&self, from_hour: u64, to_hour: u64) -> Result<Vec<HourUsage>> {
        if to_hour <= from_hour {
            return Ok(Vec::new());
        }
        let hours: Vec<u64> = self.scored_between(&self.keys.hours, from_hour, to_hour).await?;
        if hours.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for hour in &hours {
            pipe.cmd("HGETALL").arg(self.keys.counter(Window::Hour(*hour)));
        }
        let counts: Vec<Vec<(String, u64)>> = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        let mut out = Vec::new();
        for (hour, fields) in hours.into_iter().zip(counts) {
            out.extend(plan::hour_usage(hour, fields));
        }
        Ok(out)
    }

    async fn peak(&self, scope: &Scope, year: ContractYear) -> Result<Option<(u64, u64)>> {
        let peak: Option<String> = self
            .query(redis::cmd("HGET").arg(self.keys.peak(year)).arg(scope.key()))
            .await?;
        peak.map(|p| {
            p.split_once(' ')
                .and_then(|(hour, units)| Some((hour.parse().ok()?, units.parse().ok()?)))
                .ok_or_else(|| corrupt("peak", &p))
        })
        .transpose()
    }

    async fn alerts(&self, from_ms: u64, to_ms: u64) -> Result<Vec<Alert>> {
        let ids = self.scored_between(&self.keys.alert_times, from_ms, to_ms).await?;
        self.load_alerts(ids).await
    }

    async fn claim_alerts(&self, now_ms: u64, lease_ms: u64, max: usize) -> Result<Vec<Alert>> {
        let ids: Vec<String> = self
            .run(
                self.scripts
                    .claim
                    .key(&self.keys.outbox)
                    .arg(now_ms)
                    .arg(now_ms.saturating_add(lease_ms))
                    .arg(max),
            )
            .await?;
        self.load_alerts(ids).await
    }

    async fn raise_alert(&self, alert: Alert) -> Result<bool> {
        let mut invocation = self.scripts.raise.key(self.keys.alert(&alert.id));
        invocation
            .key(&self.keys.alert_times)
            .key(&self.keys.outbox)
            .arg(encode(&alert))
            .arg(alert.value)
            .arg(alert.at_ms)
            .arg(&alert.id);
        let raised: i64 = self.run(&invocation).await?;
        self.replicated().await?;
        Ok(raised == 1)
    }

    async fn alert_delivered(&self, id: &str, at_ms: u64) -> Result<()> {
        self.alert_state(id, "delivered", at_ms).await
    }

    async fn alert_retry(&self, id: &str, due_ms: u64) -> Result<()> {
        self.alert_state(id, "retry", due_ms).await
    }
    async fn count_outcomes(&self, counts: Vec<OutcomeCount>) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for count in &counts {
            pipe.cmd("HINCRBY")
                .arg(self.keys.outcomes(count.hour))
                .arg(count.field())
                .arg(count.count)
                .ignore();
            pipe.cmd("ZADD")
                .arg(&self.keys.outcome_hours)
                .arg(count.hour)
                .arg(count.hour)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(unavailable)
    }
    async fn outcomes(&self, from_hour: u64, to_hour: u64) -> Result<Vec<OutcomeCount>> {
        let hours: Vec<u64> = self
            .scored_between(&self.keys.outcome_hours, from_hour, to_hour)
            .await?;
        if hours.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for hour in &hours {
            pipe.cmd("HGETALL").arg(self.keys.outcomes(*hour));
        }
        let counts: Vec<Vec<(String, u64)>> = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        Ok(hours
            .into_iter()
            .zip(counts)
            .flat_map(|(hour, fields)| {
                fields
                    .into_iter()
                    .filter_map(move |(field, count)| OutcomeCount::from_field(hour, &field, count))
            })
            .collect())
    }
}

impl RedisStore {
    /// Undoes lease `token` (see `lua/release.lua`), retrying once a second
    /// while Redis is unreachable, for as long as the lease would last.
    async fn release(self, token: String, until_ms: u64, due_ms: u64, lease_ms: u64) {
        for _ in 0..(lease_ms / 1_000).clamp(1, 600) {
            let released = self
                .run::<u64>(
                    self.scripts
                        .release
                        .key(&self.keys.due)
                        .key(self.keys.lease(&token))
                        .arg(until_ms)
                        .arg(due_ms),
                )
                .await;
            match released {
                Ok(0) => return,
                Ok(n) => {
                    tracing::info!(messages = n, "released the messages of a lease whose reply was lost");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    async fn alert_state(&self, id: &str, outcome: &str, at_ms: u64) -> Result<()> {
        let mut invocation = self.scripts.alert.key(self.keys.alert(id));
        invocation.key(&self.keys.outbox).arg(id).arg(outcome).arg(at_ms);
        self.change(&invocation, format!("alert {id}")).await
    }
}

/// The most often an idle delivery node is woken by announcements.
const WAKE_INTERVAL: Duration = Duration::from_millis(20);

/// Notifies `wake` for enqueues announced on `channel` (at most every
/// [`WAKE_INTERVAL`]), reconnecting
/// after a lost connection (and waking once then: announcements may have
/// been missed meanwhile, the lease finds what is due).
/// Subscribes on the current primary; after a failover, on the new one.
async fn announcements(link: Weak<RwLock<Arc<Link>>>, channel: String, wake: Arc<tokio::sync::Notify>) {
    use futures_util::{FutureExt, StreamExt};
    loop {
        let Some(shared) = link.upgrade() else { return };
        let client = shared.read().unwrap_or_else(|p| p.into_inner()).client.clone();
        drop(shared);
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    wake.notify_one();
                    let mut messages = pubsub.into_on_message();
                    while messages.next().await.is_some() {
                        wake.notify_one();
                        // Under load the worker keeps leasing by itself: a wake
                        // per message would only add empty leases.
                        tokio::time::sleep(WAKE_INTERVAL).await;
                        while let Some(Some(_)) = messages.next().now_or_never() {}
                    }
                    tracing::warn!("lost the Redis subscription to new mail; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to new mail in Redis; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot open a Redis subscription for new mail; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A counter from its hash fields (missing: never failed).
fn failure_count((n, s, u): (Option<u32>, Option<u64>, Option<u64>)) -> FailureCount {
    FailureCount {
        failures: n.unwrap_or(0),
        window_start_ms: s.unwrap_or(0),
        locked_until_ms: u.unwrap_or(0),
    }
}

impl RedisStore {
    async fn counts(&self, subjects: &[Subject]) -> Result<Vec<FailureCount>> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for subject in subjects {
            pipe.cmd("HMGET")
                .arg(self.keys.failures(&subject.key()))
                .arg("n")
                .arg("s")
                .arg("u");
        }
        let raw: Vec<(Option<u32>, Option<u64>, Option<u64>)> =
            pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        Ok(raw.into_iter().map(failure_count).collect())
    }
}

#[async_trait]
impl SignIns for RedisStore {
    async fn sign_in_state(&self, username: &str, address: std::net::IpAddr) -> Result<SignInState> {
        let counts = self.counts(&Subject::of_attempt(username, address)).await?;
        let count = |i: usize| counts.get(i).copied().unwrap_or_default();
        Ok(SignInState {
            pair: count(0),
            username: count(1),
            address: count(2),
        })
    }

    async fn count_failure(
        &self,
        username: &str,
        address: std::net::IpAddr,
        rules: &LockoutRules,
        now_ms: u64,
    ) -> Result<Vec<Lockout>> {
        let subjects = Subject::of_attempt(username, address);
        let mut invocation = self.scripts.fail.prepare_invoke();
        for subject in &subjects {
            invocation.key(self.keys.failures(&subject.key()));
        }
        invocation.key(&self.keys.lockouts).arg(now_ms);
        for subject in &subjects {
            let rule = rules.rule(subject.kind);
            invocation.arg(rule.failures).arg(rule.window_ms).arg(subject.key());
        }
        let started: Vec<(usize, u32, u64)> = self.run(&invocation).await?;
        Ok(started
            .into_iter()
            .filter_map(|(i, failures, until)| {
                let subject = subjects.get(i.checked_sub(1)?)?.clone();
                Some(Lockout::new(
                    subject,
                    FailureCount {
                        failures,
                        window_start_ms: 0,
                        locked_until_ms: until,
                    },
                ))
            })
            .collect())
    }

    async fn clear_pair(&self, username: &str, address: std::net::IpAddr) -> Result<()> {
        let [pair, ..] = Subject::of_attempt(username, address);
        self.query(redis::cmd("DEL").arg(self.keys.failures(&pair.key()))).await
    }

    async fn lockouts(&self, now_ms: u64) -> Result<Vec<Lockout>> {
        let subjects: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&self.keys.lockouts)
                    .arg(format!("({now_ms}"))
                    .arg("+inf"),
            )
            .await?;
        let subjects: Vec<Subject> = subjects.iter().filter_map(|s| Subject::from_key(s)).collect();
        let counts = self.counts(&subjects).await?;
        Ok(subjects
            .into_iter()
            .zip(counts)
            .filter(|(_, count)| count.locked(now_ms))
            .map(|(subject, count)| Lockout::new(subject, count))
            .collect())
    }

    async fn lift_lockouts(
        &self,
        username: Option<&str>,
        address: Option<std::net::IpAddr>,
        now_ms: u64,
    ) -> Result<usize> {
        let username = username.map(|u| ferry_core::lockout::bounded(u).to_string());
        let address = address.map(ferry_core::policy::canonical_ip);
        let lifted: Vec<Subject> = self
            .lockouts(now_ms)
            .await?
            .into_iter()
            .map(|l| Subject {
                kind: l.kind,
                username: l.username,
                address: l.address,
            })
            .filter(|s| username.is_some() && s.username == username || address.is_some() && s.address == address)
            .collect();
        if lifted.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for subject in &lifted {
            pipe.cmd("DEL").arg(self.keys.failures(&subject.key())).ignore();
            pipe.cmd("ZREM").arg(&self.keys.lockouts).arg(subject.key()).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(unavailable)?;
        Ok(lifted.len())
    }
}

#[async_trait]
impl Samples for RedisStore {
    async fn put_sample(&self, sample: Sample) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HSET")
            .arg(&self.keys.samples)
            .arg(&sample.id)
            .arg(encode(&sample))
            .ignore();
        pipe.cmd("ZADD")
            .arg(&self.keys.sample_times)
            .arg(sample.at_ms)
            .arg(&sample.id)
            .ignore();
        pipe.query_async::<()>(&mut self.conn()).await.map_err(unavailable)
    }

    async fn samples(&self, query: SampleQuery) -> Result<Vec<Sample>> {
        let ids: Vec<String> = self
            .scored_between(&self.keys.sample_times, query.from_ms, query.to_ms)
            .await?;
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let raw: Vec<Option<Vec<u8>>> = self
                .query(redis::cmd("HMGET").arg(&self.keys.samples).arg(chunk))
                .await?;
            for bytes in raw.into_iter().flatten() {
                let sample: Sample = decode(&bytes)?;
                if query.matches(&sample) {
                    out.push(sample);
                    if out.len() >= query.limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn purge_samples(&self, before_ms: u64) -> Result<usize> {
        let ids: Vec<String> = self.scored_between(&self.keys.sample_times, 0, before_ms).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HDEL").arg(&self.keys.samples).arg(&ids).ignore();
        pipe.cmd("ZREM").arg(&self.keys.sample_times).arg(&ids).ignore();
        pipe.query_async::<()>(&mut self.conn()).await.map_err(unavailable)?;
        Ok(ids.len())
    }
}

#[async_trait]
impl Events for RedisStore {
    async fn append_events(&self, changes: Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut invocation = self.scripts.append.key(&self.keys.event_tenants);
        invocation.arg(self.changes_arg(&changes));
        self.run::<i64>(&invocation).await?;
        self.replicated().await
    }

    fn cursor_at(&self, at_ms: u64) -> String {
        format!("{}-{}", at_ms.saturating_sub(1), u64::MAX)
    }

    async fn events(&self, tenant: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, EventRecord)>> {
        let from = match after {
            None => "-".to_string(),
            Some(cursor) if is_stream_id(cursor) => format!("({cursor}"),
            Some(cursor) => return Err(StoreError::Invalid(format!("cursor {cursor:?}"))),
        };
        let raw: Vec<(String, Vec<(String, Vec<u8>)>)> = self
            .query(
                redis::cmd("XRANGE")
                    .arg(self.keys.events(tenant))
                    .arg(from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit),
            )
            .await?;
        raw.into_iter()
            .map(|(id, fields)| {
                let record = fields
                    .into_iter()
                    .find(|(f, _)| f == "r")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                Ok((id, decode(&record)?))
            })
            .collect()
    }

    async fn hold_receiver(
        &self,
        receiver: &str,
        holder: &str,
        now_ms: u64,
        hold_ms: u64,
    ) -> Result<Option<ReceiverState>> {
        let mut invocation = self.scripts.receiver.key(self.keys.receiver(receiver));
        invocation
            .arg("hold")
            .arg(holder)
            .arg(now_ms)
            .arg(now_ms.saturating_add(hold_ms));
        let state: Option<Vec<u8>> = self.run(&invocation).await?;
        match state {
            None => Ok(None),
            Some(bytes) if bytes.is_empty() => Ok(Some(ReceiverState::default())),
            Some(bytes) => decode(&bytes).map(Some),
        }
    }

    async fn save_receiver(&self, receiver: &str, holder: &str, state: &ReceiverState) -> Result<bool> {
        let mut invocation = self.scripts.receiver.key(self.keys.receiver(receiver));
        invocation.arg("save").arg(holder).arg(encode(state));
        let saved: i64 = self.run(&invocation).await?;
        Ok(saved == 1)
    }

    async fn sent(&self, id: &QueueId) -> Result<Option<Sent>> {
        let raw: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(self.keys.sent(id.as_str()))).await?;
        raw.map(|bytes| decode(&bytes)).transpose()
    }

    async fn purge_events(&self, before_ms: u64) -> Result<usize> {
        let old: Vec<String> = self.scored_between(&self.keys.sent_times, 0, before_ms).await?;
        for chunk in old.chunks(500) {
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("DEL")
                .arg(chunk.iter().map(|id| self.keys.sent(id)).collect::<Vec<_>>())
                .ignore();
            pipe.cmd("ZREM").arg(&self.keys.sent_times).arg(chunk).ignore();
            pipe.query_async::<()>(&mut self.conn()).await.map_err(unavailable)?;
        }
        let tenants: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&self.keys.event_tenants)).await?;
        let mut removed = 0;
        for tenant in tenants {
            let n: usize = self
                .query(
                    redis::cmd("XTRIM")
                        .arg(self.keys.events(&tenant))
                        .arg("MINID")
                        .arg(before_ms),
                )
                .await?;
            removed += n;
        }
        Ok(removed)
    }
}

/// A stream id as Redis gives them (`<ms>-<seq>`): what a cursor must be.
fn is_stream_id(s: &str) -> bool {
    s.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[async_trait]
impl Suppressions for RedisStore {
    async fn suppression(&self, tenant: &str, recipient: &str, now_ms: u64) -> Result<Option<Suppression>> {
        let found: Option<Suppression> = self
            .record_of(&self.keys.suppressed(tenant), &suppression::normalise(recipient))
            .await?;
        Ok(found.filter(|s| s.in_force(now_ms)))
    }

    async fn suppressions(&self, tenant: &str, search: Option<&str>, limit: usize) -> Result<Vec<Suppression>> {
        let search = search.map(suppression::normalise);
        let raw: Vec<(String, Vec<u8>)> = self
            .query(redis::cmd("HGETALL").arg(self.keys.suppressed(tenant)))
            .await?;
        let mut out = raw
            .into_iter()
            .filter(|(recipient, _)| search.as_deref().is_none_or(|s| recipient.contains(s)))
            .map(|(_, entry)| decode::<Suppression>(&entry))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.recipient.cmp(&b.recipient));
        out.truncate(limit);
        Ok(out)
    }

    async fn unsuppress(&self, tenant: &str, recipient: &str) -> Result<bool> {
        let removed: usize = self
            .query(
                redis::cmd("HDEL")
                    .arg(self.keys.suppressed(tenant))
                    .arg(suppression::normalise(recipient)),
            )
            .await?;
        Ok(removed > 0)
    }

    async fn count_soft_bounces(
        &self,
        tenant: &str,
        recipients: &[String],
        now_ms: u64,
        window_ms: u64,
    ) -> Result<Vec<u32>> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for recipient in recipients {
            let key = self.keys.soft_bounces(tenant, &suppression::normalise(recipient));
            let member = uuid::Uuid::now_v7().simple().to_string();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(now_ms.saturating_sub(window_ms))
                .ignore();
            pipe.cmd("ZADD").arg(&key).arg(now_ms).arg(member).ignore();
            pipe.cmd("ZCARD").arg(&key);
            pipe.cmd("PEXPIRE").arg(&key).arg(window_ms.max(1)).ignore();
        }
        pipe.query_async::<Vec<u32>>(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}

impl RedisStore {
    async fn unhold(&self, id: &QueueId, now_ms: u64, mode: &str, kind: EventKind, plan: Vec<u8>) -> Result<()> {
        let envelope: Option<Vec<u8>> = self
            .query(redis::cmd("HGET").arg(self.keys.message(id.as_str())).arg("e"))
            .await?;
        let Some(envelope) = envelope else {
            return Err(StoreError::NotFound(format!("held message {id}")));
        };
        let message: QueuedMessage = decode(&envelope)?;
        let outcome = match kind {
            EventKind::Released => Outcome::Released,
            _ => Outcome::Discarded,
        };
        let count = OutcomeCount::message(&message, outcome, now_ms);
        let mut invocation = self.scripts.held.key(&self.keys.held);
        invocation
            .key(&self.keys.due)
            .key(self.keys.events(&message.tenant))
            .key(&self.keys.event_tenants)
            .key(self.keys.message(id.as_str()))
            .key(&self.keys.outcome_hours)
            .key(self.keys.outcomes(count.hour))
            .arg(id.as_str())
            .arg(now_ms)
            .arg(mode)
            .arg(&message.tenant)
            .arg(encode(&EventRecord::about(&message, kind, now_ms)))
            .arg(plan)
            .arg(&self.keys.enqueued)
            .arg(count.field())
            .arg(count.hour);
        match self.run::<i64>(&invocation).await? {
            1 => self.replicated().await,
            _ => Err(StoreError::NotFound(format!("held message {id}"))),
        }
    }

    async fn keep_sign_in(&self, fact: &SignInFact, address: &str) -> Result<bool> {
        let mut invocation = self.scripts.sign_in.key(self.keys.sources(&fact.tenant, &fact.app));
        invocation
            .key(&self.keys.sign_in_facts)
            .arg(address)
            .arg(fact.at_ms)
            .arg(encode(fact))
            .arg(fact.at_ms.saturating_sub(SIGN_IN_FACTS_MS));
        let kept: i64 = self.run(&invocation).await?;
        Ok(kept == 1)
    }

    async fn incident_script(&self, mode: &str, incident: &Incident) -> Result<bool> {
        let mut invocation = self.scripts.incident.key(&self.keys.incidents);
        let holds = incident.policy != ferry_core::incident::Policy::Alert;
        let alert = incident.alert();
        invocation
            .key(&self.keys.open_incidents)
            .key(&self.keys.incident_times)
            .key(&self.keys.holding)
            .key(self.keys.alert(&alert.id))
            .key(&self.keys.alert_times)
            .key(&self.keys.outbox)
            .arg(mode)
            .arg(&incident.id)
            .arg(format!("{}\t{}", incident.tenant, incident.app))
            .arg(encode(incident))
            .arg(incident.opened_ms)
            .arg(if holds { "hold" } else { "" })
            .arg(encode(&alert))
            .arg(&alert.id)
            .arg(alert.value);
        let done: i64 = self.run(&invocation).await?;
        self.replicated().await?;
        Ok(done == 1)
    }
}

#[async_trait]
impl Incidents for RedisStore {
    async fn open_incident(&self, incident: Incident) -> Result<bool> {
        self.incident_script("open", &incident).await
    }

    async fn open_incident_of(&self, tenant: &str, app: &str) -> Result<Option<Incident>> {
        let id: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(&self.keys.open_incidents)
                    .arg(format!("{tenant}\t{app}")),
            )
            .await?;
        match id {
            Some(id) => self.incident(&id).await,
            None => Ok(None),
        }
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>> {
        self.record_of(&self.keys.incidents, id).await
    }

    async fn incidents(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<Incident>> {
        let ids: Vec<String> = self
            .query(redis::cmd("ZREVRANGE").arg(&self.keys.incident_times).arg(0).arg(-1))
            .await?;
        let mut out = Vec::new();
        for chunk in ids.chunks(200) {
            let raw: Vec<Option<Vec<u8>>> = self
                .query(redis::cmd("HMGET").arg(&self.keys.incidents).arg(chunk))
                .await?;
            for bytes in raw.into_iter().flatten() {
                let incident: Incident = decode(&bytes)?;
                if tenant.is_none_or(|t| t == incident.tenant) {
                    out.push(incident);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn held(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<(QueuedMessage, String)>> {
        let held: Vec<(String, String)> = self.query(redis::cmd("HGETALL").arg(&self.keys.held)).await?;
        let mut out = Vec::new();
        for (id, incident) in held {
            let envelope: Option<Vec<u8>> = self
                .query(redis::cmd("HGET").arg(self.keys.message(&id)).arg("e"))
                .await?;
            let Some(envelope) = envelope else { continue };
            let message: QueuedMessage = decode(&envelope)?;
            if tenant.is_none_or(|t| t == message.tenant) {
                out.push((message, incident));
            }
        }
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        out.truncate(limit);
        Ok(out)
    }

    async fn release_held(&self, id: &QueueId, metering: Option<Metering>, now_ms: u64) -> Result<()> {
        let plan = metering
            .as_ref()
            .map(|m| encode(&self.keys.plan(m)))
            .unwrap_or_default();
        self.unhold(id, now_ms, "release", EventKind::Released, plan).await
    }

    async fn discard_held(&self, id: &QueueId, now_ms: u64) -> Result<()> {
        self.unhold(id, now_ms, "discard", EventKind::Discarded, Vec::new())
            .await
    }

    async fn save_figures(&self, tenant: &str, app: &str, figures: &[HourFigures], keep_from: u64) -> Result<()> {
        let key = self.keys.figures(tenant, app);
        let hours: Vec<u64> = self.query(redis::cmd("HKEYS").arg(&key)).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for f in figures {
            pipe.cmd("HSET").arg(&key).arg(f.hour).arg(encode(f)).ignore();
        }
        let old: Vec<u64> = hours.into_iter().filter(|h| *h < keep_from).collect();
        if !old.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(old).ignore();
        }
        let () = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        self.replicated().await
    }

    async fn note_source(&self, tenant: &str, app: &str, address: std::net::IpAddr, at_ms: u64) -> Result<bool> {
        let fact = SignInFact {
            at_ms,
            tenant: tenant.to_string(),
            app: app.to_string(),
            kind: SignInKind::NewSource(address),
        };
        self.keep_sign_in(&fact, &address.to_string()).await
    }

    async fn note_after_lockout(&self, tenant: &str, app: &str, at_ms: u64) -> Result<()> {
        let fact = SignInFact {
            at_ms,
            tenant: tenant.to_string(),
            app: app.to_string(),
            kind: SignInKind::AfterLockout,
        };
        self.keep_sign_in(&fact, "").await.map(drop)
    }

    async fn sign_in_facts(&self, since_ms: u64) -> Result<Vec<SignInFact>> {
        let raw: Vec<Vec<u8>> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&self.keys.sign_in_facts)
                    .arg(since_ms)
                    .arg("+inf"),
            )
            .await?;
        raw.iter().map(|r| decode(r)).collect()
    }

    async fn figures(&self, tenant: &str, app: &str, from: u64, to: u64) -> Result<Vec<HourFigures>> {
        let all: Vec<(u64, Vec<u8>)> = self
            .query(redis::cmd("HGETALL").arg(self.keys.figures(tenant, app)))
            .await?;
        let mut out: Vec<HourFigures> = all
            .into_iter()
            .filter(|(hour, _)| (from..to).contains(hour))
            .map(|(_, raw)| decode(&raw))
            .collect::<Result<_>>()?;
        out.sort_by_key(|f| f.hour);
        Ok(out)
    }

    async fn resolve_incident(&self, id: &str, resolution: Resolution) -> Result<Incident> {
        let Some(mut incident) = self.incident(id).await? else {
            return Err(StoreError::NotFound(format!("incident {id}")));
        };
        if !incident.is_open() {
            return Err(StoreError::InUse(format!("incident {id} is closed already")));
        }
        incident.resolution = Some(resolution);
        if self.incident_script("resolve", &incident).await? {
            Ok(incident)
        } else {
            Err(StoreError::InUse(format!("incident {id} is closed already")))
        }
    }
}
