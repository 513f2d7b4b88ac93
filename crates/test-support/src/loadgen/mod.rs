//! A load generator for benchmarking a stratum proxy: one process plays the pool *and* N
//! miners, so that one clock timestamps a job's send at the pool and its receipt at every
//! miner. `cargo xtask bench` runs it (binary `loadgen`) against the real `proxy-cli` in a
//! process of its own; [`run`] is the whole run, [`Report`] what it measured.
//!
//! Phases, in order:
//!
//! 1. **login**: N miners connect from many loopback source addresses (127.0.0.2, 127.0.0.3,
//!    …, [`Options::miners_per_ip`] each, to get past one address's ephemeral port range) and
//!    log in as xmrig does (wallet, `x`, an xmrig agent, a rig id, an `algo` list); at most
//!    [`Options::connect_concurrency`] logins are under way at once.
//! 2. **jobs**: the pool pushes K jobs, one every [`Options::job_interval`]. Fan-out latency is
//!    the time from the pool's send to a miner having read the job line, over every miner and
//!    job. Each job a miner gets must carry its own fixed byte (blob byte 42).
//! 3. **shares**: S shares a second for T seconds, spread evenly over the logged-in miners
//!    (share `k` is sent by logged-in miner `k mod n` at `start + k / S`, whether or not
//!    earlier answers are in: an open loop). The pool answers `OK` at once. Round trip is the
//!    time from the miner's send to the miner having read the answer (miner → proxy → pool →
//!    proxy → miner).
//!
//! Each share is valid: its nonce is `slot << 24 | k` (the miner's fixed byte on top, the
//! share's index in the low 24 bits, so at most 2^24 shares a run) and its result meets the
//! job's target. The pool reads `k` back out of the nonce, so the run can check that every
//! share reached the pool exactly once, with the fixed byte of the miner that sent it.
//!
//! Before, between and after the phases it reads the proxy's RSS (`/proc/<pid>/status`) and
//! CPU time (`/proc/<pid>/stat`, utime + stime, in clock ticks of 10 ms) and its own CPU time.
//!
//! Threads: the pool side and the logins run on a tokio runtime the caller builds
//! ([`Options::threads`] workers); a miner that has logged in is handed to one of
//! [`Options::miner_threads`] event-loop threads (`miners` module), which read its jobs and
//! answers and send its shares: far less CPU per receipt and per share than a task per miner,
//! and the generator shares the cores with the proxy it measures.
//!
//! What it is not: a stratum miner or pool to test behaviour with (see [`crate::miner`] and
//! [`crate::mock_pool`]). To keep its own cost out of the fan-out figure it reads job lines
//! with a byte scan for `job_id` and the blob's fixed byte instead of a full JSON parse (every
//! other line goes through `stratum_proto`'s parsers); the timestamp of a line is taken when
//! the read that brought it returns.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use stratum_proto::cryptonote::{
    encode_error, encode_getjob_ok, encode_job_notification, encode_login_ok, encode_pool_login,
    encode_status, parse_miner_request, parse_pool_message, MinerRequest, PoolLoginResult,
    PoolMessage,
};
use stratum_proto::job::decode_hex_into;
use stratum_proto::{parse_nonce, Job, LineCodec, NICEHASH_BYTE_OFFSET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::miner::result_for_difficulty;

pub mod cli;
mod miners;
pub mod soak;
pub mod sv1;
use crate::mock_pool::make_job;

/// The wallet every simulated miner logs in with (a mainnet address, 95 chars, as real
/// miners send).
pub const WALLET: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// The agent string every simulated miner sends (xmrig's own form).
pub const AGENT: &str = "XMRig/6.26.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0";

/// Most shares one run can send: the share index lives in the nonce's low 24 bits.
pub const MAX_SHARES: u64 = 1 << 24;

const LOGIN_ID: u64 = 1;
/// Request id of share `k` is `k + FIRST_SHARE_ID`.
const FIRST_SHARE_ID: u64 = 2;
const ALGO: &str = "rx/0";

/// The proxy's mode, as its config says: what the generator's pool must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// NiceHash: up to 256 miners per pool connection, each job patched with the miner's
    /// fixed byte (blob byte 42).
    Nicehash,
    /// Simple: one pool connection per miner, jobs passed on unpatched (every miner's
    /// "fixed byte" is then the pool blob's byte 42). The pool must see one login per miner.
    Simple,
}

/// The stratum family the proxy serves, as its config's `protocol` says: what the
/// generator's miners and pool speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// CryptoNote (xmrig's stratum): the module docs' phases.
    Cryptonote,
    /// Bitcoin Stratum V1: the same phases with SV1 miners and pool (the [`sv1`] module).
    StratumV1,
}

/// Which rig id each miner sends at login. A proxy that keeps per-worker records keyed by rig
/// id (xmrig-proxy's and this proxy's default) keeps one record per distinct rig id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RigIds {
    /// `rig-00000`, `rig-00001`, …: one worker per miner, as in a farm.
    Unique,
    /// `rig` for every miner: one worker for all.
    Shared,
    /// No rig id at all.
    None,
}

/// What to run. [`Options::default`] is the quick run: 1,000 miners, 5 jobs 2 s apart, 200
/// shares a second for 5 seconds.
#[derive(Debug, Clone)]
pub struct Options {
    /// The proxy's miner listen address.
    pub proxy: SocketAddr,
    /// Where the pool listens; the proxy's config must name it as its pool.
    pub pool_bind: SocketAddr,
    /// The proxy's process id, for RSS and CPU from `/proc`; `None` skips those figures.
    pub proxy_pid: Option<u32>,
    /// The proxy's tokio worker threads, as whoever started it knows them (for the report).
    pub proxy_workers: Option<usize>,
    /// This process's tokio worker threads (for the report; the caller builds the runtime):
    /// the pool side and the logins.
    pub threads: usize,
    /// Event-loop threads serving the logged-in miners (see the `miners` module).
    pub miner_threads: usize,
    /// Miners to log in.
    pub miners: usize,
    /// Miners per loopback source address (127.0.0.2 takes the first this many, …).
    pub miners_per_ip: usize,
    /// The first source address.
    pub first_ip: Ipv4Addr,
    /// Logins under way at once.
    pub connect_concurrency: usize,
    /// A miner not logged in by then (connect + login reply) counts as failed.
    pub login_timeout: Duration,
    /// Jobs pushed in the job phase.
    pub jobs: usize,
    /// Time between two jobs.
    pub job_interval: Duration,
    /// Shares a second in the share phase.
    pub rate: u64,
    /// Length of the share phase.
    pub seconds: u64,
    /// The pool's job difficulty (shares meet it).
    pub difficulty: u64,
    /// Rig ids sent at login.
    pub rig_ids: RigIds,
    /// The proxy's mode (its config must say the same).
    pub mode: Mode,
    /// The proxy's stratum family (its config must say the same).
    pub protocol: Protocol,
    /// Stratum V1: the miners ask for version rolling (`mining.configure`, BIP 310) before
    /// they subscribe; `false` for a proxy that does not know it (ckpool 0.9 drops a miner
    /// that sends it first).
    pub version_rolling: bool,
    /// Stratum V1: the pool's share difficulty ([`sv1::DIFFICULTY`], 2^-32, by default).
    /// Above the miners' difficulty the proxy answers their shares itself after its
    /// sha256d check and forwards none: the report then expects no share at the pool.
    pub sv1_pool_difficulty: f64,
    /// Pause before each RSS reading, for the proxy to settle.
    pub settle: Duration,
    /// The whole run stops by then, with what it measured so far.
    pub deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            proxy: SocketAddr::from(([127, 0, 0, 1], 3333)),
            pool_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            proxy_pid: None,
            proxy_workers: None,
            threads: 1,
            miner_threads: 1,
            miners: 1_000,
            miners_per_ip: 1_000,
            first_ip: Ipv4Addr::new(127, 0, 0, 2),
            connect_concurrency: 500,
            login_timeout: Duration::from_secs(30),
            jobs: 5,
            job_interval: Duration::from_secs(2),
            rate: 200,
            seconds: 5,
            difficulty: 10_000,
            rig_ids: RigIds::Unique,
            mode: Mode::Nicehash,
            protocol: Protocol::Cryptonote,
            version_rolling: true,
            sv1_pool_difficulty: sv1::DIFFICULTY,
            settle: Duration::from_secs(1),
            deadline: Duration::ZERO,
        }
    }
}

impl Options {
    /// A deadline long enough for the phases asked for: logins at 100 a second at worst,
    /// the jobs, the shares, and a minute of slack.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_secs(60 + self.miners as u64 / 100 + self.seconds)
            + self.login_timeout
            + self.job_interval * u32::try_from(self.jobs).unwrap_or(u32::MAX)
    }

    /// Shares the share phase sends.
    pub fn total_shares(&self) -> u64 {
        self.rate.saturating_mul(self.seconds)
    }

    /// Whether the proxy is to answer the shares itself (Stratum V1 with a pool difficulty
    /// above the miners' [`sv1::DIFFICULTY`]): none reaches the pool.
    pub fn shares_answered_by_proxy(&self) -> bool {
        self.protocol == Protocol::StratumV1 && self.sv1_pool_difficulty > sv1::DIFFICULTY
    }

    /// Open files this process needs: miners, pool connections (one per 256 miners in
    /// NiceHash mode, one per miner in simple mode), listener, runtime, and some slack.
    pub fn files_needed(&self) -> u64 {
        let pool = match self.mode {
            Mode::Nicehash => self.miners / 256,
            Mode::Simple => self.miners,
        };
        (self.miners + pool + 32) as u64
    }

    /// The source address of miner `i`.
    pub fn source_ip(&self, i: usize) -> Ipv4Addr {
        source_ip(self.first_ip, self.miners_per_ip, i)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.miners == 0 {
            bail!("--miners must be at least 1");
        }
        if self.total_shares() >= MAX_SHARES {
            bail!("rate × seconds must stay below {MAX_SHARES} shares");
        }
        let last = self.source_ip(self.miners - 1);
        if !self.first_ip.is_loopback() || !last.is_loopback() {
            bail!(
                "source addresses {}..={last} leave 127.0.0.0/8",
                self.first_ip
            );
        }
        Ok(())
    }
}

/// The source address of miner `i` when `per` miners share each address from `first` on
/// (`per` 0 counts as 1).
fn source_ip(first: Ipv4Addr, per: usize, i: usize) -> Ipv4Addr {
    let n = u32::from(first) + u32::try_from(i / per.max(1)).unwrap_or(u32::MAX);
    Ipv4Addr::from(n)
}

// ----- the report -----

/// Everything one run measured; serialises to the JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What ran, and the threads each side used.
    pub setup: Setup,
    /// Phase 1.
    pub login: LoginReport,
    /// The proxy's memory.
    pub memory: MemoryReport,
    /// Phase 2.
    pub fanout: FanoutReport,
    /// Phase 3.
    pub shares: ShareReport,
    /// What went wrong (failed logins, lost shares, a dead proxy, the deadline); empty on a
    /// clean run.
    pub problems: Vec<String>,
}

/// What ran.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Miners asked for.
    pub miners: usize,
    /// Loopback source addresses used.
    pub source_ips: usize,
    /// Jobs pushed.
    pub jobs: usize,
    /// Milliseconds between jobs.
    pub job_interval_ms: u64,
    /// Shares a second asked for.
    pub rate: u64,
    /// Seconds of shares.
    pub seconds: u64,
    /// The pool's job difficulty.
    pub difficulty: u64,
    /// Rig ids sent.
    pub rig_ids: RigIds,
    /// The proxy's mode.
    pub mode: Mode,
    /// The stratum family spoken.
    pub protocol: Protocol,
    /// CPU cores of the machine.
    pub cores: usize,
    /// This generator's tokio worker threads (pool side, logins).
    pub generator_threads: usize,
    /// This generator's event-loop threads serving logged-in miners.
    pub generator_miner_threads: usize,
    /// The proxy's tokio worker threads, as its starter reported them.
    pub proxy_workers: Option<usize>,
    /// The proxy's OS threads at the end (workers, tokio's blocking pool, log writers).
    pub proxy_os_threads: Option<u64>,
    /// The proxy's open-file limit (soft).
    pub proxy_nofile: Option<u64>,
    /// The proxy's pid.
    pub proxy_pid: Option<u32>,
}

/// Phase 1: logins.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoginReport {
    /// Miners logged in (a login result with a job).
    pub logged_in: usize,
    /// Miners not logged in.
    pub failed: usize,
    /// Failures by reason.
    pub failures: BTreeMap<String, usize>,
    /// From the first connect to the last outcome.
    pub seconds: f64,
    /// Logins a second.
    pub rate: f64,
    /// The proxy's CPU time during the phase.
    pub proxy_cpu_ms: Option<f64>,
    /// The proxy's CPU time per 1,000 logins.
    pub proxy_cpu_ms_per_1000: Option<f64>,
    /// This generator's CPU time during the phase.
    pub generator_cpu_ms: Option<f64>,
    /// Logins the generator's pool had from the proxy by the end of the phase: its pool
    /// connections (one per miner in simple mode).
    pub pool_logins: u64,
}

/// The proxy's resident memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    /// Before any miner connected, KiB.
    pub rss_before_kib: Option<u64>,
    /// After every login, KiB.
    pub rss_after_login_kib: Option<u64>,
    /// After the job phase, KiB.
    pub rss_after_jobs_kib: Option<u64>,
    /// After the share phase, KiB.
    pub rss_after_shares_kib: Option<u64>,
    /// (after login − before) / miners logged in, bytes: an idle logged-in miner.
    pub rss_per_miner_bytes: Option<f64>,
    /// The anonymous part of [`Self::rss_per_miner_bytes`] (`RssAnon`: what the proxy
    /// allocated for its miners), bytes a miner; steadier than the whole figure.
    pub anon_per_miner_bytes: Option<f64>,
    /// The file-backed part of [`Self::rss_per_miner_bytes`] (`RssFile`: the proxy's code
    /// pages first touched during the logins, divided by the miners: not a per-miner cost),
    /// bytes a miner.
    pub file_per_miner_bytes: Option<f64>,
    /// (after the share phase − before) / miners logged in, bytes: a miner that has had
    /// jobs and submitted shares (every miner has when the phase sends at least one share
    /// per miner).
    pub rss_per_miner_after_shares_bytes: Option<f64>,
    /// The proxy's CPU time per second while every miner is logged in and nothing happens
    /// (its timers and per-second housekeeping), measured over two settle periods after
    /// login, ms per second.
    pub proxy_idle_cpu_ms_per_s: Option<f64>,
}

/// Phase 2: job fan-out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FanoutReport {
    /// Jobs pushed.
    pub jobs: usize,
    /// (miner, job) receipts measured.
    pub receipts: usize,
    /// (miner, job) pairs never received by a miner logged in at the start of the phase.
    pub missing: usize,
    /// Jobs received with another fixed byte than the miner's own.
    pub wrong_fixed_byte: u64,
    /// Latency over every receipt, ms.
    pub p50_ms: Option<f64>,
    /// Latency over every receipt, ms.
    pub p99_ms: Option<f64>,
    /// Latency over every receipt, ms.
    pub max_ms: Option<f64>,
    /// Per job: p50, p99, max in ms, receipts.
    pub per_job: Vec<JobFanout>,
    /// The proxy's CPU time during the phase.
    pub proxy_cpu_ms: Option<f64>,
    /// The proxy's CPU time per job per 1,000 miners.
    pub proxy_cpu_ms_per_job_per_1000: Option<f64>,
    /// This generator's CPU time during the phase.
    pub generator_cpu_ms: Option<f64>,
}

/// One job's fan-out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobFanout {
    /// The job's number (1-based).
    pub job: usize,
    /// Miners that got it.
    pub receipts: usize,
    /// Latency, ms.
    pub p50_ms: Option<f64>,
    /// Latency, ms.
    pub p99_ms: Option<f64>,
    /// Latency, ms.
    pub max_ms: Option<f64>,
}

/// Phase 3: shares.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShareReport {
    /// rate × seconds.
    pub planned: u64,
    /// Sent by the miners.
    pub sent: u64,
    /// Shares a second actually sent (first to last send).
    pub achieved_rate: f64,
    /// Answered `OK`.
    pub answered_ok: u64,
    /// Answered with an error.
    pub answered_error: u64,
    /// Errors by message.
    pub errors: BTreeMap<String, u64>,
    /// Sent and never answered.
    pub unanswered: u64,
    /// Miners with at least one unanswered share.
    pub miners_unanswered: usize,
    /// Shares that reached the pool exactly once.
    pub at_pool_once: u64,
    /// Sent shares that never reached the pool.
    pub missing_at_pool: u64,
    /// Shares that reached the pool more than once.
    pub duplicated_at_pool: u64,
    /// Shares that reached the pool with another fixed byte than their miner's (Stratum
    /// V1: another extranonce1 and tail than the miner's extranonce1).
    pub wrong_fixed_byte_at_pool: u64,
    /// Submits at the pool that are none of ours (bad nonce, index out of range).
    pub unknown_at_pool: u64,
    /// Round trip, ms.
    pub rtt_p50_ms: Option<f64>,
    /// Round trip, ms.
    pub rtt_p99_ms: Option<f64>,
    /// Round trip, ms.
    pub rtt_max_ms: Option<f64>,
    /// The proxy's CPU time from the first send to the last answer.
    pub proxy_cpu_ms: Option<f64>,
    /// The proxy's CPU time per 1,000 shares.
    pub proxy_cpu_ms_per_1000: Option<f64>,
    /// The same less the idle CPU time of the phase's length
    /// ([`MemoryReport::proxy_idle_cpu_ms_per_s`]).
    pub proxy_cpu_ms_per_1000_less_idle: Option<f64>,
    /// This generator's CPU time during the phase.
    pub generator_cpu_ms: Option<f64>,
}

// ----- /proc -----

/// One reading of a process's resident memory and CPU time.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    rss_kib: u64,
    /// `RssAnon` (heap, stacks, anonymous maps: what the proxy allocated), KiB; `None` on a
    /// kernel without the field (before 4.5).
    anon_kib: Option<u64>,
    /// `RssFile` (file-backed pages: the binary's and libraries' code and data, first touched
    /// when a path runs the first time), KiB.
    file_kib: Option<u64>,
    cpu: Duration,
}

/// `(after − before) / miners` in bytes, from two readings in KiB.
fn per_miner_bytes(before: Option<u64>, after: Option<u64>, miners: usize) -> Option<f64> {
    let (b, a) = (before?, after?);
    (miners > 0).then(|| (a as f64 - b as f64) * 1024.0 / miners as f64)
}

fn clock_ticks() -> u64 {
    // USER_HZ; `getconf` asks sysconf without unsafe code here. It is 100 on Linux.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// Reads `/proc/<pid>` (`self` for this process).
fn proc_sample(pid: &str, ticks: u64) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let cpu = Duration::from_nanos((utime + stime) * 1_000_000_000 / ticks);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status_field(&status, "VmRSS:")?;
    Some(ProcSample {
        rss_kib,
        anon_kib: status_field(&status, "RssAnon:"),
        file_kib: status_field(&status, "RssFile:"),
        cpu,
    })
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn proc_threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "Threads:")
}

fn proc_nofile(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Proxy and generator readings at one moment.
struct Probe {
    pid: Option<String>,
    ticks: u64,
}

#[derive(Clone, Copy)]
struct Both {
    at: Instant,
    proxy: Option<ProcSample>,
    me: Option<ProcSample>,
}

impl Probe {
    fn read(&self) -> Both {
        Both {
            at: Instant::now(),
            proxy: self.pid.as_deref().and_then(|p| proc_sample(p, self.ticks)),
            me: proc_sample("self", self.ticks),
        }
    }
}

fn cpu_ms(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<f64> {
    Some(ms(b?.cpu.saturating_sub(a?.cpu)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ----- shared state -----

/// Share states, per share index.
const SHARE_UNSENT: u8 = 0;
const SHARE_SENT: u8 = 1;
const SHARE_OK: u8 = 2;
const SHARE_ERROR: u8 = 3;

/// The share phase's plan, set once for every event loop.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start: Instant,
    rate: u64,
    total: u64,
    active: u64,
}

impl Plan {
    fn at(&self, k: u64) -> Instant {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate.max(1));
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// What the pool side saw.
struct PoolState {
    job: Job,
    /// Stratum V1: the jobs shares may be for (the current one; every job is clean).
    sv1_jobs: Vec<stratum_proto::sv1::Notify>,
    conns: Vec<mpsc::Sender<Bytes>>,
}

struct Ctx {
    opts: Options,
    epoch: Instant,
    stop: CancellationToken,
    result: String,
    /// Per miner: its fixed byte + 1 (0 until it logged in).
    slots: Vec<AtomicU32>,
    /// Per miner: its rank among the logged-in miners (`u32::MAX`: not logged in).
    ranks: Vec<AtomicU32>,
    /// Per job number 1..=K (index j − 1): pool send time, ns since `epoch` + 1.
    job_sent: Vec<AtomicU64>,
    /// Per (job − 1) × miners + miner: receipt time, ns since `epoch` + 1; 0 = none.
    receipts: Vec<AtomicU64>,
    received: Vec<AtomicUsize>,
    wrong_fixed_job: AtomicU64,
    plan: OnceLock<Plan>,
    /// Per share index: `SHARE_*`.
    share_state: Vec<AtomicU8>,
    /// Per share index: send time, ns since `epoch` + 1 (0: not sent).
    share_sent: Vec<AtomicU64>,
    /// Shares sent.
    sent: AtomicU64,
    answered: AtomicU64,
    first_send: AtomicU64,
    last_send: AtomicU64,
    rtt_ns: Mutex<Vec<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    disconnected: AtomicU64,
    // Pool side.
    pool: Mutex<PoolState>,
    pool_logins: AtomicU64,
    /// Per share index: times it reached the pool (saturating).
    pool_count: Vec<AtomicU8>,
    /// Per share index: the fixed byte it reached the pool with.
    pool_fixed: Vec<AtomicU8>,
    pool_unknown: AtomicU64,
    pool_closed: AtomicBool,
    /// Stratum V1 only.
    sv1: sv1::State,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn atomics<T: Default>(n: usize) -> Vec<T> {
    std::iter::repeat_with(T::default).take(n).collect()
}

impl Ctx {
    fn new(opts: Options) -> Self {
        let n = opts.miners;
        let total = usize::try_from(opts.total_shares()).unwrap_or(0);
        let result = result_for_difficulty(opts.difficulty);
        Self {
            epoch: Instant::now(),
            stop: CancellationToken::new(),
            result,
            slots: atomics(n),
            ranks: std::iter::repeat_with(|| AtomicU32::new(u32::MAX))
                .take(n)
                .collect(),
            job_sent: atomics(opts.jobs),
            receipts: atomics(opts.jobs * n),
            received: atomics(opts.jobs),
            wrong_fixed_job: AtomicU64::new(0),
            plan: OnceLock::new(),
            share_state: atomics(total),
            share_sent: atomics(total),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            first_send: AtomicU64::new(u64::MAX),
            last_send: AtomicU64::new(0),
            rtt_ns: Mutex::new(Vec::with_capacity(total.min(1 << 20))),
            errors: Mutex::new(BTreeMap::new()),
            disconnected: AtomicU64::new(0),
            pool: Mutex::new(PoolState {
                job: make_job(0, opts.difficulty),
                sv1_jobs: vec![sv1::make_job(0)],
                conns: Vec::new(),
            }),
            pool_logins: AtomicU64::new(0),
            pool_count: atomics(total),
            pool_fixed: atomics(total),
            pool_unknown: AtomicU64::new(0),
            pool_closed: AtomicBool::new(false),
            sv1: sv1::State::new(opts.protocol == Protocol::StratumV1, n, opts.jobs, total),
            opts,
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

// ----- the pool side -----

/// Makes `job` current and sends it to every pool connection; returns the send time.
fn push_job(ctx: &Ctx, job: Job) -> Instant {
    let line = Bytes::from(encode_job_notification(&job));
    let mut pool = lock(&ctx.pool);
    pool.job = job;
    let t0 = Instant::now();
    send_job(&mut pool.conns, &line);
    t0
}

/// Sends a job `line` to every pool connection in `conns`, dropping the closed ones; one
/// whose queue is full misses this job (logged).
fn send_job(conns: &mut Vec<mpsc::Sender<Bytes>>, line: &Bytes) {
    conns.retain(|tx| match tx.try_send(line.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!("pool connection not reading; job not sent to it");
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
}

async fn pool_accept(ctx: Arc<Ctx>, listener: TcpListener) {
    let mut index = 0u64;
    loop {
        let accepted = tokio::select! {
            () = ctx.stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                match ctx.opts.protocol {
                    Protocol::Cryptonote => tokio::spawn(pool_conn(ctx.clone(), stream, index)),
                    Protocol::StratumV1 => tokio::spawn(sv1::pool_conn(ctx.clone(), stream, index)),
                };
                index += 1;
            }
            Err(e) => {
                tracing::warn!("pool accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn pool_conn(ctx: Arc<Ctx>, stream: TcpStream, index: u64) {
    let session = format!("bench-pool-{index}");
    serve_pool_conn(&ctx, stream, Duration::ZERO, |line, tx, out, _| {
        pool_line(&ctx, line, &session, tx, out);
    })
    .await;
}

/// One proxy connection to the generator's pool, either family, served until it closes or
/// the run stops. `answer` (the family's) answers each line the proxy sends: into `out` what
/// goes back at once, into `later` what goes `later_pause` after it (apart, as a real pool's
/// lines can come); at login it registers the connection's job sender, taken from `tx`. A
/// close that is not the run's stop marks the pool closed; a line over the codec's limit
/// ends the connection without.
async fn serve_pool_conn(
    ctx: &Ctx,
    stream: TcpStream,
    later_pause: Duration,
    mut answer: impl FnMut(&[u8], &mut Option<mpsc::Sender<Bytes>>, &mut Vec<u8>, &mut Vec<u8>),
) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let mut tx = Some(tx);
    let (mut r, mut w) = stream.into_split();
    let mut buf = BytesMut::with_capacity(8192);
    let mut codec = LineCodec::default();
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let mut later: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            () = ctx.stop.cancelled() => break,
            Some(line) = rx.recv() => {
                if w.write_all(&line).await.is_err() {
                    break;
                }
            }
            n = r.read_buf(&mut buf) => {
                if !matches!(n, Ok(1..)) {
                    break;
                }
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(line)) => answer(&line, &mut tx, &mut out, &mut later),
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                if !out.is_empty() {
                    if w.write_all(&out).await.is_err() {
                        break;
                    }
                    out.clear();
                }
                if !later.is_empty() {
                    tokio::time::sleep(later_pause).await;
                    if w.write_all(&later).await.is_err() {
                        break;
                    }
                    later.clear();
                }
            }
        }
    }
    if !ctx.stop.is_cancelled() {
        ctx.pool_closed.store(true, Ordering::Relaxed);
    }
}

/// Answers one line the proxy sent to the pool, into `out`.
fn pool_line(
    ctx: &Ctx,
    line: &[u8],
    session: &str,
    tx: &mut Option<mpsc::Sender<Bytes>>,
    out: &mut Vec<u8>,
) {
    match parse_miner_request(line) {
        Ok((id, MinerRequest::Login(_))) => {
            // Register for job pushes under the same lock that reads the current job, so a
            // push is either in this reply or sent after it.
            let mut pool = lock(&ctx.pool);
            if let Some(tx) = tx.take() {
                pool.conns.push(tx);
            }
            out.extend_from_slice(&encode_login_ok(
                &id,
                session,
                Some(&pool.job),
                &["algo", "nicehash", "keepalive"],
            ));
            drop(pool);
            ctx.pool_logins.fetch_add(1, Ordering::Relaxed);
        }
        Ok((id, MinerRequest::Submit(p))) => {
            match parse_nonce(&p.nonce) {
                Some(nonce) => {
                    let k = u32::from_le_bytes(nonce) & 0x00ff_ffff;
                    match ctx.pool_count.get(k as usize) {
                        Some(count) => {
                            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                                Some(c.saturating_add(1))
                            });
                            ctx.pool_fixed[k as usize].store(nonce[3], Ordering::Relaxed);
                        }
                        None => {
                            ctx.pool_unknown.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                None => {
                    ctx.pool_unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
            out.extend_from_slice(&encode_status(&id, "OK"));
        }
        Ok((id, MinerRequest::Keepalived(_))) => {
            out.extend_from_slice(&encode_status(&id, "KEEPALIVED"))
        }
        Ok((id, MinerRequest::GetJob(_))) => {
            out.extend_from_slice(&encode_getjob_ok(&id, &lock(&ctx.pool).job))
        }
        Err(e) => out.extend_from_slice(&encode_error(e.id(), e.message())),
    }
}

// ----- the miners -----

/// The fixed byte (blob byte 42) of a hex blob.
fn blob_fixed_byte(blob_hex: &[u8]) -> Option<u8> {
    let at = NICEHASH_BYTE_OFFSET * 2;
    let mut b = [0u8; 1];
    decode_hex_into(blob_hex.get(at..at + 2)?, &mut b)?;
    Some(b[0])
}

/// The value of string field `key` (given with its quotes, colon and opening quote, e.g.
/// `"job_id":"`) in a compact JSON line.
fn scan_str<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = memchr::memmem::find(line, key)? + key.len();
    let len = memchr::memchr(b'"', &line[start..])?;
    Some(&line[start..start + len])
}

/// A `job` notification's id and fixed byte, read with a byte scan (see the module docs);
/// `None` when the line is not a job notification in compact form.
fn scan_job(line: &[u8]) -> Option<(&[u8], Option<u8>)> {
    memchr::memmem::find(line, b"\"method\":\"job\"")?;
    let job_id = scan_str(line, b"\"job_id\":\"")?;
    let fixed = scan_str(line, b"\"blob\":\"").and_then(blob_fixed_byte);
    Some((job_id, fixed))
}

/// The job number of a job id made by [`make_job`] (`job000003` → 3).
fn job_number(job_id: &[u8]) -> Option<usize> {
    std::str::from_utf8(job_id.strip_prefix(b"job")?)
        .ok()?
        .parse()
        .ok()
}

fn login_line(opts: &Options, i: usize) -> Vec<u8> {
    let rigid = match opts.rig_ids {
        RigIds::Unique => Some(format!("rig-{i:05}")),
        RigIds::Shared => Some("rig".to_string()),
        RigIds::None => None,
    };
    let algos = [ALGO.to_string(), "cn/r".to_string(), "rx/wow".to_string()];
    encode_pool_login(LOGIN_ID, WALLET, "x", AGENT, rigid.as_deref(), &algos)
}

async fn read_some(r: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, String> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(2048);
    }
    match r.read_buf(buf).await {
        Ok(0) => Err("closed by proxy".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("read: {}", e.kind())),
    }
}

/// A miner connection logged in to the proxy, with what it read past the login result.
struct LoggedIn {
    stream: TcpStream,
    /// Bytes read after the login result's line (not yet decoded).
    buf: BytesMut,
    codec: LineCodec,
    /// The session id of the login result.
    session: String,
    /// The job id of the login result's job.
    job_id: String,
    /// The job's fixed NiceHash byte: this miner's slot.
    slot: u8,
}

/// Connects from `ip` to `proxy`, sends `login` (a login request with id [`LOGIN_ID`]) and
/// reads until its answer.
///
/// # Errors
/// The reason, for the report: the socket fails, the proxy closes, sends a line that is
/// not stratum, refuses the login, or answers without a session id, a job or a fixed byte.
async fn connect_login(ip: Ipv4Addr, proxy: SocketAddr, login: &[u8]) -> Result<LoggedIn, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .map_err(|e| format!("bind {ip}: {}", e.kind()))?;
    let mut stream = sock
        .connect(proxy)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(login)
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut buf = BytesMut::with_capacity(2048);
    let mut codec = LineCodec::default();
    loop {
        read_some(&mut stream, &mut buf).await?;
        while let Some(line) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            match parse_pool_message(&line) {
                Ok(PoolMessage::Response {
                    id: LOGIN_ID,
                    outcome,
                }) => {
                    let v = outcome.map_err(|e| format!("refused: {}", e.message))?;
                    let result = PoolLoginResult::from_value(v).ok_or("login result without id")?;
                    let job = result.job.ok_or("login result without job")?;
                    let slot = blob_fixed_byte(job.blob.as_bytes()).ok_or("job blob too short")?;
                    return Ok(LoggedIn {
                        stream,
                        buf,
                        codec,
                        session: result.id,
                        job_id: job.job_id,
                        slot,
                    });
                }
                Ok(_) => {}
                Err(e) => return Err(format!("bad line: {e}")),
            }
        }
    }
}

/// Connects miner `i` and logs it in; once it has a login result with a job, the connection
/// (out of tokio's reactor) for the event loops.
async fn login(ctx: &Ctx, i: usize) -> Result<miners::Handoff, String> {
    if ctx.opts.protocol == Protocol::StratumV1 {
        return login_sv1(ctx, i).await;
    }
    let conn = connect_login(
        ctx.opts.source_ip(i),
        ctx.opts.proxy,
        &login_line(&ctx.opts, i),
    )
    .await?;
    let stream = conn
        .stream
        .into_std()
        .map_err(|e| format!("leaving the runtime: {}", e.kind()))?;
    Ok(miners::Handoff {
        i,
        stream,
        leftover: conn.buf.to_vec(),
        session: conn.session,
        job_id: conn.job_id,
        slot: conn.slot,
        sv1: None,
    })
}

/// [`login`] for a Stratum V1 miner; its "slot" is 1 (SV1 jobs carry nothing per miner).
async fn login_sv1(ctx: &Ctx, i: usize) -> Result<miners::Handoff, String> {
    let worker = sv1::worker_name(ctx.opts.rig_ids, i);
    let conn = sv1::connect_login(
        ctx.opts.source_ip(i),
        ctx.opts.proxy,
        &worker,
        ctx.opts.version_rolling,
    )
    .await?;
    if let Some(key) = ctx.sv1.miner_key.get(i) {
        // The bytes before a share's index: extranonce1, then the zeros of extranonce2.
        let mut en = conn.extranonce1.clone();
        en.resize(en.len() + conn.extranonce2_size - 4, 0);
        key.store(sv1::en_key(&en), Ordering::Relaxed);
    }
    let stream = conn
        .stream
        .into_std()
        .map_err(|e| format!("leaving the runtime: {}", e.kind()))?;
    Ok(miners::Handoff {
        i,
        stream,
        leftover: conn.buf.to_vec(),
        session: worker,
        job_id: conn.job_id,
        slot: 0,
        sv1: Some(Box::new(miners::Sv1Miner {
            extranonce1: conn.extranonce1,
            extranonce2_size: conn.extranonce2_size,
            mask: conn.mask,
            difficulty: conn.difficulty,
            job: conn.job,
        })),
    })
}

/// One miner: logs in (holding a login permit), hands its connection to its event loop
/// ([`miners`]), which serves jobs and sends its shares until the run stops, then reports
/// the outcome.
async fn miner(
    ctx: Arc<Ctx>,
    loops: Arc<miners::Loops>,
    i: usize,
    permits: Arc<Semaphore>,
    outcome: mpsc::Sender<(usize, Result<u8, String>)>,
) {
    let Ok(permit) = permits.acquire_owned().await else {
        return;
    };
    let logged = tokio::select! {
        () = ctx.stop.cancelled() => return,
        r = tokio::time::timeout(ctx.opts.login_timeout, login(&ctx, i)) => {
            r.unwrap_or_else(|_| Err("timeout".into()))
        }
    };
    drop(permit);
    let result = logged.map(|h| {
        let slot = h.slot;
        ctx.slots[i].store(u32::from(slot) + 1, Ordering::Relaxed);
        loops.hand(h);
        slot
    });
    let _ = outcome.send((i, result)).await;
}

// ----- statistics -----

/// The `p` quantile (0..=1, nearest rank) of sorted `v`.
pub fn quantile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ns_ms(ns: Option<u64>) -> Option<f64> {
    ns.map(|n| n as f64 / 1e6)
}

// ----- the run -----

/// Runs every phase against the proxy at [`Options::proxy`] and returns what it measured.
/// Stops by itself at [`Options::deadline`] (or [`Options::default_deadline`] when zero),
/// closing every connection it opened.
///
/// # Errors
/// Options that cannot work, the pool address cannot be bound, or the proxy does not accept
/// connections within 15 seconds. Everything that goes wrong later is in
/// [`Report::problems`].
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    opts.validate()?;
    let listener = TcpListener::bind(opts.pool_bind)
        .await
        .with_context(|| format!("binding the pool on {}", opts.pool_bind))?;
    run_on(opts, listener).await
}

/// [`run`] with the pool on `listener`, already bound (a test binds port 0 and names the
/// address in the proxy's config before the proxy starts); [`Options::pool_bind`] is not used.
///
/// # Errors
/// As [`run`].
pub async fn run_on(mut opts: Options, listener: TcpListener) -> anyhow::Result<Report> {
    opts.validate()?;
    if opts.deadline.is_zero() {
        opts.deadline = opts.default_deadline();
    }
    wait_for_proxy(opts.proxy).await?;
    let probe = Probe {
        pid: opts.proxy_pid.map(|p| p.to_string()),
        ticks: clock_ticks(),
    };
    let deadline = opts.deadline;
    let ctx = Arc::new(Ctx::new(opts));
    let loops = Arc::new(
        miners::Loops::start(&ctx, ctx.opts.miner_threads).context("starting the miner loops")?,
    );
    tokio::spawn(pool_accept(ctx.clone(), listener));

    let mut report = Report {
        setup: setup(&ctx.opts),
        login: LoginReport::default(),
        memory: MemoryReport::default(),
        fanout: FanoutReport::default(),
        shares: ShareReport::default(),
        problems: Vec::new(),
    };
    if tokio::time::timeout(deadline, phases(&ctx, &loops, &probe, &mut report))
        .await
        .is_err()
    {
        report.problems.push(format!(
            "deadline of {} s reached; figures are partial",
            deadline.as_secs()
        ));
    }
    ctx.stop.cancel();
    let joined = loops.clone();
    let _ = tokio::task::spawn_blocking(move || joined.join()).await;
    if let Some(pid) = ctx.opts.proxy_pid {
        report.setup.proxy_os_threads = proc_threads(pid);
        report.setup.proxy_nofile = proc_nofile(pid);
        if report.setup.proxy_os_threads.is_none() {
            report.problems.push(format!("proxy process {pid} is gone"));
        }
    }
    // Let the login tasks still under way see the stop and close their sockets.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(report)
}

fn setup(opts: &Options) -> Setup {
    Setup {
        miners: opts.miners,
        source_ips: opts.miners.div_ceil(opts.miners_per_ip.max(1)),
        jobs: opts.jobs,
        job_interval_ms: u64::try_from(opts.job_interval.as_millis()).unwrap_or(u64::MAX),
        rate: opts.rate,
        seconds: opts.seconds,
        difficulty: opts.difficulty,
        rig_ids: opts.rig_ids,
        mode: opts.mode,
        protocol: opts.protocol,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        generator_threads: opts.threads,
        generator_miner_threads: opts.miner_threads,
        proxy_workers: opts.proxy_workers,
        proxy_os_threads: None,
        proxy_nofile: opts.proxy_pid.and_then(proc_nofile),
        proxy_pid: opts.proxy_pid,
    }
}

async fn wait_for_proxy(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                bail!("the proxy at {addr} does not accept connections: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn phases(ctx: &Arc<Ctx>, loops: &Arc<miners::Loops>, probe: &Probe, report: &mut Report) {
    let opts = &ctx.opts;
    tokio::time::sleep(opts.settle).await;
    let before = probe.read();
    report.memory.rss_before_kib = before.proxy.map(|s| s.rss_kib);

    // Phase 1: logins.
    let active = login_phase(ctx, loops, probe, report, before).await;
    if active.is_empty() {
        report.problems.push("no miner logged in".into());
        return;
    }
    tokio::time::sleep(opts.settle).await;
    let after_login = probe.read();
    report.memory.rss_after_login_kib = after_login.proxy.map(|s| s.rss_kib);
    if let (Some(b), Some(a)) = (before.proxy, after_login.proxy) {
        report.memory.rss_per_miner_bytes =
            per_miner_bytes(Some(b.rss_kib), Some(a.rss_kib), active.len());
        report.memory.anon_per_miner_bytes = per_miner_bytes(b.anon_kib, a.anon_kib, active.len());
        report.memory.file_per_miner_bytes = per_miner_bytes(b.file_kib, a.file_kib, active.len());
    }
    let idle = opts.settle * 2;
    tokio::time::sleep(idle).await;
    report.memory.proxy_idle_cpu_ms_per_s =
        cpu_ms(after_login.proxy, probe.read().proxy).map(|c| c / idle.as_secs_f64().max(1e-3));
    if proc_gone(ctx, report) {
        return;
    }

    // Phase 2: jobs.
    if opts.jobs > 0 {
        job_phase(ctx, probe, report, &active).await;
        tokio::time::sleep(opts.settle).await;
        report.memory.rss_after_jobs_kib = probe.read().proxy.map(|s| s.rss_kib);
        if proc_gone(ctx, report) {
            return;
        }
    }

    // Phase 3: shares.
    if opts.total_shares() > 0 {
        share_phase(ctx, probe, report, &active).await;
        let after = probe.read().proxy;
        report.memory.rss_after_shares_kib = after.map(|s| s.rss_kib);
        if let (Some(b), Some(a)) = (before.proxy, after) {
            report.memory.rss_per_miner_after_shares_bytes =
                Some((a.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / active.len() as f64);
        }
    }
    let gone = ctx.disconnected.load(Ordering::Relaxed);
    if gone > 0 {
        report
            .problems
            .push(format!("{gone} logged-in miners were disconnected"));
    }
    if ctx.pool_closed.load(Ordering::Relaxed) {
        report
            .problems
            .push("the proxy closed a pool connection during the run".into());
    }
    proc_gone(ctx, report);
}

fn proc_gone(ctx: &Ctx, report: &mut Report) -> bool {
    let Some(pid) = ctx.opts.proxy_pid else {
        return false;
    };
    let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
    if gone && !report.problems.iter().any(|p| p.contains("is gone")) {
        report.problems.push(format!("proxy process {pid} is gone"));
    }
    gone
}

/// Logs every miner in; returns the indexes of those logged in, in order.
async fn login_phase(
    ctx: &Arc<Ctx>,
    loops: &Arc<miners::Loops>,
    probe: &Probe,
    report: &mut Report,
    before: Both,
) -> Vec<usize> {
    let n = ctx.opts.miners;
    let permits = Arc::new(Semaphore::new(ctx.opts.connect_concurrency.max(1)));
    let (tx, mut rx) = mpsc::channel(1024);
    let start = Instant::now();
    for i in 0..n {
        tokio::spawn(miner(
            ctx.clone(),
            loops.clone(),
            i,
            permits.clone(),
            tx.clone(),
        ));
    }
    drop(tx);
    let mut ok = vec![false; n];
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = 0;
    while let Some((i, outcome)) = rx.recv().await {
        seen += 1;
        match outcome {
            Ok(_) => ok[i] = true,
            Err(e) => *failures.entry(e).or_default() += 1,
        }
        if seen == n {
            break;
        }
    }
    let elapsed = start.elapsed();
    let after = probe.read();
    let active: Vec<usize> = (0..n).filter(|&i| ok[i]).collect();
    for (rank, &i) in active.iter().enumerate() {
        ctx.ranks[i].store(u32::try_from(rank).unwrap_or(u32::MAX), Ordering::Relaxed);
    }
    let l = &mut report.login;
    l.logged_in = active.len();
    l.failed = n - active.len();
    l.failures = failures;
    l.seconds = elapsed.as_secs_f64();
    l.rate = active.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    l.proxy_cpu_ms = cpu_ms(before.proxy, after.proxy);
    l.proxy_cpu_ms_per_1000 = l
        .proxy_cpu_ms
        .filter(|_| !active.is_empty())
        .map(|c| c * 1000.0 / active.len() as f64);
    l.generator_cpu_ms = cpu_ms(before.me, after.me);
    l.pool_logins = ctx.pool_logins.load(Ordering::Relaxed);
    if ctx.opts.mode == Mode::Simple && l.pool_logins < active.len() as u64 {
        report.problems.push(format!(
            "simple mode: {} miners logged in on {} pool connections",
            active.len(),
            l.pool_logins
        ));
    }
    if l.failed > 0 {
        report.problems.push(format!(
            "{} of {n} miners failed to log in: {:?}",
            l.failed, l.failures
        ));
    }
    active
}

async fn job_phase(ctx: &Arc<Ctx>, probe: &Probe, report: &mut Report, active: &[usize]) {
    let opts = &ctx.opts;
    let before = probe.read();
    let start = tokio::time::Instant::now();
    for j in 1..=opts.jobs {
        tokio::time::sleep_until(start + opts.job_interval * u32::try_from(j - 1).unwrap_or(0))
            .await;
        let t0 = match opts.protocol {
            Protocol::Cryptonote => push_job(ctx, make_job(j as u64, opts.difficulty)),
            Protocol::StratumV1 => sv1::push_job(ctx, j as u64),
        };
        ctx.job_sent[j - 1].store(ctx.nanos(t0) + 1, Ordering::Relaxed);
    }
    // Wait for the last receipts: until every logged-in miner has every job, or as long as
    // one interval (at least 10 s) after the last push.
    let wait_until = Instant::now() + opts.job_interval.max(Duration::from_secs(10));
    while Instant::now() < wait_until
        && ctx
            .received
            .iter()
            .any(|r| r.load(Ordering::Relaxed) < active.len())
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = probe.read();

    let f = &mut report.fanout;
    f.jobs = opts.jobs;
    let mut all = Vec::with_capacity(opts.jobs * active.len());
    for j in 1..=opts.jobs {
        let sent = ctx.job_sent[j - 1]
            .load(Ordering::Relaxed)
            .saturating_sub(1);
        let mut lat: Vec<u64> = active
            .iter()
            .map(|&i| ctx.receipts[(j - 1) * opts.miners + i].load(Ordering::Relaxed))
            .filter(|&r| r > 0)
            .map(|r| (r - 1).saturating_sub(sent))
            .collect();
        lat.sort_unstable();
        f.missing += active.len() - lat.len();
        f.per_job.push(JobFanout {
            job: j,
            receipts: lat.len(),
            p50_ms: ns_ms(quantile(&lat, 0.50)),
            p99_ms: ns_ms(quantile(&lat, 0.99)),
            max_ms: ns_ms(lat.last().copied()),
        });
        all.extend(lat);
    }
    all.sort_unstable();
    f.receipts = all.len();
    f.p50_ms = ns_ms(quantile(&all, 0.50));
    f.p99_ms = ns_ms(quantile(&all, 0.99));
    f.max_ms = ns_ms(all.last().copied());
    f.wrong_fixed_byte = ctx.wrong_fixed_job.load(Ordering::Relaxed);
    f.proxy_cpu_ms = cpu_ms(before.proxy, after.proxy);
    f.proxy_cpu_ms_per_job_per_1000 = f
        .proxy_cpu_ms
        .map(|c| c / opts.jobs as f64 * 1000.0 / active.len() as f64);
    f.generator_cpu_ms = cpu_ms(before.me, after.me);
    if f.missing > 0 {
        report.problems.push(format!(
            "{} job notifications never reached their miner",
            f.missing
        ));
    }
    if f.wrong_fixed_byte > 0 {
        report.problems.push(format!(
            "{} jobs reached a miner with another fixed byte than its own",
            f.wrong_fixed_byte
        ));
    }
}

async fn share_phase(ctx: &Arc<Ctx>, probe: &Probe, report: &mut Report, active: &[usize]) {
    let opts = &ctx.opts;
    let total = opts.total_shares();
    let before = probe.read();
    let plan = Plan {
        start: Instant::now() + Duration::from_millis(100),
        rate: opts.rate,
        total,
        active: active.len() as u64,
    };
    let _ = ctx.plan.set(plan);
    // Until every share is sent and answered, or 10 s after the last one was due.
    let wait_until = plan.at(total) + Duration::from_secs(10);
    loop {
        let sent = ctx.sent.load(Ordering::Relaxed);
        let answered = ctx.answered.load(Ordering::Relaxed);
        if (sent == total && answered == sent) || Instant::now() >= wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = probe.read();
    let elapsed = before.at.elapsed();

    let s = &mut report.shares;
    s.planned = total;
    s.sent = ctx.sent.load(Ordering::Relaxed);
    let (first, last) = (
        ctx.first_send.load(Ordering::Relaxed),
        ctx.last_send.load(Ordering::Relaxed),
    );
    if s.sent > 1 && last > first {
        s.achieved_rate = (s.sent - 1) as f64 / ((last - first) as f64 / 1e9);
    }
    s.errors = lock(&ctx.errors).clone();
    let mut miners_unanswered = std::collections::BTreeSet::new();
    for k in 0..total {
        let ku = k as usize;
        let state = ctx.share_state[ku].load(Ordering::Relaxed);
        let count = ctx.pool_count[ku].load(Ordering::Relaxed);
        let miner = active[(k % active.len() as u64) as usize];
        match state {
            SHARE_UNSENT => continue,
            SHARE_SENT => {
                s.unanswered += 1;
                miners_unanswered.insert(miner);
            }
            SHARE_OK => s.answered_ok += 1,
            _ => s.answered_error += 1,
        }
        match count {
            0 => s.missing_at_pool += 1,
            1 => s.at_pool_once += 1,
            _ => s.duplicated_at_pool += 1,
        }
        let wrong = match opts.protocol {
            Protocol::Cryptonote => {
                let slot = ctx.slots[miner].load(Ordering::Relaxed);
                u32::from(ctx.pool_fixed[ku].load(Ordering::Relaxed)) + 1 != slot
            }
            Protocol::StratumV1 => {
                ctx.sv1.pool_key[ku].load(Ordering::Relaxed)
                    != ctx.sv1.miner_key[miner].load(Ordering::Relaxed)
            }
        };
        if count > 0 && wrong {
            s.wrong_fixed_byte_at_pool += 1;
        }
    }
    // Shares at the pool that no miner sent (a share the proxy made up or repeated late).
    s.unknown_at_pool = ctx.pool_unknown.load(Ordering::Relaxed)
        + (0..total as usize)
            .filter(|&k| {
                ctx.share_state[k].load(Ordering::Relaxed) == SHARE_UNSENT
                    && ctx.pool_count[k].load(Ordering::Relaxed) > 0
            })
            .count() as u64;
    s.miners_unanswered = miners_unanswered.len();
    let mut rtt = std::mem::take(&mut *lock(&ctx.rtt_ns));
    rtt.sort_unstable();
    s.rtt_p50_ms = ns_ms(quantile(&rtt, 0.50));
    s.rtt_p99_ms = ns_ms(quantile(&rtt, 0.99));
    s.rtt_max_ms = ns_ms(rtt.last().copied());
    s.proxy_cpu_ms = cpu_ms(before.proxy, after.proxy);
    s.proxy_cpu_ms_per_1000 = s
        .proxy_cpu_ms
        .filter(|_| s.sent > 0)
        .map(|c| c * 1000.0 / s.sent as f64);
    s.proxy_cpu_ms_per_1000_less_idle = s
        .proxy_cpu_ms
        .zip(report.memory.proxy_idle_cpu_ms_per_s)
        .filter(|_| s.sent > 0)
        .map(|(c, idle)| (c - idle * elapsed.as_secs_f64()).max(0.0) * 1000.0 / s.sent as f64);
    s.generator_cpu_ms = cpu_ms(before.me, after.me);

    let p = &mut report.problems;
    if s.sent < s.planned {
        p.push(format!(
            "{} of {} shares were not sent",
            s.planned - s.sent,
            s.planned
        ));
    }
    if s.unanswered > 0 {
        p.push(format!(
            "{} shares of {} miners got no answer",
            s.unanswered, s.miners_unanswered
        ));
    }
    if s.answered_error > 0 {
        p.push(format!(
            "{} shares answered with an error: {:?}",
            s.answered_error, s.errors
        ));
    }
    if opts.shares_answered_by_proxy() {
        // Answered by the proxy: any share at the pool is one too many.
        s.missing_at_pool = 0;
        if s.at_pool_once + s.duplicated_at_pool + s.unknown_at_pool > 0 {
            p.push(format!(
                "{} shares reached the pool though under its difficulty",
                s.at_pool_once + s.duplicated_at_pool + s.unknown_at_pool
            ));
        }
    } else if s.missing_at_pool > 0 || s.duplicated_at_pool > 0 || s.unknown_at_pool > 0 {
        p.push(format!(
            "shares at the pool: {} missing, {} duplicated, {} unknown",
            s.missing_at_pool, s.duplicated_at_pool, s.unknown_at_pool
        ));
    }
    if s.wrong_fixed_byte_at_pool > 0 {
        p.push(format!(
            "{} shares reached the pool with another fixed byte than their miner's",
            s.wrong_fixed_byte_at_pool
        ));
    }
}

// ----- output -----

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

impl Report {
    /// True when nothing went wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as a Markdown table with a header line.
    pub fn table(&self) -> String {
        let st = &self.setup;
        let (l, m, f, s) = (&self.login, &self.memory, &self.fanout, &self.shares);
        let proxy_threads = match (st.proxy_workers, st.proxy_os_threads) {
            (Some(w), Some(t)) => format!("{w} tokio workers ({t} OS threads)"),
            (Some(w), None) => format!("{w} tokio workers"),
            (None, Some(t)) => format!("{t} OS threads"),
            (None, None) => "unknown".into(),
        };
        let mut rows: Vec<(String, String)> = vec![
            (
                "threads: generator / proxy".into(),
                format!(
                    "{} tokio workers + {} miner event loops / {proxy_threads}, on {} cores",
                    st.generator_threads, st.generator_miner_threads, st.cores
                ),
            ),
            (
                "miners logged in / failed".into(),
                format!(
                    "{} / {}",
                    grouped(l.logged_in as u64),
                    grouped(l.failed as u64)
                ),
            ),
            (
                "protocol, mode, pool connections".into(),
                format!(
                    "{}, {}, {}",
                    match st.protocol {
                        Protocol::Cryptonote => "cryptonote",
                        Protocol::StratumV1 => "stratum-v1",
                    },
                    match st.mode {
                        Mode::Nicehash => "nicehash",
                        Mode::Simple => "simple",
                    },
                    grouped(l.pool_logins)
                ),
            ),
            (
                "login rate".into(),
                format!("{} /s ({:.2} s)", grouped(l.rate as u64), l.seconds),
            ),
            (
                "proxy RSS before / after login".into(),
                format!("{} / {}", mib(m.rss_before_kib), mib(m.rss_after_login_kib)),
            ),
            (
                "RSS per logged-in miner".into(),
                m.rss_per_miner_bytes
                    .map_or_else(|| "n/a".into(), |b| format!("{} bytes", grouped(b as u64))),
            ),
            (
                "  of it anonymous / file-backed (code)".into(),
                format!(
                    "{} / {}",
                    m.anon_per_miner_bytes
                        .map_or_else(|| "n/a".into(), |b| format!("{} bytes", b.round() as i64)),
                    m.file_per_miner_bytes
                        .map_or_else(|| "n/a".into(), |b| format!("{} bytes", b.round() as i64)),
                ),
            ),
            (
                "RSS per miner after the shares".into(),
                m.rss_per_miner_after_shares_bytes
                    .map_or_else(|| "n/a".into(), |b| format!("{} bytes", grouped(b as u64))),
            ),
            (
                "proxy CPU per 1,000 logins".into(),
                format!("{} ms", opt(l.proxy_cpu_ms_per_1000, 1)),
            ),
            (
                "job fan-out p50 / p99 / max".into(),
                format!(
                    "{} / {} / {} ms ({} jobs, {} receipts, {} missing)",
                    opt(f.p50_ms, 2),
                    opt(f.p99_ms, 2),
                    opt(f.max_ms, 2),
                    f.jobs,
                    grouped(f.receipts as u64),
                    f.missing
                ),
            ),
            (
                "proxy CPU per job per 1,000 miners".into(),
                format!("{} ms", opt(f.proxy_cpu_ms_per_job_per_1000, 1)),
            ),
            (
                "shares sent / OK / error / unanswered".into(),
                format!(
                    "{} / {} / {} / {} (planned {} at {}/s; sent at {:.0}/s)",
                    grouped(s.sent),
                    grouped(s.answered_ok),
                    s.answered_error,
                    s.unanswered,
                    grouped(s.planned),
                    grouped(self.setup.rate),
                    s.achieved_rate
                ),
            ),
            (
                "shares at pool: once / missing / dup / wrong byte".into(),
                format!(
                    "{} / {} / {} / {}",
                    grouped(s.at_pool_once),
                    s.missing_at_pool,
                    s.duplicated_at_pool,
                    s.wrong_fixed_byte_at_pool
                ),
            ),
            (
                "submit round trip p50 / p99 / max".into(),
                format!(
                    "{} / {} / {} ms",
                    opt(s.rtt_p50_ms, 3),
                    opt(s.rtt_p99_ms, 3),
                    opt(s.rtt_max_ms, 2)
                ),
            ),
            (
                "proxy CPU per 1,000 shares (less idle)".into(),
                format!(
                    "{} ms ({} ms)",
                    opt(s.proxy_cpu_ms_per_1000, 1),
                    opt(s.proxy_cpu_ms_per_1000_less_idle, 1)
                ),
            ),
            (
                "proxy idle CPU, miners logged in".into(),
                format!("{} ms/s", opt(m.proxy_idle_cpu_ms_per_s, 1)),
            ),
            (
                "generator CPU: login / jobs / shares".into(),
                format!(
                    "{} / {} / {} ms",
                    opt(l.generator_cpu_ms, 0),
                    opt(f.generator_cpu_ms, 0),
                    opt(s.generator_cpu_ms, 0)
                ),
            ),
        ];
        rows.push((
            "result".into(),
            if self.problems.is_empty() {
                "clean".into()
            } else {
                self.problems.join("; ")
            },
        ));
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!(
            "loadgen: {} miners from {} source addresses, {} jobs {} ms apart, {} shares/s for {} s, rig ids {:?}, proxy pid {}\n\n",
            grouped(st.miners as u64),
            st.source_ips,
            st.jobs,
            st.job_interval_ms,
            grouped(st.rate),
            st.seconds,
            st.rig_ids,
            st.proxy_pid.map_or_else(|| "unknown".into(), |p| p.to_string()),
        );
        out.push_str(&format!(
            "| {:w$} | value |\n|{}|---|\n",
            "figure",
            "-".repeat(w + 2)
        ));
        for (k, v) in rows {
            out.push_str(&format!("| {k:w$} | {v} |\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum_proto::cryptonote::JobLine;
    use stratum_proto::job::encode_hex;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.99), Some(7));
    }

    #[test]
    fn scans_a_patched_job_line() {
        let line = JobLine::new(&make_job(3, 10_000)).to_vec(0xb9);
        let line = &line[..line.len() - 1];
        let (id, fixed) = scan_job(line).unwrap();
        assert_eq!(id, b"job000003");
        assert_eq!(job_number(id), Some(3));
        assert_eq!(fixed, Some(0xb9));
        assert!(
            scan_job(br#"{"id":2,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}"#)
                .is_none()
        );
    }

    #[test]
    fn share_nonce_carries_slot_and_index() {
        let (slot, k) = (0x2au8, 0x01_0203u32);
        let nonce = (u32::from(slot) << 24) | k;
        let hex = encode_hex(&nonce.to_le_bytes());
        let bytes = parse_nonce(&hex).unwrap();
        assert_eq!(bytes[3], slot, "blob byte 42 is the nonce's last byte");
        assert_eq!(u32::from_le_bytes(bytes) & 0x00ff_ffff, k);
    }

    #[test]
    fn source_addresses_step_per_block_of_miners() {
        let o = Options {
            miners_per_ip: 1000,
            ..Options::default()
        };
        assert_eq!(o.source_ip(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(o.source_ip(999), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(o.source_ip(1000), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(o.source_ip(19_499), Ipv4Addr::new(127, 0, 0, 21));
        assert!(Options {
            miners: 2,
            miners_per_ip: 1,
            first_ip: Ipv4Addr::new(127, 255, 255, 255),
            ..Options::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn plan_spreads_shares_evenly() {
        let start = Instant::now();
        let p = Plan {
            start,
            rate: 2000,
            total: 10,
            active: 3,
        };
        assert_eq!(p.at(0), start);
        assert_eq!(p.at(2000), start + Duration::from_secs(1));
        assert_eq!(p.at(1), start + Duration::from_micros(500));
    }

    #[test]
    fn proc_self_is_readable() {
        let s = proc_sample("self", clock_ticks()).unwrap();
        assert!(s.rss_kib > 0);
        // Anonymous and file-backed pages add up to the resident set (shared memory aside).
        let (anon, file) = (s.anon_kib.unwrap(), s.file_kib.unwrap());
        assert!(anon > 0 && file > 0 && anon + file <= s.rss_kib, "{s:?}");
    }

    #[test]
    fn per_miner_bytes_is_the_growth_over_the_miners() {
        assert_eq!(per_miner_bytes(Some(1000), Some(2000), 1024), Some(1000.0));
        assert_eq!(per_miner_bytes(Some(2000), Some(1000), 1024), Some(-1000.0));
        assert_eq!(per_miner_bytes(None, Some(1000), 10), None);
        assert_eq!(per_miner_bytes(Some(1), Some(2), 0), None);
    }

    #[test]
    fn table_reads() {
        let r = Report {
            setup: setup(&Options::default()),
            login: LoginReport::default(),
            memory: MemoryReport::default(),
            fanout: FanoutReport::default(),
            shares: ShareReport::default(),
            problems: vec![],
        };
        let t = r.table();
        assert!(t.contains("| RSS per logged-in miner"), "{t}");
        assert_eq!(grouped(19_500), "19,500");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }
}
