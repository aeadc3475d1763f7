//! Keyset cursor pagination of `GET /api/v1/stories`: every sort key and order, with and
//! without a status filter, Korean titles, concurrent writers, cursor tampering.

use jjongal::vocabulary::StoryId;
use std::collections::HashSet;

use jjongal::domain::stories::StoryStatus;
use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{Db, Seed, TestApp, spawn_app};

/// Walks every page of `query`; returns the stories in order.
async fn walk(app: &TestApp, token: &str, query: &str, page_size: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/stories?page_size={page_size}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&start_cursor={c}"));
        }
        let page = app.get(&path, Some(token)).await.assert_ok(200);
        assert_eq!(page["object"], "list");
        let results = page["results"].as_array().unwrap();
        assert!(results.len() <= page_size);
        all.extend(results.iter().cloned());
        match (page["has_more"].as_bool().unwrap(), &page["next_cursor"]) {
            (true, Value::String(c)) => {
                assert!(!results.is_empty());
                cursor = Some(c.clone());
            }
            (false, Value::Null) => return all,
            other => panic!("has_more/next_cursor disagree: {other:?}"),
        }
    }
    panic!("pagination did not end");
}

fn ids(stories: &[Value]) -> Vec<String> {
    stories
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

const TITLES: [Option<&str>; 12] = [
    Some("하늘"),
    Some("가방"),
    Some("나무"),
    Some("Zebra"),
    Some("apple"),
    None,
    Some("가"),
    Some("나무"),
    None,
    Some("ㄱ자 모양"),
    Some("나무"),
    Some("가방 속 친구"),
];

async fn seed_library(app: &TestApp, token: &str) -> Vec<StoryId> {
    let statuses = [
        StoryStatus::Completed,
        StoryStatus::Failed,
        StoryStatus::Pending,
        StoryStatus::InProgress,
    ];
    let mut ids = Vec::new();
    for (i, title) in TITLES.iter().enumerate() {
        ids.push(
            app.seed_story(
                token,
                Seed {
                    title: *title,
                    status: statuses[i % 4],
                    ..Seed::default()
                },
            )
            .await,
        );
    }
    ids
}

/// The order the contract defines for titles: code points, ties by id, nulls last.
fn expected_title_order(stories: &[Value], asc: bool) -> Vec<String> {
    let mut v: Vec<(Option<String>, String)> = stories
        .iter()
        .map(|s| {
            (
                s["title"].as_str().map(str::to_string),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort_by(|a, b| match (&a.0, &b.0) {
        (None, None) => {
            if asc {
                a.1.cmp(&b.1)
            } else {
                b.1.cmp(&a.1)
            }
        }
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => {
            let o = x.cmp(y).then_with(|| a.1.cmp(&b.1));
            if asc { o } else { o.reverse() }
        }
    });
    v.into_iter().map(|(_, id)| id).collect()
}

async fn walking_pages_visits_every_story_once_in_order(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("walker").await;
    let other = app.new_account("neighbour").await;
    app.seed_story(&other, Seed::default()).await;
    let seeded: HashSet<String> = seed_library(&app, &token)
        .await
        .iter()
        .map(|u| u.to_string())
        .collect();
    let everything = walk(&app, &token, "", 100).await;
    assert_eq!(everything.len(), TITLES.len());

    for sort in ["created_at", "updated_at", "title"] {
        for order in ["asc", "desc"] {
            for status in [
                None,
                Some("completed"),
                Some("failed"),
                Some("pending"),
                Some("in_progress"),
            ] {
                let mut query = format!("sort_by={sort}&order={order}");
                if let Some(s) = status {
                    query.push_str(&format!("&status={s}"));
                }
                for page_size in [1, 3, 100] {
                    let walked = walk(&app, &token, &query, page_size).await;
                    let walked_ids = ids(&walked);
                    let unique: HashSet<_> = walked_ids.iter().cloned().collect();
                    assert_eq!(unique.len(), walked_ids.len(), "duplicates in {query}");
                    let expected_set: HashSet<String> = everything
                        .iter()
                        .filter(|s| status.is_none_or(|st| s["status"] == st))
                        .map(|s| s["id"].as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(unique, expected_set, "{query} page_size={page_size}");
                    assert!(unique.is_subset(&seeded));
                    if sort == "title" {
                        assert_eq!(
                            walked_ids,
                            expected_title_order(&walked, order == "asc"),
                            "{query}"
                        );
                    } else {
                        let keys: Vec<&str> =
                            walked.iter().map(|s| s[sort].as_str().unwrap()).collect();
                        let mut sorted = keys.clone();
                        sorted.sort();
                        if order == "desc" {
                            sorted.reverse();
                        }
                        assert_eq!(keys, sorted, "{query}");
                    }
                }
            }
        }
    }
    // The default is created_at, newest first.
    let default = ids(&walk(&app, &token, "", 5).await);
    assert_eq!(
        default,
        ids(&walk(&app, &token, "sort_by=created_at&order=desc", 5).await)
    );
}

async fn korean_titles_sort_by_code_point_with_nulls_last(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("hangul").await;
    for title in [
        Some("하늘"),
        Some("가방"),
        None,
        Some("나무"),
        Some("Zebra"),
        Some("apple"),
        Some("가"),
    ] {
        app.seed_story(
            &token,
            Seed {
                title,
                ..Seed::default()
            },
        )
        .await;
    }
    let titles = |stories: Vec<Value>| -> Vec<Value> {
        stories.iter().map(|s| s["title"].clone()).collect()
    };
    assert_eq!(
        titles(walk(&app, &token, "sort_by=title&order=asc", 2).await),
        vec![
            json!("Zebra"),
            json!("apple"),
            json!("가"),
            json!("가방"),
            json!("나무"),
            json!("하늘"),
            Value::Null
        ]
    );
    assert_eq!(
        titles(walk(&app, &token, "sort_by=title&order=desc", 2).await),
        vec![
            json!("하늘"),
            json!("나무"),
            json!("가방"),
            json!("가"),
            json!("apple"),
            json!("Zebra"),
            Value::Null
        ]
    );
}

async fn pages_stay_consistent_under_concurrent_writes(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("busy").await;
    let mut stable = Vec::new();
    let mut doomed = Vec::new();
    for i in 0..24 {
        let title = format!("이야기 {:02}", (i * 7) % 24);
        let id = app
            .seed_story(
                &token,
                Seed {
                    title: Some(&title),
                    ..Seed::default()
                },
            )
            .await;
        if i % 3 == 0 {
            doomed.push(id);
        } else {
            stable.push(id.to_string());
        }
    }
    for sort in ["created_at", "updated_at", "title"] {
        for order in ["asc", "desc"] {
            let query = format!("sort_by={sort}&order={order}");
            // A writer inserting and deleting stories while the pages are walked.
            let writer = {
                let token = token.clone();
                let doomed: Vec<StoryId> = std::mem::take(&mut doomed);
                let base = app.base.clone();
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut inserted = Vec::new();
                    for (i, id) in doomed.iter().enumerate() {
                        let reply = client
                            .delete(format!("{base}/api/v1/stories/{id}"))
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(reply.status(), 204);
                        let created: Value = client
                            .post(format!("{base}/api/v1/stories"))
                            .bearer_auth(&token)
                            .json(&json!({"user_preferences": {"theme": format!("새 {i}")}}))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        inserted.push(created["data"]["id"].as_str().unwrap().to_string());
                        tokio::task::yield_now().await;
                    }
                    (doomed, inserted)
                })
            };
            let walked = ids(&walk(&app, &token, &query, 3).await);
            let (deleted, inserted) = writer.await.unwrap();
            let seen: HashSet<&String> = walked.iter().collect();
            assert_eq!(seen.len(), walked.len(), "a story was repeated ({query})");
            for id in &stable {
                assert!(seen.contains(id), "a stable story was skipped ({query})");
            }
            let allowed: HashSet<String> = stable
                .iter()
                .cloned()
                .chain(deleted.iter().map(|u| u.to_string()))
                .chain(inserted.iter().cloned())
                .collect();
            assert!(walked.iter().all(|id| allowed.contains(id)));
            // The stories this round inserted are deleted by the next round's writer.
            doomed = inserted.iter().map(|s| s.parse().unwrap()).collect();
        }
    }
}

async fn bad_list_parameters_and_foreign_cursors_are_400(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("picky").await;
    for _ in 0..3 {
        app.seed_story(
            &token,
            Seed {
                title: Some("제목"),
                ..Seed::default()
            },
        )
        .await;
    }
    for query in [
        "page_size=0",
        "page_size=101",
        "page_size=abc",
        "page_size=1.5",
        "page_size=",
        "status=done",
        "status=PENDING",
        "status=",
        "sort_by=name",
        "order=up",
        "order=ASC",
        "start_cursor=garbage",
        "start_cursor=",
        "limit=5",
        "page_size=1&page_size=2",
    ] {
        let reply = app
            .get(&format!("/api/v1/stories?{query}"), Some(&token))
            .await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        reply.assert_error(400, "VALIDATION_ERROR");
    }
    app.get("/api/v1/stories?page_size=1", Some(&token))
        .await
        .assert_ok(200);
    app.get("/api/v1/stories?page_size=100", Some(&token))
        .await
        .assert_ok(200);

    // A cursor only works with the listing it came from.
    let page = app
        .get(
            "/api/v1/stories?page_size=1&sort_by=created_at&order=desc",
            Some(&token),
        )
        .await
        .assert_ok(200);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    for other in [
        "sort_by=title&order=desc",
        "sort_by=updated_at&order=desc",
        "sort_by=created_at&order=asc",
        "sort_by=created_at&order=desc&status=pending",
    ] {
        app.get(
            &format!("/api/v1/stories?page_size=1&{other}&start_cursor={cursor}"),
            Some(&token),
        )
        .await
        .assert_error(400, "VALIDATION_ERROR");
    }
    // The same parameters (page size may change) accept it.
    app.get(
        &format!("/api/v1/stories?page_size=2&start_cursor={cursor}"),
        Some(&token),
    )
    .await
    .assert_ok(200);
    // Altered cursors are refused: flip one character at a time across the cursor.
    for i in (0..cursor.len()).step_by(3) {
        let mut bytes = cursor.clone().into_bytes();
        if bytes[i] == b'.' {
            continue;
        }
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        if altered == cursor {
            continue;
        }
        app.get(
            &format!("/api/v1/stories?page_size=1&start_cursor={altered}"),
            Some(&token),
        )
        .await
        .assert_error(400, "VALIDATION_ERROR");
    }
    // Another account's cursor is just as foreign (cursors are bound to whose list too).
    let other = app.new_account("other").await;
    app.get(
        &format!("/api/v1/stories?page_size=1&start_cursor={cursor}"),
        Some(&other),
    )
    .await
    .assert_error(400, "VALIDATION_ERROR");
    // GraphQL speaks the same rules.
    let body = app
        .graphql(
            "{ stories(first: 0) { edges { cursor } } }",
            json!({}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(crate::helpers::gql_code(&body), "VALIDATION_ERROR");
    let body = app
        .graphql(
            "query($c: String) { stories(first: 1, after: $c, sortBy: title) { edges { cursor } } }",
            json!({"c": cursor}),
            Some(&token),
        )
        .await
        .json();
    assert_eq!(crate::helpers::gql_code(&body), "VALIDATION_ERROR");
}

async fn empty_and_last_pages(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("empty").await;
    let page = app
        .get("/api/v1/stories", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(
        page,
        json!({"object": "list", "results": [], "has_more": false, "next_cursor": null})
    );
    for _ in 0..2 {
        app.create_story(&token, "숲").await;
    }
    // Exactly a page full: the last page says so.
    let page = app
        .get("/api/v1/stories?page_size=2", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_cursor"], Value::Null);
    let page = app
        .get("/api/v1/stories?page_size=1", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(page["has_more"], true);
    assert!(page["next_cursor"].is_string());
}

db_tests!(
    walking_pages_visits_every_story_once_in_order,
    korean_titles_sort_by_code_point_with_nulls_last,
    pages_stay_consistent_under_concurrent_writes,
    bad_list_parameters_and_foreign_cursors_are_400,
    empty_and_last_pages,
);
