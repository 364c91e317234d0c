//! The actor tree from the outside: a stuck destination fills only its own
//! actor while another destination is served, its mail is retried and
//! nothing is lost, and idle destination actors stop; a node that is alive
//! and working keeps its leases while another node watches the queue; a
//! certificate replaced on disk is served without a restart; the admin
//! endpoint reports readiness.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Dns, Redis, Sink, SinkOptions, free_port};
use ferry_testkit::{Ferry, SENDER, USER, wait_for};

/// Sends one message per recipient over one session; the queue ids.
fn send_each(ferry: &Ferry, rcpts: &[String]) -> Vec<String> {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password.clone()).starts_with("235"));
    rcpts
        .iter()
        .map(|rcpt| {
            let content = format!("From: {SENDER}\r\nTo: {rcpt}\r\nSubject: to {rcpt}\r\n\r\nHello.\r\n");
            let reply = smtp.send_message(SENDER, &[rcpt], content.as_bytes());
            assert!(reply.starts_with("250 2.0.0"), "{reply}");
            reply.trim_end().rsplit(' ').next().expect("queue id").to_string()
        })
        .collect()
}

/// A mail server that accepts connections and never says a word.
struct Silent {
    accepted: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Silent {
    fn start(addr: &str) -> Silent {
        let listener = TcpListener::bind(addr).expect("bind the silent server");
        let addr = listener.local_addr().expect("addr");
        let accepted: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (held, stopping) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                // `stop` wakes this accept with a connection of its own.
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(stream) = stream {
                    held.lock().expect("lock").push(stream);
                }
            }
        });
        Silent { accepted, stop, addr }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().expect("lock").len()
    }

    /// Closes the listener and every connection it holds.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        wait_for(
            "the silent server to let go of its port",
            Duration::from_secs(5),
            || TcpListener::bind(self.addr).ok(),
        );
        self.accepted.lock().expect("lock").clear();
    }
}

#[test]
fn a_stuck_destination_holds_up_no_other_and_loses_nothing() {
    let dns = Dns::start(&[
        "--mx-host=stuck.test,mx.stuck.test,10".into(),
        "--host-record=mx.stuck.test,127.0.0.7".into(),
        "--mx-host=healthy.test,mx.healthy.test,10".into(),
        "--host-record=mx.healthy.test,127.0.0.8".into(),
    ]);
    let port = free_port(&["127.0.0.7", "127.0.0.8"]);
    let silent = Silent::start(&format!("127.0.0.7:{port}"));
    let healthy = Sink::start(&[format!("127.0.0.8:{port}")], SinkOptions::default());
    let (resolver, port_text) = (dns.address(), port.to_string());
    let mut ferry = Ferry::prepare(&[
        ("admin.listen", "127.0.0.1:0"),
        ("delivery.default_route", "mx"),
        ("delivery.resolver", &resolver),
        ("delivery.port", &port_text),
        // Eight messages held at once, four of them at most for one
        // destination, two connections each.
        ("delivery.concurrency", "8"),
        ("delivery.max_connections_per_destination", "2"),
        ("delivery.command_timeout_secs", "2"),
        ("delivery.connect_timeout_secs", "2"),
        ("delivery.retry_base_secs", "1"),
        ("delivery.retry_max_interval_secs", "2"),
        ("delivery.destination_backoff_secs", "1"),
        ("delivery.idle_connection_secs", "1"),
    ]);
    ferry.launch();

    let stuck_rcpts: Vec<String> = (0..6).map(|i| format!("s{i}@stuck.test")).collect();
    let healthy_rcpts: Vec<String> = (0..4).map(|i| format!("h{i}@healthy.test")).collect();
    let stuck_ids = send_each(&ferry, &stuck_rcpts);
    wait_for(
        "the stuck destination to hold connections",
        Duration::from_secs(10),
        || (silent.connections() > 0).then_some(()),
    );
    send_each(&ferry, &healthy_rcpts);
    for rcpt in &healthy_rcpts {
        healthy.wait_for_rcpt(rcpt, 1);
    }
    assert!(
        silent.connections() <= 2,
        "the stuck destination never had more than its two connections: {}",
        silent.connections()
    );
    assert!(
        ferry.captured().is_empty() && stuck_ids.len() == stuck_rcpts.len(),
        "nothing went anywhere else"
    );
    wait_for(
        "the stuck attempts to time out and be deferred",
        Duration::from_secs(20),
        || (ferry.metric("ferry_delivery_attempts_total{result=\"deferred\"}") >= 1.0).then_some(()),
    );

    // The destination comes back: everything it was sent arrives, once.
    silent.stop();
    let revived = Sink::start(&[format!("127.0.0.7:{port}")], SinkOptions::default());
    for rcpt in &stuck_rcpts {
        let got = revived.wait_for_rcpt(rcpt, 1);
        assert_eq!(got.len(), 1, "{rcpt} delivered once");
    }
    for rcpt in &healthy_rcpts {
        assert_eq!(healthy.received_for(rcpt).len(), 1, "{rcpt} delivered once");
    }

    // With nothing left to do, the destination actors stop.
    wait_for("idle destination actors to stop", Duration::from_secs(20), || {
        (ferry.metric("ferry_delivery_destinations") == 0.0).then_some(())
    });
    assert!(ferry.stop().success());
}

#[test]
fn a_node_alive_and_working_keeps_its_leases() {
    let redis = Redis::start();
    let url = redis.url();
    // Two-second leases, and a next hop that takes five seconds to answer
    // DATA: only renewal keeps the watching node off these messages.
    let store = [
        ("store.backend", "redis"),
        ("store.redis.url", url.as_str()),
        ("delivery.lease_secs", "2"),
    ];
    let mut ingress = Ferry::prepare(&store);
    ingress.launch_as("ingress");
    let rcpts: Vec<String> = (0..4).map(|i| format!("r{i}@slow.test")).collect();
    let dns = Dns::start(&[
        "--mx-host=slow.test,mx.slow.test,10".into(),
        "--host-record=mx.slow.test,127.0.0.1".into(),
    ]);
    let port = free_port(&["127.0.0.1"]);
    let sink = Sink::start(
        &[format!("127.0.0.1:{port}")],
        SinkOptions {
            slow: rcpts.clone(),
            slow_seconds: Some(5.0),
            ..SinkOptions::default()
        },
    );
    let (resolver, port_text) = (dns.address(), port.to_string());
    let mut working = Ferry::node(&store);
    working.set(&[
        ("delivery.default_route", "mx"),
        ("delivery.resolver", &resolver),
        ("delivery.port", &port_text),
    ]);
    working.launch_as("delivery");
    let acked: BTreeSet<String> = send_each(&ingress, &rcpts).into_iter().collect();
    for rcpt in &rcpts {
        sink.wait_for_rcpt(rcpt, 1);
    }
    // The watcher (capture route) starts while every message is mid-DATA.
    let mut watcher = Ferry::node(&store);
    watcher.launch_as("delivery");
    wait_for("the working node to finish", Duration::from_secs(30), || {
        let queue = ingress.cli_ok(&["queue", "list"]);
        acked.iter().all(|id| !queue.contains(id.as_str())).then_some(())
    });
    assert!(
        watcher.captured().is_empty(),
        "the watching node took nothing from a node that was alive and working"
    );
    for rcpt in &rcpts {
        assert_eq!(sink.received_for(rcpt).len(), 1, "{rcpt} delivered once");
    }
    for node in [&mut ingress, &mut working, &mut watcher] {
        assert!(node.stop().success());
    }
}

#[test]
fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
    let mut ferry = Ferry::prepare(&[("server.reload_secs", "1")]);
    ferry.launch();
    let addr = ferry.submissions.expect("submissions");
    let (_, greeting) = Smtp::connect_tls(addr, &ferry.pki.ca_der);
    assert!(greeting.starts_with("220 "), "{greeting}");

    // A new certificate from another CA, written over the files in use.
    let other = tempfile::tempdir().expect("tempdir");
    let renewed = ferry_testkit::pki::TestPki::create(other.path());
    assert!(
        Smtp::try_connect_tls(addr, &renewed.ca_der).is_err(),
        "the new CA does not vouch for the certificate served now"
    );
    std::fs::copy(&renewed.key, &ferry.pki.key).expect("replace key");
    std::fs::copy(&renewed.cert, &ferry.pki.cert).expect("replace certificate");
    let (mut smtp, greeting) = wait_for("the new certificate to be served", Duration::from_secs(15), || {
        Smtp::try_connect_tls(addr, &renewed.ca_der).ok()
    });
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(smtp.cmd("EHLO client.test").starts_with("250"));
    ferry.wait_for_log("TLS certificate reloaded", "cert.pem");
    assert!(ferry.stop().success());
}

#[test]
fn readiness_and_liveness_report_the_tree() {
    let mut ferry = Ferry::start(&[("admin.listen", "127.0.0.1:0")]);
    assert_eq!(ferry.admin_get("/livez"), (200, "ok\n".to_string()));
    assert_eq!(ferry.admin_get("/readyz"), (200, "ok\n".to_string()));
    assert_eq!(ferry.admin_get("/health").0, 200);
    assert!(ferry.stop().success());
}

#[test]
fn a_dkim_key_activated_on_another_node_signs_the_next_message() {
    let redis = Redis::start();
    let url = redis.url();
    let mut node = Ferry::prepare(&[
        ("store.backend", "redis"),
        ("store.redis.url", url.as_str()),
        ("server.reload_secs", "1"),
    ]);
    node.launch();
    send_each(&node, &["first@example.net".to_string()]);
    let first = node.wait_captured(1);
    assert!(
        !String::from_utf8_lossy(&first[0].1).contains("DKIM-Signature"),
        "no key, no signature"
    );
    // The CLI writes to the shared store while the node runs.
    node.cli_ok(&[
        "dkim",
        "generate",
        "acme.test",
        "--selector",
        "live1",
        "--algorithm",
        "ed25519",
    ]);
    node.wait_for_log("DKIM signing keys", "live1");
    send_each(&node, &["second@example.net".to_string()]);
    let both = node.wait_captured(2);
    let signed = both
        .iter()
        .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
        .find(|m| m.contains("second@example.net"))
        .expect("the second message");
    assert!(
        signed.contains("DKIM-Signature:") && signed.contains("s=live1") && signed.contains("d=acme.test"),
        "the new key signs the next message:\n{signed}"
    );
    assert!(node.stop().success());
}

#[test]
fn a_drain_lets_a_transaction_in_data_finish_and_exits_zero() {
    let mut ferry = Ferry::start(&[("admin.listen", "127.0.0.1:0")]);
    let submission = ferry.submission.expect("submission");
    let mut smtp = Smtp::submission(submission, &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password.clone()).starts_with("235"));
    assert!(smtp.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<r@example.net>").starts_with("250"));
    assert!(smtp.cmd("DATA").starts_with("354"));
    smtp.send(format!("From: {SENDER}\r\nSubject: mid-drain\r\n\r\nfirst half\r\n").as_bytes());

    ferry.terminate();
    wait_for("/readyz to turn unready", Duration::from_secs(10), || {
        let (status, body) = ferry.admin_get("/readyz");
        (status == 503 && body.contains("draining")).then_some(())
    });
    wait_for("the listeners to close", Duration::from_secs(10), || {
        TcpStream::connect(submission).is_err().then_some(())
    });
    smtp.send(b"second half\r\n.\r\n");
    let reply = smtp.read_reply();
    assert!(
        reply.starts_with("250 2.0.0"),
        "the transaction in progress finishes: {reply}"
    );
    let bye = smtp.cmd("QUIT");
    assert!(bye.starts_with("221") || bye.starts_with("421"), "{bye}");
    assert!(ferry.stop().success(), "a drained relay exits 0");
    // Acknowledged during the drain: delivered already, or safe in the
    // queue for the next start (delivery may have stopped taking mail).
    let id = reply.trim_end().rsplit(' ').next().expect("queue id").to_string();
    let delivered = ferry.captured().iter().any(|(captured, _)| *captured == id);
    let queued = ferry.cli_ok(&["queue", "list"]).contains(&id);
    assert!(
        delivered ^ queued,
        "the message acknowledged during the drain is kept exactly once (delivered {delivered}, queued {queued})"
    );
}
