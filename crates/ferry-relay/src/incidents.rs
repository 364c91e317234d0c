//! The watch over applications' behaviour (see `ferry_core::incident`):
//! each round, on the one delivery node holding the watch, it reads the
//! events since its last round, gathers each application's figures for the
//! hour so far, judges them against the application's baseline and opens
//! an incident when they say so, under the tenant's policy (its alert goes
//! out with it; `suspend` also disables the application). Each finished
//! hour's figures are kept for the baselines to come; a baseline leaves out
//! the hours of an incident still open or found compromised (a breach never
//! becomes what is usual) and keeps a false alarm's (it learns from it).
//! Held mail past its retention is discarded here too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::Clock;
use ferry_core::config::IncidentWatch;
use ferry_core::event::EventKind;
use ferry_core::incident::{self, Baseline, HourFigures, Incident, Policy, SignIns, Verdict, WEEK_HOURS};
use ferry_core::usage::{HOUR_MS, MINUTE_MS, Scope};
use ferry_store::{Store, StoreError};

use crate::metrics::Metrics;

/// The name the watch is held under (see `Events::hold_receiver`).
const WATCH: &str = "ferry:incident-watch";
/// Events read in one batch, and at most in one round: a round that falls
/// behind catches up over the next ones.
const EVENTS_BATCH: usize = 1_000;
const EVENTS_PER_ROUND: usize = 200_000;
/// A tenant's incidents read to judge one of its applications.
const RECENT_INCIDENTS: usize = 200;
/// Held messages looked at for retention in one round.
const HELD_PER_ROUND: usize = 10_000;

type AppKey = (String, String);

pub struct Watch {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub rules: IncidentWatch,
    /// This node, as the watch's holder.
    pub holder: String,
    pub tally: tokio::sync::Mutex<Tally>,
}

/// What the holder has read of the hour being watched.
#[derive(Default)]
pub struct Tally {
    /// The hour being tallied; 0 until the first round holding the watch.
    hour: u64,
    /// Each tenant's position in its event log.
    cursors: HashMap<String, String>,
    /// The recipient domains of each application's accepted mail, by hour.
    domains: HashMap<(String, String, u64), BTreeSet<String>>,
    /// Baselines made for `hour`.
    baselines: HashMap<AppKey, Baseline>,
}

impl crate::periodic::Round for Watch {
    fn every(&self) -> Duration {
        Duration::from_secs(self.rules.every_secs)
    }

    async fn round(&self) {
        if let Err(e) = self.look().await {
            tracing::warn!(error = %e, "cannot watch the applications' behaviour this round");
        }
        if let Err(e) = self.expire_held().await {
            tracing::warn!(error = %e, "cannot discard the held mail past its retention");
        }
    }
}

impl Watch {
    async fn look(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut tally = self.tally.lock().await;
        let hold_ms = self.rules.every_secs.saturating_mul(3_000).max(30_000);
        if self
            .store
            .hold_receiver(WATCH, &self.holder, now, hold_ms)
            .await?
            .is_none()
        {
            // Another node watches; when it is ours again, start afresh.
            *tally = Tally::default();
            return Ok(());
        }
        let hour = now / HOUR_MS;
        if tally.hour == 0 {
            tally.hour = hour;
        }
        let tenants: Vec<String> = self.store.tenants().await?.into_iter().map(|t| t.name).collect();
        self.read_events(&mut tally, &tenants).await?;
        if tally.hour < hour {
            self.close_hour(&mut tally).await?;
            tally.hour = hour;
            tally.baselines.clear();
        }
        let minutes = (now % HOUR_MS) / MINUTE_MS;
        let facts = self.store.sign_in_facts(hour * HOUR_MS).await?;
        let mut figures = self.hour_figures(&tally, hour).await?;
        for f in &facts {
            // Signed in without sending yet: judged on its sign-ins.
            figures.entry((f.tenant.clone(), f.app.clone())).or_insert(HourFigures {
                hour,
                ..HourFigures::default()
            });
        }
        for ((tenant, app), figures) in figures {
            let sign_ins = SignIns::of(&facts, &tenant, &app);
            self.judge(&mut tally, (tenant, app), figures, &sign_ins, minutes, now)
                .await?;
        }
        self.metrics.watch_rounds.inc();
        Ok(())
    }

    /// Takes the recipient domains of accepted mail from each tenant's log,
    /// from the start of the watched hour on.
    async fn read_events(&self, tally: &mut Tally, tenants: &[String]) -> Result<(), StoreError> {
        let mut budget = EVENTS_PER_ROUND;
        let from_hour = tally.hour;
        for tenant in tenants {
            let mut cursor = match tally.cursors.get(tenant) {
                Some(c) => c.clone(),
                None => self.store.cursor_at(from_hour * HOUR_MS),
            };
            while budget > 0 {
                let batch = self.store.events(tenant, Some(&cursor), EVENTS_BATCH).await?;
                let Some((last, _)) = batch.last() else { break };
                cursor = last.clone();
                budget = budget.saturating_sub(batch.len());
                for (_, record) in batch.iter().filter(|(_, r)| r.kind == EventKind::Accepted) {
                    let hour = record.at_ms / HOUR_MS;
                    if hour < from_hour {
                        continue;
                    }
                    let domains = tally
                        .domains
                        .entry((record.tenant.clone(), record.app.clone(), hour))
                        .or_default();
                    domains.extend(
                        record
                            .recipients
                            .iter()
                            .filter_map(|r| r.rsplit_once('@'))
                            .map(|(_, d)| d.to_ascii_lowercase()),
                    );
                }
            }
            tally.cursors.insert(tenant.clone(), cursor);
        }
        Ok(())
    }

    /// Every application's figures in `hour`, from the store's hourly usage
    /// and outcome counts and the tallied domains.
    async fn hour_figures(&self, tally: &Tally, hour: u64) -> Result<BTreeMap<AppKey, HourFigures>, StoreError> {
        let usage = self.store.hours(hour, hour + 1).await?;
        let outcomes = self.store.outcomes(hour, hour + 1).await?;
        let mut apps: BTreeSet<AppKey> = usage
            .iter()
            .filter_map(|u| match &u.scope {
                Scope::App { tenant, app } => Some((tenant.clone(), app.clone())),
                _ => None,
            })
            .collect();
        apps.extend(outcomes.iter().map(|c| (c.tenant.clone(), c.app.clone())));
        let mut out = BTreeMap::new();
        for (tenant, app) in apps {
            let mut figures = incident::figures(&tenant, &app, &usage, &outcomes, &[])
                .into_iter()
                .find(|f| f.hour == hour)
                .unwrap_or(HourFigures {
                    hour,
                    ..HourFigures::default()
                });
            figures.domains = tally
                .domains
                .get(&(tenant.clone(), app.clone(), hour))
                .map_or(0, |d| d.len() as u64);
            out.insert((tenant, app), figures);
        }
        Ok(out)
    }

    /// Keeps the watched hour's figures of every application active in it.
    async fn close_hour(&self, tally: &mut Tally) -> Result<(), StoreError> {
        let hour = tally.hour;
        let keep_from = hour.saturating_sub((self.rules.signals.baseline_weeks + 1) * WEEK_HOURS);
        for ((tenant, app), figures) in self.hour_figures(tally, hour).await? {
            self.store.save_figures(&tenant, &app, &[figures], keep_from).await?;
        }
        tally.domains.retain(|(_, _, h), _| *h > hour);
        Ok(())
    }

    async fn judge(
        &self,
        tally: &mut Tally,
        (tenant, app): AppKey,
        figures: HourFigures,
        sign_ins: &SignIns,
        minutes: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        if self.store.open_incident_of(&tenant, &app).await?.is_some() {
            return Ok(());
        }
        let weeks = self.rules.signals.baseline_weeks;
        let key = (tenant.clone(), app.clone());
        let baseline = match tally.baselines.get(&key) {
            Some(b) => b.clone(),
            None => {
                let from = figures.hour.saturating_sub(weeks * WEEK_HOURS);
                let mut history = self.store.figures(&tenant, &app, from, figures.hour).await?;
                let breached = self.breached_hours(&tenant, &app).await?;
                history.retain(|f| !breached.iter().any(|hours| hours.contains(&f.hour)));
                let b = Baseline::of(&history, figures.hour, weeks);
                tally.baselines.insert(key, b.clone());
                b
            }
        };
        let Some(finding) = incident::assess(&figures, minutes, &baseline, sign_ins, &self.rules.signals) else {
            return Ok(());
        };
        if self.judged_this_hour(&tenant, &app, figures.hour).await? {
            return Ok(());
        }
        let policy = self
            .store
            .tenant(&tenant)
            .await?
            .map_or(Policy::default(), |t| t.incident_policy);
        let incident = Incident::of(finding, &tenant, &app, policy, now);
        if !self.store.open_incident(incident.clone()).await? {
            return Ok(());
        }
        for e in &incident.evidence {
            self.metrics.incidents.with_label_values(&[e.signal.as_str()]).inc();
        }
        let signals: Vec<&str> = incident.evidence.iter().map(|e| e.signal.as_str()).collect();
        tracing::warn!(
            target: "ferry::incident",
            incident = %incident.id,
            tenant = %tenant,
            app = %app,
            severity = ?incident.severity,
            policy = ?policy,
            signals = %signals.join(", "),
            "incident opened: the application is not behaving like itself"
        );
        ferry_admin::incidents::suspend(self.store.as_ref(), &incident, "ferry incident watch", now).await
    }

    /// The hours of the application's incidents that are open or were
    /// found compromised: from the hour that raised each to its closing.
    async fn breached_hours(&self, tenant: &str, app: &str) -> Result<Vec<std::ops::RangeInclusive<u64>>, StoreError> {
        let incidents = self.store.incidents(Some(tenant), RECENT_INCIDENTS).await?;
        Ok(incidents
            .iter()
            .filter(|i| i.app == app)
            .filter(|i| i.resolution.as_ref().is_none_or(|r| r.verdict == Verdict::Compromised))
            .map(|i| i.hour..=i.resolution.as_ref().map_or(u64::MAX, |r| r.at_ms / HOUR_MS))
            .collect())
    }

    /// Whether a person already closed an incident raised by this hour's
    /// figures: the same figures must not raise it again.
    async fn judged_this_hour(&self, tenant: &str, app: &str, hour: u64) -> Result<bool, StoreError> {
        let recent = self.store.incidents(Some(tenant), RECENT_INCIDENTS).await?;
        Ok(recent.iter().any(|i| i.app == app && i.hour == hour && !i.is_open()))
    }

    /// Discards held mail older than the retention, with its `discarded`
    /// events; every node may do it (a message is discarded once).
    async fn expire_held(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let before = now.saturating_sub(self.rules.held_retention_days.saturating_mul(86_400_000));
        let held = self.store.held(None, HELD_PER_ROUND).await?;
        let mut discarded: BTreeMap<&str, u64> = BTreeMap::new();
        for (message, incident) in held.iter().filter(|(m, _)| m.received_ms < before) {
            match self.store.discard_held(&message.id, now).await {
                Ok(()) => *discarded.entry(incident.as_str()).or_default() += 1,
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for (id, messages) in discarded {
            tracing::warn!(
                target: "ferry::incident",
                incident = %id,
                messages,
                retention_days = self.rules.held_retention_days,
                "held mail past its retention discarded"
            );
            // Its owners are told, once a day per incident.
            if let Some(incident) = self.store.incident(id).await? {
                self.store.raise_alert(incident.discarded_alert(messages, now)).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use ferry_core::clock::FixedClock;
    use ferry_core::incident::{Finding, Severity};
    use ferry_core::metering::AlertKind;
    use ferry_core::{QueueId, QueuedMessage};
    use ferry_store::EmbeddedStore;

    use super::*;

    const DAY_MS: u64 = 24 * HOUR_MS;

    fn message(at_ms: u64) -> QueuedMessage {
        QueuedMessage {
            id: QueueId::generate(),
            tenant: "t".into(),
            app: "a".into(),
            mail_from: "a@t.test".into(),
            recipients: vec!["r@x.test".into()],
            received_ms: at_ms,
            attempts: 0,
            eight_bit: false,
            smtputf8: false,
            outcomes: Default::default(),
            history: Vec::new(),
            content: b"Subject: x\r\n\r\nx\r\n".to_vec(),
            lease: None,
            return_paths: Vec::new(),
        }
    }

    #[tokio::test]
    async fn held_mail_past_its_retention_is_discarded_and_its_owners_told_once_a_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("store"));
        let start = 1_000 * DAY_MS;
        let clock = Arc::new(FixedClock(start.into()));
        let finding = Finding {
            hour: start / HOUR_MS,
            severity: Severity::High,
            evidence: Vec::new(),
        };
        let incident = Incident::of(finding, "t", "a", Policy::Hold, start);
        assert!(store.open_incident(incident.clone()).await.expect("open"));
        let (old, young) = (message(start), message(start + 13 * DAY_MS));
        for m in [&old, &young, &message(start + 13 * DAY_MS + 1)] {
            store.enqueue(m.clone(), None).await.expect("held");
        }
        assert_eq!(store.held(None, 10).await.expect("held").len(), 3);
        // The opening's alert is not what this test is about.
        let opening = store.claim_alerts(start, 60_000, 10).await.expect("claim");
        store.alert_delivered(&opening[0].id, start).await.expect("told");

        let watch = Watch {
            store: store.clone(),
            clock: clock.clone(),
            metrics: Arc::new(Metrics::new()),
            rules: IncidentWatch::default(),
            holder: "node".into(),
            tally: Default::default(),
        };
        clock.0.store(start + 14 * DAY_MS + 1, Ordering::SeqCst);
        watch.expire_held().await.expect("expire");
        let held: Vec<QueueId> = store
            .held(None, 10)
            .await
            .expect("held")
            .into_iter()
            .map(|(m, _)| m.id)
            .collect();
        assert_eq!(held.len(), 2, "only the one past 14 days is discarded");
        assert!(held.contains(&young.id));
        let told = store
            .claim_alerts(start + 14 * DAY_MS + 2, 60_000, 10)
            .await
            .expect("claim");
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!((told[0].kind, told[0].value), (AlertKind::HeldDiscarded, 1));
        assert_eq!(
            told[0].incident.as_ref().map(|i| i.id.clone()),
            Some(incident.id.clone())
        );

        store.alert_delivered(&told[0].id, start).await.expect("told");
        watch.expire_held().await.expect("nothing more");
        assert!(
            store
                .claim_alerts(start + 15 * DAY_MS, 60_000, 10)
                .await
                .expect("claim")
                .is_empty()
        );

        // Two more past it another day: one alert counting both.
        clock.0.store(start + 27 * DAY_MS + 2, Ordering::SeqCst);
        watch.expire_held().await.expect("expire");
        assert!(store.held(None, 10).await.expect("held").is_empty());
        let later = store
            .claim_alerts(start + 28 * DAY_MS, 60_000, 10)
            .await
            .expect("claim");
        assert_eq!(later.iter().map(|a| a.value).collect::<Vec<_>>(), [2], "{later:?}");
    }
}
