//! `/1/summary` against a real proxy and mock pool, through tower's `oneshot` (no HTTP
//! socket), with the API's clock set by the test.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use test_support::mock_pool::Reply;

#[tokio::test]
async fn summary_counts_a_scripted_share_flow() {
    let (pool, proxy) = start(|_| {}).await;
    pool.set_reply(Reply::OkAfter(Duration::from_millis(30)));
    let mut m = miner(&proxy, "wallet", Some("rig")).await;
    // Three shares on a job of difficulty 1000; their hashes meet 1000, 5000 and 2000.
    for (i, d) in [1000, 5000, 2000].into_iter().enumerate() {
        accepted(&mut m, i as u8, d).await;
    }
    invalid(&mut m).await;
    let monitor = proxy.monitor();
    until(&monitor, |m| m.stats().accepted == 3).await;

    let (app, clock) = app_at(&proxy, Duration::from_secs(30));
    let (status, v) = get_json(&app, "/1/summary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["mode"], "nicehash");
    assert_eq!(v["kind"], "proxy");
    assert_eq!(v["version"], proxy_api::VERSION);
    assert!(v["ua"].as_str().unwrap().starts_with("stratum-proxy/"));
    assert_eq!(v["restricted"], false);
    assert!(v["resources"]["hardware_concurrency"].as_u64().unwrap() >= 1);
    assert_eq!(v["uptime"], 30);
    assert_eq!(v["miners"]["now"], 1);
    assert_eq!(v["miners"]["max"], 1);
    assert_eq!(v["workers"], 1);
    assert_eq!(v["upstreams"]["active"], 1);
    assert_eq!(v["upstreams"]["total"], 1);
    assert_eq!(v["upstreams"]["ratio"], 1.0);
    let r = &v["results"];
    assert_eq!(r["accepted"], 3);
    assert_eq!(r["rejected"], 0);
    assert_eq!(r["invalid"], 1);
    assert_eq!(r["expired"], 0);
    assert_eq!(r["hashes_total"], 3000);
    assert_eq!(r["avg_time"], 10);
    assert!(r["latency"].as_u64().unwrap() >= 30, "{r}");
    assert_eq!(
        r["best"],
        serde_json::json!([5000, 2000, 1000, 0, 0, 0, 0, 0, 0, 0])
    );
    assert_eq!(r["blocks"], 0);
    // 3000 hashes: over 60 s, 600 s, 1 h, 12 h, 24 h, and 30 s of uptime.
    assert_eq!(
        v["hashrate"]["total"],
        serde_json::json!([50.0, 5.0, 0.83, 0.07, 0.03, 100.0])
    );

    // Two minutes later the shares have left the 60 s window only.
    clock.set(&monitor, Duration::from_secs(120));
    let (_, v) = get_json(&app, "/1/summary").await;
    assert_eq!(v["uptime"], 120);
    assert_eq!(v["results"]["avg_time"], 40);
    assert_eq!(
        v["hashrate"]["total"],
        serde_json::json!([0.0, 5.0, 0.83, 0.07, 0.03, 25.0])
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn summary_reads_xmrig_api_ids_and_the_system_clock_router() {
    let (_pool, proxy) = start(|c| {
        c.unknown_keys.insert(
            "api".into(),
            serde_json::json!({"id": "peerproxy", "worker-id": "peer-proxy-1"}),
        );
    })
    .await;
    let (status, v) = get_json(&proxy_api::router(proxy.monitor()), "/1/summary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["id"], "peerproxy");
    assert_eq!(v["worker_id"], "peer-proxy-1");
    assert_eq!(v["results"]["accepted"], 0);
    assert_eq!(
        v["hashrate"]["total"],
        serde_json::json!([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}
