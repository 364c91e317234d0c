//! EHLO/HELO, STARTTLS, MAIL and RCPT: the checks of each verb, in the order
//! of DESIGN.md (TLS, then AUTH, then the envelope).

use crate::address::{self, AddressError};
use crate::reply::Reply;
use crate::session::{Action, MailRequest, Session, TlsPolicy, Transaction, address_reply};

pub(crate) fn ehlo(s: &mut Session, arg: &str, extended: bool) {
    let name = arg.trim();
    if name.is_empty() || name.contains(' ') {
        return s.error(Reply::new(501, "5.5.4", "Syntax: EHLO <domain or address literal>"));
    }
    s.helo = Some(name.to_string());
    s.esmtp = extended;
    s.txn = Transaction::default();
    if !extended {
        return s.raw(&format!("250 {}", s.cfg.hostname));
    }
    let mut lines = vec![
        s.cfg.hostname.clone(),
        "PIPELINING".into(),
        format!("SIZE {}", s.cfg.max_message_bytes),
        "8BITMIME".into(),
        "SMTPUTF8".into(),
        "ENHANCEDSTATUSCODES".into(),
        "CHUNKING".into(),
    ];
    if !s.tls && s.cfg.tls != TlsPolicy::Unavailable {
        lines.push("STARTTLS".into());
    }
    // AUTH is never offered before TLS, on any port, nor on an inbound one.
    if s.tls && s.auth.is_none() && s.cfg.inbound.is_none() {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    s.multiline(250, &lines);
}

pub(crate) fn starttls(s: &mut Session, arg: &str) -> Option<Action> {
    if !arg.is_empty() {
        s.error(Reply::new(501, "5.5.4", "STARTTLS takes no parameters"));
        return None;
    }
    if s.tls {
        s.error(Reply::new(554, "5.5.1", "TLS already active"));
        return None;
    }
    if s.cfg.tls == TlsPolicy::Unavailable {
        s.error(Reply::new(502, "5.5.1", "STARTTLS not available"));
        return None;
    }
    if s.helo.is_none() {
        s.error(Reply::new(503, "5.5.1", "Send EHLO first"));
        return None;
    }
    s.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
    s.await_decision();
    Some(Action::StartTls)
}

pub(crate) fn auth_allowed(s: &Session) -> Result<(), Reply> {
    if s.cfg.inbound.is_some() {
        return Err(Reply::new(
            503,
            "5.5.1",
            "Authentication is not available on this service",
        ));
    }
    if !s.tls {
        return Err(Reply::new(
            538,
            "5.7.11",
            "Encryption required for requested authentication mechanism",
        ));
    }
    if !s.esmtp {
        return Err(Reply::new(503, "5.5.1", "Send EHLO first"));
    }
    if s.auth.is_some() {
        return Err(Reply::new(503, "5.5.1", "Already authenticated"));
    }
    if s.txn.mail.is_some() {
        return Err(Reply::new(503, "5.5.1", "AUTH not allowed during a mail transaction"));
    }
    Ok(())
}

fn mail_allowed(s: &Session) -> Result<(), Reply> {
    if s.helo.is_none() {
        return Err(Reply::new(503, "5.5.1", "Send EHLO first"));
    }
    if !s.tls && s.cfg.tls != TlsPolicy::Unavailable && s.cfg.inbound.is_none() {
        return Err(Reply::new(530, "5.7.0", "Must issue a STARTTLS command first"));
    }
    let Some(limits) = s.limits() else {
        return Err(Reply::new(530, "5.7.0", "Authentication required"));
    };
    if s.txn.mail.is_some() {
        return Err(Reply::new(503, "5.5.1", "Nested MAIL command"));
    }
    if s.messages >= limits.max_messages_per_session {
        return Err(Reply::new(
            421,
            "4.7.0",
            format!(
                "Limit of {} messages per session reached; reconnect to send more",
                limits.max_messages_per_session
            ),
        ));
    }
    Ok(())
}

pub(crate) fn mail(s: &mut Session, arg: &str) -> Option<Action> {
    let request = mail_allowed(s).and_then(|()| parse_mail(arg, s.message_limit()));
    match request {
        Ok(request) => {
            s.txn.mail = Some(request.clone());
            s.await_decision();
            Some(Action::Mail(request))
        }
        Err(reply) => {
            s.oversized |= reply.enhanced == "5.3.4";
            s.error(reply);
            None
        }
    }
}

fn parse_mail(arg: &str, limit: usize) -> Result<MailRequest, Reply> {
    let path = address::parse_path(arg, true).map_err(|e| address_reply(e, true))?;
    let mut request = MailRequest {
        from: path.mailbox,
        declared_size: None,
        eight_bit: false,
        smtputf8: false,
    };
    for param in path.params {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => {
                let size = value
                    .parse::<u64>()
                    .map_err(|_| Reply::new(501, "5.5.4", "SIZE parameter is not a number"))?;
                request.declared_size = Some(size);
            }
            "BODY" if value.eq_ignore_ascii_case("8BITMIME") => request.eight_bit = true,
            "BODY" if value.eq_ignore_ascii_case("7BIT") => {}
            "BODY" => return Err(Reply::new(555, "5.5.4", format!("Unsupported BODY type {value}"))),
            "SMTPUTF8" if value.is_empty() => request.smtputf8 = true,
            // RFC 4954 §5: accepted, and ignored: an application acts only as itself.
            "AUTH" => {}
            _ => return Err(Reply::new(555, "5.5.4", format!("Unsupported MAIL parameter {key}"))),
        }
    }
    if !request.smtputf8 && !request.from.is_ascii() {
        return Err(address_reply(AddressError::NonAscii, true));
    }
    if request.declared_size.is_some_and(|size| size > limit as u64) {
        return Err(Reply::new(
            552,
            "5.3.4",
            format!("Message size exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(request)
}

pub(crate) fn rcpt(s: &mut Session, arg: &str) -> Option<Action> {
    let Some(mail) = &s.txn.mail else {
        s.error(Reply::new(503, "5.5.1", "Send MAIL FROM first"));
        return None;
    };
    let smtputf8 = mail.smtputf8;
    let max = s.limits().map_or(0, |l| l.max_recipients);
    if s.txn.recipients.len() >= max {
        // RFC 5321 §4.5.3.1.10: the excess gets 452 and the transaction
        // goes on with the recipients accepted; the client sends the rest in
        // another. Not an error: a well-behaved client pipelines this.
        s.reply(Reply::new(
            452,
            "4.5.3",
            format!("Too many recipients; at most {max} per message"),
        ));
        return None;
    }
    let path = match address::parse_path(arg, false) {
        Ok(path) if !path.params.is_empty() => Err(Reply::new(555, "5.5.4", "RCPT parameters are not supported")),
        Ok(path) if !smtputf8 && !path.mailbox.is_ascii() => Err(address_reply(AddressError::NonAscii, false)),
        Ok(path) => Ok(path.mailbox),
        Err(e) => Err(address_reply(e, false)),
    };
    match path {
        Ok(mailbox) => {
            s.txn.pending_rcpt = Some(mailbox.clone());
            s.await_decision();
            Some(Action::Rcpt(mailbox))
        }
        Err(reply) => {
            s.error(reply);
            None
        }
    }
}
