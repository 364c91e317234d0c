//! The conformance suite against a real redis-server, plus what only a
//! shared server can show: two handles (two nodes) see one queue, and
//! acknowledged writes survive the server being killed.

use std::sync::Arc;

use ferry_core::config::RedisStore as RedisConfig;
use ferry_store::conformance;
use ferry_store::{Directory, Queue, StoreError};
use ferry_store_redis::RedisStore;
use ferry_testkit::servers::{Redis, RedisOptions, Sentinels};

async fn open(redis: &Redis) -> RedisStore {
    let settings = RedisConfig {
        url: redis.url(),
        key_prefix: "ferry-test".into(),
        ..RedisConfig::default()
    };
    RedisStore::connect(&settings).await.expect("connect")
}

async fn backend() -> (Redis, RedisStore) {
    let redis = Redis::start();
    let store = open(&redis).await;
    (redis, store)
}

ferry_store::conformance_suite!(backend);

#[tokio::test]
async fn two_nodes_share_one_queue_and_a_killed_server_keeps_what_it_acknowledged() {
    let mut redis = Redis::start();
    let (ingress, delivery) = (open(&redis).await, open(&redis).await);
    ingress.create_tenant(conformance::tenant("hr")).await.expect("tenant");
    let message = conformance::message(b"kept", 5);
    ingress.enqueue(message.clone(), None).await.expect("enqueue");
    assert!(delivery.tenant("hr").await.expect("read").is_some());
    redis.restart_after_kill();
    let delivery = open(&redis).await;
    let leased = delivery.lease(10, 60_000, 10).await.expect("lease");
    assert_eq!(
        leased.len(),
        1,
        "the acknowledged message survived kill -9 of redis-server"
    );
    assert_eq!(
        (leased[0].id.clone(), leased[0].content.as_slice()),
        (message.id, &b"kept"[..])
    );
    // The other node sees the lease: nothing is handed out twice.
    assert!(
        open(&redis)
            .await
            .lease(20, 60_000, 10)
            .await
            .expect("lease")
            .is_empty()
    );
}

#[tokio::test]
async fn an_enqueue_on_one_node_wakes_the_delivery_of_another() {
    let redis = Redis::start();
    let (ingress, delivery) = (open(&redis).await, open(&redis).await);
    let wake = Arc::new(tokio::sync::Notify::new());
    delivery.watch_enqueues(wake.clone());
    let deadline = std::time::Duration::from_secs(10);
    tokio::time::timeout(deadline, wake.notified())
        .await
        .expect("woken once subscribed");
    ingress
        .enqueue(conformance::message(b"new", 1), None)
        .await
        .expect("enqueue");
    tokio::time::timeout(deadline, wake.notified())
        .await
        .expect("woken by the other node's enqueue");
}

#[tokio::test]
async fn with_wait_replicas_a_write_counts_only_once_a_replica_has_it() {
    let primary = Redis::start();
    let mut replica = Redis::replica_of(&primary);
    let settings = RedisConfig {
        url: primary.url(),
        key_prefix: "ferry-test".into(),
        wait_replicas: 1,
        wait_timeout_ms: 300,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&settings).await.expect("connect");
    // The replica has to finish its first sync before WAIT can count it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut replicated = store.enqueue(conformance::message(b"one", 1), None).await;
    while replicated.is_err() && std::time::Instant::now() < deadline {
        replicated = store.enqueue(conformance::message(b"one", 1), None).await;
    }
    replicated.expect("acknowledged once the replica has the write");
    // Unconfirmed tries were taken back; the confirmed one is due at once.
    assert_eq!(store.depth().await.expect("depth"), 1);
    assert_eq!(store.lease(2, 60_000, 10).await.expect("lease").len(), 1);
    replica.kill();
    assert!(
        matches!(
            store.enqueue(conformance::message(b"two", 2), None).await,
            Err(StoreError::Unavailable(why)) if why.contains("0 of 1 replicas")
        ),
        "without its replica the write is not acknowledged"
    );
    assert_eq!(store.depth().await.expect("depth"), 1, "and it is not queued either");
}

/// A server that speaks only TLS and wants a password, as a managed Redis
/// does: the store connects with the test CA and works; a wrong password
/// or an unknown CA fails at connect with an error naming the setting.
#[tokio::test]
async fn tls_with_a_password_and_clear_errors_when_either_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = ferry_testkit::pki::TestPki::create(dir.path());
    let redis = Redis::with(RedisOptions {
        password: Some("s3cret-pass".into()),
        tls: Some((pki.cert.clone(), pki.key.clone(), pki.ca.clone())),
        ..RedisOptions::default()
    });
    let settings = RedisConfig {
        url: redis.url(),
        key_prefix: "ferry-test".into(),
        ca_file: Some(pki.ca.clone()),
        ..RedisConfig::default()
    };
    assert!(settings.url.starts_with("rediss://:s3cret-pass@"), "{}", settings.url);
    let store = RedisStore::connect(&settings).await.expect("connect over TLS");
    conformance::directory_round_trip(&store).await;

    let wrong = RedisConfig {
        url: settings.url.replace("s3cret-pass", "wrong"),
        ..settings.clone()
    };
    let error = RedisStore::connect(&wrong)
        .await
        .err()
        .expect("a wrong password fails")
        .to_string();
    assert!(error.contains("store.redis.url"), "{error}");
    assert!(!error.contains("wrong"), "the password is not repeated: {error}");
    let unknown_ca = RedisConfig {
        ca_file: None,
        ..settings.clone()
    };
    let error = RedisStore::connect(&unknown_ca)
        .await
        .err()
        .expect("an unknown CA fails")
        .to_string();
    assert!(error.contains("store.redis.url"), "{error}");
    let missing = RedisConfig {
        ca_file: Some(dir.path().join("nope.pem")),
        ..settings
    };
    let error = RedisStore::connect(&missing)
        .await
        .err()
        .expect("a missing CA file fails")
        .to_string();
    assert!(error.contains("store.redis.ca_file"), "{error}");
}

/// An ACL user (the default user off): the URL's user and password sign in.
#[tokio::test]
async fn an_acl_user_signs_in_with_the_urls_credentials() {
    let redis = Redis::with(RedisOptions {
        acl_user: Some(("ferry".into(), "acl-pass".into())),
        ..RedisOptions::default()
    });
    let settings = RedisConfig {
        url: redis.url(),
        key_prefix: "ferry-test".into(),
        ..RedisConfig::default()
    };
    assert!(settings.url.starts_with("redis://ferry:acl-pass@"), "{}", settings.url);
    let store = RedisStore::connect(&settings).await.expect("connect as the ACL user");
    conformance::directory_round_trip(&store).await;
    let anonymous = RedisConfig {
        url: settings.url.replace("ferry:acl-pass@", ""),
        ..settings
    };
    let error = RedisStore::connect(&anonymous)
        .await
        .err()
        .expect("no anonymous user")
        .to_string();
    assert!(error.contains("store.redis.url"), "{error}");
}

/// Sentinel: the store follows the primary the Sentinels name. The primary
/// is killed; writes fail while none is reachable and succeed again once a
/// replica is promoted (and the other replica follows it: `wait_replicas =
/// 1` needs one), and every write acknowledged before is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_every_acknowledged_write() {
    let mut primary = Redis::start();
    let _replicas = [Redis::replica_of(&primary), Redis::replica_of(&primary)];
    let sentinels = Sentinels::watch(&primary);
    let settings = RedisConfig {
        // Only the scheme and credentials count: the sentinels name the host.
        url: "redis://unused.invalid:1/".into(),
        key_prefix: "ferry-test".into(),
        sentinels: sentinels.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        master_name: "ferry".into(),
        wait_replicas: 1,
        wait_timeout_ms: 500,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&settings)
        .await
        .expect("connect through the sentinels");
    let tenant = |n: usize| conformance::tenant(&format!("t{n}"));
    // The replica has to finish its first sync before WAIT can count it
    // (a write WAIT did not confirm is still written: each try is new).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut first = 1000;
    while store.create_tenant(tenant(first)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the replica never caught up");
        first += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut acknowledged = vec![first];
    for n in 1..20 {
        if store.create_tenant(tenant(n)).await.is_ok() {
            acknowledged.push(n);
        }
    }
    primary.kill();
    let mut refused = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 100;
    loop {
        assert!(std::time::Instant::now() < deadline, "no primary again within 60 s");
        n += 1;
        match store.create_tenant(tenant(n)).await {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused > 0, "writes failed while no primary was reachable");
    let names: Vec<String> = store
        .tenants()
        .await
        .expect("read")
        .into_iter()
        .map(|t| t.name)
        .collect();
    for n in acknowledged {
        assert!(
            names.contains(&format!("t{n}")),
            "t{n} was acknowledged and is on the new primary"
        );
    }
}

/// `durability = "waitaof"` on Valkey: a write counts once the primary and
/// a replica have fsynced it; without the replica it is not acknowledged.
/// On a server without WAITAOF (Debian's Redis 7.0) the store refuses to
/// start, naming the setting.
#[tokio::test]
async fn waitaof_counts_a_write_once_fsynced_on_a_replica() {
    let valkey = RedisOptions {
        server: Some(ferry_testkit::servers::valkey_server()),
        ..RedisOptions::default()
    };
    let primary = Redis::with(valkey);
    let mut replica = Redis::replica_of(&primary);
    let settings = RedisConfig {
        url: primary.url(),
        key_prefix: "ferry-test".into(),
        wait_replicas: 1,
        wait_timeout_ms: 500,
        durability: ferry_core::config::RedisDurability::WaitAof,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&settings).await.expect("connect");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.enqueue(conformance::message(b"one", 1), None).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the replica never caught up");
    }
    replica.kill();
    assert!(
        matches!(
            store.enqueue(conformance::message(b"two", 2), None).await,
            Err(StoreError::Unavailable(why)) if why.contains("0 of 1 replicas")
        ),
        "without its replica the write is not acknowledged"
    );

    let old = Redis::start();
    let error = RedisStore::connect(&RedisConfig {
        url: old.url(),
        ..settings
    })
    .await
    .err()
    .expect("Redis 7.0 has no WAITAOF")
    .to_string();
    assert!(error.contains("store.redis.durability"), "{error}");
}
