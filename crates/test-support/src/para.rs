//! An independent Stratum V1 miner for tests: `para` 0.6.0 (parasitepool's Rust package, its
//! `para miner` subcommand), run as a child process on loopback.
//!
//! [`Para::start`] runs `para miner --username ADDRESS.WORKER --mode continuous --cpu-cores 1
//! [--throttle RATE] HOST:PORT` with `RUST_LOG=para=info` (its log on stderr) and
//! `NO_COLOR=1`. What para does on the wire is in
//! `shared/docs/reference/sv1-para-miner-transcript.md`: `mining.configure` (version rolling,
//! mask `ffffffff`) before `mining.subscribe`, then `mining.authorize`; it hashes with random
//! version bits inside the granted mask and counts extranonce2 up from 0. Its username must
//! be a Bitcoin address (any network) and a worker name. [`Para::stop`] sends it SIGTERM (by
//! its process id, to the child this value owns), on which para prints the shares it found
//! as JSON on stdout and exits; the [`ParaReport`] holds those shares and what its log says.
//! Dropping a [`Para`] kills the child and removes its temporary directory.
//!
//! # Installation
//! `$PARA`, when set, is the `para` binary to run. Otherwise para is built once with
//! `cargo install para --version 0.6.0 --locked` into a cache directory outside the repository:
//! `$PARA_CACHE_DIR` when set, else `$XDG_CACHE_HOME/stratum-proxy` or `~/.cache/stratum-proxy`,
//! in a subdirectory named after the version (`para-0.6.0/bin/para`): the version is the
//! cache key, a present binary is reused. The build (about 12 minutes on 2 cores, crates.io
//! access needed) runs with a target directory of its own under the cache and installs into
//! a private directory that is renamed into place when complete, so parallel test processes
//! never see half an install. `cargo` is `$CARGO` (set by cargo for the tests it runs) or the
//! first on `PATH`. CI builds it before the tests (`.ci/run`: `cargo run -p test-support --bin
//! para-install`), which prints what it does.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use stratum_proto::sv1::Submit;

use crate::node::{cache_root, find_program, install_atomically, make_temp_dir};

/// The para version the tests run (also the cache key).
pub const PARA_VERSION: &str = "0.6.0";

/// A regtest P2WPKH address in rust-bitcoin's form (bech32 prefix `bcrt`, key hash `11` ×
/// 20; the key of [`crate::bcoin::REGTEST_P2WPKH`]): para parses its username's address with
/// rust-bitcoin, which does not know bcoin's `rb` prefix.
pub const REGTEST_BCRT_P2WPKH: &str = "bcrt1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3lgth6c";

/// What the `para` binary is called inside an install's `bin/`.
const BINARY: &str = "para";
/// The install directory's name under the cache root.
fn install_name() -> String {
    format!("para-{PARA_VERSION}")
}

/// The binary to run: `$PARA`, else the cached build, built first when missing (see the
/// module doc). Blocking: a cold build takes minutes. Says on stderr what it does.
///
/// # Errors
/// `$PARA` is set but not a file; no cache directory (no `HOME`); `cargo` is missing; or the
/// build fails (cargo's output went to stderr).
pub fn install() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PARA").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("PARA={} is not a file", path.display());
        }
        return Ok(path);
    }
    install_into(&cache_root("PARA_CACHE_DIR")?, || {
        find_program("CARGO", "cargo", "install a Rust toolchain (rustup)")
    })
}

/// [`install`] with the cache root `root`: `root/para-VERSION/bin/para`, built there first
/// when missing with the cargo that `cargo` finds.
fn install_into(
    root: &Path,
    cargo: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let target = root.join(install_name());
    let binary = target.join("bin").join(BINARY);
    if binary.is_file() {
        eprintln!("para {PARA_VERSION}: using the cached {}", binary.display());
        return Ok(binary);
    }
    let cargo = cargo()?;
    eprintln!(
        "para {PARA_VERSION}: not in the cache; building it with `cargo install para --version \
         {PARA_VERSION} --locked` (about 12 minutes on 2 cores) into {}",
        binary.display()
    );
    let started = std::time::Instant::now();
    let complete = |dir: &Path| dir.join("bin").join(BINARY).is_file();
    install_atomically(root, &install_name(), "para", complete, |work| {
        // cargo's target directory, beside the install and removed after the build.
        let mut build = work.as_os_str().to_owned();
        build.push("-build");
        let status = Command::new(&cargo)
            .args(["install", "para", "--version", PARA_VERSION, "--locked"])
            .arg("--root")
            .arg(work)
            .env("CARGO_TARGET_DIR", &build)
            // Outside the repository: its .cargo/config.toml is no concern of this build.
            .current_dir(root)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {}", cargo.display()));
        let _ = std::fs::remove_dir_all(&build);
        match status? {
            s if s.success() && complete(work) => Ok(()),
            s => bail!(
                "cargo install para --version {PARA_VERSION} failed ({s}); its output is above"
            ),
        }
    })?;
    eprintln!(
        "para {PARA_VERSION}: built in {} s, cached at {}",
        started.elapsed().as_secs(),
        binary.display()
    );
    Ok(binary)
}

/// The binary, installed at most once per test process (see [`install`]).
///
/// # Errors
/// As [`install`].
pub async fn binary() -> anyhow::Result<PathBuf> {
    static BINARY_PATH: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BINARY_PATH
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(install)
                .await
                .context("the para install task panicked")?
        })
        .await
        .cloned()
}

/// How to run para.
#[derive(Debug, Clone)]
pub struct ParaConfig {
    /// The stratum endpoint (the proxy's listen address).
    pub endpoint: SocketAddr,
    /// `--username`: a Bitcoin address, a dot, a worker name.
    pub username: String,
    /// `--cpu-cores` (default 1).
    pub cpu_cores: usize,
    /// `--throttle`: the hash rate para holds itself to, in para's notation (`"200K"` is
    /// 200,000 hashes a second); `None` hashes at full speed.
    pub throttle: Option<String>,
}

impl ParaConfig {
    /// One core, unthrottled, username `REGTEST_BCRT_P2WPKH.para1`.
    pub fn new(endpoint: SocketAddr) -> Self {
        Self {
            endpoint,
            username: format!("{REGTEST_BCRT_P2WPKH}.para1"),
            cpu_cores: 1,
            throttle: None,
        }
    }
}

/// A running `para miner`, owned by the test: killed on drop, its directory removed.
#[derive(Debug)]
pub struct Para {
    child: Option<Child>,
    dir: PathBuf,
}

/// The log file (para's stderr) in a [`Para`]'s directory.
const LOG: &str = "para.log";
/// The file that gets para's stdout (its shares as JSON at exit).
const STDOUT: &str = "shares.json";

impl Para {
    /// Installs para if needed (see [`binary`]) and starts `para miner` under `config`.
    ///
    /// # Errors
    /// The install fails, the temporary directory cannot be made, or the process cannot be
    /// started.
    pub async fn start(config: &ParaConfig) -> anyhow::Result<Para> {
        let binary = binary().await?;
        let dir = make_temp_dir("para-miner")?;
        let spawned = (|| -> anyhow::Result<Child> {
            let log = File::create(dir.join(LOG))?;
            let stdout = File::create(dir.join(STDOUT))?;
            let mut cmd = Command::new(&binary);
            cmd.arg("miner")
                .arg("--username")
                .arg(&config.username)
                .args(["--mode", "continuous"])
                .arg("--cpu-cores")
                .arg(config.cpu_cores.to_string());
            if let Some(rate) = &config.throttle {
                cmd.arg("--throttle").arg(rate);
            }
            cmd.arg(config.endpoint.to_string())
                .env("RUST_LOG", "para=info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(log)
                .current_dir(&dir);
            cmd.spawn()
                .with_context(|| format!("running {}", binary.display()))
        })();
        match spawned {
            Ok(child) => Ok(Para {
                child: Some(child),
                dir,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// The process id of para (the child this value owns); 0 once stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What para logged so far (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(LOG)).unwrap_or_default()
    }

    /// The log so far, read as a [`ParaReport`] without shares (para prints those at exit).
    pub fn report_so_far(&self) -> ParaReport {
        ParaReport::from_output(&self.log(), "", None)
    }

    /// Whether para has exited (by itself: it gives up after its reconnect backoff, or on a
    /// fatal error).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Waits, up to `wait`, until `cond` holds on what para logged so far; checks every
    /// 100 ms. Returns whether it did.
    pub async fn wait_for(&mut self, wait: Duration, cond: impl Fn(&ParaReport) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if cond(&self.report_so_far()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || self.exited() {
                return cond(&self.report_so_far());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops para: SIGTERM to its process id, up to `grace` for it to print its shares and
    /// exit, then SIGKILL. Returns what it logged and printed.
    pub async fn stop(mut self, grace: Duration) -> ParaReport {
        let mut status = None;
        if let Some(mut child) = self.child.take() {
            status = child.try_wait().ok().flatten();
            if status.is_none() {
                // Our own child, by its id.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = tokio::time::Instant::now() + grace;
                while status.is_none() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    status = child.try_wait().ok().flatten();
                }
                if status.is_none() {
                    let _ = child.kill();
                    status = child.wait().ok();
                }
            }
        }
        let stdout = std::fs::read_to_string(self.dir.join(STDOUT)).unwrap_or_default();
        ParaReport::from_output(&self.log(), &stdout, status)
    }

    /// This run's directory (removed on drop): `para.log` (stderr), `shares.json` (stdout).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Para {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child only, by its handle; fails harmlessly if it already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One share para found, as it prints them at exit.
#[derive(Debug, Clone, PartialEq)]
pub struct ParaShare {
    /// The extranonce1 para was given.
    pub extranonce1: Vec<u8>,
    /// Its extranonce2.
    pub extranonce2: Vec<u8>,
    /// The job id.
    pub job_id: String,
    /// The header's nonce.
    pub nonce: u32,
    /// The header's time.
    pub ntime: u32,
    /// The rolled version bits (inside the granted mask), when version rolling is on.
    pub version_bits: Option<u32>,
}

impl ParaShare {
    /// The share as a `mining.submit` of `worker` (what para sent).
    pub fn to_submit(&self, worker: &str) -> Submit {
        Submit {
            worker: worker.into(),
            job_id: self.job_id.clone(),
            extranonce2: self.extranonce2.clone(),
            ntime: self.ntime,
            nonce: self.nonce,
            version_bits: self.version_bits,
        }
    }
}

/// para's JSON for a share: every field a hex string.
#[derive(Deserialize)]
struct RawShare {
    enonce1: String,
    enonce2: String,
    job_id: String,
    nonce: String,
    ntime: String,
    version_bits: Option<String>,
}

fn hex_bytes(s: &str) -> anyhow::Result<Vec<u8>> {
    stratum_proto::job::decode_hex(s).ok_or_else(|| anyhow!("not hex: {s:?}"))
}

fn hex_u32(s: &str) -> anyhow::Result<u32> {
    u32::from_str_radix(s, 16).map_err(|_| anyhow!("not a hex u32: {s:?}"))
}

impl RawShare {
    fn parse(self) -> anyhow::Result<ParaShare> {
        Ok(ParaShare {
            extranonce1: hex_bytes(&self.enonce1)?,
            extranonce2: hex_bytes(&self.enonce2)?,
            job_id: self.job_id,
            nonce: hex_u32(&self.nonce)?,
            ntime: hex_u32(&self.ntime)?,
            version_bits: self.version_bits.as_deref().map(hex_u32).transpose()?,
        })
    }
}

/// What one para run logged and printed.
#[derive(Debug, Clone, Default)]
pub struct ParaReport {
    /// The extranonce1 (hex) and extranonce2 size of its last authorize
    /// (`Authorized: enonce1=…, enonce2_size=…`).
    pub authorized: Option<(String, usize)>,
    /// The version-rolling mask granted at configure (`Version rolling enabled: mask=…`).
    pub version_mask: Option<u32>,
    /// Shares found (`Valid share found`).
    pub found: usize,
    /// Submits answered `true` (`submitted successfully`).
    pub accepted: usize,
    /// The log lines of submits that failed (refused, or no answer).
    pub failed: Vec<String>,
    /// Difficulties the pool set, in order (`Updated pool difficulty: …`).
    pub difficulties: Vec<f64>,
    /// The shares para printed at exit (empty while it runs or when killed).
    pub shares: Vec<ParaShare>,
    /// Why its stdout could not be read as shares, if it could not.
    pub shares_error: Option<String>,
    /// Its exit status, once stopped.
    pub exit: Option<ExitStatus>,
    /// Its whole log (stderr).
    pub log: String,
}

impl ParaReport {
    /// Reads para's stderr log and stdout.
    pub fn from_output(log: &str, stdout: &str, exit: Option<ExitStatus>) -> ParaReport {
        let mut r = ParaReport {
            exit,
            log: log.to_owned(),
            ..ParaReport::default()
        };
        for line in log.lines() {
            if let Some(rest) = after(line, "Authorized: enonce1=") {
                let e1 = rest.split(',').next().unwrap_or("").trim().to_owned();
                let size = after(rest, "enonce2_size=")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                r.authorized = Some((e1, size));
            } else if let Some(rest) = after(line, "Version rolling enabled: mask=") {
                r.version_mask = parse_logged_version(rest);
            } else if line.contains("Valid share found") {
                r.found += 1;
            } else if line.contains("submitted successfully") {
                r.accepted += 1;
            } else if line.contains("Failed to submit share") {
                r.failed.push(line.to_owned());
            } else if let Some(rest) = after(line, "Updated pool difficulty: ") {
                if let Ok(d) = rest.trim().parse() {
                    r.difficulties.push(d);
                }
            }
        }
        if !stdout.trim().is_empty() {
            match serde_json::from_str::<Vec<RawShare>>(stdout)
                .map_err(anyhow::Error::from)
                .and_then(|raw| raw.into_iter().map(RawShare::parse).collect())
            {
                Ok(shares) => r.shares = shares,
                Err(e) => r.shares_error = Some(format!("{e}: {stdout}")),
            }
        }
        r
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// The mask in para's log, `Some(Version(Version(536862720)))` (rust-bitcoin's debug form of
/// a signed consensus version): the first integer in `rest`, read as an `i32`'s bits.
fn parse_logged_version(rest: &str) -> Option<u32> {
    let start = rest.find(|c: char| c == '-' || c.is_ascii_digit())?;
    let digits: String = rest[start..]
        .chars()
        .enumerate()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
        .map(|(_, c)| c)
        .collect();
    digits.parse::<i32>().ok().map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_and_the_shares_printed_at_exit_are_read() {
        let log = "\
2026-11-30T17:00:00.000000Z  INFO Version rolling enabled: mask=Some(Version(Version(536862720)))
2026-11-30T17:00:00.000100Z  INFO Authorized: enonce1=a100000100, enonce2_size=7
2026-11-30T17:00:00.000200Z  INFO Updated pool difficulty: 0.0000152587890625
2026-11-30T17:00:00.100000Z  INFO Valid share found with difficulty=0.0001 version_bits=Some(..)
2026-11-30T17:00:00.100100Z  INFO Share for job a000001 submitted successfully
2026-11-30T17:00:00.200000Z  INFO Valid share found with difficulty=0.00002 version_bits=None
2026-11-30T17:00:00.200100Z  WARN Failed to submit share for job a000001: SubmitFalse
";
        let stdout = r#"[{"enonce1":"a100000100","enonce2":"00000000000000","job_id":"a000001",
            "nonce":"00000b07","ntime":"6b0d54b4","username":"x.y","version_bits":"04534000"}]"#;
        let r = ParaReport::from_output(log, stdout, None);
        assert_eq!(r.version_mask, Some(0x1fff_e000));
        assert_eq!(r.authorized, Some(("a100000100".into(), 7)));
        assert_eq!(r.difficulties, vec![1.0 / 65536.0]);
        assert_eq!((r.found, r.accepted, r.failed.len()), (2, 1, 1));
        assert_eq!(r.shares_error, None);
        assert_eq!(
            r.shares,
            vec![ParaShare {
                extranonce1: vec![0xa1, 0, 0, 1, 0],
                extranonce2: vec![0; 7],
                job_id: "a000001".into(),
                nonce: 0xb07,
                ntime: 0x6b0d_54b4,
                version_bits: Some(0x0453_4000),
            }]
        );
    }

    #[test]
    fn a_cached_binary_of_this_version_is_reused_without_a_build() {
        let root = make_temp_dir("para-cache-test").unwrap();
        let bin = root.join("para-0.6.0").join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("para"), b"").unwrap();
        // No cargo run: the path comes back at once.
        let no_cargo = || -> anyhow::Result<PathBuf> { panic!("no build for a cached para") };
        assert_eq!(install_into(&root, no_cargo).unwrap(), bin.join("para"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A stand-in for `cargo install ... --root DIR`: writes `DIR/bin/para` and, beside it,
    /// the `CARGO_TARGET_DIR` it was given; exits with `status`.
    fn fake_cargo(dir: &Path, status: u8) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-cargo");
        let script = format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=$2; shift; done\n\
             mkdir -p \"$root/bin\" && echo ok > \"$root/bin/para\" && \
             echo \"$CARGO_TARGET_DIR\" > \"$root/target-dir\"\nexit {status}\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The names in `root`, sorted.
    fn names(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_missing_para_is_built_in_a_private_directory_and_moved_into_place_whole() {
        let tools = make_temp_dir("para-fake-cargo").unwrap();
        let root = tools.join("cache");
        let cargo = fake_cargo(&tools, 0);
        let binary = install_into(&root, || Ok(cargo.clone())).unwrap();
        assert_eq!(binary, root.join("para-0.6.0").join("bin").join("para"));
        assert_eq!(std::fs::read_to_string(&binary).unwrap(), "ok\n");
        // Its own target dir, under the cache root, removed afterwards; nothing else left.
        let target_dir = std::fs::read_to_string(root.join("para-0.6.0").join("target-dir"));
        let target_dir = PathBuf::from(target_dir.unwrap().trim());
        assert!(target_dir.starts_with(&root), "{}", target_dir.display());
        assert!(!target_dir.exists());
        assert_eq!(names(&root), ["para-0.6.0"]);

        // A failed build leaves nothing behind, and says so.
        let root = tools.join("cache2");
        let failing = fake_cargo(&tools, 1);
        let err = install_into(&root, || Ok(failing.clone())).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        assert!(names(&root).is_empty(), "{:?}", names(&root));
        std::fs::remove_dir_all(&tools).unwrap();
    }

    #[test]
    fn a_negative_logged_mask_is_read_as_its_bits_and_bad_stdout_is_reported() {
        assert_eq!(
            parse_logged_version("Some(Version(Version(-1)))"),
            Some(u32::MAX)
        );
        assert_eq!(parse_logged_version("None"), None);
        let r = ParaReport::from_output("", "not json", None);
        assert!(r.shares.is_empty());
        assert!(r.shares_error.is_some());
    }
}
