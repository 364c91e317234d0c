//! The admin API through real HTTP (curl) against the running relay, on
//! both store backends: tokens and roles, onboarding that takes effect at
//! once, and bad input answered with problem details that change nothing.

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Dns, Redis, free_port};
use ferry_testkit::{Ferry, SENDER, TENANT, USER};
use serde_json::json;
use std::time::Duration;

/// Tokens by role, made with the CLI before the relay starts.
struct Tokens {
    admin: String,
    finance: String,
    acme_admin: String,
}

/// A relay with a second tenant and its app, three tokens, and the admin API.
fn start(settings: &[(&str, &str)]) -> (Ferry, Tokens) {
    let mut all = vec![("admin.listen", "127.0.0.1:0")];
    all.extend_from_slice(settings);
    let mut ferry = Ferry::prepare(&all);
    ferry.cli_ok(&["tenant", "add", "globex", "--domain", "globex.test"]);
    ferry.add_app_in(
        "globex",
        "globex-app",
        &["--from", "app@globex.test", "--allow", "127.0.0.0/8"],
    );
    let tokens = Tokens {
        admin: ferry.add_token(&["--name", "ops", "--role", "admin"]),
        finance: ferry.add_token(&["--name", "finance", "--role", "finance"]),
        acme_admin: ferry.add_token(&["--name", "acme it", "--role", "tenant-admin", "--tenant", TENANT]),
    };
    ferry.launch();
    (ferry, tokens)
}

/// A GET's body exactly as sent (CSV, JSON with its own spacing).
fn body_of(ferry: &Ferry, path: &str, token: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{}{path}", ferry.admin.expect("admin")))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn login(ferry: &Ferry, user: &str, password: &str) -> String {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    smtp.auth_plain(user, password)
}

fn roles_and_live_onboarding(ferry: &Ferry, t: &Tokens) {
    // No token, a made-up one: 401 as problem details.
    let (status, body, kind) = ferry.api("GET", "/v1/tenants", None, None);
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    assert!(kind.starts_with("application/problem+json"), "{kind}");
    let fake = format!("ferry_0123456789ab_{}", "x".repeat(40));
    assert_eq!(ferry.api("GET", "/v1/tenants", Some(&fake), None).0, 401);

    // An admin onboards an application; it sends at once.
    let app = json!({
        "username": "payroll", "tenant": TENANT,
        "envelope_from": ["payroll@acme.test"], "allowed_networks": ["127.0.0.0/8"]
    })
    .to_string();
    let (status, created, _) = ferry.api("POST", "/v1/apps", Some(&t.admin), Some(&app));
    assert_eq!(status, 201, "{created}");
    assert!(created.get("password_hash").is_none(), "{created}");
    let password = created["password"].as_str().expect("password shown once").to_string();
    assert!(
        login(ferry, "payroll", &password).starts_with("235"),
        "a new app signs in at once"
    );
    let (status, again, _) = ferry.api("POST", "/v1/apps", Some(&t.admin), Some(&app));
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("already_exists")),
        "{again}"
    );

    // Finance reads tenants, never changes or lists applications.
    let (status, tenants, _) = ferry.api("GET", "/v1/tenants", Some(&t.finance), None);
    assert_eq!((status, tenants.as_array().map(Vec::len)), (200, Some(2)), "{tenants}");
    let (status, refused, _) = ferry.api("POST", "/v1/apps", Some(&t.finance), Some(&app));
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("forbidden")),
        "{refused}"
    );
    assert_eq!(ferry.api("GET", "/v1/apps", Some(&t.finance), None).0, 403);

    // A tenant-admin sees its own tenant only; another's is as if absent.
    let (status, own, _) = ferry.api("GET", "/v1/apps", Some(&t.acme_admin), None);
    assert_eq!(status, 200);
    let names: Vec<&str> = own
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["username"].as_str())
        .collect();
    assert!(names.contains(&USER) && !names.contains(&"globex-app"), "{names:?}");
    let (status, hidden, _) = ferry.api("GET", "/v1/apps/globex-app", Some(&t.acme_admin), None);
    assert_eq!(status, 404, "{hidden}");
    assert!(!hidden.to_string().contains("globex.test"), "nothing leaks: {hidden}");
    assert_eq!(ferry.api("GET", "/v1/tenants/globex", Some(&t.acme_admin), None).0, 404);
    let tenants = ferry.api("GET", "/v1/tenants", Some(&t.acme_admin), None).1;
    assert_eq!(tenants.as_array().map(Vec::len), Some(1), "{tenants}");
    let theirs = json!({"username": "sneaky", "tenant": "globex", "envelope_from": ["x@globex.test"]}).to_string();
    assert_eq!(ferry.api("POST", "/v1/apps", Some(&t.acme_admin), Some(&theirs)).0, 404);

    // Disabled: the next AUTH is refused; enabled again: it works.
    let (status, _, _) = ferry.api("POST", "/v1/apps/payroll/disable", Some(&t.acme_admin), None);
    assert_eq!(status, 200);
    assert!(login(ferry, "payroll", &password).starts_with("535 5.7.8"));
    assert_eq!(
        ferry.api("POST", "/v1/apps/payroll/enable", Some(&t.admin), None).0,
        200
    );
    assert!(login(ferry, "payroll", &password).starts_with("235"));
    ferry.wait_for_log("admin change", "app.disable");
}

fn bad_input_changes_nothing(ferry: &Ferry, t: &Tokens) {
    let admin = Some(t.admin.as_str());
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        ("{not json".into(), 400, "malformed_json", None),
        (
            json!({"name": "x-dept", "domains": ["x.test"], "colour": "red"}).to_string(),
            422,
            "invalid_field",
            Some("colour"),
        ),
        (
            json!({"name": "x-dept", "domains": "x.test"}).to_string(),
            422,
            "invalid_field",
            Some("domains"),
        ),
        (
            json!({"name": "x-dept", "domains": ["localhost"]}).to_string(),
            422,
            "invalid_domain",
            Some("domains"),
        ),
        (
            json!({"name": TENANT, "domains": ["acme.test"]}).to_string(),
            409,
            "already_exists",
            None,
        ),
        (
            format!("{{\"name\": \"{}\"}}", "x".repeat(70_000)),
            413,
            "body_too_large",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, problem, kind) = ferry.api("POST", "/v1/tenants", admin, Some(&body));
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{problem}");
        assert_eq!(problem["field"].as_str(), field, "{problem}");
        assert!(kind.starts_with("application/problem+json"), "{kind}");
    }
    let foreign = json!({
        "username": "outsider", "tenant": TENANT, "envelope_from": ["x@globex.test"]
    })
    .to_string();
    let (status, problem, _) = ferry.api("POST", "/v1/apps", admin, Some(&foreign));
    assert_eq!(
        (status, problem["code"].as_str(), problem["field"].as_str()),
        (422, Some("foreign_domain"), Some("envelope_from"))
    );
    let big = json!({
        "username": "big", "tenant": TENANT, "envelope_from": ["big@acme.test"],
        "limits": {"max_recipients": 0}
    })
    .to_string();
    let (status, problem, _) = ferry.api("POST", "/v1/apps", admin, Some(&big));
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("limits.max_recipients")),
        "{problem}"
    );
    let ghost = json!({"username": "ghost", "tenant": "nowhere", "envelope_from": ["g@nowhere.test"]}).to_string();
    assert_eq!(ferry.api("POST", "/v1/apps", admin, Some(&ghost)).0, 404);
    assert_eq!(
        ferry.api("GET", "/v1/no-such-thing", admin, None).1["code"],
        "no_such_route"
    );

    // Nothing above was created.
    let tenants = ferry.api("GET", "/v1/tenants", admin, None).1;
    assert_eq!(tenants.as_array().map(Vec::len), Some(2), "{tenants}");
    for name in ["outsider", "big", "ghost"] {
        assert_eq!(
            ferry.api("GET", &format!("/v1/apps/{name}"), admin, None).0,
            404,
            "{name}"
        );
    }
}

/// The API's report is the CLI's, byte for byte; a tenant-admin's has its
/// own tenant only.
fn reports_are_the_clis(ferry: &Ferry, t: &Tokens) {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: counted\r\n\r\nbody\r\n");
    assert!(
        smtp.send_message(SENDER, &["r@example.net"], content.as_bytes())
            .starts_with("250")
    );
    for format in ["csv", "focus", "json"] {
        let cli = ferry.cli_ok(&["report", "usage", "--format", format, "--to", "2099-12-31"]);
        let api = body_of(
            ferry,
            &format!("/v1/reports/usage?format={format}&to=2099-12-31"),
            &t.finance,
        );
        if format == "json" {
            // The report is made at two moments: compare everything but its clock.
            let strip = |s: &str| {
                let mut v: serde_json::Value = serde_json::from_str(s).expect("json");
                v.as_object_mut().map(|o| o.remove("generated_ms"));
                v
            };
            assert_eq!(strip(&api), strip(&cli), "json");
        } else {
            assert_eq!(api, cli, "{format}: the API's report is the CLI's");
        }
    }
    let (status, own, _) = ferry.api("GET", "/v1/reports/usage?to=2099-12-31", Some(&t.acme_admin), None);
    assert_eq!(status, 200, "{own}");
    let tenants: Vec<&str> = own["tenants"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["tenant"].as_str())
        .collect();
    assert_eq!(tenants, [TENANT], "{own}");
    assert!(
        own.get("organisation").is_none(),
        "no organisation totals for a tenant-admin: {own}"
    );
    for field in ["cost_cents", "yearly_excess_units", "peak_cost_cents"] {
        assert!(own.get(field).is_none(), "{field} is the organisation's: {own}");
    }
    assert!(
        own["tenants"][0].get("share").is_none(),
        "a share of the organisation's units gives its total away: {own}"
    );
    let csv = body_of(ferry, "/v1/reports/usage?format=csv&to=2099-12-31", &t.acme_admin);
    let row: Vec<&str> = csv.lines().nth(1).expect("a row").split(',').collect();
    assert_eq!(
        (row[2], row[9]),
        (TENANT, ""),
        "no share_percent for a tenant-admin: {csv}"
    );
    let (status, _, _) = ferry.api("GET", "/v1/reports/usage?tenant=globex", Some(&t.acme_admin), None);
    assert_eq!(status, 404);
    let (status, problem, _) = ferry.api("GET", "/v1/reports/usage?format=pdf", Some(&t.finance), None);
    assert_eq!((status, problem["field"].as_str()), (422, Some("format")), "{problem}");
    let (status, problem, _) = ferry.api("GET", "/v1/reports/usage?from=yesterday", Some(&t.finance), None);
    assert_eq!((status, problem["field"].as_str()), (422, Some("from")), "{problem}");
    assert_eq!(ferry.api("GET", "/v1/alerts", Some(&t.finance), None).0, 200);
}

/// Per application: relayed, refused by reason (sign-in, sender, size),
/// delivered; the CLI's CSV is the API's; a tenant-admin sees its own.
fn outcomes_per_application(ferry: &Ferry, t: &Tokens) {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, "not the password").starts_with("535"));
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    assert!(smtp.cmd("MAIL FROM:<boss@acme.test>").starts_with("550 5.7.1"));
    assert!(
        smtp.cmd("MAIL FROM:<billing@acme.test> SIZE=999999999999")
            .starts_with("552 5.3.4")
    );
    let content = format!("From: {SENDER}\r\nSubject: outcome\r\n\r\nbody\r\n");
    assert!(
        smtp.send_message(SENDER, &["r1@example.net", "r2@example.net"], content.as_bytes())
            .starts_with("250")
    );
    let path = "/v1/reports/outcomes?to=2099-12-31";
    let row = ferry_testkit::wait_for("the outcomes counted", Duration::from_secs(20), || {
        let (status, body, _) = ferry.api("GET", path, Some(&t.finance), None);
        assert_eq!(status, 200, "{body}");
        let row = body["applications"]
            .as_array()?
            .iter()
            .find(|r| r["app"] == USER)?
            .clone();
        (row["delivered"].as_u64()? >= 2 && row["refused_total"].as_u64()? >= 3).then_some(row)
    });
    assert!(row["relayed"].as_u64() >= Some(1), "{row}");
    assert_eq!(row["bounced"], 0, "{row}");
    for reason in ["auth_failed", "sender_not_authorised", "size"] {
        assert!(row["refused"][reason].as_u64() >= Some(1), "{reason}: {row}");
    }
    let cli = ferry.cli_ok(&["report", "outcomes", "--format", "csv", "--to", "2099-12-31"]);
    let (_, _, kind) = ferry.api("GET", &format!("{path}&format=csv"), Some(&t.finance), None);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let api = body_of(ferry, &format!("{path}&format=csv"), &t.finance);
    assert_eq!(api, cli, "the API's CSV is the CLI's");
    assert!(cli.contains(&format!(",{TENANT},{USER},refused,size,1\n")), "{cli}");
    let (status, own, _) = ferry.api("GET", path, Some(&t.acme_admin), None);
    assert_eq!(status, 200);
    let tenants: Vec<&str> = own["applications"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["tenant"].as_str())
        .collect();
    assert!(tenants.iter().all(|t| *t == TENANT), "{own}");
    let (status, problem, _) = ferry.api("GET", &format!("{path}&format=focus"), Some(&t.finance), None);
    assert_eq!((status, problem["field"].as_str()), (422, Some("format")), "{problem}");
}

/// Updates and deletes, the tenant's contract settings, tokens over the
/// API, and every change in the audit log with its before and after.
fn changes_tokens_and_the_audit_log(ferry: &Ferry, t: &Tokens) {
    let app = json!({"username": "crm", "tenant": TENANT, "envelope_from": ["crm@acme.test"],
        "allowed_networks": ["127.0.0.0/8"]})
    .to_string();
    let (status, created, _) = ferry.api("POST", "/v1/apps", Some(&t.admin), Some(&app));
    assert_eq!(status, 201, "{created}");
    let password = created["password"].as_str().expect("password").to_string();

    // PATCH changes only what it names; a sender outside the tenant: 422, nothing changed.
    let patch = json!({"envelope_from": ["crm@acme.test", "crm2@acme.test"], "limits": {"max_recipients": 7}});
    let (status, updated, _) = ferry.api("PATCH", "/v1/apps/crm", Some(&t.acme_admin), Some(&patch.to_string()));
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["envelope_from"], json!(["crm@acme.test", "crm2@acme.test"]));
    assert_eq!(updated["limits"]["max_recipients"], 7);
    assert_eq!(updated["allowed_networks"], json!(["127.0.0.0/8"]), "{updated}");
    let bad = json!({"envelope_from": ["x@globex.test"]}).to_string();
    let (status, problem, _) = ferry.api("PATCH", "/v1/apps/crm", Some(&t.admin), Some(&bad));
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("envelope_from")),
        "{problem}"
    );
    let shown = ferry.api("GET", "/v1/apps/crm", Some(&t.admin), None).1;
    assert_eq!(shown["envelope_from"], updated["envelope_from"], "nothing changed");
    assert_eq!(ferry.api("PATCH", "/v1/apps/crm", Some(&t.finance), Some("{}")).0, 403);

    // A tenant with applications is not deleted; its settings change.
    let (status, problem, _) = ferry.api("DELETE", &format!("/v1/tenants/{TENANT}"), Some(&t.admin), None);
    assert_eq!((status, problem["code"].as_str()), (409, Some("in_use")), "{problem}");
    let narrowed = json!({"domains": ["elsewhere.test"]}).to_string();
    let path = format!("/v1/tenants/{TENANT}");
    let (status, problem, _) = ferry.api("PATCH", &path, Some(&t.admin), Some(&narrowed));
    let outcome = (status, problem["code"].as_str());
    assert_eq!(outcome, (409, Some("domain_in_use")), "its apps' senders: {problem}");
    let contact = json!({"contact": "it@acme.test"}).to_string();
    let (status, tenant, _) = ferry.api("PATCH", &path, Some(&t.admin), Some(&contact));
    assert_eq!((status, &tenant["contact"]), (200, &json!("it@acme.test")), "{tenant}");
    assert_eq!(tenant["domains"], json!(["acme.test"]), "{tenant}");
    // The largest allocations the API takes add up without overflowing
    // (Schemathesis found the contract's totals panicking on them).
    let huge = json!({"hourly": u64::MAX, "yearly": u64::MAX}).to_string();
    for tenant in ["globex", TENANT] {
        let path = format!("/v1/tenants/{tenant}/allocation");
        assert_eq!(ferry.api("PUT", &path, Some(&t.admin), Some(&huge)).0, 200);
    }
    let (status, contract, _) = ferry.api("GET", "/v1/contract", Some(&t.finance), None);
    assert_eq!(
        (status, &contract["allocated"]["yearly"]),
        (200, &json!(u64::MAX)),
        "{contract}"
    );
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: huge allocation\r\n\r\nbody\r\n");
    let reply = smtp.send_message(SENDER, &["r@example.net"], content.as_bytes());
    assert!(reply.starts_with("250"), "a message metered against it: {reply}");
    let none = json!({}).to_string();
    let path = format!("/v1/tenants/{TENANT}/allocation");
    assert_eq!(ferry.api("PUT", &path, Some(&t.admin), Some(&none)).0, 200);
    let body = json!({"hourly": 100, "yearly": 500000}).to_string();
    let (status, tenant, _) = ferry.api("PUT", "/v1/tenants/globex/allocation", Some(&t.admin), Some(&body));
    assert_eq!(
        (status, &tenant["allocation"]["hourly"]),
        (200, &json!(100)),
        "{tenant}"
    );
    let caps = json!({"per_hour": 1000}).to_string();
    assert_eq!(
        ferry
            .api("PUT", "/v1/tenants/globex/caps", Some(&t.acme_admin), Some(&caps))
            .0,
        403
    );
    let route = json!({"kind": "smarthost", "smarthost": "smtp.globex.test:587", "tls_required": true,
        "username": "relay", "password": "hunter2"})
    .to_string();
    let (status, tenant, _) = ferry.api("PUT", "/v1/tenants/globex/route", Some(&t.admin), Some(&route));
    assert_eq!(status, 200, "{tenant}");
    assert!(!tenant.to_string().contains("hunter2"), "{tenant}");
    let (status, contract, _) = ferry.api("GET", "/v1/contract", Some(&t.finance), None);
    assert_eq!(
        (status, &contract["allocated"]["hourly"]),
        (200, &json!(100)),
        "{contract}"
    );
    assert_eq!(ferry.api("GET", "/v1/contract", Some(&t.acme_admin), None).0, 403);

    // Deleted: it cannot sign in; a second delete is 404.
    assert_eq!(ferry.api("DELETE", "/v1/apps/crm", Some(&t.admin), None).0, 204);
    assert!(login(ferry, "crm", &password).starts_with("535"));
    assert_eq!(ferry.api("DELETE", "/v1/apps/crm", Some(&t.admin), None).0, 404);

    // Tokens: made (shown once), used, revoked; only admins.
    let new = json!({"name": "reporting job", "role": "finance"}).to_string();
    let (status, made, _) = ferry.api("POST", "/v1/tokens", Some(&t.admin), Some(&new));
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().expect("token shown once").to_string();
    assert_eq!(ferry.api("GET", "/v1/reports/usage", Some(&token), None).0, 200);
    let listed = ferry.api("GET", "/v1/tokens", Some(&t.admin), None).1;
    assert!(
        !listed.to_string().contains(&token[token.len() - 20..]),
        "no secret listed"
    );
    let id = made["id"].as_str().expect("id");
    assert_eq!(
        ferry.api("DELETE", &format!("/v1/tokens/{id}"), Some(&t.admin), None).0,
        200
    );
    assert_eq!(ferry.api("GET", "/v1/reports/usage", Some(&token), None).0, 401);
    assert_eq!(ferry.api("GET", "/v1/tokens", Some(&t.finance), None).0, 403);
    let scoped = json!({"name": "x", "role": "tenant-admin"}).to_string();
    let (status, problem, _) = ferry.api("POST", "/v1/tokens", Some(&t.admin), Some(&scoped));
    assert_eq!((status, problem["field"].as_str()), (422, Some("tenant")), "{problem}");

    // The audit log: who, what, before and after, never a secret.
    let (status, log, _) = ferry.api("GET", "/v1/audit?limit=1000", Some(&t.admin), None);
    assert_eq!(status, 200, "{log}");
    let entries = log.as_array().expect("entries");
    let find = |action: &str, object: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["object"] == object)
            .unwrap_or_else(|| panic!("{action} {object} in {log}"))
    };
    let update = find("app.update", "crm");
    assert_eq!(update["before"]["limits"]["max_recipients"], 50, "{update}");
    assert_eq!(update["after"]["limits"]["max_recipients"], 7, "{update}");
    assert_eq!(update["role"], "tenant-admin");
    assert!(find("app.delete", "crm")["after"].is_null());
    find("tenant.route", "globex");
    find("token.revoke", id);
    let text = log.to_string();
    for secret in ["hunter2", password.as_str(), token.as_str(), "password_hash"] {
        assert!(!text.contains(secret), "the audit log holds no secret ({secret})");
    }
    assert_eq!(ferry.api("GET", "/v1/audit", Some(&t.finance), None).0, 403);
    let (status, problem, _) = ferry.api("GET", "/v1/audit?from=yesterday", Some(&t.admin), None);
    assert_eq!((status, problem["field"].as_str()), (422, Some("from")), "{problem}");
}

#[test]
fn the_admin_api_on_the_embedded_store() {
    let (mut ferry, tokens) = start(&[]);
    roles_and_live_onboarding(&ferry, &tokens);
    bad_input_changes_nothing(&ferry, &tokens);
    outcomes_per_application(&ferry, &tokens);
    changes_tokens_and_the_audit_log(&ferry, &tokens);
    assert!(ferry.stop().success());
}

#[test]
fn the_admin_api_on_redis_and_a_revoked_token() {
    let redis = Redis::start();
    let url = redis.url();
    let (mut ferry, tokens) = start(&[("store.backend", "redis"), ("store.redis.url", url.as_str())]);
    roles_and_live_onboarding(&ferry, &tokens);
    bad_input_changes_nothing(&ferry, &tokens);
    reports_are_the_clis(&ferry, &tokens);
    outcomes_per_application(&ferry, &tokens);
    changes_tokens_and_the_audit_log(&ferry, &tokens);
    // With Redis the CLI works while the relay runs: a revoked token stops at once.
    let id = ferry
        .cli_ok(&["token", "list"])
        .lines()
        .find(|l| l.contains("\tfinance\t"))
        .and_then(|l| l.split('\t').next())
        .expect("finance token")
        .to_string();
    ferry.cli_ok(&["token", "revoke", &id]);
    assert_eq!(ferry.api("GET", "/v1/tenants", Some(&tokens.finance), None).0, 401);
    // A change by the CLI on the shared store is in the audit log too; a read is not.
    ferry.cli_ok(&["app", "list"]);
    let log = ferry.api("GET", "/v1/audit", Some(&tokens.admin), None).1;
    let revoked = format!("token revoke {id}");
    let cli: Vec<&serde_json::Value> = log
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["role"] == "cli")
        .collect();
    assert!(
        cli.iter()
            .any(|e| e["object"] == revoked.as_str() && e["actor"].as_str().is_some_and(|a| a.starts_with("cli:"))),
        "{log}"
    );
    assert!(!cli.iter().any(|e| e["object"] == "app list"), "{log}");
    assert!(ferry.stop().success());
}

#[test]
fn the_queue_over_the_api() {
    // Its MX refuses connections: the message waits in the queue.
    let dns = Dns::start(&[
        "--mx-host=example.net,mx.example.net,10".into(),
        "--host-record=mx.example.net,127.0.0.1".into(),
    ]);
    let (resolver, closed) = (dns.address(), free_port(&["127.0.0.1"]).to_string());
    let (mut ferry, t) = start(&[
        ("delivery.default_route", "mx"),
        ("delivery.resolver", &resolver),
        ("delivery.port", &closed),
    ]);
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: waits\r\n\r\nbody\r\n");
    let reply = smtp.send_message(SENDER, &["r@example.net"], content.as_bytes());
    let id = reply.trim_end().rsplit(' ').next().expect("queue id").to_string();
    let admin = Some(t.admin.as_str());
    let shown = ferry_testkit::wait_for("a failed attempt", std::time::Duration::from_secs(20), || {
        let (status, m, _) = ferry.api("GET", &format!("/v1/queue/{id}"), admin, None);
        (status == 200 && m["history"].as_array().is_some_and(|h| !h.is_empty())).then_some(m)
    });
    assert_eq!(shown["pending"], json!(["r@example.net"]), "{shown}");
    assert!(shown.get("content").is_none(), "content is never shown: {shown}");
    let (_, listed, _) = ferry.api("GET", "/v1/queue?tenant=acme", admin, None);
    assert!(
        listed
            .as_array()
            .is_some_and(|l| l.iter().any(|m| m["id"] == id.as_str())),
        "{listed}"
    );
    let (_, none, _) = ferry.api("GET", "/v1/queue?tenant=globex", admin, None);
    assert_eq!(none, json!([]));
    assert_eq!(ferry.api("GET", "/v1/queue", Some(&t.finance), None).0, 403);
    assert_eq!(
        ferry
            .api("POST", &format!("/v1/queue/{id}/retry"), Some(&t.acme_admin), None)
            .0,
        200
    );
    assert_eq!(ferry.api("GET", "/v1/queue/not-an-id", admin, None).0, 404);
    assert_eq!(ferry.api("DELETE", &format!("/v1/queue/{id}"), admin, None).0, 204);
    assert_eq!(ferry.api("GET", &format!("/v1/queue/{id}"), admin, None).0, 404);
    assert!(ferry.stop().success());
}

#[test]
fn a_password_rotated_with_an_overlap_keeps_both_working_until_it_ends() {
    let (mut ferry, t) = start(&[]);
    let admin = Some(t.admin.as_str());
    let old = ferry.password.clone();
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let body = json!({ "old_password_valid_until": until.to_string() }).to_string();
    let (status, rotated, _) = ferry.api("POST", &format!("/v1/apps/{USER}/rotate-password"), admin, Some(&body));
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["password"].as_str().expect("new password").to_string();
    assert!(
        login(&ferry, USER, &new).starts_with("235"),
        "the new password works at once"
    );
    assert!(
        login(&ferry, USER, &old).starts_with("235"),
        "the old one too, during the overlap"
    );
    let (_, shown, _) = ferry.api("GET", &format!("/v1/apps/{USER}"), admin, None);
    assert!(
        shown.get("previous_password").is_none() && !shown.to_string().contains("argon2"),
        "{shown}"
    );
    assert!(shown["previous_password_valid_until_ms"].is_u64(), "{shown}");

    // The overlap ends at the time set: then only the new password works.
    ferry_testkit::wait_for("the overlap to end", std::time::Duration::from_secs(10), || {
        (jiff::Timestamp::now() > until).then_some(())
    });
    assert!(
        login(&ferry, USER, &old).starts_with("535 5.7.8"),
        "the old password stopped"
    );
    assert!(login(&ferry, USER, &new).starts_with("235"));

    // Without an overlap the old password stops at once; bad times change nothing.
    let (_, rotated, _) = ferry.api("POST", &format!("/v1/apps/{USER}/rotate-password"), admin, None);
    let newest = rotated["password"].as_str().expect("password").to_string();
    assert!(
        login(&ferry, USER, &new).starts_with("535"),
        "no overlap asked: the old one stops"
    );
    let past = json!({ "old_password_valid_until": "2020-01-01T00:00:00Z" }).to_string();
    let (status, problem, _) = ferry.api("POST", &format!("/v1/apps/{USER}/rotate-password"), admin, Some(&past));
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("in_the_past")),
        "{problem}"
    );
    assert!(
        login(&ferry, USER, &newest).starts_with("235"),
        "a refused rotation changed nothing"
    );
    assert!(ferry.stop().success());
}

#[test]
fn the_cli_works_while_the_relay_runs_on_the_embedded_store() {
    let (mut ferry, t) = start(&[("server.reload_secs", "1")]);
    // Each of these needs the store the relay holds: they go through its API.
    let out = ferry.cli_ok(&[
        "app",
        "add",
        "live",
        "--tenant",
        TENANT,
        "--from",
        "live@acme.test",
        "--allow",
        "127.0.0.1",
    ]);
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("password")
        .to_string();
    assert!(
        login(&ferry, "live", &password).starts_with("235"),
        "an app added while the relay runs signs in"
    );
    assert!(ferry.cli_ok(&["app", "list"]).contains("live\tacme\tenabled"));
    assert!(
        ferry
            .cli_ok(&["tenant", "show", TENANT])
            .contains("applications: billing, live")
    );
    ferry.cli_ok(&["app", "disable", "live"]);
    assert!(login(&ferry, "live", &password).starts_with("535"));
    let log = ferry.api("GET", "/v1/audit", Some(&t.admin), None).1;
    let through_relay: Vec<&str> = log
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "cli")
        .filter_map(|e| e["object"].as_str())
        .collect();
    assert!(through_relay.contains(&"app disable live"), "{log}");
    assert!(!through_relay.contains(&"app list"), "reads are not changes: {log}");
    ferry.cli_ok(&[
        "dkim",
        "generate",
        "acme.test",
        "--selector",
        "live1",
        "--algorithm",
        "ed25519",
    ]);
    ferry.wait_for_log("DKIM signing keys", "live1");
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: signed live\r\n\r\nbody\r\n");
    assert!(
        smtp.send_message(SENDER, &["r@example.net"], content.as_bytes())
            .starts_with("250")
    );
    let captured = ferry.wait_captured(1);
    assert!(
        String::from_utf8_lossy(&captured[0].1).contains("s=live1"),
        "the new key signs the next message"
    );
    let csv = ferry.cli_ok(&["report", "usage", "--format", "csv"]);
    assert!(csv.starts_with("period_start,") && csv.contains(",acme,"), "{csv}");
    assert!(ferry.cli_ok(&["queue", "list"]).contains("message(s)"));
    assert!(ferry.cli_ok(&["token", "list"]).contains("local cli"));
    // A refusal keeps its message and its exit status.
    let refused = ferry.cli(&[
        "app",
        "add",
        "x@y",
        "--tenant",
        TENANT,
        "--from",
        "x@acme.test",
        "--allow",
        "127.0.0.1",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an e-mail address"));
    assert!(ferry.stop().success());
    // Stopped, the same commands open the store directly.
    assert!(ferry.cli_ok(&["app", "list"]).contains("live\tacme\tdisabled"));
}

#[test]
fn explain_names_the_rule_that_would_refuse() {
    let (mut ferry, t) = start(&[]);
    let admin = Some(t.admin.as_str());
    // While the relay runs, the CLI goes through it: a cap of nothing for globex.
    ferry.cli_ok(&["tenant", "cap", "globex", "--per-hour", "0"]);
    let ask = |app: &str, source: &str, from: &str, rcpts: usize, header: &str| {
        let recipients: Vec<String> = (0..rcpts).map(|i| format!("r{i}@example.net")).collect();
        let body = json!({
            "source": source, "envelope_from": from, "recipients": recipients, "header_from": header
        })
        .to_string();
        let (status, answer, _) = ferry.api("POST", &format!("/v1/apps/{app}/explain"), admin, Some(&body));
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let pass = ask(USER, "127.0.0.1", SENDER, 1, SENDER);
    assert_eq!(pass["verdict"], "pass", "{pass}");
    let cases = [
        (
            ask(USER, "10.9.9.9", SENDER, 1, SENDER),
            "auth",
            "auth_failed",
            "535 5.7.8",
            "source address 10.9.9.9",
        ),
        (
            ask(USER, "127.0.0.1", "ceo@acme.test", 1, SENDER),
            "mail",
            "sender_not_authorised",
            "550 5.7.1",
            "ceo@acme.test",
        ),
        (
            ask("globex-app", "127.0.0.1", "app@globex.test", 1, "app@globex.test"),
            "mail",
            "cap",
            "451 4.7.1",
            "reached",
        ),
        (
            ask(USER, "127.0.0.1", SENDER, 51, SENDER),
            "rcpt",
            "too_many_recipients",
            "452 4.5.3",
            "more than 50",
        ),
        (
            ask(USER, "127.0.0.1", SENDER, 1, "ceo@acme.test"),
            "data",
            "header_from_not_authorised",
            "550 5.7.1",
            "header From",
        ),
    ];
    for (answer, stage, reason, reply, detail) in cases {
        assert_eq!(answer["verdict"], "refused", "{answer}");
        assert_eq!(
            (answer["stage"].as_str(), answer["reason"].as_str()),
            (Some(stage), Some(reason)),
            "{answer}"
        );
        assert!(
            answer["reply"].as_str().is_some_and(|r| r.starts_with(reply)),
            "{answer}"
        );
        assert!(
            answer["detail"].as_str().is_some_and(|d| d.contains(detail)),
            "{answer}"
        );
    }
    let (status, _, _) = ferry.api("POST", &format!("/v1/apps/{USER}/disable"), admin, None);
    assert_eq!(status, 200);
    let disabled = ask(USER, "127.0.0.1", SENDER, 1, SENDER);
    assert_eq!(
        (disabled["reason"].as_str(), disabled["detail"].as_str()),
        (
            Some("auth_failed"),
            Some("authentication failed: application is disabled")
        )
    );
    // The same answer the session gives.
    assert!(login(&ferry, USER, &ferry.password).starts_with("535 5.7.8"));
    let theirs =
        json!({"source": "127.0.0.1", "envelope_from": "a@globex.test", "recipients": ["r@example.net"]}).to_string();
    assert_eq!(
        ferry
            .api(
                "POST",
                "/v1/apps/globex-app/explain",
                Some(&t.acme_admin),
                Some(&theirs)
            )
            .0,
        404
    );
    let (status, problem, _) = ferry.api(
        "POST",
        &format!("/v1/apps/{USER}/explain"),
        admin,
        Some(r#"{"source": "nowhere"}"#),
    );
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_field")),
        "{problem}"
    );
    assert!(ferry.stop().success());
}

#[test]
fn dkim_keys_over_the_api_sign_the_next_message() {
    let (mut ferry, t) = start(&[("server.reload_secs", "1")]);
    let admin = Some(t.admin.as_str());
    let key = |selector: &str| json!({"domain": "acme.test", "selector": selector, "algorithm": "ed25519"}).to_string();
    let (status, first, _) = ferry.api("POST", "/v1/dkim", admin, Some(&key("k1")));
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["active"], true, "the domain's first key is active: {first}");
    assert!(
        first["record"]
            .as_str()
            .is_some_and(|r| r.contains("k1._domainkey.acme.test") && r.contains("v=DKIM1"))
    );
    assert!(!first.to_string().contains("private"), "{first}");
    let (_, second, _) = ferry.api("POST", "/v1/dkim", admin, Some(&key("k2")));
    assert_eq!(
        second["active"], false,
        "one active key per domain and algorithm: {second}"
    );
    let (status, taken, _) = ferry.api("POST", "/v1/dkim", admin, Some(&key("k1")));
    assert_eq!((status, taken["code"].as_str()), (422, Some("key_exists")), "{taken}");
    assert_eq!(ferry.api("POST", "/v1/dkim", Some(&t.finance), Some(&key("k3"))).0, 403);
    assert_eq!(
        ferry.api("POST", "/v1/dkim/acme.test/nope/activate", admin, None).0,
        404
    );

    let (status, changed, _) = ferry.api("POST", "/v1/dkim/acme.test/k2/activate", admin, None);
    assert_eq!(status, 200, "{changed}");
    let states: Vec<(String, bool)> = changed
        .as_array()
        .expect("writes")
        .iter()
        .map(|k| (k["selector"].as_str().unwrap_or("").to_string(), k["active"] == true))
        .collect();
    assert_eq!(states, [("k1".to_string(), false), ("k2".to_string(), true)]);
    ferry.wait_for_log("DKIM signing keys", "k2._domainkey");
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: rotated key\r\n\r\nbody\r\n");
    assert!(
        smtp.send_message(SENDER, &["r@example.net"], content.as_bytes())
            .starts_with("250")
    );
    let signed = String::from_utf8_lossy(&ferry.wait_captured(1)[0].1).into_owned();
    assert!(
        signed.contains("s=k2") && !signed.contains("s=k1"),
        "the activated key signs: {signed}"
    );
    let (_, listed, _) = ferry.api("GET", "/v1/dkim", admin, None);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(ferry.stop().success());
}

/// Schemathesis (scripts/install-test-deps.sh installs it) fuzzes every
/// operation of the API against its own OpenAPI document, with an admin
/// token: no 5xx, no response outside its documented status, type and schema.
#[test]
fn the_api_survives_fuzzing_against_its_own_document() {
    let st = ferry_testkit::servers::tool("schemathesis/bin/st", "FERRY_SCHEMATHESIS");
    let (mut ferry, t) = start(&[]);
    let admin = ferry.admin.expect("admin");
    let out = std::process::Command::new(&st)
        .args(["run", &format!("http://{admin}/v1/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {}", t.admin)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // Revoking its own token would leave the fuzzer nothing to test.
        .args(["--exclude-name", "DELETE /v1/tokens/{id}"])
        .args([
            "--max-examples",
            "10",
            "--max-time",
            "60",
            "--workers",
            "2",
            "--seed",
            "1",
        ])
        .args(["--no-color", "--request-timeout", "20"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/install-test-deps.sh)", st.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!report.contains("FAILURES"), "{report}");
    let tested = report
        .lines()
        .find_map(|l| l.trim().strip_suffix(" passed")?.split_once(" generated, "))
        .map(|(generated, passed)| (generated.trim().to_string(), passed.trim().to_string()));
    let (generated, passed) = tested.unwrap_or_else(|| panic!("no summary in {report}"));
    assert_eq!(generated, passed, "{report}");
    assert!(
        !report.contains("Authentication failed"),
        "the token kept working: {report}"
    );
    assert!(ferry.stop().success(), "the relay is still well after the fuzzing");
}

/// `admin.tls`: the API over HTTPS with the relay's certificate, plain
/// HTTP refused; the CLI reaches its running relay over it (pinning the
/// certificate the relay serves).
#[test]
fn the_admin_endpoint_over_https() {
    let (mut ferry, t) = start(&[("admin.tls", "true")]);
    let admin = ferry.admin.expect("admin");
    let curl = |scheme: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
            .args(["--cacert", &ferry.pki.ca.display().to_string()])
            .args(["-H", &format!("Authorization: Bearer {}", t.admin)])
            .arg(format!("{scheme}://{admin}/v1/tenants"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("https"), "200", "HTTPS with the relay's certificate");
    assert_ne!(curl("http"), "200", "no plain HTTP");
    let listed = ferry.cli_ok(&["tenant", "list"]);
    assert!(listed.contains("globex"), "the CLI through the running relay: {listed}");
    assert!(ferry.stop().success());
}

/// Message samples: a tenant's share of accepted messages (whole, as
/// spooled) and every refused message's headers, read back by id and
/// application; a tenant-admin reads only its own tenant's, finance none.
#[test]
fn samples_by_share_and_by_tenant() {
    let (mut ferry, t) = start(&[]);
    let admin = Some(t.admin.as_str());
    let share = json!({ "percent": 100 }).to_string();
    let (status, tenant, _) = ferry.api("PUT", &format!("/v1/tenants/{TENANT}/samples"), admin, Some(&share));
    assert_eq!(
        (status, tenant["sample_percent"].as_u64()),
        (200, Some(100)),
        "{tenant}"
    );
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let kept = format!("From: {SENDER}\r\nSubject: kept\r\n\r\nthe body\r\n");
    let reply = smtp.send_message(SENDER, &["r@example.net"], kept.as_bytes());
    let queue_id = reply.trim_end().rsplit(' ').next().expect("queue id").to_string();
    let spoof = "From: ceo@acme.test\r\nSubject: spoofed\r\n\r\nsecret body\r\n";
    assert!(
        smtp.send_message(SENDER, &["r@example.net"], spoof.as_bytes())
            .starts_with("550")
    );
    // globex keeps no share, but its refused messages' headers are kept.
    let (_, rotated, _) = ferry.api("POST", "/v1/apps/globex-app/rotate-password", admin, None);
    let globex_password = rotated["password"].as_str().expect("password").to_string();
    let mut globex = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(globex.auth_plain("globex-app", &globex_password).starts_with("235"));
    let fine = "From: app@globex.test\r\nSubject: not kept\r\n\r\nbody\r\n";
    assert!(
        globex
            .send_message("app@globex.test", &["r@example.net"], fine.as_bytes())
            .starts_with("250")
    );
    let spoof = "From: boss@globex.test\r\nSubject: globex spoof\r\n\r\nbody\r\n";
    assert!(
        globex
            .send_message("app@globex.test", &["r@example.net"], spoof.as_bytes())
            .starts_with("550")
    );

    let all = ferry_testkit::wait_for("three samples", std::time::Duration::from_secs(10), || {
        let (_, all, _) = ferry.api("GET", "/v1/samples", admin, None);
        (all.as_array()?.len() >= 3).then_some(all)
    });
    let subjects: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["headers"].as_str()?.lines().find_map(|l| l.strip_prefix("Subject: ")))
        .collect();
    assert_eq!(subjects, ["kept", "spoofed", "globex spoof"], "{all}");
    let (_, by_id, _) = ferry.api("GET", &format!("/v1/samples?id={queue_id}"), admin, None);
    assert_eq!(by_id[0]["outcome"], "accepted", "{by_id}");
    assert_eq!(by_id[0]["body"], "the body\r\n");
    assert!(
        by_id[0]["headers"]
            .as_str()
            .is_some_and(|h| h.starts_with("Received: ")),
        "as spooled"
    );
    let (_, refused, _) = ferry.api("GET", "/v1/samples?app=billing&from=2000-01-01T00:00:00Z", admin, None);
    assert_eq!(refused[1]["outcome"], "header_from_not_authorised", "{refused}");
    assert!(
        refused[1].get("body").is_none(),
        "only the headers of a refused message"
    );
    let refused_id = refused[1]["id"].as_str().expect("id");
    let line = ferry.wait_for_log("message", refused_id);
    assert_eq!(
        line["reason"], "header_from_not_authorised",
        "the log line of the refusal names the sample's id: {line}"
    );

    let acme = Some(t.acme_admin.as_str());
    let (status, own, _) = ferry.api("GET", "/v1/samples?tenant=globex", acme, None);
    assert_eq!(status, 200);
    assert_eq!(
        own.as_array().map(Vec::len),
        Some(2),
        "its own tenant's, whatever it asks: {own}"
    );
    assert!(own.as_array().expect("list").iter().all(|s| s["tenant"] == TENANT));
    let (status, _, _) = ferry.api("GET", "/v1/samples", Some(t.finance.as_str()), None);
    assert_eq!(status, 403, "finance reads no message content");
    assert!(ferry.stop().success());
}

/// openapi-spec-validator (scripts/install-test-deps.sh installs it), an
/// implementation of the OpenAPI specification that is not utoipa, accepts
/// the document the relay serves: unique operationIds, parameters that
/// match their paths, references that resolve. Client generators need as much.
#[test]
fn the_served_openapi_document_passes_a_standalone_validator() {
    let validator = ferry_testkit::servers::tool(
        "schemathesis/bin/openapi-spec-validator",
        "FERRY_OPENAPI_SPEC_VALIDATOR",
    );
    let (mut ferry, _) = start(&[]);
    let admin = ferry.admin.expect("admin");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    // As a client would fetch it: no token.
    let out = std::process::Command::new("curl")
        .args(["-sSf", "--max-time", "10", "-o"])
        .arg(&file)
        .arg(format!("http://{admin}/v1/openapi.json"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "GET /v1/openapi.json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("document")).expect("the document is JSON");
    assert!(
        doc["paths"].as_object().is_some_and(|p| p.len() >= 20),
        "the whole API is documented: {doc}"
    );
    let out = std::process::Command::new(&validator)
        .args(["--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/install-test-deps.sh)", validator.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "openapi-spec-validator rejects the served document:\n{report}"
    );
    assert!(
        report.trim_end().ends_with(": OK"),
        "openapi-spec-validator's verdict: {report}"
    );
    assert!(ferry.stop().success());
}
