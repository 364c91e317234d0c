//! The embedded store's incidents: each by id (UUIDv7, so in time order),
//! and each application's open one, written together; the applications
//! whose mail is held (an open incident under `hold` or `suspend`), and
//! the messages held: queued, never scheduled until released.

use ferry_core::incident::{HourFigures, Incident, Policy, Resolution, SIGN_IN_FACTS_MS, SignInFact, SignInKind};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::embedded::backend;
use crate::{Result, StoreError, decode, encode};

/// Incident id → the incident.
pub(crate) const INCIDENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("incidents");
/// `tenant\tapp` → the id of its open incident.
const OPEN: TableDefinition<&str, &str> = TableDefinition::new("open_incidents");
/// `tenant\tapp` → the incident its new mail is held under.
const HOLDING: TableDefinition<&str, &str> = TableDefinition::new("holding");
/// Queue id of a held message → the incident it is held under.
pub(crate) const HELD: TableDefinition<&str, &str> = TableDefinition::new("held");
/// (`tenant\tapp`, hour) → its figures, for its baseline.
const FIGURES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("app_figures");
/// (`tenant\tapp`, address) → when it first signed in from there.
const SOURCES: TableDefinition<(&str, &str), u64> = TableDefinition::new("app_sources");
/// (time, a unique suffix) → a sign-in fact (JSON), for the watch.
const SIGN_IN_FACTS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("sign_in_facts");

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(INCIDENTS).map_err(backend)?;
    txn.open_table(OPEN).map_err(backend)?;
    txn.open_table(HOLDING).map_err(backend)?;
    txn.open_table(HELD).map_err(backend)?;
    txn.open_table(FIGURES).map_err(backend)?;
    txn.open_table(SOURCES).map_err(backend)?;
    txn.open_table(SIGN_IN_FACTS).map_err(backend)?;
    Ok(())
}

/// The incident the application's new mail is held under, if any.
pub(crate) fn holding(txn: &WriteTransaction, tenant: &str, app: &str) -> Result<Option<String>> {
    let table = txn.open_table(HOLDING).map_err(backend)?;
    Ok(table
        .get(slot(tenant, app).as_str())
        .map_err(backend)?
        .map(|v| v.value().to_string()))
}

pub(crate) fn hold(txn: &WriteTransaction, id: &str, incident: &str) -> Result<()> {
    txn.open_table(HELD)
        .map_err(backend)?
        .insert(id, incident)
        .map_err(backend)?;
    Ok(())
}

/// Takes a message out of the held ones: whether it was held.
pub(crate) fn unhold(txn: &WriteTransaction, id: &str) -> Result<bool> {
    Ok(txn
        .open_table(HELD)
        .map_err(backend)?
        .remove(id)
        .map_err(backend)?
        .is_some())
}

fn slot(tenant: &str, app: &str) -> String {
    format!("{tenant}\t{app}")
}

pub(crate) fn open(txn: &WriteTransaction, incident: &Incident) -> Result<bool> {
    let mut open = txn.open_table(OPEN).map_err(backend)?;
    let key = slot(&incident.tenant, &incident.app);
    if open.get(key.as_str()).map_err(backend)?.is_some() {
        return Ok(false);
    }
    open.insert(key.as_str(), incident.id.as_str()).map_err(backend)?;
    if incident.policy != Policy::Alert {
        txn.open_table(HOLDING)
            .map_err(backend)?
            .insert(key.as_str(), incident.id.as_str())
            .map_err(backend)?;
    }
    txn.open_table(INCIDENTS)
        .map_err(backend)?
        .insert(incident.id.as_str(), encode(incident).as_slice())
        .map_err(backend)?;
    crate::ledger::put_alert(txn, &incident.alert())?;
    Ok(true)
}

/// Keeps an application's figures of finished hours (overwriting what an
/// hour had), and forgets its hours before `keep_from`.
pub(crate) fn save_figures(
    txn: &WriteTransaction,
    tenant: &str,
    app: &str,
    figures: &[HourFigures],
    keep_from: u64,
) -> Result<()> {
    let mut table = txn.open_table(FIGURES).map_err(backend)?;
    let key = slot(tenant, app);
    for f in figures {
        table
            .insert((key.as_str(), f.hour), encode(f).as_slice())
            .map_err(backend)?;
    }
    table
        .retain_in((key.as_str(), 0)..(key.as_str(), keep_from), |_, _| false)
        .map_err(backend)?;
    Ok(())
}

/// An application's kept figures for hours `from..to`, in order.
pub(crate) fn figures(txn: &ReadTransaction, tenant: &str, app: &str, from: u64, to: u64) -> Result<Vec<HourFigures>> {
    let table = txn.open_table(FIGURES).map_err(backend)?;
    let key = slot(tenant, app);
    let mut out = Vec::new();
    for entry in table.range((key.as_str(), from)..(key.as_str(), to)).map_err(backend)? {
        out.push(decode(entry.map_err(backend)?.1.value())?);
    }
    Ok(out)
}

pub(crate) fn resolve(txn: &WriteTransaction, id: &str, resolution: &Resolution) -> Result<Result<Incident>> {
    let mut incidents = txn.open_table(INCIDENTS).map_err(backend)?;
    let Some(mut incident) = incidents
        .get(id)
        .map_err(backend)?
        .map(|v| decode::<Incident>(v.value()))
        .transpose()?
    else {
        return Ok(Err(StoreError::NotFound(format!("incident {id}"))));
    };
    if !incident.is_open() {
        return Ok(Err(StoreError::InUse(format!("incident {id} is closed already"))));
    }
    incident.resolution = Some(resolution.clone());
    incidents.insert(id, encode(&incident).as_slice()).map_err(backend)?;
    let key = slot(&incident.tenant, &incident.app);
    txn.open_table(OPEN)
        .map_err(backend)?
        .remove(key.as_str())
        .map_err(backend)?;
    txn.open_table(HOLDING)
        .map_err(backend)?
        .remove(key.as_str())
        .map_err(backend)?;
    Ok(Ok(incident))
}

pub(crate) fn get(txn: &ReadTransaction, id: &str) -> Result<Option<Incident>> {
    let table = txn.open_table(INCIDENTS).map_err(backend)?;
    table.get(id).map_err(backend)?.map(|v| decode(v.value())).transpose()
}

pub(crate) fn open_of(txn: &ReadTransaction, tenant: &str, app: &str) -> Result<Option<Incident>> {
    let id = txn
        .open_table(OPEN)
        .map_err(backend)?
        .get(slot(tenant, app).as_str())
        .map_err(backend)?
        .map(|v| v.value().to_string());
    match id {
        Some(id) => get(txn, &id),
        None => Ok(None),
    }
}

pub(crate) fn list(txn: &ReadTransaction, tenant: Option<&str>, limit: usize) -> Result<Vec<Incident>> {
    let table = txn.open_table(INCIDENTS).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(backend)?.rev() {
        if out.len() >= limit {
            break;
        }
        let incident: Incident = decode(entry.map_err(backend)?.1.value())?;
        if tenant.is_none_or(|t| t == incident.tenant) {
            out.push(incident);
        }
    }
    Ok(out)
}

/// Remembers a source address; whether it is new to an application that
/// had others (then also kept as a fact).
pub(crate) fn note_source(txn: &WriteTransaction, fact: &SignInFact) -> Result<bool> {
    let SignInKind::NewSource(address) = fact.kind else {
        return Ok(false);
    };
    let key = slot(&fact.tenant, &fact.app);
    let address = address.to_string();
    let mut sources = txn.open_table(SOURCES).map_err(backend)?;
    if sources
        .get((key.as_str(), address.as_str()))
        .map_err(backend)?
        .is_some()
    {
        return Ok(false);
    }
    let had_others = sources
        .range((key.as_str(), "")..)
        .map_err(backend)?
        .next()
        .transpose()
        .map_err(backend)?
        .is_some_and(|(k, _)| k.value().0 == key);
    sources
        .insert((key.as_str(), address.as_str()), fact.at_ms)
        .map_err(backend)?;
    if had_others {
        keep_fact(txn, fact)?;
    }
    Ok(had_others)
}

/// Keeps a sign-in fact, and forgets those past their time.
pub(crate) fn keep_fact(txn: &WriteTransaction, fact: &SignInFact) -> Result<()> {
    let mut facts = txn.open_table(SIGN_IN_FACTS).map_err(backend)?;
    let suffix = format!("{}\t{}\t{:?}", fact.tenant, fact.app, fact.kind);
    facts
        .insert((fact.at_ms, suffix.as_str()), encode(fact).as_slice())
        .map_err(backend)?;
    let before = fact.at_ms.saturating_sub(SIGN_IN_FACTS_MS);
    facts.retain_in((0, "")..(before, ""), |_, _| false).map_err(backend)?;
    Ok(())
}

pub(crate) fn sign_in_facts(txn: &ReadTransaction, since_ms: u64) -> Result<Vec<SignInFact>> {
    let table = txn.open_table(SIGN_IN_FACTS).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.range((since_ms, "")..).map_err(backend)? {
        out.push(decode(entry.map_err(backend)?.1.value())?);
    }
    Ok(out)
}
