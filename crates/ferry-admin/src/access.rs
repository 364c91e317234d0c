//! Who is calling: the bearer token, checked against the store on every
//! request (a revoked token stops at once, on every node), and what its
//! role may see.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use ferry_core::token::{self, Role};

use crate::AdminState;
use crate::problem::Problem;
use crate::secrets::token_digest;

/// A caller with a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
    /// The tenant of a tenant-admin.
    pub tenant: Option<String>,
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Caller, Problem> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(Problem::unauthorized)?;
        let (id, secret) = token::parse(presented.trim()).ok_or_else(Problem::unauthorized)?;
        let stored = state.store.token(id).await?.ok_or_else(Problem::unauthorized)?;
        if stored.revoked || stored.secret_sha256 != token_digest(secret) {
            return Err(Problem::unauthorized());
        }
        Ok(Caller {
            token_id: stored.id,
            role: stored.role,
            tenant: stored.tenant,
        })
    }
}

impl Caller {
    /// Refuses (403) a caller whose role is not among `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Problem::forbidden())
        }
    }

    /// Whether this caller may see `tenant`'s records.
    pub fn sees(&self, tenant: &str) -> bool {
        match self.role {
            Role::Admin | Role::Finance => true,
            Role::TenantAdmin => self.tenant.as_deref() == Some(tenant),
        }
    }
}
