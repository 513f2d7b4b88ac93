//! Proxy-wide statistics (go-proxy RFC §12).
//!
//! The share and connection counters are atomics, lock-free on the hot path. What needs more
//! than a counter (the hashrate windows, the ten best shares, the pool's reply latency) sits
//! behind one short `std::sync::Mutex`, taken once per accepted share.
//!
//! # Time
//!
//! Nothing here reads a clock: time is passed in as whole seconds since the proxy started
//! (the *stats epoch*). The proxy passes the real time; tests pass whatever they like, so a
//! simulated day takes no wall-clock time.
//!
//! # Hashrate windows
//!
//! The RFC keeps one bucket per second per window, which would be 86,400 buckets for the
//! 24-hour window of every worker. Here every window has [`WINDOW_BUCKETS`] buckets, coarser
//! for the longer windows, so a [`HashrateWindows`] has a fixed size whatever the uptime:
//!
//! | window | bucket | buckets |
//! |---|---|---|
//! | 60 s | 1 s | 60 |
//! | 600 s | 10 s | 60 |
//! | 3600 s | 60 s | 60 |
//! | 12 h | 720 s | 60 |
//! | 24 h | 1440 s | 60 |
//!
//! A window's hashrate is the sum of the accepted share difficulties in its last 60 buckets
//! (the current, partly elapsed bucket included) divided by the window's length in seconds,
//! as xmrig-proxy does: a share stays in a window for between `window - bucket` and `window`
//! seconds. The buckets are advanced lazily, when a share is added, so no per-second tick over
//! every record is needed. The all-time hashrate is the total divided by the uptime.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::lock;

/// Lengths in seconds of the windowed hashrates: 60 s, 600 s, 1 h, 12 h, 24 h (the RFC's
/// `HashrateWindow60s` … `HashrateWindow24h`; index 5 of the summary is all-time).
pub const HASHRATE_WINDOWS: [u64; 5] = [60, 600, 3_600, 43_200, 86_400];

/// Buckets per hashrate window (see the module docs).
pub const WINDOW_BUCKETS: usize = 60;

/// How many of the most recent pool reply latencies the `latency` median is taken over.
pub const LATENCY_SAMPLES: usize = 1024;

/// Upper bounds, in seconds, of the pool latency histogram's buckets (a `+Inf` bucket
/// follows).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Number of best share difficulties kept.
pub const BEST_SHARES: usize = 10;

/// One window: the sums of [`WINDOW_BUCKETS`] consecutive buckets, `head` being the index
/// (time / bucket length) of the newest one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ring {
    head: u64,
    sums: [u64; WINDOW_BUCKETS],
}

impl Ring {
    const EMPTY: Ring = Ring {
        head: 0,
        sums: [0; WINDOW_BUCKETS],
    };

    fn slot(bucket: u64) -> usize {
        (bucket % WINDOW_BUCKETS as u64) as usize
    }

    fn add(&mut self, bucket: u64, value: u64) {
        let n = WINDOW_BUCKETS as u64;
        if bucket > self.head {
            if bucket - self.head >= n {
                self.sums = [0; WINDOW_BUCKETS];
            } else {
                for b in self.head + 1..=bucket {
                    self.sums[Self::slot(b)] = 0;
                }
            }
            self.head = bucket;
        } else if self.head - bucket >= n {
            // Older than the whole ring (a clock that went back): nothing to count it in.
            return;
        }
        let s = &mut self.sums[Self::slot(bucket)];
        *s = s.saturating_add(value);
    }

    /// Sum of the buckets that are among the last `WINDOW_BUCKETS` as of bucket `now`.
    fn sum(&self, now: u64) -> u64 {
        let n = WINDOW_BUCKETS as u64;
        let now = now.max(self.head);
        let first = (now + 1)
            .saturating_sub(n)
            .max((self.head + 1).saturating_sub(n));
        if first > self.head {
            return 0;
        }
        (first..=self.head)
            .map(|b| self.sums[Self::slot(b)])
            .fold(0, u64::saturating_add)
    }
}

/// Rolling hashrate over the windows of [`HASHRATE_WINDOWS`], with a fixed memory size
/// (5 × 60 buckets, about 2.4 KiB, no heap). Time is whole seconds since the stats epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashrateWindows {
    rings: [Ring; HASHRATE_WINDOWS.len()],
}

impl Default for HashrateWindows {
    fn default() -> Self {
        Self {
            rings: [const { Ring::EMPTY }; HASHRATE_WINDOWS.len()],
        }
    }
}

fn bucket_secs(window: usize) -> u64 {
    HASHRATE_WINDOWS[window] / WINDOW_BUCKETS as u64
}

impl HashrateWindows {
    /// Empty windows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `difficulty` hashes done at second `now`.
    pub fn add(&mut self, now: u64, difficulty: u64) {
        for (i, ring) in self.rings.iter_mut().enumerate() {
            ring.add(now / bucket_secs(i), difficulty);
        }
    }

    /// Hashes counted in the window of `window_secs` seconds (one of [`HASHRATE_WINDOWS`]) as
    /// of second `now`; `None` for another length.
    pub fn hashes(&self, window_secs: u64, now: u64) -> Option<u64> {
        let i = HASHRATE_WINDOWS.iter().position(|&w| w == window_secs)?;
        Some(self.rings[i].sum(now / bucket_secs(i)))
    }

    /// The hashrate in H/s over the window of `window_secs` seconds (one of
    /// [`HASHRATE_WINDOWS`]) as of second `now`; `None` for another length.
    pub fn hashrate(&self, window_secs: u64, now: u64) -> Option<f64> {
        self.hashes(window_secs, now)
            .map(|h| h as f64 / window_secs as f64)
    }

    /// The hashrates in H/s of every window of [`HASHRATE_WINDOWS`], in that order.
    pub fn hashrates(&self, now: u64) -> [f64; HASHRATE_WINDOWS.len()] {
        std::array::from_fn(|i| {
            self.rings[i].sum(now / bucket_secs(i)) as f64 / HASHRATE_WINDOWS[i] as f64
        })
    }
}

/// What the stats lock guards.
#[derive(Debug)]
struct Detail {
    windows: HashrateWindows,
    /// Best share difficulties, highest first, zeros past the last.
    best: [u64; BEST_SHARES],
    /// The last [`LATENCY_SAMPLES`] latencies in ms, a ring written at `latency_next`.
    latency: Vec<u32>,
    latency_next: usize,
    /// Latency histogram: per-bucket counts (not cumulative), the last one `+Inf`.
    histogram: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: u64,
    latency_count: u64,
}

impl Default for Detail {
    fn default() -> Self {
        Self {
            windows: HashrateWindows::new(),
            best: [0; BEST_SHARES],
            latency: Vec::new(),
            latency_next: 0,
            histogram: [0; LATENCY_BUCKETS.len() + 1],
            latency_sum_us: 0,
            latency_count: 0,
        }
    }
}

impl Detail {
    fn push_best(&mut self, difficulty: u64) {
        if difficulty <= self.best[BEST_SHARES - 1] {
            return;
        }
        let at = self.best.iter().position(|&b| difficulty > b).unwrap_or(0);
        self.best.copy_within(at..BEST_SHARES - 1, at + 1);
        self.best[at] = difficulty;
    }

    fn push_latency(&mut self, latency: Duration) {
        let ms = u32::try_from(latency.as_millis()).unwrap_or(u32::MAX);
        if self.latency.len() < LATENCY_SAMPLES {
            self.latency.push(ms);
        } else {
            self.latency[self.latency_next] = ms;
        }
        self.latency_next = (self.latency_next + 1) % LATENCY_SAMPLES;
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.histogram[bucket] += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us = self.latency_sum_us.saturating_add(us);
        self.latency_count += 1;
    }

    fn median_latency(&self) -> u64 {
        if self.latency.is_empty() {
            return 0;
        }
        let mut v = self.latency.clone();
        let mid = v.len() / 2;
        let (_, m, _) = v.select_nth_unstable(mid);
        u64::from(*m)
    }
}

/// Proxy-wide share and connection counters. All counts since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Shares the pool accepted (plus, with `custom-diff-stats`, shares the proxy accepted
    /// itself at a miner's custom difficulty).
    pub accepted: AtomicU64,
    /// Shares the pool (or the proxy on its behalf) rejected.
    pub rejected: AtomicU64,
    /// Shares the proxy refused before the pool saw them (bad nonce, low difficulty, …).
    pub invalid: AtomicU64,
    /// Accepted or forwarded shares that were for the previous job.
    pub expired: AtomicU64,
    /// Sum of the difficulties of accepted shares (hashes done).
    pub hashes: AtomicU64,
    /// Shares that met a miner's custom (lowered) difficulty but not the pool's: answered OK
    /// by the proxy itself and not forwarded.
    pub custom_accepted: AtomicU64,
    /// TCP connections accepted, ever.
    pub connections: AtomicU64,
    /// Miners connected now.
    pub miners: AtomicU64,
    /// Peak of `miners`.
    pub max_miners: AtomicU64,
    /// Shares forwarded upstream and not answered yet.
    pub in_flight: AtomicU64,
    /// Blocks accepted by a daemon upstream (or shares a pool reported as blocks).
    pub blocks: AtomicU64,
    detail: Mutex<Detail>,
}

/// A plain copy of the [`Stats`] counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StatsSnapshot {
    /// See [`Stats::accepted`].
    pub accepted: u64,
    /// See [`Stats::rejected`].
    pub rejected: u64,
    /// See [`Stats::invalid`].
    pub invalid: u64,
    /// See [`Stats::expired`].
    pub expired: u64,
    /// See [`Stats::hashes`].
    pub hashes: u64,
    /// See [`Stats::custom_accepted`].
    pub custom_accepted: u64,
    /// See [`Stats::connections`].
    pub connections: u64,
    /// See [`Stats::miners`].
    pub miners: u64,
    /// See [`Stats::max_miners`].
    pub max_miners: u64,
    /// See [`Stats::in_flight`].
    pub in_flight: u64,
}

/// The RFC's `StatsSummary`: share results with the derived figures, at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsSummary {
    /// See [`Stats::accepted`].
    pub accepted: u64,
    /// See [`Stats::rejected`].
    pub rejected: u64,
    /// See [`Stats::invalid`].
    pub invalid: u64,
    /// See [`Stats::expired`].
    pub expired: u64,
    /// See [`Stats::hashes`].
    #[serde(rename = "hashes_total")]
    pub hashes: u64,
    /// See [`Stats::custom_accepted`].
    pub custom_accepted: u64,
    /// Seconds per accepted share: uptime / accepted, 0 before the first.
    pub avg_time: u64,
    /// Median pool reply latency in ms over the last [`LATENCY_SAMPLES`] accepted shares.
    pub latency: u64,
    /// Hashrates in H/s: the windows of [`HASHRATE_WINDOWS`], then all-time (hashes /
    /// uptime).
    pub hashrate: [f64; 6],
    /// The [`BEST_SHARES`] highest difficulties of accepted shares (the difficulty of their
    /// result hash, not the job's), highest first, 0 where there are fewer.
    pub best: [u64; BEST_SHARES],
}

/// The pool reply latency histogram, for Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// `(upper bound in seconds, cumulative count)` for each of [`LATENCY_BUCKETS`], then
    /// `(f64::INFINITY, count)`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observed latencies, in seconds.
    pub sum_seconds: f64,
    /// Number of observed latencies (pool-accepted shares).
    pub count: u64,
}

impl Stats {
    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            invalid: self.invalid.load(Relaxed),
            expired: self.expired.load(Relaxed),
            hashes: self.hashes.load(Relaxed),
            custom_accepted: self.custom_accepted.load(Relaxed),
            connections: self.connections.load(Relaxed),
            miners: self.miners.load(Relaxed),
            max_miners: self.max_miners.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
        }
    }

    pub(crate) fn miner_connected(&self) {
        self.connections.fetch_add(1, Relaxed);
        let now = self.miners.fetch_add(1, Relaxed) + 1;
        self.max_miners.fetch_max(now, Relaxed);
    }

    pub(crate) fn miner_disconnected(&self) {
        self.miners.fetch_sub(1, Relaxed);
    }

    /// Records an accepted share at second `now`: `difficulty` is what it counts for (the
    /// job difficulty the miner worked at), `share_difficulty` the difficulty its hash
    /// actually met (for the best shares), `latency` the pool's reply time. The last two are
    /// `None` for a share the proxy accepted itself.
    pub fn on_accept(
        &self,
        now: u64,
        difficulty: u64,
        share_difficulty: Option<u64>,
        latency: Option<Duration>,
    ) {
        self.accepted.fetch_add(1, Relaxed);
        self.hashes.fetch_add(difficulty, Relaxed);
        let mut d = lock(&self.detail);
        d.windows.add(now, difficulty);
        if let Some(s) = share_difficulty {
            d.push_best(s);
        }
        if let Some(l) = latency {
            d.push_latency(l);
        }
    }

    /// The RFC's `Summary()` as of second `now` since the stats epoch (also the uptime used
    /// for `avg_time` and the all-time hashrate).
    pub fn summary(&self, now: u64) -> StatsSummary {
        let s = self.snapshot();
        let d = lock(&self.detail);
        let windows = d.windows.hashrates(now);
        let mut hashrate = [0.0; 6];
        hashrate[..5].copy_from_slice(&windows);
        hashrate[5] = s.hashes as f64 / now.max(1) as f64;
        StatsSummary {
            accepted: s.accepted,
            rejected: s.rejected,
            invalid: s.invalid,
            expired: s.expired,
            hashes: s.hashes,
            custom_accepted: s.custom_accepted,
            avg_time: now.checked_div(s.accepted).unwrap_or(0),
            latency: d.median_latency(),
            hashrate,
            best: d.best,
        }
    }

    /// The pool reply latency histogram (pool-accepted shares only).
    pub fn latency_histogram(&self) -> LatencyHistogram {
        let d = lock(&self.detail);
        let mut total = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, &count) in d.histogram.iter().enumerate() {
            total += count;
            buckets.push((
                LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                total,
            ));
        }
        LatencyHistogram {
            buckets,
            sum_seconds: d.latency_sum_us as f64 / 1e6,
            count: d.latency_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_a_share_for_their_length_then_forget_it() {
        let mut w = HashrateWindows::new();
        w.add(100, 6000);
        assert_eq!(w.hashrate(60, 100), Some(100.0));
        assert_eq!(w.hashrate(600, 100), Some(10.0));
        assert_eq!(w.hashes(86_400, 100), Some(6000));
        // Still in the 60 s window 59 s later, gone at 60 s.
        assert_eq!(w.hashes(60, 159), Some(6000));
        assert_eq!(w.hashes(60, 160), Some(0));
        // The 600 s window has 10 s buckets: the share (bucket 10) leaves at bucket 70.
        assert_eq!(w.hashes(600, 699), Some(6000));
        assert_eq!(w.hashes(600, 700), Some(0));
        assert_eq!(w.hashes(86_400, 100 + 86_400 - 1440), Some(6000));
        assert_eq!(w.hashes(86_400, 100 + 86_400), Some(0));
        assert_eq!(w.hashrate(61, 100), None);
    }

    #[test]
    fn windows_sum_several_buckets_and_survive_gaps() {
        let mut w = HashrateWindows::new();
        for t in 0..120 {
            w.add(t, 10);
        }
        // The 60 s window holds seconds 60..=119.
        assert_eq!(w.hashes(60, 119), Some(600));
        assert_eq!(w.hashes(3_600, 119), Some(1200));
        // A long silence, then one share: only that share is in the short windows.
        w.add(10_000, 7);
        assert_eq!(w.hashes(60, 10_000), Some(7));
        assert_eq!(w.hashes(600, 10_000), Some(7));
        assert_eq!(w.hashes(43_200, 10_000), Some(1207));
        // A share time-stamped before the ring (clock went back) is dropped, not misfiled.
        w.add(0, 1_000_000);
        assert_eq!(w.hashes(60, 10_000), Some(7));
    }

    #[test]
    fn accept_counts_hashes_and_keeps_the_ten_best_in_order() {
        let s = Stats::default();
        for (i, d) in [5u64, 50, 1, 70, 20, 90, 30, 10, 60, 40, 80, 100, 3, 2, 4]
            .into_iter()
            .enumerate()
        {
            s.on_accept(i as u64, 1000, Some(d), None);
        }
        let sum = s.summary(15);
        assert_eq!(sum.accepted, 15);
        assert_eq!(sum.hashes, 15_000);
        assert_eq!(sum.best, [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]);
        assert_eq!(sum.avg_time, 1);
        assert_eq!(sum.hashrate[0], 15_000.0 / 60.0);
        assert_eq!(sum.hashrate[5], 1000.0);
    }

    #[test]
    fn concurrent_accepts_lose_nothing() {
        let s = std::sync::Arc::new(Stats::default());
        let threads: Vec<_> = (0..100)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || s.on_accept(1, 10, Some(i), None))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let sum = s.summary(1);
        assert_eq!(sum.accepted, 100);
        assert_eq!(sum.hashes, 1000);
        assert_eq!(sum.best[0], 99);
        assert_eq!(sum.best[9], 90);
    }

    #[test]
    fn latency_median_is_over_a_bounded_set_of_recent_samples() {
        let s = Stats::default();
        assert_eq!(s.summary(0).latency, 0);
        for ms in [10, 30, 20] {
            s.on_accept(0, 1, None, Some(Duration::from_millis(ms)));
        }
        assert_eq!(s.summary(0).latency, 20);
        // Fill the ring with 500 ms samples: the old ones are gone from the median.
        for _ in 0..LATENCY_SAMPLES {
            s.on_accept(0, 1, None, Some(Duration::from_millis(500)));
        }
        assert_eq!(s.summary(0).latency, 500);
        assert_eq!(lock(&s.detail).latency.len(), LATENCY_SAMPLES);
        let h = s.latency_histogram();
        assert_eq!(h.count, 3 + LATENCY_SAMPLES as u64);
        assert_eq!(h.buckets.len(), LATENCY_BUCKETS.len() + 1);
        // 10 ms is in the 0.01 bucket; 20 and 30 ms in 0.025 and 0.05; 500 ms in 0.5.
        assert_eq!(h.buckets[0], (0.005, 0));
        assert_eq!(h.buckets[1], (0.01, 1));
        assert_eq!(h.buckets[3], (0.05, 3));
        assert_eq!(h.buckets[6], (0.5, h.count));
        assert_eq!(h.buckets.last().unwrap().1, h.count);
        let want = 0.06 + 0.5 * LATENCY_SAMPLES as f64;
        assert!((h.sum_seconds - want).abs() < 1e-9, "{}", h.sum_seconds);
    }

    #[test]
    fn summary_before_any_share_is_all_zero() {
        let s = Stats::default();
        let sum = s.summary(0);
        assert_eq!(sum.avg_time, 0);
        assert_eq!(sum.hashrate, [0.0; 6]);
        assert_eq!(sum.best, [0; BEST_SHARES]);
    }
}
