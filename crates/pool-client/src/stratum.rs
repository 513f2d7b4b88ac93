//! A stratum pool connection: one session of the failover loop (RFC §10.1).
//!
//! Connect over TCP, send `login` with the pool entry's user, pass, rig-id and algo, report
//! the login result's job and every `job` notification, forward submits under fresh request
//! ids and match the pool's answers back to the caller's sequence numbers, fail submits the
//! pool leaves unanswered past the reply timeout, and send `keepalived` when the pool lists
//! the keepalive extension (or the entry asks for it).
//!
//! A session ends, and the failover loop logs in again from the primary, when:
//! - the pool is silent: no valid line at all for the reply timeout (a garbage line does not
//!   count) while a request (submit or `keepalived`) has waited at least half of it. A pool
//!   quiet for half the reply timeout and asked nothing gets a `keepalived` probe, so a
//!   silent pool is found within the reply timeout even when no share flows. This
//!   counts as a failed attempt at the pool: the loop goes on to the next attempt (after
//!   `retry-pause`) or the next pool, not back to the primary;
//! - the pool answers an error that ends the session ([`crate::is_session_ending`]:
//!   `Unauthenticated`, a ban); the share that got it is answered with it;
//! - the connection closes or fails, or the login is not answered within the connect timeout.
//!
//! A job whose blob, target or id is bad ([`Job::validate`]) is refused with a WARN line and
//! never reported.
//!
//! Over plain TCP the logged-in session attaches the direct submit path (module `direct`):
//! submits are written to the socket by the submitting thread and this task reads, flushes
//! what the socket did not take, and answers. Lines are read through `lines::PoolLines` either
//! way (no read buffer while no partial line waits; tokio already skips the extra `EAGAIN` read
//! after a short read). Over TLS every submit goes through the upstream's queue and this task
//! writes it.
//!
//! Memory: in simple mode every miner has an upstream of its own, so what a logged-in session
//! holds counts per miner. The connect-and-login future and the TLS and plain-TCP loops are
//! boxed apart: a logged-in plain-TCP session holds only its own loop's state.
//!
//! Hand-over (config reload, see `failover`): a session told to hand over stops taking
//! submits and returns its connection as a `Draining`; `drain` then waits for the
//! answers to the submits still pending (up to the reply timeout) and closes it.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use stratum_proto::cryptonote::{
    encode_pool_login, is_status_ok, parse_pool_line, parse_pool_message, PoolLine,
    PoolLoginResult, PoolMessage, RpcError,
};
use stratum_proto::Job;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use crate::direct::{Flushed, Ledger, Wire};
use crate::rare::{Rare, Wakes};
use crate::tls::{Opened, PoolWriter};
use crate::{
    is_session_ending, Command, FailoverOptions, PoolConfig, SessionCtx, SessionEnd, ShareError,
    UpstreamListener,
};

const LOGIN_ID: u64 = 1;

fn report_job(ctx: &SessionCtx<'_>, job: Job, session: u64) {
    match job.validate() {
        Ok(()) => ctx.listener.on_job(job, session),
        Err(e) => tracing::warn!(pool = %ctx.pool.url, "refusing invalid job: {e}"),
    }
}

/// The pool's lines.
type Lines = crate::lines::PoolLines;

/// A pool connection that is logged in, not yet announced (see [`run_connected`]).
pub(crate) struct Connected {
    addr: String,
    login: PoolLoginResult,
    link: Link,
}

enum Link {
    Tcp(Lines, OwnedWriteHalf),
    Tls(Lines, BufWriter<PoolWriter>),
}

/// Connects to `pool` and logs in, within the connect timeout for each of the two steps.
pub(crate) async fn connect(
    pool: &PoolConfig,
    options: &FailoverOptions,
    cancel: &CancellationToken,
) -> Result<Connected, SessionEnd> {
    let addr = pool.host_port().to_string();
    let algo: Vec<String> = pool.algo.iter().cloned().collect();
    let login = encode_pool_login(
        LOGIN_ID,
        &pool.user,
        &pool.pass,
        &options.agent,
        pool.rig_id.as_deref(),
        &algo,
    );
    match crate::tls::open(pool, options, cancel, &addr).await? {
        Opened::Tcp(rd, mut wr) => {
            if let Err(e) = wr.write_all(&login).await {
                return Err(SessionEnd::NeverConnected(format!("{addr}: {e}")));
            }
            let mut lines = Lines::new(Box::new(rd));
            let login = wait_login(options, cancel, &addr, &mut lines).await?;
            Ok(Connected {
                addr,
                login,
                link: Link::Tcp(lines, wr),
            })
        }
        Opened::Tls(rd, wr) => {
            let mut wr = BufWriter::new(wr);
            if let Err(e) = write_line(&mut wr, &login).await {
                return Err(SessionEnd::NeverConnected(format!("{addr}: {e}")));
            }
            let mut lines = Lines::new(rd);
            let login = wait_login(options, cancel, &addr, &mut lines).await?;
            Ok(Connected {
                addr,
                login,
                link: Link::Tls(lines, wr),
            })
        }
    }
}

/// Runs one connection to a stratum pool until it ends.
pub(crate) async fn run_session(ctx: &mut SessionCtx<'_>) -> SessionEnd {
    // Boxed apart: the connect state is freed once logged in, and only the session's own
    // (boxed) loop is held while it runs.
    let session = match Box::pin(connect(ctx.pool, ctx.options, ctx.cancel)).await {
        Ok(connected) => run_connected(ctx, connected),
        Err(end) => return end,
    };
    session.await
}

/// The loop of a logged-in connection (from [`connect`]), boxed: it runs until the
/// connection ends or hands over. Each transport's loop is boxed on its own, so a plain-TCP
/// session does not carry room for the TLS loop's state.
pub(crate) fn run_connected<'a>(
    ctx: &'a mut SessionCtx<'_>,
    c: Connected,
) -> Pin<Box<dyn Future<Output = SessionEnd> + Send + 'a>> {
    let Connected { addr, login, link } = c;
    match link {
        Link::Tcp(lines, wr) => Box::pin(run_tcp(ctx, addr, login, lines, Arc::new(wr))),
        Link::Tls(lines, wr) => Box::pin(run_buffered(ctx, addr, login, lines, wr)),
    }
}

/// Waits for the answer to the login request.
async fn wait_login(
    options: &FailoverOptions,
    cancel: &CancellationToken,
    addr: &str,
    lines: &mut Lines,
) -> Result<PoolLoginResult, SessionEnd> {
    let deadline = Instant::now() + options.connect_timeout;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Err(SessionEnd::Cancelled),
            () = tokio::time::sleep_until(deadline) => {
                return Err(SessionEnd::NeverConnected(format!("{addr}: no login reply")));
            }
            next = lines.next() => next,
        };
        let line = match next {
            Some(Ok(line)) => line,
            Some(Err(e)) => return Err(SessionEnd::NeverConnected(format!("{addr}: {e}"))),
            None => {
                return Err(SessionEnd::NeverConnected(format!(
                    "{addr}: closed during login"
                )))
            }
        };
        match parse_pool_message(&line) {
            Ok(PoolMessage::Response {
                id: LOGIN_ID,
                outcome,
            }) => {
                return match outcome {
                    Ok(v) => PoolLoginResult::from_value(v).ok_or_else(|| {
                        SessionEnd::NeverConnected(format!(
                            "{addr}: login result without a session id"
                        ))
                    }),
                    Err(e) => Err(SessionEnd::NeverConnected(format!(
                        "{addr}: login refused: {}",
                        e.message
                    ))),
                }
            }
            Ok(other) => tracing::debug!(pool = %addr, "ignoring before login: {other:?}"),
            Err(e) => tracing::warn!(pool = %addr, "{e}"),
        }
    }
}

/// What a logged-in session runs with, whatever the transport.
struct LoggedIn {
    keepalive: bool,
    /// The upstream session number.
    session: u64,
    ledger: Ledger,
    keepalive_timer: Interval,
    timeout_timer: Interval,
}

/// Marks the session logged in (a new session number, `Active`) and sets up its ledger and
/// timers. The login's job is reported by [`announce`] once submits can be sent, so that a
/// share for that job finds the session ready.
fn logged_in(ctx: &mut SessionCtx<'_>, addr: &str, login: &PoolLoginResult) -> LoggedIn {
    let keepalive =
        ctx.pool.keepalive.forced() || login.extensions.iter().any(|e| e == "keepalive");
    let check_every =
        (ctx.options.reply_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let session = ctx.logged_in();
    tracing::info!(pool = %addr, "logged in to pool");
    let every = ctx.pool.keepalive.interval(ctx.options.keepalive_interval);
    LoggedIn {
        keepalive,
        session,
        ledger: Ledger::new(login.id.clone(), session, LOGIN_ID + 1, Instant::now()),
        keepalive_timer: tokio::time::interval_at(Instant::now() + every, every),
        timeout_timer: tokio::time::interval_at(on_grid(Instant::now(), check_every), check_every),
    }
}

/// The first tick of a session's reply-timeout check: the first multiple of `every` at or
/// after `now` on a grid shared by every session of the process. The checks of all upstreams
/// then fall in the same millisecond and wake the proxy once per `every` together, not once
/// per upstream at the phase of its login (40 upstreams at 10,000 miners: 40 wake-ups a second
/// while idle). A share is still answered at most `every` after its reply timeout.
///
/// The grid starts at the first call; a `now` before it (another runtime's clock, as in
/// tests) extends it backwards, so the first tick is never more than `every` away.
fn on_grid(now: Instant, every: Duration) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| now);
    let step = every.as_nanos().max(1);
    let steps = |d: Duration| d.as_nanos() / step;
    let span = |k: u128| Duration::from_nanos(u64::try_from(k * step).unwrap_or(u64::MAX));
    if now >= origin {
        let ahead = now - origin;
        let k = steps(ahead) + u128::from(ahead.as_nanos() % step != 0);
        origin + span(k)
    } else {
        origin - span(steps(origin - now))
    }
}

/// Reports the login's job.
fn announce(ctx: &SessionCtx<'_>, job: Option<Job>, session: u64) {
    if let Some(job) = job {
        report_job(ctx, job, session);
    }
}

/// What a line from the pool means for the session.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// A valid message: the pool is alive.
    Alive,
    /// Not a message (garbage): does not count as a sign of life.
    Garbage,
    /// An error that ends the session; the reason.
    End(String),
}

/// Handles one line read after login at `read_at`; `answer` finds the submit a response is
/// for.
fn on_line(
    ctx: &SessionCtx<'_>,
    addr: &str,
    session: u64,
    (line, read_at): (&[u8], Instant),
    answer: impl FnOnce(u64) -> Option<u64>,
) -> Heard {
    match parse_pool_line(line) {
        // Every accepted share: read without a `serde_json::Value`.
        Ok(PoolLine::Accepted { id }) => {
            if let Some(seq) = answer(id) {
                ctx.listener.on_result_at(seq, Ok(()), read_at);
            }
        }
        Ok(PoolLine::Message(PoolMessage::Job(job))) => report_job(ctx, job, session),
        Ok(PoolLine::Message(PoolMessage::Response { id, outcome })) => {
            let seq = answer(id);
            let ending = match &outcome {
                Err(e) if is_session_ending(&e.message) => Some(e.message.clone()),
                _ => None,
            };
            if let Some(seq) = seq {
                ctx.listener
                    .on_result_at(seq, share_result(outcome), read_at);
            }
            if let Some(message) = ending {
                tracing::warn!(pool = %addr, "pool ended the session: {message:?}; logging in again");
                return Heard::End(format!("pool said {message:?}"));
            }
        }
        Ok(PoolLine::Message(PoolMessage::Other(method))) => {
            tracing::debug!(pool = %addr, "ignoring notification {method}");
        }
        Err(e) => {
            tracing::warn!(pool = %addr, "{e}");
            return Heard::Garbage;
        }
    }
    Heard::Alive
}

fn share_result(outcome: Result<serde_json::Value, RpcError>) -> Result<(), ShareError> {
    match outcome {
        Ok(v) if is_status_ok(&v) || v.is_null() => Ok(()),
        Ok(v) => Err(ShareError::Rejected(v.to_string())),
        Err(e) => Err(ShareError::Rejected(e.message)),
    }
}

/// The reason a silent pool's session ends with.
fn silent(timeout: Duration) -> SessionEnd {
    SessionEnd::Dropped(format!("pool sent nothing for {timeout:?} while asked"))
}

/// A logged-in session over plain TCP, with the direct submit path attached.
async fn run_tcp(
    ctx: &mut SessionCtx<'_>,
    addr: String,
    login: PoolLoginResult,
    mut lines: Lines,
    tcp: Arc<OwnedWriteHalf>,
) -> SessionEnd {
    let LoggedIn {
        keepalive,
        session,
        ledger,
        mut keepalive_timer,
        mut timeout_timer,
    } = logged_in(ctx, &addr, &login);
    let (direct, listener) = (ctx.direct, ctx.listener);
    let reply_timeout = ctx.options.reply_timeout;
    // From here until `wire` is dropped, submits go straight to the socket.
    let wire = direct.attach(tcp.clone(), ledger, listener);
    announce(ctx, login.job, session);
    // The out-buffer holds bytes and the socket took no more: wait until it is writable.
    let mut flushing = false;
    // The wake-up futures are made once and polled at every turn: one made anew at each turn
    // registers with its `Notify` (a lock, a waker clone) and unregisters when dropped, and
    // this loop turns once per pool answer, that is once per share.
    let (cancel, handover) = (ctx.cancel, ctx.handover);
    // Each is wrapped in a `Rare`, which polls it again only after it woke: polling a
    // `Notified` that is already registered still takes its `Notify`'s lock.
    let (cancelled, handed_over) = (pin!(cancel.cancelled()), pin!(handover.cancelled()));
    let wakes = Wakes::default();
    let (mut cancelled, mut handed_over) =
        (Rare::new(cancelled, &wakes), Rare::new(handed_over, &wakes));
    let woken = pin!(wire.woken());
    let mut woken = Rare::new(woken, &wakes);
    let cmd_wakes = ctx.cmds.wakes();
    let queued = pin!(cmd_wakes.notified());
    let mut queued = Rare::new(queued, &wakes);
    let end = loop {
        let flushed = tokio::select! {
            () = &mut cancelled => break SessionEnd::Cancelled,
            () = &mut handed_over => {
                return match wire.detach() {
                    Some(wire) => SessionEnd::Handover(Box::new(Draining {
                        addr,
                        lines,
                        link: DrainLink::Tcp(wire),
                    })),
                    None => SessionEnd::Ended("detached".into()),
                };
            }
            next = lines.next() => {
                match next {
                    Some(Ok(line)) => {
                        let read_at = Instant::now();
                        // An answer marks the pool heard under the same lock; other lines
                        // (jobs, notifications) take it once for that alone.
                        let mut heard = false;
                        let answer = |id| {
                            heard = true;
                            wire.ledger(|l| {
                                l.heard(read_at);
                                l.answer(id)
                            })
                            .flatten()
                        };
                        match on_line(ctx, &addr, session, (&line, read_at), answer) {
                            Heard::Alive if !heard => {
                                wire.ledger(|l| l.heard(read_at));
                            }
                            Heard::Alive | Heard::Garbage => {}
                            Heard::End(why) => break SessionEnd::Ended(why),
                        }
                    }
                    Some(Err(e)) => break SessionEnd::Ended(e.to_string()),
                    None => break SessionEnd::Ended("pool closed the connection".into()),
                }
                continue;
            }
            () = &mut queued => {
                queued.set(cmd_wakes.notified());
                // Every command queued so far (a wake-up may stand for several).
                let closed = loop {
                    match ctx.cmds.try_recv() {
                        Ok(Command::Submit { seq, share }) => {
                            if let Err(e) = wire.submit(seq, &share) {
                                listener.on_result(seq, Err(e));
                            }
                        }
                        Err(closed) => break closed,
                    }
                };
                if closed {
                    break SessionEnd::Cancelled;
                }
                continue;
            }
            () = &mut woken => {
                woken.set(wire.woken());
                wire.flush()
            }
            writable = tcp.writable(), if flushing => match writable {
                Ok(()) => wire.flush(),
                Err(e) => Flushed::Lost(e.to_string()),
            },
            _ = keepalive_timer.tick(), if keepalive => {
                wire.keepalived();
                continue;
            }
            _ = timeout_timer.tick() => {
                let now = Instant::now();
                // One lock: expiry, then silence and idleness as they stand after it.
                let checked = wire.ledger(|l| {
                    let (expired, silent) = l.expire_or_silent(now, reply_timeout);
                    (expired, silent, l.idle(now, reply_timeout))
                });
                let (expired, silent_pool, idle) = checked.unwrap_or_default();
                for seq in expired {
                    listener.on_result(seq, Err(ShareError::Timeout));
                }
                if silent_pool {
                    break silent(reply_timeout);
                }
                if idle {
                    wire.keepalived();
                }
                continue;
            }
        };
        match flushed {
            Flushed::Done => flushing = false,
            Flushed::More => flushing = true,
            Flushed::Lost(why) => break SessionEnd::Ended(why),
        }
    };
    // Detach: later submits take the queue; every pending submit is failed `Disconnected`.
    drop(wire);
    end
}

/// A logged-in session over TLS: this task writes every line, through a buffered writer.
async fn run_buffered(
    ctx: &mut SessionCtx<'_>,
    addr: String,
    login: PoolLoginResult,
    mut lines: Lines,
    mut wr: BufWriter<PoolWriter>,
) -> SessionEnd {
    let LoggedIn {
        keepalive,
        session,
        mut ledger,
        mut keepalive_timer,
        mut timeout_timer,
    } = logged_in(ctx, &addr, &login);
    let reply_timeout = ctx.options.reply_timeout;
    announce(ctx, login.job, session);
    let end = loop {
        tokio::select! {
            () = ctx.cancel.cancelled() => break SessionEnd::Cancelled,
            () = ctx.handover.cancelled() => {
                return SessionEnd::Handover(Box::new(Draining {
                    addr,
                    lines,
                    link: DrainLink::Tls(ledger, wr),
                }));
            }
            next = lines.next() => match next {
                Some(Ok(line)) => {
                    let read_at = Instant::now();
                    match on_line(ctx, &addr, session, (&line, read_at), |id| ledger.answer(id)) {
                        Heard::Alive => ledger.heard(read_at),
                        Heard::Garbage => {}
                        Heard::End(why) => break SessionEnd::Ended(why),
                    }
                }
                Some(Err(e)) => break SessionEnd::Ended(e.to_string()),
                None => break SessionEnd::Ended("pool closed the connection".into()),
            },
            cmd = ctx.cmds.recv() => {
                let Some(Command::Submit { seq, share }) = cmd else {
                    break SessionEnd::Cancelled;
                };
                match ledger.submit(seq, &share, Instant::now()) {
                    Ok(line) => {
                        if let Err(e) = write_line(&mut wr, &line).await {
                            break SessionEnd::Ended(e.to_string());
                        }
                    }
                    Err(e) => ctx.listener.on_result(seq, Err(e)),
                }
            }
            _ = keepalive_timer.tick(), if keepalive => {
                if let Err(e) = write_line(&mut wr, &ledger.keepalived(Instant::now())).await {
                    break SessionEnd::Ended(e.to_string());
                }
            }
            _ = timeout_timer.tick() => {
                let now = Instant::now();
                let (expired, silent_pool) = ledger.expire_or_silent(now, reply_timeout);
                for seq in expired {
                    ctx.listener.on_result(seq, Err(ShareError::Timeout));
                }
                if silent_pool {
                    break silent(reply_timeout);
                }
                if ledger.idle(now, reply_timeout) {
                    if let Err(e) = write_line(&mut wr, &ledger.keepalived(now)).await {
                        break SessionEnd::Ended(e.to_string());
                    }
                }
            }
        }
    };
    for seq in ledger.drain() {
        ctx.listener.on_result(seq, Err(ShareError::Disconnected));
    }
    let _ = wr.shutdown().await;
    end
}

/// A session's connection after a hand-over: no new submits, only answers awaited.
pub(crate) struct Draining {
    addr: String,
    lines: Lines,
    link: DrainLink,
}

enum DrainLink {
    /// The detached wire of a plain-TCP session (its out-buffer may still hold lines).
    Tcp(Wire),
    /// The ledger and writer of a TLS session.
    Tls(Ledger, BufWriter<PoolWriter>),
}

fn ledger(link: &mut DrainLink) -> &mut Ledger {
    match link {
        DrainLink::Tcp(wire) => wire.ledger(),
        DrainLink::Tls(ledger, _) => ledger,
    }
}

impl std::fmt::Debug for Draining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Draining")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Drains a handed-over connection: matches the pool's answers to the submits still pending
/// until none is left, then closes it. What is not answered within `reply_timeout` is
/// answered [`ShareError::Timeout`]; what is pending when the pool closes or `cancel` fires,
/// [`ShareError::Disconnected`]. Jobs from the pool are no longer reported.
pub(crate) async fn drain(
    d: Box<Draining>,
    listener: Arc<dyn UpstreamListener>,
    reply_timeout: Duration,
    cancel: CancellationToken,
) {
    let Draining {
        addr,
        mut lines,
        mut link,
    } = *d;
    let deadline = Instant::now() + reply_timeout;
    let (mut flushing, tcp) = match &mut link {
        DrainLink::Tcp(wire) => (wire.flush_state() == Flushed::More, Some(wire.stream_arc())),
        DrainLink::Tls(_, wr) => {
            let _ = wr.flush().await;
            (false, None)
        }
    };
    let mut timed_out = false;
    while !ledger(&mut link).is_empty() {
        let writable = async {
            match &tcp {
                Some(tcp) => tcp.writable().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
            w = writable, if flushing => {
                flushing = match (&mut link, w) {
                    (DrainLink::Tcp(wire), Ok(())) => wire.flush_state() == Flushed::More,
                    _ => false,
                };
            }
            next = lines.next() => {
                let Some(Ok(line)) = next else { break };
                let (id, verdict) = match parse_pool_line(&line) {
                    Ok(PoolLine::Accepted { id }) => (id, Ok(())),
                    Ok(PoolLine::Message(PoolMessage::Response { id, outcome })) => {
                        (id, share_result(outcome))
                    }
                    _ => continue,
                };
                if let Some(seq) = ledger(&mut link).answer(id) {
                    listener.on_result(seq, verdict);
                }
            }
        }
    }
    let left = ledger(&mut link).drain();
    let why = if timed_out {
        ShareError::Timeout
    } else {
        ShareError::Disconnected
    };
    for seq in left {
        listener.on_result(seq, Err(why.clone()));
    }
    if let DrainLink::Tls(_, mut wr) = link {
        let _ = wr.shutdown().await;
    }
    tracing::info!(pool = %addr, "old pool connection drained and closed");
}

async fn write_line<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut BufWriter<W>,
    line: &[u8],
) -> io::Result<()> {
    wr.write_all(line).await?;
    wr.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_timeout_checks_of_all_sessions_fall_on_one_grid() {
        let every = Duration::from_secs(1);
        let t0 = Instant::now();
        let nows = [
            t0,
            t0 + Duration::from_millis(370),
            t0 + Duration::from_millis(2_450),
            t0 + Duration::from_secs(3),
            t0.checked_sub(Duration::from_millis(5_300)).unwrap_or(t0),
        ];
        let firsts: Vec<Instant> = nows.iter().map(|&n| on_grid(n, every)).collect();
        for (&now, &first) in nows.iter().zip(&firsts) {
            assert!(
                first >= now && first - now <= every,
                "the first check within `every`"
            );
        }
        let a = firsts[0];
        for &x in &firsts[1..] {
            let apart = if x >= a { x - a } else { a - x };
            assert_eq!(apart.as_nanos() % every.as_nanos(), 0, "on the same grid");
        }
    }

    fn job() -> Job {
        Job {
            blob: "00".repeat(76),
            job_id: "j1".into(),
            target: "b88d0600".into(),
            algo: None,
            height: None,
            seed_hash: None,
        }
    }

    #[test]
    fn bad_blobs_targets_and_ids_are_refused() {
        assert_eq!(job().validate(), Ok(()));
        let bad = |f: fn(&mut Job)| {
            let mut j = job();
            f(&mut j);
            j.validate().unwrap_err()
        };
        bad(|j| j.blob = "zz".repeat(76));
        bad(|j| j.blob = "00".repeat(42)); // no room for the nonce at 39..43
        bad(|j| j.target = "00000000".into());
        bad(|j| j.target = "xyz".into());
        bad(|j| j.job_id.clear());
        bad(|j| j.job_id = "a".repeat(stratum_proto::MAX_JOB_ID + 1));
        bad(|j| j.job_id = "j\n1".into());
        let mut longest = job();
        longest.job_id = "a".repeat(stratum_proto::MAX_JOB_ID);
        assert_eq!(longest.validate(), Ok(()));
    }
}

/// Size budgets of a session's futures (see `size_budget` in the crate root).
#[cfg(test)]
mod size_budget {
    use std::sync::atomic::AtomicU8;

    use super::*;
    use crate::direct::Direct;
    use crate::size_budget::Quiet;

    #[tokio::test]
    async fn a_logged_in_session_holds_its_loop_and_not_the_connect_state() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (rd, wr) = stream.into_split();
        let (pool, options) = (PoolConfig::default(), FailoverOptions::default());
        let (_tx, mut rx) = crate::queue::channel(1);
        let direct = Direct::default();
        let (cancel, handover) = (CancellationToken::new(), CancellationToken::new());
        let (mut session, state) = (0, AtomicU8::new(0));
        let mut ctx = SessionCtx {
            pool: &pool,
            index: 0,
            options: &options,
            cmds: &mut rx,
            direct: &direct,
            listener: &Quiet,
            cancel: &cancel,
            handover: &handover,
            session: &mut session,
            state: &state,
        };
        let connect = std::mem::size_of_val(&connect(&pool, &options, &cancel));
        let outer = std::mem::size_of_val(&run_session(&mut ctx));
        let login = PoolLoginResult {
            id: "s".into(),
            job: None,
            extensions: vec![],
            status: None,
        };
        let lines = Lines::new(Box::new(rd));
        let tcp = std::mem::size_of_val(&run_tcp(&mut ctx, "x".into(), login, lines, Arc::new(wr)));
        // The connect future (~1.9 KB) is boxed and freed at login: the session's outer
        // future is a few words, and the plain-TCP loop stays near 1.4 KB (its four `Rare`
        // wake-ups, three words each, are 96 of them: they spare a lock per wake-up at
        // every turn, that is at every share).
        assert!(connect > outer, "connect {connect} B inline in {outer} B");
        assert!(outer <= 64, "run_session is {outer} bytes");
        assert!(tcp <= 1_450, "the plain-TCP loop is {tcp} bytes");
    }
}
