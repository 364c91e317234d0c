//! Prometheus metrics of one node, served at `/metrics` by the admin endpoint.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub messages_accepted: IntCounterVec,
    pub messages_refused: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub alerts: IntCounterVec,
    pub alert_delivery_failures: IntCounterVec,
    pub scans: IntCounterVec,
    pub scanner_failures: IntCounterVec,
    pub auth_lockouts: IntCounterVec,
    pub sessions: IntGauge,
    pub destinations: IntGauge,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
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
            sessions,
            destinations,
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
