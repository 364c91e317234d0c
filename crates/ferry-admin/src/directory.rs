//! Tenants and applications: list, show, create, update, delete, disable,
//! enable, rotate a password. Every change goes to the audit log with the
//! token that made it and the record before and after (never a secret).

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
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::access::Caller;
use crate::audit::record as audit;
use crate::problem::{Problem, parse_body};
use crate::secrets::new_password_off_runtime;

/// A tenant as shown: a smart host's password never leaves the store.
pub fn public_tenant(tenant: &Tenant) -> Value {
    let mut v = json!(tenant);
    for secret in ["/route/password", "/events_webhook/secret"] {
        if let Some(value) = v.pointer_mut(secret)
            && !value.is_null()
        {
            *value = json!("********");
        }
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
    if let Some(secret) = v.pointer_mut("/events_webhook/secret") {
        *secret = json!("********");
    }
    v
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    pub name: String,
    pub domains: Vec<String>,
    #[serde(default)]
    pub subdomains_only: bool,
    #[serde(default)]
    pub contact: Option<String>,
}

#[utoipa::path(get, path = "/v1/tenants", operation_id = "list_tenants", tag = "tenants",
    responses((status = 200, description = "The tenants this token may see", body = [Object])))]
pub async fn list_tenants(caller: Caller, State(state): State<AdminState>) -> Result<Json<Value>, Problem> {
    let tenants = state.store.tenants().await?;
    let visible: Vec<Value> = tenants
        .iter()
        .filter(|t| caller.sees(&t.name))
        .map(public_tenant)
        .collect();
    Ok(Json(json!(visible)))
}

#[utoipa::path(post, path = "/v1/tenants", operation_id = "create_tenant", tag = "tenants", request_body = TenantBody,
    responses((status = 201, description = "Created (admin)", body = Object)))]
pub async fn create_tenant(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(&[Role::Admin])?;
    let body: TenantBody = parse_body(body)?;
    let tenant = onboarding::tenant(body.into_new(), state.clock.now_ms())?;
    state.store.create_tenant(tenant.clone()).await?;
    audit(
        &state,
        &caller,
        "tenant.create",
        &tenant.name,
        None,
        Some(public_tenant(&tenant)),
    )
    .await;
    Ok((StatusCode::CREATED, Json(public_tenant(&tenant))))
}

#[utoipa::path(get, path = "/v1/tenants/{name}", operation_id = "get_tenant", tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant, and its applications' names (not for finance)", body = Object)))]
pub async fn show_tenant(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    let tenant = visible_tenant(&caller, &state, &name).await?;
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppFilter {
    /// Only this tenant's applications.
    tenant: Option<String>,
}

#[utoipa::path(get, path = "/v1/apps", operation_id = "list_applications", tag = "applications", params(AppFilter),
    responses((status = 200, description = "The applications this token may see (admin, tenant-admin)", body = [Object])))]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppBody {
    pub username: String,
    pub tenant: String,
    pub envelope_from: Vec<String>,
    #[serde(default)]
    pub header_from: Vec<String>,
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// `YYYY-MM-DD`; a year from today when absent.
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub limits: LimitsBody,
    #[serde(default = "yes")]
    pub bulk_rules: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    pub max_message_bytes: Option<usize>,
    pub max_messages_per_session: Option<u32>,
    pub max_recipients: Option<usize>,
}

impl TenantBody {
    /// What the body asks for, for `onboarding::tenant` to check.
    pub fn into_new(self) -> NewTenant {
        NewTenant {
            name: self.name,
            domains: self.domains,
            subdomains_only: self.subdomains_only,
            contact: self.contact,
        }
    }
}

impl AppBody {
    /// What the body asks for, for `onboarding::application` to check
    /// (its tenant named apart); limits out of range are refused here.
    pub fn into_new(self) -> Result<NewApp, Problem> {
        Ok(NewApp {
            limits: self.limits.limits(AppLimits::default())?,
            username: self.username,
            envelope_from: self.envelope_from,
            header_from: self.header_from,
            allowed_networks: self.allowed_networks,
            expires: self.expires,
            bulk_rules: self.bulk_rules,
        })
    }
}

impl LimitsBody {
    /// The limits, those absent taken from `d`, each within what a session
    /// can enforce.
    pub fn limits(&self, d: AppLimits) -> Result<AppLimits, Problem> {
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

#[utoipa::path(post, path = "/v1/apps",
    operation_id = "create_application", tag = "applications", request_body = AppBody,
    responses((status = 201, description = "Created; `password` is shown this once", body = Object)))]
pub async fn create_app(
    caller: Caller,
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(&[Role::Admin, Role::TenantAdmin])?;
    let body: AppBody = parse_body(body)?;
    let tenant = visible_tenant(&caller, &state, &body.tenant).await?;
    let new = body.into_new()?;
    let (password, hash) = new_password_off_runtime().await.map_err(Problem::internal)?;
    let now = state.clock.now_ms();
    let today = ferry_core::clock::utc_date(now);
    let app = onboarding::application(new, &tenant, hash, today, now)?;
    state.store.create_app(app.clone()).await?;
    audit(
        &state,
        &caller,
        "app.create",
        &app.username,
        None,
        Some(public_app(&app)),
    )
    .await;
    let mut shown = public_app(&app);
    shown["password"] = json!(password);
    Ok((StatusCode::CREATED, Json(shown)))
}

/// The tenant `name` if this caller may see it; otherwise 404, the same
/// as for a tenant that does not exist.
pub(crate) async fn visible_tenant(caller: &Caller, state: &AdminState, name: &str) -> Result<Tenant, Problem> {
    state
        .store
        .tenant(name)
        .await?
        .filter(|t| caller.sees(&t.name))
        .ok_or_else(|| Problem::not_found(format!("tenant {name}")))
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

/// A directory record the API changes: its public form, its name in the
/// audit log, and its store update.
pub(crate) trait Record: Clone + Send {
    fn public(&self) -> Value;
    fn name(&self) -> &str;
    fn update(self, store: &dyn ferry_store::Store) -> impl Future<Output = ferry_store::Result<()>> + Send;
}

impl Record for Application {
    fn public(&self) -> Value {
        public_app(self)
    }
    fn name(&self) -> &str {
        &self.username
    }
    fn update(self, store: &dyn ferry_store::Store) -> impl Future<Output = ferry_store::Result<()>> + Send {
        store.update_app(self)
    }
}

impl Record for Tenant {
    fn public(&self) -> Value {
        public_tenant(self)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn update(self, store: &dyn ferry_store::Store) -> impl Future<Output = ferry_store::Result<()>> + Send {
        store.update_tenant(self)
    }
}

/// Applies `change` to `record`, stores it, and audits the change with the
/// record before and after; answers the record after (public form). A
/// refused change stores and audits nothing.
pub(crate) async fn save<R: Record>(
    caller: &Caller,
    state: &AdminState,
    mut record: R,
    action: &str,
    change: impl FnOnce(&mut R) -> Result<(), Problem>,
) -> Result<Value, Problem> {
    let before = record.public();
    change(&mut record)?;
    record.clone().update(state.store.as_ref()).await?;
    let after = record.public();
    audit(state, caller, action, record.name(), Some(before), Some(after.clone())).await;
    Ok(after)
}

#[utoipa::path(get, path = "/v1/apps/{name}", operation_id = "get_application", tag = "applications",
    params(("name" = String, Path, description = "The application's username")),
    responses((status = 200, description = "The application (never its password)", body = Object)))]
pub async fn show_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(public_app(&visible_app(&caller, &state, &name).await?)))
}

async fn set_enabled(caller: Caller, state: AdminState, name: String, enabled: bool) -> Result<Json<Value>, Problem> {
    let app = visible_app(&caller, &state, &name).await?;
    let action = if enabled { "app.enable" } else { "app.disable" };
    let after = save(&caller, &state, app, action, |app| {
        app.enabled = enabled;
        app.credential_version += 1;
        Ok(())
    })
    .await?;
    Ok(Json(after))
}

#[utoipa::path(post, path = "/v1/apps/{name}/disable", operation_id = "disable_application", tag = "applications",
    params(("name" = String, Path, description = "The application's username")),
    responses((status = 200, description = "Disabled: its next sign-in is refused", body = Object)))]
pub async fn disable_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_enabled(caller, state, name, false).await
}

#[utoipa::path(post, path = "/v1/apps/{name}/enable", operation_id = "enable_application", tag = "applications",
    params(("name" = String, Path, description = "The application's username")),
    responses((status = 200, description = "Enabled", body = Object)))]
pub async fn enable_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    set_enabled(caller, state, name, true).await
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// RFC 3339: the old password works until then.
    pub old_password_valid_until: Option<String>,
}

/// A new password, shown once; the old one works until the time given (or
/// stops at once).
#[utoipa::path(post, path = "/v1/apps/{name}/rotate-password",
    operation_id = "rotate_application_password", tag = "applications",
    params(("name" = String, Path, description = "The application's username")),
    request_body(content = Option<RotateBody>, description = "Optional: how long the old password keeps working"),
    responses((status = 200, description = "The new password, shown this once", body = Object)))]
pub async fn rotate_password(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let app = visible_app(&caller, &state, &name).await?;
    let empty = body.as_ref().is_ok_and(|b| b.is_empty());
    let body: RotateBody = if empty {
        RotateBody::default()
    } else {
        parse_body(body)?
    };
    let until = body
        .old_password_valid_until
        .as_deref()
        .map(|s| onboarding::instant_ms("old_password_valid_until", s))
        .transpose()?;
    let (password, hash) = new_password_off_runtime().await.map_err(Problem::internal)?;
    let now = state.clock.now_ms();
    save(&caller, &state, app, "app.rotate_password", |app| {
        Ok(onboarding::rotate_password(app, hash, until, now)?)
    })
    .await?;
    Ok(Json(json!({
        "username": name,
        "password": password,
        "old_password_valid_until": body.old_password_valid_until,
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantChanges {
    pub domains: Option<Vec<String>>,
    pub subdomains_only: Option<bool>,
    /// Who to tell about this tenant; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub contact: Option<Option<String>>,
}

impl TenantChanges {
    /// The tenant as these changes would leave it, for `onboarding::tenant` to check.
    pub fn applied_to(self, tenant: &Tenant) -> NewTenant {
        NewTenant {
            name: tenant.name.clone(),
            domains: self.domains.unwrap_or_else(|| tenant.domains.clone()),
            subdomains_only: self.subdomains_only.unwrap_or(tenant.subdomains_only),
            contact: self.contact.unwrap_or_else(|| tenant.contact.clone()),
        }
    }
}

/// Tells a field sent as `null` (Some(None)) from one left out (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/v1/tenants/{name}", operation_id = "update_tenant", tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    request_body = TenantChanges,
    responses((status = 200, description = "Updated (admin). Domains still used by an application's senders cannot be removed.", body = Object)))]
pub async fn update_tenant(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let changes: TenantChanges = parse_body(body)?;
    let tenant = visible_tenant(&caller, &state, &name).await?;
    let apps = state.store.apps(Some(&name)).await?;
    let after = save(&caller, &state, tenant, "tenant.update", |tenant| {
        let checked = onboarding::tenant(changes.applied_to(tenant), tenant.created_ms)?;
        tenant.domains = checked.domains;
        tenant.subdomains_only = checked.subdomains_only;
        tenant.contact = checked.contact;
        onboarding::senders_still_owned(tenant, &apps).map_err(|e| Problem {
            status: StatusCode::CONFLICT,
            ..e.into()
        })
    })
    .await?;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/v1/tenants/{name}", operation_id = "delete_tenant", tag = "tenants",
    params(("name" = String, Path, description = "The tenant")),
    responses((status = 204, description = "Deleted (admin); 409 while it has applications")))]
pub async fn delete_tenant(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(&[Role::Admin])?;
    let before = visible_tenant(&caller, &state, &name).await?;
    state.store.delete_tenant(&name).await?;
    audit(
        &state,
        &caller,
        "tenant.delete",
        &name,
        Some(public_tenant(&before)),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppChangesBody {
    pub envelope_from: Option<Vec<String>>,
    pub header_from: Option<Vec<String>>,
    pub allowed_networks: Option<Vec<String>>,
    /// `YYYY-MM-DD`.
    pub expires: Option<String>,
    pub limits: Option<LimitsBody>,
    pub bulk_rules: Option<bool>,
}

impl AppChangesBody {
    /// The changes asked for; new limits start from the application's `current` ones.
    pub fn into_changes(self, current: AppLimits) -> Result<onboarding::AppChanges, Problem> {
        Ok(onboarding::AppChanges {
            limits: self.limits.as_ref().map(|l| l.limits(current)).transpose()?,
            envelope_from: self.envelope_from,
            header_from: self.header_from,
            allowed_networks: self.allowed_networks,
            expires: self.expires,
            bulk_rules: self.bulk_rules,
        })
    }
}

#[utoipa::path(patch, path = "/v1/apps/{name}", operation_id = "update_application", tag = "applications",
    params(("name" = String, Path, description = "The application's username")),
    request_body = AppChangesBody,
    responses((status = 200, description = "Updated; takes effect at its next message", body = Object)))]
pub async fn update_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let app = visible_app(&caller, &state, &name).await?;
    let body: AppChangesBody = parse_body(body)?;
    let tenant = visible_tenant(&caller, &state, &app.tenant).await?;
    let changes = body.into_changes(app.limits)?;
    let after = save(&caller, &state, app, "app.update", |app| {
        Ok(onboarding::update_application(app, changes, &tenant)?)
    })
    .await?;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/v1/apps/{name}", operation_id = "delete_application", tag = "applications",
    params(("name" = String, Path, description = "The application's username")),
    responses((status = 204, description = "Deleted: it cannot sign in any more; its usage stays in the reports")))]
pub async fn delete_app(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    let app = visible_app(&caller, &state, &name).await?;
    state.store.delete_app(&name).await?;
    audit(&state, &caller, "app.delete", &name, Some(public_app(&app)), None).await;
    Ok(StatusCode::NO_CONTENT)
}
