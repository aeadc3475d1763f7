//! Conversation benchmark (not a test): many concurrent conversations on one server
//! process. Reports the server's memory per open conversation socket and the latency the
//! service adds to `ai_response` on top of a fake LLM answering after a fixed latency L.
//! Every answer is validated (type, echoed `user_text`, the model's text).
//!
//!     cargo bench --bench conversations                 # 1000 sockets, L = 200 ms
//!     cargo bench --bench conversations -- 2000 100     # 2000 sockets, L = 100 ms
//!
//! The server runs as its own process (the release binary), so its memory is measured
//! alone; the file-descriptor limit (`ulimit -n`) must allow the sockets.
//!
//! Where the idle sockets' memory goes (glibc build, for the heap profiler):
//!
//!     cargo bench --no-default-features --bench conversations -- 200 \
//!         --wrap "heaptrack -o /tmp/conversations" --stop-after-idle
//!     heaptrack_print --print-leaks /tmp/conversations.zst
//!
//! `--stop-after-idle` kills the server (SIGKILL) once the idle conversations are measured,
//! so what the profiler reports as leaked is what those sockets held.

use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ANSWER: &str = "우와, 멋진 생각이야! 그 다음엔 어떻게 될까?";

#[derive(Parser)]
struct Args {
    /// Concurrent conversation sockets.
    #[arg(default_value_t = 1000)]
    connections: usize,
    /// Fake LLM latency L in milliseconds.
    #[arg(default_value_t = 200)]
    latency_ms: u64,
    /// Run the server under this command (e.g. a heap profiler), split on spaces.
    #[arg(long)]
    wrap: Option<String>,
    /// Kill the server once the idle conversations are measured, and stop.
    #[arg(long)]
    stop_after_idle: bool,
    #[arg(long, hide = true)]
    bench: bool,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn recv(ws: &mut Socket) -> Value {
    loop {
        match ws.next().await.expect("open").expect("frame") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            _ => continue,
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Opens sockets (100 at a time) until there are `target`.
async fn open_sockets(url: &str, sockets: &mut Vec<Socket>, target: usize) {
    while sockets.len() < target {
        let wave = (target - sockets.len()).min(100);
        let opened = futures_util::future::join_all((0..wave).map(|_| async move {
            tokio_tungstenite::connect_async(url)
                .await
                .expect("connect")
                .0
        }))
        .await;
        sockets.extend(opened);
    }
}

/// Starts a conversation on each socket (100 at a time), checking each greeting.
async fn start_conversations(sockets: &mut [Socket]) {
    for wave in sockets.chunks_mut(100) {
        futures_util::future::join_all(wave.iter_mut().map(|ws| async move {
            ws.send(Message::text(
                json!({"type": "start_conversation"}).to_string(),
            ))
            .await
            .unwrap();
            let hello = recv(ws).await;
            assert_eq!(hello["type"], "conversation_started", "{hello}");
            assert_eq!(hello["text"], ANSWER);
        }))
        .await;
    }
}

/// POSTs `body` as JSON.
async fn post(client: &reqwest::Client, url: String, body: Value) -> reqwest::Response {
    client.post(url).json(&body).send().await.unwrap()
}

/// The median time a client here takes for the turn's two provider calls to the fakes,
/// one after the other (the chat completion of latency L, then the narration).
async fn fakes_alone(client: &reqwest::Client, base: &str) -> Duration {
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let chat: Value = post(
            client,
            format!("{base}/v1/chat/completions"),
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "안녕"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(chat["choices"][0]["message"]["content"], ANSWER);
        let speech = post(
            client,
            format!("{base}/v1/audio/speech"),
            json!({"model": "tts-1", "input": ANSWER, "voice": "alloy"}),
        )
        .await
        .bytes()
        .await
        .unwrap();
        assert!(speech.starts_with(b"ID3"));
        times.push(started.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

/// One user message and its answer; returns the round trip.
async fn exchange(ws: &mut Socket, text: &str) -> Duration {
    let started = Instant::now();
    ws.send(Message::text(
        json!({"type": "user_message", "text": text}).to_string(),
    ))
    .await
    .unwrap();
    let reply = recv(ws).await;
    let elapsed = started.elapsed();
    assert_eq!(reply["type"], "ai_response", "{reply}");
    assert_eq!(reply["user_text"], text, "{reply}");
    assert_eq!(reply["text"], ANSWER, "{reply}");
    assert!(reply["audio_url"].is_string(), "{reply}");
    assert_eq!(reply["audio_status"], "ready", "{reply}");
    elapsed
}

/// `jjongal_sql_statements_total` from the server's metrics listener.
async fn sql_statements(client: &reqwest::Client, metrics: &str) -> u64 {
    let text = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("jjongal_sql_statements_total "))
        .expect("the counter is exported")
        .parse()
        .unwrap()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    jjongal::providers::http::install_tls();
    let latency = Duration::from_millis(args.latency_ms);
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_delay(latency).set_body_json(json!({
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ANSWER}}]
        })))
        .mount(&llm)
        .await;
    // Narration from a provider that answers at once, so the figures are the service's
    // own cost (offline espeak-ng would add its CPU time per reply).
    Mock::given(method("POST"))
        .and(path("/v1/audio/speech"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"ID3\x04\x00bench".to_vec()))
        .mount(&llm)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let mut command = match &args.wrap {
        Some(wrap) => {
            let mut words = wrap.split_whitespace();
            let mut command =
                tokio::process::Command::new(words.next().expect("--wrap names a command"));
            command.args(words).arg(env!("CARGO_BIN_EXE_jjongal"));
            command
        }
        None => tokio::process::Command::new(env!("CARGO_BIN_EXE_jjongal")),
    };
    let mut server = command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // mimalloc's own settings pass through (MIMALLOC_ALLOW_THP=0, …), for experiments.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("MIMALLOC_")))
        .env("JJONGAL_DATA_DIR", dir.path())
        .env("JJONGAL_BIND", "127.0.0.1:0")
        .env("JJONGAL_METRICS_BIND", "127.0.0.1:0")
        .env("JJONGAL_LLM_BASE_URL", format!("{}/v1", llm.uri()))
        .env("JJONGAL_SPEECH_BASE_URL", format!("{}/v1", llm.uri()))
        .env("JJONGAL_SPEECH_CONCURRENCY", "64")
        // Every conversation may ask the (fake) model at once: the provider's concurrency
        // cap (8 by default, for a real provider's rate limits) would otherwise be what
        // is measured (1000 turns / 8 × L).
        .env(
            "JJONGAL_LLM_CONCURRENCY",
            args.connections.clamp(1, 4096).to_string(),
        )
        .env("JJONGAL_LOG", "warn,jjongal=info")
        .env("JJONGAL_LOG_FORMAT", "json")
        .env("JJONGAL_WORKER", "false")
        .env("JJONGAL_DATABASE_POOL_SIZE", "32")
        .env("JJONGAL_WS_MESSAGES_PER_MINUTE", "100000")
        // The benchmark's own allowances: one account on one loopback address opens
        // every socket (the gateway's defaults cap an account at 16 sockets and an
        // address at 256 connections).
        .env("JJONGAL_MAX_SOCKETS_PER_ACCOUNT", "100000")
        .env("JJONGAL_MAX_CONNECTIONS_PER_IP", "100000")
        .env("JJONGAL_RATE_LIMIT_IP_PER_MINUTE", "0")
        .env("JJONGAL_RATE_LIMIT_ACCOUNT_PER_MINUTE", "0")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the release binary");
    let pid = server.id().unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let (addr, metrics) = loop {
        let line = lines.next_line().await.unwrap().expect("server log");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["message"] == "listening" {
            break (
                v["address"].as_str().unwrap().to_string(),
                v["metrics"].as_str().unwrap().to_string(),
            );
        }
    };
    tokio::spawn(async move {
        let mut f = std::fs::File::create("/tmp/server.log").unwrap();
        while let Ok(Some(l)) = lines.next_line().await {
            use std::io::Write;
            let _ = writeln!(f, "{l}");
        }
    });
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    post(
        &client,
        format!("{base}/api/v1/users"),
        json!({"user_id": "bench", "password": "password123", "name": "벤치", "age": 7, "guardian_consent": true}),
    )
    .await;
    let login: Value = post(
        &client,
        format!("{base}/api/v1/auth/token"),
        json!({"user_id": "bench", "password": "password123"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let token = login["data"]["access_token"].as_str().unwrap().to_string();
    let url = format!("ws://{addr}/wss/v1/audio?token={token}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid);

    // The sockets open, then start their conversations, in two halves: what the second
    // half adds is the marginal cost of a socket, with the pools (database connections,
    // provider connections) and caches the first half warmed already counted out.
    let mut open_time = Duration::ZERO;
    let mut sockets: Vec<Socket> = Vec::with_capacity(args.connections);
    let half = args.connections / 2;
    let mut rss = Vec::new();
    for target in [half, args.connections] {
        let first = sockets.len();
        let started = Instant::now();
        open_sockets(&url, &mut sockets, target).await;
        open_time += started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let bare = rss_kib(pid);
        let started = Instant::now();
        start_conversations(&mut sockets[first..]).await;
        open_time += started.elapsed();
        // Idle: what the allocator kept of the greetings' work is given back meanwhile.
        tokio::time::sleep(Duration::from_secs(3)).await;
        rss.push((bare, rss_kib(pid)));
    }
    let (_, half_rss) = rss[0];
    let (bare_rss, busy_rss) = rss[1];
    let second = (args.connections - half) as f64;
    let per_socket = busy_rss.saturating_sub(half_rss) as f64 / second;
    let per_bare_socket = bare_rss.saturating_sub(half_rss) as f64 / second;
    let average = busy_rss.saturating_sub(idle_rss) as f64 / args.connections as f64;
    if args.stop_after_idle {
        // The server is the wrapper's child (or the process itself): killed outright, the
        // heap it held is what a profiler reports as not freed.
        match args.wrap {
            Some(_) => {
                let _ = std::process::Command::new("pkill")
                    .args(["-KILL", "-P", &pid.to_string(), "-x", "jjongal"])
                    .status();
            }
            None => server.start_kill().expect("kill the server"),
        }
        let _ = server.wait().await;
        println!("stopped after {} idle conversations", args.connections);
        return;
    }

    // The fakes alone, as a client on this machine sees them (their timers fire on a
    // millisecond grid, after the HTTP exchange): one turn's two provider calls.
    let fakes = fakes_alone(&client, &llm.uri()).await;

    // Latency with the server otherwise idle: one socket, one message at a time; the SQL
    // statements they cost, from the server's own counter.
    // (A scrape of /metrics runs its own statements, counted before the figure is read:
    // two scrapes with nothing between them say how many, taken off below.)
    let scrape = sql_statements(&client, &metrics).await;
    let statements_before = sql_statements(&client, &metrics).await;
    let scrape = statements_before - scrape;
    let mut solo = Vec::new();
    for i in 0..20 {
        solo.push(exchange(&mut sockets[0], &format!("혼자 말하기 {i}")).await);
    }
    let per_message = (sql_statements(&client, &metrics).await - statements_before - scrape) as f64
        / solo.len() as f64;
    solo.sort();

    // Everyone talks at once.
    let wall = Instant::now();
    let mut all: Vec<Duration> = futures_util::future::join_all(
        sockets
            .iter_mut()
            .enumerate()
            .map(|(i, ws)| async move { exchange(ws, &format!("동시에 {i}")).await }),
    )
    .await;
    let wall = wall.elapsed();
    all.sort();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let over = |d: Duration| ms(d) - args.latency_ms as f64;
    println!(
        "fake LLM latency L = {} ms; {} conversation sockets on one server process",
        args.latency_ms, args.connections
    );
    println!(
        "memory: {per_socket:.1} KiB per open, idle conversation socket ({per_bare_socket:.1} KiB before its conversation starts), measured over the second {second} sockets"
    );
    println!(
        "memory: server RSS {:.1} MiB idle → {:.1} MiB with {} open, idle conversations = {average:.1} KiB per socket with the pools' warm-up (opened in {:.1} s)",
        idle_rss as f64 / 1024.0,
        busy_rss as f64 / 1024.0,
        args.connections,
        open_time.as_secs_f64()
    );
    println!("SQL statements per user_message: {per_message:.2}");
    println!(
        "one conversation alone: ai_response in median {:.1} ms = L + {:.1} ms (p95 L + {:.1} ms)",
        ms(percentile(&solo, 0.5)),
        over(percentile(&solo, 0.5)),
        over(percentile(&solo, 0.95))
    );
    println!(
        "  the two fake provider calls alone (chat + speech, one after the other): median {:.1} ms = L + {:.1} ms; the service adds {:.1} ms",
        ms(fakes),
        over(fakes),
        ms(percentile(&solo, 0.5)) - ms(fakes)
    );
    println!(
        "all {} at once: every answer validated in {:.2} s; per answer median L + {:.0} ms, p95 L + {:.0} ms, max L + {:.0} ms",
        args.connections,
        wall.as_secs_f64(),
        over(percentile(&all, 0.5)),
        over(percentile(&all, 0.95)),
        over(percentile(&all, 1.0))
    );
    drop(sockets);
    let _ = server.kill().await;
}
