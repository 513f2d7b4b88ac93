//! `GET /1/blocks` over loopback, against the real bcoin regtest node: two users' SV1 CPU
//! miners (`test_support::sv1_miner`) mine through a solo proxy; the endpoint lists every
//! block the node accepted (height, hash as the node has it, finder) and the users' shares
//! per round. Deterministic enough: at difficulty 2^-16 about every other share is a regtest
//! block; the assertions hold for any split between blocks and plain shares. With
//! `stratum-v1.rounds-dir`, the rounds are on disk after the shutdown (a file per block, as
//! bcoin-stratum, and the round in progress) and a proxy started again lists them.

use std::collections::HashMap;
use std::time::Duration;

use proxy_core::config::{BindAddr, PoolConfig, Protocol};
use proxy_core::{Config, Proxy};
use serde_json::{json, Value};
use test_support::bcoin::{Bcoin, REGTEST_P2WPKH};
use test_support::sv1_miner::{run_sv1_miner, Sv1MinerConfig};

const DIFF: f64 = 1.0 / 65536.0;

fn solo_config(node: &Bcoin, rounds_dir: &std::path::Path) -> Config {
    let mut c = Config {
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: false,
            protocol: None,
        }],
        pools: vec![PoolConfig {
            url: node.host_port(),
            user: REGTEST_P2WPKH.into(),
            pass: node.api_key().into(),
            daemon: true,
            daemon_poll_interval: 100,
            ..PoolConfig::default()
        }],
        ..Config::default()
    };
    c.protocol = Protocol::StratumV1;
    c.stratum_v1.network = "regtest".into();
    c.stratum_v1.min_difficulty = DIFF;
    c.http.restricted = false;
    c.stratum_v1.rounds_dir = rounds_dir.to_str().unwrap().into();
    c
}

fn miner(user: &str) -> Sv1MinerConfig {
    Sv1MinerConfig {
        user: user.into(),
        max_shares: 4,
        max_time: Duration::from_secs(60),
        ..Sv1MinerConfig::default()
    }
}

/// Per user: shares over every round listed (the closed ones and the current one).
fn shares_per_user(body: &Value) -> HashMap<String, u64> {
    let mut rounds: Vec<&Value> = body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["round"])
        .collect();
    rounds.push(&body["current"]);
    let mut per = HashMap::new();
    for r in rounds {
        let users = r["users"].as_array().unwrap();
        let sum: u64 = users.iter().map(|u| u["shares"].as_u64().unwrap()).sum();
        assert_eq!(sum, r["shares"].as_u64().unwrap(), "a round's total: {r}");
        for u in users {
            *per.entry(u["user"].as_str().unwrap().to_owned())
                .or_default() += u["shares"].as_u64().unwrap();
        }
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocks_endpoint_lists_the_blocks_bcoin_accepted_with_each_users_shares() {
    let node = Bcoin::start()
        .await
        .expect("bcoin starts (apt-get install -y nodejs npm)");
    let start_height = node.block_count().await.unwrap();
    let rounds_dir = std::env::temp_dir().join(format!("blocks-rounds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rounds_dir);
    let proxy = Proxy::start(solo_config(&node, &rounds_dir)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(proxy_api::serve(
        "127.0.0.1:0".parse().unwrap(),
        proxy.monitor(),
        async {
            let _ = stop_rx.await;
        },
        move |a| {
            let _ = bound_tx.send(a);
        },
    ));
    let api = bound_rx.await.unwrap();

    let users = ["alice", "bob"];
    let runs: Vec<_> = users
        .iter()
        .map(|u| tokio::spawn(run_sv1_miner(addr, miner(&format!("{u}.rig1")))))
        .collect();
    let mut reports = HashMap::new();
    for (u, r) in users.iter().zip(runs) {
        let r = r.await.unwrap().unwrap();
        assert_eq!(r.authorized, Some(true));
        assert_eq!(r.submits.len(), 4, "{r:?}");
        reports.insert(u.to_string(), r);
    }

    let body: Value = reqwest::get(format!("http://{api}/1/blocks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let found = body["found"].as_u64().unwrap();
    assert!(
        found >= 1,
        "at 2^-16 about every other share is a block: {body}"
    );
    assert_eq!(found, proxy.monitor().blocks(), "{body}");
    let height = node.block_count().await.unwrap();
    assert_eq!(
        height,
        start_height + found,
        "every block listed is on the node"
    );

    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks.len() as u64, found);
    for (i, b) in blocks.iter().enumerate() {
        // Newest first: the top block is the node's tip.
        let h = b["height"].as_u64().unwrap();
        assert_eq!(h, height - i as u64, "{body}");
        let hash = node.call("getblockhash", json!([h])).await.unwrap();
        assert_eq!(b["hash"], hash, "the node's block at {h}");
        assert!(users.contains(&b["finder"].as_str().unwrap()), "{b}");
        assert!(b["reward"].as_u64().unwrap() > 0);
        // The round a block closes counts at least the block's own share, its finder's.
        let finder_shares = b["round"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == b["finder"])
            .map(|u| u["shares"].as_u64().unwrap());
        assert!(finder_shares >= Some(1), "{b}");
    }

    // Every share the proxy accepted is in a round under its user; a share refused by the
    // node after the proxy's checks (a block on a tip just replaced) counts too, as in
    // bcoin-stratum, so a user's count lies between its accepted shares and its submits.
    let per = shares_per_user(&body);
    assert_eq!(per.len(), 2, "{per:?}");
    for (u, r) in &reports {
        let n = per[u.as_str()] as usize;
        assert!(r.accepted() <= n && n <= r.submits.len(), "{u}: {n} {r:?}");
    }
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    let before = proxy.monitor().solo_blocks();
    proxy.shutdown(Duration::from_secs(1)).await;

    // On disk: one file per block, named by height and hash, holding its API entry; and
    // the round in progress.
    for b in blocks {
        let file = rounds_dir.join(format!(
            "{}-{}.json",
            b["height"],
            b["hash"].as_str().unwrap()
        ));
        let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(&on_disk, b, "{}", file.display());
    }
    let current: Value =
        serde_json::from_slice(&std::fs::read(rounds_dir.join("current.json")).unwrap()).unwrap();
    assert_eq!(current, body["current"]);
    // Started again: the blocks are listed and the round goes on.
    let again = Proxy::start(solo_config(&node, &rounds_dir)).await.unwrap();
    let after = again.monitor().solo_blocks();
    assert_eq!(after.blocks, before.blocks);
    assert_eq!(after.current, before.current);
    assert_eq!(after.found, 0, "found counts the blocks of this run");
    again.shutdown(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(&rounds_dir).unwrap();
}
