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
//!
//! A proxy serving two stratum families prints a line per family, the top-level one first,
//! each with the family's own figures and its name after `proxy`; CryptoNote's hashrate stays
//! in kH/s, Stratum V1's takes the prefix that fits (an SV1 share of difficulty `d` counts
//! `d · 2^32` hashes, so its rates are large):
//!
//! ```text
//! proxy cryptonote 1.23 kH/s, shares: 120/2 +15, upstreams: 1, miners: 40 (max 42) +3/-1, invalid: 0, blocks: 0
//! proxy stratum-v1 4.56 TH/s, shares: 30/0 +4, upstreams: 1, miners: 3 (max 3) +0/-0, invalid: 0, blocks: 0
//! ```

use proxy_core::config::Protocol;
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

/// Each family's figures now, the top-level family first.
pub(crate) fn of_families(m: &Monitor) -> Vec<(Protocol, Counts)> {
    m.families()
        .iter()
        .map(|f| (f.protocol(), Counts::of(f)))
        .collect()
}

/// The summary lines for `now`, with the changes since `last` (as [`of_families`] gives
/// them): the one line of [`line()`] for one family, a line per family ([`family_line`]) for
/// more. A family missing from `last` counts from zero.
pub(crate) fn lines(last: &[(Protocol, Counts)], now: &[(Protocol, Counts)]) -> Vec<String> {
    if let [(_, only)] = now {
        let before = last.first().map(|(_, c)| *c).unwrap_or_default();
        return vec![line(&before, only)];
    }
    now.iter()
        .map(|(p, c)| {
            let before = last
                .iter()
                .find(|(q, _)| q == p)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            family_line(*p, &before, c)
        })
        .collect()
}

/// `rate` H/s with the SI prefix that fits, two decimals (`4.56 TH/s`).
fn scaled_rate(mut rate: f64) -> String {
    const UNITS: [&str; 7] = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
    let mut i = 0;
    while rate >= 1000.0 && i < UNITS.len() - 1 {
        rate /= 1000.0;
        i += 1;
    }
    format!("{rate:.2} {}", UNITS[i])
}

/// One family's line when two are served: `proxy <family> ` then [`line()`]'s fields, the
/// hashrate in kH/s for CryptoNote and with the prefix that fits for Stratum V1.
pub(crate) fn family_line(protocol: Protocol, last: &Counts, now: &Counts) -> String {
    let rate = match protocol {
        Protocol::CryptoNote => kilo_rate(now.hashrate),
        Protocol::StratumV1 => scaled_rate(now.hashrate),
    };
    format!("proxy {protocol} {rate}{}", fields(last, now))
}

/// `rate` H/s in kH/s, two decimals, as xmrig-proxy prints it (`1.23 kH/s`).
fn kilo_rate(rate: f64) -> String {
    format!("{:.2} kH/s", rate / 1000.0)
}

/// The summary line for `now`, with the changes since `last`.
pub(crate) fn line(last: &Counts, now: &Counts) -> String {
    format!("proxy {}{}", kilo_rate(now.hashrate), fields(last, now))
}

/// The line's fields after the hashrate, from `, shares:` on.
fn fields(last: &Counts, now: &Counts) -> String {
    let opened = now.connections.saturating_sub(last.connections);
    // Miners now = miners before + opened - closed.
    let closed = (last.miners + opened).saturating_sub(now.miners);
    format!(
        ", shares: {}/{} +{}, upstreams: {}, miners: {} (max {}) +{}/-{}, invalid: {}, blocks: {}",
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

    /// A period's counts before and after: 15 shares accepted, 3 connections opened, 2
    /// closed.
    fn counts() -> (Counts, Counts) {
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
        (last, now)
    }

    #[test]
    fn the_line_has_xmrig_proxys_fields_and_the_changes_since_the_last() {
        let (last, now) = counts();
        assert_eq!(
            line(&last, &now),
            "proxy 12.35 kH/s, shares: 115/2 +15, upstreams: 1, miners: 11 (max 13) +3/-2, invalid: 1, blocks: 0"
        );
    }

    #[test]
    fn one_family_prints_one_line_as_before_and_two_print_a_line_each() {
        let (cn_last, cn_now) = counts();
        let cn = Protocol::CryptoNote;
        assert_eq!(
            lines(&[(cn, cn_last)], &[(cn, cn_now)]),
            [line(&cn_last, &cn_now)],
            "a CryptoNote-only proxy: today's line"
        );
        // An SV1 share of difficulty 1 counts 2^32 hashes: 4.56 TH/s is about 1062 such
        // shares a second.
        let sv1 = Protocol::StratumV1;
        let sv1_now = Counts {
            hashrate: 4.56e12,
            accepted: 30,
            upstreams: 1,
            miners: 3,
            max_miners: 3,
            connections: 3,
            ..Counts::default()
        };
        let sv1_last = Counts {
            accepted: 26,
            miners: 3,
            connections: 3,
            ..Counts::default()
        };
        assert_eq!(
            lines(&[(cn, cn_last), (sv1, sv1_last)], &[(cn, cn_now), (sv1, sv1_now)]),
            [
                "proxy cryptonote 12.35 kH/s, shares: 115/2 +15, upstreams: 1, miners: 11 (max 13) +3/-2, invalid: 1, blocks: 0",
                "proxy stratum-v1 4.56 TH/s, shares: 30/0 +4, upstreams: 1, miners: 3 (max 3) +0/-0, invalid: 0, blocks: 0",
            ]
        );
        // A family the previous line did not have counts from zero.
        assert_eq!(
            lines(&[(cn, cn_last)], &[(cn, cn_now), (sv1, sv1_now)])[1],
            "proxy stratum-v1 4.56 TH/s, shares: 30/0 +30, upstreams: 1, miners: 3 (max 3) +3/-0, invalid: 0, blocks: 0"
        );
    }

    #[test]
    fn an_sv1_rate_takes_the_prefix_that_fits() {
        assert_eq!(scaled_rate(0.0), "0.00 H/s");
        assert_eq!(scaled_rate(999.0), "999.00 H/s");
        assert_eq!(scaled_rate(1_500.0), "1.50 kH/s");
        assert_eq!(scaled_rate(2.5e15), "2.50 PH/s");
        assert_eq!(scaled_rate(3.0e21), "3000.00 EH/s");
    }
}
