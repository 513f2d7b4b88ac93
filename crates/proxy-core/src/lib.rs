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
//! monomorphised). One process runs one driver per family that has binds
//! (`family/cryptonote.rs`, `family/sv1.rs`): each bind's miners go to its family's driver
//! and that family's pools; the drivers share the config, the logs, the journal, the rate
//! limiter, the tick, reload and the stop handle (see ARCHITECTURE.md, "The seam for stratum
//! families").
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
mod rounds_store;
mod serve;
mod splitter;
mod stats;
mod tls;
mod workers;

pub use config::{Config, ConfigError, Protocol};
pub use family::{DUPLICATE_SHARE, NICEHASH_SLOTS};
pub use journal::{Notice, NoticeKind, JOURNAL_CAPACITY, NOTICE_MAX_CHARS};
pub use login::LoginInfo;
pub use miner::{MinerDifficulty, MinerId, MinerPhase, INACTIVITY_TIMEOUT, LOGIN_TIMEOUT};
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

/// State shared by every task of one family's driver, serving the stratum family `F`. What
/// the drivers of one process share is held here through `Arc`s (config, miner ids, the
/// miner count and cap, the rate limiter; the events' logs and journal).
pub(crate) struct Shared<F: Family> {
    pub(crate) config: Arc<ArcSwap<Config>>,
    /// This family's counters and worker records (logs, journal and rate limiter shared
    /// with the other families: [`Events::sibling`]).
    pub(crate) events: Arc<Events>,
    pub(crate) splitter: Splitter<F, Arc<Miner<F>>>,
    /// Per-IP connection limit (`rate-limit`), checked by every accept loop; apply a new
    /// config with [`ratelimit::RateLimiter::reconfigure`].
    pub(crate) rate_limiter: Arc<ratelimit::RateLimiter>,
    miners: Mutex<HashMap<MinerId, Arc<Miner<F>>>>,
    /// Miner ids, unique in the process (every family's miners).
    pub(crate) next_miner_id: Arc<AtomicU64>,
    /// Miners connected now, every family's: what [`Shared::max_miners`] caps.
    pub(crate) connected: Arc<AtomicU64>,
    /// The ready queues of the tasks that serve miner sockets.
    pub(crate) dispatchers: serve::Dispatchers<F>,
    /// Shared copies of login strings.
    pub(crate) strings: intern::Interner,
    /// Most miners served at once; past it a new connection is told "Proxy is full" and
    /// closed. From the open-file limit at start ([`miner_limit`]), or
    /// [`ProxyHandle::set_miner_limit`]; one cap for every family.
    pub(crate) max_miners: Arc<AtomicU64>,
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
        self.connected.fetch_add(1, Relaxed);
        lock(&self.miners).insert(miner.id, miner.clone());
    }

    fn unregister(&self, miner: &Miner<F>) {
        self.stats().miner_disconnected();
        self.connected.fetch_sub(1, Relaxed);
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
        let mut addrs = Vec::new();
        for b in &config.bind {
            let addr = b.socket_addr()?;
            let l = bind_listener(addr).map_err(|source| ProxyError::Listen { addr, source })?;
            addrs.push(
                l.local_addr()
                    .map_err(|source| ProxyError::Listen { addr, source })?,
            );
            let l = conn::Listener::new(l, b.tls, config.tls.enabled, acceptor.clone());
            listeners.push((config.bind_protocol(b), l));
        }
        let limit = miner_limit(config.mode);
        tracing::info!("room for {limit} miners (open-file limit)");
        let families = config.served_protocols();
        let config = Arc::new(ArcSwap::from_pointee(config));
        let common = Common {
            config: config.clone(),
            max_miners: Arc::new(AtomicU64::new(limit)),
            next_miner_id: Arc::new(AtomicU64::new(1)),
            connected: Arc::default(),
            mapper_ids: Arc::new(AtomicU64::new(1)),
            fanout: Arc::new(fanout::Fanout::new(fanout_helpers())),
            clock: tokio::time::Instant::now(),
            accept_stop: CancellationToken::new(),
            conn_stop: CancellationToken::new(),
            upstream_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let mut list: Vec<Arc<dyn Running>> = Vec::with_capacity(families.len());
        for family in families {
            let events = Arc::new(match list.first() {
                None => {
                    let events = Events::new(&config.load());
                    // The rounds, one ledger for the families (`Events::sibling`), read
                    // back before any miner or upstream can count a share in them.
                    let rounds_dir = config.load().stratum_v1.rounds_dir.clone();
                    if !rounds_dir.is_empty() {
                        rounds_store::RoundsStore::restore(
                            &events.rounds,
                            std::path::Path::new(&rounds_dir),
                        );
                    }
                    events
                }
                Some(first) => first.events().sibling(&config.load()),
            });
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut listeners)
                .into_iter()
                .partition(|(p, _)| *p == family);
            listeners = rest;
            let mine = mine.into_iter().map(|(_, l)| l).collect();
            list.push(match family {
                Protocol::CryptoNote => Self::start_family::<CryptoNote>(&common, events, mine),
                Protocol::StratumV1 => Self::start_family::<Sv1>(&common, events, mine),
            });
        }
        let drivers = Arc::new(Drivers {
            config,
            max_miners: common.max_miners.clone(),
            config_path: std::sync::OnceLock::new(),
            fanout: common.fanout.clone(),
            list,
            rounds_store: rounds_store::RoundsStore::default(),
        });
        common
            .tracker
            .spawn(tick_loop(drivers.clone(), common.accept_stop.clone()));
        Ok(ProxyHandle {
            monitor: Monitor {
                drivers: drivers.clone(),
                at: 0,
            },
            drivers,
            addrs,
            accept_stop: common.accept_stop,
            conn_stop: common.conn_stop,
            upstream_stop: common.upstream_stop,
            tracker: common.tracker,
        })
    }

    /// Starts the driver of the stratum family `F` on `listeners` (its binds), with its own
    /// `events` (counters, worker records) and what `common` shares between the families.
    fn start_family<F: MinerProtocol>(
        common: &Common,
        events: Arc<Events>,
        listeners: Vec<conn::Listener>,
    ) -> Arc<dyn Running> {
        let rate_limiter = events.rate_limiter.clone();
        let shared: Arc<Shared<F>> = Arc::new(Shared {
            splitter: Splitter::new(
                common.config.clone(),
                events.clone(),
                common.upstream_stop.clone(),
                common.fanout.clone(),
                common.mapper_ids.clone(),
            ),
            config: common.config.clone(),
            events,
            rate_limiter,
            miners: Mutex::new(HashMap::new()),
            next_miner_id: common.next_miner_id.clone(),
            connected: common.connected.clone(),
            dispatchers: serve::Dispatchers::new(
                tokio::runtime::Handle::current().metrics().num_workers(),
            ),
            strings: intern::Interner::default(),
            max_miners: common.max_miners.clone(),
            clock: common.clock,
            deadlines: deadlines::Deadlines::new(),
        });
        serve::Dispatchers::spawn(&shared, &common.tracker, &common.conn_stop);
        for l in listeners {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, protocol = %F::PROTOCOL, "listening for miners");
            }
            common.tracker.spawn(accept_loop(
                l,
                shared.clone(),
                common.accept_stop.clone(),
                common.conn_stop.clone(),
                common.tracker.clone(),
            ));
        }
        shared
    }
}

/// What the drivers of one process share, while they start.
struct Common {
    config: Arc<ArcSwap<Config>>,
    max_miners: Arc<AtomicU64>,
    next_miner_id: Arc<AtomicU64>,
    connected: Arc<AtomicU64>,
    /// Upstream (mapper) ids, unique in the process.
    mapper_ids: Arc<AtomicU64>,
    fanout: Arc<fanout::Fanout>,
    clock: tokio::time::Instant,
    accept_stop: CancellationToken,
    conn_stop: CancellationToken,
    upstream_stop: CancellationToken,
    tracker: TaskTracker,
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
                if shared.connected.load(Relaxed) >= limit {
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

/// The 1 s tick of every driver of the process, the journal's look at the upstreams, and
/// the solo rounds' saves (with `stratum-v1.rounds-dir`: at once when a block was found,
/// else every [`rounds_store::SAVE_EVERY`] when the round changed, and while saves fail).
async fn tick_loop(drivers: Arc<Drivers>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let every = rounds_store::SAVE_EVERY.as_secs();
    let mut seconds: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                for d in &drivers.list {
                    d.tick();
                }
                drivers.fold_monitoring();
                seconds += 1;
                let rounds = &drivers.primary().events().rounds;
                let block_waits =
                    rounds.has_unsaved_blocks() && !drivers.rounds_store.failing();
                if seconds % every == 0 || block_waits {
                    if let Some(save) = drivers.save_rounds() {
                        tokio::spawn(save);
                    }
                }
            }
        }
    }
}

/// What the process needs of one family's running driver, whatever the family: the
/// [`Drivers`] hold an `Arc<dyn Running>` per family, so the public handles name no family.
/// Monitoring, reload, tick and stop only: nothing on a share's or a job's path goes through
/// it.
trait Running: Send + Sync + 'static {
    /// The family the driver serves.
    fn protocol(&self) -> Protocol;
    /// The family's events and the counters and worker records they feed.
    fn events(&self) -> &Events;
    /// Upstream connections by state.
    fn upstream_counts(&self) -> UpstreamCounts;
    /// Every upstream connection, in opening order.
    fn upstream_details(&self) -> Vec<UpstreamInfo>;
    /// Miners per upstream connection, in opening order.
    fn mapper_loads(&self) -> Vec<usize>;
    /// Every miner connection (unsorted).
    fn miner_snapshots(&self) -> Vec<MinerSnapshot>;
    /// Applies a reloaded config (already the running one): the events' settings, and the
    /// pool lists when `upstreams_changed`.
    fn apply_config(&self, new: &Config, upstreams_changed: bool);
    /// Closes every miner, their last answers given a moment to go out (`serve.rs`).
    fn close_all(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Hashes per upstream id since each upstream opened (`splitter.rs`).
    fn upstream_hashes(&self) -> std::collections::HashMap<u64, u64>;
    /// The driver's part of the 1 s tick: string purge, upstream GC, workers, deadlines.
    fn tick(&self);
}

impl<F: MinerProtocol> Running for Shared<F> {
    fn protocol(&self) -> Protocol {
        F::PROTOCOL
    }
    fn events(&self) -> &Events {
        &self.events
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
    fn apply_config(&self, new: &Config, upstreams_changed: bool) {
        self.events.apply_config(new);
        if upstreams_changed {
            self.splitter.reconfigure_upstreams(new);
        }
    }
    fn close_all(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(serve::close_all(self))
    }
    fn upstream_hashes(&self) -> std::collections::HashMap<u64, u64> {
        self.splitter.upstream_hashes()
    }
    fn tick(&self) {
        self.strings.purge_step();
        self.splitter.gc(splitter::now());
        self.resync_workers();
        self.events.workers.expire(self.events.now());
        serve::sweep_timeouts(self);
    }
}

/// The running drivers of one process (one per family with binds, the top-level
/// `protocol`'s first when it has binds) and what they share: the config, the miner cap, the
/// fan-out threads.
pub(crate) struct Drivers {
    pub(crate) config: Arc<ArcSwap<Config>>,
    max_miners: Arc<AtomicU64>,
    /// The file the config came from, when started with [`Proxy::start_from_file`].
    pub(crate) config_path: std::sync::OnceLock<std::path::PathBuf>,
    fanout: Arc<fanout::Fanout>,
    /// Never empty: a valid config has a bind.
    list: Vec<Arc<dyn Running>>,
    /// Where the solo rounds are written (`stratum-v1.rounds-dir`).
    rounds_store: rounds_store::RoundsStore,
}

impl Drivers {
    /// The primary driver: the top-level `protocol`'s, or the only one.
    fn primary(&self) -> &dyn Running {
        &*self.list[0]
    }

    /// A save of what changed in the solo rounds to `stratum-v1.rounds-dir` (the one of
    /// the running config: a reload's new directory takes the next save); `None` without
    /// one.
    fn save_rounds(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let dir = self.config.load().stratum_v1.rounds_dir.clone();
        if dir.is_empty() {
            return None;
        }
        let rounds = self.primary().events().rounds.clone();
        let store = self.rounds_store.clone();
        Some(async move { store.save(rounds, dir.into()).await })
    }

    /// Shares in flight, every family's.
    fn in_flight(&self) -> u64 {
        self.list
            .iter()
            .map(|d| d.events().stats.in_flight.load(Relaxed))
            .sum()
    }

    /// Every upstream connection of every family, in opening order (ids are unique in the
    /// process).
    fn upstream_details(&self) -> Vec<UpstreamInfo> {
        let mut all: Vec<UpstreamInfo> = self
            .list
            .iter()
            .flat_map(|d| d.upstream_details())
            .collect();
        all.sort_by_key(|u| u.id);
        all
    }

    /// Called every second by the tick loop: notes upstreams lost or logged in again (the
    /// journal is shared, so it sees every family's upstreams at once).
    fn fold_monitoring(&self) {
        let upstreams = self.upstream_details();
        self.primary().events().journal.watch_upstreams(
            &upstreams
                .iter()
                .map(|u| (u.id, u.state, u.pool.clone()))
                .collect::<Vec<_>>(),
        );
    }
}

/// A cheap, cloneable read-only view of a running proxy, for monitoring (the HTTP API).
///
/// A monitor looks at one stratum family's figures ([`Monitor::protocol`]): counters,
/// hashrates, workers, upstream counts. [`ProxyHandle::monitor`] gives the primary family's
/// (the top-level `protocol`'s when it has binds), [`Monitor::families`] one per family the
/// process serves. The lists of [`Monitor::miners`], [`Monitor::upstream_details`],
/// [`Monitor::upstream_hashes`] and [`Monitor::notices`] are the whole process's, each
/// entry marked with its family where it has one.
#[derive(Clone)]
pub struct Monitor {
    drivers: Arc<Drivers>,
    /// The family looked at: an index into `drivers.list`.
    at: usize,
}

impl Monitor {
    /// The driver of the family looked at.
    fn driver(&self) -> &dyn Running {
        &*self.drivers.list[self.at]
    }

    /// The family whose figures this monitor gives.
    pub fn protocol(&self) -> Protocol {
        self.driver().protocol()
    }

    /// One monitor per family the process serves (one per family with a bind), the
    /// primary first.
    pub fn families(&self) -> Vec<Monitor> {
        (0..self.drivers.list.len())
            .map(|at| Monitor {
                drivers: self.drivers.clone(),
                at,
            })
            .collect()
    }

    /// The monitor of `protocol`'s figures, when the process serves that family.
    pub fn family(&self, protocol: Protocol) -> Option<Monitor> {
        self.families()
            .into_iter()
            .find(|m| m.protocol() == protocol)
    }

    /// The running config.
    pub fn config(&self) -> Arc<Config> {
        self.drivers.config.load_full()
    }

    /// A copy of the family's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.driver().events().stats.snapshot()
    }

    /// Blocks found through the family's daemon upstreams.
    pub fn blocks(&self) -> u64 {
        self.driver().events().stats.blocks.load(Relaxed)
    }

    /// The family's upstream connections by state.
    pub fn upstreams(&self) -> UpstreamCounts {
        self.driver().upstream_counts()
    }

    /// Access- and share-log lines dropped since the start because their writer thread could
    /// not keep up (each queues at most 8192 lines; past that a line is dropped, not waited
    /// for). The logs are the process's.
    pub fn log_lines_dropped(&self) -> u64 {
        self.driver().events().log_lines_dropped()
    }
}

/// A running proxy.
pub struct ProxyHandle {
    drivers: Arc<Drivers>,
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

    /// A read-only view for monitoring, of the primary family's figures (see [`Monitor`]).
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// A copy of the primary family's counters ([`Monitor::families`] has the others').
    pub fn stats(&self) -> StatsSnapshot {
        self.monitor.stats()
    }

    /// The primary family's upstream connections by state.
    pub fn upstreams(&self) -> UpstreamCounts {
        self.monitor.upstreams()
    }

    /// Caps the miners served at once at `n` (default: what the open-file limit leaves room
    /// for); past it a new connection is answered `Proxy is full, try again later` and
    /// closed. Miners already connected stay.
    pub fn set_miner_limit(&self, n: u64) {
        self.drivers.max_miners.store(n, Relaxed);
    }

    /// The current cap on miners served at once (see [`ProxyHandle::set_miner_limit`]).
    pub fn miner_limit(&self) -> u64 {
        self.drivers.max_miners.load(Relaxed)
    }

    /// Miners per upstream connection, in the order the connections were opened (the
    /// primary family's connections first, then the other's).
    pub fn mapper_loads(&self) -> Vec<usize> {
        self.drivers
            .list
            .iter()
            .flat_map(|d| d.mapper_loads())
            .collect()
    }

    /// Waits up to `limit` for the shares in flight to be answered; returns how many are
    /// still waiting.
    async fn drain_in_flight(&self, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = self.drivers.in_flight();
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
        for d in &self.drivers.list {
            d.close_all().await;
        }
        // The round in progress as the last shares left it.
        if let Some(save) = self.drivers.save_rounds() {
            save.await;
        }
        // The CLOSE lines of the miners just closed reach the file before the process ends
        // (the logs are shared by the families).
        self.drivers
            .primary()
            .events()
            .close_logs(Duration::from_secs(1))
            .await;
        self.drivers.fanout.stop();
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
