//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! - `ci`: everything CI checks: `tidy` (see `tidy.rs`: sans-IO crates without an async
//!   runtime, no module import circle, workspace lints on every library), rustfmt, clippy with `-D warnings`, every test, rustdoc with
//!   warnings denied. Needs `monerod` (Debian package `monero`), Node.js (`nodejs`, `npm`:
//!   bcoin) and `chromium` (the dashboard's browser test) for the end-to-end tests.
//! - `demo [--seconds N] [--miners N] [--difficulty N]`: a real Monero node in regtest, the
//!   proxy in front of it in daemon mode, and RandomX miners hashing through the proxy.
//!   `demo --protocol stratum-v1`: a bcoin regtest node, the proxy's Stratum V1 solo
//!   upstream, and SV1 CPU miners (sha256d) through it.
//! - `bench [--mode nicehash|simple] [--protocol cryptonote|stratum-v1] [--proxy-threads N] [--proxy-nofile N] [loadgen flags]`:
//!   the real proxy in NiceHash (default) or simple mode, serving CryptoNote (default) or Bitcoin Stratum V1 miners, under the load generator of `test-support` (a pool and N miners in one process);
//!   `bench --against PATH [--rounds N] [--pin] [loadgen flags]`: alternating rounds of a peer
//!   proxy (xmrig-proxy built by hand) and ours under the same generator, with the medians
//!   (`series.rs`); `bench --micro [filter]`: the criterion benchmarks. See `docs/BENCHMARKS.md`.
//! - `soak [--minutes N] [soak flags]`: the release proxy under miners churning in and out
//!   (new worker names, shares, job changes); fails when its RSS after the soak is more than
//!   10 % above its RSS after the warm-up. See `docs/BENCHMARKS.md`.
//! - `fuzz [--secs N] [--runs N] [--target-dir DIR] [TARGET ...]`: each cargo-fuzz target
//!   in turn on the stable toolchain; fails on any crash (see `fuzz.rs`).
//!
//! Deliberately dependency-light: it shells out to cargo and apt-get.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

mod fuzz;
mod series;
mod tidy;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "ci" => ci(),
        "tidy" => tidy::tidy(&root),
        "demo" => demo(&rest),
        "bench" => bench(&rest),
        "soak" => soak(&rest),
        "fuzz" => fuzz::fuzz(&rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | demo [--protocol stratum-v1] [--seconds N] [--miners N] [--difficulty N] \
                 | bench [--micro] [--against PATH] [--rounds N] [--pin] [--mode nicehash|simple] [--protocol cryptonote|stratum-v1] [--proxy-threads N] [--miners N] [--jobs N] [--rate N] [--seconds N] ... \
                 | soak [--minutes N] [--miners N] [soak flags] \
                 | fuzz [--secs N] [--runs N] [--target-dir DIR] [TARGET ...] | tidy>"
            );
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

/// `cargo`, without the variables cargo sets for the package it runs (`cargo xtask` is
/// `cargo run -p xtask`; xtask's tests run under `cargo test`): a build script that watches
/// one (ring's watches `CARGO_MANIFEST_DIR`) would otherwise rebuild half the tree here and
/// again in the next plain build.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&k.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    cmd
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
    tidy::tidy(&root())?;
    ensure_packages(PACKAGES)?;
    // The bcoin regtest tests (test-support installs bcoin itself with npm), and headless
    // Chromium for the dashboard's browser test (proxy-api tests/browser.rs).
    ensure_packages(&[("node", "nodejs"), ("npm", "npm"), ("chromium", "chromium")])?;
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
    // The fuzz crate is a workspace of its own: formatted, and its targets type-checked and
    // linted with plain stable cargo (no cargo-fuzz, no sanitizer; `cargo xtask fuzz` runs them).
    let fuzz_manifest = "crates/stratum-proto/fuzz/Cargo.toml";
    run(cargo().args(["fmt", "--manifest-path", fuzz_manifest, "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--manifest-path",
        fuzz_manifest,
        "--bins",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

fn demo(args: &[String]) -> anyhow::Result<()> {
    if args
        .iter()
        .any(|a| a == "stratum-v1" || a == "--protocol=stratum-v1")
    {
        // bcoin regtest (test-support installs bcoin itself with npm).
        ensure_packages(&[("node", "nodejs"), ("npm", "npm")])?;
    } else {
        ensure_packages(PACKAGES)?;
    }
    let release = build_release(&["proxy-cli", "demo"])?;
    run(Command::new(release.join("demo"))
        .arg("--proxy")
        .arg(release.join("proxy-cli"))
        .args(args))
}

/// Builds the binaries `bins` (of `proxy-cli` and `test-support`) in release; returns the
/// directory they are in.
fn build_release(bins: &[&str]) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "proxy-cli",
        "-p",
        "test-support",
    ]);
    for b in bins {
        cmd.args(["--bin", b]);
    }
    run(&mut cmd)?;
    Ok(target_dir().join("release"))
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root().join("target"), PathBuf::from)
}

fn free_port() -> anyhow::Result<std::net::TcpListener> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
}

/// The proxy under test; stopped with SIGTERM (then SIGKILL after 10 s) when dropped, so it
/// goes away on every path out of [`bench()`].
struct ProxyProcess(std::process::Child);

impl ProxyProcess {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// `Some(status)` when the proxy already ended.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!("xtask bench: proxy {pid} ignored SIGTERM for 10 s; killing it");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cargo xtask bench`: builds `proxy-cli` and `loadgen` in release, starts the proxy in
/// NiceHash mode (`--mode simple`: simple mode, one pool connection per miner, which the
/// generator's pool checks) for CryptoNote miners (`--protocol stratum-v1`: Bitcoin Stratum
/// V1 miners and pool) with the load generator's pool as its only pool, runs the load
/// generator against it and stops the proxy. `--proxy-threads N` sets the proxy's tokio worker threads
/// (`TOKIO_WORKER_THREADS`; default: proxy-cli's one, plus its fan-out threads), `--proxy-nofile N` its open-file limit
/// (default: the hard limit); every other flag goes to `loadgen` (`--miners`, `--jobs`,
/// `--job-interval`, `--rate`, `--seconds`, `--threads`, …). `--json PATH`: where the report
/// goes. `--against PATH` (a peer proxy that reads an xmrig-proxy config with `-c FILE`),
/// `--rounds N` (default 1, or 5 with `--against`) and `--pin` (proxy on CPU 1, generator on
/// CPU 0) run a series instead (`series.rs`): peer then ours, N times, and the medians as a
/// Markdown table and one JSON. `--micro` runs the criterion benchmarks instead (further
/// flags go to criterion, e.g. a name filter).
fn bench(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--micro") {
        // The criterion benchmarks of the hot paths (CI only builds them and runs each once).
        let rest: Vec<&String> = args.iter().filter(|a| *a != "--micro").collect();
        return run(cargo()
            .args([
                "bench",
                "-p",
                "stratum-proto",
                "-p",
                "nonce-split",
                "-p",
                "proxy-core",
            ])
            .args([
                "--bench", "codec", "--bench", "routing", "--bench", "submit", "--",
            ])
            .args(rest));
    }
    let mut proxy_threads: Option<usize> = None;
    let mut proxy_nofile: Option<u64> = None;
    let mut mode = "nicehash".to_string();
    let mut protocol = "cryptonote".to_string();
    let mut against: Option<PathBuf> = None;
    let mut rounds: Option<usize> = None;
    let mut pin = false;
    let mut json: Option<PathBuf> = None;
    let mut loadgen_args: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--against" {
            against = Some(it.next().context("--against needs a path")?.into());
        } else if let Some(p) = a.strip_prefix("--against=") {
            against = Some(p.into());
        } else if a == "--rounds" || a.starts_with("--rounds=") {
            let n = match a.strip_prefix("--rounds=") {
                Some(n) => n,
                None => it.next().context("--rounds needs a number")?,
            };
            let n: usize = n.parse().context("--rounds needs a number")?;
            if n == 0 {
                bail!("--rounds 0: a series needs a round at least");
            }
            rounds = Some(n);
        } else if a == "--pin" {
            pin = true;
        } else if a == "--json" {
            json = Some(it.next().context("--json needs a path")?.into());
        } else if let Some(p) = a.strip_prefix("--json=") {
            json = Some(p.into());
        } else if a == "--mode" {
            mode.clone_from(it.next().context("--mode needs nicehash or simple")?);
        } else if let Some(m) = a.strip_prefix("--mode=") {
            mode = m.to_string();
        } else if a == "--protocol" {
            protocol.clone_from(
                it.next()
                    .context("--protocol needs cryptonote or stratum-v1")?,
            );
        } else if let Some(p) = a.strip_prefix("--protocol=") {
            protocol = p.to_string();
        } else if a == "--proxy-threads" {
            let n = it.next().context("--proxy-threads needs a number")?;
            proxy_threads = Some(n.parse().context("--proxy-threads needs a number")?);
        } else if let Some(n) = a.strip_prefix("--proxy-threads=") {
            proxy_threads = Some(n.parse().context("--proxy-threads needs a number")?);
        } else if a == "--proxy-nofile" {
            let n = it.next().context("--proxy-nofile needs a number")?;
            proxy_nofile = Some(n.parse().context("--proxy-nofile needs a number")?);
        } else {
            loadgen_args.push(a.clone());
        }
    }
    if mode != "nicehash" && mode != "simple" {
        bail!("--mode {mode:?}: expected nicehash or simple");
    }
    if protocol != "cryptonote" && protocol != "stratum-v1" {
        bail!("--protocol {protocol:?}: expected cryptonote or stratum-v1");
    }
    if protocol == "stratum-v1" && against.is_some() {
        bail!(
            "--protocol stratum-v1 --against: not supported; the peer gets an xmrig-proxy \
             config (CryptoNote), and a Stratum V1 peer such as ckpool needs its own (see \
             docs/BENCHMARKS.md, \"Side by side with ckpool\")"
        );
    }
    if protocol == "stratum-v1" && (rounds.is_some() || pin) {
        bail!("--rounds and --pin run CryptoNote series only; leave them out with --protocol stratum-v1");
    }
    let rounds = rounds.unwrap_or(if against.is_some() { 5 } else { 1 });
    series::check(against.as_deref(), pin)?;
    let nofile = proxy_nofile.map_or_else(|| r#""$(ulimit -Hn)""#.to_string(), |n| n.to_string());
    let release = build_release(&["proxy-cli", "loadgen"])?;
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if against.is_some() || rounds > 1 || pin {
        let series = series::Series {
            rounds,
            mode,
            proxy_cli: release.join("proxy-cli"),
            loadgen: release.join("loadgen"),
            peer: against,
            pin,
            nofile,
            proxy_threads,
            settle: series::SETTLE,
            dir,
            loadgen_args,
        };
        return series::bench_series(&series, json.as_deref());
    }
    if let Some(json) = json {
        loadgen_args.push("--json".into());
        loadgen_args.push(json.display().to_string());
    }

    // Two free loopback ports, held together so they differ, released just before use.
    let (pool, miners) = (free_port()?, free_port()?);
    let pool_addr = pool.local_addr()?;
    let proxy_port = miners.local_addr()?.port();
    drop((pool, miners));

    let config = dir.join("proxy-config.json");
    std::fs::write(
        &config,
        bench_config(&mode, &protocol, proxy_port, pool_addr),
    )?;
    // `--proxy-nofile N` to see what happens past the hard limit.
    let log_path = dir.join("proxy.log");
    let proxy = start_proxy(
        &release.join("proxy-cli"),
        &config,
        &log_path,
        &nofile,
        proxy_threads,
        "info",
        None,
    )?;
    // proxy-cli's default: one worker (its fan-out threads are not workers).
    let workers = proxy_threads.unwrap_or(1);
    eprintln!(
        "xtask bench: proxy pid {} on 127.0.0.1:{proxy_port} ({workers} tokio workers), pool at {pool_addr}, log {}",
        proxy.pid(),
        log_path.display()
    );

    let mut lg = generator_command(
        &release.join("loadgen"),
        proxy_port,
        pool_addr,
        &proxy,
        None,
    );
    lg.arg("--proxy-workers").arg(workers.to_string());
    lg.arg("--mode").arg(&mode);
    lg.arg("--protocol").arg(&protocol);
    run_generator(
        "bench",
        lg,
        &loadgen_args,
        &dir.join("loadgen.json"),
        proxy,
        &log_path,
    )
}

/// The share difficulty of the load generator's Stratum V1 pool (2^-32,
/// `test_support::loadgen::sv1::DIFFICULTY`): the bench proxy's `stratum-v1.min-difficulty`.
const SV1_BENCH_DIFFICULTY: &str = "2.3283064365386963e-10";

/// The bench proxy's config: `mode` (`nicehash` or `simple`) and `protocol` (`cryptonote`,
/// or `stratum-v1` with the generator's pool difficulty as the miners' floor), bound to
/// `127.0.0.1:proxy_port`, the generator's pool at `pool_addr` as its only pool, HTTP API off.
fn bench_config(
    mode: &str,
    protocol: &str,
    proxy_port: u16,
    pool_addr: std::net::SocketAddr,
) -> String {
    let sv1 = if protocol == "stratum-v1" {
        format!(
            r#"
  "stratum-v1": {{"min-difficulty": {SV1_BENCH_DIFFICULTY}}},"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{{
  "protocol": "{protocol}",{sv1}
  "mode": "{mode}",
  "bind": [{{"host": "127.0.0.1", "port": {proxy_port}, "tls": false}}],
  "pools": [{{"url": "{pool_addr}", "user": "bench-wallet", "pass": "x"}}],
  "http": {{"enabled": false}},
  "retries": 3,
  "retry-pause": 1
}}
"#
    )
}

/// Seconds a worker record stays once idle in the soak's proxy config: short, so that the
/// soak's stream of new worker names is expired many times over.
const SOAK_WORKERS_IDLE_TIMEOUT: u64 = 20;

/// `cargo xtask soak`: builds `proxy-cli` and the `soak` generator in release, starts the
/// proxy in NiceHash mode with the generator's pool as its only pool, its API on (for the
/// worker record count) and `workers-idle-timeout` of [`SOAK_WORKERS_IDLE_TIMEOUT`] s, runs
/// the generator (`--minutes N` of churn after a warm-up; every flag goes to `soak`) and stops
/// the proxy. Fails when the generator does: RSS growth past 10 %, unanswered shares, a dead
/// proxy.
fn soak(args: &[String]) -> anyhow::Result<()> {
    let built = build_release(&["proxy-cli", "soak"])?;
    let dir = target_dir().join("soak");
    // The binaries run are copies taken right after the build: a shared target directory
    // may get another checkout's build of the same names during a run of minutes.
    let release = dir.join("bin");
    std::fs::create_dir_all(&release).with_context(|| format!("creating {}", release.display()))?;
    for bin in ["proxy-cli", "soak"] {
        std::fs::copy(built.join(bin), release.join(bin))
            .with_context(|| format!("copying {bin} to {}", release.display()))?;
    }
    // Three free loopback ports, held together so they differ, released just before use.
    let (pool, miners, api) = (free_port()?, free_port()?, free_port()?);
    let pool_addr = pool.local_addr()?;
    let proxy_port = miners.local_addr()?.port();
    let api_port = api.local_addr()?.port();
    drop((pool, miners, api));
    let token = "soak-token";
    let config = dir.join("proxy-config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{
  "mode": "nicehash",
  "bind": [{{"host": "127.0.0.1", "port": {proxy_port}, "tls": false}}],
  "pools": [{{"url": "{pool_addr}", "user": "soak-wallet", "pass": "x"}}],
  "http": {{"enabled": true, "host": "127.0.0.1", "port": {api_port}, "access-token": "{token}", "restricted": true}},
  "workers": "rig-id",
  "workers-idle-timeout": {SOAK_WORKERS_IDLE_TIMEOUT},
  "retries": 3,
  "retry-pause": 1
}}
"#
        ),
    )?;
    let log_path = dir.join("proxy.log");
    let proxy = start_proxy(
        &release.join("proxy-cli"),
        &config,
        &log_path,
        r#""$(ulimit -Hn)""#,
        None,
        "warn",
        None,
    )?;
    eprintln!(
        "xtask soak: proxy pid {} on 127.0.0.1:{proxy_port}, API 127.0.0.1:{api_port}, pool at {pool_addr}, log {}",
        proxy.pid(),
        log_path.display()
    );
    let mut gen = generator_command(&release.join("soak"), proxy_port, pool_addr, &proxy, None);
    gen.arg("--api")
        .arg(format!("127.0.0.1:{api_port}"))
        .arg("--api-token")
        .arg(token);
    run_generator("soak", gen, args, &dir.join("soak.json"), proxy, &log_path)
}

/// Starts `program -c CONFIG` (our `proxy-cli`, or a peer proxy that reads an xmrig-proxy
/// config: every proxy of a bench is started this one way) with its stdout and stderr in
/// `log_path`, through `sh` to set its open-file limit to `nofile` first (a number, or
/// `"$(ulimit -Hn)"` for the hard limit; `ulimit -n` sets the soft and the hard limit, so
/// the proxy cannot raise it back; `exec` keeps the pid). `worker_threads` sets
/// `TOKIO_WORKER_THREADS` (`None`: unset, proxy-cli's default); `rust_log` is its `RUST_LOG`
/// unless one is set; `cpu` pins it to that CPU (`taskset -c`, which execs too).
fn start_proxy(
    program: &Path,
    config: &Path,
    log_path: &Path,
    nofile: &str,
    worker_threads: Option<usize>,
    rust_log: &str,
    cpu: Option<u32>,
) -> anyhow::Result<ProxyProcess> {
    let log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = pinned("sh", cpu);
    cmd.args([
        "-c",
        &format!(r#"ulimit -n {nofile} 2>/dev/null; exec "$0" "$@""#),
    ])
    .arg(program)
    .arg("-c")
    .arg(config)
    .stdin(std::process::Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", rust_log);
    }
    match worker_threads {
        Some(n) => cmd.env("TOKIO_WORKER_THREADS", n.to_string()),
        None => cmd.env_remove("TOKIO_WORKER_THREADS"),
    };
    eprintln!("$ {cmd:?}");
    let proxy = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(ProxyProcess(proxy))
}

/// `program`, or `taskset -c CPU program` (taskset execs it, so the pid stays).
fn pinned(program: impl AsRef<std::ffi::OsStr>, cpu: Option<u32>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The generator `program` (`loadgen`, `soak`) pointed at the proxy: `--proxy
/// 127.0.0.1:PROXY_PORT --pool-bind POOL_ADDR --proxy-pid PID`; on CPU `cpu` if given.
fn generator_command(
    program: &Path,
    proxy_port: u16,
    pool_addr: std::net::SocketAddr,
    proxy: &ProxyProcess,
    cpu: Option<u32>,
) -> Command {
    let mut cmd = pinned(program, cpu);
    cmd.arg("--proxy")
        .arg(format!("127.0.0.1:{proxy_port}"))
        .arg("--pool-bind")
        .arg(pool_addr.to_string())
        .arg("--proxy-pid")
        .arg(proxy.pid().to_string());
    cmd
}

/// Runs the generator `gen` with `args` (and `--json JSON` unless `args` has a `--json`),
/// says so when the proxy ended during the run, and stops the proxy. `task` names the xtask
/// in messages.
fn run_generator(
    task: &str,
    mut gen: Command,
    args: &[String],
    json: &Path,
    mut proxy: ProxyProcess,
    log_path: &Path,
) -> anyhow::Result<()> {
    if !args
        .iter()
        .any(|a| a == "--json" || a.starts_with("--json="))
    {
        gen.arg("--json").arg(json);
    }
    gen.args(args);
    let result = run(&mut gen);
    if let Some(status) = proxy.exited() {
        eprintln!(
            "xtask {task}: the proxy ended during the run ({status}); see {}",
            log_path.display()
        );
    }
    drop(proxy);
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A fresh directory under the system temp dir for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits (at most 10 s) for `path` to hold a line that ends with a newline.
    fn read_line(path: &Path) -> String {
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.ends_with('\n') {
                return text;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{} stayed without a line", path.display());
    }

    #[test]
    fn the_bench_config_names_the_mode_the_port_and_the_generators_pool() {
        let pool: std::net::SocketAddr = "127.0.0.1:4444".parse().unwrap();
        for mode in ["nicehash", "simple"] {
            let config = bench_config(mode, "cryptonote", 3333, pool);
            assert!(config.contains(&format!(r#""mode": "{mode}""#)), "{config}");
            assert!(config.contains(r#""protocol": "cryptonote""#), "{config}");
            assert!(!config.contains("stratum-v1"), "{config}");
            assert!(config.contains(r#""port": 3333"#), "{config}");
            assert!(config.contains(r#""url": "127.0.0.1:4444""#), "{config}");
        }
    }

    #[test]
    fn the_stratum_v1_bench_config_floors_miners_at_the_generators_pool_difficulty() {
        let pool: std::net::SocketAddr = "127.0.0.1:4444".parse().unwrap();
        let config = bench_config("nicehash", "stratum-v1", 3333, pool);
        assert!(config.contains(r#""protocol": "stratum-v1""#), "{config}");
        assert!(
            config.contains(r#""stratum-v1": {"min-difficulty": 2.3283064365386963e-10}"#),
            "{config}"
        );
        let d: f64 = SV1_BENCH_DIFFICULTY.parse().unwrap();
        assert_eq!(d, 1.0 / 4_294_967_296.0);
    }

    #[test]
    fn the_proxy_starts_with_its_file_limit_workers_and_log_level() {
        let dir = scratch("start-proxy");
        let fake = dir.join("proxy-cli");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"$* nofile=$(ulimit -n) workers=$TOKIO_WORKER_THREADS\"\nexec sleep 60\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.join("proxy-config.json");

        let log = dir.join("proxy.log");
        let proxy = start_proxy(&fake, &config, &log, "64", Some(3), "info", None).unwrap();
        assert_eq!(
            read_line(&log),
            format!("-c {} nofile=64 workers=3\n", config.display())
        );
        drop(proxy);

        let proxy = start_proxy(
            &fake,
            &config,
            &log,
            r#""$(ulimit -Hn)""#,
            None,
            "warn",
            None,
        )
        .unwrap();
        let hard = Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap();
        let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
        assert_eq!(
            read_line(&log),
            format!("-c {} nofile={hard} workers=\n", config.display())
        );
        drop(proxy);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The generator's command for a stand-in proxy process (`sleep`, ended when the
    /// returned handle drops), and that process's pid.
    fn generator_for(cpu: Option<u32>) -> (Command, String, ProxyProcess) {
        let proxy = ProxyProcess(Command::new("sleep").arg("60").spawn().unwrap());
        let cmd = generator_command(
            Path::new("loadgen"),
            3333,
            "127.0.0.1:4444".parse().unwrap(),
            &proxy,
            cpu,
        );
        let pid = proxy.pid().to_string();
        (cmd, pid, proxy)
    }

    #[test]
    fn the_generator_is_pointed_at_the_proxy_its_pool_and_its_pid() {
        let (cmd, pid, _proxy) = generator_for(None);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--proxy",
                "127.0.0.1:3333",
                "--pool-bind",
                "127.0.0.1:4444",
                "--proxy-pid",
                &pid
            ]
        );
        assert_eq!(cmd.get_program(), "loadgen");
    }

    #[test]
    fn cargo_runs_without_the_variables_cargo_set_for_this_package() {
        // Set by `cargo test` for this test binary.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let cmd = cargo();
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|k| k == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(removed.iter().any(|k| k == "CARGO_PKG_NAME"), "{removed:?}");
        assert!(!removed
            .iter()
            .any(|k| k == "CARGO_TARGET_DIR" || k == "CARGO_HOME"));
    }

    #[test]
    fn a_pinned_generator_runs_under_taskset_on_its_cpu() {
        let (cmd, _pid, _proxy) = generator_for(Some(0));
        assert_eq!(cmd.get_program(), "taskset");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args[..4], ["-c", "0", "loadgen", "--proxy"]);
    }

    /// Builds `proxy-cli` and `loadgen` in debug (a no-op when the workspace's tests built
    /// them already); returns their directory.
    fn debug_binaries() -> PathBuf {
        run(cargo().args([
            "build",
            "-p",
            "proxy-cli",
            "-p",
            "test-support",
            "--bin",
            "proxy-cli",
            "--bin",
            "loadgen",
        ]))
        .unwrap();
        target_dir().join("debug")
    }

    /// The series end to end, small: our own `proxy-cli` as the peer (it reads the
    /// xmrig-proxy config the harness writes, with `-c` as xmrig-proxy does), two rounds of
    /// 20 miners and 20 shares.
    #[test]
    fn a_small_series_against_proxy_cli_as_the_peer_runs_both_clean_for_two_rounds_each() {
        let bin = debug_binaries();
        let dir = scratch("series");
        let s = series::Series {
            rounds: 2,
            mode: "nicehash".into(),
            proxy_cli: bin.join("proxy-cli"),
            loadgen: bin.join("loadgen"),
            peer: Some(bin.join("proxy-cli")),
            pin: false,
            nofile: "1024".into(),
            proxy_threads: None,
            settle: std::time::Duration::from_millis(200),
            dir: dir.clone(),
            loadgen_args: [
                "--miners",
                "20",
                "--rate",
                "20",
                "--seconds",
                "1",
                "--jobs",
                "1",
                "--job-interval",
                "200ms",
                "--settle",
                "100ms",
            ]
            .map(String::from)
            .to_vec(),
        };
        let json = dir.join("out.json");
        series::bench_series(&s, Some(&json)).unwrap();

        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let runs = v["runs"].as_array().unwrap();
        let order: Vec<(u64, &str)> = runs
            .iter()
            .map(|r| (r["round"].as_u64().unwrap(), r["proxy"].as_str().unwrap()))
            .collect();
        assert_eq!(order, [(1, "peer"), (1, "ours"), (2, "peer"), (2, "ours")]);
        for r in runs {
            assert_eq!(r["clean"], true, "{r}");
            assert_eq!(r["report"]["login"]["logged_in"], 20, "{r}");
            assert_eq!(r["report"]["shares"]["answered_ok"], 20, "{r}");
        }
        // The peer ran from an xmrig-proxy config, ours from our bench config.
        let peer: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("peer-1-config.json")).unwrap())
                .unwrap();
        assert_eq!(peer["donate-level"], 0);
        let ours = std::fs::read_to_string(dir.join("ours-2-config.json")).unwrap();
        assert!(ours.contains(r#""protocol": "cryptonote""#), "{ours}");
        for f in v["figures"].as_array().unwrap() {
            assert_eq!(f["ours"]["rounds"].as_array().unwrap().len(), 2, "{f}");
            assert_eq!(f["peer"]["rounds"].as_array().unwrap().len(), 2, "{f}");
        }
        let cpu = &v["figures"][0];
        assert_eq!(cpu["key"], "shares.proxy_cpu_ms_per_1000");
        assert!(cpu["ours"]["median"].is_number(), "{cpu}");
        assert!(cpu["peer"]["median"].is_number(), "{cpu}");
        let table = std::fs::read_to_string(dir.join("series.md")).unwrap();
        assert!(
            table.contains(
                "| runs | 2 of 2 clean (clean, clean) | | 2 of 2 clean (clean, clean) | | |"
            ),
            "{table}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_generator_gets_a_json_path_unless_it_has_one_and_the_proxy_is_stopped() {
        let dir = scratch("run-generator");
        let out = dir.join("args");
        let generator = |args: &[&str]| -> Vec<String> {
            let mut gen = Command::new("sh");
            gen.args(["-c", r#"printf '%s\n' "$@" > "$0""#]).arg(&out);
            let child = Command::new("sleep").arg("60").spawn().unwrap();
            let pid = child.id();
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            run_generator(
                "test",
                gen,
                &args,
                &dir.join("gen.json"),
                ProxyProcess(child),
                &dir.join("proxy.log"),
            )
            .unwrap();
            if cfg!(target_os = "linux") {
                let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |s| s.contains(") Z "));
                assert!(gone, "the proxy is stopped");
            }
            let text = std::fs::read_to_string(&out).unwrap();
            text.lines().map(str::to_owned).collect()
        };
        let json = dir.join("gen.json").display().to_string();
        assert_eq!(
            generator(&["--miners", "5"]),
            ["--json", &json, "--miners", "5"]
        );
        assert_eq!(generator(&["--json=x.json"]), ["--json=x.json"]);
        assert_eq!(generator(&["--json", "-"]), ["--json", "-"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
