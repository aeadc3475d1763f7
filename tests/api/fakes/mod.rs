//! Strict fakes of the AI providers: real HTTP servers (wiremock) that check every
//! request against the providers' official API descriptions (copied into
//! `tests/fixtures/provider-api/`) and the rules they state, answer a request the real
//! provider would refuse with that provider's own error, and give only answers that
//! satisfy the official response schemas.

// A refusal is the provider's whole answer, so the checks return it as their error.
#![allow(clippy::result_large_err)]

pub mod elevenlabs;
pub mod multipart;
pub mod openai;
pub mod paced;
pub mod schema;

use wiremock::MockServer;

/// One server playing OpenAI (`/v1/chat/completions`, …) and ElevenLabs (`/v1/voices…`,
/// `/v1/text-to-speech/…`), every endpoint strict and answering naturally; tests mount
/// their own answers (wrapped in the fakes' `strict`) at a higher priority.
pub struct Fakes {
    pub server: MockServer,
    pub voices: elevenlabs::Account,
}

/// The ElevenLabs key the fake accepts.
pub const ELEVEN_KEY: &str = "test-key-voice";

impl Fakes {
    pub async fn start() -> Fakes {
        let server = MockServer::start().await;
        let voices = elevenlabs::Account::new(ELEVEN_KEY);
        openai::mount_all(&server).await;
        elevenlabs::mount_all(&server, &voices).await;
        Fakes { server, voices }
    }
}

/// Flags pointing every OpenAI-compatible capability at `openai_base` (each with its own
/// key, `test-key-<cap>`) and the voice capability at `voice_base` (the ElevenLabs key),
/// with the story worker on and fast retries.
pub fn provider_flags(openai_base: &str, voice_base: &str) -> Vec<String> {
    let mut flags = vec![];
    for cap in ["llm", "image", "speech", "moderation", "stt"] {
        flags.extend([format!("--{cap}-base-url"), openai_base.to_string()]);
        flags.extend([format!("--{cap}-api-key"), format!("test-key-{cap}")]);
    }
    flags.extend([
        "--voice-base-url".into(),
        voice_base.to_string(),
        "--voice-api-key".into(),
        ELEVEN_KEY.into(),
    ]);
    let fast = [
        "--worker",
        "true",
        "--worker-poll-ms",
        "50",
        "--provider-backoff-ms",
        "5",
        "--provider-max-attempts",
        "3",
    ];
    flags.extend(fast.map(String::from));
    flags
}

pub async fn requests_to(server: &MockServer, path: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == path)
        .collect()
}

/// The fakes themselves: what the providers refuse, they refuse (here, among others,
/// what the service sent before it learnt each rule), in the provider's own shape; what
/// the providers take, they take.
#[tokio::test]
async fn the_fakes_refuse_what_the_providers_refuse() {
    use serde_json::{Value, json};
    jjongal::providers::http::install_tls();
    let fakes = Fakes::start().await;
    let client = reqwest::Client::new();
    let base = fakes.server.uri();
    let post = async |path: &str, key: Option<&str>, body: Value| {
        let mut rb = client.post(format!("{base}{path}")).json(&body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        let response = rb.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let key = Some("sk-any");
    let chat = |extra: Value| {
        let mut b = json!({"model": "gpt-5.4-mini", "messages": [{"role": "system", "content": "Answer in JSON."}]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    // OpenAI.
    let refused = [
        (
            "/v1/images/generations",
            json!({"model": "gpt-image-1", "prompt": "p", "n": 1, "size": "1024x1024", "response_format": "b64_json"}),
            "unknown_parameter",
        ),
        (
            "/v1/images/generations",
            json!({"model": "dall-e-2", "prompt": "가".repeat(1001)}),
            "string_above_max_length",
        ),
        (
            "/v1/images/generations",
            json!({"model": "dall-e-3", "prompt": "p", "n": 2}),
            "invalid_value",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"temperature": 0.8, "response_format": {"type": "json_object"}})),
            "unsupported_value",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"temperature": 0.7, "max_tokens": 300})),
            "unsupported_parameter",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"foo": 1})),
            "unknown_parameter",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}),
            "invalid_value",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4.1", "messages": [{"role": "robot", "content": "hi"}]}),
            "invalid_value",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "gpt-4o-mini-tts", "input": "가".repeat(4097), "voice": "alloy"}),
            "invalid_value",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "tts-1", "input": "hi", "voice": "alloy", "instructions": "warm"}),
            "unsupported_parameter",
        ),
        (
            "/v1/moderations",
            json!({"model": "omni-moderation-latest"}),
            "invalid_value",
        ),
    ];
    for (path, body, code) in refused {
        assert_eq!(
            post(path, key, body.clone()).await,
            (400, code.to_string()),
            "{path} {body}"
        );
    }
    assert_eq!(
        post("/v1/moderations", None, json!({"input": "hi"}))
            .await
            .0,
        401
    );
    let taken = [
        (
            "/v1/images/generations",
            json!({"model": "gpt-image-1", "prompt": "p", "n": 1, "size": "1024x1024"}),
        ),
        (
            "/v1/images/generations",
            json!({"model": "dall-e-3", "prompt": "p", "response_format": "b64_json"}),
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_completion_tokens": 300})),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "llama3.1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 300, "temperature": 0.7}),
        ),
        (
            "/v1/audio/speech",
            json!({"model": "gpt-4o-mini-tts", "input": "hi", "voice": "alloy", "instructions": "warm", "response_format": "mp3"}),
        ),
        (
            "/v1/moderations",
            json!({"model": "omni-moderation-latest", "input": ["hi"]}),
        ),
    ];
    for (path, body) in taken {
        let response = client
            .post(format!("{base}{path}"))
            .bearer_auth("k")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path} {body}");
    }
    // ElevenLabs.
    let eleven = |rb: reqwest::RequestBuilder| async move {
        let response = rb.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (
            status,
            body["detail"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let tts = json!({"text": "안녕", "model_id": "eleven_multilingual_v2"});
    assert_eq!(
        eleven(
            client
                .delete(format!("{base}/v1/voices/nope"))
                .header("xi-api-key", ELEVEN_KEY)
        )
        .await,
        (400, "voice_does_not_exist".into())
    );
    assert_eq!(
        eleven(
            client
                .post(format!("{base}/v1/text-to-speech/nope"))
                .header("xi-api-key", ELEVEN_KEY)
                .json(&tts)
        )
        .await,
        (404, "voice_not_found".into())
    );
    assert_eq!(
        eleven(
            client
                .delete(format!("{base}/v1/voices/nope"))
                .header("xi-api-key", "wrong")
        )
        .await,
        (401, "invalid_api_key".into())
    );
    let no_files = reqwest::multipart::Form::new().text("name", "v");
    let response = client
        .post(format!("{base}/v1/voices/add"))
        .header("xi-api-key", ELEVEN_KEY)
        .multipart(no_files)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let form = reqwest::multipart::Form::new().text("name", "v").part(
        "files",
        reqwest::multipart::Part::bytes(b"RIFF\0\0\0\0WAVE".to_vec()).file_name("a.wav"),
    );
    let response = client
        .post(format!("{base}/v1/voices/add"))
        .header("xi-api-key", ELEVEN_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.json::<Value>().await.unwrap()["voice_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        eleven(
            client
                .post(format!("{base}/v1/text-to-speech/{id}"))
                .header("xi-api-key", ELEVEN_KEY)
                .json(&json!({"text": "안녕", "language_code": "ko"}))
        )
        .await,
        (400, "unsupported_language_code".into())
    );
    let spoken = client
        .post(format!("{base}/v1/text-to-speech/{id}"))
        .header("xi-api-key", ELEVEN_KEY)
        .json(&tts)
        .send()
        .await
        .unwrap();
    assert_eq!(spoken.status(), 200);
    let deleted = client
        .delete(format!("{base}/v1/voices/{id}"))
        .header("xi-api-key", ELEVEN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
}
