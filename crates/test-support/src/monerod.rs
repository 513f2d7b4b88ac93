//! A real Monero node for tests: `monerod` in regression-test mode on loopback.
//!
//! [`Monerod::start`] runs `monerod --regtest --offline --fixed-difficulty N` with a fresh data
//! directory under the system temp dir and free loopback ports for RPC and p2p, and waits until
//! its JSON-RPC answers. The chain starts at height 1 (the genesis block only); every block
//! needs `N` expected hashes, so a RandomX light miner (about 35 H/s per core) finds one at
//! difficulty 100 in a few seconds.
//!
//! Dropping the [`Monerod`] kills the child process it started (by its own handle, nothing
//! else) and removes the data directory.
//!
//! The binary is `$MONEROD` when set, else `monerod` from `PATH` (Debian: `apt-get install -y
//! monero`; tested with 0.18).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// A valid mainnet wallet address, accepted by regtest nodes as the coinbase destination
/// (from `docs/reference/monerod-regtest.md`).
pub const REGTEST_WALLET: &str =
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// How long [`Monerod::start`] waits for the RPC server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often [`Monerod::start`] asks whether the RPC server is up.
const START_POLL: Duration = Duration::from_millis(200);
/// How many times [`Monerod::start`] tries fresh ports when the node exits while starting.
const START_ATTEMPTS: usize = 3;
/// The file in the data directory that gets the node's stdout and stderr.
const CONSOLE_LOG: &str = "console.log";

/// A running regtest `monerod`, owned by the test. Killed, and its data directory removed, on
/// drop.
#[derive(Debug)]
pub struct Monerod {
    child: Child,
    rpc_port: u16,
    data_dir: PathBuf,
    client: reqwest::Client,
}

impl Monerod {
    /// Starts a regtest node whose every block has difficulty `fixed_difficulty` (hashes per
    /// block, on average), and waits until its JSON-RPC answers `get_info`.
    ///
    /// # Errors
    /// `monerod` is not installed (the message says how to install it); the data directory
    /// cannot be made; the node exits while starting (the error holds the tail of its console
    /// output; after three tries with fresh ports); or it does not answer within 60 s.
    pub async fn start(fixed_difficulty: u64) -> anyhow::Result<Monerod> {
        let binary = find_monerod()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary, fixed_difficulty).await {
                Ok(node) => return Ok(node),
                Err(StartError::Exited(e)) => last_error = Some(e),
                Err(StartError::Fatal(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("monerod did not start")))
    }

    async fn start_once(binary: &Path, fixed_difficulty: u64) -> Result<Monerod, StartError> {
        let (rpc_port, p2p_port) = free_ports().map_err(StartError::Fatal)?;
        let data_dir = make_data_dir().map_err(StartError::Fatal)?;
        let console = File::create(data_dir.join(CONSOLE_LOG))
            .and_then(|f| Ok((f.try_clone()?, f)))
            .with_context(|| format!("creating the console log in {}", data_dir.display()));
        let (stdout, stderr) = match console {
            Ok(files) => files,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                return Err(StartError::Fatal(e));
            }
        };
        let child = Command::new(binary)
            .args(["--regtest", "--offline", "--fixed-difficulty"])
            .arg(fixed_difficulty.to_string())
            .args(["--no-igd", "--non-interactive", "--no-zmq", "--data-dir"])
            .arg(&data_dir)
            .args(["--rpc-bind-ip", "127.0.0.1", "--rpc-bind-port"])
            .arg(rpc_port.to_string())
            .args(["--p2p-bind-ip", "127.0.0.1", "--p2p-bind-port"])
            .arg(p2p_port.to_string())
            // No self-signed certificate to generate (that alone takes seconds), no update
            // checks, no DNS, no peers, no bans of the tests' deliberately bad blocks.
            .args(["--rpc-ssl", "disabled", "--check-updates", "disabled"])
            .args(["--disable-dns-checkpoints", "--disable-rpc-ban"])
            .args(["--out-peers", "0", "--in-peers", "0"])
            .args(["--db-sync-mode", "fastest:async:1000", "--log-level", "0"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                return Err(StartError::Fatal(
                    anyhow!(e).context(format!("running {}", binary.display())),
                ));
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .map_err(|e| StartError::Fatal(e.into()));
        // From here on, dropping `node` kills the child and removes the directory.
        let mut node = Monerod {
            child,
            rpc_port,
            data_dir,
            client: client?,
        };
        node.wait_ready().await?;
        tracing::debug!(rpc_port, p2p_port, "monerod regtest node is up");
        Ok(node)
    }

    async fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(StartError::Exited(anyhow!(
                        "monerod exited while starting ({status}); its output ends with:\n{}",
                        self.log_tail(4096)
                    )))
                }
                Ok(None) => {}
                Err(e) => return Err(StartError::Fatal(e.into())),
            }
            let probe =
                tokio::time::timeout(Duration::from_secs(2), self.call("get_info", json!({})));
            if let Ok(Ok(_)) = probe.await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StartError::Fatal(anyhow!(
                    "monerod did not answer get_info within {START_TIMEOUT:?}; its output ends with:\n{}",
                    self.log_tail(4096)
                )));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// The RPC base address, `http://127.0.0.1:PORT` (JSON-RPC is at `/json_rpc` below it).
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The RPC endpoint as `127.0.0.1:PORT`, the form a pool entry's `url` takes.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    /// The process id of the node (the child this value owns).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's data directory (removed on drop). Its `console.log` holds the node's output.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// One JSON-RPC call to the node: the `result` of `method` with `params`.
    ///
    /// # Errors
    /// The HTTP exchange fails, the answer is not JSON, or it carries a JSON-RPC `error`
    /// (its code and message are in the error).
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": "0", "method": method, "params": params});
        let reply: Value = self
            .client
            .post(format!("{}/json_rpc", self.rpc_url()))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method}: monerod unreachable"))?
            .error_for_status()
            .with_context(|| format!("{method}: HTTP error"))?
            .json()
            .await
            .with_context(|| format!("{method}: answer is not JSON"))?;
        if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
            bail!("{method}: monerod error {error}");
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{method}: answer without a result: {reply}"))
    }

    /// The chain height: the number of blocks, genesis included (1 on a new chain); the next
    /// block to mine has this height.
    ///
    /// # Errors
    /// As [`Monerod::call`], or `get_block_count` without a numeric `count`.
    pub async fn height(&self) -> anyhow::Result<u64> {
        let result = self.call("get_block_count", json!({})).await?;
        result["count"]
            .as_u64()
            .ok_or_else(|| anyhow!("get_block_count without a count: {result}"))
    }

    /// Has the node mine `count` blocks itself (`generateblocks`, regtest only) to
    /// [`REGTEST_WALLET`]; returns the new height. The node hashes with RandomX too, so this
    /// takes about as long as mining them.
    ///
    /// # Errors
    /// As [`Monerod::call`], or an answer without a numeric `height`.
    pub async fn generate_blocks(&self, count: u64) -> anyhow::Result<u64> {
        let params = json!({"amount_of_blocks": count, "wallet_address": REGTEST_WALLET});
        self.call("generateblocks", params).await?;
        self.height().await
    }

    /// The last `max_bytes` bytes (at most) of the node's console output, for error messages.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        let read = || -> std::io::Result<String> {
            let mut file = File::open(self.data_dir.join(CONSOLE_LOG))?;
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        read().unwrap_or_else(|e| format!("(no console log: {e})"))
    }
}

impl Drop for Monerod {
    fn drop(&mut self) {
        // Our own child only, by its handle; `kill` fails harmlessly if it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// How one start attempt failed: `Exited` may be a lost race for a port and is retried.
enum StartError {
    Exited(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<StartError> for anyhow::Error {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Exited(e) | StartError::Fatal(e) => e,
        }
    }
}

/// `$MONEROD`, else the first `monerod` on `PATH`.
fn find_monerod() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MONEROD").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("MONEROD={} is not a file", path.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("monerod"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!(
                "monerod is not on PATH: install it (`apt-get install -y monero`) or set MONEROD"
            )
        })
}

/// Two distinct free loopback ports: bound together, then released for the node to take.
pub(crate) fn free_ports() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let b = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// A new, empty directory under the system temp dir, unique to this process and call.
fn make_data_dir() -> anyhow::Result<PathBuf> {
    make_temp_dir("monerod-regtest")
}

/// A new, empty directory `PREFIX-PID-N-NANOS` under the system temp dir, unique to this
/// process and call.
pub(crate) fn make_temp_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos:08x}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(anyhow!(e).context(format!("creating {}", dir.display())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn node_starts_mines_and_is_cleaned_up() {
        let node = tokio::time::timeout(Duration::from_secs(90), Monerod::start(10))
            .await
            .expect("start within 90 s")
            .expect("monerod starts (apt-get install -y monero)");
        assert_eq!(
            node.height().await.unwrap(),
            1,
            "a new chain holds the genesis block"
        );
        assert_eq!(
            node.host_port(),
            node.rpc_url().trim_start_matches("http://")
        );
        let info = node.call("get_info", json!({})).await.unwrap();
        assert_eq!(info["nettype"], "fakechain");
        assert_eq!(info["difficulty"], 10);
        assert_eq!(node.generate_blocks(2).await.unwrap(), 3);
        let err = node.call("no_such_method", json!({})).await.unwrap_err();
        assert!(err.to_string().contains("no_such_method"), "{err:#}");

        let dir = node.data_dir().to_path_buf();
        let proc_entry = PathBuf::from(format!("/proc/{}", node.pid()));
        assert!(dir.is_dir());
        drop(node);
        assert!(!dir.exists(), "data dir removed");
        if cfg!(target_os = "linux") {
            assert!(!proc_entry.exists(), "process gone");
        }
    }

    #[test]
    fn ports_are_distinct_and_dirs_unique() {
        let (a, b) = free_ports().unwrap();
        assert_ne!(a, b);
        let d1 = make_data_dir().unwrap();
        let d2 = make_data_dir().unwrap();
        assert_ne!(d1, d2);
        std::fs::remove_dir(d1).unwrap();
        std::fs::remove_dir(d2).unwrap();
    }
}
