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
            .map(|name| match name {
                "form" => json!({"name": name, "in": "path", "required": true, "description": "A form instance `EVENT[n]/FORM[n]`, percent-encoded as one path segment (`/` as `%2F`)", "schema": {"type": "string"}}),
                "form_oid" => json!({"name": name, "in": "path", "required": true, "description": "A form's OID in the study definition, e.g. `F.VS`", "schema": {"type": "string"}}),
                _ => json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}),
            })
            .chain(query_parameters(spec.method.as_str(), spec.path))
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
        let content = if spec.path.contains("/exports/") {
            json!({"text/csv": {"schema": {"type": "string"}}})
        } else {
            json!({"application/json": {}})
        };
        responses.insert(
            "200".into(),
            json!({"description": "Success", "content": content}),
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
            let schema = request_schema(spec.method.as_str(), spec.path)
                .unwrap_or_else(|| json!({"type": "object"}));
            op["requestBody"] = if spec.path == "/api/v1/studies/{study}/odm" {
                json!({"required": true, "content": {"application/xml": {"schema": {"type": "string", "description": "A CDISC ODM 1.3.x document"}}}})
            } else {
                json!({"required": true, "content": {"application/json": {"schema": schema}}})
            };
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

const ITEM_KEY: &str = "EVENT[n]/FORM[n]/GROUP[n]/ITEM";

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// Query-string parameters of GET routes that take them.
fn query_parameters(method: &str, path: &str) -> Vec<Value> {
    let q = |name: &str, description: &str, required: bool| json!({"name": name, "in": "query", "required": required, "description": description, "schema": {"type": "string"}});
    match (method, path) {
        ("GET", "/api/v1/studies/{study}/queries") => vec![
            q("status", "open, answered or closed", false),
            q("subject", "Only this subject's queries (uuid)", false),
        ],
        ("GET", "/api/v1/studies/{study}/subjects/{subject}/history") => {
            vec![q("item", &format!("The item, {ITEM_KEY}"), true)]
        }
        ("POST", "/api/v1/studies/{study}/odm") => vec![
            q("check", "true: only report what would be imported", false),
            q(
                "default_site",
                "Site code for new subjects whose SiteRef matches no site",
                false,
            ),
            q(
                "file_name",
                "The file's name, recorded in the audit trail",
                false,
            ),
        ],
        ("GET", "/api/v1/studies/{study}/audit" | "/api/v1/audit") => vec![
            q("site", "Site id", false),
            q("subject", "Subject id", false),
            q("user", "User id (the actor)", false),
            q("entity_type", "e.g. item, subject, query", false),
            q("entity_id", "The entity's id", false),
            q("from", "RFC 3339 time or date (inclusive)", false),
            q("to", "RFC 3339 time or date (inclusive)", false),
            q("limit", "Page size (default 100, at most 1000)", false),
            q("cursor", "`next_cursor` of the previous page", false),
        ],
        _ => Vec::new(),
    }
}

/// The JSON body each POST and PUT route takes.
fn request_schema(method: &str, path: &str) -> Option<Value> {
    let object = |required: &[&str], properties: Value| json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties});
    let values = json!({"type": "object", "additionalProperties": {"type": ["string", "null"]}});
    let reason = string("Reason for change; required when a saved value changes");
    let text = string("Message text");
    Some(match (method, path) {
        ("POST", "/api/v1/studies/{study}/subjects") => object(
            &["site", "screening_number"],
            json!({"site": {"type": "string", "format": "uuid"}, "screening_number": string("Unique in the study")}),
        ),
        ("PUT", "/api/v1/studies/{study}/subjects/{subject}/items") => {
            object(&["values"], json!({"values": values, "reason": reason}))
        }
        ("PUT", "/api/v1/studies/{study}/subjects/{subject}/forms/{form}") => object(
            &["values"],
            json!({
                "values": {"type": "object", "description": "`GROUP[row]/ITEM` to its value, or null to clear it", "additionalProperties": {"type": ["string", "null"]}},
                "reason": reason,
            }),
        ),
        ("POST", "/api/v1/studies/{study}/signatures") => object(
            &["subject", "meaning", "password"],
            json!({
                "subject": {"type": "string", "format": "uuid"},
                "meaning": {"type": "string", "enum": ["authored", "reviewed", "approved", "responsible"]},
                "password": string("The signer's password, re-entered"),
            }),
        ),
        ("POST", "/api/v1/studies/{study}/subjects/{subject}/queries") => object(
            &["item", "text"],
            json!({"item": string(ITEM_KEY), "text": text}),
        ),
        (
            "POST",
            "/api/v1/studies/{study}/subjects/{subject}/queries/{query}/answer"
            | "/api/v1/studies/{study}/subjects/{subject}/queries/{query}/close"
            | "/api/v1/studies/{study}/subjects/{subject}/queries/{query}/reopen",
        ) => object(&[], json!({"text": text})),
        ("POST", "/api/v1/studies/{study}/subjects/{subject}/verifications") => object(
            &["items"],
            json!({
                "items": {"type": "array", "items": string(ITEM_KEY), "minItems": 1},
                "verified": {"type": "boolean", "default": true, "description": "false withdraws the verification"},
            }),
        ),
        ("PUT", "/api/v1/studies/{study}/subjects/{subject}/status") => object(
            &["status", "reason"],
            json!({
                "status": {"type": "string", "enum": ["screening", "screen_failed", "enrolled", "randomized", "completed", "withdrawn"]},
                "reason": string("Reason for the change"),
            }),
        ),
        ("PUT", "/api/v1/studies/{study}/subjects/{subject}/metadata-version") => object(
            &["oid", "reason"],
            json!({
                "oid": string("The metadata version's OID"),
                "reason": string("Reason for the move"),
            }),
        ),
        ("PUT", "/api/v1/studies/{study}/sdv-plan") => object(
            &["sample_percent"],
            json!({
                "critical_items": {"type": "array", "items": {"type": "string"}, "description": "ItemOIDs verified for every subject"},
                "critical_forms": {"type": "array", "items": {"type": "string"}, "description": "FormOIDs verified completely for every subject"},
                "first_subjects_per_site": {"type": ["integer", "null"], "minimum": 0, "description": "The first N subjects registered at each site are verified completely; null: every subject"},
                "sample_percent": {"type": "integer", "minimum": 0, "maximum": 100, "description": "Share of the other subjects verified completely"},
                "seed": string("Unsigned 64-bit seed of the sample, as a decimal string"),
                "reason": string("Required to change an existing plan"),
            }),
        ),
        ("PUT", "/api/v1/studies/{study}/locks") => object(
            &["state"],
            json!({
                "subject": {"type": "string", "format": "uuid", "description": "Omitted: the whole study"},
                "form": string("EVENT[n]/FORM[n]; omitted: the whole casebook (or study)"),
                "state": {"type": "string", "enum": ["frozen", "locked", "open"]},
                "reason": string("Required to reopen"),
            }),
        ),
        _ => return None,
    })
}
