//! The embedded store's failed sign-ins: one record per counter (see
//! `ferry_core::lockout`), and an index by expiry so forgetting old ones
//! costs a range scan of what expired, never a scan of everything.

use std::net::IpAddr;

use ferry_core::lockout::{FailureCount, Lockout, LockoutRules, SignInState, Subject};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::Result;
use crate::embedded::backend;

/// Subject key → (failures, window start, locked until).
const FAILURES: TableDefinition<&str, (u32, u64, u64)> = TableDefinition::new("sign_in_failures");
/// (expires, subject key): what to forget when.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("sign_in_expiry");

pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(FAILURES).map_err(backend)?;
    txn.open_table(EXPIRY).map_err(backend)?;
    Ok(())
}

fn count_of((failures, window_start_ms, locked_until_ms): (u32, u64, u64)) -> FailureCount {
    FailureCount {
        failures,
        window_start_ms,
        locked_until_ms,
    }
}

pub(crate) fn state(txn: &ReadTransaction, username: &str, address: IpAddr) -> Result<SignInState> {
    let table = txn.open_table(FAILURES).map_err(backend)?;
    let mut counts = [FailureCount::default(); 3];
    for (count, subject) in counts.iter_mut().zip(Subject::of_attempt(username, address)) {
        if let Some(v) = table.get(subject.key().as_str()).map_err(backend)? {
            *count = count_of(v.value());
        }
    }
    let [pair, username, address] = counts;
    Ok(SignInState {
        pair,
        username,
        address,
    })
}

pub(crate) fn count_failure(
    txn: &WriteTransaction,
    username: &str,
    address: IpAddr,
    rules: &LockoutRules,
    now_ms: u64,
) -> Result<Vec<Lockout>> {
    forget_expired(txn, now_ms)?;
    let mut failures = txn.open_table(FAILURES).map_err(backend)?;
    let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
    let mut started = Vec::new();
    for subject in Subject::of_attempt(username, address) {
        let key = subject.key();
        let rule = rules.rule(subject.kind);
        let mut count = failures
            .get(key.as_str())
            .map_err(backend)?
            .map_or_else(FailureCount::default, |v| count_of(v.value()));
        if count.failures > 0 {
            expiry.remove((count.expires_ms(rule), key.as_str())).map_err(backend)?;
        }
        let starts = count.fail(rule, now_ms);
        failures
            .insert(
                key.as_str(),
                (count.failures, count.window_start_ms, count.locked_until_ms),
            )
            .map_err(backend)?;
        expiry
            .insert((count.expires_ms(rule), key.as_str()), ())
            .map_err(backend)?;
        if starts {
            started.push(Lockout::new(subject, count));
        }
    }
    Ok(started)
}

fn forget_expired(txn: &WriteTransaction, now_ms: u64) -> Result<()> {
    let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
    let mut failures = txn.open_table(FAILURES).map_err(backend)?;
    for entry in expiry
        .extract_from_if((0, "")..(now_ms, ""), |_, _| true)
        .map_err(backend)?
    {
        let (key, _) = entry.map_err(backend)?;
        failures.remove(key.value().1).map_err(backend)?;
    }
    Ok(())
}

pub(crate) fn forget(txn: &WriteTransaction, subject: &Subject) -> Result<()> {
    let mut failures = txn.open_table(FAILURES).map_err(backend)?;
    failures.remove(subject.key().as_str()).map_err(backend)?;
    Ok(())
}

/// Removes the counters that `match`; how many. A scan: for operators.
pub(crate) fn remove(txn: &WriteTransaction, matches: impl Fn(&Subject, &FailureCount) -> bool) -> Result<usize> {
    let mut failures = txn.open_table(FAILURES).map_err(backend)?;
    let mut doomed = Vec::new();
    for entry in failures.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        if Subject::from_key(key.value()).is_some_and(|s| matches(&s, &count_of(value.value()))) {
            doomed.push(key.value().to_string());
        }
    }
    // Their expiry entries stay; when they come due they may remove a newer
    // counter of the same subject early, which only forgives.
    for key in &doomed {
        failures.remove(key.as_str()).map_err(backend)?;
    }
    Ok(doomed.len())
}

pub(crate) fn lockouts(txn: &ReadTransaction, now_ms: u64) -> Result<Vec<Lockout>> {
    let table = txn.open_table(FAILURES).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let count = count_of(value.value());
        if let (true, Some(subject)) = (count.locked(now_ms), Subject::from_key(key.value())) {
            out.push(Lockout::new(subject, count));
        }
    }
    Ok(out)
}
