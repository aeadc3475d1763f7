//! The story library over REST and GraphQL: create, read, rename, delete, retry;
//! validation; ownership on every route; REST and GraphQL agreeing.

use jjongal::domain::conversations::ConversationChild;
use jjongal::domain::stories::StoryStatus;
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{Db, Seed, gql_code, spawn_app};

const GQL_STORY: &str = "id object ownerId title status createdAt updatedAt \
    chapters { id object chapterNumber title content \
      image { object type url expiryTime } audio { object type url expiryTime } }";

/// A GraphQL story in the REST spelling, to compare the two doors.
fn gql_to_rest(story: &Value) -> Value {
    fn file(f: &Value) -> Value {
        if f.is_null() {
            return Value::Null;
        }
        json!({"object": f["object"], "type": f["type"], "url": f["url"], "expiry_time": f["expiryTime"]})
    }
    json!({
        "id": story["id"], "object": story["object"], "owner_id": story["ownerId"],
        "title": story["title"], "status": story["status"],
        "created_at": story["createdAt"], "updated_at": story["updatedAt"],
        "chapters": story["chapters"].as_array().unwrap().iter().map(|c| json!({
            "id": c["id"], "object": c["object"], "chapter_number": c["chapterNumber"],
            "title": c["title"], "content": c["content"],
            "image": file(&c["image"]), "audio": file(&c["audio"]),
        })).collect::<Vec<_>>(),
    })
}

async fn create_story_answers_202_with_a_pending_story(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("creator").await;
    let me = app
        .get("/api/v1/users/me", Some(&token))
        .await
        .assert_ok(200);
    let reply = app
        .post_json(
            "/api/v1/stories",
            &json!({"user_preferences": {"theme": "모험", "characters": ["용감한 토끼", "지혜로운 거북이"], "length": "medium"},
                    "conversation_id": null}),
            Some(&token),
        )
        .await;
    let story = reply.assert_ok(202);
    let mut keys: Vec<_> = story.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "chapters",
            "created_at",
            "id",
            "object",
            "owner_id",
            "status",
            "title",
            "updated_at"
        ]
    );
    assert_eq!(story["object"], "story");
    assert_eq!(story["status"], "pending");
    assert_eq!(story["title"], Value::Null);
    assert_eq!(story["chapters"], json!([]));
    assert_eq!(story["owner_id"], me["id"]);
    assert_eq!(story["created_at"], story["updated_at"]);

    // Length decides the chapter count; it defaults to medium; characters are optional.
    for (length, chapters) in [
        (Some("short"), 3),
        (Some("medium"), 5),
        (Some("long"), 7),
        (None, 5),
    ] {
        let mut prefs = json!({"theme": "바다"});
        if let Some(l) = length {
            prefs["length"] = json!(l);
        }
        let story = app
            .post_json(
                "/api/v1/stories",
                &json!({"user_preferences": prefs}),
                Some(&token),
            )
            .await
            .assert_ok(202);
        let body = app
            .graphql(
                "query($id: ID!) { story(id: $id) { chapterCount length characters } }",
                json!({"id": story["id"]}),
                Some(&token),
            )
            .await
            .json();
        assert_eq!(
            body["data"]["story"]["chapterCount"], chapters,
            "{length:?}"
        );
        assert_eq!(body["data"]["story"]["characters"], json!([]));
    }
}

async fn create_story_validates_its_input(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("validator").await;
    let cases = [
        json!({}),
        json!({"user_preferences": {}}),
        json!({"user_preferences": {"theme": ""}}),
        json!({"user_preferences": {"theme": "   "}}),
        json!({"user_preferences": {"theme": "가".repeat(201)}}),
        json!({"user_preferences": {"theme": "숲", "length": "huge"}}),
        json!({"user_preferences": {"theme": "숲", "characters": "토끼"}}),
        json!({"user_preferences": {"theme": "숲", "characters": [""]}}),
        json!({"user_preferences": {"theme": "숲", "characters": ["가".repeat(101)]}}),
        json!({"user_preferences": {"theme": "숲", "characters": (0..11).map(|i| format!("친구{i}")).collect::<Vec<_>>()}}),
        json!({"user_preferences": {"theme": "숲", "mood": "happy"}}),
        json!({"user_preferences": {"theme": "숲"}, "extra": 1}),
        json!({"user_preferences": {"theme": "숲"}, "conversation_id": "not-a-uuid"}),
        json!({"user_preferences": {"theme": "숲"}, "conversation_id": ""}),
        json!({"user_preferences": {"theme": "숲"}, "conversation_id": 42}),
    ];
    for body in cases {
        let reply = app.post_json("/api/v1/stories", &body, Some(&token)).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        reply.assert_error(400, "VALIDATION_ERROR");
    }
    // Boundaries that are fine.
    app.post_json(
        "/api/v1/stories",
        &json!({"user_preferences": {"theme": "가".repeat(200),
                "characters": (0..10).map(|_| "나".repeat(100)).collect::<Vec<_>>()}}),
        Some(&token),
    )
    .await
    .assert_ok(202);
    // No token.
    app.post_json(
        "/api/v1/stories",
        &json!({"user_preferences": {"theme": "숲"}}),
        None,
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    // A conversation that does not exist.
    app.post_json(
        "/api/v1/stories",
        &json!({"user_preferences": {"theme": "숲"}, "conversation_id": uuid::Uuid::new_v4()}),
        Some(&token),
    )
    .await
    .assert_error(404, "RESOURCE_NOT_FOUND");
    // Nothing but the one valid story was created.
    let list = app
        .get("/api/v1/stories", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
}

async fn stories_use_only_the_callers_conversations(db: Db) {
    let app = spawn_app(db).await;
    let alice = app.new_account("alice").await;
    let bob = app.new_account("bob").await;
    let alice_user = app.user(&alice).await;
    let conversation = app
        .domain
        .conversations()
        .create_conversation(
            &alice_user,
            ConversationChild {
                name: Some("하린".into()),
                age: Some(5),
                interests: vec!["공주".into()],
            },
        )
        .await
        .unwrap()
        .id;
    let body = json!({"user_preferences": {"theme": "마법"}, "conversation_id": conversation});
    app.post_json("/api/v1/stories", &body, Some(&bob))
        .await
        .assert_error(403, "INSUFFICIENT_PERMISSION");
    let story = app
        .post_json("/api/v1/stories", &body, Some(&alice))
        .await
        .assert_ok(202);
    // The story is for the conversation's child, not the account's default child.
    let stored = app
        .domain
        .stories()
        .story(&alice_user, story["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.child_name, "하린");
    assert_eq!(stored.child_age, 5);
    assert_eq!(stored.conversation_id, Some(conversation));
    // Same rule in GraphQL.
    let reply = app
        .graphql(
            "mutation($c: ID) { createStory(input: {userPreferences: {theme: \"숲\"}, conversationId: $c}) { id } }",
            json!({"c": conversation}),
            Some(&bob),
        )
        .await;
    assert_eq!(gql_code(&reply.json()), "INSUFFICIENT_PERMISSION");
}

async fn read_rename_delete_a_story(db: Db) {
    // One pooled connection: a path taking a second one while holding one would deadlock.
    let app = crate::helpers::spawn_app_with(db, &["--database-pool-size", "1"]).await;
    let token = app.new_account("owner").await;
    let id = app
        .seed_story(
            &token,
            Seed {
                title: Some("달님 이야기"),
                status: StoryStatus::Completed,
                chapters: 3,
                audio: true,
                ..Seed::default()
            },
        )
        .await;
    let path = format!("/api/v1/stories/{id}");
    let story = app.get(&path, Some(&token)).await.assert_ok(200);
    assert_eq!(story["status"], "completed");
    assert_eq!(story["title"], "달님 이야기");
    let chapters = story["chapters"].as_array().unwrap();
    assert_eq!(chapters.len(), 3);
    for (i, chapter) in chapters.iter().enumerate() {
        let mut keys: Vec<_> = chapter.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "audio",
                "chapter_number",
                "content",
                "id",
                "image",
                "object",
                "title"
            ]
        );
        assert_eq!(chapter["object"], "chapter");
        assert_eq!(chapter["chapter_number"], i as i64 + 1);
        for kind in ["image", "audio"] {
            let file = &chapter[kind];
            let mut keys: Vec<_> = file.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, ["expiry_time", "object", "type", "url"]);
            assert_eq!(file["object"], "file");
            assert_eq!(file["type"], "internal");
            assert!(
                file["url"]
                    .as_str()
                    .unwrap()
                    .starts_with("http://localhost:8000/media/")
            );
        }
    }

    // Rename: the guardian's title wins, updated_at moves.
    let renamed = app
        .patch_json(&path, &json!({"title": "우리 가족 이야기"}), Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(renamed["title"], "우리 가족 이야기");
    assert!(renamed["updated_at"].as_str() >= story["updated_at"].as_str());
    app.domain
        .stories()
        .set_generated_title(id, "생성된 제목")
        .await
        .unwrap();
    let after = app.get(&path, Some(&token)).await.assert_ok(200);
    assert_eq!(after["title"], "우리 가족 이야기");

    for body in [
        json!({}),
        json!({"title": ""}),
        json!({"title": "  "}),
        json!({"title": null}),
        json!({"title": "가".repeat(201)}),
        json!({"title": 7}),
        json!({"title": "새 제목", "status": "completed"}),
    ] {
        app.patch_json(&path, &body, Some(&token))
            .await
            .assert_error(400, "VALIDATION_ERROR");
    }

    // Delete: 204, no body; then it is gone everywhere.
    let reply = app.delete(&path, Some(&token)).await;
    assert_eq!(reply.status, 204);
    assert!(reply.text.is_empty());
    app.get(&path, Some(&token))
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
    app.delete(&path, Some(&token))
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
}

async fn every_story_route_checks_ids_and_ownership(db: Db) {
    let app = spawn_app(db).await;
    let owner = app.new_account("owner").await;
    let intruder = app.new_account("intruder").await;
    let id = app
        .seed_story(
            &owner,
            Seed {
                status: StoryStatus::Failed,
                chapters: 1,
                ..Seed::default()
            },
        )
        .await;
    let missing = uuid::Uuid::new_v4();
    let title = json!({"title": "가로챈 제목"});
    for (who, target, status, code) in [
        (&intruder, id.to_string(), 403, "INSUFFICIENT_PERMISSION"),
        (&owner, missing.to_string(), 404, "RESOURCE_NOT_FOUND"),
        (&owner, "not-a-uuid".to_string(), 400, "VALIDATION_ERROR"),
    ] {
        let path = format!("/api/v1/stories/{target}");
        app.get(&path, Some(who)).await.assert_error(status, code);
        app.patch_json(&path, &title, Some(who))
            .await
            .assert_error(status, code);
        app.delete(&path, Some(who))
            .await
            .assert_error(status, code);
        for op in [
            "query($id: ID!) { story(id: $id) { id } }",
            "mutation($id: ID!) { updateStory(id: $id, input: {title: \"x\"}) { id } }",
            "mutation($id: ID!) { deleteStory(id: $id) }",
            "mutation($id: ID!) { retryStory(id: $id) { id } }",
        ] {
            let body = app
                .graphql(op, json!({"id": target}), Some(who))
                .await
                .json();
            assert_eq!(gql_code(&body), code, "{op}");
            assert!(
                body["data"].is_null()
                    || body["data"]
                        .as_object()
                        .unwrap()
                        .values()
                        .all(Value::is_null)
            );
        }
    }
    // Without a token every route is 401.
    let path = format!("/api/v1/stories/{id}");
    app.get(&path, None)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.patch_json(&path, &title, None)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.delete(&path, None)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.get("/api/v1/stories", None)
        .await
        .assert_error(401, "INVALID_TOKEN");
    // The intruder's list never shows it; the story is untouched.
    let list = app
        .get("/api/v1/stories", Some(&intruder))
        .await
        .assert_ok(200);
    assert_eq!(list["results"], json!([]));
    let story = app.get(&path, Some(&owner)).await.assert_ok(200);
    assert_eq!(story["status"], "failed");
    assert_eq!(story["title"], Value::Null);
}

async fn retry_only_failed_stories(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("retrier").await;
    let failed = app
        .seed_story(
            &token,
            Seed {
                status: StoryStatus::Failed,
                ..Seed::default()
            },
        )
        .await;
    let body = app
        .graphql(
            "query($id: ID!) { story(id: $id) { status failureReason } }",
            json!({"id": failed}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(body["data"]["story"]["status"], "failed");
    assert_eq!(body["data"]["story"]["failureReason"], "테스트 실패");
    let body = app
        .graphql(
            "mutation($id: ID!) { retryStory(id: $id) { status failureReason } }",
            json!({"id": failed}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(body["data"]["retryStory"]["status"], "pending");
    assert_eq!(body["data"]["retryStory"]["failureReason"], Value::Null);
    // Pending (and any other non-failed status) cannot be retried.
    let body = app
        .graphql(
            "mutation($id: ID!) { retryStory(id: $id) { status } }",
            json!({"id": failed}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(gql_code(&body), "CONFLICT");
    let completed = app
        .seed_story(
            &token,
            Seed {
                status: StoryStatus::Completed,
                ..Seed::default()
            },
        )
        .await;
    let body = app
        .graphql(
            "mutation($id: ID!) { retryStory(id: $id) { status } }",
            json!({"id": completed}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(gql_code(&body), "CONFLICT");
}

async fn rest_and_graphql_return_the_same_stories(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("differ").await;
    for (i, status) in [
        StoryStatus::Completed,
        StoryStatus::Failed,
        StoryStatus::Pending,
    ]
    .into_iter()
    .enumerate()
    {
        app.seed_story(
            &token,
            Seed {
                title: (i != 2).then_some("같은 이야기"),
                status,
                chapters: 2 - i as i32,
                audio: i == 0,
                ..Seed::default()
            },
        )
        .await;
    }
    // The list, page by page, both ways.
    let mut rest_cursor: Option<String> = None;
    let mut gql_cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/stories?page_size=2&sort_by=title&order=asc".to_string();
        if let Some(c) = &rest_cursor {
            path.push_str(&format!("&start_cursor={c}"));
        }
        let rest = app.get(&path, Some(&token)).await.assert_ok(200);
        let body = app
            .graphql(
                &format!("query($after: String) {{ stories(first: 2, after: $after, sortBy: title, order: asc) {{ edges {{ cursor node {{ {GQL_STORY} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"),
                json!({"after": gql_cursor}),
                Some(&token),
            )
            .await
            .json();
        let conn = &body["data"]["stories"];
        let gql_results: Vec<Value> = conn["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| gql_to_rest(&e["node"]))
            .collect();
        assert_eq!(rest["results"], json!(gql_results));
        assert_eq!(rest["has_more"], conn["pageInfo"]["hasNextPage"]);
        if rest["has_more"] == json!(true) {
            // The same cursors on both doors.
            assert_eq!(rest["next_cursor"], conn["pageInfo"]["endCursor"]);
            assert_eq!(
                conn["edges"].as_array().unwrap().last().unwrap()["cursor"],
                conn["pageInfo"]["endCursor"]
            );
            rest_cursor = rest["next_cursor"].as_str().map(str::to_string);
            gql_cursor = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
        } else {
            assert_eq!(rest["next_cursor"], Value::Null);
            break;
        }
    }
    // Each story, both ways.
    let list = app
        .get("/api/v1/stories", Some(&token))
        .await
        .assert_ok(200);
    for story in list["results"].as_array().unwrap() {
        let id = story["id"].as_str().unwrap();
        let rest = app
            .get(&format!("/api/v1/stories/{id}"), Some(&token))
            .await
            .assert_ok(200);
        let body = app
            .graphql(
                &format!("query($id: ID!) {{ story(id: $id) {{ {GQL_STORY} }} }}"),
                json!({"id": id}),
                Some(&token),
            )
            .await
            .json();
        assert_eq!(rest, gql_to_rest(&body["data"]["story"]));
        assert_eq!(&rest, story);
    }
    // Creating both ways gives the same story back (but for ids and times).
    let rest = app
        .post_json(
            "/api/v1/stories",
            &json!({"user_preferences": {"theme": "같은 주제", "characters": ["곰"], "length": "long"}}),
            Some(&token),
        )
        .await
        .assert_ok(202);
    let body = app
        .graphql(
            &format!("mutation {{ createStory(input: {{userPreferences: {{theme: \"같은 주제\", characters: [\"곰\"], length: long}}}}) {{ {GQL_STORY} }} }}"),
            json!({}),
            Some(&token),
        )
        .await
        .json();
    let mut gql = gql_to_rest(&body["data"]["createStory"]);
    let mut rest = rest;
    for v in [&mut gql, &mut rest] {
        for key in ["id", "created_at", "updated_at"] {
            assert!(v[key].is_string());
            v[key] = Value::Null;
        }
    }
    assert_eq!(rest, gql);
    // Rename both ways gives the same shape back.
    let id = list["results"][0]["id"].as_str().unwrap();
    let rest = app
        .patch_json(
            &format!("/api/v1/stories/{id}"),
            &json!({"title": "새 이름"}),
            Some(&token),
        )
        .await
        .assert_ok(200);
    let body = app
        .graphql(
            &format!("mutation($id: ID!) {{ updateStory(id: $id, input: {{title: \"새 이름\"}}) {{ {GQL_STORY} }} }}"),
            json!({"id": id}),
            Some(&token),
        )
        .await
        .json();
    let gql = gql_to_rest(&body["data"]["updateStory"]);
    assert_eq!(rest["title"], gql["title"]);
    assert_eq!(rest["chapters"], gql["chapters"]);
}

async fn deleting_stories_and_accounts_removes_files(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("cleaner").await;
    let user = app.user(&token).await;
    let keep = app
        .seed_story(
            &token,
            Seed {
                chapters: 2,
                audio: true,
                ..Seed::default()
            },
        )
        .await;
    let gone = app
        .seed_story(
            &token,
            Seed {
                chapters: 2,
                audio: true,
                ..Seed::default()
            },
        )
        .await;
    let media = app.domain.media().dir().to_path_buf();
    let story_dir =
        |id: jjongal::vocabulary::StoryId| media.join(user.id.to_string()).join(id.to_string());
    let files_in = |id: jjongal::vocabulary::StoryId| {
        std::fs::read_dir(story_dir(id))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(files_in(gone), 4);
    let story = app
        .get(&format!("/api/v1/stories/{gone}"), Some(&token))
        .await
        .assert_ok(200);
    let url = story["chapters"][0]["image"]["url"]
        .as_str()
        .unwrap()
        .replace("http://localhost:8000", &app.base);
    assert_eq!(app.send(app.client.get(&url)).await.status, 200);

    assert_eq!(
        app.delete(&format!("/api/v1/stories/{gone}"), Some(&token))
            .await
            .status,
        204
    );
    assert!(!story_dir(gone).exists());
    assert_eq!(files_in(keep), 4);
    // The old signed URL now finds nothing.
    app.send(app.client.get(&url))
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");

    // Deleting the account removes every story, chapter and file it had.
    assert_eq!(
        app.delete("/api/v1/users/me", Some(&token)).await.status,
        204
    );
    assert!(!media.join(user.id.to_string()).exists());
    let again = app.new_account("cleaner").await;
    let list = app
        .get("/api/v1/stories", Some(&again))
        .await
        .assert_ok(200);
    assert_eq!(list["results"], json!([]));
}

/// Ids are read as the service writes them (lower-case, hyphenated): the same UUID
/// stored in another spelling is a load error (500, its cause logged), not a story that
/// silently stops matching lookups and cursors.
async fn ids_in_another_spelling_are_load_errors(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("id.spelling").await;
    let story = app.create_story(&token, "숲").await;
    let id = story["id"].as_str().unwrap().to_string();
    let listed = app
        .get("/api/v1/stories", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(listed["results"][0]["id"], id.as_str());
    app.storage()
        .execute(&format!(
            "UPDATE stories SET id = '{}' WHERE id = '{id}'",
            id.to_uppercase()
        ))
        .await;
    let reply = app.get("/api/v1/stories", Some(&token)).await;
    reply.assert_error(500, "SERVER_ERROR");
}

/// The chapters a read keeps in memory (`store::chapter_cache`) are served only while the
/// story row shows the revision they were read at: a change made anywhere — here by SQL on
/// a connection of the test's own, as another process or a tool would — is read at once
/// by every door and every process, with no notification involved.
async fn chapters_changed_anywhere_are_read_at_once(db: Db) {
    let app = spawn_app(db).await;
    let other = crate::helpers::spawn_app_sharing(&app, &[]).await;
    let token = app.new_account("cache.owner").await;
    let stranger = app.new_account("cache.stranger").await;
    let id = app
        .seed_story(
            &token,
            Seed {
                title: Some("별 이야기"),
                status: StoryStatus::Completed,
                chapters: 3,
                audio: true,
                ..Seed::default()
            },
        )
        .await;
    let path = format!("/api/v1/stories/{id}");
    let contents = |story: &Value| -> Vec<String> {
        story["chapters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["content"].as_str().unwrap().to_string())
            .collect()
    };
    // A story without its files' signed URLs (signed per answer).
    let bare = |story: &Value| -> Value {
        let mut story = story.clone();
        for chapter in story["chapters"].as_array_mut().unwrap() {
            for kind in ["image", "audio"] {
                if let Some(file) = chapter[kind].as_object_mut() {
                    file.remove("url");
                    file.remove("expiry_time");
                }
            }
        }
        story
    };
    // Every read, each one on its own: on the first process the page is the first to
    // meet a change, on the second the story is (each read keeps what it read).
    let read_everywhere = || async {
        let mut seen = Vec::new();
        for (n, server) in [&app, &other].into_iter().enumerate() {
            let page = || async {
                let listed = server
                    .get("/api/v1/stories", Some(&token))
                    .await
                    .assert_ok(200);
                assert_eq!(listed["results"][0]["id"], id.to_string());
                listed["results"][0].clone()
            };
            let story = || async { server.get(&path, Some(&token)).await.assert_ok(200) };
            let (listed, story) = if n == 0 {
                let listed = page().await;
                (listed, story().await)
            } else {
                let story = story().await;
                (page().await, story)
            };
            let gql = server
                .graphql(
                    &format!("query($id: ID!) {{ story(id: $id) {{ {GQL_STORY} }} }}"),
                    json!({ "id": id }),
                    Some(&token),
                )
                .await
                .json();
            assert!(gql["errors"].is_null(), "{gql}");
            seen.push(bare(&listed));
            seen.push(bare(&gql_to_rest(&gql["data"]["story"])));
            seen.push(bare(&story));
        }
        seen
    };
    // Read twice on both processes: the second reads are served from their caches.
    let before = read_everywhere().await;
    assert!(before.iter().all(|s| *s == before[0]), "{before:?}");
    assert_eq!(contents(&before[0]).len(), 3);
    let again = read_everywhere().await;
    assert!(again.iter().all(|s| *s == before[0]), "{again:?}");
    // Both processes keep the chapters (the reads above were served from them), at one
    // revision: the database's.
    let kept = |server: &crate::helpers::TestApp| server.domain.pool().kept_revision(id);
    let revision = kept(&app).expect("the chapters are kept");
    assert_eq!(kept(&other), Some(revision));

    // New words in chapter 2.
    app.storage()
        .execute(&format!(
            "UPDATE chapters SET content = '바뀐 둘째 장' WHERE story_id = '{id}' AND chapter_number = 2"
        ))
        .await;
    for story in read_everywhere().await {
        let mut expected = contents(&before[0]);
        expected[1] = "바뀐 둘째 장".into();
        assert_eq!(contents(&story), expected);
    }
    // Kept again, under the new revision.
    let changed = kept(&app).expect("the new chapters are kept");
    assert!(changed > revision, "{changed} after {revision}");
    assert_eq!(kept(&other), Some(changed));
    // A narration unlinked, then a chapter gone.
    app.storage()
        .execute(&format!(
            "UPDATE chapters SET audio_file_id = NULL, audio_path = NULL, audio_content_type = NULL \
             WHERE story_id = '{id}' AND chapter_number = 1"
        ))
        .await;
    for story in read_everywhere().await {
        assert!(story["chapters"][0]["audio"].is_null(), "{story}");
        assert!(story["chapters"][1]["audio"].is_object());
    }
    app.storage()
        .execute(&format!(
            "DELETE FROM chapters WHERE story_id = '{id}' AND chapter_number = 3"
        ))
        .await;
    for story in read_everywhere().await {
        assert_eq!(story["chapters"].as_array().unwrap().len(), 2);
    }
    app.storage()
        .execute(&format!(
            "INSERT INTO chapters (id, story_id, chapter_number, title, content, created_at) \
             VALUES ('{}', '{id}', 3, '3장', '새로 쓴 셋째 장', '2026-12-06 00:00:00')",
            uuid::Uuid::new_v4()
        ))
        .await;
    for story in read_everywhere().await {
        assert_eq!(contents(&story)[2], "새로 쓴 셋째 장");
        assert!(story["chapters"][2]["image"].is_null());
    }
    // Access is checked on the fresh row, never on what is kept: given away, the story is
    // the other account's at once, on both processes.
    let stranger_id = app
        .get("/api/v1/users/me", Some(&stranger))
        .await
        .assert_ok(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.storage()
        .execute(&format!(
            "UPDATE stories SET owner_id = '{stranger_id}' WHERE id = '{id}'"
        ))
        .await;
    for server in [&app, &other] {
        server
            .get(&path, Some(&token))
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSION");
        let theirs = server.get(&path, Some(&stranger)).await.assert_ok(200);
        assert_eq!(theirs["chapters"].as_array().unwrap().len(), 3);
    }
}

db_tests!(
    ids_in_another_spelling_are_load_errors,
    chapters_changed_anywhere_are_read_at_once,
    create_story_answers_202_with_a_pending_story,
    create_story_validates_its_input,
    stories_use_only_the_callers_conversations,
    read_rename_delete_a_story,
    every_story_route_checks_ids_and_ownership,
    retry_only_failed_stories,
    rest_and_graphql_return_the_same_stories,
    deleting_stories_and_accounts_removes_files,
);
