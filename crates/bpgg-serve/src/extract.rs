//! Reading requests: bodies under the size limit, JSON, query strings and ids, each refused with
//! a JSON error that says what is wrong.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::Path;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::store::is_id;

/// The body, or `413` past the limit.
pub fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// A JSON body (`what` names it in errors); `400` if it is not valid JSON of the right shape.
pub fn json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// A path's captures; `400` if they are not valid UTF-8.
pub fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(format!("bad path: {e}")))
}

/// The `{id}` of a project route, checked to have an id's shape.
pub fn project_path(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let id = path(id)?;
    project_id(&id)?;
    Ok(id)
}

/// The `{id}` and `{image_id}` of an image route, both checked to have an id's shape.
pub fn image_path(
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let (project, image) = path(ids)?;
    project_id(&project)?;
    image_id(&image)?;
    Ok((project, image))
}

/// Checks the shape of a project id: anything that is not one is unknown (`404`), before any
/// lookup.
pub fn project_id(id: &str) -> Result<(), ApiError> {
    if is_id(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("project `{}`", shown(id))))
    }
}

/// Checks the shape of an image id.
pub fn image_id(id: &str) -> Result<(), ApiError> {
    if is_id(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("image `{}`", shown(id))))
    }
}

/// A client's string as shown in an error: at most 64 characters, control characters escaped.
fn shown(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

/// Query parameters, refusing any not in `allowed` (a typo must not be silently ignored).
pub fn query(raw: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let mut out = HashMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{}`; this route takes {}",
                shown(&k),
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter `{k}` given twice"
            )));
        }
    }
    Ok(out)
}

/// A name given by a client (project names): 1 to 200 characters, no control characters.
pub fn name(name: &str) -> Result<String, ApiError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 || trimmed.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "a name must have 1 to 200 characters and no control characters",
        ));
    }
    Ok(trimmed.to_string())
}
