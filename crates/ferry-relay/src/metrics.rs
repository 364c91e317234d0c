//! Prometheus metrics of one node, served at `/metrics` by the admin endpoint.

use ferry_core::Clock;
use ferry_core::contract::Terms;
use ferry_core::metering::Window;
use ferry_core::usage::Scope;
use ferry_store::Store;
use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub messages_accepted: IntCounterVec,
    pub messages_refused: IntCounterVec,
    /// Side work (refusal counts, samples) dropped because its queue was full.
    pub side_work_dropped: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub alerts: IntCounterVec,
    pub alert_delivery_failures: IntCounterVec,
    pub scans: IntCounterVec,
    pub scanner_failures: IntCounterVec,
    pub auth_lockouts: IntCounterVec,
    /// Reports at the inbound listener, by kind and result.
    pub reports: IntCounterVec,
    /// Event webhook POSTs by result, and the events receivers took.
    pub webhook_posts: IntCounterVec,
    pub webhook_events: prometheus::IntCounter,
    /// Incidents this node opened, once per signal in their evidence.
    pub incidents: IntCounterVec,
    /// Rounds of the incident watch this node made while holding it.
    pub watch_rounds: prometheus::IntCounter,
    pub sessions: IntGauge,
    pub destinations: IntGauge,
    /// Spooling a message (the durable write before 250).
    pub store_write: Histogram,
    /// Read from the store at each scrape (see [`Metrics::observe_store`]).
    pub store: StoreGauges,
}

/// The cluster's queue and contract as the store holds them: the same on
/// every node, read when `/metrics` is scraped (aggregate with `max`).
pub struct StoreGauges {
    up: IntGauge,
    read_seconds: Gauge,
    queued: IntGauge,
    due: IntGauge,
    oldest_due_seconds: Gauge,
    allocation_used: GaugeVec,
    held: prometheus::IntGaugeVec,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
    let _ = registry.register(Box::new(g.clone()));
    g
}

fn float_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
    let _ = registry.register(Box::new(g.clone()));
    g
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let sessions = gauge(&registry, "ferry_sessions", "SMTP sessions open on this node");
        let destinations = gauge(
            &registry,
            "ferry_delivery_destinations",
            "Destination actors running on this node (one per next hop with work or open connections)",
        );
        Metrics {
            messages_accepted: counter(
                &registry,
                "ferry_messages_accepted_total",
                "Messages answered with 250 and spooled",
                &["tenant", "app"],
            ),
            messages_refused: counter(
                &registry,
                "ferry_messages_refused_total",
                "Messages refused at the end of DATA, by the rule that refused them (the reason of explain and the reports)",
                &["tenant", "reason"],
            ),
            side_work_dropped: counter(
                &registry,
                "ferry_side_work_dropped_total",
                "Refusal counts and message samples dropped because their bounded queue was full",
                &["kind"],
            ),
            deliveries: counter(
                &registry,
                "ferry_delivery_attempts_total",
                "Delivery attempts by result",
                &["result"],
            ),
            alerts: counter(
                &registry,
                "ferry_alerts_total",
                "Charge-back alerts raised",
                &["kind", "scope"],
            ),
            alert_delivery_failures: counter(
                &registry,
                "ferry_alert_delivery_failures_total",
                "Failed webhook deliveries of alerts",
                &["kind"],
            ),
            scans: counter(
                &registry,
                "ferry_scans_total",
                "Scanner verdicts",
                &["scanner", "verdict"],
            ),
            scanner_failures: counter(
                &registry,
                "ferry_scanner_failures_total",
                "Scanners that could not answer",
                &["scanner"],
            ),
            auth_lockouts: counter(
                &registry,
                "ferry_auth_lockouts_total",
                "Sign-in lockouts started by this node, by rule: pair (username at one address), username (across addresses), address (across usernames)",
                &["kind"],
            ),
            reports: counter(
                &registry,
                "ferry_reports_total",
                "Reports at the inbound listener: kind dsn, arf, guessed, other (not a report) or unknown (not about mail Ferry sent); result taken or refused",
                &["kind", "result"],
            ),
            webhook_posts: counter(
                &registry,
                "ferry_webhook_posts_total",
                "Batches of events POSTed to tenants' and applications' webhooks, by result (ok, failed)",
                &["result"],
            ),
            webhook_events: {
                let c = prometheus::IntCounter::new(
                    "ferry_webhook_events_total",
                    "Events taken (answered 2xx) by tenants' and applications' webhooks",
                )
                .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
                let _ = registry.register(Box::new(c.clone()));
                c
            },
            incidents: counter(
                &registry,
                "ferry_incidents_total",
                "Incidents opened on applications (see GET /v1/incidents), counted once for each signal in their evidence",
                &["signal"],
            ),
            watch_rounds: {
                let c = prometheus::IntCounter::new(
                    "ferry_incident_watch_rounds_total",
                    "Rounds of the incident watch made by this node (one node holds the watch at a time)",
                )
                .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
                let _ = registry.register(Box::new(c.clone()));
                c
            },
            sessions,
            destinations,
            store_write: {
                let opts = HistogramOpts::new(
                    "ferry_store_write_seconds",
                    "Time to spool a message durably (store commit, and replicas with wait_replicas) before 250",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]);
                let h = Histogram::with_opts(opts).unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
                let _ = registry.register(Box::new(h.clone()));
                h
            },
            store: StoreGauges::new(&registry),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

impl StoreGauges {
    fn new(registry: &Registry) -> Self {
        let allocation_used = GaugeVec::new(
            Opts::new(
                "ferry_tenant_allocation_used_ratio",
                "This contract year's usage of each tenant with a yearly allocation, as a share of it (1 = all used)",
            ),
            &["tenant"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let _ = registry.register(Box::new(allocation_used.clone()));
        let held = prometheus::IntGaugeVec::new(
            Opts::new(
                "ferry_held_messages",
                "Messages held under an incident on their application, waiting for a person to release or discard them",
            ),
            &["tenant"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let _ = registry.register(Box::new(held.clone()));
        StoreGauges {
            up: gauge(
                registry,
                "ferry_store_up",
                "1 when the last read of the store at a scrape succeeded, else 0",
            ),
            read_seconds: float_gauge(
                registry,
                "ferry_store_read_seconds",
                "How long the scrape's read of the queue took",
            ),
            queued: gauge(registry, "ferry_queue_messages", "Messages queued, cluster-wide"),
            due: gauge(
                registry,
                "ferry_queue_due_messages",
                "Messages due for delivery now (not leased, not waiting for a retry)",
            ),
            oldest_due_seconds: float_gauge(
                registry,
                "ferry_queue_oldest_due_seconds",
                "How long the most overdue message has waited past its due time; 0 when none is overdue",
            ),
            allocation_used,
            held,
        }
    }
}

/// Held messages read at a scrape, at most: past it the gauge is a floor.
const HELD_COUNTED: usize = 100_000;

impl Metrics {
    /// Refreshes the store's gauges; a failing store sets `ferry_store_up` to 0.
    pub async fn observe_store(&self, store: &dyn Store, clock: &dyn Clock, terms: &Terms) {
        let g = &self.store;
        let now = clock.now_ms();
        let started = std::time::Instant::now();
        let backlog = match store.backlog(now).await {
            Ok(backlog) => backlog,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the queue for the metrics");
                g.up.set(0);
                return;
            }
        };
        g.read_seconds.set(started.elapsed().as_secs_f64());
        g.up.set(1);
        g.queued.set(i64::try_from(backlog.queued).unwrap_or(i64::MAX));
        g.due.set(i64::try_from(backlog.due).unwrap_or(i64::MAX));
        let overdue_ms = backlog.earliest_due_ms.map_or(0, |due| now.saturating_sub(due));
        g.oldest_due_seconds.set(overdue_ms as f64 / 1000.0);
        let Ok(tenants) = store.tenants().await else { return };
        if let Ok(held) = store.held(None, HELD_COUNTED).await {
            let mut by_tenant: std::collections::HashMap<&str, i64> =
                tenants.iter().map(|t| (t.name.as_str(), 0)).collect();
            for (message, _) in &held {
                *by_tenant.entry(message.tenant.as_str()).or_default() += 1;
            }
            for (tenant, count) in by_tenant {
                g.held.with_label_values(&[tenant]).set(count);
            }
        }
        let year = Window::Year(terms.year_of(now));
        for tenant in tenants {
            let Some(allocation) = tenant.allocation.yearly.filter(|a| *a > 0) else {
                continue;
            };
            if let Ok(usage) = store.usage(&Scope::Tenant(tenant.name.clone()), year).await {
                let used = usage.units(terms.unit) as f64 / allocation as f64;
                g.allocation_used.with_label_values(&[tenant.name.as_str()]).set(used);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
