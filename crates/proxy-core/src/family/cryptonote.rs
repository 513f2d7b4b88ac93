//! CryptoNote (Monero) stratum, the first family (go-proxy RFC §6, §8, §9, §14): what the
//! driver needs to serve it and nothing else does.
//!
//! - The miner side ([`MinerProtocol`]): a line → `stratum_proto::cryptonote`'s
//!   `parse_miner_request` → `login` (the session's rules, then the splitter routes the miner),
//!   `submit` (the session's checks, then the mapper's channel), `keepalived`, `getjob`; each
//!   answer encoded here.
//! - The upstream side ([`Family`]): `stratum_session::Channel` (NiceHash slots through
//!   `nonce_split::NonceStorage`), [`JobInfo`] (a pool job and its `JobLine`s, encoded once per
//!   job and difficulty), the deferred login reply, and `pool_client::Upstream` (a stratum
//!   pool or a Monero daemon) reporting to the mapper as its `UpstreamListener`.
//!
//! `extra_nonce` mode (daemon upstreams only): the channel's slot table is the NiceHash one,
//! but a slot's index (0..=255) is its miner's extra nonce, not a fixed byte. A daemon job
//! comes with its block template split (`pool_client::monero_block::BlockWork`, shared by
//! the job's miners); each miner's job carries the hashing blob of its extra nonce (built
//! when the job is written to it, never kept per miner), the whole nonce space, and no
//! `nicehash` extension. Its shares are checked by (extra nonce, nonce) and carry the extra
//! nonce to the daemon, which writes it into the block it submits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pool_client::monero_block::{BlockError, BlockWork};
use pool_client::{PoolList, Share, ShareError, Upstream, UpstreamListener, UpstreamState};
use stratum_proto::cryptonote::{
    encode_error, encode_getjob_ok, encode_job_notification, encode_login_ok, encode_status,
    parse_miner_request, JobLine, LoginParams, MinerRequest, SessionParams, SubmitParams,
};
use stratum_proto::job::encode_hex;
use stratum_proto::{difficulty_to_target, Id, Job};
use stratum_session::{
    check_submit, effective_difficulty, Channel, ChannelJob, Checked, JobFor, LoginRules, Refusal,
    Session, ShareIn,
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{Config, Mode};
use crate::lock;
use crate::miner::{Flow, Miner, MinerProtocol, Route};
use crate::splitter::{failover_options, Downstream, Family, Mapper, Pending, Verdict};
use crate::Shared;

pub use stratum_session::NICEHASH_SLOTS;

/// The error a repeated share (same job, same nonce) is answered with; it is not forwarded.
pub const DUPLICATE_SHARE: &str = Refusal::Duplicate.message();

/// The CryptoNote family.
pub(crate) struct CryptoNote;

/// A job as sent to a mapper's miners, encoded once. Shared, so that the fan-out runs
/// without the mapper's lock.
pub(crate) struct JobInfo {
    job: Job,
    /// The pool's difficulty for the job.
    difficulty: u64,
    /// The `job` notification at the pool's difficulty.
    line: JobLine,
    /// The `job` notification at each custom difficulty in use (RFC §14), encoded on first
    /// use.
    custom_lines: Mutex<HashMap<u64, JobLine>>,
    /// `extra_nonce` mode: the block template each miner's blob is built from (the slot is
    /// the miner's extra nonce). `None` in the other modes.
    work: Option<Arc<BlockWork>>,
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
    fn new(job: Job, work: Option<Arc<BlockWork>>) -> Self {
        Self {
            difficulty: job.difficulty(),
            line: JobLine::new(&job),
            job,
            custom_lines: Mutex::new(HashMap::new()),
            work,
        }
    }

    /// The job as a miner working at `difficulty` sees it (target rewritten when it is not
    /// the pool's), with the fixed byte patched, or in `extra_nonce` mode with the blob of
    /// the miner whose extra nonce is `slot`.
    fn job_for(&self, difficulty: u64, slot: Option<u8>) -> Job {
        let mut j = self.job.clone();
        if difficulty != self.difficulty {
            j.target = difficulty_to_target(difficulty);
        }
        match (&self.work, slot) {
            (Some(work), Some(extra_nonce)) => {
                j.blob = encode_hex(&work.hashing_blob(u32::from(extra_nonce)));
            }
            (None, Some(b)) => j.blob = self.job.blob_with_fixed_byte(b),
            (_, None) => {}
        }
        j
    }

    /// The bytes of the `job` notification for a miner at `difficulty` with `fixed_byte`
    /// (in `extra_nonce` mode: with extra nonce `fixed_byte`, encoded for the miner alone).
    fn parts_for(&self, difficulty: u64, fixed_byte: Option<u8>) -> [Bytes; 3] {
        if self.work.is_some() {
            let line = encode_job_notification(&self.job_for(difficulty, fixed_byte));
            return [Bytes::from(line), Bytes::new(), Bytes::new()];
        }
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

impl Family for CryptoNote {
    const PROTOCOL: crate::config::Protocol = crate::config::Protocol::CryptoNote;
    type Session = Session<()>;
    type Slot = Option<u8>;
    type Job = JobInfo;
    type Channel<M: Clone + Send + Sync + 'static> = Channel<M, JobInfo, Pending<M>>;
    type Upstream = Upstream;
    type Pools = PoolList;
    type JobConfig = Vec<&'static str>;

    fn new_channel<M: Clone + Send + Sync + 'static>(nicehash: bool) -> Self::Channel<M> {
        Channel::new(nicehash)
    }

    fn job_config(config: &Config) -> Vec<&'static str> {
        extensions(config)
    }

    /// The deferred login reply if the miner still waits for its first job, else a `job`
    /// notification (the shared `JobLine`, its fixed byte patched).
    fn deliver<M: Downstream<Self>>(
        info: &JobInfo,
        miner: &M,
        fixed_byte: Option<u8>,
        extensions: &Vec<&'static str>,
    ) {
        let what = miner.with_session(|s, _| s.on_job(info.difficulty));
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

    /// `{"status":"OK"}` or an error with the message.
    fn reply<M: Downstream<Self>>(miner: &M, id: &Id, result: Result<(), &str>) {
        match result {
            Ok(()) => miner.send_line(encode_status(id, "OK")),
            Err(m) => miner.send_line(encode_error(id, m)),
        }
    }

    fn new_pools(config: &Config) -> PoolList {
        PoolList::new(config.pools_of(Self::PROTOCOL), failover_options(config))
    }

    fn spawn_upstream<M: Downstream<Self>>(
        mapper: &Arc<Mapper<Self, M>>,
        pools: &PoolList,
        _config: &Config,
    ) -> Upstream {
        Upstream::spawn_on(pools, mapper.clone(), mapper.cancel_token())
    }

    /// Every upstream follows `pools`: set once.
    fn set_pools<'a>(
        pools: &PoolList,
        _upstreams: impl Iterator<Item = &'a Upstream>,
        config: &Config,
    ) {
        pools.set(config.pools_of(Self::PROTOCOL), failover_options(config));
    }
}

impl<M: Downstream<CryptoNote>> UpstreamListener for Mapper<CryptoNote, M> {
    fn on_job(&self, job: Job, session: u64) {
        self.on_daemon_job(job, Err(BlockError::NotFromADaemon), session);
    }

    /// In `extra_nonce` mode a job reaches miners only with its template split (the config
    /// allows only daemon upstreams there): without it every miner would get the same work.
    fn on_daemon_job(&self, mut job: Job, work: Result<Arc<BlockWork>, BlockError>, session: u64) {
        let config = self.config();
        if !config.algo_ext {
            job.algo = None;
        }
        let work = match work {
            Ok(work) if config.mode == Mode::ExtraNonce => Some(work),
            Err(why) if config.mode == Mode::ExtraNonce => {
                tracing::error!(job_id = ?job.job_id, "extra_nonce mode: job not sent: {why}");
                return;
            }
            _ => None,
        };
        self.fan_out(Arc::new(JobInfo::new(job, work)), session);
    }

    fn on_result(&self, seq: u64, result: Result<(), ShareError>) {
        self.on_result_at(seq, result, tokio::time::Instant::now());
    }

    /// The pool's answer read at `at`: that one clock read times the share's latency and
    /// its statistics second.
    fn on_result_at(&self, seq: u64, result: Result<(), ShareError>, at: tokio::time::Instant) {
        match result {
            Ok(()) => self.on_verdict_at(seq, Verdict::Accepted, at),
            Err(e) => {
                let reason = e.to_string();
                let miner_fault =
                    matches!(&e, ShareError::Rejected(m) if !pool_client::is_session_ending(m));
                self.on_verdict_at(
                    seq,
                    Verdict::Refused {
                        reason: &reason,
                        code: None,
                        miner_fault,
                    },
                    at,
                );
            }
        }
    }

    fn on_state(&self, state: UpstreamState, pool: Option<usize>) {
        self.on_upstream_state(state, pool);
    }
}

/// A submit that passed the session's own checks (RFC §6.2 steps 1–3), for the mapper.
struct SubmittedShare<'a> {
    /// The request id to answer under.
    id: Id,
    /// The submit's params as sent (borrowed from the miner's line).
    params: SubmitParams<'a>,
    /// The 4 nonce bytes, blob order (little-endian).
    nonce: [u8; 4],
    /// The difficulty the share's `result` hash meets.
    share_diff: u64,
    /// The miner's custom difficulty; 0 = none (RFC §14).
    custom_diff: u64,
}

/// Checks a share against the mapper's jobs and forwards it (RFC §6.2 step 4, §8.2); `now`
/// is the clock read its line was handled with (the pending entry's and the pool submit's
/// time).
fn submit<M: Downstream<CryptoNote>>(
    mapper: &Mapper<CryptoNote, M>,
    miner: &M,
    fixed_byte: Option<u8>,
    share: SubmittedShare<'_>,
    now: Instant,
) {
    let SubmittedShare {
        id,
        params: p,
        nonce,
        share_diff,
        custom_diff,
    } = share;
    let events = mapper.events();
    // Answered first: the count may cut the miner off (see `Events::invalid`).
    let refuse = |r: Refusal| {
        CryptoNote::reply(miner, &id, Err(r.message()));
        events.invalid(miner, r);
    };
    // Loaded once per share (an `ArcSwap` load), for the mode here and the options below.
    let config = mapper.config();
    let extra_nonce = config.mode == Mode::ExtraNonce;
    let share_in = ShareIn {
        job_id: &p.job_id,
        nonce,
        share_diff,
        algo: p.algo.as_deref(),
        custom_diff,
    };
    let mut st = mapper.st();
    let checked = match fixed_byte {
        Some(slot) if extra_nonce => st.channel.check_extra_nonce_share(slot, &share_in),
        _ => st.channel.check_share(fixed_byte, &share_in),
    };
    let (seq, session, expired, difficulty, pool_difficulty) = match checked {
        Err(r) => {
            drop(st);
            return refuse(r);
        }
        Ok(Checked::Local { difficulty }) => {
            drop(st);
            CryptoNote::reply(miner, &id, Ok(()));
            mapper.accept_local(miner, difficulty);
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
    let Some(upstream) = mapper.upstream() else {
        drop(st);
        let reason = ShareError::NotConnected.to_string();
        events.reject(miner, &reason);
        return CryptoNote::reply(miner, &id, Err(&reason));
    };
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
        extra_nonce: fixed_byte.filter(|_| extra_nonce).map(u32::from),
    };
    let pending = Pending {
        miner: miner.clone(),
        id,
        difficulty: credited,
        share_diff,
    };
    mapper.forward_at(st, seq, pending, expired, now.into_std(), || {
        upstream.submit(seq, share, now)
    });
}

/// The job as `miner` should see it (blob patched, target at its difficulty), for `getjob`.
fn job_for<M: Downstream<CryptoNote>>(mapper: &Mapper<CryptoNote, M>, miner: &M) -> Option<Job> {
    let (fixed, custom) =
        miner.with_session(|s, r| (r.as_ref().and_then(|r| r.slot), s.custom_diff()));
    let st = mapper.st();
    st.channel
        .job()
        .map(|info| info.job_for(effective_difficulty(custom, info.difficulty), fixed))
}

type MinerRef = Arc<Miner<CryptoNote>>;

fn reply_error(miner: &MinerRef, id: &Id, refusal: Refusal) {
    miner.send_line(encode_error(id, refusal.message()));
}

/// The miner's route when `params.id` is its session id.
fn check_session(miner: &MinerRef, p: &SessionParams) -> Option<Route<CryptoNote>> {
    let st = miner.state();
    st.session.route_for(&p.id)?;
    st.route.clone()
}

fn handle_login(miner: &MinerRef, shared: &Shared<CryptoNote>, id: Id, p: LoginParams) {
    let config = shared.config.load();
    let rules = LoginRules {
        access_password: config.access_password(),
        custom_diff: config.custom_diff,
        custom_diff_min: config.custom_diff_min,
    };
    {
        let mut st = miner.state();
        let st = &mut *st;
        let user = match st
            .session
            .login(Uuid::new_v4(), id.clone(), &p.login, &p.pass, &rules)
        {
            Ok(l) => l.user,
            Err(r) => {
                return reply_error(miner, &id, r);
            }
        };
        st.set_login(&shared.strings, user, &p.pass, &p.agent, p.rigid);
    }
    if let Err(refusal) = miner.route_login(shared) {
        reply_error(miner, &id, refusal);
    }
}

fn handle_submit(
    miner: &MinerRef,
    shared: &Shared<CryptoNote>,
    id: Id,
    p: SubmitParams<'_>,
    now: Instant,
) {
    let routed = {
        let st = miner.state();
        st.session
            .submit_route(&p.id)
            .and_then(|((), custom_diff)| {
                let route = st.route.clone().ok_or(Refusal::Unauthenticated)?;
                Ok((route, custom_diff))
            })
    };
    let (route, custom_diff) = match routed {
        Ok(r) => r,
        Err(r) => return reply_error(miner, &id, r),
    };
    // Answered first: the count may cut the miner off (see `Events::invalid`).
    let (nonce, share_diff) = match check_submit(&p.job_id, &p.nonce, &p.result) {
        Ok(f) => (f.nonce, f.share_diff),
        Err(r) => {
            reply_error(miner, &id, r);
            shared.events.invalid(miner, r);
            return;
        }
    };
    let share = SubmittedShare {
        id,
        params: p,
        nonce,
        share_diff,
        custom_diff,
    };
    submit(&route.mapper, miner, route.slot, share, now);
}

impl MinerProtocol for CryptoNote {
    /// RFC §6.1–6.3: `login`, `submit`, `keepalived`, `getjob`.
    fn handle_line(
        miner: &MinerRef,
        shared: &Shared<CryptoNote>,
        line: &[u8],
        now: Instant,
    ) -> Flow {
        match parse_miner_request(line) {
            Err(e) => {
                tracing::debug!(miner = miner.id, "bad request: {e}");
                miner.send_line(encode_error(e.id(), e.message()));
                Flow::Continue
            }
            Ok((id, MinerRequest::Login(p))) => {
                handle_login(miner, shared, id, p);
                Flow::Active
            }
            Ok((id, MinerRequest::Submit(p))) => {
                handle_submit(miner, shared, id, p, now);
                Flow::Active
            }
            Ok((id, MinerRequest::Keepalived(p))) => {
                if check_session(miner, &p).is_some() {
                    miner.send_line(encode_status(&id, "KEEPALIVED"));
                } else {
                    reply_error(miner, &id, Refusal::Unauthenticated);
                }
                Flow::Active
            }
            Ok((id, MinerRequest::GetJob(p))) => {
                match check_session(miner, &p) {
                    Some(route) => match job_for(&route.mapper, miner) {
                        Some(job) => {
                            miner.send_line(encode_getjob_ok(&id, &job));
                        }
                        None => reply_error(miner, &id, Refusal::NoJobYet),
                    },
                    None => reply_error(miner, &id, Refusal::Unauthenticated),
                }
                Flow::Continue
            }
        }
    }

    fn full_line() -> Vec<u8> {
        encode_error(&Id::Null, Refusal::ProxyFull.message())
    }
}

#[cfg(test)]
impl Miner<CryptoNote> {
    /// A detached miner logged in with `info` and past its first job (tests).
    pub(crate) fn detached_ready(
        id: crate::MinerId,
        peer: std::net::SocketAddr,
        info: crate::LoginInfo,
    ) -> Self {
        let m = Self::detached(id, peer);
        {
            let mut st = m.state();
            let rules = LoginRules::default();
            let _ = st
                .session
                .login(Uuid::new_v4(), Id::Null, &info.user.to_string(), "", &rules);
            st.session.on_job(1);
            st.login = Some(Box::new(info));
        }
        m
    }
}
