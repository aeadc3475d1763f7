//! Access-token verification and refresh-token rotation, reuse detection and logout.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{Db, TestApp, spawn_app};

fn sign(claims: &Value, secret: &[u8], alg: Algorithm) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn claims_for(user_id: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": user_id, "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string(),
           "iss": "jjongal", "aud": "jjongal-api"})
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    let reply = app.get("/api/v1/users/me", Some(token)).await;
    if reply.status != 200 {
        reply.assert_error(401, "INVALID_TOKEN");
    }
    reply.status
}

async fn tampered_access_tokens_are_rejected(db: Db) {
    let app = spawn_app(db).await;
    let user = app.sign_up("tamper").await;
    let user_id = user["id"].as_str().unwrap();
    let secret = app.domain.config().jwt_secret.expose().to_vec();

    // Control: a token we sign like the server does is accepted.
    let good = sign(&claims_for(user_id), &secret, Algorithm::HS256);
    assert_eq!(me_status(&app, &good).await, 200);

    // Bad signature: flip a character of the signature.
    let (head, sig) = good.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let bad_sig = format!("{head}.{flipped}{}", &sig[1..]);
    assert_eq!(me_status(&app, &bad_sig).await, 401);

    // Signed with another secret.
    let other = sign(
        &claims_for(user_id),
        b"another-secret-another-secret-another-secret",
        Algorithm::HS256,
    );
    assert_eq!(me_status(&app, &other).await, 401);

    // alg: none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims_for(user_id).to_string());
    assert_eq!(
        me_status(&app, &format!("{none_header}.{payload}.")).await,
        401
    );
    assert_eq!(
        me_status(&app, &format!("{none_header}.{payload}")).await,
        401
    );

    // Another HMAC algorithm with the right secret is still not HS256.
    let hs512 = sign(&claims_for(user_id), &secret, Algorithm::HS512);
    assert_eq!(me_status(&app, &hs512).await, 401);

    // Expired (well past the leeway).
    let mut expired = claims_for(user_id);
    expired["iat"] = json!(chrono::Utc::now().timestamp() - 7200);
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    assert_eq!(
        me_status(&app, &sign(&expired, &secret, Algorithm::HS256)).await,
        401
    );

    // Wrong audience, wrong issuer, missing claims, a subject that is no account.
    for (key, value) in [
        ("aud", json!("someone-else")),
        ("iss", json!("evil")),
        ("sub", json!(uuid::Uuid::new_v4().to_string())),
        ("sub", json!("not-a-uuid")),
    ] {
        let mut claims = claims_for(user_id);
        claims[key] = value;
        assert_eq!(
            me_status(&app, &sign(&claims, &secret, Algorithm::HS256)).await,
            401,
            "{key}"
        );
    }
    for key in ["exp", "aud", "iss", "sub"] {
        let mut claims = claims_for(user_id);
        claims.as_object_mut().unwrap().remove(key);
        assert_eq!(
            me_status(&app, &sign(&claims, &secret, Algorithm::HS256)).await,
            401,
            "without {key}"
        );
    }
    // Garbage.
    for token in ["x", "a.b.c", "", "Bearer"] {
        let reply = app
            .send(
                app.client
                    .get(app.url("/api/v1/users/me"))
                    .header("authorization", format!("Bearer {token}")),
            )
            .await;
        reply.assert_error(401, "INVALID_TOKEN");
    }
}

async fn refresh_rotates_and_detects_reuse(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("rotator").await;
    let (_, first) = app.login("rotator").await;
    // A second, independent login family must survive the first family's revocation.
    let (_, independent) = app.login("rotator").await;

    let data = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first}),
            None,
        )
        .await
        .assert_ok(200);
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["expires_in"], 3600);
    let second = data["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let access = data["access_token"].as_str().unwrap();
    app.get("/api/v1/users/me", Some(access))
        .await
        .assert_ok(200);

    // Reusing the first token: rejected, and the whole family is revoked...
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": first}),
        None,
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    // ...so the legitimately rotated one no longer works either.
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": second}),
        None,
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    // The other login is unaffected.
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": independent}),
        None,
    )
    .await
    .assert_ok(200);

    // Unknown and malformed refresh tokens.
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": "never-issued"}),
        None,
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    app.post_json("/api/v1/auth/refresh", &json!({}), None)
        .await
        .assert_error(400, "VALIDATION_ERROR");
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": 5}), None)
        .await
        .assert_error(400, "VALIDATION_ERROR");
}

async fn concurrent_refreshes_yield_one_winner(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("racer").await;
    let (_, token) = app.login("racer").await;
    let body = json!({"refresh_token": token});
    let (a, b) = tokio::join!(
        app.post_json("/api/v1/auth/refresh", &body, None),
        app.post_json("/api/v1/auth/refresh", &body, None)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{} / {}", a.text, b.text);
}

/// Two simultaneous uses of one refresh token, 40 times over: one wins, and the
/// winner's new token never survives the family revocation the loser triggers (it did
/// 2/40 times on SQLite and 9/40 on PostgreSQL while rotation was two steps).
async fn a_racing_replay_revokes_the_winners_new_token(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("replayer").await;
    for round in 0..40 {
        let (_, token) = app.login("replayer").await;
        let body = json!({"refresh_token": token});
        let (a, b) = tokio::join!(
            app.post_json("/api/v1/auth/refresh", &body, None),
            app.post_json("/api/v1/auth/refresh", &body, None)
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 401],
            "round {round}: {} / {}",
            a.text,
            b.text
        );
        let winner = if a.status == 200 { &a } else { &b };
        let successor = winner.json()["data"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        app.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": successor}),
            None,
        )
        .await
        .assert_error(401, "INVALID_TOKEN");
    }
}

async fn logout_revokes_the_family(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("logouter").await;
    let (_, refresh) = app.login("logouter").await;
    let rotated = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": refresh}),
            None,
        )
        .await
        .assert_ok(200)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": rotated}),
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty());
    app.post_json(
        "/api/v1/auth/refresh",
        &json!({"refresh_token": rotated}),
        None,
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    // Logging out again with a known token is idempotent; an unknown one is not a token.
    let again = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": rotated}),
            None,
        )
        .await;
    assert_eq!(again.status, 204);
    app.post_json(
        "/api/v1/auth/logout",
        &json!({"refresh_token": "never-issued"}),
        None,
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    app.post_json("/api/v1/auth/logout", &json!({}), None)
        .await
        .assert_error(400, "VALIDATION_ERROR");
}

db_tests!(
    tampered_access_tokens_are_rejected,
    refresh_rotates_and_detects_reuse,
    a_racing_replay_revokes_the_winners_new_token,
    concurrent_refreshes_yield_one_winner,
    logout_revokes_the_family,
);
