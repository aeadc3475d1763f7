//! The load benchmark's yardstick (`JJONGAL_BENCH_ROUTES`): absent by default, and when
//! on, it answers exactly the bytes it was given, behind the same middleware (request ids,
//! security headers) and, on `/auth`, the same token check as every authenticated route.

use crate::db_tests;
use crate::helpers::{Db, spawn_app, spawn_app_with};

async fn the_stack_limit_routes_are_off_unless_asked_for(db: Db) {
    let app = spawn_app(db).await;
    app.get("/api/v1/_bench/limit", None)
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
    let put = app
        .client
        .put(app.url("/api/v1/_bench/limit"))
        .body("{\"x\":1}");
    app.send(put).await.assert_error(404, "RESOURCE_NOT_FOUND");
}

async fn the_stack_limit_answers_the_stored_bytes(db: Db) {
    let app = spawn_app_with(db, &["--bench-routes", "true"]).await;
    let body = "{\"success\":true,\"message\":\"저장된 페이지\",\"data\":{\"n\":[1,2,3]}}";
    let put = app.client.put(app.url("/api/v1/_bench/limit")).body(body);
    assert_eq!(app.send(put).await.status, 204);
    let reply = app.get("/api/v1/_bench/limit", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text, body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // The same middleware as the API.
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));

    // `/auth` checks the token first, as every authenticated route does.
    app.get("/api/v1/_bench/limit/auth", None)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.get("/api/v1/_bench/limit/auth", Some("not-a-token"))
        .await
        .assert_error(401, "INVALID_TOKEN");
    let token = app.new_account("yardstick").await;
    let reply = app.get("/api/v1/_bench/limit/auth", Some(&token)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text, body);
}

db_tests!(
    the_stack_limit_routes_are_off_unless_asked_for,
    the_stack_limit_answers_the_stored_bytes,
);
