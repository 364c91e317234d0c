//! Whole SMTP dialogues against the pure state machine: tables of input and
//! the replies expected, including the hostile inputs of SMTP-REPLIES.md.

use ferry_smtp::data::{DataDecoder, dot_stuff};
use ferry_smtp::sasl::encode_base64;
use ferry_smtp::{Action, AppLimits, Reply, Session, SessionConfig, TlsPolicy};
use proptest::prelude::*;

const LIMITS: AppLimits = AppLimits {
    max_message_bytes: 1000,
    max_recipients: 3,
    max_messages_per_session: 2,
};

/// A driver with a fixed policy: user `app` / `secret` may send as `app@example.test`.
struct Driver {
    session: Session,
    transcript: String,
    messages: Vec<ferry_smtp::Envelope>,
    closed: bool,
    tls_handshakes: usize,
}

impl Driver {
    fn new(tls: TlsPolicy) -> Self {
        let cfg = SessionConfig {
            hostname: "relay.test".into(),
            max_message_bytes: 2000,
            tls,
            max_errors: 20,
            inbound: None,
        };
        Driver {
            session: Session::new(cfg),
            transcript: String::new(),
            messages: vec![],
            closed: false,
            tls_handshakes: 0,
        }
    }

    /// An inbound listener's session, TLS offered.
    fn inbound() -> Self {
        let mut d = Driver::new(TlsPolicy::Offered);
        let cfg = SessionConfig {
            hostname: "relay.test".into(),
            max_message_bytes: 2000,
            tls: TlsPolicy::Offered,
            max_errors: 20,
            inbound: Some(LIMITS),
        };
        d.session = Session::new(cfg);
        d
    }

    /// An implicit-TLS session already authenticated as `app`.
    fn authed() -> Self {
        let mut d = Driver::new(TlsPolicy::Implicit);
        d.send(&format!("EHLO c\r\nAUTH PLAIN {}\r\n", encode_base64(b"\0app\0secret")));
        d.transcript.clear();
        d
    }

    fn flush(&mut self) {
        self.transcript
            .push_str(&String::from_utf8_lossy(&self.session.take_output()));
    }

    /// Feeds `input` in one read and runs until the session wants more.
    fn send(&mut self, input: &str) -> &str {
        self.send_bytes(input.as_bytes())
    }

    fn send_bytes(&mut self, input: &[u8]) -> &str {
        self.session.receive(input);
        self.run();
        &self.transcript
    }

    fn run(&mut self) {
        loop {
            match self.session.advance() {
                Action::NeedInput => break self.flush(),
                Action::Close => {
                    self.closed = true;
                    break self.flush();
                }
                Action::StartTls => {
                    self.flush();
                    self.tls_handshakes += 1;
                    self.session.tls_started();
                }
                Action::Authenticate(c) => {
                    if c.username == "app" && c.password == "secret" {
                        self.session.auth_accepted(c.username, LIMITS);
                    } else {
                        self.session
                            .auth_refused(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
                    }
                }
                Action::Mail(m) => self.session.mail_result(if m.from == "app@example.test" {
                    Ok(())
                } else {
                    Err(Reply::new(550, "5.7.1", "Sender not authorised"))
                }),
                Action::Rcpt(_) => self.session.rcpt_result(Ok(())),
                Action::Message(envelope) => {
                    self.messages.push(envelope);
                    self.session.message_result(Reply::new(250, "2.0.0", "Queued as Q1"));
                }
            }
        }
    }

    fn codes(&self) -> Vec<String> {
        self.transcript.lines().map(|l| l.chars().take(3).collect()).collect()
    }
}

fn replies_of(tls: TlsPolicy, input: &str) -> Vec<String> {
    let mut d = Driver::new(tls);
    d.send(input);
    d.transcript.lines().map(str::to_string).collect()
}

#[test]
fn greeting_and_ehlo_before_tls_offer_starttls_but_not_auth() {
    let lines = replies_of(TlsPolicy::Required, "EHLO client.test\r\n");
    assert_eq!(lines[0], "220 relay.test ESMTP Ferry");
    assert!(lines.iter().any(|l| l.ends_with("STARTTLS")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("AUTH")), "{lines:?}");
    assert!(lines.contains(&"250-SIZE 2000".to_string()));
    for ext in ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"] {
        assert!(lines.iter().any(|l| l.ends_with(ext)), "{ext} missing from {lines:?}");
    }
}

#[test]
fn refusals_before_tls_and_auth() {
    let table: &[(&str, &str)] = &[
        ("EHLO c\r\nAUTH PLAIN AGFwcABzZWNyZXQ=\r\n", "538 5.7.11"),
        (
            "EHLO c\r\nMAIL FROM:<app@example.test>\r\n",
            "530 5.7.0 Must issue a STARTTLS",
        ),
        ("MAIL FROM:<app@example.test>\r\n", "503 5.5.1"),
        ("EHLO c\r\nVRFY root\r\n", "252 2.0.0"),
        ("EHLO c\r\nEXPN staff\r\n", "502 5.5.1"),
        ("EHLO c\r\nXYZZY\r\n", "500 5.5.1"),
        ("EHLO c\r\nRCPT TO:<a@b.test>\r\n", "503 5.5.1"),
        ("EHLO c\r\nDATA\r\n", "503 5.5.1"),
        ("EHLO c\r\nSTARTTLS now\r\n", "501 5.5.4"),
        (&"NOOP ".repeat(120), ""),
    ];
    for (input, expected) in table {
        let lines = replies_of(TlsPolicy::Required, input);
        assert!(lines.last().unwrap().starts_with(expected), "{input:?} → {lines:?}");
    }
}

#[test]
fn an_inbound_listener_takes_mail_without_auth_and_never_offers_it() {
    let mut d = Driver::inbound();
    let ehlo = d.send("EHLO mx.example.net\r\n").to_string();
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    d.transcript.clear();
    d.send("AUTH PLAIN AGFwcABzZWNyZXQ=\r\n");
    assert!(d.transcript.starts_with("503 5.5.1"), "{}", d.transcript);
    d.transcript.clear();
    // No STARTTLS and no AUTH: the driver judges sender and recipients.
    d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<b-x@bounces.example.test>\r\nDATA\r\n");
    d.send("Subject: report\r\n\r\nbody\r\n.\r\n");
    assert_eq!(d.codes(), ["250", "250", "354", "250"], "{}", d.transcript);
    assert_eq!(d.messages.len(), 1);
    assert_eq!(d.session.username(), None);
    d.transcript.clear();
    d.send("MAIL FROM:<>\r\n");
    assert!(
        d.transcript.starts_with("550"),
        "the null sender reaches the policy: {}",
        d.transcript
    );
}

#[test]
fn vrfy_answers_the_same_for_every_name() {
    let a = replies_of(TlsPolicy::Implicit, "VRFY app\r\n");
    let b = replies_of(TlsPolicy::Implicit, "VRFY nobody-at-all\r\n");
    assert_eq!(a, b);
}

#[test]
fn no_mail_without_auth_even_after_tls() {
    let lines = replies_of(
        TlsPolicy::Implicit,
        "EHLO c\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<r@ext.org>\r\n",
    );
    assert!(lines.iter().any(|l| l.ends_with("AUTH PLAIN LOGIN")), "{lines:?}");
    assert_eq!(lines[lines.len() - 2], "530 5.7.0 Authentication required");
    assert!(lines.last().unwrap().starts_with("503 5.5.1"));
}

#[test]
fn open_relay_tricks_are_refused_without_auth() {
    for trick in [
        "<r%ext.org@[127.0.0.1]>",
        "<\"r@ext.org\">",
        "<r@ext.org@[127.0.0.1]>",
        "<@[127.0.0.1]:r@ext.org>",
        "<ext.org!r@[127.0.0.1]>",
    ] {
        let mut d = Driver::new(TlsPolicy::Implicit);
        d.send(&format!(
            "EHLO c\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:{trick}\r\nDATA\r\n"
        ));
        assert!(d.messages.is_empty());
        let codes = d.codes();
        assert_eq!(codes[codes.len() - 3], "530", "{trick}: {}", d.transcript);
        assert!(codes[codes.len() - 2].starts_with('5'));
    }
}

#[test]
fn auth_plain_and_login_and_their_errors() {
    let plain = encode_base64(b"\0app\0secret");
    let table: Vec<(String, &str)> = vec![
        (format!("EHLO c\r\nAUTH PLAIN {plain}\r\n"), "235 2.7.0"),
        (format!("EHLO c\r\nAUTH PLAIN\r\n{plain}\r\n"), "235 2.7.0"),
        (
            format!(
                "EHLO c\r\nAUTH LOGIN\r\n{}\r\n{}\r\n",
                encode_base64(b"app"),
                encode_base64(b"secret")
            ),
            "235 2.7.0",
        ),
        (
            format!(
                "EHLO c\r\nAUTH LOGIN {}\r\n{}\r\n",
                encode_base64(b"app"),
                encode_base64(b"secret")
            ),
            "235 2.7.0",
        ),
        (
            format!("EHLO c\r\nAUTH PLAIN {}\r\n", encode_base64(b"\0app\0wrong")),
            "535 5.7.8",
        ),
        (
            format!("EHLO c\r\nAUTH PLAIN {}\r\n", encode_base64(b"\0nobody\0secret")),
            "535 5.7.8",
        ),
        ("EHLO c\r\nAUTH PLAIN\r\n*\r\n".into(), "501 5.7.0"),
        ("EHLO c\r\nAUTH CRAM-MD5\r\n".into(), "504 5.5.4"),
        ("EHLO c\r\nAUTH PLAIN !!!\r\n".into(), "501 5.5.2"),
        (
            format!("EHLO c\r\nAUTH PLAIN {plain}\r\nAUTH PLAIN {plain}\r\n"),
            "503 5.5.1",
        ),
        (
            format!("EHLO c\r\nAUTH PLAIN\r\n{}\r\n", "A".repeat(13_000)),
            "500 5.5.6",
        ),
        (format!("AUTH PLAIN {plain}\r\n"), "503 5.5.1"),
        // Found by fuzzing (smtp_dialogue): an empty LOGIN username was
        // handed to the driver to check, where PLAIN refuses it.
        ("EHLO c\r\nAUTH LOGIN\r\n\r\n".into(), "501 5.5.2"),
    ];
    for (input, expected) in table {
        let lines = replies_of(TlsPolicy::Implicit, &input);
        assert!(lines.last().unwrap().starts_with(expected), "{input:?} → {lines:?}");
    }
}

#[test]
fn a_message_through_data_is_unstuffed_and_handed_over() {
    let mut d = Driver::authed();
    d.send(
        "MAIL FROM:<app@example.test> BODY=8BITMIME SIZE=100\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n",
    );
    d.send("Subject: hi\r\n\r\n..dot\r\n.\r\n");
    assert_eq!(d.codes(), ["250", "250", "250", "354", "250"]);
    let m = &d.messages[0];
    assert_eq!(m.mail_from, "app@example.test");
    assert_eq!(m.recipients, ["a@b.test", "c@d.test"]);
    assert!(m.eight_bit);
    assert_eq!(m.content, b"Subject: hi\r\n\r\n.dot\r\n");
}

#[test]
fn pipelined_commands_are_answered_in_one_write() {
    let mut d = Driver::authed();
    d.session
        .receive(b"MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n");
    // Three decisions, one flush: all replies arrive together.
    d.run();
    assert_eq!(d.codes(), ["250", "250", "354"]);
}

#[test]
fn envelope_refusals() {
    let table: &[(&str, &str)] = &[
        ("MAIL FROM:<boss@example.test>\r\n", "550 5.7.1"),
        ("MAIL FROM:<app@example.test> SIZE=abc\r\n", "501 5.5.4"),
        ("MAIL FROM:<app@example.test> SIZE=1001\r\n", "552 5.3.4"),
        ("MAIL FROM:<app@example.test> BODY=9BIT\r\n", "555 5.5.4"),
        ("MAIL FROM:<app@example.test> FOO=1\r\n", "555 5.5.4"),
        ("MAIL FROM:<jürgen@example.test>\r\n", "553 5.6.7"),
        (
            "MAIL FROM:<app@example.test>\r\nRCPT TO:<jürgen@b.test>\r\n",
            "553 5.6.7",
        ),
        (
            "MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test> NOTIFY=NEVER\r\n",
            "555 5.5.4",
        ),
        (
            "MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test@c.test>\r\n",
            "501 5.1.3",
        ),
        (
            "MAIL FROM:<app@example.test>\r\nMAIL FROM:<app@example.test>\r\n",
            "503 5.5.1",
        ),
        ("MAIL FROM:<app@example.test>\r\nDATA\r\n", "554 5.5.1"),
        ("MAIL FROM:app@example.test\r\n", "501 5.1.7"),
        ("MAIL TO:<a@b>\r\n", "501 5.5.2"),
        ("MAIL FROM:<app@example.test>\r\nBDAT 5 FOO\r\n", "501 5.5.4"),
        (
            "MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nBDAT 0\r\n",
            "501 5.5.4",
        ),
    ];
    for (input, expected) in table {
        let mut d = Driver::authed();
        d.send(input);
        assert!(
            d.transcript.lines().last().unwrap().starts_with(expected),
            "{input:?} → {}",
            d.transcript
        );
    }
}

#[test]
fn smtputf8_addresses_are_accepted_with_the_parameter() {
    let mut d = Driver::authed();
    d.send("MAIL FROM:<app@example.test> SMTPUTF8\r\nRCPT TO:<jürgen@bü.test>\r\n");
    assert_eq!(d.codes(), ["250", "250"]);
}

#[test]
fn recipients_over_the_limit_get_452_each() {
    let mut d = Driver::authed();
    d.send("MAIL FROM:<app@example.test>\r\n");
    for i in 0..5 {
        d.send(&format!("RCPT TO:<r{i}@b.test>\r\n"));
    }
    assert_eq!(d.codes(), ["250", "250", "250", "250", "452", "452"]);
    assert!(d.transcript.contains("452 4.5.3"));
}

/// RFC 5321 §4.5.3.1.10: a thousand recipients too many, pipelined in one
/// write, get 452 each and are no errors; DATA then delivers to those
/// accepted, and the session goes on.
#[test]
fn excess_recipients_are_no_errors_and_data_goes_to_the_accepted() {
    let mut d = Driver::authed();
    let mut batch = String::from("MAIL FROM:<app@example.test>\r\n");
    for i in 0..1_200 {
        batch.push_str(&format!("RCPT TO:<r{i}@b.test>\r\n"));
    }
    batch.push_str("DATA\r\nSubject: many\r\n\r\nhello\r\n.\r\n");
    d.send(&batch);
    assert!(!d.closed, "{}", d.transcript.lines().last().unwrap_or_default());
    let codes = d.codes();
    assert_eq!(
        codes.iter().filter(|c| *c == "452").count(),
        1_200 - LIMITS.max_recipients
    );
    assert_eq!(d.messages.len(), 1, "{}", codes.last().unwrap_or(&String::new()));
    assert_eq!(d.messages[0].recipients.len(), LIMITS.max_recipients);
    assert_eq!(codes.last().map(String::as_str), Some("250"), "queued");
    d.send("NOOP\r\n");
    assert_eq!(d.codes().last().map(String::as_str), Some("250"), "the session goes on");
}

#[test]
fn the_message_past_the_session_limit_gets_421_and_closes() {
    let mut d = Driver::authed();
    for _ in 0..2 {
        d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nx\r\n.\r\n");
    }
    d.send("MAIL FROM:<app@example.test>\r\n");
    assert_eq!(d.messages.len(), 2);
    assert!(
        d.transcript.lines().last().unwrap().starts_with("421 4.7.0"),
        "{}",
        d.transcript
    );
    assert!(d.closed);
}

#[test]
fn oversized_bodies_are_refused_after_the_final_dot() {
    let mut d = Driver::authed();
    d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n");
    assert!(!d.session.take_oversized());
    d.send(&format!("{}\r\n.\r\nNOOP\r\n", "x".repeat(1001)));
    assert!(d.messages.is_empty());
    assert_eq!(d.codes(), ["250", "250", "354", "552", "250"]);
    assert!(d.session.take_oversized(), "the driver learns of it, to count it");
    assert!(!d.session.take_oversized(), "once");
    d.send("MAIL FROM:<app@example.test> SIZE=1001\r\n");
    assert!(d.session.take_oversized(), "a declared SIZE over the limit counts too");
}

#[test]
fn smuggling_variants_never_make_a_second_message() {
    let smuggled = "MAIL FROM:<app@example.test>\r\nRCPT TO:<victim@b.test>\r\nDATA\r\nsmuggled\r\n";
    for end in ["\n.\n", "\n.\r\n", "\r.\r", "\r.\r\n", "\r\n.\r"] {
        let mut d = Driver::authed();
        d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n");
        d.send(&format!("Subject: one\r\n\r\nbody{end}{smuggled}.\r\nQUIT\r\n"));
        assert!(d.messages.is_empty(), "{end:?} produced {:?}", d.messages);
        let codes = d.codes();
        assert_eq!(codes[3], "550", "{end:?}: {}", d.transcript);
        assert!(d.transcript.contains("550 5.5.2"), "{end:?}");
        assert_eq!(codes[4], "221");
    }
}

#[test]
fn a_nul_before_the_dot_is_content_not_an_end() {
    let mut d = Driver::authed();
    d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n");
    d.send("body\r\n\0.\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<victim@b.test>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(d.messages.len(), 1);
    assert_eq!(d.messages[0].recipients, ["a@b.test"]);
    assert_eq!(d.codes(), ["250", "250", "354", "250"]);
}

#[test]
fn bare_lf_ending_a_command_closes() {
    let mut d = Driver::new(TlsPolicy::Required);
    d.send("NOOP\n");
    assert!(
        d.transcript
            .ends_with("550 5.5.2 Bare LF received; lines must end with CRLF\r\n")
    );
    assert!(d.closed);
}

#[test]
fn a_proxy_header_is_refused_and_closes() {
    let mut d = Driver::new(TlsPolicy::Offered);
    d.send("PROXY TCP4 192.0.2.1 127.0.0.1 4000 25\r\nEHLO c\r\n");
    assert_eq!(d.codes(), ["220", "554"]);
    assert!(d.transcript.contains("554 5.7.0 PROXY protocol header not accepted"));
    assert!(d.closed);
    let mut d = Driver::new(TlsPolicy::Offered);
    d.send_bytes(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c");
    assert_eq!(d.codes(), ["220", "554"]);
    assert!(d.closed);
}

#[test]
fn overlong_and_broken_command_lines() {
    let lines = replies_of(TlsPolicy::Required, &format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600)));
    assert!(lines[1].starts_with("500 5.5.2 Line too long"), "{lines:?}");
    assert!(lines[2].starts_with("250 2.0.0"));
    let mut d = Driver::new(TlsPolicy::Required);
    d.send_bytes(b"NOOP \xff\r\nNO\rOP\r\n");
    assert_eq!(d.codes(), ["220", "500", "500"]);
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let mut d = Driver::new(TlsPolicy::Required);
    d.send("EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<app@example.test>\r\n");
    assert_eq!(d.tls_handshakes, 1);
    assert!(
        d.transcript.ends_with("220 2.0.0 Ready to start TLS\r\n"),
        "{}",
        d.transcript
    );
    // After the handshake the client must EHLO again.
    d.transcript.clear();
    d.send("MAIL FROM:<app@example.test>\r\nEHLO c\r\nSTARTTLS\r\n");
    assert!(d.transcript.starts_with("503 5.5.1"), "{}", d.transcript);
    assert!(d.transcript.contains("AUTH PLAIN LOGIN"));
    assert!(d.transcript.ends_with("554 5.5.1 TLS already active\r\n"));
}

#[test]
fn bdat_chunks_make_one_message() {
    let mut d = Driver::authed();
    d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nBDAT 6\r\nab\r\ncdBDAT 6 LAST\r\n\r\nef");
    assert_eq!(d.codes(), ["250", "250", "250"]);
    d.send("\r\n");
    assert_eq!(d.codes(), ["250", "250", "250", "250"]);
    assert_eq!(d.messages[0].content, b"ab\r\ncd\r\nef\r\n");
    d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nBDAT 3\r\nx\r\nDATA\r\n");
    assert!(
        d.transcript
            .ends_with("503 5.5.1 DATA after BDAT in one transaction\r\n")
    );
}

#[test]
fn bdat_refusals_still_read_the_declared_bytes() {
    let mut d = Driver::authed();
    let big = "y".repeat(1200);
    d.send(&format!(
        "MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nBDAT 1200 LAST\r\n{big}NOOP\r\n"
    ));
    assert_eq!(d.codes(), ["250", "250", "552", "250"]);
    let mut d = Driver::authed();
    d.send("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(d.codes(), ["503", "250"], "{}", d.transcript);
    let mut d = Driver::authed();
    d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nBDAT 4 LAST\r\na\nb\n");
    assert!(d.messages.is_empty());
    assert!(d.transcript.contains("550 5.5.2"));
}

#[test]
fn too_many_errors_close_the_session() {
    let mut d = Driver::new(TlsPolicy::Required);
    d.send(&"XYZZY\r\n".repeat(25));
    assert!(d.closed);
    assert!(d.transcript.contains("421 4.7.0 Too many errors"));
}

fn split_feed(wire: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<bool>) {
    let mut decoder = DataDecoder::new(usize::MAX);
    let mut body = Vec::new();
    let mut pos = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.sort_unstable();
    points.push(wire.len());
    for end in points {
        if end < pos {
            continue;
        }
        let (used, flaws) = decoder.feed(&wire[pos..end], &mut body);
        pos += used;
        if let Some(flaws) = flaws {
            return (body, Some(flaws.bare_line_ending));
        }
    }
    (body, None)
}

fn crlf_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::collection::vec(prop_oneof![Just(b'.'), Just(b'a'), Just(0u8), any::<u8>()], 0..40),
        0..20,
    )
    .prop_map(|lines| {
        let mut body = Vec::new();
        for line in lines {
            body.extend(line.into_iter().filter(|b| *b != b'\r' && *b != b'\n'));
            body.extend_from_slice(b"\r\n");
        }
        body
    })
}

proptest! {
    #[test]
    fn any_body_survives_stuffing_however_it_is_split(body in crlf_body(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let wire = dot_stuff(&body);
        let (decoded, bare) = split_feed(&wire, &cuts);
        prop_assert_eq!(bare, Some(false));
        prop_assert_eq!(decoded, body);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_end_early(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut d = Driver::authed();
        d.send("MAIL FROM:<app@example.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n");
        d.send_bytes(&bytes);
        // A message is only ever handed over after a real <CRLF>.<CRLF>.
        for m in &d.messages {
            prop_assert!(!m.content.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
        let mut any = Driver::new(TlsPolicy::Required);
        any.send_bytes(&bytes);
    }
}
