//! The alert outbox dispatcher: every alert the ledger raised is logged,
//! counted and POSTed to the webhook, at least once, with its id as the
//! idempotency key and an HMAC-SHA256 signature of the body. Failures are
//! retried with backoff; an alert leaves the outbox only once delivered.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::Clock;
use ferry_core::metering::Alert;
use ferry_store::Ledger;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use crate::metrics::Metrics;

pub struct Webhook {
    pub url: String,
    pub secret: String,
}

pub struct AlertDispatcher {
    pub ledger: Arc<dyn Ledger>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub webhook: Option<Webhook>,
    pub retry_max: Duration,
    pub http: reqwest::Client,
}

const POLL: Duration = Duration::from_millis(500);

/// `sha256=<hex>` of the body under the secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|e| unreachable!("HMAC takes keys of any length: {e}"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl AlertDispatcher {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let now = self.clock.now_ms();
            match self.ledger.outbox_due(now, 32).await {
                Ok(due) => {
                    for alert in due {
                        self.dispatch(alert).await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the alert outbox"),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => return,
            }
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
        }
        let now = self.clock.now_ms();
        let outcome = match &self.webhook {
            None => Ok(()),
            Some(hook) => self.post(hook, &alert).await,
        };
        let saved = match outcome {
            Ok(()) => self.ledger.alert_delivered(&alert.id, now).await,
            Err(why) => {
                self.metrics
                    .alert_delivery_failures
                    .with_label_values(&[kind.as_str()])
                    .inc();
                let delay = Duration::from_secs(1u64 << alert.attempts.min(16)).min(self.retry_max);
                tracing::warn!(alert = %alert.id, error = %why, retry_in_secs = delay.as_secs(), "alert webhook failed; will retry");
                self.ledger.alert_retry(&alert.id, now + delay.as_millis() as u64).await
            }
        };
        if let Err(e) = saved {
            tracing::error!(alert = %alert.id, error = %e, "cannot update the alert outbox");
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
