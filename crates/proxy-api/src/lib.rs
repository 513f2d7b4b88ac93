//! The HTTP monitoring API of the proxy (go-proxy RFC §16), on axum.
//!
//! Routes so far:
//! - `GET /1/summary`: mode, miners now and max, upstreams by state, share results.
//!
//! Per-window hashrates, `/1/workers`, `/1/miners`, the token and restricted modes and the
//! Prometheus metrics come with the monitoring work (Order 3).

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use proxy_core::Monitor;
use serde::Serialize;
use tokio::net::TcpListener;

/// The proxy's version, reported by `/1/summary`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `miners` object of `/1/summary`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MinersCount {
    /// Connected now.
    pub now: u64,
    /// Peak since start.
    pub max: u64,
}

/// `upstreams` object of `/1/summary`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Upstreams {
    /// Logged in with miners on them.
    pub active: u64,
    /// Logged in, no miners.
    pub sleep: u64,
    /// Connecting or failing.
    pub error: u64,
    /// All.
    pub total: u64,
    /// Miners per active upstream.
    pub ratio: f64,
}

/// `results` object of `/1/summary`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Results {
    /// Accepted by the pool.
    pub accepted: u64,
    /// Rejected by the pool.
    pub rejected: u64,
    /// Refused by the proxy before the pool.
    pub invalid: u64,
    /// Shares for the previous job.
    pub expired: u64,
    /// Sum of accepted share difficulties.
    pub hashes_total: u64,
    /// Blocks accepted by daemon upstreams.
    pub blocks: u64,
}

/// The `/1/summary` body.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Proxy version.
    pub version: &'static str,
    /// `nicehash` or `simple`.
    pub mode: String,
    /// Seconds since start.
    pub uptime: u64,
    /// Miner counts.
    pub miners: MinersCount,
    /// Upstream counts.
    pub upstreams: Upstreams,
    /// Share results.
    pub results: Results,
}

/// Builds the summary from the proxy's counters.
pub fn summary(m: &Monitor) -> Summary {
    let s = m.stats();
    let u = m.upstreams();
    Summary {
        version: VERSION,
        mode: m.config().mode.to_string(),
        uptime: m.uptime().as_secs(),
        miners: MinersCount {
            now: s.miners,
            max: s.max_miners,
        },
        upstreams: Upstreams {
            active: u.active,
            sleep: u.sleep,
            error: u.error,
            total: u.total,
            ratio: if u.active == 0 {
                0.0
            } else {
                s.miners as f64 / u.active as f64
            },
        },
        results: Results {
            accepted: s.accepted,
            rejected: s.rejected,
            invalid: s.invalid,
            expired: s.expired,
            hashes_total: s.hashes,
            blocks: m.blocks(),
        },
    }
}

async fn get_summary(State(m): State<Monitor>) -> Json<Summary> {
    Json(summary(&m))
}

/// The API's routes.
pub fn router(monitor: Monitor) -> Router {
    Router::new()
        .route("/1/summary", get(get_summary))
        .with_state(monitor)
}

/// Serves the API on `addr` until `stop` resolves. Returns the bound address through
/// `on_bound` before serving.
///
/// # Errors
/// When the address cannot be bound or the server fails.
pub async fn serve(
    addr: SocketAddr,
    monitor: Monitor,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    axum::serve(listener, router(monitor))
        .with_graceful_shutdown(stop)
        .await
}
