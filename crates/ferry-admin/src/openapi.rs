//! What every operation of the OpenAPI document shares, added once: the
//! bearer token scheme, and the problem responses any call can meet
//! (bad input, no or wrong token, a role that may not, not found, a
//! conflict, a body too large, the store down).

use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

pub struct Conventions;

const PROBLEMS: &[(&str, &str)] = &[
    ("400", "Malformed JSON or query"),
    ("401", "No valid bearer token"),
    ("403", "The token's role does not allow this call"),
    ("404", "No such record, or one this token may not see"),
    (
        "409",
        "Conflicts with the current state (a name taken, a tenant still in use)",
    ),
    ("413", "The request body is too large"),
    ("422", "A value the API cannot use; `field` names it"),
    ("503", "The store is unavailable; try again"),
];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ferry_<id>_<secret>")
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in PROBLEMS {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_string())
                        .or_insert_with(|| problem_response(description).into());
                }
            }
        }
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ProblemDoc")))
                .build(),
        )
        .build()
}
