//! Nonce-space splitting for a stratum proxy: NiceHash (CryptoNote) and Stratum V1.
//!
//! Besides the NiceHash table described below, the crate holds the Stratum V1
//! counterparts: [`ExtranonceSplit`] (a tail of extranonce1 per miner; its docs hold the
//! byte-layout table, the sizing rule and the slot life cycle; [`ExtranonceLayout`] maps
//! shares) and [`Vardiff`] (per-miner difficulty aiming at a share rate,
//! time passed in as milliseconds) with [`hashrate`]. Same rules: pure, no clock, no I/O.
//!
//! # What this crate is
//!
//! The pure bookkeeping behind "NiceHash mode": up to 256 downstream miners
//! share **one** upstream pool connection (one pool login, one job stream),
//! and the proxy keeps them from duplicating each other's work by giving each
//! miner its own byte of the nonce, the *fixed byte*. This crate holds:
//!
//! * [`NonceStorage`], the 256-slot allocation table of one upstream
//!   connection (go-proxy RFC §8.3): which miner owns which fixed byte, which
//!   slots were released and may not be handed out again yet, and the current
//!   and previous upstream job ids used to classify submitted shares;
//! * [`SeenNonces`], a bounded memory of the nonces submitted for one job,
//!   to refuse duplicate shares;
//! * [`nonce_fixed_byte`], which reads the fixed byte out of a submitted
//!   nonce. (Writing it into a job's blob, and parsing hex, is wire work:
//!   `stratum_proto::job::patch_fixed_byte` and `stratum_proto::parse_nonce`.)
//!
//! # What this crate is not
//!
//! It does no I/O, reads no clock, spawns nothing and depends only on `thiserror`. It
//! does not parse stratum JSON, talk to pools, validate shares or hashes,
//! track difficulty or time out miners. Callers (the proxy core) own the
//! connections and call into this table: [`NonceStorage::add`] on login,
//! [`NonceStorage::remove`] on disconnect, [`NonceStorage::set_job`] on every
//! pool job, [`NonceStorage::clear_jobs`] when the pool connection drops, and
//! [`NonceStorage::job_match`] plus [`nonce_fixed_byte`] on every submit.
//! The table is not thread-safe by itself (it is a plain value; wrap it in
//! whatever lock the caller uses).
//!
//! # Byte layout
//!
//! A CryptoNote hashing blob (the `blob` field of a stratum job, hex-encoded,
//! two hex chars per byte) carries a 4-byte **little-endian** nonce at blob
//! bytes 39..43. In NiceHash mode the proxy overwrites the **most
//! significant** nonce byte, blob byte 42, with the miner's slot index:
//!
//! | blob bytes | hex chars | meaning                                        | who sets it            |
//! |-----------:|----------:|------------------------------------------------|------------------------|
//! | 0..39      | 0..78     | header prefix (versions, timestamp, prev hash) | pool                   |
//! | 39         | 78..80    | nonce bits 0..8 (least significant)            | miner (rolled)         |
//! | 40         | 80..82    | nonce bits 8..16                               | miner (rolled)         |
//! | 41         | 82..84    | nonce bits 16..24                              | miner (rolled)         |
//! | **42**     | **84..86**| nonce bits 24..32 (most significant): **fixed byte** = slot index | **proxy** |
//! | 43..       | 86..      | tree root, tx count, …                         | pool                   |
//!
//! The miner (xmrig, with `"nicehash": true` or on seeing the pool's
//! `nicehash` extension) keeps the top nonce byte as it received it and rolls
//! only the low 24 bits, so each of up to 256 miners sharing one upstream
//! connection searches a disjoint 1/256 of the 2^32 nonce space. When a share
//! comes back, its 8-hex-char `nonce` is the same four bytes in the same
//! (little-endian) order, so the fixed byte is `nonce_le[3]`, hex chars 6..8
//! of the submitted `nonce` ([`nonce_fixed_byte`]).
//!
//! Note: the go-proxy RFC text says the fixed byte is blob byte 39. That is
//! the *least* significant nonce byte, which real miners roll first; using it
//! makes miners overlap and submit duplicate shares. xmrig-proxy patches byte
//! 42, and so does the proxy (`stratum_proto::NICEHASH_BYTE_OFFSET`, where the
//! blob layout lives).
//!
//! # Slot life cycle
//!
//! Each of the 256 slots is [`Slot::Free`], [`Slot::Active`] (owned by a
//! connected miner) or [`Slot::Dead`] (its miner disconnected since the last
//! job). A dead slot is not reused until the next [`NonceStorage::set_job`]:
//! the departed miner may still have found shares under that fixed byte for
//! the current job, and a new miner given the same byte with the same job
//! would repeat its search. A new job changes the blob, so after `set_job`
//! every dead slot is free again.
//!
//! ```
//! use nonce_split::{JobMatch, NonceStorage, Slot, nonce_fixed_byte};
//!
//! let mut storage = NonceStorage::new();
//! storage.set_job("job-1", true);
//! let a = storage.add(1).unwrap();
//! let b = storage.add(2).unwrap();
//! assert_eq!((a, b), (0, 1));
//!
//! // A share from miner 2 carries its fixed byte in the top nonce byte.
//! assert_eq!(nonce_fixed_byte([0x12, 0x34, 0x56, b]), b);
//! assert_eq!(storage.job_match("job-1"), JobMatch::Current);
//!
//! // Miner 1 leaves: its slot is dead until the next job.
//! assert!(storage.remove(1, a));
//! assert_eq!(storage.slot(a), Slot::Dead(1));
//! storage.set_job("job-2", true);
//! assert_eq!(storage.slot(a), Slot::Free);
//! assert_eq!(storage.job_match("job-1"), JobMatch::Previous);
//! ```

mod extranonce;
mod seen;
mod vardiff;

pub use extranonce::{
    ExtranonceLayout, ExtranonceSplit, SlotsFull, SplitError, DEFAULT_MIN_EXTRANONCE2_SIZE,
    MAX_EXTRANONCE_SLOTS, MAX_INDEX_SIZE, MAX_MINER_EXTRANONCE2_SIZE,
    MAX_UPSTREAM_EXTRANONCE_BYTES,
};
pub use seen::SeenNonces;
pub use vardiff::{hashrate, Vardiff, VardiffConfig, VardiffError, HASHES_PER_DIFFICULTY};

/// Identifier of a miner connection, unique per process, never 0.
///
/// The table does not allocate ids; the caller does. The table only compares
/// them, so any `u64` works, but 0 is reserved by convention for "no miner".
pub type MinerId = u64;

/// Number of slots (fixed-byte values) in a [`NonceStorage`]: 256, one per
/// possible value of the fixed byte.
pub const SLOT_COUNT: usize = 256;

/// State of one slot of a [`NonceStorage`] (256 slots) or an [`ExtranonceSplit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Not owned by anyone; [`NonceStorage::add`] may hand it out.
    Free,
    /// Owned by this connected miner, whose jobs carry the slot index as fixed
    /// byte.
    Active(MinerId),
    /// This miner owned the slot and disconnected since the last job. Not
    /// handed out again until the next [`NonceStorage::set_job`] (or
    /// [`ExtranonceSplit::on_new_job`]), which makes it [`Slot::Free`].
    Dead(MinerId),
}

/// Counts of slots per state, for monitoring.
///
/// Always `free + dead + active ==` the table's capacity: 256 ([`SLOT_COUNT`]) for a
/// [`NonceStorage`], [`ExtranonceSplit::capacity`] for an extranonce split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotCount {
    /// Number of [`Slot::Free`] slots.
    pub free: usize,
    /// Number of [`Slot::Dead`] slots.
    pub dead: usize,
    /// Number of [`Slot::Active`] slots (= connected miners on this upstream).
    pub active: usize,
}

/// How a submitted job id relates to the jobs a [`NonceStorage`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobMatch {
    /// The id of the current job from the pool.
    Current,
    /// The id of the job before the current one, from the same pool session:
    /// the share may still be forwarded, but counts as expired (stale).
    Previous,
    /// Neither: no job yet, a job from an earlier pool session, or garbage.
    /// The share must be rejected.
    Unknown,
}

/// The 256-slot fixed-byte allocation table of one upstream pool connection
/// (go-proxy RFC §8.3), plus the ids of the current and previous job.
///
/// Slot `i` is the miner that gets fixed byte `i`. Allocation is round-robin
/// from a cursor, so a slot released and later freed is only reused once the
/// cursor comes round to it again; released slots stay [`Slot::Dead`] until
/// the next [`set_job`](Self::set_job). All operations are O(1) (plus the
/// job-id copy or comparison) except [`add`](Self::add),
/// [`set_job`](Self::set_job) and iterating [`active`](Self::active), which
/// scan at most the 256 slots. See the crate docs for the byte layout.
///
/// Memory: the slot table (256 × 16 bytes) is allocated by the first
/// [`add`](Self::add); until then every slot is free and the storage is a
/// few words (its job ids). A simple-mode upstream (one miner, nothing
/// patched) uses only the job ids, and has one storage per miner.
#[derive(Debug, Clone)]
pub struct NonceStorage {
    /// `None`: every slot is [`Slot::Free`] (no miner was ever added).
    slots: Option<Box<[Slot; SLOT_COUNT]>>,
    /// Index where the next [`add`](Self::add) starts looking.
    cursor: u8,
    free: usize,
    dead: usize,
    current_job: Option<String>,
    previous_job: Option<String>,
}

impl NonceStorage {
    /// An empty table: all 256 slots [`Slot::Free`], cursor at slot 0, no
    /// current or previous job.
    pub fn new() -> Self {
        NonceStorage {
            slots: None,
            cursor: 0,
            free: SLOT_COUNT,
            dead: 0,
            current_job: None,
            previous_job: None,
        }
    }

    /// Gives `miner` a slot.
    ///
    /// Finds the next [`Slot::Free`] slot starting at the cursor (wrapping
    /// round-robin from 255 to 0), marks it [`Slot::Active`]`(miner)`, moves
    /// the cursor just past it and returns its index: the fixed byte to write
    /// into this miner's blobs.
    ///
    /// Returns `None`, changing nothing, when no slot is free (every slot is
    /// active or dead). Dead slots are *not* reused before the next
    /// [`set_job`](Self::set_job); a caller that gets `None` should put the
    /// miner on another upstream connection.
    ///
    /// The caller must not add a miner that already holds a slot (ids are
    /// unique per connection); this is checked only by a debug assertion.
    pub fn add(&mut self, miner: MinerId) -> Option<u8> {
        debug_assert!(
            !self.active().any(|(_, m)| m == miner),
            "miner {miner} already holds a slot"
        );
        if self.free == 0 {
            return None;
        }
        let slots = self
            .slots
            .get_or_insert_with(|| Box::new([Slot::Free; SLOT_COUNT]));
        let start = self.cursor;
        let mut index = start;
        loop {
            if slots[usize::from(index)] == Slot::Free {
                slots[usize::from(index)] = Slot::Active(miner);
                self.free -= 1;
                self.cursor = index.wrapping_add(1);
                return Some(index);
            }
            index = index.wrapping_add(1);
            if index == start {
                // Unreachable while `free` is accurate; kept as a safe exit.
                return None;
            }
        }
    }

    /// Releases slot `fixed_byte` of `miner` (the miner disconnected).
    ///
    /// If the slot is [`Slot::Active`]`(miner)` it becomes
    /// [`Slot::Dead`]`(miner)` and `true` is returned. Otherwise (free, dead,
    /// or held by another miner) nothing changes and `false` is returned.
    pub fn remove(&mut self, miner: MinerId, fixed_byte: u8) -> bool {
        let Some(slots) = self.slots.as_mut() else {
            return false;
        };
        let slot = &mut slots[usize::from(fixed_byte)];
        if *slot == Slot::Active(miner) {
            *slot = Slot::Dead(miner);
            self.dead += 1;
            true
        } else {
            false
        }
    }

    /// Records a new job from the pool with id `job_id`.
    ///
    /// Every [`Slot::Dead`] slot becomes [`Slot::Free`] (the new blob makes
    /// its old nonce range fresh work); active slots and the cursor are
    /// unchanged.
    ///
    /// If `same_pool` (the job comes on the same pool session as the current
    /// one), the current job id becomes the previous one: shares against it
    /// still match, as [`JobMatch::Previous`]. Otherwise (a new pool session,
    /// e.g. after reconnect or failover) the previous job id is forgotten, as
    /// old job ids mean nothing to the new session. Either way `job_id`
    /// becomes the current job id. (If `job_id` equals the current id and
    /// `same_pool`, previous and current are the same id; it matches as
    /// [`JobMatch::Current`].)
    pub fn set_job(&mut self, job_id: &str, same_pool: bool) {
        if self.dead > 0 {
            for slot in self.slots.iter_mut().flat_map(|s| s.iter_mut()) {
                if let Slot::Dead(_) = slot {
                    *slot = Slot::Free;
                }
            }
            self.free += self.dead;
            self.dead = 0;
        }
        let old = self.current_job.replace(job_id.to_owned());
        self.previous_job = if same_pool { old } else { None };
    }

    /// Forgets both the current and the previous job id (the pool connection
    /// was lost): afterwards every id is [`JobMatch::Unknown`] and
    /// [`current_job_id`](Self::current_job_id) is `None`. Slots and cursor
    /// are unchanged.
    pub fn clear_jobs(&mut self) {
        self.current_job = None;
        self.previous_job = None;
    }

    /// Classifies the job id of a submitted share: [`JobMatch::Current`] if
    /// it is the current job id, else [`JobMatch::Previous`] if it is the
    /// previous one, else [`JobMatch::Unknown`]. Comparison is exact
    /// (case-sensitive, byte-for-byte).
    pub fn job_match(&self, job_id: &str) -> JobMatch {
        if self.current_job.as_deref() == Some(job_id) {
            JobMatch::Current
        } else if self.previous_job.as_deref() == Some(job_id) {
            JobMatch::Previous
        } else {
            JobMatch::Unknown
        }
    }

    /// The id of the current job, `None` before the first
    /// [`set_job`](Self::set_job) and after [`clear_jobs`](Self::clear_jobs).
    pub fn current_job_id(&self) -> Option<&str> {
        self.current_job.as_deref()
    }

    /// The id of the previous job (still accepted as expired), `None` if
    /// there is none.
    pub fn previous_job_id(&self) -> Option<&str> {
        self.previous_job.as_deref()
    }

    /// The state of slot `fixed_byte`.
    pub fn slot(&self, fixed_byte: u8) -> Slot {
        self.slots
            .as_ref()
            .map_or(Slot::Free, |s| s[usize::from(fixed_byte)])
    }

    /// The owner of slot `fixed_byte` if it is [`Slot::Active`], else `None`.
    /// Use it on submit to check that a share's fixed byte belongs to the
    /// submitting miner.
    pub fn active_miner(&self, fixed_byte: u8) -> Option<MinerId> {
        match self.slot(fixed_byte) {
            Slot::Active(miner) => Some(miner),
            Slot::Free | Slot::Dead(_) => None,
        }
    }

    /// Slot counts per state, in O(1). `free + dead + active == 256` always.
    pub fn slot_count(&self) -> SlotCount {
        SlotCount {
            free: self.free,
            dead: self.dead,
            active: SLOT_COUNT - self.free - self.dead,
        }
    }

    /// `true` when no slot is [`Slot::Free`], i.e. [`add`](Self::add) would
    /// return `None` (some slots may be dead and become free at the next
    /// job).
    pub fn is_full(&self) -> bool {
        self.free == 0
    }

    /// `true` when no slot is [`Slot::Active`] (no miner uses this upstream;
    /// there may still be dead slots).
    pub fn is_empty(&self) -> bool {
        self.free + self.dead == SLOT_COUNT
    }

    /// The active slots as `(fixed_byte, miner)` pairs, in increasing slot
    /// order.
    pub fn active(&self) -> impl Iterator<Item = (u8, MinerId)> + '_ {
        (0..=u8::MAX)
            .zip(self.slots.iter().flat_map(|s| s.iter()))
            .filter_map(|(index, slot)| match *slot {
                Slot::Active(miner) => Some((index, miner)),
                Slot::Free | Slot::Dead(_) => None,
            })
    }
}

impl Default for NonceStorage {
    /// Same as [`NonceStorage::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// The fixed byte a submitted nonce carries: the most significant byte of the
/// 4-byte little-endian nonce, i.e. `nonce_le[3]` (hex chars 6..8 of the
/// submit's 8-hex-char `nonce`; blob byte 42).
pub fn nonce_fixed_byte(nonce_le: [u8; 4]) -> u8 {
    nonce_le[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_storage() -> NonceStorage {
        let mut storage = NonceStorage::new();
        for miner in 1..=256 {
            assert!(storage.add(miner).is_some());
        }
        storage
    }

    #[test]
    fn a_storage_no_miner_was_added_to_is_a_few_words() {
        // Simple mode keeps one storage per miner for its job ids alone: the 4 KiB slot
        // table must not come with it.
        assert!(std::mem::size_of::<NonceStorage>() <= 80);
        let mut storage = NonceStorage::new();
        storage.set_job("a", true);
        assert!(!storage.remove(7, 3), "nothing to release");
        assert_eq!(storage.slot(3), Slot::Free);
        assert_eq!(storage.active().count(), 0);
        assert_eq!(storage.add(7), Some(0));
        assert_eq!(storage.active().collect::<Vec<_>>(), vec![(0, 7)]);
    }

    #[test]
    fn new_is_all_free() {
        let storage = NonceStorage::new();
        assert_eq!(
            storage.slot_count(),
            SlotCount {
                free: 256,
                dead: 0,
                active: 0
            }
        );
        assert!(storage.is_empty());
        assert!(!storage.is_full());
        assert_eq!(storage.current_job_id(), None);
        assert_eq!(storage.active().count(), 0);
        assert_eq!(NonceStorage::default().slot_count(), storage.slot_count());
    }

    #[test]
    fn sequential_adds_fill_all_slots_with_unique_bytes() {
        let mut storage = NonceStorage::new();
        for miner in 1..=256u64 {
            let fixed = storage.add(miner).unwrap();
            assert_eq!(u64::from(fixed), miner - 1);
            assert_eq!(storage.slot(fixed), Slot::Active(miner));
        }
        assert!(storage.is_full());
        assert!(!storage.is_empty());
        assert_eq!(
            storage.slot_count(),
            SlotCount {
                free: 0,
                dead: 0,
                active: 256
            }
        );
        let active: Vec<_> = storage.active().collect();
        let expected: Vec<_> = (0..=255u8).map(|b| (b, u64::from(b) + 1)).collect();
        assert_eq!(active, expected);
    }

    #[test]
    fn add_257th_returns_none() {
        let mut storage = full_storage();
        assert_eq!(storage.add(257), None);
        assert_eq!(storage.slot_count().active, 256);
    }

    #[test]
    fn removed_slot_not_reused_until_set_job() {
        let mut storage = NonceStorage::new();
        let a = storage.add(1).unwrap();
        assert_eq!(a, 0);
        assert!(storage.remove(1, a));
        assert_eq!(storage.slot(a), Slot::Dead(1));
        assert!(storage.is_empty());
        assert_eq!(
            storage.slot_count(),
            SlotCount {
                free: 255,
                dead: 1,
                active: 0
            }
        );
        // The cursor has moved on; the dead slot is skipped anyway.
        let b = storage.add(2).unwrap();
        assert_eq!(b, 1);
        assert_ne!(a, b);

        // Fill everything else: the dead slot is never handed out.
        for miner in 3..=256 {
            let fixed = storage.add(miner).unwrap();
            assert_ne!(fixed, a);
        }
        assert!(storage.is_full());
        assert_eq!(storage.add(1000), None);
        assert_eq!(storage.slot(a), Slot::Dead(1));

        storage.set_job("j1", true);
        assert_eq!(storage.slot(a), Slot::Free);
        assert_eq!(
            storage.slot_count(),
            SlotCount {
                free: 1,
                dead: 0,
                active: 255
            }
        );
        assert_eq!(storage.add(1000), Some(a));
        assert!(storage.is_full());
    }

    #[test]
    fn freed_slot_reused_only_when_cursor_comes_round() {
        let mut storage = NonceStorage::new();
        for miner in 1..=4 {
            storage.add(miner);
        }
        assert!(storage.remove(1, 0));
        storage.set_job("j1", true);
        assert_eq!(storage.slot(0), Slot::Free);
        // Cursor is at 4: slots 4..=255 go first.
        for miner in 5..=256u64 {
            assert_eq!(storage.add(miner), Some((miner - 1) as u8));
        }
        // Then the cursor wraps round to the freed slot 0.
        assert_eq!(storage.add(300), Some(0));
        assert_eq!(storage.slot(0), Slot::Active(300));
        assert_eq!(storage.add(301), None);
    }

    #[test]
    fn remove_by_non_owner_does_nothing() {
        let mut storage = NonceStorage::new();
        let a = storage.add(1).unwrap();
        assert!(!storage.remove(2, a));
        assert_eq!(storage.slot(a), Slot::Active(1));
        // A free slot cannot be removed.
        assert!(!storage.remove(1, 200));
        assert_eq!(storage.slot(200), Slot::Free);
        // A dead slot cannot be removed twice.
        assert!(storage.remove(1, a));
        assert!(!storage.remove(1, a));
        assert_eq!(storage.slot(a), Slot::Dead(1));
        assert_eq!(storage.slot_count().dead, 1);
    }

    #[test]
    fn set_job_keeps_active_slots() {
        let mut storage = NonceStorage::new();
        storage.add(1);
        storage.add(2);
        storage.remove(2, 1);
        storage.set_job("a", false);
        assert_eq!(storage.slot(0), Slot::Active(1));
        assert_eq!(storage.slot(1), Slot::Free);
        assert_eq!(storage.active().collect::<Vec<_>>(), vec![(0, 1)]);
    }

    #[test]
    fn job_match_same_pool() {
        let mut storage = NonceStorage::new();
        assert_eq!(storage.job_match("a"), JobMatch::Unknown);
        storage.set_job("a", true);
        assert_eq!(storage.current_job_id(), Some("a"));
        assert_eq!(storage.previous_job_id(), None);
        assert_eq!(storage.job_match("a"), JobMatch::Current);
        assert_eq!(storage.job_match("b"), JobMatch::Unknown);
        storage.set_job("b", true);
        assert_eq!(storage.job_match("b"), JobMatch::Current);
        assert_eq!(storage.job_match("a"), JobMatch::Previous);
        storage.set_job("c", true);
        assert_eq!(storage.job_match("c"), JobMatch::Current);
        assert_eq!(storage.job_match("b"), JobMatch::Previous);
        assert_eq!(storage.job_match("a"), JobMatch::Unknown);
        assert_eq!(storage.job_match(""), JobMatch::Unknown);
        assert_eq!(storage.job_match("C"), JobMatch::Unknown);
    }

    #[test]
    fn job_match_new_pool_forgets_previous() {
        let mut storage = NonceStorage::new();
        storage.set_job("a", true);
        storage.set_job("b", true);
        storage.set_job("x", false);
        assert_eq!(storage.job_match("x"), JobMatch::Current);
        assert_eq!(storage.job_match("b"), JobMatch::Unknown);
        assert_eq!(storage.job_match("a"), JobMatch::Unknown);
        assert_eq!(storage.previous_job_id(), None);
        storage.set_job("y", true);
        assert_eq!(storage.job_match("x"), JobMatch::Previous);
    }

    #[test]
    fn repeated_job_id_matches_current() {
        let mut storage = NonceStorage::new();
        storage.set_job("a", true);
        storage.set_job("a", true);
        assert_eq!(storage.job_match("a"), JobMatch::Current);
    }

    #[test]
    fn clear_jobs_forgets_ids_keeps_slots() {
        let mut storage = NonceStorage::new();
        let a = storage.add(7).unwrap();
        storage.add(8);
        storage.remove(8, 1);
        storage.set_job("a", true);
        storage.set_job("b", true);
        storage.remove(7, a);
        let before = storage.slot_count();
        storage.clear_jobs();
        assert_eq!(storage.current_job_id(), None);
        assert_eq!(storage.previous_job_id(), None);
        assert_eq!(storage.job_match("a"), JobMatch::Unknown);
        assert_eq!(storage.job_match("b"), JobMatch::Unknown);
        assert_eq!(storage.slot_count(), before);
        assert_eq!(storage.slot(a), Slot::Dead(7));
        // The next job starts a fresh history.
        storage.set_job("c", true);
        assert_eq!(storage.job_match("c"), JobMatch::Current);
        assert_eq!(storage.job_match("b"), JobMatch::Unknown);
    }

    #[test]
    fn active_miner_lookup() {
        let mut storage = NonceStorage::new();
        let a = storage.add(5).unwrap();
        assert_eq!(storage.active_miner(a), Some(5));
        assert_eq!(storage.active_miner(a + 1), None);
        storage.remove(5, a);
        assert_eq!(storage.active_miner(a), None);
    }

    #[test]
    fn fixed_byte_of_nonce() {
        assert_eq!(nonce_fixed_byte([0, 0, 0, 0xb9]), 0xb9);
        assert_eq!(nonce_fixed_byte([0xff, 0xff, 0xff, 0]), 0);
        let nonce = 0xb912_3456u32.to_le_bytes();
        assert_eq!(nonce_fixed_byte(nonce), 0xb9);
    }
}
