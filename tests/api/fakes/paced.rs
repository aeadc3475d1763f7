//! A chat server that streams its answer as OpenAI does, but holds the stream at a
//! point of the test's choosing until the test lets it go on: wiremock sends a body
//! whole, so it cannot show what the service does while the model is still writing.
//! Every request is checked as the strict fake checks it (`openai::check`); a request
//! OpenAI would refuse gets a 400 in OpenAI's error shape.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::openai::{self, Api};

struct Shared {
    /// The answer's events, cut at the holds: between two segments the stream waits.
    segments: Vec<Vec<String>>,
    /// One permit per hold passed.
    go_on: Semaphore,
    requests: Mutex<Vec<Value>>,
}

/// A running paced chat server.
pub struct PacedChat {
    /// Its OpenAI-compatible base URL (`…/v1`).
    pub base: String,
    shared: Arc<Shared>,
}

impl PacedChat {
    /// Streams `content` (the model's message) to every chat request, holding the
    /// answer right after the first occurrence of each of `holds` in it (`""`: before
    /// any content), each until [`PacedChat::go_on`].
    pub async fn start(content: &str, holds: &[&str]) -> PacedChat {
        let mut at: Vec<usize> = holds
            .iter()
            .map(|h| {
                content
                    .find(h)
                    .map(|i| i + h.len())
                    .expect("a hold point is in the answer")
            })
            .collect();
        at.sort();
        let whole = openai::stream_events(content, 7, "stop", false);
        let mut segments = vec![vec![whole[0].clone()]];
        segments.extend(at.iter().map(|_| Vec::new()));
        let mut sent = 0usize;
        for event in &whole[1..] {
            let piece = serde_json::from_str::<Value>(
                event.trim().strip_prefix("data: ").unwrap_or_default(),
            )
            .ok()
            .and_then(|v| v["choices"][0]["delta"]["content"].as_str().map(str::len))
            .unwrap_or(0);
            let segment = at.iter().filter(|&&p| sent >= p).count();
            segments[segment].push(event.clone());
            sent += piece;
        }
        let shared = Arc::new(Shared {
            segments,
            go_on: Semaphore::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        PacedChat { base, shared }
    }

    /// Lets a held answer go on to its next hold (or its end).
    pub fn go_on(&self) {
        self.shared.go_on.add_permits(1);
    }

    /// Waits until the first request has arrived (an upper bound for a loaded machine).
    pub async fn called(&self) {
        for _ in 0..1200 {
            if !self.requests().is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the paced chat server was never called");
    }

    /// The request bodies received.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = wiremock::Request {
        url: "http://fake/v1/chat/completions".parse().unwrap(),
        method: wiremock::http::Method::POST,
        headers,
        body: body.to_vec(),
    };
    let checked = openai::check(Api::Chat, &request, None);
    let Ok(value) = checked else {
        eprintln!(
            "paced fake refused a chat request: {}",
            String::from_utf8_lossy(&body)
        );
        let error = json!({"error": {"message": "refused by the strict fake (see the test's output)",
            "type": "invalid_request_error", "param": null, "code": null}});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    };
    assert_eq!(
        value["stream"], true,
        "the paced fake answers story requests, which stream"
    );
    shared.requests.lock().unwrap().push(value);
    use futures_util::StreamExt;
    let segments = shared.segments.clone();
    let events = futures_util::stream::iter(segments.into_iter().enumerate())
        .then(move |(i, segment)| {
            let shared = shared.clone();
            async move {
                if i > 0 {
                    shared.go_on.acquire().await.unwrap().forget();
                }
                futures_util::stream::iter(segment)
            }
        })
        .flatten()
        .map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e)));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(events))
        .unwrap()
}
