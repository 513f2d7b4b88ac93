//! The pool lines of the proxy's log, in the shape of xmrig-proxy's so that log parsers
//! written for it keep working (issue 13 item 5). Each upstream has a number (`0001`, as
//! xmrig-proxy numbers its mappers), and logs:
//!
//! | when | line (level) |
//! |---|---|
//! | logged in to a pool | `0001 use pool HOST:PORT` (`use daemon` for a daemon), then ` TLS` and ` via socks5 HOST:PORT` when they apply (INFO) |
//! | a new job | `0001 new job from HOST:PORT diff N algo A height H` (INFO); `algo -` and `height 0` when the pool names none |
//! | the session ended | `0001 pool HOST:PORT disconnected` (WARN); the reason is on the line before it |
//!
//! [`Logged`] wraps the listener of an upstream: these lines come from what the upstream
//! reports, whatever kind of pool it talks to.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use stratum_proto::Job;
use tokio::sync::watch;

use crate::monero_block::{BlockError, BlockWork};
use crate::{PoolSet, ShareError, UpstreamListener, UpstreamState};

/// The number of the next upstream.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// No pool logged in.
const NONE: usize = usize::MAX;

/// An [`UpstreamListener`] that logs the pool lines, then passes every report on.
pub(crate) struct Logged {
    inner: Arc<dyn UpstreamListener>,
    id: u64,
    pools: watch::Receiver<Arc<PoolSet>>,
    /// Index of the pool logged in to, or [`NONE`].
    current: AtomicUsize,
}

impl Logged {
    /// Wraps `inner` for an upstream working through the list in `pools`.
    pub(crate) fn new(
        inner: Arc<dyn UpstreamListener>,
        pools: watch::Receiver<Arc<PoolSet>>,
    ) -> Self {
        Self {
            inner,
            id: NEXT_ID.fetch_add(1, Relaxed),
            pools,
            current: AtomicUsize::new(NONE),
        }
    }

    /// `host:port` of pool `index` of the current list.
    fn addr(&self, index: usize) -> Option<String> {
        let set = self.pools.borrow();
        set.pools.get(index).map(|p| p.host_port().to_string())
    }
}

/// The `use pool` line of pool `index` of `set`.
fn use_line(id: u64, set: &PoolSet, index: usize) -> Option<String> {
    let p = set.pools.get(index)?;
    let mut line = format!(
        "{id:04} use {} {}",
        if p.daemon { "daemon" } else { "pool" },
        p.host_port()
    );
    if crate::tls::wants_tls(p) {
        line.push_str(" TLS");
    }
    if let Some(s) = &p.socks5 {
        line.push_str(" via socks5 ");
        line.push_str(s);
    }
    Some(line)
}

/// The `new job` line.
fn job_line(id: u64, addr: &str, job: &Job) -> String {
    format!(
        "{id:04} new job from {addr} diff {} algo {} height {}",
        job.difficulty(),
        job.algo.as_deref().unwrap_or("-"),
        job.height.unwrap_or(0)
    )
}

impl Logged {
    /// Logs the `new job` line of `job`.
    fn log_job(&self, job: &Job) {
        let index = self.current.load(Relaxed);
        if let Some(addr) = (index != NONE).then(|| self.addr(index)).flatten() {
            tracing::info!("{}", job_line(self.id, &addr, job));
        }
    }
}

impl UpstreamListener for Logged {
    fn on_job(&self, job: Job, session: u64) {
        self.log_job(&job);
        self.inner.on_job(job, session);
    }

    fn on_daemon_job(&self, job: Job, work: Result<Arc<BlockWork>, BlockError>, session: u64) {
        self.log_job(&job);
        self.inner.on_daemon_job(job, work, session);
    }

    fn on_result(&self, seq: u64, result: Result<(), ShareError>) {
        self.inner.on_result(seq, result);
    }

    fn on_result_at(&self, seq: u64, result: Result<(), ShareError>, at: tokio::time::Instant) {
        self.inner.on_result_at(seq, result, at);
    }

    fn on_state(&self, state: UpstreamState, pool: Option<usize>) {
        match (state, pool) {
            (UpstreamState::Active, Some(index)) => {
                self.current.store(index, Relaxed);
                if let Some(line) = use_line(self.id, &self.pools.borrow(), index) {
                    tracing::info!("{line}");
                }
            }
            _ => {
                let was = self.current.swap(NONE, Relaxed);
                if let Some(addr) = (was != NONE).then(|| self.addr(was)).flatten() {
                    tracing::warn!("{:04} pool {addr} disconnected", self.id);
                }
            }
        }
        self.inner.on_state(state, pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FailoverOptions, PoolConfig};

    #[test]
    fn lines_have_xmrig_proxys_shape() {
        let set = PoolSet {
            pools: vec![
                PoolConfig {
                    url: "stratum+ssl://pool.example:443".into(),
                    socks5: Some("127.0.0.1:9050".into()),
                    ..PoolConfig::default()
                },
                PoolConfig {
                    url: "127.0.0.1:18081".into(),
                    daemon: true,
                    ..PoolConfig::default()
                },
            ],
            options: FailoverOptions::default(),
        };
        assert_eq!(
            use_line(7, &set, 0).unwrap(),
            "0007 use pool pool.example:443 TLS via socks5 127.0.0.1:9050"
        );
        assert_eq!(
            use_line(12, &set, 1).unwrap(),
            "0012 use daemon 127.0.0.1:18081"
        );
        assert_eq!(use_line(1, &set, 2), None);
        let mut job = Job {
            blob: "00".repeat(76),
            job_id: "j".into(),
            target: "b88d0600".into(),
            algo: Some("rx/0".into()),
            height: Some(3_000_000),
            seed_hash: None,
        };
        assert_eq!(
            job_line(1, "pool.example:443", &job),
            format!(
                "0001 new job from pool.example:443 diff {} algo rx/0 height 3000000",
                job.difficulty()
            )
        );
        job.algo = None;
        job.height = None;
        assert!(job_line(1, "p:1", &job).ends_with(" algo - height 0"));
    }
}
