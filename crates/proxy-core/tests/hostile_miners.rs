//! The hostile-miner suite (issue 10 item 12, miner half), through real loopback sockets:
//! slowloris, a 1 MiB line, login floods, 1,000 connections that never log in, every submit
//! field wrong, other miners' sessions, duplicates, and a miner that never reads.
//!
//! In each case well-behaved miners work beside the hostile one: every share they submit is
//! counted, and so is every answer they get, by request id. The suite asserts that each
//! submit is answered exactly once (no answer missing, none doubled), that the proxy did not
//! panic (it keeps serving and shuts down cleanly), and that the hostile connection is
//! answered or closed as the spec says. Counts and times are bounded: the timeout cases run
//! on tokio's paused clock, the rest take well under a second each.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use proxy_core::{Config, Proxy, ProxyHandle, DUPLICATE_SHARE, INACTIVITY_TIMEOUT, LOGIN_TIMEOUT};
use serde_json::{json, Value};
use stratum_proto::Job;
use test_support::miner::{error_message, fixed_byte, result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const DIFF: u64 = 1000;

async fn start(pool: &MockPool) -> (ProxyHandle, SocketAddr) {
    start_with(common::local_config(&[pool.addr()])).await
}

async fn start_with(config: Config) -> (ProxyHandle, SocketAddr) {
    let proxy = Proxy::start(config).await.unwrap();
    let addr = proxy.local_addrs()[0];
    (proxy, addr)
}

/// Well-behaved miners beside the hostile one. Every share they submit and every answer they
/// get is counted by request id.
struct Honest {
    miners: Vec<TestMiner>,
    /// Answers per submit request id, per miner.
    answers: Vec<HashMap<u64, u32>>,
    sent: u64,
    next_nonce: u32,
    /// How long an answer may take. On tokio's paused clock a timer that fires while an
    /// answer is on its way can advance the clock past a short wait (seen at the upstream's
    /// 60 s keepalive), so paused tests allow more: virtual time costs nothing.
    wait: Duration,
}

impl Honest {
    async fn new(addr: SocketAddr, n: usize) -> Self {
        let mut miners = Vec::new();
        for i in 0..n {
            let mut m = TestMiner::connect(addr).await.unwrap();
            m.login(&format!("honest{i}")).await.unwrap();
            miners.push(m);
        }
        Self {
            answers: vec![HashMap::new(); n],
            miners,
            sent: 0,
            next_nonce: 1,
            wait: WAIT,
        }
    }

    /// On tokio's paused clock: allow 20 s (virtual) per answer, see [`Honest::wait`].
    fn paused(mut self) -> Self {
        self.wait = Duration::from_secs(20);
        self
    }

    /// Each miner submits one new share on its current job and reads until its answer
    /// arrives (jobs on the way are recorded; an answer to anything else is counted too).
    async fn round(&mut self) {
        let result = result_for_difficulty(DIFF);
        for (m, answers) in self.miners.iter_mut().zip(&mut self.answers) {
            let job = m.job.clone().expect("a job");
            let nonce = m.nonce(self.next_nonce);
            let session = m.session.clone().unwrap();
            let id = m
                .request(
                    "submit",
                    json!({"id": session, "job_id": job.job_id, "nonce": nonce, "result": result}),
                )
                .await
                .unwrap();
            self.sent += 1;
            answers.insert(id, 0);
            loop {
                let v = m
                    .recv(self.wait)
                    .await
                    .expect("an honest miner is answered");
                if v.get("method").is_some() {
                    continue;
                }
                let got = v["id"].as_u64().expect("a numeric id");
                *answers.entry(got).or_insert(0) += 1;
                if got == id {
                    assert_eq!(v["result"]["status"], "OK", "honest share: {v}");
                    break;
                }
            }
        }
        self.next_nonce += 1;
    }

    /// Reads what is left for a moment, then asserts every submit got exactly one answer.
    /// Returns (submits sent, answers received), also printed under `case`.
    async fn finish(mut self, case: &str) -> (u64, u64) {
        for (m, answers) in self.miners.iter_mut().zip(&mut self.answers) {
            while let Ok(v) = m.recv(Duration::from_millis(100)).await {
                if v.get("method").is_none() {
                    let got = v["id"].as_u64().unwrap_or(u64::MAX);
                    *answers.entry(got).or_insert(0) += 1;
                }
            }
        }
        let mut answered = 0;
        for answers in &self.answers {
            for (id, n) in answers {
                assert_eq!(*n, 1, "submit {id} answered {n} times");
                answered += u64::from(*n);
            }
        }
        assert_eq!(answered, self.sent, "every submit answered exactly once");
        println!("{case}: {} honest submits, {answered} answers", self.sent);
        (self.sent, answered)
    }
}

/// A raw connection's read side: true once the proxy closed it (EOF or reset) within `wait`;
/// what it sent first is read and dropped.
async fn closed(stream: &mut (impl AsyncReadExt + Unpin), wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn slowloris_before_login_is_closed_at_the_login_timeout() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut honest = Honest::new(addr, 2).await.paused();
    let t0 = Instant::now();
    let (mut r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    // One byte a second of a login line that never ends.
    let dribble = tokio::spawn(async move {
        let line = br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"slow"#;
        for b in line.iter().cycle().take(600) {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    honest.round().await;
    assert!(closed(&mut r, LOGIN_TIMEOUT + Duration::from_secs(3)).await);
    assert!(
        t0.elapsed() >= LOGIN_TIMEOUT,
        "closed after {:?}",
        t0.elapsed()
    );
    dribble.abort();
    honest.round().await;
    let (sent, answered) = honest
        .finish("slowloris_before_login_is_closed_at_the_login_timeout")
        .await;
    assert_eq!((sent, answered), (4, 4));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn slowloris_after_login_is_closed_at_the_inactivity_timeout() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut honest = Honest::new(addr, 1).await.paused();
    let mut slow = TestMiner::connect(addr).await.unwrap();
    slow.login("slow").await.unwrap();
    let t0 = Instant::now();
    // Part of a line, a byte every 10 s: bytes without a complete request are not activity.
    let session = slow.session.clone().unwrap();
    let partial =
        format!(r#"{{"id":2,"jsonrpc":"2.0","method":"keepalived","params":{{"id":"{session}"#);
    let mut closed_at = None;
    for b in partial.bytes().cycle().take(100) {
        if slow.send_raw(&[b]).await.is_err() || slow.closed_within(Duration::from_secs(10)).await {
            closed_at = Some(t0.elapsed());
            break;
        }
        // The honest miner stays active (a share a minute, between the upstream's 60 s
        // keepalives: see `Honest::wait`).
        if (25..35).contains(&(t0.elapsed().as_secs() % 60)) {
            honest.round().await;
        }
    }
    let closed_at = closed_at.expect("closed");
    assert!(
        closed_at >= INACTIVITY_TIMEOUT
            && closed_at <= INACTIVITY_TIMEOUT + Duration::from_secs(15),
        "closed after {closed_at:?}"
    );
    honest.round().await;
    let (sent, answered) = honest
        .finish("slowloris_after_login_is_closed_at_the_inactivity_timeout")
        .await;
    assert!(
        sent >= 10 && sent == answered,
        "{sent} sent, {answered} answered"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_one_mebibyte_line_closes_that_connection_only() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut honest = Honest::new(addr, 3).await;
    honest.round().await;
    for logged_in in [false, true] {
        let mut big = TestMiner::connect(addr).await.unwrap();
        if logged_in {
            big.login("big").await.unwrap();
        }
        let mut line =
            br#"{"id":1,"jsonrpc":"2.0","method":"submit","params":{"result":""#.to_vec();
        line.resize(1 << 20, b'a');
        line.push(b'\n');
        // The proxy may close while the line is still being written.
        let _ = big.send_raw(&line).await;
        assert!(
            big.closed_within(WAIT).await,
            "closed (logged in: {logged_in})"
        );
        honest.round().await;
    }
    let (sent, answered) = honest
        .finish("a_one_mebibyte_line_closes_that_connection_only")
        .await;
    assert_eq!((sent, answered), (9, 9));
    assert_eq!(proxy.stats().miners, 3, "only the honest miners are left");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_login_flood_on_one_connection_gets_one_answer_per_login() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut honest = Honest::new(addr, 2).await;
    let mut flood = TestMiner::connect(addr).await.unwrap();
    let n = 500u64;
    let mut burst = String::new();
    for id in 1..=n {
        burst += &json!({"id": id, "jsonrpc": "2.0", "method": "login",
            "params": {"login": format!("flood{id}"), "pass": "x", "agent": "flood/1"}})
        .to_string();
        burst.push('\n');
    }
    flood.send_raw(burst.as_bytes()).await.unwrap();
    honest.round().await;
    let mut answers: HashMap<u64, Value> = HashMap::new();
    while answers.len() < n as usize {
        let v = flood.recv(WAIT).await.unwrap();
        if v.get("method").is_none() {
            let id = v["id"].as_u64().unwrap();
            assert!(answers.insert(id, v).is_none(), "login {id} answered twice");
        }
    }
    assert!(answers[&1]["error"].is_null(), "the first login is served");
    for id in 2..=n {
        assert_eq!(error_message(&answers[&id]), Some("Already logged in"));
    }
    assert!(
        flood.recv(Duration::from_millis(100)).await.is_err(),
        "nothing more"
    );
    honest.round().await;
    honest
        .finish("a_login_flood_on_one_connection_gets_one_answer_per_login")
        .await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_flood_of_300_logins_at_once_is_served_beside_working_miners() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut honest = Honest::new(addr, 2).await;
    let logins = (0..300).map(|i| async move {
        let mut m = TestMiner::connect(addr).await.unwrap();
        m.login(&format!("flood{i}")).await.map(|_| m)
    });
    let (flood, ()) = tokio::join!(futures_util::future::join_all(logins), async {
        for _ in 0..5 {
            honest.round().await;
        }
    });
    let flood: Vec<TestMiner> = flood.into_iter().map(Result::unwrap).collect();
    assert_eq!(proxy.stats().miners, 302);
    // 302 miners: a second upstream for the 257th on.
    assert_eq!(proxy.mapper_loads().iter().sum::<usize>(), 302);
    drop(flood);
    honest.round().await;
    assert_eq!(
        honest
            .finish("a_flood_of_300_logins_at_once_is_served_beside_working_miners")
            .await,
        (12, 12)
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_thousand_connections_that_never_log_in_do_not_stop_others_and_are_closed() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let t0 = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Served while they hang there.
    let mut honest = Honest::new(addr, 2).await.paused();
    honest.round().await;
    assert!(proxy.stats().miners >= 2);
    // Past the login timeout of the last one, every idle connection is closed.
    tokio::time::sleep_until(t0 + LOGIN_TIMEOUT + Duration::from_secs(2)).await;
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed(s, Duration::from_secs(3)).await,
            "idle connection {i}"
        );
    }
    honest.round().await;
    assert_eq!(proxy.stats().miners, 2, "only the honest miners are left");
    assert_eq!(
        honest
            .finish("a_thousand_connections_that_never_log_in_do_not_stop_others_and_are_closed")
            .await,
        (4, 4)
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn every_submit_field_wrong_gets_its_error_and_the_connection_lives() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut honest = Honest::new(addr, 1).await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.login("fuzzy").await.unwrap();
    let session = m.session.clone().unwrap();
    let job = m.job.clone().unwrap();
    let nonce = m.nonce(5);
    let good = result_for_difficulty(DIFF);
    let foreign = format!("000000{:02x}", fixed_byte(&job.blob).wrapping_add(1));
    let p = |id: &str, job_id: &str, nonce: &str, result: &str| json!({"id": id, "job_id": job_id, "nonce": nonce, "result": result});
    let cases: Vec<(Value, &str)> = vec![
        (p("", &job.job_id, &nonce, &good), "Unauthenticated"),
        (
            p("not-a-uuid", &job.job_id, &nonce, &good),
            "Unauthenticated",
        ),
        (
            json!({"job_id": job.job_id, "nonce": nonce, "result": good}),
            "Unauthenticated",
        ),
        (p(&session, "", &nonce, &good), "Missing job id"),
        (p(&session, "no-such-job", &nonce, &good), "Invalid job id"),
        (p(&session, &job.job_id, "", &good), "Invalid nonce"),
        (p(&session, &job.job_id, "12345", &good), "Invalid nonce"),
        (p(&session, &job.job_id, "zzzzzzzz", &good), "Invalid nonce"),
        (
            p(&session, &job.job_id, &format!("0A{}", &nonce[2..]), &good),
            "Invalid nonce",
        ),
        (
            p(&session, &job.job_id, "0011223344", &good),
            "Invalid nonce",
        ),
        (
            p(&session, &job.job_id, &foreign, &good),
            "Invalid nonce; is miner not compatible with NiceHash?",
        ),
        (p(&session, &job.job_id, &nonce, ""), "Invalid result"),
        (p(&session, &job.job_id, &nonce, "xyz"), "Invalid result"),
        (
            p(&session, &job.job_id, &nonce, &"g".repeat(64)),
            "Invalid result",
        ),
        (
            p(&session, &job.job_id, &nonce, &"f".repeat(64)),
            "Low difficulty share",
        ),
        (
            json!({"id": session, "job_id": job.job_id, "nonce": nonce, "result": good, "algo": "cn/0"}),
            "Incorrect algorithm",
        ),
        (
            json!({"id": session, "job_id": 5, "nonce": nonce, "result": good}),
            "Invalid params",
        ),
        (
            json!({"id": session, "job_id": job.job_id, "nonce": 7, "result": good}),
            "Invalid params",
        ),
        // Positional params fill the fields in order: this one has no nonce.
        (json!([session, job.job_id]), "Invalid nonce"),
        (json!("submit"), "Invalid params"),
    ];
    for (params, expected) in &cases {
        let id = m.request("submit", params.clone()).await.unwrap();
        let r = m.reply(id, WAIT).await.unwrap();
        assert_eq!(error_message(&r), Some(*expected), "{params}");
    }
    honest.round().await;
    assert!(
        pool.received("submit").len() == 1,
        "only the honest share was forwarded"
    );
    // Still connected and served: the right share is accepted.
    let r = m.submit(&job.job_id, &nonce, &good).await.unwrap();
    assert_eq!(r["result"]["status"], "OK", "{r}");
    assert_eq!(
        honest
            .finish("every_submit_field_wrong_gets_its_error_and_the_connection_lives")
            .await,
        (1, 1)
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn another_miners_session_is_unauthenticated_and_changes_nothing() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut victim = TestMiner::connect(addr).await.unwrap();
    victim.login("victim").await.unwrap();
    let mut thief = TestMiner::connect(addr).await.unwrap();
    thief.login("thief").await.unwrap();
    let stolen = victim.session.clone().unwrap();
    let job = victim.job.clone().unwrap();
    let share = victim.nonce(3);
    let good = result_for_difficulty(DIFF);
    let mut requests = vec![
        (
            "submit",
            json!({"id": stolen, "job_id": job.job_id, "nonce": share, "result": good}),
        ),
        ("keepalived", json!({"id": stolen})),
        ("getjob", json!({"id": stolen})),
    ];
    // Not logged in at all: the same.
    let mut stranger = TestMiner::connect(addr).await.unwrap();
    for (method, params) in requests.drain(..) {
        for m in [&mut thief, &mut stranger] {
            let id = m.request(method, params.clone()).await.unwrap();
            let r = m.reply(id, WAIT).await.unwrap();
            assert_eq!(error_message(&r), Some("Unauthenticated"), "{method}");
        }
    }
    assert!(pool.received("submit").is_empty(), "nothing forwarded");
    // The victim's own share is new to the proxy: the thief's attempt left no trace.
    let r = victim.submit(&job.job_id, &share, &good).await.unwrap();
    assert_eq!(r["result"]["status"], "OK");
    assert_eq!(pool.received("submit").len(), 1);
    assert_eq!(
        proxy.stats().invalid,
        0,
        "session errors are not share verdicts"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_miner_repeating_one_share_reaches_the_pool_once_and_is_cut_off() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let mut config = common::local_config(&[pool.addr()]);
    config.rate_limit.invalid_shares = 50;
    config.rate_limit.invalid_percent = 50;
    let (proxy, addr) = start_with(config).await;
    let mut honest = Honest::new(addr, 2).await;
    let mut rep = TestMiner::connect(addr).await.unwrap();
    rep.login("repeater").await.unwrap();
    let job = rep.job.clone().unwrap().job_id;
    let nonce = rep.nonce(42);
    let good = result_for_difficulty(DIFF);
    let mut ok = 0;
    let mut duplicates = 0;
    for i in 0..100 {
        let Ok(r) = rep.submit(&job, &nonce, &good).await else {
            break;
        };
        match r["result"]["status"].as_str() {
            Some("OK") => ok += 1,
            _ => {
                assert_eq!(error_message(&r), Some(DUPLICATE_SHARE), "repeat {i}");
                duplicates += 1;
            }
        }
        if i % 20 == 0 {
            honest.round().await;
        }
    }
    // The rule (`rate-limit.invalid-shares` 50 at 50 %) cut it off.
    assert_eq!((ok, duplicates), (1, 50));
    assert!(rep.closed_within(WAIT).await);
    assert_eq!(
        pool.received("submit").len() as u64,
        1 + honest.sent,
        "the pool saw the repeated share once"
    );
    honest.round().await;
    honest
        .finish("a_miner_repeating_one_share_reaches_the_pool_once_and_is_cut_off")
        .await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// A job whose line is about 15 KB (a long blob), to fill buffers quickly.
fn big_job(n: u64) -> Job {
    let mut job = make_job(n, DIFF);
    while job.blob.len() < 15_000 {
        job.blob.push_str("ab");
    }
    job
}

#[tokio::test]
async fn a_miner_that_never_reads_is_closed_and_the_others_keep_getting_jobs() {
    let pool = MockPool::start(big_job(1)).await.unwrap();
    let (proxy, addr) = start(&pool).await;
    let mut honest = Honest::new(addr, 2).await;
    // Logs in, then asks for the (15 KB) job again and again and reads nothing.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut deaf = sock.connect(addr).await.unwrap();
    let login = json!({"id": 1, "jsonrpc": "2.0", "method": "login",
        "params": {"login": "deaf", "pass": "x", "agent": "t/1"}})
    .to_string()
        + "\n";
    deaf.write_all(login.as_bytes()).await.unwrap();
    // Its login reply (with the job) is the last thing it reads.
    let mut reply = Vec::new();
    while !reply.ends_with(b"\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, deaf.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "login answered");
        reply.extend_from_slice(&buf[..n]);
    }
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    let session = reply["result"]["id"].as_str().unwrap().to_string();
    let monitor = proxy.monitor();
    assert_eq!(monitor.miners().len(), 3);
    let getjob = json!({"id": 2, "jsonrpc": "2.0", "method": "getjob", "params": {"id": session}})
        .to_string()
        + "\n";
    let mut asked = 0;
    let mut n = 2;
    // At most 2,000 requests (30 MB of answers): closed long before.
    while monitor.miners().len() == 3 && asked < 2000 {
        for _ in 0..50 {
            if deaf.write_all(getjob.as_bytes()).await.is_err() {
                break;
            }
            asked += 1;
        }
        // The others keep receiving jobs (and their shares answers) meanwhile.
        pool.push_job(big_job(n));
        for m in &mut honest.miners {
            assert_eq!(m.next_job(WAIT).await.unwrap().job_id, format!("job{n:06}"));
        }
        honest.round().await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        monitor.miners().len(),
        2,
        "closed after {asked} unread job requests"
    );
    assert!(
        asked * 15_000 > 256 * 1024,
        "not before its outbox cap: {asked}"
    );
    honest.round().await;
    let (sent, answered) = honest
        .finish("a_miner_that_never_reads_is_closed_and_the_others_keep_getting_jobs")
        .await;
    assert_eq!(sent, answered);
    proxy.shutdown(Duration::from_secs(1)).await;
}
