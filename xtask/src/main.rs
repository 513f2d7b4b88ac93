//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! - `ci`: everything CI checks: rustfmt, clippy with `-D warnings`, every test, rustdoc with
//!   warnings denied. Needs `monerod` (Debian package `monero`) for the end-to-end tests.
//! - `demo [--seconds N] [--miners N] [--difficulty N]`: a real Monero node in regtest, the
//!   proxy in front of it in daemon mode, and RandomX miners hashing through the proxy.
//!
//! Deliberately dependency-light: it shells out to cargo and apt-get.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "ci" => ci(),
        "demo" => demo(&rest),
        _ => {
            eprintln!("usage: cargo xtask <ci | demo [--seconds N] [--miners N] [--difficulty N]>");
            bail!("unknown task {task:?}")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian packages when the programs they provide are missing (root only).
fn ensure_packages(wanted: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(program, _)| !have(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root {
        bail!(
            "missing programs; install them with: sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

const PACKAGES: &[(&str, &str)] = &[("monerod", "monero"), ("cmake", "cmake"), ("g++", "g++")];

fn ci() -> anyhow::Result<()> {
    ensure_packages(PACKAGES)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["test", "--workspace", "--all-targets"]))?;
    run(cargo().args(["test", "--workspace", "--doc"]))?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

fn demo(args: &[String]) -> anyhow::Result<()> {
    ensure_packages(PACKAGES)?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "proxy-cli",
        "-p",
        "test-support",
        "--bins",
    ]))?;
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root().join("target"), PathBuf::from);
    let release = target.join("release");
    run(Command::new(release.join("demo"))
        .arg("--proxy")
        .arg(release.join("proxy-cli"))
        .args(args))
}
