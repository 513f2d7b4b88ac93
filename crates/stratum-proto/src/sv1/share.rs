//! Stratum V1 share checking, as a pure function: no I/O, no clock, no state.
//!
//! From a job ([`Notify`]), the connection's extranonce1 and a [`Submit`]:
//!
//! 1. coinbase = `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2` (the non-witness
//!    serialization: its sha256d is the txid) → [`coinbase_txid`];
//! 2. merkle root: `root = sha256d(root ‖ branch[i])` for each branch entry, bottom up, all
//!    in internal byte order → [`merkle_root`];
//! 3. the 80-byte header ([`build_header`]):
//!
//!    | bytes | field | from |
//!    |---|---|---|
//!    | 0..4 | version, LE | `(notify.version & !mask) \| (version_bits & mask)` ([`rolled_version`]) |
//!    | 4..36 | prev block hash | `notify.prevhash` with each 4-byte word byte-swapped ([`PrevHash`](super::PrevHash)) |
//!    | 36..68 | merkle root | step 2 |
//!    | 68..72 | time, LE | `submit.ntime` |
//!    | 72..76 | bits, LE | `notify.nbits` |
//!    | 76..80 | nonce, LE | `submit.nonce` |
//!
//! 4. sha256d of the header (the block hash) → its difficulty ([`hash_difficulty`]: the
//!    difficulty-1 target `0xffff · 2^208` over the hash read as a 256-bit little-endian
//!    number, as pools count share difficulty) compared with the share difficulty, and the
//!    hash compared with the network target from `nbits` (exactly, as nodes do).
//!
//! Hashes, the header, compact bits, targets and difficulty come from rust-bitcoin.
//! What this module does not check: that the job exists, that the share is no duplicate,
//! ntime's window, extranonce2's length: those need the session's state.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::pow::{CompactTarget, Target};
use bitcoin::{BlockHash, TxMerkleNode, Txid};

use super::{Notify, Submit};

/// Why a share cannot even be hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The miner set version bits outside the negotiated mask (BIP 310: `bits & !mask` must
    /// be 0). Answer with [`super::ErrorCode::Other`]; a retry cannot help.
    #[error("version bits {bits:08x} outside the mask {mask:08x}")]
    VersionBitsOutsideMask {
        /// The bits the miner sent.
        bits: u32,
        /// The mask it was given.
        mask: u32,
    },
}

/// What a share hashes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareCheck {
    /// The 80-byte header that was hashed.
    pub header: Header,
    /// sha256d of the header (displayed reversed, as block hashes are).
    pub hash: BlockHash,
    /// The hash's difficulty ([`hash_difficulty`]); `f64::INFINITY` for an all-zero hash.
    pub difficulty: f64,
    /// Whether `difficulty >= share_difficulty`.
    pub meets_share: bool,
    /// Whether the hash is at or below the network target from `nbits`: the header is a
    /// block.
    pub meets_network: bool,
}

/// The coinbase transaction's bytes, `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2`: its
/// non-witness serialization, as a block found by the share needs it (a segwit block adds
/// the coinbase's witness, which the txid does not cover).
pub fn coinbase_bytes(job: &Notify, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
    [&job.coinb1[..], extranonce1, extranonce2, &job.coinb2[..]].concat()
}

/// The txid of the coinbase `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2`: sha256d of those
/// bytes.
pub fn coinbase_txid(coinb1: &[u8], extranonce1: &[u8], extranonce2: &[u8], coinb2: &[u8]) -> Txid {
    let mut engine = sha256d::Hash::engine();
    for part in [coinb1, extranonce1, extranonce2, coinb2] {
        bitcoin::hashes::HashEngine::input(&mut engine, part);
    }
    Txid::from_raw_hash(sha256d::Hash::from_engine(engine))
}

/// The merkle root from the coinbase's txid and the branch (each entry in internal byte
/// order, bottom up): `root = sha256d(root ‖ entry)` per entry.
pub fn merkle_root(coinbase: Txid, branch: &[[u8; 32]]) -> TxMerkleNode {
    let mut acc = coinbase.to_byte_array();
    let mut buf = [0u8; 64];
    for entry in branch {
        buf[..32].copy_from_slice(&acc);
        buf[32..].copy_from_slice(entry);
        acc = sha256d::Hash::hash(&buf).to_byte_array();
    }
    TxMerkleNode::from_byte_array(acc)
}

/// The merkle branch of the coinbase for a block whose other transactions are `txids` (in
/// block order, the coinbase left out): what a pool puts in `mining.notify`, each entry in
/// internal byte order. At most `ceil(log2(n + 1))` entries.
pub fn merkle_branch(txids: &[Txid]) -> Vec<[u8; 32]> {
    // The level above the coinbase's column: the coinbase's slot is a placeholder, never
    // read, since each step hashes the column with its right neighbour.
    let mut level: Vec<[u8; 32]> = std::iter::once([0u8; 32])
        .chain(txids.iter().map(|t| t.to_byte_array()))
        .collect();
    let mut branch = Vec::new();
    let mut buf = [0u8; 64];
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            let last = level[level.len() - 1];
            level.push(last);
        }
        branch.push(level[1]);
        let next: Vec<[u8; 32]> = level
            .chunks_exact(2)
            .map(|pair| {
                buf[..32].copy_from_slice(&pair[0]);
                buf[32..].copy_from_slice(&pair[1]);
                sha256d::Hash::hash(&buf).to_byte_array()
            })
            .collect();
        level = next;
    }
    branch
}

/// The header version after rolling: `(job_version & !mask) | (bits & mask)`; the job's
/// version when the miner sent no bits.
///
/// # Errors
/// [`ShareError::VersionBitsOutsideMask`] when `bits & !mask != 0`.
pub fn rolled_version(job_version: u32, mask: u32, bits: Option<u32>) -> Result<u32, ShareError> {
    match bits {
        None => Ok(job_version),
        Some(bits) if bits & !mask != 0 => Err(ShareError::VersionBitsOutsideMask { bits, mask }),
        Some(bits) => Ok((job_version & !mask) | (bits & mask)),
    }
}

/// The header of a share: see the module's table.
///
/// # Errors
/// [`ShareError::VersionBitsOutsideMask`] from [`rolled_version`].
pub fn build_header(
    job: &Notify,
    extranonce1: &[u8],
    submit: &Submit,
    version_mask: u32,
) -> Result<Header, ShareError> {
    let version = rolled_version(job.version, version_mask, submit.version_bits)?;
    let txid = coinbase_txid(&job.coinb1, extranonce1, &submit.extranonce2, &job.coinb2);
    Ok(Header {
        // The consensus field is the same 32 bits read as signed.
        version: Version::from_consensus(version as i32),
        prev_blockhash: job.prevhash.to_block_hash(),
        merkle_root: merkle_root(txid, &job.merkle_branch),
        time: submit.ntime,
        bits: CompactTarget::from_consensus(job.nbits),
        nonce: submit.nonce,
    })
}

/// The difficulty of a block hash: `0xffff · 2^208 / hash` (the hash read as a 256-bit
/// little-endian number), as an `f64`; `f64::INFINITY` for an all-zero hash. A hash of
/// difficulty `d` meets share difficulty `d` and below.
pub fn hash_difficulty(hash: BlockHash) -> f64 {
    Target::from_le_bytes(hash.to_byte_array()).difficulty_float()
}

/// The network target of compact `nbits`.
pub fn network_target(nbits: u32) -> Target {
    Target::from_compact(CompactTarget::from_consensus(nbits))
}

/// Checks a share: builds the header, hashes it, and compares with `share_difficulty` (the
/// miner's difficulty, > 0) and the network target of `job.nbits`.
///
/// The caller has found the job by `submit.job_id` and knows this connection's
/// `extranonce1` and `version_mask` (0 when version rolling was not negotiated: then any
/// version bits are refused).
///
/// # Errors
/// [`ShareError::VersionBitsOutsideMask`]: the version bits leave the mask.
pub fn check_share(
    job: &Notify,
    extranonce1: &[u8],
    submit: &Submit,
    version_mask: u32,
    share_difficulty: f64,
) -> Result<ShareCheck, ShareError> {
    let header = build_header(job, extranonce1, submit, version_mask)?;
    let hash = header.block_hash();
    let difficulty = hash_difficulty(hash);
    Ok(ShareCheck {
        header,
        hash,
        difficulty,
        meets_share: difficulty >= share_difficulty,
        meets_network: network_target(job.nbits).is_met_by(hash),
    })
}

#[cfg(test)]
mod tests;
