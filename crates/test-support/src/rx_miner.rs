//! A CryptoNote stratum miner that hashes for real: RandomX in light mode via `randomx-rs`.
//!
//! [`run_rx_miner`] logs in to a proxy or pool over TCP, mines every job it gets like xmrig in
//! NiceHash mode, submits the shares that meet the job's target and counts the answers.
//! [`solve`] mines one job synchronously until a share is found or a deadline passes, for
//! tests that drive an upstream directly. [`RxHasher`] is the hash function itself.
//!
//! Hashing blob and nonce:
//!
//! | blob bytes | meaning | this miner |
//! |---|---|---|
//! | 39..42 | the low 24 bits of the 4-byte little-endian nonce | rolled, from a random start |
//! | 42 | the nonce's top byte: the proxy's NiceHash fixed byte | kept as the job gave it |
//!
//! A hash is a share when `result_difficulty(hex(hash)) >= difficulty(job.target)`, the check
//! pools and the proxy make. Light mode needs a 256 MiB cache per hashing thread, built from
//! the job's `seed_hash` (about 0.6 s, redone only when the seed changes), and hashes at about
//! 35 H/s per thread on the test machine.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use randomx_rs::{RandomXCache, RandomXFlag, RandomXVM};
use serde_json::json;
use stratum_proto::cryptonote::{is_status_ok, parse_pool_message, PoolLoginResult, PoolMessage};
use stratum_proto::job::{decode_hex, encode_hex, MIN_BLOB_BYTES, NONCE_OFFSET};
use stratum_proto::{result_difficulty, Job, LineCodec, NICEHASH_BYTE_OFFSET};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

/// The `agent` this miner logs in with.
pub const AGENT: &str = "rx-test-miner/0.1";
/// The request id of the login; submits count up from 2.
const LOGIN_ID: u64 = 1;
/// How long the login answer may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for outstanding submit answers after mining stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Found shares waiting to be written; more are dropped (never at 35 H/s).
const FOUND_QUEUE: usize = 256;
/// The nonce bits a NiceHash miner rolls: all but the top byte.
const LOW_NONCE_MASK: u32 = 0x00ff_ffff;

/// RandomX light mode: one cache for one seed and one VM over it.
///
/// Not `Send`: the `randomx-rs` handles hold raw pointers. Make one in the thread that hashes.
#[derive(Debug)]
pub struct RxHasher {
    flags: RandomXFlag,
    seed: Vec<u8>,
    vm: RandomXVM,
}

impl RxHasher {
    /// A hasher keyed by `seed` (the 32 bytes of a job's `seed_hash`): builds the 256 MiB
    /// cache, about 0.6 s.
    ///
    /// # Errors
    /// `seed` is empty, or RandomX cannot allocate the cache or the VM.
    pub fn new(seed: &[u8]) -> anyhow::Result<Self> {
        let mut flags = RandomXFlag::get_recommended_flags();
        // Light mode only: the full 2 GiB dataset is never built.
        flags.remove(RandomXFlag::FLAG_FULL_MEM);
        let cache = RandomXCache::new(flags, seed).context("building the RandomX cache")?;
        let vm = RandomXVM::new(flags, Some(cache), None).context("creating the RandomX VM")?;
        Ok(Self {
            flags,
            seed: seed.to_vec(),
            vm,
        })
    }

    /// The seed the cache was built from.
    pub fn seed(&self) -> &[u8] {
        &self.seed
    }

    /// Rebuilds the cache for `seed` unless it is the current one.
    ///
    /// # Errors
    /// As [`RxHasher::new`].
    pub fn set_seed(&mut self, seed: &[u8]) -> anyhow::Result<()> {
        if seed != self.seed.as_slice() {
            let cache =
                RandomXCache::new(self.flags, seed).context("building the RandomX cache")?;
            self.vm
                .reinit_cache(cache)
                .context("re-keying the RandomX VM")?;
            self.seed = seed.to_vec();
        }
        Ok(())
    }

    /// The 32-byte RandomX hash of `blob`.
    ///
    /// # Errors
    /// `blob` is empty, or RandomX fails.
    pub fn hash(&self, blob: &[u8]) -> anyhow::Result<[u8; 32]> {
        let hash = self.vm.calculate_hash(blob).context("RandomX hash")?;
        hash.try_into()
            .map_err(|h: Vec<u8>| anyhow!("RandomX hash of {} bytes", h.len()))
    }
}

/// A share found by [`solve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    /// 8 hex chars: blob bytes 39..43, as sent in a submit's `nonce`.
    pub nonce: String,
    /// 64 hex chars: the RandomX hash, as sent in a submit's `result`.
    pub result: String,
    /// Hashes computed to find it.
    pub hashes: u64,
}

/// A job decoded for hashing.
#[derive(Debug)]
struct WorkUnit {
    job_id: String,
    blob: Vec<u8>,
    seed: Vec<u8>,
    difficulty: u64,
}

impl WorkUnit {
    fn from_job(job: &Job) -> anyhow::Result<Self> {
        job.validate().context("job cannot be mined")?;
        let blob = decode_hex(&job.blob).ok_or_else(|| anyhow!("job blob is not hex"))?;
        if blob.len() < MIN_BLOB_BYTES {
            bail!("job blob shorter than {MIN_BLOB_BYTES} bytes");
        }
        let seed = job
            .seed_hash
            .as_deref()
            .and_then(decode_hex)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("job {} has no hex seed_hash for RandomX", job.job_id))?;
        Ok(Self {
            job_id: job.job_id.clone(),
            blob,
            seed,
            difficulty: job.difficulty(),
        })
    }
}

/// Writes `nonce` at blob bytes 39..43: all four bytes, or only the low three when `keep_top`
/// (the NiceHash fixed byte at 42 stays).
fn write_nonce(blob: &mut [u8], nonce: u32, keep_top: bool) {
    let bytes = nonce.to_le_bytes();
    let n = if keep_top { 3 } else { 4 };
    blob[NONCE_OFFSET..NONCE_OFFSET + n].copy_from_slice(&bytes[..n]);
}

/// The share test: the hash's difficulty (from its last 8 bytes) is at least `difficulty`.
fn is_share(hash: &[u8; 32], difficulty: u64) -> bool {
    result_difficulty(&encode_hex(hash)).is_some_and(|d| d >= difficulty)
}

/// A random-enough `u64` without a `rand` dependency (std's per-process random hash keys).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.finish()
}

/// Mines `job` in the calling thread until a hash meets the job's target or `deadline`
/// passes (`Ok(None)`).
///
/// With `fixed_byte`, blob byte 42 is set to it and only the low 24 bits of the nonce roll,
/// as a miner behind a NiceHash proxy does; without, all 32 bits roll. The nonce starts at a
/// random value. Blocks for the RandomX cache build (about 0.6 s) plus the hashing (about
/// `difficulty / 35` s on average): call it from `spawn_blocking` in async code.
///
/// # Errors
/// The job is invalid, has no hex `seed_hash`, or RandomX fails.
pub fn solve(
    job: &Job,
    fixed_byte: Option<u8>,
    deadline: std::time::Instant,
) -> anyhow::Result<Option<Solution>> {
    let unit = WorkUnit::from_job(job)?;
    let hasher = RxHasher::new(&unit.seed)?;
    let mut blob = unit.blob;
    if let Some(b) = fixed_byte {
        blob[NICEHASH_BYTE_OFFSET] = b;
    }
    let (mask, keep_top) = match fixed_byte {
        Some(_) => (LOW_NONCE_MASK, true),
        None => (u32::MAX, false),
    };
    // Truncation intended: any 32 random bits will do.
    let mut nonce = random_u64() as u32 & mask;
    let mut hashes = 0;
    while std::time::Instant::now() < deadline {
        write_nonce(&mut blob, nonce, keep_top);
        let hash = hasher.hash(&blob)?;
        hashes += 1;
        if is_share(&hash, unit.difficulty) {
            return Ok(Some(Solution {
                nonce: encode_hex(&blob[NONCE_OFFSET..NONCE_OFFSET + 4]),
                result: encode_hex(&hash),
                hashes,
            }));
        }
        nonce = nonce.wrapping_add(1) & mask;
    }
    Ok(None)
}

/// What [`run_rx_miner`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxMinerConfig {
    /// The proxy or pool to connect to.
    pub addr: SocketAddr,
    /// The login's `login` (wallet address, maybe with `+difficulty`).
    pub login: String,
    /// The login's `pass`.
    pub pass: String,
    /// The login's `rigid`, when set.
    pub rig_id: Option<String>,
    /// Hashing threads (at least 1 is used); each builds its own 256 MiB cache.
    pub threads: usize,
    /// How long to mine; then outstanding answers get up to 3 s more.
    pub run_for: Duration,
    /// Stops mining early when cancelled (outstanding answers still get their 3 s).
    pub stop: Option<tokio_util::sync::CancellationToken>,
}

impl RxMinerConfig {
    /// One thread mining for 10 s as `login` with pass `x` and no rig id.
    pub fn new(addr: SocketAddr, login: impl Into<String>) -> Self {
        Self {
            addr,
            login: login.into(),
            pass: "x".into(),
            rig_id: None,
            threads: 1,
            run_for: Duration::from_secs(10),
            stop: None,
        }
    }
}

/// What happened during [`run_rx_miner`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxMinerReport {
    /// The session id from the login result.
    pub session_id: String,
    /// Submits written.
    pub shares_sent: u64,
    /// Submits answered `{"status":"OK"}`.
    pub accepted: u64,
    /// Submits answered with an error (or a status other than OK).
    pub rejected: u64,
    /// Submits without an answer when the miner stopped.
    pub unanswered: u64,
    /// Hashes computed, all threads.
    pub hashes: u64,
    /// Jobs received (the login's and each `job` notification), valid or not.
    pub jobs: u64,
    /// The error messages of rejected submits, in order.
    pub reject_messages: Vec<String>,
    /// Lines that were not JSON-RPC, or answers to ids never used.
    pub odd_lines: u64,
    /// The connection ended (or broke) before `run_for` was over.
    pub closed_early: bool,
}

/// A share found by a hashing thread.
#[derive(Debug)]
struct Found {
    job_id: String,
    nonce: String,
    result: String,
}

/// What the hashing threads share with the connection task.
#[derive(Debug, Default)]
struct Shared {
    /// The job to mine and its generation number.
    job: Mutex<Option<(u64, Arc<WorkUnit>)>>,
    /// Bumped with every new job; threads drop their work when it moves.
    generation: AtomicU64,
    stop: AtomicBool,
    hashes: AtomicU64,
}

impl Shared {
    fn set_job(&self, unit: WorkUnit) {
        let mut slot = self.job.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::Acquire) + 1;
        *slot = Some((generation, Arc::new(unit)));
        self.generation.store(generation, Ordering::Release);
    }

    fn current(&self) -> Option<(u64, Arc<WorkUnit>)> {
        self.job.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A hashing thread: mines the current job until a newer one arrives or `stop` is set.
fn hash_loop(shared: &Shared, found: &mpsc::Sender<Found>) {
    let mut hasher: Option<RxHasher> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some((generation, unit)) = shared.current() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let keyed = match hasher.as_mut() {
            Some(h) => h.set_seed(&unit.seed),
            None => RxHasher::new(&unit.seed).map(|h| {
                hasher = Some(h);
            }),
        };
        let Some(h) = hasher.as_ref().filter(|_| keyed.is_ok()) else {
            tracing::warn!("rx miner cannot hash job {}: {keyed:?}", unit.job_id);
            // Wait for another job.
            while !shared.stop.load(Ordering::Relaxed)
                && shared.generation.load(Ordering::Acquire) == generation
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        };
        let mut blob = unit.blob.clone();
        // Truncation intended: any 24 random bits will do.
        let mut nonce = random_u64() as u32 & LOW_NONCE_MASK;
        while !shared.stop.load(Ordering::Relaxed)
            && shared.generation.load(Ordering::Acquire) == generation
        {
            write_nonce(&mut blob, nonce, true);
            let Ok(hash) = h.hash(&blob) else { break };
            shared.hashes.fetch_add(1, Ordering::Relaxed);
            if is_share(&hash, unit.difficulty) {
                let share = Found {
                    job_id: unit.job_id.clone(),
                    nonce: encode_hex(&blob[NONCE_OFFSET..NONCE_OFFSET + 4]),
                    result: encode_hex(&hash),
                };
                if let Err(mpsc::error::TrySendError::Closed(_)) = found.try_send(share) {
                    return;
                }
            }
            nonce = nonce.wrapping_add(1) & LOW_NONCE_MASK;
        }
    }
}

/// The connection task's bookkeeping.
struct Tally {
    report: RxMinerReport,
    /// Ids of submits not answered yet.
    pending: HashSet<u64>,
    shared: Arc<Shared>,
}

impl Tally {
    fn on_job(&mut self, job: &Job) {
        self.report.jobs += 1;
        match WorkUnit::from_job(job) {
            Ok(unit) => self.shared.set_job(unit),
            Err(e) => tracing::warn!("rx miner ignores job {}: {e:#}", job.job_id),
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        match parse_pool_message(line) {
            Ok(PoolMessage::Job(job)) => self.on_job(&job),
            Ok(PoolMessage::Response { id, outcome }) if self.pending.remove(&id) => {
                match outcome {
                    Ok(v) if is_status_ok(&v) => self.report.accepted += 1,
                    Ok(v) => {
                        self.report.rejected += 1;
                        self.report.reject_messages.push(v.to_string());
                    }
                    Err(e) => {
                        self.report.rejected += 1;
                        self.report.reject_messages.push(e.message);
                    }
                }
            }
            Ok(PoolMessage::Other(_)) => {}
            Ok(PoolMessage::Response { .. }) | Err(_) => self.report.odd_lines += 1,
        }
    }
}

/// Connects to `cfg.addr`, logs in, mines with RandomX light mode for `cfg.run_for`, then
/// waits up to 3 s for outstanding answers and reports.
///
/// The login is `{"id":1,"jsonrpc":"2.0","method":"login","params":{"login","pass",
/// "agent":"rx-test-miner/0.1","algo":["rx/0"][,"rigid"]}}`; each share is a `submit` with
/// the session id, job id, 8-hex nonce and 64-hex result, under ids 2, 3, .. . Lines that are
/// not JSON-RPC are counted, never fatal. A connection the peer closes ends mining early (see
/// [`RxMinerReport::closed_early`]).
///
/// # Errors
/// The TCP connect fails, the login is refused or not answered within 30 s, or a hashing
/// thread cannot be started.
pub async fn run_rx_miner(cfg: RxMinerConfig) -> anyhow::Result<RxMinerReport> {
    let stream = TcpStream::connect(cfg.addr)
        .await
        .with_context(|| format!("connecting to {}", cfg.addr))?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut lines = FramedRead::new(rd, LineCodec::default());

    let mut params = json!({
        "login": cfg.login, "pass": cfg.pass, "agent": AGENT, "algo": ["rx/0"],
    });
    if let Some(rig) = &cfg.rig_id {
        params["rigid"] = json!(rig);
    }
    let login = json!({"id": LOGIN_ID, "jsonrpc": "2.0", "method": "login", "params": params});
    let mut line = serde_json::to_vec(&login)?;
    line.push(b'\n');
    wr.write_all(&line).await.context("sending login")?;

    let shared = Arc::new(Shared::default());
    let mut tally = Tally {
        report: RxMinerReport::default(),
        pending: HashSet::new(),
        shared: shared.clone(),
    };

    // The login answer; jobs sent before it are taken too.
    let login_result = tokio::time::timeout(LOGIN_TIMEOUT, async {
        loop {
            let Some(line) = lines.next().await else {
                bail!("connection closed before the login answer");
            };
            let line = line.context("reading the login answer")?;
            match parse_pool_message(&line) {
                Ok(PoolMessage::Response {
                    id: LOGIN_ID,
                    outcome,
                }) => {
                    let value = outcome
                        .map_err(|e| anyhow!("login refused: {} ({})", e.message, e.code))?;
                    return PoolLoginResult::from_value(value.clone())
                        .ok_or_else(|| anyhow!("login answer without a session id: {value}"));
                }
                Ok(PoolMessage::Job(job)) => tally.on_job(&job),
                _ => tally.report.odd_lines += 1,
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no login answer within {LOGIN_TIMEOUT:?}"))??;
    tally.report.session_id = login_result.id.clone();
    if let Some(job) = &login_result.job {
        tally.on_job(job);
    }

    let (found_tx, mut found_rx) = mpsc::channel(FOUND_QUEUE);
    let mut threads = Vec::new();
    for i in 0..cfg.threads.max(1) {
        let for_thread = shared.clone();
        let found_tx = found_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rx-miner-{i}"))
            .spawn(move || hash_loop(&for_thread, &found_tx));
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                stop_threads(&shared, threads).await;
                return Err(anyhow!(e).context("starting a hashing thread"));
            }
        }
    }
    drop(found_tx);

    let mut next_id = LOGIN_ID + 1;
    let deadline = tokio::time::sleep(cfg.run_for);
    tokio::pin!(deadline);
    let stop = cfg.stop.clone().unwrap_or_default();
    loop {
        tokio::select! {
            () = &mut deadline => break,
            () = stop.cancelled() => break,
            line = lines.next() => match line {
                Some(Ok(line)) => tally.on_line(&line),
                Some(Err(e)) => {
                    tracing::warn!("rx miner connection broke: {e}");
                    tally.report.closed_early = true;
                    break;
                }
                None => {
                    tally.report.closed_early = true;
                    break;
                }
            },
            Some(share) = found_rx.recv() => {
                let id = next_id;
                next_id += 1;
                let submit = json!({"id": id, "jsonrpc": "2.0", "method": "submit", "params": {
                    "id": tally.report.session_id, "job_id": share.job_id,
                    "nonce": share.nonce, "result": share.result,
                }});
                let mut line = serde_json::to_vec(&submit)?;
                line.push(b'\n');
                if let Err(e) = wr.write_all(&line).await {
                    tracing::warn!("rx miner cannot write: {e}");
                    tally.report.closed_early = true;
                    break;
                }
                tally.report.shares_sent += 1;
                tally.pending.insert(id);
            }
        }
    }

    shared.stop.store(true, Ordering::Relaxed);
    drop(found_rx);
    if !tally.report.closed_early && !tally.pending.is_empty() {
        let drain = async {
            while !tally.pending.is_empty() {
                match lines.next().await {
                    Some(Ok(line)) => tally.on_line(&line),
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    stop_threads(&shared, threads).await;
    let mut report = tally.report;
    report.unanswered = tally.pending.len() as u64;
    report.hashes = shared.hashes.load(Ordering::Relaxed);
    Ok(report)
}

/// Stops the hashing threads and waits for them (at most one hash or cache build each).
async fn stop_threads(shared: &Shared, threads: Vec<std::thread::JoinHandle<()>>) {
    shared.stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3";
    const BLOB: &str = "101095b886d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e300000000cf8cb7ba0eda1cf48194ea4cc83e84c23a72e9eece988f3f41ffc80e9e9888f301";

    fn job(difficulty: u64) -> Job {
        Job {
            blob: BLOB.into(),
            job_id: "j1".into(),
            target: stratum_proto::difficulty_to_target(difficulty),
            algo: Some("rx/0".into()),
            height: Some(1),
            seed_hash: Some(SEED.into()),
        }
    }

    #[test]
    fn nonce_bytes_land_at_39_and_keep_the_fixed_byte() {
        let mut blob = vec![0xeeu8; 76];
        write_nonce(&mut blob, 0xaabb_ccdd, true);
        assert_eq!(&blob[38..44], &[0xee, 0xdd, 0xcc, 0xbb, 0xee, 0xee]);
        write_nonce(&mut blob, 0xaabb_ccdd, false);
        assert_eq!(&blob[39..43], &[0xdd, 0xcc, 0xbb, 0xaa]);
    }

    #[test]
    fn jobs_without_a_seed_are_refused() {
        let mut j = job(10);
        j.seed_hash = None;
        assert!(WorkUnit::from_job(&j).is_err());
        j.seed_hash = Some("zz".into());
        assert!(WorkUnit::from_job(&j).is_err());
        assert!(WorkUnit::from_job(&job(10)).is_ok());
    }

    #[test]
    fn solve_finds_a_share_that_checks_out() {
        // Difficulty 2: about two hashes, plus the cache build.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let j = job(2);
        let s = solve(&j, Some(0x5a), deadline).unwrap().expect("a share");
        assert_eq!(s.nonce.len(), 8);
        assert_eq!(
            &s.nonce[6..8],
            "5a",
            "the fixed byte is the nonce's top byte"
        );
        assert!(result_difficulty(&s.result).unwrap() >= 2);
        // Recompute the hash independently of `solve`.
        let mut blob = decode_hex(BLOB).unwrap();
        blob[39..43].copy_from_slice(&decode_hex(&s.nonce).unwrap());
        let hasher = RxHasher::new(&decode_hex(SEED).unwrap()).unwrap();
        assert_eq!(encode_hex(&hasher.hash(&blob).unwrap()), s.result);
    }

    /// A scripted pool: answers the login with a job whose fixed byte is 0x7b, sends a line
    /// that is not JSON, accepts the first share, rejects the second and sends a new job,
    /// and leaves later shares unanswered. Returns the nonces it got.
    async fn scripted_pool(listener: tokio::net::TcpListener) -> Vec<String> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let (stream, _) = listener.accept().await.unwrap();
        let (rd, mut wr) = stream.into_split();
        let mut lines = BufReader::new(rd).lines();
        let login: serde_json::Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(login["method"], "login");
        assert_eq!(login["params"]["agent"], AGENT);
        assert_eq!(login["params"]["rigid"], "rig-1");
        let mut first = job(5);
        first.blob = first.blob_with_fixed_byte(0x7b);
        let reply = stratum_proto::cryptonote::encode_login_ok(
            &login["id"],
            "sess-1",
            Some(&first),
            &["nicehash"],
        );
        wr.write_all(&reply).await.unwrap();
        wr.write_all(b"this is not json\n").await.unwrap();
        let mut nonces = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let submit: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(submit["method"], "submit");
            assert_eq!(submit["params"]["id"], "sess-1");
            let result = submit["params"]["result"].as_str().unwrap();
            assert!(result_difficulty(result).unwrap() >= 5, "{result}");
            nonces.push(submit["params"]["nonce"].as_str().unwrap().to_string());
            let id = &submit["id"];
            match nonces.len() {
                1 => {
                    let ok = stratum_proto::cryptonote::encode_status(id, "OK");
                    wr.write_all(&ok).await.unwrap();
                }
                2 => {
                    let err = stratum_proto::cryptonote::encode_error(id, "Low difficulty share");
                    wr.write_all(&err).await.unwrap();
                    let mut second = first.clone();
                    second.job_id = "j2".into();
                    let note = stratum_proto::cryptonote::encode_job_notification(&second);
                    wr.write_all(&note).await.unwrap();
                }
                _ => {}
            }
        }
        nonces
    }

    #[tokio::test]
    async fn miner_logs_in_mines_and_counts_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = tokio::spawn(scripted_pool(listener));
        let mut cfg = RxMinerConfig::new(addr, "wallet");
        cfg.rig_id = Some("rig-1".into());
        cfg.run_for = Duration::from_secs(12);
        let report = tokio::time::timeout(Duration::from_secs(60), run_rx_miner(cfg))
            .await
            .unwrap()
            .unwrap();
        let nonces = tokio::time::timeout(Duration::from_secs(10), pool)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.session_id, "sess-1");
        assert!(report.shares_sent >= 3, "{report:?}");
        assert_eq!(report.shares_sent, nonces.len() as u64);
        assert_eq!(report.accepted, 1, "{report:?}");
        assert_eq!(report.rejected, 1, "{report:?}");
        assert_eq!(
            report.reject_messages,
            vec!["Low difficulty share".to_string()]
        );
        assert_eq!(report.unanswered, report.shares_sent - 2);
        assert_eq!(report.jobs, 2);
        assert_eq!(report.odd_lines, 1);
        assert!(!report.closed_early);
        assert!(report.hashes >= report.shares_sent);
        for nonce in &nonces {
            assert_eq!(&nonce[6..8], "7b", "the fixed byte is kept: {nonce}");
        }
    }

    #[test]
    fn solve_gives_up_at_the_deadline() {
        let deadline = std::time::Instant::now();
        assert_eq!(solve(&job(u64::MAX), None, deadline).unwrap(), None);
    }
}
