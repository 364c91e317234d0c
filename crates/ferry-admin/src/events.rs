//! What happened to each application's mail, read by cursor (see
//! `ferry_core::event`), each tenant's suppression list, and the tenant's
//! bounce settings. A tenant-admin reads and changes only its own tenant's;
//! finance sees none of it (events name recipients).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_core::event::{Event, EventKind, EventsWebhook};
use ferry_core::suppression::{self, Reason, Suppression};
use ferry_core::token::Role;
use ferry_core::{SuppressedMail, Tenant, onboarding};
use ferry_store::{Changes, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::access::Caller;
use crate::directory::visible_tenant;
use crate::problem::{Problem, parse_body};

/// The most events one page holds (a page ends with a whole state
/// change, so it may run over by that change's other recipients).
const MAX_EVENTS: usize = 1000;
/// The most suppression entries one call lists.
const MAX_SUPPRESSIONS: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// The tenant; may be left out when `app` is given (a tenant-admin's own, whatever it asks).
    tenant: Option<String>,
    /// Only this application's events.
    app: Option<String>,
    /// Only events of this kind (`accepted`, `delivered`, `deferred`, `bounced`, `complained`, `suppressed`, `expired`).
    kind: Option<String>,
    /// The `next` of the previous page; from the oldest kept when left out.
    after: Option<String>,
    /// Events per page (default 100, at most 1000).
    limit: Option<usize>,
}

/// One page of events.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Oldest first; each `id` is unique and stable (de-duplicate by it).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Event>,
    /// Pass as `after` for the next page; the same as `after` when there
    /// was nothing new.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", operation_id = "list_events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "Events after the cursor, oldest first (admin; a tenant-admin its own tenant's)", body = EventPage)))]
pub async fn list_events(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventPage>, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let Query(q) = query?;
    let tenant = events_tenant(&caller, &state, q.tenant.as_deref(), q.app.as_deref()).await?;
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(
            EventKind::parse(k)
                .ok_or_else(|| Problem::invalid("invalid_kind", "kind", format!("{k:?} is not an event kind")))?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_EVENTS);
    let mut page = EventPage {
        events: Vec::new(),
        next: q.after.clone(),
    };
    // Records that another application's or kind's filter skips still
    // move the cursor, so a page may need several reads.
    while page.events.len() < limit {
        let records = match state.store.events(&tenant, page.next.as_deref(), limit).await {
            Err(StoreError::Invalid(_)) => {
                return Err(Problem::invalid(
                    "invalid_cursor",
                    "after",
                    "not a cursor this API gave out",
                ));
            }
            other => other?,
        };
        let Some((last, _)) = records.last() else { break };
        page.next = Some(last.clone());
        for (cursor, record) in &records {
            if q.app.as_deref().is_none_or(|a| a == record.app) && kind.is_none_or(|k| k == record.kind) {
                page.events.extend(record.events(cursor));
            }
        }
        if records.len() < limit {
            break;
        }
    }
    Ok(Json(page))
}

/// The tenant whose log to read: a tenant-admin's own; else the one
/// named, or the application's.
async fn events_tenant(
    caller: &Caller,
    state: &AdminState,
    tenant: Option<&str>,
    app: Option<&str>,
) -> Result<String, Problem> {
    if let Some(name) = tenant {
        return Ok(visible_tenant(caller, state, name).await?.name);
    }
    if let Some(app) = app {
        return Ok(crate::directory::visible_app(caller, state, app).await?.tenant);
    }
    match (&caller.role, &caller.tenant) {
        (Role::TenantAdmin, Some(own)) => Ok(own.clone()),
        _ => Err(Problem::invalid(
            "tenant_required",
            "tenant",
            "name a tenant or an application",
        )),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SuppressionsQuery {
    /// The tenant (a tenant-admin's own, whatever it asks).
    tenant: Option<String>,
    /// Only addresses containing this text (case-insensitive).
    search: Option<String>,
    /// At most this many, in address order (default and maximum 1000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/suppressions", operation_id = "list_suppressions", tag = "suppressions", params(SuppressionsQuery),
    responses((status = 200, description = "The tenant's suppressed recipients, lapsed entries included (admin; a tenant-admin its own)", body = [Object])))]
pub async fn list_suppressions(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<SuppressionsQuery>, QueryRejection>,
) -> Result<Json<Vec<Suppression>>, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let Query(q) = query?;
    let tenant = events_tenant(&caller, &state, q.tenant.as_deref(), None).await?;
    let limit = q.limit.unwrap_or(MAX_SUPPRESSIONS).clamp(1, MAX_SUPPRESSIONS);
    Ok(Json(
        state.store.suppressions(&tenant, q.search.as_deref(), limit).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionBody {
    /// The tenant (a tenant-admin's own).
    pub tenant: Option<String>,
    pub recipient: String,
    /// RFC 3339; the entry lapses then. Never when left out.
    pub expires: Option<String>,
    /// Why, for the list and the audit log.
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/v1/suppressions", operation_id = "add_suppression", tag = "suppressions", request_body = SuppressionBody,
    responses((status = 201, description = "Added, or replaced the recipient's entry (admin; a tenant-admin to its own)", body = Object)))]
pub async fn add_suppression(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Suppression>), Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let body: SuppressionBody = parse_body(body)?;
    let tenant = events_tenant(&caller, &state, body.tenant.as_deref(), None).await?;
    let recipient = suppression::normalise(&body.recipient);
    if !suppression::valid_recipient(&recipient) {
        return Err(Problem::invalid(
            "invalid_recipient",
            "recipient",
            format!("{:?} is not an address", body.recipient),
        ));
    }
    let expires_ms = body
        .expires
        .as_deref()
        .map(|e| onboarding::instant_ms("expires", e))
        .transpose()?;
    let entry = Suppression {
        tenant,
        recipient,
        reason: Reason::Manual,
        at_ms: state.clock.now_ms(),
        expires_ms,
        source: format!("api: {}", body.note.as_deref().unwrap_or("added by hand")),
    };
    state
        .store
        .append_events(Changes {
            events: Vec::new(),
            suppress: vec![entry.clone()],
        })
        .await?;
    let what = format!("{}/{}", entry.tenant, entry.recipient);
    let after = serde_json::to_value(&entry).ok();
    crate::audit::record(&state, &caller, "suppression.add", &what, None, after).await;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[utoipa::path(delete, path = "/v1/suppressions/{tenant}/{recipient}", operation_id = "remove_suppression", tag = "suppressions",
    params(("tenant" = String, Path, description = "The tenant"), ("recipient" = String, Path, description = "The suppressed address")),
    responses((status = 204, description = "Removed: mail to the recipient is sent again (admin; a tenant-admin from its own)")))]
pub async fn remove_suppression(
    caller: Caller,
    State(state): State<AdminState>,
    Path((tenant, recipient)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let tenant = visible_tenant(&caller, &state, &tenant).await?.name;
    let recipient = suppression::normalise(&recipient);
    let before = state.store.suppression(&tenant, &recipient, 0).await?;
    if !state.store.unsuppress(&tenant, &recipient).await? {
        return Err(Problem::not_found(format!("suppression of {recipient} in {tenant}")));
    }
    let before = before.and_then(|b| serde_json::to_value(b).ok());
    let what = format!("{tenant}/{recipient}");
    crate::audit::record(&state, &caller, "suppression.remove", &what, before, None).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BouncesBody {
    /// A subdomain of one of the tenant's domains whose MX is Ferry's
    /// inbound listener; `null` or left out: the applications' own
    /// envelope-From, as sent.
    pub domain: Option<String>,
    /// Forward each report taken in to the application's own envelope-From.
    #[serde(default)]
    pub forward: bool,
    /// Mail to a suppressed recipient: `refuse` (550 5.1.1 at RCPT, the default) or `drop` (accepted, not sent, a `suppressed` event).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub suppressed: SuppressedMail,
}

#[utoipa::path(put, path = "/v1/tenants/{name}/bounces", operation_id = "set_tenant_bounces", tag = "suppressions",
    params(("name" = String, Path, description = "The tenant")), request_body = BouncesBody,
    responses((status = 200, description = "The tenant with its new bounce settings (admin)", body = Object)))]
pub async fn set_bounces(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let body: BouncesBody = parse_body(body)?;
    caller.require(&[Role::Admin])?;
    let tenant = visible_tenant(&caller, &state, &name).await?;
    let domain = match body.domain.as_deref() {
        Some(d) => Some(onboarding::bounce_domain(d, &tenant, &state.store.tenants().await?)?),
        None => None,
    };
    crate::contract::change_tenant(&caller, &state, &name, "tenant.bounces", |t: &mut Tenant| {
        t.bounces.domain = domain;
        t.bounces.forward = body.forward;
        t.bounces.suppressed = body.suppressed;
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// Where the events are POSTed: `https://` (or `http://`).
    pub url: String,
    /// The key that signs each body (`X-Ferry-Signature: sha256=<hex>`); made for you when left out, and shown once.
    pub secret: Option<String>,
}

/// The webhook as registered, its secret shown this once.
#[derive(Serialize, ToSchema)]
pub struct WebhookCreated {
    pub url: String,
    pub secret: String,
}

fn webhook(body: WebhookBody, now_ms: u64) -> Result<EventsWebhook, Problem> {
    let url = body.url.trim().to_string();
    let parsed = url.parse::<axum::http::Uri>().ok();
    let web = parsed
        .as_ref()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !web {
        return Err(Problem::invalid("invalid_url", "url", "an http:// or https:// URL"));
    }
    let secret = match body.secret {
        Some(s) if s.len() < 16 => {
            return Err(Problem::invalid("weak_secret", "secret", "at least 16 characters"));
        }
        Some(s) => s,
        None => {
            let bytes: [u8; 24] = rand::random();
            hex::encode(bytes)
        }
    };
    Ok(EventsWebhook {
        url,
        secret,
        created_ms: now_ms,
    })
}

/// A record a webhook hangs on: a tenant or an application.
trait WithWebhook: crate::directory::Record {
    fn webhook(&mut self) -> &mut Option<EventsWebhook>;
}

impl WithWebhook for ferry_core::Application {
    fn webhook(&mut self) -> &mut Option<EventsWebhook> {
        &mut self.events_webhook
    }
}

impl WithWebhook for Tenant {
    fn webhook(&mut self) -> &mut Option<EventsWebhook> {
        &mut self.events_webhook
    }
}

/// Registers `body`'s webhook on the record (replacing one), in the audit log.
async fn register<R: WithWebhook>(
    caller: &Caller,
    state: &AdminState,
    record: R,
    action: &str,
    body: WebhookBody,
) -> Result<Json<WebhookCreated>, Problem> {
    let hook = webhook(body, state.clock.now_ms())?;
    let created = WebhookCreated {
        url: hook.url.clone(),
        secret: hook.secret.clone(),
    };
    crate::directory::save(caller, state, record, action, |r| {
        *r.webhook() = Some(hook);
        Ok(())
    })
    .await?;
    Ok(Json(created))
}

/// Removes the record's webhook, in the audit log.
async fn unregister<R: WithWebhook>(
    caller: &Caller,
    state: &AdminState,
    mut record: R,
    action: &str,
) -> Result<StatusCode, Problem> {
    if record.webhook().is_none() {
        return Err(Problem::not_found(format!("webhook of {}", record.name())));
    }
    crate::directory::save(caller, state, record, action, |r| {
        *r.webhook() = None;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/apps/{name}/webhook", operation_id = "set_application_webhook", tag = "events",
    params(("name" = String, Path, description = "The application's username")), request_body = WebhookBody,
    responses((status = 200, description = "Registered: the application's events are POSTed there (admin; a tenant-admin for its own applications)", body = WebhookCreated)))]
pub async fn set_app_webhook(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookCreated>, Problem> {
    let body: WebhookBody = parse_body(body)?;
    let app = crate::directory::visible_app(&caller, &state, &name).await?;
    register(&caller, &state, app, "app.webhook", body).await
}

#[utoipa::path(delete, path = "/v1/apps/{name}/webhook", operation_id = "remove_application_webhook", tag = "events",
    params(("name" = String, Path, description = "The application's username")),
    responses((status = 204, description = "Removed: no more events are POSTed for the application")))]
pub async fn remove_app_webhook(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    let app = crate::directory::visible_app(&caller, &state, &name).await?;
    unregister(&caller, &state, app, "app.webhook.remove").await
}

#[utoipa::path(put, path = "/v1/tenants/{name}/webhook", operation_id = "set_tenant_webhook", tag = "events",
    params(("name" = String, Path, description = "The tenant")), request_body = WebhookBody,
    responses((status = 200, description = "Registered: all the tenant's applications' events are POSTed there (admin; a tenant-admin for its own)", body = WebhookCreated)))]
pub async fn set_tenant_webhook(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<WebhookCreated>, Problem> {
    let body: WebhookBody = parse_body(body)?;
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let tenant = visible_tenant(&caller, &state, &name).await?;
    register(&caller, &state, tenant, "tenant.webhook", body).await
}

#[utoipa::path(delete, path = "/v1/tenants/{name}/webhook", operation_id = "remove_tenant_webhook", tag = "events",
    params(("name" = String, Path, description = "The tenant")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_tenant_webhook(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let tenant = visible_tenant(&caller, &state, &name).await?;
    unregister(&caller, &state, tenant, "tenant.webhook.remove").await
}
