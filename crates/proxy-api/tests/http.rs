//! The API served over a real loopback socket (`proxy_api::serve`), as an outside client and
//! a browser see it: no anonymous config change, no cross-origin write.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use tokio::sync::oneshot;

#[tokio::test]
async fn over_http_an_api_without_a_token_refuses_writes_and_cross_origin_puts() {
    // The common config: `restricted: false`, no `access-token`.
    let (_pool, proxy) = start(|_| {}).await;
    let monitor = proxy.monitor();
    let before = monitor.config();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (bound_tx, bound_rx) = oneshot::channel();
    let server = tokio::spawn(proxy_api::serve(
        "127.0.0.1:0".parse().unwrap(),
        monitor.clone(),
        async move {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = bound_tx.send(addr);
        },
    ));
    let addr = tokio::time::timeout(Duration::from_secs(5), bound_rx)
        .await
        .unwrap()
        .unwrap();
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let r = client
        .get(format!("{base}/1/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let mut body = serde_json::to_value(&*before).unwrap();
    body["pools"][0]["url"] = "attacker.example:3333".into();
    let r = client
        .put(format!("{base}/1/config"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let text = r.text().await.unwrap();
    assert!(text.contains("http.access-token"), "{text}");
    assert_eq!(*monitor.config(), *before);

    // A web page's preflight for the same PUT: nothing in the answer allows it.
    let r = client
        .request(Method::OPTIONS, format!("{base}/1/config"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    let methods: Vec<String> = r
        .headers()
        .get_all("access-control-allow-methods")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_uppercase())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        !methods.iter().any(|m| m == "PUT" || m == "*"),
        "{methods:?}"
    );
    assert!(methods.iter().any(|m| m == "GET"), "{methods:?}");

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}
