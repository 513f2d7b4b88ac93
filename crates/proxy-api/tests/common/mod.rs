//! Shared by the API tests: a real proxy in front of a mock pool, scripted miners, a
//! hand-driven clock, and requests through tower's `oneshot` (no HTTP socket).

#![allow(dead_code)] // Each test file uses its own part of this.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use proxy_core::config::{BindAddr, PoolConfig, Protocol};
use proxy_core::{Config, Monitor, Proxy, ProxyHandle};
use serde_json::{json, Value};
use test_support::miner::{fixed_byte, nicehash_nonce, result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool};
use test_support::sv1_pool::{para_job, Sv1Pool, Sv1PoolConfig};
use tower::ServiceExt;

/// Difficulty of the mock pool's job.
pub(crate) const JOB_DIFF: u64 = 1000;

/// A config for one proxy in front of `pool`: the API unrestricted unless a test says so.
pub(crate) fn config(pool: &MockPool) -> Config {
    let mut c = Config {
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: false,
            protocol: None,
        }],
        pools: vec![PoolConfig {
            url: pool.addr().to_string(),
            user: "W".into(),
            pass: "pool-secret".into(),
            ..PoolConfig::default()
        }],
        ..Config::default()
    };
    c.http.restricted = false;
    c
}

/// A mock pool with a job of [`JOB_DIFF`] and a proxy in front of it, configured by `tune`.
pub(crate) async fn start(tune: impl FnOnce(&mut Config)) -> (MockPool, ProxyHandle) {
    let pool = MockPool::start(make_job(1, JOB_DIFF)).await.unwrap();
    let mut c = config(&pool);
    tune(&mut c);
    let proxy = Proxy::start(c).await.unwrap();
    (pool, proxy)
}

/// A clock the test moves by hand.
#[derive(Clone)]
pub(crate) struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    /// Reads `offset` after the proxy's start.
    pub(crate) fn at(monitor: &Monitor, offset: Duration) -> Self {
        Self(Arc::new(Mutex::new(monitor.started() + offset)))
    }

    /// Moves it to `offset` after the proxy's start.
    pub(crate) fn set(&self, monitor: &Monitor, offset: Duration) {
        *self.0.lock().unwrap() = monitor.started() + offset;
    }

    /// As the API's clock.
    pub(crate) fn clock(&self) -> proxy_api::Clock {
        let t = self.0.clone();
        Arc::new(move || *t.lock().unwrap())
    }
}

/// The API of `proxy` with its clock at `offset` after the start.
pub(crate) fn app_at(proxy: &ProxyHandle, offset: Duration) -> (Router, ManualClock) {
    let m = proxy.monitor();
    let clock = ManualClock::at(&m, offset);
    (proxy_api::router_with_clock(m, clock.clock()), clock)
}

/// One request; returns the status, the headers and the body.
pub(crate) async fn send(
    app: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// `GET path` without a token; status and JSON body (Null when the body is not JSON).
pub(crate) async fn get_json(app: &Router, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = send(app, Method::GET, path, &[], "").await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

/// Logs a miner in with chosen fields and records its session and job.
pub(crate) async fn login_as(
    m: &mut TestMiner,
    user: &str,
    rigid: Option<&str>,
    pass: &str,
    agent: &str,
) {
    let mut params = json!({"login": user, "pass": pass, "agent": agent, "algo": ["rx/0"]});
    if let Some(r) = rigid {
        params["rigid"] = r.into();
    }
    let id = m.request("login", params).await.unwrap();
    let v = m.reply(id, WAIT).await.unwrap();
    assert!(v["error"].is_null(), "login refused: {v}");
    m.session = v["result"]["id"].as_str().map(String::from);
    m.job = Some(serde_json::from_value(v["result"]["job"].clone()).unwrap());
}

/// A connected, logged-in miner.
pub(crate) async fn miner(proxy: &ProxyHandle, user: &str, rigid: Option<&str>) -> TestMiner {
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    login_as(&mut m, user, rigid, "x", "test-miner/0.1").await;
    m
}

/// Submits a share whose hash meets `share_diff` (nonce `n` in the miner's slot) and returns
/// the reply.
pub(crate) async fn share(m: &mut TestMiner, n: u8, share_diff: u64) -> Value {
    let job = m.job.clone().unwrap();
    m.submit(
        &job.job_id,
        &nicehash_nonce(&job.blob, u32::from(n)),
        &result_for_difficulty(share_diff),
    )
    .await
    .unwrap()
}

/// Submits a share the pool accepts and checks the answer.
pub(crate) async fn accepted(m: &mut TestMiner, n: u8, share_diff: u64) {
    let r = share(m, n, share_diff).await;
    assert_eq!(r["result"]["status"], "OK", "{r}");
}

/// Submits a share the proxy refuses (its nonce is outside the miner's slot).
pub(crate) async fn invalid(m: &mut TestMiner) {
    let job = m.job.clone().unwrap();
    let other = format!("{:02x}", fixed_byte(&job.blob).wrapping_add(1));
    let r = m
        .submit(
            &job.job_id,
            &format!("000000{other}"),
            &result_for_difficulty(JOB_DIFF),
        )
        .await
        .unwrap();
    assert!(!r["error"].is_null(), "{r}");
}

/// Waits until `cond` holds for the monitor (events land right after the miner's answer).
pub(crate) async fn until(monitor: &Monitor, cond: impl Fn(&Monitor) -> bool) {
    for _ in 0..1000 {
        if cond(monitor) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

/// The scripted SV1 pool's share difficulty (its default): 2^-16, so each share counts
/// 2^32 · 2^-16 = 65,536 hashes.
pub(crate) const SV1_DIFF: f64 = 1.0 / 65536.0;
/// Shares the two-family tests' SV1 miner sends.
pub(crate) const SV1_SHARES: usize = 3;

/// The two pools and a proxy serving two families ([`two_family_config`]): a CryptoNote
/// bind (`local_addrs()[0]`, the top-level default family) and a Stratum V1 bind (`[1]`).
pub(crate) async fn start_two_families() -> (MockPool, Sv1Pool, ProxyHandle) {
    let cn_pool = MockPool::start(make_job(1, JOB_DIFF)).await.unwrap();
    // Mainnet's easiest target: no share of the miner is a block, so only difficulties
    // decide what is forwarded.
    let mut job = para_job();
    job.nbits = 0x1d00_ffff;
    let sv1_pool = Sv1Pool::start(Sv1PoolConfig {
        job,
        ..Sv1PoolConfig::default()
    })
    .await
    .unwrap();
    let proxy = Proxy::start(two_family_config(&cn_pool, &sv1_pool))
        .await
        .unwrap();
    (cn_pool, sv1_pool, proxy)
}

/// [`config`] for `cn_pool` plus a Stratum V1 bind (port 0) and `sv1_pool` as its pool
/// (user `SV1WALLET`), every SV1 share at [`SV1_DIFF`] forwarded.
pub(crate) fn two_family_config(cn_pool: &MockPool, sv1_pool: &Sv1Pool) -> Config {
    let mut c = config(cn_pool);
    c.bind.push(BindAddr {
        host: "127.0.0.1".into(),
        port: 0,
        tls: false,
        protocol: Some(Protocol::StratumV1),
    });
    c.pools.push(PoolConfig {
        url: sv1_pool.addr().to_string(),
        user: "SV1WALLET".into(),
        protocol: Some(Protocol::StratumV1),
        ..PoolConfig::default()
    });
    // Every SV1 share meets the pool's difficulty: all forwarded.
    c.stratum_v1.min_difficulty = SV1_DIFF;
    c
}

/// An SV1 connection to the proxy's second bind (`local_addrs()[1]`) that subscribes and
/// authorizes as `idle.rig`, then stays idle.
pub(crate) async fn idle_sv1_miner(proxy: &ProxyHandle) -> TestMiner {
    let mut m = TestMiner::connect(proxy.local_addrs()[1]).await.unwrap();
    let id = m
        .request("mining.subscribe", json!(["idle/1.0"]))
        .await
        .unwrap();
    let r = m.reply(id, WAIT).await.unwrap();
    assert!(r["error"].is_null(), "{r}");
    let id = m
        .request("mining.authorize", json!(["idle.rig", "x"]))
        .await
        .unwrap();
    let r = m.reply(id, WAIT).await.unwrap();
    assert_eq!(r["result"], json!(true), "{r}");
    m
}

/// On a [`start_two_families`] proxy: a CryptoNote miner (`CNWALLET`, rig `cn-rig`) with two
/// shares accepted, still connected, and the report of a real sha256d miner
/// (`bc1qminer.sv1-rig`) that sent [`SV1_SHARES`] shares to the SV1 bind and left.
pub(crate) async fn shares_of_both_families(
    proxy: &ProxyHandle,
) -> (TestMiner, test_support::sv1_miner::Sv1MinerReport) {
    let mut cn = miner(proxy, "CNWALLET", Some("cn-rig")).await;
    accepted(&mut cn, 0, JOB_DIFF).await;
    accepted(&mut cn, 1, JOB_DIFF).await;
    let report = test_support::sv1_miner::run_sv1_miner(
        proxy.local_addrs()[1],
        test_support::sv1_miner::Sv1MinerConfig {
            user: "bc1qminer.sv1-rig".into(),
            max_shares: SV1_SHARES,
            max_time: Duration::from_secs(60),
            ..test_support::sv1_miner::Sv1MinerConfig::default()
        },
    )
    .await
    .unwrap();
    (cn, report)
}
