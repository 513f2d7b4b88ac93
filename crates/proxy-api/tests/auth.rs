//! Access token, restricted mode, errors and CORS, as xmrig-proxy answers them; the rules
//! are read from the running config, so a reload changes them at once.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};

const ROUTES: [&str; 5] = [
    "/1/summary",
    "/1/workers",
    "/1/miners",
    "/1/config",
    "/metrics",
];

#[tokio::test]
async fn a_token_is_required_on_every_route() {
    let (_pool, proxy) = start(|c| c.http.access_token = Some("tok123".into())).await;
    let app = proxy_api::router(proxy.monitor());
    for path in ROUTES {
        let (s, h, b) = send(&app, Method::GET, path, &[], "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(h["www-authenticate"], "Bearer");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v, json!({"status": 401, "error": "UNAUTHORIZED"}));

        let (s, _, b) = send(
            &app,
            Method::GET,
            path,
            &[("authorization", "Bearer nope")],
            "",
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v, json!({"status": 403, "error": "FORBIDDEN"}));

        let (s, _, _) = send(
            &app,
            Method::GET,
            path,
            &[("authorization", "Bearer tok123")],
            "",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    // Not a bearer token at all.
    let (s, _, _) = send(
        &app,
        Method::GET,
        "/1/summary",
        &[("authorization", "Basic dG9rMTIz")],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn restricted_serves_reads_but_not_the_config_nor_writes() {
    let (_pool, proxy) = start(|c| c.http.restricted = true).await;
    let app = proxy_api::router(proxy.monitor());
    for path in ["/1/summary", "/1/workers", "/1/miners", "/metrics"] {
        let (s, _, _) = send(&app, Method::GET, path, &[], "").await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (s, v) = get_json(&app, "/1/summary").await;
    assert_eq!((s, v["restricted"].clone()), (StatusCode::OK, json!(true)));
    // xmrig-proxy: the config is not shown in restricted mode.
    let (s, v) = get_json(&app, "/1/config").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v, json!({"status": 403, "error": "FORBIDDEN"}));
    let body = serde_json::to_string(&*proxy.monitor().config()).unwrap();
    let json_ct = [("content-type", "application/json")];
    let (s, _, _) = send(&app, Method::PUT, "/1/config", &json_ct, &body).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for m in [Method::POST, Method::DELETE, Method::PUT] {
        let (s, _, _) = send(&app, m.clone(), "/1/summary", &[], "").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m}");
    }
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn token_and_restricted_follow_a_reload() {
    let (_pool, proxy) = start(|c| c.http.access_token = Some("old".into())).await;
    let monitor = proxy.monitor();
    let app = proxy_api::router(monitor.clone());
    let auth_old = [("authorization", "Bearer old")];
    let auth_new = [("authorization", "Bearer new")];
    assert_eq!(
        send(&app, Method::GET, "/1/config", &auth_old, "").await.0,
        StatusCode::OK
    );

    let mut c = (*monitor.config()).clone();
    c.http.access_token = Some("new".into());
    c.http.restricted = true;
    monitor.apply_config(c).unwrap();
    assert_eq!(
        send(&app, Method::GET, "/1/summary", &auth_old, "").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, Method::GET, "/1/summary", &auth_new, "").await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Method::GET, "/1/config", &auth_new, "").await.0,
        StatusCode::FORBIDDEN
    );

    // An empty token means no token.
    let mut c = (*monitor.config()).clone();
    c.http.access_token = Some(String::new());
    c.http.restricted = false;
    monitor.apply_config(c).unwrap();
    assert_eq!(
        send(&app, Method::GET, "/1/config", &[], "").await.0,
        StatusCode::OK
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_cors() {
    let (_pool, proxy) = start(|c| c.http.access_token = Some("tok".into())).await;
    let app = proxy_api::router(proxy.monitor());
    let auth = [("authorization", "Bearer tok")];
    let (s, _, b) = send(&app, Method::GET, "/1/nothing", &auth, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v, json!({"status": 404, "error": "NOT_FOUND"}));
    // Unknown paths are behind the token too.
    let (s, _, _) = send(&app, Method::GET, "/1/nothing", &[], "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(&app, Method::POST, "/1/summary", &auth, "").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    // Answers carry xmrig-proxy's CORS headers; a preflight needs no token.
    let (_, h, _) = send(
        &app,
        Method::GET,
        "/1/summary",
        &[("origin", "http://dash"), auth[0]],
        "",
    )
    .await;
    assert_eq!(h["access-control-allow-origin"], "*");
    let (s, h, _) = send(
        &app,
        Method::OPTIONS,
        "/1/summary",
        &[
            ("origin", "http://dash"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("GET") && methods.contains("PUT"),
        "{methods}"
    );
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"));
    proxy.shutdown(Duration::from_secs(1)).await;
}
