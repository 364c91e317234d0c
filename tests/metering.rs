//! Contracted volume end to end: counts charged with the spool, exactly one
//! alert per threshold however many sessions race, delivered to a real
//! webhook (signed, idempotent, retried), hard caps, and finance reports.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::WebhookReceiver;
use ferry_testkit::{Ferry, SENDER, USER, wait_for};

const SECRET: &str = "test-webhook-secret";

fn send_one(ferry: &Ferry, user: &str, password: &str, from: &str, subject: &str) -> String {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(user, password).starts_with("235"));
    let content = format!("From: {from}\r\nSubject: {subject}\r\n\r\nbody\r\n");
    smtp.send_message(from, &["r@example.net"], content.as_bytes())
}

fn report_json(ferry: &Ferry) -> serde_json::Value {
    serde_json::from_str(&ferry.cli_ok(&["report", "usage", "--format", "json"])).expect("report json")
}

#[test]
fn racing_sessions_raise_one_signed_alert_and_reports_count_every_message() {
    let hook = WebhookReceiver::start(SECRET, 0);
    let mut ferry = Ferry::prepare(&[
        ("alerts.yearly_percent", "80"),
        ("alerts.webhook_url", &hook.url),
        ("alerts.webhook_secret", SECRET),
        ("admin.listen", "127.0.0.1:0"),
    ]);
    let reports = ferry.add_app("reports", &["--from", "reports@acme.test", "--allow", "127.0.0.1"]);
    ferry.cli_ok(&["tenant", "allocate", ferry_testkit::TENANT, "--yearly", "50"]);
    ferry.launch();
    let billing = ferry.password.clone();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let (ferry, billing, reports) = (&ferry, &billing, &reports);
                scope.spawn(move || {
                    if i % 4 == 0 {
                        send_one(ferry, "reports", reports, "reports@acme.test", &format!("m{i}"))
                    } else {
                        send_one(ferry, USER, billing, SENDER, &format!("m{i}"))
                    }
                })
            })
            .collect();
        for h in handles {
            let reply = h.join().expect("client");
            assert!(reply.starts_with("250 2.0.0"), "{reply}");
        }
    });
    let got = wait_for("the alert at the webhook", Duration::from_secs(20), || {
        let r = hook.requests();
        (!r.is_empty()).then_some(r)
    });
    // Give a duplicate every chance to show up before counting.
    ferry.wait_for_log("charge-back alert", "yearly:t:acme:80:");
    let got = wait_for("the outbox to settle", Duration::from_secs(10), || {
        let again = hook.requests();
        (again.len() == got.len()).then_some(again)
    });
    let keys: BTreeSet<&str> = got.iter().filter_map(|r| r["idempotency_key"].as_str()).collect();
    assert_eq!(keys.len(), 1, "exactly one alert: {got:?}");
    assert!(keys.iter().next().is_some_and(|k| k.starts_with("yearly:t:acme:80:")));
    let alert = &got[0]["alert"];
    assert_eq!(got[0]["signature_ok"], true);
    assert_eq!((alert["limit"].as_u64(), alert["value"].as_u64()), (Some(40), Some(40)));
    assert_eq!(alert["drivers"][0]["tenant"], "acme");
    let apps: Vec<&str> = alert["drivers"][0]["applications"]
        .as_array()
        .expect("apps")
        .iter()
        .filter_map(|a| a["application"].as_str())
        .collect();
    assert!(apps.contains(&"billing") && apps.contains(&"reports"), "{apps:?}");

    let metrics_url = format!("http://{}/metrics", ferry.admin.expect("admin endpoint"));
    let metrics = Command::new("curl")
        .args(["--silent", "--fail", &metrics_url])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("ferry_alerts_total{kind=\"yearly\",scope=\"t:acme\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_messages_accepted_total{app=\"billing\",tenant=\"acme\"} 30"),
        "{metrics}"
    );
    // Every message captured, every session closed.
    wait_for("delivery and session metrics", Duration::from_secs(20), || {
        let out = Command::new("curl")
            .args(["--silent", "--fail", &metrics_url])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("ferry_delivery_attempts_total{result=\"delivered\"} 40")
            && text.contains("\nferry_sessions 0\n"))
        .then_some(())
    });

    ferry.stop();
    let report = report_json(&ferry);
    let acme = &report["tenants"][0];
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["usage"]["messages"], 40);
    assert_eq!(acme["applications"]["billing"]["usage"]["messages"], 30);
    assert_eq!(acme["applications"]["reports"]["usage"]["messages"], 10);
    assert_eq!(report["organisation"]["usage"]["messages"], 40);
    let alerts = ferry.cli_ok(&["report", "alerts"]);
    assert!(
        alerts.contains("yearly:t:acme:80:") && alerts.contains("delivered"),
        "{alerts}"
    );
}

#[test]
fn an_alert_waits_out_a_webhook_outage() {
    let hook = WebhookReceiver::start(SECRET, 2);
    let mut ferry = Ferry::prepare(&[
        ("alerts.yearly_percent", "100"),
        ("alerts.webhook_url", &hook.url),
        ("alerts.webhook_secret", SECRET),
    ]);
    ferry.cli_ok(&["tenant", "allocate", ferry_testkit::TENANT, "--yearly", "1"]);
    ferry.launch();
    assert!(send_one(&ferry, USER, &ferry.password.clone(), SENDER, "over").starts_with("250"));
    let got = wait_for("the alert after two refusals", Duration::from_secs(30), || {
        let r = hook.requests();
        r.iter().any(|e| e["status"] == 200).then_some(r)
    });
    assert!(got.len() >= 3, "{got:?}");
    let keys: BTreeSet<&str> = got.iter().filter_map(|r| r["idempotency_key"].as_str()).collect();
    assert_eq!(keys.len(), 1, "every retry carries the same idempotency key");
    assert!(got.iter().all(|r| r["signature_ok"] == true));
}

#[test]
fn a_hard_hourly_cap_defers_and_the_count_stays() {
    let mut ferry = Ferry::prepare(&[]);
    ferry.cli_ok(&["app", "cap", USER, "--per-hour", "2"]);
    ferry.launch();
    let password = ferry.password.clone();
    for i in 0..2 {
        assert!(send_one(&ferry, USER, &password, SENDER, &format!("ok{i}")).starts_with("250"));
    }
    let refused = send_one(&ferry, USER, &password, SENDER, "over");
    assert!(
        refused.starts_with("451 4.7.1") && refused.contains("hourly cap of 2 messages"),
        "{refused}"
    );
    ferry.stop();
    assert_eq!(report_json(&ferry)["organisation"]["usage"]["messages"], 2);
}

#[test]
fn the_charge_back_csv_parses_and_sums_to_the_total() {
    let mut ferry = Ferry::prepare(&[
        ("contract.yearly_total", "10"),
        ("contract.price_per_unit_over_yearly", "0.37"),
        ("contract.currency", "CHF"),
    ]);
    ferry.cli_ok(&["tenant", "add", "lab", "--domain", "lab.test"]);
    let lab = ferry.add_app_in("lab", "lab-app", &["--from", "a@lab.test", "--allow", "127.0.0.1"]);
    ferry.launch();
    let billing = ferry.password.clone();
    for i in 0..9 {
        assert!(send_one(&ferry, USER, &billing, SENDER, &format!("b{i}")).starts_with("250"));
    }
    for i in 0..4 {
        assert!(send_one(&ferry, "lab-app", &lab, "a@lab.test", &format!("l{i}")).starts_with("250"));
    }
    ferry.stop();
    let report = report_json(&ferry);
    // 13 messages against 10 contracted: 3 × 0.37 = 1.11 CHF, split by use 9:4.
    assert_eq!(report["cost_cents"], 111);
    let csv = ferry.cli_ok(&["report", "usage", "--format", "csv"]);
    let script = "import csv,sys\nrows=list(csv.DictReader(sys.stdin))\nprint(len(rows), round(sum(float(r['charge']) for r in rows)*100), ','.join(r['tenant'] for r in rows))";
    assert_eq!(python_with_stdin(script, &csv).trim(), "2 111 acme,lab", "{csv}");
    let focus = ferry.cli_ok(&["report", "usage", "--format", "focus"]);
    let out = python_with_stdin(FOCUS_1_0_RULES, &focus);
    assert_eq!(out.trim(), "ok 2 rows 111", "{focus}");
}

/// The FOCUS 1.0 column rules the dataset must meet: mandatory columns,
/// allowed values, decimal costs, ISO 8601 UTC periods, ISO 4217 currency.
const FOCUS_1_0_RULES: &str = r#"
import csv, re, sys
rows = list(csv.DictReader(sys.stdin))
mandatory = ["BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
             "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodEnd",
             "ChargePeriodStart", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost",
             "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName"]
missing = [c for c in mandatory if c not in rows[0]]
assert not missing, missing
iso = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
total = 0
for r in rows:
    assert r["ChargeCategory"] in ("Usage", "Purchase", "Tax", "Credit", "Adjustment"), r
    assert r["ChargeClass"] in ("", "Correction"), r
    assert re.match(r"^[A-Z]{3}$", r["BillingCurrency"]), r
    for c in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
        assert iso.match(r[c]), (c, r[c])
    for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "PricingQuantity", "ConsumedQuantity"):
        float(r[c])
    assert r["ServiceCategory"] in ("Networking", "Other"), r
    assert all(k.startswith("x_") or k in mandatory or k in ("ChargeFrequency", "ConsumedQuantity", "ConsumedUnit", "SubAccountId", "SubAccountName") for k in r)
    total += round(float(r["BilledCost"]) * 100)
print("ok", len(rows), "rows", total)
"#;

fn python_with_stdin(script: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn when_recipients_are_the_unit_the_recipient_past_a_cap_is_deferred_at_rcpt() {
    let mut ferry = Ferry::prepare(&[("contract.unit", "recipients")]);
    ferry.cli_ok(&["app", "cap", USER, "--per-hour", "3"]);
    ferry.launch();
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    assert!(smtp.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
    for i in 0..3 {
        assert!(smtp.cmd(&format!("RCPT TO:<r{i}@example.net>")).starts_with("250"));
    }
    let fourth = smtp.cmd("RCPT TO:<r3@example.net>");
    assert!(
        fourth.starts_with("451 4.7.1") && fourth.contains("hourly cap of 3 recipients"),
        "{fourth}"
    );
    assert!(smtp.cmd("DATA").starts_with("354"));
    smtp.send(format!("From: {SENDER}\r\nSubject: three\r\n\r\nbody\r\n.\r\n").as_bytes());
    assert!(smtp.read_reply().starts_with("250 2.0.0"));
    ferry.stop();
    let report = report_json(&ferry);
    assert_eq!(report["unit"], "recipients");
    assert_eq!(report["organisation"]["usage"]["recipients"], 3);
}

#[test]
fn a_tenant_alert_is_also_mailed_to_its_contact() {
    let mut ferry = Ferry::prepare(&[("alerts.yearly_percent", "100")]);
    ferry.cli_ok(&[
        "tenant",
        "add",
        "lab",
        "--domain",
        "lab.test",
        "--contact",
        "lab-admin@lab.test",
    ]);
    let password = ferry.add_app_in("lab", "lab-app", &["--from", "a@lab.test", "--allow", "127.0.0.1"]);
    ferry.cli_ok(&["tenant", "allocate", "lab", "--yearly", "1"]);
    ferry.launch();
    assert!(send_one(&ferry, "lab-app", &password, "a@lab.test", "the one").starts_with("250"));
    let captured = ferry.wait_captured(2);
    let alert_mail = captured
        .iter()
        .map(|(_, eml)| String::from_utf8_lossy(eml).into_owned())
        .find(|eml| eml.contains("To: <lab-admin@lab.test>"))
        .expect("an alert e-mail to the tenant's contact");
    assert!(
        alert_mail.contains("Subject: [Ferry] tenant lab: 100 % of the tenant's allocated yearly total of 1 messages"),
        "{alert_mail}"
    );
    assert!(alert_mail.contains("Driven by: lab 100.0 %"), "{alert_mail}");
}
