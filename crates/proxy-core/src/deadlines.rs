//! When to look at a miner again: its login or inactivity deadline, kept in order so that
//! the once-a-second tick touches only the miners whose check came, never every miner.
//!
//! A miner's real deadline is an atomic it moves itself on every login, submit or
//! keepalived (the share path stays one store, no lock). This schedule holds, per miner,
//! the whole second of the proxy clock at which to check that atomic: the tick takes out
//! what is due (at most a budget per tick), closes the miners whose deadline passed and
//! schedules the others again at their current deadline. A miner is thus scheduled at its
//! start, again after its login deadline, then about once per inactivity timeout while it
//! is active. This relies on a deadline never moving earlier than its scheduled check (the
//! login deadline comes first, each later one is "now + inactivity timeout"). An entry is
//! the miner's id, 8 bytes: the tick looks due ids up in the registry, and a closed miner's
//! id simply finds nothing (a weak reference would keep the closed miner's allocation alive
//! until its check came, up to the inactivity timeout: +29 % RSS in the soak).
//!
//! Time is milliseconds on the proxy clock, passed in: no clock is read here.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::lock;

/// Most entries one tick takes out; the rest stay due for the next tick, so no tick does
/// unbounded work (a burst of 10,000 login timeouts is closed over three ticks).
pub(crate) const TICK_BUDGET: usize = 4096;

/// Entries by the whole second (proxy clock) at which they are due.
pub(crate) struct Deadlines<T> {
    wheel: Mutex<BTreeMap<u64, Vec<T>>>,
}

impl<T> Deadlines<T> {
    /// An empty schedule.
    pub(crate) fn new() -> Self {
        Self {
            wheel: Mutex::new(BTreeMap::new()),
        }
    }

    /// The second an entry for deadline `at_ms` is due: the first whole second not before it.
    fn slot(at_ms: u64) -> u64 {
        at_ms.div_ceil(1000)
    }

    /// Schedules a check of `item` at `at_ms` (milliseconds on the proxy clock; `u64::MAX`:
    /// never, nothing is scheduled).
    pub(crate) fn schedule(&self, at_ms: u64, item: T) {
        if at_ms == u64::MAX {
            return;
        }
        lock(&self.wheel)
            .entry(Self::slot(at_ms))
            .or_default()
            .push(item);
    }

    /// Schedules every `(at_ms, item)` of `items` under one lock (see [`Deadlines::schedule`]).
    pub(crate) fn schedule_all(&self, items: impl IntoIterator<Item = (u64, T)>) {
        let mut wheel = lock(&self.wheel);
        for (at_ms, item) in items {
            if at_ms != u64::MAX {
                wheel.entry(Self::slot(at_ms)).or_default().push(item);
            }
        }
    }

    /// Moves into `out` the entries due at `now_ms`, at most `budget` of them, earliest
    /// first; what is left stays due.
    pub(crate) fn take_due(&self, now_ms: u64, budget: usize, out: &mut Vec<T>) {
        let mut wheel = lock(&self.wheel);
        while out.len() < budget {
            let Some(mut first) = wheel.first_entry() else {
                return;
            };
            if first.key().saturating_mul(1000) > now_ms {
                return;
            }
            let room = budget - out.len();
            let v = first.get_mut();
            if v.len() <= room {
                out.append(&mut first.remove());
            } else {
                let rest = v.len() - room;
                out.extend(v.drain(rest..));
            }
        }
    }

    /// Number of entries scheduled (closed miners' included until they come due).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.wheel).values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(v: &[u32]) -> Vec<u32> {
        let mut ids = v.to_vec();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn only_what_is_due_comes_out() {
        let d = Deadlines::new();
        d.schedule(10_000, 0u32);
        d.schedule(10_001, 1);
        d.schedule(600_000, 2);
        d.schedule(u64::MAX, 3);
        assert_eq!(d.len(), 3, "no deadline: not scheduled");

        let mut out = Vec::new();
        d.take_due(9_999, TICK_BUDGET, &mut out);
        assert!(out.is_empty(), "nothing before its deadline");
        d.take_due(10_000, TICK_BUDGET, &mut out);
        assert_eq!(sorted(&out), [0], "due at its deadline");
        out.clear();
        d.take_due(10_999, TICK_BUDGET, &mut out);
        assert!(
            out.is_empty(),
            "10,001 ms is checked at the next whole second"
        );
        d.take_due(11_000, TICK_BUDGET, &mut out);
        assert_eq!(sorted(&out), [1]);
        assert_eq!(d.len(), 1, "the later entry was not touched");

        out.clear();
        d.schedule_all([(700_000, 0)]);
        d.take_due(650_000, TICK_BUDGET, &mut out);
        assert_eq!(sorted(&out), [2]);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_tick_takes_at_most_its_budget_and_leaves_the_rest_due() {
        let d = Deadlines::new();
        for i in 0..10u32 {
            d.schedule(1_000 * (1 + u64::from(i) % 2), i);
        }
        let mut out = Vec::new();
        d.take_due(5_000, 4, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(d.len(), 6);
        out.clear();
        d.take_due(5_000, 4, &mut out);
        assert_eq!(out.len(), 4);
        out.clear();
        d.take_due(5_000, 4, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(d.len(), 0);
    }
}
