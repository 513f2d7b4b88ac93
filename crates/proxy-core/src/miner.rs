//! One miner connection, for any stratum family: its socket (a [`Conn`] from `conn.rs`,
//! which knows nothing of the protocol) and its family's sans-IO session
//! ([`MinerSession`]), with the route to its upstream kept beside the session.
//!
//! `Miner::drive` is what a dispatcher (`serve.rs`) runs when the socket woke the miner:
//! lines out of the [`Conn`], each handed to its family ([`MinerProtocol::handle_line`],
//! which asks the session what it means and writes the answer: straight to the socket or its
//! bounded outbox), then the outbox flushed. A login is routed through the splitter
//! ([`Miner::route_login`]) and a checked share handed to the miner's mapper, on this same
//! thread. The phase below is advanced only by the session.
//!
//! ```text
//! WaitLogin --login ok--> WaitReady --first job--> Ready --close--> Closing
//!   10 s                   600 s                    600 s without submit/keepalived
//! ```

use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arcstr::ArcStr;
use bytes::Bytes;
use stratum_session::{MinerSession, Refusal, ShareTally, WorkerName};
use tokio::time::Instant;

use crate::config::WorkersMode;
use crate::conn::{Conn, Endpoint, Next, ReadyQueue, READ_CHUNK};
use crate::events::Subject;
use crate::intern::Interner;
use crate::login::LoginInfo;
use crate::splitter::{Downstream, Family};
use crate::workers::{worker_name, WorkerSource, NO_WORKER};
use crate::{lock, Shared};

/// Where a logged-in miner's shares go.
pub(crate) type Route<F> = crate::splitter::Route<F, Arc<Miner<F>>>;

/// The miner side of a stratum family: what a line from a miner means. Implemented beside
/// the family's [`Family`] (`family/cryptonote.rs`); the driver calls it for every complete
/// line, on the dispatcher that read it.
pub(crate) trait MinerProtocol: Family {
    /// Handles one line `miner` sent: parses it, steps the miner's session, routes a login
    /// ([`Miner::route_login`]), hands a checked share to the miner's mapper, and writes the
    /// answer. Never panics on bad input: a bad line gets an error reply. `now` is the one
    /// clock read for the line (tokio's clock): CryptoNote times a share's send with it and
    /// reads no clock of its own on that path; Stratum V1 does not use it yet (its mapper
    /// and pool client read their own).
    fn handle_line(
        miner: &Arc<Miner<Self>>,
        shared: &Shared<Self>,
        line: &[u8],
        now: Instant,
    ) -> Flow;

    /// The line a connection the proxy has no room for is told before it is closed (no
    /// request id: it was never read).
    fn full_line() -> Vec<u8>;

    /// The miner's difficulty as monitoring shows it (the API's `diff`): the session's
    /// integer difficulty unless the family has fractional ones.
    fn difficulty(session: &Self::Session) -> MinerDifficulty {
        MinerDifficulty::Integer(session.diff())
    }
}

/// A miner's difficulty as the API shows it (`/1/miners` `diff`): serialized as a bare JSON
/// number, an integer for CryptoNote (as the RFC's API), a float for Stratum V1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum MinerDifficulty {
    /// CryptoNote's difficulty (expected hashes per share); 0 before the first job.
    Integer(u64),
    /// A Stratum V1 difficulty in Bitcoin difficulty-1 units (2^32 expected hashes per unit),
    /// fractions kept (`0.5`); 0.0 before the first job.
    Fractional(f64),
}

/// A miner must log in within this time (RFC §6); a TLS handshake counts against it.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A logged-in miner that sends nothing (submit, keepalived) for this long is closed (RFC §6).
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines handled per drive before other miners get a turn (a miner sending without pause).
const LINES_PER_DRIVE: usize = 64;

/// Identifier of a miner connection, unique in the process, never 0.
pub type MinerId = u64;

/// Lifecycle state (RFC §6); the numbers are the API's `state` values. Advanced only by
/// the miner's session.
pub use stratum_session::Phase as MinerPhase;

pub(crate) struct MinerState<F: Family> {
    /// The protocol state (phase, session id, difficulties, share tally).
    pub(crate) session: F::Session,
    /// Where its shares go, once routed.
    pub(crate) route: Option<Route<F>>,
    pub(crate) login: Option<Box<LoginInfo>>,
}

impl<F: Family> MinerState<F> {
    /// Keeps what the miner sent at login, its strings shared through the proxy's interner.
    pub(crate) fn set_login(
        &mut self,
        strings: &Interner,
        user: &str,
        pass: &str,
        agent: &str,
        rig_id: Option<String>,
    ) {
        self.login = Some(Box::new(LoginInfo {
            user: strings.name(user),
            pass: strings.get(pass),
            agent: strings.get(agent),
            rig_id: rig_id.filter(|r| !r.is_empty()).map(ArcStr::from),
        }));
    }
}

/// One miner connection: its protocol state and its socket, shared between the dispatcher
/// that serves the socket and the splitter (see `conn.rs`). The miner is also the waker of
/// its socket: readiness queues it for its dispatcher.
pub(crate) struct Miner<F: Family> {
    /// Process-unique id.
    pub(crate) id: MinerId,
    /// Remote address.
    pub(crate) peer: SocketAddr,
    pub(crate) state: Mutex<MinerState<F>>,
    pub(crate) conn: Mutex<Conn>,
    /// In its dispatcher's ready queue (or about to be).
    pub(crate) queued: AtomicBool,
    /// Milliseconds on the proxy clock after which the miner is closed (login or inactivity
    /// timeout).
    pub(crate) deadline: AtomicU64,
    pub(crate) ready: Arc<ReadyQueue<Miner<F>>>,
    /// The worker record this miner is counted in: generation << 32 | index, or
    /// `workers::NO_WORKER` (kept by `workers.rs`).
    pub(crate) worker: AtomicU64,
    /// Bytes received from the miner.
    pub(crate) rx: AtomicU64,
    /// Bytes sent to the miner.
    pub(crate) tx: AtomicU64,
}

/// What the connection task should do after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep going; the inactivity clock is not reset.
    Continue,
    /// The miner showed life (login, submit, keepalived): reset the inactivity clock.
    Active,
}

impl<F: Family> Miner<F> {
    /// A miner on `conn`, woken through `ready`.
    pub(crate) fn new(
        id: MinerId,
        peer: SocketAddr,
        conn: Conn,
        ready: Arc<ReadyQueue<Miner<F>>>,
    ) -> Self {
        Self {
            id,
            peer,
            state: Mutex::new(MinerState {
                session: F::Session::new(),
                route: None,
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

    pub(crate) fn state(&self) -> MutexGuard<'_, MinerState<F>> {
        lock(&self.state)
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> MinerPhase {
        self.state().session.phase()
    }

    /// Routes a miner whose session just accepted its login to an upstream and reports the
    /// login: [`Miner::route`], then [`Miner::report_login`] unless it closed meanwhile.
    ///
    /// # Errors
    /// [`Refusal::ProxyFull`] when no upstream can take the miner (see [`Miner::route`]).
    pub(crate) fn route_login(self: &Arc<Self>, shared: &Shared<F>) -> Result<(), Refusal> {
        if self.route(shared)? {
            self.report_login(shared);
        }
        Ok(())
    }

    /// Routes the miner to an upstream with room (the splitter's `on_login`); the upstream's
    /// current job, if any, is delivered at once. `Ok(false)` when the miner closed
    /// meanwhile (its slot is given back). On [`Refusal::ProxyFull`] its session goes back to
    /// waiting for a login and its login strings are dropped; the family answers the
    /// refusal. (CryptoNote routes at `login`; a family whose miners need their slot before
    /// they name their worker, as Stratum V1's `mining.subscribe` does, routes first and
    /// reports the login later.)
    ///
    /// # Errors
    /// [`Refusal::ProxyFull`] when no upstream can take the miner.
    pub(crate) fn route(self: &Arc<Self>, shared: &Shared<F>) -> Result<bool, Refusal> {
        match shared.splitter.on_login(self) {
            Ok(()) => {
                if self.conn().is_closed() {
                    // Closed meanwhile (a timeout on another thread): its close may have run
                    // before the miner took its slot; give the slot back (taking the route
                    // makes this idempotent).
                    shared.splitter.on_close(self);
                    return Ok(false);
                }
                Ok(true)
            }
            Err(refusal) => {
                let mut st = self.state();
                st.session.login_refused();
                st.login = None;
                Err(refusal)
            }
        }
    }

    /// Reports the miner's login (worker record, access log), once its login strings are
    /// kept ([`MinerState::set_login`]).
    pub(crate) fn report_login(self: &Arc<Self>, shared: &Shared<F>) {
        shared.events.login(self);
    }
}

impl<F: Family> Wake for Miner<F> {
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

impl<F: Family> Endpoint for Miner<F> {
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
impl<F: MinerProtocol> Miner<F> {
    /// Serves the socket: handles every complete line that arrived, writes what waits, and
    /// registers for the next readiness. Called by the dispatcher when the miner was woken;
    /// `scratch` is the dispatcher's read buffer (see [`Conn::next_line`]), kept from one
    /// miner to the next so that it is not cleared at every share.
    pub(crate) fn drive(self: &Arc<Self>, shared: &Shared<F>, scratch: &mut [u8; READ_CHUNK]) {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut more = true;
        for _ in 0..LINES_PER_DRIVE {
            let next = self.conn().next_line(&**self, &mut cx, scratch);
            // One clock read per line: the family's timing and the inactivity deadline.
            let handle = |line: &[u8]| {
                let now = Instant::now();
                (F::handle_line(self, shared, line, now), now)
            };
            let (flow, now) = match next {
                Next::Line(line) => handle(&line),
                Next::Short(len) => handle(&scratch[..len]),
                Next::Idle => {
                    more = false;
                    break;
                }
                Next::Close(why) => {
                    // Answers held for this drive's one write go out before the close.
                    if self.conn().holds_output() {
                        let _ = self.conn().flush(self);
                    }
                    return self.close(shared, why);
                }
            };
            if flow == Flow::Active && self.phase() != MinerPhase::WaitLogin {
                self.set_deadline(shared, now + INACTIVITY_TIMEOUT);
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
}

/// The socket side of the miner: what `serve.rs` (dispatch, tick, stop) and the splitter
/// call, executed on [`Conn`] under the socket lock, never under the protocol lock.
impl<F: Family> Miner<F> {
    /// The socket, locked.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Conn> {
        lock(&self.conn)
    }

    /// Queues bytes for the miner and writes them at once when nothing waits before them.
    /// Returns false when the miner is closed or its outbox just overflowed (then it is
    /// closed by its dispatcher).
    pub(crate) fn send(self: &Arc<Self>, chunks: &[Bytes]) -> bool {
        self.send_parts(&[], chunks)
    }

    /// Queues `head` then `chunks` (see [`Miner::send`]), in one write when nothing waits
    /// before them; `head` is copied only when the socket does not take it at once.
    pub(crate) fn send_parts(self: &Arc<Self>, head: &[u8], chunks: &[Bytes]) -> bool {
        let mut c = self.conn();
        if !c.is_usable() {
            return false;
        }
        match c.push_parts(head, chunks, self) {
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
    pub(crate) fn set_deadline(&self, shared: &Shared<F>, at: Instant) {
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
    pub(crate) fn close(self: &Arc<Self>, shared: &Shared<F>, why: &str) {
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

impl<F: Family> Miner<F> {
    /// Shuts the socket and drops what waits in the buffers; false when it was shut already.
    /// Dropping the socket deregisters it, which also drops the wakers it held (each one a
    /// reference to this miner).
    pub(crate) fn shut(&self) -> bool {
        // Taken out under the socket lock, dropped after it.
        let io = self.conn().shut();
        io.is_some()
    }
}

impl<F: Family> WorkerSource for Arc<Miner<F>> {
    fn ip(&self) -> IpAddr {
        self.peer.ip()
    }

    fn worker_slot(&self) -> &AtomicU64 {
        &self.worker
    }

    fn worker_name(&self, mode: WorkersMode) -> Option<(WorkerName, bool)> {
        let st = self.state();
        let name = worker_name(mode, st.login.as_deref()?, self.peer.ip())?;
        let live = matches!(
            st.session.phase(),
            MinerPhase::WaitReady | MinerPhase::Ready
        );
        Some((name, live))
    }
}

impl<F: Family> Subject for Arc<Miner<F>> {
    fn id(&self) -> MinerId {
        self.id
    }

    fn user_agent(&self) -> Option<(WorkerName, ArcStr)> {
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

impl<F: Family> Downstream<F> for Arc<Miner<F>> {
    fn with_session<T>(&self, f: impl FnOnce(&mut F::Session, &mut Option<Route<F>>) -> T) -> T {
        let st = &mut *self.state();
        f(&mut st.session, &mut st.route)
    }

    fn send_line(&self, line: Vec<u8>) {
        Miner::send_line(self, line);
    }

    fn send(&self, chunks: &[Bytes]) {
        Miner::send(self, chunks);
    }

    fn send_parts(&self, head: &[u8], chunks: &[Bytes]) {
        Miner::send_parts(self, head, chunks);
    }
}
