//! The delivery worker: takes due messages from the shared queue under a
//! lease, groups each message's pending recipients by next hop, records
//! every answer durably as it comes, and then completes the message, sends
//! its DSN, or schedules the next try.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::config::RouteKind;
use ferry_core::retry::RetrySchedule;
use ferry_core::{Clock, DeliveryAttempt, QueuedMessage, RecipientOutcome, Route, dsn};
use ferry_store::{Next, Store};
use tokio::sync::{Notify, watch};

use crate::capture::CaptureRoute;
use crate::outbound::{Answer, GroupResult, Outbound};

pub struct DeliveryWorker {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub capture: CaptureRoute,
    pub outbound: Outbound,
    pub default_route: RouteKind,
    pub retry: RetrySchedule,
    pub hostname: String,
    pub lease: Duration,
    pub concurrency: usize,
    pub wakeup: Arc<Notify>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How often the queue is looked at when nothing wakes the worker (retries
/// falling due, leases running out).
const POLL: Duration = Duration::from_millis(500);

/// Where one group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum NextHop {
    Capture,
    Domain(String),
    SmartHost,
}

impl DeliveryWorker {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut running = tokio::task::JoinSet::new();
        loop {
            let room = this.concurrency.saturating_sub(running.len());
            let batch = if room == 0 { Vec::new() } else { this.take(room).await };
            let took = !batch.is_empty();
            for message in batch {
                running.spawn(this.clone().deliver(message));
            }
            let stopping = *stop.borrow();
            if stopping {
                while running.join_next().await.is_some() {}
                return;
            }
            if took && running.len() < this.concurrency {
                continue;
            }
            let mut quiet = false;
            tokio::select! {
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = this.wakeup.notified() => {}
                _ = tokio::time::sleep(POLL) => quiet = true,
                _ = stop.changed() => {}
            }
            if quiet {
                this.outbound.close_idle().await;
            }
        }
    }

    async fn take(&self, max: usize) -> Vec<QueuedMessage> {
        match self
            .store
            .lease(self.clock.now_ms(), self.lease.as_millis() as u64, max)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot take messages from the queue");
                Vec::new()
            }
        }
    }

    async fn deliver(self: Arc<Self>, mut message: QueuedMessage) {
        let route = self.route_of(&message.tenant).await;
        for (hop, rcpts) in group(&message.pending(), &route) {
            let result = self.attempt(&hop, &route, &rcpts, &message).await;
            for (_, answer) in &result.answers {
                let kind = match answer {
                    Answer::Delivered(_) => "delivered",
                    Answer::Failed { .. } => "failed",
                    Answer::Deferred(_) => "deferred",
                };
                self.metrics.deliveries.with_label_values(&[kind]).inc();
            }
            apply(&mut message, result, self.clock.now_ms());
            // Answers are saved before anything else happens, so a recipient
            // that said 250 is never sent the message again.
            if let Err(e) = self.store.record(&message, Next::Continue).await {
                tracing::error!(queue_id = %message.id, error = %e, "cannot save delivery progress");
                return;
            }
        }
        self.finish(message).await;
    }

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

    async fn attempt(&self, hop: &NextHop, route: &Route, rcpts: &[String], message: &QueuedMessage) -> GroupResult {
        let now = self.clock.now_ms();
        match (hop, route) {
            (NextHop::Domain(domain), _) => self.outbound.to_domain(domain, rcpts, message, now).await,
            (NextHop::SmartHost, Route::SmartHost(smart)) => {
                self.outbound.to_smart_host(smart, rcpts, message, now).await
            }
            _ => self.capture(rcpts, message, now).await,
        }
    }

    async fn capture(&self, rcpts: &[String], message: &QueuedMessage, now: u64) -> GroupResult {
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
    async fn finish(&self, mut message: QueuedMessage) {
        let now = self.clock.now_ms();
        let pending = message.pending();
        if !pending.is_empty() {
            match self
                .retry
                .next_attempt(message.attempts, message.received_ms, now, rand::random())
            {
                Some(due) => return self.save(&message, Next::RetryAt(due)).await,
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
                return self.save(&message, Next::RetryAt(due)).await;
            }
            self.wakeup.notify_one();
        }
        self.save(&message, Next::Done).await;
    }

    async fn save(&self, message: &QueuedMessage, next: Next) {
        log_outcome(message, next);
        if let Err(e) = self.store.record(message, next).await {
            tracing::error!(queue_id = %message.id, error = %e, "cannot save the delivery result");
        }
    }
}

/// Pending recipients by next hop, in a stable order.
fn group(pending: &[String], route: &Route) -> BTreeMap<NextHop, Vec<String>> {
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
        let groups = group(&rcpts, &Route::Mx);
        assert_eq!(groups[&NextHop::Domain("x.test".into())], ["a@x.test", "c@x.test"]);
        assert_eq!(groups[&NextHop::Domain("y.test".into())], ["b@Y.test"]);
        assert_eq!(group(&rcpts, &Route::Capture).len(), 1);
    }
}
