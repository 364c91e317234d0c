//! SMTP AUTH against the directory: argon2id verification off the async
//! workers with a bound on concurrent verifications, the same work and the
//! same answer for unknown users as for wrong passwords, the lockout rules
//! of `ferry_core::lockout` counted in the store (so they hold across the
//! nodes of a cluster), and a short-lived per-node cache of successful
//! verifications so an application that opens many connections does not
//! pay argon2 each time. The cache is keyed by the application's credential
//! version, read from the store at every sign-in: a password change or a
//! disable on any node is seen by every node at the next sign-in. Usernames
//! that are not applications are asked of the LDAP directory when one is
//! configured (`crate::directory`): the person becomes an application of
//! their tenant, with the same cache and lockout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHashString, PasswordVerifier};
use ferry_admin::secrets::{hash_password, random_secret};
use ferry_core::directory::Rejection;
use ferry_core::lockout::{self, Lockout, LockoutKind, LockoutRules, SignInState};
use ferry_core::policy::{LoginRefusal, check_login};
use ferry_core::refusal::{AuthDetail, Refusal};
use ferry_core::{Application, Clock, Tenant};
use ferry_smtp::Credentials;
use ferry_store::Store;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::directory::{Directory, DirectoryError};

/// Why AUTH failed. Every variant but [`AuthFailure::LockedOut`] looks the
/// same to the client (`535 5.7.8`); the detail is for the log.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    #[error("{0}")]
    Refused(#[from] LoginRefusal),
    #[error("too many failures; locked out ({})", .0.name())]
    LockedOut(LockoutKind),
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

impl AuthFailure {
    /// The rule that refused, with its reply.
    pub fn refusal(&self) -> Refusal {
        match self {
            AuthFailure::UnknownUser => Refusal::AuthenticationFailed(AuthDetail::UnknownUser),
            AuthFailure::WrongPassword => Refusal::AuthenticationFailed(AuthDetail::WrongPassword),
            AuthFailure::Refused(why) => Refusal::AuthenticationFailed(AuthDetail::Refused(why.clone())),
            AuthFailure::LockedOut(_) => Refusal::LockedOut,
            AuthFailure::Unavailable(why) => Refusal::AuthenticationUnavailable(why.clone()),
        }
    }
}

/// How long a node refuses a locked-out address at connect before it asks
/// the store again.
const ADDRESS_RECHECK_MS: u64 = 60_000;

/// A refused sign-in, with the application the username names (its tenant
/// and username), already read, so counting the refusal reads nothing again.
#[derive(Debug)]
pub struct SignInRefused {
    pub failure: AuthFailure,
    pub owner: Option<(String, String)>,
}

/// Verification, lockout and cache settings.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    pub max_concurrent_verifications: usize,
    /// Longest wait for a place among them: past it, `454 4.7.0`.
    pub verification_wait: Duration,
    pub lockout: LockoutRules,
    pub cache_ms: u64,
}

/// The hash an unknown username is checked against, so that it costs what
/// a wrong password costs. A parsed argon2 hash: it cannot be empty.
struct Decoy(PasswordHashString);

impl Decoy {
    fn new() -> Result<Decoy, String> {
        let hash = hash_password(&random_secret()).map_err(|e| e.to_string())?;
        PasswordHashString::new(&hash).map(Decoy).map_err(|e| e.to_string())
    }
}

pub struct Authenticator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: AuthSettings,
    verifications: Arc<Semaphore>,
    decoy: Decoy,
    /// Keyed so the cache never holds anything a password could be recovered from.
    cache_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], (u32, u64)>>,
    /// Addresses locked out for spraying, as this node last learnt from
    /// the store: refused at connect until then, without a store read.
    refused_addresses: Mutex<HashMap<IpAddr, u64>>,
    /// `ferry_auth_lockouts_total{kind}`.
    lockouts: prometheus::IntCounterVec,
    /// People's accounts, for usernames that are not Ferry applications.
    directory: Option<Directory>,
    /// (application, address) pairs this node has told the store of, so
    /// that a source is written once per node, not at every sign-in.
    seen_sources: Mutex<std::collections::HashSet<(String, IpAddr)>>,
}

/// The most pairs `seen_sources` holds before it starts afresh.
const MAX_SEEN_SOURCES: usize = 100_000;

/// A successful login: the application and its tenant.
pub struct Login {
    pub app: Application,
    pub tenant: Tenant,
}

impl Authenticator {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: AuthSettings,
        lockouts: prometheus::IntCounterVec,
    ) -> Result<Self, String> {
        Ok(Authenticator {
            store,
            clock,
            verifications: Arc::new(Semaphore::new(settings.max_concurrent_verifications)),
            decoy: Decoy::new()?,
            cache_key: rand::random(),
            cache: Mutex::new(HashMap::new()),
            refused_addresses: Mutex::new(HashMap::new()),
            lockouts,
            settings,
            directory: None,
            seen_sources: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// Signs in usernames that are not Ferry applications against `directory`.
    pub fn with_directory(mut self, directory: Option<Directory>) -> Self {
        self.directory = directory;
        self
    }

    /// Whether `ip` is locked out for spraying (answered at connect).
    pub fn address_refused(&self, ip: IpAddr) -> bool {
        let until = lock(&self.refused_addresses)
            .get(&ferry_core::policy::canonical_ip(ip))
            .copied();
        until.is_some_and(|until| until > self.clock.now_ms())
    }

    pub async fn authenticate(&self, credentials: &Credentials, ip: IpAddr) -> Result<Login, SignInRefused> {
        let now = self.clock.now_ms();
        let unavailable = |e: ferry_store::StoreError| SignInRefused {
            failure: AuthFailure::Unavailable(e.to_string()),
            owner: None,
        };
        let (credentials, app) = self.identify(credentials).await.map_err(unavailable)?;
        let credentials = &credentials;
        let user = lockout::bounded(&credentials.username);
        let state = self.store.sign_in_state(user, ip).await.map_err(unavailable)?;
        let owner = app.as_ref().map(|a| (a.tenant.clone(), a.username.clone()));
        let result = match self.locked(&state, app.as_ref(), ip, now) {
            Some(kind) => Err(AuthFailure::LockedOut(kind)),
            None => self.check(credentials, app, ip, now).await,
        };
        match &result {
            Err(AuthFailure::UnknownUser | AuthFailure::WrongPassword) => {
                self.count_failure(user, ip, &state, now).await;
            }
            Ok(login) => {
                if state.pair.failures > 0
                    && let Err(e) = self.store.clear_pair(user, ip).await
                {
                    tracing::warn!(error = %e, "cannot clear the failed sign-ins of a signed-in pair");
                }
                self.observe(&login.app, ip, &state, now).await;
            }
            _ => {}
        }
        result.map_err(|failure| SignInRefused { failure, owner })
    }

    /// Tells the incident watch (through the store) of a sign-in worth its
    /// attention: one after a password-guessing lockout (of this address
    /// on it, or of its username from anywhere when this address is not
    /// one of its own networks), and one from an address new to an
    /// application allowed from wide networks. Each address once per node.
    async fn observe(&self, app: &Application, ip: IpAddr, state: &SignInState, now: u64) {
        let guessed =
            state.pair.locked_until_ms > 0 || (state.username.locked_until_ms > 0 && !lockout::own_address(app, ip));
        if guessed && let Err(e) = self.store.note_after_lockout(&app.tenant, &app.username, now).await {
            tracing::warn!(error = %e, "cannot note a sign-in after a lockout");
        }
        if !ferry_core::incident::watches_sources(&app.allowed_networks) {
            return;
        }
        let key = (app.username.clone(), ferry_core::policy::canonical_ip(ip));
        {
            let mut seen = lock(&self.seen_sources);
            if seen.len() >= MAX_SEEN_SOURCES {
                seen.clear();
            }
            if !seen.insert(key.clone()) {
                return;
            }
        }
        if let Err(e) = self.store.note_source(&app.tenant, &app.username, key.1, now).await {
            tracing::warn!(error = %e, "cannot note a sign-in's source address");
            lock(&self.seen_sources).remove(&key);
        }
    }

    /// The record a username names, and the credentials to check. A
    /// person of the directory is known by their username in lower case
    /// (directories match `uid` regardless of case): `Alice` and `alice`
    /// are one person, one record, one lockout counter. A Ferry
    /// application's name is taken as typed.
    async fn identify(
        &self,
        credentials: &Credentials,
    ) -> Result<(Credentials, Option<Application>), ferry_store::StoreError> {
        let exact = self.store.app(&credentials.username).await?;
        let person = self.directory.is_some() && exact.as_ref().is_none_or(|a| a.directory_dn.is_some());
        let canonical = credentials.username.to_lowercase();
        if !person || canonical == credentials.username {
            return Ok((credentials.clone(), exact));
        }
        let app = self.store.app(&canonical).await?;
        let credentials = Credentials {
            username: canonical,
            password: credentials.password.clone(),
        };
        Ok((credentials, app))
    }

    /// The lockout that refuses this attempt before any password is checked.
    fn locked(&self, state: &SignInState, app: Option<&Application>, ip: IpAddr, now: u64) -> Option<LockoutKind> {
        if state.address.locked(now) {
            self.refuse_address(ip, state.address.locked_until_ms);
            return Some(LockoutKind::Address);
        }
        if state.pair.locked(now) {
            return Some(LockoutKind::Pair);
        }
        let own = app.is_some_and(|app| lockout::own_address(app, ip));
        (state.username.locked(now) && !own).then_some(LockoutKind::Username)
    }

    /// Counts the failure in the store, logs and counts the lockouts it
    /// started, and holds the answer back when the address has failed often.
    async fn count_failure(&self, user: &str, ip: IpAddr, before: &SignInState, now: u64) {
        let rules = &self.settings.lockout;
        match self.store.count_failure(user, ip, rules, now).await {
            Ok(started) => started.iter().for_each(|l| self.started(l)),
            Err(e) => tracing::warn!(error = %e, "cannot count a failed sign-in"),
        }
        let failures = before.address.current(rules.address, now) + 1;
        let delay = lockout::delay_ms(failures, rules.address_slow_after);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }

    fn started(&self, lockout: &Lockout) {
        self.lockouts.with_label_values(&[lockout.kind.name()]).inc();
        tracing::warn!(
            kind = lockout.kind.name(),
            user = lockout.username.as_deref().unwrap_or(""),
            address = %lockout.address.map(|a| a.to_string()).unwrap_or_default(),
            failures = lockout.failures,
            until_ms = lockout.until_ms,
            "sign-in lockout started"
        );
        if let (LockoutKind::Address, Some(ip)) = (lockout.kind, lockout.address) {
            self.refuse_address(ip, lockout.until_ms);
        }
    }

    /// Remembered for at most [`ADDRESS_RECHECK_MS`]: then the next sign-in
    /// reads the store again, so a lockout lifted on any node stops being
    /// refused at connect on this one within a minute.
    fn refuse_address(&self, ip: IpAddr, until_ms: u64) {
        let now = self.clock.now_ms();
        let mut refused = lock(&self.refused_addresses);
        // Forgotten here, off the accept path, which only looks one up.
        refused.retain(|_, until| *until > now);
        refused.insert(
            ferry_core::policy::canonical_ip(ip),
            until_ms.min(now + ADDRESS_RECHECK_MS),
        );
    }

    async fn check(
        &self,
        credentials: &Credentials,
        app: Option<Application>,
        ip: IpAddr,
        now: u64,
    ) -> Result<Login, AuthFailure> {
        let unavailable = |e: ferry_store::StoreError| AuthFailure::Unavailable(e.to_string());
        let is_person = app.as_ref().is_none_or(|a| a.directory_dn.is_some());
        let app = match (&self.directory, app) {
            // Boxed: the LDAP client's futures are large, and unboxed they
            // would make every session's future (idle ones too) that much larger.
            (Some(directory), app) if is_person => {
                Box::pin(self.check_directory(directory, credentials, app, now)).await?
            }
            (_, Some(app)) if app.directory_dn.is_none() => {
                let cache_key = self.cache_entry_key(credentials);
                if !self.cached(&cache_key, app.credential_version, now) {
                    let remember_until = self
                        .verify_current_or_previous(&app, &credentials.password, now)
                        .await?;
                    lock(&self.cache).insert(cache_key, (app.credential_version, remember_until));
                }
                app
            }
            // Unknown, or a person of a directory no longer configured.
            _ => {
                self.verify(self.decoy.0.as_str(), &credentials.password).await?;
                return Err(AuthFailure::UnknownUser);
            }
        };
        let tenant = self.store.tenant(&app.tenant).await.map_err(unavailable)?;
        check_login(&app, tenant.as_ref(), ip, ferry_core::clock::utc_date(now))?;
        let tenant = tenant.ok_or_else(|| AuthFailure::Refused(LoginRefusal::NoTenant(app.tenant.clone())))?;
        Ok(Login { app, tenant })
    }

    /// A person of the directory: remembered like an application's login
    /// (keyed by their record's credential version, so a disable by an
    /// admin ends it), else asked of the directory and their record brought
    /// up to date with what it says (tenant, addresses).
    async fn check_directory(
        &self,
        directory: &Directory,
        credentials: &Credentials,
        stored: Option<Application>,
        now: u64,
    ) -> Result<Application, AuthFailure> {
        let cache_key = self.cache_entry_key(credentials);
        if let Some(app) = &stored
            && self.cached(&cache_key, app.credential_version, now)
        {
            return Ok(app.clone());
        }
        let person = match directory.sign_in(&credentials.username, &credentials.password).await {
            Ok(person) => person,
            Err(DirectoryError::Rejected(why)) => {
                tracing::info!(user = %credentials.username, reason = %why, "directory sign-in refused");
                return Err(match why {
                    Rejection::NotFound | Rejection::BadUsername => {
                        // As long as a wrong password takes: no one learns
                        // which names the directory knows.
                        match self.verify(self.decoy.0.as_str(), &credentials.password).await {
                            Ok(_) => AuthFailure::UnknownUser,
                            Err(busy) => busy,
                        }
                    }
                    _ => AuthFailure::WrongPassword,
                });
            }
            Err(DirectoryError::Unavailable(why)) => {
                tracing::warn!(user = %credentials.username, error = %why, "directory unavailable");
                return Err(AuthFailure::Unavailable(why));
            }
        };
        let app = self.save_person(directory, &credentials.username, person, now).await?;
        lock(&self.cache).insert(cache_key, (app.credential_version, now + self.settings.cache_ms));
        Ok(app)
    }

    /// Brings a person's record up to date with what the directory said,
    /// built on the record as it is now (read again after the directory's
    /// round trip, so an admin's disable meanwhile stands). A Ferry
    /// application made under the name meanwhile wins: the person is refused.
    async fn save_person(
        &self,
        directory: &Directory,
        username: &str,
        person: crate::directory::DirectoryUser,
        now: u64,
    ) -> Result<Application, AuthFailure> {
        let unavailable = |e: ferry_store::StoreError| AuthFailure::Unavailable(e.to_string());
        for _ in 0..2 {
            let stored = self.store.app(username).await.map_err(unavailable)?;
            if stored.as_ref().is_some_and(|a| a.directory_dn.is_none()) {
                return Err(AuthFailure::UnknownUser);
            }
            let app = ferry_core::directory::application(
                username,
                &person.dn,
                person.tenant.clone(),
                person.addresses.clone(),
                directory.config(),
                stored.as_ref(),
                now,
            );
            if stored.as_ref() == Some(&app) {
                return Ok(app);
            }
            let saved = match stored {
                Some(_) => self.store.update_app(app.clone()).await,
                None => self.store.create_app(app.clone()).await,
            };
            match saved {
                Ok(()) => return Ok(app),
                // Made by another node (or an admin) since: read it again.
                Err(_) if stored.is_none() => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(AuthFailure::Unavailable("the person's record keeps changing".into()))
    }

    /// The current password, or the one before it while its overlap lasts.
    /// Returns until when the success may be remembered: never past the
    /// end of the overlap of the password that matched.
    async fn verify_current_or_previous(
        &self,
        app: &Application,
        password: &str,
        now: u64,
    ) -> Result<u64, AuthFailure> {
        let remember = now + self.settings.cache_ms;
        if self.verify(&app.password_hash, password).await? {
            return Ok(remember);
        }
        match &app.previous_password {
            Some(previous) if now < previous.valid_until_ms && self.verify(&previous.hash, password).await? => {
                tracing::info!(user = %app.username, "signed in with the previous password (rotation overlap)");
                Ok(remember.min(previous.valid_until_ms))
            }
            _ => Err(AuthFailure::WrongPassword),
        }
    }

    fn cache_entry_key(&self, c: &Credentials) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(c.username.as_bytes());
        h.update([0]);
        h.update(c.password.as_bytes());
        h.finalize().into()
    }

    /// A cached verification counts only for the same credential version:
    /// a password change or a disable bumps it.
    fn cached(&self, key: &[u8; 32], version: u32, now: u64) -> bool {
        let mut cache = lock(&self.cache);
        cache.retain(|_, (_, expires)| *expires > now);
        cache.get(key).is_some_and(|(v, _)| *v == version)
    }

    /// argon2 on the blocking pool, at most `max_concurrent_verifications`
    /// at once; a sign-in that cannot get a place within
    /// `verification_wait` is answered `454 4.7.0` (try again), so a burst
    /// of sign-ins waits a bounded time instead of queueing without end.
    async fn verify(&self, hash: &str, password: &str) -> Result<bool, AuthFailure> {
        let waited = tokio::time::timeout(
            self.settings.verification_wait,
            self.verifications.clone().acquire_owned(),
        )
        .await;
        let _permit = match waited {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Ok(false),
            Err(_) => {
                tracing::warn!("a sign-in waited too long for a password check; answered 454");
                return Err(AuthFailure::Unavailable(
                    "too many sign-ins being checked at once".into(),
                ));
            }
        };
        let (hash, password) = (hash.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|e| AuthFailure::Unavailable(format!("verification failed: {e}")))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
