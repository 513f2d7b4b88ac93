//! Threads that share a job's fan-out with the upstream tasks.
//!
//! A job reaches an upstream's miners as one write per miner, straight to its socket; the
//! kernel's cost of those writes (about 10 µs each on loopback, most of it waking the
//! reader) is the whole cost of a fan-out. The upstream's task writes the miners of every
//! `n`-th slot itself (`n` = helpers + 1) and hands the others to the helpers here, each of
//! which always gets the same slots: every miner's jobs are then written by one thread, in
//! the order they came, and a job reaches all miners of an upstream about `n` times sooner.
//!
//! The helpers are plain OS threads, not runtime workers: the rest of the proxy does not
//! need more than one worker (a share's path is cheapest when it never changes thread), the
//! fan-out does.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use crate::lock;

/// Work for a helper: a closure that writes one job to some miners.
type Work = Box<dyn FnOnce() + Send>;

/// The helper threads of one proxy.
pub(crate) struct Fanout {
    /// Emptied by [`Fanout::stop`].
    helpers: Mutex<Vec<Sender<Work>>>,
    /// The helpers started, kept after a stop so that a slot keeps its way (its work then
    /// runs on the caller).
    count: usize,
}

impl Fanout {
    /// `helpers` threads (0: the upstream tasks write every job themselves).
    pub(crate) fn new(helpers: usize) -> Self {
        let mut senders = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let (tx, rx) = channel::<Work>();
            let spawned = std::thread::Builder::new()
                .name(format!("fanout-{i}"))
                .spawn(move || {
                    while let Ok(work) = rx.recv() {
                        work();
                    }
                });
            match spawned {
                Ok(_) => senders.push(tx),
                Err(e) => {
                    tracing::warn!(
                        "fan-out thread not started ({e}); jobs are written by fewer threads"
                    );
                    break;
                }
            }
        }
        let count = senders.len();
        Self {
            helpers: Mutex::new(senders),
            count,
        }
    }

    /// Number of threads a fan-out is split over: the helpers and the caller.
    pub(crate) fn ways(&self) -> usize {
        self.count + 1
    }

    /// Runs `work` on helper `way` (1..ways()); on the caller when that helper is gone (the
    /// proxy is stopping).
    pub(crate) fn run_on(&self, way: usize, work: Work) {
        let sender = lock(&self.helpers).get(way.wrapping_sub(1)).cloned();
        match sender {
            Some(tx) => {
                if let Err(e) = tx.send(work) {
                    (e.0)();
                }
            }
            None => work(),
        }
    }

    /// Lets the helper threads end once their queued work is done.
    pub(crate) fn stop(&self) {
        lock(&self.helpers).clear();
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The slot's way: which of `ways` threads writes the jobs of the miner in `slot`.
pub(crate) fn way_of(slot: usize, ways: usize) -> usize {
    slot % ways.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    #[test]
    fn work_runs_on_the_helpers_in_order_and_on_the_caller_after_stop() {
        let f = Fanout::new(2);
        assert_eq!(f.ways(), 3);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for k in 0..100 {
            let s = seen.clone();
            f.run_on(1, Box::new(move || lock(&s).push(k)));
        }
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let (tx, rx) = channel();
        f.run_on(
            2,
            Box::new(move || {
                d.fetch_add(1, SeqCst);
                tx.send(std::thread::current().name().map(String::from))
                    .unwrap();
            }),
        );
        assert_eq!(rx.recv().unwrap().as_deref(), Some("fanout-1"));
        // Helper 1 ran its queue in order (wait for it through a last item).
        let (tx, rx) = channel();
        f.run_on(1, Box::new(move || tx.send(()).unwrap()));
        rx.recv().unwrap();
        assert_eq!(*lock(&seen), (0..100).collect::<Vec<_>>());
        f.stop();
        let here = std::thread::current().id();
        let (tx, rx) = channel();
        f.run_on(
            1,
            Box::new(move || tx.send(std::thread::current().id()).unwrap()),
        );
        assert_eq!(rx.recv().unwrap(), here, "after stop the caller runs it");
        assert_eq!(done.load(SeqCst), 1);
    }

    #[test]
    fn a_slot_always_has_the_same_way() {
        assert_eq!(way_of(0, 2), 0);
        assert_eq!(way_of(5, 2), 1);
        assert_eq!(way_of(5, 1), 0);
        assert_eq!(way_of(7, 0), 0);
    }
}
