//! DKIM keys Ferry generates: RSA-2048 or Ed25519, stored as DER in
//! base64, with the public key in the form the TXT record publishes.

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

    #[test]
    fn rsa_public_keys_are_spki() {
        let key = generate("example.edu", "r1", DkimAlgorithm::Rsa, 0).expect("rsa");
        let der = base64::engine::general_purpose::STANDARD
            .decode(&key.public_key)
            .expect("b64");
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x22], "a 2048-bit SPKI is 294 bytes");
    }
}
