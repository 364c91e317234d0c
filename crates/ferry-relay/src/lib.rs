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
//! - `delivery` and [`capture`]: the queue worker and the capture route;
//!   [`outbound`]: MX resolution, the SMTP client, per-destination limits.
//! - [`alerting`]: the alert outbox dispatcher (log, metric, signed webhook).
//! - [`admin`] and [`metrics`]: `/metrics` and `/health`.

pub mod admin;
pub mod alerting;
pub mod auth;
pub mod capture;
mod delivery;
pub mod dkim;
pub mod intake;
pub mod listener;
pub mod metrics;
pub mod outbound;
pub mod scan;
mod session;
pub mod spf;
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
use crate::outbound::destinations::{DestinationLimits, Destinations};
use crate::outbound::resolve::Resolver;
use crate::outbound::{Outbound, OutboundSettings};
use crate::session::SessionContext;
use ferry_core::retry::RetrySchedule;

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
    #[error("{0}")]
    Resolver(String),
    #[error("admin.listen: cannot listen on {addr}: {source}")]
    Admin { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Contract(String),
    #[error("dkim: {0}")]
    Dkim(String),
}

/// Which halves of the relay this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Listeners and session actors.
    pub ingress: bool,
    /// Delivery workers draining the shared queue.
    pub delivery: bool,
}

/// A running relay: its bound addresses, and the switch that drains it.
pub struct Relay {
    pub addresses: Vec<(ListenerKind, SocketAddr)>,
    drain: watch::Sender<bool>,
    limits: Arc<SessionLimits>,
    max_sessions: usize,
    grace: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub admin: Option<SocketAddr>,
}

impl Relay {
    /// Binds every configured listener (all or nothing) and starts serving.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tls: Option<Arc<rustls::ServerConfig>>,
        roles: Roles,
    ) -> Result<Relay, StartError> {
        let bound = if roles.ingress { bind(config).await? } else { Vec::new() };
        let admin_listener = match config.admin.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Admin { addr, source })?,
            ),
            None => None,
        };
        let node_metrics = Arc::new(metrics::Metrics::new());
        let worker = if roles.delivery {
            Some(delivery_worker(
                config,
                store.clone(),
                clock.clone(),
                node_metrics.clone(),
            )?)
        } else {
            None
        };
        let (drain, draining) = watch::channel(false);
        let wakeup = worker
            .as_ref()
            .map_or_else(|| Arc::new(Notify::new()), |w| w.wakeup.clone());
        if worker.is_some() {
            // Mail enqueued by other nodes wakes this one's delivery too.
            store.watch_enqueues(wakeup.clone());
        }
        let parts = Parts {
            store: store.clone(),
            clock: clock.clone(),
            tls,
            wakeup,
            draining: draining.clone(),
            metrics: node_metrics.clone(),
            dkim: Arc::new(dkim_signers(config, store.as_ref()).await?),
        };
        let ctx = Arc::new(session_context(config, parts)?);
        let limits = Arc::new(SessionLimits::new(
            config.server.max_sessions,
            config.server.max_sessions_per_ip,
            node_metrics.sessions.clone(),
        ));
        let mut relay = Relay {
            addresses: Vec::new(),
            drain,
            limits: limits.clone(),
            max_sessions: config.server.max_sessions,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
            tasks: Vec::new(),
            admin: None,
        };
        if let Some(listener) = admin_listener {
            if let Ok(local) = listener.local_addr() {
                tracing::info!(listener = "admin", address = %local, "listening");
                relay.admin = Some(local);
            }
            relay.tasks.push(tokio::spawn(admin::serve(
                listener,
                node_metrics.clone(),
                draining.clone(),
            )));
        }
        if roles.delivery {
            let dispatcher = alerting::AlertDispatcher {
                store: store.clone(),
                clock: clock.clone(),
                metrics: node_metrics.clone(),
                webhook: config
                    .alerts
                    .webhook_url
                    .clone()
                    .zip(config.alerts.webhook_secret.clone())
                    .map(|(url, secret)| alerting::Webhook { url, secret }),
                retry_max: Duration::from_secs(config.alerts.retry_max_secs),
                http: reqwest::Client::new(),
                hostname: config.server.hostname.clone(),
                organisation_contact: config.alerts.organisation_contact.clone(),
            };
            relay.tasks.push(tokio::spawn(dispatcher.run(draining.clone())));
        }
        for (kind, listener, local) in bound {
            tracing::info!(listener = kind.name(), address = %local, "listening");
            relay.addresses.push((kind, local));
            relay
                .tasks
                .push(tokio::spawn(accept_loop(listener, kind, ctx.clone(), limits.clone())));
        }
        if let Some(worker) = worker {
            relay.tasks.push(tokio::spawn(worker.run(draining)));
        }
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

async fn dkim_signers(config: &Config, store: &dyn Store) -> Result<dkim::DkimSigners, StartError> {
    let keys = store.dkim_keys().await.map_err(|e| StartError::Dkim(e.to_string()))?;
    let signers = dkim::DkimSigners::load(&keys, config.dkim.relay_domain.clone()).map_err(StartError::Dkim)?;
    let active: Vec<String> = keys.iter().filter(|k| k.active).map(|k| k.dns_name()).collect();
    tracing::info!(keys = %active.join(", "), "DKIM signing keys");
    Ok(signers)
}

async fn bind(config: &Config) -> Result<Vec<(ListenerKind, TcpListener, SocketAddr)>, StartError> {
    let mut bound = Vec::new();
    for (kind, addr) in [
        (ListenerKind::Smtp, config.listen.smtp),
        (ListenerKind::Submission, config.listen.submission),
        (ListenerKind::Submissions, config.listen.submissions),
    ] {
        let Some(addr) = addr else { continue };
        let fail = |source| StartError::Bind {
            kind: kind.name(),
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(fail)?;
        let local = listener.local_addr().map_err(fail)?;
        bound.push((kind, listener, local));
    }
    Ok(bound)
}

fn delivery_worker(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    node_metrics: Arc<metrics::Metrics>,
) -> Result<DeliveryWorker, StartError> {
    let d = &config.delivery;
    let limits = DestinationLimits {
        max_connections: d.max_connections_per_destination,
        min_interval: (d.max_messages_per_second_per_destination > 0)
            .then(|| Duration::from_secs(1) / d.max_messages_per_second_per_destination),
        failure_limit: d.destination_failure_limit,
        backoff: Duration::from_secs(d.destination_backoff_secs),
        idle: Duration::from_secs(d.idle_connection_secs),
    };
    let outbound = Outbound {
        resolver: Resolver::new(&d.resolver).map_err(StartError::Resolver)?,
        tls: tls::client_tls(&d.extra_ca_files)?,
        destinations: Destinations::new(limits),
        settings: OutboundSettings {
            port: d.port,
            helo: d.helo_name.clone().unwrap_or_else(|| config.server.hostname.clone()),
            tls_required_domains: d.tls_required_domains.clone(),
            connect_timeout: Duration::from_secs(d.connect_timeout_secs),
            command_timeout: Duration::from_secs(d.command_timeout_secs),
            max_messages_per_connection: d.max_messages_per_connection,
        },
    };
    Ok(DeliveryWorker {
        store,
        clock,
        capture: CaptureRoute::new(config.capture_dir()).map_err(StartError::Capture)?,
        outbound,
        default_route: d.default_route,
        retry: RetrySchedule {
            base_ms: d.retry_base_secs * 1000,
            max_interval_ms: d.retry_max_interval_secs * 1000,
            max_age_ms: d.max_age_secs * 1000,
        },
        hostname: config.server.hostname.clone(),
        lease: Duration::from_secs(d.lease_secs),
        concurrency: d.concurrency,
        wakeup: Arc::new(Notify::new()),
        metrics: node_metrics,
    })
}

/// What the session context is built from.
struct Parts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tls: Option<Arc<rustls::ServerConfig>>,
    wakeup: Arc<Notify>,
    draining: watch::Receiver<bool>,
    metrics: Arc<metrics::Metrics>,
    dkim: Arc<dkim::DkimSigners>,
}

fn session_context(config: &Config, p: Parts) -> Result<SessionContext, StartError> {
    let a = &config.auth;
    let settings = AuthSettings {
        max_concurrent_verifications: a.max_concurrent_verifications,
        lockout_failures: a.lockout_failures,
        lockout_ms: a.lockout_secs * 1000,
        cache_ms: a.cache_secs * 1000,
    };
    let terms = config
        .contract
        .terms()
        .map_err(|e| StartError::Contract(e.to_string()))?;
    Ok(SessionContext {
        smtp: SessionConfig {
            hostname: config.server.hostname.clone(),
            max_message_bytes: config.smtp.max_message_bytes,
            tls: TlsPolicy::Unavailable,
            max_errors: config.smtp.max_errors,
        },
        tls: p.tls.map(TlsAcceptor::from),
        auth: Authenticator::new(p.store.clone(), p.clock.clone(), settings),
        intake: MessageIntake {
            store: p.store,
            clock: p.clock,
            hostname: config.server.hostname.clone(),
            terms,
            alerts: config.alerts.clone(),
            metrics: p.metrics,
            scanners: scan::Scanners {
                settings: config.hygiene.clone(),
                http: reqwest::Client::new(),
            },
            dkim: p.dkim,
            bulk_recipients: config.hygiene.bulk_recipients,
            delivery_wakeup: p.wakeup,
        },
        command_timeout: Duration::from_secs(config.smtp.command_timeout_secs),
        data_timeout: Duration::from_secs(config.smtp.data_timeout_secs),
        draining: p.draining,
    })
}
