//! Who may send as whom: the login checks after a password matched, and the
//! envelope and header sender checks. Each refusal is a typed reason; the
//! relay maps each to its SMTP reply in one place.

use std::net::IpAddr;

use crate::tenant::{Application, Tenant};

/// Why a login with a correct password is still refused. The client sees
/// the same `535 5.7.8` as for a wrong password; the reason goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefusal {
    #[error("application is disabled")]
    Disabled,
    #[error("application expired on {0}")]
    Expired(jiff::civil::Date),
    #[error("source address {0} is not allowed for this application")]
    SourceNotAllowed(IpAddr),
    #[error("tenant {0} does not exist")]
    NoTenant(String),
}

/// Why a sender address is refused (`550 5.7.1`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderRefusal {
    #[error("sender <{0}> is not authorised for this application")]
    NotAuthorised(String),
    #[error("sender domain of <{0}> is not one of the tenant's domains")]
    ForeignDomain(String),
    #[error("message has no From header")]
    NoFromHeader,
}

/// What the bulk-mail rule looks at in a message's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkSignals {
    pub list_id: bool,
    /// `Precedence: bulk` or `list`.
    pub precedence_bulk: bool,
    pub list_unsubscribe: Option<String>,
    pub list_unsubscribe_post: Option<String>,
}

/// Bulk mail (a List-Id, `Precedence: bulk`, or at least `bulk_recipients`
/// recipients) must carry RFC 8058 one-click unsubscribe: an https
/// List-Unsubscribe URI and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
/// The error says what is missing.
pub fn check_bulk(signals: &BulkSignals, recipients: usize, bulk_recipients: usize) -> Result<(), String> {
    let why = if signals.list_id {
        "it has a List-Id header"
    } else if signals.precedence_bulk {
        "it has Precedence: bulk"
    } else if recipients >= bulk_recipients {
        "it has many recipients"
    } else {
        return Ok(());
    };
    let https = signals.list_unsubscribe.as_deref().is_some_and(|v| {
        v.split(',').any(|uri| {
            uri.trim()
                .trim_start_matches('<')
                .to_ascii_lowercase()
                .starts_with("https://")
        })
    });
    let one_click = signals
        .list_unsubscribe_post
        .as_deref()
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("List-Unsubscribe=One-Click"));
    let missing = match (signals.list_unsubscribe.is_some(), https, one_click) {
        (false, _, _) => "a List-Unsubscribe header with an https URI",
        (true, false, _) => "an https URI in List-Unsubscribe",
        (true, true, false) => "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        (true, true, true) => return Ok(()),
    };
    Err(format!(
        "Bulk mail must carry one-click unsubscribe (RFC 8058): {why} but lacks {missing}"
    ))
}

/// Checks that run after the password matched.
pub fn check_login(
    app: &Application,
    tenant: Option<&Tenant>,
    ip: IpAddr,
    today: jiff::civil::Date,
) -> Result<(), LoginRefusal> {
    if !app.enabled {
        return Err(LoginRefusal::Disabled);
    }
    if let Some(expires) = app.expires
        && today > expires
    {
        return Err(LoginRefusal::Expired(expires));
    }
    let ip = canonical_ip(ip);
    if !app.allowed_networks.iter().any(|net| net.contains(&ip)) {
        return Err(LoginRefusal::SourceNotAllowed(ip));
    }
    if tenant.is_none() {
        return Err(LoginRefusal::NoTenant(app.tenant.clone()));
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The envelope sender must be one of the application's exact addresses,
/// in one of its tenant's domains.
pub fn check_envelope_from(app: &Application, tenant: &Tenant, from: &str) -> Result<(), SenderRefusal> {
    check_address(&app.envelope_from, tenant, from)
}

/// Every address in the header From must be authorised for the application.
pub fn check_header_from(app: &Application, tenant: &Tenant, from: &[String]) -> Result<(), SenderRefusal> {
    if from.is_empty() {
        return Err(SenderRefusal::NoFromHeader);
    }
    from.iter()
        .try_for_each(|addr| check_address(app.header_from_allowed(), tenant, addr))
}

fn check_address(allowed: &[String], tenant: &Tenant, addr: &str) -> Result<(), SenderRefusal> {
    let lower = addr.to_lowercase();
    if !allowed.contains(&lower) {
        return Err(SenderRefusal::NotAuthorised(addr.to_string()));
    }
    let domain = lower.rsplit_once('@').map_or("", |(_, d)| d);
    if !tenant.owns_domain(domain) {
        return Err(SenderRefusal::ForeignDomain(addr.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::AppLimits;

    fn app() -> Application {
        Application {
            username: "payroll".into(),
            tenant: "hr".into(),
            password_hash: String::new(),
            envelope_from: vec!["payroll@hr.example.edu".into(), "x@other.test".into()],
            header_from: vec![],
            allowed_networks: vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()],
            limits: AppLimits::default(),
            expires: Some(jiff::civil::date(2026, 12, 31)),
            enabled: true,
            created_ms: 0,
            credential_version: 0,
            caps: Default::default(),
            bulk_rules: true,
            previous_password: None,
            directory_dn: None,
            events_webhook: None,
        }
    }

    fn tenant() -> Tenant {
        Tenant {
            name: "hr".into(),
            domains: vec!["example.edu".into()],
            subdomains_only: true,
            contact: None,
            created_ms: 0,
            route: Default::default(),
            allocation: Default::default(),
            caps: Default::default(),
            sample_percent: 0,
            bounces: Default::default(),
            events_webhook: None,
            incident_policy: Default::default(),
        }
    }

    #[test]
    fn login_checks() {
        let today = jiff::civil::date(2026, 6, 1);
        let ok: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(check_login(&app(), Some(&tenant()), ok, today), Ok(()));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(check_login(&app(), Some(&tenant()), mapped, today), Ok(()));
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            check_login(&app(), Some(&tenant()), bad, today),
            Err(LoginRefusal::SourceNotAllowed(bad))
        );
        let later = jiff::civil::date(2027, 1, 1);
        assert!(matches!(
            check_login(&app(), Some(&tenant()), ok, later),
            Err(LoginRefusal::Expired(_))
        ));
        let disabled = Application {
            enabled: false,
            ..app()
        };
        assert_eq!(
            check_login(&disabled, Some(&tenant()), ok, today),
            Err(LoginRefusal::Disabled)
        );
    }

    #[test]
    fn bulk_rule() {
        let list = BulkSignals {
            list_id: true,
            ..Default::default()
        };
        assert!(
            check_bulk(&list, 1, 100)
                .unwrap_err()
                .contains("List-Unsubscribe header")
        );
        let mailto = BulkSignals {
            list_unsubscribe: Some("<mailto:u@x.test>".into()),
            ..list.clone()
        };
        assert!(check_bulk(&mailto, 1, 100).unwrap_err().contains("https URI"));
        let no_post = BulkSignals {
            list_unsubscribe: Some("<mailto:u@x.test>, <https://x.test/u/1>".into()),
            ..list.clone()
        };
        assert!(
            check_bulk(&no_post, 1, 100)
                .unwrap_err()
                .contains("List-Unsubscribe=One-Click")
        );
        let ok = BulkSignals {
            list_unsubscribe_post: Some("List-Unsubscribe=One-Click".into()),
            ..no_post
        };
        assert_eq!(check_bulk(&ok, 1, 100), Ok(()));
        assert_eq!(check_bulk(&BulkSignals::default(), 99, 100), Ok(()));
        assert!(
            check_bulk(&BulkSignals::default(), 100, 100)
                .unwrap_err()
                .contains("many recipients")
        );
    }

    #[test]
    fn sender_checks() {
        assert_eq!(check_envelope_from(&app(), &tenant(), "Payroll@HR.example.edu"), Ok(()));
        assert!(matches!(
            check_envelope_from(&app(), &tenant(), "boss@hr.example.edu"),
            Err(SenderRefusal::NotAuthorised(_))
        ));
        assert!(matches!(
            check_envelope_from(&app(), &tenant(), "x@other.test"),
            Err(SenderRefusal::ForeignDomain(_))
        ));
        assert!(matches!(
            check_envelope_from(&app(), &tenant(), ""),
            Err(SenderRefusal::NotAuthorised(_))
        ));
        assert_eq!(
            check_header_from(&app(), &tenant(), &["payroll@hr.example.edu".into()]),
            Ok(())
        );
        assert_eq!(
            check_header_from(&app(), &tenant(), &[]),
            Err(SenderRefusal::NoFromHeader)
        );
    }
}
