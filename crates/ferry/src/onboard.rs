//! Onboarding commands: tenants and applications, against the store.

use crate::console::{say, warn_line};
use anyhow::{Context, bail};
use ferry_admin::secrets::new_password;
use ferry_admin::{public_app as public, public_tenant};
use ferry_core::chargeback::Allocation;
use ferry_core::config::{Config, SpfOnboarding};
use ferry_core::onboarding::{self, Invalid, NewApp, NewTenant};
use ferry_core::{AppLimits, Application, Caps, Clock, Route, SystemClock};
use ferry_store::Store;
use serde_json::json;

use crate::cli::{AppAddArgs, AppCommand, CapArgs, Output, RouteArgs, TenantCommand};

fn print(output: Output, text: String, value: serde_json::Value) {
    match output {
        Output::Text => say!("{text}"),
        Output::Json => say!("{value}"),
    }
}

pub async fn tenant(store: &dyn Store, config: &Config, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Bounces(args) => crate::bounces::set(store, config, args).await?,
        TenantCommand::CheckBounces { name } => crate::bounces::check(store, config, &name).await?,
        TenantCommand::IncidentPolicy { name, policy } => crate::incidents::set_policy(store, &name, policy).await?,
        TenantCommand::Add {
            name,
            domains,
            subdomains_only,
            contact,
            output,
        } => {
            let new = NewTenant {
                name,
                domains,
                subdomains_only,
                contact,
            };
            let tenant = onboarding::tenant(new, SystemClock.now_ms()).map_err(named_by_flag)?;
            store.create_tenant(tenant.clone()).await?;
            print(
                output,
                format!("tenant {} added: domains {}", tenant.name, tenant.domains.join(", ")),
                public_tenant(&tenant),
            );
        }
        TenantCommand::List { output } => {
            let tenants = store.tenants().await?;
            let text = tenants
                .iter()
                .map(|t| format!("{}\t{}", t.name, t.domains.join(",")))
                .collect::<Vec<_>>()
                .join("\n");
            print(
                output,
                text,
                json!(tenants.iter().map(public_tenant).collect::<Vec<_>>()),
            );
        }
        TenantCommand::Route(args) => set_route(store, *args).await?,
        TenantCommand::Allocate { name, hourly, yearly } => {
            let mut tenant = store
                .tenant(&name)
                .await?
                .with_context(|| format!("no tenant {name}"))?;
            tenant.allocation = Allocation { hourly, yearly };
            store.update_tenant(tenant).await?;
            say!(
                "tenant {name} allocated {} per hour, {} per year",
                show(hourly),
                show(yearly)
            );
        }
        TenantCommand::Cap { name, caps } => {
            let mut tenant = store
                .tenant(&name)
                .await?
                .with_context(|| format!("no tenant {name}"))?;
            tenant.caps = caps_of(&caps);
            store.update_tenant(tenant).await?;
            say!("tenant {name} capped at {}", describe_caps(&caps_of(&caps)));
        }
        TenantCommand::Show { name, output } => {
            let tenant = store
                .tenant(&name)
                .await?
                .with_context(|| format!("no tenant {name}"))?;
            let apps: Vec<String> = store.apps(Some(&name)).await?.into_iter().map(|a| a.username).collect();
            let text = format!(
                "tenant: {}\ndomains: {}\nsubdomains only: {}\ncontact: {}\nroute: {:?}\nallocation: {} per hour, {} per year\ncaps: {}\napplications: {}",
                tenant.name,
                tenant.domains.join(", "),
                tenant.subdomains_only,
                tenant.contact.as_deref().unwrap_or("-"),
                tenant.route,
                show(tenant.allocation.hourly),
                show(tenant.allocation.yearly),
                describe_caps(&tenant.caps),
                apps.join(", ")
            );
            print(
                output,
                text,
                json!({"tenant": public_tenant(&tenant), "applications": apps}),
            );
        }
    }
    Ok(())
}

/// (domain, relay address, SPF result) for each sender domain and address.
pub(crate) async fn spf_results(
    config: &Config,
    senders: &[String],
) -> anyhow::Result<Vec<(String, std::net::IpAddr, String)>> {
    if config.spf.relay_addresses.is_empty() {
        bail!("spf.relay_addresses is empty: name the relay's outbound addresses to check SPF against");
    }
    let helo = config
        .delivery
        .helo_name
        .clone()
        .unwrap_or_else(|| config.server.hostname.clone());
    let check = ferry_relay::spf::SpfCheck::new(&config.delivery.resolver, &helo).map_err(anyhow::Error::msg)?;
    // One sender per domain: SPF is a property of the domain.
    let domains: std::collections::BTreeMap<String, &String> = senders
        .iter()
        .map(|s| (s.rsplit_once('@').map_or(s.as_str(), |(_, d)| d).to_string(), s))
        .collect();
    let mut out = Vec::new();
    for (domain, sender) in domains {
        for ip in &config.spf.relay_addresses {
            out.push((domain.clone(), *ip, check.result(sender, *ip).await));
        }
    }
    Ok(out)
}

pub(crate) fn print_spf(results: &[(String, std::net::IpAddr, String)]) {
    for (domain, ip, result) in results {
        say!("spf {domain} for {ip}: {result}");
    }
}

async fn spf_at_onboarding(config: &Config, senders: &[String]) -> anyhow::Result<()> {
    if config.spf.onboarding == SpfOnboarding::Off || config.spf.relay_addresses.is_empty() {
        return Ok(());
    }
    let results = spf_results(config, senders).await?;
    print_spf(&results);
    let failing: Vec<String> = results
        .iter()
        .filter(|r| r.2 != "pass")
        .map(|r| format!("{} ({} for {})", r.0, r.2, r.1))
        .collect();
    if failing.is_empty() {
        return Ok(());
    }
    let message = format!(
        "the SPF record of {} does not authorise the relay; add its addresses to the record",
        failing.join(", ")
    );
    match config.spf.onboarding {
        SpfOnboarding::Refuse => bail!("{message} (spf.onboarding = \"refuse\")"),
        _ => {
            warn_line!("warning: {message}");
            Ok(())
        }
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".into(), |n| n.to_string())
}

fn caps_of(a: &CapArgs) -> Caps {
    Caps {
        per_minute: a.per_minute,
        per_hour: a.per_hour,
        per_year: a.per_year,
        reject_when_year_exhausted: a.reject_when_year_exhausted,
    }
}

fn describe_caps(c: &Caps) -> String {
    format!(
        "{}/minute, {}/hour, {}/year{}",
        show(c.per_minute),
        show(c.per_hour),
        show(c.per_year),
        if c.reject_when_year_exhausted {
            " (refused when the year is used up)"
        } else {
            ""
        }
    )
}

async fn set_route(store: &dyn Store, a: RouteArgs) -> anyhow::Result<()> {
    let mut tenant = store
        .tenant(&a.name)
        .await?
        .with_context(|| format!("no tenant {}", a.name))?;
    tenant.route = if a.mx {
        Route::Mx
    } else if a.capture {
        Route::Capture
    } else if let Some(target) = &a.smarthost {
        let password = match &a.auth_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--auth-password-file {}", path.display()))?
                    .trim_end()
                    .to_string(),
            ),
            None => None,
        };
        Route::SmartHost(
            onboarding::smart_host(target, a.tls_required, a.auth_user.clone(), password).map_err(named_by_flag)?,
        )
    } else {
        Route::Default
    };
    store.update_tenant(tenant.clone()).await?;
    let shown = match &tenant.route {
        Route::SmartHost(s) => format!(
            "smart host {}:{} (TLS {})",
            s.host,
            s.port,
            if s.tls_required { "required" } else { "opportunistic" }
        ),
        other => format!("{other:?}").to_lowercase(),
    };
    say!("tenant {} now routes via {shown}", tenant.name);
    Ok(())
}

pub async fn app(store: &dyn Store, config: &Config, command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Add(args) => add_app(store, config, *args).await?,
        AppCommand::CheckSpf { username } => {
            let app = find(store, &username).await?;
            let results = spf_results(config, &app.envelope_from).await?;
            print_spf(&results);
            if results.iter().any(|r| r.2 != "pass") {
                bail!("SPF does not authorise the relay for every sender domain of {username}");
            }
        }
        AppCommand::List { tenant, output } => {
            let apps = store.apps(tenant.as_deref()).await?;
            let text = apps
                .iter()
                .map(|a| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        a.username,
                        a.tenant,
                        if a.enabled { "enabled" } else { "disabled" },
                        a.envelope_from.join(",")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(output, text, json!(apps.iter().map(public).collect::<Vec<_>>()));
        }
        AppCommand::Show { username, output } => {
            let app = find(store, &username).await?;
            print(output, describe(&app), public(&app));
        }
        AppCommand::Cap { username, caps } => {
            let mut app = find(store, &username).await?;
            app.caps = caps_of(&caps);
            store.update_app(app).await?;
            say!("application {username} capped at {}", describe_caps(&caps_of(&caps)));
        }
        AppCommand::Disable { username } => set_enabled(store, &username, false).await?,
        AppCommand::Enable { username } => set_enabled(store, &username, true).await?,
        AppCommand::RotatePassword {
            username,
            old_valid_until,
            output,
        } => {
            let mut app = find(store, &username).await?;
            let until = old_valid_until
                .as_deref()
                .map(|s| onboarding::instant_ms("--old-valid-until", s))
                .transpose()
                .map_err(named_by_flag)?;
            let (password, hash) = new_password().map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
            onboarding::rotate_password(&mut app, hash, until, SystemClock.now_ms())
                .map_err(|e| anyhow::anyhow!("--old-valid-until {}", e.message))?;
            store.update_app(app).await?;
            let old = match &old_valid_until {
                Some(t) => format!("the old password works until {t}"),
                None => "the old password no longer works".into(),
            };
            print(
                output,
                format!("username: {username}\npassword: {password}\n(shown once: store it now; {old})"),
                json!({"username": username, "password": password, "old_password_valid_until": old_valid_until}),
            );
        }
    }
    Ok(())
}

async fn find(store: &dyn Store, username: &str) -> anyhow::Result<Application> {
    store
        .app(username)
        .await?
        .with_context(|| format!("no application {username}"))
}

async fn set_enabled(store: &dyn Store, username: &str, enabled: bool) -> anyhow::Result<()> {
    let mut app = find(store, username).await?;
    app.enabled = enabled;
    app.credential_version += 1;
    store.update_app(app).await?;
    say!(
        "application {username} {}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

async fn add_app(store: &dyn Store, config: &Config, a: AppAddArgs) -> anyhow::Result<()> {
    let tenant = store
        .tenant(&a.tenant)
        .await?
        .with_context(|| format!("--tenant {}: no such tenant", a.tenant))?;
    let new = NewApp {
        username: a.username.clone(),
        envelope_from: a.from.clone(),
        header_from: a.header_from.clone(),
        allowed_networks: a.allow.clone(),
        expires: a.expires.clone(),
        limits: AppLimits {
            max_message_bytes: a.max_message_bytes,
            max_messages_per_session: a.max_messages_per_session,
            max_recipients: a.max_recipients,
        },
        bulk_rules: !a.no_bulk_rules,
    };
    let (password, hash) = new_password().map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
    let app = onboarding::application(new, &tenant, hash, jiff::Zoned::now().date(), SystemClock.now_ms())
        .map_err(named_by_flag)?;
    spf_at_onboarding(config, &app.envelope_from).await?;
    store.create_app(app.clone()).await?;
    let text = format!("{}\npassword: {password}\n(shown once: store it now)", describe(&app));
    let mut value = public(&app);
    value["password"] = json!(password);
    print(a.output, text, value);
    Ok(())
}

/// A refusal of onboarding, naming the command-line flag of its field.
fn named_by_flag(e: Invalid) -> anyhow::Error {
    let flag = match e.field {
        "envelope_from" => "--from",
        "header_from" => "--header-from",
        "allowed_networks" => "--allow",
        "expires" => "--expires",
        "domains" => "--domain",
        "smarthost" => "--smarthost",
        other => other,
    };
    anyhow::anyhow!("{flag} {}", e.message)
}

fn describe(app: &Application) -> String {
    format!(
        "username: {}\ntenant: {}\nenabled: {}\nexpires: {}\nenvelope from: {}\nheader from: {}\nallowed networks: {}\nlimits: {} bytes/message, {} messages/session, {} recipients/message",
        app.username,
        app.tenant,
        app.enabled,
        app.expires.map_or("never".into(), |d| d.to_string()),
        app.envelope_from.join(", "),
        app.header_from_allowed().join(", "),
        app.allowed_networks
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        app.limits.max_message_bytes,
        app.limits.max_messages_per_session,
        app.limits.max_recipients
    )
}
