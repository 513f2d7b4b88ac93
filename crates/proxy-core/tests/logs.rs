//! The access log and the share log (RFC §15) written by a running proxy.

mod common;

use std::path::Path;
use std::time::Duration;

use proxy_core::{Config, Proxy};
use serde_json::json;
use test_support::miner::{error_message, nicehash_nonce, result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool, Reply};

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
    assert_eq!(a[0], "CONNECT 127.0.0.1 \"WALLET1\" \"test-miner/0.1\"");
    assert!(
        a[1].starts_with("CLOSE 127.0.0.1 \"WALLET1\" rx="),
        "{}",
        a[1]
    );
    let tx: u64 = a[1].rsplit_once("tx=").unwrap().1.parse().unwrap();
    assert!(tx > 0);
    let s = lines(&shares, 2).await;
    assert!(
        s[0].starts_with("ACCEPT \"WALLET1\" diff=1000 latency="),
        "{}",
        s[0]
    );
    assert!(s[0].ends_with("ms"));
    assert_eq!(s[1], "REJECT \"WALLET1\" reason=\"Low difficulty share\"");
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

/// What a miner sends to forge a log line of its own.
const FORGED: &str = "\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 FORGED";

/// Every line of `path`, after the proxy has shut down (which flushes the logs).
fn all_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines().map(String::from).collect()
}

/// A line as the proxy writes it: a timestamp first, no raw control character anywhere.
fn assert_one_clean_line(line: &str, event: &str) {
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && !time.starts_with("2001"),
        "{line:?}"
    );
    assert!(rest.starts_with(event), "{line:?}");
    assert!(!line.chars().any(char::is_control), "{line:?}");
}

#[tokio::test]
async fn miner_fields_cannot_forge_or_break_log_lines() {
    let dir = std::env::temp_dir().join(format!("proxy-logs-forge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (access, shares) = (dir.join("access.log"), dir.join("shares.log"));
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let proxy = Proxy::start(config(&pool, &access, &shares)).await.unwrap();

    let user = "W\"ALLET\u{1b}[31m\r\t\u{7f}";
    let agent = format!("XMRig/6.21.0{FORGED}");
    let mut m = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    let id = m
        .request(
            "login",
            json!({"login": user, "pass": "x", "agent": agent, "algo": ["rx/0"]}),
        )
        .await
        .unwrap();
    let v = m.reply(id, WAIT).await.unwrap();
    assert!(v["error"].is_null(), "login refused: {v}");
    m.session = v["result"]["id"].as_str().map(String::from);
    m.job = Some(serde_json::from_value(v["result"]["job"].clone()).unwrap());
    let job = m.job.clone().unwrap();
    let ok = m
        .submit(
            &job.job_id,
            &nicehash_nonce(&job.blob, 0),
            &result_for_difficulty(1000),
        )
        .await
        .unwrap();
    assert_eq!(ok["result"]["status"], "OK");
    // A pool whose reject reason echoes what it was sent, newline and all.
    pool.set_reply(Reply::Error(format!("Invalid share \"{FORGED}\"")));
    let bad = m
        .submit(
            &job.job_id,
            &nicehash_nonce(&job.blob, 1),
            &result_for_difficulty(1000),
        )
        .await
        .unwrap();
    assert!(error_message(&bad).is_some(), "{bad}");
    drop(m);
    // The CLOSE line is written when the proxy sees the miner go; shutdown flushes the logs.
    lines(&access, 2).await;
    proxy.shutdown(Duration::from_secs(1)).await;

    let q_user = r#""W\"ALLET\u{1b}[31m\r\t\u{7f}""#;
    let a = all_lines(&access);
    assert_eq!(a.len(), 2, "{a:#?}");
    assert_one_clean_line(&a[0], "CONNECT ");
    assert!(
        a[0].ends_with(&format!(
            r#" CONNECT 127.0.0.1 {q_user} "XMRig/6.21.0\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 FORGED""#
        )),
        "{}",
        a[0]
    );
    assert_one_clean_line(&a[1], "CLOSE ");
    assert!(
        a[1].contains(&format!(" CLOSE 127.0.0.1 {q_user} rx=")),
        "{}",
        a[1]
    );

    let s = all_lines(&shares);
    assert_eq!(s.len(), 2, "{s:#?}");
    assert_one_clean_line(&s[0], "ACCEPT ");
    assert!(
        s[0].contains(&format!(" ACCEPT {q_user} diff=1000 ")),
        "{}",
        s[0]
    );
    assert_one_clean_line(&s[1], "REJECT ");
    assert!(
        s[1].ends_with(&format!(
            r#" REJECT {q_user} reason="Invalid share \"\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 FORGED\"""#
        )),
        "{}",
        s[1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
