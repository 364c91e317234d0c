//! The embedded store's ledger: usage counters, peaks and the alert log
//! with its outbox, all written inside the transaction that spools the
//! message (see [`apply_metering`]).

use ferry_core::contract::{ContractYear, Unit};
use ferry_core::metering::{Alert, Driver, Metering, Threshold, Window};
use ferry_core::outcome::OutcomeCount;
use ferry_core::usage::{Scope, Usage};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::embedded::backend;
use crate::{Result, StoreError};
use crate::{decode, encode};

/// (window kind, period, scope key) → messages, recipients, bytes.
pub(crate) const COUNTERS: TableDefinition<(u8, u64, &str), (u64, u64, u64)> = TableDefinition::new("counters");
/// (contract year start, scope key) → (peak hour, units).
pub(crate) const PEAKS: TableDefinition<(u64, &str), (u64, u64)> = TableDefinition::new("peaks");
/// Alert id → the alert (kept after delivery: the alert log).
pub(crate) const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// (raised at, alert id): the log in time order.
pub(crate) const ALERT_TIMES: TableDefinition<(u64, &str), ()> = TableDefinition::new("alert_times");
/// Alert id → when its next delivery try is due.
pub(crate) const OUTBOX: TableDefinition<&str, u64> = TableDefinition::new("outbox");
/// (hour, `tenant\tapp\toutcome`) → count: the per-application outcomes.
pub(crate) const OUTCOMES: TableDefinition<(u64, &str), u64> = TableDefinition::new("outcomes");

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(COUNTERS).map_err(backend)?;
    txn.open_table(PEAKS).map_err(backend)?;
    txn.open_table(ALERTS).map_err(backend)?;
    txn.open_table(ALERT_TIMES).map_err(backend)?;
    txn.open_table(OUTBOX).map_err(backend)?;
    txn.open_table(OUTCOMES).map_err(backend)?;
    Ok(())
}

pub(crate) fn add_outcomes(txn: &WriteTransaction, counts: &[OutcomeCount]) -> Result<()> {
    let mut table = txn.open_table(OUTCOMES).map_err(backend)?;
    for count in counts {
        let field = count.field();
        let key = (count.hour, field.as_str());
        let now = table.get(key).map_err(backend)?.map_or(0, |v| v.value());
        table.insert(key, now + count.count).map_err(backend)?;
    }
    Ok(())
}

pub(crate) fn outcomes(txn: &redb::ReadTransaction, from_hour: u64, to_hour: u64) -> Result<Vec<OutcomeCount>> {
    let table = txn.open_table(OUTCOMES).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.range((from_hour, "")..(to_hour, "")).map_err(backend)? {
        let (key, count) = entry.map_err(backend)?;
        let (hour, field) = key.value();
        out.extend(OutcomeCount::from_field(hour, field, count.value()));
    }
    Ok(out)
}

fn to_usage((messages, recipients, bytes): (u64, u64, u64)) -> Usage {
    Usage {
        messages,
        recipients,
        bytes,
    }
}

pub(crate) fn read_counter(
    table: &impl ReadableTable<(u8, u64, &'static str), (u64, u64, u64)>,
    window: Window,
    scope: &Scope,
) -> Result<Usage> {
    let (kind, period) = window.code();
    let key = scope.key();
    Ok(table
        .get((kind, period, key.as_str()))
        .map_err(backend)?
        .map(|v| to_usage(v.value()))
        .unwrap_or_default())
}

/// Caps first (refusing writes nothing), then counts, peaks and alerts.
/// The outer error aborts the batch; the inner one refuses this message.
pub(crate) fn check_caps(txn: &WriteTransaction, m: &Metering) -> Result<Result<()>> {
    let counters = txn.open_table(COUNTERS).map_err(backend)?;
    for cap in &m.caps {
        let current = read_counter(&counters, cap.window, &cap.scope)?.units(m.unit);
        if current + m.usage.units(m.unit) > cap.limit {
            return Ok(Err(StoreError::CapReached {
                name: cap.name.clone(),
                temporary: cap.temporary,
            }));
        }
    }
    Ok(Ok(()))
}

pub(crate) fn apply_metering(txn: &WriteTransaction, m: &Metering) -> Result<()> {
    let hour = Window::Hour(m.at_ms / ferry_core::usage::HOUR_MS);
    {
        let mut counters = txn.open_table(COUNTERS).map_err(backend)?;
        for scope in &m.scopes {
            add(&mut counters, hour, scope, m.usage)?;
            add(&mut counters, Window::Year(m.year), scope, m.usage)?;
        }
        let minute = m.at_ms / ferry_core::usage::MINUTE_MS;
        for scope in &m.minute_scopes {
            add(&mut counters, Window::Minute(minute), scope, m.usage)?;
            // Minute counts matter for a minute; keep the table small.
            let key = scope.key();
            counters
                .remove((0, minute.saturating_sub(2), key.as_str()))
                .map_err(backend)?;
        }
        let mut peaks = txn.open_table(PEAKS).map_err(backend)?;
        for scope in &m.scopes {
            let units = read_counter(&counters, hour, scope)?.units(m.unit);
            let key = scope.key();
            let best = peaks
                .get((m.year.start_ms, key.as_str()))
                .map_err(backend)?
                .map(|v| v.value().1)
                .unwrap_or(0);
            if units > best {
                peaks
                    .insert((m.year.start_ms, key.as_str()), (hour.code().1, units))
                    .map_err(backend)?;
            }
        }
    }
    for threshold in &m.thresholds {
        raise_if_crossed(txn, m, threshold)?;
    }
    Ok(())
}

fn add(
    table: &mut redb::Table<(u8, u64, &'static str), (u64, u64, u64)>,
    window: Window,
    scope: &Scope,
    usage: Usage,
) -> Result<()> {
    let mut total = read_counter(table, window, scope)?;
    total.add(usage);
    let (kind, period) = window.code();
    let key = scope.key();
    table
        .insert(
            (kind, period, key.as_str()),
            (total.messages, total.recipients, total.bytes),
        )
        .map_err(backend)?;
    Ok(())
}

/// One alert per threshold id, ever: the id names scope, metric, level and period.
fn raise_if_crossed(txn: &WriteTransaction, m: &Metering, t: &Threshold) -> Result<()> {
    let after = read_counter(&txn.open_table(COUNTERS).map_err(backend)?, t.window, &t.scope)?.units(m.unit);
    let before = after.saturating_sub(m.usage.units(m.unit));
    let (value, crossed) = match t.projection {
        Some(f) => {
            let projected = (after as f64 * f) as u64;
            (projected, projected >= t.limit)
        }
        None => (after, before < t.limit && after >= t.limit),
    };
    if !crossed
        || txn
            .open_table(ALERTS)
            .map_err(backend)?
            .get(t.id.as_str())
            .map_err(backend)?
            .is_some()
    {
        return Ok(());
    }
    put_alert(txn, &m.alert(t, value, drivers(txn, t.window, &t.scope, m.unit)?))
}

/// Puts an alert in the outbox, due at once.
pub(crate) fn put_alert(txn: &WriteTransaction, alert: &Alert) -> Result<()> {
    let id = alert.id.as_str();
    txn.open_table(ALERTS)
        .map_err(backend)?
        .insert(id, encode(alert).as_slice())
        .map_err(backend)?;
    txn.open_table(ALERT_TIMES)
        .map_err(backend)?
        .insert((alert.at_ms, id), ())
        .map_err(backend)?;
    txn.open_table(OUTBOX)
        .map_err(backend)?
        .insert(id, alert.at_ms)
        .map_err(backend)?;
    Ok(())
}

/// The applications counted in `window` under `scope`, as drivers of a crossing.
fn drivers(txn: &WriteTransaction, window: Window, scope: &Scope, unit: Unit) -> Result<Vec<Driver>> {
    let counters = txn.open_table(COUNTERS).map_err(backend)?;
    let (kind, period) = window.code();
    let total = read_counter(&counters, window, scope)?.units(unit);
    let prefix = match scope {
        Scope::Tenant(t) => format!("a:{t}/"),
        _ => "a:".to_string(),
    };
    let mut apps = Vec::new();
    for entry in counters
        .range((kind, period, prefix.as_str())..(kind, period, "a;"))
        .map_err(backend)?
    {
        let (key, value) = entry.map_err(backend)?;
        if !key.value().2.starts_with(&prefix) {
            break;
        }
        if let Some(Scope::App { tenant, app }) = Scope::parse(key.value().2) {
            apps.push((tenant, app, to_usage(value.value()).units(unit)));
        }
    }
    Ok(ferry_core::metering::drivers(total, apps))
}

pub(crate) fn peak(txn: &redb::ReadTransaction, scope: &Scope, year: ContractYear) -> Result<Option<(u64, u64)>> {
    let key = scope.key();
    Ok(txn
        .open_table(PEAKS)
        .map_err(backend)?
        .get((year.start_ms, key.as_str()))
        .map_err(backend)?
        .map(|v| v.value()))
}

pub(crate) fn alert_state(
    txn: &WriteTransaction,
    id: &str,
    f: impl FnOnce(&mut Alert, &mut redb::Table<&'static str, u64>) -> Result<()>,
) -> Result<Result<()>> {
    let mut alerts = txn.open_table(ALERTS).map_err(backend)?;
    let Some(bytes) = alerts.get(id).map_err(backend)?.map(|v| v.value().to_vec()) else {
        return Ok(Err(StoreError::NotFound(format!("alert {id}"))));
    };
    let mut alert: Alert = decode(&bytes)?;
    let mut outbox = txn.open_table(OUTBOX).map_err(backend)?;
    f(&mut alert, &mut outbox)?;
    alerts.insert(id, encode(&alert).as_slice()).map_err(backend)?;
    Ok(Ok(()))
}

/// Undelivered alerts due at `now_ms`, each then due again at `until_ms`.
pub(crate) fn claim_alerts(txn: &WriteTransaction, now_ms: u64, until_ms: u64, max: usize) -> Result<Vec<Alert>> {
    let mut outbox = txn.open_table(OUTBOX).map_err(backend)?;
    let mut due = Vec::new();
    for entry in outbox.iter().map_err(backend)? {
        let (id, at) = entry.map_err(backend)?;
        if at.value() <= now_ms {
            due.push(id.value().to_string());
            if due.len() >= max {
                break;
            }
        }
    }
    let alerts = txn.open_table(ALERTS).map_err(backend)?;
    let mut claimed = Vec::with_capacity(due.len());
    for id in due {
        outbox.insert(id.as_str(), until_ms).map_err(backend)?;
        if let Some(bytes) = alerts.get(id.as_str()).map_err(backend)? {
            claimed.push(decode(bytes.value())?);
        }
    }
    Ok(claimed)
}
