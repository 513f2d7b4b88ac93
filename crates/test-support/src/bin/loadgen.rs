//! `loadgen`: the load generator behind `cargo xtask bench`. It plays the pool and N miners
//! against a running proxy (see `test_support::loadgen` for the phases and what is measured),
//! prints a table and writes the figures as JSON.
//!
//! ```text
//! loadgen --proxy 127.0.0.1:3333 --pool-bind 127.0.0.1:4444 --proxy-pid 1234 --miners 10000
//! ```
//!
//! The proxy must have `127.0.0.1:4444` (the `--pool-bind` address) as its only pool. Exit
//! status: 0 for a clean run, 1 when the report lists problems, 2 when the run could not
//! start, 3 when the watchdog had to end it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use test_support::loadgen::cli::{self, CliRun, TargetArgs};
use test_support::loadgen::{run as run_generator, Mode, Options, Protocol, RigIds};

/// `500ms`, `2s`, or a bare number of milliseconds.
fn duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s, "ms"),
    };
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("{s:?}: use ms or s")),
    }
}

#[derive(Parser)]
#[command(about = "Stratum proxy load generator: a pool and N miners in one process")]
struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Where to listen as the proxy's pool.
    #[arg(long, default_value = "127.0.0.1:0")]
    pool_bind: std::net::SocketAddr,
    /// The proxy's tokio worker threads (reported only).
    #[arg(long)]
    proxy_workers: Option<usize>,
    /// This generator's tokio worker threads (the pool side and the logins).
    #[arg(long, default_value_t = Options::default().threads)]
    threads: usize,
    /// This generator's event-loop threads serving the logged-in miners.
    #[arg(long, default_value_t = Options::default().miner_threads)]
    miner_threads: usize,
    /// Miners to log in.
    #[arg(long, default_value_t = Options::default().miners)]
    miners: usize,
    /// Miners per loopback source address (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value_t = Options::default().miners_per_ip)]
    miners_per_ip: usize,
    /// Logins under way at once.
    #[arg(long, default_value_t = Options::default().connect_concurrency)]
    connect_concurrency: usize,
    /// Per-miner login timeout (connect + reply), e.g. 30s.
    #[arg(long, value_parser = duration, default_value = "30s")]
    login_timeout: Duration,
    /// Jobs pushed by the pool in the job phase.
    #[arg(long, default_value_t = Options::default().jobs)]
    jobs: usize,
    /// Time between two jobs, e.g. 2s or 500ms (a bare number is milliseconds).
    #[arg(long, value_parser = duration, default_value = "2s")]
    job_interval: Duration,
    /// Shares a second in the share phase.
    #[arg(long, default_value_t = Options::default().rate)]
    rate: u64,
    /// Seconds of shares.
    #[arg(long, default_value_t = Options::default().seconds)]
    seconds: u64,
    /// The pool's job difficulty.
    #[arg(long, default_value_t = Options::default().difficulty)]
    difficulty: u64,
    /// Rig ids sent at login: unique (one worker per miner), shared, or none.
    #[arg(long, default_value = "unique")]
    rig_ids: RigIds,
    /// The proxy's mode, as its config says: nicehash, or simple (one pool connection per
    /// miner, which the pool checks).
    #[arg(long, default_value = "nicehash")]
    mode: Mode,
    /// The proxy's stratum family, as its config's `protocol` says: cryptonote, or
    /// stratum-v1 (Bitcoin SV1 miners and pool; the pool's difficulty is 2^-32, which the
    /// proxy's `stratum-v1.min-difficulty` must not exceed).
    #[arg(long, default_value = "cryptonote")]
    protocol: Protocol,
    /// Stratum V1: no `mining.configure` (version rolling) before subscribing, for a proxy
    /// that does not know it.
    #[arg(long)]
    no_version_rolling: bool,
    /// Stratum V1: the pool's share difficulty (default 2^-32, which every share meets).
    /// Higher, the proxy answers the shares itself (after its sha256d check) and forwards
    /// none.
    #[arg(long)]
    sv1_pool_difficulty: Option<f64>,
    /// Pause before each RSS reading, e.g. 1s.
    #[arg(long, value_parser = duration, default_value = "1s")]
    settle: Duration,
    /// Stop the run by then, e.g. 300s (default: from the phases asked for).
    #[arg(long, value_parser = duration)]
    deadline: Option<Duration>,
}

impl Args {
    fn options(&self) -> Options {
        let mut o = Options {
            proxy: self.target.proxy,
            pool_bind: self.pool_bind,
            proxy_pid: self.target.proxy_pid,
            proxy_workers: self.proxy_workers,
            threads: self.threads.max(1),
            miner_threads: self.miner_threads.max(1),
            miners: self.miners,
            miners_per_ip: self.miners_per_ip.max(1),
            connect_concurrency: self.connect_concurrency.max(1),
            login_timeout: self.login_timeout,
            jobs: self.jobs,
            job_interval: self.job_interval,
            rate: self.rate,
            seconds: self.seconds,
            difficulty: self.difficulty.max(1),
            rig_ids: self.rig_ids,
            mode: self.mode,
            protocol: self.protocol,
            version_rolling: !self.no_version_rolling,
            sv1_pool_difficulty: self
                .sv1_pool_difficulty
                .filter(|d| d.is_finite() && *d > 0.0)
                .unwrap_or(test_support::loadgen::sv1::DIFFICULTY),
            settle: self.settle,
            ..Options::default()
        };
        o.deadline = self.deadline.unwrap_or_else(|| o.default_deadline());
        o
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = args.options();
    let run = CliRun {
        name: "loadgen",
        miners: opts.miners,
        files_needed: opts.files_needed(),
        deadline: opts.deadline,
        worker_threads: opts.threads,
        json: args.target.json.as_deref(),
    };
    cli::main(run, run_generator(opts))
}
