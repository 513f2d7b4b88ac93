//! A bounded memory of the nonces submitted for one job, to refuse duplicate shares.

use foldhash::HashSet;

/// The nonces submitted for one job, remembered within a fixed bound.
///
/// A share is identified by its job and its 4-byte nonce: in NiceHash mode the nonce
/// carries the miner's fixed byte (blob byte 42), so two miners on one upstream never
/// share a nonce, and in simple mode an upstream serves one miner. One `SeenNonces` per
/// upstream job therefore tells a repeated share from a new one.
///
/// # Bound
///
/// At most `capacity` nonces are held, in two hash sets (`foldhash`, seeded per process:
/// a few instructions a lookup where the B-tree this replaced took ~250 a share). Each
/// set holds at most `capacity / 2` nonces in at most `capacity` buckets of 5 bytes (the
/// 4-byte nonce and a control byte) when `capacity` is a power of two, 4 or more (hashbrown's
/// tables are powers of two, at most 7/8 full; other capacities round up): ~41 KB for both sets at a capacity of 4096, from
/// hashbrown's layout (the B-trees before: 47 KB measured with dhat; a channel's four
/// memories after two million shares: 92.6 KB, as before, `proxy-core`'s `seen_memory`
/// test). Nonces are kept in two
/// generations of `capacity / 2`: when the young generation is full, the old one is
/// dropped and the young one becomes old. So the latest
/// `capacity / 2` nonces are always remembered, at most `capacity` are, and a nonce older
/// than that may be forgotten (a repeat of it is then seen as new). Memory never grows
/// past the bound, whatever a miner sends; an empty memory holds no heap.
///
/// Pure: no clock, no I/O. Which nonces are remembered does not depend on the hash seed.
///
/// ```
/// use nonce_split::SeenNonces;
///
/// let mut seen = SeenNonces::new(4);
/// assert!(seen.insert([1, 0, 0, 7]), "new");
/// assert!(!seen.insert([1, 0, 0, 7]), "a repeat");
/// assert!(seen.contains([1, 0, 0, 7]));
/// ```
#[derive(Debug, Clone)]
pub struct SeenNonces {
    young: HashSet<u32>,
    old: HashSet<u32>,
    /// Nonces per generation: `capacity / 2`, at least 1.
    generation: usize,
}

impl SeenNonces {
    /// An empty memory holding at most `capacity` nonces (at least 2: one per generation).
    pub fn new(capacity: usize) -> Self {
        Self {
            young: HashSet::default(),
            old: HashSet::default(),
            generation: (capacity / 2).max(1),
        }
    }

    /// True when `nonce_le` (the submit's 4 nonce bytes, blob order) is remembered.
    pub fn contains(&self, nonce_le: [u8; 4]) -> bool {
        let n = u32::from_le_bytes(nonce_le);
        self.young.contains(&n) || self.old.contains(&n)
    }

    /// Remembers `nonce_le`; false when it was remembered already (a duplicate), which
    /// changes nothing.
    pub fn insert(&mut self, nonce_le: [u8; 4]) -> bool {
        let n = u32::from_le_bytes(nonce_le);
        if self.old.contains(&n) {
            return false;
        }
        if self.young.len() >= self.generation {
            if self.young.contains(&n) {
                return false;
            }
            // The old generation is forgotten, table and all: the new one grows as it
            // fills (keeping the table would hold both at full size for good).
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(n)
    }

    /// How many nonces are remembered now (at most the capacity).
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.young.is_empty() && self.old.is_empty()
    }

    /// The most nonces held at once (the capacity given to [`SeenNonces::new`], rounded down
    /// to an even number).
    pub fn capacity(&self) -> usize {
        self.generation * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u32) -> [u8; 4] {
        i.to_le_bytes()
    }

    #[test]
    fn a_repeat_is_refused_and_the_latest_half_is_always_remembered() {
        let mut s = SeenNonces::new(8);
        for i in 0..100 {
            assert!(s.insert(n(i)), "nonce {i} is new");
            assert!(!s.insert(n(i)), "nonce {i} again is a duplicate");
            assert!(s.len() <= 8);
            for back in 0..4.min(i + 1) {
                assert!(s.contains(n(i - back)), "{back} back from {i}");
            }
        }
        assert!(!s.contains(n(0)), "the oldest are forgotten");
    }

    /// The two B-tree generations this type held before the hash sets, as a model.
    struct TreeModel {
        young: std::collections::BTreeSet<u32>,
        old: std::collections::BTreeSet<u32>,
        generation: usize,
    }

    impl TreeModel {
        fn insert(&mut self, n: u32) -> bool {
            if self.young.contains(&n) || self.old.contains(&n) {
                return false;
            }
            if self.young.len() >= self.generation {
                self.old = std::mem::take(&mut self.young);
            }
            self.young.insert(n)
        }
    }

    proptest::proptest! {
        #[test]
        fn answers_as_the_former_b_tree_generations_did(
            capacity in 2usize..12,
            nonces in proptest::collection::vec(0u32..24, 0..300),
        ) {
            let mut s = SeenNonces::new(capacity);
            let mut model = TreeModel {
                young: Default::default(),
                old: Default::default(),
                generation: (capacity / 2).max(1),
            };
            for (i, &x) in nonces.iter().enumerate() {
                proptest::prop_assert_eq!(s.insert(n(x)), model.insert(x), "insert #{} of {}", i, x);
                proptest::prop_assert_eq!(s.len(), model.young.len() + model.old.len());
                proptest::prop_assert!(s.len() <= s.capacity());
            }
            for x in 0..24 {
                let held = model.young.contains(&x) || model.old.contains(&x);
                proptest::prop_assert_eq!(s.contains(n(x)), held, "nonce {}", x);
            }
        }
    }
}
