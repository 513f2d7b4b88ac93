//! The SV1 upstream against test-support's scripted SV1 pool (which checks every share for
//! real) and against pools that misbehave, over loopback: the handshake, difficulty and jobs,
//! real shares accepted and bad ones refused with their codes, `set_extranonce`,
//! `client.reconnect`, failover from a pool that is down or silent, and one answer per
//! submit when a pool goes quiet or closes.

use std::net::SocketAddr;
use std::time::Duration;

use pool_client::sv1::{Sv1Options, Sv1ShareError};
use pool_client::{FailoverOptions, ShareError, UpstreamState};
use stratum_proto::sv1::{ClientRequest, ErrorCode, Notify};
use test_support::sv1_pool::{Sv1Pool, Sv1PoolConfig};

mod sv1_common;

use sv1_common::{bounded, closed_port, entry, grind, share, Harness, Script, ScriptedPool};

const REPLY_TIMEOUT: Duration = Duration::from_millis(600);
/// The pool's share difficulty: about one hash in 2^12 meets it, so grinding is quick.
const POOL_DIFFICULTY: f64 = 1.0 / 1_048_576.0;

fn options() -> FailoverOptions {
    FailoverOptions {
        retries: 1,
        retry_pause: Duration::from_millis(100),
        reply_timeout: REPLY_TIMEOUT,
        connect_timeout: Duration::from_millis(500),
        keepalive_interval: Duration::from_secs(600),
        agent: "test-proxy/1".into(),
    }
}

/// Waits one reply timeout more, then checks each share in `seqs` got exactly one answer (a late
/// pool reply or timer must not answer it a second time).
async fn answered_once_after_the_reply_timeout(h: &Harness, seqs: &[u64]) {
    tokio::time::sleep(REPLY_TIMEOUT).await;
    for seq in seqs {
        assert_eq!(h.recorder.answers(*seq), 1);
    }
}

/// [`options`] with a reply timeout of `reply_timeout`.
fn patient(reply_timeout: Duration) -> FailoverOptions {
    FailoverOptions {
        reply_timeout,
        ..options()
    }
}

/// An upstream on the pools at `addrs` (in list order), SV1 options at their defaults.
fn spawn(addrs: &[SocketAddr], options: FailoverOptions) -> Harness {
    let pools = addrs.iter().map(|a| entry(*a)).collect();
    Harness::spawn(pools, options, Sv1Options::default())
}

/// Checks that a share of the ended `session` is refused at once, never sent.
fn assert_session_refused(h: &mut Harness, job: &Notify, session: u64) {
    assert_eq!(
        h.submit(share(job, session, vec![0; 8], 1)),
        Err(ShareError::SessionEnded)
    );
}

async fn pool() -> Sv1Pool {
    Sv1Pool::start(Sv1PoolConfig {
        difficulty: POOL_DIFFICULTY,
        ..Sv1PoolConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_handshake_reports_extranonce_mask_difficulty_and_job() {
    test_support::init_tracing();
    bounded(async {
        let p = pool().await;
        let h = spawn(&[p.addr()], options());
        let (job, session) = h.recorder.job(0).await;
        assert_eq!(session, 1);
        assert_eq!(job, test_support::sv1_pool::para_job());
        assert_eq!(h.upstream.session(), 1);
        {
            let seen = h.recorder.seen();
            assert_eq!(seen.extranonces, vec![(vec![0xa1, 0, 0, 1], 8, 1)]);
            assert_eq!(seen.masks, vec![(0x1fff_e000, 1)]);
            assert_eq!(seen.difficulties, vec![(POOL_DIFFICULTY, 1)]);
        }
        let methods: Vec<&str> = p
            .received()
            .iter()
            .map(|r| r.request.method())
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            methods,
            ["mining.configure", "mining.subscribe", "mining.authorize"]
        );
        match &p.received()[2].request {
            ClientRequest::Authorize(a) => {
                assert_eq!(a.username, "proxy.worker");
                assert_eq!(a.password.as_deref(), Some("x"));
            }
            other => panic!("{other:?}"),
        }
        match &p.received()[1].request {
            ClientRequest::Subscribe(s) => {
                assert_eq!(s.user_agent.as_deref(), Some("test-proxy/1"));
            }
            other => panic!("{other:?}"),
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_ground_share_is_accepted_and_bad_ones_get_the_pools_codes() {
    test_support::init_tracing();
    bounded(async {
        let p = pool().await;
        let mut h = spawn(&[p.addr()], options());
        let (job, session) = h.recorder.job(0).await;
        let en1 = h.recorder.seen().extranonces[0].0.clone();
        let en2 = vec![0, 0, 0, 0, 0, 0, 0, 7];
        let good = grind(&job, &en1, &en2, POOL_DIFFICULTY, true);
        let low = grind(&job, &en1, &en2, POOL_DIFFICULTY, false);

        let sent = tokio::time::Instant::now();
        let seq = h.submit(share(&job, session, en2.clone(), good)).unwrap();
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        // Reported with the read time of the pool's answer line (the proxy times the share
        // with it, no clock read of its own).
        let read_at = h.recorder.seen().read_at.clone();
        assert!(
            matches!(read_at[..], [(s, at)] if s == seq && at >= sent),
            "{read_at:?}"
        );
        let forwarded = p.submits();
        match &forwarded[0].request {
            ClientRequest::Submit(s) => {
                assert_eq!(s.worker, "proxy.worker");
                assert_eq!(s.extranonce2, en2);
                assert_eq!(s.nonce, good);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(forwarded[0].verdict, Ok(()));

        let refused = |code: ErrorCode| {
            Err(Sv1ShareError::Refused {
                code: code.code(),
                message: code.message().into(),
            })
        };
        let seq = h.submit(share(&job, session, en2.clone(), low)).unwrap();
        assert_eq!(
            h.recorder.result(seq).await,
            refused(ErrorCode::LowDifficulty)
        );
        let seq = h.submit(share(&job, session, en2.clone(), good)).unwrap();
        assert_eq!(h.recorder.result(seq).await, refused(ErrorCode::Duplicate));
        let mut unknown = share(&job, session, en2.clone(), good);
        unknown.job_id = "ffff".into();
        let seq = h.submit(unknown).unwrap();
        assert_eq!(
            h.recorder.result(seq).await,
            refused(ErrorCode::JobNotFound)
        );
        // Rolled version bits inside the negotiated mask reach the pool and are checked.
        let mut rolled = share(&job, session, en2.clone(), good);
        rolled.version_bits = Some(0x0000_2000);
        let seq = h.submit(rolled).unwrap();
        let verdict = h.recorder.result(seq).await;
        let last = p.submits().pop().unwrap();
        assert!(
            matches!(&last.request, ClientRequest::Submit(s) if s.version_bits == Some(0x2000))
        );
        assert_eq!(verdict.is_ok(), last.verdict.is_ok());
        // A wrong extranonce2 size is refused without reaching the pool.
        let before = p.submits().len();
        let seq = h.submit(share(&job, session, vec![0; 4], good)).unwrap();
        assert!(matches!(
            h.recorder.result(seq).await,
            Err(Sv1ShareError::Refused { code: 20, .. })
        ));
        assert_eq!(p.submits().len(), before);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn set_extranonce_set_version_mask_and_difficulty_are_reported_in_the_session() {
    test_support::init_tracing();
    bounded(async {
        let p = pool().await;
        let h = spawn(&[p.addr()], options());
        let (mut job, session) = h.recorder.job(0).await;
        p.push_raw(r#"{"id":null,"method":"mining.set_extranonce","params":["b2000002",6]}"#);
        p.push_raw(r#"{"id":null,"method":"mining.set_version_mask","params":["00ffe000"]}"#);
        p.set_difficulty(0.5);
        job.job_id = "a000002".into();
        job.clean_jobs = false;
        p.push_job(job.clone());
        h.recorder
            .wait_for("the second job", |s| (s.jobs.len() == 2).then_some(()))
            .await;
        {
            let seen = h.recorder.seen();
            assert_eq!(
                seen.extranonces.last(),
                Some(&(vec![0xb2, 0, 0, 2], 6, session))
            );
            assert_eq!(seen.masks.last(), Some(&(0x00ff_e000, session)));
            assert_eq!(seen.difficulties.last(), Some(&(0.5, session)));
            assert_eq!(seen.jobs[1], (job, session));
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn failover_goes_to_the_second_pool_when_the_first_is_down() {
    test_support::init_tracing();
    bounded(async {
        let down = closed_port().await;
        let p = pool().await;
        let h = spawn(&[down, p.addr()], options());
        h.recorder.active_on(1).await;
        let (_, session) = h.recorder.job(0).await;
        assert_eq!(session, 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn failover_goes_to_the_second_pool_when_the_first_never_answers_the_handshake() {
    test_support::init_tracing();
    bounded(async {
        let silent = ScriptedPool::start(Script::Silent).await;
        let p = pool().await;
        let h = spawn(&[silent.addr, p.addr()], options());
        h.recorder.active_on(1).await;
        assert!(h
            .recorder
            .seen()
            .states
            .iter()
            .all(|(_, pool)| *pool != Some(0)));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_that_stops_answering_submits_is_dropped_each_share_answered_once() {
    test_support::init_tracing();
    bounded(async {
        let mute = ScriptedPool::start(Script::Mute).await;
        let p = pool().await;
        let mut h = spawn(&[mute.addr, p.addr()], options());
        let (job, session) = h.recorder.job(0).await;
        h.recorder.active_on(0).await;
        let seqs: Vec<u64> = (0..3)
            .map(|i| h.submit(share(&job, session, vec![0, 0, 0, i], 1)).unwrap())
            .collect();
        for seq in &seqs {
            let r = h.recorder.result(*seq).await;
            assert!(
                matches!(
                    r,
                    Err(Sv1ShareError::Upstream(
                        ShareError::Timeout | ShareError::Disconnected
                    ))
                ),
                "{r:?}"
            );
        }
        assert_eq!(mute.submits(), 3);
        // Silent with shares waiting: dropped, on to the next pool.
        h.recorder.active_on(1).await;
        let (_, second) = h.recorder.job(1).await;
        assert_eq!(second, session + 1);
        // A share of the ended session is refused at once, never sent.
        assert_session_refused(&mut h, &job, session);
        answered_once_after_the_reply_timeout(&h, &seqs).await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_submits_reply_timeout_runs_from_the_time_it_was_handed_over() {
    test_support::init_tracing();
    bounded(async {
        let mute = ScriptedPool::start(Script::Mute).await;
        let reply_timeout = Duration::from_secs(4);
        let mut h = spawn(&[mute.addr], patient(reply_timeout));
        let (job, session) = h.recorder.job(0).await;
        let now = tokio::time::Instant::now();
        let fresh = h
            .submit_at(share(&job, session, vec![0; 4], 1), now)
            .unwrap();
        // Handed over 3 s ago (the miner line's clock read, passed down): the session times
        // it from then, not from when its task took it (which is after the fresh one's).
        let old = h
            .submit_at(
                share(&job, session, vec![0, 0, 0, 1], 1),
                now - Duration::from_secs(3),
            )
            .unwrap();
        let r = h.recorder.result(old).await;
        assert_eq!(r, Err(Sv1ShareError::Upstream(ShareError::Timeout)));
        let r = h.recorder.result(fresh).await;
        assert!(matches!(r, Err(Sv1ShareError::Upstream(_))), "{r:?}");
        let order: Vec<u64> = h.recorder.seen().results.iter().map(|r| r.0).collect();
        assert_eq!(order, [old, fresh], "the older handover times out first");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_submit_is_answered_once_when_the_pool_closes() {
    test_support::init_tracing();
    bounded(async {
        let closing = ScriptedPool::start(Script::CloseAfter(5)).await;
        // A reply timeout far beyond the test: the close, not a timeout, answers the shares.
        let patient = patient(Duration::from_secs(60));
        let mut h = spawn(&[closing.addr], patient);
        let (job, session) = h.recorder.job(0).await;
        let seqs: Vec<u64> = (0..5)
            .map(|i| h.submit(share(&job, session, vec![0, 0, 0, i], 1)).unwrap())
            .collect();
        for seq in &seqs {
            assert_eq!(
                h.recorder.result(*seq).await,
                Err(Sv1ShareError::Upstream(ShareError::Disconnected))
            );
        }
        // Logged in again (the pool accepts again): a new session.
        let (_, again) = h.recorder.job(1).await;
        assert_eq!(again, session + 1);
        answered_once_after_the_reply_timeout(&h, &seqs).await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn client_reconnect_moves_the_upstream_to_the_given_port() {
    test_support::init_tracing();
    bounded(async {
        let a = pool().await;
        let b = pool().await;
        let h = spawn(&[a.addr()], options());
        let (_, first) = h.recorder.job(0).await;
        a.push_raw(&format!(
            r#"{{"id":null,"method":"client.reconnect","params":["127.0.0.1",{},0]}}"#,
            b.addr().port()
        ));
        let (_, second) = h.recorder.job(1).await;
        assert_eq!(second, first + 1);
        assert!(
            b.wait_for(Duration::from_secs(5), |b| b.connections_total() == 1)
                .await
        );
        assert_eq!(a.connections_total(), 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn client_reconnect_to_another_host_is_ignored_and_the_session_goes_on() {
    test_support::init_tracing();
    bounded(async {
        let a = pool().await;
        let b = pool().await;
        let h = spawn(&[a.addr()], options());
        let (job, first) = h.recorder.job(0).await;
        // `localhost` is another host name than the entry's `127.0.0.1`, though it would
        // reach the same machine: not followed.
        a.push_raw(&format!(
            r#"{{"id":null,"method":"client.reconnect","params":["localhost",{},0]}}"#,
            b.addr().port()
        ));
        // The next job on the same connection still arrives, in the same session.
        a.push_job(stratum_proto::sv1::Notify {
            job_id: "beef".into(),
            ..job
        });
        let (next, session) = h.recorder.job(1).await;
        assert_eq!(next.job_id, "beef");
        assert_eq!(session, first, "the same session");
        assert_eq!(b.connections_total(), 0, "never went to the other host");
        assert_eq!(a.connections_total(), 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stopping_answers_the_queued_shares_and_refuses_new_ones() {
    test_support::init_tracing();
    bounded(async {
        let mute = ScriptedPool::start(Script::Mute).await;
        let mut h = spawn(&[mute.addr], options());
        let (job, session) = h.recorder.job(0).await;
        let seq = h.submit(share(&job, session, vec![0; 4], 1)).unwrap();
        let recorder = h.recorder.clone();
        let upstream = h.upstream.clone();
        h.stop().await;
        assert_eq!(
            recorder.result(seq).await,
            Err(Sv1ShareError::Upstream(ShareError::Disconnected))
        );
        assert_eq!(upstream.session(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_quiet_limit_drops_a_pool_that_sends_nothing_with_no_share_flowing() {
    test_support::init_tracing();
    bounded(async {
        let mute = ScriptedPool::start(Script::Mute).await;
        let p = pool().await;
        let sv1 = Sv1Options {
            quiet_limit: Some(Duration::from_millis(400)),
            ..Sv1Options::default()
        };
        let h = Harness::spawn(vec![entry(mute.addr), entry(p.addr())], options(), sv1);
        h.recorder.active_on(0).await;
        h.recorder.active_on(1).await;
        assert_eq!(mute.submits(), 0);
        h.stop().await;
    })
    .await;
}

/// Three shares of the first job that meet the pool's difficulty, submitted in the first
/// session to pool `a`, which holds its answers; returns once `a` has read them, with the job,
/// the session and the shares' sequence numbers.
async fn shares_held_by(h: &mut Harness, a: &Sv1Pool) -> (Notify, u64, Vec<u64>) {
    let (job, session) = h.recorder.job(0).await;
    let en1 = h.recorder.seen().extranonces[0].0.clone();
    a.hold_answers();
    let seqs = (0..3u8)
        .map(|i| {
            let en2 = vec![0, 0, 0, 0, 0, 0, 0, i];
            let nonce = grind(&job, &en1, &en2, POOL_DIFFICULTY, true);
            h.submit(share(&job, session, en2, nonce)).unwrap()
        })
        .collect();
    assert!(
        a.wait_for(Duration::from_secs(5), |a| a.submits().len() == 3)
            .await
    );
    (job, session, seqs)
}

/// Releases the answers `a` held for `seqs` (three shares), checks each got the pool's
/// `Ok`, and waits until `a`'s connection closes (drained).
async fn old_pool_answers(h: &Harness, a: &Sv1Pool, seqs: &[u64]) {
    assert_eq!(a.release_answers(), 3);
    for seq in seqs {
        assert_eq!(
            h.recorder.result(*seq).await,
            Ok(()),
            "the old pool's answer"
        );
    }
    assert!(
        a.wait_for(Duration::from_secs(5), |a| a.connections_open() == 0)
            .await,
        "the old connection closes once drained"
    );
}

#[tokio::test]
async fn a_new_pool_list_logs_in_before_the_old_session_closes_and_its_shares_in_flight_get_the_old_pools_answers(
) {
    test_support::init_tracing();
    bounded(async {
        let a = pool().await;
        let b = Sv1Pool::start(Sv1PoolConfig {
            difficulty: POOL_DIFFICULTY,
            extranonce1_base: 0xb200_0001,
            ..Sv1PoolConfig::default()
        })
        .await
        .unwrap();
        // Long enough that only the old pool's answers can answer the shares in flight.
        let patient = patient(Duration::from_secs(20));
        let mut h = spawn(&[a.addr()], patient.clone());
        let (job, first, seqs) = shares_held_by(&mut h, &a).await;
        // Unchanged: nothing happens.
        h.upstream.set_pools(vec![entry(a.addr())], patient.clone());
        h.upstream.set_pools(vec![entry(b.addr())], patient.clone());
        let (new_job, second) = h.recorder.job(1).await;
        assert_eq!(second, first + 1);
        // The new pool is logged in while the old one still holds the shares: never a gap.
        {
            let seen = h.recorder.seen();
            assert_eq!(
                seen.states[1..],
                [
                    (UpstreamState::Active, Some(0)),
                    (UpstreamState::Active, Some(0))
                ],
                "from one login straight to the next"
            );
            assert_eq!(
                seen.extranonces.last(),
                Some(&(vec![0xb2, 0, 0, 1], 8, second)),
                "the new pool's extranonce1, for the new session"
            );
        }
        for seq in &seqs {
            assert_eq!(h.recorder.answers(*seq), 0, "still in flight");
        }
        assert_eq!(a.connections_open(), 1);
        // A share of the old session is no longer taken.
        assert_session_refused(&mut h, &job, first);
        old_pool_answers(&h, &a, &seqs).await;
        // Nothing was replayed to the new pool; the new session's shares go there.
        assert!(b.submits().is_empty());
        let new_en1 = [0xb2, 0, 0, 1];
        let en2 = vec![0, 0, 0, 0, 0, 0, 0, 9];
        let nonce = grind(&new_job, &new_en1, &en2, POOL_DIFFICULTY, true);
        let seq = h.submit(share(&new_job, second, en2, nonce)).unwrap();
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(b.submits().len(), 1);
        assert_eq!(a.submits().len(), 3);
        answered_once_after_the_reply_timeout(&h, &seqs).await;
        assert_eq!(a.connections_total(), 1);
        assert_eq!(b.connections_total(), 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shares_in_flight_on_a_replaced_session_that_the_old_pool_never_answers_time_out_once() {
    test_support::init_tracing();
    bounded(async {
        let a = pool().await;
        let b = pool().await;
        let mut h = spawn(&[a.addr()], options());
        let (_, first, seqs) = shares_held_by(&mut h, &a).await;
        h.upstream.set_pools(vec![entry(b.addr())], options());
        let (_, second) = h.recorder.job(1).await;
        assert_eq!(second, first + 1);
        for seq in &seqs {
            assert_eq!(
                h.recorder.result(*seq).await,
                Err(Sv1ShareError::Upstream(ShareError::Timeout))
            );
        }
        assert!(
            a.wait_for(Duration::from_secs(5), |a| a.connections_open() == 0)
                .await
        );
        // An answer after the timeout is not a second one.
        a.release_answers();
        answered_once_after_the_reply_timeout(&h, &seqs).await;
        assert!(b.submits().is_empty());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_to_pools_that_cannot_be_reached_drains_the_old_session_then_fails_over() {
    test_support::init_tracing();
    bounded(async {
        let a = pool().await;
        let dead = closed_port().await;
        let patient = patient(Duration::from_secs(20));
        let mut h = spawn(&[a.addr()], patient.clone());
        let (job, first, seqs) = shares_held_by(&mut h, &a).await;
        h.upstream.set_pools(vec![entry(dead)], patient);
        // The new list failed to log in: the old session takes no new share, but the ones
        // in flight still get its pool's answers.
        h.recorder.state(UpstreamState::Error).await;
        assert_session_refused(&mut h, &job, first);
        old_pool_answers(&h, &a, &seqs).await;
        for seq in &seqs {
            assert_eq!(h.recorder.answers(*seq), 1);
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_session_runs_over_tls_to_a_pinned_pool() {
    test_support::init_tracing();
    bounded(async {
        let p = pool().await;
        let (addr, pin, stop) = sv1_common::tls_relay(p.addr()).await;
        let tls_entry = pool_client::PoolConfig {
            url: format!("stratum+ssl://{addr}"),
            tls_fingerprint: Some(pin),
            ..entry(addr)
        };
        assert!(pool_client::tls::wants_tls(&tls_entry));
        let mut h = Harness::spawn(vec![tls_entry], options(), Sv1Options::default());
        let (job, session) = h.recorder.job(0).await;
        let en1 = h.recorder.seen().extranonces[0].0.clone();
        let en2 = vec![0, 0, 0, 0, 0, 0, 0, 9];
        let good = grind(&job, &en1, &en2, POOL_DIFFICULTY, true);
        let seq = h.submit(share(&job, session, en2, good)).unwrap();
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(p.submits()[0].verdict, Ok(()));
        h.stop().await;
        stop.cancel();
    })
    .await;
}
