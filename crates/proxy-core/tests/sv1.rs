//! Bitcoin Stratum V1 through the proxy, over loopback: real SV1 CPU miners
//! (`test_support::sv1_miner`) → the proxy (`"protocol": "stratum-v1"`) → a scripted SV1 pool
//! that checks every share with sha256d (`test_support::sv1_pool`). Deterministic: the miners
//! count nonces up from 0 on a fixed job and the proxy hands out tails in order, so every
//! run hashes the same headers; every wait is bounded.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use proxy_core::config::Protocol;
use proxy_core::{Config, Proxy, ProxyHandle};
use stratum_proto::sv1::{parse_server_line, ClientRequest, ServerMessage, VersionRollingResult};
use stratum_proto::LineCodec;
use test_support::sv1_miner::{run_sv1_miner, MinerState, Sv1MinerConfig, Sv1MinerReport};
use test_support::sv1_pool::{para_job, Sv1Pool, Sv1PoolConfig};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

/// The pool's share difficulty (the test pool's default): about 65,536 hashes a share.
const POOL_DIFF: f64 = 1.0 / 65536.0;

/// The para job with mainnet's easiest target (`1d00ffff`): no share found here is a block,
/// so only the difficulties decide what is forwarded (on the regtest job about every other
/// hash is a block, and blocks are forwarded whatever their share difficulty).
fn pool_without_blocks() -> Sv1PoolConfig {
    let mut job = para_job();
    job.nbits = 0x1d00_ffff;
    Sv1PoolConfig {
        job,
        ..Sv1PoolConfig::default()
    }
}

fn sv1_config(pool: &Sv1Pool, min_difficulty: f64) -> Config {
    let mut c = common::local_config(&[pool.addr()]);
    c.protocol = Protocol::StratumV1;
    c.stratum_v1.min_difficulty = min_difficulty;
    c
}

/// A Stratum V1 solo proxy in front of the regtest bcoin `node` (polled every 100 ms, block
/// rewards to [`test_support::bcoin::REGTEST_P2WPKH`]), miners' minimum difficulty `POOL_DIFF`.
fn bcoin_solo_config(node: &test_support::bcoin::Bcoin) -> Config {
    let mut c = Config {
        pools: vec![proxy_core::config::PoolConfig {
            url: node.host_port(),
            user: test_support::bcoin::REGTEST_P2WPKH.into(),
            pass: node.api_key().into(),
            daemon: true,
            daemon_poll_interval: 100,
            ..proxy_core::config::PoolConfig::default()
        }],
        ..common::local_config(&[])
    };
    c.protocol = Protocol::StratumV1;
    c.stratum_v1.network = "regtest".into();
    c.stratum_v1.min_difficulty = POOL_DIFF;
    c
}

async fn start(config: Config) -> ProxyHandle {
    Proxy::start(config).await.expect("proxy starts")
}

fn miner(shares: usize) -> Sv1MinerConfig {
    Sv1MinerConfig {
        max_shares: shares,
        max_time: Duration::from_secs(60),
        ..Sv1MinerConfig::default()
    }
}

/// Every submit got exactly one answer.
fn all_answered_once(r: &Sv1MinerReport) {
    assert_eq!(
        r.answered_once().len(),
        r.submits.len(),
        "every submit answered once: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_share_one_pool_connection_with_distinct_tails_and_their_shares_reach_the_pool() {
    let pool = Sv1Pool::start(Sv1PoolConfig::default()).await.unwrap();
    // The miners' floor is the pool's difficulty: every valid share is forwarded.
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    let addr = proxy.local_addrs()[0];
    let runs = (0..3).map(|_| tokio::spawn(run_sv1_miner(addr, miner(3))));
    let mut reports = Vec::new();
    for r in runs {
        reports.push(r.await.unwrap().unwrap());
    }
    let pool_e1 = [0xa1, 0x00, 0x00, 0x01];
    let mut tails = Vec::new();
    for r in &reports {
        let sub = r.subscribe.as_ref().expect("subscribed");
        assert!(sub.extranonce1.starts_with(&pool_e1), "{sub:?}");
        assert!(sub.extranonce1.len() > pool_e1.len(), "a tail: {sub:?}");
        assert!(sub.extranonce2_size >= 4, "at least 4 bytes left: {sub:?}");
        assert_eq!(sub.extranonce1.len() + sub.extranonce2_size, 4 + 8);
        tails.push(sub.extranonce1.clone());
        // Asked ffffffff; the pool grants 1fffe000 of the proxy's 1fffe000.
        assert_eq!(r.version_mask, Some(0x1fff_e000));
        assert_eq!(r.authorized, Some(true));
        assert_eq!(r.jobs.first().map(String::as_str), Some("a000001"));
        assert_eq!(r.difficulties.first(), Some(&POOL_DIFF));
        assert_eq!(r.submits.len(), 3, "{r:?}");
        all_answered_once(r);
        assert_eq!(r.accepted(), 3, "{:?}", r.rejected_codes());
    }
    tails.sort();
    tails.dedup();
    assert_eq!(tails.len(), 3, "distinct extranonce1 tails");
    assert_eq!(pool.connections_total(), 1, "one upstream for the three");
    let submits = pool.submits();
    assert_eq!(submits.len(), 9, "every share forwarded: {submits:?}");
    assert!(submits.iter().all(|s| s.verdict.is_ok()), "{submits:?}");
    // Each forwarded share carries its miner's tail in front of its extranonce2, and
    // version bits inside the mask.
    for s in &submits {
        let ClientRequest::Submit(sub) = &s.request else {
            panic!("not a submit: {s:?}")
        };
        assert_eq!(sub.extranonce2.len(), 8);
        assert_eq!(sub.worker, "PROXYWALLET");
        if let Some(bits) = sub.version_bits {
            assert_eq!(bits & !0x1fff_e000, 0);
        }
    }
    let stats = proxy.stats();
    assert_eq!(stats.accepted, 9);
    assert_eq!(stats.invalid, 0);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_under_the_pool_difficulty_are_answered_by_the_proxy_and_not_forwarded() {
    let pool = Sv1Pool::start(pool_without_blocks()).await.unwrap();
    // Miners at 2^-20: about one share in sixteen meets the pool's 2^-16.
    let proxy = start(sv1_config(&pool, 1.0 / 1_048_576.0)).await;
    let addr = proxy.local_addrs()[0];
    let r = run_sv1_miner(addr, miner(24)).await.unwrap();
    assert_eq!(r.difficulties.first(), Some(&(1.0 / 1_048_576.0)));
    assert_eq!(r.submits.len(), 24);
    all_answered_once(&r);
    assert_eq!(r.accepted(), 24, "{:?}", r.rejected_codes());
    let meets_pool = r
        .submits
        .iter()
        .filter(|s| s.hash_difficulty >= POOL_DIFF)
        .count();
    let submits = pool.submits();
    assert_eq!(
        submits.len(),
        meets_pool,
        "only shares at the pool's difficulty"
    );
    assert!(submits.len() < 24);
    assert!(submits.iter().all(|s| s.verdict.is_ok()), "{submits:?}");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shares_are_refused_with_their_codes_and_never_forwarded() {
    let pool = Sv1Pool::start(pool_without_blocks()).await.unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    let addr = proxy.local_addrs()[0];
    // Mined at 2^-24 against a miner difficulty of 2^-16: low difficulty (23), except the
    // rare share that meets 2^-16 anyway (the same ones every run).
    let low = Sv1MinerConfig {
        mine_difficulty: Some(1.0 / 16_777_216.0),
        ..miner(6)
    };
    let r = run_sv1_miner(addr, low).await.unwrap();
    all_answered_once(&r);
    let low_shares = r
        .submits
        .iter()
        .filter(|s| s.hash_difficulty < POOL_DIFF)
        .count();
    assert!(low_shares > 0);
    assert_eq!(
        r.rejected_codes(),
        vec![23; low_shares],
        "low difficulty: code 23"
    );
    // A miner rolling a bit it never negotiated (bit 0): code 20, whatever the hash.
    let stray = Sv1MinerConfig {
        stray_version_bits: 1,
        ..miner(2)
    };
    let r2 = run_sv1_miner(addr, stray).await.unwrap();
    all_answered_once(&r2);
    assert_eq!(r2.rejected_codes(), vec![20, 20]);
    // Only the low miner's shares that met the pool's difficulty reached the pool.
    let forwarded = pool.submits();
    assert_eq!(forwarded.len(), 6 - low_shares, "{forwarded:?}");
    assert!(forwarded.iter().all(|s| s.verdict.is_ok()));
    assert_eq!(proxy.stats().invalid, (low_shares + 2) as u64);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_through_the_solo_upstream_mines_real_regtest_blocks_into_bcoin() {
    use test_support::bcoin::Bcoin;
    let node = Bcoin::start()
        .await
        .expect("bcoin starts (apt-get install -y nodejs npm)");
    let start_height = node.block_count().await.unwrap();
    let c = bcoin_solo_config(&node);
    let proxy = start(c).await;
    let addr = proxy.local_addrs()[0];
    // At 2^-16 every share is also a regtest block (about one hash in two meets `207fffff`).
    let r = run_sv1_miner(addr, miner(3)).await.unwrap();
    assert_eq!(r.authorized, Some(true));
    assert_eq!(r.submits.len(), 3, "{r:?}");
    all_answered_once(&r);
    let blocks = proxy.monitor().blocks();
    assert!(r.accepted() >= 1, "{:?}", r.rejected_codes());
    assert_eq!(
        blocks,
        r.accepted() as u64,
        "each accepted share was a block"
    );
    // A share on a job whose tip was just replaced is refused (stale), never accepted.
    assert!(
        r.rejected_codes().iter().all(|&c| c == 20 || c == 21),
        "{:?}",
        r.rejected_codes()
    );
    let height = node.block_count().await.unwrap();
    assert_eq!(
        height,
        start_height + blocks,
        "the node's height grew by the blocks"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_candidate_is_forwarded_whatever_its_difficulty_and_the_pools_code_answers_it() {
    // The para job is a regtest job: every share at 2^-20 is a block candidate, forwarded;
    // the pool judges it at 2^-16.
    let pool = Sv1Pool::start(Sv1PoolConfig::default()).await.unwrap();
    let proxy = start(sv1_config(&pool, 1.0 / 1_048_576.0)).await;
    let r = run_sv1_miner(proxy.local_addrs()[0], miner(8))
        .await
        .unwrap();
    all_answered_once(&r);
    let submits = pool.submits();
    assert_eq!(submits.len(), 8, "every block candidate forwarded");
    let under = r
        .submits
        .iter()
        .filter(|s| s.hash_difficulty < POOL_DIFF)
        .count();
    assert!(under > 0);
    assert_eq!(r.rejected_codes(), vec![23; under], "the pool's code");
    assert_eq!(r.accepted(), 8 - under);
    assert_eq!(proxy.stats().rejected, under as u64);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upstream_extranonce_moves_the_miners_off_with_a_reconnect() {
    let pool = Sv1Pool::start(pool_without_blocks()).await.unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    let addr = proxy.local_addrs()[0];
    let long = Sv1MinerConfig {
        max_shares: 10_000,
        max_time: Duration::from_secs(30),
        ..Sv1MinerConfig::default()
    };
    let run = tokio::spawn(run_sv1_miner(addr, long));
    assert!(
        pool.wait_for(Duration::from_secs(20), |p| !p.submits().is_empty())
            .await,
        "the miner's first share reached the pool"
    );
    // Another extranonce1 of the same size: the miner did not subscribe to extranonce
    // changes, so it is told `client.reconnect` and closed.
    pool.push_raw(r#"{"id":null,"method":"mining.set_extranonce","params":["b2000002",8]}"#);
    let r = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the miner is closed")
        .unwrap()
        .unwrap();
    assert_eq!(r.stop, Some(test_support::sv1_miner::StopReason::Closed));
    assert!(r.accepted() >= 1);
    // Every share the proxy read got its answer before the close, or none was read.
    assert!(r.answered_once().len() + 1 >= r.submits.len(), "{r:?}");
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// A miner driven line by line over loopback: `test_support::sv1_miner::MinerState` (the
/// sans-IO miner) on a socket, for tests that decide when each share is sent.
struct StepMiner {
    state: MinerState,
    lines: FramedRead<tokio::net::tcp::OwnedReadHalf, LineCodec>,
    w: tokio::net::tcp::OwnedWriteHalf,
    /// `client.reconnect` was received.
    told_to_reconnect: bool,
}

impl StepMiner {
    /// Connected, with configure / subscribe / authorize sent.
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        let mut m = Self {
            state: MinerState::new(miner(100)),
            lines: FramedRead::new(r, LineCodec::default()),
            w,
            told_to_reconnect: false,
        };
        for line in m.state.start() {
            m.w.write_all(&line).await.unwrap();
        }
        m
    }

    /// Connected and fed until it can mine.
    async fn ready(addr: std::net::SocketAddr) -> Self {
        let mut m = Self::connect(addr).await;
        while !m.state.can_mine() {
            assert!(m.read().await, "closed before its first job");
        }
        m
    }

    /// Reads one line (10 s at most) and feeds it to the miner; false at the end of the
    /// connection.
    async fn read(&mut self) -> bool {
        let next = tokio::time::timeout(Duration::from_secs(10), self.lines.next())
            .await
            .expect("a line or the end within 10 s");
        let Some(Ok(line)) = next else { return false };
        if let Ok(ServerMessage::Reconnect { .. }) = parse_server_line(&line) {
            self.told_to_reconnect = true;
        }
        for out in self.state.handle_line(&line) {
            self.w.write_all(&out).await.unwrap();
        }
        true
    }

    /// Mines (bounded: 2^24 hashes) and sends the next share.
    async fn send_share(&mut self) {
        for _ in 0..(1 << 13) {
            if let Some(line) = self.state.mine(2048) {
                return self.w.write_all(&line).await.unwrap();
            }
        }
        panic!("no share in 2^24 hashes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_told_to_reconnect_gets_the_answers_of_its_shares_in_flight_before_it_is_closed() {
    let pool = Sv1Pool::start(pool_without_blocks()).await.unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    // Not subscribed to extranonce changes: a new upstream extranonce1 means a reconnect.
    let mut m = StepMiner::ready(proxy.local_addrs()[0]).await;
    // Two shares in flight: the pool keeps its answers back.
    pool.hold_answers();
    m.send_share().await;
    m.send_share().await;
    assert!(
        pool.wait_for(Duration::from_secs(20), |p| p.submits().len() == 2)
            .await,
        "both shares reached the pool"
    );
    pool.push_raw(r#"{"id":null,"method":"mining.set_extranonce","params":["b2000002",8]}"#);
    while !m.told_to_reconnect {
        assert!(
            m.read().await,
            "closed before its answers: {:?}",
            m.state.report()
        );
    }
    // A share sent after the notice is answered stale (21) and never forwarded; the
    // connection lives on meanwhile.
    m.send_share().await;
    while m.state.report().answered_once().is_empty() {
        assert!(
            m.read().await,
            "closed before its answers: {:?}",
            m.state.report()
        );
    }
    assert_eq!(m.state.report().rejected_codes(), vec![21]);
    assert_eq!(m.state.pending_submits(), 2, "the held two still wait");
    // The pool answers: the miner gets both, then is closed.
    assert_eq!(pool.release_answers(), 2);
    while m.read().await {}
    let r = m.state.report();
    assert_eq!(r.submits.len(), 3);
    all_answered_once(r);
    assert_eq!(r.accepted(), 2, "the pool's answers: {r:?}");
    assert_eq!(pool.submits().len(), 2, "the stale one was not forwarded");
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.invalid), (2, 1), "{stats:?}");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_pool_answers_the_shares_in_flight_from_the_old_one_and_moves_the_miners(
) {
    let a = Sv1Pool::start(pool_without_blocks()).await.unwrap();
    let b = Sv1Pool::start(Sv1PoolConfig {
        extranonce1_base: 0xb200_0001,
        ..pool_without_blocks()
    })
    .await
    .unwrap();
    let config = sv1_config(&a, POOL_DIFF);
    let proxy = start(config.clone()).await;
    let addr = proxy.local_addrs()[0];
    let subscribed = Sv1MinerConfig {
        max_shares: 20,
        max_time: Duration::from_secs(60),
        extranonce_subscribe: true,
        ..Sv1MinerConfig::default()
    };
    let run = tokio::spawn(run_sv1_miner(addr, subscribed));
    assert!(
        a.wait_for(Duration::from_secs(20), |p| !p.submits().is_empty())
            .await,
        "the miner's first share reached the old pool"
    );
    // The old pool keeps its answers back: the next shares are in flight at the reload.
    a.hold_answers();
    let before = a.submits().len();
    assert!(
        a.wait_for(Duration::from_secs(20), |p| p.submits().len() >= before + 2)
            .await,
        "shares in flight"
    );
    let mut new = config.clone();
    new.pools = sv1_config(&b, POOL_DIFF).pools;
    assert!(proxy.reload(new).unwrap().changed);
    // The new pool is logged in and the miner, moved to its extranonce1 with
    // `mining.set_extranonce`, mines there (the new pool checks each share against its own
    // extranonce1) while the old pool still holds its answers.
    assert!(
        b.wait_for(Duration::from_secs(20), |p| p.submits().len() >= 2)
            .await,
        "the miner mines on the new pool"
    );
    assert_eq!(b.connections_total(), 1);
    let held = a.release_answers();
    assert!(held >= 2, "{held} answers held");
    let r = ends_on_its_shares(run).await;
    all_answered_once(&r);
    let (old, new) = (a.submits(), b.submits());
    assert!(old.iter().chain(&new).all(|s| s.verdict.is_ok()));
    // Every share forwarded (to one pool or the other, never replayed to the new one) was
    // accepted by the miner's count: the held ones by the old pool's answers.
    assert_eq!(r.accepted(), old.len() + new.len(), "{r:?}");
    assert!(
        a.wait_for(Duration::from_secs(5), |p| p.connections_open() == 0)
            .await,
        "the old connection closes once drained"
    );
    assert_eq!(a.connections_total(), 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// Waits (60 s at most) for a miner run to end, and checks it ended because it had sent
/// all its shares (not closed by the proxy, not out of time).
async fn ends_on_its_shares(
    run: tokio::task::JoinHandle<std::io::Result<Sv1MinerReport>>,
) -> Sv1MinerReport {
    let r = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the miner ends")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.stop,
        Some(test_support::sv1_miner::StopReason::Shares),
        "closed before its shares: {r:?}"
    );
    r
}

/// The address the coinbase of `node`'s block `hash` pays (its first output).
async fn coinbase_pays(node: &test_support::bcoin::Bcoin, hash: &str, address: &str) -> bool {
    let hex = node
        .call("getblock", serde_json::json!([hash, 0]))
        .await
        .unwrap();
    let block: bitcoin::Block =
        bitcoin::consensus::encode::deserialize_hex(hex.as_str().expect("block hex")).unwrap();
    let script = pool_client::gbt::payout_script(address, bitcoin::Network::Regtest).unwrap();
    block.txdata[0].output[0].script_pubkey == script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_another_payout_address_moves_the_solo_miners_without_closing_them() {
    use test_support::bcoin::{Bcoin, REGTEST_P2PKH, REGTEST_P2WPKH};
    let node = Bcoin::start()
        .await
        .expect("bcoin starts (apt-get install -y nodejs npm)");
    let start_height = node.block_count().await.unwrap();
    let config = bcoin_solo_config(&node);
    let proxy = start(config.clone()).await;
    let subscribed = Sv1MinerConfig {
        max_shares: 8,
        max_time: Duration::from_secs(60),
        extranonce_subscribe: true,
        ..Sv1MinerConfig::default()
    };
    let run = tokio::spawn(run_sv1_miner(proxy.local_addrs()[0], subscribed));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while proxy.monitor().blocks() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "a first block");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tip = node.best_block_hash().await.unwrap();
    assert!(coinbase_pays(&node, &tip, REGTEST_P2WPKH).await);
    let mut new = config;
    new.pools[0].user = REGTEST_P2PKH.into();
    assert!(proxy.reload(new).unwrap().changed);
    // Moved with `mining.set_extranonce`, never closed; every share answered once.
    let r = ends_on_its_shares(run).await;
    all_answered_once(&r);
    // Shares on the old session's jobs after the switch are stale (21), never blocks.
    assert!(
        r.rejected_codes().iter().all(|&c| c == 20 || c == 21),
        "{:?}",
        r.rejected_codes()
    );
    let blocks = proxy.monitor().blocks();
    assert_eq!(
        blocks,
        r.accepted() as u64,
        "each accepted share was a block"
    );
    assert_eq!(node.block_count().await.unwrap(), start_height + blocks);
    // The blocks after the reload pay the new address.
    let tip = node.best_block_hash().await.unwrap();
    assert!(
        coinbase_pays(&node, &tip, REGTEST_P2PKH).await,
        "the last block pays the new address"
    );
    assert_eq!(proxy.upstreams().total, 1, "the same upstream, switched");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_reload_keeps_the_running_protocol_and_says_it_needs_a_restart() {
    let pool = Sv1Pool::start(Sv1PoolConfig::default()).await.unwrap();
    let config = sv1_config(&pool, POOL_DIFF);
    let proxy = start(config.clone()).await;
    let mut new = config;
    new.protocol = Protocol::CryptoNote;
    let outcome = proxy.reload(new).unwrap();
    assert_eq!(outcome.needs_restart, vec!["protocol"]);
    assert_eq!(proxy.monitor().config().protocol, Protocol::StratumV1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_through_a_splitting_proxy_and_a_solo_proxy_mine_blocks_into_bcoin() {
    use test_support::bcoin::Bcoin;
    let node = Bcoin::start()
        .await
        .expect("bcoin starts (apt-get install -y nodejs npm)");
    let start_height = node.block_count().await.unwrap();
    // The solo proxy, in front of the node.
    let solo = start(bcoin_solo_config(&node)).await;
    // The splitting proxy, whose pool is the solo proxy.
    let mut split = common::local_config(&[solo.local_addrs()[0]]);
    split.protocol = Protocol::StratumV1;
    split.stratum_v1.min_difficulty = POOL_DIFF;
    let split = start(split).await;
    let addr = split.local_addrs()[0];
    let runs: Vec<_> = (0..2)
        .map(|_| tokio::spawn(run_sv1_miner(addr, miner(2))))
        .collect();
    let mut accepted = 0;
    for r in runs {
        let r = r.await.unwrap().unwrap();
        assert_eq!(r.authorized, Some(true));
        let sub = r.subscribe.as_ref().expect("subscribed");
        assert!(sub.extranonce2_size >= 4, "{sub:?}");
        assert_eq!(r.submits.len(), 2, "{r:?}");
        all_answered_once(&r);
        accepted += r.accepted();
    }
    assert!(accepted >= 1);
    assert_eq!(
        split.upstreams().total,
        1,
        "one connection to the solo proxy"
    );
    let blocks = solo.monitor().blocks();
    assert_eq!(blocks, accepted as u64, "every accepted share was a block");
    let height = node.block_count().await.unwrap();
    assert_eq!(height, start_height + blocks);
    split.shutdown(Duration::from_secs(1)).await;
    solo.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miners_version_mask_is_narrowed_to_what_the_pool_grants() {
    // The pool lets only 00ffe000 roll; the miner asks ffffffff (as bitaxe does).
    let pool = Sv1Pool::start(Sv1PoolConfig {
        version_mask: 0x00ff_e000,
        ..pool_without_blocks()
    })
    .await
    .unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    let r = run_sv1_miner(proxy.local_addrs()[0], miner(3))
        .await
        .unwrap();
    assert_eq!(r.version_mask, Some(0x00ff_e000), "{r:?}");
    all_answered_once(&r);
    assert_eq!(r.accepted(), 3, "{:?}", r.rejected_codes());
    let submits = pool.submits();
    assert_eq!(submits.len(), 3);
    for s in &submits {
        assert!(s.verdict.is_ok(), "{s:?}");
        let ClientRequest::Submit(sub) = &s.request else {
            panic!("not a submit: {s:?}")
        };
        assert_eq!(sub.version_bits.unwrap_or(0) & !0x00ff_e000, 0, "{sub:?}");
    }
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// The version-rolling part of the miner's configure answer.
fn configure_answer(r: &Sv1MinerReport) -> Option<VersionRollingResult> {
    r.configure.as_ref().and_then(|c| c.version_rolling.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_that_configures_before_subscribing_is_answered_with_the_pools_narrower_mask() {
    // As para does: configure (mask ffffffff) before subscribe. The proxy asks its pool for
    // 1fffe000; the pool grants 00ffe000. The answer itself must carry 00ffe000: a miner
    // that ignores `mining.set_version_mask` (para 0.6.0) never learns a narrower mask.
    let pool = Sv1Pool::start(Sv1PoolConfig {
        version_mask: 0x00ff_e000,
        ..pool_without_blocks()
    })
    .await
    .unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    // The first miner opens the upstream (its configure waits for the pool's login); the
    // second finds it logged in.
    for n in 0..2 {
        let r = run_sv1_miner(proxy.local_addrs()[0], miner(2))
            .await
            .unwrap();
        assert_eq!(
            configure_answer(&r),
            Some(VersionRollingResult::Enabled { mask: 0x00ff_e000 }),
            "miner {n}: {r:?}"
        );
        assert_eq!(r.version_mask, Some(0x00ff_e000), "{r:?}");
        all_answered_once(&r);
        assert_eq!(r.accepted(), 2, "{:?}", r.rejected_codes());
    }
    for s in &pool.submits() {
        assert!(s.verdict.is_ok(), "{s:?}");
        let ClientRequest::Submit(sub) = &s.request else {
            panic!("not a submit: {s:?}")
        };
        assert_eq!(sub.version_bits.unwrap_or(0) & !0x00ff_e000, 0, "{sub:?}");
    }
    assert_eq!(pool.submits().len(), 4);
    assert_eq!(pool.connections_total(), 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// An SV1 proxy whose one pool accepts and never says a word (its upstream never logs in),
/// and the task holding the pool's connections (abort it at the end).
async fn sv1_proxy_on_a_silent_pool() -> (ProxyHandle, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let mut config = common::local_config(&[addr]);
    config.protocol = Protocol::StratumV1;
    (start(config).await, hold)
}

/// Reads `m`'s lines until its `mining.configure` is answered, and checks the answer refused
/// version rolling at the end of the proxy's 5 s wait counted from `t0` (not before, nor
/// a second after).
async fn refused_rolling_after_five_seconds(m: &mut StepMiner, t0: tokio::time::Instant) {
    while m.state.report().configure.is_none() {
        assert!(m.read().await, "closed: {:?}", m.state.report());
    }
    let waited = t0.elapsed();
    let r = m.state.report();
    assert_eq!(
        configure_answer(r),
        Some(VersionRollingResult::Disabled),
        "{r:?}"
    );
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "answered at the end of its own 5 s wait, not before nor much after: {waited:?}"
    );
}

/// On tokio's paused clock (the runtime jumps to the next timer whenever every task is
/// idle): the proxy's 5 s wait passes in milliseconds, measured on the same clock.
#[tokio::test(start_paused = true)]
async fn a_configure_whose_upstream_never_logs_in_is_answered_without_rolling_in_time() {
    let (proxy, hold) = sv1_proxy_on_a_silent_pool().await;
    let t0 = tokio::time::Instant::now();
    let mut m = StepMiner::connect(proxy.local_addrs()[0]).await;
    refused_rolling_after_five_seconds(&mut m, t0).await;
    let r = m.state.report();
    assert_eq!(r.version_mask, None, "{r:?}");
    // The upstream never logs in: no subscribe answer, no job, nothing mined.
    assert!(r.subscribe.is_none() && !m.state.can_mine(), "{r:?}");
    proxy.shutdown(Duration::from_secs(1)).await;
    hold.abort();
}

/// Many miners waiting on one upstream's mask (one timer serves them all): each is answered
/// `version-rolling` `false` once, 5 s after its own configure, on tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn many_configures_waiting_on_one_upstream_are_each_answered_in_time() {
    let (proxy, hold) = sv1_proxy_on_a_silent_pool().await;
    let mut miners = Vec::new();
    let mut started = Vec::new();
    for _ in 0..20 {
        started.push(tokio::time::Instant::now());
        miners.push(StepMiner::connect(proxy.local_addrs()[0]).await);
        // Their waits begin at different moments.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (m, t0) in miners.iter_mut().zip(started) {
        refused_rolling_after_five_seconds(m, t0).await;
    }
    proxy.shutdown(Duration::from_secs(1)).await;
    hold.abort();
}

#[tokio::test]
async fn bad_lines_get_error_replies_and_the_connection_lives_on() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let pool = Sv1Pool::start(pool_without_blocks()).await.unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    let stream = tokio::net::TcpStream::connect(proxy.local_addrs()[0])
        .await
        .unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut ask = async |line: &str| -> serde_json::Value {
        w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an answer")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&got).unwrap()
    };
    let v = ask("not json").await;
    assert_eq!(v["id"], serde_json::Value::Null);
    assert_eq!(v["error"][0], 20, "{v}");
    let v = ask(r#"{"id":1,"method":"mining.fly","params":[]}"#).await;
    assert_eq!(
        (v["id"].clone(), v["error"][0].clone()),
        (1.into(), 20.into()),
        "{v}"
    );
    let v = ask(r#"{"id":"s","method":"mining.submit","params":["w","a000001","00000000","6b0d54b4","00000000"]}"#).await;
    assert_eq!(v["id"], "s");
    assert_eq!(v["error"][0], 25, "not subscribed: {v}");
    let v = ask(r#"{"id":2,"method":"mining.authorize","params":["w","x"]}"#).await;
    assert_eq!(v["error"][0], 25, "not subscribed: {v}");
    // Still served: the subscribe is answered with an extranonce1 behind the pool's.
    let v = ask(r#"{"id":3,"method":"mining.subscribe","params":["raw/1"]}"#).await;
    assert_eq!(v["id"], 3);
    assert!(
        v["result"][1].as_str().unwrap().starts_with("a1000001"),
        "{v}"
    );
    let v = ask(r#"{"id":4,"method":"mining.subscribe","params":[]}"#).await;
    assert_eq!(v["error"][0], 20, "already subscribed: {v}");
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// The refusals a miner got: code and message, in submit order.
fn refusals(r: &Sv1MinerReport) -> Vec<(i64, String)> {
    r.answered_once()
        .iter()
        .filter_map(|(_, a)| a.outcome.as_ref().err())
        .map(|e| (e.code, e.message.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_non_standard_refusal_reaches_the_miner_with_the_pools_code_and_message() {
    // A code outside 20..=25 with a message that needs escaping; then a text-only error.
    let odd = r#"[-5,"Stale \"share\"\nx",null]"#;
    let pool = Sv1Pool::start(Sv1PoolConfig {
        refuse_with: Some(odd.into()),
        ..pool_without_blocks()
    })
    .await
    .unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    let r = run_sv1_miner(proxy.local_addrs()[0], miner(2))
        .await
        .unwrap();
    all_answered_once(&r);
    assert_eq!(pool.submits().len(), 2, "both forwarded");
    assert_eq!(
        refusals(&r),
        vec![(-5, "Stale \"share\"\nx".to_owned()); 2],
        "the pool's code and message, as JSON carries them"
    );
    assert_eq!(proxy.stats().rejected, 2);
    proxy.shutdown(Duration::from_secs(1)).await;

    let pool = Sv1Pool::start(Sv1PoolConfig {
        refuse_with: Some(r#""rejected: too late""#.into()),
        ..pool_without_blocks()
    })
    .await
    .unwrap();
    let proxy = start(sv1_config(&pool, POOL_DIFF)).await;
    let r = run_sv1_miner(proxy.local_addrs()[0], miner(1))
        .await
        .unwrap();
    all_answered_once(&r);
    assert_eq!(
        refusals(&r),
        vec![(20, "rejected: too late".to_owned())],
        "a text-only error: code 20 with the pool's text"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vardiff_change_reaches_the_miner_at_once_without_a_new_job() {
    // The pool never sends a second job. The miner starts at the floor, 2^-22 (about 4,000
    // hashes a share: many shares a second), so vardiff raises it at its first retarget
    // (after 2 s); the new difficulty must reach the miner then, not with a next job.
    let pool = Sv1Pool::start(pool_without_blocks()).await.unwrap();
    let proxy = start(sv1_config(&pool, 1.0 / 4_194_304.0)).await;
    let busy = Sv1MinerConfig {
        max_shares: 5_000,
        max_time: Duration::from_secs(5),
        ..Sv1MinerConfig::default()
    };
    let r = run_sv1_miner(proxy.local_addrs()[0], busy).await.unwrap();
    assert_eq!(r.jobs.len(), 1, "one job, never sent again: {:?}", r.jobs);
    assert!(
        r.difficulties.len() >= 2 && r.difficulties[1] > r.difficulties[0],
        "a raised difficulty came without a job: {:?}",
        r.difficulties
    );
    // Shares mined before the change are still judged at the old difficulty: none refused.
    assert!(r.rejected_codes().is_empty(), "{:?}", r.rejected_codes());
    assert!(r.accepted() >= 12, "{}", r.accepted());
    proxy.shutdown(Duration::from_secs(1)).await;
}
