//! Keep the book (issue 34, point 3): `GET /api/v1/stories/{id}/book.epub` — the
//! completed story as an EPUB 3 picture book, opened here as a reader would: the ZIP by
//! its central directory (CRCs checked), the container, the package, every page, the
//! pictures and narration byte for byte against what REST serves, and the Media
//! Overlays against the pages they read. Owner-only, by header or by a GraphQL ticket.
//! With `JJONGAL_EPUB_OUT` set, the books are also written there (`.ci/run` checks them
//! with epubcheck).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::db_tests;
use crate::fakes::openai::{Api, story_answer, strict};
use crate::fakes::{Fakes, provider_flags};
use crate::helpers::{Db, TestApp, espeak_installed, spawn_app_with, unlabelled};

/// The ZIP's entries by name, read by its central directory as readers do (each CRC
/// checked), after checking what EPUB readers sniff: `mimetype` first, stored, with no
/// extra field.
fn open_epub(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    assert_eq!(&bytes[8..10], &[0, 0], "mimetype stored");
    assert_eq!(
        &bytes[26..30],
        &[8, 0, 0, 0],
        "name of 8 bytes, no extra field"
    );
    assert_eq!(&bytes[30..58], b"mimetypeapplication/epub+zip");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at = |i: usize| {
        u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize
    };
    let end = bytes.len() - 22;
    assert_eq!(u32_at(end), 0x0605_4b50, "end of central directory last");
    let (count, mut at) = (u16_at(end + 10), u32_at(end + 16));
    let mut entries = BTreeMap::new();
    for _ in 0..count {
        assert_eq!(u32_at(at), 0x0201_4b50);
        let (crc, size, name_len, offset) = (
            u32_at(at + 16),
            u32_at(at + 24),
            u16_at(at + 28),
            u32_at(at + 42),
        );
        let name = String::from_utf8(bytes[at + 46..at + 46 + name_len].to_vec()).unwrap();
        let start = offset + 30 + u16_at(offset + 26) + u16_at(offset + 28);
        let data = bytes[start..start + size].to_vec();
        assert_eq!(crc32(&data) as usize, crc, "{name}");
        entries.insert(name, data);
        at += 46 + name_len;
    }
    entries
}

/// CRC-32 (IEEE), bit by bit: the test's own, not the service's.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn text(entries: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8(
        entries
            .get(name)
            .unwrap_or_else(|| panic!("{name} in the book"))
            .clone(),
    )
    .unwrap()
}

/// Every `attr="…"` value of `tag` elements in `xml`, in order.
fn attrs(xml: &str, tag: &str, attr: &str) -> Vec<String> {
    xml.split(&format!("<{tag} "))
        .skip(1)
        .filter_map(|rest| {
            let element = &rest[..rest.find('>').unwrap()];
            let at = element
                .find(&format!(" {attr}=\""))
                .or_else(|| element.starts_with(&format!("{attr}=\"")).then_some(0))?;
            let value = &element[at..];
            let value = &value[value.find('"').unwrap() + 1..];
            Some(value[..value.find('"').unwrap()].to_string())
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

async fn get_book(app: &TestApp, id: &str, token: Option<&str>) -> reqwest::Response {
    let mut rb = app
        .client
        .get(app.url(&format!("/api/v1/stories/{id}/book.epub")));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.unwrap()
}

fn keep(name: &str, bytes: &[u8]) {
    if let Ok(dir) = std::env::var("JJONGAL_EPUB_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
    }
}

/// Checks the book against the story REST serves; returns its entries.
async fn check_book(app: &TestApp, story: &Value, bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let entries = open_epub(bytes);
    let container = text(&entries, "META-INF/container.xml");
    assert_eq!(
        attrs(&container, "rootfile", "full-path"),
        ["OEBPS/package.opf"]
    );
    let opf = text(&entries, "OEBPS/package.opf");
    assert!(
        opf.contains(&format!(
            "<dc:identifier id=\"book-id\">urn:uuid:{}</dc:identifier>",
            story["id"].as_str().unwrap()
        )),
        "{opf}"
    );
    assert!(
        opf.contains(&format!(
            "<dc:title>{}</dc:title>",
            story["title"].as_str().unwrap()
        )),
        "{opf}"
    );
    // Every file the package names is in the book, and nothing else is.
    let hrefs = attrs(&opf, "item", "href");
    let mut named: Vec<String> = hrefs.iter().map(|h| format!("OEBPS/{h}")).collect();
    named.extend(["mimetype", "META-INF/container.xml", "OEBPS/package.opf"].map(String::from));
    named.sort();
    assert_eq!(named, entries.keys().cloned().collect::<Vec<_>>());
    let chapters = story["chapters"].as_array().unwrap();
    let spine = attrs(&opf, "itemref", "idref");
    let mut order = vec!["cover".to_string()];
    order.extend((1..=chapters.len()).map(|n| format!("chapter-{n}")));
    assert_eq!(spine, order);
    let nav = text(&entries, "OEBPS/nav.xhtml");
    assert!(nav.contains("epub:type=\"toc\""));
    assert_eq!(
        attrs(&nav, "a", "href"),
        (1..=chapters.len())
            .map(|n| format!("chapter-{n}.xhtml"))
            .collect::<Vec<_>>()
    );
    for (i, c) in chapters.iter().enumerate() {
        let n = i + 1;
        let page = text(&entries, &format!("OEBPS/chapter-{n}.xhtml"));
        // The words on the page are the chapter's, sentence by sentence.
        let spans: Vec<String> = page
            .split("<span id=\"")
            .skip(1)
            .map(|rest| unescape(&rest[rest.find('>').unwrap() + 1..rest.find("</span>").unwrap()]))
            .collect();
        assert_eq!(
            spans.join(" "),
            c["content"].as_str().unwrap(),
            "chapter {n}"
        );
        // Its picture, byte for byte as REST serves it.
        let images = attrs(&page, "img", "src");
        assert_eq!(images.len(), 1, "{page}");
        assert_eq!(
            entries[&format!("OEBPS/{}", images[0])],
            app.media_bytes(&c["image"]["url"]).await
        );
    }
    entries
}

async fn a_story_becomes_a_picture_book_read_aloud(db: Db) {
    let fakes = Fakes::start().await;
    let answer = json!({"title": "별을 찾은 토끼", "chapters": [
        {"title": "첫째 장", "content": "토끼가 숲에 살았어요. \"별을 찾을 거야!\" 토끼가 말했어요."},
        {"title": "둘째 장", "content": "밤이 되었어요. 하늘에 별이 반짝였을까요? 네, 반짝였어요."},
        {"title": "셋째 장", "content": "토끼는 별을 찾았어요 & 웃었어요 <끝>."},
    ]});
    Mock::given(method("POST"))
        .and(path(Api::Chat.path()))
        .respond_with(strict(Api::Chat, story_answer(&answer.to_string())))
        .mount(&fakes.server)
        .await;
    let flags = provider_flags(&format!("{}/v1", fakes.server.uri()), &fakes.server.uri());
    let app = spawn_app_with(db, &flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let token = app.new_account("book.owner").await;
    let id = app.create_story(&token, "별").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let story = app.wait_finished(&token, &id).await;
    assert_eq!(story["status"], "completed", "{story}");

    let response = get_book(&app, &id, Some(&token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/epub+zip");
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"jjongal-{id}.epub\"").as_str()
    );
    let bytes = response.bytes().await.unwrap();
    keep(
        &format!("narrated-{}.epub", app.storage().backend_name()),
        &bytes,
    );
    let entries = check_book(&app, &story, &bytes).await;
    let opf = text(&entries, "OEBPS/package.opf");
    assert!(
        opf.contains("<meta property=\"media:active-class\">-epub-media-overlay-active</meta>")
    );
    // Each chapter reads aloud: its narration (the provider's MP3 as REST serves it) and
    // an overlay whose every stretch points at an element of the page, in the page's
    // order, from 0 to the narration's end, without gaps.
    for (i, c) in story["chapters"].as_array().unwrap().iter().enumerate() {
        let n = i + 1;
        let audio = entries[&format!("OEBPS/audio/chapter-{n}.mp3")].clone();
        assert_eq!(audio, app.media_bytes(&c["audio"]["url"]).await);
        assert_eq!(
            unlabelled(&audio, "openai-speech ("),
            crate::fakes::openai::MP3
        );
        assert!(opf.contains(&format!("<item id=\"chapter-{n}\" href=\"chapter-{n}.xhtml\" media-type=\"application/xhtml+xml\" media-overlay=\"smil-{n}\"/>")), "{opf}");
        // The fake's MP3 is one MPEG-2 layer III frame: 576 samples at 24 kHz.
        assert!(
            opf.contains(&format!(
                "<meta property=\"media:duration\" refines=\"#smil-{n}\">0:00:00.024</meta>"
            )),
            "{opf}"
        );
        let smil = text(&entries, &format!("OEBPS/chapter-{n}.smil"));
        let page = text(&entries, &format!("OEBPS/chapter-{n}.xhtml"));
        let targets = attrs(&smil, "text", "src");
        let page_ids = attrs(&page, "span", "id");
        let mut expected = vec![format!("chapter-{n}.xhtml#c{n}-title")];
        expected.extend(page_ids.iter().map(|id| format!("chapter-{n}.xhtml#{id}")));
        assert_eq!(targets, expected, "{smil}");
        assert!(page.contains(&format!("<h1 id=\"c{n}-title\">")));
        assert!(
            attrs(&smil, "audio", "src")
                .iter()
                .all(|s| *s == format!("audio/chapter-{n}.mp3"))
        );
        let begins = attrs(&smil, "audio", "clipBegin");
        let ends = attrs(&smil, "audio", "clipEnd");
        assert_eq!(begins[0], "0.000s");
        assert_eq!(ends.last().unwrap(), "0.024s");
        assert_eq!(&begins[1..], &ends[..ends.len() - 1], "no gaps: {smil}");
    }
    assert!(
        opf.contains("<meta property=\"media:duration\">0:00:00.072</meta>"),
        "the total: {opf}"
    );
    // The cover is the first picture, named so.
    assert!(
        opf.contains(
            "href=\"images/chapter-1.png\" media-type=\"image/png\" properties=\"cover-image\""
        ),
        "{opf}"
    );
    assert!(text(&entries, "OEBPS/cover.xhtml").contains("AI가 만든 이야기예요"));

    // Only the owner gets it.
    let other = app.new_account("book.other").await;
    let refused = get_book(&app, &id, Some(&other)).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "INSUFFICIENT_PERMISSION"
    );
    assert_eq!(get_book(&app, &id, None).await.status(), 401);
    assert_eq!(
        get_book(&app, "not-a-uuid", Some(&token)).await.status(),
        400
    );
    assert_eq!(
        get_book(&app, "5d1bd1ab-8f84-4d0e-9a7a-3b1f4c0f2a11", Some(&token))
            .await
            .status(),
        404
    );

    // From GraphQL: a ticket URL for this story, for ten minutes, no header needed.
    let prepared = app
        .graphql(
            "mutation($id: ID!) { prepareBook(id: $id) { url expiresAt } }",
            json!({"id": id}),
            Some(&token),
        )
        .await
        .json();
    let url = prepared["data"]["prepareBook"]["url"]
        .as_str()
        .unwrap()
        .replace("http://localhost:8000", &app.base);
    let by_ticket = app.client.get(&url).send().await.unwrap();
    assert_eq!(by_ticket.status(), 200);
    assert_eq!(by_ticket.bytes().await.unwrap(), bytes, "the same book");
    let ticket = url.split("ticket=").nth(1).unwrap();
    let elsewhere = app.create_story(&token, "다른").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong_story = app
        .client
        .get(app.url(&format!(
            "/api/v1/stories/{elsewhere}/book.epub?ticket={ticket}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong_story.status(),
        401,
        "a ticket opens its own story only"
    );
    let forged = app
        .client
        .get(format!("{}x", url.trim_end_matches('x')))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let theirs = app
        .graphql(
            "mutation($id: ID!) { prepareBook(id: $id) { url } }",
            json!({"id": id}),
            Some(&other),
        )
        .await
        .json();
    assert_eq!(
        crate::helpers::gql_code(&theirs),
        "INSUFFICIENT_PERMISSION",
        "{theirs}"
    );
}

async fn an_offline_story_becomes_a_book_and_an_unfinished_one_does_not(db: Db) {
    let app = spawn_app_with(db, &["--worker", "true", "--worker-poll-ms", "50"]).await;
    let token = app.new_account("offline.book").await;
    let id = app.create_story(&token, "바다").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let story = app.wait_finished(&token, &id).await;
    assert_eq!(story["status"], "completed");
    let response = get_book(&app, &id, Some(&token)).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    keep(
        &format!("offline-{}.epub", app.storage().backend_name()),
        &bytes,
    );
    let entries = check_book(&app, &story, &bytes).await;
    // The offline narrator's WAV is not an EPUB audio format: left out, and said so.
    assert!(
        entries
            .keys()
            .all(|k| !k.ends_with(".smil") && !k.starts_with("OEBPS/audio/"))
    );
    let cover = text(&entries, "OEBPS/cover.xhtml");
    assert_eq!(
        cover.contains("이 책 형식에 담을 수 없는 파일이라 빠졌어요"),
        espeak_installed(),
        "{cover}"
    );

    // Not finished: 409.
    let idle = spawn_app_with(db, &[]).await;
    let token = idle.new_account("unfinished").await;
    let id = idle.create_story(&token, "숲").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = get_book(&idle, &id, Some(&token)).await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "CONFLICT"
    );
}

db_tests!(
    a_story_becomes_a_picture_book_read_aloud,
    an_offline_story_becomes_a_book_and_an_unfinished_one_does_not,
);
