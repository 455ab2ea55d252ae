//! `POST /v1/projects/{id}/predict` with one image as the body: the numbers `bpgg predict`
//! reports (the same library calls: `FittedModel::prepare` and `predict_prepared`), or the map,
//! the overlay or the mask.

use std::path::Path as FsPath;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bpgg::data::image_io::decode_image_bytes;
use bpgg::model::{Prediction, Region};
use bpgg::report::heatmap::overlay;
use serde::Serialize;

use super::images::{encode_png, BODY};
use crate::engine::blocking;
use crate::error::ApiError;
use crate::extract;
use crate::state::AppState;

/// What a predict answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The numbers, as JSON (default).
    Json,
    /// The anomaly map at the image's size, in [`MapFormat`].
    Map(MapFormat),
    /// The image with the map blended in and the mask's outline (PNG).
    Overlay,
    /// The mask, 0/255 (PNG).
    Mask,
}

/// How `output=map` is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapFormat {
    /// Single-channel float32 TIFF (what `bpgg predict` writes).
    Tiff,
    /// Raw little-endian float32, row-major; the size is in `X-Map-Width` / `X-Map-Height`
    /// (for a browser: `new Float32Array(await response.arrayBuffer())`).
    F32,
    /// `{"width", "height", "data": [...]}`.
    Json,
}

/// The predict JSON.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionBody {
    pub image_score: f32,
    pub defective: bool,
    pub threshold: f32,
    /// The image score at or above which the image is judged defective.
    pub image_threshold: f32,
    pub defect_area_px: usize,
    pub defect_area_fraction: f64,
    pub width: usize,
    pub height: usize,
    pub regions: Vec<Region>,
    /// SHA-256 of the model file that scored the image.
    pub model_sha256: String,
}

/// Parses `output`, `format` and `threshold`.
fn parse_query(raw: Option<&str>) -> Result<(Output, Option<f32>), ApiError> {
    let q = extract::query(raw, &["output", "format", "threshold"])?;
    let format = q.get("format").map(String::as_str);
    let output = match (q.get("output").map(String::as_str), format) {
        (None | Some("json"), None) => Output::Json,
        (Some("map"), None | Some("tiff")) => Output::Map(MapFormat::Tiff),
        (Some("map"), Some("f32")) => Output::Map(MapFormat::F32),
        (Some("map"), Some("json")) => Output::Map(MapFormat::Json),
        (Some("overlay"), None) => Output::Overlay,
        (Some("mask"), None) => Output::Mask,
        (Some("map"), Some(f)) => {
            return Err(ApiError::bad_request(format!(
                "format must be tiff, f32 or json, not `{}`",
                f.escape_debug()
            )))
        }
        (Some("json" | "overlay" | "mask") | None, Some(_)) => {
            return Err(ApiError::bad_request("format applies to output=map only"))
        }
        (Some(o), _) => {
            return Err(ApiError::bad_request(format!(
                "output must be json, map, overlay or mask, not `{}`",
                o.escape_debug()
            )))
        }
    };
    let threshold = q
        .get("threshold")
        .map(|t| {
            t.parse::<f32>()
                .ok()
                .filter(|t| t.is_finite())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "threshold must be a finite number, not `{}`",
                        t.escape_debug()
                    ))
                })
        })
        .transpose()?;
    Ok((output, threshold))
}

/// `POST /v1/projects/{id}/predict[?output=json|map|overlay|mask][&format=tiff|f32|json]
/// [&threshold=T]` with one image as the body.
pub async fn predict(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let (output, threshold) = parse_query(query.as_deref())?;
    let body = extract::body(body, state.config.max_body_bytes)?;
    let loaded = state.current_model(&id).await?;
    let permit = state.admission.admit(&state.metrics)?;
    let limits = state.config.image_limits();
    let model = std::sync::Arc::clone(&loaded);
    let keep_image = output == Output::Overlay;
    // The permit travels with the work: back from the decoder, on to the engine.
    let (decoded, permit) = blocking(None, move || {
        let decoded = decode_image_bytes(FsPath::new(BODY), &body, limits).and_then(|img| {
            let rgb = img.to_rgb8();
            // Refused here when the working size is too large to encode without tiles.
            let prepared = model.model.prepare(&rgb)?;
            Ok((prepared, keep_image.then_some(rgb)))
        });
        (decoded, permit)
    })
    .await?;
    let (prepared, image) = decoded?;
    let prediction = state
        .engine
        .predict(std::sync::Arc::clone(&loaded), prepared, threshold, permit)
        .await?;
    let sha = loaded.sha256.clone();
    let headers = summary_headers(&prediction, &sha);
    match output {
        Output::Json => Ok(Json(body_of(&prediction, sha)).into_response()),
        Output::Map(MapFormat::Json) => Ok((
            headers,
            Json(serde_json::json!({
                "width": prediction.map.width,
                "height": prediction.map.height,
                "data": prediction.map.data,
            })),
        )
            .into_response()),
        Output::Map(MapFormat::F32) => {
            let bytes: Vec<u8> = prediction
                .map
                .data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            Ok((
                headers,
                [(header::CONTENT_TYPE, "application/octet-stream")],
                bytes,
            )
                .into_response())
        }
        Output::Map(MapFormat::Tiff) => {
            let bytes = blocking(None, move || prediction.map.to_tiff_bytes())
                .await?
                .map_err(|e| ApiError::internal(format!("cannot encode the map as TIFF: {e}")))?;
            Ok((headers, [(header::CONTENT_TYPE, "image/tiff")], bytes).into_response())
        }
        Output::Overlay => {
            let image = image.expect("kept for the overlay");
            let png = blocking(None, move || {
                encode_png(image::DynamicImage::ImageRgb8(overlay(
                    &image,
                    &prediction.map,
                    prediction.threshold,
                )))
            })
            .await??;
            Ok((headers, [(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
        Output::Mask => {
            let gray = prediction.mask.to_gray();
            let png = blocking(None, move || {
                encode_png(image::DynamicImage::ImageLuma8(gray))
            })
            .await??;
            Ok((headers, [(header::CONTENT_TYPE, "image/png")], png).into_response())
        }
    }
}

fn body_of(p: &Prediction, model_sha256: String) -> PredictionBody {
    PredictionBody {
        image_score: p.image_score,
        defective: p.defective,
        threshold: p.threshold,
        image_threshold: p.image_threshold,
        defect_area_px: p.defect_area_px(),
        defect_area_fraction: p.defect_area_fraction(),
        width: p.map.width,
        height: p.map.height,
        regions: p.regions.clone(),
        model_sha256,
    }
}

/// The numbers of a prediction as headers, for the answers whose body is a picture or a map.
fn summary_headers(p: &Prediction, model_sha256: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-image-score", p.image_score.to_string());
    put("x-threshold", p.threshold.to_string());
    put("x-image-threshold", p.image_threshold.to_string());
    put("x-defective", p.defective.to_string());
    put("x-defect-area-px", p.defect_area_px().to_string());
    put("x-map-width", p.map.width.to_string());
    put("x-map-height", p.map.height.to_string());
    put("x-model-sha256", model_sha256.to_string());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_combinations() {
        assert_eq!(parse_query(None).unwrap(), (Output::Json, None));
        assert_eq!(
            parse_query(Some("output=map")).unwrap().0,
            Output::Map(MapFormat::Tiff)
        );
        assert_eq!(
            parse_query(Some("output=map&format=f32&threshold=0.25")).unwrap(),
            (Output::Map(MapFormat::F32), Some(0.25))
        );
        assert_eq!(
            parse_query(Some("output=overlay")).unwrap().0,
            Output::Overlay
        );
        for bad in [
            "output=heat",
            "format=f32",
            "output=map&format=png",
            "threshold=NaN",
            "threshold=x",
            "outptu=map",
            "output=map&output=json",
        ] {
            assert_eq!(
                parse_query(Some(bad)).unwrap_err().status,
                axum::http::StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
