//! Client → server messages of the conversation protocol (contract §6): JSON objects
//! with `type` (or its alias `event`).

use serde_json::Value;

/// What `end_conversation`'s `payload.create_story` asks for.
#[derive(Debug, Default, PartialEq)]
pub struct StoryRequest {
    pub theme: Option<String>,
    pub characters: Option<Vec<String>>,
    pub length: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    /// `start_conversation` with its payload (`child_name`, `age`, `interests`).
    Start(Value),
    /// `user_message` with its text.
    UserMessage(String),
    /// `end_conversation`, with `payload.create_story` when the client wants the story
    /// of this conversation made at once (`theme`, `characters`, `length`, all optional).
    End(Option<StoryRequest>),
}

/// Parses a text frame; `Err` carries a message for a `VALIDATION_ERROR`.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| "JSON 형식이 올바르지 않습니다.".to_string())?;
    let object = value.as_object().ok_or("메시지는 JSON 객체여야 합니다.")?;
    if let Some(path) = nul_path(&value, String::new()) {
        return Err(format!("`{path}`에 NUL 문자(U+0000)를 쓸 수 없습니다."));
    }
    let kind = object
        .get("type")
        .or_else(|| object.get("event"))
        .and_then(Value::as_str)
        .ok_or("`type`이 필요합니다.")?;
    match kind {
        "start_conversation" => {
            let payload = match object.get("payload") {
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => return Err("`payload`는 객체여야 합니다.".into()),
            };
            for key in payload.as_object().into_iter().flat_map(|p| p.keys()) {
                if !matches!(key.as_str(), "child_name" | "age" | "interests") {
                    return Err(format!("알 수 없는 필드입니다: `payload.{key}`"));
                }
            }
            Ok(ClientMessage::Start(payload))
        }
        "user_message" => match object.get("text") {
            Some(Value::String(t)) if !t.trim().is_empty() => {
                Ok(ClientMessage::UserMessage(t.clone()))
            }
            Some(Value::String(_)) => Err("`text`가 비어 있습니다.".into()),
            _ => Err("`text`(문자열)가 필요합니다.".into()),
        },
        "end_conversation" => parse_end(object.get("payload")).map(ClientMessage::End),
        other => Err(format!("알 수 없는 메시지 종류입니다: `{other}`")),
    }
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
            "[]",
        ] {
            assert!(end(bad).is_err(), "{bad}");
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
            Ok(ClientMessage::Start(_))
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
