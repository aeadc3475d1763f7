//! Live story status over GraphQL subscriptions (`/graphql/ws`), both sub-protocols,
//! ownership, and events crossing server processes on PostgreSQL.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::db_tests;
use crate::helpers::{Db, TestApp, spawn_app_sharing, spawn_app_with};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` with `protocol` and completes `connection_init` with `payload`.
async fn connect(app: &TestApp, protocol: &str, payload: Value) -> Socket {
    let url = app.base.replace("http://", "ws://") + "/graphql/ws";
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
    socket
        .send(Message::text(
            json!({"type": "connection_init", "payload": payload}).to_string(),
        ))
        .await
        .unwrap();
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("a message within a minute")
            .expect("socket open")
            .expect("valid frame");
        match message {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "ka" || v["type"] == "ping" {
                    continue;
                }
                return v;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

const SUBSCRIPTION: &str = "subscription($id: ID!) { storyUpdated(id: $id) { status title chapters { chapterNumber image { url } } } }";

/// Subscribes and collects every state until the server completes the subscription.
async fn collect_states(socket: &mut Socket, protocol: &str, id: &str) -> Vec<Value> {
    let start = if protocol == "graphql-transport-ws" {
        "subscribe"
    } else {
        "start"
    };
    socket
        .send(Message::text(
            json!({"id": "1", "type": start, "payload": {"query": SUBSCRIPTION, "variables": {"id": id}}}).to_string(),
        ))
        .await
        .unwrap();
    let mut states = Vec::new();
    loop {
        let msg = next_json(socket).await;
        match msg["type"].as_str().unwrap() {
            "next" | "data" => {
                assert!(msg["payload"]["errors"].is_null(), "{msg}");
                states.push(msg["payload"]["data"]["storyUpdated"].clone());
            }
            "complete" => return states,
            other => panic!("unexpected {other}: {msg}"),
        }
    }
}

async fn create(app: &TestApp, token: &str) -> String {
    app.post_json(
        "/api/v1/stories",
        &json!({"user_preferences": {"theme": "무지개", "characters": ["아기 용"], "length": "short"}}),
        Some(token),
    )
    .await
    .assert_ok(202)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn a_subscriber_sees_the_story_being_written(db: Db) {
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let app = spawn_app_with(db, &["--worker", "true", "--worker-poll-ms", "50"]).await;
        let token = app.new_account("watcher").await;
        let mut socket = connect(
            &app,
            protocol,
            json!({"Authorization": format!("Bearer {token}")}),
        )
        .await;
        let id = create(&app, &token).await;
        let states = collect_states(&mut socket, protocol, &id).await;
        let statuses: Vec<&str> = states
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert!(
            statuses.contains(&"in_progress"),
            "{protocol}: {statuses:?}"
        );
        assert_eq!(statuses.last(), Some(&"completed"), "{protocol}");
        // Chapters appeared one by one while in progress.
        let chapter_counts: Vec<usize> = states
            .iter()
            .map(|s| s["chapters"].as_array().unwrap().len())
            .collect();
        assert!(
            chapter_counts.windows(2).all(|w| w[0] <= w[1]),
            "{chapter_counts:?}"
        );
        assert_eq!(*chapter_counts.last().unwrap(), 3);
        assert!(states.len() >= 3, "{states:?}");
        // A late subscriber still gets where it stands, then the end.
        let mut late = connect(&app, protocol, json!({"token": token})).await;
        let states = collect_states(&mut late, protocol, &id).await;
        assert_eq!(states.len(), 1);
        assert_eq!(states[0]["status"], "completed");
    }
}

async fn subscriptions_check_tokens_and_ownership(db: Db) {
    let app = spawn_app_with(db, &[]).await;
    let owner = app.new_account("owner").await;
    let other = app.new_account("other").await;
    let id = create(&app, &owner).await;
    for (payload, code) in [
        (json!({"token": other}), "INSUFFICIENT_PERMISSION"),
        (json!({}), "INVALID_TOKEN"),
    ] {
        let mut socket = connect(&app, "graphql-transport-ws", payload).await;
        socket
            .send(Message::text(
                json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": {"id": id}}}).to_string(),
            ))
            .await
            .unwrap();
        // An execution error: one result carrying the coded error, no data, then the end.
        let msg = next_json(&mut socket).await;
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(msg["payload"]["data"], Value::Null, "{msg}");
        assert_eq!(
            msg["payload"]["errors"][0]["extensions"]["code"], code,
            "{msg}"
        );
        assert_eq!(next_json(&mut socket).await["type"], "complete");
    }
    // A token that does not authenticate is refused at connection_init (4403; the
    // protocol tests cover the rest).
    let url = app.base.replace("http://", "ws://") + "/graphql/ws";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(
            json!({"type": "connection_init", "payload": {"token": "not-a-token"}}).to_string(),
        ))
        .await
        .unwrap();
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4403),
        other => panic!("expected close 4403, got {other:?}"),
    }
}

db_tests!(
    a_subscriber_sees_the_story_being_written,
    subscriptions_check_tokens_and_ownership,
);

/// With several servers on one PostgreSQL, a subscriber on one sees a story written by
/// another (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jjongal_pg),
    ignore = "PostgreSQL variant skipped: set JJONGAL_TEST_DATABASE_URL to run it"
)]
async fn events_cross_server_processes_on_postgres() {
    let writer = spawn_app_with(
        Db::Postgres,
        &["--worker", "true", "--worker-poll-ms", "50"],
    )
    .await;
    let watcher = spawn_app_sharing(&writer, &["--worker", "false"]).await;
    let token = writer.new_account("distributed").await;
    let mut socket = connect(&watcher, "graphql-transport-ws", json!({"token": token})).await;
    let id = create(&watcher, &token).await;
    let states = collect_states(&mut socket, "graphql-transport-ws", &id).await;
    assert_eq!(states.last().unwrap()["status"], "completed");
    assert_eq!(
        states.last().unwrap()["chapters"].as_array().unwrap().len(),
        3
    );
}
