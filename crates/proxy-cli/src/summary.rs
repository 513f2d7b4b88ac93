//! The periodic summary line of the log, in the shape of xmrig-proxy's, so that log parsers
//! written for it keep working:
//!
//! ```text
//! proxy 1.23 kH/s, shares: 120/2 +15, upstreams: 1, miners: 40 (max 42) +3/-1, invalid: 0, blocks: 0
//! ```
//!
//! The hashrate is over the last 60 s, in kH/s with two decimals; `shares: A/R +N` are the
//! accepted and rejected totals since the start and the accepted shares since the previous
//! line; `upstreams` the pool connections logged in; `miners: M (max X) +a/-r` the miners
//! connected now, the most at once since the start, and the connections opened and closed
//! since the previous line. `invalid` and `blocks` (totals) follow, past xmrig-proxy's fields.
//! It replaces the former 30 s status line.

use proxy_core::Monitor;

/// The figures of one summary line.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Counts {
    /// H/s over the last minute.
    pub(crate) hashrate: f64,
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) invalid: u64,
    pub(crate) upstreams: u64,
    pub(crate) miners: u64,
    pub(crate) max_miners: u64,
    /// Miner connections opened since the start.
    pub(crate) connections: u64,
    pub(crate) blocks: u64,
}

impl Counts {
    /// The proxy's figures now.
    pub(crate) fn of(m: &Monitor) -> Self {
        let s = m.stats();
        let r = m.summary_at(tokio::time::Instant::now());
        Self {
            hashrate: r.hashrate[0],
            accepted: s.accepted,
            rejected: s.rejected,
            invalid: s.invalid,
            upstreams: m.upstreams().active,
            miners: s.miners,
            max_miners: s.max_miners,
            connections: s.connections,
            blocks: m.blocks(),
        }
    }
}

/// The summary line for `now`, with the changes since `last`.
pub(crate) fn line(last: &Counts, now: &Counts) -> String {
    let opened = now.connections.saturating_sub(last.connections);
    // Miners now = miners before + opened - closed.
    let closed = (last.miners + opened).saturating_sub(now.miners);
    format!(
        "proxy {:.2} kH/s, shares: {}/{} +{}, upstreams: {}, miners: {} (max {}) +{}/-{}, invalid: {}, blocks: {}",
        now.hashrate / 1000.0,
        now.accepted,
        now.rejected,
        now.accepted.saturating_sub(last.accepted),
        now.upstreams,
        now.miners,
        now.max_miners,
        opened,
        closed,
        now.invalid,
        now.blocks
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_xmrig_proxys_fields_and_the_changes_since_the_last() {
        let last = Counts {
            accepted: 100,
            miners: 10,
            connections: 12,
            ..Counts::default()
        };
        let now = Counts {
            hashrate: 12_345.0,
            accepted: 115,
            rejected: 2,
            invalid: 1,
            upstreams: 1,
            miners: 11,
            max_miners: 13,
            connections: 15,
            blocks: 0,
        };
        assert_eq!(
            line(&last, &now),
            "proxy 12.35 kH/s, shares: 115/2 +15, upstreams: 1, miners: 11 (max 13) +3/-2, invalid: 1, blocks: 0"
        );
    }
}
