//! The admin API's JSON request bodies: arbitrary bytes parsed as each
//! body type the handlers take (`ferry_admin::parse_json`, what the
//! handlers call), then checked by the rules the handler applies to it
//! (`ferry_core::onboarding` and the body's own checks), against a fixed
//! tenant and application.
//!
//! Checked: no panic; the API's parse accepts exactly what serde_json
//! accepts; every refusal is a 4xx problem, never a 500.

#![no_main]

use std::sync::LazyLock;

use axum::response::IntoResponse;
use ferry_admin::{
    AllocationBody, AppBody, AppChangesBody, CapsBody, CommandBody, NewKey, NewToken, Problem, Question, RotateBody,
    RouteBody, RouteKind, ShareBody, TenantBody, TenantChanges, parse_json,
};
use ferry_core::onboarding;
use ferry_core::policy::{check_envelope_from, check_header_from, check_login};
use ferry_core::{AppLimits, Application, Tenant};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

struct Fixture {
    tenant: Tenant,
    app: Application,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let tenant = ferry_fuzz::tenant();
    let app = ferry_fuzz::application(&tenant);
    Fixture { tenant, app }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let now = ferry_fuzz::NOW_MS;
    let today = ferry_core::clock::utc_date(now);

    if let Some(body) = parse::<TenantBody>(data) {
        refused(onboarding::tenant(body.into_new(), now));
    }
    if let Some(body) = parse::<AppBody>(data)
        && let Some(new) = refused(body.into_new())
    {
        refused(onboarding::application(new, &f.tenant, String::new(), today, now));
    }
    if let Some(body) = parse::<RotateBody>(data) {
        let until = body
            .old_password_valid_until
            .as_deref()
            .map(|s| onboarding::instant_ms("old_password_valid_until", s))
            .transpose();
        if let Some(until) = refused(until) {
            refused(onboarding::rotate_password(
                &mut f.app.clone(),
                String::new(),
                until,
                now,
            ));
        }
    }
    if let Some(changes) = parse::<TenantChanges>(data) {
        let tenant = &f.tenant;
        if let Some(checked) = refused(onboarding::tenant(changes.applied_to(tenant), tenant.created_ms)) {
            refused(onboarding::senders_still_owned(&checked, std::slice::from_ref(&f.app)));
        }
    }
    if let Some(body) = parse::<AppChangesBody>(data) {
        if let Some(changes) = refused(body.into_changes(f.app.limits)) {
            let mut app = f.app.clone();
            if refused(onboarding::update_application(&mut app, changes, &f.tenant)).is_none() {
                assert_eq!(app, f.app, "a refused change left the application changed");
            }
        }
    }
    if let Some(q) = parse::<Question>(data) {
        let _ = check_login(&f.app, Some(&f.tenant), q.source, today);
        let _ = check_envelope_from(&f.app, &f.tenant, &q.envelope_from);
        let header_from = q.header_from.unwrap_or(q.envelope_from);
        let _ = check_header_from(&f.app, &f.tenant, &[header_from]);
    }
    // The handler's own check: more than 100 is a 422.
    let _ = parse::<ShareBody>(data).map(|body| body.percent);
    if let Some(body) = parse::<NewKey>(data) {
        if let Some(domain) = refused(onboarding::new_dkim_key(&body.domain, &body.selector, &[])) {
            assert!(domain.contains('.') && domain == domain.to_ascii_lowercase());
        }
        let _ = body.algorithm;
    }
    if let Some(body) = parse::<NewToken>(data) {
        refused(onboarding::token(&body.name, body.role, body.tenant.as_deref()));
    }
    // Taken as they come: any allocation is one.
    let _ = parse::<AllocationBody>(data).map(|body| (body.hourly, body.yearly));
    if let Some(body) = parse::<CapsBody>(data) {
        let _ = body.caps();
    }
    if let Some(body) = parse::<RouteBody>(data)
        && let RouteKind::Smarthost = body.kind
        && let Some(target) = &body.smarthost
    {
        refused(onboarding::smart_host(
            target,
            body.tls_required,
            body.username,
            body.password,
        ));
    }
    if let Some(body) = parse::<CommandBody>(data) {
        let _ = ferry_admin::commands::changes_something(&body.args);
    }
});

/// The body as the API parses it; a refusal must be a 4xx answer, and
/// what the API accepts must be exactly what is JSON of that type.
fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    let parsed = parse_json::<T>(data);
    let strict = serde_json::from_slice::<T>(data);
    assert_eq!(
        parsed.is_ok(),
        strict.is_ok(),
        "{}: the API's parse and serde_json disagree: {:?} / {:?}",
        std::any::type_name::<T>(),
        parsed.as_ref().err(),
        strict.as_ref().err(),
    );
    match parsed {
        Ok(body) => Some(body),
        Err(problem) => {
            answer(problem);
            None
        }
    }
}

/// The value, or None after checking the refusal answers 4xx.
fn refused<T, E: Into<Problem>>(result: Result<T, E>) -> Option<T> {
    result.map_err(|e| answer(e.into())).ok()
}

fn answer(problem: Problem) {
    assert!(problem.status.is_client_error(), "{problem:?}");
    let response = problem.into_response();
    assert!(response.status().is_client_error());
}
