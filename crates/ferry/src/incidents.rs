//! `ferry incident` and `ferry held`: applications that stopped behaving
//! like themselves (see `ferry_core::incident`), and the mail held under
//! them until a person releases or discards it; `ferry tenant
//! incident-policy`.

use anyhow::{Context, bail, ensure};
use ferry_admin::report::iso;
use ferry_core::incident::{HourFigures, Incident, Policy, Resolution, Verdict};
use ferry_core::{Clock, QueueId, SystemClock, Tenant};
use ferry_store::{Store, StoreError};
use serde_json::json;

use crate::cli::{HeldCommand, HeldSelection, IncidentCommand, Output, PolicyArg, VerdictArg};
use crate::console::say;
use crate::events::{known_tenant, table};
use ferry_core::config::Config;

pub async fn incident(store: &dyn Store, command: IncidentCommand) -> anyhow::Result<()> {
    match command {
        IncidentCommand::List {
            tenant,
            open,
            limit,
            output,
        } => {
            ensure!(limit > 0, "--limit must be at least 1");
            if let Some(t) = &tenant {
                known_tenant(store, t).await?;
            }
            let read = if open { limit.saturating_mul(20) } else { limit };
            let incidents: Vec<Incident> = store
                .incidents(tenant.as_deref(), read)
                .await?
                .into_iter()
                .filter(|i| !open || i.is_open())
                .take(limit)
                .collect();
            match output {
                Output::Json => say!("{}", json!(incidents)),
                Output::Text => list(&incidents),
            }
        }
        IncidentCommand::Show { id, output } => {
            let incident = store
                .incident(&id)
                .await?
                .with_context(|| format!("no incident {id}"))?;
            match output {
                Output::Json => say!("{}", json!(incident)),
                Output::Text => show(&incident),
            }
        }
        IncidentCommand::Open { app, note } => {
            let record = store
                .app(&app)
                .await?
                .with_context(|| format!("no application {app}"))?;
            let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            let now = SystemClock.now_ms();
            let incident = match ferry_admin::incidents::open_by_hand(store, &record, &by, &note, now).await {
                Err(StoreError::InUse(_)) => bail!("application {app} has an open incident already"),
                other => other?,
            };
            say!(
                "incident {} opened on {app} (policy {:?})",
                incident.id,
                incident.policy
            );
        }
        IncidentCommand::History {
            app,
            days,
            import,
            output,
        } => history(store, &app, days, import.as_deref(), output).await?,
        IncidentCommand::Resolve { id, verdict, note } => {
            let verdict = match verdict {
                VerdictArg::FalseAlarm => Verdict::FalseAlarm,
                VerdictArg::Compromised => Verdict::Compromised,
            };
            let resolution = Resolution {
                at_ms: SystemClock.now_ms(),
                by: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
                verdict,
                note,
            };
            let closed = match store.resolve_incident(&id, resolution).await {
                Err(StoreError::InUse(_)) => bail!("incident {id} is closed already"),
                other => other?,
            };
            say!(
                "incident {} on {} closed; its new mail is no longer held",
                closed.id,
                closed.app
            );
            let held = store.held(Some(&closed.tenant), usize::MAX).await?;
            let still = held.iter().filter(|(_, under)| *under == closed.id).count();
            if still > 0 {
                say!(
                    "{still} messages are still held under it: ferry held release|discard --tenant {} --app {}",
                    closed.tenant,
                    closed.app
                );
            }
        }
    }
    Ok(())
}

async fn history(
    store: &dyn Store,
    name: &str,
    days: u64,
    import: Option<&std::path::Path>,
    output: Output,
) -> anyhow::Result<()> {
    let app = store
        .app(name)
        .await?
        .with_context(|| format!("no application {name}"))?;
    if let Some(file) = import {
        let text = std::fs::read_to_string(file).with_context(|| format!("--import {}", file.display()))?;
        let hours = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str::<HourFigures>(l)
                    .with_context(|| format!("--import {} line {}", file.display(), n + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.save_figures(&app.tenant, &app.username, &hours, 0).await?;
        say!("{} hours of figures kept for {name}", hours.len());
        return Ok(());
    }
    let now_hour = SystemClock.now_ms() / ferry_core::usage::HOUR_MS;
    let hours = store
        .figures(
            &app.tenant,
            &app.username,
            now_hour.saturating_sub(days * 24),
            now_hour + 1,
        )
        .await?;
    match output {
        Output::Json => hours.iter().for_each(|h| say!("{}", json!(h))),
        Output::Text => {
            let rows = hours
                .iter()
                .map(|h| {
                    [
                        iso(h.hour * ferry_core::usage::HOUR_MS),
                        h.messages.to_string(),
                        h.recipients.to_string(),
                        h.domains.to_string(),
                        h.spam.to_string(),
                        h.sender_refusals.to_string(),
                        h.bounced.to_string(),
                        h.complained.to_string(),
                    ]
                    .to_vec()
                })
                .collect();
            let header = [
                "hour",
                "messages",
                "rcpts",
                "domains",
                "spam",
                "sender_refusals",
                "bounced",
                "complained",
            ];
            say!("{}", table(&header, rows));
        }
    }
    Ok(())
}

fn list(incidents: &[Incident]) {
    let rows = incidents
        .iter()
        .map(|i| {
            let signals: Vec<&str> = i.evidence.iter().map(|e| e.signal.as_str()).collect();
            let state = match &i.resolution {
                None => "open".to_string(),
                Some(r) => format!("{:?}", r.verdict).to_lowercase(),
            };
            vec![
                i.id.clone(),
                iso(i.opened_ms),
                format!("{}/{}", i.tenant, i.app),
                format!("{:?}", i.severity).to_lowercase(),
                format!("{:?}", i.policy).to_lowercase(),
                signals.join(","),
                state,
            ]
        })
        .collect();
    say!(
        "{}",
        table(
            &["id", "opened", "application", "severity", "policy", "signals", "state"],
            rows
        )
    );
}

fn show(i: &Incident) {
    say!("incident {} on application {} of tenant {}", i.id, i.app, i.tenant);
    say!(
        "opened {}; severity {:?}; policy {:?}",
        iso(i.opened_ms),
        i.severity,
        i.policy
    );
    for e in &i.evidence {
        say!(
            "  {}: {} (observed {:.2}, usual {:.2}, threshold {:.2})",
            e.signal.as_str(),
            e.detail,
            e.observed,
            e.usual,
            e.threshold
        );
    }
    match &i.resolution {
        None => say!("open"),
        Some(r) => say!("resolved {} by {}: {:?} {}", iso(r.at_ms), r.by, r.verdict, r.note),
    }
}

pub async fn held(store: &dyn Store, config: &Config, command: HeldCommand) -> anyhow::Result<()> {
    match command {
        HeldCommand::List {
            tenant,
            app,
            limit,
            output,
        } => {
            ensure!(limit > 0, "--limit must be at least 1");
            let held = selected(store, tenant.as_deref(), app.as_deref(), limit).await?;
            match output {
                Output::Json => {
                    let rows: Vec<_> = held
                        .iter()
                        .map(|(m, incident)| {
                            json!({"id": m.id.to_string(), "tenant": m.tenant, "app": m.app, "mail_from": m.mail_from,
                                   "recipients": m.recipients, "received_ms": m.received_ms, "incident": incident})
                        })
                        .collect();
                    say!("{}", json!(rows));
                }
                Output::Text => {
                    let rows = held
                        .iter()
                        .map(|(m, incident)| {
                            vec![
                                m.id.to_string(),
                                iso(m.received_ms),
                                format!("{}/{}", m.tenant, m.app),
                                m.mail_from.clone(),
                                m.recipients.len().to_string(),
                                incident.clone(),
                            ]
                        })
                        .collect();
                    say!(
                        "{}",
                        table(&["id", "received", "application", "from", "rcpts", "incident"], rows)
                    );
                    say!("{} held", held.len());
                }
            }
        }
        HeldCommand::Show { id } => {
            let id = QueueId::parse(&id).with_context(|| format!("{id:?} is not a queue id"))?;
            let message = store.get(&id).await?.with_context(|| format!("no message {id}"))?;
            say!(
                "{} from <{}> to {} recipients",
                message.id,
                message.mail_from,
                message.recipients.len()
            );
            say!(
                "{}",
                String::from_utf8_lossy(&message.content[..message.content.len().min(16 * 1024)])
            );
        }
        HeldCommand::Release(selection) => act(store, config, selection, true).await?,
        HeldCommand::Discard(selection) => act(store, config, selection, false).await?,
    }
    Ok(())
}

async fn selected(
    store: &dyn Store,
    tenant: Option<&str>,
    app: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<(ferry_core::QueuedMessage, String)>> {
    if let Some(t) = tenant {
        known_tenant(store, t).await?;
    }
    Ok(ferry_admin::incidents::held_of(store, tenant, app, limit).await?)
}

async fn act(store: &dyn Store, config: &Config, selection: HeldSelection, release: bool) -> anyhow::Result<()> {
    let terms = config.contract.terms().context("contract")?;
    let ids: Vec<QueueId> = match (&selection.id, &selection.tenant) {
        (Some(id), _) => vec![QueueId::parse(id).with_context(|| format!("{id:?} is not a queue id"))?],
        (None, tenant) => selected(store, tenant.as_deref(), selection.app.as_deref(), usize::MAX)
            .await?
            .into_iter()
            .map(|(m, _)| m.id)
            .collect(),
    };
    let mut done = 0usize;
    for id in &ids {
        let now = SystemClock.now_ms();
        let acted = if release {
            ferry_admin::incidents::release(store, &terms, &config.alerts, id, now).await
        } else {
            store.discard_held(id, now).await
        };
        match acted {
            Ok(()) => done += 1,
            Err(StoreError::NotFound(_)) if selection.id.is_some() => bail!("{id} is not held"),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let verb = if release { "released" } else { "discarded" };
    say!("{done} held messages {verb}");
    Ok(())
}

pub async fn set_policy(store: &dyn Store, name: &str, policy: PolicyArg) -> anyhow::Result<()> {
    let mut tenant: Tenant = store.tenant(name).await?.with_context(|| format!("no tenant {name}"))?;
    tenant.incident_policy = match policy {
        PolicyArg::Alert => Policy::Alert,
        PolicyArg::Hold => Policy::Hold,
        PolicyArg::Suspend => Policy::Suspend,
    };
    store.update_tenant(tenant).await?;
    say!(
        "tenant {name}: incident policy {}",
        format!("{policy:?}").to_lowercase()
    );
    Ok(())
}
