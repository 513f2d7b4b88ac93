//! Access token, restricted mode, errors and CORS, as xmrig-proxy answers them; the rules
//! are read from the running config, so a reload changes them at once.

mod common;

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use common::*;
use serde_json::{json, Value};

/// Every route behind the token (the dashboard's own page and files are not).
const ROUTES: [&str; 10] = [
    "/1/summary",
    "/1/workers",
    "/1/miners",
    "/1/config",
    "/metrics",
    "/2/summary",
    "/api.json",
    "/1/history",
    "/1/upstreams",
    "/1/events",
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
    let h = dashboard_preflight(&app, Some("authorization")).await;
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// A dashboard's preflight for `GET /1/summary` from `http://dash` (asking for `headers`
/// too, when some): checks it is allowed, from any origin, with `GET` among the methods;
/// the answer's headers.
async fn dashboard_preflight(app: &axum::Router, headers: Option<&str>) -> HeaderMap {
    let mut asked = vec![
        ("origin", "http://dash"),
        ("access-control-request-method", "GET"),
    ];
    if let Some(headers) = headers {
        asked.push(("access-control-request-headers", headers));
    }
    let (s, h, _) = send(app, Method::OPTIONS, "/1/summary", &asked, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("GET"), "{methods}");
    h
}

/// What a browser checks before it sends a cross-origin request: the preflight's answer
/// must list the method (and a non-simple request's headers).
async fn preflight_allows(app: &axum::Router, method: &str, path: &str) -> bool {
    let (s, h, _) = send(
        app,
        Method::OPTIONS,
        path,
        &[
            ("origin", "http://evil.example"),
            ("access-control-request-method", method),
            ("access-control-request-headers", "content-type"),
        ],
        "",
    )
    .await;
    let listed = |name: &str, wanted: &str| {
        h.get_all(name).iter().any(|v| {
            let v = v.to_str().unwrap_or_default();
            v == "*" || v.split(',').any(|m| m.trim().eq_ignore_ascii_case(wanted))
        })
    };
    s.is_success()
        && h.contains_key("access-control-allow-origin")
        && listed("access-control-allow-methods", method)
        && listed("access-control-allow-headers", "content-type")
}

#[tokio::test]
async fn no_web_page_may_write_whatever_the_token() {
    for token in [None, Some("tok")] {
        let (_pool, proxy) = start(|c| c.http.access_token = token.map(String::from)).await;
        let app = proxy_api::router(proxy.monitor());
        for m in ["PUT", "POST", "DELETE", "PATCH"] {
            assert!(
                !preflight_allows(&app, m, "/1/config").await,
                "{m} allowed cross-origin (token {token:?})"
            );
        }
        // Reads stay open to dashboards, with the token in a header when there is one.
        let h = dashboard_preflight(&app, None).await;
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(!methods.contains("PUT"), "{methods}");
        proxy.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn without_a_token_an_unrestricted_api_refuses_writes() {
    // The common config: `restricted: false`, no `access-token`.
    let (_pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    assert!(!monitor.config().http.writable());
    let app = proxy_api::router(monitor.clone());
    let before = monitor.config();
    // Reads are served, the config too (masked).
    for path in ROUTES {
        let (s, _, _) = send(&app, Method::GET, path, &[], "").await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    // An anonymous PUT of a valid config that changes the pools: refused, nothing changes.
    let mut body = serde_json::to_value(&*before).unwrap();
    body["pools"][0]["url"] = "attacker.example:3333".into();
    body["custom-diff"] = 1.into();
    let json_ct = [("content-type", "application/json")];
    let (s, _, b) = send(&app, Method::PUT, "/1/config", &json_ct, &body.to_string()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["status"].clone(), v["error"].clone()),
        (json!(403), json!("FORBIDDEN"))
    );
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("http.access-token"), "{msg}");
    // Any other write too, on any path; and a bearer header without a configured token
    // changes nothing.
    for (m, path) in [
        (Method::POST, "/1/config"),
        (Method::DELETE, "/1/config"),
        (Method::PATCH, "/1/summary"),
    ] {
        let (s, _, _) = send(&app, m.clone(), path, &json_ct, "{}").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}");
    }
    let (s, _, _) = send(
        &app,
        Method::PUT,
        "/1/config",
        &[json_ct[0], ("authorization", "Bearer guess")],
        &body.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(*monitor.config(), *before);

    // A reload that sets a token opens writes, to its holder only.
    let mut c = (*before).clone();
    c.http.access_token = Some("tok".into());
    monitor.apply_config(c).unwrap();
    let (s, _, _) = send(&app, Method::PUT, "/1/config", &json_ct, &body.to_string()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(monitor.config().custom_diff, 0);
    body["pools"][0]["url"] = before.pools[0].url.clone().into();
    body["http"]["access-token"] = "tok".into();
    let (s, _, b) = send(
        &app,
        Method::PUT,
        "/1/config",
        &[json_ct[0], ("authorization", "Bearer tok")],
        &body.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(monitor.config().custom_diff, 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}
