//! Reports at the inbound bounce address (`ferry_core::feedback`): DSNs,
//! ARF complaints and plain-text bounces, read by `parse`, and any text by
//! `classify`.
//!
//! Checked: no panic; a report has at least one and at most
//! `RECIPIENTS_MAX` items, of one kind, `guessed` exactly when the report
//! is; a delay is Soft, a success has no severity, a hard bounce is a
//! failure; every status is an enhanced code of class 2, 4 or 5 (4 or 5
//! from `classify`); addresses' domains have no upper-case ASCII; what a
//! report holds is at most a small multiple of the input.

#![no_main]

use ferry_core::feedback::{self, Bounce, DsnAction, Feedback, Report, ReportKind, Severity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(report) = feedback::parse(data) {
        check_report(&report);
        // Lossy UTF-8 triples an invalid byte, and a recipient may also be
        // the original recipient: a small multiple, never one per group.
        let held = report_bytes(&report);
        assert!(
            held <= 8 * data.len() + 1024,
            "{held} bytes held from {} of input",
            data.len()
        );
    }
    let text = String::from_utf8_lossy(data);
    if let Some(d) = feedback::classify(&text) {
        if let Some(status) = &d.status {
            assert!(is_status(status) && !status.starts_with('2'), "{status:?}");
        }
    }
});

fn check_report(report: &Report) {
    assert!(!report.items.is_empty() && report.items.len() <= feedback::RECIPIENTS_MAX);
    for item in &report.items {
        match (item, report.kind) {
            (Feedback::Bounce(b), ReportKind::Dsn | ReportKind::Guessed) => check_bounce(b, report.kind),
            (Feedback::Complaint(c), ReportKind::Complaint) => {
                assert_eq!(report.items.len(), 1);
                assert!(!c.feedback_type.is_empty());
                c.recipients.iter().chain(&c.mail_from).for_each(|a| check_address(a));
            }
            _ => panic!("{item:?} in a {:?} report", report.kind),
        }
    }
    let original = &report.original;
    original
        .to
        .iter()
        .chain(&original.return_path)
        .for_each(|a| check_address(a));
}

fn check_bounce(b: &Bounce, kind: ReportKind) {
    assert_eq!(b.guessed, kind == ReportKind::Guessed, "{b:?}");
    match b.action {
        DsnAction::Delayed => assert_eq!(b.severity, Some(Severity::Soft), "{b:?}"),
        DsnAction::Delivered | DsnAction::Relayed | DsnAction::Expanded => {
            assert_eq!((b.severity, b.reason), (None, None), "{b:?}")
        }
        DsnAction::Failed | DsnAction::Unknown => {}
    }
    if let Some(status) = &b.status {
        assert!(is_status(status), "{status:?}");
    }
    b.recipient
        .iter()
        .chain(&b.original_recipient)
        .for_each(|a| check_address(a));
}

fn check_address(address: &str) {
    assert!(!address.is_empty());
    if let Some((_, domain)) = address.rsplit_once('@') {
        assert!(!domain.bytes().any(|c| c.is_ascii_uppercase()), "{address:?}");
    }
}

/// `class.subject.detail`: class 2, 4 or 5, then one to three digits twice.
fn is_status(status: &str) -> bool {
    let mut parts = status.split('.');
    let class_ok = matches!(parts.next(), Some("2" | "4" | "5"));
    let digits =
        |p: Option<&str>| p.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()));
    class_ok && digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// The bytes of text a report holds.
fn report_bytes(report: &Report) -> usize {
    let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let items: usize = report
        .items
        .iter()
        .map(|item| match item {
            Feedback::Bounce(b) => {
                len(&b.recipient)
                    + len(&b.original_recipient)
                    + len(&b.status)
                    + len(&b.diagnostic)
                    + len(&b.remote_mta)
            }
            Feedback::Complaint(c) => {
                c.feedback_type.len()
                    + c.recipients.iter().map(String::len).sum::<usize>()
                    + len(&c.mail_from)
                    + len(&c.reported_domain)
                    + len(&c.arrival)
                    + len(&c.user_agent)
                    + len(&c.version)
            }
        })
        .sum();
    let original = &report.original;
    items
        + len(&report.reporting_mta)
        + len(&report.original_envelope_id)
        + len(&original.return_path)
        + len(&original.message_id)
        + original.to.iter().map(String::len).sum::<usize>()
}
