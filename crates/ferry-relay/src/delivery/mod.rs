//! Delivery: the delivery supervisor takes due messages from the shared
//! queue under short leases that it renews while it holds them, runs one
//! task per message, and routes each group of recipients to the actor of its
//! destination, started on first use.
//!
//! Layout:
//! - [`DeliverySupervisor`] (here): leases, renewals, the destination
//!   actors it owns (restarted never: a new one is started on the next
//!   message for that destination).
//! - [`Holdings`] (here): the messages held and the walks working on them.
//!   They outlive a restart of the supervisor, which renews the same leases
//!   and starts no message twice; the walks are aborted only when delivery
//!   itself goes away. Aborting a walk whose transaction had sent its final
//!   dot is what would send a message twice, so a restart never does.
//! - `message`: one message's walk: group, route, record each answer, then
//!   done, retry, bounce or hand back.
//! - `destination`: the per-destination actor and its transactions.
//!
//! A lease is `delivery.lease_secs` long and renewed every third of it, so
//! a node killed with -9 leaves its messages due again within one lease,
//! while a node that is alive and working keeps them: a renewal moves only
//! a lease that still ends where this node left it. A result is saved only
//! under the lease it was made under (the store checks the lease's token),
//! so a walk that lost its lease never overwrites what the new holder saves.

mod destination;
mod message;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use ferry_core::config::RouteKind;
use ferry_core::retry::RetrySchedule;
use ferry_core::{Clock, QueueId};
use ferry_store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use self::destination::DestinationLimits;
use self::destination::{Destination, DestinationArgs, DestinationMsg, Group};
use crate::capture::CaptureRoute;
use crate::outbound::{Hop, Outbound};

/// What every message task shares.
pub struct DeliveryWork {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub capture: CaptureRoute,
    /// Capture writes at once (`delivery.max_connections_per_destination`).
    pub capture_slots: tokio::sync::Semaphore,
    pub outbound: Arc<Outbound>,
    pub default_route: RouteKind,
    pub retry: RetrySchedule,
    /// When a bounce puts its recipient on the tenant's suppression list.
    pub suppression: ferry_core::config::SuppressionRules,
    pub hostname: String,
    /// Notified when this node queues a message (a bounce); also by other
    /// nodes' enqueues through the store.
    pub wakeup: Arc<Notify>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long a result that could not be saved is tried again (the
    /// lease's length: past it another attempt may start anyway).
    pub save_for: Duration,
    /// The outbound connect and command timeouts: what bounds a transaction.
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// What this node holds, across restarts of the supervisor.
    pub holdings: Holdings,
    /// The supervisor running now: walks route through it and tell it when
    /// they end, whichever incarnation started them.
    pub supervisor: Mutex<Option<ActorRef<DeliveryMsg>>>,
}

impl DeliveryWork {
    fn current_supervisor(&self) -> Option<ActorRef<DeliveryMsg>> {
        self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The longest a transaction for `rcpts` recipients can take: each of
    /// its steps has a timeout, so waiting for its answer never waits forever.
    fn transaction_bound(&self, rcpts: usize) -> Duration {
        let steps = u32::try_from(rcpts.saturating_add(8)).unwrap_or(u32::MAX);
        self.connect_timeout + self.command_timeout.saturating_mul(steps)
    }
}

/// The messages a node's delivery holds (id → the end of its lease, None
/// once the lease was lost while its walk still saves a result), the
/// token of the lease held last on each, and the walks working on them.
#[derive(Default)]
pub struct Holdings {
    held: Mutex<HashMap<QueueId, Option<u64>>>,
    tokens: Mutex<HashMap<QueueId, String>>,
    walks: Mutex<JoinSet<()>>,
}

impl Holdings {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<QueueId, Option<u64>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.held().len()
    }

    pub fn is_empty(&self) -> bool {
        self.held().is_empty()
    }

    /// Records a lease; true when no walk works on the message yet (after
    /// a lost lease the message may come back while its walk still saves:
    /// the walk then saves under this lease, see [`Holdings::token_of`]).
    fn hold(&self, id: &QueueId, until: u64, token: Option<&str>) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match token {
            Some(token) => tokens.insert(id.clone(), token.to_string()),
            None => tokens.remove(id),
        };
        self.held().insert(id.clone(), Some(until)).is_none()
    }

    /// The token of the lease this node holds last on the message: a walk
    /// that outlived its first lease (its renewal late under load) saves
    /// under the one the node took again, so nobody sends it twice.
    fn token_of(&self, id: &QueueId) -> Option<String> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn lease_of(&self, id: &QueueId) -> Option<u64> {
        self.held().get(id).copied().flatten()
    }

    fn leases(&self) -> Vec<(QueueId, u64)> {
        self.held()
            .iter()
            .filter_map(|(id, until)| until.map(|t| (id.clone(), t)))
            .collect()
    }

    /// After a renewal: the moved leases end at `until`, the others (in
    /// `asked`) are no longer this node's.
    fn renewed(&self, asked: &[(QueueId, u64)], moved: &[QueueId], until: u64) {
        let moved: std::collections::HashSet<&QueueId> = moved.iter().collect();
        let mut held = self.held();
        for (id, asked_until) in asked {
            // Taken again meanwhile (a newer lease): not this renewal's to judge.
            if let Some(lease) = held.get_mut(id).filter(|l| **l == Some(*asked_until)) {
                *lease = moved.contains(id).then_some(until);
                if lease.is_none() {
                    tracing::debug!(queue_id = %id, "lease no longer held");
                }
            }
        }
    }

    fn release(&self, id: &QueueId) {
        self.held().remove(id);
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    fn spawn(&self, walk: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut walks = self.walks.lock().unwrap_or_else(|p| p.into_inner());
        // Reaps the walks that ended, so the set holds only running ones.
        while walks.try_join_next().is_some() {}
        walks.spawn(walk);
    }
}

#[derive(Clone)]
pub struct DeliveryArgs {
    pub work: Arc<DeliveryWork>,
    pub lease: Duration,
    /// Messages held at once.
    pub max_held: usize,
    pub limits: DestinationLimits,
}

pub enum DeliveryMsg {
    /// Lease what is due, if there is room.
    Poll,
    /// The periodic look: renew leases when due, then poll.
    Tick,
    /// A message task routes a group to its destination.
    Route { hop: Hop, group: Group },
    /// A message task ended (and released its holding).
    Finished,
    /// Stop taking messages; answer once every message held is finished.
    Drain(RpcReplyPort<()>),
}

pub struct DeliverySupervisor;

pub struct DeliveryState {
    args: DeliveryArgs,
    destinations: HashMap<String, ActorRef<DestinationMsg>>,
    /// The last lease filled the room: more may be due.
    more_due: bool,
    next_renewal: Instant,
    draining: bool,
    drained: Vec<RpcReplyPort<()>>,
    /// Set while a wake-up Poll is in the mailbox, so wakes coalesce.
    poll_queued: Arc<AtomicBool>,
    _waker: AbortOnDrop,
}

/// How often the queue is looked at when nothing wakes delivery (retries
/// falling due, other nodes' leases running out).
const POLL: Duration = Duration::from_millis(500);

/// The most messages one lease takes. On the embedded store a lease is
/// applied by the writer in the same batch as the sessions' enqueues, so a
/// large one would hold up their 250s; several small ones do not.
const LEASE_BATCH: usize = 16;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Actor for DeliverySupervisor {
    type Msg = DeliveryMsg;
    type State = DeliveryState;
    type Arguments = DeliveryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DeliveryMsg>,
        args: DeliveryArgs,
    ) -> Result<DeliveryState, ActorProcessingErr> {
        let poll_queued = Arc::new(AtomicBool::new(false));
        let waker = tokio::spawn(forward_wakes(
            args.work.wakeup.clone(),
            poll_queued.clone(),
            myself.clone(),
        ));
        myself.cast(DeliveryMsg::Tick)?;
        *args.work.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(myself.clone());
        Ok(DeliveryState {
            args,
            destinations: HashMap::new(),
            more_due: false,
            // A restarted supervisor renews what the last one held at once.
            next_renewal: Instant::now(),
            draining: false,
            drained: Vec::new(),
            poll_queued,
            _waker: AbortOnDrop(waker),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DeliveryMsg>,
        msg: DeliveryMsg,
        state: &mut DeliveryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DeliveryMsg::Poll => state.poll(&myself).await,
            DeliveryMsg::Tick => {
                if Instant::now() >= state.next_renewal {
                    state.renew().await;
                }
                // Walks started by an earlier incarnation tell no one they ended.
                state.answer_drained();
                state.poll(&myself).await;
                myself.send_after(POLL, || DeliveryMsg::Tick);
            }
            DeliveryMsg::Route { hop, group } => state.route(&myself, hop, group).await,
            DeliveryMsg::Finished => {
                state.answer_drained();
                if state.more_due {
                    state.poll(&myself).await;
                }
            }
            DeliveryMsg::Drain(reply) => {
                state.draining = true;
                for destination in state.destinations.values() {
                    let _ = destination.cast(DestinationMsg::Drain);
                }
                if state.args.work.holdings.is_empty() {
                    let _ = reply.send(());
                } else {
                    state.drained.push(reply);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<DeliveryMsg>,
        event: SupervisionEvent,
        state: &mut DeliveryState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match event {
            SupervisionEvent::ActorFailed(cell, e) => {
                tracing::error!(error = %e, "destination actor failed; its messages go back to the queue");
                cell
            }
            SupervisionEvent::ActorTerminated(cell, ..) => cell,
            _ => return Ok(()),
        };
        state.destinations.retain(|_, actor| actor.get_id() != cell.get_id());
        state
            .args
            .work
            .metrics
            .destinations
            .set(state.destinations.len() as i64);
        Ok(())
    }
}

/// Turns wake-ups (enqueues here and on other nodes) into Polls, at most
/// one waiting in the mailbox at a time.
async fn forward_wakes(wakeup: Arc<Notify>, queued: Arc<AtomicBool>, to: ActorRef<DeliveryMsg>) {
    loop {
        wakeup.notified().await;
        if !queued.swap(true, Ordering::AcqRel) && to.cast(DeliveryMsg::Poll).is_err() {
            return;
        }
    }
}

impl DeliveryState {
    fn lease_ms(&self) -> u64 {
        self.args.lease.as_millis() as u64
    }

    async fn poll(&mut self, myself: &ActorRef<DeliveryMsg>) {
        self.poll_queued.store(false, Ordering::Release);
        if self.draining {
            return;
        }
        let holdings = &self.args.work.holdings;
        let room = self.args.max_held.saturating_sub(holdings.len()).min(LEASE_BATCH);
        if room == 0 {
            self.more_due = true;
            return;
        }
        let work = &self.args.work;
        let now = work.clock.now_ms();
        let batch = match work.store.lease(now, self.lease_ms(), room).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot take messages from the queue");
                return;
            }
        };
        self.more_due = batch.len() == room;
        if self.more_due && holdings.len() + batch.len() < self.args.max_held {
            // More may be due and there is room: take them in the next turn,
            // after what waits in the mailbox.
            if !self.poll_queued.swap(true, Ordering::AcqRel) {
                let _ = myself.cast(DeliveryMsg::Poll);
            }
        }
        let until = now + self.lease_ms();
        for message in batch {
            if holdings.hold(&message.id, until, message.lease.as_deref()) {
                let span = crate::trace::delivery(
                    &message.id,
                    &message.tenant,
                    &message.app,
                    message.attempts + 1,
                    message.recipients.len(),
                );
                let walk = message::deliver(work.clone(), message, span.clone());
                holdings.spawn(walk.instrument(span));
            }
        }
    }

    /// Renews every lease held; one no longer ours (it ran out, or the
    /// message was recorded a moment ago) is forgotten.
    async fn renew(&mut self) {
        self.next_renewal = Instant::now() + self.args.lease / 3;
        let work = &self.args.work;
        let held = work.holdings.leases();
        if held.is_empty() {
            return;
        }
        let until = work.clock.now_ms() + self.lease_ms();
        match work.store.extend_leases(&held, until).await {
            Ok(moved) => work.holdings.renewed(&held, &moved, until),
            Err(e) => tracing::warn!(error = %e, messages = held.len(), "cannot renew the leases held"),
        }
    }

    fn answer_drained(&mut self) {
        if self.draining && self.args.work.holdings.is_empty() {
            self.drained.drain(..).for_each(|reply| drop(reply.send(())));
        }
    }

    async fn route(&mut self, myself: &ActorRef<DeliveryMsg>, hop: Hop, group: Group) {
        if self.draining {
            return destination::not_attempted(group, "shutting down", Duration::ZERO);
        }
        let key = hop.key();
        let group = match self.destinations.get(&key) {
            Some(actor) => match actor.cast(DestinationMsg::Deliver(group)) {
                Ok(()) => return,
                Err(ractor::MessagingErr::SendErr(DestinationMsg::Deliver(group))) => group,
                Err(_) => return,
            },
            None => group,
        };
        // No actor, or it is stopping: start one.
        let args = DestinationArgs {
            hop,
            outbound: self.args.work.outbound.clone(),
            clock: self.args.work.clock.clone(),
            limits: self.args.limits,
        };
        match Actor::spawn_linked(None, Destination, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                let _ = actor.cast(DestinationMsg::Deliver(group));
                self.destinations.insert(key, actor);
                self.args.work.metrics.destinations.set(self.destinations.len() as i64);
            }
            Err(e) => tracing::error!(destination = %key, error = %e, "cannot start a destination actor"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_taken_again_while_its_walk_runs_is_saved_under_the_newer_lease() {
        let holdings = Holdings::default();
        let id = QueueId::generate();
        assert!(holdings.hold(&id, 10, Some("first")), "a new walk");
        // The renewal came too late: the lease ran out, this node took the
        // message again while its walk still waits for the DATA answer.
        assert!(!holdings.hold(&id, 20, Some("second")), "no second walk");
        assert_eq!(holdings.token_of(&id).as_deref(), Some("second"));
        // The late renewal of the first lease says nothing of the second.
        holdings.renewed(&[(id.clone(), 10)], &[], 30);
        assert_eq!(holdings.lease_of(&id), Some(20));
        holdings.renewed(&[(id.clone(), 20)], std::slice::from_ref(&id), 30);
        assert_eq!(holdings.lease_of(&id), Some(30));
        holdings.release(&id);
        assert_eq!((holdings.lease_of(&id), holdings.token_of(&id)), (None, None));
    }
}
