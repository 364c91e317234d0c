//! Overload: five times the clients the relay is sized for, from many
//! connections at once, against the embedded store and against Redis. The
//! node caps its sessions (`server.max_sessions`), so the excess is told
//! `421 4.7.0` (or `451 4.3.0` when the store's writer is full) and
//! retries; what matters is what the relay promised:
//!
//! - every message answered 250 is delivered, exactly once (a receiving
//!   server records each delivery, keyed by the queue id in `Received:`);
//! - the relay's peak memory stays under a stated bound;
//! - once the load stops the relay serves a new client at once.
//!
//! The figures (sent, refused, peak memory) are printed for the README.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Redis, Sink, SinkOptions, free_port};
use ferry_testkit::{Ferry, SENDER, TENANT, USER, wait_for};

/// Sessions the node takes at once: the load below is five times this.
const SESSIONS: usize = 8;
const CLIENTS: usize = 5 * SESSIONS;
/// Messages each client must get accepted (bounded: each retries at most
/// `TRIES` times).
const PER_CLIENT: usize = 12;
const TRIES: usize = 2_000;
/// How long a refused client waits before it tries again.
const RETRY_AFTER: Duration = Duration::from_millis(20);
/// The bound the relay's peak resident memory must stay under.
const RSS_BOUND_MIB: u64 = 256;

#[derive(Default, Debug)]
struct Tally {
    acked: Vec<String>,
    refused: BTreeMap<String, usize>,
}

impl Tally {
    fn refused(&mut self, reply: &str) {
        let code = reply.get(..9).unwrap_or(reply).trim().to_string();
        *self
            .refused
            .entry(if code.is_empty() { "closed".into() } else { code })
            .or_default() += 1;
    }
}

/// One session: up to `left` messages; the queue ids acknowledged.
fn session(ferry: &Ferry, password: &str, client: usize, left: usize, tally: &Mutex<Tally>) -> usize {
    let (mut smtp, greeting) = Smtp::connect(ferry.submission.expect("submission"));
    if !greeting.starts_with("220 ") {
        tally.lock().expect("tally").refused(&greeting);
        return 0;
    }
    assert!(smtp.cmd("EHLO client.test").starts_with("250"));
    assert!(smtp.cmd("STARTTLS").starts_with("220"));
    smtp.upgrade(&ferry.pki.ca_der);
    smtp.cmd("EHLO client.test");
    let auth = smtp.auth_plain(USER, password);
    if !auth.starts_with("235") {
        tally.lock().expect("tally").refused(&auth);
        return 0;
    }
    let mut sent = 0;
    for n in 0..left.min(4) {
        let content = format!("From: {SENDER}\r\nSubject: client {client} message {n}\r\n\r\nload\r\n");
        let reply = smtp.send_message(SENDER, &["r@example.net"], content.as_bytes());
        let mut tally = tally.lock().expect("tally");
        if reply.starts_with("250 2.0.0") {
            tally
                .acked
                .push(reply.trim_end().rsplit(' ').next().expect("queue id").to_string());
            sent += 1;
        } else {
            tally.refused(&reply);
            break;
        }
    }
    sent
}

fn overload(store: &[(&str, &str)]) {
    let port = free_port(&["127.0.0.1"]);
    let sink = Sink::start(&[format!("127.0.0.1:{port}")], SinkOptions::default());
    let sessions = SESSIONS.to_string();
    let mut settings = vec![
        ("server.max_sessions", sessions.as_str()),
        ("server.max_sessions_per_ip", "1000"),
        ("auth.address_lockout_failures", "100000"),
        ("delivery.retry_base_secs", "1"),
    ];
    settings.extend_from_slice(store);
    let mut ferry = Ferry::prepare(&settings);
    ferry.cli_ok(&["tenant", "route", TENANT, "--smarthost", &format!("127.0.0.1:{port}")]);
    ferry.launch();
    let password = ferry.password.clone();
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for client in 0..CLIENTS {
            let (ferry, password, tally) = (&ferry, &password, &tally);
            s.spawn(move || {
                let mut sent = 0;
                for _ in 0..TRIES {
                    if sent == PER_CLIENT {
                        return;
                    }
                    let got = session(ferry, password, client, PER_CLIENT - sent, tally);
                    if got == 0 {
                        // Refused: a client tries again a moment later.
                        std::thread::sleep(RETRY_AFTER);
                    }
                    sent += got;
                }
                panic!("client {client} got {sent} of {PER_CLIENT} accepted in {TRIES} sessions");
            });
        }
    });
    let elapsed = started.elapsed();
    let tally = tally.into_inner().expect("tally");
    assert_eq!(tally.acked.len(), CLIENTS * PER_CLIENT);
    let refused: usize = tally.refused.values().sum();
    assert!(
        refused > 0,
        "five times the sessions the node takes: the excess is refused"
    );
    assert!(
        tally
            .refused
            .keys()
            .all(|code| code.starts_with("421 4.7.0") || code.starts_with("451 4.3.0")),
        "{:?}",
        tally.refused
    );

    // After the load: a new client is served at once, and everything
    // acknowledged is delivered exactly once.
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &password).starts_with("235"));
    let reply = smtp.send_message(
        SENDER,
        &["r@example.net"],
        format!("From: {SENDER}\r\n\r\nafter\r\n").as_bytes(),
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let mut acked = tally.acked.clone();
    acked.push(reply.trim_end().rsplit(' ').next().expect("queue id").to_string());
    let copies = wait_for("every acknowledged message delivered", Duration::from_secs(120), || {
        let mut copies: BTreeMap<String, usize> = BTreeMap::new();
        for event in sink.received() {
            let data = event["data"].as_str().unwrap_or_default();
            if let Some(id) = acked.iter().find(|id| data.contains(&format!(" id {id}"))) {
                *copies.entry(id.clone()).or_default() += 1;
            }
        }
        (copies.len() == acked.len()).then_some(copies)
    });
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let peak_mib = ferry.peak_rss_kib() / 1024;
    eprintln!(
        "overload {store:?}: {CLIENTS} clients against {SESSIONS} sessions; {} accepted in {:.1} s ({:.0}/s), refused {:?}, all delivered once; peak RSS {peak_mib} MiB",
        acked.len(),
        elapsed.as_secs_f64(),
        tally.acked.len() as f64 / elapsed.as_secs_f64(),
        tally.refused,
    );
    assert!(peak_mib < RSS_BOUND_MIB, "peak RSS {peak_mib} MiB");
    assert!(ferry.stop().success());
}

#[test]
fn overload_on_the_embedded_store_loses_nothing_and_recovers() {
    overload(&[]);
}

#[test]
fn overload_on_redis_loses_nothing_and_recovers() {
    let redis = Redis::start();
    let url = redis.url();
    overload(&[("store.backend", "redis"), ("store.redis.url", url.as_str())]);
}
