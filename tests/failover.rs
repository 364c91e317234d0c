//! Redis failover under load: a primary with two replicas and three
//! Sentinels, an ingress node and a delivery node that find the primary
//! through the Sentinels, `wait_replicas = 1`, and clients sending all the
//! while. The primary is killed with -9: clients see 451s, then 250s again
//! once a replica is promoted, without any node restarting; every message
//! answered 250 reaches the receiving server exactly once, and the usage
//! count is the number of messages delivered.
//!
//! A message answered 451 because the primary died between its write and
//! the replica's confirmation may still be delivered (the duplicate that
//! RFC 5321 §4.5.4.1 tells clients to expect when a reply is lost); the
//! test allows it only for messages that were not answered 250.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Dns, Redis, Sentinels, Sink, SinkOptions, free_port};
use ferry_testkit::{Ferry, SENDER, USER, wait_for};

const SENDERS: usize = 2;
/// Bounds each sender: the test stops them long before.
const MAX_ATTEMPTS: usize = 2_000;

/// One message on its own session; the final reply ("" when the session broke).
fn send_one(node: &Ferry, password: &str, subject: &str) -> String {
    let addr = node.submission.expect("submission");
    let mut smtp = Smtp::submission(addr, &node.pki.ca_der);
    let reply = smtp.auth_plain(USER, password);
    if !reply.starts_with("235") {
        return reply;
    }
    let content = format!("From: {SENDER}\r\nTo: r@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n");
    let reply = smtp.send_message(SENDER, &["r@example.net"], content.as_bytes());
    let _ = smtp.cmd("QUIT");
    reply
}

fn code(reply: &str) -> &str {
    reply.get(..3).unwrap_or("")
}

#[test]
fn a_killed_redis_primary_is_replaced_and_nothing_acknowledged_is_lost() {
    let mut primary = Redis::start();
    let _replicas = [Redis::replica_of(&primary), Redis::replica_of(&primary)];
    primary.wait_for_replicas(2);
    let sentinels = Sentinels::watch(&primary);
    let dns = Dns::start(&[
        "--mx-host=example.net,mx.example.net,10".into(),
        "--host-record=mx.example.net,127.0.0.2".into(),
    ]);
    let port = free_port(&["127.0.0.2"]);
    let sink = Sink::start(&[format!("127.0.0.2:{port}")], SinkOptions::default());
    let (addresses, resolver, port) = (sentinels.addresses(), dns.address(), port.to_string());
    let settings = [
        ("store.backend", "redis"),
        // The Sentinels name the host; the URL gives the scheme and database.
        ("store.redis.url", "redis://sentinel-named:6379/"),
        ("store.redis.sentinels", addresses.as_str()),
        ("store.redis.master_name", "ferry"),
        ("store.redis.wait_replicas", "1"),
        ("store.redis.wait_timeout_ms", "1000"),
        ("delivery.default_route", "mx"),
        ("delivery.resolver", resolver.as_str()),
        ("delivery.port", port.as_str()),
        ("delivery.retry_base_secs", "1"),
        ("delivery.retry_max_interval_secs", "2"),
    ];
    let mut ingress = Ferry::prepare(&settings);
    ingress.launch_as("ingress");
    let mut delivery = Ferry::node(&settings);
    delivery.launch_as("delivery");

    let replies: Mutex<BTreeMap<String, String>> = Mutex::default();
    let stop = AtomicBool::new(false);
    let acked = || {
        replies
            .lock()
            .expect("lock")
            .values()
            .filter(|r| code(r) == "250")
            .count()
    };
    let resumed = std::thread::scope(|scope| {
        for s in 0..SENDERS {
            let (ingress, replies, stop) = (&ingress, &replies, &stop);
            scope.spawn(move || {
                for i in 0..MAX_ATTEMPTS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let subject = format!("m{s}-{i}");
                    let reply = send_one(ingress, &ingress.password, &subject);
                    replies.lock().expect("lock").insert(subject, reply);
                }
            });
        }
        wait_for("20 messages acknowledged", Duration::from_secs(60), || {
            (acked() >= 20).then_some(())
        });
        primary.kill();
        let killed_at = (Instant::now(), acked());
        wait_for("a refusal during the failover", Duration::from_secs(60), || {
            let refused = replies.lock().expect("lock").values().any(|r| r.starts_with('4'));
            refused.then_some(())
        });
        wait_for("acknowledged again after the failover", Duration::from_secs(90), || {
            (acked() > killed_at.1 + 1).then_some(())
        });
        let resumed = killed_at.0.elapsed();
        wait_for(
            "20 more acknowledged after the failover",
            Duration::from_secs(90),
            || (acked() >= killed_at.1 + 20).then_some(()),
        );
        stop.store(true, Ordering::Relaxed);
        resumed
    });
    let replies = replies.into_inner().expect("lock");
    let acked: Vec<&String> = replies
        .iter()
        .filter(|(_, r)| code(r) == "250")
        .map(|(s, _)| s)
        .collect();
    let refused = replies.values().filter(|r| code(r) == "451").count();
    let others: Vec<&String> = replies
        .values()
        .filter(|r| !["250", "451", "454"].contains(&code(r)))
        .collect();
    assert!(
        others.is_empty(),
        "only 250, 451 and 454 (sign-in unavailable): {others:?}"
    );

    let subjects_received = |sink: &Sink| -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for message in sink.received() {
            let data = message["data"].as_str().unwrap_or("");
            if let Some(subject) = data.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                *seen.entry(subject.trim().to_string()).or_insert(0) += 1;
            }
        }
        seen
    };
    wait_for("every acknowledged message delivered", Duration::from_secs(90), || {
        let seen = subjects_received(&sink);
        acked.iter().all(|s| seen.contains_key(*s)).then_some(())
    });
    // Messages answered 451 whose write the new primary has are queued
    // and counted too: every counted message is delivered.
    let counted = || -> usize {
        let report = delivery.cli_ok(&["report", "usage", "--format", "json"]);
        let report: serde_json::Value = serde_json::from_str(&report).expect("report json");
        report["organisation"]["usage"]["messages"].as_u64().unwrap_or(0) as usize
    };
    let received = wait_for("every counted message delivered", Duration::from_secs(90), || {
        let seen = subjects_received(&sink);
        (seen.len() >= counted()).then_some(seen)
    });
    assert!(received.len() >= acked.len());
    for (subject, times) in &received {
        assert_eq!(*times, 1, "{subject} delivered once");
        assert!(
            replies.get(subject).is_some_and(|r| ["250", "451"].contains(&code(r))),
            "{subject} was answered 250, or 451 after it was written"
        );
    }
    let count = counted();
    assert_eq!(
        count,
        received.len(),
        "the count is what was delivered; answered: {replies:?}; delivered: {received:?}"
    );
    eprintln!(
        "failover: {} sent, {} answered 250, {} answered 451, {} delivered; 250s resumed {:?} after the kill",
        replies.len(),
        acked.len(),
        refused,
        received.len(),
        resumed
    );
    for node in [&mut ingress, &mut delivery] {
        assert!(node.stop().success());
    }
}
