//! What any stratum family's sans-IO pieces give the driver (`proxy-core`): a miner's
//! session ([`MinerSession`]) and an upstream's channel ([`UpstreamChannel`]). CryptoNote's
//! [`Session`] and [`Channel`] implement them here; a second family (Bitcoin Stratum V1)
//! implements them for its own session and channel, beside these.
//!
//! The driver calls only these methods on a session or a channel it does not know; the rest
//! (parsing a request, checking a share, encoding a reply) is the family's own code, called
//! from the family's part of the driver. Like the rest of the crate: no I/O, no clock (every
//! `now` passed in), no lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nonce_split::MinerId;

use crate::{Channel, ChannelJob, Phase, Session, ShareTally};

/// A miner's protocol state, as the driver sees it: the phase (deadlines, monitoring, worker
/// records), the difficulty of its last job (monitoring), the invalid-share tally, and the
/// moments the driver reports (routed, close).
///
/// Invariant: the phase is advanced only by the session itself (from the family's request
/// handling and job delivery, and [`MinerSession::close`] /
/// [`MinerSession::login_refused`]). [`Phase::WaitLogin`] is "not yet admitted" (the login
/// timeout applies), [`Phase::WaitReady`] "admitted, waiting for the upstream's first job",
/// [`Phase::Ready`] "mining".
pub trait MinerSession: Send + 'static {
    /// A session waiting for its login (or, Stratum V1, its subscribe).
    fn new() -> Self;
    /// The current phase.
    fn phase(&self) -> Phase;
    /// Difficulty of the last job sent, rounded to an integer (monitoring); 0 before the
    /// first.
    fn diff(&self) -> u64;
    /// The miner was routed to an upstream (`true`) or left it (`false`).
    fn set_routed(&mut self, routed: bool);
    /// No upstream could take the miner: back to waiting for a login.
    fn login_refused(&mut self);
    /// The connection is closing.
    fn close(&mut self);
    /// Counts one answered share for the invalid-share rule; the tally after it.
    fn count_share(&mut self, valid: bool) -> ShareTally;
}

/// One upstream connection's protocol state, as the driver sees it: `M` is the driver's
/// miner handle, `P` what the driver keeps per share in flight.
///
/// Invariants: a miner holds one disjoint part of the upstream's search space (its
/// [`UpstreamChannel::Slot`]); a part freed by [`UpstreamChannel::remove`] is handed out
/// again only after the next job; every sequence number given to a forwarded share is
/// answered by [`UpstreamChannel::on_result`] once (a second call finds nothing).
pub trait UpstreamChannel<M, P> {
    /// Where a miner sits on the upstream (CryptoNote: the NiceHash fixed byte, `None` in
    /// simple mode; Stratum V1: the index of its extranonce tail).
    type Slot: Copy + Send + Sync + 'static;
    /// An upstream job as the driver keeps it (encoded once for every miner).
    type Job;

    /// Puts miner `id` in a free slot; `None` when the channel is full.
    fn add(&mut self, id: MinerId, miner: M) -> Option<Self::Slot>;
    /// Frees miner `id`'s slot; false when it is not its (removed already). `now` starts
    /// the idle clock when the channel becomes empty.
    fn remove(&mut self, id: MinerId, slot: Self::Slot, now: Instant) -> bool;
    /// A new job in upstream session `session`.
    fn on_job(&mut self, job: Arc<Self::Job>, session: u64);
    /// The upstream session ended and its jobs with it.
    fn on_session_end(&mut self);
    /// The current job.
    fn job(&self) -> Option<&Arc<Self::Job>>;
    /// Every miner on the channel with its slot.
    fn miners<'a>(&'a self) -> impl Iterator<Item = (Self::Slot, &'a M)> + 'a
    where
        M: 'a;
    /// A number for `slot` that spreads the miners of one upstream evenly (the driver's
    /// fan-out threads split by it; one slot always gives the same number).
    fn spread(slot: Self::Slot) -> usize;
    /// Number of miners on the channel.
    fn miner_count(&self) -> usize;
    /// Since when the channel has had no miner (the `now` of the [`UpstreamChannel::remove`]
    /// that emptied it); `None` while it has one.
    fn empty_since(&self) -> Option<Instant>;
    /// True when the channel has had no miner for `keep` or longer at `now` (RFC §8.1 `GC`).
    fn idle_for(&self, keep: Duration, now: Instant) -> bool {
        self.empty_since()
            .is_some_and(|t| now.saturating_duration_since(t) >= keep)
    }
    /// Keeps a forwarded share until the upstream answers it; called before the upstream
    /// write, so that the answer always finds it.
    fn add_pending(&mut self, seq: u64, payload: P, now: Instant);
    /// The upstream's answer to share `seq`: what was kept and the latency; `None` when
    /// `seq` was answered already.
    fn on_result(&mut self, seq: u64, now: Instant) -> Option<(P, Duration)>;
}

/// CryptoNote's session keeps no route of its own in the driver: the driver keeps the route
/// beside it, and the session knows only whether there is one.
impl MinerSession for Session<()> {
    fn new() -> Self {
        Session::new()
    }
    fn phase(&self) -> Phase {
        Session::phase(self)
    }
    fn diff(&self) -> u64 {
        Session::diff(self)
    }
    fn set_routed(&mut self, routed: bool) {
        if routed {
            Session::set_route(self, ());
        } else {
            Session::take_route(self);
        }
    }
    fn login_refused(&mut self) {
        Session::login_refused(self);
    }
    fn close(&mut self) {
        Session::close(self);
    }
    fn count_share(&mut self, valid: bool) -> ShareTally {
        Session::count_share(self, valid)
    }
}

impl<M, J: ChannelJob, P> UpstreamChannel<M, P> for Channel<M, J, P> {
    type Slot = Option<u8>;
    type Job = J;

    fn add(&mut self, id: MinerId, miner: M) -> Option<Option<u8>> {
        Channel::add(self, id, miner)
    }
    fn remove(&mut self, id: MinerId, slot: Option<u8>, now: Instant) -> bool {
        Channel::remove(self, id, slot, now)
    }
    fn on_job(&mut self, job: Arc<J>, session: u64) {
        Channel::on_job(self, job, session);
    }
    fn on_session_end(&mut self) {
        Channel::on_session_end(self);
    }
    fn job(&self) -> Option<&Arc<J>> {
        Channel::job(self)
    }
    fn miners<'a>(&'a self) -> impl Iterator<Item = (Option<u8>, &'a M)> + 'a
    where
        M: 'a,
    {
        Channel::miners(self)
    }
    fn spread(slot: Option<u8>) -> usize {
        usize::from(slot.unwrap_or(0))
    }
    fn miner_count(&self) -> usize {
        Channel::miner_count(self)
    }
    fn empty_since(&self) -> Option<Instant> {
        Channel::empty_since(self)
    }
    fn add_pending(&mut self, seq: u64, payload: P, now: Instant) {
        Channel::add_pending(self, seq, payload, now);
    }
    fn on_result(&mut self, seq: u64, now: Instant) -> Option<(P, Duration)> {
        Channel::on_result(self, seq, now)
    }
}
