//! The upstream side of the proxy: connections to pools, and failover between them.
//!
//! An [`Upstream`] is one logical pool connection of the proxy (one NiceHash mapper, or one
//! simple-mode miner). It owns a task that walks the ordered pool list of go-proxy RFC §10.2:
//! it connects to the first enabled pool, tries each pool `retries` times with `retry-pause`
//! between attempts before moving to the next, and after any connection ends starts again
//! from the primary. Each pool entry is either
//! - a stratum pool ([`stratum`]): CryptoNote stratum over TCP, login, jobs, submits matched to
//!   their replies by request id, `keepalived` when the pool lists the keepalive extension, or
//! - a Monero daemon ([`daemon`], `"daemon": true`): JSON-RPC over HTTP, `get_block_template`
//!   turned into jobs and shares meeting the block difficulty turned into `submit_block`.
//!
//! What the upstream learns is reported to an [`UpstreamListener`]. Every share given to
//! [`Upstream::submit`] gets exactly one [`UpstreamListener::on_result`] call: the pool's
//! answer, a timeout, or an error when the connection is lost or was never there.
//!
//! Session boundaries: every login opens a new session (a number passed to
//! [`UpstreamListener::on_job`]); a [`Share`] carries the session of its job, and a share of
//! any other session than the live one is answered [`ShareError::SessionEnded`] without being
//! written (a pool bans for shares of a session it has closed). When a session ends, the
//! shares queued for it are answered at once, never replayed into the next session.
//!
//! A session ends (and the loop logs in again, primary first) when the pool closes it, when
//! it is silent (see [`stratum`]), or when it answers an error the pool means as the end of
//! the session ([`is_session_ending`]).
//!
//! Bitcoin Stratum V1 pools, and solo mining to a Bitcoin node, have an upstream of their
//! own: [`sv1::Sv1Upstream`], reporting to an [`sv1::Sv1Listener`].

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratum_proto::Job;
use tokio_util::sync::CancellationToken;

pub mod daemon;
mod direct;
mod failover;
pub mod gbt;
mod lines;
mod log_lines;
pub mod monero_block;
mod queue;
mod rare;
pub mod stratum;
pub mod sv1;
pub mod tls;

/// One upstream pool entry of the config (RFC §4 `PoolConfig`, plus `daemon` and
/// `daemon-poll-interval`). JSON keys are kebab-case as in the RFC's example config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct PoolConfig {
    /// `host:port` of the pool (a `stratum+tcp://` or `http://` prefix is accepted;
    /// `stratum+ssl://`, `stratum+tls://`, `ssl://` and `tls://` also turn TLS on, see
    /// [`tls::wants_tls`]).
    pub url: String,
    /// Login sent to the pool (wallet address); for a daemon, the wallet of the block template.
    pub user: String,
    /// Password sent to the pool.
    pub pass: String,
    /// Rig id sent to the pool.
    pub rig_id: Option<String>,
    /// Algorithm to ask the pool for (sent as the login's `algo` list).
    pub algo: Option<String>,
    /// Connect with TLS.
    pub tls: bool,
    /// SHA-256 of the pool certificate's DER, hex; pins the pool when set.
    pub tls_fingerprint: Option<String>,
    /// Send `keepalived` even if the pool does not list the keepalive extension: `false` or
    /// `0` only when the pool lists it, `true` every [`FailoverOptions::keepalive_interval`],
    /// a number every that many seconds (xmrig's `"keepalive": 60`).
    pub keepalive: Keepalive,
    /// TLS server name indication (xmrig's `sni`): absent or `true` sends the url's host
    /// name, `false` sends none, a string sends that name and checks the certificate
    /// against it (unless the entry pins `tls-fingerprint`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<Sni>,
    /// A SOCKS5 proxy (`"host:port"`, or xmrig's bare port number for one on 127.0.0.1) the
    /// pool is reached through; the pool's host name is resolved by the SOCKS server.
    #[serde(
        deserialize_with = "socks5_address",
        skip_serializing_if = "Option::is_none"
    )]
    pub socks5: Option<String>,
    /// Disabled entries are skipped.
    pub enabled: bool,
    /// The entry is a Monero daemon's JSON-RPC endpoint instead of a stratum pool.
    pub daemon: bool,
    /// How often a daemon upstream polls the chain tip, in milliseconds (default 1000).
    pub daemon_poll_interval: u64,
    /// The stratum family the pool speaks (`"cryptonote"` or `"stratum-v1"`); absent: the
    /// config's top-level `protocol`. Miners of a bind go only to pools of the bind's family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// A stratum family (the config's `"protocol"`, at the top level, on a bind or on a pool).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum Protocol {
    /// CryptoNote (Monero) stratum, the go-proxy RFC's (`"cryptonote"`).
    #[default]
    #[serde(rename = "cryptonote")]
    CryptoNote,
    /// Bitcoin Stratum V1 (slush's protocol, BIP 310; `"stratum-v1"`): SV1 pools, or a
    /// Bitcoin node for solo mining (`"daemon": true`, `user` the payout address).
    #[serde(rename = "stratum-v1")]
    StratumV1,
}

impl Protocol {
    /// The config's name of the family: `cryptonote` or `stratum-v1` (also the API's
    /// `protocol` field and the metrics' `protocol` label).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::CryptoNote => "cryptonote",
            Protocol::StratumV1 => "stratum-v1",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            user: String::new(),
            pass: String::new(),
            rig_id: None,
            algo: None,
            tls: false,
            tls_fingerprint: None,
            keepalive: Keepalive::Flag(false),
            sni: None,
            socks5: None,
            enabled: true,
            daemon: false,
            daemon_poll_interval: 1000,
            protocol: None,
        }
    }
}

impl PoolConfig {
    /// `host:port` of [`PoolConfig::url`]: see [`host_port`].
    pub fn host_port(&self) -> &str {
        host_port(&self.url)
    }
}

/// A pool entry's `keepalive`: a flag, or an interval in seconds (xmrig takes both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Keepalive {
    /// `true`: every [`FailoverOptions::keepalive_interval`]; `false`: only when the pool
    /// lists the keepalive extension.
    Flag(bool),
    /// Every this many seconds; 0 is as `false`.
    Seconds(u64),
}

impl Default for Keepalive {
    fn default() -> Self {
        Self::Flag(false)
    }
}

impl Keepalive {
    /// Whether `keepalived` is sent even to a pool that does not list the extension.
    pub fn forced(self) -> bool {
        matches!(self, Self::Flag(true)) || matches!(self, Self::Seconds(n) if n > 0)
    }

    /// The interval between `keepalived` requests: the configured seconds, else `default`.
    pub fn interval(self, default: Duration) -> Duration {
        match self {
            Self::Seconds(n) if n > 0 => Duration::from_secs(n),
            _ => default,
        }
    }
}

/// A pool entry's `sni`: xmrig's flag, or the server name to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sni {
    /// `true`: the url's host (also the default); `false`: no server name is sent.
    Flag(bool),
    /// This name is sent, and the certificate is checked against it (unless pinned).
    Name(String),
}

/// `socks5` as xmrig takes it: `"host:port"`, a port number (on 127.0.0.1), or null.
fn socks5_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Port(u16),
        Text(String),
    }
    Ok(match Option::<Form>::deserialize(d)? {
        None => None,
        Some(Form::Port(0)) => None,
        Some(Form::Port(p)) => Some(format!("127.0.0.1:{p}")),
        Some(Form::Text(t)) if t.trim().is_empty() => None,
        Some(Form::Text(t)) => Some(t.trim().to_string()),
    })
}

/// `host:port` of a pool url, without any scheme prefix (`stratum+tcp://`, `stratum+ssl://`,
/// …) or trailing slash: `"stratum+ssl://pool.example:443/"` → `"pool.example:443"`.
pub fn host_port(url: &str) -> &str {
    let u = url.split_once("://").map_or(url, |(_, rest)| rest);
    u.trim_end_matches('/')
}

/// Timing and identity of an upstream (RFC §4 `retries`, `retry-pause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverOptions {
    /// Connection attempts per pool before moving to the next (at least 1 is made).
    pub retries: u32,
    /// Pause between attempts on one pool, and after the whole list failed.
    pub retry_pause: Duration,
    /// How long a submit may wait for the pool's answer before it is failed.
    pub reply_timeout: Duration,
    /// How long a TCP connect or login may take.
    pub connect_timeout: Duration,
    /// Interval of `keepalived` requests to pools that support them.
    pub keepalive_interval: Duration,
    /// The `agent` the proxy presents to pools.
    pub agent: String,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        Self {
            retries: 5,
            retry_pause: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(60),
            agent: concat!("stratum-proxy/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A share to forward: the fields of the miner's submit the pool needs, borrowed from the
/// miner's line where they can be (a share written straight to the pool socket is never
/// copied; one that waits in the upstream's queue is, see [`Share::into_owned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share<'a> {
    /// The upstream session of the job (the `session` of [`UpstreamListener::on_job`]): a
    /// share of another session than the live one is answered [`ShareError::SessionEnded`]
    /// and never sent.
    pub session: u64,
    /// The pool's job id.
    pub job_id: Cow<'a, str>,
    /// 8 hex chars, blob bytes 39..43.
    pub nonce: Cow<'a, str>,
    /// 64 hex chars, the PoW hash.
    pub result: Cow<'a, str>,
    /// Algorithm, when the algorithm extension is in use.
    pub algo: Option<Cow<'a, str>>,
    /// `extra_nonce` mode: the miner's extra nonce, written into its job's block template
    /// (see [`monero_block::BlockWork`]) before the block is submitted. `None` otherwise.
    pub extra_nonce: Option<u32>,
}

impl Share<'_> {
    /// The same share owning its strings (for a queue).
    pub fn into_owned(self) -> Share<'static> {
        Share {
            session: self.session,
            job_id: Cow::Owned(self.job_id.into_owned()),
            nonce: Cow::Owned(self.nonce.into_owned()),
            result: Cow::Owned(self.result.into_owned()),
            algo: self.algo.map(|a| Cow::Owned(a.into_owned())),
            extra_nonce: self.extra_nonce,
        }
    }
}

/// Why a share was not accepted by the pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The pool (or daemon) refused it; its message, passed on to the miner.
    #[error("{0}")]
    Rejected(String),
    /// The pool did not answer within the reply timeout.
    #[error("Pool did not answer in time")]
    Timeout,
    /// The connection to the pool was lost before it answered.
    #[error("Connection to pool lost")]
    Disconnected,
    /// No pool connection at the moment.
    #[error("No pool connection")]
    NotConnected,
    /// The upstream's queue is full: the pool is not keeping up.
    #[error("Pool is busy")]
    Busy,
    /// The share's job belongs to a pool session that has ended; it was not sent.
    #[error("Job of an ended pool session")]
    SessionEnded,
}

/// Whether a pool's error message ends the session: the pool has forgotten the login
/// (`Unauthenticated`) or refuses the address (`your IP is banned`, `IP Address currently
/// banned`): the messages xmrig and xmrig-proxy close the connection on. Compared ASCII
/// case-insensitively as prefixes of the message. `Invalid job id`, `Low difficulty share`
/// and the like refuse one share and do not end anything.
pub fn is_session_ending(message: &str) -> bool {
    const ENDING: [&str; 3] = [
        "unauthenticated",
        "your ip is banned",
        "ip address currently banned",
    ];
    let m = message.trim_start().as_bytes();
    ENDING
        .iter()
        .any(|e| m.len() >= e.len() && m[..e.len()].eq_ignore_ascii_case(e.as_bytes()))
}

/// Connection state of an upstream, for monitoring (RFC §5 `UpstreamStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum UpstreamState {
    /// Trying to connect or log in.
    Connecting = 0,
    /// Logged in to a pool; jobs flow.
    Active = 1,
    /// Every attempt failed so far; waiting to retry.
    Error = 2,
    /// Stopped for good.
    Stopped = 3,
}

impl UpstreamState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connecting,
            1 => Self::Active,
            2 => Self::Error,
            _ => Self::Stopped,
        }
    }
}

/// Receives what an upstream learns. Called from the upstream's task: must not block.
pub trait UpstreamListener: Send + Sync + 'static {
    /// A new valid job. `session` grows by one with each login to a pool: jobs of the same
    /// session come from the same pool connection, so the previous job's shares still count.
    fn on_job(&self, job: Job, session: u64);
    /// A new valid job from a Monero daemon (as [`UpstreamListener::on_job`]), with its block
    /// template split for `extra_nonce` mode, or why the template cannot be split. No
    /// default: a listener that wraps another must pass `work` on.
    fn on_daemon_job(
        &self,
        job: Job,
        work: Result<Arc<monero_block::BlockWork>, monero_block::BlockError>,
        session: u64,
    );
    /// The outcome of the share submitted under `seq`: exactly once per accepted submit.
    fn on_result(&self, seq: u64, result: Result<(), ShareError>);
    /// [`UpstreamListener::on_result`] for a pool's answer read at `at` (tokio's clock, the
    /// read the session marks the pool heard with), so that a listener timing the answer
    /// needs no clock read of its own. Called instead of `on_result`, never besides it. By
    /// default `at` is dropped; a listener that wraps another must pass it on.
    fn on_result_at(&self, seq: u64, result: Result<(), ShareError>, at: tokio::time::Instant) {
        let _ = at;
        self.on_result(seq, result);
    }
    /// The connection state changed; `pool` is the index in the pool list when `Active`.
    fn on_state(&self, state: UpstreamState, pool: Option<usize>);
}

/// A command from the proxy to the upstream's task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Forward a share; answer with `on_result(seq, ..)`.
    Submit {
        /// Caller's sequence number.
        seq: u64,
        /// The share, boxed: a queued command is two words, and the queue (which holds
        /// up to [`COMMAND_QUEUE`] of them in a burst) stays small.
        share: Box<Share<'static>>,
    },
}

/// How many submits may wait in an upstream's queue.
const COMMAND_QUEUE: usize = 1024;

/// The pool list and timing an upstream works with; replaced live by [`PoolList::set`]
/// (or [`Upstream::set_pools`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSet {
    /// Ordered pool entries, primary first.
    pub pools: Vec<PoolConfig>,
    /// Timing and identity.
    pub options: FailoverOptions,
}

/// A pool list and timing that any number of upstreams follow: one copy, and one change
/// signal, for all of them (in simple mode there is an upstream per miner). Clones share the
/// list. [`PoolList::set`] replaces it for every upstream spawned on it
/// ([`Upstream::spawn_on`]).
#[derive(Debug, Clone)]
pub struct PoolList(Arc<tokio::sync::watch::Sender<Arc<PoolSet>>>);

impl PoolList {
    /// A list of `pools` (ordered, primary first; disabled entries are skipped) with
    /// `options`.
    pub fn new(pools: Vec<PoolConfig>, options: FailoverOptions) -> Self {
        let (tx, _) = tokio::sync::watch::channel(Arc::new(PoolSet { pools, options }));
        Self(Arc::new(tx))
    }

    /// Replaces the pool list and timing of every upstream on this list (config reload);
    /// each one switches as [`Upstream::set_pools`] says. Setting the list it has already
    /// changes nothing.
    pub fn set(&self, pools: Vec<PoolConfig>, options: FailoverOptions) {
        let new = PoolSet { pools, options };
        self.0.send_if_modified(|cur| {
            if **cur == new {
                false
            } else {
                *cur = Arc::new(new);
                true
            }
        });
    }
}

/// Handle of one upstream connection with failover. Dropping it does not stop the task;
/// cancel the token given to [`Upstream::spawn`] for that.
#[derive(Debug, Clone)]
pub struct Upstream {
    cmds: queue::Sender<Command>,
    /// The direct submit path while a plain-TCP stratum session is logged in.
    direct: Arc<direct::Direct>,
    state: Arc<AtomicU8>,
    pools: PoolList,
}

impl Upstream {
    /// Starts the upstream task on the current tokio runtime, with a pool list of its own.
    ///
    /// `pools` is the ordered list (primary first); disabled entries are skipped. The task runs
    /// until `cancel` is cancelled; then every share still waiting is failed with
    /// [`ShareError::Disconnected`] and the state becomes [`UpstreamState::Stopped`].
    pub fn spawn(
        pools: Vec<PoolConfig>,
        options: FailoverOptions,
        listener: Arc<dyn UpstreamListener>,
        cancel: CancellationToken,
    ) -> Self {
        Self::spawn_on(&PoolList::new(pools, options), listener, cancel)
    }

    /// As [`Upstream::spawn`], following the shared `list`: a change to it
    /// ([`PoolList::set`], or [`Upstream::set_pools`] on any upstream of the list) reaches
    /// this upstream too.
    pub fn spawn_on(
        list: &PoolList,
        listener: Arc<dyn UpstreamListener>,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = queue::channel(COMMAND_QUEUE);
        let state = Arc::new(AtomicU8::new(UpstreamState::Connecting as u8));
        let direct = Arc::new(direct::Direct::default());
        // The pool lines of the log (`use pool`, `new job from`, `disconnected`).
        let listener: Arc<dyn UpstreamListener> =
            Arc::new(log_lines::Logged::new(listener, list.0.subscribe()));
        let task = failover::Failover {
            pools: list.0.subscribe(),
            listener,
            cancel,
            cmds: rx,
            direct: direct.clone(),
            state: state.clone(),
            session: 0,
        };
        tokio::spawn(failover::walk(task));
        Self {
            cmds: tx,
            direct,
            state,
            pools: list.clone(),
        }
    }

    /// Replaces the pool list and timing (config reload), of every upstream on this one's
    /// [`PoolList`] (only this one when started with [`Upstream::spawn`]). When the change
    /// touches the pool
    /// in use or any pool before it in the list, the switch is make-before-break: the new
    /// list's enabled entries are tried in order (one attempt each) while the current stratum
    /// session serves on; once one is logged in, the old session takes no more submits, its
    /// pending ones get the old pool's answers (or [`ShareError::Timeout`] after the reply
    /// timeout) and it closes. When none of the new list logs in, the old session is drained
    /// and closed the same way and the new list is walked with its retries and pauses. A
    /// daemon session is closed at once. A change that does not touch the pool in use keeps
    /// the connection; the new list is used from the next reconnect on.
    pub fn set_pools(&self, pools: Vec<PoolConfig>, options: FailoverOptions) {
        self.pools.set(pools, options);
    }

    /// Sends a share to the pool. Its outcome arrives as `on_result(seq, ..)`, unless this
    /// returns an error, in which case no `on_result` call will come for `seq`. `now` is the
    /// caller's clock read (tokio's clock) for the share: the send time its reply timeout
    /// counts from when it is written here.
    ///
    /// While a stratum session is logged in over plain TCP, the submit line is written to
    /// the pool socket right here, on the caller's thread (what the socket does not take at
    /// once is flushed by the upstream's task). Otherwise (connecting, TLS, a daemon) the
    /// share is queued for the upstream's task. Never blocks.
    ///
    /// # Errors
    /// [`ShareError::SessionEnded`] when `share.session` is not the live session (it has
    /// ended, or no session is logged in), [`ShareError::Busy`] when the queue is full or
    /// too many bytes wait for the pool socket, [`ShareError::NotConnected`] when the
    /// upstream has stopped.
    pub fn submit(
        &self,
        seq: u64,
        share: Share<'_>,
        now: tokio::time::Instant,
    ) -> Result<(), ShareError> {
        if share.session != self.direct.live() {
            // Its session has ended (or none is up): never sent, answered now.
            return Err(ShareError::SessionEnded);
        }
        if let Some(sent) = self.direct.submit(seq, &share, now) {
            return sent;
        }
        self.cmds
            .try_send(Command::Submit {
                seq,
                share: Box::new(share.into_owned()),
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
}

/// How one attempt at a pool ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// Could not connect or log in; the reason for the log.
    NeverConnected(String),
    /// Was connected and logged in, then the connection ended; the reason for the log.
    Ended(String),
    /// Was logged in, then dropped for misbehaving (silent): counts as a failed attempt at
    /// that pool, so the loop goes on with the next attempt or pool; the reason for the log.
    Dropped(String),
    /// Told to hand over (a reload): the connection, to drain.
    Handover(Box<stratum::Draining>),
    /// The proxy is stopping.
    Cancelled,
}

/// What a session (stratum or daemon) gets from the failover loop.
pub(crate) struct SessionCtx<'a> {
    /// The pool entry.
    pub(crate) pool: &'a PoolConfig,
    /// Its index in the pool list.
    pub(crate) index: usize,
    /// Timing and identity.
    pub(crate) options: &'a FailoverOptions,
    /// Submits from the proxy.
    pub(crate) cmds: &'a mut queue::Receiver<Command>,
    /// The upstream's direct submit path, for a plain-TCP stratum session to attach.
    pub(crate) direct: &'a direct::Direct,
    /// Where to report.
    pub(crate) listener: &'a dyn UpstreamListener,
    /// Stop signal.
    pub(crate) cancel: &'a CancellationToken,
    /// Hand-over signal: stop taking submits and return the connection as
    /// [`SessionEnd::Handover`] (stratum sessions; a daemon session ignores it).
    pub(crate) handover: &'a CancellationToken,
    /// Session counter of the upstream: call [`SessionCtx::logged_in`] once logged in.
    pub(crate) session: &'a mut u64,
    /// Shared state cell.
    pub(crate) state: &'a AtomicU8,
}

impl SessionCtx<'_> {
    /// Marks the pool connection as logged in: bumps the session number, sets the state to
    /// `Active` and returns the new session number to pass to `on_job`.
    pub(crate) fn logged_in(&mut self) -> u64 {
        *self.session += 1;
        self.direct.set_live(*self.session);
        self.state
            .store(UpstreamState::Active as u8, Ordering::Relaxed);
        self.listener
            .on_state(UpstreamState::Active, Some(self.index));
        *self.session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_and_bans_end_the_session_other_errors_do_not() {
        for m in [
            "Unauthenticated",
            "unauthenticated: login again",
            "Your IP is banned",
            "IP Address currently banned for 600 seconds",
        ] {
            assert!(is_session_ending(m), "{m}");
        }
        for m in [
            "Invalid job id",
            "Low difficulty share",
            "Duplicate share",
            "Block expired",
            "",
            "Unauth",
        ] {
            assert!(!is_session_ending(m), "{m}");
        }
    }
}

/// Size budgets: in simple mode every miner has an upstream of its own, so what one holds
/// counts per miner (docs/BENCHMARKS.md, "Simple mode").
#[cfg(test)]
mod size_budget {
    use super::*;

    /// A listener that hears everything and does nothing (the size tests run no session).
    pub(crate) struct Quiet;
    impl UpstreamListener for Quiet {
        fn on_job(&self, _: Job, _: u64) {}
        fn on_daemon_job(
            &self,
            _: Job,
            _: Result<Arc<crate::monero_block::BlockWork>, crate::monero_block::BlockError>,
            _: u64,
        ) {
        }
        fn on_result(&self, _: u64, _: Result<(), ShareError>) {}
        fn on_state(&self, _: UpstreamState, _: Option<usize>) {}
    }

    #[test]
    fn an_upstream_task_holds_the_session_it_runs_not_room_for_every_kind() {
        let (_tx, rx) = queue::channel(1);
        let set = Arc::new(PoolSet {
            pools: vec![],
            options: FailoverOptions::default(),
        });
        let (_pools, pools) = tokio::sync::watch::channel(set);
        let task = failover::Failover {
            pools,
            listener: Arc::new(Quiet),
            cancel: CancellationToken::new(),
            cmds: rx,
            direct: Arc::new(direct::Direct::default()),
            state: Arc::new(AtomicU8::new(0)),
            session: 0,
        };
        // 6,296 bytes while the daemon session (3.4 KB) and the connect future (1.9 KB)
        // were held inline; the sessions are boxed now.
        let size = std::mem::size_of_val(&failover::walk(task));
        assert!(size <= 1_600, "the upstream task's future is {size} bytes");
    }

    #[test]
    fn a_queued_submit_is_two_words() {
        assert_eq!(std::mem::size_of::<Command>(), 16);
    }
}
