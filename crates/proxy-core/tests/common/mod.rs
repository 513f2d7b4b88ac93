//! Shared by the proxy-core integration tests.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use proxy_core::config::{BindAddr, Mode, PoolConfig};
use proxy_core::Config;
use test_support::rx_miner::{run_rx_miner, RxMinerConfig, RxMinerReport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A config listening on `127.0.0.1:0` with `pools` in order (login `PROXYWALLET`), one
/// attempt per pool and a 1 s retry pause, everything else default.
pub fn local_config(pools: &[SocketAddr]) -> Config {
    Config {
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: false,
            protocol: None,
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

/// A config in `mode` listening on `127.0.0.1:0` in front of one daemon upstream: the node's
/// RPC at `url` (`host:port`), block rewards to `wallet`, polled every 200 ms; two attempts
/// and a 1 s retry pause, everything else default.
pub fn daemon_config(mode: Mode, url: String, wallet: &str) -> Config {
    Config {
        mode,
        pools: vec![PoolConfig {
            url,
            user: wallet.into(),
            daemon: true,
            daemon_poll_interval: 200,
            ..PoolConfig::default()
        }],
        retries: 2,
        ..local_config(&[])
    }
}

/// Spawns two RandomX miners (rig ids `rig-0`, `rig-1`, login `wallet`) on the proxy at
/// `addr`, each mining for 120 s at most or until `stop` is cancelled; a miner that fails
/// panics its task.
pub fn spawn_rx_miners(
    addr: SocketAddr,
    wallet: &str,
    stop: &CancellationToken,
) -> Vec<JoinHandle<RxMinerReport>> {
    (0..2)
        .map(|i| {
            let mut cfg = RxMinerConfig::new(addr, wallet);
            cfg.rig_id = Some(format!("rig-{i}"));
            cfg.run_for = Duration::from_secs(120);
            cfg.stop = Some(stop.clone());
            tokio::spawn(async move { run_rx_miner(cfg).await.expect("the rx miner runs") })
        })
        .collect()
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
