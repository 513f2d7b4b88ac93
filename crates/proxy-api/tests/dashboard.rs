//! The dashboard's routes without a browser: `/2/summary` and `/api.json` answer as
//! `/1/summary`; `/` and its files need no token while the API does; `/1/history`,
//! `/1/upstreams` and `/1/events` against a real proxy and mock pool.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Method, StatusCode};
use common::*;
use serde_json::Value;
use test_support::mock_pool::Reply;

/// `v` without the figures that move between two requests (host memory, load).
fn steady(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("resources");
    v
}

#[tokio::test]
async fn summary_aliases_answer_as_1_summary_with_xmrigs_fields() {
    let (_pool, proxy) = start(|_| {}).await;
    let mut m = miner(&proxy, "wallet", Some("rig")).await;
    accepted(&mut m, 0, 1000).await;
    until(&proxy.monitor(), |m| m.stats().accepted == 1).await;
    let (app, _clock) = app_at(&proxy, Duration::from_secs(30));
    let (status, one) = get_json(&app, "/1/summary").await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/2/summary", "/api.json"] {
        let (status, v) = get_json(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(steady(v), steady(one.clone()), "{path}");
    }
    // What xmrig-proxy 6.26 sends besides the RFC's fields.
    assert_eq!(one["features"], serde_json::json!(["api", "http", "tls"]));
    assert_eq!(one["algo"], "invalid");
    assert_eq!(one["donate_level"], 0);
    assert_eq!(one["donated"], 0.0);
    assert_eq!(one["results"]["hashes_donate"], 0);
    assert_eq!(one["results"]["accepted"], 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_page_needs_no_token_while_the_api_does() {
    let (_pool, proxy) = start(|c| {
        c.http.access_token = Some("s3cret".into());
        c.http.restricted = true;
    })
    .await;
    let app = proxy_api::router(proxy.monitor());
    for (path, kind, needle) in [
        ("/", "text/html", "/dashboard.js"),
        ("/dashboard.js", "text/javascript", "Authorization"),
        ("/dashboard.css", "text/css", "#chart"),
    ] {
        let (status, headers, body) = send(&app, Method::GET, path, &[], "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("connect-src 'self'"));
        assert!(body.contains(needle), "{path}");
    }
    for path in [
        "/1/summary",
        "/2/summary",
        "/api.json",
        "/1/history",
        "/1/upstreams",
        "/1/events",
    ] {
        // A wrong and the right token on these: auth.rs's `ROUTES`.
        let (status, _) = get_json(&app, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Only reads of the page's own files go without a token.
    let (status, _, _) = send(&app, Method::PUT, "/", &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get_json(&app, "/dashboard.json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn history_upstreams_and_events_report_the_share_flow() {
    let (pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let history = Arc::new(proxy_api::History::default());
    history.sample(&monitor);
    let app = proxy_api::router_with_history(
        monitor.clone(),
        Arc::new(tokio::time::Instant::now),
        history.clone(),
        proxy_api::HISTORY_PERIOD,
    );
    let mut m = miner(&proxy, "wallet\u{1b}[31m", Some("rig")).await;
    accepted(&mut m, 0, 1000).await;
    accepted(&mut m, 1, 1000).await;
    pool.set_reply(Reply::Error("Low difficulty share".into()));
    let r = share(&mut m, 2, 1000).await;
    assert!(!r["error"].is_null(), "{r}");
    until(&monitor, |m| m.stats().rejected == 1).await;
    // The accepted hashes are counted on the upstream that carried them.
    until(&monitor, |m| {
        m.upstream_hashes().values().sum::<u64>() == 2000
    })
    .await;

    let (status, v) = get_json(&app, "/1/upstreams").await;
    assert_eq!(status, StatusCode::OK);
    let rows = v["upstreams"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["pool"], pool.addr().to_string());
    assert_eq!(rows[0]["state"], "active");
    assert_eq!(rows[0]["miners"], 1);
    assert_eq!(rows[0]["hashes"], 2000);

    // A second sample a moment later: one point, with the pool's share of the hashes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    history.sample(&monitor);
    let (status, v) = get_json(&app, "/1/history").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["period"].clone(), v["capacity"].clone()),
        (60.into(), 1440.into())
    );
    let proxy_points = v["proxy"].as_array().unwrap();
    assert_eq!(proxy_points.len(), 1, "{v}");
    let pool_points = v["pools"][pool.addr().to_string()].as_array().unwrap();
    assert_eq!(pool_points.len(), 1, "{v}");
    let (p, q) = (
        proxy_points[0][1].as_f64().unwrap(),
        pool_points[0][1].as_f64().unwrap(),
    );
    assert!(p > 0.0 && (p - q).abs() < 0.01, "{v}");

    let (status, v) = get_json(&app, "/1/events").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["capacity"], proxy_core::JOURNAL_CAPACITY);
    let e = &v["events"][0];
    assert_eq!(e["kind"], "rejected", "{v}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("Low difficulty share"), "{msg}");
    assert!(
        msg.contains("wallet\\u{1b}[31m") && !msg.contains('\u{1b}'),
        "the miner's login is escaped: {msg}"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_lost_pool_connection_is_an_event() {
    let (pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let mut m = miner(&proxy, "wallet", Some("rig")).await;
    // Seen active by the tick first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The pool drops the connection and then leaves logins unanswered: the upstream stays
    // away for longer than the tick's second (a loss shorter than that is not seen).
    pool.set_login_silent(true);
    pool.set_reply(Reply::Close);
    let r = share(&mut m, 0, 1000).await;
    assert!(!r["error"].is_null(), "{r}");
    let app = proxy_api::router(monitor.clone());
    let mut events = Value::Null;
    for _ in 0..50 {
        events = get_json(&app, "/1/events").await.1;
        if events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "upstream")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = events["events"].as_array().unwrap();
    let lost = list
        .iter()
        .find(|e| e["kind"] == "upstream")
        .unwrap_or_else(|| {
            panic!("no upstream event: {events}");
        });
    let msg = lost["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("upstream #1 ({}) lost: now ", pool.addr())),
        "{msg}"
    );
    assert!(
        list.iter().any(|e| e["kind"] == "rejected"),
        "the share lost with the connection: {events}"
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}
