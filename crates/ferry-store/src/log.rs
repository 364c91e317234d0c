//! The embedded store's event logs and suppression lists.
//!
//! A record's key is (tenant, sequence): the sequence is the record's time
//! in milliseconds shifted left by [`SEQ_BITS`], or the last one plus one
//! when that is not larger, so it increases within the store and tells
//! its age without a second index; purging is a range delete per tenant.

use ferry_core::event::{EventRecord, ReceiverState};
use ferry_core::return_path::{self, BounceKey, Sent};
use ferry_core::suppression::{self, Suppression};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::embedded::backend;
use crate::{Changes, Result, StoreError, decode, encode};

/// (tenant, sequence) → the record.
pub(crate) const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// (tenant, recipient) → the suppression entry.
pub(crate) const SUPPRESSED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("suppressed");
/// (tenant, recipient) → the times of its recent soft bounces.
pub(crate) const SOFT_BOUNCES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("soft_bounces");
/// Queue id → what a message with Ferry's return path went out as; ids
/// are time-ordered (UUIDv7), so a purge by time is a range delete.
pub(crate) const SENT: TableDefinition<&str, &[u8]> = TableDefinition::new("sent");
/// Return-path key id → the key.
pub(crate) const BOUNCE_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("bounce_keys");
/// Webhook receiver → its state, holder and hold's end.
pub(crate) const RECEIVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("receivers");
/// The last sequence given out.
const LAST: TableDefinition<&str, u64> = TableDefinition::new("event_sequence");

/// Room for 4,096 records in one millisecond before the sequence runs ahead of the clock.
const SEQ_BITS: u32 = 12;

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(EVENTS).map_err(backend)?;
    txn.open_table(SUPPRESSED).map_err(backend)?;
    txn.open_table(SOFT_BOUNCES).map_err(backend)?;
    txn.open_table(LAST).map_err(backend)?;
    txn.open_table(SENT).map_err(backend)?;
    txn.open_table(BOUNCE_KEYS).map_err(backend)?;
    txn.open_table(RECEIVERS).map_err(backend)?;
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Receiver {
    state: ReceiverState,
    holder: String,
    until_ms: u64,
}

fn receiver(txn: &WriteTransaction, name: &str) -> Result<Receiver> {
    match txn.open_table(RECEIVERS).map_err(backend)?.get(name).map_err(backend)? {
        Some(value) => decode(value.value()),
        None => Ok(Receiver::default()),
    }
}

fn put_receiver(txn: &WriteTransaction, name: &str, r: &Receiver) -> Result<()> {
    txn.open_table(RECEIVERS)
        .map_err(backend)?
        .insert(name, encode(r).as_slice())
        .map_err(backend)?;
    Ok(())
}

pub(crate) fn hold_receiver(
    txn: &WriteTransaction,
    name: &str,
    holder: &str,
    now_ms: u64,
    hold_ms: u64,
) -> Result<Option<ReceiverState>> {
    let mut r = receiver(txn, name)?;
    if r.holder != holder && r.until_ms > now_ms {
        return Ok(None);
    }
    r.holder = holder.to_string();
    r.until_ms = now_ms.saturating_add(hold_ms);
    put_receiver(txn, name, &r)?;
    Ok(Some(r.state))
}

pub(crate) fn save_receiver(txn: &WriteTransaction, name: &str, holder: &str, state: &ReceiverState) -> Result<bool> {
    let mut r = receiver(txn, name)?;
    if r.holder != holder {
        return Ok(false);
    }
    r.state = state.clone();
    put_receiver(txn, name, &r)?;
    Ok(true)
}

pub(crate) fn put_sent(txn: &WriteTransaction, sent: &Sent) -> Result<()> {
    txn.open_table(SENT)
        .map_err(backend)?
        .insert(sent.queue_id.as_str(), encode(sent).as_slice())
        .map_err(backend)?;
    Ok(())
}

pub(crate) fn sent(txn: &ReadTransaction, id: &str) -> Result<Option<Sent>> {
    match txn.open_table(SENT).map_err(backend)?.get(id).map_err(backend)? {
        Some(value) => Ok(Some(decode(value.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn add_bounce_key(txn: &WriteTransaction, key: &BounceKey, after: Option<char>) -> Result<bool> {
    let mut table = txn.open_table(BOUNCE_KEYS).map_err(backend)?;
    let mut keys: Vec<BounceKey> = Vec::new();
    for entry in table.iter().map_err(backend)? {
        keys.push(decode(entry.map_err(backend)?.1.value())?);
    }
    if return_path::current(&keys).map(|k| k.id) != after {
        return Ok(false);
    }
    let id = key.id.to_string();
    table.insert(id.as_str(), encode(key).as_slice()).map_err(backend)?;
    Ok(true)
}

/// Appends `changes` inside the caller's transaction.
pub(crate) fn append(txn: &WriteTransaction, changes: &Changes) -> Result<()> {
    if !changes.events.is_empty() {
        let mut last_table = txn.open_table(LAST).map_err(backend)?;
        let mut last = last_table.get("").map_err(backend)?.map_or(0, |v| v.value());
        let mut events = txn.open_table(EVENTS).map_err(backend)?;
        for record in &changes.events {
            last = (record.at_ms << SEQ_BITS).max(last + 1);
            events
                .insert((record.tenant.as_str(), last), encode(record).as_slice())
                .map_err(backend)?;
        }
        last_table.insert("", last).map_err(backend)?;
    }
    if !changes.suppress.is_empty() {
        let mut table = txn.open_table(SUPPRESSED).map_err(backend)?;
        for entry in &changes.suppress {
            let entry = entry.clone().normalised();
            table
                .insert(
                    (entry.tenant.as_str(), entry.recipient.as_str()),
                    encode(&entry).as_slice(),
                )
                .map_err(backend)?;
        }
    }
    Ok(())
}

pub(crate) fn cursor_at(at_ms: u64) -> String {
    (at_ms << SEQ_BITS).saturating_sub(1).to_string()
}

pub(crate) fn events(
    txn: &ReadTransaction,
    tenant: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, EventRecord)>> {
    let from = match after {
        None => 0,
        Some(cursor) => match cursor.parse::<u64>() {
            Ok(c) => c.saturating_add(1),
            Err(_) => return Err(StoreError::Invalid(format!("cursor {cursor:?}"))),
        },
    };
    let table = txn.open_table(EVENTS).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.range((tenant, from)..=(tenant, u64::MAX)).map_err(backend)? {
        if out.len() >= limit {
            break;
        }
        let (key, value) = entry.map_err(backend)?;
        out.push((key.value().1.to_string(), decode(value.value())?));
    }
    Ok(out)
}

/// Removes every tenant's records older than `before_ms`, and soft
/// bounces counted before then.
pub(crate) fn purge(txn: &WriteTransaction, before_ms: u64) -> Result<usize> {
    let mut table = txn.open_table(EVENTS).map_err(backend)?;
    let cutoff = before_ms << SEQ_BITS;
    let mut removed = 0;
    let mut next: Option<String> = first_tenant(&table, "")?;
    while let Some(tenant) = next {
        for entry in table
            .extract_from_if((tenant.as_str(), 0)..(tenant.as_str(), cutoff), |_, _| true)
            .map_err(backend)?
        {
            entry.map_err(backend)?;
            removed += 1;
        }
        next = first_tenant(&table, &format!("{tenant}\0"))?;
    }
    // A queue id starts with its time in ms, 12 hex digits (`QueueId::time_ms`).
    let cutoff_id = format!("{:012X}", before_ms.min(0xFFFF_FFFF_FFFF));
    let mut sent = txn.open_table(SENT).map_err(backend)?;
    for entry in sent
        .extract_from_if(..cutoff_id.as_str(), |_, _| true)
        .map_err(backend)?
    {
        entry.map_err(backend)?;
    }
    // Soft bounces older than any window worth keeping go with the events.
    let mut soft = txn.open_table(SOFT_BOUNCES).map_err(backend)?;
    soft.retain(|_, times| decode::<Vec<u64>>(times).is_ok_and(|t| t.iter().any(|at| *at >= before_ms)))
        .map_err(backend)?;
    Ok(removed)
}

/// The first tenant with records at or after `from` in key order.
fn first_tenant(table: &impl ReadableTable<(&'static str, u64), &'static [u8]>, from: &str) -> Result<Option<String>> {
    let mut range = table.range((from, 0)..).map_err(backend)?;
    match range.next() {
        Some(entry) => Ok(Some(entry.map_err(backend)?.0.value().0.to_string())),
        None => Ok(None),
    }
}

pub(crate) fn suppression(txn: &ReadTransaction, tenant: &str, recipient: &str) -> Result<Option<Suppression>> {
    let table = txn.open_table(SUPPRESSED).map_err(backend)?;
    let recipient = suppression::normalise(recipient);
    match table.get((tenant, recipient.as_str())).map_err(backend)? {
        Some(value) => Ok(Some(decode(value.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn suppressions(
    txn: &ReadTransaction,
    tenant: &str,
    search: Option<&str>,
    limit: usize,
) -> Result<Vec<Suppression>> {
    let table = txn.open_table(SUPPRESSED).map_err(backend)?;
    let search = search.map(suppression::normalise);
    let mut out = Vec::new();
    for entry in table.range((tenant, "")..).map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let (t, recipient) = key.value();
        if t != tenant || out.len() >= limit {
            break;
        }
        if search.as_deref().is_none_or(|s| recipient.contains(s)) {
            out.push(decode(value.value())?);
        }
    }
    Ok(out)
}

pub(crate) fn unsuppress(txn: &WriteTransaction, tenant: &str, recipient: &str) -> Result<bool> {
    let recipient = suppression::normalise(recipient);
    let mut table = txn.open_table(SUPPRESSED).map_err(backend)?;
    Ok(table.remove((tenant, recipient.as_str())).map_err(backend)?.is_some())
}

pub(crate) fn count_soft_bounces(
    txn: &WriteTransaction,
    tenant: &str,
    recipients: &[String],
    now_ms: u64,
    window_ms: u64,
) -> Result<Vec<u32>> {
    let mut table = txn.open_table(SOFT_BOUNCES).map_err(backend)?;
    let since = now_ms.saturating_sub(window_ms);
    let mut counts = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let recipient = suppression::normalise(recipient);
        let key = (tenant, recipient.as_str());
        let mut times: Vec<u64> = match table.get(key).map_err(backend)? {
            Some(value) => decode(value.value())?,
            None => Vec::new(),
        };
        times.retain(|t| *t > since);
        times.push(now_ms);
        counts.push(times.len() as u32);
        table.insert(key, encode(&times).as_slice()).map_err(backend)?;
    }
    Ok(counts)
}
