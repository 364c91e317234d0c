//! The contract year at a glance, per tenant — what the dashboard shows:
//! usage against the allocation, the straight-line forecast to the year's
//! end, the thresholds crossed and when, the charge-back so far, the year's
//! peak hour, and the hourly series of a chosen period. Every figure comes
//! from the same report code as `/v1/reports/usage`, so the page and the
//! CSV cannot disagree.

use ferry_core::chargeback::{Allocation, Peak, UsageReport};
use ferry_core::contract::{ContractYear, Terms};
use ferry_core::metering::Alert;
use ferry_core::usage::{HOUR_MS, HourUsage, Scope};
use serde_json::{Value, json};

use crate::report::{concerns, iso};

/// What the overview is made from, read from the store by the caller.
pub struct Inputs<'a> {
    pub terms: &'a Terms,
    pub year: ContractYear,
    pub now_ms: u64,
    pub forecast_min_days: u32,
    /// The usage report from the year's start to now.
    pub year_to_date: &'a UsageReport,
    /// Every tenant the caller may see, with its allocation, by name.
    pub tenants: &'a [(String, Allocation)],
    /// The year's alerts the caller may see.
    pub alerts: &'a [Alert],
    /// Hour buckets covering at least the chosen period [from_ms, to_ms)
    /// (the series keeps only the period's).
    pub series: &'a [HourUsage],
    pub from_ms: u64,
    pub to_ms: u64,
}

fn peak(p: Peak) -> Value {
    if p.units == 0 {
        Value::Null
    } else {
        json!({ "hour_start": iso(p.hour_start_ms), "units": p.units })
    }
}

/// The non-empty hours of one scope in the period: `[hour start, units]`.
fn series_of(inputs: &Inputs, scope: &Scope) -> Value {
    let unit = inputs.terms.unit;
    let points: Vec<Value> = inputs
        .series
        .iter()
        .filter(|r| &r.scope == scope)
        .filter(|r| r.hour * HOUR_MS >= inputs.from_ms && r.hour * HOUR_MS < inputs.to_ms)
        .map(|r| json!([iso(r.hour * HOUR_MS), r.usage.units(unit)]))
        .collect();
    Value::Array(points)
}

fn threshold(a: &Alert) -> Value {
    let whose = match &a.scope {
        Scope::Org => "organisation".to_string(),
        Scope::Tenant(t) => t.clone(),
        Scope::App { tenant, app } => format!("{tenant}/{app}"),
    };
    json!({
        "id": a.id,
        "whose": whose,
        "driven_by": a.drivers.iter().map(|d| &d.tenant).collect::<Vec<_>>(),
        "kind": a.kind,
        "threshold": a.threshold,
        "limit": a.limit,
        "value": a.value,
        "at": iso(a.at_ms),
    })
}

/// The overview; `organisation` is left out when `with_organisation` is
/// false (a tenant-admin sees its own tenant only).
pub fn build(inputs: &Inputs, with_organisation: bool) -> Value {
    let unit = inputs.terms.unit;
    let factor = inputs.year.projection_factor(inputs.now_ms, inputs.forecast_min_days);
    let forecast = |used: u64| factor.map(|f| (used as f64 * f).round() as u64);
    let ytd = inputs.year_to_date;
    let tenants: Vec<Value> = inputs
        .tenants
        .iter()
        .map(|(name, allocation)| {
            let row = ytd.tenants.iter().find(|t| &t.tenant == name);
            let used = row.map_or(0, |t| t.row.usage.units(unit));
            json!({
                "tenant": name,
                "allocation": allocation,
                "used": used,
                "forecast": forecast(used),
                "charge_cents": row.map_or(0, |t| t.charge_cents),
                // The reason quotes the tenants' excess in all: not for a tenant's eyes.
                "charge_reason": row.filter(|_| with_organisation).map(|t| t.reason.clone()),
                "year_peak": row.map_or(Value::Null, |t| peak(t.row.peak)),
                "thresholds": inputs.alerts.iter().filter(|a| concerns(a, name)).map(threshold).collect::<Vec<_>>(),
                "series": series_of(inputs, &Scope::Tenant(name.clone())),
            })
        })
        .collect();
    let mut value = json!({
        "unit": unit.name(),
        "currency": inputs.terms.currency,
        "time_zone": inputs.terms.zone.iana_name(),
        "now": iso(inputs.now_ms),
        "year": { "start": iso(inputs.year.start_ms), "end": iso(inputs.year.end_ms) },
        "period": { "from": iso(inputs.from_ms), "to": iso(inputs.to_ms) },
        "forecast_from": iso(inputs.year.start_ms + inputs.forecast_min_days as u64 * 86_400_000),
        "tenants": tenants,
    });
    if with_organisation {
        let used = ytd.organisation.usage.units(unit);
        value["organisation"] = json!({
            "hourly_peak": inputs.terms.hourly_peak,
            "yearly_total": inputs.terms.yearly_total,
            "used": used,
            "forecast": forecast(used),
            "charge_cents": ytd.cost_cents,
            "year_peak": peak(ytd.organisation.peak),
            "thresholds": inputs.alerts.iter().filter(|a| a.scope == Scope::Org).map(threshold).collect::<Vec<_>>(),
            "series": series_of(inputs, &Scope::Org),
        });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::chargeback;
    use ferry_core::contract::Contract;
    use ferry_core::usage::Usage;
    use std::collections::BTreeMap;

    fn hour(hour: u64, scope: Scope, messages: u64) -> HourUsage {
        HourUsage {
            hour,
            scope,
            usage: Usage {
                messages,
                recipients: messages,
                bytes: 100 * messages,
            },
        }
    }

    #[test]
    fn figures_come_from_the_report_and_the_forecast_waits_for_its_days() {
        let contract = Contract {
            yearly_total: Some(1000),
            hourly_peak: Some(5),
            ..Contract::default()
        };
        let terms = contract.terms().expect("terms");
        let year = terms.year_of(1_800_000_000_000);
        let start_hour = year.start_ms / HOUR_MS;
        let rows = vec![
            hour(start_hour + 10, Scope::Org, 7),
            hour(start_hour + 10, Scope::Tenant("acme".into()), 7),
            hour(start_hour + 20, Scope::Org, 3),
            hour(start_hour + 20, Scope::Tenant("acme".into()), 3),
        ];
        let allocations = BTreeMap::from([("acme".to_string(), Allocation::default())]);
        // A quarter of the year in: the forecast is four times the use.
        let now = year.start_ms + (year.end_ms - year.start_ms) / 4;
        let ytd = chargeback::report(&terms, &allocations, &rows, year.start_ms, now);
        let tenants = [
            ("acme".to_string(), Allocation::default()),
            ("idle".to_string(), Allocation::default()),
        ];
        let inputs = Inputs {
            terms: &terms,
            year,
            now_ms: now,
            forecast_min_days: 14,
            year_to_date: &ytd,
            tenants: &tenants,
            alerts: &[],
            series: &rows,
            from_ms: (start_hour + 15) * HOUR_MS,
            to_ms: now,
        };
        let v = build(&inputs, true);
        assert_eq!(v["tenants"][0]["used"], 10, "{v}");
        assert_eq!(v["tenants"][0]["forecast"], 40, "{v}");
        assert_eq!(v["tenants"][0]["year_peak"]["units"], 7, "{v}");
        assert_eq!(
            v["tenants"][0]["series"].as_array().map(Vec::len),
            Some(1),
            "only the period's hours: {v}"
        );
        assert_eq!(v["tenants"][1]["used"], 0, "a tenant without use is shown: {v}");
        assert_eq!(v["tenants"][1]["year_peak"], Value::Null);
        assert_eq!(v["organisation"]["hourly_peak"], 5);
        assert_eq!(build(&inputs, false).get("organisation"), None);
        let early = Inputs {
            now_ms: year.start_ms + 86_400_000,
            ..inputs
        };
        assert_eq!(build(&early, true)["organisation"]["forecast"], Value::Null);
    }
}
