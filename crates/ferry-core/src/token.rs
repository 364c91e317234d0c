//! Admin API tokens: who may call the admin API, in which role. A token is
//! shown once as `ferry_<id>_<secret>`; the store keeps its id in clear and
//! only the SHA-256 of its secret (a 32-character random secret needs no
//! slow hash: it cannot be guessed, only stolen).

use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Reports and alerts, read-only.
    Finance,
    /// One tenant's applications and its own usage.
    TenantAdmin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::TenantAdmin => "tenant-admin",
        }
    }
}

/// A stored token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Public part: names the token in lists and the audit log.
    pub id: String,
    /// Who or what it is for.
    pub name: String,
    pub role: Role,
    /// The tenant of a tenant-admin token.
    pub tenant: Option<String>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    pub created_ms: u64,
    pub revoked: bool,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("tenant", &self.tenant)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// Splits a presented token into (id, secret); None if it is not one of ours.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix("ferry_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 12) && (32..=64).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((id, secret))
}

/// The presented form of a token.
pub fn format(id: &str, secret: &str) -> String {
    format!("ferry_{id}_{secret}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_tokens_parse_strictly() {
        let secret = "a".repeat(32);
        let token = format("0123456789ab", &secret);
        assert_eq!(parse(&token), Some(("0123456789ab", secret.as_str())));
        for bad in [
            "",
            "Bearer x",
            "ferry_0123456789ab",
            "ferry_0123456789ab_short",
            "ferry_xyz_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &format!("ferry_0123456789ab_{}", "a!".repeat(20)),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
