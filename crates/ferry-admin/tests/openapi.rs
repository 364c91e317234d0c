//! The OpenAPI document and the router come from one list; this checks
//! that every documented operation is served (a request reaches its
//! handler: the token check answers, not the "no such route" fallback) and
//! that the document has what a client needs of each.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_admin::AdminState;
use ferry_core::SystemClock;
use ferry_core::contract::Contract;
use tower::ServiceExt;

fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, &'static str, &utoipa::openapi::path::Operation)> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in methods {
            if let Some(operation) = operation {
                out.push((path.clone(), method, operation));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_documented_operation_is_served_and_needs_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ferry_store::EmbeddedStore::open(&dir.path().join("s.redb")).expect("store");
    let state = AdminState {
        store: Arc::new(store),
        clock: Arc::new(SystemClock),
        terms: Contract::default().terms().expect("terms"),
        forecast_min_days: 14,
        alerts: Default::default(),
        hostname: "relay.test".into(),
        commands: None,
    };
    let router = ferry_admin::router(state);
    let doc = ferry_admin::openapi();
    let ops = operations(&doc);
    assert!(ops.len() >= 30, "{} operations", ops.len());
    for (path, method, operation) in &ops {
        assert!(path.starts_with("/v1/"), "{path}");
        for status in ["401", "403", "422", "503"] {
            assert!(
                operation.responses.responses.contains_key(status),
                "{method} {path} documents {status}"
            );
        }
        let concrete = path.replace('{', "x").replace('}', "");
        let request = Request::builder()
            .method(*method)
            .uri(&concrete)
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("response");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}: served, and only with a token"
        );
    }
    let request = Request::get("/v1/openapi.json").body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK, "the document needs no token");
    let request = Request::get("/v1/nothing-here").body(Body::empty()).expect("request");
    assert_eq!(
        router.oneshot(request).await.expect("response").status(),
        StatusCode::NOT_FOUND
    );
    let json = serde_json::to_value(&doc).expect("json");
    assert_eq!(json["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(
        json["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        json["openapi"]
    );
}
