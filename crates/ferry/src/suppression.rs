//! `ferry suppression`: a tenant's suppression list — the recipients its
//! applications' mail is no longer sent to — read, added to by hand and
//! pruned.

use anyhow::{Context, bail, ensure};
use ferry_admin::report::iso;
use ferry_core::suppression::{self, Reason, Suppression};
use ferry_core::{Clock, SystemClock};
use ferry_store::{Changes, Store};
use serde_json::json;

use crate::cli::{Output, SuppressionCommand};
use crate::console::say;
use crate::events::{known_tenant, table};

const DAY_MS: u64 = 86_400_000;

pub async fn run(store: &dyn Store, command: SuppressionCommand) -> anyhow::Result<()> {
    match command {
        SuppressionCommand::List {
            tenant,
            search,
            limit,
            output,
        } => {
            ensure!(limit > 0, "--limit must be at least 1");
            known_tenant(store, &tenant).await?;
            let entries = store.suppressions(&tenant, search.as_deref(), limit).await?;
            match output {
                Output::Json => say!("{}", json!(entries)),
                Output::Text => list(&entries, SystemClock.now_ms()),
            }
        }
        SuppressionCommand::Add {
            tenant,
            recipient,
            expires_days,
            note,
        } => {
            known_tenant(store, &tenant).await?;
            let recipient = address(&recipient)?;
            let at_ms = SystemClock.now_ms();
            let expires_ms = match expires_days {
                None => None,
                Some(0) => bail!("--expires-days must be at least 1 (leave it out for an entry that never lapses)"),
                Some(days) => Some(
                    u64::from(days)
                        .checked_mul(DAY_MS)
                        .and_then(|ms| ms.checked_add(at_ms))
                        .context("--expires-days is too far away")?,
                ),
            };
            let before = store.suppression(&tenant, &recipient, at_ms).await?;
            let entry = Suppression {
                tenant: tenant.clone(),
                recipient: recipient.clone(),
                reason: Reason::Manual,
                at_ms,
                expires_ms,
                source: format!("cli: {}", note.as_deref().unwrap_or("added by hand")),
            };
            store
                .append_events(Changes {
                    events: Vec::new(),
                    suppress: vec![entry],
                })
                .await?;
            let until = expires_ms.map_or_else(|| "never lapses".to_string(), |e| format!("lapses {}", iso(e)));
            say!("{recipient} suppressed for tenant {tenant} (manual; {until})");
            if let Some(old) = before {
                say!("(replaces its {} entry of {})", old.reason.as_str(), iso(old.at_ms));
            }
        }
        SuppressionCommand::Remove { tenant, recipient } => {
            known_tenant(store, &tenant).await?;
            let recipient = suppression::normalise(&recipient);
            if !store.unsuppress(&tenant, &recipient).await? {
                bail!("{recipient} is not on tenant {tenant}'s suppression list");
            }
            say!("{recipient} removed from tenant {tenant}'s suppression list");
        }
    }
    Ok(())
}

/// `recipient` in the form the list keeps, once it looks like an address.
fn address(recipient: &str) -> anyhow::Result<String> {
    let normalised = suppression::normalise(recipient);
    let well_formed = normalised
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !normalised.contains(char::is_whitespace);
    ensure!(
        well_formed,
        "{recipient:?} is not an e-mail address (local-part@domain)"
    );
    Ok(normalised)
}

fn list(entries: &[Suppression], now_ms: u64) {
    let rows = entries
        .iter()
        .map(|s| {
            let expires = match s.expires_ms {
                None => "never".to_string(),
                Some(e) if !s.in_force(now_ms) => format!("{} (lapsed)", iso(e)),
                Some(e) => iso(e),
            };
            vec![
                s.recipient.clone(),
                s.reason.as_str().to_string(),
                iso(s.at_ms),
                expires,
                s.source.clone(),
            ]
        })
        .collect();
    say!(
        "{}",
        table(&["recipient", "reason", "since", "expires", "source"], rows)
    );
    say!("{} entr{}", entries.len(), if entries.len() == 1 { "y" } else { "ies" });
}

#[cfg(test)]
mod tests {
    use super::address;

    #[test]
    fn an_address_is_kept_as_the_list_keeps_it() {
        assert_eq!(address(" <Jo@X.Test> ").ok().as_deref(), Some("jo@x.test"));
        for bad in ["jo", "@x.test", "jo@", "j o@x.test", ""] {
            let refused = address(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(refused.contains("not an e-mail address"), "{bad:?}: {refused}");
        }
    }
}
