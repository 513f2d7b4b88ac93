//! Duplicate shares (issue 10 item 3): the nonces submitted for one upstream job.
//!
//! In NiceHash mode a nonce carries its miner's fixed byte (blob byte 42), so (job, nonce)
//! identifies a share on an upstream; in simple mode an upstream has one miner. In
//! `extra_nonce` mode miners share the nonce space and differ by their extra nonce (the
//! channel slot), so a share is identified by (extra nonce, nonce). The memory
//! lives in the [`crate::Channel`] beside its job and ends with it, when the job leaves
//! the upstream's current and previous jobs.

use std::collections::BTreeSet;

use nonce_split::SeenNonces;

/// `extra_nonce` mode: (extra nonce, nonce) pairs as `extra << 32 | nonce`, in two
/// generations of `capacity / 2` like [`SeenNonces`] (the latest half always remembered, at
/// most `capacity`; 8 bytes a pair plus the tree's nodes). Empty sets hold no heap.
struct SeenPairs {
    young: BTreeSet<u64>,
    old: BTreeSet<u64>,
    generation: usize,
}

impl SeenPairs {
    fn new(capacity: usize) -> Self {
        Self {
            young: BTreeSet::new(),
            old: BTreeSet::new(),
            generation: (capacity / 2).max(1),
        }
    }

    fn contains(&self, key: u64) -> bool {
        self.young.contains(&key) || self.old.contains(&key)
    }

    fn insert(&mut self, key: u64) -> bool {
        if self.contains(key) {
            return false;
        }
        if self.young.len() >= self.generation {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// The nonces submitted for one job, forwarded and locally accepted ones (custom
/// difficulty, RFC §14) apart: a flood of shares the proxy answers itself cannot push a
/// forwarded share out of memory, and each forwarded share is judged by the pool. Each kind
/// is bounded by [`SeenNonces`]: past `capacity` nonces the oldest are forgotten, and a
/// repeat of a forgotten one passes as new (forwarded: the pool judges it).
pub(crate) struct SeenShares {
    forwarded: SeenNonces,
    local: SeenNonces,
    /// `extra_nonce` mode's shares, forwarded and local.
    forwarded_pairs: SeenPairs,
    local_pairs: SeenPairs,
}

impl SeenShares {
    /// An empty memory of at most `capacity` nonces of each kind.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            forwarded: SeenNonces::new(capacity),
            local: SeenNonces::new(capacity),
            forwarded_pairs: SeenPairs::new(capacity),
            local_pairs: SeenPairs::new(capacity),
        }
    }

    /// [`SeenShares::remember`] for `extra_nonce` mode: a share is its miner's extra nonce
    /// and its nonce; false when either kind has the pair already.
    pub(crate) fn remember_pair(&mut self, extra_nonce: u8, nonce: [u8; 4], local: bool) -> bool {
        let key = u64::from(extra_nonce) << 32 | u64::from(u32::from_le_bytes(nonce));
        if local {
            !self.forwarded_pairs.contains(key) && self.local_pairs.insert(key)
        } else {
            !self.local_pairs.contains(key) && self.forwarded_pairs.insert(key)
        }
    }

    /// Remembers a share's nonce (4 bytes, blob order) as forwarded, or as answered
    /// `local`ly; false when either kind has it already: a duplicate, to refuse.
    pub(crate) fn remember(&mut self, nonce: [u8; 4], local: bool) -> bool {
        // `insert` looks its own kind up: only the other kind needs a look first.
        if local {
            !self.forwarded.contains(nonce) && self.local.insert(nonce)
        } else {
            !self.local.contains(nonce) && self.forwarded.insert(nonce)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 4] = [1, 2, 3, 0x07];
    const B: [u8; 4] = [1, 2, 3, 0x08];

    #[test]
    fn a_repeat_is_a_duplicate_whichever_way_either_went() {
        let mut s = SeenShares::new(16);
        assert!(s.remember(A, false), "first forwarded");
        assert!(!s.remember(A, false), "the same again");
        assert!(!s.remember(A, true), "the same nonce at a local difficulty");
        assert!(s.remember(B, true), "another miner's byte is another share");
        assert!(
            !s.remember(B, false),
            "a local share again, now claimed high"
        );
        assert!(!s.remember(B, true));
    }

    #[test]
    fn a_flood_of_local_shares_does_not_push_out_forwarded_ones() {
        let mut s = SeenShares::new(16);
        assert!(s.remember(A, false));
        for n in 0..10_000u32 {
            let mut nonce = n.to_le_bytes();
            nonce[3] = 0x07;
            if nonce != A {
                assert!(s.remember(nonce, true));
            }
        }
        assert!(!s.remember(A, false), "still remembered after the flood");
    }

    #[test]
    fn in_extra_nonce_mode_a_share_is_its_extra_nonce_and_nonce() {
        let mut s = SeenShares::new(16);
        assert!(s.remember_pair(0, A, false));
        assert!(
            s.remember_pair(1, A, false),
            "another miner, same nonce: a new share"
        );
        assert!(!s.remember_pair(0, A, false), "a repeat");
        assert!(
            !s.remember_pair(1, A, true),
            "a repeat at a local difficulty"
        );
        assert!(s.remember_pair(2, A, true));
        assert!(!s.remember_pair(2, A, false));
        for n in 0..100_000u32 {
            s.remember_pair(7, n.to_le_bytes(), n % 2 == 0);
        }
        assert!(s.forwarded_pairs.len() <= 16 && s.local_pairs.len() <= 16);
    }

    #[test]
    fn memory_is_bounded_per_kind() {
        let mut s = SeenShares::new(64);
        for n in 0..100_000u32 {
            s.remember(n.to_le_bytes(), n % 2 == 0);
        }
        assert!(s.forwarded.len() <= 64 && s.local.len() <= 64);
    }
}
