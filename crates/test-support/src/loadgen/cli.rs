//! What the `loadgen` and `soak` binaries share: logging to stderr, the open-file limit, a
//! watchdog, the runtime, printing the report and writing it as JSON, and the exit status.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

/// The arguments both binaries take: which proxy, its pid, where the JSON report goes
/// (`#[command(flatten)]` into each binary's own arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The proxy's miner address.
    #[arg(long)]
    pub proxy: std::net::SocketAddr,
    /// The proxy's pid, for its RSS (and CPU time) from /proc.
    #[arg(long)]
    pub proxy_pid: Option<u32>,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// A generator's report as the binaries print it.
pub trait CliReport: Serialize {
    /// A short human-readable summary, printed to stdout.
    fn table(&self) -> String;
    /// No problem found: exit status 0 (else 1).
    fn is_clean(&self) -> bool;
}

impl CliReport for super::Report {
    fn table(&self) -> String {
        super::Report::table(self)
    }
    fn is_clean(&self) -> bool {
        super::Report::is_clean(self)
    }
}

impl CliReport for super::soak::SoakReport {
    fn table(&self) -> String {
        super::soak::SoakReport::table(self)
    }
    fn is_clean(&self) -> bool {
        super::soak::SoakReport::is_clean(self)
    }
}

/// How a binary runs its generator.
#[derive(Debug, Clone)]
pub struct CliRun<'a> {
    /// The binary's name, for messages.
    pub name: &'static str,
    /// Miners the run connects (for the open-file message).
    pub miners: usize,
    /// Open files the run needs; the soft limit is raised to the hard one and must reach it.
    pub files_needed: u64,
    /// The run's own deadline; the watchdog ends the process (status 3) 30 s after it.
    pub deadline: Duration,
    /// Tokio worker threads.
    pub worker_threads: usize,
    /// Where to write the JSON report (`-`: stdout; `None`: nowhere).
    pub json: Option<&'a Path>,
}

/// Sets up `tracing` to stderr (`RUST_LOG`, default `warn`), then [`CliRun::run`]s `generator`
/// and maps the outcome to the exit status: 0 for a clean report, 1 for a report with
/// problems, 2 (with the error on stderr) when the run could not start.
pub fn main<R, F>(run: CliRun<'_>, generator: F) -> ExitCode
where
    R: CliReport,
    F: Future<Output = anyhow::Result<R>>,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let name = run.name;
    match run.run(generator) {
        Ok(report) if report.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::from(2)
        }
    }
}

impl CliRun<'_> {
    /// Raises the open-file limit, starts the watchdog, runs `generator` on a runtime of
    /// [`CliRun::worker_threads`] workers, prints the report's table and writes its JSON.
    ///
    /// # Errors
    /// The limit cannot reach [`CliRun::files_needed`], the runtime does not start, the
    /// generator fails, or the JSON file cannot be written.
    pub fn run<R, F>(&self, generator: F) -> anyhow::Result<R>
    where
        R: CliReport,
        F: Future<Output = anyhow::Result<R>>,
    {
        // One socket per miner, one per pool connection: the soft limit must hold them all.
        let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
        if limit < self.files_needed {
            anyhow::bail!(
                "{} miners need about {} open files; the limit is {limit} (hard limit reached)",
                self.miners,
                self.files_needed
            );
        }
        // Should the runtime itself hang, end the process anyway.
        let watchdog = self.deadline + Duration::from_secs(30);
        let name = self.name;
        std::thread::spawn(move || {
            std::thread::sleep(watchdog);
            eprintln!("{name}: watchdog: still running {watchdog:?} after start; exiting");
            std::process::exit(3);
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.worker_threads)
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let report = runtime.block_on(generator);
        runtime.shutdown_timeout(Duration::from_secs(2));
        let report = report?;
        println!("{}", report.table());
        let json = serde_json::to_string_pretty(&report)?;
        match self.json {
            Some(p) if p.as_os_str() == "-" => println!("{json}"),
            Some(p) => {
                std::fs::write(p, json + "\n")
                    .with_context(|| format!("writing {}", p.display()))?;
                println!("JSON report: {}", p.display());
            }
            None => {}
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize)]
    struct Fake {
        shares: u64,
    }

    impl CliReport for Fake {
        fn table(&self) -> String {
            format!("{} shares", self.shares)
        }
        fn is_clean(&self) -> bool {
            true
        }
    }

    fn cli_run(json: Option<&Path>, files_needed: u64) -> CliRun<'_> {
        CliRun {
            name: "test",
            miners: 2,
            files_needed,
            // The watchdog sleeps past the end of the test process.
            deadline: Duration::from_secs(3600),
            worker_threads: 1,
            json,
        }
    }

    #[test]
    fn the_report_is_returned_and_written_as_json() {
        let path = std::env::temp_dir().join(format!("cli-report-{}.json", std::process::id()));
        let report = cli_run(Some(&path), 1)
            .run(async { Ok(Fake { shares: 7 }) })
            .unwrap();
        assert_eq!(report.shares, 7);
        let written = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(written, "{\n  \"shares\": 7\n}\n");
    }

    #[test]
    fn too_few_open_files_and_a_failed_run_are_errors() {
        let err = cli_run(None, u64::MAX)
            .run(async { Ok(Fake { shares: 0 }) })
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("2 miners need about 18446744073709551615 open files"),
            "{err:#}"
        );
        let err = cli_run(None, 1)
            .run(async { Err::<Fake, _>(anyhow::anyhow!("no proxy")) })
            .unwrap_err();
        assert_eq!(err.to_string(), "no proxy");
    }
}

#[cfg(test)]
mod target_args_tests {
    use clap::Parser;

    use super::TargetArgs;

    #[derive(Parser)]
    struct Bin {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, default_value_t = 1)]
        miners: usize,
    }

    #[test]
    fn the_shared_flags_parse_beside_a_binary_s_own() {
        let bin = Bin::try_parse_from([
            "bin",
            "--proxy",
            "127.0.0.1:3333",
            "--proxy-pid",
            "42",
            "--json",
            "-",
            "--miners",
            "5",
        ])
        .unwrap();
        assert_eq!(bin.target.proxy, "127.0.0.1:3333".parse().unwrap());
        assert_eq!(bin.target.proxy_pid, Some(42));
        assert_eq!(bin.target.json.as_deref(), Some(std::path::Path::new("-")));
        assert_eq!(bin.miners, 5);
        assert!(
            Bin::try_parse_from(["bin", "--miners", "5"]).is_err(),
            "--proxy is required"
        );
    }
}
