//! The configuration tree: defaults, then a TOML file, then the environment
//! (`FERRY__SECTION__KEY`). This module holds the types, their defaults and
//! the checks that need more than one field; loading lives in the binary.
//! Every struct refuses unknown keys, so a typo is an error naming the key.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub listen: Listen,
    pub tls: Tls,
    pub smtp: Smtp,
    pub auth: Auth,
    pub store: Store,
    pub delivery: Delivery,
    pub contract: crate::contract::Contract,
    pub alerts: Alerts,
    pub admin: Admin,
    pub dkim: Dkim,
    pub hygiene: Hygiene,
    pub spf: Spf,
    pub samples: Samples,
    pub suppression: SuppressionRules,
    pub incidents: IncidentWatch,
    pub telemetry: Telemetry,
    pub log: Log,
}

/// Watching applications for behaviour unlike their own (see
/// `ferry_core::incident`): done by one delivery node at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentWatch {
    pub enabled: bool,
    /// Between two looks at the current hour's figures.
    pub every_secs: u64,
    /// Held mail older than this is discarded, and its owners told.
    pub held_retention_days: u64,
    /// The signals' thresholds.
    pub signals: crate::incident::Thresholds,
}

impl Default for IncidentWatch {
    fn default() -> Self {
        IncidentWatch {
            enabled: true,
            every_secs: 60,
            held_retention_days: 14,
            signals: crate::incident::Thresholds::default(),
        }
    }
}

/// Traces over OTLP/HTTP (protobuf). Off unless an endpoint is given here
/// or in the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); these keys win over the variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans
    /// go to its `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans; else `OTEL_SERVICE_NAME`, else "ferry".
    pub service_name: Option<String>,
    /// The share of traces kept, 0.0 to 1.0, decided at each trace's root.
    pub sample_ratio: f64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: 1.0,
        }
    }
}

/// Message samples (see `ferry_core::sample`; each tenant's share is set
/// through the admin API, none by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Samples {
    /// Samples, and the events of every application's mail (see
    /// `ferry_core::event`), older than this are removed (hourly, by the
    /// delivery nodes).
    pub retention_days: u32,
}

impl Default for Samples {
    fn default() -> Self {
        Samples { retention_days: 30 }
    }
}

/// When recipients go on their tenant's suppression list by themselves
/// (see `ferry_core::suppression`): a hard bounce or a complaint at once;
/// soft bounces once there are enough of them in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuppressionRules {
    /// Soft bounces of one recipient within `soft_bounce_window_hours`
    /// that suppress it.
    pub soft_bounces: u32,
    pub soft_bounce_window_hours: u64,
    /// Entries made by bounces and complaints lapse after this many days;
    /// 0 keeps them until removed (entries added by hand say their own).
    pub expire_days: u32,
}

impl Default for SuppressionRules {
    fn default() -> Self {
        SuppressionRules {
            soft_bounces: 3,
            soft_bounce_window_hours: 72,
            expire_days: 0,
        }
    }
}

impl SuppressionRules {
    pub fn soft_bounce_rule(&self) -> crate::suppression::SoftBounceRule {
        crate::suppression::SoftBounceRule {
            count: self.soft_bounces,
            window_ms: self.soft_bounce_window_hours.saturating_mul(3_600_000),
        }
    }

    /// When an entry made at `at_ms` lapses.
    pub fn expires_ms(&self, at_ms: u64) -> Option<u64> {
        (self.expire_days > 0).then(|| at_ms.saturating_add(u64::from(self.expire_days) * 86_400_000))
    }
}

/// DKIM signing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Dkim {
    /// The relay's own domain: when it has an active key, every message is
    /// also signed with it (as a campus relay signs for its relay domain).
    pub relay_domain: Option<String>,
}

/// SPF checks of sender domains when applications are onboarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spf {
    /// The relay's outbound addresses, as the Internet sees them.
    pub relay_addresses: Vec<std::net::IpAddr>,
    /// At `app add`: `off`, `warn` (print the result) or `refuse` (no app
    /// whose sender domain's SPF does not pass for every relay address).
    pub onboarding: SpfOnboarding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfOnboarding {
    Off,
    Warn,
    Refuse,
}

impl Default for Spf {
    fn default() -> Self {
        Spf {
            relay_addresses: Vec::new(),
            onboarding: SpfOnboarding::Warn,
        }
    }
}

/// What the scanners do, and the bulk-mail rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hygiene {
    /// clamd: `host:port` or a Unix socket path; absent: no virus scan.
    pub clamd: Option<String>,
    /// rspamd's controller or normal worker, `http://host:port`; absent: no spam scan.
    pub rspamd: Option<String>,
    pub scan_timeout_secs: u64,
    /// Larger messages are not sent to the scanners (clamd refuses them anyway).
    pub scan_max_bytes: usize,
    /// When a scanner is down or slow: `closed` answers 451 4.7.0, `open` accepts and logs.
    pub on_scanner_failure: FailurePolicy,
    /// Spam scores at or above this are refused; absent: follow rspamd's action.
    pub spam_reject_score: Option<f64>,
    /// Spam scores at or above this get X-Spam headers; absent: follow rspamd's action.
    pub spam_header_score: Option<f64>,
    /// A message to this many recipients or more counts as bulk.
    pub bulk_recipients: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    Open,
    Closed,
}

impl Default for Hygiene {
    fn default() -> Self {
        Hygiene {
            clamd: None,
            rspamd: None,
            scan_timeout_secs: 30,
            scan_max_bytes: 25 * 1024 * 1024,
            on_scanner_failure: FailurePolicy::Closed,
            spam_reject_score: None,
            spam_header_score: None,
            bulk_recipients: 100,
        }
    }
}

/// Charge-back alerts: which thresholds, and where alerts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// Percentages of the yearly total (organisation) and of each tenant's
    /// yearly allocation that raise an alert when crossed.
    #[serde(deserialize_with = "one_or_many")]
    pub yearly_percent: Vec<u32>,
    /// An alert for any hour above the contracted peak (and above a tenant's hourly allocation).
    pub hourly_over_peak: bool,
    /// Percentages of the yearly total that raise an alert when the
    /// year-end projection at the current rate crosses them.
    #[serde(deserialize_with = "one_or_many")]
    pub forecast_percent: Vec<u32>,
    /// No forecast before this many days of the contract year have passed.
    pub forecast_min_days: u32,
    /// Alerts are POSTed here as JSON (with Idempotency-Key and X-Ferry-Signature headers).
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key of the X-Ferry-Signature header.
    pub webhook_secret: Option<String>,
    /// Longest wait between two delivery tries of one alert.
    pub retry_max_secs: u64,
    /// E-mailed about organisation-wide alerts and every incident; a
    /// tenant's alerts go to its `--contact`.
    pub organisation_contact: Option<String>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            yearly_percent: vec![50, 80, 100],
            hourly_over_peak: true,
            forecast_percent: vec![100],
            forecast_min_days: 14,
            webhook_url: None,
            webhook_secret: None,
            retry_max_secs: 300,
            organisation_contact: None,
        }
    }
}

/// The admin HTTP endpoint: the admin API (`/v1`), `/metrics`, `/livez`
/// and `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Absent: not opened.
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS with the relay's certificate (`tls.*`, reloaded with
    /// it) instead of plain HTTP. Off by default: the endpoint usually
    /// listens on loopback or a cluster network, behind what terminates TLS.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Name in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// Where the store, the development certificate and captures live by default.
    pub data_dir: PathBuf,
    /// Concurrent SMTP sessions on this node; beyond it `421 4.7.0`.
    pub max_sessions: usize,
    /// Concurrent SMTP sessions from one source address.
    pub max_sessions_per_ip: usize,
    /// How long a SIGTERM waits for open sessions to finish.
    pub shutdown_grace_secs: u64,
    /// How often the TLS certificate files and the store's directory version
    /// are looked at: a certificate replaced on disk, or a DKIM key
    /// activated or retired, is in use within this many seconds.
    pub reload_secs: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            hostname: "localhost".into(),
            data_dir: "var".into(),
            max_sessions: 10_000,
            max_sessions_per_ip: 100,
            shutdown_grace_secs: 30,
            reload_secs: 5,
        }
    }
}

/// Listener addresses; an absent one is not opened. Port 0 picks a free port
/// (the bound address is logged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Port 25 style: STARTTLS offered, AUTH only after it.
    pub smtp: Option<SocketAddr>,
    /// Port 587 style: STARTTLS required before AUTH and MAIL.
    pub submission: Option<SocketAddr>,
    /// Port 465 style: implicit TLS (RFC 8314).
    pub submissions: Option<SocketAddr>,
    /// Port 587 style for clients that reach the node directly (pods in the
    /// cluster): never reads a PROXY header, whatever the peer's address,
    /// so it is safe only where balancers cannot reach it (the chart's
    /// NetworkPolicy admits only the namespaces it names).
    pub direct_submission: Option<SocketAddr>,
    /// Port 25 for the reports coming back to tenants' bounce domains (their
    /// MX points here): mail from anyone without AUTH, only to Ferry's own
    /// return paths, never relayed. Started by `serve --role inbound` (or
    /// `all`). Off by default.
    pub inbound: Option<SocketAddr>,
    /// Load balancers (CIDRs) whose connections start with a PROXY protocol
    /// v1 or v2 header naming the client. From these the header is required;
    /// from anywhere else it is refused. Empty: PROXY protocol is off.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
    /// How long a balancer's connection may take to send its PROXY header
    /// (it holds a session place meanwhile); then it is closed.
    pub proxy_header_timeout_secs: u64,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            smtp: Some(([127, 0, 0, 1], 2525).into()),
            submission: Some(([127, 0, 0, 1], 2587).into()),
            submissions: Some(([127, 0, 0, 1], 2465).into()),
            direct_submission: None,
            inbound: None,
            proxy_protocol_from: Vec::new(),
            proxy_header_timeout_secs: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// The largest message anyone may send; advertised with SIZE. Each
    /// application has its own, lower, limit.
    pub max_message_bytes: usize,
    /// RFC 5321 §4.5.3.2: at least 5 minutes waiting for a command.
    pub command_timeout_secs: u64,
    /// RFC 5321 §4.5.3.2: at least 3 minutes between data blocks.
    pub data_timeout_secs: u64,
    /// Protocol errors before the session is closed with 421.
    pub max_errors: u32,
    /// The pause before the greeting on plaintext listeners: a client that
    /// sends anything during it gets `554 5.5.1` and is closed (Postfix's
    /// postscreen waits 2 to 6 s). Not on 465, whose clients speak first,
    /// nor behind a trusted PROXY balancer, which already held the
    /// connection. 0: off.
    pub greeting_pause_ms: u64,
    /// An address that waited once is greeted at once for this long
    /// (postscreen's greet TTL), so an application pays the pause once a
    /// day per node, not per connection.
    pub greeting_pass_secs: u64,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            max_message_bytes: 25 * 1024 * 1024,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            max_errors: 20,
            greeting_pause_ms: 2_000,
            greeting_pass_secs: 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// argon2 verifications running at once (each takes one core for tens of ms).
    pub max_concurrent_verifications: usize,
    /// How long a sign-in waits for a place among them; past it the client
    /// is told `454 4.7.0` and tries again, rather than sign-ins queueing
    /// without bound.
    pub verification_wait_ms: u64,
    /// Failures of one username from one address that lock that pair
    /// (see `ferry_core::lockout` for the three rules).
    pub lockout_failures: u32,
    /// The window in which a pair's failures are counted, and its lockout's length.
    pub lockout_secs: u64,
    /// Failures of one username from any addresses that lock it everywhere
    /// but its own allowed networks.
    pub username_lockout_failures: u32,
    pub username_lockout_secs: u64,
    /// Failures from one address, for any usernames, past which each
    /// failure is answered a second later (at most ten).
    pub address_slow_after: u32,
    /// Failures from one address that get it refused at connect.
    pub address_lockout_failures: u32,
    pub address_lockout_secs: u64,
    /// How long a successful verification is remembered on this node.
    pub cache_secs: u64,
    /// An LDAP directory for usernames that are not Ferry applications.
    pub directory: Option<crate::directory::DirectoryConfig>,
}

impl Auth {
    pub fn lockout_rules(&self) -> crate::lockout::LockoutRules {
        use crate::lockout::Rule;
        let rule = |failures, secs: u64| Rule {
            failures,
            window_ms: secs.saturating_mul(1000),
        };
        crate::lockout::LockoutRules {
            pair: rule(self.lockout_failures, self.lockout_secs),
            username: rule(self.username_lockout_failures, self.username_lockout_secs),
            address: rule(self.address_lockout_failures, self.address_lockout_secs),
            address_slow_after: self.address_slow_after,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            max_concurrent_verifications: 2,
            verification_wait_ms: 2_000,
            lockout_failures: 5,
            lockout_secs: 300,
            username_lockout_failures: 30,
            username_lockout_secs: 3600,
            address_slow_after: 10,
            address_lockout_failures: 100,
            address_lockout_secs: 86_400,
            cache_secs: 300,
            directory: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    pub backend: StoreBackend,
    /// The embedded store's file; default `<data_dir>/ferry.redb`.
    pub path: Option<PathBuf>,
    pub redis: RedisStore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One file, one process: the single-machine default.
    #[default]
    Embedded,
    /// A Redis server shared by every node of a cluster.
    Redis,
}

/// The Redis backend (`store.backend = "redis"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisStore {
    /// `redis://[user:password@]host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Every key starts with this, so several deployments can share a server.
    pub key_prefix: String,
    /// Before answering 250, wait until this many replicas have the write
    /// (Redis `WAIT`); 0 trusts the primary alone (with `appendfsync always`
    /// the primary has synced the write before it answers).
    pub wait_replicas: u32,
    /// How long to wait for those replicas; past it the client gets 451.
    pub wait_timeout_ms: u64,
    /// What "have the write" means for `wait_replicas` (see the README's
    /// durability table): `wait`, received in memory (Redis `WAIT`); or
    /// `waitaof`, written to the append-only file and fsynced on the
    /// primary and on that many replicas (`WAITAOF`, Redis 7.2+ or Valkey).
    pub durability: RedisDurability,
    /// Sentinels (`host:port`) to ask where the primary of `master_name`
    /// is; `url` then gives only the scheme, credentials and database.
    /// Empty: `url` names the server.
    pub sentinels: Vec<String>,
    pub master_name: String,
    /// PEM CA certificates that sign the server's certificate (`rediss://`);
    /// default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require them.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisDurability {
    #[default]
    Wait,
    WaitAof,
}

impl Default for RedisStore {
    fn default() -> Self {
        RedisStore {
            url: "redis://127.0.0.1:6379/".into(),
            key_prefix: "ferry".into(),
            wait_replicas: 0,
            wait_timeout_ms: 1_000,
            durability: RedisDurability::Wait,
            sentinels: Vec::new(),
            master_name: "ferry".into(),
            ca_file: None,
            client_certificate: None,
            client_key: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Write each message as an `.eml` file with a JSON envelope beside it.
    Capture,
    /// Look up each recipient domain's MX (then A/AAAA) and deliver there.
    Mx,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// The route of tenants that have none of their own.
    pub default_route: RouteKind,
    /// Where the capture route writes; default `<data_dir>/capture`.
    pub capture_dir: Option<PathBuf>,
    /// DNS servers (`host:port`) for MX and address lookups; empty: the system's.
    pub resolver: Vec<SocketAddr>,
    /// The port outbound SMTP connects to.
    pub port: u16,
    /// PEM files trusted, besides the system roots, when TLS is required.
    pub extra_ca_files: Vec<PathBuf>,
    /// Recipient domains whose MX hosts must offer STARTTLS with a valid certificate.
    pub tls_required_domains: Vec<String>,
    /// Name sent in EHLO; default `server.hostname`.
    pub helo_name: Option<String>,
    /// How long a taken message is reserved for this node; renewed every
    /// third of it while the message is worked on, so a node that dies
    /// leaves its messages due again within this many seconds.
    pub lease_secs: u64,
    /// Messages this node holds at once (sending or waiting for their
    /// destination); one destination holds at most half of them.
    pub concurrency: usize,
    /// Connections at once to one destination (domain or smart host).
    pub max_connections_per_destination: usize,
    /// Messages per second to one destination; 0 means no limit.
    pub max_messages_per_second_per_destination: u32,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: u32,
    /// An idle outbound connection is kept this long for the next message.
    pub idle_connection_secs: u64,
    pub connect_timeout_secs: u64,
    /// Waiting for any reply of the next hop.
    pub command_timeout_secs: u64,
    /// First retry delay; each further one doubles, with jitter.
    pub retry_base_secs: u64,
    pub retry_max_interval_secs: u64,
    /// A message still undelivered after this long bounces (default 5 days).
    pub max_age_secs: u64,
    /// After this many failed connections in a row a destination is left
    /// alone for `destination_backoff_secs`.
    pub destination_failure_limit: u32,
    pub destination_backoff_secs: u64,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            default_route: RouteKind::Capture,
            capture_dir: None,
            resolver: Vec::new(),
            port: 25,
            extra_ca_files: Vec::new(),
            tls_required_domains: Vec::new(),
            helo_name: None,
            lease_secs: 15,
            concurrency: 16,
            max_connections_per_destination: 8,
            max_messages_per_second_per_destination: 0,
            max_messages_per_connection: 100,
            idle_connection_secs: 30,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            retry_base_secs: 300,
            retry_max_interval_secs: 4 * 3600,
            max_age_secs: 5 * 86_400,
            destination_failure_limit: 5,
            destination_backoff_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,ferry_relay=debug`.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A list, or one value standing for a list of one (`FERRY__ALERTS__YEARLY_PERCENT=80`
/// arrives as a number, `=50,80` as a list).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(u32),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Number),
        Many(Vec<Number>),
    }
    let numbers = match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    };
    numbers
        .into_iter()
        .map(|n| match n {
            Number::Int(v) => Ok(v),
            Number::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a whole number"))),
        })
        .collect()
}

/// A configuration value that parsed but makes no sense; names its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    pub key: &'static str,
    pub problem: String,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        key,
        problem: problem.into(),
    }
}

impl Config {
    /// Checks that span fields or bound values; run after parsing.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.tls.certificate.is_some() != self.tls.key.is_some() {
            let key = if self.tls.certificate.is_some() {
                "tls.key"
            } else {
                "tls.certificate"
            };
            return Err(invalid(key, "tls.certificate and tls.key must be set together"));
        }
        if self.server.hostname.is_empty() || self.server.hostname.contains(char::is_whitespace) {
            return Err(invalid("server.hostname", "must be a host name without spaces"));
        }
        let positive = [
            ("server.max_sessions", self.server.max_sessions as u64),
            ("server.max_sessions_per_ip", self.server.max_sessions_per_ip as u64),
            ("smtp.max_message_bytes", self.smtp.max_message_bytes as u64),
            (
                "auth.max_concurrent_verifications",
                self.auth.max_concurrent_verifications as u64,
            ),
            ("samples.retention_days", u64::from(self.samples.retention_days)),
            ("suppression.soft_bounces", u64::from(self.suppression.soft_bounces)),
            ("incidents.every_secs", self.incidents.every_secs),
            ("incidents.held_retention_days", self.incidents.held_retention_days),
            (
                "incidents.signals.baseline_weeks",
                self.incidents.signals.baseline_weeks,
            ),
            (
                "suppression.soft_bounce_window_hours",
                self.suppression.soft_bounce_window_hours,
            ),
            ("auth.lockout_failures", self.auth.lockout_failures as u64),
            ("auth.lockout_secs", self.auth.lockout_secs),
            (
                "auth.username_lockout_failures",
                self.auth.username_lockout_failures as u64,
            ),
            ("auth.username_lockout_secs", self.auth.username_lockout_secs),
            (
                "auth.address_lockout_failures",
                self.auth.address_lockout_failures as u64,
            ),
            ("auth.address_lockout_secs", self.auth.address_lockout_secs),
            ("delivery.concurrency", self.delivery.concurrency as u64),
            ("delivery.lease_secs", self.delivery.lease_secs),
            ("server.reload_secs", self.server.reload_secs),
            ("delivery.port", self.delivery.port as u64),
            (
                "delivery.max_connections_per_destination",
                self.delivery.max_connections_per_destination as u64,
            ),
            (
                "delivery.max_messages_per_connection",
                self.delivery.max_messages_per_connection as u64,
            ),
            ("delivery.connect_timeout_secs", self.delivery.connect_timeout_secs),
            ("delivery.command_timeout_secs", self.delivery.command_timeout_secs),
            ("delivery.retry_base_secs", self.delivery.retry_base_secs),
            ("delivery.max_age_secs", self.delivery.max_age_secs),
            (
                "delivery.destination_failure_limit",
                self.delivery.destination_failure_limit as u64,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(key, "must be greater than 0"));
        }
        if let Some(directory) = &self.auth.directory {
            directory.validate().map_err(|(key, problem)| invalid(key, problem))?;
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            return Err(invalid("telemetry.sample_ratio", "must be between 0.0 and 1.0"));
        }
        if let Some(url) = &self.telemetry.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("telemetry.otlp_endpoint", "must be an http:// or https:// URL"));
        }
        if self.store.redis.key_prefix.is_empty() || self.store.redis.key_prefix.contains(char::is_whitespace) {
            return Err(invalid("store.redis.key_prefix", "must be a non-empty word"));
        }
        if self.store.backend == StoreBackend::Redis
            && self.store.redis.wait_replicas > 0
            && self.store.redis.wait_timeout_ms == 0
        {
            return Err(invalid(
                "store.redis.wait_timeout_ms",
                "must be greater than 0 when store.redis.wait_replicas is set",
            ));
        }
        let redis = &self.store.redis;
        if redis.client_certificate.is_some() != redis.client_key.is_some() {
            return Err(invalid(
                "store.redis.client_certificate",
                "store.redis.client_certificate and store.redis.client_key must be set together",
            ));
        }
        if !(redis.url.starts_with("redis://") || redis.url.starts_with("rediss://")) {
            return Err(invalid("store.redis.url", "must be a redis:// or rediss:// URL"));
        }
        if !redis.sentinels.is_empty() && redis.master_name.is_empty() {
            return Err(invalid(
                "store.redis.master_name",
                "must name the primary the sentinels watch",
            ));
        }
        if self.smtp.command_timeout_secs < 1 || self.smtp.data_timeout_secs < 1 {
            return Err(invalid(
                "smtp.command_timeout_secs",
                "timeouts must be at least 1 second",
            ));
        }
        self.contract.terms().map_err(|e| invalid(e.key, e.problem))?;
        if let Some(pct) = self
            .alerts
            .yearly_percent
            .iter()
            .chain(&self.alerts.forecast_percent)
            .find(|p| **p == 0 || **p > 1000)
        {
            return Err(invalid(
                "alerts.yearly_percent",
                format!("{pct} is not a percentage between 1 and 1000"),
            ));
        }
        if self
            .alerts
            .webhook_url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(invalid("alerts.webhook_url", "must be an http:// or https:// URL"));
        }
        if self.alerts.webhook_url.is_some() && self.alerts.webhook_secret.is_none() {
            return Err(invalid(
                "alerts.webhook_secret",
                "a webhook needs a secret to sign its requests",
            ));
        }
        if self.listen.smtp.is_none() && self.listen.submission.is_none() && self.listen.submissions.is_none() {
            return Err(invalid(
                "listen",
                "at least one of listen.smtp, listen.submission, listen.submissions is needed",
            ));
        }
        Ok(())
    }

    pub fn store_path(&self) -> PathBuf {
        self.store
            .path
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("ferry.redb"))
    }

    pub fn capture_dir(&self) -> PathBuf {
        self.delivery
            .capture_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("capture"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn half_a_tls_pair_names_the_missing_key() {
        let mut c = Config::default();
        c.tls.certificate = Some("cert.pem".into());
        assert_eq!(c.validate().unwrap_err().key, "tls.key");
    }

    #[test]
    fn zero_limits_name_their_key() {
        let mut c = Config::default();
        c.server.max_sessions_per_ip = 0;
        assert_eq!(c.validate().unwrap_err().key, "server.max_sessions_per_ip");
    }
}
