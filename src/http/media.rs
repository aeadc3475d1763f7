//! `GET /media/{*path}`: the application's own secure_link check, then the file with
//! `Range` support, caching and security headers.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::RestError;
use crate::error::ErrorCode;
use crate::media::{LinkError, MediaStore, PREFIX, percent_decode};

#[derive(Deserialize)]
pub(crate) struct LinkParams {
    md5: Option<String>,
    expires: Option<String>,
}

pub(crate) async fn media(
    State(store): State<MediaStore>,
    params: Result<Query<LinkParams>, QueryRejection>,
    request: Request<Body>,
) -> Response {
    let (md5, expires) = match &params {
        Ok(Query(p)) => (p.md5.as_deref(), p.expires.as_deref()),
        Err(_) => (None, None),
    };
    let Some(uri) = percent_decode(request.uri().path()) else {
        return RestError::code(ErrorCode::InsufficientPermission).into_response();
    };
    match store.verify(&uri, md5, expires, chrono::Utc::now()) {
        Ok(()) => {}
        Err(LinkError::Forbidden) => {
            return RestError::code(ErrorCode::InsufficientPermission).into_response();
        }
        Err(LinkError::Expired) => return RestError::code(ErrorCode::UrlExpired).into_response(),
    }
    let relative = uri.strip_prefix(PREFIX).unwrap_or_default();
    let Some(path) = store.resolve(relative) else {
        return RestError::code(ErrorCode::ResourceNotFound).into_response();
    };
    if !tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
        return RestError::code(ErrorCode::ResourceNotFound).into_response();
    }
    let remaining = expires
        .and_then(|e| e.parse::<i64>().ok())
        .map(|e| (e - chrono::Utc::now().timestamp()).max(0))
        .unwrap_or(0);
    let mut response = match ServeFile::new(&path).oneshot(request).await {
        Ok(r) => r.map(Body::new),
        Err(e) => {
            tracing::error!(error = %e, "serving media file");
            return RestError::code(ErrorCode::ServerError).into_response();
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("private, max-age={remaining}"))
            .unwrap_or(HeaderValue::from_static("private, no-cache")),
    );
    if response.status() == StatusCode::OK || response.status() == StatusCode::PARTIAL_CONTENT {
        response
            .headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    response
}
