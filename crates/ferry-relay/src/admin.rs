//! The admin HTTP endpoint (axum): `/metrics` for Prometheus, `/livez`
//! (the process is alive and not failed for good), `/readyz` (every
//! permanent part of the node runs and it is not draining) and `/health`
//! (the same as `/readyz`); and the admin API under `/v1` (`ferry-admin`).

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::supervisor::NodeHealth;

pub async fn serve(
    listener: TcpListener,
    api: ferry_admin::AdminState,
    metrics: Arc<Metrics>,
    health: watch::Receiver<NodeHealth>,
    mut stop: watch::Receiver<bool>,
) {
    let live = health.clone();
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
        .route("/metrics", get(move || async move { metrics.render() }))
        .merge(ferry_admin::router(api));
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "admin endpoint failed");
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
