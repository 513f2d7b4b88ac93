//! The access log and the share log (RFC §15) written by a running proxy.

mod common;

use std::path::Path;
use std::time::Duration;

use proxy_core::{Config, Proxy};
use test_support::miner::{error_message, nicehash_nonce, result_for_difficulty, TestMiner};
use test_support::mock_pool::{make_job, MockPool};

fn config(pool: &MockPool, access: &Path, shares: &Path) -> Config {
    Config {
        access_log_file: Some(access.display().to_string()),
        share_log_file: Some(shares.display().to_string()),
        ..common::local_config(&[pool.addr()])
    }
}

/// Waits until `path` has `n` lines; returns them without their timestamps.
async fn lines(path: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                l.split_once(' ')
                    .map(|(_, rest)| rest.to_string())
                    .unwrap_or_default()
            })
            .collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never got {n} lines", path.display());
}

#[tokio::test]
async fn both_logs_get_their_lines() {
    let dir = std::env::temp_dir().join(format!("proxy-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (access, shares) = (dir.join("access.log"), dir.join("shares.log"));
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let proxy = Proxy::start(config(&pool, &access, &shares)).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.login("WALLET1").await.unwrap();
    let job = m.job.clone().unwrap();
    let nonce = nicehash_nonce(&job.blob, 0);
    let ok = m
        .submit(&job.job_id, &nonce, &result_for_difficulty(1000))
        .await
        .unwrap();
    assert_eq!(ok["result"]["status"], "OK");
    let low = m
        .submit(&job.job_id, &nonce, &"f".repeat(64))
        .await
        .unwrap();
    assert_eq!(error_message(&low), Some("Low difficulty share"));
    drop(m);

    let a = lines(&access, 2).await;
    assert_eq!(a[0], "CONNECT 127.0.0.1 WALLET1 test-miner/0.1");
    assert!(a[1].starts_with("CLOSE 127.0.0.1 WALLET1 rx="), "{}", a[1]);
    let tx: u64 = a[1].rsplit_once("tx=").unwrap().1.parse().unwrap();
    assert!(tx > 0);
    let s = lines(&shares, 2).await;
    assert!(
        s[0].starts_with("ACCEPT WALLET1 diff=1000 latency="),
        "{}",
        s[0]
    );
    assert!(s[0].ends_with("ms"));
    assert_eq!(s[1], "REJECT WALLET1 reason=\"Low difficulty share\"");
    proxy.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unwritable_log_does_not_stop_the_service() {
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let bad = Path::new("/nonexistent-dir/proxy/access.log");
    let proxy = Proxy::start(config(&pool, bad, bad)).await.unwrap();
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    m.login("WALLET1").await.unwrap();
    let job = m.job.clone().unwrap();
    let nonce = nicehash_nonce(&job.blob, 0);
    let ok = m
        .submit(&job.job_id, &nonce, &result_for_difficulty(1000))
        .await
        .unwrap();
    assert_eq!(ok["result"]["status"], "OK");
    proxy.shutdown(Duration::from_secs(1)).await;
}
