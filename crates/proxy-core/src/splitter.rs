//! Splitters: how miners are spread over upstream pool connections (go-proxy RFC §8, §9),
//! for any stratum family (`splitter/family.rs` says what a family provides).
//!
//! A [`Mapper`] is one upstream connection (the family's upstream client) and the miners on
//! it, its protocol state a family's [`UpstreamChannel`]. In NiceHash mode a mapper holds as
//! many miners as its channel has slots (CryptoNote: 256, each with its own fixed nonce
//! byte); the next miner makes the [`Splitter`] open a new mapper. In simple mode a mapper
//! holds one miner.
//!
//! Nothing here knows a family's wire format: jobs are delivered, answers written and the
//! upstream started through the [`Family`] trait, monomorphised (no dynamic call on the share
//! path).
//!
//! The once-a-second GC looks only at the mappers listed when they became empty or their
//! upstream stopped (`splitter/gc.rs`), never at every mapper.
//!
//! Lock order: the splitter's mapper list, then a mapper's state, then a miner's state, then its
//! socket; the GC list is taken last (under a mapper's state at most). Nothing here awaits
//! while holding a lock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use pool_client::{FailoverOptions, UpstreamState};
use stratum_proto::Id;
use stratum_session::{MinerSession, Refusal, UpstreamChannel};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
use crate::events::Events;
use crate::events::Subject;
use crate::fanout::{way_of, Fanout};
use crate::lock;

mod family;
mod gc;
pub(crate) use family::Family;
use gc::{GcList, Listed, GC_BUDGET};

/// How long an empty NiceHash mapper is kept before its pool connection is closed.
pub const EMPTY_MAPPER_TTL: Duration = Duration::from_secs(60);

/// The proxy's clock as a `std` instant, for the sans-IO channel: tokio's clock, so that a
/// paused test clock drives mapper idle times and share latencies too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Where a logged-in miner's shares go: its mapper and its slot there.
pub(crate) struct Route<F: Family, M: Downstream<F>> {
    pub(crate) mapper: Arc<Mapper<F, M>>,
    /// The miner's part of the upstream's search space (CryptoNote: the NiceHash fixed
    /// byte, `None` in simple mode).
    pub(crate) slot: F::Slot,
}

impl<F: Family, M: Downstream<F>> Clone for Route<F, M> {
    fn clone(&self) -> Self {
        Self {
            mapper: self.mapper.clone(),
            slot: self.slot,
        }
    }
}

/// What the splitter needs of a miner connection (implemented by the driver's miner): its
/// family's session and its route, under the miner's own lock, and the writes of lines,
/// each straight to the miner's socket or its bounded outbox. The splitter never names the
/// miner type, so that the miner (its socket, its session) depends on the splitter and not
/// the other way round.
pub(crate) trait Downstream<F: Family>:
    Subject + Clone + Send + Sync + Sized + 'static
{
    /// Runs `f` on the miner's session and route, under the miner's lock (keep it short: no
    /// other lock but a miner's socket may be taken in it).
    fn with_session<T>(
        &self,
        f: impl FnOnce(&mut F::Session, &mut Option<Route<F, Self>>) -> T,
    ) -> T;
    /// Writes one encoded line.
    fn send_line(&self, line: Vec<u8>);
    /// Writes one line given as chunks (a job line patched for the miner).
    fn send(&self, chunks: &[Bytes]);
    /// Writes `head` (whole lines, borrowed: e.g. answers encoded into a reused buffer) and
    /// then `chunks`, in one write where the miner's socket allows. The default (for test
    /// doubles; the driver's miner overrides it) copies `head` and writes the two apart.
    fn send_parts(&self, head: &[u8], chunks: &[Bytes]) {
        if !head.is_empty() {
            self.send_line(head.to_vec());
        }
        if !chunks.is_empty() {
            self.send(chunks);
        }
    }

    /// Routes the miner to `route` (its upstream took it).
    fn set_route(&self, route: Route<F, Self>) {
        self.with_session(|s, r| {
            s.set_routed(true);
            *r = Some(route);
        });
    }

    /// Takes the miner's route away; `None` the second time.
    fn take_route(&self) -> Option<Route<F, Self>> {
        self.with_session(|s, r| {
            let route = r.take();
            if route.is_some() {
                s.set_routed(false);
            }
            route
        })
    }
}

/// What the driver keeps per share in flight: who to answer, and what to credit.
pub(crate) struct Pending<M> {
    /// The miner to answer.
    pub(crate) miner: M,
    /// The request id to answer under.
    pub(crate) id: Id,
    /// The difficulty credited when the pool accepts it.
    pub(crate) difficulty: u64,
    /// The difficulty the share's hash met (for the best-shares list).
    pub(crate) share_diff: u64,
}

/// An upstream's verdict on a forwarded share, in the driver's terms.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verdict<'a> {
    /// Accepted.
    Accepted,
    /// Refused or not delivered, with the text the miner is answered with. `miner_fault`:
    /// the pool judged the miner's work (counted against the miner); otherwise the pool, its
    /// connection or the proxy failed.
    Refused {
        /// The answer's message.
        reason: &'a str,
        /// The pool's own error code, when it gave one (SV1: kept for the miner's answer,
        /// [`Family::reply_refused`]).
        code: Option<i64>,
        /// The pool's verdict on the miner's work.
        miner_fault: bool,
    },
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
    /// The pool is a daemon (`"daemon": true`: a Monero daemon, or a Bitcoin node for
    /// Stratum V1 solo mining).
    pub daemon: bool,
    /// The stratum family of the connection (its driver's).
    pub protocol: crate::config::Protocol,
}

pub(crate) struct MapperState<F: Family, M: Downstream<F>> {
    /// The protocol state: slots, jobs, duplicates, shares in flight.
    pub(crate) channel: F::Channel<M>,
    upstream_state: UpstreamState,
    daemon: bool,
    /// `host:port` of the pool of the latest login (monitoring).
    pool: Option<String>,
    /// Listed for the GC as idle, as stopped (`gc.rs`): once each at most.
    gc_idle: bool,
    gc_stopped: bool,
}

/// One upstream connection and the miners on it (RFC §8.2 `NonceMapper`, §9 `SimpleMapper`).
pub(crate) struct Mapper<F: Family, M: Downstream<F>> {
    pub(crate) id: u64,
    upstream: OnceLock<F::Upstream>,
    cancel: CancellationToken,
    config: Arc<ArcSwap<Config>>,
    events: Arc<Events>,
    fanout: Arc<Fanout>,
    /// The mappers the splitter's GC looks at (shared by the splitter's mappers).
    gc: Arc<GcList>,
    /// Hashes (sums of the difficulties of accepted shares) counted to this upstream since
    /// it opened (monitoring: [`crate::Monitor::upstream_hashes`]).
    hashes: AtomicU64,
    state: Mutex<MapperState<F, M>>,
}

impl<F: Family, M: Downstream<F>> Mapper<F, M> {
    /// The mapper's state, locked (no I/O while it is held).
    pub(crate) fn st(&self) -> MutexGuard<'_, MapperState<F, M>> {
        lock(&self.state)
    }

    /// The upstream client, once started.
    pub(crate) fn upstream(&self) -> Option<&F::Upstream> {
        self.upstream.get()
    }

    /// The running config.
    pub(crate) fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// The events every answer is reported to.
    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    /// The proxy accepted a share of `difficulty` itself (custom difficulty, solo): reported
    /// to the events, and counted to this upstream when the events count it as accepted.
    pub(crate) fn accept_local(&self, miner: &impl Subject, difficulty: u64) {
        if self.events.accept_local(miner, difficulty) {
            self.hashes.fetch_add(difficulty, Relaxed);
        }
    }

    /// Cancelled when the mapper closes: its upstream client stops.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Puts `miner` in a free slot; false when the mapper is full.
    fn try_add(self: &Arc<Self>, miner: &M) -> bool {
        let mut st = self.st();
        let Some(slot) = st.channel.add(miner.id(), miner.clone()) else {
            return false;
        };
        miner.set_route(Route {
            mapper: self.clone(),
            slot,
        });
        if let Some(info) = st.channel.job() {
            let config = self.config.load();
            F::deliver(info, miner, slot, &F::job_config(&config));
        }
        true
    }

    /// Frees `miner`'s slot; an emptied mapper is listed for the GC.
    fn remove(&self, miner: &M, slot: F::Slot) {
        let now = now();
        let mut st = self.st();
        if !st.channel.remove(miner.id(), slot, now) || st.channel.miner_count() > 0 {
            return;
        }
        if !st.gc_idle {
            st.gc_idle = true;
            self.gc.idle(now, self.id);
        }
        if st.upstream_state == UpstreamState::Stopped {
            self.list_stopped(&mut st);
        }
    }

    /// Lists the mapper for the GC as stopped (its upstream stopped, no miner on it).
    fn list_stopped(&self, st: &mut MapperState<F, M>) {
        if !st.gc_stopped {
            st.gc_stopped = true;
            self.gc.stopped(self.id);
        }
    }

    /// Keeps a checked share as pending under `seq` (in the locked state `st`), timed at
    /// `now` (the clock read the miner's line was handled with, for its latency), releases
    /// the lock, counts it in flight and writes it upstream with `send` (RFC §8.2). When
    /// `send` fails the share is taken back out and answered with the error; `expired` (the
    /// job was the previous one) is counted when it went out.
    pub(crate) fn forward_at<E: Display>(
        &self,
        mut st: MutexGuard<'_, MapperState<F, M>>,
        seq: u64,
        pending: Pending<M>,
        expired: bool,
        now: Instant,
        send: impl FnOnce() -> Result<(), E>,
    ) {
        st.channel.add_pending(seq, pending, now);
        // Sent without the mapper's lock (the pool write may happen right here); the pending
        // entry is in place and counted in flight first, so the pool's answer always finds it.
        drop(st);
        self.events.stats.in_flight.fetch_add(1, Relaxed);
        match send() {
            Ok(()) => {
                if expired {
                    self.events.stats.expired.fetch_add(1, Relaxed);
                }
            }
            Err(e) => {
                self.events.stats.in_flight.fetch_sub(1, Relaxed);
                let p = self.st().channel.on_result(seq, now);
                if let Some((p, _)) = p {
                    let reason = e.to_string();
                    self.events.reject(&p.miner, &reason);
                    F::reply(&p.miner, &p.id, Err(&reason));
                }
            }
        }
    }

    /// A new job from the upstream in its session `session`: the channel takes it, then
    /// every miner gets it (the first one is a deferred login reply). The miners are taken
    /// under the lock, split by fan-out way (see `fanout.rs`), and written without it, so
    /// logins and shares on this upstream go on meanwhile. A miner added after the list was
    /// taken got this job when it was added.
    pub(crate) fn fan_out(&self, info: Arc<F::Job>, session: u64) {
        let job_config = Arc::new(F::job_config(&self.config.load()));
        let ways = self.fanout.ways();
        let mut batches: Vec<Vec<(M, F::Slot)>> = vec![Vec::new(); ways];
        {
            let mut st = self.st();
            st.channel.on_job(info.clone(), session);
            for (slot, m) in st.channel.miners() {
                let way = way_of(F::Channel::<M>::spread(slot), ways);
                batches[way].push((m.clone(), slot));
            }
        }
        let mine = std::mem::take(&mut batches[0]);
        for (way, batch) in batches.into_iter().enumerate().skip(1) {
            if batch.is_empty() {
                continue;
            }
            let (info, job_config) = (info.clone(), job_config.clone());
            self.fanout.run_on(
                way,
                self.id,
                Box::new(move || {
                    for (m, slot) in &batch {
                        F::deliver(&info, m, *slot, &job_config);
                    }
                }),
            );
        }
        for (m, slot) in &mine {
            F::deliver(&info, m, *slot, &job_config);
        }
    }

    /// The upstream's verdict on share `seq`, read at `at` (the upstream's clock read for the
    /// pool's line: one time for the latency and the statistics' second): taken out of the
    /// pending shares (once; a second verdict finds nothing), answered and reported.
    pub(crate) fn on_verdict_at(&self, seq: u64, verdict: Verdict<'_>, at: tokio::time::Instant) {
        self.on_verdict_with(seq, verdict, at, |_, _| ());
    }

    /// [`Mapper::on_verdict_at`] with `look` run on the channel and the share's pending
    /// entry under the lock that takes the entry out (before the answer is written), so that
    /// a family needs no second lock for what it checks at each verdict. Its result comes
    /// back once the answer is written and reported; `None` when the share had been answered
    /// already (`look` did not run).
    pub(crate) fn on_verdict_with<T>(
        &self,
        seq: u64,
        verdict: Verdict<'_>,
        at: tokio::time::Instant,
        look: impl FnOnce(&mut F::Channel<M>, &Pending<M>) -> T,
    ) -> Option<T> {
        let (p, daemon) = {
            let mut st = self.st();
            let st = &mut *st;
            let p = st
                .channel
                .on_result(seq, at.into_std())
                .map(|(p, latency)| {
                    let looked = look(&mut st.channel, &p);
                    (p, latency, looked)
                });
            (p, st.daemon)
        };
        let (p, latency, looked) = p?;
        let stats = &self.events.stats;
        stats.in_flight.fetch_sub(1, Relaxed);
        match verdict {
            Verdict::Accepted => {
                if daemon {
                    stats.blocks.fetch_add(1, Relaxed);
                }
                F::reply(&p.miner, &p.id, Ok(()));
                self.hashes.fetch_add(p.difficulty, Relaxed);
                self.events
                    .accept(&p.miner, p.difficulty, p.share_diff, latency, at);
            }
            Verdict::Refused {
                reason,
                code,
                miner_fault,
            } => {
                tracing::debug!(miner = p.miner.id(), ?reason, ?code, "share rejected");
                F::reply_refused(&p.miner, &p.id, reason, code);
                if miner_fault {
                    // The pool's verdict on the miner's work counts against the miner; a
                    // session-ending refusal (`Unauthenticated`, a ban) is the pool's, not its.
                    self.events.pool_rejected(&p.miner, reason);
                } else {
                    self.events.reject(&p.miner, reason);
                }
            }
        }
        Some(looked)
    }

    /// The upstream's connection state changed; `pool` is the index in `pools` of the pool
    /// it logged in to, when it did.
    pub(crate) fn on_upstream_state(&self, state: UpstreamState, pool: Option<usize>) {
        let mut st = self.st();
        st.upstream_state = state;
        if state == UpstreamState::Stopped && st.channel.miner_count() == 0 {
            self.list_stopped(&mut st);
        }
        if state != UpstreamState::Active {
            // The session ended and its jobs with it: a share for one of them is refused
            // here at once (`Invalid job id`), never sent to the next session.
            st.channel.on_session_end();
        }
        if let Some(i) = pool {
            let config = self.config.load();
            let entry = config.pool_of(F::PROTOCOL, i);
            st.daemon = entry.is_some_and(|p| p.daemon);
            st.pool = entry.map(|p| p.host_port().to_string());
        }
        if state != UpstreamState::Active {
            tracing::info!(mapper = self.id, ?state, "upstream state");
        }
    }
}

/// The upstream timing of a config (RFC §4 `retries`, `retry-pause`). The connect and login
/// timeout is the default 10 s, or `pool-reply-timeout` when that is shorter.
pub(crate) fn failover_options(config: &Config) -> FailoverOptions {
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
pub(crate) struct Splitter<F: Family, M: Downstream<F>> {
    mode: Mode,
    /// By id: in opening order.
    mappers: Mutex<BTreeMap<u64, Arc<Mapper<F, M>>>>,
    gc: Arc<GcList>,
    /// Mapper ids, shared by the splitters of the process so that an id names one upstream
    /// whatever its family (the API's upstream ids, the fan-out threads' job queues).
    next_mapper_id: Arc<AtomicU64>,
    cancel: CancellationToken,
    config: Arc<ArcSwap<Config>>,
    events: Arc<Events>,
    pub(crate) fanout: Arc<Fanout>,
    /// The pool list every upstream follows: one copy for all (simple mode has one upstream
    /// per miner), as the family keeps it.
    pools: F::Pools,
}

impl<F: Family, M: Downstream<F>> Splitter<F, M> {
    /// `fanout`: the threads that write jobs to miners beside the upstream tasks;
    /// `mapper_ids`: the next mapper id (both shared by the splitters of one process).
    pub(crate) fn new(
        config: Arc<ArcSwap<Config>>,
        events: Arc<Events>,
        cancel: CancellationToken,
        fanout: Arc<Fanout>,
        mapper_ids: Arc<AtomicU64>,
    ) -> Self {
        let pools = F::new_pools(&config.load());
        Self {
            pools,
            mode: config.load().mode,
            mappers: Mutex::new(BTreeMap::new()),
            gc: Arc::default(),
            next_mapper_id: mapper_ids,
            cancel,
            config,
            events,
            fanout,
        }
    }

    fn new_mapper(&self) -> Arc<Mapper<F, M>> {
        let config = self.config.load();
        let id = self.next_mapper_id.fetch_add(1, Relaxed);
        // extra_nonce mode uses the NiceHash slot table: a slot's index is its miner's extra
        // nonce instead of a fixed byte (`family/cryptonote.rs`).
        let nicehash = self.mode != Mode::Simple;
        let mapper = Arc::new(Mapper {
            id,
            upstream: OnceLock::new(),
            cancel: self.cancel.child_token(),
            config: self.config.clone(),
            events: self.events.clone(),
            fanout: self.fanout.clone(),
            gc: self.gc.clone(),
            hashes: AtomicU64::new(0),
            state: Mutex::new(MapperState {
                channel: F::new_channel(nicehash),
                upstream_state: UpstreamState::Connecting,
                daemon: false,
                pool: None,
                gc_idle: false,
                gc_stopped: false,
            }),
        });
        let upstream = F::spawn_upstream(&mapper, &self.pools, &config);
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
            Mode::Nicehash | Mode::ExtraNonce => true,
            // Simple mode (RFC §9): an idle upstream is handed on only while `reuse-timeout`
            // keeps it and its pool connection is up.
            Mode::Simple => self.config.load().reuse_timeout > 0,
        };
        for m in mappers.values() {
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
        mappers.insert(m.id, m);
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
        r.mapper.remove(miner, r.slot);
        if self.mode == Mode::Simple && self.config.load().reuse_timeout == 0 {
            let mut mappers = lock(&self.mappers);
            if r.mapper.st().channel.miner_count() == 0 {
                r.mapper.cancel.cancel();
                mappers.remove(&r.mapper.id);
            }
        }
    }

    /// Closes mappers that have had no miner for longer than their keep time, or whose
    /// upstream stopped while they had none (RFC §8.1 `GC`). Looks only at the mappers listed
    /// as due (`gc.rs`), at most [`GC_BUDGET`] a tick; with nothing due it takes no lock but
    /// the list's.
    pub(crate) fn gc(&self, now: Instant) {
        let keep = match self.mode {
            Mode::Nicehash | Mode::ExtraNonce => EMPTY_MAPPER_TTL,
            Mode::Simple => Duration::from_secs(self.config.load().reuse_timeout),
        };
        let mut due = Vec::new();
        self.gc.take_due(now, keep, GC_BUDGET, &mut due);
        if due.is_empty() {
            return;
        }
        let mut mappers = lock(&self.mappers);
        for (id, listed) in due {
            // A mapper closed since it was listed finds nothing.
            let Some(m) = mappers.get(&id) else { continue };
            let mut st = m.st();
            match listed {
                Listed::Idle => st.gc_idle = false,
                Listed::Stopped => st.gc_stopped = false,
            }
            let empty = st.channel.miner_count() == 0;
            let expired = st.channel.idle_for(keep, now)
                || (empty && st.upstream_state == UpstreamState::Stopped);
            if !expired && listed == Listed::Idle {
                // Emptied again since it was listed (or the keep time grew): look again
                // when its keep time from then runs out. One with miners is listed again
                // when its last one leaves.
                if let Some(since) = st.channel.empty_since() {
                    st.gc_idle = true;
                    self.gc.idle(since, id);
                }
            }
            drop(st);
            if expired {
                tracing::info!(mapper = id, "closing idle upstream connection");
                m.cancel.cancel();
                mappers.remove(&id);
            }
        }
    }

    /// Hands a new pool list and timing to every upstream (config reload). Upstreams whose
    /// pool changed reconnect; their miners stay and get the new pool's next job.
    pub(crate) fn reconfigure_upstreams(&self, config: &Config) {
        let mappers = lock(&self.mappers);
        F::set_pools(
            &self.pools,
            mappers.values().filter_map(|m| m.upstream.get()),
            config,
        );
    }
    /// Upstream connection counts for monitoring.
    pub(crate) fn upstream_counts(&self) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        for m in lock(&self.mappers).values() {
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
            .values()
            .map(|m| {
                let st = m.st();
                UpstreamInfo {
                    id: m.id,
                    state: st.upstream_state,
                    pool: st.pool.clone(),
                    miners: st.channel.miner_count(),
                    daemon: st.daemon,
                    protocol: F::PROTOCOL,
                }
            })
            .collect()
    }

    /// Hashes (sums of the difficulties of accepted shares) per upstream id since each
    /// upstream opened, for the upstreams that exist.
    pub(crate) fn upstream_hashes(&self) -> HashMap<u64, u64> {
        lock(&self.mappers)
            .values()
            .map(|m| (m.id, m.hashes.load(Relaxed)))
            .collect()
    }

    /// Number of miners per mapper, in mapper order (for tests and monitoring).
    pub(crate) fn mapper_loads(&self) -> Vec<usize> {
        lock(&self.mappers)
            .values()
            .map(|m| m.st().channel.miner_count())
            .collect()
    }
}

#[cfg(test)]
mod tests;
