//! Behind a load balancer: HAProxy sends a PROXY protocol v2 header to two
//! ingress nodes sharing one redis-server, and clients connect from distinct
//! loopback addresses (127.0.0.x) so the address each node acts on is the
//! client's, not the balancer's: the application's source allowlist, the
//! `Received:` header and the logs all see it. A PROXY header from anyone
//! but the balancer, a malformed one, or none from the balancer closes the
//! connection.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Haproxy, Redis};
use ferry_testkit::{Ferry, SENDER};

const CLIENT: &str = "127.0.0.5";
const OTHER_CLIENT: &str = "127.0.0.6";
const STRANGER: &str = "127.0.0.9";

/// Where and how a client connects.
struct Via<'a> {
    addr: SocketAddr,
    /// `starttls` or `implicit`.
    mode: &'a str,
    source: &'a str,
}

/// One message with Python's smtplib from `via.source`; the replies.
fn smtplib_from(node: &Ferry, via: Via<'_>, user: &str, password: &str, subject: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("message.eml");
    let content = format!("From: {SENDER}\r\nTo: r@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n");
    std::fs::write(&file, content).expect("write message");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/smtp_send.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            "--port",
            &via.addr.port().to_string(),
            "--mode",
            via.mode,
            "--source",
            via.source,
        ])
        .arg("--cafile")
        .arg(&node.pki.ca)
        .args(["--user", user, "--password", password, "--sender", SENDER])
        .args(["--rcpt", "r@example.net"])
        .arg("--file")
        .arg(&file)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn the_client_behind_haproxy_is_seen_by_its_own_address() {
    let redis = Redis::start();
    let url = redis.url();
    let settings = [
        ("store.backend", "redis"),
        ("store.redis.url", url.as_str()),
        ("listen.proxy_protocol_from", "127.0.0.1/32"),
    ];
    let mut first = Ferry::prepare(&settings);
    let only_five = first.add_app("only-five", &["--from", SENDER, "--allow", "127.0.0.5/32"]);
    first.launch_as("ingress");
    // One certificate behind one name, as a balanced service has.
    let (cert, key) = (
        first.pki.cert.display().to_string(),
        first.pki.key.display().to_string(),
    );
    let mut second = Ferry::node(&settings);
    second.set(&[("tls.certificate", &cert), ("tls.key", &key)]);
    second.launch_as("ingress");
    let mut delivery = Ferry::node(&settings);
    delivery.launch_as("delivery");
    let submission = |n: &Ferry| n.submission.expect("submission");
    let submissions = |n: &Ferry| n.submissions.expect("submissions");
    let haproxy = Haproxy::start(
        &[
            vec![submission(&first), submission(&second)],
            vec![submissions(&first), submissions(&second)],
        ],
        "send-proxy-v2",
    );
    let via = |i: usize, mode, source| Via {
        addr: haproxy.frontend(i),
        mode,
        source,
    };

    // Twice from the allowed address: round-robin reaches both nodes. On
    // 465 the header comes before the TLS handshake.
    for (subject, via) in [
        ("via-haproxy-1", via(0, "starttls", CLIENT)),
        ("via-haproxy-2", via(0, "starttls", CLIENT)),
        ("via-haproxy-465", via(1, "implicit", CLIENT)),
    ] {
        let replies = smtplib_from(&first, via, "only-five", &only_five, subject);
        assert!(replies.contains("\"code\": 250"), "{replies}");
    }
    let replies = smtplib_from(
        &first,
        via(0, "starttls", OTHER_CLIENT),
        "only-five",
        &only_five,
        "refused",
    );
    assert!(replies.contains("\"code\": 535"), "{replies}");

    let captured = delivery.wait_captured(3);
    for (_, message) in &captured {
        let text = String::from_utf8_lossy(message);
        let received = text.lines().find(|l| l.starts_with("Received:")).expect("Received");
        assert!(received.contains("[127.0.0.5]"), "{received}");
    }
    for node in [&first, &second] {
        let signed_in = node.wait_for_log("authenticated", "only-five");
        assert!(
            signed_in["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.5:")),
            "{signed_in}"
        );
    }
    let refused = first
        .log_events()
        .into_iter()
        .chain(second.log_events())
        .find(|e| e["message"] == "authentication refused")
        .expect("the refusal is logged");
    assert!(refused.to_string().contains(OTHER_CLIENT), "{refused}");
    for node in [&mut first, &mut second, &mut delivery] {
        assert!(node.stop().success());
    }
}

#[test]
fn proxy_headers_only_from_the_balancer_and_only_well_formed() {
    let mut node = Ferry::prepare(&[("listen.proxy_protocol_from", "127.0.0.1/32")]);
    node.launch();
    let smtp = node.smtp.expect("smtp");

    // From a client: no header is read, and one sent anyway is refused.
    let (mut client, greeting) = Smtp::connect_from(smtp, ip(STRANGER));
    assert!(greeting.starts_with("220 "), "{greeting}");
    let reply = client.cmd("PROXY TCP4 192.0.2.1 127.0.0.1 4000 25");
    assert!(reply.starts_with("554 5.7.0"), "{reply}");
    assert!(client.is_closed());

    // From the balancer: a malformed header, or none, closes without a greeting.
    for first_bytes in [&b"PROXY TCP4 not-an-address\r\n"[..], b"EHLO client.test\r\n"] {
        let mut balancer = Smtp::raw_from(smtp, ip("127.0.0.1"));
        balancer.send(first_bytes);
        assert_eq!(balancer.read_reply(), "", "closed without a word");
    }
    // A well-formed v1 header names the client.
    let mut balancer = Smtp::raw_from(smtp, ip("127.0.0.1"));
    balancer.send(b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\n");
    assert!(balancer.read_reply().starts_with("220 "));
    assert!(balancer.cmd("EHLO client.test").starts_with("250"));
    node.wait_for_log("connection closed: PROXY header", "127.0.0.1");
    assert!(node.stop().success());
}
