//! Fault injection in the actor tree, in process: the delivery supervisor
//! and destination actors are killed in the middle of sends under load,
//! against a real receiving server that holds each DATA reply back (so
//! every kill lands while transactions have sent their final dot and wait
//! for the answer: the moment a careless restart sends twice). Every
//! recipient must receive its message exactly once, and the queue must
//! empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::config::{Config, RouteKind};
use ferry_core::{Clock, QueueId, QueuedMessage, Route, SmartHost, SystemClock, Tenant};
use ferry_relay::{Relay, RelayParts, Roles};
use ferry_store::Store;
use ferry_store::embedded::EmbeddedStore;
use ferry_testkit::servers::{Sink, SinkOptions, free_port};
use ractor::ActorCell;

const MESSAGES: usize = 60;

fn message(n: usize, now_ms: u64) -> QueuedMessage {
    let rcpt = format!("r{n}@example.net");
    QueuedMessage {
        id: QueueId::generate(),
        tenant: "faults".into(),
        app: "loader".into(),
        mail_from: "app@faults.example.org".into(),
        recipients: vec![rcpt.clone()],
        received_ms: now_ms,
        attempts: 0,
        eight_bit: false,
        smtputf8: false,
        outcomes: Default::default(),
        history: Vec::new(),
        content: format!("From: app@faults.example.org\r\nTo: {rcpt}\r\nSubject: {n}\r\n\r\nHello.\r\n").into_bytes(),
        lease: None,
        return_paths: Vec::new(),
    }
}

/// Polls `check` every 20 ms until it gives a value, for at most `secs`
/// seconds (the async form of `ferry_testkit::wait_for`).
async fn poll<T, F: Future<Output = Option<T>>>(what: &str, secs: u64, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls a plain condition with [`poll`].
async fn until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    poll(what, secs, || std::future::ready(check().then_some(()))).await;
}

/// Received copies per recipient.
fn copies(sink: &Sink) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for event in sink.received() {
        for rcpt in event["rcpts"].as_array().into_iter().flatten() {
            *seen.entry(rcpt.as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
        }
    }
    seen
}

fn config(data: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.data_dir = data.to_path_buf();
    config.listen.smtp = None;
    config.listen.submission = None;
    config.listen.submissions = None;
    config.admin.listen = None;
    config.delivery.default_route = RouteKind::Capture;
    // Shorter than a transaction: a walk that stopped being renewed would
    // lose its lease while it waits for the DATA answer.
    config.delivery.lease_secs = 2;
    config.delivery.concurrency = 24;
    config.delivery.max_connections_per_destination = 8;
    config.delivery.retry_base_secs = 1;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_delivery_actors_lose_nothing_and_send_nothing_twice() {
    let port = free_port(&["127.0.0.1"]);
    let rcpts: Vec<String> = (0..MESSAGES).map(|n| format!("r{n}@example.net")).collect();
    let sink = Sink::start(
        &[format!("127.0.0.1:{port}")],
        SinkOptions {
            slow: rcpts.clone(),
            slow_seconds: Some(2.5),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let (store, writer) = EmbeddedStore::open_supervised(&dir.path().join("ferry.redb")).expect("open the store");
    let store: Arc<dyn Store> = Arc::new(store);
    let parts = RelayParts {
        store: store.clone(),
        store_writer: Some(writer),
        clock: Arc::new(SystemClock),
        certificate: None,
        roles: Roles {
            ingress: false,
            delivery: true,
            inbound: false,
        },
        commands: None,
    };
    let relay = Relay::start(&config, parts).await.expect("start delivery");
    let smart_host = SmartHost {
        host: "127.0.0.1".into(),
        port,
        tls_required: false,
        username: None,
        password: None,
    };
    let tenant = Tenant {
        name: "faults".into(),
        domains: vec!["faults.example.org".into()],
        subdomains_only: false,
        contact: None,
        created_ms: 0,
        route: Route::SmartHost(smart_host),
        allocation: Default::default(),
        caps: Default::default(),
        sample_percent: 0,
        bounces: Default::default(),
        events_webhook: None,
        incident_policy: Default::default(),
    };
    store.create_tenant(tenant).await.expect("tenant");
    let now = SystemClock.now_ms();
    for n in 0..MESSAGES {
        store.enqueue(message(n, now), None).await.expect("enqueue");
    }

    // Kill the supervisor twice and a destination actor twice, each time
    // with transactions waiting for their DATA answer.
    let mut killed = Vec::new();
    for round in 0..4 {
        let delivered = (round + 1) * MESSAGES / 6;
        until("more mail at the sink", 60, || copies(&sink).len() >= delivered).await;
        let supervisor = current(&relay).await;
        let victim: ActorCell = if round % 2 == 0 {
            supervisor.clone()
        } else {
            match supervisor.get_children().into_iter().next() {
                Some(destination) => destination,
                None => continue,
            }
        };
        let what = if round % 2 == 0 {
            "the delivery supervisor"
        } else {
            "a destination actor"
        };
        killed.push(format!("{what} after {} received", copies(&sink).len()));
        victim.kill();
        if round % 2 == 0 {
            until("the supervisor's restart", 30, || {
                relay
                    .delivery_supervisor()
                    .is_some_and(|s| s.get_id() != supervisor.get_id())
            })
            .await;
        }
    }
    assert!(killed.len() >= 3, "the faults were injected: {killed:?}");

    until("every message delivered and the queue empty", 120, || {
        copies(&sink).len() == MESSAGES
    })
    .await;
    poll("every delivery recorded (the queue empty)", 15, || async {
        (store.depth().await.expect("depth") == 0).then_some(())
    })
    .await;
    let seen = copies(&sink);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "faults injected: {killed:?}; {} recipients, each received {:?} times",
        seen.len(),
        seen.values().max()
    );
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    for rcpt in &rcpts {
        assert_eq!(seen.get(rcpt), Some(&1), "{rcpt} received its message once");
    }
    relay.drain().await;
}

/// The delivery supervisor running now (it may be between restarts).
async fn current(relay: &Relay) -> ActorCell {
    poll("a delivery supervisor", 5, || {
        std::future::ready(relay.delivery_supervisor())
    })
    .await
}
