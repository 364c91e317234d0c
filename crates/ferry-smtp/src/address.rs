//! Parsing of the reverse-path and forward-path of MAIL and RCPT (RFC 5321
//! §4.1.2), with the SMTPUTF8 rule (RFC 6531) and without honouring source
//! routes.

/// Why an address was refused; the session maps each to its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressError {
    /// Not `<...>` or not a valid mailbox.
    Syntax,
    /// Non-ASCII without the SMTPUTF8 parameter.
    NonAscii,
}

/// A parsed `<path> params` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathArg<'a> {
    /// The mailbox, empty for the null path `<>`.
    pub mailbox: String,
    pub params: Vec<&'a str>,
}

/// Parses `<mailbox> [params]` (leading spaces allowed, as Postfix allows
/// `MAIL FROM: <a@b>`). A source route (`<@a,@b:user@dom>`) is dropped: the
/// route is never honoured, the final mailbox is what counts (RFC 5321 §C).
pub fn parse_path(arg: &str, allow_null: bool) -> Result<PathArg<'_>, AddressError> {
    let arg = arg.trim_start_matches(' ');
    let rest = arg.strip_prefix('<').ok_or(AddressError::Syntax)?;
    let end = closing_bracket(rest).ok_or(AddressError::Syntax)?;
    let inner = &rest[..end];
    let params: Vec<&str> = rest[end + 1..].split(' ').filter(|p| !p.is_empty()).collect();
    if !rest[end + 1..].is_empty() && !rest[end + 1..].starts_with(' ') {
        return Err(AddressError::Syntax);
    }
    if inner.is_empty() {
        return if allow_null {
            Ok(PathArg {
                mailbox: String::new(),
                params,
            })
        } else {
            Err(AddressError::Syntax)
        };
    }
    let mailbox = strip_source_route(inner)?;
    validate_mailbox(mailbox)?;
    Ok(PathArg {
        mailbox: mailbox.to_string(),
        params,
    })
}

/// Finds the `>` that closes the path, skipping quoted parts of the local part.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn strip_source_route(inner: &str) -> Result<&str, AddressError> {
    if !inner.starts_with('@') {
        return Ok(inner);
    }
    let colon = inner.find(':').ok_or(AddressError::Syntax)?;
    for hop in inner[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::Syntax)?;
        validate_domain(domain)?;
    }
    Ok(&inner[colon + 1..])
}

/// `local-part "@" domain`, where the local part is a dot-string or a quoted
/// string. Non-ASCII is allowed here; the caller decides whether SMTPUTF8 permits it.
pub fn validate_mailbox(mailbox: &str) -> Result<(), AddressError> {
    let at = local_part_end(mailbox).ok_or(AddressError::Syntax)?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if local.is_empty() || local.len() > 64 || mailbox.len() > 254 {
        return Err(AddressError::Syntax);
    }
    if !local.starts_with('"') {
        let atext_ok = local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext));
        if !atext_ok {
            return Err(AddressError::Syntax);
        }
    }
    validate_domain(domain)
}

/// Index of the `@` separating local part and domain, or None when there is
/// none or more than one outside quotes.
fn local_part_end(mailbox: &str) -> Option<usize> {
    if let Some(quoted) = mailbox.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let after = i + 2; // skip the opening quote and this one
                    return (mailbox[after..].starts_with('@') && !mailbox[after + 1..].contains('@')).then_some(after);
                }
                c if c.is_control() => return None,
                _ => {}
            }
        }
        return None;
    }
    let at = mailbox.find('@')?;
    (!mailbox[at + 1..].contains('@')).then_some(at)
}

fn is_atext(c: char) -> bool {
    c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

fn validate_domain(domain: &str) -> Result<(), AddressError> {
    if let Some(literal) = domain.strip_prefix('[') {
        let body = literal.strip_suffix(']').ok_or(AddressError::Syntax)?;
        let ok = body.parse::<std::net::Ipv4Addr>().is_ok()
            || body
                .strip_prefix("IPv6:")
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
        return if ok { Ok(()) } else { Err(AddressError::Syntax) };
    }
    if domain.is_empty() || domain.len() > 253 {
        return Err(AddressError::Syntax);
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control()))
    };
    if domain.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(AddressError::Syntax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_null_quoted_and_routed_paths() {
        assert_eq!(parse_path("<a@b.example>", false).unwrap().mailbox, "a@b.example");
        assert_eq!(parse_path("<>", true).unwrap().mailbox, "");
        assert_eq!(
            parse_path(" <a@b.example> SIZE=10", false).unwrap().params,
            vec!["SIZE=10"]
        );
        assert_eq!(
            parse_path("<\"a b\"@c.example>", false).unwrap().mailbox,
            "\"a b\"@c.example"
        );
        assert_eq!(
            parse_path("<@[127.0.0.1]:r@ext.org>", false).unwrap().mailbox,
            "r@ext.org"
        );
        assert_eq!(parse_path("<u@[IPv6:::1]>", false).unwrap().mailbox, "u@[IPv6:::1]");
    }

    #[test]
    fn refuses_relay_tricks_and_broken_syntax() {
        for bad in [
            "<>",
            "a@b",
            "<a@b",
            "<\"r@ext.org\">",
            "<r@ext.org@[127.0.0.1]>",
            "<a..b@c>",
            "<a@-c>",
            "<a@[300.1.1.1]>",
            "<a@b>x",
            "<postmaster>",
        ] {
            assert_eq!(parse_path(bad, false), Err(AddressError::Syntax), "{bad}");
        }
    }
}
