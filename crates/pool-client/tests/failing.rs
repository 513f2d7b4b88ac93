//! Pools that misbehave (go-proxy order 5, item 1, 2 and 9): silent pools, unanswered logins,
//! session-ending errors, bad jobs, session boundaries and the make-before-break reload,
//! against the in-process mock pool over loopback.

use std::time::Duration;

use pool_client::{FailoverOptions, PoolConfig, PoolList, ShareError, UpstreamState};
use test_support::miner::result_for_difficulty;
use test_support::mock_pool::{bad_job_lines, make_job, MockPool, Reply};
use tokio::time::Instant;

mod common;

use common::{bounded, Harness};

const REPLY_TIMEOUT: Duration = Duration::from_millis(400);

fn options() -> FailoverOptions {
    FailoverOptions {
        retries: 1,
        retry_pause: Duration::from_millis(100),
        reply_timeout: REPLY_TIMEOUT,
        connect_timeout: Duration::from_millis(600),
        // No keepalive traffic of its own: only the idle probe talks to a quiet pool.
        keepalive_interval: Duration::from_secs(600),
        agent: "test-proxy/1".into(),
    }
}

fn entry(pool: &MockPool) -> PoolConfig {
    PoolConfig {
        url: pool.addr().to_string(),
        user: "WALLET".into(),
        ..PoolConfig::default()
    }
}

fn ok_result() -> String {
    result_for_difficulty(500)
}

/// A mock pool whose job is `make_job(n, 500)` (`job00000n`).
async fn pool(n: u64) -> MockPool {
    MockPool::start(make_job(n, 500)).await.unwrap()
}

/// Waits until `pool` has no connection open (drained and closed).
async fn assert_closed(pool: &MockPool) {
    assert!(
        pool.wait_for(Duration::from_secs(5), |p| p.connections_open() == 0)
            .await
    );
}

/// Has `pool` hold its answers (half a reply timeout), submits `n` shares of `job000001`
/// and returns their sequence numbers once `pool` has read them all.
async fn in_flight(h: &mut Harness, pool: &MockPool, n: u32) -> Vec<u64> {
    pool.set_reply(Reply::OkAfter(REPLY_TIMEOUT / 2));
    let seqs = (0..n)
        .map(|i| h.submit("job000001", &format!("{i:08x}"), &ok_result()))
        .collect();
    assert!(
        pool.wait_for(Duration::from_secs(5), |p| p.received("submit").len()
            == n as usize)
            .await
    );
    seqs
}

/// One pool, logged in, that refuses the first share with `message`: the pool and the
/// upstream, after that share got `Rejected(message)`.
async fn refused_with(message: &str) -> (MockPool, Harness) {
    let a = pool(1).await;
    let mut h = Harness::spawn(vec![entry(&a)], options());
    h.recorder.job(0).await;
    a.set_reply(Reply::Error(message.into()));
    let seq = h.submit("job000001", "000000aa", &ok_result());
    assert_eq!(
        h.recorder.result(seq).await,
        Err(ShareError::Rejected(message.into()))
    );
    (a, h)
}

#[tokio::test]
async fn a_pool_that_stops_talking_is_dropped_with_no_share_flowing() {
    bounded(async {
        let a = pool(1).await;
        let b = pool(2).await;
        let h = Harness::spawn(vec![entry(&a), entry(&b)], options());
        h.recorder.active_on(0).await;
        a.set_mute(true);
        let t0 = Instant::now();
        // Probed after half a quiet reply timeout, dropped a reply timeout after its last
        // line: a failed attempt at the primary (one attempt per pool here), so on to the
        // backup.
        h.recorder.active_on(1).await;
        let took = t0.elapsed();
        assert!(
            !a.received("keepalived").is_empty(),
            "the quiet pool was probed"
        );
        assert!(took >= REPLY_TIMEOUT / 2, "dropped after {took:?}");
        assert_eq!(a.received("login").len(), 1);
        let (job, session) = h.recorder.job(1).await;
        assert_eq!((job.job_id.as_str(), session), ("job000002", 2));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_pool_with_a_share_in_flight_answers_it_once_and_fails_over() {
    bounded(async {
        let a = pool(1).await;
        let b = pool(2).await;
        let mut h = Harness::spawn(vec![entry(&a), entry(&b)], options());
        h.recorder.job(0).await;
        a.set_mute(true);
        let seq = h.submit("job000001", "000000aa", &ok_result());
        assert_eq!(h.recorder.result(seq).await, Err(ShareError::Timeout));
        h.recorder.active_on(1).await;
        let seq = h.submit("job000002", "000000bb", &ok_result());
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(b.received("submit").len(), 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_login_that_is_never_answered_times_out_and_the_next_pool_is_tried() {
    bounded(async {
        let a = pool(1).await;
        let b = pool(2).await;
        a.set_login_silent(true);
        let t0 = Instant::now();
        let h = Harness::spawn(vec![entry(&a), entry(&b)], options());
        h.recorder.active_on(1).await;
        assert!(t0.elapsed() >= options().connect_timeout);
        assert_eq!(a.received("login").len(), 1);
        assert_eq!(
            a.connections_open(),
            0,
            "the unanswered connection was closed"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unauthenticated_answers_the_share_and_logs_in_again() {
    bounded(async {
        let (a, mut h) = refused_with("Unauthenticated").await;
        // A new login, a new session, its job.
        let (_, session) = h.recorder.job(1).await;
        assert_eq!(session, 2);
        assert_eq!(a.received("login").len(), 2);
        a.set_reply(Reply::Ok);
        let seq = h.submit("job000001", "000000bb", &ok_result());
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        let submits = a.received("submit");
        assert_eq!(submits[1].conn, 1, "sent on the new connection");
        assert_eq!(submits[1].params["id"], "pool-session-1");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_ordinary_refusal_keeps_the_session() {
    bounded(async {
        let (a, mut h) = refused_with("Invalid job id").await;
        a.set_reply(Reply::Ok);
        let seq = h.submit("job000001", "000000bb", &ok_result());
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(a.received("login").len(), 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_jobs_are_never_reported() {
    bounded(async {
        let a = pool(1).await;
        let h = Harness::spawn(vec![entry(&a)], options());
        h.recorder.job(0).await;
        let good = make_job(2, 500);
        for line in bad_job_lines(&good) {
            a.push_raw(&line);
        }
        a.push_job(good.clone());
        assert_eq!(h.recorder.job(1).await, (good, 1));
        assert_eq!(h.recorder.seen().jobs.len(), 2, "only the good job");
        assert_eq!(a.received("login").len(), 1, "the session lives on");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_share_of_the_previous_session_is_refused_and_never_reaches_the_new_one() {
    bounded(async {
        let a = pool(1).await;
        let mut h = Harness::spawn(vec![entry(&a)], options());
        let (job, old) = h.recorder.job(0).await;
        a.drop_connections();
        let (_, new) = h.recorder.job(1).await;
        assert_eq!((old, new), (1, 2));
        let refused = h.submit_in(old, &job.job_id, "000000aa", &ok_result());
        assert_eq!(refused, Err(ShareError::SessionEnded));
        let seq = h
            .submit_in(new, &job.job_id, "000000bb", &ok_result())
            .unwrap();
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        let submits = a.received("submit");
        assert_eq!(submits.len(), 1, "only the new session's share was sent");
        assert_eq!(submits[0].params["nonce"], "000000bb");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_logs_in_to_the_new_pool_before_the_old_one_answers_its_shares() {
    bounded(async {
        let a = pool(1).await;
        let b = pool(2).await;
        let mut h = Harness::spawn(vec![entry(&a)], options());
        h.recorder.job(0).await;
        let in_flight = in_flight(&mut h, &a, 5).await;
        h.upstream.set_pools(vec![entry(&b)], options());
        for seq in &in_flight {
            assert_eq!(
                h.recorder.result(*seq).await,
                Ok(()),
                "the old pool's answer"
            );
        }
        let (job, session) = h.recorder.job(1).await;
        assert_eq!((job.job_id.as_str(), session), ("job000002", 2));
        assert!(
            b.received("submit").is_empty(),
            "nothing replayed to the new pool"
        );
        assert_closed(&a).await;
        // Once logged in, never a state but Active: the miners saw no gap.
        let states: Vec<_> = h.recorder.seen().states.clone();
        let after: Vec<_> = states
            .iter()
            .skip_while(|(s, _)| *s != UpstreamState::Active)
            .collect();
        assert_eq!(
            after,
            [
                &(UpstreamState::Active, Some(0)),
                &(UpstreamState::Active, Some(0))
            ],
            "{states:?}"
        );
        let seq = h.submit("job000002", "000000cc", &ok_result());
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(b.received("submit").len(), 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn upstreams_on_one_pool_list_all_follow_a_change_of_it() {
    bounded(async {
        let a = pool(1).await;
        let b = pool(2).await;
        let list = PoolList::new(vec![entry(&a)], options());
        let (one, two) = (Harness::spawn_on(&list), Harness::spawn_on(&list));
        assert_eq!(one.recorder.job(0).await.0.job_id, "job000001");
        assert_eq!(two.recorder.job(0).await.0.job_id, "job000001");
        assert!(
            a.wait_for(Duration::from_secs(5), |p| p.connections_open() == 2)
                .await,
            "a connection each"
        );
        list.set(vec![entry(&b)], options());
        assert_eq!(one.recorder.job(1).await.0.job_id, "job000002");
        assert_eq!(two.recorder.job(1).await.0.job_id, "job000002");
        assert_closed(&a).await;
        one.stop().await;
        two.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_to_pools_that_cannot_be_reached_drains_the_old_one_then_fails_over() {
    bounded(async {
        let a = pool(1).await;
        let dead = {
            let p = pool(9).await;
            let e = entry(&p);
            p.shut_down();
            e
        };
        let mut h = Harness::spawn(vec![entry(&a)], options());
        h.recorder.job(0).await;
        let seq = in_flight(&mut h, &a, 1).await[0];
        h.upstream.set_pools(vec![dead], options());
        assert_eq!(
            h.recorder.result(seq).await,
            Ok(()),
            "the old pool's answer"
        );
        h.recorder.state(UpstreamState::Error).await;
        assert_closed(&a).await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_drains_a_tls_session_too_and_a_silent_tls_pool_is_dropped() {
    bounded(async {
        let tls_entry = |pool: &MockPool| PoolConfig {
            tls: true,
            tls_fingerprint: pool.fingerprint(),
            ..entry(pool)
        };
        let a = MockPool::start_tls(make_job(1, 500)).await.unwrap();
        let b = MockPool::start_tls(make_job(2, 500)).await.unwrap();
        let c = pool(3).await;
        let mut h = Harness::spawn(vec![tls_entry(&a)], options());
        h.recorder.job(0).await;
        let seq = in_flight(&mut h, &a, 1).await[0];
        h.upstream
            .set_pools(vec![tls_entry(&b), entry(&c)], options());
        assert_eq!(
            h.recorder.result(seq).await,
            Ok(()),
            "the old pool's answer"
        );
        let (job, session) = h.recorder.job(1).await;
        assert_eq!((job.job_id.as_str(), session), ("job000002", 2));
        assert_closed(&a).await;
        // The new TLS pool stops talking: dropped for the next entry.
        b.set_mute(true);
        h.recorder.active_on(1).await;
        assert_eq!(h.recorder.job(2).await.0.job_id, "job000003");
        h.stop().await;
    })
    .await;
}
