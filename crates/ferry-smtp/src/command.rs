//! One SMTP command line, parsed (RFC 5321 §4.1).

/// A command, with its argument still as text where the session needs more
/// context to judge it (paths depend on SMTPUTF8, BDAT sizes on limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Helo(&'a str),
    Ehlo(&'a str),
    Mail(&'a str),
    Rcpt(&'a str),
    Data(&'a str),
    Bdat(&'a str),
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls(&'a str),
    Auth(&'a str),
    /// A known verb used wrongly (`MAIL` without `FROM:`).
    Malformed(&'static str),
    /// A PROXY protocol v1 header where none is expected.
    Proxy,
    Unknown,
}

/// Parses a command line without its CRLF.
pub fn parse(line: &str) -> Command<'_> {
    let (verb, arg) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let arg = arg.trim_end_matches(' ');
    match verb.to_ascii_uppercase().as_str() {
        "HELO" => Command::Helo(arg),
        "EHLO" => Command::Ehlo(arg),
        "MAIL" => strip_keyword(arg, "FROM:").map_or(Command::Malformed("MAIL FROM:<address>"), Command::Mail),
        "RCPT" => strip_keyword(arg, "TO:").map_or(Command::Malformed("RCPT TO:<address>"), Command::Rcpt),
        "DATA" => Command::Data(arg),
        "BDAT" => Command::Bdat(arg),
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "VRFY" => Command::Vrfy,
        "EXPN" => Command::Expn,
        "HELP" => Command::Help,
        "STARTTLS" => Command::StartTls(arg),
        "AUTH" => Command::Auth(arg),
        "PROXY" => Command::Proxy,
        _ => Command::Unknown,
    }
}

fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| &arg[keyword.len()..])
}

/// `BDAT <size> [LAST]` (RFC 3030).
pub fn parse_bdat(arg: &str) -> Option<(usize, bool)> {
    let mut parts = arg.split(' ').filter(|p| !p.is_empty());
    let size = parts.next()?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || size.len() > 12 {
        return None;
    }
    let last = match parts.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((size.parse().ok()?, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verbs_case_insensitively() {
        assert_eq!(parse("mail from:<a@b>"), Command::Mail("<a@b>"));
        assert_eq!(parse("MAIL FROM: <a@b>"), Command::Mail(" <a@b>"));
        assert_eq!(parse("RCPT <a@b>"), Command::Malformed("RCPT TO:<address>"));
        assert_eq!(parse("ehlo client.example"), Command::Ehlo("client.example"));
        assert_eq!(parse("XYZZY"), Command::Unknown);
    }

    #[test]
    fn parses_bdat() {
        assert_eq!(parse_bdat("100"), Some((100, false)));
        assert_eq!(parse_bdat("0 LAST"), Some((0, true)));
        assert_eq!(parse_bdat("5 FOO"), None);
        assert_eq!(parse_bdat("x"), None);
        assert_eq!(parse_bdat(""), None);
    }
}
