//! One metering model on both backends: the embedded store applies it in
//! Rust, the Redis store in Lua (`lua/enqueue.lua`, atomic on the server).
//! This differential property test sends the same random sequences of
//! messages through both and asserts they agree on everything a contract
//! reads: the cap that refused each message (or none), usage per scope per
//! hour and per year, each year's peak hour, and the alerts raised.
//!
//! The sequences cross hour and contract-year boundaries, use both units,
//! two tenants of two applications each, hard caps per minute and hour,
//! yearly allocations, yearly and forecast thresholds and the hourly peak.

use std::collections::BTreeSet;

use ferry_core::config::{Alerts, RedisStore as RedisConfig};
use ferry_core::contract::{Contract, Unit};
use ferry_core::metering::{Window, plan};
use ferry_core::usage::{HOUR_MS, Scope, Usage};
use ferry_store::{EmbeddedStore, Store, StoreError, conformance};
use ferry_store_redis::RedisStore;
use ferry_testkit::servers::Redis;
use proptest::prelude::*;

/// 2026-12-31T22:00:00Z: the first messages fall in one contract year, the
/// later ones in the next.
const START_MS: u64 = 1_798_754_400_000;

#[derive(Debug, Clone)]
struct Send {
    tenant: usize,
    app: usize,
    recipients: u64,
    /// Time passing before this message.
    after_ms: u64,
}

#[derive(Debug, Clone)]
struct Setup {
    unit: Unit,
    hourly_peak: u64,
    yearly_total: u64,
    /// Per tenant: yearly allocation, hourly cap, minute cap.
    tenants: [(u64, Option<u64>, Option<u64>); 2],
    /// Per application (t0a0, t0a1, t1a0, t1a1): its hourly cap.
    app_caps: [Option<u64>; 4],
}

fn setup() -> impl Strategy<Value = Setup> {
    let tenant = (5u64..40, proptest::option::of(3u64..15), proptest::option::of(2u64..6));
    (
        prop_oneof![Just(Unit::Messages), Just(Unit::Recipients)],
        3u64..20,
        20u64..120,
        [tenant.clone(), tenant],
        proptest::array::uniform4(proptest::option::of(2u64..10)),
    )
        .prop_map(|(unit, hourly_peak, yearly_total, tenants, app_caps)| Setup {
            unit,
            hourly_peak,
            yearly_total,
            tenants,
            app_caps,
        })
}

fn sends() -> impl Strategy<Value = Vec<Send>> {
    let after = prop_oneof![
        4 => Just(0u64),
        3 => 1u64..5_000,
        2 => Just(61_000u64),
        2 => Just(HOUR_MS),
        1 => Just(3 * HOUR_MS),
    ];
    proptest::collection::vec(
        (0usize..2, 0usize..2, 1u64..4, after).prop_map(|(tenant, app, recipients, after_ms)| Send {
            tenant,
            app,
            recipients,
            after_ms,
        }),
        1..40,
    )
}

/// A scope's peak hour in a contract year: (scope, year start, (hour, units)).
type Peak = (String, u64, Option<(u64, u64)>);

/// What one backend did with a sequence, in a form two backends can share.
#[derive(Debug, PartialEq)]
struct Observed {
    verdicts: Vec<String>,
    hours: Vec<(u64, String, Usage)>,
    years: Vec<(String, u64, Usage)>,
    peaks: Vec<Peak>,
    alerts: BTreeSet<(String, u64)>,
}

async fn run(store: &dyn Store, setup: &Setup, sends: &[Send]) -> Observed {
    let terms = Contract {
        unit: setup.unit,
        hourly_peak: Some(setup.hourly_peak),
        yearly_total: Some(setup.yearly_total),
        ..Contract::default()
    }
    .terms()
    .expect("terms");
    let alerts = Alerts {
        yearly_percent: vec![50, 100],
        forecast_percent: vec![100],
        forecast_min_days: 0,
        hourly_over_peak: true,
        ..Alerts::default()
    };
    let tenants: Vec<_> = (0..2)
        .map(|i| {
            let (yearly, per_hour, per_minute) = setup.tenants[i];
            let mut t = conformance::tenant(&format!("t{i}"));
            t.allocation.yearly = Some(yearly);
            t.caps.per_hour = per_hour;
            t.caps.per_minute = per_minute;
            t
        })
        .collect();
    let apps: Vec<_> = (0..4)
        .map(|i| {
            let mut a = conformance::app(&format!("t{}a{}", i / 2, i % 2), &format!("t{}", i / 2));
            a.caps.per_hour = setup.app_caps[i];
            a
        })
        .collect();
    let mut now = START_MS;
    let mut verdicts = Vec::new();
    for send in sends {
        now += send.after_ms;
        let (tenant, app) = (&tenants[send.tenant], &apps[send.tenant * 2 + send.app]);
        let usage = Usage {
            messages: 1,
            recipients: send.recipients,
            bytes: 100,
        };
        let metering = plan(&terms, &alerts, tenant, app, usage, now);
        let message = conformance::message(b"m", now);
        verdicts.push(match store.enqueue(message, Some(metering)).await {
            Ok(()) => "spooled".to_string(),
            Err(StoreError::CapReached { name, temporary }) => format!("{name} temporary={temporary}"),
            Err(e) => panic!("{e}"),
        });
    }
    let scopes: Vec<Scope> = std::iter::once(Scope::Org)
        .chain(tenants.iter().map(|t| Scope::Tenant(t.name.clone())))
        .chain(apps.iter().map(|a| Scope::App {
            tenant: a.tenant.clone(),
            app: a.username.clone(),
        }))
        .collect();
    let mut hours: Vec<(u64, String, Usage)> = store
        .hours(0, u64::MAX / HOUR_MS)
        .await
        .expect("hours")
        .into_iter()
        .map(|h| (h.hour, h.scope.key(), h.usage))
        .collect();
    hours.sort_by_key(|(hour, scope, _)| (*hour, scope.clone()));
    let (mut years, mut peaks) = (Vec::new(), Vec::new());
    for year in [terms.year_of(START_MS), terms.year_of(now)] {
        for scope in &scopes {
            let usage = store.usage(scope, Window::Year(year)).await.expect("usage");
            years.push((scope.key(), year.start_ms, usage));
            peaks.push((scope.key(), year.start_ms, store.peak(scope, year).await.expect("peak")));
        }
    }
    let alerts = store
        .alerts(0, u64::MAX)
        .await
        .expect("alerts")
        .into_iter()
        .map(|a| (a.id, a.value))
        .collect();
    Observed {
        verdicts,
        hours,
        years,
        peaks,
        alerts,
    }
}

#[test]
fn both_backends_meter_alike() {
    let redis = Redis::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let cases = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&(setup(), sends()), |(setup, sends)| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (embedded, redis) = runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let embedded = EmbeddedStore::open(&dir.path().join("s.redb")).expect("open");
            let redis_store = RedisStore::connect(&RedisConfig {
                url: redis.url(),
                // Each case (and each shrinking step) on keys of its own.
                key_prefix: format!("model-{case}"),
                ..RedisConfig::default()
            })
            .await
            .expect("connect");
            (
                run(&embedded, &setup, &sends).await,
                run(&redis_store, &setup, &sends).await,
            )
        });
        prop_assert_eq!(embedded, redis);
        Ok(())
    });
    if let Err(e) = result {
        panic!("the backends disagree: {e}");
    }
}
