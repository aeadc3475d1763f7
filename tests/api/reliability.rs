//! Clients on bad networks (issue 28): connections dropped mid-request must leave the
//! server whole — no panic, no error for anyone else.

use std::time::Duration;

use serde_json::json;

use crate::db_tests;
use crate::helpers::{Db, Seed, spawn_app_with};

/// Hundreds of clients give up mid-request (a phone losing signal) on reads that keep
/// the database busy, while a bystander keeps reading: the bystander always gets its
/// answer, every request that was answered was answered well, and afterwards every pooled
/// connection still works.
async fn dropped_clients_leave_no_trace(db: Db) {
    let app = spawn_app_with(
        db,
        &[
            "--rate-limit-ip-per-minute",
            "0",
            "--rate-limit-account-per-minute",
            "0",
            "--database-pool-size",
            "4",
        ],
    )
    .await;
    let token = app.new_account("flaky.network").await;
    for i in 0..60 {
        app.seed_story(
            &token,
            Seed {
                theme: &format!("주제 {i}"),
                chapters: 5,
                ..Seed::default()
            },
        )
        .await;
    }
    let bystander_token = app.new_account("bystander").await;
    let bystander = {
        let app_base = app.base.clone();
        let client = app.client.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..60 {
                let response = client
                    .get(format!("{app_base}/api/v1/users/me"))
                    .bearer_auth(&bystander_token)
                    .send()
                    .await
                    .expect("the bystander is answered");
                statuses.push(response.status().as_u16());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            statuses
        })
    };
    let mut storm = Vec::new();
    for i in 0..400u64 {
        let url = match i % 3 {
            0 => format!("{}/api/v1/stories?page_size=100", app.base),
            1 => format!("{}/api/v1/users/me", app.base),
            _ => format!("{}/graphql", app.base),
        };
        let token = token.clone();
        storm.push(tokio::spawn(async move {
            // Each client gives up after 1–16 ms: many mid-request.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_millis(1 + i % 16))
                .build()
                .unwrap();
            let request = if url.ends_with("/graphql") {
                client.post(&url).json(&json!({"query": "{ stories(first: 100) { edges { node { id title chapters { title } } } } }"}))
            } else {
                client.get(&url)
            };
            request
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok()
        }));
    }
    let mut answered = Vec::new();
    for task in storm {
        if let Some(status) = task.await.unwrap() {
            answered.push(status);
        }
    }
    assert!(
        answered.iter().all(|s| *s == 200),
        "answered requests: {answered:?}"
    );
    let seen = bystander.await.unwrap();
    assert!(seen.iter().all(|s| *s == 200), "the bystander saw {seen:?}");
    // Every connection of the pool (4) serves again, several times over.
    for _ in 0..20 {
        app.get("/api/v1/stories?page_size=100", Some(&token))
            .await
            .assert_ok(200);
    }
}

db_tests!(dropped_clients_leave_no_trace);
