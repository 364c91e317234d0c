//! Noticing an application that stops behaving like itself: its baseline,
//! made from its own history for each hour of the week (mail has a weekly
//! rhythm), the signals an hour's figures raise against it, and the rule
//! that makes signals an incident with a severity and its evidence.
//!
//! One signal alone is never an incident, except a password-guessing
//! lockout followed by a success: an application's ordinary variation
//! (a month-end run, a term start, a retry storm after an outage of its
//! own) moves one figure — volume — and a breach moves several (volume to
//! new domains, spam verdicts, bounces). Pure code: the detector gathers
//! the figures and keeps the incidents.

use serde::{Deserialize, Serialize};

/// Hours in a week: the baseline's slots.
pub const WEEK_HOURS: u64 = 168;

/// One application's figures in one hour (hours since the epoch, UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HourFigures {
    pub hour: u64,
    /// Messages accepted.
    pub messages: u64,
    pub recipients: u64,
    /// Distinct recipient domains.
    pub domains: u64,
    /// Messages refused as spam or for a virus.
    pub spam: u64,
    /// Messages refused for their header From or envelope sender (an
    /// attacker probing what is allowed).
    pub sender_refusals: u64,
    /// Recipients that bounced, during delivery or later.
    pub bounced: u64,
    pub complained: u64,
}

/// The refusal reasons that count as spam verdicts, and as probing of
/// what the application may send as.
const SPAM_REASONS: [&str; 2] = ["spam", "virus"];
const SENDER_REASONS: [&str; 3] = [
    "header_from_not_authorised",
    "sender_not_authorised",
    "sender_foreign_domain",
];

/// One application's figures, hour by hour, from what the store keeps: its
/// hourly usage (messages, recipients), its outcome counts (refusals by
/// reason, bounces during delivery and later, complaints) and its
/// `accepted` events (the recipients' domains). Hours in order.
pub fn figures(
    tenant: &str,
    app: &str,
    usage: &[crate::usage::HourUsage],
    outcomes: &[crate::outcome::OutcomeCount],
    accepted: &[crate::event::EventRecord],
) -> Vec<HourFigures> {
    use crate::outcome::Outcome;
    use std::collections::{BTreeMap, BTreeSet};
    let mut hours: BTreeMap<u64, HourFigures> = BTreeMap::new();
    let mine = |t: &str, a: &str| t == tenant && a == app;
    for u in usage {
        if let crate::usage::Scope::App { tenant: t, app: a } = &u.scope
            && mine(t, a)
        {
            let f = hours.entry(u.hour).or_insert_with(|| empty(u.hour));
            f.messages += u.usage.messages;
            f.recipients += u.usage.recipients;
        }
    }
    for c in outcomes.iter().filter(|c| mine(&c.tenant, &c.app)) {
        let f = hours.entry(c.hour).or_insert_with(|| empty(c.hour));
        match &c.outcome {
            Outcome::Refused(r) if SPAM_REASONS.contains(&r.as_str()) => f.spam += c.count,
            Outcome::Refused(r) if SENDER_REASONS.contains(&r.as_str()) => f.sender_refusals += c.count,
            Outcome::Bounced | Outcome::BouncedLater => f.bounced += c.count,
            Outcome::Complained => f.complained += c.count,
            _ => {}
        }
    }
    let mut domains: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for e in accepted
        .iter()
        .filter(|e| mine(&e.tenant, &e.app) && e.kind == crate::event::EventKind::Accepted)
    {
        let set = domains.entry(e.at_ms / crate::usage::HOUR_MS).or_default();
        set.extend(
            e.recipients
                .iter()
                .filter_map(|r| r.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase()),
        );
    }
    for (hour, set) in domains {
        hours.entry(hour).or_insert_with(|| empty(hour)).domains = set.len() as u64;
    }
    hours.into_values().collect()
}

fn empty(hour: u64) -> HourFigures {
    HourFigures {
        hour,
        ..HourFigures::default()
    }
}

/// What a detector knows of the application's sign-ins in the hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignIns {
    /// Addresses it signed in from that it never used before, when its
    /// allowed networks are wide (more than a /24, or a /56 for IPv6).
    pub new_sources: Vec<std::net::IpAddr>,
    /// Locked out for password guessing, then signed in.
    pub lockout_then_success: bool,
}

impl SignIns {
    /// The facts of one application, from the store's list of all.
    pub fn of(facts: &[SignInFact], tenant: &str, app: &str) -> SignIns {
        let mut out = SignIns::default();
        for f in facts.iter().filter(|f| f.tenant == tenant && f.app == app) {
            match f.kind {
                SignInKind::NewSource(ip) if !out.new_sources.contains(&ip) => out.new_sources.push(ip),
                SignInKind::NewSource(_) => {}
                SignInKind::AfterLockout => out.lockout_then_success = true,
            }
        }
        out
    }
}

/// Whether the application's allowed networks are wide enough that a new
/// source address says something: one wider than a /24 (a /56 for IPv6).
/// Within a narrow allowlist an attacker's address is refused anyway.
pub fn watches_sources(allowed: &[ipnet::IpNet]) -> bool {
    allowed.iter().any(|n| match n {
        ipnet::IpNet::V4(n) => n.prefix_len() < 24,
        ipnet::IpNet::V6(n) => n.prefix_len() < 56,
    })
}

/// A sign-in worth the watch's attention, kept by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInFact {
    pub at_ms: u64,
    pub tenant: String,
    pub app: String,
    pub kind: SignInKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInKind {
    /// From an address it never signed in from, having signed in from others.
    NewSource(std::net::IpAddr),
    /// Signed in while a password-guessing lockout on it was recent.
    AfterLockout,
}

/// How long a store keeps sign-in facts: past any hour the watch judges.
pub const SIGN_IN_FACTS_MS: u64 = 2 * 24 * crate::usage::HOUR_MS;

/// The thresholds, each with a default chosen so that ordinary variation
/// does not reach it (see the README for why each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Days of history before the baseline is trusted; until then only the
    /// absolute guards apply.
    pub bootstrap_days: u64,
    /// Weeks of history the baseline reads.
    pub baseline_weeks: u64,
    /// Messages in the hour above this many times the slot's usual peak…
    pub volume_factor: f64,
    /// …and above this many.
    pub volume_floor: u64,
    /// Distinct recipient domains above this many times the slot's usual…
    pub domains_factor: f64,
    /// …and above this many.
    pub domains_floor: u64,
    /// Spam and virus refusals: more than this many…
    pub spam_floor: u64,
    /// …and more than this many times the slot's usual.
    pub spam_factor: f64,
    pub sender_floor: u64,
    pub sender_factor: f64,
    /// Bounces: at least this many recipients…
    pub bounce_floor: u64,
    /// …at a rate (per recipient) above this many times the usual…
    pub bounce_factor: f64,
    /// …and above this.
    pub bounce_rate: f64,
    /// During the bootstrap: messages, spam refusals and domains in an hour
    /// beyond which a new application is judged on absolute figures alone.
    pub guard_messages: u64,
    pub guard_spam: u64,
    pub guard_domains: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            bootstrap_days: 14,
            baseline_weeks: 4,
            volume_factor: 5.0,
            volume_floor: 200,
            domains_factor: 4.0,
            domains_floor: 20,
            spam_floor: 5,
            spam_factor: 5.0,
            sender_floor: 5,
            sender_factor: 5.0,
            bounce_floor: 20,
            bounce_factor: 3.0,
            bounce_rate: 0.10,
            guard_messages: 5_000,
            guard_spam: 20,
            guard_domains: 200,
        }
    }
}

/// One kind of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Volume,
    Domains,
    Spam,
    SenderRefusals,
    Bounces,
    NewSource,
    LockoutThenSuccess,
    /// Opened by a person (a leak reported from outside).
    Manual,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Volume => "volume",
            Signal::Domains => "domains",
            Signal::Spam => "spam",
            Signal::SenderRefusals => "sender_refusals",
            Signal::Bounces => "bounces",
            Signal::NewSource => "new_source",
            Signal::LockoutThenSuccess => "lockout_then_success",
            Signal::Manual => "manual",
        }
    }
}

/// A signal with its figures: what was seen, what is usual, where it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub signal: Signal,
    /// In the hour (the message count projected to the whole hour when it is young).
    pub observed: f64,
    /// The baseline's figure for this hour of the week (0 in the bootstrap).
    pub usual: f64,
    pub threshold: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Medium,
    High,
}

/// What an hour's figures say, when they say something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub hour: u64,
    pub severity: Severity,
    pub evidence: Vec<Evidence>,
}

/// What happens to an application's mail once an incident is opened on
/// it: the tenant's choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Its owners and the admins are told; nothing else.
    Alert,
    /// Told, and its mail is still taken with `250` but held, not
    /// delivered, until a person releases or discards it.
    #[default]
    Hold,
    /// Held, and new sign-ins are refused (`535 5.7.8`) until an admin
    /// enables it again.
    Suspend,
}

/// How a person closed an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Its hours count in the baseline from now on.
    FalseAlarm,
    Compromised,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub at_ms: u64,
    /// Who closed it (the API token's name, or `cli`).
    pub by: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub note: String,
}

/// An incident on one application: opened once (a store keeps at most one
/// open per application, whichever node saw it first), closed by a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub tenant: String,
    pub app: String,
    pub opened_ms: u64,
    /// The hour whose figures raised it.
    pub hour: u64,
    pub severity: Severity,
    /// The tenant's policy when it was opened.
    pub policy: Policy,
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub resolution: Option<Resolution>,
}

impl Incident {
    pub fn of(finding: Finding, tenant: &str, app: &str, policy: Policy, now_ms: u64) -> Incident {
        Incident {
            id: crate::QueueId::generate().to_string(),
            tenant: tenant.to_string(),
            app: app.to_string(),
            opened_ms: now_ms,
            hour: finding.hour,
            severity: finding.severity,
            policy,
            evidence: finding.evidence,
            resolution: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.resolution.is_none()
    }

    /// An incident a person opens (`by`, and why), to hold an
    /// application's mail on a leak learnt of elsewhere.
    pub fn manual(tenant: &str, app: &str, policy: Policy, by: &str, note: &str, now_ms: u64) -> Incident {
        let finding = Finding {
            hour: now_ms / crate::usage::HOUR_MS,
            severity: Severity::High,
            evidence: vec![Evidence {
                signal: Signal::Manual,
                observed: 0.0,
                usual: 0.0,
                threshold: 0.0,
                detail: format!("opened by {by}: {note}"),
            }],
        };
        Incident::of(finding, tenant, app, policy, now_ms)
    }

    /// The alert its owners and the admins are told by: raised with the
    /// incident, in the same atomic step, so it goes out exactly once
    /// whichever node opened it.
    pub fn alert(&self) -> crate::metering::Alert {
        let signals: Vec<&str> = self.evidence.iter().map(|e| e.signal.as_str()).collect();
        let severity = match self.severity {
            Severity::Medium => "medium",
            Severity::High => "high",
        };
        let messages = self
            .evidence
            .iter()
            .find(|e| e.signal == Signal::Volume)
            .map_or(0, |e| e.observed as u64);
        let threshold = format!("{severity} incident ({})", signals.join(", "));
        let mut alert = self.alert_of(
            crate::metering::AlertKind::Incident,
            threshold,
            messages,
            self.opened_ms,
        );
        alert.id = format!("incident-{}", self.id);
        alert
    }

    /// The alert that tells its owners that `messages` held under it were
    /// discarded past the retention on the day of `at_ms`: one a day.
    pub fn discarded_alert(&self, messages: u64, at_ms: u64) -> crate::metering::Alert {
        let threshold = "held mail past its retention discarded".to_string();
        let mut alert = self.alert_of(crate::metering::AlertKind::HeldDiscarded, threshold, messages, at_ms);
        alert.id = format!("held-discarded-{}-{}", self.id, at_ms / (24 * crate::usage::HOUR_MS));
        alert
    }

    fn alert_of(
        &self,
        kind: crate::metering::AlertKind,
        threshold: String,
        value: u64,
        at_ms: u64,
    ) -> crate::metering::Alert {
        crate::metering::Alert {
            id: String::new(),
            kind,
            scope: crate::usage::Scope::App {
                tenant: self.tenant.clone(),
                app: self.app.clone(),
            },
            threshold,
            unit: crate::contract::Unit::Messages,
            limit: 0,
            value,
            period_start_ms: self.hour * crate::usage::HOUR_MS,
            period_end_ms: (self.hour + 1) * crate::usage::HOUR_MS,
            at_ms,
            drivers: Vec::new(),
            attempts: 0,
            delivered_ms: None,
            incident: Some(Box::new(self.clone())),
        }
    }
}

/// The usual figures of one hour of the week: the 95th percentile of that
/// hour and its two neighbours over the baseline's weeks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Usual {
    messages: f64,
    domains: f64,
    spam: f64,
    sender_refusals: f64,
}

/// An application's baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    slots: Vec<Usual>,
    /// Recipients bounced per recipient sent, over the whole window.
    bounce_rate: f64,
    /// Hours since its first figures (0: none).
    history_hours: u64,
}

impl Baseline {
    /// From `history` (any order), the hours before `now_hour` within
    /// `weeks` weeks; hours without figures count as quiet ones.
    pub fn of(history: &[HourFigures], now_hour: u64, weeks: u64) -> Baseline {
        let from = now_hour.saturating_sub(weeks * WEEK_HOURS);
        let window: Vec<&HourFigures> = history.iter().filter(|h| h.hour >= from && h.hour < now_hour).collect();
        let first = window.iter().map(|h| h.hour).min();
        // Every hour of the window, quiet ones (no figures) as zeros.
        let mut dense = vec![HourFigures::default(); (now_hour - from) as usize];
        for h in &window {
            dense[(h.hour - from) as usize] = **h;
        }
        let slots = (0..WEEK_HOURS).map(|slot| usual(&dense, slot, from)).collect();
        let (sent, bounced) = window
            .iter()
            .fold((0u64, 0u64), |(s, b), h| (s + h.recipients, b + h.bounced));
        Baseline {
            slots,
            bounce_rate: if sent == 0 { 0.0 } else { bounced as f64 / sent as f64 },
            history_hours: first.map_or(0, |f| now_hour - f),
        }
    }

    fn slot(&self, hour: u64) -> Usual {
        self.slots
            .get((hour % WEEK_HOURS) as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// `dense[i]` holds hour `from + i`.
fn usual(dense: &[HourFigures], slot: u64, from: u64) -> Usual {
    let near = |i: usize| {
        let d = ((from + i as u64) % WEEK_HOURS + WEEK_HOURS - slot) % WEEK_HOURS;
        d <= 1 || d == WEEK_HOURS - 1
    };
    let hours: Vec<&HourFigures> = dense
        .iter()
        .enumerate()
        .filter(|(i, _)| near(*i))
        .map(|(_, h)| h)
        .collect();
    let figures = |f: fn(&HourFigures) -> u64| -> f64 {
        let mut values: Vec<u64> = hours.iter().map(|h| f(h)).collect();
        p95(&mut values)
    };
    Usual {
        messages: figures(|h| h.messages),
        domains: figures(|h| h.domains),
        spam: figures(|h| h.spam),
        sender_refusals: figures(|h| h.sender_refusals),
    }
}

fn p95(values: &mut [u64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let rank = ((values.len() as f64) * 0.95).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1] as f64
}

/// What `now`'s figures say against the baseline: `minutes` of the hour
/// have passed. The message count is a rate, projected to the hour (from
/// ten minutes at least, so that a burst is seen within minutes and a lone
/// message in the first minute is not a burst); domains, refusals and
/// bounces are counted as they stand, since one spam verdict early in an
/// hour says nothing about its rate.
pub fn assess(
    now: &HourFigures,
    minutes: u64,
    baseline: &Baseline,
    sign_ins: &SignIns,
    t: &Thresholds,
) -> Option<Finding> {
    let scale = 60.0 / minutes.clamp(10, 60) as f64;
    let projected = |n: u64| n as f64 * scale;
    let bootstrap = baseline.history_hours < t.bootstrap_days * 24;
    let mut evidence = if bootstrap {
        guards(now, projected, t)
    } else {
        against_baseline(now, projected, baseline, t)
    };
    for ip in &sign_ins.new_sources {
        evidence.push(Evidence {
            signal: Signal::NewSource,
            observed: 1.0,
            usual: 0.0,
            threshold: 1.0,
            detail: format!("signed in from {ip}, an address it never used"),
        });
    }
    if sign_ins.lockout_then_success {
        evidence.push(Evidence {
            signal: Signal::LockoutThenSuccess,
            observed: 1.0,
            usual: 0.0,
            threshold: 1.0,
            detail: "locked out for password guessing, then signed in".into(),
        });
    }
    let severity = severity(&evidence)?;
    Some(Finding {
        hour: now.hour,
        severity,
        evidence,
    })
}

/// Two signals make an incident; three, or volume with domains or spam,
/// or a guessed password with anything, a high one. A guessed password
/// alone is one too.
fn severity(evidence: &[Evidence]) -> Option<Severity> {
    let has = |s: Signal| evidence.iter().any(|e| e.signal == s);
    let n = evidence.len();
    let guessed = has(Signal::LockoutThenSuccess);
    if n >= 3 || (guessed && n >= 2) || (has(Signal::Volume) && (has(Signal::Domains) || has(Signal::Spam))) {
        Some(Severity::High)
    } else if n >= 2 || guessed {
        Some(Severity::Medium)
    } else {
        None
    }
}

fn against_baseline(now: &HourFigures, projected: impl Fn(u64) -> f64, b: &Baseline, t: &Thresholds) -> Vec<Evidence> {
    let usual = b.slot(now.hour);
    let mut evidence = Vec::new();
    let mut check = |signal, observed: f64, usual: f64, threshold: f64, what: &str| {
        if observed > threshold {
            evidence.push(Evidence {
                signal,
                observed,
                usual,
                threshold,
                detail: format!("{observed:.0} {what} in the hour, usually {usual:.0} at this hour of the week"),
            });
        }
    };
    let volume = (t.volume_factor * usual.messages).max(t.volume_floor as f64);
    check(
        Signal::Volume,
        projected(now.messages),
        usual.messages,
        volume,
        "messages",
    );
    let domains = (t.domains_factor * usual.domains).max(t.domains_floor as f64);
    check(
        Signal::Domains,
        now.domains as f64,
        usual.domains,
        domains,
        "recipient domains",
    );
    let spam = (t.spam_factor * usual.spam).max(t.spam_floor as f64);
    check(
        Signal::Spam,
        now.spam as f64,
        usual.spam,
        spam,
        "spam and virus refusals",
    );
    let sender = (t.sender_factor * usual.sender_refusals).max(t.sender_floor as f64);
    check(
        Signal::SenderRefusals,
        now.sender_refusals as f64,
        usual.sender_refusals,
        sender,
        "sender refusals",
    );
    if now.bounced >= t.bounce_floor && now.recipients > 0 {
        let rate = now.bounced as f64 / now.recipients as f64;
        let limit = (t.bounce_factor * b.bounce_rate).max(t.bounce_rate);
        if rate > limit {
            evidence.push(Evidence {
                signal: Signal::Bounces,
                observed: rate,
                usual: b.bounce_rate,
                threshold: limit,
                detail: format!(
                    "{:.1} % of its recipients bounced, usually {:.1} %",
                    rate * 100.0,
                    b.bounce_rate * 100.0
                ),
            });
        }
    }
    evidence
}

/// A new application's absolute guards.
fn guards(now: &HourFigures, projected: impl Fn(u64) -> f64, t: &Thresholds) -> Vec<Evidence> {
    let rows = [
        (Signal::Volume, projected(now.messages), t.guard_messages, "messages"),
        (Signal::Spam, now.spam as f64, t.guard_spam, "spam and virus refusals"),
        (
            Signal::Domains,
            now.domains as f64,
            t.guard_domains,
            "recipient domains",
        ),
    ];
    rows.into_iter()
        .filter(|(_, observed, limit, _)| *observed > *limit as f64)
        .map(|(signal, observed, limit, what)| Evidence {
            signal,
            observed,
            usual: 0.0,
            threshold: limit as f64,
            detail: format!("{observed:.0} {what} in the hour, over the new application's limit of {limit}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
