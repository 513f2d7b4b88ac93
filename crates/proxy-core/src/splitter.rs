//! Splitters: how miners are spread over upstream pool connections (go-proxy RFC §8, §9).
//!
//! A [`Mapper`] is one upstream connection ([`pool_client::Upstream`]) and the miners on it.
//! In NiceHash mode a mapper holds up to 256 miners, each with its own fixed nonce byte from
//! the mapper's [`NonceStorage`]; the 257th miner makes the [`Splitter`] open a new mapper.
//! In simple mode a mapper holds one miner and nothing is patched.
//!
//! Lock order: the splitter's mapper list, then a mapper's state, then a miner's state, then its
//! socket. Nothing here awaits while holding a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use nonce_split::{JobMatch, NonceStorage};
use pool_client::{FailoverOptions, Share, ShareError, Upstream, UpstreamListener, UpstreamState};
use stratum_proto::cryptonote::{encode_login_ok, JobLine};
use stratum_proto::{difficulty_to_target, Id, Job};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
use crate::events::Events;
use crate::fanout::{way_of, Fanout};
use crate::lock;
use crate::miner::{Miner, MinerPhase, SubmittedShare};
use crate::seen::SeenShares;

/// NiceHash: miners per upstream connection (one per value of the fixed byte).
pub const NICEHASH_SLOTS: usize = 256;

/// How long an empty NiceHash mapper is kept before its pool connection is closed.
pub const EMPTY_MAPPER_TTL: Duration = Duration::from_secs(60);

/// Nonces remembered per upstream job and kind (forwarded, answered locally) to refuse
/// duplicate shares: the latest 2048 of each kind always, at most 4096 (48 KB of heap at
/// most, measured after a million distinct nonces), see [`nonce_split::SeenNonces`]. An
/// upstream keeps two jobs (current and previous), so at most 4 × 4096 nonces (under
/// 200 KB), whatever its miners send.
pub const SEEN_NONCES_PER_JOB: usize = 4096;

/// The error a repeated share (same job, same nonce) is answered with; it is not forwarded.
pub const DUPLICATE_SHARE: &str = "Duplicate share";

/// Where a logged-in miner's shares go.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) mapper: Arc<Mapper>,
    /// The NiceHash fixed byte; `None` in simple mode.
    pub(crate) fixed_byte: Option<u8>,
}

/// Counts of upstream connections by state (RFC §5 `UpstreamStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamCounts {
    /// Logged in and receiving jobs.
    pub active: u64,
    /// Idle connections kept for reuse (no miners).
    pub sleep: u64,
    /// Connecting or failing.
    pub error: u64,
    /// All of them.
    pub total: u64,
}

/// A job as sent to this mapper's miners, encoded once. Shared, so that the fan-out runs
/// without the mapper's lock.
struct JobInfo {
    job: Job,
    /// The pool's difficulty for the job.
    difficulty: u64,
    /// The `job` notification at the pool's difficulty.
    line: JobLine,
    /// The `job` notification at each custom difficulty in use (RFC §14), encoded on first
    /// use.
    custom_lines: Mutex<HashMap<u64, JobLine>>,
    /// The nonces submitted for this job; ends with the job (when it leaves current and
    /// previous).
    seen: Mutex<SeenShares>,
}

impl JobInfo {
    fn new(job: Job) -> Self {
        Self {
            difficulty: job.difficulty(),
            line: JobLine::new(&job),
            job,
            custom_lines: Mutex::new(HashMap::new()),
            seen: Mutex::new(SeenShares::new(SEEN_NONCES_PER_JOB)),
        }
    }

    /// Remembers a share's nonce for this job; false for a duplicate (see [`SeenShares`]).
    fn remember(&self, nonce: [u8; 4], local: bool) -> bool {
        lock(&self.seen).remember(nonce, local)
    }

    /// Takes over the nonces seen for `old` when it is the same job again (a pool that
    /// resends a job id, e.g. with a new target): the work is the same, so are duplicates.
    fn inherit_seen(&self, old: &JobInfo) {
        if old.job.job_id == self.job.job_id && old.job.blob == self.job.blob {
            let taken =
                std::mem::replace(&mut *lock(&old.seen), SeenShares::new(SEEN_NONCES_PER_JOB));
            *lock(&self.seen) = taken;
        }
    }

    /// The job as a miner working at `difficulty` sees it (target rewritten when it is not
    /// the pool's), with the fixed byte patched.
    fn job_for(&self, difficulty: u64, fixed_byte: Option<u8>) -> Job {
        let mut j = self.job.clone();
        if difficulty != self.difficulty {
            j.target = difficulty_to_target(difficulty);
        }
        if let Some(b) = fixed_byte {
            j.blob = self.job.blob_with_fixed_byte(b);
        }
        j
    }

    /// The bytes of the `job` notification for a miner at `difficulty` with `fixed_byte`.
    fn parts_for(&self, difficulty: u64, fixed_byte: Option<u8>) -> [Bytes; 3] {
        let parts = |line: &JobLine| match fixed_byte {
            Some(b) => line.parts(b),
            None => [line.whole(), Bytes::new(), Bytes::new()],
        };
        if difficulty == self.difficulty {
            return parts(&self.line);
        }
        let mut lines = lock(&self.custom_lines);
        let line = lines.entry(difficulty).or_insert_with(|| {
            let mut j = self.job.clone();
            j.target = difficulty_to_target(difficulty);
            JobLine::new(&j)
        });
        parts(line)
    }
}

/// The difficulty a miner works at: its custom difficulty when set and below the pool's,
/// else the pool's (RFC §14: a custom difficulty above the pool's is ignored).
pub(crate) fn effective_difficulty(custom: u64, pool: u64) -> u64 {
    if custom > 0 && custom < pool {
        custom
    } else {
        pool
    }
}

struct Pending {
    miner: Arc<Miner>,
    id: Id,
    difficulty: u64,
    /// The difficulty the share's hash met (for the best-shares list).
    share_diff: u64,
    sent: Instant,
}

struct MapperState {
    storage: NonceStorage,
    /// Miner per slot; 256 entries in NiceHash mode, 1 in simple mode.
    miners: Vec<Option<Arc<Miner>>>,
    active_miners: usize,
    job: Option<Arc<JobInfo>>,
    prev: Option<Arc<JobInfo>>,
    session: u64,
    pending: std::collections::HashMap<u64, Pending>,
    next_seq: u64,
    upstream_state: UpstreamState,
    daemon: bool,
    /// `host:port` of the pool of the latest login (monitoring).
    pool: Option<String>,
    empty_since: Option<Instant>,
}

/// One upstream connection and the miners on it (RFC §8.2 `NonceMapper`, §9 `SimpleMapper`).
pub(crate) struct Mapper {
    pub(crate) id: u64,
    nicehash: bool,
    upstream: OnceLock<Upstream>,
    cancel: CancellationToken,
    config: Arc<ArcSwap<Config>>,
    events: Arc<Events>,
    fanout: Arc<Fanout>,
    state: Mutex<MapperState>,
}

impl Mapper {
    fn st(&self) -> MutexGuard<'_, MapperState> {
        lock(&self.state)
    }

    /// Puts `miner` in a free slot; false when the mapper is full.
    fn try_add(self: &Arc<Self>, miner: &Arc<Miner>) -> bool {
        let mut st = self.st();
        let fixed_byte = if self.nicehash {
            match st.storage.add(miner.id) {
                Some(b) => Some(b),
                None => return false,
            }
        } else {
            if st.active_miners > 0 {
                return false;
            }
            None
        };
        let index = usize::from(fixed_byte.unwrap_or(0));
        st.miners[index] = Some(miner.clone());
        st.active_miners += 1;
        st.empty_since = None;
        miner.state().route = Some(Route {
            mapper: self.clone(),
            fixed_byte,
        });
        if let Some(info) = st.job.as_deref() {
            let config = self.config.load();
            deliver(info, miner, fixed_byte, &extensions(&config));
        }
        true
    }

    fn remove(&self, miner: &Miner, fixed_byte: Option<u8>) {
        let mut st = self.st();
        let index = usize::from(fixed_byte.unwrap_or(0));
        let owns = st.miners[index].as_ref().is_some_and(|m| m.id == miner.id);
        if !owns {
            return;
        }
        st.miners[index] = None;
        if let Some(b) = fixed_byte {
            st.storage.remove(miner.id, b);
        }
        st.active_miners -= 1;
        if st.active_miners == 0 {
            st.empty_since = Some(Instant::now());
        }
    }

    /// The job as this miner should see it (blob patched), for `getjob`.
    pub(crate) fn job_for(&self, miner: &Miner) -> Option<Job> {
        let (fixed, custom) = {
            let st = miner.state();
            (st.route.as_ref().and_then(|r| r.fixed_byte), st.custom_diff)
        };
        let st = self.st();
        st.job
            .as_ref()
            .map(|info| info.job_for(effective_difficulty(custom, info.difficulty), fixed))
    }

    /// Checks a share against the mapper's jobs and forwards it (RFC §6.2 step 4, §8.2).
    pub(crate) fn submit(&self, miner: &Arc<Miner>, fixed_byte: Option<u8>, share: SubmittedShare) {
        let SubmittedShare {
            id,
            params: p,
            nonce,
            share_diff,
            custom_diff,
        } = share;
        // Answered first: the count may cut the miner off (see `Events::invalid`).
        let refuse = |message: &str| {
            miner.reply(&id, Err(message));
            self.events.invalid(miner, message);
        };
        let mut st = self.st();
        let (info, expired) = match st.storage.job_match(&p.job_id) {
            JobMatch::Current => (st.job.as_ref(), false),
            JobMatch::Previous => (st.prev.as_ref(), true),
            JobMatch::Unknown => (None, false),
        };
        let Some(info) = info else {
            drop(st);
            return refuse(crate::events::STALE_JOB);
        };
        if let Some(fb) = fixed_byte {
            if nonce_split::nonce_fixed_byte(nonce) != fb {
                drop(st);
                return refuse("Invalid nonce; is miner not compatible with NiceHash?");
            }
        }
        if let (Some(share_algo), Some(job_algo)) = (p.algo.as_deref(), info.job.algo.as_deref()) {
            if share_algo != job_algo {
                drop(st);
                return refuse("Incorrect algorithm");
            }
        }
        let pool_difficulty = info.difficulty;
        let difficulty = effective_difficulty(custom_diff, pool_difficulty);
        if share_diff < difficulty {
            drop(st);
            return refuse("Low difficulty share");
        }
        // A repeat of a share already answered (same job, same nonce) is refused and never
        // forwarded, local or not (issue 10 item 3).
        if !info.remember(nonce, share_diff < pool_difficulty) {
            drop(st);
            return refuse(DUPLICATE_SHARE);
        }
        if share_diff < pool_difficulty {
            // Met the miner's lowered target but not the pool's: answered here, never
            // forwarded (RFC §14).
            drop(st);
            miner.reply(&id, Ok(()));
            self.events.accept_local(miner, difficulty);
            return;
        }
        let Some(upstream) = self.upstream.get() else {
            drop(st);
            let reason = ShareError::NotConnected.to_string();
            self.events.reject(miner, &reason);
            return miner.reply(&id, Err(&reason));
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        let config = self.config.load();
        let algo = if config.algo_ext { p.algo } else { None };
        // With custom-diff-stats every share counts at the miner's difficulty, local or
        // forwarded, so hashes stay an unbiased estimate; otherwise only forwarded shares
        // count, at the pool's difficulty.
        let credited = if config.custom_diff_stats {
            difficulty
        } else {
            pool_difficulty
        };
        let share = Share {
            session: st.session,
            job_id: p.job_id,
            nonce: p.nonce,
            result: p.result,
            algo,
        };
        st.pending.insert(
            seq,
            Pending {
                miner: miner.clone(),
                id,
                difficulty: credited,
                share_diff,
                sent: Instant::now(),
            },
        );
        // Sent without the mapper's lock (the pool write may happen right here); the pending
        // entry is in place and counted in flight first, so the pool's answer always finds it.
        drop(st);
        self.events.stats.in_flight.fetch_add(1, Relaxed);
        match upstream.submit(seq, share) {
            Ok(()) => {
                if expired {
                    self.events.stats.expired.fetch_add(1, Relaxed);
                }
            }
            Err(e) => {
                self.events.stats.in_flight.fetch_sub(1, Relaxed);
                let p = self.st().pending.remove(&seq);
                if let Some(p) = p {
                    let reason = e.to_string();
                    self.events.reject(&p.miner, &reason);
                    p.miner.reply(&p.id, Err(&reason));
                }
            }
        }
    }
}

/// The extensions listed in the login reply: `algo` with algo-ext, `nicehash` in NiceHash
/// mode, and `keepalive`.
fn extensions(config: &Config) -> Vec<&'static str> {
    let mut e = Vec::with_capacity(3);
    if config.algo_ext {
        e.push("algo");
    }
    if config.mode == Mode::Nicehash {
        e.push("nicehash");
    }
    e.push("keepalive");
    e
}

/// Sends a job to one miner: the deferred login reply if it is still waiting for its first
/// job, else a `job` notification.
fn deliver(info: &JobInfo, miner: &Arc<Miner>, fixed_byte: Option<u8>, extensions: &[&str]) {
    let mut st = miner.state();
    let difficulty = effective_difficulty(st.custom_diff, info.difficulty);
    match st.phase {
        MinerPhase::WaitReady => {
            let (Some(id), Some(session)) = (st.login_id.take(), st.session) else {
                return;
            };
            st.phase = MinerPhase::Ready;
            st.diff = difficulty;
            drop(st);
            let job = info.job_for(difficulty, fixed_byte);
            let session = session.to_string();
            miner.send_line(encode_login_ok(&id, &session, Some(&job), extensions));
        }
        MinerPhase::Ready => {
            st.diff = difficulty;
            drop(st);
            miner.send(&info.parts_for(difficulty, fixed_byte));
        }
        MinerPhase::WaitLogin | MinerPhase::Closing => {}
    }
}

impl UpstreamListener for Mapper {
    fn on_job(&self, job: Job, session: u64) {
        let config = self.config.load();
        let mut job = job;
        if !config.algo_ext {
            job.algo = None;
        }
        let info = Arc::new(JobInfo::new(job));
        let exts: Arc<[&'static str]> = extensions(&config).into();
        // The miners by fan-out way (see `fanout.rs`), taken under the lock; written without
        // it, so logins and shares on this upstream go on meanwhile. A miner added after the
        // list was taken got this job when it was added.
        let ways = self.fanout.ways();
        let mut batches: Vec<Vec<(Arc<Miner>, Option<u8>)>> = vec![Vec::new(); ways];
        {
            let mut st = self.st();
            let same_pool = session == st.session;
            st.session = session;
            st.storage.set_job(&info.job.job_id, same_pool);
            let old = st.job.replace(info.clone());
            if let Some(old) = old.as_deref().filter(|_| same_pool) {
                info.inherit_seen(old);
            }
            st.prev = if same_pool { old } else { None };
            for (slot, m) in st.miners.iter().enumerate() {
                if let Some(m) = m {
                    let fixed = self.nicehash.then(|| u8::try_from(slot).unwrap_or(0));
                    batches[way_of(slot, ways)].push((m.clone(), fixed));
                }
            }
        }
        let mine = std::mem::take(&mut batches[0]);
        for (way, batch) in batches.into_iter().enumerate().skip(1) {
            if batch.is_empty() {
                continue;
            }
            let (info, exts) = (info.clone(), exts.clone());
            self.fanout.run_on(
                way,
                self.id,
                Box::new(move || {
                    for (m, fixed) in &batch {
                        deliver(&info, m, *fixed, &exts);
                    }
                }),
            );
        }
        for (m, fixed) in &mine {
            deliver(&info, m, *fixed, &exts);
        }
    }

    fn on_result(&self, seq: u64, result: Result<(), ShareError>) {
        let (p, daemon) = {
            let mut st = self.st();
            (st.pending.remove(&seq), st.daemon)
        };
        let Some(p) = p else { return };
        let stats = &self.events.stats;
        stats.in_flight.fetch_sub(1, Relaxed);
        match result {
            Ok(()) => {
                if daemon {
                    stats.blocks.fetch_add(1, Relaxed);
                }
                p.miner.reply(&p.id, Ok(()));
                self.events
                    .accept(&p.miner, p.difficulty, p.share_diff, p.sent.elapsed());
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::debug!(miner = p.miner.id, ?reason, "share rejected");
                p.miner.reply(&p.id, Err(&reason));
                let verdict =
                    matches!(&e, ShareError::Rejected(m) if !pool_client::is_session_ending(m));
                if verdict {
                    // The pool's verdict on the miner's work counts against the miner; a
                    // session-ending refusal (`Unauthenticated`, a ban) is the pool's, not its.
                    self.events.pool_rejected(&p.miner, &reason);
                } else {
                    self.events.reject(&p.miner, &reason);
                }
            }
        }
    }

    fn on_state(&self, state: UpstreamState, pool: Option<usize>) {
        let mut st = self.st();
        st.upstream_state = state;
        if state != UpstreamState::Active {
            // The session ended and its jobs with it: a share for one of them is refused
            // here at once (`Invalid job id`), never sent to the next session.
            st.storage.clear_jobs();
            st.job = None;
            st.prev = None;
        }
        if let Some(i) = pool {
            let config = self.config.load();
            st.daemon = config.pools.get(i).is_some_and(|p| p.daemon);
            st.pool = config.pools.get(i).map(|p| p.host_port().to_string());
        }
        if state != UpstreamState::Active {
            tracing::info!(mapper = self.id, ?state, "upstream state");
        }
    }
}

/// The upstream timing of a config (RFC §4 `retries`, `retry-pause`). The connect and login
/// timeout is the default 10 s, or `pool-reply-timeout` when that is shorter.
fn failover_options(config: &Config) -> FailoverOptions {
    let defaults = FailoverOptions::default();
    let reply_timeout = Duration::from_secs(config.pool_reply_timeout);
    let mut o = FailoverOptions {
        retries: config.retries,
        retry_pause: Duration::from_secs(config.retry_pause),
        reply_timeout,
        connect_timeout: defaults.connect_timeout.min(reply_timeout),
        ..defaults
    };
    if let Some(agent) = config.user_agent.as_ref().filter(|a| !a.is_empty()) {
        o.agent.clone_from(agent);
    }
    o
}

/// Spreads miners over mappers (RFC §8.1 `NonceSplitter`, §9 `SimpleSplitter`).
pub(crate) struct Splitter {
    mode: Mode,
    mappers: Mutex<Vec<Arc<Mapper>>>,
    next_mapper_id: AtomicU64,
    cancel: CancellationToken,
    config: Arc<ArcSwap<Config>>,
    events: Arc<Events>,
    pub(crate) fanout: Arc<Fanout>,
}

impl Splitter {
    /// `fanout_helpers`: threads that write jobs to miners beside the upstream tasks.
    pub(crate) fn new(
        config: Arc<ArcSwap<Config>>,
        events: Arc<Events>,
        cancel: CancellationToken,
        fanout_helpers: usize,
    ) -> Self {
        Self {
            mode: config.load().mode,
            mappers: Mutex::new(Vec::new()),
            next_mapper_id: AtomicU64::new(1),
            cancel,
            config,
            events,
            fanout: Arc::new(Fanout::new(fanout_helpers)),
        }
    }

    fn new_mapper(&self) -> Arc<Mapper> {
        let config = self.config.load();
        let id = self.next_mapper_id.fetch_add(1, Relaxed);
        let nicehash = self.mode == Mode::Nicehash;
        let slots = if nicehash { NICEHASH_SLOTS } else { 1 };
        let mapper = Arc::new(Mapper {
            id,
            nicehash,
            upstream: OnceLock::new(),
            cancel: self.cancel.child_token(),
            config: self.config.clone(),
            events: self.events.clone(),
            fanout: self.fanout.clone(),
            state: Mutex::new(MapperState {
                storage: NonceStorage::new(),
                miners: vec![None; slots],
                active_miners: 0,
                job: None,
                prev: None,
                session: 0,
                pending: Default::default(),
                next_seq: 1,
                upstream_state: UpstreamState::Connecting,
                daemon: false,
                pool: None,
                empty_since: None,
            }),
        });
        let upstream = Upstream::spawn(
            config.pools.clone(),
            failover_options(&config),
            mapper.clone(),
            mapper.cancel.clone(),
        );
        let _ = mapper.upstream.set(upstream);
        tracing::info!(mapper = id, "new upstream connection");
        mapper
    }

    /// Routes a miner that just logged in to a mapper with a free slot, opening a new
    /// upstream connection when all are full (RFC §8.1 `OnLogin`).
    ///
    /// # Errors
    /// The RFC's `"Proxy is full, try again later"` when no mapper can take the miner.
    pub(crate) fn on_login(&self, miner: &Arc<Miner>) -> Result<(), &'static str> {
        let mut mappers = lock(&self.mappers);
        let reuse = match self.mode {
            Mode::Nicehash => true,
            // Simple mode (RFC §9): an idle upstream is handed on only while `reuse-timeout`
            // keeps it and its pool connection is up.
            Mode::Simple => self.config.load().reuse_timeout > 0,
        };
        for m in mappers.iter() {
            if self.mode == Mode::Simple
                && (!reuse || m.st().upstream_state != UpstreamState::Active)
            {
                continue;
            }
            if m.try_add(miner) {
                return Ok(());
            }
        }
        let m = self.new_mapper();
        let added = m.try_add(miner);
        mappers.push(m);
        if added {
            Ok(())
        } else {
            Err("Proxy is full, try again later")
        }
    }

    /// Releases the miner's slot (RFC §8.1 `OnClose`). In simple mode without
    /// `reuse-timeout` the miner's upstream closes at once (RFC §9).
    pub(crate) fn on_close(&self, miner: &Miner) {
        let route = miner.state().route.take();
        let Some(r) = route else { return };
        r.mapper.remove(miner, r.fixed_byte);
        if self.mode == Mode::Simple && self.config.load().reuse_timeout == 0 {
            lock(&self.mappers).retain(|m| {
                let done = Arc::ptr_eq(m, &r.mapper) && m.st().active_miners == 0;
                if done {
                    m.cancel.cancel();
                }
                !done
            });
        }
    }

    /// Closes mappers that have had no miner for longer than their keep time (RFC §8.1 `GC`).
    pub(crate) fn gc(&self, now: Instant) {
        let keep = match self.mode {
            Mode::Nicehash => EMPTY_MAPPER_TTL,
            Mode::Simple => Duration::from_secs(self.config.load().reuse_timeout),
        };
        lock(&self.mappers).retain(|m| {
            let st = m.st();
            let expired = st
                .empty_since
                .is_some_and(|t| now.duration_since(t) >= keep)
                || (st.active_miners == 0 && st.upstream_state == UpstreamState::Stopped);
            drop(st);
            if expired {
                tracing::info!(mapper = m.id, "closing idle upstream connection");
                m.cancel.cancel();
            }
            !expired
        });
    }

    /// Hands a new pool list and timing to every upstream (config reload). Upstreams whose
    /// pool changed reconnect; their miners stay and get the new pool's next job.
    pub(crate) fn reconfigure_upstreams(&self, config: &Config) {
        let options = failover_options(config);
        for m in lock(&self.mappers).iter() {
            if let Some(u) = m.upstream.get() {
                u.set_pools(config.pools.clone(), options.clone());
            }
        }
    }

    /// Upstream connection counts for monitoring.
    pub(crate) fn upstream_counts(&self) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        for m in lock(&self.mappers).iter() {
            let st = m.st();
            match st.upstream_state {
                UpstreamState::Active if st.active_miners == 0 => c.sleep += 1,
                UpstreamState::Active => c.active += 1,
                _ => c.error += 1,
            }
            c.total += 1;
        }
        c
    }

    /// Every upstream connection's state, pool and load, in mapper order (monitoring).
    pub(crate) fn upstream_details(&self) -> Vec<crate::monitor::UpstreamInfo> {
        lock(&self.mappers)
            .iter()
            .map(|m| {
                let st = m.st();
                crate::monitor::UpstreamInfo {
                    id: m.id,
                    state: st.upstream_state,
                    pool: st.pool.clone(),
                    miners: st.active_miners,
                    daemon: st.daemon,
                }
            })
            .collect()
    }

    /// Number of miners per mapper, in mapper order (for tests and monitoring).
    pub(crate) fn mapper_loads(&self) -> Vec<usize> {
        lock(&self.mappers)
            .iter()
            .map(|m| m.st().active_miners)
            .collect()
    }
}
