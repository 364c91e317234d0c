//! The conformance suite against the embedded backend, plus what only a
//! file store can show: data survives reopening, the file is locked, and
//! the writer's queue is bounded.

use ferry_store::conformance;
use ferry_store::embedded::WRITE_QUEUE_MAX;
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

/// The writer's queue is bounded: while it cannot keep up (here, it is not
/// running at all), messages past the bound are refused at once with
/// `Busy` rather than waiting in memory, and every write that was taken is
/// committed once the writer runs: nothing a caller was promised is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_refuses_new_messages_and_loses_none_it_took() {
    const EXCESS: usize = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer) = EmbeddedStore::open_supervised(&dir.path().join("ferry.redb")).expect("open");
    let writes: Vec<_> = (0..WRITE_QUEUE_MAX + EXCESS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.enqueue(conformance::message(b"burst", 5), None).await })
        })
        .collect();
    // Those refused for room answer at once; the ones taken wait for the writer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while writes.iter().filter(|w| w.is_finished()).count() < EXCESS {
        assert!(std::time::Instant::now() < deadline, "the excess was not refused");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (answered, waiting): (Vec<_>, Vec<_>) = writes.into_iter().partition(|w| w.is_finished());
    assert_eq!(
        answered.len(),
        EXCESS,
        "only the excess is answered before the writer runs"
    );
    for refused in answered {
        let answer = refused.await.expect("task");
        assert!(matches!(answer, Err(StoreError::Busy)), "{answer:?}");
    }
    std::thread::spawn(move || writer.run());
    for write in waiting {
        write.await.expect("task").expect("a write the queue took is committed");
    }
    assert_eq!(store.depth().await.expect("depth"), WRITE_QUEUE_MAX);
    store
        .enqueue(conformance::message(b"after", 5), None)
        .await
        .expect("room again");
}
