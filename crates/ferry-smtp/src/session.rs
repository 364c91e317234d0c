//! The SMTP server dialogue as a state machine: bytes in, replies and
//! [`Action`]s out. It never performs IO; the driver (Ferry's session actor,
//! or a unit test) feeds it bytes, writes what [`Session::take_output`]
//! returns, and answers the decisions it asks for.
//!
//! Pipelining falls out of the shape: the driver flushes output only when the
//! session asks for more input, so a pipelined group of commands is answered
//! in one write (RFC 2920), and every multi-line reply goes out whole.

use crate::command::{self, Command};
use crate::data::{ContentFlaws, DataDecoder, LineEndingCheck};
use crate::reply::{Reply, write_multiline};
use crate::sasl::{self, Credentials, SaslError};
use crate::{address, verbs};

/// How a listener treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// No certificate: STARTTLS is not offered (and so AUTH never is).
    Unavailable,
    /// Port 25 style: STARTTLS offered.
    Offered,
    /// Submission (587): STARTTLS required before AUTH and MAIL.
    Required,
    /// RFC 8314 implicit TLS (465): the connection is TLS from the first byte.
    Implicit,
}

/// Node-wide settings of the dialogue.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Name in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message accepted from anyone; advertised with SIZE.
    pub max_message_bytes: usize,
    pub tls: TlsPolicy,
    /// Protocol errors tolerated before `421 4.7.0` (Postfix: smtpd_hard_error_limit).
    pub max_errors: u32,
    /// An inbound listener (the reports coming back to Ferry's return
    /// paths): mail from anyone without AUTH, which is never offered, with
    /// STARTTLS optional, under these limits; every recipient is still the
    /// driver's decision. `None`: mail only after AUTH.
    pub inbound: Option<AppLimits>,
}

/// Per-application limits, set when AUTH succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppLimits {
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_messages_per_session: u32,
}

/// The `MAIL FROM` the session wants the policy to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRequest {
    /// Empty for the null reverse-path.
    pub from: String,
    pub declared_size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
}

/// A complete message, ready to be judged, stored and acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// The message as received (unstuffed, CRLF line endings).
    pub content: Vec<u8>,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write the pending output, then read more bytes and [`Session::receive`] them.
    NeedInput,
    /// Check these credentials, then call [`Session::auth_accepted`] or [`Session::auth_refused`].
    Authenticate(Credentials),
    /// Judge this sender, then call [`Session::mail_result`].
    Mail(MailRequest),
    /// Judge this recipient, then call [`Session::rcpt_result`].
    Rcpt(String),
    /// Scan, sign and store this message, then call [`Session::message_result`].
    Message(Envelope),
    /// Write the pending output (the 220), then perform the TLS handshake and
    /// call [`Session::tls_started`]. Bytes already received are discarded.
    StartTls,
    /// Write the pending output and close the connection.
    Close,
}

#[derive(Debug)]
enum SaslStep {
    Plain,
    LoginUser,
    LoginPassword(String),
}

#[derive(Debug)]
enum Phase {
    Command,
    Sasl(SaslStep),
    Data(DataDecoder),
    Bdat {
        remaining: usize,
        last: bool,
        refusal: Option<Reply>,
    },
    /// A decision was asked for; input waits in the buffer.
    Awaiting,
    Closed,
}

#[derive(Debug, Default)]
pub(crate) struct Transaction {
    pub(crate) mail: Option<MailRequest>,
    pub(crate) recipients: Vec<String>,
    pub(crate) content: Vec<u8>,
    pub(crate) bdat: Option<LineEndingCheck>,
    pub(crate) pending_rcpt: Option<String>,
}

/// Outcome of reading one line from the input buffer.
enum Line {
    Complete(String),
    Incomplete,
    TooLong,
    BareLf,
    BareCr,
    NotUtf8,
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    pub(crate) cfg: SessionConfig,
    phase: Phase,
    input: Vec<u8>,
    out: Vec<u8>,
    /// Inside an over-long line that is being thrown away.
    discarding: bool,
    /// A message was refused for its size since the driver last asked.
    pub(crate) oversized: bool,
    pub(crate) tls: bool,
    pub(crate) helo: Option<String>,
    pub(crate) esmtp: bool,
    pub(crate) auth: Option<(String, AppLimits)>,
    pub(crate) txn: Transaction,
    pub(crate) messages: u32,
    errors: u32,
}

/// Command line limit, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// SASL response line limit: generous for PLAIN, small enough to bound memory.
pub const MAX_SASL_LINE: usize = 12_288;

impl Session {
    /// A new session; the greeting is already in the output.
    pub fn new(cfg: SessionConfig) -> Self {
        let tls = cfg.tls == TlsPolicy::Implicit;
        let mut s = Session {
            phase: Phase::Command,
            input: Vec::new(),
            out: Vec::new(),
            discarding: false,
            oversized: false,
            tls,
            helo: None,
            esmtp: false,
            auth: None,
            txn: Transaction::default(),
            messages: 0,
            errors: 0,
            cfg,
        };
        s.out
            .extend_from_slice(format!("220 {} ESMTP Ferry\r\n", s.cfg.hostname).as_bytes());
        s
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The bytes to write; the buffer is empty afterwards.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// An inbound listener's session (see [`SessionConfig::inbound`]).
    pub fn is_inbound(&self) -> bool {
        self.cfg.inbound.is_some()
    }

    /// The authenticated username, if any.
    pub fn username(&self) -> Option<&str> {
        self.auth.as_ref().map(|(u, _)| u.as_str())
    }

    pub fn helo_name(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// True while message content (DATA or BDAT bytes) is expected: the
    /// driver applies the data timeout instead of the command timeout.
    pub fn in_content(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
    }

    /// Waiting for a command outside a mail transaction: a draining node may
    /// close the session here without cutting a message in half.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Command) && self.txn.mail.is_none() && self.input.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Queues `reply` and closes the session: for timeouts and shutdown.
    pub fn close_with(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
        self.phase = Phase::Closed;
    }

    /// Advances the dialogue as far as the buffered input allows.
    pub fn advance(&mut self) -> Action {
        loop {
            let step = match &mut self.phase {
                Phase::Closed => return Action::Close,
                Phase::Awaiting => return Action::NeedInput,
                Phase::Command => self.command_step(),
                Phase::Sasl(_) => self.sasl_step(),
                Phase::Data(_) => self.data_step(),
                Phase::Bdat { .. } => self.bdat_step(),
            };
            if let Some(action) = step {
                return action;
            }
        }
    }

    pub(crate) fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
        if reply.closes_session() {
            self.phase = Phase::Closed;
        }
    }

    /// A refused command: counts towards the error limit.
    pub(crate) fn error(&mut self, reply: Reply) {
        self.errors += 1;
        self.reply(reply);
        if self.errors >= self.cfg.max_errors && !self.is_closed() {
            self.reply(Reply::new(421, "4.7.0", "Too many errors, closing connection"));
        }
    }

    pub(crate) fn multiline(&mut self, code: u16, lines: &[String]) {
        write_multiline(&mut self.out, code, lines);
    }

    pub(crate) fn raw(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn await_decision(&mut self) {
        self.phase = Phase::Awaiting;
    }

    /// Takes one CRLF-terminated line of at most `max` bytes off the input.
    fn take_line(&mut self, max: usize) -> Line {
        let Some(lf) = self.input.iter().position(|&b| b == b'\n') else {
            if self.input.len() >= max {
                self.input.clear();
                self.discarding = true;
            }
            return Line::Incomplete;
        };
        let raw: Vec<u8> = self.input.drain(..=lf).collect();
        if std::mem::take(&mut self.discarding) || raw.len() > max {
            return Line::TooLong;
        }
        if lf == 0 || raw[lf - 1] != b'\r' {
            return Line::BareLf;
        }
        let body = &raw[..lf - 1];
        if body.contains(&b'\r') {
            return Line::BareCr;
        }
        match String::from_utf8(body.to_vec()) {
            Ok(s) => Line::Complete(s),
            Err(_) => Line::NotUtf8,
        }
    }

    fn command_step(&mut self) -> Option<Action> {
        // A v2 header starts with two empty lines and a NUL, which no
        // client sends; v1 is the PROXY verb in `dispatch`.
        if self.input.starts_with(b"\r\n\r\n\0") {
            self.refuse_proxy_header();
            return None;
        }
        let line = match self.take_line(MAX_COMMAND_LINE) {
            Line::Incomplete => return Some(Action::NeedInput),
            Line::Complete(line) => line,
            other => {
                self.line_error(other, "5.5.2", 500);
                return None;
            }
        };
        self.dispatch(&line)
    }

    /// Replies to a broken line. A bare LF ending a command closes the
    /// session (RFC 5321 §2.3.8; Postfix 3.9 does the same).
    fn line_error(&mut self, line: Line, enhanced: &'static str, too_long_code: u16) {
        match line {
            Line::TooLong => self.error(Reply::new(too_long_code, enhanced, "Line too long")),
            Line::BareLf => {
                self.reply(Reply::new(550, "5.5.2", "Bare LF received; lines must end with CRLF"));
                self.phase = Phase::Closed;
            }
            Line::BareCr => self.error(Reply::new(500, "5.5.2", "Bare CR received; lines must end with CRLF")),
            Line::NotUtf8 => self.error(Reply::new(500, "5.5.2", "Invalid UTF-8 in command")),
            Line::Incomplete | Line::Complete(_) => {}
        }
    }

    fn dispatch(&mut self, line: &str) -> Option<Action> {
        match command::parse(line) {
            Command::Ehlo(arg) => verbs::ehlo(self, arg, true),
            Command::Helo(arg) => verbs::ehlo(self, arg, false),
            Command::StartTls(arg) => return verbs::starttls(self, arg),
            Command::Auth(arg) => return self.auth_command(arg),
            Command::Mail(arg) => return verbs::mail(self, arg),
            Command::Rcpt(arg) => return verbs::rcpt(self, arg),
            Command::Data(arg) => self.data_command(arg),
            Command::Bdat(arg) => self.bdat_command(arg),
            Command::Rset => {
                self.txn = Transaction::default();
                self.reply(Reply::new(250, "2.0.0", "Reset OK"));
            }
            Command::Noop => self.reply(Reply::new(250, "2.0.0", "OK")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                self.phase = Phase::Closed;
            }
            // Same answer for every name: nothing is revealed.
            Command::Vrfy => self.reply(Reply::new(252, "2.0.0", "Cannot verify users; send mail to find out")),
            Command::Expn => self.error(Reply::new(502, "5.5.1", "EXPN is disabled")),
            Command::Help => self.reply(Reply::new(
                214,
                "2.0.0",
                "See RFC 5321; Ferry relays mail for authenticated applications",
            )),
            Command::Proxy => self.refuse_proxy_header(),
            Command::Malformed(usage) => self.error(Reply::new(501, "5.5.2", format!("Syntax: {usage}"))),
            Command::Unknown => self.error(Reply::new(500, "5.5.1", "Command unrecognized")),
        }
        None
    }

    /// Only the configured load balancers may name a client's address; the
    /// driver reads their header before the session starts.
    fn refuse_proxy_header(&mut self) {
        self.input.clear();
        self.reply(Reply::new(
            554,
            "5.7.0",
            "PROXY protocol header not accepted from this address",
        ));
        self.phase = Phase::Closed;
    }

    /// Called by the driver once the TLS handshake completed. Everything the
    /// client said before is forgotten (RFC 3207 §4.2): it must EHLO again,
    /// and plaintext pipelined after STARTTLS is never read as a command.
    pub fn tls_started(&mut self) {
        self.input.clear();
        self.discarding = false;
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.auth = None;
        self.txn = Transaction::default();
        self.phase = Phase::Command;
    }

    // ---- AUTH ----

    fn auth_command(&mut self, arg: &str) -> Option<Action> {
        if let Err(reply) = verbs::auth_allowed(self) {
            self.error(reply);
            return None;
        }
        let (mechanism, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m, Some(i.trim())),
            None => (arg, None),
        };
        match (mechanism.to_ascii_uppercase().as_str(), initial) {
            ("PLAIN", Some(initial)) => self.sasl_plain(initial),
            ("PLAIN", None) => {
                self.raw("334 ");
                self.phase = Phase::Sasl(SaslStep::Plain);
                None
            }
            ("LOGIN", Some(initial)) => {
                self.phase = Phase::Sasl(SaslStep::LoginUser);
                self.sasl_response(initial.to_string())
            }
            ("LOGIN", None) => {
                self.raw("334 VXNlcm5hbWU6");
                self.phase = Phase::Sasl(SaslStep::LoginUser);
                None
            }
            _ => {
                self.error(Reply::new(
                    504,
                    "5.5.4",
                    "Unrecognized authentication mechanism; use PLAIN or LOGIN",
                ));
                None
            }
        }
    }

    fn sasl_step(&mut self) -> Option<Action> {
        match self.take_line(MAX_SASL_LINE) {
            Line::Incomplete => Some(Action::NeedInput),
            Line::Complete(line) => self.sasl_response(line),
            Line::BareLf => {
                self.line_error(Line::BareLf, "5.5.2", 500);
                None
            }
            other => {
                self.phase = Phase::Command;
                self.line_error(other, "5.5.6", 500);
                None
            }
        }
    }

    fn sasl_response(&mut self, line: String) -> Option<Action> {
        let step = std::mem::replace(&mut self.phase, Phase::Command);
        if line == "*" {
            self.error(Reply::new(501, "5.7.0", "Authentication aborted"));
            return None;
        }
        let Phase::Sasl(step) = step else { return None };
        match step {
            SaslStep::Plain => self.sasl_plain(&line),
            SaslStep::LoginUser => match sasl::decode_login_field(&line) {
                // No username is malformed, as it is in PLAIN.
                Ok(user) if user.is_empty() => self.sasl_error(SaslError::Malformed),
                Ok(user) => {
                    self.raw("334 UGFzc3dvcmQ6");
                    self.phase = Phase::Sasl(SaslStep::LoginPassword(user));
                    None
                }
                Err(e) => self.sasl_error(e),
            },
            SaslStep::LoginPassword(username) => match sasl::decode_login_field(&line) {
                Ok(password) => self.authenticate(Credentials { username, password }),
                Err(e) => self.sasl_error(e),
            },
        }
    }

    fn sasl_plain(&mut self, response: &str) -> Option<Action> {
        match sasl::decode_plain(response) {
            Ok(credentials) => self.authenticate(credentials),
            Err(e) => self.sasl_error(e),
        }
    }

    fn sasl_error(&mut self, e: SaslError) -> Option<Action> {
        let reason = match e {
            SaslError::Base64 => "Invalid base64 in SASL response",
            SaslError::Malformed => "Malformed SASL response",
        };
        self.error(Reply::new(501, "5.5.2", reason));
        None
    }

    fn authenticate(&mut self, credentials: Credentials) -> Option<Action> {
        self.phase = Phase::Awaiting;
        Some(Action::Authenticate(credentials))
    }

    /// The credentials were good: the session is now this application's.
    pub fn auth_accepted(&mut self, username: String, limits: AppLimits) {
        self.auth = Some((username, limits));
        self.phase = Phase::Command;
        self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
    }

    /// The credentials were refused with `reply` (535 5.7.8, or a lockout).
    /// Whether a message was refused for its size (552 5.3.4, already
    /// answered) since the last call: for the driver's counts.
    pub fn take_oversized(&mut self) -> bool {
        std::mem::take(&mut self.oversized)
    }

    pub fn auth_refused(&mut self, reply: Reply) {
        self.phase = Phase::Command;
        self.error(reply);
    }

    // ---- MAIL and RCPT decisions ----

    pub fn mail_result(&mut self, verdict: Result<(), Reply>) {
        self.phase = Phase::Command;
        let request = self.txn.mail.take();
        match verdict {
            Ok(()) => {
                self.txn.mail = request;
                self.messages += 1;
                self.reply(Reply::new(250, "2.1.0", "Sender OK"));
            }
            Err(reply) => self.error(reply),
        }
    }

    pub fn rcpt_result(&mut self, verdict: Result<(), Reply>) {
        self.phase = Phase::Command;
        let rcpt = self.txn.pending_rcpt.take();
        match (verdict, rcpt) {
            (Ok(()), Some(rcpt)) => {
                self.txn.recipients.push(rcpt);
                self.reply(Reply::new(250, "2.1.5", "Recipient OK"));
            }
            (Ok(()), None) => {}
            (Err(reply), _) => self.error(reply),
        }
    }

    // ---- DATA and BDAT ----

    /// The size limit of the next message: the relay's, or the signed-in
    /// application's (or the inbound listener's) when lower.
    pub fn message_limit(&self) -> usize {
        match self.limits() {
            Some(limits) => limits.max_message_bytes.min(self.cfg.max_message_bytes),
            None => self.cfg.max_message_bytes,
        }
    }

    /// The limits mail is taken under: the signed-in application's, or an
    /// inbound listener's; none before AUTH elsewhere.
    pub(crate) fn limits(&self) -> Option<&AppLimits> {
        self.auth.as_ref().map(|(_, l)| l).or(self.cfg.inbound.as_ref())
    }

    fn data_command(&mut self, arg: &str) {
        if !arg.is_empty() {
            return self.error(Reply::new(501, "5.5.4", "DATA takes no parameters"));
        }
        if let Err(reply) = self.content_allowed() {
            return self.error(reply);
        }
        if self.txn.bdat.is_some() {
            return self.error(Reply::new(503, "5.5.1", "DATA after BDAT in one transaction"));
        }
        self.reply(Reply::new(354, "2.0.0", "End data with <CR><LF>.<CR><LF>"));
        self.phase = Phase::Data(DataDecoder::new(self.message_limit()));
    }

    fn content_allowed(&self) -> Result<(), Reply> {
        if self.txn.mail.is_none() {
            return Err(Reply::new(503, "5.5.1", "Send MAIL FROM first"));
        }
        if self.txn.recipients.is_empty() {
            return Err(Reply::new(554, "5.5.1", "No valid recipients"));
        }
        Ok(())
    }

    fn data_step(&mut self) -> Option<Action> {
        let Phase::Data(decoder) = &mut self.phase else {
            return None;
        };
        let (used, flaws) = decoder.feed(&self.input, &mut self.txn.content);
        self.input.drain(..used);
        match flaws {
            None => Some(Action::NeedInput),
            Some(flaws) => self.content_complete(flaws),
        }
    }

    fn content_complete(&mut self, flaws: ContentFlaws) -> Option<Action> {
        self.phase = Phase::Command;
        if flaws.over_limit {
            let limit = self.message_limit();
            self.txn = Transaction::default();
            self.oversized = true;
            self.error(Reply::new(
                552,
                "5.3.4",
                format!("Message exceeds the size limit of {limit} bytes"),
            ));
            return None;
        }
        if flaws.bare_line_ending {
            self.txn = Transaction::default();
            self.error(Reply::new(
                550,
                "5.5.2",
                "Message refused: bare CR or LF in content; lines must end with CRLF",
            ));
            return None;
        }
        let txn = std::mem::take(&mut self.txn);
        let mail = txn.mail.unwrap_or_else(|| MailRequest {
            from: String::new(),
            declared_size: None,
            eight_bit: false,
            smtputf8: false,
        });
        self.phase = Phase::Awaiting;
        Some(Action::Message(Envelope {
            mail_from: mail.from,
            recipients: txn.recipients,
            eight_bit: mail.eight_bit,
            smtputf8: mail.smtputf8,
            content: txn.content,
        }))
    }

    /// The driver's answer to [`Action::Message`]: 250 with the queue id, or a refusal.
    pub fn message_result(&mut self, reply: Reply) {
        self.phase = Phase::Command;
        if reply.is_positive() {
            self.reply(reply);
        } else {
            self.error(reply);
        }
    }

    fn bdat_command(&mut self, arg: &str) {
        let Some((size, last)) = command::parse_bdat(arg) else {
            return self.error(Reply::new(501, "5.5.4", "Syntax: BDAT <size> [LAST]"));
        };
        if size == 0 && !last {
            return self.error(Reply::new(501, "5.5.4", "Empty BDAT chunk without LAST"));
        }
        let refusal = self.content_allowed().err();
        if refusal.is_none() {
            self.txn.bdat.get_or_insert_with(LineEndingCheck::default);
        }
        self.phase = Phase::Bdat {
            remaining: size,
            last,
            refusal,
        };
    }

    fn bdat_step(&mut self) -> Option<Action> {
        let limit = self.message_limit();
        let Phase::Bdat {
            remaining,
            last,
            refusal,
        } = &mut self.phase
        else {
            return None;
        };
        let take = (*remaining).min(self.input.len());
        let chunk: Vec<u8> = self.input.drain(..take).collect();
        *remaining -= take;
        if refusal.is_none() {
            if self.txn.content.len() + chunk.len() > limit {
                self.oversized = true;
                *refusal = Some(Reply::new(
                    552,
                    "5.3.4",
                    format!("Message exceeds the size limit of {limit} bytes"),
                ));
            } else if let Some(check) = &mut self.txn.bdat {
                check.feed(&chunk);
                self.txn.content.extend_from_slice(&chunk);
            }
        }
        if *remaining > 0 {
            return Some(Action::NeedInput);
        }
        let (last, refusal) = (*last, refusal.take());
        self.phase = Phase::Command;
        if let Some(reply) = refusal {
            // RFC 3030 §2: a refused chunk fails the whole transaction.
            self.txn = Transaction::default();
            self.error(reply);
            return None;
        }
        if !last {
            let received = self.txn.content.len();
            self.reply(Reply::new(250, "2.0.0", format!("{received} octets received")));
            return None;
        }
        let bare = self.txn.bdat.is_some_and(|c| c.finish());
        self.content_complete(ContentFlaws {
            bare_line_ending: bare,
            over_limit: false,
        })
    }
}

pub(crate) fn address_reply(e: address::AddressError, sender: bool) -> Reply {
    match (e, sender) {
        (address::AddressError::NonAscii, _) => Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"),
        (address::AddressError::Syntax, true) => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        (address::AddressError::Syntax, false) => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
    }
}
