//! Solo mining to a Bitcoin node (bcoin, or any node with Bitcoin Core's `getblocktemplate` /
//! `submitblock`): the proxy is the pool. The bcoin-stratum system of
//! `shared/spec/bcoin-stratum.md`, over JSON-RPC instead of in the node's process.
//!
//! The pool entry (`"daemon": true`): `url` is the node's RPC `host:port` (JSON-RPC 1.0 over
//! HTTP POST to `/`), `user` the payout address (for [`SoloOptions::network`](super::SoloOptions::network); bcoin's
//! regtest `R…`/`rb1…` forms too, see [`crate::gbt`]), `pass` the RPC password (bcoin's API
//! key; sent with HTTP basic auth when not empty), `daemon-poll-interval` the poll period in
//! ms (at least 50).
//!
//! | step | call | what happens |
//! |---|---|---|
//! | connect | `getblocktemplate [{"rules":["segwit"]}]` | the first usable template logs in: extranonce1 (random, [`SoloOptions::extranonce1_size`](super::SoloOptions::extranonce1_size) bytes), version mask ([`Sv1Options::version_mask`](super::Sv1Options::version_mask)), difficulty ([`SoloOptions::difficulty`](super::SoloOptions::difficulty)) and the job are reported |
//! | always one in flight | `getblocktemplate [{"rules":["segwit"],"longpollid":ID}]` (ID of the newest template; up to 5 min, then asked again) | the node answers when its tip changes (bcoin: also on new transactions after 10 s of quiet): a new job, with `clean_jobs` on a new tip. A node that refuses longpolls (a JSON-RPC error) or answers one at once with the same id is polled only |
//! | every poll period | `getbestblockhash` | a tip other than the template's previous block fetches a new template: a job with `clean_jobs`; a template older than [`SoloOptions::template_refresh`](super::SoloOptions::template_refresh) is renewed without it. The fallback of longpoll |
//! | submit | `submitblock [block hex]` | only for a share whose header meets the network target; `null` accepts it (and a new template is fetched at once), a string (`rejected: high-hash`) refuses it with code 20 |
//!
//! A share is refused without asking the node when its job is not one of the current tip's
//! (code 21), its version bits leave the mask or its extranonce2 has the wrong size (code 20),
//! or its hash does not meet the network target (code 23: the driver counts such shares
//! itself and should not send them). A transport failure or an answer that is not JSON-RPC
//! ends the session (a share caught in it is answered `Connection to pool lost`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bitcoin::block::Version;
use bitcoin::hashes::Hash;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use stratum_proto::sv1::share::check_share;
use stratum_proto::sv1::{job_id, ErrorCode, Notify, PrevHash, Submit as WireSubmit};
use tokio::time::{Instant, MissedTickBehavior};

use tokio_util::sync::CancellationToken;

use super::{
    Ctx, End, FoundBlock, Preconnecting, Submit, Sv1Listener, Sv1Options, Sv1Share, Sv1ShareError,
};
use crate::gbt::{payout_script, BlockTemplate, CoinbaseParams, SoloJob, Solution};
use crate::{FailoverOptions, PoolConfig, ShareError};

/// The shortest poll period.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long one longpoll request may wait before it is asked again.
const LONGPOLL_TIMEOUT: Duration = Duration::from_secs(300);
/// Jobs kept per tip (older ones of the same tip are forgotten: their shares get 21).
const MAX_JOBS: usize = 16;

/// Why a call to the node failed.
#[derive(Debug)]
enum RpcFail {
    /// The node is unreachable or answered something that is not JSON-RPC.
    Transport(String),
    /// The request's time ran out (for a longpoll: ask again).
    Timeout(String),
    /// A JSON-RPC error: its message.
    Error(String),
}

/// A reqwest failure of `method`: a timeout, or the node unreachable or not speaking JSON.
fn transport(method: &str, e: &reqwest::Error) -> RpcFail {
    let text = format!("{method}: {}", crate::daemon::with_causes(e));
    if e.is_timeout() {
        RpcFail::Timeout(text)
    } else {
        RpcFail::Transport(text)
    }
}

struct Rpc {
    client: reqwest::Client,
    url: String,
    pass: String,
}

impl Rpc {
    fn new(pool: &PoolConfig, options: &FailoverOptions) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(options.reply_timeout)
            .connect_timeout(options.connect_timeout)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url: format!("http://{}/", pool.host_port()),
            pass: pool.pass.clone(),
        })
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, RpcFail> {
        self.call_within(method, params, None).await
    }

    /// [`Rpc::call`] with another timeout than the reply timeout.
    async fn call_within(
        &self,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, RpcFail> {
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let mut req = self.client.post(&self.url).json(&body);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if !self.pass.is_empty() {
            req = req.basic_auth("stratum-proxy", Some(&self.pass));
        }
        let response = req.send().await.map_err(|e| transport(method, &e))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(RpcFail::Transport(format!(
                "{method}: the node refused the RPC password (HTTP 401)"
            )));
        }
        // JSON-RPC errors come with an error status and a JSON body: read the body.
        let reply: Value = response.json().await.map_err(|e| transport(method, &e))?;
        match reply.get("error").filter(|e| !e.is_null()) {
            Some(error) => Err(RpcFail::Error(
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| error.to_string(), str::to_owned),
            )),
            None => reply
                .get("result")
                .cloned()
                .ok_or_else(|| RpcFail::Transport(format!("{method}: answer without a result"))),
        }
    }

    async fn template(&self) -> Result<BlockTemplate, String> {
        let t = self
            .call("getblocktemplate", json!([{"rules": ["segwit"]}]))
            .await
            .map_err(|e| format!("{e:?}"))?;
        BlockTemplate::from_json(&t).map_err(|e| e.to_string())
    }

    /// `getblocktemplate` with `longpollid`: the node answers when its tip (or, for bcoin,
    /// its mempool after 10 s of quiet) changes. `Ok(None)` when [`LONGPOLL_TIMEOUT`] passed
    /// first.
    async fn longpoll(&self, id: String) -> Result<Option<BlockTemplate>, RpcFail> {
        let params = json!([{"rules": ["segwit"], "longpollid": id}]);
        match self
            .call_within("getblocktemplate", params, Some(LONGPOLL_TIMEOUT))
            .await
        {
            Ok(t) => BlockTemplate::from_json(&t)
                .map(Some)
                .map_err(|e| RpcFail::Error(e.to_string())),
            Err(RpcFail::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A solo job as the session keeps it.
struct Kept {
    id: String,
    job: SoloJob,
    notify: Notify,
}

/// The `mining.notify` of a solo job.
fn notify_of(job: &SoloJob, id: String, clean_jobs: bool) -> Notify {
    let t = job.template();
    Notify {
        job_id: id,
        prevhash: PrevHash::from_block_hash(t.prev_hash),
        coinb1: job.coinb1().to_vec(),
        coinb2: job.coinb2().to_vec(),
        merkle_branch: job
            .merkle_branch()
            .iter()
            .map(|n| n.to_byte_array())
            .collect(),
        version: t.version.to_consensus() as u32,
        nbits: t.bits.to_consensus(),
        ntime: t.cur_time,
        clean_jobs,
    }
}

/// The session's jobs and how to make new ones.
struct Jobs {
    params: CoinbaseParams,
    session: u64,
    made: u64,
    kept: Vec<Kept>,
    made_at: Instant,
}

impl Jobs {
    /// Makes a job of `template`; returns its notify to report.
    fn add(&mut self, template: BlockTemplate) -> Result<Notify, String> {
        let job = SoloJob::new(template, &self.params).map_err(|e| e.to_string())?;
        Ok(self.add_job(job))
    }

    /// Keeps `job` (made with this session's `params`) as the newest; returns its notify to
    /// report.
    fn add_job(&mut self, job: SoloJob) -> Notify {
        let clean = job.clean_jobs(self.kept.last().map(|k| &k.job));
        self.made += 1;
        let id = job_id((self.session << 32) | (self.made & 0xffff_ffff));
        let notify = notify_of(&job, id.clone(), clean);
        if clean {
            self.kept.clear();
        }
        if self.kept.len() == MAX_JOBS {
            self.kept.remove(0);
        }
        self.kept.push(Kept {
            id,
            job,
            notify: notify.clone(),
        });
        self.made_at = Instant::now();
        notify
    }

    /// The newest job's longpoll id, when its template had one.
    fn longpoll_id(&self) -> Option<String> {
        self.kept
            .last()
            .and_then(|k| k.job.template().longpoll_id.clone())
    }

    fn tip(&self) -> Option<String> {
        self.kept
            .last()
            .map(|k| k.job.template().prev_hash.to_string())
    }
}

fn random_extranonce1(size: usize) -> Vec<u8> {
    let mut en1 = vec![0u8; size];
    if SystemRandom::new().fill(&mut en1).is_err() {
        let pid = std::process::id().to_be_bytes();
        for (i, b) in en1.iter_mut().enumerate() {
            *b = pid[i % 4];
        }
    }
    en1
}

/// A node session whose first template came, not serving yet: what [`connect`] hands to
/// [`run_connected`] (nothing is reported to a listener before that). Made for every
/// attempt, and ahead of the switch when a reload names another node or payout address
/// (make-before-break, [`super::preconnect`]).
pub(super) struct Connected {
    /// `host:port` of the node, for the log.
    addr: String,
    rpc: Rpc,
    params: CoinbaseParams,
    extranonce1: Vec<u8>,
    /// The first template's job (made with `params`).
    first: SoloJob,
}

/// Connects to the node `pool` within its reply timeout: the payout address checked, the
/// first template fetched and checked to make a job.
///
/// # Errors
/// `NeverConnected` with the reason (bad payout address, node unreachable, unusable
/// template), `Cancelled`.
pub(super) async fn connect(
    pool: &PoolConfig,
    options: &FailoverOptions,
    sv1: &Sv1Options,
    cancel: &CancellationToken,
) -> Result<Connected, End> {
    let addr = pool.host_port().to_string();
    let failed = |e: String| End::NeverConnected(format!("{addr}: {e}"));
    let solo = &sv1.solo;
    let payout = payout_script(&pool.user, solo.network).map_err(|e| failed(e.to_string()))?;
    let rpc = Rpc::new(pool, options).map_err(failed)?;
    let params = CoinbaseParams {
        payout,
        extranonce1_size: solo.extranonce1_size,
        extranonce2_size: solo.extranonce2_size,
        tag: solo.tag.clone(),
    };
    let first = tokio::select! {
        () = cancel.cancelled() => return Err(End::Cancelled),
        t = rpc.template() => t.map_err(failed)?,
    };
    // An unusable template is a failed attempt now, not a session that ends at once.
    let first = SoloJob::new(first, &params).map_err(|e| failed(e.to_string()))?;
    Ok(Connected {
        addr: addr.clone(),
        rpc,
        params,
        extranonce1: random_extranonce1(solo.extranonce1_size),
        first,
    })
}

/// One attempt at a node: [`connect`], then [`run_connected`].
pub(super) async fn run_session(ctx: &mut Ctx<'_>) -> End {
    match connect(ctx.pool, ctx.options, ctx.sv1, ctx.cancel).await {
        Ok(c) => run_connected(ctx, c).await,
        Err(end) => end,
    }
}

/// What one share did to the session.
enum Submitted {
    /// Answered; the session goes on.
    Next,
    /// A block was accepted: a new template is due.
    Renew,
    /// Answered, and the node failed: the session ends.
    End(End),
}

/// Answers a share of the session: refused without asking the node (job, size, version
/// bits, network target), or its block submitted and the node's verdict reported.
async fn submit_share(
    listener: &dyn Sv1Listener,
    rpc: &Rpc,
    addr: &str,
    jobs: &Jobs,
    extranonce1: &[u8],
    mask: u32,
    submit: &Submit,
) -> Submitted {
    let Submit { seq, ref share, .. } = *submit;
    let Some(kept) = jobs.kept.iter().find(|k| k.id == share.job_id) else {
        listener.on_result(seq, Err(Sv1ShareError::code(ErrorCode::JobNotFound)));
        return Submitted::Next;
    };
    let (block_hex, hash) = match candidate(kept, extranonce1, share, mask) {
        Ok(c) => c,
        Err(e) => {
            listener.on_result(seq, Err(e));
            return Submitted::Next;
        }
    };
    // The node's refusal (a `"rejected: …"` string, or an RPC error) reaches the miner as 20.
    let refuse = |message: String| {
        listener.on_result(
            seq,
            Err(Sv1ShareError::Refused {
                code: ErrorCode::Other.code(),
                message,
            }),
        );
        Submitted::Next
    };
    match rpc.call("submitblock", json!([block_hex])).await {
        Ok(Value::Null) => {
            let found = FoundBlock {
                height: kept.job.height(),
                hash,
                ntime: share.ntime,
                reward: kept.job.template().coinbase_value.to_sat(),
            };
            tracing::info!(node = %addr, height = found.height, hash = %found.hash, "block accepted by the node");
            listener.on_block_found(seq, &found);
            listener.on_result(seq, Ok(()));
            Submitted::Renew
        }
        Ok(answer) => {
            let message = answer
                .as_str()
                .map_or_else(|| answer.to_string(), str::to_owned);
            tracing::warn!(node = %addr, "node refused the block: {message:?}");
            refuse(message)
        }
        Err(RpcFail::Error(message)) => refuse(message),
        Err(RpcFail::Transport(why) | RpcFail::Timeout(why)) => {
            listener.on_result(seq, Err(ShareError::Disconnected.into()));
            Submitted::End(End::Ended(format!("{addr}: {why}")))
        }
    }
}

/// Serves a node session made by [`connect`]: its first job, then polls and submits until
/// the session ends.
///
/// A pool-list change that [`touches`](crate::failover::touches) this entry (another node, another payout address, a
/// pool put before it) is made before it breaks, as for a pool (`client.rs`): the new list
/// is started ([`super::preconnect`]: a node's first template, or a pool's login) while this
/// session serves on; then this session takes no more shares, the ones already queued for
/// it are submitted to this node and answered, and it ends `Replaced` (the new session
/// reports its extranonce: the miners move). When nothing of the new list starts, it ends
/// all the same and the loop walks the new list with its retries.
pub(super) async fn run_connected(ctx: &mut Ctx<'_>, c: Connected) -> End {
    let Connected {
        addr,
        rpc,
        params,
        extranonce1,
        first,
    } = c;
    let solo = &ctx.sv1.solo;
    let mut jobs = Jobs {
        params,
        session: *ctx.session + 1,
        made: 0,
        kept: Vec::new(),
        made_at: Instant::now(),
    };
    let notify = jobs.add_job(first);
    let session = ctx.logged_in();
    jobs.session = session;
    let mask = ctx.sv1.version_mask;
    let difficulty = solo.difficulty;
    let refresh = solo.template_refresh;
    tracing::info!(node = %addr, "solo mining on the node's templates");
    ctx.listener.on_version_mask(mask, session);
    ctx.listener
        .on_extranonce(&extranonce1, solo.extranonce2_size, session);
    ctx.listener.on_difficulty(difficulty, session);
    ctx.listener.on_job(notify, session);

    let period = Duration::from_millis(ctx.pool.daemon_poll_interval).max(MIN_POLL_INTERVAL);
    let mut poll = tokio::time::interval_at(Instant::now() + period, period);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let rpc = &rpc;
    // The longpoll in flight (for the newest job's template), and whether the node takes
    // longpolls at all (a JSON-RPC error turns them off for the session).
    let mut longpoll: Option<Pin<Box<dyn Future<Output = LongpollDone> + Send + '_>>> = None;
    let mut longpolling = true;
    // The new pool list started while this session serves (make-before-break).
    let mut watching = true;
    let mut preconnecting: Option<Preconnecting> = None;
    loop {
        if longpoll.is_none() && longpolling {
            if let Some(id) = jobs.longpoll_id() {
                longpoll = Some(Box::pin(
                    async move { (id.clone(), rpc.longpoll(id).await) },
                ));
            }
        }
        let renew = tokio::select! {
            () = ctx.cancel.cancelled() => return End::Cancelled,
            changed = ctx.pools.changed(), if watching => {
                // Changed back, or elsewhere: `None`, this session stays.
                if ctx.follow_list(changed, &mut watching, &mut preconnecting) {
                    tracing::info!(node = %addr, "pool list changed; starting the new list before ending this node session");
                }
                continue;
            }
            got = async { preconnecting.as_mut().expect("guarded").await }, if preconnecting.is_some() => {
                // No new share for this session (`submit` refuses it at once); the queued
                // ones get this node's verdicts.
                ctx.live.store(0, std::sync::atomic::Ordering::Release);
                while let Ok(submit) = ctx.cmds.try_recv() {
                    if submit.share.session != session {
                        ctx.listener.on_result(submit.seq, Err(ShareError::SessionEnded.into()));
                        continue;
                    }
                    let listener = &**ctx.listener;
                    let done = submit_share(listener, rpc, &addr, &jobs, &extranonce1, mask, &submit).await;
                    if let Submitted::End(_) = done {
                        // The rest are answered when the attempt ends.
                        break;
                    }
                }
                return match got {
                    Some(ready) => End::Replaced(ready),
                    None => {
                        tracing::warn!(node = %addr, "nothing of the new pool list could be started; ending this node session");
                        End::Ended(format!("{addr}: pool list changed"))
                    }
                };
            }
            (asked, done) = async { longpoll.as_mut().expect("guarded").await }, if longpoll.is_some() => {
                longpoll = None;
                match done {
                    Ok(Some(template)) if template.longpoll_id.as_deref() == Some(asked.as_str()) => {
                        // Answered at once with nothing new: asking again would spin.
                        tracing::info!(node = %addr, "the node does not hold longpolls; polling only");
                        longpolling = false;
                    }
                    Ok(Some(template)) if jobs.longpoll_id().as_deref() == Some(asked.as_str()) => {
                        // The node's news: a new tip (clean job) or new transactions.
                        match jobs.add(template) {
                            Ok(notify) => ctx.listener.on_job(notify, session),
                            Err(e) => return End::Ended(format!("{addr}: {e}")),
                        }
                    }
                    // Timed out, or overtaken by a newer template: ask again.
                    Ok(_) => {}
                    Err(RpcFail::Error(why)) => {
                        tracing::info!(node = %addr, "longpoll refused ({why:?}); polling only");
                        longpolling = false;
                    }
                    Err(RpcFail::Transport(why) | RpcFail::Timeout(why)) => {
                        return End::Ended(format!("{addr}: {why}"));
                    }
                }
                false
            }
            _ = poll.tick() => {
                match rpc.call("getbestblockhash", json!([])).await {
                    Ok(Value::String(tip)) => {
                        jobs.tip().as_deref() != Some(tip.as_str())
                            || jobs.made_at.elapsed() >= refresh
                    }
                    Ok(other) => return End::Ended(format!("{addr}: getbestblockhash answered {other}")),
                    Err(e) => return End::Ended(format!("{addr}: {e:?}")),
                }
            }
            cmd = ctx.cmds.recv() => {
                let Some(submit) = cmd else { return End::Cancelled };
                if submit.share.session != session {
                    // Queued in the instant its session ended: never into another one.
                    ctx.listener.on_result(submit.seq, Err(ShareError::SessionEnded.into()));
                    continue;
                }
                let listener = &**ctx.listener;
                match submit_share(listener, rpc, &addr, &jobs, &extranonce1, mask, &submit).await {
                    Submitted::Next => continue,
                    Submitted::Renew => true,
                    Submitted::End(end) => return end,
                }
            }
        };
        if renew {
            match rpc.template().await.and_then(|t| jobs.add(t)) {
                Ok(notify) => {
                    ctx.listener.on_job(notify, session);
                    // The longpoll in flight waits on an older template: ask anew.
                    longpoll = None;
                }
                Err(e) => return End::Ended(format!("{addr}: {e}")),
            }
        }
    }
}

/// What a finished longpoll brings: the longpoll id it asked with, and the node's answer.
type LongpollDone = (String, Result<Option<BlockTemplate>, RpcFail>);

/// The block of a share that meets the network target, as `submitblock`'s hex, and its
/// hash; else the refusal.
fn candidate(
    kept: &Kept,
    extranonce1: &[u8],
    share: &Sv1Share,
    mask: u32,
) -> Result<(String, bitcoin::BlockHash), Sv1ShareError> {
    let other = |message: String| Sv1ShareError::Refused {
        code: ErrorCode::Other.code(),
        message,
    };
    if share.extranonce2.len() != kept.job.extranonce2_size() {
        return Err(other(format!(
            "extranonce2 of {} bytes, the job expects {}",
            share.extranonce2.len(),
            kept.job.extranonce2_size()
        )));
    }
    let submit = WireSubmit {
        worker: String::new(),
        job_id: share.job_id.clone(),
        extranonce2: share.extranonce2.clone(),
        ntime: share.ntime,
        nonce: share.nonce,
        version_bits: share.version_bits,
    };
    // Share difficulty is the driver's business: only the network target matters here.
    let check = check_share(&kept.notify, extranonce1, &submit, mask, f64::MAX)
        .map_err(|e| other(e.to_string()))?;
    if !check.meets_network {
        return Err(Sv1ShareError::Refused {
            code: ErrorCode::LowDifficulty.code(),
            message: "Share does not meet the network target".into(),
        });
    }
    kept.job
        .block_hex(&Solution {
            extranonce1,
            extranonce2: &share.extranonce2,
            ntime: share.ntime,
            nonce: share.nonce,
            version: Version::from_consensus(check.header.version.to_consensus()),
        })
        .map(|hex| (hex, check.header.block_hash()))
        .map_err(|e| other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::encode;
    use bitcoin::hex::FromHex;
    use bitcoin::Block;

    /// bcoin 1.0.2's regtest template at height 0 (`shared/docs/reference/bcoin-regtest.md`).
    fn template() -> BlockTemplate {
        BlockTemplate::from_json(&json!({
            "version": 536870912,
            "rules": [],
            "height": 1,
            "previousblockhash": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
            "bits": "207fffff",
            "curtime": 1796035791,
            "mintime": 1296688603,
            "longpollid": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e220600000000",
            "coinbasevalue": 5000000000u64,
            "default_witness_commitment": "6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9",
            "transactions": []
        }))
        .expect("bcoin's template parses")
    }

    fn jobs() -> Jobs {
        Jobs {
            params: CoinbaseParams {
                payout: payout_script(
                    test_support::bcoin::REGTEST_P2WPKH,
                    bitcoin::Network::Regtest,
                )
                .unwrap(),
                extranonce1_size: 4,
                extranonce2_size: 8,
                tag: b"/t/".to_vec(),
            },
            session: 3,
            made: 0,
            kept: Vec::new(),
            made_at: Instant::now(),
        }
    }

    fn share_of(notify: &Notify, nonce: u32, bits: Option<u32>) -> Sv1Share {
        Sv1Share {
            session: 3,
            job_id: notify.job_id.clone(),
            extranonce2: vec![0, 0, 0, 0, 0, 0, 0, 5],
            ntime: notify.ntime,
            nonce,
            version_bits: bits,
        }
    }

    /// The first nonce from 0 whose share meets (or misses) the network target.
    fn grind(kept: &Kept, en1: &[u8], meets: bool) -> u32 {
        (0..256)
            .find(|n| {
                let s = share_of(&kept.notify, *n, None);
                let submit = WireSubmit {
                    worker: String::new(),
                    job_id: s.job_id,
                    extranonce2: s.extranonce2,
                    ntime: s.ntime,
                    nonce: *n,
                    version_bits: None,
                };
                check_share(&kept.notify, en1, &submit, 0, 1.0)
                    .unwrap()
                    .meets_network
                    == meets
            })
            .expect("one nonce in two meets regtest's target")
    }

    #[test]
    fn a_solo_notify_carries_the_templates_fields_and_a_hex_job_id() {
        let mut jobs = jobs();
        let n = jobs.add(template()).unwrap();
        let job = &jobs.kept[0].job;
        assert!(n.clean_jobs, "the first job is clean");
        assert!(stratum_proto::sv1::is_hex_job_id(&n.job_id), "{}", n.job_id);
        assert_eq!(n.prevhash.to_hex(), job.notify_prev_hash());
        assert_eq!(n.coinb1, job.coinb1());
        assert_eq!(n.coinb2, job.coinb2());
        assert_eq!(stratum_proto::sv1::u32_hex(n.version), job.notify_version());
        assert_eq!(stratum_proto::sv1::u32_hex(n.nbits), job.notify_bits());
        assert_eq!(stratum_proto::sv1::u32_hex(n.ntime), job.notify_time());
        assert_eq!(
            jobs.longpoll_id().as_deref(),
            Some("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e220600000000")
        );
        // The same tip again: not clean, the older job kept; a new id.
        let again = jobs.add(template()).unwrap();
        assert!(!again.clean_jobs);
        assert_ne!(again.job_id, n.job_id);
        assert_eq!(jobs.kept.len(), 2);
    }

    #[test]
    fn only_a_share_meeting_the_network_target_becomes_a_block() {
        let mut jobs = jobs();
        jobs.add(template()).unwrap();
        let kept = &jobs.kept[0];
        let en1 = [1, 2, 3, 4];
        let mask = 0x1fff_e000;

        let miss = grind(kept, &en1, false);
        assert_eq!(
            candidate(kept, &en1, &share_of(&kept.notify, miss, None), mask),
            Err(Sv1ShareError::Refused {
                code: 23,
                message: "Share does not meet the network target".into()
            })
        );
        let mut short = share_of(&kept.notify, miss, None);
        short.extranonce2.pop();
        assert!(matches!(
            candidate(kept, &en1, &short, mask),
            Err(Sv1ShareError::Refused { code: 20, .. })
        ));
        assert!(matches!(
            candidate(
                kept,
                &en1,
                &share_of(&kept.notify, miss, Some(0xe000_0000)),
                mask
            ),
            Err(Sv1ShareError::Refused { code: 20, .. })
        ));

        let hit = grind(kept, &en1, true);
        let (hex, hash) = candidate(kept, &en1, &share_of(&kept.notify, hit, None), mask).unwrap();
        let block: Block = encode::deserialize(&Vec::<u8>::from_hex(&hex).unwrap()).unwrap();
        assert_eq!(block.block_hash(), hash, "the hash reported is the block's");
        assert!(block.header.validate_pow(kept.job.network_target()).is_ok());
        assert_eq!(block.header.nonce, hit);
        assert_eq!(block.header.prev_blockhash, kept.job.template().prev_hash);
        let script_sig = block.txdata[0].input[0].script_sig.as_bytes();
        let extranonce = [&en1[..], &[0, 0, 0, 0, 0, 0, 0, 5]].concat();
        assert!(
            script_sig.windows(12).any(|w| w == extranonce.as_slice()),
            "extranonce1 ‖ extranonce2 in the coinbase"
        );
        assert!(block.check_merkle_root());
    }
}
