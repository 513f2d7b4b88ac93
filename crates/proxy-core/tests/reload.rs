//! Live config reload (RFC §18) through the watched file: the pool changes under running
//! miners without disconnecting them, an invalid edit changes nothing, and keys that need a
//! restart keep their running values.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use proxy_core::{Proxy, ProxyHandle, WATCH_INTERVAL};
use serde_json::{json, Value};
use test_support::miner::{error_message, nicehash_nonce, result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool, Reply};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("proxy-reload-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

fn write(path: &Path, v: &Value) {
    // Write-then-rename, as editors do, so the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, v.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn base(pool: &MockPool) -> Value {
    json!({
        "bind": ["127.0.0.1:0"],
        "pools": [{"url": pool.addr().to_string(), "user": "W"}],
        "watch": true,
        "retries": 1,
        "retry-pause": 1,
    })
}

async fn start(path: &Path) -> (ProxyHandle, TestMiner) {
    let proxy = Proxy::start_from_file(path).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.login("WALLET").await.unwrap();
    (proxy, m)
}

#[tokio::test]
async fn editing_the_pool_moves_running_miners_without_disconnecting_them() {
    let dir = temp_dir("pool");
    let path = dir.0.join("config.json");
    let a = MockPool::start(make_job(1, 1000)).await.unwrap();
    let b = MockPool::start(make_job(500, 1000)).await.unwrap();
    let mut cfg = base(&a);
    write(&path, &cfg);
    let (proxy, mut m) = start(&path).await;
    assert_eq!(m.job.as_ref().unwrap().job_id, "job000001");

    cfg["pools"][0]["url"] = json!(b.addr().to_string());
    write(&path, &cfg);
    let job = m.next_job(WAIT + WATCH_INTERVAL).await.unwrap();
    assert_eq!(
        job.job_id, "job000500",
        "the new pool's job on the same connection"
    );
    assert!(a.wait_for(WAIT, |p| p.connections_open() == 0).await);
    let nonce = nicehash_nonce(&job.blob, 0);
    let r = m
        .submit(&job.job_id, &nonce, &result_for_difficulty(1000))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    assert_eq!(b.received("submit").len(), 1);
    assert_eq!(proxy.stats().connections, 1, "the miner never reconnected");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_invalid_edit_changes_nothing() {
    let dir = temp_dir("invalid");
    let path = dir.0.join("config.json");
    let a = MockPool::start(make_job(1, 1000)).await.unwrap();
    let mut cfg = base(&a);
    write(&path, &cfg);
    let (proxy, mut m) = start(&path).await;
    let before = proxy.monitor().config();

    std::fs::write(&path, "{ this is not json").unwrap();
    tokio::time::sleep(WATCH_INTERVAL * 2).await;
    cfg["pools"] = json!([{"url": "no-port-here"}]);
    write(&path, &cfg);
    tokio::time::sleep(WATCH_INTERVAL * 2).await;
    assert_eq!(proxy.monitor().config(), before, "running config unchanged");
    assert_eq!(a.connections_total(), 1, "no reconnect");
    let job = m.job.clone().unwrap();
    let nonce = nicehash_nonce(&job.blob, 0);
    let r = m
        .submit(&job.job_id, &nonce, &result_for_difficulty(1000))
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn password_changes_live_and_bind_changes_wait_for_a_restart() {
    let dir = temp_dir("live");
    let path = dir.0.join("config.json");
    let a = MockPool::start(make_job(1, 1000)).await.unwrap();
    let mut cfg = base(&a);
    write(&path, &cfg);
    let (proxy, _m) = start(&path).await;
    let addr = proxy.local_addrs()[0];

    cfg["access-password"] = json!("s3cret");
    cfg["bind"] = json!(["127.0.0.1:1"]);
    write(&path, &cfg);
    let mut waited = Duration::ZERO;
    while proxy.monitor().config().access_password.is_none() {
        assert!(waited < WAIT, "reload never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert_eq!(
        proxy.monitor().config().bind[0].port,
        0,
        "bind kept until restart"
    );
    let mut late = TestMiner::connect(addr).await.unwrap();
    let id = late
        .request("login", json!({"login": "W", "pass": "x"}))
        .await
        .unwrap();
    assert_eq!(
        error_message(&late.reply(id, WAIT).await.unwrap()),
        Some("Invalid password")
    );
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shares_in_flight_on_the_old_pool_at_a_reload_get_the_old_pools_answer() {
    let a = MockPool::start(make_job(1, 1000)).await.unwrap();
    let b = MockPool::start(make_job(500, 1000)).await.unwrap();
    let config = common::local_config(&[a.addr()]);
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.login("WALLET").await.unwrap();
    let job = m.job.clone().unwrap();
    let session = m.session.clone().unwrap();
    // The old pool answers after a while: the shares are in flight during the reload.
    a.set_reply(Reply::OkAfter(Duration::from_millis(700)));
    let mut ids = Vec::new();
    for n in 0..3 {
        let params = json!({"id": session, "job_id": job.job_id,
            "nonce": nicehash_nonce(&job.blob, n), "result": result_for_difficulty(1000)});
        ids.push(m.request("submit", params).await.unwrap());
    }
    assert!(a.wait_for(WAIT, |p| p.received("submit").len() == 3).await);
    let mut new = config.clone();
    new.pools = common::local_config(&[b.addr()]).pools;
    assert!(proxy.reload(new).unwrap().changed);
    for id in ids {
        let r = m.reply(id, WAIT).await.unwrap();
        assert_eq!(r["result"]["status"], "OK", "the old pool's answer: {r}");
    }
    // The new pool's job (it may have come while the old pool's answers were awaited).
    while m.job.as_ref().unwrap().job_id != "job000500" {
        m.next_job(WAIT).await.unwrap();
    }
    let job = m.job.clone().unwrap();
    assert!(a.wait_for(WAIT, |p| p.connections_open() == 0).await);
    assert!(
        b.received("submit").is_empty(),
        "nothing replayed to the new pool"
    );
    let r = m
        .submit(
            &job.job_id,
            &nicehash_nonce(&job.blob, 9),
            &result_for_difficulty(1000),
        )
        .await
        .unwrap();
    assert_eq!(r["result"]["status"], "OK");
    assert_eq!(b.received("submit").len(), 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_commented_file_reloads_and_command_line_overrides_survive_the_reload() {
    let dir = temp_dir("overrides");
    let path = dir.0.join("config.json");
    let a = MockPool::start(make_job(1, 1000)).await.unwrap();
    let b = MockPool::start(make_job(500, 1000)).await.unwrap();
    let file = |pool: &MockPool, pass: &str| {
        format!(
            "// edited by hand\n{{\n  \"bind\": [\"127.0.0.1:0\"],\n  \"pools\": [{{\"url\": \"{}\", \"user\": \"FILE\",}},],\n  \"watch\": true, /* reload */\n  \"access-password\": \"{pass}\",\n}}\n",
            pool.addr()
        )
    };
    std::fs::write(&path, file(&a, "one")).unwrap();
    // What `proxy-cli -c config.json -u FLAG` does: the pools' user comes from the flag.
    let proxy = Proxy::start_from_file_with(
        &path,
        std::sync::Arc::new(|c: &mut proxy_core::Config| {
            for p in &mut c.pools {
                p.user = "FLAG".into();
            }
        }),
    )
    .await
    .unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.request("login", json!({"login": "w", "pass": "one", "agent": "t"}))
        .await
        .unwrap();
    assert!(a.wait_for(WAIT, |p| !p.received("login").is_empty()).await);
    assert_eq!(a.received("login")[0].params["login"], "FLAG");

    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, file(&b, "two")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        b.wait_for(WAIT + WATCH_INTERVAL, |p| !p.received("login").is_empty())
            .await,
        "the edited, commented file was reloaded"
    );
    assert_eq!(
        b.received("login")[0].params["login"],
        "FLAG",
        "override kept"
    );
    let running = proxy.monitor().config();
    assert_eq!(running.access_password(), Some("two"));
    assert_eq!(running.pools[0].user, "FLAG");
    proxy.shutdown(Duration::from_secs(1)).await;
}
