//! The conformance suite against the embedded backend, plus what only a
//! file store can show: data survives reopening, and the file is locked.

use ferry_store::conformance;
use ferry_store::{EmbeddedStore, Queue, StoreError};

async fn open() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("ferry.redb")).expect("open");
    (dir, store)
}

ferry_store::conformance_suite!(open);

#[tokio::test]
async fn messages_survive_reopen_and_the_file_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ferry.redb");
    let message = conformance::message(b"kept", 5);
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.enqueue(message.clone(), None).await.expect("enqueue");
        assert!(matches!(EmbeddedStore::open(&path), Err(StoreError::Locked(_))));
    }
    let store = reopen(&path).await;
    let leased = store.lease(10, 1_000_000, 10).await.expect("lease");
    assert_eq!(leased[0].content, b"kept");
    drop(store);
    // The process holding that lease is gone: after reopening the message
    // is due at once, not when the lease would have run out.
    let store = reopen(&path).await;
    assert_eq!(store.lease(11, 1, 10).await.expect("lease").len(), 1);
}

/// Opens again once the previous handle's writer thread has let go of the
/// file (it holds the database until its channel closes).
async fn reopen(path: &std::path::Path) -> EmbeddedStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(path) {
            Ok(store) => return store,
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            Err(e) => panic!("reopen: {e}"),
        }
    }
}
