//! MTA-STS (RFC 8461): a receiving domain's policy, as its HTTPS server
//! publishes it at `https://mta-sts.<domain>/.well-known/mta-sts.txt`,
//! parsed, and the question delivery asks of it: may this MX host be used.
//! The `_mta-sts` TXT record and TLS-RPT's are parsed by `mail-auth`; the
//! fetch, the cache and the TLS checks sit around this pure code.

use serde::{Deserialize, Serialize};

/// The largest policy a sender must read (RFC 8461 §3.3).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// The longest a policy may be cached: one year (RFC 8461 §3.2).
pub const MAX_AGE_SECS: u64 = 31_557_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Deliver only to matching MX hosts, over TLS with a valid certificate.
    Enforce,
    /// Deliver as before, and report what would have failed.
    Testing,
    /// The domain withdrew its policy.
    None,
}

/// A domain's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// MX host patterns: a name, or `*.` and a name (one label more).
    pub mx: Vec<String>,
    pub max_age_secs: u64,
}

/// Why a policy was not taken: the failure TLS-RPT calls
/// `sts-policy-invalid`, with the reason for the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is larger than 64 KiB")]
    TooLarge,
    #[error("the policy is not UTF-8 text")]
    NotText,
    #[error("the policy's version is not STSv1")]
    Version,
    #[error("the policy has no valid {0} field")]
    Missing(&'static str),
    #[error("the policy's field {field} has an invalid value {value:?}")]
    Invalid { field: &'static str, value: String },
}

impl Policy {
    /// Parses a policy body. Unknown fields are ignored, as the RFC asks;
    /// `version` must come first.
    pub fn parse(body: &[u8]) -> Result<Policy, PolicyError> {
        if body.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let text = std::str::from_utf8(body).map_err(|_| PolicyError::NotText)?;
        let mut fields = text
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()));
        match fields.next() {
            Some(("version", "STSv1")) => {}
            _ => return Err(PolicyError::Version),
        }
        let (mut mode, mut max_age, mut mx) = (None, None, Vec::new());
        for (key, value) in fields {
            match key {
                "mode" => mode = Some(parse_mode(value)?),
                "max_age" => max_age = Some(parse_max_age(value)?),
                "mx" => mx.push(parse_mx(value)?),
                _ => {}
            }
        }
        let mode = mode.ok_or(PolicyError::Missing("mode"))?;
        let max_age_secs = max_age.ok_or(PolicyError::Missing("max_age"))?;
        if mode != Mode::None && mx.is_empty() {
            return Err(PolicyError::Missing("mx"));
        }
        Ok(Policy { mode, mx, max_age_secs })
    }

    /// Whether `host` (an MX host name) matches one of the policy's
    /// patterns: exactly, or `*.example.net` for one label left of
    /// `example.net`; without regard to case or a trailing dot.
    pub fn allows(&self, host: &str) -> bool {
        let host = normalise(host);
        self.mx.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => *pattern == host,
        })
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_mode(value: &str) -> Result<Mode, PolicyError> {
    match value {
        "enforce" => Ok(Mode::Enforce),
        "testing" => Ok(Mode::Testing),
        "none" => Ok(Mode::None),
        _ => Err(PolicyError::Invalid {
            field: "mode",
            value: value.to_string(),
        }),
    }
}

fn parse_max_age(value: &str) -> Result<u64, PolicyError> {
    let invalid = || PolicyError::Invalid {
        field: "max_age",
        value: value.to_string(),
    };
    // 1 to 10 digits; a larger age is capped at a year.
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    value.parse::<u64>().map(|v| v.min(MAX_AGE_SECS)).map_err(|_| invalid())
}

fn parse_mx(value: &str) -> Result<String, PolicyError> {
    let pattern = normalise(value);
    let name = pattern.strip_prefix("*.").unwrap_or(&pattern);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(pattern)
    } else {
        Err(PolicyError::Invalid {
            field: "mx",
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfcs_example_policy_parses() {
        let body = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";
        let policy = Policy::parse(body).expect("parses");
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.max_age_secs, 604_800);
        assert_eq!(policy.mx, ["mail.example.com", "*.example.net", "backupmx.example.com"]);
    }

    #[test]
    fn patterns_match_exactly_or_one_label_more() {
        let policy =
            Policy::parse(b"version: STSv1\nmode: testing\nmx: mail.example.com\nmx: *.Example.NET.\nmax_age: 86400\n")
                .expect("parses");
        for host in [
            "mail.example.com",
            "MAIL.example.com.",
            "mx1.example.net",
            "a-b.example.net",
        ] {
            assert!(policy.allows(host), "{host}");
        }
        for host in [
            "example.net",
            "a.b.example.net",
            "mail.example.com.evil.test",
            "other.example.com",
            ".example.net",
        ] {
            assert!(!policy.allows(host), "{host}");
        }
    }

    #[test]
    fn what_is_not_a_policy_is_refused_with_its_reason() {
        let cases: [(&[u8], PolicyError); 7] = [
            (
                b"mode: enforce\nversion: STSv1\nmx: a.test\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                b"version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                b"version: STSv1\nmx: a.test\nmax_age: 1\n",
                PolicyError::Missing("mode"),
            ),
            (
                b"version: STSv1\nmode: enforce\nmax_age: 1\n",
                PolicyError::Missing("mx"),
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.test\n",
                PolicyError::Missing("max_age"),
            ),
            (
                b"version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
                PolicyError::Invalid {
                    field: "mode",
                    value: "strict".into(),
                },
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
                PolicyError::Invalid {
                    field: "mx",
                    value: "a..test".into(),
                },
            ),
        ];
        for (body, error) in cases {
            assert_eq!(Policy::parse(body), Err(error), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            Policy::parse(&vec![b'a'; MAX_POLICY_BYTES + 1]),
            Err(PolicyError::TooLarge)
        );
        assert_eq!(Policy::parse(b"version: STSv1\n\xff"), Err(PolicyError::NotText));
    }

    #[test]
    fn none_needs_no_mx_unknown_fields_are_ignored_and_ages_are_capped() {
        let policy = Policy::parse(b"version: STSv1\nmode: none\nfuture: yes\nmax_age: 9999999999\n").expect("parses");
        assert_eq!((policy.mode, policy.max_age_secs), (Mode::None, MAX_AGE_SECS));
        assert!(!policy.allows("anything.test"));
        assert!(Policy::parse(b"version: STSv1\nmode: none\nmax_age: -1\n").is_err());
    }
}
