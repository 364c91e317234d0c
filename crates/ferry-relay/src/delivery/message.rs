//! One message's walk: its pending recipients grouped by next hop, each
//! group sent to its destination actor (or written by the capture route),
//! every answer recorded durably as it comes, and then the message
//! completed, its DSN sent, its next try scheduled — or, when no group was
//! even tried, the message handed back to the queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::config::RouteKind;
use ferry_core::{DeliveryAttempt, QueueId, QueuedMessage, RecipientOutcome, Route, dsn, event, suppression};
use ferry_store::{Changes, Next, StoreError};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ractor::rpc::CallResult;
use tracing::{Instrument, Span};

use super::destination::{Group, GroupAnswer};
use super::{DeliveryMsg, DeliveryWork};
use crate::outbound::{Answer, GroupResult, Hop};

/// Records what became of a group on its span (when traces are on).
fn answered(span: &Span, answer: GroupAnswer) -> GroupAnswer {
    if !span.is_disabled() {
        let reply = match &answer {
            GroupAnswer::Attempted(result) => result.attempt.reply.as_str(),
            GroupAnswer::NotAttempted { why, .. } => why.as_str(),
        };
        span.record("reply", reply);
    }
    answer
}

/// Where one group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum NextHop {
    Capture,
    Domain(String),
    SmartHost,
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextHop::Capture => f.write_str("capture"),
            NextHop::Domain(domain) => f.write_str(domain),
            NextHop::SmartHost => f.write_str("smart host"),
        }
    }
}

/// Releases the message's holding and tells the supervisor running now,
/// however the walk ends.
struct Finished {
    work: Arc<DeliveryWork>,
    id: QueueId,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.work.holdings.release(&self.id);
        if let Some(supervisor) = self.work.current_supervisor() {
            let _ = supervisor.cast(DeliveryMsg::Finished);
        }
    }
}

/// A destination actor that died with the group: wait a little before the
/// message is tried again, so a message that kills it cannot spin.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Between tries to save a result while the store is unavailable.
const SAVE_RETRY: Duration = Duration::from_millis(500);

/// The outcomes a delivery attempt's span counts, in the order of `DeliveryWork::counts`' names.
const OUTCOMES: [&str; 3] = ["delivered", "deferred", "failed"];

/// Walks one leased message; `span` is its `delivery.attempt` span (it runs in it).
pub(super) async fn deliver(work: Arc<DeliveryWork>, mut message: QueuedMessage, span: Span) {
    let _finished = Finished {
        work: work.clone(),
        id: message.id.clone(),
    };
    let route = work.route_of(&message.tenant).await;
    let shared = Arc::new(message.clone());
    let mut answers: FuturesUnordered<_> = group(&message, &route)
        .into_iter()
        .map(|(hop, rcpts)| {
            let span = crate::trace::group(&message.id, &hop, rcpts.len());
            work.attempt(hop, &route, rcpts, shared.clone(), span.clone())
                .instrument(span)
        })
        .collect();
    let (mut attempted, mut hand_back) = (false, None);
    let mut tally = [0i64; OUTCOMES.len()];
    // The outcomes in the store: each save logs the events since the last.
    let mut saved = message.outcomes.clone();
    while let Some(answer) = answers.next().await {
        let result = match answer {
            GroupAnswer::Attempted(result) => result,
            GroupAnswer::NotAttempted { why, retry_in } => {
                tracing::info!(queue_id = %message.id, why, "group not attempted");
                hand_back = Some(hand_back.map_or(retry_in, |d: Duration| d.max(retry_in)));
                continue;
            }
        };
        attempted = true;
        let counts = work.counts(&result);
        for kind in &counts {
            if let Some(i) = OUTCOMES.iter().position(|o| o == kind) {
                tally[i] += 1;
            }
        }
        apply(&mut message, result, work.clock.now_ms());
        // Answers are saved before anything else happens, so a recipient
        // that said 250 is never sent the message again; they are counted
        // once saved.
        match work.record(&message, Next::Continue, &saved).await {
            Ok(()) => saved.clone_from(&message.outcomes),
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(queue_id = %message.id, "lease lost while sending; the message's new holder saves the rest");
                return;
            }
            Err(e) => {
                tracing::error!(queue_id = %message.id, error = %e, "cannot save delivery progress");
                return;
            }
        }
        for kind in counts {
            work.metrics.deliveries.with_label_values(&[kind]).inc();
        }
    }
    if !span.is_disabled() {
        for (kind, count) in OUTCOMES.iter().zip(tally) {
            span.record(*kind, count);
        }
    }
    match hand_back {
        Some(after) if !attempted => work.hand_back(&message.id, after).await,
        _ => work.finish(message, &saved).await,
    }
}

impl DeliveryWork {
    async fn route_of(&self, tenant: &str) -> Route {
        let route = match self.store.tenant(tenant).await {
            Ok(Some(t)) => t.route,
            _ => Route::Default,
        };
        match (route, self.default_route) {
            (Route::Default, RouteKind::Capture) => Route::Capture,
            (Route::Default, RouteKind::Mx) => Route::Mx,
            (route, _) => route,
        }
    }

    /// Each recipient's result, as `ferry_delivery_attempts_total` counts it.
    fn counts(&self, result: &GroupResult) -> Vec<&'static str> {
        result
            .answers
            .iter()
            .map(|(_, answer)| match answer {
                Answer::Delivered(_) => "delivered",
                Answer::Failed { .. } => "failed",
                Answer::Deferred(_) => "deferred",
            })
            .collect()
    }

    async fn attempt(
        &self,
        hop: NextHop,
        route: &Route,
        rcpts: Vec<String>,
        message: Arc<QueuedMessage>,
        span: Span,
    ) -> GroupAnswer {
        let hop = match (hop, route) {
            (NextHop::Domain(domain), _) => Hop::Domain(domain),
            (NextHop::SmartHost, Route::SmartHost(smart)) => Hop::SmartHost(smart.clone()),
            _ => return answered(&span, GroupAnswer::Attempted(self.capture(&rcpts, &message).await)),
        };
        let Some(supervisor) = self.current_supervisor() else {
            let why = "delivery stopping".into();
            return answered(
                &span,
                GroupAnswer::NotAttempted {
                    why,
                    retry_in: Duration::ZERO,
                },
            );
        };
        let bound = self.transaction_bound(rcpts.len());
        let called = supervisor
            .call(
                |reply| DeliveryMsg::Route {
                    hop,
                    group: Group {
                        rcpts,
                        message,
                        reply,
                        span: span.clone(),
                    },
                },
                Some(bound),
            )
            .await;
        answered(
            &span,
            match called {
                Ok(CallResult::Success(answer)) => answer,
                Ok(_) => GroupAnswer::NotAttempted {
                    why: "the destination stopped".into(),
                    retry_in: AFTER_FAILURE,
                },
                Err(_) => GroupAnswer::NotAttempted {
                    why: "delivery stopping".into(),
                    retry_in: Duration::ZERO,
                },
            },
        )
    }

    async fn capture(&self, rcpts: &[String], message: &Arc<QueuedMessage>) -> GroupResult {
        // The capture route is one destination too: at most as many files
        // written at once as a destination has connections.
        let Ok(_slot) = self.capture_slots.acquire().await else {
            let why = "451 4.3.0 delivery stopping".to_string();
            let attempt = crate::outbound::attempt(self.clock.now_ms(), "capture", rcpts, why.clone());
            return GroupResult::all(rcpts, Answer::Deferred(why), attempt);
        };
        let now = self.clock.now_ms();
        let capture = self.capture.clone();
        let copy = message.clone();
        let written = tokio::task::spawn_blocking(move || capture.deliver(&copy))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let (answer, reply) = match written {
            Ok(()) => (
                Answer::Delivered("250 2.0.0 captured".into()),
                "250 2.0.0 captured".to_string(),
            ),
            Err(e) => (
                Answer::Deferred(format!("451 4.3.0 capture failed: {e}")),
                format!("451 4.3.0 capture failed: {e}"),
            ),
        };
        let attempt = DeliveryAttempt {
            at_ms: now,
            destination: "capture".into(),
            address: None,
            tls: None,
            recipients: rcpts.to_vec(),
            reply,
        };
        GroupResult::all(rcpts, answer, attempt)
    }

    /// All answered: DSN for failures, then done. Otherwise retry, or give
    /// up on the rest once the message is too old.
    async fn finish(&self, mut message: QueuedMessage, saved: &Outcomes) {
        let now = self.clock.now_ms();
        let pending = message.pending();
        if !pending.is_empty() {
            match self
                .retry
                .next_attempt(message.attempts, message.received_ms, now, rand::random())
            {
                Some(due) => return self.save(&message, Next::RetryAt(due), saved).await,
                None => expire(&mut message, &pending, now),
            }
        }
        // The DSN is queued before the original goes: a crash between the
        // two sends the DSN twice rather than never.
        if let Some(bounce) = dsn::bounce(&message, &self.hostname, now) {
            tracing::info!(queue_id = %message.id, dsn = %bounce.id, to = %message.mail_from, "bounce queued");
            if let Err(e) = self.store.enqueue(bounce, None).await {
                tracing::error!(queue_id = %message.id, error = %e, "cannot queue the bounce; will try again");
                let due = now + self.retry.base_ms;
                return self.save(&message, Next::RetryAt(due), saved).await;
            }
            self.wakeup.notify_one();
        }
        self.save(&message, Next::Done, saved).await;
    }

    async fn save(&self, message: &QueuedMessage, next: Next, saved: &Outcomes) {
        log_outcome(message, next);
        match self.record(message, next, saved).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(queue_id = %message.id, "lease lost; the message's new holder records its result");
            }
            Err(e) => tracing::error!(queue_id = %message.id, error = %e, "cannot save the delivery result"),
        }
    }

    /// Nothing was tried: the message is due again after `after` (or when
    /// its lease ends, if it can no longer be moved).
    async fn hand_back(&self, id: &QueueId, after: Duration) {
        let Some(until) = self.holdings.lease_of(id) else {
            return;
        };
        let due = self.clock.now_ms() + after.as_millis() as u64;
        if let Err(e) = self.store.extend_leases(&[(id.clone(), until)], due).await {
            tracing::warn!(queue_id = %id, error = %e, "cannot hand a message back; it is due when its lease ends");
        }
    }

    /// Saves an attempt's result. A store that is failing over is tried
    /// again while the lease lasts: a result lost here is a message sent
    /// twice. Saving the same result twice counts it once (the stores
    /// make it so); a message gone on a retry was removed by the try
    /// whose answer was lost.
    async fn record(&self, message: &QueuedMessage, next: Next, saved: &Outcomes) -> Result<(), StoreError> {
        let give_up = tokio::time::Instant::now() + self.save_for;
        let mut retried = false;
        let changes = self.changes(saved, message, next);
        let relet;
        let message = match self.holdings.token_of(&message.id) {
            Some(token) if message.lease.as_deref() != Some(token.as_str()) => {
                relet = QueuedMessage {
                    lease: Some(token),
                    ..message.clone()
                };
                &relet
            }
            _ => message,
        };
        loop {
            match self.store.record(message, next, &changes).await {
                Err(e @ (StoreError::Unavailable(_) | StoreError::Busy)) if tokio::time::Instant::now() < give_up => {
                    let why = e.to_string();
                    tracing::warn!(queue_id = %message.id, error = %why, "cannot save a delivery result yet; trying again");
                    retried = true;
                    tokio::time::sleep(SAVE_RETRY).await;
                }
                Err(StoreError::NotFound(_)) if retried => return Ok(()),
                other => return other,
            }
        }
    }
}

type Outcomes = BTreeMap<String, RecipientOutcome>;

impl DeliveryWork {
    /// The events a save logs (what changed since `saved`), and the
    /// recipients its bounces put on the tenant's suppression list.
    fn changes(&self, saved: &Outcomes, message: &QueuedMessage, next: Next) -> Changes {
        let retry_at = match next {
            Next::RetryAt(due) => Some(due),
            Next::Done | Next::Continue => None,
        };
        let events = event::at_delivery(saved, message, retry_at);
        let rule = self.suppression.soft_bounce_rule();
        // A delivery-time bounce is never a soft one: those are retried.
        let suppress = events
            .iter()
            .flat_map(|e| suppression::from_event(e, |_| 0, rule, self.suppression.expires_ms(e.at_ms)))
            .collect();
        Changes { events, suppress }
    }
}

/// Pending recipients by next hop, in a stable order; with Ferry's
/// return path, one recipient a group (each has its own envelope-From).
fn group(message: &QueuedMessage, route: &Route) -> Vec<(NextHop, Vec<String>)> {
    let by_hop = by_hop(&message.pending(), route);
    if message.return_paths.is_empty() {
        return by_hop.into_iter().collect();
    }
    by_hop
        .into_iter()
        .flat_map(|(hop, rcpts)| rcpts.into_iter().map(move |r| (hop.clone(), vec![r])))
        .collect()
}

fn by_hop(pending: &[String], route: &Route) -> BTreeMap<NextHop, Vec<String>> {
    let mut groups: BTreeMap<NextHop, Vec<String>> = BTreeMap::new();
    for rcpt in pending {
        let hop = match route {
            Route::Capture | Route::Default => NextHop::Capture,
            Route::SmartHost(_) => NextHop::SmartHost,
            Route::Mx => NextHop::Domain(rcpt.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase()),
        };
        groups.entry(hop).or_default().push(rcpt.clone());
    }
    groups
}

fn apply(message: &mut QueuedMessage, result: GroupResult, now: u64) {
    for (rcpt, answer) in result.answers {
        let outcome = match answer {
            Answer::Delivered(reply) => RecipientOutcome::Delivered { at_ms: now, reply },
            Answer::Failed { status, reply, remote } => RecipientOutcome::Failed {
                at_ms: now,
                status,
                reply,
                remote,
            },
            Answer::Deferred(_) => continue,
        };
        message.outcomes.insert(rcpt, outcome);
    }
    message.record_attempt(result.attempt);
}

fn expire(message: &mut QueuedMessage, pending: &[String], now: u64) {
    let last = message
        .history
        .last()
        .map_or_else(|| "no attempt answered".to_string(), |a| a.reply.clone());
    for rcpt in pending {
        let reply = format!("554 4.4.7 delivery time expired; last answer: {last}");
        message.outcomes.insert(
            rcpt.clone(),
            RecipientOutcome::Failed {
                at_ms: now,
                status: "4.4.7".into(),
                reply,
                remote: None,
            },
        );
    }
}

fn log_outcome(message: &QueuedMessage, next: Next) {
    let delivered = message
        .outcomes
        .values()
        .filter(|o| matches!(o, RecipientOutcome::Delivered { .. }))
        .count();
    let failed = message.failed().len();
    let last = message.history.last();
    tracing::info!(
        target: "ferry::delivery",
        queue_id = %message.id,
        tenant = %message.tenant,
        delivered,
        failed,
        pending = message.pending().len(),
        attempts = message.attempts + 1,
        destination = last.map_or("-", |a| a.destination.as_str()),
        reply = last.map_or("-", |a| a.reply.as_str()),
        next = ?next,
        "delivery"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_domain_for_mx_and_as_one_otherwise() {
        let rcpts = vec!["a@x.test".to_string(), "b@Y.test".into(), "c@x.test".into()];
        let groups = by_hop(&rcpts, &Route::Mx);
        assert_eq!(groups[&NextHop::Domain("x.test".into())], ["a@x.test", "c@x.test"]);
        assert_eq!(groups[&NextHop::Domain("y.test".into())], ["b@Y.test"]);
        assert_eq!(by_hop(&rcpts, &Route::Capture).len(), 1);
    }

    #[test]
    fn with_ferrys_return_path_each_recipient_is_a_transaction_of_its_own() {
        let mut m: QueuedMessage = serde_json::from_value(serde_json::json!({
            "id": "0192F2A1B2C3D4E5F60718293A4B5C6D", "tenant": "t", "app": "a",
            "mail_from": "a@t.test", "recipients": ["a@x.test", "b@x.test"],
            "received_ms": 1, "attempts": 0
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(group(&m, &Route::Mx).len(), 1);
        m.return_paths = vec!["b-1@b.t.test".into(), "b-2@b.t.test".into()];
        let groups = group(&m, &Route::Mx);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].1, ["b@x.test"]);
        assert_eq!(m.return_path("b@x.test"), "b-2@b.t.test");
    }
}
