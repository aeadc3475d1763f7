//! A strict stand-in for ElevenLabs' voice API: `POST /v1/voices/add` (multipart),
//! `POST /v1/text-to-speech/{voice_id}`, `DELETE /v1/voices/{voice_id}`. Requests are
//! checked against the official schemas; a missing or wrong `xi-api-key` is `401`; a
//! voice it does not hold is `404 voice_not_found` (text-to-speech) or
//! `400 voice_does_not_exist` (delete), in ElevenLabs' `{"detail": {"status",
//! "message"}}` shape; a full account is `400 voice_limit_reached`. Answers are checked
//! against the official response schemas.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{multipart, schema};

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("a fixture is JSON")
}

static TTS: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/elevenlabs.text-to-speech.json"
    ))
});
static ADD: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/elevenlabs.voices-add.json"
    ))
});
static DELETE: LazyLock<Value> = LazyLock::new(|| {
    fixture(include_str!(
        "../../fixtures/provider-api/elevenlabs.voices-delete.json"
    ))
});

/// ElevenLabs' error shape.
pub fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"detail": {"status": code, "message": message}}))
}

/// The account at the fake: its key, its voices and how many it may hold.
#[derive(Clone)]
pub struct Account(Arc<Mutex<State>>);

struct State {
    key: String,
    voices: BTreeSet<String>,
    capacity: usize,
    made: u32,
}

impl Account {
    pub fn new(key: &str) -> Account {
        Account(Arc::new(Mutex::new(State {
            key: key.to_string(),
            voices: BTreeSet::new(),
            capacity: 10,
            made: 0,
        })))
    }

    pub fn voices(&self) -> Vec<String> {
        self.0.lock().unwrap().voices.iter().cloned().collect()
    }

    /// A voice the account holds (as if cloned earlier).
    pub fn add_voice(&self, id: &str) {
        self.0.lock().unwrap().voices.insert(id.to_string());
    }

    /// The key stops working (revoked): every call is `401`.
    pub fn revoke_key(&self) {
        self.set_key("revoked");
    }

    pub fn set_key(&self, key: &str) {
        self.0.lock().unwrap().key = key.to_string();
    }

    /// The provider loses a voice (deleted on its side).
    pub fn forget_voice(&self, id: &str) {
        self.0.lock().unwrap().voices.remove(id);
    }

    pub fn set_capacity(&self, n: usize) {
        self.0.lock().unwrap().capacity = n;
    }

    fn authorised(&self, request: &Request) -> Result<(), ResponseTemplate> {
        let given = request
            .headers
            .get("xi-api-key")
            .and_then(|v| v.to_str().ok());
        match given {
            Some(k) if k == self.0.lock().unwrap().key => Ok(()),
            Some(_) => Err(error(401, "invalid_api_key", "Invalid API key")),
            None => Err(error(
                401,
                "needs_authorization",
                "Neither authorization header nor xi-api-key received, please provide one.",
            )),
        }
    }
}

/// A 422 in FastAPI's shape, as ElevenLabs answers a request that breaks its schema.
fn unprocessable(problem: &str) -> ResponseTemplate {
    let body = json!({"detail": [{"loc": ["body"], "msg": problem, "type": "value_error"}]});
    let schema = &ADD["responses"]["422"]["application/json"];
    schema::check(schema, &body).expect("the 422 answer fits the schema");
    ResponseTemplate::new(422).set_body_json(body)
}

fn voice_in_path(request: &Request, prefix: &str) -> String {
    request.url.path().trim_start_matches(prefix).to_string()
}

/// Every endpoint, behind its checks; `answer` decides what a valid request gets.
pub struct Strict<R> {
    account: Account,
    answer: R,
}

pub fn strict<R: Respond>(account: &Account, answer: R) -> Strict<R> {
    Strict {
        account: account.clone(),
        answer,
    }
}

impl<R: Respond> Respond for Strict<R> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match self.check(request) {
            Ok(()) => self.answer.respond(request),
            Err(refusal) => {
                eprintln!(
                    "fake ElevenLabs refused {} {}",
                    request.method,
                    request.url.path()
                );
                refusal
            }
        }
    }
}

impl<R> Strict<R> {
    fn check(&self, request: &Request) -> Result<(), ResponseTemplate> {
        self.account.authorised(request)?;
        let p = request.url.path();
        if p == "/v1/voices/add" {
            let content_type = request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let parts =
                multipart::parse(content_type, &request.body).map_err(|e| unprocessable(&e))?;
            let schema = &ADD["request"]["multipart/form-data"];
            let form = multipart::as_json(&parts, schema);
            schema::check(schema, &form).map_err(|e| unprocessable(&e))?;
            if parts
                .iter()
                .filter(|p| p.name == "files")
                .any(|p| p.file_name.is_none() || p.data.is_empty())
            {
                return Err(unprocessable("every `files` part must be a non-empty file"));
            }
            let state = self.account.0.lock().unwrap();
            if state.voices.len() >= state.capacity {
                return Err(error(
                    400,
                    "voice_limit_reached",
                    "You have reached your maximum amount of custom voices.",
                ));
            }
        } else if let Some(voice) = p.strip_prefix("/v1/text-to-speech/") {
            let body: Value = serde_json::from_slice(&request.body)
                .map_err(|_| unprocessable("the body is not JSON"))?;
            let schema = &TTS["request"]["application/json"];
            schema::check(schema, &body).map_err(|e| unprocessable(&e))?;
            if body["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
                return Err(unprocessable("`text` must not be empty"));
            }
            let model = body["model_id"]
                .as_str()
                .unwrap_or("eleven_multilingual_v2");
            if body.get("language_code").is_some_and(|v| !v.is_null())
                && !(model.contains("turbo_v2_5") || model.contains("flash_v2_5"))
            {
                return Err(error(
                    400,
                    "unsupported_language_code",
                    "language_code is supported only by Turbo v2.5 and Flash v2.5.",
                ));
            }
            if let Some(format) = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "output_format")
            {
                let allowed = TTS["parameters"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["name"] == "output_format"))
                    .map(|p| p["schema"]["enum"].clone())
                    .unwrap_or(Value::Null);
                if !allowed
                    .as_array()
                    .is_some_and(|a| a.contains(&json!(format.1)))
                {
                    return Err(unprocessable("unknown output_format"));
                }
            }
            if !self.account.0.lock().unwrap().voices.contains(voice) {
                return Err(error(
                    404,
                    "voice_not_found",
                    &format!("A voice with the voice_id {voice} was not found."),
                ));
            }
        } else if let Some(voice) = p.strip_prefix("/v1/voices/")
            && !self.account.0.lock().unwrap().voices.contains(voice)
        {
            return Err(error(
                400,
                "voice_does_not_exist",
                &format!("A voice with voice_id {voice} does not exist."),
            ));
        }
        Ok(())
    }
}

/// Answers every valid clone with voice `id` (and the account then holds it).
pub struct ClonesAs {
    pub account: Account,
    pub id: String,
}

impl Respond for ClonesAs {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.account.add_voice(&self.id);
        let body = json!({"voice_id": self.id, "requires_verification": false});
        schema::check(&ADD["responses"]["200"]["application/json"], &body).expect("fits");
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// How ElevenLabs answers a valid request: a new voice, speech, a deletion.
pub struct Natural {
    account: Account,
}

impl Respond for Natural {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let p = request.url.path();
        if p == "/v1/voices/add" {
            let mut state = self.account.0.lock().unwrap();
            state.made += 1;
            let id = format!("clonedVoice{:04}", state.made);
            state.voices.insert(id.clone());
            let body = json!({"voice_id": id, "requires_verification": false});
            schema::check(&ADD["responses"]["200"]["application/json"], &body).expect("fits");
            ResponseTemplate::new(200).set_body_json(body)
        } else if p.starts_with("/v1/text-to-speech/") {
            ResponseTemplate::new(200)
                .insert_header("content-type", "audio/mpeg")
                .set_body_bytes(super::openai::MP3)
        } else {
            let voice = voice_in_path(request, "/v1/voices/");
            self.account.0.lock().unwrap().voices.remove(&voice);
            let body = json!({"status": "ok"});
            schema::check(&DELETE["responses"]["200"]["application/json"], &body).expect("fits");
            ResponseTemplate::new(200).set_body_json(body)
        }
    }
}

/// Mounts the three endpoints, strict and natural, for `account`; tests mount their own
/// answers at a higher priority (wrapped in [`strict`]).
pub async fn mount_all(server: &MockServer, account: &Account) {
    for (verb, route) in [
        ("POST", r"^/v1/voices/add$"),
        ("POST", r"^/v1/text-to-speech/[^/]+$"),
        ("DELETE", r"^/v1/voices/[^/]+$"),
    ] {
        let natural = Natural {
            account: account.clone(),
        };
        Mock::given(method(verb))
            .and(path_regex(route))
            .respond_with(strict(account, natural))
            .with_priority(10)
            .mount(server)
            .await;
    }
}
