//! The failover loop of RFC §10.2 ([`walk`], one for every family: CryptoNote's [`Failover`]
//! here, SV1's in `sv1.rs`), and the make-before-break switch of a CryptoNote config reload.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    daemon, stratum, Command, PoolConfig, PoolSet, SessionCtx, SessionEnd, ShareError,
    UpstreamListener, UpstreamState,
};

pub(crate) struct Failover {
    pub(crate) pools: watch::Receiver<Arc<PoolSet>>,
    pub(crate) listener: Arc<dyn UpstreamListener>,
    pub(crate) cancel: CancellationToken,
    pub(crate) cmds: crate::queue::Receiver<Command>,
    pub(crate) direct: Arc<crate::direct::Direct>,
    pub(crate) state: Arc<AtomicU8>,
    pub(crate) session: u64,
}

/// Indexes of the enabled entries, in list order.
pub(crate) fn enabled(set: &PoolSet) -> Vec<usize> {
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
type Preconnecting = Pin<Box<dyn Future<Output = Option<Box<Ready<stratum::Connected>>>> + Send>>;

/// A session of a new pool list, logged in while the old one still served (a reload):
/// `connected` is the family's logged-in session at entry `index` of `set`.
pub(crate) struct Ready<C> {
    pub(crate) set: Arc<PoolSet>,
    pub(crate) index: usize,
    pub(crate) connected: C,
}

impl<C> std::fmt::Debug for Ready<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("pool", &self.set.pools[self.index].url)
            .finish_non_exhaustive()
    }
}

/// Logs in to the first enabled pool of `set` that answers, one attempt each in list order,
/// while the old session keeps serving. `None` when none did, or when the walk reaches a
/// daemon entry (daemons are not logged in ahead: the failover loop takes over).
async fn preconnect(
    set: Arc<PoolSet>,
    cancel: CancellationToken,
) -> Option<Box<Ready<stratum::Connected>>> {
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
            Self::Cancelled => "cancelled".into(),
        }
    }
}

/// How one attempt at a pool list entry ended, as the walk of [`walk`] sees it (each
/// family's sessions report in these terms).
pub(crate) enum Outcome<C> {
    /// Could not connect or log in; the reason for the log.
    NeverConnected(String),
    /// Was logged in, then the connection ended; the reason for the log.
    Ended(String),
    /// Was logged in, then dropped for misbehaving (silent): a failed attempt at that entry,
    /// so the walk goes on with the next attempt or entry; the reason for the log.
    Dropped(String),
    /// The pool asked for `client.reconnect` (SV1): connect to `url` after `wait`.
    Reconnect {
        /// `host:port` to go to.
        url: String,
        /// How long to wait first.
        wait: Duration,
    },
    /// The pool list changed and its session is logged in (make-before-break): the old
    /// session is draining in a task of its own; serve this one next.
    Replaced(Box<Ready<C>>),
    /// The proxy is stopping.
    Cancelled,
}

// By hand: a derive would ask the session type for `Debug` too, and [`Ready`] shows only
// its pool.
impl<C> std::fmt::Debug for Outcome<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NeverConnected(why) => f.debug_tuple("NeverConnected").field(why).finish(),
            Self::Ended(why) => f.debug_tuple("Ended").field(why).finish(),
            Self::Dropped(why) => f.debug_tuple("Dropped").field(why).finish(),
            Self::Reconnect { url, wait } => f
                .debug_struct("Reconnect")
                .field("url", url)
                .field("wait", wait)
                .finish(),
            Self::Replaced(ready) => f.debug_tuple("Replaced").field(ready).finish(),
            Self::Cancelled => f.write_str("Cancelled"),
        }
    }
}

/// One family's upstream task (CryptoNote's [`Failover`], SV1's), as [`walk`] drives it:
/// the sessions, the queue of submits and the state are the family's; the walk over the
/// pool list is common.
pub(crate) trait Family: Send {
    /// A session of a new pool list logged in ahead (make-before-break), to serve next.
    type Connected: Send;
    /// What the log calls an entry: `every {POOL} failed`, `no enabled pool in the {POOL}
    /// list`.
    const POOL: &'static str;
    /// The pool list the task follows.
    fn pools(&mut self) -> &mut watch::Receiver<Arc<PoolSet>>;
    /// Cancelled when the proxy stops.
    fn cancel(&self) -> &CancellationToken;
    /// Records and reports a state other than `Active` (no pool index).
    fn set_state(&self, state: UpstreamState);
    /// Waits `pause` while answering every submit that arrives with `NotConnected`. False
    /// when cancelled.
    fn pause(&mut self, pause: Duration) -> impl Future<Output = bool> + Send;
    /// One attempt at `pool` (entry `index` of `set`, or where a `client.reconnect` sent
    /// that entry), or the session already logged in there (`connected`), run until it
    /// ends. No share of it is left unanswered when it returns.
    fn attempt(
        &mut self,
        set: &PoolSet,
        pool: &PoolConfig,
        index: usize,
        connected: Option<Self::Connected>,
    ) -> impl Future<Output = Outcome<Self::Connected>> + Send;
    /// Stops taking submits and answers every one still queued `Disconnected`.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// The failover loop of RFC §10.2, for every family: the first enabled entry first,
/// `retries` attempts per entry with `retry-pause` between them, then the next entry; after
/// a session that was logged in ends, start again from the primary (after a short breath);
/// when every entry failed, state `Error` and `retry-pause`, then again. A session of a new
/// list logged in ahead is served next; a `client.reconnect` sends the next attempt to the
/// same entry at the new address. Runs until cancelled, then answers what is queued and
/// reports `Stopped`.
pub(crate) async fn walk<F: Family>(mut f: F) {
    let mut ready: Option<Box<Ready<F::Connected>>> = None;
    // Where a `client.reconnect` sends the next attempt (boxed: rare, and a whole entry
    // inline would grow every task's future by its size).
    let mut redirect: Option<Box<(PoolConfig, usize)>> = None;
    'list: while !f.cancel().is_cancelled() {
        if let Some(next) = ready.take() {
            let Ready {
                set,
                index,
                connected,
            } = *next;
            // The new list's session, logged in before the old one closed.
            let pool = &set.pools[index];
            match f.attempt(&set, pool, index, Some(connected)).await {
                Outcome::Cancelled => break 'list,
                Outcome::Replaced(next) => ready = Some(next),
                Outcome::Reconnect { url, wait } => {
                    redirect = Some(redirected(pool, index, url));
                    f.set_state(UpstreamState::Connecting);
                    if !f.pause(wait).await {
                        break 'list;
                    }
                }
                Outcome::NeverConnected(why) | Outcome::Ended(why) | Outcome::Dropped(why) => {
                    tracing::warn!(pool = %pool.url, "pool connection ended: {why}");
                    f.set_state(UpstreamState::Connecting);
                    if !f.pause(Duration::from_millis(100)).await {
                        break 'list;
                    }
                }
            }
            continue 'list;
        }
        let set = f.pools().borrow_and_update().clone();
        if let Some(to) = redirect.take() {
            // Kept in its box across the attempt.
            let (pool, index) = (&to.0, to.1);
            f.set_state(UpstreamState::Connecting);
            match f.attempt(&set, pool, index, None).await {
                Outcome::Cancelled => break 'list,
                Outcome::Replaced(next) => {
                    ready = Some(next);
                    continue 'list;
                }
                Outcome::Reconnect { url, wait } => {
                    redirect = Some(redirected(pool, index, url));
                    if !f.pause(wait).await {
                        break 'list;
                    }
                    continue 'list;
                }
                end => tracing::warn!(pool = %pool.url, "redirected connection: {end:?}"),
            }
        }
        let attempts = set.options.retries.max(1);
        let order = enabled(&set);
        f.set_state(UpstreamState::Connecting);
        for &index in &order {
            let pool = &set.pools[index];
            for attempt in 0..attempts {
                if attempt > 0 && !f.pause(set.options.retry_pause).await {
                    break 'list;
                }
                match f.attempt(&set, pool, index, None).await {
                    Outcome::Cancelled => break 'list,
                    Outcome::Replaced(next) => {
                        ready = Some(next);
                        continue 'list;
                    }
                    Outcome::NeverConnected(why) => {
                        tracing::warn!(pool = %pool.url, attempt = attempt + 1, "connect failed: {why}");
                    }
                    Outcome::Dropped(why) => {
                        // A failed attempt: on to the next one (or the next pool).
                        tracing::warn!(pool = %pool.url, attempt = attempt + 1, "pool dropped: {why}");
                        f.set_state(UpstreamState::Connecting);
                    }
                    Outcome::Reconnect { url, wait } => {
                        redirect = Some(redirected(pool, index, url));
                        f.set_state(UpstreamState::Connecting);
                        if !f.pause(wait).await {
                            break 'list;
                        }
                        continue 'list;
                    }
                    Outcome::Ended(why) => {
                        tracing::warn!(pool = %pool.url, "pool connection ended: {why}");
                        // Start again from the primary, after a short breath so a pool
                        // that drops every login does not make us spin.
                        f.set_state(UpstreamState::Connecting);
                        if !f.pause(Duration::from_millis(100)).await {
                            break 'list;
                        }
                        continue 'list;
                    }
                }
                if f.pools().has_changed().unwrap_or(false) {
                    // A new list while failing: walk the new one from its primary.
                    continue 'list;
                }
            }
        }
        f.set_state(UpstreamState::Error);
        if order.is_empty() {
            tracing::error!("no enabled pool in the {} list", F::POOL);
        } else {
            tracing::error!(
                "every {} failed; retrying in {:?}",
                F::POOL,
                set.options.retry_pause
            );
        }
        if !f.pause(set.options.retry_pause).await {
            break;
        }
    }
    f.close().await;
    f.set_state(UpstreamState::Stopped);
}

/// The entry a `client.reconnect` to `url` leads to: `pool` (at `index` of the list) with
/// its url replaced.
fn redirected(pool: &PoolConfig, index: usize, url: String) -> Box<(PoolConfig, usize)> {
    tracing::info!(from = %pool.url, to = %url, "pool asked to reconnect");
    Box::new((
        PoolConfig {
            url,
            ..pool.clone()
        },
        index,
    ))
}

impl Family for Failover {
    type Connected = stratum::Connected;
    const POOL: &'static str = "pool";

    fn pools(&mut self) -> &mut watch::Receiver<Arc<PoolSet>> {
        &mut self.pools
    }

    fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    fn set_state(&self, state: UpstreamState) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.listener.on_state(state, None);
    }

    async fn pause(&mut self, pause: Duration) -> bool {
        let listener = &self.listener;
        self.cmds
            .pause(&self.cancel, pause, |Command::Submit { seq, .. }| {
                listener.on_result(seq, Err(ShareError::NotConnected));
            })
            .await
    }

    /// One connection attempt at `pool` (`set.pools[index]`; or a session already logged in
    /// there, `connected`), run until it ends.
    ///
    /// A pool-list change that [`touches`] this pool is made before it breaks: the new list
    /// is logged in to ([`preconnect`]) while this session serves on; then this session
    /// hands over, its connection is drained by a task of its own ([`stratum::drain`]: the
    /// shares in flight get this pool's answers) and the attempt returns `Replaced` with the
    /// new session. When no pool of the new list can be logged in to, this session is
    /// drained and closed all the same and the attempt returns `Ended`: the loop walks the
    /// new list with its retries and pauses. A daemon session is not drained: it is closed
    /// at once (a submit in its hands is answered `Connection to pool lost`).
    async fn attempt(
        &mut self,
        set: &PoolSet,
        pool: &PoolConfig,
        index: usize,
        connected: Option<stratum::Connected>,
    ) -> Outcome<stratum::Connected> {
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
                Outcome::Ended("pool list changed".into())
            }
            SessionEnd::Cancelled if replaced && !self.cancel.is_cancelled() => {
                Outcome::Ended("pool list changed".into())
            }
            SessionEnd::Cancelled => Outcome::Cancelled,
            SessionEnd::NeverConnected(why) => Outcome::NeverConnected(why),
            SessionEnd::Ended(why) => Outcome::Ended(why),
            SessionEnd::Dropped(why) => Outcome::Dropped(why),
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
            Some(r) if !self.cancel.is_cancelled() => Outcome::Replaced(r),
            _ => end,
        }
    }

    async fn close(&mut self) {
        self.cmds.close();
        while let Some(Command::Submit { seq, .. }) = self.cmds.recv().await {
            self.listener.on_result(seq, Err(ShareError::Disconnected));
        }
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
