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
    pub log: Log,
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
}

impl Default for Server {
    fn default() -> Self {
        Server {
            hostname: "localhost".into(),
            data_dir: "var".into(),
            max_sessions: 10_000,
            max_sessions_per_ip: 100,
            shutdown_grace_secs: 30,
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
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            smtp: Some(([127, 0, 0, 1], 2525).into()),
            submission: Some(([127, 0, 0, 1], 2587).into()),
            submissions: Some(([127, 0, 0, 1], 2465).into()),
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
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            max_message_bytes: 25 * 1024 * 1024,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            max_errors: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// argon2 verifications running at once (each takes one core for tens of ms).
    pub max_concurrent_verifications: usize,
    /// Failures from one address, or for one username, that start a lockout.
    pub lockout_failures: u32,
    /// The window in which failures are counted, and the lockout's length.
    pub lockout_secs: u64,
    /// How long a successful verification is remembered on this node.
    pub cache_secs: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            max_concurrent_verifications: 2,
            lockout_failures: 5,
            lockout_secs: 300,
            cache_secs: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// The embedded store's file; default `<data_dir>/ferry.redb`.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Write each message as an `.eml` file with a JSON envelope beside it.
    Capture,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    pub default_route: RouteKind,
    /// Where the capture route writes; default `<data_dir>/capture`.
    pub capture_dir: Option<PathBuf>,
    /// How long a taken message is reserved for one worker before another may take it.
    pub lease_secs: u64,
    /// Messages handled at once by this node's delivery workers.
    pub concurrency: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            default_route: RouteKind::Capture,
            capture_dir: None,
            lease_secs: 300,
            concurrency: 4,
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
            ("auth.lockout_failures", self.auth.lockout_failures as u64),
            ("delivery.concurrency", self.delivery.concurrency as u64),
            ("delivery.lease_secs", self.delivery.lease_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(key, "must be greater than 0"));
        }
        if self.smtp.command_timeout_secs < 1 || self.smtp.data_timeout_secs < 1 {
            return Err(invalid(
                "smtp.command_timeout_secs",
                "timeouts must be at least 1 second",
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
