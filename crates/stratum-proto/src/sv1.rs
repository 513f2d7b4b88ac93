//! The Bitcoin Stratum V1 dialect (slush's stratum, `shared/spec/stratum-v1-slush.md`, with
//! BIP 310's `mining.configure` and the extensions every ASIC and `para` speak).
//!
//! Two directions, each with one parser and one encoder, so that the proxy can stand on
//! either side (miners → proxy, proxy → pool):
//!
//! | who sends | what | parse | encode |
//! |---|---|---|---|
//! | miner (client) | requests: `mining.subscribe`, `authorize`, `configure`, `extranonce.subscribe`, `suggest_difficulty`, `submit` | [`parse_client_line`] | [`ClientRequest::encode`] |
//! | miner (client) | answers to `client.get_version` | [`parse_client_line`] | [`encode_result`] |
//! | pool (server) | notifications `mining.notify`, `set_difficulty`, `set_extranonce`, `set_version_mask`; requests `client.reconnect`, `client.get_version` | [`parse_server_line`] | [`ServerMessage::encode`] |
//! | pool (server) | answers | [`parse_server_line`] | [`encode_subscribe_result`], [`encode_configure_result`], [`encode_bool_result`], [`encode_error`] |
//!
//! Every encoder returns one complete line ending in `\n`; its `_into` form
//! ([`encode_bool_result_into`], [`encode_configure_result_into`],
//! [`SubscribeAnswer::encode_into`], [`ServerMessage::encode_into`], ...) appends the same
//! bytes to a caller's buffer, so that a driver writes several answers from one reused
//! buffer. JSON-RPC ids are any JSON value
//! ([`Id`]) and are echoed unchanged. Errors go on the wire as `[code, "message", null]`
//! ([`ErrorCode`]); answers from pools are read in that shape or as `{"code","message"}`.
//!
//! Hex fields on the wire and their typed form here:
//!
//! | field | wire | here | header bytes |
//! |---|---|---|---|
//! | `version`, `nbits`, `ntime`, `nonce`, version bits, masks | 8 hex chars, the `u32` big-endian (`"20000000"`) | `u32` | little-endian |
//! | `prevhash` | 64 hex chars: the header's 32 bytes with each 4-byte word byte-swapped | [`PrevHash`] | see [`PrevHash`] |
//! | `merkle_branch` entries | 64 hex chars, internal byte order (sha256d output as is) | `[u8; 32]` | — |
//! | `coinb1`, `coinb2`, `extranonce1`, `extranonce2` | hex of the bytes, in order | `Vec<u8>` | — |
//!
//! Job ids are opaque strings on the wire, but the proxy's own job ids must be lowercase hex
//! (`para` refuses others): make them with [`job_id`], check foreign ones with
//! [`is_hex_job_id`].
//!
//! A `mining.notify` is the same for every miner of one upstream (the per-miner part,
//! extranonce1, travels in the subscribe answer), so it is encoded once
//! ([`ServerMessage::encode`]) and the bytes shared (`bytes::Bytes`); no per-miner patching
//! as CryptoNote's `JobLine` needs.
//!
//! Share checking (coinbase → merkle root → header → sha256d → difficulty) is in [`share`].

pub mod share;
mod submit;

use bitcoin::hex::{DisplayHex, FromHex};
use serde::Serialize;
use serde_json::Value;

use crate::Id;

/// Stratum V1 error codes (the de-facto list of slush's pool, used by cgminer, ckpool, para).
/// On the wire: `"error":[code,"message",null]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 20: any other error (also malformed requests).
    Other,
    /// 21: the share's job is unknown or stale.
    JobNotFound,
    /// 22: the share was submitted before.
    Duplicate,
    /// 23: the share's hash does not meet the miner's difficulty.
    LowDifficulty,
    /// 24: the worker is not authorized.
    Unauthorized,
    /// 25: the connection has not subscribed.
    NotSubscribed,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 6] = [
        Self::Other,
        Self::JobNotFound,
        Self::Duplicate,
        Self::LowDifficulty,
        Self::Unauthorized,
        Self::NotSubscribed,
    ];

    /// The numeric code (20..=25).
    pub fn code(self) -> i64 {
        match self {
            Self::Other => 20,
            Self::JobNotFound => 21,
            Self::Duplicate => 22,
            Self::LowDifficulty => 23,
            Self::Unauthorized => 24,
            Self::NotSubscribed => 25,
        }
    }

    /// The standard message for the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::Other => "Other/Unknown",
            Self::JobNotFound => "Job not found",
            Self::Duplicate => "Duplicate share",
            Self::LowDifficulty => "Low difficulty share",
            Self::Unauthorized => "Unauthorized worker",
            Self::NotSubscribed => "Not subscribed",
        }
    }

    /// The code for a number, `None` outside 20..=25.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// An error as a pool answered it (any code, any message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The numeric code (20..=25 for the standard ones; pools use others too).
    pub code: i64,
    /// The message, as sent.
    pub message: String,
}

impl RpcError {
    /// The standard code, if it is one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }

    /// Reads an `error` value: `[code, "message", ...]`, `{"code":..,"message":..}` or a bare
    /// string (code 20). `None` for `null` (no error).
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::Array(a) => Some(Self {
                code: a.first().and_then(Value::as_i64).unwrap_or(20),
                message: a.get(1).map(value_text).unwrap_or_default(),
            }),
            Value::Object(o) => Some(Self {
                code: o.get("code").and_then(Value::as_i64).unwrap_or(20),
                message: o.get("message").map(value_text).unwrap_or_default(),
            }),
            other => Some(Self {
                code: 20,
                message: value_text(other),
            }),
        }
    }
}

impl From<ErrorCode> for RpcError {
    fn from(code: ErrorCode) -> Self {
        Self {
            code: code.code(),
            message: code.message().to_owned(),
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The previous block hash as `mining.notify` carries it: the 32 bytes of the header's
/// `prev_blockhash` field with each 4-byte word byte-swapped (word order kept).
///
/// So the wire hex is the usual displayed block hash with its eight 4-byte words in reverse
/// order: block `00000000440b921e…` travels as `…440b921e00000000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrevHash(pub [u8; 32]);

impl PrevHash {
    /// From a block hash (the header field's bytes).
    pub fn from_block_hash(hash: bitcoin::BlockHash) -> Self {
        use bitcoin::hashes::Hash;
        Self(swap_words(hash.to_byte_array()))
    }

    /// The block hash (the header field's bytes).
    pub fn to_block_hash(self) -> bitcoin::BlockHash {
        use bitcoin::hashes::Hash;
        bitcoin::BlockHash::from_byte_array(swap_words(self.0))
    }

    /// The 64 lowercase hex chars of the wire.
    pub fn to_hex(self) -> String {
        self.0.to_lower_hex_string()
    }

    /// From 64 hex chars of the wire; `None` otherwise.
    pub fn from_hex(s: &str) -> Option<Self> {
        <[u8; 32]>::from_hex(s).ok().map(Self)
    }
}

fn swap_words(mut b: [u8; 32]) -> [u8; 32] {
    for w in b.chunks_exact_mut(4) {
        w.reverse();
    }
    b
}

/// A job id the proxy gives out: `n` in lowercase hex without leading zeros (`para` accepts
/// only hex job ids).
pub fn job_id(n: u64) -> String {
    format!("{n:x}")
}

/// Whether `s` is a non-empty string of at most 16 hex digits (a job id `para` accepts).
pub fn is_hex_job_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `mining.subscribe` params: `[user_agent, session_id]`, both optional (`[]` is valid).
/// The session id asks the pool to resume an earlier subscription (same extranonce1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// Miner software, e.g. `"cgminer/4.10.0"`.
    pub user_agent: Option<String>,
    /// The subscription id of an earlier session to resume.
    pub session_id: Option<String>,
}

/// `mining.authorize` params: `[username, password]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorize {
    /// Worker name, usually `account.worker`.
    pub username: String,
    /// Password; `None` when left out or `null`.
    pub password: Option<String>,
}

/// The `version-rolling` extension asked for in `mining.configure` (BIP 310).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRollingRequest {
    /// `version-rolling.mask`: the bits the miner would like to roll (bitaxe asks for
    /// `ffffffff`). `None` when left out.
    pub mask: Option<u32>,
    /// `version-rolling.min-bit-count`: how many bits it needs at least. `None` when left
    /// out.
    pub min_bit_count: Option<u32>,
}

/// `mining.configure` params (BIP 310): `[[extension names], {"ext.param": value}]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configure {
    /// `version-rolling`, with its parameters.
    pub version_rolling: Option<VersionRollingRequest>,
    /// `minimum-difficulty`: `minimum-difficulty.value`, the lowest difficulty the miner
    /// wants.
    pub minimum_difficulty: Option<f64>,
    /// `subscribe-extranonce` asked for (same as `mining.extranonce.subscribe`).
    pub subscribe_extranonce: bool,
    /// Names of extensions this crate does not know, in order (answered by leaving them out
    /// of the result, per BIP 310).
    pub unknown: Vec<String>,
}

/// `mining.submit` params: `[worker, job_id, extranonce2, ntime, nonce]` and, with version
/// rolling, a 6th: the version bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The worker name given in `mining.authorize`.
    pub worker: String,
    /// The job the share was found for.
    pub job_id: String,
    /// The miner's extranonce2 bytes (hex on the wire; its length is the subscription's
    /// `extranonce2_size`, checked by the caller).
    pub extranonce2: Vec<u8>,
    /// The header's time.
    pub ntime: u32,
    /// The header's nonce.
    pub nonce: u32,
    /// BIP 310 version bits: only the rolled bits (within the negotiated mask); the header's
    /// version is `(job version & !mask) | (bits & mask)`.
    pub version_bits: Option<u32>,
}

/// A request from a miner (or from the proxy to a pool).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    /// `mining.subscribe`.
    Subscribe(Subscribe),
    /// `mining.authorize`.
    Authorize(Authorize),
    /// `mining.configure` (BIP 310).
    Configure(Configure),
    /// `mining.extranonce.subscribe` (no params).
    ExtranonceSubscribe,
    /// `mining.suggest_difficulty`: the difficulty the miner would like.
    SuggestDifficulty(f64),
    /// `mining.submit`.
    Submit(Submit),
}

/// One line from a miner: a request, or the answer to a request the proxy sent it
/// (`client.get_version`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// A request under its id.
    Request {
        /// The request's id, to echo.
        id: Id,
        /// The request.
        request: ClientRequest,
    },
    /// An answer (a line without `method`).
    Response {
        /// The id we used.
        id: Id,
        /// `result` (when `error` is null) or `error`.
        outcome: Result<Value, RpcError>,
    },
}

/// Why a miner's line is not a request we can serve. Each but an unreadable line is answered
/// with [`encode_error`] under [`RequestError::id`], code 20 ([`ErrorCode::Other`]) and
/// [`RequestError::message`]; the connection lives on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not a JSON object. Answered under id `null`.
    #[error("Parse error")]
    Parse,
    /// A method Stratum V1 does not have here (or no method and no result).
    #[error("Unknown method")]
    UnknownMethod {
        /// The request's id.
        id: Id,
        /// The method name as sent (empty when missing).
        method: String,
    },
    /// Params of the wrong shape, e.g. a nonce that is not 8 hex chars.
    #[error("Invalid params: {reason}")]
    InvalidParams {
        /// The request's id.
        id: Id,
        /// Which param is wrong.
        reason: &'static str,
    },
}

impl RequestError {
    /// The id to answer under (`null` when the line had none we could read).
    pub fn id(&self) -> &Id {
        static NULL: Value = Value::Null;
        match self {
            Self::Parse => &NULL,
            Self::UnknownMethod { id, .. } | Self::InvalidParams { id, .. } => id,
        }
    }

    /// The message sent to the miner: `"Parse error"`, `"Unknown method"` or
    /// `"Invalid params: <which>"`.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The error line to send back (code 20).
    pub fn reply(&self) -> Vec<u8> {
        encode_error_message(self.id(), ErrorCode::Other.code(), &self.message())
    }
}

/// `mining.notify` params: `[job_id, prevhash, coinb1, coinb2, merkle_branch, version, nbits,
/// ntime, clean_jobs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The job id (the proxy's own are hex: [`job_id`]).
    pub job_id: String,
    /// The previous block hash, word-swapped ([`PrevHash`]).
    pub prevhash: PrevHash,
    /// Coinbase bytes before extranonce1.
    pub coinb1: Vec<u8>,
    /// Coinbase bytes after extranonce2.
    pub coinb2: Vec<u8>,
    /// The merkle branch of the coinbase, bottom up, each hash in internal byte order.
    pub merkle_branch: Vec<[u8; 32]>,
    /// Block version (before rolling).
    pub version: u32,
    /// The network target in compact form.
    pub nbits: u32,
    /// The header time the pool proposes.
    pub ntime: u32,
    /// Whether earlier jobs are void.
    pub clean_jobs: bool,
}

/// `client.reconnect` params: `[host, port, wait_seconds]`, all optional (`[]` means the
/// same server).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconnect {
    /// Host to connect to.
    pub host: Option<String>,
    /// Port to connect to (a number, or a numeric string on the wire).
    pub port: Option<u16>,
    /// Seconds to wait before reconnecting.
    pub wait_secs: Option<u64>,
}

/// One line from a pool (or from the proxy to a miner).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `mining.notify`.
    Notify(Notify),
    /// `mining.set_difficulty`: share difficulty for the next jobs (finite, > 0).
    SetDifficulty(f64),
    /// `mining.set_extranonce`: `[extranonce1, extranonce2_size]`.
    SetExtranonce {
        /// The new extranonce1 bytes.
        extranonce1: Vec<u8>,
        /// The new extranonce2 size in bytes.
        extranonce2_size: usize,
    },
    /// `mining.set_version_mask`: `[mask]`, the bits now allowed to roll.
    SetVersionMask(u32),
    /// `client.reconnect`, under its id (usually `null`).
    Reconnect {
        /// The request's id.
        id: Id,
        /// Where to.
        params: Reconnect,
    },
    /// `client.get_version`: answer with the software's name/version ([`encode_result`]).
    GetVersion {
        /// The request's id.
        id: Id,
    },
    /// An answer to one of our requests.
    Response {
        /// Our request's id.
        id: Id,
        /// `result` (when `error` is null) or `error`.
        outcome: Result<Value, RpcError>,
    },
    /// A method this crate does not know (its name); safe to ignore.
    Other(String),
}

/// Why a pool's line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerMessageError {
    /// Not JSON or not a JSON object.
    #[error("pool sent a line that is not a JSON object")]
    Parse,
    /// A known method with params of the wrong shape.
    #[error("pool sent {method} with bad params: {reason}")]
    InvalidParams {
        /// The method.
        method: &'static str,
        /// Which param is wrong.
        reason: &'static str,
    },
}

impl ServerMessageError {
    /// `InvalidParams` of `method`, given the reason: for readers that check many params.
    fn invalid_params(method: &'static str) -> impl Fn(&'static str) -> Self {
        move |reason| Self::InvalidParams { method, reason }
    }
}

/// The `result` of `mining.subscribe`: `[[[method, subscription_id], ...], extranonce1,
/// extranonce2_size]`.
///
/// The first element is always encoded as a list (possibly empty), never `null`: `para`
/// refuses `null`. When reading, `null` and a single pair are accepted too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeResult {
    /// `(method, subscription id)` pairs, e.g. `("mining.notify", "ae68…")`.
    pub subscriptions: Vec<(String, String)>,
    /// This connection's extranonce1 bytes.
    pub extranonce1: Vec<u8>,
    /// How many bytes of extranonce2 the miner rolls.
    pub extranonce2_size: usize,
}

impl SubscribeResult {
    /// Reads a subscribe `result` value.
    ///
    /// # Errors
    /// [`ServerMessageError::InvalidParams`] when it is not the shape above.
    pub fn from_value(v: &Value) -> Result<Self, ServerMessageError> {
        let bad = ServerMessageError::invalid_params("mining.subscribe");
        let a = v.as_array().ok_or(bad("result is not an array"))?;
        if a.len() < 3 {
            return Err(bad("result has fewer than 3 elements"));
        }
        let pair = |p: &Value| -> Option<(String, String)> {
            let p = p.as_array()?;
            Some((
                p.first()?.as_str()?.to_owned(),
                p.get(1).map(value_text).unwrap_or_default(),
            ))
        };
        let subscriptions = match &a[0] {
            Value::Null => Vec::new(),
            Value::Array(items) if items.first().is_some_and(Value::is_string) => {
                vec![pair(&a[0]).ok_or(bad("bad subscription"))?]
            }
            Value::Array(items) => items
                .iter()
                .map(pair)
                .collect::<Option<_>>()
                .ok_or(bad("bad subscription"))?,
            _ => return Err(bad("subscriptions are not a list")),
        };
        let extranonce1 = a[1]
            .as_str()
            .and_then(hex_bytes)
            .filter(|e| e.len() <= MAX_EXTRANONCE_SIZE)
            .ok_or(bad("extranonce1 is not hex of at most 32 bytes"))?;
        let extranonce2_size = a[2]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n <= MAX_EXTRANONCE_SIZE)
            .ok_or(bad("extranonce2_size is not a small number"))?;
        Ok(Self {
            subscriptions,
            extranonce1,
            extranonce2_size,
        })
    }
}

/// The answer to BIP 310's `version-rolling`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRollingResult {
    /// `"version-rolling":true` with `"version-rolling.mask"`: the bits the miner may roll.
    Enabled {
        /// The granted mask (a subset of what was asked).
        mask: u32,
    },
    /// `"version-rolling":false`.
    Disabled,
    /// `"version-rolling":"<error>"`: refused with a reason.
    Error(String),
}

/// The `result` of `mining.configure` (BIP 310): an object with one key per answered
/// extension, e.g. `{"version-rolling":true,"version-rolling.mask":"1fffe000"}`.
/// Extensions left `None` are left out (not supported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigureResult {
    /// `version-rolling` (and `version-rolling.mask`).
    pub version_rolling: Option<VersionRollingResult>,
    /// `minimum-difficulty`: whether it is honoured.
    pub minimum_difficulty: Option<bool>,
    /// `subscribe-extranonce`: whether `mining.set_extranonce` will be sent.
    pub subscribe_extranonce: Option<bool>,
}

impl ConfigureResult {
    /// Reads a configure `result` value.
    ///
    /// # Errors
    /// [`ServerMessageError::InvalidParams`] when it is not an object, or version rolling is
    /// `true` without an 8-hex-char mask.
    pub fn from_value(v: &Value) -> Result<Self, ServerMessageError> {
        let bad = ServerMessageError::invalid_params("mining.configure");
        let o = v.as_object().ok_or(bad("result is not an object"))?;
        let version_rolling = match o.get("version-rolling") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(true)) => Some(VersionRollingResult::Enabled {
                mask: o
                    .get("version-rolling.mask")
                    .and_then(Value::as_str)
                    .and_then(hex_u32)
                    .ok_or(bad("version-rolling.mask is not 8 hex chars"))?,
            }),
            Some(Value::Bool(false)) => Some(VersionRollingResult::Disabled),
            Some(other) => Some(VersionRollingResult::Error(value_text(other))),
        };
        let flag = |key: &str| o.get(key).map(|v| v.as_bool().unwrap_or(false));
        Ok(Self {
            version_rolling,
            minimum_difficulty: flag("minimum-difficulty"),
            subscribe_extranonce: flag("subscribe-extranonce"),
        })
    }
}

/// Longest extranonce1 or extranonce2 accepted, in bytes (real ones are 4 to 8; 32 leaves
/// room and keeps a hostile value from sizing buffers).
pub const MAX_EXTRANONCE_SIZE: usize = 32;

/// Most entries accepted in a merkle branch (a block of 2^32 transactions needs 32).
pub const MAX_MERKLE_BRANCH: usize = 32;

/// Hex of a `u32` as the wire writes it: 8 lowercase chars, big-endian (`0x20000000` →
/// `"20000000"`).
pub fn u32_hex(n: u32) -> String {
    format!("{n:08x}")
}

/// A `u32` from exactly 8 hex chars (big-endian); `None` otherwise (no sign, no `0x`).
pub fn hex_u32(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    Vec::<u8>::from_hex(s).ok()
}

/// A difficulty as a JSON number: an integer when it is one (`2`, as pools write it, not
/// `2.0`), else the shortest decimal that reads back to the same `f64`.
fn difficulty_value(d: f64) -> Value {
    if d.fract() == 0.0 && (0.0..9.0e15).contains(&d) {
        // Exact: an integral f64 below 2^53.
        Value::from(d as u64)
    } else {
        Value::from(d)
    }
}

fn positive_finite(v: &Value) -> Option<f64> {
    v.as_f64().filter(|d| d.is_finite() && *d > 0.0)
}

/// A line as this dialect reads it: any `error` value, read by [`RpcError::from_value`].
type Envelope = crate::rpc::Envelope<WireError>;

/// An `error` value that is not `null` (serde reads `null` as no error).
struct WireError(RpcError);

impl<'de> serde::Deserialize<'de> for WireError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(WireError(RpcError::from_value(&value).unwrap_or(
            RpcError {
                code: 20,
                message: String::new(),
            },
        )))
    }
}

/// The line as a JSON object (serde would also read a struct from a JSON array: refused).
fn envelope(line: &[u8]) -> Option<Envelope> {
    let first = line.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(line).ok()
}

fn params_array(params: Option<Value>) -> Option<Vec<Value>> {
    match params {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(a)) => Some(a),
        Some(_) => None,
    }
}

fn response(env: Envelope) -> (Id, Result<Value, RpcError>) {
    let (id, outcome) = env.outcome();
    (id, outcome.map_err(|WireError(e)| e))
}

/// Parses one line from a miner.
///
/// # Errors
/// [`RequestError`]: not a JSON object → `Parse`; a method other than the six requests (or
/// no method and no `result`/`error`) → `UnknownMethod`; params of the wrong shape or
/// count → `InvalidParams` (e.g. `mining.submit` with fewer than 5 params, an ntime or
/// nonce that is not 8 hex chars, extranonce2 not hex or longer than
/// [`MAX_EXTRANONCE_SIZE`]). Extra trailing params are ignored.
pub fn parse_client_line(line: &[u8]) -> Result<ClientMessage, RequestError> {
    // A valid `mining.submit` (most lines) is read straight into its fields; the same
    // result as below (`sv1/submit.rs`).
    if let Some(submit) = submit::parse(line) {
        return Ok(submit);
    }
    parse_client_line_in_general(line)
}

/// [`parse_client_line`] for any line: the envelope, then the method's params.
fn parse_client_line_in_general(line: &[u8]) -> Result<ClientMessage, RequestError> {
    let mut env = envelope(line).ok_or(RequestError::Parse)?;
    let Some(method) = env.method.take() else {
        // An answer: `result`/`error` present, or at least an id of ours (`"result":null`
        // reads as absent).
        if env.result.is_some() || env.error.is_some() || !env.id.is_null() {
            let (id, outcome) = response(env);
            return Ok(ClientMessage::Response { id, outcome });
        }
        return Err(RequestError::UnknownMethod {
            id: env.id,
            method: String::new(),
        });
    };
    let id = env.id;
    let Some(mut p) = params_array(env.params) else {
        return Err(RequestError::InvalidParams {
            id,
            reason: "params is not an array",
        });
    };
    let request = match parse_request(&method, &mut p) {
        Ok(Some(r)) => r,
        Ok(None) => return Err(RequestError::UnknownMethod { id, method }),
        Err(reason) => return Err(RequestError::InvalidParams { id, reason }),
    };
    Ok(ClientMessage::Request { id, request })
}

fn opt_string(v: Option<&Value>, what: &'static str) -> Result<Option<String>, &'static str> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(what),
    }
}

/// [`opt_string`] taking the string out of the params (a miner's params are read once: no
/// copy).
fn take_string(v: Option<&mut Value>, what: &'static str) -> Result<Option<String>, &'static str> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(std::mem::take(s))),
        Some(_) => Err(what),
    }
}

fn parse_request(method: &str, p: &mut [Value]) -> Result<Option<ClientRequest>, &'static str> {
    Ok(Some(match method {
        "mining.subscribe" => ClientRequest::Subscribe(Subscribe {
            user_agent: take_string(p.get_mut(0), "user agent is not a string")?,
            session_id: take_string(p.get_mut(1), "session id is not a string")?,
        }),
        "mining.authorize" => ClientRequest::Authorize(Authorize {
            username: match p.get_mut(0) {
                Some(Value::String(s)) => std::mem::take(s),
                _ => return Err("username is not a string"),
            },
            password: take_string(p.get_mut(1), "password is not a string")?,
        }),
        "mining.configure" => ClientRequest::Configure(parse_configure(p)?),
        "mining.extranonce.subscribe" => ClientRequest::ExtranonceSubscribe,
        "mining.suggest_difficulty" => ClientRequest::SuggestDifficulty(
            p.first()
                .and_then(positive_finite)
                .ok_or("difficulty is not a positive number")?,
        ),
        "mining.submit" => ClientRequest::Submit(parse_submit(p)?),
        _ => return Ok(None),
    }))
}

fn parse_configure(p: &[Value]) -> Result<Configure, &'static str> {
    let names = p
        .first()
        .and_then(Value::as_array)
        .ok_or("extensions are not a list")?;
    let empty = serde_json::Map::new();
    let args = match p.get(1) {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err("extension params are not an object"),
    };
    let mut c = Configure::default();
    for name in names {
        match name.as_str().ok_or("extension name is not a string")? {
            "version-rolling" => {
                let mask = match args.get("version-rolling.mask") {
                    None => None,
                    Some(v) => Some(
                        v.as_str()
                            .and_then(hex_u32)
                            .ok_or("version-rolling.mask is not 8 hex chars")?,
                    ),
                };
                let min_bit_count = match args.get("version-rolling.min-bit-count") {
                    None => None,
                    Some(v) => Some(
                        v.as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|n| *n <= 32)
                            .ok_or("version-rolling.min-bit-count is not 0..=32")?,
                    ),
                };
                c.version_rolling = Some(VersionRollingRequest {
                    mask,
                    min_bit_count,
                });
            }
            "minimum-difficulty" => {
                c.minimum_difficulty = Some(
                    args.get("minimum-difficulty.value")
                        .and_then(positive_finite)
                        .ok_or("minimum-difficulty.value is not a positive number")?,
                );
            }
            "subscribe-extranonce" => c.subscribe_extranonce = true,
            other => c.unknown.push(other.to_owned()),
        }
    }
    Ok(c)
}

fn parse_submit(p: &[Value]) -> Result<Submit, &'static str> {
    if p.len() < 5 {
        return Err("mining.submit needs 5 params");
    }
    let s = |i: usize, what| p[i].as_str().ok_or(what);
    let extranonce2 = hex_bytes(s(2, "extranonce2 is not a string")?)
        .filter(|e| e.len() <= MAX_EXTRANONCE_SIZE)
        .ok_or("extranonce2 is not hex of at most 32 bytes")?;
    let version_bits = match p.get(5) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(hex_u32)
                .ok_or("version bits are not 8 hex chars")?,
        ),
    };
    Ok(Submit {
        worker: s(0, "worker is not a string")?.to_owned(),
        job_id: s(1, "job id is not a string")?.to_owned(),
        extranonce2,
        ntime: hex_u32(s(3, "ntime is not a string")?).ok_or("ntime is not 8 hex chars")?,
        nonce: hex_u32(s(4, "nonce is not a string")?).ok_or("nonce is not 8 hex chars")?,
        version_bits,
    })
}

/// Parses one line from a pool.
///
/// # Errors
/// [`ServerMessageError`]: not a JSON object → `Parse`; a known method with params of the
/// wrong shape → `InvalidParams` (e.g. a `mining.notify` with fewer than 9 params, a
/// prevhash that is not 64 hex chars, a branch entry that is not 64 hex chars, more than
/// [`MAX_MERKLE_BRANCH`] entries, version/nbits/ntime not 8 hex chars; a difficulty that is
/// not a positive finite number). Unknown methods are `Ok(ServerMessage::Other)`.
pub fn parse_server_line(line: &[u8]) -> Result<ServerMessage, ServerMessageError> {
    let env = envelope(line).ok_or(ServerMessageError::Parse)?;
    let Some(method) = env.method.clone() else {
        let (id, outcome) = response(env);
        return Ok(ServerMessage::Response { id, outcome });
    };
    let id = env.id;
    let p = params_array(env.params);
    let bad = |method, reason| ServerMessageError::InvalidParams { method, reason };
    let msg = match method.as_str() {
        "mining.notify" => {
            let p = p.ok_or(bad("mining.notify", "params is not an array"))?;
            ServerMessage::Notify(parse_notify(&p).map_err(|r| bad("mining.notify", r))?)
        }
        "mining.set_difficulty" => ServerMessage::SetDifficulty(
            p.as_deref()
                .and_then(<[Value]>::first)
                .and_then(positive_finite)
                .ok_or(bad(
                    "mining.set_difficulty",
                    "difficulty is not a positive number",
                ))?,
        ),
        "mining.set_extranonce" => {
            let m = "mining.set_extranonce";
            let p = p.ok_or(bad(m, "params is not an array"))?;
            let extranonce1 = p
                .first()
                .and_then(Value::as_str)
                .and_then(hex_bytes)
                .filter(|e| e.len() <= MAX_EXTRANONCE_SIZE)
                .ok_or(bad(m, "extranonce1 is not hex of at most 32 bytes"))?;
            let extranonce2_size = p
                .get(1)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= MAX_EXTRANONCE_SIZE)
                .ok_or(bad(m, "extranonce2_size is not 0..=32"))?;
            ServerMessage::SetExtranonce {
                extranonce1,
                extranonce2_size,
            }
        }
        "mining.set_version_mask" => ServerMessage::SetVersionMask(
            p.as_deref()
                .and_then(<[Value]>::first)
                .and_then(Value::as_str)
                .and_then(hex_u32)
                .ok_or(bad("mining.set_version_mask", "mask is not 8 hex chars"))?,
        ),
        "client.reconnect" => {
            let m = "client.reconnect";
            let p = p.ok_or(bad(m, "params is not an array"))?;
            let host = opt_string(p.first(), "host is not a string").map_err(|r| bad(m, r))?;
            let port = match p.get(1) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.parse().map_err(|_| bad(m, "bad port"))?),
                Some(v) => Some(
                    v.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or(bad(m, "bad port"))?,
                ),
            };
            let wait_secs = match p.get(2) {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or(bad(m, "wait is not seconds"))?),
            };
            ServerMessage::Reconnect {
                id,
                params: Reconnect {
                    host,
                    port,
                    wait_secs,
                },
            }
        }
        "client.get_version" => ServerMessage::GetVersion { id },
        _ => ServerMessage::Other(method),
    };
    Ok(msg)
}

fn parse_notify(p: &[Value]) -> Result<Notify, &'static str> {
    if p.len() < 9 {
        return Err("mining.notify needs 9 params");
    }
    let s = |i: usize, what| p[i].as_str().ok_or(what);
    let branch = p[4].as_array().ok_or("merkle branch is not a list")?;
    if branch.len() > MAX_MERKLE_BRANCH {
        return Err("merkle branch is longer than 32");
    }
    let merkle_branch = branch
        .iter()
        .map(|h| h.as_str().and_then(|h| <[u8; 32]>::from_hex(h).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or("merkle branch entry is not 64 hex chars")?;
    Ok(Notify {
        job_id: s(0, "job id is not a string")?.to_owned(),
        prevhash: PrevHash::from_hex(s(1, "prevhash is not a string")?)
            .ok_or("prevhash is not 64 hex chars")?,
        coinb1: hex_bytes(s(2, "coinb1 is not a string")?).ok_or("coinb1 is not hex")?,
        coinb2: hex_bytes(s(3, "coinb2 is not a string")?).ok_or("coinb2 is not hex")?,
        merkle_branch,
        version: hex_u32(s(5, "version is not a string")?).ok_or("version is not 8 hex chars")?,
        nbits: hex_u32(s(6, "nbits is not a string")?).ok_or("nbits is not 8 hex chars")?,
        ntime: hex_u32(s(7, "ntime is not a string")?).ok_or("ntime is not 8 hex chars")?,
        clean_jobs: p[8].as_bool().ok_or("clean_jobs is not a boolean")?,
    })
}

// ----- encoders -----

#[derive(Serialize)]
struct RequestOut<'a, P> {
    id: &'a Id,
    method: &'static str,
    params: P,
}

#[derive(Serialize)]
struct ResultOut<'a, R> {
    id: &'a Id,
    result: R,
    error: Option<()>,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    id: &'a Id,
    result: Option<()>,
    error: (i64, &'a str, Option<()>),
}

/// Appends `value` as JSON and `\n` to `out`.
fn line_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    // Serializing these plain values into a `Vec` cannot fail (no maps with non-string
    // keys, no I/O); were it to, the line is left empty, as `to_vec` then gave.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
    }
    out.push(b'\n');
}

/// `value` as one line in a fresh `Vec` (128 bytes reserved, as `serde_json::to_vec` does).
fn line<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    line_into(&mut out, value);
    out
}

/// A notification (`"id":null`) appended to `out`.
fn note_into<P: Serialize>(out: &mut Vec<u8>, method: &'static str, params: P) {
    line_into(
        out,
        &RequestOut {
            id: &Value::Null,
            method,
            params,
        },
    );
}

/// A `u32` written as 8 lowercase hex chars ([`u32_hex`]) with no `String` made.
struct HexU32(u32);

impl Serialize for HexU32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:08x}", self.0))
    }
}

/// Bytes written as a lowercase hex string with no `String` made.
struct HexBytes<'a>(&'a [u8]);

impl Serialize for HexBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.as_hex())
    }
}

/// A difficulty written as [`difficulty_value`] writes it, with no `Value` made.
struct Difficulty(f64);

impl Serialize for Difficulty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        if d.fract() == 0.0 && (0.0..9.0e15).contains(&d) {
            // Exact: an integral f64 below 2^53.
            s.serialize_u64(d as u64)
        } else {
            s.serialize_f64(d)
        }
    }
}

impl ClientRequest {
    /// The JSON-RPC method name, e.g. `"mining.submit"`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Subscribe(_) => "mining.subscribe",
            Self::Authorize(_) => "mining.authorize",
            Self::Configure(_) => "mining.configure",
            Self::ExtranonceSubscribe => "mining.extranonce.subscribe",
            Self::SuggestDifficulty(_) => "mining.suggest_difficulty",
            Self::Submit(_) => "mining.submit",
        }
    }

    /// `{"id":ID,"method":M,"params":[...]}\n`. Optional trailing params are left out
    /// (an absent user agent before a session id is `null`); [`parse_client_line`] reads
    /// the line back to the same value.
    pub fn encode(&self, id: &Id) -> Vec<u8> {
        let params: Vec<Value> = match self {
            Self::Subscribe(s) => {
                let mut p = Vec::new();
                if s.user_agent.is_some() || s.session_id.is_some() {
                    p.push(s.user_agent.clone().map_or(Value::Null, Value::String));
                }
                if let Some(sid) = &s.session_id {
                    p.push(Value::String(sid.clone()));
                }
                p
            }
            Self::Authorize(a) => {
                let mut p = vec![Value::String(a.username.clone())];
                if let Some(pw) = &a.password {
                    p.push(Value::String(pw.clone()));
                }
                p
            }
            Self::Configure(c) => {
                let mut names = Vec::new();
                let mut args = serde_json::Map::new();
                if let Some(vr) = &c.version_rolling {
                    names.push(Value::from("version-rolling"));
                    if let Some(mask) = vr.mask {
                        args.insert("version-rolling.mask".into(), u32_hex(mask).into());
                    }
                    if let Some(n) = vr.min_bit_count {
                        args.insert("version-rolling.min-bit-count".into(), n.into());
                    }
                }
                if let Some(d) = c.minimum_difficulty {
                    names.push(Value::from("minimum-difficulty"));
                    args.insert("minimum-difficulty.value".into(), difficulty_value(d));
                }
                if c.subscribe_extranonce {
                    names.push(Value::from("subscribe-extranonce"));
                }
                names.extend(c.unknown.iter().map(|n| Value::from(n.as_str())));
                vec![Value::Array(names), Value::Object(args)]
            }
            Self::ExtranonceSubscribe => Vec::new(),
            Self::SuggestDifficulty(d) => vec![difficulty_value(*d)],
            Self::Submit(s) => {
                let mut p = vec![
                    Value::from(s.worker.as_str()),
                    Value::from(s.job_id.as_str()),
                    Value::from(s.extranonce2.to_lower_hex_string()),
                    Value::from(u32_hex(s.ntime)),
                    Value::from(u32_hex(s.nonce)),
                ];
                if let Some(v) = s.version_bits {
                    p.push(Value::from(u32_hex(v)));
                }
                p
            }
        };
        line(&RequestOut {
            id,
            method: self.method(),
            params,
        })
    }
}

/// `mining.notify`'s 9 params in wire order (a tuple struct serializes as an array).
#[derive(Serialize)]
struct NotifyParams<'a>(
    &'a str,
    String,
    String,
    String,
    Vec<String>,
    String,
    String,
    String,
    bool,
);

impl Notify {
    fn params(&self) -> NotifyParams<'_> {
        NotifyParams(
            &self.job_id,
            self.prevhash.to_hex(),
            self.coinb1.to_lower_hex_string(),
            self.coinb2.to_lower_hex_string(),
            self.merkle_branch
                .iter()
                .map(|h| h.to_lower_hex_string())
                .collect(),
            u32_hex(self.version),
            u32_hex(self.nbits),
            u32_hex(self.ntime),
            self.clean_jobs,
        )
    }
}

impl ServerMessage {
    /// The line: notifications as `{"id":null,"method":M,"params":[...]}\n`, requests under
    /// their id, responses as [`encode_result`] / [`encode_error_message`] do.
    /// [`parse_server_line`] reads it back to the same value. `Other(m)` encodes a
    /// notification `m` without params.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(&mut out);
        out
    }

    /// [`ServerMessage::encode`] appended to `out` (e.g. a connection's reused buffer): the
    /// same bytes; `set_difficulty`, `set_extranonce` and `set_version_mask` make no
    /// allocation of their own.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Notify(n) => note_into(out, "mining.notify", n.params()),
            Self::SetDifficulty(d) => {
                note_into(out, "mining.set_difficulty", (Difficulty(*d),));
            }
            Self::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => note_into(
                out,
                "mining.set_extranonce",
                (HexBytes(extranonce1), extranonce2_size),
            ),
            Self::SetVersionMask(m) => note_into(out, "mining.set_version_mask", (HexU32(*m),)),
            Self::Reconnect { id, params } => {
                let mut p = Vec::new();
                if params.host.is_some() || params.port.is_some() || params.wait_secs.is_some() {
                    p.push(params.host.clone().map_or(Value::Null, Value::String));
                }
                if params.port.is_some() || params.wait_secs.is_some() {
                    p.push(params.port.map_or(Value::Null, Value::from));
                }
                if let Some(w) = params.wait_secs {
                    p.push(Value::from(w));
                }
                line_into(
                    out,
                    &RequestOut {
                        id,
                        method: "client.reconnect",
                        params: p,
                    },
                );
            }
            Self::GetVersion { id } => line_into(
                out,
                &RequestOut {
                    id,
                    method: "client.get_version",
                    params: [(); 0],
                },
            ),
            Self::Response { id, outcome } => match outcome {
                Ok(v) => line_into(
                    out,
                    &ResultOut {
                        id,
                        result: v,
                        error: None,
                    },
                ),
                Err(e) => encode_error_message_into(out, id, e.code, &e.message),
            },
            Self::Other(m) => line_into(
                out,
                &serde_json::json!({
                    "id": null, "method": m, "params": []
                }),
            ),
        }
    }
}

/// `{"id":ID,"result":RESULT,"error":null}\n` for any result value (e.g. a
/// `client.get_version` answer: a string).
pub fn encode_result(id: &Id, result: &Value) -> Vec<u8> {
    line(&ResultOut {
        id,
        result,
        error: None,
    })
}

/// `{"id":ID,"result":true|false,"error":null}\n`: the answer to `mining.authorize`,
/// `mining.submit`, `mining.extranonce.subscribe`, `mining.suggest_difficulty`.
pub fn encode_bool_result(id: &Id, ok: bool) -> Vec<u8> {
    line(&ResultOut {
        id,
        result: ok,
        error: None,
    })
}

/// [`encode_bool_result`] appended to `out`.
pub fn encode_bool_result_into(out: &mut Vec<u8>, id: &Id, ok: bool) {
    line_into(
        out,
        &ResultOut {
            id,
            result: ok,
            error: None,
        },
    );
}

/// `{"id":ID,"result":null,"error":[CODE,"MESSAGE",null]}\n` with the standard message.
pub fn encode_error(id: &Id, code: ErrorCode) -> Vec<u8> {
    encode_error_message(id, code.code(), code.message())
}

/// `{"id":ID,"result":null,"error":[CODE,"MESSAGE",null]}\n` with any code and message.
pub fn encode_error_message(id: &Id, code: i64, message: &str) -> Vec<u8> {
    line(&error_out(id, code, message))
}

/// [`encode_error_message`] appended to `out`.
pub fn encode_error_message_into(out: &mut Vec<u8>, id: &Id, code: i64, message: &str) {
    line_into(out, &error_out(id, code, message));
}

fn error_out<'a>(id: &'a Id, code: i64, message: &'a str) -> ErrorOut<'a> {
    ErrorOut {
        id,
        result: None,
        error: (code, message, None),
    }
}

/// The subscribe answer: `{"id":ID,"result":[[["mining.set_difficulty",S],
/// ["mining.notify",S]],"EXTRANONCE1",SIZE],"error":null}\n`. The subscriptions list is
/// written even when empty (`[]`, never `null`).
pub fn encode_subscribe_result(id: &Id, r: &SubscribeResult) -> Vec<u8> {
    line(&ResultOut {
        id,
        result: (
            &r.subscriptions,
            HexBytes(&r.extranonce1),
            r.extranonce2_size,
        ),
        error: None,
    })
}

/// The subscribe answer a proxy gives its miner: both subscriptions (`mining.set_difficulty`
/// and `mining.notify`) under one id, the miner's number in lowercase hex, then its
/// extranonce1 and extranonce2 size. The same line as [`encode_subscribe_result`] of the
/// [`SubscribeResult`] that [`SubscribeAnswer::to_result`] gives, with no string made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeAnswer {
    /// The subscription id's number (written as `format!("{:x}")`).
    pub subscription: u64,
    /// This connection's extranonce1 bytes.
    pub extranonce1: Vec<u8>,
    /// How many bytes of extranonce2 the miner rolls.
    pub extranonce2_size: usize,
}

impl SubscribeAnswer {
    /// The same answer as a [`SubscribeResult`] (two owned pairs).
    pub fn to_result(&self) -> SubscribeResult {
        let sub = format!("{:x}", self.subscription);
        SubscribeResult {
            subscriptions: vec![
                ("mining.set_difficulty".into(), sub.clone()),
                ("mining.notify".into(), sub),
            ],
            extranonce1: self.extranonce1.clone(),
            extranonce2_size: self.extranonce2_size,
        }
    }

    /// The answer's line under `id`, appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>, id: &Id) {
        /// The subscription id, as lowercase hex, with no `String` made.
        struct LowerHex(u64);
        impl Serialize for LowerHex {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&format_args!("{:x}", self.0))
            }
        }
        let sub = || LowerHex(self.subscription);
        line_into(
            out,
            &ResultOut {
                id,
                result: (
                    (("mining.set_difficulty", sub()), ("mining.notify", sub())),
                    HexBytes(&self.extranonce1),
                    self.extranonce2_size,
                ),
                error: None,
            },
        );
    }
}

/// The configure answer (BIP 310): `{"id":ID,"result":{"version-rolling":true,
/// "version-rolling.mask":"1fffe000", ...},"error":null}\n`; extensions left `None` are
/// left out.
pub fn encode_configure_result(id: &Id, r: &ConfigureResult) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode_configure_result_into(&mut out, id, r);
    out
}

/// [`encode_configure_result`] appended to `out`. The keys come in the order a JSON object
/// map sorts them (`minimum-difficulty`, `subscribe-extranonce`, `version-rolling`,
/// `version-rolling.mask`), from a struct: no map is built.
pub fn encode_configure_result_into(out: &mut Vec<u8>, id: &Id, r: &ConfigureResult) {
    /// `version-rolling`'s value: `true`, `false` or the refusal's text.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Rolling<'a> {
        Flag(bool),
        Text(&'a str),
    }
    /// The result object, keys in sorted order.
    #[derive(Serialize)]
    struct ConfigureOut<'a> {
        #[serde(rename = "minimum-difficulty", skip_serializing_if = "Option::is_none")]
        minimum_difficulty: Option<bool>,
        #[serde(
            rename = "subscribe-extranonce",
            skip_serializing_if = "Option::is_none"
        )]
        subscribe_extranonce: Option<bool>,
        #[serde(rename = "version-rolling", skip_serializing_if = "Option::is_none")]
        version_rolling: Option<Rolling<'a>>,
        #[serde(
            rename = "version-rolling.mask",
            skip_serializing_if = "Option::is_none"
        )]
        mask: Option<HexU32>,
    }
    let (version_rolling, mask) = match &r.version_rolling {
        None => (None, None),
        Some(VersionRollingResult::Enabled { mask }) => {
            (Some(Rolling::Flag(true)), Some(HexU32(*mask)))
        }
        Some(VersionRollingResult::Disabled) => (Some(Rolling::Flag(false)), None),
        Some(VersionRollingResult::Error(e)) => (Some(Rolling::Text(e)), None),
    };
    line_into(
        out,
        &ResultOut {
            id,
            result: ConfigureOut {
                minimum_difficulty: r.minimum_difficulty,
                subscribe_extranonce: r.subscribe_extranonce,
                version_rolling,
                mask,
            },
            error: None,
        },
    );
}

#[cfg(test)]
mod tests;
