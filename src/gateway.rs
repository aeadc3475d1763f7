//! What stands between the network and the doors: per-IP and per-account rate limits
//! (the client as `http::client` resolves it), and load shedding. Every refusal answers in the shape of the door it came to: the REST
//! envelope, GraphQL's `errors`, or a socket `error` message.
//!
//! Limits are per process; Nginx's `limit_req` gives the cluster-wide per-IP view.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use crate::config::{GatewayConfig, RateConfig};
use crate::domain::Domain;
use crate::error::ErrorCode;
use crate::http::client::rate_key;
use crate::http::{ClientAddr, ClientIp, RestError, refusal};
use crate::shutdown::Shutdown;
use crate::tally::{Tally, Ticket};
use crate::vocabulary::UserId;

type KeyedLimiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, NoOpMiddleware>;

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(rate_key(self.of_request(req)))
    }
}

/// Marks a response as a rate-limit refusal; [`shape_refusals`] gives it the door's shape.
#[derive(Clone, Copy, Debug)]
struct Throttled {
    retry_after: u64,
}

/// The limits every door shares: the per-IP limiter behind the HTTP layer is the same one
/// the sockets consult for each message, and so is the per-account one.
#[derive(Clone)]
pub(crate) struct Gateway {
    client_ip: ClientIp,
    ip: Option<Arc<GovernorConfig<ClientIp, NoOpMiddleware>>>,
    account: Option<Arc<KeyedLimiter<UserId>>>,
    in_flight: Arc<Semaphore>,
    sockets: Tally<UserId>,
    /// The process's shutdown signal: the sockets watch it (and are waited for).
    shutdown: Shutdown,
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
    pub(crate) fn new(config: &GatewayConfig, shutdown: Shutdown) -> Gateway {
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
            shutdown: shutdown.clone(),
        };
        gateway.forget_idle_clients(shutdown);
        gateway
    }

    /// Keyed limiters keep a cell per client ever seen; once a minute, drop the ones
    /// whose bucket has refilled (they hold nothing), so memory follows active clients
    /// rather than every address that ever knocked. Stops on shutdown, or when the
    /// gateway is dropped.
    fn forget_idle_clients(&self, shutdown: Shutdown) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ip = self.ip.as_ref().map(|c| Arc::downgrade(c.limiter()));
        let account = self.account.as_ref().map(Arc::downgrade);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.requested() => break,
                }
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

    /// The shutdown signal every socket door watches.
    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Counts one request from `ip`; `Err(seconds)` when it is over the limit.
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        match &self.ip {
            Some(config) => config
                .limiter()
                .check_key(&rate_key(ip))
                .map_err(|n| seconds_until(&n)),
            None => Ok(()),
        }
    }

    /// Counts one request by `account`; `Err(seconds)` when it is over the limit.
    pub(crate) fn check_account(&self, account: UserId) -> Result<(), u64> {
        match &self.account {
            Some(limiter) => limiter.check_key(&account).map_err(|n| seconds_until(&n)),
            None => Ok(()),
        }
    }

    /// Counts one socket message against both the client's IP and the account.
    /// A place for one more open socket of `account` (given back when the ticket is
    /// dropped); `Err` carries the cap when the account holds that many already.
    pub(crate) fn open_socket(&self, account: UserId) -> Result<Ticket<UserId>, usize> {
        self.sockets
            .admit(account, self.max_sockets_per_account)
            .ok_or(self.max_sockets_per_account)
    }

    /// The message for a socket refused by [`Gateway::open_socket`].
    pub(crate) fn too_many_sockets(max: usize) -> String {
        format!(
            "이 계정으로 열린 연결이 너무 많아요 (최대 {max}개). 쓰지 않는 연결을 닫고 다시 연결해 주세요."
        )
    }

    pub(crate) fn check_message(&self, ip: IpAddr, account: Option<UserId>) -> Result<(), u64> {
        self.check_ip(ip)?;
        match account {
            Some(id) => self.check_account(id),
            None => Ok(()),
        }
    }

    /// Wraps `router` in the gateway's layers (outermost first): refusal shaping, load
    /// shedding, the per-IP `tower_governor` layer, the per-account limit.
    pub(crate) fn layer(&self, router: axum::Router, domain: Domain) -> axum::Router {
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
        let account = crate::http::bearer(request.headers())
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
