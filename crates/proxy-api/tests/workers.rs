//! `/1/workers` and `/1/miners` against a real proxy and mock pool.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use proxy_core::config::WorkersMode;
use serde_json::{json, Value};
use test_support::miner::TestMiner;

fn rows(v: &Value) -> Vec<Value> {
    v["workers"].as_array().unwrap().clone()
}

#[tokio::test]
async fn workers_by_rig_id_count_shares_connections_and_hashrate() {
    let (_pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let mut a1 = miner(&proxy, "WALLET1", Some("rig-A")).await;
    let mut a2 = miner(&proxy, "WALLET2", Some("rig-A")).await;
    let mut b = miner(&proxy, "WALLET3", None).await;
    accepted(&mut a1, 1, 1000).await;
    accepted(&mut a2, 2, 1000).await;
    accepted(&mut b, 3, 1000).await;
    invalid(&mut b).await;
    until(&monitor, |m| m.stats().accepted == 3).await;
    drop(a1);
    until(&monitor, |m| m.stats().miners == 2).await;

    let (app, _clock) = app_at(&proxy, Duration::from_secs(30));
    let (status, v) = get_json(&app, "/1/workers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["mode"], "rig-id");
    assert_eq!(v["hashrate"]["total"][0], 50.0);
    let rows = rows(&v);
    assert_eq!(rows.len(), 2);
    // name, last_ip, connections, accepted, rejected, invalid, hashes, last_hash_unix,
    // then H/s over 60 s, 600 s, 1 h, 12 h, 24 h.
    let a = &rows[0];
    assert_eq!(a.as_array().unwrap().len(), 13);
    assert_eq!(a[0], "rig-A");
    assert_eq!(a[1], "127.0.0.1");
    assert_eq!(
        &a.as_array().unwrap()[2..7],
        &[json!(1), json!(2), json!(0), json!(0), json!(2000)]
    );
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last = a[7].as_u64().unwrap();
    assert!(
        last <= now_unix && last + 60 > now_unix,
        "{last} vs {now_unix}"
    );
    assert_eq!(
        &a.as_array().unwrap()[8..],
        &[
            json!(33.33),
            json!(3.33),
            json!(0.56),
            json!(0.05),
            json!(0.02)
        ]
    );
    // No rig id: the user names the worker.
    let b_row = &rows[1];
    assert_eq!(b_row[0], "WALLET3");
    assert_eq!(
        &b_row.as_array().unwrap()[2..8],
        &[
            json!(1),
            json!(1),
            json!(0),
            json!(1),
            json!(1000),
            b_row[7].clone()
        ]
    );
    assert_eq!(b_row[8], 16.67);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_workers_mode_change_on_reload_starts_new_records() {
    let (_pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    login_as(&mut m, "WALLET1", Some("rig-A"), "secret-pw", "agent/1.0").await;
    accepted(&mut m, 0, 1000).await;
    let mut total = 1;
    until(&monitor, |m| m.stats().accepted == total).await;
    let app = proxy_api::router(monitor.clone());
    let (_, v) = get_json(&app, "/1/workers").await;
    assert_eq!(rows(&v)[0][0], "rig-A");

    for (mode, label, name) in [
        (WorkersMode::User, "user", "WALLET1"),
        (WorkersMode::Password, "password", "secret-pw"),
        (WorkersMode::Agent, "agent", "agent/1.0"),
        (WorkersMode::Ip, "ip", "127.0.0.1"),
    ] {
        let mut c = (*monitor.config()).clone();
        c.workers = mode;
        monitor.apply_config(c).unwrap();
        let (_, v) = get_json(&app, "/1/workers").await;
        assert_eq!(v["mode"], label);
        // A new set: the connected miner is counted again (by the tick or its next share),
        // with none of the shares from before the change.
        assert!(rows(&v).iter().all(|r| r[0] == name && r[3] == 0), "{v}");
        accepted(&mut m, total as u8, 1000).await;
        total += 1;
        until(&monitor, |m| m.stats().accepted == total).await;
        let (_, v) = get_json(&app, "/1/workers").await;
        let r = rows(&v);
        assert_eq!(r.len(), 1, "{v}");
        assert_eq!(r[0][0], name);
        assert_eq!(
            (r[0][2].clone(), r[0][3].clone()),
            (json!(1), json!(1)),
            "{v}"
        );
    }
    let mut c = (*monitor.config()).clone();
    c.workers = WorkersMode::Disabled;
    monitor.apply_config(c).unwrap();
    accepted(&mut m, total as u8, 1000).await;
    until(&monitor, |m| m.stats().accepted == total + 1).await;
    let (_, v) = get_json(&app, "/1/workers").await;
    assert_eq!(v["mode"], "false");
    assert!(rows(&v).is_empty());
    let (_, v) = get_json(&app, "/1/summary").await;
    assert_eq!(v["workers"], 0);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn miners_lists_every_connection_with_its_password_masked() {
    let (_pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    login_as(
        &mut m,
        "WALLET1",
        Some("rig-A"),
        "very-secret",
        "XMRig/6.21.0",
    )
    .await;
    let _waiting = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    until(&monitor, |m| m.stats().miners == 2).await;

    let (status, v) = get_json(&proxy_api::router(monitor.clone()), "/1/miners").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v["format"],
        json!(["id", "ip", "tx", "rx", "state", "diff", "user", "password", "rig_id", "agent"])
    );
    let miners = v["miners"].as_array().unwrap();
    assert_eq!(miners.len(), 2);
    let row = miners[0].as_array().unwrap();
    assert_eq!(row.len(), 10);
    assert!(row[0].as_u64().unwrap() >= 1);
    let ip = row[1].as_str().unwrap();
    assert!(ip.starts_with("127.0.0.1:"), "{ip}");
    assert!(row[2].as_u64().unwrap() > 0, "tx");
    assert!(row[3].as_u64().unwrap() > 0, "rx");
    assert_eq!(row[4], 2, "Ready");
    assert!(row[5].as_u64().unwrap() > 0, "diff");
    assert_eq!(row[6], "WALLET1");
    assert_eq!(row[7], "********");
    assert_eq!(row[8], "rig-A");
    assert_eq!(row[9], "XMRig/6.21.0");
    assert!(!v.to_string().contains("very-secret"));
    // Connected, not logged in yet.
    let row = miners[1].as_array().unwrap();
    assert_eq!(row[4], 0, "WaitLogin");
    assert_eq!((row[5].clone(), row[6].clone()), (json!(0), Value::Null));
    assert_eq!(row[7], "********");
    assert_eq!((row[8].clone(), row[9].clone()), (Value::Null, Value::Null));
    proxy.shutdown(Duration::from_secs(1)).await;
}
