//! Reading a REST request: the JSON body and the query string, each checked against the
//! schema the OpenAPI document publishes for it (the `jsonschema` crate) before it is
//! deserialised into the operation's type. Refusals are the contract's Korean messages,
//! built from the validator's typed error kinds and naming REST fields — no GraphQL
//! argument, type or English text reaches the client.
//!
//! The published schema states every rule; the door refuses what makes a request
//! unreadable — unknown or missing fields, wrong types (an integer no 32-bit field holds
//! among them), values outside a list, a query parameter outside its range — and leaves
//! the value rules (lengths, patterns, a body's ranges, `guardian_consent: true`) to the
//! domain, which answers them in the same words for GraphQL and REST.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{JsonType, ValidationError, Validator};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::ErrorCode;
use crate::http::envelope::RestError;

/// Where a checked value came from: refusals name a body field or a query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Body,
    Query,
}

/// A published schema compiled once at start-up, with what its refusals need to say.
pub(crate) struct Checker {
    validator: Validator,
    place: Place,
    /// For query strings: the parameters and their schemas (`properties`).
    parameters: Map<String, Value>,
}

impl Checker {
    /// The body checker for the component schema `name` of `components` (the document's
    /// `components.schemas`, so `$ref`s resolve as they do in the published document).
    pub(crate) fn body(name: &str, components: &Value) -> Checker {
        let root = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": {"schemas": components},
        });
        Checker {
            validator: compile(&root, name),
            place: Place::Body,
            parameters: Map::new(),
        }
    }

    /// The query-string checker for the published parameters (OpenAPI `Parameter`s as
    /// JSON: `name` and `schema`); no other parameter is accepted.
    pub(crate) fn query(parameters: &[Value], components: &Value) -> Checker {
        let properties: Map<String, Value> = parameters
            .iter()
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["schema"].clone())))
            .collect();
        let root = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": properties,
            "components": {"schemas": components},
        });
        Checker {
            validator: compile(&root, "query"),
            place: Place::Query,
            parameters: properties,
        }
    }

    /// Reads a JSON body into `T`: size (413), content type, syntax, duplicate keys and
    /// text limits, then the published schema (400).
    pub(crate) fn read_body<T: DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
        max_text: usize,
    ) -> Result<T, RestError> {
        let value = Value::Object(read_json_object(headers, body, max_text)?);
        self.check(&value)?;
        deserialise(integral(value))
    }

    /// Reads a query string into `T`: each declared parameter at most once, non-empty,
    /// percent-decoded, then the published schema (400).
    pub(crate) fn read_query<T: DeserializeOwned>(
        &self,
        query: Option<&str>,
    ) -> Result<T, RestError> {
        let value = Value::Object(self.query_values(query)?);
        self.check(&value)?;
        deserialise(value)
    }

    /// The query string's parameters as JSON values: integers where the parameter's
    /// schema says integer (anything else stays a string, for the schema to refuse).
    fn query_values(&self, query: Option<&str>) -> Result<Map<String, Value>, RestError> {
        let mut values = Map::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(name), Some(value)) = (form_decode(raw_name), form_decode(raw_value)) else {
                return Err(RestError::validation("쿼리 문자열을 해석할 수 없습니다."));
            };
            // An unknown name is what is wrong with it, whatever its value.
            if !self.parameters.contains_key(&name) {
                return Err(RestError::validation(format!(
                    "알 수 없는 쿼리 파라미터입니다: `{name}`"
                )));
            }
            if values.contains_key(&name) {
                return Err(RestError::validation(format!(
                    "`{name}` 파라미터가 여러 번 주어졌습니다."
                )));
            }
            if value.is_empty() {
                return Err(RestError::validation(format!(
                    "`{name}` 파라미터의 값이 비어 있습니다."
                )));
            }
            if value.contains('\0') {
                return Err(RestError::validation(nul_message(&name)));
            }
            let integer = self
                .parameters
                .get(&name)
                .is_some_and(|schema| says_type(schema, "integer"));
            let value = match value.parse::<i64>() {
                Ok(n) if integer => Value::from(n),
                _ => Value::String(value),
            };
            values.insert(name, value);
        }
        Ok(values)
    }

    /// Checks `value` against the published schema; the refusal is the most telling
    /// failure (an unknown field before a missing one before a wrong value).
    fn check(&self, value: &Value) -> Result<(), RestError> {
        let refusal = self
            .validator
            .iter_errors(value)
            .filter_map(|error| {
                let rank = self.rank(&error)?;
                Some((rank, error))
            })
            .min_by_key(|(rank, _)| *rank);
        match refusal {
            None => Ok(()),
            Some((_, error)) => Err(RestError::validation(self.message(&error))),
        }
    }

    /// The contract's words for one failure.
    fn message(&self, error: &ValidationError<'_>) -> String {
        let at = field_path(error);
        let named = |name: &str| -> String {
            if at.is_empty() {
                name.to_string()
            } else {
                format!("{at}.{name}")
            }
        };
        match (self.place, error.kind()) {
            (Place::Body, ValidationErrorKind::AdditionalProperties { unexpected }) => format!(
                "알 수 없는 필드입니다: `{}`",
                named(unexpected.first().map_or("", String::as_str))
            ),
            (Place::Query, ValidationErrorKind::AdditionalProperties { unexpected }) => format!(
                "알 수 없는 쿼리 파라미터입니다: `{}`",
                unexpected.first().map_or("", String::as_str)
            ),
            (_, ValidationErrorKind::Required { property }) => format!(
                "필수 필드가 누락되었습니다: `{}`",
                named(property.as_str().unwrap_or_default())
            ),
            (Place::Body, ValidationErrorKind::Enum { options }) => format!(
                "`{at}` 필드의 값이 올바르지 않습니다 ({} 중 하나).",
                listed(options)
            ),
            (Place::Query, ValidationErrorKind::Enum { options }) => {
                format!("`{at}`는 {} 중 하나여야 합니다.", listed(options))
            }
            (Place::Body, ValidationErrorKind::Type { kind }) if expects(kind, JsonType::Array) => {
                format!("`{at}` 필드는 배열이어야 합니다.")
            }
            (Place::Body, ValidationErrorKind::Type { kind }) => {
                format!(
                    "`{at}` 필드의 값이 올바르지 않습니다 ({}).",
                    type_word(kind)
                )
            }
            (Place::Query, ValidationErrorKind::Type { kind }) => {
                format!("`{at}`는 {}여야 합니다.", type_word(kind))
            }
            (
                Place::Query,
                ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. },
            ) => {
                let schema = self.parameters.get(&at);
                let bound = |key: &str| {
                    schema
                        .and_then(|s| s.get(key))
                        .map_or_else(String::new, Value::to_string)
                };
                format!(
                    "`{at}`는 {}~{} 사이여야 합니다.",
                    bound("minimum"),
                    bound("maximum")
                )
            }
            // Only an integer no 32-bit field holds gets here (`rank`).
            (
                Place::Body,
                ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. },
            ) => format!("`{at}` 필드의 값이 올바르지 않습니다 (정수)."),
            // `rank` lets no other kind through.
            _ => "요청의 형식이 올바르지 않습니다.".into(),
        }
    }
}

fn compile(root: &Value, name: &str) -> Validator {
    jsonschema::options()
        .build(root)
        .unwrap_or_else(|e| panic!("the published schema of {name} does not compile: {e}"))
}

impl Checker {
    /// Which failures the door refuses, most telling first; the others are the
    /// domain's (`None`). A body's ranges are the domain's too (so GraphQL and REST say
    /// the same), except an integer no 32-bit field can hold: that is a wrong type.
    fn rank(&self, error: &ValidationError<'_>) -> Option<u8> {
        let beyond_i32 = || {
            error
                .instance()
                .as_i64()
                .is_none_or(|n| i32::try_from(n).is_err())
        };
        match error.kind() {
            ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. }
                if self.place == Place::Body && !beyond_i32() =>
            {
                None
            }
            kind => rank(kind),
        }
    }
}

/// The order in which failures are told, most telling first; `None` for the kinds the
/// door leaves to the domain.
fn rank(kind: &ValidationErrorKind) -> Option<u8> {
    Some(match kind {
        ValidationErrorKind::AdditionalProperties { .. } => 0,
        ValidationErrorKind::Required { .. } => 1,
        // A list of words (`short, medium, long`); `[true]` (`guardian_consent`) is a
        // value rule, the domain's.
        ValidationErrorKind::Enum { options }
            if options
                .as_array()
                .is_some_and(|o| o.iter().all(Value::is_string)) =>
        {
            2
        }
        ValidationErrorKind::Type { .. } => 3,
        ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. } => 4,
        _ => return None,
    })
}

/// The REST path of the failing value: `user_preferences.characters[0]`.
fn field_path(error: &ValidationError<'_>) -> String {
    let mut out = String::new();
    for segment in error.instance_path().segments() {
        match segment {
            LocationSegment::Property(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&name);
            }
            LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The values of an `enum` keyword, as REST spells them.
fn listed(options: &Value) -> String {
    options
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn expects(kind: &TypeKind, ty: JsonType) -> bool {
    match kind {
        TypeKind::Single(t) => *t == ty,
        TypeKind::Multiple(set) => set.contains(ty),
    }
}

/// What a value must be, in words a REST client understands.
fn type_word(kind: &TypeKind) -> &'static str {
    let expected = match kind {
        TypeKind::Single(t) => Some(*t),
        TypeKind::Multiple(set) => set.iter().find(|t| *t != JsonType::Null),
    };
    match expected {
        Some(JsonType::Integer) => "정수",
        Some(JsonType::Number) => "숫자",
        Some(JsonType::String) => "문자열",
        Some(JsonType::Boolean) => "true 또는 false",
        Some(JsonType::Object) => "객체",
        Some(JsonType::Array) => "배열",
        _ => "올바른 형식",
    }
}

/// Whether a parameter's schema says `type: <ty>` (alone or with `null`).
fn says_type(schema: &Value, ty: &str) -> bool {
    match &schema["type"] {
        Value::String(t) => t == ty,
        Value::Array(types) => types.iter().any(|t| t == ty),
        _ => false,
    }
}

/// A value the published schema accepted but the type did not: the two disagree, which
/// is the service's fault (logged), answered as a plain refusal.
fn deserialise<T: DeserializeOwned>(value: Value) -> Result<T, RestError> {
    serde_json::from_value(value).map_err(|e| {
        tracing::error!(error = %e, "a request the published schema accepts does not deserialise");
        RestError::validation("요청의 형식이 올바르지 않습니다.")
    })
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space,
/// percent-escapes must make UTF-8.
fn form_decode(s: &str) -> Option<String> {
    crate::media::percent_decode(&s.replace('+', " "))
}

/// Reads a JSON object body: size (413), content type, syntax and text limits (400).
fn read_json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_text: usize,
) -> Result<Map<String, Value>, RestError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RestError::code(ErrorCode::PayloadTooLarge)
        } else {
            RestError::validation("요청 본문을 읽을 수 없습니다.")
        }
    })?;
    if bytes.is_empty() {
        return Err(RestError::validation("JSON 요청 본문이 필요합니다."));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(RestError::validation(
            "Content-Type은 application/json이어야 합니다.",
        ));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| RestError::validation(format!("JSON 형식이 올바르지 않습니다: {e}")))?;
    let Value::Object(object) = value else {
        return Err(RestError::validation("요청 본문은 JSON 객체여야 합니다."));
    };
    // JSON keeps the last of two equal keys; a body that says a field twice is
    // ambiguous, and refused as query strings and GraphQL refuse it.
    if let Some(path) = duplicate_key(&bytes) {
        return Err(RestError::validation(format!(
            "`{path}` 필드가 두 번 나옵니다."
        )));
    }
    check_text_lengths(&object, "", max_text)?;
    Ok(object)
}

/// The path of the first key that appears twice in one object of `json` (valid JSON).
fn duplicate_key(json: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Option<String>>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: format!("{}[{i}]", self.path),
                    found: self.found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) && self.found.borrow().is_none() {
                    *self.found.borrow_mut() = Some(path.clone());
                }
                map.next_value_seed(Walk {
                    path,
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    Walk {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut de)
    .ok()?;
    found.into_inner()
}

/// NUL (U+0000) is refused in every text: PostgreSQL cannot store it in `text`, and no
/// story or name needs it — so both backends refuse it the same way, up front.
pub(crate) fn nul_message(path: &str) -> String {
    format!("`{path}` 필드에 NUL 문자(U+0000)를 쓸 수 없습니다.")
}

/// Any string over `max_text` characters (or holding NUL) is a validation error naming its
/// field.
fn check_text_lengths(
    object: &Map<String, Value>,
    prefix: &str,
    max: usize,
) -> Result<(), RestError> {
    fn walk(value: &Value, path: &str, max: usize) -> Result<(), RestError> {
        match value {
            Value::String(s) if s.chars().count() > max => Err(RestError::validation(format!(
                "`{path}` 필드는 {max}자를 넘을 수 없습니다."
            ))),
            Value::String(s) if s.contains('\0') => Err(RestError::validation(nul_message(path))),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| walk(v, &format!("{path}[{i}]"), max)),
            Value::Object(map) => check_text_lengths(map, path, max),
            _ => Ok(()),
        }
    }
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        walk(value, &path, max)?;
    }
    Ok(())
}

/// JSON does not tell `7` from `7.0` (JSON Schema calls both integers); serde's `i32`
/// does. A number with no fraction becomes an integer, at any depth.
fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, integral(value)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::accounts::SignUpInput;
    use crate::graphql::stories::CreateStoryInput;

    #[test]
    fn a_key_said_twice_is_found_with_its_path() {
        let dup = |j: &str| duplicate_key(j.as_bytes());
        assert_eq!(dup(r#"{"a": 1, "a": 2}"#).as_deref(), Some("a"));
        assert_eq!(
            dup(r#"{"a": {"b": 1, "c": [{"d": 1, "d": 1}]}}"#).as_deref(),
            Some("a.c[0].d")
        );
        assert_eq!(dup(r#"{"a": {"b": 1}, "c": {"b": 2}}"#), None);
        assert_eq!(dup(r#"{"a": [1, 2, {"x": null}]}"#), None);
    }

    #[test]
    fn integral_numbers_become_integers() {
        let out = integral(json!({"age": 19.0, "ratio": 1.5, "list": [2.0, 3], "big": 1e300}));
        assert!(out["age"].is_i64());
        assert_eq!(out["ratio"], json!(1.5));
        assert_eq!(out["list"], json!([2, 3]));
        assert!(out["big"].is_f64());
    }

    fn body_checker(name: &str) -> Checker {
        Checker::body(name, &crate::rest::openapi::components())
    }

    fn refusal(checker: &Checker, body: Value) -> String {
        checker.check(&body).unwrap_err().message
    }

    #[test]
    fn bodies_are_refused_in_rest_words_by_the_published_schema() {
        let sign_up = body_checker("SignUpRequest");
        let person = json!({"user_id": "a", "password": "p", "name": "n", "age": 7, "guardian_consent": true});
        let with = |key: &str, value: Value| {
            let mut body = person.clone();
            body[key] = value;
            body
        };
        assert_eq!(
            refusal(&sign_up, with("foo_bar", json!(1))),
            "알 수 없는 필드입니다: `foo_bar`"
        );
        assert_eq!(
            refusal(&sign_up, with("age", json!("7"))),
            "`age` 필드의 값이 올바르지 않습니다 (정수)."
        );
        assert_eq!(
            refusal(&sign_up, with("age", json!(7.5))),
            "`age` 필드의 값이 올바르지 않습니다 (정수)."
        );
        assert_eq!(
            refusal(&sign_up, with("age", json!(1_000_000_000_000_i64))),
            "`age` 필드의 값이 올바르지 않습니다 (정수)."
        );
        // In range for the type, the domain says what the range is (as to GraphQL).
        assert!(sign_up.check(&with("age", json!(25))).is_ok());
        assert!(sign_up.check(&with("age", json!(0))).is_ok());
        let mut missing = person.clone();
        missing.as_object_mut().unwrap().remove("guardian_consent");
        assert_eq!(
            refusal(&sign_up, missing),
            "필수 필드가 누락되었습니다: `guardian_consent`"
        );
        // A field the type does not have is named first (a misspelt field), not what is
        // then missing.
        let mut misspelt = person.clone();
        let password = misspelt
            .as_object_mut()
            .unwrap()
            .remove("password")
            .unwrap();
        misspelt["pasword"] = password;
        assert_eq!(
            refusal(&sign_up, misspelt),
            "알 수 없는 필드입니다: `pasword`"
        );
        // Value rules (lengths, patterns, `true` only) are the domain's, in its words.
        assert!(
            sign_up
                .check(&with("guardian_consent", json!(false)))
                .is_ok()
        );
        assert!(sign_up.check(&with("user_id", json!("a"))).is_ok());

        let story = body_checker("CreateStoryRequest");
        let cases = [
            (
                json!({"user_preferences": {"theme": "숲", "length": "huge"}}),
                "`user_preferences.length` 필드의 값이 올바르지 않습니다 (short, medium, long 중 하나).",
            ),
            (
                json!({"user_preferences": {"theme": "숲", "length": null}}),
                "`user_preferences.length` 필드의 값이 올바르지 않습니다 (short, medium, long 중 하나).",
            ),
            (
                json!({"user_preferences": {}}),
                "필수 필드가 누락되었습니다: `user_preferences.theme`",
            ),
            (
                json!({"user_preferences": "숲"}),
                "`user_preferences` 필드의 값이 올바르지 않습니다 (객체).",
            ),
            (
                json!({"user_preferences": {"theme": "숲", "characters": [null]}}),
                "`user_preferences.characters[0]` 필드의 값이 올바르지 않습니다 (문자열).",
            ),
            (
                json!({"user_preferences": {"theme": "숲", "characters": "토끼"}}),
                "`user_preferences.characters` 필드는 배열이어야 합니다.",
            ),
            (
                json!({"user_preferences": {"theme": "숲", "colour": "red"}}),
                "알 수 없는 필드입니다: `user_preferences.colour`",
            ),
            (
                json!({"user_preferences": {"theme": "숲"}, "conversation_id": 5}),
                "`conversation_id` 필드의 값이 올바르지 않습니다 (문자열).",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(refusal(&story, body), expected);
        }
        let fine = json!({"user_preferences": {"theme": "숲", "characters": ["토끼"], "length": "short"}, "conversation_id": null});
        assert!(story.check(&fine).is_ok());
        // What passes is what the input type reads, defaults included.
        let read: CreateStoryInput =
            deserialise(json!({"user_preferences": {"theme": "숲"}})).unwrap();
        assert!(read.user_preferences.characters.is_empty());
        assert!(read.user_preferences.length == crate::graphql::stories::StoryLength::Medium);
        let read: SignUpInput = deserialise(integral(with("age", json!(19.0)))).unwrap();
        assert_eq!(read.age, 19);
    }
}

#[cfg(test)]
mod properties {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;
    use crate::rest::types::StoryListQuery;

    /// The default longest text (contract §2; `JJONGAL_MAX_TEXT_CHARS`).
    const MAX_TEXT_CHARS: usize = 10_000;

    fn list_checker() -> Checker {
        Checker::query(
            &crate::rest::openapi::query_parameters::<StoryListQuery>(),
            &crate::rest::openapi::components(),
        )
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h
    }

    proptest! {
        /// Any query string becomes the query type or a 400, never a panic.
        #[test]
        fn arbitrary_query_strings_read_or_400(query in any::<String>()) {
            if let Err(e) = list_checker().read_query::<StoryListQuery>(Some(&query)) {
                prop_assert_eq!(e.code, ErrorCode::ValidationError);
            }
        }

        /// Well-formed parameters arrive typed; a repeated one, a value outside the list
        /// and a page size outside 1–100 are refused in REST's words.
        #[test]
        fn declared_parameters_are_read_typed(
            size in 1i32..=100,
            status in prop::sample::select(vec!["pending", "in_progress", "completed", "failed"]),
            other in "[a-z_]{1,12}",
            outside in prop_oneof![i64::from(i32::MIN)..=0, 101..=i64::MAX],
            cursor in "[A-Za-z0-9_.-]{1,40}",
        ) {
            let checker = list_checker();
            let query = format!("page_size={size}&status={status}&start_cursor={cursor}");
            let read: StoryListQuery = checker.read_query(Some(&query)).unwrap();
            prop_assert_eq!(read.page_size, Some(size));
            prop_assert_eq!(serde_json::to_value(read.status).unwrap(), json!(status));
            prop_assert_eq!(read.start_cursor.as_deref(), Some(cursor.as_str()));
            let repeated = format!("status={status}&status={status}");
            let err = checker.read_query::<StoryListQuery>(Some(&repeated)).unwrap_err();
            prop_assert!(err.message.contains("여러 번"), "{}", err.message);
            if !["pending", "in_progress", "completed", "failed"].contains(&other.as_str()) {
                let err = checker.read_query::<StoryListQuery>(Some(&format!("status={other}"))).unwrap_err();
                prop_assert_eq!(err.message, "`status`는 pending, in_progress, completed, failed 중 하나여야 합니다.");
                let err = checker.read_query::<StoryListQuery>(Some(&format!("{other}x=1"))).unwrap_err();
                prop_assert_eq!(err.message, format!("알 수 없는 쿼리 파라미터입니다: `{other}x`"));
            }
            let err = checker.read_query::<StoryListQuery>(Some(&format!("page_size={outside}"))).unwrap_err();
            prop_assert_eq!(err.message, "`page_size`는 1~100 사이여야 합니다.");
            let err = checker.read_query::<StoryListQuery>(Some(&format!("page_size={size}.5"))).unwrap_err();
            prop_assert_eq!(err.message, "`page_size`는 정수여야 합니다.");
        }

        /// Percent-encoding round-trips through the decoder, even for non-ASCII values.
        #[test]
        fn percent_encoded_values_decode(value in "\\PC{1,20}") {
            prop_assume!(!value.contains('\0'));
            let encoded: String = value
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            let read: StoryListQuery = list_checker()
                .read_query(Some(&format!("start_cursor={encoded}")))
                .unwrap();
            prop_assert_eq!(read.start_cursor, Some(value));
        }

        /// Any body bytes: an object, a 400 or a 413 — never a panic.
        #[test]
        fn arbitrary_bodies_are_objects_or_400(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            match read_json_object(&json_headers(), Ok(Bytes::from(bytes.clone())), MAX_TEXT_CHARS) {
                Ok(object) => {
                    prop_assert_eq!(serde_json::from_slice::<Value>(&bytes).ok(), Some(Value::Object(object)))
                }
                Err(e) => prop_assert_eq!(e.code, ErrorCode::ValidationError),
            }
        }

        /// Text limits hold at any depth, naming the path.
        #[test]
        fn text_limits_name_the_field(key in "[a-z][a-z0-9_]{0,12}", depth in 0usize..6, long in any::<bool>()) {
            let text = "가".repeat(if long { MAX_TEXT_CHARS + 1 } else { MAX_TEXT_CHARS });
            let mut value = Value::String(text);
            for _ in 0..depth {
                value = json!({ key.clone(): [value] });
            }
            let body = json!({ key.clone(): value });
            match read_json_object(&json_headers(), Ok(Bytes::from(body.to_string())), MAX_TEXT_CHARS) {
                Ok(_) => prop_assert!(!long),
                Err(e) => {
                    prop_assert!(long);
                    prop_assert!(e.message.contains(&key), "{}", e.message);
                }
            }
        }
    }
}
