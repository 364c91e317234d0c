//! What the fuzz targets share: the fixed tenant and application that the
//! policy checks judge fuzzed input against, and a check of SMTP replies.

use ferry_core::onboarding::{self, NewApp, NewTenant};
use ferry_core::{AppLimits, Application, Tenant};

/// The moment the fixtures are made at: 2026-01-01T00:00:00Z.
pub const NOW_MS: u64 = 1_767_225_600_000;

/// Tenant `example`, owning `example.test`.
pub fn tenant() -> Tenant {
    let new = NewTenant {
        name: "example".into(),
        domains: vec!["example.test".into()],
        subdomains_only: false,
        contact: None,
    };
    onboarding::tenant(new, NOW_MS).expect("the fixture tenant is valid")
}

/// Application `app` of [`tenant`]: sends as `app@example.test`, may put
/// `news@example.test` in the header From, from anywhere.
pub fn application(tenant: &Tenant) -> Application {
    let new = NewApp {
        username: "app".into(),
        envelope_from: vec!["app@example.test".into()],
        header_from: vec!["app@example.test".into(), "news@example.test".into()],
        allowed_networks: vec!["0.0.0.0/0".into(), "::/0".into()],
        expires: None,
        limits: AppLimits::default(),
        bulk_rules: true,
    };
    let today = ferry_core::clock::utc_date(NOW_MS);
    onboarding::application(new, tenant, "$argon2id$fixture".into(), today, NOW_MS)
        .expect("the fixture application is valid")
}

/// Checks that `out`, one write of an SMTP server, is whole replies: lines
/// of a 3-digit code from 2xx to 5xx, `-` or space, printable text, CRLF,
/// each multi-line reply ending in the same write with one code throughout.
pub fn assert_replies(out: &[u8]) {
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "output not CRLF-terminated: {out:?}"
    );
    let mut open: Option<&[u8]> = None;
    for line in out.split_inclusive(|&b| b == b'\n') {
        let text = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("line not ending in CRLF: {line:?}"));
        assert!(
            !text.contains(&b'\r') && !text.contains(&b'\n'),
            "CR or LF inside a reply: {line:?}"
        );
        assert!(text.len() >= 4, "reply line too short: {line:?}");
        let code = &text[..3];
        assert!(
            matches!(code[0], b'2'..=b'5') && code[1..].iter().all(u8::is_ascii_digit),
            "bad reply code: {line:?}"
        );
        assert!(matches!(text[3], b' ' | b'-'), "bad separator: {line:?}");
        assert!(
            text[4..].iter().all(|&b| b >= 0x20 && b != 0x7f),
            "control byte in reply text: {line:?}"
        );
        if let Some(first) = open {
            assert_eq!(first, code, "multi-line reply changed its code: {out:?}");
        }
        open = (text[3] == b'-').then_some(code);
    }
    assert!(open.is_none(), "multi-line reply cut short: {out:?}");
}
