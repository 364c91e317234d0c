//! The return path Ferry owns (VERP): for a tenant with a bounce domain,
//! each recipient of each message is sent with its own envelope-From,
//! `b-<queue id>-<index>-<key><mac>@<bounce domain>`, so a report that
//! comes back later names the message and the recipient, and one nobody
//! was sent cannot be made up: the MAC (HMAC-SHA256 over the rest of the
//! address, 64 bits) needs a key only the store holds. Keys are rotated by
//! adding one; addresses made with an older key still verify while it is
//! kept. The address is lower case throughout (some servers fold case)
//! and at most 60 octets before the `@` (RFC 5321 allows 64).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::message::QueueId;

/// A key that signs return paths.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceKey {
    /// One character, `0`-`9` or `a`-`z`: which key signed an address.
    pub id: char,
    /// 32 random bytes, hex.
    pub secret: String,
    pub created_ms: u64,
}

impl std::fmt::Debug for BounceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BounceKey")
            .field("id", &self.id)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

impl BounceKey {
    /// A new key after `keys` (the next id, wrapping after `z`).
    pub fn generate(keys: &[BounceKey], now_ms: u64) -> BounceKey {
        const IDS: &str = "0123456789abcdefghijklmnopqrstuvwxyz";
        let next = current(keys)
            .and_then(|k| IDS.find(k.id))
            .map_or(0, |i| (i + 1) % IDS.len());
        let secret: [u8; 32] = rand::random();
        BounceKey {
            id: IDS.as_bytes()[next] as char,
            secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
            created_ms: now_ms,
        }
    }

    fn mac(&self, signed: &str) -> Option<String> {
        let secret = decode_hex(&self.secret)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).ok()?;
        mac.update(signed.as_bytes());
        let tag = mac.finalize().into_bytes();
        Some(tag[..8].iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The key that signs new addresses: the newest.
pub fn current(keys: &[BounceKey]) -> Option<&BounceKey> {
    keys.iter().max_by_key(|k| k.created_ms)
}

/// The envelope-From for recipient `index` of message `id`.
pub fn address(key: &BounceKey, id: &QueueId, index: usize, domain: &str) -> Option<String> {
    let signed = format!(
        "b-{}-{index}@{}",
        id.as_str().to_ascii_lowercase(),
        domain.to_ascii_lowercase()
    );
    let mac = key.mac(&signed)?;
    let (local, domain) = signed.split_once('@')?;
    Some(format!("{local}-{}{mac}@{domain}", key.id))
}

/// What a return path names, once its MAC checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub queue_id: QueueId,
    pub index: usize,
    /// Lower case.
    pub domain: String,
}

/// Reads and checks a return path against `keys`; `None` for anything
/// that is not one, or whose MAC no key made.
pub fn verify(keys: &[BounceKey], address: &str) -> Option<Verified> {
    let address = address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase();
    let (local, domain) = address.rsplit_once('@')?;
    let mut parts = local.strip_prefix("b-")?.split('-');
    let (id, index, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || index.len() > 4 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let queue_id = QueueId::parse(id)?;
    let mut sig = signature.chars();
    let key_id = sig.next()?;
    let mac = sig.as_str();
    let key = keys.iter().find(|k| k.id == key_id)?;
    let signed = format!("b-{id}-{index}@{domain}");
    let expected = key.mac(&signed)?;
    if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
        return None;
    }
    Some(Verified {
        queue_id,
        index: index.parse().ok()?,
        domain: domain.to_string(),
    })
}

impl Sent {
    /// The record of `message`, if it goes out with Ferry's return path.
    pub fn of(message: &crate::QueuedMessage) -> Option<Sent> {
        (!message.return_paths.is_empty()).then(|| Sent {
            queue_id: message.id.clone(),
            tenant: message.tenant.clone(),
            app: message.app.clone(),
            mail_from: message.mail_from.clone(),
            recipients: message.recipients.clone(),
            received_ms: message.received_ms,
        })
    }
}

/// What the inbound listener needs of a message sent with Ferry's return
/// path, kept (with the samples' retention) after the message has left the
/// queue: whose it was, and to whom it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub queue_id: QueueId,
    pub tenant: String,
    pub app: String,
    /// The application's own envelope-From (reports are forwarded there).
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub received_ms: u64,
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<BounceKey> {
        let first = BounceKey::generate(&[], 1);
        let second = BounceKey::generate(std::slice::from_ref(&first), 2);
        vec![first, second]
    }

    #[test]
    fn an_address_verifies_back_to_its_message_and_recipient() {
        let keys = keys();
        let id = QueueId::generate();
        let key = current(&keys).unwrap_or_else(|| panic!("a key"));
        assert_eq!(key.id, '1', "the newest key signs");
        let Some(addr) = address(key, &id, 7, "Bounces.HR.example.edu") else {
            panic!("an address")
        };
        let local = addr.split('@').next().unwrap_or_default();
        assert!(local.len() <= 64, "{addr}");
        assert_eq!(addr, addr.to_ascii_lowercase());
        assert!(addr.ends_with("@bounces.hr.example.edu"));
        let verified = verify(&keys, &format!("<{}>", addr.to_ascii_uppercase()));
        assert_eq!(
            verified,
            Some(Verified {
                queue_id: id.clone(),
                index: 7,
                domain: "bounces.hr.example.edu".into()
            })
        );
        // Made with the older key: still good while it is kept.
        let old = address(&keys[0], &id, 0, "b.example").unwrap_or_default();
        assert!(verify(&keys, &old).is_some());
        assert!(verify(&keys[1..], &old).is_none(), "its key is gone");
    }

    #[test]
    fn forged_and_altered_addresses_do_not_verify() {
        let keys = keys();
        let id = QueueId::generate();
        let addr = address(&keys[1], &id, 3, "b.example").unwrap_or_default();
        let (local, _) = addr.split_once('@').unwrap_or_default();
        let other_domain = format!("{local}@c.example");
        let other_index = addr.replacen("-3-", "-4-", 1);
        let mut flipped = addr.clone().into_bytes();
        let at = local.len() - 1;
        flipped[at] = if flipped[at] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        for bad in [
            other_domain.as_str(),
            other_index.as_str(),
            flipped.as_str(),
            "b-abc-1-0deadbeef@b.example",
            "postmaster@b.example",
            "",
            "b---@",
        ] {
            assert_eq!(verify(&keys, bad), None, "{bad}");
        }
    }

    #[test]
    fn key_ids_advance_and_secrets_stay_out_of_logs() {
        let mut keys = vec![BounceKey::generate(&[], 1)];
        keys[0].id = 'z';
        let next = BounceKey::generate(&keys, 2);
        assert_eq!(next.id, '0', "wraps after z");
        assert_ne!(next.secret, keys[0].secret);
        assert!(!format!("{next:?}").contains(&next.secret));
    }
}
