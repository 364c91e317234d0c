//! Usage and charge-back reports for finance, rendered as JSON, CSV or a
//! FinOps FOCUS 1.0 dataset: the same bytes from the CLI and the API.

use std::collections::BTreeMap;

use ferry_core::chargeback::{self, UsageReport};
use ferry_core::contract::Terms;
use ferry_core::metering::Alert;
use ferry_core::onboarding::Invalid;
use ferry_core::usage::{HOUR_MS, Scope};
use ferry_store::{Store, StoreError};
use serde_json::json;

/// How a usage report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    /// FinOps FOCUS 1.0 (CSV).
    Focus,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "focus" => Some(Format::Focus),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv | Format::Focus => "text/csv; charset=utf-8",
        }
    }
}

/// [from, to) from inclusive local days; defaults: the contract year's start, now.
pub fn period(terms: &Terms, from: Option<&str>, to: Option<&str>, now: u64) -> Result<(u64, u64), Invalid> {
    let day_start = |s: &str, field: &'static str, next: bool| -> Result<u64, Invalid> {
        let bad = |why: String| Invalid {
            field,
            code: "invalid_date",
            message: why,
        };
        // An exact instant (2026-11-24T05:00:00Z) is taken as it is: hour reports.
        if let Ok(instant) = s.parse::<jiff::Timestamp>() {
            return Ok(instant.as_millisecond().max(0) as u64);
        }
        let date: jiff::civil::Date = s
            .parse()
            .map_err(|_| bad(format!("{s}: expected YYYY-MM-DD or an RFC 3339 instant")))?;
        let date = if next {
            date.tomorrow().map_err(|_| bad(format!("{s}: out of range")))?
        } else {
            date
        };
        let zoned = date
            .to_zoned(terms.zone.clone())
            .map_err(|_| bad(format!("{s}: not a day in {:?}", terms.zone.iana_name())))?;
        Ok(zoned.timestamp().as_millisecond().max(0) as u64)
    };
    let from_ms = match from {
        Some(s) => day_start(s, "from", false)?,
        None => terms.year_of(now).start_ms,
    };
    let to_ms = match to {
        Some(s) => day_start(s, "to", true)?,
        None => (now / HOUR_MS + 1) * HOUR_MS,
    };
    if from_ms >= to_ms {
        return Err(Invalid {
            field: "from",
            code: "empty_period",
            message: "must come before to".into(),
        });
    }
    Ok((from_ms, to_ms))
}

pub async fn usage_report(
    store: &dyn Store,
    terms: &Terms,
    from_ms: u64,
    to_ms: u64,
) -> Result<UsageReport, StoreError> {
    let year_start = terms.year_of(from_ms).start_ms;
    let rows = store.hours(year_start / HOUR_MS, to_ms.div_ceil(HOUR_MS)).await?;
    let allocations: BTreeMap<String, chargeback::Allocation> = store
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.name, t.allocation))
        .collect();
    Ok(chargeback::report(terms, &allocations, &rows, from_ms, to_ms))
}

pub fn iso(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn money(cents: u128) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Whether an alert concerns a tenant: its own, or the organisation's that it drove.
pub fn concerns(alert: &Alert, tenant: &str) -> bool {
    match &alert.scope {
        Scope::Tenant(t) => t == tenant,
        Scope::Org => alert.drivers.iter().any(|d| d.tenant == tenant),
        Scope::App { .. } => false,
    }
}

/// The ids of the alerts that concern a tenant.
fn crossed(alerts: &[Alert], tenant: &str) -> String {
    alerts
        .iter()
        .filter(|a| concerns(a, tenant))
        .map(|a| a.id.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(fields: &[String]) -> String {
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// Whose report it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View<'a> {
    /// Every tenant, and the organisation's totals.
    All,
    /// One tenant's row, for finance or an admin.
    Tenant(&'a str),
    /// A tenant-admin's own row, with nothing from which the organisation's
    /// figures could be read: no totals, costs or excess, and no shares of
    /// the organisation's units.
    OwnTenant(&'a str),
}

impl View<'_> {
    fn shows(&self, tenant: &str) -> bool {
        match self {
            View::All => true,
            View::Tenant(t) | View::OwnTenant(t) => *t == tenant,
        }
    }
}

/// The organisation's figures a tenant-admin does not see.
const ORGANISATION_FIELDS: [&str; 6] = [
    "organisation",
    "yearly_excess_units",
    "peak_excess_units",
    "yearly_cost_cents",
    "peak_cost_cents",
    "cost_cents",
];

pub fn render(r: &UsageReport, alerts: &[Alert], view: View, format: Format, hostname: &str) -> String {
    let tenants: Vec<_> = r.tenants.iter().filter(|t| view.shows(&t.tenant)).collect();
    let own = matches!(view, View::OwnTenant(_));
    match format {
        Format::Json => {
            let mut value = json!(r);
            value["tenants"] = json!(tenants);
            value["alerts"] = json!(alerts);
            if own {
                without_organisation(&mut value);
            }
            format!("{value}\n")
        }
        Format::Csv => {
            let mut out = csv_line(&CSV_COLUMNS.map(String::from));
            for t in tenants {
                out.push_str(&csv_line(&[
                    iso(r.from_ms),
                    iso(r.to_ms),
                    t.tenant.clone(),
                    r.unit.to_string(),
                    t.row.usage.messages.to_string(),
                    t.row.usage.recipients.to_string(),
                    t.row.usage.bytes.to_string(),
                    if t.row.peak.units > 0 {
                        iso(t.row.peak.hour_start_ms)
                    } else {
                        String::new()
                    },
                    t.row.peak.units.to_string(),
                    if own {
                        String::new()
                    } else {
                        format!("{:.2}", t.row.share * 100.0)
                    },
                    crossed(alerts, &t.tenant),
                    money(t.yearly_charge_cents),
                    money(t.peak_charge_cents),
                    money(t.charge_cents),
                    r.currency.clone(),
                    t.reason.clone(),
                ]));
            }
            out
        }
        Format::Focus => focus(r, &tenants, hostname),
    }
}

fn without_organisation(value: &mut serde_json::Value) {
    if let Some(obj) = value.as_object_mut() {
        for field in ORGANISATION_FIELDS {
            obj.remove(field);
        }
    }
    for tenant in value["tenants"].as_array_mut().into_iter().flatten() {
        if let Some(row) = tenant.as_object_mut() {
            row.remove("share");
            // The reason quotes the tenants' excess in all.
            row.remove("reason");
        }
        for app in tenant["applications"]
            .as_object_mut()
            .into_iter()
            .flat_map(|a| a.values_mut())
        {
            if let Some(app) = app.as_object_mut() {
                app.remove("share");
            }
        }
    }
}

pub const CSV_COLUMNS: [&str; 16] = [
    "period_start",
    "period_end",
    "tenant",
    "unit",
    "messages",
    "recipients",
    "bytes",
    "peak_hour_start",
    "peak_hour_units",
    "share_percent",
    "thresholds_crossed",
    "yearly_excess_charge",
    "peak_excess_charge",
    "charge",
    "currency",
    "reason",
];

/// FOCUS 1.0 columns: one usage row per tenant (the sub-account) and period.
const FOCUS_COLUMNS: [&str; 27] = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
    "SubAccountId",
    "SubAccountName",
    "x_ChargeReason",
];

fn focus(r: &UsageReport, tenants: &[&chargeback::TenantRow], hostname: &str) -> String {
    let mut out = csv_line(&FOCUS_COLUMNS.map(String::from));
    for t in tenants {
        let cost = money(t.charge_cents);
        let units = match r.unit {
            "recipients" => t.row.usage.recipients,
            _ => t.row.usage.messages,
        };
        let unit = if r.unit == "recipients" {
            "Recipients"
        } else {
            "Messages"
        };
        out.push_str(&csv_line(&[
            cost.clone(),
            hostname.to_string(),
            format!("Ferry relay {hostname}"),
            r.currency.clone(),
            iso(r.to_ms),
            iso(r.from_ms),
            "Usage".into(),
            String::new(),
            format!(
                "E-mail relay charge-back: cost above the contracted volume ({})",
                t.reason
            ),
            "Usage-Based".into(),
            iso(r.to_ms),
            iso(r.from_ms),
            units.to_string(),
            unit.into(),
            cost.clone(),
            cost.clone(),
            "Ferry".into(),
            cost,
            units.to_string(),
            unit.into(),
            "Ferry".into(),
            "Ferry".into(),
            "Networking".into(),
            "E-mail relay".into(),
            t.tenant.clone(),
            t.tenant.clone(),
            t.reason.clone(),
        ]));
    }
    out
}
