//! Read-only views of a running proxy for monitoring: the figures behind the HTTP API and
//! the Prometheus metrics (go-proxy RFC §12, §13, §16).
//!
//! Every view that depends on time takes the moment to report for (`at`), so a caller with
//! its own clock (a test) gets figures for that moment; the proxy's counters themselves are
//! recorded in real time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;

use stratum_session::MinerSession;

use crate::config::Protocol;
use crate::journal::Notice;
use crate::miner::{Miner, MinerDifficulty, MinerId, MinerPhase, MinerProtocol};
use crate::splitter::UpstreamInfo;
use crate::stats::{LatencyHistogram, StatsSummary};
use crate::workers::WorkersSnapshot;
use crate::{lock, Monitor, Shared};

/// One miner connection at one moment (`GET /1/miners`). Its password is not included.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerSnapshot {
    /// Connection id.
    pub id: MinerId,
    /// Remote address and port.
    pub peer: SocketAddr,
    /// Bytes sent to the miner.
    pub tx: u64,
    /// Bytes received from the miner.
    pub rx: u64,
    /// Lifecycle state (the API's `state`: 0..3).
    pub state: MinerPhase,
    /// Difficulty of the last job sent; 0 before the first. CryptoNote's is an integer, a
    /// Stratum V1 miner's a fraction of Bitcoin difficulty 1 or more (0.5 stays 0.5).
    pub diff: MinerDifficulty,
    /// The stratum family the miner speaks (its bind's).
    pub protocol: Protocol,
    /// Login (wallet) as sent, `None` before login.
    pub user: Option<String>,
    /// Rig id, when the miner sent one.
    pub rig_id: Option<String>,
    /// Agent string, `None` before login.
    pub agent: Option<String>,
}

impl Monitor {
    /// When the proxy started, on tokio's clock (the proxy's one clock: a paused test clock
    /// moves it too): the epoch of its statistics (uptime, average share time and all-time
    /// hashrate count from it).
    pub fn started(&self) -> Instant {
        self.driver().events().epoch
    }

    /// Share results, best shares, latency and hashrates (RFC §12 `Summary()`) as of `at`
    /// (`tokio::time::Instant::now()` for the live figures).
    pub fn summary_at(&self, at: Instant) -> StatsSummary {
        let events = self.driver().events();
        events.stats.summary(events.secs_at(at))
    }

    /// Every worker record (RFC §13), in first-seen order (a new record may take the place
    /// of a removed one), with hashrates in H/s as of `at` (an instant no earlier than
    /// [`Monitor::started`]).
    pub fn workers_at(&self, at: Instant) -> WorkersSnapshot {
        let events = self.driver().events();
        events
            .workers
            .snapshot(events.secs_at(at), events.epoch_unix)
    }

    /// Number of the family's worker records.
    pub fn worker_count(&self) -> usize {
        self.driver().events().workers.len()
    }

    /// Every miner connection of every family, by id.
    pub fn miners(&self) -> Vec<MinerSnapshot> {
        let mut v: Vec<MinerSnapshot> = self
            .drivers
            .list
            .iter()
            .flat_map(|d| d.miner_snapshots())
            .collect();
        v.sort_by_key(|m| m.id);
        v
    }

    /// Every upstream connection of every family, in opening order.
    pub fn upstream_details(&self) -> Vec<UpstreamInfo> {
        self.drivers.upstream_details()
    }

    /// The latest notable events (at most [`crate::JOURNAL_CAPACITY`]), oldest first: shares
    /// refused (by a pool or the proxy; stale job ids are not noted), bans, upstreams lost and
    /// logged in again. Upstream changes are seen by the 1 s tick.
    pub fn notices(&self) -> Vec<Notice> {
        self.driver().events().journal.notices()
    }

    /// Hashes (sums of accepted share difficulties) per upstream id ([`UpstreamInfo::id`])
    /// since the upstream opened, for the upstreams that exist: a share counts to the
    /// upstream that carried it (or, accepted by the proxy itself with `custom-diff-stats`,
    /// to its miner's upstream) the moment it is accepted.
    pub fn upstream_hashes(&self) -> HashMap<u64, u64> {
        self.drivers
            .list
            .iter()
            .flat_map(|d| d.upstream_hashes())
            .collect()
    }

    /// The pool reply latency histogram of the family's pool-accepted shares.
    pub fn latency_histogram(&self) -> LatencyHistogram {
        self.driver().events().stats.latency_histogram()
    }
}

fn snapshot<F: MinerProtocol>(m: &Miner<F>) -> MinerSnapshot {
    let st = m.state();
    let login = st.login.as_deref();
    MinerSnapshot {
        id: m.id,
        peer: m.peer,
        tx: m.tx.load(Relaxed),
        rx: m.rx.load(Relaxed),
        state: st.session.phase(),
        diff: F::difficulty(&st.session),
        protocol: F::PROTOCOL,
        user: login.map(|l| l.user.to_string()),
        rig_id: login.and_then(|l| l.rig_id.as_deref().map(String::from)),
        agent: login.map(|l| l.agent.to_string()),
    }
}

impl<F: MinerProtocol> Shared<F> {
    /// Every miner connection, unsorted.
    pub(crate) fn miner_snapshots(&self) -> Vec<MinerSnapshot> {
        self.live_miners().iter().map(|m| snapshot(m)).collect()
    }

    /// The connected miners (a copy of the list; no lock is kept).
    pub(crate) fn live_miners(&self) -> Vec<Arc<Miner<F>>> {
        lock(&self.miners).values().cloned().collect()
    }

    /// The connected miners for which `f` is true (`f` runs under the registry lock: keep it
    /// short and lock-free of the registry).
    pub(crate) fn miners_where(&self, f: impl Fn(&Miner<F>) -> bool) -> Vec<Arc<Miner<F>>> {
        lock(&self.miners)
            .values()
            .filter(|m| f(m))
            .cloned()
            .collect()
    }

    /// After a `workers` mode change, counts the connected miners under their new worker
    /// names. Called every second by the tick loop; cheap when there is nothing to do.
    pub(crate) fn resync_workers(&self) {
        let workers = &self.events.workers;
        if workers.needs_resync() {
            workers.resync(&self.live_miners(), self.events.now());
        }
    }
}
