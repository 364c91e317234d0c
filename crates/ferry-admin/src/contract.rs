//! The organisation's contract (read-only here: it is configuration), and
//! what each tenant gets of it: its allocation, its hard caps, its route;
//! and an application's caps. Reads for admin and finance; changes for
//! admin only. The CLI's `tenant allocate`, `tenant cap`, `tenant route`
//! and `app cap` make the same changes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use ferry_core::chargeback::Allocation;
use ferry_core::token::Role;
use ferry_core::{Caps, Route, onboarding};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AdminState;
use crate::access::Caller;
use crate::directory::{save, visible_app, visible_tenant};
use crate::problem::{Problem, parse_body};

#[utoipa::path(get, path = "/v1/contract", operation_id = "get_contract", tag = "contract",
    responses((status = 200, description = "The contract, this contract year, and each tenant's allocation and caps (admin, finance)", body = Object)))]
pub async fn show_contract(caller: Caller, State(state): State<AdminState>) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin, Role::Finance])?;
    let t = &state.terms;
    let year = t.year_of(state.clock.now_ms());
    let tenants = state.store.tenants().await?;
    let allocated =
        // Saturating: allocations are whatever the API was given.
        |f: fn(&Allocation) -> Option<u64>| -> u64 {
            tenants
                .iter()
                .filter_map(|t| f(&t.allocation))
                .fold(0, u64::saturating_add)
        };
    let rows: Vec<Value> = tenants
        .iter()
        .map(|tenant| json!({ "tenant": tenant.name, "allocation": tenant.allocation, "caps": tenant.caps }))
        .collect();
    Ok(Json(json!({
        "unit": t.unit.name(),
        "hourly_peak": t.hourly_peak,
        "yearly_total": t.yearly_total,
        "time_zone": t.zone.iana_name(),
        "currency": t.currency,
        "price_per_unit_over_yearly": t.over_yearly.decimal(),
        "price_per_unit_over_peak": t.over_peak.decimal(),
        "year": { "start": crate::report::iso(year.start_ms), "end": crate::report::iso(year.end_ms) },
        "allocated": {
            "hourly": allocated(|a| a.hourly),
            "yearly": allocated(|a| a.yearly),
        },
        "tenants": rows,
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationBody {
    /// Units per hour this tenant is allocated of the contracted peak.
    pub hourly: Option<u64>,
    /// Units per contract year of the contracted total.
    pub yearly: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapsBody {
    pub per_minute: Option<u64>,
    pub per_hour: Option<u64>,
    pub per_year: Option<u64>,
    /// When the yearly cap is used up: refuse (550) rather than defer (451).
    #[serde(default)]
    pub reject_when_year_exhausted: bool,
}

impl CapsBody {
    pub fn caps(self) -> Caps {
        Caps {
            per_minute: self.per_minute,
            per_hour: self.per_hour,
            per_year: self.per_year,
            reject_when_year_exhausted: self.reject_when_year_exhausted,
        }
    }
}

/// A tenant changed by an admin, audited.
pub(crate) async fn change_tenant(
    caller: &Caller,
    state: &AdminState,
    name: &str,
    action: &str,
    change: impl FnOnce(&mut ferry_core::Tenant),
) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let tenant = visible_tenant(caller, state, name).await?;
    let after = save(caller, state, tenant, action, |tenant| {
        change(tenant);
        Ok(())
    })
    .await?;
    Ok(Json(after))
}

#[utoipa::path(put, path = "/v1/tenants/{name}/allocation", operation_id = "set_tenant_allocation", tag = "contract",
    params(("name" = String, Path, description = "The tenant")), request_body = AllocationBody,
    responses((status = 200, description = "The tenant with its new allocation (admin)", body = Object)))]
pub async fn set_allocation(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let body: AllocationBody = parse_body(body)?;
    let allocation = Allocation {
        hourly: body.hourly,
        yearly: body.yearly,
    };
    change_tenant(&caller, &state, &name, "tenant.allocate", |t| t.allocation = allocation).await
}

#[utoipa::path(put, path = "/v1/tenants/{name}/caps", operation_id = "set_tenant_caps", tag = "contract",
    params(("name" = String, Path, description = "The tenant")), request_body = CapsBody,
    responses((status = 200, description = "The tenant with its new hard caps (admin); they apply to the next message", body = Object)))]
pub async fn set_tenant_caps(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let caps = parse_body::<CapsBody>(body)?.caps();
    change_tenant(&caller, &state, &name, "tenant.cap", |t| t.caps = caps).await
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// The relay's `delivery.default_route`.
    Default,
    Mx,
    Capture,
    Smarthost,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    pub kind: RouteKind,
    /// `host:port`, for a smart host.
    pub smarthost: Option<String>,
    #[serde(default)]
    pub tls_required: bool,
    pub username: Option<String>,
    /// Kept to sign in to the smart host; never shown again.
    pub password: Option<String>,
}

#[utoipa::path(put, path = "/v1/tenants/{name}/route", operation_id = "set_tenant_route", tag = "contract",
    params(("name" = String, Path, description = "The tenant")), request_body = RouteBody,
    responses((status = 200, description = "The tenant with its new route (admin); the smart host's password is masked", body = Object)))]
pub async fn set_route(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let body: RouteBody = parse_body(body)?;
    let route = match body.kind {
        RouteKind::Default => Route::Default,
        RouteKind::Mx => Route::Mx,
        RouteKind::Capture => Route::Capture,
        RouteKind::Smarthost => {
            let target = body
                .smarthost
                .ok_or_else(|| Problem::invalid("missing_field", "smarthost", "a smart host route needs host:port"))?;
            Route::SmartHost(onboarding::smart_host(
                &target,
                body.tls_required,
                body.username,
                body.password,
            )?)
        }
    };
    change_tenant(&caller, &state, &name, "tenant.route", |t| t.route = route).await
}

#[utoipa::path(put, path = "/v1/apps/{name}/caps", operation_id = "set_application_caps", tag = "contract",
    params(("name" = String, Path, description = "The application's username")), request_body = CapsBody,
    responses((status = 200, description = "The application with its new hard caps (admin)", body = Object)))]
pub async fn set_app_caps(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let caps = parse_body::<CapsBody>(body)?.caps();
    let app = visible_app(&caller, &state, &name).await?;
    let after = save(&caller, &state, app, "app.cap", |app| {
        app.caps = caps;
        Ok(())
    })
    .await?;
    Ok(Json(after))
}
