//! Per-destination traffic control: how many connections at once, how fast
//! messages start, which open connections wait for the next message, and
//! which destinations keep failing and are left alone for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client::Connection;

#[derive(Debug, Clone, Copy)]
pub struct DestinationLimits {
    pub max_connections: usize,
    /// Least time between two message starts; None for no rate limit.
    pub min_interval: Option<Duration>,
    pub failure_limit: u32,
    pub backoff: Duration,
    pub idle: Duration,
}

struct Destination {
    slots: Arc<Semaphore>,
    idle: Vec<(Connection, Instant)>,
    next_start: Instant,
    failures: u32,
    suspended_until: Option<Instant>,
}

pub struct Destinations {
    limits: DestinationLimits,
    map: Mutex<HashMap<String, Destination>>,
}

impl Destinations {
    pub fn new(limits: DestinationLimits) -> Self {
        Destinations {
            limits,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Destination) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let d = map.entry(key.to_string()).or_insert_with(|| Destination {
            slots: Arc::new(Semaphore::new(self.limits.max_connections)),
            idle: Vec::new(),
            next_start: Instant::now(),
            failures: 0,
            suspended_until: None,
        });
        f(d)
    }

    /// Time left of a destination's backoff, if it is backed off.
    pub fn suspended(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        self.with(key, |d| d.suspended_until.filter(|t| *t > now).map(|t| t - now))
    }

    /// A connection slot: at most `max_connections` per destination.
    pub async fn slot(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        let slots = self.with(key, |d| d.slots.clone());
        slots.acquire_owned().await.ok()
    }

    /// Waits for the destination's message rate to allow one more start.
    pub async fn pace(&self, key: &str) {
        let Some(interval) = self.limits.min_interval else {
            return;
        };
        let start = self.with(key, |d| {
            let start = d.next_start.max(Instant::now());
            d.next_start = start + interval;
            start
        });
        tokio::time::sleep_until(start.into()).await;
    }

    /// An open connection left by an earlier message, still fresh.
    pub fn take_idle(&self, key: &str) -> Option<Connection> {
        let idle = self.limits.idle;
        self.with(key, |d| {
            d.idle.retain(|(_, since)| since.elapsed() < idle);
            d.idle.pop().map(|(c, _)| c)
        })
    }

    pub fn put_idle(&self, key: &str, connection: Connection) {
        self.with(key, |d| d.idle.push((connection, Instant::now())));
    }

    pub fn connected(&self, key: &str) {
        self.with(key, |d| {
            d.failures = 0;
            d.suspended_until = None;
        });
    }

    /// One more failed connection; at the limit the destination is backed off.
    pub fn failed(&self, key: &str) {
        let limits = self.limits;
        self.with(key, |d| {
            d.failures += 1;
            if d.failures >= limits.failure_limit {
                d.suspended_until = Some(Instant::now() + limits.backoff);
                d.failures = 0;
                tracing::warn!(
                    destination = key,
                    backoff_secs = limits.backoff.as_secs(),
                    "destination keeps failing; backing off"
                );
            }
        });
    }

    /// Connections idle past their time, taken out to be closed.
    pub fn expired_idle(&self) -> Vec<Connection> {
        let idle = self.limits.idle;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for d in map.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = d.idle.drain(..).partition(|(_, since)| since.elapsed() >= idle);
            d.idle = fresh;
            out.extend(old.into_iter().map(|(c, _)| c));
        }
        out
    }
}
