//! Per-IP connection rate limiting through real sockets (RFC §17): with 30 connections per
//! minute the 31st from one IP is closed at once without a byte read or sent, the IP stays
//! banned, and other IPs are served. (Ban expiry and refill run on a fake clock in the unit
//! tests of `ratelimit.rs`.)

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proxy_core::config::RateLimit;
use proxy_core::{Config, Proxy};
use test_support::miner::TestMiner;
use test_support::mock_pool::{make_job, MockPool};
use tokio::time::Instant;

fn config(pool: &MockPool, per_minute: u32, ban: u64) -> Config {
    Config {
        rate_limit: RateLimit {
            max_connections_per_minute: per_minute,
            ban_duration: ban,
            ..RateLimit::default()
        },
        ..common::local_config(&[pool.addr()])
    }
}

/// Asserts the proxy closes `m` promptly without sending anything.
async fn assert_refused(m: &mut TestMiner, what: &str) {
    let t0 = Instant::now();
    let got = m.recv(Duration::from_secs(5)).await;
    assert!(got.is_err(), "{what}: got {got:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "{what}: closed after {:?}, not at once",
        t0.elapsed()
    );
}

async fn connect_from(addr: SocketAddr, ip: &str) -> TestMiner {
    let ip: IpAddr = ip.parse().unwrap();
    TestMiner::connect_from(addr, Some(ip)).await.unwrap()
}

#[tokio::test]
async fn the_31st_connection_in_a_minute_is_refused_and_the_ip_stays_banned() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool, 30, 300)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    let mut served = Vec::new();
    for i in 0..30 {
        let mut m = connect_from(addr, "127.0.0.1").await;
        m.login(&format!("miner{i}"))
            .await
            .unwrap_or_else(|e| panic!("connection {}: {e:#}", i + 1));
        served.push(m);
    }
    let mut m31 = connect_from(addr, "127.0.0.1").await;
    assert_refused(&mut m31, "the 31st connection").await;
    // Banned: more attempts are refused too, even after closing the others.
    served.clear();
    for n in 32..35 {
        let mut m = connect_from(addr, "127.0.0.1").await;
        assert_refused(&mut m, &format!("connection {n}")).await;
    }
    // Another IP has its own bucket.
    let mut other = connect_from(addr, "127.0.0.2").await;
    other.login("elsewhere").await.unwrap();
    // The refused connections never became miners.
    assert_eq!(proxy.stats().miners, 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn without_a_ban_an_empty_bucket_refuses_and_other_ips_are_served() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    // 3 per minute, no ban: the 4th is refused; the bucket gets a token back every 20 s.
    let proxy = Proxy::start(config(&pool, 3, 0)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    let mut keep = Vec::new();
    for _ in 0..3 {
        let mut m = connect_from(addr, "127.0.0.3").await;
        m.login("w").await.unwrap();
        keep.push(m);
    }
    let mut m = connect_from(addr, "127.0.0.3").await;
    assert_refused(&mut m, "the 4th connection").await;
    let mut other = connect_from(addr, "127.0.0.4").await;
    other.login("w").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn zero_connections_per_minute_means_no_limit() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool, 0, 300)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    for _ in 0..40 {
        let mut m = connect_from(addr, "127.0.0.1").await;
        m.login("w").await.unwrap();
    }
    proxy.shutdown(Duration::from_secs(1)).await;
}
