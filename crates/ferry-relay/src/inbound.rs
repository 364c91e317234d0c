//! The inbound listener's intake: reports (DSNs, ARF complaints, the
//! common non-standard bounces) coming back to Ferry's return paths. It
//! takes mail only for a known tenant's bounce domain, only to a return
//! path whose MAC checks out and whose message Ferry sent (or to `fbl@`
//! the domain, for feedback loops that report to one fixed address, and
//! then only a complaint about a message Ferry sent); everything else is
//! `550 5.1.1`. Nothing taken in here is ever relayed: a report becomes
//! events on the original recipient, suppression entries, a sample of the
//! tenant's, and, by the tenant's choice, a copy to the application's own
//! envelope-From.

use std::sync::Arc;

use ferry_core::config::SuppressionRules;
use ferry_core::event::{Detail, EventKind, EventRecord, Severity};
use ferry_core::feedback::{self, Bounce, Complaint, DsnAction, Feedback, Report, ReportKind};
use ferry_core::outcome::{Outcome, OutcomeCount};
use ferry_core::return_path::{self, BounceKey, Sent};
use ferry_core::sample::{Sample, Sampled};
use ferry_core::usage::HOUR_MS;
use ferry_core::{Clock, QueueId, QueuedMessage, Tenant, suppression};
use ferry_smtp::{AppLimits, Envelope, Reply};
use ferry_store::{Changes, Store, StoreError};
use tokio::sync::watch;

/// What one inbound session may send: reports carry the original message,
/// so as large as an ordinary one; a bounce has one recipient, a batch of
/// them a few.
pub const LIMITS: AppLimits = AppLimits {
    max_message_bytes: 10 * 1024 * 1024,
    max_recipients: 50,
    max_messages_per_session: 100,
};

/// The fixed address feedback loops report to, under each bounce domain.
const FEEDBACK_LOOP: &str = "fbl";

pub struct Reports {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub bounce_keys: watch::Receiver<Arc<Vec<BounceKey>>>,
    pub suppression: SuppressionRules,
    pub hostname: String,
    /// `ferry_reports_total{kind, result}`.
    pub counted: prometheus::IntCounterVec,
    /// Woken when a report is forwarded (queued for delivery).
    pub delivery_wakeup: Arc<tokio::sync::Notify>,
}

/// Where a report went: the message and recipient it is about.
struct Subject {
    sent: Sent,
    recipient: String,
}

fn no_such_user() -> Reply {
    Reply::new(550, "5.1.1", "No such recipient here")
}

fn unavailable() -> Reply {
    Reply::new(451, "4.3.0", "Temporary failure; try again later")
}

impl Reports {
    /// `RCPT`: a return path of a message Ferry sent, or a bounce domain's
    /// feedback-loop address.
    pub async fn check_recipient(&self, rcpt: &str) -> Result<(), Reply> {
        match self.subject(rcpt).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) if self.feedback_loop(rcpt).await? => Ok(()),
            Ok(None) => {
                self.count("unknown", "refused");
                Err(no_such_user())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a report's recipient");
                Err(unavailable())
            }
        }
    }

    /// Whether `rcpt` is `fbl@` a tenant's bounce domain.
    async fn feedback_loop(&self, rcpt: &str) -> Result<bool, Reply> {
        let Some((local, domain)) = rcpt.rsplit_once('@') else {
            return Ok(false);
        };
        if !local.eq_ignore_ascii_case(FEEDBACK_LOOP) {
            return Ok(false);
        }
        Ok(self.tenant_of(domain).await.map_err(|_| unavailable())?.is_some())
    }

    async fn tenant_of(&self, domain: &str) -> Result<Option<Tenant>, StoreError> {
        let domain = domain.to_ascii_lowercase();
        let tenants = self.store.tenants().await?;
        Ok(tenants
            .into_iter()
            .find(|t| t.bounces.domain.as_deref() == Some(domain.as_str())))
    }

    /// The message and recipient a return path names, if it verifies, its
    /// domain is its tenant's bounce domain, and Ferry sent that message.
    async fn subject(&self, address: &str) -> Result<Option<Subject>, StoreError> {
        let keys = self.bounce_keys.borrow().clone();
        let Some(verified) = return_path::verify(&keys, address) else {
            return Ok(None);
        };
        let Some(tenant) = self.tenant_of(&verified.domain).await? else {
            return Ok(None);
        };
        let Some(sent) = self.store.sent(&verified.queue_id).await? else {
            return Ok(None);
        };
        let Some(recipient) = sent.recipients.get(verified.index).cloned() else {
            return Ok(None);
        };
        Ok((sent.tenant == tenant.name).then_some(Subject { sent, recipient }))
    }

    /// The end of `DATA`: what the report says, recorded for each message
    /// and recipient it is about.
    pub async fn take(&self, envelope: Envelope) -> Reply {
        let report = feedback::parse(&envelope.content);
        let mut subjects = Vec::new();
        for rcpt in &envelope.recipients {
            match self.subject(rcpt).await {
                Ok(Some(subject)) => subjects.push(subject),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a report's message");
                    return unavailable();
                }
            }
        }
        if subjects.is_empty() {
            // Only the feedback-loop address: the complaint names the
            // message by the return path it was sent with.
            let named = report.as_ref().and_then(|r| r.original.return_path.clone());
            match named.map(|rp| self.subject_of_complaint(rp)) {
                Some(found) => match found.await {
                    Ok(Some(subject)) => subjects.push(subject),
                    Ok(None) => return self.not_ours(),
                    Err(_) => return unavailable(),
                },
                None => return self.not_ours(),
            }
        }
        for subject in &subjects {
            if let Err(e) = self.record(&envelope, report.as_ref(), subject).await {
                tracing::warn!(error = %e, queue_id = %subject.sent.queue_id, "cannot record a report");
                return unavailable();
            }
        }
        Reply::new(250, "2.0.0", "Report taken in")
    }

    async fn subject_of_complaint(&self, return_path: String) -> Result<Option<Subject>, StoreError> {
        self.subject(&return_path).await
    }

    fn not_ours(&self) -> Reply {
        self.count("unknown", "refused");
        Reply::new(550, "5.7.1", "Only reports about mail this relay sent are taken here")
    }

    fn count(&self, kind: &str, result: &str) {
        self.counted.with_label_values(&[kind, result]).inc();
    }

    /// The report's events and suppression entries, its sample, its
    /// outcome count, and its copy to the application.
    async fn record(&self, envelope: &Envelope, report: Option<&Report>, subject: &Subject) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let tenant = self.store.tenant(&subject.sent.tenant).await?;
        let events: Vec<EventRecord> = report.map(|r| events_of(r, subject, now)).unwrap_or_default();
        let kind = report.map_or("other", |r| kind_label(r.kind));
        let mut changes = Changes {
            events,
            suppress: Vec::new(),
        };
        for event in &changes.events {
            changes.suppress.extend(self.suppressions(event).await?);
        }
        let counts: Vec<OutcomeCount> = changes.events.iter().filter_map(|e| outcome_of(e, now)).collect();
        self.store.append_events(changes).await?;
        if !counts.is_empty() {
            self.store.count_outcomes(counts).await?;
        }
        self.keep_sample(envelope, subject, kind, now).await;
        if tenant.is_some_and(|t| t.bounces.forward) {
            self.forward(envelope, subject, now).await;
        }
        self.count(kind, "taken");
        tracing::info!(queue_id = %subject.sent.queue_id, recipient = %subject.recipient, kind, "report taken in");
        Ok(())
    }

    /// The entries an event makes; a soft bounce is counted first.
    async fn suppressions(&self, event: &EventRecord) -> Result<Vec<suppression::Suppression>, StoreError> {
        let rule = self.suppression.soft_bounce_rule();
        let soft = suppression::bounce_reason(event.detail.status.as_deref(), event.detail.severity)
            == Some(suppression::Reason::SoftBounces);
        let counts = if event.kind == EventKind::Bounced && soft {
            self.store
                .count_soft_bounces(&event.tenant, &event.recipients, event.at_ms, rule.window_ms)
                .await?
        } else {
            Vec::new()
        };
        let count_of = |r: &str| {
            event
                .recipients
                .iter()
                .position(|x| suppression::normalise(x) == r)
                .and_then(|i| counts.get(i).copied())
                .unwrap_or(0)
        };
        Ok(suppression::from_event(
            event,
            count_of,
            rule,
            self.suppression.expires_ms(event.at_ms),
        ))
    }

    async fn keep_sample(&self, envelope: &Envelope, subject: &Subject, kind: &str, now: u64) {
        let sample = Sample::of(Sampled {
            id: QueueId::generate().to_string(),
            tenant: &subject.sent.tenant,
            app: &subject.sent.app,
            at_ms: now,
            outcome: &format!("report.{kind}"),
            mail_from: &envelope.mail_from,
            recipients: std::slice::from_ref(&subject.recipient),
            content: &envelope.content,
            with_body: true,
        });
        if let Err(e) = self.store.put_sample(sample).await {
            tracing::warn!(error = %e, "cannot keep a report as a sample");
        }
    }

    /// A copy of the report to the application's own envelope-From, from
    /// the null sender (so it can never bounce back here).
    async fn forward(&self, envelope: &Envelope, subject: &Subject, now: u64) {
        if subject.sent.mail_from.is_empty() {
            return;
        }
        let id = QueueId::generate();
        let mut content = format!(
            "Received: by {} (Ferry) with report id {id};\r\n\t{}\r\n",
            self.hostname,
            ferry_core::clock::rfc5322_date(now)
        )
        .into_bytes();
        content.extend_from_slice(&envelope.content);
        let sent = &subject.sent;
        let mut copy = QueuedMessage::notice(id.clone(), &sent.tenant, &sent.app, &sent.mail_from, content, now);
        copy.eight_bit = envelope.eight_bit;
        copy.smtputf8 = envelope.smtputf8;
        match self.store.enqueue(copy, None).await {
            Ok(()) => self.delivery_wakeup.notify_one(),
            Err(e) => tracing::warn!(error = %e, queue_id = %id, "cannot forward a report to the application"),
        }
    }
}

fn kind_label(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Dsn => "dsn",
        ReportKind::Complaint => "arf",
        ReportKind::Guessed => "guessed",
    }
}

/// The events a report makes on the recipient its return path names: a
/// failed DSN (or a bounce read by its text) is `bounced`, a delayed one
/// `deferred`, a complaint `complained`; a DSN that says delivered or
/// relayed makes none.
fn events_of(report: &Report, subject: &Subject, now: u64) -> Vec<EventRecord> {
    let label = kind_label(report.kind);
    let item = report.items.iter().find(|item| match item {
        Feedback::Bounce(b) => matches!(b.action, DsnAction::Failed | DsnAction::Delayed),
        Feedback::Complaint(_) => true,
    });
    let (kind, detail) = match item {
        Some(Feedback::Bounce(b)) => bounce_event(b, label),
        Some(Feedback::Complaint(c)) => complaint_event(c, label),
        None => return Vec::new(),
    };
    vec![EventRecord {
        at_ms: now,
        tenant: subject.sent.tenant.clone(),
        app: subject.sent.app.clone(),
        queue_id: subject.sent.queue_id.to_string(),
        kind,
        recipients: vec![subject.recipient.clone()],
        detail,
    }]
}

fn bounce_event(b: &Bounce, label: &str) -> (EventKind, Detail) {
    let kind = if b.action == DsnAction::Delayed {
        EventKind::Deferred
    } else {
        EventKind::Bounced
    };
    let severity = match b.severity {
        Some(feedback::Severity::Hard) => Some(Severity::Hard),
        Some(feedback::Severity::Soft) => Some(Severity::Soft),
        None => None,
    };
    let detail = Detail {
        reply: b.diagnostic.clone(),
        status: b.status.clone(),
        remote: b.remote_mta.clone(),
        severity: (kind == EventKind::Bounced).then_some(severity).flatten(),
        report: Some(label.to_string()),
        ..Detail::default()
    };
    (kind, detail)
}

fn complaint_event(c: &Complaint, label: &str) -> (EventKind, Detail) {
    let detail = Detail {
        report: Some(label.to_string()),
        feedback_type: Some(c.feedback_type.clone()),
        ..Detail::default()
    };
    (EventKind::Complained, detail)
}

/// The outcome report's count of a later bounce or a complaint.
fn outcome_of(event: &EventRecord, now: u64) -> Option<OutcomeCount> {
    let outcome = match event.kind {
        EventKind::Bounced => Outcome::BouncedLater,
        EventKind::Complained => Outcome::Complained,
        _ => return None,
    };
    Some(OutcomeCount {
        hour: now / HOUR_MS,
        tenant: event.tenant.clone(),
        app: event.app.clone(),
        outcome,
        count: event.recipients.len() as u64,
    })
}
