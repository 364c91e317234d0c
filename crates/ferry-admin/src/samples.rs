//! Message samples (see `ferry_core::sample`): the share a tenant keeps,
//! and reading them back by application, period and queue id. Samples hold
//! message content, so finance tokens do not read them; a tenant-admin
//! reads only its own tenant's.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use ferry_core::sample::Sample;
use ferry_core::token::Role;
use ferry_store::SampleQuery;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::access::Caller;
use crate::problem::{Problem, parse_body};

/// The most samples one call returns.
const MAX_SAMPLES: usize = 500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    /// Percent of accepted messages kept (0–100); 0 keeps none.
    pub percent: u8,
}

#[utoipa::path(put, path = "/v1/tenants/{name}/samples", operation_id = "set_tenant_sample_share", tag = "samples",
    params(("name" = String, Path, description = "The tenant")), request_body = ShareBody,
    responses((status = 200, description = "The tenant with its new sample share (admin)", body = Object)))]
pub async fn set_share(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let body: ShareBody = parse_body(body)?;
    if body.percent > 100 {
        return Err(Problem::invalid("invalid_percent", "percent", "a share from 0 to 100"));
    }
    crate::contract::change_tenant(&caller, &state, &name, "tenant.samples", |t| {
        t.sample_percent = body.percent;
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SamplesQuery {
    /// A tenant (a tenant-admin's own, whatever it asks).
    tenant: Option<String>,
    app: Option<String>,
    /// A queue id (an accepted message) or a refused message's sample id.
    id: Option<String>,
    /// RFC 3339; default: 30 days ago.
    from: Option<String>,
    /// RFC 3339, excluded; default: now.
    to: Option<String>,
    /// At most this many, oldest first (default and maximum 500).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/samples", operation_id = "list_samples", tag = "samples", params(SamplesQuery),
    responses((status = 200, description = "Samples in the period, oldest first (admin; a tenant-admin its own tenant's)", body = [Object])))]
pub async fn list(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<SamplesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Sample>>, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let Query(q) = query?;
    let (from_ms, to_ms) = crate::audit::recent_period(q.from.as_deref(), q.to.as_deref(), state.clock.now_ms())?;
    let tenant = match caller.role {
        Role::TenantAdmin => caller.tenant.clone(),
        _ => q.tenant,
    };
    let query = SampleQuery {
        tenant,
        app: q.app,
        id: q.id,
        from_ms,
        to_ms,
        limit: q.limit.unwrap_or(MAX_SAMPLES).clamp(1, MAX_SAMPLES),
    };
    Ok(Json(state.store.samples(query).await?))
}
