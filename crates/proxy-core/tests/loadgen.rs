//! The load generator behind `cargo xtask bench` (test_support::loadgen), run small against
//! an in-process proxy: every phase runs through its real paths (tokio logins handing the
//! connections to the event-loop threads, job receipts, the share plan, the pool's checks),
//! and a clean run accounts for every job and every share.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use proxy_core::Proxy;
use test_support::loadgen::{run_on, Mode, Options, Protocol};

/// A run against `proxy`'s first listener, short and bounded: two jobs 300 ms apart, one
/// second of shares, 100 ms to settle, 60 s at most; everything else default.
fn small_run(proxy: &proxy_core::ProxyHandle) -> Options {
    Options {
        proxy: proxy.local_addrs()[0],
        jobs: 2,
        job_interval: Duration::from_millis(300),
        seconds: 1,
        settle: Duration::from_millis(100),
        deadline: Duration::from_secs(60),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_load_run_is_clean_and_accounts_for_every_job_and_share() {
    let pool = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = common::local_config(&[pool.local_addr().unwrap()]);
    let proxy = Proxy::start(config).await.unwrap();
    let opts = Options {
        miners: 40,
        // Two source addresses, and miners on both event loops.
        miners_per_ip: 20,
        first_ip: Ipv4Addr::new(127, 0, 0, 2),
        miner_threads: 2,
        rate: 200,
        ..small_run(&proxy)
    };
    let report = run_on(opts, pool).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.setup.source_ips, 2);
    assert_eq!((report.login.logged_in, report.login.failed), (40, 0));

    let f = &report.fanout;
    assert_eq!((f.receipts, f.missing, f.wrong_fixed_byte), (80, 0, 0));
    assert!(
        f.per_job.iter().all(|j| j.receipts == 40),
        "{:?}",
        f.per_job
    );
    assert!(f.p50_ms.is_some() && f.p99_ms <= f.max_ms);

    let s = &report.shares;
    assert_eq!((s.planned, s.sent, s.answered_ok), (200, 200, 200));
    assert_eq!((s.answered_error, s.unanswered), (0, 0));
    assert_eq!(
        (s.at_pool_once, s.missing_at_pool, s.duplicated_at_pool),
        (200, 0, 0)
    );
    assert_eq!((s.wrong_fixed_byte_at_pool, s.unknown_at_pool), (0, 0));
    assert!(s.rtt_p50_ms.is_some() && s.rtt_p99_ms <= s.rtt_max_ms);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_simple_mode_every_miner_gets_its_own_pool_connection_and_the_run_is_clean() {
    let pool = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = proxy_core::config::Config {
        mode: proxy_core::config::Mode::Simple,
        ..common::local_config(&[pool.local_addr().unwrap()])
    };
    let proxy = Proxy::start(config).await.unwrap();
    let opts = Options {
        mode: Mode::Simple,
        miners: 30,
        rate: 100,
        ..small_run(&proxy)
    };
    let report = run_on(opts, pool).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.login.logged_in, report.login.pool_logins), (30, 30));
    // Jobs reach every miner through its own upstream, unpatched.
    let f = &report.fanout;
    assert_eq!((f.receipts, f.missing, f.wrong_fixed_byte), (60, 0, 0));
    let s = &report.shares;
    assert_eq!((s.sent, s.answered_ok, s.at_pool_once), (100, 100, 100));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stratum_v1_run_is_clean_and_every_share_passes_the_sha256d_checks() {
    let pool = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = start_sv1_proxy(&pool).await;
    let opts = Options {
        protocol: Protocol::StratumV1,
        miners: 40,
        miners_per_ip: 20,
        miner_threads: 2,
        rate: 200,
        ..small_run(&proxy)
    };
    let report = run_on(opts, pool).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.login.logged_in, report.login.failed), (40, 0));
    // One upstream subscription holds them all.
    assert_eq!(report.login.pool_logins, 1);

    let f = &report.fanout;
    assert_eq!((f.receipts, f.missing), (80, 0));
    assert!(
        f.per_job.iter().all(|j| j.receipts == 40),
        "{:?}",
        f.per_job
    );

    // Every share was checked by the proxy (sha256d at the miner's difficulty) and by the
    // pool (sha256d again, after the proxy put the miner's tail before its extranonce2),
    // answered `true`, and reached the pool once with its own miner's extranonce.
    let s = &report.shares;
    assert_eq!((s.planned, s.sent, s.answered_ok), (200, 200, 200));
    assert_eq!((s.answered_error, s.unanswered), (0, 0));
    assert_eq!(
        (s.at_pool_once, s.missing_at_pool, s.duplicated_at_pool),
        (200, 0, 0)
    );
    assert_eq!((s.wrong_fixed_byte_at_pool, s.unknown_at_pool), (0, 0));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_pool_difficulty_above_theirs_sv1_shares_are_answered_by_the_proxy_alone() {
    let pool = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = start_sv1_proxy(&pool).await;
    let opts = Options {
        protocol: Protocol::StratumV1,
        sv1_pool_difficulty: 1.0,
        miners: 20,
        rate: 100,
        ..small_run(&proxy)
    };
    let report = run_on(opts, pool).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let s = &report.shares;
    // Each checked (sha256d at the miner's 2^-32), answered `true`, none forwarded.
    assert_eq!((s.sent, s.answered_ok, s.answered_error), (100, 100, 0));
    assert_eq!(
        (s.at_pool_once, s.missing_at_pool, s.unknown_at_pool),
        (0, 0, 0)
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// A Stratum V1 proxy whose only pool is `pool` (the generator's), its miners' floor the
/// generator's share difficulty (2^-32).
async fn start_sv1_proxy(pool: &tokio::net::TcpListener) -> proxy_core::ProxyHandle {
    let mut config = common::local_config(&[pool.local_addr().unwrap()]);
    config.protocol = proxy_core::config::Protocol::StratumV1;
    config.stratum_v1.min_difficulty = test_support::loadgen::sv1::DIFFICULTY;
    Proxy::start(config).await.unwrap()
}
