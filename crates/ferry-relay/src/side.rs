//! Side work off the session's path (refusal counts, message samples): one
//! bounded queue and one worker each. What the queue cannot hold is dropped
//! and counted in `ferry_side_work_dropped_total{kind}`, never spawned as a
//! task of its own: a burst beyond what the store takes costs some counts
//! or samples, never memory, and never delays a session's answer.

use std::future::Future;

use prometheus::IntCounter;
use tokio::sync::mpsc;

/// Items waiting for a worker at most.
pub const SIDE_WORK_MAX: usize = 4096;

/// The most items a worker hands over at once.
const BATCH: usize = 256;

/// One kind of side work: a bounded queue and the worker that drains it.
pub struct SideWork<T> {
    queue: mpsc::Sender<T>,
    dropped: IntCounter,
}

impl<T: Send + 'static> SideWork<T> {
    /// Starts the worker (on the runtime of the caller): `work` gets what
    /// waits, up to a batch at a time, and ends when every sender is gone.
    pub fn start<F, Fut>(dropped: IntCounter, work: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (queue, mut waiting) = mpsc::channel(SIDE_WORK_MAX);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while waiting.recv_many(&mut batch, BATCH).await > 0 {
                work(std::mem::take(&mut batch)).await;
            }
        });
        SideWork { queue, dropped }
    }

    /// Queues `item`, or drops and counts it when the queue is full.
    pub fn offer(&self, item: T) {
        if self.queue.try_send(item).is_err() {
            self.dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn what_the_queue_cannot_hold_is_dropped_and_counted() {
        let dropped = IntCounter::new("dropped", "dropped").expect("counter");
        let (gate, opened) = tokio::sync::watch::channel(false);
        let done: Arc<Mutex<Vec<usize>>> = Arc::default();
        let seen = done.clone();
        let side = SideWork::start(dropped.clone(), move |items: Vec<usize>| {
            let (mut opened, seen) = (opened.clone(), seen.clone());
            async move {
                let _ = opened.wait_for(|o| *o).await;
                seen.lock().expect("lock").extend(items);
            }
        });
        let offered = SIDE_WORK_MAX + BATCH + 100;
        for i in 0..offered {
            side.offer(i);
        }
        assert!(dropped.get() >= 100, "the excess is dropped: {}", dropped.get());
        let _ = gate.send(true);
        drop(side);
        let kept = offered - dropped.get() as usize;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while done.lock().expect("lock").len() < kept {
            assert!(tokio::time::Instant::now() < deadline, "the worker drains what it kept");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(done.lock().expect("lock").len(), kept);
    }
}
