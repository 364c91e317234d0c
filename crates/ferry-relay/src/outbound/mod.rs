//! Delivery to other mail servers: resolving where a domain's mail goes,
//! the SMTP client, and per-destination traffic control.
//!
//! - [`resolve`]: MX, then A/AAAA; null MX and NXDOMAIN are permanent.
//! - [`client`]: one SMTP connection to a next hop.
//!
//! Per-destination state (connections kept open, limits, backoff) is the
//! destination actor's, in `delivery::destination`.

pub mod client;
pub mod resolve;

use std::net::SocketAddr;
use std::time::Duration;

use ferry_core::{DeliveryAttempt, QueuedMessage, SmartHost};

use self::client::{ClientError, Connection, Dial, RemoteReply, TlsMode};
use self::resolve::{Host, Resolver, RouteError};
use crate::tls::ClientTls;

/// What became of one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Delivered(String),
    Failed {
        status: String,
        reply: String,
        remote: Option<String>,
    },
    /// Try again later.
    Deferred(String),
}

/// One attempt at a group of recipients that share a next hop.
pub struct GroupResult {
    pub answers: Vec<(String, Answer)>,
    pub attempt: DeliveryAttempt,
}

impl GroupResult {
    pub fn all(rcpts: &[String], answer: Answer, attempt: DeliveryAttempt) -> Self {
        GroupResult {
            answers: rcpts.iter().map(|r| (r.clone(), answer.clone())).collect(),
            attempt,
        }
    }
}

/// Outbound settings.
pub struct OutboundSettings {
    pub port: u16,
    pub helo: String,
    pub tls_required_domains: Vec<String>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub max_messages_per_connection: u32,
}

/// Resolution, connection and one transaction: what a destination actor
/// uses to work. Holds no per-destination state.
pub struct Outbound {
    pub resolver: Resolver,
    pub tls: ClientTls,
    pub settings: OutboundSettings,
}

/// What becomes of a connection after a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Kept open for the destination's next message.
    Reuse,
    /// It carried its share of messages: QUIT.
    Quit,
    /// It failed mid-transaction: closed without a word.
    Drop,
}

/// Where a group of recipients goes: a recipient domain's MX hosts, or a
/// tenant's smart host. Its key names its destination actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    Domain(String),
    SmartHost(SmartHost),
}

impl Hop {
    pub fn key(&self) -> String {
        match self {
            Hop::Domain(domain) => domain.to_ascii_lowercase(),
            Hop::SmartHost(smart) => format!("{}:{}", smart.host, smart.port),
        }
    }
}

/// A next hop resolved: where to connect and how.
pub struct Target {
    hosts: Vec<Host>,
    port: u16,
    tls: TlsMode,
    credentials: Option<(String, String)>,
}

pub fn attempt(now_ms: u64, destination: &str, rcpts: &[String], reply: String) -> DeliveryAttempt {
    DeliveryAttempt {
        at_ms: now_ms,
        destination: destination.to_string(),
        address: None,
        tls: None,
        recipients: rcpts.to_vec(),
        reply,
    }
}

impl Outbound {
    fn tls_mode(&self, required: bool) -> TlsMode {
        if required {
            TlsMode::Required(client::connector(self.tls.verified.clone()))
        } else {
            TlsMode::Opportunistic(client::connector(self.tls.opportunistic.clone()))
        }
    }

    /// Resolves a hop: MX (then A/AAAA) for a domain, the addresses of a
    /// smart host. A domain that cannot receive mail fails (5.1.2) or
    /// waits (a DNS failure), as the answer says.
    pub async fn target(&self, hop: &Hop) -> Result<Target, (Answer, String)> {
        match hop {
            Hop::Domain(domain) => {
                let hosts = self.resolver.hosts(domain).await.map_err(|e| {
                    let answer = match &e {
                        RouteError::Permanent(why) => Answer::Failed {
                            status: e.status().into(),
                            reply: format!("550 {} {why}", e.status()),
                            remote: None,
                        },
                        RouteError::Temporary(why) => Answer::Deferred(why.clone()),
                    };
                    (answer, e.to_string())
                })?;
                let required = self
                    .settings
                    .tls_required_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain));
                Ok(Target {
                    hosts,
                    port: self.settings.port,
                    tls: self.tls_mode(required),
                    credentials: None,
                })
            }
            Hop::SmartHost(smart) => Ok(Target {
                hosts: vec![Host {
                    name: smart.host.clone(),
                    addresses: self.resolver.addresses(&smart.host).await,
                }],
                port: smart.port,
                tls: self.tls_mode(smart.tls_required),
                credentials: smart.username.clone().zip(smart.password.clone()),
            }),
        }
    }

    /// Tries each host in preference order, each of its addresses in turn.
    pub async fn connect(&self, target: &Target) -> Result<Connection, ClientError> {
        let mut last = None;
        for host in &target.hosts {
            for ip in &host.addresses {
                let dial = Dial {
                    addr: SocketAddr::new(*ip, target.port),
                    host: &host.name,
                    helo: &self.settings.helo,
                    tls: &target.tls,
                    credentials: target.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                    connect_timeout: self.settings.connect_timeout,
                    command_timeout: self.settings.command_timeout,
                };
                match Connection::open(dial).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) => {
                        tracing::info!(host = %host.name, address = %ip, error = %e, "next hop unusable; trying the next");
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::Refused(
                SocketAddr::from(([0, 0, 0, 0], target.port)),
                "no address to connect to".into(),
            )
        }))
    }

    /// One transaction on an open connection. Returns the answers and what
    /// becomes of the connection.
    pub async fn send(
        &self,
        conn: &mut Connection,
        rcpts: &[String],
        message: &QueuedMessage,
        now_ms: u64,
    ) -> (GroupResult, After) {
        let mut record = attempt(now_ms, &conn.host, rcpts, String::new());
        record.address = Some(conn.peer.to_string());
        record.tls = conn.tls.as_ref().map(|t| t.describe());
        if let Some(refusal) = capability_refusal(conn, message) {
            record.reply = refusal.1.clone();
            let answer = Answer::Failed {
                status: refusal.0.into(),
                reply: refusal.1,
                remote: Some(conn.host.clone()),
            };
            return (GroupResult::all(rcpts, answer, record), After::Reuse);
        }
        // With Ferry's return path a group is one recipient, sent with its own.
        let from = rcpts
            .first()
            .map_or(message.mail_from.as_str(), |r| message.return_path(r));
        let sent = conn
            .send(from, rcpts, &message.content, message.eight_bit, message.smtputf8)
            .await;
        match sent {
            Ok(replies) => {
                record.reply = summarize(&replies);
                let answers = replies
                    .into_iter()
                    .map(|(r, reply)| (r, answer_for(&reply, &conn.host)))
                    .collect();
                let after = if conn.messages_sent < self.settings.max_messages_per_connection {
                    After::Reuse
                } else {
                    After::Quit
                };
                (
                    GroupResult {
                        answers,
                        attempt: record,
                    },
                    after,
                )
            }
            Err(e) => {
                record.reply = format!("451 4.4.2 {e}");
                (
                    GroupResult::all(rcpts, Answer::Deferred(record.reply.clone()), record),
                    After::Drop,
                )
            }
        }
    }
}

/// A message the next hop cannot take as it is: bounced with the code a
/// careful MTA uses (RFC 6152, RFC 6531, RFC 1870).
fn capability_refusal(conn: &Connection, m: &QueuedMessage) -> Option<(&'static str, String)> {
    if m.smtputf8 && !conn.caps.smtputf8 {
        return Some((
            "5.6.7",
            format!(
                "554 5.6.7 {} does not support SMTPUTF8, which the message needs",
                conn.host
            ),
        ));
    }
    if m.eight_bit && !conn.caps.eight_bit {
        return Some((
            "5.6.3",
            format!(
                "554 5.6.3 {} does not support 8BITMIME, which the message needs",
                conn.host
            ),
        ));
    }
    match conn.caps.size {
        Some(limit) if (m.content.len() as u64) > limit => Some((
            "5.3.4",
            format!(
                "552 5.3.4 message of {} bytes exceeds {}'s limit of {limit}",
                m.content.len(),
                conn.host
            ),
        )),
        _ => None,
    }
}

fn answer_for(reply: &RemoteReply, host: &str) -> Answer {
    if reply.is_positive() {
        Answer::Delivered(reply.one_line())
    } else if reply.is_permanent() {
        Answer::Failed {
            status: reply.status(),
            reply: reply.one_line(),
            remote: Some(host.to_string()),
        }
    } else {
        Answer::Deferred(reply.one_line())
    }
}

fn summarize(replies: &[(String, RemoteReply)]) -> String {
    let mut distinct: Vec<String> = replies.iter().map(|(_, r)| r.one_line()).collect();
    distinct.dedup();
    distinct.join("; ")
}
