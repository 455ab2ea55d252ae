//! Health, metrics, the OpenAPI document, what the service offers (`/v1/info`), the studio's
//! static assets, and the answers for unknown routes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bpgg::model::ModelConfig;

use super::fit::{data_files, CHECKPOINTS_DIR, WEIGHTS_DIR};
use crate::assets;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::SCHEMA_VERSION;

/// `GET /healthz` → `200 ok` (no token needed).
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let counts = state.store_op(|s| s.counts()).await.ok();
    let text = state.metrics.render(counts, state.admission.admitted());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

/// `GET /v1/info`: version, limits, the library's default model options, and the checkpoint
/// and weight files a fit may name.
pub async fn info(State(state): State<AppState>) -> Response {
    let c = &state.config;
    let dir = Arc::clone(&state.store).dir().to_path_buf();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "schema_version": SCHEMA_VERSION,
        "device": bpgg::device::device_name(state.encoders.device()),
        "limits": {
            "max_body_bytes": c.max_body_bytes,
            "max_pixels": c.max_pixels,
            "queue_depth": c.queue_depth,
            "max_batch": c.max_batch,
            "workers": c.workers,
            "request_timeout_s": c.request_timeout.as_secs_f64(),
        },
        "model_defaults": ModelConfig::default(),
        "checkpoints": data_files(&dir, CHECKPOINTS_DIR),
        "weights": data_files(&dir, WEIGHTS_DIR),
    }))
    .into_response()
}

/// `GET /`: the studio's page.
pub async fn index(headers: HeaderMap) -> Response {
    asset_response("index.html", &headers)
}

/// `GET /assets/{*path}`: the studio's embedded files.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    asset_response(&format!("assets/{path}"), &headers)
}

/// An embedded file, or `304` when the client's copy (`If-None-Match`) is current.
fn asset_response(path: &str, headers: &HeaderMap) -> Response {
    let Some(a) = assets::find(path) else {
        return ApiError::not_found(format!("asset `{}`", path.escape_debug())).into_response();
    };
    let etag = a.etag();
    let current = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    let cache = [
        (header::CACHE_CONTROL, a.cache_control().to_string()),
        (header::ETAG, etag),
    ];
    if current {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        [(header::CONTENT_TYPE, a.content_type.to_string())],
        cache,
        a.bytes,
    )
        .into_response()
}

/// Unknown routes: `404` in JSON.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    ApiError::not_found(format!("route {method} {}", uri.path().escape_debug())).into_response()
}

/// Known route, other method: `405` in JSON.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut e = ApiError::bad_request(format!(
        "{method} is not allowed on {} (see /v1/openapi.json)",
        uri.path().escape_debug()
    ));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.into_response()
}
