//! `ferry events`: a tenant's log of what happened to each recipient of
//! each message, read by cursor as the API's readers and webhooks read it.

use anyhow::{Context, ensure};
use ferry_admin::report::iso;
use ferry_core::event::Event;
use ferry_store::{Store, StoreError};
use serde_json::json;

use crate::cli::{EventsCommand, Output};
use crate::console::{say, warn_line};

/// Records asked of the store at once.
const PAGE_RECORDS: usize = 500;
/// Records one command reads at most while `--app` filters them out, so a
/// long log of other applications' records ends the command: the cursor
/// printed continues from there.
const SCAN_RECORDS_MAX: usize = 100_000;

pub async fn run(store: &dyn Store, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List {
            tenant,
            app,
            after,
            limit,
            output,
        } => {
            ensure!(limit > 0, "--limit must be at least 1");
            known_tenant(store, &tenant).await?;
            let page = read(store, &tenant, app.as_deref(), after, limit).await?;
            if page.scan_bound_reached {
                warn_line!(
                    "ferry: stopped after reading {SCAN_RECORDS_MAX} records, short of --limit {limit}: \
                     run again with --after {} to read on",
                    page.next.as_deref().unwrap_or_default()
                );
            }
            match output {
                Output::Json => say!("{}", json!({"events": page.events, "next": page.next})),
                Output::Text => print(&page),
            }
        }
    }
    Ok(())
}

/// What one command read.
struct Page {
    events: Vec<Event>,
    /// The cursor to continue from: the last record read, whether or not
    /// `--app` kept it; `--after`'s when nothing was read.
    next: Option<String>,
    scan_bound_reached: bool,
}

/// Reads records after `after` until `limit` events of `app` (all when
/// `None`) or the end. A record's recipients are never split (the cursor
/// is a record's), so the last record may bring a few more than `limit`.
async fn read(
    store: &dyn Store,
    tenant: &str,
    app: Option<&str>,
    after: Option<String>,
    limit: usize,
) -> anyhow::Result<Page> {
    let mut page = Page {
        events: Vec::new(),
        next: after,
        scan_bound_reached: false,
    };
    let mut scanned = 0;
    while page.events.len() < limit {
        if scanned >= SCAN_RECORDS_MAX {
            page.scan_bound_reached = true;
            break;
        }
        // Unfiltered, every record brings at least one event.
        let wanted_records = match app {
            Some(_) => PAGE_RECORDS,
            None => PAGE_RECORDS.min(limit - page.events.len()),
        };
        let want = wanted_records.min(SCAN_RECORDS_MAX - scanned);
        let records = match store.events(tenant, page.next.as_deref(), want).await {
            Ok(records) => records,
            Err(StoreError::Invalid(_)) => {
                let cursor = page.next.as_deref().unwrap_or_default();
                anyhow::bail!(
                    "--after {cursor:?} is not a cursor of tenant {tenant}'s events \
                     (use the `next:` an earlier `ferry events list` printed)"
                );
            }
            Err(e) => return Err(e).context("reading the events"),
        };
        let end = records.len() < want;
        scanned += records.len();
        for (cursor, record) in records {
            if app.is_none_or(|a| record.app == a) {
                page.events.extend(record.events(&cursor));
            }
            page.next = Some(cursor);
            if page.events.len() >= limit {
                break;
            }
        }
        if end {
            break;
        }
    }
    Ok(page)
}

fn print(page: &Page) {
    let rows = page
        .events
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                iso(e.at_ms),
                e.app.clone(),
                if e.queue_id.is_empty() {
                    "-".to_string()
                } else {
                    e.queue_id.clone()
                },
                e.recipient.clone(),
                e.kind.as_str().to_string(),
                answer(e),
            ]
        })
        .collect();
    say!(
        "{}",
        table(
            &["id", "time", "app", "queue id", "recipient", "kind", "status / reply"],
            rows
        )
    );
    say!("{} event(s)", page.events.len());
    match &page.next {
        Some(cursor) => say!("next: {cursor}"),
        None => say!("next: none (no events yet: run again without --after)"),
    }
}

/// The status and the reply, each when present, the status once.
fn answer(e: &Event) -> String {
    match (&e.detail.status, &e.detail.reply) {
        (Some(status), Some(reply)) if reply.contains(status.as_str()) => reply.clone(),
        (Some(status), Some(reply)) => format!("{status} {reply}"),
        (Some(status), None) => status.clone(),
        (None, Some(reply)) => reply.clone(),
        (None, None) => String::new(),
    }
}

/// Fails, naming it, unless the tenant exists.
pub(crate) async fn known_tenant(store: &dyn Store, tenant: &str) -> anyhow::Result<()> {
    store
        .tenant(tenant)
        .await?
        .with_context(|| format!("--tenant {tenant}: no such tenant"))?;
    Ok(())
}

/// Rows under a header, each column as wide as its widest cell (the last
/// one left ragged), without a trailing newline.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| h.to_string()).collect();
    let mut lines = Vec::with_capacity(rows.len() + 1);
    for row in std::iter::once(header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let width = widths.get(i).copied().unwrap_or(0);
                if i == last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        lines.push(cells.join("  ").trim_end().to_string());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["jo@x.test".to_string(), "manual".to_string(), "cli".to_string()],
            vec!["a@b".to_string(), "hard_bounce".to_string(), String::new()],
        ];
        assert_eq!(
            table(&["recipient", "reason", "source"], rows),
            "recipient  reason       source\njo@x.test  manual       cli\na@b        hard_bounce"
        );
    }
}
