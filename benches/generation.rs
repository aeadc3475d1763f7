//! Generation pipeline benchmark (not a test): fake text, image and speech providers
//! answer after a fixed latency L (moderation at once). The story writer streams: the
//! fake model sends its story's tokens evenly over L (server-sent events), so each
//! chapter is complete a fifth of L after the one before; the service stores and
//! illustrates and narrates each chapter the moment it is complete. Reported, for one
//! 5-chapter story: when its first chapter was readable (`GET /stories/{id}` polled every
//! 5 ms) after the model call started (goal ≤ 0.35 × L), and the whole story with its
//! media (goal ≤ 2.0 × L; a sequential pipeline would take 11 × L). Also reports
//! throughput with many stories at once. Every result is validated (status, chapters
//! and their text, media bytes).
//!
//!     cargo bench --bench generation                 # L = 200 ms
//!     cargo bench --bench generation -- 500 40       # L = 500 ms, 40 stories at once

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use jjongal::app::Application;
use jjongal::config::{Config, ConfigArgs};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRbench-png";
const MP3: &[u8] = b"ID3\x04\x00\x00bench-mp3";

/// Pieces the fake model sends its answer in.
const PIECES: u32 = 100;

/// Chapter `i`'s text (about 300 characters, as a real chapter).
fn chapter_text(i: usize) -> String {
    format!("{i}장의 내용입니다. ")
        .repeat(25)
        .trim()
        .to_string()
}

/// The fake model's story of `n` chapters, as JSON text.
fn story_text(n: usize) -> String {
    json!({
        "title": "벤치마크 이야기",
        "chapters": (1..=n).map(|i| json!({"title": format!("{i}장"), "content": chapter_text(i)})).collect::<Vec<_>>()
    })
    .to_string()
}

/// The fake model: streams a valid story of the asked-for length (the prompt's
/// "정확히 N장") as OpenAI's chunks, its tokens spread evenly over L. Remembers when the
/// last call started.
#[derive(Clone)]
struct Model {
    latency: Duration,
    started: Arc<Mutex<Option<Instant>>>,
}

async fn stream_story(
    axum::extract::State(model): axum::extract::State<Model>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    *model.started.lock().unwrap() = Some(Instant::now());
    assert_eq!(body["stream"], true, "the story writer streams");
    let prompt = body["messages"][1]["content"].as_str().unwrap_or_default();
    let n: usize = prompt
        .split("정확히 ")
        .nth(1)
        .and_then(|r| r.split('장').next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(5);
    let chars: Vec<char> = story_text(n).chars().collect();
    let size = chars.len().div_ceil(PIECES as usize);
    let pieces: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
    // Each piece at its own moment from the start (sleeping a fixed pause per piece
    // would add the timer's granularity a hundred times).
    let start = tokio::time::Instant::now();
    let step = model.latency / PIECES;
    let chunk = |delta: Value, finish: Value| {
        let body = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
            "model": "bench", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {body}\n\n")
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let last = [
        chunk(json!({}), json!("stop")),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    use futures_util::StreamExt;
    let events = futures_util::stream::iter(pieces.into_iter().enumerate())
        .then(move |(i, piece)| {
            let event = chunk(json!({"content": piece}), Value::Null);
            async move {
                tokio::time::sleep_until(start + step * (i as u32 + 1)).await;
                event
            }
        })
        .chain(futures_util::stream::iter([last]));
    let events = futures_util::stream::iter([first])
        .chain(events)
        .map(Ok::<_, std::convert::Infallible>);
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(events))
        .unwrap()
}

#[derive(Parser)]
struct Args {
    /// Provider latency L in milliseconds.
    #[arg(default_value_t = 200)]
    latency_ms: u64,
    /// Stories created at once for the throughput run.
    #[arg(default_value_t = 20)]
    stories: usize,
    /// Single-story runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Parser)]
#[command(args_override_self = true)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

async fn post(client: &reqwest::Client, url: String, body: Value, token: Option<&str>) -> Value {
    let mut rb = client.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.unwrap().json().await.unwrap()
}

/// When a story's first chapter was readable and when the story was complete.
struct Seen {
    first_chapter: Instant,
    complete: Instant,
}

/// Polls until the story finishes; validates it (each chapter's text, its media, one
/// file's bytes); notes when the first chapter was readable.
async fn wait_valid(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    chapters: usize,
) -> Seen {
    let mut first_chapter = None;
    loop {
        let story: Value = client
            .get(format!("{base}/api/v1/stories/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let list = story["data"]["chapters"].as_array().expect("chapters");
        if first_chapter.is_none() && !list.is_empty() {
            assert_eq!(list[0]["content"], chapter_text(1), "chapter 1's text");
            first_chapter = Some(Instant::now());
        }
        match story["data"]["status"].as_str() {
            Some("completed") => {
                let complete = Instant::now();
                assert_eq!(list.len(), chapters, "chapter count");
                for (i, c) in list.iter().enumerate() {
                    assert_eq!(
                        c["content"],
                        chapter_text(i + 1),
                        "chapter {}'s text",
                        i + 1
                    );
                    assert!(
                        c["image"]["url"].is_string() && c["audio"]["url"].is_string(),
                        "media missing: {c}"
                    );
                }
                let url = list[0]["image"]["url"]
                    .as_str()
                    .unwrap()
                    .replace("http://localhost:8000", base);
                let bytes = client.get(url).send().await.unwrap().bytes().await.unwrap();
                assert_eq!(bytes.as_ref(), PNG, "image bytes");
                return Seen {
                    first_chapter: first_chapter.unwrap_or(complete),
                    complete,
                };
            }
            Some("failed") => panic!("story failed: {story}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    jjongal::providers::http::install_tls();
    let latency = Duration::from_millis(args.latency_ms);
    let server = MockServer::start().await;
    let model = Model {
        latency,
        started: Arc::new(Mutex::new(None)),
    };
    let chat = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(stream_story))
        .with_state(model.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chat_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, chat).await });
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_delay(latency).set_body_json(
            json!({"data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(PNG)}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/speech"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(latency)
                .set_body_bytes(MP3),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/moderations"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"results": [{"flagged": false, "category_scores": {}}]})),
        )
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let base_url = format!("{}/v1", server.uri());
    let data_dir = dir.path().to_string_lossy().into_owned();
    let db = dir.path().join("bench.db").to_string_lossy().into_owned();
    let mut argv = vec![
        "jjongal",
        "--bind",
        "127.0.0.1:0",
        "--metrics-bind",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--database-url",
        &db,
        "--worker",
        "true",
        "--worker-poll-ms",
        "20",
        "--worker-concurrency",
        "8",
        "--llm-concurrency",
        "8",
        "--image-concurrency",
        "16",
        "--speech-concurrency",
        "16",
        "--story-quota",
        "100000",
        "--log",
        "warn",
        "--database-pool-size",
        "32",
        // One account on one loopback address polls every story every 5 ms: without
        // these, the gateway's per-address and per-account limits answer 429.
        "--rate-limit-ip-per-minute",
        "0",
        "--rate-limit-account-per-minute",
        "0",
    ];
    for cap in ["image", "speech", "moderation"] {
        argv.push(Box::leak(format!("--{cap}-base-url").into_boxed_str()));
        argv.push(&base_url);
    }
    argv.extend(["--llm-base-url", &chat_url]);
    let config = Config::resolve(Cli::parse_from(argv).config).unwrap();
    jjongal::telemetry::init("warn", jjongal::config::LogFormat::Pretty);
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));

    let client = reqwest::Client::new();
    post(&client, format!("{base}/api/v1/users"), json!({"user_id": "bench", "password": "password123", "name": "벤치", "age": 7, "guardian_consent": true}), None).await;
    let login = post(
        &client,
        format!("{base}/api/v1/auth/token"),
        json!({"user_id": "bench", "password": "password123"}),
        None,
    )
    .await;
    let token = login["data"]["access_token"].as_str().unwrap().to_string();
    let create = json!({"user_preferences": {"theme": "벤치마크", "characters": ["토끼"], "length": "medium"}});

    // Single stories, one after another.
    let (mut firsts, mut wholes) = (Vec::new(), Vec::new());
    let l = latency.as_secs_f64();
    for _ in 0..args.runs {
        *model.started.lock().unwrap() = None;
        let posted = Instant::now();
        let story = post(
            &client,
            format!("{base}/api/v1/stories"),
            create.clone(),
            Some(&token),
        )
        .await;
        let id = story["data"]["id"].as_str().expect("story id").to_string();
        let seen = wait_valid(&client, &base, &token, &id, 5).await;
        let call = model.started.lock().unwrap().expect("the model was called");
        firsts.push((seen.first_chapter - call).as_secs_f64() / l);
        wholes.push((seen.complete - posted).as_secs_f64() / l);
    }
    let (first, first_min, first_max) = median(firsts);
    let (ratio, whole_min, whole_max) = median(wholes);
    println!(
        "provider latency L = {} ms (text streamed over L; image, speech after L; moderation immediate)",
        args.latency_ms
    );
    println!(
        "one 5-chapter story, median of {} runs: first chapter readable {first:.2} × L after the model call started (min {first_min:.2}, max {first_max:.2})   [goal ≤ 0.35 × L; unstreamed: the whole story's time]",
        args.runs
    );
    println!(
        "                                         whole story with media {ratio:.2} × L = {:.0} ms after the POST (min {whole_min:.2}, max {whole_max:.2})   [goal ≤ 2.0 × L; sequential would be 11 × L = {} ms]",
        ratio * l * 1000.0,
        11 * args.latency_ms
    );

    // Many stories at once.
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..args.stories {
        let story = post(
            &client,
            format!("{base}/api/v1/stories"),
            create.clone(),
            Some(&token),
        )
        .await;
        ids.push(story["data"]["id"].as_str().unwrap().to_string());
    }
    futures_util::future::join_all(
        ids.iter()
            .map(|id| wait_valid(&client, &base, &token, id, 5)),
    )
    .await;
    let total = started.elapsed();
    println!(
        "{} stories at once: all completed and validated in {:.2} s = {:.1} stories/s (worker concurrency 8; {:.2} × L per story on average)",
        args.stories,
        total.as_secs_f64(),
        args.stories as f64 / total.as_secs_f64(),
        total.as_secs_f64() / latency.as_secs_f64() / args.stories as f64
    );
    let mut failed = false;
    if first > 0.35 {
        eprintln!(
            "NOT MET: the first chapter was readable {first:.2} × L after the call started (goal ≤ 0.35 × L)"
        );
        failed = true;
    }
    if ratio > 2.0 {
        eprintln!("NOT MET: one story took {ratio:.2} × L (goal ≤ 2.0 × L)");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}
