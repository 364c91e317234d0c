//! Hostile and broken input against the running relay: SMTP smuggling,
//! STARTTLS command injection, slow clients, too many sessions; and many
//! honest sessions at once.

use ferry_testkit::client::Smtp;
use ferry_testkit::{Ferry, SENDER, USER};

fn authed(ferry: &Ferry) -> Smtp {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    let reply = smtp.auth_plain(USER, &ferry.password);
    assert!(reply.starts_with("235"), "{reply}");
    smtp
}

#[test]
fn smuggling_variants_never_become_a_second_message() {
    let ferry = Ferry::start(&[]);
    let smuggled = format!(
        "MAIL FROM:<{SENDER}>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: {SENDER}\r\nSubject: smuggled\r\n\r\nevil\r\n"
    );
    for end in ["\n.\n", "\n.\r\n", "\r.\r", "\r.\r\n", "\r\n.\r"] {
        let mut smtp = authed(&ferry);
        assert!(smtp.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
        assert!(smtp.cmd("RCPT TO:<a@example.net>").starts_with("250"));
        assert!(smtp.cmd("DATA").starts_with("354"));
        smtp.send(format!("From: {SENDER}\r\nSubject: first\r\n\r\nbody{end}{smuggled}.\r\n").as_bytes());
        let reply = smtp.read_reply();
        assert!(reply.starts_with("550 5.5.2"), "{end:?}: {reply}");
        assert!(
            smtp.cmd("NOOP").starts_with("250 2.0.0"),
            "{end:?}: the session stays in step"
        );
    }
    // A last honest message proves the queue works; nothing else was captured.
    let mut smtp = authed(&ferry);
    let ok = smtp.send_message(
        SENDER,
        &["a@example.net"],
        format!("From: {SENDER}\r\nSubject: honest\r\n\r\nok\r\n").as_bytes(),
    );
    assert!(ok.starts_with("250"), "{ok}");
    let captured = ferry.wait_captured(1);
    assert_eq!(captured.len(), 1);
    assert!(String::from_utf8_lossy(&captured[0].1).contains("Subject: honest"));
}

#[test]
fn plaintext_injected_after_starttls_is_discarded() {
    let ferry = Ferry::start(&[]);
    let (mut smtp, _) = Smtp::connect(ferry.submission.expect("submission"));
    assert!(smtp.cmd("EHLO client.test").starts_with("250"));
    smtp.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<billing@acme.test>\r\n");
    let reply = smtp.read_reply();
    assert_eq!(reply, "220 2.0.0 Ready to start TLS\r\n");
    smtp.upgrade(&ferry.pki.ca_der);
    // The first thing said inside TLS answers our EHLO, not the injected RSET.
    let reply = smtp.cmd("EHLO client.test");
    assert!(reply.starts_with("250-relay.test"), "{reply}");
    assert!(smtp.cmd("STARTTLS").starts_with("554 5.5.1"));
}

#[test]
fn a_bare_lf_command_is_refused_and_closed() {
    let ferry = Ferry::start(&[]);
    let (mut smtp, _) = Smtp::connect(ferry.smtp.expect("smtp"));
    smtp.send(b"NOOP\n");
    assert!(smtp.read_reply().starts_with("550 5.5.2"));
    assert!(smtp.is_closed());
}

#[test]
fn idle_clients_time_out_with_421() {
    let ferry = Ferry::start(&[("smtp.command_timeout_secs", "1")]);
    let (mut smtp, _) = Smtp::connect(ferry.smtp.expect("smtp"));
    smtp.send(b"EHLO slow");
    let reply = smtp.read_reply();
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(smtp.is_closed());
}

#[test]
fn sessions_beyond_the_per_address_cap_get_421() {
    let ferry = Ferry::start(&[("server.max_sessions_per_ip", "2")]);
    let addr = ferry.smtp.expect("smtp");
    let (_a, first) = Smtp::connect(addr);
    let (_b, second) = Smtp::connect(addr);
    let (mut c, third) = Smtp::connect(addr);
    assert!(first.starts_with("220") && second.starts_with("220"));
    assert!(third.starts_with("421 4.7.0"), "{third}");
    assert!(c.is_closed());
    drop(_a);
    let again = ferry_testkit::wait_for("a free slot", std::time::Duration::from_secs(10), || {
        let (_s, greeting) = Smtp::connect(addr);
        greeting.starts_with("220").then_some(greeting)
    });
    assert!(again.starts_with("220"));
}

#[test]
fn twenty_concurrent_sessions_all_land() {
    let ferry = Ferry::start(&[]);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let ferry = &ferry;
                scope.spawn(move || {
                    let mut smtp = authed(ferry);
                    let content = format!("From: {SENDER}\r\nSubject: concurrent {i}\r\n\r\nbody {i}\r\n");
                    smtp.send_message(SENDER, &["r@example.net"], content.as_bytes())
                })
            })
            .collect();
        for h in handles {
            let reply = h.join().expect("client thread");
            assert!(reply.starts_with("250 2.0.0"), "{reply}");
        }
    });
    let captured = ferry.wait_captured(20);
    assert_eq!(captured.len(), 20);
    for i in 0..20 {
        let needle = format!("Subject: concurrent {i}\r\n");
        assert_eq!(
            captured
                .iter()
                .filter(|(_, eml)| String::from_utf8_lossy(eml).contains(&needle))
                .count(),
            1
        );
    }
}

/// RFC 5321 §4.5.3.1.10: 1,200 recipients pipelined in one batch after a
/// valid MAIL FROM, then DATA. The 1,150 past the application's 50 get
/// `452 4.5.3` each, count as no errors (the session is not closed after
/// 20 of them), and the message is relayed to the 50 accepted.
#[test]
fn twelve_hundred_pipelined_recipients_relay_to_the_accepted_fifty() {
    let ferry = Ferry::start(&[]);
    let mut smtp = authed(&ferry);
    let mut batch = format!("MAIL FROM:<{SENDER}>\r\n");
    for i in 0..1_200 {
        batch.push_str(&format!("RCPT TO:<r{i}@example.net>\r\n"));
    }
    batch.push_str("DATA\r\n");
    smtp.send(batch.as_bytes());
    let replies: Vec<String> = (0..1_202).map(|_| smtp.read_reply()).collect();
    let count = |code: &str| replies.iter().filter(|r| r.starts_with(code)).count();
    assert_eq!(count("250 "), 51, "MAIL and 50 recipients: {:?}", &replies[..3]);
    assert_eq!(
        count("452 4.5.3"),
        1_150,
        "{:?}",
        replies.iter().find(|r| !r.starts_with("250") && !r.starts_with("452"))
    );
    assert!(replies[1_201].starts_with("354"), "{}", replies[1_201]);
    smtp.send(format!("From: {SENDER}\r\nSubject: many\r\n\r\nhello\r\n.\r\n").as_bytes());
    let queued = smtp.read_reply();
    assert!(queued.starts_with("250 2.0.0"), "{queued}");
    let (id, _) = ferry.wait_captured(1).remove(0);
    let envelope: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ferry.capture_dir().join(format!("{id}.json"))).expect("the envelope beside the message"),
    )
    .expect("json");
    let recipients = envelope["recipients"].as_array().expect("recipients");
    assert_eq!(recipients.len(), 50);
    assert_eq!(recipients[49], "r49@example.net");
    assert!(smtp.cmd("NOOP").starts_with("250"), "the session goes on");
}

/// Postscreen's pre-greeting test: with the pause on (as by default), a
/// client that pipelines before the greeting gets `554 5.5.1` and is
/// closed, counted as an early talker; one that waits is greeted, and its
/// address is greeted at once afterwards.
#[test]
fn a_client_that_talks_before_the_greeting_is_refused() {
    let ferry = Ferry::start(&[("smtp.greeting_pause_ms", "700"), ("admin.listen", "127.0.0.1:0")]);
    let smtp = ferry.smtp.expect("smtp");
    let mut bot = Smtp::raw_from(smtp, "127.0.0.9".parse().expect("ip"));
    bot.send(b"EHLO bot.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    let reply = bot.read_reply();
    assert!(reply.starts_with("554 5.5.1"), "{reply}");
    assert!(bot.is_closed(), "closed after the refusal");
    ferry.wait_for_log("connection refused: client spoke before the greeting", "127.0.0.9");

    let started = std::time::Instant::now();
    let (mut patient, greeting) = Smtp::connect_from(smtp, "127.0.0.10".parse().expect("ip"));
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(700),
        "greeted after the pause"
    );
    assert!(patient.cmd("EHLO client.test").starts_with("250"));
    let (_, again) = Smtp::connect_from(smtp, "127.0.0.10".parse().expect("ip"));
    assert!(again.starts_with("220 "), "{again}");
    let (status, metrics) = ferry.admin_get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("reason=\"early_talker\""), "counted: {metrics}");
}

/// A burst of sign-ins bigger than the hash pool: one argon2 check at a
/// time, and a sign-in that cannot get a place within a millisecond is told
/// `454 4.7.0` (try again) instead of queueing; the rest are answered as
/// usual, and the pool serves the application afterwards.
#[test]
fn sign_ins_past_the_hash_pool_are_told_to_try_again() {
    let ferry = Ferry::start(&[
        ("auth.max_concurrent_verifications", "1"),
        ("auth.verification_wait_ms", "1"),
    ]);
    let replies: Vec<String> = std::thread::scope(|s| {
        let signing_in: Vec<_> = (0..8)
            .map(|i| {
                let ferry = &ferry;
                s.spawn(move || {
                    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
                    smtp.auth_plain(&format!("stranger{i}"), "not-a-password")
                })
            })
            .collect();
        signing_in.into_iter().map(|t| t.join().expect("client")).collect()
    });
    let busy = replies.iter().filter(|r| r.starts_with("454 4.7.0")).count();
    assert!(busy >= 1, "the pool was full for some: {replies:?}");
    assert!(
        replies
            .iter()
            .all(|r| r.starts_with("454 4.7.0") || r.starts_with("535 5.7.8")),
        "{replies:?}"
    );
    let reply = authed(&ferry).cmd("NOOP");
    assert!(reply.starts_with("250"), "{reply}");
}
