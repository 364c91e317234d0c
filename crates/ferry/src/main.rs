//! The `ferry` binary: command line, configuration loading, logging, signal
//! handling and the wiring of store, relay and routes. The only crate that
//! uses `anyhow`.

mod bounces;
mod cli;
mod console;
mod dkim;
mod events;
mod incidents;
mod onboard;
mod queue;
mod remote;
mod report;
mod settings;
mod suppression;
mod telemetry;
mod token;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ferry_core::config::{Config, StoreBackend};
use ferry_core::{Clock, SystemClock};
use ferry_relay::{Relay, RelayParts, Roles};
use ferry_store::embedded::StoreWriter;
use ferry_store::{EmbeddedStore, Store};
use ferry_store_redis::RedisStore;

use crate::cli::{Cli, Command, Role};
use crate::console::warn_line;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match settings::load(cli.config.as_deref(), &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        print!("{}", settings::render_masked(&config));
        eprintln!("ferry: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let traces = match telemetry::init(&config, matches!(cli.command, Command::Serve(_)), &env) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, config, cli.admin_url));
    if let Some(traces) = traces {
        // Sends the spans still batched; a collector that is gone costs
        // the exporter's timeout, no more.
        if let Err(e) = traces.shutdown() {
            tracing::warn!(error = %e, "the last spans could not be sent");
        }
    }
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The store for a command: the embedded one with its own writer thread.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if config.store.backend == StoreBackend::Embedded {
        let path = config.store_path();
        let store = EmbeddedStore::open(&path).with_context(|| format!("store.path {}", path.display()))?;
        return Ok(Arc::new(store));
    }
    Ok(open_supervised_store(config).await?.0)
}

/// The store, and the embedded store's writer for the relay to supervise.
async fn open_supervised_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Option<StoreWriter>)> {
    match config.store.backend {
        StoreBackend::Embedded => {
            let path = config.store_path();
            let (store, writer) =
                EmbeddedStore::open_supervised(&path).with_context(|| format!("store.path {}", path.display()))?;
            Ok((Arc::new(store), Some(writer)))
        }
        StoreBackend::Redis => {
            let store = RedisStore::connect(&config.store.redis)
                .await
                .with_context(|| format!("store.redis.url {}", settings::redacted(&config.store.redis.url)))?;
            Ok((Arc::new(store), None))
        }
    }
}

/// The store as the log names it: a file, or a Redis URL without its password.
fn store_name(config: &Config) -> String {
    match config.store.backend {
        StoreBackend::Embedded => config.store_path().display().to_string(),
        StoreBackend::Redis => settings::redacted(&config.store.redis.url),
    }
}

async fn run(command: Command, config: Config, admin_url: Option<String>) -> anyhow::Result<u8> {
    if let Command::Serve(args) = command {
        return serve(config, args.role).await.map(|()| 0);
    }
    if admin_url.is_some() {
        return remote::ask_relay(&config, admin_url.as_deref()).await;
    }
    let store = match open_store(&config).await {
        Ok(store) => store,
        // The embedded store is the running relay's: ask it.
        Err(e) if is_locked(&e) => return remote::ask_relay(&config, None).await,
        Err(e) => return Err(e),
    };
    run_with_store(command, store.as_ref(), &config).await?;
    audit_cli(store.as_ref()).await;
    Ok(0)
}

/// A change made by the CLI on the store goes to the audit log, as one
/// made through the API does (there, by the API).
async fn audit_cli(store: &dyn Store) {
    let args = remote::forwarded_args();
    if !ferry_admin::commands::changes_something(&args) {
        return;
    }
    let at_ms = SystemClock.now_ms();
    let entry = ferry_core::audit::AuditEntry {
        id: ferry_core::audit::AuditEntry::new_id(at_ms),
        at_ms,
        actor: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
        role: "cli".into(),
        action: "cli".into(),
        object: args.join(" "),
        before: None,
        after: None,
    };
    if let Err(e) = store.append_audit(entry).await {
        warn_line!("ferry: the change is made, but the audit log could not record it: {e}");
    }
}

fn is_locked(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ferry_store::StoreError>(),
            Some(ferry_store::StoreError::Locked(_))
        )
    })
}

/// A store command against an open store: here, or in a relay for a CLI.
pub async fn run_with_store(command: Command, store: &dyn Store, config: &Config) -> anyhow::Result<()> {
    match command {
        Command::Queue(c) => queue::run(store, c).await,
        Command::Report(c) => report::run(store, config, c).await,
        Command::Dkim(c) => dkim::run(store, c).await,
        Command::Tenant(c) => onboard::tenant(store, config, c).await,
        Command::App(c) => onboard::app(store, config, c).await,
        Command::Token(c) => token::run(store, c).await,
        Command::Suppression(c) => suppression::run(store, c).await,
        Command::Events(c) => events::run(store, c).await,
        Command::Incident(c) => incidents::incident(store, c).await,
        Command::Held(c) => incidents::held(store, config, c).await,
        Command::Serve(_) | Command::CheckConfig => Ok(()),
    }
}

async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
    let roles = Roles {
        ingress: matches!(role, Role::All | Role::Ingress),
        delivery: matches!(role, Role::All | Role::Delivery),
        inbound: matches!(role, Role::All | Role::Inbound),
    };
    let certificate = if roles.ingress || roles.inbound {
        Some(certificate_files(&config)?)
    } else {
        None
    };
    let (store, store_writer) = open_supervised_store(&config).await?;
    let commands: ferry_admin::commands::Commands = if config.admin.listen.is_some() {
        // The writer must run for the token to be written: it is started
        // by the relay, so the token is left once the relay runs.
        Some(Arc::new(remote::RelayCommands {
            store: store.clone(),
            config: config.clone(),
        }))
    } else {
        None
    };
    let parts = RelayParts {
        store: store.clone(),
        store_writer,
        clock: Arc::new(SystemClock),
        certificate,
        roles,
        commands,
    };
    let relay = Relay::start(&config, parts).await?;
    if let Some(admin) = relay.admin {
        remote::leave_local_token(store.as_ref(), &config, admin)
            .await
            .context("leaving the local CLI's admin token")?;
    }
    tracing::info!(
        hostname = %config.server.hostname,
        role = ?role,
        store = %store_name(&config),
        default_route = ?config.delivery.default_route,
        "ferry ready"
    );
    let failed = tokio::select! {
        _ = shutdown_signal() => None,
        fatal = relay.failed() => Some(fatal),
    };
    tracing::info!("shutting down: draining sessions");
    relay.drain().await;
    tracing::info!("stopped");
    match failed {
        // Non-zero, so that an orchestrator replaces the node.
        Some(fatal) => anyhow::bail!("node failed: {fatal}"),
        None => Ok(()),
    }
}

/// Where a development certificate lives when no `tls.certificate` is set.
fn development_dir(config: &Config) -> std::path::PathBuf {
    config.server.data_dir.join("tls")
}

/// The certificate file a relay with this configuration serves (made by
/// its `serve`, never here).
pub(crate) fn served_certificate(config: &Config) -> std::path::PathBuf {
    match &config.tls.certificate {
        Some(cert) => cert.clone(),
        None => ferry_relay::tls::development_paths(&development_dir(config)).0,
    }
}

/// The certificate and key files: the configured ones, or a development pair.
fn certificate_files(config: &Config) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = match (&config.tls.certificate, &config.tls.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let dir = development_dir(config);
            let pair = ferry_relay::tls::development_certificate(&dir, &config.server.hostname)?;
            tracing::warn!(
                certificate = %pair.0.display(),
                "no tls.certificate configured: using a self-signed development certificate; set tls.certificate and tls.key for production"
            );
            pair
        }
    };
    Ok((cert, key))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
