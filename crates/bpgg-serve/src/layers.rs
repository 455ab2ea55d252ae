//! What wraps every route: metrics (by route template) and the request timeout.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Counts the request under `route` (the template, e.g. `/v1/projects/{id}`), times it, and
/// answers `503` if it is not done within `--request-timeout`. A timed-out request's CPU work
/// still finishes on its worker (and keeps its queue permit until then); only the answer is
/// abandoned.
pub async fn observe(
    State((state, route)): State<(AppState, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_string();
    let start = Instant::now();
    state.metrics.request_started();
    let timeout = state.config.request_timeout;
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::busy(
            format!(
                "the request took longer than {} s (--request-timeout)",
                timeout.as_secs_f64()
            ),
            1,
        )
        .into_response(),
    };
    state
        .metrics
        .request_finished(route, &method, response.status().as_u16(), start.elapsed());
    response
}
