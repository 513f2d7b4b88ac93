//! One process serving two stratum families over loopback: a CryptoNote bind in front of the
//! mock CryptoNote pool and a Stratum V1 bind (`"protocol": "stratum-v1"`) in front of the
//! scripted SV1 pool. Each family's miners reach their own pool, every share is answered, and
//! the API and `/metrics` show both families' miners, workers, upstreams and hashrates, each
//! marked with its `protocol`. Deterministic: the SV1 miner counts nonces up from 0 on a
//! fixed job whose network target no share meets; every wait is bounded.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use proxy_core::config::Protocol;
use proxy_core::MinerDifficulty;
use serde_json::{json, Value};
use test_support::miner::{TestMiner, WAIT};
use test_support::sv1_pool::{Sv1Pool, Sv1PoolConfig};

/// Hashes an SV1 share at [`SV1_DIFF`] counts: 2^32 · 2^-16.
const SV1_SHARE_HASHES: u64 = 65_536;

fn family(m: &proxy_core::Monitor, p: Protocol) -> proxy_core::Monitor {
    m.family(p).unwrap_or_else(|| panic!("{p} is served"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cryptonote_and_a_stratum_v1_bind_reach_their_own_pools_and_both_show_in_the_api() {
    let (cn_pool, sv1_pool, proxy) = start_two_families().await;
    let monitor = proxy.monitor();
    assert_eq!(
        monitor.protocol(),
        Protocol::CryptoNote,
        "the default first"
    );
    assert_eq!(
        monitor
            .families()
            .iter()
            .map(|f| f.protocol())
            .collect::<Vec<_>>(),
        [Protocol::CryptoNote, Protocol::StratumV1]
    );

    // CryptoNote: two shares accepted by the CryptoNote pool.
    // Stratum V1: a real sha256d miner on the SV1 bind, every share answered by the SV1 pool.
    let (_cn, report) = shares_of_both_families(&proxy).await;
    assert_eq!(report.authorized, Some(true));
    assert_eq!(report.submits.len(), SV1_SHARES, "{report:?}");
    assert_eq!(report.answered_once().len(), SV1_SHARES, "{report:?}");
    assert_eq!(
        report.accepted(),
        SV1_SHARES,
        "{:?}",
        report.rejected_codes()
    );
    let _idle = idle_sv1_miner(&proxy).await;

    // Each pool saw only its own family's shares.
    assert_eq!(cn_pool.received("submit").len(), 2);
    assert_eq!(cn_pool.connections_total(), 1);
    assert_eq!(sv1_pool.submits().len(), SV1_SHARES);
    assert_eq!(sv1_pool.connections_total(), 1);
    let cn_fam = family(&monitor, Protocol::CryptoNote);
    let sv1_fam = family(&monitor, Protocol::StratumV1);
    until(&monitor, |_| {
        cn_fam.stats().accepted == 2
            && sv1_fam.stats().accepted == SV1_SHARES as u64
            && sv1_fam.stats().miners == 1
    })
    .await;
    assert_eq!(
        cn_fam.summary_at(tokio::time::Instant::now()).hashes,
        2 * JOB_DIFF
    );
    assert_eq!(
        sv1_fam.summary_at(tokio::time::Instant::now()).hashes,
        SV1_SHARES as u64 * SV1_SHARE_HASHES,
        "an SV1 share counts 2^32 x its difficulty"
    );
    // The idle SV1 miner shows its fractional difficulty, not 0.
    let miners = monitor.miners();
    assert_eq!(miners.len(), 2, "{miners:?}");
    assert_eq!(miners[0].protocol, Protocol::CryptoNote);
    assert_eq!(miners[0].diff, MinerDifficulty::Integer(JOB_DIFF));
    assert_eq!(miners[1].protocol, Protocol::StratumV1);
    assert_eq!(miners[1].diff, MinerDifficulty::Fractional(SV1_DIFF));

    let (app, _clock) = app_at(&proxy, Duration::from_secs(30));

    // /1/miners: an 11th column names the family; the SV1 difficulty is a float.
    let (status, v) = get_json(&app, "/1/miners").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["format"][10], "protocol", "{v}");
    let rows = v["miners"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0][10], "cryptonote");
    assert_eq!(
        rows[0][5],
        json!(JOB_DIFF),
        "CryptoNote's integer difficulty"
    );
    assert!(rows[0][5].is_u64(), "{v}");
    assert_eq!(rows[1][10], "stratum-v1");
    assert_eq!(rows[1][5].as_f64(), Some(SV1_DIFF), "{v}");
    assert_eq!(rows[1][6], "idle.rig");

    // /1/summary: the top level is the default family's; `protocols` has both.
    let (_, s) = get_json(&app, "/1/summary").await;
    assert_eq!(s["protocol"], "cryptonote");
    assert_eq!(s["results"]["hashes_total"], json!(2 * JOB_DIFF));
    let fams = s["protocols"].as_array().unwrap();
    let by = |p: &str| -> &Value { fams.iter().find(|f| f["protocol"] == p).unwrap() };
    assert_eq!(by("cryptonote")["results"]["accepted"], 2);
    assert_eq!(by("cryptonote")["miners"]["now"], 1);
    let sv1 = by("stratum-v1");
    assert_eq!(sv1["results"]["accepted"], json!(SV1_SHARES));
    assert_eq!(
        sv1["results"]["hashes_total"],
        json!(SV1_SHARES as u64 * SV1_SHARE_HASHES)
    );
    assert_eq!(sv1["miners"]["now"], 1);
    assert_eq!(sv1["upstreams"]["total"], 1);
    assert!(sv1["hashrate"]["total"][0].as_f64().unwrap() > 0.0, "{sv1}");
    assert!(by("cryptonote")["hashrate"]["total"][0].as_f64().unwrap() > 0.0);

    // /1/workers: each family's workers, marked in a 14th column.
    let (_, w) = get_json(&app, "/1/workers").await;
    let rows = w["workers"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r[0] == name).cloned();
    let cn_row = row("cn-rig").expect("the CryptoNote worker");
    assert_eq!(
        (cn_row[6].clone(), cn_row[13].clone()),
        (json!(2 * JOB_DIFF), json!("cryptonote"))
    );
    // The SV1 miner's worker is named by its user (it sends no rig id).
    let sv1_row = row("bc1qminer.sv1-rig").expect("the SV1 worker");
    assert_eq!(sv1_row[13], "stratum-v1");
    assert_eq!(sv1_row[3], json!(SV1_SHARES));
    assert_eq!(sv1_row[6], json!(SV1_SHARES as u64 * SV1_SHARE_HASHES));
    assert!(sv1_row[8].as_f64().unwrap() > 0.0, "a hashrate: {sv1_row}");

    // /1/upstreams: one connection per family, marked.
    let (_, u) = get_json(&app, "/1/upstreams").await;
    let ups = u["upstreams"].as_array().unwrap();
    assert_eq!(ups.len(), 2, "{u}");
    let up = |p: &str| ups.iter().find(|r| r["protocol"] == p).unwrap();
    assert_eq!(up("cryptonote")["hashes"], json!(2 * JOB_DIFF));
    assert_eq!(up("cryptonote")["pool"], cn_pool.addr().to_string());
    assert_eq!(
        up("stratum-v1")["hashes"],
        json!(SV1_SHARES as u64 * SV1_SHARE_HASHES)
    );
    assert_eq!(up("stratum-v1")["pool"], sv1_pool.addr().to_string());

    // /metrics: every family's series under its `protocol` label.
    let (status, _, text) = send(&app, Method::GET, "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"stratum_proxy_miners{protocol="cryptonote"} 1"#.to_string(),
        r#"stratum_proxy_miners{protocol="stratum-v1"} 1"#.to_string(),
        format!(
            r#"stratum_proxy_hashes_total{{protocol="cryptonote"}} {}"#,
            2 * JOB_DIFF
        ),
        format!(
            r#"stratum_proxy_hashes_total{{protocol="stratum-v1"}} {}"#,
            SV1_SHARES as u64 * SV1_SHARE_HASHES
        ),
        format!(
            r#"stratum_proxy_shares_total{{protocol="stratum-v1",result="accepted"}} {SV1_SHARES}"#
        ),
        format!(
            r#"stratum_proxy_worker_hashes_total{{protocol="stratum-v1",worker="bc1qminer.sv1-rig"}} {}"#,
            SV1_SHARES as u64 * SV1_SHARE_HASHES
        ),
    ] {
        assert!(text.contains(&line), "{line} in:\n{text}");
    }
    assert!(
        text.contains(r#"stratum_proxy_hashrate{protocol="stratum-v1",window="60s"}"#),
        "{text}"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_each_familys_own_pools_and_is_refused_when_a_bind_loses_its_family() {
    let (cn_pool, sv1_pool, proxy) = start_two_families().await;
    let monitor = proxy.monitor();
    let _cn = miner(&proxy, "CNWALLET", None).await;
    let _sv1 = idle_sv1_miner(&proxy).await;
    assert_eq!(
        (cn_pool.connections_total(), sv1_pool.connections_total()),
        (1, 1)
    );
    let running = monitor.config();
    let mut without_sv1 = (*running).clone();
    without_sv1
        .pools
        .retain(|p| p.protocol != Some(Protocol::StratumV1));
    let err = proxy.reload(without_sv1).unwrap_err().to_string();
    assert!(
        err.contains("bind[1].protocol") && err.contains("stratum-v1"),
        "{err}"
    );
    assert_eq!(monitor.config(), running, "the running config stays");

    // The SV1 pool moves: the SV1 upstream logs in to the new one, CryptoNote's stays.
    let sv1_pool2 = Sv1Pool::start(Sv1PoolConfig::default()).await.unwrap();
    let mut moved = (*running).clone();
    moved.pools[1].url = sv1_pool2.addr().to_string();
    assert!(proxy.reload(moved).unwrap().changed);
    let config = monitor.config();
    assert_eq!(
        config.pools_of(Protocol::StratumV1)[0].url,
        sv1_pool2.addr().to_string()
    );
    assert_eq!(
        config.pools_of(Protocol::CryptoNote)[0].url,
        cn_pool.addr().to_string()
    );
    until(&monitor, |_| sv1_pool2.connections_total() == 1).await;
    assert_eq!(
        cn_pool.connections_total(),
        1,
        "CryptoNote's upstream untouched"
    );
    let sv1_up = monitor
        .upstream_details()
        .into_iter()
        .find(|u| u.protocol == Protocol::StratumV1)
        .unwrap();
    until(&monitor, |m| {
        m.upstream_details()
            .iter()
            .any(|u| u.id == sv1_up.id && u.pool == Some(sv1_pool2.addr().to_string()))
    })
    .await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_cryptonote_only_proxy_keeps_the_rfc_shapes() {
    let (_pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let _m = miner(&proxy, "W", Some("rig")).await;
    until(&monitor, |m| m.stats().miners == 1).await;
    let app = proxy_api::router(monitor);
    let (_, s) = get_json(&app, "/1/summary").await;
    assert!(
        s.get("protocol").is_none() && s.get("protocols").is_none(),
        "{s}"
    );
    let (_, v) = get_json(&app, "/1/miners").await;
    assert_eq!(v["format"].as_array().unwrap().len(), 10);
    assert_eq!(v["miners"][0].as_array().unwrap().len(), 10);
    assert!(v["miners"][0][5].is_u64(), "{v}");
    let (_, u) = get_json(&app, "/1/upstreams").await;
    assert!(u["upstreams"][0].get("protocol").is_none(), "{u}");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_miner_cap_counts_both_families_miners() {
    let (_cn_pool, _sv1_pool, proxy) = start_two_families().await;
    let monitor = proxy.monitor();
    proxy.set_miner_limit(1);
    let _cn = miner(&proxy, "CNWALLET", None).await;
    until(&monitor, |m| m.stats().miners == 1).await;
    // The SV1 bind has no miner yet, but the process has its one: refused with SV1's
    // `Proxy is full` error (null id: nothing was read) and closed.
    let mut sv1 = TestMiner::connect(proxy.local_addrs()[1]).await.unwrap();
    let v = sv1.recv(WAIT).await.unwrap();
    assert_eq!(v["id"], Value::Null, "{v}");
    assert!(
        v["error"].to_string().contains("Proxy is full"),
        "the SV1 refusal: {v}"
    );
    assert!(sv1.closed_within(WAIT).await);
    assert_eq!(family(&monitor, Protocol::StratumV1).stats().miners, 0);
    proxy.shutdown(Duration::from_secs(1)).await;
}
