//! Ferry's domain: organisations' tenants and applications, the sender
//! policy that decides who may send as whom, queue identifiers, and the
//! configuration types with their validation. Pure code: no IO, no runtime.
//!
//! Layout:
//! - [`tenant`]: [`Tenant`] and [`Application`], the onboarding data model.
//! - [`policy`]: login and sender checks, each refusal a typed reason.
//! - [`message`]: [`QueueId`] and the [`QueuedMessage`] that sits in the spool.
//! - [`config`]: the configuration tree, its defaults and validation.
//! - [`clock`]: the [`Clock`] trait, so time can be injected.

pub mod clock;
pub mod config;
pub mod message;
pub mod policy;
pub mod tenant;

pub use clock::{Clock, SystemClock};
pub use message::{QueueId, QueuedMessage};
pub use tenant::{AppLimits, Application, Tenant};
