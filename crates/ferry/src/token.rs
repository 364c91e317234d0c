//! `ferry token`: admin API tokens. A token is printed once; the store keeps
//! only the hash of its secret.

use crate::console::say;
use anyhow::Context;
use ferry_core::token::{self, ApiToken, Role};
use ferry_core::{Clock, SystemClock};
use ferry_store::Store;

use crate::cli::{NewToken, TokenCommand, TokenRole};

pub async fn run(store: &dyn Store, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Add(NewToken { name, role, tenant }) => {
            let role = checked(store, &name, role, tenant.as_deref()).await?;
            let (record, shown) = ferry_admin::secrets::new_token(&name, role, tenant, SystemClock.now_ms());
            store.put_token(record.clone()).await?;
            say!(
                "id: {}\nrole: {}\ntoken: {shown}\n(shown once: store it now)",
                record.id,
                role.name()
            );
        }
        TokenCommand::Import {
            token: NewToken { name, role, tenant },
            from_env,
        } => {
            let role = checked(store, &name, role, tenant.as_deref()).await?;
            let presented = std::env::var(&from_env).with_context(|| format!("--from-env {from_env}: not set"))?;
            let (id, secret) = token::parse(presented.trim()).with_context(|| {
                format!("--from-env {from_env}: not a token (ferry_<12 hex>_<32 to 64 letters and digits>)")
            })?;
            let digest = ferry_admin::secrets::token_digest(secret);
            if let Some(stored) = store.token(id).await? {
                anyhow::ensure!(
                    stored.secret_sha256 == digest,
                    "token {id} already exists with another secret"
                );
                anyhow::ensure!(
                    stored.role == role && stored.tenant == tenant,
                    "token {id} is already stored as {} {}: revoke it and import a new one to change it",
                    stored.role.name(),
                    stored.tenant.as_deref().unwrap_or("")
                );
                let state = if stored.revoked {
                    "revoked, and stays so"
                } else {
                    "active"
                };
                say!("token {id}: already stored ({state})");
                return Ok(());
            }
            let record = ApiToken {
                id: id.to_string(),
                name,
                role,
                tenant,
                secret_sha256: digest,
                created_ms: SystemClock.now_ms(),
                revoked: false,
            };
            store.put_token(record).await?;
            say!("id: {id}\nrole: {}\nimported", role.name());
        }
        TokenCommand::List => {
            for t in store.tokens().await? {
                say!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.role.name(),
                    t.tenant.as_deref().unwrap_or("-"),
                    if t.revoked { "revoked" } else { "active" },
                    t.name
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let mut token = store.token(&id).await?.with_context(|| format!("no token {id}"))?;
            token.revoked = true;
            store.put_token(token).await?;
            say!("token {id} revoked");
        }
    }
    Ok(())
}

/// The role asked for, once the name, role and tenant make a valid token.
async fn checked(store: &dyn Store, name: &str, role: TokenRole, tenant: Option<&str>) -> anyhow::Result<Role> {
    let role = match role {
        TokenRole::Admin => Role::Admin,
        TokenRole::Finance => Role::Finance,
        TokenRole::TenantAdmin => Role::TenantAdmin,
    };
    ferry_core::onboarding::token(name, role, tenant).map_err(|e| anyhow::anyhow!("--{} {}", e.field, e.message))?;
    if let Some(t) = tenant {
        store
            .tenant(t)
            .await?
            .with_context(|| format!("--tenant {t}: no such tenant"))?;
    }
    Ok(role)
}
