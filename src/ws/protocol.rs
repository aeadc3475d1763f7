//! Client → server messages of the conversation protocol (contract §6): JSON objects
//! with `type` (or its alias `event`).

use serde_json::Value;

#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    /// `start_conversation` with its payload (`child_name`, `age`, `interests`).
    Start(Value),
    /// `user_message` with its text.
    UserMessage(String),
    /// `end_conversation`.
    End,
}

/// Parses a text frame; `Err` carries a message for a `VALIDATION_ERROR`.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| "JSON 형식이 올바르지 않습니다.".to_string())?;
    let object = value.as_object().ok_or("메시지는 JSON 객체여야 합니다.")?;
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
        "end_conversation" => Ok(ClientMessage::End),
        other => Err(format!("알 수 없는 메시지 종류입니다: `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_and_the_event_alias() {
        assert_eq!(
            parse_client_message(r#"{"type": "user_message", "text": "안녕"}"#),
            Ok(ClientMessage::UserMessage("안녕".into()))
        );
        assert_eq!(
            parse_client_message(r#"{"event": "end_conversation"}"#),
            Ok(ClientMessage::End)
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
}
