//! The socket side of miner connections (conn.rs): lines split over many reads, many lines
//! in one read, a miner that stops reading, and the registry once miners leave.

mod common;

use std::time::Duration;

use proxy_core::{Config, Proxy};
use serde_json::json;
use stratum_proto::Job;
use test_support::miner::{error_message, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool};
use tokio::io::AsyncWriteExt;

fn config(pool: &MockPool) -> Config {
    common::local_config(&[pool.addr()])
}

/// True once the proxy serves `n` miners (polled), false after [`WAIT`].
async fn miners_become(monitor: &proxy_core::Monitor, n: usize) -> bool {
    tokio::time::timeout(WAIT, async {
        while monitor.miners().len() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
}

/// `n` miners connected to `addr` and logged in.
async fn logged_in(addr: std::net::SocketAddr, n: usize) -> Vec<TestMiner> {
    let mut miners = Vec::new();
    for _ in 0..n {
        let mut m = TestMiner::connect(addr).await.unwrap();
        m.login("wallet").await.unwrap();
        miners.push(m);
    }
    miners
}

#[tokio::test]
async fn a_login_sent_one_byte_at_a_time_is_answered() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    let line = json!({"id": 7, "jsonrpc": "2.0", "method": "login",
        "params": {"login": "wallet", "pass": "x", "agent": "t/1"}})
    .to_string()
        + "\n";
    for b in line.as_bytes() {
        m.send_raw(&[*b]).await.unwrap();
        tokio::task::yield_now().await;
    }
    let reply = m.reply(7, WAIT).await.unwrap();
    assert!(reply["error"].is_null(), "{reply}");
    assert_eq!(reply["result"]["job"]["job_id"], "job000001");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn hundreds_of_lines_in_one_write_are_all_answered_in_order() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.login("wallet").await.unwrap();
    let session = m.session.clone().unwrap();
    // More lines than one drive handles, in a single write: the miner is served in turns.
    let n = 300u64;
    let mut burst = String::new();
    for id in 1000..1000 + n {
        burst += &json!({"id": id, "jsonrpc": "2.0", "method": "submit",
            "params": {"id": session, "job_id": "no-such-job", "nonce": "00000000",
                       "result": "00".repeat(32)}})
        .to_string();
        burst.push('\n');
    }
    m.send_raw(burst.as_bytes()).await.unwrap();
    for id in 1000..1000 + n {
        let v = m.recv(WAIT).await.unwrap();
        assert_eq!(v["id"], json!(id), "answers come in request order");
        assert_eq!(error_message(&v), Some("Invalid job id"));
    }
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// A job whose line is about 15 KB (a long blob), to fill socket buffers quickly.
fn big_job(n: u64) -> Job {
    let mut job = make_job(n, 100);
    while job.blob.len() < 15_000 {
        job.blob.push_str("ab");
    }
    job
}

#[tokio::test]
async fn a_miner_that_stops_reading_is_closed_and_the_others_keep_getting_jobs() {
    // Slot 0: its jobs are written by the upstream's task.
    stalled_miner_case(true).await;
}

#[tokio::test]
async fn a_stalled_miner_whose_jobs_a_fan_out_thread_writes_is_closed_too() {
    // Slot 1: on a machine with more than one core a fan-out thread writes its jobs, and
    // registers for writability from outside the runtime.
    stalled_miner_case(false).await;
}

/// One miner stops reading while another reads every job; `stalled_first`: the stalled one
/// logs in first (slot 0) or second (slot 1).
async fn stalled_miner_case(stalled_first: bool) {
    let pool = MockPool::start(big_job(1)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    let monitor = proxy.monitor();

    let mut good = TestMiner::connect(addr).await.unwrap();
    if !stalled_first {
        good.login("wallet").await.unwrap();
    }
    // The stalled miner: a small receive buffer, logs in, never reads again.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stalled = sock.connect(addr).await.unwrap();
    let login = json!({"id": 1, "jsonrpc": "2.0", "method": "login",
        "params": {"login": "wallet", "pass": "x", "agent": "t/1"}})
    .to_string()
        + "\n";
    stalled.write_all(login.as_bytes()).await.unwrap();
    if stalled_first {
        // Its login is handled before the good miner's.
        let both = tokio::time::timeout(WAIT, async {
            while proxy.mapper_loads() != vec![1] {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(both.is_ok(), "the stalled miner took slot 0");
        good.login("wallet").await.unwrap();
    }
    assert!(miners_become(&monitor, 2).await, "both miners registered");

    // Push jobs until the proxy gives up on the stalled miner (its outbox overflows after
    // the socket buffers fill); the good miner reads each one.
    let mut closed_at = None;
    for n in 2..3000u64 {
        pool.push_job(big_job(n));
        let job = good.next_job(WAIT).await.unwrap();
        assert_eq!(job.job_id, format!("job{n:06}"));
        if monitor.miners().len() == 1 {
            closed_at = Some(n);
            break;
        }
    }
    let closed_at = closed_at.expect("the stalled miner was closed");
    // At least the outbox limit (256 KiB) went unread before it was closed.
    assert!(
        closed_at * 15_000 > 256 * 1024,
        "closed after {closed_at} jobs"
    );
    // The good miner goes on.
    for n in closed_at + 1..closed_at + 5 {
        pool.push_job(big_job(n));
        assert_eq!(
            good.next_job(WAIT).await.unwrap().job_id,
            format!("job{n:06}")
        );
    }
    assert_eq!(monitor.miners().len(), 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn miners_that_leave_are_gone_from_the_registry_and_their_upstream_slot() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    let miners = logged_in(addr, 50).await;
    let monitor = proxy.monitor();
    assert_eq!(monitor.miners().len(), 50);
    assert_eq!(proxy.mapper_loads(), vec![50]);
    drop(miners);
    assert!(
        miners_become(&monitor, 0).await,
        "every closed miner left the registry"
    );
    assert_eq!(proxy.mapper_loads(), vec![0]);
    assert_eq!(proxy.stats().miners, 0);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn every_miner_gets_every_job_in_order_when_jobs_come_quickly() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    // Enough miners for every fan-out thread to have some (slots alternate between them).
    let mut miners = logged_in(addr, 24).await;
    for n in 2..=40u64 {
        pool.push_job(make_job(n, 100));
        tokio::task::yield_now().await;
    }
    for m in &mut miners {
        for n in 2..=40u64 {
            let job = m.next_job(WAIT).await.unwrap();
            assert_eq!(job.job_id, format!("job{n:06}"), "jobs arrive in order");
        }
    }
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn past_the_miner_limit_new_miners_are_told_the_proxy_is_full() {
    let pool = MockPool::start(make_job(1, 100)).await.unwrap();
    let proxy = Proxy::start(config(&pool)).await.unwrap();
    assert!(proxy.miner_limit() > 0, "a limit from the open-file limit");
    proxy.set_miner_limit(3);
    let addr = proxy.local_addrs()[0];
    let mut kept = logged_in(addr, 3).await;
    for _ in 0..2 {
        let mut m = TestMiner::connect(addr).await.unwrap();
        let v = m.recv(WAIT).await.unwrap();
        assert_eq!(error_message(&v), Some("Proxy is full, try again later"));
        assert!(m.closed_within(WAIT).await, "and closed");
    }
    // A place frees up when a miner leaves.
    drop(kept.pop());
    assert!(miners_become(&proxy.monitor(), 2).await);
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("wallet").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}
