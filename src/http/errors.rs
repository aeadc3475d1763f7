//! The one place internal causes are logged. An error's cause travels with it (as an
//! [`InternalCause`]: the source of a GraphQL error, a field of [`RestError`]) and ends up
//! in the response's extensions as [`InternalCauses`]; [`log_internal_causes`], a
//! middleware inside the request's span, logs them with the request id. The sockets,
//! whose messages are not HTTP responses, log through the same [`log`] when they answer a
//! message with an error.
//!
//! [`RestError`]: super::RestError

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{AppError, InternalCause, PublicError};

/// The internal causes behind a response (a GraphQL response can carry several).
#[derive(Clone, Debug, Default)]
pub(crate) struct InternalCauses(pub Vec<InternalCause>);

impl InternalCauses {
    /// The causes of a GraphQL response's errors (those the domain raised as internal).
    pub(crate) fn of(errors: &[async_graphql::ServerError]) -> InternalCauses {
        InternalCauses(
            errors
                .iter()
                .filter_map(|e| e.source::<InternalCause>().cloned())
                .collect(),
        )
    }

    /// Adds them to `response` (nothing when there are none).
    pub(crate) fn attach(self, response: &mut Response) {
        if self.0.is_empty() {
            return;
        }
        match response.extensions_mut().get_mut::<InternalCauses>() {
            Some(held) => held.0.extend(self.0),
            None => {
                response.extensions_mut().insert(self);
            }
        }
    }
}

/// Logs one internal cause (in the current span).
pub(crate) fn log(cause: &InternalCause) {
    tracing::error!(code = %cause.code, error = %cause, "internal error");
}

/// A domain error as a socket answers it: what the client sees, its cause (if internal)
/// logged now (the sockets' counterpart of the middleware).
pub(crate) fn answered(e: AppError) -> PublicError {
    let public = e.into_public();
    if let Some(cause) = &public.cause {
        log(cause);
    }
    public
}

/// Logs the causes of a GraphQL response's errors (the sockets' counterpart of the
/// middleware).
pub(crate) fn log_graphql(errors: &[async_graphql::ServerError]) {
    for cause in InternalCauses::of(errors).0 {
        log(&cause);
    }
}

/// Logs the internal causes a response carries, inside the request's span.
pub(crate) async fn log_internal_causes(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(InternalCauses(causes)) = response.extensions_mut().remove::<InternalCauses>() {
        for cause in &causes {
            log(cause);
        }
    }
    response
}
