//! Bounces and complaints that come back later, end to end: a tenant with a
//! bounce domain sends through Ferry to a real receiving server (found by
//! MX in a real DNS server), which accepts; a DSN for that recipient then
//! arrives at Ferry's inbound listener from Python's smtplib, as the
//! receiving server's MTA would send it. The recipient is suppressed, the
//! event reaches `GET /v1/events`, the outcome report counts it, the next
//! message to it is refused at RCPT, and the DSN is forwarded to the
//! application's own envelope-From. An ARF complaint through the
//! feedback-loop address does the same as a complaint; forged reports and
//! relay attempts are refused. The application's webhook, down at first,
//! gets every event once, signed, in order for each recipient. Run on the
//! embedded store (one process), and on Redis with two ingress nodes, a
//! delivery node and the inbound role on a node of its own.

use std::process::Command;
use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Dns, Redis, Sink, SinkOptions, WebhookReceiver, free_port};
use ferry_testkit::{DOMAIN, Ferry, SENDER, TENANT, USER, wait_for};
use serde_json::{Value, json};

const BOUNCES: &str = "bounces.acme.test";

struct World {
    /// The first takes the API calls; one process, or ingress, ingress,
    /// delivery and inbound nodes around Redis.
    nodes: Vec<Ferry>,
    password: String,
    sink: Sink,
    token: String,
    _dns: Dns,
    _redis: Option<Redis>,
}

impl World {
    fn start(cluster: bool) -> World {
        let dns = Dns::start(
            &[
                "--mx-host=dest.test,mx.dest.test,10",
                "--host-record=mx.dest.test,127.0.0.2",
                // The application's own domain, where forwarded reports go.
                "--mx-host=acme.test,mx.dest.test,10",
                // The bounce domain: its MX is the inbound listener, its SPF the relay.
                "--mx-host=bounces.acme.test,inbound.relay.test,10",
                "--host-record=inbound.relay.test,127.0.0.1",
                "--txt-record=bounces.acme.test,v=spf1 ip4:127.0.0.1 -all",
                "--host-record=nomx.acme.test,127.0.0.1",
            ]
            .map(String::from),
        );
        let port = free_port(&["127.0.0.2"]);
        let sink = Sink::start(&[format!("127.0.0.2:{port}")], SinkOptions::default());
        let (resolver, port) = (dns.address(), port.to_string());
        let redis = cluster.then(Redis::start);
        let url = redis.as_ref().map(Redis::url).unwrap_or_default();
        let mut settings = vec![
            ("admin.listen", "127.0.0.1:0"),
            ("spf.relay_addresses", "127.0.0.1"),
            ("listen.inbound", "127.0.0.1:0"),
            ("delivery.default_route", "mx"),
            ("delivery.resolver", &resolver),
            ("delivery.port", &port),
        ];
        if cluster {
            settings.extend([("store.backend", "redis"), ("store.redis.url", url.as_str())]);
        }
        let mut first = Ferry::prepare(&settings);
        let token = first.add_token(&["--name", "ops", "--role", "admin"]);
        let password = first.password.clone();
        let nodes = if cluster {
            first.launch_as("ingress");
            let mut nodes = vec![first];
            for role in ["ingress", "delivery", "inbound"] {
                let mut node = Ferry::node(&settings);
                node.launch_as(role);
                nodes.push(node);
            }
            nodes
        } else {
            first.launch();
            vec![first]
        };
        World {
            nodes,
            password,
            sink,
            token,
            _dns: dns,
            _redis: redis,
        }
    }

    fn api_node(&self) -> &Ferry {
        &self.nodes[0]
    }

    /// Each message through the next node that takes submissions.
    fn submission_node(&self, turn: usize) -> &Ferry {
        let takers: Vec<&Ferry> = self.nodes.iter().filter(|n| n.submission.is_some()).collect();
        takers[turn % takers.len()]
    }

    fn inbound_node(&self) -> &Ferry {
        self.nodes
            .iter()
            .find(|n| n.inbound.is_some())
            .expect("an inbound node")
    }

    /// The sum of a metric over every node.
    fn metric(&self, series: &str) -> f64 {
        self.nodes.iter().map(|n| n.metric(series)).sum()
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, value, _) = self.api_node().api(method, path, Some(&self.token), body.as_deref());
        (status, value)
    }

    /// One message from the demo application; the RCPT replies, and the
    /// final reply when a recipient was taken.
    fn send(&self, turn: usize, rcpts: &[&str], subject: &str) -> Vec<String> {
        let node = self.submission_node(turn);
        let mut smtp = Smtp::submission(node.submission.expect("submission"), &node.pki.ca_der);
        assert!(smtp.auth_plain(USER, &self.password).starts_with("235"));
        let mut replies = vec![smtp.cmd(&format!("MAIL FROM:<{SENDER}>"))];
        for rcpt in rcpts {
            replies.push(smtp.cmd(&format!("RCPT TO:<{rcpt}>")));
        }
        if replies.iter().skip(1).any(|r| r.starts_with("250")) {
            replies.push(smtp.cmd("DATA"));
            let content = format!(
                "From: {SENDER}\r\nTo: {}\r\nSubject: {subject}\r\n\r\nHello.\r\n.",
                rcpts.join(", ")
            );
            replies.push(smtp.cmd(&content));
        }
        replies
    }

    /// A report to the inbound listener from smtplib (`tests/clients/report_send.py`).
    fn report(&self, content: &str, rcpts: &[&str]) -> Value {
        let node = self.inbound_node();
        let inbound = node.inbound.expect("inbound listener");
        let file = node.dir.path().join("report.eml");
        std::fs::write(&file, content.replace('\n', "\r\n")).expect("write report");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/report_send.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(inbound.ip().to_string())
            .arg(inbound.port().to_string())
            .arg(&file)
            .args(rcpts)
            .output()
            .expect("run report_send.py");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("report_send.py output")
    }

    fn events(&self) -> Vec<Value> {
        let (status, page) = self.api("GET", &format!("/v1/events?app={USER}&limit=1000"), None);
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().cloned().unwrap_or_default()
    }

    fn wait_event(&self, kind: &str, recipient: &str) -> Value {
        wait_for(
            &format!("a {kind} event for {recipient}"),
            Duration::from_secs(30),
            || {
                self.events()
                    .into_iter()
                    .find(|e| e["kind"] == kind && e["recipient"] == recipient)
            },
        )
    }
}

fn dsn(return_path: &str, recipient: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.dest.test (Mail Delivery System)\n\
         To: {return_path}\n\
         Subject: Undelivered Mail Returned to Sender\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\n\
         \n\
         --B1\n\
         Content-Type: text/plain\n\
         \n\
         Your message could not be delivered to its recipient.\n\
         \n\
         --B1\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; mx.dest.test\n\
         \n\
         Final-Recipient: rfc822; {recipient}\n\
         Action: failed\n\
         Status: 5.1.1\n\
         Remote-MTA: dns; store.dest.test\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: mailbox unknown\n\
         \n\
         --B1\n\
         Content-Type: text/rfc822-headers\n\
         \n\
         Return-Path: <{return_path}>\n\
         From: {SENDER}\n\
         To: {recipient}\n\
         Subject: payslip\n\
         \n\
         --B1--\n"
    )
}

fn arf(return_path: &str, recipient: &str) -> String {
    format!(
        "From: feedback@fbl.mailbox.test\n\
         To: fbl@{BOUNCES}\n\
         Subject: Complaint about a message\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"F1\"\n\
         \n\
         --F1\n\
         Content-Type: text/plain\n\
         \n\
         This is an abuse report for a message received from your network.\n\
         \n\
         --F1\n\
         Content-Type: message/feedback-report\n\
         \n\
         Feedback-Type: abuse\n\
         User-Agent: MailboxFBL/1.0\n\
         Version: 1\n\
         Original-Mail-From: <{return_path}>\n\
         Original-Rcpt-To: <{recipient}>\n\
         Source-IP: 127.0.0.1\n\
         \n\
         --F1\n\
         Content-Type: message/rfc822\n\
         \n\
         Return-Path: <{return_path}>\n\
         From: {SENDER}\n\
         To: {recipient}\n\
         Subject: newsletter\n\
         \n\
         Hello.\n\
         \n\
         --F1--\n"
    )
}

/// The envelope-From the receiving server saw for `rcpt`.
fn return_path_of(sink: &Sink, rcpt: &str) -> String {
    let got = sink.wait_for_rcpt(rcpt, 1);
    got[0]["mail_from"].as_str().expect("mail_from").to_string()
}

#[test]
fn a_later_bounce_and_a_complaint_suppress_the_recipient_and_reach_the_application() {
    reports_come_back(&World::start(false));
}

#[test]
fn on_redis_with_two_ingress_nodes_and_the_inbound_role_apart() {
    reports_come_back(&World::start(true));
}

fn reports_come_back(w: &World) {
    let (status, tenant) = w.api(
        "PUT",
        &format!("/v1/tenants/{TENANT}/bounces"),
        Some(json!({"domain": BOUNCES, "forward": true})),
    );
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["bounces"]["domain"], BOUNCES);
    let hook = WebhookReceiver::start("app-webhook-secret-1", 2);
    let (status, created) = w.api(
        "PUT",
        &format!("/v1/apps/{USER}/webhook"),
        Some(json!({"url": hook.url, "secret": "app-webhook-secret-1"})),
    );
    assert_eq!(status, 200, "{created}");
    let (_, shown) = w.api("GET", &format!("/v1/apps/{USER}"), None);
    assert_eq!(shown["events_webhook"]["secret"], "********", "{shown}");
    // The directory reload reaches the sessions before the next sign-in.
    let replies = w.send(0, &["gone@dest.test", "annoyed@dest.test"], "payslip");
    assert!(replies.last().is_some_and(|r| r.starts_with("250")), "{replies:?}");

    // Each recipient went out with its own signed return path.
    let gone_rp = return_path_of(&w.sink, "gone@dest.test");
    let annoyed_rp = return_path_of(&w.sink, "annoyed@dest.test");
    for rp in [&gone_rp, &annoyed_rp] {
        assert!(rp.starts_with("b-") && rp.ends_with(&format!("@{BOUNCES}")), "{rp}");
        assert!(rp.split('@').next().is_some_and(|l| l.len() <= 64), "{rp}");
    }
    assert_ne!(gone_rp, annoyed_rp);
    w.wait_event("delivered", "gone@dest.test");

    // The receiving server bounces later, to the return path.
    let sent = w.report(&dsn(&gone_rp, "gone@dest.test"), &[&gone_rp]);
    assert!(sent["mail"].as_str().is_some_and(|r| r.starts_with("250")), "{sent}");
    assert!(
        sent["rcpt"][&gone_rp].as_str().is_some_and(|r| r.starts_with("250")),
        "{sent}"
    );
    assert!(sent["data"].as_str().is_some_and(|r| r.starts_with("250")), "{sent}");
    let features = sent["ehlo_features"].to_string();
    assert!(
        !features.contains("auth"),
        "AUTH is never offered on the inbound listener: {features}"
    );

    let bounced = w.wait_event("bounced", "gone@dest.test");
    assert_eq!(bounced["status"], "5.1.1", "{bounced}");
    assert_eq!(bounced["severity"], "hard", "{bounced}");
    assert_eq!(bounced["report"], "dsn", "{bounced}");
    assert!(
        bounced["reply"].as_str().is_some_and(|r| r.contains("mailbox unknown")),
        "{bounced}"
    );
    let kinds: Vec<String> = w
        .events()
        .iter()
        .filter(|e| e["recipient"] == "gone@dest.test")
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect();
    assert_eq!(kinds, ["accepted", "delivered", "bounced"]);

    // Suppressed: listed with its reason, and refused at RCPT next time.
    let (_, list) = w.api("GET", &format!("/v1/suppressions?tenant={TENANT}"), None);
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["recipient"] == "gone@dest.test"))
        .cloned()
        .unwrap_or_else(|| panic!("gone@dest.test not suppressed: {list}"));
    assert_eq!(entry["reason"], "hard_bounce");
    let replies = w.send(1, &["gone@dest.test"], "again");
    assert!(
        replies[1].starts_with("550 5.1.1") && replies[1].contains("suppressed since"),
        "{replies:?}"
    );

    // Explain says the same, and what the envelope-From will be.
    let explain = |rcpt: &str| {
        let question = json!({"source": "127.0.0.1", "envelope_from": SENDER, "recipients": [rcpt]});
        w.api("POST", &format!("/v1/apps/{USER}/explain"), Some(question)).1
    };
    let refused = explain("gone@dest.test");
    assert_eq!(refused["reason"], "suppressed", "{refused}");
    let passed = explain("new@dest.test");
    assert_eq!(passed["verdict"], "pass", "{passed}");
    assert!(
        passed["envelope_from_sent"]
            .as_str()
            .is_some_and(|e| e.ends_with(&format!("@{BOUNCES}"))),
        "{passed}"
    );

    // The DSN is forwarded to the application's own envelope-From.
    let forwarded = w.sink.wait_for_rcpt(SENDER, 1);
    assert_eq!(forwarded[0]["mail_from"], "<>", "forwarded from the null sender");
    assert!(
        forwarded[0]["data"]
            .as_str()
            .is_some_and(|d| d.contains("report-type=delivery-status"))
    );

    // A complaint through the feedback-loop address names the message by
    // the return path in the original it carries.
    let complaint = w.report(&arf(&annoyed_rp, "annoyed@dest.test"), &[&format!("fbl@{BOUNCES}")]);
    assert!(
        complaint["data"].as_str().is_some_and(|r| r.starts_with("250")),
        "{complaint}"
    );
    let complained = w.wait_event("complained", "annoyed@dest.test");
    assert_eq!(complained["feedback_type"], "abuse");
    let replies = w.send(2, &["annoyed@dest.test"], "more news");
    assert!(replies[1].starts_with("550 5.1.1"), "{replies:?}");

    // Forged: a bad MAC, an unknown domain, a stranger, a relay attempt.
    let mut forged = gone_rp.clone().into_bytes();
    let at = gone_rp.find('@').expect("@") - 1;
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("ascii");
    let other_domain = gone_rp.replace(BOUNCES, "bounces.other.test");
    let stranger = format!("postmaster@{BOUNCES}");
    let refused = w.report(
        &dsn(&forged, "gone@dest.test"),
        &[
            &forged,
            &other_domain,
            &stranger,
            "victim@dest.test",
            &format!("victim@{DOMAIN}"),
        ],
    );
    for rcpt in [forged.as_str(), &other_domain, &stranger, "victim@dest.test"] {
        assert!(
            refused["rcpt"][rcpt]
                .as_str()
                .is_some_and(|r| r.starts_with("550 5.1.1")),
            "{rcpt}: {refused}"
        );
    }
    assert!(refused.get("data").is_none(), "nothing was taken: {refused}");
    // The open-relay tricks of the relay scanners, at the inbound listener.
    let tricks = [
        format!("victim%dest.test@{BOUNCES}"),
        format!("@{BOUNCES}:victim@dest.test"),
        format!("\"victim@dest.test\"@{BOUNCES}"),
        format!("victim@dest.test@{BOUNCES}"),
        format!("dest.test!victim@{BOUNCES}"),
        format!("{gone_rp}@dest.test"),
        "victim@[127.0.0.2]".to_string(),
    ];
    let tricks: Vec<&str> = tricks.iter().map(String::as_str).collect();
    let relayed = w.report(&dsn(&gone_rp, "victim@dest.test"), &tricks);
    for rcpt in &tricks {
        assert!(
            relayed["rcpt"][rcpt].as_str().is_some_and(|r| r.starts_with('5')),
            "{rcpt}: {relayed}"
        );
    }
    // A report to the feedback-loop address about mail Ferry never sent.
    let stray = w.report(
        &arf("someone@elsewhere.test", "x@dest.test"),
        &[&format!("fbl@{BOUNCES}")],
    );
    assert!(stray["data"].as_str().is_some_and(|r| r.starts_with("550")), "{stray}");
    assert!(
        w.sink.received_for("victim@dest.test").is_empty(),
        "the inbound listener relays nothing"
    );

    // The outcome report counts the later bounce and the complaint.
    let (status, report) = w.api("GET", "/v1/reports/outcomes", None);
    assert_eq!(status, 200, "{report}");
    let row = report["applications"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["app"] == USER))
        .cloned()
        .unwrap_or_else(|| panic!("no row for {USER}: {report}"));
    assert_eq!(row["bounced_later"], 1, "{row}");
    assert_eq!(row["complained"], 1, "{row}");
    assert_eq!(row["refused"]["suppressed"], 2, "{row}");
    assert!(w.metric("ferry_reports_total{kind=\"dsn\",result=\"taken\"}") >= 1.0);

    // The webhook: two 503s first, then every event once, in order.
    let taken = wait_for("the webhook to take the complaint", Duration::from_secs(60), || {
        let taken: Vec<Value> = hook
            .requests()
            .into_iter()
            .filter(|r| r["status"] == 200)
            .flat_map(|r| r["alert"]["events"].as_array().cloned().unwrap_or_default())
            .collect();
        taken.iter().any(|e| e["kind"] == "complained").then_some(taken)
    });
    let requests = hook.requests();
    assert!(requests.iter().all(|r| r["signature_ok"] == true), "{requests:?}");
    assert_eq!(requests.iter().filter(|r| r["status"] == 503).count(), 2);
    let mut ids: Vec<&str> = taken.iter().filter_map(|e| e["id"].as_str()).collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "every event once");
    let of = |rcpt: &str| -> Vec<String> {
        taken
            .iter()
            .filter(|e| e["recipient"] == rcpt)
            .filter_map(|e| e["kind"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(of("gone@dest.test"), ["accepted", "delivered", "bounced"]);
    assert_eq!(of("annoyed@dest.test"), ["accepted", "delivered", "complained"]);
    assert!(w.metric("ferry_webhook_posts_total{result=\"failed\"}") >= 2.0);
}

#[test]
fn the_cli_sets_a_bounce_domain_and_checks_its_mx_and_spf() {
    let w = World::start(false);
    let cli = |args: &[&str]| w.api_node().cli(args);
    let set = cli(&["tenant", "bounces", TENANT, "--domain", BOUNCES, "--forward"]);
    let out = String::from_utf8_lossy(&set.stdout).to_string() + &String::from_utf8_lossy(&set.stderr);
    assert!(set.status.success(), "{out}");
    assert!(
        out.contains(&format!("mx {BOUNCES}: inbound.relay.test (127.0.0.1)")),
        "{out}"
    );
    assert!(out.contains(&format!("spf {BOUNCES} for 127.0.0.1: pass")), "{out}");
    assert!(cli(&["tenant", "check-bounces", TENANT]).status.success());

    let outside = cli(&["tenant", "bounces", TENANT, "--domain", "bounces.other.test"]);
    assert!(!outside.status.success());
    assert!(String::from_utf8_lossy(&outside.stderr).contains("subdomain of one of the tenant's domains"));

    let nomx = cli(&["tenant", "bounces", TENANT, "--domain", "nomx.acme.test"]);
    assert!(nomx.status.success(), "set, with a warning");
    assert!(String::from_utf8_lossy(&nomx.stderr).contains("no MX record"));
    let check = cli(&["tenant", "check-bounces", TENANT]);
    assert!(!check.status.success());
    let why = String::from_utf8_lossy(&check.stderr);
    assert!(
        why.contains("no MX record") && why.contains("does not authorise"),
        "{why}"
    );
}
