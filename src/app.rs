//! Builds the router and shared state, binds the listener, and serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::Config;
use crate::domain::Domain;
use crate::error::ErrorCode;
use crate::events::Events;
use crate::gateway::Gateway;
use crate::graphql;
use crate::http::errors::InternalCauses;
use crate::http::{RestError, envelope};
use crate::jobs::StoryWorker;
use crate::providers::Providers;
use crate::shutdown::{Shutdown, ShutdownSwitch};
use crate::store::{self, Pool};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A bound, ready-to-serve application.
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    router: Router,
    domain: Domain,
    worker: Option<StoryWorker>,
    shutdown: ShutdownSwitch,
}

/// How long open sockets get to close (their Close and the client's answer) once the
/// shutdown has started.
const SOCKET_GRACE: Duration = Duration::from_secs(5);

impl Application {
    /// Migrates the database, builds the services and binds `config.bind`.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let applied = store::migrate(&config.database_url)
            .await
            .context("migrating the database")?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
        let pool = Pool::connect_waiting(
            &config.database_url,
            config.database_pool_size,
            config.database_acquire_timeout,
        )
        .await?
        .with_chapter_cache(config.story_cache_bytes);
        let shutdown = ShutdownSwitch::new();
        let events = Events::start(pool.clone(), &config.database_url, shutdown.handle()).await?;
        std::fs::create_dir_all(&config.media_dir)
            .with_context(|| format!("creating {}", config.media_dir.display()))?;
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let metrics_listener = TcpListener::bind(config.metrics_bind)
            .await
            .with_context(|| {
                format!(
                    "binding the metrics listener {} (JJONGAL_METRICS_BIND)",
                    config.metrics_bind
                )
            })?;
        let providers = Providers::from_config(&config.providers);
        let worker_config = config.worker.clone();
        let domain = Domain::new(config, pool, events, providers);
        let worker = worker_config
            .enabled
            .then(|| StoryWorker::new(domain.clone(), worker_config));
        let router = router(domain.clone(), shutdown.handle());
        Ok(Application {
            listener,
            metrics_listener,
            router,
            domain,
            worker,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` is served (its own listener, never the public port).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Serves (and runs the story worker) until `shutdown` resolves; then pulls the one
    /// shutdown switch every long-lived task watches: open sockets close with `1001`,
    /// in-flight requests finish, in-flight stories get `JJONGAL_SHUTDOWN_GRACE_SECS`
    /// before their leases are released, and the event listener stops. Returns once the
    /// sockets have closed (or [`SOCKET_GRACE`] has passed). Everything runs in this one
    /// future: dropping it stops everything at once (which is how tests simulate a crash).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let signal = self.shutdown.handle();
        let metrics = axum::serve(
            self.metrics_listener,
            Router::new()
                .route("/metrics", get(metrics))
                .with_state(self.domain.clone())
                .layer(axum::middleware::from_fn(
                    crate::http::errors::log_internal_causes,
                )),
        )
        .with_graceful_shutdown(signal.requested());
        let config = self.domain.config();
        let limits = crate::server::ConnectionLimits {
            header_read_timeout: config.header_read_timeout,
            max_per_ip: config.max_connections_per_ip,
            trusted_proxies: config.gateway.trusted_proxies.clone(),
        };
        let serve = crate::server::serve(
            self.listener,
            self.router,
            limits,
            self.shutdown.pull_on(shutdown),
        );
        let worker = async {
            if let Some(worker) = self.worker {
                worker.run(signal.clone()).await;
            }
        };
        let housekeeping = end_idle_conversations(self.domain.clone(), signal.clone());
        let purging = purge_on_schedule(self.domain.clone(), signal.clone());
        let (served, metrics_served, (), (), ()) =
            tokio::join!(serve, metrics.into_future(), worker, housekeeping, purging);
        if !self.shutdown.drain(SOCKET_GRACE).await {
            tracing::warn!("some sockets had not closed when the shutdown's grace ended");
        }
        metrics_served.context("serving metrics")?;
        served.context("serving HTTP")
    }
}

/// Ends abandoned conversations (no message for `JJONGAL_CONVERSATION_IDLE_END_SECS`)
/// until the shutdown; every process does it (each conversation ends once).
async fn end_idle_conversations(domain: Domain, shutdown: Shutdown) {
    let every = (domain.config().ws.conversation_idle_end / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    );
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.requested() => return,
        }
        if let Err(e) = domain.conversations().end_idle().await {
            tracing::warn!(error = ?e, "ending idle conversations failed; trying again later");
        }
    }
}

/// Runs the retention purge every `JJONGAL_PURGE_INTERVAL_SECS` until the shutdown;
/// every process tries, one purges per interval (`domain::retention`).
async fn purge_on_schedule(domain: Domain, shutdown: Shutdown) {
    let interval = domain.config().retention.purge_interval;
    let process = format!("server-{}", uuid::Uuid::new_v4());
    // Checked a few times per interval (at most every minute), so a process that
    // starts late still takes a slot nobody took.
    let every = (interval / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    );
    // The first try a tick after start-up, not during it.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.requested() => return,
        }
        if let Err(e) = domain.retention().purge_if_due(&process).await {
            tracing::warn!(error = ?e, "the retention purge failed; trying again next interval");
        }
    }
}

/// The whole public router: REST facade, GraphQL, health, with request ids, tracing,
/// body limits and panic catching around it.
pub(crate) fn router(domain: Domain, shutdown: Shutdown) -> Router {
    let gateway = Gateway::new(&domain.config().gateway, shutdown);
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(domain.clone());
    // Everything but the health checks passes the gateway (rate limits, load shedding):
    // a load balancer's probes must not be refused for the traffic they measure.
    let gated = gateway.layer(doors(&domain, &gateway), domain.clone());
    with_common_layers(gated.merge(health), &domain)
}

/// The doors: the REST facade and GraphQL (over HTTP and its socket), the conversation
/// socket, media files, the documentation pages.
fn doors(domain: &Domain, gateway: &Gateway) -> Router {
    let schema = graphql::build_schema(domain.clone());
    let components = crate::rest::openapi::components();
    let mut api = crate::rest::door::router(&components, domain.config().max_text_chars).route(
        "/graphql",
        get(graphql::http::get).post(graphql::http::post),
    );
    // The SDL is introspection by other means: not served when introspection is off.
    if domain.config().graphql.introspection {
        let texts = std::sync::Arc::new(SchemaTexts {
            public: graphql::public_sdl(),
            full: graphql::sdl(),
        });
        let viewer = domain.clone();
        api = api.route(
            "/graphql/schema.graphql",
            get(move |headers: axum::http::HeaderMap| schema_sdl(viewer, texts, headers)),
        );
    }
    let mut api = api
        .route("/graphql/ws", get(graphql::ws::upgrade))
        .layer(axum::Extension(domain.clone()))
        .layer(axum::Extension(gateway.clone()))
        .with_state(schema.clone());
    let ws_state = crate::ws::WsState::new(crate::ws::WsParts {
        schema,
        domain: domain.clone(),
        config: domain.config().ws.clone(),
        gateway: gateway.clone(),
        documents: std::sync::Arc::new(crate::ws::Documents::parse()),
        speech: crate::ws::SpeechBudget::new(
            domain.config().ws.speech_buffer_per_account,
            domain.config().ws.speech_buffer_total,
        ),
    });
    let conversation_ws = Router::new()
        .route("/wss/v1/audio", get(crate::ws::audio))
        .route("/wss/v1/audio/", get(crate::ws::audio))
        .route("/ws/v1/audio", get(crate::ws::audio))
        .route("/ws/v1/audio/", get(crate::ws::audio))
        .with_state(ws_state);
    let media = Router::new()
        .route("/media/{*path}", get(crate::http::media::media))
        .with_state(domain.media().clone());
    // The family's archive: a file, not the JSON envelope (failures are envelopes).
    api = api.route(
        "/api/v1/users/me/export",
        get(crate::http::export::export).with_state(domain.clone()),
    );
    // A story's picture book: a file too.
    api = api.route(
        "/api/v1/stories/{id}/book.epub",
        get(crate::http::book::book).with_state(domain.clone()),
    );
    if domain.config().bench_routes {
        api = api.merge(crate::stack_limit::router(domain.clone()));
    }
    api.merge(conversation_ws)
        .merge(media)
        .merge(crate::docs::router(
            crate::rest::openapi::document_json(&domain.config().public_url),
            crate::docs::privacy_page(&domain.providers().data_map),
        ))
        .fallback(not_found)
}

/// What wraps every answer: the request timeout, CORS preflights, security headers, body
/// limits, panic catching, the logging of internal causes, request ids and tracing.
fn with_common_layers(router: Router, domain: &Domain) -> Router {
    let domain_timeout = domain.config().request_timeout;
    let body_limit = domain.config().max_body_bytes;
    let https = domain.config().public_url.starts_with("https://");
    let cors = cors_layer(&domain.config().cors_origins);
    router
        .layer(axum::middleware::from_fn_with_state(
            domain_timeout,
            request_timeout,
        ))
        .layer(PreflightsOnlyLayer(cors))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // A CSP for every answer: JSON needs none of it. The HTML pages (docs, GraphiQL)
        // set their own (`docs::PAGE_CSP`): only this origin's scripts.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            https.then(|| HeaderValue::from_static("max-age=31536000; includeSubDomains")),
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            crate::body_guard::guard,
        ))
        // Inside the request's span: internal causes are logged with the request id.
        .layer(axum::middleware::from_fn(
            crate::http::errors::log_internal_causes,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let request_id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only: query strings can carry tokens (WebSockets).
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        request_id = %request_id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// Answers `503 SERVICE_UNAVAILABLE` when a request takes longer than configured, instead
/// of letting work queue without bound. (An upgraded WebSocket is not a request any more:
/// its handler returns at once.)
async fn request_timeout(
    State(limit): State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit_secs = limit.as_secs(), "request timed out");
            let timed_out = RestError::new(
                ErrorCode::ServiceUnavailable,
                "요청 처리 시간이 초과되었습니다. 잠시 후 다시 시도해 주세요.",
            );
            crate::http::refusal(&path, timed_out)
        }
    }
}

/// CORS, except that only a real preflight (OPTIONS with `Access-Control-Request-Method`)
/// is answered by it: tower-http takes every OPTIONS for one and answered `200` even on
/// unknown paths. Any other OPTIONS goes to the routes like any request (404 envelope on
/// an unknown path, 405 on a known one); every other request gets CORS headers as usual.
#[derive(Clone)]
struct PreflightsOnlyLayer(CorsLayer);

impl<S: Clone> tower::Layer<S> for PreflightsOnlyLayer {
    type Service = PreflightsOnly<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PreflightsOnly {
            cors: tower::Layer::layer(&self.0, inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Clone)]
struct PreflightsOnly<S> {
    cors: tower_http::cors::Cors<S>,
    plain: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for PreflightsOnly<S>
where
    S: tower::Service<Request<ReqBody>, Response = axum::http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = axum::http::Response<ResBody>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        // Each call drives a clone to readiness (`oneshot`).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        use tower::ServiceExt;
        let plain_options = request.method() == Method::OPTIONS
            && !request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if plain_options {
            Box::pin(self.plain.clone().oneshot(request))
        } else {
            Box::pin(self.cors.clone().oneshot(request))
        }
    }
}

/// CORS for the configured origins only (none by default); credentials travel in the
/// `Authorization` header, never cookies, so no `Allow-Credentials`.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            REQUEST_ID.clone(),
        ])
        .expose_headers([REQUEST_ID.clone(), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// The two SDL texts `/graphql/schema.graphql` serves.
struct SchemaTexts {
    public: String,
    full: String,
}

/// The public SDL; the full one (with the operator surface) only to a request carrying
/// an operator's access token.
async fn schema_sdl(
    domain: Domain,
    texts: std::sync::Arc<SchemaTexts>,
    headers: axum::http::HeaderMap,
) -> Response {
    let auth = graphql::RequestAuth::new(crate::http::bearer(&headers));
    let operator = match auth.bearer() {
        Some(token) => domain
            .accounts()
            .authenticate(Some(token))
            .await
            .is_ok_and(|user| user.role == crate::domain::accounts::Role::Operator),
        None => false,
    };
    let text = if operator { &texts.full } else { &texts.public };
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::VARY, "Authorization"),
        ],
        text.clone(),
    )
        .into_response()
}

/// Prometheus text exposition of the operations figures.
async fn metrics(State(domain): State<Domain>) -> Response {
    match domain.ops().db_figures().await {
        Ok(figures) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            domain.metrics().render(&figures),
        )
            .into_response(),
        Err(e) => {
            let mut response =
                (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response();
            InternalCauses(e.into_public().cause.into_iter().collect()).attach(&mut response);
            response
        }
    }
}

async fn healthz() -> Response {
    envelope::success(
        StatusCode::OK,
        "정상 동작 중입니다.",
        json!({"status": "ok"}),
    )
}

async fn readyz(State(domain): State<Domain>) -> Response {
    match domain.ready().await {
        Ok(()) => envelope::success(
            StatusCode::OK,
            "서비스가 준비되었습니다.",
            json!({"status": "ready", "database": "ok"}),
        ),
        Err(storage_full) => {
            let mut refusal = if storage_full {
                RestError::new(
                    ErrorCode::ServiceUnavailable,
                    "데이터베이스에 쓸 수 없습니다 (저장 공간이 부족합니다).",
                )
            } else {
                RestError::new(
                    ErrorCode::ServiceUnavailable,
                    "데이터베이스에 연결할 수 없습니다.",
                )
            };
            refusal.retry_after = Some(30);
            refusal.into_response()
        }
    }
}

async fn not_found() -> RestError {
    RestError::code(ErrorCode::ResourceNotFound)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    RestError::code(ErrorCode::ServerError).into_response()
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
