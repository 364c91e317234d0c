//! Ferry's admin HTTP API, under `/v1` on the admin listener: JSON in and
//! out, bearer tokens with roles, errors as `application/problem+json`
//! (RFC 9457) with a stable `code`. The rules of each operation are
//! `ferry_core::onboarding`'s, the same the CLI applies.
//!
//! Layout:
//! - [`secrets`]: application passwords and API tokens (made, hashed).
//! - `problem`: the error type every handler returns, and how it is shown;
//!   [`parse_json`], how a request body is read into its type ([`TenantBody`],
//!   [`AppBody`] and the others re-exported here).
//! - `access`: the bearer token, its role, and what that role may see.
//! - [`commands`]: CLI commands run by the relay for a CLI that found it running.
//! - `dkim` and [`dkim_keys`]: DKIM keys over the API, and how they are made.
//! - `directory`: tenants and applications; `explain`: which rule would
//!   refuse a message of an application, and why.
//! - `contract`: the contract, and each tenant's allocation, caps and route.
//! - `queue`: the queue: list, show, retry, delete.
//! - `tokens`: API tokens; `audit`: the audit log (every change, who, before/after).
//! - `openapi`: the conventions every operation shares in the OpenAPI document.
//! - [`outcomes`]: the per-application outcome report, shared with the CLI.
//! - [`report`]: usage and charge-back reports (JSON, CSV, FOCUS), shared
//!   with the CLI; `reports`: their routes, and the alert log's;
//!   `overview`: the contract year per tenant, for the dashboard.
//! - `dashboard`: the finance and tenant dashboard at `/dashboard`, a page
//!   of the API's own figures (every asset served from here).
//!
//! Roles: `admin` may do everything; `finance` reads tenants (and, as they
//! come, reports and alerts); `tenant-admin` sees and manages its own
//! tenant's applications only. What a role may not see answers 404, the
//! same as what does not exist, so no token learns of other tenants.

mod access;
mod audit;
pub mod commands;
mod contract;
mod dashboard;
mod directory;
mod dkim;
pub mod dkim_keys;
mod events;
mod explain;
pub mod incidents;
mod lockouts;
mod openapi;
pub mod outcomes;
mod overview;
mod problem;
mod queue;
pub mod report;
mod reports;
mod samples;
pub mod secrets;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use ferry_core::Clock;
use ferry_store::Store;
use openapi::Conventions;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

// The request bodies, as the handlers parse them ([`parse_json`]): the
// rules each is checked against are `ferry_core::onboarding`'s.
pub use commands::CommandBody;
pub use contract::{AllocationBody, CapsBody, RouteBody, RouteKind};
pub use directory::{
    AppBody, AppChangesBody, LimitsBody, RotateBody, TenantBody, TenantChanges, public_app, public_tenant,
};
pub use dkim::NewKey;
pub use explain::Question;
pub use problem::{Problem, parse_json};
pub use samples::ShareBody;
pub use tokens::NewToken;

/// The largest request body taken; more is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The contract, for reports.
    pub terms: ferry_core::contract::Terms,
    /// Days into the contract year before a forecast is made (`alerts.forecast_min_days`).
    pub forecast_min_days: u32,
    /// The alert thresholds, for counting released mail.
    pub alerts: ferry_core::config::Alerts,
    /// The relay's name, in FOCUS rows.
    pub hostname: String,
    /// Runs the CLI's commands here (the binary's, injected).
    pub commands: commands::Commands,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry admin API",
        version = "1",
        description = "Tenants, applications, DKIM keys, contract settings, reports, the queue and the audit log of a Ferry relay. Every call but this document needs `Authorization: Bearer ferry_…` (`ferry token add`). Errors are `application/problem+json` (RFC 9457) with a stable `code`."
    ),
    components(schemas(problem::ProblemDoc)),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Tenants: their domains, and the applications they hold"),
        (name = "applications", description = "Applications (SMTP users): senders, limits, passwords, and which rule would refuse a message"),
        (name = "contract", description = "The contract, each tenant's allocation, hard caps and route, and each application's caps"),
        (name = "reports", description = "Usage and charge-back, outcomes per application, the contract-year overview, and the alert log"),
        (name = "queue", description = "Messages waiting for delivery: list, show, retry now, delete"),
        (name = "dkim", description = "DKIM signing keys: generate, list with their DNS records, activate, retire"),
        (name = "tokens", description = "API tokens and their roles: list, create, revoke"),
        (name = "audit", description = "The audit log: every change, who made it, before and after"),
        (name = "lockouts", description = "Authentication lockouts in force, and lifting them"),
        (name = "samples", description = "Message samples: a tenant's share of accepted messages and the headers of refused ones"),
        (name = "events", description = "What happened to each recipient of each application's mail, read by cursor"),
        (name = "suppressions", description = "Each tenant's suppressed recipients (bounced, complained, or added by hand) and its bounce settings"),
        (name = "incidents", description = "Applications that stopped behaving like themselves: incidents with their evidence, the mail held under them, each tenant's policy"),
        (name = "cli", description = "The CLI's commands, run by the relay for a CLI that found it running")
    )
)]
struct ApiDoc;

/// The routes and the OpenAPI document, from one list: a route cannot be
/// served without being documented.
fn api() -> (Router<AdminState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(directory::list_tenants, directory::create_tenant))
        .routes(routes!(
            directory::show_tenant,
            directory::update_tenant,
            directory::delete_tenant
        ))
        .routes(routes!(contract::set_allocation))
        .routes(routes!(contract::set_tenant_caps))
        .routes(routes!(contract::set_route))
        .routes(routes!(contract::show_contract))
        .routes(routes!(directory::list_apps, directory::create_app))
        .routes(routes!(
            directory::show_app,
            directory::update_app,
            directory::delete_app
        ))
        .routes(routes!(directory::disable_app))
        .routes(routes!(directory::enable_app))
        .routes(routes!(directory::rotate_password))
        .routes(routes!(contract::set_app_caps))
        .routes(routes!(explain::explain))
        .routes(routes!(reports::usage))
        .routes(routes!(reports::outcomes))
        .routes(routes!(reports::overview))
        .routes(routes!(reports::alerts))
        .routes(routes!(queue::list))
        .routes(routes!(queue::show, queue::delete))
        .routes(routes!(queue::retry))
        .routes(routes!(dkim::list, dkim::generate))
        .routes(routes!(dkim::activate))
        .routes(routes!(dkim::retire))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(lockouts::list, lockouts::lift))
        .routes(routes!(samples::list))
        .routes(routes!(samples::set_share))
        .routes(routes!(events::list_events))
        .routes(routes!(events::list_suppressions, events::add_suppression))
        .routes(routes!(events::remove_suppression))
        .routes(routes!(events::set_bounces))
        .routes(routes!(events::set_app_webhook, events::remove_app_webhook))
        .routes(routes!(events::set_tenant_webhook, events::remove_tenant_webhook))
        .routes(routes!(incidents::list_incidents, incidents::open_incident))
        .routes(routes!(incidents::show_incident))
        .routes(routes!(incidents::resolve_incident))
        .routes(routes!(incidents::list_held))
        .routes(routes!(incidents::act_on_held))
        .routes(routes!(incidents::show_held, incidents::discard_one))
        .routes(routes!(incidents::release_one))
        .routes(routes!(incidents::set_policy))
        .routes(routes!(commands::run))
        .split_for_parts();
    // After the routes: the conventions apply to every operation.
    Conventions.modify(&mut doc);
    (routes, doc)
}

/// The OpenAPI 3.1 document of the `/v1` API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The `/v1` routes, and the document at `/v1/openapi.json` (no token needed).
pub fn router(state: AdminState) -> Router {
    let (routes, doc) = api();
    // Rendered once: the document does not change while the process runs.
    let doc = axum::body::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    routes
        .route(
            "/v1/openapi.json",
            get(move || std::future::ready(([(axum::http::header::CONTENT_TYPE, "application/json")], doc.clone()))),
        )
        .merge(dashboard::routes())
        .fallback(problem::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
