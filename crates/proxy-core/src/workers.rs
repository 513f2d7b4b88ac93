//! Per-worker statistics (go-proxy RFC §13).
//!
//! A worker is the set of miner connections that share a name; which login field names a
//! worker is the config's `workers` mode ([`WorkersMode`]): `rig-id` (the rig id, or the user
//! when the miner sent none), `user`, `password`, `agent` or `ip`; `false` keeps no records.
//! Records are bounded in number and expire when idle ([`WorkerLimits`], config
//! `workers-idle-timeout` and `workers-max`): a record with no open connection and no share
//! for the idle timeout is removed; at the cap a new name takes the place of the oldest idle
//! record, or, when every record is live, is counted in one [`OVERFLOW_WORKER`] record.
//! Their Prometheus series, read from the records at each scrape, go with them. A mode change
//! (config reload) drops every record and starts a new set: miners connected at that moment
//! are counted again under their new names (at their next share, or within a second by the
//! proxy's tick).
//!
//! As in xmrig-proxy, `connections` is the number of the worker's connections open *now*.
//!
//! Each [`WorkerRecord`] has a fixed size whatever the uptime: at most 88 bytes (counters,
//! last IP) plus its name's heap blocks (at most [`MAX_WORKER_NAME`] bytes in all, each part
//! behind 16 bytes of counter and length; an account part many workers share, as a farm's
//! address in `address.worker`, is one block for all of them) and, from its first accepted share on, one 120-byte [`WorkerWindows`] block:
//! a worker that has not found a share yet (a farm's rigs right after a restart) holds no
//! hashrate buckets.
//!
//! Lock order: the workers lock, then a miner's state (read briefly to name the miner).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use arcstr::ArcStr;
use stratum_session::WorkerName;

use crate::config::WorkersMode;
use crate::lock;
use crate::login::LoginInfo;
use crate::stats::{WorkerWindows, HASHRATE_WINDOWS};

/// Longest worker name kept, in bytes; longer names are cut (at a character boundary).
pub(crate) const MAX_WORKER_NAME: usize = 256;

/// [`WorkerSource::worker_slot`] of a miner counted in no record.
pub(crate) const NO_WORKER: u64 = u64::MAX;

/// What the worker records read of a miner connection (implemented by the driver's miner):
/// plain data, read under the miner's own lock, never the connection itself.
pub(crate) trait WorkerSource {
    /// The miner's IP address.
    fn ip(&self) -> IpAddr;
    /// The record the miner is counted in: generation << 32 | index, or [`NO_WORKER`]
    /// (kept by [`Workers`]).
    fn worker_slot(&self) -> &AtomicU64;
    /// The miner's worker name under `mode` (see [`worker_name`]) and whether its
    /// connection is live (logged in, not closing); `None` without a name.
    fn worker_name(&self, mode: WorkersMode) -> Option<(WorkerName, bool)>;
}

/// The worker name of a miner that logged in with `login` from `ip`, under `mode`; `None`
/// when workers are disabled. The name is cut to [`MAX_WORKER_NAME`] bytes. A name that
/// needs no cutting is the login's own shared blocks (no copy per miner).
pub(crate) fn worker_name(mode: WorkersMode, login: &LoginInfo, ip: IpAddr) -> Option<WorkerName> {
    let name = match mode {
        WorkersMode::RigId => match &login.rig_id {
            Some(rig) => WorkerName::whole(rig.clone()),
            None => login.user.clone(),
        },
        WorkersMode::User => login.user.clone(),
        WorkersMode::Password => WorkerName::whole(login.pass.clone()),
        WorkersMode::Agent => WorkerName::whole(login.agent.clone()),
        WorkersMode::Ip => WorkerName::whole(ArcStr::from(ip.to_string())),
        WorkersMode::Disabled => return None,
    };
    Some(cut_name(name))
}

/// `name` cut to [`MAX_WORKER_NAME`] bytes at a character boundary; itself when it fits.
fn cut_name(name: WorkerName) -> WorkerName {
    if name.len() <= MAX_WORKER_NAME {
        return name;
    }
    let whole = name.to_string();
    WorkerName::from(stratum_session::cut_at_char_boundary(
        &whole,
        MAX_WORKER_NAME,
    ))
}

/// One worker's aggregate (the RFC's `WorkerRecord`). Time is whole seconds since the
/// stats epoch, as for [`WorkerWindows`].
///
/// At most 88 bytes, plus the name's heap blocks and, once a share was accepted, the
/// [`WorkerWindows`] block: the share counters and the hashes stay `u64` (a worker can be a
/// whole farm), the open connections and the last share's second are `u32`.
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    name: WorkerName,
    accepted: u64,
    rejected: u64,
    invalid: u64,
    hashes: u64,
    connections: u32,
    /// One more than the second of the last accepted share (saturating), `None` before it.
    last_hash: Option<NonZeroU32>,
    /// From the first accepted share on.
    windows: Option<Box<WorkerWindows>>,
    /// Second of the record's last event (connection closed, share) while it is idle; what
    /// its expiry counts from (kept by [`Workers`]).
    last_seen: u32,
    last_ip: IpAddr,
}

impl WorkerRecord {
    /// A record with no connection and no share yet. `name` is cut to `MAX_WORKER_NAME`
    /// bytes.
    pub fn new(name: &str, ip: IpAddr) -> Self {
        Self::named(cut_name(WorkerName::from(name)), ip)
    }

    /// A record named `name` (already cut to [`MAX_WORKER_NAME`] bytes).
    fn named(name: WorkerName, ip: IpAddr) -> Self {
        Self {
            name,
            accepted: 0,
            rejected: 0,
            invalid: 0,
            hashes: 0,
            connections: 0,
            last_hash: None,
            windows: None,
            last_seen: 0,
            last_ip: ip,
        }
    }

    /// The worker name (`account.worker` when printed).
    pub fn name(&self) -> &WorkerName {
        &self.name
    }

    /// IP address of the worker's latest connection.
    pub fn last_ip(&self) -> IpAddr {
        self.last_ip
    }

    /// Connections open now.
    pub fn connections(&self) -> u64 {
        u64::from(self.connections)
    }

    /// Accepted shares.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Shares the pool rejected (or that could not be delivered).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Shares the proxy refused.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// Sum of the difficulties of the accepted shares.
    pub fn hashes(&self) -> u64 {
        self.hashes
    }

    /// Second (since the stats epoch) of the last accepted share, if any.
    pub fn last_hash(&self) -> Option<u64> {
        self.last_hash.map(|s| u64::from(s.get()) - 1)
    }

    /// Hashrate in H/s over `window_secs` (one of [`HASHRATE_WINDOWS`]) as of second `now`;
    /// `None` for another window length. [`WorkerWindows`] says how precise it is.
    pub fn hashrate(&self, window_secs: u64, now: u64) -> Option<f64> {
        match &self.windows {
            Some(w) => w.hashrate(window_secs, now),
            None => HASHRATE_WINDOWS.contains(&window_secs).then_some(0.0),
        }
    }

    /// A connection of this worker opened from `ip`.
    pub fn connect(&mut self, ip: IpAddr) {
        self.connections = self.connections.saturating_add(1);
        self.last_ip = ip;
    }

    /// A connection of this worker closed.
    pub fn disconnect(&mut self) {
        self.connections = self.connections.saturating_sub(1);
    }

    /// An accepted share of `difficulty` at second `now`.
    pub fn on_accept(&mut self, difficulty: u64, now: u64) {
        self.accepted += 1;
        self.hashes = self.hashes.saturating_add(difficulty);
        let second = u32::try_from(now).unwrap_or(u32::MAX);
        self.last_hash = NonZeroU32::new(second.saturating_add(1));
        self.windows
            .get_or_insert_with(|| Box::new(WorkerWindows::new()))
            .add(now, difficulty);
    }

    /// A share the pool rejected.
    pub fn on_reject(&mut self) {
        self.rejected += 1;
    }

    /// A share the proxy refused.
    pub fn on_invalid(&mut self) {
        self.invalid += 1;
    }

    /// Bytes of heap this record owns: the name's blocks (shared with the workers' name
    /// index, counted once, here; an account part shared with other records counted
    /// whole too, [`WorkerName::heap_bytes`]) and the hashrate windows once there.
    pub fn heap_bytes(&self) -> usize {
        let windows = self
            .windows
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<WorkerWindows>());
        self.name.heap_bytes() + windows
    }

    /// Whole size of the record: itself plus [`WorkerRecord::heap_bytes`].
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap_bytes()
    }

    fn summary(&self, now: u64, epoch_unix: u64) -> WorkerSummary {
        WorkerSummary {
            name: self.name.to_string(),
            last_ip: self.last_ip,
            connections: self.connections(),
            accepted: self.accepted,
            rejected: self.rejected,
            invalid: self.invalid,
            hashes: self.hashes,
            last_hash_unix: self.last_hash().map_or(0, |s| epoch_unix + s),
            hashrate: self
                .windows
                .as_ref()
                .map_or([0.0; HASHRATE_WINDOWS.len()], |w| w.hashrates(now)),
        }
    }
}

/// One worker at one moment, for the API (`GET /1/workers`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerSummary {
    /// The worker name.
    pub name: String,
    /// IP address of its latest connection.
    pub last_ip: IpAddr,
    /// Connections open now.
    pub connections: u64,
    /// Accepted shares.
    pub accepted: u64,
    /// Shares the pool rejected.
    pub rejected: u64,
    /// Shares the proxy refused.
    pub invalid: u64,
    /// Sum of the accepted share difficulties.
    pub hashes: u64,
    /// Unix time in seconds of the last accepted share; 0 = none yet.
    pub last_hash_unix: u64,
    /// Hashrate in H/s over each of [`HASHRATE_WINDOWS`] (60 s, 600 s, 1 h, 12 h, 24 h).
    pub hashrate: [f64; HASHRATE_WINDOWS.len()],
}

/// Every worker at one moment, in first-seen order, except that a new record may take the
/// place of a removed one (see `WorkerLimits`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkersSnapshot {
    /// The naming mode in force.
    pub mode: WorkersMode,
    /// The records; empty when the mode is `false`.
    pub workers: Vec<WorkerSummary>,
}

/// Name of the record that counts the miners of new workers while all `workers-max`
/// records are live (no idle record to make room): one record more than the cap, whatever
/// names come. A miner stays counted in it until it reconnects.
pub(crate) const OVERFLOW_WORKER: &str = "(overflow)";

/// Most idle records removed by one expiry pass (one a second, from the proxy's tick): a
/// mass expiry is spread over several ticks instead of holding the workers lock for all of it
/// at once.
pub(crate) const EXPIRE_BATCH: usize = 1024;

/// The bounds on the worker records (config `workers-idle-timeout`, `workers-max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerLimits {
    /// Seconds a record with no open connection and no share is kept; 0 = no expiry by time.
    pub idle_timeout: u64,
    /// Most records kept, besides the [`OVERFLOW_WORKER`] record.
    pub max: usize,
}

impl WorkerLimits {
    /// The limits of a config.
    pub(crate) fn of(config: &crate::config::Config) -> Self {
        Self {
            idle_timeout: config.workers_idle_timeout,
            max: usize::try_from(config.workers_max).unwrap_or(usize::MAX),
        }
    }
}

struct Inner {
    mode: WorkersMode,
    limits: WorkerLimits,
    /// The records by slot; a removed record leaves `None`, whose slot is in `free`.
    slots: Vec<Option<WorkerRecord>>,
    free: Vec<u32>,
    /// By name, hashed with foldhash (a random seed per table; no miner sees a hash or
    /// the table's order; bounded by `workers-max`).
    by_name: HashMap<WorkerName, u32, foldhash::fast::RandomState>,
    /// The idle records (no open connection), oldest first: (second of the record's last
    /// event, slot). A record is here exactly while its `connections` is 0.
    idle: BTreeSet<(u32, u32)>,
    /// Bumped when the records are dropped (mode change): a miner's cached record index
    /// ([`Miner::worker`]) counts only when it carries the current generation.
    generation: u32,
    /// The mode changed: miners already connected still have to be counted.
    resync: bool,
}

/// Whole seconds as kept in a record (saturating at `u32::MAX`, 136 years).
fn second(now: u64) -> u32 {
    u32::try_from(now).unwrap_or(u32::MAX)
}

impl Inner {
    fn new(mode: WorkersMode, limits: WorkerLimits) -> Self {
        Self {
            mode,
            limits,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::default(),
            idle: BTreeSet::new(),
            generation: 0,
            resync: false,
        }
    }

    fn record(&mut self, slot: u32) -> &mut WorkerRecord {
        self.slots[slot as usize]
            .as_mut()
            .expect("an indexed slot holds a record")
    }

    /// The record of `miner` under the current mode, counting its connection when it is
    /// still open. `None` when it has no name (not logged in, mode `false`) or when it is
    /// closing and its worker has no record.
    fn record_of(&mut self, miner: &impl WorkerSource, now: u64) -> Option<u32> {
        if let Some(i) = self.cached(miner) {
            return Some(i);
        }
        let (name, live) = miner.worker_name(self.mode)?;
        let found = self.by_name.get(&name).copied();
        if !live {
            return found;
        }
        let i = match found {
            Some(i) => i,
            None => self.insert(name, miner.ip(), now),
        };
        let r = self.record(i);
        if r.connections == 0 {
            let key = (r.last_seen, i);
            self.idle.remove(&key);
        }
        self.record(i).connect(miner.ip());
        miner
            .worker_slot()
            .store((u64::from(self.generation) << 32) | u64::from(i), Relaxed);
        Some(i)
    }

    /// A new record for `name` (not in the index), idle until its caller connects it. At
    /// the cap the oldest idle record makes room; when every record is live, the miner is
    /// counted in the [`OVERFLOW_WORKER`] record instead.
    fn insert(&mut self, name: WorkerName, ip: IpAddr, now: u64) -> u32 {
        let name = if self.by_name.len() < self.limits.max {
            name
        } else if let Some(&(_, oldest)) = self.idle.first() {
            self.remove(oldest);
            name
        } else {
            let overflow = WorkerName::whole(ArcStr::from(OVERFLOW_WORKER));
            if let Some(&i) = self.by_name.get(&overflow) {
                return i;
            }
            overflow
        };
        let mut r = WorkerRecord::named(name, ip);
        r.last_seen = second(now);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 records")
            }
        };
        self.by_name.insert(r.name.clone(), slot);
        self.idle.insert((r.last_seen, slot));
        self.slots[slot as usize] = Some(r);
        slot
    }

    /// Drops the idle record in `slot`.
    fn remove(&mut self, slot: u32) {
        if let Some(r) = self.slots[slot as usize].take() {
            self.idle.remove(&(r.last_seen, slot));
            self.by_name.remove(&r.name);
            self.free.push(slot);
        }
    }

    /// Something happened to the record in `slot` at `now`: an idle record's expiry starts
    /// again from `now`.
    fn touch(&mut self, slot: u32, now: u64) {
        let now = second(now);
        let r = self.record(slot);
        let (old, idle) = (r.last_seen, r.connections == 0);
        r.last_seen = now;
        if idle && old != now {
            self.idle.remove(&(old, slot));
            self.idle.insert((now, slot));
        }
    }

    /// The record index `miner` was counted under in this generation, if any.
    fn cached(&self, miner: &impl WorkerSource) -> Option<u32> {
        let v = miner.worker_slot().load(Relaxed);
        let generation = u32::try_from(v >> 32).ok()?;
        (v != NO_WORKER && generation == self.generation)
            .then(|| u32::try_from(v & u64::from(u32::MAX)).ok())
            .flatten()
            .filter(|&i| self.slots.get(i as usize).is_some_and(Option::is_some))
    }
}

/// Every worker record of a proxy (the RFC's `Workers`), behind one short lock.
///
/// Bounded whatever names miners send ([`WorkerLimits`]): a record with no open connection
/// is *idle*; an idle record with no event (connection, share) for `idle_timeout` seconds is
/// removed by [`Workers::expire`], at most [`EXPIRE_BATCH`] per call, found in an index of
/// idle records by age (no walk over the records). At most `max` records are kept: a new name
/// at the cap takes the place of the oldest idle record; when every record is live, its
/// miner is counted in one more record, [`OVERFLOW_WORKER`]. A record with an open connection
/// is never removed, so a miner's cached slot stays valid. A removed record's slot is reused
/// by the next new name: the records are listed in slot order, which is first-seen order
/// until a record has been removed.
pub(crate) struct Workers {
    inner: Mutex<Inner>,
}

impl Workers {
    pub(crate) fn new(mode: WorkersMode, limits: WorkerLimits) -> Self {
        Self {
            inner: Mutex::new(Inner::new(mode, limits)),
        }
    }

    /// Switches the naming mode. A different mode drops every record; the miners connected
    /// now are counted again by [`Workers::resync`] or at their next event.
    pub(crate) fn set_mode(&self, mode: WorkersMode) {
        let mut g = lock(&self.inner);
        if g.mode == mode {
            return;
        }
        let generation = g.generation.wrapping_add(1);
        *g = Inner {
            generation,
            resync: mode != WorkersMode::Disabled,
            ..Inner::new(mode, g.limits)
        };
    }

    /// New bounds (config reload). A lower `max` is reached by the next [`Workers::expire`]
    /// calls, removing the oldest idle records (live ones stay).
    pub(crate) fn set_limits(&self, limits: WorkerLimits) {
        lock(&self.inner).limits = limits;
    }

    /// Removes the records idle for `idle_timeout` seconds as of second `now`, and the oldest
    /// idle records past `max`: at most [`EXPIRE_BATCH`] of them. Returns how many went.
    pub(crate) fn expire(&self, now: u64) -> usize {
        let mut g = lock(&self.inner);
        let timeout = g.limits.idle_timeout;
        let mut removed = 0;
        while removed < EXPIRE_BATCH {
            let Some(&(seen, slot)) = g.idle.first() else {
                break;
            };
            let expired = timeout > 0 && u64::from(seen) + timeout <= now;
            if !expired && g.by_name.len() <= g.limits.max {
                break;
            }
            g.remove(slot);
            removed += 1;
        }
        removed
    }

    /// After a mode change, counts every live miner of `miners` that is not counted yet.
    pub(crate) fn resync(&self, miners: &[impl WorkerSource], now: u64) {
        let mut g = lock(&self.inner);
        if !std::mem::take(&mut g.resync) {
            return;
        }
        for m in miners {
            g.record_of(m, now);
        }
    }

    /// True while a mode change waits for [`Workers::resync`].
    pub(crate) fn needs_resync(&self) -> bool {
        lock(&self.inner).resync
    }

    /// A miner logged in at second `now`.
    pub(crate) fn login(&self, miner: &impl WorkerSource, now: u64) {
        lock(&self.inner).record_of(miner, now);
    }

    /// A miner's connection closed at second `now`.
    pub(crate) fn close(&self, miner: &impl WorkerSource, now: u64) {
        let mut g = lock(&self.inner);
        if let Some(i) = g.cached(miner) {
            g.record(i).disconnect();
            if g.record(i).connections == 0 {
                // Idle from now on: enters the index at its last event's second.
                let r = g.record(i);
                r.last_seen = second(now);
                let key = (r.last_seen, i);
                g.idle.insert(key);
            }
        }
        miner.worker_slot().store(NO_WORKER, Relaxed);
    }

    fn update(&self, miner: &impl WorkerSource, now: u64, f: impl FnOnce(&mut WorkerRecord)) {
        let mut g = lock(&self.inner);
        if let Some(i) = g.record_of(miner, now) {
            f(g.record(i));
            g.touch(i, now);
        }
    }

    /// An accepted share of `difficulty` at second `now`.
    pub(crate) fn accept(&self, miner: &impl WorkerSource, difficulty: u64, now: u64) {
        self.update(miner, now, |r| r.on_accept(difficulty, now));
    }

    /// A share the pool rejected, at second `now`.
    pub(crate) fn reject(&self, miner: &impl WorkerSource, now: u64) {
        self.update(miner, now, WorkerRecord::on_reject);
    }

    /// A share the proxy refused, at second `now`.
    pub(crate) fn invalid(&self, miner: &impl WorkerSource, now: u64) {
        self.update(miner, now, WorkerRecord::on_invalid);
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).by_name.len()
    }

    /// Every record as of second `now`; `epoch_unix` is the Unix time of second 0.
    pub(crate) fn snapshot(&self, now: u64, epoch_unix: u64) -> WorkersSnapshot {
        let g = lock(&self.inner);
        WorkersSnapshot {
            mode: g.mode,
            workers: g
                .slots
                .iter()
                .flatten()
                .map(|r| r.summary(now, epoch_unix))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::miner::MinerId;
    use std::sync::Arc;
    type Miner = crate::miner::Miner<crate::family::CryptoNote>;

    const LIMITS: WorkerLimits = WorkerLimits {
        idle_timeout: 0,
        max: 1000,
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn login(user: &str, rig: Option<&str>) -> LoginInfo {
        LoginInfo {
            user: user.into(),
            pass: format!("pw-{user}").into(),
            agent: "XMRig/6.21.0".into(),
            rig_id: rig.map(ArcStr::from),
        }
    }

    fn miner(id: MinerId, last: u8, info: LoginInfo) -> Arc<Miner> {
        Arc::new(Miner::detached_ready(
            id,
            (ip(last), 40000 + id as u16).into(),
            info,
        ))
    }

    #[test]
    fn names_follow_the_mode() {
        let l = login("WALLET", Some("rig-a"));
        let n = |mode| worker_name(mode, &l, ip(7)).map(|n| n.to_string());
        assert_eq!(n(WorkersMode::RigId).as_deref(), Some("rig-a"));
        assert_eq!(n(WorkersMode::User).as_deref(), Some("WALLET"));
        assert_eq!(n(WorkersMode::Password).as_deref(), Some("pw-WALLET"));
        assert_eq!(n(WorkersMode::Agent).as_deref(), Some("XMRig/6.21.0"));
        assert_eq!(n(WorkersMode::Ip).as_deref(), Some("10.0.0.7"));
        assert_eq!(n(WorkersMode::Disabled), None);
        // No rig id: the user names the worker.
        let l = login("WALLET", None);
        assert_eq!(
            worker_name(WorkersMode::RigId, &l, ip(7)).map(|n| n.to_string()),
            Some("WALLET".into())
        );
    }

    #[test]
    fn a_record_shares_the_name_string_of_the_login_it_comes_from() {
        let w = Workers::new(WorkersMode::RigId, LIMITS);
        let m = miner(1, 1, login("WALLET", Some("rig-a")));
        w.login(&m, 0);
        let st = m.state();
        let rig = st.login.as_ref().and_then(|l| l.rig_id.clone()).unwrap();
        drop(st);
        let g = lock(&w.inner);
        assert!(
            g.slots[0]
                .as_ref()
                .unwrap()
                .name
                .shares_account(&WorkerName::whole(rig)),
            "no copy per miner"
        );
    }

    #[test]
    fn records_of_one_address_share_its_block() {
        let w = Workers::new(WorkersMode::User, LIMITS);
        let strings = crate::intern::Interner::default();
        let miners: Vec<_> = (1..=3)
            .map(|i| {
                let mut info = login("x", None);
                info.user = strings.name(&format!("bc1qaddr.rig-{i}"));
                miner(i, 1, info)
            })
            .collect();
        for m in &miners {
            w.login(m, 0);
        }
        let g = lock(&w.inner);
        let names: Vec<&WorkerName> = g.slots.iter().map(|r| r.as_ref().unwrap().name()).collect();
        assert_eq!(names.len(), 3, "one record per worker");
        assert!(names.iter().all(|n| n.shares_account(names[0])));
        let login_user = miners[1].state().login.as_ref().unwrap().user.clone();
        assert!(login_user.shares_account(names[0]), "the login's copy too");
        assert_eq!(names[1].to_string(), "bc1qaddr.rig-2");
        drop(g);
        let s = w.snapshot(0, 0);
        let printed: Vec<&str> = s.workers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            printed,
            ["bc1qaddr.rig-1", "bc1qaddr.rig-2", "bc1qaddr.rig-3"]
        );
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let l = login(&"é".repeat(MAX_WORKER_NAME), None);
        let n = worker_name(WorkersMode::User, &l, ip(1)).unwrap();
        assert_eq!(n.len(), MAX_WORKER_NAME);
        let r = WorkerRecord::new(&"x".repeat(5000), ip(1));
        assert_eq!(r.name().len(), MAX_WORKER_NAME);
    }

    #[test]
    fn connections_and_shares_are_counted_per_worker_in_first_seen_order() {
        let w = Workers::new(WorkersMode::RigId, LIMITS);
        let a1 = miner(1, 1, login("W1", Some("rig-b")));
        let a2 = miner(2, 2, login("W2", Some("rig-b")));
        let c = miner(3, 3, login("W3", None));
        for m in [&a1, &a2, &c] {
            w.login(m, 0);
        }
        w.accept(&a1, 1000, 5);
        w.accept(&a2, 1000, 6);
        w.reject(&a2, 0);
        w.invalid(&c, 0);
        w.close(&a1, 0);
        let s = w.snapshot(10, 1_700_000_000);
        assert_eq!(s.mode, WorkersMode::RigId);
        let names: Vec<&str> = s.workers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["rig-b", "W3"]);
        let b = &s.workers[0];
        assert_eq!(
            (b.connections, b.accepted, b.rejected, b.invalid, b.hashes),
            (1, 2, 1, 0, 2000)
        );
        assert_eq!(b.last_ip, ip(2));
        assert_eq!(b.last_hash_unix, 1_700_000_006);
        assert_eq!(b.hashrate[0], 2000.0 / 60.0);
        assert_eq!(s.workers[1].invalid, 1);
        assert_eq!(s.workers[1].last_hash_unix, 0);
        // A second close of the same miner changes nothing.
        w.close(&a1, 0);
        assert_eq!(w.snapshot(10, 0).workers[0].connections, 1);
    }

    #[test]
    fn a_share_answered_after_the_miner_left_still_counts_for_its_worker() {
        let w = Workers::new(WorkersMode::User, LIMITS);
        let m = miner(1, 1, login("W1", None));
        w.login(&m, 0);
        m.state().session.close();
        w.close(&m, 0);
        w.accept(&m, 500, 3);
        let s = w.snapshot(3, 0);
        assert_eq!((s.workers[0].connections, s.workers[0].accepted), (0, 1));
        // A closing miner whose worker has no record creates none.
        let other = miner(2, 2, login("W2", None));
        other.state().session.close();
        w.accept(&other, 500, 3);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn a_mode_change_starts_new_records_and_recounts_live_miners() {
        let w = Workers::new(WorkersMode::RigId, LIMITS);
        let a = miner(1, 1, login("W1", Some("rig-a")));
        let b = miner(2, 2, login("W2", Some("rig-b")));
        let gone = miner(3, 3, login("W3", Some("rig-c")));
        for m in [&a, &b, &gone] {
            w.login(m, 0);
        }
        w.accept(&a, 100, 1);
        gone.state().session.close();
        w.set_mode(WorkersMode::User);
        assert!(w.needs_resync());
        assert_eq!(w.len(), 0);
        // `a` shares before the resync: counted at once, under its new name.
        w.accept(&a, 100, 2);
        w.resync(&[a.clone(), b.clone(), gone.clone()], 2);
        assert!(!w.needs_resync());
        let s = w.snapshot(2, 0);
        assert_eq!(s.mode, WorkersMode::User);
        let rows: Vec<(&str, u64, u64)> = s
            .workers
            .iter()
            .map(|r| (r.name.as_str(), r.connections, r.accepted))
            .collect();
        assert_eq!(rows, [("W1", 1, 1), ("W2", 1, 0)]);
        // Disabled: nothing is recorded.
        w.set_mode(WorkersMode::Disabled);
        assert!(!w.needs_resync());
        w.login(&b, 0);
        w.accept(&b, 100, 3);
        assert_eq!(w.len(), 0);
        assert_eq!(w.snapshot(3, 0).mode, WorkersMode::Disabled);
    }

    #[test]
    fn a_record_has_a_fixed_size_of_at_most_88_bytes_plus_its_name_and_windows() {
        assert!(std::mem::size_of::<WorkerRecord>() <= 88);
        let mut r = WorkerRecord::new("rig-alpha", ip(1));
        let idle = r.footprint();
        assert_eq!(r.hashrate(60, 0), Some(0.0), "no windows yet reads 0");
        assert_eq!(r.hashrate(61, 0), None);
        r.on_accept(1000, 0);
        let working = r.footprint();
        assert_eq!(working, idle + std::mem::size_of::<WorkerWindows>());
        for t in 0..10_000 {
            r.on_accept(1000, t * 17);
        }
        assert_eq!(r.footprint(), working);
    }

    #[test]
    fn the_last_share_second_is_kept_from_zero_up() {
        let mut r = WorkerRecord::new("rig", ip(1));
        assert_eq!(r.last_hash(), None);
        r.on_accept(1, 0);
        assert_eq!(r.last_hash(), Some(0));
        r.on_accept(1, 86_400 * 365);
        assert_eq!(r.last_hash(), Some(86_400 * 365));
        // Past `u32` seconds (136 years) the time stops.
        r.on_accept(1, u64::MAX);
        assert_eq!(r.last_hash(), Some(u64::from(u32::MAX) - 1));
        assert_eq!(
            r.summary(5, 1_000).last_hash_unix,
            1_000 + u64::from(u32::MAX) - 1
        );
    }

    fn limits(idle_timeout: u64, max: usize) -> WorkerLimits {
        WorkerLimits { idle_timeout, max }
    }

    /// A miner that connects, logs in as `name` at `t` and leaves at once.
    fn visit(w: &Workers, id: MinerId, name: &str, t: u64) {
        let m = miner(id, 1, login(name, None));
        w.login(&m, t);
        m.state().session.close();
        w.close(&m, t);
    }

    fn names(w: &Workers) -> Vec<String> {
        w.snapshot(0, 0)
            .workers
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    fn row(w: &Workers, name: &str) -> Option<WorkerSummary> {
        w.snapshot(0, 0)
            .workers
            .into_iter()
            .find(|r| r.name == name)
    }

    #[test]
    fn random_login_names_grow_the_records_only_up_to_the_cap() {
        let w = Workers::new(WorkersMode::User, limits(0, 100));
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut last = Vec::new();
        for id in 0..10_000u64 {
            // xorshift: a script's random names, every one new.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("rnd-{x:016x}-{id}");
            visit(&w, id, &name, id);
            assert!(w.len() <= 100, "{} records after {id} logins", w.len());
            last.push(name);
        }
        assert_eq!(w.len(), 100);
        let g = lock(&w.inner);
        assert!(g.slots.len() <= 100, "the slot table is capped too");
        assert_eq!(g.idle.len(), 100);
        drop(g);
        // The oldest idle went first: the last 100 names are what is left.
        let mut kept = names(&w);
        kept.sort();
        let mut want = last[last.len() - 100..].to_vec();
        want.sort();
        assert_eq!(kept, want);
    }

    #[test]
    fn when_every_record_is_live_new_names_are_counted_in_the_overflow_record() {
        let w = Workers::new(WorkersMode::User, limits(0, 3));
        let live: Vec<_> = (0..5u64)
            .map(|i| miner(i, 1, login(&format!("W{i}"), None)))
            .collect();
        for m in &live {
            w.login(m, 1);
        }
        w.accept(&live[4], 100, 2);
        assert_eq!(names(&w), ["W0", "W1", "W2", OVERFLOW_WORKER]);
        let o = row(&w, OVERFLOW_WORKER).unwrap();
        assert_eq!((o.connections, o.accepted), (2, 1));
        // A named record frees up: the next new name takes its place; the overflow's miners
        // stay where they are until they reconnect.
        live[0].state().session.close();
        w.close(&live[0], 3);
        visit(&w, 9, "W9", 4);
        assert_eq!(names(&w), ["W9", "W1", "W2", OVERFLOW_WORKER]);
        assert_eq!(row(&w, OVERFLOW_WORKER).unwrap().connections, 2);
        for m in &live[3..] {
            m.state().session.close();
            w.close(m, 5);
        }
        assert_eq!(row(&w, OVERFLOW_WORKER).unwrap().connections, 0);
    }

    #[test]
    fn idle_records_expire_after_the_timeout_counted_from_their_last_event() {
        let w = Workers::new(WorkersMode::User, limits(100, 1000));
        let a = miner(1, 1, login("A", None));
        let b = miner(2, 2, login("B", None));
        w.login(&a, 0);
        w.login(&b, 0);
        a.state().session.close();
        w.close(&a, 10);
        assert_eq!(w.expire(109), 0, "idle for 99 s");
        // A share answered after the miner left counts, and restarts the idle time.
        w.accept(&a, 500, 50);
        assert_eq!(w.expire(149), 0);
        assert_eq!(w.expire(150), 1);
        assert_eq!(names(&w), ["B"]);
        // A live record never expires.
        assert_eq!(w.expire(1_000_000), 0);
        // The same name later starts a new record.
        let a2 = miner(3, 1, login("A", None));
        w.login(&a2, 2000);
        let r = row(&w, "A").unwrap();
        assert_eq!((r.connections, r.accepted), (1, 0));
    }

    #[test]
    fn one_expiry_call_removes_a_bounded_batch() {
        let w = Workers::new(WorkersMode::User, limits(1, 10_000));
        for id in 0..3000 {
            visit(&w, id, &format!("W{id}"), 0);
        }
        assert_eq!(w.expire(5), EXPIRE_BATCH);
        assert_eq!(w.expire(5), EXPIRE_BATCH);
        assert_eq!(w.expire(5), 3000 - 2 * EXPIRE_BATCH);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_reused_slot_does_not_mix_up_the_miners_counted_in_the_old_ones() {
        let w = Workers::new(WorkersMode::User, limits(10, 1000));
        visit(&w, 1, "gone", 0);
        let x = miner(2, 2, login("X", None));
        w.login(&x, 0);
        assert_eq!(w.expire(10), 1);
        // "Y" takes the slot "gone" had; X's events still land on X.
        let y = miner(3, 3, login("Y", None));
        w.login(&y, 11);
        assert_eq!(names(&w), ["Y", "X"]);
        w.accept(&x, 7, 12);
        x.state().session.close();
        w.close(&x, 12);
        let (rx, ry) = (row(&w, "X").unwrap(), row(&w, "Y").unwrap());
        assert_eq!((rx.connections, rx.accepted), (0, 1));
        assert_eq!((ry.connections, ry.accepted), (1, 0));
    }

    #[test]
    fn a_lower_cap_on_reload_removes_the_oldest_idle_records() {
        let w = Workers::new(WorkersMode::User, limits(0, 100));
        for id in 0..10 {
            visit(&w, id, &format!("W{id}"), id);
        }
        let live = miner(99, 1, login("live", None));
        w.login(&live, 20);
        w.set_limits(limits(0, 4));
        assert_eq!(w.expire(21), 7);
        assert_eq!(names(&w).len(), 4);
        let mut kept = names(&w);
        kept.sort();
        assert_eq!(kept, ["W7", "W8", "W9", "live"]);
    }
}
