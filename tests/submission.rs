//! Real clients (swaks, Python's smtplib, curl) submit over STARTTLS and
//! implicit TLS; the captured message is what they sent, plus our headers.

use std::process::Command;

use ferry_testkit::{DOMAIN, Ferry, SENDER, USER, strip_added_headers};

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Billing <{SENDER}>\r\nTo: someone@example.net\r\nSubject: {subject}\r\nMessage-ID: <{subject}@{DOMAIN}>\r\nDate: Tue, 24 Nov 2026 05:00:00 +0000\r\n\r\nHello.\r\n.leading dot\r\n\r\nBye.\r\n"
    )
    .into_bytes()
}

fn write_message(ferry: &Ferry, name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = ferry.dir.path().join(name);
    std::fs::write(&path, content).expect("write message");
    path
}

fn captured_with(ferry: &Ferry, subject: &str) -> Vec<u8> {
    ferry.wait_captured(1);
    let needle = format!("Subject: {subject}\r\n");
    ferry_testkit::wait_for(
        "the message in the capture folder",
        std::time::Duration::from_secs(20),
        || {
            ferry
                .captured()
                .into_iter()
                .map(|(_, eml)| eml)
                .find(|eml| eml.windows(needle.len()).any(|w| w == needle.as_bytes()))
        },
    )
}

#[test]
fn swaks_over_starttls_with_auth_plain() {
    let ferry = Ferry::start(&[]);
    let content = message("swaks-starttls");
    let file = write_message(&ferry, "m.eml", &content);
    let port = ferry.submission.expect("submission").port().to_string();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port, "--tls", "--auth", "PLAIN"])
        .args(["--auth-user", USER, "--auth-password", &ferry.password])
        .args(["--from", SENDER, "--to", "someone@example.net", "--data"])
        .arg(&file)
        .output()
        .expect("run swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks failed:\n{transcript}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(transcript.contains("<~  250 2.0.0 Ok: queued as "), "{transcript}");
    let captured = captured_with(&ferry, "swaks-starttls");
    // swaks always sends CRLF before the final dot, even after a CRLF-terminated file.
    let sent = [content.as_slice(), b"\r\n"].concat();
    assert_eq!(strip_added_headers(&captured), sent.as_slice());
    let head = String::from_utf8_lossy(&captured[..captured.len() - sent.len()]).into_owned();
    assert!(head.starts_with("Received: from "), "{head}");
    assert!(
        head.contains("(authenticated as billing)") && head.contains("version=TLS1.3"),
        "{head}"
    );
    assert!(!head.contains(&ferry.password));
}

#[test]
fn swaks_over_implicit_tls_with_auth_login() {
    let ferry = Ferry::start(&[]);
    let port = ferry.submissions.expect("submissions").port().to_string();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port, "--tlsc", "--auth", "LOGIN"])
        .args(["--auth-user", USER, "--auth-password", &ferry.password])
        .args([
            "--from",
            SENDER,
            "--to",
            "someone@example.net",
            "--header",
            "Subject: swaks-implicit",
        ])
        .args(["--header", &format!("From: {SENDER}")])
        .output()
        .expect("run swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    assert!(transcript.contains("235 2.7.0"), "{transcript}");
    captured_with(&ferry, "swaks-implicit");
}

fn smtplib(ferry: &Ferry, mode: &str, mechanism: &str, file: &std::path::Path, count: usize) -> Vec<serde_json::Value> {
    let addr = if mode == "implicit" {
        ferry.submissions
    } else {
        ferry.submission
    }
    .expect("listener");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/smtp_send.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            "--port",
            &addr.port().to_string(),
            "--mode",
            mode,
            "--mechanism",
            mechanism,
        ])
        .arg("--cafile")
        .arg(&ferry.pki.ca)
        .args([
            "--user",
            USER,
            "--password",
            &ferry.password,
            "--sender",
            SENDER,
            "--rcpt",
            "a@example.net",
            "--rcpt",
            "b@example.net",
        ])
        .arg("--file")
        .arg(file)
        .args(["--count", &count.to_string()])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn python_smtplib_over_both_tls_styles() {
    let ferry = Ferry::start(&[]);
    for (mode, mechanism) in [("starttls", "LOGIN"), ("implicit", "PLAIN")] {
        let subject = format!("python-{mode}");
        let content = message(&subject);
        let file = write_message(&ferry, &format!("{mode}.eml"), &content);
        let results = smtplib(&ferry, mode, mechanism, &file, 1);
        assert_eq!(results[0]["code"], 250, "{results:?}");
        assert!(
            results[0]["reply"]
                .as_str()
                .unwrap_or("")
                .starts_with("2.0.0 Ok: queued as"),
            "{results:?}"
        );
        let captured = captured_with(&ferry, &subject);
        assert_eq!(strip_added_headers(&captured), content.as_slice());
    }
}

#[test]
fn curl_over_starttls_and_smtps() {
    let ferry = Ferry::start(&[]);
    for (scheme, addr) in [("smtp", ferry.submission), ("smtps", ferry.submissions)] {
        let subject = format!("curl-{scheme}");
        let content = message(&subject);
        let file = write_message(&ferry, &format!("{scheme}.eml"), &content);
        let url = format!("{scheme}://127.0.0.1:{}", addr.expect("listener").port());
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--url", &url, "--ssl-reqd", "--cacert"])
            .arg(&ferry.pki.ca)
            .args(["--user", &format!("{USER}:{}", ferry.password)])
            .args([
                "--mail-from",
                SENDER,
                "--mail-rcpt",
                "someone@example.net",
                "--upload-file",
            ])
            .arg(&file)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {scheme}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let captured = captured_with(&ferry, &subject);
        assert_eq!(strip_added_headers(&captured), content.as_slice());
    }
}

#[test]
fn message_id_and_date_are_added_when_missing() {
    let ferry = Ferry::start(&[]);
    let mut smtp = ferry_testkit::client::Smtp::submission(ferry.submission.expect("submission"), &ferry.pki.ca_der);
    assert!(smtp.auth_plain(USER, &ferry.password).starts_with("235"));
    let content = format!("From: {SENDER}\r\nSubject: bare\r\n\r\nno id, no date\r\n");
    let reply = smtp.send_message(SENDER, &["x@example.net"], content.as_bytes());
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let captured = String::from_utf8(captured_with(&ferry, "bare")).expect("utf8");
    assert!(
        captured.contains("\r\nMessage-ID: <") && captured.contains("@relay.test>\r\n"),
        "{captured}"
    );
    assert!(captured.contains("\r\nDate: "), "{captured}");
    assert!(captured.ends_with(&content));
}
