//! Real providers' rules, each on the strict fakes (`fakes`): requests the real OpenAI or
//! ElevenLabs would refuse are refused here too, so each test below fails if the service
//! sends what the provider does not take, or reads its answers wrongly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::db_tests;
use crate::fakes::openai::{
    self, Api, MP3, PNG, error, image_b64, image_url, moderation_answer, refusal_answer,
    speech_answer, story_answer, strict,
};
use crate::fakes::{ELEVEN_KEY, Fakes, elevenlabs, provider_flags, requests_to};
use crate::helpers::{Db, TestApp, spawn_app_with, unlabelled};

/// The fakes' flags (see `fakes::provider_flags`), OpenAI-compatible capabilities at
/// `base`, and `extra`.
fn flags(fakes: &Fakes, base: &str, extra: &[&str]) -> Vec<String> {
    let mut flags = provider_flags(base, &fakes.server.uri());
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

async fn spawn(db: Db, fakes: &Fakes, extra: &[&str]) -> TestApp {
    let base = format!("{}/v1", fakes.server.uri());
    let flags = flags(fakes, &base, extra);
    spawn_app_with(db, &flags.iter().map(String::as_str).collect::<Vec<_>>()).await
}

async fn new_story(app: &TestApp, token: &str, theme: &str) -> String {
    app.post_json(
        "/api/v1/stories",
        &json!({"user_preferences": {"theme": theme, "characters": ["용감한 토끼"], "length": "short"}}),
        Some(token),
    )
    .await
    .assert_ok(202)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn finished(app: &TestApp, token: &str, id: &str) -> Value {
    app.wait_finished(token, id).await
}

async fn reason(app: &TestApp, token: &str, id: &str) -> Option<String> {
    app.story_note(token, id).await
}

async fn steps(app: &TestApp, id: &str) -> Vec<jjongal::store::models::GenerationStepRow> {
    app.domain
        .stories()
        .generation_steps(id.parse().unwrap())
        .await
        .unwrap()
}

async fn fetch(app: &TestApp, url: &Value) -> (String, Vec<u8>) {
    let url = url
        .as_str()
        .expect("a media URL")
        .replace("http://localhost:8000", &app.base);
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (content_type, response.bytes().await.unwrap().to_vec())
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// Defect 1: GPT image models refuse `response_format`; the default model is one.
async fn gpt_image_models_get_only_what_they_take(db: Db) {
    let fakes = Fakes::start().await;
    // Each capability's own key goes to it.
    Mock::given(method("POST"))
        .and(path(Api::Images.path()))
        .respond_with(
            strict(
                Api::Images,
                openai::Natural {
                    base: fakes.server.uri(),
                },
            )
            .key("test-key-image"),
        )
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &["--image-model", "gpt-image-1"]).await;
    let token = app.new_account("pictures").await;
    let id = new_story(&app, &token, "별나라").await;
    let story = finished(&app, &token, &id).await;
    assert_eq!(story["status"], "completed", "{story}");
    for chapter in story["chapters"].as_array().unwrap() {
        let (content_type, bytes) = fetch(&app, &chapter["image"]["url"]).await;
        assert_eq!(content_type, "image/png");
        // The provider's picture, labelled with the model asked for.
        assert_eq!(unlabelled(&bytes, "openai-images (gpt-image-1)"), PNG);
    }
    let asked = requests_to(&fakes.server, Api::Images.path()).await;
    assert_eq!(asked.len(), 3);
    for request in &asked {
        let b = body(request);
        assert_eq!(b["model"], "gpt-image-1");
        assert!(b.get("response_format").is_none(), "{b}");
    }
    assert_eq!(reason(&app, &token, &id).await, None);

    // The default model is a GPT image model too.
    let fakes = Fakes::start().await;
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("pictures2").await;
    let id = new_story(&app, &token, "바다").await;
    assert_eq!(finished(&app, &token, &id).await["status"], "completed");
    let b = body(&requests_to(&fakes.server, Api::Images.path()).await[0]);
    assert!(b["model"].as_str().unwrap().starts_with("gpt-image"), "{b}");
    assert!(b.get("response_format").is_none(), "{b}");
}

/// Defect 1 and 10: an image answered by URL is fetched — but not from loopback or
/// private addresses unless allowed (local providers); a story whose pictures all
/// failed says so, on the story and in its history.
async fn image_urls_are_fetched_only_where_allowed(db: Db) {
    let fakes = Fakes::start().await;
    let url = format!("{}/fake-images/7.png", fakes.server.uri());
    Mock::given(method("POST"))
        .and(path(Api::Images.path()))
        .respond_with(strict(Api::Images, image_url(&url)))
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &["--image-model", "dall-e-3"]).await;
    let token = app.new_account("no.private").await;
    let id = new_story(&app, &token, "숲").await;
    let story = finished(&app, &token, &id).await;
    assert_eq!(story["status"], "completed", "{story}");
    assert!(
        story["chapters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["image"].is_null())
    );
    assert!(
        requests_to(&fakes.server, "/fake-images/7.png")
            .await
            .is_empty(),
        "a loopback URL is never fetched"
    );
    let note = reason(&app, &token, &id)
        .await
        .expect("a note on the story");
    assert!(note.contains("삽화"), "{note}");
    let history = steps(&app, &id).await;
    let summary = history
        .iter()
        .find(|s| s.step == "illustrate_all")
        .expect("in the history");
    assert_eq!(summary.error_kind.as_deref(), Some("bad_response"));
    assert!(
        history
            .iter()
            .filter(|s| s.step == "illustrate" && s.attempt > 0)
            .all(|s| s
                .error_message
                .as_deref()
                .unwrap_or_default()
                .contains("private network")),
        "{history:#?}"
    );
    // DALL·E was asked for base64 (it takes `response_format`).
    let b = body(&requests_to(&fakes.server, Api::Images.path()).await[0]);
    assert_eq!(b["response_format"], "b64_json");

    // Allowed (a provider on this machine): fetched, stored, no note.
    let app = spawn(
        db,
        &fakes,
        &[
            "--image-model",
            "dall-e-3",
            "--provider-allow-private-urls",
            "true",
        ],
    )
    .await;
    let token = app.new_account("local.pictures").await;
    let id = new_story(&app, &token, "호수").await;
    let story = finished(&app, &token, &id).await;
    for chapter in story["chapters"].as_array().unwrap() {
        let (_, image) = fetch(&app, &chapter["image"]["url"]).await;
        assert_eq!(unlabelled(&image, "openai-images ("), PNG);
    }
    assert_eq!(reason(&app, &token, &id).await, None);
}

/// Defect 10: an answer over the capability's cap is refused, not read.
async fn oversized_answers_are_refused(db: Db) {
    let fakes = Fakes::start().await;
    let mut huge = PNG.to_vec();
    huge.resize(3 * 1024 * 1024, 0);
    Mock::given(method("POST"))
        .and(path(Api::Images.path()))
        .respond_with(strict(Api::Images, image_b64(&huge)))
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &["--image-max-response-mib", "1"]).await;
    let token = app.new_account("big.answers").await;
    let id = new_story(&app, &token, "거인").await;
    let story = finished(&app, &token, &id).await;
    assert_eq!(story["status"], "completed");
    assert!(
        story["chapters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["image"].is_null())
    );
    let history = steps(&app, &id).await;
    let refused: Vec<_> = history
        .iter()
        .filter(|s| s.step == "illustrate" && s.attempt > 0)
        .collect();
    assert!(!refused.is_empty());
    for s in refused {
        assert!(
            s.error_message.as_deref().unwrap().contains("larger than"),
            "{s:?}"
        );
    }
}

/// Defect 2: after a clone, stories are narrated in the account's voice; when the voice
/// provider fails (quota), the stock narrator reads instead, and the fallback is counted.
async fn stories_are_narrated_in_the_cloned_voice(db: Db) {
    let fakes = Fakes::start().await;
    fakes.voices.add_voice("parentVoice01");
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("cloned.reader").await;
    app.give_cloned_voice(&token, "parentVoice01").await;
    let id = new_story(&app, &token, "우리 집").await;
    let story = finished(&app, &token, &id).await;
    assert_eq!(story["status"], "completed", "{story}");
    for chapter in story["chapters"].as_array().unwrap() {
        let (_, audio) = fetch(&app, &chapter["audio"]["url"]).await;
        assert_eq!(unlabelled(&audio, "elevenlabs-tts ("), MP3);
    }
    let spoken = requests_to(&fakes.server, "/v1/text-to-speech/parentVoice01").await;
    assert_eq!(spoken.len(), 3, "every chapter in the parent's voice");
    assert_eq!(spoken[0].headers["xi-api-key"], ELEVEN_KEY);
    assert!(
        spoken
            .iter()
            .any(|r| body(r)["text"].as_str().unwrap().contains("1장")),
        "the chapter's text is what is read"
    );
    assert!(
        requests_to(&fakes.server, Api::Speech.path())
            .await
            .is_empty()
    );

    // The voice provider's quota is used up: the stock narrator reads, and it is counted.
    Mock::given(method("POST"))
        .and(path_regex("^/v1/text-to-speech/"))
        .respond_with(elevenlabs::strict(
            &fakes.voices,
            elevenlabs::error(401, "quota_exceeded", "This request exceeds your quota."),
        ))
        .mount(&fakes.server)
        .await;
    let id = new_story(&app, &token, "우리 동네").await;
    let story = finished(&app, &token, &id).await;
    for chapter in story["chapters"].as_array().unwrap() {
        assert!(chapter["audio"].is_object(), "{chapter}");
    }
    assert_eq!(
        requests_to(&fakes.server, Api::Speech.path()).await.len(),
        3
    );
    let history = steps(&app, &id).await;
    let cloned: Vec<_> = history
        .iter()
        .filter(|s| s.provider == "elevenlabs-tts")
        .collect();
    assert_eq!(
        cloned.len(),
        3,
        "a quota error is not retried: {history:#?}"
    );
    assert!(
        cloned
            .iter()
            .all(|s| s.error_kind.as_deref() == Some("quota"))
    );
    let metrics = reqwest::get(format!("{}/metrics", app.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "jjongal_provider_fallbacks_total{step=\"narrate\",from=\"elevenlabs-tts\",to=\"openai-speech\"} 3"
        ),
        "{metrics}"
    );
}

/// Defect 11: a chapter longer than a speech call takes (4096 characters) is narrated
/// in pieces cut at sentence ends, joined; nothing is dropped.
async fn long_chapters_are_narrated_in_pieces(db: Db) {
    let fakes = Fakes::start().await;
    let long = "토끼가 숲속 길을 따라 깡충깡충 뛰어가며 친구들에게 인사했어요. ".repeat(150);
    let story = json!({"title": "긴 이야기", "chapters": (1..=3).map(|i| json!({"title": format!("{i}장"), "content": long.trim()})).collect::<Vec<_>>()});
    Mock::given(method("POST"))
        .and(path(Api::Chat.path()))
        .respond_with(strict(Api::Chat, story_answer(&story.to_string())))
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("long.chapters").await;
    let id = new_story(&app, &token, "긴 숲길").await;
    let story = finished(&app, &token, &id).await;
    assert_eq!(story["status"], "completed", "{story}");
    for chapter in story["chapters"].as_array().unwrap() {
        let (_, audio) = fetch(&app, &chapter["audio"]["url"]).await;
        assert_eq!(
            unlabelled(&audio, "openai-speech ("),
            [MP3, MP3].concat(),
            "two pieces, joined"
        );
    }
    let calls = requests_to(&fakes.server, Api::Speech.path()).await;
    assert_eq!(calls.len(), 6);
    let mut spoken = String::new();
    for call in calls.iter().take(2) {
        let input = body(call)["input"].as_str().unwrap().to_string();
        assert!(input.chars().count() <= 4096);
        assert!(input.ends_with('.'), "cut at a sentence end");
        spoken.push_str(&input);
    }
    let words = |t: &str| t.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let said: Vec<String> = calls
        .iter()
        .flat_map(|c| words(body(c)["input"].as_str().unwrap()))
        .collect();
    assert_eq!(said.len(), 3 * (words(&format!("1장. {long}")).len()));
}

/// Defect 4: GPT-5 and o-series models take `max_completion_tokens` and no
/// `temperature`; other servers keep `max_tokens`; settings override.
async fn chat_parameters_follow_the_model(db: Db) {
    let fakes = Fakes::start().await;
    let app = spawn(db, &fakes, &["--llm-model", "gpt-5.4-mini"]).await;
    let token = app.new_account("gpt.five").await;
    let id = new_story(&app, &token, "로봇").await;
    assert_eq!(finished(&app, &token, &id).await["status"], "completed");
    // The guide too.
    let mut ws = socket(&app, &token).await;
    let started = talk(&mut ws, json!({"type": "start_conversation"})).await;
    assert_eq!(started["type"], "conversation_started", "{started}");
    for call in requests_to(&fakes.server, Api::Chat.path()).await {
        let b = body(&call);
        assert!(
            b.get("temperature").is_none() && b.get("max_tokens").is_none(),
            "{b}"
        );
    }

    // A local server with a local model: `max_tokens` and `temperature` as before.
    let fakes = Fakes::start().await;
    let app = spawn(db, &fakes, &["--llm-model", "llama3.1"]).await;
    let token = app.new_account("local.model").await;
    let mut ws = socket(&app, &token).await;
    assert_eq!(
        talk(&mut ws, json!({"type": "start_conversation"})).await["type"],
        "conversation_started"
    );
    let guide = body(&requests_to(&fakes.server, Api::Chat.path()).await[0]);
    assert_eq!(guide["max_tokens"], 300);
    assert_eq!(guide["temperature"], 0.7);
    // ... unless the settings say otherwise.
    let fakes = Fakes::start().await;
    let app = spawn(
        db,
        &fakes,
        &[
            "--llm-model",
            "my-model",
            "--llm-token-limit-param",
            "max-completion-tokens",
            "--llm-temperature",
            "omit",
        ],
    )
    .await;
    let token = app.new_account("overridden").await;
    let mut ws = socket(&app, &token).await;
    assert_eq!(
        talk(&mut ws, json!({"type": "start_conversation"})).await["type"],
        "conversation_started"
    );
    let guide = body(&requests_to(&fakes.server, Api::Chat.path()).await[0]);
    assert_eq!(guide["max_completion_tokens"], 300);
    assert!(guide.get("temperature").is_none() && guide.get("max_tokens").is_none());
}

/// Defect 5: base URLs with or without `/v1` (OpenAI-compatible: a bare host means its
/// `/v1`; ElevenLabs: both spellings).
async fn base_urls_with_or_without_v1(db: Db) {
    let fakes = Fakes::start().await;
    fakes.voices.add_voice("v1Voice");
    let bare = fakes.server.uri();
    let mut all = flags(&fakes, &format!("{bare}/"), &[]);
    let at = all.iter().position(|f| f == "--voice-base-url").unwrap();
    all[at + 1] = format!("{bare}/v1/");
    let app = spawn_app_with(db, &all.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let token = app.new_account("bare.hosts").await;
    app.give_cloned_voice(&token, "v1Voice").await;
    let id = new_story(&app, &token, "기차").await;
    let story = finished(&app, &token, &id).await;
    assert_eq!(story["status"], "completed", "{story}");
    assert!(
        story["chapters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["image"].is_object() && c["audio"].is_object())
    );
    assert_eq!(requests_to(&fakes.server, Api::Chat.path()).await.len(), 1);
    assert_eq!(
        requests_to(&fakes.server, "/v1/text-to-speech/v1Voice")
            .await
            .len(),
        3
    );
}

/// Defect 12: a model's refusal and an image `moderation_blocked` are refusals (the
/// guardian reads that the provider refused); `retry-after-ms` is honoured.
async fn refusals_and_retry_hints_are_read(db: Db) {
    let fakes = Fakes::start().await;
    Mock::given(method("POST"))
        .and(path(Api::Chat.path()))
        .respond_with(strict(Api::Chat, refusal_answer("I can't help with that.")))
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("refused").await;
    let id = new_story(&app, &token, "용").await;
    assert_eq!(finished(&app, &token, &id).await["status"], "failed");
    let why = reason(&app, &token, &id).await.unwrap();
    assert!(why.contains("refused") && why.contains("거절"), "{why}");
    assert_eq!(
        requests_to(&fakes.server, Api::Chat.path()).await.len(),
        1,
        "a refusal is not retried"
    );

    let fakes = Fakes::start().await;
    Mock::given(method("POST"))
        .and(path(Api::Chat.path()))
        .respond_with(strict(
            Api::Chat,
            error(
                429,
                "requests",
                Some("rate_limit_exceeded"),
                None,
                "Rate limit reached.",
            )
            .insert_header("retry-after-ms", "1500")
            .insert_header("retry-after", "0"),
        ))
        .up_to_n_times(1)
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("patient.ms").await;
    let id = new_story(&app, &token, "달").await;
    assert_eq!(finished(&app, &token, &id).await["status"], "completed");
    let writes: Vec<_> = steps(&app, &id)
        .await
        .into_iter()
        .filter(|s| s.step == "write_text")
        .collect();
    assert_eq!(writes.len(), 2);
    let gap = writes[1].started_at - writes[0].started_at;
    assert!(
        gap >= chrono::Duration::milliseconds(1500),
        "retried after {gap}"
    );
}

/// Defect 13: the audio a provider sends is stored as what it is (AAC here, though MP3
/// was asked for), with the right type.
async fn audio_is_stored_as_what_it_is(db: Db) {
    let fakes = Fakes::start().await;
    Mock::given(method("POST"))
        .and(path(Api::Speech.path()))
        .respond_with(strict(Api::Speech, speech_answer("aac")))
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("aac.audio").await;
    let id = new_story(&app, &token, "음악").await;
    let story = finished(&app, &token, &id).await;
    let audio = &story["chapters"][0]["audio"];
    assert!(audio["url"].as_str().unwrap().contains(".aac?"), "{audio}");
    let (content_type, bytes) = fetch(&app, &audio["url"]).await;
    assert_eq!(content_type, "audio/aac");
    assert_eq!(
        unlabelled(&bytes, "openai-speech ("),
        openai::audio_of("aac")
    );
}

/// Arrival times of the requests a responder sees.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<Instant>>>);

struct Timed<R>(Arrivals, R);

impl<R: Respond> Respond for Timed<R> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.0.lock().unwrap().push(Instant::now());
        self.1.respond(request)
    }
}

/// Defect 8: `JJONGAL_MODERATION_CONCURRENCY` bounds moderation calls: with one slot,
/// each call starts only after the one before it answered.
async fn moderation_calls_take_their_slots(db: Db) {
    let fakes = Fakes::start().await;
    let arrivals = Arrivals::default();
    Mock::given(method("POST"))
        .and(path(Api::Moderations.path()))
        .respond_with(Timed(
            arrivals.clone(),
            strict(
                Api::Moderations,
                moderation_answer(false).set_delay(Duration::from_millis(400)),
            ),
        ))
        .mount(&fakes.server)
        .await;
    let app = spawn(
        db,
        &fakes,
        &["--moderation-concurrency", "1", "--worker-concurrency", "4"],
    )
    .await;
    let token = app.new_account("one.at.a.time").await;
    let mut ids = vec![];
    for theme in ["하나", "둘", "셋"] {
        ids.push(new_story(&app, &token, theme).await);
    }
    for id in &ids {
        assert_eq!(finished(&app, &token, id).await["status"], "completed");
    }
    let mut times = arrivals.0.lock().unwrap().clone();
    times.sort();
    // Inputs and each chapter of three stories (and perhaps pieces of the text as it
    // grew, for the typing subscription).
    assert!(times.len() >= 12, "{}", times.len());
    for pair in times.windows(2) {
        // A lower bound: a slow machine only spaces them further.
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(350),
            "{:?}",
            pair[1] - pair[0]
        );
    }
}

async fn socket(
    app: &TestApp,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = app.base.replace("http://", "ws://") + &format!("/wss/v1/audio?token={token}");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Sends `message` and returns the next JSON frame.
async fn talk(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    message: Value,
) -> Value {
    if !message.is_null() {
        ws.send(Message::text(message.to_string())).await.unwrap();
    }
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("an answer in time")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(t) = frame {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Defect 9: when moderation cannot be reached during a conversation, the child hears
/// `AI_UNAVAILABLE`; the words are not stored as flagged and no canned deflection is sent.
async fn unreachable_moderation_in_a_conversation_is_said(db: Db) {
    let fakes = Fakes::start().await;
    // The greeting's check passes; every check after that fails.
    Mock::given(method("POST"))
        .and(path(Api::Moderations.path()))
        .respond_with(strict(Api::Moderations, moderation_answer(false)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fakes.server)
        .await;
    Mock::given(method("POST"))
        .and(path(Api::Moderations.path()))
        .respond_with(strict(
            Api::Moderations,
            error(503, "server_error", None, None, "Service unavailable."),
        ))
        .with_priority(2)
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("unchecked").await;
    let mut ws = socket(&app, &token).await;
    let started = talk(&mut ws, json!({"type": "start_conversation"})).await;
    assert_eq!(started["type"], "conversation_started", "{started}");
    let id = started["conversation_id"].as_str().unwrap().to_string();
    let answer = talk(
        &mut ws,
        json!({"type": "user_message", "text": "공룡이랑 놀고 싶어"}),
    )
    .await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["error_code"], "AI_UNAVAILABLE");
    let conversation = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&token))
        .await
        .assert_ok(200);
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "only the greeting: {conversation}");
    assert_eq!(messages[0]["role"], "assistant");
    // The guide was not asked to answer unchecked words.
    assert_eq!(requests_to(&fakes.server, Api::Chat.path()).await.len(), 1);
}

/// Defects 6 and 7: a reply whose cloned voice fails is read by the stock narrator (and
/// counted); conversation calls are in the provider metrics; a clone refused for good
/// (voice slots full) is told as such, a passing failure is retried.
async fn conversations_fall_back_and_cloning_tells_why(db: Db) {
    let fakes = Fakes::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/text-to-speech/"))
        .respond_with(elevenlabs::strict(
            &fakes.voices,
            elevenlabs::error(500, "internal_error", "Something went wrong."),
        ))
        .mount(&fakes.server)
        .await;
    // The first clone attempt is rate limited, the retry succeeds.
    Mock::given(method("POST"))
        .and(path("/v1/voices/add"))
        .respond_with(elevenlabs::strict(
            &fakes.voices,
            elevenlabs::error(429, "too_many_concurrent_requests", "Too many requests."),
        ))
        .up_to_n_times(1)
        .mount(&fakes.server)
        .await;
    let app = spawn(db, &fakes, &["--voice-clone-samples", "1"]).await;
    let token = app.new_account("fallback.voice").await;
    app.give_voice_consent(&token).await;
    let mut ws = socket(&app, &token).await;
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    wav.extend([7u8; 64]);
    ws.send(Message::binary(wav.clone())).await.unwrap();
    assert_eq!(
        talk(&mut ws, Value::Null).await["type"],
        "voice_clone_progress"
    );
    let cloned = talk(&mut ws, Value::Null).await;
    assert_eq!(cloned["type"], "voice_clone_success", "{cloned}");
    assert_eq!(requests_to(&fakes.server, "/v1/voices/add").await.len(), 2);
    let started = talk(&mut ws, json!({"type": "start_conversation"})).await;
    assert_eq!(started["type"], "conversation_started", "{started}");
    let (_, audio) = fetch(&app, &started["audio_url"]).await;
    assert_eq!(
        unlabelled(&audio, "openai-speech ("),
        MP3,
        "the stock narrator read the greeting"
    );
    assert_eq!(
        requests_to(&fakes.server, Api::Speech.path()).await.len(),
        1
    );
    let metrics = reqwest::get(format!("{}/metrics", app.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "jjongal_provider_fallbacks_total{step=\"narrate_reply\",from=\"elevenlabs-tts\",to=\"openai-speech\"} 1",
        "jjongal_provider_attempts_total{step=\"guide\",provider=\"openai-chat-guide\",outcome=\"ok\"} 1",
        "jjongal_provider_attempts_total{step=\"clone_voice\",provider=\"elevenlabs-voices\",outcome=\"error\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    assert!(metrics.contains("step=\"moderate_message\""), "{metrics}");

    // Another family, with the provider's voice slots full: told for good, not "retry".
    fakes.voices.set_capacity(1);
    let token = app.new_account("no.slots").await;
    app.give_voice_consent(&token).await;
    let mut ws = socket(&app, &token).await;
    ws.send(Message::binary(wav)).await.unwrap();
    assert_eq!(
        talk(&mut ws, Value::Null).await["type"],
        "voice_clone_progress"
    );
    let failed = talk(&mut ws, Value::Null).await;
    assert_eq!(failed["error_code"], "VOICE_CLONE_FAILED", "{failed}");
    assert_eq!(failed["retryable"], false, "{failed}");
    assert!(
        failed["error_message"].as_str().unwrap().contains("자리"),
        "{failed}"
    );
}

/// `jjongal providers check`: one call per configured provider, OK or the provider's
/// own error (wrong path, bad key, unsupported parameter), and the exit status.
async fn providers_check_reports_each_capability(_db: Db) {
    let fakes = Fakes::start().await;
    let base = format!("{}/v1", fakes.server.uri());
    let run = async |extra: &[(&str, String)]| {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jjongal"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JJONGAL_DATA_DIR", dir.path())
            .arg("providers")
            .arg("check");
        for cap in ["LLM", "IMAGE", "SPEECH", "MODERATION", "STT"] {
            cmd.env(format!("JJONGAL_{cap}_BASE_URL"), &base)
                .env(format!("JJONGAL_{cap}_API_KEY"), "sk-test");
        }
        cmd.env("JJONGAL_VOICE_BASE_URL", fakes.server.uri())
            .env("JJONGAL_VOICE_API_KEY", ELEVEN_KEY);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, text) = run(&[]).await;
    assert!(ok, "{text}");
    for cap in ["llm", "image", "speech", "moderation", "voice", "stt"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(cap) && l.contains(" OK ")),
            "{cap}: {text}"
        );
    }
    // Then where each capability's data goes in this configuration: the provider's
    // address and model, never its key.
    let (_, map) = text
        .split_once("where a family's data goes:")
        .expect("the data map follows the checks");
    assert_eq!(
        map.matches(&format!("→ {base} (model ")).count(),
        5,
        "{map}"
    );
    assert!(
        map.contains(&format!(
            "voice       → {} (model eleven_multilingual_v2): the guardian's voice samples",
            fakes.server.uri()
        )),
        "{map}"
    );
    assert!(
        map.contains("stt         → ") && map.contains("the child's spoken utterances"),
        "{map}"
    );
    assert!(
        !text.contains("sk-test") && !text.contains(ELEVEN_KEY),
        "{text}"
    );
    // A wrong path, a bad key, a parameter the model refuses: each named.
    let (ok, text) = run(&[
        (
            "JJONGAL_IMAGE_BASE_URL",
            format!("{}/wrong", fakes.server.uri()),
        ),
        ("JJONGAL_VOICE_API_KEY", "bad-key".into()),
        ("JJONGAL_LLM_MODEL", "o3-mini".into()),
        ("JJONGAL_LLM_TOKEN_LIMIT_PARAM", "max-tokens".into()),
    ])
    .await;
    assert!(!ok, "{text}");
    let line = |cap: &str| {
        text.lines()
            .find(|l| l.starts_with(cap))
            .unwrap()
            .to_string()
    };
    assert!(
        line("image").contains("FAILED") && line("image").contains("404"),
        "{text}"
    );
    assert!(
        line("voice").contains("401") && line("voice").contains("invalid_api_key"),
        "{text}"
    );
    assert!(line("llm").contains("unsupported_parameter"), "{text}");
    assert!(line("speech").contains(" OK "), "{text}");
    // Offline capabilities say so.
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jjongal"))
        .env_clear()
        .env("JJONGAL_DATA_DIR", dir.path())
        .args(["providers", "check"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("offline built-in").count(), 6);
    // Offline, nothing leaves the server.
    assert!(!text.contains('→'), "{text}");
    assert!(
        text.contains("llm         stays on this server (offline storyteller and guide)"),
        "{text}"
    );
    assert!(
        text.contains(
            "voice       not sent anywhere (no voice cloning; samples stay on this server)"
        ),
        "{text}"
    );
}

/// A voice cloned with a provider no longer configured is still at that provider: its
/// deletion is recorded for the operator, never dropped silently.
async fn a_voice_without_its_provider_is_recorded(db: Db) {
    let app = spawn_app_with(db, &[]).await;
    let token = app.new_account("orphan.voice").await;
    app.give_cloned_voice(&token, "orphanVoice").await;
    let reply = app.delete("/api/v1/users/me/voice", Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.user(&token).await.voice_id, None);
    let outcomes = app
        .domain
        .voices()
        .retry_voice_deletions(false)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].voice_id, "orphanVoice");
    assert_eq!(outcomes[0].status, "pending");
    assert!(
        outcomes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no voice provider")
    );
}

/// The family's erasure never waits on a voice provider that hangs: the account is
/// gone within the request's time (not a 503 to try again for ever), and the voice left
/// at the provider is recorded for the operator.
async fn erasure_never_waits_on_a_hanging_voice_provider(db: Db) {
    let fakes = Fakes::start().await;
    fakes.voices.add_voice("slowVoice");
    Mock::given(method("DELETE"))
        .and(path_regex("^/v1/voices/"))
        .respond_with(elevenlabs::strict(
            &fakes.voices,
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "ok"}))
                .set_delay(Duration::from_secs(30)),
        ))
        .mount(&fakes.server)
        .await;
    let app = spawn(
        db,
        &fakes,
        &["--request-timeout-secs", "4", "--voice-timeout", "1"],
    )
    .await;
    let token = app.new_account("hanging.provider").await;
    let account = app.user(&token).await.id;
    app.give_cloned_voice(&token, "slowVoice").await;
    let reply = app.delete("/api/v1/users/me", Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_error(401, "INVALID_TOKEN");
    let outcomes = app
        .domain
        .voices()
        .retry_voice_deletions(false)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].voice_id, "slowVoice");
    assert_eq!(outcomes[0].owner_id, account.to_string());
    assert_eq!(outcomes[0].status, "pending");
    assert!(
        outcomes[0].error.as_deref().unwrap().contains("timeout"),
        "{outcomes:?}"
    );
}

/// The same check for operators, as a GraphQL ops field (members cannot reach it).
async fn operators_can_check_the_providers(db: Db) {
    let fakes = Fakes::start().await;
    let app = spawn(db, &fakes, &[]).await;
    let token = app.new_account("ops.checker").await;
    let query = "{ ops { providerCheck { capability url ok status code message } } }";
    let member = app.graphql(query, json!({}), Some(&token)).await.json();
    assert!(
        member["data"].is_null() || member["data"]["ops"].is_null(),
        "{member}"
    );
    app.domain
        .ops()
        .set_role("ops.checker", jjongal::domain::accounts::Role::Operator)
        .await
        .unwrap();
    let checked = app.graphql(query, json!({}), Some(&token)).await.json();
    let lines = checked["data"]["ops"]["providerCheck"]
        .as_array()
        .unwrap_or_else(|| panic!("{checked}"))
        .clone();
    assert_eq!(lines.len(), 6, "{checked}");
    assert!(lines.iter().all(|l| l["ok"] == true), "{checked}");
    fakes.voices.revoke_key();
    let checked = app.graphql(query, json!({}), Some(&token)).await.json();
    let voice = checked["data"]["ops"]["providerCheck"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["capability"] == "voice")
        .unwrap()
        .clone();
    assert_eq!(voice["ok"], false);
    assert_eq!(voice["status"], 401);
    assert_eq!(voice["code"], "invalid_api_key");
    assert_eq!(voice["url"], fakes.server.uri());
}

db_tests!(
    erasure_never_waits_on_a_hanging_voice_provider,
    a_voice_without_its_provider_is_recorded,
    operators_can_check_the_providers,
    gpt_image_models_get_only_what_they_take,
    image_urls_are_fetched_only_where_allowed,
    oversized_answers_are_refused,
    stories_are_narrated_in_the_cloned_voice,
    long_chapters_are_narrated_in_pieces,
    chat_parameters_follow_the_model,
    base_urls_with_or_without_v1,
    refusals_and_retry_hints_are_read,
    audio_is_stored_as_what_it_is,
    moderation_calls_take_their_slots,
    unreachable_moderation_in_a_conversation_is_said,
    conversations_fall_back_and_cloning_tells_why,
);

#[tokio::test]
async fn providers_check() {
    providers_check_reports_each_capability(Db::Sqlite).await;
}
