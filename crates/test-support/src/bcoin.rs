//! A real Bitcoin node for tests: bcoin 1.0.2 (Node.js) in regtest mode on loopback.
//!
//! [`Bcoin::start`] runs `node node_modules/bcoin/bin/node --network=regtest --memory=true
//! --no-wallet --listen=false ...` with its JSON-RPC server on a free loopback port, a random
//! API key and a fresh prefix directory under the system temp dir, and waits until the RPC
//! answers. The chain starts at height 0 (the genesis block only); regtest's target
//! (`bits` `207fffff`) is met by one header hash in two, so a CPU finds a block in a few tries.
//! Segwit turns active after 432 blocks ([`SEGWIT_HEIGHT`]); [`Bcoin::generate_to_address`]
//! gets there in about a second.
//!
//! # Installation
//! bcoin is installed with npm, once, into a cache directory outside the repository:
//! `$BCOIN_CACHE_DIR` when set, else `$XDG_CACHE_HOME/stratum-proxy` or
//! `~/.cache/stratum-proxy`, in a subdirectory named after a SHA-256 of the `package.json`
//! below (so a change of recipe installs afresh). The recipe: `"bcoin": "1.0.2"` with
//! `"overrides": {"leveldown": "6.1.1"}` (leveldown 4 does not build on current Node; 6.1.1
//! ships prebuilt N-API binaries), `npm install --ignore-scripts`, `npm rebuild mrmr`. It runs
//! in a private directory that is renamed into place when complete, so parallel test
//! processes never see half an install. `node` and `npm` come from `PATH` (Debian: `apt-get
//! install -y nodejs npm`; tested with Node 20); `$NODE` and `$NPM` override them.
//!
//! Dropping the [`Bcoin`] kills the child process it started (by its own handle, nothing
//! else) and removes the prefix directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::node::{
    cache_root, find_program, free_ports, install_atomically, rpc_client, start_with_retries,
    wait_ready, Node, NodeProcess, StartError,
};

/// The `package.json` of the bcoin install (its hash names the cache directory).
pub const PACKAGE_JSON: &str = r#"{
  "name": "stratum-proxy-bcoin-regtest",
  "private": true,
  "description": "bcoin regtest node for the stratum proxy's tests",
  "dependencies": { "bcoin": "1.0.2" },
  "overrides": { "leveldown": "6.1.1" }
}
"#;

/// A regtest P2WPKH address in bcoin's form (bech32 prefix `rb`, key hash `11` × 20), for
/// [`Bcoin::generate_to_address`]. rust-bitcoin's regtest prefix is `bcrt`, which bcoin refuses.
pub const REGTEST_P2WPKH: &str = "rb1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg328fddy";
/// The same key hash as a regtest P2PKH address in bcoin's form (base58 version 60, `R...`).
pub const REGTEST_P2PKH: &str = "RAqS1bAuWqW2f6ufsU5H4XpKfy5Pqj2oHz";
/// The number of blocks after which segwit is active on bcoin's regtest: a template for
/// height `SEGWIT_HEIGHT + 1` lists `!segwit` in its `rules`.
pub const SEGWIT_HEIGHT: u64 = 432;

/// How often [`Bcoin::start`] asks whether the RPC server is up.
const START_POLL: Duration = Duration::from_millis(100);
/// What a missing `node` or `npm` error says to do.
const NODE_INSTALL: &str = "install Node.js (`apt-get install -y nodejs npm`)";
/// The node's entry point inside an install directory.
const NODE_SCRIPT: &str = "node_modules/bcoin/bin/node";

/// The install directory, made once per test process.
static INSTALL: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// A running regtest bcoin node, owned by the test. Killed, and its prefix directory removed,
/// on drop.
#[derive(Debug)]
pub struct Bcoin {
    process: NodeProcess,
    rpc_port: u16,
    api_key: String,
    client: reqwest::Client,
}

impl Bcoin {
    /// Installs bcoin if it is not in the cache yet (see the module doc), starts a regtest
    /// node and waits until its JSON-RPC answers `getblockcount`.
    ///
    /// # Errors
    /// `node` or `npm` is missing (the message says how to install them); the npm install
    /// fails (its output is in the error); the prefix directory cannot be made; the node
    /// exits while starting (the error holds the tail of its console output; after three tries
    /// with fresh ports); or it does not answer within 60 s.
    pub async fn start() -> anyhow::Result<Bcoin> {
        let install = INSTALL
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(install_bcoin)
                    .await
                    .context("the bcoin install task panicked")?
            })
            .await?;
        let node = find_program("NODE", "node", NODE_INSTALL)?;
        start_with_retries("bcoin", || Self::start_once(&node, install)).await
    }

    async fn start_once(node: &Path, install: &Path) -> Result<Bcoin, StartError> {
        let (rpc_port, _) = free_ports().map_err(StartError::Fatal)?;
        let client = rpc_client()?;
        let api_key = format!("key{:016x}", rand::random::<u64>());
        let process = NodeProcess::spawn("bcoin", "bcoin-regtest", node, |cmd, prefix| {
            cmd.arg(install.join(NODE_SCRIPT))
                .args(["--network=regtest", "--memory=true", "--no-wallet"])
                .args(["--listen=false", "--max-outbound=1", "--workers=false"])
                .arg("--http-host=127.0.0.1")
                .arg(format!("--http-port={rpc_port}"))
                .arg(format!("--api-key={api_key}"))
                .arg(format!("--prefix={}", prefix.display()))
                .current_dir(install);
        })?;
        // From here on, dropping `bcoin` kills the child and removes the directory.
        let mut bcoin = Bcoin {
            process,
            rpc_port,
            api_key,
            client,
        };
        wait_ready(&mut bcoin, START_POLL).await?;
        tracing::debug!(rpc_port, "bcoin regtest node is up");
        Ok(bcoin)
    }

    /// The RPC address, `http://127.0.0.1:PORT/` (JSON-RPC is posted to `/`, with HTTP basic
    /// auth: any user name, the password [`Bcoin::api_key`]).
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.rpc_port)
    }

    /// The RPC endpoint as `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    /// The API key: the RPC's basic-auth password (a wrong one gets HTTP 401).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The process id of the node (the child this value owns).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The node's prefix directory (removed on drop). Its `console.log` holds the node's
    /// output.
    pub fn prefix(&self) -> &Path {
        self.process.dir()
    }

    /// One JSON-RPC call to the node: the `result` of `method` with `params` (a JSON array).
    ///
    /// # Errors
    /// The HTTP exchange fails, the answer is not JSON, or it carries a JSON-RPC `error`
    /// (its code and message are in the error).
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params});
        let response = self
            .client
            .post(self.rpc_url())
            .basic_auth("test", Some(&self.api_key))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{method}: bcoin unreachable"))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            bail!("{method}: bcoin refused the API key (HTTP 401)");
        }
        // JSON-RPC errors come with an error status and a JSON body: read the body.
        let reply: Value = response
            .json()
            .await
            .with_context(|| format!("{method}: answer is not JSON"))?;
        if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
            bail!("{method}: bcoin error {error}");
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{method}: answer without a result: {reply}"))
    }

    /// `getblocktemplate` with `rules: ["segwit"]` (bcoin refuses a request without it once
    /// segwit is active): the template object as the node sends it.
    ///
    /// # Errors
    /// As [`Bcoin::call`].
    pub async fn get_block_template(&self) -> anyhow::Result<Value> {
        self.call("getblocktemplate", json!([{"rules": ["segwit"]}]))
            .await
    }

    /// `submitblock` with a serialized block in hex: `Ok(None)` when the node accepted it,
    /// `Ok(Some(reason))` when it answered with a string such as `"rejected: high-hash"`.
    ///
    /// # Errors
    /// As [`Bcoin::call`] (a block that does not even parse gets a JSON-RPC error), or an
    /// answer that is neither null nor a string.
    pub async fn submit_block(&self, block_hex: &str) -> anyhow::Result<Option<String>> {
        match self.call("submitblock", json!([block_hex])).await? {
            Value::Null => Ok(None),
            Value::String(reason) => Ok(Some(reason)),
            other => bail!("submitblock: unexpected answer {other}"),
        }
    }

    /// The chain height: the number of blocks after the genesis block (0 on a new chain); the
    /// next block to mine has this height plus one.
    ///
    /// # Errors
    /// As [`Bcoin::call`], or a non-numeric answer.
    pub async fn block_count(&self) -> anyhow::Result<u64> {
        let result = self.call("getblockcount", json!([])).await?;
        result
            .as_u64()
            .ok_or_else(|| anyhow!("getblockcount: not a number: {result}"))
    }

    /// The hash of the chain tip, in the usual display (byte-reversed) hex.
    ///
    /// # Errors
    /// As [`Bcoin::call`], or a non-string answer.
    pub async fn best_block_hash(&self) -> anyhow::Result<String> {
        let result = self.call("getbestblockhash", json!([])).await?;
        result
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("getbestblockhash: not a string: {result}"))
    }

    /// Has the node mine `count` blocks itself (`generatetoaddress`) paying to `address` (in
    /// bcoin's regtest form, such as [`REGTEST_P2WPKH`]); returns their hashes, oldest first.
    /// 432 blocks take about a second.
    ///
    /// # Errors
    /// As [`Bcoin::call`] (an address bcoin does not parse: `-5 Invalid address.`), or an
    /// answer that is not a list of strings.
    pub async fn generate_to_address(
        &self,
        count: u64,
        address: &str,
    ) -> anyhow::Result<Vec<String>> {
        let result = self
            .call("generatetoaddress", json!([count, address]))
            .await?;
        result
            .as_array()
            .and_then(|hashes| {
                hashes
                    .iter()
                    .map(|h| h.as_str().map(str::to_owned))
                    .collect()
            })
            .ok_or_else(|| anyhow!("generatetoaddress: not a list of hashes: {result}"))
    }

    /// `sendrawtransaction`: puts a serialized transaction (hex) into the node's mempool, from
    /// where the next templates take it. Returns its txid.
    ///
    /// # Errors
    /// As [`Bcoin::call`] (the node's reason for refusing the transaction is in the error).
    pub async fn send_raw_transaction(&self, tx_hex: &str) -> anyhow::Result<String> {
        let result = self.call("sendrawtransaction", json!([tx_hex])).await?;
        result
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("sendrawtransaction: not a txid: {result}"))
    }

    /// The last `max_bytes` bytes (at most) of the node's console output, for error messages.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        self.process.log_tail(max_bytes)
    }
}

impl Node for Bcoin {
    const PROBE_METHOD: &'static str = "getblockcount";

    fn process(&mut self) -> &mut NodeProcess {
        &mut self.process
    }

    async fn probe(&self) -> anyhow::Result<()> {
        self.call("getblockcount", json!([])).await.map(drop)
    }
}

/// The install directory's name: `bcoin-` and the first 16 hex digits of the SHA-256 of
/// [`PACKAGE_JSON`].
fn install_name() -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, PACKAGE_JSON.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("bcoin-{hex}")
}

/// Returns the install directory, installing bcoin there first when it is not complete.
/// Blocking (runs npm).
fn install_bcoin() -> anyhow::Result<PathBuf> {
    let root = cache_root("BCOIN_CACHE_DIR")?;
    let target = root.join(install_name());
    if target.join(NODE_SCRIPT).is_file() {
        return Ok(target);
    }
    let npm = find_program("NPM", "npm", NODE_INSTALL)?;
    let complete = |dir: &Path| dir.join(NODE_SCRIPT).is_file();
    install_atomically(&root, &install_name(), "bcoin", complete, |work| {
        std::fs::write(work.join("package.json"), PACKAGE_JSON)?;
        let run = |args: &[&str]| -> anyhow::Result<()> {
            tracing::info!(dir = %work.display(), ?args, "installing bcoin with npm");
            let out = Command::new(&npm)
                .args(args)
                .current_dir(work)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {}", npm.display()))?;
            if !out.status.success() {
                bail!(
                    "npm {} failed ({}):\n{}\n{}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        };
        run(&["install", "--ignore-scripts", "--no-audit", "--no-fund"])?;
        run(&["rebuild", "mrmr"])?;
        if !complete(work) {
            bail!("npm install left no {NODE_SCRIPT} in {}", work.display());
        }
        Ok(())
    })
    .map_err(|e| e.context("installing bcoin 1.0.2 from npm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn node_starts_mines_and_is_cleaned_up() {
        let node = tokio::time::timeout(Duration::from_secs(300), Bcoin::start())
            .await
            .expect("install and start within 300 s")
            .expect("bcoin starts (apt-get install -y nodejs npm)");
        assert_eq!(node.block_count().await.unwrap(), 0, "a new chain");
        let genesis = node.best_block_hash().await.unwrap();
        assert_eq!(
            genesis, "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
            "bcoin's regtest genesis"
        );
        let template = node.get_block_template().await.unwrap();
        assert_eq!(template["height"], 1);
        assert_eq!(template["bits"], "207fffff");
        assert_eq!(template["previousblockhash"], genesis.as_str());

        let hashes = node.generate_to_address(2, REGTEST_P2WPKH).await.unwrap();
        assert_eq!(hashes.len(), 2);
        let more = node.generate_to_address(1, REGTEST_P2PKH).await.unwrap();
        assert_eq!(node.block_count().await.unwrap(), 3);
        assert_eq!(node.best_block_hash().await.unwrap(), more[0]);

        let err = node
            .generate_to_address(1, "not-an-address")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Invalid address"), "{err:#}");
        let err = node.submit_block("00").await.unwrap_err();
        assert!(err.to_string().contains("-22"), "{err:#}");
        let status = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(node.rpc_url())
            .basic_auth("test", Some("wrong key"))
            .json(&json!({"method": "getblockcount", "params": []}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(
            status,
            reqwest::StatusCode::UNAUTHORIZED,
            "the API key is required"
        );
        let err = node.call("no_such_method", json!([])).await.unwrap_err();
        assert!(err.to_string().contains("no_such_method"), "{err:#}");

        let dir = node.prefix().to_path_buf();
        let proc_entry = PathBuf::from(format!("/proc/{}", node.pid()));
        assert!(dir.is_dir());
        drop(node);
        assert!(!dir.exists(), "prefix dir removed");
        if cfg!(target_os = "linux") {
            assert!(!proc_entry.exists(), "process gone");
        }
    }

    #[test]
    fn the_install_is_named_after_the_recipe() {
        let name = install_name();
        assert_eq!(name.len(), "bcoin-".len() + 16);
        assert!(name.starts_with("bcoin-"));
        assert!(PACKAGE_JSON.contains(r#""bcoin": "1.0.2""#));
        assert!(PACKAGE_JSON.contains(r#""leveldown": "6.1.1""#));
        let _: Value = serde_json::from_str(PACKAGE_JSON).expect("package.json is JSON");
    }
}
