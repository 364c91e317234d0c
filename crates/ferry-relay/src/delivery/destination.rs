//! A destination actor: one per next hop (a recipient domain's MX hosts, or
//! a smart host), in the shape of KumoMTA's ready queues. It owns the
//! destination's open connections and its limits: how many connections at
//! once, how fast messages start, how many groups it holds, and the backoff
//! after repeated connection failures. A slow or dead destination fills only
//! its own queue; other destinations keep their pace. Started by the
//! delivery supervisor on first use, stopped when idle.
//!
//! Each transaction runs in a task of its own and reports back with a
//! `Done` (sent even if the task dies), so the actor itself never waits on
//! the network.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::{Clock, QueuedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::outbound::client::Connection;
use crate::outbound::{After, Answer, GroupResult, Hop, Outbound, attempt};
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub struct DestinationLimits {
    pub max_connections: usize,
    /// Least time between two message starts; None for no rate limit.
    pub min_interval: Option<Duration>,
    pub failure_limit: u32,
    pub backoff: Duration,
    /// An open connection waits this long for another message; an actor
    /// with nothing to do stops after it too.
    pub idle: Duration,
    /// Groups held at once (sending and waiting); beyond it, handed back.
    pub max_held: usize,
}

/// Recipients of one message that share this destination.
pub struct Group {
    pub rcpts: Vec<String>,
    pub message: Arc<QueuedMessage>,
    pub reply: RpcReplyPort<GroupAnswer>,
    /// The group's `delivery.group` span: its transaction runs in it.
    pub span: tracing::Span,
}

/// What became of a group.
pub enum GroupAnswer {
    Attempted(GroupResult),
    /// Not tried (the destination is full, or stopping): the message is
    /// handed back to the queue after `retry_in`, no attempt counted.
    NotAttempted {
        why: String,
        retry_in: Duration,
    },
}

pub enum DestinationMsg {
    Deliver(Group),
    /// A transaction ended.
    Done(Done),
    /// The rate limit allows the next start.
    Paced,
    /// Close stale connections; stop when idle.
    Tick,
    /// Hand back what waits, finish what runs.
    Drain,
}

/// A transaction's report.
#[derive(Default)]
pub struct Done {
    conn: Option<Connection>,
    connected: bool,
    connect_failed: bool,
}

pub struct DestinationArgs {
    pub hop: Hop,
    pub outbound: Arc<Outbound>,
    pub clock: Arc<dyn Clock>,
    pub limits: DestinationLimits,
}

pub struct Destination;

pub struct DestinationState {
    key: String,
    args: DestinationArgs,
    waiting: VecDeque<Group>,
    busy: usize,
    idle: Vec<(Connection, Instant)>,
    next_start: Instant,
    pace_pending: bool,
    failures: u32,
    suspended_until: Option<Instant>,
    last_active: Instant,
    draining: bool,
}

/// How often an actor looks for stale connections and idleness.
fn tick_every(limits: &DestinationLimits) -> Duration {
    (limits.idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

impl Actor for Destination {
    type Msg = DestinationMsg;
    type State = DestinationState;
    type Arguments = DestinationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DestinationMsg>,
        args: DestinationArgs,
    ) -> Result<DestinationState, ActorProcessingErr> {
        myself.send_after(tick_every(&args.limits), || DestinationMsg::Tick);
        Ok(DestinationState {
            key: args.hop.key(),
            args,
            waiting: VecDeque::new(),
            busy: 0,
            idle: Vec::new(),
            next_start: Instant::now(),
            pace_pending: false,
            failures: 0,
            suspended_until: None,
            last_active: Instant::now(),
            draining: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DestinationMsg>,
        msg: DestinationMsg,
        state: &mut DestinationState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DestinationMsg::Deliver(group) => state.take(group),
            DestinationMsg::Done(done) => state.done(done),
            DestinationMsg::Paced => state.pace_pending = false,
            DestinationMsg::Tick => {
                state.close_stale();
                if state.is_idle() {
                    myself.stop(Some("idle".into()));
                    return Ok(());
                }
                myself.send_after(tick_every(&state.args.limits), || DestinationMsg::Tick);
            }
            DestinationMsg::Drain => {
                state.draining = true;
                while let Some(group) = state.waiting.pop_front() {
                    not_attempted(group, "shutting down", Duration::ZERO);
                }
                state
                    .idle
                    .drain(..)
                    .for_each(|(conn, _)| drop(tokio::spawn(conn.quit())));
            }
        }
        state.pump(&myself);
        Ok(())
    }
}

pub(super) fn not_attempted(group: Group, why: &str, retry_in: Duration) {
    let _ = group.reply.send(GroupAnswer::NotAttempted {
        why: why.into(),
        retry_in,
    });
}

/// How long a group the destination had no room for waits in the queue.
const FULL_RETRY: Duration = Duration::from_secs(5);

impl DestinationState {
    fn take(&mut self, group: Group) {
        self.last_active = Instant::now();
        if self.draining {
            return not_attempted(group, "shutting down", Duration::ZERO);
        }
        if let Some(left) = self
            .suspended_until
            .and_then(|t| t.checked_duration_since(Instant::now()))
        {
            let why = format!(
                "destination {} backed off for {}s after repeated failures",
                self.key,
                left.as_secs()
            );
            let record = attempt(self.args.clock.now_ms(), &self.key, &group.rcpts, why.clone());
            let result = GroupResult::all(&group.rcpts, Answer::Deferred(why), record);
            let _ = group.reply.send(GroupAnswer::Attempted(result));
            return;
        }
        if self.waiting.len() + self.busy >= self.args.limits.max_held {
            return not_attempted(group, "destination busy", FULL_RETRY);
        }
        self.waiting.push_back(group);
    }

    fn done(&mut self, done: Done) {
        self.busy = self.busy.saturating_sub(1);
        self.last_active = Instant::now();
        if done.connected {
            self.failures = 0;
            self.suspended_until = None;
        }
        if done.connect_failed {
            self.failures += 1;
            let limits = self.args.limits;
            if self.failures >= limits.failure_limit {
                self.failures = 0;
                self.suspended_until = Some(Instant::now() + limits.backoff);
                tracing::warn!(destination = %self.key, backoff_secs = limits.backoff.as_secs(), "destination keeps failing; backing off");
            }
        }
        if let Some(conn) = done.conn {
            if self.draining {
                tokio::spawn(conn.quit());
            } else {
                self.idle.push((conn, Instant::now()));
            }
        }
    }

    /// Starts waiting groups while connections and the rate allow.
    fn pump(&mut self, myself: &ActorRef<DestinationMsg>) {
        while self.busy < self.args.limits.max_connections && !self.waiting.is_empty() {
            if let Some(interval) = self.args.limits.min_interval {
                let now = Instant::now();
                if self.next_start > now {
                    if !self.pace_pending {
                        self.pace_pending = true;
                        myself.send_after(self.next_start - now, || DestinationMsg::Paced);
                    }
                    return;
                }
                self.next_start = now + interval;
            }
            let Some(group) = self.waiting.pop_front() else { return };
            self.busy += 1;
            let conn = self.fresh_idle();
            let work = Transaction {
                hop: self.args.hop.clone(),
                key: self.key.clone(),
                outbound: self.args.outbound.clone(),
                clock: self.args.clock.clone(),
            };
            let report = DoneReport {
                to: myself.clone(),
                done: Done::default(),
            };
            let span = group.span.clone();
            tokio::spawn(work.run(conn, group, report).instrument(span));
        }
    }

    fn fresh_idle(&mut self) -> Option<Connection> {
        let idle = self.args.limits.idle;
        self.close_stale();
        self.idle
            .pop()
            .filter(|(_, since)| since.elapsed() < idle)
            .map(|(c, _)| c)
    }

    fn close_stale(&mut self) {
        let idle = self.args.limits.idle;
        let (stale, fresh): (Vec<_>, Vec<_>) = self.idle.drain(..).partition(|(_, since)| since.elapsed() >= idle);
        self.idle = fresh;
        for (conn, _) in stale {
            tokio::spawn(conn.quit());
        }
    }

    /// Nothing waiting, running or open, no backoff to remember, and quiet
    /// for the idle time.
    fn is_idle(&self) -> bool {
        self.waiting.is_empty()
            && self.busy == 0
            && self.idle.is_empty()
            && self.suspended_until.is_none_or(|t| t <= Instant::now())
            && self.last_active.elapsed() >= self.args.limits.idle
    }
}

/// Sends the transaction's `Done` when dropped: a task that panics still
/// gives its connection slot back.
struct DoneReport {
    to: ActorRef<DestinationMsg>,
    done: Done,
}

impl Drop for DoneReport {
    fn drop(&mut self) {
        let _ = self.to.cast(DestinationMsg::Done(std::mem::take(&mut self.done)));
    }
}

/// One transaction, off the actor.
struct Transaction {
    hop: Hop,
    key: String,
    outbound: Arc<Outbound>,
    clock: Arc<dyn Clock>,
}

impl Transaction {
    async fn run(self, conn: Option<Connection>, group: Group, mut report: DoneReport) {
        let now = self.clock.now_ms();
        let mut conn = match conn {
            Some(conn) => conn,
            None => match self.open(&group.rcpts, now, &mut report.done).await {
                Ok(conn) => conn,
                Err(result) => {
                    let _ = group.reply.send(GroupAnswer::Attempted(result));
                    return;
                }
            },
        };
        report.done.connected = true;
        let (result, after) = self.outbound.send(&mut conn, &group.rcpts, &group.message, now).await;
        let _ = group.reply.send(GroupAnswer::Attempted(result));
        match after {
            After::Reuse => report.done.conn = Some(conn),
            After::Quit => conn.quit().await,
            After::Drop => {}
        }
    }

    async fn open(&self, rcpts: &[String], now: u64, done: &mut Done) -> Result<Connection, GroupResult> {
        let target = self
            .outbound
            .target(&self.hop)
            .await
            .map_err(|(answer, why)| GroupResult::all(rcpts, answer, attempt(now, &self.key, rcpts, why)))?;
        self.outbound.connect(&target).await.map_err(|e| {
            done.connect_failed = true;
            let why = format!("451 4.4.1 {e}");
            GroupResult::all(
                rcpts,
                Answer::Deferred(why.clone()),
                attempt(now, &self.key, rcpts, why),
            )
        })
    }
}
