//! A stratum pool connection: one session of the failover loop (RFC §10.1).
//!
//! Connect over TCP, send `login` with the pool entry's user, pass, rig-id and algo, report
//! the login result's job and every `job` notification, forward submits under fresh request
//! ids and match the pool's answers back to the caller's sequence numbers, fail submits the
//! pool leaves unanswered past the reply timeout, and send `keepalived` when the pool lists
//! the keepalive extension (or the entry asks for it).
//!
//! Over plain TCP the logged-in session attaches the direct submit path (module `direct`):
//! submits are written to the socket by the submitting thread and this task reads, flushes
//! what the socket did not take, and answers. Lines are read through `FramedRead` either way
//! (tokio already skips the extra `EAGAIN` read after a short read). Over TLS every submit goes through the
//! upstream's queue and this task writes it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use stratum_proto::cryptonote::{
    encode_pool_login, is_status_ok, parse_pool_message, PoolLoginResult, PoolMessage, RpcError,
};
use stratum_proto::{Job, LineCodec};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::{Instant, Interval};
use tokio_util::codec::FramedRead;

use crate::direct::{Flushed, Ledger};
use crate::tls::{Opened, PoolReader, PoolWriter};
use crate::{Command, SessionCtx, SessionEnd, ShareError};

const LOGIN_ID: u64 = 1;

fn report_job(ctx: &SessionCtx<'_>, job: Job, session: u64) {
    match job.validate() {
        Ok(()) => ctx.listener.on_job(job, session),
        Err(e) => tracing::warn!(pool = %ctx.pool.url, "dropping invalid job: {e}"),
    }
}

/// The pool's lines.
type Lines = FramedRead<PoolReader, LineCodec>;

/// Runs one connection to a stratum pool until it ends.
pub(crate) async fn run_session(ctx: &mut SessionCtx<'_>) -> SessionEnd {
    let addr = ctx.pool.host_port().to_string();
    let algo: Vec<String> = ctx.pool.algo.iter().cloned().collect();
    let login = encode_pool_login(
        LOGIN_ID,
        &ctx.pool.user,
        &ctx.pool.pass,
        &ctx.options.agent,
        ctx.pool.rig_id.as_deref(),
        &algo,
    );
    match crate::tls::open(ctx, &addr).await {
        Err(end) => end,
        Ok(Opened::Tcp(rd, mut wr)) => {
            if let Err(e) = wr.write_all(&login).await {
                return SessionEnd::NeverConnected(format!("{addr}: {e}"));
            }
            let mut lines = FramedRead::new(Box::new(rd) as PoolReader, LineCodec::default());
            match wait_login(ctx, &addr, &mut lines).await {
                Ok(login) => run_tcp(ctx, &addr, login, lines, Arc::new(wr)).await,
                Err(end) => end,
            }
        }
        Ok(Opened::Tls(rd, wr)) => {
            let mut wr = BufWriter::new(wr);
            if let Err(e) = write_line(&mut wr, &login).await {
                return SessionEnd::NeverConnected(format!("{addr}: {e}"));
            }
            let mut lines = FramedRead::new(rd, LineCodec::default());
            match wait_login(ctx, &addr, &mut lines).await {
                Ok(login) => run_buffered(ctx, &addr, login, lines, wr).await,
                Err(end) => end,
            }
        }
    }
}

/// Waits for the answer to the login request.
async fn wait_login(
    ctx: &SessionCtx<'_>,
    addr: &str,
    lines: &mut Lines,
) -> Result<PoolLoginResult, SessionEnd> {
    let deadline = Instant::now() + ctx.options.connect_timeout;
    loop {
        let next = tokio::select! {
            () = ctx.cancel.cancelled() => return Err(SessionEnd::Cancelled),
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
    ledger: Ledger,
    /// The login result's job, reported by [`announce`].
    job: Option<Job>,
    keepalive_timer: Interval,
    timeout_timer: Interval,
}

impl LoggedIn {
    fn new(ctx: &SessionCtx<'_>, login: PoolLoginResult) -> Self {
        let keepalive = ctx.pool.keepalive || login.extensions.iter().any(|e| e == "keepalive");
        let check_every = (ctx.options.reply_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        Self {
            keepalive,
            ledger: Ledger::new(login.id, LOGIN_ID + 1),
            job: login.job,
            keepalive_timer: tokio::time::interval_at(
                Instant::now() + ctx.options.keepalive_interval,
                ctx.options.keepalive_interval,
            ),
            timeout_timer: tokio::time::interval(check_every),
        }
    }
}

/// Reports the login: a new session number (returned), `Active`, and the login's job. Done
/// once submits can be sent, so that a share for that job finds the session ready.
fn announce(ctx: &mut SessionCtx<'_>, addr: &str, job: Option<Job>) -> u64 {
    let session = ctx.logged_in();
    tracing::info!(pool = %addr, "logged in to pool");
    if let Some(job) = job {
        report_job(ctx, job, session);
    }
    session
}

/// Handles one line read after login; `answer` finds the submit a response is for.
fn on_line(
    ctx: &SessionCtx<'_>,
    addr: &str,
    session: u64,
    line: &[u8],
    answer: impl FnOnce(u64) -> Option<u64>,
) {
    match parse_pool_message(line) {
        Ok(PoolMessage::Job(job)) => report_job(ctx, job, session),
        Ok(PoolMessage::Response { id, outcome }) => {
            if let Some(seq) = answer(id) {
                ctx.listener.on_result(seq, share_result(outcome));
            }
        }
        Ok(PoolMessage::Other(method)) => {
            tracing::debug!(pool = %addr, "ignoring notification {method}");
        }
        Err(e) => tracing::warn!(pool = %addr, "{e}"),
    }
}

fn share_result(outcome: Result<serde_json::Value, RpcError>) -> Result<(), ShareError> {
    match outcome {
        Ok(v) if is_status_ok(&v) || v.is_null() => Ok(()),
        Ok(v) => Err(ShareError::Rejected(v.to_string())),
        Err(e) => Err(ShareError::Rejected(e.message)),
    }
}

/// A logged-in session over plain TCP, with the direct submit path attached.
async fn run_tcp(
    ctx: &mut SessionCtx<'_>,
    addr: &str,
    login: PoolLoginResult,
    mut lines: Lines,
    tcp: Arc<OwnedWriteHalf>,
) -> SessionEnd {
    let LoggedIn {
        keepalive,
        ledger,
        job,
        mut keepalive_timer,
        mut timeout_timer,
    } = LoggedIn::new(ctx, login);
    let (direct, listener) = (ctx.direct, ctx.listener);
    // From here until `wire` is dropped, submits go straight to the socket.
    let wire = direct.attach(tcp.clone(), ledger, listener);
    let session = announce(ctx, addr, job);
    // The out-buffer holds bytes and the socket took no more: wait until it is writable.
    let mut flushing = false;
    let end = loop {
        let flushed = tokio::select! {
            () = ctx.cancel.cancelled() => break SessionEnd::Cancelled,
            next = lines.next() => {
                match next {
                    Some(Ok(line)) => on_line(ctx, addr, session, &line, |id| wire.answer(id)),
                    Some(Err(e)) => break SessionEnd::Ended(e.to_string()),
                    None => break SessionEnd::Ended("pool closed the connection".into()),
                }
                continue;
            }
            cmd = ctx.cmds.recv() => {
                let Some(Command::Submit { seq, share }) = cmd else {
                    break SessionEnd::Cancelled;
                };
                if let Err(e) = wire.submit(seq, &share) {
                    listener.on_result(seq, Err(e));
                }
                continue;
            }
            () = wire.woken() => wire.flush(),
            writable = tcp.writable(), if flushing => match writable {
                Ok(()) => wire.flush(),
                Err(e) => Flushed::Lost(e.to_string()),
            },
            _ = keepalive_timer.tick(), if keepalive => {
                wire.keepalived();
                continue;
            }
            _ = timeout_timer.tick() => {
                for seq in wire.expire(Instant::now(), ctx.options.reply_timeout) {
                    listener.on_result(seq, Err(ShareError::Timeout));
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
    addr: &str,
    login: PoolLoginResult,
    mut lines: Lines,
    mut wr: BufWriter<PoolWriter>,
) -> SessionEnd {
    let LoggedIn {
        keepalive,
        mut ledger,
        job,
        mut keepalive_timer,
        mut timeout_timer,
    } = LoggedIn::new(ctx, login);
    let session = announce(ctx, addr, job);
    let end = loop {
        tokio::select! {
            () = ctx.cancel.cancelled() => break SessionEnd::Cancelled,
            next = lines.next() => match next {
                Some(Ok(line)) => on_line(ctx, addr, session, &line, |id| ledger.answer(id)),
                Some(Err(e)) => break SessionEnd::Ended(e.to_string()),
                None => break SessionEnd::Ended("pool closed the connection".into()),
            },
            cmd = ctx.cmds.recv() => {
                let Some(Command::Submit { seq, share }) = cmd else {
                    break SessionEnd::Cancelled;
                };
                let line = ledger.submit(seq, &share, Instant::now());
                if let Err(e) = write_line(&mut wr, &line).await {
                    break SessionEnd::Ended(e.to_string());
                }
            }
            _ = keepalive_timer.tick(), if keepalive => {
                if let Err(e) = write_line(&mut wr, &ledger.keepalived()).await {
                    break SessionEnd::Ended(e.to_string());
                }
            }
            _ = timeout_timer.tick() => {
                for seq in ledger.expire(Instant::now(), ctx.options.reply_timeout) {
                    ctx.listener.on_result(seq, Err(ShareError::Timeout));
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

async fn write_line<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut BufWriter<W>,
    line: &[u8],
) -> io::Result<()> {
    wr.write_all(line).await?;
    wr.flush().await
}
