//! The seam, tested with a second family: a toy protocol (two slots per upstream, jobs and
//! answers as plain text lines, no upstream client) served by the same splitter and
//! mappers as CryptoNote, through the `Family`, `MinerSession` and `UpstreamChannel`
//! traits only. Nothing here is CryptoNote: what passes here is what the driver does for
//! any family.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::MinerId;
use arcstr::ArcStr;
use stratum_proto::Id;
use stratum_session::{MinerSession, Phase, ShareTally, UpstreamChannel, WorkerName};

use super::*;
use crate::config::{Config, WorkersMode};
use crate::workers::{WorkerSource, NO_WORKER};

/// The toy family.
struct Toy;

#[derive(Debug, Default)]
struct ToySession {
    phase: Option<Phase>,
    routed: bool,
    tally: ShareTally,
}

impl MinerSession for ToySession {
    fn new() -> Self {
        Self::default()
    }
    fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::WaitLogin)
    }
    fn diff(&self) -> u64 {
        1
    }
    fn set_routed(&mut self, routed: bool) {
        self.routed = routed;
        if routed {
            self.phase = Some(Phase::WaitReady);
        }
    }
    fn login_refused(&mut self) {
        self.phase = None;
    }
    fn close(&mut self) {
        self.phase = Some(Phase::Closing);
    }
    fn count_share(&mut self, valid: bool) -> ShareTally {
        self.tally.count(valid);
        self.tally
    }
}

/// A job: its number.
struct ToyJob(u64);

/// Two slots (one in simple mode), the current job, shares in flight.
struct ToyChannel<M> {
    slots: Vec<Option<(MinerId, M)>>,
    job: Option<Arc<ToyJob>>,
    pending: HashMap<u64, (Pending<M>, Instant)>,
    empty_since: Option<Instant>,
}

impl<M> UpstreamChannel<M, Pending<M>> for ToyChannel<M> {
    type Slot = u16;
    type Job = ToyJob;

    fn add(&mut self, id: MinerId, miner: M) -> Option<u16> {
        let free = self.slots.iter().position(Option::is_none)?;
        self.slots[free] = Some((id, miner));
        self.empty_since = None;
        u16::try_from(free).ok()
    }
    fn remove(&mut self, id: MinerId, slot: u16, now: Instant) -> bool {
        let s = &mut self.slots[usize::from(slot)];
        if s.as_ref().is_none_or(|(m, _)| *m != id) {
            return false;
        }
        *s = None;
        if self.miner_count() == 0 {
            self.empty_since = Some(now);
        }
        true
    }
    fn on_job(&mut self, job: Arc<ToyJob>, _session: u64) {
        self.job = Some(job);
    }
    fn on_session_end(&mut self) {
        self.job = None;
    }
    fn job(&self) -> Option<&Arc<ToyJob>> {
        self.job.as_ref()
    }
    fn miners<'a>(&'a self) -> impl Iterator<Item = (u16, &'a M)> + 'a
    where
        M: 'a,
    {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(_, m)| (u16::try_from(i).unwrap_or(0), m)))
    }
    fn spread(slot: u16) -> usize {
        usize::from(slot)
    }
    fn miner_count(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
    fn empty_since(&self) -> Option<Instant> {
        self.empty_since
    }
    fn add_pending(&mut self, seq: u64, payload: Pending<M>, now: Instant) {
        self.pending.insert(seq, (payload, now));
    }
    fn on_result(&mut self, seq: u64, now: Instant) -> Option<(Pending<M>, Duration)> {
        self.pending
            .remove(&seq)
            .map(|(p, sent)| (p, now.saturating_duration_since(sent)))
    }
}

impl Family for Toy {
    const PROTOCOL: crate::config::Protocol = crate::config::Protocol::CryptoNote;
    type Session = ToySession;
    type Slot = u16;
    type Job = ToyJob;
    type Channel<M: Clone + Send + Sync + 'static> = ToyChannel<M>;
    type Upstream = ();
    type Pools = ();
    type JobConfig = ();

    fn new_channel<M: Clone + Send + Sync + 'static>(nicehash: bool) -> ToyChannel<M> {
        ToyChannel {
            slots: std::iter::repeat_with(|| None)
                .take(if nicehash { 2 } else { 1 })
                .collect(),
            job: None,
            pending: HashMap::new(),
            empty_since: None,
        }
    }
    fn job_config(_: &Config) {}
    fn deliver<M: Downstream<Self>>(job: &ToyJob, miner: &M, slot: u16, (): &()) {
        miner.with_session(|s, _| s.phase = Some(Phase::Ready));
        miner.send_line(format!("job {} slot {slot}", job.0).into_bytes());
    }
    fn reply<M: Downstream<Self>>(miner: &M, id: &Id, result: Result<(), &str>) {
        miner.send_line(format!("{id} {result:?}").into_bytes());
    }
    fn new_pools(_: &Config) {}
    fn spawn_upstream<M: Downstream<Self>>(_: &Arc<Mapper<Self, M>>, (): &(), _: &Config) {}
    fn set_pools<'a>((): &(), _: impl Iterator<Item = &'a ()>, _: &Config) {}
}

/// A miner that keeps the lines written to it.
#[derive(Clone)]
struct ToyMiner(Arc<ToyMinerInner>);

struct ToyMinerInner {
    id: u64,
    lines: Mutex<Vec<String>>,
    state: Mutex<(ToySession, Option<Route<Toy, ToyMiner>>)>,
    worker: AtomicU64,
}

impl ToyMiner {
    fn new(id: u64) -> Self {
        Self(Arc::new(ToyMinerInner {
            id,
            lines: Mutex::new(Vec::new()),
            state: Mutex::new((ToySession::new(), None)),
            worker: AtomicU64::new(NO_WORKER),
        }))
    }
    fn lines(&self) -> Vec<String> {
        lock(&self.0.lines).clone()
    }
    fn mapper(&self) -> Arc<Mapper<Toy, ToyMiner>> {
        self.with_session(|_, r| r.as_ref().map(|r| r.mapper.clone()))
            .unwrap()
    }
}

impl WorkerSource for ToyMiner {
    fn ip(&self) -> IpAddr {
        [127, 0, 0, 1].into()
    }
    fn worker_slot(&self) -> &AtomicU64 {
        &self.0.worker
    }
    fn worker_name(&self, _: WorkersMode) -> Option<(WorkerName, bool)> {
        None
    }
}

impl Subject for ToyMiner {
    fn id(&self) -> u64 {
        self.0.id
    }
    fn user_agent(&self) -> Option<(WorkerName, ArcStr)> {
        None
    }
    fn traffic(&self) -> (u64, u64) {
        (0, 0)
    }
    fn count_share(&self, valid: bool) -> ShareTally {
        lock(&self.0.state).0.count_share(valid)
    }
    fn fail(&self, _: &'static str) -> bool {
        false
    }
}

impl Downstream<Toy> for ToyMiner {
    fn with_session<T>(
        &self,
        f: impl FnOnce(&mut ToySession, &mut Option<Route<Toy, Self>>) -> T,
    ) -> T {
        let st = &mut *lock(&self.0.state);
        f(&mut st.0, &mut st.1)
    }
    fn send_line(&self, line: Vec<u8>) {
        lock(&self.0.lines).push(String::from_utf8(line).unwrap());
    }
    fn send(&self, chunks: &[Bytes]) {
        let line: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        self.send_line(line);
    }
}

fn splitter() -> (Splitter<Toy, ToyMiner>, Arc<Events>) {
    let config = Config::default();
    let events = Arc::new(Events::new(&config));
    let s = Splitter::new(
        Arc::new(ArcSwap::from_pointee(config)),
        events.clone(),
        CancellationToken::new(),
        Arc::new(crate::fanout::Fanout::new(0)),
        Arc::new(std::sync::atomic::AtomicU64::new(1)),
    );
    (s, events)
}

#[tokio::test]
async fn a_second_family_is_routed_fanned_out_and_answered_by_the_same_driver() {
    let (s, events) = splitter();
    let miners: Vec<ToyMiner> = (1..=3).map(ToyMiner::new).collect();
    for m in &miners {
        s.on_login(m).unwrap();
    }
    assert_eq!(s.mapper_loads(), [2, 1], "two slots per toy upstream");
    assert_eq!(miners[0].with_session(|s, _| s.phase()), Phase::WaitReady);

    // A job reaches every miner of its upstream, each in its own slot, and no other.
    let first = miners[0].mapper();
    first.fan_out(Arc::new(ToyJob(7)), 1);
    assert_eq!(miners[0].lines(), ["job 7 slot 0"]);
    assert_eq!(miners[1].lines(), ["job 7 slot 1"]);
    assert!(miners[2].lines().is_empty());
    assert_eq!(miners[1].with_session(|s, _| s.phase()), Phase::Ready);

    // A share forwarded under a sequence number gets the upstream's verdict once.
    let pending = Pending {
        miner: miners[0].clone(),
        id: Id::from(5),
        difficulty: 100,
        share_diff: 150,
    };
    let now = tokio::time::Instant::now();
    first.forward_at(first.st(), 1, pending, false, now.into_std(), || {
        Ok::<(), String>(())
    });
    assert_eq!(events.stats.in_flight.load(Relaxed), 1);
    first.on_verdict_at(1, Verdict::Accepted, now);
    first.on_verdict_at(1, Verdict::Accepted, now);
    assert_eq!(miners[0].lines(), ["job 7 slot 0", "5 Ok(())"]);
    let stats = events.stats.snapshot();
    assert_eq!((stats.accepted, stats.in_flight), (1, 0));
    let second = miners[2].mapper();
    assert_eq!(
        s.upstream_hashes(),
        HashMap::from([(first.id, 100), (second.id, 0)]),
        "counted once, to the upstream that carried it"
    );

    // A share the upstream client cannot take is answered with its error at once.
    let pending = Pending {
        miner: miners[1].clone(),
        id: Id::from(6),
        difficulty: 100,
        share_diff: 150,
    };
    first.forward_at(first.st(), 2, pending, false, now.into_std(), || {
        Err("Pool is busy")
    });
    assert_eq!(miners[1].lines()[1], r#"6 Err("Pool is busy")"#);
    assert_eq!(events.stats.snapshot().rejected, 1);

    // A miner that takes a freed slot gets the upstream's current job at once.
    s.on_close(&miners[1]);
    assert_eq!(s.mapper_loads(), [1, 1]);
    let late = ToyMiner::new(4);
    s.on_login(&late).unwrap();
    assert_eq!(s.mapper_loads(), [2, 1]);
    assert_eq!(late.lines(), ["job 7 slot 1"]);
}

#[tokio::test(start_paused = true)]
async fn the_gc_closes_an_emptied_upstream_of_any_family_after_its_keep_time() {
    let (s, _) = splitter();
    let m = ToyMiner::new(1);
    s.on_login(&m).unwrap();
    s.on_close(&m);
    assert_eq!(s.mapper_loads(), [0]);
    s.gc(now());
    assert_eq!(s.mapper_loads(), [0], "kept for its keep time");
    tokio::time::advance(EMPTY_MAPPER_TTL).await;
    s.gc(now());
    assert!(s.mapper_loads().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_shares_latency_runs_from_its_lines_clock_read_to_its_verdicts() {
    let (s, events) = splitter();
    let m = ToyMiner::new(1);
    s.on_login(&m).unwrap();
    let mapper = m.mapper();
    mapper.fan_out(Arc::new(ToyJob(1)), 1);
    let pending = |id: u64| Pending {
        miner: m.clone(),
        id: Id::from(id),
        difficulty: 100,
        share_diff: 150,
    };
    // The times passed in are the ones used: no clock is read in between. The clock moves
    // on 10 ms after the line's read, so a read of its own in `forward_at` would give 30 ms,
    // and one in `on_verdict_at` 10 ms.
    let line_read = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_millis(10)).await;
    mapper.forward_at(
        mapper.st(),
        1,
        pending(1),
        false,
        line_read.into_std(),
        || Ok::<(), String>(()),
    );
    let answer_read = line_read + Duration::from_millis(40);
    mapper.on_verdict_at(1, Verdict::Accepted, answer_read);
    assert_eq!(m.lines(), ["job 1 slot 0", "1 Ok(())"]);
    let summary = events.stats.summary(events.secs_at(answer_read));
    assert_eq!((summary.accepted, summary.latency), (1, 40));
}
