//! `ferry token`: admin API tokens. A token is printed once; the store keeps
//! only the hash of its secret.

use crate::console::say;
use anyhow::Context;
use ferry_core::token::Role;
use ferry_core::{Clock, SystemClock};
use ferry_store::Store;

use crate::cli::{TokenCommand, TokenRole};

pub async fn run(store: &dyn Store, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Add { name, role, tenant } => {
            let role = match role {
                TokenRole::Admin => Role::Admin,
                TokenRole::Finance => Role::Finance,
                TokenRole::TenantAdmin => Role::TenantAdmin,
            };
            ferry_core::onboarding::token(&name, role, tenant.as_deref())
                .map_err(|e| anyhow::anyhow!("--{} {}", e.field, e.message))?;
            if let Some(t) = &tenant {
                store
                    .tenant(t)
                    .await?
                    .with_context(|| format!("--tenant {t}: no such tenant"))?;
            }
            let (record, shown) = ferry_admin::secrets::new_token(&name, role, tenant, SystemClock.now_ms());
            store.put_token(record.clone()).await?;
            say!(
                "id: {}\nrole: {}\ntoken: {shown}\n(shown once: store it now)",
                record.id,
                role.name()
            );
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
