//! Ferry's domain: organisations' tenants and applications, the sender
//! policy that decides who may send as whom, queue identifiers, and the
//! configuration types with their validation. Pure code: no IO, no runtime.
//!
//! Layout:
//! - [`tenant`]: [`Tenant`] and [`Application`], the onboarding data model.
//! - [`policy`]: login and sender checks, each refusal a typed reason.
//! - [`onboarding`]: what a new tenant, application or route must look like.
//! - [`refusal`]: every refusal a session can meet, its SMTP reply and its label.
//! - [`message`]: [`QueueId`] and the [`QueuedMessage`] that sits in the spool.
//! - [`dkim`]: DKIM key records and the DNS TXT record to publish.
//! - [`config`]: the configuration tree, its defaults and validation.
//! - [`retry`]: the retry schedule (exponential backoff, jitter, maximum age).
//! - [`dsn`]: delivery status notifications (RFC 3464) for failed recipients.
//! - [`event`]: what happened to each recipient, as the sending application sees it.
//! - [`return_path`]: the signed per-recipient envelope-From (VERP) under a tenant's bounce domain.
//! - [`incident`]: an application's baseline, the signals against it, and incidents.
//! - [`suppression`]: the recipients a tenant's mail is no longer sent to, and why.
//! - [`contract`]: the contract, contract years in their zone, prices in exact micro-units.
//! - [`usage`]: what is counted, for which scope, in which hour.
//! - [`metering`]: what one message adds to the ledger: counts, caps, thresholds, alerts.
//! - [`mta_sts`]: a receiving domain's MTA-STS policy, parsed, and which MX hosts it allows.
//! - [`outcome`]: what happened to each application's mail, per hour.
//! - [`chargeback`]: usage reports and the split of excess cost among tenants.
//! - [`audit`]: the audit log's entries: who changed what, before and after.
//! - [`token`]: admin API tokens and their roles.
//! - [`clock`]: the [`Clock`] trait, so time can be injected.

pub mod audit;
pub mod chargeback;
pub mod clock;
pub mod config;
pub mod contract;
pub mod directory;
pub mod dkim;
pub mod dsn;
pub mod event;
pub mod feedback;
pub mod incident;
pub mod lockout;
pub mod message;
pub mod metering;
pub mod mta_sts;
pub mod onboarding;
pub mod outcome;
pub mod policy;
pub mod refusal;
pub mod retry;
pub mod return_path;
pub mod sample;
pub mod suppression;
pub mod tenant;
pub mod token;
pub mod usage;

pub use clock::{Clock, SystemClock};
pub use message::{DeliveryAttempt, QueueId, QueuedMessage, RecipientOutcome};
pub use tenant::{AppLimits, Application, Bounces, Caps, Route, SmartHost, SuppressedMail, Tenant};
