//! The alert outbox dispatcher: every alert the ledger raised is logged,
//! counted and POSTed to the webhook, at least once, with its id as the
//! idempotency key and an HMAC-SHA256 signature of the body. Failures are
//! retried with backoff; an alert leaves the outbox only once delivered.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Clock;
use ferry_core::clock::rfc5322_date;
use ferry_core::metering::Alert;
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
                "charge-back alert"
            );
            self.email(&alert, &drivers.join(", ")).await;
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

    /// An e-mail to whoever should hear of the alert, through Ferry's own
    /// queue: the tenant's contact, or the organisation's for organisation
    /// alerts. From the null sender, so a failure cannot bounce back.
    async fn email(&self, alert: &Alert, drivers: &str) {
        let (tenant, contact) = match &alert.scope {
            Scope::Tenant(t) | Scope::App { tenant: t, .. } => match self.store.tenant(t).await {
                Ok(Some(record)) => (t.clone(), record.contact),
                _ => return,
            },
            Scope::Org => (
                alert.drivers.first().map(|d| d.tenant.clone()).unwrap_or_default(),
                self.organisation_contact.clone(),
            ),
        };
        let Some(contact) = contact else { return };
        let now = self.clock.now_ms();
        let id = QueueId::generate();
        let content = format!(
            "From: Ferry alerts <postmaster@{host}>\r\nTo: <{contact}>\r\nSubject: [Ferry] {scope}: {threshold}\r\n\
             Date: {date}\r\nMessage-ID: <{id}@{host}>\r\nAuto-Submitted: auto-generated\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n\
             {scope} has reached {value} {unit} ({threshold}; the threshold is {limit}).\r\n\
             Driven by: {drivers}.\r\nAlert id: {alert_id}\r\n",
            host = self.hostname,
            scope = alert.scope,
            threshold = alert.threshold,
            date = rfc5322_date(now),
            value = alert.value,
            unit = alert.unit.name(),
            limit = alert.limit,
            alert_id = alert.id,
        );
        let message = QueuedMessage {
            id,
            tenant,
            app: "ferry-alerts".into(),
            mail_from: String::new(),
            recipients: vec![contact.clone()],
            received_ms: now,
            attempts: 0,
            eight_bit: false,
            smtputf8: !contact.is_ascii(),
            outcomes: Default::default(),
            history: Vec::new(),
            content: content.into_bytes(),
            lease: None,
            return_paths: Vec::new(),
        };
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
