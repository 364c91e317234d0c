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
