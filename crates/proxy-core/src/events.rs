//! Lifecycle events (go-proxy RFC §11) and what listens to them.
//!
//! The RFC's event bus becomes plain method calls: each event has one method here, and each
//! method feeds every consumer (counters, worker records, logs) in turn. Called without any
//! proxy lock held; each consumer takes only its own short locks.
//!
//! The stats clock starts here: [`Events::now`] is the whole seconds since the events were
//! created (the proxy's start), the time base of every hashrate window. It reads tokio's
//! clock, as the rest of the driver does, so a paused test clock moves it too.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::config::Config;
use crate::config::RateLimit;
use crate::journal::{escaped, Journal, NoticeKind};
use crate::logs::{accept_line, close_line, connect_line, reject_line, LineLog};
use crate::ratelimit::{invalid_share_limit_reached, RateLimiter};
use crate::stats::Stats;
use crate::workers::{WorkerLimits, WorkerSource, Workers};
use arcstr::ArcStr;
use stratum_session::{Refusal, ShareTally, WorkerName};

/// What an event says of its miner (implemented by the driver's miner): plain data read
/// under the miner's own lock, and the one action the invalid-share rule takes.
pub(crate) trait Subject: WorkerSource {
    /// The connection's process-unique id.
    fn id(&self) -> u64;
    /// Its login and agent, once logged in.
    fn user_agent(&self) -> Option<(WorkerName, ArcStr)>;
    /// Bytes received from and sent to the miner.
    fn traffic(&self) -> (u64, u64);
    /// Counts an answered share on the connection; the tally after it.
    fn count_share(&self, valid: bool) -> ShareTally;
    /// Cuts the connection off after what is queued is written; false when it is already
    /// closing.
    fn fail(&self, why: &'static str) -> bool;
}

/// A share the proxy refused itself, as the events see it, whatever its family: the message
/// it was answered with, and whether it counts against the miner (the invalid-share rule).
pub(crate) trait ShareRefusal: Copy {
    /// The message the miner was answered with (share log).
    fn message(self) -> &'static str;
    /// Whether it counts against the miner: work on a job the upstream no longer has is
    /// stale, not invalid.
    fn counts_as_invalid(self) -> bool;
}

impl ShareRefusal for Refusal {
    fn message(self) -> &'static str {
        Refusal::message(self)
    }
    fn counts_as_invalid(self) -> bool {
        Refusal::counts_as_invalid(self)
    }
}

/// The consumers of one family's events: its counters and worker records, and (shared with
/// the other family's events, [`Events::sibling`]) the logs, the rate limiter, the journal
/// and the stats clock.
pub(crate) struct Events {
    pub(crate) stats: Stats,
    pub(crate) workers: Workers,
    /// Second 0 of the stats clock.
    pub(crate) epoch: Instant,
    /// Unix time in seconds at `epoch`.
    pub(crate) epoch_unix: u64,
    /// `custom-diff-stats` of the running config.
    custom_diff_stats: AtomicBool,
    access_log: Arc<LineLog>,
    share_log: Arc<LineLog>,
    /// Connection limit and bans (`rate-limit`); bans the IP of a miner cut off for invalid
    /// shares. Shared with the accept loops.
    pub(crate) rate_limiter: Arc<RateLimiter>,
    /// `rate-limit.invalid-shares` and `invalid-percent` of the running config.
    invalid_shares: AtomicU32,
    invalid_percent: AtomicU32,
    /// Notable events for the dashboard (refused shares, bans, upstreams lost).
    pub(crate) journal: Arc<Journal>,
    /// Solo mining's rounds: shares per user, blocks found (`rounds.rs`); one for the
    /// process, shared by the families' events.
    pub(crate) rounds: Arc<crate::rounds::Rounds>,
}

impl Events {
    pub(crate) fn new(config: &Config) -> Self {
        let epoch_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let e = Self {
            stats: Stats::default(),
            workers: Workers::new(config.workers, WorkerLimits::of(config)),
            epoch: Instant::now(),
            epoch_unix,
            custom_diff_stats: AtomicBool::new(false),
            access_log: Arc::default(),
            share_log: Arc::default(),
            rate_limiter: Arc::new(RateLimiter::new(&config.rate_limit)),
            invalid_shares: AtomicU32::new(0),
            invalid_percent: AtomicU32::new(0),
            journal: Arc::default(),
            rounds: Arc::new(crate::rounds::Rounds::new(epoch_unix)),
        };
        e.apply_config(config);
        e
    }

    /// The events of another family of the same process: counters and worker records of
    /// its own (hashrates of two hash functions do not add up, nor do a name's workers in
    /// two families), the logs, rate limiter, journal and stats clock of `self`.
    pub(crate) fn sibling(&self, config: &Config) -> Self {
        let e = Self {
            stats: Stats::default(),
            workers: Workers::new(config.workers, WorkerLimits::of(config)),
            epoch: self.epoch,
            epoch_unix: self.epoch_unix,
            custom_diff_stats: AtomicBool::new(false),
            access_log: self.access_log.clone(),
            share_log: self.share_log.clone(),
            rate_limiter: self.rate_limiter.clone(),
            invalid_shares: AtomicU32::new(0),
            invalid_percent: AtomicU32::new(0),
            journal: self.journal.clone(),
            rounds: self.rounds.clone(),
        };
        e.apply_config(config);
        e
    }

    /// Takes the parts of a (new) config that the consumers use.
    pub(crate) fn apply_config(&self, config: &Config) {
        self.access_log.set_path(config.access_log_file.as_deref());
        self.share_log.set_path(config.share_log_file.as_deref());
        self.workers.set_mode(config.workers);
        self.workers.set_limits(WorkerLimits::of(config));
        self.custom_diff_stats
            .store(config.custom_diff_stats, Relaxed);
        self.invalid_shares
            .store(config.rate_limit.invalid_shares, Relaxed);
        self.invalid_percent
            .store(config.rate_limit.invalid_percent, Relaxed);
    }

    /// Counts an answered share of `miner`; an invalid one may cut the miner off: once its
    /// invalid shares pass `rate-limit.invalid-shares` and `invalid-percent`
    /// ([`invalid_share_limit_reached`]) it is disconnected, its IP banned for `ban-duration`
    /// (when not 0), and one WARN line says so (its login escaped, as `Debug` writes it).
    fn tally(&self, miner: &impl Subject, valid: bool) {
        let t = miner.count_share(valid);
        if valid {
            // The rule looks only at invalid shares.
            return;
        }
        let rule = RateLimit {
            invalid_shares: self.invalid_shares.load(Relaxed),
            invalid_percent: self.invalid_percent.load(Relaxed),
            ..RateLimit::default()
        };
        if !invalid_share_limit_reached(&rule, u64::from(t.valid), u64::from(t.invalid))
            || !miner.fail("too many invalid shares")
        {
            return;
        }
        let ban = self.rate_limiter.ban(miner.ip());
        self.journal.note(
            NoticeKind::Ban,
            format!(
                "miner {} ({}) cut off after {} invalid shares{}",
                escaped(&Self::user(miner)),
                miner.ip(),
                t.invalid,
                ban.map_or_else(String::new, |d| format!(
                    ", IP banned for {} s",
                    d.as_secs()
                ))
            ),
        );
        tracing::warn!(
            miner = miner.id(),
            ip = %miner.ip(),
            user = ?Self::user(miner),
            invalid = t.invalid,
            valid = t.valid,
            "too many invalid shares: miner disconnected, {}",
            ban.map_or_else(
                || "IP not banned (rate-limit.ban-duration is 0)".to_string(),
                |d| format!("IP banned for {} s", d.as_secs())
            )
        );
    }

    /// Shutdown: the access and share logs write what is queued and close (up to `limit`
    /// for each).
    pub(crate) async fn close_logs(&self, limit: Duration) {
        self.access_log.close(limit).await;
        self.share_log.close(limit).await;
    }

    /// Lines the access and share logs dropped (queue full).
    pub(crate) fn log_lines_dropped(&self) -> u64 {
        self.access_log.dropped() + self.share_log.dropped()
    }

    /// Whole seconds since the stats epoch.
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// Seconds since the stats epoch at `at` (0 before it).
    pub(crate) fn secs_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    fn user(miner: &impl Subject) -> String {
        miner
            .user_agent()
            .map_or_else(|| "-".to_string(), |(user, _)| user.to_string())
    }

    /// A miner logged in successfully.
    pub(crate) fn login(&self, miner: &impl Subject) {
        self.workers.login(miner, self.now());
        if self.access_log.is_on() {
            let (user, agent) = miner.user_agent().map_or_else(
                || ("-".to_string(), "-".to_string()),
                |(u, a)| (u.to_string(), a.to_string()),
            );
            let agent = if agent.is_empty() { "-".into() } else { agent };
            self.access_log
                .write(connect_line(&miner.ip().to_string(), &user, &agent));
        }
    }

    /// A miner's connection closed (logged in or not).
    pub(crate) fn close(&self, miner: &impl Subject) {
        self.workers.close(miner, self.now());
        let user = miner.user_agent();
        if let Some((user, _)) = user.filter(|_| self.access_log.is_on()) {
            let (rx, tx) = miner.traffic();
            self.access_log.write(close_line(
                &miner.ip().to_string(),
                &user.to_string(),
                rx,
                tx,
            ));
        }
    }

    /// The pool accepted a share at `at` (the clock read its verdict was handled with):
    /// `difficulty` is the job difficulty the miner worked at (what the share counts for),
    /// `share_difficulty` the difficulty its hash met, `latency` the pool's reply time.
    pub(crate) fn accept(
        &self,
        miner: &impl Subject,
        difficulty: u64,
        share_difficulty: u64,
        latency: Duration,
        at: Instant,
    ) {
        let now = self.secs_at(at);
        self.stats
            .on_accept(now, difficulty, Some(share_difficulty), Some(latency));
        self.workers.accept(miner, difficulty, now);
        if self.share_log.is_on() {
            self.share_log
                .write(accept_line(&Self::user(miner), difficulty, latency));
        }
        self.tally(miner, true);
    }

    /// The proxy accepted a share itself (custom difficulty, RFC §14): it met the miner's
    /// lowered target of `difficulty` but not the pool's, was answered OK and not forwarded.
    /// Counted in [`Stats::custom_accepted`]; with `custom-diff-stats` also as an accepted
    /// share of `difficulty` (hashes, hashrate windows, the miner's worker): then true, and
    /// the caller counts it to its upstream ([`crate::splitter::Mapper::accept_local`]).
    pub(crate) fn accept_local(&self, miner: &impl Subject, difficulty: u64) -> bool {
        self.stats.custom_accepted.fetch_add(1, Relaxed);
        self.tally(miner, true);
        if self.custom_diff_stats.load(Relaxed) {
            let now = self.now();
            self.stats.on_accept(now, difficulty, None, None);
            self.workers.accept(miner, difficulty, now);
            return true;
        }
        false
    }

    /// The pool refused a share, or it could not be delivered (timeout, lost connection).
    pub(crate) fn reject(&self, miner: &impl Subject, reason: &str) {
        self.stats.rejected.fetch_add(1, Relaxed);
        self.workers.reject(miner, self.now());
        self.journal.note(
            NoticeKind::Rejected,
            format!(
                "share of {} rejected: {}",
                escaped(&Self::user(miner)),
                escaped(reason)
            ),
        );
        if self.share_log.is_on() {
            self.share_log
                .write(reject_line(&Self::user(miner), reason));
        }
    }

    /// The pool refused a share: its verdict on the miner's work (not a lost connection or a
    /// timeout, which are [`Events::reject`] alone). Counted against the miner like an
    /// invalid share.
    pub(crate) fn pool_rejected(&self, miner: &impl Subject, reason: &str) {
        self.reject(miner, reason);
        self.tally(miner, false);
    }

    /// The proxy refused a share before the pool saw it (RFC §6.2 checks, duplicates).
    /// Counted against the miner (call it after answering the share, as it may cut the miner
    /// off), except what [`ShareRefusal::counts_as_invalid`] leaves out (CryptoNote's
    /// `Invalid job id`: work on a job the upstream no longer has is stale, what honest miners
    /// send after a job change or while a pool is away, and never reaches a pool).
    pub(crate) fn invalid(&self, miner: &impl Subject, refusal: impl ShareRefusal) {
        let reason = refusal.message();
        self.stats.invalid.fetch_add(1, Relaxed);
        self.workers.invalid(miner, self.now());
        if self.share_log.is_on() {
            self.share_log
                .write(reject_line(&Self::user(miner), reason));
        }
        if refusal.counts_as_invalid() {
            self.journal.note(
                NoticeKind::Invalid,
                format!(
                    "share of {} refused: {}",
                    escaped(&Self::user(miner)),
                    escaped(reason)
                ),
            );
            self.tally(miner, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::LoginInfo;
    type Miner = crate::miner::Miner<crate::family::CryptoNote>;

    fn logged_in_miner() -> Arc<Miner> {
        Arc::new(Miner::detached_ready(
            1,
            ([127, 0, 0, 1], 5000).into(),
            LoginInfo {
                user: "W".into(),
                rig_id: Some("rig".into()),
                ..LoginInfo::default()
            },
        ))
    }

    #[test]
    fn accept_local_counts_as_accepted_only_with_custom_diff_stats() {
        let mut config = Config::default();
        let e = Events::new(&config);
        let m = logged_in_miner();
        e.login(&m);
        assert!(!e.accept_local(&m, 500), "not counted to the upstream");
        let s = e.stats.snapshot();
        assert_eq!((s.custom_accepted, s.accepted, s.hashes), (1, 0, 0));
        assert_eq!(e.workers.snapshot(0, 0).workers[0].accepted, 0);

        config.custom_diff_stats = true;
        e.apply_config(&config);
        assert!(e.accept_local(&m, 500), "counted to the upstream");
        let s = e.stats.snapshot();
        assert_eq!((s.custom_accepted, s.accepted, s.hashes), (2, 1, 500));
        let w = &e.workers.snapshot(e.now(), 0).workers[0];
        assert_eq!((w.name.as_str(), w.accepted, w.hashes), ("rig", 1, 500));
        assert_eq!(w.hashrate[0], 500.0 / 60.0);
        // No latency and no best share: the pool never saw it.
        let sum = e.stats.summary(e.now());
        assert_eq!((sum.latency, sum.best[0]), (0, 0));
        assert_eq!(e.stats.latency_histogram().count, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_stats_clock_is_tokios_clock() {
        let e = Events::new(&Config::default());
        assert_eq!(e.now(), 0);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(
            e.now(),
            90,
            "a paused clock moved by hand moves the stats clock"
        );
        assert_eq!(e.secs_at(Instant::now() + Duration::from_secs(10)), 100);
        assert_eq!(e.secs_at(e.epoch), 0);
    }

    #[test]
    fn an_accepted_share_counts_at_the_second_of_its_verdict() {
        let e = Events::new(&Config::default());
        let m = logged_in_miner();
        e.login(&m);
        let at = e.epoch + Duration::from_secs(7);
        e.accept(&m, 1000, 4321, Duration::from_millis(40), at);
        // Seconds since the epoch (0 given as the epoch's Unix time).
        let w = &e.workers.snapshot(7, 0).workers[0];
        assert_eq!(w.last_hash_unix, 7, "the verdict's second, not the clock's");
    }

    #[test]
    fn pool_verdicts_reach_counters_and_worker() {
        let e = Events::new(&Config::default());
        let m = logged_in_miner();
        e.login(&m);
        e.accept(&m, 1000, 4321, Duration::from_millis(40), Instant::now());
        e.reject(&m, "Low difficulty share");
        e.invalid(&m, Refusal::InvalidNonce);
        let s = e.stats.summary(e.now());
        assert_eq!(
            (s.accepted, s.rejected, s.invalid, s.hashes),
            (1, 1, 1, 1000)
        );
        assert_eq!((s.best[0], s.latency), (4321, 40));
        let w = &e.workers.snapshot(e.now(), 0).workers[0];
        assert_eq!(
            (w.accepted, w.rejected, w.invalid, w.connections),
            (1, 1, 1, 1)
        );
        e.close(&m);
        assert_eq!(e.workers.snapshot(e.now(), 0).workers[0].connections, 0);
        // The refusals are noted for the dashboard, the acceptance is not; the accepted hashes
        // wait for the tick to find the miner's upstream.
        let notes: Vec<(NoticeKind, String)> = e
            .journal
            .notices()
            .into_iter()
            .map(|n| (n.kind, n.message))
            .collect();
        assert_eq!(
            notes,
            [
                (
                    NoticeKind::Rejected,
                    "share of W rejected: Low difficulty share".to_string()
                ),
                (
                    NoticeKind::Invalid,
                    format!("share of W refused: {}", Refusal::InvalidNonce.message())
                ),
            ]
        );
    }
}
