//! One upstream channel: the miners on one pool connection, its jobs and its shares in flight
//! (go-proxy RFC §8.2 `NonceMapper`, §9 `SimpleMapper`).
//!
//! A [`Channel`] holds the NiceHash slot table ([`NonceStorage`]), the miner handle per slot,
//! the current and previous job with the nonces seen for each (duplicates), and the shares
//! sent to the pool and not yet answered, keyed by sequence number. It does no I/O and reads
//! no clock: the driver calls [`Channel::add`] / [`Channel::remove`] on login and close,
//! [`Channel::on_job`] on a pool job, [`Channel::on_session_end`] when the pool session ends,
//! [`Channel::check_share`] on a submit, then [`Channel::add_pending`] before writing the
//! share to the pool and [`Channel::on_result`] with the pool's answer.
//!
//! Exactly one verdict per share: a share refused by [`Channel::check_share`] is answered by
//! the driver at once; a forwarded one is in `pending` until [`Channel::on_result`] takes it
//! out, once (a second answer for the same sequence number finds nothing).

use foldhash::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nonce_split::{nonce_fixed_byte, JobMatch, MinerId, NonceStorage};
use stratum_proto::Job;

use crate::seen::SeenShares;
use crate::Refusal;

/// NiceHash: miners per upstream channel (one per value of the fixed byte).
pub const NICEHASH_SLOTS: usize = 256;

/// Nonces remembered per upstream job and kind (forwarded, answered locally) to refuse
/// duplicate shares: the latest 2048 of each kind always, at most 4096 (48 KB of heap at
/// most, measured after a million distinct nonces), see [`nonce_split::SeenNonces`]. A
/// channel keeps two jobs (current and previous), so at most 4 × 4096 nonces (under
/// 200 KB), whatever its miners send.
pub const SEEN_NONCES_PER_JOB: usize = 4096;

/// A pool job as the driver keeps it (e.g. with its encoded notification lines).
pub trait ChannelJob {
    /// The job as the pool sent it.
    fn job(&self) -> &Job;
    /// The pool's difficulty for the job.
    fn difficulty(&self) -> u64;
}

/// The difficulty a miner works at: its custom difficulty when set and below the pool's,
/// else the pool's (RFC §14: a custom difficulty above the pool's is ignored).
pub fn effective_difficulty(custom: u64, pool: u64) -> u64 {
    if custom > 0 && custom < pool {
        custom
    } else {
        pool
    }
}

/// A share to check against the channel's jobs, its own fields already checked
/// ([`crate::check_submit`]).
#[derive(Debug, Clone, Copy)]
pub struct ShareIn<'a> {
    /// `params.job_id`.
    pub job_id: &'a str,
    /// The 4 nonce bytes, blob order.
    pub nonce: [u8; 4],
    /// The difficulty the share's hash meets.
    pub share_diff: u64,
    /// `params.algo`, when sent.
    pub algo: Option<&'a str>,
    /// The miner's custom difficulty; 0 = none.
    pub custom_diff: u64,
}

/// What to do with a share that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// It meets the miner's lowered target but not the pool's: answered `OK` here, never
    /// forwarded (RFC §14).
    Local {
        /// The miner's difficulty.
        difficulty: u64,
    },
    /// Forward it to the pool under `seq`, after [`Channel::add_pending`].
    Forward {
        /// The sequence number the pool's answer comes back with.
        seq: u64,
        /// The pool session the job belongs to.
        session: u64,
        /// The job is the previous one (RFC §8.2: still forwarded, counted as expired).
        expired: bool,
        /// The miner's difficulty.
        difficulty: u64,
        /// The pool's difficulty for the job.
        pool_difficulty: u64,
    },
}

struct Pending<P> {
    payload: P,
    sent: Instant,
}

/// One upstream channel's state; `M` is the driver's miner handle, `J` its job, `P` what it
/// keeps per share in flight (who to answer, under which id). See the module doc.
pub struct Channel<M, J, P> {
    nicehash: bool,
    storage: NonceStorage,
    /// Miner (id, handle) per slot: 256 in NiceHash mode, 1 in simple mode.
    miners: Vec<Option<(MinerId, M)>>,
    active: usize,
    job: Option<Arc<J>>,
    prev: Option<Arc<J>>,
    seen: SeenShares,
    prev_seen: SeenShares,
    session: u64,
    pending: HashMap<u64, Pending<P>>,
    next_seq: u64,
    empty_since: Option<Instant>,
}

impl<M, J: ChannelJob, P> Channel<M, J, P> {
    /// An empty channel: 256 slots when `nicehash`, else one (simple mode).
    pub fn new(nicehash: bool) -> Self {
        let slots = if nicehash { NICEHASH_SLOTS } else { 1 };
        Self {
            nicehash,
            storage: NonceStorage::new(),
            miners: std::iter::repeat_with(|| None).take(slots).collect(),
            active: 0,
            job: None,
            prev: None,
            seen: SeenShares::new(SEEN_NONCES_PER_JOB),
            prev_seen: SeenShares::new(SEEN_NONCES_PER_JOB),
            session: 0,
            pending: HashMap::default(),
            next_seq: 1,
            empty_since: None,
        }
    }

    /// Puts miner `id` in a free slot (RFC §8.1 `OnLogin`). `Some(fixed_byte)` on success:
    /// the NiceHash fixed byte, `None` in simple mode; `None` when the channel is full (256
    /// miners, or one in simple mode; a dead slot is free again only after the next job).
    pub fn add(&mut self, id: MinerId, miner: M) -> Option<Option<u8>> {
        let fixed_byte = if self.nicehash {
            Some(self.storage.add(id)?)
        } else {
            if self.active > 0 {
                return None;
            }
            None
        };
        self.miners[usize::from(fixed_byte.unwrap_or(0))] = Some((id, miner));
        self.active += 1;
        self.empty_since = None;
        Some(fixed_byte)
    }

    /// Frees miner `id`'s slot (RFC §8.1 `OnClose`); false when the slot is not its (already
    /// removed). `now` starts the idle clock when the channel becomes empty.
    pub fn remove(&mut self, id: MinerId, fixed_byte: Option<u8>, now: Instant) -> bool {
        let index = usize::from(fixed_byte.unwrap_or(0));
        if self.miners[index].as_ref().is_none_or(|(m, _)| *m != id) {
            return false;
        }
        self.miners[index] = None;
        if let Some(b) = fixed_byte {
            self.storage.remove(id, b);
        }
        self.active -= 1;
        if self.active == 0 {
            self.empty_since = Some(now);
        }
        true
    }

    /// A new job from the pool in pool session `session` (RFC §8.2 `SetJob`). In the same
    /// session the current job becomes the previous one (its shares still forwarded) and dead
    /// slots are freed; a new session forgets both. A job resent with the same id and blob
    /// keeps its duplicate memory.
    pub fn on_job(&mut self, job: Arc<J>, session: u64) {
        let same_pool = session == self.session;
        self.session = session;
        self.storage.set_job(&job.job().job_id, same_pool);
        let same_work = self.job.as_ref().is_some_and(|old| {
            old.job().job_id == job.job().job_id && old.job().blob == job.job().blob
        });
        let old = self.job.replace(job);
        if same_pool {
            let fresh = SeenShares::new(SEEN_NONCES_PER_JOB);
            if same_work {
                self.prev_seen = fresh;
            } else {
                self.prev_seen = std::mem::replace(&mut self.seen, fresh);
            }
            self.prev = old;
        } else {
            self.prev = None;
            self.seen = SeenShares::new(SEEN_NONCES_PER_JOB);
            self.prev_seen = SeenShares::new(SEEN_NONCES_PER_JOB);
        }
    }

    /// The pool session ended and its jobs with it: a share for one of them is refused at
    /// once ([`Refusal::StaleJob`]), never sent to the next session. Shares in flight stay
    /// pending: the upstream answers each (an error when the connection is gone).
    pub fn on_session_end(&mut self) {
        self.storage.clear_jobs();
        self.job = None;
        self.prev = None;
        self.seen = SeenShares::new(SEEN_NONCES_PER_JOB);
        self.prev_seen = SeenShares::new(SEEN_NONCES_PER_JOB);
    }

    /// Checks a share of the miner with `fixed_byte` against the channel's jobs (RFC §6.2
    /// step 4, §8.2, §14, issue 10 item 3) and remembers its nonce. A share to forward gets
    /// its sequence number here.
    ///
    /// # Errors
    /// [`Refusal::StaleJob`], [`Refusal::WrongFixedByte`], [`Refusal::WrongAlgorithm`],
    /// [`Refusal::LowDifficulty`] or [`Refusal::Duplicate`], in that order.
    pub fn check_share(
        &mut self,
        fixed_byte: Option<u8>,
        share: &ShareIn<'_>,
    ) -> Result<Checked, Refusal> {
        self.check(fixed_byte, None, share)
    }

    /// [`Channel::check_share`] for `extra_nonce` mode: the miner in slot `extra_nonce` has
    /// the whole nonce space (no fixed byte is checked) and its own blob, so its duplicates
    /// are told by (extra nonce, nonce): another miner's share with the same nonce is new.
    ///
    /// # Errors
    /// As [`Channel::check_share`], without [`Refusal::WrongFixedByte`].
    pub fn check_extra_nonce_share(
        &mut self,
        extra_nonce: u8,
        share: &ShareIn<'_>,
    ) -> Result<Checked, Refusal> {
        self.check(None, Some(extra_nonce), share)
    }

    fn check(
        &mut self,
        fixed_byte: Option<u8>,
        extra_nonce: Option<u8>,
        share: &ShareIn<'_>,
    ) -> Result<Checked, Refusal> {
        let (info, seen, expired) = match self.storage.job_match(share.job_id) {
            JobMatch::Current => (self.job.as_deref(), &mut self.seen, false),
            JobMatch::Previous => (self.prev.as_deref(), &mut self.prev_seen, true),
            JobMatch::Unknown => (None, &mut self.seen, false),
        };
        let info = info.ok_or(Refusal::StaleJob)?;
        if fixed_byte.is_some_and(|fb| nonce_fixed_byte(share.nonce) != fb) {
            return Err(Refusal::WrongFixedByte);
        }
        if let (Some(share_algo), Some(job_algo)) = (share.algo, info.job().algo.as_deref()) {
            if share_algo != job_algo {
                return Err(Refusal::WrongAlgorithm);
            }
        }
        let pool_difficulty = info.difficulty();
        let difficulty = effective_difficulty(share.custom_diff, pool_difficulty);
        if share.share_diff < difficulty {
            return Err(Refusal::LowDifficulty);
        }
        let local = share.share_diff < pool_difficulty;
        // A repeat of a share already answered (same job, same nonce) is refused and never
        // forwarded, local or not.
        let new = match extra_nonce {
            Some(x) => seen.remember_pair(x, share.nonce, local),
            None => seen.remember(share.nonce, local),
        };
        if !new {
            return Err(Refusal::Duplicate);
        }
        if local {
            return Ok(Checked::Local { difficulty });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(Checked::Forward {
            seq,
            session: self.session,
            expired,
            difficulty,
            pool_difficulty,
        })
    }

    /// Keeps a forwarded share until the pool answers it; call before writing it to the
    /// pool, so that the answer always finds it. `now` is when it was sent (latency).
    pub fn add_pending(&mut self, seq: u64, payload: P, now: Instant) {
        self.pending.insert(seq, Pending { payload, sent: now });
    }

    /// The pool's answer to share `seq`: what was kept for it and the round-trip latency, or
    /// `None` when `seq` was answered already (never twice).
    pub fn on_result(&mut self, seq: u64, now: Instant) -> Option<(P, Duration)> {
        let answered = self
            .pending
            .remove(&seq)
            .map(|p| (p.payload, now.saturating_duration_since(p.sent)));
        if !self.nicehash && self.pending.is_empty() && self.pending.capacity() > 0 {
            // Simple mode has a channel per miner: its table of shares in flight is freed
            // whenever none is (a NiceHash channel keeps its one table for 256 miners).
            self.pending = HashMap::default();
        }
        answered
    }

    /// Slots of the table of shares in flight (0: none allocated).
    #[cfg(test)]
    pub(crate) fn pending_capacity(&self) -> usize {
        self.pending.capacity()
    }

    /// The current job.
    pub fn job(&self) -> Option<&Arc<J>> {
        self.job.as_ref()
    }

    /// Every miner on the channel: its NiceHash fixed byte (`None` in simple mode) and handle.
    pub fn miners(&self) -> impl Iterator<Item = (Option<u8>, &M)> + '_ {
        let nicehash = self.nicehash;
        self.miners.iter().enumerate().filter_map(move |(slot, m)| {
            m.as_ref()
                .map(|(_, m)| (nicehash.then(|| u8::try_from(slot).unwrap_or(0)), m))
        })
    }

    /// Number of miners on the channel.
    pub fn miner_count(&self) -> usize {
        self.active
    }

    /// Number of shares sent to the pool and not answered yet.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Since when the channel has had no miner; `None` while it has one (or never had).
    pub fn empty_since(&self) -> Option<Instant> {
        self.empty_since
    }

    /// True when the channel has had no miner for `keep` or longer at `now` (RFC §8.1 `GC`).
    pub fn idle_for(&self, keep: Duration, now: Instant) -> bool {
        self.empty_since
            .is_some_and(|t| now.saturating_duration_since(t) >= keep)
    }
}
