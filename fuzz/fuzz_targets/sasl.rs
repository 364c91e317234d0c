//! SASL PLAIN and LOGIN decoding (`ferry_smtp::sasl`).
//!
//! Two views of each input: as a client's response line (it must decode
//! or be refused, never panic, and what decodes must encode back to the
//! same credentials), and as the decoded bytes themselves, base64-encoded
//! the way a client would, where the answer is checked against a small
//! model of RFC 4616: `[authzid] NUL authcid NUL passwd`, UTF-8, the
//! authzid empty or the authcid.

#![no_main]

use ferry_smtp::sasl::{SaslError, decode_login_field, decode_plain, encode_base64};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(c) = decode_plain(line) {
            let again = format!("\0{}\0{}", c.username, c.password);
            assert_eq!(decode_plain(&encode_base64(again.as_bytes())), Ok(c));
        }
        if let Ok(field) = decode_login_field(line) {
            assert_eq!(decode_login_field(&encode_base64(field.as_bytes())), Ok(field));
        }
    }
    let encoded = encode_base64(data);
    match (decode_plain(&encoded), plain_model(data)) {
        (Ok(c), Some((user, pass))) => assert_eq!((c.username.as_str(), c.password.as_str()), (user, pass)),
        (Err(SaslError::Malformed), None) => {}
        // An empty response may be sent as `=` instead (RFC 4954 §4).
        (Err(SaslError::Malformed), Some(_)) | (Ok(_), None) | (Err(SaslError::Base64), _) => {
            panic!("PLAIN of {data:?}: {:?}", decode_plain(&encoded))
        }
    }
    assert_eq!(
        decode_login_field(&encoded).ok().as_deref(),
        std::str::from_utf8(data).ok()
    );
});

/// RFC 4616 as Ferry takes it: the username and password, or None.
fn plain_model(raw: &[u8]) -> Option<(&str, &str)> {
    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    let [authz, user, pass] = parts.as_slice() else {
        return None;
    };
    let (authz, user, pass) = (
        std::str::from_utf8(authz).ok()?,
        std::str::from_utf8(user).ok()?,
        std::str::from_utf8(pass).ok()?,
    );
    (!user.is_empty() && (authz.is_empty() || authz == user)).then_some((user, pass))
}
