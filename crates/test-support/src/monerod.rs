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

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::node::{
    find_program, free_ports, rpc_client, start_with_retries, wait_ready, Node, NodeProcess,
    StartError,
};

/// A valid mainnet wallet address, accepted by regtest nodes as the coinbase destination
/// (from `docs/reference/monerod-regtest.md`).
pub const REGTEST_WALLET: &str =
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";

/// How often [`Monerod::start`] asks whether the RPC server is up.
const START_POLL: Duration = Duration::from_millis(200);

/// A running regtest `monerod`, owned by the test. Killed, and its data directory removed, on
/// drop.
#[derive(Debug)]
pub struct Monerod {
    process: NodeProcess,
    rpc_port: u16,
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
        let binary = find_program(
            "MONEROD",
            "monerod",
            "install it (`apt-get install -y monero`)",
        )?;
        start_with_retries("monerod", || Self::start_once(&binary, fixed_difficulty)).await
    }

    async fn start_once(binary: &Path, fixed_difficulty: u64) -> Result<Monerod, StartError> {
        let (rpc_port, p2p_port) = free_ports().map_err(StartError::Fatal)?;
        let client = rpc_client()?;
        let process = NodeProcess::spawn("monerod", "monerod-regtest", binary, |cmd, data_dir| {
            cmd.args(["--regtest", "--offline", "--fixed-difficulty"])
                .arg(fixed_difficulty.to_string())
                .args(["--no-igd", "--non-interactive", "--no-zmq", "--data-dir"])
                .arg(data_dir)
                .args(["--rpc-bind-ip", "127.0.0.1", "--rpc-bind-port"])
                .arg(rpc_port.to_string())
                .args(["--p2p-bind-ip", "127.0.0.1", "--p2p-bind-port"])
                .arg(p2p_port.to_string())
                // No self-signed certificate to generate (that alone takes seconds), no update
                // checks, no DNS, no peers, no bans of the tests' deliberately bad blocks.
                .args(["--rpc-ssl", "disabled", "--check-updates", "disabled"])
                .args(["--disable-dns-checkpoints", "--disable-rpc-ban"])
                .args(["--out-peers", "0", "--in-peers", "0"])
                .args(["--db-sync-mode", "fastest:async:1000", "--log-level", "0"]);
        })?;
        // From here on, dropping `node` kills the child and removes the directory.
        let mut node = Monerod {
            process,
            rpc_port,
            client,
        };
        wait_ready(&mut node, START_POLL).await?;
        tracing::debug!(rpc_port, p2p_port, "monerod regtest node is up");
        Ok(node)
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
        self.process.pid()
    }

    /// The node's data directory (removed on drop). Its `console.log` holds the node's output.
    pub fn data_dir(&self) -> &Path {
        self.process.dir()
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
    /// monerod's `generateblocks` can fail while another client (the proxy under test) asks
    /// for block templates at the same moment (seen under load: the call errs and no block is
    /// added); a failed call is tried again, up to 5 times, for the blocks still missing.
    ///
    /// # Errors
    /// As [`Monerod::call`] (the last attempt's error, after 5), or an answer without a
    /// numeric `height`.
    pub async fn generate_blocks(&self, count: u64) -> anyhow::Result<u64> {
        let target = self.height().await? + count;
        let mut attempt = 0;
        loop {
            let height = self.height().await?;
            if height >= target {
                return Ok(height);
            }
            let params =
                json!({"amount_of_blocks": target - height, "wallet_address": REGTEST_WALLET});
            match self.call("generateblocks", params).await {
                Ok(_) => return self.height().await,
                Err(error) if attempt >= 4 => return Err(error),
                Err(_) => attempt += 1,
            }
        }
    }

    /// The last `max_bytes` bytes (at most) of the node's console output, for error messages.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        self.process.log_tail(max_bytes)
    }
}

impl Node for Monerod {
    const PROBE_METHOD: &'static str = "get_info";

    fn process(&mut self) -> &mut NodeProcess {
        &mut self.process
    }

    async fn probe(&self) -> anyhow::Result<()> {
        self.call("get_info", json!({})).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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
}
