//! Spec behaviours beyond the basic NiceHash flow, through real sockets: simple mode and
//! upstream reuse (RFC §9), custom difficulty (§14), access password (§6.1), the algorithm
//! extension, and waiting miners while every pool is down (§22 failover cases).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use proxy_core::config::Mode;
use proxy_core::{Config, Proxy, ProxyHandle};
use serde_json::json;
use stratum_proto::{difficulty_to_target, target_to_difficulty};
use test_support::miner::{error_message, result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool};

const POOL_DIFF: u64 = 1000;

fn config(pools: &[SocketAddr]) -> Config {
    common::local_config(pools)
}

async fn start(config: Config) -> (ProxyHandle, SocketAddr) {
    let proxy = Proxy::start(config).await.unwrap();
    let addr = proxy.local_addrs()[0];
    (proxy, addr)
}

#[tokio::test]
async fn simple_mode_gives_each_miner_its_own_upstream_and_no_patching() {
    let job = make_job(1, POOL_DIFF);
    let pool = MockPool::start(job.clone()).await.unwrap();
    let (proxy, addr) = start(Config {
        mode: Mode::Simple,
        ..config(&[pool.addr()])
    })
    .await;
    let mut a = TestMiner::connect(addr).await.unwrap();
    let reply = a.login("a").await.unwrap();
    assert_eq!(reply["result"]["extensions"], json!(["algo", "keepalive"]));
    assert_eq!(
        a.job.as_ref().unwrap().blob,
        job.blob,
        "blob passed through unpatched"
    );
    let mut b = TestMiner::connect(addr).await.unwrap();
    b.login("b").await.unwrap();
    assert!(pool.wait_for(WAIT, |p| p.connections_open() == 2).await);
    // Any nonce is fine in simple mode.
    let r = a
        .submit(&job.job_id, "ffffff7f", &result_for_difficulty(POOL_DIFF))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    // Without reuse-timeout a leaving miner's upstream closes at once.
    drop(b);
    assert!(pool.wait_for(WAIT, |p| p.connections_open() == 1).await);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn simple_mode_reuses_an_idle_upstream_within_reuse_timeout_only() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(Config {
        mode: Mode::Simple,
        reuse_timeout: 2,
        ..config(&[pool.addr()])
    })
    .await;
    let mut a = TestMiner::connect(addr).await.unwrap();
    a.login("a").await.unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut b = TestMiner::connect(addr).await.unwrap();
    b.login("b").await.unwrap();
    assert_eq!(pool.connections_total(), 1, "b inherited a's idle upstream");
    assert!(b.job.is_some(), "and got its current job at once");
    drop(b);
    // Past reuse-timeout the idle upstream is closed; the next miner gets a new one.
    assert!(
        pool.wait_for(Duration::from_secs(5), |p| p.connections_open() == 0)
            .await
    );
    let mut c = TestMiner::connect(addr).await.unwrap();
    c.login("c").await.unwrap();
    assert_eq!(pool.connections_total(), 2);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn custom_difficulty_lowers_the_target_and_answers_low_shares_locally() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(config(&[pool.addr()])).await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("WALLET+250").await.unwrap();
    let job = m.job.clone().unwrap();
    assert_eq!(job.target, difficulty_to_target(250));
    // Between the miner's target and the pool's: OK from the proxy, never forwarded.
    let r = m
        .submit(&job.job_id, &m.nonce(1), &result_for_difficulty(400))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    assert!(pool.received("submit").is_empty());
    // Below the miner's target: refused.
    let r = m
        .submit(&job.job_id, &m.nonce(2), &result_for_difficulty(100))
        .await
        .unwrap();
    assert_eq!(error_message(&r), Some("Low difficulty share"));
    // Meets the pool's: forwarded, credited at the pool's difficulty.
    let r = m
        .submit(&job.job_id, &m.nonce(3), &result_for_difficulty(POOL_DIFF))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    assert_eq!(pool.received("submit").len(), 1);
    let s = proxy.stats();
    assert_eq!((s.accepted, s.hashes), (1, POOL_DIFF));
    // New jobs keep the miner's target.
    pool.push_job(make_job(2, POOL_DIFF));
    assert_eq!(
        m.next_job(WAIT).await.unwrap().target,
        difficulty_to_target(250)
    );
    // The suffix is not part of the login the pool or the logs see.
    assert_eq!(pool.received("login")[0].params["login"], "PROXYWALLET");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn custom_difficulty_above_the_pools_and_the_global_setting() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(Config {
        custom_diff: 300,
        ..config(&[pool.addr()])
    })
    .await;
    let mut high = TestMiner::connect(addr).await.unwrap();
    high.login("W+50000").await.unwrap();
    let t = &high.job.as_ref().unwrap().target;
    assert_eq!(
        target_to_difficulty(t),
        Some(POOL_DIFF),
        "a custom diff above the pool's is ignored"
    );
    let mut global = TestMiner::connect(addr).await.unwrap();
    global.login("W").await.unwrap();
    assert_eq!(
        global.job.as_ref().unwrap().target,
        difficulty_to_target(300)
    );
    let mut odd = TestMiner::connect(addr).await.unwrap();
    odd.login("W+abc").await.unwrap();
    assert_eq!(
        odd.job.as_ref().unwrap().target,
        difficulty_to_target(300),
        "not a suffix: global applies"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn access_password_is_required() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(Config {
        access_password: Some("letmein".into()),
        ..config(&[pool.addr()])
    })
    .await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    let id = m
        .request("login", json!({"login": "W", "pass": "x"}))
        .await
        .unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Invalid password")
    );
    let id = m
        .request("login", json!({"login": "W", "pass": "letmein"}))
        .await
        .unwrap();
    assert_eq!(m.reply(id, WAIT).await.unwrap()["result"]["status"], "OK");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn algorithm_extension_on_and_off() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(config(&[pool.addr()])).await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("W").await.unwrap();
    let job = m.job.clone().unwrap();
    assert_eq!(job.algo.as_deref(), Some("rx/0"));
    let session = m.session.clone().unwrap();
    let id = m
        .request(
            "submit",
            json!({"id": session, "job_id": job.job_id, "nonce": m.nonce(1),
                   "result": result_for_difficulty(POOL_DIFF), "algo": "cn/r"}),
        )
        .await
        .unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Incorrect algorithm")
    );
    proxy.shutdown(Duration::from_secs(1)).await;

    let (proxy, addr) = start(Config {
        algo_ext: false,
        ..config(&[pool.addr()])
    })
    .await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    let reply = m.login("W").await.unwrap();
    assert_eq!(
        reply["result"]["extensions"],
        json!(["nicehash", "keepalive"])
    );
    assert!(reply["result"]["job"].get("algo").is_none());
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn miners_wait_while_every_pool_is_down_and_mine_when_one_comes_back() {
    // A port with nothing behind it, for now.
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (proxy, proxy_addr) = start(config(&[addr])).await;
    let mut m = TestMiner::connect(proxy_addr).await.unwrap();
    let id = m
        .request("login", json!({"login": "W", "pass": "x"}))
        .await
        .unwrap();
    assert!(
        !m.closed_within(Duration::from_secs(2)).await,
        "no spurious close"
    );
    let u = proxy.upstreams();
    assert_eq!((u.error, u.total), (1, 1), "one upstream, failing");
    let pool = MockPool::start_on(addr, make_job(9, POOL_DIFF))
        .await
        .unwrap();
    let reply = m.reply(id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply["result"]["job"]["job_id"], "job000009");
    assert_eq!(pool.connections_open(), 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn custom_diff_stats_counts_every_share_at_the_miners_difficulty() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(Config {
        custom_diff_stats: true,
        ..config(&[pool.addr()])
    })
    .await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("WALLET+250").await.unwrap();
    let job = m.job.clone().unwrap();
    let local = m
        .submit(&job.job_id, &m.nonce(1), &result_for_difficulty(400))
        .await
        .unwrap();
    let forwarded = m
        .submit(&job.job_id, &m.nonce(2), &result_for_difficulty(POOL_DIFF))
        .await
        .unwrap();
    assert_eq!(
        (
            local["result"]["status"].as_str(),
            forwarded["result"]["status"].as_str()
        ),
        (Some("OK"), Some("OK"))
    );
    assert_eq!(pool.received("submit").len(), 1);
    let s = proxy.stats();
    assert_eq!((s.accepted, s.hashes), (2, 500), "both at the miner's 250");
    proxy.shutdown(Duration::from_secs(1)).await;
}
