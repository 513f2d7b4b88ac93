//! `cargo xtask demo`: a real Monero node in regtest, the proxy binary in front of it in daemon
//! mode, and RandomX miners hashing through the proxy. Prints what happens, stops by itself.
//! `--protocol stratum-v1`: the same with Bitcoin: a real bcoin regtest node, the proxy's
//! Stratum V1 solo upstream, and SV1 CPU miners (sha256d, version rolling) through it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use test_support::bcoin::{Bcoin, REGTEST_P2WPKH};
use test_support::monerod::{Monerod, REGTEST_WALLET};
use test_support::rx_miner::{run_rx_miner, RxMinerConfig};
use test_support::sv1_miner::{run_sv1_miner, Sv1MinerConfig};

#[derive(Parser)]
#[command(about = "Monero regtest node + proxy + RandomX miners, on loopback")]
struct Args {
    /// The proxy-cli binary to run.
    #[arg(long)]
    proxy: PathBuf,
    /// How long to mine, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Simulated miners (one hashing thread each).
    #[arg(long, default_value_t = 2)]
    miners: usize,
    /// The node's fixed block difficulty (Monero).
    #[arg(long, default_value_t = 100)]
    difficulty: u64,
    /// `cryptonote` (monerod, RandomX) or `stratum-v1` (bcoin, sha256d).
    #[arg(long, default_value = "cryptonote")]
    protocol: String,
}

/// Starts the proxy binary on `config` (written to `dir`) and waits for its API.
async fn start_proxy(
    args: &Args,
    dir: &std::path::Path,
    config: &Value,
    client: &reqwest::Client,
    api: &str,
) -> anyhow::Result<ProxyProcess> {
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(config)?)?;
    let child = Command::new(&args.proxy)
        .args(["run", "--config"])
        .arg(&config_path)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .spawn()
        .context("starting the proxy")?;
    let proxy = ProxyProcess(child);
    let up = Instant::now();
    while summary(client, api).await.is_none() {
        if up.elapsed() > Duration::from_secs(10) {
            bail!("the proxy did not come up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(proxy)
}

/// bcoin regtest + the proxy's Stratum V1 solo upstream + SV1 CPU miners.
async fn sv1_demo(args: &Args) -> anyhow::Result<()> {
    println!("starting bcoin 1.0.2 regtest (installed with npm on first use) ...");
    let node = Bcoin::start().await?;
    let start_height = node.block_count().await?;
    println!("node up at {} (height {start_height})", node.rpc_url());
    let dir = std::env::temp_dir().join(format!("proxy-demo-sv1-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (port, api_port) = (free_port()?, free_port()?);
    let config = json!({
        "protocol": "stratum-v1",
        "mode": "nicehash",
        "bind": [{"host": "127.0.0.1", "port": port}],
        "pools": [{"url": node.host_port(), "user": REGTEST_P2WPKH, "pass": node.api_key(),
                   "daemon": true, "daemon-poll-interval": 500}],
        "stratum-v1": {"network": "regtest", "min-difficulty": 0.001, "share-interval": 5},
        "http": {"enabled": true, "host": "127.0.0.1", "port": api_port},
        "retries": 2, "retry-pause": 1
    });
    let api = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let proxy = start_proxy(args, &dir, &config, &client, &api).await?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    println!("proxy (stratum-v1, solo to bcoin) listening on {addr}, API on {api}/1/summary");
    let mut miners = Vec::new();
    for i in 0..args.miners {
        let cfg = Sv1MinerConfig {
            user: format!("{REGTEST_P2WPKH}.demo-rig-{i}"),
            max_shares: usize::MAX,
            max_hashes: u64::MAX,
            max_time: Duration::from_secs(args.seconds),
            ..Sv1MinerConfig::default()
        };
        miners.push(tokio::spawn(run_sv1_miner(addr, cfg)));
    }
    println!(
        "{} SV1 miners hashing sha256d for {} s (every share is also a regtest block); Ctrl-C stops early",
        args.miners, args.seconds
    );
    let up = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds + 6);
    let height = || async { node.block_count().await.unwrap_or(0) };
    let interrupted = watch(deadline, up, &client, &api, start_height, height).await;
    let (mut sent, mut answered) = (0, 0);
    for m in miners {
        if interrupted {
            m.abort();
        }
        if let Ok(Ok(r)) = m.await {
            sent += r.submits.len();
            answered += r.answered_once().len();
        }
    }
    let final_summary = summary(&client, &api).await.unwrap_or(Value::Null);
    drop(proxy);
    let height = node.block_count().await.unwrap_or(start_height);
    println!(
        "done: node height {start_height} -> {height} ({} blocks), proxy results {}",
        height.saturating_sub(start_height),
        final_summary["results"]
    );
    println!("miners sent {sent} shares, {answered} answered once");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Stops the proxy with SIGTERM (clean shutdown) and waits for it, when dropped.
struct ProxyProcess(Child);

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints the proxy's summary (from `api`) and the node's height (from `height`, blocks above
/// `start_height` in brackets) every 5 s, `up` giving the seconds shown, until `deadline` or
/// Ctrl-C; true when Ctrl-C stopped it.
async fn watch<F: std::future::Future<Output = u64>>(
    deadline: tokio::time::Instant,
    up: Instant,
    client: &reqwest::Client,
    api: &str,
    start_height: u64,
    height: impl Fn() -> F,
) -> bool {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return true,
            () = tokio::time::sleep_until(deadline) => return false,
            _ = tick.tick() => {
                let height = height().await;
                let s = summary(client, api).await.unwrap_or(Value::Null);
                println!(
                    "[{:>3}s] miners {} | shares accepted {} rejected {} invalid {} | blocks found {} | node height {} (+{})",
                    up.elapsed().as_secs(),
                    s["miners"]["now"], s["results"]["accepted"], s["results"]["rejected"],
                    s["results"]["invalid"], s["results"]["blocks"], height, height.saturating_sub(start_height),
                );
            }
        }
    }
}

async fn summary(client: &reqwest::Client, api: &str) -> Option<Value> {
    client
        .get(format!("{api}/1/summary"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.proxy.exists() {
        bail!("no proxy binary at {}", args.proxy.display());
    }
    match args.protocol.as_str() {
        "cryptonote" => {}
        "stratum-v1" => return sv1_demo(&args).await,
        other => bail!("--protocol {other:?}: cryptonote or stratum-v1"),
    }
    println!(
        "starting monerod --regtest --offline --fixed-difficulty {} ...",
        args.difficulty
    );
    let node = Monerod::start(args.difficulty).await?;
    let start_height = node.height().await?;
    println!("node up at {} (height {start_height})", node.rpc_url());

    let dir = std::env::temp_dir().join(format!("proxy-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (port, api_port) = (free_port()?, free_port()?);
    let config = json!({
        "mode": "nicehash",
        "bind": [{"host": "127.0.0.1", "port": port}],
        "pools": [{"url": node.host_port(), "user": REGTEST_WALLET, "daemon": true, "daemon-poll-interval": 500}],
        "http": {"enabled": true, "host": "127.0.0.1", "port": api_port},
        "retries": 2, "retry-pause": 1
    });
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
    let child = Command::new(&args.proxy)
        .args(["run", "--config"])
        .arg(&config_path)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .spawn()
        .context("starting the proxy")?;
    let proxy = ProxyProcess(child);
    let addr = format!("127.0.0.1:{port}").parse()?;
    let api = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let up = Instant::now();
    while summary(&client, &api).await.is_none() {
        if up.elapsed() > Duration::from_secs(10) {
            bail!("the proxy did not come up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("proxy listening on {addr}, API on {api}/1/summary");
    println!("point a real miner at it too: xmrig -o {addr} -u {REGTEST_WALLET} -p x --nicehash");

    let stop = tokio_util::sync::CancellationToken::new();
    let mut miners = Vec::new();
    for i in 0..args.miners {
        let mut cfg = RxMinerConfig::new(addr, REGTEST_WALLET);
        cfg.rig_id = Some(format!("demo-rig-{i}"));
        cfg.run_for = Duration::from_secs(args.seconds);
        cfg.stop = Some(stop.clone());
        miners.push(tokio::spawn(run_rx_miner(cfg)));
    }
    println!(
        "{} miners hashing RandomX (light mode) for {} s; Ctrl-C stops early",
        args.miners, args.seconds
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds + 3);
    let height = || async { node.height().await.unwrap_or(0) };
    let interrupted = watch(deadline, up, &client, &api, start_height, height).await;
    let mut sent = 0;
    let mut unanswered = 0;
    if interrupted {
        println!("interrupted; stopping");
        stop.cancel();
    }
    for m in miners {
        if let Ok(Ok(r)) = m.await {
            sent += r.shares_sent;
            unanswered += r.unanswered;
        }
    }
    let final_summary = summary(&client, &api).await.unwrap_or(Value::Null);
    drop(proxy);
    let height = node.height().await.unwrap_or(start_height);
    println!(
        "done: node height {start_height} -> {height} ({} blocks), proxy results {}",
        height.saturating_sub(start_height),
        final_summary["results"]
    );
    println!("miners sent {sent} shares, {unanswered} unanswered");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
