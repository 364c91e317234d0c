//! Compromised applications, end to end: the demo application gets four
//! weeks of ordinary history (imported with `ferry incident history`, as
//! for an application moved to Ferry), sends an ordinary few messages (no
//! incident), then a burst to many new domains, as stolen credentials
//! would: one incident within a few rounds of the watch, with its
//! evidence; every later message answered 250 and held; one alert e-mail
//! to the tenant's contact and one to the admins, one signed alert webhook.
//! A held message released (from another node than the one that took it)
//! is delivered once; the rest discarded are never delivered and counted.
//! Run on the embedded store, and on Redis with two ingress nodes and a
//! delivery node. On the embedded store also: `suspend` refuses sign-ins
//! until the application is enabled again, `alert` only alerts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Redis, WebhookReceiver};
use ferry_testkit::{Ferry, SENDER, TENANT, USER, wait_for};
use serde_json::{Value, json};

const SECRET: &str = "incident-alert-secret";
const CONTACT: &str = "it-security@acme.test";
const ADMINS: &str = "admins@acme.test";
const HOUR_MS: u64 = 3_600_000;

struct World {
    /// Ingress nodes first (the API on each), then the delivery node.
    nodes: Vec<Ferry>,
    token: String,
    /// The passwords of the applications beyond the demo one.
    passwords: Vec<String>,
    hook: WebhookReceiver,
    _redis: Option<Redis>,
}

/// Four weeks of an ordinary application: a few messages to one or two
/// domains in working hours on weekdays, a month-end run, a retry storm.
fn history(now_ms: u64) -> String {
    let now_hour = now_ms / HOUR_MS;
    let mut lines = Vec::new();
    for hour in now_hour - 28 * 24..now_hour {
        let (day, time) = ((hour / 24 + 3) % 7, hour % 24);
        let working = day < 5 && (8..18).contains(&time);
        let mut messages = if working { 2 + hour % 3 } else { hour % 2 };
        if hour == now_hour - 10 * 24 {
            messages = 12; // month-end
        }
        if hour == now_hour - 5 * 24 + 3 {
            messages = 15; // a retry storm after its own outage
        }
        if messages > 0 {
            let domains = 1 + hour % 2;
            lines.push(
                json!({"hour": hour, "messages": messages, "recipients": messages, "domains": domains}).to_string(),
            );
        }
    }
    lines.join("\n")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl World {
    /// With `apps` (username, sender) added beside the demo application.
    fn start(cluster: bool, apps: &[(&str, &str)]) -> World {
        let hook = WebhookReceiver::start(SECRET, 0);
        let redis = cluster.then(Redis::start);
        let url = redis.as_ref().map(Redis::url).unwrap_or_default();
        let mut settings = vec![
            ("admin.listen", "127.0.0.1:0"),
            ("alerts.webhook_url", hook.url.as_str()),
            ("alerts.webhook_secret", SECRET),
            ("alerts.organisation_contact", ADMINS),
            ("incidents.every_secs", "1"),
            // A small application: its bursts are small too.
            ("incidents.signals.volume_floor", "20"),
            ("incidents.signals.domains_floor", "10"),
            // Password guessing locks a pair out after 3 failures, briefly.
            ("auth.lockout_failures", "3"),
            ("auth.lockout_secs", "2"),
        ];
        if cluster {
            settings.extend([("store.backend", "redis"), ("store.redis.url", url.as_str())]);
        }
        let mut first = Ferry::prepare(&settings);
        let token = first.add_token(&["--name", "ops", "--role", "admin"]);
        let passwords = apps
            .iter()
            .map(|(app, from)| first.add_app(app, &["--from", from, "--allow", "127.0.0.0/8"]))
            .collect();
        let file = first.dir.path().join("history.jsonl");
        std::fs::write(&file, history(now_ms())).expect("write history");
        for app in std::iter::once(USER).chain(apps.iter().map(|(app, _)| *app)) {
            let imported = first.cli_ok(&["incident", "history", app, "--import", &file.to_string_lossy()]);
            assert!(imported.contains("hours of figures kept"), "{imported}");
        }
        let nodes = if cluster {
            first.launch_as("ingress");
            let mut second = Ferry::node(&settings);
            second.password = first.password.clone();
            second.launch_as("ingress");
            let mut delivery = Ferry::node(&settings);
            delivery.launch_as("delivery");
            vec![first, second, delivery]
        } else {
            first.launch();
            vec![first]
        };
        let w = World {
            nodes,
            token,
            passwords,
            hook,
            _redis: redis,
        };
        let (status, tenant) = w.api(
            0,
            "PATCH",
            &format!("/v1/tenants/{TENANT}"),
            Some(json!({"contact": CONTACT})),
        );
        assert_eq!(status, 200, "{tenant}");
        w
    }

    fn api(&self, node: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, value, _) = self.nodes[node].api(method, path, Some(&self.token), body.as_deref());
        (status, value)
    }

    fn ingress(&self) -> usize {
        self.nodes.iter().filter(|n| n.submission.is_some()).count()
    }

    fn delivery(&self) -> &Ferry {
        self.nodes.last().expect("a node")
    }

    /// `n` messages of one session through ingress node `node`, to
    /// recipients at `domains` different domains; the final replies.
    fn send(&self, node: usize, user: &str, password: &str, from: &str, n: usize, domains: usize) -> Vec<String> {
        let ferry = &self.nodes[node];
        let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
        let auth = smtp.auth_plain(user, password);
        assert!(auth.starts_with("235"), "{auth}");
        (0..n)
            .map(|i| {
                let rcpt = format!("user{i}@d{}.example", i % domains);
                let content = format!("From: {from}\r\nTo: {rcpt}\r\nSubject: m{i}\r\n\r\nHello.\r\n");
                smtp.send_message(from, &[&rcpt], content.as_bytes())
            })
            .collect()
    }

    /// The watch's rounds, summed over the nodes.
    fn rounds(&self) -> f64 {
        self.nodes
            .iter()
            .map(|n| n.metric("ferry_incident_watch_rounds_total"))
            .sum()
    }

    /// Waits for two more rounds of the watch: what was sent is judged.
    fn judged(&self) {
        let from = self.rounds();
        wait_for("two rounds of the incident watch", Duration::from_secs(30), || {
            (self.rounds() >= from + 2.0).then_some(())
        });
    }

    fn incidents(&self, app: &str) -> Vec<Value> {
        let (status, list) = self.api(0, "GET", &format!("/v1/incidents?app={app}"), None);
        assert_eq!(status, 200, "{list}");
        list.as_array().cloned().unwrap_or_default()
    }

    fn wait_incident(&self, app: &str) -> Value {
        wait_for(&format!("an incident on {app}"), Duration::from_secs(30), || {
            self.incidents(app).into_iter().next()
        })
    }

    fn held(&self, node: usize) -> Vec<Value> {
        let (status, list) = self.api(node, "GET", &format!("/v1/held?tenant={TENANT}"), None);
        assert_eq!(status, 200, "{list}");
        list.as_array().cloned().unwrap_or_default()
    }

    /// The ids of the demo application's messages delivered (captured).
    fn delivered(&self) -> Vec<String> {
        self.delivery()
            .captured()
            .into_iter()
            .filter(|(_, content)| String::from_utf8_lossy(content).contains(&format!("From: {SENDER}")))
            .map(|(id, _)| id)
            .collect()
    }

    /// The captured alert e-mails to `to`.
    fn alert_mails(&self, to: &str) -> Vec<String> {
        self.delivery()
            .captured()
            .into_iter()
            .map(|(_, content)| String::from_utf8_lossy(&content).into_owned())
            .filter(|c| c.contains(&format!("To: <{to}>")) && c.contains("Subject: [Ferry] incident"))
            .collect()
    }
}

#[test]
fn a_breach_is_held_on_the_embedded_store() {
    breach_is_held(&World::start(false, &[]));
}

#[test]
fn a_breach_is_held_on_redis_with_two_ingress_nodes() {
    breach_is_held(&World::start(true, &[]));
}

fn breach_is_held(w: &World) {
    let password = w.nodes[0].password.clone();
    // Ordinary: a few messages to one domain.
    let replies = w.send(0, USER, &password, SENDER, 3, 1);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    w.judged();
    assert!(
        w.incidents(USER).is_empty(),
        "an ordinary hour raised {:?}",
        w.incidents(USER)
    );

    // The breach: a burst to many domains the application never mailed.
    let replies = w.send(0, USER, &password, SENDER, 40, 25);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let incident = w.wait_incident(USER);
    assert_eq!(incident["policy"], "hold", "{incident}");
    assert_eq!(incident["severity"], "high", "{incident}");
    let signals: Vec<&str> = incident["evidence"]
        .as_array()
        .map(|e| e.iter().filter_map(|s| s["signal"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        signals.contains(&"volume") && signals.contains(&"domains"),
        "{incident}"
    );
    let volume = incident["evidence"]
        .as_array()
        .and_then(|e| e.iter().find(|s| s["signal"] == "volume"))
        .cloned()
        .unwrap_or_default();
    assert!(volume["observed"].as_f64().is_some_and(|o| o >= 43.0), "{volume}");
    assert!(volume["threshold"].as_f64().is_some_and(|t| t >= 20.0), "{volume}");

    // Later mail is still answered 250, on every ingress node, and held.
    let before = w.delivered().len();
    let last = w.ingress() - 1;
    let replies = w.send(last, USER, &password, SENDER, 4, 4);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    let held = wait_for("4 held messages", Duration::from_secs(10), || {
        let held = w.held(0);
        (held.len() == 4).then_some(held)
    });
    assert!(held.iter().all(|h| h["incident"] == incident["id"]), "{held:?}");
    let (status, shown) = w.api(
        0,
        "GET",
        &format!("/v1/incidents/{}", incident["id"].as_str().unwrap_or("")),
        None,
    );
    assert_eq!((status, shown["held"].as_u64()), (200, Some(4)), "{shown}");

    // Told once: the contact and the admins by e-mail, the webhook signed.
    let alert = wait_for("the incident at the alert webhook", Duration::from_secs(20), || {
        w.hook.requests().into_iter().find(|r| r["alert"]["kind"] == "incident")
    });
    assert_eq!(alert["signature_ok"], true, "{alert}");
    assert_eq!(alert["alert"]["incident"]["id"], incident["id"], "{alert}");
    for to in [CONTACT, ADMINS] {
        let mails = wait_for(&format!("the incident e-mail to {to}"), Duration::from_secs(20), || {
            let m = w.alert_mails(to);
            (!m.is_empty()).then_some(m)
        });
        assert!(
            mails[0].contains("volume") && mails[0].contains("ferry held"),
            "{}",
            mails[0]
        );
    }

    // Release one (through the first node, whichever took it): delivered once.
    let first = held[0]["id"].as_str().unwrap_or("").to_string();
    let (status, body) = w.api(0, "POST", &format!("/v1/held/{first}/release"), None);
    assert_eq!(status, 204, "{body}");
    wait_for("the released message delivered", Duration::from_secs(20), || {
        w.delivered().contains(&first).then_some(())
    });
    let (status, _) = w.api(0, "POST", &format!("/v1/held/{first}/release"), None);
    assert_eq!(status, 404, "released once");

    // Discard the rest: never delivered, each with its event.
    let (status, done) = w.api(
        0,
        "POST",
        "/v1/held/actions",
        Some(json!({"tenant": TENANT, "app": USER, "action": "discard"})),
    );
    assert_eq!((status, done["discarded"].as_u64()), (200, Some(3)), "{done}");
    assert!(w.held(0).is_empty());
    let (_, page) = w.api(
        0,
        "GET",
        &format!("/v1/events?app={USER}&kind=discarded&limit=1000"),
        None,
    );
    assert_eq!(page["events"].as_array().map(Vec::len), Some(3), "{page}");
    let (_, page) = w.api(
        0,
        "GET",
        &format!("/v1/events?app={USER}&kind=released&limit=1000"),
        None,
    );
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");

    // Resolved: new mail flows again; the alert went out once.
    let id = incident["id"].as_str().unwrap_or("");
    let (status, closed) = w.api(
        0,
        "POST",
        &format!("/v1/incidents/{id}/resolve"),
        Some(json!({"verdict": "compromised", "note": "password leaked in a repository"})),
    );
    assert_eq!(status, 200, "{closed}");
    let (status, again) = w.api(
        0,
        "POST",
        &format!("/v1/incidents/{id}/resolve"),
        Some(json!({"verdict": "false_alarm"})),
    );
    assert_eq!(status, 409, "{again}");
    let replies = w.send(0, USER, &password, SENDER, 1, 1);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    wait_for("mail delivered again", Duration::from_secs(20), || {
        (w.delivered().len() == before + 2).then_some(())
    });
    let incident_alerts = w
        .hook
        .requests()
        .iter()
        .filter(|r| r["alert"]["kind"] == "incident")
        .count();
    assert_eq!(incident_alerts, 1);
    assert_eq!(w.alert_mails(CONTACT).len(), 1);
    let opened: f64 = w
        .nodes
        .iter()
        .map(|n| n.metric("ferry_incidents_total{signal=\"volume\"}"))
        .sum();
    assert_eq!(opened, 1.0, "one incident, raised once");
    let (_, audit) = w.api(0, "GET", "/v1/audit", None);
    let actions = audit.to_string();
    assert!(
        actions.contains("held.release")
            && actions.contains("held.discard_all")
            && actions.contains("incident.resolve"),
        "{audit}"
    );
}

#[test]
fn suspend_refuses_sign_ins_until_enabled_and_alert_only_alerts() {
    let w = World::start(
        false,
        &[
            ("payroll", "payroll@acme.test"),
            ("news", "news@acme.test"),
            ("guessed", "guessed@acme.test"),
        ],
    );
    let (payroll, news, guessed) = (w.passwords[0].clone(), w.passwords[1].clone(), w.passwords[2].clone());

    let (status, t) = w.api(
        0,
        "PUT",
        &format!("/v1/tenants/{TENANT}/incident-policy"),
        Some(json!({"policy": "suspend"})),
    );
    assert_eq!((status, t["incident_policy"].as_str()), (200, Some("suspend")), "{t}");
    w.send(0, "payroll", &payroll, "payroll@acme.test", 40, 25);
    let incident = w.wait_incident("payroll");
    assert_eq!(incident["policy"], "suspend");
    let node = &w.nodes[0];
    let refused = wait_for("payroll's sign-in refused", Duration::from_secs(20), || {
        let mut smtp = Smtp::submission(node.submission.expect("submission"), &node.pki.ca_der);
        let reply = smtp.auth_plain("payroll", &payroll);
        reply.starts_with("535").then_some(reply)
    });
    assert!(refused.starts_with("535 5.7.8"), "{refused}");
    let (status, _) = w.api(0, "POST", "/v1/apps/payroll/enable", None);
    assert_eq!(status, 200);
    wait_for("payroll signs in again", Duration::from_secs(20), || {
        let mut smtp = Smtp::submission(node.submission.expect("submission"), &node.pki.ca_der);
        smtp.auth_plain("payroll", &payroll).starts_with("235").then_some(())
    });

    let (status, _) = w.api(
        0,
        "PUT",
        &format!("/v1/tenants/{TENANT}/incident-policy"),
        Some(json!({"policy": "alert"})),
    );
    assert_eq!(status, 200);
    w.send(0, "news", &news, "news@acme.test", 40, 25);
    let incident = w.wait_incident("news");
    assert_eq!(incident["policy"], "alert");
    let replies = w.send(0, "news", &news, "news@acme.test", 2, 1);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    assert!(
        w.held(0).iter().all(|h| h["app"] != "news"),
        "alert holds nothing: {:?}",
        w.held(0)
    );
    let news_delivered = wait_for("all of news's mail delivered", Duration::from_secs(30), || {
        let n = w
            .delivery()
            .captured()
            .iter()
            .filter(|(_, c)| String::from_utf8_lossy(c).contains("From: news@acme.test"))
            .count();
        (n == 42).then_some(n)
    });
    assert_eq!(news_delivered, 42);
    wait_for("the alert webhook told of both", Duration::from_secs(20), || {
        let kinds = w
            .hook
            .requests()
            .iter()
            .filter(|r| r["alert"]["kind"] == "incident")
            .count();
        (kinds == 2).then_some(())
    });

    // A guessed password: locked out, then signed in from the same address.
    assert!(w.incidents("guessed").is_empty());
    for _ in 0..3 {
        let mut smtp = Smtp::submission(node.submission.expect("submission"), &node.pki.ca_der);
        let reply = smtp.auth_plain("guessed", "not-the-password");
        assert!(reply.starts_with("535"), "{reply}");
    }
    wait_for(
        "guessed signs in once the lockout ends",
        Duration::from_secs(20),
        || {
            let mut smtp = Smtp::submission(node.submission.expect("submission"), &node.pki.ca_der);
            smtp.auth_plain("guessed", &guessed).starts_with("235").then_some(())
        },
    );
    let incident = w.wait_incident("guessed");
    assert_eq!(incident["severity"], "medium", "{incident}");
    assert_eq!(incident["evidence"][0]["signal"], "lockout_then_success", "{incident}");
}
