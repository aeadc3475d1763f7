//! Issue 29: the conversation socket keeps listening while a turn runs, answers every
//! Close, bounds the speech it holds, does not let narration hold a reply back, and lets
//! a conversation be resumed (and ends abandoned ones).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer};

use crate::db_tests;
use crate::fakes::openai::{self, Api, chat_answer, speech_answer};
use crate::helpers::ws::{Socket, open, send};
use crate::helpers::{Db, TestApp, spawn_app_with};

/// The next JSON message, skipping notices (what the server cannot do, said once).
async fn recv(ws: &mut Socket) -> Value {
    loop {
        let message = crate::helpers::ws::recv(ws).await;
        if message["type"] != "notice" {
            return message;
        }
    }
}

/// A guide that greets at once and takes `slow` over any message containing "천천히".
async fn slow_guide(slow: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_string_contains("천천히"))
        .respond_with(openai::strict(
            Api::Chat,
            chat_answer("음, 생각해 봤어!").set_delay(slow),
        ))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai::strict(
            Api::Chat,
            chat_answer("안녕! 무슨 이야기 할까?"),
        ))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

async fn app_with_guide(db: Db, guide: &MockServer, extra: &[&str]) -> TestApp {
    let llm = format!("{}/v1", guide.uri());
    let mut args = vec!["--llm-base-url", &llm, "--llm-api-key", "sk-test"];
    args.extend_from_slice(extra);
    spawn_app_with(db, &args).await
}

async fn started(app: &TestApp, token: &str) -> (Socket, String) {
    let mut ws = open(app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(&mut ws, json!({"type": "start_conversation"})).await;
    let hello = recv(&mut ws).await;
    assert_eq!(hello["type"], "conversation_started", "{hello}");
    (ws, hello["conversation_id"].as_str().unwrap().to_string())
}

/// The next frame of any kind (pongs included), within `secs`.
async fn next_frame(ws: &mut Socket, secs: u64) -> Message {
    tokio::time::timeout(Duration::from_secs(secs), ws.next())
        .await
        .expect("a frame in time")
        .expect("socket open")
        .expect("valid frame")
}

/// What `read` gives once `done` holds, or after 10 s (the caller asserts on it): for
/// what the server finishes after it answered.
async fn settled<T, F, Fut>(mut read: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut value = read().await;
    for _ in 0..100 {
        if done(&value) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        value = read().await;
    }
    value
}

async fn messages_of(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let body = app
        .get(&format!("/api/v1/conversations/{id}"), Some(token))
        .await
        .assert_ok(200);
    body["messages"].as_array().cloned().unwrap_or_default()
}

/// Defect 1: while the guide takes its time, the socket answers pings, queues the next
/// message (answered after, in order), refuses what is over the queue, and answers a
/// Close at once — the turn under way is stored, never sent after the close.
async fn the_socket_listens_while_the_guide_thinks(db: Db) {
    let guide = slow_guide(Duration::from_secs(4)).await;
    let app = app_with_guide(db, &guide, &["--ws-turn-queue", "1"]).await;
    let token = app.new_account("patient").await;
    let (mut ws, id) = started(&app, &token).await;

    send(
        &mut ws,
        json!({"type": "user_message", "text": "천천히 생각해 줘"}),
    )
    .await;
    // A ping while the turn runs: the pong comes long before the answer.
    ws.send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    match next_frame(&mut ws, 2).await {
        Message::Pong(payload) => assert_eq!(&payload[..], b"still there?"),
        other => panic!("expected the pong during the turn, got {other:?}"),
    }
    // One more waits its turn; the one after is refused at once.
    send(
        &mut ws,
        json!({"type": "user_message", "text": "그 다음은?"}),
    )
    .await;
    send(
        &mut ws,
        json!({"type": "user_message", "text": "또 그 다음은?"}),
    )
    .await;
    let refused = recv(&mut ws).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["error_code"], "RATE_LIMIT_EXCEEDED", "{refused}");
    let first = recv(&mut ws).await;
    assert_eq!(first["type"], "ai_response", "{first}");
    assert_eq!(first["user_text"], "천천히 생각해 줘");
    let second = recv(&mut ws).await;
    assert_eq!(second["user_text"], "그 다음은?", "{second}");

    // A Close during a turn is answered at once; the answer is stored, not sent.
    send(
        &mut ws,
        json!({"type": "user_message", "text": "천천히 하나 더"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await
    .unwrap();
    match next_frame(&mut ws, 2).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected the close answered during the turn, got {other:?}"),
    }
    let after = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    assert!(
        matches!(after, Ok(None)),
        "nothing after the close: {after:?}"
    );
    // The turn finishes on the server and is kept for a resume.
    let stored = settled(
        || messages_of(&app, &token, &id),
        |stored: &Vec<Value>| stored.len() == 7,
    )
    .await;
    assert_eq!(stored.len(), 7, "greeting + three turns: {stored:?}");
    assert_eq!(stored[5]["text"], "천천히 하나 더");
    assert_eq!(stored[6]["role"], "assistant");
}

/// Defect 2: a client that closes while its reply is queued still gets its Close
/// answered (it saw 1006 every time before).
async fn a_close_is_answered_even_with_a_reply_queued(db: Db) {
    let guide = slow_guide(Duration::from_secs(1)).await;
    let app = app_with_guide(db, &guide, &["--ws-messages-per-minute", "1000"]).await;
    let token = app.new_account("hasty").await;
    for round in 0..10 {
        let (mut ws, _) = started(&app, &token).await;
        send(&mut ws, json!({"type": "user_message", "text": "안녕"})).await;
        // The answer is on its way (or queued) as the close goes out.
        tokio::time::sleep(Duration::from_millis(5 * round)).await;
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(4000),
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        let answer = loop {
            match next_frame(&mut ws, 5).await {
                Message::Text(_) | Message::Ping(_) | Message::Pong(_) => continue,
                other => break other,
            }
        };
        match answer {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4000, "round {round}"),
            other => panic!("round {round}: expected the close echoed, got {other:?}"),
        }
        let end = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        assert!(matches!(end, Ok(None)), "round {round}: {end:?}");
    }
}

/// Raw PCM (16-bit little-endian) of `bytes` bytes.
fn pcm(bytes: usize, seed: u8) -> Vec<u8> {
    (0..bytes).map(|i| (i as u8).wrapping_mul(seed)).collect()
}

/// The PCM sizes of the WAV files `stt` was sent to transcribe, smallest first.
async fn transcribed_sizes(stt: &MockServer) -> Vec<usize> {
    let mut sizes: Vec<usize> = stt
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let at = r.body.windows(4).position(|w| w == b"RIFF")?;
            let wav = r.body.get(at..at + 44)?;
            Some(u32::from_le_bytes(wav[40..44].try_into().unwrap()) as usize)
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// Defect 3: raw-PCM speech held in memory is capped per account (across its sockets):
/// at the cap the utterance is cut where it is — what was accepted is heard (sent to
/// speech-to-text) — and the client is told.
async fn speech_in_memory_is_capped_per_account(db: Db) {
    let stt = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(openai::strict(
            Api::Transcriptions,
            openai::transcription_answer("공룡"),
        ))
        .mount(&stt)
        .await;
    let stt_url = format!("{}/v1", stt.uri());
    let app = spawn_app_with(
        db,
        &[
            "--speech-buffer-per-account",
            "65536",
            "--ws-messages-per-minute",
            "1000",
            "--stt-base-url",
            &stt_url,
            "--stt-api-key",
            "stt-key",
        ],
    )
    .await;
    let token = app.new_account("chatty").await;
    let start =
        json!({"type": "start_conversation", "payload": {"audio_config": {"sample_rate": 16000}}});
    let mut one = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    let mut two = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    for ws in [&mut one, &mut two] {
        send(ws, start.clone()).await;
        assert_eq!(recv(ws).await["type"], "conversation_started");
    }
    // 48 KiB held by the first socket.
    for _ in 0..3 {
        one.send(Message::binary(pcm(16 * 1024, 3))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second socket's first 16 KiB fit (64 KiB in all); the next frame does not.
    two.send(Message::binary(pcm(16 * 1024, 5))).await.unwrap();
    two.send(Message::binary(pcm(16 * 1024, 5))).await.unwrap();
    let told = recv(&mut two).await;
    assert_eq!(told["type"], "error", "{told}");
    assert_eq!(told["error_code"], "RATE_LIMIT_EXCEEDED", "{told}");
    // The cut utterance is heard and answered as far as it went.
    let answer = recv(&mut two).await;
    assert_eq!(answer["type"], "ai_response", "{answer}");
    assert_eq!(answer["user_text"], "공룡");
    // The rest of that utterance is dropped quietly; the first socket's is heard whole.
    two.send(Message::binary(pcm(16 * 1024, 5))).await.unwrap();
    send(
        &mut one,
        json!({"type": "user_message", "text": "다 말했어"}),
    )
    .await;
    assert_eq!(recv(&mut one).await["user_text"], "공룡");
    assert_eq!(recv(&mut one).await["user_text"], "다 말했어");
    let sizes = settled(
        || transcribed_sizes(&stt),
        |sizes: &Vec<usize>| sizes.len() == 2,
    )
    .await;
    assert_eq!(sizes, vec![16 * 1024, 48 * 1024]);
}

/// Defect 4: the reply does not wait for a slow narrator past its deadline; it goes
/// without audio and says why.
async fn replies_do_not_wait_for_slow_narration(db: Db) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai::strict(Api::Chat, chat_answer("그랬구나!")))
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/speech"))
        .respond_with(openai::strict(
            Api::Speech,
            speech_answer("mp3").set_delay(Duration::from_secs(30)),
        ))
        .mount(&provider)
        .await;
    let base = format!("{}/v1", provider.uri());
    let app = spawn_app_with(
        db,
        &[
            "--llm-base-url",
            &base,
            "--llm-api-key",
            "sk-test",
            "--speech-base-url",
            &base,
            "--speech-api-key",
            "sk-test",
            "--reply-narration-deadline-ms",
            "300",
        ],
    )
    .await;
    let token = app.new_account("no.wait").await;
    let (mut ws, _) = started(&app, &token).await;
    send(&mut ws, json!({"type": "user_message", "text": "안녕"})).await;
    let reply = recv(&mut ws).await;
    assert_eq!(reply["type"], "ai_response", "{reply}");
    assert_eq!(reply["text"], "그랬구나!");
    assert_eq!(reply["audio_url"], Value::Null, "{reply}");
    assert_eq!(reply["audio_status"], "timed_out", "{reply}");
}

/// Defect 5: a conversation goes on on a new socket (history kept, numbering
/// continued); only its owner may resume it, never an ended one; an abandoned one ends
/// after the idle time, and the open-conversations figure counts only what a socket
/// follows.
async fn conversations_resume_on_a_new_socket(db: Db) {
    let guide = slow_guide(Duration::from_millis(10)).await;
    let app = app_with_guide(
        db,
        &guide,
        &[
            "--ws-idle-timeout-secs",
            "1",
            "--conversation-idle-end-secs",
            "2",
        ],
    )
    .await;
    let token = app.new_account("returning").await;
    let (mut ws, id) = started(&app, &token).await;
    assert_eq!(open_conversations(&app).await, 1);
    send(
        &mut ws,
        json!({"type": "user_message", "text": "공룡 좋아"}),
    )
    .await;
    let heard = recv(&mut ws).await;
    drop(ws);

    let mut again = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(
        &mut again,
        json!({"type": "start_conversation", "payload": {"conversation_id": id}}),
    )
    .await;
    let resumed = recv(&mut again).await;
    assert_eq!(resumed["type"], "conversation_started", "{resumed}");
    assert_eq!(resumed["conversation_id"], id.as_str());
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["text"], heard["text"], "what the child heard last");
    send(
        &mut again,
        json!({"type": "user_message", "text": "또 왔어"}),
    )
    .await;
    assert_eq!(recv(&mut again).await["user_text"], "또 왔어");
    let stored = messages_of(&app, &token, &id).await;
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5], "{stored:?}");

    // Someone else's conversation: refused, and nothing changes.
    let other = app.new_account("stranger").await;
    let mut theirs = open(&app, &format!("/wss/v1/audio?token={other}"), None).await;
    send(
        &mut theirs,
        json!({"type": "start_conversation", "payload": {"conversation_id": id}}),
    )
    .await;
    assert_eq!(
        recv(&mut theirs).await["error_code"],
        "INSUFFICIENT_PERMISSION"
    );
    drop(theirs);

    // Abandoned: the idle time ends it, and no socket follows it any more.
    drop(again);
    let status = settled(
        || async {
            app.get(&format!("/api/v1/conversations/{id}"), Some(&token))
                .await
                .assert_ok(200)["status"]
                .clone()
        },
        |status: &Value| status == "ended",
    )
    .await;
    assert_eq!(status, "ended");
    assert_eq!(open_conversations(&app).await, 0);
    // An ended conversation cannot be resumed.
    let mut late = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(
        &mut late,
        json!({"type": "start_conversation", "payload": {"conversation_id": id}}),
    )
    .await;
    assert_eq!(
        recv(&mut late).await["error_code"],
        "CONVERSATION_NOT_STARTED"
    );
}

/// Two sockets on one conversation (the second resumed it) talking at once: every turn is
/// kept, numbered without gaps or repeats (a turn that lost its numbers to the other
/// renumbers), and each socket hears its own answers.
async fn two_sockets_on_one_conversation_keep_its_numbering(db: Db) {
    let app = spawn_app_with(db, &["--ws-messages-per-minute", "1000"]).await;
    let token = app.new_account("two.devices").await;
    let (mut one, id) = started(&app, &token).await;
    let mut two = open(&app, &format!("/wss/v1/audio?token={token}"), None).await;
    send(
        &mut two,
        json!({"type": "start_conversation", "payload": {"conversation_id": id}}),
    )
    .await;
    assert_eq!(recv(&mut two).await["resumed"], true);
    // Each socket hears its own answers from its turns and the other's through the
    // conversation's events: it reads until its own last one.
    async fn talk(ws: &mut Socket, side: &str) -> Vec<Value> {
        let mut heard = Vec::new();
        for i in 0..8 {
            let text = format!("{side} {i}");
            send(ws, json!({"type": "user_message", "text": text})).await;
            loop {
                let reply = recv(ws).await;
                assert_eq!(reply["type"], "ai_response", "{reply}");
                heard.push(reply["user_text"].clone());
                if reply["user_text"] == text.as_str() {
                    break;
                }
            }
        }
        heard
    }
    let (a, b) = tokio::join!(talk(&mut one, "하나"), talk(&mut two, "둘"));
    let own = |heard: &[Value], side: &str| {
        heard
            .iter()
            .filter(|t| t.as_str().is_some_and(|t| t.starts_with(side)))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mine = |side: &str| {
        (0..8)
            .map(|i| json!(format!("{side} {i}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        own(&a, "하나"),
        mine("하나"),
        "its own answers, once each, in order"
    );
    assert_eq!(own(&b, "둘"), mine("둘"));
    let stored = messages_of(&app, &token, &id).await;
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=33).collect::<Vec<i64>>(), "{stored:?}");
    // Each child message is followed by its own answer.
    for pair in stored[1..].chunks(2) {
        assert_eq!(pair[0]["role"], "child", "{pair:?}");
        assert_eq!(pair[1]["role"], "assistant", "{pair:?}");
    }
}

/// `jjongal_open_conversations` on `/metrics`, once it settles (sockets close
/// asynchronously).
async fn open_conversations(app: &TestApp) -> i64 {
    let read = || async {
        let text = reqwest::get(format!("{}/metrics", app.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("jjongal_open_conversations "))
            .expect("the gauge is exported")
            .parse::<i64>()
            .unwrap()
    };
    let mut last = read().await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = read().await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// A change of the account's role reaches its open sockets at once: the conversation
/// socket (4401) and `/graphql/ws` (4403), each opened as what the account was.
async fn a_role_change_closes_the_socket(db: Db) {
    let app = spawn_app_with(db, &[]).await;
    let token = app.new_account("promoted").await;
    let (mut ws, _) = started(&app, &token).await;
    let mut graphql = open(&app, "/graphql/ws", Some("graphql-transport-ws")).await;
    crate::helpers::ws::init(&mut graphql, Some(&token)).await;
    app.domain
        .ops()
        .set_role("promoted", jjongal::vocabulary::Role::Operator)
        .await
        .unwrap();
    let told = recv(&mut ws).await;
    assert_eq!(told["error_code"], "INVALID_TOKEN", "{told}");
    match next_frame(&mut ws, 5).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4401),
        other => panic!("expected 4401, got {other:?}"),
    }
    assert_eq!(crate::helpers::ws::closed(&mut graphql).await, 4403);
}

db_tests!(
    the_socket_listens_while_the_guide_thinks,
    a_close_is_answered_even_with_a_reply_queued,
    speech_in_memory_is_capped_per_account,
    replies_do_not_wait_for_slow_narration,
    conversations_resume_on_a_new_socket,
    two_sockets_on_one_conversation_keep_its_numbering,
    a_role_change_closes_the_socket,
);
