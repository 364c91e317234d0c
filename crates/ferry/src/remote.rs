//! The CLI against a running relay. The embedded store is locked by the
//! relay that serves it, so a command finding it locked (or given
//! `--admin-url`) asks the relay to run it through the admin API
//! (`POST /v1/cli`): the same code runs against the same store, and prints
//! the same output. The relay leaves a token for this in
//! `<data_dir>/admin-token` (readable by its user only) and its address in
//! `<data_dir>/admin-url` at every start; `FERRY_ADMIN_TOKEN` and
//! `--admin-url` name others.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ferry_admin::commands::{CommandOutput, CommandRunner};
use ferry_core::config::Config;
use ferry_core::token::Role;
use ferry_core::{Clock, SystemClock};
use ferry_store::Store;

use crate::cli::{Cli, Command};
use crate::console;

/// The relay's side: commands run against its own store and configuration.
pub struct RelayCommands {
    pub store: Arc<dyn Store>,
    pub config: Config,
}

impl CommandRunner for RelayCommands {
    fn run(&self, args: Vec<String>) -> Pin<Box<dyn Future<Output = CommandOutput> + Send>> {
        let (store, config) = (self.store.clone(), self.config.clone());
        Box::pin(async move {
            let cli = match Cli::try_parse_from(std::iter::once("ferry".to_string()).chain(args)) {
                Ok(cli) => cli,
                Err(e) => {
                    return CommandOutput {
                        status: 2,
                        stdout: String::new(),
                        stderr: e.to_string(),
                    };
                }
            };
            if matches!(cli.command, Command::Serve(_) | Command::CheckConfig) {
                return CommandOutput {
                    status: 2,
                    stdout: String::new(),
                    stderr: "ferry: serve and check-config are not run through a relay\n".into(),
                };
            }
            // Imports read the caller's files and environment, which the
            // relay's process does not have.
            if matches!(
                cli.command,
                Command::Token(crate::cli::TokenCommand::Import { .. })
                    | Command::Dkim(crate::cli::DkimCommand::Import { .. })
            ) {
                return CommandOutput {
                    status: 2,
                    stdout: String::new(),
                    stderr: "ferry: imports read local files and variables: run them before the relay starts, \
                             or against a Redis store (the admin API's POST /v1/dkim and POST /v1/tokens make keys and tokens on a running relay)\n"
                        .into(),
                };
            }
            let (result, captured) =
                console::capture(crate::run_with_store(cli.command, store.as_ref(), &config)).await;
            let mut stderr = captured.stderr;
            let status = match result {
                Ok(()) => 0,
                Err(e) => {
                    stderr.push_str(&format!("ferry: {e:#}\n"));
                    1
                }
            };
            CommandOutput {
                status,
                stdout: captured.stdout,
                stderr,
            }
        })
    }
}

/// Where the relay leaves the local CLI's token.
pub fn token_file(config: &Config) -> std::path::PathBuf {
    config.server.data_dir.join("admin-token")
}

/// At start: a fresh admin token for the CLI on this machine, the earlier
/// ones of this data directory revoked, written where only this user reads
/// it, beside the address the admin endpoint bound. Nodes that share a data
/// directory and start together each replace the files whole (written
/// aside, then renamed), and leave one another's fresh tokens valid.
pub async fn leave_local_token(store: &dyn Store, config: &Config, admin: std::net::SocketAddr) -> anyhow::Result<()> {
    let name = format!("local cli {}", config.server.data_dir.display());
    let now = SystemClock.now_ms();
    for mut old in store.tokens().await? {
        // A sibling's token from the last minute may be the one in the file.
        if old.name == name && !old.revoked && old.created_ms + SIBLING_MS < now {
            old.revoked = true;
            store.put_token(old).await?;
        }
    }
    let (record, token) = ferry_admin::secrets::new_token(&name, Role::Admin, None, now);
    store.put_token(record).await?;
    std::fs::create_dir_all(&config.server.data_dir)?;
    replace_private(&token_file(config), token.as_bytes())?;
    let scheme = if config.admin.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}\n", reachable(admin));
    replace_private(&config.server.data_dir.join("admin-url"), url.as_bytes())?;
    Ok(())
}

/// Nodes started within this long of each other are siblings on one data directory.
const SIBLING_MS: u64 = 60_000;

/// Writes `bytes` to a file of this process's own, readable by this user
/// only, then renames it over `path`: a reader sees the old file or the
/// new one, never a part.
fn replace_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// An address to connect to: a wildcard listener is reached on loopback.
fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::IpAddr::from([127, 0, 0, 1]), addr.port())
    } else {
        addr
    }
}

/// The arguments to send: these, without `--config` and `--admin-url`
/// (the relay uses its own configuration).
pub fn forwarded_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" | "--admin-url" => {
                args.next();
            }
            a if a.starts_with("--config=") || a.starts_with("--admin-url=") => {}
            _ => out.push(arg),
        }
    }
    out
}

/// Asks the relay at `admin_url` (or the one `admin.listen` names) to run
/// the command; prints what it printed and returns its exit status.
pub async fn ask_relay(config: &Config, admin_url: Option<&str>) -> anyhow::Result<u8> {
    let left = std::fs::read_to_string(config.server.data_dir.join("admin-url")).ok();
    let scheme = if config.admin.tls { "https" } else { "http" };
    let url = match (admin_url, left) {
        (Some(url), _) => url.to_string(),
        (None, Some(url)) => url.trim().to_string(),
        (None, None) => {
            let listen = config
                .admin
                .listen
                .context("the store is in use by a running relay, and admin.listen is not set to reach it")?;
            format!("{scheme}://{}", reachable(listen))
        }
    };
    // Our own relay's HTTPS: trust exactly the certificate it serves.
    let client = if admin_url.is_none() && url.starts_with("https://") {
        let tls = ferry_relay::tls::pinned_client(&crate::served_certificate(config))?;
        reqwest::Client::builder().use_preconfigured_tls(tls).build()?
    } else {
        reqwest::Client::new()
    };
    let url = url.trim_end_matches('/').to_string();
    let token = match std::env::var("FERRY_ADMIN_TOKEN") {
        Ok(token) => token,
        Err(_) => {
            let path = token_file(config);
            std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading the relay's token {} (or set FERRY_ADMIN_TOKEN)",
                    path.display()
                )
            })?
        }
    };
    let response = client
        .post(format!("{url}/v1/cli"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({ "args": forwarded_args() }))
        .send()
        .await
        .with_context(|| format!("asking the relay at {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("the relay at {url} answered {status}"))?;
    if !status.is_success() {
        anyhow::bail!(
            "the relay at {url} refused: {} ({})",
            body["detail"].as_str().unwrap_or(""),
            status
        );
    }
    let output: CommandOutput = serde_json::from_value(body).context("the relay's answer")?;
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    Ok(u8::try_from(output.status).unwrap_or(1))
}
