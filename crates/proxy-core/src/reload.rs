//! Config reload (go-proxy RFC §18): a changed file, or a config given through the API, is
//! validated and swapped in live.
//!
//! What takes effect at once: pools (upstreams whose pool changed log in to the new pool
//! before the old connection is drained and closed, see `pool_client::Upstream::set_pools`;
//! miners stay),
//! `retries`/`retry-pause`/`pool-reply-timeout`, `access-password`, `custom-diff`,
//! `algo-ext`, `workers`, `workers-idle-timeout`, `workers-max`, `rate-limit`, the log
//! files, `http.access-token` and `http.restricted`. What needs a restart, and is logged as
//! such while the running value is kept: `bind` (a bind's `protocol` too), `mode`, the
//! top-level `protocol`, `tls`, and `http.enabled`/`host`/`port`. An invalid new config is
//! refused with its error and the running one keeps serving: so is one that, with the running
//! values of those keys, leaves a bind's family without an enabled pool. Each family's driver
//! gets its own pools (`pools` entries of its `protocol`). Reloading never drops a miner or a
//! share. (`stratum-v1` settings apply to miners and upstream connections that start after
//! the reload.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::{Drivers, Monitor, Proxy, ProxyError, ProxyHandle};

/// How often the config file is checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A change made to every config read from the file (command-line overrides), at start and
/// at each reload; see [`Proxy::start_from_file_with`].
pub type ConfigAdjust = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The running config changed.
    pub changed: bool,
    /// Keys whose new values wait for a restart (their running values were kept).
    pub needs_restart: Vec<&'static str>,
}

impl Drivers {
    /// Validates `new` and makes it the running config of every family's driver (see the
    /// module docs).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `new` does not validate; nothing changes then.
    pub(crate) fn reload(&self, mut new: Config) -> Result<ReloadOutcome, ConfigError> {
        new.validate()?;
        let old = self.config.load_full();
        let mut needs_restart = Vec::new();
        if new.bind != old.bind {
            needs_restart.push("bind");
            new.bind.clone_from(&old.bind);
        }
        if new.mode != old.mode {
            needs_restart.push("mode");
            new.mode = old.mode;
        }
        if new.protocol != old.protocol {
            needs_restart.push("protocol");
            new.protocol = old.protocol;
        }
        if new.tls != old.tls {
            needs_restart.push("tls");
            new.tls.clone_from(&old.tls);
        }
        if (new.http.enabled, &new.http.host, new.http.port)
            != (old.http.enabled, &old.http.host, old.http.port)
        {
            needs_restart.push("http");
            new.http.enabled = old.http.enabled;
            new.http.host.clone_from(&old.http.host);
            new.http.port = old.http.port;
        }
        if !needs_restart.is_empty() {
            // The pools must suit the running values: the mode (extra_nonce: daemons only),
            // and every running bind's family needs a pool of its own.
            new.validate()?;
        }
        for key in &needs_restart {
            tracing::warn!(
                "config: a change of `{key}` needs a restart; keeping the running value"
            );
        }
        if new == *old {
            return Ok(ReloadOutcome {
                changed: false,
                needs_restart,
            });
        }
        if new.ignored_keys != old.ignored_keys {
            if let Some(warning) = new.ignored_warning() {
                tracing::warn!("{warning}");
            }
        }
        let upstreams_changed = new.pools != old.pools
            || new.retries != old.retries
            || new.retry_pause != old.retry_pause
            || new.pool_reply_timeout != old.pool_reply_timeout;
        let new = Arc::new(new);
        self.config.store(new.clone());
        for d in &self.list {
            d.apply_config(&new, upstreams_changed);
        }
        // One rate limiter for every family.
        self.primary()
            .events()
            .rate_limiter
            .reconfigure(&new.rate_limit);
        tracing::info!("config reloaded");
        if new.http != old.http {
            if let Some(warning) = new.http.read_only_warning() {
                tracing::warn!("{warning}");
            }
        }
        Ok(ReloadOutcome {
            changed: true,
            needs_restart,
        })
    }
}

impl Monitor {
    /// Validates and applies a new config through the same path as a file reload.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it does not validate; the running config is unchanged.
    pub fn apply_config(&self, new: Config) -> Result<ReloadOutcome, ConfigError> {
        self.drivers.reload(new)
    }

    /// The config file, when the proxy was started with [`Proxy::start_from_file`].
    pub fn config_path(&self) -> Option<&Path> {
        self.drivers.config_path.get().map(PathBuf::as_path)
    }
}

impl ProxyHandle {
    /// Validates and applies a new config (see [`Monitor::apply_config`]).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it does not validate.
    pub fn reload(&self, new: Config) -> Result<ReloadOutcome, ConfigError> {
        self.drivers.reload(new)
    }
}

impl Proxy {
    /// Loads, validates and starts the config at `path`, and keeps watching the file: when
    /// `watch` is true in the running config, a changed file is reloaded (checked every
    /// [`WATCH_INTERVAL`]).
    ///
    /// # Errors
    /// As [`Proxy::start`], plus [`ConfigError`] for a file that cannot be read or parsed.
    pub async fn start_from_file(path: &Path) -> Result<ProxyHandle, ProxyError> {
        Self::start_from_file_with(path, Arc::new(|_: &mut Config| {})).await
    }

    /// As [`Proxy::start_from_file`], with `adjust` applied to the file's config at start and
    /// at every reload of the file: the command line's flags, which override the file.
    ///
    /// # Errors
    /// As [`Proxy::start_from_file`].
    pub async fn start_from_file_with(
        path: &Path,
        adjust: ConfigAdjust,
    ) -> Result<ProxyHandle, ProxyError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::from_json(&String::from_utf8_lossy(&bytes))?;
        adjust(&mut config);
        config.validate()?;
        let handle = Proxy::start(config).await?;
        let _ = handle.drivers.config_path.set(path.to_path_buf());
        handle.tracker.spawn(watch_file(
            handle.drivers.clone(),
            path.to_path_buf(),
            bytes,
            adjust,
            handle.accept_stop.clone(),
        ));
        Ok(handle)
    }
}

/// Polls the config file and reloads it when its contents change and `watch` is on.
/// `loaded` is the content the running config came from.
async fn watch_file(
    shared: Arc<Drivers>,
    path: PathBuf,
    loaded: Vec<u8>,
    adjust: ConfigAdjust,
    stop: CancellationToken,
) {
    let mut last = Some(loaded);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(now) = tokio::fs::read(&path).await else {
            continue;
        };
        if last.as_ref() == Some(&now) {
            continue;
        }
        last = Some(now.clone());
        tracing::debug!(path = %path.display(), "config file changed");
        if !shared.config.load().watch {
            continue;
        }
        let text = String::from_utf8_lossy(&now);
        let parsed = Config::from_json(&text).map(|mut c| {
            adjust(&mut c);
            c
        });
        match parsed.and_then(|c| shared.reload(c)) {
            Ok(_) => {}
            Err(e) => tracing::error!(
                path = %path.display(),
                "config change refused, the running config stays: {e}"
            ),
        }
    }
}
