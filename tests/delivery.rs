//! Delivery to real receiving servers found through a real DNS server:
//! MX preference and fallback, STARTTLS, retries, DSNs, crash safety and
//! connection reuse.

use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Dns, Sink, SinkOptions, free_port};
use ferry_testkit::{Ferry, SENDER, USER, wait_for};
use mail_parser::MimeHeaders;

/// DNS, two receiving servers and a relay delivering by MX.
struct World {
    ferry: Ferry,
    tls_sink: Sink,
    plain_sink: Sink,
    /// 127.0.0.5, MX of old.test: offers neither 8BITMIME nor SMTPUTF8.
    seven_bit_sink: Sink,
    port: u16,
    _dns: Dns,
}

fn records() -> Vec<String> {
    [
        "--mx-host=dest.test,mx1.dest.test,10",
        "--mx-host=dest.test,mx2.dest.test,20",
        "--host-record=mx1.dest.test,127.0.0.2",
        "--host-record=mx2.dest.test,127.0.0.3",
        "--mx-host=fall.test,dead.fall.test,10",
        "--mx-host=fall.test,mx2.dest.test,20",
        "--host-record=dead.fall.test,127.0.0.9",
        "--mx-host=acme.test,mx1.dest.test,10",
        "--mx-host=d1.test,mx1.dest.test,10",
        "--mx-host=d2.test,mx1.dest.test,10",
        "--mx-host=d3.test,mx1.dest.test,10",
        "--mx-host=plain.test,mx.plain.test,10",
        "--host-record=mx.plain.test,127.0.0.4",
        "--host-record=amx.test,127.0.0.3",
        "--mx-host=old.test,mx.old.test,10",
        "--host-record=mx.old.test,127.0.0.5",
        // A null MX (RFC 7505): preference 0, exchange ".".
        "--dns-rr=nullmx.test,15,000000",
    ]
    .map(String::from)
    .to_vec()
}

impl World {
    fn start(settings: &[(&str, &str)]) -> World {
        let dns = Dns::start(&records());
        let port = free_port(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]);
        let mut ferry = Ferry::prepare(&[]);
        let tls_sink = Sink::start(
            &[format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")],
            SinkOptions {
                tls: Some((&ferry.pki.cert, &ferry.pki.key)),
                replies: vec![
                    "temp@dest.test=451 4.2.1 mailbox busy, try later:1".into(),
                    "perm@dest.test=550 5.1.1 no such user".into(),
                    "noreply@acme.test=550 5.1.1 nobody reads this".into(),
                ],
                slow: vec!["slow@d3.test".into()],
                ..SinkOptions::default()
            },
        );
        let plain_sink = Sink::start(&[format!("127.0.0.4:{port}")], SinkOptions::default());
        let seven_bit_sink = Sink::start(
            &[format!("127.0.0.5:{port}")],
            SinkOptions {
                seven_bit: true,
                ..SinkOptions::default()
            },
        );
        let (resolver, port_text, ca) = (dns.address(), port.to_string(), ferry.pki.ca.display().to_string());
        let mut all: Vec<(&str, &str)> = vec![
            ("delivery.default_route", "mx"),
            ("delivery.resolver", &resolver),
            ("delivery.port", &port_text),
            ("delivery.extra_ca_files", &ca),
            ("delivery.tls_required_domains", "plain.test"),
            ("delivery.retry_base_secs", "1"),
            ("delivery.retry_max_interval_secs", "2"),
            ("delivery.connect_timeout_secs", "3"),
        ];
        all.extend_from_slice(settings);
        ferry.set(&all);
        ferry.launch();
        World {
            ferry,
            tls_sink,
            plain_sink,
            seven_bit_sink,
            port,
            _dns: dns,
        }
    }

    fn send(&self, user: &str, password: &str, from: &str, rcpts: &[&str], subject: &str) -> String {
        let mut smtp = Smtp::submission(self.ferry.submission.expect("submission"), &self.ferry.pki.ca_der);
        assert!(smtp.auth_plain(user, password).starts_with("235"));
        let content = format!(
            "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\n\r\nHello.\r\n",
            rcpts.join(", ")
        );
        let reply = smtp.send_message(from, rcpts, content.as_bytes());
        assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
        reply.trim_end().rsplit(' ').next().expect("queue id").to_string()
    }

    fn send_billing(&self, rcpts: &[&str], subject: &str) -> String {
        self.send(USER, &self.ferry.password.clone(), SENDER, rcpts, subject)
    }
}

#[test]
fn lowest_preference_mx_fallback_a_record_and_starttls() {
    let w = World::start(&[]);
    w.send_billing(&["a@dest.test", "b@fall.test", "c@amx.test"], "routing");
    let a = w.tls_sink.wait_for_rcpt("a@dest.test", 1);
    assert!(
        a[0]["listen"].as_str().unwrap_or("").starts_with("127.0.0.2:"),
        "lowest preference first: {a:?}"
    );
    let b = w.tls_sink.wait_for_rcpt("b@fall.test", 1);
    assert!(
        b[0]["listen"].as_str().unwrap_or("").starts_with("127.0.0.3:"),
        "fallback to the next MX: {b:?}"
    );
    let c = w.tls_sink.wait_for_rcpt("c@amx.test", 1);
    assert!(
        c[0]["listen"].as_str().unwrap_or("").starts_with("127.0.0.3:"),
        "A record without MX: {c:?}"
    );
    for m in [&a[0], &b[0], &c[0]] {
        assert_eq!(m["tls"], true, "STARTTLS used when offered: {m}");
        assert_eq!(m["mail_from"], SENDER);
        assert!(m["data"].as_str().unwrap_or("").contains("Subject: routing"));
    }
}

#[test]
fn required_tls_refuses_a_peer_without_starttls_and_the_queue_says_why() {
    let mut w = World::start(&[]);
    let id = w.send_billing(&["x@plain.test"], "needs tls");
    let event = w.ferry.wait_for_log("delivery", &id);
    assert!(
        event["reply"]
            .as_str()
            .unwrap_or("")
            .contains("does not offer STARTTLS"),
        "{event}"
    );
    assert_eq!(event["pending"], 1);
    assert!(w.plain_sink.received().is_empty());
    assert_eq!(w.ferry.stop().code(), Some(0));
    let shown = w.ferry.cli_ok(&["queue", "show", &id]);
    assert!(
        shown.contains("<x@plain.test> pending") && shown.contains("does not offer STARTTLS"),
        "{shown}"
    );
    assert!(w.ferry.cli_ok(&["queue", "list"]).contains(&id));
    w.ferry.cli_ok(&["queue", "retry", &id]);
    w.ferry.cli_ok(&["queue", "delete", &id]);
    let listed = w.ferry.cli_ok(&["queue", "list"]);
    assert!(!listed.contains(&id), "{listed}");
}

#[test]
fn a_temporary_failure_is_retried_until_delivered_once() {
    let w = World::start(&[]);
    let id = w.send_billing(&["temp@dest.test"], "retry me");
    let got = w.tls_sink.wait_for_rcpt("temp@dest.test", 1);
    assert_eq!(got.len(), 1);
    wait_for("the message to be done", Duration::from_secs(20), || {
        w.ferry
            .log_events()
            .iter()
            .any(|e| e["message"] == "delivery" && e["queue_id"] == id.as_str() && e["next"] == "Done")
            .then_some(())
    });
    let attempts: Vec<_> = w
        .ferry
        .log_events()
        .into_iter()
        .filter(|e| e["message"] == "delivery" && e["queue_id"] == id.as_str())
        .collect();
    assert!(attempts.len() >= 2, "one deferral, then delivery: {attempts:?}");
    assert!(attempts[0]["reply"].as_str().unwrap_or("").contains("451 4.2.1"));
    assert_eq!(w.tls_sink.received_for("temp@dest.test").len(), 1);
}

#[test]
fn permanent_failures_bounce_once_as_a_multipart_report() {
    let w = World::start(&[]);
    let id = w.send_billing(
        &["perm@dest.test", "ok@dest.test", "x@nullmx.test", "y@nx.test"],
        "bounce me",
    );
    w.tls_sink.wait_for_rcpt("ok@dest.test", 1);
    let dsn = w.tls_sink.wait_for_rcpt(SENDER, 1);
    assert_eq!(dsn[0]["mail_from"], "<>", "a DSN has the null sender");
    let data = dsn[0]["data"].as_str().expect("data");
    let parsed = mail_parser::MessageParser::default()
        .parse(data.as_bytes())
        .expect("a parsable DSN");
    let ct = parsed.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert!(data.contains(&format!("X-Ferry-Queue-ID: {id}")));
    assert!(
        data.contains("Final-Recipient: rfc822; perm@dest.test\r\nAction: failed\r\nStatus: 5.1.1"),
        "{data}"
    );
    assert!(
        data.contains("Final-Recipient: rfc822; x@nullmx.test\r\nAction: failed\r\nStatus: 5.1.2"),
        "{data}"
    );
    assert!(data.contains("Final-Recipient: rfc822; y@nx.test"), "{data}");
    assert!(!data.contains("Final-Recipient: rfc822; ok@dest.test"));
    assert!(data.contains("Subject: bounce me"));
    // Exactly one: the queue empties and no second DSN arrives.
    wait_for("the bounce to be delivered", Duration::from_secs(20), || {
        w.ferry
            .log_events()
            .iter()
            .any(|e| {
                e["message"] == "delivery"
                    && e["delivered"] == 1
                    && e["failed"] == 0
                    && e["next"] == "Done"
                    && e["queue_id"] != id.as_str()
            })
            .then_some(())
    });
    assert_eq!(w.tls_sink.received_for(SENDER).len(), 1);
}

#[test]
fn a_failed_bounce_is_never_bounced() {
    let mut w = World::start(&[]);
    w.ferry.stop();
    let password = w
        .ferry
        .add_app("noreply", &["--from", "noreply@acme.test", "--allow", "127.0.0.1"]);
    w.ferry.launch();
    w.send(
        "noreply",
        &password,
        "noreply@acme.test",
        &["perm@dest.test"],
        "to nowhere",
    );
    let bounce = w.ferry.wait_for_log("bounce queued", "noreply@acme.test");
    let dsn_id = bounce["dsn"].as_str().expect("dsn id").to_string();
    let failed = wait_for("the bounce to fail", Duration::from_secs(20), || {
        w.ferry
            .log_events()
            .into_iter()
            .find(|e| e["message"] == "delivery" && e["queue_id"] == dsn_id.as_str() && e["next"] == "Done")
    });
    assert_eq!(failed["failed"], 1, "{failed}");
    assert!(
        !w.ferry
            .log_events()
            .iter()
            .any(|e| e["message"] == "bounce queued" && e["queue_id"] == dsn_id.as_str())
    );
    assert!(w.tls_sink.received_for("noreply@acme.test").is_empty());
}

#[test]
fn a_killed_delivery_never_resends_to_recipients_that_said_250() {
    let mut w = World::start(&[("admin.listen", "127.0.0.1:0")]);
    w.send_billing(&["a@d1.test", "b@d2.test", "slow@d3.test"], "crash in the middle");
    // d1 and d2 have answered 250 and their answers are saved (destinations
    // are served side by side); d3's receiver is holding its DATA reply.
    w.tls_sink.wait_for_rcpt("slow@d3.test", 1);
    wait_for("d1's and d2's answers saved", Duration::from_secs(10), || {
        (w.ferry.metric("ferry_delivery_attempts_total{result=\"delivered\"}") >= 2.0).then_some(())
    });
    assert_eq!(w.tls_sink.received_for("a@d1.test").len(), 1);
    assert_eq!(w.tls_sink.received_for("b@d2.test").len(), 1);
    w.ferry.kill9();
    w.ferry.launch();
    w.tls_sink.wait_for_rcpt("slow@d3.test", 2);
    assert_eq!(
        w.tls_sink.received_for("a@d1.test").len(),
        1,
        "a@d1.test got the message twice"
    );
    assert_eq!(
        w.tls_sink.received_for("b@d2.test").len(),
        1,
        "b@d2.test got the message twice"
    );
}

#[test]
fn one_connection_carries_several_messages() {
    let w = World::start(&[("delivery.max_connections_per_destination", "1")]);
    let mut smtp = Smtp::submission(w.ferry.submission.expect("submission"), &w.ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &w.ferry.password).starts_with("235"));
    for i in 0..3 {
        let content = format!("From: {SENDER}\r\nSubject: reuse {i}\r\n\r\nx\r\n");
        assert!(
            smtp.send_message(SENDER, &["reuse@dest.test"], content.as_bytes())
                .starts_with("250")
        );
    }
    let got = w.tls_sink.wait_for_rcpt("reuse@dest.test", 3);
    let peers: std::collections::BTreeSet<_> = got
        .iter()
        .map(|m| m["peer"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(peers.len(), 1, "three messages, one connection: {peers:?}");
}

#[test]
fn a_tenant_smart_host_takes_all_its_mail() {
    let mut w = World::start(&[]);
    w.ferry.stop();
    let port = w.port;
    w.ferry.cli_ok(&[
        "tenant",
        "route",
        ferry_testkit::TENANT,
        "--smarthost",
        &format!("127.0.0.4:{port}"),
    ]);
    let shown = w.ferry.cli_ok(&["tenant", "show", ferry_testkit::TENANT]);
    assert!(shown.contains("SmartHost"), "{shown}");
    w.ferry.launch();
    w.send_billing(&["someone@dest.test", "other@example.net"], "via smart host");
    let got = w.plain_sink.wait_for_rcpt("someone@dest.test", 1);
    assert_eq!(
        got[0]["rcpts"].as_array().map(Vec::len),
        Some(2),
        "one transaction for both: {got:?}"
    );
    assert_eq!(
        got[0]["tls"], false,
        "the smart host offers no STARTTLS; opportunistic TLS goes on without"
    );
    assert!(w.tls_sink.received_for("someone@dest.test").is_empty());
}

#[test]
fn a_message_needing_8bitmime_or_smtputf8_bounces_from_a_peer_without_them() {
    let w = World::start(&[]);
    let mut smtp = Smtp::submission(w.ferry.submission.expect("submission"), &w.ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &w.ferry.password).starts_with("235"));
    for (mail, rcpt, subject) in [
        (format!("MAIL FROM:<{SENDER}> BODY=8BITMIME"), "eight@old.test", "Grüße"),
        (format!("MAIL FROM:<{SENDER}> SMTPUTF8"), "jürgen@old.test", "utf8"),
    ] {
        assert!(smtp.cmd(&mail).starts_with("250"));
        assert!(smtp.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250"));
        assert!(smtp.cmd("DATA").starts_with("354"));
        smtp.send(format!("From: {SENDER}\r\nSubject: {subject}\r\n\r\nGrüße aus Zürich\r\n.\r\n").as_bytes());
        assert!(smtp.read_reply().starts_with("250"));
    }
    let bounces = w.tls_sink.wait_for_rcpt(SENDER, 2);
    let all: String = bounces
        .iter()
        .map(|b| b["data"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        all.contains("Final-Recipient: rfc822; eight@old.test\r\nAction: failed\r\nStatus: 5.6.3"),
        "{all}"
    );
    assert!(
        all.contains("Final-Recipient: rfc822; jürgen@old.test\r\nAction: failed\r\nStatus: 5.6.7"),
        "{all}"
    );
    assert!(
        w.seven_bit_sink.received().is_empty(),
        "nothing was sent to the 7-bit peer"
    );
}
