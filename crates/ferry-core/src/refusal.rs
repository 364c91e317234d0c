//! Every refusal a session can meet, in one type: which rule refused, the
//! SMTP reply it becomes (code, RFC 3463 enhanced status, human text), and
//! the stable reason label that logs, metrics, reports and explain share.
//! A refusal is data: the session answers with it, the intake returns it,
//! and whoever counts or explains refusals names it the same way.

use crate::policy::{LoginRefusal, SenderRefusal};

/// A rule that refused (5xx) or deferred (4xx) what a client asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// `535 5.7.8`, the same for an unknown user, a wrong password and a
    /// login refused for another reason (the detail is only logged).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(AuthDetail),
    /// `421 4.7.0`: too many failures; the session is closed.
    #[error("too many failed authentication attempts")]
    LockedOut,
    /// `454 4.7.0` (RFC 4954): the credentials could not be checked now.
    #[error("credentials could not be checked: {0}")]
    AuthenticationUnavailable(String),
    /// `530 5.7.0`: MAIL before AUTH. No relaying without authentication, ever.
    #[error("authentication required")]
    AuthenticationRequired,
    /// `452 4.5.3` at RCPT: more recipients than the application may send to at once.
    #[error("more than {0} recipients")]
    TooManyRecipients(usize),
    /// `550 5.7.1` at MAIL: the envelope sender is not one the application may use.
    #[error("{0}")]
    SenderNotAuthorised(SenderRefusal),
    /// `550 5.7.1` at the end of DATA: the header From is not one the application may use.
    #[error("header From: {0}")]
    HeaderFromNotAuthorised(SenderRefusal),
    /// `550 5.6.0`: the message has no From header to check.
    #[error("message has no From header")]
    NoFromHeader,
    /// `550 5.7.1`: bulk mail without RFC 8058 one-click unsubscribe; says what is missing.
    #[error("{0}")]
    BulkWithoutUnsubscribe(String),
    /// `550 5.7.1`: the anti-virus scanner found this virus.
    #[error("virus found ({0})")]
    Virus(String),
    /// `550 5.7.1`: the anti-spam scanner's verdict, score and threshold.
    #[error("spam (score {score:.1} of {required:.1})")]
    Spam { score: f64, required: f64 },
    /// `451 4.7.1`: the anti-spam scanner asked to try later.
    #[error("deferred by the spam filter")]
    SpamDeferred,
    /// `552 5.3.4`: the message (or its declared SIZE) is over the limit.
    /// The dialogue answers it itself (`ferry-smtp`); this names it for
    /// the counts.
    #[error("message over the size limit of {0} bytes")]
    MessageTooBig(usize),
    /// `451 4.7.0`: a scanner did not answer and scanning fails closed.
    #[error("content scanner unavailable")]
    ScannerDown,
    /// `451 4.7.1` for a cap that frees up later (an hour's), `550 5.7.1`
    /// for one used up for the year.
    #[error("{name} reached")]
    CapReached { name: String, temporary: bool },
    /// `451 4.3.0`: the store did not take the message (nothing was acknowledged).
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    /// `451 4.3.0`: the relay failed on its side (signing, a bug); try again.
    #[error("internal failure: {0}")]
    Internal(String),
    /// `554 5.5.1`: the client sent before the greeting (a spam bot that
    /// does not wait, as Postfix's postscreen catches); closed.
    #[error("client spoke before the greeting")]
    EarlyTalker,
    /// `451 4.3.0`: the store's writer has more waiting than it may hold;
    /// nothing was acknowledged, the client tries again.
    #[error("the store is busy")]
    StoreBusy,
    /// `550 5.1.1` at RCPT: the recipient is on the tenant's suppression
    /// list (it bounced for good, complained, or an admin put it there).
    #[error("recipient suppressed ({})", .0.reason.as_str())]
    Suppressed(Box<crate::suppression::Suppression>),
}

/// Why authentication failed, for the log only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthDetail {
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    #[error("{0}")]
    Refused(LoginRefusal),
}

/// An SMTP reply as data: code, enhanced status code, text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyParts {
    pub code: u16,
    pub status: &'static str,
    pub text: String,
}

impl ReplyParts {
    fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        ReplyParts {
            code,
            status,
            text: text.into(),
        }
    }
}

impl Refusal {
    /// The reply the client gets.
    pub fn reply(&self) -> ReplyParts {
        use Refusal::*;
        match self {
            AuthenticationFailed(_) => ReplyParts::new(535, "5.7.8", "Authentication credentials invalid"),
            LockedOut => ReplyParts::new(421, "4.7.0", "Too many failed authentication attempts; try again later"),
            AuthenticationUnavailable(_) => ReplyParts::new(454, "4.7.0", "Temporary authentication failure"),
            AuthenticationRequired => ReplyParts::new(530, "5.7.0", "Authentication required"),
            TooManyRecipients(_) => ReplyParts::new(452, "4.5.3", "Too many recipients"),
            SenderNotAuthorised(refusal) => ReplyParts::new(550, "5.7.1", sender_text("Sender", refusal)),
            HeaderFromNotAuthorised(SenderRefusal::NoFromHeader) | NoFromHeader => {
                ReplyParts::new(550, "5.6.0", "Message has no From header")
            }
            HeaderFromNotAuthorised(refusal) => ReplyParts::new(550, "5.7.1", sender_text("Header From", refusal)),
            BulkWithoutUnsubscribe(why) => ReplyParts::new(550, "5.7.1", why.clone()),
            Virus(name) => ReplyParts::new(550, "5.7.1", format!("Message refused: virus found ({name})")),
            Spam { score, required } => ReplyParts::new(
                550,
                "5.7.1",
                format!("Message refused as spam (score {score:.1} of {required:.1})"),
            ),
            SpamDeferred => ReplyParts::new(451, "4.7.1", "Message deferred by the spam filter; try again later"),
            ScannerDown => ReplyParts::new(451, "4.7.0", "Content scanner unavailable; try again later"),
            CapReached { name, temporary: true } => {
                ReplyParts::new(451, "4.7.1", format!("{name} reached; try again later"))
            }
            CapReached { name, temporary: false } => ReplyParts::new(550, "5.7.1", format!("{name} reached")),
            StoreUnavailable(_) => ReplyParts::new(451, "4.3.0", "Temporary storage failure; try again later"),
            Internal(_) => ReplyParts::new(451, "4.3.0", "Temporary failure; try again later"),
            EarlyTalker => ReplyParts::new(554, "5.5.1", "Protocol error: you spoke before the greeting"),
            StoreBusy => ReplyParts::new(451, "4.3.0", "Server busy; try again later"),
            Suppressed(entry) => ReplyParts::new(550, "5.1.1", suppressed_text(entry)),
            MessageTooBig(limit) => {
                ReplyParts::new(552, "5.3.4", format!("Message exceeds the size limit of {limit} bytes"))
            }
        }
    }

    /// A refusal of a sign-in (AUTH), not of a message.
    pub fn is_sign_in(&self) -> bool {
        matches!(
            self,
            Refusal::AuthenticationFailed(_) | Refusal::LockedOut | Refusal::AuthenticationUnavailable(_)
        )
    }

    /// The stable label of the rule: the `reason` of
    /// `ferry_messages_refused_total`, of the per-application reports and of
    /// explain. Never changes for a given rule.
    pub fn reason(&self) -> &'static str {
        use Refusal::*;
        match self {
            AuthenticationFailed(_) => "auth_failed",
            LockedOut => "auth_locked_out",
            AuthenticationUnavailable(_) => "auth_unavailable",
            AuthenticationRequired => "auth_required",
            TooManyRecipients(_) => "too_many_recipients",
            SenderNotAuthorised(SenderRefusal::ForeignDomain(_)) => "sender_foreign_domain",
            SenderNotAuthorised(_) => "sender_not_authorised",
            HeaderFromNotAuthorised(SenderRefusal::NoFromHeader) | NoFromHeader => "no_from_header",
            HeaderFromNotAuthorised(_) => "header_from_not_authorised",
            BulkWithoutUnsubscribe(_) => "bulk_without_unsubscribe",
            Virus(_) => "virus",
            Spam { .. } => "spam",
            SpamDeferred => "spam_deferred",
            ScannerDown => "scanner_down",
            CapReached { .. } => "cap",
            StoreUnavailable(_) => "store_unavailable",
            Internal(_) => "internal",
            EarlyTalker => "early_talker",
            StoreBusy => "store_busy",
            Suppressed(_) => "suppressed",
            MessageTooBig(_) => "size",
        }
    }
}

fn suppressed_text(entry: &crate::suppression::Suppression) -> String {
    let since = i64::try_from(entry.at_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || "a while".to_string(),
            |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        );
    let why = match entry.reason {
        crate::suppression::Reason::HardBounce => "it bounced",
        crate::suppression::Reason::Complaint => "its owner complained",
        crate::suppression::Reason::SoftBounces => "it bounced repeatedly",
        crate::suppression::Reason::Manual => "an administrator listed it",
    };
    format!(
        "Recipient <{}> is suppressed since {since} ({why}); not sent",
        entry.recipient
    )
}

fn sender_text(which: &str, refusal: &SenderRefusal) -> String {
    match refusal {
        SenderRefusal::ForeignDomain(address) => format!("{which} <{address}> is outside the tenant's domains"),
        SenderRefusal::NotAuthorised(address) => format!("{which} <{address}> not authorised for this application"),
        SenderRefusal::NoFromHeader => "Message has no From header".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule, its reply and its label: one row each.
    #[test]
    fn each_refusal_has_its_reply_and_label() {
        let login = LoginRefusal::Disabled;
        let rows: Vec<(Refusal, u16, &str, &str, &str)> = vec![
            (
                Refusal::AuthenticationFailed(AuthDetail::WrongPassword),
                535,
                "5.7.8",
                "auth_failed",
                "credentials invalid",
            ),
            (
                Refusal::AuthenticationFailed(AuthDetail::Refused(login)),
                535,
                "5.7.8",
                "auth_failed",
                "credentials invalid",
            ),
            (Refusal::LockedOut, 421, "4.7.0", "auth_locked_out", "Too many failed"),
            (
                Refusal::MessageTooBig(1000),
                552,
                "5.3.4",
                "size",
                "Message exceeds the size limit of 1000",
            ),
            (
                Refusal::AuthenticationUnavailable("down".into()),
                454,
                "4.7.0",
                "auth_unavailable",
                "Temporary authentication failure",
            ),
            (
                Refusal::AuthenticationRequired,
                530,
                "5.7.0",
                "auth_required",
                "Authentication required",
            ),
            (
                Refusal::TooManyRecipients(50),
                452,
                "4.5.3",
                "too_many_recipients",
                "Too many recipients",
            ),
            (
                Refusal::SenderNotAuthorised(SenderRefusal::NotAuthorised("a@x.test".into())),
                550,
                "5.7.1",
                "sender_not_authorised",
                "Sender <a@x.test> not authorised",
            ),
            (
                Refusal::SenderNotAuthorised(SenderRefusal::ForeignDomain("a@y.test".into())),
                550,
                "5.7.1",
                "sender_foreign_domain",
                "outside the tenant's domains",
            ),
            (Refusal::NoFromHeader, 550, "5.6.0", "no_from_header", "no From header"),
            (
                Refusal::HeaderFromNotAuthorised(SenderRefusal::NoFromHeader),
                550,
                "5.6.0",
                "no_from_header",
                "no From header",
            ),
            (
                Refusal::HeaderFromNotAuthorised(SenderRefusal::NotAuthorised("b@x.test".into())),
                550,
                "5.7.1",
                "header_from_not_authorised",
                "Header From <b@x.test> not authorised",
            ),
            (
                Refusal::BulkWithoutUnsubscribe("bulk mail needs List-Unsubscribe".into()),
                550,
                "5.7.1",
                "bulk_without_unsubscribe",
                "List-Unsubscribe",
            ),
            (
                Refusal::Virus("Eicar-Signature".into()),
                550,
                "5.7.1",
                "virus",
                "virus found (Eicar-Signature)",
            ),
            (
                Refusal::Spam {
                    score: 15.0,
                    required: 10.0,
                },
                550,
                "5.7.1",
                "spam",
                "score 15.0 of 10.0",
            ),
            (Refusal::SpamDeferred, 451, "4.7.1", "spam_deferred", "spam filter"),
            (
                Refusal::ScannerDown,
                451,
                "4.7.0",
                "scanner_down",
                "scanner unavailable",
            ),
            (
                Refusal::CapReached {
                    name: "hourly cap".into(),
                    temporary: true,
                },
                451,
                "4.7.1",
                "cap",
                "hourly cap reached; try again later",
            ),
            (
                Refusal::CapReached {
                    name: "yearly cap".into(),
                    temporary: false,
                },
                550,
                "5.7.1",
                "cap",
                "yearly cap reached",
            ),
            (
                Refusal::StoreUnavailable("down".into()),
                451,
                "4.3.0",
                "store_unavailable",
                "storage failure",
            ),
            (
                Refusal::Internal("signing".into()),
                451,
                "4.3.0",
                "internal",
                "try again later",
            ),
            (
                Refusal::EarlyTalker,
                554,
                "5.5.1",
                "early_talker",
                "before the greeting",
            ),
            (Refusal::StoreBusy, 451, "4.3.0", "store_busy", "busy"),
            (
                Refusal::Suppressed(Box::new(crate::suppression::Suppression {
                    tenant: "hr".into(),
                    recipient: "jo@x.test".into(),
                    reason: crate::suppression::Reason::HardBounce,
                    at_ms: 1_764_806_400_000,
                    expires_ms: None,
                    source: "bounced".into(),
                })),
                550,
                "5.1.1",
                "suppressed",
                "<jo@x.test> is suppressed since 2025-12-04 00:00 UTC (it bounced)",
            ),
        ];
        for (refusal, code, status, reason, text) in rows {
            let reply = refusal.reply();
            assert_eq!((reply.code, reply.status), (code, status), "{refusal:?}");
            assert_eq!(refusal.reason(), reason, "{refusal:?}");
            assert!(reply.text.contains(text), "{refusal:?}: {}", reply.text);
        }
    }
}
