//! Key names, and a message's metering plan in the form the enqueue script
//! takes: every key and field already named, so the script only counts,
//! compares and records.

use std::collections::BTreeMap;

use ferry_core::contract::{ContractYear, Unit};
use ferry_core::metering::{Alert, Metering, Window};
use ferry_core::usage::{HourUsage, Scope, Usage};
use ferry_store::Result;
use serde::Serialize;

/// Minute windows only matter for a minute; Redis forgets them after this.
const MINUTE_WINDOW_TTL_SECS: u64 = 180;

pub(crate) struct Keys {
    prefix: String,
    pub tenants: String,
    pub apps: String,
    pub dkim: String,
    pub directory_version: String,
    pub tokens: String,
    pub due: String,
    pub hours: String,
    pub alert_times: String,
    pub outbox: String,
    pub outcome_hours: String,
    pub audit: String,
    pub lockouts: String,
    pub samples: String,
    pub sample_times: String,
    /// The pub/sub channel every enqueue is announced on.
    pub enqueued: String,
    /// The tenants that have an event stream.
    pub event_tenants: String,
    /// Ids of messages with a `Sent` record, by time received.
    pub sent_times: String,
    /// Return-path keys by id, and the newest one's id.
    pub bounce_keys: String,
    pub bounce_key_newest: String,
    /// Incidents by id, each application's open one, ids by time opened.
    pub incidents: String,
    pub open_incidents: String,
    pub incident_times: String,
    /// Applications whose new mail is held → the incident; held messages → the incident.
    pub holding: String,
    pub held: String,
    pub sign_in_facts: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let key = |name: &str| format!("{prefix}:{name}");
        Keys {
            prefix: prefix.to_string(),
            tenants: key("tenants"),
            apps: key("apps"),
            dkim: key("dkim"),
            directory_version: key("directory_version"),
            tokens: key("tokens"),
            due: key("due"),
            hours: key("hours"),
            alert_times: key("alert_times"),
            outbox: key("outbox"),
            outcome_hours: key("outcome_hours"),
            audit: key("audit"),
            lockouts: key("lockouts"),
            samples: key("samples"),
            sample_times: key("sample_times"),
            enqueued: key("enqueued"),
            event_tenants: key("event_tenants"),
            sent_times: key("sent_times"),
            bounce_keys: key("bounce_keys"),
            bounce_key_newest: key("bounce_key_newest"),
            incidents: key("incidents"),
            open_incidents: key("open_incidents"),
            incident_times: key("incident_times"),
            holding: key("holding"),
            sign_in_facts: key("sign_in_facts"),
            held: key("held"),
        }
    }

    /// A tenant's event stream.
    pub fn events(&self, tenant: &str) -> String {
        format!("{}:ev:{tenant}", self.prefix)
    }

    /// A webhook receiver's hold and state.
    pub fn receiver(&self, name: &str) -> String {
        format!("{}:recv:{name}", self.prefix)
    }

    /// What a message with Ferry's return path went out as.
    pub fn sent(&self, id: &str) -> String {
        format!("{}:sent:{id}", self.prefix)
    }

    /// A tenant's suppression list: recipient → entry.
    pub fn suppressed(&self, tenant: &str) -> String {
        format!("{}:sup:{tenant}", self.prefix)
    }

    /// The times of one recipient's recent soft bounces.
    pub fn soft_bounces(&self, tenant: &str, recipient: &str) -> String {
        format!("{}:soft:{tenant}:{recipient}", self.prefix)
    }

    /// A failed sign-in counter (`ferry_core::lockout::Subject::key`).
    pub fn failures(&self, subject: &str) -> String {
        format!("{}:f:{subject}", self.prefix)
    }

    pub fn outcomes(&self, hour: u64) -> String {
        format!("{}:o:{hour}", self.prefix)
    }

    pub fn message(&self, id: &str) -> String {
        format!("{}:msg:{id}", self.prefix)
    }

    pub fn counter(&self, window: Window) -> String {
        let (kind, period) = window.code();
        format!("{}:c:{kind}:{period}", self.prefix)
    }

    pub fn peak(&self, year: ContractYear) -> String {
        format!("{}:peak:{}", self.prefix, year.start_ms)
    }

    pub fn lease(&self, token: &str) -> String {
        format!("{}:lease:{token}", self.prefix)
    }

    pub fn alert(&self, id: &str) -> String {
        format!("{}:alert:{id}", self.prefix)
    }

    /// The addresses an application signed in from: address → first ms.
    pub fn sources(&self, tenant: &str, app: &str) -> String {
        format!("{}:sources:{tenant}\t{app}", self.prefix)
    }

    /// An application's figures of finished hours: hour → JSON.
    pub fn figures(&self, tenant: &str, app: &str) -> String {
        format!("{}:figures:{tenant}\t{app}", self.prefix)
    }

    /// The plan for `lua/enqueue.lua`.
    pub fn plan(&self, m: &Metering) -> Plan {
        let hour = Window::Hour(m.at_ms / ferry_core::usage::HOUR_MS);
        let minute = Window::Minute(m.at_ms / ferry_core::usage::MINUTE_MS);
        let mut counts = Vec::new();
        for scope in &m.scopes {
            counts.push((self.counter(hour), scope.key(), 0));
            counts.push((self.counter(Window::Year(m.year)), scope.key(), 0));
        }
        for scope in &m.minute_scopes {
            counts.push((self.counter(minute), scope.key(), MINUTE_WINDOW_TTL_SECS));
        }
        let thresholds = m
            .thresholds
            .iter()
            .map(|t| PlanThreshold {
                id: t.id.clone(),
                counter: self.counter(t.window),
                field: t.scope.key(),
                limit: t.limit,
                projection: t.projection.unwrap_or(0.0),
                apps: match &t.scope {
                    Scope::Tenant(name) => format!("a:{name}/"),
                    _ => "a:".into(),
                },
            })
            .collect();
        let templates = m
            .thresholds
            .iter()
            .map(|t| serde_json::to_string(&m.alert(t, 0, Vec::new())).unwrap_or_default())
            .collect();
        Plan {
            unit: match m.unit {
                Unit::Messages => "m",
                Unit::Recipients => "r",
            },
            add: [m.usage.messages, m.usage.recipients, m.usage.bytes],
            caps: m
                .caps
                .iter()
                .map(|c| (self.counter(c.window), c.scope.key(), c.limit))
                .collect(),
            counts,
            hours: self.hours.clone(),
            hour: hour.code().1.to_string(),
            peaks: m
                .scopes
                .iter()
                .map(|s| (self.peak(m.year), s.key(), self.counter(hour)))
                .collect(),
            thresholds,
            templates,
            alert_prefix: self.alert(""),
            alert_times: self.alert_times.clone(),
            outbox: self.outbox.clone(),
            at: m.at_ms.to_string(),
        }
    }
}

/// What `lua/enqueue.lua` reads from its fifth argument.
#[derive(Debug, Serialize)]
pub(crate) struct Plan {
    /// The contract's unit: `m` messages or `r` recipients.
    unit: &'static str,
    /// Messages, recipients, bytes.
    add: [u64; 3],
    /// (window key, scope field, limit), checked in order.
    caps: Vec<(String, String, u64)>,
    /// (window key, scope field, expiry in seconds or 0).
    counts: Vec<(String, String, u64)>,
    hours: String,
    hour: String,
    /// (peak key, scope field, the hour's window key).
    peaks: Vec<(String, String, String)>,
    thresholds: Vec<PlanThreshold>,
    /// Each threshold's alert as JSON, without its value and drivers.
    templates: Vec<String>,
    alert_prefix: String,
    alert_times: String,
    outbox: String,
    at: String,
}

#[derive(Debug, Serialize)]
struct PlanThreshold {
    id: String,
    counter: String,
    field: String,
    limit: u64,
    /// The year-end factor of a forecast; 0 for a plain threshold.
    projection: f64,
    /// The field prefix of the applications that count as drivers.
    apps: String,
}

/// An alert from its hash, as `lua/enqueue.lua` and `lua/alert.lua` write it.
pub(crate) fn alert_from_fields(fields: Vec<(String, Vec<u8>)>) -> Result<Alert> {
    let fields: BTreeMap<String, Vec<u8>> = fields.into_iter().collect();
    let text = |name: &str| fields.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
    let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
    let template = fields
        .get("alert")
        .ok_or_else(|| crate::corrupt("alert", "no alert field"))?;
    let mut alert: Alert = ferry_store::decode(template)?;
    alert.value = number("value").unwrap_or(0);
    alert.attempts = number("attempts").unwrap_or(0) as u32;
    alert.delivered_ms = number("delivered");
    let apps = text("drivers").unwrap_or_default();
    let apps = apps.lines().filter_map(|line| {
        let (scope, units) = line.split_once('\t')?;
        let Some(Scope::App { tenant, app }) = Scope::parse(scope) else {
            return None;
        };
        Some((tenant, app, units.parse().ok()?))
    });
    alert.drivers = ferry_core::metering::drivers(number("units").unwrap_or(0), apps);
    Ok(alert)
}

/// One hour's window hash as usage per scope, in scope-key order.
pub(crate) fn hour_usage(hour: u64, fields: Vec<(String, u64)>) -> Vec<HourUsage> {
    let mut by_scope: BTreeMap<String, Usage> = BTreeMap::new();
    for (field, value) in fields {
        let Some((scope, what)) = field.rsplit_once('|') else {
            continue;
        };
        let usage = by_scope.entry(scope.to_string()).or_default();
        match what {
            "m" => usage.messages = value,
            "r" => usage.recipients = value,
            "b" => usage.bytes = value,
            _ => {}
        }
    }
    by_scope
        .into_iter()
        .filter_map(|(key, usage)| {
            Some(HourUsage {
                hour,
                scope: Scope::parse(&key)?,
                usage,
            })
        })
        .collect()
}
