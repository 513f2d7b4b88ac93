//! The miner timeouts of RFC §6 (login 10 s, inactivity 600 s), on tokio's paused clock: the
//! runtime jumps to the next timer whenever every task is idle, so minutes pass in
//! milliseconds.

mod common;

use std::time::Duration;

use proxy_core::{Config, Proxy, INACTIVITY_TIMEOUT};
use serde_json::json;
use test_support::miner::{TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool};
use tokio::time::Instant;

fn config(pool: &MockPool) -> Config {
    common::local_config(&[pool.addr()])
}

#[tokio::test(start_paused = true)]
async fn a_miner_that_never_logs_in_is_closed_after_10_s() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    common::assert_closed_at_login_timeout(&mut m).await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn keepalived_keeps_a_miner_and_silence_closes_it_after_600_s() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.login("wallet").await.unwrap();
    let session = m.session.clone().unwrap();
    // Two keepalives 400 s apart keep it past 600 s since login.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(400)).await;
        let id = m
            .request("keepalived", json!({"id": session}))
            .await
            .unwrap();
        assert_eq!(
            m.reply(id, WAIT).await.unwrap()["result"]["status"],
            "KEEPALIVED"
        );
    }
    let t0 = Instant::now();
    assert!(
        m.closed_within(INACTIVITY_TIMEOUT + Duration::from_secs(5))
            .await
    );
    assert!(
        t0.elapsed() >= INACTIVITY_TIMEOUT,
        "closed after {:?}",
        t0.elapsed()
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}
