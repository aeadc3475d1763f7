//! The load benchmark's yardstick (`JJONGAL_BENCH_ROUTES`, development mode only): plain
//! handlers that answer with bytes held in memory, mounted behind the same middleware as
//! the API (gateway, timeouts, CORS, security headers, request ids, tracing), so
//! `cargo bench --bench load` can measure what this stack costs with no GraphQL and no
//! database in the way.
//!
//! - `PUT  /api/v1/_bench/limit` stores the body (the benchmark stores a facade answer);
//! - `GET  /api/v1/_bench/limit` answers it;
//! - `GET  /api/v1/_bench/limit/auth` answers it after the same token check every
//!   authenticated route makes (signature, expiry, the account still exists).

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::domain::Domain;
use crate::http::RestError;

#[derive(Clone)]
struct Probe {
    domain: Domain,
    body: Arc<RwLock<Bytes>>,
}

pub(crate) fn router(domain: Domain) -> Router {
    let probe = Probe {
        domain,
        body: Arc::new(RwLock::new(Bytes::from_static(b"{}"))),
    };
    Router::new()
        .route("/api/v1/_bench/limit", get(answer).put(store))
        .route("/api/v1/_bench/limit/auth", get(answer_authenticated))
        .with_state(probe)
}

fn stored(probe: &Probe) -> Response {
    let body = probe
        .body
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn answer(State(probe): State<Probe>) -> Response {
    stored(&probe)
}

async fn answer_authenticated(State(probe): State<Probe>, headers: HeaderMap) -> Response {
    let bearer = crate::http::bearer(&headers);
    match probe
        .domain
        .accounts()
        .authenticate(bearer.as_deref())
        .await
    {
        Ok(_) => stored(&probe),
        Err(e) => RestError::from(e).into_response(),
    }
}

async fn store(State(probe): State<Probe>, body: Bytes) -> StatusCode {
    *probe
        .body
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = body;
    StatusCode::NO_CONTENT
}
