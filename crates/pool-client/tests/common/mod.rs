//! Shared by the upstream tests: a listener that records what an [`Upstream`] reports, and a
//! harness around one upstream.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pool_client::monero_block::{BlockError, BlockWork};
use pool_client::{
    FailoverOptions, PoolConfig, PoolList, Share, ShareError, Upstream, UpstreamListener,
    UpstreamState,
};
use stratum_proto::Job;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The longest any test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for one expected report.
pub const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Seen {
    /// Every job with its session number, in order.
    pub jobs: Vec<(Job, u64)>,
    /// The split block template of every daemon job, by job id.
    pub works: Vec<(String, Result<Arc<BlockWork>, BlockError>)>,
    /// Every result, by sequence number, in order of arrival.
    pub results: Vec<(u64, Result<(), ShareError>)>,
    /// Every state change.
    pub states: Vec<(UpstreamState, Option<usize>)>,
}

/// An [`UpstreamListener`] that records everything and wakes waiters.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Seen>,
    changed: Notify,
}

impl Recorder {
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen());
        self.changed.notify_waiters();
    }

    /// Waits until `f` finds something in what was recorded.
    pub async fn wait_for<T>(&self, what: &str, f: impl Fn(&Seen) -> Option<T>) -> T {
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

    /// The `n`th job (0-based).
    pub async fn job(&self, n: usize) -> (Job, u64) {
        self.wait_for(&format!("job #{n}"), |s| s.jobs.get(n).cloned())
            .await
    }

    /// The first job for a block at `height`.
    pub async fn job_at_height(&self, height: u64) -> (Job, u64) {
        self.wait_for(&format!("job at height {height}"), |s| {
            s.jobs
                .iter()
                .find(|(j, _)| j.height == Some(height))
                .cloned()
        })
        .await
    }

    /// The result of `seq`, checking that it came exactly once.
    pub async fn result(&self, seq: u64) -> Result<(), ShareError> {
        let r = self
            .wait_for(&format!("result of share {seq}"), |s| {
                s.results
                    .iter()
                    .find(|(q, _)| *q == seq)
                    .map(|(_, r)| r.clone())
            })
            .await;
        let count = self
            .seen()
            .results
            .iter()
            .filter(|(q, _)| *q == seq)
            .count();
        assert_eq!(count, 1, "share {seq} answered {count} times");
        r
    }

    pub async fn state(&self, state: UpstreamState) -> Option<usize> {
        self.wait_for(&format!("state {state:?}"), |s| {
            s.states
                .iter()
                .find(|(st, _)| *st == state)
                .map(|(_, p)| *p)
        })
        .await
    }
}

impl UpstreamListener for Recorder {
    fn on_job(&self, job: Job, session: u64) {
        self.record(|s| s.jobs.push((job, session)));
    }

    fn on_daemon_job(&self, job: Job, work: Result<Arc<BlockWork>, BlockError>, session: u64) {
        self.record(|s| {
            s.works.push((job.job_id.clone(), work));
            s.jobs.push((job, session));
        });
    }

    fn on_result(&self, seq: u64, result: Result<(), ShareError>) {
        self.record(|s| s.results.push((seq, result)));
    }

    fn on_state(&self, state: UpstreamState, pool: Option<usize>) {
        self.record(|s| s.states.push((state, pool)));
    }
}

/// An upstream with the recorder it reports to.
pub struct Harness {
    pub upstream: Upstream,
    pub recorder: Arc<Recorder>,
    pub cancel: CancellationToken,
    next_seq: u64,
}

impl Harness {
    pub fn spawn(pools: Vec<PoolConfig>, options: FailoverOptions) -> Self {
        let recorder = Arc::new(Recorder::default());
        let cancel = CancellationToken::new();
        let upstream = Upstream::spawn(pools, options, recorder.clone(), cancel.clone());
        Self {
            upstream,
            recorder,
            cancel,
            next_seq: 0,
        }
    }

    /// An upstream that follows the shared `list`.
    pub fn spawn_on(list: &PoolList) -> Self {
        let recorder = Arc::new(Recorder::default());
        let cancel = CancellationToken::new();
        let upstream = Upstream::spawn_on(list, recorder.clone(), cancel.clone());
        Self {
            upstream,
            recorder,
            cancel,
            next_seq: 0,
        }
    }

    /// The session of the latest job reported (0 before any).
    pub fn session(&self) -> u64 {
        self.recorder.seen().jobs.last().map_or(0, |(_, s)| *s)
    }

    /// Submits a share for the latest session; its sequence number.
    pub fn submit(&mut self, job_id: &str, nonce: &str, result: &str) -> u64 {
        let session = self.session();
        self.submit_in(session, job_id, nonce, result)
            .expect("upstream takes the share")
    }

    /// Submits a share for `session`; its sequence number, or why it was refused at once.
    pub fn submit_in(
        &mut self,
        session: u64,
        job_id: &str,
        nonce: &str,
        result: &str,
    ) -> Result<u64, ShareError> {
        self.submit_share(session, job_id, nonce, result, None)
    }

    /// Submits a share for `session` with a miner's `extra_nonce` (`extra_nonce` mode).
    pub fn submit_share(
        &mut self,
        session: u64,
        job_id: &str,
        nonce: &str,
        result: &str,
        extra_nonce: Option<u32>,
    ) -> Result<u64, ShareError> {
        self.next_seq += 1;
        let share = Share {
            session,
            job_id: job_id.into(),
            nonce: nonce.into(),
            result: result.into(),
            algo: None,
            extra_nonce,
        };
        self.upstream.submit(self.next_seq, share)?;
        Ok(self.next_seq)
    }

    /// Cancels the upstream and waits until it reports `Stopped`.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.recorder.state(UpstreamState::Stopped).await;
        assert_eq!(self.upstream.state(), UpstreamState::Stopped);
    }
}

/// Runs a test body under [`TEST_TIMEOUT`].
pub async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test ran over its time limit");
}
