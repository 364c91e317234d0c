//! SASL PLAIN (RFC 4616) and LOGIN decoding for SMTP AUTH (RFC 4954).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Credentials presented by the client. The password never leaves this
/// struct in logs: its Debug form is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// Not valid base64.
    Base64,
    /// Decoded, but not `authzid NUL authcid NUL passwd` (or not UTF-8).
    Malformed,
}

pub fn decode_base64(line: &str) -> Result<Vec<u8>, SaslError> {
    STANDARD.decode(line.trim()).map_err(|_| SaslError::Base64)
}

pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a PLAIN response. An authorisation identity different from the
/// authentication identity is refused: an application acts only as itself.
pub fn decode_plain(response: &str) -> Result<Credentials, SaslError> {
    let raw = if response.trim() == "=" {
        Vec::new()
    } else {
        decode_base64(response)?
    };
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    let (authz, username, password) = (text(authz)?, text(user)?, text(pass)?);
    if username.is_empty() || (!authz.is_empty() && authz != username) {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials { username, password })
}

/// Decodes one LOGIN step (a base64 username or password).
pub fn decode_login_field(response: &str) -> Result<String, SaslError> {
    String::from_utf8(decode_base64(response)?).map_err(|_| SaslError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decodes_and_refuses_foreign_authzid() {
        let ok = encode_base64(b"\0app\0secret");
        assert_eq!(
            decode_plain(&ok),
            Ok(Credentials {
                username: "app".into(),
                password: "secret".into()
            })
        );
        assert_eq!(decode_plain(&encode_base64(b"app\0app\0s")).unwrap().username, "app");
        assert_eq!(decode_plain(&encode_base64(b"boss\0app\0s")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&encode_base64(b"app\0s")), Err(SaslError::Malformed));
        assert_eq!(decode_plain("!!"), Err(SaslError::Base64));
    }
}
