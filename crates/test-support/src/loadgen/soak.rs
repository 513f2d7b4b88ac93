//! Soak: miners churning in and out of a running proxy for minutes, with shares and job
//! changes, and the proxy's resident memory (RSS) compared before and after at the same
//! miner count. `cargo xtask soak --minutes N` runs it (binary `soak`) against the release
//! proxy; [`soak_on`] is the whole run, [`SoakReport`] what it measured.
//!
//! The pool side is the load generator's (`pool_accept`: every submit answered
//! `OK`), with a new job every [`SoakOptions::job_interval`]. Each of the
//! [`SoakOptions::miners`] miners is a tokio task that connects (from 127.0.0.2, … as the
//! load generator does), logs in with a rig id of its own that is new at every connection
//! (`soak-<miner>-<connection>`: a new worker name each time), sends a share every
//! [`SoakOptions::share_interval`] for the job it has, stays for a random lifetime between
//! [`SoakOptions::min_lifetime`] and [`SoakOptions::max_lifetime`], waits for the answers to
//! its shares (at most [`ANSWER_WAIT`]), closes and connects again at once. So about as many
//! miners are connected at any time, and a stream of new worker names comes in: the proxy's
//! worker records must expire (a short `workers-idle-timeout` in the soak's config) for its
//! memory to stay flat.
//!
//! Memory is read twice, after [`SoakOptions::warmup`] and after [`SoakOptions::soak`] more:
//! each time the churn is held (no miner leaves) until every miner is connected again, then
//! after [`SoakOptions::settle`] the proxy's RSS (`/proc/<pid>/status`) and, when its API
//! address is given, its worker record count (`GET /1/summary`) are read, and the churn goes
//! on. The run fails when the second RSS is more than [`SoakOptions::max_growth`] above the
//! first, when a share went unanswered, or when the proxy died or closed its pool.
//!
//! Bounded: the miners are a fixed number of tasks, each with at most
//! [`MAX_OUTSTANDING`] shares in flight, and the whole run stops at its deadline.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use stratum_proto::cryptonote::{
    encode_pool_login, encode_pool_submit, is_status_ok, parse_pool_message, PoolMessage,
};
use stratum_proto::job::encode_hex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::{
    clock_ticks, connect_login, make_job, pool_accept, proc_sample, push_job, read_some,
    wait_for_proxy, Ctx, LoggedIn, Options, AGENT, ALGO, LOGIN_ID, WALLET,
};

/// Longest a leaving miner waits for the answers to its shares before it closes anyway (they
/// then count as unanswered).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Most shares a miner has in flight; it skips a share while it has this many.
pub const MAX_OUTSTANDING: usize = 8;

/// Longest the churn is held for every miner to be connected before a memory reading.
const HOLD_WAIT: Duration = Duration::from_secs(60);

/// What to run. [`SoakOptions::default`]: 1,000 miners living 5 to 30 s, a share each every
/// 10 s, a job every 5 s, 60 s of warm-up and 3 minutes of soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The proxy's miner listen address.
    pub proxy: SocketAddr,
    /// The proxy's process id, for its RSS; `None` skips the memory figures (and the check).
    pub proxy_pid: Option<u32>,
    /// The proxy's HTTP API, for the worker record count; `None` skips it.
    pub api: Option<SocketAddr>,
    /// Bearer token for the API, if it wants one.
    pub api_token: Option<String>,
    /// Miners connected at once (each reconnects as soon as it leaves).
    pub miners: usize,
    /// Miners per loopback source address (127.0.0.2 takes the first this many, …).
    pub miners_per_ip: usize,
    /// Shortest connection.
    pub min_lifetime: Duration,
    /// Longest connection.
    pub max_lifetime: Duration,
    /// Time between two shares of one miner.
    pub share_interval: Duration,
    /// Time between two jobs from the pool.
    pub job_interval: Duration,
    /// The pool's job difficulty (shares meet it).
    pub difficulty: u64,
    /// Churn before the first memory reading.
    pub warmup: Duration,
    /// Churn between the two memory readings.
    pub soak: Duration,
    /// Pause, every miner connected, before a reading.
    pub settle: Duration,
    /// Largest RSS growth allowed, as a fraction of the warm-up reading (0.10: 10 %).
    pub max_growth: f64,
}

impl Default for SoakOptions {
    fn default() -> Self {
        Self {
            proxy: SocketAddr::from(([127, 0, 0, 1], 3333)),
            proxy_pid: None,
            api: None,
            api_token: None,
            miners: 1_000,
            miners_per_ip: 100,
            min_lifetime: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(30),
            share_interval: Duration::from_secs(10),
            job_interval: Duration::from_secs(5),
            difficulty: 10_000,
            warmup: Duration::from_secs(60),
            soak: Duration::from_secs(180),
            settle: Duration::from_secs(3),
            max_growth: 0.10,
        }
    }
}

impl SoakOptions {
    /// The latest the run can end: warm-up, soak, two holds and settles, and a minute.
    pub fn deadline(&self) -> Duration {
        self.warmup + self.soak + 2 * (HOLD_WAIT + self.settle) + Duration::from_secs(60)
    }

    fn source_ip(&self, i: usize) -> Ipv4Addr {
        super::source_ip(Ipv4Addr::new(127, 0, 0, 2), self.miners_per_ip, i)
    }
}

/// One memory reading.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reading {
    /// Seconds since the start of the run.
    pub at_s: f64,
    /// Miners connected and logged in when it was taken.
    pub miners: usize,
    /// The proxy's RSS, KiB.
    pub rss_kib: Option<u64>,
    /// The proxy's worker records (`/1/summary` `workers`).
    pub worker_records: Option<u64>,
}

/// What a soak measured; serialises to the JSON output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    /// Miners connected at once.
    pub miners: usize,
    /// Seconds of warm-up and of soak asked for.
    pub warmup_s: u64,
    /// Seconds of soak asked for.
    pub soak_s: u64,
    /// After the warm-up.
    pub warmup: Reading,
    /// After the soak.
    pub end: Reading,
    /// (end − warm-up) / warm-up RSS, in percent.
    pub rss_growth_percent: Option<f64>,
    /// The limit on it, in percent.
    pub max_growth_percent: f64,
    /// Logins (each with a new worker name).
    pub logins: u64,
    /// Connections the miners closed after their lifetime.
    pub departures: u64,
    /// Connection or login attempts that failed, by reason.
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Jobs the pool pushed.
    pub jobs: u64,
    /// Shares sent.
    pub shares_sent: u64,
    /// Answered `OK`.
    pub shares_ok: u64,
    /// Answered with an error.
    pub shares_error: u64,
    /// Errors by message.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Sent and never answered (a miner that left waited [`ANSWER_WAIT`] for them).
    pub shares_unanswered: u64,
    /// What went wrong; empty on a clean run.
    pub problems: Vec<String>,
}

impl SoakReport {
    /// No problem and RSS within bounds.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// A short human-readable summary.
    pub fn table(&self) -> String {
        let kib =
            |v: Option<u64>| v.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let n = |v: Option<u64>| v.map_or("-".into(), |k| k.to_string());
        let mut s = format!(
            "soak: {} miners, {} s warm-up, {} s soak\n\
             RSS after warm-up: {} ({} miners, {} worker records)\n\
             RSS after soak:    {} ({} miners, {} worker records)\n\
             growth: {} (limit {:.0} %)\n\
             logins {}, departures {}, jobs {}, shares sent {} ok {} error {} unanswered {}\n",
            self.miners,
            self.warmup_s,
            self.soak_s,
            kib(self.warmup.rss_kib),
            self.warmup.miners,
            n(self.warmup.worker_records),
            kib(self.end.rss_kib),
            self.end.miners,
            n(self.end.worker_records),
            self.rss_growth_percent
                .map_or("-".into(), |g| format!("{g:+.1} %")),
            self.max_growth_percent,
            self.logins,
            self.departures,
            self.jobs,
            self.shares_sent,
            self.shares_ok,
            self.shares_error,
            self.shares_unanswered,
        );
        for (message, count) in &self.errors {
            s.push_str(&format!("share errors: {count} × {message}\n"));
        }
        for (reason, count) in &self.failures {
            s.push_str(&format!("failed attempts: {count} × {reason}\n"));
        }
        for p in &self.problems {
            s.push_str(&format!("PROBLEM: {p}\n"));
        }
        s
    }
}

/// Counters shared by the miner tasks.
#[derive(Default)]
struct Counters {
    live: AtomicUsize,
    logins: AtomicU64,
    departures: AtomicU64,
    sent: AtomicU64,
    ok: AtomicU64,
    error: AtomicU64,
    unanswered: AtomicU64,
    errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    failures: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

struct Soak {
    opts: SoakOptions,
    pool: Arc<Ctx>,
    /// Stops the miners and the job changes; the pool stops after the miners are gone, so
    /// that every share in flight gets the pool's answer.
    stop: CancellationToken,
    /// While set, no miner leaves (memory readings).
    hold: AtomicBool,
    c: Counters,
}

/// xorshift64: each miner's lifetimes and share phases, reproducible per miner.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.next() % (span + 1))
    }
}

/// Runs the soak against the proxy at [`SoakOptions::proxy`], with the pool on `listener`
/// (the address the proxy's config names as its only pool). Stops by itself at
/// [`SoakOptions::deadline`], closing every connection it opened.
///
/// # Errors
/// The proxy does not accept connections within 15 seconds. Everything that goes wrong
/// later is in [`SoakReport::problems`].
pub async fn soak_on(opts: SoakOptions, listener: TcpListener) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(opts.miners > 0, "--miners must be at least 1");
    anyhow::ensure!(
        opts.source_ip(opts.miners - 1).is_loopback(),
        "too many miners for 127.0.0.0/8 at {} per address",
        opts.miners_per_ip
    );
    wait_for_proxy(opts.proxy).await?;
    let pool = Arc::new(Ctx::new(Options {
        miners: 0,
        jobs: 0,
        rate: 0,
        seconds: 0,
        difficulty: opts.difficulty,
        ..Options::default()
    }));
    tokio::spawn(pool_accept(pool.clone(), listener));
    let s = Arc::new(Soak {
        opts,
        pool,
        stop: CancellationToken::new(),
        hold: AtomicBool::new(false),
        c: Counters::default(),
    });
    let deadline = s.opts.deadline();
    let started = Instant::now();
    let mut report = SoakReport {
        miners: s.opts.miners,
        warmup_s: s.opts.warmup.as_secs(),
        soak_s: s.opts.soak.as_secs(),
        max_growth_percent: s.opts.max_growth * 100.0,
        ..SoakReport::default()
    };
    let jobs = tokio::spawn(jobs(s.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..s.opts.miners {
        tasks.spawn(churn(s.clone(), i));
    }
    if tokio::time::timeout(deadline, readings(&s, started, &mut report))
        .await
        .is_err()
    {
        report
            .problems
            .push(format!("deadline of {} s reached", deadline.as_secs()));
    }
    s.stop.cancel();
    // The miners see the stop, wait for their answers (at most `ANSWER_WAIT`) and close;
    // then the pool stops.
    let _ = tokio::time::timeout(ANSWER_WAIT + Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    s.pool.stop.cancel();
    report.jobs = jobs.await.unwrap_or(0);
    let c = &s.c;
    report.logins = c.logins.load(Relaxed);
    report.departures = c.departures.load(Relaxed);
    report.shares_sent = c.sent.load(Relaxed);
    report.shares_ok = c.ok.load(Relaxed);
    report.shares_error = c.error.load(Relaxed);
    report.shares_unanswered = c.unanswered.load(Relaxed);
    report.failures = c.failures.lock().map(|f| f.clone()).unwrap_or_default();
    report.errors = c.errors.lock().map(|f| f.clone()).unwrap_or_default();
    if let (Some(a), Some(b)) = (report.warmup.rss_kib, report.end.rss_kib) {
        let growth = (b as f64 - a as f64) / a.max(1) as f64;
        report.rss_growth_percent = Some(growth * 100.0);
        if growth > s.opts.max_growth {
            report.problems.push(format!(
                "RSS grew {:.1} % from {a} KiB to {b} KiB (limit {:.0} %)",
                growth * 100.0,
                s.opts.max_growth * 100.0
            ));
        }
    } else if s.opts.proxy_pid.is_some() {
        report.problems.push("no RSS reading of the proxy".into());
    }
    if report.shares_unanswered > 0 {
        report.problems.push(format!(
            "{} shares never answered",
            report.shares_unanswered
        ));
    }
    if report.shares_error > 0 {
        report.problems.push(format!(
            "{} shares answered with an error",
            report.shares_error
        ));
    }
    if s.pool.pool_closed.load(Relaxed) {
        report
            .problems
            .push("the proxy closed a pool connection during the run".into());
    }
    if let Some(pid) = s.opts.proxy_pid {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            report.problems.push(format!("proxy process {pid} is gone"));
        }
    }
    Ok(report)
}

/// The two readings, with churn between them.
async fn readings(s: &Arc<Soak>, started: Instant, report: &mut SoakReport) {
    tokio::time::sleep(s.opts.warmup).await;
    report.warmup = reading(s, started).await;
    tokio::time::sleep(s.opts.soak).await;
    report.end = reading(s, started).await;
}

/// Holds the churn until every miner is connected, settles, reads, lets the churn go on.
async fn reading(s: &Soak, started: Instant) -> Reading {
    s.hold.store(true, Relaxed);
    let until = Instant::now() + HOLD_WAIT;
    while s.c.live.load(Relaxed) < s.opts.miners && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(s.opts.settle).await;
    let rss_kib = s
        .opts
        .proxy_pid
        .and_then(|p| proc_sample(&p.to_string(), clock_ticks()))
        .map(|p| p.rss_kib);
    let r = Reading {
        at_s: started.elapsed().as_secs_f64(),
        miners: s.c.live.load(Relaxed),
        rss_kib,
        worker_records: worker_records(&s.opts).await,
    };
    s.hold.store(false, Relaxed);
    r
}

/// The proxy's worker record count from its API, if it has one.
async fn worker_records(opts: &SoakOptions) -> Option<u64> {
    let api = opts.api?;
    let mut req = reqwest::Client::new()
        .get(format!("http://{api}/1/summary"))
        .timeout(Duration::from_secs(5));
    if let Some(t) = &opts.api_token {
        req = req.bearer_auth(t);
    }
    let body: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
    body.get("workers")?.as_u64()
}

/// The pool's job changes; returns how many it pushed.
async fn jobs(s: Arc<Soak>) -> u64 {
    let mut n = 0;
    let mut tick = tokio::time::interval(s.opts.job_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            () = s.stop.cancelled() => return n,
            _ = tick.tick() => {
                n += 1;
                push_job(&s.pool, make_job(n, s.opts.difficulty));
            }
        }
    }
}

/// Miner `i`: one connection after another, each under a new worker name, until the stop.
async fn churn(s: Arc<Soak>, i: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut connection = 0u64;
    while !s.stop.is_cancelled() {
        if let Err(e) = session(&s, i, connection, &mut rng).await {
            if let Ok(mut f) = s.c.failures.lock() {
                *f.entry(e).or_default() += 1;
            }
            tokio::select! {
                () = s.stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        connection += 1;
    }
}

async fn connect(s: &Soak, i: usize, connection: u64) -> Result<LoggedIn, String> {
    let rigid = format!("soak-{i}-{connection}");
    let login = encode_pool_login(
        LOGIN_ID,
        WALLET,
        "x",
        AGENT,
        Some(&rigid),
        &[ALGO.to_string()],
    );
    connect_login(s.opts.source_ip(i), s.opts.proxy, &login).await
}

/// One connection of miner `i`: login, shares and jobs for its lifetime, answers, close.
async fn session(s: &Soak, i: usize, connection: u64, rng: &mut Rng) -> Result<(), String> {
    let mut conn = tokio::time::timeout(Duration::from_secs(30), connect(s, i, connection))
        .await
        .map_err(|_| "login timeout".to_string())??;
    s.c.logins.fetch_add(1, Relaxed);
    s.c.live.fetch_add(1, Relaxed);
    let outcome = serve(s, &mut conn, rng).await;
    s.c.live.fetch_sub(1, Relaxed);
    outcome
}

async fn serve(s: &Soak, conn: &mut LoggedIn, rng: &mut Rng) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    let mut leave_at = start + rng.between(s.opts.min_lifetime, s.opts.max_lifetime);
    let interval = s.opts.share_interval.max(Duration::from_millis(10));
    let mut next_share = start + rng.between(Duration::ZERO, interval);
    let mut outstanding: Vec<u64> = Vec::with_capacity(MAX_OUTSTANDING);
    let mut next_id = 2u64;
    let mut leaving: Option<tokio::time::Instant> = None;
    let result = s.pool.result.clone();
    loop {
        if let Some(until) = leaving {
            if outstanding.is_empty() || tokio::time::Instant::now() >= until {
                break;
            }
        }
        tokio::select! {
            () = tokio::time::sleep_until(next_share), if leaving.is_none() => {
                next_share += interval;
                if outstanding.len() < MAX_OUTSTANDING {
                    let k = u32::try_from(next_id & 0x00ff_ffff).unwrap_or(0);
                    let nonce = (u32::from(conn.slot) << 24) | k;
                    let line = encode_pool_submit(
                        next_id,
                        &conn.session,
                        &conn.job_id,
                        &encode_hex(&nonce.to_le_bytes()),
                        &result,
                        Some(ALGO),
                    );
                    conn.stream
                        .write_all(&line)
                        .await
                        .map_err(|e| format!("write: {}", e.kind()))?;
                    outstanding.push(next_id);
                    next_id += 1;
                    s.c.sent.fetch_add(1, Relaxed);
                }
            }
            () = tokio::time::sleep_until(leave_at), if leaving.is_none() => {
                if s.hold.load(Relaxed) {
                    leave_at += Duration::from_secs(1);
                } else {
                    s.c.departures.fetch_add(1, Relaxed);
                    leaving = Some(tokio::time::Instant::now() + ANSWER_WAIT);
                }
            }
            () = s.stop.cancelled(), if leaving.is_none() => {
                leaving = Some(tokio::time::Instant::now() + ANSWER_WAIT);
            }
            () = tokio::time::sleep_until(leaving.unwrap_or(start)), if leaving.is_some() => {}
            r = read_some(&mut conn.stream, &mut conn.buf) => {
                if let Err(e) = r {
                    s.c.unanswered.fetch_add(outstanding.len() as u64, Relaxed);
                    return Err(e);
                }
                while let Some(line) = conn.codec.decode(&mut conn.buf).map_err(|e| e.to_string())? {
                    match parse_pool_message(&line) {
                        Ok(PoolMessage::Job(job)) => conn.job_id = job.job_id,
                        Ok(PoolMessage::Response { id, outcome }) => {
                            if let Some(at) = outstanding.iter().position(|&o| o == id) {
                                outstanding.swap_remove(at);
                                let error = match outcome {
                                    Ok(v) if is_status_ok(&v) => None,
                                    Ok(v) => Some(v.to_string()),
                                    Err(e) => Some(e.message),
                                };
                                match error {
                                    None => s.c.ok.fetch_add(1, Relaxed),
                                    Some(message) => {
                                        if let Ok(mut m) = s.c.errors.lock() {
                                            *m.entry(message).or_default() += 1;
                                        }
                                        s.c.error.fetch_add(1, Relaxed)
                                    }
                                };
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    s.c.unanswered.fetch_add(outstanding.len() as u64, Relaxed);
    Ok(())
}

/// Runs a soak with its own pool listener on `pool_bind`.
///
/// # Errors
/// As [`soak_on`], and when `pool_bind` cannot be bound.
pub async fn soak(opts: SoakOptions, pool_bind: SocketAddr) -> anyhow::Result<SoakReport> {
    let listener = TcpListener::bind(pool_bind)
        .await
        .with_context(|| format!("binding the pool on {pool_bind}"))?;
    soak_on(opts, listener).await
}
