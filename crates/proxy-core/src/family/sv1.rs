//! Bitcoin Stratum V1, the second family (issue 12; slush's protocol,
//! `shared/spec/stratum-v1-slush.md`; BIP 310): the driver's glue around the sans-IO pieces
//! of `stratum_session::sv1` and the upstream client `pool_client::sv1::Sv1Upstream`.
//!
//! - The miner side ([`MinerProtocol`]): a line → `stratum_proto::sv1::parse_client_line` →
//!   the session's answer: `mining.configure` (version rolling: the miner is routed to its
//!   upstream at once and granted its mask AND that upstream's; the answer waits for the
//!   upstream's mask when it is not logged in yet, at most [`CONFIGURE_WAIT`], then is
//!   `version-rolling` `false`: para and others ignore a later `mining.set_version_mask`),
//!   `mining.subscribe` (the splitter routes the miner; the answer carries its
//!   extranonce1 = the upstream's ‖ its tail), `mining.authorize` (the worker record), and
//!   `mining.submit` (the session's checks, then the channel's sha256d check under the
//!   mapper's lock: refused with its code, answered `true` locally, or forwarded).
//! - The upstream side ([`Family`]): [`Sv1Chan`] wraps `sv1::Channel`, which can exist only
//!   once the upstream has subscribed (its extranonce layout). Miners that subscribe before
//!   that wait on the mapper (slot `None`, at most [`WAITING_MAX`]) and get their subscribe
//!   answer when the layout arrives ([`Sv1Listener::on_extranonce`]).
//! - [`Sv1Listener`] for the mapper: jobs fanned out (each miner's `mining.set_difficulty`
//!   first when vardiff or the upstream moved it), difficulty and version-mask changes, a
//!   changed extranonce (a miner subscribed to it is told `mining.set_extranonce`, any other
//!   `client.reconnect` and closed: at once when none of its shares is in flight, else once
//!   the last one's answer is written, or after `pool-reply-timeout` at the latest; a share
//!   it sends meanwhile is answered stale, 21), and the verdicts, each once.
//!
//! Difficulty units at the seam: the events take a share's expected hashes as `u64`; an SV1
//! difficulty `d` is reported as `d · 2^32` hashes, rounded ([`hashes`]). The API's miner
//! difficulty ([`MinerSession::diff`]) is the SV1 difficulty rounded (0 below 0.5).
//!
//! A share forwarded to a solo upstream (a Bitcoin node) must be a block: the solo client
//! refuses anything under the network target, so here only block candidates go to a node;
//! the other shares that meet the solo difficulty are answered `true` locally.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nonce_split::{MinerId, VardiffConfig, HASHES_PER_DIFFICULTY};
use pool_client::sv1::{
    SoloOptions, Sv1Listener, Sv1Options, Sv1Share, Sv1ShareError, Sv1Upstream,
};
use pool_client::UpstreamState;
use stratum_proto::sv1::{
    encode_bool_result, encode_error_message, parse_client_line, ClientMessage, ClientRequest,
    ErrorCode, Notify, ServerMessage,
};
use stratum_proto::Id;
use stratum_session::sv1::{
    AuthorizeRules, Checked, JobFor, JobSeq, NewExtranonce, Output, Phase as Sv1Phase, Refusal,
    Reply, Session, Sv1Job,
};
use stratum_session::{MinerSession, Phase, ShareTally, UpstreamChannel};

use crate::config::Config;
use crate::events::ShareRefusal;
use crate::miner::{Flow, Miner, MinerDifficulty, MinerProtocol};
use crate::splitter::{failover_options, now, Downstream, Family, Mapper, Pending, Verdict};
use crate::Shared;

/// Miners a mapper keeps waiting for its upstream's first subscription (their subscribe
/// answer needs the upstream's extranonce1): one 1-byte tail's worth. More find the mapper
/// full and go to another.
pub(crate) const WAITING_MAX: usize = 256;

/// How long a miner's `mining.configure` waits for its upstream's version mask (the
/// upstream is not logged in yet) before it is answered with `version-rolling` `false`:
/// 5 s, under the 10 s para waits for the answer.
pub(crate) const CONFIGURE_WAIT: Duration = Duration::from_secs(5);

/// The Stratum V1 family.
pub(crate) struct Sv1;

/// Expected hashes of one share at SV1 difficulty `d`: `d · 2^32`, rounded (saturating).
pub(crate) fn hashes(d: f64) -> u64 {
    // `as` saturates (and maps NaN to 0).
    (d * HASHES_PER_DIFFICULTY).round() as u64
}

/// An upstream job as the miners get it: the pool's `mining.notify`, encoded once (the same
/// line for every miner: the per-miner part of an SV1 job is its extranonce1, told once at
/// subscribe).
pub(crate) struct Sv1JobInfo {
    notify: Notify,
    line: Bytes,
    /// The channel's sequence number of the job and the upstream's difficulty for it, set
    /// when the channel takes it.
    meta: OnceLock<(JobSeq, f64)>,
}

impl Sv1JobInfo {
    fn new(notify: Notify) -> Self {
        let line = Bytes::from(ServerMessage::Notify(notify.clone()).encode());
        Self {
            notify,
            line,
            meta: OnceLock::new(),
        }
    }
}

/// After a share moved `miner`'s vardiff: `mining.set_difficulty` at once, not with the
/// upstream's next job (which may be minutes away on a solo node). As ckpool does: the
/// current job's shares are still judged at the lower of the old and new difficulty (the
/// session treats it as a job the miner had before the change), so a miner that applies a
/// difficulty only to the jobs received after it (slush's spec) loses nothing, and one that
/// applies it at once (cgminer, para) moves at once. The job itself is not sent again: a
/// miner that restarts its extranonce2 at each `mining.notify` (cpuminer, test-support's
/// miner) would redo the same work and send duplicates. Nothing when the difficulty did not
/// change. Called with no lock held.
fn tell_difficulty_now(miner: &MinerRef) {
    let route = {
        let st = miner.state();
        if st.session.inner.pending_difficulty().is_none() {
            return;
        }
        st.route.clone()
    };
    let Some(job) = route.and_then(|r| r.mapper.st().channel.current.clone()) else {
        return;
    };
    let Some(&(seq, up)) = job.meta.get() else {
        return;
    };
    let what = miner.with_session(|s, _| s.inner.on_job(seq, up));
    if let JobFor::Send {
        difficulty: Some(d),
    } = what
    {
        miner.send_line(ServerMessage::SetDifficulty(d).encode());
    }
}

impl Sv1Job for Sv1JobInfo {
    fn notify(&self) -> &Notify {
        &self.notify
    }
}

/// A miner's SV1 session as the driver keeps it: `sv1::Session` (which also parks a
/// subscribe request waiting for the upstream's extranonce). Until the miner's first line
/// the session has the default vardiff settings ([`default_vardiff`]: one shared copy,
/// which tells an unconfigured session by its address, [`Sv1Miner::configured`]); that
/// line gives it the config's ([`MinerSession::new`] has no config).
pub(crate) struct Sv1Miner {
    inner: Session<()>,
}

/// The sessions' clock: milliseconds of the proxy's clock ([`now`], tokio's, so that a
/// paused test clock drives vardiff too) since one process-wide epoch, so that a session
/// keeps no `Instant` of its own (16 bytes a miner). The epoch is a day before the first
/// reading, when the clock allows, so that a paused test clock that started a little
/// before it still reads forward.
fn now_ms() -> u64 {
    ms_of(tokio::time::Instant::now())
}

/// [`now_ms`] of a clock reading `now` taken already (a miner line's).
fn ms_of(now: tokio::time::Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let now = now.into_std();
    let epoch = *EPOCH.get_or_init(|| now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now));
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// The vardiff settings every new session gets: one shared copy of the latest config's
/// ([`shared_vardiff`]), so that a session holds a pointer to them instead of its own
/// 64 bytes.
static VARDIFF: Mutex<Option<Arc<VardiffConfig>>> = Mutex::new(None);

/// The default vardiff settings, one copy for every session made before its first line
/// (which replaces them with the config's, [`shared_vardiff`]).
fn default_vardiff() -> &'static Arc<VardiffConfig> {
    static DEFAULT: OnceLock<Arc<VardiffConfig>> = OnceLock::new();
    DEFAULT.get_or_init(|| Arc::new(VardiffConfig::default()))
}

impl Sv1Miner {
    /// The config's vardiff settings were applied: the session no longer points at the
    /// default copy (a pointer compare; a flag would cost the session 8 bytes).
    fn configured(&self) -> bool {
        !std::ptr::eq(self.inner.vardiff_config(), &**default_vardiff())
    }
}

/// `config` as an `Arc` shared with every session that got the same settings: the copy
/// kept in [`VARDIFF`] when equal, else a new one that replaces it there.
fn shared_vardiff(config: VardiffConfig) -> Arc<VardiffConfig> {
    shared_in(&VARDIFF, config)
}

/// [`shared_vardiff`] with the copy kept in `kept`.
fn shared_in(
    kept: &Mutex<Option<Arc<VardiffConfig>>>,
    config: VardiffConfig,
) -> Arc<VardiffConfig> {
    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
    match &*kept {
        Some(arc) if **arc == config => arc.clone(),
        _ => {
            let arc = Arc::new(config);
            *kept = Some(arc.clone());
            arc
        }
    }
}

impl MinerSession for Sv1Miner {
    fn new() -> Self {
        Self {
            // The default settings are valid (a unit test says so); the config's replace
            // them at the first line.
            inner: Session::new(default_vardiff().clone(), now_ms())
                .unwrap_or_else(|_| unreachable!("default vardiff settings are valid")),
        }
    }

    /// Connected and subscribed count as waiting for the login (the login timeout runs
    /// until `mining.authorize`); authorized (also while the subscribe answer waits for the
    /// upstream) is ready once a job was sent.
    fn phase(&self) -> Phase {
        match self.inner.phase() {
            Sv1Phase::Connected if self.inner.workers().next().is_some() => Phase::WaitReady,
            Sv1Phase::Connected | Sv1Phase::Subscribed => Phase::WaitLogin,
            Sv1Phase::Authorized if self.inner.difficulty().is_some() => Phase::Ready,
            Sv1Phase::Authorized => Phase::WaitReady,
            Sv1Phase::Closing => Phase::Closing,
        }
    }

    fn diff(&self) -> u64 {
        self.inner.difficulty().map_or(0, |d| d.round() as u64)
    }

    fn set_routed(&mut self, routed: bool) {
        // The route itself is set by `on_subscribed`; leaving drops it.
        if !routed {
            self.inner.take_route();
        }
    }

    fn login_refused(&mut self) {
        self.inner.take_parked_subscribe();
    }

    fn close(&mut self) {
        self.inner.close();
    }

    fn count_share(&mut self, valid: bool) -> ShareTally {
        if valid {
            self.inner.count_verdict(Ok(()))
        } else {
            self.inner.count_verdict(Err(&Refusal::LowDifficulty))
        }
    }
}

/// One upstream's SV1 state: the sans-IO channel once the upstream subscribed, and what the
/// driver keeps beside it.
pub(crate) struct Sv1Chan<M> {
    inner: Option<stratum_session::sv1::Channel<M, Sv1JobInfo, Pending<M>>>,
    /// Miners routed here before the upstream's first subscription.
    waiting: Vec<(MinerId, M)>,
    /// Simple mode: one miner.
    single: bool,
    /// The upstream session of the current jobs.
    session: u64,
    /// The upstream's difficulty and mask, kept for a channel made later.
    difficulty: f64,
    version_mask: u32,
    /// The upstream reported its mask (it logged in once): a miner's `mining.configure`
    /// is answered at once.
    mask_known: bool,
    /// The upstream is a Bitcoin node (solo): only blocks are forwarded.
    solo: bool,
    current: Option<Arc<Sv1JobInfo>>,
    empty_since: Option<Instant>,
    /// Miners the listener took off the channel (told to reconnect): their
    /// [`UpstreamChannel::remove`] still counts once, so that the splitter lists an emptied
    /// mapper for its GC. At most one entry per miner the channel held.
    taken_off: Vec<MinerId>,
    /// Miners told to reconnect while shares of theirs were in flight: each is closed when
    /// the last one is answered ([`Sv1Listener::on_result`]), or by the bound of
    /// [`close_later`]; its close takes it out. At most one entry per miner the channel
    /// held; empty but for the moments after an extranonce change.
    draining: Vec<MinerId>,
    /// Solo: the worker names of the last block candidates sent to the node, by share
    /// sequence number (at most [`MAX_CANDIDATES`], the oldest dropped first; one the node
    /// takes is taken out by `on_block_found`, a refused one just ages out, so that the
    /// verdict path takes no extra lock): the finder of a block the node takes.
    candidates: Vec<(u64, Box<str>)>,
    /// The miners whose `mining.configure` waits for this upstream's mask, with their
    /// deadlines: one timer for them all ([`expire_configures`]).
    configures: ConfigureWaits,
}

/// The `mining.configure`s waiting on one upstream's version mask, oldest first, each with
/// its deadline ([`CONFIGURE_WAIT`] after it began to wait). One timer task per upstream
/// serves them all (a task per configure cost ~260 bytes of heap each for its whole 5 s,
/// even after its answer went). At most one entry per waiting configure: a miner has at
/// most one waiting at a time, and each entry leaves at its deadline (a miner closed
/// meanwhile keeps only its `Weak` there until then), so the queue holds at most the
/// configures begun in the last [`CONFIGURE_WAIT`]; the mask's arrival empties it, and an
/// emptied queue gives its memory back.
#[derive(Default)]
struct ConfigureWaits {
    /// The deadline and the miner (not kept alive by its wait, as its task did not).
    queue: std::collections::VecDeque<(Instant, std::sync::Weak<Miner<Sv1>>)>,
    /// A timer task serves the queue (it ends when it finds the queue empty).
    timed: bool,
}

impl ConfigureWaits {
    /// `miner` began to wait at `now`; `true` when no timer serves the queue yet (the
    /// caller starts one, which then serves every later entry too).
    fn push(&mut self, miner: &MinerRef, now: Instant) -> bool {
        self.queue
            .push_back((now + CONFIGURE_WAIT, Arc::downgrade(miner)));
        !std::mem::replace(&mut self.timed, true)
    }

    /// The miners whose wait ended by `now`, in order, and the next deadline; `None`
    /// when no entry is left (the timer ends: the next `push` starts another).
    fn due(&mut self, now: Instant) -> (Vec<MinerRef>, Option<Instant>) {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.front() {
            if *at > now {
                break;
            }
            if let Some((_, m)) = self.queue.pop_front() {
                // A miner gone meanwhile needs no answer.
                due.extend(m.upgrade());
            }
        }
        let next = self.queue.front().map(|&(at, _)| at);
        if next.is_none() {
            self.timed = false;
            self.queue = std::collections::VecDeque::new();
        }
        (due, next)
    }

    /// The upstream's mask came: every waiting configure was answered with it.
    fn clear(&mut self) {
        self.queue = std::collections::VecDeque::new();
    }
}

impl std::fmt::Debug for ConfigureWaits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureWaits")
            .field("waiting", &self.queue.len())
            .field("timed", &self.timed)
            .finish()
    }
}

/// Block candidates whose finder a solo channel remembers until their verdict.
const MAX_CANDIDATES: usize = 32;

impl<M> Sv1Chan<M> {
    fn count(&self) -> usize {
        self.inner.as_ref().map_or(0, |c| c.miner_count()) + self.waiting.len()
    }

    /// Miner `id` left the channel without the driver (a reconnect it was told).
    fn take_off(&mut self, id: MinerId) {
        self.taken_off.push(id);
    }

    /// A share of miner `id` was just taken out of the shares in flight (its answer is to
    /// be written): true when `id` was told to reconnect and has no other share in flight
    /// now; it leaves [`Sv1Chan::draining`] and the caller closes it once that answer is
    /// written. No share of a draining miner is added meanwhile (its submits are answered
    /// stale), so no answer of its can come after. Nothing to look up while none drains.
    fn drained(&mut self, id: MinerId) -> bool
    where
        M: Downstream<Sv1>,
    {
        if self.draining.is_empty() || !self.draining.contains(&id) {
            return false;
        }
        let waits = self
            .inner
            .as_ref()
            .is_some_and(|c| c.pending_all().any(|p| p.miner.id() == id));
        if waits {
            return false;
        }
        self.draining.retain(|&m| m != id);
        true
    }

    /// Solo: remembers `worker` as the finder of block candidate `seq`.
    fn note_candidate(&mut self, seq: u64, worker: &str) {
        if self.candidates.len() == MAX_CANDIDATES {
            self.candidates.remove(0);
        }
        self.candidates.push((seq, worker.into()));
    }

    /// The worker of block candidate `seq`, forgotten.
    fn take_candidate(&mut self, seq: u64) -> Option<Box<str>> {
        let i = self.candidates.iter().position(|(s, _)| *s == seq)?;
        Some(self.candidates.remove(i).1)
    }

    fn note_empty(&mut self, now: Instant) {
        if self.count() == 0 && self.empty_since.is_none() {
            self.empty_since = Some(now);
        }
    }
}

impl<M: Clone> UpstreamChannel<M, Pending<M>> for Sv1Chan<M> {
    /// The extranonce tail index; `None` while the miner waits for the upstream's layout.
    type Slot = Option<u16>;
    type Job = Sv1JobInfo;

    fn add(&mut self, id: MinerId, miner: M) -> Option<Option<u16>> {
        if self.single && self.count() >= 1 {
            return None;
        }
        let slot = match &mut self.inner {
            Some(c) => Some(c.add(id, miner).ok()?.slot),
            None if self.waiting.len() < WAITING_MAX => {
                self.waiting.push((id, miner));
                None
            }
            None => return None,
        };
        self.empty_since = None;
        Some(slot)
    }

    fn remove(&mut self, id: MinerId, slot: Option<u16>, now: Instant) -> bool {
        if !self.draining.is_empty() {
            self.draining.retain(|&m| m != id);
        }
        let mut removed = false;
        if let Some(i) = self.taken_off.iter().position(|&m| m == id) {
            self.taken_off.swap_remove(i);
            removed = true;
        }
        if !removed && slot.is_none() {
            let before = self.waiting.len();
            self.waiting.retain(|(m, _)| *m != id);
            removed = self.waiting.len() != before;
        }
        if !removed {
            if let Some(c) = &mut self.inner {
                // A waiting miner may have been given its slot meanwhile.
                if let Some(s) = slot
                    .filter(|&s| c.assignment(id, s).is_some())
                    .or_else(|| c.slot_of(id))
                {
                    removed = c.remove(id, s, now);
                }
            }
        }
        self.note_empty(now);
        removed
    }

    fn on_job(&mut self, job: Arc<Sv1JobInfo>, session: u64) {
        self.session = session;
        if let Some(c) = &mut self.inner {
            let seq = c.on_notify(job.clone());
            let up = c
                .current_job()
                .map_or(self.difficulty, |j| j.upstream_difficulty);
            let _ = job.meta.set((seq, up));
            self.current = Some(job);
        }
    }

    fn on_session_end(&mut self) {
        // The upstream client answers every share in flight itself (once each).
        if let Some(c) = &mut self.inner {
            c.end_jobs();
        }
        self.current = None;
    }

    fn job(&self) -> Option<&Arc<Sv1JobInfo>> {
        self.current.as_ref()
    }

    fn miners<'a>(&'a self) -> impl Iterator<Item = (Option<u16>, &'a M)> + 'a
    where
        M: 'a,
    {
        self.inner
            .iter()
            .flat_map(|c| c.miners().map(|(_, slot, m)| (Some(slot), m)))
    }

    fn spread(slot: Option<u16>) -> usize {
        slot.map_or(0, usize::from)
    }

    fn miner_count(&self) -> usize {
        self.count()
    }

    fn empty_since(&self) -> Option<Instant> {
        self.empty_since
    }

    fn add_pending(&mut self, seq: u64, payload: Pending<M>, now: Instant) {
        if let Some(c) = &mut self.inner {
            c.add_pending(seq, payload, now);
        }
    }

    fn on_result(&mut self, seq: u64, now: Instant) -> Option<(Pending<M>, Duration)> {
        self.inner.as_mut()?.on_result(seq, now)
    }
}

/// The upstream client's SV1 settings from the config.
fn sv1_options(config: &Config) -> Sv1Options {
    let c = &config.stratum_v1;
    Sv1Options {
        version_mask: c.version_mask().unwrap_or(0x1fff_e000),
        solo: SoloOptions {
            network: c.network().unwrap_or(bitcoin::Network::Bitcoin),
            difficulty: c.solo_difficulty,
            ..SoloOptions::default()
        },
        ..Sv1Options::default()
    }
}

/// Writes `outs` to `miner` in order, in one write; `SendCurrentJob` is the caller's.
fn write_outputs<M: Downstream<Sv1>>(miner: &M, outs: &[Output]) {
    write_outputs_and_job(miner, outs, None);
}

/// Writes `outs` to `miner` in order and, when they end the login (`SendCurrentJob`) and
/// `job` is given, the job as [`Sv1::deliver`] sends it: every line in one write, from the
/// thread's line buffer ([`with_lines`]).
fn write_outputs_and_job<M: Downstream<Sv1>>(miner: &M, outs: &[Output], job: Option<&Sv1JobInfo>) {
    with_lines(|buf| {
        let mut wants_job = false;
        for o in outs {
            wants_job |= !o.encode_into(buf);
        }
        let job = job.filter(|job| wants_job && job_lines(job, miner, buf));
        send_lines(miner, buf, job);
    });
}

/// Writes the lines in `buf`, then `job`'s `mining.notify` if given; nothing when both are
/// empty.
fn send_lines<M: Downstream<Sv1>>(miner: &M, buf: &[u8], job: Option<&Sv1JobInfo>) {
    match job {
        Some(job) => miner.send_parts(buf, std::slice::from_ref(&job.line)),
        None if !buf.is_empty() => miner.send_parts(buf, &[]),
        None => {}
    }
}

/// Whether the miner gets `job` now (the session's [`JobFor`]); its
/// `mining.set_difficulty`, when the difficulty is new, appended to `buf`.
fn job_lines<M: Downstream<Sv1>>(job: &Sv1JobInfo, miner: &M, buf: &mut Vec<u8>) -> bool {
    let Some(&(seq, up)) = job.meta.get() else {
        return false;
    };
    let now = now_ms();
    let what = miner.with_session(|s, _| {
        // Vardiff looks again at its window's end even without shares (a miner that
        // finds none gets an easier difficulty): at a job, which carries the change.
        if now >= s.inner.next_poll() {
            s.inner.poll(now);
        }
        s.inner.on_job(seq, up)
    });
    match what {
        JobFor::Skip => false,
        JobFor::Send { difficulty } => {
            if let Some(d) = difficulty {
                ServerMessage::SetDifficulty(d).encode_into(buf);
            }
            true
        }
    }
}

/// The most a thread's line buffer keeps between uses, bytes (a login's answers and
/// difficulty take ~400; a buffer grown past this by a rare long line is given back).
const LINES_KEPT: usize = 4096;

thread_local! {
    /// The lines of the write being made to one miner (answers, a difficulty), encoded here
    /// rather than into a buffer of their own each: the socket takes them straight from it,
    /// and only what it does not take at once is copied into the miner's outbox.
    static LINES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with the thread's line buffer, emptied; a use inside another gets a buffer of
/// its own.
fn with_lines<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    LINES.with(|lines| {
        let Ok(mut buf) = lines.try_borrow_mut() else {
            return f(&mut Vec::new());
        };
        buf.clear();
        let out = f(&mut buf);
        if buf.capacity() > LINES_KEPT {
            *buf = Vec::new();
        }
        out
    })
}

impl Family for Sv1 {
    const PROTOCOL: crate::config::Protocol = crate::config::Protocol::StratumV1;
    type Session = Sv1Miner;
    type Slot = Option<u16>;
    type Job = Sv1JobInfo;
    type Channel<M: Clone + Send + Sync + 'static> = Sv1Chan<M>;
    type Upstream = Sv1Upstream;
    /// Each SV1 client keeps its own pool list; a reload hands it to each.
    type Pools = ();
    type JobConfig = ();

    fn new_channel<M: Clone + Send + Sync + 'static>(nicehash: bool) -> Sv1Chan<M> {
        Sv1Chan {
            inner: None,
            waiting: Vec::new(),
            single: !nicehash,
            session: 0,
            difficulty: 1.0,
            version_mask: 0,
            mask_known: false,
            solo: false,
            current: None,
            empty_since: Some(now()),
            taken_off: Vec::new(),
            draining: Vec::new(),
            candidates: Vec::new(),
            configures: ConfigureWaits::default(),
        }
    }

    fn job_config(_config: &Config) {}

    /// `mining.set_difficulty` when the miner's difficulty is new, then the job's
    /// `mining.notify` (the same bytes for every miner); nothing before `authorize`.
    /// (Both in one write.)
    fn deliver<M: Downstream<Self>>(job: &Sv1JobInfo, miner: &M, _slot: Option<u16>, _: &()) {
        with_lines(|buf| {
            if job_lines(job, miner, buf) {
                send_lines(miner, buf, Some(job));
            }
        });
    }

    /// `true`, or the error with the message (a pool's refusal keeps its text) and the code
    /// of [`code_of`].
    fn reply<M: Downstream<Self>>(miner: &M, id: &Id, result: Result<(), &str>) {
        match result {
            Ok(()) => miner.send_line(encode_bool_result(id, true)),
            Err(m) => miner.send_line(encode_error_message(id, code_of(m), m)),
        }
    }

    /// A pool's refusal keeps the pool's code (any integer: pools use codes outside
    /// 20..=25 too) and its message, cut to [`MAX_POOL_MESSAGE`] bytes (escaped as JSON by
    /// the encoder); an empty message is the code's standard one, or `Rejected by pool`.
    fn reply_refused<M: Downstream<Self>>(miner: &M, id: &Id, reason: &str, code: Option<i64>) {
        let Some(code) = code else {
            return Self::reply(miner, id, Err(reason));
        };
        let message = match pool_message(reason) {
            "" => ErrorCode::from_code(code).map_or("Rejected by pool", ErrorCode::message),
            m => m,
        };
        miner.send_line(encode_error_message(id, code, message));
    }

    fn new_pools(_: &Config) {}

    fn spawn_upstream<M: Downstream<Self>>(
        mapper: &Arc<Mapper<Self, M>>,
        (): &(),
        config: &Config,
    ) -> Sv1Upstream {
        Sv1Upstream::spawn(
            config.pools_of(Self::PROTOCOL),
            failover_options(config),
            sv1_options(config),
            mapper.clone(),
            mapper.cancel_token(),
        )
    }

    fn set_pools<'a>((): &(), upstreams: impl Iterator<Item = &'a Sv1Upstream>, config: &Config) {
        for upstream in upstreams {
            upstream.set_pools(config.pools_of(Self::PROTOCOL), failover_options(config));
        }
    }
}

/// The code a refusal's message is answered with: the standard code whose standard message
/// it is (a pool's `Low difficulty share` is 23, `Duplicate share` 22, ...), else 20. (The
/// driver hands a forwarded share's verdict to [`Family::reply`] as its message only.)
fn code_of(message: &str) -> i64 {
    (20..=25)
        .filter_map(ErrorCode::from_code)
        .find(|c| c.message().eq_ignore_ascii_case(message))
        .unwrap_or(ErrorCode::Other)
        .code()
}

/// The longest pool message passed on to a miner, in bytes.
pub(crate) const MAX_POOL_MESSAGE: usize = 256;

/// A pool's refusal message as a miner gets it: at most [`MAX_POOL_MESSAGE`] bytes, cut at
/// a character boundary.
fn pool_message(message: &str) -> &str {
    stratum_session::cut_at_char_boundary(message, MAX_POOL_MESSAGE)
}

/// Whether a miner is closed after what it is told ([`write_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// It stays.
    Keep,
    /// Closed at once (told to reconnect, nothing of its in flight).
    Now,
    /// Told to reconnect with shares in flight: closed once they are answered (listed in
    /// [`Sv1Chan::draining`]), or by the bound of [`close_later`].
    AfterAnswers,
}

/// What a miner is told and whether it is then closed.
type Write<M> = (M, Vec<Output>, Close);

/// Why a miner told to reconnect is closed.
const TOLD_TO_RECONNECT: &str = "upstream extranonce changed: told to reconnect";

impl<M: Downstream<Sv1>> Mapper<Sv1, M> {
    /// The channel's first layout: the waiting miners get their slots and subscribe
    /// answers (written by the caller, after the lock).
    fn admit_waiting(&self, ch: &mut Sv1Chan<M>, out: &mut Vec<Write<M>>) {
        let now = now();
        let waiting = std::mem::take(&mut ch.waiting);
        let Some(c) = &mut ch.inner else { return };
        for (id, m) in waiting {
            let Ok(a) = c.add(id, m.clone()) else {
                ch.taken_off.push(id);
                out.push((m, vec![Output::Reconnect], Close::Now));
                continue;
            };
            let slot = a.slot;
            let outs = m.with_session(|s, r| {
                let r = r.as_mut()?;
                r.slot = Some(slot);
                // Routed by its `mining.configure` and not subscribed yet: its subscribe
                // finds the slot.
                let Some(req) = s.inner.take_parked_subscribe() else {
                    return Some(Vec::new());
                };
                Some(s.inner.on_subscribed(&req, (), id, a))
            });
            match outs {
                Some(outs) => out.push((m, outs, Close::Keep)),
                // Closing (its route taken): it leaves now.
                None => {
                    c.remove(id, slot, now);
                }
            }
        }
        ch.note_empty(now);
    }
}

/// Writes what each miner is told after the mapper's lock is released: its lines, the
/// current job when its session asks for it, then the close when it must reconnect.
/// Returns the miners whose close waits for the answers of their shares in flight.
fn write_all<M: Downstream<Sv1>>(out: Vec<Write<M>>, job: Option<&Arc<Sv1JobInfo>>) -> Vec<M> {
    let mut later = Vec::new();
    for (m, outs, close) in out {
        write_outputs_and_job(&m, &outs, job.map(|j| &**j));
        match close {
            Close::Keep => {}
            Close::Now => {
                m.fail(TOLD_TO_RECONNECT);
            }
            Close::AfterAnswers => later.push(m),
        }
    }
    later
}

/// The bound on the wait of miners told to reconnect for their shares' answers
/// ([`Close::AfterAnswers`]): each still open after `bound` (the pool reply timeout, after
/// which the upstream client has answered every share anyway) is closed then. One timer
/// for the lot, holding them until it fires; without a runtime (unit tests) they are
/// closed at once.
fn close_later<M: Downstream<Sv1>>(miners: Vec<M>, bound: Duration) {
    if miners.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        for m in &miners {
            m.fail(TOLD_TO_RECONNECT);
        }
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(bound).await;
        for m in &miners {
            m.fail("told to reconnect: its shares' answers did not come in time");
        }
    });
}

impl<M: Downstream<Sv1>> Sv1Listener for Mapper<Sv1, M> {
    fn on_job(&self, job: Notify, session: u64) {
        self.fan_out(Arc::new(Sv1JobInfo::new(job)), session);
    }

    fn on_difficulty(&self, difficulty: f64, _session: u64) {
        let mut st = self.st();
        st.channel.difficulty = difficulty;
        if let Some(c) = &mut st.channel.inner {
            if let Err(e) = c.on_set_difficulty(difficulty) {
                tracing::warn!(mapper = self.id, "{e}");
            }
        }
    }

    fn on_extranonce(&self, extranonce1: &[u8], extranonce2_size: usize, _session: u64) {
        let min = self.config().stratum_v1.min_extranonce2_size;
        let mut out: Vec<Write<M>> = Vec::new();
        let job = {
            let mut st = self.st();
            let ch = &mut st.channel;
            match &mut ch.inner {
                None => match stratum_session::sv1::Channel::new(
                    extranonce1,
                    extranonce2_size,
                    min,
                    ch.difficulty,
                    ch.version_mask,
                    now(),
                ) {
                    Ok(c) => {
                        ch.inner = Some(c);
                        self.admit_waiting(ch, &mut out);
                    }
                    Err(e) => {
                        tracing::warn!(mapper = self.id, "upstream extranonce refused: {e}");
                        for (id, m) in std::mem::take(&mut ch.waiting) {
                            ch.take_off(id);
                            out.push((m, vec![Output::Reconnect], Close::Now));
                        }
                    }
                },
                Some(c) => {
                    // The miners with shares in flight: told to reconnect, they wait for
                    // the answers (one pass over the shares, not one per miner).
                    let in_flight: HashSet<MinerId> =
                        c.pending_all().map(|p| p.miner.id()).collect();
                    let mut told = |id: MinerId, m: M, new: Option<NewExtranonce>| {
                        let o = m.with_session(|s, _| s.inner.on_extranonce_change(new))?;
                        let close = if o != Output::Reconnect {
                            Close::Keep
                        } else if in_flight.contains(&id) {
                            ch.draining.push(id);
                            Close::AfterAnswers
                        } else {
                            Close::Now
                        };
                        Some((m, vec![o], close))
                    };
                    match c.on_set_extranonce(extranonce1, extranonce2_size) {
                        Ok(change) => {
                            for (id, m, new) in change.miners {
                                if new.is_none() {
                                    ch.taken_off.push(id);
                                }
                                // `None`: not subscribed yet, its subscribe answer tells it.
                                out.extend(told(id, m, new));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(mapper = self.id, "upstream extranonce refused: {e}");
                            let miners: Vec<(MinerId, M)> =
                                c.miners().map(|(id, _, m)| (id, m.clone())).collect();
                            for (id, m) in miners {
                                out.extend(told(id, m, None));
                            }
                        }
                    }
                    ch.note_empty(now());
                }
            }
            st.channel.current.clone()
        };
        let later = write_all(out, job.as_ref());
        close_later(later, Duration::from_secs(self.config().pool_reply_timeout));
    }

    /// Also answers the `mining.configure`s that wait for the mask (miners routed before
    /// the upstream logged in): the upstream client reports the mask before the extranonce,
    /// so that they are answered before their subscribe.
    fn on_version_mask(&self, mask: u32, _session: u64) {
        let miners: Vec<M> = {
            let mut st = self.st();
            st.channel.version_mask = mask;
            st.channel.mask_known = true;
            st.channel.configures.clear();
            match &mut st.channel.inner {
                Some(c) => {
                    c.on_set_version_mask(mask);
                    c.miners().map(|(_, _, m)| m.clone()).collect()
                }
                None => st.channel.waiting.iter().map(|(_, m)| m.clone()).collect(),
            }
        };
        for m in miners {
            if let Some(o) = m.with_session(|s, _| s.inner.on_upstream_mask(mask)) {
                write_outputs(&m, &[o]);
            }
        }
    }

    fn on_result(&self, seq: u64, result: Result<(), Sv1ShareError>) {
        self.on_result_at(seq, result, tokio::time::Instant::now());
    }

    /// The answer, read at `at` (the one clock read of the pool's line: the share's latency
    /// and its statistics second), is written to its miner; a miner told to reconnect is
    /// closed after the answer of its last share in flight.
    fn on_result_at(&self, seq: u64, result: Result<(), Sv1ShareError>, at: tokio::time::Instant) {
        // Under the lock that takes the share out: whether its miner, told to reconnect,
        // now has no share in flight (one lock a verdict; the close after the answer).
        let last =
            |ch: &mut Sv1Chan<M>, p: &Pending<M>| ch.drained(p.miner.id()).then(|| p.miner.clone());
        let upstream_error;
        let verdict = match &result {
            Ok(()) => Verdict::Accepted,
            Err(Sv1ShareError::Refused { code, message }) => Verdict::Refused {
                reason: message,
                code: Some(*code),
                miner_fault: true,
            },
            Err(Sv1ShareError::Upstream(e)) => {
                upstream_error = e.to_string();
                Verdict::Refused {
                    reason: &upstream_error,
                    code: None,
                    miner_fault: false,
                }
            }
        };
        let drained = self.on_verdict_with(seq, verdict, at, last);
        if let Some(Some(m)) = drained {
            m.fail(TOLD_TO_RECONNECT);
        }
    }

    /// The round closes under the block, found by the worker of its share.
    fn on_block_found(&self, seq: u64, block: &pool_client::sv1::FoundBlock) {
        let worker = self.st().channel.take_candidate(seq);
        let worker = worker.as_deref().unwrap_or("");
        tracing::info!(
            mapper = self.id,
            height = block.height,
            hash = %block.hash,
            finder = ?crate::rounds::user_of(worker),
            "block found"
        );
        self.events()
            .rounds
            .block(block, worker, crate::journal::unix_now());
    }

    fn on_state(&self, state: UpstreamState, pool: Option<usize>) {
        if let Some(i) = pool {
            let solo = self
                .config()
                .pool_of(Sv1::PROTOCOL, i)
                .is_some_and(|p| p.daemon);
            self.st().channel.solo = solo;
        }
        self.on_upstream_state(state, pool);
    }
}

/// A refusal as the events count it.
#[derive(Debug, Clone, Copy)]
struct Counted {
    message: &'static str,
    invalid: bool,
}

impl From<&Refusal> for Counted {
    fn from(r: &Refusal) -> Self {
        Self {
            message: r.error_code().message(),
            invalid: r.counts_as_invalid(),
        }
    }
}

impl ShareRefusal for Counted {
    fn message(self) -> &'static str {
        self.message
    }
    fn counts_as_invalid(self) -> bool {
        self.invalid
    }
}

type MinerRef = Arc<Miner<Sv1>>;

fn refuse_share(miner: &MinerRef, shared: &Shared<Sv1>, id: &Id, r: &Refusal) {
    miner.send_line(r.reply(id));
    shared.events.invalid(miner, Counted::from(r));
}

fn handle_subscribe(
    miner: &MinerRef,
    shared: &Shared<Sv1>,
    id: Id,
    req: &stratum_proto::sv1::Subscribe,
) {
    if let Err(r) = miner.state().session.inner.subscribe(req) {
        miner.send_line(r.reply(&id));
        return;
    }
    miner.state().session.inner.park_subscribe(id.clone());
    // A miner whose `mining.configure` routed it keeps that upstream.
    let already = miner.state().route.is_some();
    let routed = if already {
        Ok(true)
    } else {
        miner.route(shared)
    };
    match routed {
        Err(_) => {
            let mut st = miner.state();
            let line = st.session.inner.subscribe_refused(&id).encode();
            drop(st);
            if let Some(line) = line {
                miner.send_line(line);
            }
        }
        Ok(false) => {}
        Ok(true) => {
            let route = miner.state().route.clone();
            let Some(route) = route else { return };
            let Some(slot) = route.slot else {
                // Waits for the upstream's extranonce: answered by `on_extranonce`.
                return;
            };
            let assignment = route
                .mapper
                .st()
                .channel
                .inner
                .as_ref()
                .and_then(|c| c.assignment(miner.id, slot));
            let outs = {
                let mut st = miner.state();
                match (assignment, st.session.inner.take_parked_subscribe()) {
                    (Some(a), Some(req)) => st.session.inner.on_subscribed(&req, (), miner.id, a),
                    // Answered meanwhile by the upstream's first layout (`admit_waiting`).
                    (_, None) => return,
                    // Moved off meanwhile (the upstream's extranonce changed): start again.
                    (None, Some(_)) => vec![Output::Reconnect],
                }
            };
            // Nothing of a miner not subscribed yet is in flight.
            let close = if outs.first() == Some(&Output::Reconnect) {
                Close::Now
            } else {
                Close::Keep
            };
            let job = route.mapper.st().channel.current.clone();
            write_outputs_and_job(miner, &outs, job.as_deref());
            if close == Close::Now {
                miner.fail(TOLD_TO_RECONNECT);
            }
        }
    }
}

/// `mining.configure`: with `version-rolling` the miner is routed to its upstream now (not
/// at subscribe) and granted its mask AND that upstream's; when the upstream has not
/// reported its mask yet the answer waits ([`Sv1Listener::on_version_mask`] or the
/// subscribe answers it), at most [`CONFIGURE_WAIT`] from the first configure that waits. A
/// miner no upstream can take is answered `version-rolling` `false` (its subscribe will be
/// refused as full).
fn handle_configure(
    miner: &MinerRef,
    shared: &Shared<Sv1>,
    id: &Id,
    req: &stratum_proto::sv1::Configure,
) {
    if req.version_rolling.is_none() {
        let out = miner.state().session.inner.configure(id, req, 0);
        return write_outputs(miner, &[out]);
    }
    let routed = miner.state().route.is_some();
    if !routed {
        match miner.route(shared) {
            Ok(true) => {}
            // Closed meanwhile.
            Ok(false) => return,
            Err(_) => {
                let out = miner.state().session.inner.configure(id, req, 0);
                return write_outputs(miner, &[out]);
            }
        }
    }
    let Some(route) = miner.state().route.clone() else {
        return;
    };
    // The first deadline of a timer this configure starts (`None`: a timer already serves
    // the upstream's queue, or the configure did not wait).
    let mut start_timer = None;
    let outs = {
        // Lock order: the mapper's, then the miner's; `on_version_mask` sets the mask under
        // the mapper's lock, so a configure either sees it or is answered by it.
        let mut ch = route.mapper.st();
        let mut st = miner.state();
        if ch.channel.mask_known {
            let out = st.session.inner.configure(id, req, ch.channel.version_mask);
            drop((st, ch));
            return write_outputs(miner, &[out]);
        } else {
            // A configure that replaces a waiting one keeps the first one's deadline: one
            // entry per miner at a time, however many configures it sends.
            let waited = st.session.inner.configure_waits();
            let outs = st.session.inner.configure_later(id, req);
            if !waited && st.session.inner.configure_waits() {
                let began = now();
                if ch.channel.configures.push(miner, began) {
                    start_timer = Some(began + CONFIGURE_WAIT);
                }
            }
            outs
        }
    };
    write_outputs(miner, &outs);
    if let Some(first) = start_timer {
        tokio::spawn(expire_configures(Arc::downgrade(&route.mapper), first));
    }
}

/// The timer of one upstream's waiting `mining.configure`s ([`ConfigureWaits`]): at each
/// deadline the miners whose wait ended and that still wait are answered `version-rolling`
/// `false`; it ends when none waits (the mask came, or every wait ended) or the mapper is
/// gone. `first` is the deadline of the entry that started it (read under the mapper's lock,
/// so the spawn's delay does not push it later).
async fn expire_configures(mapper: std::sync::Weak<Mapper<Sv1, MinerRef>>, first: Instant) {
    let mut next = first;
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        let Some(m) = mapper.upgrade() else { return };
        let (miners, after) = m.st().channel.configures.due(now());
        drop(m);
        for miner in miners {
            let out = miner.state().session.inner.configure_expired();
            if let Some(out) = out {
                tracing::debug!(
                    miner = miner.id,
                    "no upstream version mask in time: version rolling refused"
                );
                write_outputs(&miner, &[out]);
            }
        }
        match after {
            Some(at) => next = at,
            None => return,
        }
    }
}

fn handle_authorize(
    miner: &MinerRef,
    shared: &Shared<Sv1>,
    id: &Id,
    req: &stratum_proto::sv1::Authorize,
) {
    let config = shared.config.load();
    let rules = AuthorizeRules {
        access_password: config.access_password(),
    };
    let (outs, first) = {
        let mut st = miner.state();
        let st = &mut *st;
        let outs = st.session.inner.authorize(id, req, &rules);
        let ok = matches!(
            outs.first(),
            Some(Output::Reply {
                reply: Reply::True,
                ..
            })
        );
        let first = ok && st.login.is_none();
        if first {
            // The interned copy in the login is the one kept (shared by the miners that
            // send the same agent): the session's is freed.
            let agent = st.session.inner.take_agent().unwrap_or_default();
            let pass = req.password.as_deref().unwrap_or_default();
            // The worker name is the user: one copy, which the login, the worker record
            // and the session point at. Its account part (the address, alike across a
            // farm's machines) is interned, its worker part is the miner's own block (each
            // SV1 machine has a name of its own: interning it whole would be one entry
            // more per miner); the password and agent, alike across miners, are interned.
            let user = shared.strings.name(&req.username);
            st.session.inner.share_worker_name(&user);
            st.login = Some(Box::new(crate::login::LoginInfo {
                user,
                pass: shared.strings.get(pass),
                agent: shared.strings.get(&agent),
                rig_id: None,
            }));
        }
        (outs, first)
    };
    // The current job goes in the same write as the answer when the login is complete.
    let job = if outs.last() == Some(&Output::SendCurrentJob) {
        let route = miner.state().route.clone();
        route.and_then(|route| route.mapper.st().channel.current.clone())
    } else {
        None
    };
    write_outputs_and_job(miner, &outs, job.as_deref());
    if first {
        miner.report_login(shared);
    }
}

/// `mining.submit`, handled with `now`, the clock read of the miner's line: vardiff's time,
/// the share's pending entry and its send time upstream (no clock read of its own).
fn handle_submit(
    miner: &MinerRef,
    shared: &Shared<Sv1>,
    id: Id,
    submit: &stratum_proto::sv1::Submit,
    now: tokio::time::Instant,
) {
    let routed = {
        let st = miner.state();
        st.session.inner.submit(miner.id, submit).and_then(|share| {
            let route = st.route.clone().ok_or(Refusal::NotSubscribed)?;
            Ok((route, share))
        })
    };
    let (route, share) = match routed {
        Ok(r) => r,
        Err(r) => return refuse_share(miner, shared, &id, &r),
    };
    let mapper = &route.mapper;
    let mut st = mapper.st();
    let checked = match st.channel.inner.as_mut() {
        Some(c) => c.check_share(&share),
        None => Err(Refusal::JobNotFound),
    };
    let f = match checked {
        Err(r) => {
            drop(st);
            return refuse_share(miner, shared, &id, &r);
        }
        Ok(Checked::Local(a)) => {
            let solo = st.channel.solo;
            drop(st);
            if solo {
                shared
                    .events
                    .rounds
                    .share(&submit.worker, a.difficulty, a.hash_difficulty);
            }
            miner
                .state()
                .session
                .inner
                .on_valid_share(a.difficulty, ms_of(now));
            miner.send_line(encode_bool_result(&id, true));
            mapper.accept_local(miner, hashes(a.difficulty));
            tell_difficulty_now(miner);
            return;
        }
        Ok(Checked::Forward(f)) => f,
    };
    // Under the mapper's lock: a miner's state is taken after it (the lock order).
    miner
        .state()
        .session
        .inner
        .on_valid_share(f.accepted.difficulty, ms_of(now));
    if st.channel.solo {
        let a = &f.accepted;
        shared
            .events
            .rounds
            .share(&submit.worker, a.difficulty, a.hash_difficulty);
        if f.block_candidate {
            st.channel.note_candidate(f.seq, &submit.worker);
        }
    }
    if st.channel.solo && !f.block_candidate {
        // A node takes blocks only; this share met the solo difficulty.
        drop(st);
        miner.send_line(encode_bool_result(&id, true));
        mapper.accept_local(miner, hashes(f.accepted.difficulty));
        tell_difficulty_now(miner);
        return;
    }
    let Some(upstream) = mapper.upstream() else {
        drop(st);
        let r = Refusal::UpstreamLost;
        return refuse_share(miner, shared, &id, &r);
    };
    let out = Sv1Share {
        session: st.channel.session,
        job_id: f.job.notify.job_id.clone(),
        extranonce2: f.extranonce2.clone(),
        ntime: f.ntime,
        nonce: f.nonce,
        version_bits: f.version_bits,
    };
    if f.block_candidate {
        tracing::info!(
            mapper = mapper.id,
            miner = miner.id,
            hash = %f.header.block_hash(),
            "block candidate"
        );
    }
    let pending = Pending {
        miner: miner.clone(),
        id,
        difficulty: hashes(f.accepted.difficulty),
        share_diff: hashes(f.accepted.hash_difficulty),
    };
    mapper.forward_at(st, f.seq, pending, false, now.into_std(), || {
        upstream.submit_at(f.seq, out, now)
    });
    tell_difficulty_now(miner);
}

impl MinerProtocol for Sv1 {
    /// The vardiff difficulty, fractions kept (0.0 before the first).
    fn difficulty(session: &Sv1Miner) -> MinerDifficulty {
        MinerDifficulty::Fractional(session.inner.difficulty().unwrap_or(0.0))
    }

    /// `mining.configure`, `subscribe`, `authorize`, `extranonce.subscribe`,
    /// `suggest_difficulty`, `submit`, and the answer to a `client.get_version`.
    fn handle_line(
        miner: &MinerRef,
        shared: &Shared<Sv1>,
        line: &[u8],
        now: tokio::time::Instant,
    ) -> Flow {
        {
            let mut st = miner.state();
            if !st.session.configured() {
                let vardiff = shared_vardiff(shared.config.load().stratum_v1.vardiff());
                if let Ok(s) = Session::new(vardiff, ms_of(now)) {
                    st.session.inner = s;
                }
            }
        }
        let (id, request) = match parse_client_line(line) {
            Err(e) => {
                tracing::debug!(miner = miner.id, "bad request: {e}");
                let out = miner.state().session.inner.on_bad_request(&e);
                write_outputs(miner, &[out]);
                return Flow::Continue;
            }
            Ok(ClientMessage::Response { outcome, .. }) => {
                if let Ok(serde_json::Value::String(v)) = outcome {
                    miner.state().session.inner.on_version_answer(&v);
                }
                return Flow::Continue;
            }
            Ok(ClientMessage::Request { id, request }) => (id, request),
        };
        match request {
            ClientRequest::Subscribe(req) => {
                handle_subscribe(miner, shared, id, &req);
                Flow::Active
            }
            ClientRequest::Authorize(req) => {
                handle_authorize(miner, shared, &id, &req);
                Flow::Active
            }
            ClientRequest::Submit(req) => {
                handle_submit(miner, shared, id, &req, now);
                Flow::Active
            }
            ClientRequest::Configure(req) => {
                handle_configure(miner, shared, &id, &req);
                Flow::Continue
            }
            ClientRequest::ExtranonceSubscribe => {
                let out = miner.state().session.inner.extranonce_subscribe(&id);
                write_outputs(miner, &[out]);
                Flow::Continue
            }
            ClientRequest::SuggestDifficulty(d) => {
                let out = miner.state().session.inner.suggest_difficulty(&id, d);
                write_outputs(miner, &[out]);
                Flow::Continue
            }
        }
    }

    fn full_line() -> Vec<u8> {
        Refusal::ProxyFull.reply(&Id::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difficulty_is_reported_as_its_expected_hashes() {
        assert_eq!(hashes(1.0), 1 << 32);
        assert_eq!(hashes(0.5), 1 << 31);
        assert_eq!(hashes(1.0 / 4_294_967_296.0), 1);
        assert_eq!(hashes(f64::NAN), 0);
        assert_eq!(hashes(1e30), u64::MAX);
    }

    #[test]
    fn sessions_with_the_same_vardiff_settings_share_one_copy() {
        let config = VardiffConfig {
            floor: 0.125,
            start: 0.125,
            ..VardiffConfig::default()
        };
        // A cache of its own: other tests' sessions use the process-wide one meanwhile.
        let kept = Mutex::new(None);
        let (a, b) = (shared_in(&kept, config), shared_in(&kept, config));
        assert!(Arc::ptr_eq(&a, &b));
        // New settings (a reload) get a copy of their own, shared from then on.
        let other = VardiffConfig {
            floor: 0.25,
            ..config
        };
        let c = shared_in(&kept, other);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((*c, *a), (other, config));
        assert!(Arc::ptr_eq(&c, &shared_in(&kept, other)));
        assert_eq!(*shared_vardiff(config), config);
        // Sessions made before their first line share the default settings.
        assert!(Arc::ptr_eq(default_vardiff(), default_vardiff()));
        assert_eq!(**default_vardiff(), VardiffConfig::default());
    }

    /// An SV1 miner's inline size, measured at 288 bytes in test builds (280 in release,
    /// where a socket has no test-only variant; CryptoNote's: 232 in release; 512 before
    /// the vardiff settings were shared and a waiting subscribe's id boxed, 432 before the
    /// session dropped its extranonce1 copy and packed its fields, 368 before it dropped
    /// its miner id and epoch and moved the parked subscribe to its cold box, 312 before
    /// vardiff boxed its window, 296 before the difficulty before a change was boxed): the
    /// session holds its vardiff state, the difficulty told and the negotiated mask. In
    /// release, with the `Arc`'s counts, a 304-byte malloc chunk (400 before). A budget, so
    /// that growth is a decision.
    #[test]
    fn an_sv1_miner_stays_within_its_size_budget() {
        let size = std::mem::size_of::<Miner<Sv1>>();
        assert!(size <= 288, "Miner<Sv1> is {size} bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sessions_clock_reads_the_proxy_clock_in_milliseconds() {
        let a = now_ms();
        assert!(a > 0, "after its epoch");
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(now_ms() - a, 1_500);
    }

    #[test]
    fn a_pools_standard_refusal_keeps_its_code() {
        assert_eq!(code_of("Low difficulty share"), 23);
        assert_eq!(code_of("Duplicate share"), 22);
        assert_eq!(code_of(ErrorCode::JobNotFound.message()), 21);
        assert_eq!(code_of("rejected: high-hash"), 20);
        assert_eq!(code_of("Connection to pool lost"), 20);
    }

    #[test]
    fn a_pools_message_is_cut_at_a_character_boundary() {
        assert_eq!(pool_message("Stale"), "Stale");
        let long = "é".repeat(MAX_POOL_MESSAGE);
        let cut = pool_message(&long);
        assert!(cut.len() <= MAX_POOL_MESSAGE && cut.len() >= MAX_POOL_MESSAGE - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn a_new_session_waits_for_its_login_with_the_default_vardiff() {
        let mut s = <Sv1Miner as MinerSession>::new();
        assert_eq!(s.phase(), Phase::WaitLogin);
        assert_eq!(s.diff(), 0);
        assert!(!s.configured());
        // The config's copy, even with the default values, is not the default one.
        s.inner = Session::new(shared_vardiff(VardiffConfig::default()), now_ms()).unwrap();
        assert!(s.configured());
    }

    #[test]
    fn the_waiting_configures_of_an_upstream_share_one_timer_and_end_in_order() {
        let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let miners: Vec<MinerRef> = (0..100)
            .map(|id| Arc::new(Miner::detached(id, peer)))
            .collect();
        let mut w = ConfigureWaits::default();
        let t0 = now();
        let step = Duration::from_millis(10);
        let starts: Vec<bool> = (0u32..100)
            .map(|i| w.push(&miners[i as usize], t0 + step * i))
            .collect();
        assert!(starts[0], "the first waiter starts the timer");
        assert!(!starts[1..].iter().any(|&s| s), "the others ride on it");
        // Nothing is due before the first deadline.
        let (due, next) = w.due(t0 + CONFIGURE_WAIT - Duration::from_millis(1));
        assert!(due.is_empty());
        assert_eq!(next, Some(t0 + CONFIGURE_WAIT));
        // Each waits its own 5 s: the first ten are due 90 ms after the first deadline.
        let (due, next) = w.due(t0 + CONFIGURE_WAIT + step * 9);
        let ids: Vec<MinerId> = due.iter().map(|m| m.id).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert_eq!(next, Some(t0 + CONFIGURE_WAIT + step * 10));
        // A miner gone meanwhile is skipped; the timer ends with the last deadline.
        let gone = Arc::downgrade(&miners[10]);
        drop(miners);
        assert!(gone.upgrade().is_none());
        let (due, next) = w.due(t0 + CONFIGURE_WAIT + step * 99);
        assert!(due.is_empty(), "no miner is kept alive by its wait");
        assert_eq!(next, None);
        // The queue is empty and untimed: the next waiter starts a timer again.
        let m: MinerRef = Arc::new(Miner::detached(7, peer));
        assert!(w.push(&m, t0));
        // The mask's arrival empties it; the timer then ends at its next wake.
        w.clear();
        let (due, next) = w.due(t0 + CONFIGURE_WAIT);
        assert!(due.is_empty() && next.is_none());
        assert!(w.push(&m, t0), "and the next waiter starts another");
    }

    #[test]
    fn a_channel_keeps_miners_waiting_for_the_layout_up_to_its_bound() {
        let mut ch: Sv1Chan<u64> = Sv1::new_channel(true);
        for id in 0..WAITING_MAX as u64 {
            assert_eq!(ch.add(id, id), Some(None));
        }
        assert_eq!(ch.add(9999, 9999), None, "full while waiting");
        assert_eq!(ch.miner_count(), WAITING_MAX);
        assert!(ch.remove(3, None, now()));
        assert!(!ch.remove(3, None, now()), "once");
        // A miner the listener took off still leaves once, and the channel is empty after.
        let mut one: Sv1Chan<u64> = Sv1::new_channel(true);
        assert_eq!(one.add(7, 7), Some(None));
        one.waiting.clear();
        one.take_off(7);
        assert!(one.remove(7, Some(3), now()));
        assert!(!one.remove(7, Some(3), now()));
        assert_eq!(one.miner_count(), 0);
        assert!(one.empty_since().is_some());
        let mut single: Sv1Chan<u64> = Sv1::new_channel(false);
        assert_eq!(single.add(1, 1), Some(None));
        assert_eq!(single.add(2, 2), None, "simple mode: one miner");
    }
}
