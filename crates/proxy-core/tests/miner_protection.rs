//! Issue 10 items 3–5 through real sockets: duplicate shares are refused and never reach the
//! pool, custom difficulty has a floor, and a miner with too many invalid shares is cut off
//! and its IP banned.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proxy_core::config::RateLimit;
use proxy_core::{Config, Proxy, ProxyHandle, DUPLICATE_SHARE};
use stratum_proto::difficulty_to_target;
use test_support::miner::{error_message, result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool, Reply};

const POOL_DIFF: u64 = 1000;

async fn start(config: Config) -> (ProxyHandle, SocketAddr) {
    let proxy = Proxy::start(config).await.unwrap();
    let addr = proxy.local_addrs()[0];
    (proxy, addr)
}

async fn connect_from(addr: SocketAddr, ip: &str) -> TestMiner {
    let ip: IpAddr = ip.parse().unwrap();
    TestMiner::connect_from(addr, Some(ip)).await.unwrap()
}

fn status(reply: &serde_json::Value) -> &str {
    reply["result"]["status"]
        .as_str()
        .or_else(|| error_message(reply))
        .unwrap_or("?")
}

#[tokio::test]
async fn the_same_share_twice_reaches_the_pool_once_and_the_repeat_is_refused() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(common::local_config(&[pool.addr()])).await;
    let mut a = TestMiner::connect(addr).await.unwrap();
    a.login("a").await.unwrap();
    let mut b = TestMiner::connect(addr).await.unwrap();
    b.login("b").await.unwrap();
    let job = a.job.clone().unwrap().job_id;
    let result = result_for_difficulty(POOL_DIFF);
    let r = a.submit(&job, &a.nonce(7), &result).await.unwrap();
    assert_eq!(status(&r), "OK");
    let r = a.submit(&job, &a.nonce(7), &result).await.unwrap();
    assert_eq!(status(&r), DUPLICATE_SHARE);
    // Another miner's share with the same low bits carries its own fixed byte: a new share.
    let r = b.submit(&job, &b.nonce(7), &result).await.unwrap();
    assert_eq!(status(&r), "OK");
    assert_eq!(
        pool.received("submit").len(),
        2,
        "the repeat was not forwarded"
    );
    let s = proxy.stats();
    assert_eq!((s.accepted, s.invalid), (2, 1));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_repeated_local_custom_difficulty_share_is_refused_too() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(common::local_config(&[pool.addr()])).await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("WALLET+250").await.unwrap();
    let job = m.job.clone().unwrap().job_id;
    let low = result_for_difficulty(400);
    let r = m.submit(&job, &m.nonce(1), &low).await.unwrap();
    assert_eq!(status(&r), "OK", "answered locally");
    let r = m.submit(&job, &m.nonce(1), &low).await.unwrap();
    assert_eq!(status(&r), DUPLICATE_SHARE);
    // The same nonce claimed at the pool's difficulty is the same share: refused, not sent.
    let r = m
        .submit(&job, &m.nonce(1), &result_for_difficulty(POOL_DIFF))
        .await
        .unwrap();
    assert_eq!(status(&r), DUPLICATE_SHARE);
    assert!(pool.received("submit").is_empty());
    let s = proxy.stats();
    assert_eq!((s.custom_accepted, s.invalid), (1, 2));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_memory_of_a_job_lasts_while_it_is_current_or_previous() {
    let job1 = make_job(1, POOL_DIFF);
    let pool = MockPool::start(job1.clone()).await.unwrap();
    let (proxy, addr) = start(common::local_config(&[pool.addr()])).await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("w").await.unwrap();
    let result = result_for_difficulty(POOL_DIFF);
    let nonce = m.nonce(9);
    let r = m.submit(&job1.job_id, &nonce, &result).await.unwrap();
    assert_eq!(status(&r), "OK");
    // The pool sends the same job again: the same work, so still a duplicate.
    pool.push_job(job1.clone());
    m.next_job(WAIT).await.unwrap();
    let r = m.submit(&job1.job_id, &nonce, &result).await.unwrap();
    assert_eq!(status(&r), DUPLICATE_SHARE);
    // A new job: the same nonce is new work there; job 1, now previous, still remembers.
    let job2 = make_job(2, POOL_DIFF);
    pool.push_job(job2.clone());
    m.next_job(WAIT).await.unwrap();
    let r = m.submit(&job2.job_id, &nonce, &result).await.unwrap();
    assert_eq!(status(&r), "OK");
    let r = m.submit(&job1.job_id, &nonce, &result).await.unwrap();
    assert_eq!(status(&r), DUPLICATE_SHARE);
    // Job 1 leaves current and previous: its shares are refused as unknown.
    pool.push_job(make_job(3, POOL_DIFF));
    m.next_job(WAIT).await.unwrap();
    let r = m.submit(&job1.job_id, &nonce, &result).await.unwrap();
    assert_eq!(status(&r), "Invalid job id");
    assert_eq!(pool.received("submit").len(), 2);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_custom_difficulty_below_the_floor_is_served_at_the_floor() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(Config {
        custom_diff: 5,
        ..common::local_config(&[pool.addr()])
    })
    .await;
    for (login, served) in [("WALLET+1", 100), ("WALLET", 100), ("WALLET+250", 250)] {
        let mut m = TestMiner::connect(addr).await.unwrap();
        m.login(login).await.unwrap();
        assert_eq!(
            m.job.as_ref().unwrap().target,
            difficulty_to_target(served),
            "{login}"
        );
        // A share below the floor is low, whatever the miner asked for.
        let job = m.job.clone().unwrap().job_id;
        let r = m
            .submit(&job, &m.nonce(1), &result_for_difficulty(50))
            .await
            .unwrap();
        assert_eq!(status(&r), "Low difficulty share", "{login}");
    }
    proxy.shutdown(Duration::from_secs(1)).await;
    // The floor is a config key.
    let (proxy, addr) = start(Config {
        custom_diff_min: 500,
        ..common::local_config(&[pool.addr()])
    })
    .await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("WALLET+250").await.unwrap();
    assert_eq!(m.job.as_ref().unwrap().target, difficulty_to_target(500));
    proxy.shutdown(Duration::from_secs(1)).await;
}

fn protected(pool: &MockPool, ban: u64) -> Config {
    Config {
        rate_limit: RateLimit {
            ban_duration: ban,
            invalid_shares: 5,
            invalid_percent: 50,
            ..RateLimit::default()
        },
        ..common::local_config(&[pool.addr()])
    }
}

/// Asserts the proxy closes `m` at once without sending anything (a refused connection).
async fn assert_refused(m: &mut TestMiner) {
    let got = m.recv(Duration::from_secs(3)).await;
    assert!(got.is_err(), "served: {got:?}");
}

#[tokio::test]
async fn a_miner_with_too_many_invalid_shares_is_cut_off_and_its_ip_banned() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(protected(&pool, 60)).await;
    let mut bad = connect_from(addr, "127.0.0.7").await;
    bad.login("bad").await.unwrap();
    let mut good = connect_from(addr, "127.0.0.8").await;
    good.login("good").await.unwrap();
    let result = result_for_difficulty(POOL_DIFF);
    let job = bad.job.clone().unwrap().job_id;
    // Every share answered, the fifth too, then the connection closes.
    for i in 0..5 {
        let r = bad
            .submit(&job, &bad.nonce(i), &"f".repeat(64))
            .await
            .unwrap();
        assert_eq!(status(&r), "Low difficulty share", "share {i}");
    }
    assert!(
        bad.closed_within(WAIT).await,
        "cut off after 5 invalid shares"
    );
    // Its IP is banned: a new connection is closed unserved.
    let mut again = connect_from(addr, "127.0.0.7").await;
    assert_refused(&mut again).await;
    // The dashboard's events: five refusals (one entry, counted), then the ban.
    let notes = proxy.monitor().notices();
    let last = notes.last().unwrap();
    assert_eq!(last.kind, proxy_core::NoticeKind::Ban, "{notes:?}");
    assert_eq!(
        last.message,
        "miner bad (127.0.0.7) cut off after 5 invalid shares, IP banned for 60 s"
    );
    let refused = &notes[notes.len() - 2];
    assert_eq!(refused.kind, proxy_core::NoticeKind::Invalid, "{notes:?}");
    assert_eq!(refused.count, 5);
    // Others are served as before.
    let job = good.job.clone().unwrap().job_id;
    let r = good.submit(&job, &good.nonce(1), &result).await.unwrap();
    assert_eq!(status(&r), "OK");
    let mut other = connect_from(addr, "127.0.0.9").await;
    other.login("other").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pool_rejections_count_and_an_honest_ratio_is_left_alone() {
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    // No ban-duration: cut off, but free to come back.
    let (proxy, addr) = start(protected(&pool, 0)).await;
    let mut m = connect_from(addr, "127.0.0.10").await;
    m.login("w").await.unwrap();
    let job = m.job.clone().unwrap().job_id;
    let result = result_for_difficulty(POOL_DIFF);
    // Stale shares (a job the proxy no longer has) are not held against a miner.
    for i in 0..60 {
        let r = m.submit("gone", &m.nonce(1000 + i), &result).await.unwrap();
        assert_eq!(status(&r), "Invalid job id");
    }
    // 10 accepted, then 5 invalid: 33 %, under the 50 % of the rule.
    for i in 0..10 {
        let r = m.submit(&job, &m.nonce(i), &result).await.unwrap();
        assert_eq!(status(&r), "OK");
    }
    for i in 0..5 {
        let r = m.submit(&job, &m.nonce(i), &result).await.unwrap();
        assert_eq!(status(&r), DUPLICATE_SHARE);
    }
    assert!(!m.closed_within(Duration::from_millis(300)).await, "kept");
    // The pool refuses everything from now on: its verdicts count too.
    pool.set_reply(Reply::Error("Low difficulty share".into()));
    let mut n = 200;
    let mut answered = 0;
    while !m.closed_within(Duration::from_millis(50)).await {
        let r = m.submit(&job, &m.nonce(n), &result).await.unwrap();
        assert_eq!(status(&r), "Low difficulty share");
        answered += 1;
        n += 1;
        assert!(answered <= 10, "not cut off at 50 %");
    }
    assert_eq!(answered, 5, "10 valid, 5 + 5 invalid: 50 %");
    // ban-duration 0: not banned.
    let mut back = connect_from(addr, "127.0.0.10").await;
    back.login("w").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// Log lines written by the proxy while the guard is held (this thread: the test runtime's
/// tasks run on it).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_cut_off_is_logged_once_with_the_login_escaped() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let pool = MockPool::start(make_job(1, POOL_DIFF)).await.unwrap();
    let (proxy, addr) = start(protected(&pool, 30)).await;
    let mut m = connect_from(addr, "127.0.0.11").await;
    m.login("evil\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 \"FORGED\"")
        .await
        .unwrap();
    let job = m.job.clone().unwrap().job_id;
    for i in 0..8 {
        // The 6th and later find the connection closed.
        if m.submit(&job, &m.nonce(i), &"f".repeat(64)).await.is_err() {
            break;
        }
    }
    assert!(m.closed_within(WAIT).await);
    proxy.shutdown(Duration::from_secs(1)).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("too many invalid shares"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(line.contains("ip=127.0.0.11"), "{line}");
    assert!(line.contains("IP banned for 30 s"), "{line}");
    assert!(
        line.contains(r#"user="evil\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 \"FORGED\"""#),
        "the login is escaped: {line}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2001-01-01")),
        "no forged line: {text}"
    );
}
