//! `ferry-load`: a load generator for SMTP submission. N connections over
//! STARTTLS (587 style) or implicit TLS (465 style) with AUTH PLAIN, M
//! messages per connection, closed loop (as fast as possible) or open loop
//! at a target rate, bounded by a message count and a duration. Reports
//! accepted messages per second, refusals by reply code, and latency
//! percentiles for connect+TLS+AUTH and for end-of-DATA → 250, as text and
//! JSON. In open loop each message's latency runs from the moment it was
//! scheduled, so a stalled server is not hidden (coordinated omission).
//! Loopback targets only.

mod client;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio::sync::Mutex;

use crate::client::{Mechanism, Session, TlsMode};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    Starttls,
    Implicit,
}

#[derive(Debug, Parser)]
#[command(
    name = "ferry-load",
    about = "SMTP submission load generator (loopback targets only)"
)]
struct Args {
    /// host:port of the submission (or implicit TLS) listener; loopback only.
    /// Repeat it to spread the connections over several nodes in turn.
    #[arg(long, required = true)]
    target: Vec<SocketAddr>,
    #[arg(long, value_enum, default_value_t = Mode::Starttls)]
    mode: Mode,
    /// The SASL mechanism.
    #[arg(long, value_enum, default_value_t = Mechanism::Plain)]
    auth: Mechanism,
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
    #[arg(long)]
    from: String,
    /// Recipient address; with --recipients N, N addresses are made from it (r1+, r2+ …).
    #[arg(long, default_value = "bench@example.net")]
    to: String,
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Messages per connection before QUIT and a new TLS handshake and AUTH.
    #[arg(long, default_value_t = 20)]
    messages_per_connection: usize,
    /// Total messages to send (the run stops there).
    #[arg(long, default_value_t = 160)]
    messages: usize,
    /// The run stops after this many seconds, whatever is left.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Message size in bytes (headers included); a list (1024,10240,102400)
    /// is a size mix, the messages taking each size in turn.
    #[arg(long, value_delimiter = ',', default_value = "10240")]
    size: Vec<usize>,
    /// Open loop: schedule messages at this rate (per second) instead of as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// CA certificate (PEM) to verify the server; without it any certificate is accepted.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Idle capacity: open this many TLS sessions (implicit TLS, greeting
    /// read), print "open N", hold them until stdin closes, then exit.
    #[arg(long)]
    idle: Option<usize>,
}

#[derive(Default)]
struct Results {
    accepted: usize,
    refused: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
    session_setup_us: Vec<u64>,
    end_of_data_us: Vec<u64>,
}

/// A message's turn: when it was meant to start (open loop) or None.
struct Ticket {
    scheduled: Option<Instant>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if let Some(outside) = args.target.iter().find(|t| !t.ip().is_loopback()) {
        bail!("--target {outside}: only loopback targets are allowed");
    }
    let tls = client::tls_config(args.ca.as_deref())?;
    if let Some(n) = args.idle {
        return idle(&args, tls, n).await;
    }
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(args.size.iter().map(|size| message_body(&args, *size)).collect());
    let results = Arc::new(Mutex::new(Results::default()));
    let (tickets_tx, tickets_rx) = tokio::sync::mpsc::channel::<Ticket>(args.connections * 2);
    let tickets = Arc::new(Mutex::new(tickets_rx));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let scheduler = tokio::spawn(schedule(args.clone(), tickets_tx, deadline));
    let mut workers = Vec::new();
    for n in 0..args.connections {
        let target = args.target[n % args.target.len()];
        let (args, tls, bodies, results, tickets) = (
            args.clone(),
            tls.clone(),
            bodies.clone(),
            results.clone(),
            tickets.clone(),
        );
        workers.push(tokio::spawn(async move {
            worker(&args, target, tls, &bodies, &results, &tickets, deadline).await
        }));
    }
    scheduler.await.context("scheduler")?;
    for w in workers {
        w.await.context("worker")?;
    }
    let elapsed = started.elapsed();
    let results = results.lock().await;
    let report = report(&args, &results, elapsed);
    if args.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    Ok(())
}

/// Opens `n` sessions and holds them; the bench reads the relay's memory meanwhile.
async fn idle(args: &Args, tls: Arc<rustls::ClientConfig>, n: usize) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(n);
    let mut failed = 0usize;
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let opens = chunk.iter().map(|_| client::open_idle(args.target[0], tls.clone()));
        for r in futures_join(opens).await {
            match r {
                Ok(s) => held.push(s),
                Err(_) => failed += 1,
            }
        }
    }
    println!("open {} failed {failed}", held.len());
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    drop(held);
    Ok(())
}

async fn futures_join<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// Hands out `--messages` tickets: at once (closed loop) or on schedule (open loop).
async fn schedule(args: Arc<Args>, tx: tokio::sync::mpsc::Sender<Ticket>, deadline: Instant) {
    let start = Instant::now();
    for i in 0..args.messages {
        let scheduled = args.rate.map(|rate| start + Duration::from_secs_f64(i as f64 / rate));
        if let Some(at) = scheduled {
            tokio::time::sleep_until(at.into()).await;
        }
        if Instant::now() >= deadline || tx.send(Ticket { scheduled }).await.is_err() {
            return;
        }
    }
}

async fn worker(
    args: &Args,
    target: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    bodies: &[Vec<u8>],
    results: &Mutex<Results>,
    tickets: &Mutex<tokio::sync::mpsc::Receiver<Ticket>>,
    deadline: Instant,
) {
    let mode = if args.mode == Mode::Implicit {
        TlsMode::Implicit
    } else {
        TlsMode::Starttls
    };
    let rcpts: Vec<String> = (0..args.recipients)
        .map(|i| recipient(&args.to, i, args.recipients))
        .collect();
    let mut session: Option<Session> = None;
    let mut sent_on_session = 0;
    let mut sizes = bodies.iter().cycle();
    loop {
        let Some(ticket) = tickets.lock().await.recv().await else {
            break;
        };
        if Instant::now() >= deadline {
            break;
        }
        if session.is_none() {
            let t0 = Instant::now();
            match Session::open(target, mode, tls.clone(), args.auth, (&args.user, &args.password)).await {
                Ok(s) => {
                    results
                        .lock()
                        .await
                        .session_setup_us
                        .push(t0.elapsed().as_micros() as u64);
                    session = Some(s);
                    sent_on_session = 0;
                }
                Err(e) => {
                    *results.lock().await.errors.entry(format!("session: {e}")).or_default() += 1;
                    continue;
                }
            }
        }
        let Some(s) = session.as_mut() else { continue };
        let body = sizes.next().map_or(&[][..], Vec::as_slice);
        let outcome = s.send(&args.from, &rcpts, body).await;
        let mut r = results.lock().await;
        match outcome {
            Ok((code, eod)) if code == "250" => {
                let waited = ticket.scheduled.map_or(eod, |at| at.elapsed().max(eod));
                r.accepted += 1;
                r.end_of_data_us.push(waited.as_micros() as u64);
            }
            Ok((code, _)) => *r.refused.entry(code).or_default() += 1,
            Err(e) => {
                *r.errors.entry(format!("transaction: {e}")).or_default() += 1;
                session = None;
                continue;
            }
        }
        drop(r);
        sent_on_session += 1;
        if sent_on_session >= args.messages_per_connection
            && let Some(s) = session.take()
        {
            s.quit().await;
        }
    }
    if let Some(s) = session.take() {
        s.quit().await;
    }
}

fn recipient(to: &str, i: usize, n: usize) -> String {
    if n == 1 {
        return to.to_string();
    }
    match to.split_once('@') {
        Some((local, domain)) => format!("{local}+{i}@{domain}"),
        None => to.to_string(),
    }
}

/// A message of about `size` bytes: headers, then 76-character lines.
fn message_body(args: &Args, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Load <{}>\r\nTo: <{}>\r\nSubject: ferry-load\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        args.from, args.to
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

fn percentiles(samples: &[u64]) -> serde_json::Value {
    if samples.is_empty() {
        return serde_json::json!(null);
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let at = |p: f64| s[((p / 100.0) * (s.len() - 1) as f64).round() as usize] as f64 / 1000.0;
    serde_json::json!({"p50_ms": at(50.0), "p90_ms": at(90.0), "p99_ms": at(99.0), "max_ms": at(100.0), "count": s.len()})
}

fn report(args: &Args, r: &Results, elapsed: Duration) -> serde_json::Value {
    serde_json::json!({
        "target": args.target.iter().map(SocketAddr::to_string).collect::<Vec<_>>(),
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "auth": format!("{:?}", args.auth).to_lowercase(),
        "connections": args.connections,
        "messages_per_connection": args.messages_per_connection,
        "size_bytes": args.size,
        "recipients": args.recipients,
        "open_loop_rate": args.rate,
        "elapsed_s": elapsed.as_secs_f64(),
        "accepted": r.accepted,
        "accepted_per_s": r.accepted as f64 / elapsed.as_secs_f64().max(1e-9),
        "refused": r.refused,
        "errors": r.errors,
        "session_setup": percentiles(&r.session_setup_us),
        "end_of_data_to_250": percentiles(&r.end_of_data_us),
    })
}

fn print_text(r: &serde_json::Value) {
    println!(
        "{} accepted in {:.2} s: {:.1} msg/s ({} connections × {} messages, {} bytes)",
        r["accepted"],
        r["elapsed_s"].as_f64().unwrap_or(0.0),
        r["accepted_per_s"].as_f64().unwrap_or(0.0),
        r["connections"],
        r["messages_per_connection"],
        r["size_bytes"]
    );
    for (what, key) in [
        ("connect+TLS+AUTH", "session_setup"),
        ("end of DATA → 250", "end_of_data_to_250"),
    ] {
        let p = &r[key];
        println!(
            "  {what:<20} p50 {} ms  p90 {} ms  p99 {} ms  max {} ms",
            p["p50_ms"], p["p90_ms"], p["p99_ms"], p["max_ms"]
        );
    }
    if r["refused"].as_object().is_some_and(|o| !o.is_empty()) {
        println!("  refused: {}", r["refused"]);
    }
    if r["errors"].as_object().is_some_and(|o| !o.is_empty()) {
        println!("  errors: {}", r["errors"]);
    }
}
