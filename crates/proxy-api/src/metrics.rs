//! `GET /metrics`: the proxy's figures as Prometheus metrics, encoded by `prometheus-client`
//! in the OpenMetrics text format on every scrape (a [`Collector`] reading the [`Monitor`];
//! nothing is counted twice). The metric names and labels are listed in `docs/METRICS.md`.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use proxy_core::{Monitor, UpstreamState};

use crate::Clock;

/// The `Content-Type` of `/metrics`: the OpenMetrics text format, which Prometheus reads.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads the proxy's figures at every scrape.
struct ProxyCollector {
    monitor: Monitor,
    clock: Clock,
}

impl fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyCollector")
    }
}

/// Writes one metric family whose members are `(labels, value)`.
fn family<L, M>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    members: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: EncodeMetric + Default,
{
    let mut e = enc.encode_descriptor(name, help, unit, M::default().metric_type())?;
    for (labels, metric) in members {
        metric.encode(e.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one metric without labels.
fn single<M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: M,
) -> fmt::Result {
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn state_name(s: UpstreamState) -> &'static str {
    match s {
        UpstreamState::Connecting => "connecting",
        UpstreamState::Active => "active",
        UpstreamState::Error => "error",
        UpstreamState::Stopped => "stopped",
    }
}

/// The windows reported per worker, with their index in the worker hashrates.
const WORKER_WINDOWS: [(&str, usize); 2] = [("60s", 0), ("600s", 1)];

/// The windows of the proxy's hashrate, in summary order.
const WINDOWS: [&str; 6] = ["60s", "600s", "3600s", "12h", "24h", "all"];

/// One family's figures of a scrape.
struct Figures {
    /// The `protocol` label.
    protocol: &'static str,
    monitor: Monitor,
    snap: proxy_core::StatsSnapshot,
    sum: proxy_core::StatsSummary,
}

impl Collector for ProxyCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let at = (self.clock)();
        let m = &self.monitor;
        let e = &mut enc;
        // Every family the process serves, each series labelled with its `protocol`.
        let fams: Vec<Figures> = m
            .families()
            .into_iter()
            .map(|f| Figures {
                protocol: f.protocol().name(),
                snap: f.stats(),
                sum: f.summary_at(at),
                monitor: f,
            })
            .collect();
        let per = |value: fn(&Figures) -> u64| {
            fams.iter()
                .map(move |f| ([("protocol", f.protocol)], value(f)))
                .collect::<Vec<_>>()
        };
        let counters = |value: fn(&Figures) -> u64| {
            per(value)
                .into_iter()
                .map(|(l, v)| (l, ConstCounter::new(v)))
        };
        let gauges = |value: fn(&Figures) -> u64| {
            per(value).into_iter().map(|(l, v)| (l, ConstGauge::new(v)))
        };

        family(
            e,
            "stratum_proxy_shares",
            "Shares by result: accepted and rejected by the pool, invalid (refused by the proxy), expired (forwarded for the previous job)",
            None,
            fams.iter().flat_map(|f| {
                [
                    ("accepted", f.sum.accepted),
                    ("rejected", f.sum.rejected),
                    ("invalid", f.sum.invalid),
                    ("expired", f.sum.expired),
                ]
                .map(|(r, v)| ([("protocol", f.protocol), ("result", r)], ConstCounter::new(v)))
            }),
        )?;
        family(
            e,
            "stratum_proxy_custom_diff_shares",
            "Shares the proxy accepted itself at a miner's custom difficulty, not forwarded",
            None,
            counters(|f| f.sum.custom_accepted),
        )?;
        family(
            e,
            "stratum_proxy_hashes",
            "Sum of the difficulties of accepted shares (Stratum V1: difficulty x 2^32 each)",
            None,
            counters(|f| f.sum.hashes),
        )?;
        family(
            e,
            "stratum_proxy_blocks",
            "Blocks accepted by daemon upstreams",
            None,
            counters(|f| f.monitor.blocks()),
        )?;
        family(
            e,
            "stratum_proxy_connections",
            "Miner TCP connections accepted since start",
            None,
            counters(|f| f.snap.connections),
        )?;
        family(
            e,
            "stratum_proxy_miners",
            "Miners connected now",
            None,
            gauges(|f| f.snap.miners),
        )?;
        family(
            e,
            "stratum_proxy_miners_max",
            "Most miners connected at once since start",
            None,
            gauges(|f| f.snap.max_miners),
        )?;
        family(
            e,
            "stratum_proxy_workers",
            "Worker records",
            None,
            gauges(|f| f.monitor.worker_count() as u64),
        )?;
        single(
            e,
            "stratum_proxy_uptime_seconds",
            "Seconds since the proxy started",
            ConstGauge::new(at.saturating_duration_since(m.started()).as_secs()),
        )?;
        family(
            e,
            "stratum_proxy_hashrate",
            "Hashrate in H/s (accepted difficulty per second) over a window; all = since start",
            None,
            fams.iter().flat_map(|f| {
                WINDOWS.iter().zip(f.sum.hashrate).map(|(w, v)| {
                    (
                        [("protocol", f.protocol), ("window", *w)],
                        ConstGauge::new(v),
                    )
                })
            }),
        )?;
        family(
            e,
            "stratum_proxy_upstreams",
            "Upstream pool connections by state: active (with miners), sleep (no miners), error (connecting or failing)",
            None,
            fams.iter().flat_map(|f| {
                let u = f.monitor.upstreams();
                [("active", u.active), ("sleep", u.sleep), ("error", u.error)]
                    .map(|(s, v)| ([("protocol", f.protocol), ("state", s)], ConstGauge::new(v)))
            }),
        )?;
        let details = m.upstream_details();
        let label = |d: &proxy_core::UpstreamInfo| {
            (
                d.id.to_string(),
                d.pool.clone().unwrap_or_default(),
                d.protocol.name().to_string(),
            )
        };
        family(
            e,
            "stratum_proxy_upstream_state",
            "1 for the state each upstream connection is in, 0 for the others; pool = host:port of its latest login",
            None,
            details.iter().flat_map(|d| {
                let (id, pool, protocol) = label(d);
                [
                    UpstreamState::Connecting,
                    UpstreamState::Active,
                    UpstreamState::Error,
                    UpstreamState::Stopped,
                ]
                .map(|s| {
                    (
                        [
                            ("protocol", protocol.clone()),
                            ("upstream", id.clone()),
                            ("pool", pool.clone()),
                            ("state", state_name(s).to_string()),
                        ],
                        ConstGauge::new(i64::from(d.state == s)),
                    )
                })
            }),
        )?;
        family(
            e,
            "stratum_proxy_upstream_miners",
            "Miners on each upstream connection",
            None,
            details.iter().map(|d| {
                let (id, pool, protocol) = label(d);
                (
                    [("protocol", protocol), ("upstream", id), ("pool", pool)],
                    ConstGauge::new(d.miners as u64),
                )
            }),
        )?;

        let mut he = e.encode_descriptor(
            "stratum_proxy_pool_latency",
            "Time the pool took to accept a share",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for f in &fams {
            let h = f.monitor.latency_histogram();
            let mut prev = 0;
            let per_bucket: Vec<(f64, u64)> = h
                .buckets
                .iter()
                .map(|&(bound, cumulative)| {
                    let n = cumulative - prev;
                    prev = cumulative;
                    (bound, n)
                })
                .collect();
            let labels = [("protocol", f.protocol)];
            he.encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum_seconds,
                    h.count,
                    &per_bucket,
                    None,
                )?;
        }

        let workers: Vec<(String, proxy_core::WorkerSummary)> = fams
            .iter()
            .flat_map(|f| {
                f.monitor
                    .workers_at(at)
                    .workers
                    .into_iter()
                    .map(|w| (f.protocol.to_string(), w))
            })
            .collect();
        family(
            e,
            "stratum_proxy_worker_hashrate",
            "Hashrate of a worker in H/s over a window",
            None,
            workers.iter().flat_map(|(p, w)| {
                WORKER_WINDOWS.map(|(name, i)| {
                    (
                        [
                            ("protocol", p.clone()),
                            ("worker", w.name.clone()),
                            ("window", name.to_string()),
                        ],
                        ConstGauge::new(w.hashrate[i]),
                    )
                })
            }),
        )?;
        family(
            e,
            "stratum_proxy_worker_shares",
            "Shares of a worker by result: accepted, rejected (by the pool), invalid (by the proxy)",
            None,
            workers.iter().flat_map(|(p, w)| {
                [
                    ("accepted", w.accepted),
                    ("rejected", w.rejected),
                    ("invalid", w.invalid),
                ]
                .map(|(r, v)| {
                    (
                        [
                            ("protocol", p.clone()),
                            ("worker", w.name.clone()),
                            ("result", r.to_string()),
                        ],
                        ConstCounter::new(v),
                    )
                })
            }),
        )?;
        family(
            e,
            "stratum_proxy_worker_hashes",
            "Sum of the difficulties of a worker's accepted shares",
            None,
            workers.iter().map(|(p, w)| {
                (
                    [("protocol", p.clone()), ("worker", w.name.clone())],
                    ConstCounter::new(w.hashes),
                )
            }),
        )?;
        family(
            e,
            "stratum_proxy_worker_connections",
            "Connections of a worker open now",
            None,
            workers.iter().map(|(p, w)| {
                (
                    [("protocol", p.clone()), ("worker", w.name.clone())],
                    ConstGauge::new(w.connections),
                )
            }),
        )?;
        Ok(())
    }
}

/// A registry holding the proxy's collector.
pub(crate) fn registry(monitor: Monitor, clock: Clock) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(ProxyCollector { monitor, clock }));
    r
}

/// Encodes a registry's metrics in the OpenMetrics text format.
pub(crate) fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// The `/metrics` text for `monitor` as of `clock` (what the route serves).
///
/// # Errors
/// Only if formatting fails, which writing to a `String` does not.
pub fn metrics_text(monitor: Monitor, clock: Clock) -> Result<String, fmt::Error> {
    encode(&registry(monitor, clock))
}
