//! What every HTTP provider shares: the endpoint URL, the key header, sending a request
//! and classifying the provider's error answer (OpenAI's `error.code`/`error.type`,
//! ElevenLabs' `detail.status`), reading an answer under a size cap, and fetching a URL
//! a provider returned without letting it point into the private network.
//! API keys go only into request headers; errors and logs never contain them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::{ErrorKind, HttpSettings, ProviderError};

/// Most bytes of an error answer read to classify it.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(crate) fn endpoint(settings: &HttpSettings, path: &str) -> String {
    format!("{}/{}", settings.base_url.trim_end_matches('/'), path)
}

/// OpenAI-compatible servers take the key as a bearer token.
pub(crate) fn with_bearer(rb: RequestBuilder, settings: &HttpSettings) -> RequestBuilder {
    match &settings.api_key {
        Some(key) => rb.bearer_auth(String::from_utf8_lossy(key.expose())),
        None => rb,
    }
}

/// ElevenLabs-compatible servers take the key in `xi-api-key`.
pub(crate) fn with_xi_key(rb: RequestBuilder, settings: &HttpSettings) -> RequestBuilder {
    match &settings.api_key {
        Some(key) => rb.header(
            "xi-api-key",
            String::from_utf8_lossy(key.expose()).into_owned(),
        ),
        None => rb,
    }
}

pub(crate) fn transport_error(e: reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() || e.is_request() {
        ErrorKind::Network
    } else {
        ErrorKind::BadResponse
    };
    // reqwest's message names the URL, never headers; strip it anyway.
    ProviderError::new(kind, e.without_url().to_string())
}

/// `retry-after-ms` (OpenAI, milliseconds) wins over `Retry-After` (seconds or a date).
fn retry_after(response: &Response) -> Option<Duration> {
    let headers = response.headers();
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_millis(ms as u64));
    }
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = when
        .signed_duration_since(chrono::Utc::now())
        .num_milliseconds();
    Some(Duration::from_millis(wait.max(0) as u64))
}

/// The provider's own error code and message from an error answer: OpenAI's
/// `{"error": {"code", "type", "message"}}`, ElevenLabs' `{"detail": {"status",
/// "message"}}` (or FastAPI's `{"detail": [{"msg", "type"}]}` / `{"detail": "…"}`).
pub(crate) fn provider_code(body: &Value) -> (Option<String>, Option<String>) {
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let error = &body["error"];
    if error.is_object() {
        let code = text(&error["code"]).or_else(|| text(&error["type"]));
        return (code, text(&error["message"]));
    }
    let detail = &body["detail"];
    if detail.is_object() {
        let code = text(&detail["status"]).or_else(|| text(&detail["code"]));
        return (code, text(&detail["message"]));
    }
    if let Some(first) = detail.as_array().and_then(|a| a.first()) {
        return (text(&first["type"]), text(&first["msg"]));
    }
    (None, text(detail))
}

/// What a failed answer means for us: its HTTP status and the provider's own code.
pub(crate) fn classify(status: StatusCode, code: Option<&str>) -> ErrorKind {
    let code = code.unwrap_or_default();
    if code.contains("quota") || code == "billing_hard_limit_reached" {
        return ErrorKind::Quota;
    }
    if [
        "moderation_blocked",
        "content_policy_violation",
        "content_filter",
    ]
    .iter()
    .any(|c| code.contains(c))
        || code.contains("safety")
    {
        return ErrorKind::Refused;
    }
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Unauthorized,
        StatusCode::PAYMENT_REQUIRED => ErrorKind::Quota,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
        s if s.is_server_error() => ErrorKind::Server,
        _ => ErrorKind::BadResponse,
    }
}

/// Sends a request and turns every non-2xx answer into a classified error that carries
/// the provider's own code and (shortened) message.
pub(crate) async fn send(rb: RequestBuilder) -> Result<Response, ProviderError> {
    let response = rb.send().await.map_err(transport_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let after = retry_after(&response);
    let body = read_capped(response, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let detail: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (code, message) = provider_code(&detail);
    let kind = classify(status, code.as_deref());
    let mut text = format!("HTTP {}", status.as_u16());
    if let Some(code) = &code {
        text.push_str(&format!(" ({code})"));
    }
    if let Some(message) = &message {
        let short: String = message.chars().take(200).collect();
        text.push_str(&format!(": {short}"));
    }
    let mut err = ProviderError::new(kind, text);
    err.retry_after = after;
    err.status = Some(status.as_u16());
    err.code = code;
    Err(err)
}

/// Reads an answer's body, refusing one larger than `cap` bytes as soon as that is
/// known (by `Content-Length`, or while streaming it).
pub(crate) async fn read_capped(
    mut response: Response,
    cap: usize,
) -> Result<Vec<u8>, ProviderError> {
    let too_large = || {
        ProviderError::new(
            ErrorKind::BadResponse,
            format!("the answer is larger than {cap} bytes"),
        )
    };
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON answer, read under `cap` bytes.
pub(crate) async fn json_capped(response: Response, cap: usize) -> Result<Value, ProviderError> {
    let body = read_capped(response, cap).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ProviderError::new(ErrorKind::BadResponse, format!("invalid JSON: {e}")))
}

/// Installs rustls' ring crypto provider for this process (idempotent). reqwest is built
/// without a default provider to keep the aws-lc build out.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A provider's client. Redirects are not followed: an API does not redirect, and a
/// followed one would carry `xi-api-key` (which reqwest does not strip) to another host;
/// a 3xx is an error answer.
pub(crate) fn client_for(settings: &HttpSettings) -> Client {
    install_tls();
    Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client builds")
}

/// Whether `ip` is an address on the public internet (not loopback, private, link-local
/// — cloud metadata lives there —, shared, documentation, multicast or unspecified).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
            // addresses reach the IPv4 address inside them.
            if seg[..6] == [0; 6] || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(embedded(seg[6], seg[7]));
            }
            if seg[0] == 0x2002 {
                return is_public(embedded(seg[1], seg[2]));
            }
            let first = seg[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first == 0x2001 && seg[1] == 0x0db8))
        }
    }
}

/// A DNS resolver that gives only public addresses (a name that resolves only into the
/// private network cannot be fetched).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the name resolves to no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Fetches media a provider answered with as a URL: http(s) only, no redirects, under
/// the capability's size cap and timeout, and — unless `allow_private` (local providers)
/// — never from loopback or private addresses.
pub(crate) struct MediaFetcher {
    client: Client,
    allow_private: bool,
    cap: usize,
}

impl MediaFetcher {
    pub(crate) fn new(settings: &HttpSettings) -> MediaFetcher {
        install_tls();
        let mut builder = Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if !settings.allow_private_urls {
            builder = builder.no_proxy().dns_resolver(Arc::new(PublicOnly));
        }
        MediaFetcher {
            client: builder.build().expect("HTTP client builds"),
            allow_private: settings.allow_private_urls,
            cap: settings.max_response_bytes,
        }
    }

    pub(crate) async fn fetch(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        let refuse = |why: &str| ProviderError::new(ErrorKind::BadResponse, why.to_string());
        let parsed = reqwest::Url::parse(url).map_err(|_| refuse("the media URL is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refuse("the media URL is not http(s)"));
        }
        if !self.allow_private {
            let host = parsed
                .host_str()
                .ok_or_else(|| refuse("the media URL has no host"))?;
            let literal = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok();
            if literal.is_some_and(|ip| !is_public(ip)) {
                return Err(refuse(
                    "the media URL points into the private network (see JJONGAL_PROVIDER_ALLOW_PRIVATE_URLS)",
                ));
            }
        }
        let response = send(self.client.get(parsed)).await?;
        if response.status().is_redirection() {
            return Err(refuse("the media URL redirects"));
        }
        read_capped(response, self.cap).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_codes_of_both_shapes() {
        let openai = json!({"error": {"message": "Unknown parameter: 'response_format'.", "type": "invalid_request_error", "param": "response_format", "code": "unknown_parameter"}});
        assert_eq!(
            provider_code(&openai).0.as_deref(),
            Some("unknown_parameter")
        );
        let eleven = json!({"detail": {"status": "voice_not_found", "message": "A voice with the voice_id x was not found."}});
        assert_eq!(provider_code(&eleven).0.as_deref(), Some("voice_not_found"));
        let fastapi = json!({"detail": [{"loc": ["body", "name"], "msg": "field required", "type": "missing"}]});
        assert_eq!(provider_code(&fastapi).0.as_deref(), Some("missing"));
        assert_eq!(provider_code(&Value::Null), (None, None));
    }

    #[test]
    fn classification_reads_the_providers_code() {
        let q = Some("insufficient_quota");
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, q), ErrorKind::Quota);
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, Some("quota_exceeded")),
            ErrorKind::Quota
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, Some("moderation_blocked")),
            ErrorKind::Refused
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, None),
            ErrorKind::RateLimited
        );
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, Some("invalid_api_key")),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, Some("unknown_parameter")),
            ErrorKind::BadResponse
        );
        assert_eq!(classify(StatusCode::BAD_GATEWAY, None), ErrorKind::Server);
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fec0::1",
            "192.0.0.8",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
