//! Reads a report that arrives at Ferry's inbound bounce address and says
//! what it reports, and about which of our messages. Pure code: no IO.
//!
//! Three kinds of report:
//! - DSNs (RFC 3464, and RFC 6533's `message/global-delivery-status`): one
//!   [`Bounce`] per recipient group, with its action, status and diagnostic.
//! - Complaints in ARF (RFC 5965, `message/feedback-report`): one
//!   [`Complaint`] naming the reported recipients.
//! - Plain-text bounces from MTAs that send no DSN (Exim, qmail, older
//!   Exchange, Gmail, Yahoo): [`classify`] reads the text for an SMTP code
//!   or a known phrase; what it finds is marked `guessed`.
//!
//! For each, [`OriginalHeaders`] holds the original message's Return-Path,
//! Message-ID and To, read from the attached message or headers (or, for a
//! plain bounce, from the quoted copy): feedback loops report to a fixed
//! address, so the VERP address in the original's Return-Path is what ties
//! the report to its message.
//!
//! The MIME structure is walked here (`mime_parts`); mail-parser
//! reads each header section and decodes bodies. Its whole-message parser
//! is not used: on crafted multipart input it trips its own debug
//! assertions, and reports come from anyone on the internet. Every loop is
//! bounded by the input or by a cap below, and nothing here panics.

use std::borrow::Cow;
use std::net::IpAddr;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::html::html_to_text;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{ContentType, Header, HeaderName, HeaderValue, MessageParser};

/// Recipient groups read from one DSN, and recipients kept from one
/// complaint.
pub const RECIPIENTS_MAX: usize = 1000;
/// MIME parts read from one message.
const PARTS_MAX: usize = 256;
/// Multipart levels opened (a report is two deep at most).
const MIME_DEPTH_MAX: usize = 8;
/// Text parts read for a plain bounce's words.
const TEXT_PARTS_MAX: usize = 8;
/// Addresses kept from the original's To.
const TO_MAX: usize = 100;
/// Bytes of human-readable text that [`classify`] reads: the reason is near
/// the top of a bounce, and the scan is linear in what it reads.
const SCAN_BYTES_MAX: usize = 64 * 1024;
/// Bytes kept of the line quoted as a guessed bounce's diagnostic.
const DIAGNOSTIC_BYTES_MAX: usize = 512;

/// What one report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// Never empty: a DSN's recipient groups (at most [`RECIPIENTS_MAX`]),
    /// or the one complaint, or the one guessed bounce.
    pub items: Vec<Feedback>,
    /// The DSN's or complaint's Reporting-MTA, without its `dns;` type.
    pub reporting_mta: Option<String>,
    /// The DSN's Original-Envelope-Id: the ENVID we gave at MAIL FROM.
    pub original_envelope_id: Option<String>,
    pub original: OriginalHeaders,
}

/// How the report was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// A delivery status notification (RFC 3464 / RFC 6533).
    Dsn,
    /// An abuse report in ARF (RFC 5965).
    Complaint,
    /// A plain-text bounce, read by [`classify`]: every item is `guessed`.
    Guessed,
}

/// What a report says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    Bounce(Bounce),
    Complaint(Complaint),
}

/// One recipient's delivery status. Despite the name, `action` may say the
/// message was delivered, relayed or expanded (callers may ignore those);
/// only [`Bounce::is_hard`] ones are reasons to stop mailing the recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// Final-Recipient, or Original-Recipient when there is none; without
    /// its `rfc822;` type and angle brackets, the domain lower case.
    pub recipient: Option<String>,
    /// Original-Recipient (the ORCPT we gave), normalised the same way.
    pub original_recipient: Option<String>,
    pub action: DsnAction,
    /// The enhanced status code (`5.1.1`): the Status field, else the first
    /// one in the diagnostic.
    pub status: Option<String>,
    /// None when the action is a success, or when nothing says how bad it is.
    pub severity: Option<Severity>,
    /// Why, when the status code or the diagnostic's words say.
    pub reason: Option<Reason>,
    /// Diagnostic-Code without its `smtp;` type, unfolded; for a guessed
    /// bounce, the line that gave the code or phrase.
    pub diagnostic: Option<String>,
    /// Remote-MTA without its `dns;` type.
    pub remote_mta: Option<String>,
    /// Read from free text by [`classify`], not from a DSN.
    pub guessed: bool,
}

impl Bounce {
    /// A permanent failure: the recipient should not be mailed again. Never
    /// true of a delay, which is always [`Severity::Soft`].
    pub fn is_hard(&self) -> bool {
        self.severity == Some(Severity::Hard)
    }
}

/// One complaint (RFC 5965 fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    /// Feedback-Type, lower case: `abuse`, `fraud`, `virus`, `other`,
    /// `not-spam`, `auth-failure`...; `other` when the field is missing.
    pub feedback_type: String,
    /// Each Original-Rcpt-To (at most [`RECIPIENTS_MAX`]), normalised like
    /// a [`Bounce`] recipient; often none, as many providers redact them.
    pub recipients: Vec<String>,
    /// Original-Mail-From: our envelope sender, so the VERP address.
    pub mail_from: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// Reported-Domain, lower case.
    pub reported_domain: Option<String>,
    /// Arrival-Date as written (an RFC 5322 date).
    pub arrival: Option<String>,
    pub user_agent: Option<String>,
    pub version: Option<String>,
}

/// The original message's headers that tie a report back to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginalHeaders {
    /// The address in the topmost Return-Path, without angle brackets.
    pub return_path: Option<String>,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// The To addresses (at most 100), normalised like a recipient.
    pub to: Vec<String>,
}

/// The Action of a DSN recipient group (RFC 3464 section 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    /// Missing or not one of the above.
    Unknown,
}

impl DsnAction {
    /// The action named by the field's first word, in any case.
    fn parse(value: &str) -> DsnAction {
        let word = value.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
        match word.to_ascii_lowercase().as_str() {
            "failed" => DsnAction::Failed,
            "delayed" => DsnAction::Delayed,
            "delivered" => DsnAction::Delivered,
            "relayed" => DsnAction::Relayed,
            "expanded" => DsnAction::Expanded,
            _ => DsnAction::Unknown,
        }
    }

    fn is_success(self) -> bool {
        matches!(self, DsnAction::Delivered | DsnAction::Relayed | DsnAction::Expanded)
    }
}

/// How lasting a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Permanent: status class 5, or `Action: failed` without a code.
    Hard,
    /// Transient: status class 4, or a delay.
    Soft,
}

/// Why a delivery failed, when the code or the words say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No such mailbox (x.1.1, Microsoft's x.1.10; "user unknown").
    UnknownUser,
    /// No such domain, or no mail server for it (x.1.2; "host not found").
    UnknownDomain,
    /// Over quota (x.2.2; "mailbox full").
    MailboxFull,
    /// The mailbox exists but takes no mail (5.2.1; "account disabled").
    MailboxDisabled,
    /// Refused for policy: spam, reputation, authentication (x.7.x).
    Policy,
}

impl Reason {
    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Reason::UnknownUser => "unknown_user",
            Reason::UnknownDomain => "unknown_domain",
            Reason::MailboxFull => "mailbox_full",
            Reason::MailboxDisabled => "mailbox_disabled",
            Reason::Policy => "policy",
        }
    }

    /// The severity to guess when no code says: a full mailbox may empty,
    /// and a policy refusal says nothing lasting about the recipient.
    fn guessed_severity(self) -> Severity {
        match self {
            Reason::UnknownUser | Reason::UnknownDomain | Reason::MailboxDisabled => Severity::Hard,
            Reason::MailboxFull | Reason::Policy => Severity::Soft,
        }
    }
}

/// What [`classify`] finds in a bounce's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub severity: Severity,
    /// The first 4.x.x or 5.x.x enhanced status code in the text.
    pub status: Option<String>,
    pub reason: Option<Reason>,
}

/// Reads `raw`, a whole message as received. None: not a report this
/// module understands (an ordinary message, an auto-reply, a read receipt).
pub fn parse(raw: &[u8]) -> Option<Report> {
    let parts = mime_parts(raw);
    let dsn = ["delivery-status", "global-delivery-status"];
    if let Some(status) = parts.iter().find(|p| p.is("message", &dsn))
        && let Some(report) = read_dsn(status, &parts)
    {
        return Some(report);
    }
    if let Some(feedback) = parts.iter().find(|p| p.is("message", &["feedback-report"]))
        && let Some(report) = read_complaint(feedback, &parts)
    {
        return Some(report);
    }
    read_plain_bounce(&parts)
}

/// Reads the human-readable text of a bounce: the first failure code (4xx,
/// 5xx, x.y.z), else words that say why or how lasting. None: nothing in
/// the text says a delivery failed. Only the first 64 KiB are read.
pub fn classify(text: &str) -> Option<Diagnosis> {
    diagnose(text).map(|(diagnosis, _)| diagnosis)
}

// ---- DSNs -------------------------------------------------------------

fn read_dsn(status_part: &Part, parts: &[Part]) -> Option<Report> {
    let text = String::from_utf8_lossy(&status_part.body);
    let mut report = Report {
        kind: ReportKind::Dsn,
        items: Vec::new(),
        reporting_mta: None,
        original_envelope_id: None,
        original: original_headers(parts).unwrap_or_default(),
    };
    // The first group is per-message and the rest per-recipient, but some
    // MTAs run them together or leave one out: each group gives what it has.
    for group in field_groups(&text) {
        if report.reporting_mta.is_none() {
            report.reporting_mta = field(&group, "Reporting-MTA").map(|v| strip_type(v).to_string());
        }
        if report.original_envelope_id.is_none() {
            report.original_envelope_id = field(&group, "Original-Envelope-Id").map(str::to_string);
        }
        if let Some(bounce) = read_recipient_group(&group) {
            report.items.push(Feedback::Bounce(bounce));
            if report.items.len() == RECIPIENTS_MAX {
                break;
            }
        }
    }
    // A DSN with no recipient in it (cut short, say): let the plain-text
    // reader try the human-readable part instead.
    (!report.items.is_empty()).then_some(report)
}

fn read_recipient_group(group: &[(&str, String)]) -> Option<Bounce> {
    let final_recipient = field(group, "Final-Recipient");
    let original_recipient = field(group, "Original-Recipient");
    let action = field(group, "Action");
    let status_field = field(group, "Status");
    if final_recipient.is_none() && original_recipient.is_none() && action.is_none() && status_field.is_none() {
        return None;
    }
    let action = action.map_or(DsnAction::Unknown, DsnAction::parse);
    let diagnostic = field(group, "Diagnostic-Code").map(|v| strip_type(v).to_string());
    let diagnostic_text = diagnostic.as_deref().unwrap_or("");
    let status = status_field
        .and_then(|v| v.split_whitespace().next())
        .filter(|token| enhanced_code_at(token.as_bytes(), 0) == Some(token.len()))
        .or_else(|| enhanced_codes(diagnostic_text).map(|(_, code)| code).next())
        .map(str::to_string);
    let reply = reply_codes(diagnostic_text).map(|(_, code)| code).next();
    let reason = if action.is_success() {
        None
    } else {
        status
            .as_deref()
            .and_then(status_reason)
            .or_else(|| phrase_reason(diagnostic_text).map(|(_, r)| r))
    };
    Some(Bounce {
        recipient: final_recipient.or(original_recipient).and_then(address),
        original_recipient: original_recipient.and_then(address),
        action,
        severity: dsn_severity(action, status.as_deref(), reply),
        status,
        reason,
        diagnostic: diagnostic.filter(|d| !d.is_empty()),
        remote_mta: field(group, "Remote-MTA").map(|v| strip_type(v).to_string()),
        guessed: false,
    })
}

/// A delay is Soft and a success has none; otherwise the status class (or
/// the diagnostic's reply code) decides, and `failed` alone means Hard.
fn dsn_severity(action: DsnAction, status: Option<&str>, reply: Option<u16>) -> Option<Severity> {
    let coded = status
        .and_then(|s| class_severity(s.as_bytes().first().copied()?))
        .or_else(|| {
            let class = b'0' + u8::try_from(reply? / 100).ok()?;
            class_severity(class)
        });
    match action {
        DsnAction::Delayed => Some(Severity::Soft),
        DsnAction::Delivered | DsnAction::Relayed | DsnAction::Expanded => None,
        DsnAction::Failed => coded.or(Some(Severity::Hard)),
        DsnAction::Unknown => coded,
    }
}

fn class_severity(class: u8) -> Option<Severity> {
    match class {
        b'5' => Some(Severity::Hard),
        b'4' => Some(Severity::Soft),
        _ => None,
    }
}

// ---- Complaints ---------------------------------------------------------

fn read_complaint(feedback_part: &Part, parts: &[Part]) -> Option<Report> {
    let text = String::from_utf8_lossy(&feedback_part.body);
    let fields: Vec<(&str, String)> = field_groups(&text).into_iter().flatten().collect();
    if fields.is_empty() {
        return None;
    }
    let one = |name| field(&fields, name).map(str::to_string);
    let complaint = Complaint {
        feedback_type: field(&fields, "Feedback-Type")
            .and_then(|v| v.split_whitespace().next())
            .map_or_else(|| "other".to_string(), str::to_ascii_lowercase),
        recipients: fields
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("Original-Rcpt-To"))
            .filter_map(|(_, value)| address(value))
            .take(RECIPIENTS_MAX)
            .collect(),
        mail_from: field(&fields, "Original-Mail-From").and_then(address),
        source_ip: field(&fields, "Source-IP").and_then(ip_address),
        reported_domain: field(&fields, "Reported-Domain").map(str::to_lowercase),
        arrival: one("Arrival-Date").or_else(|| one("Received-Date")),
        user_agent: one("User-Agent"),
        version: one("Version"),
    };
    // One item, not one per recipient: copying the other fields for each
    // would let a small report grow a thousandfold.
    Some(Report {
        kind: ReportKind::Complaint,
        items: vec![Feedback::Complaint(complaint)],
        reporting_mta: field(&fields, "Reporting-MTA").map(|v| strip_type(v).to_string()),
        original_envelope_id: None,
        original: original_headers(parts).unwrap_or_default(),
    })
}

/// Source-IP: an address, perhaps in brackets or with an `IPv6:` tag.
fn ip_address(value: &str) -> Option<IpAddr> {
    let token = value.split_whitespace().next()?;
    let token = token.trim_start_matches('[').trim_end_matches(']');
    let token = match token.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => token.get(5..)?,
        _ => token,
    };
    token.parse().ok()
}

// ---- Plain-text bounces -------------------------------------------------

/// Subjects (lower case) that only bounces and delay warnings use.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliverable",
    "undelivered",
    "delivery status notification",
    "mail delivery failed",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "failure notice",
    "returned mail",
    "could not be delivered",
    "non-delivery",
    "nondeliverable",
    "not delivered",
    "address not found",
    "delivery delayed",
    "delayed mail",
    "delivery incomplete",
    "mail system error",
    "warning: could not send",
];

/// Local parts (lower case) of the senders of bounces.
const BOUNCE_SENDERS: &[&str] = &["mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster"];

/// Where a bounce starts quoting the original (lower case): the text after
/// it is the sender's, not the bouncing server's. Only phrases that frame a
/// quote: "the original message is attached" may come before the reason.
const QUOTE_MARKERS: &[&str] = &[
    "copy of the message",
    "below this line",
    "----- original message",
    "original message follows",
    "original message headers",
];

fn read_plain_bounce(parts: &[Part]) -> Option<Report> {
    let headers = &parts.first()?.headers;
    let subject = text_header(headers, &HeaderName::Subject).unwrap_or("").to_lowercase();
    let bounce_subject = BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s));
    if !bounce_subject && !from_bounce_sender(headers) {
        return None;
    }
    let body = body_text(parts);
    let (text, quoted) = split_at_quote(&body);
    let diagnosis = diagnose(text);
    if diagnosis.is_none() && !bounce_subject {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let delayed = is_delay(&subject) || is_delay(&lower);
    let (severity, status, reason, diagnostic) = match diagnosis {
        Some((d, at)) => (Some(d.severity), d.status, d.reason, Some(line_at(text, at))),
        None => (None, None, None, None),
    };
    let bounce = Bounce {
        recipient: plain_recipient(text),
        original_recipient: None,
        action: if delayed { DsnAction::Delayed } else { DsnAction::Failed },
        status,
        severity: if delayed { Some(Severity::Soft) } else { severity },
        reason,
        diagnostic,
        remote_mta: None,
        guessed: true,
    };
    let original = original_headers(parts)
        .or_else(|| quoted_headers(quoted))
        .unwrap_or_default();
    Some(Report {
        kind: ReportKind::Guessed,
        items: vec![Feedback::Bounce(bounce)],
        reporting_mta: None,
        original_envelope_id: None,
        original,
    })
}

fn from_bounce_sender(headers: &[Header]) -> bool {
    let Some(HeaderValue::Address(from)) = headers.iter().find(|h| h.name == HeaderName::From).map(|h| &h.value) else {
        return false;
    };
    from.iter().take(TO_MAX).any(|addr| {
        let name = addr.name().unwrap_or("").to_ascii_lowercase();
        let local = addr.address().and_then(|a| a.rsplit_once('@')).map_or("", |(l, _)| l);
        let local = local.to_ascii_lowercase();
        BOUNCE_SENDERS.contains(&local.as_str())
            || local.starts_with("microsoftexchange")
            || name.contains("mail delivery")
            || name.contains("mailer-daemon")
    })
}

/// The message's plain-text parts joined (its HTML ones as text when it has
/// none), at most [`TEXT_PARTS_MAX`] parts and [`SCAN_BYTES_MAX`] bytes.
fn body_text(parts: &[Part]) -> String {
    let plain: Vec<&Part> = parts
        .iter()
        .filter(|p| p.is_plain_text())
        .take(TEXT_PARTS_MAX)
        .collect();
    let html = || {
        parts
            .iter()
            .filter(|p| p.is("text", &["html"]))
            .take(TEXT_PARTS_MAX)
            .collect()
    };
    let chosen = if plain.is_empty() { html() } else { plain };
    let mut body = String::new();
    for part in chosen {
        let bytes = part.body.get(..part.body.len().min(SCAN_BYTES_MAX)).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes);
        let text = if part.is("text", &["html"]) {
            Cow::Owned(html_to_text(&text))
        } else {
            text
        };
        body.push_str(head(&text, SCAN_BYTES_MAX.saturating_sub(body.len())));
        body.push('\n');
    }
    body
}

/// The bouncing server's own words, and the quoted original after them:
/// from the line of the first marker, else from the first line that starts
/// with `Return-Path:`.
fn split_at_quote(body: &str) -> (&str, &str) {
    // ASCII lowering keeps byte offsets: `at` is a char boundary of `body`.
    let lower = body.to_ascii_lowercase();
    let marker = QUOTE_MARKERS.iter().filter_map(|m| lower.find(m)).min();
    let at = match marker {
        Some(at) => body[..at].rfind('\n').map_or(0, |nl| nl + 1),
        None if lower.starts_with("return-path:") => 0,
        None => lower.find("\nreturn-path:").map_or(body.len(), |nl| nl + 1),
    };
    body.split_at(at)
}

/// Headers quoted in a plain bounce: from the first header line of the
/// quote.
fn quoted_headers(quoted: &str) -> Option<OriginalHeaders> {
    let mut offset = 0;
    let start = quoted.split_inclusive('\n').find_map(|line| {
        let here = offset;
        offset += line.len();
        is_header_line(line).then_some(here)
    })?;
    Some(headers_of(&header_fields(quoted.get(start..)?.as_bytes())))
}

fn is_header_line(line: &str) -> bool {
    match line.split_once(':') {
        Some((name, _)) => !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        None => false,
    }
}

/// The recipient a plain bounce names: the one in `RCPT TO:<...>`, else the
/// first address in the text that is not a mailer's own.
fn plain_recipient(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if let Some(at) = lower.find("rcpt to:<") {
        let after = &text[at + "rcpt to:<".len()..];
        if let Some(found) = after.split('>').next().and_then(address) {
            return Some(found);
        }
    }
    addresses_in(text).find(|a| {
        let local = a.split('@').next().unwrap_or("").to_ascii_lowercase();
        !BOUNCE_SENDERS.contains(&local.as_str())
    })
}

/// Address-looking tokens (`local@domain.tld`), ASCII only, in order.
fn addresses_in(text: &str) -> impl Iterator<Item = String> + '_ {
    let b = text.as_bytes();
    let local_byte = |c: &u8| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(c);
    let domain_byte = |c: &u8| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-';
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'@')
        .filter_map(move |(at, _)| {
            let start = at - b[..at].iter().rev().take_while(|c| local_byte(c)).count();
            let end = at + 1 + b[at + 1..].iter().take_while(|c| domain_byte(c)).count();
            let local = text.get(start..at)?.trim_start_matches('.');
            let domain = text.get(at + 1..end)?.trim_end_matches(['.', '-']);
            if local.is_empty() || !domain.contains('.') || domain.starts_with('.') {
                return None;
            }
            Some(format!("{local}@{}", domain.to_ascii_lowercase()))
        })
}

/// The line of `text` around byte `at`, trimmed and cut to
/// [`DIAGNOSTIC_BYTES_MAX`].
fn line_at(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let start = text.get(..at).and_then(|t| t.rfind('\n')).map_or(0, |nl| nl + 1);
    let rest = text.get(start..).unwrap_or("");
    let line = rest.lines().next().unwrap_or("").trim();
    head(line, DIAGNOSTIC_BYTES_MAX).to_string()
}

// ---- The classifier -----------------------------------------------------

/// Words that say why (lower case), most specific first: "domain does not
/// exist" must win over "does not exist".
const PHRASES: &[(&str, Reason)] = &[
    ("mailbox full", Reason::MailboxFull),
    ("mailbox is full", Reason::MailboxFull),
    ("mail box full", Reason::MailboxFull),
    ("quota", Reason::MailboxFull),
    ("out of storage", Reason::MailboxFull),
    ("exceeded storage", Reason::MailboxFull),
    ("host not found", Reason::UnknownDomain),
    ("domain not found", Reason::UnknownDomain),
    ("domain does not exist", Reason::UnknownDomain),
    ("domain couldn't be found", Reason::UnknownDomain),
    ("no such domain", Reason::UnknownDomain),
    ("unrouteable address", Reason::UnknownDomain),
    ("no mx ", Reason::UnknownDomain),
    ("nxdomain", Reason::UnknownDomain),
    ("name or service not known", Reason::UnknownDomain),
    ("user unknown", Reason::UnknownUser),
    ("unknown user", Reason::UnknownUser),
    ("no such user", Reason::UnknownUser),
    ("no such mailbox", Reason::UnknownUser),
    ("no such recipient", Reason::UnknownUser),
    ("unknown recipient", Reason::UnknownUser),
    ("recipient unknown", Reason::UnknownUser),
    ("invalid recipient", Reason::UnknownUser),
    ("recipient not found", Reason::UnknownUser),
    ("recipientnotfound", Reason::UnknownUser),
    ("recipnotfound", Reason::UnknownUser),
    ("user not found", Reason::UnknownUser),
    ("mailbox not found", Reason::UnknownUser),
    ("mailbox unavailable", Reason::UnknownUser),
    ("no mailbox here", Reason::UnknownUser),
    ("invalid mailbox", Reason::UnknownUser),
    ("not a valid mailbox", Reason::UnknownUser),
    ("address couldn't be found", Reason::UnknownUser),
    ("does not exist", Reason::UnknownUser),
    ("doesn't exist", Reason::UnknownUser),
    ("user doesn't have", Reason::UnknownUser),
    ("account has been disabled", Reason::MailboxDisabled),
    ("account is disabled", Reason::MailboxDisabled),
    ("account disabled", Reason::MailboxDisabled),
    ("mailbox disabled", Reason::MailboxDisabled),
    ("mailbox is disabled", Reason::MailboxDisabled),
    ("inactive", Reason::MailboxDisabled),
    ("spam", Reason::Policy),
    ("blocked", Reason::Policy),
    ("blacklist", Reason::Policy),
    ("blocklist", Reason::Policy),
    ("denylist", Reason::Policy),
    ("policy", Reason::Policy),
    ("reputation", Reason::Policy),
    ("unsolicited", Reason::Policy),
    ("dmarc", Reason::Policy),
    ("access denied", Reason::Policy),
    ("relaying denied", Reason::Policy),
    ("not authorized", Reason::Policy),
];

/// Words of a delay warning, not a failure (lower case).
const DELAY_PHRASES: &[&str] = &[
    "delayed",
    "(delay)",
    "not yet been delivered",
    "will be retried",
    "will retry",
    "will continue to try",
    "delivery attempts will continue",
    "still trying",
    "warning message only",
];

/// Words of a permanent failure (lower case).
const PERMANENT_PHRASES: &[&str] = &["permanent", "given up", "gave up"];

/// The diagnosis, and the byte offset of what it rests on.
fn diagnose(text: &str) -> Option<(Diagnosis, usize)> {
    let text = head(text, SCAN_BYTES_MAX);
    let lower = text.to_ascii_lowercase();
    let status = enhanced_codes(text).find(|(_, code)| !code.starts_with('2'));
    let reply = reply_codes(text).find(|(_, code)| code / 100 != 2);
    let phrase = phrase_reason(text);
    let reason = status
        .and_then(|(_, code)| status_reason(code))
        .or(phrase.map(|(_, r)| r));
    let coded = match (status, reply) {
        (Some((at, code)), _) => code.bytes().next().and_then(class_severity).map(|s| (s, at)),
        (None, Some((at, code))) => Some((if code >= 500 { Severity::Hard } else { Severity::Soft }, at)),
        (None, None) => None,
    };
    let worded = || {
        let at = phrase.map_or(0, |(at, _)| at);
        if is_delay(&lower) {
            Some((Severity::Soft, at))
        } else if PERMANENT_PHRASES.iter().any(|p| lower.contains(p)) {
            Some((Severity::Hard, at))
        } else {
            reason.map(|r| (r.guessed_severity(), at))
        }
    };
    let (severity, at) = coded.or_else(worded)?;
    let status = status.map(|(_, code)| code.to_string());
    Some((
        Diagnosis {
            severity,
            status,
            reason,
        },
        at,
    ))
}

fn is_delay(lower: &str) -> bool {
    DELAY_PHRASES.iter().any(|p| lower.contains(p))
}

/// The first reason phrase in `text` (any case), with its offset.
fn phrase_reason(text: &str) -> Option<(usize, Reason)> {
    let lower = text.to_ascii_lowercase();
    PHRASES
        .iter()
        .find_map(|(phrase, reason)| lower.find(phrase).map(|at| (at, *reason)))
}

/// The reason an enhanced status code (RFC 3463) names, if a specific one.
fn status_reason(status: &str) -> Option<Reason> {
    let (class, rest) = status.split_once('.')?;
    match rest {
        // Microsoft's "RecipientNotFound"; RFC 7505 gives it to null MX.
        "1.1" | "1.10" | "1.6" => Some(Reason::UnknownUser),
        "1.2" => Some(Reason::UnknownDomain),
        "2.2" => Some(Reason::MailboxFull),
        // 4.2.1 is Gmail's "receiving mail too fast", not a disabled box.
        "2.1" if class == "5" => Some(Reason::MailboxDisabled),
        _ if rest.starts_with("7.") => Some(Reason::Policy),
        _ => None,
    }
}

/// Enhanced status codes (`class.subject.detail`, class 2, 4 or 5) in
/// `text` with their offsets, in order: not inside a longer dotted number.
fn enhanced_codes(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let b = text.as_bytes();
    // ASCII digits are never inside a multi-byte character: the slices
    // start and end on char boundaries.
    (0..b.len()).filter_map(move |i| Some((i, text.get(i..enhanced_code_at(b, i)?)?)))
}

/// The end of the enhanced status code starting at `i`, if one does.
fn enhanced_code_at(b: &[u8], i: usize) -> Option<usize> {
    if !matches!(b.get(i)?, b'2' | b'4' | b'5') || b.get(i + 1) != Some(&b'.') {
        return None;
    }
    if i > 0 && b.get(i - 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.') {
        return None;
    }
    let subject_end = digits_end(b, i + 2)?;
    if b.get(subject_end) != Some(&b'.') {
        return None;
    }
    let end = digits_end(b, subject_end + 1)?;
    let longer = b.get(end).is_some_and(u8::is_ascii_alphanumeric)
        || (b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit));
    (!longer).then_some(end)
}

/// The end of a run of one to three digits at `start`.
fn digits_end(b: &[u8], start: usize) -> Option<usize> {
    let n = b
        .get(start..)?
        .iter()
        .take(4)
        .take_while(|c| c.is_ascii_digit())
        .count();
    (1..=3).contains(&n).then_some(start + n)
}

/// SMTP reply codes (200 to 559) in `text` with their offsets, in order:
/// where a server's reply is quoted, at the start of a line or after `:`,
/// `;`, a quote, a bracket or `#`, and followed by a space, the end of the
/// line, `:`, or `-` and more reply (Gmail's `550-5.1.1`).
fn reply_codes(text: &str) -> impl Iterator<Item = (usize, u16)> + '_ {
    let b = text.as_bytes();
    (0..b.len()).filter_map(move |i| reply_code_at(b, i).map(|code| (i, code)))
}

fn reply_code_at(b: &[u8], i: usize) -> Option<u16> {
    let d = b.get(i..i + 3)?;
    if !(matches!(d[0], b'2'..=b'5') && matches!(d[1], b'0'..=b'5') && d[2].is_ascii_digit()) {
        return None;
    }
    let before = b.get(..i)?.iter().rev().find(|c| !matches!(c, b' ' | b'\t'));
    let quoted = matches!(
        before,
        None | Some(b'\n' | b'\r' | b':' | b';' | b'\'' | b'"' | b'(' | b'[' | b'<' | b'>' | b'=' | b'#')
    );
    let continued = match b.get(i + 3) {
        None | Some(b' ' | b'\t' | b'\r' | b'\n' | b':') => true,
        Some(b'-') => b
            .get(i + 4)
            .is_some_and(|c| c.is_ascii_alphabetic() || enhanced_code_at(b, i + 4).is_some()),
        Some(_) => false,
    };
    (quoted && continued).then(|| u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0'))
}

// ---- Field blocks and addresses ----------------------------------------

/// The header-like field blocks of a delivery-status or feedback-report
/// part: groups separated by blank lines, each `(name, unfolded value)`,
/// at most [`RECIPIENTS_MAX`] + 1 groups. Lines that are no field are
/// skipped.
fn field_groups(text: &str) -> Vec<Vec<(&str, String)>> {
    let mut groups = Vec::new();
    let mut group: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !group.is_empty() {
                groups.push(std::mem::take(&mut group));
                if groups.len() > RECIPIENTS_MAX {
                    return groups;
                }
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim_end();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                group.push((name, value.trim().to_string()));
            }
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// The first non-empty value of field `name` (any case).
fn field<'g>(group: &'g [(&str, String)], name: &str) -> Option<&'g str> {
    group
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// `value` without a leading `type;` (`rfc822;`, `dns;`, `smtp;`, `utf-8;`).
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.trim().is_empty() && kind.trim().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// An address field's address: no type, no angle brackets or trailing
/// comment, the domain lower case. None when empty (`<>`).
fn address(value: &str) -> Option<String> {
    let value = strip_type(value);
    let inner = match value.split_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or(""),
        None => value.split_whitespace().next().unwrap_or(""),
    };
    let inner = inner.trim();
    if inner.is_empty() {
        return None;
    }
    Some(match inner.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => inner.to_string(),
    })
}

// ---- MIME ---------------------------------------------------------------

/// One MIME part: its header fields and its body, transfer-decoded (empty
/// for a multipart, whose parts follow it).
struct Part<'a> {
    headers: Vec<Header<'a>>,
    body: Cow<'a, [u8]>,
}

impl Part<'_> {
    fn content_type(&self) -> Option<&ContentType<'_>> {
        content_type(&self.headers)
    }

    /// Of type `ctype` and one of `subtypes`, in any case.
    fn is(&self, ctype: &str, subtypes: &[&str]) -> bool {
        self.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case(ctype)
                && ct
                    .subtype()
                    .is_some_and(|sub| subtypes.iter().any(|s| sub.eq_ignore_ascii_case(s)))
        })
    }

    /// `text/plain`, which is also what a part without a type is.
    fn is_plain_text(&self) -> bool {
        self.content_type().is_none() || self.is("text", &["plain"])
    }
}

/// The message and its parts, depth first, the message first: a multipart
/// body is split on its boundary, any other is decoded (an attached message
/// is not opened). At most [`PARTS_MAX`] parts and [`MIME_DEPTH_MAX`] levels;
/// a missing closing boundary ends the part at the end of the input.
fn mime_parts(raw: &[u8]) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    collect_parts(raw, 0, &mut parts);
    parts
}

fn collect_parts<'a>(raw: &'a [u8], depth: usize, parts: &mut Vec<Part<'a>>) {
    if parts.len() >= PARTS_MAX {
        return;
    }
    let (head, body) = split_header_section(raw);
    let headers = header_fields(head);
    let boundary = content_type(&headers)
        .filter(|ct| ct.ctype().eq_ignore_ascii_case("multipart"))
        .and_then(|ct| ct.attribute("boundary"))
        .filter(|b| !b.is_empty() && depth < MIME_DEPTH_MAX)
        .map(|b| b.as_bytes().to_vec());
    match boundary {
        Some(boundary) => {
            parts.push(Part {
                headers,
                body: Cow::Borrowed(&[]),
            });
            for inner in split_multipart(body, &boundary) {
                collect_parts(inner, depth + 1, parts);
            }
        }
        None => {
            let body = transfer_decoded(&headers, body);
            parts.push(Part { headers, body });
        }
    }
}

fn content_type<'h, 'a>(headers: &'h [Header<'a>]) -> Option<&'h ContentType<'a>> {
    let field = headers.iter().find(|h| h.name == HeaderName::ContentType)?;
    field.value.as_content_type()
}

/// The header section (up to the blank line) and the body after it.
fn split_header_section(raw: &[u8]) -> (&[u8], &[u8]) {
    let mut line_start = 0;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let next = line_start + line.len();
        if line == b"\n" || line == b"\r\n" {
            return (&raw[..line_start], &raw[next..]);
        }
        line_start = next;
    }
    (raw, &[])
}

/// The header fields of a header section, as mail-parser reads them.
fn header_fields(head: &[u8]) -> Vec<Header<'_>> {
    let message = MessageParser::default().parse_headers(head);
    message
        .and_then(|m| m.parts.into_iter().next())
        .map(|part| part.headers)
        .unwrap_or_default()
}

/// The body parts of a multipart body (RFC 2046 section 5.1.1): what lies
/// between `--boundary` lines, without the line break before each; the
/// preamble and the epilogue are dropped.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut inner = Vec::new();
    let mut start = None;
    let mut line_start = 0;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let next = line_start + line.len();
        if let Some(last) = delimiter(line, boundary) {
            if let Some(start) = start {
                inner.push(strip_line_break(&body[start..line_start]));
            }
            if last || inner.len() >= PARTS_MAX {
                return inner;
            }
            start = Some(next);
        }
        line_start = next;
    }
    if let Some(start) = start {
        inner.push(&body[start..]);
    }
    inner
}

/// Whether `line` is a delimiter of `boundary`: Some(true) for the last.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (last, rest) = match rest.strip_prefix(b"--") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    rest.iter().all(u8::is_ascii_whitespace).then_some(last)
}

fn strip_line_break(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// `body` decoded from its Content-Transfer-Encoding; as it is when that is
/// 7bit, 8bit or binary, or when it does not decode.
fn transfer_decoded<'a>(headers: &[Header], body: &'a [u8]) -> Cow<'a, [u8]> {
    let encoding = headers
        .iter()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)
        .and_then(|h| h.value.as_text())
        .unwrap_or("")
        .trim();
    let decoded = if encoding.eq_ignore_ascii_case("base64") {
        base64_decode(body)
    } else if encoding.eq_ignore_ascii_case("quoted-printable") {
        quoted_printable_decode(body)
    } else {
        None
    };
    decoded.map_or(Cow::Borrowed(body), Cow::Owned)
}

// ---- The original message -------------------------------------------------

/// The original's headers, from the first part that carries them: an
/// attached message (only its header section is read), or its headers
/// alone.
fn original_headers(parts: &[Part]) -> Option<OriginalHeaders> {
    // The first part is the report's own header section.
    let original = parts.iter().skip(1).find(|part| {
        part.is("message", &["rfc822", "global", "global-headers"]) || part.is("text", &["rfc822-headers"])
    })?;
    Some(headers_of(&header_fields(&original.body)))
}

fn headers_of(headers: &[Header]) -> OriginalHeaders {
    let to = headers
        .iter()
        .filter(|h| h.name == HeaderName::To)
        .filter_map(|h| h.value.as_address())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .filter_map(address)
        .take(TO_MAX)
        .collect();
    OriginalHeaders {
        return_path: text_header(headers, &HeaderName::ReturnPath).and_then(address),
        message_id: text_header(headers, &HeaderName::MessageId).map(str::to_string),
        to,
    }
}

/// The first field `name`'s value as text (the first of a list).
fn text_header<'h>(headers: &'h [Header], name: &HeaderName) -> Option<&'h str> {
    let value = &headers.iter().find(|h| h.name == *name)?.value;
    let text = match value {
        HeaderValue::Text(text) => text.as_ref(),
        HeaderValue::TextList(list) => list.first()?.as_ref(),
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text.trim())
}

/// At most `max` bytes of `text`, cut at a char boundary.
fn head(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::QueuedMessage;

    macro_rules! sample {
        ($name:literal) => {
            (
                $name,
                include_bytes!(concat!("../tests/feedback_samples/", $name, ".eml")) as &[u8],
            )
        };
    }

    const SAMPLES: &[(&str, &[u8])] = &[
        sample!("postfix_two_recipients"),
        sample!("exchange_global"),
        sample!("gmail_plain"),
        sample!("exim_plain"),
        sample!("qmail_plain"),
        sample!("mailbox_full"),
        sample!("policy_refusal"),
        sample!("arf_yahoo"),
        sample!("arf_microsoft"),
        sample!("ordinary"),
        // A mutation of exchange_global that tripped mail-parser's
        // whole-message parser (a debug assertion) in the fuzz target.
        sample!("mangled_nested"),
    ];

    fn sample(name: &str) -> &'static [u8] {
        SAMPLES.iter().find(|(n, _)| *n == name).map(|(_, raw)| *raw).unwrap()
    }

    fn crlf(raw: &[u8]) -> Vec<u8> {
        String::from_utf8_lossy(raw).replace('\n', "\r\n").into_bytes()
    }

    fn bounces(report: &Report) -> Vec<&Bounce> {
        let found: Vec<&Bounce> = report
            .items
            .iter()
            .filter_map(|item| match item {
                Feedback::Bounce(b) => Some(b),
                Feedback::Complaint(_) => None,
            })
            .collect();
        assert_eq!(found.len(), report.items.len(), "only bounces: {report:?}");
        found
    }

    fn complaints(report: &Report) -> Vec<&Complaint> {
        let found: Vec<&Complaint> = report
            .items
            .iter()
            .filter_map(|item| match item {
                Feedback::Complaint(c) => Some(c),
                Feedback::Bounce(_) => None,
            })
            .collect();
        assert_eq!(found.len(), report.items.len(), "only complaints: {report:?}");
        found
    }

    /// One bounce as the tables state it: recipient, action, status,
    /// severity, reason.
    type Row<'a> = (
        Option<&'a str>,
        DsnAction,
        Option<&'a str>,
        Option<Severity>,
        Option<Reason>,
    );

    /// A sample: its name, kind, original Return-Path and Message-ID, bounces.
    type Case<'a> = (&'a str, ReportKind, Option<&'a str>, Option<&'a str>, &'a [Row<'a>]);

    fn row(b: &Bounce) -> Row<'_> {
        (
            b.recipient.as_deref(),
            b.action,
            b.status.as_deref(),
            b.severity,
            b.reason,
        )
    }

    #[test]
    fn bounce_samples() {
        use DsnAction::{Delayed, Failed};
        use Reason::*;
        use Severity::{Hard, Soft};
        let hard = Some(Hard);
        #[rustfmt::skip]
        let table: &[Case<'_>] = &[
            ("postfix_two_recipients", ReportKind::Dsn, Some("b-4f2a@bounces.example.edu"), Some("enrol-20260303-17@example.edu"), &[
                (Some("gone@example.org"), Failed, Some("5.1.1"), hard, Some(UnknownUser)),
                (Some("full@example.org"), Delayed, Some("4.2.2"), Some(Soft), Some(MailboxFull)),
            ]),
            ("exchange_global", ReportKind::Dsn, Some("b-9c1e@bounces.example.edu"), Some("news-2026-03@example.edu"), &[
                (Some("jörg@corp.example.com"), Failed, Some("5.1.10"), hard, Some(UnknownUser)),
            ]),
            ("gmail_plain", ReportKind::Guessed, None, Some("reunion-2026-0001@example.edu"), &[
                (Some("nobody.here@gmail.example"), Failed, Some("5.1.1"), hard, Some(UnknownUser)),
            ]),
            ("exim_plain", ReportKind::Guessed, Some("b-77e1@bounces.example.edu"), Some("overdue-8812@example.edu"), &[
                (Some("Erin.Old@example.net"), Failed, Some("5.1.1"), hard, Some(UnknownUser)),
            ]),
            ("qmail_plain", ReportKind::Guessed, Some("b-99aa@bounces.example.edu"), Some("interview-3310@example.edu"), &[
                (Some("frank@example.net"), Failed, None, hard, Some(UnknownUser)),
            ]),
            ("mailbox_full", ReportKind::Guessed, Some("b-0c0c@bounces.example.edu"), Some("q1-report@example.edu"), &[
                (Some("ann@example.com"), Failed, None, Some(Soft), Some(MailboxFull)),
            ]),
            ("policy_refusal", ReportKind::Guessed, Some("b-7f7f@bounces.example.edu"), Some("openday-55@example.edu"), &[
                (Some("cara@yahoo.example"), Failed, Some("5.7.9"), hard, Some(Policy)),
            ]),
        ];
        for (name, kind, return_path, message_id, rows) in table {
            let report = parse(sample(name)).unwrap_or_else(|| panic!("{name}: no report"));
            assert_eq!(report.kind, *kind, "{name}");
            assert_eq!(report.original.return_path.as_deref(), *return_path, "{name}");
            assert_eq!(report.original.message_id.as_deref(), *message_id, "{name}");
            let got: Vec<Row> = bounces(&report).into_iter().map(row).collect();
            assert_eq!(got, *rows, "{name}");
            let guessed = *kind == ReportKind::Guessed;
            assert!(bounces(&report).iter().all(|b| b.guessed == guessed), "{name}");
            assert_eq!(parse(&crlf(sample(name))), Some(report), "{name} with CRLF");
        }
    }

    #[test]
    fn postfix_dsn_fields() {
        let report = parse(sample("postfix_two_recipients")).unwrap();
        assert_eq!(report.reporting_mta.as_deref(), Some("mx1.example.net"));
        assert_eq!(report.original_envelope_id.as_deref(), Some("01J0AB7QZ"));
        assert_eq!(report.original.to, ["gone@example.org", "full@example.org"]);
        let [gone, full] = bounces(&report)[..] else {
            panic!("two bounces")
        };
        assert_eq!(
            gone.diagnostic.as_deref(),
            Some("550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual mailbox table")
        );
        assert_eq!(gone.original_recipient.as_deref(), Some("gone@example.org"));
        assert_eq!(gone.remote_mta.as_deref(), Some("mx.example.org"));
        assert!(gone.is_hard());
        assert!(!full.is_hard(), "a delay is never a hard bounce");
    }

    #[test]
    fn exchange_global_dsn_fields() {
        let report = parse(sample("exchange_global")).unwrap();
        assert_eq!(report.reporting_mta.as_deref(), Some("EX01.corp.example.com"));
        assert_eq!(report.original.to, ["jörg@corp.example.com"]);
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(b.remote_mta.as_deref(), Some("EX02.corp.example.com"));
        assert_eq!(
            b.diagnostic.as_deref(),
            Some("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup")
        );
    }

    #[test]
    fn plain_bounce_diagnostic_is_the_line_with_the_code() {
        let report = parse(sample("exim_plain")).unwrap();
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(
            b.diagnostic.as_deref(),
            Some("550 5.1.1 <Erin.Old@example.net>: Recipient address rejected: User unknown")
        );
        let report = parse(sample("qmail_plain")).unwrap();
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(b.diagnostic.as_deref(), Some("Sorry, no mailbox here by that name."));
    }

    #[test]
    fn plain_bounce_quoting_headers_without_a_marker() {
        let raw = "From: MAILER-DAEMON@mx.example.net\r\nSubject: Returned mail: see transcript for details\r\n\r\n\
            The original message is attached after the reason.\r\n\r\n\
            <hal@example.net>... User unknown\r\n\r\n\
            Return-Path: <b-5e5e@bounces.example.edu>\r\nMessage-ID: <x1@example.edu>\r\nTo: hal@example.net\r\n\
            Subject: policy on quota and spam\r\n\r\nover quota? blocked? 552 5.2.2\r\n";
        let report = parse(raw.as_bytes()).unwrap();
        assert_eq!(
            report.original.return_path.as_deref(),
            Some("b-5e5e@bounces.example.edu")
        );
        assert_eq!(report.original.message_id.as_deref(), Some("x1@example.edu"));
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(
            row(b),
            (
                Some("hal@example.net"),
                DsnAction::Failed,
                None,
                Some(Severity::Hard),
                Some(Reason::UnknownUser)
            )
        );
    }

    #[test]
    fn yahoo_arf_with_rfc822_headers() {
        let report = parse(sample("arf_yahoo")).unwrap();
        assert_eq!(report.kind, ReportKind::Complaint);
        assert_eq!(
            complaints(&report),
            [&Complaint {
                feedback_type: "abuse".into(),
                recipients: vec!["dora@yahoo.example".into()],
                mail_from: Some("b-1a2b@bounces.example.edu".into()),
                source_ip: Some("198.51.100.4".parse().unwrap()),
                reported_domain: Some("example.edu".into()),
                arrival: Some("Wed, 11 Mar 2026 17:19:40 +0000".into()),
                user_agent: Some("Yahoo!-Mail-Feedback/2.0".into()),
                version: Some("0.1".into()),
            }]
        );
        assert_eq!(
            report.original.return_path.as_deref(),
            Some("b-1a2b@bounces.example.edu")
        );
        assert_eq!(
            report.original.message_id.as_deref(),
            Some("sale-2026-spring-0042@example.edu")
        );
        assert_eq!(report.original.to, ["dora@yahoo.example"]);
        assert_eq!(parse(&crlf(sample("arf_yahoo"))), Some(report));
    }

    #[test]
    fn microsoft_arf_with_attached_message() {
        let report = parse(sample("arf_microsoft")).unwrap();
        assert_eq!(report.kind, ReportKind::Complaint);
        let [c] = complaints(&report)[..] else {
            panic!("one complaint")
        };
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.recipients, Vec::<String>::new(), "no Original-Rcpt-To");
        assert_eq!(c.source_ip, Some("198.51.100.4".parse().unwrap()));
        assert_eq!(c.user_agent.as_deref(), Some("Hotmail FBL"));
        assert_eq!(
            report.original.return_path.as_deref(),
            Some("b-xyz@bounces.example.edu")
        );
        assert_eq!(report.original.message_id.as_deref(), Some("pool-2026-03@example.edu"));
        assert_eq!(report.original.to, ["redacted@hotmail.example"]);
        assert_eq!(parse(&crlf(sample("arf_microsoft"))), Some(report));
    }

    #[test]
    fn complaint_with_several_recipients_and_odd_fields() {
        let raw = "From: fbl@isp.example\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n\
            --b\r\nContent-Type: message/feedback-report\r\n\r\n\
            Feedback-Type: Not-Spam\r\nOriginal-Rcpt-To: a@ISP.example\r\nOriginal-Rcpt-To: <b@isp.example>\r\n\
            Source-IP: IPv6:2001:db8::25\r\nReporting-MTA: dns; fbl.isp.example\r\n--b--\r\n";
        let report = parse(raw.as_bytes()).unwrap();
        assert_eq!(report.reporting_mta.as_deref(), Some("fbl.isp.example"));
        let [c] = complaints(&report)[..] else {
            panic!("one complaint")
        };
        assert_eq!(c.feedback_type, "not-spam");
        assert_eq!(c.recipients, ["a@isp.example", "b@isp.example"]);
        assert_eq!(c.source_ip, Some("2001:db8::25".parse().unwrap()));
        let no_type = raw.replace("Feedback-Type: Not-Spam\r\n", "");
        assert_eq!(
            complaints(&parse(no_type.as_bytes()).unwrap())[0].feedback_type,
            "other"
        );
    }

    #[test]
    fn ferrys_own_dsn_reads_back() {
        let mut original: QueuedMessage = serde_json::from_value(serde_json::json!({
            "id": "0123456789ABCDEF0123456789ABCDEF", "tenant": "t", "app": "a",
            "mail_from": "b-11@bounces.example.edu", "recipients": ["gone@x.test"],
            "received_ms": 0, "attempts": 1,
            "outcomes": {"gone@x.test": {
                "outcome": "failed", "at_ms": 1, "status": "5.1.1",
                "reply": "550 5.1.1 no such user", "remote": "mx.x.test"}},
        }))
        .unwrap();
        original.content = b"Message-ID: <m1@example.edu>\r\nTo: gone@x.test\r\n\r\nbody\r\n".to_vec();
        let dsn = crate::dsn::bounce(&original, "relay.example.edu", 1_000).unwrap();
        let report = parse(&dsn.content).unwrap();
        assert_eq!(report.kind, ReportKind::Dsn);
        assert_eq!(report.reporting_mta.as_deref(), Some("relay.example.edu"));
        assert_eq!(report.original.message_id.as_deref(), Some("m1@example.edu"));
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(
            row(b),
            (
                Some("gone@x.test"),
                DsnAction::Failed,
                Some("5.1.1"),
                Some(Severity::Hard),
                Some(Reason::UnknownUser)
            )
        );
        assert_eq!(b.remote_mta.as_deref(), Some("mx.x.test"));
        assert_eq!(b.diagnostic.as_deref(), Some("550 5.1.1 no such user"));
    }

    fn dsn_with(groups: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.example.net\r\nSubject: x\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\n{groups}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn odd_dsn_fields() {
        use DsnAction::*;
        use Severity::{Hard, Soft};
        #[rustfmt::skip]
        let table: &[(&str, Row)] = &[
            // Comments after the action and the status; no per-message group.
            ("Final-Recipient: RFC822; <A@B.Example>\nAction: FAILED (bad mailbox)\nStatus: 5.1.1 (no such user)",
             (Some("A@b.example"), Failed, Some("5.1.1"), Some(Hard), Some(Reason::UnknownUser))),
            // No Status: the diagnostic's enhanced code.
            ("Final-Recipient: rfc822; a@b.example\nAction: failed\nDiagnostic-Code: smtp; 552 5.2.2 over quota",
             (Some("a@b.example"), Failed, Some("5.2.2"), Some(Hard), Some(Reason::MailboxFull))),
            // A bad Status and a reply code only.
            ("Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.x\nDiagnostic-Code: smtp; 451 try later",
             (Some("a@b.example"), Failed, None, Some(Soft), None)),
            // Failed with nothing else: hard.
            ("Final-Recipient: rfc822; a@b.example\nAction: failed",
             (Some("a@b.example"), Failed, None, Some(Hard), None)),
            // Failed after the retry period with a transient status: soft.
            ("Final-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 4.4.7",
             (Some("a@b.example"), Failed, Some("4.4.7"), Some(Soft), None)),
            // A delay is soft whatever its status says.
            ("Final-Recipient: rfc822; a@b.example\nAction: delayed\nStatus: 5.0.0",
             (Some("a@b.example"), Delayed, Some("5.0.0"), Some(Soft), None)),
            // Successes carry no severity and no reason.
            ("Final-Recipient: rfc822; a@b.example\nAction: relayed\nStatus: 2.0.0\nDiagnostic-Code: smtp; 250 ok, spam",
             (Some("a@b.example"), Relayed, Some("2.0.0"), None, None)),
            ("Final-Recipient: rfc822;a@b.example\nAction: delivered\nStatus: 2.0.0",
             (Some("a@b.example"), Delivered, Some("2.0.0"), None, None)),
            ("Original-Recipient: rfc822;list@b.example\nAction: expanded\nStatus: 2.0.0",
             (Some("list@b.example"), Expanded, Some("2.0.0"), None, None)),
            // No Action: the status decides.
            ("Final-Recipient: rfc822; a@b.example\nStatus: 5.7.1",
             (Some("a@b.example"), Unknown, Some("5.7.1"), Some(Hard), Some(Reason::Policy))),
            // No recipient at all, an empty one, a strange action.
            ("Action: failed\nStatus: 5.1.2",
             (None, Failed, Some("5.1.2"), Some(Hard), Some(Reason::UnknownDomain))),
            ("Final-Recipient: rfc822; <>\nAction: bounced\nStatus: 4.2.2",
             (None, Unknown, Some("4.2.2"), Some(Soft), Some(Reason::MailboxFull))),
        ];
        for (groups, expected) in table {
            let report = parse(&dsn_with(&groups.replace('\n', "\r\n"))).unwrap_or_else(|| panic!("{groups}"));
            assert_eq!(report.kind, ReportKind::Dsn, "{groups}");
            let got: Vec<Row> = bounces(&report).into_iter().map(row).collect();
            assert_eq!(got, [*expected], "{groups}");
        }
    }

    #[test]
    fn recipient_groups_are_capped() {
        let group = "Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n";
        let report = parse(&dsn_with(&group.repeat(RECIPIENTS_MAX + 500))).unwrap();
        assert_eq!(report.items.len(), RECIPIENTS_MAX);
        let rcpt = "Original-Rcpt-To: a@b.example\r\n".repeat(RECIPIENTS_MAX + 5);
        let raw = format!(
            "Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n\
             --b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n{rcpt}--b--\r\n"
        );
        let report = parse(raw.as_bytes()).unwrap();
        assert_eq!(complaints(&report)[0].recipients.len(), RECIPIENTS_MAX);
    }

    #[test]
    fn truncated_dsn_falls_back_to_the_text() {
        let raw = sample("postfix_two_recipients");
        let cut = raw.windows(19).position(|w| w == b"Reporting-MTA: dns;").unwrap();
        let report = parse(&raw[..cut]).unwrap();
        assert_eq!(report.kind, ReportKind::Guessed);
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(
            row(b),
            (
                Some("gone@example.org"),
                DsnAction::Failed,
                Some("5.1.1"),
                Some(Severity::Hard),
                Some(Reason::UnknownUser)
            )
        );
    }

    #[test]
    fn not_reports() {
        let out_of_office = "From: Ann <ann@example.com>\r\nSubject: Automatic reply: Quarterly report\r\n\
            Auto-Submitted: auto-replied\r\n\r\nI am away until Monday; my mailbox is full of spam.\r\n";
        let read_receipt = "From: ann@example.com\r\nSubject: Read: Quarterly report\r\n\
            Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nYour message was displayed.\r\n\
            --b\r\nContent-Type: message/disposition-notification\r\n\r\n\
            Final-Recipient: rfc822; ann@example.com\r\nDisposition: manual-action/MDN-sent-manually; displayed\r\n--b--\r\n";
        let postmaster_chat =
            "From: postmaster@example.com\r\nSubject: Lunch?\r\n\r\nShall we have lunch on Friday?\r\n";
        for raw in [
            sample("ordinary"),
            out_of_office.as_bytes(),
            read_receipt.as_bytes(),
            postmaster_chat.as_bytes(),
        ] {
            assert_eq!(parse(raw), None, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn delay_warning_in_plain_text() {
        let raw = "From: Mail Delivery System <Mailer-Daemon@mail.example.net>\r\n\
            Subject: Warning: message 1vQx2b-0004Xq-9A delayed 24 hours\r\n\r\n\
            This message was created automatically by mail delivery software.\r\n\
            A message that you sent has not yet been delivered to one or more of its\r\n\
            recipients after more than 24 hours on the queue on mail.example.net.\r\n\r\n\
              slow@example.org\r\n\
                host mx.example.org [203.0.113.9]\r\n\
                Connection timed out\r\n\r\n\
            No action is required on your part. Delivery attempts will continue for\r\n\
            some time.\r\n";
        let report = parse(raw.as_bytes()).unwrap();
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(
            row(b),
            (
                Some("slow@example.org"),
                DsnAction::Delayed,
                None,
                Some(Severity::Soft),
                None
            )
        );
        assert!(!b.is_hard());
    }

    #[test]
    fn mime_walk() {
        // A DSN forwarded inside multipart/mixed, its status part in base64,
        // the original in base64 too, without a closing boundary.
        let status = "Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; q@example.net\r\n\
                      Action: failed\r\nStatus: 5.1.1\r\n";
        let original = "Return-Path: <b-q@bounces.example.edu>\r\nMessage-ID: <q@example.edu>\r\n\r\nhi\r\n";
        let raw = format!(
            "Subject: Fwd\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\npreamble\r\n\
             --outer\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\
             --outer\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"inner\"\r\n\r\n\
             --inner\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
             --inner  \r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: BASE64\r\n\r\n{}\r\n\
             --inner--\r\nepilogue\r\n--outer\r\nContent-Type: text/plain\r\n\r\nunclosed",
            wrap76(&base64(status.as_bytes())),
            base64(original.as_bytes()),
        );
        let parts = mime_parts(raw.as_bytes());
        let bodies: Vec<_> = parts
            .iter()
            .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            .collect();
        assert_eq!(bodies, ["", "See below.", "", status, original, "unclosed"]);
        let report = parse(raw.as_bytes()).unwrap();
        assert_eq!(report.kind, ReportKind::Dsn);
        assert_eq!(report.original.return_path.as_deref(), Some("b-q@bounces.example.edu"));
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(b.recipient.as_deref(), Some("q@example.net"));

        // A quoted-printable plain bounce, and an HTML-only one.
        let qp = "From: postmaster@example.net\r\nSubject: Undeliverable\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                  Delivery to r@example.net failed: 550 5.1.1 user=\r\n unknown =3D gone\r\n";
        let report = parse(qp.as_bytes()).unwrap();
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(
            b.diagnostic.as_deref(),
            Some("Delivery to r@example.net failed: 550 5.1.1 user unknown = gone")
        );
        let html = "From: postmaster@example.net\r\nSubject: Undeliverable\r\nContent-Type: text/html\r\n\r\n\
                    <html><body><p>Delivery to <b>r@example.net</b> failed.</p>\
                    <p>The recipient&#39;s mailbox is full.</p></body></html>\r\n";
        let report = parse(html.as_bytes()).unwrap();
        let [b] = bounces(&report)[..] else {
            panic!("one bounce")
        };
        assert_eq!(
            (b.recipient.as_deref(), b.reason),
            (Some("r@example.net"), Some(Reason::MailboxFull))
        );
    }

    /// Standard base64, for the test messages.
    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                let sextet = (n >> (18 - 6 * i)) & 63;
                out.push(if i <= chunk.len() {
                    char::from(ALPHABET[sextet as usize])
                } else {
                    '='
                });
            }
        }
        out
    }

    fn wrap76(text: &str) -> String {
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        lines.join("\r\n")
    }

    #[test]
    fn malformed_input_does_not_panic() {
        let postfix = sample("postfix_two_recipients");
        let inputs: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"\r\n\r\n\r\n",
            b":",
            b"From:\r\n\r\n",
            b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n--\r\n",
            b"Content-Type: multipart/report; boundary=\"\"\r\n\r\n--\r\n--\r\n",
            b"Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n",
            b"Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n--b--",
            b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\n\t\r\n :x\r\n5.5.5.5\r\n",
            b"Subject: undeliverable\r\n\r\n550-\r\n5.\r\n5.1.\r\n@\r\n@@a.b\r\n<@>\r\nrcpt to:<\r\n",
            b"Subject: undeliverable\r\n\r\n\xff\xfe\xc3(\xe2\x82 550 5.1.1 \xf0\x9f\x92\xa9@\xc3\xa9.example\r\n",
            &postfix[..postfix.len() / 2],
        ];
        for input in inputs {
            let _ = parse(input);
            let _ = classify(&String::from_utf8_lossy(input));
        }
        // A DSN that parses to nothing, from a daemon, is not a report.
        assert_eq!(parse(b"From: MAILER-DAEMON@x.example\r\nSubject: hi\r\n\r\n"), None);
    }

    #[test]
    fn truncations_never_panic() {
        for (name, raw) in SAMPLES {
            for raw in [raw.to_vec(), crlf(raw)] {
                for end in 0..=raw.len() {
                    let report = parse(&raw[..end]);
                    if let Some(report) = report {
                        assert!(!report.items.is_empty(), "{name} at {end}");
                    }
                }
            }
        }
    }

    /// What [`classify`] should find: severity, status, reason.
    type Expected = (Severity, Option<&'static str>, Option<Reason>);

    #[test]
    fn classify_table() {
        use Reason::*;
        use Severity::{Hard, Soft};
        #[rustfmt::skip]
        let table: &[(&str, Option<Expected>)] = &[
            ("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", Some((Hard, Some("5.1.1"), Some(UnknownUser)))),
            ("host mx said: 452 4.2.2 Mailbox full", Some((Soft, Some("4.2.2"), Some(MailboxFull)))),
            ("Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found'", Some((Hard, Some("5.1.10"), Some(UnknownUser)))),
            ("#550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized ##", Some((Hard, Some("5.7.1"), Some(Policy)))),
            ("Remote host said: 554 delivery error: dd This user doesn't have a yahoo.example account", Some((Hard, None, Some(UnknownUser)))),
            ("Remote host said: 552 1 Requested mail action aborted, mailbox full", Some((Hard, None, Some(MailboxFull)))),
            ("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred", Some((Soft, Some("4.7.0"), Some(Policy)))),
            ("550-5.7.26 Unauthenticated email is not accepted due to DMARC policy", Some((Hard, Some("5.7.26"), Some(Policy)))),
            ("Gmail: 452-4.2.1 The user you are trying to contact is receiving mail too fast", Some((Soft, Some("4.2.1"), None))),
            ("554 5.2.1 The email account that you tried to reach is disabled", Some((Hard, Some("5.2.1"), Some(MailboxDisabled)))),
            // No codes: the words.
            ("Sorry, no mailbox here by that name. This is a permanent error; I've given up.", Some((Hard, None, Some(UnknownUser)))),
            ("Sorry, no mailbox here by that name.", Some((Hard, None, Some(UnknownUser)))),
            ("The recipient's mailbox is full and can't accept messages now.", Some((Soft, None, Some(MailboxFull)))),
            ("User is over quota", Some((Soft, None, Some(MailboxFull)))),
            ("Unrouteable address", Some((Hard, None, Some(UnknownDomain)))),
            ("all relevant MX records point to non-existent hosts; host not found", Some((Hard, None, Some(UnknownDomain)))),
            ("Your message looks like spam and was rejected.", Some((Soft, None, Some(Policy)))),
            ("Rejected as spam. This is a permanent error.", Some((Hard, None, Some(Policy)))),
            ("Message delivery has been delayed; it will be retried.", Some((Soft, None, None))),
            // Codes that are not failures, and numbers that are not codes.
            ("250 2.0.0 OK queued as 7C1D53E021", None),
            ("Exim 4.97, Exchange 15.2.1118.40, from 192.0.2.5 at 10:21:32", None),
            ("Call 555-1234 or write to room 450 in building 5.1.1.2", None),
            ("The meeting is at 10:30 in room 500, see you", None),
            ("", None),
        ];
        for (text, expected) in table {
            let got = classify(text).map(|d| (d.severity, d.status, d.reason));
            let expected = expected.map(|(s, status, r)| (s, status.map(str::to_string), r));
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn addresses() {
        #[rustfmt::skip]
        let table: &[(&str, Option<&str>)] = &[
            ("rfc822; gone@Example.ORG", Some("gone@example.org")),
            ("rfc822;<Gone@Example.org>", Some("Gone@example.org")),
            ("RFC822; user@example.net (Original recipient)", Some("user@example.net")),
            ("utf-8; jörg@Corp.EXAMPLE", Some("jörg@corp.example")),
            ("\"Full Box\" <full@example.org>", Some("full@example.org")),
            ("rfc822; <>", None),
            ("", None),
            ("rfc822;", None),
            ("postmaster", Some("postmaster")),
        ];
        for (value, expected) in table {
            assert_eq!(address(value).as_deref(), *expected, "{value:?}");
        }
    }

    #[test]
    fn folded_fields_and_groups() {
        let text = "Reporting-MTA: dns;\r\n  mx.example.net\r\n\r\n\r\n\
                    Final-Recipient: rfc822; a@b.example\r\n\
                    not a field\r\n\
                    Diagnostic-Code: smtp; 550\r\n\t5.1.1 no\r\n   such user\r\n \r\n\
                    Action: failed\r\n";
        let groups = field_groups(text);
        assert_eq!(groups.len(), 3);
        assert_eq!(field(&groups[0], "reporting-mta"), Some("dns; mx.example.net"));
        assert_eq!(
            field(&groups[1], "DIAGNOSTIC-CODE"),
            Some("smtp; 550 5.1.1 no such user")
        );
        assert_eq!(field(&groups[2], "Action"), Some("failed"));
    }
}
