//! The finance and tenant dashboard in a real browser: headless Chromium
//! (Debian's) driven by Playwright (`tests/clients/dashboard.py`). With a
//! finance token it shows the numbers the API returns for the same period,
//! formatted for people; its downloads are the API's report byte for byte;
//! a tenant-admin signing in with the form sees its own tenant only, its
//! open incident and the mail held under it, samples one, releases one and
//! discards the rest; and no request leaves the admin listener. The screenshot is kept in
//! `target/test-artifacts/dashboard.png`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::{Ferry, SENDER, TENANT, USER};

/// `messages` messages of 50 recipients each, from one session.
fn send(ferry: &Ferry, user: &str, password: &str, from: &str, messages: usize) {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(user, password).starts_with("235"));
    let to: Vec<String> = (0..50).map(|i| format!("r{i}@example.net")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    for n in 0..messages {
        let content = format!("From: {from}\r\nSubject: dashboard {n}\r\n\r\nbody\r\n");
        let reply = smtp.send_message(from, &to, content.as_bytes());
        assert!(reply.starts_with("250"), "{reply}");
    }
}

#[test]
fn the_dashboard_shows_the_apis_figures_to_each_role() {
    let mut ferry = Ferry::prepare(&[
        ("admin.listen", "127.0.0.1:0"),
        ("contract.unit", "recipients"),
        ("contract.yearly_total", "2000"),
        ("contract.hourly_peak", "1000"),
        ("contract.year_start", "2020-01-01"),
        ("contract.currency", "EUR"),
        ("contract.price_per_unit_over_peak", "0.5"),
        ("contract.price_per_unit_over_yearly", "1.25"),
    ]);
    ferry.cli_ok(&["tenant", "allocate", TENANT, "--yearly", "1000", "--hourly", "600"]);
    ferry.cli_ok(&["tenant", "add", "globex", "--domain", "globex.test"]);
    ferry.cli_ok(&["tenant", "allocate", "globex", "--yearly", "1000", "--hourly", "400"]);
    let globex = ferry.add_app_in(
        "globex",
        "globex-app",
        &["--from", "app@globex.test", "--allow", "127.0.0.0/8"],
    );
    let finance = ferry.add_token(&["--name", "finance", "--role", "finance"]);
    let acme_admin = ferry.add_token(&["--name", "acme it", "--role", "tenant-admin", "--tenant", TENANT]);
    let admin = ferry.add_token(&["--name", "ops", "--role", "admin"]);
    ferry.launch();
    // 1,100 recipients for acme (over its hourly and yearly allocation),
    // 300 for globex: 1,400 in one hour, 400 over the contracted peak.
    send(&ferry, USER, &ferry.password, SENDER, 22);
    send(&ferry, "globex-app", &globex, "app@globex.test", 6);
    let mut refused = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(refused.auth_plain(USER, "not the password").starts_with("535"));
    // Wait until every delivery is counted, so the page and the API read
    // the same figures.
    ferry_testkit::wait_for("1,400 deliveries counted", Duration::from_secs(60), || {
        let (_, body, _) = ferry.api("GET", "/v1/reports/outcomes", Some(&finance), None);
        let delivered: u64 = body["applications"]
            .as_array()?
            .iter()
            .filter_map(|r| r["delivered"].as_u64())
            .sum();
        (delivered >= 1400).then_some(())
    });
    // A leak reported from outside: an incident opened by hand holds the
    // application's next messages, for the tenant-admin to decide on.
    let body = serde_json::json!({"app": USER, "note": "password seen in a paste"}).to_string();
    let (status, incident, _) = ferry.api("POST", "/v1/incidents", Some(&admin), Some(&body));
    assert_eq!(status, 201, "{incident}");
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    for n in 0..3 {
        let content = format!("From: {SENDER}\r\nSubject: held {n}\r\n\r\nbody\r\n");
        let reply = smtp.send_message(SENDER, &["held@example.net"], content.as_bytes());
        assert!(reply.starts_with("250"), "{reply}");
    }

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let python = ferry_testkit::servers::tool("peers/bin/python", "FERRY_PEERS_PYTHON");
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/dashboard.py"))
        .args(["--admin", &format!("http://{}", ferry.admin.expect("admin"))])
        .args(["--finance", &finance, "--tenant-admin", &acme_admin])
        .args(["--tenant", TENANT, "--other-tenant", "globex"])
        .arg("--screenshot")
        .arg(artifacts.join("dashboard.png"))
        .output()
        .expect("run the browser client (scripts/install-test-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the dashboard check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("summary json");
    eprintln!("the browser's findings: {summary}");
    assert!(summary["requests"].as_u64() > Some(5), "{summary}");
    assert_eq!(summary["outside_loopback"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["acme_charge_text"], "€200.00", "{summary}");
    assert!(artifacts.join("dashboard.png").exists());
    assert!(ferry.stop().success());
}
