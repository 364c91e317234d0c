//! The conformance suite against a real redis-server, plus what only a
//! shared server can show: two handles (two nodes) see one queue, and
//! acknowledged writes survive the server being killed.

use std::sync::Arc;

use ferry_core::config::RedisStore as RedisConfig;
use ferry_store::conformance;
use ferry_store::{Directory, Queue, StoreError};
use ferry_store_redis::RedisStore;
use ferry_testkit::servers::Redis;

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
    };
    let store = RedisStore::connect(&settings).await.expect("connect");
    // The replica has to finish its first sync before WAIT can count it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut replicated = store.enqueue(conformance::message(b"one", 1), None).await;
    while replicated.is_err() && std::time::Instant::now() < deadline {
        replicated = store.enqueue(conformance::message(b"one", 1), None).await;
    }
    replicated.expect("acknowledged once the replica has the write");
    replica.kill();
    assert!(
        matches!(
            store.enqueue(conformance::message(b"two", 2), None).await,
            Err(StoreError::Unavailable(why)) if why.contains("0 of 1 replicas")
        ),
        "without its replica the write is not acknowledged"
    );
}
