//! The conversation protocol's messages (contract §6) as types: what the client sends
//! ([`ClientMessage`], read with serde once `event` is normalised to `type`) and what the
//! server sends ([`ServerMessage`], written with serde).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What `end_conversation`'s `payload.create_story` asks for.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoryRequest {
    #[serde(default)]
    pub theme: Option<String>,
    #[serde(default)]
    pub characters: Option<Vec<String>>,
    #[serde(default)]
    pub length: Option<String>,
}

/// `start_conversation`'s `payload.audio_config`: the client will send its speech as raw
/// PCM (16-bit little-endian, mono) in binary frames; frames up to the next text frame
/// are one utterance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AudioConfig {
    pub sample_rate: u32,
}

/// Sample rates accepted for raw PCM.
pub(crate) const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;

/// `start_conversation`'s payload.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StartPayload {
    pub child_name: Option<String>,
    pub age: Option<i32>,
    pub interests: Option<Vec<String>>,
    /// Continue this active conversation (after a socket closed).
    pub conversation_id: Option<String>,
    pub audio: Option<AudioConfig>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum ClientMessage {
    StartConversation(StartPayload),
    UserMessage(String),
    /// `end_conversation`, with `payload.create_story` when the client wants the story
    /// of this conversation made at once.
    EndConversation(Option<StoryRequest>),
    /// `end_conversation` whose payload is refused (the message names the field): the
    /// client hears why, and the conversation still ends (without a story).
    EndRefused(String),
}

/// The frame's shape, `type` read once.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame {
    StartConversation {
        #[serde(default)]
        payload: Option<Value>,
    },
    UserMessage {
        text: Value,
    },
    EndConversation {
        #[serde(default)]
        payload: Option<Value>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartFields {
    #[serde(default)]
    child_name: Option<String>,
    #[serde(default)]
    age: Option<i32>,
    #[serde(default)]
    interests: Option<Vec<String>>,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    audio_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioFields {
    sample_rate: Value,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    channels: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndFields {
    #[serde(default)]
    create_story: Option<Value>,
}

/// Reads the object `value` (`null` is an empty one) as `T`; a refusal names `path`
/// and says what serde found wrong. (Only an object: serde would also read a struct
/// from an array.)
fn read_object<T: DeserializeOwned>(path: &str, value: Value) -> Result<T, String> {
    let value = match value {
        Value::Null => Value::Object(serde_json::Map::new()),
        Value::Object(map) => Value::Object(map),
        _ => return Err(format!("`{path}`는 객체여야 합니다.")),
    };
    read(path, value)
}

/// Reads `value` as `T`; a refusal names the field at fault (`path.field`, found by
/// reading each field alone) and says what serde found wrong.
fn read<T: DeserializeOwned>(path: &str, value: Value) -> Result<T, String> {
    let fault = match serde_json::from_value::<T>(value.clone()) {
        Ok(read) => return Ok(read),
        Err(e) => e,
    };
    let field = match &value {
        Value::Object(map) => map
            .iter()
            .find(|(k, v)| {
                let alone = Value::Object([((*k).clone(), (*v).clone())].into_iter().collect());
                serde_json::from_value::<T>(alone)
                    .is_err_and(|e| !e.to_string().starts_with("missing field"))
            })
            .map(|(k, _)| k.clone()),
        _ => None,
    };
    let at = match (path.is_empty(), field) {
        (true, None) => return Err(format!("메시지가 올바르지 않습니다: {fault}")),
        (true, Some(f)) => f,
        (false, None) => path.to_string(),
        (false, Some(f)) => format!("{path}.{f}"),
    };
    Err(format!("`{at}`가 올바르지 않습니다: {fault}"))
}

/// Parses a text frame; `Err` carries a message for a `VALIDATION_ERROR`.
pub(crate) fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| "JSON 형식이 올바르지 않습니다.".to_string())?;
    let Value::Object(mut object) = value else {
        return Err("메시지는 JSON 객체여야 합니다.".into());
    };
    // `event` is the mobile app's name for `type` (contract §6): normalised here, once.
    if !object.contains_key("type")
        && let Some(kind) = object.remove("event")
    {
        object.insert("type".into(), kind);
    }
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string);
    let value = Value::Object(object);
    if let Some(path) = nul_path(&value, String::new()) {
        let problem = format!("`{path}`에 NUL 문자(U+0000)를 쓸 수 없습니다.");
        return match kind.as_deref() {
            Some("end_conversation") => Ok(ClientMessage::EndRefused(problem)),
            _ => Err(problem),
        };
    }
    match kind.as_deref() {
        None => return Err("`type`이 필요합니다.".into()),
        Some("start_conversation" | "user_message" | "end_conversation") => {}
        Some(other) => return Err(format!("알 수 없는 메시지 종류입니다: `{other}`")),
    }
    match read::<Frame>("", value)? {
        Frame::StartConversation { payload } => {
            let fields: StartFields = read_object("payload", payload.unwrap_or(Value::Null))?;
            let audio = match fields.audio_config {
                None | Some(Value::Null) => None,
                Some(config) => Some(audio_config(read_object("payload.audio_config", config)?)?),
            };
            Ok(ClientMessage::StartConversation(StartPayload {
                child_name: fields.child_name,
                age: fields.age,
                interests: fields.interests,
                conversation_id: fields.conversation_id,
                audio,
            }))
        }
        Frame::UserMessage { text } => match text {
            Value::String(t) if !t.trim().is_empty() => Ok(ClientMessage::UserMessage(t)),
            Value::String(_) => Err("`text`가 비어 있습니다.".into()),
            _ => Err("`text`(문자열)가 필요합니다.".into()),
        },
        Frame::EndConversation { payload } => Ok(match end_payload(payload) {
            Ok(story) => ClientMessage::EndConversation(story),
            Err(problem) => ClientMessage::EndRefused(problem),
        }),
    }
}

/// `end_conversation`'s payload: nothing, `{}`, or `{"create_story": {…}}`.
fn end_payload(payload: Option<Value>) -> Result<Option<StoryRequest>, String> {
    let fields: EndFields = read_object("payload", payload.unwrap_or(Value::Null))?;
    match fields.create_story {
        None | Some(Value::Null) => Ok(None),
        Some(story) => read_object("payload.create_story", story).map(Some),
    }
}

/// `payload.audio_config`: `sample_rate` (8000–48000, required), `encoding` (only
/// `pcm_s16le`, the default) and `channels` (only 1).
fn audio_config(fields: AudioFields) -> Result<AudioConfig, String> {
    let field = "payload.audio_config";
    let sample_rate = fields
        .sample_rate
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
        .filter(|r| SAMPLE_RATES.contains(r))
        .ok_or_else(|| {
            format!(
                "`{field}.sample_rate`는 {}에서 {} 사이의 정수(Hz)여야 합니다.",
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            )
        })?;
    if fields.encoding.as_deref().is_some_and(|e| e != "pcm_s16le") {
        return Err(format!(
            "`{field}.encoding`는 `pcm_s16le`만 지원합니다 (16비트 리틀 엔디언 PCM)."
        ));
    }
    if fields
        .channels
        .as_ref()
        .is_some_and(|c| c.as_u64() != Some(1))
    {
        return Err(format!("`{field}.channels`는 1(모노)만 지원합니다."));
    }
    Ok(AudioConfig { sample_rate })
}

/// The path of the first string (or key) holding NUL, which no text may hold (PostgreSQL
/// cannot store it; both backends refuse it alike).
fn nul_path(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then_some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_path(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(path)
            } else {
                nul_path(v, path)
            }
        }),
        _ => None,
    }
}

/// Server → client messages (contract §6; `notice` and the resume fields are this
/// service's additions, documented in the README's protocol section).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerMessage {
    ConversationStarted {
        conversation_id: String,
        text: String,
        audio_url: Option<String>,
        /// Present (true) when an active conversation was continued.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    AiResponse {
        text: String,
        audio_url: Option<String>,
        user_text: Option<String>,
        /// `ready`, `unavailable` or `timed_out` (why `audio_url` is null).
        audio_status: String,
    },
    ConversationEnded {
        conversation_id: String,
    },
    StoryIdAssigned {
        story_id: String,
    },
    VoiceCloneProgress {
        sample_count: i64,
        ready_for_cloning: bool,
    },
    VoiceCloneSuccess {
        voice_id: String,
        message: String,
    },
    /// What this server cannot do, said once per socket (not an error).
    Notice {
        code: String,
        message: String,
    },
    Error {
        error_code: String,
        error_message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retryable: Option<bool>,
    },
}

impl ServerMessage {
    pub(crate) fn error(code: crate::error::ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            error_code: code.as_str().to_string(),
            error_message: message.into(),
            retry_after: None,
            retryable: None,
        }
    }

    pub(crate) fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_may_ask_for_the_story() {
        let end = |payload: &str| {
            parse_client_message(&format!(
                r#"{{"event": "end_conversation", "payload": {payload}}}"#
            ))
        };
        assert_eq!(end("{}"), Ok(ClientMessage::EndConversation(None)));
        assert_eq!(end("null"), Ok(ClientMessage::EndConversation(None)));
        assert_eq!(
            end(r#"{"create_story": {}}"#),
            Ok(ClientMessage::EndConversation(
                Some(StoryRequest::default())
            ))
        );
        assert_eq!(
            end(
                r#"{"create_story": {"theme": "바다", "characters": ["고래"], "length": "short"}}"#
            ),
            Ok(ClientMessage::EndConversation(Some(StoryRequest {
                theme: Some("바다".into()),
                characters: Some(vec!["고래".into()]),
                length: Some("short".into()),
            })))
        );
        for (bad, names) in [
            (r#"{"create_story": {"colour": "red"}}"#, "colour"),
            (r#"{"create_story": {"theme": 5}}"#, "payload"),
            (r#"{"create_story": {"characters": "고래"}}"#, "payload"),
            (r#"{"create_story": {"characters": [1]}}"#, "payload"),
            (r#"{"create_story": []}"#, "payload"),
            (r#"{"story": {}}"#, "story"),
            (r#"{"create_story": {"theme": "a\u0000b"}}"#, "theme"),
            ("[]", "payload"),
        ] {
            // Refused, naming what is wrong — and the conversation still ends.
            match end(bad) {
                Ok(ClientMessage::EndRefused(m)) => {
                    assert!(m.contains(names) && m.contains('`'), "{bad}: {m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_mobile_apps_audio_config_is_understood() {
        let start = |config: &str| {
            parse_client_message(&format!(
                r#"{{"event": "start_conversation", "payload": {{"child_name": "민준", "audio_config": {config}}}}}"#
            ))
        };
        // The app's exact frame.
        assert_eq!(
            parse_client_message(
                r#"{"event":"start_conversation","payload":{"audio_config":{"sample_rate":16000,"encoding":"pcm_s16le"}}}"#
            ),
            Ok(ClientMessage::StartConversation(StartPayload {
                audio: Some(AudioConfig { sample_rate: 16000 }),
                ..StartPayload::default()
            }))
        );
        assert_eq!(
            start(r#"{"sample_rate": 48000, "channels": 1}"#),
            Ok(ClientMessage::StartConversation(StartPayload {
                child_name: Some("민준".into()),
                audio: Some(AudioConfig { sample_rate: 48000 }),
                ..StartPayload::default()
            }))
        );
        assert_eq!(
            start("null"),
            Ok(ClientMessage::StartConversation(StartPayload {
                child_name: Some("민준".into()),
                ..StartPayload::default()
            }))
        );
        for (bad, names) in [
            (r#"{"encoding": "pcm_s16le"}"#, "sample_rate"),
            (r#"{"sample_rate": 7999}"#, "sample_rate"),
            (r#"{"sample_rate": 48001}"#, "sample_rate"),
            (r#"{"sample_rate": 16000.5}"#, "sample_rate"),
            (r#"{"sample_rate": "16000"}"#, "sample_rate"),
            (r#"{"sample_rate": 16000, "encoding": "opus"}"#, "encoding"),
            (r#"{"sample_rate": 16000, "channels": 2}"#, "channels"),
            (r#"{"sample_rate": 16000, "bits": 16}"#, "bits"),
            ("16000", "payload"),
        ] {
            let err = start(bad).unwrap_err();
            assert!(err.contains(names), "{bad}: {err}");
        }
    }

    #[test]
    fn a_conversation_to_resume_is_named_in_the_payload() {
        assert_eq!(
            parse_client_message(
                r#"{"type": "start_conversation", "payload": {"conversation_id": "c-1"}}"#
            ),
            Ok(ClientMessage::StartConversation(StartPayload {
                conversation_id: Some("c-1".into()),
                ..StartPayload::default()
            }))
        );
        let err = parse_client_message(
            r#"{"type": "start_conversation", "payload": {"conversation_id": 7}}"#,
        )
        .unwrap_err();
        assert!(err.contains("payload"), "{err}");
    }

    #[test]
    fn nul_is_refused_wherever_it_is() {
        for frame in [
            r#"{"type": "user_message", "text": "a\u0000b"}"#,
            r#"{"type": "start_conversation", "payload": {"child_name": "\u0000"}}"#,
            r#"{"type": "start_conversation", "payload": {"interests": ["x", "y\u0000"]}}"#,
        ] {
            let err = parse_client_message(frame).unwrap_err();
            assert!(err.contains("NUL"), "{frame}: {err}");
        }
        let err = parse_client_message(
            r#"{"type": "start_conversation", "payload": {"interests": ["x", "y\u0000"]}}"#,
        )
        .unwrap_err();
        assert!(err.contains("`payload.interests[1]`"), "{err}");
    }

    #[test]
    fn parses_types_and_the_event_alias() {
        assert_eq!(
            parse_client_message(r#"{"type": "user_message", "text": "안녕"}"#),
            Ok(ClientMessage::UserMessage("안녕".into()))
        );
        assert_eq!(
            parse_client_message(r#"{"event": "end_conversation"}"#),
            Ok(ClientMessage::EndConversation(None))
        );
        assert!(matches!(
            parse_client_message(
                r#"{"event": "start_conversation", "payload": {"child_name": "민준"}}"#
            ),
            Ok(ClientMessage::StartConversation(_))
        ));
        for (bad, says) in [
            ("not json", "JSON"),
            ("[]", "객체"),
            (r#"{"text": "x"}"#, "`type`"),
            (r#"{"type": "dance"}"#, "`dance`"),
            (r#"{"type": "user_message"}"#, "text"),
            (r#"{"type": "user_message", "text": ""}"#, "text"),
            (r#"{"type": "user_message", "text": 5}"#, "text"),
            (r#"{"type": "start_conversation", "payload": 3}"#, "payload"),
            (
                r#"{"type": "start_conversation", "payload": {"nickname": "x"}}"#,
                "nickname",
            ),
            (
                r#"{"type": "start_conversation", "payload": {"age": "seven"}}"#,
                "payload",
            ),
        ] {
            let err = parse_client_message(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn server_messages_are_the_contracts_shapes() {
        let started = ServerMessage::ConversationStarted {
            conversation_id: "c".into(),
            text: "안녕".into(),
            audio_url: None,
            resumed: false,
        };
        assert_eq!(
            serde_json::to_value(&started).unwrap(),
            serde_json::json!({"type": "conversation_started", "conversation_id": "c", "text": "안녕", "audio_url": null})
        );
        let error = ServerMessage::error(crate::error::ErrorCode::InvalidToken, "x");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({"type": "error", "error_code": "INVALID_TOKEN", "error_message": "x"})
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::json;

        proptest! {
            /// Any text frame parses or is a validation message; nothing panics.
            #[test]
            fn arbitrary_frames_never_panic(text in any::<String>()) {
                let _ = parse_client_message(&text);
            }

            /// Arbitrary JSON values: objects with a known type parse, the rest is refused
            /// with a message.
            #[test]
            fn arbitrary_json_is_parsed_or_refused(value in json_value()) {
                match parse_client_message(&value.to_string()) {
                    Ok(_) => prop_assert!(value.get("type").or_else(|| value.get("event")).is_some()),
                    Err(reason) => prop_assert!(!reason.is_empty()),
                }
            }

            /// `user_message` keeps the text exactly; `event` means the same as `type`.
            #[test]
            fn user_messages_keep_their_text(text in any::<String>()) {
                let by_type = parse_client_message(&json!({"type": "user_message", "text": text}).to_string());
                let by_event = parse_client_message(&json!({"event": "user_message", "text": text}).to_string());
                prop_assert_eq!(&by_type, &by_event);
                if text.contains('\0') {
                    prop_assert!(by_type.unwrap_err().contains("NUL"));
                } else if text.trim().is_empty() {
                    prop_assert!(by_type.is_err());
                } else {
                    prop_assert_eq!(by_type, Ok(ClientMessage::UserMessage(text)));
                }
            }
        }

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                prop_oneof![
                    Just("start_conversation".to_string()),
                    Just("user_message".to_string()),
                    Just("end_conversation".to_string()),
                    any::<String>(),
                ]
                .prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                let keys = prop_oneof![
                    Just("type".to_string()),
                    Just("event".to_string()),
                    Just("text".to_string()),
                    Just("payload".to_string()),
                    Just("child_name".to_string()),
                    Just("age".to_string()),
                    any::<String>(),
                ];
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(keys, inner, 0..5)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }
    }
}
