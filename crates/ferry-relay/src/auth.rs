//! SMTP AUTH against the directory: argon2id verification off the async
//! workers with a bound on concurrent verifications, the same cost for
//! unknown users as for wrong passwords, lockout after repeated failures per
//! source address and per username, and a short-lived per-node cache of
//! successful verifications so an application that opens many connections
//! does not pay argon2 each time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use ferry_admin::secrets::{hash_password, random_secret};
use ferry_core::policy::{LoginRefusal, check_login};
use ferry_core::refusal::{AuthDetail, Refusal};
use ferry_core::{Application, Clock, Tenant};
use ferry_smtp::Credentials;
use ferry_store::Directory;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

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
    #[error("too many failures; locked out")]
    LockedOut,
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
            AuthFailure::LockedOut => Refusal::LockedOut,
            AuthFailure::Unavailable(why) => Refusal::AuthenticationUnavailable(why.clone()),
        }
    }
}

/// Lockout and cache settings.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    pub max_concurrent_verifications: usize,
    pub lockout_failures: u32,
    pub lockout_ms: u64,
    pub cache_ms: u64,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    window_start_ms: u64,
}

pub struct Authenticator {
    directory: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
    settings: AuthSettings,
    verifications: Arc<Semaphore>,
    /// Verified when the user is unknown, so both paths cost the same.
    decoy_hash: String,
    /// Keyed so the cache never holds anything a password could be recovered from.
    cache_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], (u32, u64)>>,
    by_ip: Mutex<HashMap<IpAddr, Failures>>,
    by_user: Mutex<HashMap<String, Failures>>,
}

/// A successful login: the application and its tenant.
pub struct Login {
    pub app: Application,
    pub tenant: Tenant,
}

impl Authenticator {
    pub fn new(directory: Arc<dyn Directory>, clock: Arc<dyn Clock>, settings: AuthSettings) -> Self {
        Authenticator {
            directory,
            clock,
            verifications: Arc::new(Semaphore::new(settings.max_concurrent_verifications)),
            decoy_hash: hash_password(&random_secret()).unwrap_or_default(),
            cache_key: rand::random(),
            cache: Mutex::new(HashMap::new()),
            by_ip: Mutex::new(HashMap::new()),
            by_user: Mutex::new(HashMap::new()),
            settings,
        }
    }

    pub async fn authenticate(&self, credentials: &Credentials, ip: IpAddr) -> Result<Login, AuthFailure> {
        let now = self.clock.now_ms();
        let locked = self.is_locked(lock(&self.by_ip).get(&ip), now)
            || self.is_locked(lock(&self.by_user).get(&credentials.username), now);
        if locked {
            return Err(AuthFailure::LockedOut);
        }
        let result = self.check(credentials, ip, now).await;
        match &result {
            Err(AuthFailure::UnknownUser | AuthFailure::WrongPassword) => {
                self.record_failure(&self.by_ip, ip, now);
                self.record_failure(&self.by_user, credentials.username.clone(), now);
            }
            Ok(_) => {
                lock(&self.by_user).remove(&credentials.username);
            }
            Err(_) => {}
        }
        result
    }

    async fn check(&self, credentials: &Credentials, ip: IpAddr, now: u64) -> Result<Login, AuthFailure> {
        let unavailable = |e: ferry_store::StoreError| AuthFailure::Unavailable(e.to_string());
        let app = self.directory.app(&credentials.username).await.map_err(unavailable)?;
        let Some(app) = app else {
            self.verify(&self.decoy_hash, &credentials.password).await;
            return Err(AuthFailure::UnknownUser);
        };
        let cache_key = self.cache_entry_key(credentials);
        if !self.cached(&cache_key, app.credential_version, now) {
            let remember_until = self
                .verify_current_or_previous(&app, &credentials.password, now)
                .await?;
            lock(&self.cache).insert(cache_key, (app.credential_version, remember_until));
        }
        let tenant = self.directory.tenant(&app.tenant).await.map_err(unavailable)?;
        check_login(&app, tenant.as_ref(), ip, ferry_core::clock::utc_date(now))?;
        let tenant = tenant.ok_or_else(|| AuthFailure::Refused(LoginRefusal::NoTenant(app.tenant.clone())))?;
        Ok(Login { app, tenant })
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
        if self.verify(&app.password_hash, password).await {
            return Ok(remember);
        }
        match &app.previous_password {
            Some(previous) if now < previous.valid_until_ms && self.verify(&previous.hash, password).await => {
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

    /// argon2 on the blocking pool, at most `max_concurrent_verifications` at once.
    async fn verify(&self, hash: &str, password: &str) -> bool {
        let Ok(_permit) = self.verifications.clone().acquire_owned().await else {
            return false;
        };
        let (hash, password) = (hash.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .unwrap_or(false)
    }

    fn is_locked(&self, failures: Option<&Failures>, now: u64) -> bool {
        failures.is_some_and(|f| {
            f.count >= self.settings.lockout_failures && now < f.window_start_ms + self.settings.lockout_ms
        })
    }

    fn record_failure<K: std::hash::Hash + Eq>(&self, map: &Mutex<HashMap<K, Failures>>, key: K, now: u64) {
        let mut map = lock(map);
        let window = self.settings.lockout_ms;
        map.retain(|_, f| now < f.window_start_ms + window);
        let f = map.entry(key).or_default();
        if f.count == 0 {
            f.window_start_ms = now;
        }
        f.count += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
