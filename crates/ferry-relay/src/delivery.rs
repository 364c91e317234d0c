//! The delivery worker: takes due messages from the shared queue under a
//! lease, hands each to its route, and completes or reschedules it.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::{Clock, QueuedMessage};
use ferry_store::Queue;
use tokio::sync::{Notify, watch};

use crate::capture::CaptureRoute;

pub struct DeliveryWorker {
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub route: CaptureRoute,
    pub lease: Duration,
    pub concurrency: usize,
    pub wakeup: Arc<Notify>,
}

/// How often the queue is looked at when nothing wakes the worker (retries
/// falling due, leases running out).
const POLL: Duration = Duration::from_secs(1);

/// Retry delays for a route that failed: 1 min, doubling, at most 1 hour.
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(60u64.saturating_mul(1 << attempts.min(6)).min(3600))
}

impl DeliveryWorker {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        loop {
            let batch = match this
                .queue
                .lease(this.clock.now_ms(), this.lease.as_millis() as u64, this.concurrency)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "cannot take messages from the queue");
                    Vec::new()
                }
            };
            let idle = batch.is_empty();
            let mut running = tokio::task::JoinSet::new();
            for message in batch {
                running.spawn(this.clone().deliver(message));
            }
            while running.join_next().await.is_some() {}
            if *stop.borrow() {
                return;
            }
            if idle {
                tokio::select! {
                    _ = this.wakeup.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }

    async fn deliver(self: Arc<Self>, message: QueuedMessage) {
        let (id, attempts, recipients) = (message.id.clone(), message.attempts, message.recipients.len());
        let route = self.route.clone();
        let result = tokio::task::spawn_blocking(move || route.deliver(&message))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(()) => {
                tracing::info!(target: "ferry::delivery", queue_id = %id, route = "capture", recipients, "delivered");
                if let Err(e) = self.queue.complete(&id).await {
                    // It will be delivered again; the capture route rewrites the same file.
                    tracing::error!(queue_id = %id, error = %e, "delivered but not marked complete");
                }
            }
            Err(e) => {
                let delay = retry_delay(attempts);
                tracing::error!(queue_id = %id, error = %e, dir = %self.route.dir().display(), retry_in_secs = delay.as_secs(), "capture failed");
                let due = self.clock.now_ms() + delay.as_millis() as u64;
                if let Err(e) = self.queue.reschedule(&id, due).await {
                    tracing::error!(queue_id = %id, error = %e, "cannot reschedule; it is due again when its lease ends");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stop_growing() {
        assert_eq!(retry_delay(0), Duration::from_secs(60));
        assert_eq!(retry_delay(1), Duration::from_secs(120));
        assert_eq!(retry_delay(20), Duration::from_secs(3600));
    }
}
