//! DKIM keys as stored: per signing domain and selector, RSA or Ed25519,
//! with the DNS TXT record to publish.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    /// rsa-sha256, 2048-bit keys.
    Rsa,
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
}

/// One DKIM key. The private key is DER (PKCS#1 for RSA, PKCS#8 for
/// Ed25519), base64 in the store, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeyRecord {
    pub domain: String,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    pub private_key: String,
    /// The `p=` value of the TXT record.
    pub public_key: String,
    pub created_ms: u64,
    /// Signing with it now. An inactive key's selector may stay published.
    pub active: bool,
}

impl std::fmt::Debug for DkimKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKeyRecord")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("active", &self.active)
            .finish()
    }
}

impl DkimKeyRecord {
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record's text, e.g. `v=DKIM1; k=rsa; p=MIIB…`.
    pub fn txt_value(&self) -> String {
        let k = match self.algorithm {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        };
        format!("v=DKIM1; k={k}; p={}", self.public_key)
    }

    /// The record as a zone-file line, the text split into strings of at
    /// most 255 bytes (RFC 1035 character-strings; RFC 6376 §3.6.2.2).
    pub fn zone_line(&self) -> String {
        let text = self.txt_value();
        let parts: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!("{}. IN TXT ( {} )", self.dns_name(), parts.join(" "))
    }
}

/// Selectors and domains are DNS labels.
pub fn valid_selector(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !s.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_records_are_split_at_255_bytes() {
        let key = DkimKeyRecord {
            domain: "example.edu".into(),
            selector: "s2026".into(),
            algorithm: DkimAlgorithm::Rsa,
            private_key: String::new(),
            public_key: "A".repeat(392),
            created_ms: 0,
            active: true,
        };
        let line = key.zone_line();
        assert!(line.starts_with("s2026._domainkey.example.edu. IN TXT ( \"v=DKIM1; k=rsa; p=AAA"));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings.concat(), key.txt_value());
        assert!(!format!("{key:?}").contains("AAAA"));
    }
}
