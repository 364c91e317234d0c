//! OpenTelemetry traces, received by a real OTLP/HTTP endpoint that decodes
//! them with the collector's own protobuf definitions
//! (`tests/servers/otlp_receiver.py`), the export turned on by the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME` variables: one
//! trace from the SMTP session through scanning (a real clamd), signing and
//! spooling, another for the delivery attempt to a real receiving server,
//! every span of the message naming its queue id; the JSON log line of the
//! message names the same trace and queue ids. Without those variables no
//! span is made and the log lines carry none; a collector that cannot be
//! reached is logged, and mail flows as before.

use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Clamd, Dns, OtlpReceiver, Sink, SinkOptions, free_port};
use ferry_testkit::{Ferry, SENDER, USER};
use serde_json::Value;

/// The spans of `name` in `spans` whose `queue_id` is `id`.
fn named<'a>(spans: &'a [Value], name: &str, id: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["name"] == name && s["attributes"]["queue_id"] == id)
        .collect()
}

fn one<'a>(spans: &'a [Value], name: &str, id: &str) -> &'a Value {
    let found = named(spans, name, id);
    assert_eq!(found.len(), 1, "one {name} for {id} in {spans:#?}");
    found[0]
}

fn send(ferry: &Ferry) -> String {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: traced\r\n\r\nbody\r\n");
    let reply = smtp.send_message(SENDER, &["someone@dest.test"], content.as_bytes());
    let id = reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("{reply}"))
        .trim()
        .to_string();
    assert!(smtp.cmd("QUIT").starts_with("221"));
    id
}

#[test]
fn one_trace_per_session_and_per_delivery_attempt_linked_by_the_queue_id() {
    let receiver = OtlpReceiver::start();
    let clamd = Clamd::start();
    let dns = Dns::start(&[
        "--mx-host=dest.test,mx1.dest.test,10".into(),
        "--host-record=mx1.dest.test,127.0.0.2".into(),
    ]);
    let port = free_port(&["127.0.0.2"]);
    let sink = Sink::start(&[format!("127.0.0.2:{port}")], SinkOptions::default());
    let (resolver, port) = (dns.address(), port.to_string());
    let mut ferry = Ferry::prepare(&[
        ("delivery.default_route", "mx"),
        ("delivery.resolver", &resolver),
        ("delivery.port", &port),
        ("hygiene.clamd", &clamd.address),
    ]);
    ferry.set_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
        ("OTEL_SERVICE_NAME", "ferry-under-test"),
    ]);
    ferry.launch();
    let id = send(&ferry);
    sink.wait_for_rcpt("someone@dest.test", 1);

    let spans = ferry_testkit::wait_for("the message's spans", Duration::from_secs(30), || {
        let spans = receiver.spans();
        let ingress = ["smtp.message", "hygiene.scan", "dkim.sign", "queue.spool"];
        let delivery = ["delivery.attempt", "delivery.group"];
        let all_there = ingress
            .iter()
            .chain(&delivery)
            .all(|n| !named(&spans, n, &id).is_empty())
            && spans.iter().any(|s| s["name"] == "smtp.session");
        all_there.then_some(spans)
    });
    let message = one(&spans, "smtp.message", &id);
    let trace = message["trace_id"].as_str().expect("trace id");
    let session = spans
        .iter()
        .find(|s| s["span_id"] == message["parent_span_id"])
        .expect("the message's parent");
    assert_eq!(session["name"], "smtp.session", "{session}");
    assert_eq!(session["parent_span_id"], "", "the session is the root: {session}");
    assert_eq!(session["attributes"]["tenant"], ferry_testkit::TENANT, "{session}");
    assert!(
        session["attributes"]["tls"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLS")),
        "{session}"
    );
    assert_eq!(message["attributes"]["result"], 250, "{message}");
    for step in ["hygiene.scan", "dkim.sign", "queue.spool"] {
        let span = one(&spans, step, &id);
        assert_eq!(span["trace_id"], trace, "{step} in the session's trace");
        assert_eq!(span["parent_span_id"], message["span_id"], "{step} under the message");
    }
    assert_eq!(one(&spans, "hygiene.scan", &id)["attributes"]["verdict"], "accept");

    let attempt = one(&spans, "delivery.attempt", &id);
    assert_ne!(attempt["trace_id"], trace, "a delivery attempt is a trace of its own");
    assert_eq!(attempt["parent_span_id"], "", "{attempt}");
    assert_eq!(attempt["attributes"]["attempt"], 1, "{attempt}");
    assert_eq!(attempt["attributes"]["delivered"], 1, "{attempt}");
    let group = one(&spans, "delivery.group", &id);
    assert_eq!(group["parent_span_id"], attempt["span_id"], "{group}");
    assert_eq!(group["attributes"]["destination"], "dest.test", "{group}");
    assert!(
        group["attributes"]["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("250")),
        "{group}"
    );
    for span in [message, attempt, group] {
        assert_eq!(span["resource"]["service.name"], "ferry-under-test", "{span}");
    }

    for span in spans
        .iter()
        .filter(|s| s["attributes"]["queue_id"] == id.as_str() || s["trace_id"] == trace)
    {
        eprintln!(
            "{} {:<16} span {} parent {:<16} {}",
            span["trace_id"].as_str().unwrap_or(""),
            span["name"].as_str().unwrap_or(""),
            span["span_id"].as_str().unwrap_or(""),
            span["parent_span_id"].as_str().unwrap_or(""),
            span["attributes"]
        );
    }
    // The log line of the message names its trace and its queue id.
    let line = ferry.wait_for_log("message", &id);
    let spans_of_line = line["spans"].as_array().expect("the spans of the log line");
    assert!(spans_of_line.iter().any(|s| s["trace_id"] == trace), "{line}");
    assert!(spans_of_line.iter().any(|s| s["queue_id"] == id.as_str()), "{line}");
    assert!(ferry.stop().success());
}

#[test]
fn without_an_endpoint_no_span_is_made() {
    let mut ferry = Ferry::start(&[]);
    let id = send(&ferry);
    ferry.wait_captured(1);
    let line = ferry.wait_for_log("message", &id);
    assert!(line.get("spans").is_none(), "no span context in the log: {line}");
    assert!(
        !ferry.log_text().contains("trace_id"),
        "no trace id anywhere in the log"
    );
    assert!(ferry.stop().success());
}

#[test]
fn an_unreachable_collector_is_logged_and_mail_still_flows() {
    let nobody = format!("http://127.0.0.1:{}", free_port(&["127.0.0.1"]));
    let mut ferry = Ferry::prepare(&[]);
    ferry.set_env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &nobody)]);
    ferry.launch();
    let id = send(&ferry);
    ferry.wait_captured(1);
    let failed = ferry_testkit::wait_for("the export failure in the log", Duration::from_secs(30), || {
        ferry
            .log_events()
            .into_iter()
            .find(|e| e["name"] == "BatchSpanProcessor.ExportError")
    });
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert!(failed.to_string().contains("/v1/traces"), "it names where: {failed}");
    ferry.wait_for_log("message", &id);
    assert!(ferry.stop().success());
}
