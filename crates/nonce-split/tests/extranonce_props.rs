//! Property tests of the Stratum V1 extranonce split: the sizing rule, the share
//! mapping's round trip, and random add / remove / new-job sequences checked against a
//! model: no two miners of one upstream ever get the same extranonce1 (so never hash the
//! same coinbase) while both are active, or while one is dead before the next job.

use std::collections::{BTreeMap, HashSet};

use nonce_split::{
    ExtranonceLayout, ExtranonceSplit, MinerId, Slot, SlotCount, SlotsFull, SplitError,
    MAX_EXTRANONCE_SLOTS, MAX_MINER_EXTRANONCE2_SIZE,
};
use proptest::prelude::*;
use proptest::sample::Index;

proptest! {
    #[test]
    fn layout_follows_the_sizing_rule(
        extranonce1 in proptest::collection::vec(any::<u8>(), 0..=20),
        size in 0usize..=40,
        min in 0usize..=10,
    ) {
        let result = ExtranonceLayout::new(&extranonce1, size, min);
        if !(1..=MAX_MINER_EXTRANONCE2_SIZE).contains(&min) {
            prop_assert_eq!(result, Err(SplitError::InvalidMinExtranonce2Size(min)));
            return Ok(());
        }
        if size < min {
            prop_assert_eq!(result, Err(SplitError::UpstreamTooSmall { upstream: size, min }));
            return Ok(());
        }
        let layout = result.unwrap();
        // The miner always keeps at least the minimum, at most 8 bytes.
        prop_assert!(layout.miner_extranonce2_size() >= min);
        prop_assert!(layout.miner_extranonce2_size() <= MAX_MINER_EXTRANONCE2_SIZE);
        // Every tail fits the upstream's extranonce2.
        prop_assert_eq!(layout.tail_size() + layout.miner_extranonce2_size(), size);
        prop_assert!(layout.index_size() <= layout.tail_size());
        prop_assert_eq!(layout.capacity(), 1usize << (8 * layout.index_size()));
        prop_assert!(layout.capacity() <= MAX_EXTRANONCE_SLOTS);
        // As many slots as the bytes allow, up to the cap.
        let expected_index = (size - min).min(2);
        prop_assert_eq!(layout.index_size(), expected_index);
    }

    #[test]
    fn share_mapping_round_trips_and_tails_are_distinct(
        extranonce1 in proptest::collection::vec(any::<u8>(), 0..=8),
        size in 1usize..=16,
        min in 1usize..=8,
        slot_a in any::<u16>(),
        slot_b in any::<u16>(),
        seed in any::<u64>(),
    ) {
        prop_assume!(size >= min);
        let layout = ExtranonceLayout::new(&extranonce1, size, min).unwrap();
        let cap = layout.capacity();
        let (a, b) = ((usize::from(slot_a) % cap) as u16, (usize::from(slot_b) % cap) as u16);
        let miner_e2: Vec<u8> = (0..layout.miner_extranonce2_size())
            .map(|i| (seed >> (8 * (i % 8))) as u8)
            .collect();

        let e1_a = layout.miner_extranonce1(a).unwrap();
        prop_assert_eq!(e1_a.len(), extranonce1.len() + layout.tail_size());
        prop_assert_eq!(&e1_a[..extranonce1.len()], &extranonce1[..]);

        let up = layout.upstream_extranonce2(a, &miner_e2).unwrap();
        prop_assert_eq!(up.len(), size);
        // The upstream's coinbase bytes are exactly the miner's: e1 ‖ tail ‖ e2.
        let miner_view = [e1_a.clone(), miner_e2.clone()].concat();
        let upstream_view = [extranonce1.clone(), up.clone()].concat();
        prop_assert_eq!(&miner_view, &upstream_view);
        prop_assert_eq!(layout.split_upstream_extranonce2(&up), Some((a, &miner_e2[..])));

        let e1_b = layout.miner_extranonce1(b).unwrap();
        prop_assert_eq!(a == b, e1_a == e1_b);

        // A wrong-length extranonce2 from a miner is an error, not a panic.
        let mut long = miner_e2.clone();
        long.push(0);
        let is_length_error = matches!(
            layout.upstream_extranonce2(a, &long),
            Err(SplitError::Extranonce2Length { .. })
        );
        prop_assert!(is_length_error);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add,
    Remove(Index),
    RemoveStranger(MinerId, u16),
    NewJob,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Add),
        3 => any::<Index>().prop_map(Op::Remove),
        1 => (any::<MinerId>(), any::<u16>()).prop_map(|(m, s)| Op::RemoveStranger(m | (1 << 63), s)),
        1 => Just(Op::NewJob),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn no_two_miners_of_one_upstream_share_a_coinbase(
        size in prop::sample::select(vec![4usize, 5, 5, 6, 8]),
        extranonce1 in proptest::collection::vec(any::<u8>(), 0..=4),
        ops in proptest::collection::vec(op(), 1..700),
    ) {
        let mut split = ExtranonceSplit::new(&extranonce1, size, 4).unwrap();
        let capacity = split.capacity();
        // slot -> miner, for active miners.
        let mut active: BTreeMap<u16, MinerId> = BTreeMap::new();
        // Slots dead since the last job.
        let mut dead: HashSet<u16> = HashSet::new();
        // extranonce1 of every miner active, or dead since the last job.
        let mut taken: HashSet<Vec<u8>> = HashSet::new();
        let mut next_id: MinerId = 1;

        for op in ops {
            match op {
                Op::Add => {
                    let miner = next_id;
                    next_id += 1;
                    if active.len() + dead.len() == capacity {
                        prop_assert!(split.is_full());
                        prop_assert_eq!(split.add(miner), Err(SlotsFull { capacity, dead: dead.len() }));
                    } else {
                        let slot = split.add(miner).unwrap();
                        prop_assert!(usize::from(slot) < capacity);
                        let e1 = split.layout().miner_extranonce1(slot).unwrap();
                        prop_assert_eq!(e1.len(), extranonce1.len() + split.layout().tail_size());
                        prop_assert!(taken.insert(e1), "extranonce1 of slot {} handed out twice", slot);
                        prop_assert!(!dead.contains(&slot));
                        active.insert(slot, miner);
                    }
                }
                Op::Remove(index) => {
                    if active.is_empty() {
                        continue;
                    }
                    let (&slot, &miner) = active.iter().nth(index.index(active.len())).unwrap();
                    prop_assert!(split.remove(miner, slot));
                    prop_assert!(!split.remove(miner, slot), "twice");
                    active.remove(&slot);
                    dead.insert(slot);
                }
                Op::RemoveStranger(miner, slot) => {
                    prop_assert!(!split.remove(miner, slot));
                }
                Op::NewJob => {
                    split.on_new_job();
                    for slot in dead.drain() {
                        prop_assert_eq!(split.slot(slot), Slot::Free);
                        taken.remove(&split.layout().miner_extranonce1(slot).unwrap());
                    }
                }
            }
            prop_assert_eq!(
                split.slot_count(),
                SlotCount { free: capacity - active.len() - dead.len(), dead: dead.len(), active: active.len() }
            );
            prop_assert_eq!(split.is_empty(), active.is_empty());
            prop_assert_eq!(split.is_full(), active.len() + dead.len() == capacity);
        }
        let listed: Vec<(u16, MinerId)> = split.active().collect();
        let expected: Vec<(u16, MinerId)> = active.into_iter().collect();
        prop_assert_eq!(listed, expected);
        for &slot in &dead {
            prop_assert!(matches!(split.slot(slot), Slot::Dead(_)));
        }
    }
}
