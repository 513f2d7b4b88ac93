//! xmrig-proxy's pool keys: `socks5` (a fast-socks5 server started by the test on loopback
//! carries the session, the pool's host name is resolved by the SOCKS server, and a SOCKS
//! proxy that is not there fails the pool over) and a numeric `keepalive` (seconds).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fast_socks5::server::{run_tcp_proxy, DnsResolveHelper as _, Socks5ServerProtocol};
use fast_socks5::Socks5Command;
use pool_client::{FailoverOptions, PoolConfig, UpstreamState};
use test_support::mock_pool::{make_job, MockPool};
use tokio::net::TcpListener;

mod common;

use common::{bounded, first_share_goes_through, logged_in_to_first, plain_entry, Harness};

fn options() -> FailoverOptions {
    FailoverOptions {
        retries: 1,
        retry_pause: Duration::from_millis(200),
        reply_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        keepalive_interval: Duration::from_secs(60),
        agent: "test-proxy/1".into(),
    }
}

/// A SOCKS5 server on 127.0.0.1 (no authentication, `CONNECT` only) that records the target
/// of each request as the client sent it.
struct SocksServer {
    addr: std::net::SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl SocksServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (proto, cmd, target) = Socks5ServerProtocol::accept_no_auth(socket)
                        .await?
                        .read_command()
                        .await?;
                    seen.lock().unwrap().push(target.to_string());
                    let (proto, cmd, target) = (proto, cmd, target).resolve_dns().await?;
                    assert!(matches!(cmd, Socks5Command::TCPConnect));
                    run_tcp_proxy(proto, &target, Duration::from_secs(5), false).await?;
                    Ok::<_, fast_socks5::SocksError>(())
                });
            }
        });
        Self { addr, targets }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_pool_is_reached_through_the_socks5_proxy_named_by_its_host() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        let socks = SocksServer::start().await;
        // A host name, so the request names it and the SOCKS server resolves it.
        let url = format!("localhost:{}", pool.addr().port());
        let entry = PoolConfig {
            url: url.clone(),
            user: "WALLET".into(),
            socks5: Some(socks.addr.to_string()),
            ..PoolConfig::default()
        };
        let mut h = Harness::spawn(vec![entry], options());
        logged_in_to_first(&h, &pool).await;
        assert_eq!(socks.targets(), vec![url], "one CONNECT, by host name");
        // Shares and their answers travel through the proxy too.
        first_share_goes_through(&mut h, &pool, "job000001").await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_socks5_proxy_that_is_not_there_fails_over_to_the_next_pool() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        let backup = MockPool::start(make_job(7, 500)).await.unwrap();
        // A port that was free a moment ago: nothing listens there.
        let gone = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let h = Harness::spawn(
            vec![
                PoolConfig {
                    url: pool.addr().to_string(),
                    socks5: Some(gone.to_string()),
                    ..PoolConfig::default()
                },
                plain_entry(&backup),
            ],
            options(),
        );
        assert_eq!(h.recorder.job(0).await.0.job_id, "job000007");
        assert_eq!(h.recorder.state(UpstreamState::Active).await, Some(1));
        assert_eq!(pool.connections_total(), 0, "never reached directly");
        h.stop().await;
    })
    .await;
}

#[test]
fn socks5_takes_host_port_or_xmrigs_bare_port_and_keepalive_a_flag_or_seconds() {
    let p: PoolConfig = serde_json::from_str(
        r#"{"url":"p:1","socks5":"10.0.0.1:1080","keepalive":60,"sni":"pool.example"}"#,
    )
    .unwrap();
    assert_eq!(p.socks5.as_deref(), Some("10.0.0.1:1080"));
    assert!(p.keepalive.forced());
    assert_eq!(
        p.keepalive.interval(Duration::from_secs(1)),
        Duration::from_secs(60)
    );
    assert_eq!(p.sni, Some(pool_client::Sni::Name("pool.example".into())));
    let p: PoolConfig =
        serde_json::from_str(r#"{"url":"p:1","socks5":9050,"keepalive":true,"sni":false}"#)
            .unwrap();
    assert_eq!(p.socks5.as_deref(), Some("127.0.0.1:9050"));
    assert!(p.keepalive.forced());
    assert_eq!(
        p.keepalive.interval(Duration::from_secs(45)),
        Duration::from_secs(45)
    );
    assert_eq!(p.sni, Some(pool_client::Sni::Flag(false)));
    for off in [r#""keepalive":false"#, r#""keepalive":0"#] {
        let p: PoolConfig =
            serde_json::from_str(&format!(r#"{{"url":"p:1","socks5":null,{off}}}"#)).unwrap();
        assert!(!p.keepalive.forced(), "{off}");
        assert_eq!(p.socks5, None);
    }
    // Written back as read.
    let p: PoolConfig = serde_json::from_str(r#"{"url":"p:1","keepalive":60}"#).unwrap();
    assert_eq!(serde_json::to_value(&p).unwrap()["keepalive"], 60);
}

#[tokio::test]
async fn a_numeric_keepalive_is_the_interval_in_seconds() {
    bounded(async {
        let pool = MockPool::start(make_job(1, 500)).await.unwrap();
        let entry = PoolConfig {
            url: pool.addr().to_string(),
            keepalive: pool_client::Keepalive::Seconds(1),
            ..PoolConfig::default()
        };
        // The default interval is an hour: only the entry's 1 s can bring a keepalived soon.
        let opts = FailoverOptions {
            keepalive_interval: Duration::from_secs(3600),
            ..options()
        };
        let h = Harness::spawn(vec![entry], opts);
        h.recorder.job(0).await;
        assert!(
            pool.wait_for(Duration::from_secs(20), |p| p.received("keepalived").len()
                >= 2)
                .await,
            "keepalived every second"
        );
        h.stop().await;
    })
    .await;
}
