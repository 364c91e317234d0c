//! The retention keeper: an actor of the delivery nodes' tree that removes
//! message samples and events older than `samples.retention_days`, once at start and
//! then every hour (each node's pass is idempotent, so several delivery
//! nodes may run it).

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Clock;
use ferry_store::Store;

const EVERY: Duration = Duration::from_secs(3600);

pub struct Retention {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub samples_ms: u64,
}

impl Retention {
    /// One pass: how many samples it removed.
    pub async fn purge(&self) -> Result<usize, ferry_store::StoreError> {
        let before = self.clock.now_ms().saturating_sub(self.samples_ms);
        let removed = self.store.purge_samples(before).await?;
        if removed > 0 {
            tracing::info!(removed, "expired message samples removed");
        }
        let events = self.store.purge_events(before).await?;
        if events > 0 {
            tracing::info!(records = events, "expired events removed");
        }
        Ok(removed)
    }
}

impl crate::periodic::Round for Retention {
    fn every(&self) -> Duration {
        EVERY
    }

    async fn round(&self) {
        if let Err(e) = self.purge().await {
            tracing::warn!(error = %e, "cannot remove expired samples and events; trying again in an hour");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::clock::FixedClock;
    use ferry_core::sample::{Sample, Sampled};
    use ferry_store::{SampleQuery, Samples};

    #[tokio::test]
    async fn samples_past_their_retention_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(ferry_store::EmbeddedStore::open(&dir.path().join("s.redb")).expect("store"));
        let day = 86_400_000;
        for (id, at) in [("OLD", 10 * day), ("NEW", 39 * day)] {
            let sample = Sample::of(Sampled {
                id: id.into(),
                tenant: "t",
                app: "a",
                at_ms: at,
                outcome: "accepted",
                mail_from: "",
                recipients: &[],
                content: b"Subject: s\r\n\r\n",
                with_body: false,
            });
            store.put_sample(sample).await.expect("put");
        }
        let clock = Arc::new(FixedClock::at(40 * day + 1));
        let retention = Retention {
            store: store.clone(),
            clock: clock.clone(),
            samples_ms: 30 * day,
        };
        assert_eq!(retention.purge().await.expect("purge"), 1, "the 30-day-old one");
        assert_eq!(retention.purge().await.expect("purge"), 0, "the other is 1 day old");
        clock.advance(30 * day);
        assert_eq!(retention.purge().await.expect("purge"), 1);
        let left = store
            .samples(SampleQuery {
                to_ms: u64::MAX,
                limit: 10,
                ..SampleQuery::default()
            })
            .await
            .expect("read");
        assert!(left.is_empty());
    }
}
