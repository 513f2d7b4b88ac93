//! The binary as an xmrig-proxy user runs it (issue 13 items 1, 2 and 5): the command line of
//! xmrig-proxy's README, its config file with comments and every documented key, and plain
//! log lines in the shape its log parsers read, with no colour on a pipe.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use test_support::miner::TestMiner;
use test_support::mock_pool::{make_job, MockPool};
use test_support::sv1_pool::{Sv1Pool, Sv1PoolConfig};

const BIN: &str = env!("CARGO_BIN_EXE_proxy-cli");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory of its own for each test, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("proxy-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running binary, stopped with SIGTERM (killed if it does not stop) when dropped.
struct Child(Option<std::process::Child>);

impl Child {
    /// SIGTERM, then everything it wrote.
    fn stop(mut self) -> Output {
        let child = self.0.take().unwrap();
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the binary with stdout and stderr piped (no terminal: no colour may appear).
fn spawn(args: &[&str], cwd: &Path) -> Child {
    let child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Child(Some(child))
}

/// Waits until the file at `path` holds every one of `wanted`; returns its text.
async fn log_with(path: &Path, wanted: &[&str]) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(path).unwrap_or_default();
        if wanted.iter().all(|w| text.contains(w)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("log lacks one of {wanted:?}:\n{text}");
}

async fn miner_at(port: u16) -> TestMiner {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if let Ok(m) = TestMiner::connect(addr).await {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy does not listen on {addr}");
}

fn no_escape(out: &Output) {
    assert!(!out.stdout.contains(&0x1b), "ESC on stdout");
    assert!(
        !out.stderr.contains(&0x1b),
        "ESC on stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmrig_proxys_command_line_runs_the_proxy_and_logs_plain_pool_and_job_lines() {
    let dir = Dir::new("flags");
    let pool = MockPool::start(make_job(1, 5000)).await.unwrap();
    let port = free_port();
    let (pool_addr, bind) = (pool.addr().to_string(), format!("127.0.0.1:{port}"));
    let log = dir.path("proxy.log");
    // As xmrig-proxy's README runs it, bare flags without a subcommand or config file.
    let child = spawn(
        &[
            "-o",
            &pool_addr,
            "-u",
            "WALLET",
            "-p",
            "x",
            "-b",
            &bind,
            "-l",
            log.to_str().unwrap(),
        ],
        &dir.0,
    );
    let mut m = miner_at(port).await;
    m.login("rig1").await.unwrap();
    assert!(m.job.is_some(), "the miner got a job through the proxy");
    let login = &pool.received("login")[0].params;
    assert_eq!(
        (login["login"].as_str(), login["pass"].as_str()),
        (Some("WALLET"), Some("x"))
    );
    let text = log_with(
        &log,
        &[
            &format!("use pool {pool_addr}"),
            &format!("new job from {pool_addr} diff "),
        ],
    )
    .await;
    drop(m);
    let out = child.stop();
    assert!(out.status.success(), "{out:?}");
    no_escape(&out);
    assert!(!text.contains('\u{1b}'), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use pool") && err.contains("stopped"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_line_comes_every_print_time_and_flags_override_the_file() {
    let dir = Dir::new("summary");
    let pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let port = free_port();
    let cfg = dir.path("config.json");
    // The file's pool is not there; -o replaces it. Its bind is replaced by -b.
    std::fs::write(
        &cfg,
        r#"{
            // xmrig-proxy style, with comments
            "bind": ["127.0.0.1:1"],
            "pools": [{"url": "127.0.0.1:1", "user": "FILE"},],
            "print-time": 1,
            "colors": true, /* a pipe gets none anyway */
        }"#,
    )
    .unwrap();
    let log = dir.path("proxy.log");
    let child = spawn(
        &[
            "run",
            "-c",
            cfg.to_str().unwrap(),
            "-o",
            &pool.addr().to_string(),
            "-u",
            "FLAG",
            "-b",
            &format!("127.0.0.1:{port}"),
            "--log-file",
            log.to_str().unwrap(),
        ],
        &dir.0,
    );
    let mut m = miner_at(port).await;
    m.login("w").await.unwrap();
    assert_eq!(pool.received("login")[0].params["login"], "FLAG");
    let text = log_with(&log, &["shares: 0/0 +0, upstreams: 1, miners: 1 (max 1)"]).await;
    let line = text.lines().find(|l| l.contains("kH/s, shares:")).unwrap();
    assert!(line.contains(" proxy 0.00 kH/s, shares: "), "{line}");
    let out = child.stop();
    assert!(out.status.success());
    no_escape(&out);
}

#[tokio::test]
async fn a_proxy_serving_two_families_prints_a_summary_line_per_family() {
    let dir = Dir::new("summary-families");
    let cn_pool = MockPool::start(make_job(1, 1000)).await.unwrap();
    let sv1_pool = Sv1Pool::start(Sv1PoolConfig::default()).await.unwrap();
    let cfg = dir.path("config.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{
                "bind": ["127.0.0.1:0", {{"host": "127.0.0.1", "port": 0, "protocol": "stratum-v1"}}],
                "pools": [
                    {{"url": "{}", "user": "CN"}},
                    {{"url": "{}", "user": "SV1", "protocol": "stratum-v1"}}
                ],
                "print-time": 1
            }}"#,
            cn_pool.addr(),
            sv1_pool.addr()
        ),
    )
    .unwrap();
    let log = dir.path("proxy.log");
    let child = spawn(
        &[
            "run",
            "-c",
            cfg.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
        ],
        &dir.0,
    );
    let text = log_with(
        &log,
        &[
            " proxy cryptonote 0.00 kH/s, shares: 0/0 +0, upstreams: ",
            " proxy stratum-v1 0.00 H/s, shares: 0/0 +0, upstreams: ",
        ],
    )
    .await;
    assert!(
        !text.contains(" proxy 0.00 kH/s"),
        "no one-family line beside them:\n{text}"
    );
    let out = child.stop();
    assert!(out.status.success());
    no_escape(&out);
}

/// An xmrig-proxy config.json with comments, trailing commas and every key xmrig-proxy
/// documents (its README and default config), written for this test.
const XMRIG_PROXY_CONFIG: &str = r#"
// Config of a farm's proxy, moved over from xmrig-proxy 6.26.
{
    "access-log-file": null,
    "access-password": null,
    "algo-ext": true,
    "api": {
        "id": "farm-1",          // shown by /1/summary
        "worker-id": null,
    },
    "http": {
        "enabled": true,
        "host": "127.0.0.1",
        "port": 0,
        "access-token": "t0ken",
        "restricted": true,
    },
    "autosave": true,
    "background": false,
    "bind": [
        {"host": "127.0.0.1", "port": 0, "tls": false},
        "127.0.0.1:0",
    ],
    "colors": true,
    "custom-diff": 0,
    "custom-diff-stats": false,
    "donate-level": 0,
    "donate-over-proxy": 0,
    "log-file": null,
    "mode": "nicehash",
    "pools": [
        {
            "algo": "rx/0",
            "coin": null,
            "url": "stratum+tcp://pool.example.com:3333",
            "user": "WALLET",
            "pass": "x",
            "rig-id": null,
            "nicehash": false,
            "keepalive": 60,             /* seconds, as xmrig takes it */
            "enabled": true,
            "tls": false,
            "sni": false,
            "tls-fingerprint": null,
            "daemon": false,
            "daemon-poll-interval": 1000,
            "daemon-job-timeout": 15000,
            "daemon-zmq-port": -1,
            "socks5": "127.0.0.1:9050",
            "self-select": null,
            "submit-to-origin": false,
        },
        {"url": "backup.example.com:443", "user": "WALLET", "tls": true, "sni": "backup.example.com", "keepalive": true},
    ],
    "print-time": 60,
    "retries": 2,
    "retry-pause": 1,
    "reuse-timeout": 0,
    "tls": {
        "enabled": false,
        "protocols": "TLSv1.2 TLSv1.3",
        "cert": null,
        "cert_key": null,
        "ciphers": null,
        "ciphersuites": "TLS_AES_256_GCM_SHA384",
        "dhparam": "/etc/ssl/dhparam.pem",
        "gen": null,
    },
    "dns": {"ip_version": 0, "ttl": 30},
    "user-agent": null,
    "syslog": false,
    "title": true,
    "verbose": false,
    "watch": true,
    "workers": true,
    "dry-run": false,
}
"#;

#[test]
fn an_xmrig_proxy_config_with_comments_and_every_key_checks_with_one_warning() {
    let dir = Dir::new("xmrig-config");
    let cfg = dir.path("config.json");
    std::fs::write(&cfg, XMRIG_PROXY_CONFIG).unwrap();
    for args in [
        vec!["check", "-c", cfg.to_str().unwrap()],
        vec!["--dry-run", "--config", cfg.to_str().unwrap()],
        // xmrig-proxy reads ./config.json without -c.
        vec!["--dry-run"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(&dir.0)
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {err}");
        no_escape(&out);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{args:?}: {err}");
        let w = warnings[0];
        for named in [
            "autosave (",
            "dns (",
            "pools[0].daemon-job-timeout (",
            "pools[0].daemon-zmq-port (",
            "tls.dhparam (",
            "title (",
        ] {
            assert!(w.contains(named), "{named} missing: {w}");
        }
        // Honoured keys are not named, nor keys whose value asks for nothing.
        for honoured in [
            "socks5",
            "sni",
            "keepalive",
            "ciphersuites",
            "print-time",
            "background",
            "coin",
        ] {
            assert!(!w.contains(honoured), "{honoured} named: {w}");
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("ok (2 bind, 2 pools, mode nicehash)"),
            "{stdout}"
        );
    }
}

/// Runs the proxy with `args` in `cwd`, asserts that it fails, and returns its stderr.
fn refused(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn extra_nonce_for_a_stratum_pool_and_a_missing_config_are_refused_with_a_clear_message() {
    let dir = Dir::new("refused");
    let err = refused(
        &["-o", "pool.example:3333", "-m", "extra_nonce", "--dry-run"],
        &dir.0,
    );
    assert!(
        err.contains("pools[0].daemon") && err.contains("\"extra_nonce\" works only with daemon"),
        "{err}"
    );
    let err = refused(
        &["-o", "pool.example:3333", "-m", "bogus", "--dry-run"],
        &dir.0,
    );
    assert!(
        err.contains("extra_nonce") && err.contains("nicehash") && err.contains("simple"),
        "{err}"
    );
    std::fs::write(
        dir.path("config.json"),
        r#"{"mode": "extra_nonce", "bind": ["127.0.0.1:0"], "pools": [{"url": "p:1"}]}"#,
    )
    .unwrap();
    let err = refused(&["check"], &dir.0);
    assert!(err.contains("pools[0].daemon"), "{err}");
    std::fs::write(
        dir.path("config.json"),
        r#"{"mode": "extra_nonce", "bind": ["127.0.0.1:0"],
            "pools": [{"url": "127.0.0.1:18081", "user": "W", "daemon": true}]}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check"])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("mode extra_nonce"), "{stdout}");
    std::fs::remove_file(dir.path("config.json")).unwrap();
    let err = refused(&[], &dir.0);
    assert!(err.contains("-c FILE") && err.contains("-o URL"), "{err}");
}

#[test]
fn help_lists_the_xmrig_proxy_options_with_defaults() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "-c, --config",
        "-o, --url",
        "-u, --user",
        "-p, --pass",
        "-b, --bind",
        "-m, --mode",
        "--tls ",
        "--api-port",
        "--api-access-token",
        "--no-color",
        "--log-file",
        "--dry-run",
        "[default: nicehash]",
        "[default: 0.0.0.0:3333]",
    ] {
        assert!(help.contains(opt), "{opt} not in:\n{help}");
    }
}

/// Runs `proxy-cli check` on a terminal: util-linux `script` gives it a pseudo-terminal as
/// stdout and stderr, and passes what it writes on.
fn check_on_a_terminal(dir: &Path, extra: &str, no_color_env: bool) -> Vec<u8> {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{BIN} check {extra}"), "/dev/null"])
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if no_color_env {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("util-linux `script` runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("config keys ignored: background"), "{text}");
    out.stdout
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color_or_the_no_color_variable() {
    let dir = Dir::new("colour");
    std::fs::write(
        dir.path("config.json"),
        r#"{"bind": ["127.0.0.1:0"], "pools": [{"url": "p:1"}], "background": true}"#,
    )
    .unwrap();
    assert!(
        check_on_a_terminal(&dir.0, "", false).contains(&0x1b),
        "colour on a terminal"
    );
    assert!(!check_on_a_terminal(&dir.0, "--no-color", false).contains(&0x1b));
    assert!(!check_on_a_terminal(&dir.0, "", true).contains(&0x1b));
    std::fs::write(
        dir.path("config.json"),
        r#"{"bind": ["127.0.0.1:0"], "pools": [{"url": "p:1"}], "background": true, "colors": false}"#,
    )
    .unwrap();
    assert!(!check_on_a_terminal(&dir.0, "", false).contains(&0x1b));
}
