//! Shared by the upstream tests: a listener that records what an [`Upstream`] reports, and a
//! harness around one upstream.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use pool_client::monero_block::{BlockError, BlockWork};
use pool_client::{
    FailoverOptions, PoolConfig, PoolList, Share, ShareError, Upstream, UpstreamListener,
    UpstreamState,
};
use stratum_proto::Job;
use test_support::miner::result_for_difficulty;
use test_support::mock_pool::MockPool;
use tokio_util::sync::CancellationToken;

mod recording;
// Not every test file uses every one.
#[allow(unused_imports)]
pub use recording::{bounded, Recording, Reports, TEST_TIMEOUT, WAIT};

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

impl Reports for Seen {
    type Job = Job;
    type Outcome = Result<(), ShareError>;
    fn jobs(&self) -> &[(Job, u64)] {
        &self.jobs
    }
    fn results(&self) -> &[(u64, Self::Outcome)] {
        &self.results
    }
    fn states(&self) -> &[(UpstreamState, Option<usize>)] {
        &self.states
    }
}

/// An [`UpstreamListener`] that records everything and wakes waiters.
pub type Recorder = Recording<Seen>;

impl Recorder {
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
        self.upstream
            .submit(self.next_seq, share, tokio::time::Instant::now())?;
        Ok(self.next_seq)
    }

    /// Cancels the upstream and waits until it reports `Stopped`.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.recorder.state(UpstreamState::Stopped).await;
        assert_eq!(self.upstream.state(), UpstreamState::Stopped);
    }
}

/// A plain entry for `pool`, no user.
pub fn plain_entry(pool: &MockPool) -> PoolConfig {
    PoolConfig {
        url: pool.addr().to_string(),
        ..PoolConfig::default()
    }
}

/// Checks that the upstream of `h` logged in to its first entry, `pool` (user `WALLET`,
/// its job `job000001`).
pub async fn logged_in_to_first(h: &Harness, pool: &MockPool) {
    assert_eq!(h.recorder.job(0).await.0.job_id, "job000001");
    assert_eq!(h.recorder.state(UpstreamState::Active).await, Some(0));
    assert_eq!(pool.received("login")[0].params["login"], "WALLET");
}

/// Submits the first share of `job_id` (nonce `01020304`, meeting difficulty 500) and checks
/// that `pool` got it and that its OK came back.
pub async fn first_share_goes_through(h: &mut Harness, pool: &MockPool, job_id: &str) {
    let seq = h.submit(job_id, "01020304", &result_for_difficulty(500));
    assert_eq!(h.recorder.result(seq).await, Ok(()));
    assert_eq!(pool.received("submit")[0].params["nonce"], "01020304");
}
