//! The developer pages, all served by the binary itself (nothing from a CDN): the
//! OpenAPI document at `/openapi.json`, Swagger UI at `/docs` (utoipa-swagger-ui,
//! vendored), ReDoc at `/redoc` and GraphiQL at `/graphql` (browser `GET`), with their
//! pinned JavaScript under `/assets/` (see `assets/vendor/README.md` for versions,
//! checksums and licences).

use std::io::Read;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ErrorCode;
use crate::http::RestError;

/// The policy of the HTML pages: their own scripts and styles (plus the inline styles
/// these libraries set), workers from blobs (ReDoc), API calls and sockets to this origin.
pub(crate) const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; \
    worker-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// GraphiQL's page (served by `GET /graphql` to browsers).
pub(crate) const GRAPHIQL_PAGE: &str = include_str!("graphiql.html");
const REDOC_PAGE: &str = include_str!("redoc.html");
/// `/`: where a developer who opens the server in a browser finds the pages.
const INDEX_PAGE: &str = include_str!("index.html");

/// One embedded file: its bytes (gzip-compressed when `gzipped`) and type.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    gzipped: bool,
}

macro_rules! vendored {
    ($path:literal, $file:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/vendor/",
                $file
            )),
            gzipped: true,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    vendored!(
        "graphiql-4.1.2/graphiql.min.js",
        "graphiql-4.1.2.min.js.gz",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "graphiql-4.1.2/graphiql.min.css",
        "graphiql-4.1.2.min.css.gz",
        "text/css; charset=utf-8"
    ),
    vendored!(
        "react-18.3.1/react.production.min.js",
        "react-18.3.1.production.min.js.gz",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "react-dom-18.3.1/react-dom.production.min.js",
        "react-dom-18.3.1.production.min.js.gz",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "graphql-ws-5.16.2/graphql-ws.min.js",
        "graphql-ws-5.16.2.min.js.gz",
        "text/javascript; charset=utf-8"
    ),
    vendored!(
        "redoc-2.5.4/redoc.standalone.js",
        "redoc-2.5.4.standalone.js.gz",
        "text/javascript; charset=utf-8"
    ),
    Asset {
        path: "jjongal/graphiql-init.js",
        content_type: JS,
        bytes: include_bytes!("graphiql-init.js"),
        gzipped: false,
    },
    // ReDoc's attribution logo, which its bundle fetched from cdn.redoc.ly (refused by the
    // page's CSP, an error in every console): the vendored bundle points here instead
    // (`assets/vendor/README.md`).
    Asset {
        path: "jjongal/redoc-logo.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("redoc-logo.svg"),
        gzipped: false,
    },
    Asset {
        path: "jjongal/redoc-init.js",
        content_type: JS,
        bytes: include_bytes!("redoc-init.js"),
        gzipped: false,
    },
];

/// `/docs`, `/redoc`, `/openapi.json` (the REST facade's `document`, served as
/// generated: utoipa's typed model would drop keywords such as `const`), `/privacy` (the
/// page [`privacy_page`] made) and `/assets/…`.
pub(crate) fn router(document: serde_json::Value, privacy: String) -> Router {
    let swagger: Router = SwaggerUi::new("/docs")
        .external_url_unchecked("/openapi.json", document)
        .into();
    let pages = Router::new()
        .route("/", get(|| async { Html(INDEX_PAGE) }))
        .route("/privacy", get(move || async move { Html(privacy) }))
        .route("/favicon.ico", get(favicon))
        .route("/redoc", get(redoc))
        .route("/redoc/", get(redoc))
        .route("/assets/{*path}", get(asset));
    swagger
        .merge(pages)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        ))
}

/// `/privacy`: where a family's data goes with this server's configuration, for
/// guardians (made once at start-up from [`crate::providers::data_map`]).
pub(crate) fn privacy_page(flows: &[crate::providers::data_map::DataFlow]) -> String {
    use crate::providers::data_map::Destination;
    let rows: String = flows
        .iter()
        .map(|flow| {
            let to = match &flow.destination {
                Destination::Provider { url, model } => format!(
                    "<strong>외부 제공자로 보냄</strong> (sent to) <code>{}</code>, model <code>{}</code>",
                    escape(url),
                    escape(model)
                ),
                Destination::ThisServer(what) => {
                    format!("이 서버에만 머묾 (stays on this server: {})", escape(what))
                }
                Destination::Nowhere(why) => {
                    format!("어디에도 보내지 않음 (not sent: {})", escape(why))
                }
            };
            format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{to}</td></tr>\n",
                flow.capability,
                escape(flow.receives)
            )
        })
        .collect();
    PRIVACY_PAGE.replace("{rows}", &rows)
}

const PRIVACY_PAGE: &str = include_str!("privacy.html");

/// Text as HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The icon browsers ask for: a 16×16 ICO (32-bit BMP inside) drawn once, a yellow
/// speech bubble — no file to ship, no 404 in every browser console.
async fn favicon() -> Response {
    static ICON: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let bytes = ICON.get_or_init(draw_favicon).clone();
    (
        [
            (header::CONTENT_TYPE, "image/x-icon"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        bytes,
    )
        .into_response()
}

fn draw_favicon() -> Vec<u8> {
    const N: usize = 16;
    let pixels = N * N * 4;
    let mask = N * 4; // 1 bit per pixel, rows padded to 32 bits
    let image = 40 + pixels + mask;
    let mut ico = Vec::with_capacity(6 + 16 + image);
    ico.extend_from_slice(&[0, 0, 1, 0, 1, 0]); // reserved, type 1 (icon), one image
    ico.extend_from_slice(&[N as u8, N as u8, 0, 0, 1, 0, 32, 0]);
    ico.extend_from_slice(&(image as u32).to_le_bytes());
    ico.extend_from_slice(&22u32.to_le_bytes()); // the image follows the directory
    // BITMAPINFOHEADER: the height counts the colour rows and the mask rows.
    ico.extend_from_slice(&40u32.to_le_bytes());
    ico.extend_from_slice(&(N as i32).to_le_bytes());
    ico.extend_from_slice(&(2 * N as i32).to_le_bytes());
    ico.extend_from_slice(&1u16.to_le_bytes());
    ico.extend_from_slice(&32u16.to_le_bytes());
    ico.extend_from_slice(&[0; 24]);
    // Bottom-up BGRA rows: a bubble (an ellipse) with a tail at its lower left.
    for row in 0..N {
        let y = (N - 1 - row) as f32;
        for x in 0..N {
            let (dx, dy) = ((x as f32 - 7.5) / 7.5, (y - 6.5) / 6.0);
            let bubble = dx * dx + dy * dy <= 1.0;
            let tail = y >= 11.0 && (x as f32) >= 2.0 && (x as f32) <= 2.0 + (15.0 - y);
            let eye = y == 6.0 && (x == 5 || x == 10);
            let (b, g, r, a) = if eye {
                (0x30, 0x30, 0x30, 0xFF)
            } else if bubble || tail {
                (0x2E, 0xC4, 0xFF, 0xFF)
            } else {
                (0, 0, 0, 0)
            };
            ico.extend_from_slice(&[b, g, r, a]);
        }
    }
    ico.extend(std::iter::repeat_n(0u8, mask)); // alpha decides; the mask shows all
    ico
}

async fn redoc() -> Response {
    Html(REDOC_PAGE).into_response()
}

/// Serves an embedded file: compressed to clients that take gzip, else inflated.
/// Versioned paths never change, so they may be cached for a year.
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return RestError::code(ErrorCode::ResourceNotFound).into_response();
    };
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|e| e.trim().split(';').next() == Some("gzip"))
        });
    let cache = if path.starts_with("jjongal/") {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let mut response = if asset.gzipped && accepts_gzip {
        let mut r = asset.bytes.into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else if asset.gzipped {
        let mut inflated = Vec::new();
        if flate2::read::GzDecoder::new(asset.bytes)
            .read_to_end(&mut inflated)
            .is_err()
        {
            tracing::error!(path, "an embedded asset does not inflate");
            return RestError::code(ErrorCode::ServerError).into_response();
        }
        inflated.into_response()
    } else {
        asset.bytes.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    (StatusCode::OK, response).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_asset_inflates() {
        for asset in ASSETS.iter().filter(|a| a.gzipped) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(asset.bytes)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("{}: {e}", asset.path));
            assert!(out.len() > asset.bytes.len(), "{}", asset.path);
        }
    }

    #[test]
    fn pages_load_only_local_assets() {
        for page in [GRAPHIQL_PAGE, REDOC_PAGE] {
            for src in page
                .split("src=\"")
                .skip(1)
                .chain(page.split("href=\"").skip(1))
            {
                let url = src.split('"').next().unwrap();
                let path = url.strip_prefix("/assets/").expect("a local asset");
                assert!(
                    ASSETS.iter().any(|a| a.path == path),
                    "{url} is not embedded"
                );
            }
        }
    }
}
