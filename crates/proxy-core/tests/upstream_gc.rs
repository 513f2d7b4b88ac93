//! The splitter's GC (RFC §8.1 `GC`) on tokio's paused clock: an empty NiceHash upstream is
//! closed once it has had no miner for `EMPTY_MAPPER_TTL`, counted from its last miner's
//! leaving, and not before. The GC looks only at the upstreams listed when they became
//! empty; one that got a miner and lost it again is looked at again from then.

mod common;

use std::time::Duration;

use proxy_core::{Proxy, ProxyHandle, EMPTY_MAPPER_TTL};
use test_support::miner::TestMiner;
use test_support::mock_pool::{make_job, MockPool};
use tokio::time::Instant;

/// Waits (virtual time) until the proxy's one upstream has no miner.
async fn until_empty(proxy: &ProxyHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.mapper_loads() != [0] {
        assert!(
            Instant::now() < deadline,
            "loads {:?}",
            proxy.mapper_loads()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_upstream_closes_its_keep_time_after_its_last_miner_left() {
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let proxy = Proxy::start(common::local_config(&[pool.addr()]))
        .await
        .unwrap();
    let addr = proxy.local_addrs()[0];
    let mut a = TestMiner::connect(addr).await.unwrap();
    a.login("a").await.unwrap();
    drop(a);
    until_empty(&proxy).await;
    tokio::time::sleep(EMPTY_MAPPER_TTL / 2).await;
    let mut b = TestMiner::connect(addr).await.unwrap();
    b.login("b").await.unwrap();
    assert_eq!(pool.connections_total(), 1, "b took the idle upstream");
    drop(b);
    until_empty(&proxy).await;
    let emptied = Instant::now();
    // Past the keep time counted from a's leaving, within the one from b's.
    tokio::time::sleep(EMPTY_MAPPER_TTL / 2 + Duration::from_secs(5)).await;
    assert_eq!(
        proxy.upstreams().total,
        1,
        "kept: b left less than 60 s ago"
    );
    assert_eq!(pool.connections_open(), 1);
    let deadline = emptied + EMPTY_MAPPER_TTL + Duration::from_secs(3);
    while proxy.upstreams().total != 0 {
        assert!(Instant::now() < deadline, "not closed in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(emptied.elapsed() >= EMPTY_MAPPER_TTL, "closed early");
    assert!(
        pool.wait_for(Duration::from_secs(5), |p| p.connections_open() == 0)
            .await
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}
