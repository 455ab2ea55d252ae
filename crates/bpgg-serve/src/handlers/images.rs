//! `/v1/projects/{id}/images`: upload (with a role), list, download, change the role, delete;
//! masks: upload (checked against the image's size), download as PNG, delete.

use std::path::Path as FsPath;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bpgg::data::image_io::{decode_image_bytes, decode_mask_bytes};
use image::ImageFormat;
use serde::Deserialize;

use crate::engine::blocking;
use crate::error::ApiError;
use crate::extract;
use crate::state::AppState;
use crate::store::{ImageInfo, ImageRecord, Role};

/// How the service names an uploaded body in errors.
pub const BODY: &str = "request body";

fn role_param(value: Option<&String>) -> Result<Role, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::bad_request("say the image's role: ?role=defect or ?role=normal")
    })?;
    Role::parse(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role must be `defect` or `normal`, not `{}`",
            value.escape_debug()
        ))
    })
}

/// The name of a decodable format, and the MIME type it is served with.
pub fn format_name(format: Option<ImageFormat>) -> &'static str {
    match format {
        Some(ImageFormat::Png) => "png",
        Some(ImageFormat::Jpeg) => "jpeg",
        Some(ImageFormat::Tiff) => "tiff",
        _ => "bin",
    }
}

fn mime(format: &str) -> &'static str {
    match format {
        "png" => "image/png",
        "jpeg" => "image/jpeg",
        "tiff" => "image/tiff",
        _ => "application/octet-stream",
    }
}

fn unknown_image(project: &str, image: &str) -> ApiError {
    ApiError::not_found(format!("image {image} in project {project}"))
}

/// `POST /v1/projects/{id}/images?role=defect|normal` with the image file as the body → `201`.
/// The image is decoded (checked against the pixel limit) before it is stored.
pub async fn upload(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let role = role_param(extract::query(query.as_deref(), &["role"])?.get("role"))?;
    let body = extract::body(body, state.config.max_body_bytes)?;
    let permit = state.admission.admit(&state.metrics)?;
    let limits = state.config.image_limits();
    let store = Arc::clone(&state.store);
    let project = id.clone();
    let image = blocking(
        Some(permit),
        move || -> Result<Option<ImageInfo>, ApiError> {
            let decoded = decode_image_bytes(FsPath::new(BODY), &body, limits)?;
            let format = format_name(image::guess_format(&body).ok());
            let size = (decoded.width(), decoded.height());
            drop(decoded);
            Ok(store.add_image(&project, role, &body, format, size)?)
        },
    )
    .await??;
    let image = image.ok_or_else(|| ApiError::unknown_project(&id))?;
    let location = format!("/v1/projects/{id}/images/{}", image.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(image),
    )
        .into_response())
}

/// `GET /v1/projects/{id}/images`: id, role, size, format and whether it has a mask.
pub async fn list(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let lookup = id.clone();
    let images = state.store_op(move |s| s.images(&lookup)).await?;
    let images = images.ok_or_else(|| ApiError::unknown_project(&id))?;
    let infos: Vec<ImageInfo> = images.into_iter().map(|r| r.info).collect();
    Ok(Json(infos).into_response())
}

/// The record of `{id}/images/{image_id}`, or `404`.
async fn record(
    state: &AppState,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<ImageRecord, ApiError> {
    let (project, image) = extract::image_path(ids)?;
    let (p, i) = (project.clone(), image.clone());
    state
        .store_op(move |s| s.image(&p, &i))
        .await?
        .ok_or_else(|| unknown_image(&project, &image))
}

/// `GET /v1/projects/{id}/images/{image_id}`: the image file as uploaded.
pub async fn download(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let record = record(&state, ids).await?;
    let blob = record.blob.clone();
    let bytes = state.store_op(move |s| s.read_blob(&blob)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, mime(&record.info.format)),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: Role,
}

/// `PATCH /v1/projects/{id}/images/{image_id}` `{"role": "defect"|"normal"}`.
pub async fn set_role(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (project, image) = extract::image_path(ids)?;
    let body = extract::body(body, state.config.max_body_bytes)?;
    let RoleBody { role } = extract::json(&body, "image")?;
    let (p, i) = (project.clone(), image.clone());
    let record = state.store_op(move |s| s.set_role(&p, &i, role)).await?;
    let record = record.ok_or_else(|| unknown_image(&project, &image))?;
    Ok(Json(record.info).into_response())
}

/// `DELETE /v1/projects/{id}/images/{image_id}` → `204` (with its mask).
pub async fn delete(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (project, image) = extract::image_path(ids)?;
    let (p, i) = (project.clone(), image.clone());
    if !state.store_op(move |s| s.delete_image(&p, &i)).await? {
        return Err(unknown_image(&project, &image));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/projects/{id}/images/{image_id}/mask` with a mask image as the body: it must have
/// the image's size; a pixel is defect when its gray value is above 127 (16-bit: nonzero). It is
/// stored as a 0/255 PNG, which is what `GET .../mask` answers and what a fit reads.
pub async fn put_mask(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let record = record(&state, ids).await?;
    let body = extract::body(body, state.config.max_body_bytes)?;
    let permit = state.admission.admit(&state.metrics)?;
    let limits = state.config.image_limits();
    let store = Arc::clone(&state.store);
    let project = record.project.clone();
    let id = record.info.id.clone();
    let updated = blocking(
        Some(permit),
        move || -> Result<Option<ImageRecord>, ApiError> {
            let size = (record.info.width, record.info.height);
            let mask = decode_mask_bytes(FsPath::new(BODY), &body, Some(size), limits)?;
            let png = encode_png(image::DynamicImage::ImageLuma8(mask.to_gray()))?;
            Ok(store.set_mask(&project, &record.info.id, Some(&png))?)
        },
    )
    .await??;
    let updated = updated.ok_or_else(|| ApiError::not_found(format!("image {id}")))?;
    Ok(Json(updated.info).into_response())
}

/// `GET /v1/projects/{id}/images/{image_id}/mask`: the mask as a 0/255 PNG.
pub async fn get_mask(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let record = record(&state, ids).await?;
    let Some(mask) = record.mask_blob.clone() else {
        return Err(ApiError::not_found(format!(
            "mask for image {} (it has none yet)",
            record.info.id
        )));
    };
    let bytes = state.store_op(move |s| s.read_blob(&mask)).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], bytes).into_response())
}

/// `DELETE /v1/projects/{id}/images/{image_id}/mask` → `204`.
pub async fn delete_mask(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let record = record(&state, ids).await?;
    if record.mask_blob.is_none() {
        return Err(ApiError::not_found(format!(
            "mask for image {} (it has none)",
            record.info.id
        )));
    }
    let (p, i) = (record.project.clone(), record.info.id.clone());
    state.store_op(move |s| s.set_mask(&p, &i, None)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PNG bytes of an image.
pub fn encode_png(image: image::DynamicImage) -> Result<Vec<u8>, ApiError> {
    let mut buf = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut buf, ImageFormat::Png)
        .map_err(|e| ApiError::internal(format!("cannot encode a PNG: {e}")))?;
    Ok(buf.into_inner())
}
