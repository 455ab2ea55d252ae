//! The crate's error type, and the one place where errors become HTTP answers.
//!
//! Every error answer is JSON, `{"error": "..."}`, with the library's own message (which names the
//! image and the problem). Status codes:
//!
//! | error | status |
//! |---|---|
//! | malformed request: bad JSON, unknown option, bad query parameter | 400 |
//! | no or wrong token | 401 |
//! | unknown project or image id | 404 |
//! | state does not allow it: predict before fit, model download before fit | 409 |
//! | body over `--max-body` | 413 |
//! | well-formed but unusable input: corrupt or oversized image, mask of the wrong size, a defect image without mask at fit time, options the library refuses | 422 |
//! | the work queue is full, the request took too long, the server is stopping | 503 (+ `Retry-After` when retrying helps) |
//! | anything else (disk, database, tensor errors, a stored model in an impossible state) | 500 |

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong starting or running the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could read and change \
         every project. Set --token (or BPGG_TOKEN), or bind a loopback address (127.0.0.1)"
    )]
    InsecureBind(SocketAddr),

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The data dir cannot be used (written by a newer version, locked by another server, ...).
    #[error("{}: {problem}", path.display())]
    DataDir { path: PathBuf, problem: String },

    /// A file of the data dir could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The database failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The library refused or failed.
    #[error(transparent)]
    Library(#[from] bpgg::Error),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error answer: a status, a message, and when retrying later helps, how much later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for the `Retry-After` header.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no or wrong token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <token>`",
        )
    }

    /// 404: `what` (`project 0123...`) does not exist.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no {what}"))
    }

    /// 404 for a well-formed project id that names no project.
    pub fn unknown_project(id: &str) -> Self {
        Self::not_found(format!("project {id}"))
    }

    /// 409: the project's state does not allow it yet.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes (--max-body)"),
        )
    }

    /// 422: well-formed but unusable.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 503 with `Retry-After`: come back later.
    pub fn busy(message: impl Into<String>, retry_after_s: u32) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<bpgg::Error> for ApiError {
    /// The library's typed errors: input problems are 422, the rest (disk, tensors, a model in
    /// a state it cannot be in) 500. The library's message is kept; the service adds its own
    /// hint where the library's points at a command-line flag's equivalent.
    fn from(e: bpgg::Error) -> Self {
        use bpgg::Error as E;
        let status = match &e {
            E::InvalidData { .. }
            | E::ImageDecode { .. }
            | E::ImageTooLarge { .. }
            | E::MissingSupports { .. }
            | E::InvalidConfig(_)
            | E::InvalidWeights { .. }
            | E::WeightTensor { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("{e}");
        }
        let mut message = e.to_string();
        if let E::ImageTooLarge { .. } = e {
            message.push_str(" (bpgg serve --max-pixels raises the limit for genuine images)");
        }
        Self::new(status, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Library(e) => e.into(),
            e => {
                tracing::error!("{e}");
                Self::internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_statuses_with_their_message() {
        let e: ApiError =
            bpgg::Error::invalid_data("image 42", "mask is 3x3 but its image is 4x4").into();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.message, "image 42: mask is 3x3 but its image is 4x4");
        let e: ApiError = bpgg::Error::InvalidConfig("image size must be ...".into()).into();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e: ApiError = bpgg::Error::ImageTooLarge {
            path: "request body".into(),
            width: 9000,
            height: 9000,
            limit: 100,
        }
        .into();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            e.message.contains("more than the limit of 100") && e.message.contains("--max-pixels")
        );
        let e: ApiError = bpgg::Error::ShapeMismatch("x".into()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let e: ApiError = Error::Library(bpgg::Error::InvalidConfig("y".into())).into();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn busy_answers_carry_retry_after() {
        let r = ApiError::busy("queue full", 2).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
