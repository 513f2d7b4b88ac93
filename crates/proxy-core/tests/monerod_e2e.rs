//! End to end against a real Monero node: `monerod --regtest --offline --fixed-difficulty`,
//! the proxy in NiceHash mode with a daemon upstream, and two miners hashing RandomX (light
//! mode) through it. Blocks must land on the node's chain and every share must be answered.
//!
//! Needs `monerod` on PATH (Debian package `monero`; `.ci/run` installs it).

mod common;

use std::time::Duration;

use proxy_core::config::Mode;
use proxy_core::Proxy;
use test_support::monerod::{Monerod, REGTEST_WALLET};

/// Low enough for ~35 H/s light-mode miners to find a block every couple of seconds.
const DIFFICULTY: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rx_miners_find_blocks_through_the_proxy_on_a_real_node() {
    test_support::init_tracing();
    let node = Monerod::start(DIFFICULTY)
        .await
        .expect("monerod starts (apt-get install -y monero)");
    let start_height = node.height().await.unwrap();
    let config = common::daemon_config(Mode::Nicehash, node.host_port(), REGTEST_WALLET);
    let proxy = Proxy::start(config).await.unwrap();
    let addr = proxy.local_addrs()[0];

    // Mine until the chain has grown by 3 blocks (at most 120 s), then stop.
    let stop = tokio_util::sync::CancellationToken::new();
    let miners = common::spawn_rx_miners(addr, REGTEST_WALLET, &stop);
    while node.height().await.unwrap() < start_height + 3 {
        if miners.iter().all(|m| m.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.cancel();
    let mut sent = 0;
    let mut accepted = 0;
    for m in miners {
        let report = m.await.unwrap();
        assert_eq!(report.unanswered, 0, "every share answered: {report:?}");
        assert!(!report.closed_early, "{report:?}");
        sent += report.shares_sent;
        accepted += report.accepted;
    }
    let grown = node.height().await.unwrap() - start_height;
    let stats = proxy.stats();
    eprintln!("shares sent {sent}, accepted {accepted}, chain grew by {grown}, proxy {stats:?}");
    assert!(
        grown >= 3,
        "the chain grew by {grown} blocks (wanted at least 3)"
    );
    assert!(accepted >= 3);
    assert_eq!(
        proxy.monitor().blocks(),
        accepted,
        "each accepted share is a block"
    );
    assert_eq!(stats.in_flight, 0);
    proxy.shutdown(Duration::from_secs(5)).await;
}
