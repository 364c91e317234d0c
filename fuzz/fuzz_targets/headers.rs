//! A message's header section as intake reads it
//! (`ferry_relay::intake::header_facts`), the checks on what it finds
//! (header From authorised, the RFC 8058 bulk-mail rule), and DKIM signing
//! of the message (`ferry_relay::dkim::DkimSigners`) with a fixed Ed25519
//! key made when the target starts.
//!
//! Checked: no panic; the From domain is lower case; the bulk rule refuses
//! only mail that looks like bulk; a DKIM-Signature is at most one
//! well-formed header (printable ASCII, folded lines, CRLF).

#![no_main]

use std::sync::LazyLock;

use ferry_core::dkim::DkimAlgorithm;
use ferry_core::policy::{check_bulk, check_header_from};
use ferry_core::{Application, Tenant};
use ferry_relay::dkim::DkimSigners;
use ferry_relay::intake::header_facts;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    tenant: Tenant,
    app: Application,
    signers: DkimSigners,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let tenant = ferry_fuzz::tenant();
    let app = ferry_fuzz::application(&tenant);
    let mut key = ferry_admin::dkim_keys::generate("example.test", "fuzz", DkimAlgorithm::Ed25519, ferry_fuzz::NOW_MS)
        .expect("an Ed25519 key");
    key.active = true;
    // The relay's own domain signs every message, so each input is signed.
    let signers = DkimSigners::load(&[key], Some("example.test".into())).expect("the key loads");
    Fixture { tenant, app, signers }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let facts = header_facts(data);
    let _ = check_header_from(&f.app, &f.tenant, &facts.from);
    let domain = facts.from_domain();
    if let Some(d) = &domain {
        assert_eq!(*d, d.to_ascii_lowercase());
    }
    let bulk_looking = facts.bulk.list_id || facts.bulk.precedence_bulk;
    assert!(check_bulk(&facts.bulk, 1, 50).is_ok() || bulk_looking);
    let _ = check_bulk(&facts.bulk, 50, 50);

    let signature = f.signers.sign(data, domain.as_deref());
    assert_signature(&signature);
});

fn assert_signature(header: &[u8]) {
    if header.is_empty() {
        return;
    }
    let text = std::str::from_utf8(header).expect("a DKIM-Signature is ASCII");
    assert!(text.starts_with("DKIM-Signature: "), "{text:?}");
    assert!(text.ends_with("\r\n"), "{text:?}");
    assert_eq!(text.matches("DKIM-Signature:").count(), 1, "{text:?}");
    for (i, line) in text.split_terminator("\r\n").enumerate() {
        assert!(
            line.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
            "{text:?}"
        );
        assert!(
            i == 0 || line.starts_with([' ', '\t']),
            "unfolded line {line:?} in {text:?}"
        );
    }
    assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "{text:?}");
}
