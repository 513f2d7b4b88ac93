//! `GET /metrics` parses as Prometheus text and agrees with a scripted share flow.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use test_support::mock_pool::Reply;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let s = find(scrape, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

#[tokio::test]
async fn metrics_parse_and_match_the_share_flow() {
    let (pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let mut m = miner(&proxy, "WALLET1", Some("rig-A")).await;
    for i in 0..3 {
        accepted(&mut m, i, 1000).await;
    }
    invalid(&mut m).await;
    pool.set_reply(Reply::Error("Low difficulty share".into()));
    let r = share(&mut m, 9, 1000).await;
    assert!(!r["error"].is_null(), "{r}");
    until(&monitor, |m| {
        m.stats().accepted == 3 && m.stats().rejected == 1
    })
    .await;

    let (app, _clock) = app_at(&proxy, Duration::from_secs(30));
    let (s, h, text) = send(&app, Method::GET, "/metrics", &[], "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], proxy_api::OPENMETRICS_CONTENT_TYPE);
    assert_eq!(text.lines().last(), Some("# EOF"));
    let scrape = parse(&text);

    let shares = |r| value(&scrape, "stratum_proxy_shares_total", &[("result", r)]);
    assert_eq!(shares("accepted"), 3.0);
    assert_eq!(shares("rejected"), 1.0);
    assert_eq!(shares("invalid"), 1.0);
    assert_eq!(shares("expired"), 0.0);
    assert_eq!(
        value(&scrape, "stratum_proxy_custom_diff_shares_total", &[]),
        0.0
    );
    assert_eq!(value(&scrape, "stratum_proxy_hashes_total", &[]), 3000.0);
    assert_eq!(value(&scrape, "stratum_proxy_blocks_total", &[]), 0.0);
    assert_eq!(value(&scrape, "stratum_proxy_connections_total", &[]), 1.0);
    assert_eq!(value(&scrape, "stratum_proxy_miners", &[]), 1.0);
    assert_eq!(value(&scrape, "stratum_proxy_miners_max", &[]), 1.0);
    assert_eq!(value(&scrape, "stratum_proxy_workers", &[]), 1.0);
    assert_eq!(value(&scrape, "stratum_proxy_uptime_seconds", &[]), 30.0);
    let rate = |w| value(&scrape, "stratum_proxy_hashrate", &[("window", w)]);
    assert_eq!(rate("60s"), 50.0);
    assert_eq!(rate("600s"), 5.0);
    assert_eq!(rate("all"), 100.0);

    assert_eq!(
        value(&scrape, "stratum_proxy_upstreams", &[("state", "active")]),
        1.0
    );
    assert_eq!(
        value(&scrape, "stratum_proxy_upstreams", &[("state", "error")]),
        0.0
    );
    let pool_url = pool.addr().to_string();
    let up = |state| {
        value(
            &scrape,
            "stratum_proxy_upstream_state",
            &[
                ("upstream", "1"),
                ("pool", pool_url.as_str()),
                ("state", state),
            ],
        )
    };
    assert_eq!(
        (up("active"), up("connecting"), up("error"), up("stopped")),
        (1.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(
        value(
            &scrape,
            "stratum_proxy_upstream_miners",
            &[("pool", pool_url.as_str())]
        ),
        1.0
    );

    // Latency: a histogram of the three pool-accepted shares.
    assert_eq!(
        value(&scrape, "stratum_proxy_pool_latency_seconds_count", &[]),
        3.0
    );
    let hist = find(&scrape, "stratum_proxy_pool_latency_seconds", &[]).unwrap();
    let Value::Histogram(buckets) = &hist.value else {
        panic!("{:?}", hist.value)
    };
    assert_eq!(buckets.len(), 13);
    assert_eq!(buckets.last().unwrap().less_than, f64::INFINITY);
    assert_eq!(buckets.last().unwrap().count, 3.0);
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));

    // Per worker.
    let w = |name, labels: &[(&str, &str)]| {
        let mut l = vec![("worker", "rig-A")];
        l.extend_from_slice(labels);
        value(&scrape, name, &l)
    };
    assert_eq!(
        w("stratum_proxy_worker_hashrate", &[("window", "60s")]),
        50.0
    );
    assert_eq!(
        w("stratum_proxy_worker_hashrate", &[("window", "600s")]),
        5.0
    );
    assert_eq!(
        w(
            "stratum_proxy_worker_shares_total",
            &[("result", "accepted")]
        ),
        3.0
    );
    assert_eq!(
        w(
            "stratum_proxy_worker_shares_total",
            &[("result", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        w(
            "stratum_proxy_worker_shares_total",
            &[("result", "invalid")]
        ),
        1.0
    );
    assert_eq!(w("stratum_proxy_worker_hashes_total", &[]), 3000.0);
    assert_eq!(w("stratum_proxy_worker_connections", &[]), 1.0);

    // Every family has its help text.
    for family in [
        "stratum_proxy_shares",
        "stratum_proxy_hashes",
        "stratum_proxy_miners",
        "stratum_proxy_upstreams",
        "stratum_proxy_upstream_state",
        "stratum_proxy_pool_latency_seconds",
        "stratum_proxy_worker_hashrate",
        "stratum_proxy_worker_shares",
    ] {
        assert!(scrape.docs.contains_key(family), "no HELP for {family}");
    }
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn worker_names_are_escaped_in_labels() {
    let (_pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let mut m = miner(&proxy, "W", Some("rig \"quoted\" \\ name")).await;
    accepted(&mut m, 0, 1000).await;
    until(&monitor, |m| m.stats().accepted == 1).await;
    let text =
        proxy_api::metrics_text(monitor, std::sync::Arc::new(tokio::time::Instant::now)).unwrap();
    assert!(
        text.contains(r#"stratum_proxy_worker_hashes_total{protocol="cryptonote",worker="rig \"quoted\" \\ name"} 1000"#),
        "{text}"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_workers_series_go_when_its_idle_record_expires() {
    let (_pool, proxy) = start(|c| c.workers_idle_timeout = 1).await;
    let monitor = proxy.monitor();
    let text = |monitor| {
        proxy_api::metrics_text(monitor, std::sync::Arc::new(tokio::time::Instant::now)).unwrap()
    };
    let mut m = miner(&proxy, "W", Some("rig-gone")).await;
    accepted(&mut m, 0, 1000).await;
    until(&monitor, |m| m.stats().accepted == 1).await;
    assert!(text(monitor.clone()).contains(
        r#"stratum_proxy_worker_hashes_total{protocol="cryptonote",worker="rig-gone"} 1000"#
    ));
    drop(m);
    // Idle for the 1 s timeout, then removed by the proxy's 1 s tick.
    until(&monitor, |m| m.worker_count() == 0).await;
    let after = text(monitor);
    assert!(!after.contains("rig-gone"), "{after}");
    assert!(
        after.contains(r#"stratum_proxy_workers{protocol="cryptonote"} 0"#),
        "{after}"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}
