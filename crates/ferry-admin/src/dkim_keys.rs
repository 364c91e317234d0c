//! DKIM keys Ferry generates (RSA-2048 or Ed25519) or imports from PEM,
//! stored as DER in base64, with the public key in the form the TXT record
//! publishes.

use base64::Engine;
use ferry_core::dkim::{DkimAlgorithm, DkimKeyRecord};

/// A new key pair as a record (inactive until activated).
pub fn generate(domain: &str, selector: &str, algorithm: DkimAlgorithm, now_ms: u64) -> Result<DkimKeyRecord, String> {
    let pair = match algorithm {
        DkimAlgorithm::Rsa => mail_auth::dkim::generate::DkimKeyPair::generate_rsa(2048),
        DkimAlgorithm::Ed25519 => mail_auth::dkim::generate::DkimKeyPair::generate_ed25519(),
    }
    .map_err(|e| format!("key generation failed: {e}"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let public_key = match algorithm {
        // The TXT record carries the SubjectPublicKeyInfo for RSA.
        DkimAlgorithm::Rsa => b64.encode(rsa_spki(pair.public_key())),
        DkimAlgorithm::Ed25519 => b64.encode(pair.public_key()),
    };
    Ok(DkimKeyRecord {
        domain: domain.to_ascii_lowercase(),
        selector: selector.to_string(),
        algorithm,
        private_key: b64.encode(pair.private_key()),
        public_key,
        created_ms: now_ms,
        active: false,
    })
}

/// A key pair read from a PEM file — RSA (PKCS#1 or PKCS#8) or Ed25519
/// (PKCS#8), the forms OpenSSL and `opendkim-genkey` write — as a record
/// (inactive until the caller decides). The key is loaded as the signer
/// will load it, so a key that imports signs.
pub fn import(domain: &str, selector: &str, pem: &[u8], now_ms: u64) -> Result<DkimKeyRecord, String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))?;
    let rsa = |der: &[u8]| {
        aws_lc_rs::rsa::KeyPair::from_der(der)
            .or_else(|_| aws_lc_rs::rsa::KeyPair::from_pkcs8(der))
            .map(|pair| rsa_spki(aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref()))
    };
    let (algorithm, der, public) = match &key {
        PrivateKeyDer::Pkcs1(k) => {
            let public = rsa(k.secret_pkcs1_der()).map_err(|e| format!("not a usable RSA key: {e}"))?;
            (DkimAlgorithm::Rsa, k.secret_pkcs1_der(), public)
        }
        PrivateKeyDer::Pkcs8(k) => {
            let der = k.secret_pkcs8_der();
            match mail_auth::common::crypto::Ed25519Key::from_pkcs8_maybe_unchecked_der(der) {
                Ok(pair) => (DkimAlgorithm::Ed25519, der, pair.public_key()),
                Err(_) => {
                    let public = rsa(der).map_err(|e| format!("neither an Ed25519 nor a usable RSA key: {e}"))?;
                    (DkimAlgorithm::Rsa, der, public)
                }
            }
        }
        _ => return Err("an EC key: DKIM signs with RSA or Ed25519".into()),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(DkimKeyRecord {
        domain: domain.to_ascii_lowercase(),
        selector: selector.to_string(),
        algorithm,
        private_key: b64.encode(der),
        public_key: b64.encode(public),
        created_ms: now_ms,
        active: false,
    })
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (DER), the form
/// DKIM verifiers expect in `p=` (RFC 6376 §3.6.1).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x00];
    bit_string.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(der_tlv(0x03, &bit_string));
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n").into_bytes()
    }

    #[test]
    fn imports_what_signs_and_refuses_the_rest() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let ed = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519");
        let key = import("Example.EDU", "e1", &pem("PRIVATE KEY", ed.as_ref()), 7).expect("ed25519 imports");
        assert_eq!(
            (key.algorithm, key.domain.as_str(), key.active),
            (DkimAlgorithm::Ed25519, "example.edu", false)
        );
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).expect("der");
        let key = import("example.edu", "r1", &pem("PRIVATE KEY", der.as_ref()), 7).expect("rsa imports");
        assert_eq!(key.algorithm, DkimAlgorithm::Rsa);
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .expect("ec");
        let refused = import("example.edu", "x", &pem("PRIVATE KEY", ec.as_ref()), 7).expect_err("EC");
        assert!(refused.contains("neither an Ed25519 nor a usable RSA key"), "{refused}");
        let garbage = import("example.edu", "x", b"hello", 7).expect_err("garbage");
        assert!(garbage.contains("not a PEM private key"), "{garbage}");
    }

    #[test]
    fn rsa_public_keys_are_spki() {
        let key = generate("example.edu", "r1", DkimAlgorithm::Rsa, 0).expect("rsa");
        let der = base64::engine::general_purpose::STANDARD
            .decode(&key.public_key)
            .expect("b64");
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x22], "a 2048-bit SPKI is 294 bytes");
    }
}
