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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use utoipa::openapi::path::Operation;

    use super::OpenApi;

    /// Every operation of the document, as `METHOD path`.
    fn operations(doc: &OpenApi) -> Vec<(String, &Operation)> {
        let mut out = Vec::new();
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
                ("QUERY", &item.query),
            ];
            for (method, operation) in methods {
                if let Some(operation) = operation {
                    out.push((format!("{method} {path}"), operation));
                }
            }
            for (method, operation) in &item.additional_operations {
                out.push((format!("{method} {path}"), operation));
            }
        }
        out
    }

    /// Client generators name methods after operationIds and group them
    /// by tag: every operation, those added later too, needs a unique
    /// snake_case operationId (utoipa's default, the handler's name, is
    /// `list` for half the modules) and a tag the document declares.
    #[test]
    fn every_operation_has_a_unique_operation_id_and_a_declared_tag() {
        let doc = crate::openapi();
        let declared: BTreeSet<&str> = doc.tags.iter().flatten().map(|t| t.name.as_str()).collect();
        for tag in doc.tags.iter().flatten() {
            assert!(
                tag.description.as_deref().is_some_and(|d| !d.is_empty()),
                "tag {} has a description",
                tag.name
            );
        }
        assert_eq!(
            declared.len(),
            doc.tags.as_ref().map_or(0, Vec::len),
            "tags declared once each"
        );
        let ops = operations(&doc);
        assert!(ops.len() >= 30, "{} operations", ops.len());
        let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
        let mut used = BTreeSet::new();
        for (name, operation) in &ops {
            let id = operation
                .operation_id
                .as_deref()
                .unwrap_or_else(|| panic!("{name} has no operationId"));
            assert!(
                id.contains('_')
                    && id.starts_with(|c: char| c.is_ascii_lowercase())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}: operationId {id:?} is not snake_case verb_noun (set `operation_id` in its #[utoipa::path])"
            );
            if let Some(other) = ids.insert(id, name) {
                panic!("operationId {id:?} of {name} is also {other}'s");
            }
            let tags = operation.tags.as_deref().unwrap_or_default();
            assert!(!tags.is_empty(), "{name} has no tag");
            for tag in tags {
                assert!(
                    declared.contains(tag.as_str()),
                    "{name}: tag {tag:?} is not declared in #[openapi(tags(...))]"
                );
                used.insert(tag.as_str());
            }
        }
        let unused: Vec<_> = declared.difference(&used).collect();
        assert!(unused.is_empty(), "declared tags no operation uses: {unused:?}");
    }
}
