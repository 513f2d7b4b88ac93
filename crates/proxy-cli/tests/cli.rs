//! The real binary: `proxy-cli run --config`, serving a miner, and a clean stop on SIGTERM
//! that still answers the share in flight.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use test_support::miner::{nicehash_nonce, result_for_difficulty, TestMiner};
use test_support::mock_pool::{make_job, MockPool, Reply};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_a_config_file_and_stops_cleanly_on_sigterm() {
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    pool.set_reply(Reply::OkAfter(Duration::from_millis(700)));
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("proxy-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    // xmrig-proxy spellings on purpose: bind as a string, workers as a boolean.
    let cfg = json!({
        "mode": "nicehash",
        "bind": [format!("127.0.0.1:{port}")],
        "pools": [{"url": pool.addr().to_string(), "user": "PROXYWALLET", "pass": "x"}],
        "workers": true,
        "retries": 1, "retry-pause": 1,
        "user-agent": "farm-proxy/1.0",
        "log-file": dir.join("proxy.log"),
        "colors": false,
    });
    std::fs::write(&path, cfg.to_string()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_proxy-cli"))
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);

    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut miner = None;
    for _ in 0..100 {
        if let Ok(m) = TestMiner::connect(addr).await {
            miner = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut m = miner.expect("proxy listens");
    m.login("wallet").await.unwrap();
    let job = m.job.clone().unwrap();
    let nonce = nicehash_nonce(&job.blob, 0);
    let id = m
        .request(
            "submit",
            json!({"id": m.session, "job_id": job.job_id, "nonce": nonce, "result": result_for_difficulty(1000)}),
        )
        .await
        .unwrap();
    assert!(
        pool.wait_for(Duration::from_secs(5), |p| p.received("submit").len() == 1)
            .await
    );

    let pid = child.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let r = m.reply(id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        r["result"]["status"], "OK",
        "the share in flight was answered: {r}"
    );
    assert!(m.closed_within(Duration::from_secs(5)).await);
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.0.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exited.expect("exits after SIGTERM").success());
    assert_eq!(pool.received("login")[0].params["agent"], "farm-proxy/1.0");
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap();
    assert!(
        log.contains("listening for miners") && log.contains("SIGTERM received"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes in the log file");
    // The last line, logged just before exit, was flushed by the non-blocking writer's guard.
    assert!(
        log.lines().last().is_some_and(|l| l.ends_with(" stopped")),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_warns_that_an_api_without_a_token_serves_reads_only() {
    let dir = std::env::temp_dir().join(format!("proxy-cli-ro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("open.json");
    std::fs::write(
        &path,
        r#"{"bind":["127.0.0.1:3333"],"pools":[{"url":"p:1"}],"colors":false,
            "http":{"enabled":true,"host":"127.0.0.1","port":8080,"restricted":false}}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-cli"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "valid: it serves reads");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARN") && err.contains("`access-token`") && err.contains("reads only"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_a_bad_config_by_key() {
    let dir = std::env::temp_dir().join(format!("proxy-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(
        &path,
        r#"{"bind":["127.0.0.1:3333"],"pools":[{"url":"no-port"}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-cli"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pools[0].url") && err.contains("no-port"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_open_file_limit_new_miners_are_told_and_closed() {
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("proxy-cli-nofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    let cfg = json!({
        "bind": [format!("127.0.0.1:{port}")],
        "pools": [{"url": pool.addr().to_string(), "user": "W"}],
        "log-file": dir.join("proxy.log"),
        "colors": false,
    });
    std::fs::write(&path, cfg.to_string()).unwrap();
    // A hard limit of 32 open files for the proxy process only.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 32 && exec {} run --config {}",
            env!("CARGO_BIN_EXE_proxy-cli"),
            path.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Child(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "proxy listens");
    // Idle connections until the proxy runs out of descriptors.
    let mut held = Vec::new();
    let mut told = None;
    for _ in 0..80 {
        let mut m = TestMiner::connect(addr).await.unwrap();
        if let Ok(v) = m.recv(Duration::from_millis(150)).await {
            told = Some(v);
            assert!(
                m.closed_within(Duration::from_secs(2)).await,
                "closed after the error"
            );
            break;
        }
        held.push(m);
    }
    let v = told.unwrap_or_else(|| {
        panic!(
            "a miner past the limit is told; log:\n{}",
            std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default()
        )
    });
    assert_eq!(v["error"]["message"], "Proxy is full, try again later");
    assert!(
        held.len() > 5,
        "the first miners were served ({})",
        held.len()
    );
    // The log says why.
    let mut logged = false;
    for _ in 0..40 {
        let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
        if log.contains("open-file limit reached") {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged);
    let _ = std::fs::remove_dir_all(&dir);
}
