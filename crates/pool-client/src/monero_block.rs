//! A Monero block template as `extra_nonce` mode needs it: one template, a distinct hashing
//! blob per miner. Pure: no I/O, no clock; Keccak-256 from `tiny-keccak`, the rest (varints,
//! the block layout, the transaction and tree hashes) written here.
//!
//! Facts (Monero's block format, as monerod's `get_block_template` returns it):
//!
//! | bytes of `blocktemplate_blob` | meaning |
//! |---|---|
//! | varint, varint, varint | major version, minor version, timestamp |
//! | 32 | previous block's hash |
//! | 4 | nonce (byte 39 for today's Monero: three one-byte… five-byte varints before it) |
//! | miner tx prefix | varint version (2), varint unlock time, varint 1 input, `0xff` (coinbase input), varint height, varint output count, per output: varint amount, type `2` (key, 32 bytes) or `3` (key, 32 bytes, view tag 1 byte), varint extra size, extra bytes |
//! | 1 | the miner tx's RingCT type: `0` (none) |
//! | varint n, n × 32 | hashes of the block's other transactions |
//!
//! The reserved bytes (`get_block_template`'s `extra_nonce` or `reserve_size`, at
//! `reserved_offset`) sit inside the miner tx's extra field. Writing a miner's 4-byte extra
//! nonce there changes the miner tx, so its hash, so the merkle root, and the hashing blob
//! becomes:
//!
//! | hashing blob bytes | from |
//! |---|---|
//! | 0..43 | the block's header (nonce included) |
//! | 43..75 | merkle root ([`tree_hash`]) of the miner tx's hash and the other hashes |
//! | 75.. | varint of the transaction count (n + 1) |
//!
//! The miner tx's hash (version 2): Keccak-256 of three hashes: Keccak-256 of the prefix,
//! Keccak-256 of its RingCT base (the single byte `0`), and 32 zero bytes (no prunable part).
//!
//! Blocks of the FCMP++ fork (major version 17 and later, where the miner tx is not the
//! tree's first leaf) are refused ([`BlockError::Unsupported`]).

use tiny_keccak::{Hasher, Keccak};

/// A Keccak-256 hash (Monero's `cn_fast_hash`).
pub type Hash = [u8; 32];

/// Bytes of a miner's extra nonce in the template's reserved bytes.
pub const MINER_EXTRA_NONCE_SIZE: usize = 4;

/// The blob offset of the nonce the rest of the proxy assumes (bytes 39..43).
const NONCE_OFFSET: usize = stratum_proto::job::NONCE_OFFSET;

/// Why a block template cannot serve `extra_nonce` mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The blob ends early, a varint is malformed, or bytes follow the last hash.
    #[error("block template is malformed: {0}")]
    Malformed(&'static str),
    /// A well-formed block this proxy cannot split (e.g. a miner tx of version 1, an
    /// output type other than 2 or 3, FCMP++ blocks, a nonce not at byte 39).
    #[error("block template is not supported in extra_nonce mode: {0}")]
    Unsupported(&'static str),
    /// The per-miner bytes (`reserved_offset` + the given skip, 4 bytes) are not inside the
    /// miner tx's extra field.
    #[error("the reserved bytes are not inside the miner transaction's extra field")]
    ReservedOutsideExtra,
    /// The job came from a stratum pool: it has no block template.
    #[error("the job is a pool's, not a daemon's: it has no block template")]
    NotFromADaemon,
}

/// Keccak-256 of the concatenation of `parts`.
pub fn keccak256(parts: &[&[u8]]) -> Hash {
    let mut k = Keccak::v256();
    for p in parts {
        k.update(p);
    }
    let mut out = [0; 32];
    k.finalize(&mut out);
    out
}

/// Appends `n` as a Monero varint (7 bits a byte, low first, high bit = more follows).
pub fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        // Truncation intended: the low 7 bits, with the continuation bit.
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    // Truncation intended: n < 0x80 here.
    out.push(n as u8);
}

/// A cursor over a blob.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, BlockError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.at)
                .ok_or(BlockError::Malformed("varint past the end"))?;
            self.at += 1;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(BlockError::Malformed("varint above 64 bits"));
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(BlockError::Malformed("varint above 64 bits"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], BlockError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(BlockError::Malformed("blob ends early"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, BlockError> {
        Ok(self.take(1)?[0])
    }
}

/// Monero's merkle tree hash of `hashes` (at least one): the hash itself for one, the hash of
/// both for two; otherwise the leaves beyond the largest power of two below the count are
/// paired first, then the tree is folded pairwise to one hash.
pub fn tree_hash(hashes: &[Hash]) -> Hash {
    let mut level = first_level(hashes);
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| keccak256(&[&p[0], &p[1]]))
            .collect();
    }
    level.first().copied().unwrap_or([0; 32])
}

/// The level of `cnt` hashes (a power of two) the tree folds from: the first `2·cnt − count`
/// leaves as they are, the rest hashed in pairs. One or two leaves are their own level.
fn first_level(hashes: &[Hash]) -> Vec<Hash> {
    let count = hashes.len();
    if count <= 2 {
        return hashes.to_vec();
    }
    let mut cnt = 1;
    while cnt * 2 < count {
        cnt *= 2;
    }
    let kept = 2 * cnt - count;
    let mut level = hashes[..kept].to_vec();
    level.extend(
        hashes[kept..]
            .chunks_exact(2)
            .map(|p| keccak256(&[&p[0], &p[1]])),
    );
    level
}

/// The siblings on the path of the first leaf to the root of [`tree_hash`]: folding the
/// first leaf `h` with them (`h = keccak(h ‖ sibling)`, in order) gives the root.
pub fn first_leaf_branch(hashes: &[Hash]) -> Vec<Hash> {
    let mut branch = Vec::new();
    if hashes.len() >= 3 && 2 * first_level(hashes).len() == hashes.len() {
        // Every leaf was paired: the first with the second.
        branch.push(hashes[1]);
    }
    let mut level = first_level(hashes);
    while level.len() > 1 {
        branch.push(level[1]);
        level = level
            .chunks_exact(2)
            .map(|p| keccak256(&[&p[0], &p[1]]))
            .collect();
    }
    branch
}

/// The root from the first leaf and its [`first_leaf_branch`].
pub fn root_from_branch(leaf: Hash, branch: &[Hash]) -> Hash {
    branch
        .iter()
        .fold(leaf, |acc, sibling| keccak256(&[&acc, sibling]))
}

/// The hash of a version-2 miner transaction with no RingCT data, from its prefix.
pub fn miner_tx_hash(prefix: &[u8]) -> Hash {
    let prefix_hash = keccak256(&[prefix]);
    let base_hash = keccak256(&[&[0u8]]);
    keccak256(&[&prefix_hash, &base_hash, &[0u8; 32]])
}

/// A block template split for `extra_nonce` mode: what every miner's hashing blob is built
/// from, shared (about 200 bytes plus 32 per tree level), never copied per miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockWork {
    /// Blob bytes 0..43: the header, nonce included.
    header: [u8; NONCE_OFFSET + 4],
    /// The miner tx's prefix, as in the template.
    prefix: Vec<u8>,
    /// Where the miner's 4 bytes sit in `prefix`.
    slot_in_prefix: usize,
    /// Where the miner's 4 bytes sit in the block.
    slot_in_block: usize,
    /// Siblings of the miner tx on its path to the merkle root.
    branch: Vec<Hash>,
    /// Varint of the number of transactions (the miner tx included).
    tx_count: Vec<u8>,
}

impl BlockWork {
    /// Splits `block` (the decoded `blocktemplate_blob`); each miner's 4 bytes go at
    /// `slot`, which must lie inside the miner tx's extra field (e.g. `reserved_offset` + 8
    /// when the proxy asked for 12 reserved bytes and keeps the first 8 for itself).
    ///
    /// # Errors
    /// [`BlockError::Malformed`] for a blob that is not a block, [`BlockError::Unsupported`]
    /// for a block of another shape than the table in the module doc, and
    /// [`BlockError::ReservedOutsideExtra`] when `slot..slot + 4` is not in the extra field.
    pub fn parse(block: &[u8], slot: usize) -> Result<Self, BlockError> {
        let mut r = Reader {
            bytes: block,
            at: 0,
        };
        let major = r.varint()?;
        r.varint()?; // minor version
        r.varint()?; // timestamp
        r.take(32)?; // previous block
        if r.at != NONCE_OFFSET {
            return Err(BlockError::Unsupported("the nonce is not at byte 39"));
        }
        if major >= 17 {
            return Err(BlockError::Unsupported("FCMP++ blocks (major version 17+)"));
        }
        r.take(4)?; // nonce
        let prefix_start = r.at;
        if r.varint()? != 2 {
            return Err(BlockError::Unsupported(
                "miner transaction version is not 2",
            ));
        }
        r.varint()?; // unlock time
        if r.varint()? != 1 || r.byte()? != 0xff {
            return Err(BlockError::Unsupported(
                "miner transaction input is not one coinbase",
            ));
        }
        r.varint()?; // height
        let outputs = r.varint()?;
        if outputs == 0 {
            return Err(BlockError::Unsupported("miner transaction has no output"));
        }
        for _ in 0..outputs {
            r.varint()?; // amount
            match r.byte()? {
                2 => drop(r.take(32)?),
                3 => drop(r.take(33)?),
                _ => return Err(BlockError::Unsupported("output type is not 2 or 3")),
            }
        }
        let extra_len = usize::try_from(r.varint()?)
            .map_err(|_| BlockError::Malformed("extra size too big"))?;
        let extra_start = r.at;
        r.take(extra_len)?;
        let prefix_end = r.at;
        if r.byte()? != 0 {
            return Err(BlockError::Unsupported("miner transaction has RingCT data"));
        }
        let others = r.varint()?;
        let others_len = usize::try_from(others)
            .ok()
            .and_then(|n| n.checked_mul(32))
            .ok_or(BlockError::Malformed("transaction count too big"))?;
        let hashes_raw = r.take(others_len)?;
        if r.at != block.len() {
            return Err(BlockError::Malformed(
                "bytes after the last transaction hash",
            ));
        }
        let slot_end = slot
            .checked_add(MINER_EXTRA_NONCE_SIZE)
            .ok_or(BlockError::ReservedOutsideExtra)?;
        if slot < extra_start || slot_end > prefix_end {
            return Err(BlockError::ReservedOutsideExtra);
        }
        let prefix = block[prefix_start..prefix_end].to_vec();
        let mut leaves = Vec::with_capacity(hashes_raw.len() / 32 + 1);
        leaves.push(miner_tx_hash(&prefix));
        leaves.extend(hashes_raw.chunks_exact(32).map(|c| {
            let mut h = [0; 32];
            h.copy_from_slice(c);
            h
        }));
        let mut tx_count = Vec::with_capacity(3);
        write_varint(&mut tx_count, others + 1);
        let mut header = [0; NONCE_OFFSET + 4];
        header.copy_from_slice(&block[..prefix_start]);
        Ok(Self {
            header,
            prefix,
            slot_in_prefix: slot - prefix_start,
            slot_in_block: slot,
            branch: first_leaf_branch(&leaves),
            tx_count,
        })
    }

    /// The hashing blob of the miner whose extra nonce is `extra_nonce` (written
    /// little-endian at the slot): 43 header bytes, the merkle root, the transaction count
    /// (76 bytes for a block of fewer than 127 other transactions).
    pub fn hashing_blob(&self, extra_nonce: u32) -> Vec<u8> {
        let mut prefix = self.prefix.clone();
        prefix[self.slot_in_prefix..self.slot_in_prefix + MINER_EXTRA_NONCE_SIZE]
            .copy_from_slice(&extra_nonce.to_le_bytes());
        let root = root_from_branch(miner_tx_hash(&prefix), &self.branch);
        let mut blob = Vec::with_capacity(self.header.len() + 32 + self.tx_count.len());
        blob.extend_from_slice(&self.header);
        blob.extend_from_slice(&root);
        blob.extend_from_slice(&self.tx_count);
        blob
    }

    /// Writes the miner's `extra_nonce` into `block` (the template this was parsed from, or
    /// a copy), where [`BlockWork::hashing_blob`] put it.
    ///
    /// # Panics
    /// Never for the block this was parsed from (the slot was checked to lie inside it).
    pub fn write_extra_nonce(&self, block: &mut [u8], extra_nonce: u32) {
        if let Some(slot) =
            block.get_mut(self.slot_in_block..self.slot_in_block + MINER_EXTRA_NONCE_SIZE)
        {
            slot.copy_from_slice(&extra_nonce.to_le_bytes());
        }
    }

    /// Where the miner's 4 bytes sit in the block.
    pub fn slot(&self) -> usize {
        self.slot_in_block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum_proto::job::{decode_hex, encode_hex};

    /// monerod 0.18 regtest, `get_block_template` with `extra_nonce` `0102030405060708`
    /// (`reserved_offset` 126), and the hashing blob monerod computed for it.
    const BLOCK: &str = "1010e4b1b5d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e300000000023d01ff0101808080f0ffff07039e80ddc2360e9c7698616171d0eaa4d533da3d48e4e2b135a9ef3679359fe192d72b01eb30a556a0efd26254ee1eb5fa7beae6e8715d1e61502af5ce591e7efa9fdc70020801020304050607080000";
    const HASHING: &str = "1010e4b1b5d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e300000000666f20d7d11d008ac7c535f1b50e8b44e3901e03485625492d3cdc71d66df30401";

    fn h(i: u8) -> Hash {
        keccak256(&[&[i]])
    }

    #[test]
    fn keccak_of_a_zero_byte_is_moneros_known_ringct_base_hash() {
        assert_eq!(
            encode_hex(&keccak256(&[&[0u8]])),
            "bc36789e7a1e281436464229828f817d6612f7b477d66591ff96a9e064bcc98a"
        );
    }

    #[test]
    fn varints_are_seven_bits_a_byte_low_first() {
        for (n, bytes) in [
            (0u64, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, n);
            assert_eq!(out, bytes, "{n}");
            let mut r = Reader { bytes, at: 0 };
            assert_eq!(r.varint(), Ok(n));
            assert_eq!(r.at, bytes.len());
        }
        let mut r = Reader {
            bytes: &[0x80, 0x80],
            at: 0,
        };
        assert!(r.varint().is_err(), "unterminated");
        let eleven = [0xffu8; 10];
        let mut r = Reader {
            bytes: &eleven,
            at: 0,
        };
        assert!(r.varint().is_err(), "above 64 bits");
    }

    #[test]
    fn the_hashing_blob_is_rebuilt_exactly_as_monerod_builds_it() {
        let block = decode_hex(BLOCK).unwrap();
        // The 4 bytes after the proxy's first 4: 05 06 07 08 as they are in the template.
        let work = BlockWork::parse(&block, 126 + 4).unwrap();
        let as_sent = u32::from_le_bytes([5, 6, 7, 8]);
        assert_eq!(encode_hex(&work.hashing_blob(as_sent)), HASHING);
        assert_eq!(work.hashing_blob(as_sent).len(), 76);
    }

    #[test]
    fn each_extra_nonce_gives_its_own_blob_and_only_the_root_differs() {
        let block = decode_hex(BLOCK).unwrap();
        let work = BlockWork::parse(&block, 126 + 4).unwrap();
        let a = work.hashing_blob(0);
        let b = work.hashing_blob(1);
        assert_ne!(a, b);
        assert_eq!(a[..43], b[..43], "same header and nonce");
        assert_eq!(a[75..], b[75..], "same transaction count");
        // And the block written with that extra nonce hashes to the same blob.
        let mut written = block.clone();
        work.write_extra_nonce(&mut written, 1);
        assert_eq!(&written[130..134], &[1, 0, 0, 0]);
        let again = BlockWork::parse(&written, 130).unwrap();
        assert_eq!(again.hashing_blob(1), b);
        assert_eq!(written[..130], block[..130]);
        assert_eq!(written[134..], block[134..]);
    }

    #[test]
    fn tree_hash_follows_moneros_pairing() {
        assert_eq!(tree_hash(&[h(0)]), h(0));
        assert_eq!(tree_hash(&[h(0), h(1)]), keccak256(&[&h(0), &h(1)]));
        // Three: the first kept, the last two paired.
        let three = keccak256(&[&h(0), &keccak256(&[&h(1), &h(2)])]);
        assert_eq!(tree_hash(&[h(0), h(1), h(2)]), three);
        // Four: a full tree.
        let four = keccak256(&[&keccak256(&[&h(0), &h(1)]), &keccak256(&[&h(2), &h(3)])]);
        assert_eq!(tree_hash(&[h(0), h(1), h(2), h(3)]), four);
        // Five: three kept, the last two paired, then a full tree of four.
        let l = [h(0), h(1), h(2), keccak256(&[&h(3), &h(4)])];
        assert_eq!(tree_hash(&[h(0), h(1), h(2), h(3), h(4)]), tree_hash(&l));
    }

    #[test]
    fn the_first_leafs_branch_gives_the_root_for_any_count() {
        for count in 1..=40u8 {
            let leaves: Vec<Hash> = (0..count).map(h).collect();
            let branch = first_leaf_branch(&leaves);
            assert_eq!(
                root_from_branch(leaves[0], &branch),
                tree_hash(&leaves),
                "{count} leaves"
            );
            // Another first leaf, same branch: the root of the tree with that leaf.
            let mut other = leaves.clone();
            other[0] = h(200);
            assert_eq!(root_from_branch(other[0], &branch), tree_hash(&other));
        }
    }

    #[test]
    fn blocks_that_cannot_be_split_are_errors_not_panics() {
        let block = decode_hex(BLOCK).unwrap();
        assert_eq!(
            BlockWork::parse(&block, 60),
            Err(BlockError::ReservedOutsideExtra),
            "a slot in the output key"
        );
        assert_eq!(
            BlockWork::parse(&block, block.len() - 4),
            Err(BlockError::ReservedOutsideExtra)
        );
        assert_eq!(
            BlockWork::parse(&block, usize::MAX),
            Err(BlockError::ReservedOutsideExtra)
        );
        for len in 0..block.len() {
            assert!(
                BlockWork::parse(&block[..len], 130).is_err(),
                "cut at {len}"
            );
        }
        let mut longer = block.clone();
        longer.push(0);
        assert!(BlockWork::parse(&longer, 130).is_err());
        let mut fcmp = block.clone();
        fcmp[0] = 17;
        assert!(matches!(
            BlockWork::parse(&fcmp, 130),
            Err(BlockError::Unsupported(_))
        ));
        let mut v1 = block.clone();
        v1[43] = 1;
        assert!(matches!(
            BlockWork::parse(&v1, 130),
            Err(BlockError::Unsupported(_))
        ));
        // Any byte flipped: an error or a block, never a panic.
        for i in 0..block.len() {
            let mut b = block.clone();
            b[i] ^= 0xa5;
            let _ = BlockWork::parse(&b, 130);
        }
    }
}
