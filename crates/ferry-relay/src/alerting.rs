//! The alert outbox dispatcher: every alert the ledger raised is logged,
//! counted and POSTed to the webhook, at least once, with its id as the
//! idempotency key and an HMAC-SHA256 signature of the body. Failures are
//! retried with backoff; an alert leaves the outbox only once delivered.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Clock;
use ferry_core::clock::rfc5322_date;
use ferry_core::metering::{Alert, AlertKind};
use ferry_core::usage::Scope;
use ferry_core::{QueueId, QueuedMessage};
use ferry_store::Store;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::metrics::Metrics;

pub struct Webhook {
    pub url: String,
    pub secret: String,
}

pub struct AlertDispatcher {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub webhook: Option<Webhook>,
    pub retry_max: Duration,
    pub http: reqwest::Client,
    /// From address and host name of alert e-mails.
    pub hostname: String,
    /// Who hears of organisation-wide alerts by e-mail (tenants' contacts hear of theirs).
    pub organisation_contact: Option<String>,
}

const POLL: Duration = Duration::from_millis(500);
/// How long a claimed alert is this node's: well past a batch of webhook
/// POSTs (10 s each at most), so no other node sends it meanwhile.
const CLAIM: Duration = Duration::from_secs(600);

/// `sha256=<hex>` of the body under the secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|e| unreachable!("HMAC takes keys of any length: {e}"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl crate::periodic::Round for AlertDispatcher {
    fn every(&self) -> Duration {
        POLL
    }

    async fn round(&self) {
        self.look().await;
    }
}

impl AlertDispatcher {
    async fn look(&self) {
        let now = self.clock.now_ms();
        match self.store.claim_alerts(now, CLAIM.as_millis() as u64, 32).await {
            Ok(due) => {
                for alert in due {
                    self.dispatch(alert).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the alert outbox"),
        }
    }

    async fn dispatch(&self, alert: Alert) {
        let kind = serde_json::to_value(alert.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if alert.attempts == 0 {
            self.metrics
                .alerts
                .with_label_values(&[kind.as_str(), &alert.scope.key()])
                .inc();
            let drivers: Vec<String> = alert
                .drivers
                .iter()
                .map(|d| format!("{} {:.1} %", d.tenant, d.share * 100.0))
                .collect();
            tracing::warn!(
                target: "ferry::alert",
                alert = %alert.id,
                scope = %alert.scope,
                threshold = %alert.threshold,
                value = alert.value,
                limit = alert.limit,
                drivers = %drivers.join(", "),
                "{}",
                if alert.incident.is_some() { "incident alert" } else { "charge-back alert" }
            );
            for contact in self.contacts(&alert).await {
                self.email(&alert, &drivers.join(", "), &contact).await;
            }
        }
        let now = self.clock.now_ms();
        let outcome = match &self.webhook {
            None => Ok(()),
            Some(hook) => self.post(hook, &alert).await,
        };
        let saved = match outcome {
            Ok(()) => self.store.alert_delivered(&alert.id, now).await,
            Err(why) => {
                self.metrics
                    .alert_delivery_failures
                    .with_label_values(&[kind.as_str()])
                    .inc();
                let delay = Duration::from_secs(1u64 << alert.attempts.min(16)).min(self.retry_max);
                tracing::warn!(alert = %alert.id, error = %why, retry_in_secs = delay.as_secs(), "alert webhook failed; will retry");
                self.store.alert_retry(&alert.id, now + delay.as_millis() as u64).await
            }
        };
        if let Err(e) = saved {
            tracing::error!(alert = %alert.id, error = %e, "cannot update the alert outbox");
        }
    }

    /// Who hears of an alert by e-mail: the tenant's contact (the
    /// organisation's for organisation alerts); of an incident, the
    /// organisation's too (the admins).
    async fn contacts(&self, alert: &Alert) -> Vec<String> {
        let tenant_contact = match &alert.scope {
            Scope::Tenant(t) | Scope::App { tenant: t, .. } => match self.store.tenant(t).await {
                Ok(Some(record)) => record.contact,
                _ => None,
            },
            Scope::Org => None,
        };
        let organisation = match (&alert.scope, &alert.incident) {
            (Scope::Org, _) | (_, Some(_)) => self.organisation_contact.clone(),
            _ => None,
        };
        let mut contacts: Vec<String> = tenant_contact.into_iter().chain(organisation).collect();
        contacts.dedup();
        contacts
    }

    /// An e-mail about the alert to `contact`, through Ferry's own queue,
    /// from the null sender, so a failure cannot bounce back.
    async fn email(&self, alert: &Alert, drivers: &str, contact: &str) {
        let tenant = match &alert.scope {
            Scope::Tenant(t) | Scope::App { tenant: t, .. } => t.clone(),
            Scope::Org => alert.drivers.first().map(|d| d.tenant.clone()).unwrap_or_default(),
        };
        let now = self.clock.now_ms();
        let id = QueueId::generate();
        let (subject, text) = match &alert.incident {
            Some(incident) if alert.kind == AlertKind::HeldDiscarded => (
                format!("held mail of application {} discarded", incident.app),
                format!(
                    "{value} messages of application {app} of tenant {tenant}, held under incident {id}, were\r\n\
                     discarded unreleased: they were older than the retention of held mail. Nobody will receive them.\r\n",
                    value = alert.value,
                    app = incident.app,
                    tenant = incident.tenant,
                    id = incident.id,
                ),
            ),
            Some(incident) => incident_text(incident),
            None => (
                format!("{}: {}", alert.scope, alert.threshold),
                format!(
                    "{scope} has reached {value} {unit} ({threshold}; the threshold is {limit}).\r\nDriven by: {drivers}.\r\n",
                    scope = alert.scope,
                    value = alert.value,
                    unit = alert.unit.name(),
                    threshold = alert.threshold,
                    limit = alert.limit,
                ),
            ),
        };
        let content = format!(
            "From: Ferry alerts <postmaster@{host}>\r\nTo: <{contact}>\r\nSubject: [Ferry] {subject}\r\n\
             Date: {date}\r\nMessage-ID: <{id}@{host}>\r\nAuto-Submitted: auto-generated\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n\
             {text}Alert id: {alert_id}\r\n",
            host = self.hostname,
            date = rfc5322_date(now),
            alert_id = alert.id,
        );
        let message = QueuedMessage::notice(id, &tenant, "ferry-alerts", contact, content.into_bytes(), now);
        if let Err(e) = self.store.enqueue(message, None).await {
            tracing::warn!(alert = %alert.id, error = %e, "cannot queue the alert e-mail");
        }
    }

    async fn post(&self, hook: &Webhook, alert: &Alert) -> Result<(), String> {
        let mut body = serde_json::to_value(alert).map_err(|e| e.to_string())?;
        if let Some(obj) = body.as_object_mut() {
            obj.remove("attempts");
            obj.remove("delivered_ms");
        }
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(&hook.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &alert.id)
            .header("X-Ferry-Signature", signature(&hook.secret, &body))
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }
}

/// The subject and text of an incident's e-mail: what was seen, the
/// policy applied, and what to do.
fn incident_text(incident: &ferry_core::incident::Incident) -> (String, String) {
    use ferry_core::incident::Policy;
    let evidence: String = incident
        .evidence
        .iter()
        .map(|e| format!("  - {}: {}\r\n", e.signal.as_str(), e.detail))
        .collect();
    let policy = match incident.policy {
        Policy::Alert => "Its mail is delivered as usual (the tenant's policy is alert).",
        Policy::Hold => "Its mail is still accepted but held, not delivered, until released or discarded.",
        Policy::Suspend => "Its mail is held, and its sign-ins are refused until an admin enables it again.",
    };
    let subject = format!(
        "incident on application {} of {}: it is not behaving like itself",
        incident.app, incident.tenant
    );
    let text = format!(
        "Application {app} of tenant {tenant} stopped behaving like itself (severity {severity:?}).\r\n\
         What was seen:\r\n{evidence}{policy}\r\n\r\n\
         If it was compromised: rotate its password, release what was legitimate and discard the rest\r\n\
         (ferry held list --tenant {tenant}; ferry held release|discard ...), then resolve the incident:\r\n\
         ferry incident resolve {id} --verdict compromised. If it was not: --verdict false-alarm.\r\n\
         Incident id: {id}\r\n",
        app = incident.app,
        tenant = incident.tenant,
        severity = incident.severity,
        id = incident.id,
    );
    (subject, text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
