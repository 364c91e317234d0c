//! `ferry tenant bounces` and `ferry tenant check-bounces`: a tenant's
//! bounce domain (Ferry's own return path) and the DNS it needs, checked
//! as sender domains' SPF is at onboarding: an MX that reaches the inbound
//! listener, and an SPF record that authorises the relay's addresses for
//! the envelope-From under it.

use anyhow::{Context, bail};
use ferry_core::config::Config;
use ferry_core::{SuppressedMail, onboarding};
use ferry_relay::outbound::resolve::Resolver;
use ferry_store::Store;

use crate::cli::BouncesArgs;
use crate::console::{say, warn_line};

pub async fn set(store: &dyn Store, config: &Config, args: BouncesArgs) -> anyhow::Result<()> {
    let mut tenant = store
        .tenant(&args.name)
        .await?
        .with_context(|| format!("no tenant {}", args.name))?;
    let domain = match &args.domain {
        Some(d) => Some(
            onboarding::bounce_domain(d, &tenant, &store.tenants().await?)
                .map_err(|e| anyhow::anyhow!("--domain: {}", e.message))?,
        ),
        None if args.no_domain => None,
        None => tenant.bounces.domain.clone(),
    };
    tenant.bounces.domain = domain.clone();
    tenant.bounces.forward = args.forward;
    tenant.bounces.suppressed = if args.drop_suppressed {
        SuppressedMail::Drop
    } else {
        SuppressedMail::Refuse
    };
    store.update_tenant(tenant).await?;
    match &domain {
        Some(d) => say!(
            "tenant {} sends with return paths under {d}; reports {}; mail to suppressed recipients {}",
            args.name,
            if args.forward {
                "forwarded to the applications"
            } else {
                "kept"
            },
            if args.drop_suppressed {
                "dropped"
            } else {
                "refused at RCPT"
            },
        ),
        None => say!("tenant {} sends with its applications' own envelope-From", args.name),
    }
    if let Some(d) = domain {
        for problem in problems(config, &d).await? {
            warn_line!("warning: {problem}");
        }
    }
    Ok(())
}

pub async fn check(store: &dyn Store, config: &Config, name: &str) -> anyhow::Result<()> {
    let tenant = store.tenant(name).await?.with_context(|| format!("no tenant {name}"))?;
    let Some(domain) = tenant.bounces.domain else {
        bail!("tenant {name} has no bounce domain (set one with `ferry tenant bounces {name} --domain ...`)");
    };
    let problems = problems(config, &domain).await?;
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    say!("bounce domain {domain}: MX and SPF in order");
    Ok(())
}

/// What is wrong with the domain's DNS, after printing what it says.
async fn problems(config: &Config, domain: &str) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let resolver = Resolver::new(&config.delivery.resolver).map_err(anyhow::Error::msg)?;
    match resolver.hosts(domain).await {
        // Without an MX the lookup falls back to the domain's own address.
        Ok(hosts) if hosts.iter().all(|h| h.name == domain) => problems.push(format!(
            "{domain} has no MX record: reports will not reach Ferry; publish `{domain}. MX 10 <the inbound listener's name>.`"
        )),
        Ok(hosts) => {
            for host in &hosts {
                let addresses: Vec<String> = host.addresses.iter().map(ToString::to_string).collect();
                say!("mx {domain}: {} ({})", host.name, addresses.join(", "));
            }
        }
        Err(e) => problems.push(format!("{domain}: {e}")),
    }
    if config.spf.relay_addresses.is_empty() {
        warn_line!("note: spf.relay_addresses is empty, so the SPF record of {domain} is not checked");
        return Ok(problems);
    }
    let results = crate::onboard::spf_results(config, &[format!("postmaster@{domain}")]).await?;
    crate::onboard::print_spf(&results);
    problems.extend(results.iter().filter(|r| r.2 != "pass").map(|r| {
        format!(
            "the SPF record of {} does not authorise {} ({}): publish `v=spf1 ip4:... -all` naming the relay's addresses",
            r.0, r.1, r.2
        )
    }));
    Ok(problems)
}
