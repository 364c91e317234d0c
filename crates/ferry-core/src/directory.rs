//! Directory sign-in: people and services that authenticate with their
//! organisation's LDAP account rather than Ferry application credentials.
//! This module is the policy, without IO: the configuration, which input
//! never reaches the directory, which tenant a person counts under and
//! which addresses they may send as, and the application record that
//! stands for them (so metering, reports, explain and the admin API treat
//! a directory user like an application of its tenant). The LDAP client
//! is `ferry_relay::directory`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::tenant::{AppLimits, Application, Caps};

/// `auth.directory`: where people's accounts are, and how they map to tenants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// `ldaps://host:636`, or `ldap://host:389` with `starttls`.
    pub url: String,
    pub starttls: bool,
    /// Allows `ldap://` without StartTLS: passwords in clear. Tests only.
    pub allow_plaintext: bool,
    /// The CA that signed the directory's certificate (else the system roots).
    pub ca_file: Option<PathBuf>,
    /// The service account that searches.
    pub bind_dn: String,
    /// Its password (or `bind_password_file`; `FERRY__AUTH__DIRECTORY__BIND_PASSWORD`).
    pub bind_password: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    /// Where people are searched.
    pub base_dn: String,
    /// `{username}` is replaced by the username, escaped (RFC 4515).
    pub user_filter: String,
    /// Only members of this group (its DN) may sign in.
    pub required_group: Option<String>,
    /// The group's attribute listing its members' DNs.
    pub group_member_attribute: String,
    /// The person's own address.
    pub mail_attribute: String,
    /// Attributes holding the person's other addresses.
    pub alias_attributes: Vec<String>,
    /// The tenant everyone counts under (or the fallback of `tenant_attribute`).
    pub tenant: Option<String>,
    /// An attribute whose value chooses the tenant through `tenant_map`
    /// (e.g. `ou`, or `memberOf` with group DNs as keys).
    pub tenant_attribute: Option<String>,
    pub tenant_map: BTreeMap<String, String>,
    /// Where directory users may connect from (default: anywhere).
    pub allowed_networks: Vec<IpNet>,
    /// Connections to the directory held at once.
    pub pool_size: usize,
    /// Each connect, bind and search.
    pub timeout_secs: u64,
    /// Longer usernames are refused without asking the directory.
    pub max_username_length: usize,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            url: String::new(),
            starttls: false,
            allow_plaintext: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password: None,
            bind_password_file: None,
            base_dn: String::new(),
            user_filter: "(&(uid={username})(objectClass=person))".into(),
            required_group: None,
            group_member_attribute: "member".into(),
            mail_attribute: "mail".into(),
            alias_attributes: Vec::new(),
            tenant: None,
            tenant_attribute: None,
            tenant_map: BTreeMap::new(),
            allowed_networks: ["0.0.0.0/0", "::/0"].iter().filter_map(|n| n.parse().ok()).collect(),
            pool_size: 4,
            timeout_secs: 5,
            max_username_length: 64,
        }
    }
}

impl DirectoryConfig {
    /// The checks that need more than one field: (key, problem).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let plain = self.url.starts_with("ldap://");
        if !(plain || self.url.starts_with("ldaps://")) {
            return Err(("auth.directory.url", "must be an ldaps:// or ldap:// URL".into()));
        }
        if plain && !self.starttls && !self.allow_plaintext {
            return Err((
                "auth.directory.url",
                "ldap:// sends passwords in clear: use ldaps://, or set auth.directory.starttls".into(),
            ));
        }
        if self.url.starts_with("ldaps://") && self.starttls {
            return Err(("auth.directory.starttls", "ldaps:// is TLS already".into()));
        }
        if self.bind_dn.is_empty() {
            return Err((
                "auth.directory.bind_dn",
                "the service account that searches is needed".into(),
            ));
        }
        if self.bind_password.is_some() == self.bind_password_file.is_some() {
            return Err((
                "auth.directory.bind_password",
                "set one of auth.directory.bind_password and auth.directory.bind_password_file".into(),
            ));
        }
        if self.base_dn.is_empty() {
            return Err(("auth.directory.base_dn", "where people are searched is needed".into()));
        }
        if !self.user_filter.contains("{username}") {
            return Err(("auth.directory.user_filter", "must contain {username}".into()));
        }
        if self.tenant.is_none() && self.tenant_attribute.is_none() {
            return Err((
                "auth.directory.tenant",
                "set auth.directory.tenant, or auth.directory.tenant_attribute with tenant_map".into(),
            ));
        }
        for (key, value) in [
            ("auth.directory.pool_size", self.pool_size as u64),
            ("auth.directory.timeout_secs", self.timeout_secs),
            ("auth.directory.max_username_length", self.max_username_length as u64),
        ] {
            if value == 0 {
                return Err((key, "must be greater than 0".into()));
            }
        }
        Ok(())
    }
}

/// Why the directory did not sign someone in. Every one is answered like a
/// wrong password (`535 5.7.8`); the reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("username refused before asking the directory (empty, too long, or with spaces or control characters)")]
    BadUsername,
    #[error("empty password (an unauthenticated bind)")]
    EmptyPassword,
    #[error("no such person in the directory")]
    NotFound,
    #[error("the username names several entries")]
    Ambiguous,
    #[error("wrong password")]
    WrongPassword,
    #[error("not a member of {0}")]
    NotInGroup(String),
    #[error("no tenant for {0}")]
    NoTenant(String),
    #[error("no address in the directory")]
    NoAddress,
}

/// What never reaches the directory: an empty password (many servers take
/// it as an anonymous bind and say yes), a username that is empty, longer
/// than the bound, or has control characters.
pub fn check_input(username: &str, password: &str, max_length: usize) -> Result<(), Rejection> {
    // Whitespace too: the directory would ignore it, and " alice" would
    // be a second record of alice.
    let odd = |c: char| c.is_control() || c.is_whitespace();
    if username.is_empty() || username.chars().count() > max_length || username.chars().any(odd) {
        return Err(Rejection::BadUsername);
    }
    if password.is_empty() {
        return Err(Rejection::EmptyPassword);
    }
    Ok(())
}

/// An attribute's values, whatever the case the server wrote its name in.
fn values<'a>(attrs: &'a HashMap<String, Vec<String>>, name: &str) -> impl Iterator<Item = &'a String> {
    attrs
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter())
}

/// The tenant a person counts under: the first value of the tenant
/// attribute that the map names, else the fixed tenant.
pub fn tenant_of(config: &DirectoryConfig, attrs: &HashMap<String, Vec<String>>) -> Result<String, Rejection> {
    let mapped = config.tenant_attribute.as_deref().and_then(|attr| {
        values(attrs, attr).find_map(|v| {
            config
                .tenant_map
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(v))
                .map(|(_, tenant)| tenant.clone())
        })
    });
    mapped
        .or_else(|| config.tenant.clone())
        .ok_or_else(|| Rejection::NoTenant(config.tenant_attribute.clone().unwrap_or_default()))
}

/// The addresses a person may send as: their mail attribute's and their
/// aliases', lower case, each once.
pub fn addresses_of(config: &DirectoryConfig, attrs: &HashMap<String, Vec<String>>) -> Result<Vec<String>, Rejection> {
    let mut all: Vec<String> = std::iter::once(config.mail_attribute.as_str())
        .chain(config.alias_attributes.iter().map(String::as_str))
        .flat_map(|attr| values(attrs, attr))
        .map(|a| a.trim().to_lowercase())
        .filter(|a| a.contains('@'))
        .collect();
    let mut seen = std::collections::HashSet::new();
    all.retain(|a| seen.insert(a.clone()));
    if all.is_empty() {
        return Err(Rejection::NoAddress);
    }
    Ok(all)
}

/// A person as the application that stands for them: their tenant, their
/// addresses, no password of Ferry's. An existing record keeps what an
/// admin set on it (enabled, limits, caps); the rest follows the directory.
pub fn application(
    username: &str,
    dn: &str,
    tenant: String,
    addresses: Vec<String>,
    config: &DirectoryConfig,
    stored: Option<&Application>,
    now_ms: u64,
) -> Application {
    let base = stored.cloned().unwrap_or_else(|| Application {
        username: username.to_string(),
        tenant: tenant.clone(),
        password_hash: String::new(),
        envelope_from: Vec::new(),
        header_from: Vec::new(),
        allowed_networks: Vec::new(),
        limits: AppLimits::default(),
        expires: None,
        enabled: true,
        created_ms: now_ms,
        credential_version: 0,
        caps: Caps::default(),
        bulk_rules: true,
        previous_password: None,
        directory_dn: None,
        events_webhook: None,
    });
    Application {
        tenant,
        envelope_from: addresses,
        header_from: Vec::new(),
        allowed_networks: config.allowed_networks.clone(),
        directory_dn: Some(dn.to_string()),
        events_webhook: None,
        password_hash: String::new(),
        previous_password: None,
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn config() -> DirectoryConfig {
        DirectoryConfig {
            url: "ldaps://ldap.example.edu".into(),
            bind_dn: "cn=ferry,dc=example,dc=edu".into(),
            bind_password: Some("s".into()),
            base_dn: "ou=people,dc=example,dc=edu".into(),
            alias_attributes: vec!["mailLocalAddress".into()],
            tenant_attribute: Some("ou".into()),
            tenant_map: BTreeMap::from([("Physics".into(), "physics".into())]),
            ..DirectoryConfig::default()
        }
    }

    #[test]
    fn input_that_never_reaches_the_directory() {
        assert_eq!(check_input("alice", "", 64), Err(Rejection::EmptyPassword));
        assert_eq!(check_input("", "pw", 64), Err(Rejection::BadUsername));
        assert_eq!(check_input(&"a".repeat(65), "pw", 64), Err(Rejection::BadUsername));
        assert_eq!(check_input("al\0ice", "pw", 64), Err(Rejection::BadUsername));
        assert_eq!(check_input(" alice", "pw", 64), Err(Rejection::BadUsername));
        assert_eq!(check_input("*)(uid=*", "pw", 64), Ok(()), "escaped, not refused");
    }

    #[test]
    fn tenant_by_attribute_then_the_fixed_one() {
        let c = config();
        assert_eq!(tenant_of(&c, &attrs(&[("OU", &["physics"])])), Ok("physics".into()));
        assert!(matches!(
            tenant_of(&c, &attrs(&[("ou", &["Law"])])),
            Err(Rejection::NoTenant(_))
        ));
        let fallback = DirectoryConfig {
            tenant: Some("campus".into()),
            ..config()
        };
        assert_eq!(tenant_of(&fallback, &attrs(&[("ou", &["Law"])])), Ok("campus".into()));
    }

    #[test]
    fn own_address_and_aliases_once_in_lower_case() {
        let a = attrs(&[
            ("mail", &["Alice@Physics.example.edu"]),
            (
                "mailLocalAddress",
                &["alice.smith@physics.example.edu", "alice@physics.example.edu"],
            ),
        ]);
        assert_eq!(
            addresses_of(&config(), &a),
            Ok(vec![
                "alice@physics.example.edu".to_string(),
                "alice.smith@physics.example.edu".to_string()
            ])
        );
        assert_eq!(addresses_of(&config(), &attrs(&[])), Err(Rejection::NoAddress));
    }

    #[test]
    fn the_configuration_refuses_clear_passwords_and_names_the_key() {
        assert!(config().validate().is_ok());
        let plain = DirectoryConfig {
            url: "ldap://ldap.example.edu".into(),
            ..config()
        };
        assert_eq!(plain.validate().map_err(|e| e.0), Err("auth.directory.url"));
        let starttls = DirectoryConfig {
            starttls: true,
            ..plain
        };
        assert!(starttls.validate().is_ok());
        let no_filter = DirectoryConfig {
            user_filter: "(uid=alice)".into(),
            ..config()
        };
        assert_eq!(no_filter.validate().map_err(|e| e.0), Err("auth.directory.user_filter"));
    }
}
