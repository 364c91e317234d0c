//! The end of DATA: header checks, the headers the relay adds, and the
//! durable enqueue that must succeed before the client hears 250.

use std::sync::Arc;

use ferry_core::clock::rfc5322_date;
use ferry_core::config::Alerts;
use ferry_core::contract::Terms;
use ferry_core::event::{EventKind, EventRecord};
use ferry_core::metering;
use ferry_core::outcome::OutcomeCount;
use ferry_core::policy::{BulkSignals, check_bulk, check_header_from};
use ferry_core::refusal::Refusal;
use ferry_core::return_path::{self, BounceKey};
use ferry_core::sample::{self as sample, Sample, Sampled};
use ferry_core::usage::Usage;
use ferry_core::{Application, Clock, QueueId, QueuedMessage, SuppressedMail, Tenant};
use ferry_smtp::{Envelope, Reply};
use ferry_store::{Changes, Store, StoreError};

use crate::dkim::DkimSigners;
use crate::metrics::Metrics;
use crate::scan::{ScanContext, Scanners, Verdict};
use crate::side::SideWork;

use crate::tls::TlsInfo;
use crate::trace;
use tracing::Instrument;

/// Who handed over the message, for the Received header and the log.
#[derive(Debug, Clone)]
pub struct Origin {
    pub helo: String,
    pub ip: std::net::IpAddr,
    pub tls: Option<TlsInfo>,
}

/// The result of intake, for the reply and the message log.
pub struct Intake {
    pub reply: Reply,
    pub size: usize,
    /// The rule that refused the message, if one did.
    pub refusal: Option<Refusal>,
}

pub struct MessageIntake {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub hostname: String,
    pub terms: Terms,
    pub alerts: Alerts,
    pub metrics: Arc<Metrics>,
    pub scanners: Scanners,
    /// The signing keys in use, from the keyring.
    pub dkim: tokio::sync::watch::Receiver<Arc<DkimSigners>>,
    /// The return-path keys in use, from the keyring.
    pub bounce_keys: tokio::sync::watch::Receiver<Arc<Vec<BounceKey>>>,
    pub bulk_recipients: usize,
    /// Woken after each enqueue so delivery starts at once.
    pub delivery_wakeup: Arc<tokio::sync::Notify>,
    /// Refusal counts and samples, written off the session's path.
    pub side: SideWriters,
}

/// The side work of the intake, each through its bounded worker.
pub struct SideWriters {
    pub refusals: SideWork<OutcomeCount>,
    pub samples: SideWork<Sample>,
}

impl SideWriters {
    /// Starts both workers, writing to `store`; what they drop is counted
    /// in `metrics`.
    pub fn start(store: Arc<dyn Store>, metrics: &Metrics) -> Self {
        let dropped = |kind: &str| metrics.side_work_dropped.with_label_values(&[kind]);
        let counts = store.clone();
        let refusals = SideWork::start(dropped("refusal_counts"), move |batch: Vec<OutcomeCount>| {
            let store = counts.clone();
            async move {
                // A store that fails here loses counts, never a session's answer.
                if let Err(e) = store.count_outcomes(batch).await {
                    tracing::warn!(error = %e, "cannot count refusals");
                }
            }
        });
        let samples = SideWork::start(dropped("samples"), move |batch: Vec<Sample>| {
            let store = store.clone();
            async move {
                for sample in batch {
                    if let Err(e) = store.put_sample(sample).await {
                        tracing::warn!(error = %e, "cannot keep a message sample");
                    }
                }
            }
        });
        SideWriters { refusals, samples }
    }
}

/// The SMTP reply of a refusal.
pub fn reply_for(refusal: &Refusal) -> Reply {
    let parts = refusal.reply();
    Reply::new(parts.code, parts.status, parts.text)
}

impl MessageIntake {
    /// Checks, scans, signs and spools one message under `id` (chosen by
    /// the caller, so the message's span carries it from the start).
    pub async fn accept(
        &self,
        id: QueueId,
        envelope: Envelope,
        app: &Application,
        tenant: &Tenant,
        origin: &Origin,
    ) -> Intake {
        let size = envelope.content.len();
        // Refused before it is spooled: its headers are kept as a sample.
        let refused_here = |refusal: Refusal| {
            self.keep_sample(tenant, app, &id, &envelope, None, refusal.reason());
            self.refused(tenant, app, size, refusal)
        };
        let headers = header_facts(&envelope.content);
        if let Err(refusal) = self.check_headers(&headers, &envelope, app, tenant) {
            return refused_here(refusal);
        }
        let span = trace::scan(&id);
        let scanned = self.scan(&envelope, app, origin).instrument(span.clone()).await;
        if !span.is_disabled() {
            span.record("verdict", scanned.shown());
        }
        let scan_headers = match scanned {
            Verdict::Accept(extra) => extra,
            Verdict::Refuse(refusal) => return refused_here(refusal),
        };
        let now = self.clock.now_ms();
        let mut content = self.added_headers(&id, &envelope, app, origin, &headers, now);
        content.extend_from_slice(scan_headers.as_bytes());
        content.extend_from_slice(&envelope.content);
        let signed = self
            .sign(content, headers.from_domain())
            .instrument(trace::sign(&id))
            .await;
        let Some(content) = signed else {
            return refused_here(Refusal::Internal("DKIM signing failed".into()));
        };
        if sample::chosen(tenant.sample_percent, id.as_str()) {
            self.keep_sample(tenant, app, &id, &envelope, Some(&content), "accepted");
        }
        let recipients = match tenant.bounces.suppressed {
            SuppressedMail::Refuse => envelope.recipients.clone(),
            SuppressedMail::Drop => match self.drop_suppressed(&id, tenant, app, &envelope.recipients).await {
                Ok(kept) => kept,
                Err(refusal) => return refused_here(refusal),
            },
        };
        if recipients.is_empty() {
            // Every recipient suppressed: nothing to send, nothing counted.
            return Intake {
                reply: Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
                size,
                refusal: None,
            };
        }
        let usage = Usage {
            messages: 1,
            recipients: recipients.len() as u64,
            bytes: size as u64,
        };
        let plan = metering::plan(&self.terms, &self.alerts, tenant, app, usage, now);
        let return_paths = self.return_paths(&id, tenant, recipients.len());
        let message = QueuedMessage {
            id: id.clone(),
            tenant: tenant.name.clone(),
            app: app.username.clone(),
            // Copied, not moved: a message the store refuses is sampled too.
            mail_from: envelope.mail_from.clone(),
            recipients,
            received_ms: now,
            attempts: 0,
            eight_bit: envelope.eight_bit,
            smtputf8: envelope.smtputf8,
            outcomes: Default::default(),
            history: Vec::new(),
            content,
            lease: None,
            return_paths,
        };
        let started = std::time::Instant::now();
        let spooled = self
            .store
            .enqueue(message, Some(plan))
            .instrument(trace::spool(&id))
            .await;
        self.metrics.store_write.observe(started.elapsed().as_secs_f64());
        match spooled {
            Ok(()) => {
                self.delivery_wakeup.notify_one();
                self.metrics
                    .messages_accepted
                    .with_label_values(&[tenant.name.as_str(), app.username.as_str()])
                    .inc();
                Intake {
                    reply: Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
                    size,
                    refusal: None,
                }
            }
            Err(StoreError::CapReached { name, temporary }) => refused_here(Refusal::CapReached { name, temporary }),
            Err(StoreError::Busy) => refused_here(Refusal::StoreBusy),
            Err(e) => refused_here(Refusal::StoreUnavailable(e.to_string())),
        }
    }

    /// Keeps a sample off the session's path: the whole message as spooled
    /// (`spooled`: its content) or, for a refusal, its headers as received,
    /// under the id its trace and log name. A store that fails here loses
    /// the sample, nothing else.
    fn keep_sample(
        &self,
        tenant: &Tenant,
        app: &Application,
        id: &QueueId,
        envelope: &Envelope,
        spooled: Option<&[u8]>,
        outcome: &str,
    ) {
        let sample = Sample::of(Sampled {
            id: id.to_string(),
            tenant: &tenant.name,
            app: &app.username,
            at_ms: self.clock.now_ms(),
            outcome,
            mail_from: &envelope.mail_from,
            recipients: &envelope.recipients,
            content: spooled.unwrap_or(&envelope.content),
            with_body: spooled.is_some(),
        });
        self.side.samples.offer(sample);
    }

    /// A message refused: counted under its rule, answered with its reply.
    fn refused(&self, tenant: &Tenant, app: &Application, size: usize, refusal: Refusal) -> Intake {
        self.count_refusal(&tenant.name, &app.username, &refusal);
        Intake {
            reply: reply_for(&refusal),
            size,
            refusal: Some(refusal),
        }
    }

    /// Counts a refusal of `app`'s mail or sign-in under its rule: in the
    /// metrics and, off the session's path, in the store's per-application
    /// outcomes.
    pub fn count_refusal(&self, tenant: &str, app: &str, refusal: &Refusal) {
        self.metrics
            .messages_refused
            .with_label_values(&[tenant, refusal.reason()])
            .inc();
        let count = OutcomeCount::refusal(tenant, app, refusal.reason(), self.clock.now_ms());
        self.side.refusals.offer(count);
    }

    /// A refusal that names no application (a sign-in with an unknown
    /// username, or while the store is down): in the metric only, under no
    /// tenant.
    pub fn count_unowned_refusal(&self, refusal: &Refusal) {
        self.metrics
            .messages_refused
            .with_label_values(&["", refusal.reason()])
            .inc();
    }

    /// Header From authorised; bulk mail with one-click unsubscribe.
    fn check_headers(
        &self,
        headers: &HeaderFacts,
        envelope: &Envelope,
        app: &Application,
        tenant: &Tenant,
    ) -> Result<(), Refusal> {
        check_header_from(app, tenant, &headers.from).map_err(Refusal::HeaderFromNotAuthorised)?;
        if app.bulk_rules {
            check_bulk(&headers.bulk, envelope.recipients.len(), self.bulk_recipients)
                .map_err(Refusal::BulkWithoutUnsubscribe)?;
        }
        Ok(())
    }

    async fn scan(&self, envelope: &Envelope, app: &Application, origin: &Origin) -> Verdict {
        if !self.scanners.is_configured() {
            return Verdict::Accept(String::new());
        }
        let cx = ScanContext {
            ip: origin.ip,
            helo: &origin.helo,
            from: &envelope.mail_from,
            rcpts: &envelope.recipients,
            user: &app.username,
        };
        self.scanners.scan(&envelope.content, &cx, &self.metrics).await
    }

    /// DKIM-signs the final message (every header the relay adds is already
    /// there) on the blocking pool: RSA signing is CPU work. None if the
    /// signing task died: the client is told to retry, nothing is spooled.
    async fn sign(&self, content: Vec<u8>, from_domain: Option<String>) -> Option<Vec<u8>> {
        let dkim = self.dkim.borrow().clone();
        if dkim.is_empty() {
            return Some(content);
        }
        let signed = tokio::task::spawn_blocking(move || {
            let mut signed = dkim.sign(&content, from_domain.as_deref());
            signed.extend_from_slice(&content);
            signed
        })
        .await;
        match signed {
            Ok(signed) => Some(signed),
            Err(e) => {
                tracing::error!(error = %e, "DKIM signing task failed");
                None
            }
        }
    }

    /// Is there room under the hard caps for one more message? (The enqueue
    /// checks again, atomically, with the real counts.)
    /// At MAIL (`units` 1), and at each RCPT when the contract counts
    /// recipients (`units`: this transaction's recipients so far, this one included).
    pub async fn cap_room(&self, tenant: &Tenant, app: &Application, units: u64) -> Result<(), Refusal> {
        ferry_store::cap_room(
            self.store.as_ref(),
            &self.terms,
            tenant,
            app,
            units,
            self.clock.now_ms(),
        )
        .await
    }

    /// Each recipient's envelope-From under the tenant's bounce domain;
    /// none without one (or, never expected, without a key: then the
    /// application's own envelope-From, as before).
    fn return_paths(&self, id: &QueueId, tenant: &Tenant, recipients: usize) -> Vec<String> {
        let Some(domain) = &tenant.bounces.domain else {
            return Vec::new();
        };
        let keys = self.bounce_keys.borrow().clone();
        let Some(key) = return_path::current(&keys) else {
            tracing::warn!(queue_id = %id, "no return-path key: sending with the application's envelope-From");
            return Vec::new();
        };
        (0..recipients)
            .map(|i| return_path::address(key, id, i, domain))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    }

    /// Whether `rcpt` is on the tenant's suppression list.
    pub async fn check_suppressed(&self, tenant: &Tenant, rcpt: &str) -> Result<(), Refusal> {
        match self.store.suppression(&tenant.name, rcpt, self.clock.now_ms()).await {
            Ok(None) => Ok(()),
            Ok(Some(entry)) => Err(Refusal::Suppressed(Box::new(entry))),
            Err(StoreError::Busy) => Err(Refusal::StoreBusy),
            Err(e) => Err(Refusal::StoreUnavailable(e.to_string())),
        }
    }

    /// For a tenant that drops mail to suppressed recipients: the
    /// recipients to send to, after logging a `suppressed` event for the
    /// others under the message's id.
    async fn drop_suppressed(
        &self,
        id: &QueueId,
        tenant: &Tenant,
        app: &Application,
        recipients: &[String],
    ) -> Result<Vec<String>, Refusal> {
        let mut kept = Vec::with_capacity(recipients.len());
        let mut dropped = Vec::new();
        for rcpt in recipients {
            match self.check_suppressed(tenant, rcpt).await {
                Ok(()) => kept.push(rcpt.clone()),
                Err(Refusal::Suppressed(_)) => dropped.push(rcpt.clone()),
                Err(other) => return Err(other),
            }
        }
        if dropped.is_empty() {
            return Ok(kept);
        }
        let record = EventRecord {
            at_ms: self.clock.now_ms(),
            tenant: tenant.name.clone(),
            app: app.username.clone(),
            queue_id: id.to_string(),
            kind: EventKind::Suppressed,
            recipients: dropped,
            detail: Default::default(),
        };
        let changes = Changes {
            events: vec![record],
            suppress: Vec::new(),
        };
        match self.store.append_events(changes).await {
            Ok(()) => Ok(kept),
            Err(StoreError::Busy) => Err(Refusal::StoreBusy),
            Err(e) => Err(Refusal::StoreUnavailable(e.to_string())),
        }
    }

    /// `Received:` (RFC 5321 §4.4) always; `Message-ID:` and `Date:` when the
    /// client left them out (RFC 6409 §8).
    fn added_headers(
        &self,
        id: &QueueId,
        env: &Envelope,
        app: &Application,
        origin: &Origin,
        facts: &HeaderFacts,
        now: u64,
    ) -> Vec<u8> {
        let date = rfc5322_date(now);
        let with = if origin.tls.is_some() { "ESMTPSA" } else { "ESMTPA" };
        let tls = origin.tls.as_ref().map_or(String::new(), |t| {
            format!("\r\n\t(version={} cipher={})", t.version, t.cipher)
        });
        let rcpt = match env.recipients.as_slice() {
            [one] => format!("\r\n\tfor <{one}>"),
            _ => String::new(),
        };
        let mut out = format!(
            "Received: from {} ([{}])\r\n\tby {} (Ferry) with {with} id {id}{tls}\r\n\t(authenticated as {}){rcpt};\r\n\t{date}\r\n",
            sanitize(&origin.helo),
            origin.ip,
            self.hostname,
            app.username
        );
        if !facts.has_message_id {
            out.push_str(&format!("Message-ID: <{id}@{}>\r\n", self.hostname));
        }
        if !facts.has_date {
            out.push_str(&format!("Date: {date}\r\n"));
        }
        out.into_bytes()
    }
}

/// The HELO name goes into a header: keep it to one printable token.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '(' && *c != ')')
        .take(255)
        .collect()
}

#[derive(Debug, Default)]
pub struct HeaderFacts {
    pub from: Vec<String>,
    pub has_message_id: bool,
    pub has_date: bool,
    pub bulk: BulkSignals,
}

impl HeaderFacts {
    /// The domain of the (first) header From address.
    pub fn from_domain(&self) -> Option<String> {
        self.from
            .first()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
    }
}

/// Reads the header section only; the body is never parsed here.
pub fn header_facts(content: &[u8]) -> HeaderFacts {
    let end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(content.len(), |p| p + 4);
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(&content[..end]) else {
        return HeaderFacts::default();
    };
    let from = parsed
        .from()
        .map(|a| a.iter().filter_map(|addr| addr.address().map(str::to_string)).collect())
        .unwrap_or_default();
    let raw = |name: &str| parsed.header_raw(name).map(|v| v.trim().to_string());
    let bulk = BulkSignals {
        list_id: raw("List-Id").is_some(),
        precedence_bulk: raw("Precedence")
            .is_some_and(|p| p.eq_ignore_ascii_case("bulk") || p.eq_ignore_ascii_case("list")),
        list_unsubscribe: raw("List-Unsubscribe"),
        list_unsubscribe_post: raw("List-Unsubscribe-Post"),
    };
    HeaderFacts {
        from,
        has_message_id: parsed.message_id().is_some(),
        has_date: parsed.date().is_some(),
        bulk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_facts_reads_from_and_presence() {
        let facts = header_facts(b"From: App <app@example.test>, b@example.test\r\nSubject: x\r\n\r\nFrom: body@x\r\n");
        assert_eq!(facts.from, ["app@example.test", "b@example.test"]);
        assert!(!facts.has_message_id && !facts.has_date);
        let facts = header_facts(b"Message-ID: <a@b>\r\nDate: Tue, 24 Nov 2026 05:00:00 +0000\r\n\r\n");
        assert!(facts.has_message_id && facts.has_date);
        assert!(facts.from.is_empty());
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
    }
}
