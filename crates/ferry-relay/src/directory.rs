//! The LDAP client of directory sign-in (the policy is
//! `ferry_core::directory`): search as the service account, check the
//! group, then bind as the person found with their password. Over LDAPS or
//! StartTLS with the configured CA; every operation under a timeout; at
//! most `pool_size` connections, kept between sign-ins for up to a minute
//! (each sign-in binds as the service account again first: the last one
//! left the connection bound as a person). The username is escaped into the filter (RFC 4515)
//! and never into a DN; the password goes only into the person's bind.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::directory::{self, DirectoryConfig, Rejection};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions, ldap_escape};
use tokio::sync::Semaphore;

/// A person the directory vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub dn: String,
    pub tenant: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Answered like a wrong password.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The directory could not answer: `454 4.7.0`, so clients retry.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// LDAP result codes that mean "these credentials are not good"
/// (RFC 4511 A.1): inappropriateAuthentication, invalidCredentials,
/// insufficientAccessRights (an account the server will not let bind),
/// unwillingToPerform (a disabled or locked account, or an empty password).
const REJECTED_BIND: [u32; 4] = [48, 49, 50, 53];

fn unavailable(e: LdapError) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

pub struct Directory {
    config: DirectoryConfig,
    bind_password: String,
    settings: LdapConnSettings,
    timeout: Duration,
    permits: Semaphore,
    /// Kept connections and when each was last used.
    idle: Mutex<Vec<(Ldap, Instant)>>,
}

/// A kept connection unused this long is closed rather than tried: idle
/// connections are what firewalls and NATs drop without a word.
const KEEP_IDLE: Duration = Duration::from_secs(60);

impl Directory {
    /// Reads the service account's password and the CA; an error names the key.
    pub fn new(config: DirectoryConfig) -> Result<Directory, String> {
        let bind_password = match (&config.bind_password, &config.bind_password_file) {
            (Some(password), _) => password.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("auth.directory.bind_password_file {}: {e}", file.display()))?,
            (None, None) => return Err("auth.directory.bind_password: not set".into()),
        };
        let timeout = Duration::from_secs(config.timeout_secs);
        let settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(config.starttls)
            .set_config(Arc::new(tls_config(&config)?));
        Ok(Directory {
            permits: Semaphore::new(config.pool_size),
            idle: Mutex::new(Vec::new()),
            bind_password,
            settings,
            timeout,
            config,
        })
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Signs a person in. If a kept connection fails, every kept one is
    /// dropped (they most likely died together: the directory restarted)
    /// and the sign-in is tried once more on a new connection.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<DirectoryUser, DirectoryError> {
        directory::check_input(username, password, self.config.max_username_length)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| DirectoryError::Unavailable("closing".into()))?;
        let kept = self.kept();
        let reused = kept.is_some();
        let mut ldap = match kept {
            Some(ldap) => ldap,
            None => self.connect().await?,
        };
        let mut result = self.sign_in_on(&mut ldap, username, password).await;
        if reused && matches!(result, Err(DirectoryError::Unavailable(_))) {
            self.idle().clear();
            ldap = self.connect().await?;
            result = self.sign_in_on(&mut ldap, username, password).await;
        }
        if !matches!(result, Err(DirectoryError::Unavailable(_))) {
            self.idle().push((ldap, Instant::now()));
        }
        result
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(Ldap, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used kept connection still young enough.
    fn kept(&self) -> Option<Ldap> {
        let mut idle = self.idle();
        idle.retain(|(_, used)| used.elapsed() < KEEP_IDLE);
        idle.pop().map(|(ldap, _)| ldap)
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let (conn, ldap) = LdapConnAsync::with_settings(self.settings.clone(), &self.config.url)
            .await
            .map_err(unavailable)?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    async fn sign_in_on(
        &self,
        ldap: &mut Ldap,
        username: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError> {
        let c = &self.config;
        let service = ldap
            .with_timeout(self.timeout)
            .simple_bind(&c.bind_dn, &self.bind_password)
            .await
            .map_err(unavailable)?;
        if service.rc != 0 {
            return Err(DirectoryError::Unavailable(format!(
                "the service account {} cannot bind: {} {}",
                c.bind_dn, service.rc, service.text
            )));
        }
        let entry = self.find(ldap, username).await?;
        if let Some(group) = &c.required_group {
            self.check_member(ldap, group, &entry.dn).await?;
        }
        let tenant = directory::tenant_of(c, &entry.attrs)?;
        let addresses = directory::addresses_of(c, &entry.attrs)?;
        let bound = ldap
            .with_timeout(self.timeout)
            .simple_bind(&entry.dn, password)
            .await
            .map_err(unavailable)?;
        match bound.rc {
            0 => Ok(DirectoryUser {
                dn: entry.dn,
                tenant,
                addresses,
            }),
            rc if REJECTED_BIND.contains(&rc) => Err(Rejection::WrongPassword.into()),
            rc => Err(DirectoryError::Unavailable(format!(
                "bind answered {rc} {}",
                bound.text
            ))),
        }
    }

    /// The one entry the username names.
    async fn find(&self, ldap: &mut Ldap, username: &str) -> Result<SearchEntry, DirectoryError> {
        let c = &self.config;
        let filter = user_filter(&c.user_filter, username);
        let mut attrs: Vec<&str> = vec![&c.mail_attribute];
        attrs.extend(c.alias_attributes.iter().map(String::as_str));
        attrs.extend(c.tenant_attribute.as_deref());
        // Two are enough to know the username is not one person's.
        let found = ldap
            .with_timeout(self.timeout)
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(&c.base_dn, Scope::Subtree, &filter, attrs)
            .await
            .map_err(unavailable)?;
        let mut entries = found.0;
        match (found.1.rc, entries.len()) {
            (0, 0) => Err(Rejection::NotFound.into()),
            (0, 1) => Ok(SearchEntry::construct(entries.remove(0))),
            // More than one, or more than the size limit (sizeLimitExceeded).
            (0 | 4, _) => Err(Rejection::Ambiguous.into()),
            (rc, _) => Err(DirectoryError::Unavailable(format!(
                "search answered {rc} {}",
                found.1.text
            ))),
        }
    }

    /// Whether the group lists `dn` among its members, asked of the group
    /// itself (no memberOf overlay needed).
    async fn check_member(&self, ldap: &mut Ldap, group: &str, dn: &str) -> Result<(), DirectoryError> {
        let filter = member_filter(&self.config.group_member_attribute, dn);
        let found = ldap
            .with_timeout(self.timeout)
            .search(group, Scope::Base, &filter, vec!["1.1"])
            .await
            .map_err(unavailable)?;
        match found.1.rc {
            0 if !found.0.is_empty() => Ok(()),
            // 32 noSuchObject: the group itself is gone; nobody is in it.
            0 | 32 => Err(Rejection::NotInGroup(group.to_string()).into()),
            rc => Err(DirectoryError::Unavailable(format!(
                "group search answered {rc} {}",
                found.1.text
            ))),
        }
    }
}

/// The search for a person: `template` (`auth.directory.user_filter`) with
/// `username` escaped (RFC 4515) wherever `{username}` stands, so no
/// username can change the filter's structure.
pub fn user_filter(template: &str, username: &str) -> String {
    template.replace("{username}", &ldap_escape(username))
}

/// The search of a group for one member: `(attribute=dn)`, the DN escaped.
pub fn member_filter(attribute: &str, dn: &str) -> String {
    format!("({attribute}={})", ldap_escape(dn))
}

/// TLS to the directory: its certificate verified against `ca_file`, or the
/// system's roots.
fn tls_config(config: &DirectoryConfig) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(file) => {
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(file)
                .and_then(|it| it.collect())
                .map_err(|e| format!("auth.directory.ca_file {}: {e}", file.display()))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("auth.directory.ca_file {}: {e}", file.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| format!("auth.directory: TLS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_cannot_change_the_filter() {
        assert_eq!(
            user_filter("(&(uid={username})(objectClass=person))", "alice"),
            "(&(uid=alice)(objectClass=person))"
        );
        assert_eq!(
            user_filter("(uid={username})", "*)(uid=*))(|(uid=*"),
            r"(uid=\2a\29\28uid=\2a\29\29\28|\28uid=\2a)"
        );
        assert_eq!(member_filter("member", r"cn=a\,b (x)"), r"(member=cn=a\5c,b \28x\29)");
    }
}
