//! The spec §4.1 envelope, the error every door answers with ([`RestError`]), and the
//! refusals made before any door answered, in the shape of the door they belong to.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::errors::InternalCauses;
use crate::error::{AppError, ErrorCode};

/// `{"success": true, "message": ..., "data": ...}`.
pub(crate) fn success(status: StatusCode, message: &str, data: impl Serialize) -> Response {
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    #[derive(Serialize)]
    struct Success<'a, T> {
        success: bool,
        message: &'a str,
        data: T,
    }
    // Serialised once, straight from what the caller holds (no intermediate `Value`).
    match serde_json::to_vec(&Success {
        success: true,
        message,
        data,
    }) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a success body could not be serialised");
            RestError::code(ErrorCode::ServerError).into_response()
        }
    }
}

/// A JSON response with the contract's content type (`application/json; charset=utf-8`).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A REST failure: a public code and a client-safe message.
#[derive(Debug, Clone)]
pub(crate) struct RestError {
    pub code: ErrorCode,
    pub message: String,
    /// For 405: the methods the path does support.
    pub allow: Option<String>,
    /// For 429: seconds until trying again can work.
    pub retry_after: Option<u64>,
    /// Internal causes, for the log only (see [`super::errors`]).
    pub causes: InternalCauses,
}

impl RestError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> RestError {
        RestError {
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
            causes: InternalCauses::default(),
        }
    }
    pub(crate) fn code(code: ErrorCode) -> RestError {
        RestError::new(code, code.default_message())
    }
    pub(crate) fn validation(message: impl Into<String>) -> RestError {
        RestError::new(ErrorCode::ValidationError, message)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "error": {"code": self.code.as_str(), "message": self.message},
        });
        let mut response = json_response(self.code.status(), &body);
        let headers = response.headers_mut();
        if self.code == ErrorCode::InvalidToken {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(header::ALLOW, allow);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        self.causes.attach(&mut response);
        response
    }
}

/// A domain error as REST answers it; its cause (if internal) goes to the log.
impl From<AppError> for RestError {
    fn from(e: AppError) -> RestError {
        let public = e.into_public();
        RestError {
            retry_after: public.retry_after,
            causes: InternalCauses(public.cause.into_iter().collect()),
            ..RestError::new(public.code, public.message)
        }
    }
}

/// A refusal made before any door answered (rate limit, overload, timeout), in the shape
/// of the door the path belongs to: GraphQL's `errors[].extensions` for `/graphql…`, the
/// REST envelope for everything else. Both carry `Retry-After` when it is known.
pub(crate) fn refusal(path: &str, error: RestError) -> Response {
    if !path.starts_with("/graphql") {
        return error.into_response();
    }
    let mut extensions = json!({"code": error.code.as_str()});
    if let Some(secs) = error.retry_after {
        extensions["retryAfter"] = json!(secs);
    }
    let body = json!({"errors": [{"message": error.message, "extensions": extensions}]});
    let mut response = json_response(error.code.status(), &body);
    if let Some(secs) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
