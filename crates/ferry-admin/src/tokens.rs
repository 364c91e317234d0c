//! API tokens over the API (admin only): list (never a secret), create
//! (the token shown once), revoke (it stops at once, on every node). The
//! CLI's `ferry token` does the same.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferry_core::onboarding;
use ferry_core::token::{ApiToken, Role};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AdminState;
use crate::access::Caller;
use crate::audit::record as audit;
use crate::problem::{Problem, parse_body};

fn public(t: &ApiToken) -> Value {
    json!({
        "id": t.id, "name": t.name, "role": t.role, "tenant": t.tenant,
        "created_ms": t.created_ms, "revoked": t.revoked,
    })
}

#[utoipa::path(get, path = "/v1/tokens", operation_id = "list_tokens", tag = "tokens",
    responses((status = 200, description = "Every token, without its secret (admin)", body = [Object])))]
pub async fn list(caller: Caller, State(state): State<AdminState>) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let tokens: Vec<Value> = state.store.tokens().await?.iter().map(public).collect();
    Ok(Json(json!(tokens)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Who or what it is for.
    pub name: String,
    #[schema(value_type = String, example = "finance")]
    pub role: Role,
    /// The tenant of a tenant-admin token.
    pub tenant: Option<String>,
}

#[utoipa::path(post, path = "/v1/tokens", operation_id = "create_token", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "Created; `token` is shown this once (admin)", body = Object)))]
pub async fn create(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(&[Role::Admin])?;
    let body: NewToken = parse_body(body)?;
    onboarding::token(&body.name, body.role, body.tenant.as_deref())?;
    if let Some(t) = &body.tenant
        && state.store.tenant(t).await?.is_none()
    {
        return Err(Problem::invalid("unknown_tenant", "tenant", format!("no tenant {t}")));
    }
    let (record, shown) = crate::secrets::new_token(&body.name, body.role, body.tenant, state.clock.now_ms());
    state.store.put_token(record.clone()).await?;
    audit(&state, &caller, "token.create", &record.id, None, Some(public(&record))).await;
    let mut out = public(&record);
    out["token"] = json!(shown);
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", operation_id = "revoke_token", tag = "tokens",
    params(("id" = String, Path, description = "The token's id (the part after `ferry_`)")),
    responses((status = 200, description = "Revoked (admin)", body = Object)))]
pub async fn revoke(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let mut token = state
        .store
        .token(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("token {id}")))?;
    let before = public(&token);
    token.revoked = true;
    state.store.put_token(token.clone()).await?;
    audit(&state, &caller, "token.revoke", &id, Some(before), Some(public(&token))).await;
    Ok(Json(public(&token)))
}
