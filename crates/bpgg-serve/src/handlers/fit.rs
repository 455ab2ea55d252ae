//! `POST /v1/projects/{id}/fit`, and the model: `GET .../model` (the `.bpgg` file) and
//! `GET .../model/info` (its summary).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bpgg::data::image_io::{decode_image_bytes, decode_mask_bytes};
use bpgg::model::{fit, load_head, FittedModel, ModelConfig, SupportSet};

use crate::error::ApiError;
use crate::extract;
use crate::models::LoadedModel;
use crate::state::{no_model, AppState};
use crate::store::{FitSummary, ImageRecord, Role};

/// Folder of the data dir holding `bpgg train` checkpoints a fit may name.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Folder of the data dir holding backbone weight files a fit may name.
pub const WEIGHTS_DIR: &str = "weights";

/// The keys of the fit body that are not model configuration.
const FIT_KEYS: [&str; 3] = ["checkpoint", "shots", "normal_shots"];

/// A fit's options: the library's `ModelConfig` JSON (missing fields take the library's
/// defaults) with three more keys: `checkpoint` (a file name under the data dir's
/// `checkpoints/`), `shots` and `normal_shots` (use at most that many defect / normal images, the
/// first uploaded; default: all).
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    pub config: ModelConfig,
    pub checkpoint: Option<String>,
    pub shots: Option<usize>,
    pub normal_shots: Option<usize>,
}

impl FitOptions {
    /// Parses a fit body (empty: every default). Malformed JSON, unknown keys and wrong types
    /// are `400`; values the library refuses, and files that are not in the data dir, `422`.
    pub fn parse(body: &[u8], data_dir: &FsPath) -> Result<(Self, Option<PathBuf>), ApiError> {
        let mut value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::json!({})
        } else {
            extract::json(body, "fit options")?
        };
        let object = value
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("fit options must be a JSON object"))?;
        let mut take = |key: &str| object.remove(key).filter(|v| !v.is_null());
        let checkpoint = take("checkpoint")
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(ApiError::bad_request(
                    "fit options: `checkpoint` must be a file name",
                )),
            })
            .transpose()?;
        let count = |v: serde_json::Value, key: &str| {
            v.as_u64().map(|n| n as usize).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "fit options: `{key}` must be a non-negative integer"
                ))
            })
        };
        let shots = take("shots").map(|v| count(v, "shots")).transpose()?;
        let normal_shots = take("normal_shots")
            .map(|v| count(v, "normal_shots"))
            .transpose()?;
        let mut config: ModelConfig = serde_json::from_value(value).map_err(|e| {
            ApiError::bad_request(format!(
                "fit options: {e} (the keys are those of the model configuration, plus {})",
                FIT_KEYS.join(", ")
            ))
        })?;
        config.validate()?;
        if let Some(weights) = &config.backbone.weights {
            let name = weights.to_string_lossy().into_owned();
            config.backbone.weights = Some(data_file(data_dir, WEIGHTS_DIR, &name)?);
        }
        let checkpoint_path = checkpoint
            .as_deref()
            .map(|name| data_file(data_dir, CHECKPOINTS_DIR, name))
            .transpose()?;
        let options = FitOptions {
            config,
            checkpoint,
            shots,
            normal_shots,
        };
        Ok((options, checkpoint_path))
    }
}

/// A file a client names: a plain file name (no folder, not hidden) of `data_dir/folder`.
fn data_file(data_dir: &FsPath, folder: &str, name: &str) -> Result<PathBuf, ApiError> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control);
    if !plain {
        return Err(ApiError::unprocessable(format!(
            "`{}` is not a plain file name: name a file in the data dir's {folder}/ folder",
            name.escape_debug()
        )));
    }
    let path = data_dir.join(folder).join(name);
    if !path.is_file() {
        return Err(ApiError::unprocessable(format!(
            "no file `{name}` in the data dir's {folder}/ folder"
        )));
    }
    Ok(path)
}

/// The plain file names of `data_dir/folder` (for `/v1/info`), sorted.
pub fn data_files(data_dir: &FsPath, folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join(folder))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The supports a fit uses: the first `shots` defect and `normal_shots` normal images, each
/// defect image with its mask (`422` naming the first one without).
fn supports(
    images: Vec<ImageRecord>,
    options: &FitOptions,
) -> Result<(Vec<ImageRecord>, Vec<ImageRecord>), ApiError> {
    let (defects, normals): (Vec<_>, Vec<_>) = images
        .into_iter()
        .partition(|r| r.info.role == Role::Defect);
    let defects: Vec<_> = defects
        .into_iter()
        .take(options.shots.unwrap_or(usize::MAX))
        .collect();
    let normals: Vec<_> = normals
        .into_iter()
        .take(options.normal_shots.unwrap_or(usize::MAX))
        .collect();
    if let Some(r) = defects.iter().find(|r| r.mask_blob.is_none()) {
        return Err(ApiError::unprocessable(format!(
            "image {} is a defect image without a mask: PUT its mask \
             (/v1/projects/{}/images/{}/mask) or make it a normal image",
            r.info.id, r.project, r.info.id
        )));
    }
    if defects.is_empty() && normals.is_empty() {
        return Err(ApiError::unprocessable(
            "the project has no images to fit on: upload defect images with masks and/or \
             normal images",
        ));
    }
    Ok((defects, normals))
}

/// `POST /v1/projects/{id}/fit` with optional [`FitOptions`] JSON → `200` with the
/// [`FitSummary`]. The model file is stored before the answer, and replaces the previous model
/// for every predict that starts after it; two fits of one project run one after the other.
pub async fn fit_project(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let body = extract::body(body, state.config.max_body_bytes)?;
    let (options, checkpoint_path) = FitOptions::parse(&body, state.store.dir())?;
    let _lock = state.locks.lock(&id).await;
    let outcome = run_fit(&state, &id, options, checkpoint_path).await;
    state.metrics.fit_finished(outcome.is_ok());
    Ok(Json(outcome?).into_response())
}

async fn run_fit(
    state: &AppState,
    id: &str,
    options: FitOptions,
    checkpoint_path: Option<PathBuf>,
) -> Result<FitSummary, ApiError> {
    let lookup = id.to_string();
    let images = state.store_op(move |s| s.images(&lookup)).await?;
    let images = images.ok_or_else(|| ApiError::unknown_project(id))?;
    let (defects, normals) = supports(images, &options)?;
    let support_ids: Vec<String> = defects
        .iter()
        .chain(&normals)
        .map(|r| r.info.id.clone())
        .collect();
    let (defect_count, normal_count) = (defects.len(), normals.len());
    let permit = state.admission.admit(&state.metrics)?;
    let store = Arc::clone(&state.store);
    let encoders = Arc::clone(&state.encoders);
    let limits = state.config.image_limits();
    let config = options.config.clone();
    let (model, encoder, bytes, ms) = state
        .engine
        .run(permit, move || -> Result<_, ApiError> {
            let start = Instant::now();
            let mut set = SupportSet::default();
            for r in &defects {
                let name = format!("image {}", r.info.id);
                let image = decode_image_bytes(name.as_ref(), &store.read_blob(&r.blob)?, limits)?
                    .to_rgb8();
                let mask_blob = r
                    .mask_blob
                    .as_deref()
                    .expect("supports() checked the masks");
                let mask_name = format!("mask of image {}", r.info.id);
                let mask = decode_mask_bytes(
                    mask_name.as_ref(),
                    &store.read_blob(mask_blob)?,
                    Some(image.dimensions()),
                    limits,
                )?;
                set.defects.push((name, image, mask));
            }
            for r in &normals {
                let name = format!("image {}", r.info.id);
                let image = decode_image_bytes(name.as_ref(), &store.read_blob(&r.blob)?, limits)?
                    .to_rgb8();
                set.normals.push((name, image));
            }
            let head = checkpoint_path
                .as_deref()
                .map(|p| {
                    load_head(
                        p,
                        &config.backbone,
                        config.nominal_side(),
                        encoders.device(),
                    )
                })
                .transpose()?;
            let encoder = encoders.get(&config.backbone, head)?;
            let fitted = fit(&encoder, &set, &config)?;
            let bytes = fitted.to_bytes()?;
            // Predicts use the model as read back from its file: exactly what a restarted
            // server, or `bpgg predict` with the downloaded file, computes with.
            let model =
                FittedModel::from_bytes("fitted model".as_ref(), &bytes, encoders.device())?;
            Ok((model, encoder, bytes, start.elapsed().as_millis() as u64))
        })
        .await??;
    let summary = FitSummary {
        threshold: model.threshold,
        threshold_rule: serde_json::to_value(model.threshold_rule)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        image_threshold: model.image_threshold,
        scoring: model.config.scoring.name().to_string(),
        defects: defect_count,
        normals: normal_count,
        support_ids,
        ms,
        checkpoint: options.checkpoint.clone(),
        config: serde_json::to_value(&model.config).expect("a model config serialises"),
        model_sha256: crate::store::BlobStore::hash(&bytes),
        model_bytes: bytes.len() as u64,
        fitted_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let (project, stored) = (id.to_string(), summary.clone());
    let saved = state
        .store_op(move |s| s.set_model(&project, &bytes, &stored))
        .await?;
    if !saved {
        return Err(ApiError::unknown_project(id));
    }
    let loaded = LoadedModel {
        model,
        encoder,
        sha256: summary.model_sha256.clone(),
        summary: summary.clone(),
    };
    state.models.insert(id, Arc::new(loaded));
    Ok(summary)
}

/// `GET /v1/projects/{id}/model`: the `.bpgg` file (what `bpgg fit` writes; `bpgg predict
/// --model` reads it).
pub async fn download(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let lookup = id.clone();
    let found = state
        .store_op(move |s| {
            let Some(project) = s.project(&lookup)? else {
                return Ok(None);
            };
            let model = s.model(&lookup)?;
            let bytes = model.map(|(hash, _)| s.read_blob(&hash)).transpose()?;
            Ok(Some((project.name, bytes)))
        })
        .await?;
    let (name, bytes) = found.ok_or_else(|| ApiError::unknown_project(&id))?;
    let bytes = bytes.ok_or_else(|| no_model(&id))?;
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{}.bpgg\"", file.trim_matches('.'));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /v1/projects/{id}/model/info`: the current model's [`FitSummary`].
pub async fn info(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let lookup = id.clone();
    let found = state
        .store_op(move |s| {
            Ok(match s.project(&lookup)? {
                Some(_) => Some(s.model(&lookup)?),
                None => None,
            })
        })
        .await?;
    let model = found.ok_or_else(|| ApiError::unknown_project(&id))?;
    let (_, summary) = model.ok_or_else(|| no_model(&id))?;
    Ok(Json(summary).into_response())
}
