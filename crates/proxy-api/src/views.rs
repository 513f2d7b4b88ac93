//! The JSON bodies of `/1/summary`, `/1/workers` and `/1/miners` (RFC §16 shapes, with
//! xmrig-proxy's extra summary fields).

use tokio::time::Instant;

use proxy_core::config::WorkersMode;
use proxy_core::{MinerDifficulty, Monitor, Notice, Protocol, UpstreamState};
use serde::ser::SerializeTuple;
use serde::Serialize;

use crate::resources::{self, Resources};
use crate::VERSION;

/// `miners` object of `/1/summary`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MinersCount {
    /// Connected now.
    pub now: u64,
    /// Peak since start.
    pub max: u64,
}

/// `upstreams` object of `/1/summary`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Upstreams {
    /// Logged in with miners on them.
    pub active: u64,
    /// Logged in, no miners.
    pub sleep: u64,
    /// Connecting or failing.
    pub error: u64,
    /// All.
    pub total: u64,
    /// Miners per active upstream (0 with none active).
    pub ratio: f64,
}

/// `results` object of `/1/summary`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Results {
    /// Accepted by the pool (plus, with `custom-diff-stats`, accepted by the proxy at a
    /// miner's custom difficulty).
    pub accepted: u64,
    /// Rejected by the pool, timed out, or lost with the pool connection.
    pub rejected: u64,
    /// Refused by the proxy before the pool.
    pub invalid: u64,
    /// Forwarded shares that were for the previous job.
    pub expired: u64,
    /// Seconds per accepted share (uptime / accepted; 0 before the first).
    pub avg_time: u64,
    /// Median pool reply latency in ms over the last 1024 pool-accepted shares.
    pub latency: u64,
    /// Sum of accepted share difficulties.
    pub hashes_total: u64,
    /// The ten highest share difficulties accepted (of the result hash), highest first.
    pub best: [u64; 10],
    /// Always 0: this proxy donates nothing (xmrig-proxy's field).
    pub hashes_donate: u64,
    /// Blocks accepted by daemon upstreams.
    pub blocks: u64,
    /// Shares the proxy answered itself at a miner's custom difficulty (not forwarded).
    pub custom_accepted: u64,
}

/// `hashrate` object of `/1/summary` and `/1/workers`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HashrateTotals {
    /// H/s over 60 s, 600 s, 1 h, 12 h, 24 h, and all-time (hashes / uptime), rounded to
    /// 0.01.
    pub total: [f64; 6],
}

/// The `/1/summary` body (also `/2/summary` and `/api.json`): the RFC's fields, then
/// xmrig-proxy's `id`, `worker_id`, `kind`, `ua`, `restricted`, `resources`, `features`,
/// `algo`, `donate_level`, `donated` and `results.hashes_donate`, which xmrig's dashboards
/// read.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    /// `api.id` of the config (an xmrig-proxy key), or null.
    pub id: Option<String>,
    /// `api.worker-id` of the config, else the host name, or null.
    pub worker_id: Option<String>,
    /// Seconds since start.
    pub uptime: u64,
    /// `http.restricted` of the running config.
    pub restricted: bool,
    /// Host resources (Linux; zeros elsewhere).
    pub resources: Resources,
    /// Built-in features, as xmrig-proxy lists them: `api`, `http`, `tls`.
    pub features: [&'static str; 3],
    /// Proxy version.
    pub version: &'static str,
    /// Always `"proxy"`.
    pub kind: &'static str,
    /// The `algo` of the first enabled pool of the config, else `"invalid"` (what
    /// xmrig-proxy reports: a proxy mines no algorithm of its own).
    pub algo: String,
    /// `stratum-proxy/<version> (<os> <arch>)`.
    pub ua: String,
    /// `nicehash` or `simple`.
    pub mode: String,
    /// Always 0: no donation.
    pub donate_level: u64,
    /// Always 0.0: percent of hashes donated.
    pub donated: f64,
    /// Hashrates.
    pub hashrate: HashrateTotals,
    /// Miner counts.
    pub miners: MinersCount,
    /// Number of worker records.
    pub workers: u64,
    /// Upstream counts.
    pub upstreams: Upstreams,
    /// Share results.
    pub results: Results,
    /// The family of the figures above (the primary one, the config's top-level
    /// `protocol` when it has binds); only when the proxy serves Stratum V1 ([`marked`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    /// Each family's figures, the primary first; only when the proxy serves Stratum V1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<FamilySummary>>,
}

/// One family's figures in `/1/summary`'s `protocols`: the summary's fields of the same
/// names, for that family's miners, workers, upstreams and shares (a Stratum V1 share of
/// difficulty `d` counts `d · 2^32` hashes).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FamilySummary {
    /// `cryptonote` or `stratum-v1`.
    pub protocol: &'static str,
    /// Hashrates.
    pub hashrate: HashrateTotals,
    /// Miner counts.
    pub miners: MinersCount,
    /// Number of worker records.
    pub workers: u64,
    /// Upstream counts.
    pub upstreams: Upstreams,
    /// Share results.
    pub results: Results,
}

/// Whether the API marks rows and figures with their family: when the proxy serves a
/// family other than CryptoNote. A CryptoNote-only proxy keeps the RFC's shapes byte for
/// byte.
pub fn marked(m: &Monitor) -> bool {
    m.families()
        .iter()
        .any(|f| f.protocol() != Protocol::CryptoNote)
}

/// One family's figures as of `at`.
fn family_summary(f: &Monitor, at: Instant) -> FamilySummary {
    let s = f.stats();
    let r = f.summary_at(at);
    let u = f.upstreams();
    FamilySummary {
        protocol: f.protocol().name(),
        hashrate: HashrateTotals {
            total: r.hashrate.map(round2),
        },
        miners: MinersCount {
            now: s.miners,
            max: s.max_miners,
        },
        workers: f.worker_count() as u64,
        upstreams: Upstreams {
            active: u.active,
            sleep: u.sleep,
            error: u.error,
            total: u.total,
            ratio: if u.active == 0 {
                0.0
            } else {
                s.miners as f64 / u.active as f64
            },
        },
        results: Results {
            accepted: r.accepted,
            rejected: r.rejected,
            invalid: r.invalid,
            expired: r.expired,
            avg_time: r.avg_time,
            latency: r.latency,
            hashes_total: r.hashes,
            best: r.best,
            hashes_donate: 0,
            blocks: f.blocks(),
            custom_accepted: r.custom_accepted,
        },
    }
}

/// Rounds to two decimals, as the API reports hashrates.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The `/1/summary` body (RFC §16) as of now; see [`summary_at`].
pub fn summary(m: &Monitor) -> Summary {
    summary_at(m, Instant::now())
}

/// The `/1/summary` body (RFC §16) as of `at`, an instant of the monotonic clock no earlier
/// than [`Monitor::started`]: uptime and the average share time in seconds since the start,
/// hashrates in H/s over xmrig-proxy's windows (60 s, 10 min, 1 h, 12 h, 24 h, all time).
pub fn summary_at(m: &Monitor, at: Instant) -> Summary {
    let config = m.config();
    let uptime = at.saturating_duration_since(m.started()).as_secs();
    let api = config.unknown_keys.get("api");
    let api_str = |key: &str| {
        api.and_then(|a| a.get(key))
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    // Each family's figures taken once: the top-level ones are `m`'s family's among them.
    let protocols = marked(m).then(|| {
        m.families()
            .iter()
            .map(|f| family_summary(f, at))
            .collect::<Vec<_>>()
    });
    let protocol = m.protocol().name();
    let top = protocols
        .as_ref()
        .and_then(|all| all.iter().find(|f| f.protocol == protocol).cloned())
        .unwrap_or_else(|| family_summary(m, at));
    Summary {
        id: api_str("id"),
        worker_id: api_str("worker-id").or_else(resources::host_name),
        uptime,
        restricted: config.http.restricted,
        resources: resources::read(),
        features: ["api", "http", "tls"],
        version: VERSION,
        kind: "proxy",
        algo: config
            .pools
            .iter()
            .find(|p| p.enabled)
            .and_then(|p| p.algo.clone())
            .unwrap_or_else(|| "invalid".into()),
        ua: format!(
            "stratum-proxy/{VERSION} ({} {})",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
        mode: config.mode.to_string(),
        donate_level: 0,
        donated: 0.0,
        hashrate: top.hashrate,
        miners: top.miners,
        workers: top.workers,
        upstreams: top.upstreams,
        results: top.results,
        protocol: protocols.is_some().then_some(protocol),
        protocols,
    }
}

/// One `/1/workers` row, serialized as an array: name, last_ip, connections (open now),
/// accepted, rejected, invalid, hashes, last_hash_unix, then the hashrates.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// Worker name.
    pub name: String,
    /// IP address of the latest connection.
    pub last_ip: String,
    /// Connections open now.
    pub connections: u64,
    /// Accepted shares.
    pub accepted: u64,
    /// Shares the pool rejected.
    pub rejected: u64,
    /// Shares the proxy refused.
    pub invalid: u64,
    /// Sum of accepted share difficulties.
    pub hashes: u64,
    /// Unix time in seconds of the last accepted share; 0 = none.
    pub last_hash_unix: u64,
    /// H/s over 60 s, 600 s, 1 h, 12 h and 24 h, rounded to 0.01.
    pub hashrate: [f64; 5],
    /// The worker's family, a 14th column only when the proxy serves Stratum V1
    /// ([`marked`]).
    pub protocol: Option<&'static str>,
}

impl Serialize for WorkerRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(13 + usize::from(self.protocol.is_some()))?;
        t.serialize_element(&self.name)?;
        t.serialize_element(&self.last_ip)?;
        for n in [
            self.connections,
            self.accepted,
            self.rejected,
            self.invalid,
            self.hashes,
            self.last_hash_unix,
        ] {
            t.serialize_element(&n)?;
        }
        for h in self.hashrate {
            t.serialize_element(&h)?;
        }
        if let Some(p) = self.protocol {
            t.serialize_element(p)?;
        }
        t.end()
    }
}

/// The `/1/workers` body.
#[derive(Debug, Serialize, PartialEq)]
pub struct WorkersBody {
    /// The naming mode: `rig-id`, `user`, `password`, `agent`, `ip` or `false`.
    pub mode: WorkersMode,
    /// The proxy's total hashrates (as in `/1/summary`).
    pub hashrate: HashrateTotals,
    /// One row per worker, in first-seen order.
    pub workers: Vec<WorkerRow>,
}

/// The `/1/workers` body (RFC §16, records per RFC §13) as of `at` (see [`summary_at`]): one
/// row per worker in first-seen order, xmrig-proxy's array shape, hashrates in H/s.
pub fn workers_at(m: &Monitor, at: Instant) -> WorkersBody {
    let marked = marked(m);
    let mut mode = m.config().workers;
    let mut workers = Vec::new();
    for (i, f) in m.families().iter().enumerate() {
        let snapshot = f.workers_at(at);
        if i == 0 {
            mode = snapshot.mode;
        }
        let protocol = marked.then(|| f.protocol().name());
        workers.extend(snapshot.workers.into_iter().map(|w| WorkerRow {
            name: w.name,
            last_ip: w.last_ip.to_string(),
            connections: w.connections,
            accepted: w.accepted,
            rejected: w.rejected,
            invalid: w.invalid,
            hashes: w.hashes,
            last_hash_unix: w.last_hash_unix,
            hashrate: w.hashrate.map(round2),
            protocol,
        }));
    }
    WorkersBody {
        mode,
        hashrate: HashrateTotals {
            total: m.summary_at(at).hashrate.map(round2),
        },
        workers,
    }
}

/// Column names of the `/1/miners` rows.
pub const MINERS_FORMAT: [&str; 10] = [
    "id", "ip", "tx", "rx", "state", "diff", "user", "password", "rig_id", "agent",
];

/// [`MINERS_FORMAT`] and an 11th column, `protocol`, when the proxy serves Stratum V1
/// ([`marked`]).
pub const MINERS_FORMAT_MARKED: [&str; 11] = [
    "id", "ip", "tx", "rx", "state", "diff", "user", "password", "rig_id", "agent", "protocol",
];

/// One `/1/miners` row, serialized as an array in the order of [`MINERS_FORMAT`] (or
/// [`MINERS_FORMAT_MARKED`]); the password column is always `"********"`.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerRow {
    /// Connection id.
    pub id: u64,
    /// Remote `ip:port`.
    pub ip: String,
    /// Bytes sent to the miner.
    pub tx: u64,
    /// Bytes received from it.
    pub rx: u64,
    /// 0 WaitLogin, 1 WaitReady, 2 Ready, 3 Closing.
    pub state: u8,
    /// Difficulty of the last job sent: an integer for a CryptoNote miner, a float for a
    /// Stratum V1 one (`0.5`).
    pub diff: MinerDifficulty,
    /// Login, null before login.
    pub user: Option<String>,
    /// Rig id, null when none was sent.
    pub rig_id: Option<String>,
    /// Agent, null before login.
    pub agent: Option<String>,
    /// The miner's family, an 11th column only when the proxy serves Stratum V1.
    pub protocol: Option<&'static str>,
}

impl Serialize for MinerRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(10 + usize::from(self.protocol.is_some()))?;
        t.serialize_element(&self.id)?;
        t.serialize_element(&self.ip)?;
        t.serialize_element(&self.tx)?;
        t.serialize_element(&self.rx)?;
        t.serialize_element(&self.state)?;
        t.serialize_element(&self.diff)?;
        t.serialize_element(&self.user)?;
        t.serialize_element(crate::SECRET_MASK)?;
        t.serialize_element(&self.rig_id)?;
        t.serialize_element(&self.agent)?;
        if let Some(p) = self.protocol {
            t.serialize_element(p)?;
        }
        t.end()
    }
}

/// The `/1/miners` body.
#[derive(Debug, Serialize, PartialEq)]
pub struct MinersBody {
    /// [`MINERS_FORMAT`], or [`MINERS_FORMAT_MARKED`] when the proxy serves Stratum V1.
    pub format: &'static [&'static str],
    /// One row per connection, by id.
    pub miners: Vec<MinerRow>,
}

/// The `/1/miners` body (RFC §16) now: one row per connected miner.
pub fn miners(m: &Monitor) -> MinersBody {
    let marked = marked(m);
    MinersBody {
        format: if marked {
            &MINERS_FORMAT_MARKED
        } else {
            &MINERS_FORMAT
        },
        miners: m
            .miners()
            .into_iter()
            .map(|m| MinerRow {
                id: m.id,
                ip: m.peer.to_string(),
                tx: m.tx,
                rx: m.rx,
                state: m.state as u8,
                diff: m.diff,
                user: m.user,
                rig_id: m.rig_id,
                agent: m.agent,
                protocol: marked.then(|| m.protocol.name()),
            })
            .collect(),
    }
}

/// One `/1/upstreams` row: an upstream pool connection.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UpstreamRow {
    /// Upstream id, from 1 in opening order.
    pub id: u64,
    /// `host:port` of the pool it last logged in to; null before its first login.
    pub pool: Option<String>,
    /// `connecting`, `active`, `error` (every attempt failed so far) or `stopped`.
    pub state: &'static str,
    /// Miners on it now.
    pub miners: u64,
    /// The pool is a Monero daemon.
    pub daemon: bool,
    /// Hashes (sum of accepted share difficulties) through it since it opened.
    pub hashes: u64,
    /// Its family, only when the proxy serves Stratum V1 ([`marked`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
}

/// The `/1/upstreams` body.
#[derive(Debug, Serialize, PartialEq)]
pub struct UpstreamsBody {
    /// Median pool reply latency in ms over the last 1024 pool-accepted shares (all pools).
    pub latency: u64,
    /// One row per upstream connection, in opening order.
    pub upstreams: Vec<UpstreamRow>,
}

/// The `/1/upstreams` body now.
pub fn upstreams(m: &Monitor) -> UpstreamsBody {
    let hashes = m.upstream_hashes();
    let marked = marked(m);
    UpstreamsBody {
        latency: m.summary_at(Instant::now()).latency,
        upstreams: m
            .upstream_details()
            .into_iter()
            .map(|u| UpstreamRow {
                id: u.id,
                state: match u.state {
                    UpstreamState::Connecting => "connecting",
                    UpstreamState::Active => "active",
                    UpstreamState::Error => "error",
                    UpstreamState::Stopped => "stopped",
                },
                pool: u.pool,
                miners: u.miners as u64,
                daemon: u.daemon,
                hashes: hashes.get(&u.id).copied().unwrap_or(0),
                protocol: marked.then(|| u.protocol.name()),
            })
            .collect(),
    }
}

/// The `/1/events` body.
#[derive(Debug, Serialize, PartialEq)]
pub struct EventsBody {
    /// Most events kept ([`proxy_core::JOURNAL_CAPACITY`]).
    pub capacity: usize,
    /// The latest events, newest first.
    pub events: Vec<Notice>,
}

/// The `/1/events` body now.
pub fn events(m: &Monitor) -> EventsBody {
    let mut events = m.notices();
    events.reverse();
    EventsBody {
        capacity: proxy_core::JOURNAL_CAPACITY,
        events,
    }
}
