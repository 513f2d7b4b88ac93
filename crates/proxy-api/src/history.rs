//! `GET /1/history`: the proxy's and each pool's hashrate, one point a minute for a day.
//!
//! A point is the average over the period before it: the hashes (sums of accepted share
//! difficulties) counted since the previous point divided by the seconds between the two,
//! in H/s. Pools are named by `host:port`: the upstream connections to one pool are summed.
//! Memory is bounded: [`HISTORY_POINTS`] points, each with at most [`HISTORY_MAX_POOLS`]
//! pools (the rest are summed under [`OTHER_POOLS`]).
//!
//! The `proxy` line is the top-level family's. When the proxy serves two stratum families
//! (CryptoNote and Stratum V1), a second ring of at most [`HISTORY_POINTS`] points holds each
//! family's H/s (`protocols` in the body); a one-family proxy never fills it, so its points
//! and its body stay as they were.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_core::Monitor;
use serde::Serialize;

/// Points kept: a day of minutes.
pub const HISTORY_POINTS: usize = 1440;

/// Time between two points in production.
pub const HISTORY_PERIOD: Duration = Duration::from_secs(60);

/// Most pools in one point.
pub const HISTORY_MAX_POOLS: usize = 16;

/// The name under which the pools past [`HISTORY_MAX_POOLS`] are summed.
pub const OTHER_POOLS: &str = "(other pools)";

/// One point: Unix time in seconds, the proxy's H/s, and H/s per pool name.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    unix: u64,
    proxy: f64,
    pools: Vec<(Arc<str>, f64)>,
}

/// One point of the families' ring: Unix time in seconds and H/s per family name (two
/// families today), only recorded while more than one family is served.
#[derive(Debug, Clone, PartialEq)]
struct FamilyPoint {
    unix: u64,
    rates: Box<[(&'static str, f64)]>,
}

/// What the previous sample counted.
#[derive(Debug, Default)]
struct Last {
    secs: u64,
    proxy: u64,
    /// Hashes per family name.
    families: Vec<(&'static str, u64)>,
    /// Hashes per upstream id.
    upstreams: HashMap<u64, u64>,
}

#[derive(Debug, Default)]
struct Inner {
    points: VecDeque<Point>,
    /// Per-family points, empty unless two families are served.
    families: VecDeque<FamilyPoint>,
    last: Option<Last>,
    /// Shared copies of pool names.
    names: Vec<Arc<str>>,
}

/// The hashrate history (see the module doc). Fed by [`History::record`] (or
/// [`History::sample`], which reads a [`Monitor`]), read by `/1/history`.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

/// One upstream's figures at a sample: its id, the `host:port` of its pool (`None` before its
/// first login), and its hashes since it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSample {
    /// Upstream id.
    pub id: u64,
    /// Pool `host:port`.
    pub pool: Option<String>,
    /// Hashes counted on it since it opened.
    pub hashes: u64,
}

/// The `/1/history` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryBody {
    /// Seconds between points (60 in production).
    pub period: u64,
    /// Most points kept (1440).
    pub capacity: usize,
    /// `[unix_seconds, H/s]` of the proxy, oldest first.
    pub proxy: Vec<(u64, f64)>,
    /// Per pool `host:port`: `[unix_seconds, H/s]` at each point where the pool had an
    /// upstream, oldest first.
    pub pools: BTreeMap<String, Vec<(u64, f64)>>,
    /// Per family name (`cryptonote`, `stratum-v1`): `[unix_seconds, H/s]` at each point
    /// taken while two families were served, oldest first; absent (not serialized) on a
    /// proxy that serves one family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocols: Option<BTreeMap<&'static str, Vec<(u64, f64)>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl History {
    /// Records a point from cumulative counts: `secs` is the stats clock (seconds since the
    /// proxy's start), `unix` the wall time of the point, `proxy` the proxy's hashes since
    /// start, `upstreams` each upstream's. The first call (and any call no later than the
    /// previous one) only sets the baseline. An upstream new since the previous call counts
    /// all its hashes; one that is gone counts nothing.
    pub fn record(&self, secs: u64, unix: u64, proxy: u64, upstreams: &[UpstreamSample]) {
        self.record_families(secs, unix, proxy, &[], upstreams);
    }

    /// [`History::record`] with each family's hashes since start (`(name, hashes)`, the
    /// top-level family first). With two families or more, a point of each family's H/s goes
    /// into the families' ring too (a family new since the previous call counts all its
    /// hashes); with fewer, nothing does.
    pub fn record_families(
        &self,
        secs: u64,
        unix: u64,
        proxy: u64,
        families: &[(&'static str, u64)],
        upstreams: &[UpstreamSample],
    ) {
        let mut g = lock(&self.inner);
        let inner = &mut *g;
        let now = Last {
            secs,
            proxy,
            families: families.to_vec(),
            upstreams: upstreams.iter().map(|u| (u.id, u.hashes)).collect(),
        };
        let Some(last) = inner.last.replace(now) else {
            return;
        };
        if secs <= last.secs {
            return;
        }
        let span = (secs - last.secs) as f64;
        let mut per_pool: BTreeMap<&str, u64> = BTreeMap::new();
        for u in upstreams {
            let Some(pool) = u.pool.as_deref() else {
                continue;
            };
            let before = last.upstreams.get(&u.id).copied().unwrap_or(0);
            *per_pool.entry(pool).or_default() += u.hashes.saturating_sub(before);
        }
        let n = per_pool.len();
        let mut pools: Vec<(Arc<str>, f64)> = Vec::with_capacity(n.min(HISTORY_MAX_POOLS));
        let mut other = None::<u64>;
        for (i, (name, h)) in per_pool.into_iter().enumerate() {
            if n > HISTORY_MAX_POOLS && i + 1 >= HISTORY_MAX_POOLS {
                *other.get_or_insert(0) += h;
                continue;
            }
            let name = match inner.names.iter().find(|n| &***n == name) {
                Some(n) => n.clone(),
                None => {
                    let n: Arc<str> = name.into();
                    inner.names.push(n.clone());
                    n
                }
            };
            pools.push((name, round2(h as f64 / span)));
        }
        if let Some(h) = other {
            pools.push((OTHER_POOLS.into(), round2(h as f64 / span)));
        }
        if inner.points.len() == HISTORY_POINTS {
            inner.points.pop_front();
        }
        if families.len() > 1 {
            let rates = families
                .iter()
                .map(|&(name, h)| {
                    let before = last
                        .families
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or(0, |&(_, b)| b);
                    (name, round2(h.saturating_sub(before) as f64 / span))
                })
                .collect();
            if inner.families.len() == HISTORY_POINTS {
                inner.families.pop_front();
            }
            inner.families.push_back(FamilyPoint { unix, rates });
        }
        inner.points.push_back(Point {
            unix,
            proxy: round2(proxy.saturating_sub(last.proxy) as f64 / span),
            pools,
        });
        // Names no point holds any more are dropped, so that they stay bounded too.
        if inner.names.len() > HISTORY_MAX_POOLS * 4 {
            inner.names.retain(|n| Arc::strong_count(n) > 1);
        }
    }

    /// Records a point from `monitor`'s figures as of now.
    pub fn sample(&self, monitor: &Monitor) {
        let secs = tokio::time::Instant::now()
            .saturating_duration_since(monitor.started())
            .as_secs();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let hashes = monitor.upstream_hashes();
        let upstreams: Vec<UpstreamSample> = monitor
            .upstream_details()
            .into_iter()
            .map(|u| UpstreamSample {
                id: u.id,
                hashes: hashes.get(&u.id).copied().unwrap_or(0),
                pool: u.pool,
            })
            .collect();
        let families: Vec<(&'static str, u64)> = monitor
            .families()
            .iter()
            .map(|f| (f.protocol().name(), f.stats().hashes))
            .collect();
        self.record_families(secs, unix, monitor.stats().hashes, &families, &upstreams);
    }

    /// The body of `/1/history`, for points taken every `period`.
    pub fn body(&self, period: Duration) -> HistoryBody {
        let g = lock(&self.inner);
        let mut pools: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
        for p in &g.points {
            for (name, h) in &p.pools {
                pools
                    .entry(name.to_string())
                    .or_default()
                    .push((p.unix, *h));
            }
        }
        let protocols = (!g.families.is_empty()).then(|| {
            let mut by: BTreeMap<&'static str, Vec<(u64, f64)>> = BTreeMap::new();
            for p in &g.families {
                for &(name, h) in p.rates.iter() {
                    by.entry(name).or_default().push((p.unix, h));
                }
            }
            by
        });
        HistoryBody {
            period: period.as_secs(),
            capacity: HISTORY_POINTS,
            proxy: g.points.iter().map(|p| (p.unix, p.proxy)).collect(),
            pools,
            protocols,
        }
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        lock(&self.inner).points.len()
    }

    /// True before the second sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Samples `monitor` into `history` now and then every `period`, until dropped (the task
/// that runs it is aborted when the API stops).
pub async fn run_sampler(monitor: Monitor, history: Arc<History>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        history.sample(&monitor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: u64, pool: &str, hashes: u64) -> UpstreamSample {
        UpstreamSample {
            id,
            pool: Some(pool.into()),
            hashes,
        }
    }

    #[test]
    fn points_are_rates_over_the_period_summed_per_pool() {
        let h = History::default();
        h.record(0, 1000, 0, &[up(1, "a:1", 0)]);
        assert!(h.is_empty(), "the first sample is the baseline");
        // 60 s later: 6000 hashes in all, 3000 on upstream 1 and 1800 + 1200 on pool b.
        h.record(
            60,
            1060,
            6000,
            &[up(1, "a:1", 3000), up(2, "b:2", 1800), up(3, "b:2", 1200)],
        );
        // Upstream 3 closed; 2 did 600 more.
        h.record(120, 1120, 6600, &[up(1, "a:1", 3000), up(2, "b:2", 2400)]);
        let b = h.body(HISTORY_PERIOD);
        assert_eq!(b.period, 60);
        assert_eq!(b.capacity, 1440);
        assert_eq!(b.proxy, [(1060, 100.0), (1120, 10.0)]);
        assert_eq!(b.pools["a:1"], [(1060, 50.0), (1120, 0.0)]);
        assert_eq!(b.pools["b:2"], [(1060, 50.0), (1120, 10.0)]);
    }

    #[test]
    fn the_history_holds_a_day_and_a_bounded_number_of_pools() {
        let h = History::default();
        let pools: Vec<String> = (0..40).map(|i| format!("p{i:02}:1")).collect();
        for t in 0..(HISTORY_POINTS as u64 + 10) {
            let ups: Vec<UpstreamSample> = pools
                .iter()
                .enumerate()
                .map(|(i, p)| up(i as u64, p, t * 60))
                .collect();
            h.record(t * 60, t * 60, t * 60, &ups);
        }
        assert_eq!(h.len(), HISTORY_POINTS);
        let b = h.body(HISTORY_PERIOD);
        assert_eq!(b.proxy.len(), HISTORY_POINTS);
        // 1450 samples: the first is the baseline, 1449 points, the 9 oldest dropped.
        assert_eq!(b.proxy[0].0, 10 * 60, "the oldest points went first");
        assert_eq!(b.pools.len(), HISTORY_MAX_POOLS);
        // 25 pools of 1 H/s each are summed under one name.
        assert_eq!(b.pools[OTHER_POOLS][0].1, 25.0);
        assert_eq!(b.pools["p00:1"][0].1, 1.0);
        assert!(lock(&h.inner).names.len() <= HISTORY_MAX_POOLS * 4);
    }

    #[test]
    fn a_point_stays_small() {
        // docs/API.md: 1440 points of 40 bytes, plus 24 bytes per pool in each; with two
        // families, 1440 more of 24 bytes plus 24 per family.
        assert_eq!(std::mem::size_of::<Point>(), 40);
        assert_eq!(std::mem::size_of::<(Arc<str>, f64)>(), 24);
        assert_eq!(std::mem::size_of::<FamilyPoint>(), 24);
        assert_eq!(std::mem::size_of::<(&'static str, f64)>(), 24);
    }

    #[test]
    fn two_families_get_a_line_each_and_one_family_keeps_the_body_as_it_was() {
        let h = History::default();
        h.record_families(0, 1000, 0, &[("cryptonote", 0)], &[]);
        h.record_families(60, 1060, 600, &[("cryptonote", 600)], &[]);
        let one = h.body(HISTORY_PERIOD);
        assert_eq!(one.protocols, None, "one family: no ring, no field");
        assert!(!serde_json::to_string(&one).unwrap().contains("protocols"));

        let h = History::default();
        let fams = |cn: u64, sv1: u64| [("cryptonote", cn), ("stratum-v1", sv1)];
        h.record_families(0, 1000, 0, &fams(0, 0), &[]);
        // An SV1 share of difficulty 1 counts 2^32 hashes: SV1 rates are large.
        h.record_families(60, 1060, 600, &fams(600, 60 << 32), &[]);
        h.record_families(120, 1120, 1800, &fams(1800, 90 << 32), &[]);
        let b = h.body(HISTORY_PERIOD);
        assert_eq!(
            b.proxy,
            [(1060, 10.0), (1120, 20.0)],
            "the top-level family's"
        );
        let p = b.protocols.expect("two families");
        assert_eq!(p["cryptonote"], [(1060, 10.0), (1120, 20.0)]);
        assert_eq!(
            p["stratum-v1"],
            [(1060, 4_294_967_296.0), (1120, 2_147_483_648.0)]
        );
        let json = serde_json::to_value(h.body(HISTORY_PERIOD)).unwrap();
        assert_eq!(json["protocols"]["stratum-v1"][0][0], 1060);
    }

    #[test]
    fn the_families_ring_holds_a_day_too() {
        let h = History::default();
        for t in 0..(HISTORY_POINTS as u64 + 5) {
            h.record_families(t, t, t, &[("cryptonote", t), ("stratum-v1", t << 32)], &[]);
        }
        assert_eq!(lock(&h.inner).families.len(), HISTORY_POINTS);
        let p = h.body(HISTORY_PERIOD).protocols.unwrap();
        assert_eq!(p["stratum-v1"].len(), HISTORY_POINTS);
        assert_eq!(p["stratum-v1"][0].0, 5, "the oldest points went first");
    }

    #[test]
    fn a_clock_that_did_not_move_records_no_point() {
        let h = History::default();
        h.record(5, 5, 0, &[]);
        h.record(5, 5, 100, &[]);
        assert!(h.is_empty());
        h.record(15, 15, 200, &[]);
        assert_eq!(h.body(HISTORY_PERIOD).proxy, [(15, 10.0)]);
    }
}
