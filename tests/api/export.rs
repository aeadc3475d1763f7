//! Issue 33, point 5: the guardian's export — one archive of everything the service
//! holds about the family, owner-only, rate-limited, also reachable from GraphQL.

use std::collections::BTreeMap;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::db_tests;
use crate::helpers::{Db, TestApp, espeak_installed, spawn_app_with};

/// The files of a ustar archive by name, each header's checksum checked.
fn untar(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut at = 0;
    loop {
        let header = &bytes[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            assert!(
                bytes[at + 512..at + 1024].iter().all(|&b| b == 0),
                "two zero blocks end it"
            );
            return files;
        }
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw
                .iter()
                .position(|&b| b == 0 || b == b' ')
                .unwrap_or(raw.len());
            String::from_utf8(raw[..end].to_vec()).unwrap()
        };
        let name = field(0..100);
        let size = usize::from_str_radix(&field(124..136), 8).unwrap();
        let checksum = u32::from_str_radix(&field(148..156), 8).unwrap();
        let mut blank = header.to_vec();
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(
            checksum,
            blank.iter().map(|&b| u32::from(b)).sum::<u32>(),
            "{name}"
        );
        assert_eq!(&header[257..263], b"ustar\0");
        let data = bytes[at + 512..at + 512 + size].to_vec();
        assert!(files.insert(name.clone(), data).is_none(), "{name} twice");
        at += 512 + size.div_ceil(512) * 512;
    }
}

fn json_of(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Value {
    serde_json::from_slice(
        files
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {:?}", files.keys())),
    )
    .unwrap()
}

/// A family with a voice sample, an ended conversation and a completed story.
async fn family(app: &TestApp, login: &str) -> (String, String, String) {
    let token = app.new_account(login).await;
    app.give_voice_consent(&token).await;
    let mut ws = crate::helpers::ws::open(app, &format!("/wss/v1/audio?token={token}"), None).await;
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    wav.extend_from_slice(&[0; 40]);
    ws.send(Message::binary(wav)).await.unwrap();
    let progress = crate::helpers::ws::recv(&mut ws).await;
    assert_eq!(progress["sample_count"], 1, "{progress}");
    drop(ws);
    let conversation = app.start_conversation(&token).await;
    app.graphql(
        "mutation($id: ID!) { sendMessage(conversationId: $id, text: \"바다 이야기 좋아\") { text } }",
        json!({"id": conversation}),
        Some(&token),
    )
    .await;
    app.end_conversation(&token, &conversation).await;
    let story = app
        .post_json(
            "/api/v1/stories",
            &json!({"user_preferences": {"theme": "바다", "characters": ["고래"], "length": "short"}, "conversation_id": conversation}),
            Some(&token),
        )
        .await
        .assert_ok(202)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = app.wait_finished(&token, &story).await;
    assert_eq!(done["status"], "completed", "{done}");
    (token, conversation, story)
}

async fn download(app: &TestApp, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn the_guardian_exports_everything_held_about_the_family(db: Db) {
    let app = spawn_app_with(db, &["--worker", "true", "--worker-poll-ms", "50"]).await;
    let (token, conversation, story) = family(&app, "exporting.family").await;
    let (other_token, other_conversation, other_story) = family(&app, "other.family").await;
    let url = format!("{}/api/v1/users/me/export", app.base);

    let response = download(&app, &url, Some(&token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"jjongal-export-"),
        "{disposition}"
    );
    let archive = response.bytes().await.unwrap();
    let files = untar(&archive);

    assert!(String::from_utf8_lossy(&files["README.txt"]).contains("account.json"));
    let account = json_of(&files, "account.json");
    assert_eq!(account["login_id"], "exporting.family");
    assert_eq!(account["child"]["name"], "민준");
    let consents = json_of(&files, "consents.json");
    assert!(consents["sign_up"]["given_at"].is_string(), "{consents}");
    let voice_consent = &consents["voice_cloning"][0];
    assert_eq!(voice_consent["voice_of"], "guardian");
    assert_eq!(voice_consent["provider"], "none");
    assert!(voice_consent["text"].as_str().unwrap().contains("보호자"));
    let voice = json_of(&files, "voice.json");
    assert_eq!(voice["samples"].as_array().unwrap().len(), 1, "{voice}");
    assert_eq!(voice["samples"][0]["format"], "wav");
    assert_eq!(voice["clone"]["cloned"], false);

    let talk = json_of(&files, &format!("conversations/{conversation}.json"));
    let texts: Vec<&str> = talk["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(texts.contains(&"바다 이야기 좋아"), "{talk}");
    assert_eq!(talk["status"], "ended");

    // The story with its media, byte for byte what the service serves.
    let written = json_of(&files, &format!("stories/{story}.json"));
    assert_eq!(written["status"], "completed");
    assert_eq!(written["conversation_id"], conversation.as_str());
    assert_eq!(written["provenance"]["ai_generated"], true);
    let served = app
        .get(&format!("/api/v1/stories/{story}"), Some(&token))
        .await
        .assert_ok(200);
    let chapters = written["chapters"].as_array().unwrap();
    assert_eq!(chapters.len(), 3);
    for (mine, theirs) in chapters.iter().zip(served["chapters"].as_array().unwrap()) {
        assert_eq!(mine["content"], theirs["content"]);
        let name = mine["image_file"].as_str().unwrap();
        let image = app.media_bytes(&theirs["image"]["url"]).await;
        assert_eq!(files[name], image, "{name}");
        if espeak_installed() {
            assert!(files.contains_key(mine["audio_file"].as_str().unwrap()));
        }
    }
    // Only this family's: nothing of the other's.
    let text = String::from_utf8_lossy(&archive);
    for id in [&other_conversation, &other_story] {
        assert!(
            !text.contains(id.as_str()),
            "another family's {id} is in the export"
        );
    }
    assert!(!text.contains("other.family"));

    // One export per interval per account (on every process: it is in the database).
    let again = download(&app, &url, Some(&token)).await;
    assert_eq!(again.status(), 429);
    assert!(again.headers().contains_key("retry-after"));
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
    // Without a token: 401.
    let anonymous = download(&app, &url, None).await;
    assert_eq!(anonymous.status(), 401);

    // GraphQL prepares a URL that works without the header, for its own account only.
    let prepared = app
        .graphql(
            "mutation { prepareExport { url expiresAt } }",
            json!({}),
            Some(&other_token),
        )
        .await
        .json();
    let ticket_url = prepared["data"]["prepareExport"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{prepared}"))
        .replace("http://localhost:8000", &app.base);
    assert!(ticket_url.contains("/api/v1/users/me/export?ticket="));
    let forged = download(&app, &format!("{ticket_url}x"), None).await;
    assert_eq!(forged.status(), 401);
    let by_ticket = download(&app, &ticket_url, None).await;
    assert_eq!(by_ticket.status(), 200);
    let theirs = untar(&by_ticket.bytes().await.unwrap());
    assert_eq!(json_of(&theirs, "account.json")["login_id"], "other.family");
    assert!(theirs.contains_key(&format!("stories/{other_story}.json")));
    assert!(!theirs.contains_key(&format!("stories/{story}.json")));
}

db_tests!(the_guardian_exports_everything_held_about_the_family);
