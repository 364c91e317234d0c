//! The command line: configuration errors name their key and stop the
//! relay before any port is opened; check-config masks secrets; every
//! command has --help; onboarding refuses what the policy would refuse.

use std::process::Command;

use ferry_testkit::{Ferry, binary};

fn ferry(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FERRY_CONFIG")
        .output()
        .expect("run ferry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_name_the_key_and_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("FERRY__SMTP__MAX_EROR", "3")], "max_eror"),
        (&[("FERRY__SERVER__MAX_SESSIONS", "many")], "server.max_sessions"),
        (&[("FERRY__TLS__KEY", "/nonexistent.pem")], "tls.certificate"),
        (
            &[
                ("FERRY__TLS__CERTIFICATE", "/nonexistent.pem"),
                ("FERRY__TLS__KEY", "/nonexistent.pem"),
            ],
            "tls.certificate",
        ),
    ];
    for (env, key) in cases {
        let mut env = env.to_vec();
        env.extend([
            ("FERRY__LISTEN__SMTP", listen.as_str()),
            ("FERRY__SERVER__DATA_DIR", data.as_str()),
        ]);
        let (code, _, stderr) = ferry(&["serve"], &env);
        assert_ne!(code, 0, "{env:?}");
        assert!(stderr.contains(key), "{env:?}: {stderr}");
        // The port we chose is still free: the relay never bound it.
        std::net::TcpListener::bind(&listen).expect("port untouched");
    }
    let (code, _, stderr) = ferry(&["--config", "/nonexistent/ferry.toml", "check-config"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/ferry.toml"), "{stderr}");
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let (code, stdout, _) = ferry(&["check-config"], &[("FERRY__SERVER__HOSTNAME", "relay.example.org")]);
    assert_eq!(code, 0);
    assert!(stdout.contains("hostname = \"relay.example.org\""), "{stdout}");
    assert!(
        stdout.contains("[smtp]") && stdout.contains("command_timeout_secs = 300"),
        "{stdout}"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["check-config", "--help"],
        &["tenant", "add", "--help"],
        &["tenant", "list", "--help"],
        &["app", "add", "--help"],
        &["app", "rotate-password", "--help"],
        &["app", "disable", "--help"],
    ] {
        let (code, stdout, _) = ferry(args, &[]);
        assert_eq!(code, 0, "{args:?}");
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
    }
}

#[test]
fn onboarding_enforces_the_data_model() {
    let ferry = Ferry::prepare(&[]);
    let refused = |args: &[&str], needle: &str| {
        let out = ferry.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(needle), "{args:?}: {stderr}");
    };
    refused(
        &[
            "app",
            "add",
            "x@acme.test",
            "--tenant",
            "acme",
            "--from",
            "x@acme.test",
            "--allow",
            "127.0.0.1",
        ],
        "not an e-mail address",
    );
    refused(
        &[
            "app",
            "add",
            "outsider",
            "--tenant",
            "acme",
            "--from",
            "x@other.test",
            "--allow",
            "127.0.0.1",
        ],
        "not one of tenant acme's domains",
    );
    refused(
        &[
            "app",
            "add",
            "nonet",
            "--tenant",
            "acme",
            "--from",
            "x@acme.test",
            "--allow",
            "nowhere",
        ],
        "--allow",
    );
    refused(
        &[
            "app",
            "add",
            "billing",
            "--tenant",
            "acme",
            "--from",
            "x@acme.test",
            "--allow",
            "127.0.0.1",
        ],
        "already exists",
    );
    let many: Vec<String> = (0..11).map(|i| format!("a{i}@acme.test")).collect();
    let mut args = vec!["app", "add", "chatty", "--tenant", "acme", "--allow", "127.0.0.1"];
    for a in &many {
        args.extend(["--from", a.as_str()]);
    }
    refused(&args, "at most 10");
    ferry.cli_ok(&[
        "tenant",
        "add",
        "campus",
        "--domain",
        "example.edu",
        "--subdomains-only",
    ]);
    refused(
        &[
            "app",
            "add",
            "apex",
            "--tenant",
            "campus",
            "--from",
            "a@example.edu",
            "--allow",
            "127.0.0.1",
        ],
        "subdomains only",
    );
    ferry.cli_ok(&[
        "app",
        "add",
        "dept",
        "--tenant",
        "campus",
        "--from",
        "a@dept.example.edu",
        "--allow",
        "127.0.0.1",
    ]);
    let shown = ferry.cli_ok(&["app", "show", "billing"]);
    assert!(
        shown.contains("envelope from: billing@acme.test") && !shown.contains("argon2"),
        "{shown}"
    );
    let rotated = ferry.cli_ok(&["app", "rotate-password", "billing"]);
    assert!(rotated.contains("password: ") && !rotated.contains(&ferry.password));
}

/// Runs openssl; its output (a PEM key, or a DER public key).
fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// DKIM keys and an admin token made elsewhere (as a Kubernetes Secret
/// holds them) are imported: OpenSSL's RSA keys in PKCS#8 and PKCS#1 and
/// its Ed25519 key, each published with the public key OpenSSL derives;
/// importing again changes nothing; another key under a stored selector, a
/// file misnamed, and a token not of Ferry's form are refused; the imported
/// token opens the admin API.
#[test]
fn keys_and_tokens_made_elsewhere_are_imported() {
    let mut ferry = Ferry::prepare(&[("admin.listen", "127.0.0.1:0")]);
    let keys = tempfile::tempdir().expect("tempdir");
    let pkcs8 = keys.path().join("s1._domainkey.acme.test.pem");
    let pkcs1 = keys.path().join("s2._domainkey.globex.test.pem");
    let ed = keys.path().join("e1._domainkey.acme.test.pem");
    std::fs::write(
        &pkcs8,
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
    )
    .expect("write");
    std::fs::write(&pkcs1, openssl(&["genrsa", "-traditional", "2048"])).expect("write");
    std::fs::write(&ed, openssl(&["genpkey", "-algorithm", "ed25519"])).expect("write");
    assert!(
        std::fs::read_to_string(&pkcs1)
            .expect("read")
            .starts_with("-----BEGIN RSA PRIVATE KEY")
    );
    // What a mounted Secret also holds.
    std::fs::create_dir(keys.path().join("..data")).expect("mkdir");
    let dir = keys.path().display().to_string();

    let out = ferry.cli_ok(&["dkim", "import", &dir]);
    assert_eq!(out.matches("imported").count(), 3, "{out}");
    // TXT strings are cut at 255 characters: join them back.
    let records = ferry.cli_ok(&["dkim", "list", "--records"]).replace("\" \"", "");
    let b64 = |der: Vec<u8>| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    for (path, name) in [
        (&pkcs8, "s1._domainkey.acme.test"),
        (&pkcs1, "s2._domainkey.globex.test"),
    ] {
        let spki = openssl(&["pkey", "-in", &path.display().to_string(), "-pubout", "-outform", "DER"]);
        assert!(
            records.contains(&format!("p={}", b64(spki))),
            "{name}: the public key OpenSSL derives:\n{records}"
        );
    }
    let ed_spki = openssl(&["pkey", "-in", &ed.display().to_string(), "-pubout", "-outform", "DER"]);
    // An Ed25519 SubjectPublicKeyInfo ends with the 32-byte key (RFC 8463: p= is the raw key).
    let raw = b64(ed_spki[ed_spki.len() - 32..].to_vec());
    assert!(records.contains(&format!("k=ed25519; p={raw}")), "{records}");

    let again = ferry.cli_ok(&["dkim", "import", &dir]);
    assert_eq!(again.matches("already stored").count(), 3, "{again}");
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        other.path().join("s1._domainkey.acme.test.pem"),
        openssl(&["genpkey", "-algorithm", "ed25519"]),
    )
    .expect("write");
    let refused = ferry.cli(&["dkim", "import", &other.path().display().to_string()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already holds another key"));
    std::fs::write(other.path().join("acme.pem"), b"-").expect("write");
    std::fs::remove_file(other.path().join("s1._domainkey.acme.test.pem")).expect("rm");
    let misnamed = ferry.cli(&["dkim", "import", &other.path().display().to_string()]);
    assert!(String::from_utf8_lossy(&misnamed.stderr).contains("<selector>._domainkey.<domain>.pem"));

    let token = format!("ferry_0123456789ab_{}", "k8sSecret".repeat(4));
    ferry.set_env(&[("IMPORTED", &token), ("NOT_A_TOKEN", "hunter2")]);
    let import = |var: &str| {
        ferry.cli(&[
            "token",
            "import",
            "--name",
            "helm",
            "--role",
            "admin",
            "--from-env",
            var,
        ])
    };
    let text = |out: std::process::Output| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    assert!(text(import("IMPORTED")).contains("imported"));
    assert!(
        text(import("IMPORTED")).contains("already stored (active)"),
        "importing again changes nothing"
    );
    let bad = text(import("NOT_A_TOKEN"));
    assert!(bad.contains("not a token") && !bad.contains("hunter2"), "{bad}");
    ferry.launch();
    let (status, apps, _) = ferry.api("GET", "/v1/apps", Some(&token), None);
    assert_eq!(status, 200, "the imported token opens the API: {apps}");
    assert!(ferry.stop().success());
}

/// The output of a `ferry` command that must fail: its stderr.
fn failing(ferry: &Ferry, args: &[&str]) -> String {
    let out = ferry.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    stderr
}

/// The rows of a `ferry suppression list` or `ferry events list` table,
/// split into their words: the lines between the header and the count.
fn table_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .take_while(|l| !l.ends_with("event(s)") && !l.ends_with(" entries") && !l.ends_with(" entry"))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// A manual suppression is added (lower case, from the CLI, with its
/// expiry), listed, searched, and removed; removing it again, an unknown
/// tenant and an address without `@` fail, saying why.
#[test]
fn suppressions_are_added_listed_and_removed_by_hand() {
    use ferry_testkit::TENANT;
    let ferry = Ferry::prepare(&[]);
    for args in [
        &["suppression", "--help"][..],
        &["suppression", "add", "--help"],
        &["events", "list", "--help"],
    ] {
        assert!(ferry.cli_ok(args).contains("Usage:"), "{args:?}");
    }
    let list = |extra: &[&str]| {
        let mut args = vec!["suppression", "list", "--tenant", TENANT];
        args.extend_from_slice(extra);
        ferry.cli_ok(&args)
    };
    let added = ferry.cli_ok(&[
        "suppression",
        "add",
        "--tenant",
        TENANT,
        "Jo@Example.NET",
        "--expires-days",
        "30",
        "--note",
        "asked by phone",
    ]);
    assert!(added.contains("jo@example.net suppressed for tenant acme"), "{added}");
    ferry.cli_ok(&["suppression", "add", "--tenant", TENANT, "kim@example.org"]);

    let listed = list(&[]);
    let rows = table_rows(&listed);
    assert_eq!(rows.len(), 2, "{listed}");
    let jo = &rows[0];
    assert_eq!(jo[..2], ["jo@example.net", "manual"], "{listed}");
    let since: jiff::Timestamp = jo[2].parse().expect("since is RFC 3339");
    let expires: jiff::Timestamp = jo[3].parse().expect("expires is RFC 3339");
    assert_eq!((expires - since).get_seconds(), 30 * 86_400, "{listed}");
    assert!(listed.contains("cli: asked by phone"), "{listed}");
    assert_eq!(rows[1][3], "never", "{listed}");
    assert!(listed.contains("cli: added by hand"), "{listed}");
    let searched = list(&["--search", "jo@"]);
    assert_eq!(table_rows(&searched).len(), 1, "{searched}");
    let json: serde_json::Value = serde_json::from_str(&list(&["--output", "json"])).expect("json");
    assert_eq!(json[0]["reason"], "manual", "{json}");
    assert_eq!(json[0]["recipient"], "jo@example.net", "{json}");

    let removed = ferry.cli_ok(&["suppression", "remove", "--tenant", TENANT, "JO@example.net"]);
    assert!(removed.contains("jo@example.net removed"), "{removed}");
    ferry.cli_ok(&["suppression", "remove", "--tenant", TENANT, "kim@example.org"]);
    let empty = list(&[]);
    assert!(table_rows(&empty).is_empty() && empty.contains("0 entries"), "{empty}");

    let again = failing(&ferry, &["suppression", "remove", "--tenant", TENANT, "jo@example.net"]);
    assert!(
        again.contains("jo@example.net is not on tenant acme's suppression list"),
        "{again}"
    );
    let unknown = failing(&ferry, &["suppression", "add", "--tenant", "globex", "jo@example.net"]);
    assert!(unknown.contains("--tenant globex: no such tenant"), "{unknown}");
    let no_at = failing(&ferry, &["suppression", "add", "--tenant", TENANT, "jo.example.net"]);
    assert!(no_at.contains("\"jo.example.net\" is not an e-mail address"), "{no_at}");
    let never = failing(
        &ferry,
        &[
            "suppression",
            "add",
            "--tenant",
            TENANT,
            "jo@example.net",
            "--expires-days",
            "0",
        ],
    );
    assert!(never.contains("--expires-days"), "{never}");
    assert!(table_rows(&list(&[])).is_empty(), "refusals add nothing");
}

/// `ferry events list` on a relay that sent a message to two recipients:
/// one line per recipient (accepted, then delivered) with stable ids;
/// `--limit` never splits a record's recipients and `next:` continues
/// where the list stopped; `--app` filters yet still moves the cursor; a
/// cursor the store never gave out is refused. Run through the running
/// relay, `suppression add` refuses its recipient at RCPT and is audited,
/// as it is from the CLI on the store; `events list`, a read, is not.
#[test]
fn events_list_what_happened_and_continue_from_their_cursor() {
    use ferry_testkit::client::Smtp;
    use ferry_testkit::{SENDER, TENANT, USER, wait_for};
    let mut ferry = Ferry::prepare(&[("admin.listen", "127.0.0.1:0")]);
    let token = ferry.add_token(&["--name", "auditor", "--role", "admin"]);
    let empty = ferry.cli_ok(&["events", "list", "--tenant", TENANT]);
    assert!(empty.contains("0 event(s)\nnext: "), "{empty}");
    let bad = failing(
        &ferry,
        &["events", "list", "--tenant", TENANT, "--after", "not-a-cursor"],
    );
    assert!(bad.contains("--after \"not-a-cursor\" is not a cursor"), "{bad}");
    ferry.cli_ok(&["suppression", "add", "--tenant", TENANT, "early@example.net"]);
    ferry.cli_ok(&["suppression", "remove", "--tenant", TENANT, "early@example.net"]);

    ferry.launch();
    let events = |extra: &[&str]| {
        let mut args = vec!["events", "list", "--tenant", TENANT];
        args.extend_from_slice(extra);
        let out = ferry.cli_ok(&args);
        let next = out
            .lines()
            .find_map(|l| l.strip_prefix("next: "))
            .unwrap_or_else(|| panic!("no next: in {out}"))
            .to_string();
        (table_rows(&out), next, out)
    };
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: events\r\n\r\nhello\r\n");
    let reply = smtp.send_message(SENDER, &["a@example.net", "b@example.net"], content.as_bytes());
    assert!(reply.starts_with("250"), "{reply}");
    let (rows, last, out) = wait_for("both recipients delivered", std::time::Duration::from_secs(20), || {
        let read = events(&[]);
        (read.0.iter().filter(|r| r[5] == "delivered").count() == 2).then_some(read)
    });
    assert_eq!(rows.len(), 4, "{out}");
    let accepted = rows[0][0]
        .strip_suffix(".0")
        .expect("a record's first event")
        .to_string();
    let delivered = rows[2][0]
        .strip_suffix(".0")
        .expect("a record's first event")
        .to_string();
    assert_eq!(rows[1][0], format!("{accepted}.1"), "{out}");
    assert_eq!(last, delivered, "next: is the last record's cursor\n{out}");
    for (row, (rcpt, kind)) in rows.iter().zip([
        ("a@example.net", "accepted"),
        ("b@example.net", "accepted"),
        ("a@example.net", "delivered"),
        ("b@example.net", "delivered"),
    ]) {
        row[1].parse::<jiff::Timestamp>().expect("time is RFC 3339");
        assert_eq!(
            (row[2].as_str(), row[4].as_str(), row[5].as_str()),
            (USER, rcpt, kind),
            "{out}"
        );
        assert_eq!(row[3], rows[0][3], "one queue id\n{out}");
    }
    assert!(rows[2].get(6).is_some_and(|r| r.starts_with("250")), "the reply: {out}");

    let (first, next, out) = events(&["--limit", "1"]);
    assert_eq!(
        (first.len(), next.as_str()),
        (2, accepted.as_str()),
        "never split\n{out}"
    );
    let (rest, next, out) = events(&["--after", &accepted]);
    assert_eq!(
        (rest.len(), rest[0][5].as_str(), next.as_str()),
        (2, "delivered", last.as_str()),
        "{out}"
    );
    let (none, next, out) = events(&["--after", &last]);
    assert_eq!((none.len(), next.as_str()), (0, last.as_str()), "{out}");
    let (others, next, out) = events(&["--app", "nobody"]);
    assert_eq!(
        (others.len(), next.as_str()),
        (0, last.as_str()),
        "read past other apps\n{out}"
    );
    let (own, _, out) = events(&["--app", USER]);
    assert_eq!(own.len(), 4, "{out}");
    let json = ferry.cli_ok(&["events", "list", "--tenant", TENANT, "--output", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["events"].as_array().map(Vec::len), Some(4), "{json}");
    assert_eq!(json["next"], last.as_str(), "{json}");
    assert_eq!(json["events"][1]["id"], format!("{accepted}.1"), "{json}");

    ferry.cli_ok(&["suppression", "add", "--tenant", TENANT, "c@example.net"]);
    let refused = smtp.send_message(SENDER, &["c@example.net"], content.as_bytes());
    assert!(refused.starts_with("550"), "{refused}");
    drop(smtp);

    let (status, log, _) = ferry.api("GET", "/v1/audit?limit=1000", Some(&token), None);
    assert_eq!(status, 200, "{log}");
    let objects: Vec<(&str, &str)> = log
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "cli")
        .filter_map(|e| Some((e["role"].as_str()?, e["object"].as_str()?)))
        .collect();
    for (role, object) in [
        ("cli", "suppression add --tenant acme early@example.net"),
        ("cli", "suppression remove --tenant acme early@example.net"),
        ("admin", "suppression add --tenant acme c@example.net"),
    ] {
        assert!(objects.contains(&(role, object)), "{object} by {role} in {objects:?}");
    }
    assert!(
        !objects
            .iter()
            .any(|(_, o)| o.starts_with("events") || o.starts_with("suppression list")),
        "reads are not audited: {objects:?}"
    );
    assert!(ferry.stop().success());
}
