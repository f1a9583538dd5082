//! The OpenAPI 3.1 document, generated from the route table so it cannot
//! drift from what the server routes.

use serde_json::{Value, json};

use crate::authz::Access;
use crate::routes::table;

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (spec, _) in table() {
        if !spec.api {
            continue;
        }
        let params: Vec<Value> = spec
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}))
            .collect();
        let security = match spec.access {
            Access::Public => json!([]),
            _ => json!([{"bearer": []}, {"session": []}]),
        };
        let access = match spec.access {
            Access::Public => "public".to_owned(),
            Access::SignedIn => "any signed-in user".to_owned(),
            Access::Admin => "administrators".to_owned(),
            Access::InstallationAudit => "administrators and auditors".to_owned(),
            Access::Study(p) => format!("roles with {p:?} on the study"),
        };
        let mut responses = serde_json::Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "Success", "content": {"application/json": {}}}),
        );
        if spec.access != Access::Public {
            responses.insert(
                "401".into(),
                json!({"$ref": "#/components/responses/Problem"}),
            );
            responses.insert(
                "403".into(),
                json!({"$ref": "#/components/responses/Problem"}),
            );
        }
        responses.insert(
            "4XX".into(),
            json!({"$ref": "#/components/responses/Problem"}),
        );
        let mut op = json!({
            "summary": spec.summary,
            "description": format!("Access: {access}."),
            "operationId": format!("{}_{}", spec.method.as_str().to_lowercase(), spec.path.trim_start_matches('/').replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "security": security,
            "responses": responses,
        });
        if matches!(spec.method.as_str(), "POST" | "PUT") {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        let entry = paths
            .entry(spec.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[spec.method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Trellis API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Clinical research platform API. Errors are RFC 9457 problem+json with a stable `code`. Lists of audit entries are cursor-paginated (`next_cursor`).",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API token issued with `trellis user token`"},
                "session": {"type": "apiKey", "in": "cookie", "name": "trellis_session"},
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "code", "detail"],
                    "properties": {
                        "type": {"type": "string", "format": "uri"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "code": {"type": "string", "description": "Stable machine-readable error code"},
                        "detail": {"type": "string"},
                        "field": {"type": "string", "description": "The input field at fault, when there is one"},
                    },
                },
            },
            "responses": {
                "Problem": {"description": "Error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
            },
        },
    })
}
