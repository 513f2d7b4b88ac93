//! Duplicate shares (issue 10 item 3): the nonces submitted for one upstream job.
//!
//! In NiceHash mode a nonce carries its miner's fixed byte (blob byte 42), so (job, nonce)
//! identifies a share on an upstream; in simple mode an upstream has one miner. The memory
//! lives in the [`crate::Channel`] beside its job and ends with it, when the job leaves
//! the upstream's current and previous jobs.

use nonce_split::SeenNonces;

/// The nonces submitted for one job, forwarded and locally accepted ones (custom
/// difficulty, RFC §14) apart: a flood of shares the proxy answers itself cannot push a
/// forwarded share out of memory, and each forwarded share is judged by the pool. Each kind
/// is bounded by [`SeenNonces`]: past `capacity` nonces the oldest are forgotten, and a
/// repeat of a forgotten one passes as new (forwarded: the pool judges it).
pub(crate) struct SeenShares {
    forwarded: SeenNonces,
    local: SeenNonces,
}

impl SeenShares {
    /// An empty memory of at most `capacity` nonces of each kind.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            forwarded: SeenNonces::new(capacity),
            local: SeenNonces::new(capacity),
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
    fn memory_is_bounded_per_kind() {
        let mut s = SeenShares::new(64);
        for n in 0..100_000u32 {
            s.remember(n.to_le_bytes(), n % 2 == 0);
        }
        assert!(s.forwarded.len() <= 64 && s.local.len() <= 64);
    }
}
