//! Wire types and codecs of the stratum dialects spoken by the proxy.
//!
//! This crate knows the JSON shapes; no other crate of the workspace builds or parses stratum
//! JSON by hand. It does no I/O, reads no clock and depends on no async runtime (the
//! [`codec::LineCodec`] implements `tokio_util::codec` traits, which are plain traits over
//! `bytes::BytesMut`), so a miner or a pool that is not this proxy can reuse it.
//!
//! Dialects:
//! - [`cryptonote`]: the xmrig-style CryptoNote stratum (go-proxy RFC §19): `login`, `submit`,
//!   `keepalived`, `getjob` requests from miners, `job` notifications, and the same messages
//!   seen from the proxy's own upstream side.
//! - [`sv1`]: Bitcoin Stratum V1 (slush, BIP 310 `mining.configure`): miner and pool
//!   messages with their codecs and error codes, and [`sv1::share`], the sha256d share check
//!   (coinbase → merkle root → header → difficulty) on rust-bitcoin.
//!
//! Shared pieces:
//! - [`codec`]: newline-delimited framing with a maximum line length (16384 bytes, RFC §19).
//! - [`job`]: the [`Job`] value, target ⇄ difficulty conversions and the NiceHash blob patch.
//! - `rpc` (private): the JSON-RPC envelope (`id`, `method`, `params`, `result` or `error`)
//!   that both dialects read from a peer, and its outcome (the error if any, else the result).

pub mod codec;
pub mod cryptonote;
pub mod job;
mod rpc;
pub mod sv1;

pub use codec::{CodecError, LineCodec, MAX_LINE_LENGTH};
pub use job::{
    difficulty_to_target, parse_nonce, result_difficulty, target_to_difficulty, Job, JobError,
    MAX_JOB_ID, NICEHASH_BYTE_OFFSET,
};

/// A JSON-RPC request id: any JSON value (number, string or null), echoed back unchanged.
pub type Id = serde_json::Value;
