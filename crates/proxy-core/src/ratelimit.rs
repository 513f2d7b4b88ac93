//! Per-IP connection rate limiting with bans (go-proxy RFC §17, config `rate-limit`).
//!
//! Each client IP has a token bucket of `max-connections-per-minute` tokens that refills at
//! that many tokens per minute (a GCRA limiter from the `governor` crate, keyed by IP). Every
//! new connection takes one token. A connection that finds the bucket empty is refused, and
//! when `ban-duration` is not 0 its IP is banned: every connection from it is refused for that
//! many seconds, whatever its bucket holds. `max-connections-per-minute: 0` turns the limiter
//! off.
//!
//! The same ban table serves the per-miner protection (issue 10 item 5): a miner whose
//! invalid shares pass `rate-limit.invalid-shares` and `invalid-percent`
//! ([`invalid_share_limit_reached`]) is disconnected and its IP banned with
//! [`RateLimiter::ban`] for `ban-duration`, so that one miner cannot get the proxy's shared
//! pool login banned. Bans work whether or not connections are limited.
//!
//! The accept loop asks [`RateLimiter::check`] right after `accept`, before any byte is read,
//! and drops refused sockets at once. [`RateLimiter::reconfigure`] changes the limits of a
//! running proxy; [`RateLimiter::housekeep`], called periodically, forgets IPs whose bucket is
//! full again and bans that have ended, so memory follows the IPs seen in the last minute (or
//! ban), not every IP ever seen.
//!
//! Time comes from a `governor` [`Clock`]: [`MonotonicClock`] in the proxy, a
//! [`FakeRelativeClock`] in tests, which moves only when told to.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

pub(crate) use governor::clock::{Clock, MonotonicClock};

use crate::config::RateLimit;
use crate::lock;

/// Longest ban honoured; a longer `ban-duration` is cut to this (10 years).
pub(crate) const MAX_BAN: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Within the limit, or limiting is off: serve it.
    Allow,
    /// Refused: its IP is banned, or (with `ban-duration: 0`) its bucket is empty.
    Refuse,
    /// Refused, and this connection emptied the bucket: the IP is banned from now on for the
    /// given time. Returned once per ban, so the caller can log each ban once.
    Ban(Duration),
}

impl Decision {
    /// True for [`Decision::Allow`].
    #[cfg(test)]
    pub(crate) fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

type Buckets<C> = governor::RateLimiter<
    IpAddr,
    DashMapStateStore<IpAddr>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// The limiter for one setting of `rate-limit`.
struct Inner<C: Clock> {
    settings: RateLimit,
    /// `None` when connections are not limited (only bans apply).
    buckets: Option<Buckets<C>>,
    ban: Duration,
    /// Banned IPs and the end of their ban.
    bans: Mutex<HashMap<IpAddr, C::Instant>>,
}

/// Per-IP connection rate limiter with bans; cheap to share (`&self` everywhere, internally
/// synchronised). Generic over the clock so tests can move time.
pub(crate) struct RateLimiter<C: Clock + Clone = MonotonicClock> {
    clock: C,
    /// `None` while there is neither a limit nor a ban.
    inner: ArcSwapOption<Inner<C>>,
}

impl<C: Clock + Clone> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

impl RateLimiter<MonotonicClock> {
    /// A limiter with the given settings (RFC §17: new connections a minute per IP, ban
    /// length in seconds) on the system's monotonic clock.
    pub(crate) fn new(settings: &RateLimit) -> Self {
        Self::with_clock(settings, MonotonicClock)
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// A limiter with the given settings (RFC §17), reading time from `clock` (a test clock
    /// in tests).
    pub(crate) fn with_clock(settings: &RateLimit, clock: C) -> Self {
        let inner = Self::build(settings, &clock);
        Self {
            clock,
            inner: ArcSwapOption::new(inner),
        }
    }

    fn build(settings: &RateLimit, clock: &C) -> Option<Arc<Inner<C>>> {
        let per_minute = NonZeroU32::new(settings.max_connections_per_minute);
        let ban = Duration::from_secs(settings.ban_duration).min(MAX_BAN);
        if per_minute.is_none() && ban.is_zero() {
            return None;
        }
        Some(Arc::new(Inner {
            settings: settings.clone(),
            buckets: per_minute.map(|n| {
                governor::RateLimiter::dashmap_with_clock(Quota::per_minute(n), clock.clone())
            }),
            ban,
            bans: Mutex::new(HashMap::new()),
        }))
    }

    /// Bans `ip` for `ban-duration` from now (a miner of it was cut off for invalid shares):
    /// its new connections are refused until then; connections already open stay. Returns
    /// the ban's length, `None` when `ban-duration` is 0 (nothing is banned).
    pub(crate) fn ban(&self, ip: IpAddr) -> Option<Duration> {
        let guard = self.inner.load();
        let inner = guard.as_ref().filter(|i| !i.ban.is_zero())?;
        let until = self.clock.now() + Nanos::from(inner.ban);
        lock(&inner.bans).insert(ip.to_canonical(), until);
        Some(inner.ban)
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> RateLimit {
        self.inner
            .load()
            .as_ref()
            .map(|i| i.settings.clone())
            .unwrap_or_default()
    }

    /// Counts a new connection from `ip` and says whether to serve it. IPv4 addresses mapped
    /// into IPv6 (a dual-stack listener) count as the IPv4 address.
    pub(crate) fn check(&self, ip: IpAddr) -> Decision {
        let guard = self.inner.load();
        let Some(inner) = guard.as_ref() else {
            return Decision::Allow;
        };
        let ip = ip.to_canonical();
        let now = self.clock.now();
        if !inner.ban.is_zero() {
            let mut bans = lock(&inner.bans);
            match bans.get(&ip) {
                Some(until) if now < *until => return Decision::Refuse,
                Some(_) => {
                    bans.remove(&ip);
                }
                None => {}
            }
        }
        let Some(buckets) = inner.buckets.as_ref() else {
            return Decision::Allow;
        };
        if buckets.check_key(&ip).is_ok() {
            return Decision::Allow;
        }
        if inner.ban.is_zero() {
            return Decision::Refuse;
        }
        lock(&inner.bans).insert(ip, now + Nanos::from(inner.ban));
        Decision::Ban(inner.ban)
    }

    /// True while `ip` is banned.
    #[cfg(test)]
    pub(crate) fn is_banned(&self, ip: IpAddr) -> bool {
        let guard = self.inner.load();
        let Some(inner) = guard.as_ref() else {
            return false;
        };
        let now = self.clock.now();
        let bans = lock(&inner.bans);
        bans.get(&ip.to_canonical())
            .is_some_and(|until| now < *until)
    }

    /// Applies new settings to the running limiter (config reload). Same settings: nothing
    /// changes. Otherwise every bucket starts full again under the new rate; bans in force
    /// stay, shortened to the new `ban-duration` from now when that is shorter, and are lifted
    /// when the new settings have no ban. (The invalid-share keys are not the limiter's: a
    /// change of only those changes nothing here.)
    pub(crate) fn reconfigure(&self, settings: &RateLimit) {
        let old = self.inner.load_full();
        let same = |a: &RateLimit| {
            a.max_connections_per_minute == settings.max_connections_per_minute
                && a.ban_duration == settings.ban_duration
        };
        if old.as_ref().is_some_and(|i| same(&i.settings))
            || (old.is_none() && same(&RateLimit::default()))
        {
            return;
        }
        let new = Self::build(settings, &self.clock);
        if let (Some(old), Some(new)) = (&old, &new) {
            if !new.ban.is_zero() {
                let now = self.clock.now();
                let longest = now + Nanos::from(new.ban);
                let carried = lock(&old.bans)
                    .iter()
                    .filter(|(_, until)| now < **until)
                    .map(|(ip, until)| (*ip, (*until).min(longest)))
                    .collect();
                *lock(&new.bans) = carried;
            }
        }
        self.inner.store(new);
        tracing::info!(
            max_connections_per_minute = settings.max_connections_per_minute,
            ban_duration = settings.ban_duration,
            "connection rate limit changed"
        );
    }

    /// Forgets what no longer matters: IPs whose bucket has refilled completely (they are
    /// indistinguishable from new ones) and ended bans. Call it every few seconds to minutes.
    pub(crate) fn housekeep(&self) {
        let guard = self.inner.load();
        let Some(inner) = guard.as_ref() else {
            return;
        };
        if let Some(buckets) = inner.buckets.as_ref() {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
        let now = self.clock.now();
        let mut bans = lock(&inner.bans);
        bans.retain(|_, until| now < *until);
        bans.shrink_to_fit();
    }

    /// How many IPs the limiter holds state for (buckets not yet full again, bans), for
    /// monitoring and tests. Approximate while connections are being checked.
    #[cfg(test)]
    pub(crate) fn tracked_ips(&self) -> usize {
        let guard = self.inner.load();
        let Some(inner) = guard.as_ref() else {
            return 0;
        };
        let bans = lock(&inner.bans);
        inner.buckets.as_ref().map_or(0, |b| b.len()) + bans.len()
    }
}

/// The per-miner protection's rule (issue 10 item 5, config `rate-limit.invalid-shares` and
/// `invalid-percent`): true when a miner with `valid` and `invalid` answered shares on its
/// connection is to be cut off: `invalid-shares` is not 0, `invalid >= invalid-shares`, and
/// `invalid` is at least `invalid-percent` % of `valid + invalid`. Pure; called on each
/// invalid share.
pub(crate) fn invalid_share_limit_reached(settings: &RateLimit, valid: u64, invalid: u64) -> bool {
    settings.invalid_shares > 0
        && invalid >= u64::from(settings.invalid_shares)
        && u128::from(invalid) * 100
            >= u128::from(settings.invalid_percent) * (u128::from(valid) + u128::from(invalid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(per_minute: u32, ban: u64) -> RateLimit {
        RateLimit {
            max_connections_per_minute: per_minute,
            ban_duration: ban,
            ..RateLimit::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn thirty_per_minute_then_the_31st_is_refused_and_banned() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(&limits(30, 300), clock.clone());
        let a = ip("10.0.0.1");
        for i in 0..30 {
            assert_eq!(rl.check(a), Decision::Allow, "connection {}", i + 1);
        }
        assert_eq!(rl.check(a), Decision::Ban(Duration::from_secs(300)));
        assert!(rl.is_banned(a));
        // Another IP has its own bucket.
        assert_eq!(rl.check(ip("10.0.0.2")), Decision::Allow);
        // Banned for the whole 300 s, though the bucket refills within a minute.
        for _ in 0..29 {
            clock.advance(Duration::from_secs(10));
            assert_eq!(rl.check(a), Decision::Refuse, "at {:?}", clock.now());
        }
        clock.advance(Duration::from_secs(10)); // 300 s after the ban
        assert!(!rl.is_banned(a));
        assert_eq!(rl.check(a), Decision::Allow);
    }

    #[test]
    fn without_ban_only_an_empty_bucket_refuses_and_it_refills_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(&limits(6, 0), clock.clone());
        let a = ip("192.0.2.7");
        for _ in 0..6 {
            assert!(rl.check(a).is_allowed());
        }
        assert_eq!(rl.check(a), Decision::Refuse);
        assert!(!rl.is_banned(a));
        // 6 per minute: one token every 10 s.
        clock.advance(Duration::from_secs(9));
        assert_eq!(rl.check(a), Decision::Refuse);
        clock.advance(Duration::from_secs(1));
        assert_eq!(rl.check(a), Decision::Allow);
        assert_eq!(rl.check(a), Decision::Refuse);
        clock.advance(Duration::from_secs(60));
        for _ in 0..6 {
            assert!(rl.check(a).is_allowed());
        }
        assert_eq!(rl.check(a), Decision::Refuse);
    }

    #[test]
    fn zero_means_off() {
        let rl = RateLimiter::with_clock(&limits(0, 300), FakeRelativeClock::default());
        for _ in 0..1000 {
            assert!(rl.check(ip("10.0.0.1")).is_allowed());
        }
        assert_eq!(rl.tracked_ips(), 0);
    }

    #[test]
    fn mapped_ipv4_shares_the_ipv4_bucket() {
        let rl = RateLimiter::with_clock(&limits(2, 60), FakeRelativeClock::default());
        assert!(rl.check(ip("10.1.2.3")).is_allowed());
        assert!(rl.check(ip("::ffff:10.1.2.3")).is_allowed());
        assert_eq!(
            rl.check(ip("10.1.2.3")),
            Decision::Ban(Duration::from_secs(60))
        );
        assert!(rl.is_banned(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn reconfigure_changes_limits_at_run_time() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(&limits(0, 0), clock.clone());
        let a = ip("10.0.0.1");
        for _ in 0..10 {
            assert!(rl.check(a).is_allowed());
        }
        rl.reconfigure(&limits(2, 600));
        assert_eq!(rl.settings(), limits(2, 600));
        assert!(rl.check(a).is_allowed());
        assert!(rl.check(a).is_allowed());
        assert_eq!(rl.check(a), Decision::Ban(Duration::from_secs(600)));
        // Same settings: nothing changes, the ban stays.
        rl.reconfigure(&limits(2, 600));
        assert_eq!(rl.check(a), Decision::Refuse);
        // A shorter ban shortens the ban in force.
        rl.reconfigure(&limits(5, 30));
        clock.advance(Duration::from_secs(29));
        assert_eq!(rl.check(a), Decision::Refuse);
        clock.advance(Duration::from_secs(1));
        for _ in 0..5 {
            assert!(rl.check(a).is_allowed());
        }
        assert_eq!(rl.check(a), Decision::Ban(Duration::from_secs(30)));
        // No limit but a ban: the ban in force stays.
        rl.reconfigure(&limits(0, 30));
        assert!(rl.is_banned(a));
        assert_eq!(rl.check(a), Decision::Refuse);
        // Off again: everything is allowed and forgotten.
        rl.reconfigure(&limits(0, 0));
        assert!(rl.check(a).is_allowed());
        assert!(!rl.is_banned(a));
        assert_eq!(rl.tracked_ips(), 0);
    }

    #[test]
    fn a_ban_for_invalid_shares_works_without_a_connection_limit_and_ends_on_time() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(&limits(0, 120), clock.clone());
        let a = ip("::ffff:10.0.0.9");
        assert!(rl.check(a).is_allowed(), "no connection limit");
        assert_eq!(rl.ban(a), Some(Duration::from_secs(120)));
        assert_eq!(rl.check(ip("10.0.0.9")), Decision::Refuse, "mapped = IPv4");
        assert!(rl.check(ip("10.0.0.8")).is_allowed(), "only that IP");
        clock.advance(Duration::from_secs(119));
        assert_eq!(rl.check(a), Decision::Refuse);
        clock.advance(Duration::from_secs(1));
        assert!(rl.check(a).is_allowed(), "the ban ends after ban-duration");
        // Without a ban-duration nothing is banned.
        let rl = RateLimiter::with_clock(&limits(0, 0), clock.clone());
        assert_eq!(rl.ban(a), None);
        assert!(rl.check(a).is_allowed());
    }

    #[test]
    fn the_invalid_share_rule_needs_both_the_count_and_the_ratio() {
        let s = RateLimit {
            invalid_shares: 10,
            invalid_percent: 50,
            ..RateLimit::default()
        };
        assert!(!invalid_share_limit_reached(&s, 0, 9), "count not reached");
        assert!(invalid_share_limit_reached(&s, 0, 10));
        assert!(invalid_share_limit_reached(&s, 10, 10), "exactly 50 %");
        assert!(!invalid_share_limit_reached(&s, 11, 10), "below 50 %");
        assert!(
            !invalid_share_limit_reached(&s, 1000, 100),
            "an honest miner with 9 % stale shares"
        );
        let off = RateLimit {
            invalid_shares: 0,
            ..s.clone()
        };
        assert!(!invalid_share_limit_reached(&off, 0, 1_000_000), "0 = off");
        let never = RateLimit {
            invalid_percent: 101,
            ..s
        };
        assert!(!invalid_share_limit_reached(&never, 0, 1_000_000));
        assert!(
            invalid_share_limit_reached(&RateLimit::default(), u64::MAX / 2, u64::MAX / 2),
            "no overflow"
        );
    }

    #[test]
    fn housekeeping_forgets_refilled_ips_and_ended_bans() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(&limits(3, 120), clock.clone());
        for i in 0..=255u8 {
            assert!(rl.check(IpAddr::from([10, 0, 0, i])).is_allowed());
        }
        for _ in 0..3 {
            rl.check(ip("10.9.9.9"));
        }
        assert_eq!(
            rl.check(ip("10.9.9.9")),
            Decision::Ban(Duration::from_secs(120))
        );
        assert_eq!(rl.tracked_ips(), 256 + 1 + 1);
        rl.housekeep();
        assert_eq!(rl.tracked_ips(), 258, "nothing has refilled yet");
        // One token back every 20 s: a bucket is full again a minute after its last use
        // (governor keeps a key one token interval longer to be safe).
        clock.advance(Duration::from_secs(81));
        rl.housekeep();
        assert_eq!(rl.tracked_ips(), 1, "only the ban is left");
        clock.advance(Duration::from_secs(60));
        rl.housekeep();
        assert_eq!(rl.tracked_ips(), 0);
        assert!(rl.check(ip("10.9.9.9")).is_allowed());
    }
}
