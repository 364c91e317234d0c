//! Errors as RFC 9457 problem details: `application/problem+json` with the
//! HTTP status, a title, a human detail, a stable machine-readable `code`
//! and, for a bad value, the `field` it names.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_core::onboarding::Invalid;
use ferry_store::StoreError;
use serde_json::json;

/// The problem details as documented (RFC 9457 plus `code` and `field`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used
pub struct ProblemDoc {
    /// `urn:ferry:problem:{code}`.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable and machine-readable, e.g. `not_found`, `invalid_field`.
    code: String,
    /// The field at fault, for a 422.
    field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            field: None,
        }
    }

    /// 422: a value the API cannot use, naming its field.
    pub fn invalid(code: &'static str, field: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            detail: detail.into(),
            field: Some(field.into()),
        }
    }

    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer ferry_…)",
        )
    }

    pub fn forbidden() -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token's role does not allow this call",
        )
    }

    /// 500: a failure of the relay's own (never the caller's input).
    pub fn internal(detail: impl std::fmt::Display) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail.to_string())
    }

    pub fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", format!("no {}", what.into()))
    }
}

/// An unknown path.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no_such_route", "no such route in the admin API")
}

impl From<Invalid> for Problem {
    fn from(e: Invalid) -> Problem {
        Problem::invalid(e.code, e.field, e.message)
    }
}

/// A query string that does not parse: 400.
impl From<axum::extract::rejection::QueryRejection> for Problem {
    fn from(e: axum::extract::rejection::QueryRejection) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::AlreadyExists(what) => {
                Problem::new(StatusCode::CONFLICT, "already_exists", format!("{what} already exists"))
            }
            StoreError::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}")),
            StoreError::InUse(why) => Problem::new(StatusCode::CONFLICT, "in_use", why),
            other => {
                tracing::error!(error = %other, "admin API: store failure");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; try again",
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("urn:ferry:problem:{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A JSON body parsed into `T`: 400 when it is not JSON, 422 naming the
/// field when a field is unknown, missing or of the wrong type, 413 when
/// it is too large.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, Problem> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {} bytes", crate::MAX_BODY_BYTES),
            )
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "unreadable_body", e.body_text())
        }
    })?;
    parse_json(&bytes)
}

/// A request body's bytes parsed into `T`: 400 when they are not JSON, 422
/// naming the field when a field is unknown, missing or of the wrong type.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        // Nothing but whitespace may follow the value.
        Ok(value) => de
            .end()
            .map(|()| value)
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string())),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    inner.to_string(),
                ));
            }
            let field = unknown_field(&inner.to_string()).unwrap_or(path);
            Err(Problem {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_field",
                detail: inner.to_string(),
                field: (field != ".").then_some(field),
            })
        }
    }
}

/// serde names an unknown field only in its message: "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_one_json_value_and_nothing_after_it() {
        // Found by fuzzing (admin_json): bytes after the value were ignored.
        let input = b"{\"domains\":[\"example.test\"],\"contact\":null}\xff\xff";
        let problem = parse_json::<crate::TenantChanges>(input).err().expect("refused");
        assert_eq!(
            (problem.status, problem.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        let problem = parse_json::<crate::ShareBody>(b"{\"percent\": 5} {}")
            .err()
            .expect("refused");
        assert_eq!(problem.code, "malformed_json");
        assert_eq!(
            parse_json::<crate::ShareBody>(b" {\"percent\": 5}\r\n").map(|b| b.percent),
            Ok(5)
        );
    }
}
