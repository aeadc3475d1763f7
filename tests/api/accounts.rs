//! Sign-up, login, the current user and account deletion over REST.

use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{Db, assert_timestamp, spawn_app, spawn_app_with};

fn signup_body() -> Value {
    json!({"user_id": "minjun.mom", "password": "password123", "name": "민준", "age": 7, "guardian_consent": true})
}

async fn sign_up_returns_the_user(db: Db) {
    let app = spawn_app(db).await;
    let reply = app.post_json("/api/v1/users", &signup_body(), None).await;
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let user = reply.assert_ok(201);
    let mut keys: Vec<_> = user.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["age", "created_at", "id", "name", "object"]);
    assert_eq!(user["object"], "user");
    assert_eq!(user["name"], "민준");
    assert_eq!(user["age"], 7);
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    assert_timestamp(user["created_at"].as_str().unwrap());
}

async fn sign_up_rejects_invalid_input(db: Db) {
    let app = spawn_app(db).await;
    let cases: Vec<(&str, Value)> = vec![
        ("login id too short", json!({"user_id": "ab"})),
        ("login id too long", json!({"user_id": "a".repeat(65)})),
        ("login id bad characters", json!({"user_id": "민준맘"})),
        ("login id with space", json!({"user_id": "min jun"})),
        ("password too short", json!({"password": "short"})),
        ("password too long", json!({"password": "p".repeat(129)})),
        ("empty name", json!({"name": ""})),
        ("blank name", json!({"name": "   "})),
        ("name too long", json!({"name": "가".repeat(51)})),
        ("age zero", json!({"age": 0})),
        ("age twenty", json!({"age": 20})),
        ("age as a string", json!({"age": "7"})),
        ("age fractional", json!({"age": 7.5})),
        ("consent false", json!({"guardian_consent": false})),
        ("consent as a string", json!({"guardian_consent": "true"})),
        ("unknown field", json!({"nickname": "x"})),
        ("camelCase field", json!({"guardianConsent": true})),
        ("null name", json!({"name": null})),
    ];
    for (what, patch) in cases {
        let mut body = signup_body();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let reply = app.post_json("/api/v1/users", &body, None).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        reply.assert_error(400, "VALIDATION_ERROR");
    }
    // Missing fields, one at a time.
    for field in ["user_id", "password", "name", "age", "guardian_consent"] {
        let mut body = signup_body();
        body.as_object_mut().unwrap().remove(field);
        let message = app
            .post_json("/api/v1/users", &body, None)
            .await
            .assert_error(400, "VALIDATION_ERROR");
        assert!(message.contains(field), "{field}: {message}");
    }
    // Nothing was created by any of them.
    let reply = app
        .post_json(
            "/api/v1/auth/token",
            &json!({"user_id": "minjun.mom", "password": "password123"}),
            None,
        )
        .await;
    reply.assert_error(401, "AUTHENTICATION_FAILED");
}

async fn sign_up_conflicts_on_a_taken_login_id(db: Db) {
    let app = spawn_app(db).await;
    app.post_json("/api/v1/users", &signup_body(), None)
        .await
        .assert_ok(201);
    let reply = app.post_json("/api/v1/users", &signup_body(), None).await;
    reply.assert_error(409, "CONFLICT");
    // Login ids are unique regardless of case.
    let mut body = signup_body();
    body["user_id"] = json!("MinJun.Mom");
    app.post_json("/api/v1/users", &body, None)
        .await
        .assert_error(409, "CONFLICT");
    // ... and the differently cased id logs in to the same account.
    let data = app
        .post_json(
            "/api/v1/auth/token",
            &json!({"user_id": "MINJUN.MOM", "password": "password123"}),
            None,
        )
        .await
        .assert_ok(200);
    assert_eq!(data["token_type"], "Bearer");
}

async fn sign_up_can_be_switched_off(db: Db) {
    let app = spawn_app_with(db, &["--allow-signup", "false"]).await;
    app.post_json("/api/v1/users", &signup_body(), None)
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSION");
    let reply = app
        .graphql(
            "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
            json!({"i": {"userId": "abc", "password": "password123", "name": "a", "age": 3, "guardianConsent": true}}),
            None,
        )
        .await;
    assert_eq!(
        crate::helpers::gql_code(&reply.json()),
        "INSUFFICIENT_PERMISSION"
    );
}

async fn token_issues_a_pair_and_rejects_bad_credentials(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("dad_01").await;
    let data = app
        .post_json(
            "/api/v1/auth/token",
            &json!({"user_id": "dad_01", "password": "password123"}),
            None,
        )
        .await
        .assert_ok(200);
    let mut keys: Vec<_> = data.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["expires_in"], 3600);
    assert!(data["refresh_token"].as_str().unwrap().len() >= 43);

    for body in [
        json!({"user_id": "dad_01", "password": "password124"}),
        json!({"user_id": "nobody", "password": "password123"}),
    ] {
        app.post_json("/api/v1/auth/token", &body, None)
            .await
            .assert_error(401, "AUTHENTICATION_FAILED");
    }
    for body in [
        json!({"user_id": "dad_01"}),
        json!({"password": "password123"}),
        json!({"user_id": "", "password": "password123"}),
        json!({"user_id": "dad_01", "password": 12345678}),
        json!({"user_id": "dad_01", "password": "password123", "remember": true}),
    ] {
        app.post_json("/api/v1/auth/token", &body, None)
            .await
            .assert_error(400, "VALIDATION_ERROR");
    }
}

async fn me_returns_the_account(db: Db) {
    let app = spawn_app(db).await;
    let created = app.sign_up("grandma").await;
    let (access, _) = app.login("grandma").await;
    let me = app
        .get("/api/v1/users/me", Some(&access))
        .await
        .assert_ok(200);
    assert_eq!(me, created);
    // Without a token, or with another scheme: 401 INVALID_TOKEN + WWW-Authenticate.
    app.get("/api/v1/users/me", None)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let reply = app
        .send(
            app.client
                .get(app.url("/api/v1/users/me"))
                .header("authorization", format!("Basic {access}")),
        )
        .await;
    reply.assert_error(401, "INVALID_TOKEN");
}

async fn delete_account_removes_it_and_its_tokens(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("leaving").await;
    let (access, refresh) = app.login("leaving").await;
    let other = app.new_account("staying").await;

    let reply = app.delete("/api/v1/users/me", Some(&access)).await;
    assert_eq!(reply.status, 204);
    assert!(reply.text.is_empty());

    app.get("/api/v1/users/me", Some(&access))
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.delete("/api/v1/users/me", Some(&access))
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": refresh}),
        None,
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    app.post_json(
        "/api/v1/auth/token",
        &json!({"user_id": "leaving", "password": "password123"}),
        None,
    )
    .await
    .assert_error(401, "AUTHENTICATION_FAILED");
    // Other accounts are untouched, and the login id is free again.
    app.get("/api/v1/users/me", Some(&other))
        .await
        .assert_ok(200);
    app.sign_up("leaving").await;
}

/// A crowd of wrong passwords at once: at most the configured number of Argon2 hashes
/// run (each holds 19 MiB), a few more wait, the rest are `429` with `Retry-After` at
/// once; nobody gets in, and the right password still works afterwards.
async fn simultaneous_failed_logins_are_bounded(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--password-hash-concurrency",
            "1",
            "--password-hash-queue",
            "2",
        ],
    )
    .await;
    app.sign_up("crowded").await;
    let body = json!({"user_id": "crowded", "password": "wrong-password"});
    let replies = futures_util::future::join_all(
        (0..40).map(|_| app.post_json("/api/v1/auth/token", &body, None)),
    )
    .await;
    let (mut refused, mut limited) = (0, 0);
    for reply in &replies {
        match reply.status {
            401 => {
                reply.assert_error(401, "AUTHENTICATION_FAILED");
                refused += 1;
            }
            429 => {
                reply.assert_error(429, "RATE_LIMIT_EXCEEDED");
                assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.text);
                limited += 1;
            }
            other => panic!("{other}: {}", reply.text),
        }
    }
    // Three were admitted at once (one hashing, two waiting); 40 arrive together.
    assert!(
        refused >= 3 && limited >= 1,
        "{refused} refused, {limited} limited"
    );
    assert_eq!(refused + limited, 40);
    // The queue drains: the right password is accepted.
    app.login("crowded").await;
}

db_tests!(
    simultaneous_failed_logins_are_bounded,
    sign_up_returns_the_user,
    sign_up_rejects_invalid_input,
    sign_up_conflicts_on_a_taken_login_id,
    sign_up_can_be_switched_off,
    token_issues_a_pair_and_rejects_bad_credentials,
    me_returns_the_account,
    delete_account_removes_it_and_its_tokens,
);
