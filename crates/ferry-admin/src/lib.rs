//! Ferry's admin HTTP API, under `/v1` on the admin listener: JSON in and
//! out, bearer tokens with roles, errors as `application/problem+json`
//! (RFC 9457) with a stable `code`. The rules of each operation are
//! `ferry_core::onboarding`'s, the same the CLI applies.
//!
//! Layout:
//! - [`secrets`]: application passwords and API tokens (made, hashed).
//! - `problem`: the error type every handler returns, and how it is shown.
//! - `access`: the bearer token, its role, and what that role may see.
//! - [`commands`]: CLI commands run by the relay for a CLI that found it running.
//! - `dkim` and [`dkim_keys`]: DKIM keys over the API, and how they are made.
//! - `directory`: tenants and applications; `explain`: which rule would
//!   refuse a message of an application, and why.
//! - `queue`: the queue: list, show, retry, delete.
//! - [`outcomes`]: the per-application outcome report, shared with the CLI.
//! - [`report`]: usage and charge-back reports (JSON, CSV, FOCUS), shared
//!   with the CLI; `reports`: their routes, and the alert log's.
//!
//! Roles: `admin` may do everything; `finance` reads tenants (and, as they
//! come, reports and alerts); `tenant-admin` sees and manages its own
//! tenant's applications only. What a role may not see answers 404, the
//! same as what does not exist, so no token learns of other tenants.

mod access;
pub mod commands;
mod directory;
mod dkim;
pub mod dkim_keys;
mod explain;
pub mod outcomes;
mod problem;
mod queue;
pub mod report;
mod reports;
pub mod secrets;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use ferry_core::Clock;
use ferry_store::Store;

pub use directory::{public_app, public_tenant};
pub use problem::Problem;

/// The largest request body taken; more is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The contract, for reports.
    pub terms: ferry_core::contract::Terms,
    /// The relay's name, in FOCUS rows.
    pub hostname: String,
    /// Runs the CLI's commands here (the binary's, injected).
    pub commands: commands::Commands,
}

/// The `/v1` routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route(
            "/v1/tenants",
            get(directory::list_tenants).post(directory::create_tenant),
        )
        .route("/v1/tenants/{name}", get(directory::show_tenant))
        .route("/v1/apps", get(directory::list_apps).post(directory::create_app))
        .route("/v1/apps/{name}", get(directory::show_app))
        .route("/v1/apps/{name}/disable", post(directory::disable_app))
        .route("/v1/apps/{name}/enable", post(directory::enable_app))
        .route("/v1/apps/{name}/rotate-password", post(directory::rotate_password))
        .route("/v1/apps/{name}/explain", post(explain::explain))
        .route("/v1/reports/usage", get(reports::usage))
        .route("/v1/reports/outcomes", get(reports::outcomes))
        .route("/v1/alerts", get(reports::alerts))
        .route("/v1/queue", get(queue::list))
        .route("/v1/queue/{id}", get(queue::show).delete(queue::delete))
        .route("/v1/queue/{id}/retry", post(queue::retry))
        .route("/v1/cli", post(commands::run))
        .route("/v1/dkim", get(dkim::list).post(dkim::generate))
        .route("/v1/dkim/{domain}/{selector}/activate", post(dkim::activate))
        .route("/v1/dkim/{domain}/{selector}/retire", post(dkim::retire))
        .fallback(problem::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
