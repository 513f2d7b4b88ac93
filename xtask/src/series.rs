//! `cargo xtask bench --against PATH --rounds N [--pin]`: alternating runs of a peer proxy
//! (xmrig-proxy built by hand, or any binary that reads an xmrig-proxy JSON config with
//! `-c FILE`) and ours under the same `loadgen` flags, and the medians of the rounds (issue 11,
//! item 5: "report the tail as a median of alternating rounds").
//!
//! A round is the peer's run, then ours. Both proxies are started exactly the same way
//! ([`crate::start_proxy`]: `sh -c 'ulimit -n N; exec PROGRAM -c CONFIG'`, the same
//! environment, stdout and stderr to a log file in the bench directory, [`Series::settle`]
//! before the generator starts), each run with a fresh pair of loopback ports; `--pin` puts
//! the proxy on CPU 1 and the generator on CPU 0 (`taskset -c`) for both alike.
//!
//! The report ([`Summary`], [`markdown`], [`series_json`]): per figure, each round's value for
//! both, the medians over the clean runs, and ours / peer of the medians. A run that is not
//! clean (loadgen exit 1: its report lists problems; or no report at all) is shown and left
//! out of the medians.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// The figures of a series: `(path in loadgen's JSON report, name in the table)`. The paths
/// are fields of `test_support::loadgen::Report` (`setup`, `login`, `memory`, `fanout`,
/// `shares`); each is a number or `null`.
pub(crate) const FIGURES: &[(&str, &str)] = &[
    (
        "shares.proxy_cpu_ms_per_1000",
        "proxy CPU per 1,000 shares (ms)",
    ),
    (
        "shares.proxy_cpu_ms_per_1000_less_idle",
        "proxy CPU per 1,000 shares less idle (ms)",
    ),
    (
        "login.proxy_cpu_ms_per_1000",
        "proxy CPU per 1,000 logins (ms)",
    ),
    (
        "memory.rss_per_miner_bytes",
        "RSS per logged-in idle miner (B)",
    ),
    (
        "memory.anon_per_miner_bytes",
        "of it anonymous (RssAnon, B)",
    ),
    (
        "memory.rss_per_miner_after_shares_bytes",
        "RSS per miner after shares (B)",
    ),
    ("fanout.p50_ms", "job fan-out p50 (ms)"),
    ("fanout.p99_ms", "job fan-out p99 (ms)"),
    ("shares.rtt_p50_ms", "submit round trip p50 (ms)"),
    ("shares.rtt_p99_ms", "submit round trip p99 (ms)"),
    (
        "fanout.proxy_cpu_ms_per_job_per_1000",
        "proxy CPU per job per 1,000 miners (ms)",
    ),
];

/// The wait between a proxy's start and the generator's, the same for every run of a series
/// (the by-hand series slept 1 s after starting xmrig-proxy; the generator then waits for
/// the proxy to accept a connection and settles another second before its first reading).
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// Which proxy a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The binary of `--against`.
    Peer,
    /// Our `proxy-cli`.
    Ours,
}

impl Side {
    /// The name used in file names and the JSON report.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Peer => "peer",
            Side::Ours => "ours",
        }
    }
}

/// What a series runs, and where.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Rounds (each: the peer's run, then ours; ours alone without a peer).
    pub(crate) rounds: usize,
    /// The proxies' `mode`: `nicehash` or `simple`.
    pub(crate) mode: String,
    /// Our `proxy-cli`.
    pub(crate) proxy_cli: PathBuf,
    /// The load generator.
    pub(crate) loadgen: PathBuf,
    /// The peer proxy: reads an xmrig-proxy JSON config with `-c FILE`.
    pub(crate) peer: Option<PathBuf>,
    /// Proxy on CPU 1, generator on CPU 0 (`taskset -c`).
    pub(crate) pin: bool,
    /// The proxies' open-file limit as `sh` reads it (a number, or `"$(ulimit -Hn)"`).
    pub(crate) nofile: String,
    /// `TOKIO_WORKER_THREADS` of both proxies (`None`: unset).
    pub(crate) proxy_threads: Option<usize>,
    /// Wait between a proxy's start and the generator's.
    pub(crate) settle: Duration,
    /// Where the configs, logs and reports go.
    pub(crate) dir: PathBuf,
    /// `loadgen` flags for every run (without `--json`: each run's report goes to the dir).
    pub(crate) loadgen_args: Vec<String>,
}

/// One run of a series.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// 1-based.
    pub(crate) round: usize,
    /// Whose run.
    pub(crate) side: Side,
    /// loadgen's exit status (0 clean, 1 problems listed, 2 could not start, 3 watchdog);
    /// `None` when it was ended by a signal.
    pub(crate) exit: Option<i32>,
    /// loadgen's JSON report, when it wrote one.
    pub(crate) report: Option<Value>,
    /// The proxy's stdout and stderr.
    pub(crate) log: PathBuf,
    /// Set when the proxy ended before the generator did: its exit status.
    pub(crate) proxy_ended: Option<String>,
}

impl Run {
    /// Clean: loadgen exited 0 with a report. Only clean runs count in the medians.
    pub(crate) fn is_clean(&self) -> bool {
        self.exit == Some(0) && self.report.is_some()
    }

    /// The number at `path` (`a.b`) of the report, if any.
    fn figure(&self, path: &str) -> Option<f64> {
        let mut v = self.report.as_ref()?;
        for key in path.split('.') {
            v = v.get(key)?;
        }
        v.as_f64()
    }

    fn status(&self) -> String {
        match (self.exit, self.is_clean()) {
            (_, true) => "clean".into(),
            (Some(code), false) => format!("not clean (loadgen exit {code})"),
            (None, false) => "not clean (loadgen killed)".into(),
        }
    }
}

/// xmrig-proxy's JSON config for the peer: bound to `127.0.0.1:proxy_port`, the generator's
/// pool at `pool_addr` as its only pool (user `bench-wallet`, pass `x`, no keepalive, no
/// TLS), `mode`, a worker record per rig id, no donation, no HTTP API, no colours, no log file,
/// 3 retries 1 s apart (the values of the by-hand series and of our own bench config).
pub(crate) fn peer_config(mode: &str, proxy_port: u16, pool_addr: std::net::SocketAddr) -> String {
    let config = json!({
        "access-log-file": null,
        "background": false,
        "bind": [{"host": "127.0.0.1", "port": proxy_port, "tls": false}],
        "colors": false,
        "custom-diff": 0,
        "donate-level": 0,
        "http": {"enabled": false},
        "log-file": null,
        "mode": mode,
        "pools": [{
            "url": pool_addr.to_string(),
            "user": "bench-wallet",
            "pass": "x",
            "keepalive": false,
            "tls": false
        }],
        "retries": 3,
        "retry-pause": 1,
        "verbose": false,
        "workers": true
    });
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// Runs the series: for each round the peer's run (if any), then ours. Fails only when a
/// run cannot be set up (a config not written, a proxy or the generator not started); a
/// run that is not clean is recorded as such.
pub(crate) fn run_series(s: &Series) -> anyhow::Result<Vec<Run>> {
    check(s.peer.as_deref(), s.pin)?;
    std::fs::create_dir_all(&s.dir).with_context(|| format!("creating {}", s.dir.display()))?;
    let sides: &[Side] = if s.peer.is_some() {
        &[Side::Peer, Side::Ours]
    } else {
        &[Side::Ours]
    };
    let mut runs = Vec::new();
    for round in 1..=s.rounds {
        for &side in sides {
            let run = run_one(s, round, side)?;
            eprintln!(
                "xtask bench: round {round}/{} {}: {}{}",
                s.rounds,
                side.as_str(),
                run.status(),
                run.proxy_ended
                    .as_ref()
                    .map(|e| format!("; the proxy ended during the run ({e})"))
                    .unwrap_or_default()
            );
            runs.push(run);
        }
    }
    Ok(runs)
}

/// What a series needs before anything is built: the peer's binary (`--against`) is a file,
/// and `taskset` is there for `--pin`.
pub(crate) fn check(peer: Option<&Path>, pin: bool) -> anyhow::Result<()> {
    if pin && !crate::have("taskset") {
        bail!("--pin needs taskset (Debian package util-linux): install it or leave out --pin");
    }
    if let Some(peer) = peer {
        let meta = std::fs::metadata(peer)
            .with_context(|| format!("--against {}: cannot read it", peer.display()))?;
        if !meta.is_file() {
            bail!("--against {}: not a file", peer.display());
        }
    }
    Ok(())
}

fn run_one(s: &Series, round: usize, side: Side) -> anyhow::Result<Run> {
    let name = format!("{}-{round}", side.as_str());
    // Two free loopback ports, held together so they differ, released just before use.
    let (pool, miners) = (crate::free_port()?, crate::free_port()?);
    let pool_addr = pool.local_addr()?;
    let proxy_port = miners.local_addr()?.port();
    drop((pool, miners));

    let config = s.dir.join(format!("{name}-config.json"));
    let (program, text) = match side {
        Side::Peer => (
            s.peer.clone().context("a peer run without --against")?,
            peer_config(&s.mode, proxy_port, pool_addr),
        ),
        Side::Ours => (
            s.proxy_cli.clone(),
            crate::bench_config(&s.mode, "cryptonote", proxy_port, pool_addr),
        ),
    };
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    let log = s.dir.join(format!("{name}.log"));
    let mut proxy = crate::start_proxy(
        &program,
        &config,
        &log,
        &s.nofile,
        s.proxy_threads,
        "info",
        s.pin.then_some(1),
    )?;
    std::thread::sleep(s.settle);

    let json_path = s.dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&json_path);
    let out_path = s.dir.join(format!("{name}.txt"));
    let out = std::fs::File::create(&out_path)?;
    let mut gen = crate::generator_command(
        &s.loadgen,
        proxy_port,
        pool_addr,
        &proxy,
        s.pin.then_some(0),
    );
    gen.arg("--proxy-workers")
        .arg(s.proxy_threads.unwrap_or(1).to_string())
        .arg("--mode")
        .arg(&s.mode)
        .args(&s.loadgen_args)
        .arg("--json")
        .arg(&json_path)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    eprintln!("$ {gen:?}");
    let status = gen
        .status()
        .with_context(|| format!("running {}", s.loadgen.display()))?;
    let proxy_ended = proxy.exited().map(|st| st.to_string());
    drop(proxy);
    if !status.success() {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        for line in tail.iter().rev() {
            eprintln!("  loadgen: {}", line.escape_debug());
        }
    }
    let report = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    Ok(Run {
        round,
        side,
        exit: status.code(),
        report,
        log,
        proxy_ended,
    })
}

/// The median of `values` (the mean of the two middle ones for an even count); `None` for
/// none.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// One figure over a series, for one side: each round's value (`None`: no run or no value)
/// and whether that run was clean, and the median over the clean runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SideFigure {
    /// `(value, clean)` per round, in round order.
    pub(crate) rounds: Vec<(Option<f64>, bool)>,
    /// Median of the clean rounds' values.
    pub(crate) median: Option<f64>,
}

/// One figure over a series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FigureSummary {
    /// Path in loadgen's JSON report.
    pub(crate) key: &'static str,
    /// Name in the table.
    pub(crate) name: &'static str,
    /// The peer's rounds (`None` without a peer).
    pub(crate) peer: Option<SideFigure>,
    /// Ours.
    pub(crate) ours: SideFigure,
    /// Ours / peer of the medians (when both are there and the peer's is not 0).
    pub(crate) ratio: Option<f64>,
}

/// Every figure of [`FIGURES`] over `runs` (`rounds` rounds; with the peer's when
/// `with_peer`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    /// Rounds of the series.
    pub(crate) rounds: usize,
    /// In [`FIGURES`] order.
    pub(crate) figures: Vec<FigureSummary>,
}

/// Medians and ratios of a series (pure: no I/O).
pub(crate) fn summarize(runs: &[Run], rounds: usize, with_peer: bool) -> Summary {
    let side_figure = |side: Side, key: &str| {
        let per_round: Vec<(Option<f64>, bool)> = (1..=rounds)
            .map(|r| {
                runs.iter()
                    .find(|run| run.round == r && run.side == side)
                    .map_or((None, false), |run| (run.figure(key), run.is_clean()))
            })
            .collect();
        let clean: Vec<f64> = per_round
            .iter()
            .filter(|(_, clean)| *clean)
            .filter_map(|(v, _)| *v)
            .collect();
        SideFigure {
            median: median(&clean),
            rounds: per_round,
        }
    };
    let figures = FIGURES
        .iter()
        .map(|&(key, name)| {
            let ours = side_figure(Side::Ours, key);
            let peer = with_peer.then(|| side_figure(Side::Peer, key));
            let ratio = match (ours.median, peer.as_ref().and_then(|p| p.median)) {
                (Some(o), Some(p)) if p != 0.0 => Some(o / p),
                _ => None,
            };
            FigureSummary {
                key,
                name,
                peer,
                ours,
                ratio,
            }
        })
        .collect();
    Summary { rounds, figures }
}

/// A figure as the table shows it: 3 significant digits at most, no more than 3 decimals.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn rounds_cell(f: &SideFigure) -> String {
    f.rounds
        .iter()
        .map(|(v, clean)| {
            let v = v.map_or_else(|| "–".to_string(), number);
            if *clean {
                v
            } else {
                format!("({v})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn median_cell(f: &SideFigure) -> String {
    f.median
        .map_or_else(|| "–".into(), |m| format!("**{}**", number(m)))
}

/// The series as a Markdown table (ready for `docs/BENCHMARKS.md`): a row of each run's
/// status, then a row per figure with each round's value for the peer (named `peer_name`)
/// and ours, the medians and ours / peer; values of a run that was not clean in brackets,
/// left out of the medians.
pub(crate) fn markdown(summary: &Summary, runs: &[Run], peer_name: Option<&str>) -> String {
    let status = |side: Side| {
        let clean = runs
            .iter()
            .filter(|r| r.side == side && r.is_clean())
            .count();
        let all: Vec<String> = runs
            .iter()
            .filter(|r| r.side == side)
            .map(|r| match r.exit {
                Some(0) if r.is_clean() => "clean".to_string(),
                Some(c) => format!("exit {c}"),
                None => "killed".to_string(),
            })
            .collect();
        format!("{clean} of {} clean ({})", summary.rounds, all.join(", "))
    };
    let mut t = String::new();
    match peer_name {
        Some(peer) => {
            t.push_str(&format!(
                "| figure | {peer}: each round | {peer}: median | ours: each round | ours: median | ours / {peer} |\n|---|---|---|---|---|---|\n"
            ));
            t.push_str(&format!(
                "| runs | {} | | {} | | |\n",
                status(Side::Peer),
                status(Side::Ours)
            ));
        }
        None => {
            t.push_str("| figure | ours: each round | ours: median |\n|---|---|---|\n");
            t.push_str(&format!("| runs | {} | |\n", status(Side::Ours)));
        }
    }
    for f in &summary.figures {
        match &f.peer {
            Some(p) if peer_name.is_some() => t.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                f.name,
                rounds_cell(p),
                median_cell(p),
                rounds_cell(&f.ours),
                median_cell(&f.ours),
                f.ratio
                    .map_or_else(|| "–".into(), |r| format!("**{r:.2}**")),
            )),
            _ => t.push_str(&format!(
                "| {} | {} | {} |\n",
                f.name,
                rounds_cell(&f.ours),
                median_cell(&f.ours)
            )),
        }
    }
    t.push_str(
        "\nMedians over the clean runs; a value in brackets is from a run that was not clean \
         (loadgen exit 1: its report lists problems), shown and left out of the median; – \
         is no value.\n",
    );
    t
}

/// The series as one JSON document: what ran, every run (its status, log, and loadgen's
/// whole report), and the summary.
pub(crate) fn series_json(s: &Series, runs: &[Run], summary: &Summary) -> Value {
    let side = |f: &SideFigure| {
        json!({
            "rounds": f.rounds.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            "clean": f.rounds.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            "median": f.median,
        })
    };
    json!({
        "rounds": s.rounds,
        "mode": s.mode,
        "peer": s.peer.as_ref().map(|p| p.display().to_string()),
        "pinned": s.pin,
        "loadgen_args": s.loadgen_args,
        "runs": runs.iter().map(|r| json!({
            "round": r.round,
            "proxy": r.side.as_str(),
            "clean": r.is_clean(),
            "loadgen_exit": r.exit,
            "proxy_ended_during_run": r.proxy_ended,
            "log": r.log.display().to_string(),
            "report": r.report,
        })).collect::<Vec<_>>(),
        "figures": summary.figures.iter().map(|f| json!({
            "key": f.key,
            "name": f.name,
            "peer": f.peer.as_ref().map(side),
            "ours": side(&f.ours),
            "ratio_ours_to_peer": f.ratio,
        })).collect::<Vec<_>>(),
    })
}

/// Runs the series, prints its table, writes it to `DIR/series.md` and its JSON to `json_out`
/// (default `DIR/series.json`; `-`: stdout). Fails when a side has no clean run.
pub(crate) fn bench_series(s: &Series, json_out: Option<&Path>) -> anyhow::Result<()> {
    let runs = run_series(s)?;
    let summary = summarize(&runs, s.rounds, s.peer.is_some());
    let peer_name = s
        .peer
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let table = markdown(&summary, &runs, peer_name.as_deref());
    println!("{table}");
    let md = s.dir.join("series.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    let json_path = json_out.map_or_else(|| s.dir.join("series.json"), Path::to_path_buf);
    let doc = serde_json::to_string_pretty(&series_json(s, &runs, &summary))? + "\n";
    if json_path.as_os_str() == "-" {
        print!("{doc}");
    } else {
        std::fs::write(&json_path, doc)
            .with_context(|| format!("writing {}", json_path.display()))?;
    }
    eprintln!(
        "xtask bench: table {}, JSON {}, runs in {}",
        md.display(),
        json_path.display(),
        s.dir.display()
    );
    let unclean = runs.iter().filter(|r| !r.is_clean()).count();
    if unclean > 0 {
        eprintln!("xtask bench: {unclean} run(s) not clean: shown, left out of the medians");
    }
    for side in [Side::Peer, Side::Ours] {
        let ran = runs.iter().any(|r| r.side == side);
        if ran && !runs.iter().any(|r| r.side == side && r.is_clean()) {
            bail!(
                "no clean run of {}: see the logs in {}",
                side.as_str(),
                s.dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(cpu_per_share: f64, rtt_p99: Option<f64>) -> Value {
        json!({
            "setup": {"miners": 20},
            "login": {"proxy_cpu_ms_per_1000": 30.0},
            "memory": {"rss_per_miner_bytes": 1000.0, "rss_per_miner_after_shares_bytes": 1200.0},
            "fanout": {"p50_ms": 1.0, "p99_ms": 2.0, "proxy_cpu_ms_per_job_per_1000": 5.0},
            "shares": {
                "proxy_cpu_ms_per_1000": cpu_per_share,
                "proxy_cpu_ms_per_1000_less_idle": cpu_per_share - 1.0,
                "rtt_p50_ms": 0.1,
                "rtt_p99_ms": rtt_p99,
            },
            "problems": [],
        })
    }

    fn run(round: usize, side: Side, exit: i32, report: Option<Value>) -> Run {
        Run {
            round,
            side,
            exit: Some(exit),
            report,
            log: PathBuf::from(format!("{}-{round}.log", side.as_str())),
            proxy_ended: None,
        }
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_and_of_an_even_count_the_mean_of_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[46.0, 36.5, 50.0, 46.0, 45.0]), Some(46.0));
        assert_eq!(median(&[45.0, 38.5]), Some(41.75));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn a_run_that_is_not_clean_is_shown_and_left_out_of_the_medians() {
        let runs = vec![
            run(1, Side::Peer, 0, Some(report(40.0, Some(1.0)))),
            run(1, Side::Ours, 0, Some(report(44.0, Some(0.5)))),
            run(2, Side::Peer, 0, Some(report(42.0, Some(3.0)))),
            // Not clean: its 100 ms must not count.
            run(2, Side::Ours, 1, Some(report(100.0, Some(9.0)))),
            run(3, Side::Peer, 0, Some(report(41.0, Some(2.0)))),
            run(3, Side::Ours, 0, Some(report(48.0, None))),
        ];
        let s = summarize(&runs, 3, true);
        assert_eq!(s.figures.len(), FIGURES.len());
        let cpu = &s.figures[0];
        assert_eq!(cpu.key, "shares.proxy_cpu_ms_per_1000");
        assert_eq!(
            cpu.ours.rounds,
            [(Some(44.0), true), (Some(100.0), false), (Some(48.0), true)]
        );
        assert_eq!(cpu.ours.median, Some(46.0));
        assert_eq!(cpu.peer.as_ref().unwrap().median, Some(41.0));
        assert_eq!(cpu.ratio, Some(46.0 / 41.0));
        // A figure missing from a clean run's report is left out too.
        let rtt = s
            .figures
            .iter()
            .find(|f| f.key == "shares.rtt_p99_ms")
            .unwrap();
        assert_eq!(rtt.ours.median, Some(0.5));
        assert_eq!(rtt.peer.as_ref().unwrap().median, Some(2.0));
        assert_eq!(rtt.ratio, Some(0.25));

        let table = markdown(&s, &runs, Some("xmrig-proxy"));
        assert!(
            table.starts_with("| figure | xmrig-proxy: each round | xmrig-proxy: median | ours: each round | ours: median | ours / xmrig-proxy |\n|---|---|---|---|---|---|\n"),
            "{table}"
        );
        assert!(
            table.contains(
                "| runs | 3 of 3 clean (clean, clean, clean) | | 2 of 3 clean (clean, exit 1, clean) | | |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| proxy CPU per 1,000 shares (ms) | 40.0, 42.0, 41.0 | **41.0** | 44.0, (100), 48.0 | **46.0** | **1.12** |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| submit round trip p99 (ms) | 1.00, 3.00, 2.00 | **2.00** | 0.500, (9.00), – | **0.500** | **0.25** |"),
            "{table}"
        );
        assert!(table.contains("left out of the median"), "{table}");
    }

    #[test]
    fn without_a_peer_the_table_has_ours_only_and_a_run_without_report_counts_as_not_clean() {
        let runs = vec![
            run(1, Side::Ours, 0, Some(report(44.0, Some(0.5)))),
            run(2, Side::Ours, 2, None),
        ];
        let s = summarize(&runs, 2, false);
        assert!(s
            .figures
            .iter()
            .all(|f| f.peer.is_none() && f.ratio.is_none()));
        assert_eq!(
            s.figures[0].ours.rounds,
            [(Some(44.0), true), (None, false)]
        );
        let table = markdown(&s, &runs, None);
        assert!(
            table.contains("| runs | 1 of 2 clean (clean, exit 2) | |"),
            "{table}"
        );
        assert!(
            table.contains("| proxy CPU per 1,000 shares (ms) | 44.0, (–) | **44.0** |"),
            "{table}"
        );
    }

    #[test]
    fn the_peer_config_is_xmrig_proxys_format_and_parses_back() {
        let pool: std::net::SocketAddr = "127.0.0.1:4444".parse().unwrap();
        for mode in ["nicehash", "simple"] {
            let v: Value = serde_json::from_str(&peer_config(mode, 3333, pool)).unwrap();
            assert_eq!(v["mode"], mode);
            assert_eq!(
                v["bind"],
                json!([{"host": "127.0.0.1", "port": 3333, "tls": false}])
            );
            assert_eq!(
                v["pools"],
                json!([{"url": "127.0.0.1:4444", "user": "bench-wallet", "pass": "x", "keepalive": false, "tls": false}])
            );
            assert_eq!(v["workers"], true);
            assert_eq!(v["donate-level"], 0);
            assert_eq!(v["http"]["enabled"], false);
            assert_eq!(v["colors"], false);
            assert_eq!(v["retries"], 3);
            assert_eq!(v["retry-pause"], 1);
            assert_eq!(v["log-file"], Value::Null);
        }
    }

    #[test]
    fn a_peer_that_is_not_a_file_is_refused_by_name() {
        let err = check(Some(Path::new("/nonexistent/xmrig-proxy")), false).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("--against /nonexistent/xmrig-proxy: cannot read it"),
            "{err:#}"
        );
        let err = check(Some(Path::new("/")), false).unwrap_err();
        assert_eq!(format!("{err}"), "--against /: not a file");
        check(None, false).unwrap();
    }

    #[test]
    fn the_series_json_holds_every_run_and_figure() {
        let runs = vec![
            run(1, Side::Peer, 0, Some(report(40.0, Some(1.0)))),
            run(1, Side::Ours, 1, Some(report(44.0, Some(0.5)))),
        ];
        let s = Series {
            rounds: 1,
            mode: "nicehash".into(),
            proxy_cli: "proxy-cli".into(),
            loadgen: "loadgen".into(),
            peer: Some("xmrig-proxy".into()),
            pin: false,
            nofile: "64".into(),
            proxy_threads: None,
            settle: Duration::ZERO,
            dir: ".".into(),
            loadgen_args: vec!["--miners".into(), "20".into()],
        };
        let summary = summarize(&runs, 1, true);
        let v = series_json(&s, &runs, &summary);
        assert_eq!(v["runs"].as_array().unwrap().len(), 2);
        assert_eq!(v["runs"][1]["proxy"], "ours");
        assert_eq!(v["runs"][1]["clean"], false);
        assert_eq!(
            v["runs"][0]["report"]["shares"]["proxy_cpu_ms_per_1000"],
            40.0
        );
        assert_eq!(v["figures"][0]["peer"]["median"], 40.0);
        assert_eq!(v["figures"][0]["ours"]["median"], Value::Null);
        assert_eq!(v["figures"][0]["ours"]["rounds"], json!([44.0]));
        assert_eq!(v["figures"].as_array().unwrap().len(), FIGURES.len());
    }
}
