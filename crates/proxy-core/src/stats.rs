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
//!
//! That is 2.4 KiB, kept once, for the proxy's totals. A worker record, of which a farm has
//! one per rig, keeps a [`WorkerWindows`] instead: 120 bytes of `f32` sums in four tiered
//! rings, read with partial-bucket interpolation (its docs give the layout and precision).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::lock;

/// Lengths in seconds of the windowed hashrates: 60 s, 600 s, 1 h, 12 h, 24 h (the RFC's
/// `HashrateWindow60s` … `HashrateWindow24h`; index 5 of the summary is all-time).
pub const HASHRATE_WINDOWS: [u64; 5] = [60, 600, 3_600, 43_200, 86_400];

/// Buckets per hashrate window (see the module docs).
pub(crate) const WINDOW_BUCKETS: usize = 60;

/// How many of the most recent pool reply latencies the `latency` median is taken over.
pub(crate) const LATENCY_SAMPLES: usize = 1024;

/// Upper bounds, in seconds, of the pool latency histogram's buckets (a `+Inf` bucket
/// follows).
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Number of best share difficulties kept.
pub(crate) const BEST_SHARES: usize = 10;

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
/// (5 × 60 exact buckets, about 2.4 KiB, no heap): the proxy's totals. Time is whole seconds
/// since the stats epoch. Worker records use the smaller [`WorkerWindows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HashrateWindows {
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
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Counts `difficulty` hashes done at second `now`.
    pub(crate) fn add(&mut self, now: u64, difficulty: u64) {
        for (i, ring) in self.rings.iter_mut().enumerate() {
            ring.add(now / bucket_secs(i), difficulty);
        }
    }

    /// Hashes counted in the window of `window_secs` seconds (one of [`HASHRATE_WINDOWS`]) as
    /// of second `now`; `None` for another length.
    #[cfg(test)]
    pub(crate) fn hashes(&self, window_secs: u64, now: u64) -> Option<u64> {
        let i = HASHRATE_WINDOWS.iter().position(|&w| w == window_secs)?;
        Some(self.rings[i].sum(now / bucket_secs(i)))
    }

    /// The hashrate in H/s over the window of `window_secs` seconds (one of
    /// [`HASHRATE_WINDOWS`]) as of second `now`; `None` for another length.
    #[cfg(test)]
    pub(crate) fn hashrate(&self, window_secs: u64, now: u64) -> Option<f64> {
        self.hashes(window_secs, now)
            .map(|h| h as f64 / window_secs as f64)
    }

    /// The hashrates in H/s of every window of [`HASHRATE_WINDOWS`], in that order.
    pub(crate) fn hashrates(&self, now: u64) -> [f64; HASHRATE_WINDOWS.len()] {
        std::array::from_fn(|i| {
            self.rings[i].sum(now / bucket_secs(i)) as f64 / HASHRATE_WINDOWS[i] as f64
        })
    }
}

/// One tier of [`WorkerWindows`]: a ring of `slots` buckets of `secs` seconds each, stored at
/// `first..first + slots` of [`WorkerWindows`]' sums.
#[derive(Debug, Clone, Copy)]
struct Tier {
    secs: u32,
    slots: u32,
    first: usize,
}

impl Tier {
    /// Index in the sums of bucket `bucket` (time / `secs`).
    fn slot(self, bucket: u32) -> usize {
        self.first + (bucket % self.slots) as usize
    }
}

/// The tiers of [`WorkerWindows`], finest first (see its docs).
const TIERS: [Tier; 4] = [
    Tier {
        secs: 10,
        slots: 7,
        first: 0,
    },
    Tier {
        secs: 120,
        slots: 6,
        first: 7,
    },
    Tier {
        secs: 600,
        slots: 7,
        first: 13,
    },
    Tier {
        secs: 10_800,
        slots: 9,
        first: 20,
    },
];

/// Buckets of a [`WorkerWindows`], all tiers together.
const WORKER_SLOTS: usize = 29;

/// The tier each window of [`HASHRATE_WINDOWS`] is read from.
const WINDOW_TIER: [usize; HASHRATE_WINDOWS.len()] = [0, 1, 2, 3, 3];

// The tiers tile the sums; a coarse bucket is a whole number of fine ones (a closed 10 s
// bucket is passed on whole); a window is a whole number of its tier's buckets, with one slot
// more for the partly counted oldest bucket.
const _: () = {
    let mut first = 0;
    let mut t = 0;
    while t < TIERS.len() {
        assert!(TIERS[t].first == first);
        assert!(TIERS[t].secs % TIERS[0].secs == 0);
        first += TIERS[t].slots as usize;
        t += 1;
    }
    assert!(first == WORKER_SLOTS);
    let mut w = 0;
    while w < HASHRATE_WINDOWS.len() {
        let tier = TIERS[WINDOW_TIER[w]];
        assert!(HASHRATE_WINDOWS[w] % tier.secs as u64 == 0);
        assert!(HASHRATE_WINDOWS[w] / (tier.secs as u64) < tier.slots as u64);
        w += 1;
    }
};

/// A worker's rolling hashrate over the windows of [`HASHRATE_WINDOWS`]: 120 bytes, no heap,
/// whatever the uptime. Time is whole seconds since the stats epoch, up to `u32::MAX` (136
/// years; later seconds count as that one).
///
/// `HashrateWindows` keeps 300 exact buckets (2.4 KiB), which is nothing once per proxy but
/// too much once per worker of a farm. This keeps 29 `f32` bucket sums in four rings, the
/// 12 h and 24 h windows sharing one:
///
/// | ring | bucket | buckets | windows read from it (buckets each) |
/// |---|---|---|---|
/// | 0 | 10 s | 7 | 60 s (6) |
/// | 1 | 2 min | 6 | 600 s (5) |
/// | 2 | 10 min | 7 | 1 h (6) |
/// | 3 | 3 h | 9 | 12 h (4), 24 h (8) |
///
/// A window of `n` buckets ending at second `now` covers the seconds `now - window + 1 ..=
/// now`: the current bucket as far as it has elapsed, `n - 1` whole buckets, and the part of
/// the bucket before them that is still inside the window. That oldest bucket counts in
/// proportion to that part (partial-bucket interpolation), hence `n + 1` buckets per ring.
///
/// A share goes into the current 10 s bucket only; when the next 10 s bucket starts, the
/// closed one's sum is added to the current bucket of the three coarser rings (reads add the
/// open one themselves). So a coarse bucket takes one addition per 10 s, not one per share,
/// and the `f32` sums keep their precision however many shares a worker sends. Buckets
/// advance lazily, when a share is added; reads take `now` and skip what has expired, so no
/// per-second tick is needed.
///
/// # Precision
///
/// - A steady rate reads exactly (to `f32` rounding): the interpolated part of the oldest
///   bucket is what it holds.
/// - Otherwise a window's hashes are off by at most the hashes of that one oldest bucket (the
///   part of it inside the window is estimated, the rest is exact): at a hashrate `H`, at most
///   `H × bucket`, that is 1/6, 1/5, 1/6, 1/4 and 1/8 of the 60 s, 600 s, 1 h, 12 h and 24 h
///   readings. In particular a share is still counted, with a falling weight, for up to one
///   bucket less a second after it left a window: a miner that stopped reads 0 after the
///   window and one of its buckets have passed.
/// - `f32` sums carry 24 bits: each addition rounds by at most 2⁻²⁴ of the sum, so a 10 s
///   bucket that took `k` shares is within `k × 6·10⁻⁸` of exact (6·10⁻⁴ for 10,000 shares),
///   a coarse bucket within 1080 × 6·10⁻⁸ ≈ 6.4·10⁻⁵ (a 3 h bucket takes 1080 additions).
///   The exact total stays with the caller (the worker's `u64` hashes).
/// - A share timestamped before the current second (a clock that went back) is counted in
///   every ring that still holds its bucket, and dropped by the others.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerWindows {
    /// The newest second a share was added at: the current bucket of every ring.
    last: u32,
    sums: [f32; WORKER_SLOTS],
}

impl Default for WorkerWindows {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerWindows {
    /// Empty windows.
    pub const fn new() -> Self {
        Self {
            last: 0,
            sums: [0.0; WORKER_SLOTS],
        }
    }

    /// Counts `difficulty` hashes done at second `now`.
    pub fn add(&mut self, now: u64, difficulty: u64) {
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        let hashes = difficulty as f32;
        let fine = TIERS[0];
        let (open, bucket) = (self.last / fine.secs, now / fine.secs);
        if bucket < open {
            // The clock went back to a 10 s bucket that was already passed on (or skipped,
            // empty): count the share in every ring that still holds its time.
            for tier in TIERS {
                let (head, b) = (self.last / tier.secs, now / tier.secs);
                if head - b < tier.slots {
                    self.sums[tier.slot(b)] += hashes;
                }
            }
            return;
        }
        if bucket > open {
            // Pass the closed 10 s bucket on to the coarser rings' current buckets, then start
            // the buckets of `now` in every ring.
            let closed = self.sums[fine.slot(open)];
            for tier in &TIERS[1..] {
                self.sums[tier.slot(self.last / tier.secs)] += closed;
            }
            for tier in TIERS {
                let (head, to) = (self.last / tier.secs, now / tier.secs);
                if to - head >= tier.slots {
                    self.sums[tier.first..tier.first + tier.slots as usize].fill(0.0);
                } else {
                    for b in head + 1..=to {
                        self.sums[tier.slot(b)] = 0.0;
                    }
                }
            }
        }
        self.last = self.last.max(now);
        self.sums[fine.slot(bucket)] += hashes;
    }

    /// Hashes counted in the window of `window_secs` seconds (one of [`HASHRATE_WINDOWS`]) as
    /// of second `now` (see the precision in the type's docs); `None` for another length.
    pub fn hashes(&self, window_secs: u64, now: u64) -> Option<f64> {
        let w = HASHRATE_WINDOWS.iter().position(|&s| s == window_secs)?;
        Some(self.window_hashes(w, now))
    }

    /// The hashrate in H/s over the window of `window_secs` seconds (one of
    /// [`HASHRATE_WINDOWS`]) as of second `now`; `None` for another length.
    pub fn hashrate(&self, window_secs: u64, now: u64) -> Option<f64> {
        self.hashes(window_secs, now)
            .map(|h| h / window_secs as f64)
    }

    /// The hashrates in H/s of every window of [`HASHRATE_WINDOWS`], in that order.
    pub fn hashrates(&self, now: u64) -> [f64; HASHRATE_WINDOWS.len()] {
        std::array::from_fn(|w| self.window_hashes(w, now) / HASHRATE_WINDOWS[w] as f64)
    }

    fn window_hashes(&self, w: usize, now: u64) -> f64 {
        let tier = TIERS[WINDOW_TIER[w]];
        let secs = u64::from(tier.secs);
        let now = now.min(u64::from(u32::MAX)).max(u64::from(self.last));
        let head = u64::from(self.last / tier.secs);
        // The open 10 s bucket, not passed on to the coarser rings yet.
        let open = if WINDOW_TIER[w] == 0 {
            0.0
        } else {
            f64::from(self.sums[TIERS[0].slot(self.last / TIERS[0].secs)])
        };
        // The window's first second, its bucket and the share of that bucket in the window.
        let (first, weight) = match now.checked_sub(HASHRATE_WINDOWS[w] - 1) {
            Some(start) => {
                let b = start / secs;
                (b, ((b + 1) * secs - start) as f64 / secs as f64)
            }
            None => (0, 1.0),
        };
        let oldest_kept = (head + 1).saturating_sub(u64::from(tier.slots));
        let mut sum = 0.0;
        for b in first.max(oldest_kept)..=head {
            // `b <= head <= u32::MAX`.
            let mut v = f64::from(self.sums[tier.slot(b as u32)]);
            if b == head {
                v += open;
            }
            if b == first {
                v *= weight;
            }
            sum += v;
        }
        sum
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
    /// Median pool reply latency in ms over the last `LATENCY_SAMPLES` accepted shares.
    pub latency: u64,
    /// Hashrates in H/s: the windows of [`HASHRATE_WINDOWS`], then all-time (hashes /
    /// uptime).
    pub hashrate: [f64; 6],
    /// The `BEST_SHARES` highest difficulties of accepted shares (the difficulty of their
    /// result hash, not the job's), highest first, 0 where there are fewer.
    pub best: [u64; BEST_SHARES],
}

/// The pool reply latency histogram, for Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// `(upper bound in seconds, cumulative count)` for each of `LATENCY_BUCKETS`, then
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
    pub(crate) fn on_accept(
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

    /// Bucket length of the ring each window of [`HASHRATE_WINDOWS`] reads.
    fn bucket_of(w: usize) -> u64 {
        u64::from(TIERS[WINDOW_TIER[w]].secs)
    }

    /// Exact per-second hashes of a run, for reference sums.
    struct Exact {
        /// `prefix[i]`: hashes of the seconds before `i`.
        prefix: Vec<u64>,
    }

    impl Exact {
        fn new() -> Self {
            Self { prefix: vec![0] }
        }

        /// Second `self.prefix.len() - 1` did `hashes`.
        fn push(&mut self, hashes: u64) {
            let last = *self.prefix.last().unwrap();
            self.prefix.push(last + hashes);
        }

        /// Hashes of seconds `from..=to`, `from` clamped at 0.
        fn sum(&self, from: i64, to: u64) -> f64 {
            let from = from.max(0) as usize;
            (self.prefix[to as usize + 1] - self.prefix[from]) as f64
        }

        fn window(&self, w: usize, now: u64) -> f64 {
            self.sum(now as i64 + 1 - HASHRATE_WINDOWS[w] as i64, now)
        }

        /// Hashes of the bucket (of window `w`'s ring) that holds the window's first second.
        fn oldest_bucket(&self, w: usize, now: u64) -> f64 {
            let start = now as i64 + 1 - HASHRATE_WINDOWS[w] as i64;
            if start < 0 {
                return 0.0;
            }
            let b = bucket_of(w) as i64;
            let first = start / b * b;
            self.sum(first, (first + b - 1) as u64)
        }
    }

    #[test]
    fn worker_windows_are_120_bytes() {
        assert_eq!(std::mem::size_of::<WorkerWindows>(), 120);
    }

    #[test]
    fn worker_windows_read_a_steady_rate_in_every_window() {
        let mut w = WorkerWindows::new();
        for now in 0..50 * 3600 {
            w.add(now, 1000);
            let got = w.hashrates(now);
            for (i, &len) in HASHRATE_WINDOWS.iter().enumerate() {
                // 1000 H/s over the part of the window the run has lasted.
                let want = 1000.0 * (now + 1).min(len) as f64 / len as f64;
                assert!(
                    (got[i] - want).abs() < 1e-9 * want,
                    "{len} s at {now}: {got:?}"
                );
            }
        }
        // The same rate as one share of 30,000 every 30 s, read between the shares too: the
        // oldest bucket holds at most one share, the most a reading can be off by.
        let mut w = WorkerWindows::new();
        for now in 0..30 * 3600 {
            if now % 30 == 0 {
                w.add(now, 30_000);
            }
            if now >= 24 * 3600 {
                let got = w.hashrates(now);
                for (i, &len) in HASHRATE_WINDOWS.iter().enumerate() {
                    let tolerance = 30_000.0 / len as f64;
                    assert!(
                        (got[i] - 1000.0).abs() <= tolerance,
                        "{len} at {now}: {got:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn worker_windows_read_0_once_a_stopped_miner_s_window_and_a_bucket_have_passed() {
        let mut w = WorkerWindows::new();
        let stop = 100_000;
        for now in 0..=stop {
            w.add(now, 1000);
        }
        for (i, &len) in HASHRATE_WINDOWS.iter().enumerate() {
            let gone = stop + len + bucket_of(i) - 1;
            let mut before = w.hashes(len, stop).unwrap();
            assert!((before - 1000.0 * len as f64).abs() < 1e-6 * before);
            for now in stop + 1..=gone {
                let h = w.hashes(len, now).unwrap();
                assert!(h <= before, "{len} s window rose at {now}");
                // The last share is still inside the window until `stop + len - 1`.
                if now < stop + len {
                    assert!(h >= 1000.0, "{len} s window at {now}: {h}");
                }
                before = h;
            }
            assert_eq!(w.hashes(len, gone), Some(0.0), "{len} s");
            assert_eq!(w.hashes(len, gone + 10 * len), Some(0.0), "{len} s");
        }
    }

    #[test]
    fn worker_windows_stay_within_one_bucket_of_the_exact_window() {
        // Three days of an uneven miner: bursts, random difficulties, silences of minutes
        // and of a day; every second, every window is compared with the exact sum.
        let mut w = WorkerWindows::new();
        let mut exact = Exact::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let silent = |now: u64| (40_000..41_000).contains(&now) || (90_000..180_000).contains(&now);
        for now in 0..3 * 86_400 {
            let mut done = 0;
            if !silent(now) {
                let burst = if (now / 3_000) % 3 == 0 { 4 } else { 1 };
                for _ in 0..next() % (burst + 1) {
                    let d = 1 + next() % 1_000_000;
                    w.add(now, d);
                    done += d;
                }
            }
            exact.push(done);
            for (i, len) in HASHRATE_WINDOWS.into_iter().enumerate() {
                let got = w.hashes(len, now).unwrap();
                let want = exact.window(i, now);
                let bound = exact.oldest_bucket(i, now) + 1e-5 * want + 1.0;
                assert!(
                    (got - want).abs() <= bound,
                    "{len} s at {now}: {got} vs {want}, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn worker_windows_survive_long_gaps() {
        let mut w = WorkerWindows::new();
        for now in 0..3600 {
            w.add(now, 1000);
        }
        // A month of silence, then one share: only that share is anywhere.
        let later = 3600 + 30 * 86_400;
        w.add(later, 7);
        for len in HASHRATE_WINDOWS {
            assert_eq!(w.hashes(len, later), Some(7.0), "{len} s");
        }
        // The 3 h ring keeps a bucket while the 24 h window still reaches into it, and reuses
        // its slot 9 × 3 h later.
        let mut w = WorkerWindows::new();
        w.add(0, 5);
        w.add(8 * 10_800, 1);
        let h = w.hashes(86_400, 8 * 10_800).unwrap();
        assert!((h - (1.0 + 5.0 * 10_799.0 / 10_800.0)).abs() < 1e-9, "{h}");
        w.add(9 * 10_800, 1);
        assert_eq!(w.hashes(86_400, 9 * 10_800), Some(2.0));
        // Past `u32` seconds the time stops; nothing overflows.
        w.add(u64::MAX, 3);
        assert_eq!(w.hashes(60, u64::MAX), Some(3.0));
        w.add(u64::MAX, 3);
        assert_eq!(w.hashes(86_400, u64::from(u32::MAX)), Some(6.0));
    }

    #[test]
    fn worker_windows_count_a_late_share_only_where_its_bucket_is_kept() {
        let mut w = WorkerWindows::new();
        let t = 100_000;
        w.add(t, 1000);
        // The clock went back 5 s into the previous 10 s bucket: every ring still has it.
        w.add(t - 5, 500);
        assert_eq!(w.hashes(60, t), Some(1500.0));
        assert_eq!(w.hashes(86_400, t), Some(1500.0));
        // 1000 s back: gone from the 10 s and 2 min rings, kept by the 10 min and 3 h ones.
        w.add(t - 1000, 300);
        assert_eq!(w.hashes(60, t), Some(1500.0));
        assert_eq!(w.hashes(600, t), Some(1500.0));
        assert_eq!(w.hashes(3600, t), Some(1800.0));
        // Before the 3 h ring (100,000 s back): dropped everywhere, not misfiled.
        w.add(0, 1_000_000);
        assert_eq!(w.hashes(86_400, t), Some(1800.0));
        // A read before the newest share reads as of that share.
        assert_eq!(w.hashes(60, 5), w.hashes(60, t));
        assert_eq!(w.hashrate(61, t), None);
    }

    #[test]
    fn worker_windows_keep_their_precision_with_many_small_shares() {
        // A farm-sized worker: 200 shares of 100,003 a second for 13 hours. Added one by one
        // to a 3 h `f32` bucket (up to 2·10¹¹, where `f32` steps by 16,384), the shares would
        // read 1.4 % low; passed on in 10 s sums they are within 10⁻⁴.
        let mut w = WorkerWindows::new();
        let end = 13 * 3600;
        for now in 0..end {
            for _ in 0..200 {
                w.add(now, 100_003);
            }
        }
        for (i, h) in w.hashrates(end - 1).into_iter().enumerate() {
            let want = 200.0 * 100_003.0 * end.min(HASHRATE_WINDOWS[i]) as f64
                / HASHRATE_WINDOWS[i] as f64;
            assert!((h - want).abs() < 1e-4 * want, "{i}: {h} vs {want}");
        }
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
