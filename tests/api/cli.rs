//! The `jjongal` binary itself: subcommands, start-up rules, several processes on one
//! database, and what its logs must never contain.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::db_tests;
use crate::helpers::{Db, TestStorage, spawn_app_on};

const BIN: &str = env!("CARGO_BIN_EXE_jjongal");

fn command(storage: &TestStorage) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JJONGAL_DATA_DIR", storage.dir.path())
        .env("JJONGAL_DATABASE_URL", &storage.database_url)
        .env("JJONGAL_BIND", "127.0.0.1:0")
        .env("JJONGAL_METRICS_BIND", "127.0.0.1:0")
        .env("JJONGAL_LOG_FORMAT", "json")
        .kill_on_drop(true);
    cmd
}

/// A running `jjongal serve` whose stderr (JSON log lines) is collected.
struct Server {
    child: Child,
    addr: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn jjongal");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(v["address"].as_str().unwrap_or_default().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "server did not start; logs:\n{}",
                logs.lock().unwrap().join("\n")
            ),
        };
        Server { child, addr, logs }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) -> String {
        // SIGTERM: graceful shutdown.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits after SIGTERM")
            .expect("wait");
        assert!(status.success(), "exit status after SIGTERM: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.logs.lock().unwrap().join("\n")
    }
}

async fn post(client: &reqwest::Client, url: String, body: Value, token: Option<&str>) -> Value {
    let mut rb = client.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.unwrap().json().await.unwrap()
}

async fn users_create_reads_the_password_from_stdin(db: Db) {
    let storage = TestStorage::new(db).await;
    let mut child = command(&storage)
        .args([
            "users",
            "create",
            "family.admin",
            "--name",
            "하늘",
            "--age",
            "9",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long passphrase\n")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("family.admin"));

    // A second time: the login id is taken, and the command says so and fails.
    let mut child = command(&storage)
        .args([
            "users",
            "create",
            "family.admin",
            "--name",
            "하늘",
            "--age",
            "9",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long passphrase\n")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONFLICT"));

    let app = spawn_app_on(storage, &[]).await;
    let data = app
        .post_json(
            "/api/v1/auth/token",
            &json!({"user_id": "family.admin", "password": "a long passphrase"}),
            None,
        )
        .await
        .assert_ok(200);
    let me = app
        .get("/api/v1/users/me", data["access_token"].as_str())
        .await
        .assert_ok(200);
    assert_eq!(me["name"], "하늘");
    assert_eq!(me["age"], 9);
}

async fn two_servers_start_at_once_on_a_fresh_database(db: Db) {
    let storage = TestStorage::new(db).await;
    // Same fresh database, same (empty) data dir: migrations and the generated
    // development secrets must not race.
    let (a, b) = tokio::join!(
        Server::start(command(&storage)),
        Server::start(command(&storage))
    );
    let client = reqwest::Client::new();
    let created = post(
        &client,
        a.url("/api/v1/users"),
        json!({"user_id": "twins", "password": "password123", "name": "쌍둥이", "age": 6, "guardian_consent": true}),
        None,
    )
    .await;
    assert_eq!(created["success"], true, "{created}");
    // Log in through B, use the token on A: both processes agree on the secret.
    let tokens = post(
        &client,
        b.url("/api/v1/auth/token"),
        json!({"user_id": "twins", "password": "password123"}),
        None,
    )
    .await;
    let access = tokens["data"]["access_token"].as_str().expect("token");
    let me: Value = client
        .get(a.url("/api/v1/users/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["id"], created["data"]["id"]);
    a.stop().await;
    b.stop().await;
}

async fn logs_never_contain_tokens_or_secrets(db: Db) {
    let storage = TestStorage::new(db).await;
    let secret = "a-very-secret-jwt-key-that-is-long-enough-0123";
    let mut cmd = command(&storage);
    cmd.env("JJONGAL_LOG", "trace")
        .env("JJONGAL_JWT_SECRET", secret);
    let server = Server::start(cmd).await;
    let client = reqwest::Client::new();
    post(
        &client,
        server.url("/api/v1/users"),
        json!({"user_id": "quiet", "password": "password123", "name": "조용", "age": 6, "guardian_consent": true}),
        None,
    )
    .await;
    let tokens = post(
        &client,
        server.url("/api/v1/auth/token"),
        json!({"user_id": "quiet", "password": "password123"}),
        None,
    )
    .await;
    let access = tokens["data"]["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = client
        .get(server.url("/api/v1/users/me"))
        .header("x-request-id", "log-check-1")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    // Query strings carry tokens on WebSockets: they must not be logged either.
    let reply = client
        .get(server.url(&format!("/healthz?token={access}")))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    post(
        &client,
        server.url("/api/v1/auth/refresh"),
        json!({"refresh_token": refresh}),
        None,
    )
    .await;
    let logs = server.stop().await;
    assert!(logs.contains("log-check-1"), "request id missing from logs");
    for needle in [access.as_str(), refresh.as_str(), secret, "password123"] {
        assert!(
            !logs.contains(needle),
            "logs contain a secret: {needle:.12}…"
        );
    }
}

/// An internal failure answers `500 SERVER_ERROR` with the catalogue's message only; its
/// cause is logged once, inside the request's span (with its request id), by the one
/// logging middleware.
async fn internal_causes_are_logged_once_with_the_request_id_never_answered(db: Db) {
    let storage = TestStorage::new(db).await;
    let server = Server::start(command(&storage)).await;
    let client = reqwest::Client::new();
    post(
        &client,
        server.url("/api/v1/users"),
        json!({"user_id": "broken", "password": "password123", "name": "고장", "age": 6, "guardian_consent": true}),
        None,
    )
    .await;
    let tokens = post(
        &client,
        server.url("/api/v1/auth/token"),
        json!({"user_id": "broken", "password": "password123"}),
        None,
    )
    .await;
    let access = tokens["data"]["access_token"].as_str().unwrap().to_string();
    // The stories table disappears under the running server.
    storage
        .execute("ALTER TABLE stories RENAME TO stories_gone")
        .await;
    for (path, request_id) in [
        ("/api/v1/stories", "cause-check-rest"),
        ("/graphql", "cause-check-graphql"),
    ] {
        let request = if path == "/graphql" {
            client
                .post(server.url(path))
                .json(&json!({"query": "{ stories(first: 1) { edges { node { id } } } }"}))
        } else {
            client.get(server.url(path))
        };
        let reply = request
            .header("x-request-id", request_id)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let body = reply.text().await.unwrap();
        let expected = if path == "/graphql" { 200 } else { 500 };
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body.contains("SERVER_ERROR"), "{path}: {body}");
        assert!(
            body.contains("서버 내부 오류가 발생했습니다."),
            "{path}: {body}"
        );
        for leak in ["no such table", "does not exist", "relation", "database"] {
            assert!(
                !body.contains(leak),
                "{path}: the cause reached the client: {body}"
            );
        }
    }
    let logs = server.stop().await;
    for request_id in ["cause-check-rest", "cause-check-graphql"] {
        let logged: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("internal error") && l.contains(request_id))
            .collect();
        assert_eq!(logged.len(), 1, "{request_id}: {logged:#?}\n{logs}");
        // SQLite: "no such table: stories"; PostgreSQL: relation "stories" does not exist.
        assert!(
            logged[0].contains("no such table") || logged[0].contains("does not exist"),
            "{request_id}: the cause is logged: {}",
            logged[0]
        );
    }
}

async fn only_the_cli_grants_the_operator_role(db: Db) {
    let storage = TestStorage::new(db).await;
    let app = spawn_app_on(storage, &[]).await;
    let token = app.new_account("future.op").await;
    let query = "{ ops { accounts { edges { node { loginId role } } } } }";
    let body = app.graphql(query, json!({}), Some(&token)).await.json();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "INSUFFICIENT_PERMISSION"
    );
    let out = command(app.storage())
        .args(["users", "set-role", "future.op", "operator"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same token, at once.
    let body = app.graphql(query, json!({}), Some(&token)).await.json();
    assert_eq!(
        body["data"]["ops"]["accounts"]["edges"][0]["node"]["role"], "operator",
        "{body}"
    );
    let out = command(app.storage())
        .args(["users", "set-role", "nobody.here", "operator"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RESOURCE_NOT_FOUND"));
}

/// `jjongal voices retry-deletions`: a voice the provider did not confirm deleted stays
/// pending (exit 1) until the provider deletes it, or the operator settles it by force.
async fn voice_deletions_are_retried_from_the_command_line(db: Db) {
    let storage = TestStorage::new(db).await;
    // The schema first (any command migrates), then two voices left at the provider.
    let migrated = command(&storage).arg("migrate").output().await.unwrap();
    assert!(migrated.status.success());
    storage
        .execute(
            "INSERT INTO voice_deletions (id, voice_id, owner_id, status, last_error, attempts, created_at, updated_at) VALUES \
             ('00000000-0000-4000-8000-000000000001', 'keptVoice', '00000000-0000-4000-8000-0000000000aa', 'pending', 'HTTP 401', 1, '2026-12-05 00:00:00', '2026-12-05 00:00:00'), \
             ('00000000-0000-4000-8000-000000000002', 'goneVoice', '00000000-0000-4000-8000-0000000000bb', 'pending', 'HTTP 401', 1, '2026-12-05 00:00:01', '2026-12-05 00:00:01')",
        )
        .await;
    let fakes = crate::fakes::Fakes::start().await;
    fakes.voices.add_voice("keptVoice");
    let retry = |args: &[&str], key: &str| {
        let mut cmd = command(&storage);
        cmd.args(["voices", "retry-deletions"])
            .args(args)
            .env("JJONGAL_VOICE_BASE_URL", fakes.server.uri())
            .env("JJONGAL_VOICE_API_KEY", key)
            .env("JJONGAL_PROVIDER_MAX_ATTEMPTS", "1");
        async move { cmd.output().await.unwrap() }
    };
    // Still revoked: both stay pending, and the command says so.
    let out = retry(&[], "wrong-key").await;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches(": pending").count(), 2, "{text}");
    // The key works again: the provider deletes one, and says the other is gone.
    let out = retry(&[], crate::fakes::ELEVEN_KEY).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("keptVoice (account 00000000-0000-4000-8000-0000000000aa): deleted"),
        "{text}"
    );
    assert!(
        text.contains("goneVoice (account 00000000-0000-4000-8000-0000000000bb): deleted"),
        "{text}"
    );
    assert!(fakes.voices.voices().is_empty());
    let out = retry(&["--force"], crate::fakes::ELEVEN_KEY).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("no voice deletions are pending"));
}

/// `jjongal talk` (the README's "talk to the conversation socket from a shell"): each
/// line of standard input is what the child says, the guide's answers are printed, and
/// at the end of input the conversation's story is asked for and its id printed. A
/// refused token is a failure with the server's code; wss:// is refused plainly.
async fn talk_speaks_the_conversation_socket_from_a_shell(db: Db) {
    let app =
        crate::helpers::spawn_app_with(db, &["--worker", "true", "--worker-poll-ms", "50"]).await;
    let token = app.new_account("talk.cli").await;
    let talk = |server: String, token: String, input: &'static str| async move {
        let mut child = Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(["talk", "--server", &server, "--token", &token])
            .args([
                "--child-name",
                "지우",
                "--age",
                "5",
                "--interests",
                "공룡,바다",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn jjongal talk");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("talk ends")
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = talk(
        app.base.clone(),
        token.clone(),
        "아기 공룡 뚜뚜\n\n바닷속 산호 마을에 살아\n",
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    for expected in [
        "conversation_id: ",
        "쫑이: 안녕, 지우야!",
        "나: 아기 공룡 뚜뚜",
        "쫑이: 아기 공룡 뚜뚜가 주인공이구나!",
        "나: 바닷속 산호 마을에 살아",
    ] {
        assert!(stdout.contains(expected), "{expected} missing: {stdout}");
    }
    // The empty line was not sent: two answers after the greeting.
    assert_eq!(stdout.matches("쫑이: ").count(), 3, "{stdout}");
    let story = stdout
        .lines()
        .find_map(|l| l.strip_prefix("story_id: "))
        .unwrap_or_else(|| panic!("no story id: {stdout}"));
    let read = app
        .get(&format!("/api/v1/stories/{story}"), Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(read["id"], story);

    let (ok, _, stderr) = talk(app.base.clone(), "not-a-token".into(), "안녕\n").await;
    assert!(!ok);
    assert!(stderr.contains("INVALID_TOKEN"), "{stderr}");
    let (ok, _, stderr) = talk("https://stories.example".into(), token, "").await;
    assert!(!ok);
    assert!(stderr.contains("plain ws://"), "{stderr}");
}

/// `jjongal purge` applies the default retention policy: an ended conversation last
/// changed 366 days ago is deleted, one changed 364 days ago is kept (365 days), and the
/// run is recorded.
async fn the_purge_command_applies_the_default_retention(db: Db) {
    let storage = TestStorage::new(db).await;
    let app = spawn_app_on(storage, &[]).await;
    let token = app.new_account("old.family").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = app.start_conversation(&token).await;
        app.end_conversation(&token, &id).await;
        ids.push(id);
    }
    let days = chrono::Duration::days;
    for (id, age) in ids.iter().zip([days(366), days(364)]) {
        let at = (chrono::Utc::now() - age)
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S");
        app.storage()
            .execute(&format!(
                "UPDATE conversations SET updated_at = '{at}' WHERE id = '{id}'"
            ))
            .await;
    }
    let out = command(app.storage()).arg("purge").output().await.unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("purged: 1 conversations"), "{printed}");
    app.get(&format!("/api/v1/conversations/{}", ids[0]), Some(&token))
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
    app.get(&format!("/api/v1/conversations/{}", ids[1]), Some(&token))
        .await
        .assert_ok(200);
}

db_tests!(
    the_purge_command_applies_the_default_retention,
    voice_deletions_are_retried_from_the_command_line,
    internal_causes_are_logged_once_with_the_request_id_never_answered,
    only_the_cli_grants_the_operator_role,
    users_create_reads_the_password_from_stdin,
    two_servers_start_at_once_on_a_fresh_database,
    logs_never_contain_tokens_or_secrets,
    talk_speaks_the_conversation_socket_from_a_shell,
);

#[tokio::test]
async fn production_mode_refuses_missing_or_weak_secrets() {
    let storage = TestStorage::new(Db::Sqlite).await;
    let strong_a = "0123456789abcdef0123456789abcdef-a";
    let strong_b = "0123456789abcdef0123456789abcdef-b";
    let spaces = " ".repeat(32);
    let pattern = "password".repeat(4);
    let cases: [(&[(&str, &str)], &str); 7] = [
        // Long enough, but no entropy to speak of.
        (
            &[
                ("JJONGAL_JWT_SECRET", &spaces),
                ("JJONGAL_MEDIA_SECRET", strong_b),
            ],
            "JJONGAL_JWT_SECRET is too predictable",
        ),
        (
            &[
                ("JJONGAL_JWT_SECRET", strong_a),
                ("JJONGAL_MEDIA_SECRET", &pattern),
            ],
            "JJONGAL_MEDIA_SECRET is too predictable",
        ),
        (&[], "JJONGAL_JWT_SECRET"),
        (&[("JJONGAL_JWT_SECRET", strong_a)], "JJONGAL_MEDIA_SECRET"),
        (
            &[
                ("JJONGAL_JWT_SECRET", "short"),
                ("JJONGAL_MEDIA_SECRET", strong_b),
            ],
            "at least 32 bytes",
        ),
        (
            &[
                ("JJONGAL_JWT_SECRET", strong_a),
                ("JJONGAL_MEDIA_SECRET", strong_a),
            ],
            "must differ",
        ),
        // The load benchmark's yardstick is for development only.
        (
            &[
                ("JJONGAL_JWT_SECRET", strong_a),
                ("JJONGAL_MEDIA_SECRET", strong_b),
                ("JJONGAL_BENCH_ROUTES", "true"),
            ],
            "refused in production",
        ),
    ];
    for (env, expected) in cases {
        let mut cmd = command(&storage);
        cmd.env("JJONGAL_ENV", "production").arg("serve");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        assert!(!out.status.success(), "started without {expected}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains(strong_a) && !stderr.contains("short\""));
    }
    // No secret files were generated in production mode.
    assert!(!storage.dir.path().join("secrets").exists());
}

/// Issue 28 point 4: production refuses settings that switch its own protections off —
/// a catch-all trusted proxy, a public metrics listener, a media dir that holds the data
/// dir — unless `JJONGAL_ALLOW_UNSAFE` names the exception; and a database URL that is
/// not understood is an error in every mode, never a SQLite file named like it.
#[tokio::test]
async fn unsafe_settings_and_unknown_database_urls_are_refused() {
    let storage = TestStorage::new(Db::Sqlite).await;
    let secrets = [
        ("JJONGAL_JWT_SECRET", "0123456789abcdef0123456789abcdef-a"),
        ("JJONGAL_MEDIA_SECRET", "0123456789abcdef0123456789abcdef-b"),
    ];
    let data = storage.dir.path().to_string_lossy().to_string();
    let run = async |env: &[(&str, &str)], production: bool| {
        let mut cmd = command(&storage);
        cmd.arg("migrate");
        if production {
            cmd.env("JJONGAL_ENV", "production");
            for (k, v) in secrets {
                cmd.env(k, v);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (env, expected) in [
        (vec![("JJONGAL_TRUSTED_PROXIES", "0.0.0.0/0")], "catch-all"),
        (
            vec![("JJONGAL_TRUSTED_PROXIES", "10.0.0.1, ::/0")],
            "catch-all",
        ),
        (
            vec![("JJONGAL_METRICS_BIND", "0.0.0.0:9100")],
            "JJONGAL_METRICS_BIND",
        ),
        (vec![("JJONGAL_MEDIA_DIR", "/")], "JJONGAL_MEDIA_DIR"),
        (
            vec![("JJONGAL_MEDIA_DIR", data.as_str())],
            "JJONGAL_MEDIA_DIR",
        ),
    ] {
        let (ok, stderr) = run(&env, true).await;
        assert!(!ok, "production started with {env:?}");
        assert!(
            stderr.contains(expected) && stderr.contains("JJONGAL_ALLOW_UNSAFE"),
            "{stderr}"
        );
        // Development starts (and warns).
        let (ok, stderr) = run(&env, false).await;
        assert!(ok, "{env:?}: {stderr}");
    }
    // Named exceptions let production start.
    let (ok, stderr) = run(
        &[
            ("JJONGAL_TRUSTED_PROXIES", "0.0.0.0/0"),
            ("JJONGAL_METRICS_BIND", "0.0.0.0:9100"),
            ("JJONGAL_ALLOW_UNSAFE", "catch-all-proxies, public-metrics"),
        ],
        true,
    )
    .await;
    assert!(ok, "{stderr}");
    let (ok, stderr) = run(&[("JJONGAL_ALLOW_UNSAFE", "everything")], true).await;
    assert!(!ok && stderr.contains("unknown exception"), "{stderr}");
    // Database URLs: understood or refused, in any mode; never a file named like them.
    for url in ["postgres:/postgres@127.0.0.1/x", "mysql://root@127.0.0.1/x"] {
        for production in [false, true] {
            let (ok, stderr) = run(&[("JJONGAL_DATABASE_URL", url)], production).await;
            assert!(!ok, "{url} accepted");
            assert!(stderr.contains("JJONGAL_DATABASE_URL"), "{stderr}");
        }
    }
    let files: Vec<String> = std::fs::read_dir(storage.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !files
            .iter()
            .any(|f| f.contains("postgres") || f.contains("mysql")),
        "{files:?}"
    );
}

/// A setting set to nothing is refused at start-up, named (it used to start "ready" and
/// answer 500 to every request); the default is had by leaving it unset.
#[tokio::test]
async fn empty_settings_are_refused_at_start_up() {
    let storage = TestStorage::new(Db::Sqlite).await;
    for (name, value, expected) in [
        (
            "JJONGAL_DATABASE_URL",
            "",
            "JJONGAL_DATABASE_URL (--database-url) is set but empty",
        ),
        (
            "JJONGAL_PUBLIC_URL",
            "  ",
            "JJONGAL_PUBLIC_URL (--public-url) is set but empty",
        ),
        ("JJONGAL_LLM_BASE_URL", "", "JJONGAL_LLM_BASE_URL"),
        ("JJONGAL_JWT_SECRET", "", "JJONGAL_JWT_SECRET"),
        ("JJONGAL_WORKER_POLL_MS", "", "--worker-poll-ms"),
    ] {
        let out = command(&storage)
            .env(name, value)
            .arg("serve")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} empty: started");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    // By flag too, naming the setting both ways.
    let out = command(&storage)
        .args(["serve", "--media-dir", ""])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("JJONGAL_MEDIA_DIR (--media-dir) is set but empty"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_wildcard_cors_origin_is_refused() {
    let storage = TestStorage::new(Db::Sqlite).await;
    for (origins, expected) in [("*", "cannot be `*`"), ("app.example", "is not an origin")] {
        let out = command(&storage)
            .env("JJONGAL_CORS_ORIGINS", origins)
            .arg("serve")
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{origins}"
        );
    }
}

#[tokio::test]
async fn help_never_shows_secret_values() {
    let storage = TestStorage::new(Db::Sqlite).await;
    let out = command(&storage)
        .env("JJONGAL_JWT_SECRET", "visible-jwt-secret-value-0123456789")
        .env(
            "JJONGAL_MEDIA_SECRET",
            "visible-media-secret-value-0123456789",
        )
        .env(
            "JJONGAL_DATABASE_URL",
            "postgres://user:dbpassword@localhost/x",
        )
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("JJONGAL_JWT_SECRET"));
    for secret in ["visible-jwt-secret", "visible-media-secret", "dbpassword"] {
        assert!(!help.contains(secret), "--help shows {secret}");
    }
}

#[tokio::test]
async fn print_schema_prints_the_sdl() {
    let out = Command::new(BIN)
        .arg("print-schema")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        jjongal::graphql::sdl()
    );
}
