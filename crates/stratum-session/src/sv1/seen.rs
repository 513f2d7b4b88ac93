//! Duplicate Stratum V1 shares: the header hashes seen for one upstream job.
//!
//! Two miners of one channel never build the same coinbase (their extranonce1 tails
//! differ), so a header hash names one share of one miner: the same hash again is the same
//! share resent. Each job keeps its own memory, which ends with the job.

use std::collections::{HashSet, VecDeque};

/// The header hashes of one job's shares, forwarded and locally accepted ones apart (a
/// flood of shares the proxy answers itself cannot push a forwarded one out of memory).
/// Each kind keeps at most `capacity` hashes, the oldest forgotten first; a repeat of a
/// forgotten share passes as new (forwarded: the upstream judges it). A hash is kept as its
/// first 8 bytes (internal byte order: the hash's least significant, random bytes), 8 bytes
/// plus the set's overhead each.
#[derive(Debug)]
pub(crate) struct SeenHashes {
    forwarded: Bounded,
    local: Bounded,
}

impl SeenHashes {
    /// An empty memory of at most `capacity` hashes of each kind.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            forwarded: Bounded::new(capacity),
            local: Bounded::new(capacity),
        }
    }

    /// Remembers a share's header hash (internal byte order) as forwarded, or as answered
    /// `local`ly; false when either kind has it already: a duplicate, to refuse.
    pub(crate) fn remember(&mut self, hash: &[u8; 32], local: bool) -> bool {
        let mut key = [0u8; 8];
        key.copy_from_slice(&hash[..8]);
        let key = u64::from_le_bytes(key);
        if local {
            !self.forwarded.contains(key) && self.local.insert(key)
        } else {
            !self.local.contains(key) && self.forwarded.insert(key)
        }
    }

    /// Hashes held, both kinds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.forwarded.order.len() + self.local.order.len()
    }
}

#[derive(Debug)]
struct Bounded {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Bounded {
    fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn contains(&self, key: u64) -> bool {
        self.set.contains(&key)
    }

    /// False when `key` is held already.
    fn insert(&mut self, key: u64) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u64) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&n.to_le_bytes());
        h
    }

    #[test]
    fn a_repeat_is_a_duplicate_whichever_way_either_went() {
        let mut s = SeenHashes::new(16);
        assert!(s.remember(&hash(1), false));
        assert!(!s.remember(&hash(1), false));
        assert!(!s.remember(&hash(1), true));
        assert!(s.remember(&hash(2), true));
        assert!(!s.remember(&hash(2), false));
    }

    #[test]
    fn memory_is_bounded_per_kind_and_forwarded_hashes_survive_a_local_flood() {
        let mut s = SeenHashes::new(64);
        assert!(s.remember(&hash(u64::MAX), false));
        for n in 0..10_000 {
            assert!(s.remember(&hash(n), true));
        }
        assert!(s.len() <= 128);
        assert!(!s.remember(&hash(u64::MAX), false), "still remembered");
    }
}
