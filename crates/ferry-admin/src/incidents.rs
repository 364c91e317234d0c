//! Incidents on applications (see `ferry_core::incident`) and the mail held
//! under them: list, show and resolve incidents; list, sample, release and
//! discard held mail, one message or all of an application's or tenant's;
//! the tenant's incident policy. Every change goes to the audit log. A
//! tenant-admin sees and acts on its own tenant's; finance sees none of it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_core::config::Alerts;
use ferry_core::contract::Terms;
use ferry_core::incident::{Incident, Policy, Resolution, Verdict};
use ferry_core::token::Role;
use ferry_core::usage::Usage;
use ferry_core::{QueueId, QueuedMessage, Tenant, metering};
use ferry_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::access::Caller;
use crate::directory::visible_tenant;
use crate::problem::{Problem, parse_body};

/// The most incidents, or held messages, one call lists or acts on.
const MAX_LISTED: usize = 1000;
/// The most of a held message's content a sample shows.
const SAMPLE_BYTES: usize = 16 * 1024;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentsQuery {
    /// Only this tenant's (a tenant-admin's own, whatever it asks).
    tenant: Option<String>,
    /// Only this application's.
    app: Option<String>,
    /// Only open ones (`true`) or closed ones (`false`).
    open: Option<bool>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<usize>,
}

/// The tenant a caller's list is about: a tenant-admin's own; else the one
/// named (checked), or every one.
async fn scope(caller: &Caller, state: &AdminState, tenant: Option<&str>) -> Result<Option<String>, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    match (&caller.role, &caller.tenant, tenant) {
        (Role::TenantAdmin, Some(own), _) => Ok(Some(own.clone())),
        (_, _, Some(name)) => Ok(Some(visible_tenant(caller, state, name).await?.name)),
        _ => Ok(None),
    }
}

#[utoipa::path(get, path = "/v1/incidents", operation_id = "list_incidents", tag = "incidents", params(IncidentsQuery),
    responses((status = 200, description = "Incidents, newest first, each with its evidence (admin; a tenant-admin its own tenant's)", body = [Object])))]
pub async fn list_incidents(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<IncidentsQuery>, QueryRejection>,
) -> Result<Json<Vec<Incident>>, Problem> {
    let Query(q) = query?;
    let tenant = scope(&caller, &state, q.tenant.as_deref()).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LISTED);
    let filtered = q.app.is_some() || q.open.is_some();
    let read = if filtered { MAX_LISTED * 10 } else { limit };
    let incidents = state
        .store
        .incidents(tenant.as_deref(), read)
        .await?
        .into_iter()
        .filter(|i| q.app.as_deref().is_none_or(|a| a == i.app) && q.open.is_none_or(|o| o == i.is_open()))
        .take(limit)
        .collect();
    Ok(Json(incidents))
}

async fn visible_incident(caller: &Caller, state: &AdminState, id: &str) -> Result<Incident, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    state
        .store
        .incident(id)
        .await?
        .filter(|i| caller.sees(&i.tenant))
        .ok_or_else(|| Problem::not_found(format!("incident {id}")))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// The application.
    pub app: String,
    /// Why: kept in the incident's evidence.
    #[serde(default)]
    pub note: String,
}

#[utoipa::path(post, path = "/v1/incidents", operation_id = "open_incident", tag = "incidents", request_body = OpenBody,
    responses((status = 201, description = "Opened under the tenant's policy, as the watch would (its alert goes out; hold and suspend hold its mail)", body = Object),
        (status = 409, description = "The application has an open incident (code in_use)")))]
pub async fn open_incident(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Incident>), Problem> {
    let body: OpenBody = parse_body(body)?;
    let app = crate::directory::visible_app(&caller, &state, &body.app).await?;
    let now = state.clock.now_ms();
    let incident = open_by_hand(state.store.as_ref(), &app, &caller.token_id, &body.note, now).await?;
    let opened = serde_json::to_value(&incident).ok();
    crate::audit::record(&state, &caller, "incident.open", &incident.id, None, opened).await;
    Ok((StatusCode::CREATED, Json(incident)))
}

/// Opens an incident on `app` by hand (`by`, and why), under its tenant's
/// policy as the watch would; [`StoreError::InUse`] when one is open.
/// Shared with the CLI.
pub async fn open_by_hand(
    store: &dyn Store,
    app: &ferry_core::Application,
    by: &str,
    note: &str,
    now_ms: u64,
) -> Result<Incident, StoreError> {
    let policy = store
        .tenant(&app.tenant)
        .await?
        .map_or(Policy::default(), |t| t.incident_policy);
    let incident = Incident::manual(&app.tenant, &app.username, policy, by, note, now_ms);
    if !store.open_incident(incident.clone()).await? {
        return Err(StoreError::InUse(format!(
            "application {} has an open incident",
            app.username
        )));
    }
    suspend(store, &incident, by, now_ms).await?;
    Ok(incident)
}

/// Under `suspend`, disables the incident's application (its sign-ins get
/// `535 5.7.8` until an admin enables it), with an audit entry by `actor`;
/// under another policy, nothing. Shared by the watch, the API and the CLI.
pub async fn suspend(store: &dyn Store, incident: &Incident, actor: &str, now_ms: u64) -> Result<(), StoreError> {
    if incident.policy != Policy::Suspend {
        return Ok(());
    }
    let Some(mut app) = store.app(&incident.app).await?.filter(|a| a.enabled) else {
        return Ok(());
    };
    app.enabled = false;
    app.credential_version += 1;
    store.update_app(app).await?;
    store
        .append_audit(ferry_core::audit::AuditEntry {
            id: ferry_core::audit::AuditEntry::new_id(now_ms),
            at_ms: now_ms,
            actor: actor.to_string(),
            role: "incident".into(),
            action: "app.suspend".into(),
            object: incident.app.clone(),
            before: Some(json!({ "enabled": true })),
            after: Some(json!({ "enabled": false, "incident": incident.id })),
        })
        .await
}

#[utoipa::path(get, path = "/v1/incidents/{id}", operation_id = "show_incident", tag = "incidents",
    params(("id" = String, Path, description = "The incident's id")),
    responses((status = 200, description = "The incident, its evidence, and how many messages are held under it", body = Object)))]
pub async fn show_incident(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let incident = visible_incident(&caller, &state, &id).await?;
    let held = state
        .store
        .held(Some(&incident.tenant), usize::MAX)
        .await?
        .iter()
        .filter(|(_, under)| *under == incident.id)
        .count();
    let mut shown = serde_json::to_value(&incident).map_err(Problem::internal)?;
    shown["held"] = json!(held);
    Ok(Json(shown))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `false_alarm` (its hours count in the baseline; its mail is no
    /// longer held) or `compromised`.
    #[schema(value_type = String)]
    pub verdict: Verdict,
    /// Why, kept with the incident.
    #[serde(default)]
    pub note: String,
}

#[utoipa::path(post, path = "/v1/incidents/{id}/resolve", operation_id = "resolve_incident", tag = "incidents",
    params(("id" = String, Path, description = "The incident's id")), request_body = ResolveBody,
    responses((status = 200, description = "Closed: the application's new mail is no longer held; what is held stays until released or discarded", body = Object),
        (status = 409, description = "Closed already (code in_use)")))]
pub async fn resolve_incident(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Incident>, Problem> {
    let body: ResolveBody = parse_body(body)?;
    let before = visible_incident(&caller, &state, &id).await?;
    let resolution = Resolution {
        at_ms: state.clock.now_ms(),
        by: caller.token_id.clone(),
        verdict: body.verdict,
        note: body.note,
    };
    let closed = state.store.resolve_incident(&before.id, resolution).await?;
    let after = serde_json::to_value(&closed.resolution).ok();
    crate::audit::record(&state, &caller, "incident.resolve", &closed.id, None, after).await;
    Ok(Json(closed))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HeldQuery {
    /// Only this tenant's (a tenant-admin's own, whatever it asks).
    tenant: Option<String>,
    /// Only this application's.
    app: Option<String>,
    /// At most this many, oldest first (default 100, at most 1000).
    limit: Option<usize>,
}

/// A held message, without its content.
#[derive(Serialize, ToSchema)]
pub struct HeldMessage {
    pub id: String,
    pub tenant: String,
    pub app: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub received_ms: u64,
    /// The incident it is held under.
    pub incident: String,
}

impl HeldMessage {
    fn of((m, incident): (QueuedMessage, String)) -> HeldMessage {
        HeldMessage {
            id: m.id.to_string(),
            tenant: m.tenant,
            app: m.app,
            mail_from: m.mail_from,
            recipients: m.recipients,
            received_ms: m.received_ms,
            incident,
        }
    }
}

/// Held messages, oldest first: of one tenant or all, of one application
/// or all, at most `limit`. Shared with the CLI.
pub async fn held_of(
    store: &dyn Store,
    tenant: Option<&str>,
    app: Option<&str>,
    limit: usize,
) -> Result<Vec<(QueuedMessage, String)>, StoreError> {
    let read = if app.is_some() { usize::MAX } else { limit };
    Ok(store
        .held(tenant, read)
        .await?
        .into_iter()
        .filter(|(m, _)| app.is_none_or(|a| a == m.app))
        .take(limit)
        .collect())
}

#[utoipa::path(get, path = "/v1/held", operation_id = "list_held", tag = "incidents", params(HeldQuery),
    responses((status = 200, description = "Held messages, oldest first, without content (admin; a tenant-admin its own tenant's)", body = [HeldMessage])))]
pub async fn list_held(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<HeldQuery>, QueryRejection>,
) -> Result<Json<Vec<HeldMessage>>, Problem> {
    let Query(q) = query?;
    let tenant = scope(&caller, &state, q.tenant.as_deref()).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LISTED);
    let held = held_of(state.store.as_ref(), tenant.as_deref(), q.app.as_deref(), limit).await?;
    Ok(Json(held.into_iter().map(HeldMessage::of).collect()))
}

/// A held message the caller may see, with its content.
async fn visible_held(caller: &Caller, state: &AdminState, id: &str) -> Result<QueuedMessage, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let not_held = || Problem::not_found(format!("held message {id}"));
    let queue_id = QueueId::parse(id).ok_or_else(not_held)?;
    let message = state
        .store
        .get(&queue_id)
        .await?
        .filter(|m| caller.sees(&m.tenant))
        .ok_or_else(not_held)?;
    let held = state.store.held(Some(&message.tenant), usize::MAX).await?;
    if !held.iter().any(|(m, _)| m.id == queue_id) {
        return Err(not_held());
    }
    Ok(message)
}

#[utoipa::path(get, path = "/v1/held/{id}", operation_id = "show_held", tag = "incidents",
    params(("id" = String, Path, description = "The message's queue id")),
    responses((status = 200, description = "A sample of the held message: its envelope and the start of its content (16 KiB)", body = Object)))]
pub async fn show_held(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let message = visible_held(&caller, &state, &id).await?;
    let shown = &message.content[..message.content.len().min(SAMPLE_BYTES)];
    Ok(Json(json!({
        "id": message.id.to_string(),
        "tenant": message.tenant,
        "app": message.app,
        "mail_from": message.mail_from,
        "recipients": message.recipients,
        "received_ms": message.received_ms,
        "size": message.content.len(),
        "content": String::from_utf8_lossy(shown),
        "truncated": message.content.len() > SAMPLE_BYTES,
    })))
}

/// Releases a held message: delivered as normal, counted as if sent now
/// (a person decided: its caps are not applied). Shared with the CLI.
pub async fn release(
    store: &dyn Store,
    terms: &Terms,
    alerts: &Alerts,
    id: &QueueId,
    now_ms: u64,
) -> Result<(), StoreError> {
    let message = store
        .get(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("held message {id}")))?;
    let tenant = store.tenant(&message.tenant).await?;
    let app = store.app(&message.app).await?;
    let metering = match (tenant, app) {
        (Some(tenant), Some(app)) => {
            let usage = Usage {
                messages: 1,
                recipients: message.recipients.len() as u64,
                bytes: message.content.len() as u64,
            };
            Some(metering::plan(terms, alerts, &tenant, &app, usage, now_ms))
        }
        // Its application or tenant was deleted since: sent, not counted.
        _ => None,
    };
    store.release_held(id, metering, now_ms).await
}

#[utoipa::path(post, path = "/v1/held/{id}/release", operation_id = "release_held", tag = "incidents",
    params(("id" = String, Path, description = "The message's queue id")),
    responses((status = 204, description = "Released: due for delivery now, counted now")))]
pub async fn release_one(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let message = visible_held(&caller, &state, &id).await?;
    let now = state.clock.now_ms();
    release(state.store.as_ref(), &state.terms, &state.alerts, &message.id, now).await?;
    crate::audit::record(&state, &caller, "held.release", &id, None, None).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/held/{id}", operation_id = "discard_held", tag = "incidents",
    params(("id" = String, Path, description = "The message's queue id")),
    responses((status = 204, description = "Discarded: never delivered, with a discarded event")))]
pub async fn discard_one(
    caller: Caller,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let message = visible_held(&caller, &state, &id).await?;
    state.store.discard_held(&message.id, state.clock.now_ms()).await?;
    crate::audit::record(&state, &caller, "held.discard", &id, None, None).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldSelection {
    /// The tenant (a tenant-admin's own).
    pub tenant: Option<String>,
    /// Only this application's; every application of the tenant's when left out.
    pub app: Option<String>,
    /// `release` or `discard`.
    pub action: String,
}

#[utoipa::path(post, path = "/v1/held/actions", operation_id = "act_on_held", tag = "incidents", request_body = HeldSelection,
    responses((status = 200, description = "Every held message of the tenant (or application) released or discarded, up to 1000 a call: `{\"released\": n}` or `{\"discarded\": n}`, and `more` when some remain", body = Object)))]
pub async fn act_on_held(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let body: HeldSelection = parse_body(body)?;
    let release_them = match body.action.as_str() {
        "release" => true,
        "discard" => false,
        other => {
            return Err(Problem::invalid(
                "invalid_action",
                "action",
                format!("{other:?}: release or discard"),
            ));
        }
    };
    let Some(tenant) = scope(&caller, &state, body.tenant.as_deref()).await? else {
        return Err(Problem::invalid("tenant_required", "tenant", "name the tenant"));
    };
    let held = held_of(state.store.as_ref(), Some(&tenant), body.app.as_deref(), MAX_LISTED + 1).await?;
    let more = held.len() > MAX_LISTED;
    let mut done = 0usize;
    for (message, _) in held.iter().take(MAX_LISTED) {
        let now = state.clock.now_ms();
        let acted = if release_them {
            release(state.store.as_ref(), &state.terms, &state.alerts, &message.id, now).await
        } else {
            state.store.discard_held(&message.id, now).await
        };
        match acted {
            Ok(()) => done += 1,
            // Released or discarded meanwhile by someone else.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let key = if release_them { "released" } else { "discarded" };
    let what = format!("{tenant}/{}", body.app.as_deref().unwrap_or("*"));
    let action = if release_them {
        "held.release_all"
    } else {
        "held.discard_all"
    };
    crate::audit::record(&state, &caller, action, &what, None, Some(json!({ key: done }))).await;
    Ok(Json(json!({ key: done, "more": more })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentPolicyBody {
    /// `alert` (tell its owners and the admins), `hold` (also hold its mail: the default) or `suspend` (also refuse its sign-ins until re-enabled).
    #[schema(value_type = String)]
    pub policy: Policy,
}

#[utoipa::path(put, path = "/v1/tenants/{name}/incident-policy", operation_id = "set_incident_policy", tag = "incidents",
    params(("name" = String, Path, description = "The tenant")), request_body = IncidentPolicyBody,
    responses((status = 200, description = "The tenant with its new policy, for incidents opened from now on (admin)", body = Object)))]
pub async fn set_policy(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let body: IncidentPolicyBody = parse_body(body)?;
    caller.require(&[Role::Admin])?;
    crate::contract::change_tenant(&caller, &state, &name, "tenant.incident_policy", |t: &mut Tenant| {
        t.incident_policy = body.policy;
    })
    .await
}
