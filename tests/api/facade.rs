//! The REST facade's envelope for everything that is not a resolver's answer: unknown
//! routes, wrong methods, bad bodies, size limits; request ids; health checks.

use serde_json::json;

use crate::db_tests;
use crate::helpers::{Db, spawn_app, spawn_app_with};

async fn unknown_routes_and_wrong_methods_answer_in_the_envelope(db: Db) {
    let app = spawn_app(db).await;
    for path in ["/nothing", "/api/v1", "/api/v1/nothing", "/api/v2/users/me"] {
        app.get(path, None)
            .await
            .assert_error(404, "RESOURCE_NOT_FOUND");
        // OPTIONS on an unknown path too (no CORS preflight to answer there).
        app.send(app.client.request(reqwest::Method::OPTIONS, app.url(path)))
            .await
            .assert_error(404, "RESOURCE_NOT_FOUND");
    }
    let reply = app.send(app.client.put(app.url("/api/v1/users/me"))).await;
    reply.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("GET, DELETE, HEAD"));
    let reply = app.get("/api/v1/auth/token", None).await;
    reply.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("POST"));
    // HEAD works where GET does.
    let head = app.send(app.client.head(app.url("/api/v1/users/me"))).await;
    assert_eq!(head.status, 401);
}

async fn bad_bodies_are_validation_errors(db: Db) {
    let app = spawn_app(db).await;
    let url = app.url("/api/v1/auth/token");
    let valid = r#"{"user_id": "someone", "password": "password123"}"#;
    // Missing or wrong content type: 400, never 415.
    app.send(app.client.post(&url).body(valid))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    app.send(
        app.client
            .post(&url)
            .header("content-type", "text/plain")
            .body(valid),
    )
    .await
    .assert_error(400, "VALIDATION_ERROR");
    // A charset parameter is fine (the account does not exist: 401, past validation).
    app.send(
        app.client
            .post(&url)
            .header("content-type", "application/json; charset=utf-8")
            .body(valid),
    )
    .await
    .assert_error(401, "AUTHENTICATION_FAILED");
    for body in ["", "{", "[]", "\"text\"", "null", "{\"user_id\": }"] {
        app.send(
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
        .assert_error(400, "VALIDATION_ERROR");
    }
}

async fn size_limits_answer_413_and_400(db: Db) {
    let app = spawn_app(db).await;
    // Over 1 MiB: 413 in the envelope.
    let big = format!(
        r#"{{"user_id": "x", "password": "{}"}}"#,
        "a".repeat(1024 * 1024)
    );
    app.send(
        app.client
            .post(app.url("/api/v1/auth/token"))
            .header("content-type", "application/json")
            .body(big),
    )
    .await
    .assert_error(413, "PAYLOAD_TOO_LARGE");
    // A text field over 10,000 characters (counted as characters, not bytes): 400 naming it.
    let message = app
        .post_json(
            "/api/v1/users",
            &json!({"user_id": "longname", "password": "password123", "name": "가".repeat(10_001),
                    "age": 7, "guardian_consent": true}),
            None,
        )
        .await
        .assert_error(400, "VALIDATION_ERROR");
    assert!(message.contains("name"), "{message}");
    // Exactly 10,000 Hangul characters (30,000 bytes) passes the facade's limit and is
    // then judged by the field's own rule (name: at most 50).
    let message = app
        .post_json(
            "/api/v1/users",
            &json!({"user_id": "longname", "password": "password123", "name": "가".repeat(10_000),
                    "age": 7, "guardian_consent": true}),
            None,
        )
        .await
        .assert_error(400, "VALIDATION_ERROR");
    assert!(message.contains("50"), "{message}");
}

async fn request_ids_are_returned(db: Db) {
    let app = spawn_app(db).await;
    let reply = app.get("/healthz", None).await;
    let generated = reply.header("x-request-id").expect("generated request id");
    assert!(uuid::Uuid::parse_str(generated).is_ok());
    let reply = app
        .send(
            app.client
                .get(app.url("/api/v1/users/me"))
                .header("x-request-id", "trace-me-123"),
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("trace-me-123"));
}

async fn health_and_readiness(db: Db) {
    let app = spawn_app(db).await;
    let data = app.get("/healthz", None).await.assert_ok(200);
    assert_eq!(data["status"], "ok");
    let data = app.get("/readyz", None).await.assert_ok(200);
    assert_eq!(data["database"], "ok");
}

async fn security_headers_on_every_answer(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("headers").await;
    let replies = [
        app.get("/api/v1/users/me", Some(&token)).await,
        app.get("/api/v1/nothing", None).await,
        app.get("/healthz", None).await,
        app.graphql("{ me { id } }", json!({}), Some(&token)).await,
        app.send(
            app.client
                .get(app.url("/graphql"))
                .header("accept", "text/html"),
        )
        .await,
    ];
    for reply in &replies {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        let csp = reply.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        if reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
        {
            // Pages run only this origin's scripts.
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe-eval"), "{csp}");
        } else {
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
        }
        // Served over plain HTTP: no HSTS.
        assert_eq!(reply.header("strict-transport-security"), None);
        // No CORS unless origins are configured.
        assert_eq!(reply.header("access-control-allow-origin"), None);
    }
    let https = spawn_app_with(db, &["--public-url", "https://stories.example"]).await;
    let reply = https.get("/healthz", None).await;
    assert_eq!(
        reply.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}

async fn cors_only_for_configured_origins(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--cors-origins",
            "https://app.example, http://localhost:3000",
        ],
    )
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/stories"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
    };
    let reply = app.send(preflight("https://app.example")).await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let methods = reply
        .header("access-control-allow-methods")
        .unwrap()
        .to_string();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    let reply = app.send(preflight("http://localhost:3000")).await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let reply = app.send(preflight("https://evil.example")).await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
    // Simple requests too, and the request id is readable by the page.
    let reply = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("origin", "https://app.example"),
        )
        .await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        reply
            .header("access-control-expose-headers")
            .unwrap()
            .contains("x-request-id")
    );
}

/// REST refusals speak REST: its parameter and field names, its values — never a
/// GraphQL argument (`first`) or type (`StoryStatus`, `String`).
async fn refusals_name_rest_fields_and_values(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("rest.words").await;
    let story = app.create_story(&token, "숲").await;
    let path = format!("/api/v1/stories/{}", story["id"].as_str().unwrap());
    let cases = [
        (
            app.get("/api/v1/stories?page_size=0", Some(&token)).await,
            "`page_size`는 1~100",
        ),
        (
            app.get("/api/v1/stories?page_size=101", Some(&token)).await,
            "`page_size`는 1~100",
        ),
        (
            app.get("/api/v1/stories?status=weird", Some(&token)).await,
            "pending, in_progress, completed, failed 중 하나",
        ),
        (
            app.post_json(
                "/api/v1/stories",
                &serde_json::json!({"user_preferences": {"theme": "숲", "length": "huge"}}),
                Some(&token),
            )
            .await,
            "`user_preferences.length` 필드의 값이 올바르지 않습니다 (short, medium, long 중 하나)",
        ),
        (
            app.post_json(
                "/api/v1/stories",
                &serde_json::json!({"user_preferences": {"characters": ["토끼"]}}),
                Some(&token),
            )
            .await,
            "필수 필드가 누락되었습니다: `user_preferences.theme`",
        ),
        (
            app.post_json(
                "/api/v1/users",
                &serde_json::json!({"user_id": "rest.age", "password": "password-1", "name": "아이", "age": 7.5, "guardian_consent": true}),
                None,
            )
            .await,
            "`age` 필드의 값이 올바르지 않습니다 (정수)",
        ),
        (
            app.patch_json(&path, &serde_json::json!({"title": 5}), Some(&token))
                .await,
            "`title` 필드의 값이 올바르지 않습니다 (문자열)",
        ),
        (
            app.patch_json(
                &path,
                &serde_json::json!({"title": "새 제목", "colour": "red"}),
                Some(&token),
            )
            .await,
            "알 수 없는 필드입니다: `colour`",
        ),
        // An unknown parameter is named whatever its value.
        (
            app.get("/api/v1/stories?foo=", Some(&token)).await,
            "알 수 없는 쿼리 파라미터입니다: `foo`",
        ),
        (
            app.get("/api/v1/stories?start_cursor=%zz", Some(&token))
                .await,
            "쿼리 문자열을 해석할 수 없습니다",
        ),
        // An id that is not even UTF-8 is a malformed id, not a missing object.
        (
            app.get("/api/v1/stories/%FF", Some(&token)).await,
            "`id`은(는) UUID여야 합니다",
        ),
        // Ranges are the domain's words, the same as GraphQL's.
        (
            app.post_json(
                "/api/v1/users",
                &serde_json::json!({"user_id": "rest.range", "password": "password-1", "name": "아이", "age": 25, "guardian_consent": true}),
                None,
            )
            .await,
            "age는 1~19 사이의 정수여야 합니다",
        ),
    ];
    for (reply, expected) in cases {
        let message = reply.assert_error(400, "VALIDATION_ERROR");
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?}"
        );
        for graphql_word in [
            "first",
            "StoryStatus",
            "StoryLength",
            "String",
            "expected",
            "input",
        ] {
            assert!(
                !message.contains(graphql_word),
                "{message:?} names {graphql_word}"
            );
        }
    }
}

db_tests!(
    refusals_name_rest_fields_and_values,
    security_headers_on_every_answer,
    cors_only_for_configured_origins,
    unknown_routes_and_wrong_methods_answer_in_the_envelope,
    bad_bodies_are_validation_errors,
    size_limits_answer_413_and_400,
    request_ids_are_returned,
    health_and_readiness,
);
