//! NiceHash mode end to end over loopback: real sockets, an in-process mock pool, scripted
//! miners.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use proxy_core::{Config, Proxy, ProxyHandle};
use serde_json::{json, Value};
use test_support::miner::{error_message, fixed_byte, result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool, Reply};

const DIFF: u64 = 1000;

fn config(pools: &[SocketAddr]) -> Config {
    common::local_config(pools)
}

async fn start(pools: &[SocketAddr]) -> (ProxyHandle, SocketAddr) {
    let proxy = Proxy::start(config(pools)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    (proxy, addr)
}

async fn logged_in(addr: SocketAddr, name: &str) -> TestMiner {
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login(name).await.unwrap();
    m
}

/// A mock pool answering submits with `reply`, a proxy in front of it, one logged-in miner.
async fn one_miner(reply: Reply) -> (MockPool, ProxyHandle, TestMiner) {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    pool.set_reply(reply);
    let (proxy, addr) = start(&[pool.addr()]).await;
    let m = logged_in(addr, "wallet").await;
    (pool, proxy, m)
}

#[tokio::test]
async fn three_miners_get_one_job_with_distinct_fixed_bytes_at_byte_42() {
    let job = make_job(1, DIFF);
    let pool = MockPool::start(job.clone()).await.unwrap();
    let (proxy, addr) = start(&[pool.addr()]).await;
    let mut miners = Vec::new();
    for i in 0..3 {
        miners.push(logged_in(addr, &format!("miner{i}")).await);
    }
    let mut seen = Vec::new();
    for m in &miners {
        let got = m.job.as_ref().expect("login result carries the job");
        assert_eq!(got.job_id, job.job_id);
        assert_eq!(got.target, job.target);
        assert_eq!(got.blob.len(), job.blob.len());
        // Only hex chars 84..86 (blob byte 42) differ from the pool's blob.
        assert_eq!(got.blob[..84], job.blob[..84]);
        assert_eq!(got.blob[86..], job.blob[86..]);
        seen.push(fixed_byte(&got.blob));
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 3, "fixed bytes {seen:?}");
    assert_eq!(pool.connections_total(), 1, "3 miners share one upstream");
    assert_eq!(pool.received("login")[0].params["login"], "PROXYWALLET");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn login_reply_lists_extensions_and_session() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&[pool.addr()]).await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    let v = m.login("wallet").await.unwrap();
    assert_eq!(v["id"], 1);
    assert_eq!(v["result"]["status"], "OK");
    assert_eq!(
        v["result"]["extensions"],
        json!(["algo", "nicehash", "keepalive"])
    );
    assert_eq!(v["result"]["job"]["algo"], "rx/0");
    let session = m.session.clone().unwrap();
    let id = m
        .request("keepalived", json!({"id": session}))
        .await
        .unwrap();
    let r = m.reply(id, WAIT).await.unwrap();
    assert_eq!(r["result"]["status"], "KEEPALIVED");
    let id = m.request("getjob", json!({"id": session})).await.unwrap();
    let r = m.reply(id, WAIT).await.unwrap();
    assert_eq!(r["result"]["blob"], json!(m.job.as_ref().unwrap().blob));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn share_reaches_pool_unchanged_and_ok_comes_back_under_the_miners_id() {
    let (pool, proxy, mut m) = one_miner(Reply::Ok).await;
    let job_id = m.job.as_ref().unwrap().job_id.clone();
    let nonce = m.nonce(0x123456);
    let result = result_for_difficulty(DIFF * 2);
    // A string request id must come back as the same string.
    let line = json!({"id": "req-abc", "jsonrpc": "2.0", "method": "submit",
        "params": {"id": m.session, "job_id": job_id, "nonce": nonce, "result": result}})
    .to_string()
        + "\n";
    m.send_raw(line.as_bytes()).await.unwrap();
    let reply = m.recv(WAIT).await.unwrap();
    assert_eq!(reply["id"], "req-abc");
    assert_eq!(reply["result"]["status"], "OK", "{reply}");
    let submits = pool.received("submit");
    assert_eq!(submits.len(), 1);
    let p = &submits[0].params;
    assert_eq!(p["job_id"], job_id);
    assert_eq!(p["nonce"], nonce);
    assert_eq!(p["result"], result);
    assert_eq!(
        p["id"], "pool-session-0",
        "submitted under the proxy's pool session"
    );
    let s = proxy.stats();
    assert_eq!((s.accepted, s.hashes), (1, DIFF));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pool_rejection_reaches_the_miner() {
    let (pool, proxy, mut m) = one_miner(Reply::Error("Duplicate share".into())).await;
    let job_id = m.job.as_ref().unwrap().job_id.clone();
    let r = m
        .submit(&job_id, &m.nonce(1), &result_for_difficulty(DIFF))
        .await
        .unwrap();
    assert_eq!(error_message(&r), Some("Duplicate share"));
    assert_eq!(
        pool.received("submit").len(),
        1,
        "the pool saw it and refused it"
    );
    assert_eq!(proxy.stats().rejected, 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn submit_errors_keep_the_connection_open() {
    let (pool, proxy, mut m) = one_miner(Reply::Ok).await;
    let job_id = m.job.as_ref().unwrap().job_id.clone();
    let good_nonce = m.nonce(7);
    let good_result = result_for_difficulty(DIFF);

    let id = m
        .request(
            "submit",
            json!({"id": "bogus", "job_id": job_id, "nonce": good_nonce, "result": good_result}),
        )
        .await
        .unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Unauthenticated")
    );

    let r = m.submit("", &good_nonce, &good_result).await.unwrap();
    assert_eq!(error_message(&r), Some("Missing job id"));
    let r = m.submit(&job_id, "12345", &good_result).await.unwrap();
    assert_eq!(error_message(&r), Some("Invalid nonce"));
    let r = m.submit("nope", &good_nonce, &good_result).await.unwrap();
    assert_eq!(error_message(&r), Some("Invalid job id"));
    let r = m
        .submit(&job_id, &good_nonce, &"f".repeat(64))
        .await
        .unwrap();
    assert_eq!(error_message(&r), Some("Low difficulty share"));
    // A nonce whose top byte is not this miner's slot is refused and never forwarded.
    let fb = fixed_byte(&m.job.as_ref().unwrap().blob);
    let foreign = format!("000000{:02x}", fb.wrapping_add(1));
    let r = m.submit(&job_id, &foreign, &good_result).await.unwrap();
    assert_eq!(
        error_message(&r),
        Some("Invalid nonce; is miner not compatible with NiceHash?")
    );
    assert!(
        pool.received("submit").is_empty(),
        "nothing bad was forwarded"
    );
    assert_eq!(proxy.stats().invalid, 5);

    // Still connected and served.
    let r = m.submit(&job_id, &good_nonce, &good_result).await.unwrap();
    assert_eq!(r["result"]["status"], "OK");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_lines_get_errors_and_do_not_disturb_others() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&[pool.addr()]).await;
    let mut other = logged_in(addr, "bystander").await;
    let mut m = TestMiner::connect(addr).await.unwrap();

    m.send_raw(b"this is not json\n").await.unwrap();
    let r = m.recv(WAIT).await.unwrap();
    assert_eq!(
        (error_message(&r), &r["id"]),
        (Some("Parse error"), &Value::Null)
    );

    let id = m.request("mine", json!({})).await.unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Invalid method")
    );

    let id = m.request("login", json!({"pass": "x"})).await.unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Invalid payment address provided")
    );

    let id = m.request("submit", json!({"job_id": "x"})).await.unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Unauthenticated")
    );

    let id = m.request("submit", json!({"nonce": 5})).await.unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Invalid params")
    );

    // After all that it can still log in.
    m.login("late").await.unwrap();
    let id = m.request("login", json!({"login": "again"})).await.unwrap();
    assert_eq!(
        error_message(&m.reply(id, WAIT).await.unwrap()),
        Some("Already logged in")
    );

    // A line over 16384 bytes closes only that connection.
    let mut long = TestMiner::connect(addr).await.unwrap();
    long.send_raw(&vec![b'x'; 16385]).await.unwrap();
    assert!(long.closed_within(WAIT).await);

    let job_id = other.job.as_ref().unwrap().job_id.clone();
    let r = other
        .submit(&job_id, &other.nonce(9), &result_for_difficulty(DIFF))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    pool.push_job(make_job(2, DIFF));
    assert_eq!(other.next_job(WAIT).await.unwrap().job_id, "job000002");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn new_job_reaches_every_miner_and_previous_job_shares_count_as_expired() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&[pool.addr()]).await;
    let mut miners = Vec::new();
    for i in 0..20 {
        miners.push(logged_in(addr, &format!("m{i}")).await);
    }
    let job2 = make_job(2, DIFF);
    pool.push_job(job2.clone());
    for m in &mut miners {
        let got = m.next_job(WAIT).await.unwrap();
        assert_eq!(got.job_id, job2.job_id);
        assert_eq!(got.blob[..84], job2.blob[..84]);
    }
    // A share for job 1 is still forwarded, counted as expired.
    let m = &mut miners[0];
    let r = m
        .submit("job000001", &m.nonce(3), &result_for_difficulty(DIFF))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    assert_eq!(proxy.stats().expired, 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn miner_257_opens_a_second_upstream() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&[pool.addr()]).await;
    let mut miners = Vec::new();
    for i in 0..257 {
        miners.push(logged_in(addr, &format!("m{i}")).await);
    }
    assert_eq!(proxy.mapper_loads(), vec![256, 1]);
    assert!(pool.wait_for(WAIT, |p| p.connections_open() == 2).await);
    let mut first: Vec<u8> = miners[..256]
        .iter()
        .map(|m| fixed_byte(&m.job.as_ref().unwrap().blob))
        .collect();
    first.sort_unstable();
    first.dedup();
    assert_eq!(
        first.len(),
        256,
        "every fixed byte used once on the first upstream"
    );
    // A slot freed by a leaving miner is reused only after the next job.
    drop(miners.remove(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.mapper_loads(), vec![255, 1]);
    miners.push(logged_in(addr, "newcomer").await);
    assert_eq!(
        proxy.mapper_loads(),
        vec![255, 2],
        "dead slot not reused before a new job"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn fallback_pool_takes_over_without_miners_reconnecting() {
    let primary = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let fallback = MockPool::start(make_job(100, DIFF)).await.unwrap();
    let (proxy, addr) = start(&[primary.addr(), fallback.addr()]).await;
    let mut m = logged_in(addr, "wallet").await;
    assert_eq!(m.job.as_ref().unwrap().job_id, "job000001");

    let down_at = tokio::time::Instant::now();
    primary.shut_down();
    let job = m.next_job(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        job.job_id, "job000100",
        "the fallback's job arrives on the same connection"
    );
    assert!(
        down_at.elapsed() <= Duration::from_secs(3),
        "took {:?}",
        down_at.elapsed()
    );
    assert_eq!(fallback.connections_open(), 1);

    // Shares now go to the fallback; a share for the primary's job is refused.
    let r = m
        .submit("job000001", &m.nonce(1), &result_for_difficulty(DIFF))
        .await
        .unwrap();
    assert_eq!(error_message(&r), Some("Invalid job id"));
    let r = m
        .submit("job000100", &m.nonce(2), &result_for_difficulty(DIFF))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    assert_eq!(fallback.received("submit").len(), 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn reconnect_goes_back_to_the_primary_first() {
    let primary = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let primary_addr = primary.addr();
    let fallback = MockPool::start(make_job(100, DIFF)).await.unwrap();
    let (proxy, addr) = start(&[primary_addr, fallback.addr()]).await;
    let mut m = logged_in(addr, "wallet").await;
    primary.shut_down();
    drop(primary);
    assert_eq!(
        m.next_job(Duration::from_secs(5)).await.unwrap().job_id,
        "job000100"
    );
    // The primary comes back; when the fallback drops us, the primary is tried first.
    let primary = MockPool::start_on(primary_addr, make_job(7, DIFF))
        .await
        .unwrap();
    fallback.drop_connections();
    assert_eq!(
        m.next_job(Duration::from_secs(5)).await.unwrap().job_id,
        "job000007"
    );
    assert_eq!(primary.connections_open(), 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn every_submit_in_flight_when_the_pool_drops_gets_an_answer() {
    let (pool, proxy, mut m) = one_miner(Reply::Silent).await;
    let job_id = m.job.as_ref().unwrap().job_id.clone();
    let session = m.session.clone().unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let nonce = m.nonce(i);
        ids.push(
            m.request(
                "submit",
                json!({"id": session, "job_id": job_id, "nonce": nonce, "result": result_for_difficulty(DIFF)}),
            )
            .await
            .unwrap(),
        );
    }
    assert!(
        pool.wait_for(WAIT, |p| p.received("submit").len() == 10)
            .await
    );
    assert_eq!(proxy.stats().in_flight, 10);
    pool.drop_connections();
    let mut answered = Vec::new();
    while answered.len() < ids.len() {
        let r = m.recv(WAIT).await.unwrap();
        if r.get("method").is_some() {
            continue;
        }
        assert_eq!(error_message(&r), Some("Connection to pool lost"), "{r}");
        answered.push(r["id"].as_u64().unwrap());
    }
    answered.sort_unstable();
    assert_eq!(answered, ids);
    assert_eq!(proxy.stats().in_flight, 0);
    proxy.shutdown(Duration::from_secs(1)).await;
}

async fn submit_raw(m: &mut TestMiner) -> u64 {
    let job_id = m.job.as_ref().unwrap().job_id.clone();
    let session = m.session.clone().unwrap();
    let nonce = m.nonce(1);
    m.request(
        "submit",
        json!({"id": session, "job_id": job_id, "nonce": nonce, "result": result_for_difficulty(DIFF)}),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn shutdown_passes_on_answers_that_come_within_the_grace_period() {
    let (pool, proxy, mut m) = one_miner(Reply::OkAfter(Duration::from_millis(800))).await;
    let id = submit_raw(&mut m).await;
    assert!(
        pool.wait_for(WAIT, |p| p.received("submit").len() == 1)
            .await
    );
    let stopping = tokio::spawn(proxy.shutdown(Duration::from_secs(5)));
    let r = m.reply(id, WAIT).await.unwrap();
    assert_eq!(r["result"]["status"], "OK", "{r}");
    assert!(m.closed_within(WAIT).await, "closed after the answer");
    stopping.await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_what_the_pool_never_answers() {
    let (pool, proxy, mut m) = one_miner(Reply::Silent).await;
    let id = submit_raw(&mut m).await;
    assert!(
        pool.wait_for(WAIT, |p| p.received("submit").len() == 1)
            .await
    );
    let stopping = tokio::spawn(proxy.shutdown(Duration::from_millis(300)));
    let r = m.reply(id, WAIT).await.unwrap();
    assert_eq!(error_message(&r), Some("Connection to pool lost"), "{r}");
    stopping.await.unwrap();
}
