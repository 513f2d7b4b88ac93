//! A Stratum V1 miner's session: its [`Phase`] (advanced only here), the answers to its
//! requests, its negotiated version-rolling mask and its difficulty (vardiff).
//!
//! ```text
//! Connected --subscribe--> Subscribed --authorize--> Authorized --close--> Closing
//!   configure, extranonce.subscribe, suggest_difficulty: any phase
//!   an upstream extranonce change the miner cannot take in place: --> Closing (reconnect)
//! ```
//!
//! Every handler returns [`Output`]s in the order to write them (or a [`Refusal`] where the
//! driver has more to do on success); nothing here writes, reads a clock or locks.

use nonce_split::{MinerId, Vardiff, VardiffConfig, VardiffError};
use std::sync::Arc;
use stratum_proto::sv1::{
    encode_bool_result_into, encode_configure_result_into, Authorize, Configure, ConfigureResult,
    Reconnect, RequestError, ServerMessage, Submit, Subscribe, SubscribeAnswer,
    VersionRollingResult,
};
use stratum_proto::Id;

use super::channel::{Assignment, JobSeq, NewExtranonce, ShareDifficulty, ShareIn};
use super::Refusal;
use crate::{ShareTally, WorkerName};

/// Longest worker name accepted in `mining.authorize`, bytes: 128 (a 62-character bech32m
/// address, a dot and a worker name fit with room to spare).
pub const MAX_WORKER_NAME_LEN: usize = 128;

/// Most distinct workers one connection may authorize: 8 (slush's protocol lets a
/// connection authorize several; a farm's rig uses one, a few proxies in cascade a few).
pub const MAX_WORKERS_PER_CONNECTION: usize = 8;

/// Longest user agent kept from `mining.subscribe`, bytes (longer ones are cut at a
/// character boundary).
pub const MAX_USER_AGENT_LEN: usize = 64;

/// Lifecycle phase of a Stratum V1 miner session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected, not subscribed (`mining.configure` and the other extensions allowed).
    Connected,
    /// Subscribed: has a slot on an upstream channel and its extranonce1; no worker yet.
    Subscribed,
    /// A worker is authorized: receives jobs, may submit.
    Authorized,
    /// Being closed (or told to reconnect).
    Closing,
}

/// The result part of a reply to a miner's request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `mining.subscribe`'s result (both subscriptions under the miner's number).
    Subscribed(SubscribeAnswer),
    /// `mining.configure`'s result.
    Configured(ConfigureResult),
    /// `true` (`authorize`, `extranonce.subscribe`, `suggest_difficulty`, `submit`).
    True,
    /// An error with its code.
    Error(Refusal),
}

/// Something the driver writes to the miner, or does for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The answer to request `id`.
    Reply {
        /// The request's id, echoed.
        id: Id,
        /// The result or error.
        reply: Reply,
    },
    /// `mining.set_difficulty`: the difficulty of the next job.
    SetDifficulty(f64),
    /// `mining.set_version_mask`: the version bits the miner may roll from now on.
    SetVersionMask(u32),
    /// `mining.set_extranonce` (the miner sent `mining.extranonce.subscribe`).
    SetExtranonce(NewExtranonce),
    /// `client.reconnect` to this proxy, then close: the miner must subscribe anew.
    Reconnect,
    /// Not a line: the miner just became ready; send it the channel's current job through
    /// [`Session::on_job`].
    SendCurrentJob,
}

impl Output {
    /// The line to write (ending in `\n`); `None` for [`Output::SendCurrentJob`].
    pub fn encode(&self) -> Option<Vec<u8>> {
        if *self == Self::SendCurrentJob {
            return None;
        }
        let mut out = Vec::with_capacity(128);
        self.encode_into(&mut out);
        Some(out)
    }

    /// Appends the line to write (ending in `\n`) to `out`, e.g. one buffer that a driver
    /// fills with several outputs and writes at once; `false` (nothing appended) for
    /// [`Output::SendCurrentJob`]. The same bytes as [`Output::encode`].
    pub fn encode_into(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Self::Reply { id, reply } => match reply {
                Reply::Subscribed(r) => r.encode_into(out, id),
                Reply::Configured(r) => encode_configure_result_into(out, id, r),
                Reply::True => encode_bool_result_into(out, id, true),
                Reply::Error(e) => out.extend_from_slice(&e.reply(id)),
            },
            Self::SetDifficulty(d) => ServerMessage::SetDifficulty(*d).encode_into(out),
            Self::SetVersionMask(m) => ServerMessage::SetVersionMask(*m).encode_into(out),
            Self::SetExtranonce(n) => ServerMessage::SetExtranonce {
                extranonce1: n.extranonce1.clone(),
                extranonce2_size: n.extranonce2_size,
            }
            .encode_into(out),
            Self::Reconnect => ServerMessage::Reconnect {
                id: Id::Null,
                params: Reconnect::default(),
            }
            .encode_into(out),
            Self::SendCurrentJob => return false,
        }
        true
    }

    fn reply(id: &Id, reply: Reply) -> Self {
        Self::Reply {
            id: id.clone(),
            reply,
        }
    }

    fn error(id: &Id, refusal: Refusal) -> Self {
        Self::reply(id, Reply::Error(refusal))
    }
}

/// What a job from the miner's upstream means for the session ([`Session::on_job`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JobFor {
    /// Not ready for jobs (not authorized, or closing): send nothing.
    Skip,
    /// Send the job's `mining.notify`, after a `mining.set_difficulty` when `difficulty` is
    /// set (the first job, or the difficulty changed: it applies to this job on).
    Send {
        /// The difficulty to send first.
        difficulty: Option<f64>,
    },
}

/// The rules of `mining.authorize` from the running config.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorizeRules<'a> {
    /// `access-password` when set and non-empty: a worker's password must be it.
    pub access_password: Option<&'a str>,
}

/// Checks a worker name: not empty, at most [`MAX_WORKER_NAME_LEN`] bytes, no whitespace
/// or control characters (an operator reads it in logs and the API as `address.worker`).
///
/// # Errors
/// [`Refusal::InvalidWorkerName`] saying which rule.
pub fn check_worker_name(name: &str) -> Result<(), Refusal> {
    if name.is_empty() {
        return Err(Refusal::InvalidWorkerName("empty name"));
    }
    if name.len() > MAX_WORKER_NAME_LEN {
        return Err(Refusal::InvalidWorkerName("name longer than 128 bytes"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Refusal::InvalidWorkerName(
            "name with spaces or control characters",
        ));
    }
    Ok(())
}

/// Splits a worker name at its first dot: `"bc1q….rig1"` → `("bc1q…", Some("rig1"))`,
/// `"alice"` → `("alice", None)` (pools' convention: account or address, then the rig).
pub fn split_worker(name: &str) -> (&str, Option<&str>) {
    match name.split_once('.') {
        Some((user, rig)) => (user, Some(rig)),
        None => (name, None),
    }
}

/// A `mining.configure` answered once its upstream's mask is known.
#[derive(Debug, Clone, PartialEq)]
struct WaitingConfigure {
    id: Id,
    /// The miner's mask (all bits when it gave none).
    asked: u32,
    /// The answer's other extensions, decided at once.
    result: ConfigureResult,
}

/// The difficulties a miner was told. 16 bytes: "never told" is a `current` of 0 (a
/// difficulty is above 0), not an `Option`'s 8 more; job numbers are [`JobSeq`]s (`u32`);
/// the difficulty before the last change is in the session's [`Extra`] box, made at the
/// first change after the first job (before it, it is `current`).
#[derive(Debug, Clone, Copy)]
struct Told {
    current: f64,
    since_job: JobSeq,
    /// The newest job sent.
    last_job: JobSeq,
}

/// One Stratum V1 miner's session state; `R` is the driver's route to its upstream
/// channel. See the module doc.
///
/// An idle miner's bytes: what a job, a share or a mask change needs is inline (96 bytes
/// with `R = ()`, pinned by a size test; vardiff's window sums are boxed at the first share,
/// the difficulty before a change at the first change); what only the login needs, and the rare extras
/// (a second worker, a waiting subscribe or configure), live in one box made when needed
/// and freed once empty. The miner's id is not kept (the driver passes it in) and time is
/// milliseconds of the caller's clock, not an `Instant` of the session's own.
#[derive(Debug)]
pub struct Session<R> {
    /// The phase and the two flags in one byte ([`State`]).
    state: State,
    route: Option<R>,
    slot: u16,
    /// The mask the miner asked for in `mining.configure`; 0 when it asked none (a mask of
    /// 0 grants nothing either way), which keeps the field at 4 bytes.
    requested_mask: u32,
    /// requested ∧ the upstream's; 0 without rolling.
    version_mask: u32,
    tally: ShareTally,
    /// Until the miner is on a channel its upstream ceiling is `f64::MAX`.
    vardiff: Vardiff,
    /// What the miner was told; [`Told::NONE`] before its first job.
    told: Told,
    /// The first worker it authorized (others are in [`Cold`]).
    worker: Option<WorkerName>,
    /// What an idle miner does not need ([`Extra`]), made when needed and freed once empty,
    /// so that the field is 8 bytes.
    extra: Option<Box<Extra>>,
}

/// A session's parts that an idle miner has none of ([`Session`]'s `extra`): the
/// difficulty before the last change (from the first change after the first job on), and the
/// short-lived and rare parts ([`Cold`], a box of their own: a miner whose difficulty
/// changed keeps 16 bytes, not all of them).
#[derive(Debug, Clone, Default, PartialEq)]
struct Extra {
    /// The difficulty the miner was told before the last change: shares of the jobs before
    /// [`Told::since_job`] are judged at the lower of it and the current one; 0 when it is
    /// the current one.
    before: f64,
    cold: Option<Box<Cold>>,
}

/// A session's phase and flags in one byte: bits 0–1 the [`Phase`], bit 2 "sent
/// `mining.extranonce.subscribe`", bit 3 "a `mining.subscribe` waits for the upstream's
/// extranonce" (a driver whose upstream has not subscribed yet: `mining.authorize` is
/// taken meanwhile, as pipelining miners send it at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State(u8);

impl State {
    const PHASE: u8 = 0b11;
    const EXTRANONCE_SUBSCRIBED: u8 = 0b100;
    const SUBSCRIBING: u8 = 0b1000;

    fn phase(self) -> Phase {
        match self.0 & Self::PHASE {
            0 => Phase::Connected,
            1 => Phase::Subscribed,
            2 => Phase::Authorized,
            _ => Phase::Closing,
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        let bits = match phase {
            Phase::Connected => 0,
            Phase::Subscribed => 1,
            Phase::Authorized => 2,
            Phase::Closing => 3,
        };
        self.0 = (self.0 & !Self::PHASE) | bits;
    }

    fn flag(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }
}

/// A session's short-lived and rare parts (in its [`Extra`]): what lives only until the
/// login (the user agent, from `mining.subscribe` until the driver takes it at the first
/// `mining.authorize`; a `mining.subscribe` or `mining.configure` waiting for the
/// upstream) and the workers after the first.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cold {
    agent: Option<Box<str>>,
    /// A `mining.configure` asking for version rolling whose answer waits for the mask of
    /// the miner's upstream ([`Session::configure_later`]).
    configure: Option<WaitingConfigure>,
    /// The id of a `mining.subscribe` whose answer waits for the upstream's extranonce,
    /// parked by the driver ([`Session::park_subscribe`]).
    subscribe: Option<Id>,
    /// The workers after the first, in order.
    more_workers: Vec<WorkerName>,
}

impl Cold {
    fn is_empty(&self) -> bool {
        self.agent.is_none()
            && self.configure.is_none()
            && self.subscribe.is_none()
            && self.more_workers.is_empty()
    }
}

impl Told {
    const NONE: Self = Self {
        current: 0.0,
        since_job: 0,
        last_job: 0,
    };
}

impl<R> Session<R> {
    /// What the miner was told; `None` before its first job.
    fn told(&self) -> Option<Told> {
        Some(self.told).filter(|t| t.current > 0.0)
    }

    /// A new connection at `now_ms` (milliseconds of any monotonic clock the caller keeps
    /// for all its calls, as [`Vardiff`] takes them) whose difficulty will follow `vardiff`
    /// (the floor, the share interval aimed at; clamped at the upstream's difficulty). Pass
    /// an `Arc<VardiffConfig>` shared by every session to keep one copy of the settings.
    ///
    /// # Errors
    /// [`VardiffError::InvalidConfig`] for a config [`VardiffConfig::validate`] refuses.
    pub fn new(vardiff: impl Into<Arc<VardiffConfig>>, now_ms: u64) -> Result<Self, VardiffError> {
        Ok(Self {
            state: State(0),
            route: None,
            slot: 0,
            requested_mask: 0,
            version_mask: 0,
            tally: ShareTally::default(),
            vardiff: Vardiff::new(vardiff, f64::MAX, now_ms)?,
            told: Told::NONE,
            worker: None,
            extra: None,
        })
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    fn set_phase(&mut self, phase: Phase) {
        self.state.set_phase(phase);
    }

    fn subscribing_flag(&self) -> bool {
        self.state.flag(State::SUBSCRIBING)
    }

    fn set_subscribing(&mut self, on: bool) {
        self.state.set_flag(State::SUBSCRIBING, on);
    }

    fn set_extranonce_subscribed(&mut self) {
        self.state.set_flag(State::EXTRANONCE_SUBSCRIBED, true);
    }

    /// The route to the miner's channel, once subscribed.
    pub fn route(&self) -> Option<&R> {
        self.route.as_ref()
    }

    /// Takes the route away (the miner leaves its channel); `None` the second time, so
    /// that a slot is given back once.
    pub fn take_route(&mut self) -> Option<R> {
        self.route.take()
    }

    /// The miner's slot on its channel (meaningful once subscribed).
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The negotiated version-rolling mask: the miner's ∧ the upstream's; 0 without rolling.
    pub fn version_mask(&self) -> u32 {
        self.version_mask
    }

    /// Whether the miner sent `mining.extranonce.subscribe` (or `subscribe-extranonce`).
    pub fn extranonce_subscribed(&self) -> bool {
        self.state.flag(State::EXTRANONCE_SUBSCRIBED)
    }

    /// The difficulty the miner was last told; `None` before its first job.
    pub fn difficulty(&self) -> Option<f64> {
        self.told().map(|t| t.current)
    }

    /// The workers it authorized, in order.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerName> + '_ {
        let more = self.cold_ref().map_or(&[][..], |c| &c.more_workers[..]);
        self.worker.iter().chain(more)
    }

    fn has_worker(&self, name: &str) -> bool {
        self.workers().any(|w| *w == *name)
    }

    fn add_worker(&mut self, name: WorkerName) {
        if self.worker.is_none() {
            self.worker = Some(name);
        } else {
            self.cold().more_workers.push(name);
        }
    }

    /// The user agent from `mining.subscribe` (at most [`MAX_USER_AGENT_LEN`] bytes), or
    /// from the answer to `client.get_version`; `None` once taken.
    pub fn agent(&self) -> Option<&str> {
        self.cold_ref().and_then(|c| c.agent.as_deref())
    }

    /// Keeps `name` (a worker this connection authorized) as the driver's copy: the
    /// session then points at the driver's blocks (e.g. the ones its worker records and
    /// login keep, with an account part shared between miners) instead of holding a
    /// second copy. A name not authorized here is ignored.
    pub fn share_worker_name(&mut self, name: &WorkerName) {
        let more = self
            .extra
            .as_mut()
            .and_then(|e| e.cold.as_mut())
            .map_or(&mut [][..], |c| &mut c.more_workers[..]);
        if let Some(w) = self.worker.iter_mut().chain(more).find(|w| **w == *name) {
            *w = name.clone();
        }
    }

    /// Takes the user agent out of the session (a driver that keeps it elsewhere, e.g. in
    /// one copy shared by the miners that send the same, frees the session's).
    pub fn take_agent(&mut self) -> Option<Box<str>> {
        let agent = self.cold_mut().and_then(|c| c.agent.take());
        self.drop_empty_cold();
        agent
    }

    /// The short-lived parts, made when first needed.
    fn cold(&mut self) -> &mut Cold {
        self.extra
            .get_or_insert_with(Box::default)
            .cold
            .get_or_insert_with(Box::default)
    }

    fn cold_ref(&self) -> Option<&Cold> {
        self.extra.as_ref()?.cold.as_deref()
    }

    fn cold_mut(&mut self) -> Option<&mut Cold> {
        self.extra.as_mut()?.cold.as_deref_mut()
    }

    /// Frees the short-lived parts once nothing is left in them, and the extra box once it
    /// holds nothing either.
    fn drop_empty_cold(&mut self) {
        if let Some(e) = &mut self.extra {
            if e.cold.as_ref().is_some_and(|c| c.is_empty()) {
                e.cold = None;
            }
            if e.cold.is_none() && e.before == 0.0 {
                self.extra = None;
            }
        }
    }

    /// The difficulty before the last change; the current one when none.
    fn before(&self, current: f64) -> f64 {
        match self.extra.as_ref().map_or(0.0, |e| e.before) {
            b if b > 0.0 => b,
            _ => current,
        }
    }

    /// Keeps `before` as the difficulty before the last change (`current` when none).
    fn set_before(&mut self, before: f64, current: f64) {
        if before == current {
            if let Some(e) = &mut self.extra {
                e.before = 0.0;
            }
            self.drop_empty_cold();
        } else {
            self.extra.get_or_insert_with(Box::default).before = before;
        }
    }

    /// Keeps the id of a `mining.subscribe` whose answer waits for the upstream's
    /// extranonce (the driver answers it with [`Session::on_subscribed`] once the slot is
    /// there); a second one replaces the first.
    pub fn park_subscribe(&mut self, id: Id) {
        self.cold().subscribe = Some(id);
    }

    /// Takes the parked `mining.subscribe` id out ([`Session::park_subscribe`]).
    pub fn take_parked_subscribe(&mut self) -> Option<Id> {
        let id = self.cold_mut().and_then(|c| c.subscribe.take());
        self.drop_empty_cold();
        id
    }

    /// Takes a waiting `mining.configure` out.
    fn take_waiting_configure(&mut self) -> Option<WaitingConfigure> {
        let w = self.cold_mut().and_then(|c| c.configure.take());
        self.drop_empty_cold();
        w
    }

    /// The vardiff settings the session follows (the ones given to [`Session::new`]).
    pub fn vardiff_config(&self) -> &VardiffConfig {
        self.vardiff.config()
    }

    /// The answered shares so far.
    pub fn tally(&self) -> ShareTally {
        self.tally
    }

    /// A line that is not a request the proxy serves: its error reply (code 20); the
    /// connection lives on.
    pub fn on_bad_request(&self, error: &RequestError) -> Output {
        Output::error(error.id(), Refusal::BadRequest(error.clone()))
    }

    /// `mining.configure` (BIP 310), any phase: `version-rolling` is granted with the
    /// miner's mask (all bits when it gave none) AND `upstream_mask` (the mask of the
    /// upstream the miner is, or will be, on; refused as `false` when that leaves no bit);
    /// `minimum-difficulty` is honoured as a `mining.suggest_difficulty`;
    /// `subscribe-extranonce` as a `mining.extranonce.subscribe`; other extensions are
    /// left out of the answer (not supported). When the upstream's mask is not known yet,
    /// [`Session::configure_later`] instead.
    pub fn configure(&mut self, id: &Id, request: &Configure, upstream_mask: u32) -> Output {
        let mut result = self.configure_extensions(request);
        if let Some(vr) = &request.version_rolling {
            let asked = vr.mask.unwrap_or(u32::MAX);
            result.version_rolling = Some(self.grant_mask(asked, upstream_mask));
        }
        Output::reply(id, Reply::Configured(result))
    }

    /// `mining.configure` before the mask of the miner's upstream is known (issue 12: para
    /// and others configure before `mining.subscribe`, and ignore a later
    /// `mining.set_version_mask`): without `version-rolling` it is answered at once as
    /// [`Session::configure`] does; with it the answer waits for the upstream's mask
    /// ([`Session::on_upstream_mask`], or [`Session::on_subscribed`] with the channel's),
    /// so that the miner is granted its mask AND the upstream's from the start. The other
    /// extensions take effect at once. A waiting configure that a second one replaces is
    /// answered then with `version-rolling` `false`; the driver bounds the wait with
    /// [`Session::configure_expired`].
    pub fn configure_later(&mut self, id: &Id, request: &Configure) -> Vec<Output> {
        let Some(vr) = &request.version_rolling else {
            return vec![self.configure(id, request, 0)];
        };
        let mut out = Vec::with_capacity(1);
        out.extend(self.configure_expired());
        let result = self.configure_extensions(request);
        self.cold().configure = Some(WaitingConfigure {
            id: id.clone(),
            asked: vr.mask.unwrap_or(u32::MAX),
            result,
        });
        out
    }

    /// Whether a `mining.configure` waits for the upstream's mask.
    pub fn configure_waits(&self) -> bool {
        self.cold_ref().is_some_and(|c| c.configure.is_some())
    }

    /// No upstream mask came in time (the driver's bound, below the 10 s para waits): the
    /// waiting `mining.configure`, if any, is answered with `version-rolling` `false` (BIP
    /// 310's refusal of the extension; the miner mines without rolling and is never told a
    /// mask later). `None` when none waits.
    pub fn configure_expired(&mut self) -> Option<Output> {
        let w = self.take_waiting_configure()?;
        let mut result = w.result;
        result.version_rolling = Some(VersionRollingResult::Disabled);
        Some(Output::reply(&w.id, Reply::Configured(result)))
    }

    /// The waiting configure, answered with `upstream_mask`.
    fn answer_waiting_configure(&mut self, upstream_mask: u32) -> Option<Output> {
        let w = self.take_waiting_configure()?;
        let mut result = w.result;
        result.version_rolling = Some(self.grant_mask(w.asked, upstream_mask));
        Some(Output::reply(&w.id, Reply::Configured(result)))
    }

    /// Keeps the miner's `asked` mask and grants it AND `upstream_mask`.
    fn grant_mask(&mut self, asked: u32, upstream_mask: u32) -> VersionRollingResult {
        self.requested_mask = asked;
        self.version_mask = asked & upstream_mask;
        if self.version_mask == 0 {
            VersionRollingResult::Disabled
        } else {
            VersionRollingResult::Enabled {
                mask: self.version_mask,
            }
        }
    }

    /// A configure's `minimum-difficulty` and `subscribe-extranonce`.
    fn configure_extensions(&mut self, request: &Configure) -> ConfigureResult {
        let mut result = ConfigureResult::default();
        if let Some(d) = request.minimum_difficulty {
            result.minimum_difficulty = Some(self.suggest(d));
        }
        if request.subscribe_extranonce {
            self.set_extranonce_subscribed();
            result.subscribe_extranonce = Some(true);
        }
        result
    }

    /// `mining.extranonce.subscribe`, any phase: `mining.set_extranonce` will be sent to
    /// this miner when its upstream's extranonce changes.
    pub fn extranonce_subscribe(&mut self, id: &Id) -> Output {
        self.set_extranonce_subscribed();
        Output::reply(id, Reply::True)
    }

    /// `mining.suggest_difficulty`, any phase: honoured within the floor and the
    /// upstream's difficulty, and kept as this miner's floor (vardiff goes on above it);
    /// it reaches the miner with its next job. Answered `true`; a value that is not a
    /// finite number above 0 (the parser refuses those already) is ignored.
    pub fn suggest_difficulty(&mut self, id: &Id, difficulty: f64) -> Output {
        self.suggest(difficulty);
        Output::reply(id, Reply::True)
    }

    fn suggest(&mut self, difficulty: f64) -> bool {
        self.vardiff.handle_suggest_difficulty(difficulty).is_ok()
    }

    /// `mining.subscribe`: checks that it is the first and keeps the user agent. The
    /// resume parameter (`session_id`) is ignored: the miner gets a fresh slot and
    /// extranonce1 (a slot is never handed back before the upstream's next job, so the old
    /// one may not be free; the spec lets a server not resume). On `Ok` the driver puts
    /// the miner on a channel and calls [`Session::on_subscribed`] (or answers
    /// [`Refusal::ProxyFull`] when no channel has room).
    ///
    /// # Errors
    /// [`Refusal::AlreadySubscribed`] after a subscribe.
    pub fn subscribe(&mut self, request: &Subscribe) -> Result<(), Refusal> {
        if self.phase() != Phase::Connected || self.subscribing_flag() {
            return Err(Refusal::AlreadySubscribed);
        }
        if let Some(agent) = &request.user_agent {
            self.cold().agent = Some(crate::cut_at_char_boundary(agent, MAX_USER_AGENT_LEN).into());
        }
        self.set_subscribing(true);
        Ok(())
    }

    /// The miner is on a channel as `miner`, reached by `route`, with `assignment`: the
    /// subscribe answer (subscriptions named by the miner id in hex, its extranonce1 and
    /// extranonce2_size), then `mining.set_version_mask` if the channel's mask narrows
    /// what `mining.configure` granted; a configure still waiting
    /// ([`Session::configure_later`]) is answered before all, with the channel's mask.
    pub fn on_subscribed(
        &mut self,
        id: &Id,
        route: R,
        miner: MinerId,
        assignment: Assignment,
    ) -> Vec<Output> {
        let mut out = Vec::with_capacity(2);
        // A configure still waiting is answered first, with the channel's mask.
        out.extend(self.answer_waiting_configure(assignment.version_mask));
        // The channel's difficulty is valid (checked there); a bad one keeps the ceiling.
        let _ = self
            .vardiff
            .handle_upstream_difficulty(assignment.upstream_difficulty);
        // A connection closed while the driver routed it stays closing; one that
        // authorized while its answer waited is ready at once.
        let authorized_early = self.phase() == Phase::Connected && self.worker.is_some();
        if self.phase() == Phase::Connected {
            self.set_phase(if authorized_early {
                Phase::Authorized
            } else {
                Phase::Subscribed
            });
        }
        self.set_subscribing(false);
        self.route = Some(route);
        self.slot = assignment.slot;
        out.push(Output::reply(
            id,
            Reply::Subscribed(SubscribeAnswer {
                subscription: miner,
                extranonce1: assignment.extranonce1,
                extranonce2_size: assignment.extranonce2_size,
            }),
        ));
        if let Some(m) = self.on_upstream_mask(assignment.version_mask) {
            out.push(m);
        }
        if authorized_early {
            out.push(Output::SendCurrentJob);
        }
        out
    }

    /// Whether a `mining.subscribe` was taken and waits for [`Session::on_subscribed`].
    pub fn subscribing(&self) -> bool {
        self.subscribing_flag()
    }

    /// No channel could take the miner: the subscribe's error reply; the miner may try
    /// again (workers it authorized meanwhile are forgotten).
    pub fn subscribe_refused(&mut self, id: &Id) -> Output {
        self.set_subscribing(false);
        self.worker = None;
        if let Some(c) = self.cold_mut() {
            c.more_workers.clear();
            c.subscribe = None;
        }
        self.drop_empty_cold();
        Output::error(id, Refusal::ProxyFull)
    }

    /// `mining.authorize`: the worker name rules ([`check_worker_name`]), the password,
    /// at most [`MAX_WORKERS_PER_CONNECTION`] workers. Answered `true`; the first worker
    /// makes the session [`Phase::Authorized`] and asks for the current job
    /// ([`Output::SendCurrentJob`]). Authorizing a worker again is answered `true`. While
    /// the subscribe's answer waits ([`Session::subscribing`]) the worker is taken and
    /// answered `true`; the session becomes authorized with its subscribe answer.
    pub fn authorize(
        &mut self,
        id: &Id,
        request: &Authorize,
        rules: &AuthorizeRules<'_>,
    ) -> Vec<Output> {
        match self.check_authorize(request, rules) {
            Err(e) => vec![Output::error(id, e)],
            Ok(()) => {
                // Room for the job's request too: one allocation.
                let mut out = Vec::with_capacity(2);
                out.push(Output::reply(id, Reply::True));
                if self.phase() == Phase::Subscribed {
                    self.set_phase(Phase::Authorized);
                    out.push(Output::SendCurrentJob);
                }
                out
            }
        }
    }

    fn check_authorize(
        &mut self,
        request: &Authorize,
        rules: &AuthorizeRules<'_>,
    ) -> Result<(), Refusal> {
        match self.phase() {
            Phase::Connected if !self.subscribing_flag() => return Err(Refusal::NotSubscribed),
            Phase::Closing => return Err(Refusal::Unauthorized),
            Phase::Connected | Phase::Subscribed | Phase::Authorized => {}
        }
        check_worker_name(&request.username)?;
        if let Some(pw) = rules.access_password.filter(|p| !p.is_empty()) {
            if request.password.as_deref() != Some(pw) {
                return Err(Refusal::WrongPassword);
            }
        }
        if self.has_worker(&request.username) {
            return Ok(());
        }
        if self.workers().count() >= MAX_WORKERS_PER_CONNECTION {
            return Err(Refusal::TooManyWorkers);
        }
        self.add_worker(WorkerName::from(request.username.as_str()));
        Ok(())
    }

    /// The difficulties the miner's shares are checked at.
    pub fn share_difficulty(&self) -> ShareDifficulty {
        // Before the first job: the vardiff's, alone.
        let t = self.told().unwrap_or(Told {
            current: self.vardiff.difficulty(),
            since_job: 0,
            last_job: 0,
        });
        ShareDifficulty {
            current: t.current,
            since_job: t.since_job,
            before: self.before(t.current),
        }
    }

    /// A `mining.submit` of miner `miner` (the id it was subscribed with,
    /// [`Session::on_subscribed`]): the session's checks, then the share as the channel
    /// checks it ([`super::Channel::check_share`]).
    ///
    /// # Errors
    /// [`Refusal::NotSubscribed`] before subscribing, [`Refusal::Unauthorized`] for a
    /// worker this connection did not authorize, [`Refusal::JobNotFound`] once the session
    /// is closing: a miner told to reconnect (its upstream's extranonce changed under it,
    /// [`Session::on_extranonce_change`]) mines on a coinbase no upstream job has any more,
    /// and is answered stale while it waits for the answers of its shares in flight.
    pub fn submit<'a>(&self, miner: MinerId, submit: &'a Submit) -> Result<ShareIn<'a>, Refusal> {
        match self.phase() {
            Phase::Connected => return Err(Refusal::NotSubscribed),
            Phase::Subscribed => return Err(Refusal::Unauthorized),
            Phase::Closing => return Err(Refusal::JobNotFound),
            Phase::Authorized => {}
        }
        if !self.has_worker(&submit.worker) {
            return Err(Refusal::Unauthorized);
        }
        Ok(ShareIn {
            miner,
            slot: self.slot,
            submit,
            version_mask: self.version_mask,
            difficulty: self.share_difficulty(),
        })
    }

    /// A share of this miner passed the proxy's checks ([`super::Checked`], local or
    /// forwarded) at `difficulty` (the miner's, [`super::Accepted::difficulty`]) at
    /// `now_ms`: fed to vardiff (a retarget reaches the miner with its next job).
    pub fn on_valid_share(&mut self, difficulty: f64, now_ms: u64) {
        self.vardiff.handle_share(now_ms, difficulty);
    }

    /// Counts the one verdict a share got (a local `true`, the upstream's answer, or a
    /// refusal) for the invalid-share rule; a refusal that is no fault of the miner's
    /// ([`Refusal::counts_as_invalid`]) is not counted. The tally after it.
    pub fn count_verdict(&mut self, verdict: Result<(), &Refusal>) -> ShareTally {
        match verdict {
            Ok(()) => self.tally.count(true),
            Err(r) if r.counts_as_invalid() => self.tally.count(false),
            Err(_) => {}
        }
        self.tally
    }

    /// When [`Session::poll`] should run next (vardiff's window end), in the caller's
    /// milliseconds.
    pub fn next_poll(&self) -> u64 {
        self.vardiff.next_poll_ms()
    }

    /// Lets vardiff retarget at `now_ms` without a new share (a miner finding none gets an
    /// easier difficulty); the change reaches the miner with its next job. True when the
    /// difficulty changed.
    pub fn poll(&mut self, now_ms: u64) -> bool {
        self.vardiff.poll(now_ms).is_some()
    }

    /// A job `seq` from the upstream at `upstream_difficulty` for this miner: skip it
    /// unless authorized, or when it is older than a job the miner has had (the driver read
    /// it before a fan-out of a newer one overtook it: the miner keeps the newer); else
    /// send it, after `mining.set_difficulty` when the miner's difficulty (vardiff, clamped
    /// at `upstream_difficulty`) is not what it was last told.
    ///
    /// The driver may also resend the current job (the same `seq`) to deliver a
    /// [`Session::pending_difficulty`] sooner: shares of a job resent at a new difficulty
    /// are judged at the lower of the two, since the miner may have found them before.
    pub fn on_job(&mut self, seq: JobSeq, upstream_difficulty: f64) -> JobFor {
        if self.phase() != Phase::Authorized || self.told().is_some_and(|t| seq < t.last_job) {
            return JobFor::Skip;
        }
        let _ = self.vardiff.handle_upstream_difficulty(upstream_difficulty);
        let d = self.vardiff.difficulty();
        match self.told() {
            Some(t) if t.current == d => {
                self.told.last_job = t.last_job.max(seq);
                JobFor::Send { difficulty: None }
            }
            told => {
                let (before, last_job) = told.map_or((d, 0), |t| (t.current, t.last_job));
                // A job the miner has had already keeps the old difficulty in play.
                let since_job = if seq <= last_job {
                    seq.saturating_add(1)
                } else {
                    seq
                };
                self.told = Told {
                    current: d,
                    since_job,
                    last_job: last_job.max(seq),
                };
                self.set_before(before, d);
                JobFor::Send {
                    difficulty: Some(d),
                }
            }
        }
    }

    /// The difficulty vardiff (or a suggestion, or the upstream) set that the miner has
    /// not been told yet: it goes with the next job ([`Session::on_job`]).
    pub fn pending_difficulty(&self) -> Option<f64> {
        let d = self.vardiff.difficulty();
        match self.told() {
            Some(t) if t.current == d => None,
            None if self.phase() != Phase::Authorized => None,
            _ => Some(d),
        }
    }

    /// The miner's answer to a `client.get_version` the proxy sent: kept as its user agent
    /// when `mining.subscribe` gave none (at most [`MAX_USER_AGENT_LEN`] bytes).
    pub fn on_version_answer(&mut self, version: &str) {
        if self.agent().is_none() {
            self.cold().agent =
                Some(crate::cut_at_char_boundary(version, MAX_USER_AGENT_LEN).into());
        }
    }

    /// The upstream's version mask is now `upstream_mask`: the answer to a waiting
    /// `mining.configure` ([`Session::configure_later`]) with the miner's mask AND it;
    /// else a `mining.set_version_mask` when the miner negotiated rolling and its mask
    /// changes (the miner's asked mask AND the upstream's).
    pub fn on_upstream_mask(&mut self, upstream_mask: u32) -> Option<Output> {
        if self.configure_waits() {
            return self.answer_waiting_configure(upstream_mask);
        }
        let asked = self.requested_mask;
        if asked == 0 {
            return None;
        }
        let mask = asked & upstream_mask;
        if mask == self.version_mask {
            return None;
        }
        self.version_mask = mask;
        Some(Output::SetVersionMask(mask))
    }

    /// The upstream's extranonce changed ([`super::Channel::on_set_extranonce`]): with a
    /// `new` extranonce and a miner that subscribed to changes, `mining.set_extranonce`;
    /// with a `new` one and a miner that has not sent `mining.subscribe` yet (on the channel
    /// by its `mining.configure`), nothing: its subscribe answer will carry it; otherwise
    /// `client.reconnect` and the session closes (the driver takes the miner off its
    /// channel when it goes).
    pub fn on_extranonce_change(&mut self, new: Option<NewExtranonce>) -> Option<Output> {
        match new {
            Some(_) if self.phase() == Phase::Connected && !self.subscribing_flag() => None,
            Some(n) if self.extranonce_subscribed() && self.phase() != Phase::Closing => {
                Some(Output::SetExtranonce(n))
            }
            _ => {
                self.set_phase(Phase::Closing);
                Some(Output::Reconnect)
            }
        }
    }

    /// The connection is closing.
    pub fn close(&mut self) {
        self.set_phase(Phase::Closing);
    }
}

#[cfg(test)]
mod tests {
    use stratum_proto::sv1::{Authorize, Subscribe};
    use stratum_proto::Id;

    use super::*;

    fn authorize(s: &mut Session<()>, name: &str) -> Vec<Output> {
        let request = Authorize {
            username: name.into(),
            password: None,
        };
        s.authorize(&Id::from(9u64), &request, &AuthorizeRules::default())
    }

    #[test]
    fn the_cold_box_lives_only_while_something_is_in_it() {
        let mut s: Session<()> = Session::new(VardiffConfig::default(), 0).unwrap();
        assert!(s.extra.is_none(), "a new connection has none");
        let subscribe = Subscribe {
            user_agent: Some("bitaxe/2.4".into()),
            ..Subscribe::default()
        };
        s.subscribe(&subscribe).unwrap();
        s.park_subscribe(Id::from(1u64));
        assert!(s.cold_ref().is_some());
        // Pipelined: authorized while the subscribe waits.
        assert_eq!(
            authorize(&mut s, "addr.rig1")[0],
            Output::reply(&Id::from(9u64), Reply::True)
        );
        assert_eq!(s.take_parked_subscribe(), Some(Id::from(1u64)));
        assert_eq!(s.take_parked_subscribe(), None, "once");
        assert!(s.cold_ref().is_some(), "the agent is still there");
        assert_eq!(s.take_agent().as_deref(), Some("bitaxe/2.4"));
        assert!(s.extra.is_none(), "freed once empty: one worker is inline");
        // A second worker lives in the box, after the first.
        authorize(&mut s, "addr.rig2");
        assert!(s.cold_ref().is_some());
        assert_eq!(s.workers().collect::<Vec<_>>(), ["addr.rig1", "addr.rig2"]);
        let refused = s.subscribe_refused(&Id::from(2u64));
        assert_eq!(refused, Output::error(&Id::from(2u64), Refusal::ProxyFull));
        assert_eq!(
            s.workers().count(),
            0,
            "a refused subscribe forgets its workers"
        );
        assert!(s.extra.is_none());
    }

    #[test]
    fn the_difficulty_before_a_change_is_kept_only_from_the_first_change_on() {
        let mut s: Session<()> = Session::new(VardiffConfig::default(), 0).unwrap();
        s.subscribe(&Subscribe::default()).unwrap();
        let assignment = super::super::channel::Assignment {
            slot: 0,
            extranonce1: vec![0; 4],
            extranonce2_size: 8,
            upstream_difficulty: 1024.0,
            version_mask: 0,
        };
        s.on_subscribed(&Id::from(1u64), (), 1, assignment);
        authorize(&mut s, "addr.rig1");
        assert_eq!(
            s.on_job(1, 1024.0),
            JobFor::Send {
                difficulty: Some(1.0)
            }
        );
        assert_eq!(s.on_job(2, 1024.0), JobFor::Send { difficulty: None });
        assert!(s.extra.is_none(), "an idle miner keeps no box");
        let d = s.share_difficulty();
        assert_eq!((d.current, d.before), (1.0, 1.0));
        // A suggestion moves the difficulty: the next job tells it, the old one is kept
        // for the shares of the jobs before.
        s.suggest_difficulty(&Id::from(2u64), 8.0);
        assert_eq!(
            s.on_job(3, 1024.0),
            JobFor::Send {
                difficulty: Some(8.0)
            }
        );
        assert_eq!(s.extra.as_ref().map(|e| e.before), Some(1.0));
        let d = s.share_difficulty();
        assert_eq!((d.current, d.since_job, d.before), (8.0, 3, 1.0));
        assert_eq!(d.for_job(2), 1.0);
        assert_eq!(d.for_job(3), 8.0);
    }

    #[test]
    fn phase_and_flags_share_one_byte_without_mixing() {
        let mut state = State(0);
        assert_eq!(state.phase(), Phase::Connected);
        state.set_flag(State::SUBSCRIBING, true);
        state.set_flag(State::EXTRANONCE_SUBSCRIBED, true);
        for phase in [
            Phase::Subscribed,
            Phase::Authorized,
            Phase::Closing,
            Phase::Connected,
        ] {
            state.set_phase(phase);
            assert_eq!(state.phase(), phase);
            assert!(state.flag(State::SUBSCRIBING) && state.flag(State::EXTRANONCE_SUBSCRIBED));
        }
        state.set_flag(State::SUBSCRIBING, false);
        assert!(!state.flag(State::SUBSCRIBING));
        assert!(state.flag(State::EXTRANONCE_SUBSCRIBED));
        assert_eq!(state.phase(), Phase::Connected);
    }
}
