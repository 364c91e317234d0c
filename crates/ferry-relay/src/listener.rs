//! Listeners: accept connections, enforce the per-node and per-source-address
//! session caps, and start one session actor per connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ferry_smtp::{SessionConfig, TlsPolicy};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::session::{self, SessionContext};

/// The three kinds of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Port 25 style: STARTTLS offered.
    Smtp,
    /// Port 587 style: STARTTLS required before AUTH and MAIL.
    Submission,
    /// Port 465 style: implicit TLS.
    Submissions,
}

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
        }
    }

    fn tls_policy(self, tls_available: bool) -> TlsPolicy {
        match (self, tls_available) {
            (_, false) => TlsPolicy::Unavailable,
            (ListenerKind::Smtp, true) => TlsPolicy::Offered,
            (ListenerKind::Submission, true) => TlsPolicy::Required,
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
struct SessionSlot {
    _node: OwnedSemaphorePermit,
    ip: IpAddr,
    by_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    open: prometheus::IntGauge,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.open.dec();
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
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
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= self.per_ip {
            return None;
        }
        *count += 1;
        self.open.inc();
        Some(SessionSlot {
            _node: node,
            ip,
            by_ip: self.by_ip.clone(),
            open: self.open.clone(),
        })
    }
}

/// Accepts until `draining` turns true. Sessions run on their own; each
/// holds a slot of `limits` until it ends, which is how draining waits.
pub async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    ctx: Arc<SessionContext>,
    limits: Arc<SessionLimits>,
) {
    let mut draining = ctx.draining.clone();
    let config = SessionConfig {
        tls: kind.tls_policy(ctx.tls.is_some()),
        ..ctx.smtp.clone()
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = draining.wait_for(|d| *d) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: keep serving the sessions we have.
                tracing::warn!(listener = kind.name(), error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        let config = config.clone();
        let slot = limits.admit(peer.ip());
        let implicit = kind == ListenerKind::Submissions;
        tokio::spawn(async move {
            match slot {
                Some(_slot) => session::run(ctx, tcp, peer, config, implicit).await,
                None => refuse_busy(tcp, peer, implicit && ctx.tls.is_some()).await,
            }
        });
    }
}

/// `421 4.7.0` beyond the caps. On an implicit-TLS port the reply would be
/// noise to a TLS client, so the connection is just closed.
async fn refuse_busy(mut tcp: TcpStream, peer: SocketAddr, implicit_tls: bool) {
    tracing::warn!(%peer, "session refused: too many sessions");
    if !implicit_tls {
        let _ = tcp
            .write_all(b"421 4.7.0 Too many connections; try again later\r\n")
            .await;
    }
    let _ = tcp.shutdown().await;
}
