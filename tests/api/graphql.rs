//! The GraphQL core over HTTP: the same operations and codes as REST.

use serde_json::json;

use jjongal::domain::stories::StoryStatus;

use crate::db_tests;
use crate::helpers::{Db, Seed, gql_code, spawn_app};

async fn accounts_work_end_to_end_in_graphql(db: Db) {
    let app = spawn_app(db).await;
    let reply = app
        .graphql(
            "mutation($i: SignUpInput!) { signUp(input: $i) { id object loginId name age createdAt } }",
            json!({"i": {"userId": "gql.user", "password": "password123", "name": "서연", "age": 5, "guardianConsent": true}}),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert!(body.get("errors").is_none(), "{body}");
    let user = &body["data"]["signUp"];
    assert_eq!(user["object"], "user");
    assert_eq!(user["loginId"], "gql.user");
    crate::helpers::assert_timestamp(user["createdAt"].as_str().unwrap());

    let body = app
        .graphql(
            "mutation { issueToken(input: {userId: \"gql.user\", password: \"password123\"}) { tokenType accessToken expiresIn refreshToken } }",
            json!({}),
            None,
        )
        .await
        .json();
    let pair = &body["data"]["issueToken"];
    assert_eq!(pair["tokenType"], "Bearer");
    let access = pair["accessToken"].as_str().unwrap().to_string();
    let refresh = pair["refreshToken"].as_str().unwrap().to_string();

    let body = app
        .graphql("{ me { id name } }", json!({}), Some(&access))
        .await
        .json();
    assert_eq!(body["data"]["me"]["id"], user["id"]);

    let body = app
        .graphql(
            "mutation($r: String!) { refreshToken(input: {refreshToken: $r}) { refreshToken } }",
            json!({"r": refresh}),
            None,
        )
        .await
        .json();
    let rotated = body["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    // Reuse is detected through GraphQL too.
    let body = app
        .graphql(
            "mutation($r: String!) { refreshToken(input: {refreshToken: $r}) { refreshToken } }",
            json!({"r": refresh}),
            None,
        )
        .await
        .json();
    assert_eq!(gql_code(&body), "INVALID_TOKEN");
    let body = app
        .graphql(
            "mutation($r: String!) { logout(input: {refreshToken: $r}) }",
            json!({"r": rotated}),
            None,
        )
        .await
        .json();
    assert_eq!(body["data"]["logout"], true);

    let body = app
        .graphql("mutation { deleteAccount }", json!({}), Some(&access))
        .await
        .json();
    assert_eq!(body["data"]["deleteAccount"], true);
    let body = app
        .graphql("{ me { id } }", json!({}), Some(&access))
        .await
        .json();
    assert_eq!(gql_code(&body), "INVALID_TOKEN");
}

async fn every_graphql_error_carries_a_code(db: Db) {
    let app = spawn_app(db).await;
    app.sign_up("coded").await;
    // Resolver errors: 200 with the contract's codes.
    let reply = app.graphql("{ me { id } }", json!({}), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(gql_code(&reply.json()), "INVALID_TOKEN");
    let reply = app
        .graphql(
            "mutation { issueToken(input: {userId: \"coded\", password: \"wrong-password\"}) { accessToken } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(gql_code(&reply.json()), "AUTHENTICATION_FAILED");
    let reply = app
        .graphql(
            "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
            json!({"i": {"userId": "coded", "password": "password123", "name": "a", "age": 3, "guardianConsent": true}}),
            None,
        )
        .await;
    assert_eq!(gql_code(&reply.json()), "CONFLICT");
    // Requests that cannot be parsed or validated: 400, VALIDATION_ERROR.
    for query in ["{ me { id ", "{ nothing }", "{ me { password } }"] {
        let reply = app.graphql(query, json!({}), None).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert_eq!(gql_code(&reply.json()), "VALIDATION_ERROR");
    }
    let reply = app
        .graphql(
            "mutation($i: SignUpInput!) { signUp(input: $i) { id } }",
            json!({"i": {"userId": "x"}}),
            None,
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(gql_code(&reply.json()), "VALIDATION_ERROR");
    // Over 1 MiB: 413 with the code, in GraphQL's error shape.
    let reply = app
        .send(
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"query": "{{ me {{ id }} }}", "variables": {{"x": "{}"}}}}"#,
                    "a".repeat(1024 * 1024)
                )),
        )
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(gql_code(&reply.json()), "PAYLOAD_TOO_LARGE");
    // Not a GraphQL request at all.
    let reply = app
        .send(
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("[1,2"),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(gql_code(&reply.json()), "VALIDATION_ERROR");
}

async fn get_is_for_queries_only(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("getter").await;
    let reply = app
        .send(
            app.client
                .get(app.url("/graphql"))
                .header("graphql-require-preflight", "1")
                .query(&[("query", "{ me { name } }")])
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["data"]["me"]["name"], "민준");
    let reply = app
        .send(
            app.client
                .get(app.url("/graphql"))
                .header("graphql-require-preflight", "1")
                .query(&[("query", "mutation { deleteAccount }")])
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(gql_code(&reply.json()), "METHOD_NOT_ALLOWED");
    // The account survived.
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_ok(200);
    // A browser gets a page; the SDL is served.
    let page = app
        .send(
            app.client
                .get(app.url("/graphql"))
                .header("graphql-require-preflight", "1")
                .header("accept", "text/html"),
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<html"));
    let sdl = app.get("/graphql/schema.graphql", None).await;
    assert_eq!(sdl.status, 200);
    assert!(sdl.text.contains("type User"));
}

/// `Story`, `Chapter` and `File` resolve plain selections on a synchronous path
/// (`src/graphql/plain.rs`); everything else takes async-graphql's generic path. The
/// same selections, once plain and once behind inline fragments (always generic), must
/// give the same answer, for a page and for one story; aliases, repeated keys and
/// directives must behave as GraphQL says.
async fn plain_and_generic_paths_agree(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("plain.path").await;
    let full = app
        .seed_story(
            &token,
            Seed {
                title: Some("별빛 호수"),
                status: StoryStatus::Completed,
                chapters: 3,
                audio: true,
                ..Seed::default()
            },
        )
        .await;
    app.seed_story(
        &token,
        Seed {
            status: StoryStatus::Failed,
            chapters: 1,
            ..Seed::default()
        },
    )
    .await;
    let file = "object type url expiryTime contentType __typename";
    let chapter = |file: &str| {
        format!(
            "id object chapterNumber title content image {{ {file} }} audio {{ {file} }} __typename"
        )
    };
    let story = |chapter: &str| {
        format!(
            "id object ownerId title status chapters {{ {chapter} }} createdAt updatedAt \
             failureReason conversationId theme characters length chapterCount __typename"
        )
    };
    let plain = story(&chapter(file));
    let generic = format!(
        "... on Story {{ {} }}",
        story(&format!(
            "... on Chapter {{ {} }}",
            chapter(&format!("... on File {{ {file} }}"))
        ))
    );
    let query = |selection: &str| {
        format!(
            "query($id: ID!) {{ stories(first: 10) {{ edges {{ node {{ {selection} }} }} }} \
             story(id: $id) {{ {selection} }} }}"
        )
    };
    let a = app
        .graphql(&query(&plain), json!({"id": full}), Some(&token))
        .await;
    let b = app
        .graphql(&query(&generic), json!({"id": full}), Some(&token))
        .await;
    let (a_json, b_json) = (a.json(), b.json());
    assert!(a_json.get("errors").is_none(), "{a_json}");
    assert_eq!(a_json, b_json);
    // Not two equal empties: the page has both stories, the story its media.
    let one = &a_json["data"]["story"];
    assert_eq!(
        a_json["data"]["stories"]["edges"].as_array().unwrap().len(),
        2
    );
    assert_eq!(one["__typename"], "Story");
    assert_eq!(one["title"], "별빛 호수");
    assert_eq!(one["status"], "completed");
    assert_eq!(one["chapters"].as_array().unwrap().len(), 3);
    assert_eq!(one["chapters"][2]["chapterNumber"], 3);
    assert_eq!(one["chapters"][0]["image"]["__typename"], "File");
    assert!(
        one["chapters"][0]["audio"]["url"]
            .as_str()
            .unwrap()
            .contains("md5=")
    );
    let failed = &a_json["data"]["stories"]["edges"][0]["node"];
    assert_eq!(failed["status"], "failed");
    assert!(failed["title"].is_null());
    assert!(failed["chapters"][0]["audio"].is_null());
    assert!(failed["failureReason"].is_string());
    // Keys come in selection order on the wire (GraphQL §7.2.2).
    let at = |key: &str| a.text.find(&format!("\"{key}\":")).unwrap();
    assert!(at("ownerId") < at("chapters") && at("chapters") < at("chapterCount"));

    // Aliases; a key selected twice (the generic path merges the two selections);
    // @skip and @include.
    let body = app
        .graphql(
            "query($id: ID!, $no: Boolean!) { story(id: $id) { a: id b: id title @skip(if: true) \
             chapters { image { url } image { contentType } n: chapterNumber \
             audio @include(if: $no) { url } } } }",
            json!({"id": full, "no": false}),
            Some(&token),
        )
        .await
        .json();
    assert!(body.get("errors").is_none(), "{body}");
    let one = &body["data"]["story"];
    assert_eq!(one["a"], full.to_string());
    assert_eq!(one["b"], full.to_string());
    assert!(one.get("title").is_none(), "{one}");
    let first = &one["chapters"][0];
    assert_eq!(first["n"], 1);
    assert!(first.get("audio").is_none(), "{first}");
    assert!(first["image"]["url"].is_string(), "{first}");
    assert_eq!(first["image"]["contentType"], "image/svg+xml");
}

db_tests!(
    accounts_work_end_to_end_in_graphql,
    plain_and_generic_paths_agree,
    every_graphql_error_carries_a_code,
    get_is_for_queries_only,
);

#[test]
fn schema_graphql_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == jjongal::graphql::sdl(),
        "schema.graphql is stale: run `cargo run -- print-schema > schema.graphql`"
    );
}
