//! `proxy-cli`: the stratum mining proxy binary.
//!
//! ```text
//! proxy-cli run --config config.json
//! proxy-cli -o pool.example:3333 -u WALLET -b 0.0.0.0:3333      (xmrig-proxy's options)
//! ```
//!
//! The command line is described in [`cli`]. Logs go to stderr (and `log-file`) through
//! `tracing` (`RUST_LOG=debug` for more), through non-blocking writers, one event per line
//! with control characters escaped ([`logging`]); colour only on a terminal, never with
//! `--no-color`, `"colors": false` or `NO_COLOR`. Every `print-time` seconds (60) a summary
//! line in xmrig-proxy's shape ([`summary`]).
//! SIGINT or SIGTERM stops the proxy cleanly: no new miners, shares in flight answered for up
//! to 5 seconds, then every connection closed.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use proxy_core::{Config, Proxy, ProxyHandle};
use tokio_util::sync::CancellationToken;

mod cli;
mod logging;
mod signal;
mod summary;

use cli::{Cli, Command, Overrides, Source};

/// How long in-flight shares may take to be answered at shutdown (RFC §5 `Stop`).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    // clap puts the global options given after `run`/`check` in the subcommand's matches.
    let sub = matches.subcommand().map_or(&matches, |(_, m)| m);
    let overrides = Overrides::from_matches(&cli.flags, sub)?;
    let source = cli::source(&cli.flags, &overrides)?;
    // The log settings of the config (xmrig-proxy's `colors`, `log-file`); a config that
    // does not load is reported below, after logging is up.
    let loaded = cli::load(&source, &overrides);
    let (colors, log_file) = match &loaded {
        Ok(c) => (c.colors, c.log_file.clone().filter(|f| !f.is_empty())),
        Err(_) => (!cli.flags.no_color, cli.flags.log_file.clone()),
    };
    let colors = colors && use_colour(std::io::stderr().is_terminal());
    // Held to the end of `main`: dropping it flushes the log writers.
    let logging = logging::init(colors, log_file.as_deref())?;
    let cfg = loaded?;
    let check_only = cli.command == Some(Command::Check) || cli.flags.dry_run || cfg.dry_run;
    if check_only {
        return check(&source, &cfg);
    }
    let workers = worker_threads();
    let mut runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    runtime
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(source, cfg, overrides, &logging))
}

/// Colour in the log only on a terminal and when `NO_COLOR` is unset or empty
/// (<https://no-color.org>); `--no-color` and `"colors": false` are applied by the caller.
fn use_colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `check` / `--dry-run`: validates, logs the warnings a start would log, prints a summary.
fn check(source: &Source, cfg: &Config) -> anyhow::Result<()> {
    cfg.validate()?;
    if let Some(warning) = cfg.ignored_warning() {
        tracing::warn!("{warning}");
    }
    if let Some(warning) = cfg.http.read_only_warning() {
        tracing::warn!("{warning}");
    }
    let name = match source {
        Source::File(p) => p.display().to_string(),
        Source::Flags => "command line".into(),
    };
    println!(
        "{name}: ok ({} bind, {} pools, mode {})",
        cfg.bind.len(),
        cfg.pools.len(),
        cfg.mode
    );
    Ok(())
}

/// The runtime's worker threads: `TOKIO_WORKER_THREADS` when set, else one. One worker is
/// the cheapest path for a share (it never changes thread), and with one the runtime is
/// tokio's current-thread scheduler (no idle-worker wake-ups: 37.5 against 39 ms of CPU per
/// 1,000 shares, docs/BENCHMARKS.md); job fan-outs still use every core through
/// proxy-core's fan-out threads. More workers help when many TLS handshakes
/// come at once (each is about a millisecond of CPU).
fn worker_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

async fn run(
    source: Source,
    cfg: Config,
    overrides: Overrides,
    logging: &logging::Logging,
) -> anyhow::Result<()> {
    // Each miner is one open file: take the whole hard limit (past it, new miners are
    // refused with "Proxy is full").
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!("open-file limit {n}"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let summary_every = cfg.print_time;
    let proxy: ProxyHandle = match source {
        Source::File(path) => {
            let overrides = Arc::new(overrides);
            Proxy::start_from_file_with(&path, Arc::new(move |c: &mut Config| overrides.apply(c)))
                .await?
        }
        Source::Flags => Proxy::start(cfg).await?,
    };
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
    let status = (summary_every > 0).then(|| {
        tokio::spawn(async move {
            let every = Duration::from_secs(summary_every);
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut last = summary::of_families(&monitor);
            loop {
                tick.tick().await;
                let now = summary::of_families(&monitor);
                for line in summary::lines(&last, &now) {
                    tracing::info!("{line}");
                }
                last = now;
                let (log, lines) = (log_drops.get(), monitor.log_lines_dropped());
                if log + lines > 0 {
                    tracing::warn!(
                        "log lines dropped so far (writers could not keep up): {log} of the proxy log, \
                         {lines} of the access and share logs"
                    );
                }
            }
        })
    });

    let sig = signal::shutdown().await;
    tracing::info!(
        "{sig} received; stopping (answering shares in flight for up to {SHUTDOWN_GRACE:?})"
    );
    if let Some(status) = status {
        status.abort();
    }
    stop.cancel();
    proxy.shutdown(SHUTDOWN_GRACE).await;
    if let Some(api) = api {
        let _ = api.await;
    }
    tracing::info!("stopped");
    Ok(())
}
