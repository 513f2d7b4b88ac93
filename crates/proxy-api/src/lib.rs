//! The HTTP monitoring API of the proxy (go-proxy RFC §16), on axum.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard page (and its `/dashboard.css`, `/dashboard.js`): files built into the binary, served without the token |
//! | `GET /1/summary` | mode, uptime, hashrates, miners, workers, upstreams, share results ([`Summary`]) |
//! | `GET /2/summary`, `GET /api.json` | the same as `/1/summary` (the paths xmrig's dashboards call) |
//! | `GET /1/history` | the proxy's and each pool's hashrate, a point a minute for 24 h ([`HistoryBody`]) |
//! | `GET /1/upstreams` | one row per upstream connection ([`UpstreamsBody`]) |
//! | `GET /1/events` | the latest notable events: refused shares, bans, upstreams lost ([`EventsBody`]) |
//! | `GET /1/workers` | one row per worker ([`WorkersBody`]) |
//! | `GET /1/miners` | one row per miner connection ([`MinersBody`]) |
//! | `GET /1/blocks` | solo mining: shares per user in the current round and the last blocks found ([`proxy_core::BlocksSnapshot`]) |
//! | `GET /1/config` | the running config, secrets masked |
//! | `PUT /1/config` | replace the running config (and its file); needs a token, not restricted |
//! | `GET /metrics` | Prometheus metrics in the OpenMetrics text format |
//!
//! Access rules, read from the running config on every request (so a reload changes them at
//! once), as xmrig-proxy applies them:
//! - `http.access-token` set: every request but a read of the dashboard's three files needs
//!   `Authorization: Bearer <token>`; 401 without the header, 403 with another token.
//! - `http.restricted` true: only `GET`/`HEAD` are served, and not `/1/config` (it holds the
//!   config); anything else is 403.
//! - no `http.access-token`: writes (`PUT /1/config`, any method but `GET`/`HEAD`/`OPTIONS`)
//!   are 403 with a message saying so, whatever `restricted` says; a warning is logged at
//!   start ([`serve`]) and on a reload that leaves the API so.
//!
//! Errors are JSON, `{"status": 403, "error": "FORBIDDEN"}`, plus a `message` where there is
//! more to say. CORS (tower-http's [`CorsLayer`]): any origin may read (`GET`, `HEAD`, with an
//! `Authorization` header), but no web page may write: a preflight lists only `GET, HEAD`, so
//! a browser never sends a cross-origin `PUT`. Preflights (`OPTIONS`) are answered without a
//! token, as browsers send none.
//!
//! Figures that depend on time are computed for the moment given by the router's [`Clock`]
//! ([`router`] uses tokio's clock, the proxy's one clock, which a test can pause; tests may
//! also pass their own to [`router_with_clock`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use proxy_core::Monitor;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower_http::cors::{Any, CorsLayer};

mod auth;
mod blocks;
mod config_api;
mod dashboard;
mod history;
mod metrics;
mod resources;
mod views;

pub use config_api::{masked_config, SECRET_MASK};
pub use history::{
    run_sampler, History, HistoryBody, UpstreamSample, HISTORY_MAX_POOLS, HISTORY_PERIOD,
    HISTORY_POINTS, OTHER_POOLS,
};
pub use metrics::{metrics_text, OPENMETRICS_CONTENT_TYPE};
pub use resources::{Memory, Resources};
pub use views::{
    events, marked, miners, summary, summary_at, upstreams, workers_at, EventsBody, FamilySummary,
    HashrateTotals, MinerRow, MinersBody, MinersCount, Results, Summary, UpstreamRow, Upstreams,
    UpstreamsBody, WorkerRow, WorkersBody, MINERS_FORMAT, MINERS_FORMAT_MARKED,
};

/// The proxy's version, reported by `/1/summary`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the API takes "now" from: tokio's clock in production (the proxy's one clock, the
/// time base of [`Monitor::started`]), a hand-driven one in some tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) monitor: Monitor,
    pub(crate) clock: Clock,
    pub(crate) registry: Arc<prometheus_client::registry::Registry>,
    pub(crate) history: Arc<History>,
    pub(crate) history_period: Duration,
}

impl Api {
    pub(crate) fn now(&self) -> Instant {
        (self.clock)()
    }
}

/// A JSON error body as xmrig-proxy sends it: `{"status": 403, "error": "FORBIDDEN"}`, with
/// `message` when given.
pub(crate) fn error(status: StatusCode, message: Option<String>) -> Response {
    let name = status
        .canonical_reason()
        .unwrap_or("ERROR")
        .to_uppercase()
        .replace(' ', "_");
    let mut body = serde_json::json!({"status": status.as_u16(), "error": name});
    if let Some(m) = message {
        body["message"] = m.into();
    }
    (status, Json(body)).into_response()
}

async fn get_summary(State(api): State<Api>) -> Json<Summary> {
    Json(summary_at(&api.monitor, api.now()))
}

async fn get_workers(State(api): State<Api>) -> Json<WorkersBody> {
    Json(workers_at(&api.monitor, api.now()))
}

async fn get_miners(State(api): State<Api>) -> Json<MinersBody> {
    Json(miners(&api.monitor))
}

async fn get_history(State(api): State<Api>) -> Json<HistoryBody> {
    Json(api.history.body(api.history_period))
}

async fn get_upstreams(State(api): State<Api>) -> Json<UpstreamsBody> {
    Json(upstreams(&api.monitor))
}

async fn get_events(State(api): State<Api>) -> Json<EventsBody> {
    Json(events(&api.monitor))
}

async fn get_metrics(State(api): State<Api>) -> Response {
    match metrics::encode(&api.registry) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(e.to_string())),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, None)
}

/// The API's routes, with figures as of tokio's clock (the proxy's one clock).
pub fn router(monitor: Monitor) -> Router {
    router_with_clock(monitor, Arc::new(Instant::now))
}

/// The API's routes, with figures as of `clock` (for tests that simulate time), and an empty
/// history that nothing samples.
pub fn router_with_clock(monitor: Monitor, clock: Clock) -> Router {
    router_with_history(monitor, clock, Arc::default(), HISTORY_PERIOD)
}

/// The API's routes, with figures as of `clock`, and `/1/history` from `history`, which the
/// caller samples every `period` ([`run_sampler`]; [`serve`] does it every
/// [`HISTORY_PERIOD`]).
pub fn router_with_history(
    monitor: Monitor,
    clock: Clock,
    history: Arc<History>,
    period: Duration,
) -> Router {
    let registry = Arc::new(metrics::registry(monitor.clone(), clock.clone()));
    let api = Api {
        monitor,
        clock,
        registry,
        history,
        history_period: period,
    };
    // Reads from any origin (dashboards); writes from none: a preflight for `PUT` gets no
    // `PUT` in `Access-Control-Allow-Methods`, so the browser does not send it.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([header::AUTHORIZATION]);
    Router::new()
        .route("/", get(dashboard::index))
        .route(dashboard::CSS_PATH, get(dashboard::css))
        .route(dashboard::JS_PATH, get(dashboard::js))
        .route("/1/summary", get(get_summary))
        .route("/2/summary", get(get_summary))
        .route("/api.json", get(get_summary))
        .route("/1/history", get(get_history))
        .route("/1/upstreams", get(get_upstreams))
        .route("/1/events", get(get_events))
        .route("/1/workers", get(get_workers))
        .route("/1/miners", get(get_miners))
        .route("/1/blocks", get(blocks::get_blocks))
        .route(
            "/1/config",
            get(config_api::get_config).put(config_api::put_config),
        )
        .route("/metrics", get(get_metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(api.clone(), auth::guard))
        .layer(cors)
        .with_state(api)
}

/// Serves the API on `addr` until `stop` resolves, sampling `/1/history` every
/// [`HISTORY_PERIOD`]. Returns the bound address through `on_bound` before serving, and logs
/// [`proxy_core::config::HttpConfig::read_only_warning`] when it applies.
///
/// # Errors
/// When the address cannot be bound or the server fails.
pub async fn serve(
    addr: SocketAddr,
    monitor: Monitor,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    serve_with_history_period(addr, monitor, HISTORY_PERIOD, stop, on_bound).await
}

/// [`serve`] with `/1/history` sampled every `period` instead of every minute (tests).
///
/// # Errors
/// When the address cannot be bound or the server fails.
pub async fn serve_with_history_period(
    addr: SocketAddr,
    monitor: Monitor,
    period: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    if let Some(warning) = monitor.config().http.read_only_warning() {
        tracing::warn!("{warning}");
    }
    let history = Arc::new(History::default());
    // Stopped when serving ends, or when this future is dropped.
    let _sampler = AbortOnDrop(tokio::spawn(run_sampler(
        monitor.clone(),
        history.clone(),
        period,
    )));
    let app = router_with_history(monitor, Arc::new(Instant::now), history, period);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
