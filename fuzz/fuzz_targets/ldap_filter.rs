//! The LDAP search filters of directory sign-in
//! (`ferry_relay::directory::{user_filter, member_filter}`): a username or
//! a DN escaped into a filter (RFC 4515).
//!
//! Checked: the escaped value has no unescaped `(`, `)`, `*`, `\` or NUL,
//! every `\` starts two hex digits, the filter is the template around the
//! escaped value, and unescaping gives the input back.

#![no_main]

use ferry_relay::directory::{member_filter, user_filter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(username) = std::str::from_utf8(data) else {
        return;
    };
    // What sign-in refuses before any search; it must never panic either.
    let _ = ferry_core::directory::check_input(username, "password", 256);

    let filter = user_filter("(uid={username})", username);
    let escaped = filter
        .strip_prefix("(uid=")
        .and_then(|f| f.strip_suffix(')'))
        .expect("the template around the value");
    assert_escaped(escaped);
    assert_eq!(unescape(escaped), data, "unescaping {escaped:?}");

    let template = "(&(objectClass=person)(|(uid={username})(mail={username})))";
    assert_eq!(
        user_filter(template, username),
        format!("(&(objectClass=person)(|(uid={escaped})(mail={escaped})))")
    );
    assert_eq!(member_filter("member", username), format!("(member={escaped})"));
});

fn assert_escaped(value: &str) {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = bytes.get(i + 1..i + 3).expect("two hex digits after \\");
                assert!(hex.iter().all(u8::is_ascii_hexdigit), "\\ before {hex:?}");
                i += 3;
            }
            b @ (b'(' | b')' | b'*' | 0) => panic!("unescaped {:?} in {value:?}", b as char),
            _ => i += 1,
        }
    }
}

/// RFC 4515's `\XX` back to the byte; everything else as it is.
fn unescape(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex is ASCII");
            out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
