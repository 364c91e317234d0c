//! Cluster mode end to end: two ingress nodes and a delivery node, three
//! processes sharing one real redis-server. Whatever ingress accepted a
//! message, the delivery node delivers it once; the counts and alerts are
//! the cluster's (one alert per threshold however the nodes race); the CLI
//! works against the running cluster; a delivery node killed in the middle
//! of its deliveries loses nothing: another node takes them over.

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Dns, Redis};
use ferry_testkit::{Ferry, SENDER, TENANT, USER};
use std::collections::BTreeSet;

const SESSIONS_PER_NODE: usize = 4;
const MESSAGES_PER_SESSION: usize = 5;

/// One session of `MESSAGES_PER_SESSION` messages; the queue ids acknowledged.
fn send_session(node: &Ferry, password: &str, session: usize) -> Vec<String> {
    let mut smtp = Smtp::submission(node.submission.expect("submission"), &node.pki.ca_der);
    assert!(smtp.auth_plain(USER, password).starts_with("235"));
    (0..MESSAGES_PER_SESSION)
        .map(|i| {
            let content = format!("From: {SENDER}\r\nSubject: s{session} m{i}\r\n\r\nbody\r\n");
            let reply = smtp.send_message(SENDER, &["r@example.net"], content.as_bytes());
            assert!(reply.starts_with("250 2.0.0"), "{reply}");
            reply.trim_end().rsplit(' ').next().expect("queue id").to_string()
        })
        .collect()
}

#[test]
fn two_ingress_nodes_and_a_delivery_node_share_one_queue_and_one_ledger() {
    let redis = Redis::start();
    let url = redis.url();
    let settings = [
        ("store.backend", "redis"),
        ("store.redis.url", url.as_str()),
        ("store.redis.key_prefix", "cluster-test"),
        ("alerts.yearly_percent", "80"),
    ];
    let mut first = Ferry::prepare(&settings);
    first.cli_ok(&["tenant", "allocate", TENANT, "--yearly", "40"]);
    first.launch_as("ingress");
    let mut second = Ferry::node(&settings);
    second.launch_as("ingress");
    let mut delivery = Ferry::node(&settings);
    delivery.launch_as("delivery");
    assert!(delivery.submission.is_none(), "a delivery node does not listen");

    let password = first.password.clone();
    let acked: Vec<String> = std::thread::scope(|scope| {
        let sessions: Vec<_> = (0..2 * SESSIONS_PER_NODE)
            .map(|s| {
                let node = if s % 2 == 0 { &first } else { &second };
                let password = &password;
                scope.spawn(move || send_session(node, password, s))
            })
            .collect();
        sessions.into_iter().flat_map(|s| s.join().expect("session")).collect()
    });
    let total = 2 * SESSIONS_PER_NODE * MESSAGES_PER_SESSION;
    let acked: BTreeSet<String> = acked.into_iter().collect();
    assert_eq!(acked.len(), total, "every queue id is unique");

    let captured = delivery.wait_captured(total);
    let delivered: BTreeSet<String> = captured.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        delivered, acked,
        "the delivery node delivered exactly what both ingress nodes accepted"
    );

    // The ledger is the cluster's, read by the CLI while every node runs.
    let report: serde_json::Value =
        serde_json::from_str(&second.cli_ok(&["report", "usage", "--format", "json"])).expect("report json");
    assert_eq!(report["organisation"]["usage"]["messages"], total);
    assert_eq!(report["tenants"][0]["usage"]["messages"], total);
    let alerts = first.cli_ok(&["report", "alerts"]);
    assert_eq!(
        alerts.matches("yearly:t:acme:80:").count(),
        1,
        "one alert for the threshold both nodes raced across: {alerts}"
    );
    assert!(alerts.contains("(32 of 32)"), "{alerts}");
    let queue = second.cli_ok(&["queue", "list"]);
    assert!(
        !queue.contains(acked.first().expect("one")),
        "delivered messages left the queue: {queue}"
    );
    for node in [&mut first, &mut second, &mut delivery] {
        assert!(node.stop().success());
    }
}

/// With the default lease (15 s, renewed every 5 s), a node killed with -9
/// leaves its messages due again within 15 s.
#[test]
fn a_delivery_node_killed_mid_delivery_loses_nothing() {
    let redis = Redis::start();
    let url = redis.url();
    let store = [("store.backend", "redis"), ("store.redis.url", url.as_str())];
    let mut ingress = Ferry::prepare(&store);
    ingress.launch_as("ingress");
    let acked: BTreeSet<String> = send_session(&ingress, &ingress.password.clone(), 0)
        .into_iter()
        .collect();

    // The doomed node delivers by MX to a host that accepts the connection
    // and never greets: it holds every message's lease when it is killed.
    let stall = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stall_port = stall.local_addr().expect("addr").port().to_string();
    let dns = Dns::start(&[
        "--mx-host=example.net,mx.example.net,10".into(),
        "--host-record=mx.example.net,127.0.0.1".into(),
    ]);
    let resolver = dns.address();
    let mut doomed = Ferry::node(&store);
    doomed.set(&[
        ("delivery.default_route", "mx"),
        ("delivery.resolver", &resolver),
        ("delivery.port", &stall_port),
    ]);
    doomed.launch_as("delivery");
    // It took every due message in one lease before it connected.
    let held = stall.accept().expect("the doomed node connects");
    doomed.kill9();
    let killed = std::time::Instant::now();
    drop(held);

    let mut survivor = Ferry::node(&store);
    survivor.launch_as("delivery");
    let captured = survivor.wait_captured_within(acked.len(), std::time::Duration::from_secs(40));
    eprintln!("the survivor had every message {:?} after the kill", killed.elapsed());
    let captured_len = captured.len();
    let delivered: BTreeSet<String> = captured.into_iter().map(|(id, _)| id).collect();
    assert_eq!(delivered, acked, "the survivor delivered what the dead node held");
    assert_eq!(captured_len, acked.len(), "each message once");
    assert!(doomed.captured().is_empty(), "the doomed node delivered nothing itself");
    assert!(survivor.stop().success());
}

#[test]
fn while_redis_is_down_clients_are_told_to_retry_and_nothing_is_lost() {
    let mut redis = Redis::start();
    let url = redis.url();
    let mut ingress = Ferry::prepare(&[("store.backend", "redis"), ("store.redis.url", url.as_str())]);
    ingress.launch_as("all");
    let mut smtp = Smtp::submission(ingress.submission.expect("submission"), &ingress.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ingress.password.clone()).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: outage\r\n\r\nbody\r\n");
    let first = smtp.send_message(SENDER, &["r@example.net"], content.as_bytes());
    assert!(first.starts_with("250 2.0.0"), "{first}");

    redis.kill();
    let refused = smtp.send_message(SENDER, &["r@example.net"], content.as_bytes());
    assert!(
        refused.starts_with("451 4.3.0"),
        "a store outage is a temporary failure: {refused}"
    );
    smtp.cmd("RSET");

    redis.restart_after_kill();
    let again = send_until_accepted(&mut smtp, content.as_bytes());
    assert!(again.starts_with("250 2.0.0"), "{again}");
    let captured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ingress.wait_captured(2)));
    let log = ingress.log_text();
    let captured = captured.unwrap_or_else(|_| panic!("log:\n{log}"));
    assert_eq!(
        captured.len(),
        2,
        "both acknowledged messages, and only those, were delivered"
    );
}

/// Sends until the relay's store connection is back (each refusal is a 451).
fn send_until_accepted(smtp: &mut Smtp, content: &[u8]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reply = smtp.send_message(SENDER, &["r@example.net"], content);
        if reply.starts_with("250") || std::time::Instant::now() > deadline {
            return reply;
        }
        assert!(reply.starts_with("451 4.3.0"), "{reply}");
        smtp.cmd("RSET");
    }
}

/// Two nodes of a cluster started at the same moment on one shared data
/// directory, with no certificate configured: both make the development
/// certificate at once, one pair wins, and both start and serve it (their
/// TLS handshakes verify against the one certificate on disk); the local
/// CLI's files are whole.
#[test]
fn two_nodes_started_together_on_one_data_dir_both_start() {
    use base64::Engine;
    let redis = Redis::start();
    let url = redis.url();
    let shared = tempfile::tempdir().expect("shared data dir");
    let data = shared.path().join("data").display().to_string();
    let settings = [
        ("store.backend", "redis"),
        ("store.redis.url", url.as_str()),
        ("store.redis.key_prefix", "shared-dir"),
        ("server.data_dir", data.as_str()),
        ("admin.listen", "127.0.0.1:0"),
    ];
    let mut nodes: Vec<Ferry> = (0..2).map(|_| Ferry::node(&settings)).collect();
    for node in &nodes {
        // No tls.* keys: each node makes the development certificate itself.
        let config = std::fs::read_to_string(node.config_path()).expect("config");
        let config: String = config
            .lines()
            .filter(|l| !l.starts_with("certificate") && !l.starts_with("key"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(node.config_path(), config).expect("write config");
    }
    std::thread::scope(|s| {
        for node in nodes.iter_mut() {
            s.spawn(move || node.launch_as("ingress"));
        }
    });
    let pem = std::fs::read_to_string(shared.path().join("data/tls/dev-certificate.pem")).expect("the certificate");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("PEM");
    for node in &nodes {
        let (_, greeting) = Smtp::connect_tls(node.submissions.expect("465"), &der);
        assert!(greeting.starts_with("220"), "{greeting}");
    }
    let token = std::fs::read_to_string(shared.path().join("data/admin-token")).expect("the CLI's token");
    assert!(token.starts_with("ferry_"), "a whole token: {token:?}");
    let leftovers: Vec<_> = std::fs::read_dir(shared.path().join("data/tls"))
        .expect("tls dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for node in nodes.iter_mut() {
        assert!(node.stop().success());
    }
}
