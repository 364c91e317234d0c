//! The node supervisor: the root of the actor tree. It starts its permanent
//! children (listeners, delivery, the alert dispatcher, the keyring, the
//! embedded store's writer), restarts one that fails or stops with
//! exponential backoff within a restart budget, and publishes the node's
//! health: unready while a permanent child is down, and failed for good
//! once a child spends its budget — then the process drains and exits
//! non-zero, so an orchestrator replaces it rather than it limping on.
//!
//! Our own supervisor rather than `ractor-supervisor`: what Ferry needs of
//! it is the health it publishes (readiness, the fatal exit) and orderly
//! stops on drain, and that is most of this file.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use tokio::sync::watch;

/// How a permanent child is restarted, written next to each child where
/// the tree is assembled.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`; one more is fatal for the node.
    pub max_restarts: usize,
    pub window: Duration,
    /// Wait before the first restart; doubles with each restart in the window.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl RestartPolicy {
    /// The delay before restart number `n` (1-based) within the window.
    fn backoff(&self, n: usize) -> Duration {
        let doublings = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
        self.backoff_min.saturating_mul(1 << doublings).min(self.backoff_max)
    }
}

/// Starts one child linked to the supervisor it is given.
pub type StartChild = Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// A permanent child of the node.
pub struct ChildSpec {
    pub name: String,
    pub policy: RestartPolicy,
    pub start: StartChild,
}

/// What `/readyz` and `/livez` report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// Permanent children not running at the moment (between restarts).
    pub down: BTreeSet<String>,
    /// Set once a child spent its restart budget: the node must exit.
    pub fatal: Option<String>,
    /// Set when the node drains (SIGTERM).
    pub draining: bool,
}

impl NodeHealth {
    pub fn ready(&self) -> bool {
        self.down.is_empty() && self.fatal.is_none() && !self.draining
    }
}

pub struct NodeSupervisor;

pub struct SupervisorArgs {
    pub children: Vec<ChildSpec>,
    pub health: Arc<watch::Sender<NodeHealth>>,
}

pub enum SupervisorMsg {
    /// Start a child again after its backoff.
    Restart(usize),
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    /// When it was restarted, within the policy's window.
    restarts: VecDeque<Instant>,
}

pub struct SupervisorState {
    children: Vec<Child>,
    health: Arc<watch::Sender<NodeHealth>>,
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    /// Starts every child, in order; one that cannot start fails the node's start.
    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut children = Vec::with_capacity(args.children.len());
        for spec in args.children {
            let cell = (spec.start)(myself.get_cell())
                .await
                .map_err(|e| format!("{}: cannot start: {e}", spec.name))?;
            children.push(Child {
                spec,
                cell: Some(cell),
                restarts: VecDeque::new(),
            });
        }
        Ok(SupervisorState {
            children,
            health: args.health,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisorMsg::Restart(index) = msg;
        if state.health.borrow().fatal.is_some() {
            return Ok(());
        }
        let Some(child) = state.children.get_mut(index) else {
            return Ok(());
        };
        match (child.spec.start)(myself.get_cell()).await {
            Ok(cell) => {
                tracing::info!(child = %child.spec.name, "restarted");
                child.cell = Some(cell);
                let name = child.spec.name.clone();
                state.health.send_modify(|h| {
                    h.down.remove(&name);
                });
            }
            Err(e) => {
                tracing::error!(child = %child.spec.name, error = %e, "restart failed");
                state.child_down(&myself, index, e.to_string());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, format!("failed: {e}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("stopped: {}", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        let found = state
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|own| own.get_id() == cell.get_id()));
        if let Some(index) = found {
            state.children[index].cell = None;
            state.child_down(&myself, index, why);
        }
        Ok(())
    }

    /// Stops the children one at a time, the last started first, each
    /// finishing the message at hand (delivery and the dispatcher end their
    /// current step rather than being cut off).
    async fn post_stop(
        &self,
        _: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        for child in state.children.iter_mut().rev() {
            if let Some(cell) = child.cell.take() {
                let _ = cell
                    .stop_and_wait(Some("node stopping".into()), Some(Duration::from_secs(10)))
                    .await;
            }
        }
        Ok(())
    }
}

impl SupervisorState {
    /// A child is down: restart it after its backoff, or, past its budget,
    /// mark the node failed.
    fn child_down(&mut self, myself: &ActorRef<SupervisorMsg>, index: usize, why: String) {
        let child = &mut self.children[index];
        let name = child.spec.name.clone();
        let policy = child.spec.policy;
        let now = Instant::now();
        while child
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.window)
        {
            child.restarts.pop_front();
        }
        if child.restarts.len() >= policy.max_restarts {
            let fatal = format!(
                "{name} {why}; {} restarts within {}s: restart budget spent",
                child.restarts.len(),
                policy.window.as_secs()
            );
            tracing::error!(child = %name, "{fatal}");
            self.health.send_modify(|h| {
                h.down.insert(name);
                h.fatal = Some(fatal);
            });
            return;
        }
        child.restarts.push_back(now);
        let delay = policy.backoff(child.restarts.len());
        tracing::error!(child = %name, reason = %why, restart_in_ms = delay.as_millis() as u64, "child down; restarting");
        self.health.send_modify(|h| {
            h.down.insert(name);
        });
        myself.send_after(delay, move || SupervisorMsg::Restart(index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A test-only child: panics when told to.
    struct Flaky;

    impl Actor for Flaky {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
        async fn handle(&self, _: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
            panic!("told to fail");
        }
    }

    type Current = Arc<Mutex<Vec<ActorRef<()>>>>;

    fn flaky_spec(started: Current, max_restarts: usize) -> ChildSpec {
        ChildSpec {
            name: "flaky".into(),
            policy: RestartPolicy {
                max_restarts,
                window: Duration::from_secs(60),
                backoff_min: Duration::from_millis(10),
                backoff_max: Duration::from_millis(40),
            },
            start: Arc::new(move |sup| {
                let started = started.clone();
                Box::pin(async move {
                    let (actor, _) = Actor::spawn_linked(None, Flaky, (), sup).await?;
                    started.lock().expect("lock").push(actor.clone());
                    Ok(actor.get_cell())
                })
            }),
        }
    }

    async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_child_is_restarted_within_its_budget_and_past_it_the_node_fails() {
        let started: Current = Arc::default();
        let (health, watch) = watch::channel(NodeHealth::default());
        let args = SupervisorArgs {
            children: vec![flaky_spec(started.clone(), 2)],
            health: Arc::new(health),
        };
        let (supervisor, _) = Actor::spawn(None, NodeSupervisor, args).await.expect("start");
        assert_eq!(started.lock().expect("lock").len(), 1);
        assert!(watch.borrow().ready());

        for restarts in 1..=2 {
            let current = started.lock().expect("lock").last().cloned().expect("child");
            current.cast(()).expect("cast");
            wait_for("the restart", || started.lock().expect("lock").len() == restarts + 1).await;
            wait_for("ready again", || watch.borrow().ready()).await;
        }

        let current = started.lock().expect("lock").last().cloned().expect("child");
        current.cast(()).expect("cast");
        wait_for("the node to fail", || watch.borrow().fatal.is_some()).await;
        let health = watch.borrow().clone();
        assert!(!health.ready(), "a node past its budget is not ready");
        assert!(health.down.contains("flaky"));
        assert!(
            health
                .fatal
                .as_deref()
                .is_some_and(|f| f.contains("restart budget spent")),
            "{health:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(started.lock().expect("lock").len(), 3, "no restart past the budget");
        supervisor.stop(None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let policy = RestartPolicy {
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }
}
