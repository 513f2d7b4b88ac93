//! `extra_nonce` mode end to end against a real Monero node (`monerod --regtest --offline
//! --fixed-difficulty`): two miners on ONE block template, each with its own hashing blob
//! (its own extra nonce in the template's reserved bytes), each mining a real block that the
//! node accepts. Deterministic: each block is ground with RandomX (light mode) until found,
//! under a deadline, and submitted by the miner whose blob it was hashed from.
//!
//! Needs `monerod` on PATH (Debian package `monero`; `.ci/run` installs it).

mod common;

use std::time::{Duration, Instant};

use proxy_core::config::{BindAddr, Mode, PoolConfig};
use proxy_core::{Config, Proxy};
use serde_json::Value;
use stratum_proto::job::decode_hex;
use stratum_proto::Job;
use test_support::miner::{error_message, TestMiner};
use test_support::monerod::{Monerod, REGTEST_WALLET};
use test_support::rx_miner::{solve, Solution};

/// Low enough for a light-mode RandomX thread (about 35 H/s) to find a block in seconds.
const DIFFICULTY: u64 = 40;
const WAIT: Duration = Duration::from_secs(20);

/// The job of a login reply.
fn login_job(reply: &Value) -> Job {
    serde_json::from_value(reply["result"]["job"].clone()).expect("a job in the login reply")
}

/// Grinds `job` over the whole nonce space (no fixed byte) until a block is found.
async fn grind(job: &Job) -> Solution {
    let job = job.clone();
    tokio::task::spawn_blocking(move || {
        solve(&job, None, Instant::now() + Duration::from_secs(120))
    })
    .await
    .unwrap()
    .expect("RandomX hashes")
    .expect("a block within 120 s at difficulty 40")
}

/// Two miners' jobs are the same template (job id, height, target) with distinct blobs that
/// differ only in the merkle root, and each leaves the whole nonce space to its miner.
fn assert_one_template_two_blobs(a: &Job, b: &Job) {
    assert_eq!(a.job_id, b.job_id, "one template");
    assert_eq!((a.height, &a.target), (b.height, &b.target));
    assert_ne!(a.blob, b.blob, "each miner its own blob");
    let (ba, bb) = (decode_hex(&a.blob).unwrap(), decode_hex(&b.blob).unwrap());
    assert_eq!(ba.len(), 76);
    assert_eq!(ba[..43], bb[..43], "same header");
    assert_eq!(
        &ba[39..43],
        &[0, 0, 0, 0],
        "the whole nonce space is the miner's"
    );
    assert_ne!(ba[43..75], bb[43..75], "the merkle roots differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_on_one_template_each_mine_a_real_block() {
    test_support::init_tracing();
    let node = Monerod::start(DIFFICULTY)
        .await
        .expect("monerod starts (apt-get install -y monero)");
    let start = node.height().await.unwrap();
    let config = common::daemon_config(Mode::ExtraNonce, node.host_port(), REGTEST_WALLET);
    let proxy = Proxy::start(config).await.unwrap();
    let addr = proxy.local_addrs()[0];

    let mut alice = TestMiner::connect(addr).await.unwrap();
    let mut bob = TestMiner::connect(addr).await.unwrap();
    let a_login = alice.login(REGTEST_WALLET).await.unwrap();
    let b_login = bob.login(REGTEST_WALLET).await.unwrap();
    let extensions = a_login["result"]["extensions"].to_string();
    assert!(!extensions.contains("nicehash"), "{extensions}");
    let (a_job, b_job) = (login_job(&a_login), login_job(&b_login));
    assert_one_template_two_blobs(&a_job, &b_job);
    assert_eq!(a_job.height, Some(start));

    // Alice's block. Bob claiming it for his own blob is a block the node refuses: his
    // extra nonce makes it another block, whose hash the claimed result is not.
    let found = grind(&a_job).await;
    let stolen = bob
        .submit(&b_job.job_id, &found.nonce, &found.result)
        .await
        .unwrap();
    assert!(error_message(&stolen).is_some(), "{stolen}");
    assert_eq!(node.height().await.unwrap(), start, "no block from Bob");
    let ok = alice
        .submit(&a_job.job_id, &found.nonce, &found.result)
        .await
        .unwrap();
    assert_eq!(ok["result"]["status"], "OK", "{ok}");
    assert_eq!(node.height().await.unwrap(), start + 1, "Alice's block");

    // The chain grew: both get the next template, again one template with two blobs.
    let a_next = alice.next_job(WAIT).await.unwrap();
    let b_next = bob.next_job(WAIT).await.unwrap();
    assert_one_template_two_blobs(&a_next, &b_next);
    assert_eq!(b_next.height, Some(start + 1));

    // Bob's block.
    let found = grind(&b_next).await;
    let ok = bob
        .submit(&b_next.job_id, &found.nonce, &found.result)
        .await
        .unwrap();
    assert_eq!(ok["result"]["status"], "OK", "{ok}");
    assert_eq!(node.height().await.unwrap(), start + 2, "Bob's block");
    assert_eq!(
        proxy.monitor().blocks(),
        2,
        "each accepted share is a block"
    );
    assert_eq!(proxy.stats().in_flight, 0);
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// Two hashing miners (`rx_miner`: RandomX light mode, 24 nonce bits rolled from a random
/// start) through the proxy in `extra_nonce` mode: each mines until it has found a block
/// (120 s at most), every share answered, every accepted share a block on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rx_miners_each_find_blocks_in_extra_nonce_mode() {
    test_support::init_tracing();
    let node = Monerod::start(DIFFICULTY)
        .await
        .expect("monerod starts (apt-get install -y monero)");
    let start = node.height().await.unwrap();
    let config = common::daemon_config(Mode::ExtraNonce, node.host_port(), REGTEST_WALLET);
    let proxy = Proxy::start(config).await.unwrap();
    let addr = proxy.local_addrs()[0];
    let stop = tokio_util::sync::CancellationToken::new();
    let miners = common::spawn_rx_miners(addr, REGTEST_WALLET, &stop);
    // Until each worker (named by its rig id) has a block accepted.
    let each_has_a_block = || {
        let workers = proxy.monitor().workers_at(tokio::time::Instant::now());
        ["rig-0", "rig-1"].iter().all(|name| {
            workers
                .workers
                .iter()
                .any(|w| w.name == *name && w.accepted >= 1)
        })
    };
    // And until the chain has grown by two: both miners may find a block for the same
    // height, and the node then keeps the later one on an alternative chain (it still
    // answers OK), so the miners go on until a second height is mined.
    loop {
        let done = each_has_a_block() && node.height().await.unwrap() - start >= 2;
        if done || miners.iter().all(|m| m.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.cancel();
    let mut accepted = 0;
    for m in miners {
        let report = m.await.unwrap();
        assert_eq!(report.unanswered, 0, "every share answered: {report:?}");
        assert!(!report.closed_early, "{report:?}");
        assert!(report.accepted >= 1, "each miner found a block: {report:?}");
        accepted += report.accepted;
    }
    let grown = node.height().await.unwrap() - start;
    assert!(grown >= 2, "the chain grew by {grown}");
    assert_eq!(
        proxy.monitor().blocks(),
        accepted,
        "each accepted share is a block"
    );
    proxy.shutdown(Duration::from_secs(5)).await;
}

/// A reload cannot bring a stratum pool to a proxy running in `extra_nonce` mode, not even
/// by also asking for another mode (the mode waits for a restart, the pools would not).
#[tokio::test]
async fn a_reload_to_a_stratum_pool_is_refused_while_in_extra_nonce_mode() {
    let daemon = PoolConfig {
        url: "127.0.0.1:1".into(),
        user: REGTEST_WALLET.into(),
        daemon: true,
        ..PoolConfig::default()
    };
    let config = Config {
        mode: Mode::ExtraNonce,
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: false,
            protocol: None,
        }],
        pools: vec![daemon],
        ..Config::default()
    };
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let mut edit = config.clone();
    edit.mode = Mode::Nicehash;
    edit.pools[0].daemon = false;
    let err = proxy.reload(edit).unwrap_err().to_string();
    assert!(err.contains("pools[0].daemon"), "{err}");
    assert_eq!(proxy.monitor().config().mode, Mode::ExtraNonce);
    assert!(proxy.monitor().config().pools[0].daemon);
    proxy.shutdown(Duration::from_secs(1)).await;
}
