//! The OpenAPI document, generated from the handlers' annotations and the types' schemas.

use crate::routes::{activities, companies, deals, ops, sales_lists, synonyms};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tsunagu",
        description = "Sales-activity API: activities, companies, deals, tags and sales lists, searched through the replicated index. Every write returns a `consistency_token`; pass it to a search to read your own write."
    ),
    paths(
        activities::search,
        activities::aggregate,
        activities::record,
        activities::get,
        activities::edit,
        activities::delete,
        companies::create,
        companies::get,
        companies::edit,
        companies::search,
        deals::create,
        deals::get,
        deals::edit,
        deals::tag,
        deals::untag,
        deals::tags,
        deals::search,
        sales_lists::create,
        sales_lists::get,
        sales_lists::add_deals,
        sales_lists::list,
        synonyms::get,
        synonyms::set,
        ops::pipeline_status,
    ),
    modifiers(&BearerAuth, &CommonResponses)
)]
struct ApiDoc;

/// The statuses that the extractors and the middleware give every operation, added here
/// once so that no handler's annotation can forget them: 401 (every `/api/v1` operation
/// needs a token), 503 (the store or index failed, the consistency wait ran out, the
/// request timed out), 400/413/415/422 for a JSON body, 422 for query and path
/// parameters, 404 for an id in the path.
struct CommonResponses;

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn add_common_responses(path: &str, operation: &mut Operation) {
    let has_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let has_path_params = path.contains('{');
    let mut common = vec![
        ("401", "`unauthorized`: no, unknown or revoked bearer token"),
        (
            "503",
            "`not_consistent_yet`: the consistency wait ran out; `unavailable`: the store or \
             index failed, or the request timed out",
        ),
    ];
    if operation.request_body.is_some() {
        common.extend([
            ("400", "`bad_request`: the body is not JSON"),
            ("413", "`payload_too_large`: the body is over 1 MiB"),
            (
                "415",
                "`unsupported_media_type`: the body is not sent as `application/json`",
            ),
        ]);
    }
    if operation.request_body.is_some() || has_query || has_path_params {
        common.push((
            "422",
            "`invalid`: a field or parameter breaks a rule (one entry per field), or is unknown",
        ));
    }
    if has_path_params {
        common.push(("404", "`not_found`: no such item in this account"));
    }
    for (status, description) in common {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_common_responses(path, operation);
            }
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant token from `tsunagu tenant create`"))
                    .build(),
            ),
        );
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::document;
    use std::collections::BTreeMap;

    fn operations(doc: &serde_json::Value) -> Vec<(String, String, &serde_json::Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                out.push((path.clone(), method.clone(), op));
            }
        }
        out
    }

    /// Issue 18: `search`, `create`, `get` and `edit` were the ids of several operations,
    /// which makes the document invalid (and generated clients clash).
    #[test]
    fn operation_ids_are_unique() {
        let doc = serde_json::to_value(document()).expect("serializes");
        let mut seen = BTreeMap::new();
        for (path, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                panic!("operationId {id:?} used by {other} and {method} {path}");
            }
        }
    }

    /// Every authenticated operation documents 401; every operation documents the 503 a
    /// timed-out request or a failed store gets.
    #[test]
    fn every_operation_documents_auth_and_unavailability() {
        let doc = serde_json::to_value(document()).expect("serializes");
        for (path, method, op) in operations(&doc) {
            let responses = &op["responses"];
            for status in ["401", "503"] {
                assert!(
                    responses.get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
            let has_body = op.get("requestBody").is_some();
            let has_params = op["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            if has_body {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.get(status).is_some(),
                        "{method} {path} takes a body but does not document {status}"
                    );
                }
            }
            if has_params || path.contains('{') {
                assert!(
                    responses.get("422").is_some() || responses.get("404").is_some(),
                    "{method} {path} takes parameters but documents neither 422 nor 404"
                );
            }
        }
    }

    /// Issue 18: CI validates the document with a real validator
    /// (`openapi-spec-validator` from PyPI, installed by
    /// `scripts/test-peers/openapi-validator.sh`; `TSUNAGU_OPENAPI_VALIDATOR` names it).
    #[test]
    fn the_document_passes_openapi_spec_validator() {
        let Some(validator) = std::env::var_os("TSUNAGU_OPENAPI_VALIDATOR") else {
            println!(
                "skipped: TSUNAGU_OPENAPI_VALIDATOR is not set \
                 (eval \"$(scripts/test-peers/openapi-validator.sh install)\")"
            );
            return;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("openapi.json");
        let text = serde_json::to_string_pretty(&document()).expect("serializes");
        std::fs::write(&file, text).expect("write the document");
        let output = std::process::Command::new(&validator)
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("running {validator:?}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "openapi-spec-validator rejects /openapi.json:\n{stdout}{stderr}"
        );
        println!("{}", stdout.trim());
    }
}

#[cfg(test)]
mod constraint_tests {
    use super::document;
    use serde_json::Value;

    fn parameter<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("GET {path} has no parameter {name}"))
    }

    /// Issue 18: the document states the rules the server enforces.
    #[test]
    fn the_document_states_the_enforced_constraints() {
        let doc = serde_json::to_value(document()).expect("serializes");
        for path in [
            "/api/v1/activities",
            "/api/v1/companies",
            "/api/v1/sales-lists",
        ] {
            let limit = &parameter(&doc, path, "limit")["schema"];
            assert_eq!(limit["minimum"], 1, "{path}: {limit}");
            assert_eq!(limit["maximum"], 1000, "{path}: {limit}");
        }
        let group_by = &parameter(&doc, "/api/v1/activities/aggregate", "group_by");
        assert_eq!(group_by["required"], true);
        let values: Vec<&str> = group_by["schema"]["enum"]
            .as_array()
            .expect("group_by is an enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            values.contains(&"action") && values.contains(&"day"),
            "{values:?}"
        );
        // The search refuses group_by, so it does not offer it.
        let search = doc["paths"]["/api/v1/activities"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        assert!(!search.iter().any(|p| p["name"] == "group_by"));
        let schemas = &doc["components"]["schemas"];
        let name = &schemas["NewCompany"]["properties"]["name"];
        assert_eq!(name["minLength"], 1, "{name}");
        assert!(name["pattern"].is_string(), "{name}");
        let user = &schemas["NewActivity"]["properties"]["user_id"];
        assert_eq!(user["maxLength"], 128, "{user}");
        let limit = &schemas["DealSearch"]["properties"]["limit"];
        assert_eq!(limit["maximum"], 1000, "{limit}");
        // Issue 19: the synonym list is read and replaced whole, with the same body.
        let synonyms = &doc["paths"]["/api/v1/synonyms"];
        assert_eq!(
            synonyms["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SynonymList",
            "{synonyms}"
        );
        assert!(
            synonyms["get"]["responses"]["200"].is_object(),
            "{synonyms}"
        );
        let groups = &schemas["SynonymList"]["properties"]["groups"];
        assert_eq!(groups["items"]["items"]["type"], "string", "{groups}");
        let action = &schemas["ActionType"];
        assert!(
            action["enum"].as_array().is_some_and(|v| v.len() == 6),
            "{action}"
        );
    }
}
