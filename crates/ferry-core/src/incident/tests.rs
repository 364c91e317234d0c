//! Four weeks of an application's ordinary life, then one more week with
//! a month-end run, a term start and a retry storm of its own: no
//! incident. Then the breaches the detector is for.

use super::*;

const DAY: u64 = 24;
/// A Monday 00:00 UTC, in hours since the epoch (day 20,556: 2026-04-13).
const START: u64 = 493_344;

fn weekday(hour: u64) -> u64 {
    // 1970-01-01 was a Thursday: 0 is Monday.
    (hour / DAY + 3) % 7
}

/// A little deterministic jitter, so hours are not all alike.
fn jitter(hour: u64, spread: u64) -> u64 {
    (hour.wrapping_mul(2_654_435_761) >> 7) % (spread + 1)
}

/// An ordinary hour: office hours on weekdays, quiet nights, weekends.
fn ordinary(hour: u64) -> HourFigures {
    let (h, weekend) = (hour % DAY, weekday(hour) >= 5);
    let messages = match (weekend, (8..18).contains(&h)) {
        (false, true) => 35 + jitter(hour, 10),
        (false, false) => 2 + jitter(hour, 2),
        (true, true) => 4 + jitter(hour, 3),
        (true, false) => jitter(hour, 1),
    };
    HourFigures {
        hour,
        messages,
        recipients: messages + messages / 8,
        domains: (messages / 5).clamp(1, 9),
        spam: u64::from(jitter(hour, 9) == 0 && messages > 10),
        sender_refusals: 0,
        bounced: messages / 60,
        complained: 0,
    }
}

/// The last working day's run: four times the volume, the usual domains.
fn month_end(hour: u64) -> HourFigures {
    let mut f = ordinary(hour);
    f.messages *= 4;
    f.recipients = f.messages + 5;
    f
}

/// Its own outage over, the application sends what it kept: ten times
/// the volume in one hour, to the usual recipients.
fn retry_storm(hour: u64) -> HourFigures {
    let mut f = ordinary(hour);
    f.messages = 400;
    f.recipients = 430;
    f.bounced = 4;
    f
}

/// The first week of term: more mail, to more (students') domains.
fn term_start(hour: u64) -> HourFigures {
    let mut f = ordinary(hour);
    f.messages *= 3;
    f.recipients = f.messages;
    f.domains = f.domains * 2 + 2;
    f
}

fn history(weeks: u64) -> Vec<HourFigures> {
    (START..START + weeks * 7 * DAY)
        .map(|h| match h - START {
            // Day 25 (a Friday) is the month's end; day 10 a retry storm.
            d if (25 * DAY + 9..25 * DAY + 13).contains(&d) => month_end(h),
            d if d == 10 * DAY + 14 => retry_storm(h),
            _ => ordinary(h),
        })
        .collect()
}

/// The figures `minutes` into the hour, when it goes on evenly.
fn part(f: &HourFigures, minutes: u64) -> HourFigures {
    let share = |n: u64| n * minutes / 60;
    HourFigures {
        hour: f.hour,
        messages: share(f.messages),
        recipients: share(f.recipients),
        domains: f.domains.min(share(f.recipients).max(1)),
        spam: share(f.spam),
        sender_refusals: share(f.sender_refusals),
        bounced: share(f.bounced),
        complained: share(f.complained),
    }
}

fn assess_at(all: &[HourFigures], now: &HourFigures, minutes: u64, sign_ins: &SignIns) -> Option<Finding> {
    let t = Thresholds::default();
    let baseline = Baseline::of(all, now.hour, t.baseline_weeks);
    assess(now, minutes, &baseline, sign_ins, &t)
}

#[test]
fn an_ordinary_week_with_a_month_end_a_term_start_and_a_retry_storm_raises_nothing() {
    let mut all = history(4);
    let week = START + 28 * DAY;
    for h in week..week + 7 * DAY {
        let figures = match h - week {
            // Monday: term starts; Tuesday 10:00 a retry storm; Friday the month's end.
            d if (9..12).contains(&d) => term_start(h),
            d if d == DAY + 10 => retry_storm(h),
            d if (4 * DAY + 9..4 * DAY + 13).contains(&d) => month_end(h),
            _ => ordinary(h),
        };
        for minutes in [5, 30, 60] {
            let so_far = part(&figures, minutes);
            let finding = assess_at(&all, &so_far, minutes, &SignIns::default());
            assert_eq!(finding, None, "hour {} (+{minutes} min): {figures:?}", h - week);
        }
        all.push(figures);
    }
}

#[test]
fn a_loud_breach_is_an_incident_within_minutes_with_its_evidence() {
    let all = history(4);
    let now = START + 28 * DAY + 10;
    // Five minutes of a 20x burst to new domains, spam verdicts rising.
    let burst = HourFigures {
        hour: now,
        messages: 60,
        recipients: 300,
        domains: 120,
        spam: 8,
        ..HourFigures::default()
    };
    let Some(finding) = assess_at(&all, &burst, 5, &SignIns::default()) else {
        panic!("no incident for a 20x burst");
    };
    assert_eq!(finding.severity, Severity::High);
    let signals: Vec<Signal> = finding.evidence.iter().map(|e| e.signal).collect();
    assert_eq!(signals, [Signal::Volume, Signal::Domains, Signal::Spam]);
    let volume = &finding.evidence[0];
    assert_eq!(volume.observed, 360.0, "60 in five minutes is 360 an hour");
    assert!(volume.usual >= 35.0 && volume.threshold >= 200.0, "{volume:?}");
    assert!(volume.detail.contains("messages in the hour"), "{}", volume.detail);
}

#[test]
fn a_quiet_breach_to_new_domains_with_spam_verdicts_is_caught_too() {
    let all = history(4);
    let now = START + 28 * DAY + 14;
    // Three times the volume: under the volume threshold on its own.
    let quiet = HourFigures {
        hour: now,
        messages: 120,
        recipients: 125,
        domains: 45,
        spam: 7,
        ..HourFigures::default()
    };
    let finding = assess_at(&all, &quiet, 60, &SignIns::default());
    let Some(finding) = finding else {
        panic!("a quiet breach was missed")
    };
    assert_eq!(finding.severity, Severity::Medium);
    let signals: Vec<Signal> = finding.evidence.iter().map(|e| e.signal).collect();
    assert_eq!(signals, [Signal::Domains, Signal::Spam]);
}

#[test]
fn list_washing_bounces_and_probing_senders_are_signals() {
    let all = history(4);
    let now = START + 28 * DAY + 11;
    let washing = HourFigures {
        hour: now,
        messages: 40,
        recipients: 200,
        domains: 8,
        bounced: 60,
        sender_refusals: 12,
        ..HourFigures::default()
    };
    let Some(finding) = assess_at(&all, &washing, 60, &SignIns::default()) else {
        panic!("missed");
    };
    let signals: Vec<Signal> = finding.evidence.iter().map(|e| e.signal).collect();
    assert_eq!(signals, [Signal::SenderRefusals, Signal::Bounces]);
}

#[test]
fn a_guessed_password_is_an_incident_alone_and_a_new_source_is_not() {
    let all = history(4);
    let now = ordinary(START + 28 * DAY + 10);
    let guessed = SignIns {
        new_sources: Vec::new(),
        lockout_then_success: true,
    };
    let finding = assess_at(&all, &now, 60, &guessed).map(|f| f.severity);
    assert_eq!(finding, Some(Severity::Medium));
    let new_source = SignIns {
        new_sources: vec!["203.0.113.9".parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())],
        lockout_then_success: false,
    };
    assert_eq!(assess_at(&all, &now, 60, &new_source), None, "one signal");
    let both = SignIns {
        lockout_then_success: true,
        ..new_source
    };
    assert_eq!(
        assess_at(&all, &now, 60, &both).map(|f| f.severity),
        Some(Severity::High)
    );
}

#[test]
fn a_new_application_is_judged_by_absolute_guards_only() {
    let all: Vec<HourFigures> = (START..START + 3 * DAY).map(ordinary).collect();
    let now = START + 3 * DAY + 10;
    // Ten times its three days' usual, but within the guards: nothing.
    let busy = HourFigures {
        hour: now,
        messages: 400,
        recipients: 420,
        domains: 30,
        spam: 3,
        ..HourFigures::default()
    };
    assert_eq!(assess_at(&all, &busy, 60, &SignIns::default()), None);
    let breach = HourFigures {
        domains: 300,
        spam: 30,
        ..busy
    };
    let Some(finding) = assess_at(&all, &breach, 60, &SignIns::default()) else {
        panic!("missed");
    };
    assert!(
        finding
            .evidence
            .iter()
            .all(|e| e.usual == 0.0 && e.detail.contains("new application"))
    );
}

#[test]
fn the_baseline_takes_each_hour_of_the_week_and_its_neighbours() {
    let all = history(4);
    let now = START + 28 * DAY;
    let b = Baseline::of(&all, now, 4);
    let monday_ten = b.slot(START + 10);
    let sunday_three = b.slot(START + 6 * DAY + 3);
    assert!(
        monday_ten.messages >= 35.0 && monday_ten.messages <= 45.0,
        "{monday_ten:?}"
    );
    assert!(sunday_three.messages <= 2.0, "{sunday_three:?}");
    assert!(b.bounce_rate > 0.0 && b.bounce_rate < 0.05);
    assert_eq!(b.history_hours, 28 * DAY);
    assert_eq!(Baseline::of(&[], now, 4).history_hours, 0);
}

#[test]
fn figures_come_from_usage_outcomes_and_accepted_events() {
    use crate::event::{EventKind, EventRecord};
    use crate::outcome::{Outcome, OutcomeCount};
    use crate::usage::{HOUR_MS, HourUsage, Scope, Usage};
    let app = |a: &str| Scope::App {
        tenant: "hr".into(),
        app: a.into(),
    };
    let usage = vec![
        HourUsage {
            hour: 7,
            scope: app("payroll"),
            usage: Usage {
                messages: 3,
                recipients: 4,
                bytes: 9,
            },
        },
        HourUsage {
            hour: 7,
            scope: app("other"),
            usage: Usage {
                messages: 50,
                recipients: 50,
                bytes: 9,
            },
        },
        HourUsage {
            hour: 7,
            scope: Scope::Tenant("hr".into()),
            usage: Usage {
                messages: 53,
                recipients: 54,
                bytes: 18,
            },
        },
    ];
    let count = |hour: u64, outcome: Outcome, count: u64| OutcomeCount {
        hour,
        tenant: "hr".into(),
        app: "payroll".into(),
        outcome,
        count,
    };
    let outcomes = vec![
        count(7, Outcome::Refused("spam".into()), 2),
        count(7, Outcome::Refused("virus".into()), 1),
        count(7, Outcome::Refused("header_from_not_authorised".into()), 4),
        count(7, Outcome::Refused("auth_failed".into()), 9),
        count(7, Outcome::Bounced, 1),
        count(8, Outcome::BouncedLater, 2),
        count(8, Outcome::Complained, 1),
    ];
    let accepted = |at_ms: u64, rcpts: &[&str]| EventRecord {
        at_ms,
        tenant: "hr".into(),
        app: "payroll".into(),
        queue_id: "Q".into(),
        kind: EventKind::Accepted,
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        detail: Default::default(),
    };
    let events = vec![
        accepted(7 * HOUR_MS, &["a@x.test", "b@X.test"]),
        accepted(7 * HOUR_MS + 5, &["c@y.test", "d@z.test"]),
    ];
    let got = figures("hr", "payroll", &usage, &outcomes, &events);
    assert_eq!(
        got,
        [
            HourFigures {
                hour: 7,
                messages: 3,
                recipients: 4,
                domains: 3,
                spam: 3,
                sender_refusals: 4,
                bounced: 1,
                complained: 0,
            },
            HourFigures {
                hour: 8,
                bounced: 2,
                complained: 1,
                ..HourFigures::default()
            },
        ]
    );
}
