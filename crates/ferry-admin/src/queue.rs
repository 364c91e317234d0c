//! The queue over the API: list (with filters), show with every attempt,
//! retry now, delete. Admins see every message; a tenant-admin its own
//! tenant's; finance none. A message's content is never returned.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_core::token::Role;
use ferry_core::{QueueId, QueuedMessage};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::AdminState;
use crate::access::Caller;
use crate::audit::record as audit;
use crate::problem::Problem;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueueFilter {
    /// At most this many, in due order (default 100).
    limit: Option<usize>,
    /// Only this tenant's messages.
    tenant: Option<String>,
    /// Only this application's messages.
    app: Option<String>,
}

/// The most entries one listing returns.
const MAX_LIST: usize = 10_000;

fn shown(m: &QueuedMessage) -> Value {
    let mut v = json!(m);
    v["size"] = json!(m.content.len());
    v["pending"] = json!(m.pending());
    v
}

#[utoipa::path(get, path = "/v1/queue", operation_id = "list_queued_messages", tag = "queue", params(QueueFilter),
    responses((status = 200, description = "Queued messages in due order, without content (admin, tenant-admin)", body = [Object])))]
pub async fn list(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<QueueFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100).min(MAX_LIST);
    let entries = state.store.list(MAX_LIST).await?;
    let listed: Vec<Value> = entries
        .into_iter()
        .filter(|e| caller.sees(&e.message.tenant))
        .filter(|e| q.tenant.as_ref().is_none_or(|t| *t == e.message.tenant))
        .filter(|e| q.app.as_ref().is_none_or(|a| *a == e.message.app))
        .take(limit)
        .map(|e| {
            let mut v = shown(&e.message);
            v["due_ms"] = json!(e.due_ms);
            v["size"] = json!(e.size);
            v
        })
        .collect();
    Ok(Json(json!(listed)))
}

async fn visible(caller: &Caller, state: &AdminState, id: &str) -> Result<QueuedMessage, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let gone = || Problem::not_found(format!("message {id} in the queue"));
    let id = QueueId::parse(id).ok_or_else(gone)?;
    state
        .store
        .get(&id)
        .await?
        .filter(|m| caller.sees(&m.tenant))
        .ok_or_else(gone)
}

#[utoipa::path(get, path = "/v1/queue/{id}", operation_id = "get_queued_message", tag = "queue",
    params(("id" = String, Path, description = "The queue id")),
    responses((status = 200, description = "The message's envelope, state and every attempt", body = Object)))]
pub async fn show(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(shown(&visible(&caller, &state, &id).await?)))
}

#[utoipa::path(post, path = "/v1/queue/{id}/retry", operation_id = "retry_queued_message", tag = "queue",
    params(("id" = String, Path, description = "The queue id")),
    responses((status = 200, description = "Due now", body = Object)))]
pub async fn retry(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let message = visible(&caller, &state, &id).await?;
    let now = state.clock.now_ms();
    state.store.retry_now(&message.id, now).await?;
    audit(&state, &caller, "queue.retry", message.id.as_str(), None, None).await;
    Ok(Json(json!({"id": message.id, "due_ms": now})))
}

#[utoipa::path(delete, path = "/v1/queue/{id}", operation_id = "delete_queued_message", tag = "queue",
    params(("id" = String, Path, description = "The queue id")),
    responses((status = 204, description = "Removed from the queue, undelivered")))]
pub async fn delete(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let message = visible(&caller, &state, &id).await?;
    state.store.complete(&message.id).await?;
    audit(
        &state,
        &caller,
        "queue.delete",
        message.id.as_str(),
        Some(shown(&message)),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
