//! The SMTP dialogue (`ferry_smtp::Session`) fed arbitrary bytes in
//! arbitrary reads, driven as the relay's session actor drives it.
//!
//! Input: `settings`, `cuts`, then `cuts % 8` read lengths, then the bytes
//! the client sends. `settings`: bits 0-1 the TLS policy (3: implicit TLS,
//! so AUTH works at once), bit 2 small limits, bits 3-5 refuse AUTH, MAIL,
//! RCPT, bit 6 an inbound listener (mail without AUTH, which must never
//! be offered or taken), bit 7 refuse messages. The read lengths are used in turn, over
//! and over, until the input ends (none: one read of everything).
//!
//! Checked: no panic; every write is whole, well-formed replies (3-digit
//! code, CRLF); a message is only handed over with CRLF line endings,
//! within the size and recipient limits, on an authenticated session (or
//! an inbound one); and
//! how the input was split changes nothing the client or the driver sees
//! (the same replies, the same actions as one read of everything), unless
//! STARTTLS or a PROXY v2 signature made the split matter by design
//! (bytes pipelined before the handshake are dropped; the signature is
//! looked for at the start of what has arrived).

#![no_main]

use ferry_fuzz::assert_replies;
use ferry_smtp::{Action, AppLimits, Reply, Session, SessionConfig, TlsPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [settings, cuts, rest @ ..] = data else { return };
    let cuts = usize::from(*cuts % 8).min(rest.len());
    let (lengths, input) = rest.split_at(cuts);
    let split = Dialogue::new(*settings).run(lengths, input);
    if lengths.is_empty() || split.tls_started || input.windows(5).any(|w| w == b"\r\n\r\n\0") {
        return;
    }
    let whole = Dialogue::new(*settings).run(&[], input);
    assert_eq!(
        String::from_utf8_lossy(&split.replies),
        String::from_utf8_lossy(&whole.replies),
        "the replies depend on how the input was split"
    );
    assert_eq!(
        split.actions, whole.actions,
        "the actions depend on how the input was split"
    );
});

/// What the client and the driver saw.
#[derive(Default)]
struct Transcript {
    replies: Vec<u8>,
    actions: Vec<String>,
    tls_started: bool,
}

struct Dialogue {
    session: Session,
    settings: u8,
    limits: AppLimits,
    seen: Transcript,
}

impl Dialogue {
    fn new(settings: u8) -> Self {
        let tls = match settings & 3 {
            0 => TlsPolicy::Unavailable,
            1 => TlsPolicy::Offered,
            2 => TlsPolicy::Required,
            _ => TlsPolicy::Implicit,
        };
        let small = settings & 4 != 0;
        let limits = AppLimits {
            max_message_bytes: if small { 32 } else { 50_000 },
            max_recipients: if small { 1 } else { 5 },
            max_messages_per_session: if small { 1 } else { 10 },
        };
        let cfg = SessionConfig {
            hostname: "relay.test".into(),
            max_message_bytes: if small { 64 } else { 100_000 },
            tls,
            max_errors: if small { 3 } else { 20 },
            inbound: (settings & (1 << 6) != 0).then_some(limits),
        };
        Dialogue {
            session: Session::new(cfg),
            settings,
            limits,
            seen: Transcript::default(),
        }
    }

    fn flush(&mut self) {
        let out = self.session.take_output();
        assert_replies(&out);
        self.seen.replies.extend_from_slice(&out);
    }

    fn inbound(&self) -> bool {
        self.settings & (1 << 6) != 0
    }

    fn refuses(&self, bit: u8) -> bool {
        self.settings & (1 << bit) != 0
    }

    fn run(mut self, lengths: &[u8], mut input: &[u8]) -> Transcript {
        let mut reads = lengths.iter().map(|&l| usize::from(l % 64) + 1).cycle();
        if !self.step() {
            return self.seen;
        }
        while !input.is_empty() {
            let take = if lengths.is_empty() {
                input.len()
            } else {
                reads.next().unwrap_or(1).min(input.len())
            };
            let (read, rest) = input.split_at(take);
            input = rest;
            self.session.receive(read);
            if !self.step() {
                return self.seen;
            }
        }
        // The client went quiet: the driver's timeout.
        self.session.close_with(Reply::new(421, "4.4.2", "Timeout"));
        self.flush();
        self.seen
    }

    /// Runs until the session wants input (true) or closes (false).
    fn step(&mut self) -> bool {
        // Each decision leads to another step; the input bounds them.
        loop {
            let action = self.session.advance();
            if !matches!(action, Action::NeedInput) {
                self.seen.actions.push(format!("{action:?}"));
            }
            match action {
                Action::NeedInput => {
                    self.flush();
                    return true;
                }
                Action::Close => {
                    self.flush();
                    assert!(self.session.is_closed());
                    return false;
                }
                Action::StartTls => {
                    self.flush();
                    assert!(!self.session.is_tls());
                    self.session.tls_started();
                    self.seen.tls_started = true;
                }
                Action::Authenticate(credentials) => {
                    assert!(!credentials.username.is_empty());
                    assert!(!self.inbound(), "AUTH taken on an inbound listener");
                    if self.refuses(3) {
                        self.session
                            .auth_refused(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
                    } else {
                        self.session.auth_accepted(credentials.username, self.limits);
                    }
                }
                Action::Mail(_) => {
                    assert!(self.inbound() || self.session.username().is_some(), "MAIL judged before AUTH");
                    let verdict = if self.refuses(4) {
                        Err(Reply::new(550, "5.7.1", "Sender not authorised"))
                    } else {
                        Ok(())
                    };
                    self.session.mail_result(verdict);
                }
                Action::Rcpt(_) => {
                    let verdict = if self.refuses(5) {
                        Err(Reply::new(550, "5.1.1", "No such recipient"))
                    } else {
                        Ok(())
                    };
                    self.session.rcpt_result(verdict);
                }
                Action::Message(envelope) => {
                    assert!(self.inbound() || self.session.username().is_some(), "message before AUTH");
                    assert!(!envelope.recipients.is_empty());
                    assert!(envelope.recipients.len() <= self.limits.max_recipients);
                    assert!(envelope.content.len() <= self.session.message_limit());
                    let content = &envelope.content;
                    for (i, &b) in content.iter().enumerate() {
                        match b {
                            b'\r' => assert_eq!(content.get(i + 1), Some(&b'\n'), "bare CR in a message"),
                            b'\n' => assert!(i > 0 && content[i - 1] == b'\r', "bare LF in a message"),
                            _ => {}
                        }
                    }
                    let reply = if self.refuses(7) {
                        Reply::new(554, "5.7.1", "Message refused")
                    } else {
                        Reply::new(250, "2.0.0", "Ok: queued as Q1")
                    };
                    self.session.message_result(reply);
                }
            }
        }
    }
}
