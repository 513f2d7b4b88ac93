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
use pool_client::{
    FailoverOptions, PoolList, Share, ShareError, Upstream, UpstreamListener, UpstreamState,
};
use stratum_proto::cryptonote::{encode_login_ok, JobLine};
use stratum_proto::{difficulty_to_target, Id, Job};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
use crate::events::Events;
use crate::events::Subject;
use crate::fanout::{way_of, Fanout};
use crate::lock;
use stratum_proto::cryptonote::SubmitParams;
use stratum_session::{
    effective_difficulty, Channel, ChannelJob, Checked, JobFor, Refusal, ShareIn,
};

pub use stratum_session::NICEHASH_SLOTS;

/// How long an empty NiceHash mapper is kept before its pool connection is closed.
pub const EMPTY_MAPPER_TTL: Duration = Duration::from_secs(60);

/// The error a repeated share (same job, same nonce) is answered with; it is not forwarded.
pub const DUPLICATE_SHARE: &str = Refusal::Duplicate.message();

/// The proxy's clock as a `std` instant, for the sans-IO channel: tokio's clock, so that a
/// paused test clock drives mapper idle times and share latencies too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Where a logged-in miner's shares go.
pub(crate) struct Route<M: Downstream> {
    pub(crate) mapper: Arc<Mapper<M>>,
    /// The NiceHash fixed byte; `None` in simple mode.
    pub(crate) fixed_byte: Option<u8>,
}

impl<M: Downstream> Clone for Route<M> {
    fn clone(&self) -> Self {
        Self {
            mapper: self.mapper.clone(),
            fixed_byte: self.fixed_byte,
        }
    }
}

/// What the splitter needs of a miner connection (implemented by the driver's miner): the
/// job and route steps of its sans-IO session, and the writes of answers and jobs, each
/// straight to the miner's socket or its bounded outbox. The splitter never names the
/// miner type, so that the miner (its socket, its session) depends on the splitter and not
/// the other way round.
pub(crate) trait Downstream: Subject + Clone + Send + Sync + Sized + 'static {
    /// Routes the miner to `route` (its upstream took it).
    fn set_route(&self, route: Route<Self>);
    /// Takes the miner's route away; `None` the second time.
    fn take_route(&self) -> Option<Route<Self>>;
    /// The fixed byte of its route and its custom difficulty (0 = none).
    fn job_params(&self) -> (Option<u8>, u64);
    /// A job at the pool's difficulty for the miner's session (`Session::on_job`).
    fn on_job(&self, pool_difficulty: u64) -> JobFor;
    /// Writes one encoded line.
    fn send_line(&self, line: Vec<u8>);
    /// Writes one line given as chunks (a patched `JobLine`).
    fn send(&self, chunks: &[Bytes]);
    /// Answers request `id`: `{"status":"OK"}` or an error with the message.
    fn reply(&self, id: &Id, result: Result<(), &str>);
}

/// A submit that passed the session's own checks (RFC §6.2 steps 1–3), for the splitter.
pub(crate) struct SubmittedShare {
    /// The request id to answer under.
    pub(crate) id: Id,
    /// The submit's params as sent.
    pub(crate) params: SubmitParams,
    /// The 4 nonce bytes, blob order (little-endian).
    pub(crate) nonce: [u8; 4],
    /// The difficulty the share's `result` hash meets.
    pub(crate) share_diff: u64,
    /// The miner's custom difficulty; 0 = none (RFC §14).
    pub(crate) custom_diff: u64,
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

/// One upstream pool connection, for monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamInfo {
    /// Process-unique id of the connection (the mapper), from 1, in opening order.
    pub id: u64,
    /// Connection state.
    pub state: UpstreamState,
    /// `host:port` of the pool it last logged in to; `None` before the first login.
    pub pool: Option<String>,
    /// Miners on it now.
    pub miners: usize,
    /// The pool is a Monero daemon (`"daemon": true`).
    pub daemon: bool,
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
}

impl ChannelJob for JobInfo {
    fn job(&self) -> &Job {
        &self.job
    }
    fn difficulty(&self) -> u64 {
        self.difficulty
    }
}

impl JobInfo {
    fn new(job: Job) -> Self {
        Self {
            difficulty: job.difficulty(),
            line: JobLine::new(&job),
            job,
            custom_lines: Mutex::new(HashMap::new()),
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

/// What the driver keeps per share in flight: who to answer, and what to credit.
struct Pending<M> {
    miner: M,
    id: Id,
    difficulty: u64,
    /// The difficulty the share's hash met (for the best-shares list).
    share_diff: u64,
}

struct MapperState<M> {
    /// The protocol state: slots, jobs, duplicates, shares in flight.
    channel: Channel<M, JobInfo, Pending<M>>,
    upstream_state: UpstreamState,
    daemon: bool,
    /// `host:port` of the pool of the latest login (monitoring).
    pool: Option<String>,
}

/// One upstream connection and the miners on it (RFC §8.2 `NonceMapper`, §9 `SimpleMapper`).
pub(crate) struct Mapper<M: Downstream> {
    pub(crate) id: u64,
    upstream: OnceLock<Upstream>,
    cancel: CancellationToken,
    config: Arc<ArcSwap<Config>>,
    events: Arc<Events>,
    fanout: Arc<Fanout>,
    state: Mutex<MapperState<M>>,
}

impl<M: Downstream> Mapper<M> {
    fn st(&self) -> MutexGuard<'_, MapperState<M>> {
        lock(&self.state)
    }

    /// Puts `miner` in a free slot; false when the mapper is full.
    fn try_add(self: &Arc<Self>, miner: &M) -> bool {
        let mut st = self.st();
        let Some(fixed_byte) = st.channel.add(miner.id(), miner.clone()) else {
            return false;
        };
        miner.set_route(Route {
            mapper: self.clone(),
            fixed_byte,
        });
        if let Some(info) = st.channel.job() {
            let config = self.config.load();
            deliver(info, miner, fixed_byte, &extensions(&config));
        }
        true
    }

    fn remove(&self, miner: &M, fixed_byte: Option<u8>) {
        self.st().channel.remove(miner.id(), fixed_byte, now());
    }

    /// The job as this miner should see it (blob patched), for `getjob`.
    pub(crate) fn job_for(&self, miner: &M) -> Option<Job> {
        let (fixed, custom) = miner.job_params();
        let st = self.st();
        st.channel
            .job()
            .map(|info| info.job_for(effective_difficulty(custom, info.difficulty), fixed))
    }

    /// Checks a share against the mapper's jobs and forwards it (RFC §6.2 step 4, §8.2).
    pub(crate) fn submit(&self, miner: &M, fixed_byte: Option<u8>, share: SubmittedShare) {
        let SubmittedShare {
            id,
            params: p,
            nonce,
            share_diff,
            custom_diff,
        } = share;
        // Answered first: the count may cut the miner off (see `Events::invalid`).
        let refuse = |r: Refusal| {
            miner.reply(&id, Err(r.message()));
            self.events.invalid(miner, r);
        };
        let mut st = self.st();
        let checked = st.channel.check_share(
            fixed_byte,
            &ShareIn {
                job_id: &p.job_id,
                nonce,
                share_diff,
                algo: p.algo.as_deref(),
                custom_diff,
            },
        );
        let (seq, session, expired, difficulty, pool_difficulty) = match checked {
            Err(r) => {
                drop(st);
                return refuse(r);
            }
            Ok(Checked::Local { difficulty }) => {
                drop(st);
                miner.reply(&id, Ok(()));
                self.events.accept_local(miner, difficulty);
                return;
            }
            Ok(Checked::Forward {
                seq,
                session,
                expired,
                difficulty,
                pool_difficulty,
            }) => (seq, session, expired, difficulty, pool_difficulty),
        };
        let Some(upstream) = self.upstream.get() else {
            drop(st);
            let reason = ShareError::NotConnected.to_string();
            self.events.reject(miner, &reason);
            return miner.reply(&id, Err(&reason));
        };
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
            session,
            job_id: p.job_id,
            nonce: p.nonce,
            result: p.result,
            algo,
        };
        st.channel.add_pending(
            seq,
            Pending {
                miner: miner.clone(),
                id,
                difficulty: credited,
                share_diff,
            },
            now(),
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
                let p = self.st().channel.on_result(seq, now());
                if let Some((p, _)) = p {
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
fn deliver<M: Downstream>(info: &JobInfo, miner: &M, fixed_byte: Option<u8>, extensions: &[&str]) {
    let what = miner.on_job(info.difficulty);
    match what {
        JobFor::LoginReply {
            request_id,
            session,
            difficulty,
        } => {
            let job = info.job_for(difficulty, fixed_byte);
            let session = session.to_string();
            miner.send_line(encode_login_ok(
                &request_id,
                &session,
                Some(&job),
                extensions,
            ));
        }
        JobFor::Job { difficulty } => {
            miner.send(&info.parts_for(difficulty, fixed_byte));
        }
        JobFor::Nothing => {}
    }
}

impl<M: Downstream> UpstreamListener for Mapper<M> {
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
        let mut batches: Vec<Vec<(M, Option<u8>)>> = vec![Vec::new(); ways];
        {
            let mut st = self.st();
            st.channel.on_job(info.clone(), session);
            for (fixed, m) in st.channel.miners() {
                let slot = usize::from(fixed.unwrap_or(0));
                batches[way_of(slot, ways)].push((m.clone(), fixed));
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
            (st.channel.on_result(seq, now()), st.daemon)
        };
        let Some((p, latency)) = p else { return };
        let stats = &self.events.stats;
        stats.in_flight.fetch_sub(1, Relaxed);
        match result {
            Ok(()) => {
                if daemon {
                    stats.blocks.fetch_add(1, Relaxed);
                }
                p.miner.reply(&p.id, Ok(()));
                self.events
                    .accept(&p.miner, p.difficulty, p.share_diff, latency);
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::debug!(miner = p.miner.id(), ?reason, "share rejected");
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
            st.channel.on_session_end();
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
pub(crate) struct Splitter<M: Downstream> {
    mode: Mode,
    mappers: Mutex<Vec<Arc<Mapper<M>>>>,
    next_mapper_id: AtomicU64,
    cancel: CancellationToken,
    config: Arc<ArcSwap<Config>>,
    events: Arc<Events>,
    pub(crate) fanout: Arc<Fanout>,
    /// The pool list every upstream follows: one copy for all (simple mode has one upstream
    /// per miner).
    pools: PoolList,
}

impl<M: Downstream> Splitter<M> {
    /// `fanout_helpers`: threads that write jobs to miners beside the upstream tasks.
    pub(crate) fn new(
        config: Arc<ArcSwap<Config>>,
        events: Arc<Events>,
        cancel: CancellationToken,
        fanout_helpers: usize,
    ) -> Self {
        let pools = {
            let c = config.load();
            PoolList::new(c.pools.clone(), failover_options(&c))
        };
        Self {
            pools,
            mode: config.load().mode,
            mappers: Mutex::new(Vec::new()),
            next_mapper_id: AtomicU64::new(1),
            cancel,
            config,
            events,
            fanout: Arc::new(Fanout::new(fanout_helpers)),
        }
    }

    fn new_mapper(&self) -> Arc<Mapper<M>> {
        let id = self.next_mapper_id.fetch_add(1, Relaxed);
        let nicehash = self.mode == Mode::Nicehash;
        let mapper = Arc::new(Mapper {
            id,
            upstream: OnceLock::new(),
            cancel: self.cancel.child_token(),
            config: self.config.clone(),
            events: self.events.clone(),
            fanout: self.fanout.clone(),
            state: Mutex::new(MapperState {
                channel: Channel::new(nicehash),
                upstream_state: UpstreamState::Connecting,
                daemon: false,
                pool: None,
            }),
        });
        let upstream = Upstream::spawn_on(&self.pools, mapper.clone(), mapper.cancel.clone());
        let _ = mapper.upstream.set(upstream);
        tracing::info!(mapper = id, "new upstream connection");
        mapper
    }

    /// Routes a miner that just logged in to a mapper with a free slot, opening a new
    /// upstream connection when all are full (RFC §8.1 `OnLogin`).
    ///
    /// # Errors
    /// [`Refusal::ProxyFull`] when no mapper can take the miner.
    pub(crate) fn on_login(&self, miner: &M) -> Result<(), Refusal> {
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
            Err(Refusal::ProxyFull)
        }
    }

    /// Releases the miner's slot (RFC §8.1 `OnClose`). In simple mode without
    /// `reuse-timeout` the miner's upstream closes at once (RFC §9).
    pub(crate) fn on_close(&self, miner: &M) {
        let route = miner.take_route();
        let Some(r) = route else { return };
        r.mapper.remove(miner, r.fixed_byte);
        if self.mode == Mode::Simple && self.config.load().reuse_timeout == 0 {
            lock(&self.mappers).retain(|m| {
                let done = Arc::ptr_eq(m, &r.mapper) && m.st().channel.miner_count() == 0;
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
            let expired = st.channel.idle_for(keep, now)
                || (st.channel.miner_count() == 0 && st.upstream_state == UpstreamState::Stopped);
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
        self.pools
            .set(config.pools.clone(), failover_options(config));
    }

    /// Upstream connection counts for monitoring.
    pub(crate) fn upstream_counts(&self) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        for m in lock(&self.mappers).iter() {
            let st = m.st();
            match st.upstream_state {
                UpstreamState::Active if st.channel.miner_count() == 0 => c.sleep += 1,
                UpstreamState::Active => c.active += 1,
                _ => c.error += 1,
            }
            c.total += 1;
        }
        c
    }

    /// Every upstream connection's state, pool and load, in mapper order (monitoring).
    pub(crate) fn upstream_details(&self) -> Vec<UpstreamInfo> {
        lock(&self.mappers)
            .iter()
            .map(|m| {
                let st = m.st();
                UpstreamInfo {
                    id: m.id,
                    state: st.upstream_state,
                    pool: st.pool.clone(),
                    miners: st.channel.miner_count(),
                    daemon: st.daemon,
                }
            })
            .collect()
    }

    /// Number of miners per mapper, in mapper order (for tests and monitoring).
    pub(crate) fn mapper_loads(&self) -> Vec<usize> {
        lock(&self.mappers)
            .iter()
            .map(|m| m.st().channel.miner_count())
            .collect()
    }
}
