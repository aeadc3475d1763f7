//! The OpenAPI 3.1 document of the REST facade, generated from the operations' own types
//! (their path and query parameters, body, success status and answer — the types the
//! handler reads and writes), so it cannot drift from what is served. Every operation
//! documents the failures any request can meet (400, 401, 403, 404, 405, 413, 429, 500,
//! 503) in the spec's envelope.

use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};

use super::door::{Body, Operation, PathParams, Reply, Visit};
use super::types::HealthStatus;
use crate::error::ErrorCode;

/// The published query parameters of `Q` (OpenAPI `Parameter`s as JSON).
pub(crate) fn query_parameters<Q: IntoParams>() -> Vec<Value> {
    Q::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .map(|p| serde_json::to_value(p).expect("parameters serialise"))
        .collect()
}

/// Walks the operations: their path items and the schemas their types need.
#[derive(Default)]
struct Describer {
    paths: Map<String, Value>,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Visit for Describer {
    fn visit<O: Operation>(&mut self) {
        let request = O::Body::schema().map(|p| {
            self.schemas.extend(p.schemas);
            p.name
        });
        let response = O::Out::schema().map(|p| {
            self.schemas.extend(p.schemas);
            p.name
        });
        let op = operation::<O>(request.as_deref(), response.as_deref());
        let item = self
            .paths
            .entry(O::PATH.to_string())
            .or_insert_with(|| json!({}));
        item[O::METHOD.as_str().to_ascii_lowercase()] = op;
    }
}

fn described() -> Describer {
    let mut describer = Describer::default();
    super::operations::each(&mut describer);
    describer.schemas.push((
        HealthStatus::name().into_owned(),
        <HealthStatus as utoipa::PartialSchema>::schema(),
    ));
    describer
}

/// Every component schema by name (nested ones included), and the failure envelope.
pub(crate) fn components() -> Value {
    Value::Object(component_schemas(described().schemas))
}

fn component_schemas(found: Vec<(String, RefOr<Schema>)>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, schema) in found {
        out.insert(
            name,
            serde_json::to_value(schema).expect("schemas serialise"),
        );
    }
    // A regeneration asks for something: one of its three wishes is `true` (a keyword
    // utoipa's derive cannot state; the door checks bodies against this same schema).
    if let Some(Value::Object(regenerate)) = out.get_mut("RegenerateChapterRequest") {
        regenerate.insert(
            "anyOf".into(),
            json!([
                {"required": ["text"], "properties": {"text": {"const": true}}},
                {"required": ["image"], "properties": {"image": {"const": true}}},
                {"required": ["audio"], "properties": {"audio": {"const": true}}},
            ]),
        );
    }
    // The failure envelope, with the codes of the one catalogue the service maps from.
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    out.insert(
        "ErrorEnvelope".into(),
        json!({
            "type": "object",
            "description": "The spec §4.1 failure envelope.",
            "required": ["success", "error"],
            "additionalProperties": false,
            "properties": {
                "success": {"type": "boolean", "const": false},
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": false,
                    "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string", "description": "Human readable (Korean)."},
                    },
                },
            },
        }),
    );
    out
}

/// `{success: true, message, data: <schema>}`.
fn success_envelope(data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["success", "message", "data"],
        "additionalProperties": false,
        "properties": {
            "success": {"type": "boolean", "const": true},
            "message": {"type": "string"},
            "data": data,
        },
    })
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// One documented failure: the envelope, an example code, and the headers it carries.
fn failure(description: &str, codes: &[ErrorCode]) -> Value {
    let mut headers = Map::new();
    if codes.contains(&ErrorCode::RateLimitExceeded)
        || codes.contains(&ErrorCode::ServiceUnavailable)
    {
        headers.insert(
            "Retry-After".into(),
            json!({"description": "Seconds until trying again can work.", "schema": {"type": "integer", "minimum": 1}}),
        );
    }
    if codes.contains(&ErrorCode::InvalidToken) {
        headers.insert(
            "WWW-Authenticate".into(),
            json!({"description": "`Bearer`", "schema": {"type": "string"}}),
        );
    }
    if codes.contains(&ErrorCode::MethodNotAllowed) {
        headers.insert(
            "Allow".into(),
            json!({"description": "The methods the path supports.", "schema": {"type": "string"}}),
        );
    }
    let examples: Map<String, Value> = codes
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                json!({"value": {"success": false, "error": {"code": c.as_str(), "message": c.default_message()}}}),
            )
        })
        .collect();
    let mut response = json!({
        "description": description,
        "content": {"application/json": {"schema": reference("ErrorEnvelope"), "examples": examples}},
    });
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    response
}

/// The failures every operation can meet (contract §2: any operation may answer 429 or
/// 503), plus those of its own kind.
fn failures(route_auth: bool, has_id: bool) -> Map<String, Value> {
    use ErrorCode::*;
    let (unauthorised, unauthorised_codes): (&str, &[ErrorCode]) = if route_auth {
        (
            "No valid access token (missing, malformed, expired, revoked, or its account deleted).",
            &[InvalidToken],
        )
    } else {
        (
            "Wrong credentials, or a refresh token that is not valid.",
            &[AuthenticationFailed, InvalidToken],
        )
    };
    let not_found = if has_id {
        "No such object."
    } else {
        "No such object (or route)."
    };
    let table: [(&str, &str, &[ErrorCode]); 10] = [
        (
            "400",
            "The request is malformed: bad JSON or `Content-Type`, unknown or missing fields, \
             values out of range, text over 10,000 characters, a malformed id.",
            &[ValidationError],
        ),
        ("401", unauthorised, unauthorised_codes),
        (
            "403",
            "The object belongs to another account, or the action is not allowed.",
            &[InsufficientPermission],
        ),
        ("404", not_found, &[ResourceNotFound]),
        (
            "405",
            "The path does not support this method.",
            &[MethodNotAllowed],
        ),
        (
            "409",
            "The request conflicts with the current state (a taken login id, a story not in `failed`).",
            &[Conflict],
        ),
        ("413", "The body is over 1 MiB.", &[PayloadTooLarge]),
        (
            "429",
            "Over a rate limit (per client address, per account, or the story quota).",
            &[RateLimitExceeded],
        ),
        (
            "500",
            "An unexpected failure (its details are logged, not shown).",
            &[ServerError],
        ),
        (
            "503",
            "The database is unavailable or busy, the request took too long, or the service \
             is overloaded.",
            &[ServiceUnavailable],
        ),
    ];
    table
        .into_iter()
        .map(|(status, description, codes)| (status.into(), failure(description, codes)))
        .collect()
}

fn parameters<O: Operation>() -> Vec<Value> {
    let mut params: Vec<Value> = <O::Path as PathParams>::NAMES
        .iter()
        .map(|name| match <O::Path as PathParams>::NUMBERS.contains(name) {
            true => json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": "A chapter's number (1–7; anything else is 400).",
                "schema": {"type": "integer", "minimum": 1, "maximum": super::door::MAX_CHAPTER_NUMBER},
            }),
            false => json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": "The object's id (a UUID; anything else is 400).",
                "schema": {"type": "string", "format": "uuid"},
            }),
        })
        .collect();
    params.extend(query_parameters::<O::Query>());
    params
}

fn operation<O: Operation>(request: Option<&str>, response: Option<&str>) -> Value {
    let doc = O::DOC;
    let has_id = O::PATH.contains('{');
    let mut responses = failures(doc.auth, has_id);
    let success = match response {
        None => json!({"description": O::MESSAGE}),
        Some(data) => json!({
            "description": O::MESSAGE,
            "content": {"application/json": {"schema": success_envelope(reference(data))}},
        }),
    };
    responses.insert(O::STATUS.as_u16().to_string(), success);
    let mut op = json!({
        "operationId": doc.operation_id,
        "tags": [doc.tag],
        "summary": doc.summary,
        "parameters": parameters::<O>(),
        "responses": responses,
    });
    if doc.auth {
        op["security"] = json!([{"bearer": []}]);
    } else {
        op["security"] = json!([]);
    }
    if let Some(request) = request {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": reference(request)}},
        });
    }
    op
}

/// Operations outside the REST door: health checks and signed media.
fn extra_paths(paths: &mut Map<String, Value>) {
    let health = |summary: &str, ok: &str| {
        json!({"get": {
            "operationId": if summary.starts_with("Liveness") { "healthz" } else { "readyz" },
            "tags": ["health"],
            "summary": summary,
            "security": [],
            "responses": {
                "200": {"description": ok, "content": {"application/json": {"schema": success_envelope(reference("HealthStatus"))}}},
                "503": failure("The database is not reachable.", &[ErrorCode::ServiceUnavailable]),
            },
        }})
    };
    paths.insert(
        "/healthz".into(),
        health("Liveness: the process answers", "Alive."),
    );
    paths.insert(
        "/readyz".into(),
        health("Readiness: the database answers", "Ready."),
    );
    let mut media_failures: Map<String, Value> = [
        (
            "400",
            "Malformed signature parameters.",
            ErrorCode::ValidationError,
        ),
        (
            "403",
            "Missing or wrong signature.",
            ErrorCode::InsufficientPermission,
        ),
        (
            "404",
            "No such file (or its story was deleted).",
            ErrorCode::ResourceNotFound,
        ),
        ("410", "The signed URL has expired.", ErrorCode::UrlExpired),
        (
            "429",
            "Over the per-client rate limit.",
            ErrorCode::RateLimitExceeded,
        ),
        ("503", "Overloaded.", ErrorCode::ServiceUnavailable),
    ]
    .into_iter()
    .map(|(status, description, code)| (status.to_string(), failure(description, &[code])))
    .collect();
    media_failures.insert(
        "200".into(),
        json!({"description": "The file (images: SVG or PNG/JPEG/WebP; narration: WAV/MP3/…).",
               "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}),
    );
    media_failures.insert(
        "206".into(),
        json!({"description": "A byte range of the file (`Range`).",
               "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}),
    );
    paths.insert(
        "/media/{path}".into(),
        json!({"get": {
            "operationId": "getMedia",
            "tags": ["media"],
            "summary": "A media file behind a signed URL (`File.url`); Nginx serves the same links",
            "security": [],
            "parameters": [
                {"name": "path", "in": "path", "required": true, "schema": {"type": "string"},
                 "description": "`<account>/<story>/<file>` as in `File.url`."},
                {"name": "md5", "in": "query", "required": true, "schema": {"type": "string"},
                 "description": "base64url(md5(\"{expires}{uri} {secret}\"))"},
                {"name": "expires", "in": "query", "required": true, "schema": {"type": "integer"},
                 "description": "Unix time the link expires."},
            ],
            "responses": media_failures,
        }}),
    );
    // The family's export: a file, streamed.
    let mut export = failures(true, false);
    export.insert(
        "200".into(),
        json!({"description": "A ustar archive of everything the service holds about the family \
                (account, consents, conversations, stories with their media, voice samples' list \
                and clone status); its layout is in `README.txt` inside.",
               "headers": {"Content-Disposition": {"description": "`attachment; filename=\"jjongal-export-YYYYMMDD.tar\"`", "schema": {"type": "string"}}},
               "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}),
    );
    paths.insert(
        "/api/v1/users/me/export".into(),
        json!({"get": {
            "operationId": "exportFamilyData",
            "tags": ["accounts"],
            "summary": "Everything the service holds about the family, as one archive (extension); one per account per JJONGAL_EXPORT_INTERVAL_SECS",
            "security": [{"bearer": []}, {}],
            "parameters": [
                {"name": "ticket", "in": "query", "required": false, "schema": {"type": "string", "maxLength": 2000},
                 "description": "Instead of the bearer token: the ticket in the URL GraphQL `prepareExport` gives (ten minutes)."},
            ],
            "responses": export,
        }}),
    );
    // A story's picture book: a file, streamed.
    let mut book = failures(true, true);
    book.insert(
        "200".into(),
        json!({"description": "The completed story as an EPUB 3 picture book: a cover, a page per \
                chapter with its illustration, and each MP3 narration synchronised with the text \
                through EPUB 3 Media Overlays (reading apps read aloud and highlight as they go).",
               "headers": {"Content-Disposition": {"description": "`attachment; filename=\"jjongal-<story id>.epub\"`", "schema": {"type": "string"}}},
               "content": {"application/epub+zip": {"schema": {"type": "string", "format": "binary"}}}}),
    );
    paths.insert(
        "/api/v1/stories/{id}/book.epub".into(),
        json!({"get": {
            "operationId": "getStoryBook",
            "tags": ["stories"],
            "summary": "The completed story as an EPUB 3 picture book with read-aloud narration (extension); 409 CONFLICT until it is completed",
            "security": [{"bearer": []}, {}],
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}},
                {"name": "ticket", "in": "query", "required": false, "schema": {"type": "string", "maxLength": 2000},
                 "description": "Instead of the bearer token: the ticket in the URL GraphQL `prepareBook` gives (ten minutes, this story only)."},
            ],
            "responses": book,
        }}),
    );
}

/// The whole document as JSON.
pub fn document_json(public_url: &str) -> Value {
    let Describer { mut paths, schemas } = described();
    extra_paths(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            // ASCII only: client generators derive package names from the title
            // (openapi-python-client refuses `jjongal-쫑알쫑알-rest-api-client`).
            "title": "Jjongal REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "쫑알쫑알 (Jjongal) — the REST facade: interactive, AI-written children's \
                stories (spec v1.0 with the contract's decisions). Every answer but `204` \
                is the spec's envelope; failures carry a code from one catalogue. \
                The conversation WebSocket is `/wss/v1/audio` (JSON messages; \
                `end_conversation` may carry `payload.create_story` — `theme`, \
                `characters`, `length`, all optional — and is then answered with \
                `story_id_assigned` (`story_id`) before `conversation_ended`; \
                `start_conversation` may carry `payload.audio_config` — `sample_rate` \
                8000–48000, `encoding` `pcm_s16le`, mono — and binary frames up to the \
                next text frame are then one raw-PCM utterance: the child talking, \
                transcribed with server speech-to-text and answered like `user_message`, \
                never kept and never a voice sample); binary frames without \
                `audio_config` are the guardian's voice samples, accepted only after the \
                voice-cloning consent (`VOICE_CONSENT_REQUIRED` otherwise); \
                GraphQL is at `/graphql`.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [
            {"url": "/", "description": "this server"},
            {"url": public_url, "description": "the configured public URL"},
        ],
        "tags": [
            {"name": "accounts", "description": "Family accounts (the guardian logs in; the child is who stories are for)."},
            {"name": "auth", "description": "Access and refresh tokens."},
            {"name": "stories", "description": "Stories and their generation."},
            {"name": "conversations", "description": "Conversations with the guide and voice samples."},
            {"name": "media", "description": "Signed media files."},
            {"name": "health", "description": "Liveness and readiness."},
        ],
        "paths": paths,
        "components": {
            "schemas": component_schemas(schemas),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "An access token from `POST /api/v1/auth/token`."},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document as utoipa's typed model (which is also how it is checked to be one).
    fn document(public_url: &str) -> utoipa::openapi::OpenApi {
        serde_json::from_value(document_json(public_url))
            .expect("the generated document is an OpenAPI document")
    }

    /// Every `$ref` in the document points at a component that exists.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// Checks that each operation is in the document with its failures and success.
    struct Documented(Value);

    impl Visit for Documented {
        fn visit<O: Operation>(&mut self) {
            let op = &self.0["paths"][O::PATH][O::METHOD.as_str().to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{} {} is not documented",
                O::METHOD,
                O::PATH
            );
            for status in ["400", "401", "403", "404", "413", "429", "503"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{} {} lacks {status}",
                    O::METHOD,
                    O::PATH
                );
            }
            assert!(op["responses"][O::STATUS.as_u16().to_string()].is_object());
        }
    }

    #[test]
    fn every_route_is_documented_and_every_reference_resolves() {
        let doc = document_json("http://localhost:8000");
        super::super::operations::each(&mut Documented(doc.clone()));
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("a schema ref");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "unresolved {r}"
            );
        }
        // utoipa accepts it as an OpenAPI document.
        let typed = document("http://localhost:8000");
        assert!(typed.paths.paths.len() >= 10);
    }
}
