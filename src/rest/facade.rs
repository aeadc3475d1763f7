//! Turns the route table into axum routes. One generic handler: read and check the
//! body, build variables, execute the pre-parsed GraphQL document, shape the result into
//! the envelope, and derive the status from `extensions.code`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::parser::types::{BaseType, ExecutableDocument};
use async_graphql::{Request, Value as ConstValue, Variables};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::{Map, Value};

use super::names::to_camel;
use super::routes::{Body, Param, ParamKind, Route, Shape};
use super::shapes::InputShapes;
use crate::error::ErrorCode;
use crate::graphql::errors::{code_of, retry_after_of};
use crate::graphql::{AppSchema, RequestAuth};
use crate::http::envelope::{RestError, success};
use crate::http::errors::InternalCauses;

struct CompiledRoute {
    route: Route,
    document: ExecutableDocument,
    /// The GraphQL input type of `$input`, for routes that take a body.
    input_type: Option<String>,
    shapes: Arc<InputShapes>,
    max_text: usize,
}

/// Builds the `/api/v1` router from the table. Panics at start-up if a route's document
/// does not parse (a programming error, caught by every test).
pub(crate) fn router(schema: &AppSchema, max_text: usize) -> Router<AppSchema> {
    let shapes = Arc::new(InputShapes::from_sdl(&schema.sdl()));
    let mut by_path: BTreeMap<&'static str, Vec<Route>> = BTreeMap::new();
    for route in super::routes::table() {
        by_path.entry(route.path).or_default().push(route);
    }
    let mut router = Router::new();
    for (path, routes) in by_path {
        let mut allow: Vec<&str> = routes.iter().map(|r| r.method.as_str()).collect();
        if routes.iter().any(|r| r.method == Method::GET) {
            allow.push("HEAD");
        }
        let allow = allow.join(", ");
        let mut methods: MethodRouter<AppSchema> = MethodRouter::new();
        for route in routes {
            let document = async_graphql::parser::parse_query(&route.document)
                .unwrap_or_else(|e| panic!("route {} {}: {e}", route.method, route.path));
            let filter = MethodFilter::try_from(route.method.clone())
                .unwrap_or_else(|e| panic!("route {} {}: {e}", route.method, route.path));
            let input_type = document.operations.iter().find_map(|(_, op)| {
                op.node
                    .variable_definitions
                    .iter()
                    .find(|v| v.node.name.node == "input")
                    .map(|v| match &v.node.var_type.node.base {
                        BaseType::Named(name) => name.to_string(),
                        BaseType::List(_) => panic!("route {}: $input is a list", route.path),
                    })
            });
            let compiled = Arc::new(CompiledRoute {
                route,
                document,
                input_type,
                shapes: shapes.clone(),
                max_text,
            });
            methods = methods.merge(on(
                filter,
                move |state: State<AppSchema>,
                      params: Result<RawPathParams, _>,
                      RawQuery(query): RawQuery,
                      headers: HeaderMap,
                      body: Result<Bytes, BytesRejection>| {
                    let compiled = compiled.clone();
                    async move {
                        let params = params.ok();
                        handle(&compiled, state.0, params, query, headers, body)
                            .await
                            .unwrap_or_else(IntoResponse::into_response)
                    }
                },
            ));
        }
        let methods = methods.fallback(move || {
            let allow = allow.clone();
            async move {
                RestError {
                    allow: Some(allow),
                    ..RestError::code(ErrorCode::MethodNotAllowed)
                }
            }
        });
        router = router.route(path, methods);
    }
    router
}

async fn handle(
    compiled: &CompiledRoute,
    schema: AppSchema,
    params: Option<RawPathParams>,
    query: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RestError> {
    let route = &compiled.route;
    let mut variables = Map::new();
    for (name, value) in params.iter().flat_map(|p| p.iter()) {
        if value.contains('\0') {
            return Err(RestError::validation(nul_message(name)));
        }
        variables.insert(name.to_string(), Value::String(value.to_string()));
    }
    query_variables(route.query, query.as_deref(), &mut variables)?;
    if let Body::Input = route.body {
        let input = camel_case_keys(read_json_object(&headers, body, compiled.max_text)?)?;
        if let Some(type_name) = &compiled.input_type {
            compiled.shapes.check(type_name, &input)?;
        }
        variables.insert("input".into(), input);
    }
    let auth = RequestAuth::new(crate::http::bearer(&headers));
    let mut request = Request::new(route.document.clone())
        .variables(Variables::from_json(Value::Object(variables)))
        .data(auth);
    request.set_parsed_query(compiled.document.clone());
    // The route table's own documents: checked when the table was built.
    let response = crate::graphql::execute(&schema, None, request).await;
    if let Some(err) = response.errors.first() {
        // The body and the parameters were checked above in REST's words, so what comes
        // back is the resolvers' own answer (already the catalogue's words).
        let code = code_of(err).unwrap_or(ErrorCode::ServerError);
        return Err(RestError {
            retry_after: retry_after_of(err),
            causes: InternalCauses::of(&response.errors),
            ..RestError::new(code, err.message.clone())
        });
    }
    // The answer is shaped by moving values out of the GraphQL result and serialised once.
    let data = match response.data {
        ConstValue::Object(mut root) => root.swap_remove("data").unwrap_or(ConstValue::Null),
        _ => ConstValue::Null,
    };
    Ok(match route.shape {
        Shape::NoContent => StatusCode::NO_CONTENT.into_response(),
        Shape::Single => success(route.status, route.message, data),
        Shape::List => success(route.status, route.message, list_shape(data)),
    })
}

/// The spec §3.5 list.
#[derive(serde::Serialize)]
struct ListPage {
    object: &'static str,
    results: Vec<ConstValue>,
    has_more: bool,
    next_cursor: ConstValue,
}

/// The shared list shaper: a Relay connection becomes the spec §3.5 list.
/// `next_cursor` is `null` exactly when `has_more` is false.
fn list_shape(connection: ConstValue) -> ListPage {
    let ConstValue::Object(mut connection) = connection else {
        return ListPage {
            object: "list",
            results: Vec::new(),
            has_more: false,
            next_cursor: ConstValue::Null,
        };
    };
    let results = match connection.swap_remove("edges") {
        Some(ConstValue::List(edges)) => edges
            .into_iter()
            .filter_map(|edge| match edge {
                ConstValue::Object(mut edge) => edge.swap_remove("node"),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut page_info = match connection.swap_remove("pageInfo") {
        Some(ConstValue::Object(info)) => info,
        _ => Default::default(),
    };
    let has_more = matches!(
        page_info.get("hasNextPage"),
        Some(ConstValue::Boolean(true))
    );
    let next_cursor = match page_info.swap_remove("endCursor") {
        Some(cursor) if has_more => cursor,
        _ => ConstValue::Null,
    };
    ListPage {
        object: "list",
        results,
        has_more,
        next_cursor,
    }
}

/// Query-string parameters → GraphQL variables, per the route's declared parameters.
/// Unknown, repeated or empty parameters and non-integer numbers are validation errors.
fn query_variables(
    params: &[Param],
    query: Option<&str>,
    variables: &mut Map<String, Value>,
) -> Result<(), RestError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| crate::media::percent_decode(&s.replace('+', " "));
        let (Some(name), Some(value)) = (decode(raw_name), decode(raw_value)) else {
            return Err(RestError::validation("쿼리 문자열을 해석할 수 없습니다."));
        };
        let Some(param) = params.iter().find(|p| p.name == name) else {
            return Err(RestError::validation(format!(
                "알 수 없는 쿼리 파라미터입니다: `{name}`"
            )));
        };
        if variables.contains_key(param.variable) {
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
        // Checked here, in REST's words (GraphQL would name its own argument and types).
        if !param.values.is_empty() && !param.values.contains(&value.as_str()) {
            return Err(RestError::validation(format!(
                "`{name}`는 {} 중 하나여야 합니다.",
                param.values.join(", ")
            )));
        }
        let value = match param.kind {
            ParamKind::String => Value::String(value),
            ParamKind::Int => match value.parse::<i32>() {
                // Every integer parameter is a page size (OpenAPI: 1–100).
                Ok(n) if (1..=crate::domain::MAX_PAGE_SIZE).contains(&n) => Value::from(n),
                Ok(_) => {
                    return Err(RestError::validation(format!(
                        "`{name}`는 1~{} 사이여야 합니다.",
                        crate::domain::MAX_PAGE_SIZE
                    )));
                }
                Err(_) => {
                    return Err(RestError::validation(format!(
                        "`{name}`는 정수여야 합니다."
                    )));
                }
            },
        };
        variables.insert(param.variable.to_string(), value);
    }
    Ok(())
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
fn nul_message(path: &str) -> String {
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

/// REST bodies are `snake_case`, GraphQL inputs `camelCase`. Keys that are not
/// `snake_case` are unknown fields by definition.
fn camel_case_keys(object: Map<String, Value>) -> Result<Value, RestError> {
    let mut out = Map::with_capacity(object.len());
    for (key, value) in object {
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !key.starts_with('_');
        if !valid {
            return Err(RestError::validation(format!(
                "알 수 없는 필드입니다: `{key}`"
            )));
        }
        let value = match value {
            Value::Object(inner) => camel_case_keys(inner)?,
            other => integral(other),
        };
        out.insert(to_camel(&key), value);
    }
    Ok(Value::Object(out))
}

/// JSON does not tell `7` from `7.0` (JSON Schema calls both integers); GraphQL's `Int`
/// does. A number with no fraction becomes an integer, in lists too.
fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_said_twice_is_found_with_its_path() {
        let dup = |j: &str| super::duplicate_key(j.as_bytes());
        assert_eq!(dup(r#"{"a": 1, "a": 2}"#).as_deref(), Some("a"));
        assert_eq!(
            dup(r#"{"a": {"b": 1, "c": [{"d": 1, "d": 1}]}}"#).as_deref(),
            Some("a.c[0].d")
        );
        assert_eq!(dup(r#"{"a": {"b": 1}, "c": {"b": 2}}"#), None);
        assert_eq!(dup(r#"{"a": [1, 2, {"x": null}]}"#), None);
    }

    use super::*;

    #[test]
    fn integral_numbers_become_integers() {
        let body = serde_json::json!({"age": 19.0, "ratio": 1.5, "list": [2.0, 3], "big": 1e300});
        let Value::Object(map) = body else {
            unreachable!()
        };
        let out = camel_case_keys(map).unwrap();
        assert_eq!(out["age"], serde_json::json!(19));
        assert!(out["age"].is_i64());
        assert_eq!(out["ratio"], serde_json::json!(1.5));
        assert_eq!(out["list"], serde_json::json!([2, 3]));
        assert!(out["big"].is_f64());
    }

    fn shapes() -> InputShapes {
        InputShapes::from_sdl(&crate::graphql::sdl())
    }

    #[test]
    fn bodies_are_refused_in_rest_words() {
        let shapes = shapes();
        let refusal = |ty: &str, body: Value| shapes.check(ty, &body).unwrap_err().message;
        assert_eq!(
            refusal(
                "SignUpInput",
                serde_json::json!({"userId": "a", "password": "p", "name": "n", "age": 7, "guardianConsent": true, "fooBar": 1})
            ),
            "알 수 없는 필드입니다: `foo_bar`"
        );
        let sign_up = serde_json::json!({"userId": "a", "password": "p", "name": "n", "age": "7", "guardianConsent": true});
        assert_eq!(
            refusal("SignUpInput", sign_up),
            "`age` 필드의 값이 올바르지 않습니다 (정수)."
        );
        assert_eq!(
            refusal(
                "SignUpInput",
                serde_json::json!({"userId": "a", "password": "p", "name": "n", "age": 7})
            ),
            "필수 필드가 누락되었습니다: `guardian_consent`"
        );
        let huge = serde_json::json!({"userPreferences": {"theme": "숲", "length": "huge"}});
        assert_eq!(
            refusal("CreateStoryInput", huge),
            "`user_preferences.length` 필드의 값이 올바르지 않습니다 (short, medium, long 중 하나)."
        );
        assert_eq!(
            refusal(
                "CreateStoryInput",
                serde_json::json!({"userPreferences": {}})
            ),
            "필수 필드가 누락되었습니다: `user_preferences.theme`"
        );
        assert_eq!(
            refusal(
                "CreateStoryInput",
                serde_json::json!({"userPreferences": "숲"})
            ),
            "`user_preferences` 필드의 값이 올바르지 않습니다 (객체)."
        );
        let null_item =
            serde_json::json!({"userPreferences": {"theme": "숲", "characters": [null]}});
        assert_eq!(
            refusal("CreateStoryInput", null_item),
            "`user_preferences.characters` 필드의 값이 올바르지 않습니다 (문자열)."
        );
        let null_length = serde_json::json!({"userPreferences": {"theme": "숲", "length": null}});
        assert_eq!(
            refusal("CreateStoryInput", null_length),
            "`user_preferences.length` 필드의 값이 올바르지 않습니다 (short, medium, long 중 하나)."
        );
        // A field the type does not have is named first (a misspelt field, or `status`
        // sent to PATCH alone), not what is then missing.
        let misspelt = serde_json::json!({"userId": "a", "pasword": "p", "name": "n", "age": 7, "guardianConsent": true});
        assert_eq!(
            refusal("SignUpInput", misspelt),
            "알 수 없는 필드입니다: `pasword`"
        );
        let nested = serde_json::json!({"userPreferences": {"theme": "숲", "colour": "red"}});
        assert_eq!(
            refusal("CreateStoryInput", nested),
            "알 수 없는 필드입니다: `user_preferences.colour`"
        );
        let fine = serde_json::json!({"userPreferences": {"theme": "숲", "characters": ["토끼"], "length": "short"}, "conversationId": null});
        assert!(shapes.check("CreateStoryInput", &fine).is_ok());
        // A default stands in for a missing field.
        assert!(
            shapes
                .check("StartConversationInput", &serde_json::json!({}))
                .is_ok()
        );
    }

    #[test]
    fn non_snake_keys_are_unknown_fields() {
        let obj: Map<String, Value> = serde_json::from_str(r#"{"userId": "x"}"#).unwrap();
        assert!(camel_case_keys(obj).is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;

    /// The default longest text (contract §2; `JJONGAL_MAX_TEXT_CHARS`).
    const MAX_TEXT_CHARS: usize = 10_000;
    use proptest::prelude::*;

    fn list_params() -> &'static [Param] {
        super::super::routes::table()
            .into_iter()
            .find(|r| r.method == Method::GET && r.path == "/api/v1/stories")
            .expect("the stories list route")
            .query
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h
    }

    proptest! {
        /// Any query string becomes variables or a 400, never a panic; what it builds
        /// only ever names the route's declared variables.
        #[test]
        fn arbitrary_query_strings_build_variables_or_400(query in any::<String>()) {
            let params = list_params();
            let mut variables = Map::new();
            match query_variables(params, Some(&query), &mut variables) {
                Ok(()) => {
                    for name in variables.keys() {
                        prop_assert!(params.iter().any(|p| p.variable == name));
                    }
                }
                Err(e) => prop_assert_eq!(e.code, ErrorCode::ValidationError),
            }
        }

        /// Well-formed parameters arrive as typed variables; repeating one is a 400.
        #[test]
        fn declared_parameters_become_typed_variables(
            size in 1i32..=100,
            status in prop::sample::select(vec!["pending", "in_progress", "completed", "failed"]),
            other in "[a-z_]{1,12}",
            outside in prop_oneof![i32::MIN..=0, 101..=i32::MAX],
            cursor in "[A-Za-z0-9_.-]{1,40}",
        ) {
            let params = list_params();
            let mut variables = Map::new();
            let query = format!("page_size={size}&status={status}&start_cursor={cursor}");
            query_variables(params, Some(&query), &mut variables).unwrap();
            prop_assert_eq!(&variables["first"], &Value::from(size));
            prop_assert_eq!(&variables["status"], &Value::String(status.to_string()));
            prop_assert_eq!(&variables["after"], &Value::String(cursor));
            let mut again = Map::new();
            let repeated = format!("status={status}&status={status}");
            prop_assert!(query_variables(params, Some(&repeated), &mut again).is_err());
            // Values outside a parameter's list, and page sizes outside 1–100, are refused
            // in REST's words.
            let mut refused = Map::new();
            if !["pending", "in_progress", "completed", "failed"].contains(&other.as_str()) {
                let err = query_variables(params, Some(&format!("status={other}")), &mut refused).unwrap_err();
                prop_assert!(err.message.contains("`status`") && err.message.contains("pending"));
            }
            let err = query_variables(params, Some(&format!("page_size={outside}")), &mut refused).unwrap_err();
            prop_assert!(err.message.contains("`page_size`는 1~100"), "{}", err.message);
        }

        /// Percent-encoding round-trips through the decoder, even for non-ASCII values.
        #[test]
        fn percent_encoded_values_decode(value in "\\PC{1,20}") {
            let encoded: String = value
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            let mut variables = Map::new();
            query_variables(list_params(), Some(&format!("start_cursor={encoded}")), &mut variables).unwrap();
            prop_assert_eq!(&variables["after"], &Value::String(value));
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

        /// Text limits hold at any depth, naming the path; keys map to camelCase or are
        /// unknown fields.
        #[test]
        fn text_limits_and_key_mapping(key in "[a-z][a-z0-9_]{0,12}", depth in 0usize..6, long in any::<bool>()) {
            let text = "가".repeat(if long { MAX_TEXT_CHARS + 1 } else { MAX_TEXT_CHARS });
            let mut value = Value::String(text);
            for _ in 0..depth {
                value = serde_json::json!({ key.clone(): [value] });
            }
            let body = serde_json::json!({ key.clone(): value });
            let checked = read_json_object(&json_headers(), Ok(Bytes::from(body.to_string())), MAX_TEXT_CHARS);
            match checked {
                Ok(object) => {
                    prop_assert!(!long);
                    let Ok(Value::Object(mapped)) = camel_case_keys(object) else {
                        panic!("`{key}` is snake_case");
                    };
                    let k = mapped.keys().next().unwrap();
                    prop_assert!(!k.contains('_') && k.starts_with(&key[..1]), "{}", k);
                }
                Err(e) => {
                    prop_assert!(long);
                    prop_assert!(e.message.contains(&key), "{}", e.message);
                }
            }
        }
    }
}
