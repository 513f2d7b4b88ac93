//! The stratum session and failover loop against the in-process mock pool.

use std::time::Duration;

use pool_client::{FailoverOptions, PoolConfig, ShareError, UpstreamState};
use test_support::miner::result_for_difficulty;
use test_support::mock_pool::{make_job, MockPool, Reply};

mod common;

use common::{bounded, Harness};

fn options() -> FailoverOptions {
    FailoverOptions {
        retries: 1,
        retry_pause: Duration::from_millis(200),
        reply_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        keepalive_interval: Duration::from_millis(100),
        agent: "test-proxy/1".into(),
    }
}

fn entry(pool: &MockPool) -> PoolConfig {
    PoolConfig {
        url: format!("stratum+tcp://{}", pool.addr()),
        user: "WALLET".into(),
        pass: "secret".into(),
        rig_id: Some("farm-1".into()),
        algo: Some("rx/0".into()),
        ..PoolConfig::default()
    }
}

#[tokio::test]
async fn logs_in_with_the_entry_and_reports_the_first_job() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        let h = Harness::spawn(vec![entry(&pool)], options());
        let (job, session) = h.recorder.job(0).await;
        assert_eq!((job.job_id.as_str(), session), ("job000001", 1));
        assert_eq!(h.recorder.state(UpstreamState::Active).await, Some(0));
        let login = &pool.received("login")[0].params;
        assert_eq!(login["login"], "WALLET");
        assert_eq!(login["pass"], "secret");
        assert_eq!(login["rigid"], "farm-1");
        assert_eq!(login["algo"], serde_json::json!(["rx/0"]));
        assert_eq!(login["agent"], "test-proxy/1");
        pool.push_job(make_job(2, 500));
        assert_eq!(h.recorder.job(1).await, (make_job(2, 500), 1));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn submits_are_matched_to_their_answers() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        let mut h = Harness::spawn(vec![entry(&pool)], options());
        h.recorder.job(0).await;
        let a = h.submit("job000001", "000000aa", &result_for_difficulty(500));
        assert_eq!(h.recorder.result(a).await, Ok(()));
        pool.set_reply(Reply::Error("Low difficulty share".into()));
        let b = h.submit("job000001", "000000bb", &result_for_difficulty(500));
        assert_eq!(
            h.recorder.result(b).await,
            Err(ShareError::Rejected("Low difficulty share".into()))
        );
        let sent = pool.received("submit");
        assert_eq!(sent[0].params["id"], "pool-session-0");
        assert_eq!(sent[1].params["nonce"], "000000bb");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unanswered_submit_times_out() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        pool.set_reply(Reply::Silent);
        let mut h = Harness::spawn(vec![entry(&pool)], options());
        h.recorder.job(0).await;
        let a = h.submit("job000001", "000000aa", &result_for_difficulty(500));
        assert_eq!(h.recorder.result(a).await, Err(ShareError::Timeout));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn keepalived_is_sent_when_the_pool_lists_the_extension() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        let h = Harness::spawn(vec![entry(&pool)], options());
        h.recorder.job(0).await;
        assert!(
            pool.wait_for(Duration::from_secs(3), |p| p.received("keepalived").len()
                >= 2)
                .await
        );
        assert_eq!(
            pool.received("keepalived")[0].params["id"],
            "pool-session-0"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn submits_while_no_pool_is_up_are_answered_not_connected() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        let mut dead = entry(&pool);
        pool.shut_down();
        drop(pool);
        dead.url = "127.0.0.1:1".into();
        let mut h = Harness::spawn(vec![dead], options());
        h.recorder.state(UpstreamState::Error).await;
        let a = h.submit("job000001", "000000aa", &result_for_difficulty(500));
        assert_eq!(h.recorder.result(a).await, Err(ShareError::NotConnected));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn disabled_entries_are_skipped_and_a_new_session_follows_a_drop() {
    bounded(async {
        let first = MockPool::start(make_job(1, 500)).await.unwrap();
        let second = MockPool::start(make_job(50, 500)).await.unwrap();
        let mut off = entry(&first);
        off.enabled = false;
        let h = Harness::spawn(vec![off, entry(&second)], options());
        assert_eq!(h.recorder.job(0).await, (make_job(50, 500), 1));
        assert_eq!(first.connections_total(), 0);
        second.drop_connections();
        // Reconnected: a new session number tells the proxy old job ids are void.
        assert_eq!(h.recorder.job(1).await.1, 2);
        h.stop().await;
    })
    .await;
}
