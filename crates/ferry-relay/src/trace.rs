//! The spans of a message's life, for OpenTelemetry traces. Two kinds of
//! trace, linked by the queue id (an attribute on every span that concerns
//! a message):
//!
//! ```text
//! smtp.session                      one per connection (peer, tls, tenant, app)
//! └─ smtp.message                   one per DATA (queue_id, recipients, size, result)
//!    ├─ hygiene.scan                the scanners' verdict
//!    ├─ dkim.sign                   signing on the blocking pool
//!    └─ queue.spool                 the durable enqueue before 250
//! delivery.attempt                  one per lease of a message (queue_id, attempt)
//! └─ delivery.group                 one per next hop (destination, recipients, result)
//! ```
//!
//! Every span has the target [`TARGET`]: the binary turns that target off
//! unless traces are exported, so with telemetry off a span is never built
//! (its fields are not even evaluated). The roots carry `trace_id`, so a
//! JSON log line inside them names its trace. Numbers are recorded as i64:
//! OpenTelemetry has no unsigned integers, and an i64 stays a number.

use ferry_core::QueueId;
use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span here (see the module doc).
pub const TARGET: &str = "ferry::trace";

/// Records the OpenTelemetry trace id of a root span in its `trace_id` field.
fn with_trace_id(span: Span) -> Span {
    if !span.is_disabled() {
        let id = span.context().span().span_context().trace_id();
        if id != TraceId::INVALID {
            span.record("trace_id", tracing::field::display(id));
        }
    }
    span
}

/// The root of an SMTP connection's trace.
pub fn session(peer: std::net::SocketAddr) -> Span {
    with_trace_id(tracing::info_span!(
        target: TARGET,
        parent: None,
        "smtp.session",
        peer = %peer,
        trace_id = tracing::field::Empty,
        tls = tracing::field::Empty,
        tenant = tracing::field::Empty,
        app = tracing::field::Empty,
    ))
}

/// One message of a session, from the end of DATA to the reply.
pub fn message(id: &QueueId, tenant: &str, app: &str, recipients: usize, size: usize) -> Span {
    tracing::info_span!(
        target: TARGET,
        "smtp.message",
        queue_id = %id,
        tenant,
        app,
        recipients = recipients as i64,
        size = size as i64,
        result = tracing::field::Empty,
        reason = tracing::field::Empty,
    )
}

/// The scanners' verdict on a message.
pub fn scan(id: &QueueId) -> Span {
    tracing::info_span!(target: TARGET, "hygiene.scan", queue_id = %id, verdict = tracing::field::Empty)
}

/// DKIM signing of a message.
pub fn sign(id: &QueueId) -> Span {
    tracing::info_span!(target: TARGET, "dkim.sign", queue_id = %id)
}

/// The durable enqueue before the 250.
pub fn spool(id: &QueueId) -> Span {
    tracing::info_span!(target: TARGET, "queue.spool", queue_id = %id, result = tracing::field::Empty)
}

/// The root of one delivery attempt's trace.
pub fn delivery(id: &QueueId, tenant: &str, app: &str, attempt: u32, recipients: usize) -> Span {
    with_trace_id(tracing::info_span!(
        target: TARGET,
        parent: None,
        "delivery.attempt",
        queue_id = %id,
        trace_id = tracing::field::Empty,
        tenant,
        app,
        attempt = i64::from(attempt),
        recipients = recipients as i64,
        delivered = tracing::field::Empty,
        deferred = tracing::field::Empty,
        failed = tracing::field::Empty,
    ))
}

/// The recipients of one attempt that share a next hop.
pub fn group(id: &QueueId, destination: &dyn std::fmt::Display, recipients: usize) -> Span {
    tracing::info_span!(
        target: TARGET,
        "delivery.group",
        queue_id = %id,
        destination = %destination,
        recipients = recipients as i64,
        reply = tracing::field::Empty,
    )
}
