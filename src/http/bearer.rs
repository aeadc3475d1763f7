//! The bearer token of a request: only `Authorization: Bearer <token>` counts, whatever
//! door it came through.

use axum::http::{HeaderMap, header};

/// The token of a `Bearer <token>` value (scheme case-insensitive, token non-empty).
pub(crate) fn bearer_of(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The bearer token of a request's `Authorization` header, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_of)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn only_the_bearer_scheme_with_a_token_counts() {
        assert_eq!(bearer_of("Bearer abc"), Some("abc".into()));
        assert_eq!(bearer_of("  bearer   abc  "), Some("abc".into()));
        assert_eq!(bearer_of("BEARER abc"), Some("abc".into()));
        assert_eq!(bearer_of("Basic abc"), None);
        assert_eq!(bearer_of("Bearer"), None);
        assert_eq!(bearer_of("Bearer    "), None);
        assert_eq!(bearer_of("abc"), None);

        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t.k.n"),
        );
        assert_eq!(bearer(&headers), Some("t.k.n".into()));
    }
}
