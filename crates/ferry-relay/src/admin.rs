//! The admin HTTP endpoint (axum): `/metrics` for Prometheus, `/livez`
//! (the process is alive and not failed for good), `/readyz` (every
//! permanent part of the node runs and it is not draining) and `/health`
//! (the same as `/readyz`); and the admin API under `/v1` (`ferry-admin`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::metrics::Metrics;
use crate::supervisor::NodeHealth;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    tls: Option<watch::Receiver<Option<TlsAcceptor>>>,
    api: ferry_admin::AdminState,
    metrics: Arc<Metrics>,
    health: watch::Receiver<NodeHealth>,
    mut stop: watch::Receiver<bool>,
) {
    let live = health.clone();
    let scraped = api.clone();
    let ready = move || {
        let health = health.borrow().clone();
        async move { readiness(&health) }
    };
    let app = Router::new()
        .route(
            "/livez",
            get(move || {
                let failed = live.borrow().fatal.clone();
                async move {
                    match failed {
                        None => (StatusCode::OK, "ok\n".to_string()),
                        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("failed: {why}\n")),
                    }
                }
            }),
        )
        .route("/readyz", get(ready.clone()))
        .route("/health", get(ready))
        .route(
            "/metrics",
            get(move || {
                let (metrics, api) = (metrics.clone(), scraped.clone());
                async move {
                    metrics
                        .observe_store(api.store.as_ref(), api.clock.as_ref(), &api.terms)
                        .await;
                    metrics.render()
                }
            }),
        )
        .merge(ferry_admin::router(api));
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Some(tls) => match TlsListener::new(listener, tls) {
            Ok(listener) => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}

/// HTTPS for the admin endpoint. Handshakes run beside the accept loop,
/// each within [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up
/// no one; each uses the keyring's certificate of the moment.
struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn new(listener: TcpListener, tls: watch::Receiver<Option<TlsAcceptor>>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (done, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors and the like: let it pass.
                            tracing::warn!(error = %e, "admin endpoint: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = done.closed() => return,
                };
                let Some(acceptor) = tls.borrow().clone() else { continue };
                let done = done.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = done.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin endpoint: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "admin endpoint: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

fn readiness(health: &NodeHealth) -> (StatusCode, String) {
    if health.ready() {
        return (StatusCode::OK, "ok\n".into());
    }
    let mut why = Vec::new();
    if health.draining {
        why.push("draining".to_string());
    }
    if let Some(fatal) = &health.fatal {
        why.push(format!("failed: {fatal}"));
    }
    if !health.down.is_empty() {
        why.push(format!(
            "down: {}",
            health.down.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}\n", why.join("; ")),
    )
}
