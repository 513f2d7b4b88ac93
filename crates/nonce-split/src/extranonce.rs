//! Stratum V1 extranonce splitting: many miners on one upstream subscription (docs on
//! [`ExtranonceSplit`], where rustdoc shows them).

use std::collections::VecDeque;

use crate::{MinerId, Slot, SlotCount};

/// Default `min-extranonce2-size`: the fewest extranonce2 bytes a miner is left with
/// (4, what NiceHash requires).
pub const DEFAULT_MIN_EXTRANONCE2_SIZE: usize = 4;

/// Largest allowed `min-extranonce2-size`, and the most extranonce2 bytes a miner is
/// ever given: 8 (cgminer-based firmware breaks above 8 bytes).
pub const MAX_MINER_EXTRANONCE2_SIZE: usize = 8;

/// Most bytes of slot index in a tail: 2, so at most [`MAX_EXTRANONCE_SLOTS`] miners
/// per upstream.
pub const MAX_INDEX_SIZE: usize = 2;

/// Most slots (miners) of one upstream: 65,536 (`256^`[`MAX_INDEX_SIZE`]).
pub const MAX_EXTRANONCE_SLOTS: usize = 65_536;

/// Most bytes of extranonce1 + extranonce2_size accepted from an upstream: 100, the
/// largest coinbase scriptSig (consensus rule), which holds both.
pub const MAX_UPSTREAM_EXTRANONCE_BYTES: usize = 100;

/// Why an upstream cannot be split, or a share cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// The configured minimum is outside `1..=8` (configuration error; not retryable).
    #[error("min-extranonce2-size {0} is out of range: it must be between 1 and 8")]
    InvalidMinExtranonce2Size(usize),
    /// The upstream leaves fewer extranonce2 bytes than the configured minimum (pool
    /// side: another pool, or a lower `min-extranonce2-size`, may help).
    #[error(
        "upstream extranonce2_size {upstream} is below min-extranonce2-size {min}: \
         this upstream cannot be split"
    )]
    UpstreamTooSmall {
        /// The upstream's extranonce2_size, bytes.
        upstream: usize,
        /// The configured `min-extranonce2-size`, bytes.
        min: usize,
    },
    /// The upstream's extranonce1 and extranonce2 would not fit a coinbase scriptSig
    /// (pool side; a malformed subscribe reply).
    #[error(
        "upstream extranonce1 of {extranonce1} bytes plus extranonce2_size {extranonce2} \
         exceed the {MAX_UPSTREAM_EXTRANONCE_BYTES}-byte coinbase scriptSig"
    )]
    UpstreamTooLarge {
        /// Length of the upstream's extranonce1, bytes.
        extranonce1: usize,
        /// The upstream's extranonce2_size, bytes.
        extranonce2: usize,
    },
    /// A miner's extranonce2 has the wrong length (miner side: refuse the share).
    #[error("extranonce2 is {got} bytes, expected {expected}")]
    Extranonce2Length {
        /// Bytes received.
        got: usize,
        /// The miner's extranonce2_size, bytes.
        expected: usize,
    },
    /// A slot index at or past the layout's capacity (caller error).
    #[error("extranonce slot {slot} is out of range: this upstream has {capacity} slots")]
    SlotOutOfRange {
        /// The slot index given.
        slot: u16,
        /// The layout's capacity.
        capacity: usize,
    },
}

/// Every slot of an upstream is taken: open another upstream subscription.
///
/// `dead` slots become free at the upstream's next job, so waiting for it may also
/// help a caller that cannot open another upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "all {capacity} extranonce slots of this upstream are taken ({dead} dead until the next job)"
)]
pub struct SlotsFull {
    /// The upstream's slot count.
    pub capacity: usize,
    /// Slots held by departed miners until the next job.
    pub dead: usize,
}

/// How one upstream's extranonce2 is divided between the proxy (the tail) and the
/// miners; see [`ExtranonceSplit`] for the byte layout and the sizing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtranonceLayout {
    upstream_extranonce1: Vec<u8>,
    upstream_extranonce2_size: usize,
    /// Zero bytes at the start of the tail.
    pad_size: usize,
    /// Bytes of slot index after the padding (0..=2).
    index_size: usize,
    miner_extranonce2_size: usize,
}

impl ExtranonceLayout {
    /// The layout for an upstream that gave `extranonce1` (decoded bytes) and
    /// `extranonce2_size` (bytes), leaving each miner at least `min_extranonce2_size`
    /// bytes (`min-extranonce2-size`, 1..=8).
    ///
    /// # Errors
    ///
    /// [`SplitError::InvalidMinExtranonce2Size`] for a minimum outside `1..=8`,
    /// [`SplitError::UpstreamTooLarge`] when extranonce1 and extranonce2 exceed 100
    /// bytes, [`SplitError::UpstreamTooSmall`] when `extranonce2_size` is below the
    /// minimum.
    pub fn new(
        extranonce1: &[u8],
        extranonce2_size: usize,
        min_extranonce2_size: usize,
    ) -> Result<Self, SplitError> {
        if !(1..=MAX_MINER_EXTRANONCE2_SIZE).contains(&min_extranonce2_size) {
            return Err(SplitError::InvalidMinExtranonce2Size(min_extranonce2_size));
        }
        if extranonce1.len().saturating_add(extranonce2_size) > MAX_UPSTREAM_EXTRANONCE_BYTES {
            return Err(SplitError::UpstreamTooLarge {
                extranonce1: extranonce1.len(),
                extranonce2: extranonce2_size,
            });
        }
        if extranonce2_size < min_extranonce2_size {
            return Err(SplitError::UpstreamTooSmall {
                upstream: extranonce2_size,
                min: min_extranonce2_size,
            });
        }
        let index_size = (extranonce2_size - min_extranonce2_size).min(MAX_INDEX_SIZE);
        let miner_extranonce2_size =
            (extranonce2_size - index_size).min(MAX_MINER_EXTRANONCE2_SIZE);
        let pad_size = extranonce2_size - index_size - miner_extranonce2_size;
        Ok(ExtranonceLayout {
            upstream_extranonce1: extranonce1.to_vec(),
            upstream_extranonce2_size: extranonce2_size,
            pad_size,
            index_size,
            miner_extranonce2_size,
        })
    }

    /// The upstream's extranonce1, bytes.
    pub fn upstream_extranonce1(&self) -> &[u8] {
        &self.upstream_extranonce1
    }

    /// The upstream's extranonce2_size, bytes.
    pub fn upstream_extranonce2_size(&self) -> usize {
        self.upstream_extranonce2_size
    }

    /// Bytes of the upstream's extranonce2 the proxy keeps per miner (padding + slot
    /// index); 0 when the upstream serves a single miner.
    pub fn tail_size(&self) -> usize {
        self.pad_size + self.index_size
    }

    /// Bytes of slot index in the tail: 0, 1 or 2.
    pub fn index_size(&self) -> usize {
        self.index_size
    }

    /// The extranonce2_size each miner is told: upstream size − tail, between the
    /// configured minimum and 8.
    pub fn miner_extranonce2_size(&self) -> usize {
        self.miner_extranonce2_size
    }

    /// Number of distinct tails, i.e. miners one upstream can serve at once:
    /// `256^index_size` (1, 256 or 65,536).
    pub fn capacity(&self) -> usize {
        1 << (8 * self.index_size)
    }

    fn check_slot(&self, slot: u16) -> Result<(), SplitError> {
        if usize::from(slot) < self.capacity() {
            Ok(())
        } else {
            Err(SplitError::SlotOutOfRange {
                slot,
                capacity: self.capacity(),
            })
        }
    }

    /// Appends the tail of `slot` to `out`: `pad` zero bytes, then the slot index
    /// big-endian in `index_size` bytes. A slot at or past [`capacity`](Self::capacity)
    /// is a caller bug ([`SplitError::SlotOutOfRange`]; nothing is appended).
    pub fn extend_tail(&self, slot: u16, out: &mut Vec<u8>) -> Result<(), SplitError> {
        self.check_slot(slot)?;
        out.extend(std::iter::repeat_n(0, self.pad_size));
        out.extend_from_slice(&slot.to_be_bytes()[MAX_INDEX_SIZE - self.index_size..]);
        Ok(())
    }

    /// The extranonce1 a miner in `slot` is told: upstream extranonce1 ‖ tail
    /// (`upstream_extranonce1().len() + tail_size()` bytes; hex-encode it for the
    /// subscribe reply).
    ///
    /// # Errors
    ///
    /// [`SplitError::SlotOutOfRange`] for a slot past the capacity (a caller bug: slots
    /// come from [`ExtranonceSplit::add`]).
    pub fn miner_extranonce1(&self, slot: u16) -> Result<Vec<u8>, SplitError> {
        let mut out = Vec::with_capacity(self.upstream_extranonce1.len() + self.tail_size());
        out.extend_from_slice(&self.upstream_extranonce1);
        self.extend_tail(slot, &mut out)?;
        Ok(out)
    }

    /// The reverse mapping used when forwarding a share: the extranonce2 to send
    /// upstream for a share of the miner in `slot` carrying `miner_extranonce2`
    /// (decoded bytes): tail ‖ miner extranonce2, `upstream_extranonce2_size()` bytes.
    ///
    /// # Errors
    ///
    /// [`SplitError::Extranonce2Length`] when `miner_extranonce2` is not
    /// [`miner_extranonce2_size`](Self::miner_extranonce2_size) bytes (a miner's
    /// error: refuse the share), [`SplitError::SlotOutOfRange`] for a slot past the
    /// capacity.
    pub fn upstream_extranonce2(
        &self,
        slot: u16,
        miner_extranonce2: &[u8],
    ) -> Result<Vec<u8>, SplitError> {
        if miner_extranonce2.len() != self.miner_extranonce2_size {
            return Err(SplitError::Extranonce2Length {
                got: miner_extranonce2.len(),
                expected: self.miner_extranonce2_size,
            });
        }
        let mut out = Vec::with_capacity(self.upstream_extranonce2_size);
        self.extend_tail(slot, &mut out)?;
        out.extend_from_slice(miner_extranonce2);
        Ok(out)
    }

    /// The inverse of [`upstream_extranonce2`](Self::upstream_extranonce2): the slot
    /// and the miner's extranonce2 an upstream extranonce2 came from, or `None` when it
    /// has the wrong length or non-zero padding (no miner of this layout made it).
    pub fn split_upstream_extranonce2<'a>(&self, upstream: &'a [u8]) -> Option<(u16, &'a [u8])> {
        if upstream.len() != self.upstream_extranonce2_size {
            return None;
        }
        let (pad, rest) = upstream.split_at(self.pad_size);
        if pad.iter().any(|&b| b != 0) {
            return None;
        }
        let (index, miner) = rest.split_at(self.index_size);
        let slot = index.iter().fold(0u16, |acc, &b| (acc << 8) | u16::from(b));
        Some((slot, miner))
    }
}

/// One upstream subscription's extranonce split: its [`ExtranonceLayout`] and the
/// table of its `capacity` slots (free / active / dead), one per miner.
///
/// # What it does
///
/// A Stratum V1 pool gives each subscription an `extranonce1` (hex bytes, fixed by
/// the pool) and an `extranonce2_size` (bytes the client fills in itself); the coinbase
/// is `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2` (slush's spec,
/// `shared/spec/stratum-v1-slush.md`). To let many miners share one subscription, the
/// proxy keeps the first `tail` bytes of the upstream's extranonce2 for itself and gives
/// each miner a different value of them: the miner is told
///
/// * `extranonce1` = upstream extranonce1 ‖ its tail, and
/// * `extranonce2_size` = upstream extranonce2_size − tail size,
///
/// so two miners of one upstream never build the same coinbase, hence never hash the
/// same header. When a miner submits, its share goes upstream with extranonce2 =
/// its tail ‖ the miner's extranonce2 ([`ExtranonceLayout::upstream_extranonce2`]).
///
/// # Byte layout
///
/// The upstream's extranonce2 field, as the proxy divides it:
///
/// | bytes of upstream extranonce2 | meaning                                  | who sets it      |
/// |-------------------------------|------------------------------------------|------------------|
/// | `0..pad`                      | zero padding (only when the upstream gives more than `index + 8` bytes) | proxy (zeros) |
/// | `pad..tail`                   | slot index, big-endian, `index` bytes (0, 1 or 2) | proxy (per miner) |
/// | `tail..size`                  | the miner's extranonce2                  | miner (rolled)   |
///
/// with `tail = pad + index`. Everything up to `tail` is part of the miner's
/// extranonce1.
///
/// # Sizing rule
///
/// With `size` the upstream's extranonce2_size and `min` the configured
/// `min-extranonce2-size` (1..=8, default 4):
///
/// * `size < min`: refused ([`SplitError::UpstreamTooSmall`]); a miner would get less
///   than `min` bytes.
/// * `index = min(size − min, 2)` bytes of slot index: capacity `256^index` miners
///   (1, 256 or 65,536). Capped at 2 bytes: a slot table of 65,536 entries is 1 MiB at
///   most per upstream, and a larger one serves no real farm better than a second upstream.
/// * the miner gets `min(size − index, 8)` bytes: never fewer than `min`, never more than
///   8 (cgminer-based firmware breaks above 8 bytes, stratum-mining/stratum #1861; NiceHash
///   needs at least 4, Stratehm/stratum-proxy #98). Bytes the miner does not get are
///   zero padding in the tail.
///
/// | upstream size (`min` = 4) | tail (pad + index) | miners per upstream | miner's size | ckpool's tail |
/// |--------------------------:|-------------------:|--------------------:|-------------:|--------------:|
/// | 0..=3                     | refused            | –                   | –            | 0             |
/// | 4                         | 0                  | 1                   | 4            | 1             |
/// | 5                         | 1 (0 + 1)          | 256                 | 4            | 1             |
/// | 6                         | 2 (0 + 2)          | 65,536              | 4            | 2             |
/// | 7                         | 2 (0 + 2)          | 65,536              | 5            | 2             |
/// | 8 (common)                | 2 (0 + 2)          | 65,536              | 6            | 4             |
/// | 10                        | 2 (0 + 2)          | 65,536              | 8            | 4             |
/// | 16                        | 8 (6 + 2)          | 65,536              | 8            | 4             |
///
/// ckpool (proxy mode) picks its tail from the size alone (more than 7 bytes: 4, more
/// than 5: 2, more than 3: 1, else 0) and may leave a miner 3 bytes (size 4) or more
/// than 8 (size 13 and up); the rule here takes the configured minimum and cgminer's
/// maximum into account.
///
/// # Slots
///
/// [`ExtranonceSplit`] pairs a layout with a slot table of `capacity` slots, each
/// [`Slot::Free`], [`Slot::Active`] or [`Slot::Dead`] as in the NiceHash table
/// ([`crate::NonceStorage`]): a miner that leaves makes its slot dead, and a dead slot
/// is not handed out again before the upstream's next job
/// ([`ExtranonceSplit::on_new_job`]). Until then the departed miner's work on the
/// current job (and shares it had in flight) used that tail; a new miner given the
/// same tail and the same job would search the same coinbases. After the next job
/// a newcomer only ever gets jobs the old miner never saw. Slots are handed out fresh
/// ones first, then freed ones oldest first, so a tail is reused as late as possible.
/// When no slot is free, [`ExtranonceSplit::add`] says so ([`SlotsFull`]): the caller
/// opens another upstream subscription.
///
/// When the upstream's extranonce1 or extranonce2_size changes (`mining.set_extranonce`,
/// a reconnect), the whole split is void: build a new one and move the miners
/// (reconnect them), since a connected miner's extranonce1 cannot be changed in place
/// (stratum-mining/sv2-apps #139).
///
/// # Cost
///
/// `add`, `remove` and the lookups are O(1); [`on_new_job`](Self::on_new_job) is
/// O(dead slots). Memory grows with the most miners the upstream ever had at once:
/// 16 bytes per slot used so far plus 2 per freed or dead slot queued, at most 1.25 MiB
/// at the 65,536 cap. Not thread-safe by itself (a plain value; the caller locks).
///
/// ```
/// use nonce_split::{ExtranonceSplit, DEFAULT_MIN_EXTRANONCE2_SIZE};
///
/// // The pool gave extranonce1 08000002 and extranonce2_size 8.
/// let mut split = ExtranonceSplit::new(&[0x08, 0, 0, 0x02], 8, DEFAULT_MIN_EXTRANONCE2_SIZE)?;
/// assert_eq!(split.layout().tail_size(), 2);
/// assert_eq!(split.layout().miner_extranonce2_size(), 6);
/// assert_eq!(split.capacity(), 65_536);
///
/// let slot = split.add(7)?; // miner 7 subscribes
/// assert_eq!(split.layout().miner_extranonce1(slot)?, [0x08, 0, 0, 0x02, 0, 0]);
/// // Its share's extranonce2 goes upstream behind its tail.
/// let upstream = split.layout().upstream_extranonce2(slot, &[1, 2, 3, 4, 5, 6])?;
/// assert_eq!(upstream, [0, 0, 1, 2, 3, 4, 5, 6]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExtranonceSplit {
    layout: ExtranonceLayout,
    /// Slots handed out so far (the high-water mark); slots past it are free.
    slots: Vec<Slot>,
    /// Freed slots below the high-water mark, oldest first.
    free: VecDeque<u16>,
    /// Slots dead since the last job.
    dead: Vec<u16>,
    active: usize,
}

impl ExtranonceSplit {
    /// A split of an upstream with `extranonce1` (bytes) and `extranonce2_size`
    /// (bytes), every slot free; see [`ExtranonceLayout::new`] for the rule and errors.
    pub fn new(
        extranonce1: &[u8],
        extranonce2_size: usize,
        min_extranonce2_size: usize,
    ) -> Result<Self, SplitError> {
        ExtranonceLayout::new(extranonce1, extranonce2_size, min_extranonce2_size)
            .map(Self::with_layout)
    }

    /// A split over `layout`, every slot free.
    pub fn with_layout(layout: ExtranonceLayout) -> Self {
        ExtranonceSplit {
            layout,
            slots: Vec::new(),
            free: VecDeque::new(),
            dead: Vec::new(),
            active: 0,
        }
    }

    /// The layout: tail and miner sizes, share mapping.
    pub fn layout(&self) -> &ExtranonceLayout {
        &self.layout
    }

    /// Number of slots, [`ExtranonceLayout::capacity`].
    pub fn capacity(&self) -> usize {
        self.layout.capacity()
    }

    /// Gives `miner` a slot and returns its index (its tail is
    /// [`ExtranonceLayout::miner_extranonce1`] of it). Never-used slots go first, in
    /// order, then freed ones, the longest free first.
    ///
    /// # Errors
    ///
    /// [`SlotsFull`] when every slot is active or dead: open another upstream.
    /// Nothing changes.
    pub fn add(&mut self, miner: MinerId) -> Result<u16, SlotsFull> {
        let slot = if self.slots.len() < self.capacity() {
            self.slots.push(Slot::Free);
            (self.slots.len() - 1) as u16
        } else if let Some(slot) = self.free.pop_front() {
            slot
        } else {
            return Err(SlotsFull {
                capacity: self.capacity(),
                dead: self.dead.len(),
            });
        };
        self.slots[usize::from(slot)] = Slot::Active(miner);
        self.active += 1;
        Ok(slot)
    }

    /// Releases `slot` of `miner` (it left): an [`Slot::Active`]`(miner)` slot
    /// becomes [`Slot::Dead`]`(miner)` until the next job and `true` is returned;
    /// otherwise (free, dead, out of range, another miner's) nothing changes and
    /// `false` is returned.
    pub fn remove(&mut self, miner: MinerId, slot: u16) -> bool {
        match self.slots.get_mut(usize::from(slot)) {
            Some(state) if *state == Slot::Active(miner) => {
                *state = Slot::Dead(miner);
                self.dead.push(slot);
                self.active -= 1;
                true
            }
            _ => false,
        }
    }

    /// The upstream sent a new job (`mining.notify`, whatever its `clean_jobs`): every
    /// dead slot becomes free, queued for reuse behind the slots freed earlier.
    pub fn on_new_job(&mut self) {
        for slot in self.dead.drain(..) {
            self.slots[usize::from(slot)] = Slot::Free;
            self.free.push_back(slot);
        }
    }

    /// The state of `slot` ([`Slot::Free`] past the capacity).
    pub fn slot(&self, slot: u16) -> Slot {
        self.slots
            .get(usize::from(slot))
            .copied()
            .unwrap_or(Slot::Free)
    }

    /// The miner holding `slot`, if it is active.
    pub fn active_miner(&self, slot: u16) -> Option<MinerId> {
        match self.slot(slot) {
            Slot::Active(miner) => Some(miner),
            Slot::Free | Slot::Dead(_) => None,
        }
    }

    /// Slot counts per state; `free + dead + active == capacity()`.
    pub fn slot_count(&self) -> SlotCount {
        SlotCount {
            free: self.capacity() - self.active - self.dead.len(),
            dead: self.dead.len(),
            active: self.active,
        }
    }

    /// `true` when [`add`](Self::add) would fail: no slot is free (some may be dead
    /// until the next job). The signal to open another upstream.
    pub fn is_full(&self) -> bool {
        self.active + self.dead.len() == self.capacity()
    }

    /// `true` when no miner holds a slot (dead slots may remain).
    pub fn is_empty(&self) -> bool {
        self.active == 0
    }

    /// The active slots as `(slot, miner)` pairs, in increasing slot order.
    pub fn active(&self) -> impl Iterator<Item = (u16, MinerId)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match *slot {
                Slot::Active(miner) => Some((index as u16, miner)),
                Slot::Free | Slot::Dead(_) => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_16_bytes_as_documented() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn sizes_follow_the_documented_table() {
        let rows = [
            (4, 0, 1, 4),
            (5, 1, 256, 4),
            (6, 2, 65_536, 4),
            (7, 2, 65_536, 5),
            (8, 2, 65_536, 6),
            (10, 2, 65_536, 8),
            (16, 8, 65_536, 8),
        ];
        for (size, tail, capacity, miner) in rows {
            let layout = ExtranonceLayout::new(&[1, 2, 3, 4], size, 4).unwrap();
            assert_eq!(layout.tail_size(), tail, "size {size}");
            assert_eq!(layout.capacity(), capacity, "size {size}");
            assert_eq!(layout.miner_extranonce2_size(), miner, "size {size}");
        }
        for size in 0..4 {
            assert_eq!(
                ExtranonceLayout::new(&[1], size, 4),
                Err(SplitError::UpstreamTooSmall {
                    upstream: size,
                    min: 4
                })
            );
        }
    }

    #[test]
    fn minimum_out_of_range_is_refused_naming_the_key() {
        for min in [0, 9, 100] {
            let err = ExtranonceLayout::new(&[1], 8, min).unwrap_err();
            assert_eq!(err, SplitError::InvalidMinExtranonce2Size(min));
            assert!(err.to_string().contains("min-extranonce2-size"));
        }
        assert!(ExtranonceLayout::new(&[1], 8, 8).is_ok());
    }

    #[test]
    fn oversized_upstream_is_refused() {
        let err = ExtranonceLayout::new(&[0; 60], 41, 4).unwrap_err();
        assert_eq!(
            err,
            SplitError::UpstreamTooLarge {
                extranonce1: 60,
                extranonce2: 41
            }
        );
        assert!(ExtranonceLayout::new(&[0; 60], 40, 4).is_ok());
        assert!(ExtranonceLayout::new(&[], usize::MAX, 4).is_err());
    }

    #[test]
    fn padded_tail_maps_both_ways() {
        let layout = ExtranonceLayout::new(&[0xaa], 12, 4).unwrap();
        assert_eq!(layout.tail_size(), 4);
        assert_eq!(layout.miner_extranonce1(0x0102), Ok(vec![0xaa, 0, 0, 1, 2]));
        let up = layout.upstream_extranonce2(0x0102, &[9; 8]).unwrap();
        assert_eq!(up, [0, 0, 1, 2, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(
            layout.split_upstream_extranonce2(&up),
            Some((0x0102, &[9u8; 8][..]))
        );
        let mut bad_pad = up.clone();
        bad_pad[0] = 1;
        assert_eq!(layout.split_upstream_extranonce2(&bad_pad), None);
        assert_eq!(layout.split_upstream_extranonce2(&up[1..]), None);
    }

    #[test]
    fn wrong_length_extranonce2_from_a_miner_is_an_error() {
        let layout = ExtranonceLayout::new(&[], 8, 4).unwrap();
        let err = layout.upstream_extranonce2(3, &[0; 5]).unwrap_err();
        assert_eq!(
            err,
            SplitError::Extranonce2Length {
                got: 5,
                expected: 6
            }
        );
        assert_eq!(err.to_string(), "extranonce2 is 5 bytes, expected 6");
    }

    #[test]
    fn slot_past_capacity_is_an_error_not_a_panic() {
        let layout = ExtranonceLayout::new(&[], 5, 4).unwrap();
        assert_eq!(
            layout.upstream_extranonce2(256, &[0; 4]),
            Err(SplitError::SlotOutOfRange {
                slot: 256,
                capacity: 256
            })
        );
        assert!(layout.miner_extranonce1(256).is_err());
        assert_eq!(layout.miner_extranonce1(255), Ok(vec![255]));
        let mut out = Vec::new();
        assert!(layout.extend_tail(300, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn single_miner_upstream_has_an_empty_tail() {
        let mut split = ExtranonceSplit::new(&[5, 6], 4, 4).unwrap();
        assert_eq!(split.capacity(), 1);
        let slot = split.add(1).unwrap();
        assert_eq!(slot, 0);
        assert_eq!(split.layout().miner_extranonce1(slot), Ok(vec![5, 6]));
        assert_eq!(
            split.layout().upstream_extranonce2(slot, &[1, 2, 3, 4]),
            Ok(vec![1, 2, 3, 4])
        );
        assert_eq!(
            split.add(2),
            Err(SlotsFull {
                capacity: 1,
                dead: 0
            })
        );
        assert!(split.is_full());
    }

    #[test]
    fn dead_slot_waits_for_the_next_job() {
        let mut split = ExtranonceSplit::new(&[], 5, 4).unwrap();
        for miner in 1..=256 {
            split.add(miner).unwrap();
        }
        assert!(split.is_full());
        assert!(split.remove(10, 9));
        assert!(!split.remove(10, 9), "already dead");
        assert_eq!(split.slot(9), Slot::Dead(10));
        let err = split.add(1000).unwrap_err();
        assert_eq!(
            err,
            SlotsFull {
                capacity: 256,
                dead: 1
            }
        );
        assert!(err.to_string().contains("1 dead until the next job"));
        assert_eq!(
            split.slot_count(),
            SlotCount {
                free: 0,
                dead: 1,
                active: 255
            }
        );
        split.on_new_job();
        assert_eq!(split.slot(9), Slot::Free);
        assert_eq!(split.add(1000), Ok(9));
        assert_eq!(split.active_miner(9), Some(1000));
    }

    #[test]
    fn fresh_slots_go_before_freed_ones_and_freed_ones_oldest_first() {
        let mut split = ExtranonceSplit::new(&[], 5, 4).unwrap();
        let a = split.add(1).unwrap();
        let b = split.add(2).unwrap();
        assert_eq!((a, b), (0, 1));
        split.remove(2, b);
        split.remove(1, a);
        split.on_new_job();
        assert_eq!(split.add(3), Ok(2), "a never-used slot first");
        for miner in 4..=256 {
            split.add(miner).unwrap();
        }
        assert_eq!(split.add(500), Ok(1), "freed first");
        assert_eq!(split.add(501), Ok(0));
        assert!(split.add(502).is_err());
        assert_eq!(split.active().count(), 256);
    }

    #[test]
    fn remove_by_another_miner_or_out_of_range_changes_nothing() {
        let mut split = ExtranonceSplit::new(&[], 6, 4).unwrap();
        let a = split.add(1).unwrap();
        assert!(!split.remove(2, a));
        assert!(!split.remove(1, 40_000));
        assert_eq!(split.slot(a), Slot::Active(1));
        assert_eq!(split.slot(40_000), Slot::Free);
        assert!(!split.is_empty());
        assert!(split.remove(1, a));
        assert!(split.is_empty());
    }
}
