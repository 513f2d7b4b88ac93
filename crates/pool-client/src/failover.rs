//! The failover loop of RFC §10.2.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    daemon, stratum, Command, PoolSet, SessionCtx, SessionEnd, ShareError, UpstreamListener,
    UpstreamState,
};

pub(crate) struct Failover {
    pub(crate) pools: watch::Receiver<Arc<PoolSet>>,
    pub(crate) listener: Arc<dyn UpstreamListener>,
    pub(crate) cancel: CancellationToken,
    pub(crate) cmds: mpsc::Receiver<Command>,
    pub(crate) direct: Arc<crate::direct::Direct>,
    pub(crate) state: Arc<AtomicU8>,
    pub(crate) session: u64,
}

/// Indexes of the enabled entries, in list order.
fn enabled(set: &PoolSet) -> Vec<usize> {
    (0..set.pools.len())
        .filter(|i| set.pools[*i].enabled)
        .collect()
}

/// Whether moving from `old` to `new` changes the pool at `index` or any enabled pool
/// before it: then the connection to `index` is no longer the one the list asks for.
fn touches(old: &PoolSet, new: &PoolSet, index: usize) -> bool {
    let upto = |set: &PoolSet| -> Vec<_> {
        set.pools
            .iter()
            .enumerate()
            .filter(|(i, p)| p.enabled && *i <= index)
            .map(|(_, p)| p.clone())
            .collect()
    };
    let before = upto(old);
    let after: Vec<_> = new
        .pools
        .iter()
        .filter(|p| p.enabled)
        .take(before.len())
        .cloned()
        .collect();
    before != after
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

    /// One connection attempt at `set.pools[index]`, run until it ends. A pool-list change
    /// that [`touches`] this pool ends it early (`Ended`), after its shares were answered.
    async fn attempt(&mut self, set: &PoolSet, index: usize) -> SessionEnd {
        let pool = &set.pools[index];
        let session_cancel = self.cancel.child_token();
        let mut ctx = SessionCtx {
            pool,
            index,
            options: &set.options,
            cmds: &mut self.cmds,
            direct: &self.direct,
            listener: self.listener.as_ref(),
            cancel: &session_cancel,
            session: &mut self.session,
            state: &self.state,
        };
        let daemon = pool.daemon;
        let run = async move {
            if daemon {
                daemon::run_session(&mut ctx).await
            } else {
                stratum::run_session(&mut ctx).await
            }
        };
        tokio::pin!(run);
        let pools = &mut self.pools;
        let mut watching = true;
        let mut replaced = false;
        let end = loop {
            tokio::select! {
                end = &mut run => break end,
                changed = pools.changed(), if watching && !replaced => {
                    if changed.is_err() {
                        watching = false;
                    } else if touches(set, &pools.borrow_and_update(), index) {
                        tracing::info!(pool = %pool.url, "pool list changed; reconnecting");
                        replaced = true;
                        session_cancel.cancel();
                    }
                }
            }
        };
        match end {
            SessionEnd::Cancelled if replaced && !self.cancel.is_cancelled() => {
                SessionEnd::Ended("pool list changed".into())
            }
            other => other,
        }
    }

    pub(crate) async fn run(mut self) {
        'list: while !self.cancel.is_cancelled() {
            let set = self.pools.borrow_and_update().clone();
            let attempts = set.options.retries.max(1);
            let order = enabled(&set);
            self.set_state(UpstreamState::Connecting);
            for &index in &order {
                for attempt in 0..attempts {
                    if attempt > 0 && !self.pause(set.options.retry_pause).await {
                        break 'list;
                    }
                    match self.attempt(&set, index).await {
                        SessionEnd::Cancelled => break 'list,
                        SessionEnd::NeverConnected(why) => {
                            let url = &set.pools[index].url;
                            tracing::warn!(pool = %url, attempt = attempt + 1, "connect failed: {why}");
                        }
                        SessionEnd::Ended(why) => {
                            let url = &set.pools[index].url;
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
                    if self.pools.has_changed().unwrap_or(false) {
                        // A new list while failing: walk the new one from its primary.
                        continue 'list;
                    }
                }
            }
            self.set_state(UpstreamState::Error);
            if order.is_empty() {
                tracing::error!("no enabled pool in the pool list");
            } else {
                tracing::error!(
                    "every pool failed; retrying in {:?}",
                    set.options.retry_pause
                );
            }
            if !self.pause(set.options.retry_pause).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FailoverOptions, PoolConfig};

    fn set(urls: &[(&str, bool)]) -> PoolSet {
        PoolSet {
            pools: urls
                .iter()
                .map(|(u, enabled)| PoolConfig {
                    url: (*u).into(),
                    enabled: *enabled,
                    ..PoolConfig::default()
                })
                .collect(),
            options: FailoverOptions::default(),
        }
    }

    #[test]
    fn only_changes_at_or_before_the_current_pool_touch_it() {
        let old = set(&[("a:1", true), ("b:1", true), ("c:1", true)]);
        // Connected to b (index 1).
        assert!(!touches(
            &old,
            &set(&[("a:1", true), ("b:1", true), ("z:1", true)]),
            1
        ));
        assert!(!touches(&old, &set(&[("a:1", true), ("b:1", true)]), 1));
        assert!(touches(
            &old,
            &set(&[("x:1", true), ("b:1", true), ("c:1", true)]),
            1
        ));
        assert!(touches(&old, &set(&[("a:1", true), ("y:1", true)]), 1));
        assert!(touches(&old, &set(&[("b:1", true)]), 1), "a new primary");
        // Disabling the pool in use, or adding a pool before it, touches it.
        assert!(touches(
            &old,
            &set(&[("a:1", true), ("b:1", false), ("c:1", true)]),
            1
        ));
        assert!(touches(
            &old,
            &set(&[("n:1", true), ("a:1", true), ("b:1", true)]),
            1
        ));
        // A disabled entry at the front changes nothing.
        assert!(!touches(
            &old,
            &set(&[("q:1", false), ("a:1", true), ("b:1", true)]),
            1
        ));
    }
}
