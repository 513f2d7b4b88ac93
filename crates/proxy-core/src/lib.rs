//! The proxy orchestrator: listeners, miner sessions, splitters wired to upstreams, stats and
//! config (go-proxy RFC §3, §5).
//!
//! ```text
//! miners ──TCP──▶ listener ──▶ Miner (socket, outbox, Session) ◀── dispatcher tasks
//!                                             │ login / submit
//!                                             ▼
//!                                   Splitter ──▶ Mapper (Channel) ──▶ pool_client::Upstream ──▶ pool
//!                                             ▲   jobs, share results   │
//!                                             └──────────────────────────┘
//! ```
//!
//! The protocol decisions (a miner's `Session`, an upstream's `Channel`, every refusal) are
//! the sans-IO crate `stratum-session`'s; this crate is their driver: it moves bytes, reads
//! tokio's clock and counts. The driver knows no stratum family: it is generic over one
//! (the `Family` trait of `splitter/family.rs` and `MinerProtocol` of `miner.rs`,
//! monomorphised), and `family/cryptonote.rs` is the one it serves today (see
//! ARCHITECTURE.md, "The seam for stratum families").
//!
//! [`Proxy::start`] binds every listener of the config and returns a [`ProxyHandle`]; the
//! handle reports stats and stops the proxy with [`ProxyHandle::shutdown`], which answers the
//! shares still in flight (up to a grace period, 5 s in the CLI) before closing connections.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod config;
mod conn;
mod deadlines;
mod events;
mod family;
mod fanout;
mod intern;
mod journal;
mod login;
mod logs;
mod miner;
mod monitor;
mod ratelimit;
mod reload;
mod rounds;
mod serve;
mod splitter;
mod stats;
mod tls;
mod workers;

pub use config::{Config, ConfigError};
pub use family::{DUPLICATE_SHARE, NICEHASH_SLOTS};
pub use journal::{Notice, NoticeKind, JOURNAL_CAPACITY, NOTICE_MAX_CHARS};
pub use login::LoginInfo;
pub use miner::{MinerId, MinerPhase, INACTIVITY_TIMEOUT, LOGIN_TIMEOUT};
pub use monitor::MinerSnapshot;
pub use pool_client::UpstreamState;
pub use reload::{ConfigAdjust, ReloadOutcome, WATCH_INTERVAL};
pub use rounds::{
    user_of, BlocksSnapshot, Round, RoundTally, SoloBlock, UserShares, MAX_BLOCKS, MAX_ROUND_USERS,
};
pub use splitter::{UpstreamCounts, UpstreamInfo, EMPTY_MAPPER_TTL};
pub use stats::{
    LatencyHistogram, Stats, StatsSnapshot, StatsSummary, WorkerWindows, HASHRATE_WINDOWS,
};
pub use workers::{WorkerRecord, WorkerSummary, WorkersSnapshot};

use events::Events;
use family::{CryptoNote, Sv1};
use miner::{Miner, MinerProtocol};
use splitter::{Family, Splitter};

/// Errors that stop the proxy from starting.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The config is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address could not be bound (in use, no permission): fatal, fix the config.
    #[error("listen failed on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Locks a mutex, ignoring poisoning: every lock in the proxy guards short, self-consistent
/// updates, so a panic elsewhere leaves data that is still safe to serve from.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared by every task of one proxy, serving the stratum family `F`.
pub(crate) struct Shared<F: Family> {
    pub(crate) config: Arc<ArcSwap<Config>>,
    pub(crate) events: Arc<Events>,
    pub(crate) splitter: Splitter<F, Arc<Miner<F>>>,
    /// The file the config came from, when started with [`Proxy::start_from_file`].
    pub(crate) config_path: std::sync::OnceLock<std::path::PathBuf>,
    /// Per-IP connection limit (`rate-limit`), checked by every accept loop; apply a new
    /// config with [`ratelimit::RateLimiter::reconfigure`].
    pub(crate) rate_limiter: Arc<ratelimit::RateLimiter>,
    miners: Mutex<HashMap<MinerId, Arc<Miner<F>>>>,
    pub(crate) next_miner_id: AtomicU64,
    /// The ready queues of the tasks that serve miner sockets.
    pub(crate) dispatchers: serve::Dispatchers<F>,
    /// Shared copies of login strings.
    pub(crate) strings: intern::Interner,
    /// Most miners served at once; past it a new connection is told "Proxy is full" and
    /// closed. From the open-file limit at start ([`miner_limit`]), or
    /// [`ProxyHandle::set_miner_limit`].
    pub(crate) max_miners: AtomicU64,
    /// Time zero of the miners' deadlines (tokio's clock, so tests may pause it).
    pub(crate) clock: tokio::time::Instant,
    /// When the tick looks at each miner's deadline again (`deadlines.rs`).
    pub(crate) deadlines: deadlines::Deadlines<MinerId>,
}

impl<F: Family> Shared<F> {
    /// The proxy's counters (owned by the events that feed them).
    pub(crate) fn stats(&self) -> &Stats {
        &self.events.stats
    }

    fn register(&self, miner: &Arc<Miner<F>>) {
        self.stats().miner_connected();
        lock(&self.miners).insert(miner.id, miner.clone());
    }

    fn unregister(&self, miner: &Miner<F>) {
        self.stats().miner_disconnected();
        lock(&self.miners).remove(&miner.id);
    }
}

/// Builds and starts proxies.
#[derive(Debug, Clone, Copy)]
pub struct Proxy;

impl Proxy {
    /// Validates `config`, binds every `bind` address and starts serving miners. Upstream
    /// connections open when the first miner logs in.
    ///
    /// # Errors
    /// [`ProxyError::Config`] for an invalid config, [`ProxyError::Listen`] when an address
    /// cannot be bound.
    pub async fn start(config: Config) -> Result<ProxyHandle, ProxyError> {
        config.validate()?;
        // One family per proxy, named by `protocol`.
        match config.protocol {
            config::Protocol::CryptoNote => Self::start_family::<CryptoNote>(config).await,
            config::Protocol::StratumV1 => Self::start_family::<Sv1>(config).await,
        }
    }

    /// [`Proxy::start`] for the stratum family `F`, `config` validated.
    async fn start_family<F: MinerProtocol>(config: Config) -> Result<ProxyHandle, ProxyError> {
        if let Some(warning) = config.ignored_warning() {
            tracing::warn!("{warning}");
        }
        // Certificate problems are fatal here, before anything listens (RFC §21).
        let acceptor = if tls::tls_wanted(&config) {
            Some(tls::TlsAcceptor::from(tls::server_config(&config)?))
        } else {
            None
        };
        let mut listeners = Vec::new();
        for b in &config.bind {
            let addr = b.socket_addr()?;
            let l = bind_listener(addr).map_err(|source| ProxyError::Listen { addr, source })?;
            listeners.push(conn::Listener::new(
                l,
                b.tls,
                config.tls.enabled,
                acceptor.clone(),
            ));
        }
        let events = Arc::new(Events::new(&config));
        let rate_limiter = events.rate_limiter.clone();
        let limit = miner_limit(config.mode);
        tracing::info!("room for {limit} miners (open-file limit)");
        let config = Arc::new(ArcSwap::from_pointee(config));
        let accept_stop = CancellationToken::new();
        let conn_stop = CancellationToken::new();
        let upstream_stop = CancellationToken::new();
        let shared: Arc<Shared<F>> = Arc::new(Shared {
            splitter: Splitter::new(
                config.clone(),
                events.clone(),
                upstream_stop.clone(),
                fanout_helpers(),
            ),
            config,
            events,
            config_path: std::sync::OnceLock::new(),
            rate_limiter,
            miners: Mutex::new(HashMap::new()),
            next_miner_id: AtomicU64::new(1),
            dispatchers: serve::Dispatchers::new(
                tokio::runtime::Handle::current().metrics().num_workers(),
            ),
            strings: intern::Interner::default(),
            max_miners: AtomicU64::new(limit),
            clock: tokio::time::Instant::now(),
            deadlines: deadlines::Deadlines::new(),
        });
        let tracker = TaskTracker::new();
        serve::Dispatchers::spawn(&shared, &tracker, &conn_stop);
        let mut addrs = Vec::new();
        for l in listeners {
            let addr = l.local_addr().map_err(|source| ProxyError::Listen {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            tracing::info!(%addr, "listening for miners");
            addrs.push(addr);
            tracker.spawn(accept_loop(
                l,
                shared.clone(),
                accept_stop.clone(),
                conn_stop.clone(),
                tracker.clone(),
            ));
        }
        tracker.spawn(tick_loop(shared.clone(), accept_stop.clone()));
        let shared: Arc<dyn Running> = shared;
        Ok(ProxyHandle {
            monitor: Monitor {
                shared: shared.clone(),
            },
            shared,
            addrs,
            accept_stop,
            conn_stop,
            upstream_stop,
            tracker,
        })
    }
}

/// Open files kept for everything but miners: pool connections beyond one per 256 miners,
/// log files, API connections, the config file (a quarter of a smaller limit).
const FILES_RESERVED: u64 = 64;

/// The most miners the open-file limit leaves room for: in NiceHash mode one file per miner
/// plus one per 256 (their pool connection), in simple mode two per miner, after
/// [`FILES_RESERVED`]. Without a readable limit: no cap. Should the estimate be short,
/// running out of descriptors still gets new miners the same answer (`FdReserve`).
fn miner_limit(mode: config::Mode) -> u64 {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return u64::MAX;
    };
    if soft == rlimit::INFINITY {
        return u64::MAX;
    }
    let room = soft.saturating_sub(FILES_RESERVED.min(soft / 4));
    match mode {
        config::Mode::Nicehash | config::Mode::ExtraNonce => room - room / 257,
        config::Mode::Simple => room / 2,
    }
}

/// Threads that write jobs to miners beside the upstream tasks: one per core beyond the
/// first (see `fanout.rs`).
fn fanout_helpers() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get() - 1)
}

/// Pending connections the kernel may queue per listener (capped by `net.core.somaxconn`):
/// farms reconnect thousands of miners at once after a restart.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listen socket. IPv6 sockets are IPv6-only, so `0.0.0.0:3333` and `[::]:3333` can
/// both be bound, as xmrig-proxy's default config does. `TCP_NODELAY` is set here: on Linux
/// accepted sockets inherit it, which saves a system call per miner.
fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop<F: MinerProtocol>(
    listener: conn::Listener,
    shared: Arc<Shared<F>>,
    stop: CancellationToken,
    conn_stop: CancellationToken,
    tracker: TaskTracker,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving {}", listener.describe());
    }
    // Forget rate-limit state of IPs that went quiet (each listener does it; it is cheap).
    let mut housekeeping = tokio::time::interval(Duration::from_secs(30));
    let mut full = FdReserve::new(F::full_line());
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            _ = housekeeping.tick() => {
                shared.rate_limiter.housekeep();
                continue;
            }
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                // A refused connection is dropped here, before anything is read from it.
                if !conn::admit(&shared.rate_limiter, peer) {
                    continue;
                }
                let limit = shared.max_miners.load(Relaxed);
                if shared.stats().miners.load(Relaxed) >= limit {
                    full.refuse_accepted(stream, peer, limit);
                    continue;
                }
                serve::accept(&shared, stream, peer, listener.tls(), &conn_stop, &tracker);
            }
            Err(e) if is_out_of_files(&e) => {
                // Out of file descriptors: the connection waits in the backlog and its miner
                // would hang. Free the reserve descriptor, accept it, tell it why, close it.
                full.refuse(&listener, &e).await;
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// EMFILE or ENFILE: the process or the system is out of file descriptors.
fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// How a listener refuses miners it has no room for, with `Proxy is full, try again later`
/// and a close: past the miner cap ([`miner_limit`]) the accepted socket is refused at once;
/// should the process still run out of descriptors, one spare descriptor is given up to
/// accept the connection and refuse it, so that a miner gets an answer instead of hanging
/// in the listen backlog. Refusals are logged once per 10 s at most.
struct FdReserve {
    spare: Option<std::fs::File>,
    /// The error line sent to a refused miner.
    full: Vec<u8>,
    refused: u64,
    last_log: Option<tokio::time::Instant>,
}

impl FdReserve {
    /// `full`: the family's `Proxy is full` line.
    fn new(full: Vec<u8>) -> Self {
        Self {
            spare: std::fs::File::open("/dev/null").ok(),
            full,
            refused: 0,
            last_log: None,
        }
    }

    async fn refuse(&mut self, listener: &conn::Listener, cause: &std::io::Error) {
        self.spare = None;
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        if let Ok(Ok((stream, peer))) = accepted {
            self.answer_full(stream, peer, "out of file descriptors");
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.spare = std::fs::File::open("/dev/null").ok();
        self.log(|| cause.to_string());
    }

    /// Refuses an accepted connection: `limit` miners are connected, the miner cap.
    fn refuse_accepted(&mut self, stream: tokio::net::TcpStream, peer: SocketAddr, limit: u64) {
        self.answer_full(stream, peer, "proxy full");
        self.log(|| format!("{limit} miners connected, all it leaves room for"));
    }

    /// Sends `Proxy is full` (as far as the socket takes it at once), closes, counts.
    fn answer_full(&mut self, stream: tokio::net::TcpStream, peer: SocketAddr, why: &str) {
        let _ = stream.try_write(&self.full);
        drop(stream);
        self.refused += 1;
        tracing::debug!(%peer, "refused: {why}");
    }

    /// One WARN per 10 s at most, with the count refused since the last; `cause` is only
    /// formatted when the line is written.
    fn log(&mut self, cause: impl FnOnce() -> String) {
        let now = tokio::time::Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(
                "open-file limit reached ({}): {} new connections refused with \"Proxy is full\"; raise `ulimit -n`",
                cause(),
                self.refused
            );
            self.last_log = Some(now);
            self.refused = 0;
        }
    }
}

async fn tick_loop<F: MinerProtocol>(shared: Arc<Shared<F>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                shared.strings.purge_step();
                shared.splitter.gc(splitter::now());
                shared.resync_workers();
                shared.fold_monitoring();
                shared.events.workers.expire(shared.events.now());
                serve::sweep_timeouts(&shared);
            }
        }
    }
}

/// What the public handles ([`Monitor`], [`ProxyHandle`]) need of a running driver, whatever
/// stratum family it serves: the handles hold an `Arc<dyn Running>`, so they name no family.
/// Monitoring, reload and stop only: nothing on a share's or a job's path goes through it.
trait Running: Send + Sync + 'static {
    /// The running config.
    fn config(&self) -> &ArcSwap<Config>;
    /// The events and the counters they feed.
    fn events(&self) -> &Events;
    /// The cap on miners served at once.
    fn max_miners(&self) -> &AtomicU64;
    /// The file the config came from, once set.
    fn config_path(&self) -> &std::sync::OnceLock<std::path::PathBuf>;
    /// Upstream connections by state.
    fn upstream_counts(&self) -> UpstreamCounts;
    /// Every upstream connection, in opening order.
    fn upstream_details(&self) -> Vec<UpstreamInfo>;
    /// Miners per upstream connection, in opening order.
    fn mapper_loads(&self) -> Vec<usize>;
    /// Every miner connection (unsorted).
    fn miner_snapshots(&self) -> Vec<MinerSnapshot>;
    /// Validates and applies a new config (`reload.rs`).
    fn reload(&self, new: Config) -> Result<ReloadOutcome, ConfigError>;
    /// Closes every miner, their last answers given a moment to go out (`serve.rs`).
    fn close_all(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Stops the fan-out threads.
    fn stop_fanout(&self);
    /// Watches the config file at `path` (its content `loaded`) until `stop`.
    fn watch_file(
        self: Arc<Self>,
        path: std::path::PathBuf,
        loaded: Vec<u8>,
        adjust: ConfigAdjust,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Hashes per upstream id since each upstream opened (`splitter.rs`).
    fn upstream_hashes(&self) -> std::collections::HashMap<u64, u64>;
}

impl<F: MinerProtocol> Running for Shared<F> {
    fn config(&self) -> &ArcSwap<Config> {
        &self.config
    }
    fn events(&self) -> &Events {
        &self.events
    }
    fn max_miners(&self) -> &AtomicU64 {
        &self.max_miners
    }
    fn config_path(&self) -> &std::sync::OnceLock<std::path::PathBuf> {
        &self.config_path
    }
    fn upstream_counts(&self) -> UpstreamCounts {
        self.splitter.upstream_counts()
    }
    fn upstream_details(&self) -> Vec<UpstreamInfo> {
        self.splitter.upstream_details()
    }
    fn mapper_loads(&self) -> Vec<usize> {
        self.splitter.mapper_loads()
    }
    fn miner_snapshots(&self) -> Vec<MinerSnapshot> {
        self.miner_snapshots()
    }
    fn reload(&self, new: Config) -> Result<ReloadOutcome, ConfigError> {
        Shared::reload(self, new)
    }
    fn close_all(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(serve::close_all(self))
    }
    fn stop_fanout(&self) {
        self.splitter.fanout.stop();
    }
    fn watch_file(
        self: Arc<Self>,
        path: std::path::PathBuf,
        loaded: Vec<u8>,
        adjust: ConfigAdjust,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(reload::watch_file(self, path, loaded, adjust, stop))
    }
    fn upstream_hashes(&self) -> std::collections::HashMap<u64, u64> {
        self.splitter.upstream_hashes()
    }
}

/// A cheap, cloneable read-only view of a running proxy, for monitoring (the HTTP API).
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<dyn Running>,
}

impl Monitor {
    /// The running config.
    pub fn config(&self) -> Arc<Config> {
        self.shared.config().load_full()
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.events().stats.snapshot()
    }

    /// Blocks found through daemon upstreams.
    pub fn blocks(&self) -> u64 {
        self.shared.events().stats.blocks.load(Relaxed)
    }

    /// Upstream connections by state.
    pub fn upstreams(&self) -> UpstreamCounts {
        self.shared.upstream_counts()
    }

    /// Access- and share-log lines dropped since the start because their writer thread could
    /// not keep up (each queues at most 8192 lines; past that a line is dropped, not waited
    /// for).
    pub fn log_lines_dropped(&self) -> u64 {
        self.shared.events().log_lines_dropped()
    }
}

/// A running proxy.
pub struct ProxyHandle {
    shared: Arc<dyn Running>,
    monitor: Monitor,
    addrs: Vec<SocketAddr>,
    accept_stop: CancellationToken,
    conn_stop: CancellationToken,
    upstream_stop: CancellationToken,
    tracker: TaskTracker,
}

impl ProxyHandle {
    /// The bound listen addresses, in `bind` order (a port 0 in the config is resolved here).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A read-only view for monitoring.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.events().stats.snapshot()
    }

    /// Upstream connections by state.
    pub fn upstreams(&self) -> UpstreamCounts {
        self.shared.upstream_counts()
    }

    /// Caps the miners served at once at `n` (default: what the open-file limit leaves room
    /// for); past it a new connection is answered `Proxy is full, try again later` and
    /// closed. Miners already connected stay.
    pub fn set_miner_limit(&self, n: u64) {
        self.shared.max_miners().store(n, Relaxed);
    }

    /// The current cap on miners served at once (see [`ProxyHandle::set_miner_limit`]).
    pub fn miner_limit(&self) -> u64 {
        self.shared.max_miners().load(Relaxed)
    }

    /// Miners per upstream connection, in the order the connections were opened.
    pub fn mapper_loads(&self) -> Vec<usize> {
        self.shared.mapper_loads()
    }

    /// Waits up to `limit` for the shares in flight to be answered; returns how many are
    /// still waiting.
    async fn drain_in_flight(&self, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = self.shared.events().stats.in_flight.load(Relaxed);
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the proxy: stops accepting, waits up to `grace` for the shares in flight to be
    /// answered by their pools (and sent to their miners), then closes every connection,
    /// flushes the access and share logs (up to 1 s each) and waits for all tasks to end.
    pub async fn shutdown(self, grace: Duration) {
        self.accept_stop.cancel();
        self.drain_in_flight(grace).await;
        // Closing the upstreams answers whatever is still waiting ("Connection to pool
        // lost"); give those answers a moment to reach their miners before closing them.
        self.upstream_stop.cancel();
        let left = self.drain_in_flight(Duration::from_secs(1)).await;
        if left > 0 {
            tracing::warn!("{left} shares still unanswered at shutdown");
        }
        self.shared.close_all().await;
        // The CLOSE lines of the miners just closed reach the file before the process ends.
        self.shared
            .events()
            .close_logs(Duration::from_secs(1))
            .await;
        self.shared.stop_fanout();
        self.conn_stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_miners_have_no_nagle_delay() {
        let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        assert!(s.nodelay().unwrap(), "TCP_NODELAY from the listen socket");
    }

    #[test]
    fn the_miner_cap_leaves_files_for_the_rest() {
        let limit = miner_limit(config::Mode::Nicehash);
        let simple = miner_limit(config::Mode::Simple);
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            if soft != rlimit::INFINITY {
                assert!(limit < soft && limit + limit / 256 <= soft);
                assert!(simple * 2 <= soft);
            }
        }
    }
}
