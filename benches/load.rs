//! Load benchmark (not a test): the release server under many concurrent authenticated
//! clients, on SQLite and on PostgreSQL, with a seeded data set (many accounts, each with
//! many completed stories). Every response body is validated, not only its status.
//!
//!     cargo bench --bench load                                  # the full run (≈ 30 min)
//!     cargo bench --bench load -- --duration 6 --soak 0         # a quick look
//!
//! Per backend it measures, interleaved in rounds so drift on a noisy machine hits every
//! scenario alike:
//! - the stack's limit: a handler answering bytes held in memory (a stored facade page)
//!   through the same middleware, without and with the token check;
//! - the database limit: the page's statements issued by the benchmark itself (the
//!   store's page read on a pool of the server's size, no HTTP), judged against the page;
//! - `GET /api/v1/stories?page_size=20` (REST facade) and the same page by `POST /graphql`;
//! - `GET /api/v1/stories/{id}`, `GET /api/v1/users/me`;
//!
//! then a soak at 80 % of the facade page's measured throughput (server memory sampled
//! throughout), then `POST /api/v1/stories` with the offline providers generating behind it.
//! Rate limits are switched off and the story quota raised for the run: all load comes from
//! one loopback address. PostgreSQL runs when `JJONGAL_BENCH_DATABASE_URL` (or
//! `JJONGAL_TEST_DATABASE_URL`) points at a server; the benchmark creates and drops its own
//! database there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use jjongal::store::models::{ChapterFiles, ChapterRow, MediaFileRow, StoryRow};
use jjongal::store::schema::{chapters, media_files, stories};
use jjongal::vocabulary::{ChapterId, MediaFileId, StoryId, UserId};
use serde::Deserialize;
use serde_json::json;

#[derive(Parser, Clone)]
struct Args {
    /// Seconds each read scenario is measured, split over the rounds (after a warm-up).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Rounds the read scenarios are interleaved in.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Concurrent clients (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seeded accounts.
    #[arg(long, default_value_t = 200)]
    accounts: usize,
    /// Completed stories per account (5 chapters each, illustrated and narrated).
    #[arg(long, default_value_t = 50)]
    stories: usize,
    /// Seconds of the memory soak at 80 % of the facade page's throughput; 0 skips it.
    #[arg(long, default_value_t = 600)]
    soak: u64,
    /// Seconds `POST /api/v1/stories` is measured.
    #[arg(long, default_value_t = 10)]
    create_duration: u64,
    /// Backends, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    databases: Vec<String>,
    /// Only these read scenarios (for profiling one of them); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    #[arg(long, hide = true)]
    bench: bool,
}

const PASSWORD: &str = "bench-password-123";
/// The unmeasured run of a scenario before each of its measured slices.
const SETTLE: Duration = Duration::from_millis(500);
const PAGE: usize = 20;
const CHAPTERS: usize = 5;
/// A chapter's body, about the length a medium story's chapter has (≈ 400 characters).
const BODY: &str = "옛날 옛적, 푸른 숲속 작은 마을에 용감한 토끼 토토가 살았어요. 토토는 아침마다 \
    지혜로운 거북이 할아버지를 찾아가 인사를 했지요. 어느 날 할아버지가 말했어요. \
    \"토토야, 저 산 너머에는 별빛이 잠드는 호수가 있단다. 그 호수의 물을 마시면 누구든 \
    친구의 마음을 들을 수 있다고 하지.\" 토토의 두 귀가 쫑긋 섰어요. 토토는 작은 가방에 \
    당근 세 개와 따뜻한 목도리를 챙겨 길을 나섰어요. 숲길은 생각보다 길고 구불구불했지만, \
    토토는 노래를 부르며 씩씩하게 걸었어요. 해가 질 무렵, 토토는 길을 잃고 울고 있는 아기 \
    다람쥐를 만났어요. \"울지 마, 내가 집까지 데려다 줄게.\" 토토는 다람쥐의 손을 꼭 잡고 \
    별을 따라 걸었어요. 별빛이 반짝일 때마다 둘의 발걸음도 가벼워졌답니다. 그날 밤, \
    토토는 호수보다 더 소중한 것을 찾았다는 걸 알게 되었어요. 바로 친구를 돕는 마음이었지요.";

// ---------------------------------------------------------------- server process

struct Server {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    /// The metrics listener (`jjongal_sql_statements_total`).
    metrics: SocketAddr,
    log: PathBuf,
}

impl Server {
    async fn start(dir: &Path, database_url: &str) -> anyhow::Result<Server> {
        let log = dir.join("server.log");
        let stderr = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jjongal"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JJONGAL_DATA_DIR", dir)
            .env("JJONGAL_DATABASE_URL", database_url)
            .env("JJONGAL_BIND", "127.0.0.1:0")
            .env("JJONGAL_METRICS_BIND", "127.0.0.1:0")
            .env("JJONGAL_LOG_FORMAT", "json")
            // The benchmark's own allowances: one loopback address carries all the load.
            .env("JJONGAL_RATE_LIMIT_IP_PER_MINUTE", "0")
            .env("JJONGAL_MAX_CONNECTIONS_PER_IP", "100000")
            .env("JJONGAL_RATE_LIMIT_ACCOUNT_PER_MINUTE", "0")
            .env("JJONGAL_STORY_QUOTA", "100000000")
            .env("JJONGAL_ACCESS_TOKEN_TTL", "86400")
            .env("JJONGAL_BENCH_ROUTES", "true")
            .envs(
                std::env::var("JJONGAL_DATABASE_POOL_SIZE")
                    .map(|v| ("JJONGAL_DATABASE_POOL_SIZE", v)),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("start the release binary")?;
        let pid = child.id().context("server pid")?;
        let started = Instant::now();
        let (addr, metrics) = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let listening = text.lines().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                (v["message"] == "listening").then(|| {
                    Some((
                        v["address"].as_str()?.parse().ok()?,
                        v["metrics"].as_str()?.parse().ok()?,
                    ))
                })?
            });
            if let Some(found) = listening {
                break found;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server did not start; its log:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Server {
            child,
            pid,
            addr,
            metrics,
            log,
        })
    }

    /// SQL statements the server has run (`jjongal_sql_statements_total`). A scrape runs
    /// statements of its own, counted before the figure is read: about three.
    async fn statements(&self) -> anyhow::Result<u64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|l| l.strip_prefix("jjongal_sql_statements_total "))
            .context("the statement counter is exported")?
            .parse()
            .context("a count")
    }

    fn memory(&self) -> Memory {
        let status = ProcStatus::read(self.pid);
        Memory {
            rss_kib: status.field("VmRSS:"),
            peak_kib: status.field("VmHWM:"),
        }
    }

    async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        // What the server logged at WARN and above, by message, for the report.
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for line in log.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let level = v["level"].as_str().unwrap_or("");
            let message = v["message"].as_str().unwrap_or("");
            if (level == "WARN" || level == "ERROR") && !message.starts_with("development mode") {
                let detail = v["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                *counts
                    .entry(format!("{level} {message}{detail}"))
                    .or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(m, n)| format!("    {n} × {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------- HTTP client

/// One keep-alive HTTP/1.1 connection (hyper's client: the load generator shares the two
/// cores with the server, so it should cost as little as possible).
struct Connection {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Connection {
        Connection { addr, sender: None }
    }

    async fn send(&mut self, request: &Call) -> anyhow::Result<(StatusCode, Bytes)> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected");
        sender.ready().await?;
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(&request.path)
            .header(header::HOST, "localhost");
        if let Some(token) = &request.token {
            builder = builder.header(header::AUTHORIZATION, &**token);
        }
        let body = match &request.body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Full::new(b.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let response = sender.send_request(builder.body(body)?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// One request of a scenario, with what its answer must be.
struct Call {
    method: Method,
    path: String,
    token: Option<Arc<str>>,
    body: Option<Bytes>,
    expect: Expect,
}

#[derive(Clone)]
enum Expect {
    /// The facade page (or the same bytes from the stack-limit handler).
    FacadePage(Arc<Account>),
    GraphqlPage(Arc<Account>),
    Story(Arc<Account>, usize),
    Me(Arc<Account>),
    Created(Arc<Account>),
}

// ---------------------------------------------------------------- what answers must be

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<T> {
    success: bool,
    message: String,
    data: T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListOut {
    object: String,
    results: Vec<StoryOut>,
    has_more: bool,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoryOut {
    id: String,
    object: String,
    owner_id: String,
    title: Option<String>,
    status: String,
    chapters: Vec<ChapterOut>,
    created_at: String,
    updated_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChapterOut {
    id: String,
    object: String,
    chapter_number: usize,
    title: String,
    content: String,
    image: Option<FileOut>,
    audio: Option<FileOut>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOut {
    object: String,
    r#type: String,
    url: String,
    expiry_time: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserOut {
    id: String,
    object: String,
    name: String,
    age: i32,
    created_at: String,
}

#[derive(Deserialize)]
struct GraphqlOut {
    data: Option<GraphqlData>,
    errors: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphqlData {
    data: PageConnection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageConnection {
    edges: Vec<Edge>,
    #[serde(rename = "pageInfo")]
    page_info: PageInfoOut,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edge {
    node: StoryOut,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageInfoOut {
    #[serde(rename = "hasNextPage")]
    has_next_page: bool,
    #[serde(rename = "endCursor")]
    end_cursor: Option<String>,
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn check_file(file: &Option<FileOut>, kind: &str) -> Result<(), String> {
    let file = file
        .as_ref()
        .ok_or_else(|| format!("chapter without {kind}"))?;
    ensure(
        file.object == "file"
            && file.r#type == "internal"
            && file.url.contains("/media/")
            && file.url.contains("?md5=")
            && file.url.contains("&expires=")
            && file.expiry_time.ends_with('Z'),
        || format!("bad {kind} file {}", file.url),
    )
}

/// A seeded, completed story as every read must show it.
fn check_story(story: &StoryOut, account: &Account, index: usize) -> Result<(), String> {
    let seeded = &account.stories[index];
    ensure(story.id == seeded.id, || {
        format!("story {} where {} was expected", story.id, seeded.id)
    })?;
    ensure(
        story.object == "story"
            && story.owner_id == account.id
            && story.status == "completed"
            && story.title.as_deref() == Some(seeded.title.as_str())
            && story.created_at == seeded.created_at
            && story.updated_at == seeded.created_at,
        || format!("story {} has the wrong fields", story.id),
    )?;
    ensure(story.chapters.len() == CHAPTERS, || {
        format!("story {} has {} chapters", story.id, story.chapters.len())
    })?;
    for (n, chapter) in story.chapters.iter().enumerate() {
        let number = n + 1;
        ensure(
            chapter.object == "chapter"
                && chapter.chapter_number == number
                && chapter.id.len() == 36
                && chapter.title == format!("{number}장")
                && chapter
                    .content
                    .strip_prefix(&format!("{number}. "))
                    .is_some_and(|rest| rest == BODY),
            || format!("story {} chapter {number} is wrong", story.id),
        )?;
        check_file(&chapter.image, "image")?;
        check_file(&chapter.audio, "audio")?;
    }
    Ok(())
}

/// The first page: the account's newest `PAGE` stories, newest first.
fn check_page(stories: &[StoryOut], account: &Account) -> Result<(), String> {
    ensure(stories.len() == PAGE, || {
        format!("{} stories on the page", stories.len())
    })?;
    let newest = account.stories.len() - 1;
    for (i, story) in stories.iter().enumerate() {
        check_story(story, account, newest - i)?;
    }
    Ok(())
}

fn validate(expect: &Expect, status: StatusCode, body: &[u8]) -> Result<(), String> {
    let wanted = match expect {
        Expect::Created(_) => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    if status != wanted {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    let parse_error = |e: serde_json::Error| {
        format!(
            "body does not parse ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )
    };
    match expect {
        Expect::FacadePage(account) => {
            let page: Envelope<ListOut> = serde_json::from_slice(body).map_err(parse_error)?;
            ensure(page.success && !page.message.is_empty(), || {
                "envelope".into()
            })?;
            ensure(
                page.data.object == "list" && page.data.has_more && page.data.next_cursor.is_some(),
                || "list fields".into(),
            )?;
            check_page(&page.data.results, account)
        }
        Expect::GraphqlPage(account) => {
            let out: GraphqlOut = serde_json::from_slice(body).map_err(parse_error)?;
            ensure(out.errors.is_none(), || format!("errors: {:?}", out.errors))?;
            let connection = out.data.ok_or("no data")?.data;
            ensure(
                connection.page_info.has_next_page && connection.page_info.end_cursor.is_some(),
                || "pageInfo".into(),
            )?;
            let stories: Vec<StoryOut> = connection.edges.into_iter().map(|e| e.node).collect();
            check_page(&stories, account)
        }
        Expect::Story(account, index) => {
            let out: Envelope<StoryOut> = serde_json::from_slice(body).map_err(parse_error)?;
            ensure(out.success, || "envelope".into())?;
            check_story(&out.data, account, *index)
        }
        Expect::Me(account) => {
            let out: Envelope<UserOut> = serde_json::from_slice(body).map_err(parse_error)?;
            ensure(
                out.success
                    && out.data.id == account.id
                    && out.data.object == "user"
                    && out.data.name == account.name
                    && out.data.age == 7
                    && out.data.created_at.ends_with('Z'),
                || format!("user {} is wrong", out.data.id),
            )
        }
        Expect::Created(account) => {
            let out: Envelope<StoryOut> = serde_json::from_slice(body).map_err(parse_error)?;
            ensure(
                out.success
                    && out.data.owner_id == account.id
                    && out.data.status == "pending"
                    && out.data.title.is_none()
                    && out.data.chapters.is_empty()
                    && out.data.id.len() == 36,
                || format!("created story {} is wrong", out.data.id),
            )
        }
    }
}

// ---------------------------------------------------------------- seeding

struct SeededStory {
    id: String,
    title: String,
    created_at: String,
}

struct Account {
    id: String,
    name: String,
    bearer: Arc<str>,
    stories: Vec<SeededStory>,
}

async fn call_json(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut conn = Connection::new(addr);
    let call = Call {
        method,
        path: path.to_string(),
        token: None,
        body: Some(Bytes::from(body.to_string())),
        expect: Expect::Me(Arc::new(Account {
            id: String::new(),
            name: String::new(),
            bearer: Arc::from(""),
            stories: Vec::new(),
        })),
    };
    let (status, bytes) = conn.send(&call).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)?;
    if !status.is_success() {
        bail!("{path}: {status} {value}");
    }
    Ok(value)
}

/// Signs up and logs in the accounts over the API (passwords hashed the real way), then
/// writes their completed stories straight into the database (generation would take hours).
async fn seed(
    args: &Args,
    addr: SocketAddr,
    database_url: &str,
) -> anyhow::Result<Vec<Arc<Account>>> {
    use futures_util::StreamExt;
    let started = Instant::now();
    let people: Vec<(String, String)> = futures_util::stream::iter(0..args.accounts)
        .map(|i| async move {
            let login = format!("bench{i:05}");
            let name = format!("벤치 가족 {i}");
            let user = call_json(
                addr,
                Method::POST,
                "/api/v1/users",
                json!({"user_id": login, "password": PASSWORD, "name": name, "age": 7, "guardian_consent": true}),
            )
            .await?;
            let token = call_json(
                addr,
                Method::POST,
                "/api/v1/auth/token",
                json!({"user_id": login, "password": PASSWORD}),
            )
            .await?;
            let id = user["data"]["id"].as_str().context("user id")?.to_string();
            let access = token["data"]["access_token"]
                .as_str()
                .context("access token")?
                .to_string();
            anyhow::Ok((id, access))
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let pool =
        jjongal::store::Pool::connect_waiting(database_url, 2, Duration::from_secs(30)).await?;
    let base = chrono::Utc::now() - chrono::Duration::days(30);
    let mut accounts = Vec::with_capacity(people.len());
    for (a, (id, access)) in people.into_iter().enumerate() {
        let owner: UserId = id.parse().context("user id")?;
        let mut story_rows = Vec::new();
        let mut chapter_rows = Vec::new();
        let mut file_rows = Vec::new();
        let mut seeded = Vec::new();
        for s in 0..args.stories {
            let story_id = StoryId::random();
            let created = base + chrono::Duration::seconds((s * args.accounts + a) as i64 * 7);
            let created = jjongal::store::to_db(created);
            let title = format!("별빛 호수의 토토 {s}");
            story_rows.push(StoryRow {
                id: story_id,
                owner_id: owner,
                conversation_id: None,
                title: Some(title.clone()),
                title_from_guardian: false,
                status: jjongal::vocabulary::StoryStatus::Completed,
                theme: "우정".into(),
                characters: r#"["용감한 토끼","지혜로운 거북이"]"#.into(),
                length: jjongal::vocabulary::StoryLength::Medium,
                chapter_count: CHAPTERS as i32,
                child_name: "벤치".into(),
                child_age: 7,
                failure_reason: None,
                created_at: created,
                updated_at: created,
                lease_owner: None,
                lease_expires_at: None,
                attempts: 1,
                revision: 0,
            });
            for n in 1..=CHAPTERS {
                let image = MediaFileId::random();
                let audio = MediaFileId::random();
                let path = |ext: &str| format!("{id}/{story_id}/chapter-{n}.{ext}");
                for (file, ext, content_type) in
                    [(image, "svg", "image/svg+xml"), (audio, "wav", "audio/wav")]
                {
                    file_rows.push(MediaFileRow {
                        id: file,
                        owner_id: owner,
                        story_id: Some(story_id),
                        path: path(ext),
                        content_type: content_type.into(),
                        size_bytes: 40_000,
                        created_at: created,
                    });
                }
                chapter_rows.push(ChapterRow {
                    id: ChapterId::random(),
                    story_id,
                    chapter_number: n as i32,
                    title: format!("{n}장"),
                    content: format!("{n}. {BODY}"),
                    created_at: created,
                    files: ChapterFiles {
                        image_file_id: Some(image),
                        image_path: Some(path("svg")),
                        image_content_type: Some("image/svg+xml".into()),
                        audio_file_id: Some(audio),
                        audio_path: Some(path("wav")),
                        audio_content_type: Some("audio/wav".into()),
                    },
                });
            }
            seeded.push(SeededStory {
                id: story_id.to_string(),
                title,
                created_at: created
                    .and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
        }
        insert_rows(&pool, &story_rows, &file_rows, &chapter_rows).await?;
        accounts.push(Arc::new(Account {
            id,
            name: format!("벤치 가족 {a}"),
            bearer: Arc::from(format!("Bearer {access}")),
            stories: seeded,
        }));
    }
    gather_statistics(&pool).await?;
    println!(
        "  seeded {} accounts × {} completed stories × {CHAPTERS} chapters (each with an image and a narration) in {:.1} s",
        args.accounts,
        args.stories,
        started.elapsed().as_secs_f64()
    );
    Ok(accounts)
}

/// PostgreSQL plans from table statistics, which autovacuum gathers in a live database
/// some time after a bulk load (and never where it is off, as on the CI machine). Without
/// them the story page's chapter join is planned as hash joins over every media row: about
/// 140 ms a page instead of 2 (README, *Running on PostgreSQL*). The seed is a bulk load, so
/// it gathers them itself, as a live database would have them; SQLite needs none here.
async fn gather_statistics(pool: &jjongal::store::Pool) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        setting: String,
    }
    if let jjongal::store::Conn::Pg(c) = &mut pool.get().await? {
        let c: &mut AsyncPgConnection = c;
        let autovacuum: Setting =
            diesel::sql_query("SELECT setting FROM pg_settings WHERE name = 'autovacuum'")
                .get_result(c)
                .await?;
        c.batch_execute("ANALYZE").await?;
        println!(
            "  table statistics gathered after the bulk load (ANALYZE; autovacuum is {} on this server)",
            autovacuum.setting
        );
    }
    Ok(())
}

/// One account's rows in one transaction: batched on PostgreSQL; row by row on SQLite
/// (diesel-async's SQLite wrapper has no batch insert), which is fast there anyway.
async fn insert_rows(
    pool: &jjongal::store::Pool,
    story_rows: &[StoryRow],
    file_rows: &[MediaFileRow],
    chapter_rows: &[ChapterRow],
) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    match &mut pool.get().await? {
        jjongal::store::Conn::Pg(c) => {
            let c: &mut AsyncPgConnection = c;
            c.transaction(async |c| {
                for chunk in story_rows.chunks(200) {
                    diesel::insert_into(stories::table)
                        .values(chunk)
                        .execute(c)
                        .await?;
                }
                for chunk in file_rows.chunks(500) {
                    diesel::insert_into(media_files::table)
                        .values(chunk)
                        .execute(c)
                        .await?;
                }
                for chunk in chapter_rows.chunks(500) {
                    diesel::insert_into(chapters::table)
                        .values(chunk)
                        .execute(c)
                        .await?;
                }
                diesel::QueryResult::Ok(())
            })
            .await?;
        }
        jjongal::store::Conn::Sqlite(c) => {
            let c: &mut jjongal::store::SqliteConn = c;
            c.transaction(async |c| {
                for row in story_rows {
                    diesel::insert_into(stories::table)
                        .values(row)
                        .execute(c)
                        .await?;
                }
                for row in file_rows {
                    diesel::insert_into(media_files::table)
                        .values(row)
                        .execute(c)
                        .await?;
                }
                for row in chapter_rows {
                    diesel::insert_into(chapters::table)
                        .values(row)
                        .execute(c)
                        .await?;
                }
                diesel::QueryResult::Ok(())
            })
            .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- load

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, clap::ValueEnum)]
enum Scenario {
    Limit,
    LimitAuth,
    /// Not through the server: the page's statements issued by the benchmark itself.
    DbLimit,
    Facade,
    Graphql,
    Story,
    Me,
    Create,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Limit => "limit: bytes from memory, same middleware",
            Scenario::LimitAuth => "limit + token check (JWT, account row)",
            Scenario::DbLimit => "database limit: the page's statements direct",
            Scenario::Facade => "GET /api/v1/stories?page_size=20",
            Scenario::Graphql => "POST /graphql (the same page)",
            Scenario::Story => "GET /api/v1/stories/{id}",
            Scenario::Me => "GET /api/v1/users/me",
            Scenario::Create => "POST /api/v1/stories (offline)",
        }
    }
}

/// The facade's own document for the page, sent as any GraphQL client would.
fn page_document() -> String {
    jjongal::rest::story_page_document()
}

struct Plan {
    accounts: Vec<Arc<Account>>,
    graphql_body: Bytes,
    create_body: Bytes,
}

impl Plan {
    /// The `i`-th request a client sends in a scenario: clients walk the accounts (and
    /// stories) so the whole data set is read, not one cached row.
    fn call(&self, scenario: Scenario, client: usize, i: usize) -> Call {
        let n = self.accounts.len();
        let account = self.accounts[(client + i * 7919) % n].clone();
        let bearer = Some(account.bearer.clone());
        let get = |path: String, expect: Expect| Call {
            method: Method::GET,
            path,
            token: bearer.clone(),
            body: None,
            expect,
        };
        match scenario {
            // The stored page is account 0's.
            Scenario::Limit => Call {
                token: None,
                ..get(
                    "/api/v1/_bench/limit".into(),
                    Expect::FacadePage(self.accounts[0].clone()),
                )
            },
            Scenario::LimitAuth => get(
                "/api/v1/_bench/limit/auth".into(),
                Expect::FacadePage(self.accounts[0].clone()),
            ),
            Scenario::Facade => get(
                format!("/api/v1/stories?page_size={PAGE}"),
                Expect::FacadePage(account),
            ),
            Scenario::Graphql => Call {
                method: Method::POST,
                body: Some(self.graphql_body.clone()),
                ..get("/graphql".into(), Expect::GraphqlPage(account))
            },
            Scenario::Story => {
                let index = (client * 31 + i) % account.stories.len();
                let path = format!("/api/v1/stories/{}", account.stories[index].id);
                get(path, Expect::Story(account, index))
            }
            Scenario::Me => get("/api/v1/users/me".into(), Expect::Me(account)),
            Scenario::DbLimit => unreachable!("the database limit is not an HTTP request"),
            Scenario::Create => Call {
                method: Method::POST,
                body: Some(self.create_body.clone()),
                ..get("/api/v1/stories".into(), Expect::Created(account))
            },
        }
    }
}

#[derive(Default)]
struct Sample {
    /// Latencies in microseconds.
    latencies: Vec<u32>,
    /// SQL statements the server ran meanwhile (read rounds only).
    statements: u64,
    errors: u64,
    first_errors: Vec<String>,
    elapsed: Duration,
}

impl Sample {
    /// One request's outcome: its latency when its answer was right, its error if not.
    fn record(&mut self, latency: Duration, verdict: Result<(), String>) {
        match verdict {
            Ok(()) => self.latencies.push(latency.as_micros() as u32),
            Err(e) => {
                self.errors += 1;
                if self.first_errors.len() < 3 {
                    self.first_errors.push(e);
                }
            }
        }
    }
    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.statements += other.statements;
        self.errors += other.errors;
        for e in other.first_errors {
            if self.first_errors.len() < 3 {
                self.first_errors.push(e);
            }
        }
        self.elapsed += other.elapsed;
    }
    fn throughput(&self) -> f64 {
        (self.latencies.len() as u64 + self.errors) as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort_unstable();
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

/// Runs `scenario` on `concurrency` clients for `duration`; with `rate` set, the clients
/// together send at most that many requests per second (open loop).
async fn load(
    addr: SocketAddr,
    plan: &Arc<Plan>,
    scenario: Scenario,
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Sample {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|client| {
            let plan = plan.clone();
            let stop = stop.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut conn = Connection::new(addr);
                let mut sample = Sample::default();
                let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
                let mut next = Instant::now()
                    + interval.map_or(Duration::ZERO, |iv| {
                        iv.mul_f64(client as f64 / concurrency as f64)
                    });
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(iv) = interval {
                        tokio::time::sleep_until(next.into()).await;
                        next += iv;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    let call = plan.call(scenario, client, i);
                    i += 1;
                    let t = Instant::now();
                    let outcome = conn.send(&call).await;
                    let latency = t.elapsed();
                    sent.fetch_add(1, Ordering::Relaxed);
                    let verdict = match outcome {
                        Ok((status, body)) => validate(&call.expect, status, &body),
                        Err(e) => {
                            conn.sender = None;
                            Err(format!("transport: {e:#}"))
                        }
                    };
                    sample.record(latency, verdict);
                }
                sample
            })
        })
        .collect();
    gather(tasks, &stop, duration, started).await
}

/// The server's connection pool size (`JJONGAL_DATABASE_POOL_SIZE`, left at its default).
const SERVER_POOL_SIZE: usize = 10;

/// The database limit: `concurrency` tasks reading account pages through the store's own
/// page read (the statements `GET /api/v1/stories` runs, prepared, on a pool of the
/// server's size) in the benchmark's process, with no HTTP, GraphQL or JSON; every page
/// checked (its story ids newest first, a next page, five chapters each).
async fn db_limit(
    pool: &jjongal::store::Pool,
    plan: &Arc<Plan>,
    concurrency: usize,
    duration: Duration,
) -> Sample {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|client| {
            let (plan, pool, stop) = (plan.clone(), pool.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sample = Sample::default();
                let n = plan.accounts.len();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let account = &plan.accounts[(client + i * 7919) % n];
                    i += 1;
                    let owner: UserId = account.id.parse().expect("account ids are UUIDs");
                    let t = Instant::now();
                    let outcome = jjongal::store::page_for_benchmark(&pool, owner, PAGE).await;
                    let latency = t.elapsed();
                    let verdict = match outcome {
                        Ok((ids, more, chapters)) => {
                            let newest = account.stories.len() - 1;
                            let expected =
                                (0..PAGE).map(|k| account.stories[newest - k].id.as_str());
                            if !more || chapters != PAGE * CHAPTERS {
                                Err(format!("next page {more}, {chapters} chapters"))
                            } else if !ids
                                .iter()
                                .map(|id| id.to_string())
                                .eq(expected.map(String::from))
                            {
                                Err(format!("page ids {ids:?}"))
                            } else {
                                Ok(())
                            }
                        }
                        Err(e) => Err(format!("database: {e}")),
                    };
                    sample.record(latency, verdict);
                }
                sample
            })
        })
        .collect();
    gather(tasks, &stop, duration, started).await
}

/// Lets the client `tasks` run for `duration`, stops them, and merges what they measured
/// (its time counted from `started`).
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<Sample>>,
    stop: &AtomicBool,
    duration: Duration,
    started: Instant,
) -> Sample {
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Sample::default();
    for task in tasks {
        total.merge(task.await.expect("client task"));
    }
    total.elapsed = started.elapsed();
    total
}

/// The lowest per-minute mean in each half of a soak, minute 1 (the warm-up) left out;
/// `None` for fewer than two minutes after it.
fn floors(per_minute: &[f64]) -> Option<(f64, f64)> {
    let body = per_minute.get(1..).filter(|b| b.len() >= 2)?;
    let (first, second) = body.split_at(body.len() / 2);
    let low = |half: &[f64]| half.iter().copied().fold(f64::INFINITY, f64::min);
    Some((low(first), low(second)))
}

/// The server's `/proc/<pid>/status` (empty once it has exited).
struct ProcStatus(String);

impl ProcStatus {
    fn read(pid: u32) -> ProcStatus {
        ProcStatus(std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default())
    }

    /// The number after `name` (e.g. `"VmRSS:"`, in KiB), 0 when absent.
    fn field(&self, name: &str) -> u64 {
        self.0
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// One reading of the server's memory: RSS, its anonymous part (heaps, stacks; the rest
/// is file-backed: the binary, mapped files), and the thread count.
#[derive(Clone, Copy, Default)]
struct MemoryPoint {
    at: f64,
    rss_kib: u64,
    anon_kib: u64,
    threads: u64,
}

/// Samples the server's memory every `every` until stopped.
fn sample_memory(
    server_pid: u32,
    every: Duration,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<MemoryPoint>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = tokio::spawn(async move {
        let started = Instant::now();
        let mut points = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            let status = ProcStatus::read(server_pid);
            points.push(MemoryPoint {
                at: started.elapsed().as_secs_f64(),
                rss_kib: status.field("VmRSS:"),
                anon_kib: status.field("RssAnon:"),
                threads: status.field("Threads:"),
            });
            tokio::time::sleep(every).await;
        }
        points
    });
    (stop, handle)
}

struct Row {
    scenario: Scenario,
    throughput: f64,
    /// SQL statements per request (answered or not), from the server's own counter.
    statements: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    first_errors: Vec<String>,
}

impl Row {
    fn of(scenario: Scenario, mut sample: Sample) -> Row {
        Row {
            scenario,
            throughput: sample.throughput(),
            statements: sample.statements as f64
                / (sample.latencies.len() as u64 + sample.errors).max(1) as f64,
            p50: sample.percentile(0.50),
            p99: sample.percentile(0.99),
            p999: sample.percentile(0.999),
            errors: sample.errors,
            first_errors: std::mem::take(&mut sample.first_errors),
        }
    }
}

struct Soak {
    rate: f64,
    achieved: f64,
    seconds: f64,
    errors: u64,
    first_errors: Vec<String>,
    /// Mean RSS (MiB) over the soak's second minute and over its last minute.
    early_mib: f64,
    late_mib: f64,
    /// The same for the anonymous part (heaps and stacks): the figure judged, since on
    /// SQLite RSS also counts the database pages each connection maps (`mmap_size`).
    early_anon_mib: f64,
    late_anon_mib: f64,
    max_mib: f64,
    /// Mean RSS (MiB) of each minute of the soak, and its anonymous part.
    per_minute_mib: Vec<f64>,
    per_minute_anon_mib: Vec<f64>,
    /// Threads at the soak's start and end.
    threads: (u64, u64),
}

struct Report {
    backend: &'static str,
    rows: Vec<Row>,
    soak: Option<Soak>,
    idle_mib: f64,
    peak_mib: f64,
    page_bytes: usize,
    server_warnings: String,
}

impl Report {
    fn row(&self, s: Scenario) -> Option<&Row> {
        self.rows.iter().find(|r| r.scenario == s)
    }
}

async fn run_backend(
    args: &Args,
    backend: &'static str,
    database_url: &str,
    dir: &Path,
) -> anyhow::Result<Report> {
    println!("\n== {backend}: starting the release server");
    let server = Server::start(dir, database_url).await?;
    let addr = server.addr;
    let accounts = seed(args, addr, database_url).await?;
    let idle = server.memory();
    let plan = Arc::new(Plan {
        accounts,
        graphql_body: Bytes::from(
            json!({"query": page_document(), "variables": {"first": PAGE}}).to_string(),
        ),
        create_body: Bytes::from(
            json!({"user_preferences": {"theme": "우주 모험", "characters": ["용감한 토끼"], "length": "short"}})
                .to_string(),
        ),
    });

    // The stack-limit handler answers account 0's facade page, byte for byte.
    let mut conn = Connection::new(addr);
    let first = plan.call(Scenario::Facade, 0, 0);
    let first = Call {
        token: Some(plan.accounts[0].bearer.clone()),
        ..first
    };
    let (status, page) = conn
        .send(&Call {
            expect: Expect::FacadePage(plan.accounts[0].clone()),
            ..first
        })
        .await?;
    validate(&Expect::FacadePage(plan.accounts[0].clone()), status, &page)
        .map_err(anyhow::Error::msg)?;
    let store = Call {
        method: Method::PUT,
        path: "/api/v1/_bench/limit".into(),
        token: None,
        body: Some(page.clone()),
        expect: Expect::Me(plan.accounts[0].clone()),
    };
    let (status, _) = conn.send(&store).await?;
    if status != StatusCode::NO_CONTENT {
        bail!("storing the limit page: {status}");
    }

    let reads = [
        Scenario::Limit,
        Scenario::LimitAuth,
        Scenario::DbLimit,
        Scenario::Facade,
        Scenario::Graphql,
        Scenario::Story,
        Scenario::Me,
    ]
    .into_iter()
    .filter(|s| args.only.is_empty() || args.only.contains(s))
    .collect::<Vec<_>>();
    // The database limit's own pool: as many connections as the server's.
    let direct = jjongal::store::Pool::connect(database_url, SERVER_POOL_SIZE).await?;
    let measure = |s: Scenario, duration: Duration| {
        let (plan, direct) = (plan.clone(), direct.clone());
        async move {
            match s {
                Scenario::DbLimit => db_limit(&direct, &plan, args.concurrency, duration).await,
                _ => load(addr, &plan, s, args.concurrency, duration, None).await,
            }
        }
    };
    // Warm-up: every scenario once, briefly (connections, caches, the allocator).
    for &s in &reads {
        let warm = measure(s, Duration::from_secs(2)).await;
        if warm.errors > 0 {
            bail!(
                "{backend} {s:?} fails already in the warm-up: {:?}",
                warm.first_errors
            );
        }
    }
    let slice = Duration::from_secs_f64(args.duration as f64 / args.rounds as f64);
    let scrape = {
        let first = server.statements().await?;
        server.statements().await? - first
    };
    let mut samples: HashMap<Scenario, Sample> = HashMap::new();
    for round in 1..=args.rounds {
        print!("  round {round}/{}:", args.rounds);
        for &s in &reads {
            // Unmeasured, a moment of the scenario first: the chapters the previous
            // scenario's reads pushed out of the server's cache are read back in, so each
            // is measured in its own steady state, whatever runs before it.
            let settle = measure(s, SETTLE).await;
            if settle.errors > 0 {
                bail!("{backend} {s:?} fails: {:?}", settle.first_errors);
            }
            let before = server.statements().await?;
            let ours = jjongal::store::statements();
            let mut sample = measure(s, slice).await;
            sample.statements = if s == Scenario::DbLimit {
                jjongal::store::statements() - ours
            } else {
                // (Less the scrape's own: two scrapes with nothing between them, measured
                // once.)
                (server.statements().await? - before).saturating_sub(scrape)
            };
            print!(" {:?} {:.0}/s", s, sample.throughput());
            use std::io::Write;
            let _ = std::io::stdout().flush();
            samples.entry(s).or_default().merge(sample);
        }
        println!();
    }
    let mut rows: Vec<Row> = reads
        .iter()
        .map(|s| Row::of(*s, samples.remove(s).unwrap_or_default()))
        .collect();

    let soak = if args.soak > 0 && reads.contains(&Scenario::Facade) {
        let max = rows
            .iter()
            .find(|r| r.scenario == Scenario::Facade)
            .map(|r| r.throughput)
            .unwrap_or(0.0);
        let rate = max * 0.8;
        println!(
            "  soak: {} s of GET /api/v1/stories at {rate:.0} req/s (80 % of {max:.0})",
            args.soak
        );
        let (stop, memory) = sample_memory(server.pid, Duration::from_secs(5));
        let mut sample = load(
            addr,
            &plan,
            Scenario::Facade,
            args.concurrency,
            Duration::from_secs(args.soak),
            Some(rate),
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let points = memory.await?;
        let seconds = sample.elapsed.as_secs_f64();
        let mean = |from: f64, to: f64, part: fn(&MemoryPoint) -> u64| {
            let window: Vec<u64> = points
                .iter()
                .filter(|p| p.at >= from && p.at < to)
                .map(part)
                .collect();
            mib(window.iter().sum::<u64>() / window.len().max(1) as u64)
        };
        let rss = |p: &MemoryPoint| p.rss_kib;
        let anon = |p: &MemoryPoint| p.anon_kib;
        // Minutes with samples only: the load ends a moment after its last full minute,
        // and that sliver has none.
        let minutes: Vec<(f64, f64)> = (0..(seconds / 60.0).ceil() as usize)
            .map(|m| (m as f64 * 60.0, (m + 1) as f64 * 60.0))
            .filter(|(from, to)| points.iter().any(|p| p.at >= *from && p.at < *to))
            .collect();
        let achieved = sample.throughput();
        Some(Soak {
            rate,
            achieved,
            seconds,
            errors: sample.errors,
            first_errors: std::mem::take(&mut sample.first_errors),
            early_mib: mean(60.0_f64.min(seconds / 2.0), 120.0_f64.min(seconds), rss),
            late_mib: mean((seconds - 60.0).max(seconds / 2.0), seconds + 10.0, rss),
            early_anon_mib: mean(60.0_f64.min(seconds / 2.0), 120.0_f64.min(seconds), anon),
            late_anon_mib: mean((seconds - 60.0).max(seconds / 2.0), seconds + 10.0, anon),
            max_mib: mib(points.iter().map(|p| p.rss_kib).max().unwrap_or(0)),
            per_minute_mib: minutes.iter().map(|(f, t)| mean(*f, *t, rss)).collect(),
            per_minute_anon_mib: minutes.iter().map(|(f, t)| mean(*f, *t, anon)).collect(),
            threads: (
                points.first().map(|p| p.threads).unwrap_or(0),
                points.last().map(|p| p.threads).unwrap_or(0),
            ),
        })
    } else {
        None
    };

    // Writes last: the worker goes on generating what they asked for.
    let create = load(
        addr,
        &plan,
        Scenario::Create,
        args.concurrency,
        Duration::from_secs(args.create_duration),
        None,
    )
    .await;
    rows.push(Row::of(Scenario::Create, create));
    let memory = server.memory();
    let server_warnings = server.stop().await;
    Ok(Report {
        backend,
        rows,
        soak,
        idle_mib: mib(idle.rss_kib),
        peak_mib: mib(memory.peak_kib),
        page_bytes: page.len(),
        server_warnings,
    })
}

/// A fresh PostgreSQL database on the benchmark's server; dropped afterwards.
async fn create_pg_database(admin_url: &str) -> anyhow::Result<(String, String)> {
    let name = format!("jjongal_bench_{}", std::process::id());
    let mut admin = AsyncPgConnection::establish(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    // Not in the same batch: a multi-statement batch is one transaction, which
    // `CREATE DATABASE` refuses.
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    let url = match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    };
    Ok((url, name))
}

async fn drop_pg_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = AsyncPgConnection::establish(admin_url).await {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0.0, |k| k as f64 / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem:.0} GiB")
}

fn print_report(args: &Args, reports: &[Report]) -> bool {
    println!(
        "\n=== load benchmark: {} concurrent clients on one loopback address; {} s per read scenario in {} interleaved rounds",
        args.concurrency, args.duration, args.rounds
    );
    println!(
        "machine: {}; the load generator runs on the same cores as the server",
        machine()
    );
    println!(
        "rate limits switched off and the story quota raised for the run (all load comes from 127.0.0.1)"
    );
    println!(
        "data: {} accounts × {} completed stories × {CHAPTERS} chapters; every answer validated (fields, ids, order, chapters, signed URLs)",
        args.accounts, args.stories
    );
    let scenarios = [
        Scenario::Limit,
        Scenario::LimitAuth,
        Scenario::DbLimit,
        Scenario::Facade,
        Scenario::Graphql,
        Scenario::Story,
        Scenario::Me,
        Scenario::Create,
    ];
    let mut header = format!("{:<44}", "scenario");
    for r in reports {
        header.push_str(&format!(
            " | {:>8} {:>7} {:>7} {:>8} {:>4} {:>7}",
            format!("{} r/s", r.backend),
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "err",
            "SQL/req"
        ));
    }
    println!("\n{header}");
    println!("{}", "-".repeat(header.chars().count()));
    for s in scenarios {
        let mut line = format!("{:<44}", s.label());
        for r in reports {
            match r.row(s) {
                Some(row) => line.push_str(&format!(
                    " | {:>8.0} {:>7.2} {:>7.2} {:>8.2} {:>4} {:>7}",
                    row.throughput,
                    row.p50,
                    row.p99,
                    row.p999,
                    row.errors,
                    if s != Scenario::Create {
                        format!("{:.2}", row.statements)
                    } else {
                        "-".into()
                    }
                )),
                None => line.push_str(&format!(" | {:>48}", "-")),
            }
        }
        println!("{line}");
    }
    let mut all_met = true;
    println!();
    for r in reports {
        let errors: u64 = r.rows.iter().map(|row| row.errors).sum::<u64>()
            + r.soak.as_ref().map_or(0, |s| s.errors);
        let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
        all_met &= errors == 0;
        println!("{}: page of {} bytes", r.backend, r.page_bytes);
        // The ratios need all four scenarios (`--only` may leave some out); the errors,
        // the soak and the memory are reported whatever ran.
        if let (Some(facade), Some(graphql), Some(limit), Some(limit_auth)) = (
            r.row(Scenario::Facade),
            r.row(Scenario::Graphql),
            r.row(Scenario::Limit),
            r.row(Scenario::LimitAuth),
        ) {
            let through = facade.throughput / graphql.throughput;
            let p99 = facade.p99 / graphql.p99;
            let of_limit = facade.throughput / limit.throughput;
            let of_limit_auth = facade.throughput / limit_auth.throughput;
            all_met &= through >= 0.9 && p99 <= 1.1 && of_limit >= 0.5;
            println!(
                "  facade/GraphQL: throughput {through:.2} (target ≥ 0.90: {}), p99 {p99:.2} (target ≤ 1.10: {})",
                verdict(through >= 0.9),
                verdict(p99 <= 1.1)
            );
            println!(
                "  facade/limit: throughput {of_limit:.2} (target ≥ 0.50: {}); against limit + token check {of_limit_auth:.2}",
                verdict(of_limit >= 0.5)
            );
        } else {
            println!("  ratios: not all of limit, limit + token check, facade and GraphQL ran");
        }
        // The page through the whole service against its statements issued directly.
        if let (Some(facade), Some(direct)) = (r.row(Scenario::Facade), r.row(Scenario::DbLimit)) {
            let of_db = facade.throughput / direct.throughput;
            all_met &= of_db >= 0.5;
            println!(
                "  facade/database limit: throughput {of_db:.2} (target ≥ 0.50: {})",
                verdict(of_db >= 0.5)
            );
        }
        // One story against the cheapest authenticated read, and that read against the
        // token check alone.
        if let (Some(story), Some(me), Some(limit_auth)) = (
            r.row(Scenario::Story),
            r.row(Scenario::Me),
            r.row(Scenario::LimitAuth),
        ) {
            let story_of_me = story.throughput / me.throughput;
            let me_of_auth = me.throughput / limit_auth.throughput;
            all_met &= story_of_me >= 0.6 && me_of_auth >= 0.7;
            println!(
                "  stories/{{id}}/users/me: throughput {story_of_me:.2} (target ≥ 0.60: {}); users/me/(limit + token check) {me_of_auth:.2} (target ≥ 0.70: {})",
                verdict(story_of_me >= 0.6),
                verdict(me_of_auth >= 0.7)
            );
        }
        println!("  errors under load: {errors} ({})", verdict(errors == 0));
        for row in &r.rows {
            for e in &row.first_errors {
                println!("    {:?}: {e}", row.scenario);
            }
        }
        if let Some(s) = &r.soak {
            // Judged on the anonymous part: file-backed pages (SQLite's mapped database,
            // one mapping per connection) are counted in RSS once per mapping. And on its
            // floor: bursts of +12 MiB that drain again within minutes come and go (two
            // in a 30-minute soak); a leak lifts the lowest minute, a burst does not.
            let growth = s.late_anon_mib - s.early_anon_mib;
            println!(
                "  soak {:.0} s at {:.0} req/s (asked {:.0}): anonymous memory {:.1} MiB in minute 2, {:.1} MiB in the last minute ({growth:+.1} MiB); RSS {:.1} → {:.1} MiB, max {:.1} MiB; {} errors",
                s.seconds,
                s.achieved,
                s.rate,
                s.early_anon_mib,
                s.late_anon_mib,
                s.early_mib,
                s.late_mib,
                s.max_mib,
                s.errors
            );
            match floors(&s.per_minute_anon_mib) {
                Some((first, second)) => {
                    let rise = second - first;
                    let flat = rise <= (first * 0.05).max(4.0);
                    all_met &= flat;
                    println!(
                        "    floor of the anonymous memory (its lowest minute): {first:.1} MiB in the first half, {second:.1} MiB in the second ({rise:+.1} MiB: {})",
                        if flat { "flat" } else { "GROWING" }
                    );
                }
                None => {
                    all_met = false;
                    println!("    the soak is too short to judge (3 minutes at least)");
                }
            }
            let curve: Vec<String> = s
                .per_minute_mib
                .iter()
                .zip(&s.per_minute_anon_mib)
                .map(|(rss, anon)| format!("{rss:.0} ({anon:.0})"))
                .collect();
            println!(
                "    RSS per minute of the soak, MiB (its anonymous part: heaps and stacks): {}",
                curve.join(" → ")
            );
            println!(
                "    server threads: {} at the soak's start, {} at its end",
                s.threads.0, s.threads.1
            );
            for e in &s.first_errors {
                println!("    soak: {e}");
            }
        }
        println!(
            "  memory: {:.1} MiB RSS idle after seeding, peak (VmHWM) {:.1} MiB",
            r.idle_mib, r.peak_mib
        );
        if !r.server_warnings.is_empty() {
            println!(
                "  the server logged (warnings and errors):\n{}",
                r.server_warnings
            );
        }
    }
    all_met
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.stories <= PAGE {
        bail!(
            "--stories must be more than {PAGE}: every measured page is a full page of {PAGE} with a next one"
        );
    }
    jjongal::providers::http::install_tls();
    let mut reports = Vec::new();
    for backend in &args.databases {
        let dir = tempfile::tempdir()?;
        match backend.as_str() {
            "sqlite" => {
                let url = dir.path().join("jjongal.db").to_string_lossy().into_owned();
                reports.push(run_backend(&args, "sqlite", &url, dir.path()).await?);
                // Each backend's figures as soon as they exist (a later failure keeps them).
                print_report(&args, &reports[reports.len() - 1..]);
            }
            "postgres" => {
                let admin = std::env::var("JJONGAL_BENCH_DATABASE_URL")
                    .or_else(|_| std::env::var("JJONGAL_TEST_DATABASE_URL"))
                    .ok()
                    .filter(|u| !u.is_empty());
                let Some(admin) = admin else {
                    println!(
                        "\n== postgres: SKIPPED — set JJONGAL_BENCH_DATABASE_URL (or JJONGAL_TEST_DATABASE_URL) to a server"
                    );
                    continue;
                };
                let (url, name) = create_pg_database(&admin).await?;
                let report = run_backend(&args, "postgres", &url, dir.path()).await;
                drop_pg_database(&admin, &name).await;
                reports.push(report?);
                print_report(&args, &reports[reports.len() - 1..]);
            }
            other => bail!("unknown backend `{other}` (sqlite, postgres)"),
        }
    }
    println!("\n\n======== all backends, side by side");
    let mut all_met = print_report(&args, &reports);
    if let (Some(sqlite), Some(pg)) = (
        reports.iter().find(|r| r.backend == "sqlite"),
        reports.iter().find(|r| r.backend == "postgres"),
    ) {
        println!("\npostgres/sqlite throughput, measured in this run:");
        for s in [
            Scenario::DbLimit,
            Scenario::Facade,
            Scenario::Story,
            Scenario::Me,
        ] {
            if let (Some(a), Some(b)) = (sqlite.row(s), pg.row(s)) {
                let ratio = b.throughput / a.throughput;
                let judged = s != Scenario::DbLimit;
                all_met &= !judged || ratio >= 0.75;
                println!(
                    "  {:<44} {ratio:.2}{}",
                    s.label(),
                    if !judged {
                        " (the databases alone: not a target)".to_string()
                    } else if ratio >= 0.75 {
                        " (target ≥ 0.75: met)".to_string()
                    } else {
                        " (target ≥ 0.75: NOT MET)".to_string()
                    }
                );
            }
        }
    }
    if !all_met {
        println!("\nsome targets were not met (see above)");
    }
    Ok(())
}
