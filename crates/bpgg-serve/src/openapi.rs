//! The OpenAPI 3 document, generated from the route table ([`crate::routes::table`]) and from
//! the library's defaults: the schema of the fit options is derived from
//! `ModelConfig::default()`, so it follows the library's configuration as it changes.

use bpgg::model::ModelConfig;
use serde_json::{json, Map, Value};

use crate::routes::{table, Route};

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in table() {
        let path = route.path.replace("{*path}", "{path}");
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation(&route);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "bpgg serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Few-shot anomaly localization as a service: projects of defect \
                images with masks and normal images, fitted models, and predictions. Every \
                error answer is JSON `{\"error\": \"...\"}`. With a token (`--token`), routes \
                marked with the bearer scheme need `Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        },
    })
}

fn operation(route: &Route) -> Value {
    let doc = &route.doc;
    let mut parameters: Vec<Value> = path_params(route.path)
        .into_iter()
        .map(|name| {
            let description = match name {
                "path" => "File path under /assets/.",
                _ => "Opaque id (32 hex digits), as returned when the thing was created.",
            };
            json!({
                "name": name, "in": "path", "required": true,
                "schema": { "type": "string" }, "description": description,
            })
        })
        .collect();
    parameters.extend(doc.query.iter().map(|q| {
        json!({
            "name": q.name, "in": "query", "required": q.required,
            "description": q.description, "schema": q.schema,
        })
    }));
    let mut responses = Map::new();
    for a in &doc.answers {
        let mut answer = json!({ "description": a.description });
        if !a.content.is_empty() {
            answer["content"] = content(&a.content);
        }
        responses.insert(a.status.to_string(), answer);
    }
    let mut op = json!({
        "operationId": doc.operation_id,
        "tags": [doc.tag],
        "summary": doc.summary,
        "parameters": parameters,
        "responses": responses,
        "security": if doc.auth { json!([{ "bearer": [] }]) } else { json!([]) },
    });
    if !doc.description.is_empty() {
        op["description"] = json!(doc.description);
    }
    if let Some((media, required)) = &doc.body {
        op["requestBody"] = json!({ "required": required, "content": content(media) });
    }
    op
}

fn content(media: &[(&str, Value)]) -> Value {
    Value::Object(
        media
            .iter()
            .map(|(t, s)| (t.to_string(), json!({ "schema": s })))
            .collect(),
    )
}

/// The names of `{...}` captures in a path.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| name.trim_start_matches('*'))
        .collect()
}

/// A schema describing `value`'s shape, with `value` as each field's default: how the fit
/// options' schema is derived from the library's `ModelConfig::default()`.
fn schema_of(value: &Value) -> Value {
    match value {
        Value::Object(fields) => json!({
            "type": "object",
            "additionalProperties": false,
            "properties": fields.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect::<Map<_, _>>(),
        }),
        Value::Array(_) => {
            json!({ "type": "array", "items": { "type": "string" }, "default": value })
        }
        Value::String(_) => json!({ "type": "string", "default": value }),
        Value::Number(n) if n.is_u64() || n.is_i64() => {
            json!({ "type": "integer", "default": value })
        }
        Value::Number(_) => json!({ "type": "number", "default": value }),
        Value::Bool(_) => json!({ "type": "boolean", "default": value }),
        Value::Null => json!({ "type": "string", "nullable": true, "default": null }),
    }
}

fn fit_options() -> Value {
    let defaults = serde_json::to_value(ModelConfig::default()).expect("a config serialises");
    let mut schema = schema_of(&defaults);
    let props = schema["properties"]
        .as_object_mut()
        .expect("ModelConfig is an object");
    props["scoring"]["enum"] = json!(["auto", "bpgg", "knn", "hybrid"]);
    props["size"] = json!({
        "description": "The working size: \"WxH\" (exact), a long side in pixels (aspect kept, \
                        16..=4096), \"native\", or {\"scale\": S}.",
        "default": defaults["size"],
        "oneOf": [
            {"type": "integer"},
            {"type": "string"},
            {"type": "object", "properties": {"scale": {"type": "number"}}}
        ]
    });
    props["tile"] = json!({
        "description": "Overlapping tiles of the working image, scored one by one and \
                        stitched (null: whole images).",
        "oneOf": [
            {"type": "null"},
            {"type": "object", "properties": {
                "size": {"type": "integer"}, "overlap": {"type": "integer"}
            }}
        ]
    });
    props["backbone"]["properties"]["weights"]["description"] = json!(
        "A weight file name in the data dir's weights/ folder (null: the embedded \
         EfficientNet-Lite0)."
    );
    props.insert(
        "checkpoint".into(),
        json!({ "type": "string", "nullable": true, "description":
            "A `bpgg train` checkpoint (file name in the data dir's checkpoints/ folder): its \
             projection head is stored with the model." }),
    );
    props.insert(
        "shots".into(),
        json!({ "type": "integer", "minimum": 0, "nullable": true, "description":
            "Use at most this many defect images (the first uploaded); default all." }),
    );
    props.insert(
        "normal_shots".into(),
        json!({ "type": "integer", "minimum": 0, "nullable": true, "description":
            "Use at most this many normal images (the first uploaded); default all." }),
    );
    schema["description"] = json!(
        "The library's model configuration (every key optional: missing ones take the defaults \
         shown), plus checkpoint, shots and normal_shots."
    );
    schema
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let int = json!({ "type": "integer" });
    let num = json!({ "type": "number" });
    let boolean = json!({ "type": "boolean" });
    let fit_summary = json!({
        "threshold": num, "threshold_rule": { "type": "string", "enum": ["support_f1", "normal_max", "user"] },
        "image_threshold": num,
        "scoring": { "type": "string", "enum": ["bpgg", "knn", "hybrid"] },
        "defects": int, "normals": int,
        "support_ids": { "type": "array", "items": string },
        "ms": int, "checkpoint": { "type": "string", "nullable": true },
        "config": { "type": "object", "description": "The whole model configuration." },
        "model_sha256": string, "model_bytes": int, "fitted_at": int,
    });
    let fit_keys: Vec<&str> = fit_summary
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    json!({
        "Error": object(&["error"], json!({ "error": string })),
        "Name": object(&["name"], json!({ "name": { "type": "string", "minLength": 1, "maxLength": 200 } })),
        "RoleChange": object(&["role"], json!({ "role": { "type": "string", "enum": ["defect", "normal"] } })),
        "Project": object(
            &["id", "name", "created_at", "images", "defects", "normals", "masked_defects", "model"],
            json!({
                "id": string, "name": string, "created_at": int, "images": int, "defects": int,
                "normals": int, "masked_defects": int,
                "model": { "allOf": [{ "$ref": "#/components/schemas/FitSummary" }], "nullable": true },
            }),
        ),
        "Image": object(
            &["id", "role", "width", "height", "bytes", "format", "has_mask", "created_at"],
            json!({
                "id": string, "role": { "type": "string", "enum": ["defect", "normal"] },
                "width": int, "height": int, "bytes": int,
                "format": { "type": "string", "enum": ["png", "jpeg", "tiff"] },
                "has_mask": boolean, "created_at": int,
            }),
        ),
        "FitOptions": fit_options(),
        "FitSummary": object(&fit_keys, fit_summary.clone()),
        "Region": object(
            &["x", "y", "w", "h", "area_px", "max_score"],
            json!({ "x": int, "y": int, "w": int, "h": int, "area_px": int, "max_score": num }),
        ),
        "Prediction": object(
            &["image_score", "defective", "threshold", "image_threshold", "defect_area_px",
              "defect_area_fraction", "width", "height", "regions", "model_sha256"],
            json!({
                "image_score": num, "defective": boolean, "threshold": num, "image_threshold": num,
                "defect_area_px": int, "defect_area_fraction": num, "width": int, "height": int,
                "regions": { "type": "array", "items": { "$ref": "#/components/schemas/Region" } },
                "model_sha256": string,
            }),
        ),
        "Info": object(
            &["version", "schema_version", "device", "limits", "model_defaults", "checkpoints", "weights"],
            json!({
                "version": string, "schema_version": int, "device": string,
                "limits": object(
                    &["max_body_bytes", "max_pixels", "queue_depth", "max_batch", "workers", "request_timeout_s"],
                    json!({ "max_body_bytes": int, "max_pixels": int, "queue_depth": int,
                            "max_batch": int, "workers": int, "request_timeout_s": num }),
                ),
                "model_defaults": { "type": "object" },
                "checkpoints": { "type": "array", "items": string },
                "weights": { "type": "array", "items": string },
            }),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once_with_its_path_parameters() {
        let doc = document();
        let routes = table();
        let mut operations = 0;
        for r in &routes {
            let path = r.path.replace("{*path}", "{path}");
            let op = &doc["paths"][&path][r.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {path} missing", r.method);
            for name in path_params(r.path) {
                assert!(
                    op["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{path}: {name}"
                );
            }
            assert!(op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|s| s.starts_with('2')));
            operations += 1;
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, operations);
        let ids: std::collections::HashSet<_> = routes.iter().map(|r| r.doc.operation_id).collect();
        assert_eq!(ids.len(), routes.len(), "operation ids are unique");
    }

    #[test]
    fn the_fit_options_follow_the_library_defaults() {
        let schema = fit_options();
        let defaults = serde_json::to_value(ModelConfig::default()).unwrap();
        for (key, value) in defaults.as_object().unwrap() {
            assert!(schema["properties"][key].is_object(), "{key}");
            if !value.is_object() {
                assert_eq!(&schema["properties"][key]["default"], value, "{key}");
            }
        }
        assert_eq!(schema["properties"]["tau"]["type"], "number");
        assert!(schema["properties"]["checkpoint"].is_object());
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(doc["components"]["schemas"][&name].is_object(), "{name}");
        }
    }
}
