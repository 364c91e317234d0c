//! Ferry's runtime: listeners, TLS, the per-connection session actors that
//! drive `ferry-smtp`, authentication, message intake, and the delivery
//! worker with its routes.
//!
//! Layout:
//! - [`Relay`]: binds the listeners, runs sessions and delivery, drains on shutdown.
//! - `listener`: accept loops and session caps; `session`: the session actor;
//!   `stream`: plaintext or TLS.
//! - [`auth`]: argon2id verification, lockout, the login cache.
//! - [`intake`]: header checks, added headers, the durable enqueue before 250.
//! - [`tls`]: rustls configuration and the development certificate.
//! - `delivery` and [`capture`]: the queue worker and the capture route.

pub mod auth;
pub mod capture;
mod delivery;
pub mod intake;
pub mod listener;
mod session;
mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::Clock;
use ferry_core::config::Config;
use ferry_smtp::{SessionConfig, TlsPolicy};
use ferry_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::{AuthSettings, Authenticator};
use crate::capture::CaptureRoute;
use crate::delivery::DeliveryWorker;
use crate::intake::MessageIntake;
use crate::listener::{ListenerKind, SessionLimits, accept_loop};
use crate::session::SessionContext;

/// A relay that could not start; names the configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listen.{kind}: cannot listen on {addr}: {source}")]
    Bind {
        kind: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("delivery.capture_dir: {0}")]
    Capture(std::io::Error),
}

/// A running relay: its bound addresses, and the switch that drains it.
pub struct Relay {
    pub addresses: Vec<(ListenerKind, SocketAddr)>,
    drain: watch::Sender<bool>,
    limits: Arc<SessionLimits>,
    max_sessions: usize,
    grace: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Binds every configured listener (all or nothing) and starts serving.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Relay, StartError> {
        let mut bound = Vec::new();
        for (kind, addr) in [
            (ListenerKind::Smtp, config.listen.smtp),
            (ListenerKind::Submission, config.listen.submission),
            (ListenerKind::Submissions, config.listen.submissions),
        ] {
            let Some(addr) = addr else { continue };
            let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
                kind: kind.name(),
                addr,
                source,
            })?;
            bound.push((kind, listener));
        }
        let route = CaptureRoute::new(config.capture_dir()).map_err(StartError::Capture)?;
        let (drain, draining) = watch::channel(false);
        let wakeup = Arc::new(Notify::new());
        let ctx = Arc::new(session_context(
            config,
            store.clone(),
            clock.clone(),
            tls,
            wakeup.clone(),
            draining.clone(),
        ));
        let limits = Arc::new(SessionLimits::new(
            config.server.max_sessions,
            config.server.max_sessions_per_ip,
        ));
        let mut relay = Relay {
            addresses: Vec::new(),
            drain,
            limits: limits.clone(),
            max_sessions: config.server.max_sessions,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
            tasks: Vec::new(),
        };
        for (kind, listener) in bound {
            let local = listener.local_addr().map_err(|source| StartError::Bind {
                kind: kind.name(),
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            tracing::info!(listener = kind.name(), address = %local, "listening");
            relay.addresses.push((kind, local));
            relay
                .tasks
                .push(tokio::spawn(accept_loop(listener, kind, ctx.clone(), limits.clone())));
        }
        let worker = DeliveryWorker {
            queue: store,
            clock,
            route,
            lease: Duration::from_secs(config.delivery.lease_secs),
            concurrency: config.delivery.concurrency,
            wakeup,
        };
        relay.tasks.push(tokio::spawn(worker.run(draining)));
        Ok(relay)
    }

    pub fn address(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.addresses.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// Stops accepting, tells idle sessions 421, lets transactions in
    /// progress finish (up to the grace period), then stops delivery.
    pub async fn drain(self) {
        let _ = self.drain.send(true);
        if !self.limits.drained(self.max_sessions, self.grace).await {
            tracing::warn!("grace period over; closing the remaining sessions");
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

fn session_context(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tls: Option<Arc<rustls::ServerConfig>>,
    wakeup: Arc<Notify>,
    draining: watch::Receiver<bool>,
) -> SessionContext {
    let a = &config.auth;
    let settings = AuthSettings {
        max_concurrent_verifications: a.max_concurrent_verifications,
        lockout_failures: a.lockout_failures,
        lockout_ms: a.lockout_secs * 1000,
        cache_ms: a.cache_secs * 1000,
    };
    SessionContext {
        smtp: SessionConfig {
            hostname: config.server.hostname.clone(),
            max_message_bytes: config.smtp.max_message_bytes,
            tls: TlsPolicy::Unavailable,
            max_errors: config.smtp.max_errors,
        },
        tls: tls.map(TlsAcceptor::from),
        auth: Authenticator::new(store.clone(), clock.clone(), settings),
        intake: MessageIntake {
            queue: store,
            clock,
            hostname: config.server.hostname.clone(),
            delivery_wakeup: wakeup,
        },
        command_timeout: Duration::from_secs(config.smtp.command_timeout_secs),
        data_timeout: Duration::from_secs(config.smtp.data_timeout_secs),
        draining,
    }
}
