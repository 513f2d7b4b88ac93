//! What the upstream tests of both families share: a listener's record of reports behind a
//! lock, waiting for something to appear in it, and the time limits.

#![allow(dead_code, unreachable_pub)]

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pool_client::UpstreamState;
use tokio::sync::Notify;

/// The longest any test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for one expected report.
pub const WAIT: Duration = Duration::from_secs(30);

/// What a family's record holds that the waits below look in.
pub trait Reports: Debug {
    /// A job as the family's listener gets it.
    type Job: Clone;
    /// A share's outcome as the family's listener gets it.
    type Outcome: Clone;
    /// Every job with its session number, in order.
    fn jobs(&self) -> &[(Self::Job, u64)];
    /// Every result, by sequence number, in order of arrival.
    fn results(&self) -> &[(u64, Self::Outcome)];
    /// Every state change.
    fn states(&self) -> &[(UpstreamState, Option<usize>)];
}

/// A listener's record `S` (each family's `Seen`), waking waiters on every change.
#[derive(Debug, Default)]
pub struct Recording<S> {
    seen: Mutex<S>,
    changed: Notify,
}

impl<S: Debug> Recording<S> {
    pub fn seen(&self) -> MutexGuard<'_, S> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the record with `f` and wakes the waiters.
    pub fn record(&self, f: impl FnOnce(&mut S)) {
        f(&mut self.seen());
        self.changed.notify_waiters();
    }

    /// Waits until `f` finds something in what was recorded.
    pub async fn wait_for<T>(&self, what: &str, f: impl Fn(&S) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = f(&self.seen()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no {what} within {WAIT:?}; seen: {:#?}", self.seen());
            }
        }
    }
}

impl<S: Reports> Recording<S> {
    /// The `n`th job (0-based) and its session.
    pub async fn job(&self, n: usize) -> (S::Job, u64) {
        self.wait_for(&format!("job #{n}"), |s| s.jobs().get(n).cloned())
            .await
    }

    /// The result of `seq`, checking that it came exactly once.
    pub async fn result(&self, seq: u64) -> S::Outcome {
        let r = self
            .wait_for(&format!("result of share {seq}"), |s| {
                s.results()
                    .iter()
                    .find(|(q, _)| *q == seq)
                    .map(|(_, r)| r.clone())
            })
            .await;
        let count = self.answers(seq);
        assert_eq!(count, 1, "share {seq} answered {count} times");
        r
    }

    /// How many times `seq` was answered.
    pub fn answers(&self, seq: u64) -> usize {
        self.seen()
            .results()
            .iter()
            .filter(|(q, _)| *q == seq)
            .count()
    }

    /// Waits for the first report of `state`; the pool index it came with.
    pub async fn state(&self, state: UpstreamState) -> Option<usize> {
        self.wait_for(&format!("state {state:?}"), |s| {
            s.states()
                .iter()
                .find(|(st, _)| *st == state)
                .map(|(_, p)| *p)
        })
        .await
    }

    /// Waits until the upstream is logged in to pool `index`.
    pub async fn active_on(&self, index: usize) {
        self.wait_for(&format!("Active on pool {index}"), |s| {
            s.states()
                .iter()
                .any(|(st, p)| *st == UpstreamState::Active && *p == Some(index))
                .then_some(())
        })
        .await;
    }
}

/// Runs a test body under [`TEST_TIMEOUT`].
pub async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test ran over its time limit");
}
