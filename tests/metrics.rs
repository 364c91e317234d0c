//! `/metrics` read by Prometheus's own parser (`prometheus_client`): each
//! refusal moves the counter of its own reason, under the same reason
//! names as the per-application report, sign-in refusals included; and the
//! gauges a platform team alerts on are there with the right values.

use std::io::Write;
use std::process::{Command, Stdio};

use ferry_testkit::client::Smtp;
use ferry_testkit::{Ferry, SENDER, TENANT, USER};
use serde_json::Value;

/// Every sample of the node's `/metrics`, as the parser saw it.
fn samples(ferry: &Ferry) -> Vec<Value> {
    let (status, text) = ferry.admin_get("/metrics");
    assert_eq!(status, 200);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/metrics.py");
    let mut parser = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    parser
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = parser.wait_with_output().expect("parse");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition:\n{text}"
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("json")
}

fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn each_refusal_moves_its_own_counter_and_the_gauges_tell_the_queue() {
    let mut ferry = Ferry::prepare(&[("admin.listen", "127.0.0.1:0")]);
    ferry.cli_ok(&["tenant", "allocate", TENANT, "--yearly", "40"]);
    ferry.launch_as("ingress");
    let submission = ferry.submission.expect("submission");
    let login = |user: &str, password: &str| {
        let mut smtp = Smtp::submission(submission, &ferry.pki.ca_der);
        let reply = smtp.auth_plain(user, password);
        (smtp, reply)
    };
    assert!(login(USER, "wrong").1.starts_with("535"));
    assert!(login("nobody-here", "wrong").1.starts_with("535"));
    let (mut smtp, reply) = login(USER, &ferry.password);
    assert!(reply.starts_with("235"), "{reply}");
    assert!(smtp.cmd("MAIL FROM:<ceo@acme.test>").starts_with("550"));
    assert!(
        smtp.cmd("MAIL FROM:<billing@acme.test> SIZE=50000001")
            .starts_with("552")
    );
    let spoof = b"From: ceo@acme.test\r\nSubject: s\r\n\r\nbody\r\n";
    assert!(smtp.send_message(SENDER, &["r@example.net"], spoof).starts_with("550"));
    for i in 0..4 {
        let fine = format!("From: {SENDER}\r\nSubject: m{i}\r\n\r\nbody\r\n");
        assert!(
            smtp.send_message(SENDER, &["r@example.net"], fine.as_bytes())
                .starts_with("250")
        );
    }

    let expected = [
        ("auth_failed", TENANT, 1.0),
        ("auth_failed", "", 1.0),
        ("sender_not_authorised", TENANT, 1.0),
        ("size", TENANT, 1.0),
        ("header_from_not_authorised", TENANT, 1.0),
    ];
    let all = ferry_testkit::wait_for(
        "the sign-in refusals counted",
        std::time::Duration::from_secs(10),
        || {
            let all = samples(&ferry);
            let counted = value(
                &all,
                "ferry_messages_refused_total",
                &[("reason", "auth_failed"), ("tenant", "")],
            );
            counted.is_some().then_some(all)
        },
    );
    for (reason, tenant, n) in expected {
        let labels = [("reason", reason), ("tenant", tenant)];
        assert_eq!(
            value(&all, "ferry_messages_refused_total", &labels),
            Some(n),
            "{reason} under {tenant:?}"
        );
    }
    // An ingress node does not deliver: all four wait, due now.
    assert_eq!(value(&all, "ferry_store_up", &[]), Some(1.0));
    assert_eq!(value(&all, "ferry_queue_messages", &[]), Some(4.0));
    assert_eq!(value(&all, "ferry_queue_due_messages", &[]), Some(4.0));
    assert!(value(&all, "ferry_queue_oldest_due_seconds", &[]).is_some_and(|s| s >= 0.0));
    assert_eq!(value(&all, "ferry_store_write_seconds_count", &[]), Some(4.0));
    assert_eq!(
        value(&all, "ferry_tenant_allocation_used_ratio", &[("tenant", TENANT)]),
        Some(0.1),
        "4 of 40 messages"
    );
    assert!(ferry.stop().success());
}
