//! Listeners: accept connections, read a load balancer's PROXY header,
//! enforce the per-node and per-source-address session caps, and start one
//! session actor per connection. Admission is
//! decided here, before an actor exists: actor mailboxes are unbounded, the
//! caps are what bound the sessions.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ferry_smtp::{SessionConfig, TlsPolicy};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::proxy;
use crate::session::{self, SessionContext};

/// The kinds of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Port 25 style: STARTTLS offered.
    Smtp,
    /// Port 587 style: STARTTLS required before AUTH and MAIL.
    Submission,
    /// Port 465 style: implicit TLS.
    Submissions,
    /// Port 587 style for clients inside the network, never behind a
    /// balancer: a PROXY header is never read, from any address.
    DirectSubmission,
    /// Port 25 for reports to tenants' bounce domains: no AUTH, only
    /// Ferry's own return paths (see [`crate::inbound`]).
    Inbound,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
            ListenerKind::DirectSubmission => "direct_submission",
            ListenerKind::Inbound => "inbound",
        }
    }

    /// Whether connections from a trusted balancer carry a PROXY header here.
    fn reads_proxy_header(self) -> bool {
        self != ListenerKind::DirectSubmission
    }

    pub fn tls_policy(self, tls_available: bool) -> TlsPolicy {
        match (self, tls_available) {
            (_, false) => TlsPolicy::Unavailable,
            (ListenerKind::Smtp | ListenerKind::Inbound, true) => TlsPolicy::Offered,
            (ListenerKind::Submission | ListenerKind::DirectSubmission, true) => TlsPolicy::Required,
            (ListenerKind::Submissions, true) => TlsPolicy::Implicit,
        }
    }
}

/// Session caps shared by all listeners of a node.
pub struct SessionLimits {
    node: Arc<Semaphore>,
    per_ip: usize,
    by_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// `ferry_sessions`: open sessions on this node.
    open: prometheus::IntGauge,
}

/// Holds one session's place in the caps until dropped.
pub struct SessionSlot {
    _node: OwnedSemaphorePermit,
    ip: IpAddr,
    by_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    open: prometheus::IntGauge,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.open.dec();
        release_ip(&self.by_ip, self.ip);
    }
}

fn release_ip(by_ip: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr) {
    let mut map = by_ip.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

impl SessionLimits {
    pub fn new(node: usize, per_ip: usize, open: prometheus::IntGauge) -> Self {
        SessionLimits {
            node: Arc::new(Semaphore::new(node)),
            per_ip,
            open,
            by_ip: Arc::default(),
        }
    }

    /// Waits until every admitted session has ended, or `grace` passed.
    pub async fn drained(&self, total: usize, grace: std::time::Duration) -> bool {
        let all = u32::try_from(total).unwrap_or(u32::MAX);
        tokio::time::timeout(grace, self.node.acquire_many(all)).await.is_ok()
    }

    fn admit(&self, ip: IpAddr) -> Option<SessionSlot> {
        let node = self.node.clone().try_acquire_owned().ok()?;
        self.admit_with(node, ip)
    }

    /// A connection that held a place under its balancer's address while it
    /// waited for the PROXY header moves to its client's address; None (and
    /// the place given up) if that address is at its cap.
    fn readmit(&self, mut pending: SessionSlot, client: IpAddr) -> Option<SessionSlot> {
        // Its node permit is kept; only the address count moves.
        if !self.count_in(client) {
            return None;
        }
        release_ip(&self.by_ip, pending.ip);
        pending.ip = client;
        Some(pending)
    }

    fn admit_with(&self, node: OwnedSemaphorePermit, ip: IpAddr) -> Option<SessionSlot> {
        if !self.count_in(ip) {
            return None;
        }
        self.open.inc();
        Some(SessionSlot {
            _node: node,
            ip,
            by_ip: self.by_ip.clone(),
            open: self.open.clone(),
        })
    }

    /// Counts one more session of `ip`, unless it is at its cap.
    fn count_in(&self, ip: IpAddr) -> bool {
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&ip).is_some_and(|n| *n >= self.per_ip) {
            return false;
        }
        *map.entry(ip).or_insert(0) += 1;
        true
    }
}

/// The listener actor: accepts connections one `Accept` message at a time
/// (so the supervision events of its sessions are handled in between), and
/// spawns one session actor per admitted connection, linked to itself.
/// Restarted by the node supervisor with the same bound socket. Sessions
/// are never restarted: a client whose session died reconnects.
#[derive(Clone)]
pub struct Listener;

/// A listener's socket, shared with its child spec so a restart serves the
/// same port; taken away on drain, which closes it.
pub type ListenerSocket = Arc<Mutex<Option<Arc<TcpListener>>>>;

#[derive(Clone)]
pub struct ListenerArgs {
    pub socket: ListenerSocket,
    pub kind: ListenerKind,
    pub ctx: Arc<SessionContext>,
    pub limits: Arc<SessionLimits>,
}

pub struct ListenerState {
    socket: Option<Arc<TcpListener>>,
    draining: watch::Receiver<bool>,
    admission: Admission,
}

/// What it takes to admit a connection and start its session; cloned into
/// the task that first reads a balancer's PROXY header.
#[derive(Clone)]
struct Admission {
    kind: ListenerKind,
    ctx: Arc<SessionContext>,
    limits: Arc<SessionLimits>,
    config: SessionConfig,
}

pub struct Accept;

impl Actor for Listener {
    type Msg = Accept;
    type State = ListenerState;
    type Arguments = ListenerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Accept>,
        args: ListenerArgs,
    ) -> Result<ListenerState, ActorProcessingErr> {
        let socket = args.socket.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let config = SessionConfig {
            tls: args.kind.tls_policy(args.ctx.tls_available),
            inbound: (args.kind == ListenerKind::Inbound).then_some(crate::inbound::LIMITS),
            ..args.ctx.smtp.clone()
        };
        myself.cast(Accept)?;
        Ok(ListenerState {
            socket,
            draining: args.ctx.draining.clone(),
            admission: Admission {
                kind: args.kind,
                ctx: args.ctx,
                limits: args.limits,
                config,
            },
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Accept>,
        _: Accept,
        state: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(socket) = state.socket.clone() else {
            return Ok(());
        };
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = state.draining.wait_for(|d| *d) => {
                // Closes the socket (the spec's copy is dropped by the drain).
                state.socket = None;
                return Ok(());
            }
        };
        match accepted {
            Ok((tcp, peer)) => state.admission.accepted(&myself, tcp, peer).await,
            Err(e) => {
                // EMFILE and friends: keep serving the sessions we have.
                tracing::warn!(listener = state.admission.kind.name(), error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        myself.cast(Accept)?;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<Accept>,
        event: SupervisionEvent,
        state: &mut ListenerState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, e) = event {
            tracing::error!(listener = state.admission.kind.name(), error = %e, "session actor failed");
        }
        Ok(())
    }
}

impl Admission {
    /// A balancer's connection is read for its PROXY header on a task of
    /// its own, so a slow balancer never holds up the accept loop. From
    /// accept it holds a place in the node's cap and in its balancer
    /// address's, and the header must come within
    /// `listen.proxy_header_timeout_secs`: connections that never send one
    /// cannot pile up outside every limit.
    async fn accepted(&self, myself: &ActorRef<Accept>, tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        if !(self.kind.reads_proxy_header() && self.ctx.proxies.trusts(peer.ip())) {
            return self.admit(myself.get_cell(), tcp, peer, None).await;
        }
        let Some(pending) = self.limits.admit(peer.ip()) else {
            tokio::spawn(refuse(tcp, peer, false, Refused::Busy));
            return;
        };
        let (admission, cell) = (self.clone(), myself.get_cell());
        tokio::spawn(async move { admission.behind_proxy(cell, tcp, peer, pending).await });
    }

    async fn behind_proxy(self, listener: ActorCell, mut tcp: TcpStream, balancer: SocketAddr, pending: SessionSlot) {
        match proxy::client_address(&mut tcp, balancer, self.ctx.proxy_header_timeout).await {
            Ok(client) => self.admit(listener, tcp, client, Some(pending)).await,
            Err(e) => {
                tracing::warn!(listener = self.kind.name(), %balancer, error = %e, "connection closed: PROXY header");
                let _ = tcp.shutdown().await;
            }
        }
    }

    /// `peer` is the client: the one a balancer's PROXY header named when
    /// the connection came through one, holding its `pending` place.
    async fn admit(&self, listener: ActorCell, tcp: TcpStream, peer: SocketAddr, pending: Option<SessionSlot>) {
        let behind_proxy = pending.is_some();
        let implicit = self.kind == ListenerKind::Submissions;
        let silent = implicit && self.ctx.tls_available;
        if self.ctx.auth.address_refused(peer.ip()) {
            tokio::spawn(refuse(tcp, peer, silent, Refused::FailedSignIns));
            return;
        }
        let slot = match pending {
            Some(pending) => self.limits.readmit(pending, peer.ip()),
            None => self.limits.admit(peer.ip()),
        };
        let Some(slot) = slot else {
            tokio::spawn(refuse(tcp, peer, silent, Refused::Busy));
            return;
        };
        let args = session::SessionArgs {
            ctx: self.ctx.clone(),
            tcp,
            peer,
            config: self.config.clone(),
            implicit_tls: implicit,
            behind_proxy,
            slot,
        };
        if let Err(e) = Actor::spawn_linked(None, session::SessionActor, args, listener).await {
            tracing::error!(%peer, error = %e, "cannot start a session");
        }
    }
}

/// Why a connection is refused before its session starts.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// Beyond the session caps.
    Busy,
    /// The address is locked out for failed sign-ins across usernames.
    FailedSignIns,
}

/// `421 4.7.0` and close. On an implicit-TLS port the reply would be noise
/// to a TLS client, so the connection is just closed.
async fn refuse(mut tcp: TcpStream, peer: SocketAddr, implicit_tls: bool, why: Refused) {
    let reply: &[u8] = match why {
        Refused::Busy => b"421 4.7.0 Too many connections; try again later\r\n",
        Refused::FailedSignIns => b"421 4.7.0 Too many failed sign-ins from your address; try again later\r\n",
    };
    tracing::warn!(%peer, reason = ?why, "connection refused");
    if !implicit_tls {
        let _ = tcp.write_all(reply).await;
    }
    let _ = tcp.shutdown().await;
}
