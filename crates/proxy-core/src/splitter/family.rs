//! The seam for stratum families: what a family (CryptoNote today, Bitcoin Stratum V1 next)
//! gives the driver's splitter. The miner side (a line from a miner → a session step → an
//! answer) is the `MinerProtocol` trait of `miner.rs`, which extends this one; the families
//! themselves are in `family/` (CryptoNote: `family/cryptonote.rs`).
//!
//! Everything is statically dispatched: the splitter, its mappers, the miner and the driver
//! loops are generic over `F: Family` and monomorphised, so a share's path has no dynamic
//! call, no allocation and no task hop the family does not make itself.
//!
//! Invariants a family keeps (the driver relies on them):
//! - Its session ([`stratum_session::MinerSession`]) and channel
//!   ([`stratum_session::UpstreamChannel`]) do no I/O, read no clock and take no lock.
//! - [`Family::deliver`] and [`Family::reply`] only encode and write through the miner's
//!   `send*` methods (straight to its socket or bounded outbox); they are called with no
//!   mapper lock held, and take only the miner's own lock (through
//!   [`Downstream::with_session`]).
//! - A job is encoded once per upstream job (in [`Family::Job`]), and per miner only patched.
//! - The upstream client reports each forwarded share once (`Mapper::on_verdict_at`), jobs
//!   through `Mapper::fan_out` and its state through `Mapper::on_upstream_state`.

use std::sync::Arc;

use stratum_proto::Id;
use stratum_session::{MinerSession, UpstreamChannel};

use super::{Downstream, Mapper, Pending};
use crate::config::{Config, Protocol};

/// A stratum family's pieces, as the splitter and the miner driver use them. Implemented by
/// a unit type per family (`family::CryptoNote`).
pub(crate) trait Family: Sized + Send + Sync + 'static {
    /// The config's name of the family: its binds and pools are those whose `protocol` is
    /// this one.
    const PROTOCOL: Protocol;
    /// A miner's sans-IO session (phase, session id, difficulty, tally; e.g.
    /// `stratum_session::Session<()>`). The driver keeps the route beside it.
    type Session: MinerSession;
    /// Where a miner sits on its upstream: CryptoNote's NiceHash fixed byte
    /// (`Option<u8>`), Stratum V1's extranonce tail index.
    type Slot: Copy + Send + Sync + 'static;
    /// An upstream job as the driver keeps it: the pool's job, encoded once for every miner
    /// (CryptoNote: the job and its `JobLine`s). Shared by the fan-out threads.
    type Job: Send + Sync + 'static;
    /// One upstream's sans-IO state, holding the driver's miner handles `M`.
    type Channel<M: Clone + Send + Sync + 'static>: UpstreamChannel<M, Pending<M>, Slot = Self::Slot, Job = Self::Job>
        + Send
        + 'static;
    /// The upstream client handle (CryptoNote: `pool_client::Upstream`); its task reports to
    /// the mapper.
    type Upstream: Send + Sync + 'static;
    /// The pool list shared by the family's upstream clients ([`Family::new_pools`]).
    type Pools: Send + Sync + 'static;
    /// What [`Family::deliver`] needs of the running config, worked out once per job fan-out
    /// (CryptoNote: the extensions of the login reply).
    type JobConfig: Send + Sync + 'static;

    /// An empty channel; `nicehash`: many miners per upstream, else one (simple mode).
    fn new_channel<M: Clone + Send + Sync + 'static>(nicehash: bool) -> Self::Channel<M>;

    /// The parts of `config` that delivering a job needs.
    fn job_config(config: &Config) -> Self::JobConfig;

    /// Sends `job` to `miner` in `slot`: the deferred login (SV1: subscribe) reply when its
    /// session waits for its first job, else a job notification; nothing when the session
    /// says so. Called with no mapper lock held (or under it only when the miner just took
    /// its slot, see `Mapper::try_add`).
    fn deliver<M: Downstream<Self>>(
        job: &Self::Job,
        miner: &M,
        slot: Self::Slot,
        config: &Self::JobConfig,
    );

    /// Answers request `id` of `miner`: accepted, or refused with the message.
    fn reply<M: Downstream<Self>>(miner: &M, id: &Id, result: Result<(), &str>);

    /// Answers a forwarded share the upstream refused with `reason` and, when it gave one,
    /// its own error `code`. The default answers [`Family::reply`]'s refusal (the code
    /// unused).
    fn reply_refused<M: Downstream<Self>>(miner: &M, id: &Id, reason: &str, code: Option<i64>) {
        let _ = code;
        Self::reply(miner, id, Err(reason));
    }

    /// The pool list and timing the splitter keeps once for all its upstreams (CryptoNote:
    /// `pool_client::PoolList`, which every upstream follows, so simple mode's upstream per
    /// miner holds no copy of its own).
    fn new_pools(config: &Config) -> Self::Pools;

    /// Starts the upstream client of a new mapper, reporting to it (with the pools of
    /// `pools`, until `mapper.cancel_token()` is cancelled).
    fn spawn_upstream<M: Downstream<Self>>(
        mapper: &Arc<Mapper<Self, M>>,
        pools: &Self::Pools,
        config: &Config,
    ) -> Self::Upstream;

    /// Hands a reloaded pool list and timing to the running upstream clients (`upstreams`:
    /// every one of them; a family whose clients follow `pools` needs only `pools`).
    fn set_pools<'a>(
        pools: &Self::Pools,
        upstreams: impl Iterator<Item = &'a Self::Upstream>,
        config: &Config,
    ) where
        Self::Upstream: 'a;
}
