//! Delivery: the delivery supervisor takes due messages from the shared
//! queue under short leases that it renews while it holds them, runs one
//! task per message, and routes each group of recipients to the actor of its
//! destination, started on first use.
//!
//! Layout:
//! - [`DeliverySupervisor`] (here): leases, renewals, hand-backs, the
//!   destination actors it owns (restarted never: a new one is started on
//!   the next message for that destination).
//! - `message`: one message's walk: group, route, record each answer, then
//!   done, retry, bounce or hand back.
//! - `destination`: the per-destination actor and its transactions.
//!
//! A lease is `delivery.lease_secs` long and renewed every third of it, so
//! a node killed with -9 leaves its messages due again within one lease,
//! while a node that is alive and working keeps them: a renewal moves only
//! a lease that still ends where this node left it.

mod destination;
mod message;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use ferry_core::config::RouteKind;
use ferry_core::retry::RetrySchedule;
use ferry_core::{Clock, QueueId};
use ferry_store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::Notify;

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
    pub hostname: String,
    /// Notified when this node queues a message (a bounce); also by other
    /// nodes' enqueues through the store.
    pub wakeup: Arc<Notify>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long a result that could not be saved is tried again (the
    /// lease's length: past it another attempt may start anyway).
    pub save_for: Duration,
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
    /// A message task hands its message back to the queue, due after the delay.
    HandBack { id: QueueId, after: Duration },
    /// A message task ended.
    Finished(QueueId),
    /// Stop taking messages; answer once every message held is finished.
    Drain(RpcReplyPort<()>),
}

pub struct DeliverySupervisor;

pub struct DeliveryState {
    args: DeliveryArgs,
    /// Message id → the end of the lease this node holds.
    held: HashMap<QueueId, u64>,
    /// Messages a task of this node is working on, until it says it is
    /// done. Usually the ids in `held`; not always: after a failover the
    /// store may have lost a lease, and the message comes back in a new
    /// one while its task still saves the last result. It is not started twice.
    working: HashSet<QueueId>,
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
        Ok(DeliveryState {
            args,
            held: HashMap::new(),
            working: HashSet::new(),
            destinations: HashMap::new(),
            more_due: false,
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
                state.poll(&myself).await;
                myself.send_after(POLL, || DeliveryMsg::Tick);
            }
            DeliveryMsg::Route { hop, group } => state.route(&myself, hop, group).await,
            DeliveryMsg::HandBack { id, after } => {
                state.hand_back(id, after).await;
                state.answer_drained();
            }
            DeliveryMsg::Finished(id) => {
                state.held.remove(&id);
                state.working.remove(&id);
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
                if state.held.is_empty() {
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
        let room = self.args.max_held.saturating_sub(self.held.len()).min(LEASE_BATCH);
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
        if self.more_due && self.held.len() + batch.len() < self.args.max_held {
            // More may be due and there is room: take them in the next turn,
            // after what waits in the mailbox.
            if !self.poll_queued.swap(true, Ordering::AcqRel) {
                let _ = myself.cast(DeliveryMsg::Poll);
            }
        }
        let until = now + self.lease_ms();
        for message in batch {
            self.held.insert(message.id.clone(), until);
            if self.working.insert(message.id.clone()) {
                let span = crate::trace::delivery(
                    &message.id,
                    &message.tenant,
                    &message.app,
                    message.attempts + 1,
                    message.recipients.len(),
                );
                let walk = message::deliver(work.clone(), myself.clone(), message, span.clone());
                tokio::spawn(walk.instrument(span));
            }
        }
    }

    /// Renews every lease held; one no longer ours (it ran out, or the
    /// message was recorded a moment ago) is forgotten.
    async fn renew(&mut self) {
        self.next_renewal = Instant::now() + self.args.lease / 3;
        if self.held.is_empty() {
            return;
        }
        let work = &self.args.work;
        let until = work.clock.now_ms() + self.lease_ms();
        let held: Vec<(QueueId, u64)> = self.held.iter().map(|(id, t)| (id.clone(), *t)).collect();
        match work.store.extend_leases(&held, until).await {
            Ok(moved) => {
                let mut kept = HashMap::with_capacity(moved.len());
                for id in moved {
                    kept.insert(id, until);
                }
                for id in self.held.keys().filter(|id| !kept.contains_key(*id)) {
                    tracing::debug!(queue_id = %id, "lease no longer held");
                }
                self.held = kept;
            }
            Err(e) => tracing::warn!(error = %e, messages = held.len(), "cannot renew the leases held"),
        }
    }

    fn answer_drained(&mut self) {
        if self.draining && self.held.is_empty() {
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

    async fn hand_back(&mut self, id: QueueId, after: Duration) {
        let Some(until) = self.held.remove(&id) else { return };
        let work = &self.args.work;
        let due = work.clock.now_ms() + after.as_millis() as u64;
        if let Err(e) = work.store.extend_leases(&[(id.clone(), until)], due).await {
            tracing::warn!(queue_id = %id, error = %e, "cannot hand a message back; it is due when its lease ends");
        }
    }
}
