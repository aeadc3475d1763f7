//! GraphQL subscriptions over WebSocket at `/graphql/ws`, speaking `graphql-transport-ws`
//! and the legacy `graphql-ws`. Browsers cannot set headers on a WebSocket, so the token
//! comes in the `connection_init` payload (`{"Authorization": "Bearer …"}` or
//! `{"token": "…"}`); an `Authorization` header on the upgrade works too.

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Extension;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::Value;

use super::{AppSchema, RequestAuth};
use crate::domain::Domain;

fn token_from_payload(payload: &Value) -> Option<String> {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(Value::as_str);
    if let Some(h) = header {
        return RequestAuth::bearer_of(h);
    }
    payload
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|t| !t.is_empty())
}

pub async fn upgrade(
    State(schema): State<AppSchema>,
    Extension(domain): Extension<Domain>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestAuth::bearer_of);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let token = token_from_payload(&payload).or(header_token);
                    let auth = RequestAuth::new(token);
                    auth.preload(&domain).await;
                    let mut data = Data::default();
                    data.insert(auth);
                    Ok(data)
                })
                .serve()
        })
}
