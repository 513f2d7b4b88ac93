//! The failover loop of RFC §10.2.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    daemon, stratum, Command, FailoverOptions, PoolConfig, SessionCtx, SessionEnd, ShareError,
    UpstreamListener, UpstreamState,
};

pub(crate) struct Failover {
    pub(crate) pools: Vec<PoolConfig>,
    pub(crate) options: FailoverOptions,
    pub(crate) listener: Arc<dyn UpstreamListener>,
    pub(crate) cancel: CancellationToken,
    pub(crate) cmds: mpsc::Receiver<Command>,
    pub(crate) state: Arc<AtomicU8>,
    pub(crate) session: u64,
}

impl Failover {
    fn set_state(&self, state: UpstreamState) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.listener.on_state(state, None);
    }

    /// Waits `pause` while answering every submit that arrives with `NotConnected`.
    /// Returns false when cancelled.
    async fn pause(&mut self, pause: Duration) -> bool {
        let sleep = tokio::time::sleep(pause);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return false,
                () = &mut sleep => return true,
                cmd = self.cmds.recv() => match cmd {
                    Some(Command::Submit { seq, .. }) => {
                        self.listener.on_result(seq, Err(ShareError::NotConnected));
                    }
                    None => return false,
                },
            }
        }
    }

    async fn attempt(&mut self, index: usize) -> SessionEnd {
        let pool = self.pools[index].clone();
        let mut ctx = SessionCtx {
            pool: &pool,
            index,
            options: &self.options,
            cmds: &mut self.cmds,
            listener: self.listener.as_ref(),
            cancel: &self.cancel,
            session: &mut self.session,
            state: &self.state,
        };
        if pool.daemon {
            daemon::run_session(&mut ctx).await
        } else {
            stratum::run_session(&mut ctx).await
        }
    }

    pub(crate) async fn run(mut self) {
        let enabled: Vec<usize> = (0..self.pools.len())
            .filter(|i| self.pools[*i].enabled)
            .collect();
        let attempts = self.options.retries.max(1);
        'list: while !self.cancel.is_cancelled() {
            self.set_state(UpstreamState::Connecting);
            for &index in &enabled {
                for attempt in 0..attempts {
                    if attempt > 0 && !self.pause(self.options.retry_pause).await {
                        break 'list;
                    }
                    let url = self.pools[index].url.clone();
                    match self.attempt(index).await {
                        SessionEnd::Cancelled => break 'list,
                        SessionEnd::NeverConnected(why) => {
                            tracing::warn!(pool = %url, attempt = attempt + 1, "connect failed: {why}");
                        }
                        SessionEnd::Ended(why) => {
                            tracing::warn!(pool = %url, "pool connection ended: {why}");
                            // Start again from the primary, after a short breath so a pool
                            // that drops every login does not make us spin.
                            self.set_state(UpstreamState::Connecting);
                            if !self.pause(Duration::from_millis(100)).await {
                                break 'list;
                            }
                            continue 'list;
                        }
                    }
                }
            }
            self.set_state(UpstreamState::Error);
            if enabled.is_empty() {
                tracing::error!("no enabled pool in the pool list");
            } else {
                tracing::error!(
                    "every pool failed; retrying in {:?}",
                    self.options.retry_pause
                );
            }
            if !self.pause(self.options.retry_pause).await {
                break;
            }
        }
        self.cmds.close();
        while let Some(Command::Submit { seq, .. }) = self.cmds.recv().await {
            self.listener.on_result(seq, Err(ShareError::Disconnected));
        }
        self.set_state(UpstreamState::Stopped);
    }
}
