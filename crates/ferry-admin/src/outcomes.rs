//! The per-application outcome report: for a period, each application's
//! messages relayed (the ledger's count), refused by reason, and its
//! recipients delivered, deferred and bounced, and those that bounced
//! later or complained (reports taken in by the inbound listener), with its
//! complaint rate, and its messages held under an incident, released and
//! discarded (see `ferry_core::outcome` for the units). JSON or CSV;
//! the same bytes from the CLI and the API.

use std::collections::BTreeMap;

use ferry_core::outcome::Outcome;
use ferry_core::usage::{HOUR_MS, Scope};
use ferry_store::{Store, StoreError};
use serde::Serialize;

/// One application's outcomes over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AppOutcomes {
    pub tenant: String,
    pub app: String,
    /// Messages accepted (250) and queued.
    pub relayed: u64,
    /// Refusals by reason label; sign-in refusals count attempts.
    pub refused: BTreeMap<String, u64>,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Recipients bounced by a report that came back after delivery.
    pub bounced_later: u64,
    /// Recipients who complained (ARF).
    pub complained: u64,
    /// Messages held under an incident on the application, and of those
    /// (in this period or an earlier one) released and discarded.
    pub held: u64,
    pub released: u64,
    pub discarded: u64,
}

impl AppOutcomes {
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Complaints per recipient delivered in the period, as mailbox
    /// providers judge senders (Gmail's bulk-sender guideline: stay under
    /// 0.1 %, never reach 0.3 %); none when nothing was delivered.
    pub fn complaint_rate(&self) -> Option<f64> {
        (self.delivered > 0).then(|| self.complained as f64 / self.delivered as f64)
    }
}

/// Every application with anything to show in [from_ms, to_ms) (whole
/// hours), optionally one tenant's, in (tenant, app) order.
pub async fn report(
    store: &dyn Store,
    from_ms: u64,
    to_ms: u64,
    tenant: Option<&str>,
) -> Result<Vec<AppOutcomes>, StoreError> {
    let (from_hour, to_hour) = (from_ms / HOUR_MS, to_ms.div_ceil(HOUR_MS));
    let mut rows: BTreeMap<(String, String), AppOutcomes> = BTreeMap::new();
    let wanted = |t: &str| tenant.is_none_or(|only| only == t);
    for hour in store.hours(from_hour, to_hour).await? {
        if let Scope::App { tenant, app } = &hour.scope
            && wanted(tenant)
        {
            row(&mut rows, tenant, app).relayed += hour.usage.messages;
        }
    }
    for count in store.outcomes(from_hour, to_hour).await? {
        if !wanted(&count.tenant) {
            continue;
        }
        let r = row(&mut rows, &count.tenant, &count.app);
        match count.outcome {
            Outcome::Delivered => r.delivered += count.count,
            Outcome::Deferred => r.deferred += count.count,
            Outcome::Bounced => r.bounced += count.count,
            Outcome::BouncedLater => r.bounced_later += count.count,
            Outcome::Complained => r.complained += count.count,
            Outcome::Held => r.held += count.count,
            Outcome::Released => r.released += count.count,
            Outcome::Discarded => r.discarded += count.count,
            Outcome::Refused(reason) => *r.refused.entry(reason).or_default() += count.count,
        }
    }
    Ok(rows.into_values().collect())
}

fn row<'a>(rows: &'a mut BTreeMap<(String, String), AppOutcomes>, tenant: &str, app: &str) -> &'a mut AppOutcomes {
    rows.entry((tenant.to_string(), app.to_string()))
        .or_insert_with(|| AppOutcomes {
            tenant: tenant.to_string(),
            app: app.to_string(),
            ..Default::default()
        })
}

/// JSON: the period and one object per application.
pub fn json(rows: &[AppOutcomes], from_ms: u64, to_ms: u64) -> String {
    let apps: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::json!(r);
            v["refused_total"] = serde_json::json!(r.refused_total());
            v["complaint_rate"] = serde_json::json!(r.complaint_rate());
            v
        })
        .collect();
    let body = serde_json::json!({
        "from": crate::report::iso(from_ms),
        "to": crate::report::iso(to_ms),
        "applications": apps,
    });
    format!("{body}\n")
}

/// CSV: one row per application and outcome, so that a new refusal reason
/// adds rows, never columns.
pub fn csv(rows: &[AppOutcomes], from_ms: u64, to_ms: u64) -> String {
    let (from, to) = (crate::report::iso(from_ms), crate::report::iso(to_ms));
    let mut out = String::from("period_start,period_end,tenant,application,outcome,reason,count\n");
    for r in rows {
        let mut line = |outcome: &str, reason: &str, count: u64| {
            out.push_str(&format!(
                "{from},{to},{},{},{outcome},{reason},{count}\n",
                r.tenant, r.app
            ));
        };
        line("relayed", "", r.relayed);
        for (reason, count) in &r.refused {
            line("refused", reason, *count);
        }
        line("delivered", "", r.delivered);
        line("deferred", "", r.deferred);
        line("bounced", "", r.bounced);
        line("bounced_later", "", r.bounced_later);
        line("complained", "", r.complained);
        line("held", "", r.held);
        line("released", "", r.released);
        line("discarded", "", r.discarded);
    }
    out
}
