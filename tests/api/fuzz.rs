//! Generated requests against the live server: whatever the method, path, query, headers
//! and body, the answer is a 4xx/2xx in the door's JSON shape — never a 5xx — and the
//! server stays healthy. Cases come from proptest strategies with a fixed seed, so a
//! failure is reproducible; any one found becomes a named regression case below.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{Db, TestApp, spawn_app};

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: String,
    query: String,
    content_type: Option<&'static str>,
    auth: Auth,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Auth {
    None,
    Valid,
    Garbage,
}

const PATHS: &[&str] = &[
    "/api/v1/users",
    "/api/v1/users/me",
    "/api/v1/users/me/voice",
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/stories",
    "/api/v1/stories/{id}",
    "/api/v1/conversations",
    "/api/v1/conversations/{id}",
    "/graphql",
    "/graphql/schema.graphql",
    "/media/{id}/{id}/1.svg",
    "/nothing/{id}",
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(uuid::Uuid::new_v4().to_string()),
        Just("00000000-0000-0000-0000-000000000000".to_string()),
        "[A-Za-z0-9%._~-]{0,40}",
        Just("..%2f..%2fsecrets".to_string()),
        Just("%F0%9F%90%B0".to_string()),
        Just("%ff%fe".to_string()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("page_size"),
        Just("start_cursor"),
        Just("status"),
        Just("sort_by"),
        Just("order"),
        Just("query"),
        Just("variables"),
        Just("md5"),
        Just("expires"),
        Just("x"),
    ];
    let value = prop_oneof![
        "[0-9-]{0,12}",
        "[A-Za-z0-9%+=&._-]{0,30}",
        Just("%7B__typename%7D".to_string()),
        Just("%7Bme%7Bid%7D%7D".to_string()),
        Just("completed".to_string()),
        Just("title".to_string()),
        Just("99999999999999999999".to_string()),
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn json_body() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        Just(json!("가".repeat(10_001))),
        Just(json!("{ __typename }")),
        Just(json!("mutation { deleteAccount }")),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        let key = prop_oneof![
            Just("user_id".to_string()),
            Just("password".to_string()),
            Just("refresh_token".to_string()),
            Just("user_preferences".to_string()),
            Just("theme".to_string()),
            Just("characters".to_string()),
            Just("length".to_string()),
            Just("conversation_id".to_string()),
            Just("title".to_string()),
            Just("query".to_string()),
            Just("variables".to_string()),
            Just("operationName".to_string()),
            Just("name".to_string()),
            Just("age".to_string()),
            Just("guardian_consent".to_string()),
            "[a-zA-Z_]{1,10}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn case() -> impl Strategy<Value = Case> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PATCH"),
        Just("DELETE"),
        Just("PUT"),
        Just("HEAD"),
        Just("OPTIONS"),
    ];
    let path = (prop::sample::select(PATHS), segment(), segment())
        .prop_map(|(p, a, b)| p.replacen("{id}", &a, 1).replacen("{id}", &b, 1));
    let content_type = prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("application/json; charset=utf-8")),
        Just(Some("text/plain")),
        Just(Some("multipart/form-data; boundary=x")),
        Just(Some("application/x-www-form-urlencoded")),
    ];
    let auth = prop_oneof![Just(Auth::None), Just(Auth::Valid), Just(Auth::Garbage)];
    let body = prop_oneof![
        json_body().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..128),
        Just(Vec::new()),
    ];
    (method, path, query(), content_type, auth, body).prop_map(
        |(method, path, query, content_type, auth, body)| Case {
            method,
            path,
            query,
            content_type,
            auth,
            body,
        },
    )
}

async fn check(app: &TestApp, client: &reqwest::Client, token: &str, case: &Case) -> Option<u16> {
    let mut url = app.url(&case.path);
    if !case.query.is_empty() {
        url = format!("{url}?{}", case.query);
    }
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut rb = client.request(method, &url).body(case.body.clone());
    if let Some(ct) = case.content_type {
        rb = rb.header("content-type", ct);
    }
    match case.auth {
        Auth::None => {}
        Auth::Valid => rb = rb.bearer_auth(token),
        Auth::Garbage => rb = rb.header("authorization", "Bearer eyJhbGciOiJub25lIn0.e30."),
    }
    let Ok(response) = rb.send().await else {
        // The client may refuse to send an unparsable URL; nothing reached the server.
        return None;
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert!(status < 500, "{status} for {case:?}: {text}");
    // Every answer with a body is JSON in the door's shape (the page, the SDL, media and
    // HEAD answers aside).
    let json_door = !case.path.starts_with("/media/")
        && case.path != "/graphql/schema.graphql"
        && case.method != "HEAD"
        && !text.is_empty()
        && !text.starts_with("<!");
    if json_door && !(200..300).contains(&status) {
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status} for {case:?} is not JSON ({e}): {text}"));
        let shaped = body["error"]["code"].is_string()
            || body["errors"][0]["extensions"]["code"].is_string();
        assert!(shaped, "{status} for {case:?} has no error code: {text}");
    }
    Some(status)
}

async fn generated_requests_never_produce_a_server_error(db: Db) {
    let app = spawn_app(db).await;
    let mut token = app.new_account("fuzzer").await;
    let mut accounts = 1;
    let cases: u32 = std::env::var("JJONGAL_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    // A new connection per request: the server may close one after answering without
    // reading a generated body (as HTTP allows), and a pooled client could then reuse it.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let strategy = case();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..cases {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        if let Some(status) = check(&app, &client, &token, &case).await {
            *seen.entry(status).or_insert(0usize) += 1;
        }
        // A generated DELETE /users/me (or a logout) may end the account: make another.
        let me = client
            .get(app.url("/api/v1/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("the server still answers");
        if me.status() == 401 {
            accounts += 1;
            token = app.new_account(&format!("fuzzer{accounts}")).await;
        }
    }
    println!("statuses of {cases} generated requests: {seen:?}");
    // The generator reaches past routing into the handlers.
    for status in [200, 400, 401, 404, 405] {
        assert!(seen.contains_key(&status), "no {status} among {seen:?}");
    }
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert_eq!(app.get("/readyz", None).await.status, 200);
}

db_tests!(generated_requests_never_produce_a_server_error);
