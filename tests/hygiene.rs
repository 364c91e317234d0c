//! Message hygiene end to end: DKIM signatures checked by independent
//! verifiers against the test's own DNS, the bulk-mail rule, and real
//! clamd and rspamd scanners.

use std::process::Command;

use ferry_testkit::client::Smtp;
use ferry_testkit::servers::{Clamd, Dns, EICAR, Rspamd};
use ferry_testkit::{DOMAIN, Ferry, SENDER, USER};

fn send(ferry: &Ferry, rcpts: &[&str], content: &str) -> String {
    let mut smtp = Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    smtp.send_message(SENDER, rcpts, content.as_bytes())
}

/// dnsmasq options publishing every DKIM key `ferry dkim list --records` shows.
fn dkim_records(ferry: &Ferry) -> Vec<String> {
    let listing = ferry.cli_ok(&["dkim", "list", "--records"]);
    listing
        .lines()
        .filter_map(|l| l.trim().split_once(". IN TXT ( "))
        .map(|(name, rest)| {
            let strings: Vec<&str> = rest.split('"').skip(1).step_by(2).collect();
            format!("--txt-record={name},{}", strings.join(","))
        })
        .collect()
}

#[test]
fn dkim_signatures_verify_independently_and_pass_dmarc() {
    let mut ferry = Ferry::prepare(&[("dkim.relay_domain", "relay.test")]);
    let generated = ferry.cli_ok(&["dkim", "generate", DOMAIN, "--selector", "r2026", "--algorithm", "rsa"]);
    assert!(
        generated.contains("r2026._domainkey.acme.test. IN TXT ( \"v=DKIM1; k=rsa; p="),
        "{generated}"
    );
    ferry.cli_ok(&[
        "dkim",
        "generate",
        DOMAIN,
        "--selector",
        "e2026",
        "--algorithm",
        "ed25519",
    ]);
    ferry.cli_ok(&[
        "dkim",
        "generate",
        "relay.test",
        "--selector",
        "relay",
        "--algorithm",
        "ed25519",
    ]);
    let mut records = dkim_records(&ferry);
    assert_eq!(records.len(), 3, "{records:?}");
    records.push(format!("--txt-record=_dmarc.{DOMAIN},v=DMARC1; p=reject; adkim=r"));
    let dns = Dns::start(&records);
    ferry.launch();
    let content =
        format!("From: Billing <{SENDER}>\r\nTo: a@example.net\r\nSubject: signed\r\n\r\nHello, signed world.\r\n");
    assert!(send(&ferry, &["a@example.net"], &content).starts_with("250"));
    let (_, eml) = ferry.wait_captured(1).remove(0);
    let text = String::from_utf8_lossy(&eml);
    assert!(
        text.starts_with("DKIM-Signature:"),
        "signed once, in front of every header the relay added:\n{text}"
    );
    let received = text.find("\r\nReceived:").expect("Received");
    assert!(text[..received].matches("DKIM-Signature:").count() == 3);
    let file = ferry.dir.path().join("signed.eml");
    std::fs::write(&file, &eml).expect("write");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/dkim_check.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--dns", &dns.address()])
        .arg("--file")
        .arg(&file)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sigs = result["signatures"].as_array().expect("signatures");
    let seen: Vec<(String, String, bool)> = sigs
        .iter()
        .map(|s| {
            (
                s["domain"].as_str().unwrap_or("").into(),
                s["algorithm"].as_str().unwrap_or("").into(),
                s["valid"] == true,
            )
        })
        .collect();
    for (domain, algorithm) in [
        (DOMAIN, "rsa-sha256"),
        (DOMAIN, "ed25519-sha256"),
        ("relay.test", "ed25519-sha256"),
    ] {
        assert!(
            seen.contains(&(domain.into(), algorithm.into(), true)),
            "{domain} {algorithm} must verify: {result}"
        );
    }
    assert!(
        result["tampered"]
            .as_array()
            .expect("tampered")
            .iter()
            .all(|s| s["valid"] == false),
        "{result}"
    );
    let dmarc = result["dmarc"].as_str().unwrap_or("");
    assert!(dmarc.contains("dmarc=pass"), "{dmarc}");
}

#[test]
fn dkim_keys_rotate_by_selector() {
    let ferry = Ferry::prepare(&[]);
    ferry.cli_ok(&[
        "dkim",
        "generate",
        DOMAIN,
        "--selector",
        "old",
        "--algorithm",
        "ed25519",
    ]);
    let second = ferry.cli_ok(&[
        "dkim",
        "generate",
        DOMAIN,
        "--selector",
        "new",
        "--algorithm",
        "ed25519",
    ]);
    assert!(second.contains("not active"), "{second}");
    let activated = ferry.cli_ok(&["dkim", "activate", DOMAIN, "--selector", "new"]);
    assert!(
        activated.contains("old._domainkey.acme.test stops signing"),
        "{activated}"
    );
    let listing = ferry.cli_ok(&["dkim", "list"]);
    assert!(
        listing.contains("new._domainkey.acme.test\tEd25519\tactive"),
        "{listing}"
    );
    assert!(
        listing.contains("old._domainkey.acme.test\tEd25519\tinactive"),
        "{listing}"
    );
}

#[test]
fn bulk_mail_needs_one_click_unsubscribe() {
    let ferry = Ferry::start(&[]);
    let list = format!("From: {SENDER}\r\nList-Id: <news.acme.test>\r\nSubject: newsletter\r\n\r\nHello.\r\n");
    let refused = send(&ferry, &["a@example.net"], &list);
    assert!(
        refused.starts_with("550 5.7.1") && refused.contains("List-Unsubscribe"),
        "{refused}"
    );
    let with = format!(
        "From: {SENDER}\r\nList-Id: <news.acme.test>\r\nList-Unsubscribe: <https://acme.test/u/1>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nSubject: newsletter\r\n\r\nHello.\r\n"
    );
    assert!(send(&ferry, &["a@example.net"], &with).starts_with("250"));
}

fn with_attachment(subject: &str, attachment: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    format!(
        "From: {SENDER}\r\nTo: a@example.net\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"file.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
    )
}

#[test]
fn viruses_and_spam_are_refused_and_clean_mail_passes() {
    let clamd = Clamd::start();
    let rspamd = Rspamd::start();
    let ferry = Ferry::start(&[("hygiene.clamd", &clamd.address), ("hygiene.rspamd", &rspamd.url)]);
    let virus = send(
        &ferry,
        &["a@example.net"],
        &with_attachment("invoice", EICAR.as_bytes()),
    );
    assert!(
        virus.starts_with("550 5.7.1") && virus.contains("Eicar-Test-Signature"),
        "{virus}"
    );
    let gtube = format!(
        "From: {SENDER}\r\nTo: a@example.net\r\nSubject: offer\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"
    );
    let spam = send(&ferry, &["a@example.net"], &gtube);
    assert!(spam.starts_with("550 5.7.1") && spam.contains("spam"), "{spam}");
    let clean = send(
        &ferry,
        &["a@example.net"],
        &with_attachment("report", b"quarterly numbers"),
    );
    assert!(clean.starts_with("250 2.0.0"), "{clean}");
    let captured = ferry.wait_captured(1);
    assert_eq!(captured.len(), 1, "only the clean message was spooled");
    let text = String::from_utf8_lossy(&captured[0].1);
    assert!(
        text.contains("\r\nX-Spam-Score: ") && text.contains("Subject: report"),
        "{text}"
    );
}

#[test]
fn a_stopped_scanner_defers_when_failing_closed_and_passes_when_open() {
    let clamd = Clamd::start();
    let address = clamd.address.clone();
    drop(clamd);
    let closed = Ferry::start(&[("hygiene.clamd", &address)]);
    let content = with_attachment("while clamd is down", b"harmless");
    let reply = send(&closed, &["a@example.net"], &content);
    assert!(reply.starts_with("451 4.7.0"), "{reply}");
    closed.wait_for_log("scanner unavailable: deferring the message (fail closed)", "clamd");
    let open = Ferry::start(&[("hygiene.clamd", &address), ("hygiene.on_scanner_failure", "open")]);
    let reply = send(&open, &["a@example.net"], &content);
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    open.wait_for_log("scanner unavailable: accepting unscanned (fail open)", "clamd");
}

#[test]
fn spf_is_checked_at_onboarding() {
    let dns = Dns::start(&[
        format!("--txt-record={DOMAIN},v=spf1 ip4:127.0.0.1 -all"),
        "--txt-record=other.test,v=spf1 ip4:192.0.2.1 -all".to_string(),
    ]);
    let resolver = dns.address();
    let settings = [
        ("delivery.resolver", resolver.as_str()),
        ("spf.relay_addresses", "127.0.0.1"),
        ("spf.onboarding", "refuse"),
    ];
    let ferry = Ferry::prepare(&settings);
    let passing = ferry.cli_ok(&["app", "check-spf", USER]);
    assert!(passing.contains("spf acme.test for 127.0.0.1: pass"), "{passing}");
    ferry.cli_ok(&["tenant", "add", "other", "--domain", "other.test"]);
    let out = ferry.cli(&[
        "app",
        "add",
        "outsider",
        "--tenant",
        "other",
        "--from",
        "x@other.test",
        "--allow",
        "127.0.0.1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stdout}{stderr}");
    assert!(
        stdout.contains("spf other.test for 127.0.0.1: fail") && stderr.contains("does not authorise the relay"),
        "{stdout}{stderr}"
    );
    assert!(!ferry.cli_ok(&["app", "list"]).contains("outsider"), "nothing stored");
}
