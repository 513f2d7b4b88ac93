//! Lifecycle events (go-proxy RFC §11) and what listens to them.
//!
//! The RFC's event bus becomes plain method calls: each event has one method here, and each
//! method feeds every consumer (counters, logs, …) in turn. Called without any proxy lock
//! held; each consumer takes only its own short locks.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::logs::{accept_line, close_line, connect_line, reject_line, LineLog};
use crate::miner::Miner;
use crate::stats::Stats;

/// The consumers of proxy events.
pub(crate) struct Events {
    pub(crate) stats: Arc<Stats>,
    access_log: LineLog,
    share_log: LineLog,
}

impl Events {
    pub(crate) fn new(config: &Config) -> Self {
        let e = Self {
            stats: Arc::new(Stats::default()),
            access_log: LineLog::default(),
            share_log: LineLog::default(),
        };
        e.apply_config(config);
        e
    }

    /// Takes the parts of a (new) config that the consumers use.
    pub(crate) fn apply_config(&self, config: &Config) {
        self.access_log.set_path(config.access_log_file.as_deref());
        self.share_log.set_path(config.share_log_file.as_deref());
    }

    fn user(miner: &Miner) -> String {
        miner
            .state()
            .login
            .as_ref()
            .map_or_else(|| "-".to_string(), |l| l.user.clone())
    }

    /// A miner logged in successfully.
    pub(crate) fn login(&self, miner: &Miner) {
        if self.access_log.is_on() {
            let (user, agent) = {
                let st = miner.state();
                let l = st.login.as_deref();
                (
                    l.map_or("-", |l| l.user.as_str()).to_string(),
                    l.map_or("-", |l| l.agent.as_str()).to_string(),
                )
            };
            let agent = if agent.is_empty() { "-".into() } else { agent };
            self.access_log
                .write(connect_line(&miner.peer.ip().to_string(), &user, &agent));
        }
    }

    /// A miner's connection closed (logged in or not).
    pub(crate) fn close(&self, miner: &Miner) {
        let logged_in = miner.state().login.is_some();
        if logged_in && self.access_log.is_on() {
            self.access_log.write(close_line(
                &miner.peer.ip().to_string(),
                &Self::user(miner),
                miner.rx.load(Relaxed),
                miner.tx.load(Relaxed),
            ));
        }
    }

    /// The pool (or the proxy, for a share below the pool's difficulty) accepted a share of
    /// `difficulty` (the miner's target), answered after `latency`.
    pub(crate) fn accept(&self, miner: &Miner, difficulty: u64, latency: Duration) {
        self.stats.on_accept(difficulty);
        if self.share_log.is_on() {
            self.share_log
                .write(accept_line(&Self::user(miner), difficulty, latency));
        }
    }

    /// The pool refused a share, or it could not be delivered (timeout, lost connection).
    pub(crate) fn reject(&self, miner: &Miner, reason: &str) {
        self.stats.rejected.fetch_add(1, Relaxed);
        if self.share_log.is_on() {
            self.share_log
                .write(reject_line(&Self::user(miner), reason));
        }
    }

    /// A share met the miner's custom (lowered) difficulty but not the pool's: the proxy
    /// answered it OK and did not forward it (RFC §14).
    pub(crate) fn accept_local(&self, miner: &Miner, difficulty: u64) {
        self.stats.custom_accepted.fetch_add(1, Relaxed);
        let _ = (miner, difficulty);
    }

    /// The proxy refused a share before the pool saw it (RFC §6.2 checks).
    pub(crate) fn invalid(&self, miner: &Miner, reason: &str) {
        self.stats.invalid.fetch_add(1, Relaxed);
        if self.share_log.is_on() {
            self.share_log
                .write(reject_line(&Self::user(miner), reason));
        }
    }
}
