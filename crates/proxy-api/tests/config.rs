//! `GET /1/config` (secrets masked) and `PUT /1/config` (applied live, written back to the
//! config file).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use proxy_core::{Config, Proxy};
use serde_json::{json, Value};
use test_support::mock_pool::{make_job, MockPool};

/// A PUT's headers: JSON, with the token every test proxy here has (writes need one).
const JSON: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("authorization", "Bearer tok"),
];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxy-api-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_config_is_shown_with_its_secrets_masked() {
    let (_pool, proxy) = start(|c| {
        c.access_password = Some("miners-pw".into());
        c.http.access_token = Some("tok".into());
    })
    .await;
    let app = proxy_api::router(proxy.monitor());
    let (s, _, b) = send(
        &app,
        Method::GET,
        "/1/config",
        &[("authorization", "Bearer tok")],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["access-password"], "********");
    assert_eq!(v["http"]["access-token"], "********");
    assert_eq!(v["pools"][0]["pass"], "********");
    assert_eq!(v["pools"][0]["user"], "W");
    assert_eq!(v["mode"], "nicehash");
    assert_eq!(v["workers"], "rig-id");
    for secret in ["miners-pw", "pool-secret", "\"tok\""] {
        assert!(!b.contains(secret), "{secret} leaked: {b}");
    }
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_bodies_are_refused_and_change_nothing() {
    let (_pool, proxy) = start(|c| c.http.access_token = Some("tok".into())).await;
    let monitor = proxy.monitor();
    let app = proxy_api::router(monitor.clone());
    let before = monitor.config();
    let good = serde_json::to_string(&*before).unwrap();

    let (s, _, b) = send(
        &app,
        Method::PUT,
        "/1/config",
        &[("content-type", "text/plain"), JSON[1]],
        &good,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"],
        "UNSUPPORTED_MEDIA_TYPE"
    );

    let (s, _, b) = send(&app, Method::PUT, "/1/config", &JSON, "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["error"], "BAD_REQUEST");
    assert!(
        v["message"].as_str().unwrap().contains("parse failed"),
        "{v}"
    );

    let mut no_pools: Value = serde_json::from_str(&good).unwrap();
    no_pools["pools"] = json!([]);
    let (s, _, b) = send(&app, Method::PUT, "/1/config", &JSON, &no_pools.to_string()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = serde_json::from_str::<Value>(&b).unwrap()["message"].to_string();
    assert!(msg.contains("pools"), "{msg}");

    let mut masked = proxy_api::masked_config(&before);
    masked["pools"][0]["url"] = "elsewhere:1".into();
    let (s, _, b) = send(&app, Method::PUT, "/1/config", &JSON, &masked.to_string()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.contains("pools[0].pass"), "{b}");

    assert_eq!(*monitor.config(), *before);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_put_config_is_applied_and_written_to_the_file_as_given() {
    let pool = MockPool::start(make_job(1, JOB_DIFF)).await.unwrap();
    let dir = temp_dir("put");
    let path = dir.join("config.json");
    let original = json!({
        "bind": ["127.0.0.1:0"],
        "pools": [{"url": pool.addr().to_string(), "user": "W", "pass": "pool-secret"}],
        "http": {"enabled": false, "restricted": false, "access-token": "tok"},
        "api": {"id": "kept"}
    });
    std::fs::write(&path, format!("{original:#}")).unwrap();
    let proxy = Proxy::start_from_file(&path).await.unwrap();
    let monitor = proxy.monitor();
    assert_eq!(monitor.config_path(), Some(path.as_path()));
    let app = proxy_api::router(monitor.clone());

    // A full config with real secrets: applied, and the file holds exactly the body.
    let mut body = original.clone();
    body["custom-diff"] = 3000.into();
    body["access-password"] = "new-pw".into();
    let text = format!("{body:#}\n");
    let (s, _, b) = send(&app, Method::PUT, "/1/config", &JSON, &text).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["changed"], true);
    assert_eq!(v["needs_restart"], json!([]));
    assert_eq!(v["saved"], path.display().to_string());
    let running = monitor.config();
    assert_eq!(running.custom_diff, 3000);
    assert_eq!(running.access_password.as_deref(), Some("new-pw"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // The masked config from GET, edited and sent back: the running secrets are kept, in the
    // running config and in the file. A changed bind waits for a restart.
    let (_, _, b) = send(&app, Method::GET, "/1/config", &JSON[1..], "").await;
    let mut edited: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(edited["access-password"], "********");
    edited["custom-diff"] = 5000.into();
    edited["bind"] = json!(["127.0.0.1:1"]);
    let (s, _, b) = send(&app, Method::PUT, "/1/config", &JSON, &edited.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["needs_restart"], json!(["bind"]));
    let running = monitor.config();
    assert_eq!(running.custom_diff, 5000);
    assert_eq!(running.access_password.as_deref(), Some("new-pw"));
    assert_eq!(running.pools[0].pass, "pool-secret");
    let saved = Config::load(&path).unwrap();
    assert_eq!(saved.custom_diff, 5000);
    assert_eq!(saved.access_password.as_deref(), Some("new-pw"));
    assert_eq!(saved.pools[0].pass, "pool-secret");
    assert_eq!(saved.bind[0].port, 1);
    assert_eq!(saved.unknown_keys["api"], json!({"id": "kept"}));
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["config.json"]);

    proxy.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn without_a_file_a_put_config_is_applied_only() {
    let (_pool, proxy) = start(|c| c.http.access_token = Some("tok".into())).await;
    let monitor = proxy.monitor();
    let app = proxy_api::router(monitor.clone());
    let mut c = serde_json::to_value(&*monitor.config()).unwrap();
    c["algo-ext"] = false.into();
    let (s, _, b) = send(&app, Method::PUT, "/1/config", &JSON, &c.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["changed"].clone(), v["saved"].clone()),
        (json!(true), Value::Null)
    );
    assert!(!monitor.config().algo_ext);
    proxy.shutdown(Duration::from_secs(1)).await;
}
