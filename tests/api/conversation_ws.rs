//! The conversation WebSocket `/wss/v1/audio` over real sockets (contract §6).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::db_tests;
use crate::fakes::openai::{self, Api, chat_answer, transcription_answer};
use crate::fakes::{ELEVEN_KEY, Fakes, elevenlabs, requests_to};
use crate::helpers::{Db, TestApp, gql_code, spawn_app_with, unlabelled};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(app: &TestApp, path_and_query: &str, bearer: Option<&str>) -> Socket {
    let url = app.base.replace("http://", "ws://") + path_and_query;
    let mut request = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next JSON message, skipping pings and notices (what the server cannot do, said
/// once: the tests about them read them with [`recv_any`]).
async fn recv(socket: &mut Socket) -> Value {
    loop {
        let message = recv_any(socket).await;
        if message["type"] != "notice" {
            return message;
        }
    }
}

/// The next JSON message, skipping pings.
async fn recv_any(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("a message within a minute")
            .expect("socket open")
            .expect("valid frame");
        match frame {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }
}

/// Waits for the close frame; returns its code.
async fn closed(socket: &mut Socket) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("closes")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error before close: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

async fn send(socket: &mut Socket, v: Value) {
    socket.send(Message::text(v.to_string())).await.unwrap();
}

fn wav(n: u8) -> Vec<u8> {
    let mut bytes = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    bytes.extend(std::iter::repeat_n(n, 64));
    bytes
}

async fn a_full_conversation_becomes_a_story(db: Db) {
    let app = spawn_app_with(db, &["--worker", "true", "--worker-poll-ms", "50"]).await;
    let token = app.new_account("talker").await;
    let mut ws = open(
        &app,
        &format!("/wss/v1/audio?token={token}&child_name=지우&age=6&interests=공룡,우주"),
        None,
    )
    .await;
    // The mobile client sends `event`; the server always answers with `type`.
    send(
        &mut ws,
        json!({"event": "start_conversation", "payload": {"age": 5}}),
    )
    .await;
    let started = recv(&mut ws).await;
    assert_eq!(started["type"], "conversation_started", "{started}");
    let conversation = started["conversation_id"].as_str().unwrap().to_string();
    let greeting = started["text"].as_str().unwrap();
    assert!(
        greeting.contains("지우야") && greeting.contains("공룡"),
        "{greeting}"
    );
    let espeak = crate::helpers::espeak_installed();
    assert_eq!(started["audio_url"].is_string(), espeak, "{started}");

    let lines = [
        "반짝이는 아기 공룡",
        "달나라 놀이터",
        "공룡이 길을 잃어버렸어",
        "별똥별을 타고 집에 갔어",
    ];
    for line in lines {
        send(&mut ws, json!({"type": "user_message", "text": line})).await;
        let reply = recv(&mut ws).await;
        assert_eq!(reply["type"], "ai_response", "{reply}");
        assert_eq!(reply["user_text"], line);
        assert!(!reply["text"].as_str().unwrap().is_empty());
        if espeak {
            let url = reply["audio_url"]
                .as_str()
                .unwrap()
                .replace("http://localhost:8000", &app.base);
            let audio = app.client.get(url).send().await.unwrap();
            assert_eq!(audio.status(), 200);
            assert_eq!(&audio.bytes().await.unwrap()[..4], b"RIFF");
        } else {
            assert_eq!(reply["audio_url"], Value::Null);
        }
    }
    send(&mut ws, json!({"type": "end_conversation"})).await;
    let ended = recv(&mut ws).await;
    assert_eq!(
        ended,
        json!({"type": "conversation_ended", "conversation_id": conversation})
    );
    assert_eq!(closed(&mut ws).await, 1000);

    // The guardian sees it over REST, with every message in order.
    let list = app
        .get("/api/v1/conversations", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(list["results"][0]["id"], conversation.as_str());
    assert_eq!(list["results"][0]["status"], "ended");
    let detail = app
        .get(
            &format!("/api/v1/conversations/{conversation}"),
            Some(&token),
        )
        .await
        .assert_ok(200);
    assert_eq!(detail["child_name"], "지우");
    assert_eq!(detail["age"], 5);
    assert_eq!(detail["interests"], json!(["공룡", "우주"]));
    let roles: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "assistant",
            "child",
            "assistant",
            "child",
            "assistant",
            "child",
            "assistant",
            "child",
            "assistant"
        ]
    );

    // A story from it uses what the child said, for the conversation's child.
    let story = app
        .post_json("/api/v1/stories", &json!({"user_preferences": {"theme": "모험", "length": "short"}, "conversation_id": conversation}), Some(&token))
        .await
        .assert_ok(202);
    let id = story["id"].as_str().unwrap();
    let done = app.wait_finished(&token, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let text: String = done["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    assert!(
        text.contains("지우") && text.contains("반짝이는 아기 공룡"),
        "{text}"
    );

    // Deleting the conversation: 204, then 404.
    assert_eq!(
        app.delete(
            &format!("/api/v1/conversations/{conversation}"),
            Some(&token)
        )
        .await
        .status,
        204
    );
    app.get(
        &format!("/api/v1/conversations/{conversation}"),
        Some(&token),
    )
    .await
    .assert_error(404, "RESOURCE_NOT_FOUND");
}

async fn bad_tokens_get_an_error_and_4401(db: Db) {
    let app = spawn_app_with(db, &[]).await;
    let token = app.new_account("guarded").await;
    for target in [
        "/wss/v1/audio",
        "/wss/v1/audio?token=forged",
        "/ws/v1/audio/?token=",
    ] {
        let mut ws = open(&app, target, None).await;
        let msg = recv(&mut ws).await;
        assert_eq!(msg["type"], "error");
        assert_eq!(msg["error_code"], "INVALID_TOKEN");
        assert_eq!(closed(&mut ws).await, 4401, "{target}");
    }
    // The header works too, on every spelling of the path; the token is never logged
    // (the request log shows the path only).
    for target in [
        "/wss/v1/audio",
        "/wss/v1/audio/",
        "/ws/v1/audio",
        "/ws/v1/audio/",
    ] {
        let mut ws = open(&app, target, Some(&token)).await;
        send(&mut ws, json!({"type": "start_conversation"})).await;
        assert_eq!(
            recv(&mut ws).await["type"],
            "conversation_started",
            "{target}"
        );
    }
}

async fn protocol_errors_keep_the_socket_open(db: Db) {
    let app = spawn_app_with(db, &[]).await;
    let token = app.new_account("clumsy").await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("not json"), "VALIDATION_ERROR"),
        (Message::text("[1,2]"), "VALIDATION_ERROR"),
        (
            Message::text(json!({"type": "dance"}).to_string()),
            "VALIDATION_ERROR",
        ),
        (
            Message::text(json!({"text": "no type"}).to_string()),
            "VALIDATION_ERROR",
        ),
        (
            Message::text(json!({"type": "user_message", "text": "안녕"}).to_string()),
            "CONVERSATION_NOT_STARTED",
        ),
        (
            Message::text(json!({"type": "end_conversation"}).to_string()),
            "CONVERSATION_NOT_STARTED",
        ),
        (
            Message::text(json!({"type": "user_message", "text": "가".repeat(10_001)}).to_string()),
            "VALIDATION_ERROR",
        ),
        (
            Message::text(
                json!({"type": "start_conversation", "payload": {"age": 99}}).to_string(),
            ),
            "VALIDATION_ERROR",
        ),
        (
            Message::text(
                json!({"type": "start_conversation", "payload": {"pet": "cat"}}).to_string(),
            ),
            "VALIDATION_ERROR",
        ),
        (
            Message::binary(b"definitely not audio".to_vec()),
            "INVALID_AUDIO",
        ),
        (
            Message::binary(vec![0u8; 5 * 1024 * 1024 + 1]),
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (frame, code) in cases {
        ws.send(frame).await.unwrap();
        let msg = recv(&mut ws).await;
        assert_eq!(msg["type"], "error", "{msg}");
        assert_eq!(msg["error_code"], code, "{msg}");
        assert!(msg["error_message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still open and working.
    send(&mut ws, json!({"type": "start_conversation"})).await;
    let started = recv(&mut ws).await;
    assert_eq!(started["type"], "conversation_started");
    send(&mut ws, json!({"type": "user_message", "text": "  "})).await;
    assert_eq!(recv(&mut ws).await["error_code"], "VALIDATION_ERROR");
    // A second start ends the current conversation and begins a new one.
    send(&mut ws, json!({"type": "start_conversation"})).await;
    let again = recv(&mut ws).await;
    assert_eq!(again["type"], "conversation_started");
    assert_ne!(again["conversation_id"], started["conversation_id"]);
    let old = app
        .get(
            &format!(
                "/api/v1/conversations/{}",
                started["conversation_id"].as_str().unwrap()
            ),
            Some(&token),
        )
        .await
        .assert_ok(200);
    assert_eq!(old["status"], "ended");
    // Over 8 MiB: the socket closes with 1009 (read while the big frame is still being
    // written: the server stops reading it).
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        let _ = sink
            .send(Message::binary(vec![0u8; 8 * 1024 * 1024 + 1]))
            .await;
    });
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("closes")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1009);
    writer.abort();
}

async fn idle_sockets_close_with_1001_and_messages_are_rate_limited(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--ws-idle-timeout-secs",
            "1",
            "--ws-ping-secs",
            "1",
            "--ws-messages-per-minute",
            "3",
        ],
    )
    .await;
    let token = app.new_account("sleepy").await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    // Pings (answered automatically by the client) do not keep it open.
    assert_eq!(closed(&mut ws).await, 1001);

    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    for _ in 0..3 {
        send(&mut ws, json!({"type": "end_conversation"})).await;
        assert_eq!(
            recv(&mut ws).await["error_code"],
            "CONVERSATION_NOT_STARTED"
        );
    }
    send(&mut ws, json!({"type": "end_conversation"})).await;
    assert_eq!(recv(&mut ws).await["error_code"], "RATE_LIMIT_EXCEEDED");
}

async fn flagged_words_are_never_repeated(db: Db) {
    let app = spawn_app_with(db, &[]).await;
    let token = app.new_account("careful").await;
    let mut ws = open(
        &app,
        &format!("/wss/v1/audio?token={token}&child_name=하람"),
        None,
    )
    .await;
    send(&mut ws, json!({"type": "start_conversation"})).await;
    recv(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "user_message", "text": "칼로 죽여 버릴 거야"}),
    )
    .await;
    let reply = recv(&mut ws).await;
    assert_eq!(reply["type"], "ai_response");
    assert_eq!(reply["user_text"], "칼로 죽여 버릴 거야");
    let text = reply["text"].as_str().unwrap();
    assert!(!text.contains("죽여") && !text.contains("칼"), "{text}");
    assert!(text.contains("다른 이야기"), "{text}");
    // The flagged words are kept for the guardian, marked, and never reach a story.
    let conversations = app
        .get("/api/v1/conversations", Some(&token))
        .await
        .assert_ok(200);
    let id = conversations["results"][0]["id"].as_str().unwrap();
    let body = app
        .graphql(
            "query($id: ID!) { conversation(id: $id) { messages { role text flagged } } }",
            json!({"id": id}),
            Some(&token),
        )
        .await
        .json();
    let flagged: Vec<&Value> = body["data"]["conversation"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["flagged"] == true)
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["role"], "child");
}

async fn a_graphql_subscriber_sees_what_the_socket_sees(db: Db) {
    let app = spawn_app_with(db, &[]).await;
    let token = app.new_account("watched").await;
    let other = app.new_account("stranger").await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(&mut ws, json!({"type": "start_conversation"})).await;
    let id = recv(&mut ws).await["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();

    let url = app.base.replace("http://", "ws://") + "/graphql/ws";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut dash, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(
        &mut dash,
        json!({"type": "connection_init", "payload": {"token": token}}),
    )
    .await;
    assert_eq!(recv(&mut dash).await["type"], "connection_ack");
    send(&mut dash, json!({"id": "1", "type": "subscribe", "payload": {
        // After the greeting (seq 1): on PostgreSQL its NOTIFY may still be in flight.
        "query": "subscription($id: ID!) { conversationEvents(conversationId: $id, afterSeq: 1) { __typename ... on AiResponse { text userText } } }",
        "variables": {"id": id}}})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(
        &mut ws,
        json!({"type": "user_message", "text": "고래가 좋아"}),
    )
    .await;
    let on_socket = recv(&mut ws).await;
    let on_dash = recv(&mut dash).await;
    assert_eq!(
        on_dash["payload"]["data"]["conversationEvents"]["__typename"],
        "AiResponse"
    );
    assert_eq!(
        on_dash["payload"]["data"]["conversationEvents"]["text"],
        on_socket["text"]
    );
    assert_eq!(
        on_dash["payload"]["data"]["conversationEvents"]["userText"],
        "고래가 좋아"
    );
    send(&mut ws, json!({"type": "end_conversation"})).await;
    recv(&mut ws).await;
    let ended = recv(&mut dash).await;
    assert_eq!(
        ended["payload"]["data"]["conversationEvents"]["__typename"],
        "ConversationEnded"
    );
    assert_eq!(recv(&mut dash).await["type"], "complete");

    // Someone else can neither talk in it nor watch it.
    let body = app
        .graphql(
            "mutation($id: ID!) { sendMessage(conversationId: $id, text: \"안녕\") { text } }",
            json!({"id": id}),
            Some(&other),
        )
        .await
        .json();
    assert_eq!(gql_code(&body), "INSUFFICIENT_PERMISSION");
    app.get(&format!("/api/v1/conversations/{id}"), Some(&other))
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSION");
    app.delete(&format!("/api/v1/conversations/{id}"), Some(&other))
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSION");
    app.post_json(
        "/api/v1/stories",
        &json!({"user_preferences": {"theme": "숲"}, "conversation_id": id}),
        Some(&other),
    )
    .await
    .assert_error(403, "INSUFFICIENT_PERMISSION");
}

/// The strict voice provider, cloning every set of samples as `voice_id`.
async fn clones_as(voice_id: &str) -> Fakes {
    let fakes = Fakes::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/voices/add"))
        .respond_with(elevenlabs::strict(
            &fakes.voices,
            elevenlabs::ClonesAs {
                account: fakes.voices.clone(),
                id: voice_id.to_string(),
            },
        ))
        .mount(&fakes.server)
        .await;
    fakes
}

async fn voice_samples_clone_once_and_can_be_deleted(db: Db) {
    let fakes = clones_as("voice-123").await;
    let provider = &fakes.server;
    let app = spawn_app_with(
        db,
        &[
            "--voice-base-url",
            &provider.uri(),
            "--voice-api-key",
            ELEVEN_KEY,
        ],
    )
    .await;
    let token = app.new_account("parent").await;
    app.give_voice_consent(&token).await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    for n in 1..=3u8 {
        ws.send(Message::binary(wav(n))).await.unwrap();
        let progress = recv(&mut ws).await;
        assert_eq!(
            progress,
            json!({"type": "voice_clone_progress", "sample_count": n, "ready_for_cloning": false})
        );
    }
    drop(ws);
    // Samples survive a reconnect; the fifth clones, later ones do not clone again.
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    let owner = app.user(&token).await.id;
    for n in 4..=5u8 {
        ws.send(Message::binary(wav(n))).await.unwrap();
        let progress = recv(&mut ws).await;
        assert_eq!(progress["sample_count"], n);
        assert_eq!(progress["ready_for_cloning"], n >= 5);
    }
    let success = recv(&mut ws).await;
    assert_eq!(
        success,
        json!({"type": "voice_clone_success", "voice_id": "voice-123", "message": "목소리 복제 완료!"})
    );
    // Cloned: the samples are not kept (JJONGAL_RETAIN_VOICE_SAMPLES=until-cloned);
    // later ones count from nothing and clone nothing.
    assert!(stored_samples(&app, owner).is_empty());
    for n in 1..=2u8 {
        ws.send(Message::binary(wav(5 + n))).await.unwrap();
        let progress = recv(&mut ws).await;
        assert_eq!(progress["sample_count"], n, "{progress}");
    }
    // The purge takes those too.
    let purged = app.domain.retention().purge_now("test").await.unwrap();
    assert_eq!(purged.voice_samples, 2);
    assert!(stored_samples(&app, owner).is_empty());
    let clones: Vec<_> = provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v1/voices/add")
        .collect();
    assert_eq!(clones.len(), 1, "exactly one clone call");
    assert_eq!(clones[0].headers["xi-api-key"], ELEVEN_KEY);
    let body = String::from_utf8_lossy(&clones[0].body);
    assert_eq!(body.matches("name=\"files\"").count(), 5);
    assert!(app.user(&token).await.voice_id.as_deref() == Some("voice-123"));
    // Samples are not under the media directory.
    let user_id = app.user(&token).await.id.to_string();
    assert!(
        !app.domain
            .media()
            .dir()
            .join(&user_id)
            .join("voice-samples")
            .exists()
    );

    // The guardian deletes the voice: the provider's copy, the id and the samples go.
    let reply = app.delete("/api/v1/users/me/voice", Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let deletes: Vec<_> = provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].url.path(), "/v1/voices/voice-123");
    assert_eq!(app.user(&token).await.voice_id, None);
    ws.send(Message::binary(wav(9))).await.unwrap();
    assert_eq!(recv(&mut ws).await["sample_count"], 1);
}

/// Issue 33: no voice sample is stored, and no voice cloned, without the guardian's own
/// voice-cloning consent for the configured provider; a withdrawal deletes the samples
/// and the clone at the provider, and later samples are refused again.
async fn voice_cloning_needs_the_guardians_consent(db: Db) {
    let fakes = clones_as("voice-consented").await;
    let provider = &fakes.server;
    let app = spawn_app_with(
        db,
        &[
            "--voice-base-url",
            &provider.uri(),
            "--voice-api-key",
            ELEVEN_KEY,
        ],
    )
    .await;
    let token = app.new_account("careful.parent").await;
    let user = app.user(&token).await;
    let configured = app
        .domain
        .config()
        .providers
        .voice
        .base_url
        .clone()
        .unwrap();
    let terms = app
        .get("/api/v1/users/me/voice-consent", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(terms["object"], "voice_consent");
    assert_eq!(terms["given"], false);
    assert_eq!(terms["given_at"], Value::Null);
    assert_eq!(terms["voice_of"], Value::Null);
    assert_eq!(terms["provider"], configured.as_str());
    assert_eq!(terms["text_version"], "2026-12-05");
    let text = terms["text"].as_str().unwrap();
    assert!(
        text.contains(&configured),
        "the text names the provider: {text}"
    );
    assert!(text.contains("보호자") && text.contains("철회"), "{text}");
    app.get("/api/v1/users/me/voice-consent", None)
        .await
        .assert_error(401, "INVALID_TOKEN");

    // Without consent a sample is refused with its own code, and nothing is kept.
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    ws.send(Message::binary(wav(1))).await.unwrap();
    let refused = recv(&mut ws).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["error_code"], "VOICE_CONSENT_REQUIRED", "{refused}");
    assert!(stored_samples(&app, user.id).is_empty());

    // Only the guardian's own voice, the text shown and the provider named.
    let consent = |voice_of: &str, version: &str, to: &str| json!({"voice_of": voice_of, "text_version": version, "provider": to, "password": "password123"});
    let url = "/api/v1/users/me/voice-consent";
    app.post_json(
        url,
        &consent("child", "2026-12-05", &configured),
        Some(&token),
    )
    .await
    .assert_error(400, "VALIDATION_ERROR");
    app.post_json(
        url,
        &consent("guardian", "2020-01-01", &configured),
        Some(&token),
    )
    .await
    .assert_error(409, "CONFLICT");
    app.post_json(
        url,
        &consent("guardian", "2026-12-05", "https://voices.example"),
        Some(&token),
    )
    .await
    .assert_error(409, "CONFLICT");
    app.post_json(url, &json!({"voice_of": "guardian"}), Some(&token))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    // Only the guardian: the child's app holds the same token, not the password.
    let mut child = consent("guardian", "2026-12-05", &configured);
    child["password"] = json!("not-the-password");
    app.post_json(url, &child, Some(&token))
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSION");
    let given = app
        .post_json(
            url,
            &consent("guardian", "2026-12-05", &configured),
            Some(&token),
        )
        .await
        .assert_ok(201);
    assert_eq!(given["given"], true);
    assert_eq!(given["voice_of"], "guardian");
    assert_eq!(given["text"], terms["text"]);
    assert!(given["given_at"].is_string(), "{given}");
    // Given again: the standing consent, unchanged.
    let again = app
        .post_json(
            url,
            &consent("guardian", "2026-12-05", &configured),
            Some(&token),
        )
        .await
        .assert_ok(201);
    assert_eq!(again["given_at"], given["given_at"]);
    // The same in GraphQL.
    let me = app
        .graphql(
            "query { me { voiceConsent { given voiceOf provider textVersion givenAt } } }",
            json!({}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(
        me["data"]["me"]["voiceConsent"],
        json!({"given": true, "voiceOf": "guardian", "provider": configured, "textVersion": "2026-12-05", "givenAt": given["given_at"]})
    );

    // Now the samples are kept, and the fifth clones.
    for n in 1..=5u8 {
        ws.send(Message::binary(wav(n))).await.unwrap();
        assert_eq!(recv(&mut ws).await["sample_count"], n);
    }
    assert_eq!(recv(&mut ws).await["type"], "voice_clone_success");
    // Cloned: those five are not kept (the default retention); one sent after is.
    assert!(stored_samples(&app, user.id).is_empty());
    ws.send(Message::binary(wav(6))).await.unwrap();
    assert_eq!(recv(&mut ws).await["sample_count"], 1);
    assert_eq!(stored_samples(&app, user.id).len(), 1);

    // Withdrawn: the samples, the stored voice and the provider's clone go.
    app.delete(url, None)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let reply = app.delete(url, Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(stored_samples(&app, user.id).is_empty());
    assert_eq!(app.user(&token).await.voice_id, None);
    let deletes: Vec<_> = provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].url.path(), "/v1/voices/voice-consented");
    let after = app.get(url, Some(&token)).await.assert_ok(200);
    assert_eq!(after["given"], false);
    ws.send(Message::binary(wav(6))).await.unwrap();
    assert_eq!(recv(&mut ws).await["error_code"], "VOICE_CONSENT_REQUIRED");
    assert!(stored_samples(&app, user.id).is_empty());
    // The record stays for the operator: given, then withdrawn.
    let ops = crate::ops::operator(&app, "consent.auditor").await;
    let history = app
        .graphql(
            "query { ops { accounts(first: 10) { edges { node { loginId voiceConsents { voiceOf provider givenAt withdrawnAt } } } } } }",
            json!({}),
            Some(&ops),
        )
        .await
        .json();
    let edges = history["data"]["ops"]["accounts"]["edges"]
        .as_array()
        .expect("accounts");
    let node = edges
        .iter()
        .find(|e| e["node"]["loginId"] == "careful.parent")
        .unwrap_or_else(|| panic!("{history}"));
    let records = &node["node"]["voiceConsents"];
    assert_eq!(records.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(records[0]["givenAt"], given["given_at"]);
    assert!(records[0]["withdrawnAt"].is_string(), "{history}");

    // A consent names one provider: given again here, it does not cover another one the
    // operator switches to (a second process with another voice provider).
    app.give_voice_consent(&token).await;
    let elsewhere = clones_as("voice-elsewhere").await;
    let moved = crate::helpers::spawn_app_sharing(
        &app,
        &[
            "--voice-base-url",
            &elsewhere.server.uri(),
            "--voice-api-key",
            ELEVEN_KEY,
        ],
    )
    .await;
    let there = moved.get(url, Some(&token)).await.assert_ok(200);
    assert_eq!(there["given"], false, "{there}");
    assert_ne!(there["provider"], configured.as_str());
    let mut ws = open(&moved, &format!("/wss/v1/audio?token={token}"), None).await;
    ws.send(Message::binary(wav(7))).await.unwrap();
    assert_eq!(recv(&mut ws).await["error_code"], "VOICE_CONSENT_REQUIRED");
    assert!(
        elsewhere
            .server
            .received_requests()
            .await
            .unwrap()
            .is_empty(),
        "nothing reached the new provider"
    );
}

/// Deleting a voice the provider no longer has (`voice_does_not_exist`) succeeds; when
/// the provider cannot delete it at all (a revoked key), the family's deletion still
/// completes at once, and what is left at the provider is recorded for the operator,
/// who can retry (and settles it once the provider confirms).
async fn deleting_a_voice_the_provider_lost_succeeds(db: Db) {
    let fakes = Fakes::start().await;
    let app = spawn_app_with(
        db,
        &[
            "--voice-base-url",
            &format!("{}/v1", fakes.server.uri()),
            "--voice-api-key",
            ELEVEN_KEY,
            "--voice-clone-samples",
            "1",
            "--provider-backoff-ms",
            "5",
        ],
    )
    .await;
    let token = app.new_account("lost.voice").await;
    app.give_voice_consent(&token).await;
    let clone = async |ws: &mut Socket, n: u8| {
        ws.send(Message::binary(wav(n))).await.unwrap();
        assert_eq!(recv(ws).await["ready_for_cloning"], true);
        let success = recv(ws).await;
        assert_eq!(success["type"], "voice_clone_success", "{success}");
        success["voice_id"].as_str().unwrap().to_string()
    };
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    let first = clone(&mut ws, 1).await;
    // The provider lost it: it answers `400 voice_does_not_exist`, which is deleted.
    fakes.voices.forget_voice(&first);
    let reply = app.delete("/api/v1/users/me/voice", Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.user(&token).await.voice_id, None);
    let deletes = requests_to(&fakes.server, &format!("/v1/voices/{first}")).await;
    assert_eq!(
        deletes.len(),
        1,
        "a voice already gone is not asked for again"
    );

    // The key is revoked: the provider can never delete. The guardian is not kept
    // waiting: 204, the voice id and samples are gone here, and the voice left at the
    // provider is recorded.
    let second = clone(&mut ws, 2).await;
    fakes.voices.revoke_key();
    let reply = app.delete("/api/v1/users/me/voice", Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.user(&token).await.voice_id, None);
    assert_eq!(fakes.voices.voices(), vec![second.clone()]);
    // The operator retries while the key is still revoked: still pending.
    let outcomes = app
        .domain
        .voices()
        .retry_voice_deletions(false)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].voice_id, second);
    assert_eq!(outcomes[0].status, "pending");
    assert!(
        outcomes[0].error.as_deref().unwrap().contains("401"),
        "{outcomes:?}"
    );
    // With a working key the retry deletes it there, and nothing is pending any more.
    fakes.voices.set_key(ELEVEN_KEY);
    let outcomes = app
        .domain
        .voices()
        .retry_voice_deletions(false)
        .await
        .unwrap();
    assert_eq!(outcomes[0].status, "deleted");
    assert!(fakes.voices.voices().is_empty());
    assert!(
        app.domain
            .voices()
            .retry_voice_deletions(false)
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting the whole account with the key revoked completes too (the guardian's
    // right to erase), and the operator may settle what is left by force.
    let third = clone(&mut ws, 3).await;
    drop(ws);
    fakes.voices.revoke_key();
    let reply = app.delete("/api/v1/users/me", Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_error(401, "INVALID_TOKEN");
    let outcomes = app
        .domain
        .voices()
        .retry_voice_deletions(true)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].voice_id, third);
    assert_eq!(outcomes[0].status, "forced");
    assert!(
        app.domain
            .voices()
            .retry_voice_deletions(false)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Issue 29 defect 6: without a voice provider, samples are kept and the socket says so
/// once (a `notice`), not with an error each time cloning would have been tried.
async fn without_a_cloning_provider_samples_are_kept(db: Db) {
    let app = spawn_app_with(db, &["--voice-clone-samples", "2"]).await;
    let token = app.new_account("nocloner").await;
    app.give_voice_consent(&token).await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    let mut seen = Vec::new();
    for n in 1..=5 {
        ws.send(Message::binary(wav(n))).await.unwrap();
        // The progress (from the voice events) and the notice (from the turn) race.
        while !seen.iter().any(|m: &Value| m["sample_count"] == n) {
            seen.push(recv_any(&mut ws).await);
        }
    }
    // Anything else still on its way.
    send(&mut ws, json!({"type": "user_message", "text": "x"})).await;
    loop {
        let m = recv_any(&mut ws).await;
        if m["type"] == "error" && m["error_code"] == "CONVERSATION_NOT_STARTED" {
            break;
        }
        seen.push(m);
    }
    let notices: Vec<&Value> = seen.iter().filter(|m| m["type"] == "notice").collect();
    assert_eq!(notices.len(), 1, "{seen:?}");
    assert_eq!(notices[0]["code"], "VOICE_CLONING_UNAVAILABLE");
    assert!(
        seen.iter().all(|m| m["type"] != "error"),
        "no error frames: {seen:?}"
    );
    assert_eq!(seen.len(), 6, "five progresses and one notice: {seen:?}");
    let user = app.user(&token).await;
    assert_eq!(stored_samples(&app, user.id).len(), 5);
}

async fn the_guide_uses_the_llm_and_the_cloned_voice(db: Db) {
    let fakes = clones_as("voice-abc").await;
    let provider = &fakes.server;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai::strict(
            Api::Chat,
            chat_answer("안녕! 나는 모델이 쓴 쫑이야."),
        ))
        .mount(provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/text-to-speech/voice-abc"))
        .respond_with(elevenlabs::strict(
            &fakes.voices,
            ResponseTemplate::new(200).set_body_bytes(b"\xff\xf3\x84\xc4cloned-voice".to_vec()),
        ))
        .mount(provider)
        .await;
    let llm = format!("{}/v1", provider.uri());
    let app = spawn_app_with(
        db,
        &[
            "--llm-base-url",
            &llm,
            "--llm-api-key",
            "sk-test",
            "--voice-base-url",
            &provider.uri(),
            "--voice-api-key",
            ELEVEN_KEY,
            "--voice-clone-samples",
            "1",
        ],
    )
    .await;
    let token = app.new_account("modern").await;
    app.give_voice_consent(&token).await;
    let mut ws = open(
        &app,
        &format!("/wss/v1/audio?token={token}&child_name=도윤&age=4"),
        None,
    )
    .await;
    ws.send(Message::binary(wav(1))).await.unwrap();
    assert_eq!(recv(&mut ws).await["type"], "voice_clone_progress");
    assert_eq!(recv(&mut ws).await["type"], "voice_clone_success");

    send(&mut ws, json!({"type": "start_conversation"})).await;
    let started = recv(&mut ws).await;
    assert_eq!(started["text"], "안녕! 나는 모델이 쓴 쫑이야.");
    // Spoken in the cloned voice.
    let url = started["audio_url"]
        .as_str()
        .expect("spoken greeting")
        .replace("http://localhost:8000", &app.base);
    let audio = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // In the cloned voice, labelled as AI-made (issue 33).
    assert_eq!(
        unlabelled(&audio, "elevenlabs-tts ("),
        b"\xff\xf3\x84\xc4cloned-voice"
    );

    send(
        &mut ws,
        json!({"type": "user_message", "text": "토끼가 좋아"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["user_text"], "토끼가 좋아");
    let chats: Vec<_> = provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v1/chat/completions")
        .collect();
    assert_eq!(chats.len(), 2);
    let second: Value = serde_json::from_slice(&chats[1].body).unwrap();
    let messages = second["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    assert!(
        system.contains("도윤") && system.contains("4살") && system.contains("아주 어린 아이"),
        "{system}"
    );
    // The history goes with the request: the greeting, then the child's words.
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": "안녕! 나는 모델이 쓴 쫑이야."})
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": "토끼가 좋아"})
    );
}

/// A voice provider whose every clone fails (500, ElevenLabs' error shape).
async fn failing_voice_provider() -> MockServer {
    let fakes = Fakes::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/voices/add"))
        .respond_with(elevenlabs::strict(
            &fakes.voices,
            elevenlabs::error(500, "internal_error", "Something went wrong."),
        ))
        .mount(&fakes.server)
        .await;
    fakes.server
}

async fn cloning_failures_are_reported_and_retried(db: Db) {
    let provider = failing_voice_provider().await;
    let app = spawn_app_with(
        db,
        &[
            "--voice-base-url",
            &provider.uri(),
            "--voice-api-key",
            ELEVEN_KEY,
            "--voice-clone-samples",
            "2",
            "--provider-max-attempts",
            "2",
            "--provider-backoff-ms",
            "5",
        ],
    )
    .await;
    let token = app.new_account("unlucky").await;
    app.give_voice_consent(&token).await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    ws.send(Message::binary(wav(1))).await.unwrap();
    assert_eq!(recv(&mut ws).await["ready_for_cloning"], false);
    ws.send(Message::binary(wav(2))).await.unwrap();
    assert_eq!(recv(&mut ws).await["ready_for_cloning"], true);
    let failed = recv(&mut ws).await;
    assert_eq!(failed["error_code"], "VOICE_CLONE_FAILED", "{failed}");
    assert_eq!(failed["retryable"], true, "{failed}");
    // The samples are kept; the next attempt comes once `threshold` (2) more did, not
    // on every new one.
    ws.send(Message::binary(wav(3))).await.unwrap();
    assert_eq!(recv(&mut ws).await["sample_count"], 3);
    ws.send(Message::binary(wav(4))).await.unwrap();
    assert_eq!(recv(&mut ws).await["sample_count"], 4);
    let again = recv(&mut ws).await;
    assert_eq!(again["error_code"], "VOICE_CLONE_FAILED");
    // A passing failure: the client hears that it will be tried again.
    assert_eq!(again["retryable"], true, "{again}");
    // Each of the two clone attempts was retried once (the provider retry policy).
    let calls = requests_to(&provider, "/v1/voices/add").await.len();
    assert_eq!(calls, 4);
    assert_eq!(app.user(&token).await.voice_id, None);
}

async fn an_unreachable_guide_is_ai_unavailable(db: Db) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai::strict(
            Api::Chat,
            openai::error(
                503,
                "server_error",
                None,
                None,
                "The engine is currently overloaded.",
            ),
        ))
        .mount(&provider)
        .await;
    let llm = format!("{}/v1", provider.uri());
    let app = spawn_app_with(
        db,
        &[
            "--llm-base-url",
            &llm,
            "--llm-api-key",
            "sk-test",
            "--provider-max-attempts",
            "2",
            "--provider-backoff-ms",
            "5",
        ],
    )
    .await;
    let token = app.new_account("offline-ai").await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(&mut ws, json!({"type": "start_conversation"})).await;
    let msg = recv(&mut ws).await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["error_code"], "AI_UNAVAILABLE");
    // Two attempts (the configured maximum), and the socket stays open.
    assert_eq!(provider.received_requests().await.unwrap().len(), 2);
    send(&mut ws, json!({"type": "user_message", "text": "안녕"})).await;
    assert_eq!(
        recv(&mut ws).await["error_code"],
        "CONVERSATION_NOT_STARTED"
    );
    // No empty conversation was left behind.
    let list = app
        .get("/api/v1/conversations", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(list["results"], json!([]));
}

async fn slow_requests_are_cut_off_with_503(db: Db) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai::strict(
            Api::Chat,
            chat_answer("늦었지?").set_delay(Duration::from_secs(5)),
        ))
        .mount(&provider)
        .await;
    let llm = format!("{}/v1", provider.uri());
    let app = spawn_app_with(
        db,
        &[
            "--llm-base-url",
            &llm,
            "--llm-api-key",
            "sk-test",
            "--request-timeout-secs",
            "1",
        ],
    )
    .await;
    let token = app.new_account("impatient").await;
    let reply = app
        .graphql(
            "mutation { startConversation { conversation { id } } }",
            json!({}),
            Some(&token),
        )
        .await;
    // In GraphQL's error shape, with the same code.
    assert_eq!(reply.status, 503);
    assert_eq!(gql_code(&reply.json()), "SERVICE_UNAVAILABLE");
    // Quick requests are unaffected.
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_ok(200);
}

/// Samples per account are capped (count and bytes): beyond the cap the socket answers
/// an `error` and nothing is stored. A failing clone is retried only once `threshold`
/// more samples came, with the newest `threshold` samples (not all, not on every one).
async fn voice_samples_are_capped_and_failed_clones_retry_sparingly(db: Db) {
    let provider = failing_voice_provider().await;
    let app = spawn_app_with(
        db,
        &[
            "--voice-base-url",
            &provider.uri(),
            "--voice-api-key",
            ELEVEN_KEY,
            "--provider-max-attempts",
            "1",
            "--voice-clone-samples",
            "2",
            "--voice-max-samples",
            "5",
        ],
    )
    .await;
    let token = app.new_account("many.samples").await;
    app.give_voice_consent(&token).await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    for n in 1..=5u8 {
        ws.send(Message::binary(wav(n))).await.unwrap();
        let progress = recv(&mut ws).await;
        assert_eq!(progress["type"], "voice_clone_progress", "{progress}");
        assert_eq!(progress["sample_count"], n);
        if n == 2 || n == 4 {
            let failed = recv(&mut ws).await;
            assert_eq!(failed["error_code"], "VOICE_CLONE_FAILED", "{failed}");
        }
    }
    ws.send(Message::binary(wav(6))).await.unwrap();
    let refused = recv(&mut ws).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["error_code"], "VALIDATION_ERROR", "{refused}");
    assert!(
        refused["error_message"].as_str().unwrap().contains("5개"),
        "{refused}"
    );
    // Five files on disk, five rows; two clone attempts (at 2 and 4), two files each.
    let user = app.user(&token).await;
    let dir = app
        .domain
        .config()
        .data_dir
        .join("voice-samples")
        .join(user.id.to_string());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 5);
    let clones: Vec<_> = provider
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v1/voices/add")
        .collect();
    assert_eq!(clones.len(), 2, "clone attempts");
    for clone in &clones {
        let body = String::from_utf8_lossy(&clone.body);
        assert_eq!(body.matches("name=\"files\"").count(), 2);
    }
    // Deleting the voice frees the places.
    let reply = app.delete("/api/v1/users/me/voice", Some(&token)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    ws.send(Message::binary(wav(7))).await.unwrap();
    assert_eq!(recv(&mut ws).await["sample_count"], 1);
    drop(ws);

    // The byte cap, on its own: 600-byte samples under a 1 KiB budget.
    let app = spawn_app_with(db, &["--voice-max-sample-bytes", "1024"]).await;
    let token = app.new_account("big.samples").await;
    app.give_voice_consent(&token).await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    let mut big = wav(1);
    big.resize(600, 0);
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await["sample_count"], 1);
    ws.send(Message::binary(big)).await.unwrap();
    let refused = recv(&mut ws).await;
    assert_eq!(refused["error_code"], "VALIDATION_ERROR", "{refused}");
    let user = app.user(&token).await;
    let dir = app
        .domain
        .config()
        .data_dir
        .join("voice-samples")
        .join(user.id.to_string());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

/// Issue 31's conversation, offline end to end: the guide answers what the child means
/// (never quoting the sentence back), and the story of the conversation is the child's —
/// its hero, place, problem and helper, in that order.
async fn the_offline_story_is_the_childs_story(db: Db) {
    let app = spawn_app_with(db, &["--worker", "true", "--worker-poll-ms", "50"]).await;
    let token = app.new_account("the.childs.story").await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(
        &mut ws,
        json!({"type": "start_conversation", "payload": {"child_name": "지우", "age": 5, "interests": ["공룡", "바다"]}}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "conversation_started");
    let turns = [
        ("아기 공룡 뚜뚜", "아기 공룡 뚜뚜가 주인공이구나"),
        (
            "바닷속 산호 마을에 살아",
            "뚜뚜는 바닷속 산호 마을에 사는구나",
        ),
        ("엄마를 잃어버렸어", "엄마를 꼭 다시 만나고 싶을 거야"),
        ("고래 아저씨가 도와줘", "고래 아저씨가 도와주다니"),
    ];
    for (line, understood) in turns {
        send(&mut ws, json!({"type": "user_message", "text": line})).await;
        let reply = recv(&mut ws).await;
        let text = reply["text"].as_str().unwrap();
        assert!(text.contains(understood), "{line} → {text}");
        assert!(!text.contains(&format!("\"{line}")), "quoted back: {text}");
    }
    send(
        &mut ws,
        json!({"type": "end_conversation", "payload": {"create_story": {"length": "medium"}}}),
    )
    .await;
    let assigned = recv(&mut ws).await;
    let story_id = assigned["story_id"].as_str().unwrap().to_string();
    let story = app.wait_finished(&token, &story_id).await;
    assert_eq!(story["status"], "completed", "{story}");
    assert_eq!(story["title"], "아기 공룡 뚜뚜와 고래 아저씨");
    let chapters: Vec<&str> = story["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    assert_eq!(chapters.len(), 5);
    // Each element in its chapter, in the order the child told them.
    let chapter_of = |needle: &str| {
        chapters
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("{needle} missing: {chapters:?}"))
    };
    assert_eq!(
        chapter_of("아기 공룡 뚜뚜는 바닷속 산호 마을에 살았어요"),
        0
    );
    let trouble = chapter_of("엄마를 잃어버렸어요");
    let help = chapter_of("고래 아저씨가 아기 공룡 뚜뚜를 도와주었어요");
    assert!(0 < trouble && trouble < help, "{chapters:?}");
    assert!(chapters[help..].concat().contains("엄마와 다시 만났어요"));
    assert!(
        chapters[0].contains("5살 지우가 들려준 이야기"),
        "{chapters:?}"
    );
}

/// `end_conversation` with `payload.create_story` makes the story of that conversation:
/// `story_id_assigned` comes before `conversation_ended`, and the story is the account's,
/// made from this conversation (the child's name and interests).
async fn ending_a_conversation_can_create_its_story(db: Db) {
    let app = spawn_app_with(db, &["--worker", "true", "--worker-poll-ms", "50"]).await;
    let token = app.new_account("story.at.the.end").await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(
        &mut ws,
        json!({"event": "start_conversation", "payload": {"child_name": "하린", "interests": ["고래", "바다"]}}),
    )
    .await;
    let started = recv(&mut ws).await;
    let conversation = started["conversation_id"].as_str().unwrap().to_string();
    send(
        &mut ws,
        json!({"type": "user_message", "text": "고래랑 헤엄쳤어"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "ai_response");
    // (A refused create_story is told and still ends the conversation: see
    // reliability::a_refused_create_story_still_ends_the_conversation.)
    send(
        &mut ws,
        json!({"event": "end_conversation", "payload": {"create_story": {"length": "short"}}}),
    )
    .await;
    let assigned = recv(&mut ws).await;
    assert_eq!(assigned["type"], "story_id_assigned", "{assigned}");
    let story_id = assigned["story_id"].as_str().unwrap().to_string();
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "conversation_ended", "conversation_id": conversation})
    );
    assert_eq!(closed(&mut ws).await, 1000);
    // The story is the account's and is written from the conversation.
    let story = app.wait_finished(&token, &story_id).await;
    assert_eq!(story["status"], "completed", "{story}");
    assert_eq!(story["chapters"].as_array().unwrap().len(), 3, "{story}");
    let text = story["chapters"].to_string();
    assert!(text.contains("하린"), "{text}");
    // Nobody else reaches it (contract: another account's story is 403).
    let other = app.new_account("someone.else").await;
    app.get(&format!("/api/v1/stories/{story_id}"), Some(&other))
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSION");
    // `payload: {}` (what the mobile app sends) just ends.
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(&mut ws, json!({"event": "start_conversation"})).await;
    let started = recv(&mut ws).await;
    send(&mut ws, json!({"event": "end_conversation", "payload": {}})).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "conversation_ended", "conversation_id": started["conversation_id"]})
    );
}

/// `n` bytes of 16-bit mono PCM: a quiet tone, different for each `seed`.
fn pcm(n: usize, seed: u8) -> Vec<u8> {
    (0..n / 2)
        .flat_map(|i| {
            let sample = ((i as f32 * (0.05 + f32::from(seed) * 0.01)).sin() * 3000.0) as i16;
            sample.to_le_bytes()
        })
        .collect()
}

/// Messages until the socket closes; returns them and the close code.
async fn until_closed(socket: &mut Socket) -> (Vec<Value>, u16) {
    let mut seen = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("closes within a minute");
        match frame {
            Some(Ok(Message::Text(t))) => seen.push(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(frame)))) => return (seen, u16::from(frame.code)),
            Some(Ok(Message::Close(None))) => return (seen, 1005),
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    }
}

/// The voice samples stored for an account, oldest first (by name they are random).
fn stored_samples(app: &TestApp, user: jjongal::vocabulary::UserId) -> Vec<Vec<u8>> {
    let dir = app
        .domain
        .config()
        .data_dir
        .join("voice-samples")
        .join(user.to_string());
    // (A `.part` file is a sample being written, not yet one.)
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_none_or(|x| x != "part"))
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The original mobile app's frames: `audio_config`, raw PCM in 16 KiB binary frames,
/// `end_conversation` with `payload: {}`. The PCM is the child talking (contract §6):
/// never a voice sample, even with the guardian's voice-cloning consent given, and not
/// kept; without speech-to-text the client is told once that it was not understood.
async fn the_childs_pcm_stream_is_never_cloned_or_kept(db: Db) {
    // Five messages a minute: the 16 KiB frames of one utterance count as one.
    let app = spawn_app_with(db, &["--ws-messages-per-minute", "6"]).await;
    let token = app.new_account("mobile.app").await;
    // Consent given, so that only the rule for children's speech keeps it out.
    app.give_voice_consent(&token).await;
    let user = app.user(&token).await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    ws.send(Message::text(
        r#"{"event":"start_conversation","payload":{"audio_config":{"sample_rate":16000,"encoding":"pcm_s16le"}}}"#,
    ))
    .await
    .unwrap();
    let started = recv(&mut ws).await;
    assert_eq!(started["type"], "conversation_started", "{started}");
    let first = pcm(40 * 16 * 1024, 1);
    for frame in first.chunks(16 * 1024) {
        ws.send(Message::binary(frame.to_vec())).await.unwrap();
    }
    // A text frame ends the utterance: (no speech-to-text here) the client hears once
    // that it was not understood; the text itself is answered as ever.
    send(&mut ws, json!({"type": "user_message", "text": "안녕"})).await;
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &Value| m["type"] == "ai_response") {
        seen.push(recv_any(&mut ws).await);
    }
    let second = pcm(3 * 16 * 1024 + 2, 2);
    for frame in second.chunks(16 * 1024) {
        ws.send(Message::binary(frame.to_vec())).await.unwrap();
    }
    ws.send(Message::text(
        r#"{"event":"end_conversation","payload":{}}"#,
    ))
    .await
    .unwrap();
    let (rest, code) = until_closed(&mut ws).await;
    assert_eq!(code, 1000);
    seen.extend(rest);
    let of = |kind: &str| seen.iter().filter(|m| m["type"] == kind).count();
    // Issue 29 defect 6: no error frames in a normal conversation; what this server
    // cannot do is said once.
    assert_eq!(of("error"), 0, "{seen:?}");
    let notices: Vec<&Value> = seen.iter().filter(|m| m["type"] == "notice").collect();
    assert_eq!(notices.len(), 1, "{seen:?}");
    assert_eq!(notices[0]["code"], "SPEECH_TO_TEXT_UNAVAILABLE");
    let told = notices[0]["message"].as_str().unwrap();
    assert!(
        told.contains("음성 인식") && told.contains("저장하지"),
        "{told}"
    );
    // Issue 33: the child's speech is no voice sample.
    assert_eq!(of("voice_clone_progress"), 0, "{seen:?}");
    assert_eq!(of("ai_response"), 1, "{seen:?}");
    assert_eq!(of("conversation_ended"), 1, "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|m| m["error_code"] == "RATE_LIMIT_EXCEEDED"),
        "{seen:?}"
    );

    // Broken speech is refused (an odd byte count); an utterance over 5 MB is cut at the
    // cap; speech cut off by the socket's end is dropped too.
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(
        &mut ws,
        json!({"type": "start_conversation", "payload": {"audio_config": {"sample_rate": 8000}}}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "conversation_started");
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    send(&mut ws, json!({"type": "user_message", "text": "하나"})).await;
    let odd = recv(&mut ws).await;
    assert_eq!(odd["error_code"], "INVALID_AUDIO", "{odd}");
    assert_eq!(recv(&mut ws).await["type"], "ai_response");
    for _ in 0..6 {
        ws.send(Message::binary(pcm(1024 * 1024, 3))).await.unwrap();
    }
    let big = recv(&mut ws).await;
    assert_eq!(big["error_code"], "PAYLOAD_TOO_LARGE", "{big}");
    send(&mut ws, json!({"type": "user_message", "text": "둘"})).await;
    assert_eq!(recv(&mut ws).await["type"], "ai_response");
    ws.send(Message::binary(pcm(2000, 4))).await.unwrap();
    ws.close(None).await.unwrap();
    let _ = until_closed(&mut ws).await;
    // Nothing of the child's voice is on disk, and no sample is counted.
    assert!(stored_samples(&app, user.id).is_empty());
    let voice = app
        .graphql(
            "query { me { voiceConsent { given } } }",
            json!({}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(
        voice["data"]["me"]["voiceConsent"]["given"], true,
        "{voice}"
    );
}

/// With `JJONGAL_STT_BASE_URL`, an utterance is transcribed by the provider (a real HTTP
/// mock) and answered exactly like `user_message`; a failing provider is `AI_UNAVAILABLE`
/// each time.
async fn utterances_are_transcribed_and_answered(db: Db) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(openai::strict(
            Api::Transcriptions,
            transcription_answer(" 공룡이 좋아 "),
        ))
        .up_to_n_times(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(openai::strict(
            Api::Transcriptions,
            openai::error(500, "server_error", None, None, "The server had an error."),
        ))
        .mount(&provider)
        .await;
    let stt = format!("{}/v1", provider.uri());
    let app = spawn_app_with(
        db,
        &[
            "--stt-base-url",
            &stt,
            "--stt-api-key",
            "stt-key-123",
            "--provider-max-attempts",
            "1",
        ],
    )
    .await;
    let token = app.new_account("speaking.child").await;
    // Consent given: the child's speech is still no voice sample.
    app.give_voice_consent(&token).await;
    let user = app.user(&token).await;
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    ws.send(Message::text(
        r#"{"event":"start_conversation","payload":{"audio_config":{"sample_rate":16000,"encoding":"pcm_s16le"}}}"#,
    ))
    .await
    .unwrap();
    let started = recv(&mut ws).await;
    let conversation = started["conversation_id"].as_str().unwrap().to_string();
    let speech = pcm(5 * 16 * 1024, 5);
    for frame in speech.chunks(16 * 1024) {
        ws.send(Message::binary(frame.to_vec())).await.unwrap();
    }
    ws.send(Message::text(
        r#"{"event":"end_conversation","payload":{}}"#,
    ))
    .await
    .unwrap();
    let (seen, code) = until_closed(&mut ws).await;
    assert_eq!(code, 1000);
    let answers: Vec<&Value> = seen.iter().filter(|m| m["type"] == "ai_response").collect();
    assert_eq!(answers.len(), 1, "{seen:?}");
    assert_eq!(answers[0]["user_text"], "공룡이 좋아");
    assert!(!seen.iter().any(|m| m["type"] == "error"), "{seen:?}");
    // Answered before the end.
    let position = |kind: &str| seen.iter().position(|m| m["type"] == kind).unwrap();
    assert!(position("ai_response") < position("conversation_ended"));
    // The child's words are in the conversation, as if typed.
    let transcript = app
        .get(
            &format!("/api/v1/conversations/{conversation}"),
            Some(&token),
        )
        .await
        .assert_ok(200);
    let child: Vec<&Value> = transcript["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "child")
        .collect();
    assert_eq!(child.len(), 1, "{transcript}");
    assert_eq!(child[0]["text"], "공룡이 좋아");
    // What the provider was sent: the WAV, the model, the language, the key.
    let calls = provider.received_requests().await.unwrap();
    assert_eq!(calls.len(), 1);
    let body = String::from_utf8_lossy(&calls[0].body);
    assert!(
        body.contains("name=\"model\"\r\n\r\ngpt-4o-mini-transcribe"),
        "{body:.300}"
    );
    assert!(body.contains("name=\"language\"\r\n\r\nko"));
    assert!(body.contains("filename=\"utterance.wav\""));
    assert!(body.contains("RIFF"));
    assert_eq!(
        calls[0].headers.get("authorization").unwrap(),
        "Bearer stt-key-123"
    );
    // A WAV file holding exactly what was sent, with a 16 kHz mono 16-bit header.
    let wav_at = calls[0].body.windows(4).position(|w| w == b"RIFF").unwrap();
    let wav = &calls[0].body[wav_at..];
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let u16_at = |i: usize| u16::from_le_bytes([wav[i], wav[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(wav[i..i + 4].try_into().unwrap());
    assert_eq!((u16_at(20), u16_at(22)), (1, 1), "PCM, mono");
    assert_eq!(u32_at(24), 16_000);
    assert_eq!(u32_at(28), 32_000);
    assert_eq!(u16_at(34), 16);
    assert_eq!(&wav[36..40], b"data");
    assert_eq!(u32_at(40) as usize, speech.len());
    assert_eq!(u32_at(4) as usize, 36 + speech.len());
    assert_eq!(&wav[44..44 + speech.len()], speech.as_slice());
    // Transcribed, then dropped: no voice sample, no progress.
    assert!(stored_samples(&app, user.id).is_empty());
    assert!(!seen.iter().any(|m| m["type"] == "voice_clone_progress"));

    // A failing provider: each utterance is told, the text frame still answered.
    let mut ws = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(
        &mut ws,
        json!({"type": "start_conversation", "payload": {"audio_config": {"sample_rate": 16000}}}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "conversation_started");
    for n in 0..2 {
        ws.send(Message::binary(pcm(4096, n))).await.unwrap();
        send(&mut ws, json!({"type": "user_message", "text": "또"})).await;
        let mut got = Vec::new();
        while !got.iter().any(|m: &Value| m["type"] == "ai_response") {
            got.push(recv(&mut ws).await);
        }
        let errors: Vec<_> = got.iter().filter(|m| m["type"] == "error").collect();
        assert_eq!(errors.len(), 1, "{got:?}");
        assert_eq!(errors[0]["error_code"], "AI_UNAVAILABLE");
    }
}

db_tests!(
    the_childs_pcm_stream_is_never_cloned_or_kept,
    utterances_are_transcribed_and_answered,
    ending_a_conversation_can_create_its_story,
    the_offline_story_is_the_childs_story,
    voice_samples_are_capped_and_failed_clones_retry_sparingly,
    slow_requests_are_cut_off_with_503,
    an_unreachable_guide_is_ai_unavailable,
    the_guide_uses_the_llm_and_the_cloned_voice,
    cloning_failures_are_reported_and_retried,
    a_full_conversation_becomes_a_story,
    bad_tokens_get_an_error_and_4401,
    protocol_errors_keep_the_socket_open,
    idle_sockets_close_with_1001_and_messages_are_rate_limited,
    flagged_words_are_never_repeated,
    a_graphql_subscriber_sees_what_the_socket_sees,
    voice_samples_clone_once_and_can_be_deleted,
    voice_cloning_needs_the_guardians_consent,
    without_a_cloning_provider_samples_are_kept,
    deleting_a_voice_the_provider_lost_succeeds,
);
