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
//!
//! Each helper's queue is bounded: it holds at most [`QUEUE_CAP`] pieces of work, each for a
//! key (an upstream: the same miners). Below the cap every job is queued and written. At the
//! cap, work for a key that has work queued replaces the newest of it (a newer job supersedes
//! an older one not yet written: its miners skip that one and get the newest); work for a key
//! with nothing queued runs on the caller, once the helper is not running that key's older
//! work. Either way a miner's jobs are never written out of order and its last job is the
//! newest, and the caller waits at most for one piece of work, which never waits on I/O
//! (writes go to non-blocking sockets and capped outboxes). The work for one key is handed
//! over by one caller at a time, in order (an upstream's task).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

use crate::lock;

/// Work for a helper: a closure that writes one job to some miners.
type Work = Box<dyn FnOnce() + Send>;

/// Most pieces of work a helper's queue holds.
pub(crate) const QUEUE_CAP: usize = 256;

/// One helper's queue.
struct Queue {
    items: VecDeque<(u64, Work)>,
    /// The key of the work the helper is running now.
    running: Option<u64>,
    /// False once the proxy stops: the helper ends when the queue is empty.
    open: bool,
}

/// A helper thread's side of the queue.
struct Helper {
    queue: Mutex<Queue>,
    /// Signalled when work is queued, when the helper finishes a piece, and at stop.
    changed: Condvar,
}

impl Helper {
    fn run(&self) {
        let mut q = lock(&self.queue);
        loop {
            if let Some((key, work)) = q.items.pop_front() {
                q.running = Some(key);
                drop(q);
                work();
                q = lock(&self.queue);
                q.running = None;
                self.changed.notify_all();
            } else if q.open {
                q = self
                    .changed
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            } else {
                return;
            }
        }
    }
}

/// The helper threads of one proxy.
pub(crate) struct Fanout {
    helpers: Vec<Arc<Helper>>,
    cap: usize,
    /// Queued work replaced by newer work for the same key.
    superseded: AtomicU64,
    /// Work run on the caller because its helper's queue was full (or stopped).
    on_caller: AtomicU64,
}

impl Fanout {
    /// `helpers` threads (0: the upstream tasks write every job themselves).
    pub(crate) fn new(helpers: usize) -> Self {
        Self::with_cap(helpers, QUEUE_CAP)
    }

    /// `helpers` threads whose queues hold `cap` keys each.
    fn with_cap(helpers: usize, cap: usize) -> Self {
        let mut started = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let helper = Arc::new(Helper {
                queue: Mutex::new(Queue {
                    items: VecDeque::new(),
                    running: None,
                    open: true,
                }),
                changed: Condvar::new(),
            });
            let h = helper.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fanout-{i}"))
                .spawn(move || h.run());
            match spawned {
                Ok(_) => started.push(helper),
                Err(e) => {
                    tracing::warn!(
                        "fan-out thread not started ({e}); jobs are written by fewer threads"
                    );
                    break;
                }
            }
        }
        Self {
            helpers: started,
            cap,
            superseded: AtomicU64::new(0),
            on_caller: AtomicU64::new(0),
        }
    }

    /// Number of threads a fan-out is split over: the helpers and the caller.
    pub(crate) fn ways(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `work`, the newest job for the miners of `key`, on helper `way` (1..ways()):
    /// queued; at the cap (or once the proxy is stopping) in place of the newest work of
    /// `key` still queued there, else on the caller (see the module docs).
    pub(crate) fn run_on(&self, way: usize, key: u64, work: Work) {
        let Some(helper) = self.helpers.get(way.wrapping_sub(1)) else {
            return work();
        };
        let mut q = lock(&helper.queue);
        if q.open && q.items.len() < self.cap {
            q.items.push_back((key, work));
            helper.changed.notify_all();
            return;
        }
        if let Some(queued) = q.items.iter_mut().rev().find(|(k, _)| *k == key) {
            let older = std::mem::replace(&mut queued.1, work);
            drop(q);
            // Dropped out of the lock: it may hold the last reference to a miner.
            drop(older);
            self.superseded.fetch_add(1, Relaxed);
            return;
        }
        while q.running == Some(key) {
            q = helper
                .changed
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        drop(q);
        self.on_caller.fetch_add(1, Relaxed);
        work();
    }

    /// Queued work replaced by newer work for the same miners, and work run on the caller
    /// because a queue was full or stopped, since the start.
    #[cfg(test)]
    fn counts(&self) -> (u64, u64) {
        (self.superseded.load(Relaxed), self.on_caller.load(Relaxed))
    }

    /// Lets the helper threads end once their queued work is done; later work runs on the
    /// caller.
    pub(crate) fn stop(&self) {
        for h in &self.helpers {
            lock(&h.queue).open = false;
            h.changed.notify_all();
        }
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
    use std::sync::mpsc::channel;

    /// Waits until helper `way` has run everything queued before now.
    fn drain(f: &Fanout, way: usize) {
        let helper = &f.helpers[way - 1];
        let mut q = lock(&helper.queue);
        while !q.items.is_empty() || q.running.is_some() {
            q = helper.changed.wait(q).unwrap();
        }
    }

    #[test]
    fn work_runs_on_the_helpers_in_order_and_on_the_caller_after_stop() {
        let f = Fanout::new(2);
        assert_eq!(f.ways(), 3);
        let seen = Arc::new(Mutex::new(Vec::new()));
        for k in 0..100 {
            let s = seen.clone();
            // One key: below the cap every job is written, in order.
            f.run_on(1, 3, Box::new(move || lock(&s).push(k)));
        }
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let (tx, rx) = channel();
        f.run_on(
            2,
            0,
            Box::new(move || {
                d.fetch_add(1, SeqCst);
                tx.send(std::thread::current().name().map(String::from))
                    .unwrap();
            }),
        );
        assert_eq!(rx.recv().unwrap().as_deref(), Some("fanout-1"));
        drain(&f, 1);
        assert_eq!(*lock(&seen), (0..100).collect::<Vec<_>>());
        f.stop();
        let here = std::thread::current().id();
        let (tx, rx) = channel();
        f.run_on(
            1,
            7,
            Box::new(move || tx.send(std::thread::current().id()).unwrap()),
        );
        assert_eq!(rx.recv().unwrap(), here, "after stop the caller runs it");
        assert_eq!(done.load(SeqCst), 1);
    }

    #[test]
    fn a_full_queue_loses_no_newest_job_and_keeps_each_miners_jobs_in_order() {
        const CAP: usize = 4;
        const KEYS: u64 = 10;
        const JOBS: u64 = 6;
        let f = Fanout::with_cap(1, CAP);
        // The helper is busy with the first job of key 0.
        let written = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
        let w = written.clone();
        let (release, gate) = channel::<()>();
        let (started, running) = channel();
        f.run_on(
            1,
            0,
            Box::new(move || {
                started.send(()).unwrap();
                gate.recv().ok();
                lock(&w).push((0, 0));
            }),
        );
        running.recv().unwrap();
        // Keys 1.. get jobs 1..JOBS while the helper is busy; key 0's newest comes last.
        for job in 1..JOBS {
            for key in 1..KEYS {
                let w = written.clone();
                f.run_on(1, key, Box::new(move || lock(&w).push((key, job))));
                assert!(lock(&f.helpers[0].queue).items.len() <= CAP);
            }
        }
        // Keys 1..=4 are queued (superseded up to the newest job); 5.. ran on the caller.
        let (superseded, on_caller) = f.counts();
        assert_eq!(superseded, CAP as u64 * (JOBS - 2));
        assert_eq!(on_caller, (KEYS - 1 - CAP as u64) * (JOBS - 1));
        let w2 = written.clone();
        let f = Arc::new(f);
        let f2 = f.clone();
        let late = std::thread::spawn(move || {
            // Queue full, key 0 running on the helper: waits for it, then runs here.
            f2.run_on(1, 0, Box::new(move || lock(&w2).push((0, JOBS - 1))));
        });
        release.send(()).unwrap();
        late.join().unwrap();
        drain(&f, 1);
        let written = lock(&written).clone();
        for key in 0..KEYS {
            let jobs: Vec<u64> = written
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|&(_, j)| j)
                .collect();
            assert_eq!(jobs.last(), Some(&(JOBS - 1)), "key {key}: {jobs:?}");
            assert!(jobs.windows(2).all(|p| p[0] < p[1]), "key {key}: {jobs:?}");
        }
    }

    #[test]
    fn below_the_cap_a_busy_helper_gets_every_job_queued() {
        let f = Fanout::with_cap(1, 8);
        let (release, gate) = channel::<()>();
        let (started, running) = channel();
        f.run_on(
            1,
            9,
            Box::new(move || {
                started.send(()).unwrap();
                gate.recv().ok();
            }),
        );
        running.recv().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for job in 0..8 {
            let s = seen.clone();
            f.run_on(1, 1, Box::new(move || lock(&s).push(job)));
        }
        assert_eq!(f.counts(), (0, 0), "all queued, none superseded");
        release.send(()).unwrap();
        drain(&f, 1);
        assert_eq!(*lock(&seen), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_slot_always_has_the_same_way() {
        assert_eq!(way_of(0, 2), 0);
        assert_eq!(way_of(5, 2), 1);
        assert_eq!(way_of(5, 1), 0);
        assert_eq!(way_of(7, 0), 0);
    }
}
