//! The event webhooks' sender, an actor of the delivery nodes' tree: each
//! tenant or application with a webhook is a receiver; its events are read
//! from the tenant's log after the receiver's cursor and POSTed in batches,
//! signed, oldest first. The cursor moves only when the receiver answers
//! 2xx, so nothing is lost through an outage of the receiver; a failure is
//! tried again with backoff, the same batch first, so nothing is reordered.
//! One node at a time holds a receiver (through the store), so two nodes
//! never send its events side by side. A batch a node sent before it died,
//! unanswered, is sent again: receivers de-duplicate by each event's `id`.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Clock;
use ferry_core::event::{Event, EventsWebhook, ReceiverState};
use ferry_store::{Store, StoreError};
use futures_util::future::join_all;

use crate::alerting::signature;

/// Between looks at every receiver.
const TICK: Duration = Duration::from_secs(1);
/// How long a node holds a receiver past its last look.
const HOLD: Duration = Duration::from_secs(60);
/// Events per POST (a page may run over to end with a whole state change).
const BATCH: usize = 100;
/// Batches one receiver gets per look, so one with a backlog catches up
/// without keeping the others waiting long.
const BATCHES_PER_LOOK: usize = 20;
/// The longest wait between tries of a failing receiver.
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// A POST's time limit.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct EventWebhooks {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub http: reqwest::Client,
    /// This node, as the store knows its holds.
    pub holder: String,
    /// `ferry_webhook_posts_total{result}`.
    pub posts: prometheus::IntCounterVec,
    /// `ferry_webhook_events_total`: events a receiver took.
    pub events: prometheus::IntCounter,
}

/// A tenant's (all its applications' events) or an application's webhook.
struct Receiver {
    /// `tenant:<name>` or `app:<username>`.
    name: String,
    tenant: String,
    app: Option<String>,
    hook: EventsWebhook,
}

impl crate::periodic::Round for EventWebhooks {
    fn every(&self) -> Duration {
        TICK
    }

    async fn round(&self) {
        self.look().await;
    }
}

impl EventWebhooks {
    async fn look(&self) {
        match self.receivers().await {
            Ok(receivers) => {
                join_all(receivers.iter().map(|r| self.serve(r))).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the event webhooks"),
        }
    }

    async fn receivers(&self) -> Result<Vec<Receiver>, StoreError> {
        let tenants = self.store.tenants().await?.into_iter().filter_map(|t| {
            Some(Receiver {
                name: format!("tenant:{}", t.name),
                hook: t.events_webhook?,
                tenant: t.name,
                app: None,
            })
        });
        let apps = self.store.apps(None).await?.into_iter().filter_map(|a| {
            Some(Receiver {
                name: format!("app:{}", a.username),
                hook: a.events_webhook?,
                tenant: a.tenant,
                app: Some(a.username),
            })
        });
        Ok(tenants.chain(apps).collect())
    }

    /// Sends a receiver what it has not taken yet, batch by batch, while
    /// this node holds it and it answers.
    async fn serve(&self, receiver: &Receiver) {
        for _ in 0..BATCHES_PER_LOOK {
            match self.step(receiver).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(receiver = %receiver.name, error = %e, "cannot send events to a webhook");
                    return;
                }
            }
        }
    }

    /// One batch; whether there may be more to send now.
    async fn step(&self, receiver: &Receiver) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let hold = HOLD.as_millis() as u64;
        let Some(mut state) = self
            .store
            .hold_receiver(&receiver.name, &self.holder, now, hold)
            .await?
        else {
            return Ok(false);
        };
        if state.next_try_ms > now {
            return Ok(false);
        }
        let (events, last) = self.batch(receiver, &state).await?;
        let Some(last) = last else { return Ok(false) };
        if !events.is_empty() {
            if let Err(why) = self.post(receiver, &events, now).await {
                self.posts.with_label_values(&["failed"]).inc();
                state.failures = state.failures.saturating_add(1);
                let backoff = Duration::from_secs(1u64 << state.failures.min(16)).min(BACKOFF_MAX);
                state.next_try_ms = now.saturating_add(backoff.as_millis() as u64);
                tracing::warn!(receiver = %receiver.name, error = %why, retry_in_secs = backoff.as_secs(), "event webhook failed; will retry");
                self.store.save_receiver(&receiver.name, &self.holder, &state).await?;
                return Ok(false);
            }
            self.posts.with_label_values(&["ok"]).inc();
            self.events.inc_by(events.len() as u64);
        }
        state = ReceiverState {
            cursor: Some(last),
            failures: 0,
            next_try_ms: 0,
        };
        self.store.save_receiver(&receiver.name, &self.holder, &state).await
    }

    /// The receiver's next events after its cursor, and the cursor of the
    /// last record read (records of other applications move it too).
    async fn batch(
        &self,
        receiver: &Receiver,
        state: &ReceiverState,
    ) -> Result<(Vec<Event>, Option<String>), StoreError> {
        let records = self
            .store
            .events(&receiver.tenant, state.cursor.as_deref(), BATCH)
            .await?;
        let mut events = Vec::new();
        let mut last = None;
        for (cursor, record) in records {
            if events.len() >= BATCH {
                break;
            }
            if receiver.app.as_deref().is_none_or(|a| a == record.app) {
                events.extend(record.events(&cursor));
            }
            last = Some(cursor);
        }
        Ok((events, last))
    }

    async fn post(&self, receiver: &Receiver, events: &[Event], now: u64) -> Result<(), String> {
        let body = serde_json::json!({
            "receiver": receiver.name,
            // Signed with the events: a receiver may refuse old replays.
            "sent_at_ms": now,
            "events": events,
        });
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(&receiver.hook.url)
            .header("Content-Type", "application/json")
            .header("X-Ferry-Signature", signature(&receiver.hook.secret, &body))
            .body(body)
            .timeout(POST_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }
}
