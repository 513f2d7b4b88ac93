//! The failover loop of RFC §10.2, and the make-before-break switch of a config reload.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    daemon, stratum, Command, PoolSet, SessionCtx, SessionEnd, ShareError, UpstreamListener,
    UpstreamState,
};

pub(crate) struct Failover {
    pub(crate) pools: watch::Receiver<Arc<PoolSet>>,
    pub(crate) listener: Arc<dyn UpstreamListener>,
    pub(crate) cancel: CancellationToken,
    pub(crate) cmds: crate::queue::Receiver<Command>,
    pub(crate) direct: Arc<crate::direct::Direct>,
    pub(crate) state: Arc<AtomicU8>,
    pub(crate) session: u64,
    /// A new pool list's session, logged in before the old one closed.
    pub(crate) ready: Option<Box<Ready>>,
}

/// Indexes of the enabled entries, in list order.
fn enabled(set: &PoolSet) -> Vec<usize> {
    (0..set.pools.len())
        .filter(|i| set.pools[*i].enabled)
        .collect()
}

/// Whether moving from `old` to `new` changes the pool at `index` or any enabled pool
/// before it: then the connection to `index` is no longer the one the list asks for.
pub(crate) fn touches(old: &PoolSet, new: &PoolSet, index: usize) -> bool {
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

/// A login to a new pool list under way (see [`preconnect`]).
type Preconnecting = Pin<Box<dyn Future<Output = Option<Box<Ready>>> + Send>>;

/// A session of a new pool list, logged in while the old one still served (a reload).
pub(crate) struct Ready {
    set: Arc<PoolSet>,
    index: usize,
    connected: stratum::Connected,
}

/// Logs in to the first enabled pool of `set` that answers, one attempt each in list order,
/// while the old session keeps serving. `None` when none did, or when the walk reaches a
/// daemon entry (daemons are not logged in ahead: the failover loop takes over).
async fn preconnect(set: Arc<PoolSet>, cancel: CancellationToken) -> Option<Box<Ready>> {
    for index in enabled(&set) {
        let pool = &set.pools[index];
        if pool.daemon {
            return None;
        }
        match stratum::connect(pool, &set.options, &cancel).await {
            Ok(connected) => {
                return Some(Box::new(Ready {
                    set: set.clone(),
                    index,
                    connected,
                }))
            }
            Err(SessionEnd::Cancelled) => return None,
            Err(end) => {
                tracing::warn!(pool = %pool.url, "new pool list: {}", end.reason());
            }
        }
    }
    None
}

impl SessionEnd {
    /// The reason, for the log.
    fn reason(&self) -> String {
        match self {
            Self::NeverConnected(why) | Self::Ended(why) | Self::Dropped(why) => why.clone(),
            Self::Handover(_) => "handed over".into(),
            Self::Replaced => "replaced by the new pool list".into(),
            Self::Cancelled => "cancelled".into(),
        }
    }
}

impl Failover {
    fn set_state(&self, state: UpstreamState) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.listener.on_state(state, None);
    }

    /// Waits `pause` while answering every submit that arrives with `NotConnected`.
    /// Returns false when cancelled.
    async fn pause(&mut self, pause: Duration) -> bool {
        let listener = &self.listener;
        self.cmds
            .pause(&self.cancel, pause, |Command::Submit { seq, .. }| {
                listener.on_result(seq, Err(ShareError::NotConnected));
            })
            .await
    }

    /// One connection attempt at `set.pools[index]` (or a session already logged in there,
    /// `connected`), run until it ends.
    ///
    /// A pool-list change that [`touches`] this pool is made before it breaks: the new list
    /// is logged in to ([`preconnect`]) while this session serves on; then this session
    /// hands over, its connection is drained by a task of its own ([`stratum::drain`]: the
    /// shares in flight get this pool's answers) and the attempt returns `Replaced` with the
    /// new session in `self.ready`. When no pool of the new list can be logged in to, this
    /// session is drained and closed all the same and the attempt returns `Ended`: the loop
    /// walks the new list with its retries and pauses. A daemon session is not drained: it
    /// is closed at once (a submit in its hands is answered `Connection to pool lost`).
    async fn attempt(
        &mut self,
        set: &PoolSet,
        index: usize,
        connected: Option<stratum::Connected>,
    ) -> SessionEnd {
        let pool = &set.pools[index];
        let session_cancel = self.cancel.child_token();
        let handover = CancellationToken::new();
        let daemon = pool.daemon;
        let (end, ready, replaced) = {
            let mut ctx = SessionCtx {
                pool,
                index,
                options: &set.options,
                cmds: &mut self.cmds,
                direct: &self.direct,
                listener: self.listener.as_ref(),
                cancel: &session_cancel,
                handover: &handover,
                session: &mut self.session,
                state: &self.state,
            };
            // Boxed: the task holds the state of the session it runs (in simple mode, one
            // per miner), not room for the largest kind of session.
            let mut run: Pin<Box<dyn Future<Output = SessionEnd> + Send + '_>> = match connected {
                Some(c) => Box::pin(stratum::run_connected(&mut ctx, c)),
                None if daemon => Box::pin(daemon::run_session(&mut ctx)),
                None => Box::pin(stratum::run_session(&mut ctx)),
            };
            let pools = &mut self.pools;
            let mut watching = true;
            let mut replaced = false;
            let mut preconnecting: Option<Preconnecting> = None;
            let mut ready = None;
            let end = loop {
                tokio::select! {
                    end = &mut run => break end,
                    changed = pools.changed(), if watching && !replaced => {
                        if changed.is_err() {
                            watching = false;
                            continue;
                        }
                        let new = pools.borrow_and_update().clone();
                        if !touches(set, &new, index) {
                            // Changed back, or elsewhere: this connection stays.
                            preconnecting = None;
                        } else if daemon {
                            tracing::info!(pool = %pool.url, "pool list changed; reconnecting");
                            replaced = true;
                            session_cancel.cancel();
                        } else {
                            tracing::info!(pool = %pool.url, "pool list changed; logging in to the new list before closing this connection");
                            preconnecting = Some(Box::pin(preconnect(new, self.cancel.child_token())));
                        }
                    }
                    got = async { preconnecting.as_mut().expect("guarded").await }, if preconnecting.is_some() => {
                        preconnecting = None;
                        if got.is_none() {
                            tracing::warn!(pool = %pool.url, "no pool of the new list could be logged in to; closing this connection once drained");
                        }
                        ready = got;
                        replaced = true;
                        handover.cancel();
                    }
                }
            };
            (end, ready, replaced)
        };
        // No session is live until the next login: a share of this one is refused at once.
        self.direct.set_live(0);
        let end = match end {
            SessionEnd::Handover(draining) => {
                tokio::spawn(stratum::drain(
                    draining,
                    self.listener.clone(),
                    set.options.reply_timeout,
                    self.cancel.child_token(),
                ));
                SessionEnd::Ended("pool list changed".into())
            }
            SessionEnd::Cancelled if replaced && !self.cancel.is_cancelled() => {
                SessionEnd::Ended("pool list changed".into())
            }
            other => other,
        };
        // Shares queued for the session that ended are answered now, never replayed into
        // the next one.
        let why = if self.cancel.is_cancelled() {
            ShareError::Disconnected
        } else {
            ShareError::SessionEnded
        };
        while let Ok(Command::Submit { seq, .. }) = self.cmds.try_recv() {
            self.listener.on_result(seq, Err(why.clone()));
        }
        match ready {
            Some(r) if !self.cancel.is_cancelled() => {
                self.ready = Some(r);
                SessionEnd::Replaced
            }
            _ => end,
        }
    }

    pub(crate) async fn run(mut self) {
        'list: while !self.cancel.is_cancelled() {
            if let Some(ready) = self.ready.take() {
                let Ready {
                    set,
                    index,
                    connected,
                } = *ready;
                // The new list's session, logged in before the old one closed.
                match self.attempt(&set, index, Some(connected)).await {
                    SessionEnd::Cancelled => break 'list,
                    SessionEnd::Replaced => continue 'list,
                    end => {
                        tracing::warn!(pool = %set.pools[index].url, "pool connection ended: {}", end.reason());
                        self.set_state(UpstreamState::Connecting);
                        if !self.pause(Duration::from_millis(100)).await {
                            break 'list;
                        }
                        continue 'list;
                    }
                }
            }
            let set = self.pools.borrow_and_update().clone();
            let attempts = set.options.retries.max(1);
            let order = enabled(&set);
            self.set_state(UpstreamState::Connecting);
            for &index in &order {
                for attempt in 0..attempts {
                    if attempt > 0 && !self.pause(set.options.retry_pause).await {
                        break 'list;
                    }
                    match self.attempt(&set, index, None).await {
                        SessionEnd::Cancelled => break 'list,
                        SessionEnd::Replaced => continue 'list,
                        SessionEnd::NeverConnected(why) => {
                            let url = &set.pools[index].url;
                            tracing::warn!(pool = %url, attempt = attempt + 1, "connect failed: {why}");
                        }
                        SessionEnd::Dropped(why) => {
                            // A failed attempt: on to the next one (or the next pool).
                            let url = &set.pools[index].url;
                            tracing::warn!(pool = %url, attempt = attempt + 1, "pool dropped: {why}");
                            self.set_state(UpstreamState::Connecting);
                        }
                        end => {
                            let url = &set.pools[index].url;
                            tracing::warn!(pool = %url, "pool connection ended: {}", end.reason());
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
