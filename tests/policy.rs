//! Credentials and sender policy against the running relay: each refusal
//! with its code, and the reason in the log where the client is told less.

use ferry_testkit::client::Smtp;
use ferry_testkit::{Ferry, SENDER, USER};

fn login(ferry: &Ferry, user: &str, password: &str) -> (Smtp, String) {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    let reply = smtp.auth_plain(user, password);
    (smtp, reply)
}

fn simple_message(from_header: &str, subject: &str) -> Vec<u8> {
    format!("From: {from_header}\r\nTo: r@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let ferry = Ferry::start(&[]);
    let (_, wrong) = login(&ferry, USER, "not-the-password");
    let (_, unknown) = login(&ferry, "nobody-here", "whatever");
    assert!(wrong.starts_with("535 5.7.8"), "{wrong}");
    assert_eq!(wrong, unknown);
    ferry.wait_for_log("authentication refused", "unknown user");
    ferry.wait_for_log("authentication refused", "wrong password");
}

/// The report that started the lockout rework: four wrong passwords for
/// one application and an unknown username from one address used to lock
/// every application there out.
#[test]
fn repeated_failures_lock_out_that_username_at_that_address_only() {
    let mut ferry = Ferry::prepare(&[("auth.lockout_failures", "3"), ("admin.listen", "127.0.0.1:0")]);
    let other = ferry.add_app("other-app", &["--from", "other@acme.test", "--allow", "127.0.0.0/8"]);
    ferry.launch();
    for user in [USER, "nobody-here", USER, USER] {
        let (_, reply) = login(&ferry, user, "guess");
        assert!(
            reply.starts_with("535 5.7.8") || user == USER && reply.starts_with("421"),
            "{reply}"
        );
    }
    // Even the right password is refused from there, and the session closes.
    let (mut smtp, reply) = login(&ferry, USER, &ferry.password);
    assert!(reply.starts_with("421 4.7.0"), "{reply}");
    assert!(smtp.is_closed());
    // Another application at the same address, and the same one elsewhere, go on.
    let (_, reply) = login(&ferry, "other-app", &other);
    assert!(reply.starts_with("235"), "{reply}");
    let submission = ferry.submission.expect("submission");
    let mut elsewhere = Smtp::submission_from(submission, [127, 0, 0, 2].into(), &ferry.pki.ca_der);
    let reply = elsewhere.auth_plain(USER, &ferry.password);
    assert!(reply.starts_with("235"), "{reply}");
    ferry.wait_for_log("sign-in lockout started", "pair");
    assert_eq!(ferry.metric("ferry_auth_lockouts_total{kind=\"pair\"}"), 1.0);
}

#[test]
fn disabled_expired_and_foreign_source_apps_are_refused_with_a_logged_reason() {
    let mut ferry = Ferry::prepare(&[]);
    let disabled = ferry.add_app("old-app", &["--from", "old@acme.test", "--allow", "127.0.0.0/8"]);
    ferry.cli_ok(&["app", "disable", "old-app"]);
    let expired = ferry.add_app(
        "lapsed",
        &[
            "--from",
            "lapsed@acme.test",
            "--allow",
            "127.0.0.0/8",
            "--expires",
            "2020-01-01",
        ],
    );
    let remote = ferry.add_app("remote-only", &["--from", "remote@acme.test", "--allow", "10.0.0.0/8"]);
    ferry.launch();
    for (user, password, reason) in [
        ("old-app", disabled, "disabled"),
        ("lapsed", expired, "expired on 2020-01-01"),
        ("remote-only", remote, "source address 127.0.0.1 is not allowed"),
    ] {
        let (_, reply) = login(&ferry, user, &password);
        assert!(reply.starts_with("535 5.7.8"), "{user}: {reply}");
        ferry.wait_for_log("authentication refused", reason);
    }
}

#[test]
fn sender_refusals() {
    let ferry = Ferry::start(&[("admin.listen", "127.0.0.1:0")]);
    let (mut smtp, reply) = login(&ferry, USER, &ferry.password);
    assert!(reply.starts_with("235 2.7.0"), "{reply}");
    let reply = smtp.cmd("MAIL FROM:<ceo@acme.test>");
    assert!(
        reply.starts_with("550 5.7.1 Sender <ceo@acme.test> not authorised"),
        "{reply}"
    );
    let reply = smtp.cmd("MAIL FROM:<billing@acme.test> SIZE=5000001");
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    let reply = smtp.send_message(SENDER, &["r@example.net"], &simple_message("ceo@acme.test", "spoof"));
    assert!(
        reply.starts_with("550 5.7.1 Header From <ceo@acme.test> not authorised"),
        "{reply}"
    );
    let refused = ferry.wait_for_log("message", "header_from_not_authorised");
    assert_eq!(refused["reason"], "header_from_not_authorised", "{refused}");
    assert_eq!(
        ferry.metric("ferry_messages_refused_total{reason=\"header_from_not_authorised\",tenant=\"acme\"}"),
        1.0,
        "the refusal is counted under its rule"
    );
    let reply = smtp.send_message(SENDER, &["r@example.net"], &simple_message(SENDER, "fine"));
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert_eq!(ferry.wait_captured(1).len(), 1);
}

#[test]
fn the_size_limit_holds_while_streaming() {
    let ferry = Ferry::start(&[]);
    let (mut smtp, _) = login(&ferry, USER, &ferry.password);
    let header = simple_message(SENDER, "big");
    let exact = [header.as_slice(), &vec![b'x'; 5_000_000 - header.len() - 2], b"\r\n"].concat();
    assert_eq!(exact.len(), 5_000_000);
    let reply = smtp.send_message(SENDER, &["r@example.net"], &exact);
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let over = [header.as_slice(), &vec![b'x'; 5_000_001 - header.len() - 2], b"\r\n"].concat();
    let reply = smtp.send_message(SENDER, &["r@example.net"], &over);
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    // The session is still usable.
    assert!(smtp.cmd("NOOP").starts_with("250"));
}

#[test]
fn session_and_recipient_limits() {
    let mut ferry = Ferry::prepare(&[]);
    let password = ferry.add_app(
        "narrow",
        &[
            "--from",
            "narrow@acme.test",
            "--allow",
            "127.0.0.1",
            "--max-recipients",
            "2",
        ],
    );
    ferry.launch();
    let (mut smtp, _) = login(&ferry, "narrow", &password);
    assert!(smtp.cmd("MAIL FROM:<narrow@acme.test>").starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<a@example.net>").starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<b@example.net>").starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<c@example.net>").starts_with("452 4.5.3"));
    assert!(smtp.cmd("RSET").starts_with("250"));

    let (mut smtp, _) = login(&ferry, USER, &ferry.password);
    let content = simple_message(SENDER, "many");
    for i in 0..100 {
        let reply = smtp.send_message(SENDER, &["r@example.net"], &content);
        assert!(reply.starts_with("250 2.0.0"), "message {}: {reply}", i + 1);
    }
    let reply = smtp.cmd(&format!("MAIL FROM:<{SENDER}>"));
    assert!(reply.starts_with("421 4.7.0") && reply.contains("reconnect"), "{reply}");
    assert!(smtp.is_closed());
    assert_eq!(ferry.wait_captured(100).len(), 100);
}
