//! The command line: xmrig-proxy's options (issue 13 item 1) beside the `run` and `check`
//! subcommands, parsed by clap.
//!
//! ```text
//! proxy-cli -o pool.example:3333 -u WALLET -b 0.0.0.0:3333     # as xmrig-proxy
//! proxy-cli -c config.json -o a:3333 -u W1 -o b:3333 -u W2     # two pools replace the file's
//! proxy-cli run --config config.json                           # as before
//! proxy-cli check -c config.json    (or --dry-run)             # validate and exit
//! ```
//!
//! Rules:
//! - Flags override the file (`-c`). Without `-c` and without `-o`, `./config.json` is read
//!   when it exists (as xmrig-proxy does); with `-o` and no file, the built-in defaults apply
//!   and `bind` defaults to `0.0.0.0:3333`.
//! - Pool options build pools the way xmrig does: each `-o` starts a new pool (unless the
//!   last one has no url yet), and `-u`, `-p`, `--tls`, `--tls-fingerprint`, `--rig-id`,
//!   `-k` and `-x` apply to the last pool started (to the first, when given before any `-o`).
//!   Pools given with `-o` replace the file's; pool options without any `-o` apply to every
//!   pool of the file.
//! - `--tls` is xmrig-proxy's: TLS *to the pool* given before it. Miners are served over TLS
//!   with `--tls-bind ADDR` (the certificate from the file's `tls` section, or a self-signed
//!   one generated at start).
//! - `-b` and `--tls-bind` together replace the file's `bind` list.
//! - With a file, the overrides are applied again at every reload of the file (`watch`).

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Parser, Subcommand};
use proxy_core::config::{BindAddr, Mode, PoolConfig};
use proxy_core::Config;

/// `bind` when neither the file nor `-b` gives one (xmrig-proxy's default).
pub(crate) const DEFAULT_BIND: &str = "0.0.0.0:3333";

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "proxy-cli",
    version,
    about = "Stratum mining proxy (CryptoNote, NiceHash splitting); takes xmrig-proxy's options and config files",
    after_help = "Without a subcommand the proxy runs. Flags override the config file. \
                  Pool options (-u, -p, --tls, --tls-fingerprint, --rig-id, -k, -x) apply to the pool \
                  of the -o before them."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) flags: Flags,
}

/// `run` (the default) or `check`.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Run the proxy (the default when no subcommand is given).
    Run,
    /// Check the config and exit (as --dry-run).
    Check,
}

/// Every option; global, so they may come before or after `run`/`check`.
#[derive(Args, Debug, Default)]
pub(crate) struct Flags {
    /// JSON config file (comments and trailing commas allowed; xmrig-proxy's files load)
    #[arg(short = 'c', long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Pool URL (host:port, stratum+tcp://, stratum+ssl://); repeat for backup pools
    #[arg(short = 'o', long = "url", global = true, value_name = "URL", action = ArgAction::Append)]
    pub(crate) url: Vec<String>,
    /// Login for the pool (wallet address)
    #[arg(short = 'u', long, global = true, value_name = "USERNAME", action = ArgAction::Append)]
    pub(crate) user: Vec<String>,
    /// Password for the pool
    #[arg(short = 'p', long, global = true, value_name = "PASSWORD", action = ArgAction::Append)]
    pub(crate) pass: Vec<String>,
    /// Rig id sent to the pool
    #[arg(long, global = true, value_name = "ID", action = ArgAction::Append)]
    pub(crate) rig_id: Vec<String>,
    /// TLS to the pool (as xmrig-proxy's --tls; to serve miners over TLS use --tls-bind)
    #[arg(long, global = true, action = ArgAction::Append, num_args = 0, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub(crate) tls: Vec<bool>,
    /// SHA-256 fingerprint the pool's TLS certificate must have
    #[arg(long, global = true, value_name = "HEX", action = ArgAction::Append)]
    pub(crate) tls_fingerprint: Vec<String>,
    /// Send keepalived to the pool every 60 s even if it does not offer the extension
    #[arg(short = 'k', long, global = true, action = ArgAction::Append, num_args = 0, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    pub(crate) keepalive: Vec<bool>,
    /// Reach the pool through this SOCKS5 proxy
    #[arg(short = 'x', long = "proxy", global = true, value_name = "HOST:PORT", action = ArgAction::Append)]
    pub(crate) socks5: Vec<String>,
    // Address to serve miners on (the help text is not a doc comment: `[::]` is no link).
    #[arg(
        short = 'b',
        long,
        global = true,
        value_name = "ADDR",
        action = ArgAction::Append,
        help = "Address to serve miners on, e.g. 0.0.0.0:3333 or [::]:3333; repeatable [default: 0.0.0.0:3333]"
    )]
    pub(crate) bind: Vec<String>,
    /// Address to serve miners on over TLS; repeatable
    #[arg(long, global = true, value_name = "ADDR", action = ArgAction::Append)]
    pub(crate) tls_bind: Vec<String>,
    /// Proxy mode: nicehash, simple or extra_nonce (daemon upstreams only)
    #[arg(
        short = 'm',
        long,
        global = true,
        value_name = "MODE",
        default_value = "nicehash"
    )]
    pub(crate) mode: Mode,
    /// Connection attempts per pool before the next one
    #[arg(
        short = 'r',
        long,
        global = true,
        value_name = "N",
        default_value_t = 3
    )]
    pub(crate) retries: u32,
    /// Seconds between connection attempts
    #[arg(
        short = 'R',
        long,
        global = true,
        value_name = "N",
        default_value_t = 2
    )]
    pub(crate) retry_pause: u64,
    /// The agent the proxy presents to pools [default: stratum-proxy/VERSION]
    #[arg(long, global = true, value_name = "AGENT")]
    pub(crate) user_agent: Option<String>,
    /// Password miners must send
    #[arg(long, global = true, value_name = "P")]
    pub(crate) access_password: Option<String>,
    /// Serve the HTTP API on this port (on --http-host) [default: off]
    #[arg(long, alias = "http-port", global = true, value_name = "N")]
    pub(crate) api_port: Option<u16>,
    /// Bearer token of the HTTP API
    #[arg(long, alias = "http-access-token", global = true, value_name = "T")]
    pub(crate) api_access_token: Option<String>,
    /// Address of the HTTP API
    #[arg(long, global = true, value_name = "HOST", default_value = "127.0.0.1")]
    pub(crate) http_host: String,
    /// Let the HTTP API take writes (PUT /1/config; only with an access token)
    #[arg(long, global = true)]
    pub(crate) http_no_restricted: bool,
    /// Log without colour (also when NO_COLOR is set or the log is no terminal)
    #[arg(long, global = true)]
    pub(crate) no_color: bool,
    /// Also write the log to this file
    #[arg(short = 'l', long, global = true, value_name = "FILE")]
    pub(crate) log_file: Option<String>,
    /// Check the config and exit
    #[arg(long, global = true)]
    pub(crate) dry_run: bool,
}

/// One pool option of the command line, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PoolFlag {
    Url(String),
    User(String),
    Pass(String),
    RigId(String),
    Tls,
    Fingerprint(String),
    Keepalive,
    Socks5(String),
}

/// What the command line changes in a config, applied to the file's config at start and at
/// each reload.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overrides {
    /// Pools from `-o` (replacing the file's), or `None`.
    pools: Option<Vec<PoolConfig>>,
    /// Pool options given without `-o`: applied to every pool of the file.
    every_pool: Vec<PoolFlag>,
    bind: Option<Vec<BindAddr>>,
    mode: Option<Mode>,
    retries: Option<u32>,
    retry_pause: Option<u64>,
    user_agent: Option<String>,
    access_password: Option<String>,
    api_port: Option<u16>,
    api_access_token: Option<String>,
    http_host: Option<String>,
    http_no_restricted: bool,
    no_color: bool,
    log_file: Option<String>,
}

fn from_cli(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The values of `id` with their positions on the command line.
fn positioned<T: Clone + Send + Sync + 'static>(m: &ArgMatches, id: &str) -> Vec<(usize, T)> {
    match (m.indices_of(id), m.get_many::<T>(id)) {
        (Some(i), Some(v)) => i.zip(v.cloned()).collect(),
        _ => Vec::new(),
    }
}

fn apply_pool_flag(pool: &mut PoolConfig, flag: &PoolFlag) {
    match flag {
        PoolFlag::Url(u) => pool.url.clone_from(u),
        PoolFlag::User(u) => pool.user.clone_from(u),
        PoolFlag::Pass(p) => pool.pass.clone_from(p),
        PoolFlag::RigId(r) => pool.rig_id = Some(r.clone()),
        PoolFlag::Tls => pool.tls = true,
        PoolFlag::Fingerprint(f) => pool.tls_fingerprint = Some(f.clone()),
        PoolFlag::Keepalive => pool.keepalive = pool_keepalive_on(),
        PoolFlag::Socks5(s) => pool.socks5 = Some(s.clone()),
    }
}

fn pool_keepalive_on() -> proxy_core::config::Keepalive {
    proxy_core::config::Keepalive::Flag(true)
}

fn parse_bind(s: &str, tls: bool, flag: &str) -> anyhow::Result<BindAddr> {
    let mut b: BindAddr = serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|e| anyhow::anyhow!("{flag} {s:?}: {e}"))?;
    b.tls = tls;
    Ok(b)
}

impl Overrides {
    /// Reads the overrides from the parsed command line. `m` is the matches of the
    /// subcommand when one was given (clap gives the global options there), else the top
    /// level's.
    ///
    /// # Errors
    /// A `-b`/`--tls-bind` value that is not `host:port`.
    pub(crate) fn from_matches(flags: &Flags, m: &ArgMatches) -> anyhow::Result<Self> {
        let mut events: Vec<(usize, PoolFlag)> = Vec::new();
        let strings = |id: &str, f: fn(String) -> PoolFlag| -> Vec<(usize, PoolFlag)> {
            positioned::<String>(m, id)
                .into_iter()
                .map(|(i, v)| (i, f(v)))
                .collect()
        };
        events.extend(strings("url", PoolFlag::Url));
        events.extend(strings("user", PoolFlag::User));
        events.extend(strings("pass", PoolFlag::Pass));
        events.extend(strings("rig_id", PoolFlag::RigId));
        events.extend(strings("tls_fingerprint", PoolFlag::Fingerprint));
        events.extend(strings("socks5", PoolFlag::Socks5));
        for (i, _) in positioned::<bool>(m, "tls") {
            events.push((i, PoolFlag::Tls));
        }
        for (i, _) in positioned::<bool>(m, "keepalive") {
            events.push((i, PoolFlag::Keepalive));
        }
        events.sort_by_key(|(i, _)| *i);
        let mut out = Self::default();
        if events.iter().any(|(_, f)| matches!(f, PoolFlag::Url(_))) {
            let mut pools: Vec<PoolConfig> = Vec::new();
            for (_, flag) in &events {
                let start = match flag {
                    PoolFlag::Url(_) => pools.last().is_none_or(|p| !p.url.is_empty()),
                    _ => pools.is_empty(),
                };
                if start {
                    pools.push(PoolConfig::default());
                }
                if let Some(last) = pools.last_mut() {
                    apply_pool_flag(last, flag);
                }
            }
            out.pools = Some(pools);
        } else {
            out.every_pool = events.into_iter().map(|(_, f)| f).collect();
        }
        let mut binds = Vec::new();
        for (i, b) in positioned::<String>(m, "bind") {
            binds.push((i, parse_bind(&b, false, "-b")?));
        }
        for (i, b) in positioned::<String>(m, "tls_bind") {
            binds.push((i, parse_bind(&b, true, "--tls-bind")?));
        }
        binds.sort_by_key(|(i, _)| *i);
        if !binds.is_empty() {
            out.bind = Some(binds.into_iter().map(|(_, b)| b).collect());
        }
        out.mode = from_cli(m, "mode").then_some(flags.mode);
        out.retries = from_cli(m, "retries").then_some(flags.retries);
        out.retry_pause = from_cli(m, "retry_pause").then_some(flags.retry_pause);
        out.user_agent.clone_from(&flags.user_agent);
        out.access_password.clone_from(&flags.access_password);
        out.api_port = flags.api_port;
        out.api_access_token.clone_from(&flags.api_access_token);
        out.http_host = from_cli(m, "http_host").then(|| flags.http_host.clone());
        out.http_no_restricted = flags.http_no_restricted;
        out.no_color = flags.no_color;
        out.log_file.clone_from(&flags.log_file);
        Ok(out)
    }

    /// Whether `-o` gave pools (then no config file is needed).
    pub(crate) fn has_pools(&self) -> bool {
        self.pools.is_some()
    }

    /// Applies the overrides to `c` (the file's config, or the defaults).
    pub(crate) fn apply(&self, c: &mut Config) {
        if let Some(pools) = &self.pools {
            c.pools.clone_from(pools);
        }
        for pool in &mut c.pools {
            for flag in &self.every_pool {
                apply_pool_flag(pool, flag);
            }
        }
        if let Some(bind) = &self.bind {
            c.bind.clone_from(bind);
        }
        if let Some(mode) = self.mode {
            c.mode = mode;
        }
        if let Some(r) = self.retries {
            c.retries = r;
        }
        if let Some(r) = self.retry_pause {
            c.retry_pause = r;
        }
        if let Some(ua) = &self.user_agent {
            c.user_agent = Some(ua.clone());
        }
        if let Some(p) = &self.access_password {
            c.access_password = Some(p.clone());
        }
        if let Some(port) = self.api_port {
            c.http.enabled = true;
            c.http.port = port;
        }
        if let Some(t) = &self.api_access_token {
            c.http.access_token = Some(t.clone());
        }
        if let Some(h) = &self.http_host {
            c.http.host.clone_from(h);
        }
        if self.http_no_restricted {
            c.http.restricted = false;
        }
        if self.no_color {
            c.colors = false;
        }
        if let Some(f) = &self.log_file {
            c.log_file = Some(f.clone());
        }
    }
}

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file (from `-c`, or `./config.json`).
    File(PathBuf),
    /// The command line alone (`-o` given, no file).
    Flags,
}

/// Picks the config source: `-c`, else the flags when `-o` was given, else `./config.json`
/// when it exists.
///
/// # Errors
/// When there is none of them.
pub(crate) fn source(flags: &Flags, overrides: &Overrides) -> anyhow::Result<Source> {
    if let Some(path) = &flags.config {
        return Ok(Source::File(path.clone()));
    }
    if overrides.has_pools() {
        return Ok(Source::Flags);
    }
    let local = PathBuf::from("config.json");
    if local.is_file() {
        return Ok(Source::File(local));
    }
    anyhow::bail!("no config: give a config file with -c FILE, or a pool with -o URL (see --help)")
}

/// The config the proxy would start with: the source's, with the overrides applied, and
/// `bind` defaulted to [`DEFAULT_BIND`] when neither the flags nor the file give one.
/// Not validated.
///
/// # Errors
/// A file that cannot be read or parsed.
pub(crate) fn load(source: &Source, overrides: &Overrides) -> anyhow::Result<Config> {
    let mut c = match source {
        Source::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("config: cannot read {}: {e}", path.display()))?;
            Config::from_json(&text)?
        }
        Source::Flags => Config::default(),
    };
    overrides.apply(&mut c);
    if c.bind.is_empty() && *source == Source::Flags {
        c.bind = vec![parse_bind(DEFAULT_BIND, false, "bind")?];
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn parse(args: &[&str]) -> (Cli, Overrides) {
        let m = Cli::command()
            .try_get_matches_from(std::iter::once("proxy-cli").chain(args.iter().copied()))
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let sub = m.subcommand().map_or(&m, |(_, s)| s);
        let o = Overrides::from_matches(&cli.flags, sub).unwrap();
        (cli, o)
    }

    #[test]
    fn user_and_pass_apply_to_the_pool_before_them_as_in_xmrig() {
        let (_, o) = parse(&[
            "-u",
            "FIRST",
            "-o",
            "a:1",
            "-p",
            "pa",
            "-o",
            "stratum+ssl://b:2",
            "-u",
            "W2",
            "--tls",
            "-k",
            "-x",
            "127.0.0.1:9050",
            "--rig-id",
            "r2",
        ]);
        let pools = o.pools.unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!(
            (
                pools[0].url.as_str(),
                pools[0].user.as_str(),
                pools[0].pass.as_str()
            ),
            ("a:1", "FIRST", "pa")
        );
        assert!(!pools[0].tls && pools[0].socks5.is_none());
        assert_eq!(
            (pools[1].url.as_str(), pools[1].user.as_str()),
            ("stratum+ssl://b:2", "W2")
        );
        assert!(pools[1].tls && pools[1].keepalive.forced());
        assert_eq!(pools[1].socks5.as_deref(), Some("127.0.0.1:9050"));
        assert_eq!(pools[1].rig_id.as_deref(), Some("r2"));
    }

    #[test]
    fn flags_override_the_file_and_defaults_do_not() {
        let mut file = Config::from_json(
            r#"{"mode":"simple","retries":9,"bind":["127.0.0.1:1"],"pools":[{"url":"f:1","user":"F"},{"url":"g:1"}]}"#,
        )
        .unwrap();
        let (cli, o) = parse(&[
            "run",
            "-c",
            "x.json",
            "-u",
            "NEW",
            "--api-port",
            "0",
            "--api-access-token",
            "tok",
            "--http-no-restricted",
            "--no-color",
        ]);
        assert_eq!(cli.command, Some(Command::Run));
        assert_eq!(
            cli.flags.config.as_deref(),
            Some(std::path::Path::new("x.json"))
        );
        o.apply(&mut file);
        assert_eq!(
            file.mode,
            Mode::Simple,
            "the default of -m does not override"
        );
        assert_eq!(file.retries, 9);
        assert_eq!(file.bind.len(), 1);
        assert!(
            file.pools.iter().all(|p| p.user == "NEW"),
            "-u without -o: every pool"
        );
        assert!(file.http.enabled && file.http.port == 0);
        assert!(file.http.writable(), "token and --http-no-restricted");
        assert!(!file.colors);
        let (_, o) = parse(&[
            "-m",
            "nicehash",
            "-r",
            "1",
            "-b",
            "127.0.0.1:5",
            "--tls-bind",
            "[::1]:6",
        ]);
        o.apply(&mut file);
        assert_eq!((file.mode, file.retries), (Mode::Nicehash, 1));
        assert_eq!(file.bind.len(), 2);
        assert!(!file.bind[0].tls && file.bind[1].tls && file.bind[1].host == "::1");
    }

    #[test]
    fn pools_on_the_command_line_need_no_file_and_bind_defaults() {
        let (cli, o) = parse(&["-o", "pool:3333", "-u", "WALLET"]);
        assert_eq!(cli.command, None);
        let src = source(&cli.flags, &o).unwrap();
        assert_eq!(src, Source::Flags);
        let c = load(&src, &o).unwrap();
        c.validate().unwrap();
        assert_eq!((c.bind[0].host.as_str(), c.bind[0].port), ("0.0.0.0", 3333));
        assert_eq!(c.pools[0].user, "WALLET");
    }

    #[test]
    fn an_unknown_mode_on_the_command_line_is_refused_naming_the_modes() {
        let err = Cli::command()
            .try_get_matches_from(["proxy-cli", "-m", "bogus", "-o", "p:1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nicehash") && err.contains("simple") && err.contains("extra_nonce"),
            "{err}"
        );
        let m = Cli::command()
            .try_get_matches_from(["proxy-cli", "-m", "extra_nonce", "-o", "p:1"])
            .unwrap();
        assert_eq!(m.get_one::<Mode>("mode"), Some(&Mode::ExtraNonce));
    }
}
