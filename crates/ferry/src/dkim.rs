//! `ferry dkim`: keys per signing domain and selector, and their rotation.

use std::path::Path;

use anyhow::Context;

use crate::console::say;
use ferry_core::dkim::DkimAlgorithm;
use ferry_core::onboarding;
use ferry_core::{Clock, SystemClock};
use ferry_store::Store;

use crate::cli::{DkimCommand, KeyAlgorithm};

pub async fn run(store: &dyn Store, command: DkimCommand) -> anyhow::Result<()> {
    match command {
        DkimCommand::Generate {
            domain,
            selector,
            algorithm,
        } => generate(store, &domain, &selector, algorithm).await?,
        DkimCommand::Import { dir } => import(store, &dir).await?,
        DkimCommand::List { records } => {
            for key in store.dkim_keys().await? {
                let state = if key.active { "active" } else { "inactive" };
                say!("{}\t{:?}\t{state}", key.dns_name(), key.algorithm);
                if records {
                    say!("  {}", key.zone_line());
                }
            }
        }
        DkimCommand::Activate { domain, selector } => set_active(store, &domain, &selector, true).await?,
        DkimCommand::Deactivate { domain, selector } => set_active(store, &domain, &selector, false).await?,
    }
    Ok(())
}

async fn generate(store: &dyn Store, domain: &str, selector: &str, algorithm: KeyAlgorithm) -> anyhow::Result<()> {
    let keys = store.dkim_keys().await?;
    let domain = onboarding::new_dkim_key(domain, selector, &keys).map_err(|e| match e.field {
        "selector" => anyhow::anyhow!("--selector {}", e.message),
        _ => anyhow::anyhow!("{}", e.message),
    })?;
    let algorithm = match algorithm {
        KeyAlgorithm::Rsa => DkimAlgorithm::Rsa,
        KeyAlgorithm::Ed25519 => DkimAlgorithm::Ed25519,
    };
    let mut key = ferry_admin::dkim_keys::generate(&domain, selector, algorithm, SystemClock.now_ms())
        .map_err(anyhow::Error::msg)?;
    key.active = onboarding::starts_active(&key, &keys);
    store.put_dkim_key(key.clone()).await?;
    say!("Publish this record in DNS:\n\n{}\n", key.zone_line());
    if key.active {
        say!(
            "The key is active: running relays sign mail from {domain} with it within server.reload_secs (5 s by default)."
        );
    } else {
        say!(
            "The key is stored but not active. Once the record is published: ferry dkim activate {domain} --selector {selector}"
        );
    }
    Ok(())
}

/// `<selector>._domainkey.<domain>.pem` → (domain, selector).
fn key_name(file: &str) -> Option<(&str, &str)> {
    let (selector, domain) = file.strip_suffix(".pem")?.split_once("._domainkey.")?;
    (!selector.is_empty() && !domain.is_empty()).then_some((domain, selector))
}

async fn import(store: &dyn Store, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // A mounted Secret's own bookkeeping (..data, ..2026_…).
        .filter(|name| !name.starts_with(".."))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: no key files", dir.display());
    for file in files {
        let (domain, selector) =
            key_name(&file).with_context(|| format!("{file}: name it <selector>._domainkey.<domain>.pem"))?;
        let pem = std::fs::read(dir.join(&file)).with_context(|| file.clone())?;
        let mut key = ferry_admin::dkim_keys::import(domain, selector, &pem, SystemClock.now_ms())
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let keys = store.dkim_keys().await?;
        if let Some(stored) = keys
            .iter()
            .find(|k| k.domain == key.domain && k.selector == key.selector)
        {
            anyhow::ensure!(
                stored.public_key == key.public_key,
                "{file}: {} already holds another key; retire it or choose another selector",
                stored.dns_name()
            );
            say!("{}: already stored", stored.dns_name());
            continue;
        }
        onboarding::new_dkim_key(domain, selector, &keys).map_err(|e| anyhow::anyhow!("{file}: {}", e.message))?;
        key.active = onboarding::starts_active(&key, &keys);
        store.put_dkim_key(key.clone()).await?;
        say!(
            "{}: imported ({:?}, {})",
            key.dns_name(),
            key.algorithm,
            if key.active {
                "active"
            } else {
                "inactive: ferry dkim activate"
            }
        );
    }
    Ok(())
}

async fn set_active(store: &dyn Store, domain: &str, selector: &str, active: bool) -> anyhow::Result<()> {
    let keys = store.dkim_keys().await?;
    let writes =
        onboarding::set_dkim_active(&keys, domain, selector, active).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    for key in writes {
        store.put_dkim_key(key.clone()).await?;
        if key.selector != selector {
            say!(
                "{} stops signing; keep its record published until mail signed with it has been delivered",
                key.dns_name()
            );
        } else {
            say!(
                "{} is {}",
                key.dns_name(),
                if key.active { "active" } else { "inactive" }
            );
        }
    }
    Ok(())
}
