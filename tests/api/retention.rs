//! Issue 33, point 3: the retention policy — what the purge deletes, what it keeps, that
//! one purge runs per interval across processes, and that every run is audited.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::db_tests;
use crate::fakes::openai::{Api, speech_answer, strict};
use crate::helpers::{Db, TestApp, spawn_app_sharing, spawn_app_with};

/// A server whose replies are spoken (a strict OpenAI-compatible speech fake), with
/// `extra` settings; the fake is returned to keep it alive.
async fn speaking_app(db: Db, extra: &[&str]) -> (TestApp, MockServer) {
    let speech = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(Api::Speech.path()))
        .respond_with(strict(Api::Speech, speech_answer("mp3")))
        .mount(&speech)
        .await;
    let url = format!("{}/v1", speech.uri());
    let mut args = vec![
        "--speech-base-url",
        url.as_str(),
        "--speech-api-key",
        "sk-speech",
    ];
    args.extend_from_slice(extra);
    (spawn_app_with(db, &args).await, speech)
}

/// A conversation with one spoken exchange; ended when `end`. Its id.
async fn converse(app: &TestApp, token: &str, end: bool) -> String {
    let id = app.start_conversation(token).await;
    let sent = app
        .graphql(
            "mutation($id: ID!) { sendMessage(conversationId: $id, text: \"공룡 좋아\") { audioUrl } }",
            json!({"id": id}),
            Some(token),
        )
        .await
        .json();
    assert!(
        sent["data"]["sendMessage"]["audioUrl"].is_string(),
        "a spoken reply: {sent}"
    );
    if end {
        app.end_conversation(token, &id).await;
    }
    id
}

/// The spoken replies' files of a conversation on disk.
fn reply_files(app: &TestApp, owner: &str, conversation: &str) -> usize {
    let dir = app
        .domain
        .media()
        .dir()
        .join(owner)
        .join("conversations")
        .join(conversation);
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

async fn audio_urls(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let detail = app
        .get(&format!("/api/v1/conversations/{id}"), Some(token))
        .await
        .assert_ok(200);
    detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["audio_url"].clone())
        .collect()
}

async fn purges(app: &TestApp) -> Value {
    let ops = crate::ops::operator(app, "retention.auditor").await;
    let runs = app
        .graphql(
            "query { ops { purges { trigger process startedAt finishedAt conversations replyAudio voiceSamples error } } }",
            json!({}),
            Some(&ops),
        )
        .await
        .json();
    runs["data"]["ops"]["purges"].clone()
}

/// Ended conversations past their retention (0 days: all) go with their spoken replies;
/// an open one stays. The run is recorded.
async fn ended_conversations_past_retention_are_purged(db: Db) {
    // (A week between scheduled purges: the server's own stays out of the way.)
    let (app, _speech) = speaking_app(
        db,
        &[
            "--retain-conversations-days",
            "0",
            "--purge-interval-secs",
            "604800",
        ],
    )
    .await;
    let token = app.new_account("forgetful.family").await;
    let owner = app.user(&token).await.id.to_string();
    let ended = converse(&app, &token, true).await;
    let open = converse(&app, &token, false).await;
    assert_eq!(reply_files(&app, &owner, &ended), 2, "greeting and reply");

    let purged = app.domain.retention().purge_now("test").await.unwrap();
    assert_eq!(purged.conversations, 1, "{purged:?}");
    app.get(&format!("/api/v1/conversations/{ended}"), Some(&token))
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
    assert_eq!(
        reply_files(&app, &owner, &ended),
        0,
        "its spoken replies too"
    );
    // The open conversation is the child's present: kept, with its audio.
    let spoken = audio_urls(&app, &token, &open).await;
    assert_eq!(
        spoken.iter().filter(|u| u.is_string()).count(),
        2,
        "{spoken:?}"
    );
    assert_eq!(reply_files(&app, &owner, &open), 2);

    // Audited: the run, who ran it and what it deleted.
    let runs = purges(&app).await;
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trigger"] == "command")
        .unwrap_or_else(|| panic!("{runs}"));
    assert_eq!(run["process"], "test");
    assert_eq!(run["conversations"], 1);
    assert!(run["finishedAt"].is_string(), "{run}");
    assert_eq!(run["error"], Value::Null);
}

/// Spoken replies lose their audio after their retention (30 days by default: a reply
/// spoken 31 days ago loses it, one spoken today keeps it); the words stay, and the
/// conversation itself is kept.
async fn spoken_replies_lose_their_audio_after_retention(db: Db) {
    let (app, _speech) = speaking_app(db, &["--purge-interval-secs", "604800"]).await;
    let token = app.new_account("quiet.family").await;
    let owner = app.user(&token).await.id.to_string();
    let old = converse(&app, &token, true).await;
    let recent = converse(&app, &token, true).await;
    let month_ago = (chrono::Utc::now() - chrono::Duration::days(31))
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S");
    app.storage()
        .execute(&format!(
            "UPDATE conversation_messages SET created_at = '{month_ago}' WHERE conversation_id = '{old}'"
        ))
        .await;

    let purged = app.domain.retention().purge_now("test").await.unwrap();
    assert_eq!(
        (purged.conversations, purged.reply_audio),
        (0, 2),
        "{purged:?}"
    );
    let detail = app
        .get(&format!("/api/v1/conversations/{old}"), Some(&token))
        .await
        .assert_ok(200);
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "the words stay: {detail}");
    assert!(
        messages.iter().all(|m| m["audio_url"].is_null()),
        "{detail}"
    );
    assert!(messages.iter().any(|m| m["text"] == "공룡 좋아"));
    assert_eq!(reply_files(&app, &owner, &old), 0);
    let kept = audio_urls(&app, &token, &recent).await;
    assert_eq!(kept.iter().filter(|u| u.is_string()).count(), 2, "{kept:?}");
    assert_eq!(reply_files(&app, &owner, &recent), 2);
    // Nothing left to do: a second run deletes nothing.
    let again = app.domain.retention().purge_now("test").await.unwrap();
    assert_eq!(again, Default::default());
}

/// With several processes on one database, one purge runs per interval: every process
/// tries, one takes the interval's slot.
async fn one_scheduled_purge_per_interval_across_processes(db: Db) {
    // An interval longer than the test, so every try below is in one slot (unless the
    // test straddles a boundary: then two runs, in two slots, never two in one).
    let args = ["--purge-interval-secs", "604800"];
    let first = spawn_app_with(db, &args).await;
    let second = spawn_app_sharing(&first, &args).await;
    let third = spawn_app_sharing(&first, &args).await;
    let tries =
        futures_util::future::join_all([&first, &second, &third].into_iter().flat_map(|app| {
            (0..3).map(move |n| async move {
                app.domain
                    .retention()
                    .purge_if_due(&format!("p{n}"))
                    .await
                    .unwrap()
            })
        }))
        .await;
    let ran: Vec<_> = tries.iter().flatten().collect();
    // (The servers' own schedule waits a tick — a minute here — after start-up.)
    assert_eq!(ran.len(), 1, "one of nine concurrent tries runs: {tries:?}");
    let runs = purges(&first).await;
    let scheduled: Vec<&Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "scheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "one run per interval: {runs}");
    assert!(scheduled[0]["process"].as_str().unwrap().starts_with('p'));
    assert!(scheduled[0]["finishedAt"].is_string(), "{runs}");
    // The next try in the same interval does not run either.
    assert_eq!(
        second
            .domain
            .retention()
            .purge_if_due("late")
            .await
            .unwrap(),
        None
    );
}

db_tests!(
    ended_conversations_past_retention_are_purged,
    spoken_replies_lose_their_audio_after_retention,
    one_scheduled_purge_per_interval_across_processes,
);
