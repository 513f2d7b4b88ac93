//! The failing-pool suite (order 5, item 12, pool half): scripted pools that close
//! mid-submit, answer garbage, answer late, send bad jobs, say `Unauthenticated`, never
//! answer the login, accept TCP and hang, or stop talking, each in front of a good backup
//! pool, all through real loopback sockets. For each: no panic, recovery or failover, and
//! every submit a test miner sent answered exactly once (the tally of submits sent equals
//! the tally of answers, and no second answer comes).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use proxy_core::{Config, Proxy, ProxyHandle};
use serde_json::Value;
use test_support::miner::{error_message, nicehash_nonce, result_for_difficulty, TestMiner};
use test_support::mock_pool::{bad_job_lines, make_job, MockPool, Reply};
use tokio::net::TcpListener;

/// The pools' difficulty; shares are made to meet it.
const DIFF: u64 = 1000;
/// How long one failing-pool test may run.
const BOUND: Duration = Duration::from_secs(60);
/// Longest wait for a reply or a job (failover takes about two reply timeouts).
const WAIT: Duration = Duration::from_secs(8);

/// A proxy in front of `pools` (primary first) with a 1 s reply timeout, one attempt per
/// pool and no retry pause: failover within a few seconds.
fn config(pools: &[SocketAddr]) -> Config {
    Config {
        pool_reply_timeout: 1,
        retry_pause: 0,
        ..common::local_config(pools)
    }
}

/// A miner and its tally of submits sent and answers received.
struct Miner {
    m: TestMiner,
    sent: usize,
    answered: usize,
    next_nonce: u32,
}

impl Miner {
    async fn login(proxy: &ProxyHandle) -> Self {
        let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
        m.login("WALLET").await.unwrap();
        Self {
            m,
            sent: 0,
            answered: 0,
            next_nonce: 0,
        }
    }

    fn job_id(&self) -> String {
        self.m.job.as_ref().expect("a job").job_id.clone()
    }

    /// Submits a share for `job_id` (the current job's blob gives the fixed byte) and
    /// returns the reply, counted.
    async fn submit_for(&mut self, job_id: &str) -> Value {
        self.next_nonce += 1;
        let blob = self.m.job.as_ref().expect("a job").blob.clone();
        let nonce = nicehash_nonce(&blob, self.next_nonce);
        let session = self.m.session.clone().unwrap_or_default();
        let id = self
            .m
            .request(
                "submit",
                serde_json::json!({"id": session, "job_id": job_id, "nonce": nonce,
                    "result": result_for_difficulty(DIFF)}),
            )
            .await
            .unwrap();
        self.sent += 1;
        let reply = self
            .m
            .reply(id, WAIT)
            .await
            .expect("every submit is answered");
        self.answered += 1;
        reply
    }

    async fn submit(&mut self) -> Value {
        let job = self.job_id();
        self.submit_for(&job).await
    }

    /// Waits for a job notification whose id is `job_id`.
    async fn job(&mut self, job_id: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.m.job.as_ref().map(|j| j.job_id.as_str()) != Some(job_id) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.m.next_job(left).await.expect("the job arrives");
        }
    }

    /// Every submit answered exactly once: the tallies agree and nothing but jobs comes
    /// for a while.
    async fn all_answered_once(&mut self) {
        assert_eq!(self.sent, self.answered, "submits sent vs answered");
        while let Ok(v) = self.m.recv(Duration::from_millis(300)).await {
            assert_eq!(v["method"], "job", "a second answer: {v}");
        }
        eprintln!("submits sent {} answered {}", self.sent, self.answered);
    }
}

fn ok(v: &Value) -> bool {
    v["result"]["status"] == "OK"
}

async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(BOUND, body)
        .await
        .expect("the test ran over its bound");
}

/// A proxy in front of `pools` (see [`config`]) and one miner logged in through it.
async fn proxy_and_miner(pools: &[SocketAddr]) -> (ProxyHandle, Miner) {
    let proxy = Proxy::start(config(pools)).await.unwrap();
    let m = Miner::login(&proxy).await;
    (proxy, m)
}

/// The end of every scenario: each submit answered exactly once, then the proxy stops.
async fn finish(mut m: Miner, proxy: ProxyHandle) {
    m.all_answered_once().await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

async fn pools() -> (MockPool, MockPool) {
    (
        MockPool::start(make_job(1, DIFF)).await.unwrap(),
        MockPool::start(make_job(2, DIFF)).await.unwrap(),
    )
}

#[tokio::test]
async fn a_pool_that_closes_mid_submit_is_logged_in_again() {
    bounded(async {
        let (a, b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr(), b.addr()]).await;
        a.set_reply(Reply::Close);
        let r = m.submit().await;
        assert_eq!(error_message(&r), Some("Connection to pool lost"));
        a.set_reply(Reply::Ok);
        // The primary again, a new session: its job reaches the miner on the same connection.
        assert!(a.wait_for(WAIT, |p| p.received("login").len() == 2).await);
        m.m.next_job(WAIT).await.unwrap();
        assert!(ok(&m.submit().await));
        assert_eq!(a.received("submit").len(), 2);
        assert!(b.received("submit").is_empty());
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_that_answers_garbage_is_dropped_for_the_backup() {
    bounded(async {
        let (a, b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr(), b.addr()]).await;
        a.set_reply(Reply::Garbage);
        let r = m.submit().await;
        assert_eq!(error_message(&r), Some("Pool did not answer in time"));
        m.job("job000002").await;
        assert!(ok(&m.submit().await));
        assert_eq!(b.received("submit").len(), 1);
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn a_late_answer_is_taken_in_time_and_refused_after_the_timeout() {
    bounded(async {
        let (a, b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr(), b.addr()]).await;
        a.set_reply(Reply::OkAfter(Duration::from_millis(300)));
        assert!(ok(&m.submit().await), "late but within the reply timeout");
        a.set_reply(Reply::OkAfter(Duration::from_millis(1600)));
        let r = m.submit().await;
        assert_eq!(error_message(&r), Some("Pool did not answer in time"));
        // Silent for the reply timeout while asked: dropped for the backup.
        m.job("job000002").await;
        assert!(ok(&m.submit().await));
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn bad_jobs_never_reach_a_miner() {
    bounded(async {
        let (a, _b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr()]).await;
        let good = make_job(3, DIFF);
        for line in bad_job_lines(&good) {
            a.push_raw(&line);
        }
        assert!(
            m.m.next_job(Duration::from_millis(500)).await.is_err(),
            "no bad job reached the miner"
        );
        assert!(ok(&m.submit().await), "the session lives on");
        a.push_job(good);
        m.job("job000003").await;
        assert!(ok(&m.submit().await));
        assert_eq!(a.received("login").len(), 1);
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn unauthenticated_makes_the_proxy_log_in_again_and_the_miner_stays() {
    bounded(async {
        let (a, _b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr()]).await;
        a.set_reply(Reply::Error("Unauthenticated".into()));
        let r = m.submit().await;
        assert_eq!(error_message(&r), Some("Unauthenticated"));
        assert!(a.wait_for(WAIT, |p| p.received("login").len() == 2).await);
        a.set_reply(Reply::Ok);
        m.m.next_job(WAIT).await.unwrap();
        assert!(ok(&m.submit().await));
        let submits = a.received("submit");
        assert_eq!(
            submits[1].params["id"], "pool-session-1",
            "the new pool session"
        );
        assert_eq!(
            proxy.stats().connections,
            1,
            "the miner kept its connection"
        );
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn after_a_reconnect_a_share_for_the_old_sessions_job_is_refused_and_never_sent() {
    bounded(async {
        let (a, _b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr()]).await;
        let old = m.job_id();
        a.drop_connections();
        // The pool's next session has another job; the miner gets it.
        a.push_job(make_job(7, DIFF));
        m.job("job000007").await;
        let r = m.submit_for(&old).await;
        assert_eq!(error_message(&r), Some("Invalid job id"));
        assert!(ok(&m.submit().await));
        let submits = a.received("submit");
        assert_eq!(
            submits.len(),
            1,
            "the old job's share never reached the pool"
        );
        assert_eq!(submits[0].params["job_id"], "job000007");
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn shares_while_the_pool_is_away_are_answered_at_once() {
    bounded(async {
        let (a, _b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr()]).await;
        a.set_login_silent(true);
        a.drop_connections();
        // The proxy is logging in again (unanswered): the old job is gone.
        assert!(a.wait_for(WAIT, |p| p.received("login").len() == 2).await);
        let r = m.submit().await;
        assert_eq!(error_message(&r), Some("Invalid job id"));
        a.set_login_silent(false);
        m.m.next_job(WAIT).await.unwrap();
        assert!(ok(&m.submit().await));
        assert_eq!(a.received("submit").len(), 1, "nothing replayed");
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_that_never_answers_the_login_is_skipped() {
    bounded(async {
        let (a, b) = pools().await;
        a.set_login_silent(true);
        let (proxy, mut m) = proxy_and_miner(&[a.addr(), b.addr()]).await;
        assert_eq!(m.job_id(), "job000002");
        assert!(ok(&m.submit().await));
        assert_eq!(b.received("submit").len(), 1);
        finish(m, proxy).await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_that_accepts_tcp_and_hangs_is_skipped() {
    bounded(async {
        let hang = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hang_addr = hang.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = hang.accept().await {
                held.push(s);
            }
        });
        let b = MockPool::start(make_job(2, DIFF)).await.unwrap();
        let (proxy, mut m) = proxy_and_miner(&[hang_addr, b.addr()]).await;
        assert_eq!(m.job_id(), "job000002");
        assert!(ok(&m.submit().await));
        finish(m, proxy).await;
        holder.abort();
    })
    .await;
}

#[tokio::test]
async fn a_pool_that_stops_talking_is_left_for_the_backup_with_no_share_flowing() {
    bounded(async {
        let (a, b) = pools().await;
        let (proxy, mut m) = proxy_and_miner(&[a.addr(), b.addr()]).await;
        a.set_mute(true);
        let t0 = tokio::time::Instant::now();
        m.job("job000002").await;
        eprintln!("moved to the backup after {:?}", t0.elapsed());
        assert!(!a.received("keepalived").is_empty(), "probed first");
        assert!(ok(&m.submit().await));
        finish(m, proxy).await;
    })
    .await;
}

/// Miners and shares per miner of the churn test.
const CHURN_MINERS: usize = 4;
const CHURN_SHARES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_submitting_through_a_pool_that_goes_down_get_every_share_answered_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    bounded(async {
        let (a, b) = pools().await;
        let proxy = Proxy::start(config(&[a.addr(), b.addr()])).await.unwrap();
        let answered = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..CHURN_MINERS {
            let mut m = Miner::login(&proxy).await;
            let answered = answered.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok_n, mut refused) = (0, 0);
                for _ in 0..CHURN_SHARES {
                    let job = m.job_id();
                    let r = m.submit().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                    if ok(&r) {
                        ok_n += 1;
                    } else {
                        refused += 1;
                        if error_message(&r) == Some("Invalid job id") && m.job_id() == job {
                            // The job ended with its session: mine the next one.
                            m.m.next_job(WAIT).await.expect("a new job");
                        }
                    }
                }
                m.all_answered_once().await;
                (m.sent, m.answered, ok_n, refused)
            }));
        }
        // A quarter of the way in, the primary goes down for good.
        while answered.load(Ordering::Relaxed) < CHURN_MINERS * CHURN_SHARES / 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a.shut_down();
        let (mut sent, mut got, mut oks, mut refused) = (0, 0, 0, 0);
        for t in tasks {
            let (s, g, o, r) = t.await.unwrap();
            sent += s;
            got += g;
            oks += o;
            refused += r;
        }
        eprintln!("churn: submits sent {sent} answered {got} (OK {oks}, refused {refused})");
        assert_eq!(sent, CHURN_MINERS * CHURN_SHARES);
        assert_eq!(sent, got);
        // The pools saw each accepted share once, and no more than were accepted.
        let forwarded = a.received("submit").len() + b.received("submit").len();
        assert!(oks <= forwarded, "{oks} OK but {forwarded} forwarded");
        assert!(!b.received("submit").is_empty(), "the backup took over");
        proxy.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}
