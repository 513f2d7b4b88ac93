//! A Monero daemon as the upstream: solo mining through `monerod`'s JSON-RPC.
//!
//! A pool entry with `"daemon": true` names a node's RPC endpoint; a session talks to
//! `http://{host:port}/json_rpc` over plain HTTP with one `reqwest` client (timeout: the reply
//! timeout; connect timeout: the connect timeout). TLS and RPC logins are not supported, and
//! system HTTP proxies are not used: the node is contacted directly.
//!
//! | step | call | what happens |
//! |---|---|---|
//! | connect | `get_block_template` (`wallet_address` = the entry's `user`, `extra_nonce`: 12 bytes, this process's random 4-byte tag, a counter of its `get_block_template` calls, then 4 zero bytes for a miner's extra nonce in `extra_nonce` mode) | the first usable answer logs in; the template becomes a job |
//! | every `daemon-poll-interval` ms (at least 50) | `get_info` | a `top_block_hash` other than the template's `prev_hash` fetches a new template and job; so does a changed `tx_pool_size` once the template is 30 s old |
//! | submit | `submit_block` with `["<template blob with the share's nonce at byte 39, hex>"]` (in `extra_nonce` mode also the miner's extra nonce, little-endian, at `reserved_offset` + 8) | only for shares whose result meets the block difficulty |
//!
//! Job fields from a template:
//!
//! | job field | from |
//! |---|---|
//! | `blob` | `blockhashing_blob` (76 bytes for Monero; nonce at bytes 39..43) |
//! | `job_id` | fresh per template: 4 hex chars of the session number, then 8 of a counter |
//! | `target` | [`difficulty_to_target`]`(difficulty)`: miners work at the block difficulty |
//! | `algo` | the entry's `algo`, else `rx/0` |
//! | `height`, `seed_hash` | the template's `height` and `seed_hash` |
//!
//! Every `get_block_template` call (of any upstream of the process) carries an `extra_nonce`
//! of its own, which monerod (0.18 and later) writes into the coinbase transaction's extra
//! field before it computes the hashing blob: two upstreams to one node, with one wallet, in
//! the same second, get different templates, so miners given the same fixed nonce byte on
//! both never hash the same work. (With `reserve_size` instead, monerod returns
//! byte-identical templates.) A node that ignores the parameter is named in one warning per
//! session. The submitted block is the template blob of the share's job, `extra_nonce`
//! included, with the nonce written in.
//!
//! `extra_nonce` mode (xmrig-proxy's): each job also carries the template split by
//! [`crate::monero_block::BlockWork`] (through [`UpstreamListener::on_daemon_job`]); the
//! proxy gives each miner of the template its own 4-byte extra nonce (the last 4 of the 12
//! reserved bytes) and the hashing blob that goes with it, and a share's
//! [`Share::extra_nonce`] is written back into the block before `submit_block`. A share is
//! then identified by its extra nonce and nonce together (two miners may find the same nonce).
//!
//! The reply bodies are parsed by pure functions ([`parse_template_reply`],
//! [`parse_info_reply`], [`parse_submit_reply`], [`parse_header_reply`]), which the fuzz
//! target `daemon_reply` runs on arbitrary bytes.
//!
//! A template whose difficulty does not fit in 64 bits (`difficulty_top64` ≠ 0), whose blobs
//! are not hex, or whose two blobs differ before the nonce's end is an error: before login
//! the attempt fails, during the session the session ends.
//!
//! The session keeps the templates of the current and the previous job. A share is refused
//! without asking the node when its job is neither (`Invalid job id`), its nonce is not
//! 8 lowercase hex digits (`Invalid nonce`), its result is not 64 hex digits
//! (`Invalid result`), the result's difficulty is below the block difficulty
//! (`Low difficulty share`), or its nonce was already sent for that template
//! (`Duplicate share`: monerod answers `OK` again for a block it already has). Like a pool,
//! the proxy trusts the miner's result hash for the difficulty check; the node recomputes the
//! proof of work and decides. Its JSON-RPC error (e.g. `Block not accepted`) is passed on as
//! the rejection message; `"status":"OK"` accepts the share, and a new template is fetched at
//! once since the chain grew. monerod also answers `OK` for a valid block that lost the race
//! for its height (it keeps it on an alternative chain); the session then asks for the main
//! chain's block at that height and logs a stale block as a warning. A transport failure, an
//! HTTP error status, or an answer that is not JSON-RPC ends the session; a submit caught in
//! it fails with [`ShareError::Disconnected`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{json, Value};
use stratum_proto::cryptonote::is_status_ok;
use stratum_proto::job::{decode_hex, encode_hex, NONCE_OFFSET};
use stratum_proto::{difficulty_to_target, parse_nonce, result_difficulty, Job};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::monero_block::{BlockError, BlockWork, MINER_EXTRA_NONCE_SIZE};
#[cfg(doc)]
use crate::UpstreamListener;
use crate::{Command, FailoverOptions, PoolConfig, SessionCtx, SessionEnd, Share, ShareError};

/// Bytes of the `extra_nonce` put into each template's coinbase extra field: 4 bytes drawn at
/// random once per process, then a 4-byte big-endian counter of the templates this process has
/// asked for (all upstreams together), then 4 zero bytes that `extra_nonce` mode fills with a
/// miner's extra nonce. See [`next_extra_nonce`].
const EXTRA_NONCE_SIZE: usize = 8 + MINER_EXTRA_NONCE_SIZE;
/// Where a miner's extra nonce goes, counted from the node's `reserved_offset`.
const MINER_SLOT: usize = 8;
/// The shortest chain-tip poll interval.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How old a template must be before a changed mempool alone fetches a new one.
const MEMPOOL_REFRESH: Duration = Duration::from_secs(30);
/// The algorithm named in jobs when the pool entry names none.
const DEFAULT_ALGO: &str = "rx/0";

/// Templates asked for by this process so far (the low half of [`next_extra_nonce`]).
static TEMPLATES_ASKED: AtomicU32 = AtomicU32::new(0);
/// This process's random tag (the high half of [`next_extra_nonce`]).
static PROCESS_TAG: OnceLock<[u8; 4]> = OnceLock::new();

/// The `extra_nonce` for the next `get_block_template` call: this process's random 4-byte tag,
/// then the big-endian count of templates asked for before (wrapping after 2³² calls).
///
/// monerod writes it into the coinbase transaction's extra field and computes the hashing blob
/// from that block, so two calls never get the same template, whatever upstream (of this
/// process) makes them, even in the same second with the same wallet; the random tag keeps two
/// proxy processes on one node apart too (they meet with probability 2⁻³²).
fn next_extra_nonce() -> [u8; EXTRA_NONCE_SIZE] {
    // The last MINER_EXTRA_NONCE_SIZE bytes stay zero: a miner's extra nonce goes there.
    let tag = PROCESS_TAG.get_or_init(|| {
        let mut tag = [0; 4];
        if SystemRandom::new().fill(&mut tag).is_err() {
            // No system randomness: the process id still separates processes.
            tag = std::process::id().to_be_bytes();
        }
        tag
    });
    let count = TEMPLATES_ASKED.fetch_add(1, Ordering::Relaxed);
    let mut nonce = [0; EXTRA_NONCE_SIZE];
    nonce[..4].copy_from_slice(tag);
    nonce[4..MINER_SLOT].copy_from_slice(&count.to_be_bytes());
    nonce
}

/// Why a call to the node failed, or why its answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The HTTP exchange failed (connect, timeout, reset): the node is unreachable.
    #[error("daemon unreachable: {0}")]
    Transport(String),
    /// The node answered with a non-2xx HTTP status.
    #[error("daemon answered HTTP {0}")]
    HttpStatus(u16),
    /// The node answered with a JSON-RPC error object.
    #[error("daemon error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code (monerod: -7 "Block not accepted", -6 "Wrong block blob", ..).
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The result's `status` was not `OK` (e.g. `BUSY`).
    #[error("daemon status {0}")]
    NotOk(String),
    /// The answer is not JSON-RPC, or lacks or mistypes fields we need, or the template it
    /// holds cannot be mined (see [`parse_template_reply`]).
    #[error("daemon sent an unusable answer: {0}")]
    BadReply(String),
}

/// `e` and its causes, `": "`-joined: a `reqwest::Error`'s causes hold the useful part
/// ("connection refused").
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `reqwest::Error` with its causes.
fn transport(e: &reqwest::Error) -> DaemonError {
    DaemonError::Transport(with_causes(e))
}

#[derive(Deserialize)]
struct RpcErrorBody {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct RpcReply {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorBody>,
}

/// The fields of a `get_block_template` result that the proxy uses.
#[derive(Debug, Clone, Deserialize)]
struct TemplateReply {
    blockhashing_blob: String,
    blocktemplate_blob: String,
    /// Low 64 bits of the block difficulty.
    difficulty: u64,
    /// High 64 bits of the block difficulty (monerod ≥ 0.16).
    #[serde(default)]
    difficulty_top64: u64,
    /// The whole difficulty as `0x`-prefixed hex (monerod ≥ 0.16).
    #[serde(default)]
    wide_difficulty: Option<String>,
    height: u64,
    #[serde(default)]
    prev_hash: String,
    #[serde(default)]
    seed_hash: String,
    /// Where in `blocktemplate_blob` the reserved bytes (or the `extra_nonce`) start.
    #[serde(default)]
    reserved_offset: u64,
}

/// The chain tip as `get_info` tells it: what the poll compares with the template's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChainInfo {
    /// Hash of the newest block of the main chain (hex).
    pub top_block_hash: String,
    /// Transactions in the node's mempool (0 when the node does not say).
    #[serde(default)]
    pub tx_pool_size: u64,
}

/// The fields of a block header (`get_block_header_by_height`) that tell whose block it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockHeader {
    /// The block's nonce (blob bytes 39..43 read little-endian).
    pub nonce: u32,
    /// Hash of the block it builds on (hex).
    pub prev_hash: String,
}

/// A block template turned into work: what a job is built from and a share is checked against.
/// Made by [`parse_template_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The job id given to the template's job (empty until [`Work::push`]).
    job_id: String,
    /// Hex of the hashing blob.
    hashing_blob: String,
    /// The block template blob, decoded: the block to submit once a nonce is written in.
    block: Vec<u8>,
    /// Where the reserved bytes (our `extra_nonce`) start in `block`, as the node says.
    reserved_offset: usize,
    /// Block difficulty.
    difficulty: u64,
    /// Height of the block being mined.
    height: u64,
    /// Hash of the chain tip the template builds on (hex).
    prev_hash: String,
    /// RandomX seed hash (hex); empty when the node sent none.
    seed_hash: String,
    /// The block split for `extra_nonce` mode, or why it cannot be.
    work: Result<Arc<BlockWork>, BlockError>,
    /// (Extra nonce, nonce) pairs already sent to the node as blocks of this template.
    submitted: HashSet<(Option<u32>, [u8; 4])>,
}

/// Whether a `0x`-prefixed hex difficulty fits in 64 bits.
fn wide_fits_u64(wide: &str) -> bool {
    let digits = wide.trim_start_matches("0x").trim_start_matches("0X");
    let significant = digits.trim_start_matches('0');
    significant.len() <= 16
}

/// The `result` of a JSON-RPC reply body of `method`, whose `status` (when it has one) is `OK`.
///
/// # Errors
/// [`DaemonError::BadReply`] when the body is not a JSON-RPC reply or has no `result`;
/// [`DaemonError::Rpc`] for an `error` object; [`DaemonError::NotOk`] for another `status`.
fn parse_result(method: &str, body: &[u8]) -> Result<Value, DaemonError> {
    let reply: RpcReply = serde_json::from_slice(body)
        .map_err(|e| DaemonError::BadReply(format!("{method}: {e}")))?;
    if let Some(error) = reply.error {
        return Err(DaemonError::Rpc {
            code: error.code,
            message: error.message,
        });
    }
    let result = reply
        .result
        .ok_or_else(|| DaemonError::BadReply(format!("{method}: no result")))?;
    match result.get("status") {
        None => Ok(result),
        Some(_) if is_status_ok(&result) => Ok(result),
        Some(status) => Err(DaemonError::NotOk(
            status
                .as_str()
                .map_or_else(|| status.to_string(), str::to_string),
        )),
    }
}

/// Parses the HTTP body of a `get_block_template` reply into a [`Template`] whose jobs name
/// `algo`.
///
/// # Errors
/// Those of a JSON-RPC reply (a [`DaemonError::Rpc`] error object, a [`DaemonError::NotOk`]
/// status, a body that is not JSON-RPC), and [`DaemonError::BadReply`] for a result without
/// the fields used, a difficulty of 0 or above 64 bits, blobs that are not hex or differ
/// before the nonce's end (byte 43), or a job that fails [`Job::validate`].
pub fn parse_template_reply(body: &[u8], algo: &str) -> Result<Template, DaemonError> {
    let result = parse_result("get_block_template", body)?;
    let reply: TemplateReply = serde_json::from_value(result)
        .map_err(|e| DaemonError::BadReply(format!("get_block_template: {e}")))?;
    Template::from_reply(reply, algo)
}

/// Parses the HTTP body of a `get_info` reply.
///
/// # Errors
/// Those of a JSON-RPC reply (see [`parse_template_reply`]), and [`DaemonError::BadReply`]
/// when `top_block_hash` is missing or a field has the wrong type.
pub fn parse_info_reply(body: &[u8]) -> Result<ChainInfo, DaemonError> {
    let result = parse_result("get_info", body)?;
    serde_json::from_value(result).map_err(|e| DaemonError::BadReply(format!("get_info: {e}")))
}

/// Parses the HTTP body of a `submit_block` reply: `Ok` when the node took the block.
///
/// # Errors
/// Those of a JSON-RPC reply (see [`parse_template_reply`]): monerod refuses a block with an
/// error object (`-7` "Block not accepted", `-6` "Wrong block blob").
pub fn parse_submit_reply(body: &[u8]) -> Result<(), DaemonError> {
    parse_result("submit_block", body).map(drop)
}

/// Parses the HTTP body of a `get_block_header_by_height` reply (its `block_header` object).
///
/// # Errors
/// Those of a JSON-RPC reply (see [`parse_template_reply`]), and [`DaemonError::BadReply`]
/// when `block_header` lacks `nonce` (a `u32`) or `prev_hash`.
pub fn parse_header_reply(body: &[u8]) -> Result<BlockHeader, DaemonError> {
    let mut result = parse_result("get_block_header_by_height", body)?;
    let header = result
        .get_mut("block_header")
        .map(Value::take)
        .unwrap_or(Value::Null);
    serde_json::from_value(header)
        .map_err(|e| DaemonError::BadReply(format!("get_block_header_by_height: {e}")))
}

impl Template {
    /// Checks and decodes a `get_block_template` result.
    fn from_reply(reply: TemplateReply, algo: &str) -> Result<Self, DaemonError> {
        let too_big = reply.difficulty_top64 != 0
            || reply
                .wide_difficulty
                .as_deref()
                .is_some_and(|w| !wide_fits_u64(w));
        if too_big {
            return Err(DaemonError::BadReply(format!(
                "block difficulty {} does not fit in 64 bits",
                reply.wide_difficulty.as_deref().unwrap_or("(top64 set)")
            )));
        }
        if reply.difficulty == 0 {
            return Err(DaemonError::BadReply("block difficulty is 0".into()));
        }
        let block = decode_hex(&reply.blocktemplate_blob)
            .ok_or_else(|| DaemonError::BadReply("blocktemplate_blob is not hex".into()))?;
        let hashing = decode_hex(&reply.blockhashing_blob)
            .ok_or_else(|| DaemonError::BadReply("blockhashing_blob is not hex".into()))?;
        let header = NONCE_OFFSET + 4;
        if block.len() < header || hashing.len() < header || block[..header] != hashing[..header] {
            return Err(DaemonError::BadReply(
                "template and hashing blobs do not share a header with the nonce at byte 39".into(),
            ));
        }
        let slot = usize::try_from(reply.reserved_offset)
            .ok()
            .and_then(|o| o.checked_add(MINER_SLOT))
            .unwrap_or(usize::MAX);
        let work = BlockWork::parse(&block, slot).map(Arc::new);
        let template = Self {
            work,
            job_id: String::new(),
            hashing_blob: reply.blockhashing_blob.to_ascii_lowercase(),
            block,
            reserved_offset: usize::try_from(reply.reserved_offset).unwrap_or(usize::MAX),
            difficulty: reply.difficulty,
            height: reply.height,
            prev_hash: reply.prev_hash,
            seed_hash: reply.seed_hash.to_ascii_lowercase(),
            submitted: HashSet::new(),
        };
        // The same checks every pool job gets, with a stand-in id.
        let mut probe = template.job(algo);
        probe.job_id = "0".into();
        probe
            .validate()
            .map_err(|e| DaemonError::BadReply(e.to_string()))?;
        Ok(template)
    }

    /// The job for miners: the hashing blob, the block difficulty's target, `algo`, height and
    /// seed hash; the job id is empty until the session gives it one.
    pub fn job(&self, algo: &str) -> Job {
        Job {
            blob: self.hashing_blob.clone(),
            job_id: self.job_id.clone(),
            target: difficulty_to_target(self.difficulty),
            algo: Some(algo.to_string()),
            height: Some(self.height),
            seed_hash: (!self.seed_hash.is_empty()).then(|| self.seed_hash.clone()),
        }
    }

    /// Whether the block holds `extra_nonce` at the node's `reserved_offset`: false when the
    /// node ignored the parameter (monerod before 0.18 knows only `reserve_size`).
    pub fn holds_extra_nonce(&self, extra_nonce: &[u8]) -> bool {
        self.block
            .get(self.reserved_offset..)
            .is_some_and(|rest| rest.starts_with(extra_nonce))
    }

    /// The template split for `extra_nonce` mode, or why it cannot be split.
    pub fn work(&self) -> Result<&Arc<BlockWork>, &BlockError> {
        self.work.as_ref()
    }

    /// The block to submit for `share` (hex of the template blob with the share's nonce at
    /// byte 39, and its extra nonce in the reserved bytes when it has one), or the rejection
    /// message when the share cannot be a block.
    fn solved_block(&self, share: &Share) -> Result<String, &'static str> {
        let nonce = parse_nonce(&share.nonce).ok_or("Invalid nonce")?;
        let difficulty = result_difficulty(&share.result).ok_or("Invalid result")?;
        if difficulty < self.difficulty {
            return Err("Low difficulty share");
        }
        let mut block = self.block.clone();
        block[NONCE_OFFSET..NONCE_OFFSET + 4].copy_from_slice(&nonce);
        if let Some(extra_nonce) = share.extra_nonce {
            let work = self
                .work
                .as_ref()
                .map_err(|_| "Block template cannot take an extra nonce")?;
            work.write_extra_nonce(&mut block, extra_nonce);
        }
        Ok(encode_hex(&block))
    }

    /// [`Template::solved_block`], refusing a nonce that was sent before (`Duplicate share`):
    /// the node answers `OK` again for a block it already has.
    fn take_share(&mut self, share: &Share) -> Result<String, &'static str> {
        let block = self.solved_block(share)?;
        let nonce = parse_nonce(&share.nonce).ok_or("Invalid nonce")?;
        if !self.submitted.insert((share.extra_nonce, nonce)) {
            return Err("Duplicate share");
        }
        Ok(block)
    }
}

/// The JSON-RPC client of one session.
struct Rpc {
    client: reqwest::Client,
    url: String,
    /// Whether the node was seen ignoring `extra_nonce` (warned once per session).
    ignores_extra_nonce: AtomicBool,
}

impl Rpc {
    fn new(pool: &PoolConfig, options: &FailoverOptions) -> Result<Self, DaemonError> {
        let client = reqwest::Client::builder()
            .timeout(options.reply_timeout)
            .connect_timeout(options.connect_timeout)
            .no_proxy()
            .build()
            .map_err(|e| transport(&e))?;
        Ok(Self {
            client,
            url: format!("http://{}/json_rpc", pool.host_port()),
            ignores_extra_nonce: AtomicBool::new(false),
        })
    }

    /// One JSON-RPC call: the body of a 2xx answer, for the `parse_*_reply` functions.
    async fn call(&self, method: &str, params: Value) -> Result<bytes::Bytes, DaemonError> {
        let body = json!({"jsonrpc": "2.0", "id": "0", "method": method, "params": params});
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(DaemonError::HttpStatus(status.as_u16()));
        }
        response.bytes().await.map_err(|e| transport(&e))
    }

    /// A template for `wallet` with a fresh [`next_extra_nonce`] in its coinbase.
    async fn block_template(&self, wallet: &str, algo: &str) -> Result<Template, DaemonError> {
        let extra_nonce = next_extra_nonce();
        let params = json!({"wallet_address": wallet, "extra_nonce": encode_hex(&extra_nonce)});
        let body = self.call("get_block_template", params).await?;
        let template = parse_template_reply(&body, algo)?;
        if !template.holds_extra_nonce(&extra_nonce)
            && !self.ignores_extra_nonce.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                url = %self.url,
                "the node ignores get_block_template's extra_nonce (monerod before 0.18?): \
                 upstreams to this node may be given the same template"
            );
        }
        Ok(template)
    }

    async fn info(&self) -> Result<ChainInfo, DaemonError> {
        parse_info_reply(&self.call("get_info", json!({})).await?)
    }

    async fn submit_block(&self, block_hex: &str) -> Result<(), DaemonError> {
        parse_submit_reply(&self.call("submit_block", json!([block_hex])).await?)
    }

    /// The nonce and previous-block hash of the main chain's block at `height`.
    async fn header_at(&self, height: u64) -> Result<BlockHeader, DaemonError> {
        let body = self
            .call("get_block_header_by_height", json!({ "height": height }))
            .await?;
        parse_header_reply(&body)
    }
}

/// Runs `fut` unless `cancel` fires first (`None`).
async fn or_cancel<T>(cancel: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        () = cancel.cancelled() => None,
        out = fut => Some(out),
    }
}

/// The templates a session can take shares for, and how job ids are made.
struct Work {
    session: u64,
    algo: String,
    next_id: u32,
    current: Template,
    previous: Option<Template>,
    /// When the current template was fetched.
    fetched_at: Instant,
    /// `tx_pool_size` at the first poll after the current template was fetched.
    pool_size: Option<u64>,
}

impl Work {
    /// Work for `session`, starting from `first`; also returns the first job.
    fn new(session: u64, algo: String, first: Template) -> (Self, Job) {
        let mut work = Self {
            session,
            algo,
            next_id: 0,
            current: first,
            previous: None,
            fetched_at: Instant::now(),
            pool_size: None,
        };
        work.current.job_id = work.fresh_id();
        let job = work.current.job(&work.algo);
        (work, job)
    }

    fn fresh_id(&mut self) -> String {
        self.next_id = self.next_id.wrapping_add(1);
        format!("{:04x}{:08x}", self.session & 0xffff, self.next_id)
    }

    /// Makes `template` the current one (the current one becomes the previous); its job.
    fn push(&mut self, mut template: Template) -> Job {
        template.job_id = self.fresh_id();
        self.previous = Some(std::mem::replace(&mut self.current, template));
        self.fetched_at = Instant::now();
        self.pool_size = None;
        self.current.job(&self.algo)
    }

    /// The template of `job_id`: the current or the previous one.
    fn find(&mut self, job_id: &str) -> Option<&mut Template> {
        std::iter::once(&mut self.current)
            .chain(self.previous.as_mut())
            .find(|t| t.job_id == job_id)
    }
}

/// Runs one session with a Monero daemon until it ends.
pub(crate) async fn run_session(ctx: &mut SessionCtx<'_>) -> SessionEnd {
    let url = ctx.pool.url.clone();
    let algo = ctx.pool.algo.clone().unwrap_or_else(|| DEFAULT_ALGO.into());
    let rpc = match Rpc::new(ctx.pool, ctx.options) {
        Ok(rpc) => rpc,
        Err(e) => return SessionEnd::NeverConnected(e.to_string()),
    };
    let Some(first) = or_cancel(ctx.cancel, rpc.block_template(&ctx.pool.user, &algo)).await else {
        return SessionEnd::Cancelled;
    };
    let first = match first {
        Ok(t) => t,
        Err(e) => return SessionEnd::NeverConnected(format!("{}: {e}", rpc.url)),
    };
    let session = ctx.logged_in();
    tracing::info!(pool = %url, height = first.height, difficulty = first.difficulty, "connected to daemon");
    let (mut work, job) = Work::new(session, algo, first);
    let split = work.current.work.clone();
    ctx.listener.on_daemon_job(job, split, session);

    let period = Duration::from_millis(ctx.pool.daemon_poll_interval).max(MIN_POLL_INTERVAL);
    let mut poll = tokio::time::interval_at(Instant::now() + period, period);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        let step = tokio::select! {
            () = ctx.cancel.cancelled() => return SessionEnd::Cancelled,
            cmd = ctx.cmds.recv() => match cmd {
                Some(Command::Submit { seq, share }) if share.session != work.session => {
                    ctx.listener.on_result(seq, Err(ShareError::SessionEnded));
                    Ok(())
                }
                Some(Command::Submit { seq, share }) => submit(ctx, &rpc, &mut work, seq, *share).await,
                None => return SessionEnd::Cancelled,
            },
            _ = poll.tick() => check_tip(ctx, &rpc, &mut work).await,
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// Fetches a new template and sends its job.
async fn refresh(ctx: &SessionCtx<'_>, rpc: &Rpc, work: &mut Work) -> Result<(), SessionEnd> {
    let template = or_cancel(ctx.cancel, rpc.block_template(&ctx.pool.user, &work.algo))
        .await
        .ok_or(SessionEnd::Cancelled)?
        .map_err(|e| SessionEnd::Ended(e.to_string()))?;
    tracing::debug!(pool = %ctx.pool.url, height = template.height, "new block template");
    let job = work.push(template);
    let split = work.current.work.clone();
    ctx.listener.on_daemon_job(job, split, work.session);
    Ok(())
}

/// One poll of the chain tip: a new template when the tip moved (or the mempool changed and
/// the template is old).
async fn check_tip(ctx: &SessionCtx<'_>, rpc: &Rpc, work: &mut Work) -> Result<(), SessionEnd> {
    let info = or_cancel(ctx.cancel, rpc.info())
        .await
        .ok_or(SessionEnd::Cancelled)?
        .map_err(|e| SessionEnd::Ended(e.to_string()))?;
    let tip_moved = !info
        .top_block_hash
        .eq_ignore_ascii_case(&work.current.prev_hash);
    let mempool_changed = work.pool_size.is_some_and(|seen| seen != info.tx_pool_size)
        && work.fetched_at.elapsed() >= MEMPOOL_REFRESH;
    if tip_moved || mempool_changed {
        refresh(ctx, rpc, work).await?;
    }
    if work.pool_size.is_none() {
        work.pool_size = Some(info.tx_pool_size);
    }
    Ok(())
}

/// Answers one submit: refused here, or sent to the node as a block.
async fn submit(
    ctx: &SessionCtx<'_>,
    rpc: &Rpc,
    work: &mut Work,
    seq: u64,
    share: Share<'static>,
) -> Result<(), SessionEnd> {
    let url = &ctx.pool.url;
    let checked = match work.find(&share.job_id) {
        None => Err("Invalid job id"),
        Some(t) => t
            .take_share(&share)
            .map(|block| (block, t.height, t.prev_hash.clone())),
    };
    let (block, height, prev_hash) = match checked {
        Ok(ok) => ok,
        Err(why) => {
            tracing::warn!(pool = %url, job_id = ?share.job_id, "share refused: {why}");
            ctx.listener
                .on_result(seq, Err(ShareError::Rejected(why.into())));
            return Ok(());
        }
    };
    let Some(answer) = or_cancel(ctx.cancel, rpc.submit_block(&block)).await else {
        ctx.listener.on_result(seq, Err(ShareError::Disconnected));
        return Err(SessionEnd::Cancelled);
    };
    match answer {
        Ok(()) => {
            ctx.listener.on_result(seq, Ok(()));
            log_block_fate(ctx, rpc, &share, height, &prev_hash).await;
            refresh(ctx, rpc, work).await
        }
        Err(DaemonError::Rpc { message, .. } | DaemonError::NotOk(message)) => {
            tracing::warn!(pool = %url, height, job_id = %share.job_id, "block rejected by daemon: {message}");
            ctx.listener
                .on_result(seq, Err(ShareError::Rejected(message)));
            Ok(())
        }
        Err(e) => {
            ctx.listener.on_result(seq, Err(ShareError::Disconnected));
            Err(SessionEnd::Ended(format!("submit_block: {e}")))
        }
    }
}

/// Logs whether an accepted block is the main chain's block at its height: monerod answers
/// `OK` to stale blocks too (it keeps them on an alternative chain).
async fn log_block_fate(
    ctx: &SessionCtx<'_>,
    rpc: &Rpc,
    share: &Share<'_>,
    height: u64,
    prev_hash: &str,
) {
    let url = &ctx.pool.url;
    let ours = |h: &BlockHeader| {
        let nonce = parse_nonce(&share.nonce).map(u32::from_le_bytes);
        nonce == Some(h.nonce) && h.prev_hash.eq_ignore_ascii_case(prev_hash)
    };
    match or_cancel(ctx.cancel, rpc.header_at(height)).await {
        Some(Ok(header)) if ours(&header) => {
            tracing::info!(pool = %url, height, job_id = %share.job_id, "block accepted by daemon");
        }
        Some(Ok(_)) => tracing::warn!(
            pool = %url, height, job_id = %share.job_id,
            "daemon took the block, but another block holds its height (stale)"
        ),
        Some(Err(e)) => tracing::info!(
            pool = %url, height, job_id = %share.job_id,
            "block accepted by daemon (main chain not checked: {e})"
        ),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `get_block_template` answer of a new regtest chain (docs/reference/monerod-regtest.md).
    const REGTEST_TEMPLATE: &str = r#"{"id":"0","jsonrpc":"2.0","result":{
 "blockhashing_blob":"101095b886d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e300000000cf8cb7ba0eda1cf48194ea4cc83e84c23a72e9eece988f3f41ffc80e9e9888f301",
 "blocktemplate_blob":"101095b886d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e300000000023d01ff0101808080f0ffff0703b52967975ae6b07c3c67d672cf6e508c6bdf0ade1ffb4441e2f7d838fa33308c812b01d19f33c0e76fbca24b8a3d3a7a316cc304828138f3cd7a01c69358eea78e5a46020800000000000000000000",
 "difficulty":100,"difficulty_top64":0,"expected_reward":35184338534400,"height":1,
 "next_seed_hash":"","prev_hash":"418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3",
 "reserved_offset":126,"seed_hash":"418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3",
 "seed_height":0,"status":"OK","untrusted":false,"wide_difficulty":"0x64"}}"#;

    fn reply() -> TemplateReply {
        let v: Value = serde_json::from_str(REGTEST_TEMPLATE).unwrap();
        serde_json::from_value(v["result"].clone()).unwrap()
    }

    fn template() -> Template {
        Template::from_reply(reply(), DEFAULT_ALGO).unwrap()
    }

    fn share(job_id: &str, nonce: &str, result: &str) -> Share<'static> {
        Share {
            session: 1,
            job_id: job_id.to_owned().into(),
            nonce: nonce.to_owned().into(),
            result: result.to_owned().into(),
            algo: None,
            extra_nonce: None,
        }
    }

    /// A result hash whose difficulty is exactly `d` or just above it.
    fn result_of_difficulty(d: u64) -> String {
        let h = u64::MAX / d;
        format!("{}{}", "00".repeat(24), encode_hex(&h.to_le_bytes()))
    }

    #[test]
    fn regtest_template_becomes_a_job() {
        let (work, job) = Work::new(7, DEFAULT_ALGO.into(), template());
        let r = reply();
        assert_eq!(job.blob, r.blockhashing_blob);
        assert_eq!(job.blob.len(), 152);
        assert_eq!(job.job_id, "000700000001");
        assert_eq!(job.target, difficulty_to_target(100));
        assert_eq!(job.difficulty(), 100);
        assert_eq!(job.algo.as_deref(), Some("rx/0"));
        assert_eq!(job.height, Some(1));
        assert_eq!(job.seed_hash.as_deref(), Some(r.seed_hash.as_str()));
        assert_eq!(job.validate(), Ok(()));
        assert_eq!(work.current.difficulty, 100);
        assert_eq!(work.current.prev_hash, r.prev_hash);
        assert_eq!(work.current.block.len(), r.blocktemplate_blob.len() / 2);
    }

    #[test]
    fn entry_algo_is_named_in_jobs() {
        let t = Template::from_reply(reply(), "rx/wow").unwrap();
        assert_eq!(t.job("rx/wow").algo.as_deref(), Some("rx/wow"));
    }

    #[test]
    fn unusable_templates_are_errors() {
        let mut r = reply();
        r.difficulty_top64 = 1;
        assert!(matches!(
            Template::from_reply(r, "rx/0"),
            Err(DaemonError::BadReply(_))
        ));
        let mut r = reply();
        r.wide_difficulty = Some("0x10000000000000064".into());
        assert!(Template::from_reply(r, "rx/0").is_err());
        let mut r = reply();
        r.wide_difficulty = Some("0x0000000000000000064".into());
        assert!(Template::from_reply(r, "rx/0").is_ok(), "leading zeros fit");
        let mut r = reply();
        r.difficulty = 0;
        assert!(Template::from_reply(r, "rx/0").is_err());
        let mut r = reply();
        r.blocktemplate_blob.push('z');
        assert!(Template::from_reply(r, "rx/0").is_err());
        let mut r = reply();
        r.blockhashing_blob.truncate(80);
        assert!(Template::from_reply(r, "rx/0").is_err());
        let mut r = reply();
        r.blocktemplate_blob.replace_range(0..2, "11");
        assert!(Template::from_reply(r, "rx/0").is_err(), "blobs disagree");
    }

    #[test]
    fn nonce_goes_to_byte_39_of_the_template_blob() {
        let t = template();
        let original = encode_hex(&t.block);
        let block = t
            .solved_block(&share("x", "a1b2c3d4", &result_of_difficulty(100)))
            .unwrap();
        assert_eq!(block.len(), original.len());
        assert_eq!(&block[78..86], "a1b2c3d4");
        assert_eq!(&block[..78], &original[..78]);
        assert_eq!(&block[86..], &original[86..]);
        let bytes = decode_hex(&block).unwrap();
        assert_eq!(
            &bytes[NONCE_OFFSET..NONCE_OFFSET + 4],
            &[0xa1, 0xb2, 0xc3, 0xd4]
        );
    }

    #[test]
    fn shares_that_cannot_be_blocks_are_refused() {
        let t = template();
        let good = result_of_difficulty(100);
        assert_eq!(
            t.solved_block(&share("x", "0000000", &good)),
            Err("Invalid nonce")
        );
        assert_eq!(
            t.solved_block(&share("x", "0000000A", &good)),
            Err("Invalid nonce")
        );
        assert_eq!(
            t.solved_block(&share("x", "00000001", "abcd")),
            Err("Invalid result")
        );
        assert_eq!(
            t.solved_block(&share("x", "00000001", &result_of_difficulty(99))),
            Err("Low difficulty share")
        );
        assert_eq!(
            t.solved_block(&share("x", "00000001", &"f".repeat(64))),
            Err("Low difficulty share")
        );
        assert!(t
            .solved_block(&share("x", "00000001", &"0".repeat(64)))
            .is_ok());
    }

    #[test]
    fn a_nonce_is_sent_once_per_template() {
        let mut t = template();
        let good = result_of_difficulty(100);
        assert!(t.take_share(&share("x", "00000001", &good)).is_ok());
        assert_eq!(
            t.take_share(&share("x", "00000001", &good)),
            Err("Duplicate share")
        );
        assert!(t.take_share(&share("x", "00000002", &good)).is_ok());
        // A refused share does not use up its nonce.
        assert_eq!(
            t.take_share(&share("x", "00000003", &"f".repeat(64))),
            Err("Low difficulty share")
        );
        assert!(t.take_share(&share("x", "00000003", &good)).is_ok());
    }

    #[test]
    fn current_and_previous_jobs_are_known() {
        let (mut work, first) = Work::new(1, DEFAULT_ALGO.into(), template());
        assert!(work.find(&first.job_id).is_some());
        let mut next = template();
        next.height = 2;
        let second = work.push(next);
        assert_ne!(second.job_id, first.job_id);
        assert_eq!(second.height, Some(2));
        assert_eq!(work.find(&first.job_id).map(|t| t.height), Some(1));
        assert_eq!(work.find(&second.job_id).map(|t| t.height), Some(2));
        let third = work.push(template());
        assert!(work.find(&first.job_id).is_none(), "two templates back");
        assert!(work.find(&second.job_id).is_some());
        assert!(work.find(&third.job_id).is_some());
        assert!(work.find("nope").is_none());
    }

    #[test]
    fn job_ids_differ_between_sessions() {
        let (_, a) = Work::new(1, DEFAULT_ALGO.into(), template());
        let (_, b) = Work::new(2, DEFAULT_ALGO.into(), template());
        assert_ne!(a.job_id, b.job_id);
    }

    #[test]
    fn wide_difficulty_width() {
        assert!(wide_fits_u64("0x64"));
        assert!(wide_fits_u64("0xffffffffffffffff"));
        assert!(!wide_fits_u64("0x1ffffffffffffffff"));
        assert!(wide_fits_u64("0x00000000000000000001"));
    }

    /// A template asked for with `extra_nonce` `0102030405060708` from the regtest node of
    /// the test suite (monerod 0.18): the bytes sit at `reserved_offset`.
    const TEMPLATE_WITH_EXTRA_NONCE: &str = r#"{"id":"0","jsonrpc":"2.0","result":{
 "blockhashing_blob":"1010e4b1b5d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e300000000666f20d7d11d008ac7c535f1b50e8b44e3901e03485625492d3cdc71d66df30401",
 "blocktemplate_blob":"1010e4b1b5d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e300000000023d01ff0101808080f0ffff07039e80ddc2360e9c7698616171d0eaa4d533da3d48e4e2b135a9ef3679359fe192d72b01eb30a556a0efd26254ee1eb5fa7beae6e8715d1e61502af5ce591e7efa9fdc70020801020304050607080000",
 "difficulty":100,"difficulty_top64":0,"expected_reward":35184338534400,"height":1,
 "next_seed_hash":"","prev_hash":"418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3",
 "reserved_offset":126,"seed_hash":"418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3",
 "seed_height":0,"status":"OK","untrusted":false,"wide_difficulty":"0x64"}}"#;

    #[test]
    fn a_template_reply_body_parses_to_its_job() {
        let t = parse_template_reply(REGTEST_TEMPLATE.as_bytes(), "rx/0").unwrap();
        assert_eq!(t, template());
        assert_eq!(t.job("rx/0").blob, reply().blockhashing_blob);
    }

    #[test]
    fn the_extra_nonce_is_found_at_the_reserved_offset() {
        let t = parse_template_reply(TEMPLATE_WITH_EXTRA_NONCE.as_bytes(), "rx/0").unwrap();
        assert!(t.holds_extra_nonce(&[1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(!t.holds_extra_nonce(&[1, 2, 3, 4, 5, 6, 7, 9]));
        // The reserve_size template holds zeros there: a node that ignored extra_nonce.
        assert!(!template().holds_extra_nonce(&[1, 2, 3, 4, 5, 6, 7, 8]));
        // An offset past the blob's end is "not there", not a panic.
        let mut r = reply();
        r.reserved_offset = u64::MAX;
        let t = Template::from_reply(r, "rx/0").unwrap();
        assert!(!t.holds_extra_nonce(&[0]));
    }

    /// `TEMPLATE_WITH_EXTRA_NONCE` grown to 12 reserved bytes (extra field 0x2b → 0x2f
    /// bytes, its nonce field 8 → 12), the shape monerod gives this proxy's `extra_nonce`.
    fn twelve_byte_reply() -> TemplateReply {
        let v: Value = serde_json::from_str(TEMPLATE_WITH_EXTRA_NONCE).unwrap();
        let mut r: TemplateReply = serde_json::from_value(v["result"].clone()).unwrap();
        let mut block = decode_hex(&r.blocktemplate_blob).unwrap();
        assert_eq!((block[90], block[124], block[125]), (0x2b, 2, 8));
        block[90] = 0x2f;
        block[125] = 12;
        block.splice(134..134, [0u8; 4]);
        r.blocktemplate_blob = encode_hex(&block);
        r
    }

    #[test]
    fn a_share_with_an_extra_nonce_becomes_the_block_its_miner_hashed() {
        let t = Template::from_reply(twelve_byte_reply(), "rx/0").unwrap();
        let work = t.work().unwrap().clone();
        assert_eq!(work.slot(), 126 + MINER_SLOT);
        let mut s = share("x", "a1b2c3d4", &result_of_difficulty(100));
        s.extra_nonce = Some(7);
        let block = decode_hex(&t.solved_block(&s).unwrap()).unwrap();
        assert_eq!(&block[134..138], &[7, 0, 0, 0], "the miner's extra nonce");
        assert_eq!(&block[39..43], &[0xa1, 0xb2, 0xc3, 0xd4], "its nonce");
        assert_eq!(
            &block[126..134],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            "the proxy's bytes"
        );
        // The submitted block hashes to the blob miner 7 was given, with its nonce.
        let mut given = work.hashing_blob(7);
        given[39..43].copy_from_slice(&[0xa1, 0xb2, 0xc3, 0xd4]);
        let submitted = BlockWork::parse(&block, 134).unwrap();
        assert_eq!(submitted.hashing_blob(7), given);
        assert_ne!(work.hashing_blob(7), work.hashing_blob(8));
    }

    #[test]
    fn in_extra_nonce_mode_a_block_is_its_extra_nonce_and_nonce() {
        let mut t = Template::from_reply(twelve_byte_reply(), "rx/0").unwrap();
        let good = result_of_difficulty(100);
        let mut s = share("x", "00000001", &good);
        s.extra_nonce = Some(7);
        assert!(t.take_share(&s).is_ok());
        assert_eq!(t.take_share(&s), Err("Duplicate share"));
        s.extra_nonce = Some(8);
        assert!(t.take_share(&s).is_ok(), "another miner, same nonce");
        // A template without room for a miner's bytes takes no extra nonce.
        let plain = template();
        assert!(plain.work().is_err());
        assert_eq!(
            plain.solved_block(&s),
            Err("Block template cannot take an extra nonce")
        );
    }

    #[test]
    fn every_extra_nonce_of_a_process_differs_and_shares_its_tag() {
        let a = next_extra_nonce();
        let b = next_extra_nonce();
        assert_ne!(a, b);
        assert_eq!(a[..4], b[..4], "one random tag per process");
        let seen: HashSet<_> = (0..1000).map(|_| next_extra_nonce()).collect();
        assert_eq!(seen.len(), 1000);
        assert_eq!(encode_hex(&a).len(), 2 * EXTRA_NONCE_SIZE);
        assert_eq!(
            a[MINER_SLOT..],
            [0; MINER_EXTRA_NONCE_SIZE],
            "room for a miner's"
        );
    }

    #[test]
    fn rpc_errors_and_statuses_are_told_apart() {
        let refused =
            br#"{"error":{"code":-7,"message":"Block not accepted"},"id":"0","jsonrpc":"2.0"}"#;
        assert_eq!(
            parse_submit_reply(refused),
            Err(DaemonError::Rpc {
                code: -7,
                message: "Block not accepted".into()
            })
        );
        assert_eq!(
            parse_submit_reply(br#"{"id":"0","jsonrpc":"2.0","result":{"status":"OK"}}"#),
            Ok(())
        );
        assert_eq!(
            parse_submit_reply(br#"{"result":{"status":"BUSY"}}"#),
            Err(DaemonError::NotOk("BUSY".into()))
        );
        assert_eq!(
            parse_submit_reply(br#"{"result":{"status":7}}"#),
            Err(DaemonError::NotOk("7".into())),
            "a status that is not a string is not OK"
        );
        let info = parse_info_reply(
            br#"{"result":{"top_block_hash":"41","tx_pool_size":3,"height":1,"status":"OK"}}"#,
        )
        .unwrap();
        assert_eq!(info.top_block_hash, "41");
        assert_eq!(info.tx_pool_size, 3);
    }

    #[test]
    fn unusable_reply_bodies_are_bad_replies() {
        let bad = |r: Result<(), DaemonError>| matches!(r, Err(DaemonError::BadReply(_)));
        for body in [
            &b""[..],
            b"<html>",
            b"[]",
            br#"{"id":"0"}"#,
            br#"{"result":null}"#,
        ] {
            assert!(bad(parse_submit_reply(body)), "{body:?}");
            assert!(bad(parse_info_reply(body).map(drop)), "{body:?}");
            assert!(
                bad(parse_template_reply(body, "rx/0").map(drop)),
                "{body:?}"
            );
            assert!(bad(parse_header_reply(body).map(drop)), "{body:?}");
        }
        assert!(bad(
            parse_info_reply(br#"{"result":{"tx_pool_size":1}}"#).map(drop)
        ));
        assert!(bad(parse_template_reply(
            br#"{"result":{"status":"OK"}}"#,
            "rx/0"
        )
        .map(drop)));
        assert!(bad(
            parse_header_reply(br#"{"result":{"status":"OK"}}"#).map(drop)
        ));
        assert!(bad(parse_header_reply(
            br#"{"result":{"block_header":{"nonce":4294967296,"prev_hash":"41"}}}"#
        )
        .map(drop)));
    }

    #[test]
    fn a_header_reply_names_nonce_and_parent() {
        let h = parse_header_reply(
            br#"{"result":{"status":"OK","block_header":{"nonce":3735928559,"prev_hash":"41","height":2}}}"#,
        )
        .unwrap();
        assert_eq!(
            h,
            BlockHeader {
                nonce: 0xdead_beef,
                prev_hash: "41".into()
            }
        );
    }
}
