//! The story appears as it is written (issue 34, point 1): the writer streams, each
//! chapter is moderated, stored and announced the moment it is complete and its media
//! start then; `storyText` gives the text as it grows, in moderated pieces; a flagged
//! chapter is never readable; a retried story continues after the chapters it kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::db_tests;
use crate::fakes::openai::{Api, moderation_answer, story_answer, story_json, strict};
use crate::fakes::paced::PacedChat;
use crate::fakes::{Fakes, provider_flags, requests_to};
use crate::helpers::{Db, TestApp, spawn_app_with, ws};

/// The app with every provider on the strict fakes, the story writer on `llm` when given.
async fn spawn(db: Db, fakes: &Fakes, llm: Option<&str>, extra: &[&str]) -> TestApp {
    let mut flags = provider_flags(&format!("{}/v1", fakes.server.uri()), &fakes.server.uri());
    if let Some(llm) = llm {
        flags.extend(["--llm-base-url".to_string(), llm.to_string()]);
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    spawn_app_with(db, &flags.iter().map(String::as_str).collect::<Vec<_>>()).await
}

async fn new_story(app: &TestApp, token: &str, length: &str) -> String {
    app.post_json(
        "/api/v1/stories",
        &json!({"user_preferences": {"theme": "별빛 숲", "characters": ["아기 곰"], "length": length}}),
        Some(token),
    )
    .await
    .assert_ok(202)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn story(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/v1/stories/{id}"), Some(token))
        .await
        .assert_ok(200)
}

/// Polls the story until `ready` holds (an upper bound for a loaded machine).
async fn until(app: &TestApp, token: &str, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1200 {
        let s = story(app, token, id).await;
        if ready(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "story {id} never got there: {}",
        story(app, token, id).await
    );
}

fn chapters(story: &Value) -> &Vec<Value> {
    story["chapters"].as_array().unwrap()
}

/// Subscribes to `storyText` and collects its events until the server completes it.
fn collect_typing(app: &TestApp, token: &str, id: &str) -> tokio::task::JoinHandle<Vec<Value>> {
    let (base, token, id) = (app.base.clone(), token.to_string(), id.to_string());
    let app_base = base;
    tokio::spawn(async move {
        let url = app_base.replace("http://", "ws://") + "/graphql/ws";
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        ws::init(&mut socket, Some(&token)).await;
        ws::send(
            &mut socket,
            json!({"id": "t", "type": "subscribe", "payload": {
                "query": "subscription($id: ID!) { storyText(id: $id) { chapterNumber offset delta done } }",
                "variables": {"id": id}}}),
        )
        .await;
        let mut events = Vec::new();
        loop {
            let msg = ws::recv(&mut socket).await;
            match msg["type"].as_str().unwrap() {
                "next" => {
                    assert!(msg["payload"]["errors"].is_null(), "{msg}");
                    events.push(msg["payload"]["data"]["storyText"].clone());
                }
                "complete" => return events,
                other => panic!("unexpected {other}: {msg}"),
            }
        }
    })
}

/// Each chapter's text as the typing events put it together (each keeps the text's
/// first `offset` characters and continues with its `delta`): the offset of its first
/// event (above 0 only for a subscriber that joined mid-chapter), the text from there,
/// and whether its last event said `done`.
fn typed(events: &[Value]) -> std::collections::BTreeMap<i64, (usize, String, bool)> {
    let mut chapters: std::collections::BTreeMap<i64, (usize, String, bool)> = Default::default();
    for e in events {
        let offset = e["offset"].as_u64().unwrap() as usize;
        let entry = chapters
            .entry(e["chapterNumber"].as_i64().unwrap())
            .or_insert((offset, String::new(), false));
        assert!(
            offset >= entry.0 && offset <= entry.0 + entry.1.chars().count(),
            "an offset within the text so far: {events:?}"
        );
        assert!(!entry.2, "nothing after a chapter's done: {events:?}");
        entry.1 = entry.1.chars().take(offset - entry.0).collect();
        entry.1.push_str(e["delta"].as_str().unwrap());
        entry.2 = e["done"].as_bool().unwrap();
    }
    chapters
}

/// Waits until `app` serves one more live subscription than `before`.
async fn listening(app: &TestApp, before: usize) {
    for _ in 0..1200 {
        if app.domain.live_subscriptions() > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the subscription never started");
}

/// Checks that the typed chapters are the stored ones (from where the subscriber joined),
/// each ending `done`; the last chapter must be there.
fn assert_typed(events: &[Value], story: &Value, from_start: bool) {
    let typed = typed(events);
    let stored = chapters(story);
    assert!(typed.contains_key(&(stored.len() as i64)), "{events:?}");
    for (n, (first, text, done)) in &typed {
        let content: String = stored[*n as usize - 1]["content"]
            .as_str()
            .unwrap()
            .chars()
            .skip(*first)
            .collect();
        assert_eq!(*text, content, "chapter {n}");
        assert!(done, "chapter {n} ended with done");
        if from_start {
            assert_eq!(*first, 0, "chapter {n} typed from its start");
        }
    }
}

async fn chapters_appear_as_they_are_written(db: Db) {
    let fakes = Fakes::start().await;
    let answer = story_json("흐르는 이야기", 5);
    // The model holds before its first word, and after chapter 2's object closes, until
    // the test lets it go on.
    let paced = PacedChat::start(&answer, &["", "2장: 토끼와 민준이 숲을 걸었어요.\"}"]).await;
    let app = spawn(db, &fakes, Some(&paced.base), &[]).await;
    let token = app.new_account("streaming").await;
    let id = new_story(&app, &token, "medium").await;
    paced.called().await;
    let before = app.domain.live_subscriptions();
    let typing = collect_typing(&app, &token, &id);
    listening(&app, before).await;
    paced.go_on();

    // While the model is still writing: two chapters readable, the story in progress,
    // and the first chapters' pictures and narrations made meanwhile.
    let partial = until(&app, &token, &id, |s| {
        chapters(s).len() == 2
            && chapters(s)
                .iter()
                .all(|c| !c["image"].is_null() && !c["audio"].is_null())
    })
    .await;
    assert_eq!(partial["status"], "in_progress", "{partial}");
    assert_eq!(partial["title"], "흐르는 이야기");
    for (i, c) in chapters(&partial).iter().enumerate() {
        assert_eq!(c["chapter_number"], i + 1);
        assert_eq!(
            c["content"],
            format!("{}장: 토끼와 민준이 숲을 걸었어요.", i + 1)
        );
    }
    // The page shows it the same way.
    let page = app
        .get("/api/v1/stories?status=in_progress", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(
        page["results"][0]["chapters"].as_array().unwrap().len(),
        2,
        "{page}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chapters(&story(&app, &token, &id).await).len(), 2, "held");
    assert_eq!(paced.requests().len(), 1);
    assert_eq!(paced.requests()[0]["stream"], true);

    paced.go_on();
    let done = app.wait_finished(&token, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(chapters(&done).len(), 5);
    assert!(
        chapters(&done)
            .iter()
            .all(|c| !c["image"].is_null() && !c["audio"].is_null()),
        "{done}"
    );
    assert_eq!(paced.requests().len(), 1, "one call wrote the story");

    // Every chapter was moderated on its own, before it was stored.
    let steps = app
        .domain
        .stories()
        .generation_steps(id.parse().unwrap())
        .await
        .unwrap();
    let mut moderated: Vec<i32> = steps
        .iter()
        .filter(|s| s.step == "moderate_text")
        .map(|s| s.chapter_number.unwrap())
        .collect();
    moderated.sort();
    assert_eq!(moderated, [1, 2, 3, 4, 5]);
    let checked: Vec<String> = requests_to(&fakes.server, Api::Moderations.path())
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    for n in 1..=5 {
        assert!(
            checked
                .iter()
                .any(|b| b.contains(&format!("{n}장: 토끼와"))),
            "chapter {n} went to moderation"
        );
    }

    // The typing subscription put every chapter's text together, each ending `done`.
    let events = tokio::time::timeout(Duration::from_secs(30), typing)
        .await
        .expect("the typing subscription ends with the story")
        .unwrap();
    assert_typed(&events, &done, true);
    assert_eq!(typed(&events).len(), 5, "{events:?}");
}

/// Flags any text with `needle` in it while `on`.
struct FlagWhile {
    needle: &'static str,
    on: Arc<AtomicBool>,
}

impl Respond for FlagWhile {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&request.body);
        moderation_answer(self.on.load(Ordering::SeqCst) && body.contains(self.needle))
    }
}

async fn a_flagged_chapter_is_never_readable_and_a_retry_goes_on_after_the_others(db: Db) {
    let fakes = Fakes::start().await;
    let on = Arc::new(AtomicBool::new(true));
    Mock::given(method("POST"))
        .and(path(Api::Moderations.path()))
        .respond_with(strict(
            Api::Moderations,
            FlagWhile {
                needle: "3장: ",
                on: on.clone(),
            },
        ))
        .with_priority(1)
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, None, &[]).await;
    let token = app.new_account("flagged.chapter").await;
    let id = new_story(&app, &token, "medium").await;
    let typing = collect_typing(&app, &token, &id);
    let failed = app.wait_finished(&token, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = app.story_note(&token, &id).await.unwrap();
    let steps = app
        .domain
        .stories()
        .generation_steps(id.parse().unwrap())
        .await
        .unwrap();
    assert!(reason.contains("violence"), "{reason} {steps:#?}");
    // The two chapters before it passed and stay; the third was never stored.
    let kept: Vec<(String, String)> = chapters(&failed)
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kept.len(), 2, "{failed}");
    let events = tokio::time::timeout(Duration::from_secs(30), typing)
        .await
        .unwrap()
        .unwrap();
    // Nothing of the flagged chapter was released as a whole (pieces may go out only
    // as moderation passes each; here it flags them).
    let typed = typed(&events);
    assert!(
        typed
            .get(&3)
            .is_none_or(|(_, text, done)| !done && !text.contains("3장: 토끼와 민준이")),
        "{events:?}"
    );

    // Retried (and fit now), it continues after the two chapters it kept.
    on.store(false, Ordering::SeqCst);
    let retried = app
        .graphql(
            "mutation($id: ID!) { retryStory(id: $id) { status } }",
            json!({"id": id}),
            Some(&token),
        )
        .await
        .json();
    // Pending, or already claimed by the worker the retry woke.
    let status = retried["data"]["retryStory"]["status"].as_str();
    assert!(
        matches!(status, Some("pending" | "in_progress")),
        "{retried}"
    );
    let done = app.wait_finished(&token, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(chapters(&done).len(), 5);
    for (i, (id, content)) in kept.iter().enumerate() {
        assert_eq!(
            chapters(&done)[i]["id"],
            id.as_str(),
            "chapter {} kept",
            i + 1
        );
        assert_eq!(chapters(&done)[i]["content"], content.as_str());
    }
    let chats = requests_to(&fakes.server, Api::Chat.path()).await;
    assert_eq!(chats.len(), 2);
    let retry: Value = serde_json::from_slice(&chats[1].body).unwrap();
    let ask = retry["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ask.contains("3장부터 5장까지 남은 3개 장"), "{ask}");
}

async fn a_piece_moderation_refuses_is_never_shown(db: Db) {
    let fakes = Fakes::start().await;
    Mock::given(method("POST"))
        .and(path(Api::Moderations.path()))
        .respond_with(strict(
            Api::Moderations,
            FlagWhile {
                needle: "3장: ",
                on: Arc::new(AtomicBool::new(true)),
            },
        ))
        .with_priority(1)
        .mount(&fakes.server)
        .await;
    // The model holds before its first word, and again inside chapter 3, long enough
    // for the typing release to ask moderation about chapter 3's first words.
    let paced = PacedChat::start(&story_json("멈춘 이야기", 5), &["", "3장: 토끼와"]).await;
    let app = spawn(db, &fakes, Some(&paced.base), &[]).await;
    let token = app.new_account("withheld.typing").await;
    let id = new_story(&app, &token, "medium").await;
    paced.called().await;
    let before = app.domain.live_subscriptions();
    let typing = collect_typing(&app, &token, &id);
    listening(&app, before).await;
    paced.go_on();
    until(&app, &token, &id, |s| chapters(s).len() == 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    paced.go_on();
    let failed = app.wait_finished(&token, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let events = tokio::time::timeout(Duration::from_secs(30), typing)
        .await
        .unwrap()
        .unwrap();
    // Moderation was asked about chapter 3's first words, refused them, and nothing of
    // chapter 3 went out; chapters 1 and 2 did, whole.
    let asked: Vec<String> = requests_to(&fakes.server, Api::Moderations.path())
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        asked
            .iter()
            .any(|b| b.contains("3장: 토끼와") && !b.contains("걸었어요")),
        "a piece of chapter 3 was checked: {asked:?}"
    );
    assert!(events.iter().all(|e| e["chapterNumber"] != 3), "{events:?}");
    let typed = typed(&events);
    assert_eq!(typed.len(), 2, "{events:?}");
    assert!(typed.values().all(|(_, _, done)| *done));
}

async fn the_offline_writer_types_too(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--worker",
            "true",
            "--worker-poll-ms",
            "50",
            "--offline-typing-ms",
            "1500",
        ],
    )
    .await;
    let token = app.new_account("offline.typing").await;
    let id = new_story(&app, &token, "short").await;
    let typing = collect_typing(&app, &token, &id);
    // Some chapters readable while the rest is still being typed.
    let partial = until(&app, &token, &id, |s| !chapters(s).is_empty()).await;
    assert_eq!(partial["status"], "in_progress", "{partial}");
    assert!(chapters(&partial).len() < 3, "{partial}");
    let done = app.wait_finished(&token, &id).await;
    assert_eq!(done["status"], "completed");
    let events = tokio::time::timeout(Duration::from_secs(30), typing)
        .await
        .unwrap()
        .unwrap();
    assert_typed(&events, &done, false);
    // The last chapter came in several pieces: it was typed, not dropped in at once.
    let pieces = events.iter().filter(|e| e["chapterNumber"] == 3).count();
    assert!(pieces >= 2, "{events:?}");
}

async fn a_late_title_is_kept_and_a_withheld_answer_is_a_refusal(db: Db) {
    // The title after the chapters (a model may order the keys so): checked and kept.
    let fakes = Fakes::start().await;
    let chapters_json: Vec<Value> = (1..=3)
        .map(|i| json!({"title": format!("{i}장"), "content": format!("{i}장 이야기예요.")}))
        .collect();
    let late = format!(
        "{{\"chapters\": {}, \"title\": \"늦게 온 제목\"}}",
        Value::Array(chapters_json)
    );
    Mock::given(method("POST"))
        .and(path(Api::Chat.path()))
        .respond_with(strict(Api::Chat, story_answer(&late)))
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, None, &[]).await;
    let token = app.new_account("late.title").await;
    let id = new_story(&app, &token, "short").await;
    let done = app.wait_finished(&token, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["title"], "늦게 온 제목");
    let checked = requests_to(&fakes.server, Api::Moderations.path()).await;
    assert!(
        checked
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("늦게 온 제목")),
        "the late title went to moderation"
    );

    // The provider's filter withholds the rest midway: a refusal, not retried; the
    // chapter that came complete before it stays.
    let fakes = Fakes::start().await;
    let cut = "{\"title\": \"제목\", \"chapters\": [{\"title\": \"하나\", \"content\": \"첫 장\"}, {\"title\": \"둘\", \"content\": \"그리고";
    Mock::given(method("POST"))
        .and(path(Api::Chat.path()))
        .respond_with(strict(
            Api::Chat,
            story_answer(cut).finish("content_filter"),
        ))
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, None, &[]).await;
    let token = app.new_account("withheld").await;
    let id = new_story(&app, &token, "short").await;
    let failed = app.wait_finished(&token, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = app.story_note(&token, &id).await.unwrap();
    assert!(
        reason.contains("refused") && reason.contains("거절"),
        "{reason}"
    );
    assert_eq!(requests_to(&fakes.server, Api::Chat.path()).await.len(), 1);
    assert_eq!(chapters(&failed).len(), 1, "{failed}");
    assert_eq!(chapters(&failed)[0]["content"], "첫 장");
}

db_tests!(
    chapters_appear_as_they_are_written,
    a_late_title_is_kept_and_a_withheld_answer_is_a_refusal,
    a_piece_moderation_refuses_is_never_shown,
    a_flagged_chapter_is_never_readable_and_a_retry_goes_on_after_the_others,
    the_offline_writer_types_too,
);
