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
struct CommandBody {
    /// The command's arguments, e.g. `["app", "list"]`.
    args: Vec<String>,
}

/// Runs a CLI command on this node, as `ferry` itself does when it finds
/// the relay running: reports need finance or admin, the rest admin.
#[utoipa::path(post, path = "/v1/cli", tag = "cli", request_body = CommandBody,
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
    if !reporting {
        crate::audit::record(&state, &caller, "cli", &body.args.join(" "), None, None).await;
    }
    Ok(Json(runner.run(body.args).await))
}
