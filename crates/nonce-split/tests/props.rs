//! Property tests: random operation sequences applied both to
//! [`NonceStorage`] and to a simple map-based model, checking the table's
//! invariants after every step.

use nonce_split::{JobMatch, MinerId, NonceStorage, Slot, SlotCount, SLOT_COUNT};
use proptest::prelude::*;
use proptest::sample::Index;

/// Job ids used by the generator; a small set so ids repeat.
const JOB_IDS: [&str; 6] = ["j0", "j1", "j2", "j3", "j4", "j5"];

/// Longest generated sequence.
const MAX_OPS: usize = 600;

#[derive(Debug, Clone)]
enum Op {
    /// Add a miner with a fresh id.
    Add,
    /// Remove a currently active miner from its own slot.
    RemoveOwned(Index),
    /// Remove an arbitrary (miner, slot) pair, usually not an owner.
    RemoveAny(MinerId, u8),
    /// Remove again a (miner, slot) pair that was removed before: must be a
    /// no-op, even if the slot has since gone to another miner.
    RemoveStale(Index),
    /// A new job from the pool.
    SetJob(usize, bool),
    /// Pool connection lost.
    ClearJobs,
}

/// The model: who owns what, which slots are dead, where the cursor is.
#[derive(Debug)]
struct Model {
    /// Fixed byte of each active miner, indexed by miner id (ids are small
    /// and sequential here).
    owner: Vec<Option<u8>>,
    active_count: usize,
    /// The inverse of `owner`: fixed byte to active miner.
    slot_of: [Option<MinerId>; SLOT_COUNT],
    /// Slots released since the last `set_job` (dead).
    dead: [bool; SLOT_COUNT],
    dead_count: usize,
    /// Round-robin start of the next add.
    cursor: usize,
    current: Option<String>,
    previous: Option<String>,
    /// Next fresh miner id (ids are never 0).
    next_id: MinerId,
    /// (miner, slot) pairs removed so far.
    removed: Vec<(MinerId, u8)>,
}

impl Model {
    fn new() -> Self {
        Model {
            owner: vec![None; MAX_OPS + 2],
            active_count: 0,
            slot_of: [None; SLOT_COUNT],
            dead: [false; SLOT_COUNT],
            dead_count: 0,
            cursor: 0,
            current: None,
            previous: None,
            next_id: 1,
            removed: Vec::new(),
        }
    }

    fn is_free(&self, slot: u8) -> bool {
        !self.dead[usize::from(slot)] && self.slot_of[usize::from(slot)].is_none()
    }

    fn slot_of_miner(&self, miner: MinerId) -> Option<u8> {
        usize::try_from(miner)
            .ok()
            .and_then(|i| self.owner.get(i).copied().flatten())
    }

    fn is_dead(&self, slot: u8) -> bool {
        self.dead[usize::from(slot)]
    }

    fn free_count(&self) -> usize {
        SLOT_COUNT - self.active_count - self.dead_count
    }

    /// The slot the round-robin allocator must hand out next, if any.
    fn expected_add(&self) -> Option<u8> {
        (0..SLOT_COUNT)
            .map(|i| ((self.cursor + i) % SLOT_COUNT) as u8)
            .find(|&slot| self.is_free(slot))
    }

    fn activate(&mut self, miner: MinerId, slot: u8) {
        self.owner[miner as usize] = Some(slot);
        self.active_count += 1;
        self.slot_of[usize::from(slot)] = Some(miner);
    }

    fn kill(&mut self, miner: MinerId, slot: u8) {
        self.owner[miner as usize] = None;
        self.active_count -= 1;
        self.slot_of[usize::from(slot)] = None;
        self.dead[usize::from(slot)] = true;
        self.dead_count += 1;
        self.removed.push((miner, slot));
    }

    fn new_job(&mut self) {
        self.dead = [false; SLOT_COUNT];
        self.dead_count = 0;
    }

    fn job_match(&self, id: &str) -> JobMatch {
        if self.current.as_deref() == Some(id) {
            JobMatch::Current
        } else if self.previous.as_deref() == Some(id) {
            JobMatch::Previous
        } else {
            JobMatch::Unknown
        }
    }

    /// Active (slot, miner) pairs in slot order.
    fn active_sorted(&self) -> Vec<(u8, MinerId)> {
        (0..=u8::MAX)
            .zip(self.slot_of.iter())
            .filter_map(|(slot, miner)| miner.map(|m| (slot, m)))
            .collect()
    }
}

fn op_strategy(add_weight: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        add_weight => Just(Op::Add),
        4 => any::<Index>().prop_map(Op::RemoveOwned),
        1 => (0u64..700, any::<u8>()).prop_map(|(m, s)| Op::RemoveAny(m, s)),
        1 => any::<Index>().prop_map(Op::RemoveStale),
        1 => (0..JOB_IDS.len(), any::<bool>()).prop_map(|(j, same)| Op::SetJob(j, same)),
        1 => Just(Op::ClearJobs),
    ]
}

/// Sequences whose add weight varies per case, so some runs hover around a
/// few miners and others saturate all 256 slots.
fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    (1u32..60).prop_flat_map(|w| proptest::collection::vec(op_strategy(w), 0..=MAX_OPS))
}

/// Applies `op` to both, checking the per-operation postconditions.
fn step(storage: &mut NonceStorage, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Add => {
            let id = model.next_id;
            model.next_id += 1;
            let expected = model.expected_add();
            let got = storage.add(id);
            // None exactly when the model has no free slot.
            prop_assert_eq!(got.is_none(), model.free_count() == 0);
            prop_assert_eq!(got, expected, "round-robin order");
            if let Some(fixed) = got {
                // A slot released since the last job is never handed out.
                prop_assert!(!model.is_dead(fixed), "dead slot {} reused", fixed);
                prop_assert_eq!(storage.slot(fixed), Slot::Active(id));
                prop_assert!(model.is_free(fixed));
                model.activate(id, fixed);
                model.cursor = (usize::from(fixed) + 1) % SLOT_COUNT;
            }
        }
        Op::RemoveOwned(index) => {
            let active = model.active_sorted();
            if active.is_empty() {
                return Ok(());
            }
            let (slot, miner) = active[index.index(active.len())];
            prop_assert!(storage.remove(miner, slot));
            prop_assert_eq!(storage.slot(slot), Slot::Dead(miner));
            model.kill(miner, slot);
        }
        Op::RemoveAny(miner, slot) => {
            let owns = model.slot_of_miner(miner) == Some(slot);
            let before = storage.slot(slot);
            prop_assert_eq!(storage.remove(miner, slot), owns);
            if owns {
                prop_assert_eq!(storage.slot(slot), Slot::Dead(miner));
                model.kill(miner, slot);
            } else {
                prop_assert_eq!(storage.slot(slot), before, "non-owner changed a slot");
            }
        }
        Op::RemoveStale(index) => {
            if model.removed.is_empty() {
                return Ok(());
            }
            let (miner, slot) = model.removed[index.index(model.removed.len())];
            let before = storage.slot(slot);
            prop_assert!(!storage.remove(miner, slot), "stale remove succeeded");
            prop_assert_eq!(storage.slot(slot), before);
        }
        Op::SetJob(j, same_pool) => {
            let id = JOB_IDS[j];
            storage.set_job(id, same_pool);
            let old = model.current.replace(id.to_owned());
            model.previous = if same_pool { old } else { None };
            model.new_job();
            prop_assert_eq!(storage.job_match(id), JobMatch::Current);
            prop_assert_eq!(storage.current_job_id(), Some(id));
            prop_assert_eq!(storage.slot_count().dead, 0);
        }
        Op::ClearJobs => {
            storage.clear_jobs();
            model.current = None;
            model.previous = None;
            prop_assert_eq!(storage.current_job_id(), None);
        }
    }
    Ok(())
}

/// Whole-table invariants, checked after every step.
fn check(storage: &NonceStorage, model: &Model) -> Result<(), TestCaseError> {
    // Slot by slot, the table agrees with the model. Because the model maps
    // each miner to one slot and each slot to one miner, agreement here also
    // means no miner is in two slots and no slot has two miners.
    let (mut free, mut dead, mut active) = (0, 0, 0);
    for fixed in 0..=u8::MAX {
        let index = usize::from(fixed);
        match storage.slot(fixed) {
            Slot::Free => {
                free += 1;
                prop_assert!(model.is_free(fixed), "slot {} free in table only", fixed);
            }
            Slot::Dead(_) => {
                dead += 1;
                prop_assert!(model.dead[index], "slot {} dead in table only", fixed);
            }
            Slot::Active(miner) => {
                active += 1;
                prop_assert!(model.slot_of[index] == Some(miner), "slot {}", fixed);
                prop_assert!(model.slot_of_miner(miner) == Some(fixed), "miner {}", miner);
            }
        }
    }

    // The active listing: slot order, each miner once, as in the model.
    let mut seen = vec![false; model.owner.len()];
    let mut last: Option<u8> = None;
    let mut listed = 0;
    for (fixed, miner) in storage.active() {
        listed += 1;
        prop_assert!(last < Some(fixed), "not in slot order");
        last = Some(fixed);
        let seen = &mut seen[miner as usize];
        prop_assert!(!*seen, "miner {} holds two slots", miner);
        *seen = true;
        prop_assert!(model.slot_of[usize::from(fixed)] == Some(miner));
    }
    prop_assert_eq!(listed, model.active_count);

    // Counts.
    let count = storage.slot_count();
    prop_assert_eq!(count.free + count.dead + count.active, SLOT_COUNT);
    prop_assert_eq!(count, SlotCount { free, dead, active });
    prop_assert_eq!(
        count,
        SlotCount {
            free: model.free_count(),
            dead: model.dead_count,
            active: model.active_count,
        }
    );
    prop_assert_eq!(storage.is_full(), model.free_count() == 0);
    prop_assert_eq!(storage.is_empty(), model.active_count == 0);

    // Jobs.
    prop_assert_eq!(storage.current_job_id(), model.current.as_deref());
    prop_assert_eq!(storage.previous_job_id(), model.previous.as_deref());
    for id in JOB_IDS.iter().copied().chain(["", "J0", "j"]) {
        prop_assert_eq!(
            storage.job_match(id),
            model.job_match(id),
            "job id {:?}",
            id
        );
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut storage = NonceStorage::new();
    let mut model = Model::new();
    check(&storage, &model)?;
    for op in ops {
        step(&mut storage, &mut model, op)?;
        check(&storage, &model)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn storage_matches_model(ops in ops_strategy()) {
        run(&ops)?;
    }
}

/// The generator's saturated regime, spelled out: the checker itself must see
/// full tables, `None` from add, and dead slots skipped then reused.
#[test]
fn saturation_sequence_matches_model() {
    let mut ops = vec![Op::SetJob(0, true)];
    ops.extend(std::iter::repeat_n(Op::Add, 300));
    ops.extend((0..20).map(|i| Op::RemoveOwned(index(i * 7))));
    ops.extend(std::iter::repeat_n(Op::Add, 30));
    ops.push(Op::RemoveStale(index(3)));
    ops.push(Op::SetJob(1, true));
    ops.extend(std::iter::repeat_n(Op::Add, 30));
    ops.push(Op::SetJob(2, false));
    ops.push(Op::ClearJobs);
    run(&ops).unwrap();
}

/// An [`Index`] drawn from a fixed seed value (proptest only builds them via
/// its `Arbitrary` impl).
fn index(seed: usize) -> Index {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&(seed as u64).to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    any::<Index>().new_tree(&mut runner).unwrap().current()
}
