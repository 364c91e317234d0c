//! The audit log: each change through the API is written to the store
//! (who, what, when, the record before and after, in their public forms)
//! and to the log on target `ferry::audit`; admins read it back here.

use axum::Json;
use axum::extract::{Query, State};
use ferry_core::audit::AuditEntry;
use ferry_core::onboarding::instant_ms;
use ferry_core::token::Role;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::AdminState;
use crate::access::Caller;
use crate::problem::Problem;

/// The most entries one call returns.
const MAX_ENTRIES: usize = 1_000;

/// Writes one change to the audit log. The change is already made: a store
/// that fails here is logged, not undone.
pub(crate) async fn record(
    state: &AdminState,
    caller: &Caller,
    action: &str,
    object: &str,
    before: Option<Value>,
    after: Option<Value>,
) {
    let at_ms = state.clock.now_ms();
    tracing::info!(target: "ferry::audit", token = %caller.token_id, role = caller.role.name(), action, object, "admin change");
    let entry = AuditEntry {
        id: AuditEntry::new_id(at_ms),
        at_ms,
        actor: caller.token_id.clone(),
        role: caller.role.name().to_string(),
        action: action.to_string(),
        object: object.to_string(),
        before,
        after,
    };
    if let Err(e) = state.store.append_audit(entry).await {
        tracing::error!(target: "ferry::audit", error = %e, action, object, "cannot write the audit entry");
    }
}

/// `from` and `to` (RFC 3339, `to` excluded) as milliseconds; by default
/// the last 30 days up to now.
pub(crate) fn recent_period(from: Option<&str>, to: Option<&str>, now: u64) -> Result<(u64, u64), Problem> {
    let instant = |field, value: Option<&str>, default| value.map_or(Ok(default), |s| instant_ms(field, s));
    let from = instant("from", from, now.saturating_sub(30 * 86_400_000))?;
    Ok((from, instant("to", to, now + 1)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// RFC 3339; default: 30 days ago.
    from: Option<String>,
    /// RFC 3339, excluded; default: now.
    to: Option<String>,
    /// At most this many, oldest first (default and maximum 1000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/audit", operation_id = "list_audit_entries", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "Changes in the period, oldest first (admin)", body = [Object])))]
pub async fn list(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, Problem> {
    caller.require(&[Role::Admin])?;
    let Query(q) = query?;
    let (from, to) = recent_period(q.from.as_deref(), q.to.as_deref(), state.clock.now_ms())?;
    let limit = q.limit.unwrap_or(MAX_ENTRIES).clamp(1, MAX_ENTRIES);
    Ok(Json(state.store.audit(from, to, limit).await?))
}
