//! The rules of onboarding, written once for every way in (the CLI today,
//! the admin API next): what a tenant, an application and a smart host
//! route must look like. Pure: the caller reads and writes the store, this
//! decides. Each refusal names the field at fault and carries a stable code.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::dkim::{DkimKeyRecord, valid_selector};
use crate::tenant::{
    AppLimits, Application, MAX_ENVELOPE_FROM, PreviousPassword, Route, SmartHost, Tenant, valid_username,
};

/// A value onboarding refuses: which field, why (for people), and a stable
/// code (for programs: the API's problem `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub code: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        code,
        message: message.into(),
    }
}

/// A tenant as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    pub name: String,
    pub domains: Vec<String>,
    pub subdomains_only: bool,
    pub contact: Option<String>,
}

/// The tenant to create, its domains normalised (lower case, no final dot).
pub fn tenant(new: NewTenant, now_ms: u64) -> Result<Tenant, Invalid> {
    if !valid_username(&new.name) {
        return Err(invalid(
            "name",
            "invalid_name",
            format!("{:?}: use 3-64 letters, digits, '-', '_' or '.'", new.name),
        ));
    }
    let domains: Vec<String> = new
        .domains
        .iter()
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    if domains.is_empty() {
        return Err(invalid("domains", "no_domain", "a tenant needs at least one domain"));
    }
    if let Some(bad) = domains
        .iter()
        .find(|d| !d.contains('.') || d.contains('@') || d.contains(char::is_whitespace))
    {
        return Err(invalid(
            "domains",
            "invalid_domain",
            format!("{bad:?}: not a domain name"),
        ));
    }
    Ok(Tenant {
        name: new.name,
        domains,
        subdomains_only: new.subdomains_only,
        contact: new.contact,
        created_ms: now_ms,
        route: Route::Default,
        allocation: Default::default(),
        caps: Default::default(),
        sample_percent: 0,
        bounces: Default::default(),
        events_webhook: None,
        incident_policy: Default::default(),
    })
}

/// An application as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub username: String,
    pub envelope_from: Vec<String>,
    pub header_from: Vec<String>,
    /// Addresses or networks (`10.1.2.0/24`).
    pub allowed_networks: Vec<String>,
    /// `YYYY-MM-DD`; a year from today when absent.
    pub expires: Option<String>,
    pub limits: AppLimits,
    pub bulk_rules: bool,
}

/// The application to create in `tenant`, with the hash of its new password.
pub fn application(
    new: NewApp,
    tenant: &Tenant,
    password_hash: String,
    today: jiff::civil::Date,
    now_ms: u64,
) -> Result<Application, Invalid> {
    if !valid_username(&new.username) {
        return Err(invalid(
            "username",
            "invalid_username",
            format!(
                "{:?}: use 3-64 letters, digits, '-', '_' or '.' (not an e-mail address)",
                new.username
            ),
        ));
    }
    let envelope_from = envelope_senders(&new.envelope_from, tenant)?;
    let header_from = senders("header_from", &new.header_from, tenant)?;
    let allowed_networks = networks(&new.allowed_networks)?;
    let expires = match &new.expires {
        Some(day) => expiry(day)?,
        None => today
            .checked_add(jiff::Span::new().years(1))
            .map_err(|_| invalid("expires", "invalid_date", "a year from today is out of range"))?,
    };
    Ok(Application {
        username: new.username,
        tenant: tenant.name.clone(),
        password_hash,
        envelope_from,
        header_from,
        allowed_networks,
        limits: new.limits,
        expires: Some(expires),
        enabled: true,
        created_ms: now_ms,
        credential_version: 0,
        caps: Default::default(),
        bulk_rules: new.bulk_rules,
        previous_password: None,
        directory_dn: None,
        events_webhook: None,
    })
}

/// Changes to an application; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AppChanges {
    pub envelope_from: Option<Vec<String>>,
    pub header_from: Option<Vec<String>>,
    pub allowed_networks: Option<Vec<String>>,
    /// `YYYY-MM-DD`.
    pub expires: Option<String>,
    pub limits: Option<AppLimits>,
    pub bulk_rules: Option<bool>,
}

/// Applies `changes` to `app` under the rules of a new application; on a
/// refusal `app` is left as it was.
pub fn update_application(app: &mut Application, changes: AppChanges, tenant: &Tenant) -> Result<(), Invalid> {
    let mut updated = app.clone();
    if let Some(list) = &changes.envelope_from {
        updated.envelope_from = envelope_senders(list, tenant)?;
    }
    if let Some(list) = &changes.header_from {
        updated.header_from = senders("header_from", list, tenant)?;
    }
    if let Some(list) = &changes.allowed_networks {
        updated.allowed_networks = networks(list)?;
    }
    if let Some(day) = &changes.expires {
        updated.expires = Some(expiry(day)?);
    }
    if let Some(limits) = changes.limits {
        updated.limits = limits;
    }
    if let Some(bulk) = changes.bulk_rules {
        updated.bulk_rules = bulk;
    }
    *app = updated;
    Ok(())
}

fn envelope_senders(list: &[String], tenant: &Tenant) -> Result<Vec<String>, Invalid> {
    let senders = senders("envelope_from", list, tenant)?;
    if senders.is_empty() {
        return Err(invalid(
            "envelope_from",
            "no_sender",
            "an application needs at least one envelope sender",
        ));
    }
    if senders.len() > MAX_ENVELOPE_FROM {
        return Err(invalid(
            "envelope_from",
            "too_many_senders",
            format!("at most {MAX_ENVELOPE_FROM} addresses per application"),
        ));
    }
    Ok(senders)
}

fn expiry(day: &str) -> Result<jiff::civil::Date, Invalid> {
    day.parse::<jiff::civil::Date>()
        .map_err(|_| invalid("expires", "invalid_date", format!("{day}: expected YYYY-MM-DD")))
}

/// Lower-cases each address and checks it is in the tenant's domains
/// (subdomains only, when the tenant says so).
pub fn senders(field: &'static str, list: &[String], tenant: &Tenant) -> Result<Vec<String>, Invalid> {
    list.iter()
        .map(|address| {
            let address = address.trim().to_lowercase();
            let Some((_, domain)) = address.rsplit_once('@') else {
                return Err(invalid(field, "invalid_address", format!("{address}: not an address")));
            };
            if ferry_smtp::address::validate_mailbox(&address).is_err() {
                return Err(invalid(field, "invalid_address", format!("{address}: not an address")));
            }
            if tenant.owns_domain(domain) {
                return Ok(address);
            }
            Err(invalid(
                field,
                "foreign_domain",
                format!(
                    "{address}: the domain is not one of tenant {}'s domains ({}{})",
                    tenant.name,
                    tenant.domains.join(", "),
                    if tenant.subdomains_only {
                        ", subdomains only"
                    } else {
                        ""
                    }
                ),
            ))
        })
        .collect()
}

/// A tenant's domains may change only while every application of it keeps
/// its senders inside them: the rule [`senders`] applies at onboarding.
pub fn senders_still_owned(tenant: &Tenant, apps: &[Application]) -> Result<(), Invalid> {
    for app in apps {
        senders("envelope_from", &app.envelope_from, tenant)
            .and_then(|_| senders("header_from", &app.header_from, tenant))
            .map_err(|e| {
                invalid(
                    "domains",
                    "domain_in_use",
                    format!("application {} would be left outside: {}", app.username, e.message),
                )
            })?;
    }
    Ok(())
}

/// Addresses and networks a client may connect from.
pub fn networks(list: &[String]) -> Result<Vec<IpNet>, Invalid> {
    list.iter()
        .map(|n| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    invalid(
                        "allowed_networks",
                        "invalid_network",
                        format!("{n}: expected an address or network such as 10.1.2.0/24"),
                    )
                })
        })
        .collect()
}

/// A smart host route from `host:port` (a bracketed IPv6 literal allowed).
pub fn smart_host(
    target: &str,
    tls_required: bool,
    username: Option<String>,
    password: Option<String>,
) -> Result<SmartHost, Invalid> {
    let (host, port) = target.rsplit_once(':').ok_or_else(|| {
        invalid(
            "smarthost",
            "invalid_smart_host",
            format!("{target}: expected host:port"),
        )
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("smarthost", "invalid_smart_host", format!("{target}: bad port")))?;
    let host = host.trim_matches(['[', ']']).to_string();
    if host.is_empty() {
        return Err(invalid("smarthost", "invalid_smart_host", format!("{target}: no host")));
    }
    Ok(SmartHost {
        host,
        port,
        tls_required,
        username,
        password,
    })
}

/// A token's name and scope: a tenant-admin token names its tenant, no
/// other token does. (That the tenant exists is the caller's to check.)
pub fn token(name: &str, role: crate::token::Role, tenant: Option<&str>) -> Result<(), Invalid> {
    use crate::token::Role;
    if name.trim().is_empty() || name.len() > 200 {
        return Err(invalid(
            "name",
            "invalid_name",
            "give the token a name of 1 to 200 characters",
        ));
    }
    match (role, tenant) {
        (Role::TenantAdmin, None) => Err(invalid(
            "tenant",
            "missing_tenant",
            "a tenant-admin token needs its tenant",
        )),
        (Role::TenantAdmin, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(invalid(
            "tenant",
            "unexpected_tenant",
            "only a tenant-admin token has a tenant",
        )),
    }
}

/// An RFC 3339 instant (`2026-12-08T00:00:00Z`) in ms since the epoch;
/// the refusal names `field`.
pub fn instant_ms(field: &'static str, s: &str) -> Result<u64, Invalid> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond().max(0) as u64)
        .map_err(|_| invalid(field, "invalid_date", format!("{s}: expected an RFC 3339 instant")))
}

/// The longest overlap a rotation may give the old password.
pub const MAX_OVERLAP_MS: u64 = 90 * 24 * 3_600_000;

/// Rotates an application's password to `new_hash`. With `old_valid_until_ms`
/// the current password keeps working until then (an overlap, at most
/// [`MAX_OVERLAP_MS`] ahead); without, it stops at once. Either way the
/// password before it, if one was still in its overlap, stops now: the
/// overlap lasts until the time set or the next rotation.
pub fn rotate_password(
    app: &mut Application,
    new_hash: String,
    old_valid_until_ms: Option<u64>,
    now_ms: u64,
) -> Result<(), Invalid> {
    let previous = match old_valid_until_ms {
        Some(until) if until <= now_ms => {
            return Err(invalid(
                "old_password_valid_until",
                "in_the_past",
                "must be in the future",
            ));
        }
        Some(until) if until > now_ms + MAX_OVERLAP_MS => {
            return Err(invalid(
                "old_password_valid_until",
                "out_of_range",
                "an overlap lasts at most 90 days",
            ));
        }
        Some(until) => Some(PreviousPassword {
            hash: std::mem::take(&mut app.password_hash),
            valid_until_ms: until,
        }),
        None => None,
    };
    app.password_hash = new_hash;
    app.previous_password = previous;
    app.credential_version += 1;
    Ok(())
}

/// The domain a new DKIM key is for, normalised, once the selector and
/// domain are valid and no key has that name yet (a rotation uses a new
/// selector).
pub fn new_dkim_key(domain: &str, selector: &str, keys: &[DkimKeyRecord]) -> Result<String, Invalid> {
    if !valid_selector(selector) {
        return Err(invalid(
            "selector",
            "invalid_selector",
            format!("{selector:?}: use letters, digits and '-'"),
        ));
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !domain.contains('.') || domain.split('.').any(|l| !valid_selector(l)) {
        return Err(invalid(
            "domain",
            "invalid_domain",
            format!("{domain:?} is not a domain name"),
        ));
    }
    if keys.iter().any(|k| k.domain == domain && k.selector == selector) {
        return Err(invalid(
            "selector",
            "key_exists",
            format!("{selector}._domainkey.{domain} exists already: choose a new selector to rotate"),
        ));
    }
    Ok(domain)
}

/// A tenant's bounce domain (see [`crate::tenant::Bounces`]), normalised:
/// a domain name strictly under one of the tenant's domains, so the
/// envelope-From under it stays SPF-aligned (relaxed) with the header
/// From, and used by no other tenant, since the inbound listener finds the
/// tenant by it.
pub fn bounce_domain(domain: &str, tenant: &Tenant, tenants: &[Tenant]) -> Result<String, Invalid> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if !domain.contains('.') || domain.split('.').any(|l| !valid_selector(l)) {
        return Err(invalid(
            "domain",
            "invalid_domain",
            format!("{domain:?} is not a domain name"),
        ));
    }
    if !tenant.domains.iter().any(|d| domain.ends_with(&format!(".{d}"))) {
        return Err(invalid(
            "domain",
            "bounce_domain_outside_tenant",
            format!(
                "{domain} must be a subdomain of one of the tenant's domains ({}), for SPF alignment",
                tenant.domains.join(", ")
            ),
        ));
    }
    if let Some(other) = tenants
        .iter()
        .find(|t| t.name != tenant.name && t.bounces.domain.as_deref() == Some(domain.as_str()))
    {
        return Err(invalid(
            "domain",
            "bounce_domain_taken",
            format!("{domain} is tenant {}'s bounce domain", other.name),
        ));
    }
    Ok(domain)
}

/// Whether a new key starts active: only when its domain has no active key
/// of the same algorithm (one active key per domain and algorithm).
pub fn starts_active(key: &DkimKeyRecord, keys: &[DkimKeyRecord]) -> bool {
    !keys
        .iter()
        .any(|k| k.domain == key.domain && k.algorithm == key.algorithm && k.active)
}

/// The key records to write to turn a key on or off: itself, and when it
/// is turned on, the other active key of its domain and algorithm turned off.
pub fn set_dkim_active(
    keys: &[DkimKeyRecord],
    domain: &str,
    selector: &str,
    active: bool,
) -> Result<Vec<DkimKeyRecord>, Invalid> {
    let target = keys
        .iter()
        .find(|k| k.domain == domain && k.selector == selector)
        .ok_or_else(|| {
            invalid(
                "selector",
                "no_such_key",
                format!("no key {selector}._domainkey.{domain}"),
            )
        })?;
    let mut writes = Vec::new();
    if active {
        for other in keys
            .iter()
            .filter(|k| k.domain == domain && k.algorithm == target.algorithm && k.active && k.selector != selector)
        {
            writes.push(DkimKeyRecord {
                active: false,
                ..other.clone()
            });
        }
    }
    writes.push(DkimKeyRecord {
        active,
        ..target.clone()
    });
    Ok(writes)
}

#[cfg(test)]
mod bounce_domain_tests {
    use super::*;

    fn tenant(name: &str, domain: &str, bounces: Option<&str>) -> Tenant {
        let mut t = super::tenant(
            NewTenant {
                name: name.into(),
                domains: vec![domain.into()],
                ..NewTenant::default()
            },
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        t.bounces.domain = bounces.map(str::to_string);
        t
    }

    #[test]
    fn a_bounce_domain_is_under_the_tenants_domain_and_its_own() {
        let hr = tenant("hr-dept", "hr.example.edu", None);
        let it = tenant("it-dept", "it.example.edu", Some("bounces.it.example.edu"));
        let all = [hr.clone(), it.clone()];
        assert_eq!(
            bounce_domain("Bounces.HR.example.edu.", &hr, &all),
            Ok("bounces.hr.example.edu".to_string())
        );
        let code = |d: &str, t: &Tenant| bounce_domain(d, t, &all).map_err(|e| e.code);
        assert_eq!(code("hr.example.edu", &hr), Err("bounce_domain_outside_tenant"));
        assert_eq!(code("bounces.example.edu", &hr), Err("bounce_domain_outside_tenant"));
        assert_eq!(code("evilhr.example.edu", &hr), Err("bounce_domain_outside_tenant"));
        assert_eq!(code("bad domain.hr.example.edu", &hr), Err("invalid_domain"));
        let mut it_again = it.clone();
        it_again.name = "it-dept-2".into();
        assert_eq!(code("bounces.it.example.edu", &it_again), Err("bounce_domain_taken"));
        assert_eq!(
            code("bounces.it.example.edu", &it),
            Ok("bounces.it.example.edu".to_string())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(subdomains_only: bool) -> Tenant {
        let new = NewTenant {
            name: "acme".into(),
            domains: vec!["Acme.Test.".into()],
            subdomains_only,
            contact: None,
        };
        tenant(new, 1).expect("valid tenant")
    }

    fn today() -> jiff::civil::Date {
        jiff::civil::date(2026, 12, 1)
    }

    #[test]
    fn a_tenant_is_named_and_has_real_domains() {
        assert_eq!(acme(false).domains, ["acme.test"]);
        let bad = |name: &str, domains: &[&str]| {
            let new = NewTenant {
                name: name.into(),
                domains: domains.iter().map(|d| d.to_string()).collect(),
                ..NewTenant::default()
            };
            tenant(new, 1).expect_err("refused")
        };
        assert_eq!(bad("a", &["x.test"]).field, "name");
        assert_eq!(bad("good", &[]).code, "no_domain");
        assert_eq!(bad("good", &["localhost"]).code, "invalid_domain");
        assert_eq!(bad("good", &["a@b.test"]).code, "invalid_domain");
    }

    #[test]
    fn an_application_sends_only_from_its_tenants_domains() {
        let new = |from: &[&str]| NewApp {
            username: "billing".into(),
            envelope_from: from.iter().map(|s| s.to_string()).collect(),
            allowed_networks: vec!["10.0.0.0/8".into(), "192.0.2.7".into()],
            bulk_rules: true,
            ..NewApp::default()
        };
        let app = application(new(&["Billing@Acme.Test"]), &acme(false), "h".into(), today(), 5).expect("valid");
        assert_eq!(app.envelope_from, ["billing@acme.test"]);
        assert_eq!(app.allowed_networks.len(), 2);
        assert_eq!(app.expires, Some(jiff::civil::date(2027, 12, 1)), "a year by default");
        let foreign = application(new(&["x@other.test"]), &acme(false), "h".into(), today(), 5).expect_err("foreign");
        assert_eq!((foreign.field, foreign.code), ("envelope_from", "foreign_domain"));
        let apex = application(new(&["x@acme.test"]), &acme(true), "h".into(), today(), 5).expect_err("apex");
        assert!(apex.message.contains("subdomains only"), "{apex}");
        let sub = application(new(&["x@hr.acme.test"]), &acme(true), "h".into(), today(), 5);
        assert!(sub.is_ok(), "a subdomain is fine when the apex is not");
        let many: Vec<String> = (0..=MAX_ENVELOPE_FROM).map(|i| format!("a{i}@acme.test")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let too_many = application(new(&many), &acme(false), "h".into(), today(), 5).expect_err("too many");
        assert_eq!(too_many.code, "too_many_senders");
        let mut email = new(&["x@acme.test"]);
        email.username = "x@acme.test".into();
        let refused = application(email, &acme(false), "h".into(), today(), 5).expect_err("e-mail username");
        assert!(refused.message.contains("not an e-mail address"));
        let mut net = new(&["x@acme.test"]);
        net.allowed_networks = vec!["10.0.0.0/33".into()];
        assert_eq!(
            application(net, &acme(false), "h".into(), today(), 5)
                .expect_err("net")
                .code,
            "invalid_network"
        );
    }

    fn key(selector: &str, active: bool) -> DkimKeyRecord {
        DkimKeyRecord {
            domain: "acme.test".into(),
            selector: selector.into(),
            algorithm: crate::dkim::DkimAlgorithm::Ed25519,
            private_key: String::new(),
            public_key: String::new(),
            active,
            created_ms: 1,
        }
    }

    #[test]
    fn one_active_dkim_key_per_domain_and_algorithm() {
        let keys = vec![key("old", true), key("new", false)];
        assert_eq!(new_dkim_key("Acme.Test.", "n2", &keys), Ok("acme.test".to_string()));
        assert_eq!(
            new_dkim_key("acme.test", "old", &keys).expect_err("taken").code,
            "key_exists"
        );
        assert_eq!(
            new_dkim_key("acme.test", "a b", &keys).expect_err("bad").code,
            "invalid_selector"
        );
        assert!(!starts_active(&key("n2", false), &keys));
        let writes = set_dkim_active(&keys, "acme.test", "new", true).expect("activate");
        let states: Vec<(&str, bool)> = writes.iter().map(|k| (k.selector.as_str(), k.active)).collect();
        assert_eq!(states, [("old", false), ("new", true)], "the old one is retired");
        assert_eq!(
            set_dkim_active(&keys, "acme.test", "gone", true)
                .expect_err("none")
                .code,
            "no_such_key"
        );
    }

    #[test]
    fn a_rotation_keeps_the_old_password_until_the_time_set_or_the_next_rotation() {
        let new = NewApp {
            username: "billing".into(),
            envelope_from: vec!["b@acme.test".into()],
            ..NewApp::default()
        };
        let mut app = application(new, &acme(false), "h1".into(), today(), 5).expect("valid");
        rotate_password(&mut app, "h2".into(), Some(1_000), 10).expect("overlap");
        assert_eq!(app.password_hash, "h2");
        assert_eq!(
            app.previous_password
                .as_ref()
                .map(|p| (p.hash.as_str(), p.valid_until_ms)),
            Some(("h1", 1_000))
        );
        assert_eq!(app.credential_version, 1);
        rotate_password(&mut app, "h3".into(), None, 20).expect("no overlap");
        assert_eq!(app.previous_password, None, "the next rotation ends the overlap");
        assert_eq!(
            rotate_password(&mut app, "h4".into(), Some(5), 20)
                .expect_err("past")
                .code,
            "in_the_past"
        );
        let far = Some(20 + MAX_OVERLAP_MS + 1);
        assert_eq!(
            rotate_password(&mut app, "h4".into(), far, 20).expect_err("far").code,
            "out_of_range"
        );
        assert_eq!(app.password_hash, "h3", "a refused rotation changes nothing");
    }

    #[test]
    fn a_smart_host_is_host_and_port() {
        let s = smart_host("[2001:db8::1]:587", true, None, None).expect("valid");
        assert_eq!((s.host.as_str(), s.port), ("2001:db8::1", 587));
        assert_eq!(
            smart_host("relay.test", false, None, None).expect_err("no port").code,
            "invalid_smart_host"
        );
        assert_eq!(
            smart_host("relay.test:x", false, None, None)
                .expect_err("bad port")
                .code,
            "invalid_smart_host"
        );
    }
}
