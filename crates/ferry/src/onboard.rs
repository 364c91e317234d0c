//! Onboarding commands: tenants and applications, against the store.

use anyhow::{Context, bail};
use ferry_core::chargeback::Allocation;
use ferry_core::config::{Config, SpfOnboarding};
use ferry_core::tenant::{MAX_ENVELOPE_FROM, valid_username};
use ferry_core::{AppLimits, Application, Caps, Clock, Route, SmartHost, SystemClock, Tenant};
use ferry_relay::auth::{hash_password, random_secret};
use ferry_smtp::address::validate_mailbox;
use ferry_store::Store;
use serde_json::json;

use crate::cli::{AppAddArgs, AppCommand, CapArgs, Output, RouteArgs, TenantCommand};

fn print(output: Output, text: String, value: serde_json::Value) {
    match output {
        Output::Text => println!("{text}"),
        Output::Json => println!("{value}"),
    }
}

pub async fn tenant(store: &dyn Store, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Add {
            name,
            domains,
            subdomains_only,
            contact,
            output,
        } => {
            if !valid_username(&name) {
                bail!("tenant name {name:?}: use 3-64 letters, digits, '-', '_' or '.'");
            }
            let domains: Vec<String> = domains
                .iter()
                .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect();
            if let Some(bad) = domains
                .iter()
                .find(|d| !d.contains('.') || d.contains('@') || d.contains(char::is_whitespace))
            {
                bail!("--domain {bad:?}: not a domain name");
            }
            let tenant = Tenant {
                name,
                domains,
                subdomains_only,
                contact,
                created_ms: SystemClock.now_ms(),
                route: Route::Default,
                allocation: Default::default(),
                caps: Default::default(),
            };
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
            println!(
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
            println!("tenant {name} capped at {}", describe_caps(&caps_of(&caps)));
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
async fn spf_results(config: &Config, senders: &[String]) -> anyhow::Result<Vec<(String, std::net::IpAddr, String)>> {
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

fn print_spf(results: &[(String, std::net::IpAddr, String)]) {
    for (domain, ip, result) in results {
        println!("spf {domain} for {ip}: {result}");
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
            eprintln!("warning: {message}");
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
        let (host, port) = target
            .rsplit_once(':')
            .with_context(|| format!("--smarthost {target}: expected host:port"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("--smarthost {target}: bad port"))?;
        let password = match &a.auth_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--auth-password-file {}", path.display()))?
                    .trim_end()
                    .to_string(),
            ),
            None => None,
        };
        Route::SmartHost(SmartHost {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            tls_required: a.tls_required,
            username: a.auth_user.clone(),
            password,
        })
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
    println!("tenant {} now routes via {shown}", tenant.name);
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
            println!("application {username} capped at {}", describe_caps(&caps_of(&caps)));
        }
        AppCommand::Disable { username } => set_enabled(store, &username, false).await?,
        AppCommand::Enable { username } => set_enabled(store, &username, true).await?,
        AppCommand::RotatePassword { username, output } => {
            let mut app = find(store, &username).await?;
            let password = random_secret();
            app.password_hash = hash_password(&password).map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
            app.credential_version += 1;
            store.update_app(app).await?;
            print(
                output,
                format!(
                    "username: {username}\npassword: {password}\n(shown once: store it now; the old password no longer works)"
                ),
                json!({"username": username, "password": password}),
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
    println!(
        "application {username} {}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

async fn add_app(store: &dyn Store, config: &Config, a: AppAddArgs) -> anyhow::Result<()> {
    if !valid_username(&a.username) {
        bail!(
            "username {:?}: use 3-64 letters, digits, '-', '_' or '.' (not an e-mail address)",
            a.username
        );
    }
    let tenant = store
        .tenant(&a.tenant)
        .await?
        .with_context(|| format!("--tenant {}: no such tenant", a.tenant))?;
    let envelope_from = addresses("--from", &a.from, &tenant)?;
    if envelope_from.len() > MAX_ENVELOPE_FROM {
        bail!("--from: at most {MAX_ENVELOPE_FROM} addresses per application");
    }
    let header_from = addresses("--header-from", &a.header_from, &tenant)?;
    let allowed_networks = a
        .allow
        .iter()
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        })
        .collect::<Result<Vec<_>, _>>()
        .context("--allow: expected an address or network such as 10.1.2.0/24")?;
    let today = jiff::Zoned::now().date();
    let expires = match &a.expires {
        Some(day) => day
            .parse::<jiff::civil::Date>()
            .with_context(|| format!("--expires {day}: expected YYYY-MM-DD"))?,
        None => today.checked_add(jiff::Span::new().years(1)).context("date overflow")?,
    };
    let password = random_secret();
    let app = Application {
        username: a.username.clone(),
        tenant: tenant.name,
        password_hash: hash_password(&password).map_err(|e| anyhow::anyhow!("hashing: {e}"))?,
        envelope_from,
        header_from,
        allowed_networks,
        limits: AppLimits {
            max_message_bytes: a.max_message_bytes,
            max_messages_per_session: a.max_messages_per_session,
            max_recipients: a.max_recipients,
        },
        expires: Some(expires),
        enabled: true,
        created_ms: SystemClock.now_ms(),
        credential_version: 0,
        caps: Default::default(),
        bulk_rules: !a.no_bulk_rules,
    };
    spf_at_onboarding(config, &app.envelope_from).await?;
    store.create_app(app.clone()).await?;
    let text = format!("{}\npassword: {password}\n(shown once: store it now)", describe(&app));
    let mut value = public(&app);
    value["password"] = json!(password);
    print(a.output, text, value);
    Ok(())
}

/// Lower-cases and checks each address against the tenant's domain rules.
fn addresses(flag: &str, list: &[String], tenant: &Tenant) -> anyhow::Result<Vec<String>> {
    list.iter()
        .map(|addr| {
            let addr = addr.trim().to_lowercase();
            let domain = addr
                .rsplit_once('@')
                .map(|(_, d)| d)
                .with_context(|| format!("{flag} {addr}: not an address"))?;
            if validate_mailbox(&addr).is_ok() && tenant.owns_domain(domain) {
                Ok(addr)
            } else {
                bail!(
                    "{flag} {addr}: the domain is not one of tenant {}'s domains ({}{})",
                    tenant.name,
                    tenant.domains.join(", "),
                    if tenant.subdomains_only {
                        ", subdomains only"
                    } else {
                        ""
                    }
                )
            }
        })
        .collect()
}

/// A tenant as shown: a smart host's password never leaves the store.
fn public_tenant(tenant: &Tenant) -> serde_json::Value {
    let mut v = json!(tenant);
    if let Some(password) = v.pointer_mut("/route/password")
        && !password.is_null()
    {
        *password = json!("********");
    }
    v
}

fn public(app: &Application) -> serde_json::Value {
    let mut v = json!(app);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("password_hash");
    }
    v
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
