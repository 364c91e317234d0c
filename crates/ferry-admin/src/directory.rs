//! Tenants and applications: list, show, create, disable, enable. Every
//! change is logged on target `ferry::audit` with the token that made it
//! (never a secret).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_core::onboarding::{self, NewApp, NewTenant};
use ferry_core::token::Role;
use ferry_core::{AppLimits, Application, Tenant};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::access::Caller;
use crate::problem::{Problem, parse_body};
use crate::secrets::{hash_password, random_secret};

/// A tenant as shown: a smart host's password never leaves the store.
pub fn public_tenant(tenant: &Tenant) -> Value {
    let mut v = json!(tenant);
    if let Some(password) = v.pointer_mut("/route/password")
        && !password.is_null()
    {
        *password = json!("********");
    }
    v
}

/// An application as shown: without its password hashes.
pub fn public_app(app: &Application) -> Value {
    let mut v = json!(app);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("password_hash");
        let until = app.previous_password.as_ref().map(|p| p.valid_until_ms);
        obj.insert("previous_password_valid_until_ms".into(), json!(until));
        obj.remove("previous_password");
    }
    v
}

pub(crate) fn audit(caller: &Caller, action: &str, target: &str) {
    tracing::info!(target: "ferry::audit", token = %caller.token_id, role = caller.role.name(), action, object = target, "admin change");
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody {
    name: String,
    domains: Vec<String>,
    #[serde(default)]
    subdomains_only: bool,
    #[serde(default)]
    contact: Option<String>,
}

pub async fn list_tenants(caller: Caller, State(state): State<AdminState>) -> Result<Json<Value>, Problem> {
    let tenants = state.store.tenants().await?;
    let visible: Vec<Value> = tenants
        .iter()
        .filter(|t| caller.sees(&t.name))
        .map(public_tenant)
        .collect();
    Ok(Json(json!(visible)))
}

pub async fn create_tenant(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(&[Role::Admin])?;
    let body: TenantBody = parse_body(body)?;
    let new = NewTenant {
        name: body.name,
        domains: body.domains,
        subdomains_only: body.subdomains_only,
        contact: body.contact,
    };
    let tenant = onboarding::tenant(new, state.clock.now_ms())?;
    state.store.create_tenant(tenant.clone()).await?;
    audit(&caller, "tenant.create", &tenant.name);
    Ok((StatusCode::CREATED, Json(public_tenant(&tenant))))
}

pub async fn show_tenant(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    let tenant = state
        .store
        .tenant(&name)
        .await?
        .filter(|t| caller.sees(&t.name))
        .ok_or_else(|| Problem::not_found(format!("tenant {name}")))?;
    let mut shown = json!({ "tenant": public_tenant(&tenant) });
    if caller.role != Role::Finance {
        let apps: Vec<String> = state
            .store
            .apps(Some(&name))
            .await?
            .into_iter()
            .map(|a| a.username)
            .collect();
        shown["applications"] = json!(apps);
    }
    Ok(Json(shown))
}

#[derive(Deserialize)]
pub struct AppFilter {
    tenant: Option<String>,
}

pub async fn list_apps(
    caller: Caller,
    State(state): State<AdminState>,
    Query(filter): Query<AppFilter>,
) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let apps = state.store.apps(filter.tenant.as_deref()).await?;
    let visible: Vec<Value> = apps.iter().filter(|a| caller.sees(&a.tenant)).map(public_app).collect();
    Ok(Json(json!(visible)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppBody {
    username: String,
    tenant: String,
    envelope_from: Vec<String>,
    #[serde(default)]
    header_from: Vec<String>,
    #[serde(default)]
    allowed_networks: Vec<String>,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    limits: LimitsBody,
    #[serde(default = "yes")]
    bulk_rules: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    max_message_bytes: Option<usize>,
    max_messages_per_session: Option<u32>,
    max_recipients: Option<usize>,
}

impl LimitsBody {
    /// The limits, each within what a session can enforce.
    fn limits(&self) -> Result<AppLimits, Problem> {
        let d = AppLimits::default();
        let limits = AppLimits {
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
            max_messages_per_session: self.max_messages_per_session.unwrap_or(d.max_messages_per_session),
            max_recipients: self.max_recipients.unwrap_or(d.max_recipients),
        };
        let out_of_range = |field: &str, range: &str| {
            Problem::invalid(
                "out_of_range",
                format!("limits.{field}"),
                format!("{field} must be {range}"),
            )
        };
        if !(1_024..=1_000_000_000).contains(&limits.max_message_bytes) {
            return Err(out_of_range("max_message_bytes", "between 1024 and 1000000000"));
        }
        if !(1..=100_000).contains(&limits.max_messages_per_session) {
            return Err(out_of_range("max_messages_per_session", "between 1 and 100000"));
        }
        if !(1..=10_000).contains(&limits.max_recipients) {
            return Err(out_of_range("max_recipients", "between 1 and 10000"));
        }
        Ok(limits)
    }
}

pub async fn create_app(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let body: AppBody = parse_body(body)?;
    let tenant = state
        .store
        .tenant(&body.tenant)
        .await?
        .filter(|t| caller.sees(&t.name))
        .ok_or_else(|| Problem::not_found(format!("tenant {}", body.tenant)))?;
    let new = NewApp {
        username: body.username,
        envelope_from: body.envelope_from,
        header_from: body.header_from,
        allowed_networks: body.allowed_networks,
        expires: body.expires,
        limits: body.limits.limits()?,
        bulk_rules: body.bulk_rules,
    };
    let password = random_secret();
    let now = state.clock.now_ms();
    let today = ferry_core::clock::utc_date(now);
    let hash = hash_password(&password)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let app = onboarding::application(new, &tenant, hash, today, now)?;
    state.store.create_app(app.clone()).await?;
    audit(&caller, "app.create", &app.username);
    let mut shown = public_app(&app);
    shown["password"] = json!(password);
    Ok((StatusCode::CREATED, Json(shown)))
}

pub(crate) async fn visible_app(caller: &Caller, state: &AdminState, name: &str) -> Result<Application, Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    state
        .store
        .app(name)
        .await?
        .filter(|a| caller.sees(&a.tenant))
        .ok_or_else(|| Problem::not_found(format!("application {name}")))
}

pub async fn show_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(public_app(&visible_app(&caller, &state, &name).await?)))
}

async fn set_enabled(caller: Caller, state: AdminState, name: String, enabled: bool) -> Result<Json<Value>, Problem> {
    let mut app = visible_app(&caller, &state, &name).await?;
    app.enabled = enabled;
    app.credential_version += 1;
    state.store.update_app(app.clone()).await?;
    audit(&caller, if enabled { "app.enable" } else { "app.disable" }, &name);
    Ok(Json(public_app(&app)))
}

pub async fn disable_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_enabled(caller, state, name, false).await
}

pub async fn enable_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_enabled(caller, state, name, true).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// RFC 3339: the old password works until then.
    old_password_valid_until: Option<String>,
}

/// A new password, shown once; the old one works until the time given (or
/// stops at once).
pub async fn rotate_password(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let mut app = visible_app(&caller, &state, &name).await?;
    let empty = body.as_ref().is_ok_and(|b| b.is_empty());
    let body: RotateBody = if empty {
        RotateBody::default()
    } else {
        parse_body(body)?
    };
    let until = match &body.old_password_valid_until {
        Some(s) => Some(
            s.parse::<jiff::Timestamp>()
                .map_err(|_| {
                    Problem::invalid(
                        "invalid_date",
                        "old_password_valid_until",
                        format!("{s}: expected an RFC 3339 instant"),
                    )
                })?
                .as_millisecond()
                .max(0) as u64,
        ),
        None => None,
    };
    let password = random_secret();
    let hash = hash_password(&password)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    onboarding::rotate_password(&mut app, hash, until, state.clock.now_ms())?;
    state.store.update_app(app).await?;
    audit(&caller, "app.rotate_password", &name);
    Ok(Json(json!({
        "username": name,
        "password": password,
        "old_password_valid_until": body.old_password_valid_until,
    })))
}
