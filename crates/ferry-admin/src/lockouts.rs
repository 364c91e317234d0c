//! Sign-in lockouts in force across the cluster (see
//! `ferry_core::lockout`), and lifting them: the answer to "why can't our
//! application sign in?" once someone else's guessing locked it out.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Query, State};
use ferry_core::lockout::Lockout;
use ferry_core::token::Role;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::AdminState;
use crate::access::Caller;
use crate::problem::Problem;

#[utoipa::path(get, path = "/v1/lockouts", operation_id = "list_lockouts", tag = "lockouts",
    responses((status = 200, description = "Lockouts in force: kind (pair, username or address), username, address, failures, until_ms (admin)", body = [Object])))]
pub async fn list(caller: Caller, State(state): State<AdminState>) -> Result<Json<Vec<Lockout>>, Problem> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.store.lockouts(state.clock.now_ms()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LiftQuery {
    /// Lift the lockouts naming this username.
    username: Option<String>,
    /// Lift the lockouts naming this address.
    address: Option<String>,
}

#[utoipa::path(delete, path = "/v1/lockouts", operation_id = "lift_lockouts", tag = "lockouts", params(LiftQuery),
    responses((status = 200, description = "How many lockouts were lifted (admin)", body = Object)))]
pub async fn lift(
    caller: Caller,
    State(state): State<AdminState>,
    query: Result<Query<LiftQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let Query(q) = query?;
    let address = q
        .address
        .as_deref()
        .map(|a| a.parse::<IpAddr>())
        .transpose()
        .map_err(|_| Problem::invalid("invalid_address", "address", "not an IP address"))?;
    if q.username.is_none() && address.is_none() {
        return Err(Problem::invalid(
            "nothing_named",
            "username",
            "name a username, an address, or both",
        ));
    }
    let now = state.clock.now_ms();
    let lifted = state.store.lift_lockouts(q.username.as_deref(), address, now).await?;
    let object = format!(
        "lockouts of {}",
        [q.username.clone(), address.map(|a| a.to_string())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
    );
    crate::audit::record(
        &state,
        &caller,
        "lockout.lift",
        &object,
        None,
        Some(json!({ "lifted": lifted })),
    )
    .await;
    Ok(Json(json!({ "lifted": lifted })))
}
