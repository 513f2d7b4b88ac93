//! Property tests of [`SeenNonces`], the bounded duplicate-share memory: random nonce
//! sequences (drawn from a small range, so repeats are common) checked against the full
//! history.

use std::collections::HashSet;

use nonce_split::SeenNonces;
use proptest::prelude::*;

proptest! {
    #[test]
    fn bounded_and_never_forgets_the_latest_half(
        capacity in 2usize..64,
        nonces in proptest::collection::vec(0u32..200, 0..2000),
    ) {
        let mut seen = SeenNonces::new(capacity);
        let mut ever: HashSet<u32> = HashSet::new();
        // Distinct nonces in the order they were first remembered (most recent last).
        let mut order: Vec<u32> = Vec::new();
        for n in nonces {
            let bytes = n.to_le_bytes();
            let before = seen.contains(bytes);
            // A nonce never submitted is never reported as seen.
            prop_assert!(!before || ever.contains(&n));
            prop_assert_eq!(seen.insert(bytes), !before, "insert says new iff not remembered");
            prop_assert!(seen.contains(bytes));
            if !before {
                order.push(n);
            }
            ever.insert(n);
            prop_assert!(seen.len() <= seen.capacity());
            prop_assert!(seen.capacity() <= capacity.max(2));
            // The latest capacity/2 remembered nonces are all still there.
            for m in order.iter().rev().take(seen.capacity() / 2) {
                prop_assert!(seen.contains(m.to_le_bytes()), "{} forgotten too early", m);
            }
        }
    }
}

#[test]
fn a_hostile_flood_stays_within_the_bound() {
    let mut seen = SeenNonces::new(4096);
    for n in 0..1_000_000u32 {
        seen.insert(n.to_le_bytes());
    }
    assert!(seen.len() <= 4096);
    assert!(seen.contains(999_999u32.to_le_bytes()));
    assert!(!seen.contains(0u32.to_le_bytes()));
}
