//! Inbound TLS end to end over loopback: TLS miners log in and mine through the proxy, the
//! certificate is generated or loaded from PEM files, `tls.protocols` is honoured, bad TLS
//! settings stop the start with an error naming the key, and xmrig-proxy's TLS detection on
//! plain ports with `tls.enabled`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use proxy_core::config::{BindAddr, PoolConfig, TlsConfig};
use proxy_core::{Config, Proxy, ProxyHandle};
use rustls::pki_types::CertificateDer;
use test_support::miner::{result_for_difficulty, tls_client_any_cert, tls_client_trusting};
use test_support::miner::{TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool};
use tokio::time::Instant;

const DIFF: u64 = 1000;

fn config(pool: &MockPool, tls_bind: bool, tls: TlsConfig) -> Config {
    Config {
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: tls_bind,
            protocol: None,
        }],
        pools: vec![PoolConfig {
            url: pool.addr().to_string(),
            user: "PROXYWALLET".into(),
            ..PoolConfig::default()
        }],
        tls,
        retries: 1,
        retry_pause: 1,
        ..Config::default()
    }
}

async fn start_tls(pool: &MockPool, tls: TlsConfig) -> (ProxyHandle, SocketAddr) {
    let proxy = Proxy::start(config(pool, true, tls)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    (proxy, addr)
}

/// The certificate the proxy presents, taken from a handshake that trusts anything.
async fn served_cert(addr: SocketAddr) -> CertificateDer<'static> {
    let m = TestMiner::connect_tls(addr, tls_client_any_cert(None), "localhost")
        .await
        .unwrap();
    m.peer_certificate.clone().expect("a TLS peer certificate")
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("proxy-core-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_tls_miner_logs_in_gets_a_job_and_its_share_reaches_the_pool() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start_tls(&pool, TlsConfig::default()).await;
    let cert = served_cert(addr).await;
    // A miner that verifies the (generated) certificate like any TLS client.
    let mut m = TestMiner::connect_tls(addr, tls_client_trusting(&[cert]), "localhost")
        .await
        .unwrap();
    let login = m.login("tls-wallet").await.unwrap();
    assert_eq!(login["result"]["status"], "OK");
    let job = m.job.clone().expect("login result carries the job");
    assert_eq!(job.job_id, make_job(1, DIFF).job_id);
    let nonce = m.nonce(0x00abcd);
    let reply = m
        .submit(&job.job_id, &nonce, &result_for_difficulty(DIFF * 2))
        .await
        .unwrap();
    assert_eq!(reply["result"]["status"], "OK", "{reply}");
    let submits = pool.received("submit");
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].params["nonce"], nonce);
    assert_eq!(submits[0].params["job_id"], job.job_id);
    // A job pushed by the pool reaches the TLS miner.
    pool.push_job(make_job(2, DIFF));
    assert_eq!(m.next_job(WAIT).await.unwrap().job_id, "job000002");
    assert_eq!(proxy.stats().accepted, 1);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn without_a_certificate_a_self_signed_one_for_localhost_and_the_bind_host_is_served() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start_tls(&pool, TlsConfig::default()).await;
    let cert = served_cert(addr).await;
    let trusting = tls_client_trusting(std::slice::from_ref(&cert));
    // Verification by name succeeds for localhost and the bind address (an IP SAN)...
    for name in ["localhost", "127.0.0.1"] {
        let mut m = TestMiner::connect_tls(addr, trusting.clone(), name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(m.peer_certificate.as_ref(), Some(&cert));
        m.login("w").await.unwrap();
    }
    // ...and fails for a name the certificate does not carry.
    let err = TestMiner::connect_tls(addr, trusting, "pool.example.com").await;
    assert!(err.is_err(), "a foreign name must not verify");
    // Each start generates a new certificate.
    let (proxy2, addr2) = start_tls(&pool, TlsConfig::default()).await;
    assert_ne!(served_cert(addr2).await, cert);
    proxy2.shutdown(Duration::from_secs(1)).await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_configured_pem_certificate_and_key_are_served() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["miners.example.net".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = TempDir::new("pem");
    let tls = TlsConfig {
        cert: Some(dir.write("cert.pem", &cert.pem())),
        cert_key: Some(dir.write("key.pem", &key.serialize_pem())),
        ..TlsConfig::default()
    };
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start_tls(&pool, tls).await;
    let expected = cert.der().clone();
    let mut m = TestMiner::connect_tls(
        addr,
        tls_client_trusting(std::slice::from_ref(&expected)),
        "miners.example.net",
    )
    .await
    .unwrap();
    assert_eq!(m.peer_certificate, Some(expected));
    m.login("w").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn tls_protocols_are_honoured() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let only = |v: &str| TlsConfig {
        protocols: Some(v.into()),
        ..TlsConfig::default()
    };
    let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    let (proxy, addr) = start_tls(&pool, only("TLSv1.3")).await;
    assert!(
        TestMiner::connect_tls(addr, tls_client_any_cert(Some(tls12)), "localhost")
            .await
            .is_err(),
        "a TLS 1.2-only client must be refused by a TLSv1.3 proxy"
    );
    let mut m = TestMiner::connect_tls(addr, tls_client_any_cert(Some(tls13)), "localhost")
        .await
        .unwrap();
    m.login("w").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;

    let (proxy, addr) = start_tls(&pool, only("TLSv1.2")).await;
    assert!(
        TestMiner::connect_tls(addr, tls_client_any_cert(Some(tls13)), "localhost")
            .await
            .is_err(),
        "a TLS 1.3-only client must be refused by a TLSv1.2 proxy"
    );
    let mut m = TestMiner::connect_tls(addr, tls_client_any_cert(Some(tls12)), "localhost")
        .await
        .unwrap();
    m.login("w").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_naming_the_key() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let dir = TempDir::new("bad");
    let not_pem = dir.write("junk.pem", "not a certificate\n");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let good_cert = dir.write("cert.pem", &cert.pem());
    let other_key = dir.write(
        "other-key.pem",
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let cases: Vec<(TlsConfig, &[&str])> = vec![
        (
            TlsConfig {
                protocols: Some("TLSv1.1".into()),
                ..TlsConfig::default()
            },
            &["tls.protocols", "TLSv1.1"],
        ),
        (
            TlsConfig {
                protocols: Some("TLSv1.2 SSLv3".into()),
                ..TlsConfig::default()
            },
            &["tls.protocols", "SSLv3"],
        ),
        (
            TlsConfig {
                protocols: Some("fastest".into()),
                ..TlsConfig::default()
            },
            &["tls.protocols", "fastest"],
        ),
        (
            TlsConfig {
                ciphers: Some("HIGH:!aNULL:!MD5".into()),
                ..TlsConfig::default()
            },
            &["tls.ciphers", "HIGH"],
        ),
        (
            TlsConfig {
                ciphers: Some("ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA".into()),
                ..TlsConfig::default()
            },
            &["tls.ciphers", "AES128-SHA"],
        ),
        (
            TlsConfig {
                cert: Some("/nonexistent/cert.pem".into()),
                cert_key: Some("/nonexistent/key.pem".into()),
                ..TlsConfig::default()
            },
            &[
                "tls.cert",
                "load certificate failed",
                "/nonexistent/cert.pem",
            ],
        ),
        (
            TlsConfig {
                cert: Some(not_pem.clone()),
                cert_key: Some(not_pem.clone()),
                ..TlsConfig::default()
            },
            &["tls.cert", "load certificate failed", "junk.pem"],
        ),
        (
            TlsConfig {
                cert: Some(good_cert.clone()),
                cert_key: Some(not_pem.clone()),
                ..TlsConfig::default()
            },
            &["tls.cert_key", "load certificate failed", "junk.pem"],
        ),
        (
            TlsConfig {
                cert: Some(good_cert.clone()),
                cert_key: Some(other_key),
                ..TlsConfig::default()
            },
            &["tls.cert_key", "load certificate failed"],
        ),
        (
            TlsConfig {
                cert: Some(good_cert),
                ..TlsConfig::default()
            },
            &["tls.cert_key", "missing"],
        ),
    ];
    for (tls, needles) in cases {
        let what = format!("{tls:?}");
        let err = match Proxy::start(config(&pool, true, tls)).await {
            Ok(p) => {
                p.shutdown(Duration::from_secs(1)).await;
                panic!("{what}: started");
            }
            Err(e) => e.to_string(),
        };
        for n in needles {
            assert!(err.contains(n), "{what}: {err:?} lacks {n:?}");
        }
    }
}

#[tokio::test]
async fn a_plain_miner_on_a_tls_port_is_closed_without_a_reply() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start_tls(&pool, TlsConfig::default()).await;
    let mut m = TestMiner::connect(addr).await.unwrap();
    m.request("login", serde_json::json!({"login": "w", "pass": "x"}))
        .await
        .unwrap();
    let t0 = Instant::now();
    let got = m.recv(WAIT).await;
    assert!(got.is_err(), "no JSON reply to plain text: {got:?}");
    assert!(t0.elapsed() < WAIT, "closed at once, not timed out");
    assert_eq!(proxy.stats().miners, 0);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn with_tls_enabled_a_plain_port_serves_both_plain_and_tls_miners() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let tls = TlsConfig {
        enabled: true,
        ..TlsConfig::default()
    };
    let proxy = Proxy::start(config(&pool, false, tls)).await.unwrap();
    let addr = proxy.local_addrs()[0];
    let mut plain = TestMiner::connect(addr).await.unwrap();
    plain.login("plain").await.unwrap();
    let mut tls = TestMiner::connect_tls(addr, tls_client_any_cert(None), "localhost")
        .await
        .unwrap();
    assert!(tls.peer_certificate.is_some());
    tls.login("tls").await.unwrap();
    assert_eq!(proxy.stats().miners, 2);
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_slow_handshake_does_not_hold_up_other_miners() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start_tls(&pool, TlsConfig::default()).await;
    // Connected, silent: its handshake waits in its own task.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut m = TestMiner::connect_tls(addr, tls_client_any_cert(None), "localhost")
        .await
        .unwrap();
    m.login("w").await.unwrap();
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_the_handshake_is_closed_at_the_login_timeout() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start_tls(&pool, TlsConfig::default()).await;
    let mut silent = TestMiner::connect(addr).await.unwrap();
    common::assert_closed_at_login_timeout(&mut silent).await;
    proxy.shutdown(Duration::from_secs(1)).await;
}

/// Sends `getjob` requests without reading the replies until the proxy drops the miner.
async fn flood_without_reading(proxy: &ProxyHandle, m: &mut TestMiner) {
    let session = m.session.clone().unwrap();
    let line = format!(
        "{{\"id\":9,\"jsonrpc\":\"2.0\",\"method\":\"getjob\",\"params\":{{\"id\":\"{session}\"}}}}\n"
    );
    let batch = line.repeat(1000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().miners > 0 {
        assert!(Instant::now() < deadline, "the miner was never dropped");
        if m.send_raw(batch.as_bytes()).await.is_err() {
            break; // closed by the proxy
        }
    }
    let t0 = Instant::now();
    while proxy.stats().miners > 0 {
        assert!(t0.elapsed() < WAIT, "the miner was never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_miner_that_does_not_read_is_dropped_when_its_outbox_overflows() {
    let pool = MockPool::start(make_job(1, DIFF)).await.unwrap();
    let (proxy, addr) = start_tls(&pool, TlsConfig::default()).await;
    let mut tls = TestMiner::connect_tls(addr, tls_client_any_cert(None), "localhost")
        .await
        .unwrap();
    tls.login("tls").await.unwrap();
    flood_without_reading(&proxy, &mut tls).await;
    assert!(tls.closed_within(WAIT).await);
    proxy.shutdown(Duration::from_secs(1)).await;

    // The same loop serves plain TCP.
    let proxy = Proxy::start(config(&pool, false, TlsConfig::default()))
        .await
        .unwrap();
    let mut plain = TestMiner::connect(proxy.local_addrs()[0]).await.unwrap();
    plain.login("plain").await.unwrap();
    flood_without_reading(&proxy, &mut plain).await;
    assert!(plain.closed_within(WAIT).await);
    proxy.shutdown(Duration::from_secs(1)).await;
}
