//! Usage reports and charge-back: who used how much in a period, and who
//! pays the cost of going over the contract.
//!
//! The rules (the campus relay's terms: the group whose sending made the
//! organisation exceed its contracted volume pays the cost increase):
//! - **Yearly excess.** Units over the contract's yearly total cost money
//!   (flat or tiered). A period is charged the increase of that cost within
//!   it, so monthly reports add up to the year. The cost goes to the tenants
//!   that went over their own yearly allocation in the period, in proportion
//!   to how far; a tenant without an allocation counts as allocated zero
//!   when others have allocations. With no allocations at all, it is split in
//!   proportion to use in the period.
//! - **Peak-hour excess.** The year's peak hour over the contracted hourly
//!   peak costs money per unit of excess; a period is charged the increase
//!   within it. It goes to the tenants over their hourly allocation in the
//!   hours above the contracted peak, in proportion to their excess there
//!   (or to their use in those hours when no allocations are set).
//! - **Rounding.** The organisation's cost is rounded half up to cents, then
//!   split by largest remainder (ties to the tenant name), so the tenants'
//!   charges add up to the organisation's cost exactly.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::{ContractYear, Terms};
use crate::usage::{HOUR_MS, HourUsage, Scope, Usage};

/// A tenant's share of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct Allocation {
    pub hourly: Option<u64>,
    pub yearly: Option<u64>,
}

/// The peak hour of a scope in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Peak {
    pub hour_start_ms: u64,
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeRow {
    pub usage: Usage,
    pub peak: Peak,
    /// Share of the organisation's units in the period, 0..=1.
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRow {
    pub tenant: String,
    #[serde(flatten)]
    pub row: ScopeRow,
    pub yearly_charge_cents: u128,
    pub peak_charge_cents: u128,
    pub charge_cents: u128,
    /// Why the tenant was (or was not) charged.
    pub reason: String,
    pub applications: BTreeMap<String, ScopeRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    pub from_ms: u64,
    pub to_ms: u64,
    pub unit: &'static str,
    pub currency: String,
    pub organisation: ScopeRow,
    /// Units over the yearly total reached within the period.
    pub yearly_excess_units: u64,
    /// Units by which the peak hour's excess over the contracted peak grew in the period.
    pub peak_excess_units: u64,
    pub yearly_cost_cents: u128,
    pub peak_cost_cents: u128,
    pub cost_cents: u128,
    pub tenants: Vec<TenantRow>,
}

/// Hour buckets indexed for the arithmetic.
struct Hours<'a> {
    terms: &'a Terms,
    rows: &'a [HourUsage],
}

impl Hours<'_> {
    fn units(&self, scope: &Scope, from_ms: u64, to_ms: u64) -> u64 {
        self.usage(scope, from_ms, to_ms).units(self.terms.unit)
    }

    fn usage(&self, scope: &Scope, from_ms: u64, to_ms: u64) -> Usage {
        let mut total = Usage::default();
        for r in self.in_range(from_ms, to_ms).filter(|r| &r.scope == scope) {
            total.add(r.usage);
        }
        total
    }

    fn in_range(&self, from_ms: u64, to_ms: u64) -> impl Iterator<Item = &HourUsage> {
        self.rows
            .iter()
            .filter(move |r| r.hour * HOUR_MS >= from_ms && r.hour * HOUR_MS < to_ms)
    }

    fn peak(&self, scope: &Scope, from_ms: u64, to_ms: u64) -> Peak {
        self.in_range(from_ms, to_ms)
            .filter(|r| &r.scope == scope)
            .map(|r| Peak {
                hour_start_ms: r.hour * HOUR_MS,
                units: r.usage.units(self.terms.unit),
            })
            .fold(Peak::default(), |best, p| if p.units > best.units { p } else { best })
    }
}

/// Builds the report for [from, to). `rows` must hold every hour bucket from
/// the start of the contract year containing `from` up to `to`.
pub fn report(
    terms: &Terms,
    allocations: &BTreeMap<String, Allocation>,
    rows: &[HourUsage],
    from_ms: u64,
    to_ms: u64,
) -> UsageReport {
    let hours = Hours { terms, rows };
    let tenants: Vec<String> = {
        let mut t: Vec<String> = rows
            .iter()
            .filter_map(|r| match &r.scope {
                Scope::Tenant(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let org_units = hours.units(&Scope::Org, from_ms, to_ms);
    let row = |scope: &Scope| {
        let usage = hours.usage(scope, from_ms, to_ms);
        let share = if org_units == 0 {
            0.0
        } else {
            usage.units(terms.unit) as f64 / org_units as f64
        };
        ScopeRow {
            usage,
            peak: hours.peak(scope, from_ms, to_ms),
            share,
        }
    };
    let mut yearly = Charge::default();
    let mut peak = Charge::default();
    let mut start = from_ms;
    while start < to_ms {
        let year = terms.year_of(start);
        let end = to_ms.min(year.end_ms);
        yearly.add(yearly_charge(&hours, allocations, &tenants, year, start, end));
        peak.add(peak_charge(&hours, allocations, &tenants, year, start, end));
        start = end;
    }
    let tenant_rows = tenants
        .iter()
        .map(|t| {
            let y = yearly.cents.get(t).copied().unwrap_or(0);
            let p = peak.cents.get(t).copied().unwrap_or(0);
            let applications = rows
                .iter()
                .filter_map(|r| match &r.scope {
                    Scope::App { tenant, app } if tenant == t => Some(app.clone()),
                    _ => None,
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|app| {
                    let scope = Scope::App {
                        tenant: t.clone(),
                        app: app.clone(),
                    };
                    (app, row(&scope))
                })
                .collect();
            TenantRow {
                tenant: t.clone(),
                row: row(&Scope::Tenant(t.clone())),
                yearly_charge_cents: y,
                peak_charge_cents: p,
                charge_cents: y + p,
                reason: reason(t, &yearly, &peak, allocations.get(t)),
                applications,
            }
        })
        .collect();
    UsageReport {
        from_ms,
        to_ms,
        unit: terms.unit.name(),
        currency: terms.currency.clone(),
        organisation: row(&Scope::Org),
        yearly_excess_units: yearly.excess_units,
        peak_excess_units: peak.excess_units,
        yearly_cost_cents: yearly.total_cents,
        peak_cost_cents: peak.total_cents,
        cost_cents: yearly.total_cents + peak.total_cents,
        tenants: tenant_rows,
    }
}

/// One kind of excess cost and how it was split.
#[derive(Debug, Default)]
struct Charge {
    excess_units: u64,
    total_cents: u128,
    cents: BTreeMap<String, u128>,
    /// Each tenant's excess units (or use) the split was weighted by.
    weights: BTreeMap<String, u64>,
    by_use: bool,
}

impl Charge {
    fn add(&mut self, other: Charge) {
        self.excess_units += other.excess_units;
        self.total_cents += other.total_cents;
        for (t, c) in other.cents {
            *self.cents.entry(t).or_default() += c;
        }
        for (t, w) in other.weights {
            *self.weights.entry(t).or_default() += w;
        }
        self.by_use |= other.by_use;
    }
}

fn yearly_charge(
    h: &Hours<'_>,
    alloc: &BTreeMap<String, Allocation>,
    tenants: &[String],
    year: ContractYear,
    from: u64,
    to: u64,
) -> Charge {
    let Some(total) = h.terms.yearly_total else {
        return Charge::default();
    };
    let excess_at = |t: u64| h.units(&Scope::Org, year.start_ms, t).saturating_sub(total);
    let (before, after) = (excess_at(from), excess_at(to));
    let cost = h.terms.yearly_excess_cost(after).0 - h.terms.yearly_excess_cost(before).0;
    let any_allocation = tenants.iter().any(|t| alloc.get(t).is_some_and(|a| a.yearly.is_some()));
    let excess = |t: &String| {
        let scope = Scope::Tenant(t.clone());
        let own = alloc.get(t).and_then(|a| a.yearly).unwrap_or(0);
        let over = |at: u64| h.units(&scope, year.start_ms, at).saturating_sub(own);
        over(to) - over(from)
    };
    let usage = |t: &String| h.units(&Scope::Tenant(t.clone()), from, to);
    let (weights, by_use) = weigh(tenants, any_allocation, excess, usage);
    split(
        crate::contract::Micros(cost).to_cents(),
        after - before,
        weights,
        by_use,
    )
}

fn peak_charge(
    h: &Hours<'_>,
    alloc: &BTreeMap<String, Allocation>,
    tenants: &[String],
    year: ContractYear,
    from: u64,
    to: u64,
) -> Charge {
    let Some(contracted) = h.terms.hourly_peak else {
        return Charge::default();
    };
    let excess_at = |t: u64| h.peak(&Scope::Org, year.start_ms, t).units.saturating_sub(contracted);
    let (before, after) = (excess_at(from), excess_at(to));
    let cost = h.terms.peak_excess_cost(after).0 - h.terms.peak_excess_cost(before).0;
    let any_allocation = tenants.iter().any(|t| alloc.get(t).is_some_and(|a| a.hourly.is_some()));
    let over_hours: Vec<u64> = h
        .in_range(from, to)
        .filter(|r| r.scope == Scope::Org && r.usage.units(h.terms.unit) > contracted)
        .map(|r| r.hour)
        .collect();
    let excess_in_over_hours = |t: &String, own: u64| -> u64 {
        over_hours
            .iter()
            .map(|hour| {
                h.units(&Scope::Tenant(t.clone()), hour * HOUR_MS, (hour + 1) * HOUR_MS)
                    .saturating_sub(own)
            })
            .sum()
    };
    let excess = |t: &String| excess_in_over_hours(t, alloc.get(t).and_then(|a| a.hourly).unwrap_or(0));
    let usage = |t: &String| excess_in_over_hours(t, 0);
    let (weights, by_use) = weigh(tenants, any_allocation, excess, usage);
    split(
        crate::contract::Micros(cost).to_cents(),
        after - before,
        weights,
        by_use,
    )
}

/// What each tenant's share of a cost is weighed by: its excess over its
/// allocation when allocations exist, its use when none do or when nobody
/// exceeded theirs. True in the second case.
fn weigh(
    tenants: &[String],
    any_allocation: bool,
    excess: impl Fn(&String) -> u64,
    usage: impl Fn(&String) -> u64,
) -> (BTreeMap<String, u64>, bool) {
    if any_allocation {
        let weights: BTreeMap<String, u64> = tenants.iter().map(|t| (t.clone(), excess(t))).collect();
        if weights.values().any(|w| *w > 0) {
            return (weights, false);
        }
    }
    (tenants.iter().map(|t| (t.clone(), usage(t))).collect(), true)
}

/// Largest-remainder split of `cents` by `weights`.
fn split(cents: u128, excess_units: u64, weights: BTreeMap<String, u64>, by_use: bool) -> Charge {
    let total_weight: u128 = weights.values().map(|w| *w as u128).sum();
    let mut out = Charge {
        excess_units,
        total_cents: cents,
        by_use,
        ..Charge::default()
    };
    if cents == 0 || total_weight == 0 {
        out.total_cents = if total_weight == 0 { 0 } else { cents };
        out.weights = weights;
        return out;
    }
    let mut remainders: Vec<(u128, String)> = Vec::new();
    let mut given = 0;
    for (tenant, w) in &weights {
        let exact = cents * *w as u128;
        let floor = exact / total_weight;
        given += floor;
        out.cents.insert(tenant.clone(), floor);
        remainders.push((exact % total_weight, tenant.clone()));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (_, tenant) in remainders.into_iter().take((cents - given) as usize) {
        *out.cents.entry(tenant).or_default() += 1;
    }
    out.weights = weights;
    out
}

fn reason(tenant: &str, yearly: &Charge, peak: &Charge, alloc: Option<&Allocation>) -> String {
    let mut parts = Vec::new();
    let describe = |c: &Charge, what: &str, own: Option<u64>| -> Option<String> {
        let cents = *c.cents.get(tenant)?;
        if cents == 0 {
            return None;
        }
        let w = c.weights.get(tenant).copied().unwrap_or(0);
        let all: u64 = c.weights.values().sum();
        let pct = if all == 0 { 0.0 } else { 100.0 * w as f64 / all as f64 };
        Some(match (c.by_use, own) {
            (false, Some(own)) => {
                format!("{what}: {w} units over its allocation of {own} ({pct:.1} % of the tenants' excess)")
            }
            (false, None) => format!("{what}: {w} units with no allocation ({pct:.1} % of the tenants' excess)"),
            (true, _) => format!("{what}: {pct:.1} % of the use while the organisation was over its contract"),
        })
    };
    parts.extend(describe(yearly, "yearly total exceeded", alloc.and_then(|a| a.yearly)));
    parts.extend(describe(peak, "hourly peak exceeded", alloc.and_then(|a| a.hourly)));
    if parts.is_empty() {
        "not charged: within its allocation, or the organisation within its contract".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;

    const H0: u64 = 493_000; // an hour index in 2026

    fn terms(hourly: Option<u64>, yearly: Option<u64>) -> Terms {
        Contract {
            hourly_peak: hourly,
            yearly_total: yearly,
            price_per_unit_over_yearly: "0.01".into(),
            price_per_unit_over_peak: "0.333333".into(),
            ..Contract::default()
        }
        .terms()
        .expect("valid")
    }

    fn hour(hour: u64, tenant: &str, app: &str, messages: u64) -> Vec<HourUsage> {
        let usage = Usage {
            messages,
            recipients: messages * 2,
            bytes: messages * 1000,
        };
        Scope::of_message(tenant, app)
            .into_iter()
            .map(|scope| HourUsage { hour, scope, usage })
            .collect()
    }

    fn merge(parts: Vec<Vec<HourUsage>>) -> Vec<HourUsage> {
        let mut map: BTreeMap<(u64, Scope), Usage> = BTreeMap::new();
        for r in parts.into_iter().flatten() {
            map.entry((r.hour, r.scope)).or_default().add(r.usage);
        }
        map.into_iter()
            .map(|((hour, scope), usage)| HourUsage { hour, scope, usage })
            .collect()
    }

    fn year_start() -> u64 {
        terms(None, None).year_of(H0 * HOUR_MS).start_ms
    }

    #[test]
    fn usage_peak_and_share() {
        let rows = merge(vec![
            hour(H0, "hr", "payroll", 30),
            hour(H0 + 1, "hr", "payroll", 50),
            hour(H0 + 1, "it", "alerts", 20),
        ]);
        let r = report(
            &terms(None, None),
            &BTreeMap::new(),
            &rows,
            year_start(),
            (H0 + 2) * HOUR_MS,
        );
        assert_eq!(r.organisation.usage.messages, 100);
        assert_eq!(
            r.organisation.peak,
            Peak {
                hour_start_ms: (H0 + 1) * HOUR_MS,
                units: 70
            }
        );
        let hr = &r.tenants[0];
        assert_eq!(
            (hr.tenant.as_str(), hr.row.usage.recipients, hr.row.share),
            ("hr", 160, 0.8)
        );
        assert_eq!(hr.applications["payroll"].usage.bytes, 80_000);
        assert_eq!(r.cost_cents, 0);
    }

    #[test]
    fn yearly_excess_goes_to_the_tenants_over_their_allocation() {
        // Contract 100/year; hr (allocation 50) sends 90, it (allocation 60) sends 40:
        // excess 30 units = 30 cents, all of it hr's (40 over), none of it it's.
        let rows = merge(vec![hour(H0, "hr", "a", 90), hour(H0, "it", "b", 40)]);
        let alloc = BTreeMap::from([
            (
                "hr".to_string(),
                Allocation {
                    yearly: Some(50),
                    hourly: None,
                },
            ),
            (
                "it".to_string(),
                Allocation {
                    yearly: Some(60),
                    hourly: None,
                },
            ),
        ]);
        let r = report(&terms(None, Some(100)), &alloc, &rows, year_start(), (H0 + 1) * HOUR_MS);
        assert_eq!((r.yearly_excess_units, r.yearly_cost_cents), (30, 30));
        assert_eq!(r.tenants[0].charge_cents, 30);
        assert_eq!(r.tenants[1].charge_cents, 0);
        assert!(
            r.tenants[0].reason.contains("40 units over its allocation of 50"),
            "{}",
            r.tenants[0].reason
        );
        assert!(r.tenants[1].reason.starts_with("not charged"));
    }

    #[test]
    fn proportional_split_sums_to_the_cent() {
        // Peak 10/hour at 0.333333 per unit; three tenants at 7 each in one hour:
        // 11 units over = 366.6663 cents → 367; thirds by largest remainder.
        let rows = merge(vec![
            hour(H0, "a", "x", 7),
            hour(H0, "b", "x", 7),
            hour(H0, "c", "x", 7),
        ]);
        let r = report(
            &terms(Some(10), None),
            &BTreeMap::new(),
            &rows,
            year_start(),
            (H0 + 1) * HOUR_MS,
        );
        assert_eq!(r.peak_excess_units, 11);
        assert_eq!(r.peak_cost_cents, 367);
        let charges: Vec<u128> = r.tenants.iter().map(|t| t.charge_cents).collect();
        assert_eq!(charges, [123, 122, 122]);
        assert_eq!(charges.iter().sum::<u128>(), r.cost_cents);
    }

    #[test]
    fn periods_add_up_to_the_year() {
        let rows = merge(vec![
            hour(H0, "hr", "a", 80),
            hour(H0 + 5, "hr", "a", 30),
            hour(H0 + 9, "it", "b", 40),
        ]);
        let t = terms(None, Some(100));
        let none = BTreeMap::new();
        let whole = report(&t, &none, &rows, year_start(), (H0 + 10) * HOUR_MS);
        let first = report(&t, &none, &rows, year_start(), (H0 + 6) * HOUR_MS);
        let second = report(&t, &none, &rows, (H0 + 6) * HOUR_MS, (H0 + 10) * HOUR_MS);
        assert_eq!(whole.cost_cents, 50);
        assert_eq!(first.cost_cents + second.cost_cents, whole.cost_cents);
        assert_eq!(first.cost_cents, 10, "the year went over by 10 in the first part");
        // Without allocations the second part's 40 excess units are split by use: all it's.
        assert_eq!(
            second.tenants.iter().find(|r| r.tenant == "it").map(|r| r.charge_cents),
            Some(40)
        );
    }
}
