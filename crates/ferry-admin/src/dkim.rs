//! DKIM keys over the API (admin only): list with the DNS record to
//! publish, generate, activate (the other active key of its domain and
//! algorithm retires), retire. Running relays use a change within
//! `server.reload_secs`. A private key never leaves the store.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferry_core::dkim::{DkimAlgorithm, DkimKeyRecord};
use ferry_core::onboarding;
use ferry_core::token::Role;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AdminState;
use crate::access::Caller;
use crate::audit::record as audit;
use crate::problem::{Problem, parse_body};

/// A key as shown: where to publish it, never its private half.
fn shown(key: &DkimKeyRecord) -> Value {
    json!({
        "domain": key.domain,
        "selector": key.selector,
        "algorithm": key.algorithm,
        "active": key.active,
        "created_ms": key.created_ms,
        "dns_name": key.dns_name(),
        "txt": key.txt_value(),
        "record": key.zone_line(),
    })
}

#[utoipa::path(get, path = "/v1/dkim", operation_id = "list_dkim_keys", tag = "dkim",
    responses((status = 200, description = "Every key with the DNS record to publish (admin)", body = [Object])))]
pub async fn list(caller: Caller, State(state): State<AdminState>) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let keys = state.store.dkim_keys().await?;
    Ok(Json(json!(keys.iter().map(shown).collect::<Vec<_>>())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub domain: String,
    pub selector: String,
    /// `rsa` (2048 bits) or `ed25519`.
    #[schema(value_type = String, example = "rsa")]
    pub algorithm: DkimAlgorithm,
}

#[utoipa::path(post, path = "/v1/dkim", operation_id = "generate_dkim_key", tag = "dkim", request_body = NewKey,
    responses((status = 201, description = "Generated; the first key of its domain and algorithm is active at once (admin)", body = Object)))]
pub async fn generate(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(&[Role::Admin])?;
    let new: NewKey = parse_body(body)?;
    let keys = state.store.dkim_keys().await?;
    let domain = onboarding::new_dkim_key(&new.domain, &new.selector, &keys)?;
    let mut key = crate::dkim_keys::generate(&domain, &new.selector, new.algorithm, state.clock.now_ms())
        .map_err(Problem::internal)?;
    key.active = onboarding::starts_active(&key, &keys);
    state.store.put_dkim_key(key.clone()).await?;
    audit(
        &state,
        &caller,
        "dkim.generate",
        &key.dns_name(),
        None,
        Some(shown(&key)),
    )
    .await;
    Ok((StatusCode::CREATED, Json(shown(&key))))
}

async fn set_active(
    caller: Caller,
    state: AdminState,
    domain: String,
    selector: String,
    active: bool,
) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let keys = state.store.dkim_keys().await?;
    let writes = onboarding::set_dkim_active(&keys, &domain, &selector, active).map_err(|e| match e.code {
        "no_such_key" => Problem::not_found(format!("key {selector}._domainkey.{domain}")),
        _ => e.into(),
    })?;
    for key in &writes {
        state.store.put_dkim_key(key.clone()).await?;
    }
    let action = if active { "dkim.activate" } else { "dkim.retire" };
    let after = json!(writes.iter().map(shown).collect::<Vec<_>>());
    audit(
        &state,
        &caller,
        action,
        &format!("{selector}._domainkey.{domain}"),
        None,
        Some(after),
    )
    .await;
    Ok(Json(json!(writes.iter().map(shown).collect::<Vec<_>>())))
}

#[utoipa::path(post, path = "/v1/dkim/{domain}/{selector}/activate", operation_id = "activate_dkim_key", tag = "dkim",
    params(("domain" = String, Path), ("selector" = String, Path)),
    responses((status = 200, description = "The keys changed: this one active, the other active key of its domain and algorithm retired (admin)", body = [Object])))]
pub async fn activate(
    caller: Caller,
    State(state): State<AdminState>,
    Path((domain, selector)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    set_active(caller, state, domain, selector, true).await
}

#[utoipa::path(post, path = "/v1/dkim/{domain}/{selector}/retire", operation_id = "retire_dkim_key", tag = "dkim",
    params(("domain" = String, Path), ("selector" = String, Path)),
    responses((status = 200, description = "The key retired: it signs nothing more (admin)", body = [Object])))]
pub async fn retire(
    caller: Caller,
    State(state): State<AdminState>,
    Path((domain, selector)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    set_active(caller, state, domain, selector, false).await
}
