//! `soak`: the churn generator behind `cargo xtask soak`. It plays the pool and N miners that
//! keep leaving and coming back under new worker names against a running proxy (see
//! `test_support::loadgen::soak`), prints the proxy's RSS after the warm-up and after the
//! soak, and writes the figures as JSON.
//!
//! ```text
//! soak --proxy 127.0.0.1:3333 --pool-bind 127.0.0.1:4444 --proxy-pid 1234 --minutes 3
//! ```
//!
//! The proxy must have the `--pool-bind` address as its only pool. Exit status: 0 for a clean
//! run, 1 when the RSS grew past the limit or the report lists other problems, 2 when the run
//! could not start, 3 when the watchdog had to end it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use test_support::loadgen::cli::{self, CliRun, TargetArgs};
use test_support::loadgen::soak::{soak, SoakOptions};

#[derive(Parser)]
#[command(about = "Stratum proxy soak: miners churning in and out, RSS before and after")]
struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Where to listen as the proxy's pool.
    #[arg(long)]
    pool_bind: std::net::SocketAddr,
    /// The proxy's HTTP API address, for its worker record count.
    #[arg(long)]
    api: Option<std::net::SocketAddr>,
    /// Bearer token for the API.
    #[arg(long)]
    api_token: Option<String>,
    /// Minutes of soak after the warm-up.
    #[arg(long, default_value_t = 3)]
    minutes: u64,
    /// Seconds of warm-up.
    #[arg(long, default_value_t = SoakOptions::default().warmup.as_secs())]
    warmup_secs: u64,
    /// Miners connected at once.
    #[arg(long, default_value_t = SoakOptions::default().miners)]
    miners: usize,
    /// Miners per loopback source address (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value_t = SoakOptions::default().miners_per_ip)]
    miners_per_ip: usize,
    /// Shortest connection, seconds.
    #[arg(long, default_value_t = SoakOptions::default().min_lifetime.as_secs())]
    min_lifetime_secs: u64,
    /// Longest connection, seconds.
    #[arg(long, default_value_t = SoakOptions::default().max_lifetime.as_secs())]
    max_lifetime_secs: u64,
    /// Seconds between two shares of one miner.
    #[arg(long, default_value_t = SoakOptions::default().share_interval.as_secs())]
    share_interval_secs: u64,
    /// Seconds between two jobs.
    #[arg(long, default_value_t = SoakOptions::default().job_interval.as_secs())]
    job_interval_secs: u64,
    /// Largest RSS growth allowed, percent of the warm-up reading.
    #[arg(long, default_value_t = 10.0)]
    max_growth_percent: f64,
}

impl Args {
    fn options(&self) -> SoakOptions {
        let secs = Duration::from_secs;
        SoakOptions {
            proxy: self.target.proxy,
            proxy_pid: self.target.proxy_pid,
            api: self.api,
            api_token: self.api_token.clone(),
            miners: self.miners,
            miners_per_ip: self.miners_per_ip.max(1),
            min_lifetime: secs(self.min_lifetime_secs.max(1)),
            max_lifetime: secs(self.max_lifetime_secs.max(self.min_lifetime_secs).max(1)),
            share_interval: secs(self.share_interval_secs.max(1)),
            job_interval: secs(self.job_interval_secs.max(1)),
            warmup: secs(self.warmup_secs),
            soak: secs(self.minutes.saturating_mul(60)),
            max_growth: self.max_growth_percent / 100.0,
            ..SoakOptions::default()
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = args.options();
    let run = CliRun {
        name: "soak",
        miners: opts.miners,
        files_needed: (opts.miners + opts.miners / 256 + 64) as u64,
        deadline: opts.deadline(),
        worker_threads: 1,
        json: args.target.json.as_deref(),
    };
    cli::main(run, soak(opts, args.pool_bind))
}
