//! `/1/summary` against a real proxy and mock pool, through tower's `oneshot` (no HTTP socket).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proxy_core::config::{BindAddr, PoolConfig};
use proxy_core::{Config, Proxy};
use serde_json::Value;
use test_support::miner::{result_for_difficulty, TestMiner};
use test_support::mock_pool::{make_job, MockPool};
use tower::ServiceExt;

#[tokio::test]
async fn summary_counts_a_scripted_share_flow() {
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let config = Config {
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: false,
        }],
        pools: vec![PoolConfig {
            url: pool.addr().to_string(),
            user: "W".into(),
            ..PoolConfig::default()
        }],
        ..Config::default()
    };
    let proxy = Proxy::start(config).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.login("wallet").await.unwrap();
    let job = m.job.clone().unwrap();
    let fb = &job.blob[84..86];
    for i in 0..3 {
        let r = m
            .submit(
                &job.job_id,
                &format!("0{i}0000{fb}"),
                &result_for_difficulty(1000),
            )
            .await
            .unwrap();
        assert_eq!(r["result"]["status"], "OK");
    }
    let app = proxy_api::router(proxy.monitor());
    let res = app
        .oneshot(Request::get("/1/summary").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["mode"], "nicehash");
    assert_eq!(v["miners"]["now"], 1);
    assert_eq!(v["results"]["accepted"], 3);
    assert_eq!(v["results"]["hashes_total"], 3000);
    assert_eq!(v["upstreams"]["active"], 1);
    assert_eq!(v["upstreams"]["ratio"], 1.0);
    proxy.shutdown(Duration::from_secs(1)).await;
}
