//! One Stratum V1 upstream (a pool subscription, or a solo node's job source) shared by many
//! miners: the extranonce split, the jobs, the upstream's difficulty and version mask, the
//! share checks and the shares in flight.
//!
//! The driver calls [`Channel::add`] when a miner subscribes and [`Channel::remove`] when it
//! leaves; [`Channel::on_notify`], [`Channel::on_set_difficulty`],
//! [`Channel::on_set_version_mask`] and [`Channel::on_set_extranonce`] with what the upstream
//! sends; [`Channel::check_share`] on a submit, then for a forwarded share
//! [`Channel::add_pending`] before writing it upstream and [`Channel::on_result`] with the
//! upstream's answer; [`Channel::expire`] on its tick and [`Channel::on_session_end`] when the
//! upstream's connection ends. Exactly one verdict per share: a refusal or a local accept at
//! once, or the share stays pending until `on_result`, `expire` or `on_session_end` takes it
//! out, once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use nonce_split::{ExtranonceLayout, ExtranonceSplit, MinerId, SlotsFull, SplitError};
use stratum_proto::sv1::{share, Notify, Submit};

use super::seen::SeenHashes;
use super::Refusal;

/// Jobs a channel keeps at most: the newest since the last clean job, up to 8 (pools send a
/// job every 30 to 60 s and a clean one per block, every 10 minutes on average: a share for
/// a job more than 8 jobs old is stale).
pub const MAX_JOBS: usize = 8;

/// Header hashes remembered per job and kind (forwarded, answered locally) to refuse
/// duplicates: 8,192 each, about 400 KB per job at most, 3.2 MB per channel of 8 jobs at
/// the very worst; a forgotten forwarded share resent is judged by the upstream.
pub const SEEN_SHARES_PER_JOB: usize = 8192;

/// How far a share's ntime may be after its job's ntime, seconds: 7,200 (2 hours), the
/// consensus bound on a block's time in the future of the node's clock (a block more than
/// 2 h ahead is refused by every node). A job's ntime is the upstream's clock when it made
/// the job, so no block found within this window is refused for its time; an honest miner
/// rolls ntime forward by about a second per second of work on a job and jobs are renewed
/// every minute, far inside it. Before the job's ntime is refused too: the job's ntime is
/// what the upstream vouches for (at or after the median time past), earlier may not be.
pub const NTIME_MAX_AHEAD_SECS: u32 = 7200;

/// A job sequence number: the channel numbers the upstream's jobs 1, 2, 3... in arrival
/// order (job ids are the upstream's strings and may repeat). 32 bits, so that a miner's
/// session keeps two in 8 bytes: 4 billion jobs are 136 years at one a second (the count
/// then stays at its maximum).
pub type JobSeq = u32;

/// An upstream job as the driver keeps it (e.g. with its encoded notify line).
pub trait Sv1Job {
    /// The job as the upstream sent it.
    fn notify(&self) -> &Notify;
}

impl Sv1Job for Notify {
    fn notify(&self) -> &Notify {
        self
    }
}

/// What the upstream sent that the channel cannot use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// Its extranonce cannot be split (too small for `min-extranonce2-size`, too large):
    /// another upstream, or another `min-extranonce2-size`, may help.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// A difficulty that is not a finite number above 0 (the previous one is kept).
    #[error("upstream difficulty {0} is not a finite number above 0")]
    Difficulty(f64),
}

/// A miner's place on the channel ([`Channel::add`]): what its subscribe answer and first
/// job need.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The miner's slot (its extranonce1 tail).
    pub slot: u16,
    /// The extranonce1 the miner is told: the upstream's extranonce1 ‖ its tail.
    pub extranonce1: Vec<u8>,
    /// The extranonce2_size the miner is told: the upstream's minus the tail.
    pub extranonce2_size: usize,
    /// The upstream's difficulty now (the miner's ceiling).
    pub upstream_difficulty: f64,
    /// The version bits the upstream lets roll now (0: none).
    pub version_mask: u32,
}

/// A miner's new extranonce after the upstream's changed in place ([`Channel::on_set_extranonce`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExtranonce {
    /// The new extranonce1 (the upstream's new one ‖ the miner's unchanged tail).
    pub extranonce1: Vec<u8>,
    /// The miner's extranonce2_size (unchanged).
    pub extranonce2_size: usize,
}

/// The miners an upstream extranonce change concerns ([`Channel::on_set_extranonce`]).
#[derive(Debug)]
pub struct ExtranonceChange<M> {
    /// Every miner of the channel with its new extranonce when it kept its slot (the
    /// upstream's extranonce2_size is unchanged: only a miner that sent
    /// `mining.extranonce.subscribe` can take it in place), `None` when the split is void
    /// and the miner was taken off the channel: it must reconnect.
    pub miners: Vec<(MinerId, M, Option<NewExtranonce>)>,
}

/// The difficulties a miner's shares are checked at: `current` for jobs from `since_job`
/// on, `before` for older ones (the spec: a `mining.set_difficulty` applies to the next
/// job). Made by [`super::Session::share_difficulty`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareDifficulty {
    /// The difficulty sent before job `since_job`.
    pub current: f64,
    /// The first job at `current`.
    pub since_job: JobSeq,
    /// The difficulty of older jobs.
    pub before: f64,
}

impl ShareDifficulty {
    /// The difficulty a share of job `seq` must meet: `current` from `since_job` on, else
    /// the lower of `before` and `current` (a job older than the last two changes is judged
    /// leniently; the upstream's difficulty decides what is forwarded anyway).
    pub fn for_job(&self, seq: JobSeq) -> f64 {
        if seq >= self.since_job {
            self.current
        } else {
            self.before.min(self.current)
        }
    }
}

/// A miner's submit as the channel checks it; the session's own checks (subscribed, worker
/// authorized) are done ([`super::Session::submit`]).
#[derive(Debug, Clone, Copy)]
pub struct ShareIn<'a> {
    /// The miner.
    pub miner: MinerId,
    /// Its slot ([`Assignment::slot`]).
    pub slot: u16,
    /// The submit as parsed.
    pub submit: &'a Submit,
    /// The version-rolling mask negotiated with the miner (0: none).
    pub version_mask: u32,
    /// The miner's difficulties.
    pub difficulty: ShareDifficulty,
}

/// A share the proxy answers `true` itself: it meets the miner's difficulty, not the
/// upstream's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    /// The job's sequence number.
    pub job: JobSeq,
    /// The difficulty the share was checked at (the miner's; hashrate weight).
    pub difficulty: f64,
    /// The difficulty of the share's hash.
    pub hash_difficulty: f64,
}

/// A share to send upstream, as the upstream sees it.
#[derive(Debug)]
pub struct Forward<J> {
    /// The sequence number of the upstream's answer ([`Channel::add_pending`],
    /// [`Channel::on_result`]).
    pub seq: u64,
    /// The job.
    pub job: Arc<J>,
    /// The share as checked locally.
    pub accepted: Accepted,
    /// The upstream's extranonce1 (a solo block's coinbase needs it).
    pub extranonce1: Vec<u8>,
    /// The extranonce2 the upstream sees: the miner's tail ‖ the miner's extranonce2.
    pub extranonce2: Vec<u8>,
    /// The share's ntime.
    pub ntime: u32,
    /// The share's nonce.
    pub nonce: u32,
    /// The version bits as the miner sent them (inside the mask), `None` without rolling.
    pub version_bits: Option<u32>,
    /// The header that was hashed (the block's, for a solo `submitblock`).
    pub header: Header,
    /// The job's upstream difficulty.
    pub upstream_difficulty: f64,
    /// Whether the hash meets the upstream's difficulty (false only for a block
    /// candidate under it, as on regtest where the network's difficulty is tiny).
    pub meets_upstream: bool,
    /// Whether the hash meets the network target of the job's `nbits`: a block (solo:
    /// submit it to the node; a pool: forwarded whatever the difficulties).
    pub block_candidate: bool,
}

/// What to do with a share that passed every check.
#[derive(Debug)]
pub enum Checked<J> {
    /// Answer `true`, count it, do not forward it.
    Local(Accepted),
    /// Forward it (and for a solo upstream, submit the block when `block_candidate`).
    Forward(Box<Forward<J>>),
}

struct JobEntry<J> {
    job: Arc<J>,
    seq: JobSeq,
    upstream_difficulty: f64,
    seen: SeenHashes,
}

struct Pending<P> {
    payload: P,
    sent: Instant,
}

/// The current job as a miner gets it ([`Channel::current_job`]).
#[derive(Debug)]
pub struct JobRef<'a, J> {
    /// Its sequence number.
    pub seq: JobSeq,
    /// The job.
    pub job: &'a Arc<J>,
    /// The upstream's difficulty for it.
    pub upstream_difficulty: f64,
}

/// One Stratum V1 upstream's state; `M` is the driver's miner handle, `J` its job, `P` what
/// it keeps per forwarded share (who to answer, under which id). See the module doc.
pub struct Channel<M, J, P> {
    min_extranonce2_size: usize,
    /// The upstream's extranonce1 now (the split's layout may hold an older one after an
    /// in-place change: only its tails are used).
    extranonce1: Vec<u8>,
    split: ExtranonceSplit,
    miners: BySlot<M>,
    jobs: VecDeque<JobEntry<J>>,
    last_job_seq: JobSeq,
    /// The upstream's difficulty for its next job.
    difficulty: f64,
    version_mask: u32,
    pending: HashMap<u64, Pending<P>>,
    next_seq: u64,
    empty_since: Option<Instant>,
}

/// A channel's miners by slot: a list indexed by slot (slots are handed out from 0 up, so
/// it is dense), 8 bytes a slot for an `Arc` handle, instead of a hash map's 24 and its
/// spare buckets. The miner's id is its slot's in the channel's `ExtranonceSplit`
/// ([`ExtranonceSplit::active_miner`]): a slot is here exactly while it is active there.
#[derive(Debug)]
struct BySlot<M> {
    slots: Vec<Option<M>>,
    count: usize,
}

impl<M> Default for BySlot<M> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            count: 0,
        }
    }
}

impl<M> BySlot<M> {
    fn insert(&mut self, slot: u16, miner: M) {
        let at = usize::from(slot);
        if at >= self.slots.len() {
            self.slots.resize_with(at + 1, || None);
        }
        if self.slots[at].replace(miner).is_none() {
            self.count += 1;
        }
    }

    fn get(&self, slot: u16) -> Option<&M> {
        self.slots.get(usize::from(slot))?.as_ref()
    }

    fn remove(&mut self, slot: u16) {
        if let Some(entry) = self.slots.get_mut(usize::from(slot)) {
            if entry.take().is_some() {
                self.count -= 1;
            }
        }
        if self.count == 0 {
            self.slots = Vec::new();
        }
    }

    fn len(&self) -> usize {
        self.count
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn iter(&self) -> impl Iterator<Item = (u16, &M)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| Some((u16::try_from(slot).ok()?, e.as_ref()?)))
    }

    fn drain(&mut self) -> impl Iterator<Item = (u16, M)> {
        self.count = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .enumerate()
            .filter_map(|(slot, e)| Some((u16::try_from(slot).ok()?, e?)))
    }
}

/// Whether two jobs hash alike: every field but `clean_jobs`.
fn same_work(a: &Notify, b: &Notify) -> bool {
    a.job_id == b.job_id
        && a.prevhash == b.prevhash
        && a.coinb1 == b.coinb1
        && a.coinb2 == b.coinb2
        && a.merkle_branch == b.merkle_branch
        && a.version == b.version
        && a.nbits == b.nbits
        && a.ntime == b.ntime
}

fn valid_difficulty(d: f64) -> Result<f64, UpstreamError> {
    if d.is_finite() && d > 0.0 {
        Ok(d)
    } else {
        Err(UpstreamError::Difficulty(d))
    }
}

impl<M, J: Sv1Job, P> Channel<M, J, P> {
    /// A channel on an upstream subscription with `extranonce1` and `extranonce2_size`
    /// (bytes), leaving each miner at least `min_extranonce2_size` bytes
    /// (`min-extranonce2-size`, 1..=8, default
    /// [`nonce_split::DEFAULT_MIN_EXTRANONCE2_SIZE`]); the upstream's `difficulty` and
    /// version-rolling `version_mask` (0: none) so far. Empty since `now`.
    ///
    /// # Errors
    /// [`UpstreamError::Split`] ([`ExtranonceLayout::new`]), [`UpstreamError::Difficulty`].
    pub fn new(
        extranonce1: &[u8],
        extranonce2_size: usize,
        min_extranonce2_size: usize,
        difficulty: f64,
        version_mask: u32,
        now: Instant,
    ) -> Result<Self, UpstreamError> {
        let split = ExtranonceSplit::new(extranonce1, extranonce2_size, min_extranonce2_size)?;
        Ok(Self {
            min_extranonce2_size,
            extranonce1: extranonce1.to_vec(),
            split,
            miners: BySlot::default(),
            jobs: VecDeque::new(),
            last_job_seq: 0,
            difficulty: valid_difficulty(difficulty)?,
            version_mask,
            pending: HashMap::new(),
            next_seq: 1,
            empty_since: Some(now),
        })
    }

    fn layout(&self) -> &ExtranonceLayout {
        self.split.layout()
    }

    pub(super) fn miner_extranonce1(&self, slot: u16) -> Result<Vec<u8>, SplitError> {
        let mut e1 = Vec::with_capacity(self.extranonce1.len() + self.layout().tail_size());
        e1.extend_from_slice(&self.extranonce1);
        self.layout().extend_tail(slot, &mut e1)?;
        Ok(e1)
    }

    /// Gives miner `id` a slot (it subscribed): its extranonce1 and extranonce2_size.
    ///
    /// # Errors
    /// [`SlotsFull`] when every slot is active or dead until the next job: open another
    /// upstream subscription. Nothing changes.
    pub fn add(&mut self, id: MinerId, miner: M) -> Result<Assignment, SlotsFull> {
        let slot = self.split.add(id)?;
        let Ok(extranonce1) = self.miner_extranonce1(slot) else {
            // A slot from the split is always in range; give it back if not.
            self.split.remove(id, slot);
            return Err(SlotsFull {
                capacity: self.split.capacity(),
                dead: 0,
            });
        };
        self.miners.insert(slot, miner);
        self.empty_since = None;
        Ok(Assignment {
            slot,
            extranonce1,
            extranonce2_size: self.layout().miner_extranonce2_size(),
            upstream_difficulty: self.difficulty,
            version_mask: self.version_mask,
        })
    }

    /// Miner `id`'s place on `slot` as [`Channel::add`] gave it (with the upstream's
    /// extranonce1, difficulty and mask now); `None` when the slot is not its (it left, or
    /// an extranonce change took it off).
    pub fn assignment(&self, id: MinerId, slot: u16) -> Option<Assignment> {
        if !self.holds(id, slot) {
            return None;
        }
        Some(Assignment {
            slot,
            extranonce1: self.miner_extranonce1(slot).ok()?,
            extranonce2_size: self.layout().miner_extranonce2_size(),
            upstream_difficulty: self.difficulty,
            version_mask: self.version_mask,
        })
    }

    /// The slot of miner `id`, if it is on the channel (a linear search: for the rare
    /// driver paths that lost track of it).
    pub fn slot_of(&self, id: MinerId) -> Option<u16> {
        self.miners
            .iter()
            .map(|(slot, _)| slot)
            .find(|&slot| self.split.active_miner(slot) == Some(id))
    }

    /// Whether miner `id` is on the channel at `slot`.
    fn holds(&self, id: MinerId, slot: u16) -> bool {
        self.miners.get(slot).is_some() && self.split.active_miner(slot) == Some(id)
    }

    /// Miner `id` left `slot`: the slot is dead until the next job (its tail is not given
    /// out while the miner's work may still arrive). False when the slot is not its
    /// (removed already, or taken off by an extranonce change). `now` starts the idle
    /// clock when the channel becomes empty.
    pub fn remove(&mut self, id: MinerId, slot: u16, now: Instant) -> bool {
        if !self.holds(id, slot) {
            return false;
        }
        self.miners.remove(slot);
        self.split.remove(id, slot);
        if self.miners.is_empty() {
            self.empty_since = Some(now);
        }
        true
    }

    /// A `mining.notify` from the upstream: the new current job, at the upstream's
    /// difficulty now. A clean job (`clean_jobs`) voids every other job; otherwise the
    /// older jobs stay until a clean one, [`MAX_JOBS`] at most. A job with the id of a kept
    /// one replaces it (keeping its duplicate memory when its work is the same). Dead slots
    /// become free. Returns the job's sequence number.
    pub fn on_notify(&mut self, job: Arc<J>) -> JobSeq {
        let n = job.notify();
        // A job resent with the same id and the same work keeps its duplicate memory.
        let resent = self
            .jobs
            .iter()
            .position(|e| e.job.notify().job_id == n.job_id)
            .and_then(|i| self.jobs.remove(i))
            .filter(|e| same_work(e.job.notify(), n))
            .map(|e| e.seen);
        if n.clean_jobs {
            self.jobs.clear();
        }
        while self.jobs.len() >= MAX_JOBS {
            self.jobs.pop_front();
        }
        self.last_job_seq = self.last_job_seq.saturating_add(1);
        self.jobs.push_back(JobEntry {
            job,
            seq: self.last_job_seq,
            upstream_difficulty: self.difficulty,
            seen: resent.unwrap_or_else(|| SeenHashes::new(SEEN_SHARES_PER_JOB)),
        });
        self.split.on_new_job();
        self.last_job_seq
    }

    /// A `mining.set_difficulty` from the upstream: its difficulty for the next jobs (the
    /// current ones keep theirs). The driver then tells each miner's session
    /// ([`super::Session::on_job`] clamps at the next job).
    ///
    /// # Errors
    /// [`UpstreamError::Difficulty`] for a value that is not finite and above 0; the
    /// previous difficulty is kept.
    pub fn on_set_difficulty(&mut self, difficulty: f64) -> Result<(), UpstreamError> {
        self.difficulty = valid_difficulty(difficulty)?;
        Ok(())
    }

    /// The upstream's version-rolling mask changed (`mining.set_version_mask`, or its
    /// `mining.configure` answer). Shares are checked against it at once; tell each
    /// miner's session ([`super::Session::on_upstream_mask`]).
    pub fn on_set_version_mask(&mut self, mask: u32) {
        self.version_mask = mask;
    }

    /// The upstream's extranonce changed (`mining.set_extranonce`, or a new subscription
    /// after a reconnect). Every job is void (its coinbase had the old extranonce1). With
    /// the same extranonce2_size the layout is the same: every miner keeps its slot and is
    /// told its new extranonce1 (in place if it subscribed to extranonce changes, else it
    /// must reconnect). With another size the split is rebuilt empty and every miner is
    /// taken off the channel: each must reconnect (stratum-mining/sv2-apps #139). Values
    /// equal to the current ones change nothing.
    ///
    /// # Errors
    /// [`UpstreamError::Split`] when the new extranonce cannot be split; nothing changes
    /// (the caller should drop the upstream).
    pub fn on_set_extranonce(
        &mut self,
        extranonce1: &[u8],
        extranonce2_size: usize,
    ) -> Result<ExtranonceChange<M>, UpstreamError>
    where
        M: Clone,
    {
        let layout =
            ExtranonceLayout::new(extranonce1, extranonce2_size, self.min_extranonce2_size)?;
        if extranonce1 == self.extranonce1
            && extranonce2_size == self.layout().upstream_extranonce2_size()
        {
            return Ok(ExtranonceChange { miners: Vec::new() });
        }
        self.jobs.clear();
        self.extranonce1 = extranonce1.to_vec();
        if extranonce2_size == self.layout().upstream_extranonce2_size() {
            let size = self.layout().miner_extranonce2_size();
            let mut miners = Vec::with_capacity(self.miners.len());
            for (id, slot, m) in self.miners() {
                let new = self.miner_extranonce1(slot).ok().map(|e1| NewExtranonce {
                    extranonce1: e1,
                    extranonce2_size: size,
                });
                miners.push((id, m.clone(), new));
            }
            return Ok(ExtranonceChange { miners });
        }
        let old = std::mem::replace(&mut self.split, ExtranonceSplit::with_layout(layout));
        let miners = self
            .miners
            .drain()
            .filter_map(|(slot, m)| Some((old.active_miner(slot)?, m, None)))
            .collect();
        Ok(ExtranonceChange { miners })
    }

    /// The upstream's connection ended: its jobs are void (a share for one is stale) and
    /// every share in flight is taken out, for the driver to answer
    /// ([`Refusal::UpstreamLost`]): each gets its one verdict here. The miners stay; the
    /// upstream's next subscription comes in through [`Channel::on_set_extranonce`].
    pub fn on_session_end(&mut self) -> Vec<P> {
        self.jobs.clear();
        self.pending.drain().map(|(_, p)| p.payload).collect()
    }

    /// The upstream's connection ended, for a driver whose upstream client answers every
    /// share in flight itself (one verdict per share through [`Channel::on_result`]): its
    /// jobs are void, the shares in flight stay until their answers come.
    pub fn end_jobs(&mut self) {
        self.jobs.clear();
    }

    /// Checks a miner's share against the upstream's jobs and remembers it. In this
    /// order: the job is kept ([`Refusal::JobNotFound`]); the slot is the miner's
    /// ([`Refusal::NotSubscribed`]); extranonce2 has the miner's size
    /// ([`Refusal::Extranonce2Size`]); ntime is within
    /// `[job ntime, job ntime + `[`NTIME_MAX_AHEAD_SECS`]`]` ([`Refusal::NtimeOutOfRange`]);
    /// the version bits are inside the miner's mask AND the upstream's
    /// ([`Refusal::VersionBits`]); sha256d of the header meets the miner's difficulty for
    /// the job ([`Refusal::LowDifficulty`]) unless it is a block; the header was not
    /// submitted before ([`Refusal::Duplicate`]). A share that meets the upstream's
    /// difficulty for the job, or the network target, is forwarded (it gets its sequence
    /// number here); any other is answered locally.
    ///
    /// # Errors
    /// The refusals above.
    pub fn check_share(&mut self, share: &ShareIn<'_>) -> Result<Checked<J>, Refusal> {
        let submit = share.submit;
        let index = self
            .jobs
            .iter()
            .rposition(|e| e.job.notify().job_id == submit.job_id)
            .ok_or(Refusal::JobNotFound)?;
        if self.split.active_miner(share.slot) != Some(share.miner) {
            return Err(Refusal::NotSubscribed);
        }
        let extranonce2 = self
            .layout()
            .upstream_extranonce2(share.slot, &submit.extranonce2)
            .map_err(|_| Refusal::Extranonce2Size {
                expected: self.layout().miner_extranonce2_size(),
                got: submit.extranonce2.len(),
            })?;
        let miner_extranonce1 = self
            .miner_extranonce1(share.slot)
            .map_err(|_| Refusal::NotSubscribed)?;
        let mask = share.version_mask & self.version_mask;
        let entry = &mut self.jobs[index];
        let job = entry.job.notify();
        if submit.ntime < job.ntime || submit.ntime > job.ntime.saturating_add(NTIME_MAX_AHEAD_SECS)
        {
            return Err(Refusal::NtimeOutOfRange);
        }
        let difficulty = share.difficulty.for_job(entry.seq);
        let check = share::check_share(job, &miner_extranonce1, submit, mask, difficulty)
            .map_err(|_| Refusal::VersionBits)?;
        if !check.meets_share && !check.meets_network {
            return Err(Refusal::LowDifficulty);
        }
        let meets_upstream = check.difficulty >= entry.upstream_difficulty;
        let local = !meets_upstream && !check.meets_network;
        if !entry.seen.remember(check.hash.as_byte_array(), local) {
            return Err(Refusal::Duplicate);
        }
        let accepted = Accepted {
            job: entry.seq,
            difficulty,
            hash_difficulty: check.difficulty,
        };
        if local {
            return Ok(Checked::Local(accepted));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(Checked::Forward(Box::new(Forward {
            seq,
            job: Arc::clone(&entry.job),
            accepted,
            extranonce1: self.extranonce1.clone(),
            extranonce2,
            ntime: submit.ntime,
            nonce: submit.nonce,
            version_bits: submit.version_bits,
            header: check.header,
            upstream_difficulty: entry.upstream_difficulty,
            meets_upstream,
            block_candidate: check.meets_network,
        })))
    }

    /// Keeps a forwarded share until the upstream answers it; call before writing it, so
    /// that the answer always finds it. `now` is when it was sent.
    pub fn add_pending(&mut self, seq: u64, payload: P, now: Instant) {
        self.pending.insert(seq, Pending { payload, sent: now });
    }

    /// The upstream's answer to share `seq`: what was kept for it and the round-trip
    /// time, or `None` when it was answered (or expired) already: never twice.
    pub fn on_result(&mut self, seq: u64, now: Instant) -> Option<(P, Duration)> {
        self.pending
            .remove(&seq)
            .map(|p| (p.payload, now.saturating_duration_since(p.sent)))
    }

    /// Takes out the shares sent `timeout` or longer before `now` and not answered, for
    /// the driver to answer ([`Refusal::UpstreamTimeout`]); a late answer then finds
    /// nothing.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<P> {
        let old: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= timeout)
            .map(|(&seq, _)| seq)
            .collect();
        let mut out = Vec::with_capacity(old.len());
        for seq in old {
            if let Some(p) = self.pending.remove(&seq) {
                out.push(p.payload);
            }
        }
        out
    }

    /// The newest job, for a miner that just became ready.
    pub fn current_job(&self) -> Option<JobRef<'_, J>> {
        self.jobs.back().map(|e| JobRef {
            seq: e.seq,
            job: &e.job,
            upstream_difficulty: e.upstream_difficulty,
        })
    }

    /// The upstream's difficulty for its next job.
    pub fn difficulty(&self) -> f64 {
        self.difficulty
    }

    /// The upstream's version-rolling mask (0: none).
    pub fn version_mask(&self) -> u32 {
        self.version_mask
    }

    /// The upstream's extranonce1 now.
    pub fn extranonce1(&self) -> &[u8] {
        &self.extranonce1
    }

    /// The extranonce2_size each miner is given.
    pub fn miner_extranonce2_size(&self) -> usize {
        self.layout().miner_extranonce2_size()
    }

    /// How many miners the channel can hold at once (1, 256 or 65,536).
    pub fn capacity(&self) -> usize {
        self.split.capacity()
    }

    /// Every miner on the channel: its id, slot and handle (no order).
    pub fn miners(&self) -> impl Iterator<Item = (MinerId, u16, &M)> + '_ {
        self.miners
            .iter()
            .filter_map(|(slot, m)| Some((self.split.active_miner(slot)?, slot, m)))
    }

    /// Number of miners on the channel.
    pub fn miner_count(&self) -> usize {
        self.miners.len()
    }

    /// Number of shares sent upstream and not answered yet.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// What was kept for share `seq` ([`Channel::add_pending`]) while it waits for its
    /// answer; `None` once answered or expired.
    pub fn pending(&self, seq: u64) -> Option<&P> {
        self.pending.get(&seq).map(|p| &p.payload)
    }

    /// What was kept for every share waiting for its answer (no order): the driver finds
    /// there the miners that still await an answer (a miner told to reconnect is closed
    /// only after its last one).
    pub fn pending_all(&self) -> impl Iterator<Item = &P> + '_ {
        self.pending.values().map(|p| &p.payload)
    }

    /// True when the channel has had no miner for `keep` or longer at `now`.
    pub fn idle_for(&self, keep: Duration, now: Instant) -> bool {
        self.empty_since
            .is_some_and(|t| now.saturating_duration_since(t) >= keep)
    }
}
