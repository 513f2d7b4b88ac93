//! The SV1 upstream's solo sessions against a real node: bcoin 1.0.2 regtest (installed and
//! started by test-support). Jobs come from the node's templates, a ground block is
//! submitted and becomes the tip, a share below the network target never reaches the node,
//! a new tip (ours or the node's own) brings a clean job and voids the old one.
//! Takes a few seconds once bcoin is installed (the first run installs it with npm).

use std::time::Duration;

use bitcoin::Network;
use pool_client::sv1::{SoloOptions, Sv1Options, Sv1ShareError};
use pool_client::{FailoverOptions, PoolConfig};
use stratum_proto::sv1::share::check_share;
use stratum_proto::sv1::{ErrorCode, Notify, Submit};
use test_support::bcoin::{Bcoin, REGTEST_P2WPKH};

mod sv1_common;

use sv1_common::{bounded, share, Harness};

/// How many nonces to try (each meets regtest's target with probability 1/2).
const MAX_TRIES: u32 = 256;

fn options() -> FailoverOptions {
    FailoverOptions {
        retries: 1,
        retry_pause: Duration::from_millis(200),
        reply_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        keepalive_interval: Duration::from_secs(600),
        agent: "test-proxy/1".into(),
    }
}

fn sv1() -> Sv1Options {
    Sv1Options {
        solo: SoloOptions {
            network: Network::Regtest,
            ..SoloOptions::default()
        },
        ..Sv1Options::default()
    }
}

/// The first nonce from 0 whose header meets (`true`) or misses (`false`) the job's
/// network target; the block hash when it meets.
fn grind(job: &Notify, en1: &[u8], en2: &[u8], meets: bool) -> (u32, String) {
    grind_at(job, en1, en2, job.ntime, meets)
}

/// [`grind`] with another header time.
fn grind_at(job: &Notify, en1: &[u8], en2: &[u8], ntime: u32, meets: bool) -> (u32, String) {
    for nonce in 0..MAX_TRIES {
        let submit = Submit {
            worker: String::new(),
            job_id: job.job_id.clone(),
            extranonce2: en2.to_vec(),
            ntime,
            nonce,
            version_bits: None,
        };
        let check = check_share(job, en1, &submit, 0, 1.0).expect("no version bits");
        if check.meets_network == meets {
            return (nonce, check.hash.to_string());
        }
    }
    panic!("no nonce in {MAX_TRIES} tries");
}

/// The pool entry for solo mining on `node`: its RPC address and API key, paying `REGTEST_P2WPKH`,
/// polling the template every `poll_ms` milliseconds.
fn node_entry(node: &Bcoin, poll_ms: u64) -> PoolConfig {
    PoolConfig {
        url: node.host_port(),
        user: REGTEST_P2WPKH.into(),
        pass: node.api_key().into(),
        daemon: true,
        daemon_poll_interval: poll_ms,
        ..PoolConfig::default()
    }
}

#[tokio::test]
async fn solo_jobs_come_from_the_node_and_a_ground_block_raises_its_height() {
    test_support::init_tracing();
    bounded(async {
        let node = Bcoin::start()
            .await
            .expect("bcoin starts (apt-get install -y nodejs npm)");
        let entry = node_entry(&node, 100);
        let mut h = Harness::spawn(vec![entry], options(), sv1());
        let (job, session) = h.recorder.job(0).await;
        let tip = node.best_block_hash().await.unwrap();
        assert_eq!(job.prevhash.to_block_hash().to_string(), tip);
        assert_eq!(job.nbits, 0x207f_ffff);
        assert!(job.clean_jobs);
        assert!(
            stratum_proto::sv1::is_hex_job_id(&job.job_id),
            "{}",
            job.job_id
        );
        let (en1, en2_size) = {
            let seen = h.recorder.seen();
            assert_eq!(seen.masks, vec![(0x1fff_e000, session)]);
            assert_eq!(seen.difficulties, vec![(1.0, session)]);
            let (en1, size, s) = seen.extranonces[0].clone();
            assert_eq!((en1.len(), size, s), (4, 8, session));
            (en1, size)
        };
        let en2 = vec![7u8; en2_size];

        // Below the network target: refused by the upstream, the node never sees it.
        let (miss, _) = grind(&job, &en1, &en2, false);
        let seq = h.submit(share(&job, session, en2.clone(), miss)).unwrap();
        assert_eq!(
            h.recorder.result(seq).await,
            Err(Sv1ShareError::Refused {
                code: ErrorCode::LowDifficulty.code(),
                message: "Share does not meet the network target".into()
            })
        );
        assert_eq!(node.block_count().await.unwrap(), 0);

        // A block: accepted, the node's tip, and a clean job on top of it.
        let (hit, hash) = grind(&job, &en1, &en2, true);
        let seq = h.submit(share(&job, session, en2.clone(), hit)).unwrap();
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(node.block_count().await.unwrap(), 1);
        assert_eq!(node.best_block_hash().await.unwrap(), hash);
        let next = h
            .recorder
            .wait_for("a job on our block", |s| {
                s.jobs
                    .iter()
                    .find(|(j, _)| j.prevhash.to_block_hash().to_string() == hash)
                    .cloned()
            })
            .await;
        assert!(next.0.clean_jobs);
        assert_eq!(next.1, session);

        // The block's job again: void since the tip moved.
        let seq = h.submit(share(&job, session, en2.clone(), hit)).unwrap();
        assert_eq!(
            h.recorder.result(seq).await,
            Err(Sv1ShareError::code(ErrorCode::JobNotFound)),
            "the old tip's job is void"
        );

        // A block the node makes itself: a new tip found by polling, a clean job.
        let made = node.generate_to_address(1, REGTEST_P2WPKH).await.unwrap();
        let (third, _) = h
            .recorder
            .wait_for("a job on the node's block", |s| {
                s.jobs
                    .iter()
                    .find(|(j, _)| j.prevhash.to_block_hash().to_string() == made[0])
                    .cloned()
            })
            .await;
        assert!(third.clean_jobs);
        // Mine on it too: height 3.
        let (hit, hash) = grind(&third, &en1, &en2, true);
        let seq = h.submit(share(&third, session, en2.clone(), hit)).unwrap();
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(node.block_count().await.unwrap(), 3);
        assert_eq!(node.best_block_hash().await.unwrap(), hash);

        // A block three hours in the future: the node's refusal passes through, code 20.
        let (fourth, _) = h
            .recorder
            .wait_for("a job on block 3", |s| {
                s.jobs
                    .iter()
                    .find(|(j, _)| j.prevhash.to_block_hash().to_string() == hash)
                    .cloned()
            })
            .await;
        let late = fourth.ntime + 3 * 3600;
        let (hit, _) = grind_at(&fourth, &en1, &en2, late, true);
        let mut future = share(&fourth, session, en2.clone(), hit);
        future.ntime = late;
        let seq = h.submit(future).unwrap();
        match h.recorder.result(seq).await {
            Err(Sv1ShareError::Refused { code: 20, message }) => {
                assert!(message.starts_with("rejected: "), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(node.block_count().await.unwrap(), 3);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_new_tip_reaches_the_upstream_by_longpoll_long_before_the_next_poll() {
    test_support::init_tracing();
    bounded(async {
        let node = Bcoin::start()
            .await
            .expect("bcoin starts (apt-get install -y nodejs npm)");
        // Ten minutes: only the longpoll can bring the new tip within the test's wait.
        let entry = node_entry(&node, 600_000);
        let h = Harness::spawn(vec![entry], options(), sv1());
        let (first, session) = h.recorder.job(0).await;
        for round in 0..3 {
            let made = node.generate_to_address(1, REGTEST_P2WPKH).await.unwrap();
            let (job, s) = h
                .recorder
                .wait_for(&format!("a job on the node's block {round}"), |seen| {
                    seen.jobs
                        .iter()
                        .find(|(j, _)| j.prevhash.to_block_hash().to_string() == made[0])
                        .cloned()
                })
                .await;
            assert!(job.clean_jobs);
            assert_eq!(s, session);
            assert_ne!(job.job_id, first.job_id);
        }
        assert_eq!(h.recorder.seen().jobs.len(), 4, "one job per tip");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_node_that_is_not_there_is_a_failed_attempt_and_the_next_entry_is_tried() {
    test_support::init_tracing();
    bounded(async {
        let down = sv1_common::closed_port().await;
        let pool = test_support::sv1_pool::Sv1Pool::start(Default::default())
            .await
            .unwrap();
        let node_entry = PoolConfig {
            url: down.to_string(),
            user: REGTEST_P2WPKH.into(),
            daemon: true,
            ..PoolConfig::default()
        };
        let h = Harness::spawn(
            vec![node_entry, sv1_common::entry(pool.addr())],
            FailoverOptions {
                connect_timeout: Duration::from_millis(500),
                ..options()
            },
            sv1(),
        );
        h.recorder.active_on(1).await;
        h.stop().await;
    })
    .await;
}

/// Whether `job`'s coinbase (after the extranonce) pays `address`.
fn pays(job: &Notify, address: &str) -> bool {
    let script = pool_client::gbt::payout_script(address, Network::Regtest).unwrap();
    let script = script.as_bytes();
    job.coinb2.windows(script.len()).any(|w| w == script)
}

#[tokio::test]
async fn a_reload_to_another_payout_address_starts_the_new_node_session_before_the_old_one_ends() {
    test_support::init_tracing();
    bounded(async {
        let node = Bcoin::start()
            .await
            .expect("bcoin starts (apt-get install -y nodejs npm)");
        let old = node_entry(&node, 100);
        let mut h = Harness::spawn(vec![old.clone()], options(), sv1());
        let (job, session) = h.recorder.job(0).await;
        assert!(pays(&job, REGTEST_P2WPKH));
        let (en1, en2_size) = {
            let seen = h.recorder.seen();
            let (en1, size, _) = seen.extranonces[0].clone();
            (en1, size)
        };
        let en2 = vec![3u8; en2_size];
        // The reload, and a block of the old session queued with it: the upstream's task
        // runs only once this test task waits (one-thread runtime), so the share is queued
        // while the old session is live, and the old node must answer it.
        h.upstream.set_pools(
            vec![PoolConfig {
                user: test_support::bcoin::REGTEST_P2PKH.into(),
                ..old
            }],
            options(),
        );
        let (hit, hash) = grind(&job, &en1, &en2, true);
        let seq = h.submit(share(&job, session, en2.clone(), hit)).unwrap();
        // The new session's first job pays the new address.
        let (new_job, new_session) = h
            .recorder
            .wait_for("a job of the new session", |s| {
                s.jobs.iter().find(|(_, n)| *n != session).cloned()
            })
            .await;
        assert_eq!(new_session, session + 1);
        assert!(pays(&new_job, test_support::bcoin::REGTEST_P2PKH));
        // The queued share got the old node's verdict, once: its block is the tip.
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(node.block_count().await.unwrap(), 1);
        assert_eq!(node.best_block_hash().await.unwrap(), hash);
        {
            let seen = h.recorder.seen();
            // Make-before-break: from Active on the old session straight to Active on the
            // new one, never Connecting in between (miners keep their upstream).
            use pool_client::UpstreamState::{Active, Connecting};
            assert_eq!(
                seen.states,
                vec![(Connecting, None), (Active, Some(0)), (Active, Some(0))]
            );
            // The new session reported its own extranonce (the miners move to it).
            assert!(seen.extranonces.iter().any(|(_, _, n)| *n == new_session));
        }
        // A share of the old session now is refused at once, never sent.
        assert_eq!(
            h.submit(share(&job, session, en2, hit)),
            Err(pool_client::ShareError::SessionEnded)
        );
        h.stop().await;
    })
    .await;
}
