//! `proxy-cli`: the stratum mining proxy binary.
//!
//! ```text
//! proxy-cli run --config config.json
//! ```
//!
//! Logs go to stderr (and `log-file`) through `tracing` (`RUST_LOG=debug` for more), through
//! non-blocking writers, one event per line with control characters escaped ([`logging`]).
//! SIGINT or SIGTERM stops the proxy cleanly: no new miners, shares in flight answered for up
//! to 5 seconds, then every connection closed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proxy_core::{Config, Proxy};
use tokio_util::sync::CancellationToken;

mod logging;
mod signal;

/// How long in-flight shares may take to be answered at shutdown (RFC §5 `Stop`).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often a status line is logged.
const STATUS_EVERY: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    name = "proxy-cli",
    version,
    about = "Stratum mining proxy (CryptoNote, NiceHash splitting)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Path of the JSON config file (go-proxy RFC §4 keys; xmrig-proxy files load too).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file and exit.
    Check {
        /// Path of the JSON config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The log settings of the config (xmrig-proxy's `colors`, `log-file`); a config that
    // does not load is reported below, after logging is up.
    let path = match &cli.command {
        Command::Run { config } | Command::Check { config } => config,
    };
    let (colors, log_file) = Config::load(path)
        .map(|c| (c.colors, c.log_file.filter(|f| !f.is_empty())))
        .unwrap_or((true, None));
    // Held to the end of `main`: dropping it flushes the log writers.
    let logging = logging::init(colors, log_file.as_deref())?;
    match cli.command {
        Command::Check { config } => {
            let cfg = Config::load(&config)?;
            if let Some(warning) = cfg.http.read_only_warning() {
                tracing::warn!("{warning}");
            }
            println!(
                "{}: ok ({} bind, {} pools, mode {})",
                config.display(),
                cfg.bind.len(),
                cfg.pools.len(),
                cfg.mode
            );
            Ok(())
        }
        Command::Run { config } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .enable_all()
            .build()
            .context("starting the runtime")?
            .block_on(run(config, &logging)),
    }
}

/// The runtime's worker threads: `TOKIO_WORKER_THREADS` when set, else one. One worker is
/// the cheapest path for a share (it never changes thread); job fan-outs still use every
/// core through proxy-core's fan-out threads. More workers help when many TLS handshakes
/// come at once (each is about a millisecond of CPU).
fn worker_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

async fn run(path: PathBuf, logging: &logging::Logging) -> anyhow::Result<()> {
    // Each miner is one open file: take the whole hard limit (past it, new miners are
    // refused with "Proxy is full").
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!("open-file limit {n}"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let proxy = Proxy::start_from_file(&path).await?;
    let http = proxy.monitor().config().http.clone();
    let stop = CancellationToken::new();
    let api = if http.enabled {
        let addr = format!("{}:{}", http.host, http.port)
            .parse()
            .with_context(|| format!("http.host {:?} is not an IP address", http.host))?;
        let monitor = proxy.monitor();
        let stopped = stop.clone();
        Some(tokio::spawn(async move {
            let r = proxy_api::serve(
                addr,
                monitor,
                async move { stopped.cancelled().await },
                |bound| tracing::info!(addr = %bound, "HTTP API listening"),
            )
            .await;
            if let Err(e) = r {
                tracing::error!(%addr, "HTTP API failed: {e}");
            }
        }))
    } else {
        None
    };

    let monitor = proxy.monitor();
    let log_drops = logging.dropped();
    let status = tokio::spawn(async move {
        let mut tick = tokio::time::interval(STATUS_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let s = monitor.stats();
            let u = monitor.upstreams();
            tracing::info!(
                "miners {} (max {}), upstreams {} active / {} total, shares {} accepted / {} rejected / {} invalid, blocks {}",
                s.miners, s.max_miners, u.active, u.total, s.accepted, s.rejected, s.invalid, monitor.blocks()
            );
            let (log, lines) = (log_drops.get(), monitor.log_lines_dropped());
            if log + lines > 0 {
                tracing::warn!(
                    "log lines dropped so far (writers could not keep up): {log} of the proxy log, \
                     {lines} of the access and share logs"
                );
            }
        }
    });

    let sig = signal::shutdown().await;
    tracing::info!(
        "{sig} received; stopping (answering shares in flight for up to {SHUTDOWN_GRACE:?})"
    );
    status.abort();
    stop.cancel();
    proxy.shutdown(SHUTDOWN_GRACE).await;
    if let Some(api) = api {
        let _ = api.await;
    }
    tracing::info!("stopped");
    Ok(())
}
