//! What stands between the network and the doors: who the client is (peer address, or
//! the address a trusted proxy names), per-IP and per-account rate limits, and load
//! shedding. Every refusal answers in the shape of the door it came to: the REST
//! envelope, GraphQL's `errors`, or a socket `error` message.
//!
//! Limits are per process; Nginx's `limit_req` gives the cluster-wide per-IP view.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde_json::json;
use tokio::sync::Semaphore;
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use uuid::Uuid;

use crate::config::{GatewayConfig, IpNet, RateConfig, canonical};
use crate::domain::Domain;
use crate::error::ErrorCode;
use crate::graphql::RequestAuth;
use crate::rest::{RestError, envelope};
use crate::tally::{Tally, Ticket};

type KeyedLimiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, NoOpMiddleware>;

/// The client's address: the peer's, unless the peer is a configured proxy, in which case
/// the nearest untrusted address in `X-Forwarded-For` (else `X-Real-IP`).
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: Arc<Vec<IpNet>>,
}

impl ClientIp {
    pub fn new(trusted: Vec<IpNet>) -> ClientIp {
        ClientIp {
            trusted: Arc::new(trusted),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client of a connection from `peer` that sent `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        // Walk the chain from the nearest hop back; the first address no trusted proxy
        // added is the client. (Nginx overwrites the header, so it holds one address.)
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| parse_hop(s.trim()))
            .collect();
        if let Some(ip) = forwarded.iter().rev().find(|ip| !self.is_trusted(**ip)) {
            return *ip;
        }
        if let Some(ip) = headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_hop(v.trim()))
        {
            return ip;
        }
        forwarded.first().copied().unwrap_or(peer)
    }

    /// The client of an axum request (the connection's peer comes from `ConnectInfo`;
    /// without it — a router served without connect info — the unspecified address).
    pub fn of_request<B>(&self, request: &axum::http::Request<B>) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.resolve(peer, request.headers())
    }
}

/// One hop of `X-Forwarded-For`: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:80`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()))
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(rate_key(self.of_request(req)))
    }
}

/// What a per-IP budget belongs to: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network — a single host can use any address in it).
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(net.into())
        }
        v4 => v4,
    }
}

/// The client's address as the gateway resolved it (a request extension for handlers,
/// such as the sockets, that go on counting after the upgrade).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// Marks a response as a rate-limit refusal; [`shape_refusals`] gives it the door's shape.
#[derive(Clone, Copy, Debug)]
struct Throttled {
    retry_after: u64,
}

/// The limits every door shares: the per-IP limiter behind the HTTP layer is the same one
/// the sockets consult for each message, and so is the per-account one.
#[derive(Clone)]
pub struct Gateway {
    client_ip: ClientIp,
    ip: Option<Arc<GovernorConfig<ClientIp, NoOpMiddleware>>>,
    account: Option<Arc<KeyedLimiter<Uuid>>>,
    in_flight: Arc<Semaphore>,
    sockets: Tally<Uuid>,
    max_sockets_per_account: usize,
}

fn quota(rate: RateConfig) -> Quota {
    let per_minute = NonZeroU32::new(rate.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

/// Whole seconds until `not_until` (at least 1: `Retry-After: 0` invites a busy loop).
fn seconds_until(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

impl Gateway {
    pub fn new(config: &GatewayConfig) -> Gateway {
        let client_ip = ClientIp::new(config.trusted_proxies.clone());
        let ip = config.ip_rate.map(|rate| {
            let period = quota(rate).replenish_interval();
            let config = GovernorConfigBuilder::default()
                .period(period)
                .burst_size(rate.burst.max(1))
                .key_extractor(client_ip.clone())
                .finish()
                .expect("a non-zero period and burst");
            Arc::new(config)
        });
        let account = config
            .account_rate
            .map(|rate| Arc::new(RateLimiter::keyed(quota(rate))));
        let gateway = Gateway {
            client_ip,
            ip,
            account,
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            sockets: Tally::default(),
            max_sockets_per_account: config.max_sockets_per_account,
        };
        gateway.forget_idle_clients();
        gateway
    }

    /// Keyed limiters keep a cell per client ever seen; once a minute, drop the ones
    /// whose bucket has refilled (they hold nothing), so memory follows active clients
    /// rather than every address that ever knocked. Stops when the gateway is dropped.
    fn forget_idle_clients(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ip = self.ip.as_ref().map(|c| Arc::downgrade(c.limiter()));
        let account = self.account.as_ref().map(Arc::downgrade);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            loop {
                every.tick().await;
                let mut alive = false;
                if let Some(limiter) = ip.as_ref().and_then(|w| w.upgrade()) {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                    alive = true;
                }
                if let Some(limiter) = account.as_ref().and_then(|w| w.upgrade()) {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                    alive = true;
                }
                if !alive {
                    break;
                }
            }
        });
    }

    pub fn client_ip(&self) -> &ClientIp {
        &self.client_ip
    }

    /// Counts one request from `ip`; `Err(seconds)` when it is over the limit.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        match &self.ip {
            Some(config) => config
                .limiter()
                .check_key(&rate_key(ip))
                .map_err(|n| seconds_until(&n)),
            None => Ok(()),
        }
    }

    /// Counts one request by `account`; `Err(seconds)` when it is over the limit.
    pub fn check_account(&self, account: Uuid) -> Result<(), u64> {
        match &self.account {
            Some(limiter) => limiter.check_key(&account).map_err(|n| seconds_until(&n)),
            None => Ok(()),
        }
    }

    /// Counts one socket message against both the client's IP and the account.
    /// A place for one more open socket of `account` (given back when the ticket is
    /// dropped); `Err` carries the cap when the account holds that many already.
    pub fn open_socket(&self, account: Uuid) -> Result<Ticket<Uuid>, usize> {
        self.sockets
            .admit(account, self.max_sockets_per_account)
            .ok_or(self.max_sockets_per_account)
    }

    /// The message for a socket refused by [`Gateway::open_socket`].
    pub fn too_many_sockets(max: usize) -> String {
        format!(
            "이 계정으로 열린 연결이 너무 많아요 (최대 {max}개). 쓰지 않는 연결을 닫고 다시 연결해 주세요."
        )
    }

    pub fn check_message(&self, ip: IpAddr, account: Option<Uuid>) -> Result<(), u64> {
        self.check_ip(ip)?;
        match account {
            Some(id) => self.check_account(id),
            None => Ok(()),
        }
    }

    /// Wraps `router` in the gateway's layers (outermost first): refusal shaping, load
    /// shedding, the per-IP `tower_governor` layer, the per-account limit.
    pub fn layer(&self, router: axum::Router, domain: Domain) -> axum::Router {
        let router = router.layer(axum::middleware::from_fn_with_state(
            (self.clone(), domain),
            account_limit,
        ));
        let router = match &self.ip {
            Some(config) => router.layer(GovernorLayer::new(config.clone()).error_handler(
                |error| match error {
                    GovernorError::TooManyRequests { wait_time, .. } => throttled(wait_time.max(1)),
                    // The key extractor never fails; anything else is ours.
                    _ => RestError::code(ErrorCode::ServerError).into_response(),
                },
            )),
            None => router,
        };
        router
            .layer(axum::middleware::from_fn_with_state(
                self.in_flight.clone(),
                shed_load,
            ))
            .layer(axum::middleware::from_fn(shape_refusals))
    }
}

fn throttled(retry_after: u64) -> Response {
    let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
    response.extensions_mut().insert(Throttled { retry_after });
    response
}

/// Per-account limit for requests that carry a valid access token (checked without the
/// database: the signature names the account). Requests without one are left to the
/// per-IP limit and to the resolvers' `INVALID_TOKEN`.
async fn account_limit(
    State((gateway, domain)): State<(Gateway, Domain)>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = ClientAddr(gateway.client_ip.of_request(&request));
    request.extensions_mut().insert(client);
    if gateway.account.is_some() {
        let account = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(RequestAuth::bearer_of)
            .and_then(|token| domain.account_of_token(&token));
        if let Some(id) = account
            && let Err(retry_after) = gateway.check_account(id)
        {
            tracing::info!(account = %id, retry_after, "account rate limit exceeded");
            return throttled(retry_after);
        }
    }
    next.run(request).await
}

/// More requests in flight than configured: answer 503 at once rather than queue.
async fn shed_load(
    State(in_flight): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = in_flight.clone().try_acquire_owned() else {
        tracing::warn!("overloaded: request shed");
        let overloaded = RestError {
            retry_after: Some(1),
            ..RestError::new(
                ErrorCode::ServiceUnavailable,
                "요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.",
            )
        };
        return refusal(request.uri().path(), overloaded);
    };
    next.run(request).await
}

/// Gives rate-limit and overload refusals the shape of the door: GraphQL clients read
/// `errors[].extensions.code`, everyone else the REST envelope. Both carry `Retry-After`.
async fn shape_refusals(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let Some(Throttled { retry_after }) = response.extensions().get::<Throttled>().copied() else {
        return response;
    };
    let limited = RestError {
        retry_after: Some(retry_after),
        ..RestError::code(ErrorCode::RateLimitExceeded)
    };
    refusal(&path, limited)
}

/// A refusal made before any door answered (rate limit, overload, timeout), in the shape
/// of the door the path belongs to: GraphQL's `errors[].extensions` for `/graphql…`, the
/// REST envelope for everything else. Both carry `Retry-After` when it is known.
pub fn refusal(path: &str, error: RestError) -> Response {
    if !path.starts_with("/graphql") {
        return error.into_response();
    }
    let mut extensions = json!({"code": error.code.as_str()});
    if let Some(secs) = error.retry_after {
        extensions["retryAfter"] = json!(secs);
    }
    let body = json!({"errors": [{"message": error.message, "extensions": extensions}]});
    let mut response = envelope::json_response(error.code.status(), &body);
    if let Some(secs) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let none = ClientIp::new(vec![]);
        let spoof = headers(&[("x-forwarded-for", "9.9.9.9"), ("x-real-ip", "8.8.8.8")]);
        assert_eq!(none.resolve(ip("203.0.113.7"), &spoof), ip("203.0.113.7"));

        let proxies = ClientIp::new(vec![
            IpNet::parse("127.0.0.1").unwrap(),
            IpNet::parse("10.0.0.0/8").unwrap(),
        ]);
        // From the proxy: the nearest untrusted hop.
        let chain = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(proxies.resolve(ip("127.0.0.1"), &chain), ip("203.0.113.9"));
        // X-Real-IP when there is no X-Forwarded-For; the peer when there is neither.
        let real = headers(&[("x-real-ip", "203.0.113.5")]);
        assert_eq!(proxies.resolve(ip("10.9.9.9"), &real), ip("203.0.113.5"));
        assert_eq!(
            proxies.resolve(ip("10.9.9.9"), &HeaderMap::new()),
            ip("10.9.9.9")
        );
        // Garbage in the header is skipped, not trusted.
        let junk = headers(&[("x-forwarded-for", "not-an-ip, 203.0.113.8:4711")]);
        assert_eq!(proxies.resolve(ip("127.0.0.1"), &junk), ip("203.0.113.8"));
        // IPv4-mapped peers are their IPv4 address.
        assert_eq!(
            proxies.resolve(ip("::ffff:127.0.0.1"), &chain),
            ip("203.0.113.9")
        );
        // An untrusted peer's headers are ignored even if they name a proxy.
        assert_eq!(proxies.resolve(ip("192.0.2.1"), &chain), ip("192.0.2.1"));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            rate_key(ip("2001:db8:1:2:aaaa::1")),
            rate_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(rate_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn networks_match_by_prefix() {
        let net = IpNet::parse("192.168.0.0/16").unwrap();
        assert!(net.contains("192.168.44.1".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(
            IpNet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("example.com").is_none());
    }
}
