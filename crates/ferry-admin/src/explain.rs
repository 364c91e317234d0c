//! `POST /v1/apps/{name}/explain`: given where a message would come from,
//! its envelope and its header From, which rule would refuse it and with
//! what reply — or that it would pass. The checks are the session's own, in
//! the session's order (sign-in, MAIL, RCPT, end of DATA), so an
//! application's owner sees what the relay would answer.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use ferry_core::policy::{check_envelope_from, check_header_from, check_login};
use ferry_core::refusal::{AuthDetail, Refusal};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AdminState;
use crate::access::Caller;
use crate::directory::visible_app;
use crate::problem::{Problem, parse_body};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The client's address.
    #[schema(value_type = String, example = "10.1.2.3")]
    pub source: IpAddr,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// Default: the envelope sender.
    #[serde(default)]
    pub header_from: Option<String>,
}

#[utoipa::path(post, path = "/v1/apps/{name}/explain",
    operation_id = "explain_application_message", tag = "applications",
    params(("name" = String, Path, description = "The application's username")),
    request_body = Question,
    responses((status = 200, description = "The rule that would refuse the message, with its reply and reason, or that it would pass", body = Object)))]
pub async fn explain(
    caller: Caller,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let app = visible_app(&caller, &state, &name).await?;
    let q: Question = parse_body(body)?;
    if q.recipients.is_empty() {
        return Err(Problem::invalid(
            "no_recipients",
            "recipients",
            "name at least one recipient",
        ));
    }
    let tenant = state.store.tenant(&app.tenant).await?;
    let now = state.clock.now_ms();
    let today = ferry_core::clock::utc_date(now);
    let verdict = async {
        check_login(&app, tenant.as_ref(), q.source, today)
            .map_err(|r| ("auth", Refusal::AuthenticationFailed(AuthDetail::Refused(r))))?;
        let tenant = tenant
            .as_ref()
            .ok_or(("auth", Refusal::AuthenticationFailed(AuthDetail::UnknownUser)))?;
        check_envelope_from(&app, tenant, &q.envelope_from).map_err(|r| ("mail", Refusal::SenderNotAuthorised(r)))?;
        ferry_store::cap_room(state.store.as_ref(), &state.terms, tenant, &app, 1, now)
            .await
            .map_err(|r| ("mail", r))?;
        if q.recipients.len() > app.limits.max_recipients {
            return Err(("rcpt", Refusal::TooManyRecipients(app.limits.max_recipients)));
        }
        if tenant.bounces.suppressed == ferry_core::SuppressedMail::Refuse {
            for rcpt in &q.recipients {
                match state.store.suppression(&tenant.name, rcpt, now).await {
                    Ok(Some(entry)) => return Err(("rcpt", Refusal::Suppressed(Box::new(entry)))),
                    Ok(None) => {}
                    Err(e) => return Err(("rcpt", Refusal::StoreUnavailable(e.to_string()))),
                }
            }
        }
        let units = q.recipients.len() as u64;
        ferry_store::cap_room(state.store.as_ref(), &state.terms, tenant, &app, units, now)
            .await
            .map_err(|r| ("rcpt", r))?;
        let header_from = q.header_from.clone().unwrap_or_else(|| q.envelope_from.clone());
        check_header_from(&app, tenant, &[header_from]).map_err(|r| ("data", Refusal::HeaderFromNotAuthorised(r)))?;
        Ok::<(), (&str, Refusal)>(())
    }
    .await;
    // What the receiving servers see as the envelope-From.
    let (sent_as, why) = match tenant.as_ref().and_then(|t| t.bounces.domain.as_deref()) {
        Some(domain) => (
            format!("b-<queue id>-<recipient>-<signature>@{domain}"),
            "Ferry's own return path, one for each recipient, so bounces and complaints come back to its inbound listener",
        ),
        None => (q.envelope_from.clone(), "the application's own, as sent"),
    };
    Ok(Json(match verdict {
        Ok(()) => json!({
            "verdict": "pass",
            "detail": "the relay would accept this message (content checks — bulk rules, virus, spam — depend on the message itself)",
            "envelope_from_sent": sent_as,
            "envelope_from_why": why,
        }),
        Err((stage, refusal)) => {
            let reply = refusal.reply();
            json!({
                "verdict": "refused",
                "stage": stage,
                "reason": refusal.reason(),
                "reply": format!("{} {} {}", reply.code, reply.status, reply.text),
                "detail": refusal.to_string(),
            })
        }
    }))
}
