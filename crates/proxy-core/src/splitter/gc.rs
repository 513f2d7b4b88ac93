//! Which mappers the once-a-second GC (RFC §8.1 `GC`) looks at: only those that may have
//! something to collect, never every mapper. A mapper is listed when it becomes empty (its
//! last miner left, at `since`) and when its upstream stops while it is empty; the tick takes
//! out the stopped ones and the idle ones whose keep time ran out, oldest first, at most
//! [`GC_BUDGET`] a tick, and looks each up by id. A mapper is listed at most once per kind
//! (its `MapperState` flags), so the list is never longer than twice the number of mappers.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock;

/// Most mappers the GC looks at in one tick; the rest wait for the next.
pub(crate) const GC_BUDGET: usize = 1024;

/// Why a mapper is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    /// It became empty.
    Idle,
    /// Its upstream stopped while it was empty.
    Stopped,
}

/// The mappers the GC is to look at (see the module doc).
#[derive(Default)]
pub(crate) struct GcList {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (empty since, mapper id), oldest first.
    idle: BTreeSet<(Instant, u64)>,
    stopped: Vec<u64>,
}

impl GcList {
    /// Mapper `id` became empty at `since`.
    pub(crate) fn idle(&self, since: Instant, id: u64) {
        lock(&self.inner).idle.insert((since, id));
    }

    /// Mapper `id`'s upstream stopped while it was empty.
    pub(crate) fn stopped(&self, id: u64) {
        lock(&self.inner).stopped.push(id);
    }

    /// Takes out, into `out`, the mappers to look at `now` with keep time `keep`: the stopped
    /// ones, then the idle ones empty since `now - keep` or earlier, oldest first; at most
    /// `max` in all.
    pub(crate) fn take_due(
        &self,
        now: Instant,
        keep: Duration,
        max: usize,
        out: &mut Vec<(u64, Listed)>,
    ) {
        let mut inner = lock(&self.inner);
        let n = inner.stopped.len().min(max);
        out.extend(inner.stopped.drain(..n).map(|id| (id, Listed::Stopped)));
        while out.len() < max {
            let Some(&(since, id)) = inner.idle.first() else {
                break;
            };
            if now.saturating_duration_since(since) < keep {
                break;
            }
            inner.idle.pop_first();
            out.push((id, Listed::Idle));
        }
    }

    /// Number of listed entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let inner = lock(&self.inner);
        inner.idle.len() + inner.stopped.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mappers_past_their_keep_time_or_stopped_come_out_oldest_first() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let gc = GcList::default();
        gc.idle(s(5), 2);
        gc.idle(s(1), 7);
        gc.idle(s(30), 3);
        let mut out = Vec::new();
        gc.take_due(s(20), Duration::from_secs(60), GC_BUDGET, &mut out);
        assert!(out.is_empty(), "nothing is due before its keep time");
        gc.stopped(9);
        gc.take_due(s(65), Duration::from_secs(60), GC_BUDGET, &mut out);
        assert_eq!(
            out,
            [(9, Listed::Stopped), (7, Listed::Idle), (2, Listed::Idle)]
        );
        assert_eq!(gc.len(), 1, "the mapper empty since 30 s waits");
    }

    #[test]
    fn a_tick_takes_at_most_its_budget() {
        let t0 = Instant::now();
        let gc = GcList::default();
        for id in 0..10 {
            gc.idle(t0, id);
        }
        let mut out = Vec::new();
        gc.take_due(t0, Duration::ZERO, 4, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(gc.len(), 6);
        out.clear();
        gc.take_due(t0, Duration::ZERO, 100, &mut out);
        assert_eq!(out.len(), 6);
    }
}
