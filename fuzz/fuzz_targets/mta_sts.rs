//! MTA-STS policies (`ferry_core::mta_sts`), as any HTTPS server on the
//! Internet may serve them.
//!
//! Checked: no panic; a policy taken has a mode, a max_age of at most a
//! year, mx patterns (unless its mode is none) that are lower case with no
//! trailing dot, each made of non-empty labels, a wildcard only as the
//! whole first label; a pattern without a wildcard allows its own name, and
//! no pattern allows an empty name.

#![no_main]

use ferry_core::mta_sts::{MAX_AGE_SECS, Mode, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = Policy::parse(data) else { return };
    assert!(policy.max_age_secs <= MAX_AGE_SECS);
    assert!(policy.mode == Mode::None || !policy.mx.is_empty());
    for pattern in &policy.mx {
        assert!(!pattern.ends_with('.') && !pattern.bytes().any(|b| b.is_ascii_uppercase()), "{pattern:?}");
        let name = pattern.strip_prefix("*.").unwrap_or(pattern);
        assert!(!name.contains('*') && name.split('.').all(|l| !l.is_empty()), "{pattern:?}");
        if !pattern.starts_with("*.") {
            assert!(policy.allows(pattern), "{pattern:?}");
        }
    }
    assert!(!policy.allows(""));
});
