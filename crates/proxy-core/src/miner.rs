//! One miner connection: the driver of its sans-IO [`Session`] (go-proxy RFC §6).
//!
//! `Miner::handle_line` takes one line the miner sent, asks the session (phase, session id,
//! login rules, submit fields: `stratum-session`) what it means, and writes the answer to the
//! miner's socket (a [`Conn`] from `conn.rs`, which knows nothing of the protocol: straight to
//! the socket or its bounded outbox). A login is routed through the splitter and a checked
//! share handed to the miner's mapper, on this same thread. The phase below is advanced only
//! by the [`Session`]. `Miner::drive` is what a dispatcher (`serve.rs`) runs when the socket
//! woke the miner: lines out of the [`Conn`], each handled here, then the outbox flushed.
//!
//! ```text
//! WaitLogin --login ok--> WaitReady --first job--> Ready --close--> Closing
//!   10 s                   600 s                    600 s without submit/keepalived
//! ```

use std::net::SocketAddr;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use stratum_proto::cryptonote::{
    encode_error, encode_getjob_ok, encode_status, parse_miner_request, LoginParams, MinerRequest,
    SessionParams, SubmitParams,
};
use stratum_proto::Id;
use stratum_session::{check_submit, JobFor, LoginRules, Refusal, Session};
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::WorkersMode;
use crate::conn::{Conn, Endpoint, Next, ReadyQueue};
use crate::events::Subject;
use crate::login::LoginInfo;
use crate::splitter::{Downstream, SubmittedShare};

/// Where a logged-in miner's shares go.
pub(crate) type Route = crate::splitter::Route<Arc<Miner>>;
use crate::workers::{worker_name, WorkerSource, NO_WORKER};
use crate::{lock, Shared};
use std::net::IpAddr;
use stratum_session::ShareTally;

/// A miner must log in within this time (RFC §6); a TLS handshake counts against it.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A logged-in miner that sends nothing (submit, keepalived) for this long is closed (RFC §6).
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines handled per drive before other miners get a turn (a miner sending without pause).
const LINES_PER_DRIVE: usize = 64;

/// Identifier of a miner connection, unique in the process, never 0.
pub type MinerId = u64;

/// Lifecycle state (RFC §6); the numbers are the API's `state` values. Advanced only by
/// the miner's [`Session`].
pub use stratum_session::Phase as MinerPhase;

pub(crate) struct MinerState {
    /// The protocol state (phase, session id, route, difficulties, share tally).
    pub(crate) session: Session<Route>,
    pub(crate) login: Option<Box<LoginInfo>>,
}

/// One miner connection: its protocol state and its socket, shared between the dispatcher
/// that serves the socket and the splitter (see `conn.rs`). The miner is also the waker of
/// its socket: readiness queues it for its dispatcher.
pub struct Miner {
    /// Process-unique id.
    pub id: MinerId,
    /// Remote address.
    pub peer: SocketAddr,
    pub(crate) state: Mutex<MinerState>,
    pub(crate) conn: Mutex<Conn>,
    /// In its dispatcher's ready queue (or about to be).
    pub(crate) queued: AtomicBool,
    /// Milliseconds on the proxy clock after which the miner is closed (login or inactivity
    /// timeout).
    pub(crate) deadline: AtomicU64,
    pub(crate) ready: Arc<ReadyQueue<Miner>>,
    /// The worker record this miner is counted in: generation << 32 | index, or
    /// `workers::NO_WORKER` (kept by `workers.rs`).
    pub(crate) worker: AtomicU64,
    /// Bytes received from the miner.
    pub rx: AtomicU64,
    /// Bytes sent to the miner.
    pub tx: AtomicU64,
}

/// What the connection task should do after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep going; the inactivity clock is not reset.
    Continue,
    /// The miner showed life (login, submit, keepalived): reset the inactivity clock.
    Active,
}

impl Miner {
    /// A miner on `conn`, woken through `ready`.
    pub(crate) fn new(
        id: MinerId,
        peer: SocketAddr,
        conn: Conn,
        ready: Arc<ReadyQueue<Miner>>,
    ) -> Self {
        Self {
            id,
            peer,
            state: Mutex::new(MinerState {
                session: Session::new(),
                login: None,
            }),
            conn: Mutex::new(conn),
            queued: AtomicBool::new(false),
            deadline: AtomicU64::new(u64::MAX),
            ready,
            worker: AtomicU64::new(NO_WORKER),
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
        }
    }

    /// A miner with no socket and no dispatcher (tests of the bookkeeping around miners).
    #[cfg(test)]
    pub(crate) fn detached(id: MinerId, peer: SocketAddr) -> Self {
        Self::new(id, peer, Conn::detached(), ReadyQueue::detached())
    }

    /// A detached miner logged in with `info` and past its first job (tests).
    #[cfg(test)]
    pub(crate) fn detached_ready(id: MinerId, peer: SocketAddr, info: LoginInfo) -> Self {
        let m = Self::detached(id, peer);
        {
            let mut st = m.state();
            let rules = LoginRules::default();
            let _ = st
                .session
                .login(Uuid::new_v4(), Id::Null, &info.user, "", &rules);
            st.session.on_job(1);
            st.login = Some(Box::new(info));
        }
        m
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, MinerState> {
        lock(&self.state)
    }

    /// The current phase.
    pub fn phase(&self) -> MinerPhase {
        self.state().session.phase()
    }

    fn reply_error(self: &Arc<Self>, id: &Id, refusal: Refusal) {
        self.send_line(encode_error(id, refusal.message()));
    }

    /// Handles one line from the miner (RFC §6.1–6.3).
    pub(crate) fn handle_line(self: &Arc<Self>, shared: &Shared, line: &[u8]) -> Flow {
        match parse_miner_request(line) {
            Err(e) => {
                tracing::debug!(miner = self.id, "bad request: {e}");
                self.send_line(encode_error(e.id(), e.message()));
                Flow::Continue
            }
            Ok((id, MinerRequest::Login(p))) => {
                self.handle_login(shared, id, p);
                Flow::Active
            }
            Ok((id, MinerRequest::Submit(p))) => {
                self.handle_submit(shared, id, p);
                Flow::Active
            }
            Ok((id, MinerRequest::Keepalived(p))) => {
                if self.check_session(&p).is_some() {
                    self.send_line(encode_status(&id, "KEEPALIVED"));
                } else {
                    self.reply_error(&id, Refusal::Unauthenticated);
                }
                Flow::Active
            }
            Ok((id, MinerRequest::GetJob(p))) => {
                match self.check_session(&p) {
                    Some(route) => match route.mapper.job_for(self) {
                        Some(job) => {
                            self.send_line(encode_getjob_ok(&id, &job));
                        }
                        None => self.reply_error(&id, Refusal::NoJobYet),
                    },
                    None => self.reply_error(&id, Refusal::Unauthenticated),
                }
                Flow::Continue
            }
        }
    }

    /// The miner's route when `params.id` is its session id.
    fn check_session(&self, p: &SessionParams) -> Option<Route> {
        self.state().session.route_for(&p.id).cloned()
    }

    fn handle_login(self: &Arc<Self>, shared: &Shared, id: Id, p: LoginParams) {
        let config = shared.config.load();
        let rules = LoginRules {
            access_password: config.access_password(),
            custom_diff: config.custom_diff,
            custom_diff_min: config.custom_diff_min,
        };
        let strings = &shared.strings;
        {
            let mut st = self.state();
            let user = match st
                .session
                .login(Uuid::new_v4(), id.clone(), &p.login, &p.pass, &rules)
            {
                Ok(l) => l.user,
                Err(r) => {
                    drop(st);
                    return self.reply_error(&id, r);
                }
            };
            st.login = Some(Box::new(LoginInfo {
                user: strings.get(user),
                pass: strings.get(&p.pass),
                agent: strings.get(&p.agent),
                rig_id: p.rigid.filter(|r| !r.is_empty()).map(Arc::from),
            }));
        }
        let routed = shared.splitter.on_login(self);
        if routed.is_ok() {
            if self.conn().is_closed() {
                // Closed meanwhile (a timeout on another thread): its close may have run
                // before the miner took its slot; give the slot back (taking the route makes
                // this idempotent).
                shared.splitter.on_close(self);
                return;
            }
            shared.events.login(self);
        }
        if let Err(refusal) = routed {
            let mut st = self.state();
            st.session.login_refused();
            st.login = None;
            drop(st);
            self.reply_error(&id, refusal);
        }
    }

    fn handle_submit(self: &Arc<Self>, shared: &Shared, id: Id, p: SubmitParams) {
        let routed = self
            .state()
            .session
            .submit_route(&p.id)
            .map(|(r, custom_diff)| (r.clone(), custom_diff));
        let (route, custom_diff) = match routed {
            Ok(r) => r,
            Err(r) => return self.reply_error(&id, r),
        };
        // Answered first: the count may cut the miner off (see `Events::invalid`).
        let (nonce, share_diff) = match check_submit(&p.job_id, &p.nonce, &p.result) {
            Ok(f) => (f.nonce, f.share_diff),
            Err(r) => {
                self.reply_error(&id, r);
                shared.events.invalid(self, r);
                return;
            }
        };
        let share = SubmittedShare {
            id,
            params: p,
            nonce,
            share_diff,
            custom_diff,
        };
        route.mapper.submit(self, route.fixed_byte, share);
    }

    /// Answers request `id`: `{"status":"OK"}` or an error with the message.
    pub(crate) fn reply(self: &Arc<Self>, id: &Id, result: Result<(), &str>) {
        match result {
            Ok(()) => self.send_line(encode_status(id, "OK")),
            Err(m) => self.send_line(encode_error(id, m)),
        };
    }
}

impl Wake for Miner {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// Queues the miner for its dispatcher, once until the dispatcher takes it.
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, AcqRel) {
            self.ready.push(self.clone());
        }
    }
}

impl Endpoint for Miner {
    fn rx_bytes(&self) -> &AtomicU64 {
        &self.rx
    }

    fn tx_bytes(&self) -> &AtomicU64 {
        &self.tx
    }

    fn who(&self) -> (u64, SocketAddr) {
        (self.id, self.peer)
    }
}

/// The socket side of the miner: what `serve.rs` (dispatch, tick, stop) and the splitter
/// call, executed on [`Conn`] under the socket lock, never under the protocol lock.
impl Miner {
    /// The socket, locked.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Conn> {
        lock(&self.conn)
    }

    /// Serves the socket: handles every complete line that arrived, writes what waits, and
    /// registers for the next readiness. Called by the dispatcher when the miner was woken.
    pub(crate) fn drive(self: &Arc<Self>, shared: &Shared) {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut more = true;
        for _ in 0..LINES_PER_DRIVE {
            let next = self.conn().next_line(&**self, &mut cx);
            match next {
                Next::Line(line) => {
                    if self.handle_line(shared, &line) == Flow::Active
                        && self.phase() != MinerPhase::WaitLogin
                    {
                        self.set_deadline(shared, Instant::now() + INACTIVITY_TIMEOUT);
                    }
                }
                Next::Idle => {
                    more = false;
                    break;
                }
                Next::Close(why) => return self.close(shared, why),
            }
        }
        if more {
            // A miner sending without pause: come back to it after the others.
            self.wake_by_ref();
        }
        let flushed = self.conn().flush(self);
        if let Err(why) = flushed {
            self.close(shared, why);
        }
    }

    /// Queues bytes for the miner and writes them at once when nothing waits before them.
    /// Returns false when the miner is closed or its outbox just overflowed (then it is
    /// closed by its dispatcher).
    pub(crate) fn send(self: &Arc<Self>, chunks: &[Bytes]) -> bool {
        let mut c = self.conn();
        if !c.is_usable() {
            return false;
        }
        match c.push(chunks, self) {
            Ok(()) => true,
            Err(why) => {
                c.set_failed(why);
                drop(c);
                self.wake_by_ref();
                false
            }
        }
    }

    /// Closes the miner from outside its dispatcher, as a write failure does: marks the
    /// connection failed with `why` and wakes the miner, whose dispatcher closes it (what was
    /// written already has gone out; what waits in the outbox is dropped). False when it is
    /// closed or failed already, so a caller acts once.
    pub(crate) fn fail(self: &Arc<Self>, why: &'static str) -> bool {
        let mut c = self.conn();
        if !c.is_usable() {
            return false;
        }
        c.set_failed(why);
        drop(c);
        self.wake_by_ref();
        true
    }

    /// Queues one line (see [`Miner::send`]).
    pub(crate) fn send_line(self: &Arc<Self>, line: Vec<u8>) -> bool {
        self.send(&[Bytes::from(line)])
    }

    /// True while output waits for the socket.
    pub(crate) fn has_output(&self) -> bool {
        let c = self.conn();
        c.has_output() && !c.is_closed()
    }

    /// Sets the moment after which the tick closes the miner (login or inactivity timeout).
    pub(crate) fn set_deadline(&self, shared: &Shared, at: Instant) {
        let ms = at.saturating_duration_since(shared.clock).as_millis();
        self.deadline
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Relaxed);
    }

    /// The deadline, in milliseconds on the proxy clock (`u64::MAX`: none).
    pub(crate) fn deadline_ms(&self) -> u64 {
        self.deadline.load(Relaxed)
    }

    /// Whether the deadline passed at `now_ms` (milliseconds on the proxy clock).
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.deadline.load(Relaxed)
    }

    /// Closes the connection once: the socket is shut, the miner leaves its upstream and the
    /// registry, and the close is counted and logged. Later calls do nothing.
    pub(crate) fn close(self: &Arc<Self>, shared: &Shared, why: &str) {
        if !self.shut() {
            return;
        }
        tracing::debug!(miner = self.id, peer = %self.peer, "closing: {why}");
        self.state().session.close();
        shared.splitter.on_close(self);
        shared.events.close(self);
        shared.unregister(self);
    }
}

impl Miner {
    /// Shuts the socket and drops what waits in the buffers; false when it was shut already.
    /// Dropping the socket deregisters it, which also drops the wakers it held (each one a
    /// reference to this miner).
    pub(crate) fn shut(&self) -> bool {
        // Taken out under the socket lock, dropped after it.
        let io = self.conn().shut();
        io.is_some()
    }
}

impl WorkerSource for Arc<Miner> {
    fn ip(&self) -> IpAddr {
        self.peer.ip()
    }

    fn worker_slot(&self) -> &AtomicU64 {
        &self.worker
    }

    fn worker_name(&self, mode: WorkersMode) -> Option<(Arc<str>, bool)> {
        let st = self.state();
        let name = worker_name(mode, st.login.as_deref()?, self.peer.ip())?;
        let live = matches!(
            st.session.phase(),
            MinerPhase::WaitReady | MinerPhase::Ready
        );
        Some((name, live))
    }
}

impl Subject for Arc<Miner> {
    fn id(&self) -> MinerId {
        self.id
    }

    fn user_agent(&self) -> Option<(Arc<str>, Arc<str>)> {
        let st = self.state();
        st.login
            .as_deref()
            .map(|l| (l.user.clone(), l.agent.clone()))
    }

    fn traffic(&self) -> (u64, u64) {
        (
            self.rx.load(std::sync::atomic::Ordering::Relaxed),
            self.tx.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn count_share(&self, valid: bool) -> ShareTally {
        self.state().session.count_share(valid)
    }

    fn fail(&self, why: &'static str) -> bool {
        Miner::fail(self, why)
    }
}

impl Downstream for Arc<Miner> {
    fn set_route(&self, route: Route) {
        self.state().session.set_route(route);
    }

    fn take_route(&self) -> Option<Route> {
        self.state().session.take_route()
    }

    fn job_params(&self) -> (Option<u8>, u64) {
        let st = self.state();
        let fixed = st.session.route().and_then(|r| r.fixed_byte);
        (fixed, st.session.custom_diff())
    }

    fn on_job(&self, pool_difficulty: u64) -> JobFor {
        self.state().session.on_job(pool_difficulty)
    }

    fn send_line(&self, line: Vec<u8>) {
        Miner::send_line(self, line);
    }

    fn send(&self, chunks: &[Bytes]) {
        Miner::send(self, chunks);
    }

    fn reply(&self, id: &Id, result: Result<(), &str>) {
        Miner::reply(self, id, result);
    }
}
