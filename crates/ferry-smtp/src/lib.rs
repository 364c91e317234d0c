//! The SMTP server dialogue as a pure state machine: bytes in, replies and
//! actions out. No IO, no runtime: a whole SMTP conversation is a unit test.
//!
//! Layout:
//! - [`session`]: the state machine ([`Session`]), the [`Action`]s it asks its driver for.
//! - `verbs`: the checks of EHLO, STARTTLS, MAIL and RCPT.
//! - [`command`]: one command line parsed into a [`command::Command`].
//! - [`address`]: reverse- and forward-path syntax (RFC 5321, RFC 6531).
//! - [`data`]: DATA framing with strict `<CRLF>.<CRLF>`, BDAT line-ending checks.
//! - [`sasl`]: AUTH PLAIN and LOGIN decoding.
//! - [`reply`]: replies with RFC 3463 enhanced status codes.

pub mod address;
pub mod command;
pub mod data;
pub mod reply;
pub mod sasl;
pub mod session;
mod verbs;

pub use reply::Reply;
pub use sasl::Credentials;
pub use session::{Action, AppLimits, Envelope, MailRequest, Session, SessionConfig, TlsPolicy};
