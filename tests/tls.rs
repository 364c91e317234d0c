//! TLS policy seen from real clients: TLS 1.0/1.1 and CBC or static-RSA
//! suites are refused; AUTH is never offered or accepted in plaintext.

use std::process::{Command, Stdio};

use ferry_testkit::Ferry;
use ferry_testkit::client::Smtp;

/// Runs `openssl s_client` against the implicit-TLS port; true if the handshake completed.
fn handshake(ferry: &Ferry, args: &[&str]) -> (bool, String) {
    let addr = ferry.submissions.expect("submissions").to_string();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr, "-brief"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("CONNECTION ESTABLISHED") || text.contains("220 "), text)
}

#[test]
fn modern_tls_is_accepted_and_old_or_weak_tls_is_refused() {
    let ferry = Ferry::start(&[]);
    let (ok, text) = handshake(&ferry, &["-tls1_2"]);
    assert!(ok, "TLS 1.2 should work: {text}");
    let (ok, text) = handshake(&ferry, &["-tls1_3"]);
    assert!(ok, "TLS 1.3 should work: {text}");
    // SECLEVEL=0 lets the client itself offer what Debian's OpenSSL would not.
    for (what, args) in [
        ("TLS 1.0", vec!["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
        ("TLS 1.1", vec!["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
        (
            "CBC suites",
            vec![
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256",
            ],
        ),
        (
            "static RSA key exchange",
            vec!["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA"],
        ),
    ] {
        let (ok, text) = handshake(&ferry, &args);
        assert!(!ok, "{what} must be refused: {text}");
    }
}

#[test]
fn auth_is_neither_offered_nor_accepted_before_tls() {
    let ferry = Ferry::start(&[]);
    for addr in [ferry.smtp, ferry.submission] {
        let (mut smtp, greeting) = Smtp::connect(addr.expect("listener"));
        assert!(greeting.starts_with("220 relay.test ESMTP"), "{greeting}");
        let ehlo = smtp.cmd("EHLO client.test");
        assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
        assert!(
            smtp.auth_plain(ferry_testkit::USER, &ferry.password)
                .starts_with("538 5.7.11")
        );
        let mail = smtp.cmd("MAIL FROM:<billing@acme.test>");
        assert!(mail.starts_with("530 5.7.0"), "{mail}");
    }
}
