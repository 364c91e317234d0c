//! Reports over the API: usage and charge-back (JSON, CSV or FOCUS, chosen
//! by `?format=` or the `Accept` header), and the alert log. Finance and
//! admins see every tenant; a tenant-admin sees its own tenant's row and
//! alerts only — no organisation totals, no other tenant.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ferry_core::chargeback;
use ferry_core::metering::Alert;
use ferry_core::token::Role;
use ferry_core::usage::{HOUR_MS, Scope};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::AdminState;
use crate::access::Caller;
use crate::problem::Problem;
use crate::report::{self, Format};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// First day (`YYYY-MM-DD`, in the contract's zone) or an instant
    /// (RFC 3339); default: the contract year's start.
    from: Option<String>,
    /// Last day, included, or an instant, excluded; default: now.
    to: Option<String>,
    /// Only this tenant (a tenant-admin: its own, always).
    tenant: Option<String>,
    /// `json`, `csv` or `focus` (usage only); default: from `Accept`, else JSON.
    format: Option<String>,
}

/// `?format=` first, then `Accept`; JSON by default.
fn format_of(query: Option<&str>, headers: &HeaderMap) -> Result<Format, Problem> {
    if let Some(name) = query {
        return Format::parse(name).ok_or_else(|| {
            Problem::invalid(
                "invalid_format",
                "format",
                format!("{name}: expected json, csv or focus"),
            )
        });
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    Ok(if accept.contains("text/csv") {
        Format::Csv
    } else {
        Format::Json
    })
}

fn in_scope(caller: &Caller, alert: &Alert) -> bool {
    match (&caller.role, &alert.scope) {
        (Role::TenantAdmin, Scope::Tenant(t)) => caller.sees(t),
        (Role::TenantAdmin, _) => false,
        _ => true,
    }
}

/// The tenant a report is limited to: a tenant-admin's own, or the one
/// asked for. A tenant-admin asking for another tenant's: 404.
fn report_tenant(caller: &Caller, asked: Option<&String>) -> Result<Option<String>, Problem> {
    let only = match caller.role {
        Role::TenantAdmin => caller.tenant.clone(),
        _ => asked.cloned(),
    };
    if let (Some(asked), Some(own)) = (asked, &only)
        && asked != own
    {
        return Err(Problem::not_found(format!("tenant {asked}")));
    }
    Ok(only)
}

/// What a report call asks for, checked: its format, the tenant it is
/// limited to, and its period [from_ms, to_ms).
struct Asked {
    format: Format,
    tenant: Option<String>,
    from_ms: u64,
    to_ms: u64,
}

impl Period {
    fn asked(&self, caller: &Caller, state: &AdminState, headers: &HeaderMap) -> Result<Asked, Problem> {
        let format = format_of(self.format.as_deref(), headers)?;
        let tenant = report_tenant(caller, self.tenant.as_ref())?;
        let (from_ms, to_ms) = self.period(state)?;
        Ok(Asked {
            format,
            tenant,
            from_ms,
            to_ms,
        })
    }

    fn period(&self, state: &AdminState) -> Result<(u64, u64), Problem> {
        let now = state.clock.now_ms();
        Ok(report::period(
            &state.terms,
            self.from.as_deref(),
            self.to.as_deref(),
            now,
        )?)
    }
}

fn with_content_type(body: String, format: Format) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

#[utoipa::path(get, path = "/v1/reports/usage", operation_id = "get_usage_report", tag = "reports", params(Period),
    responses((status = 200, description = "Usage and charge-back per tenant and application (admin, finance; a tenant-admin its own)",
        content((Object = "application/json"), (String = "text/csv")))))]
pub async fn usage(
    caller: Caller,
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<Period>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = query?;
    let Asked {
        format,
        tenant,
        from_ms,
        to_ms,
    } = q.asked(&caller, &state, &headers)?;
    let usage = report::usage_report(state.store.as_ref(), &state.terms, from_ms, to_ms).await?;
    let alerts = scoped_alerts(&caller, &state, from_ms, to_ms).await?;
    let view = match (caller.role, tenant.as_deref()) {
        (Role::TenantAdmin, Some(own)) => report::View::OwnTenant(own),
        (_, Some(one)) => report::View::Tenant(one),
        (_, None) => report::View::All,
    };
    let body = report::render(&usage, &alerts, view, format, &state.hostname);
    Ok(with_content_type(body, format))
}

/// Per application: relayed, refused by reason, delivered, deferred, bounced.
#[utoipa::path(get, path = "/v1/reports/outcomes",
    operation_id = "get_outcomes_report", tag = "reports", params(Period),
    responses((status = 200, description = "Per application: relayed, refused by reason, delivered, deferred, bounced (admin, finance; a tenant-admin its own)",
        content((Object = "application/json"), (String = "text/csv")))))]
pub async fn outcomes(
    caller: Caller,
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<Period>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = query?;
    let Asked {
        format,
        tenant,
        from_ms,
        to_ms,
    } = q.asked(&caller, &state, &headers)?;
    if format == Format::Focus {
        return Err(Problem::invalid(
            "invalid_format",
            "format",
            "the outcome report is json or csv (FOCUS is for cost)",
        ));
    }
    let rows = crate::outcomes::report(state.store.as_ref(), from_ms, to_ms, tenant.as_deref()).await?;
    let body = match format {
        Format::Csv => crate::outcomes::csv(&rows, from_ms, to_ms),
        _ => crate::outcomes::json(&rows, from_ms, to_ms),
    };
    Ok(with_content_type(body, format))
}

/// The contract year so far per tenant, and the hourly series of the period.
#[utoipa::path(get, path = "/v1/reports/overview",
    operation_id = "get_overview_report", tag = "reports", params(Period),
    responses((status = 200, description = "This contract year per tenant: allocation, use, forecast to the year's end, thresholds crossed, charge-back so far, the year's peak hour; and the hourly series of the period (admin, finance; a tenant-admin its own tenant, without the organisation's figures)", body = Object)))]
pub async fn overview(
    caller: Caller,
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<Period>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query?;
    let Asked {
        format,
        tenant,
        from_ms,
        to_ms,
    } = q.asked(&caller, &state, &headers)?;
    if format != Format::Json {
        return Err(Problem::invalid("invalid_format", "format", "the overview is json"));
    }
    let now_ms = state.clock.now_ms();
    let year = state.terms.year_of(now_ms);
    let now_hour_end = (now_ms / HOUR_MS + 1) * HOUR_MS;
    // One read of each: the tenants (allocations for the report, rows for
    // the page) and the hour buckets covering both the year so far and
    // the period's series.
    let all_tenants = state.store.tenants().await?;
    let first_hour = state.terms.year_of(year.start_ms.min(from_ms)).start_ms / HOUR_MS;
    let rows = state
        .store
        .hours(first_hour, now_hour_end.max(to_ms).div_ceil(HOUR_MS))
        .await?;
    let allocations = all_tenants.iter().map(|t| (t.name.clone(), t.allocation)).collect();
    let year_to_date = chargeback::report(&state.terms, &allocations, &rows, year.start_ms, now_hour_end);
    let tenants: Vec<_> = all_tenants
        .into_iter()
        .filter(|t| caller.sees(&t.name) && tenant.as_ref().is_none_or(|only| *only == t.name))
        .map(|t| (t.name, t.allocation))
        .collect();
    if let Some(only) = &tenant
        && tenants.is_empty()
    {
        return Err(Problem::not_found(format!("tenant {only}")));
    }
    let alerts = scoped_alerts(&caller, &state, year.start_ms, year.end_ms).await?;
    let inputs = crate::overview::Inputs {
        terms: &state.terms,
        year,
        now_ms,
        forecast_min_days: state.forecast_min_days,
        year_to_date: &year_to_date,
        tenants: &tenants,
        alerts: &alerts,
        series: &rows,
        from_ms,
        to_ms,
    };
    let mut value = crate::overview::build(&inputs, caller.role != Role::TenantAdmin);
    value["caller"] = json!({ "role": caller.role, "tenant": caller.tenant });
    Ok(Json(value))
}

#[utoipa::path(get, path = "/v1/alerts", operation_id = "list_alerts", tag = "reports", params(Period),
    responses((status = 200, description = "Alerts raised in the period, with their delivery state", body = [Object])))]
pub async fn alerts(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<Period>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query?;
    let (from_ms, to_ms) = q.period(&state)?;
    Ok(Json(json!(scoped_alerts(&caller, &state, from_ms, to_ms).await?)))
}

/// The alerts of the period that the caller may see.
async fn scoped_alerts(caller: &Caller, state: &AdminState, from_ms: u64, to_ms: u64) -> Result<Vec<Alert>, Problem> {
    let all = state.store.alerts(from_ms, to_ms).await?;
    Ok(all.into_iter().filter(|a| in_scope(caller, a)).collect())
}
