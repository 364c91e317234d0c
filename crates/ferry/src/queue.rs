//! `ferry queue`: what is waiting, why, and what an operator can do about it.

use crate::console::{say, say_raw};
use anyhow::{Context, bail};
use ferry_core::clock::rfc5322_date;
use ferry_core::{Clock, QueueId, QueuedMessage, RecipientOutcome, SystemClock};
use ferry_store::Store;
use serde_json::json;

use crate::cli::{Output, QueueCommand};

fn parse_id(id: &str) -> anyhow::Result<QueueId> {
    QueueId::parse(id).with_context(|| format!("{id:?} is not a queue id (32 hex digits)"))
}

pub async fn run(store: &dyn Store, command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::List { limit, output } => {
            let entries = store.list(limit).await?;
            match output {
                Output::Json => say!(
                    "{}",
                    json!(
                        entries
                            .iter()
                            .map(|e| json!({"message": e.message, "due_ms": e.due_ms, "size": e.size}))
                            .collect::<Vec<_>>()
                    )
                ),
                Output::Text => {
                    say!(
                        "{:<32}  {:>8}  {:>3}  {:<24}  {:<30}  pending",
                        "queue id",
                        "size",
                        "try",
                        "due",
                        "sender"
                    );
                    for e in &entries {
                        let m = &e.message;
                        let from = if m.mail_from.is_empty() { "<>" } else { &m.mail_from };
                        say!(
                            "{:<32}  {:>8}  {:>3}  {:<24}  {:<30}  {}",
                            m.id,
                            e.size,
                            m.attempts,
                            short_date(e.due_ms),
                            from,
                            m.pending().join(",")
                        );
                    }
                    say!("{} message(s)", entries.len());
                }
            }
        }
        QueueCommand::Show { id, output } => {
            let id = parse_id(&id)?;
            let Some(message) = store.get(&id).await? else {
                bail!("no message {id} in the queue")
            };
            match output {
                Output::Json => say!("{}", json!(message)),
                Output::Text => say_raw!("{}", describe(&message)),
            }
        }
        QueueCommand::Retry { id } => {
            let id = parse_id(&id)?;
            store.retry_now(&id, SystemClock.now_ms()).await?;
            say!("{id} is due now");
        }
        QueueCommand::Delete { id } => {
            let id = parse_id(&id)?;
            if store.get(&id).await?.is_none() {
                bail!("no message {id} in the queue");
            }
            store.complete(&id).await?;
            say!("{id} deleted");
        }
    }
    Ok(())
}

fn short_date(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
}

fn describe(m: &QueuedMessage) -> String {
    let mut out = format!(
        "queue id: {}\ntenant: {}\napplication: {}\nsender: <{}>\nreceived: {}\nattempts: {}\nsize: {} bytes\nrecipients:\n",
        m.id,
        m.tenant,
        m.app,
        m.mail_from,
        rfc5322_date(m.received_ms),
        m.attempts,
        m.content.len()
    );
    for rcpt in &m.recipients {
        let state = match m.outcomes.get(rcpt) {
            None => "pending".to_string(),
            Some(RecipientOutcome::Delivered { reply, .. }) => format!("delivered: {reply}"),
            Some(RecipientOutcome::Failed { reply, .. }) => format!("failed: {reply}"),
        };
        out.push_str(&format!("  <{rcpt}> {state}\n"));
    }
    out.push_str("attempts:\n");
    for a in &m.history {
        out.push_str(&format!(
            "  {} {}{} tls={} [{}] {}\n",
            short_date(a.at_ms),
            a.destination,
            a.address.as_ref().map_or(String::new(), |addr| format!(" ({addr})")),
            a.tls.as_deref().unwrap_or("none"),
            a.recipients.join(","),
            a.reply
        ));
    }
    out
}
