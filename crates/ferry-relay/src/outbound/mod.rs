//! Delivery to other mail servers: resolving where a domain's mail goes,
//! the SMTP client, and per-destination traffic control.
//!
//! - [`resolve`]: MX, then A/AAAA; null MX and NXDOMAIN are permanent.
//! - [`client`]: one SMTP connection to a next hop.
//! - [`destinations`]: connection and rate limits, reuse, backoff per destination.

pub mod client;
pub mod destinations;
pub mod resolve;

use std::net::SocketAddr;
use std::time::Duration;

use ferry_core::{DeliveryAttempt, QueuedMessage, SmartHost};

use self::client::{ClientError, Connection, Dial, RemoteReply, TlsMode};
use self::destinations::Destinations;
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

pub struct Outbound {
    pub resolver: Resolver,
    pub tls: ClientTls,
    pub destinations: Destinations,
    pub settings: OutboundSettings,
}

/// A next hop: where to connect and how.
struct Hop<'a> {
    key: String,
    hosts: Vec<Host>,
    port: u16,
    tls: TlsMode,
    credentials: Option<(&'a str, &'a str)>,
}

fn attempt(now_ms: u64, destination: &str, rcpts: &[String], reply: String) -> DeliveryAttempt {
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
    /// Delivers to the MX hosts of `domain`.
    pub async fn to_domain(&self, domain: &str, rcpts: &[String], message: &QueuedMessage, now_ms: u64) -> GroupResult {
        if let Some(left) = self.destinations.suspended(domain) {
            let why = format!(
                "destination {domain} backed off for {}s after repeated failures",
                left.as_secs()
            );
            return GroupResult::all(
                rcpts,
                Answer::Deferred(why.clone()),
                attempt(now_ms, domain, rcpts, why),
            );
        }
        let hosts = match self.resolver.hosts(domain).await {
            Ok(hosts) => hosts,
            Err(e) => {
                let answer = match &e {
                    RouteError::Permanent(why) => Answer::Failed {
                        status: e.status().into(),
                        reply: format!("550 {} {why}", e.status()),
                        remote: None,
                    },
                    RouteError::Temporary(why) => Answer::Deferred(why.clone()),
                };
                return GroupResult::all(rcpts, answer, attempt(now_ms, domain, rcpts, e.to_string()));
            }
        };
        let required = self
            .settings
            .tls_required_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain));
        let connector = client::connector(if required {
            self.tls.verified.clone()
        } else {
            self.tls.opportunistic.clone()
        });
        let tls = if required {
            TlsMode::Required(connector)
        } else {
            TlsMode::Opportunistic(connector)
        };
        let hop = Hop {
            key: domain.to_ascii_lowercase(),
            hosts,
            port: self.settings.port,
            tls,
            credentials: None,
        };
        self.through(hop, rcpts, message, now_ms).await
    }

    /// Delivers through a tenant's smart host.
    pub async fn to_smart_host(
        &self,
        smart: &SmartHost,
        rcpts: &[String],
        message: &QueuedMessage,
        now_ms: u64,
    ) -> GroupResult {
        let key = format!("{}:{}", smart.host, smart.port);
        let addresses = self.resolver.addresses(&smart.host).await;
        let connector = client::connector(if smart.tls_required {
            self.tls.verified.clone()
        } else {
            self.tls.opportunistic.clone()
        });
        let tls = if smart.tls_required {
            TlsMode::Required(connector)
        } else {
            TlsMode::Opportunistic(connector)
        };
        let credentials = smart.username.as_deref().zip(smart.password.as_deref());
        let hop = Hop {
            key,
            hosts: vec![Host {
                name: smart.host.clone(),
                addresses,
            }],
            port: smart.port,
            tls,
            credentials,
        };
        self.through(hop, rcpts, message, now_ms).await
    }

    async fn through(&self, hop: Hop<'_>, rcpts: &[String], message: &QueuedMessage, now_ms: u64) -> GroupResult {
        let Some(_slot) = self.destinations.slot(&hop.key).await else {
            return GroupResult::all(
                rcpts,
                Answer::Deferred("shutting down".into()),
                attempt(now_ms, &hop.key, rcpts, "shutting down".into()),
            );
        };
        self.destinations.pace(&hop.key).await;
        let mut conn = match self.destinations.take_idle(&hop.key) {
            Some(conn) => conn,
            None => match self.connect(&hop).await {
                Ok(conn) => conn,
                Err(e) => {
                    self.destinations.failed(&hop.key);
                    let why = format!("451 4.4.1 {e}");
                    return GroupResult::all(
                        rcpts,
                        Answer::Deferred(why.clone()),
                        attempt(now_ms, &hop.key, rcpts, why),
                    );
                }
            },
        };
        self.destinations.connected(&hop.key);
        let mut record = attempt(now_ms, &conn.host, rcpts, String::new());
        record.address = Some(conn.peer.to_string());
        record.tls = conn.tls.as_ref().map(|t| t.describe());
        if let Some(refusal) = capability_refusal(&conn, message) {
            record.reply = refusal.1.clone();
            let answer = Answer::Failed {
                status: refusal.0.into(),
                reply: refusal.1,
                remote: Some(conn.host.clone()),
            };
            self.destinations.put_idle(&hop.key, conn);
            return GroupResult::all(rcpts, answer, record);
        }
        match conn
            .send(
                &message.mail_from,
                rcpts,
                &message.content,
                message.eight_bit,
                message.smtputf8,
            )
            .await
        {
            Ok(replies) => {
                record.reply = summarize(&replies);
                let answers = replies
                    .into_iter()
                    .map(|(r, reply)| (r, answer_for(&reply, &conn.host)))
                    .collect();
                if conn.messages_sent < self.settings.max_messages_per_connection {
                    self.destinations.put_idle(&hop.key, conn);
                } else {
                    conn.quit().await;
                }
                GroupResult {
                    answers,
                    attempt: record,
                }
            }
            Err(e) => {
                record.reply = format!("451 4.4.2 {e}");
                GroupResult::all(rcpts, Answer::Deferred(record.reply.clone()), record)
            }
        }
    }

    /// Tries each host in preference order, each of its addresses in turn.
    async fn connect(&self, hop: &Hop<'_>) -> Result<Connection, ClientError> {
        let mut last = None;
        for host in &hop.hosts {
            for ip in &host.addresses {
                let dial = Dial {
                    addr: SocketAddr::new(*ip, hop.port),
                    host: &host.name,
                    helo: &self.settings.helo,
                    tls: &hop.tls,
                    credentials: hop.credentials,
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
                SocketAddr::from(([0, 0, 0, 0], hop.port)),
                "no address to connect to".into(),
            )
        }))
    }

    /// Closes connections that waited too long for another message.
    pub async fn close_idle(&self) {
        for conn in self.destinations.expired_idle() {
            conn.quit().await;
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
