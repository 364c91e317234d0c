//! Ferry's runtime: listeners, TLS, the per-connection session actors that
//! drive `ferry-smtp`, authentication, message intake, delivery and its
//! destination actors, all in one supervised actor tree (ractor).
//!
//! The tree — who owns what, who restarts whom:
//!
//! ```text
//! node supervisor (supervisor)        restarts its children with backoff within a budget;
//! │                                   past it the node is failed: unready, drains, exits 1
//! ├─ keyring (keyring)                TLS certificate, DKIM and return-path keys, published as snapshots
//! ├─ store writer (writer)            the embedded store's one committing thread
//! ├─ delivery supervisor (delivery)   leases (renewed), hands back, routes groups
//! │  └─ destination actor, one per next hop: its connections, limits, backoff;
//! │     started on first use, stopped when idle, never restarted (the next
//! │     message for it starts a new one; its groups go back to the queue)
//! ├─ alert dispatcher (alerting)      the outbox: log, metric, webhook, e-mail
//! ├─ event webhooks (webhooks)        each receiver's events, in order, from its cursor
//! ├─ retention keeper (retention)     removes samples and events past their retention
//! ├─ incident watch (incidents)       judges each application's hour against its
//! │                                   baseline, opens incidents; one node at a time
//! │  (these four: rounds of a `periodic::Periodic` actor)
//! └─ listener, one per port (listener) accepts, admits within the caps;
//!    the inbound listener's sessions take reports (inbound)
//!    └─ session actor, one per connection (session): never restarted; a
//!       panic answers 421 4.3.0 and touches nothing else
//! ```
//!
//! Each permanent child's restart policy is written where the tree is
//! assembled ([`Relay::start`]); the admin endpoint reports the tree on
//! `/readyz`.
//!
//! Other modules: [`auth`] (argon2id, lockout, login cache), [`intake`]
//! (header checks, added headers, the durable enqueue before 250), [`tls`],
//! [`capture`] and [`outbound`] (MX resolution, the SMTP client), `stream`,
//! [`admin`] and [`metrics`].

pub mod admin;
pub mod alerting;
pub mod auth;
pub mod capture;
mod delivery;
pub mod directory;
pub mod dkim;
pub mod greeting;
pub mod inbound;
mod incidents;
pub mod intake;
pub mod keyring;
pub mod listener;
pub mod metrics;
pub mod outbound;
mod periodic;
pub mod proxy;
pub mod retention;
pub mod scan;
mod session;
pub mod side;
pub mod spf;
mod stream;
pub mod supervisor;
pub mod tls;
pub mod trace;
pub mod webhooks;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::Clock;
use ferry_core::config::Config;
use ferry_smtp::{SessionConfig, TlsPolicy};
use ferry_store::Store;
use ferry_store::embedded::StoreWriter;
use ractor::{Actor, ActorCell, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::{AuthSettings, Authenticator};
use crate::capture::CaptureRoute;
use crate::delivery::{DeliveryArgs, DeliveryMsg, DeliverySupervisor, DeliveryWork, DestinationLimits};
use crate::intake::MessageIntake;
use crate::keyring::{Keyring, KeyringArgs, Loaded};
use crate::listener::{Listener, ListenerArgs, ListenerKind, ListenerSocket, SessionLimits};
use crate::outbound::resolve::Resolver;
use crate::outbound::{Outbound, OutboundSettings};
use crate::session::SessionContext;
use crate::supervisor::{
    ChildSpec, NodeHealth, NodeSupervisor, RestartPolicy, StartChild, SupervisorArgs, SupervisorMsg,
};
use ferry_core::retry::RetrySchedule;

/// Five restarts within a minute, the first after 100 ms, doubling up to
/// 5 s: for the parts whose failure stops the node's work (listeners,
/// delivery, the store writer). One that fails more often is broken, not
/// unlucky: the node stops being ready and exits so that it is replaced.
pub const ESSENTIAL: RestartPolicy = RestartPolicy {
    max_restarts: 5,
    window: Duration::from_secs(60),
    backoff_min: Duration::from_millis(100),
    backoff_max: Duration::from_secs(5),
};

/// Ten restarts within ten minutes, from 1 s up to 30 s: for the parts
/// whose work only waits while they are down (the alert outbox keeps its
/// alerts, the keyring keeps the keys in use); a slower, more patient
/// restart that still gives up on a part that cannot run.
pub const PATIENT: RestartPolicy = RestartPolicy {
    max_restarts: 10,
    window: Duration::from_secs(600),
    backoff_min: Duration::from_secs(1),
    backoff_max: Duration::from_secs(30),
};

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
    #[error("admin.tls: HTTPS needs the relay's certificate (tls.certificate and tls.key)")]
    AdminTls,
    #[error("{0}")]
    Contract(String),
    #[error("dkim: {0}")]
    Dkim(String),
    #[error("cannot start the node's actors: {0}")]
    Tree(String),
    #[error("auth: cannot make the decoy password hash: {0}")]
    Auth(String),
    #[error("{0}")]
    Directory(String),
}

/// Which halves of the relay this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Listeners and session actors.
    pub ingress: bool,
    /// Delivery workers draining the shared queue.
    pub delivery: bool,
    /// The inbound listener for reports (`listen.inbound`).
    pub inbound: bool,
}

/// What the relay is started with besides its configuration.
pub struct RelayParts {
    pub store: Arc<dyn Store>,
    /// The embedded store's writer, to run under the node supervisor.
    pub store_writer: Option<StoreWriter>,
    pub clock: Arc<dyn Clock>,
    /// The TLS certificate and key files; None for a node without listeners.
    pub certificate: Option<(PathBuf, PathBuf)>,
    pub roles: Roles,
    /// The CLI's commands, run for a CLI that finds this relay running.
    pub commands: ferry_admin::commands::Commands,
}

/// A running relay: its bound addresses, its health, and the switch that drains it.
pub struct Relay {
    pub addresses: Vec<(ListenerKind, SocketAddr)>,
    pub admin: Option<SocketAddr>,
    drain: watch::Sender<bool>,
    health: Arc<watch::Sender<NodeHealth>>,
    supervisor: ActorRef<SupervisorMsg>,
    delivery: Arc<Mutex<Option<ActorRef<DeliveryMsg>>>>,
    sockets: Vec<ListenerSocket>,
    limits: Arc<SessionLimits>,
    max_sessions: usize,
    grace: Duration,
    admin_task: Option<tokio::task::JoinHandle<()>>,
    /// Stops the admin endpoint, which answers (unready) until the drain ends.
    admin_stop: watch::Sender<bool>,
}

impl Relay {
    /// Binds every configured listener (all or nothing), loads the keys, and
    /// starts the node's actor tree.
    pub async fn start(config: &Config, parts: RelayParts) -> Result<Relay, StartError> {
        let roles = parts.roles;
        let bound = bind(config, roles).await?;
        let admin_listener = match config.admin.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Admin { addr, source })?,
            ),
            None => None,
        };
        let node_metrics = Arc::new(metrics::Metrics::new());
        let (drain, draining) = watch::channel(false);
        let wakeup = Arc::new(Notify::new());
        let keyring = keyring_args(config, &parts).await?;
        let mut children = Vec::new();
        if let Some(writer) = parts.store_writer {
            // Every acknowledgement waits on it.
            children.push(child("store writer", ESSENTIAL, writer::Writer, Arc::new(writer)));
        }
        children.push(child("keyring", PATIENT, Keyring, keyring.clone()));
        let delivery = Arc::new(Mutex::new(None));
        if roles.delivery {
            // Mail enqueued by other nodes wakes this one's delivery too.
            parts.store.watch_enqueues(wakeup.clone());
            let args = delivery_args(
                config,
                parts.store.clone(),
                parts.clock.clone(),
                node_metrics.clone(),
                wakeup.clone(),
            )?;
            children.push(delivery_child(args, delivery.clone()));
            let dispatcher = alert_dispatcher(config, parts.store.clone(), parts.clock.clone(), node_metrics.clone());
            children.push(child(
                "alert dispatcher",
                PATIENT,
                periodic::Periodic::<alerting::AlertDispatcher>::new(),
                Arc::new(dispatcher),
            ));
            let senders = webhooks::EventWebhooks {
                store: parts.store.clone(),
                clock: parts.clock.clone(),
                http: reqwest::Client::new(),
                holder: ferry_core::QueueId::generate().to_string(),
                posts: node_metrics.webhook_posts.clone(),
                events: node_metrics.webhook_events.clone(),
            };
            children.push(child(
                "event webhooks",
                PATIENT,
                periodic::Periodic::<webhooks::EventWebhooks>::new(),
                Arc::new(senders),
            ));
            let retention = retention::Retention {
                store: parts.store.clone(),
                clock: parts.clock.clone(),
                samples_ms: u64::from(config.samples.retention_days) * 86_400_000,
            };
            children.push(child(
                "retention keeper",
                PATIENT,
                periodic::Periodic::<retention::Retention>::new(),
                Arc::new(retention),
            ));
            if config.incidents.enabled {
                let watch = incidents::Watch {
                    store: parts.store.clone(),
                    clock: parts.clock.clone(),
                    metrics: node_metrics.clone(),
                    rules: config.incidents.clone(),
                    holder: ferry_core::QueueId::generate().to_string(),
                    tally: Default::default(),
                };
                children.push(child(
                    "incident watch",
                    PATIENT,
                    periodic::Periodic::<incidents::Watch>::new(),
                    Arc::new(watch),
                ));
            }
        }
        let session_parts = SessionParts {
            store: parts.store.clone(),
            clock: parts.clock.clone(),
            tls: keyring.tls.subscribe(),
            tls_available: keyring.certificate.is_some(),
            wakeup,
            draining: draining.clone(),
            metrics: node_metrics.clone(),
            dkim: keyring.dkim.subscribe(),
            bounce_keys: keyring.bounce_keys.subscribe(),
            signs_in: roles.ingress,
        };
        let ctx = Arc::new(session_context(config, session_parts)?);
        let limits = Arc::new(SessionLimits::new(
            config.server.max_sessions,
            config.server.max_sessions_per_ip,
            node_metrics.sessions.clone(),
        ));
        let mut addresses = Vec::new();
        let mut sockets = Vec::new();
        for (kind, listener, local) in bound {
            tracing::info!(listener = kind.name(), address = %local, "listening");
            addresses.push((kind, local));
            let socket: ListenerSocket = Arc::new(Mutex::new(Some(Arc::new(listener))));
            sockets.push(socket.clone());
            let args = ListenerArgs {
                socket,
                kind,
                ctx: ctx.clone(),
                limits: limits.clone(),
            };
            // A restart serves the same socket; the sessions it had die with it.
            children.push(child(&format!("{} listener", kind.name()), ESSENTIAL, Listener, args));
        }
        let health = Arc::new(watch::channel(NodeHealth::default()).0);
        let tree = SupervisorArgs {
            children,
            health: health.clone(),
        };
        let (supervisor, _) = Actor::spawn(None, NodeSupervisor, tree)
            .await
            .map_err(|e| StartError::Tree(e.to_string()))?;
        let mut relay = Relay {
            addresses,
            admin: None,
            drain,
            health: health.clone(),
            supervisor,
            delivery,
            sockets,
            limits,
            max_sessions: config.server.max_sessions,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
            admin_task: None,
            admin_stop: watch::channel(false).0,
        };
        if let Some(listener) = admin_listener {
            if let Ok(local) = listener.local_addr() {
                tracing::info!(listener = "admin", address = %local, "listening");
                relay.admin = Some(local);
            }
            let api = ferry_admin::AdminState {
                store: parts.store.clone(),
                clock: parts.clock.clone(),
                terms: config
                    .contract
                    .terms()
                    .map_err(|e| StartError::Contract(e.to_string()))?,
                forecast_min_days: config.alerts.forecast_min_days,
                alerts: config.alerts.clone(),
                hostname: config.server.hostname.clone(),
                commands: parts.commands.clone(),
            };
            let tls = match (config.admin.tls, keyring.certificate.is_some()) {
                (false, _) => None,
                (true, true) => Some(keyring.tls.subscribe()),
                (true, false) => return Err(StartError::AdminTls),
            };
            relay.admin_task = Some(tokio::spawn(admin::serve(
                listener,
                tls,
                api,
                node_metrics,
                health.subscribe(),
                relay.admin_stop.subscribe(),
            )));
        }
        Ok(relay)
    }

    pub fn address(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.addresses.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// The delivery supervisor running now (its children are the
    /// destination actors): for tools that inspect the tree, and for
    /// fault injection, since killing it must neither lose nor repeat a send.
    pub fn delivery_supervisor(&self) -> Option<ActorCell> {
        let delivery = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        delivery.as_ref().map(|actor| actor.get_cell())
    }

    /// Resolves when a part of the node spent its restart budget: the node
    /// is failed and should drain and exit non-zero.
    pub async fn failed(&self) -> String {
        let mut health = self.health.subscribe();
        match health.wait_for(|h| h.fatal.is_some()).await {
            Ok(h) => h.fatal.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Turns unready, stops accepting (closing the listening sockets), tells
    /// idle sessions 421, lets transactions in progress finish (up to the
    /// grace period), hands delivery's leases back, then stops the tree.
    pub async fn drain(self) {
        self.health.send_modify(|h| h.draining = true);
        for socket in &self.sockets {
            socket.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        let _ = self.drain.send(true);
        if !self.limits.drained(self.max_sessions, self.grace).await {
            tracing::warn!("grace period over; closing the remaining sessions");
        }
        let delivery = self.delivery.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(delivery) = delivery {
            let drained = delivery.call(DeliveryMsg::Drain, Some(Duration::from_secs(10))).await;
            if !matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
                tracing::warn!("delivery did not finish in time; its leases run out by themselves");
            }
        }
        let _ = self
            .supervisor
            .stop_and_wait(Some("drained".into()), Some(Duration::from_secs(30)))
            .await;
        let _ = self.admin_stop.send(true);
        if let Some(task) = self.admin_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// A permanent child that starts `actor` with a copy of `args`.
fn child<A>(name: &str, policy: RestartPolicy, actor: A, args: A::Arguments) -> ChildSpec
where
    A: Actor + Clone,
    A::Arguments: Clone + Sync,
{
    let start: StartChild = Arc::new(move |supervisor: ActorCell| {
        let (actor, args) = (actor.clone(), args.clone());
        Box::pin(async move { Ok(Actor::spawn_linked(None, actor, args, supervisor).await?.0.get_cell()) })
    });
    ChildSpec {
        name: name.to_string(),
        policy,
        start,
    }
}

/// The delivery supervisor; each start leaves its reference where the drain finds it.
fn delivery_child(args: DeliveryArgs, slot: Arc<Mutex<Option<ActorRef<DeliveryMsg>>>>) -> ChildSpec {
    let start: StartChild = Arc::new(move |supervisor: ActorCell| {
        let (args, slot) = (args.clone(), slot.clone());
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(None, DeliverySupervisor, args, supervisor).await?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(actor.clone());
            Ok(actor.get_cell())
        })
    });
    ChildSpec {
        name: "delivery".into(),
        // Its leases run out by themselves while it is down.
        policy: ESSENTIAL,
        start,
    }
}

/// The keyring's starting point: the certificate and DKIM keys loaded now
/// (a start with unusable ones fails, naming the key).
async fn keyring_args(config: &Config, parts: &RelayParts) -> Result<KeyringArgs, StartError> {
    let mut loaded = Loaded::default();
    let tls = match &parts.certificate {
        Some((cert, key)) => {
            let files = tls::read_pem(cert, key)?;
            let server = tls::server_config_from_pem(cert, key, &files)?;
            loaded.files = Some(files);
            Some(TlsAcceptor::from(server))
        }
        None => None,
    };
    let (signers, version) = keyring::load_dkim(parts.store.as_ref(), config.dkim.relay_domain.clone())
        .await
        .map_err(StartError::Dkim)?;
    loaded.directory_version = Some(version);
    // Made by the keyring once the store's writer runs, if there is none.
    let bounce_keys = parts
        .store
        .bounce_keys()
        .await
        .map_err(|e| StartError::Dkim(e.to_string()))?;
    Ok(KeyringArgs {
        certificate: parts.certificate.clone(),
        store: parts.store.clone(),
        clock: parts.clock.clone(),
        relay_domain: config.dkim.relay_domain.clone(),
        every: Duration::from_secs(config.server.reload_secs),
        tls: Arc::new(watch::channel(tls).0),
        dkim: Arc::new(watch::channel(Arc::new(signers)).0),
        bounce_keys: Arc::new(watch::channel(Arc::new(bounce_keys)).0),
        loaded,
    })
}

fn alert_dispatcher(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<metrics::Metrics>,
) -> alerting::AlertDispatcher {
    alerting::AlertDispatcher {
        store,
        clock,
        metrics,
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
    }
}

async fn bind(config: &Config, roles: Roles) -> Result<Vec<(ListenerKind, TcpListener, SocketAddr)>, StartError> {
    let mut bound = Vec::new();
    let l = &config.listen;
    for (kind, addr, role) in [
        (ListenerKind::Smtp, l.smtp, roles.ingress),
        (ListenerKind::Submission, l.submission, roles.ingress),
        (ListenerKind::Submissions, l.submissions, roles.ingress),
        (ListenerKind::DirectSubmission, l.direct_submission, roles.ingress),
        (ListenerKind::Inbound, l.inbound, roles.inbound),
    ] {
        let Some(addr) = addr.filter(|_| role) else { continue };
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

fn delivery_args(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    node_metrics: Arc<metrics::Metrics>,
    wakeup: Arc<Notify>,
) -> Result<DeliveryArgs, StartError> {
    let d = &config.delivery;
    let limits = DestinationLimits {
        max_connections: d.max_connections_per_destination,
        min_interval: (d.max_messages_per_second_per_destination > 0)
            .then(|| Duration::from_secs(1) / d.max_messages_per_second_per_destination),
        failure_limit: d.destination_failure_limit,
        backoff: Duration::from_secs(d.destination_backoff_secs),
        idle: Duration::from_secs(d.idle_connection_secs),
        max_held: (d.concurrency / 2).max(d.max_connections_per_destination),
    };
    let outbound = Outbound {
        resolver: Resolver::new(&d.resolver).map_err(StartError::Resolver)?,
        tls: tls::client_tls(&d.extra_ca_files)?,
        settings: OutboundSettings {
            port: d.port,
            helo: d.helo_name.clone().unwrap_or_else(|| config.server.hostname.clone()),
            tls_required_domains: d.tls_required_domains.clone(),
            connect_timeout: Duration::from_secs(d.connect_timeout_secs),
            command_timeout: Duration::from_secs(d.command_timeout_secs),
            max_messages_per_connection: d.max_messages_per_connection,
        },
    };
    let work = DeliveryWork {
        store,
        clock,
        capture: CaptureRoute::new(config.capture_dir()).map_err(StartError::Capture)?,
        capture_slots: tokio::sync::Semaphore::new(d.max_connections_per_destination),
        outbound: Arc::new(outbound),
        default_route: d.default_route,
        retry: RetrySchedule {
            base_ms: d.retry_base_secs * 1000,
            max_interval_ms: d.retry_max_interval_secs * 1000,
            max_age_ms: d.max_age_secs * 1000,
        },
        suppression: config.suppression.clone(),
        hostname: config.server.hostname.clone(),
        wakeup,
        metrics: node_metrics,
        save_for: Duration::from_secs(d.lease_secs),
        connect_timeout: Duration::from_secs(d.connect_timeout_secs),
        command_timeout: Duration::from_secs(d.command_timeout_secs),
        holdings: Default::default(),
        supervisor: Default::default(),
    };
    Ok(DeliveryArgs {
        work: Arc::new(work),
        lease: Duration::from_secs(d.lease_secs),
        max_held: d.concurrency,
        limits,
    })
}

/// What the session context is built from.
struct SessionParts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tls: watch::Receiver<Option<TlsAcceptor>>,
    tls_available: bool,
    wakeup: Arc<Notify>,
    draining: watch::Receiver<bool>,
    metrics: Arc<metrics::Metrics>,
    dkim: watch::Receiver<Arc<dkim::DkimSigners>>,
    bounce_keys: watch::Receiver<Arc<Vec<ferry_core::return_path::BounceKey>>>,
    /// Whether applications sign in on this node (ingress): only then is
    /// the directory's client built (its CA read).
    signs_in: bool,
}

fn session_context(config: &Config, p: SessionParts) -> Result<SessionContext, StartError> {
    let a = &config.auth;
    let settings = AuthSettings {
        max_concurrent_verifications: a.max_concurrent_verifications,
        verification_wait: Duration::from_millis(a.verification_wait_ms),
        lockout: a.lockout_rules(),
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
            inbound: None,
        },
        tls: p.tls,
        tls_available: p.tls_available,
        auth: Authenticator::new(
            p.store.clone(),
            p.clock.clone(),
            settings,
            p.metrics.auth_lockouts.clone(),
        )
        .map_err(StartError::Auth)?
        .with_directory(
            config
                .auth
                .directory
                .clone()
                .filter(|_| p.signs_in)
                .map(directory::Directory::new)
                .transpose()
                .map_err(StartError::Directory)?,
        ),
        reports: inbound::Reports {
            store: p.store.clone(),
            clock: p.clock.clone(),
            bounce_keys: p.bounce_keys.clone(),
            suppression: config.suppression.clone(),
            hostname: config.server.hostname.clone(),
            counted: p.metrics.reports.clone(),
            delivery_wakeup: p.wakeup.clone(),
        },
        intake: MessageIntake {
            side: intake::SideWriters::start(p.store.clone(), &p.metrics),
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
            bounce_keys: p.bounce_keys,
            bulk_recipients: config.hygiene.bulk_recipients,
            delivery_wakeup: p.wakeup,
        },
        command_timeout: Duration::from_secs(config.smtp.command_timeout_secs),
        data_timeout: Duration::from_secs(config.smtp.data_timeout_secs),
        proxies: proxy::TrustedProxies::new(config.listen.proxy_protocol_from.clone()),
        proxy_header_timeout: Duration::from_secs(config.listen.proxy_header_timeout_secs),
        greeting: greeting::GreetingPause::new(
            Duration::from_millis(config.smtp.greeting_pause_ms),
            Duration::from_secs(config.smtp.greeting_pass_secs),
        ),
        draining: p.draining,
    })
}
