//! The link to the primary: one server named by `store.redis.url`, or the
//! one the Sentinels name. With Sentinels a watcher asks them every second
//! where the primary is and, once a new one answers as primary, moves every
//! handle of the store to it. In between, writes fail and ingress answers
//! `451 4.3.0`; nothing is acknowledged that the new primary may not have
//! (with `wait_replicas` ≥ 1 a write counts only once a replica has it, and
//! Sentinel promotes a replica).
//!
//! TLS (`rediss://`) verifies the server against `store.redis.ca_file`, or
//! the system's roots, and presents `store.redis.client_certificate` when
//! set. Credentials and the database come from the URL in both modes.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ferry_core::config::RedisStore as RedisConfig;
use ferry_store::{Result, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ClientTlsConfig, TlsCertificates};

/// How often the Sentinels are asked where the primary is.
const SENTINEL_POLL: Duration = Duration::from_secs(1);

/// Where to connect, and how.
pub(crate) struct Target {
    url: String,
    tls: Option<TlsCertificates>,
    /// Sentinel addresses and the primary's name; empty: `url` is the server.
    sentinels: Vec<redis::Client>,
    master_name: String,
}

/// The current primary: every query takes a clone of its connection.
pub(crate) struct Link {
    pub client: redis::Client,
    pub conn: ConnectionManager,
    /// `host:port`, for the log.
    pub address: String,
}

pub(crate) type SharedLink = Arc<RwLock<Arc<Link>>>;

/// A configuration error names its key; everything else is the server's.
fn config_error(key: &str, problem: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{key}: {problem}"))
}

fn read_pem(key: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| config_error(key, format!("{}: {e}", path.display())))
}

impl Target {
    pub fn new(c: &RedisConfig) -> Result<Target> {
        let client_tls = match (&c.client_certificate, &c.client_key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read_pem("store.redis.client_certificate", cert)?,
                client_key: read_pem("store.redis.client_key", key)?,
            }),
            _ => None,
        };
        let root_cert = c
            .ca_file
            .as_deref()
            .map(|path| read_pem("store.redis.ca_file", path))
            .transpose()?;
        let tls = (client_tls.is_some() || root_cert.is_some()).then_some(TlsCertificates { client_tls, root_cert });
        let sentinels = c
            .sentinels
            .iter()
            .map(|s| redis::Client::open(format!("redis://{s}/")).map_err(|e| config_error("store.redis.sentinels", e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Target {
            url: c.url.clone(),
            tls,
            sentinels,
            master_name: c.master_name.clone(),
        })
    }

    /// Connects to the primary and checks that it answers.
    pub async fn connect(&self) -> Result<Link> {
        let (url, address) = self.primary_url().await?;
        let client = self.client(&url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| config_error("store.redis.url", format!("cannot connect to {address}: {e}")))?;
        Ok(Link { client, conn, address })
    }

    fn client(&self, url: &str) -> Result<redis::Client> {
        match &self.tls {
            Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
            None => redis::Client::open(url),
        }
        .map_err(|e| config_error("store.redis.url", e))
    }

    /// The URL of the primary and its address: `url` itself, or `url` with
    /// the host and port the first Sentinel that knows gives.
    async fn primary_url(&self) -> Result<(String, String)> {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("redis", &self.url));
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        if self.sentinels.is_empty() {
            return Ok((self.url.clone(), hostport.to_string()));
        }
        let (host, port) = self.ask_sentinels().await?;
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let at = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        Ok((format!("{scheme}://{at}{address}/{path}"), address))
    }

    async fn ask_sentinels(&self) -> Result<(String, u16)> {
        let mut last = String::from("no sentinel answered");
        for sentinel in &self.sentinels {
            let answer = async {
                let mut conn = sentinel.get_multiplexed_async_connection().await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master_name)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            match tokio::time::timeout(Duration::from_secs(2), answer).await {
                Ok(Ok(Some(primary))) => return Ok(primary),
                Ok(Ok(None)) => last = format!("the sentinels do not know {}", self.master_name),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "a sentinel did not answer within 2 s".into(),
            }
        }
        Err(StoreError::Unavailable(format!("store.redis.sentinels: {last}")))
    }

    /// With Sentinels: follows the primary for as long as the store lives.
    pub fn follow(self: Arc<Self>, link: &SharedLink) {
        if self.sentinels.is_empty() {
            return;
        }
        let link = Arc::downgrade(link);
        tokio::spawn(async move { self.watch(link).await });
    }

    async fn watch(&self, link: Weak<RwLock<Arc<Link>>>) {
        loop {
            tokio::time::sleep(SENTINEL_POLL).await;
            let Some(shared) = link.upgrade() else { return };
            let current = shared.read().unwrap_or_else(|p| p.into_inner()).address.clone();
            let Ok((_, address)) = self.primary_url().await else {
                continue;
            };
            if address == current {
                continue;
            }
            match self.connect().await {
                Ok(new) if is_primary(&new).await => {
                    tracing::warn!(from = %current, to = %new.address, "the Redis primary changed; following it");
                    *shared.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
                }
                Ok(_) => tracing::info!(%address, "the sentinels name a primary that is not one yet"),
                Err(e) => tracing::warn!(%address, error = %e, "cannot reach the primary the sentinels name"),
            }
        }
    }
}

/// `ROLE` says master: a promotion the Sentinels announced has happened.
async fn is_primary(link: &Link) -> bool {
    let role: redis::RedisResult<Vec<redis::Value>> = redis::cmd("ROLE").query_async(&mut link.conn.clone()).await;
    matches!(role.as_deref(), Ok([redis::Value::BulkString(r), ..]) if r == b"master")
}
