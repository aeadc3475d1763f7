//! The developer pages and the OpenAPI document: served by the binary itself (no CDN),
//! the document listing every REST route with its failures, and the command printing
//! what the server serves.

use serde_json::{Value, json};

use crate::db_tests;
use crate::helpers::{Db, spawn_app};

async fn the_openapi_document_describes_every_route(db: Db) {
    let app = spawn_app(db).await;
    let reply = app.get("/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // Client generators make package names of the title: letters, digits and spaces only
    // (the Korean name is in the description).
    let title = doc["info"]["title"].as_str().unwrap();
    assert!(
        title.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '),
        "a generator-friendly title: {title}"
    );
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("쫑알쫑알")
    );
    // Every field of every answer is always present (null when empty), so every property
    // of a response schema is `required`; only requests have fields one may leave out.
    let may_omit = [
        "UserPreferences",
        "CreateStoryRequest",
        "RegenerateChapterRequest",
        "HealthStatus",
    ];
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        if may_omit.contains(&name.as_str()) {
            continue;
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        for property in properties.keys() {
            assert!(
                required.contains(&property.as_str()),
                "{name}.{property} is not required"
            );
        }
    }
    // Every `/api/v1` operation: the failures in the envelope, and a token asked for by
    // all but the four that hand tokens out.
    let open = ["signUp", "issueToken", "refreshToken", "logout"];
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            for status in ["400", "401", "403", "404", "413", "429", "503"] {
                let failure = &op["responses"][status]["content"]["application/json"]["schema"];
                assert_eq!(
                    failure["$ref"], "#/components/schemas/ErrorEnvelope",
                    "{method} {path} {status}"
                );
            }
            let id = op["operationId"].as_str().unwrap();
            assert_eq!(
                op["security"].as_array().unwrap().is_empty(),
                open.contains(&id),
                "{method} {path}"
            );
        }
    }
    assert_eq!(operations, 21, "every REST route is documented");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The error codes are the service's whole catalogue.
    let codes = &doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["error"]["properties"]
        ["code"]["enum"];
    assert_eq!(
        codes.as_array().unwrap().len(),
        jjongal::error::ErrorCode::ALL.len()
    );
    // Issue 33: the voice-cloning consent's refusal is in the catalogue and documented.
    assert!(
        codes
            .as_array()
            .unwrap()
            .contains(&json!("VOICE_CONSENT_REQUIRED"))
    );
    let consent = &doc["paths"]["/api/v1/users/me/voice-consent"];
    for method in ["get", "post", "delete"] {
        assert!(consent[method].is_object(), "{method} voice-consent");
    }
    // Only the socket answers it (a voice sample frame): the document says so.
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("VOICE_CONSENT_REQUIRED")
    );
    // The spec's example request is the documented example.
    assert_eq!(
        doc["components"]["schemas"]["CreateStoryRequest"]["example"]["user_preferences"]["theme"],
        "모험"
    );
    // What `jjongal print-openapi` prints is what is served.
    let printed = tokio::process::Command::new(env!("CARGO_BIN_EXE_jjongal"))
        .args(["print-openapi", "--public-url", "http://localhost:8000"])
        .output()
        .await
        .unwrap();
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert!(
        printed["paths"] == doc["paths"],
        "print-openapi paths differ from /openapi.json"
    );
    assert!(
        printed["components"] == doc["components"],
        "components differ"
    );
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            ["properties"]["success"]["const"],
        true
    );
}

/// `/privacy` tells a guardian where the family's data goes with this configuration:
/// offline, nothing leaves the server.
async fn the_privacy_page_maps_the_data_of_this_configuration(db: Db) {
    let app = spawn_app(db).await;
    let reply = app
        .send(
            app.client
                .get(app.url("/privacy"))
                .header("accept", "text/html"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let page = &reply.text;
    assert_eq!(page.matches("<tr><td><code>").count(), 6, "{page}");
    for capability in ["llm", "image", "speech", "moderation", "voice", "stt"] {
        assert!(
            page.contains(&format!("<tr><td><code>{capability}</code>")),
            "{capability}: {page}"
        );
    }
    assert!(page.contains("이 서버에만 머묾"), "{page}");
    assert!(!page.contains("외부 제공자로 보냄"), "{page}");
    assert!(
        page.contains("the guardian&#39;s voice samples")
            || page.contains("the guardian's voice samples")
    );
    // The start page links it.
    let index = app.get("/", None).await;
    assert!(index.text.contains("href=\"/privacy\""), "{}", index.text);
}

async fn the_pages_and_their_assets_come_from_the_binary(db: Db) {
    let app = spawn_app(db).await;
    let page = |path: &str| app.client.get(app.url(path)).header("accept", "text/html");
    // Swagger UI (vendored), ReDoc and GraphiQL: HTML pages whose scripts are all local.
    for path in ["/docs/", "/redoc", "/graphql"] {
        let reply = app.send(page(path)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        let csp = reply.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("http"),
            "{path}: {csp}"
        );
        for src in reply.text.split("src=\"").skip(1) {
            let url = src.split('"').next().unwrap();
            assert!(
                !url.contains("://") && !url.starts_with("//"),
                "{path} loads {url}"
            );
            let asset = app
                .send(app.client.get(app.url(&url.replace("./", "/docs/"))))
                .await;
            assert_eq!(asset.status, 200, "{path}: {url}");
        }
    }
    // Vendored files: gzip for clients that take it, plain for the rest; versioned paths
    // are immutable.
    let gz = app
        .send(
            app.client
                .get(app.url("/assets/graphiql-4.1.2/graphiql.min.js"))
                .header("accept-encoding", "gzip"),
        )
        .await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert!(gz.header("cache-control").unwrap().contains("immutable"));
    let plain = app
        .send(
            app.client
                .get(app.url("/assets/redoc-2.5.4/redoc.standalone.js")),
        )
        .await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.text.len() > 1_000_000, "{}", plain.text.len());
    // Nothing external: ReDoc's one CDN image (its attribution logo) is served from here.
    assert!(!plain.text.contains("cdn.redoc.ly"));
    assert!(plain.text.contains("\"/assets/jjongal/redoc-logo.svg\""));
    let logo = app.get("/assets/jjongal/redoc-logo.svg", None).await;
    assert_eq!(logo.status, 200);
    assert_eq!(logo.header("content-type"), Some("image/svg+xml"));
    assert!(logo.text.starts_with("<svg"));
    assert!(
        plain
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    app.get("/assets/nothing.js", None)
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
}

/// `/` links the developer pages; `/favicon.ico` is a real 16×16 icon.
async fn the_root_page_and_the_favicon(db: Db) {
    let app = spawn_app(db).await;
    let root = app.get("/", None).await;
    assert_eq!(root.status, 200);
    assert!(
        root.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    for link in [
        "href=\"/docs\"",
        "href=\"/redoc\"",
        "href=\"/graphql\"",
        "href=\"/openapi.json\"",
    ] {
        assert!(root.text.contains(link), "{link}");
    }
    assert!(
        root.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    let icon = app
        .client
        .get(app.url("/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/x-icon");
    let bytes = icon.bytes().await.unwrap();
    // ICONDIR (one image) + ICONDIRENTRY + BITMAPINFOHEADER + 16×16×4 + the mask.
    assert_eq!(bytes.len(), 6 + 16 + 40 + 1024 + 64);
    assert_eq!(&bytes[..6], &[0, 0, 1, 0, 1, 0]);
    assert_eq!(u32::from_le_bytes(bytes[18..22].try_into().unwrap()), 22);
    assert_eq!(u32::from_le_bytes(bytes[22..26].try_into().unwrap()), 40);
    // Some pixels are drawn, some transparent.
    let alphas: Vec<u8> = bytes[62..62 + 1024].chunks(4).map(|p| p[3]).collect();
    assert!(alphas.contains(&0xFF) && alphas.contains(&0));
}

db_tests!(
    the_root_page_and_the_favicon,
    the_openapi_document_describes_every_route,
    the_pages_and_their_assets_come_from_the_binary,
    the_privacy_page_maps_the_data_of_this_configuration,
);
