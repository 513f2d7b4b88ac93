//! The upstream side for Bitcoin Stratum V1: one logical connection of the proxy to an SV1
//! pool (`shared/spec/stratum-v1-slush.md`, BIP 310) or, for solo mining, to a Bitcoin
//! node's JSON-RPC (`getblocktemplate` / `submitblock`, the bcoin-stratum system of
//! `shared/spec/bcoin-stratum.md`).
//!
//! An [`Sv1Upstream`] owns a task that walks the ordered pool list as the CryptoNote
//! [`Upstream`](crate::Upstream) does (go-proxy RFC §10.2): the first enabled entry first,
//! `retries` attempts per entry with `retry-pause` between them, then the next entry; after a
//! session that was logged in ends, start again from the primary. The walk is the same code
//! (`failover.rs`'s, generic over the family), with the same make-before-break reload: a
//! changed pool list that touches the pool in use is logged in to while the old session
//! serves on; then the old session takes no more shares, answers those in flight with its
//! pool's verdicts (or a timeout after the reply timeout) and closes, and the new session
//! serves (its `on_extranonce` moves the miners). When no entry of the new list can be logged
//! in to, the old session is drained and closed all the same and the new list is walked with
//! its retries. A solo session (a node) is replaced the same way: the new list's node gives
//! its first template (or its pool logs in) while the old node serves on; then the shares
//! queued for the old one get that node's verdicts and the new session serves.
//!
//! Each entry is one of
//! - a stratum pool ([`PoolConfig::daemon`] false; module `client`): TCP, or TLS as
//!   [`crate::tls`] opens it; `mining.configure` (version rolling with
//!   [`Sv1Options::version_mask`]), `mining.subscribe`, optionally
//!   `mining.extranonce.subscribe`, `mining.authorize` with the entry's `user` and `pass`;
//! - a Bitcoin node ([`PoolConfig::daemon`] true; module `solo`): the proxy is the pool. It
//!   polls the node, makes jobs of its own from templates ([`crate::gbt`]) with an
//!   extranonce1 of its own and the share difficulty of [`SoloOptions::difficulty`], and
//!   turns a share that meets the network target into a `submitblock`.
//!
//! Both report to an [`Sv1Listener`] in the same shape: on login [`Sv1Listener::on_state`]
//! (`Active`), then [`Sv1Listener::on_version_mask`], [`Sv1Listener::on_extranonce`] (in
//! that order: a proxy answers miners waiting for the mask before their subscribe),
//! [`Sv1Listener::on_difficulty`] (when known) and the jobs ([`Sv1Listener::on_job`]); later
//! each change as it comes. Every share given to [`Sv1Upstream::submit`] that is not refused
//! by `submit` itself gets exactly one [`Sv1Listener::on_result`]: the pool's `true`, its
//! `false` or error with code and message ([`Sv1ShareError::Refused`]), a timeout, or the
//! loss of the connection.
//!
//! `client.reconnect` is honoured to the same host (any port, after its wait, at most a
//! minute); when that connection fails or ends, the list is walked from its primary. A
//! reconnect to another host is logged and ignored (the session goes on): a pool, or
//! whoever can write into its connection, must not send the proxy's hashrate elsewhere.
//! ckpool's proxy mode likewise denies a reconnect to another domain (the name after the
//! first dot must match); cgminer does the same; xmrig's client (xmrig-proxy's upstream)
//! follows any host.
//!
//! Session boundaries as in the CryptoNote upstream: every login opens a new session number;
//! an [`Sv1Share`] names the session of its job; a share of any other session is answered
//! [`ShareError::SessionEnded`] by `submit` at once and never written. Shares still queued
//! when a session ends are answered then, never replayed into the next session.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stratum_proto::sv1::Notify;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::failover::{self, Family, Outcome};
use crate::{queue, FailoverOptions, PoolConfig, PoolList, PoolSet, ShareError, UpstreamState};

mod client;
mod solo;

/// SV1 settings of an upstream beside the pool list.
#[derive(Debug, Clone, PartialEq)]
pub struct Sv1Options {
    /// The version bits the proxy asks a pool to let it roll (BIP 310 `version-rolling.mask`;
    /// default `1fffe000`, the BIP 320 bits). 0 sends no `mining.configure`. The mask the
    /// pool grants (a subset) is what [`Sv1Listener::on_version_mask`] reports.
    pub version_mask: u32,
    /// Send `mining.extranonce.subscribe` after subscribing (default false): the pool may
    /// then change the extranonce1 with `mining.set_extranonce`. An error answer is ignored.
    pub extranonce_subscribe: bool,
    /// A logged-in pool that sends no valid line for this long is dropped (a failed attempt,
    /// as a silent pool). Pools send `mining.notify` at least every minute or so (ntime
    /// updates), so a few minutes is safe; `None` (default) never drops a quiet pool for its
    /// quiet alone (TCP keepalive still finds a dead peer; a pool silent while submits wait
    /// is dropped after the reply timeout either way).
    pub quiet_limit: Option<Duration>,
    /// Settings of solo entries (`"daemon": true`).
    pub solo: SoloOptions,
}

impl Default for Sv1Options {
    fn default() -> Self {
        Self {
            version_mask: 0x1fff_e000,
            extranonce_subscribe: false,
            quiet_limit: None,
            solo: SoloOptions::default(),
        }
    }
}

/// Settings of a solo upstream (the proxy as the pool of a Bitcoin node).
#[derive(Debug, Clone, PartialEq)]
pub struct SoloOptions {
    /// The node's network, for the payout address (the entry's `user`).
    pub network: bitcoin::Network,
    /// The share difficulty the proxy gives out for solo jobs (reported as the session's
    /// difficulty; default 1).
    pub difficulty: f64,
    /// Bytes of the proxy's own extranonce1 (drawn at random per session; default 4).
    pub extranonce1_size: usize,
    /// Bytes of extranonce2 left to the proxy's miners (default 8).
    pub extranonce2_size: usize,
    /// Bytes pushed into the coinbase scriptSig after the extranonce (default
    /// `/stratum-proxy/`).
    pub tag: Vec<u8>,
    /// A new template on the same tip (new transactions) after this long (default 30 s).
    pub template_refresh: Duration,
}

impl Default for SoloOptions {
    fn default() -> Self {
        Self {
            network: bitcoin::Network::Bitcoin,
            difficulty: 1.0,
            extranonce1_size: 4,
            extranonce2_size: 8,
            tag: b"/stratum-proxy/".to_vec(),
            template_refresh: Duration::from_secs(30),
        }
    }
}

/// A share to forward: the fields of `mining.submit` the upstream cannot fill in itself. The
/// worker name sent is the pool entry's `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sv1Share {
    /// The upstream session of the job (the `session` of [`Sv1Listener::on_job`]).
    pub session: u64,
    /// The upstream's job id.
    pub job_id: String,
    /// The full extranonce2 as the upstream sees it (the proxy's per-miner tail followed by
    /// the miner's own extranonce2): the session's extranonce2 size in bytes.
    pub extranonce2: Vec<u8>,
    /// Header time (UNIX seconds).
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// Rolled version bits (inside the session's version mask), when rolling.
    pub version_bits: Option<u32>,
}

/// Why an SV1 share was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Sv1ShareError {
    /// The pool (or the node, or the solo upstream's own check) refused it: its code (20..=25
    /// for the standard ones, [`stratum_proto::sv1::ErrorCode`]) and message. A pool's
    /// `false` is code 20 `Rejected by pool`; a node's `submitblock` refusal is code 20 with
    /// the node's reason (`rejected: high-hash`).
    #[error("{message} (code {code})")]
    Refused {
        /// The error code.
        code: i64,
        /// The message, as the pool sent it.
        message: String,
    },
    /// No answer from the pool: timeout, lost connection, ended session, full queue.
    #[error(transparent)]
    Upstream(#[from] ShareError),
}

impl Sv1ShareError {
    /// A refusal with a standard code and its standard message.
    pub fn code(code: stratum_proto::sv1::ErrorCode) -> Self {
        Self::Refused {
            code: code.code(),
            message: code.message().to_owned(),
        }
    }
}

/// Receives what an SV1 upstream learns. Called from the upstream's task: must not block.
/// `session` is the session number of the login the report belongs to (see the module doc).
pub trait Sv1Listener: Send + Sync + 'static {
    /// A job (`mining.notify`, or a solo template). `clean_jobs` voids the earlier ones.
    fn on_job(&self, job: Notify, session: u64);
    /// The share difficulty for the next jobs (`mining.set_difficulty`; finite, > 0). A
    /// session that has not reported one works at the spec's default, 1.
    fn on_difficulty(&self, difficulty: f64, session: u64);
    /// The session's extranonce1 and extranonce2 size: at login (subscribe answer) and on
    /// `mining.set_extranonce` (the proxy moves its miners: their extranonce1 tails change).
    fn on_extranonce(&self, extranonce1: &[u8], extranonce2_size: usize, session: u64);
    /// The version bits the session may roll: at login (the pool's configure answer ANDed
    /// with [`Sv1Options::version_mask`]; 0 when not negotiated) and on
    /// `mining.set_version_mask` (likewise ANDed).
    fn on_version_mask(&self, mask: u32, session: u64);
    /// The outcome of the share submitted under `seq`: exactly once per accepted submit.
    fn on_result(&self, seq: u64, result: Result<(), Sv1ShareError>);
    /// [`Sv1Listener::on_result`] for a pool's answer read at `at` (tokio's clock, the read
    /// the session marks the pool heard with), so that a listener timing the answer needs
    /// no clock read of its own. Called instead of `on_result`, never besides it. By
    /// default `at` is dropped.
    fn on_result_at(&self, seq: u64, result: Result<(), Sv1ShareError>, at: tokio::time::Instant) {
        let _ = at;
        self.on_result(seq, result);
    }
    /// Solo only: the node accepted the block of the share submitted under `seq` (its
    /// `submitblock` answered `null`). Called just before that share's `Ok`
    /// [`Sv1Listener::on_result`]. The default does nothing.
    fn on_block_found(&self, seq: u64, block: &FoundBlock) {
        let _ = (seq, block);
    }
    /// The connection state changed; `pool` is the index in the pool list when `Active`.
    fn on_state(&self, state: UpstreamState, pool: Option<usize>);
}

/// A block a node accepted from the solo upstream ([`Sv1Listener::on_block_found`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBlock {
    /// Its height (the template's, BIP 34).
    pub height: u64,
    /// Its hash.
    pub hash: bitcoin::BlockHash,
    /// The header's time (the share's ntime), Unix seconds.
    pub ntime: u32,
    /// The coinbase's value (subsidy plus fees), in satoshis.
    pub reward: u64,
}

/// A submit on its way to the upstream's task.
#[derive(Debug)]
struct Submit {
    seq: u64,
    share: Sv1Share,
    /// When it was handed over (the caller's clock read): its send time for the reply
    /// timeout.
    at: tokio::time::Instant,
}

/// How many submits may wait in an upstream's queue.
const COMMAND_QUEUE: usize = 1024;

/// Handle of one SV1 upstream with failover. Dropping it does not stop the task; cancel the
/// token given to [`Sv1Upstream::spawn`] for that.
#[derive(Debug, Clone)]
pub struct Sv1Upstream {
    cmds: queue::Sender<Submit>,
    live: Arc<AtomicU64>,
    state: Arc<AtomicU8>,
    pools: PoolList,
}

impl Sv1Upstream {
    /// Starts the upstream task on the current tokio runtime.
    ///
    /// `pools` is the ordered list (primary first); disabled entries are skipped. The task
    /// runs until `cancel` is cancelled; then every share still waiting is answered
    /// [`ShareError::Disconnected`] and the state becomes [`UpstreamState::Stopped`].
    pub fn spawn(
        pools: Vec<PoolConfig>,
        options: FailoverOptions,
        sv1: Sv1Options,
        listener: Arc<dyn Sv1Listener>,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = queue::channel(COMMAND_QUEUE);
        let live = Arc::new(AtomicU64::new(0));
        let state = Arc::new(AtomicU8::new(UpstreamState::Connecting as u8));
        let list = PoolList::new(pools, options);
        let task = Failover {
            pools: list.0.subscribe(),
            sv1,
            listener,
            cancel,
            cmds: rx,
            live: live.clone(),
            state: state.clone(),
            session: 0,
        };
        tokio::spawn(failover::walk(task));
        Self {
            cmds: tx,
            live,
            state,
            pools: list,
        }
    }

    /// Replaces the pool list and timing. When the change touches the pool in use (it, or an
    /// enabled entry before it, changed), the new list is logged in to first, while the
    /// session in use serves on; then that session's shares in flight get its pool's answers
    /// (or [`ShareError::Timeout`] after the reply timeout) and it closes (see the module
    /// doc). A solo session ends at once.
    pub fn set_pools(&self, pools: Vec<PoolConfig>, options: FailoverOptions) {
        self.pools.set(pools, options);
    }

    /// Queues a share for the upstream. Its outcome arrives as `on_result(seq, ..)`, unless
    /// this returns an error, in which case no `on_result` call will come for `seq`. Never
    /// blocks.
    ///
    /// # Errors
    /// [`ShareError::SessionEnded`] when `share.session` is not the live session (it has
    /// ended, or none is logged in), [`ShareError::Busy`] when the queue is full,
    /// [`ShareError::NotConnected`] when the upstream has stopped.
    pub fn submit(&self, seq: u64, share: Sv1Share) -> Result<(), ShareError> {
        self.submit_at(seq, share, tokio::time::Instant::now())
    }

    /// [`Sv1Upstream::submit`] for a share handed over at `now` (the caller's clock read
    /// for the miner's line: the submit's send time for the reply timeout, with no clock
    /// read of the upstream's own).
    ///
    /// # Errors
    /// As [`Sv1Upstream::submit`].
    pub fn submit_at(
        &self,
        seq: u64,
        share: Sv1Share,
        now: tokio::time::Instant,
    ) -> Result<(), ShareError> {
        if share.session == 0 || share.session != self.live.load(Ordering::Acquire) {
            return Err(ShareError::SessionEnded);
        }
        self.cmds
            .try_send(Submit {
                seq,
                share,
                at: now,
            })
            .map_err(|e| match e {
                queue::TrySendError::Full(_) => ShareError::Busy,
                queue::TrySendError::Closed(_) => ShareError::NotConnected,
            })
    }

    /// The current connection state.
    pub fn state(&self) -> UpstreamState {
        UpstreamState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// The live session number (0 while none is logged in).
    pub fn session(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }
}

/// How one attempt at an entry ended (the common walk's terms).
type End = Outcome<Connection>;

impl<C> From<crate::SessionEnd> for Outcome<C> {
    fn from(e: crate::SessionEnd) -> Self {
        match e {
            crate::SessionEnd::Cancelled => Self::Cancelled,
            crate::SessionEnd::NeverConnected(why) => Self::NeverConnected(why),
            other => Self::NeverConnected(format!("{other:?}")),
        }
    }
}

/// A session of a new pool list, logged in while the old one still served (a reload).
type Ready = failover::Ready<Connection>;

/// A session ready to serve, not reported to the listener yet: a pool's, logged in, or a
/// node's, with its first template.
enum Connection {
    Pool(client::Connected),
    Solo(solo::Connected),
}

/// A login to a new pool list under way (see [`preconnect`]).
type Preconnecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<Box<Ready>>> + Send>>;

/// Logs in to the first enabled pool of `set` that answers (a node: fetches its first
/// template), one attempt each in list order, while the old session keeps serving (as the
/// CryptoNote upstream's `failover.rs` does). `None` when none did.
fn preconnect(set: Arc<PoolSet>, sv1: Sv1Options, cancel: CancellationToken) -> Preconnecting {
    Box::pin(async move {
        for index in failover::enabled(&set) {
            let pool = &set.pools[index];
            let connected = if pool.daemon {
                solo::connect(pool, &set.options, &sv1, &cancel)
                    .await
                    .map(Connection::Solo)
            } else {
                client::connect(pool, &set.options, &sv1, &cancel)
                    .await
                    .map(Connection::Pool)
            };
            match connected {
                Ok(connected) => {
                    return Some(Box::new(Ready {
                        set: set.clone(),
                        index,
                        connected,
                    }))
                }
                Err(End::Cancelled) => return None,
                Err(end) => tracing::warn!(pool = %pool.url, "new pool list: {end:?}"),
            }
        }
        None
    })
}

/// The longest `client.reconnect` wait honoured.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(60);

/// What a session (pool or solo) gets from the loop.
struct Ctx<'a> {
    /// The pool list the session belongs to (a change that `failover::touches` this entry
    /// replaces the session).
    set: &'a PoolSet,
    pool: &'a PoolConfig,
    index: usize,
    options: &'a FailoverOptions,
    sv1: &'a Sv1Options,
    cmds: &'a mut queue::Receiver<Submit>,
    listener: &'a Arc<dyn Sv1Listener>,
    cancel: &'a CancellationToken,
    pools: &'a mut watch::Receiver<Arc<PoolSet>>,
    session: &'a mut u64,
    live: &'a AtomicU64,
    state: &'a AtomicU8,
}

impl Ctx<'_> {
    /// Marks the session logged in: a new session number (made live for submits), state
    /// `Active`. Returns the number.
    fn logged_in(&mut self) -> u64 {
        *self.session += 1;
        self.live.store(*self.session, Ordering::Release);
        self.state
            .store(UpstreamState::Active as u8, Ordering::Relaxed);
        self.listener
            .on_state(UpstreamState::Active, Some(self.index));
        *self.session
    }

    /// The pool list's watch fired with `changed`. A closed watch is no longer watched
    /// (`watching` set to `false`, `preconnecting` left as it is). Otherwise `preconnecting`
    /// becomes the start of the new list ([`preconnect`]) when the change
    /// [`failover::touches`] this session's entry, and `None` when it does not (changed
    /// back, or elsewhere: the session stays, and a start under way for an earlier change is
    /// dropped). `true` when a start began (the caller logs it).
    fn follow_list(
        &mut self,
        changed: Result<(), watch::error::RecvError>,
        watching: &mut bool,
        preconnecting: &mut Option<Preconnecting>,
    ) -> bool {
        if changed.is_err() {
            *watching = false;
            return false;
        }
        let new = self.pools.borrow_and_update().clone();
        *preconnecting = failover::touches(self.set, &new, self.index)
            .then(|| preconnect(new, self.sv1.clone(), self.cancel.child_token()));
        preconnecting.is_some()
    }
}

struct Failover {
    pools: watch::Receiver<Arc<PoolSet>>,
    sv1: Sv1Options,
    listener: Arc<dyn Sv1Listener>,
    cancel: CancellationToken,
    cmds: queue::Receiver<Submit>,
    live: Arc<AtomicU64>,
    state: Arc<AtomicU8>,
    session: u64,
}

impl Family for Failover {
    type Connected = Connection;
    const POOL: &'static str = "SV1 pool";

    fn pools(&mut self) -> &mut watch::Receiver<Arc<PoolSet>> {
        &mut self.pools
    }

    fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    fn set_state(&self, state: UpstreamState) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.listener.on_state(state, None);
    }

    async fn pause(&mut self, pause: Duration) -> bool {
        let listener = &self.listener;
        self.cmds
            .pause(&self.cancel, pause, |Submit { seq, .. }| {
                listener.on_result(seq, Err(ShareError::NotConnected.into()));
            })
            .await
    }

    /// One attempt at `pool` (index `index` of `set`), or the session already logged in
    /// there (`connected`), run until it ends.
    async fn attempt(
        &mut self,
        set: &PoolSet,
        pool: &PoolConfig,
        index: usize,
        connected: Option<Connection>,
    ) -> End {
        let end = {
            let mut ctx = Ctx {
                set,
                pool,
                index,
                options: &set.options,
                sv1: &self.sv1,
                cmds: &mut self.cmds,
                listener: &self.listener,
                cancel: &self.cancel,
                pools: &mut self.pools,
                session: &mut self.session,
                live: &self.live,
                state: &self.state,
            };
            match connected {
                Some(Connection::Pool(c)) => client::run_connected(&mut ctx, c).await,
                Some(Connection::Solo(c)) => solo::run_connected(&mut ctx, c).await,
                None if pool.daemon => solo::run_session(&mut ctx).await,
                None => client::run_session(&mut ctx).await,
            }
        };
        // No session is live until the next login; queued shares of this one are answered
        // now, never replayed into the next.
        self.live.store(0, Ordering::Release);
        let why = if self.cancel.is_cancelled() {
            ShareError::Disconnected
        } else {
            ShareError::SessionEnded
        };
        while let Ok(Submit { seq, .. }) = self.cmds.try_recv() {
            self.listener.on_result(seq, Err(why.clone().into()));
        }
        end
    }

    async fn close(&mut self) {
        self.cmds.close();
        while let Some(Submit { seq, .. }) = self.cmds.recv().await {
            self.listener
                .on_result(seq, Err(ShareError::Disconnected.into()));
        }
    }
}

/// `host:port` a `client.reconnect` leads to from `current` (`host:port`): the current
/// host, and the given port or the current one. `Err` with the host asked for when it is
/// another host (compared without ASCII case or a trailing dot): not followed.
fn reconnect_target(
    current: &str,
    params: &stratum_proto::sv1::Reconnect,
) -> Result<String, String> {
    let (host, port) = current.rsplit_once(':').unwrap_or((current, ""));
    let norm = |h: &str| h.trim_end_matches('.').to_ascii_lowercase();
    if let Some(asked) = params.host.as_deref().filter(|h| !h.is_empty()) {
        let want = norm(asked);
        if want != norm(host.trim_start_matches('[').trim_end_matches(']')) && want != norm(host) {
            return Err(asked.to_owned());
        }
    }
    let port = params
        .port
        .map_or_else(|| port.to_string(), |p| p.to_string());
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum_proto::sv1::Reconnect;

    #[test]
    fn reconnect_goes_to_the_given_host_and_port_or_keeps_the_current_ones() {
        let r = |host: Option<&str>, port: Option<u16>| Reconnect {
            host: host.map(str::to_owned),
            port,
            wait_secs: None,
        };
        let ok = |s: &str| Ok(s.to_owned());
        assert_eq!(
            reconnect_target("a.example:3333", &r(None, None)),
            ok("a.example:3333")
        );
        assert_eq!(
            reconnect_target("a.example:3333", &r(None, Some(4444))),
            ok("a.example:4444")
        );
        assert_eq!(
            reconnect_target("a.example:3333", &r(Some("A.Example."), Some(4444))),
            ok("a.example:4444"),
            "the same host in another case, with a root dot"
        );
        assert_eq!(
            reconnect_target("a.example:3333", &r(Some(""), None)),
            ok("a.example:3333"),
            "an empty host is the current one"
        );
        assert_eq!(
            reconnect_target("[::1]:3333", &r(Some("::1"), Some(1))),
            ok("[::1]:1")
        );
        assert_eq!(
            reconnect_target("a.example:3333", &r(Some("b.example"), None)),
            Err("b.example".to_owned()),
            "another host is not followed"
        );
        assert_eq!(
            reconnect_target("a.example:3333", &r(Some("c"), Some(1))),
            Err("c".to_owned())
        );
    }
}
