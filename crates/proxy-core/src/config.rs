//! The proxy's configuration (go-proxy RFC §4, example in §23).
//!
//! JSON keys are the RFC's. Where xmrig-proxy spells a key or a value differently the
//! xmrig-proxy form is accepted too (`bind` entries as `"host:port"` strings, `workers` as a
//! boolean, `keepalive` as seconds), so an operator can point the proxy at the file they
//! already have. The file may hold `//` and `/* */` comments and trailing commas, as
//! xmrig-proxy's does (parsed by `serde_json_lenient`, Google's maintained fork of
//! serde_json: the same serde model, and errors that keep their line and column). Every key
//! of xmrig-proxy's config is either honoured or named, with the reason, in
//! [`Config::ignored_keys`] for one start-up warning ([`Config::ignored_warning`]; the table
//! is in `config/xmrig.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

pub use pool_client::{host_port, Keepalive, PoolConfig, Protocol, Sni};
use serde::{Deserialize, Deserializer, Serialize};

pub(crate) mod tls_settings;
mod xmrig;

/// Errors of loading or validating a config. Each names the key and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid JSON (comments and trailing commas allowed) of the expected
    /// shape; the message names the line and column. (A serde_json error, as the API's
    /// request bodies give; the config parser's errors are carried in one with their text.)
    #[error("config: parse failed: {0}")]
    Parse(#[from] serde_json::Error),
    /// A key has a value the proxy cannot use.
    #[error("config: invalid `{key}`: {message}")]
    Invalid {
        /// The JSON key, e.g. `pools[1].url`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Splitting mode (RFC §8, §9). Parsed from its name ([`Mode::from_str`](std::str::FromStr)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Up to 256 miners share one pool connection; each gets one fixed nonce byte.
    #[default]
    Nicehash,
    /// One pool connection per miner.
    Simple,
    /// xmrig-proxy's `extra_nonce`, for daemon upstreams only: miners share one block
    /// template (up to 256 a template), each with its own extra nonce in the template's
    /// reserved bytes, its own hashing blob and the whole nonce space.
    #[serde(rename = "extra_nonce")]
    ExtraNonce,
}

impl std::str::FromStr for Mode {
    type Err = String;

    /// `nicehash`, `simple` or `extra_nonce` (also `extranonce`, `extra-nonce`), any case.
    /// Anything else is refused with a message naming the modes there are.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nicehash" => Ok(Self::Nicehash),
            "simple" => Ok(Self::Simple),
            "extra_nonce" | "extranonce" | "extra-nonce" => Ok(Self::ExtraNonce),
            _ => Err(format!(
                "mode {s:?} is not a mode of this proxy; use \"nicehash\", \"simple\" or \"extra_nonce\""
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Nicehash => "nicehash",
            Mode::Simple => "simple",
            Mode::ExtraNonce => "extra_nonce",
        })
    }
}

/// One listen endpoint. Accepts `{"host":"0.0.0.0","port":3333,"tls":false,
/// "protocol":"stratum-v1"}` or the xmrig-proxy string form `"0.0.0.0:3333"` (`"[::]:3333"`
/// for IPv6), which speaks the config's top-level `protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct BindAddr {
    /// Interface address to listen on.
    pub host: String,
    /// TCP port; 0 picks a free one (tests).
    pub port: u16,
    /// Serve TLS on this endpoint.
    pub tls: bool,
    /// The stratum family its miners speak; `None`: the config's top-level `protocol`
    /// ([`Config::bind_protocol`]). Its miners go only to pools of that family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

impl<'de> Deserialize<'de> for BindAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Object {
                host: String,
                port: u16,
                #[serde(default)]
                tls: bool,
                // Read as text and parsed below: an untagged enum would hide the error.
                #[serde(default)]
                protocol: Option<String>,
            },
        }
        match Form::deserialize(d)? {
            Form::Object {
                host,
                port,
                tls,
                protocol,
            } => Ok(Self {
                host,
                port,
                tls,
                protocol: protocol
                    .map(|p| {
                        serde_json::from_value(serde_json::Value::String(p.clone())).map_err(|_| {
                            serde::de::Error::custom(format!(
                                "bind protocol {p:?}: expected \"cryptonote\" or \"stratum-v1\""
                            ))
                        })
                    })
                    .transpose()?,
            }),
            Form::Text(s) => {
                let (host, port) = s.rsplit_once(':').ok_or_else(|| {
                    serde::de::Error::custom(format!("bind {s:?} is not host:port"))
                })?;
                let port = port
                    .parse()
                    .map_err(|_| serde::de::Error::custom(format!("bind {s:?}: bad port")))?;
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                Ok(Self {
                    host,
                    port,
                    tls: false,
                    protocol: None,
                })
            }
        }
    }
}

impl BindAddr {
    /// The socket address to bind.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `host` is not an IP address.
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        let ip = self
            .host
            .parse()
            .map_err(|_| invalid("bind.host", format!("{:?} is not an IP address", self.host)))?;
        Ok(SocketAddr::new(ip, self.port))
    }
}

/// Inbound TLS settings (RFC §4 `TLSConfig`); served as described in `tls.rs`. A bind
/// with `tls: true` serves TLS only, whatever `enabled` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TlsConfig {
    /// Every plain bind also accepts TLS, detected from the first byte (xmrig-proxy's
    /// behaviour).
    pub enabled: bool,
    /// PEM certificate chain file, leaf first. With `cert_key` unset too, a self-signed
    /// certificate is generated at start when TLS is served.
    pub cert: Option<String>,
    /// PEM private key file (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub cert_key: Option<String>,
    /// OpenSSL cipher list (`:`-separated) of suites rustls has, e.g.
    /// `"ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384"`; empty = all of them. See
    /// `tls_settings::cipher_suites`.
    pub ciphers: Option<String>,
    /// TLS versions, `"TLSv1.2 TLSv1.3"` or one of them; empty = both. Older versions are a
    /// config error.
    pub protocols: Option<String>,
    /// OpenSSL's TLS 1.3 list (`:`-separated, e.g. `"TLS_AES_256_GCM_SHA384"`), as
    /// xmrig-proxy's `ciphersuites`: taken as more entries of `ciphers`
    /// ([`TlsConfig::cipher_list`]), which already restricts each TLS version only by the
    /// suites it names of that version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphersuites: Option<String>,
}

impl TlsConfig {
    /// `ciphers` and `ciphersuites` as one list (either may be unset), for
    /// `tls_settings::cipher_suites`.
    pub fn cipher_list(&self) -> Option<String> {
        let parts: Vec<&str> = [self.ciphers.as_deref(), self.ciphersuites.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(":"))
    }
}

/// Monitoring API settings (RFC §4 `HTTPConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct HttpConfig {
    /// Serve the API.
    pub enabled: bool,
    /// Address to listen on.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Bearer token every request needs when set (empty = none). Without one the API takes
    /// no writes, whatever `restricted` says (see [`HttpConfig::writable`]).
    pub access_token: Option<String>,
    /// Read-only (GET only, and not `/1/config`) when true.
    pub restricted: bool,
}

impl HttpConfig {
    /// The access token, when one is set and non-empty.
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_deref().filter(|t| !t.is_empty())
    }

    /// Whether the API takes writes (`PUT /1/config`): only when not `restricted` and an
    /// `access-token` is set. An unrestricted API without a token serves reads only, as
    /// xmrig-proxy does: anyone who reaches the port (or any web page the operator opens)
    /// could otherwise replace the config.
    pub fn writable(&self) -> bool {
        !self.restricted && self.access_token().is_some()
    }

    /// Checks the keys of an enabled API: `host` is an IP address, and `access-token` holds
    /// no control character (it could not be sent in an `Authorization` header, so nobody
    /// could use the API). Unrestricted without a token is valid: reads only, with
    /// [`HttpConfig::read_only_warning`].
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `http.host` or `http.access-token`.
    fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.host.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "http.host",
                format!("{:?} is not an IP address", self.host),
            ));
        }
        if self
            .access_token()
            .is_some_and(|t| t.chars().any(char::is_control))
        {
            return Err(invalid(
                "http.access-token",
                "holds a control character, which no HTTP client can send in an \
                 `Authorization` header",
            ));
        }
        Ok(())
    }

    /// The warning for an enabled API that is unrestricted but has no token (so serves reads
    /// only, see [`HttpConfig::writable`]); `None` for every other setting.
    pub fn read_only_warning(&self) -> Option<&'static str> {
        (self.enabled && !self.restricted && self.access_token().is_none()).then_some(
            "http: `restricted` is false but no `access-token` is set: the API serves reads \
             only and refuses `PUT /1/config` (403); set `http.access-token` to allow writes, \
             or `http.restricted: true` to silence this",
        )
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 8080,
            access_token: None,
            restricted: true,
        }
    }
}

/// Per-IP connection rate limit (RFC §4 `RateLimit`, §17); enforced by
/// `ratelimit::RateLimiter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RateLimit {
    /// New connections per minute per IP: a token bucket of this size refilled at this rate
    /// per minute; 0 = no limit.
    pub max_connections_per_minute: u32,
    /// Seconds an IP is banned (every connection refused) after a connection found its bucket
    /// empty, or after one of its miners was cut off for invalid shares; 0 = no ban,
    /// connections are refused only while the bucket is empty.
    pub ban_duration: u64,
    /// Per-miner protection (issue 10 item 5): a miner is disconnected (and its IP banned for
    /// `ban-duration`) once its invalid shares on one connection reach this count and make at
    /// least [`RateLimit::invalid_percent`] % of its shares. Invalid: refused by the proxy
    /// (RFC §6.2 checks, duplicates; not `Invalid job id`, stale work) or by the pool (not a
    /// session-ending refusal such as `Unauthenticated`, which says nothing of the miner's
    /// work). 0 = off. Default 1000: far above what an honest miner sends, and above a
    /// pipelined burst of a few hundred bad requests, which is still answered line by line.
    pub invalid_shares: u32,
    /// The share of invalid shares, in percent of the miner's answered shares (accepted,
    /// locally accepted, invalid), at or above which [`RateLimit::invalid_shares`] applies:
    /// 0 to 100 (more is a config error); 0 = the count alone. Default 50.
    pub invalid_percent: u32,
}

/// Default of `rate-limit.invalid-shares`: invalid shares on one connection before the
/// per-miner protection cuts the miner off (with at least 50 % of its shares invalid).
pub const DEFAULT_INVALID_SHARES: u32 = 1000;

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            max_connections_per_minute: 0,
            ban_duration: 0,
            invalid_shares: DEFAULT_INVALID_SHARES,
            invalid_percent: 50,
        }
    }
}

/// Which login field names a worker (RFC §13). xmrig-proxy's `true`/`false` are accepted as
/// `rig-id`/`false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WorkersMode {
    /// The rig id, falling back to the user.
    #[default]
    #[serde(rename = "rig-id")]
    RigId,
    /// The login (wallet).
    User,
    /// The password.
    Password,
    /// The miner's agent string.
    Agent,
    /// The miner's IP address.
    Ip,
    /// No worker records.
    #[serde(rename = "false")]
    Disabled,
}

impl<'de> Deserialize<'de> for WorkersMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bool(bool),
            Text(String),
        }
        match Form::deserialize(d)? {
            Form::Bool(true) => Ok(Self::RigId),
            Form::Bool(false) => Ok(Self::Disabled),
            Form::Text(s) => match s.as_str() {
                "rig-id" | "true" => Ok(Self::RigId),
                "user" => Ok(Self::User),
                "password" => Ok(Self::Password),
                "agent" => Ok(Self::Agent),
                "ip" => Ok(Self::Ip),
                "false" | "" => Ok(Self::Disabled),
                other => Err(serde::de::Error::custom(format!(
                    "workers {other:?}: expected rig-id, user, password, agent, ip or false"
                ))),
            },
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Config {
    /// `nicehash` (default) or `simple`.
    pub mode: Mode,
    /// Listen endpoints for miners.
    pub bind: Vec<BindAddr>,
    /// Upstream pools, primary first.
    pub pools: Vec<PoolConfig>,
    /// Inbound TLS.
    pub tls: TlsConfig,
    /// Monitoring API.
    pub http: HttpConfig,
    /// Password miners must send as `pass`; empty = none.
    pub access_password: Option<String>,
    /// Difficulty for every miner without a `+N` login suffix; 0 = the pool's.
    pub custom_diff: u64,
    /// The lowest custom difficulty served (issue 10 item 4): a `+N` login suffix or a
    /// `custom-diff` below it is raised to it. Default 100, xmrig-proxy's fixed floor; 0 or 1
    /// = no floor.
    pub custom_diff_min: u64,
    /// Report stats per custom difficulty.
    pub custom_diff_stats: bool,
    /// Algorithm extension: jobs carry `algo`, submits are checked against it.
    pub algo_ext: bool,
    /// Worker naming mode.
    pub workers: WorkersMode,
    /// Seconds a worker record with no open connection and no share is kept (default 86400,
    /// one day); 0 = idle records are removed only to make room under `workers-max`.
    pub workers_idle_timeout: u64,
    /// Most worker records kept (default 100000); a new worker past it takes the place of
    /// the oldest idle record, or is counted in the `(overflow)` record when all are live.
    pub workers_max: u32,
    /// Access log path; empty = off.
    pub access_log_file: Option<String>,
    /// Share log path; empty = off.
    pub share_log_file: Option<String>,
    /// Simple mode: seconds an idle upstream is kept for the next miner; 0 = close at once.
    pub reuse_timeout: u64,
    /// Connection attempts per pool before the next one is tried.
    pub retries: u32,
    /// Seconds between connection attempts.
    pub retry_pause: u64,
    /// Reload the file when it changes.
    pub watch: bool,
    /// Per-IP connection rate limit.
    pub rate_limit: RateLimit,
    /// Seconds a submit may wait for the pool's answer (default 30).
    pub pool_reply_timeout: u64,
    /// The `agent` the proxy presents to pools (xmrig-proxy `user-agent`); default
    /// `stratum-proxy/<version>`.
    pub user_agent: Option<String>,
    /// A file the proxy's log is also written to (xmrig-proxy `log-file`); read at start.
    pub log_file: Option<String>,
    /// Colour in the terminal log (xmrig-proxy `colors`); read at start. Colour is used only
    /// when stderr is a terminal, and never with `NO_COLOR` set or `--no-color`.
    pub colors: bool,
    /// Seconds between the summary lines of the log (xmrig-proxy `print-time`; default 60,
    /// at most 3600; 0 = none); read at start.
    pub print_time: u64,
    /// Check the config and exit (xmrig-proxy `dry-run`, as the `--dry-run` flag).
    pub dry_run: bool,
    /// The default stratum family (`"cryptonote"`, the default, or `"stratum-v1"`): what
    /// the miners of a bind speak and what a pool is, unless the entry names its own
    /// `protocol` ([`Config::bind_protocol`], [`Config::pool_protocol`]).
    pub protocol: Protocol,
    /// Stratum V1 settings (`"stratum-v1": {...}`), used by the `stratum-v1` binds and pools.
    pub stratum_v1: Sv1Config,
    /// Top-level keys present in the file that are no field of this struct (xmrig-proxy's
    /// `api`, read by the API, and the keys of [`Config::ignored_keys`]); kept so that a
    /// config written back keeps them.
    #[serde(flatten, skip_serializing)]
    pub unknown_keys: BTreeMap<String, serde_json::Value>,
    /// The keys of the file this proxy does not honour, each as `key (reason)` (`pools[0].coin
    /// (…)`), sorted: xmrig-proxy keys with the reason, others as unknown. Set by
    /// [`Config::from_json`]; keys whose value asks for nothing (`null`, `false`, `0`, `""`)
    /// are left out.
    #[serde(skip)]
    pub ignored_keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Nicehash,
            bind: Vec::new(),
            pools: Vec::new(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            access_password: None,
            custom_diff: 0,
            custom_diff_min: DEFAULT_CUSTOM_DIFF_MIN,
            custom_diff_stats: false,
            algo_ext: true,
            workers: WorkersMode::RigId,
            workers_idle_timeout: 86_400,
            workers_max: 100_000,
            access_log_file: None,
            share_log_file: None,
            reuse_timeout: 0,
            retries: 3,
            retry_pause: 2,
            watch: false,
            rate_limit: RateLimit::default(),
            pool_reply_timeout: 30,
            user_agent: None,
            log_file: None,
            colors: true,
            print_time: 60,
            dry_run: false,
            protocol: Protocol::default(),
            stratum_v1: Sv1Config::default(),
            unknown_keys: BTreeMap::new(),
            ignored_keys: Vec::new(),
        }
    }
}

/// Stratum V1 settings (`"stratum-v1"` object; issue 12). Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Sv1Config {
    /// Bytes of extranonce2 each miner keeps at least (1..=8; default 4, what NiceHash
    /// needs): the proxy's per-miner extranonce1 tail takes what the pool's
    /// extranonce2_size leaves beyond it.
    pub min_extranonce2_size: usize,
    /// Seconds between two shares of one miner that vardiff aims at (1..=3600; default 10).
    pub share_interval: u64,
    /// The lowest share difficulty vardiff gives a miner (Bitcoin difficulty-1 units,
    /// fractions allowed, > 0; default 1), unless the upstream's is lower.
    pub min_difficulty: f64,
    /// The version bits (hex, BIP 310) the proxy asks its pools to let roll; a miner's mask
    /// is its own AND what the pool grants (default `"1fffe000"`; `"0"`: no rolling).
    pub version_mask: String,
    /// The Bitcoin network of solo pools' payout addresses: `bitcoin`, `testnet`,
    /// `testnet4`, `signet` or `regtest` (default `bitcoin`).
    pub network: String,
    /// The share difficulty of a solo upstream's jobs (> 0; default 1): the ceiling of its
    /// miners' vardiff.
    pub solo_difficulty: f64,
    /// A directory where solo rounds are kept (`rounds_store.rs`): each closed round as
    /// `[height]-[hash].json`, as bcoin-stratum, and the round in progress as
    /// `current.json`, read back at start. Empty (the default): in memory only.
    pub rounds_dir: String,
}

impl Default for Sv1Config {
    fn default() -> Self {
        Self {
            min_extranonce2_size: nonce_split::DEFAULT_MIN_EXTRANONCE2_SIZE,
            share_interval: 10,
            min_difficulty: 1.0,
            version_mask: "1fffe000".into(),
            network: "bitcoin".into(),
            solo_difficulty: 1.0,
            rounds_dir: String::new(),
        }
    }
}

impl Sv1Config {
    /// The version mask as a number.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `stratum-v1.version-mask` that is not 1 to 8 hex digits.
    pub fn version_mask(&self) -> Result<u32, ConfigError> {
        let s = self.version_mask.trim();
        if s.is_empty() || s.len() > 8 {
            return Err(invalid(
                "stratum-v1.version-mask",
                format!("{s:?} is not 1 to 8 hex digits"),
            ));
        }
        u32::from_str_radix(s, 16).map_err(|_| {
            invalid(
                "stratum-v1.version-mask",
                format!("{s:?} is not 1 to 8 hex digits"),
            )
        })
    }

    /// The network as rust-bitcoin names it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown `stratum-v1.network`.
    pub fn network(&self) -> Result<bitcoin::Network, ConfigError> {
        self.network.parse::<bitcoin::Network>().map_err(|_| {
            invalid(
                "stratum-v1.network",
                format!(
                    "{:?} is not bitcoin, testnet, testnet4, signet or regtest",
                    self.network
                ),
            )
        })
    }

    /// The vardiff settings of every miner: the share interval, the floor (also the start).
    pub fn vardiff(&self) -> nonce_split::VardiffConfig {
        nonce_split::VardiffConfig {
            target_interval_ms: self.share_interval.saturating_mul(1000),
            floor: self.min_difficulty,
            start: self.min_difficulty,
            ..nonce_split::VardiffConfig::default()
        }
    }

    /// Checks every key (see [`Config::validate`]).
    fn check(&self) -> Result<(), ConfigError> {
        if !(1..=nonce_split::MAX_MINER_EXTRANONCE2_SIZE).contains(&self.min_extranonce2_size) {
            return Err(invalid(
                "stratum-v1.min-extranonce2-size",
                format!("{} is not 1 to 8 bytes", self.min_extranonce2_size),
            ));
        }
        if !(1..=3600).contains(&self.share_interval) {
            return Err(invalid(
                "stratum-v1.share-interval",
                format!("{} s is not 1 to 3600 seconds", self.share_interval),
            ));
        }
        if !(self.min_difficulty.is_finite() && self.min_difficulty > 0.0) {
            return Err(invalid(
                "stratum-v1.min-difficulty",
                format!("{} is not a number above 0", self.min_difficulty),
            ));
        }
        if !(self.solo_difficulty.is_finite() && self.solo_difficulty > 0.0) {
            return Err(invalid(
                "stratum-v1.solo-difficulty",
                format!("{} is not a number above 0", self.solo_difficulty),
            ));
        }
        self.version_mask()?;
        self.network()?;
        self.vardiff()
            .validate()
            .map_err(|e| invalid("stratum-v1", format!("vardiff settings refused: {e}")))?;
        Ok(())
    }
}

/// Default of `custom-diff-min`: xmrig-proxy's floor for custom difficulty.
pub const DEFAULT_CUSTOM_DIFF_MIN: u64 = 100;

/// Parses `text` as JSON with `//` and `/* */` comments and trailing commas.
fn parse_lenient<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ConfigError> {
    let mut de = serde_json_lenient::Deserializer::from_str(text);
    de.set_allow_comments(true);
    de.set_ignore_trailing_commas(true);
    let parsed = T::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    // The message ("… at line 3 column 5") is kept whole.
    parsed.map_err(|e| ConfigError::Parse(serde::de::Error::custom(e)))
}

impl Config {
    /// Parses a config from JSON text, which may hold comments and trailing commas (see the
    /// module docs), and lists the keys it does not honour in [`Config::ignored_keys`].
    /// Does not validate.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with the line and column.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let mut cfg: Config = parse_lenient(text)?;
        let raw: serde_json::Value = parse_lenient(text)?;
        cfg.unknown_keys.remove("$schema");
        cfg.ignored_keys = xmrig::ignored_keys(&raw);
        Ok(cfg)
    }

    /// The one start-up warning naming every key of [`Config::ignored_keys`] with its
    /// reason, e.g. `config keys ignored: background (not a daemon: …), pools[0].coin (…)`;
    /// `None` when every key is honoured.
    pub fn ignored_warning(&self) -> Option<String> {
        (!self.ignored_keys.is_empty())
            .then(|| format!("config keys ignored: {}", self.ignored_keys.join(", ")))
    }

    /// Parses and validates a config file's text: [`Config::from_json`], then
    /// [`Config::validate`]. Pure (no file is opened), so the fuzz target `config` runs it on
    /// arbitrary text.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn from_text(text: &str) -> Result<Self, ConfigError> {
        let cfg = Self::from_json(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file ([`Config::from_text`]).
    ///
    /// # Errors
    /// [`ConfigError`] for I/O, parse and validation failures.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text)
    }

    /// Checks the config (RFC §4 `Validate`): at least one bind and one enabled pool, every
    /// enabled pool has a `host:port` url, every bind host is an IP address, pool
    /// `tls-fingerprint`s are SHA-256 hex on TLS pools, the `tls` section is usable
    /// (`tls_settings::check`; certificate files are loaded only at start), and an enabled
    /// API has an IP `http.host` and a sendable `http.access-token`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad key and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bind.is_empty() {
            return Err(invalid("bind", "at least one listen address is needed"));
        }
        for (i, b) in self.bind.iter().enumerate() {
            b.socket_addr().map_err(|_| {
                invalid(
                    format!("bind[{i}].host"),
                    format!("{:?} is not an IP address", b.host),
                )
            })?;
        }
        if !self.pools.iter().any(|p| p.enabled) {
            return Err(invalid("pools", "at least one enabled pool is needed"));
        }
        for (i, p) in self.pools.iter().enumerate().filter(|(_, p)| p.enabled) {
            let hp = p.host_port();
            let ok = hp
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(invalid(
                    format!("pools[{i}].url"),
                    format!("{:?} is not host:port", p.url),
                ));
            }
            if self.mode == Mode::ExtraNonce && !p.daemon {
                return Err(invalid(
                    format!("pools[{i}].daemon"),
                    "mode \"extra_nonce\" works only with daemon upstreams (\"daemon\": true): \
                     a stratum pool's job has no block template to put extra nonces in",
                ));
            }
            if p.daemon && p.user.is_empty() {
                return Err(invalid(
                    format!("pools[{i}].user"),
                    "a daemon upstream needs the wallet address of its block templates",
                ));
            }
            let tls = pool_client::tls::wants_tls(p);
            if p.daemon && tls {
                return Err(invalid(
                    format!("pools[{i}].tls"),
                    "a daemon upstream is reached over plain HTTP; TLS is not supported for it",
                ));
            }
            if let Some(pin) = p
                .tls_fingerprint
                .as_deref()
                .filter(|s| !s.trim().is_empty())
            {
                if !tls {
                    return Err(invalid(
                        format!("pools[{i}].tls-fingerprint"),
                        "set, but the pool is not reached over TLS (`\"tls\": true`)",
                    ));
                }
                pool_client::tls::parse_fingerprint(pin)
                    .map_err(|m| invalid(format!("pools[{i}].tls-fingerprint"), m))?;
            }
        }
        tls_settings::check(&self.tls)?;
        self.http.check()?;
        if self.pool_reply_timeout == 0 {
            return Err(invalid("pool-reply-timeout", "must be at least 1 second"));
        }
        if self.rate_limit.invalid_percent > 100 {
            return Err(invalid(
                "rate-limit.invalid-percent",
                format!(
                    "{} is not a percentage (0 to 100)",
                    self.rate_limit.invalid_percent
                ),
            ));
        }
        if self.print_time > 3600 {
            return Err(invalid(
                "print-time",
                format!("{} s is more than an hour (3600)", self.print_time),
            ));
        }
        for (i, p) in self.pools.iter().enumerate().filter(|(_, p)| p.enabled) {
            if let Some(s) = p.socks5.as_deref() {
                let ok = s.rsplit_once(':').is_some_and(|(h, port)| {
                    !h.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
                if !ok {
                    return Err(invalid(
                        format!("pools[{i}].socks5"),
                        format!("{s:?} is not host:port (or a port number on 127.0.0.1)"),
                    ));
                }
                if p.daemon {
                    return Err(invalid(
                        format!("pools[{i}].socks5"),
                        "a daemon upstream is reached over plain HTTP, not through SOCKS5",
                    ));
                }
            }
        }
        self.check_families()?;
        if self.workers_max == 0 {
            return Err(invalid(
                "workers-max",
                "must be at least 1 (use `\"workers\": false` to keep no records)",
            ));
        }
        Ok(())
    }

    /// The family of bind `b`: its own `protocol`, else the top-level one.
    pub fn bind_protocol(&self, b: &BindAddr) -> Protocol {
        b.protocol.unwrap_or(self.protocol)
    }

    /// The family of pool `p`: its own `protocol`, else the top-level one.
    pub fn pool_protocol(&self, p: &PoolConfig) -> Protocol {
        p.protocol.unwrap_or(self.protocol)
    }

    /// The families that have binds, the top-level `protocol` first (when it has binds),
    /// each once: one driver runs per family.
    pub fn served_protocols(&self) -> Vec<Protocol> {
        let mut out: Vec<Protocol> = Vec::with_capacity(2);
        let named = self.bind.iter().map(|b| self.bind_protocol(b));
        for p in std::iter::once(self.protocol).chain(named) {
            if !out.contains(&p) && self.bind.iter().any(|b| self.bind_protocol(b) == p) {
                out.push(p);
            }
        }
        out
    }

    /// The pool entries of family `protocol` (enabled or not), in config order: the list
    /// that family's upstreams walk. A pool index an upstream reports is into this list.
    pub fn pools_of(&self, protocol: Protocol) -> Vec<PoolConfig> {
        self.pools
            .iter()
            .filter(|p| self.pool_protocol(p) == protocol)
            .cloned()
            .collect()
    }

    /// Entry `index` of [`Config::pools_of`] `protocol`, without copying the list.
    pub fn pool_of(&self, protocol: Protocol, index: usize) -> Option<&PoolConfig> {
        self.pools
            .iter()
            .filter(|p| self.pool_protocol(p) == protocol)
            .nth(index)
    }

    /// Every family that has a bind has an enabled pool of its family, and the
    /// `stratum-v1` settings are valid when a bind or pool speaks it.
    fn check_families(&self) -> Result<(), ConfigError> {
        for (i, b) in self.bind.iter().enumerate() {
            let family = self.bind_protocol(b);
            if !self
                .pools
                .iter()
                .any(|p| p.enabled && self.pool_protocol(p) == family)
            {
                return Err(invalid(
                    format!("bind[{i}].protocol"),
                    format!(
                        "{}:{} serves {family} miners, but no enabled pool speaks {family} \
                         (give a pool \"protocol\": \"{family}\", or the bind another protocol)",
                        b.host, b.port
                    ),
                ));
            }
        }
        let sv1 = self
            .bind
            .iter()
            .any(|b| self.bind_protocol(b) == Protocol::StratumV1)
            || self
                .pools
                .iter()
                .any(|p| self.pool_protocol(p) == Protocol::StratumV1);
        if sv1 {
            self.stratum_v1.check()?;
        }
        Ok(())
    }

    /// The difficulty a miner is served at for a custom difficulty `requested` (login suffix
    /// or `custom-diff`; 0 = none): raised to `custom-diff-min`, 0 stays 0 (the pool's).
    pub fn custom_diff_for(&self, requested: u64) -> u64 {
        stratum_session::floor_custom_diff(requested, self.custom_diff_min)
    }

    /// The access password, when one is set and non-empty.
    pub fn access_password(&self) -> Option<&str> {
        self.access_password.as_deref().filter(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = r#"{
        "mode": "nicehash",
        "bind": [{"host": "0.0.0.0", "port": 3333, "tls": false}, {"host": "0.0.0.0", "port": 3443, "tls": true}],
        "pools": [
            {"url": "pool.lthn.io:3333", "user": "WALLET", "pass": "x", "tls": false, "enabled": true},
            {"url": "pool-backup.lthn.io:3333", "user": "WALLET", "pass": "x", "tls": false, "enabled": true}
        ],
        "tls": {"enabled": true, "cert": "/etc/proxy/cert.pem", "cert_key": "/etc/proxy/key.pem"},
        "http": {"enabled": true, "host": "127.0.0.1", "port": 8080, "access-token": "secret", "restricted": true},
        "access-password": "", "access-log-file": "/var/log/proxy-access.log",
        "custom-diff": 0, "custom-diff-stats": false, "algo-ext": true, "workers": "rig-id",
        "rate-limit": {"max-connections-per-minute": 30, "ban-duration": 300},
        "retries": 3, "retry-pause": 2, "reuse-timeout": 0, "watch": true
    }"#;

    #[test]
    fn rfc_example_loads_and_validates() {
        let c = Config::from_json(RFC_EXAMPLE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.bind.len(), 2);
        assert!(c.bind[1].tls);
        assert_eq!(c.pools[1].url, "pool-backup.lthn.io:3333");
        assert_eq!(c.http.access_token.as_deref(), Some("secret"));
        assert_eq!(c.rate_limit.max_connections_per_minute, 30);
        assert_eq!(c.access_password(), None);
        assert!(c.unknown_keys.is_empty());
    }

    #[test]
    fn custom_difficulty_has_a_floor_of_100_by_default() {
        let c = Config::default();
        assert_eq!(c.custom_diff_min, 100);
        assert_eq!(c.custom_diff_for(1), 100, "WALLET+1 is served at the floor");
        assert_eq!(c.custom_diff_for(99), 100);
        assert_eq!(c.custom_diff_for(250), 250);
        assert_eq!(c.custom_diff_for(0), 0, "no custom difficulty stays none");
        let c = Config::from_json(r#"{"custom-diff-min": 5000}"#).unwrap();
        assert_eq!(c.custom_diff_for(300), 5000);
        let c = Config::from_json(r#"{"custom-diff-min": 0}"#).unwrap();
        assert_eq!(c.custom_diff_for(1), 1, "0 = no floor");
    }

    #[test]
    fn invalid_share_protection_defaults_and_keys() {
        let c = Config::default();
        assert_eq!(
            (c.rate_limit.invalid_shares, c.rate_limit.invalid_percent),
            (DEFAULT_INVALID_SHARES, 50)
        );
        let c = Config::from_json(
            r#"{"rate-limit": {"ban-duration": 60, "invalid-shares": 5, "invalid-percent": 80}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.rate_limit.invalid_shares, c.rate_limit.invalid_percent),
            (5, 80)
        );
        assert_eq!(c.rate_limit.max_connections_per_minute, 0);
        let err = Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"a:1"}],"rate-limit":{"invalid-percent":150}}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("rate-limit.invalid-percent") && err.contains("150"),
            "{err}"
        );
    }

    #[test]
    fn from_text_parses_and_validates() {
        let c = Config::from_text(RFC_EXAMPLE).unwrap();
        assert_eq!(c, Config::from_json(RFC_EXAMPLE).unwrap());
        // Parses, but does not validate: no bind.
        let text = r#"{"bind":[],"pools":[{"url":"p:1"}]}"#;
        assert!(Config::from_json(text).is_ok());
        assert!(matches!(
            Config::from_text(text),
            Err(ConfigError::Invalid { key, .. }) if key == "bind"
        ));
        assert!(matches!(Config::from_text("{"), Err(ConfigError::Parse(_))));
    }

    #[test]
    fn xmrig_proxy_forms_are_accepted() {
        let c = Config::from_json(
            r#"{"bind":["0.0.0.0:3333","[::]:3334"],"workers":true,"pools":[{"url":"stratum+tcp://p:1"}],"api":{"port":0},"colors":true}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.bind[1].host, "::");
        assert_eq!(c.bind[1].port, 3334);
        assert_eq!(c.workers, WorkersMode::RigId);
        assert!(c.pools[0].enabled);
        assert_eq!(c.pools[0].host_port(), "p:1");
        assert_eq!(c.unknown_keys.keys().collect::<Vec<_>>(), vec!["api"]);
        assert!(c.colors, "`colors` is honoured");
    }

    #[test]
    fn daemon_pool_keys() {
        let c = Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"127.0.0.1:28081","user":"W","daemon":true,"daemon-poll-interval":250}]}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.pools[0].daemon);
        assert_eq!(c.pools[0].daemon_poll_interval, 250);
    }

    #[test]
    fn the_api_takes_writes_only_unrestricted_with_a_token() {
        let mut h = HttpConfig {
            enabled: true,
            restricted: false,
            ..HttpConfig::default()
        };
        for token in [None, Some("")] {
            h.access_token = token.map(String::from);
            assert!(!h.writable(), "{token:?}");
            let w = h.read_only_warning().unwrap();
            assert!(
                w.contains("access-token") && w.contains("restricted"),
                "{w}"
            );
        }
        h.access_token = Some("tok".into());
        assert!(h.writable());
        assert_eq!(h.read_only_warning(), None);
        h.restricted = true;
        assert!(!h.writable());
        assert_eq!(h.read_only_warning(), None);
        // A disabled API or the default (restricted) one: nothing to warn about.
        h.access_token = None;
        assert_eq!(h.read_only_warning(), None);
        h.restricted = false;
        h.enabled = false;
        assert_eq!(h.read_only_warning(), None);
        assert_eq!(HttpConfig::default().read_only_warning(), None);
    }

    #[test]
    fn validation_names_key_and_value() {
        let err = Config::from_json(r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"nope"}]}"#)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pools[0].url") && err.contains("nope"),
            "{err}"
        );
        let err = Config::from_json(r#"{"bind":[],"pools":[{"url":"a:1"}]}"#)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`bind`"), "{err}");
        let err = Config::from_json(
            r#"{"bind":[{"host":"localhost","port":1}],"pools":[{"url":"a:1"}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bind[0].host") && err.contains("localhost"),
            "{err}"
        );
        let err = Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"a:1"}],"http":{"enabled":true,"host":"localhost"}}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("http.host") && err.contains("localhost"),
            "{err}"
        );
        let err = Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"a:1"}],"http":{"enabled":true,"access-token":"a\nb"}}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("http.access-token"), "{err}");
        // Unrestricted without a token is valid (reads only, with a warning); a disabled
        // API's keys are not checked.
        Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"a:1"}],"http":{"enabled":true,"host":"::","restricted":false}}"#,
        )
        .unwrap()
        .validate()
        .unwrap();
        Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"a:1"}],"http":{"enabled":false,"host":"localhost"}}"#,
        )
        .unwrap()
        .validate()
        .unwrap();
        let err = Config::from_json(r#"{"workers":"bogus"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
        let err = Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"a:1","enabled":false}]}"#,
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("enabled pool"), "{err}");
    }

    #[test]
    fn comments_and_trailing_commas_are_accepted_and_errors_keep_their_line() {
        let c = Config::from_text(
            "// xmrig-proxy style\n{\n  /* listen */ \"bind\": [\"127.0.0.1:0\",],\n  \"pools\": [{\"url\": \"p:1\", \"keepalive\": 60,},], // one pool\n}\n",
        )
        .unwrap();
        assert_eq!(c.pools[0].keepalive, pool_client::Keepalive::Seconds(60));
        let err = Config::from_json("{\n  \"bind\": [\n  \"retries\": }").unwrap_err();
        assert!(
            matches!(err, ConfigError::Parse(_)) && err.to_string().contains("line 3"),
            "{err}"
        );
        let err = Config::from_json("{\"retries\": \"three\"}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn an_unknown_mode_is_refused_naming_the_modes_there_are() {
        let err = Config::from_json(r#"{"mode": "bogus"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bogus")
                && err.contains("nicehash")
                && err.contains("simple")
                && err.contains("extra_nonce"),
            "{err}"
        );
        assert_eq!(
            Config::from_json(r#"{"mode": "SIMPLE"}"#).unwrap().mode,
            Mode::Simple
        );
    }

    #[test]
    fn extra_nonce_mode_is_for_daemon_upstreams_only() {
        let with = |daemon: bool| {
            Config::from_json(&format!(
                r#"{{"mode": "extra_nonce", "bind": ["127.0.0.1:0"],
                    "pools": [{{"url": "127.0.0.1:18081", "user": "W", "daemon": true}},
                              {{"url": "b:1", "user": "W", "daemon": {daemon}}}]}}"#
            ))
            .and_then(|c| c.validate().map(|()| c))
        };
        let ok = with(true).unwrap();
        assert_eq!(ok.mode, Mode::ExtraNonce);
        assert_eq!(ok.mode.to_string(), "extra_nonce");
        let err = with(false).unwrap_err().to_string();
        assert!(
            err.contains("pools[1].daemon") && err.contains("extra_nonce"),
            "{err}"
        );
        for name in ["extranonce", "EXTRA-NONCE"] {
            assert_eq!(name.parse::<Mode>(), Ok(Mode::ExtraNonce));
        }
        // Written back (PUT /1/config) under xmrig-proxy's name.
        assert_eq!(
            serde_json::to_value(Mode::ExtraNonce).unwrap(),
            serde_json::json!("extra_nonce")
        );
    }

    #[test]
    fn socks5_print_time_and_ciphersuites_are_checked() {
        let base = |extra: &str| {
            Config::from_json(&format!(
                r#"{{"bind":["127.0.0.1:0"],"pools":[{{"url":"a:1"{extra}}}]}}"#
            ))
            .unwrap()
        };
        base(r#","socks5":"127.0.0.1:1080""#).validate().unwrap();
        base(r#","socks5":1080"#).validate().unwrap();
        let err = base(r#","socks5":"nohost""#)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pools[0].socks5") && err.contains("nohost"),
            "{err}"
        );
        let err = base(r#","socks5":"h:1","daemon":true,"user":"W""#)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("pools[0].socks5"), "{err}");
        let mut c = base("");
        assert_eq!(c.print_time, 60);
        c.print_time = 3601;
        assert!(c.validate().unwrap_err().to_string().contains("print-time"));
        let t = TlsConfig {
            ciphers: Some("ECDHE-RSA-AES128-GCM-SHA256".into()),
            ciphersuites: Some("TLS_AES_256_GCM_SHA384".into()),
            ..TlsConfig::default()
        };
        assert_eq!(
            t.cipher_list().as_deref(),
            Some("ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384")
        );
        let mut c = base("");
        c.tls = TlsConfig {
            ciphersuites: Some("TLS_NOPE".into()),
            ..TlsConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("TLS_NOPE"));
    }

    #[test]
    fn ignored_keys_make_one_warning_line() {
        let c = Config::from_json(
            r#"{"background": true, "donate-level": 1, "pools": [{"url": "a:1", "coin": "monero"}]}"#,
        )
        .unwrap();
        let w = c.ignored_warning().unwrap();
        assert!(
            w.starts_with("config keys ignored: background (not a daemon"),
            "{w}"
        );
        assert!(
            w.contains("donate-level (") && w.contains("pools[0].coin ("),
            "{w}"
        );
        assert!(!w.contains('\n'));
        assert_eq!(
            Config::from_json(RFC_EXAMPLE).unwrap().ignored_warning(),
            None
        );
    }

    #[test]
    fn worker_bounds_default_to_a_day_and_100000_and_the_cap_is_at_least_one() {
        let c = Config::default();
        assert_eq!((c.workers_idle_timeout, c.workers_max), (86_400, 100_000));
        let c = Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"pools":[{"url":"a:1"}],"workers-idle-timeout":60,"workers-max":0}"#,
        )
        .unwrap();
        assert_eq!(c.workers_idle_timeout, 60);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("workers-max"), "{err}");
    }

    const SV1_BASE: &str =
        r#"{"bind": ["127.0.0.1:3333"], "pools": [{"url": "pool:3333", "user": "bc1q.rig"}]"#;

    fn sv1(extra: &str) -> Result<Config, ConfigError> {
        Config::from_text(&format!(
            "{SV1_BASE}, \"protocol\": \"stratum-v1\"{extra}}}"
        ))
    }

    #[test]
    fn the_protocol_defaults_to_cryptonote_and_names_stratum_v1() {
        let c = Config::from_text(&format!("{SV1_BASE}}}")).unwrap();
        assert_eq!(c.protocol, Protocol::CryptoNote);
        let c = sv1("").unwrap();
        assert_eq!(c.protocol, Protocol::StratumV1);
        assert_eq!(c.stratum_v1, Sv1Config::default());
        assert_eq!(c.stratum_v1.min_extranonce2_size, 4);
        assert_eq!(c.stratum_v1.version_mask().unwrap(), 0x1fff_e000);
        assert_eq!(c.stratum_v1.vardiff().target_interval_ms, 10_000);
        assert!(c.ignored_keys.is_empty(), "{:?}", c.ignored_keys);
        let e = Config::from_text(&format!("{SV1_BASE}, \"protocol\": \"sv2\"}}")).unwrap_err();
        assert!(e.to_string().contains("sv2"), "{e}");
    }

    #[test]
    fn binds_and_pools_name_their_family_and_default_to_the_top_level_one() {
        let c = Config::from_text(
            r#"{"bind": ["127.0.0.1:3333",
                         {"host": "127.0.0.1", "port": 3334, "protocol": "stratum-v1"}],
                "pools": [{"url": "cn:1", "user": "W"},
                          {"url": "btc:1", "user": "bc1q.rig", "protocol": "stratum-v1"},
                          {"url": "btc:2", "user": "bc1q.rig", "protocol": "stratum-v1", "enabled": false}]}"#,
        )
        .unwrap();
        assert_eq!(c.protocol, Protocol::CryptoNote);
        assert_eq!(c.bind[0].protocol, None, "the string form names none");
        assert_eq!(c.bind_protocol(&c.bind[0]), Protocol::CryptoNote);
        assert_eq!(c.bind_protocol(&c.bind[1]), Protocol::StratumV1);
        assert_eq!(
            c.served_protocols(),
            [Protocol::CryptoNote, Protocol::StratumV1]
        );
        let urls = |p| c.pools_of(p).into_iter().map(|e| e.url).collect::<Vec<_>>();
        assert_eq!(urls(Protocol::CryptoNote), ["cn:1"]);
        assert_eq!(urls(Protocol::StratumV1), ["btc:1", "btc:2"]);
        assert_eq!(
            c.pool_of(Protocol::StratumV1, 1).map(|p| p.url.as_str()),
            Some("btc:2")
        );
        assert_eq!(c.pool_of(Protocol::CryptoNote, 1), None);
        // Written back as read: a bind's and a pool's protocol only where one was given.
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["bind"][1]["protocol"], "stratum-v1");
        assert!(v["bind"][0].get("protocol").is_none(), "{v}");
        assert_eq!(v["pools"][1]["protocol"], "stratum-v1");
        assert!(v["pools"][0].get("protocol").is_none(), "{v}");
        assert!(c.ignored_keys.is_empty(), "{:?}", c.ignored_keys);
        // The top-level protocol is the default of every entry that names none.
        let c = Config::from_text(
            r#"{"protocol": "stratum-v1", "bind": ["127.0.0.1:3333",
                {"host": "127.0.0.1", "port": 3334, "protocol": "cryptonote"}],
                "pools": [{"url": "btc:1", "user": "bc1q.rig"},
                          {"url": "cn:1", "user": "W", "protocol": "cryptonote"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.served_protocols(),
            [Protocol::StratumV1, Protocol::CryptoNote]
        );
        assert_eq!(c.pools_of(Protocol::StratumV1)[0].url, "btc:1");
        // Only SV1 binds: one family served, though the default is CryptoNote.
        let c = Config::from_text(
            r#"{"bind": [{"host": "127.0.0.1", "port": 1, "protocol": "stratum-v1"}],
                "pools": [{"url": "btc:1", "user": "b", "protocol": "stratum-v1"}]}"#,
        )
        .unwrap();
        assert_eq!(c.served_protocols(), [Protocol::StratumV1]);
    }

    #[test]
    fn a_bind_whose_family_has_no_enabled_pool_is_refused() {
        let err = |text: &str| Config::from_text(text).unwrap_err().to_string();
        let e = err(
            r#"{"bind": ["127.0.0.1:3333", {"host": "127.0.0.1", "port": 3334, "protocol": "stratum-v1"}],
                "pools": [{"url": "cn:1"}]}"#,
        );
        assert!(
            e.contains("bind[1].protocol")
                && e.contains("127.0.0.1:3334")
                && e.contains("stratum-v1"),
            "{e}"
        );
        // A disabled pool of the family does not count.
        let e = err(
            r#"{"bind": [{"host": "127.0.0.1", "port": 1, "protocol": "stratum-v1"}],
                "pools": [{"url": "cn:1"}, {"url": "btc:1", "protocol": "stratum-v1", "enabled": false}]}"#,
        );
        assert!(e.contains("bind[0].protocol"), "{e}");
        // A CryptoNote bind with only SV1 pools, by the top-level default.
        let e = err(
            r#"{"bind": ["127.0.0.1:1"], "pools": [{"url": "btc:1", "protocol": "stratum-v1"}]}"#,
        );
        assert!(
            e.contains("bind[0].protocol") && e.contains("cryptonote"),
            "{e}"
        );
        // A pool of a family nobody binds is fine (it is not used), and SV1 settings are
        // checked once anything speaks SV1.
        Config::from_text(
            r#"{"bind": ["127.0.0.1:1"], "pools": [{"url": "cn:1"}, {"url": "btc:1", "protocol": "stratum-v1"}]}"#,
        )
        .unwrap();
        let e = err(
            r#"{"bind": ["127.0.0.1:1"], "pools": [{"url": "cn:1"}, {"url": "btc:1", "protocol": "stratum-v1"}],
                "stratum-v1": {"share-interval": 0}}"#,
        );
        assert!(e.contains("stratum-v1.share-interval"), "{e}");
        let e = err(
            r#"{"bind": [{"host": "127.0.0.1", "port": 1, "protocol": "sv2"}], "pools": [{"url": "a:1"}]}"#,
        );
        assert!(e.contains("sv2"), "{e}");
    }

    #[test]
    fn stratum_v1_settings_are_read_and_bad_ones_named() {
        let c = sv1(r#", "stratum-v1": {"min-extranonce2-size": 2, "share-interval": 5, "min-difficulty": 0.001, "version-mask": "ffff0000", "network": "regtest", "solo-difficulty": 0.5}"#).unwrap();
        let s = &c.stratum_v1;
        assert_eq!(s.min_extranonce2_size, 2);
        assert_eq!(s.vardiff().target_interval_ms, 5000);
        assert_eq!(s.vardiff().floor, 0.001);
        assert_eq!(s.version_mask().unwrap(), 0xffff_0000);
        assert_eq!(s.network().unwrap(), bitcoin::Network::Regtest);
        for (bad, key) in [
            (
                r#"{"min-extranonce2-size": 9}"#,
                "stratum-v1.min-extranonce2-size",
            ),
            (
                r#"{"min-extranonce2-size": 0}"#,
                "stratum-v1.min-extranonce2-size",
            ),
            (r#"{"share-interval": 0}"#, "stratum-v1.share-interval"),
            (r#"{"min-difficulty": 0}"#, "stratum-v1.min-difficulty"),
            (r#"{"solo-difficulty": -1}"#, "stratum-v1.solo-difficulty"),
            (r#"{"version-mask": "xyz"}"#, "stratum-v1.version-mask"),
            (
                r#"{"version-mask": "123456789"}"#,
                "stratum-v1.version-mask",
            ),
            (r#"{"network": "dogecoin"}"#, "stratum-v1.network"),
        ] {
            let e = sv1(&format!(", \"stratum-v1\": {bad}")).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }
}
