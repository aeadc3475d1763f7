//! Generation pipeline benchmark (not a test): fake text, image and speech providers
//! answer after a fixed latency L (moderation at once); a 5-chapter story should take
//! about 2 × L (text, then every illustration and narration in parallel) and at most
//! 2.5 × L — a sequential pipeline would take 11 × L. Also reports throughput with many
//! stories at once. Every result is validated (status, chapters, media bytes).
//!
//!     cargo bench --bench generation                 # L = 200 ms
//!     cargo bench --bench generation -- 500 40       # L = 500 ms, 40 stories at once

use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use jjongal::app::Application;
use jjongal::config::{Config, ConfigArgs};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRbench-png";
const MP3: &[u8] = b"ID3\x04\x00\x00bench-mp3";

/// The fake model: a valid story of the asked-for length, after the latency.
struct Story {
    delay: Duration,
}

impl Respond for Story {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let prompt = body["messages"][1]["content"].as_str().unwrap_or_default();
        let n: usize = prompt
            .split("정확히 ")
            .nth(1)
            .and_then(|r| r.split('장').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(5);
        let content = json!({
            "title": "벤치마크 이야기",
            "chapters": (1..=n).map(|i| json!({"title": format!("{i}장"), "content": format!("{i}장의 내용입니다.")})).collect::<Vec<_>>()
        });
        ResponseTemplate::new(200).set_delay(self.delay).set_body_json(json!({
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content.to_string()}}]
        }))
    }
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

/// Polls until the story finishes; validates it and one of its files.
async fn wait_valid(client: &reqwest::Client, base: &str, token: &str, id: &str, chapters: usize) {
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
        match story["data"]["status"].as_str() {
            Some("completed") => {
                let list = story["data"]["chapters"].as_array().expect("chapters");
                assert_eq!(list.len(), chapters, "chapter count");
                for c in list {
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
                return;
            }
            Some("failed") => panic!("story failed: {story}"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    jjongal::providers::http::install_tls();
    let latency = Duration::from_millis(args.latency_ms);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Story { delay: latency })
        .mount(&server)
        .await;
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
    for cap in ["llm", "image", "speech", "moderation"] {
        argv.push(Box::leak(format!("--{cap}-base-url").into_boxed_str()));
        argv.push(&base_url);
    }
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
    let mut times = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let story = post(
            &client,
            format!("{base}/api/v1/stories"),
            create.clone(),
            Some(&token),
        )
        .await;
        let id = story["data"]["id"].as_str().expect("story id").to_string();
        wait_valid(&client, &base, &token, &id, 5).await;
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let ratio = median.as_secs_f64() / latency.as_secs_f64();
    println!(
        "provider latency L = {} ms (text, image, speech; moderation immediate)",
        args.latency_ms
    );
    println!(
        "one 5-chapter story: median {:.0} ms over {} runs (min {:.0}, max {:.0}) = {ratio:.2} × L   [goal ≤ 2.5 × L; sequential would be 11 × L = {} ms]",
        median.as_secs_f64() * 1000.0,
        times.len(),
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
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
    if ratio > 2.5 {
        eprintln!("FAIL: one story took {ratio:.2} × L (goal ≤ 2.5 × L)");
        std::process::exit(1);
    }
}
