//! The daemon upstream against a real `monerod` in regtest mode (needs `monerod` on `PATH`:
//! `apt-get install -y monero`).
//!
//! Each test starts its own node with a low fixed difficulty, runs an [`Upstream`] whose only
//! pool entry is that node with `"daemon": true`, and watches what the upstream reports.
//! Every test is bounded by `common::TEST_TIMEOUT`, cancels the upstream and waits for it to stop,
//! and kills its node when the [`Monerod`] drops.

use std::sync::Arc;
use std::time::Duration;

use pool_client::{FailoverOptions, PoolConfig, Share, ShareError, Upstream, UpstreamState};
use stratum_proto::{difficulty_to_target, Job};
use test_support::monerod::{Monerod, REGTEST_WALLET};
use test_support::rx_miner::{solve, Solution};
use tokio_util::sync::CancellationToken;

mod common;

use common::{bounded, Harness, Recorder};

/// An upstream whose only pool is `node` (a daemon entry).
fn harness(node: &Monerod) -> Harness {
    let pool = PoolConfig {
        url: node.host_port(),
        user: REGTEST_WALLET.into(),
        daemon: true,
        daemon_poll_interval: 200,
        ..Default::default()
    };
    let options = FailoverOptions {
        retries: 1,
        retry_pause: Duration::from_secs(1),
        reply_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    Harness::spawn(vec![pool], options)
}

async fn start_node(difficulty: u64) -> Monerod {
    Monerod::start(difficulty)
        .await
        .expect("monerod starts (apt-get install -y monero)")
}

/// Mines `job` with RandomX light mode in a blocking thread (no NiceHash byte).
async fn mine(job: &Job) -> Solution {
    let job = job.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    tokio::task::spawn_blocking(move || solve(&job, None, deadline))
        .await
        .expect("hashing thread")
        .expect("job can be mined")
        .expect("a block within 90 s")
}

/// The first extra nonce from 6 on whose block, with the 8-hex-char `nonce` at blob bytes
/// 39..43, does not meet `difficulty` (RandomX light mode, keyed by the hex `seed`).
fn losing_extra_nonce(
    work: &pool_client::monero_block::BlockWork,
    nonce: &str,
    seed: &str,
    difficulty: u64,
) -> u32 {
    let seed = stratum_proto::job::decode_hex(seed).expect("hex seed");
    let hasher = test_support::rx_miner::RxHasher::new(&seed).expect("RandomX");
    let nonce = stratum_proto::job::decode_hex(nonce).expect("hex nonce");
    (6..)
        .find(|&k| {
            let mut blob = work.hashing_blob(k);
            blob[39..43].copy_from_slice(&nonce);
            let hash = hasher.hash(&blob).expect("RandomX hash");
            let d = stratum_proto::result_difficulty(&stratum_proto::job::encode_hex(&hash));
            d.is_some_and(|d| d < difficulty)
        })
        .expect("some extra nonce loses")
}

#[tokio::test]
async fn first_job_comes_from_the_block_template() {
    bounded(async {
        let node = start_node(100).await;
        let h = harness(&node);
        assert_eq!(h.recorder.state(UpstreamState::Active).await, Some(0));
        let (job, session) = h.recorder.job(0).await;
        assert_eq!(session, 1);
        assert_eq!(job.blob.len(), 152, "Monero hashing blob: 76 bytes");
        assert!(job.blob.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(job.target, difficulty_to_target(100));
        assert_eq!(job.difficulty(), 100);
        assert_eq!(job.algo.as_deref(), Some("rx/0"));
        assert_eq!(job.height, Some(node.height().await.unwrap()));
        let seed = job.seed_hash.as_deref().expect("seed_hash");
        assert_eq!(seed.len(), 64);
        assert_eq!(job.validate(), Ok(()));
        assert_eq!(h.upstream.state(), UpstreamState::Active);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shares_that_cannot_be_blocks_are_refused() {
    bounded(async {
        // A difficulty no nonce of this test can meet by chance: at 100, the forged share
        // below (nonce 0) really was a block once in about 100 runs, and the node took it
        // (CI failed that way). At 10^12 that is once in 10^12 runs.
        let node = start_node(1_000_000_000_000).await;
        let mut h = harness(&node);
        let (job, _) = h.recorder.job(0).await;
        let height = node.height().await.unwrap();

        // Difficulty 1: far below the block's, refused without asking the node.
        let low = h.submit(&job.job_id, "00000001", &"f".repeat(64));
        assert_eq!(
            h.recorder.result(low).await,
            Err(ShareError::Rejected("Low difficulty share".into()))
        );
        let unknown = h.submit("no-such-job", "00000001", &"0".repeat(64));
        assert_eq!(
            h.recorder.result(unknown).await,
            Err(ShareError::Rejected("Invalid job id".into()))
        );
        let bad_nonce = h.submit(&job.job_id, "0001", &"0".repeat(64));
        assert_eq!(
            h.recorder.result(bad_nonce).await,
            Err(ShareError::Rejected("Invalid nonce".into()))
        );

        // A forged result claiming the highest difficulty passes our check; the node
        // recomputes the proof of work and refuses the block.
        let forged = h.submit(&job.job_id, "00000000", &"0".repeat(64));
        match h.recorder.result(forged).await {
            Err(ShareError::Rejected(message)) => assert!(!message.is_empty()),
            other => panic!("forged share: {other:?}"),
        }
        assert_eq!(node.height().await.unwrap(), height, "no block was added");
        assert_eq!(
            h.upstream.state(),
            UpstreamState::Active,
            "session lives on"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_solved_block_is_accepted_and_the_next_job_follows() {
    bounded(async {
        let node = start_node(50).await;
        let mut h = harness(&node);
        let (job, session) = h.recorder.job(0).await;
        let height = node.height().await.unwrap();
        assert_eq!(job.height, Some(height));

        let solution = mine(&job).await;
        let seq = h.submit(&job.job_id, &solution.nonce, &solution.result);
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(
            node.height().await.unwrap(),
            height + 1,
            "the node took the block"
        );

        let (next, next_session) = h.recorder.job_at_height(height + 1).await;
        assert_eq!(next_session, session, "same session");
        assert_ne!(next.job_id, job.job_id);
        assert_ne!(next.blob, job.blob);

        // The same block again (its job is now the previous one): monerod would answer OK
        // for a block it has, so the upstream refuses the repeat itself.
        let again = h.submit(&job.job_id, &solution.nonce, &solution.result);
        assert_eq!(
            h.recorder.result(again).await,
            Err(ShareError::Rejected("Duplicate share".into()))
        );
        assert_eq!(node.height().await.unwrap(), height + 1);
        h.stop().await;
    })
    .await;
}

/// `extra_nonce` mode at the upstream: the job's template, split, gives the job's own blob
/// for the zero extra nonce (the reserved bytes as asked for), another blob for each other
/// extra nonce, and a block mined on a miner's blob, submitted with its extra nonce, is taken.
#[tokio::test]
async fn a_block_mined_on_a_miners_own_blob_is_taken_with_its_extra_nonce() {
    bounded(async {
        let node = start_node(40).await;
        let mut h = harness(&node);
        let (job, session) = h.recorder.job(0).await;
        let height = node.height().await.unwrap();
        let work = {
            let seen = h.recorder.seen();
            let (id, work) = seen.works.first().expect("a daemon job");
            assert_eq!(id, &job.job_id);
            work.clone().expect("monerod's template can be split")
        };
        assert_eq!(
            stratum_proto::job::encode_hex(&work.hashing_blob(0)),
            job.blob,
            "the node's own hashing blob, rebuilt"
        );
        let mut mine_job = job.clone();
        mine_job.blob = stratum_proto::job::encode_hex(&work.hashing_blob(5));
        assert_ne!(mine_job.blob, job.blob);
        let solution = mine(&mine_job).await;
        // Claimed for another extra nonce, it is another block, one that does not meet the
        // difficulty (about 1 in 40 would): refused by the node.
        let losing = {
            let (work, nonce) = (work.clone(), solution.nonce.clone());
            let seed = job.seed_hash.clone().expect("a RandomX job's seed");
            tokio::task::spawn_blocking(move || losing_extra_nonce(&work, &nonce, &seed, 40))
                .await
                .unwrap()
        };
        let wrong = h
            .submit_share(
                session,
                &job.job_id,
                &solution.nonce,
                &solution.result,
                Some(losing),
            )
            .unwrap();
        assert!(
            matches!(h.recorder.result(wrong).await, Err(ShareError::Rejected(_))),
            "the node refuses a block whose hash is not the claimed one"
        );
        assert_eq!(node.height().await.unwrap(), height);
        let seq = h
            .submit_share(
                session,
                &job.job_id,
                &solution.nonce,
                &solution.result,
                Some(5),
            )
            .unwrap();
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(node.height().await.unwrap(), height + 1, "the node took it");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_block_from_elsewhere_brings_a_new_job_and_old_shares_still_count() {
    bounded(async {
        let node = start_node(50).await;
        let mut h = harness(&node);
        let (job, _) = h.recorder.job(0).await;
        let height = job.height.expect("height");
        // The node mines a block itself; the next poll sees the new tip.
        assert_eq!(node.generate_blocks(1).await.unwrap(), height + 1);
        let (next, session) = h.recorder.job_at_height(height + 1).await;
        assert_eq!(session, 1);
        assert_ne!(next.job_id, job.job_id);

        // A block for the previous job still reaches the node, which keeps it on an
        // alternative chain and answers OK; the main chain does not change.
        let solution = mine(&job).await;
        let seq = h.submit(&job.job_id, &solution.nonce, &solution.result);
        assert_eq!(h.recorder.result(seq).await, Ok(()));
        assert_eq!(node.height().await.unwrap(), height + 1);
        h.stop().await;
    })
    .await;
}

/// Two upstreams to one node with one wallet (what NiceHash mode opens past 256 miners, and
/// simple mode per miner): every template carries its own `extra_nonce`, so no blob is handed
/// out twice, not even for templates fetched in the same poll. Without it, monerod answers
/// two `get_block_template` calls in the same second with byte-identical templates.
#[tokio::test]
async fn two_upstreams_to_one_node_never_hand_out_the_same_blob() {
    bounded(async {
        let node = start_node(100).await;
        let a = harness(&node);
        let b = harness(&node);
        let (first_a, _) = a.recorder.job(0).await;
        let (first_b, _) = b.recorder.job(0).await;
        assert_eq!(first_a.height, first_b.height);
        // Same parent; the coinbase differs, hence the Merkle root (hashing blob bytes 43..75).
        assert_eq!(first_a.blob[14..78], first_b.blob[14..78]);
        assert_ne!(first_a.blob[86..150], first_b.blob[86..150]);

        // New tips: both upstreams fetch a template for each height within one poll.
        for _ in 0..3 {
            let height = node.generate_blocks(1).await.unwrap();
            let (ja, _) = a.recorder.job_at_height(height).await;
            let (jb, _) = b.recorder.job_at_height(height).await;
            assert_ne!(ja.blob, jb.blob, "height {height}");
        }
        let blobs: Vec<String> = [&a, &b]
            .iter()
            .flat_map(|h| {
                h.recorder
                    .seen()
                    .jobs
                    .iter()
                    .map(|(j, _)| j.blob.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        let distinct: std::collections::HashSet<&String> = blobs.iter().collect();
        assert!(blobs.len() >= 8, "{} jobs", blobs.len());
        assert_eq!(distinct.len(), blobs.len(), "a blob was handed out twice");
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn losing_the_node_ends_the_session() {
    bounded(async {
        let node = start_node(100).await;
        let mut h = harness(&node);
        let (job, session) = h.recorder.job(0).await;
        drop(node);
        // The next poll fails: the session ends, the retry finds nobody, the list has failed.
        h.recorder.state(UpstreamState::Error).await;
        assert_ne!(h.upstream.state(), UpstreamState::Active);
        // A share of the ended session is refused at once, never queued.
        let refused = h.submit_in(session, &job.job_id, "00000000", &"0".repeat(64));
        assert_eq!(refused, Err(ShareError::SessionEnded));
        let jobs = h.recorder.seen().jobs.len();
        assert_eq!(jobs, 1, "no job without a node");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_node_that_is_not_there_never_connects() {
    bounded(async {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let recorder = Arc::new(Recorder::default());
        let cancel = CancellationToken::new();
        let pool = PoolConfig {
            url: format!("http://127.0.0.1:{port}"),
            user: REGTEST_WALLET.into(),
            daemon: true,
            ..Default::default()
        };
        let options = FailoverOptions {
            retries: 1,
            retry_pause: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let upstream = Upstream::spawn(vec![pool], options, recorder.clone(), cancel.clone());
        recorder.state(UpstreamState::Error).await;
        assert!(recorder.seen().jobs.is_empty());
        assert!(!recorder
            .seen()
            .states
            .iter()
            .any(|(s, _)| *s == UpstreamState::Active));
        let share = Share {
            session: 0,
            job_id: "x".into(),
            nonce: "00000000".into(),
            result: "0".repeat(64).into(),
            algo: None,
            extra_nonce: None,
        };
        if upstream
            .submit(1, share, tokio::time::Instant::now())
            .is_ok()
        {
            let result = recorder.result(1).await;
            assert!(
                matches!(
                    result,
                    Err(ShareError::NotConnected | ShareError::Disconnected)
                ),
                "{result:?}"
            );
        }
        cancel.cancel();
        recorder.state(UpstreamState::Stopped).await;
    })
    .await;
}
