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

/// Two ingress nodes on one redis-server, trusting PROXY headers from
/// 127.0.0.1 (HAProxy), with `extra` settings; the first is onboarded with
/// the demo application and `only-five` (allowed from 127.0.0.5 only),
/// whose password is returned.
struct Cluster {
    _redis: Redis,
    first: Ferry,
    second: Ferry,
    only_five: String,
    settings: Vec<(String, String)>,
}

impl Cluster {
    fn start(extra: &[(&str, &str)]) -> Cluster {
        let redis = Redis::start();
        let url = redis.url();
        let mut settings = vec![
            ("store.backend", "redis"),
            ("store.redis.url", url.as_str()),
            ("listen.proxy_protocol_from", "127.0.0.1/32"),
        ];
        settings.extend_from_slice(extra);
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
        let settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Cluster {
            _redis: redis,
            first,
            second,
            only_five,
            settings,
        }
    }

    /// Another node of the cluster, not yet launched.
    fn node(&self) -> Ferry {
        let settings: Vec<(&str, &str)> = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Ferry::node(&settings)
    }

    fn stop(mut self) {
        for node in [&mut self.first, &mut self.second] {
            assert!(node.stop().success());
        }
    }
}

#[test]
fn the_client_behind_haproxy_is_seen_by_its_own_address() {
    let cluster = Cluster::start(&[]);
    let (first, second, only_five) = (&cluster.first, &cluster.second, &cluster.only_five);
    let mut delivery = cluster.node();
    delivery.launch_as("delivery");
    let submission = |n: &Ferry| n.submission.expect("submission");
    let submissions = |n: &Ferry| n.submissions.expect("submissions");
    let haproxy = Haproxy::start(
        &[
            vec![submission(first), submission(second)],
            vec![submissions(first), submissions(second)],
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
        let replies = smtplib_from(first, via, "only-five", only_five, subject);
        assert!(replies.contains("\"code\": 250"), "{replies}");
    }
    let replies = smtplib_from(
        first,
        via(0, "starttls", OTHER_CLIENT),
        "only-five",
        only_five,
        "refused",
    );
    assert!(replies.contains("\"code\": 535"), "{replies}");

    let captured = delivery.wait_captured(3);
    for (_, message) in &captured {
        let text = String::from_utf8_lossy(message);
        let received = text.lines().find(|l| l.starts_with("Received:")).expect("Received");
        assert!(received.contains("[127.0.0.5]"), "{received}");
    }
    for node in [first, second] {
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
    assert!(delivery.stop().success());
    cluster.stop();
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

/// Connections from the balancer that never send their PROXY header hold
/// a place in the caps from accept (the balancer's address has its
/// per-address cap like any other) and are closed after
/// `listen.proxy_header_timeout_secs`: they cannot pile up outside every
/// limit. Once they are gone, the balancer's clients are served again.
#[test]
fn connections_waiting_for_a_proxy_header_are_capped_and_timed_out() {
    let mut node = Ferry::prepare(&[
        ("listen.proxy_protocol_from", "127.0.0.1/32"),
        ("listen.proxy_header_timeout_secs", "2"),
        ("server.max_sessions_per_ip", "3"),
    ]);
    node.launch();
    let smtp = node.smtp.expect("smtp");
    let silent: Vec<Smtp> = (0..3).map(|_| Smtp::raw_from(smtp, ip("127.0.0.1"))).collect();
    let mut one_more = Smtp::raw_from(smtp, ip("127.0.0.1"));
    let reply = one_more.read_reply();
    assert!(reply.starts_with("421 4.7.0"), "past the cap at once: {reply:?}");
    for mut waiting in silent {
        assert_eq!(waiting.read_reply(), "", "closed once the header timeout passed");
    }
    node.wait_for_log("connection closed: PROXY header", "within");
    let mut balancer = Smtp::raw_from(smtp, ip("127.0.0.1"));
    balancer.send(b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\n");
    assert!(balancer.read_reply().starts_with("220 "), "served again");
    assert!(node.stop().success());
}

/// The chart's in-cluster submission Service: pods reach a listener that
/// never reads a PROXY header, even from the balancers' networks, while the
/// balancer's listener on the same node still requires one.
#[test]
fn the_direct_submission_listener_never_expects_a_header() {
    let mut node = Ferry::prepare(&[
        ("listen.proxy_protocol_from", "127.0.0.0/8"),
        ("listen.direct_submission", "127.0.0.1:0"),
    ]);
    node.launch();
    let direct = node.direct_submission.expect("direct_submission listener");

    let (mut pod, greeting) = Smtp::connect(direct);
    assert!(greeting.starts_with("220 "), "no header needed: {greeting}");
    let ehlo = pod.cmd("EHLO pod.test");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    let reply = pod.cmd("MAIL FROM:<app@example.test>");
    assert!(reply.starts_with("530 5.7.0"), "submission rules: TLS first: {reply}");
    // A header sent here is a command like any other, never the client's address.
    let (mut forger, _) = Smtp::connect(direct);
    let reply = forger.cmd("PROXY TCP4 192.0.2.1 127.0.0.1 4000 587");
    assert!(reply.starts_with("554 5.7.0"), "{reply}");

    let mut balancer = Smtp::raw_from(node.submission.expect("submission"), ip("127.0.0.1"));
    balancer.send(b"EHLO client.test\r\n");
    assert_eq!(
        balancer.read_reply(),
        "",
        "the PROXY listener still refuses a connection without one"
    );
    assert!(node.stop().success());
}

/// Two ingress nodes behind HAProxy, one lockout memory (the store):
/// guesses at one application spread over both nodes and several
/// addresses lock its username everywhere but at its own address; a pair
/// locked at one address stops neither another application there nor the
/// same one elsewhere.
#[test]
fn lockouts_hold_across_nodes_without_locking_out_the_innocent() {
    let cluster = Cluster::start(&[
        ("auth.lockout_failures", "3"),
        ("auth.username_lockout_failures", "4"),
        ("admin.listen", "127.0.0.1:0"),
    ]);
    let (first, second, only_five) = (&cluster.first, &cluster.second, &cluster.only_five);
    let token = first.cli_ok(&["token", "add", "--name", "ops", "--role", "admin"]);
    let token = token
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("token")
        .to_string();
    let submission = |n: &Ferry| n.submission.expect("submission");
    let haproxy = Haproxy::start(&[vec![submission(first), submission(second)]], "send-proxy-v2");
    let sign_in = |source: &str, user: &str, password: &str| {
        let mut smtp = Smtp::submission_from(haproxy.frontend(0), ip(source), &first.pki.ca_der);
        smtp.auth_plain(user, password)
    };

    // Four guesses at only-five from two addresses, alternating between the nodes.
    for source in ["127.0.0.6", "127.0.0.6", "127.0.0.7", "127.0.0.7"] {
        let reply = sign_in(source, "only-five", "guess");
        assert!(reply.starts_with("535 5.7.8"), "{reply}");
    }
    let reply = sign_in("127.0.0.8", "only-five", only_five);
    assert!(
        reply.starts_with("421 4.7.0"),
        "the username is locked elsewhere: {reply}"
    );
    let reply = sign_in(CLIENT, "only-five", only_five);
    assert!(reply.starts_with("235"), "but not at its own address: {reply}");
    let reply = sign_in("127.0.0.6", ferry_testkit::USER, &first.password);
    assert!(
        reply.starts_with("235"),
        "another application at a guessing address: {reply}"
    );

    // Three guesses at the demo application from one address lock that pair.
    for _ in 0..3 {
        assert!(sign_in(STRANGER, ferry_testkit::USER, "guess").starts_with("535"));
    }
    assert!(sign_in(STRANGER, ferry_testkit::USER, &first.password).starts_with("421 4.7.0"));
    assert!(sign_in(OTHER_CLIENT, ferry_testkit::USER, &first.password).starts_with("235"));

    let (status, lockouts, _) = second.api("GET", "/v1/lockouts", Some(&token), None);
    assert_eq!(status, 200, "{lockouts}");
    let kinds: Vec<(String, String)> = lockouts
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or("").into(),
                l["username"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(kinds.contains(&("username".into(), "only-five".into())), "{lockouts}");
    assert!(
        kinds.contains(&("pair".into(), ferry_testkit::USER.into())),
        "{lockouts}"
    );
    let started = |kind: &str| {
        let series = format!("ferry_auth_lockouts_total{{kind=\"{kind}\"}}");
        first.metric(&series) + second.metric(&series)
    };
    assert_eq!((started("username"), started("pair")), (1.0, 1.0));

    // Lifted through the API of either node, for every node.
    let (status, lifted, _) = first.api("DELETE", "/v1/lockouts?username=only-five", Some(&token), None);
    assert_eq!((status, lifted["lifted"].as_u64()), (200, Some(1)), "{lifted}");
    let reply = sign_in("127.0.0.8", "only-five", only_five);
    assert!(
        reply.starts_with("535"),
        "unlocked, and refused for its address only: {reply}"
    );
    drop(haproxy);
    cluster.stop();
}

/// Each node remembers a verified password for a while, keyed by the
/// application's credential version, which every sign-in reads from the
/// store: an application disabled through one node is refused by every
/// node at its next sign-in, however recently it signed in there.
#[test]
fn a_disabled_application_is_refused_on_every_node_at_once() {
    let cluster = Cluster::start(&[]);
    let (first, second, only_five) = (&cluster.first, &cluster.second, &cluster.only_five);
    let sign_in = |node: &Ferry| {
        let addr = node.submission.expect("submission");
        Smtp::submission_from(addr, ip(CLIENT), &first.pki.ca_der).auth_plain("only-five", only_five)
    };
    for node in [first, second] {
        assert!(sign_in(node).starts_with("235"), "signed in, and remembered");
    }
    first.cli_ok(&["app", "disable", "only-five"]);
    for node in [second, first] {
        let reply = sign_in(node);
        assert!(reply.starts_with("535 5.7.8"), "{reply}");
        node.wait_for_log("authentication refused", "disabled");
    }
    cluster.stop();
}
