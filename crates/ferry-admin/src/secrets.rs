//! Secrets Ferry makes: application passwords (stored as argon2id hashes)
//! and admin API tokens (stored as the SHA-256 of their secret part).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use ferry_core::token::{self, ApiToken, Role};
use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn random_chars(n: usize) -> String {
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A new random password: 24 characters from an unambiguous alphabet (~137 bits).
pub fn random_secret() -> String {
    random_chars(24)
}

/// Hashes a password with argon2id (the crate's defaults: m=19 MiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// A new application password and its hash: the password to show once,
/// the hash to store.
pub fn new_password() -> Result<(String, String), argon2::password_hash::Error> {
    let password = random_secret();
    let hash = hash_password(&password)?;
    Ok((password, hash))
}

/// Admin API hashes at once: making or rotating passwords is rare, and it
/// must never take the cores the SMTP sessions share the runtime with.
/// Process-wide because the limit is the machine's, whoever asks.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// [`new_password`] on the blocking pool, at most two at a time, so a burst
/// of API calls never runs argon2 on the async workers the sessions use.
pub async fn new_password_off_runtime() -> Result<(String, String), String> {
    let _permit = HASHING.acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(new_password)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Hex SHA-256 of a token's secret part.
pub fn token_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token: the record to store, and the token to show once.
pub fn new_token(name: &str, role: Role, tenant: Option<String>, now_ms: u64) -> (ApiToken, String) {
    let id = hex::encode(rand::random::<[u8; 6]>());
    let secret = random_chars(40);
    let record = ApiToken {
        id: id.clone(),
        name: name.to_string(),
        role,
        tenant,
        secret_sha256: token_digest(&secret),
        created_ms: now_ms,
        revoked: false,
    };
    (record, token::format(&id, &secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_parses_and_only_its_digest_is_kept() {
        let (record, shown) = new_token("ops", Role::Admin, None, 1);
        let (id, secret) = token::parse(&shown).expect("parses");
        assert_eq!(id, record.id);
        assert_eq!(record.secret_sha256, token_digest(secret));
        assert!(!format!("{record:?}").contains(secret));
    }
}
