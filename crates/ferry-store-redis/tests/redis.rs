//! The conformance suite against a real redis-server, plus what only a
//! shared server can show: two handles (two nodes) see one queue, and
//! acknowledged writes survive the server being killed.

use std::sync::Arc;

use ferry_core::config::RedisStore as RedisConfig;
use ferry_store::conformance;
use ferry_store::{Directory, Queue, StoreError};
use ferry_store_redis::RedisStore;
use ferry_testkit::servers::{Redis, RedisOptions, Sentinels};

/// The settings of a test store on `redis`.
fn config_for(redis: &Redis) -> RedisConfig {
    RedisConfig {
        url: redis.url(),
        key_prefix: "ferry-test".into(),
        ..RedisConfig::default()
    }
}

async fn open(redis: &Redis) -> RedisStore {
    RedisStore::connect(&config_for(redis)).await.expect("connect")
}

/// The error of a connect that must fail.
async fn connect_error(settings: &RedisConfig, why: &str) -> String {
    RedisStore::connect(settings).await.err().expect(why).to_string()
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
        wait_replicas: 1,
        wait_timeout_ms: 300,
        ..config_for(&primary)
    };
    let store = RedisStore::connect(&settings).await.expect("connect");
    // WAIT counts a replica once its first sync is done.
    primary.wait_for_replicas(1);
    store
        .enqueue(conformance::message(b"one", 1), None)
        .await
        .expect("acknowledged once the replica has the write");
    // The confirmed message is due at once.
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
        ca_file: Some(pki.ca.clone()),
        ..config_for(&redis)
    };
    assert!(settings.url.starts_with("rediss://:s3cret-pass@"), "{}", settings.url);
    let store = RedisStore::connect(&settings).await.expect("connect over TLS");
    conformance::directory_round_trip(&store).await;

    let wrong = RedisConfig {
        url: settings.url.replace("s3cret-pass", "wrong"),
        ..settings.clone()
    };
    let error = connect_error(&wrong, "a wrong password fails").await;
    assert!(error.contains("store.redis.url"), "{error}");
    assert!(!error.contains("wrong"), "the password is not repeated: {error}");
    let unknown_ca = RedisConfig {
        ca_file: None,
        ..settings.clone()
    };
    let error = connect_error(&unknown_ca, "an unknown CA fails").await;
    assert!(error.contains("store.redis.url"), "{error}");
    let missing = RedisConfig {
        ca_file: Some(dir.path().join("nope.pem")),
        ..settings
    };
    let error = connect_error(&missing, "a missing CA file fails").await;
    assert!(error.contains("store.redis.ca_file"), "{error}");
}

/// An ACL user (the default user off): the URL's user and password sign in.
#[tokio::test]
async fn an_acl_user_signs_in_with_the_urls_credentials() {
    let redis = Redis::with(RedisOptions {
        acl_user: Some(("ferry".into(), "acl-pass".into())),
        ..RedisOptions::default()
    });
    let settings = config_for(&redis);
    assert!(settings.url.starts_with("redis://ferry:acl-pass@"), "{}", settings.url);
    let store = RedisStore::connect(&settings).await.expect("connect as the ACL user");
    conformance::directory_round_trip(&store).await;
    let anonymous = RedisConfig {
        url: settings.url.replace("ferry:acl-pass@", ""),
        ..settings
    };
    let error = connect_error(&anonymous, "no anonymous user").await;
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
    primary.wait_for_replicas(2);
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
    for n in 0..20 {
        store.create_tenant(tenant(n)).await.expect("acknowledged");
    }
    primary.kill();
    // Each try is a new tenant: one WAIT did not confirm is still written.
    let tries = std::sync::atomic::AtomicUsize::new(100);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    ferry_testkit::wait_until("a primary again", std::time::Duration::from_secs(60), || async {
        let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match store.create_tenant(tenant(n)).await {
            Ok(()) => Some(()),
            Err(StoreError::Unavailable(_)) => {
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    let refused = refused.into_inner();
    assert!(refused > 0, "writes failed while no primary was reachable");
    let names: Vec<String> = store
        .tenants()
        .await
        .expect("read")
        .into_iter()
        .map(|t| t.name)
        .collect();
    for n in 0..20 {
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
        wait_replicas: 1,
        wait_timeout_ms: 500,
        durability: ferry_core::config::RedisDurability::WaitAof,
        ..config_for(&primary)
    };
    let store = RedisStore::connect(&settings).await.expect("connect");
    primary.wait_for_replicas(1);
    store
        .enqueue(conformance::message(b"one", 1), None)
        .await
        .expect("acknowledged once the replica has fsynced it");
    replica.kill();
    assert!(
        matches!(
            store.enqueue(conformance::message(b"two", 2), None).await,
            Err(StoreError::Unavailable(why)) if why.contains("0 of 1 replicas")
        ),
        "without its replica the write is not acknowledged"
    );

    let old = Redis::start();
    let error = connect_error(
        &RedisConfig {
            url: old.url(),
            ..settings
        },
        "Redis 7.0 has no WAITAOF",
    )
    .await;
    assert!(error.contains("store.redis.durability"), "{error}");
}
