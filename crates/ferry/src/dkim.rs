//! `ferry dkim`: keys per signing domain and selector, and their rotation.

use anyhow::{Context, bail};
use ferry_core::dkim::{DkimAlgorithm, valid_selector};
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
        DkimCommand::List { records } => {
            for key in store.dkim_keys().await? {
                let state = if key.active { "active" } else { "inactive" };
                println!("{}\t{:?}\t{state}", key.dns_name(), key.algorithm);
                if records {
                    println!("  {}", key.zone_line());
                }
            }
        }
        DkimCommand::Activate { domain, selector } => set_active(store, &domain, &selector, true).await?,
        DkimCommand::Deactivate { domain, selector } => set_active(store, &domain, &selector, false).await?,
    }
    Ok(())
}

async fn generate(store: &dyn Store, domain: &str, selector: &str, algorithm: KeyAlgorithm) -> anyhow::Result<()> {
    if !valid_selector(selector) {
        bail!("--selector {selector:?}: use letters, digits and '-'");
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !domain.contains('.') || domain.split('.').any(|l| !valid_selector(l)) {
        bail!("{domain:?} is not a domain name");
    }
    let keys = store.dkim_keys().await?;
    if keys.iter().any(|k| k.domain == domain && k.selector == selector) {
        bail!("{selector}._domainkey.{domain} exists already: choose a new selector to rotate");
    }
    let algorithm = match algorithm {
        KeyAlgorithm::Rsa => DkimAlgorithm::Rsa,
        KeyAlgorithm::Ed25519 => DkimAlgorithm::Ed25519,
    };
    let mut key =
        ferry_relay::dkim::generate(&domain, selector, algorithm, SystemClock.now_ms()).map_err(anyhow::Error::msg)?;
    key.active = !keys
        .iter()
        .any(|k| k.domain == domain && k.algorithm == algorithm && k.active);
    store.put_dkim_key(key.clone()).await?;
    println!("Publish this record in DNS:\n\n{}\n", key.zone_line());
    if key.active {
        println!("The key is active: Ferry signs mail from {domain} with it from its next start.");
    } else {
        println!(
            "The key is stored but not active. Once the record is published: ferry dkim activate {domain} --selector {selector}"
        );
    }
    Ok(())
}

async fn set_active(store: &dyn Store, domain: &str, selector: &str, active: bool) -> anyhow::Result<()> {
    let keys = store.dkim_keys().await?;
    let target = keys
        .iter()
        .find(|k| k.domain == domain && k.selector == selector)
        .with_context(|| format!("no key {selector}._domainkey.{domain}"))?
        .clone();
    if active {
        for other in keys
            .iter()
            .filter(|k| k.domain == domain && k.algorithm == target.algorithm && k.active && k.selector != selector)
        {
            let mut retired = other.clone();
            retired.active = false;
            store.put_dkim_key(retired).await?;
            println!(
                "{} stops signing; keep its record published until mail signed with it has been delivered",
                other.dns_name()
            );
        }
    }
    let mut key = target;
    key.active = active;
    store.put_dkim_key(key.clone()).await?;
    println!("{} is {}", key.dns_name(), if active { "active" } else { "inactive" });
    Ok(())
}
