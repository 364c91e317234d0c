//! Anti-virus through clamd (INSTREAM, TCP or Unix socket) and anti-spam
//! through rspamd (`/checkv2`), with a timeout and a fail-open or
//! fail-closed policy for when a scanner is down or slow.

use std::time::Duration;

use ferry_core::config::{FailurePolicy, Hygiene};
use ferry_core::refusal::Refusal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::metrics::Metrics;

/// What the scanners decided about one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Pass, with these header lines (CRLF-terminated) to add.
    Accept(String),
    Refuse(Refusal),
}

impl Verdict {
    /// The verdict as a trace shows it.
    pub fn shown(&self) -> &'static str {
        match self {
            Verdict::Accept(_) => "accept",
            Verdict::Refuse(refusal) => refusal.reason(),
        }
    }
}

/// Who sent the message, for rspamd.
pub struct ScanContext<'a> {
    pub ip: std::net::IpAddr,
    pub helo: &'a str,
    pub from: &'a str,
    pub rcpts: &'a [String],
    pub user: &'a str,
}

pub struct Scanners {
    pub settings: Hygiene,
    pub http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Protocol(String),
}

impl Scanners {
    pub fn is_configured(&self) -> bool {
        self.settings.clamd.is_some() || self.settings.rspamd.is_some()
    }

    pub async fn scan(&self, content: &[u8], cx: &ScanContext<'_>, metrics: &Metrics) -> Verdict {
        if content.len() > self.settings.scan_max_bytes {
            tracing::info!(
                size = content.len(),
                "message larger than hygiene.scan_max_bytes: not scanned"
            );
            return Verdict::Accept(String::new());
        }
        let timeout = Duration::from_secs(self.settings.scan_timeout_secs);
        let mut headers = String::new();
        if let Some(addr) = &self.settings.clamd {
            match tokio::time::timeout(timeout, clamd(addr, content))
                .await
                .unwrap_or(Err(ScanError::Timeout))
            {
                Ok(None) => metrics.scans.with_label_values(&["clamd", "clean"]).inc(),
                Ok(Some(virus)) => {
                    metrics.scans.with_label_values(&["clamd", "virus"]).inc();
                    return Verdict::Refuse(Refusal::Virus(virus));
                }
                Err(e) => {
                    if let Some(refusal) = self.failed("clamd", &e, metrics) {
                        return refusal;
                    }
                }
            }
        }
        if let Some(url) = &self.settings.rspamd {
            match tokio::time::timeout(timeout, self.rspamd(url, content, cx))
                .await
                .unwrap_or(Err(ScanError::Timeout))
            {
                Ok(verdict) => {
                    let (name, decision) = self.spam_decision(&verdict);
                    metrics.scans.with_label_values(&["rspamd", name]).inc();
                    match decision {
                        Verdict::Accept(extra) => headers.push_str(&extra),
                        refusal => return refusal,
                    }
                }
                Err(e) => {
                    if let Some(refusal) = self.failed("rspamd", &e, metrics) {
                        return refusal;
                    }
                }
            }
        }
        Verdict::Accept(headers)
    }

    /// A scanner that could not answer: 451 when failing closed, nothing when open.
    fn failed(&self, scanner: &str, e: &ScanError, metrics: &Metrics) -> Option<Verdict> {
        metrics.scanner_failures.with_label_values(&[scanner]).inc();
        match self.settings.on_scanner_failure {
            FailurePolicy::Closed => {
                tracing::warn!(scanner, error = %e, "scanner unavailable: deferring the message (fail closed)");
                Some(Verdict::Refuse(Refusal::ScannerDown))
            }
            FailurePolicy::Open => {
                tracing::warn!(scanner, error = %e, "scanner unavailable: accepting unscanned (fail open)");
                None
            }
        }
    }

    async fn rspamd(&self, url: &str, content: &[u8], cx: &ScanContext<'_>) -> Result<SpamVerdict, ScanError> {
        let mut request = self
            .http
            .post(format!("{}/checkv2", url.trim_end_matches('/')))
            .header("IP", cx.ip.to_string())
            .header("Helo", cx.helo)
            .header("From", cx.from)
            .header("User", cx.user)
            .body(content.to_vec());
        for rcpt in cx.rcpts {
            request = request.header("Rcpt", rcpt);
        }
        let response = request.send().await.map_err(|e| ScanError::Protocol(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ScanError::Protocol(format!(
                "rspamd answered HTTP {}",
                response.status()
            )));
        }
        let body: serde_json::Value = response.json().await.map_err(|e| ScanError::Protocol(e.to_string()))?;
        let symbols = body["symbols"]
            .as_object()
            .map(|s| s.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        Ok(SpamVerdict {
            action: body["action"].as_str().unwrap_or("no action").to_string(),
            score: body["score"].as_f64().unwrap_or(0.0),
            required: body["required_score"].as_f64().unwrap_or(0.0),
            symbols,
        })
    }

    fn spam_decision(&self, v: &SpamVerdict) -> (&'static str, Verdict) {
        let reject = self
            .settings
            .spam_reject_score
            .map_or(v.action == "reject", |s| v.score >= s);
        let header = self
            .settings
            .spam_header_score
            .map_or(matches!(v.action.as_str(), "add header" | "rewrite subject"), |s| {
                v.score >= s
            });
        if reject {
            let refusal = Refusal::Spam {
                score: v.score,
                required: v.required,
            };
            return ("reject", Verdict::Refuse(refusal));
        }
        // Greylisting is for strangers at an MX; these senders are our own
        // authenticated applications, so only a soft reject defers.
        if v.action == "soft reject" && self.settings.spam_reject_score.is_none() {
            return ("defer", Verdict::Refuse(Refusal::SpamDeferred));
        }
        let status = if header { "Yes" } else { "No" };
        let headers = format!(
            "X-Spam: {status}\r\nX-Spam-Score: {:.2} / {:.2}\r\nX-Spam-Symbols: {}\r\n",
            v.score, v.required, v.symbols
        );
        (if header { "spam-header" } else { "clean" }, Verdict::Accept(headers))
    }
}

struct SpamVerdict {
    action: String,
    score: f64,
    required: f64,
    symbols: String,
}

/// INSTREAM: the content in length-prefixed chunks, then a zero length.
/// Returns the virus name, or None when clean.
async fn clamd(addr: &str, content: &[u8]) -> Result<Option<String>, ScanError> {
    if addr.starts_with('/') {
        let stream = tokio::net::UnixStream::connect(addr).await?;
        instream(stream, content).await
    } else {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        instream(stream, content).await
    }
}

async fn instream(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    content: &[u8],
) -> Result<Option<String>, ScanError> {
    stream.write_all(b"zINSTREAM\0").await?;
    for chunk in content.chunks(64 * 1024) {
        stream.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
        stream.write_all(chunk).await?;
    }
    stream.write_all(&0u32.to_be_bytes()).await?;
    stream.flush().await?;
    let mut reply = Vec::new();
    stream.take(4096).read_to_end(&mut reply).await?;
    let text = String::from_utf8_lossy(&reply)
        .trim_end_matches('\0')
        .trim()
        .to_string();
    let verdict = text.strip_prefix("stream: ").unwrap_or(&text);
    if verdict == "OK" {
        Ok(None)
    } else if let Some(name) = verdict.strip_suffix(" FOUND") {
        Ok(Some(name.to_string()))
    } else {
        Err(ScanError::Protocol(format!("clamd answered {text:?}")))
    }
}
