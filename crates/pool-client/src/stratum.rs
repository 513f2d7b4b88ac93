//! A stratum pool connection: one session of the failover loop (RFC §10.1).
//!
//! Connect over TCP, send `login` with the pool entry's user, pass, rig-id and algo, report
//! the login result's job and every `job` notification, forward submits under fresh request
//! ids and match the pool's answers back to the caller's sequence numbers, fail submits the
//! pool leaves unanswered past the reply timeout, and send `keepalived` when the pool lists
//! the keepalive extension (or the entry asks for it).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use stratum_proto::cryptonote::{
    encode_pool_keepalived, encode_pool_login, encode_pool_submit, is_status_ok,
    parse_pool_message, PoolLoginResult, PoolMessage,
};
use stratum_proto::{Job, LineCodec};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::{Command, SessionCtx, SessionEnd, ShareError};

const LOGIN_ID: u64 = 1;

struct Pending {
    seq: u64,
    sent: Instant,
}

fn report_job(ctx: &SessionCtx<'_>, job: Job, session: u64) {
    match job.validate() {
        Ok(()) => ctx.listener.on_job(job, session),
        Err(e) => tracing::warn!(pool = %ctx.pool.url, "dropping invalid job: {e}"),
    }
}

/// Runs one connection to a stratum pool until it ends.
pub(crate) async fn run_session(ctx: &mut SessionCtx<'_>) -> SessionEnd {
    let addr = ctx.pool.host_port().to_string();
    let (rd, wr) = match crate::tls::open(ctx, &addr).await {
        Ok(halves) => halves,
        Err(end) => return end,
    };
    let mut lines = FramedRead::new(rd, LineCodec::default());
    let mut wr = BufWriter::new(wr);

    let algo: Vec<String> = ctx.pool.algo.iter().cloned().collect();
    let login = encode_pool_login(
        LOGIN_ID,
        &ctx.pool.user,
        &ctx.pool.pass,
        &ctx.options.agent,
        ctx.pool.rig_id.as_deref(),
        &algo,
    );
    if let Err(e) = write_line(&mut wr, &login).await {
        return SessionEnd::NeverConnected(format!("{addr}: {e}"));
    }

    // Wait for the login result.
    let deadline = Instant::now() + ctx.options.connect_timeout;
    let login = loop {
        let next = tokio::select! {
            () = ctx.cancel.cancelled() => return SessionEnd::Cancelled,
            () = tokio::time::sleep_until(deadline) => {
                return SessionEnd::NeverConnected(format!("{addr}: no login reply"));
            }
            next = lines.next() => next,
        };
        let line = match next {
            Some(Ok(line)) => line,
            Some(Err(e)) => return SessionEnd::NeverConnected(format!("{addr}: {e}")),
            None => return SessionEnd::NeverConnected(format!("{addr}: closed during login")),
        };
        match parse_pool_message(&line) {
            Ok(PoolMessage::Response {
                id: LOGIN_ID,
                outcome,
            }) => match outcome {
                Ok(v) => match PoolLoginResult::from_value(v) {
                    Some(r) => break r,
                    None => {
                        return SessionEnd::NeverConnected(format!(
                            "{addr}: login result without a session id"
                        ))
                    }
                },
                Err(e) => {
                    return SessionEnd::NeverConnected(format!(
                        "{addr}: login refused: {}",
                        e.message
                    ))
                }
            },
            Ok(other) => tracing::debug!(pool = %addr, "ignoring before login: {other:?}"),
            Err(e) => tracing::warn!(pool = %addr, "{e}"),
        }
    };

    let session = ctx.logged_in();
    tracing::info!(pool = %addr, "logged in to pool");
    if let Some(job) = login.job {
        report_job(ctx, job, session);
    }
    let keepalive = ctx.pool.keepalive || login.extensions.iter().any(|e| e == "keepalive");
    let session_id = login.id;

    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut next_id = LOGIN_ID + 1;
    let mut keepalive_timer = tokio::time::interval_at(
        Instant::now() + ctx.options.keepalive_interval,
        ctx.options.keepalive_interval,
    );
    let check_every =
        (ctx.options.reply_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut timeout_timer = tokio::time::interval(check_every);

    let end = loop {
        tokio::select! {
            () = ctx.cancel.cancelled() => break SessionEnd::Cancelled,
            next = lines.next() => {
                let line = match next {
                    Some(Ok(line)) => line,
                    Some(Err(e)) => break SessionEnd::Ended(e.to_string()),
                    None => break SessionEnd::Ended("pool closed the connection".into()),
                };
                match parse_pool_message(&line) {
                    Ok(PoolMessage::Job(job)) => report_job(ctx, job, session),
                    Ok(PoolMessage::Response { id, outcome }) => {
                        if let Some(p) = pending.remove(&id) {
                            let result = match outcome {
                                Ok(v) if is_status_ok(&v) || v.is_null() => Ok(()),
                                Ok(v) => Err(ShareError::Rejected(v.to_string())),
                                Err(e) => Err(ShareError::Rejected(e.message)),
                            };
                            ctx.listener.on_result(p.seq, result);
                        }
                    }
                    Ok(PoolMessage::Other(method)) => {
                        tracing::debug!(pool = %addr, "ignoring notification {method}");
                    }
                    Err(e) => tracing::warn!(pool = %addr, "{e}"),
                }
            }
            cmd = ctx.cmds.recv() => {
                let Some(Command::Submit { seq, share }) = cmd else {
                    break SessionEnd::Cancelled;
                };
                let id = next_id;
                next_id += 1;
                let line = encode_pool_submit(
                    id, &session_id, &share.job_id, &share.nonce, &share.result, share.algo.as_deref(),
                );
                pending.insert(id, Pending { seq, sent: Instant::now() });
                if let Err(e) = write_line(&mut wr, &line).await {
                    break SessionEnd::Ended(e.to_string());
                }
            }
            _ = keepalive_timer.tick(), if keepalive => {
                let id = next_id;
                next_id += 1;
                if let Err(e) = write_line(&mut wr, &encode_pool_keepalived(id, &session_id)).await {
                    break SessionEnd::Ended(e.to_string());
                }
            }
            _ = timeout_timer.tick() => {
                let now = Instant::now();
                let timeout = ctx.options.reply_timeout;
                pending.retain(|_, p| {
                    if now.duration_since(p.sent) >= timeout {
                        ctx.listener.on_result(p.seq, Err(ShareError::Timeout));
                        false
                    } else {
                        true
                    }
                });
            }
        }
    };
    for p in std::mem::take(&mut pending).into_values() {
        ctx.listener.on_result(p.seq, Err(ShareError::Disconnected));
    }
    let _ = wr.shutdown().await;
    end
}

async fn write_line<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut BufWriter<W>,
    line: &[u8],
) -> std::io::Result<()> {
    wr.write_all(line).await?;
    wr.flush().await
}
