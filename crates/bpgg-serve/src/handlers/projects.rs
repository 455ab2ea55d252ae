//! `/v1/projects`: create, list, show, rename, delete.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract;
use crate::state::AppState;

/// The body of create and rename.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

/// `POST /v1/projects` `{"name"}` → `201` with the project.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = extract::body(body, state.config.max_body_bytes)?;
    let NameBody { name } = extract::json(&body, "project")?;
    let name = extract::name(&name)?;
    let project = state.store_op(move |s| s.create_project(&name)).await?;
    let location = format!("/v1/projects/{}", project.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(project),
    )
        .into_response())
}

/// `GET /v1/projects`.
pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.store_op(|s| s.projects()).await?).into_response())
}

/// `GET /v1/projects/{id}`.
pub async fn show(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let lookup = id.clone();
    let project = state.store_op(move |s| s.project(&lookup)).await?;
    let project = project.ok_or_else(|| ApiError::unknown_project(&id))?;
    Ok(Json(project).into_response())
}

/// `PATCH /v1/projects/{id}` `{"name"}`.
pub async fn rename(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let body = extract::body(body, state.config.max_body_bytes)?;
    let NameBody { name } = extract::json(&body, "project")?;
    let name = extract::name(&name)?;
    let lookup = id.clone();
    let project = state
        .store_op(move |s| s.rename_project(&lookup, &name))
        .await?;
    let project = project.ok_or_else(|| ApiError::unknown_project(&id))?;
    Ok(Json(project).into_response())
}

/// `DELETE /v1/projects/{id}` → `204`: the project, its images, masks and model.
pub async fn delete(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = extract::project_path(id)?;
    let _lock = state.locks.lock(&id).await;
    let lookup = id.clone();
    let deleted = state.store_op(move |s| s.delete_project(&lookup)).await?;
    state.models.remove(&id);
    state.locks.forget(&id);
    if !deleted {
        return Err(ApiError::unknown_project(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
