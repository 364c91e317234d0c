//! Commands of the CLI run by the relay for a CLI that found it running:
//! the embedded store is the running relay's alone, so `ferry app add` and
//! the rest ask the relay, through this endpoint, to run them against its
//! store — the same code, the same output. Reports need the finance or
//! admin role; every other command admin.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use ferry_core::token::Role;
use serde::{Deserialize, Serialize};

use crate::AdminState;
use crate::access::Caller;
use crate::problem::{Problem, parse_body};

/// What a command printed and how it ended (the process exit status it
/// would have had).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs CLI commands (given as their arguments, without `ferry` or
/// `--config`) against the relay's own store and configuration.
pub trait CommandRunner: Send + Sync {
    fn run(&self, args: Vec<String>) -> Pin<Box<dyn Future<Output = CommandOutput> + Send>>;
}

pub type Commands = Option<Arc<dyn CommandRunner>>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// The command's arguments, e.g. `["app", "list"]`.
    pub args: Vec<String>,
}

/// Runs a CLI command on this node, as `ferry` itself does when it finds
/// the relay running: reports need finance or admin, the rest admin.
#[utoipa::path(post, path = "/v1/cli", operation_id = "run_cli_command", tag = "cli", request_body = CommandBody,
    responses((status = 200, description = "What the command printed and its exit status", body = CommandOutput)))]
pub async fn run(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CommandOutput>, Problem> {
    let body: CommandBody = parse_body(body)?;
    let reporting = body.args.first().is_some_and(|a| a == "report");
    if reporting {
        caller.require(&[Role::Admin, Role::Finance])?;
    } else {
        caller.require(&[Role::Admin])?;
    }
    let Some(runner) = state.commands.clone() else {
        return Err(Problem::not_found("command runner on this node"));
    };
    let command = body.args.join(" ");
    let changing = changes_something(&body.args);
    let output = runner.run(body.args).await;
    if changing && output.status == 0 {
        crate::audit::record(&state, &caller, "cli", &command, None, None).await;
    }
    Ok(Json(output))
}

/// Whether a CLI command (its arguments, global options removed) changes
/// anything: not a report, a list, a show or a check. What goes in the
/// audit log, from the API and from the CLI on the store alike.
pub fn changes_something(args: &[String]) -> bool {
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .take(2)
        .collect();
    !matches!(
        words.as_slice(),
        [] | [_] | ["report", ..] | [_, "list" | "show" | "check-spf" | "check-bounces"]
    )
}

#[cfg(test)]
mod tests {
    use super::changes_something;

    #[test]
    fn reads_are_not_changes() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        for read in [
            "report usage --format csv",
            "app list --output json",
            "tenant show hr",
            "app check-spf crm",
        ] {
            assert!(!changes_something(&args(read)), "{read}");
        }
        for change in [
            "app add crm --tenant hr",
            "token revoke abc",
            "dkim generate x.test --selector s1",
        ] {
            assert!(changes_something(&args(change)), "{change}");
        }
    }
}
