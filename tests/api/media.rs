//! Signed media URLs (contract §4): the app's own `secure_link` check, expiry, `Range`,
//! headers, and no way out of the media directory.

use jjongal::domain::stories::StoryStatus;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db_tests;
use crate::helpers::{Db, SVG, Seed, TestApp, spawn_app};

/// The story's first chapter: (image URL, audio URL), pointed at the test server.
async fn chapter_urls(app: &TestApp, token: &str) -> (String, String, Value) {
    let id = app
        .seed_story(
            token,
            Seed {
                status: StoryStatus::Completed,
                chapters: 1,
                audio: true,
                ..Seed::default()
            },
        )
        .await;
    let story = app
        .get(&format!("/api/v1/stories/{id}"), Some(token))
        .await
        .assert_ok(200);
    let local = |v: &Value| {
        v.as_str()
            .unwrap()
            .replace("http://localhost:8000", &app.base)
    };
    (
        local(&story["chapters"][0]["image"]["url"]),
        local(&story["chapters"][0]["audio"]["url"]),
        story,
    )
}

/// Sends a raw request line, so the path reaches the server exactly as written.
async fn raw_get(app: &TestApp, target: &str) -> u16 {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn signed_urls_serve_the_file_with_safe_headers(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("listener").await;
    let (image, audio, story) = chapter_urls(&app, &token).await;

    // URL shape: {base}/media/{path}?md5=…&expires=…, expiry a whole minute, stated.
    let file = &story["chapters"][0]["image"];
    let expiry =
        chrono::DateTime::parse_from_rfc3339(file["expiry_time"].as_str().unwrap()).unwrap();
    assert_eq!(expiry.timestamp() % 60, 0);
    let ttl = expiry.timestamp() - chrono::Utc::now().timestamp();
    assert!((3540..=3660).contains(&ttl), "ttl {ttl}");
    assert!(image.contains(&format!("&expires={}", expiry.timestamp())));
    assert!(image.contains("?md5="));
    // Reading again within the minute gives the same URL.
    let again = app
        .get(
            &format!("/api/v1/stories/{}", story["id"].as_str().unwrap()),
            Some(&token),
        )
        .await
        .assert_ok(200);
    let again = &again["chapters"][0]["image"];
    let later =
        chrono::DateTime::parse_from_rfc3339(again["expiry_time"].as_str().unwrap()).unwrap();
    if later == expiry {
        // Same minute: the very same URL.
        assert_eq!(again["url"], file["url"]);
    } else {
        // The two reads straddled a minute boundary: the next minute, a new signature.
        assert_eq!(later.timestamp() - expiry.timestamp(), 60);
        assert_ne!(again["url"], file["url"]);
    }

    let response = app.client.get(&image).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private, max-age=")
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(response.bytes().await.unwrap().as_ref(), SVG);

    let response = app.client.get(&audio).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert_eq!(response.bytes().await.unwrap().len(), 2048);
}

async fn range_requests_let_players_seek(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("seeker").await;
    let (_, audio, _) = chapter_urls(&app, &token).await;
    let expected: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();

    let response = app
        .client
        .get(&audio)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 100-199/2048");
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &expected[100..200]
    );

    let response = app
        .client
        .get(&audio)
        .header("range", "bytes=2000-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &expected[2000..]);

    let response = app
        .client
        .get(&audio)
        .header("range", "bytes=-48")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &expected[2000..]);

    let response = app
        .client
        .get(&audio)
        .header("range", "bytes=5000-6000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
}

async fn tampered_and_expired_links_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let token = app.new_account("tamperer").await;
    let (image, audio, _) = chapter_urls(&app, &token).await;
    let (path, query) = image.split_once('?').unwrap();
    let (md5, expires) = query.split_once('&').unwrap();
    let sig = md5.trim_start_matches("md5=");
    let flipped = format!(
        "{}{}",
        if sig.starts_with('A') { 'B' } else { 'A' },
        &sig[1..]
    );
    let later: i64 = expires
        .trim_start_matches("expires=")
        .parse::<i64>()
        .unwrap()
        + 60;
    let audio_path = audio.split_once('?').unwrap().0;
    for url in [
        path.to_string(),                          // no signature
        format!("{path}?{md5}"),                   // no expiry
        format!("{path}?{expires}"),               // no md5
        format!("{path}?md5={flipped}&{expires}"), // wrong signature
        format!("{path}?{md5}&expires={later}"),   // extended expiry
        format!("{path}?{md5}&expires=soon"),      // malformed expiry
        format!("{audio_path}?{query}"),           // another file's signature
    ] {
        app.send(app.client.get(&url))
            .await
            .assert_error(403, "INSUFFICIENT_PERMISSION");
    }
    // Correctly signed but expired: 410.
    let relative = path.split_once("/media/").unwrap().1;
    let past = app
        .domain
        .media()
        .sign(relative, chrono::Utc::now() - chrono::Duration::hours(3));
    let url = past.url.replace("http://localhost:8000", &app.base);
    app.send(app.client.get(&url))
        .await
        .assert_error(410, "URL_EXPIRED");
    // A signed path that does not exist: 404.
    let ghost = app
        .domain
        .media()
        .sign("nobody/none/nothing.svg", chrono::Utc::now());
    app.send(
        app.client
            .get(ghost.url.replace("http://localhost:8000", &app.base)),
    )
    .await
    .assert_error(404, "RESOURCE_NOT_FOUND");
}

async fn no_path_escapes_the_media_directory(db: Db) {
    let app = spawn_app(db).await;
    // Even a correctly signed traversal (as if the secret had leaked) is not served.
    std::fs::write(app.domain.media().dir().join("../outside.txt"), "secret").unwrap();
    for relative in [
        "../outside.txt",
        "a/../../outside.txt",
        "../secrets/jwt.secret",
    ] {
        let signed = app.domain.media().sign(relative, chrono::Utc::now());
        let target = signed
            .url
            .trim_start_matches("http://localhost:8000")
            .to_string();
        let status = raw_get(&app, &target).await;
        assert!(status == 404 || status == 403, "{relative}: {status}");
        assert_ne!(status, 200);
    }
    for target in [
        "/media/../secrets/jwt.secret?md5=x&expires=9999999999",
        "/media/%2e%2e/secrets/jwt.secret?md5=x&expires=9999999999",
        "/media/..%2Fsecrets%2Fjwt.secret?md5=x&expires=9999999999",
    ] {
        let status = raw_get(&app, target).await;
        assert!(
            status == 403 || status == 404 || status == 400,
            "{target}: {status}"
        );
    }
}

db_tests!(
    signed_urls_serve_the_file_with_safe_headers,
    range_requests_let_players_seek,
    tampered_and_expired_links_are_refused,
    no_path_escapes_the_media_directory,
);
