//! The onboarding data model: an organisation's tenants and their applications.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The most envelope-From addresses one application may send as.
pub const MAX_ENVELOPE_FROM: usize = 10;

/// A department or group; owns applications and the domains they send from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    /// Domains the tenant's applications may send from, lower case.
    pub domains: Vec<String>,
    /// When true, only subdomains of each domain are allowed, never the apex
    /// (a campus policy: `dept.example.edu` yes, `example.edu` no).
    pub subdomains_only: bool,
    /// Who is told about this tenant's usage.
    pub contact: Option<String>,
    pub created_ms: u64,
    /// Where this tenant's mail goes; `Default` follows `delivery.default_route`.
    #[serde(default)]
    pub route: Route,
    /// Its share of the contract (for alerts and charge-back).
    #[serde(default)]
    pub allocation: crate::chargeback::Allocation,
    /// Hard limits on the whole tenant.
    #[serde(default)]
    pub caps: Caps,
    /// The share (percent) of its accepted messages kept as samples; none
    /// by default (see `ferry_core::sample`).
    #[serde(default)]
    pub sample_percent: u8,
    /// Its return path, reports and suppression list.
    #[serde(default)]
    pub bounces: Bounces,
    /// Where all its applications' events are POSTed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_webhook: Option<crate::event::EventsWebhook>,
    /// What happens to an application of its whose behaviour raises an
    /// incident (see `ferry_core::incident`).
    #[serde(default)]
    pub incident_policy: crate::incident::Policy,
}

/// What becomes of bounces and complaints about a tenant's mail (see
/// `ferry_core::event` and `ferry_core::suppression`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Bounces {
    /// A domain whose MX is Ferry's inbound listener (`bounces.hr.example.edu`):
    /// the envelope-From of the tenant's mail becomes a signed address
    /// under it for each recipient, so reports come back to Ferry. None:
    /// the application's own envelope-From, as sent.
    pub domain: Option<String>,
    /// Forward each report taken in to the application's own envelope-From,
    /// so a team that reads its bounce mailbox loses nothing.
    pub forward: bool,
    /// Mail to a suppressed recipient.
    pub suppressed: SuppressedMail,
}

/// What happens to mail for a recipient on the tenant's suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SuppressedMail {
    /// `550 5.1.1` at `RCPT`, saying since when and why.
    #[default]
    Refuse,
    /// Accepted, not sent, logged as a `suppressed` event (for
    /// applications that fail on a refused recipient).
    Drop,
}

/// Hard limits, in the contract's unit: beyond them mail is deferred or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Caps {
    pub per_minute: Option<u64>,
    pub per_hour: Option<u64>,
    pub per_year: Option<u64>,
    /// When the yearly cap is used up: refuse (550 5.7.1) rather than defer (451 4.7.1).
    #[serde(default)]
    pub reject_when_year_exhausted: bool,
}

impl Caps {
    pub fn is_empty(&self) -> bool {
        self.per_minute.is_none() && self.per_hour.is_none() && self.per_year.is_none()
    }
}

/// A tenant's route to the outside world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Route {
    #[default]
    Default,
    /// MX lookup per recipient domain.
    Mx,
    /// Write files instead of delivering (development).
    Capture,
    /// Everything through one relay host.
    SmartHost(SmartHost),
}

/// A relay host a tenant's mail goes through.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartHost {
    pub host: String,
    pub port: u16,
    /// Refuse to send unless STARTTLS succeeds with a verified certificate.
    pub tls_required: bool,
    pub username: Option<String>,
    /// Needed in clear to authenticate to the smart host.
    pub password: Option<String>,
}

impl std::fmt::Debug for SmartHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartHost")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls_required", &self.tls_required)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Tenant {
    /// Whether `domain` is one of the tenant's sender domains under its policy.
    pub fn owns_domain(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.domains.iter().any(|own| {
            let sub = domain.len() > own.len()
                && domain.ends_with(own.as_str())
                && domain.as_bytes()[domain.len() - own.len() - 1] == b'.';
            sub || (!self.subdomains_only && domain == *own)
        })
    }
}

/// Per-application limits, enforced by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLimits {
    pub max_message_bytes: usize,
    pub max_messages_per_session: u32,
    pub max_recipients: usize,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            max_message_bytes: 5_000_000,
            max_messages_per_session: 100,
            max_recipients: 50,
        }
    }
}

/// One set of SMTP credentials for one application of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// The SMTP AUTH username: not an e-mail address.
    pub username: String,
    pub tenant: String,
    /// argon2id PHC string; never the password.
    pub password_hash: String,
    /// Exact envelope-From addresses (at most [`MAX_ENVELOPE_FROM`]), lower case.
    pub envelope_from: Vec<String>,
    /// Header-From addresses; empty means the same as `envelope_from`.
    pub header_from: Vec<String>,
    /// Source networks the application may connect from.
    pub allowed_networks: Vec<IpNet>,
    pub limits: AppLimits,
    /// Relay permission ends after this day (UTC), renewed yearly.
    pub expires: Option<jiff::civil::Date>,
    pub enabled: bool,
    pub created_ms: u64,
    /// Bumped on every password change or disable: invalidates cached logins.
    pub credential_version: u32,
    /// Hard limits on this application alone.
    #[serde(default)]
    pub caps: Caps,
    /// Bulk mail must carry RFC 8058 one-click unsubscribe (on unless turned off).
    #[serde(default = "yes")]
    pub bulk_rules: bool,
    /// The password before the last rotation, still accepted for a while so
    /// an application can be rolled over with no failed sends.
    #[serde(default)]
    pub previous_password: Option<PreviousPassword>,
    /// For a person of the directory (see `ferry_core::directory`): their
    /// entry's DN. Such an application has no password of Ferry's: the
    /// directory checks it at each sign-in.
    #[serde(default)]
    pub directory_dn: Option<String>,
    /// Where this application's events are POSTed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_webhook: Option<crate::event::EventsWebhook>,
}

/// A rotated-away password and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousPassword {
    /// argon2id PHC string.
    pub hash: String,
    pub valid_until_ms: u64,
}

fn yes() -> bool {
    true
}

impl Application {
    pub fn header_from_allowed(&self) -> &[String] {
        if self.header_from.is_empty() {
            &self.envelope_from
        } else {
            &self.header_from
        }
    }
}

/// Checks a username for onboarding: short, printable, and not an address.
pub fn valid_username(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// Sample records for tests in this crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn tenant(name: &str) -> Tenant {
        Tenant {
            name: name.into(),
            domains: vec!["example.edu".into()],
            subdomains_only: false,
            contact: None,
            created_ms: 0,
            route: Route::Default,
            allocation: Default::default(),
            caps: Caps::default(),
            sample_percent: 0,
            bounces: Default::default(),
            events_webhook: None,
            incident_policy: Default::default(),
        }
    }

    pub fn app(username: &str, tenant: &str) -> Application {
        Application {
            username: username.into(),
            tenant: tenant.into(),
            password_hash: String::new(),
            envelope_from: vec![],
            header_from: vec![],
            allowed_networks: vec![],
            limits: AppLimits::default(),
            expires: None,
            enabled: true,
            created_ms: 0,
            credential_version: 0,
            caps: Caps::default(),
            bulk_rules: true,
            previous_password: None,
            directory_dn: None,
            events_webhook: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(subdomains_only: bool) -> Tenant {
        Tenant {
            name: "doit".into(),
            domains: vec!["example.edu".into()],
            subdomains_only,
            contact: None,
            created_ms: 0,
            route: Route::Default,
            allocation: Default::default(),
            caps: Caps::default(),
            sample_percent: 0,
            bounces: Default::default(),
            events_webhook: None,
            incident_policy: Default::default(),
        }
    }

    #[test]
    fn domain_rules() {
        assert!(tenant(false).owns_domain("example.edu"));
        assert!(tenant(false).owns_domain("Dept.Example.edu"));
        assert!(!tenant(true).owns_domain("example.edu"));
        assert!(tenant(true).owns_domain("dept.example.edu"));
        assert!(!tenant(false).owns_domain("badexample.edu"));
        assert!(!tenant(false).owns_domain("example.edu.evil.test"));
    }

    #[test]
    fn usernames_are_not_addresses() {
        assert!(valid_username("payroll-notices"));
        assert!(!valid_username("payroll@example.edu"));
        assert!(!valid_username("ab"));
    }
}
