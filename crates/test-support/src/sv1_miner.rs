//! A Stratum V1 CPU miner for tests: it mines sha256d for real, as a bitaxe or `para` would,
//! but bounded in shares, hashes and time.
//!
//! On connect it sends, without waiting (request ids from 0, as para):
//! `mining.configure` with `version-rolling` and the mask it is given (default `ffffffff`, as
//! bitaxe asks) unless told not to roll, `mining.subscribe` with its agent, and
//! `mining.authorize`. It then tracks `mining.set_difficulty` (applied at once),
//! `mining.notify` (it always mines the newest job), `mining.set_extranonce`,
//! `mining.set_version_mask` and answers `client.get_version`.
//!
//! Mining uses `stratum_proto::sv1::share`: one header per work unit from
//! [`build_header`] (coinbase → merkle root → header), then the nonce counts up from 0
//! in that header. A work unit is (extranonce2, version bits): extranonce2 is a counter
//! written big-endian in the subscribed size (para's order); the version bits are the
//! roll index's bits deposited into the negotiated mask's set bits, so they never leave the
//! mask. After each share the roll index moves on (so shares show varied bits); when the
//! mask's combinations are used up, extranonce2 counts on. Shares must meet the current
//! difficulty, fractional ones too ([`hash_difficulty`]), and are submitted with the 6th
//! parameter (version bits) when rolling was granted.
//!
//! Every answer is recorded under its request id ([`Sv1MinerReport::answers`]), so a test
//! can assert that every submit was answered exactly once. The protocol part
//! ([`MinerState`]) is sans-IO; [`run_sv1_miner`] drives it over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::block::Header;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use stratum_proto::sv1::share::{build_header, hash_difficulty};
use stratum_proto::sv1::{
    encode_result, parse_server_line, Authorize, ClientRequest, Configure, ConfigureResult, Notify,
    RpcError, ServerMessage, Submit, Subscribe, SubscribeResult, VersionRollingRequest,
    VersionRollingResult,
};
use stratum_proto::{Id, LineCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

/// What the miner does and when it stops.
#[derive(Debug, Clone)]
pub struct Sv1MinerConfig {
    /// `mining.authorize` user (also the submit's worker name).
    pub user: String,
    /// `mining.authorize` password.
    pub password: String,
    /// The user agent sent in `mining.subscribe`.
    pub agent: String,
    /// The version-rolling mask asked for in `mining.configure`; `None` sends no configure
    /// (no rolling). Default `ffffffff`, as bitaxe asks.
    pub version_mask: Option<u32>,
    /// Bits OR-ed into every submit's version bits and into the header: a miner that rolls
    /// bits it never negotiated (OCEAN datum_gateway #214). Default 0.
    pub stray_version_bits: u32,
    /// Mine at this difficulty instead of the pool's (to send off-difficulty shares).
    pub mine_difficulty: Option<f64>,
    /// Stop mining after this many shares submitted.
    pub max_shares: usize,
    /// Stop mining after this many hashes.
    pub max_hashes: u64,
    /// Stop everything after this long (from connect).
    pub max_time: Duration,
    /// How long to wait for outstanding answers once mining stopped (within `max_time`).
    pub answer_grace: Duration,
    /// Send `mining.extranonce.subscribe` after subscribing (default false), so that a
    /// new extranonce1 comes as `mining.set_extranonce` instead of `client.reconnect`.
    pub extranonce_subscribe: bool,
}

impl Default for Sv1MinerConfig {
    fn default() -> Self {
        Self {
            user: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1".into(),
            password: "x".into(),
            agent: "test-support-sv1-miner/0.1".into(),
            version_mask: Some(u32::MAX),
            stray_version_bits: 0,
            mine_difficulty: None,
            max_shares: 10,
            max_hashes: 50_000_000,
            max_time: Duration::from_secs(30),
            answer_grace: Duration::from_secs(5),
            extranonce_subscribe: false,
        }
    }
}

/// One share the miner submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct SentShare {
    /// The submit's request id.
    pub id: u64,
    /// The submit as sent.
    pub submit: Submit,
    /// The difficulty it was mined at.
    pub target_difficulty: f64,
    /// Its hash's difficulty, as the miner computed it.
    pub hash_difficulty: f64,
}

/// One answer the pool sent to one of the miner's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The id the answer carried.
    pub id: Id,
    /// `result`, or `error`.
    pub outcome: Result<Value, RpcError>,
}

/// Why the miner stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `max_shares` submitted (and the answers waited for).
    Shares,
    /// `max_hashes` done.
    Hashes,
    /// `max_time` passed.
    Time,
    /// The pool closed the connection (or sent an over-long line).
    Closed,
    /// Every (extranonce2, version bits, nonce) of the job was tried: the pool gave too
    /// small an extranonce2 for the shares asked.
    Exhausted,
}

/// Everything the miner saw and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sv1MinerReport {
    /// The configure answer, if one came.
    pub configure: Option<ConfigureResult>,
    /// The subscribe answer, if one came.
    pub subscribe: Option<SubscribeResult>,
    /// The authorize answer (`true` only for `result: true`).
    pub authorized: Option<bool>,
    /// The version mask granted (`None` without rolling).
    pub version_mask: Option<u32>,
    /// Every `mining.set_difficulty` received, in order.
    pub difficulties: Vec<f64>,
    /// Every job id received, in order.
    pub jobs: Vec<String>,
    /// The shares submitted, in order.
    pub submits: Vec<SentShare>,
    /// Every answer received (to any request), in order.
    pub answers: Vec<Answer>,
    /// Hashes computed.
    pub hashes: u64,
    /// Lines from the pool that could not be read (the error's text).
    pub bad_lines: Vec<String>,
    /// Why it stopped (`None` while running).
    pub stop: Option<StopReason>,
}

impl Sv1MinerReport {
    /// The answers that carried `id`.
    pub fn answers_to(&self, id: u64) -> Vec<&Answer> {
        self.answers
            .iter()
            .filter(|a| a.id.as_u64() == Some(id))
            .collect()
    }

    /// The submits answered exactly once, with that answer.
    pub fn answered_once(&self) -> Vec<(&SentShare, &Answer)> {
        self.submits
            .iter()
            .filter_map(|s| match self.answers_to(s.id)[..] {
                [a] => Some((s, a)),
                _ => None,
            })
            .collect()
    }

    /// The submits answered `true`.
    pub fn accepted(&self) -> usize {
        self.answered_once()
            .iter()
            .filter(|(_, a)| a.outcome == Ok(Value::Bool(true)))
            .count()
    }

    /// The error codes of the submits answered with an error, in submit order.
    pub fn rejected_codes(&self) -> Vec<i64> {
        self.answered_once()
            .iter()
            .filter_map(|(_, a)| a.outcome.as_ref().err().map(|e| e.code))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Configure,
    Subscribe,
    Authorize,
    ExtranonceSubscribe,
    Submit,
}

/// The work unit being hashed.
#[derive(Debug, Clone)]
struct Work {
    job: Notify,
    header: Header,
    extranonce2: Vec<u8>,
    version_bits: Option<u32>,
    /// The next nonce to try; `None` once the nonce space is used up.
    nonce: Option<u32>,
}

/// The miner's protocol state and its mining, sans-IO: [`MinerState::start`] gives the
/// opening lines, [`MinerState::handle_line`] takes each pool line and gives the lines to
/// send back, [`MinerState::mine`] hashes a bounded batch and gives a submit line when it
/// found a share.
#[derive(Debug)]
pub struct MinerState {
    config: Sv1MinerConfig,
    report: Sv1MinerReport,
    next_id: u64,
    asked: Vec<(u64, Asked)>,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    mask: u32,
    rolling: bool,
    difficulty: Option<f64>,
    job: Option<Notify>,
    en2_counter: u64,
    roll_index: u64,
    work: Option<Work>,
    /// The job's search space is used up (until a new job or extranonce).
    exhausted: bool,
}

/// Deposits the low bits of `index` into the set bits of `mask`, lowest first.
fn deposit(mut index: u64, mask: u32) -> u32 {
    let mut out = 0;
    let mut m = mask;
    while m != 0 && index != 0 {
        let bit = m & m.wrapping_neg();
        if index & 1 == 1 {
            out |= bit;
        }
        index >>= 1;
        m &= m - 1;
    }
    out
}

impl MinerState {
    /// A miner under `config`.
    pub fn new(config: Sv1MinerConfig) -> Self {
        Self {
            config,
            report: Sv1MinerReport::default(),
            next_id: 0,
            asked: Vec::new(),
            extranonce1: Vec::new(),
            extranonce2_size: 0,
            mask: 0,
            rolling: false,
            difficulty: None,
            job: None,
            en2_counter: 0,
            roll_index: 0,
            work: None,
            exhausted: false,
        }
    }

    fn request(&mut self, asked: Asked, req: &ClientRequest) -> Vec<u8> {
        let id = self.next_id;
        self.next_id += 1;
        self.asked.push((id, asked));
        req.encode(&Id::from(id))
    }

    /// The opening lines: configure (when a mask is set), subscribe, extranonce.subscribe
    /// (when asked for), authorize.
    pub fn start(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(mask) = self.config.version_mask {
            let req = ClientRequest::Configure(Configure {
                version_rolling: Some(VersionRollingRequest {
                    mask: Some(mask),
                    min_bit_count: None,
                }),
                ..Configure::default()
            });
            out.push(self.request(Asked::Configure, &req));
        }
        let sub = ClientRequest::Subscribe(Subscribe {
            user_agent: Some(self.config.agent.clone()),
            session_id: None,
        });
        out.push(self.request(Asked::Subscribe, &sub));
        if self.config.extranonce_subscribe {
            out.push(self.request(
                Asked::ExtranonceSubscribe,
                &ClientRequest::ExtranonceSubscribe,
            ));
        }
        let auth = ClientRequest::Authorize(Authorize {
            username: self.config.user.clone(),
            password: Some(self.config.password.clone()),
        });
        out.push(self.request(Asked::Authorize, &auth));
        out
    }

    /// What the miner saw and did so far.
    pub fn report(&self) -> &Sv1MinerReport {
        &self.report
    }

    /// Submits still waiting for their answer.
    pub fn pending_submits(&self) -> usize {
        self.asked
            .iter()
            .filter(|(_, a)| *a == Asked::Submit)
            .count()
    }

    /// Whether mining is over: `max_shares` submitted or `max_hashes` done.
    pub fn done_mining(&self) -> Option<StopReason> {
        if self.exhausted {
            Some(StopReason::Exhausted)
        } else if self.report.submits.len() >= self.config.max_shares {
            Some(StopReason::Shares)
        } else if self.report.hashes >= self.config.max_hashes {
            Some(StopReason::Hashes)
        } else {
            None
        }
    }

    /// Whether there is something to mine: subscribed, a difficulty and a job.
    pub fn can_mine(&self) -> bool {
        self.report.subscribe.is_some()
            && self.job.is_some()
            && self.target_difficulty().is_some()
            && self.done_mining().is_none()
    }

    fn target_difficulty(&self) -> Option<f64> {
        self.config.mine_difficulty.or(self.difficulty)
    }

    /// Handles one line from the pool; returns the lines to send back (a
    /// `client.get_version` answer). An unreadable line is recorded in
    /// [`Sv1MinerReport::bad_lines`].
    pub fn handle_line(&mut self, line: &[u8]) -> Vec<Vec<u8>> {
        let msg = match parse_server_line(line) {
            Ok(m) => m,
            Err(e) => {
                self.report.bad_lines.push(e.to_string());
                return Vec::new();
            }
        };
        match msg {
            ServerMessage::Notify(n) => {
                self.report.jobs.push(n.job_id.clone());
                self.job = Some(n);
                self.new_space();
            }
            ServerMessage::SetDifficulty(d) => {
                self.report.difficulties.push(d);
                self.difficulty = Some(d);
            }
            ServerMessage::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => {
                self.extranonce1 = extranonce1;
                self.extranonce2_size = extranonce2_size;
                self.new_space();
            }
            ServerMessage::SetVersionMask(mask) => {
                if self.rolling {
                    self.mask = mask & self.config.version_mask.unwrap_or(0);
                    self.report.version_mask = Some(self.mask);
                    // Same job and extranonce: go on from an unused extranonce2.
                    self.work = None;
                    self.roll_index = 0;
                    self.advance_en2();
                }
            }
            ServerMessage::GetVersion { id } => {
                return vec![encode_result(&id, &Value::from(self.config.agent.as_str()))];
            }
            ServerMessage::Response { id, outcome } => self.handle_response(id, outcome),
            ServerMessage::Reconnect { .. } | ServerMessage::Other(_) => {}
        }
        Vec::new()
    }

    fn handle_response(&mut self, id: Id, outcome: Result<Value, RpcError>) {
        self.report.answers.push(Answer {
            id: id.clone(),
            outcome: outcome.clone(),
        });
        let Some(pos) = id
            .as_u64()
            .and_then(|n| self.asked.iter().position(|(i, _)| *i == n))
        else {
            return;
        };
        let (_, asked) = self.asked.remove(pos);
        match (asked, outcome) {
            (Asked::Configure, Ok(v)) => {
                if let Ok(r) = ConfigureResult::from_value(&v) {
                    if let Some(VersionRollingResult::Enabled { mask }) = r.version_rolling {
                        // Never roll more than was asked for, whatever the pool says.
                        self.mask = mask & self.config.version_mask.unwrap_or(0);
                        self.rolling = true;
                        self.report.version_mask = Some(self.mask);
                        self.new_space();
                    }
                    self.report.configure = Some(r);
                }
            }
            (Asked::Subscribe, Ok(v)) => match SubscribeResult::from_value(&v) {
                Ok(r) => {
                    self.extranonce1 = r.extranonce1.clone();
                    self.extranonce2_size = r.extranonce2_size;
                    self.new_space();
                    self.report.subscribe = Some(r);
                }
                Err(e) => self.report.bad_lines.push(e.to_string()),
            },
            (Asked::Authorize, outcome) => {
                self.report.authorized = Some(outcome == Ok(Value::Bool(true)));
            }
            _ => {}
        }
    }

    /// A new job, extranonce1 or mask: every unit is unused again.
    fn new_space(&mut self) {
        self.roll_index = 0;
        self.en2_counter = 0;
        self.exhausted = false;
        self.work = None;
    }

    /// How many extranonce2 values the subscribed size holds (saturated at `u64::MAX`).
    fn en2_capacity(&self) -> u64 {
        u32::try_from(8 * self.extranonce2_size)
            .ok()
            .and_then(|bits| 1u64.checked_shl(bits))
            .unwrap_or(u64::MAX)
    }

    /// Version-bit combinations per extranonce2.
    fn combos(&self) -> u64 {
        if self.rolling {
            1u64 << self.mask.count_ones()
        } else {
            1
        }
    }

    /// Moves to the next extranonce2 (roll index 0), or marks the space used up.
    fn advance_en2(&mut self) {
        self.roll_index = 0;
        if self.en2_counter.saturating_add(1) >= self.en2_capacity() {
            self.exhausted = true;
        } else {
            self.en2_counter += 1;
        }
    }

    /// Whether a unit after the current one is left.
    fn units_left(&self) -> bool {
        self.roll_index + 1 < self.combos()
            || self.en2_counter.saturating_add(1) < self.en2_capacity()
    }

    /// The next work unit after the current one (or the first), for the current job.
    fn next_work(&mut self) -> Option<Work> {
        let job = self.job.clone()?;
        if self.roll_index >= self.combos() {
            self.advance_en2();
        }
        if self.exhausted {
            return None;
        }
        let version_bits = self
            .rolling
            .then(|| deposit(self.roll_index, self.mask) | self.config.stray_version_bits);
        let size = self.extranonce2_size;
        let counter = self.en2_counter.to_be_bytes();
        let extranonce2 = if size <= 8 {
            counter[8 - size..].to_vec()
        } else {
            [vec![0; size - 8], counter.to_vec()].concat()
        };
        let submit = Submit {
            worker: self.config.user.clone(),
            job_id: job.job_id.clone(),
            extranonce2,
            ntime: job.ntime,
            nonce: 0,
            version_bits,
        };
        // The header as the pool rebuilds it: `(version & !mask) | bits`; a stray bit
        // widens the mask here, so it reaches the header as a miner that rolls it hashes it.
        let mask = self.mask | self.config.stray_version_bits;
        let header = build_header(&job, &self.extranonce1, &submit, mask).ok()?;
        Some(Work {
            job,
            header,
            extranonce2: submit.extranonce2,
            version_bits,
            nonce: Some(0),
        })
    }

    /// Hashes up to `batch` nonces (fewer when `max_hashes` is near). Returns the submit
    /// line when a share meeting the current difficulty was found (the batch ends there).
    pub fn mine(&mut self, batch: u64) -> Option<Vec<u8>> {
        if !self.can_mine() {
            return None;
        }
        let difficulty = self.target_difficulty()?;
        // A hash meets `difficulty` only if its top 64 bits (as a little-endian 256-bit
        // number) are at most 0xffff·2^16 / difficulty: a cheap filter before the exact
        // [`hash_difficulty`], rounded up to stay on the safe side.
        let top_limit = (4_294_901_760.0 / difficulty * (1.0 + 1e-9)).min(u64::MAX as f64) as u64;
        let budget = batch.min(self.config.max_hashes - self.report.hashes);
        let mut done = 0;
        while done < budget {
            let mut work = match self.work.take() {
                Some(w) => w,
                None => match self.next_work() {
                    Some(w) => w,
                    None => break,
                },
            };
            let mut found = None;
            while done < budget {
                let Some(nonce) = work.nonce else { break };
                work.header.nonce = nonce;
                let hash = work.header.block_hash();
                done += 1;
                work.nonce = nonce.checked_add(1);
                let bytes: &[u8; 32] = hash.as_ref();
                let mut top = [0u8; 8];
                top.copy_from_slice(&bytes[24..]);
                if u64::from_le_bytes(top) > top_limit {
                    continue;
                }
                let d = hash_difficulty(hash);
                if d >= difficulty {
                    found = Some((nonce, d));
                    break;
                }
            }
            if work.nonce.is_none() {
                self.roll_index += 1;
            }
            if let Some((nonce, d)) = found {
                self.report.hashes += done;
                let submit = Submit {
                    worker: self.config.user.clone(),
                    job_id: work.job.job_id.clone(),
                    extranonce2: work.extranonce2.clone(),
                    ntime: work.header.time,
                    nonce,
                    version_bits: work.version_bits,
                };
                // The next share comes from the next work unit (other version bits or
                // extranonce2); when none is left, from the next nonces of this one.
                if self.units_left() {
                    self.roll_index += 1;
                } else if work.nonce.is_some() {
                    self.work = Some(work);
                } else {
                    self.exhausted = true;
                }
                let req = ClientRequest::Submit(submit.clone());
                let line = self.request(Asked::Submit, &req);
                self.report.submits.push(SentShare {
                    id: self.next_id - 1,
                    submit,
                    target_difficulty: difficulty,
                    hash_difficulty: d,
                });
                return Some(line);
            }
            if work.nonce.is_some() {
                self.work = Some(work);
            }
        }
        self.report.hashes += done;
        None
    }
}

/// Connects to `addr` and mines under `config` until a bound is hit, then waits up to
/// `answer_grace` for outstanding submit answers.
///
/// Hashing runs on the calling task in batches of 2048 nonces (about 15 ms in a debug
/// build, ~140k hashes/s), yielding to the runtime between batches and reading the pool's
/// lines before each. Difficulty changes apply to the next batch.
///
/// # Errors
/// When the connection cannot be made or a write fails.
pub async fn run_sv1_miner(
    addr: SocketAddr,
    config: Sv1MinerConfig,
) -> std::io::Result<Sv1MinerReport> {
    const BATCH: u64 = 2048;
    let deadline = Instant::now() + config.max_time;
    let grace = config.answer_grace;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (r, mut w) = stream.into_split();
    let mut lines = FramedRead::new(r, LineCodec::default());
    let mut state = MinerState::new(config);
    for line in state.start() {
        w.write_all(&line).await?;
    }
    let mut grace_end: Option<Instant> = None;
    let stop = 'run: loop {
        // Take in everything the pool sent so far.
        while let Some(next) = lines.next().now_or_never() {
            match next {
                Some(Ok(line)) => {
                    for out in state.handle_line(&line) {
                        w.write_all(&out).await?;
                    }
                }
                Some(Err(_)) | None => break 'run StopReason::Closed,
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break StopReason::Time;
        }
        if let Some(reason) = state.done_mining() {
            let end = *grace_end.get_or_insert((now + grace).min(deadline));
            if state.pending_submits() == 0 || now >= end {
                break reason;
            }
            match tokio::time::timeout_at(end, lines.next()).await {
                Ok(Some(Ok(line))) => {
                    for out in state.handle_line(&line) {
                        w.write_all(&out).await?;
                    }
                }
                Ok(Some(Err(_)) | None) => break StopReason::Closed,
                Err(_) => break reason,
            }
        } else if state.can_mine() {
            if let Some(submit) = state.mine(BATCH) {
                w.write_all(&submit).await?;
            }
            tokio::task::yield_now().await;
        } else {
            match tokio::time::timeout_at(deadline, lines.next()).await {
                Ok(Some(Ok(line))) => {
                    for out in state.handle_line(&line) {
                        w.write_all(&out).await?;
                    }
                }
                Ok(Some(Err(_)) | None) => break StopReason::Closed,
                Err(_) => break StopReason::Time,
            }
        }
    };
    let mut report = state.report;
    report.stop = Some(stop);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sv1_pool::{para_job, PARA_NOTIFY_LINE};
    use stratum_proto::sv1::share::check_share;

    /// A miner fed the para transcript's answers: mask `1fffe000` granted, extranonce1
    /// `a1000001`, `en2_size`-byte extranonce2, difficulty `difficulty`, the para job.
    fn fed(config: Sv1MinerConfig, en2_size: usize, difficulty: f64) -> MinerState {
        let mut m = MinerState::new(config);
        m.start();
        for line in [
            r#"{"id":0,"error":null,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"}}"#.to_string(),
            format!(r#"{{"id":1,"error":null,"result":[[["mining.set_difficulty","s1"],["mining.notify","s1"]],"a1000001",{en2_size}]}}"#),
            r#"{"id":2,"error":null,"result":true}"#.to_string(),
            format!(r#"{{"id":null,"method":"mining.set_difficulty","params":[{difficulty}]}}"#),
            PARA_NOTIFY_LINE.to_string(),
        ] {
            assert!(m.handle_line(line.as_bytes()).is_empty());
        }
        m
    }

    fn mine_shares(m: &mut MinerState, n: usize) {
        for _ in 0..n {
            let mut found = false;
            for _ in 0..1000 {
                if m.mine(4096).is_some() {
                    found = true;
                    break;
                }
            }
            assert!(found || m.done_mining().is_some());
        }
    }

    #[test]
    fn shares_mined_on_the_para_job_pass_stratum_protos_check_at_their_difficulty() {
        let d = 1.0 / 262_144.0;
        let mut m = fed(Sv1MinerConfig::default(), 8, d);
        assert!(m.report().bad_lines.is_empty());
        assert_eq!(m.report().version_mask, Some(0x1fff_e000));
        mine_shares(&mut m, 3);
        let job = para_job();
        let shares = &m.report().submits;
        assert_eq!(shares.len(), 3);
        for (i, s) in shares.iter().enumerate() {
            // extranonce2 counts up from 0, 8 bytes big-endian, as para's does.
            let bits = s.submit.version_bits.unwrap();
            assert_eq!(bits & !0x1fff_e000, 0);
            let check = check_share(&job, &[0xa1, 0, 0, 1], &s.submit, 0x1fff_e000, d).unwrap();
            assert!(check.meets_share, "share {i}: {}", check.difficulty);
            assert_eq!(check.difficulty, s.hash_difficulty);
            assert_eq!(s.id, 3 + i as u64);
        }
        assert_eq!(shares[0].submit.extranonce2, [0u8; 8]);
        assert_eq!(m.pending_submits(), 3);
    }

    #[test]
    fn with_no_extranonce2_and_no_rolling_shares_come_from_later_nonces_never_twice() {
        let config = Sv1MinerConfig {
            version_mask: None,
            max_shares: 5,
            ..Sv1MinerConfig::default()
        };
        let mut m = MinerState::new(config);
        m.start();
        for line in [
            r#"{"id":0,"error":null,"result":[[],"a1000001",0]}"#.to_string(),
            r#"{"id":1,"error":null,"result":true}"#.to_string(),
            r#"{"id":null,"method":"mining.set_difficulty","params":[0.000001]}"#.to_string(),
            PARA_NOTIFY_LINE.to_string(),
        ] {
            m.handle_line(line.as_bytes());
        }
        mine_shares(&mut m, 5);
        let nonces: std::collections::HashSet<u32> =
            m.report().submits.iter().map(|s| s.submit.nonce).collect();
        assert_eq!(nonces.len(), 5);
        assert!(m
            .report()
            .submits
            .iter()
            .all(|s| s.submit.extranonce2.is_empty()));
        assert_eq!(m.done_mining(), Some(StopReason::Shares));
    }

    #[test]
    fn after_set_extranonce_and_set_version_mask_shares_use_the_new_ones() {
        let d = 1.0 / 1_048_576.0;
        let mut m = fed(Sv1MinerConfig::default(), 8, d);
        m.handle_line(br#"{"id":null,"method":"mining.set_extranonce","params":["b2000002",4]}"#);
        m.handle_line(br#"{"id":null,"method":"mining.set_version_mask","params":["00006000"]}"#);
        assert_eq!(m.report().version_mask, Some(0x0000_6000));
        mine_shares(&mut m, 6);
        let job = para_job();
        let shares = &m.report().submits;
        assert_eq!(shares.len(), 6);
        for s in shares {
            assert_eq!(s.submit.extranonce2.len(), 4);
            assert_eq!(s.submit.version_bits.unwrap() & !0x0000_6000, 0);
            let check = check_share(&job, &[0xb2, 0, 0, 2], &s.submit, 0x0000_6000, d).unwrap();
            assert!(check.meets_share);
        }
        // The new mask came on the same job: the miner moved on to an unused extranonce2
        // (1); two mask bits give four combinations per extranonce2, then the next one.
        assert_eq!(shares[0].submit.extranonce2, [0, 0, 0, 1]);
        assert_eq!(shares[3].submit.extranonce2, [0, 0, 0, 1]);
        assert_eq!(shares[4].submit.extranonce2, [0, 0, 0, 2]);
    }

    #[test]
    fn a_pool_line_that_cannot_be_read_is_recorded_and_the_miner_goes_on() {
        let mut m = fed(Sv1MinerConfig::default(), 8, 0.5);
        m.handle_line(br#"{"id":null,"method":"mining.set_difficulty","params":[-1]}"#);
        m.handle_line(b"not json");
        assert_eq!(m.report().bad_lines.len(), 2);
        assert_eq!(m.report().difficulties, vec![0.5]);
        assert!(m.can_mine());
        let answer = m.handle_line(br#"{"id":7,"method":"client.get_version","params":[]}"#);
        assert_eq!(answer.len(), 1);
        assert!(String::from_utf8_lossy(&answer[0]).contains("test-support-sv1-miner/0.1"));
    }

    #[test]
    fn deposit_puts_the_index_bits_into_the_mask_bits_only() {
        assert_eq!(deposit(0, 0x1fff_e000), 0);
        assert_eq!(deposit(1, 0x1fff_e000), 0x0000_2000);
        assert_eq!(deposit(0b101, 0x1fff_e000), 0x0000_a000);
        assert_eq!(deposit(u64::from(u32::MAX), 0x1fff_e000), 0x1fff_e000);
        assert_eq!(deposit(7, 0), 0);
    }

    #[test]
    fn opening_lines_are_configure_subscribe_authorize_from_id_0() {
        let mut m = MinerState::new(Sv1MinerConfig::default());
        let lines: Vec<String> = m
            .start()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains(r#""id":0,"method":"mining.configure""#));
        assert!(lines[0].contains(r#""version-rolling.mask":"ffffffff""#));
        assert!(lines[1].contains(r#""id":1,"method":"mining.subscribe""#));
        assert!(lines[1].contains("test-support-sv1-miner/0.1"));
        assert!(lines[2].contains(r#""id":2,"method":"mining.authorize""#));
        let no_roll = MinerState::new(Sv1MinerConfig {
            version_mask: None,
            ..Sv1MinerConfig::default()
        })
        .start()
        .len();
        assert_eq!(no_roll, 2);
    }
}
