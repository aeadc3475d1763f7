//! Test harness: starts the real application on port 0 against a fresh database (a
//! SQLite file in a temp dir, or a fresh PostgreSQL database when
//! `JJONGAL_TEST_DATABASE_URL` is set) and talks HTTP to it.

use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use jjongal::app::Application;
use jjongal::config::{Config, ConfigArgs};
use jjongal::domain::Domain;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Declares each listed `async fn name(db: Db)` as two tests: `sqlite::name` and
/// `postgres::name` (ignored, with the reason shown, when no PostgreSQL is configured).
#[macro_export]
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    not(jjongal_pg),
                    ignore = "PostgreSQL variant skipped: set JJONGAL_TEST_DATABASE_URL to run it"
                )]
                async fn $name() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            )*
        }
    };
}

/// A fresh PostgreSQL database, dropped when this goes out of scope.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

fn admin_url() -> String {
    std::env::var("JJONGAL_TEST_DATABASE_URL").expect(
        "JJONGAL_TEST_DATABASE_URL must point at a PostgreSQL server for the postgres tests",
    )
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let admin_url = admin_url();
        let name = format!("jjongal_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .expect("connect to JJONGAL_TEST_DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        PgDatabase {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside async context: use a private runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Where a test app keeps its data: a temp dir, plus the database it uses.
pub struct TestStorage {
    pub dir: TempDir,
    pub database_url: String,
    /// Kept so the PostgreSQL database lives as long as the storage (dropped after).
    _pg: Option<PgDatabase>,
}

impl TestStorage {
    pub async fn new(db: Db) -> TestStorage {
        // The tests' own HTTP client shares the service's TLS set-up.
        jjongal::providers::http::install_tls();
        init_test_logging();
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg) = match db {
            Db::Sqlite => (
                dir.path().join("test.db").to_string_lossy().into_owned(),
                None,
            ),
            Db::Postgres => {
                let pg = PgDatabase::create().await;
                (pg.url.clone(), Some(pg))
            }
        };
        TestStorage {
            dir,
            database_url,
            _pg: pg,
        }
    }

    /// `sqlite` or `postgres`, for names of files a test leaves behind.
    pub fn backend_name(&self) -> &'static str {
        match self._pg {
            Some(_) => "postgres",
            None => "sqlite",
        }
    }

    /// Runs `sql` on this storage's database over a connection of its own: to break what
    /// a running server relies on, for the failure tests.
    pub async fn execute(&self, sql: &str) {
        if let Err(e) = self.try_execute(sql).await {
            panic!("the test's SQL fails: {e}");
        }
    }

    /// [`TestStorage::execute`], its failure told.
    pub async fn try_execute(&self, sql: &str) -> Result<(), String> {
        if self._pg.is_some() {
            let mut conn = AsyncPgConnection::establish(&self.database_url)
                .await
                .expect("connect to the test database");
            conn.batch_execute(sql).await.map_err(|e| e.to_string())
        } else {
            use diesel::Connection;
            use diesel::connection::SimpleConnection;
            let mut conn = diesel::SqliteConnection::establish(&self.database_url)
                .expect("open the test database");
            conn.batch_execute(sql).map_err(|e| e.to_string())
        }
    }

    /// Configuration arguments for this storage, as if from the command line.
    pub fn args(&self, extra: &[&str]) -> ConfigArgs {
        #[derive(Parser)]
        #[command(args_override_self = true)]
        struct Cli {
            #[command(flatten)]
            config: ConfigArgs,
        }
        let data_dir = self.dir.path().to_string_lossy().into_owned();
        let mut argv = vec![
            "jjongal",
            "--bind",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
            "--database-url",
            &self.database_url,
            "--env",
            "development",
        ];
        // Stories stay as tests seed them unless a test asks for the worker; tests create
        // many stories, and the quota has its own test.
        argv.extend_from_slice(&[
            "--worker",
            "false",
            "--story-quota",
            "10000",
            "--metrics-bind",
            "127.0.0.1:0",
            // All test traffic comes from 127.0.0.1; the limits have their own tests.
            "--rate-limit-ip-per-minute",
            "1000000",
            "--rate-limit-ip-burst",
            "1000000",
            "--rate-limit-account-per-minute",
            "1000000",
            "--rate-limit-account-burst",
            "1000000",
            // The offline storyteller writes at once (its typing has its own test).
            "--offline-typing-ms",
            "0",
        ]);
        // Later flags override earlier ones: `extra` wins over these defaults.
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("test config").config
    }
}

pub struct TestApp {
    pub base: String,
    /// `http://` address of the metrics listener.
    pub metrics: String,
    pub client: reqwest::Client,
    pub domain: Domain,
    storage: Option<TestStorage>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    /// Kills the server as a crash would: no graceful shutdown, leases left behind.
    /// Returns its storage for a successor.
    pub async fn crash(mut self) -> TestStorage {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.storage.take().expect("this app owns its storage")
    }

    /// Stops the server as SIGTERM does and waits until it has; returns its storage.
    pub async fn stop(mut self) -> TestStorage {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
        self.storage.take().expect("this app owns its storage")
    }

    /// The storage this app runs on (to start a second server on the same database).
    pub fn storage(&self) -> &TestStorage {
        self.storage.as_ref().expect("this app owns its storage")
    }
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, &[]).await
}

/// Starts the application with extra command-line flags.
pub async fn spawn_app_with(db: Db, extra: &[&str]) -> TestApp {
    spawn_app_on(TestStorage::new(db).await, extra).await
}

/// Starts the application on existing storage (e.g. one the CLI already wrote to).
pub async fn spawn_app_on(storage: TestStorage, extra: &[&str]) -> TestApp {
    let mut app = start(&storage, extra).await;
    app.storage = Some(storage);
    app
}

/// Starts another server process-alike on the same database and data dir as `other`.
pub async fn spawn_app_sharing(other: &TestApp, extra: &[&str]) -> TestApp {
    start(other.storage(), extra).await
}

async fn start(storage: &TestStorage, extra: &[&str]) -> TestApp {
    let config = Config::resolve(storage.args(extra)).expect("config");
    let app = Application::build(config).await.expect("build app");
    let addr = app.local_addr();
    let metrics = format!("http://{}", app.metrics_addr());
    let domain = app.domain().clone();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        metrics,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        domain,
        storage: None,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// A response read whole.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a spec §4.1 failure envelope with `code` and `status`; returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "status of {:?}", self.text);
        let body = self.json();
        assert_envelope(&body);
        assert_eq!(body["success"], json!(false), "{body}");
        assert_eq!(body["error"]["code"], json!(code), "{body}");
        let message = body["error"]["message"]
            .as_str()
            .expect("message")
            .to_string();
        assert!(!message.is_empty());
        if code == "INVALID_TOKEN" {
            assert_eq!(self.header("www-authenticate"), Some("Bearer"));
        }
        message
    }

    /// Asserts a success envelope with `status`; returns `data`.
    #[track_caller]
    pub fn assert_ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "status of {:?}", self.text);
        let body = self.json();
        assert_envelope(&body);
        assert_eq!(body["success"], json!(true), "{body}");
        body["data"].clone()
    }
}

/// Contract §2: exactly `{success, message, data}` or `{success, error{code, message}}`,
/// timestamps anywhere in it formatted `YYYY-MM-DDTHH:MM:SS.mmmZ`, no empty strings.
#[track_caller]
pub fn assert_envelope(body: &Value) {
    let obj = body.as_object().expect("envelope is an object");
    match obj.get("success") {
        Some(Value::Bool(true)) => {
            let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, ["data", "message", "success"], "{body}");
            assert!(obj["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        Some(Value::Bool(false)) => {
            let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, ["error", "success"], "{body}");
            let mut ekeys: Vec<_> = obj["error"]
                .as_object()
                .expect("error object")
                .keys()
                .map(String::as_str)
                .collect();
            ekeys.sort();
            assert_eq!(ekeys, ["code", "message"], "{body}");
        }
        other => panic!("envelope without boolean success: {other:?} in {body}"),
    }
    check_values(body);
}

fn check_values(value: &Value) {
    match value {
        Value::String(s) => assert!(!s.is_empty(), "empty string in a response"),
        Value::Array(items) => items.iter().for_each(check_values),
        Value::Object(map) => {
            for (key, v) in map {
                if (key.ends_with("_at") || key.ends_with("_time")) && !v.is_null() {
                    let s = v
                        .as_str()
                        .unwrap_or_else(|| panic!("{key} is not a string"));
                    assert_timestamp(s);
                }
                check_values(v);
            }
        }
        _ => {}
    }
}

/// `2024-07-30T10:30:00.123Z`: RFC 3339, UTC, exactly three fractional digits.
#[track_caller]
pub fn assert_timestamp(s: &str) {
    let b = s.as_bytes();
    let ok = b.len() == 24
        && s.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        })
        && chrono::DateTime::parse_from_rfc3339(s).is_ok();
    assert!(ok, "timestamp {s:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut rb = self.client.get(self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        let mut rb = self.client.delete(self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb).await
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Reply {
        let mut rb = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb).await
    }

    /// POSTs a GraphQL operation; returns the reply (status + `{data, errors}` body).
    pub async fn graphql(&self, query: &str, variables: Value, token: Option<&str>) -> Reply {
        self.post_json(
            "/graphql",
            &json!({"query": query, "variables": variables}),
            token,
        )
        .await
    }

    /// Signs up `login` (password `password123`) and returns the created user.
    pub async fn sign_up(&self, login: &str) -> Value {
        self.post_json(
            "/api/v1/users",
            &json!({"user_id": login, "password": "password123", "name": "민준", "age": 7, "guardian_consent": true}),
            None,
        )
        .await
        .assert_ok(201)
    }

    /// Logs `login` in; returns `(access_token, refresh_token)`.
    pub async fn login(&self, login: &str) -> (String, String) {
        let data = self
            .post_json(
                "/api/v1/auth/token",
                &json!({"user_id": login, "password": "password123"}),
                None,
            )
            .await
            .assert_ok(200);
        (
            data["access_token"].as_str().unwrap().to_string(),
            data["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    /// Signs up and logs in a fresh account; returns its access token.
    pub async fn new_account(&self, login: &str) -> String {
        self.sign_up(login).await;
        self.login(login).await.0
    }

    /// Starts a conversation in GraphQL; its id.
    pub async fn start_conversation(&self, token: &str) -> String {
        let started = self
            .graphql(
                "mutation { startConversation { conversation { id } } }",
                json!({}),
                Some(token),
            )
            .await
            .json();
        started["data"]["startConversation"]["conversation"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{started}"))
            .to_string()
    }

    /// Ends conversation `id` in GraphQL.
    pub async fn end_conversation(&self, token: &str, id: &str) {
        let ended = self
            .graphql(
                "mutation($id: ID!) { endConversation(conversationId: $id) { id } }",
                json!({"id": id}),
                Some(token),
            )
            .await
            .json();
        assert!(ended["errors"].is_null(), "{ended}");
    }

    /// The bytes behind a signed media URL the service answered (made for
    /// `localhost:8000`, fetched from this server).
    pub async fn media_bytes(&self, url: &Value) -> Vec<u8> {
        let url = url
            .as_str()
            .unwrap_or_else(|| panic!("not a media URL: {url}"))
            .replace("http://localhost:8000", &self.base);
        let response = self.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.unwrap().to_vec()
    }

    /// `Story.provenance` of story `id` in GraphQL.
    pub async fn provenance(&self, token: &str, id: &str) -> Value {
        let body = self
            .graphql(
                "query($id: ID!) { story(id: $id) { provenance { aiGenerated label digitalSourceType parts { capability madeBy offline chapters } } } }",
                json!({"id": id}),
                Some(token),
            )
            .await
            .json();
        body["data"]["story"]["provenance"].clone()
    }

    /// Gives the account's voice-cloning consent for the text and provider in force
    /// (as a client does: reads them, then agrees to them); the consent object.
    pub async fn give_voice_consent(&self, token: &str) -> Value {
        let terms = self
            .get("/api/v1/users/me/voice-consent", Some(token))
            .await
            .assert_ok(200);
        let given = self
            .post_json(
                "/api/v1/users/me/voice-consent",
                &json!({
                    "voice_of": "guardian",
                    "text_version": terms["text_version"],
                    "provider": terms["provider"],
                    "password": "password123",
                }),
                Some(token),
            )
            .await
            .assert_ok(201);
        assert_eq!(given["given"], true, "{given}");
        given
    }
}

/// The GraphQL `extensions.code` of the first error.
pub fn gql_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// A story to seed: its chapters get an SVG illustration each (and narration bytes
/// when `audio`).
pub struct Seed<'a> {
    pub theme: &'a str,
    pub title: Option<&'a str>,
    pub status: jjongal::domain::stories::StoryStatus,
    pub chapters: i32,
    pub audio: bool,
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            theme: "모험",
            title: None,
            status: jjongal::domain::stories::StoryStatus::Pending,
            chapters: 0,
            audio: false,
        }
    }
}

pub const SVG: &[u8] = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"><rect width=\"4\" height=\"4\" fill=\"#fc0\"/></svg>";

impl TestApp {
    /// The domain's view of the account behind `token`.
    pub async fn user(&self, token: &str) -> jjongal::domain::accounts::User {
        self.domain
            .accounts()
            .authenticate(Some(token))
            .await
            .expect("token is valid")
    }

    /// Polls the story until it is `completed` or `failed` (an upper bound for a loaded
    /// machine, not a speed expectation); on timeout, panics with its row and history.
    pub async fn wait_finished(&self, token: &str, id: &str) -> Value {
        for _ in 0..2400 {
            let story = self
                .get(&format!("/api/v1/stories/{id}"), Some(token))
                .await
                .assert_ok(200);
            if story["status"] == "completed" || story["status"] == "failed" {
                return story;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let stories = self.domain.stories();
        let steps = stories.generation_steps(id.parse().unwrap()).await.unwrap();
        let story = stories.story_for_job(id.parse().unwrap()).await.unwrap();
        panic!("story {id} did not finish: {story:?}\nsteps: {steps:#?}");
    }

    /// The story's `failureReason` as GraphQL reads it: why it failed, or (completed)
    /// what could not be made.
    pub async fn story_note(&self, token: &str, id: &str) -> Option<String> {
        self.graphql(
            "query($id: ID!) { story(id: $id) { failureReason } }",
            json!({"id": id}),
            Some(token),
        )
        .await
        .json()["data"]["story"]["failureReason"]
            .as_str()
            .map(str::to_string)
    }

    /// Gives the account behind `token` the cloned voice `voice_id`, as a clone would.
    pub async fn give_cloned_voice(&self, token: &str, voice_id: &str) {
        let user = self.user(token).await;
        self.storage()
            .execute(&format!(
                "UPDATE users SET voice_id = '{voice_id}', voice_status = 'cloned' WHERE id = '{}'",
                user.id
            ))
            .await;
    }

    /// `POST /api/v1/stories` with a theme; returns the story.
    pub async fn create_story(&self, token: &str, theme: &str) -> Value {
        self.post_json(
            "/api/v1/stories",
            &json!({"user_preferences": {"theme": theme, "characters": ["용감한 토끼"], "length": "short"}}),
            Some(token),
        )
        .await
        .assert_ok(202)
    }

    /// Creates a story through REST, then writes it the way generation will, through the
    /// domain layer: title, chapters, media, status. Returns the story id.
    pub async fn seed_story(&self, token: &str, seed: Seed<'_>) -> jjongal::vocabulary::StoryId {
        use jjongal::domain::stories::{MediaKind, StoryStatus};
        let story = self.create_story(token, seed.theme).await;
        let id: jjongal::vocabulary::StoryId = story["id"].as_str().unwrap().parse().unwrap();
        if let Some(title) = seed.title {
            self.domain
                .stories()
                .set_generated_title(id, title)
                .await
                .unwrap();
        }
        for n in 1..=seed.chapters {
            // The worker's own write (one chapter at a time here).
            let chapter = self
                .domain
                .stories()
                .put_chapters(id, &[(n, format!("{n}장"), format!("{n}장의 이야기"))])
                .await
                .unwrap()[0];
            self.domain
                .stories()
                .put_chapter_media(id, chapter, MediaKind::Image, SVG, "image/svg+xml", "svg")
                .await
                .unwrap()
                .unwrap();
            if seed.audio {
                let wav: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
                self.domain
                    .stories()
                    .put_chapter_media(id, chapter, MediaKind::Audio, &wav, "audio/wav", "wav")
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
        if seed.status != StoryStatus::Pending {
            let reason = (seed.status == StoryStatus::Failed).then_some("테스트 실패");
            self.domain
                .stories()
                .set_story_status(id, seed.status, reason)
                .await
                .unwrap();
        }
        id
    }

    pub async fn patch_json(&self, path: &str, body: &Value, token: Option<&str>) -> Reply {
        let mut rb = self
            .client
            .patch(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb).await
    }
}

/// Logs to the test output when `JJONGAL_TEST_LOG` is set (e.g. `jjongal=debug`).
pub fn init_test_logging() {
    if let Ok(filter) = std::env::var("JJONGAL_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// WebSocket clients for the tests: open, send JSON, receive JSON (skipping pings and
/// the legacy protocol's keep-alives), wait for the close code.
pub mod ws {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use serde_json::Value;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::TestApp;

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Opens `path` (with its query), offering `protocol` when given; when it is, the
    /// server must have chosen it.
    pub async fn open(app: &TestApp, path: &str, protocol: Option<&str>) -> Socket {
        let url = app.base.replace("http://", "ws://") + path;
        let mut request = url.into_client_request().unwrap();
        if let Some(p) = protocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        if let Some(p) = protocol {
            assert_eq!(response.headers()["sec-websocket-protocol"], p);
        }
        socket
    }

    /// `/graphql/ws`: sends `connection_init` (with the token, when given) and waits for
    /// the acknowledgement.
    pub async fn init(socket: &mut Socket, token: Option<&str>) {
        let init = match token {
            Some(t) => serde_json::json!({"type": "connection_init", "payload": {"token": t}}),
            None => serde_json::json!({"type": "connection_init"}),
        };
        send(socket, init).await;
        assert_eq!(recv(socket).await["type"], "connection_ack");
    }

    pub async fn send(socket: &mut Socket, v: Value) {
        socket.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next JSON message (pings, pongs and `ka` keep-alives skipped).
    pub async fn recv(socket: &mut Socket) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
                .await
                .expect("a message in time")
                .expect("socket open")
                .expect("valid frame");
            match frame {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ka" {
                        continue;
                    }
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected JSON, got {other:?}"),
            }
        }
    }

    /// Waits for the close frame; returns its code.
    pub async fn closed(socket: &mut Socket) -> u16 {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), socket.next())
                .await
                .expect("closes in time")
            {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error before close: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }
}

/// Whether `espeak-ng` (the offline narrator) is installed here: tests that narrate
/// offline expect audio exactly when it is, and say which they checked.
pub fn espeak_installed() -> bool {
    let installed = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("espeak-ng").is_file()));
    if installed {
        eprintln!("espeak-ng is installed: offline narration is checked as real audio");
    } else {
        eprintln!(
            "espeak-ng is not installed: offline narration is checked as absent (audio null); \
             install espeak-ng to check the narration itself"
        );
    }
    installed
}

/// The IPTC digital source type every generated picture and sound carries (issue 33).
pub const AI_SOURCE_TYPE: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

/// `bytes` (a served picture or sound) without the AI label the service writes in —
/// after asserting that the label is there and names `made_by`: a PNG's `iTXt` XMP
/// packet (right after `IHDR`), an MP3's leading ID3v2 tag with its `TXXX` frames, a
/// WAV's `LIST`/`INFO` chunk. What is left is the file as the provider made it.
/// `made_by` is the provider's name, or its start (`openai-images (gpt-image`).
pub fn unlabelled(bytes: &[u8], made_by: &str) -> Vec<u8> {
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let provenance = format!("AI-generated by Jjongal ({made_by}");
    if let Some(mut rest) = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n".as_slice()) {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut labels = 0;
        let mut index = 0;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let chunk = &rest[..12 + len];
            if &chunk[4..8] == b"iTXt" && chunk[8..].starts_with(b"XML:com.adobe.xmp\0") {
                assert_eq!(index, 1, "the XMP packet follows IHDR");
                let text = String::from_utf8_lossy(&chunk[8..8 + len]);
                assert!(
                    text.contains(&format!(
                        "Iptc4xmpExt:DigitalSourceType=\"{AI_SOURCE_TYPE}\""
                    )),
                    "{text}"
                );
                assert!(text.contains(&provenance), "{text}");
                labels += 1;
            } else {
                out.extend_from_slice(chunk);
            }
            rest = &rest[12 + len..];
            index += 1;
        }
        assert_eq!(labels, 1, "one XMP packet");
        return out;
    }
    if bytes.starts_with(b"ID3") {
        let size = bytes[6..10]
            .iter()
            .fold(0usize, |n, &b| (n << 7) | usize::from(b & 0x7f));
        let tag = &bytes[10..10 + size];
        assert!(has(tag, b"TXXX"));
        assert!(has(
            tag,
            format!("DigitalSourceType\0{AI_SOURCE_TYPE}").as_bytes()
        ));
        assert!(
            has(tag, format!("Provenance\0{provenance}").as_bytes()),
            "{}",
            String::from_utf8_lossy(tag)
        );
        return bytes[10 + size..].to_vec();
    }
    if bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WAVE" {
        let mut rest = &bytes[12..];
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        let mut labelled = false;
        while rest.len() >= 8 {
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            let end = (8 + len + (len & 1)).min(rest.len());
            let chunk = &rest[..end];
            if &chunk[..4] == b"LIST" && chunk[8..].starts_with(b"INFO") {
                assert!(has(chunk, AI_SOURCE_TYPE.as_bytes()));
                assert!(has(chunk, provenance.as_bytes()));
                labelled = true;
            } else {
                out.extend_from_slice(chunk);
            }
            rest = &rest[end..];
        }
        assert!(labelled, "a LIST/INFO chunk");
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize,
            bytes.len() - 8
        );
        let size = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&size.to_le_bytes());
        return out;
    }
    panic!(
        "not a labelled PNG, MP3 or WAV: {:?}",
        &bytes[..bytes.len().min(16)]
    );
}
