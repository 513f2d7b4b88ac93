//! `cargo xtask fuzz [--secs N] [--runs N] [--target-dir DIR] [TARGET ...]`: runs each
//! cargo-fuzz target of `crates/stratum-proto/fuzz` in turn, one process at a time, on the
//! stable toolchain, and fails when any of them crashes.
//!
//! cargo-fuzz passes `-Z` flags (sanitizer, coverage) to rustc, which stable accepts with
//! `RUSTC_BOOTSTRAP=1`; this task sets it. cargo-fuzz is installed with
//! `cargo install cargo-fuzz --locked` when `cargo fuzz` is missing.
//!
//! Each target starts from the seeds in the repository
//! (`crates/stratum-proto/fuzz/seeds/<target>`, read only) and keeps what it learns in
//! `<target-dir>/corpus/<target>`; crash inputs go to `<target-dir>/artifacts/<target>/`. The
//! target dir is `--target-dir`, else `fuzz` inside the workspace's target dir. A run ends
//! after `--secs` seconds or `--runs` executions, whichever comes first (30 s when neither is
//! given); an input that runs for more than 10 s counts as a crash (a hang). The summary gives
//! the executions per target.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::{cargo, run, target_dir};

/// The fuzz crate, from the workspace root.
const FUZZ_DIR: &str = "crates/stratum-proto/fuzz";
/// Every target, in the order they run.
const TARGETS: &[&str] = &[
    "line_decoder",
    "miner_request",
    "pool_message",
    "sv1",
    "daemon_reply",
    "config",
];
/// Seconds per target when neither `--secs` nor `--runs` is given.
const DEFAULT_SECS: u64 = 30;
/// libFuzzer's limit for one input, in seconds: above it the input is a hang, reported as a crash.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// What one target's run came to.
struct Outcome {
    target: String,
    runs: Option<u64>,
    secs: Option<u64>,
    ok: bool,
}

/// `cargo xtask fuzz`.
pub(crate) fn fuzz(args: &[String]) -> anyhow::Result<()> {
    let mut secs: Option<u64> = None;
    let mut runs: Option<u64> = None;
    let mut dir: Option<PathBuf> = None;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => secs = Some(number(it.next(), "--secs")?),
            "--runs" => runs = Some(number(it.next(), "--runs")?),
            "--target-dir" => {
                dir = Some(it.next().context("--target-dir needs a path")?.into());
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            other => bail!(
                "cargo xtask fuzz: unknown argument {other:?}; targets: {}",
                TARGETS.join(", ")
            ),
        }
    }
    if secs == Some(0) || runs == Some(0) {
        bail!("--secs and --runs must be at least 1");
    }
    // libFuzzer's -max_total_time=0 is no time limit: `--runs` alone runs them all.
    let secs = secs.unwrap_or(if runs.is_some() { 0 } else { DEFAULT_SECS });
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    let dir = dir.unwrap_or_else(|| target_dir().join("fuzz"));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    ensure_cargo_fuzz()?;

    // Build every target once (one cargo process, so the build is not repeated per target).
    run(&mut cargo_fuzz("build", &dir))?;
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(target, &dir, secs, runs)?);
    }

    eprintln!(
        "\nxtask fuzz: {:<14} {:>12} {:>8}  result",
        "target", "executions", "seconds"
    );
    for o in &outcomes {
        let show = |n: Option<u64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
        eprintln!(
            "xtask fuzz: {:<14} {:>12} {:>8}  {}",
            o.target,
            show(o.runs),
            show(o.secs),
            if o.ok {
                "no crash".to_string()
            } else {
                format!(
                    "CRASH (inputs in {})",
                    dir.join("artifacts").join(&o.target).display()
                )
            }
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join(", "));
    }
    Ok(())
}

fn number(arg: Option<&String>, flag: &str) -> anyhow::Result<u64> {
    arg.with_context(|| format!("{flag} needs a number"))?
        .parse()
        .with_context(|| format!("{flag} needs a number"))
}

/// Installs cargo-fuzz when `cargo fuzz` does not run.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask fuzz: cargo-fuzz is missing; installing it");
    run(cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// `cargo fuzz <sub>` for the fuzz crate: release with debug assertions, on stable.
fn cargo_fuzz(sub: &str, dir: &Path) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "fuzz",
        sub,
        "--fuzz-dir",
        FUZZ_DIR,
        "-O",
        "-a",
        "--target-dir",
    ])
    .arg(dir.join("target"))
    .env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Runs one target; its executions and time from libFuzzer's final stats.
fn run_target(target: &str, dir: &Path, secs: u64, runs: Option<u64>) -> anyhow::Result<Outcome> {
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let seeds = Path::new(FUZZ_DIR).join("seeds").join(target);
    let mut cmd = cargo_fuzz("run", dir);
    cmd.arg(target).arg(&corpus).arg(&seeds).arg("--");
    cmd.arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(n) = runs {
        cmd.arg(format!("-runs={n}"));
    }
    cmd.stderr(Stdio::piped());
    eprintln!("$ {cmd:?}");
    let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    let stderr = child.stderr.take().context("fuzzer stderr")?;
    let (mut runs_done, mut secs_done) = (None, None);
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading the fuzzer's output")?;
        if let Some(n) = stat(&line, "stat::number_of_executed_units:") {
            runs_done = Some(n);
        }
        if let Some(n) = done_seconds(&line) {
            secs_done = Some(n);
        }
        // Progress lines for new coverage and the closing dictionary are many; the pulses
        // and the rest are kept.
        let progress =
            line.starts_with('#') && (line.contains(" NEW ") || line.contains(" REDUCE "));
        let dictionary = line.starts_with('"') && line.contains("# Uses:");
        if !progress && !dictionary {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for the fuzzer")?;
    Ok(Outcome {
        target: target.to_string(),
        runs: runs_done,
        secs: secs_done,
        ok: status.success(),
    })
}

/// The number after `key` on a libFuzzer stats line.
fn stat(line: &str, key: &str) -> Option<u64> {
    line.trim().strip_prefix(key)?.trim().parse().ok()
}

/// The seconds of libFuzzer's closing `Done N runs in S second(s)` line.
fn done_seconds(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("Done ")?;
    let (_, after) = rest.split_once(" runs in ")?;
    after.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_stats_are_read() {
        assert_eq!(
            stat(
                "stat::number_of_executed_units: 1048576",
                "stat::number_of_executed_units:"
            ),
            Some(1_048_576)
        );
        assert_eq!(
            stat("stat::peak_rss_mb: 40", "stat::number_of_executed_units:"),
            None
        );
        assert_eq!(done_seconds("Done 1000000 runs in 41 second(s)"), Some(41));
        assert_eq!(done_seconds("#1000000 DONE cov: 1"), None);
    }

    #[test]
    fn every_target_has_seeds_and_a_source() {
        let root = crate::root();
        for t in TARGETS {
            let seeds = root.join(FUZZ_DIR).join("seeds").join(t);
            let n = std::fs::read_dir(&seeds)
                .map(|d| d.count())
                .unwrap_or_default();
            assert!((1..=10).contains(&n), "{}: {n} seeds", seeds.display());
            let source = root
                .join(FUZZ_DIR)
                .join("fuzz_targets")
                .join(format!("{t}.rs"));
            assert!(source.is_file(), "{}", source.display());
        }
    }
}
