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
