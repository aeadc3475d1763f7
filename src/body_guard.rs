//! What the connection must know about a request body the service did not read.
//!
//! - A declared `Content-Length` over `JJONGAL_MAX_BODY_BYTES` is answered `413` at once,
//!   before a byte of the body is waited for (a client declaring 50 MiB and sending
//!   nothing held the request for the full timeout, then got `503`).
//! - Any answer given while the request's body was not read to its end (`413`, a rate
//!   limit, load shedding, a refused token…) carries `Connection: close`: the unread rest
//!   would otherwise be taken as the next request on a kept-alive connection (seen as a
//!   protocol error in httpx).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use crate::error::ErrorCode;
use crate::http::RestError;

/// The middleware (state: the body limit in bytes).
pub(crate) async fn guard(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let path = request.uri().path().to_string();
        let mut response = crate::http::refusal(&path, RestError::code(ErrorCode::PayloadTooLarge));
        close_after(&mut response);
        return response;
    }
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(Tracked {
            inner,
            read_to_end: read_to_end.clone(),
        })
    });
    let mut response = next.run(request).await;
    if !read_to_end.load(Ordering::Acquire) {
        close_after(&mut response);
    }
    response
}

fn close_after(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// A request body that notes when it was read to its end.
struct Tracked {
    inner: Body,
    read_to_end: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.read_to_end.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
