//! GraphQL's abuse limits (depth, complexity, aliases, root fields, tokens, text sizes,
//! introspection, CSRF) and the `/graphql/ws` protocol rules (4400/4401/4403/4408/4409/
//! 4429, subscription caps, frame sizes).

use std::time::Instant;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::db_tests;
use crate::helpers::ws::{self, Socket, closed, init, recv, send};
use crate::helpers::{Db, Reply, TestApp, gql_code, spawn_app, spawn_app_with};

/// graphql-js's `getIntrospectionQuery()` with every option on — what GraphiQL sends —
/// and a type reference nine levels deep.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    description
    queryType { name kind }
    mutationType { name kind }
    subscriptionType { name kind }
    types { ...FullType }
    directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL isOneOf
  fields(includeDeprecated: true) {
    name description args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name
      ofType { kind name } } } } } } } } }
}
"#;

/// A 400 refusal before execution, with `VALIDATION_ERROR` and a message containing
/// `needle`; returns how long it took.
#[track_caller]
fn assert_refused(reply: &Reply, needle: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text);
    let body = reply.json();
    assert_eq!(gql_code(&body), "VALIDATION_ERROR", "{body}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{message:?} should mention {needle:?}"
    );
}

async fn bombs_are_refused_quickly_and_the_server_stays_healthy(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("bomber").await;
    let started = Instant::now();

    // A depth bomb, within the token budget, is refused before it reaches the parser.
    let deep = format!("{{{}}}", "me { id ".repeat(400) + &"}".repeat(400));
    assert_refused(
        &app.graphql(&deep, json!({}), Some(&token)).await,
        "nests deeper",
    );
    // Shallow enough to parse, deeper than the depth limit (16).
    let depth17 = format!(
        "{{ {} }}",
        "__schema { types { fields { type { ".to_string()
            + &"ofType { ".repeat(13)
            + "name"
            + &" }".repeat(13)
            + " } } } }"
    );
    assert_refused(
        &app.graphql(&depth17, json!({}), Some(&token)).await,
        "deep",
    );

    // The same bomb by GET: refused before anything parses it (deciding "query or not"
    // parses the text; a deep enough document would exhaust the parser's stack).
    let deep_get = "{a".repeat(3_000) + &"}".repeat(3_000);
    let reply = app
        .send(
            app.client
                .get(app.url("/graphql"))
                .query(&[("query", deep_get.as_str())])
                .header("graphql-require-preflight", "1"),
        )
        .await;
    assert_refused(&reply, "nests deeper");
    // Numbers count as GraphQL reads them: `0-0-0-…` is many tokens, not one.
    let numbers = format!(
        "{{ stories(first: [{}]) {{ pageInfo {{ hasNextPage }} }} }}",
        "0".to_string() + &"-0".repeat(6000)
    );
    assert_refused(
        &app.graphql(&numbers, json!({}), Some(&token)).await,
        "tokens",
    );
    // An alias bomb.
    let aliases: String = (0..2000).map(|i| format!("a{i}: me {{ id }} ")).collect();
    assert_refused(
        &app.graphql(&format!("{{ {aliases} }}"), json!({}), Some(&token))
            .await,
        "tokens",
    );
    let aliases: String = (0..51).map(|i| format!("a{i}: __typename ")).collect();
    assert_refused(
        &app.graphql(&format!("{{ {aliases} }}"), json!({}), Some(&token))
            .await,
        "aliases",
    );
    // Too many root fields (fragments count what they select).
    let roots =
        "{ ...R ...R } fragment R on QueryRoot { me { id } stories { pageInfo { hasNextPage } } \
                 conversations { pageInfo { hasNextPage } } } "
            .to_string();
    assert_eq!(
        app.graphql(&roots, json!({}), Some(&token)).await.status,
        200
    );
    let many: String = (0..21).map(|_| "__typename ").collect();
    assert_refused(
        &app.graphql(&format!("{{ {many} }}"), json!({}), Some(&token))
            .await,
        "root fields",
    );
    // Nested list literals: beyond the nesting cap (max(depth, recursion) + 8 = 40) they
    // never reach the parser; below it they are an ordinary validation error.
    let lists = |n: usize| {
        format!(
            "{{ stories(first: {}1{}) {{ pageInfo {{ hasNextPage }} }} }}",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    assert_refused(
        &app.graphql(&lists(50), json!({}), Some(&token)).await,
        "nests deeper",
    );
    assert_refused(
        &app.graphql(&lists(30), json!({}), Some(&token)).await,
        "first",
    );
    // Fragments spreading fragments deeper than the recursion limit (32).
    let mut chain = String::from("{ ...F0 } ");
    for i in 0..34 {
        chain.push_str(&format!("fragment F{i} on QueryRoot {{ ...F{} }} ", i + 1));
    }
    chain.push_str("fragment F34 on QueryRoot { __typename }");
    assert_refused(
        &app.graphql(&chain, json!({}), Some(&token)).await,
        "spread inside each other more than 32 deep",
    );
    // A fragment-expansion bomb (636 bytes, 7 fragments each spreading the next 10
    // times: 10⁷ fields), anonymous: refused by counting each fragment once, before
    // validation or complexity could walk the expansion (which took 7 s of CPU).
    let mut bomb = String::from("query { ...F0 }\n");
    for level in 0..7 {
        let spreads = format!("...F{} ", level + 1).repeat(10);
        bomb.push_str(&format!("fragment F{level} on QueryRoot {{ {spreads}}}\n"));
    }
    bomb.push_str("fragment F7 on QueryRoot { __typename }\n");
    assert!(bomb.len() < 700, "{}", bomb.len());
    let two = tokio::join!(
        app.graphql(&bomb, json!({}), None),
        app.graphql(&bomb, json!({}), None)
    );
    assert_refused(&two.0, "more than 2000 selections");
    assert_refused(&two.1, "more than 2000 selections");
    // A fragment cycle.
    let cycle = "{ me { ...A } } fragment A on User { id ...B } fragment B on User { name ...A }";
    let reply = app.graphql(cycle, json!({}), Some(&token)).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(gql_code(&reply.json()), "VALIDATION_ERROR");
    // Complexity: a connection multiplies its selection by the page size asked for.
    let page = "stories(first: 100) { edges { node { id title status createdAt updatedAt \
                chapters { id title content chapterNumber image { url expiryTime } audio { url expiryTime } } } } }";
    // 100 × (7 chapters × 10 + 7) ≈ 7,700 each: three pages are over 20,000.
    let wide = format!("{{ a: {page} b: {page} c: {page} }}");
    assert_refused(
        &app.graphql(&wide, json!({}), Some(&token)).await,
        "complex",
    );
    let narrow = wide.replace("first: 100", "first: 5");
    assert_eq!(
        app.graphql(&narrow, json!({}), Some(&token)).await.status,
        200
    );
    // Page sizes stay capped at 100.
    let big_page = app
        .graphql(
            "{ stories(first: 1000) { edges { cursor } } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        gql_code(&big_page.json()),
        "VALIDATION_ERROR",
        "{}",
        big_page.text
    );
    // Directives per field.
    let directives = format!("{{ __typename {} }}", "@include(if: true) ".repeat(9));
    let reply = app.graphql(&directives, json!({}), Some(&token)).await;
    assert_eq!(reply.status, 400, "{}", reply.text);

    // All of it was refused before execution, and the server is healthy.
    println!("every bomb refused in {:?}", started.elapsed());
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let me = app.graphql("{ me { id } }", json!({}), Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert!(me.json()["data"]["me"]["id"].is_string());
}

/// NUL (U+0000) in any text is `400 VALIDATION_ERROR` on every door and both backends
/// (PostgreSQL's `text` cannot hold it: it used to be a 500 there, and a story with such
/// a character failed five times in the worker).
async fn nul_characters_are_refused_on_every_door(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("nul.writer").await;
    let nul = "a\u{0}b";
    // REST: sign-in, sign-up, story creation (theme, characters), PATCH, query strings.
    let refused = |reply: Reply, field: &str| {
        let message = reply.assert_error(400, "VALIDATION_ERROR");
        assert!(
            message.contains("NUL") && message.contains(field),
            "{message}"
        );
    };
    refused(
        app.post_json(
            "/api/v1/auth/token",
            &json!({"user_id": nul, "password": "password123"}),
            None,
        )
        .await,
        "user_id",
    );
    refused(
        app.post_json(
            "/api/v1/users",
            &json!({"user_id": "nul.parent", "password": "password123", "name": nul, "age": 7, "guardian_consent": true}),
            None,
        )
        .await,
        "name",
    );
    refused(
        app.post_json(
            "/api/v1/stories",
            &json!({"user_preferences": {"theme": nul, "characters": []}}),
            Some(&token),
        )
        .await,
        "user_preferences.theme",
    );
    refused(
        app.post_json(
            "/api/v1/stories",
            &json!({"user_preferences": {"theme": "숲", "characters": ["토끼", nul]}}),
            Some(&token),
        )
        .await,
        "user_preferences.characters[1]",
    );
    refused(
        app.get("/api/v1/stories?status=a%00b", Some(&token)).await,
        "status",
    );
    let story = app.create_story(&token, "바다").await;
    let path = format!("/api/v1/stories/{}", story["id"].as_str().unwrap());
    refused(
        app.patch_json(&path, &json!({"title": nul}), Some(&token))
            .await,
        "title",
    );
    // GraphQL: variables and literals.
    let create = "mutation($input: CreateStoryInput!) { createStory(input: $input) { id } }";
    let reply = app
        .graphql(
            create,
            json!({"input": {"userPreferences": {"theme": nul, "characters": []}}}),
            Some(&token),
        )
        .await;
    assert_refused(&reply, "$input.userPreferences.theme` contains a NUL");
    let inline =
        r#"mutation { createStory(input: {userPreferences: {theme: "a\u0000b"}}) { id } }"#;
    assert_refused(&app.graphql(inline, json!({}), Some(&token)).await, "NUL");
    // The conversation socket: an `error`, and the socket stays usable.
    let url = app.base.replace("http://", "ws://") + &format!("/wss/v1/audio?token={token}");
    let (mut talk, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    send(
        &mut talk,
        json!({"type": "start_conversation", "payload": {"interests": ["공룡", nul]}}),
    )
    .await;
    let error = recv(&mut talk).await;
    assert_eq!(error["error_code"], "VALIDATION_ERROR", "{error}");
    assert!(
        error["error_message"].as_str().unwrap().contains("NUL"),
        "{error}"
    );
    send(&mut talk, json!({"type": "start_conversation"})).await;
    assert_eq!(recv(&mut talk).await["type"], "conversation_started");
    send(&mut talk, json!({"type": "user_message", "text": nul})).await;
    let error = recv(&mut talk).await;
    assert_eq!(error["error_code"], "VALIDATION_ERROR", "{error}");
    // Nothing was stored: the story list holds only the one story made above, and it is
    // still titled as generated.
    let list = app
        .get("/api/v1/stories", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(list["results"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

async fn text_limits_hold_inside_variables_and_literals(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("writer").await;
    let create = "mutation($input: CreateStoryInput!) { createStory(input: $input) { id } }";
    let long = "가".repeat(10_001);
    let reply = app
        .graphql(
            create,
            json!({"input": {"userPreferences": {"theme": long, "characters": []}}}),
            Some(&token),
        )
        .await;
    assert_refused(&reply, "$input.userPreferences.theme");
    // Deep inside a list.
    let reply = app
        .graphql(
            create,
            json!({"input": {"userPreferences": {"theme": "숲", "characters": ["토끼", long]}}}),
            Some(&token),
        )
        .await;
    assert_refused(&reply, "$input.userPreferences.characters");
    // An inline literal.
    let inline = format!(
        r#"mutation {{ createStory(input: {{userPreferences: {{theme: "{long}"}}}}) {{ id }} }}"#
    );
    assert_refused(
        &app.graphql(&inline, json!({}), Some(&token)).await,
        "theme",
    );
    // Exactly 10,000 passes the gateway (and the domain's own 200-character rule answers).
    let reply = app
        .graphql(
            create,
            json!({"input": {"userPreferences": {"theme": "가".repeat(10_000), "characters": []}}}),
            Some(&token),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(gql_code(&reply.json()), "VALIDATION_ERROR");
    // Batches are not accepted.
    let batch = app
        .send(
            app.client
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body(r#"[{"query": "{ __typename }"}, {"query": "{ __typename }"}]"#),
        )
        .await;
    assert_eq!(batch.status, 400, "{}", batch.text);
    assert_eq!(gql_code(&batch.json()), "VALIDATION_ERROR");
    assert!(batch.text.contains("batched requests"), "{}", batch.text);
    // Failures before execution carry `errors` only, no `data` (GraphQL over HTTP).
    for document in [
        "{ me",
        "{ nothing }",
        "query { __typename } query { __typename }",
    ] {
        let reply = app.graphql(document, json!({}), None).await;
        assert_eq!(reply.status, 400, "{}", reply.text);
        let body = reply.json();
        assert!(body.get("data").is_none(), "{document}: {body}");
        assert_eq!(gql_code(&body), "VALIDATION_ERROR", "{document}: {body}");
    }
}

async fn browsers_cannot_send_graphql_cross_site_without_a_preflight(db: Db) {
    let app = spawn_app(db).await;
    let get = |extra: Option<(&str, &str)>| {
        let mut rb = app.client.get(app.url("/graphql?query=%7B__typename%7D"));
        if let Some((k, v)) = extra {
            rb = rb.header(k, v);
        }
        rb
    };
    // A plain GET (what an <img> or a link sends) and one with a "simple" content type.
    for extra in [None, Some(("content-type", "text/plain"))] {
        let reply = app.send(get(extra)).await;
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert_eq!(gql_code(&reply.json()), "VALIDATION_ERROR");
    }
    for extra in [
        Some(("graphql-require-preflight", "1")),
        Some(("content-type", "application/json")),
    ] {
        let reply = app.send(get(extra)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["data"]["__typename"], "QueryRoot");
    }
    // Mutations never ride on GET.
    let reply = app
        .send(
            app.client
                .get(app.url("/graphql?query=mutation%7BdeleteAccount%7D"))
                .header("graphql-require-preflight", "1"),
        )
        .await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    // Form posts and multipart are refused.
    for content_type in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ] {
        let reply = app
            .send(
                app.client
                    .post(app.url("/graphql"))
                    .header("content-type", content_type)
                    .body(r#"{"query": "mutation { deleteAccount }"}"#),
            )
            .await;
        assert_eq!(reply.status, 400, "{content_type}: {}", reply.text);
        assert_eq!(gql_code(&reply.json()), "VALIDATION_ERROR");
    }
}

async fn introspection_is_on_in_development_and_off_in_production(db: Db) {
    // Development: GraphiQL's own introspection query passes every limit.
    let app = spawn_app(db).await;
    let reply = app.graphql(INTROSPECTION, json!({}), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["__schema"]["types"].as_array().unwrap().len() > 20);
    assert_eq!(app.get("/graphql/schema.graphql", None).await.status, 200);
    // No suggestions even here: they were drawn from hidden fields too (GraphiQL's
    // completion comes from introspection, which shows each viewer their own schema).
    let typo = app
        .graphql("{ storis { edges { cursor } } }", json!({}), None)
        .await;
    assert_eq!(typo.status, 400);
    assert!(typo.text.contains("Unknown field"), "{}", typo.text);
    assert!(!typo.text.contains("Did you mean"), "{}", typo.text);
    drop(app);

    // Production: no introspection, no suggestions, no SDL.
    let secrets = [
        "--env",
        "production",
        "--jwt-secret",
        "0123456789abcdef0123456789abcdef-jwt",
        "--media-secret",
        "0123456789abcdef0123456789abcdef-media",
    ];
    let app = spawn_app_with(db, &secrets).await;
    let reply = app.graphql(INTROSPECTION, json!({}), None).await;
    let body = reply.json();
    assert!(body["data"]["__schema"].is_null(), "{body}");
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    let typename = app
        .graphql("{ __type(name: \"QueryRoot\") { name } }", json!({}), None)
        .await;
    assert!(
        typename.json()["data"]["__type"].is_null(),
        "{}",
        typename.text
    );
    let typo = app
        .graphql("{ storis { edges { cursor } } }", json!({}), None)
        .await;
    assert_eq!(typo.status, 400);
    assert!(!typo.text.contains("Did you mean"), "{}", typo.text);
    app.get("/graphql/schema.graphql", None)
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
    drop(app);

    // ...unless switched on explicitly.
    let mut args = secrets.to_vec();
    args.extend(["--graphql-introspection", "true"]);
    let app = spawn_app_with(db, &args).await;
    let reply = app.graphql(INTROSPECTION, json!({}), None).await;
    assert!(
        reply.json()["data"]["__schema"].is_object(),
        "{}",
        reply.text
    );
    assert_eq!(app.get("/graphql/schema.graphql", None).await.status, 200);
}

/// `/graphql/ws` with `protocol`.
async fn open(app: &TestApp, protocol: &str) -> Socket {
    ws::open(app, "/graphql/ws", Some(protocol)).await
}

const WATCH: &str = "subscription($id: ID!) { storyUpdated(id: $id) { status } }";

async fn the_graphql_socket_follows_graphql_transport_ws(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--graphql-ws-init-timeout-secs",
            "1",
            "--graphql-ws-max-subscriptions",
            "2",
        ],
    )
    .await;
    let token = app.new_account("protocol").await;
    let story = app.create_story(&token, "바다").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    // No connection_init in time: 4408.
    let mut s = open(&app, "graphql-transport-ws").await;
    assert_eq!(closed(&mut s).await, 4408);
    // A token that does not authenticate: 4403.
    let mut s = open(&app, "graphql-transport-ws").await;
    send(
        &mut s,
        json!({"type": "connection_init", "payload": {"token": "forged"}}),
    )
    .await;
    assert_eq!(closed(&mut s).await, 4403);
    // Subscribing before the acknowledgement: 4401.
    let mut s = open(&app, "graphql-transport-ws").await;
    send(
        &mut s,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}),
    )
    .await;
    assert_eq!(closed(&mut s).await, 4401);
    // A second connection_init: 4429.
    let mut s = open(&app, "graphql-transport-ws").await;
    init(&mut s, Some(&token)).await;
    send(&mut s, json!({"type": "connection_init"})).await;
    assert_eq!(closed(&mut s).await, 4429);
    // Not a protocol message: 4400.
    let mut s = open(&app, "graphql-transport-ws").await;
    init(&mut s, Some(&token)).await;
    send(&mut s, json!({"type": "start", "id": "1"})).await;
    assert_eq!(closed(&mut s).await, 4400);
    let mut s = open(&app, "graphql-transport-ws").await;
    s.send(Message::text("not json")).await.unwrap();
    assert_eq!(closed(&mut s).await, 4400);

    // A working connection: ping/pong, a query answered with next + complete, a
    // validation failure answered with error (no complete), the cap on operations, and
    // a duplicate id closing with 4409.
    let mut s = open(&app, "graphql-transport-ws").await;
    init(&mut s, Some(&token)).await;
    send(&mut s, json!({"type": "ping", "payload": {"n": 1}})).await;
    assert_eq!(
        recv(&mut s).await,
        json!({"type": "pong", "payload": {"n": 1}})
    );
    send(
        &mut s,
        json!({"id": "q", "type": "subscribe", "payload": {"query": "{ me { name } }"}}),
    )
    .await;
    let next = recv(&mut s).await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["payload"]["data"]["me"]["name"], "민준");
    assert_eq!(recv(&mut s).await, json!({"type": "complete", "id": "q"}));
    send(
        &mut s,
        json!({"id": "v", "type": "subscribe", "payload": {"query": "{ nope }"}}),
    )
    .await;
    let error = recv(&mut s).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        "VALIDATION_ERROR"
    );
    // A long-lived subscription holds its id (the story stays pending: no worker).
    for id in ["s1", "s2"] {
        send(&mut s, json!({"id": id, "type": "subscribe", "payload": {"query": WATCH, "variables": {"id": story}}})).await;
        let first = recv(&mut s).await;
        assert_eq!(
            first["payload"]["data"]["storyUpdated"]["status"], "pending",
            "{first}"
        );
    }
    send(&mut s, json!({"id": "s3", "type": "subscribe", "payload": {"query": WATCH, "variables": {"id": story}}})).await;
    let refused = recv(&mut s).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "s3");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "RATE_LIMIT_EXCEEDED"
    );
    // Completing one frees its slot; the id can then be used again.
    send(&mut s, json!({"id": "s1", "type": "complete"})).await;
    send(&mut s, json!({"id": "s1", "type": "subscribe", "payload": {"query": WATCH, "variables": {"id": story}}})).await;
    assert_eq!(recv(&mut s).await["id"], "s1");
    send(&mut s, json!({"id": "s2", "type": "subscribe", "payload": {"query": WATCH, "variables": {"id": story}}})).await;
    assert_eq!(closed(&mut s).await, 4409);
    // A close reason that would echo a long id is cut to fit a control frame (≤ 123 bytes).
    let mut s = open(&app, "graphql-transport-ws").await;
    init(&mut s, Some(&token)).await;
    let long_id = "가".repeat(100);
    for _ in 0..2 {
        send(&mut s, json!({"id": long_id, "type": "subscribe", "payload": {"query": WATCH, "variables": {"id": story}}})).await;
    }
    assert_eq!(recv(&mut s).await["id"], long_id.as_str());
    assert_eq!(closed(&mut s).await, 4409);
    // Deleting the account ends its connection at once with 4403 (the same code as an
    // operation of a deleted account's).
    let doomed = app.new_account("doomed").await;
    let mut s = open(&app, "graphql-transport-ws").await;
    init(&mut s, Some(&doomed)).await;
    app.delete("/api/v1/users/me", Some(&doomed)).await;
    assert_eq!(closed(&mut s).await, 4403);

    // A frame over 64 KiB: 1009.
    let mut s = open(&app, "graphql-transport-ws").await;
    init(&mut s, Some(&token)).await;
    let huge = json!({"id": "h", "type": "subscribe", "payload": {"query": "{ __typename }", "variables": {"x": "a".repeat(70_000)}}});
    let _ = s.send(Message::text(huge.to_string())).await;
    assert_eq!(closed(&mut s).await, 1009);

    // The legacy protocol has the same rules.
    let mut s = open(&app, "graphql-ws").await;
    init(&mut s, Some(&token)).await;
    send(
        &mut s,
        json!({"id": "1", "type": "start", "payload": {"query": "{ me { name } }"}}),
    )
    .await;
    let data = recv(&mut s).await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["me"]["name"], "민준");
    assert_eq!(recv(&mut s).await["type"], "complete");
    send(&mut s, json!({"type": "connection_terminate"})).await;
    assert_eq!(closed(&mut s).await, 1000);
    let mut s = open(&app, "graphql-ws").await;
    send(
        &mut s,
        json!({"type": "connection_init", "payload": {"token": "forged"}}),
    )
    .await;
    assert_eq!(recv(&mut s).await["type"], "connection_error");
    assert_eq!(closed(&mut s).await, 4403);

    // An unsupported sub-protocol is refused before the upgrade.
    let url = app.base.replace("http://", "ws://") + "/graphql/ws";
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

async fn size_limits_follow_their_configuration(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--max-body-bytes",
            "2048",
            "--max-text-chars",
            "20",
            "--graphql-ws-max-message-bytes",
            "2048",
        ],
    )
    .await;
    let token = app.new_account("small").await;
    // Bodies: 413 past the configured size, on REST and GraphQL alike.
    let padded = json!({"title": "가".repeat(1000)});
    let story = app.create_story(&token, "숲").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/stories/{story}");
    app.patch_json(&path, &padded, Some(&token))
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    let big = app
        .graphql(
            "{ __typename }",
            json!({"x": "a".repeat(3000)}),
            Some(&token),
        )
        .await;
    assert_eq!(big.status, 413, "{}", big.text);
    // Text: 400 past the configured length, naming the field, in both doors...
    let msg = app
        .patch_json(&path, &json!({"title": "가".repeat(21)}), Some(&token))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    assert!(msg.contains("title"), "{msg}");
    let reply = app
        .graphql(
            "mutation($id: ID!, $t: String!) { updateStory(id: $id, input: {title: $t}) { id } }",
            json!({"id": story, "t": "가".repeat(21)}),
            Some(&token),
        )
        .await;
    assert_refused(&reply, "longer than 20");
    app.patch_json(&path, &json!({"title": "가".repeat(20)}), Some(&token))
        .await
        .assert_ok(200);
    // ...and on the conversation socket.
    let url = app.base.replace("http://", "ws://") + &format!("/wss/v1/audio?token={token}");
    let (mut talk, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    send(
        &mut talk,
        json!({"type": "user_message", "text": "가".repeat(21)}),
    )
    .await;
    let error = recv(&mut talk).await;
    assert_eq!(error["error_code"], "VALIDATION_ERROR", "{error}");
    // /graphql/ws: a message over the configured size closes with 1009.
    let mut s = open(&app, "graphql-transport-ws").await;
    init(&mut s, Some(&token)).await;
    let huge = json!({"id": "h", "type": "subscribe", "payload": {"query": "{ __typename }", "variables": {"x": "a".repeat(3000)}}});
    let _ = s.send(Message::text(huge.to_string())).await;
    assert_eq!(closed(&mut s).await, 1009);
}

db_tests!(
    size_limits_follow_their_configuration,
    nul_characters_are_refused_on_every_door,
    bombs_are_refused_quickly_and_the_server_stays_healthy,
    text_limits_hold_inside_variables_and_literals,
    browsers_cannot_send_graphql_cross_site_without_a_preflight,
    introspection_is_on_in_development_and_off_in_production,
    the_graphql_socket_follows_graphql_transport_ws,
);
