//! Shared by the proxy-core integration tests.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use proxy_core::config::{BindAddr, PoolConfig};
use proxy_core::Config;

/// A config listening on `127.0.0.1:0` with `pools` in order (login `PROXYWALLET`), one
/// attempt per pool and a 1 s retry pause, everything else default.
pub fn local_config(pools: &[SocketAddr]) -> Config {
    Config {
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: false,
        }],
        pools: pools
            .iter()
            .map(|a| PoolConfig {
                url: a.to_string(),
                user: "PROXYWALLET".into(),
                pass: "proxypass".into(),
                ..PoolConfig::default()
            })
            .collect(),
        retries: 1,
        retry_pause: 1,
        ..Config::default()
    }
}

/// Asserts that the proxy closes `m` at its login timeout ([`proxy_core::LOGIN_TIMEOUT`],
/// counted from now): not before, and within 2 s after.
pub async fn assert_closed_at_login_timeout(m: &mut test_support::miner::TestMiner) {
    let timeout = proxy_core::LOGIN_TIMEOUT;
    let t0 = tokio::time::Instant::now();
    assert!(
        m.closed_within(timeout + Duration::from_secs(2)).await,
        "still open {:?} after the login timeout",
        Duration::from_secs(2)
    );
    assert!(t0.elapsed() >= timeout, "closed after {:?}", t0.elapsed());
}
