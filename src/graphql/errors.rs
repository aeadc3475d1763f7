//! Domain errors → GraphQL errors with `extensions.code`, and every other error (parse,
//! validation, input coercion) given a code too.

use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, Response, Value};

use crate::error::{AppError, ErrorCode};

/// The public part becomes the message and extensions; an internal cause rides along as
/// the error's `source` (never serialised) to the door that logs it (`http::errors`).
impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> async_graphql::Error {
        let public = e.into_public();
        let mut err = async_graphql::Error::new(public.message);
        if let Some(cause) = public.cause {
            err.source = Some(Arc::new(cause));
        }
        let ext = err
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default);
        ext.set("code", public.code.as_str());
        if let Some(secs) = public.retry_after {
            ext.set("retryAfter", secs);
        }
        err
    }
}

/// The code of a GraphQL error, if it has one we know.
pub(crate) fn code_of(err: &async_graphql::ServerError) -> Option<ErrorCode> {
    match err.extensions.as_ref()?.get("code")? {
        Value::String(s) => ErrorCode::parse(s),
        _ => None,
    }
}

/// The `retryAfter` extension of a rate-limit error, in seconds.
pub(crate) fn retry_after_of(err: &async_graphql::ServerError) -> Option<u64> {
    match err.extensions.as_ref()?.get("retryAfter")? {
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Gives every error without a code `VALIDATION_ERROR`: errors the resolvers did not raise
/// (the document failed to parse or validate, or an argument could not be coerced) are the
/// client's. [`super::execute`] and [`super::execute_stream`] apply it to every response.
pub(crate) fn ensure_codes(errors: &mut [async_graphql::ServerError]) {
    for err in errors {
        if code_of(err).is_none() {
            err.extensions
                .get_or_insert_with(ErrorExtensionValues::default)
                .set("code", ErrorCode::ValidationError.as_str());
        }
    }
}

/// True when the request never executed (it could not be parsed or validated): every
/// error is positionless and there is no data. GraphQL-over-HTTP answers these with 400.
pub(crate) fn is_request_error(response: &Response) -> bool {
    !response.errors.is_empty()
        && matches!(response.data, Value::Null)
        && response.errors.iter().all(|e| e.path.is_empty())
}
