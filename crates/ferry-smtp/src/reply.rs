//! SMTP replies: a code, an RFC 3463 enhanced status code and a human reason.

use std::fmt;

/// One SMTP reply. Every reply Ferry sends after the greeting carries an
/// enhanced status code (RFC 3463, RFC 2034).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `class.subject.detail`, e.g. `5.7.8`.
    pub enhanced: &'static str,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// A 421 reply tells the client the server is closing the channel
    /// (RFC 5321 §3.8), so the session closes after sending it.
    pub fn closes_session(&self) -> bool {
        self.code == 421
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form (one line, CRLF-terminated) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Reason text comes partly from configuration and policy: keep it on one line.
        let text: String = self
            .text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out.extend_from_slice(format!("{} {} {}\r\n", self.code, self.enhanced, text).as_bytes());
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

/// Appends a multi-line reply (`250-a`, `250-b`, `250 c`) to `out`.
pub(crate) fn write_multiline(out: &mut Vec<u8>, code: u16, lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
}
