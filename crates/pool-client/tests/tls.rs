//! TLS to pools against the in-process mock pool serving a self-signed certificate: a pinned
//! pool is reached when the pin matches, skipped for the next pool when it does not, and an
//! unpinned self-signed pool is not trusted.

use std::time::Duration;

use pool_client::{FailoverOptions, PoolConfig, UpstreamState};
use test_support::mock_pool::{make_job, MockPool};

mod common;

use common::{bounded, first_share_goes_through, logged_in_to_first, plain_entry, Harness};

fn options() -> FailoverOptions {
    FailoverOptions {
        retries: 1,
        retry_pause: Duration::from_millis(200),
        reply_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        keepalive_interval: Duration::from_secs(60),
        agent: "test-proxy/1".into(),
    }
}

fn tls_entry(pool: &MockPool, pin: Option<String>) -> PoolConfig {
    PoolConfig {
        url: pool.addr().to_string(),
        user: "WALLET".into(),
        tls: true,
        tls_fingerprint: pin,
        ..PoolConfig::default()
    }
}

/// `AB:CD:…` uppercase, as xmrig prints fingerprints.
fn colon_upper(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test]
async fn the_right_pin_connects_and_the_session_runs_over_tls() {
    bounded(async {
        let pool = MockPool::start_tls(make_job(1, 500)).await.unwrap();
        let pin = colon_upper(&pool.fingerprint().unwrap());
        let mut h = Harness::spawn(vec![tls_entry(&pool, Some(pin))], options());
        logged_in_to_first(&h, &pool).await;
        // Jobs pushed later and share answers travel over the TLS stream too.
        pool.push_job(make_job(2, 500));
        assert_eq!(h.recorder.job(1).await.0.job_id, "job000002");
        first_share_goes_through(&mut h, &pool, "job000002").await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_wrong_pin_closes_that_pool_and_fails_over_to_the_next() {
    bounded(async {
        let pinned = MockPool::start_tls(make_job(1, 500)).await.unwrap();
        let backup = MockPool::start(make_job(7, 500)).await.unwrap();
        let wrong = "00".repeat(32);
        let h = Harness::spawn(
            vec![tls_entry(&pinned, Some(wrong)), plain_entry(&backup)],
            options(),
        );
        let (job, _) = h.recorder.job(0).await;
        assert_eq!(job.job_id, "job000007", "the backup pool's job");
        assert_eq!(h.recorder.state(UpstreamState::Active).await, Some(1));
        // The pinned pool saw a TCP connection but never a login: the proxy hung up in the
        // handshake.
        assert!(pinned.connections_total() >= 1);
        assert!(pinned.received("login").is_empty());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unpinned_self_signed_pool_is_not_trusted() {
    bounded(async {
        let selfsigned = MockPool::start_tls(make_job(1, 500)).await.unwrap();
        let backup = MockPool::start(make_job(9, 500)).await.unwrap();
        let h = Harness::spawn(
            vec![tls_entry(&selfsigned, None), plain_entry(&backup)],
            options(),
        );
        assert_eq!(h.recorder.job(0).await.0.job_id, "job000009");
        assert!(selfsigned.received("login").is_empty());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_plain_pool_marked_tls_fails_the_handshake() {
    bounded(async {
        let plain = MockPool::start(make_job(1, 500)).await.unwrap();
        let backup = MockPool::start(make_job(3, 500)).await.unwrap();
        let h = Harness::spawn(
            vec![
                PoolConfig {
                    url: format!("stratum+ssl://{}", plain.addr()),
                    tls_fingerprint: Some("ab".repeat(32)),
                    ..PoolConfig::default()
                },
                plain_entry(&backup),
            ],
            options(),
        );
        assert_eq!(h.recorder.job(0).await.0.job_id, "job000003");
        assert!(plain.received("login").is_empty());
        h.stop().await;
    })
    .await;
}
