//! The gateway: per-IP and per-account rate limits with the same 429 on every door, the
//! client address behind trusted proxies, load shedding and database-acquisition
//! timeouts answered with 503.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db_tests;
use crate::helpers::ws::{self, recv, send};
use crate::helpers::{Db, Reply, TestApp, gql_code, spawn_app_with};

/// A REST 429: the envelope, `RATE_LIMIT_EXCEEDED`, a positive `Retry-After`.
#[track_caller]
fn assert_rest_429(reply: &Reply) -> u64 {
    reply.assert_error(429, "RATE_LIMIT_EXCEEDED");
    let secs: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

/// A GraphQL 429: `errors[0].extensions` with the code and `retryAfter`, and the header.
#[track_caller]
fn assert_graphql_429(reply: &Reply) {
    assert_eq!(reply.status, 429, "{}", reply.text);
    let body = reply.json();
    assert_eq!(gql_code(&body), "RATE_LIMIT_EXCEEDED", "{body}");
    assert!(
        body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(reply.header("retry-after").is_some());
    assert!(body.get("data").is_none(), "{body}");
}

async fn the_per_ip_limit_answers_429_on_rest_and_graphql(db: Db) {
    // 5 at once, then one per 10 s: the first five pass, the rest are refused.
    let app = spawn_app_with(
        db,
        &[
            "--rate-limit-ip-per-minute",
            "6",
            "--rate-limit-ip-burst",
            "5",
        ],
    )
    .await;
    let token = app.new_account("ip-limited").await; // 2 requests
    for _ in 0..3 {
        app.get("/api/v1/users/me", Some(&token))
            .await
            .assert_ok(200);
    }
    assert_rest_429(&app.get("/api/v1/users/me", Some(&token)).await);
    // Unknown routes and the GraphQL door are counted too, each answering in its shape.
    assert_rest_429(&app.get("/api/v1/nothing", None).await);
    assert_graphql_429(&app.graphql("{ me { id } }", json!({}), Some(&token)).await);
    let get = app
        .send(
            app.client
                .get(app.url("/graphql?query=%7B__typename%7D"))
                .header("graphql-require-preflight", "1"),
        )
        .await;
    assert_graphql_429(&get);
    // Health checks are never limited (a load balancer must see the truth).
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert_eq!(app.get("/readyz", None).await.status, 200);
    // The conversation socket's upgrade is limited too (a plain HTTP 429 before upgrading).
    let url = app.base.replace("http://", "ws://") + "/wss/v1/audio";
    let refused = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("expected an HTTP 429, got {other:?}"),
    }
}

async fn the_per_account_limit_is_shared_by_every_door(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--rate-limit-account-per-minute",
            "1",
            "--rate-limit-account-burst",
            "4",
        ],
    )
    .await;
    let token = app.new_account("busy").await;
    let other = app.new_account("calm").await;
    // Open both sockets first (the conversation upgrade carries its token in the query,
    // so only its messages count), then spend the budget: 2 REST + 1 GraphQL + 1 socket.
    let mut talk = ws::open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    let mut gql = ws::open(&app, "/graphql/ws", Some("graphql-transport-ws")).await;
    send(
        &mut gql,
        json!({"type": "connection_init", "payload": {"token": token}}),
    )
    .await;
    assert_eq!(recv(&mut gql).await["type"], "connection_ack");
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_ok(200);
    app.get("/api/v1/stories", Some(&token))
        .await
        .assert_ok(200);
    let ok = app.graphql("{ me { id } }", json!({}), Some(&token)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    send(&mut talk, json!({"type": "start_conversation"})).await;
    assert_eq!(recv(&mut talk).await["type"], "conversation_started");

    // Now every door refuses this account, each in its own shape...
    assert_rest_429(&app.get("/api/v1/users/me", Some(&token)).await);
    assert_graphql_429(&app.graphql("{ me { id } }", json!({}), Some(&token)).await);
    send(&mut talk, json!({"type": "user_message", "text": "안녕"})).await;
    let error = recv(&mut talk).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error_code"], "RATE_LIMIT_EXCEEDED", "{error}");
    assert!(error["retry_after"].as_u64().unwrap() >= 1, "{error}");
    send(
        &mut gql,
        json!({"id": "a", "type": "subscribe", "payload": {"query": "{ me { id } }"}}),
    )
    .await;
    let error = recv(&mut gql).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "a");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        "RATE_LIMIT_EXCEEDED"
    );
    assert!(
        error["payload"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // ...and both sockets stay open.
    send(&mut talk, json!({"type": "nonsense"})).await;
    assert_eq!(recv(&mut talk).await["error_code"], "RATE_LIMIT_EXCEEDED");
    // A ping over the budget goes unanswered (pings spend it too); the next operation
    // is still answered, with the refusal.
    send(&mut gql, json!({"type": "ping"})).await;
    send(
        &mut gql,
        json!({"id": "b", "type": "subscribe", "payload": {"query": "{ me { id } }"}}),
    )
    .await;
    let after = recv(&mut gql).await;
    assert_eq!(after["id"], "b", "{after}");
    assert_eq!(
        after["payload"][0]["extensions"]["code"],
        "RATE_LIMIT_EXCEEDED"
    );

    // Another account, and requests without a token, are not affected.
    app.get("/api/v1/users/me", Some(&other))
        .await
        .assert_ok(200);
    app.get("/api/v1/users/me", None)
        .await
        .assert_error(401, "INVALID_TOKEN");
}

async fn forwarded_addresses_count_only_from_trusted_proxies(db: Db) {
    let limited = [
        "--rate-limit-ip-per-minute",
        "1",
        "--rate-limit-ip-burst",
        "1",
    ];
    let me = |app: &TestApp, forwarded: &str| {
        app.client
            .get(app.url("/api/v1/users/me"))
            .header("x-forwarded-for", forwarded.to_string())
    };
    // Not trusted: the header is ignored, so "different clients" share the peer's bucket.
    let app = spawn_app_with(db, &limited).await;
    app.send(me(&app, "198.51.100.1"))
        .await
        .assert_error(401, "INVALID_TOKEN");
    assert_rest_429(&app.send(me(&app, "198.51.100.2")).await);

    // Trusted: each forwarded client has its own bucket; a spoofed hop in front of the
    // proxy's own entry does not help (the nearest untrusted address counts).
    let mut args = limited.to_vec();
    args.extend(["--trusted-proxies", "127.0.0.1/32, ::1"]);
    let app = spawn_app_with(db, &args).await;
    app.send(me(&app, "198.51.100.1"))
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.send(me(&app, "198.51.100.2"))
        .await
        .assert_error(401, "INVALID_TOKEN");
    assert_rest_429(&app.send(me(&app, "198.51.100.1")).await);
    assert_rest_429(&app.send(me(&app, "203.0.113.50, 198.51.100.2")).await);
    let real_ip = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("x-real-ip", "198.51.100.3");
    app.send(real_ip).await.assert_error(401, "INVALID_TOKEN");
}

async fn overload_is_answered_with_503_not_a_queue(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--max-concurrent-requests",
            "1",
            "--database-pool-size",
            "1",
            "--database-acquire-timeout-ms",
            "30000",
        ],
    )
    .await;
    let token = app.new_account("slow").await;
    // Hold the one slot: a request that waits for the only database connection, which
    // the test holds.
    let held = app.domain.pool().get().await.unwrap();
    // (If it arrives while one of the probes below has the slot, it is the one refused:
    // then it tries again, so that it does end up holding the slot.)
    let slow = {
        let client = app.client.clone();
        let url = app.url("/api/v1/users/me");
        let token = token.clone();
        tokio::spawn(async move {
            loop {
                let status = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                match status {
                    Ok(503) => tokio::time::sleep(Duration::from_millis(5)).await,
                    other => return other,
                }
            }
        })
    };
    // Once it is in flight, every other request is refused at once.
    let started = Instant::now();
    let reply = loop {
        let reply = app.get("/api/v1/nothing", None).await;
        if reply.status == 503 || started.elapsed() > Duration::from_secs(20) {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    reply.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(reply.header("retry-after"), Some("1"));
    let gql = app.graphql("{ __typename }", json!({}), None).await;
    assert_eq!(gql.status, 503);
    assert_eq!(gql_code(&gql.json()), "SERVICE_UNAVAILABLE");
    // Health checks bypass the gateway.
    assert_eq!(app.get("/healthz", None).await.status, 200);
    // Once the database is free, the slow request finishes and service resumes.
    drop(held);
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_ok(200);
}

async fn a_busy_database_pool_is_503_after_the_acquire_timeout(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--database-pool-size",
            "1",
            "--database-acquire-timeout-ms",
            "200",
        ],
    )
    .await;
    let token = app.new_account("waiting").await;
    let held = app.domain.pool().get().await.unwrap();
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(app.get("/readyz", None).await.status, 503);
    drop(held);
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_ok(200);
}

async fn a_raw_client_cannot_make_the_server_fail(db: Db) {
    // Garbage on the wire, absurd headers, a lying content length: 4xx or a closed
    // connection, never a 5xx, and the server goes on answering.
    let app = spawn_app_with(db, &[]).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let cases: [&[u8]; 5] = [
        b"\x00\x01\x02 garbage\r\n\r\n",
        b"GET /api/v1/stories?%zz=%%% HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \xff\xfe\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3\r\n\r\n{\"q",
        b"PATCH /api/v1/stories/..%2f..%2fetc HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
        b"GET /media/../../secrets/jwt.secret HTTP/1.1\r\nhost: x\r\n\r\n",
    ];
    for case in cases {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(case).await.unwrap();
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        let head = String::from_utf8_lossy(&answer);
        if let Some(status) = head.split_whitespace().nth(1) {
            assert!(!status.starts_with('5'), "{head}");
        }
    }
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

/// Reads one HTTP/1.1 response head from a raw connection (what arrives within 20 s).
async fn response_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).to_lowercase()
}

/// A declared length over the limit is `413` before any body is waited for (it used to
/// hold the request until the timeout, then `503`); every answer given with a body left
/// unread says `Connection: close`, so keep-alive clients do not reuse the connection.
async fn unread_bodies_close_the_connection(db: Db) {
    let app = spawn_app_with(db, &["--request-timeout-secs", "60"]).await;
    let token = app.new_account("big.sender").await;
    let addr = app.base.trim_start_matches("http://").to_string();
    for path in ["/api/v1/stories", "/graphql"] {
        // 50 MiB declared, nothing sent.
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             authorization: Bearer {token}\r\ncontent-length: 52428800\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = response_head(&mut stream).await;
        assert!(answer.starts_with("http/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("connection: close"), "{path}: {answer}");
        // Chunked, no length declared, 2 MiB sent: 413 once the limit is crossed.
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             authorization: Bearer {token}\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 2 * 1024 * 1024];
        let _ = stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = stream.write_all(&chunk).await;
        let answer = response_head(&mut stream).await;
        assert!(answer.starts_with("http/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("connection: close"), "{path}: {answer}");
    }
    // The envelope of the early refusal is the door's own. (Read on a raw connection: an
    // HTTP client still writing the body when the answer and the close arrive may report
    // the reset instead of the answer.)
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/stories HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\ncontent-length: 1048577\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after its answer")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(envelope["success"], false, "{envelope}");
    assert_eq!(envelope["error"]["code"], "PAYLOAD_TOO_LARGE", "{envelope}");
    // A body read to its end keeps the connection (no `Connection: close`).
    let reply = app
        .post_json(
            "/api/v1/stories",
            &json!({"user_preferences": {"theme": "숲", "characters": []}}),
            Some(&token),
        )
        .await;
    reply.assert_ok(202);
    assert_eq!(reply.header("connection"), None);
}

/// One keep-alive connection that completes a request; `None` if the server shut it
/// without answering.
async fn served_connection(addr: &str) -> Option<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .ok()?;
    let head = response_head(&mut stream).await;
    head.starts_with("http/1.1 200").then_some(stream)
}

/// Opens up to `tries` connections with `open` and keeps them open; stops at the first
/// refusal. Returns what is open and whether one was refused.
async fn open_until_refused<T, F, Fut>(tries: usize, mut open: F) -> (Vec<T>, bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let mut held = Vec::new();
    for _ in 0..tries {
        match open().await {
            Some(connection) => held.push(connection),
            None => return (held, true),
        }
    }
    (held, false)
}

/// Unfinished request headers are cut off after the header deadline (they were held
/// for minutes); one client's open connections are capped, and freed places are reused.
async fn slow_headers_are_cut_off_and_open_connections_capped(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--header-read-timeout-secs",
            "1",
            "--max-connections-per-ip",
            "6",
        ],
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Headers that never end: the connection is closed (or answered 408), not held.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the unfinished request was still held after 15 s"
    );
    let answer = String::from_utf8_lossy(&rest);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // The cap: served connections pile up to it (the test client may hold one or two of
    // its own), then a new one is shut at once, unanswered.
    let (open, refused) = open_until_refused(8, || served_connection(&addr)).await;
    assert!(refused, "{} connections were all served", open.len());
    assert!(
        (4..=6).contains(&open.len()),
        "{} served before the cap",
        open.len()
    );
    // Closing them frees the places.
    drop(open);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(served_connection(&addr).await.is_some());
}

/// Opens a socket, or `None` when the server refuses the connection.
async fn try_socket(app: &TestApp, path: &str) -> Option<ws::Socket> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = app.base.replace("http://", "ws://") + path;
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .ok()
        .map(|(socket, _)| socket)
}

/// An open WebSocket keeps its connection counted for its client (the count used to end
/// at the upgrade), and one account's open sockets are capped on both socket doors
/// together, with a clear refusal.
async fn sockets_are_counted_per_client_and_per_account(db: Db) {
    let app = spawn_app_with(db, &["--max-sockets-per-account", "2"]).await;
    let a = app.new_account("sockets.a").await;
    let b = app.new_account("sockets.b").await;
    let start = json!({"type": "start_conversation"});
    // Two of A's sockets, one on each door.
    let mut first = ws::open(&app, &format!("/wss/v1/audio?token={a}"), None).await;
    send(&mut first, start.clone()).await;
    assert_eq!(recv(&mut first).await["type"], "conversation_started");
    let mut second = ws::open(&app, "/graphql/ws", Some("graphql-transport-ws")).await;
    ws::init(&mut second, Some(&a)).await;
    // A third is refused on either door; B is not affected.
    let mut third = ws::open(&app, &format!("/wss/v1/audio?token={a}"), None).await;
    let refused = recv(&mut third).await;
    assert_eq!(refused["error_code"], "RATE_LIMIT_EXCEEDED", "{refused}");
    assert!(
        refused["error_message"]
            .as_str()
            .unwrap()
            .contains("최대 2개"),
        "{refused}"
    );
    assert_eq!(ws::closed(&mut third).await, 1013);
    let mut third = ws::open(&app, "/graphql/ws", Some("graphql-transport-ws")).await;
    send(
        &mut third,
        json!({"type": "connection_init", "payload": {"token": a}}),
    )
    .await;
    assert_eq!(ws::closed(&mut third).await, 1013);
    let mut other = ws::open(&app, &format!("/wss/v1/audio?token={b}"), None).await;
    send(&mut other, start.clone()).await;
    assert_eq!(recv(&mut other).await["type"], "conversation_started");
    // Closing one gives A its place back.
    drop(first);
    let mut again = None;
    for _ in 0..40 {
        let mut socket = ws::open(&app, &format!("/wss/v1/audio?token={a}"), None).await;
        send(&mut socket, start.clone()).await;
        if recv(&mut socket).await["type"] == "conversation_started" {
            again = Some(socket);
            break;
        }
        assert_eq!(ws::closed(&mut socket).await, 1013);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        again.is_some(),
        "the closed socket's place was not given back"
    );

    drop((second, other, again));

    // The client's connections: sockets (and whatever the test client holds) fill the
    // cap of 6, then neither a socket nor a plain request is served while they stay open.
    let app = spawn_app_with(db, &["--max-connections-per-ip", "6"]).await;
    let (open, refused) = open_until_refused(8, || try_socket(&app, "/graphql/ws")).await;
    assert!(refused, "{} sockets were all accepted", open.len());
    assert!(
        (4..=6).contains(&open.len()),
        "{} sockets open at the cap",
        open.len()
    );
    let addr = app.base.trim_start_matches("http://").to_string();
    assert!(
        served_connection(&addr).await.is_none(),
        "a request was served while the sockets held every place"
    );
    drop(open);
    let mut served = false;
    for _ in 0..40 {
        if served_connection(&addr).await.is_some() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "closed sockets did not give their places back");
}

db_tests!(
    sockets_are_counted_per_client_and_per_account,
    slow_headers_are_cut_off_and_open_connections_capped,
    unread_bodies_close_the_connection,
    the_per_ip_limit_answers_429_on_rest_and_graphql,
    the_per_account_limit_is_shared_by_every_door,
    forwarded_addresses_count_only_from_trusted_proxies,
    overload_is_answered_with_503_not_a_queue,
    a_busy_database_pool_is_503_after_the_acquire_timeout,
    a_raw_client_cannot_make_the_server_fail,
);
