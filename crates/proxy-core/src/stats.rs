//! Global counters (go-proxy RFC §12): atomic, lock-free on the hot path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Proxy-wide share and connection counters. All counts since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Shares the pool accepted.
    pub accepted: AtomicU64,
    /// Shares the pool (or the proxy on its behalf) rejected.
    pub rejected: AtomicU64,
    /// Shares the proxy refused before the pool saw them (bad nonce, low difficulty, …).
    pub invalid: AtomicU64,
    /// Accepted or forwarded shares that were for the previous job.
    pub expired: AtomicU64,
    /// Sum of the difficulties of accepted shares (hashes done).
    pub hashes: AtomicU64,
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
    /// Shares below the pool's difficulty that met a miner's custom difficulty, answered by
    /// the proxy and not forwarded (RFC §14).
    pub custom_accepted: AtomicU64,
}

/// A plain copy of [`Stats`] at one moment.
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
    /// See [`Stats::connections`].
    pub connections: u64,
    /// See [`Stats::miners`].
    pub miners: u64,
    /// See [`Stats::max_miners`].
    pub max_miners: u64,
    /// See [`Stats::in_flight`].
    pub in_flight: u64,
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

    pub(crate) fn on_accept(&self, difficulty: u64) {
        self.accepted.fetch_add(1, Relaxed);
        self.hashes.fetch_add(difficulty, Relaxed);
    }
}
