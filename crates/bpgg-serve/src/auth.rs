//! Bearer-token authentication. The token is never compared directly: both it and the one sent
//! are hashed (SHA-256) and the digests compared in constant time, so neither the content nor
//! the length of the token leaks through timing.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether two digests are equal, looking at every byte whatever the first difference.
fn equal_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether a request's `Authorization` header carries the expected token.
pub fn authorized(expected: &[u8; 32], authorization: Option<&HeaderValue>) -> bool {
    let given = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // A missing header is compared too (against an empty token), so it takes the same time.
    equal_constant_time(expected, &digest(given.unwrap_or("")))
        && given.is_some_and(|g| !g.is_empty())
}

/// Middleware of the routes that need the token (when the service has one): `401` without it.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &state.token_digest {
        if !authorized(expected, request.headers().get(header::AUTHORIZATION)) {
            let mut response = ApiError::unauthorized().into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bpgg\""),
            );
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let expected = digest("s3cret-token");
        let ok = HeaderValue::from_static("Bearer s3cret-token");
        assert!(authorized(&expected, Some(&ok)));
        for bad in [
            "Bearer s3cret-tokeN",
            "Bearer s3cret-token2",
            "Bearer ",
            "Basic s3cret-token",
            "s3cret-token",
            "bearer s3cret-token",
        ] {
            assert!(
                !authorized(&expected, Some(&HeaderValue::from_str(bad).unwrap())),
                "{bad}"
            );
        }
        assert!(!authorized(&expected, None));
        assert!(!authorized(&digest(""), None));
    }
}
