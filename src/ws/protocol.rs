//! Client → server messages of the conversation protocol (contract §6): JSON objects
//! with `type` (or its alias `event`).

use serde_json::Value;

/// What `end_conversation`'s `payload.create_story` asks for.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StoryRequest {
    pub theme: Option<String>,
    pub characters: Option<Vec<String>>,
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

#[derive(Debug, PartialEq)]
pub(crate) enum ClientMessage {
    /// `start_conversation` with its payload (`child_name`, `age`, `interests`) and, when
    /// the client streams raw PCM, its `audio_config`.
    Start(Value, Option<AudioConfig>),
    /// `user_message` with its text.
    UserMessage(String),
    /// `end_conversation`, with `payload.create_story` when the client wants the story
    /// of this conversation made at once (`theme`, `characters`, `length`, all optional).
    End(Option<StoryRequest>),
    /// `end_conversation` whose payload is refused (the message names the field): the
    /// client hears why, and the conversation still ends (without a story).
    EndRefused(String),
}

/// Parses a text frame; `Err` carries a message for a `VALIDATION_ERROR`.
pub(crate) fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| "JSON 형식이 올바르지 않습니다.".to_string())?;
    let object = value.as_object().ok_or("메시지는 JSON 객체여야 합니다.")?;
    let kind = object
        .get("type")
        .or_else(|| object.get("event"))
        .and_then(Value::as_str);
    if let Some(path) = nul_path(&value, String::new()) {
        let problem = format!("`{path}`에 NUL 문자(U+0000)를 쓸 수 없습니다.");
        return match kind {
            Some("end_conversation") => Ok(ClientMessage::EndRefused(problem)),
            _ => Err(problem),
        };
    }
    let kind = kind.ok_or("`type`이 필요합니다.")?;
    match kind {
        "start_conversation" => {
            let mut payload = match object.get("payload") {
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(Value::Object(p)) => p.clone(),
                Some(_) => return Err("`payload`는 객체여야 합니다.".into()),
            };
            let audio = match payload.remove("audio_config") {
                None | Some(Value::Null) => None,
                Some(config) => Some(parse_audio_config(&config)?),
            };
            for key in payload.keys() {
                if !matches!(key.as_str(), "child_name" | "age" | "interests") {
                    return Err(format!("알 수 없는 필드입니다: `payload.{key}`"));
                }
            }
            Ok(ClientMessage::Start(Value::Object(payload), audio))
        }
        "user_message" => match object.get("text") {
            Some(Value::String(t)) if !t.trim().is_empty() => {
                Ok(ClientMessage::UserMessage(t.clone()))
            }
            Some(Value::String(_)) => Err("`text`가 비어 있습니다.".into()),
            _ => Err("`text`(문자열)가 필요합니다.".into()),
        },
        "end_conversation" => Ok(match parse_end(object.get("payload")) {
            Ok(story) => ClientMessage::End(story),
            Err(problem) => ClientMessage::EndRefused(problem),
        }),
        other => Err(format!("알 수 없는 메시지 종류입니다: `{other}`")),
    }
}

/// `payload.audio_config`: `sample_rate` (8000–48000, required), `encoding` (only
/// `pcm_s16le`, the default) and `channels` (only 1).
fn parse_audio_config(config: &Value) -> Result<AudioConfig, String> {
    let config = config
        .as_object()
        .ok_or("`payload.audio_config`는 객체여야 합니다.")?;
    let mut sample_rate = None;
    for (key, value) in config {
        let field = format!("payload.audio_config.{key}");
        match key.as_str() {
            "sample_rate" => {
                let rate = value
                    .as_u64()
                    .and_then(|r| u32::try_from(r).ok())
                    .filter(|r| SAMPLE_RATES.contains(r))
                    .ok_or_else(|| {
                        format!(
                            "`{field}`는 {}에서 {} 사이의 정수(Hz)여야 합니다.",
                            SAMPLE_RATES.start(),
                            SAMPLE_RATES.end()
                        )
                    })?;
                sample_rate = Some(rate);
            }
            "encoding" => {
                if value.as_str() != Some("pcm_s16le") {
                    return Err(format!(
                        "`{field}`는 `pcm_s16le`만 지원합니다 (16비트 리틀 엔디언 PCM)."
                    ));
                }
            }
            "channels" => {
                if value.as_u64() != Some(1) {
                    return Err(format!("`{field}`는 1(모노)만 지원합니다."));
                }
            }
            _ => return Err(format!("알 수 없는 필드입니다: `{field}`")),
        }
    }
    let sample_rate = sample_rate.ok_or("`payload.audio_config.sample_rate`가 필요합니다.")?;
    Ok(AudioConfig { sample_rate })
}

/// `end_conversation`'s payload: nothing, `{}`, or `{"create_story": {…}}`.
fn parse_end(payload: Option<&Value>) -> Result<Option<StoryRequest>, String> {
    let payload = match payload {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(p)) => p,
        Some(_) => return Err("`payload`는 객체여야 합니다.".into()),
    };
    if let Some(key) = payload.keys().find(|k| k.as_str() != "create_story") {
        return Err(format!("알 수 없는 필드입니다: `payload.{key}`"));
    }
    let request = match payload.get("create_story") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(r)) => r,
        Some(_) => return Err("`payload.create_story`는 객체여야 합니다.".into()),
    };
    let mut story = StoryRequest::default();
    for (key, value) in request {
        let field = format!("payload.create_story.{key}");
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("theme", Value::String(t)) => story.theme = Some(t.clone()),
            ("length", Value::String(l)) => story.length = Some(l.clone()),
            ("characters", Value::Array(items)) => {
                let names = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("`{field}`는 문자열 목록이어야 합니다."))?;
                story.characters = Some(names);
            }
            ("theme" | "length", _) => return Err(format!("`{field}`는 문자열이어야 합니다.")),
            ("characters", _) => return Err(format!("`{field}`는 문자열 목록이어야 합니다.")),
            _ => return Err(format!("알 수 없는 필드입니다: `{field}`")),
        }
    }
    Ok(Some(story))
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
        assert_eq!(end("{}"), Ok(ClientMessage::End(None)));
        assert_eq!(end("null"), Ok(ClientMessage::End(None)));
        assert_eq!(
            end(r#"{"create_story": {}}"#),
            Ok(ClientMessage::End(Some(StoryRequest::default())))
        );
        assert_eq!(
            end(
                r#"{"create_story": {"theme": "바다", "characters": ["고래"], "length": "short"}}"#
            ),
            Ok(ClientMessage::End(Some(StoryRequest {
                theme: Some("바다".into()),
                characters: Some(vec!["고래".into()]),
                length: Some("short".into()),
            })))
        );
        for bad in [
            r#"{"create_story": {"colour": "red"}}"#,
            r#"{"create_story": {"theme": 5}}"#,
            r#"{"create_story": {"characters": "고래"}}"#,
            r#"{"create_story": {"characters": [1]}}"#,
            r#"{"create_story": []}"#,
            r#"{"story": {}}"#,
            r#"{"create_story": {"theme": "a\u0000b"}}"#,
            "[]",
        ] {
            // Refused, naming what is wrong — and the conversation still ends.
            assert!(
                matches!(end(bad), Ok(ClientMessage::EndRefused(ref m)) if m.contains('`')),
                "{bad}: {:?}",
                end(bad)
            );
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
            Ok(ClientMessage::Start(
                serde_json::json!({}),
                Some(AudioConfig { sample_rate: 16000 })
            ))
        );
        assert_eq!(
            start(r#"{"sample_rate": 48000, "channels": 1}"#),
            Ok(ClientMessage::Start(
                serde_json::json!({"child_name": "민준"}),
                Some(AudioConfig { sample_rate: 48000 })
            ))
        );
        assert_eq!(
            start("null"),
            Ok(ClientMessage::Start(
                serde_json::json!({"child_name": "민준"}),
                None
            ))
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
            ("16000", "audio_config"),
        ] {
            let err = start(bad).unwrap_err();
            assert!(err.contains(names), "{bad}: {err}");
        }
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
            Ok(ClientMessage::End(None))
        );
        assert!(matches!(
            parse_client_message(
                r#"{"event": "start_conversation", "payload": {"child_name": "민준"}}"#
            ),
            Ok(ClientMessage::Start(_, None))
        ));
        for bad in [
            "not json",
            "[]",
            r#"{"text": "x"}"#,
            r#"{"type": "dance"}"#,
            r#"{"type": "user_message"}"#,
            r#"{"type": "user_message", "text": ""}"#,
            r#"{"type": "user_message", "text": 5}"#,
            r#"{"type": "start_conversation", "payload": 3}"#,
            r#"{"type": "start_conversation", "payload": {"nickname": "x"}}"#,
        ] {
            assert!(parse_client_message(bad).is_err(), "{bad}");
        }
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
