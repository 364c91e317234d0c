//! The conformance suite: the behaviour every store backend must show,
//! written once and run against each. A backend's test file holds one line,
//! [`conformance_suite!`](crate::conformance_suite), which expands to one
//! test per scenario from the list below: a new scenario runs on every
//! backend or on none.

/// One `#[tokio::test]` per conformance scenario, each on a fresh backend
/// from `$open`: an async fn returning `(guard, store)`, the guard keeping
/// the backend's files or server alive until the store is dropped.
#[macro_export]
macro_rules! conformance_suite {
    ($open:path) => {
        $crate::conformance_suite!(@each $open, by_ref:
            directory_round_trip,
            queue_lease_complete_and_expiry,
            leases_renew_and_hand_back,
            records_are_fenced_by_the_lease,
            a_cap_refuses_without_counting,
            outcomes_are_counted_once,
            deletes_and_the_audit_log,
            sign_in_failures_lock_out_by_rule,
            the_backlog_counts_what_is_due,
            samples_are_kept_read_and_purged,
            events_are_logged_with_their_changes,
            suppression_lists_per_tenant,
            return_paths_and_their_keys,
            webhook_receivers_are_held_by_one_node,
            incidents_open_once_per_application,
            figures_are_kept_per_application_and_hour,
            sign_in_facts_are_kept_for_the_watch,
            mail_is_held_under_an_incident_until_released_or_discarded
        );
        $crate::conformance_suite!(@each $open, shared:
            concurrent_enqueues_all_land,
            racing_sessions_raise_each_alert_once
        );
    };
    (@each $open:path, by_ref: $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, store) = $open().await;
            $crate::conformance::$name(&store).await;
        }
    )*};
    (@each $open:path, shared: $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, store) = $open().await;
            $crate::conformance::$name(::std::sync::Arc::new(store)).await;
        }
    )*};
}

use ferry_core::{AppLimits, Application, QueueId, QueuedMessage, RecipientOutcome, Tenant};

use crate::{Changes, Next, Store, StoreError};

/// A record that changes nothing beyond the message.
fn none() -> Changes {
    Changes::default()
}

pub fn tenant(name: &str) -> Tenant {
    Tenant {
        name: name.into(),
        domains: vec!["example.test".into()],
        subdomains_only: false,
        contact: None,
        created_ms: 1,
        route: Default::default(),
        allocation: Default::default(),
        caps: Default::default(),
        sample_percent: 0,
        bounces: Default::default(),
        events_webhook: None,
        incident_policy: Default::default(),
    }
}

pub fn app(username: &str, tenant: &str) -> Application {
    Application {
        username: username.into(),
        tenant: tenant.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        envelope_from: vec![format!("{username}@example.test")],
        header_from: vec![],
        allowed_networks: vec!["127.0.0.0/8".parse().expect("literal network")],
        limits: AppLimits::default(),
        expires: None,
        enabled: true,
        created_ms: 1,
        credential_version: 0,
        caps: Default::default(),
        bulk_rules: true,
        previous_password: None,
        directory_dn: None,
        events_webhook: None,
    }
}

pub fn message(content: &[u8], received_ms: u64) -> QueuedMessage {
    QueuedMessage {
        id: QueueId::generate(),
        tenant: "t".into(),
        app: "a".into(),
        mail_from: "a@example.test".into(),
        recipients: vec!["r@example.net".into()],
        received_ms,
        attempts: 0,
        eight_bit: false,
        smtputf8: false,
        outcomes: Default::default(),
        history: Vec::new(),
        content: content.to_vec(),
        lease: None,
        return_paths: Vec::new(),
    }
}

pub async fn directory_round_trip(store: &dyn Store) {
    store.create_tenant(tenant("hr")).await.expect("create tenant");
    assert!(matches!(
        store.create_tenant(tenant("hr")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_app(app("payroll", "nope")).await,
        Err(StoreError::NotFound(_))
    ));
    store.create_app(app("payroll", "hr")).await.expect("create app");
    assert!(matches!(
        store.create_app(app("payroll", "hr")).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let mut stored = store.app("payroll").await.expect("read").expect("present");
    assert_eq!(stored, app("payroll", "hr"));
    stored.enabled = false;
    store.update_app(stored.clone()).await.expect("update");
    assert!(!store.app("payroll").await.expect("read").expect("present").enabled);
    assert!(matches!(
        store.update_app(app("ghost", "hr")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.tenants().await.expect("list").len(), 1);
    let mut routed = tenant("hr");
    routed.route = ferry_core::Route::Mx;
    store.update_tenant(routed.clone()).await.expect("update tenant");
    assert_eq!(store.tenant("hr").await.expect("read"), Some(routed));
    assert!(matches!(
        store.update_tenant(tenant("ghost")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.apps(Some("hr")).await.expect("list").len(), 1);
    assert_eq!(store.apps(Some("other")).await.expect("list").len(), 0);

    let mut token = ferry_core::token::ApiToken {
        id: "0123456789ab".into(),
        name: "finance team".into(),
        role: ferry_core::token::Role::Finance,
        tenant: None,
        secret_sha256: "00".repeat(32),
        created_ms: 7,
        revoked: false,
    };
    store.put_token(token.clone()).await.expect("put token");
    assert_eq!(store.token("0123456789ab").await.expect("read"), Some(token.clone()));
    assert_eq!(store.token("ffffffffffff").await.expect("read"), None);
    token.revoked = true;
    store.put_token(token.clone()).await.expect("revoke");
    assert_eq!(store.tokens().await.expect("list"), vec![token]);
}

pub async fn queue_lease_complete_and_expiry(store: &dyn Store) {
    let m = message(b"Subject: x\r\n\r\nbody\r\n", 1_000);
    store.enqueue(m.clone(), None).await.expect("enqueue");
    assert_eq!(store.depth().await.expect("depth"), 1);
    // Not due before it was received.
    assert!(store.lease(999, 60_000, 10).await.expect("lease").is_empty());
    let leased = store.lease(1_000, 60_000, 10).await.expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].content, m.content);
    assert_eq!(leased[0].recipients, m.recipients);
    // Leased: nobody else gets it until the lease runs out.
    assert!(store.lease(30_000, 60_000, 10).await.expect("lease").is_empty());
    let again = store.lease(61_000, 60_000, 10).await.expect("lease");
    assert_eq!(again.len(), 1, "an expired lease makes the message due again");
    let mut progress = again[0].clone();
    progress.outcomes.insert(
        "r@example.net".into(),
        RecipientOutcome::Delivered {
            at_ms: 61_000,
            reply: "250 ok".into(),
        },
    );
    store
        .record(&progress, Next::Continue, &none())
        .await
        .expect("record progress");
    store
        .record(&progress, Next::RetryAt(200_000), &none())
        .await
        .expect("reschedule");
    assert!(store.lease(199_999, 60_000, 10).await.expect("lease").is_empty());
    let listed = store.list(10).await.expect("list");
    assert_eq!((listed[0].due_ms, listed[0].size), (200_000, m.content.len()));
    let retried = store.lease(200_000, 60_000, 10).await.expect("lease");
    assert_eq!(retried[0].attempts, 1);
    assert!(retried[0].pending().is_empty(), "a delivered recipient stays delivered");
    assert_eq!(retried[0].content, m.content, "recording state keeps the content");
    store.retry_now(&m.id, 210_000).await.expect("retry now");
    let latest = store.lease(210_000, 60_000, 10).await.expect("lease");
    assert_eq!(latest.len(), 1);
    assert_eq!(
        store.get(&m.id).await.expect("get").expect("present").content,
        m.content
    );
    store.record(&latest[0], Next::Done, &none()).await.expect("done");
    assert!(store.get(&m.id).await.expect("get").is_none());
    assert_eq!(store.depth().await.expect("depth"), 0);
    assert!(store.list(10).await.expect("list").is_empty());
    assert!(store.lease(u64::MAX - 1, 1, 10).await.expect("lease").is_empty());
    assert!(store.hours(0, u64::MAX).await.expect("hours").is_empty());
    assert!(store.alerts(0, u64::MAX).await.expect("alerts").is_empty());
    assert!(
        store
            .claim_alerts(u64::MAX - 1, 1, 10)
            .await
            .expect("outbox")
            .is_empty()
    );
}

/// A delivery result is saved only under the message's latest lease: a
/// walk whose lease ran out and was taken again writes nothing, whatever it
/// tries (progress, a retry, done), and the new holder's writes stand.
pub async fn records_are_fenced_by_the_lease(store: &dyn Store) {
    let m = message(b"Subject: x\r\n\r\nbody\r\n", 1_000);
    store.enqueue(m.clone(), None).await.expect("enqueue");
    let first = store.lease(1_000, 10_000, 10).await.expect("lease").remove(0);
    assert!(first.lease.is_some(), "a leased copy carries its lease");
    // Its lease runs out (its holder stalled) and the message is taken again.
    let second = store.lease(11_000, 10_000, 10).await.expect("lease").remove(0);
    assert_ne!(first.lease, second.lease, "each lease is its own");
    let mut stale = first.clone();
    stale.outcomes.insert(
        "r@example.net".into(),
        RecipientOutcome::Failed {
            at_ms: 12_000,
            status: "5.1.1".into(),
            reply: "550 5.1.1 no such user".into(),
            remote: None,
        },
    );
    for next in [Next::Continue, Next::RetryAt(900_000), Next::Done] {
        match store.record(&stale, next, &none()).await {
            Err(StoreError::LeaseLost(id)) => assert_eq!(id, m.id.as_str()),
            other => panic!("a record under a lost lease ({next:?}) must be refused: {other:?}"),
        }
    }
    let kept = store.get(&m.id).await.expect("get").expect("still queued");
    assert!(
        kept.outcomes.is_empty() && kept.attempts == 0,
        "nothing of the stale walk was written: {kept:?}"
    );
    assert!(
        store.outcomes(0, u64::MAX).await.expect("outcomes").is_empty(),
        "nothing counted"
    );
    let mut progress = second.clone();
    progress.outcomes.insert(
        "r@example.net".into(),
        RecipientOutcome::Delivered {
            at_ms: 12_000,
            reply: "250 ok".into(),
        },
    );
    store
        .record(&progress, Next::Continue, &none())
        .await
        .expect("the holder's progress");
    store
        .record(&progress, Next::Done, &none())
        .await
        .expect("the holder's done");
    assert!(store.get(&m.id).await.expect("get").is_none());
}

/// Leases are renewed while held, handed back at once, and never taken
/// from another holder; directory writes change the directory version.
pub async fn leases_renew_and_hand_back(store: &dyn Store) {
    let m = message(b"Subject: x\r\n\r\nbody\r\n", 1_000);
    store.enqueue(m.clone(), None).await.expect("enqueue");
    assert_eq!(store.lease(1_000, 10_000, 10).await.expect("lease").len(), 1);
    let held = [(m.id.clone(), 11_000)];
    let renewed = store.extend_leases(&held, 40_000).await.expect("renew");
    assert_eq!(renewed, vec![m.id.clone()]);
    assert!(
        store.lease(20_000, 10_000, 10).await.expect("lease").is_empty(),
        "a renewed lease holds past its first end"
    );
    assert!(
        store.extend_leases(&held, 90_000).await.expect("stale").is_empty(),
        "a lease that no longer ends where the caller thinks is not the caller's"
    );
    let mine = [(m.id.clone(), 40_000)];
    assert_eq!(store.extend_leases(&mine, 21_000).await.expect("hand back").len(), 1);
    let again = store.lease(21_000, 10_000, 10).await.expect("lease");
    assert_eq!(again.len(), 1, "a handed-back message is due at once");
    assert_eq!(again[0].attempts, 0, "handing back is not an attempt");
    store
        .record(&again[0], Next::RetryAt(500_000), &none())
        .await
        .expect("retry");
    assert!(
        store
            .extend_leases(&[(m.id.clone(), 31_000)], 600_000)
            .await
            .expect("recorded")
            .is_empty(),
        "a recorded message's schedule is not moved by an old lease"
    );
    assert_eq!(store.list(10).await.expect("list")[0].due_ms, 500_000);

    let before = store.directory_version().await.expect("version");
    store.create_tenant(tenant("versioned")).await.expect("tenant");
    let after_tenant = store.directory_version().await.expect("version");
    assert_ne!(before, after_tenant, "a tenant write changes the version");
    store.create_app(app("versioned-app", "versioned")).await.expect("app");
    assert_ne!(store.directory_version().await.expect("version"), after_tenant);
    let unchanged = store.directory_version().await.expect("version");
    assert!(store.create_tenant(tenant("versioned")).await.is_err());
    assert_eq!(
        store.directory_version().await.expect("version"),
        unchanged,
        "a refused write changes nothing"
    );
}

pub async fn concurrent_enqueues_all_land(store: std::sync::Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.enqueue(message(format!("m{i}").as_bytes(), i), None).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("enqueue");
    }
    assert_eq!(store.depth().await.expect("depth"), 200);
    let leased = store.lease(1_000, 1_000, 500).await.expect("lease");
    assert_eq!(leased.len(), 200);
}

/// A metering plan for one message of `app` in `tenant` at `now_ms`, with
/// the tenant allocated `yearly` units and capped at `hourly_cap`.
pub fn metering(
    tenant_name: &str,
    app_name: &str,
    now_ms: u64,
    yearly: Option<u64>,
    hourly_cap: Option<u64>,
) -> ferry_core::metering::Metering {
    let terms = ferry_core::contract::Contract {
        yearly_total: Some(1_000),
        ..Default::default()
    }
    .terms()
    .expect("terms");
    let mut t = tenant(tenant_name);
    t.allocation.yearly = yearly;
    t.caps.per_hour = hourly_cap;
    let usage = ferry_core::usage::Usage {
        messages: 1,
        recipients: 2,
        bytes: 100,
    };
    let alerts = ferry_core::config::Alerts {
        forecast_percent: vec![],
        ..Default::default()
    };
    ferry_core::metering::plan(&terms, &alerts, &t, &app(app_name, tenant_name), usage, now_ms)
}

pub async fn racing_sessions_raise_each_alert_once(store: std::sync::Arc<dyn Store>) {
    use ferry_core::usage::{HOUR_MS, Scope};
    let now = 1_780_000_000_000;
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let store = store.clone();
        let app_name = if i % 3 == 0 { "reports" } else { "payroll" };
        let plan = metering("hr", app_name, now, Some(50), None);
        tasks.push(tokio::spawn(async move {
            store.enqueue(message(b"x", now), Some(plan)).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("enqueue");
    }
    let hour = ferry_core::metering::Window::Hour(now / HOUR_MS);
    let counted = store.usage(&Scope::Tenant("hr".into()), hour).await.expect("usage");
    assert_eq!((counted.messages, counted.recipients, counted.bytes), (60, 120, 6_000));
    let alerts = store.alerts(0, u64::MAX).await.expect("alerts");
    let ids: Vec<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    // 50/80/100 % of the tenant's 50: crossed at 25, 40 and 50, once each;
    // the organisation's 1,000 is far away.
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.iter().all(|i| i.starts_with("yearly:t:hr:")), "{ids:?}");
    let at_80 = alerts
        .iter()
        .find(|a| a.id.starts_with("yearly:t:hr:80:"))
        .expect("80 %");
    assert_eq!((at_80.limit, at_80.value), (40, 40));
    assert_eq!(at_80.drivers[0].tenant, "hr");
    let apps: Vec<&str> = at_80.drivers[0]
        .applications
        .iter()
        .map(|a| a.application.as_str())
        .collect();
    assert_eq!(apps, ["payroll", "reports"]);
    let claimed = store.claim_alerts(now, 1_000, 10).await.expect("outbox");
    assert_eq!(claimed.len(), 3);
    assert!(
        store.claim_alerts(now, 1_000, 10).await.expect("outbox").is_empty(),
        "another node's dispatcher does not get claimed alerts"
    );
    store.alert_retry(&claimed[0].id, now + 500).await.expect("retry");
    store.alert_delivered(&claimed[1].id, now).await.expect("delivered");
    let retried = store.claim_alerts(now + 500, 1_000, 10).await.expect("outbox");
    assert_eq!(retried.iter().map(|a| &a.id).collect::<Vec<_>>(), [&claimed[0].id]);
    assert_eq!(retried[0].attempts, 1);
    let expired = store.claim_alerts(now + 1_000, 1_000, 10).await.expect("outbox");
    assert_eq!(
        expired.iter().map(|a| &a.id).collect::<Vec<_>>(),
        [&claimed[2].id],
        "a claim that ran out makes the alert due again; a delivered one never is"
    );
    let peak = store
        .peak(
            &Scope::Org,
            ferry_core::contract::Contract::default()
                .terms()
                .expect("terms")
                .year_of(now),
        )
        .await
        .expect("peak");
    assert_eq!(peak, Some((now / HOUR_MS, 60)));
}

pub async fn a_cap_refuses_without_counting(store: &dyn Store) {
    use ferry_core::usage::{HOUR_MS, Scope};
    let now = 1_780_000_000_000;
    for _ in 0..3 {
        store
            .enqueue(message(b"x", now), Some(metering("it", "alerts", now, None, Some(3))))
            .await
            .expect("under the cap");
    }
    let refused = store
        .enqueue(message(b"x", now), Some(metering("it", "alerts", now, None, Some(3))))
        .await;
    match refused {
        Err(StoreError::CapReached { name, temporary }) => {
            assert!(
                temporary && name.contains("hourly cap of 3 messages for tenant it"),
                "{name}"
            );
        }
        other => panic!("expected the cap, got {other:?}"),
    }
    let counted = store
        .usage(
            &Scope::Tenant("it".into()),
            ferry_core::metering::Window::Hour(now / HOUR_MS),
        )
        .await
        .expect("usage");
    assert_eq!(counted.messages, 3, "a refused message is not counted");
    assert_eq!(store.depth().await.expect("depth"), 3, "nor spooled");
    let hours = store.hours(now / HOUR_MS, now / HOUR_MS + 1).await.expect("hours");
    assert_eq!(hours.len(), 3, "org, tenant, app: {hours:?}");
}

/// Delivery records count each recipient's fate once, in the hour of the
/// attempt; refusals are added as counted; a record of a message already
/// gone counts nothing.
pub async fn outcomes_are_counted_once(store: &dyn Store) {
    use ferry_core::outcome::{Outcome, OutcomeCount};
    use ferry_core::usage::HOUR_MS;
    let hour = 500_000;
    let mut m = message(b"x", hour * HOUR_MS);
    m.recipients = vec!["a@example.net".into(), "b@example.net".into()];
    store.enqueue(m.clone(), None).await.expect("enqueue");
    store
        .record(&m, Next::RetryAt(hour * HOUR_MS + 1), &none())
        .await
        .expect("deferred");
    // Saved again, as after a reply lost in a failover: counted once.
    store
        .record(&m, Next::RetryAt(hour * HOUR_MS + 1), &none())
        .await
        .expect("deferred again");
    let stored = store.get(&m.id).await.expect("get").expect("still queued");
    assert_eq!(stored.attempts, 1, "one attempt, saved twice");
    m.outcomes.insert(
        "a@example.net".into(),
        RecipientOutcome::Delivered {
            at_ms: hour * HOUR_MS + 2,
            reply: "250 ok".into(),
        },
    );
    m.outcomes.insert(
        "b@example.net".into(),
        RecipientOutcome::Failed {
            at_ms: hour * HOUR_MS + 2,
            status: "5.1.1".into(),
            reply: "550 no".into(),
            remote: None,
        },
    );
    store.record(&m, Next::Done, &none()).await.expect("done");
    assert!(
        store.record(&m, Next::Done, &none()).await.is_err(),
        "the message is gone"
    );
    store
        .count_outcomes(vec![
            OutcomeCount::refusal("t", "a", "virus", hour * HOUR_MS),
            OutcomeCount::refusal("t", "a", "virus", hour * HOUR_MS + 5),
            OutcomeCount::refusal("t", "b", "auth_failed", (hour + 1) * HOUR_MS),
        ])
        .await
        .expect("count refusals");
    let mut counts: Vec<(u64, String, String, u64)> = store
        .outcomes(hour, hour + 2)
        .await
        .expect("outcomes")
        .into_iter()
        .map(|c| (c.hour, c.app, c.outcome.to_string(), c.count))
        .collect();
    counts.sort();
    let expected = vec![
        (hour, "a".to_string(), "bounced".to_string(), 1),
        (hour, "a".to_string(), "deferred".to_string(), 2),
        (hour, "a".to_string(), "delivered".to_string(), 1),
        (hour, "a".to_string(), Outcome::Refused("virus".into()).to_string(), 2),
        (hour + 1, "b".to_string(), "refused.auth_failed".to_string(), 1),
    ];
    assert_eq!(counts, expected);
    assert_eq!(store.outcomes(hour + 1, hour + 2).await.expect("outcomes").len(), 1);
}

/// Deleting an application, a tenant only once it is empty; the audit log
/// in time order, within the period and limit asked for.
pub async fn deletes_and_the_audit_log(store: &dyn Store) {
    use ferry_core::audit::AuditEntry;
    store.create_tenant(tenant("sales")).await.expect("tenant");
    store.create_app(app("crm", "sales")).await.expect("app");
    let version = store.directory_version().await.expect("version");
    assert!(matches!(store.delete_tenant("sales").await, Err(StoreError::InUse(_))));
    assert!(store.tenant("sales").await.expect("read").is_some());
    store.delete_app("crm").await.expect("delete app");
    assert!(store.app("crm").await.expect("read").is_none());
    assert!(matches!(store.delete_app("crm").await, Err(StoreError::NotFound(_))));
    store.delete_tenant("sales").await.expect("delete tenant");
    assert!(matches!(
        store.delete_tenant("sales").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.directory_version().await.expect("version") > version);

    for (at, action) in [(30, "c"), (10, "a"), (20, "b"), (40, "d")] {
        let entry = AuditEntry {
            id: AuditEntry::new_id(at),
            at_ms: at,
            actor: "tok".into(),
            role: "admin".into(),
            action: action.into(),
            object: "crm".into(),
            before: None,
            after: Some(serde_json::json!({ "n": at })),
        };
        store.append_audit(entry).await.expect("audit");
    }
    let actions = |entries: Vec<AuditEntry>| entries.into_iter().map(|e| e.action).collect::<Vec<_>>();
    assert_eq!(
        actions(store.audit(0, 100, 10).await.expect("audit")),
        ["a", "b", "c", "d"]
    );
    assert_eq!(actions(store.audit(20, 40, 10).await.expect("audit")), ["b", "c"]);
    assert_eq!(actions(store.audit(0, 100, 1).await.expect("audit")), ["a"]);
}

/// The three lockout rules: a pair locks alone, a username locks across
/// addresses, an address locks across usernames; a success forgets the
/// pair; windows run out; lifting by name or address lifts only those.
pub async fn sign_in_failures_lock_out_by_rule(store: &dyn Store) {
    use ferry_core::lockout::{LockoutKind, LockoutRules, Rule};
    let rule = |failures| Rule {
        failures,
        window_ms: 1000,
    };
    let rules = LockoutRules {
        pair: rule(2),
        username: rule(3),
        address: rule(4),
        address_slow_after: 1,
    };
    let ip = |n: u8| std::net::IpAddr::from([127, 0, 0, n]);
    let kinds = |started: Vec<ferry_core::lockout::Lockout>| started.iter().map(|l| l.kind).collect::<Vec<_>>();

    assert!(kinds(store.count_failure("a", ip(1), &rules, 100).await.expect("count")).is_empty());
    store.clear_pair("a", ip(1)).await.expect("clear");
    assert_eq!(store.sign_in_state("a", ip(1)).await.expect("state").pair.failures, 0);
    assert_eq!(
        store.sign_in_state("a", ip(1)).await.expect("state").username.failures,
        1
    );
    let started = kinds(store.count_failure("a", ip(1), &rules, 110).await.expect("count"));
    assert!(started.is_empty(), "{started:?}");
    let started = store.count_failure("a", ip(1), &rules, 120).await.expect("count");
    assert_eq!(kinds(started.clone()), [LockoutKind::Pair, LockoutKind::Username]);
    assert_eq!((started[0].failures, started[0].until_ms), (2, 1120));
    assert_eq!(started[0].username.as_deref(), Some("a"));
    assert_eq!(started[0].address, Some(ip(1)));
    let state = store.sign_in_state("a", ip(1)).await.expect("state");
    assert!(state.pair.locked(500) && state.username.locked(500) && !state.address.locked(500));
    let elsewhere = store.sign_in_state("a", ip(2)).await.expect("state");
    assert!(!elsewhere.pair.locked(500), "the pair lock is that pair's alone");
    let other = store.sign_in_state("b", ip(1)).await.expect("state");
    assert!(!other.pair.locked(500) && !other.username.locked(500));
    assert_eq!(other.address.failures, 3);

    let started = kinds(store.count_failure("b", ip(1), &rules, 130).await.expect("count"));
    assert_eq!(started, [LockoutKind::Address], "the fourth failure from one address");
    let mut locked: Vec<_> = kinds(store.lockouts(500).await.expect("lockouts"));
    locked.sort_by_key(|k| k.name());
    assert_eq!(locked, [LockoutKind::Address, LockoutKind::Pair, LockoutKind::Username]);

    assert_eq!(store.lift_lockouts(Some("a"), None, 500).await.expect("lift"), 2);
    assert_eq!(
        kinds(store.lockouts(500).await.expect("lockouts")),
        [LockoutKind::Address]
    );
    assert!(!store.sign_in_state("a", ip(1)).await.expect("state").pair.locked(500));
    assert_eq!(store.lift_lockouts(None, Some(ip(1)), 500).await.expect("lift"), 1);
    assert!(store.lockouts(500).await.expect("lockouts").is_empty());

    // A window that ran out counts from one again.
    store.count_failure("c", ip(3), &rules, 2000).await.expect("count");
    let started = kinds(store.count_failure("c", ip(3), &rules, 3100).await.expect("count"));
    assert!(started.is_empty(), "{started:?}");
    assert_eq!(store.sign_in_state("c", ip(3)).await.expect("state").pair.failures, 1);
}

/// The backlog: everything queued, what is due now, and the earliest due
/// time (a lease moves a message's due time to the lease's end).
pub async fn the_backlog_counts_what_is_due(store: &dyn Store) {
    assert_eq!(store.backlog(0).await.expect("backlog"), crate::Backlog::default());
    for at in [10, 20, 30] {
        store.enqueue(message(b"m", at), None).await.expect("enqueue");
    }
    let backlog = store.backlog(25).await.expect("backlog");
    assert_eq!((backlog.queued, backlog.due, backlog.earliest_due_ms), (3, 2, Some(10)));
    assert_eq!(store.lease(25, 100, 1).await.expect("lease").len(), 1);
    let backlog = store.backlog(25).await.expect("backlog");
    assert_eq!((backlog.queued, backlog.due, backlog.earliest_due_ms), (3, 1, Some(20)));
}

/// Samples: read back by tenant, application, id and period, oldest first
/// within the limit; purged by age.
pub async fn samples_are_kept_read_and_purged(store: &dyn Store) {
    use crate::SampleQuery;
    use ferry_core::sample::{Sample, Sampled};
    let sample = |id: &str, tenant: &str, app: &str, at_ms| {
        Sample::of(Sampled {
            id: id.into(),
            tenant,
            app,
            at_ms,
            outcome: "accepted",
            mail_from: "a@example.test",
            recipients: &[],
            content: b"Subject: s\r\n\r\nbody\r\n",
            with_body: true,
        })
    };
    for (id, tenant, app, at) in [
        ("Q1", "hr", "payroll", 10),
        ("Q2", "hr", "jobs", 20),
        ("Q3", "it", "alerts", 30),
    ] {
        store.put_sample(sample(id, tenant, app, at)).await.expect("put");
    }
    let all = SampleQuery {
        from_ms: 0,
        to_ms: 100,
        limit: 10,
        ..SampleQuery::default()
    };
    let ids = |samples: Vec<Sample>| samples.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.samples(all.clone()).await.expect("read")), ["Q1", "Q2", "Q3"]);
    let hr = SampleQuery {
        tenant: Some("hr".into()),
        ..all.clone()
    };
    assert_eq!(ids(store.samples(hr.clone()).await.expect("read")), ["Q1", "Q2"]);
    let jobs = SampleQuery {
        app: Some("jobs".into()),
        ..hr.clone()
    };
    assert_eq!(ids(store.samples(jobs).await.expect("read")), ["Q2"]);
    let by_id = SampleQuery {
        id: Some("q3".into()),
        ..all.clone()
    };
    let found = store.samples(by_id).await.expect("read");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].body.as_deref(), Some("body\r\n"));
    let window = SampleQuery {
        from_ms: 15,
        to_ms: 30,
        ..all.clone()
    };
    assert_eq!(ids(store.samples(window).await.expect("read")), ["Q2"]);
    let first = SampleQuery {
        limit: 1,
        ..all.clone()
    };
    assert_eq!(ids(store.samples(first).await.expect("read")), ["Q1"]);
    assert_eq!(store.purge_samples(25).await.expect("purge"), 2);
    assert_eq!(ids(store.samples(all).await.expect("read")), ["Q3"]);
}

fn event(tenant: &str, kind: ferry_core::event::EventKind, rcpt: &str, at_ms: u64) -> ferry_core::event::EventRecord {
    ferry_core::event::EventRecord {
        at_ms,
        tenant: tenant.into(),
        app: "a".into(),
        queue_id: String::new(),
        kind,
        recipients: vec![rcpt.into()],
        detail: Default::default(),
    }
}

/// An enqueue logs `accepted`; a record logs the changes it is given,
/// once however often it is saved, and none under a lost lease; a
/// tenant's log reads by cursor, apart from other tenants', and purges
/// by time.
pub async fn events_are_logged_with_their_changes(store: &dyn Store) {
    use ferry_core::event::EventKind;
    let kinds = |records: &[(String, ferry_core::event::EventRecord)]| -> Vec<EventKind> {
        records.iter().map(|(_, r)| r.kind).collect()
    };
    let mut m = message(b"x", 1_000);
    m.recipients = vec!["a@example.net".into(), "b@example.net".into()];
    store.enqueue(m.clone(), None).await.expect("enqueue");
    let mut bounce = message(b"dsn", 1_000);
    bounce.mail_from.clear();
    store.enqueue(bounce, None).await.expect("enqueue a bounce");
    let log = store.events("t", None, 10).await.expect("events");
    assert_eq!(kinds(&log), [EventKind::Accepted], "the null sender's message has none");
    assert_eq!(log[0].1.recipients, m.recipients);
    assert_eq!(log[0].1.queue_id, m.id.as_str());

    let leased = store.lease(2_000, 60_000, 10).await.expect("lease");
    let mut walk = leased.into_iter().find(|l| l.id == m.id).expect("leased");
    let deferred = Changes {
        events: vec![event("t", EventKind::Deferred, "a@example.net", 2_000)],
        suppress: Vec::new(),
    };
    walk.record_attempt(ferry_core::DeliveryAttempt {
        at_ms: 2_000,
        destination: "mx".into(),
        address: None,
        tls: None,
        recipients: m.recipients.clone(),
        reply: "451 4.7.1 later".into(),
    });
    // A stale holder of an earlier lease writes nothing.
    let mut stale = walk.clone();
    stale.lease = Some("not-the-lease".into());
    assert!(matches!(
        store.record(&stale, Next::RetryAt(9_000), &deferred).await,
        Err(StoreError::LeaseLost(_))
    ));
    for _ in 0..2 {
        // Saved twice, as after a reply lost in a failover: logged once.
        store
            .record(&walk, Next::RetryAt(9_000), &deferred)
            .await
            .expect("deferred");
    }
    let delivered = Changes {
        events: vec![event("t", EventKind::Delivered, "a@example.net", 9_500)],
        suppress: Vec::new(),
    };
    store.record(&walk, Next::Done, &delivered).await.expect("done");
    assert!(store.record(&walk, Next::Done, &delivered).await.is_err(), "gone");
    let log = store.events("t", None, 10).await.expect("events");
    assert_eq!(
        kinds(&log),
        [EventKind::Accepted, EventKind::Deferred, EventKind::Delivered]
    );
    let after_first = store.events("t", Some(&log[0].0), 10).await.expect("by cursor");
    assert_eq!(after_first, log[1..].to_vec(), "a cursor reads what came after it");
    assert_eq!(store.events("t", Some(&log[0].0), 1).await.expect("limit").len(), 1);
    assert!(
        store
            .events("t", Some(&log[2].0), 10)
            .await
            .expect("at the end")
            .is_empty()
    );
    assert!(matches!(
        store.events("t", Some("not a cursor"), 10).await,
        Err(StoreError::Invalid(_))
    ));
    for (at, expected) in [
        (2_000, &[EventKind::Deferred, EventKind::Delivered][..]),
        (2_001, &[EventKind::Delivered][..]),
        (9_501, &[][..]),
    ] {
        let from = store
            .events("t", Some(&store.cursor_at(at)), 10)
            .await
            .expect("from a time");
        assert_eq!(kinds(&from), expected, "the records made from {at} on");
    }

    let late = event("u", EventKind::Complained, "c@example.net", 5_000_000);
    let entry = ferry_core::suppression::Suppression {
        tenant: "u".into(),
        recipient: "C@example.net".into(),
        reason: ferry_core::suppression::Reason::Complaint,
        at_ms: 5_000_000,
        expires_ms: None,
        source: "complained".into(),
    };
    store
        .append_events(Changes {
            events: vec![late.clone()],
            suppress: vec![entry],
        })
        .await
        .expect("append");
    let other = store.events("u", None, 10).await.expect("events");
    assert_eq!(other.len(), 1, "each tenant has its own log");
    assert_eq!(other[0].1, late);
    assert!(
        store
            .suppression("u", "c@example.net", 5_000_001)
            .await
            .expect("lookup")
            .is_some(),
        "appended with its suppression entry"
    );
    assert_eq!(store.purge_events(2_000_000).await.expect("purge"), 3);
    assert!(store.events("t", None, 10).await.expect("events").is_empty());
    assert_eq!(store.events("u", None, 10).await.expect("events").len(), 1);
}

/// Entries per tenant, looked up case-insensitively, lapsing when they
/// expire, replaced by a later one, searched, removed; soft bounces
/// counted within their window.
pub async fn suppression_lists_per_tenant(store: &dyn Store) {
    use ferry_core::suppression::{Reason, Suppression};
    let entry = |tenant: &str, recipient: &str, expires_ms: Option<u64>| Suppression {
        tenant: tenant.into(),
        recipient: recipient.into(),
        reason: Reason::HardBounce,
        at_ms: 1_000,
        expires_ms,
        source: "bounced Q 5.1.1".into(),
    };
    let add = |entries: Vec<Suppression>| Changes {
        events: Vec::new(),
        suppress: entries,
    };
    store
        .append_events(add(vec![
            entry("t", "Jo@X.test", Some(10_000)),
            entry("t", "ann@y.test", None),
            entry("u", "jo@x.test", None),
        ]))
        .await
        .expect("add");
    let found = store.suppression("t", "JO@x.test", 5_000).await.expect("lookup");
    assert_eq!(found.map(|s| s.recipient), Some("jo@x.test".to_string()));
    assert!(
        store
            .suppression("t", "jo@x.test", 10_000)
            .await
            .expect("lookup")
            .is_none(),
        "lapsed"
    );
    assert!(
        store
            .suppression("v", "jo@x.test", 5_000)
            .await
            .expect("lookup")
            .is_none()
    );
    let mut manual = entry("t", "jo@x.test", None);
    manual.reason = Reason::Manual;
    store.append_events(add(vec![manual])).await.expect("replace");
    let listed = store.suppressions("t", None, 10).await.expect("list");
    let names: Vec<(&str, Reason)> = listed.iter().map(|s| (s.recipient.as_str(), s.reason)).collect();
    assert_eq!(
        names,
        [("ann@y.test", Reason::HardBounce), ("jo@x.test", Reason::Manual)]
    );
    assert_eq!(
        store.suppressions("t", Some("X.TEST"), 10).await.expect("search").len(),
        1
    );
    assert_eq!(store.suppressions("t", None, 1).await.expect("limit").len(), 1);
    assert!(
        store
            .suppressions("t", Some("nobody"), 10)
            .await
            .expect("search")
            .is_empty()
    );
    assert!(store.unsuppress("t", "Jo@x.test").await.expect("remove"));
    assert!(!store.unsuppress("t", "jo@x.test").await.expect("remove again"));
    assert!(
        store
            .suppression("u", "jo@x.test", 5_000)
            .await
            .expect("lookup")
            .is_some(),
        "other tenant's stays"
    );

    let rcpt = vec!["Soft@x.test".to_string()];
    let mut counts = Vec::new();
    for now in [1_000, 1_200, 1_600] {
        counts.extend(store.count_soft_bounces("t", &rcpt, now, 500).await.expect("count"));
    }
    assert_eq!(counts, [1, 2, 2], "the bounce at 1000 left the window by 1600");
}

/// Return-path keys are added only over the newest one expected (two
/// nodes rotating at once make one key), and change the directory
/// version; a message with return paths leaves a `Sent` record that
/// outlives it until purged.
pub async fn return_paths_and_their_keys(store: &dyn Store) {
    use ferry_core::return_path::{BounceKey, Sent, current};
    assert!(store.bounce_keys().await.expect("keys").is_empty());
    let version = store.directory_version().await.expect("version");
    let first = BounceKey::generate(&[], 1);
    assert!(store.add_bounce_key(first.clone(), None).await.expect("add"));
    let racer = BounceKey::generate(&[], 2);
    assert!(
        !store.add_bounce_key(racer, None).await.expect("race"),
        "the other node was first"
    );
    let second = BounceKey::generate(std::slice::from_ref(&first), 3);
    assert!(!store.add_bounce_key(second.clone(), Some('7')).await.expect("stale"));
    assert!(
        store
            .add_bounce_key(second.clone(), Some(first.id))
            .await
            .expect("rotate")
    );
    let keys = store.bounce_keys().await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(current(&keys), Some(&second));
    assert_ne!(store.directory_version().await.expect("version"), version);

    let mut m = message(b"x", 1_000);
    m.return_paths = vec!["b-x-0-0aa@b.example.test".into()];
    store.enqueue(m.clone(), None).await.expect("enqueue");
    let plain = message(b"y", 1_000);
    store.enqueue(plain.clone(), None).await.expect("enqueue");
    store.complete(&m.id).await.expect("complete");
    assert_eq!(
        store.sent(&m.id).await.expect("sent"),
        Sent::of(&m),
        "kept after it left the queue"
    );
    assert_eq!(store.sent(&plain.id).await.expect("sent"), None);
    let now_ms = m.id.time_ms();
    store.purge_events(now_ms.saturating_sub(60_000)).await.expect("purge");
    assert!(
        store.sent(&m.id).await.expect("sent").is_some(),
        "received after the cut-off"
    );
    store.purge_events(now_ms + 60_000).await.expect("purge");
    assert_eq!(store.sent(&m.id).await.expect("sent"), None);
}

/// A webhook receiver is held by one node at a time: another takes it only
/// once the hold ran out, and only the holder saves its progress.
pub async fn webhook_receivers_are_held_by_one_node(store: &dyn Store) {
    use ferry_core::event::ReceiverState;
    let fresh = store.hold_receiver("app:x", "n1", 1_000, 500).await.expect("hold");
    assert_eq!(fresh, Some(ReceiverState::default()));
    assert_eq!(
        store.hold_receiver("app:x", "n2", 1_200, 500).await.expect("hold"),
        None
    );
    let progress = ReceiverState {
        cursor: Some("5".into()),
        failures: 2,
        next_try_ms: 1_300,
    };
    assert!(
        !store.save_receiver("app:x", "n2", &progress).await.expect("save"),
        "not its holder"
    );
    assert!(store.save_receiver("app:x", "n1", &progress).await.expect("save"));
    assert_eq!(
        store.hold_receiver("app:x", "n1", 1_400, 500).await.expect("renew"),
        Some(progress.clone())
    );
    assert_eq!(
        store.hold_receiver("app:y", "n2", 1_400, 500).await.expect("other"),
        Some(ReceiverState::default())
    );
    assert_eq!(
        store.hold_receiver("app:x", "n2", 2_000, 500).await.expect("take over"),
        Some(progress.clone()),
        "the hold ran out at 1900"
    );
    assert!(
        !store.save_receiver("app:x", "n1", &progress).await.expect("save"),
        "no longer its holder"
    );
}

/// An application has at most one open incident, whichever node opens it
/// first; closing it frees the place; incidents list newest first.
pub async fn incidents_open_once_per_application(store: &dyn Store) {
    use ferry_core::incident::{Finding, Incident, Policy, Resolution, Severity, Verdict};
    let finding = |hour: u64| Finding {
        hour,
        severity: Severity::High,
        evidence: Vec::new(),
    };
    let first = Incident::of(finding(10), "t", "a", Policy::Hold, 1_000);
    let racer = Incident::of(finding(10), "t", "a", Policy::Hold, 1_001);
    assert!(store.open_incident(first.clone()).await.expect("open"));
    assert!(
        !store.open_incident(racer.clone()).await.expect("race"),
        "one open per application"
    );
    assert_eq!(
        store.incident(&racer.id).await.expect("get"),
        None,
        "the loser wrote nothing"
    );
    let other = Incident::of(finding(11), "u", "b", Policy::Alert, 2_000);
    assert!(store.open_incident(other.clone()).await.expect("open other"));
    assert_eq!(
        store.open_incident_of("t", "a").await.expect("open of"),
        Some(first.clone())
    );
    assert_eq!(store.open_incident_of("t", "b").await.expect("open of"), None);
    let told: Vec<_> = store.claim_alerts(5_000, 60_000, 10).await.expect("claim");
    let told: Vec<(String, Option<String>)> = told.into_iter().map(|a| (a.id, a.incident.map(|i| i.id))).collect();
    assert_eq!(
        told,
        [
            (format!("incident-{}", first.id), Some(first.id.clone())),
            (format!("incident-{}", other.id), Some(other.id.clone()))
        ],
        "each opening is told once, with the incident; the loser's never"
    );
    let discarded = first.discarded_alert(3, 5_000);
    assert!(store.raise_alert(discarded.clone()).await.expect("raise"));
    assert!(
        !store.raise_alert(discarded.clone()).await.expect("again"),
        "once per id"
    );
    let told = store.claim_alerts(5_001, 60_000, 10).await.expect("claim");
    assert_eq!(
        told.iter().map(|a| (&a.id, a.value)).collect::<Vec<_>>(),
        [(&discarded.id, 3)]
    );

    let resolution = Resolution {
        at_ms: 3_000,
        by: "ops".into(),
        verdict: Verdict::FalseAlarm,
        note: "month-end".into(),
    };
    let closed = store
        .resolve_incident(&first.id, resolution.clone())
        .await
        .expect("resolve");
    assert_eq!(closed.resolution, Some(resolution.clone()));
    assert!(matches!(
        store.resolve_incident(&first.id, resolution.clone()).await,
        Err(StoreError::InUse(_))
    ));
    assert!(matches!(
        store.resolve_incident("nope", resolution).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.open_incident_of("t", "a").await.expect("open of"), None);
    let again = Incident::of(finding(12), "t", "a", Policy::Suspend, 4_000);
    assert!(
        store.open_incident(again.clone()).await.expect("a new one"),
        "the place is free again"
    );

    let all: Vec<String> = store
        .incidents(None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        all,
        [again.id.clone(), other.id.clone(), first.id.clone()],
        "newest first"
    );
    let t: Vec<String> = store
        .incidents(Some("t"), 1)
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(t, [again.id]);
}

/// An application's figures of finished hours: saved (again: replaced),
/// read by range in order, forgotten before the kept window, apart from
/// every other application's.
pub async fn figures_are_kept_per_application_and_hour(store: &dyn Store) {
    use ferry_core::incident::HourFigures;
    let hour = |hour: u64, messages: u64| HourFigures {
        hour,
        messages,
        domains: 2,
        ..HourFigures::default()
    };
    let first: Vec<HourFigures> = (100..110).map(|h| hour(h, h)).collect();
    store.save_figures("t", "a", &first, 0).await.expect("save");
    store
        .save_figures("t", "b", &[hour(105, 1)], 0)
        .await
        .expect("save other");
    store
        .save_figures("t", "a", &[hour(109, 7), hour(110, 8)], 104)
        .await
        .expect("save again");
    let read = store.figures("t", "a", 0, 200).await.expect("read");
    let hours: Vec<(u64, u64)> = read.iter().map(|f| (f.hour, f.messages)).collect();
    assert_eq!(
        hours,
        [
            (104, 104),
            (105, 105),
            (106, 106),
            (107, 107),
            (108, 108),
            (109, 7),
            (110, 8)
        ],
        "replaced, and the hours before 104 forgotten"
    );
    assert_eq!(read[0].domains, 2);
    let some = store.figures("t", "a", 106, 108).await.expect("range");
    assert_eq!(some.iter().map(|f| f.hour).collect::<Vec<_>>(), [106, 107]);
    assert_eq!(store.figures("t", "b", 0, 200).await.expect("other").len(), 1);
    assert!(store.figures("u", "a", 0, 200).await.expect("none").is_empty());
}

/// An application's first source address is no fact; a later new one is,
/// once; a sign-in after a lockout is; facts are read by time, and those
/// past their keeping are forgotten.
pub async fn sign_in_facts_are_kept_for_the_watch(store: &dyn Store) {
    use ferry_core::incident::{SIGN_IN_FACTS_MS, SignInKind, SignIns};
    let ip = |s: &str| -> std::net::IpAddr { s.parse().expect("address") };
    let t0 = 10 * SIGN_IN_FACTS_MS;
    assert!(!store.note_source("t", "a", ip("10.0.0.1"), t0).await.expect("first"));
    assert!(
        !store
            .note_source("t", "a", ip("10.0.0.1"), t0 + 1)
            .await
            .expect("again")
    );
    assert!(
        !store
            .note_source("t", "b", ip("10.0.0.2"), t0 + 2)
            .await
            .expect("other app's first")
    );
    assert!(store.note_source("t", "a", ip("10.9.9.9"), t0 + 3).await.expect("new"));
    assert!(
        !store
            .note_source("t", "a", ip("10.9.9.9"), t0 + 4)
            .await
            .expect("known now")
    );
    store.note_after_lockout("t", "b", t0 + 5).await.expect("after lockout");
    let facts = store.sign_in_facts(t0).await.expect("facts");
    let kinds: Vec<(&str, SignInKind)> = facts.iter().map(|f| (f.app.as_str(), f.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("a", SignInKind::NewSource(ip("10.9.9.9"))),
            ("b", SignInKind::AfterLockout)
        ]
    );
    assert_eq!(SignIns::of(&facts, "t", "a").new_sources, [ip("10.9.9.9")]);
    assert!(SignIns::of(&facts, "t", "b").lockout_then_success);
    assert_eq!(store.sign_in_facts(t0 + 4).await.expect("since").len(), 1);
    // Past their keeping, forgotten with the next fact.
    store
        .note_after_lockout("t", "c", t0 + SIGN_IN_FACTS_MS + 10)
        .await
        .expect("later");
    let facts = store.sign_in_facts(0).await.expect("all");
    assert_eq!(facts.iter().map(|f| f.app.as_str()).collect::<Vec<_>>(), ["c"]);
}

/// While an application's incident holds its mail, its messages are queued
/// held: never leased, not counted, with a `held` event. Released, one is
/// due at once and counted then; discarded, one is gone. An `alert`
/// incident holds nothing; a closed one holds no new mail.
pub async fn mail_is_held_under_an_incident_until_released_or_discarded(store: &dyn Store) {
    use ferry_core::event::EventKind;
    use ferry_core::incident::{Finding, Incident, Policy, Resolution, Severity, Verdict};
    use ferry_core::metering::Window;
    use ferry_core::usage::{HOUR_MS, Scope};
    let now = 500_000 * HOUR_MS;
    let finding = Finding {
        hour: now / HOUR_MS,
        severity: Severity::High,
        evidence: Vec::new(),
    };
    let incident = Incident::of(finding.clone(), "t", "a", Policy::Hold, now);
    assert!(store.open_incident(incident.clone()).await.expect("open"));
    let (first, second) = (message(b"one", now), message(b"two", now));
    for m in [&first, &second] {
        store
            .enqueue(m.clone(), Some(metering("t", "a", now, None, None)))
            .await
            .expect("held, with 250");
    }
    let mut other = message(b"other app", now);
    other.app = "b".into();
    store.enqueue(other.clone(), None).await.expect("enqueue");
    let leased: Vec<QueueId> = store
        .lease(now, 60_000, 10)
        .await
        .expect("lease")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(leased, [other.id.clone()], "held mail is never leased");
    let hour = Window::Hour(now / HOUR_MS);
    let app = Scope::App {
        tenant: "t".into(),
        app: "a".into(),
    };
    assert_eq!(
        store.usage(&app, hour).await.expect("usage").messages,
        0,
        "not counted while held"
    );
    let held = store.held(Some("t"), 10).await.expect("held");
    let ids: Vec<(&QueueId, &str)> = held.iter().map(|(m, i)| (&m.id, i.as_str())).collect();
    assert_eq!(
        ids,
        [(&first.id, incident.id.as_str()), (&second.id, incident.id.as_str())]
    );
    assert!(store.held(Some("u"), 10).await.expect("held").is_empty());

    store
        .release_held(&first.id, Some(metering("t", "a", now + 5, None, None)), now + 5)
        .await
        .expect("release");
    let leased = store.lease(now + 5, 60_000, 10).await.expect("lease");
    assert_eq!(leased.len(), 1, "released: due at once");
    assert_eq!(leased[0].id, first.id);
    assert_eq!(
        store.usage(&app, hour).await.expect("usage").messages,
        1,
        "counted when released"
    );
    store.discard_held(&second.id, now + 6).await.expect("discard");
    assert!(store.get(&second.id).await.expect("get").is_none(), "discarded");
    assert!(matches!(
        store.discard_held(&second.id, now + 7).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.release_held(&other.id, None, now + 7).await,
        Err(StoreError::NotFound(_))
    ));
    let kinds: Vec<EventKind> = store
        .events("t", None, 100)
        .await
        .expect("events")
        .into_iter()
        .filter(|(_, r)| r.app == "a")
        .map(|(_, r)| r.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Accepted,
            EventKind::Held,
            EventKind::Accepted,
            EventKind::Held,
            EventKind::Released,
            EventKind::Discarded
        ]
    );
    let mut counted: Vec<(String, u64)> = store
        .outcomes(now / HOUR_MS, now / HOUR_MS + 1)
        .await
        .expect("outcomes")
        .into_iter()
        .filter(|c| c.app == "a")
        .map(|c| (c.outcome.to_string(), c.count))
        .collect();
    counted.sort();
    assert_eq!(
        counted,
        [("discarded".into(), 1), ("held".into(), 2), ("released".into(), 1)],
        "each counted once for the outcome report"
    );

    // Closed, the incident holds no new mail.
    let resolution = Resolution {
        at_ms: now + 8,
        by: "ops".into(),
        verdict: Verdict::Compromised,
        note: String::new(),
    };
    store.resolve_incident(&incident.id, resolution).await.expect("resolve");
    let after = message(b"after", now + 9);
    store.enqueue(after.clone(), None).await.expect("enqueue");
    assert!(store.held(None, 10).await.expect("held").is_empty());
    // An `alert` incident only tells.
    let alert = Incident::of(finding, "t", "a", Policy::Alert, now + 10);
    assert!(store.open_incident(alert).await.expect("open"));
    let told = message(b"told", now + 11);
    store.enqueue(told, None).await.expect("enqueue");
    assert!(store.held(None, 10).await.expect("held").is_empty());
    assert_eq!(store.lease(now + 20, 60_000, 10).await.expect("lease").len(), 2);
}
