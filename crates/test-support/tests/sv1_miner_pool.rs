//! The Stratum V1 CPU miner against the scripted SV1 pool, over loopback: real sha256d shares
//! on the para transcript's job, every submit answered exactly once.

use std::collections::HashSet;
use std::time::Duration;

use stratum_proto::sv1::{ClientRequest, ErrorCode};
use test_support::sv1_miner::{run_sv1_miner, StopReason, Sv1MinerConfig, Sv1MinerReport};
use test_support::sv1_pool::{Sv1Pool, Sv1PoolConfig};

/// Low enough that a debug build finds a share in a few thousand hashes.
const EASY: f64 = 1.0 / 1_048_576.0;
const POOL_MASK: u32 = 0x1fff_e000;

fn pool_config(difficulty: f64) -> Sv1PoolConfig {
    Sv1PoolConfig {
        difficulty,
        ..Sv1PoolConfig::default()
    }
}

fn miner(max_shares: usize) -> Sv1MinerConfig {
    Sv1MinerConfig {
        max_shares,
        max_hashes: 5_000_000,
        max_time: Duration::from_secs(60),
        ..Sv1MinerConfig::default()
    }
}

fn assert_each_submit_answered_once(report: &Sv1MinerReport, pool: &Sv1Pool) {
    assert_eq!(report.answered_once().len(), report.submits.len());
    let ids: HashSet<u64> = report.submits.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), report.submits.len(), "submit ids are unique");
    assert_eq!(pool.submits().len(), report.submits.len());
}

#[tokio::test]
async fn shares_found_at_a_low_fractional_difficulty_are_all_accepted_within_the_mask() {
    let pool = Sv1Pool::start(pool_config(EASY)).await.unwrap();
    let report = run_sv1_miner(pool.addr(), miner(6)).await.unwrap();

    assert_eq!(report.stop, Some(StopReason::Shares), "{report:?}");
    assert_eq!(report.authorized, Some(true));
    assert_eq!(report.version_mask, Some(POOL_MASK));
    assert_eq!(report.difficulties, vec![EASY]);
    assert_eq!(report.jobs, vec!["a000001".to_string()]);
    assert_eq!(report.submits.len(), 6);
    assert_each_submit_answered_once(&report, &pool);
    assert_eq!(report.accepted(), 6, "{:?}", report.rejected_codes());
    assert!(pool.submits().iter().all(|r| r.verdict.is_ok()));
    let bits: Vec<u32> = report
        .submits
        .iter()
        .map(|s| s.submit.version_bits.expect("rolling was granted"))
        .collect();
    assert!(bits.iter().all(|b| b & !POOL_MASK == 0), "{bits:08x?}");
    assert!(
        bits.iter().collect::<HashSet<_>>().len() > 1,
        "version bits roll: {bits:08x?}"
    );
    assert!(report.submits.iter().all(|s| s.hash_difficulty >= EASY));
    // The miner asked for ffffffff, as bitaxe does, with its agent.
    let received = pool.received();
    let ClientRequest::Configure(c) = &received[0].request else {
        panic!("first request is configure: {received:?}")
    };
    assert_eq!(
        c.version_rolling.as_ref().and_then(|v| v.mask),
        Some(u32::MAX)
    );
    let ClientRequest::Subscribe(s) = &received[1].request else {
        panic!("second request is subscribe: {received:?}")
    };
    assert_eq!(s.user_agent.as_deref(), Some("test-support-sv1-miner/0.1"));
}

#[tokio::test]
async fn a_miner_that_does_not_roll_sends_five_params_and_is_accepted() {
    let pool = Sv1Pool::start(pool_config(EASY)).await.unwrap();
    let config = Sv1MinerConfig {
        version_mask: None,
        ..miner(3)
    };
    let report = run_sv1_miner(pool.addr(), config).await.unwrap();
    assert_eq!(report.version_mask, None);
    assert_each_submit_answered_once(&report, &pool);
    assert_eq!(report.accepted(), 3, "{:?}", report.rejected_codes());
    assert!(report
        .submits
        .iter()
        .all(|s| s.submit.version_bits.is_none()));
    let en2: HashSet<_> = report
        .submits
        .iter()
        .map(|s| &s.submit.extranonce2)
        .collect();
    assert_eq!(en2.len(), 3, "each share on its own extranonce2");
}

#[tokio::test]
async fn version_bits_outside_the_mask_are_refused_with_code_20() {
    let pool = Sv1Pool::start(pool_config(EASY)).await.unwrap();
    let config = Sv1MinerConfig {
        stray_version_bits: 0x8000_0000,
        ..miner(3)
    };
    let report = run_sv1_miner(pool.addr(), config).await.unwrap();
    assert_each_submit_answered_once(&report, &pool);
    assert_eq!(report.accepted(), 0);
    assert_eq!(report.rejected_codes(), vec![ErrorCode::Other.code(); 3]);
}

#[tokio::test]
async fn shares_under_the_pool_difficulty_are_refused_with_code_23() {
    let pool = Sv1Pool::start(pool_config(1.0)).await.unwrap();
    let config = Sv1MinerConfig {
        mine_difficulty: Some(EASY),
        ..miner(3)
    };
    let report = run_sv1_miner(pool.addr(), config).await.unwrap();
    assert_each_submit_answered_once(&report, &pool);
    assert_eq!(
        report.rejected_codes(),
        vec![ErrorCode::LowDifficulty.code(); 3]
    );
}

#[tokio::test]
async fn the_miner_stops_at_its_hash_bound_when_the_difficulty_is_out_of_reach() {
    let pool = Sv1Pool::start(pool_config(1_000_000.0)).await.unwrap();
    let config = Sv1MinerConfig {
        max_hashes: 20_000,
        ..miner(3)
    };
    let report = run_sv1_miner(pool.addr(), config).await.unwrap();
    assert_eq!(report.stop, Some(StopReason::Hashes));
    assert_eq!(report.hashes, 20_000);
    assert!(report.submits.is_empty());
}

#[tokio::test]
async fn after_a_clean_job_the_miner_mines_the_new_one_and_stale_shares_get_code_21() {
    let pool = Sv1Pool::start(pool_config(EASY)).await.unwrap();
    // 40 shares take about 160k hashes: the new job comes long before the last.
    let run = tokio::spawn(run_sv1_miner(pool.addr(), miner(40)));
    assert!(
        pool.wait_for(Duration::from_secs(30), |p| p.submits().len() >= 2)
            .await
    );
    let mut next = test_support::sv1_pool::para_job();
    next.job_id = "a000002".into();
    next.ntime += 1;
    pool.push_job(next);
    let report = run.await.unwrap().unwrap();

    assert_eq!(report.jobs, vec!["a000001".to_string(), "a000002".into()]);
    assert_each_submit_answered_once(&report, &pool);
    let last = report.answered_once().pop().unwrap();
    assert_eq!(last.0.submit.job_id, "a000002");
    assert_eq!(last.1.outcome, Ok(serde_json::Value::Bool(true)));
    // Shares on the old job that crossed the new one on the wire are stale; nothing else
    // is refused.
    for (share, answer) in report.answered_once() {
        match &answer.outcome {
            Ok(v) => assert_eq!(v, &serde_json::Value::Bool(true)),
            Err(e) => {
                assert_eq!(share.submit.job_id, "a000001");
                assert_eq!(e.code, ErrorCode::JobNotFound.code());
            }
        }
    }
}

#[tokio::test]
async fn a_pool_that_never_sends_a_job_stops_the_miner_at_its_time_bound() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move { listener.accept().await });
    let config = Sv1MinerConfig {
        max_time: Duration::from_millis(300),
        ..miner(3)
    };
    let report = run_sv1_miner(addr, config).await.unwrap();
    assert_eq!(report.stop, Some(StopReason::Time));
    assert_eq!(report.hashes, 0);
    assert!(report.answers.is_empty());
    hold.abort();
}

#[tokio::test]
async fn a_garbage_line_from_the_pool_is_recorded_and_mining_goes_on() {
    let pool = Sv1Pool::start(pool_config(EASY)).await.unwrap();
    let run = tokio::spawn(run_sv1_miner(pool.addr(), miner(20)));
    assert!(
        pool.wait_for(Duration::from_secs(30), |p| !p.submits().is_empty())
            .await
    );
    pool.push_raw("}not json{");
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.bad_lines.len(), 1, "{:?}", report.bad_lines);
    assert_eq!(report.stop, Some(StopReason::Shares));
    assert_each_submit_answered_once(&report, &pool);
    assert_eq!(report.accepted(), 20);
}
