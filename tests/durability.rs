//! A message acknowledged with 250 is never lost: clients send while the
//! relay is killed with SIGKILL at a random moment; after a restart every
//! acknowledged message is captured, and exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_testkit::client::Smtp;
use ferry_testkit::{Ferry, SENDER, USER, wait_for};

const SENDERS: usize = 4;
/// One session each, up to the per-session limit of 100 messages.
const MESSAGES_PER_SENDER: usize = 100;

/// Sends until an error (the relay died) or the bound; returns the acknowledged ids.
/// The test client panics on a broken connection; here that is the expected end.
fn send_until_failure(ferry: &Ferry, sender: usize, acked_total: &AtomicUsize) -> Vec<String> {
    let mut acked = Vec::new();
    let Ok(mut smtp) =
        std::panic::catch_unwind(|| Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der))
    else {
        return acked;
    };
    if !smtp.auth_plain(USER, &ferry.password).starts_with("235") {
        return acked;
    }
    for i in 0..MESSAGES_PER_SENDER {
        let id = format!("durable-{sender}-{i}");
        let content = format!("From: {SENDER}\r\nSubject: {id}\r\n\r\npayload {id}\r\n");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            smtp.send_message(SENDER, &["r@example.net"], content.as_bytes())
        }));
        match result {
            Ok(reply) if reply.starts_with("250 ") => {
                acked.push(id);
                acked_total.fetch_add(1, Ordering::SeqCst);
            }
            _ => break,
        }
    }
    acked
}

#[test]
fn acknowledged_messages_survive_kill_9_exactly_once() {
    let mut ferry = Ferry::start(&[]);
    let kill_after = 5
        + (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()) as usize
            % 150);
    let acked_total = AtomicUsize::new(0);
    let acked: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let ferry_ref = &ferry;
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let (acked, acked_total) = (&acked, &acked_total);
            scope.spawn(move || {
                let mine = send_until_failure(ferry_ref, sender, acked_total);
                acked.lock().expect("lock").extend(mine);
            });
        }
        wait_for("messages to be acknowledged", Duration::from_secs(60), || {
            (acked_total.load(Ordering::SeqCst) >= kill_after).then_some(())
        });
        // SIGKILL while the senders are still going.
        let pid = ferry_ref.pid().expect("running");
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    });
    ferry.kill9();
    let acked = Arc::new(acked.into_inner().expect("lock"));
    assert!(acked.len() >= kill_after, "only {} acknowledged", acked.len());

    ferry.launch();
    let count = |captured: &[(String, Vec<u8>)], id: &str| {
        let needle = format!("Subject: {id}\r\n");
        captured
            .iter()
            .filter(|(_, eml)| eml.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .count()
    };
    let captured = wait_for("every acknowledged message captured", Duration::from_secs(30), || {
        let captured = ferry.captured();
        acked.iter().all(|id| count(&captured, id) >= 1).then_some(captured)
    });
    for id in acked.iter() {
        assert_eq!(count(&captured, id), 1, "{id} captured more than once");
    }
    // Messages that never got a 250 may be there, but never twice.
    for sender in 0..SENDERS {
        for i in 0..MESSAGES_PER_SENDER {
            assert!(count(&captured, &format!("durable-{sender}-{i}")) <= 1);
        }
    }
}
