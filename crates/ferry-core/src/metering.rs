//! What one accepted message does to the ledger: the counts it adds, the
//! hard caps it must stay under, and the alert thresholds it may cross. The
//! store applies a [`Metering`] in the same atomic operation that spools the
//! message, so two sessions racing across a threshold cannot both see it.

use serde::{Deserialize, Serialize};

use crate::config::Alerts;
use crate::contract::{ContractYear, Terms, Unit};
use crate::tenant::{Application, Caps, Tenant};
use crate::usage::{HOUR_MS, MINUTE_MS, Scope, Usage};

/// The counting windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Window {
    /// Minutes since the epoch.
    Minute(u64),
    /// Hours since the epoch (UTC).
    Hour(u64),
    /// A contract year, by its start.
    Year(ContractYear),
}

impl Window {
    pub fn code(&self) -> (u8, u64) {
        match self {
            Window::Minute(m) => (0, *m),
            Window::Hour(h) => (1, *h),
            Window::Year(y) => (2, y.start_ms),
        }
    }

    pub fn bounds_ms(&self) -> (u64, u64) {
        match self {
            Window::Minute(m) => (m * MINUTE_MS, (m + 1) * MINUTE_MS),
            Window::Hour(h) => (h * HOUR_MS, (h + 1) * HOUR_MS),
            Window::Year(y) => (y.start_ms, y.end_ms),
        }
    }
}

/// A hard limit this message must stay within.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapCheck {
    pub scope: Scope,
    pub window: Window,
    pub limit: u64,
    /// 451 4.7.1 (try later) rather than 550 5.7.1.
    pub temporary: bool,
    /// Names the limit in the reply, e.g. `hourly cap of 500 messages for tenant hr`.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Yearly,
    Hourly,
    Forecast,
    /// An application stopped behaving like itself (see `ferry_core::incident`).
    Incident,
    /// Mail held under an incident was discarded past its retention.
    HeldDiscarded,
}

/// A threshold that raises one alert, once, when crossed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// (scope, metric, threshold, period): the alert's idempotency key.
    pub id: String,
    pub kind: AlertKind,
    pub scope: Scope,
    pub window: Window,
    /// Crossed when the count (or projection) reaches this.
    pub limit: u64,
    pub label: String,
    /// For forecasts: the count is projected to the year's end by this factor.
    pub projection: Option<f64>,
}

/// Everything the store does for one message besides spooling it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metering {
    pub at_ms: u64,
    pub usage: Usage,
    pub unit: Unit,
    pub scopes: Vec<Scope>,
    pub year: ContractYear,
    /// Scopes that also need minute counts (they have a per-minute cap).
    pub minute_scopes: Vec<Scope>,
    pub caps: Vec<CapCheck>,
    pub thresholds: Vec<Threshold>,
}

/// The plan for one message of `app` (of `tenant`).
pub fn plan(terms: &Terms, alerts: &Alerts, tenant: &Tenant, app: &Application, usage: Usage, now_ms: u64) -> Metering {
    let year = terms.year_of(now_ms);
    let hour = Window::Hour(now_ms / HOUR_MS);
    let [org, tenant_scope, app_scope] = Scope::of_message(&tenant.name, &app.username);
    let caps = caps(terms, tenant, app, now_ms);
    let minute_scopes = caps
        .iter()
        .filter(|c| matches!(c.window, Window::Minute(_)))
        .map(|c| c.scope.clone())
        .collect();
    let mut thresholds = Vec::new();
    let unit = terms.unit.name();
    for (scope, yearly, hourly, whose) in [
        (&org, terms.yearly_total, terms.hourly_peak, "the contract's"),
        (
            &tenant_scope,
            tenant.allocation.yearly,
            tenant.allocation.hourly,
            "the tenant's allocated",
        ),
    ] {
        if let Some(total) = yearly {
            for pct in &alerts.yearly_percent {
                let limit = total.saturating_mul(*pct as u64).div_ceil(100).max(1);
                let label = format!("{pct} % of {whose} yearly total of {total} {unit}");
                thresholds.push(threshold(
                    AlertKind::Yearly,
                    scope,
                    Window::Year(year),
                    limit,
                    &pct.to_string(),
                    label,
                    None,
                ));
            }
        }
        if let (Some(peak), true) = (hourly, alerts.hourly_over_peak) {
            let label = format!("an hour above {whose} hourly peak of {peak} {unit}");
            thresholds.push(threshold(
                AlertKind::Hourly,
                scope,
                hour,
                peak.saturating_add(1),
                "peak",
                label,
                None,
            ));
        }
    }
    if let Some(total) = terms.yearly_total
        && let Some(factor) = year.projection_factor(now_ms, alerts.forecast_min_days)
    {
        for pct in &alerts.forecast_percent {
            let limit = total.saturating_mul(*pct as u64).div_ceil(100).max(1);
            let label = format!("year-end projection above {pct} % of the contract's yearly total of {total} {unit}");
            thresholds.push(threshold(
                AlertKind::Forecast,
                &org,
                Window::Year(year),
                limit,
                &pct.to_string(),
                label,
                Some(factor),
            ));
        }
    }
    Metering {
        at_ms: now_ms,
        usage,
        unit: terms.unit,
        scopes: vec![org, tenant_scope, app_scope],
        year,
        minute_scopes,
        caps,
        thresholds,
    }
}

/// The hard caps of a tenant and one of its applications at `now_ms`.
pub fn caps(terms: &Terms, tenant: &Tenant, app: &Application, now_ms: u64) -> Vec<CapCheck> {
    let year = terms.year_of(now_ms);
    let [_, tenant_scope, app_scope] = Scope::of_message(&tenant.name, &app.username);
    let mut caps = cap_checks(&tenant_scope, &tenant.caps, terms.unit, year, now_ms);
    caps.extend(cap_checks(&app_scope, &app.caps, terms.unit, year, now_ms));
    caps
}

fn threshold(
    kind: AlertKind,
    scope: &Scope,
    window: Window,
    limit: u64,
    level: &str,
    label: String,
    projection: Option<f64>,
) -> Threshold {
    let (_, period) = window.code();
    let id = format!(
        "{}:{}:{level}:{period}",
        serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        scope.key()
    );
    Threshold {
        id,
        kind,
        scope: scope.clone(),
        window,
        limit,
        label,
        projection,
    }
}

fn cap_checks(scope: &Scope, caps: &Caps, unit: Unit, year: ContractYear, now_ms: u64) -> Vec<CapCheck> {
    let unit = unit.name();
    let mut out = Vec::new();
    let mut push = |window: Window, limit: Option<u64>, what: &str, temporary: bool| {
        if let Some(limit) = limit {
            out.push(CapCheck {
                scope: scope.clone(),
                window,
                limit,
                temporary,
                name: format!("{what} cap of {limit} {unit} for {scope}"),
            });
        }
    };
    push(Window::Minute(now_ms / MINUTE_MS), caps.per_minute, "per-minute", true);
    push(Window::Hour(now_ms / HOUR_MS), caps.per_hour, "hourly", true);
    push(
        Window::Year(year),
        caps.per_year,
        "yearly",
        !caps.reject_when_year_exhausted,
    );
    out
}

/// An alert, as stored in the outbox and delivered to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Also the idempotency key of every delivery of this alert.
    pub id: String,
    pub kind: AlertKind,
    pub scope: Scope,
    pub threshold: String,
    pub unit: Unit,
    pub limit: u64,
    /// The count (or projection) when the threshold was crossed.
    pub value: u64,
    pub period_start_ms: u64,
    pub period_end_ms: u64,
    pub at_ms: u64,
    /// Who drove the crossing, largest share first.
    pub drivers: Vec<Driver>,
    /// Delivery state.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub delivered_ms: Option<u64>,
    /// For [`AlertKind::Incident`]: the incident, with its evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Box<crate::incident::Incident>>,
}

/// A tenant's part in a crossing, with its applications'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Driver {
    pub tenant: String,
    pub units: u64,
    pub share: f64,
    pub applications: Vec<AppShare>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppShare {
    pub application: String,
    pub units: u64,
    pub share: f64,
}

impl Metering {
    /// The alert `threshold` raises when this message crosses it, with the
    /// count (or projection) it reached and who drove it.
    pub fn alert(&self, threshold: &Threshold, value: u64, drivers: Vec<Driver>) -> Alert {
        let (start, end) = threshold.window.bounds_ms();
        Alert {
            id: threshold.id.clone(),
            kind: threshold.kind,
            scope: threshold.scope.clone(),
            threshold: threshold.label.clone(),
            unit: self.unit,
            limit: threshold.limit,
            value,
            period_start_ms: start,
            period_end_ms: end,
            at_ms: self.at_ms,
            drivers,
            attempts: 0,
            delivered_ms: None,
            incident: None,
        }
    }
}

/// Who drove a crossing: the tenants (with their applications) among
/// `apps` (tenant, application, units counted in the window), largest first,
/// with their shares of the scope's `total`.
pub fn drivers(total: u64, apps: impl IntoIterator<Item = (String, String, u64)>) -> Vec<Driver> {
    let total = total.max(1) as f64;
    let mut by_tenant: std::collections::BTreeMap<String, Driver> = std::collections::BTreeMap::new();
    for (tenant, application, units) in apps {
        let driver = by_tenant.entry(tenant.clone()).or_insert_with(|| Driver {
            tenant,
            units: 0,
            share: 0.0,
            applications: vec![],
        });
        driver.units += units;
        driver.applications.push(AppShare {
            application,
            units,
            share: units as f64 / total,
        });
    }
    let mut out: Vec<Driver> = by_tenant.into_values().collect();
    for d in &mut out {
        d.share = d.units as f64 / total;
        d.applications.sort_by_key(|a| std::cmp::Reverse(a.units));
    }
    out.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.tenant.cmp(&b.tenant)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;

    #[test]
    fn the_largest_allocation_plans_without_overflowing() {
        let terms = Contract {
            hourly_peak: Some(u64::MAX),
            yearly_total: Some(u64::MAX),
            ..Contract::default()
        }
        .terms()
        .expect("valid");
        let mut tenant = crate::tenant::tests_support::tenant("hr");
        tenant.allocation.yearly = Some(u64::MAX);
        tenant.allocation.hourly = Some(u64::MAX);
        let app = crate::tenant::tests_support::app("payroll", "hr");
        let now = terms.year_of(1_780_000_000_000).start_ms + 30 * 86_400_000;
        let m = plan(&terms, &Alerts::default(), &tenant, &app, Usage::default(), now);
        assert!(m.thresholds.iter().all(|t| t.limit > 0), "{:?}", m.thresholds);
    }

    #[test]
    fn plans_thresholds_caps_and_forecasts() {
        let terms = Contract {
            hourly_peak: Some(100),
            yearly_total: Some(1_000),
            ..Contract::default()
        }
        .terms()
        .expect("valid");
        let mut tenant = crate::tenant::tests_support::tenant("hr");
        tenant.allocation.yearly = Some(400);
        tenant.caps.per_hour = Some(50);
        let app = crate::tenant::tests_support::app("payroll", "hr");
        let now = terms.year_of(1_780_000_000_000).start_ms + 30 * 86_400_000;
        let m = plan(
            &terms,
            &Alerts::default(),
            &tenant,
            &app,
            Usage {
                messages: 1,
                recipients: 3,
                bytes: 10,
            },
            now,
        );
        let ids: Vec<&str> = m.thresholds.iter().map(|t| t.id.as_str()).collect();
        assert!(ids.iter().any(|i| i.starts_with("yearly:org:80:")));
        assert!(ids.iter().any(|i| i.starts_with("yearly:t:hr:50:")));
        assert!(ids.iter().any(|i| i.starts_with("hourly:org:peak:")));
        assert!(ids.iter().any(|i| i.starts_with("forecast:org:100:")));
        let t80 = m
            .thresholds
            .iter()
            .find(|t| t.id.starts_with("yearly:t:hr:80:"))
            .expect("tenant 80 %");
        assert_eq!(t80.limit, 320);
        assert_eq!(m.caps.len(), 1);
        assert!(m.caps[0].temporary && m.caps[0].name.contains("hourly cap of 50 messages for tenant hr"));
        let early = plan(
            &terms,
            &Alerts::default(),
            &tenant,
            &app,
            Usage::default(),
            terms.year_of(now).start_ms + 1,
        );
        assert!(
            !early.thresholds.iter().any(|t| t.kind == AlertKind::Forecast),
            "no forecast on day one"
        );
    }
}
