//! One session with a Stratum V1 pool: a sans-IO protocol core ([`Client`]: lines in, lines
//! and reports out, time passed in) and the task that drives it over a socket
//! ([`run_session`]).
//!
//! The handshake, with our request ids:
//!
//! | id | request | sent | answer |
//! |---|---|---|---|
//! | 1 | `mining.configure` `[["version-rolling"], {"version-rolling.mask": MASK}]` (only when [`Sv1Options::version_mask`](super::Sv1Options::version_mask) ≠ 0) | at once | granted mask ANDed with ours; an error or `false` is mask 0 |
//! | 2 | `mining.subscribe` `[agent]` | at once | extranonce1, extranonce2 size; an error ends the attempt |
//! | 3 | `mining.extranonce.subscribe` (when asked for) | after 2's answer | ignored |
//! | 4 | `mining.authorize` `[user, pass]` | after 2's answer | `true` logs in; else the attempt ends |
//! | 5… | `mining.submit` `[user, job, en2, ntime, nonce(, bits)]` | per share | `true`, `false` (code 20) or `[code, message]` |
//!
//! Notifications before the login (`set_difficulty`, `notify`, `set_extranonce`,
//! `set_version_mask`) are kept (the latest difficulty; jobs since the last clean one, at
//! most [`MAX_EARLY_JOBS`]) and reported right after it. `client.get_version` is answered
//! with the agent; `client.reconnect` ends the session with the place to go.
//!
//! Timeouts, as the CryptoNote client has them: a submit without answer for the reply
//! timeout is answered [`ShareError::Timeout`]; a pool that sent no valid line for the reply
//! timeout while a submit has waited at least half of it is silent: the session is dropped
//! (a failed attempt). Stratum V1 has no keepalive request: a dead peer of a quiet session is
//! found by TCP keepalive ([`crate::tls`] sets it on every pool socket). The handshake must
//! finish within the connect timeout. Answers `24 unauthorized` and `25 not subscribed` to
//! a submit end the session (the pool has forgotten the login): the share is answered with
//! the pool's error and the loop logs in again.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use stratum_proto::sv1::{
    encode_result, parse_server_line, Authorize, ClientRequest, Configure, ConfigureResult,
    ErrorCode, Notify, Reconnect, RpcError, ServerMessage, Subscribe, SubscribeResult,
    VersionRollingRequest, VersionRollingResult,
};
use stratum_proto::Id;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    reconnect_target, Ctx, End, Preconnecting, Submit, Sv1Listener, Sv1Options, Sv1Share,
    Sv1ShareError, MAX_RECONNECT_WAIT,
};
use crate::rare::{Rare, Wakes};
use crate::tls::{Opened, PoolReader, PoolWriter};
use crate::{FailoverOptions, PoolConfig, ShareError};

const CONFIGURE_ID: u64 = 1;
const SUBSCRIBE_ID: u64 = 2;
const EXTRANONCE_SUBSCRIBE_ID: u64 = 3;
const AUTHORIZE_ID: u64 = 4;
const FIRST_SUBMIT_ID: u64 = 5;

/// Most jobs kept between subscribe and the login's answer.
pub(crate) const MAX_EARLY_JOBS: usize = 16;
/// Most submits awaiting the pool's answer in one session (more are answered `Busy`).
pub(crate) const MAX_PENDING: usize = 4096;
/// The longest job id taken from a pool (longer ones are refused with a warning).
const MAX_JOB_ID: usize = 64;

/// What the core tells its driver.
#[derive(Debug, PartialEq)]
pub(crate) enum Out {
    /// Write this line to the pool.
    Send(Vec<u8>),
    /// Logged in: extranonce1, extranonce2 size and the version mask to report (then the
    /// difficulty and jobs follow as their own `Out`s).
    LoggedIn {
        extranonce1: Vec<u8>,
        extranonce2_size: usize,
        version_mask: u32,
    },
    /// Report a job.
    Job(Notify),
    /// Report a difficulty.
    Difficulty(f64),
    /// Report a new extranonce.
    Extranonce(Vec<u8>, usize),
    /// Report a new version mask.
    VersionMask(u32),
    /// The outcome of a submit.
    Result(u64, Result<(), Sv1ShareError>),
    /// The session must end: before the login `Err` (never logged in), after it `Ok`; the
    /// reason.
    End(String),
    /// The pool asked to reconnect.
    Reconnect(Reconnect),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the subscribe answer.
    Subscribing,
    /// Waiting for the authorize answer.
    Authorizing,
    /// Logged in.
    Ready,
}

/// The sans-IO protocol state of one pool session.
#[derive(Debug)]
pub(crate) struct Client {
    user: String,
    pass: String,
    agent: String,
    wanted_mask: u32,
    extranonce_subscribe: bool,
    phase: Phase,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    mask: u32,
    difficulty: Option<f64>,
    early_jobs: Vec<Notify>,
    next_id: u64,
    /// Our request id → (caller's sequence number, when it was sent).
    pending: HashMap<u64, (u64, Instant)>,
    last_heard: Instant,
}

impl Client {
    /// A session that logs in as `user`/`pass`, presents `agent` and asks for `wanted_mask`.
    pub(crate) fn new(
        user: &str,
        pass: &str,
        agent: &str,
        wanted_mask: u32,
        extranonce_subscribe: bool,
        now: Instant,
    ) -> Self {
        Self {
            user: user.to_owned(),
            pass: pass.to_owned(),
            agent: agent.to_owned(),
            wanted_mask,
            extranonce_subscribe,
            phase: Phase::Subscribing,
            extranonce1: Vec::new(),
            extranonce2_size: 0,
            mask: 0,
            difficulty: None,
            early_jobs: Vec::new(),
            next_id: FIRST_SUBMIT_ID,
            pending: HashMap::new(),
            last_heard: now,
        }
    }

    /// The first lines to send: configure (when a mask is wanted) and subscribe.
    pub(crate) fn start(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.wanted_mask != 0 {
            let configure = ClientRequest::Configure(Configure {
                version_rolling: Some(VersionRollingRequest {
                    mask: Some(self.wanted_mask),
                    min_bit_count: None,
                }),
                ..Configure::default()
            });
            out.extend(configure.encode(&Id::from(CONFIGURE_ID)));
        }
        let subscribe = ClientRequest::Subscribe(Subscribe {
            user_agent: Some(self.agent.clone()),
            session_id: None,
        });
        out.extend(subscribe.encode(&Id::from(SUBSCRIBE_ID)));
        out
    }

    /// Whether the login has been answered `true`.
    pub(crate) fn ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The session's extranonce2 size.
    #[cfg(test)]
    pub(crate) fn extranonce2_size(&self) -> usize {
        self.extranonce2_size
    }

    /// Handles one line from the pool. Returns whether it was a valid message (a sign of
    /// life) and what to do.
    pub(crate) fn handle_line(&mut self, line: &[u8], now: Instant) -> (bool, Vec<Out>) {
        // A share's answer (most lines) read the short way; the same message.
        let msg = match plain_answer(line)
            .map(Ok)
            .unwrap_or_else(|| parse_server_line(line))
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("{e}");
                return (false, Vec::new());
            }
        };
        self.last_heard = now;
        let mut out = Vec::new();
        match msg {
            ServerMessage::Response { id, outcome } => self.on_response(&id, outcome, &mut out),
            ServerMessage::Notify(job) => self.on_job(job, &mut out),
            ServerMessage::SetDifficulty(d) => {
                self.difficulty = Some(d);
                if self.ready() {
                    out.push(Out::Difficulty(d));
                }
            }
            ServerMessage::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => {
                self.extranonce1 = extranonce1.clone();
                self.extranonce2_size = extranonce2_size;
                if self.ready() {
                    out.push(Out::Extranonce(extranonce1, extranonce2_size));
                }
            }
            ServerMessage::SetVersionMask(mask) => {
                self.mask = mask & self.wanted_mask;
                if self.ready() {
                    out.push(Out::VersionMask(self.mask));
                }
            }
            ServerMessage::GetVersion { id } => {
                out.push(Out::Send(encode_result(
                    &id,
                    &Value::from(self.agent.as_str()),
                )));
            }
            ServerMessage::Reconnect { params, .. } => out.push(Out::Reconnect(params)),
            ServerMessage::Other(method) => {
                tracing::debug!("ignoring pool notification {:?}", method);
            }
        }
        (true, out)
    }

    fn on_job(&mut self, job: Notify, out: &mut Vec<Out>) {
        if job.job_id.is_empty() || job.job_id.len() > MAX_JOB_ID {
            tracing::warn!(
                "refusing a pool job with an id of {} bytes",
                job.job_id.len()
            );
            return;
        }
        if self.ready() {
            out.push(Out::Job(job));
            return;
        }
        if job.clean_jobs {
            self.early_jobs.clear();
        }
        if self.early_jobs.len() == MAX_EARLY_JOBS {
            self.early_jobs.remove(0);
        }
        self.early_jobs.push(job);
    }

    fn on_response(&mut self, id: &Id, outcome: Result<Value, RpcError>, out: &mut Vec<Out>) {
        let Some(id) = id.as_u64() else {
            tracing::debug!("ignoring an answer to id {id}");
            return;
        };
        match id {
            CONFIGURE_ID => {
                let granted = outcome
                    .ok()
                    .and_then(|v| ConfigureResult::from_value(&v).ok())
                    .and_then(|r| match r.version_rolling {
                        Some(VersionRollingResult::Enabled { mask }) => Some(mask),
                        _ => None,
                    })
                    .unwrap_or(0);
                self.mask = granted & self.wanted_mask;
                if self.ready() {
                    out.push(Out::VersionMask(self.mask));
                }
            }
            SUBSCRIBE_ID if self.phase == Phase::Subscribing => {
                let subscribed = match outcome {
                    Ok(v) => SubscribeResult::from_value(&v).map_err(|e| e.to_string()),
                    Err(e) => Err(format!("subscribe refused: {:?} ({})", e.message, e.code)),
                };
                match subscribed {
                    Ok(s) => {
                        self.extranonce1 = s.extranonce1;
                        self.extranonce2_size = s.extranonce2_size;
                        self.phase = Phase::Authorizing;
                        let mut lines = Vec::new();
                        if self.extranonce_subscribe {
                            lines.extend(
                                ClientRequest::ExtranonceSubscribe
                                    .encode(&Id::from(EXTRANONCE_SUBSCRIBE_ID)),
                            );
                        }
                        lines.extend(
                            ClientRequest::Authorize(Authorize {
                                username: self.user.clone(),
                                password: Some(self.pass.clone()),
                            })
                            .encode(&Id::from(AUTHORIZE_ID)),
                        );
                        out.push(Out::Send(lines));
                    }
                    Err(why) => out.push(Out::End(why)),
                }
            }
            EXTRANONCE_SUBSCRIBE_ID => {
                if let Err(e) = outcome {
                    tracing::debug!("pool refused mining.extranonce.subscribe: {:?}", e.message);
                }
            }
            AUTHORIZE_ID if self.phase == Phase::Authorizing => match outcome {
                Ok(Value::Bool(true)) => {
                    self.phase = Phase::Ready;
                    out.push(Out::LoggedIn {
                        extranonce1: self.extranonce1.clone(),
                        extranonce2_size: self.extranonce2_size,
                        version_mask: self.mask,
                    });
                    if let Some(d) = self.difficulty {
                        out.push(Out::Difficulty(d));
                    }
                    out.extend(self.early_jobs.drain(..).map(Out::Job));
                }
                Ok(other) => out.push(Out::End(format!(
                    "authorize of {:?} refused: {other}",
                    self.user
                ))),
                Err(e) => out.push(Out::End(format!(
                    "authorize of {:?} refused: {:?} ({})",
                    self.user, e.message, e.code
                ))),
            },
            _ => {
                if let Some((seq, _)) = self.pending.remove(&id) {
                    let ending = matches!(
                        &outcome,
                        Err(e) if matches!(
                            e.error_code(),
                            Some(ErrorCode::Unauthorized | ErrorCode::NotSubscribed)
                        )
                    );
                    let why = match &outcome {
                        Err(e) if ending => Some(format!("pool said {:?}", e.message)),
                        _ => None,
                    };
                    out.push(Out::Result(seq, submit_result(outcome)));
                    if let Some(why) = why {
                        out.push(Out::End(why));
                    }
                } else {
                    tracing::debug!("ignoring an answer to unknown id {id}");
                }
            }
        }
    }

    /// The line for a share, registered as pending under a fresh id.
    ///
    /// # Errors
    /// Not logged in → `NotConnected`; too many pending → `Busy`; an extranonce2 of another
    /// size than the session's → refused (code 20) without asking the pool.
    pub(crate) fn submit(
        &mut self,
        seq: u64,
        share: &Sv1Share,
        now: Instant,
    ) -> Result<Vec<u8>, Sv1ShareError> {
        if !self.ready() {
            return Err(ShareError::NotConnected.into());
        }
        if share.extranonce2.len() != self.extranonce2_size {
            return Err(Sv1ShareError::Refused {
                code: ErrorCode::Other.code(),
                message: format!(
                    "extranonce2 of {} bytes, the pool expects {}",
                    share.extranonce2.len(),
                    self.extranonce2_size
                ),
            });
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(ShareError::Busy.into());
        }
        let id = self.next_id;
        self.next_id += 1;
        if self.pending.is_empty() {
            // Silence is counted from the first request that waits.
            self.last_heard = self.last_heard.max(now);
        }
        self.pending.insert(id, (seq, now));
        Ok(submit_line(id, &self.user, share))
    }

    /// Expires submits older than `reply_timeout` (their sequence numbers, to answer
    /// `Timeout`) and tells whether the pool is silent: no valid line for `reply_timeout`
    /// while a submit has waited at least half of it, or none for `quiet_limit` at all.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        reply_timeout: Duration,
        quiet_limit: Option<Duration>,
    ) -> (Vec<u64>, bool) {
        let quiet = now.saturating_duration_since(self.last_heard);
        let oldest = self.pending.values().map(|(_, at)| *at).min();
        let silent = oldest.is_some_and(|at| {
            now.saturating_duration_since(at) >= reply_timeout / 2 && quiet >= reply_timeout
        }) || quiet_limit.is_some_and(|limit| quiet >= limit);
        let mut expired = Vec::new();
        self.pending.retain(|_, (seq, at)| {
            let keep = now.saturating_duration_since(*at) < reply_timeout;
            if !keep {
                expired.push(*seq);
            }
            keep
        });
        expired.sort_unstable();
        (expired, silent)
    }

    /// Whether a submit awaits the pool's answer.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes every pending submit's sequence number (the session is over).
    pub(crate) fn drain(&mut self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.pending.drain().map(|(_, (seq, _))| seq).collect();
        seqs.sort_unstable();
        seqs
    }
}

/// The `mining.submit` line of `share` under request id `id` for worker `user`: the bytes
/// [`ClientRequest::encode`] writes for it (`{"id":5,"method":"mining.submit","params":[user,
/// job id, extranonce2, ntime, nonce(, version bits)]}` and a newline; a test compares the
/// two), serialized by serde_json from the borrowed fields and hex written on the stack,
/// with no `serde_json::Value` and no copy of the strings.
fn submit_line(id: u64, user: &str, share: &Sv1Share) -> Vec<u8> {
    /// The params, an array of 5 or 6 strings.
    struct Params<'a>(&'a str, &'a Sv1Share);

    /// Lowercase hex of `bytes` into `buf` (at least twice as long), as a `str`.
    fn hex<'b>(bytes: &[u8], buf: &'b mut [u8]) -> &'b str {
        for (pair, byte) in buf.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&stratum_proto::job::hex_byte(*byte));
        }
        // Hex digits only: ASCII.
        std::str::from_utf8(&buf[..2 * bytes.len()]).unwrap_or_default()
    }

    impl serde::Serialize for Params<'_> {
        fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let Params(user, share) = *self;
            let n = 5 + usize::from(share.version_bits.is_some());
            let mut seq = ser.serialize_seq(Some(n))?;
            seq.serialize_element(user)?;
            seq.serialize_element(&share.job_id)?;
            let mut buf = [0u8; 2 * stratum_proto::sv1::MAX_EXTRANONCE_SIZE];
            // The upstream's extranonce2 is at most 32 bytes (the split keeps it so); a
            // longer one is written whole, the slow way.
            if share.extranonce2.len() <= stratum_proto::sv1::MAX_EXTRANONCE_SIZE {
                seq.serialize_element(hex(&share.extranonce2, &mut buf))?;
            } else {
                seq.serialize_element(&stratum_proto::job::encode_hex(&share.extranonce2))?;
            }
            let mut word = [0u8; 8];
            seq.serialize_element(hex(&share.ntime.to_be_bytes(), &mut word))?;
            seq.serialize_element(hex(&share.nonce.to_be_bytes(), &mut word))?;
            if let Some(bits) = share.version_bits {
                seq.serialize_element(hex(&bits.to_be_bytes(), &mut word))?;
            }
            seq.end()
        }
    }

    #[derive(serde::Serialize)]
    struct Line<'a> {
        id: u64,
        method: &'static str,
        params: Params<'a>,
    }

    let mut out = Vec::with_capacity(128 + user.len() + share.job_id.len());
    let line = Line {
        id,
        method: "mining.submit",
        params: Params(user, share),
    };
    // Writing these plain values into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &line);
    out.push(b'\n');
    out
}

/// A pool's plain answer, `{"id":N,"result":true|false,"error":null}` (the answer to a
/// share, nearly every line a pool sends), read straight into its two fields: the
/// `ServerMessage::Response` that [`parse_server_line`] makes of the same line (a test
/// compares them), without its `serde_json::Value` envelope. `None` for any other line
/// (another key, an error, another id or result type), which is read the general way.
fn plain_answer(line: &[u8]) -> Option<ServerMessage> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Plain {
        id: u64,
        result: bool,
        /// Absent or `null` only (`()` reads nothing else).
        #[serde(default)]
        error: Option<()>,
    }
    // An object only: serde's derive would read `[5,true]` as the struct too, a line the
    // general parser refuses.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let Plain { id, result, error } = serde_json::from_slice(line).ok()?;
    debug_assert!(error.is_none(), "`()` reads null only");
    Some(ServerMessage::Response {
        id: Id::from(id),
        outcome: Ok(Value::Bool(result)),
    })
}

/// A pool's answer to a submit as an outcome.
fn submit_result(outcome: Result<Value, RpcError>) -> Result<(), Sv1ShareError> {
    match outcome {
        Ok(Value::Bool(true)) => Ok(()),
        Ok(_) => Err(Sv1ShareError::Refused {
            code: ErrorCode::Other.code(),
            message: "Rejected by pool".into(),
        }),
        Err(e) => Err(Sv1ShareError::Refused {
            code: e.code,
            message: e.message,
        }),
    }
}

/// Read with the same buffer-only-while-partial reader as the CryptoNote session.
type Lines = crate::lines::PoolLines;

async fn write(wr: &mut BufWriter<PoolWriter>, bytes: &[u8]) -> std::io::Result<()> {
    wr.write_all(bytes).await?;
    wr.flush().await
}

/// A session logged in to a pool (its `mining.authorize` answered `true`), not yet serving:
/// what [`connect`] hands to [`run_connected`], and what a replaced session hands to
/// [`drain`].
pub(super) struct Connected {
    /// `host:port` of the pool, for the log.
    addr: String,
    client: Client,
    lines: Lines,
    wr: BufWriter<PoolWriter>,
    /// What the login reported (`LoggedIn`, then the difficulty and the early jobs), to be
    /// handed to the listener when the session starts serving.
    outs: Vec<Out>,
}

/// Connects to `pool` and logs in (configure, subscribe, authorize) within the connect
/// timeout, without reporting anything to a listener: the session is reported when
/// [`run_connected`] serves it. Used for every attempt, and to log in to a new pool list
/// while the old session still serves (make-before-break).
///
/// # Errors
/// `NeverConnected` with the reason (connect, TLS, refused subscribe or authorize, no
/// answer in time), `Reconnect` when the pool asked for it before the login, `Cancelled`.
pub(super) async fn connect(
    pool: &PoolConfig,
    options: &FailoverOptions,
    sv1: &Sv1Options,
    cancel: &CancellationToken,
) -> Result<Connected, End> {
    let addr = pool.host_port().to_string();
    let (rd, wr): (PoolReader, PoolWriter) =
        match crate::tls::open(pool, options, cancel, &addr).await {
            Ok(Opened::Tcp(rd, wr)) => (Box::new(rd), Box::new(wr)),
            Ok(Opened::Tls(rd, wr)) => (rd, wr),
            Err(e) => return Err(e.into()),
        };
    let mut lines = Lines::new(rd);
    let mut wr = BufWriter::new(wr);
    let mut client = Client::new(
        &pool.user,
        &pool.pass,
        &options.agent,
        sv1.version_mask,
        sv1.extranonce_subscribe,
        Instant::now(),
    );
    if let Err(e) = write(&mut wr, &client.start()).await {
        return Err(End::NeverConnected(format!("{addr}: {e}")));
    }
    let login_deadline = Instant::now() + options.connect_timeout;
    loop {
        let outs = tokio::select! {
            () = cancel.cancelled() => return Err(End::Cancelled),
            () = tokio::time::sleep_until(login_deadline) => {
                return Err(End::NeverConnected(format!("{addr}: no login answer")));
            }
            next = lines.next() => match next {
                Some(Ok(line)) => client.handle_line(&line, Instant::now()).1,
                Some(Err(e)) => return Err(End::NeverConnected(format!("{addr}: {e}"))),
                None => {
                    return Err(End::NeverConnected(format!(
                        "{addr}: pool closed the connection"
                    )))
                }
            },
        };
        let mut kept = Vec::new();
        for out in outs {
            match out {
                Out::Send(bytes) => {
                    if let Err(e) = write(&mut wr, &bytes).await {
                        return Err(End::NeverConnected(format!("{addr}: {e}")));
                    }
                }
                Out::End(why) => return Err(End::NeverConnected(format!("{addr}: {why}"))),
                Out::Reconnect(params) => {
                    if let Some(end) = reconnect_end(pool, &addr, &params) {
                        return Err(end);
                    }
                }
                other => kept.push(other),
            }
        }
        if client.ready() {
            return Ok(Connected {
                addr,
                client,
                lines,
                wr,
                outs: kept,
            });
        }
    }
}

/// One attempt at an SV1 pool: connect, handshake, serve until the session ends.
pub(super) async fn run_session(ctx: &mut Ctx<'_>) -> End {
    match connect(ctx.pool, ctx.options, ctx.sv1, ctx.cancel).await {
        Ok(c) => run_connected(ctx, c).await,
        Err(end) => end,
    }
}

/// Serves a session logged in by [`connect`] until it ends. A replaced session (the pool
/// list changed) is handed to a [`drain`] task of its own, so its shares in flight get this
/// pool's answers; any other ending answers them `Disconnected` at once.
pub(super) async fn run_connected(ctx: &mut Ctx<'_>, mut c: Connected) -> End {
    let (end, draining) = serve(ctx, &mut c).await;
    if draining {
        tokio::spawn(drain(
            c,
            ctx.listener.clone(),
            ctx.options.reply_timeout,
            ctx.cancel.child_token(),
        ));
        return end;
    }
    // The pool can no longer answer what it was sent.
    for seq in c.client.drain() {
        ctx.listener
            .on_result(seq, Err(ShareError::Disconnected.into()));
    }
    let _ = c.wr.shutdown().await;
    end
}

/// The end a `client.reconnect` leads to, or `None` (logged) when it names another host.
fn reconnect_end(pool: &PoolConfig, addr: &str, params: &Reconnect) -> Option<End> {
    match reconnect_target(&addr_of(pool), params) {
        Ok(url) => {
            let wait = Duration::from_secs(params.wait_secs.unwrap_or(0)).min(MAX_RECONNECT_WAIT);
            Some(End::Reconnect {
                url: with_scheme(&pool.url, &url),
                wait,
            })
        }
        Err(host) => {
            tracing::warn!(pool = %addr, to = ?host, "pool asked to reconnect to another host: ignored");
            None
        }
    }
}

/// Serves `c` until it ends; the end, and whether the connection is to be drained (it was
/// replaced by a new pool list and may still answer the shares it was sent).
///
/// A pool-list change that [`touches`](crate::failover::touches) this pool is made before it breaks, as the CryptoNote
/// upstream does (`failover.rs`): the new list is logged in to ([`super::preconnect`]) while this
/// session serves on. Then this session takes no more shares (the ones already queued for it
/// are still written to this pool), is drained, and the serve ends `Replaced` with the new
/// session; when no entry of the new list could be logged in to, it is drained all the same
/// and ends `Ended`: the loop walks the new list with its retries and pauses.
async fn serve(ctx: &mut Ctx<'_>, c: &mut Connected) -> (End, bool) {
    let addr = c.addr.clone();
    let reply_timeout = ctx.options.reply_timeout;
    let check_every = (reply_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut timer = tokio::time::interval(check_every);
    let mut session = 0;
    let mut outs = std::mem::take(&mut c.outs);
    // When what `outs` reports happened: the read of the pool line it came from, or the
    // handover of the submit it answers.
    let mut read_at = Instant::now();
    let mut watching = true;
    let mut preconnecting: Option<Preconnecting> = None;
    // The cancellation and the submit queue's wake-up are made once and polled only after
    // they woke (`Rare`, as the CryptoNote session does): this loop turns at least twice a
    // share (its submit, its answer), and a `Notified` made anew at each turn registers
    // with its `Notify` (a lock) and unregisters when dropped.
    let cancel = ctx.cancel;
    let wakes = Wakes::default();
    let cancelled = pin!(cancel.cancelled());
    let mut cancelled = Rare::new(cancelled, &wakes);
    let cmd_wakes = ctx.cmds.wakes();
    let queued = pin!(cmd_wakes.notified());
    let mut queued = Rare::new(queued, &wakes);
    loop {
        for out in outs.drain(..) {
            match out {
                Out::Send(bytes) => {
                    if let Err(e) = write(&mut c.wr, &bytes).await {
                        return (End::Ended(format!("{addr}: {e}")), false);
                    }
                }
                Out::LoggedIn {
                    extranonce1,
                    extranonce2_size,
                    version_mask,
                } => {
                    session = ctx.logged_in();
                    tracing::info!(pool = %addr, "logged in to SV1 pool");
                    // The mask first: a miner waiting for it is answered before its subscribe.
                    ctx.listener.on_version_mask(version_mask, session);
                    ctx.listener
                        .on_extranonce(&extranonce1, extranonce2_size, session);
                }
                Out::Job(job) => ctx.listener.on_job(job, session),
                Out::Difficulty(d) => ctx.listener.on_difficulty(d, session),
                Out::Extranonce(en1, size) => ctx.listener.on_extranonce(&en1, size, session),
                Out::VersionMask(mask) => ctx.listener.on_version_mask(mask, session),
                Out::Result(seq, r) => ctx.listener.on_result_at(seq, r, read_at),
                Out::End(why) => return (End::Ended(format!("{addr}: {why}")), false),
                Out::Reconnect(params) => {
                    if let Some(end) = reconnect_end(ctx.pool, &addr, &params) {
                        return (end, false);
                    }
                }
            }
        }
        outs = tokio::select! {
            () = &mut cancelled => return (End::Cancelled, false),
            changed = ctx.pools.changed(), if watching => {
                // Changed back, or elsewhere: `None`, this connection stays.
                if ctx.follow_list(changed, &mut watching, &mut preconnecting) {
                    tracing::info!(pool = %addr, "pool list changed; logging in to the new list before closing this connection");
                }
                continue;
            }
            got = async { preconnecting.as_mut().expect("guarded").await }, if preconnecting.is_some() => {
                let end = match got {
                    Some(ready) => End::Replaced(ready),
                    None => {
                        tracing::warn!(pool = %addr, "no pool of the new list could be logged in to; closing this connection once drained");
                        End::Ended(format!("{addr}: pool list changed"))
                    }
                };
                hand_over(ctx, c, session).await;
                return (end, true);
            }
            next = c.lines.next() => match next {
                Some(Ok(line)) => {
                    // The one clock read of a pool line: the pool heard, and the time of
                    // the verdicts it carries (their latency, their statistics second).
                    read_at = Instant::now();
                    c.client.handle_line(&line, read_at).1
                }
                Some(Err(e)) => return (End::Ended(format!("{addr}: {e}")), false),
                None => return (End::Ended(format!("{addr}: pool closed the connection")), false),
            },
            () = &mut queued => {
                queued.set(cmd_wakes.notified());
                // Every submit queued so far (a wake-up may stand for several), their lines
                // written at once.
                let mut lines = Vec::new();
                let mut refused = Vec::new();
                let closed = loop {
                    let Submit { seq, share, at } = match ctx.cmds.try_recv() {
                        Ok(submit) => submit,
                        Err(closed) => break closed,
                    };
                    if share.session != session {
                        // Queued in the instant its session ended: never into another one.
                        ctx.listener.on_result(seq, Err(ShareError::SessionEnded.into()));
                        continue;
                    }
                    // Sent as of the miner line's clock read (no read of this task's own).
                    read_at = at;
                    match c.client.submit(seq, &share, at) {
                        Ok(line) if lines.is_empty() => lines = line,
                        Ok(line) => lines.extend_from_slice(&line),
                        Err(e) => refused.push(Out::Result(seq, Err(e))),
                    }
                };
                if closed {
                    return (End::Cancelled, false);
                }
                if !lines.is_empty() {
                    refused.push(Out::Send(lines));
                }
                refused
            }
            _ = timer.tick() => {
                let (expired, silent) =
                    c.client.tick(Instant::now(), reply_timeout, ctx.sv1.quiet_limit);
                for seq in expired {
                    ctx.listener.on_result(seq, Err(ShareError::Timeout.into()));
                }
                if silent {
                    return (End::Dropped(format!("{addr}: the pool fell silent")), false);
                }
                continue;
            }
        };
    }
}

/// The last act of a replaced session: no new share is taken for it (the live session is
/// cleared, so `submit` refuses its shares at once), and the shares already queued for it
/// are written to this pool, to be answered by it in the drain.
async fn hand_over(ctx: &mut Ctx<'_>, c: &mut Connected, session: u64) {
    ctx.live.store(0, std::sync::atomic::Ordering::Release);
    let mut lines = Vec::new();
    while let Ok(Submit { seq, share, .. }) = ctx.cmds.try_recv() {
        if share.session != session {
            ctx.listener
                .on_result(seq, Err(ShareError::SessionEnded.into()));
            continue;
        }
        match c.client.submit(seq, &share, Instant::now()) {
            Ok(line) => lines.extend(line),
            Err(e) => ctx.listener.on_result(seq, Err(e)),
        }
    }
    if !lines.is_empty() {
        // A failed write leaves them pending: the drain answers them.
        let _ = write(&mut c.wr, &lines).await;
    }
}

/// Waits, at most `reply_timeout`, for the pool's answers to the shares a replaced session
/// has in flight and reports each; what is left then is answered `Timeout` (or
/// `Disconnected` when the pool closed the connection first, or the proxy stops). Jobs and
/// other notifications of the old pool are ignored.
async fn drain(
    mut c: Connected,
    listener: Arc<dyn Sv1Listener>,
    reply_timeout: Duration,
    cancel: CancellationToken,
) {
    let deadline = Instant::now() + reply_timeout;
    let mut timed_out = false;
    while c.client.has_pending() {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
            next = c.lines.next() => {
                let Some(Ok(line)) = next else { break };
                for out in c.client.handle_line(&line, Instant::now()).1 {
                    match out {
                        Out::Result(seq, r) => listener.on_result(seq, r),
                        Out::Send(bytes) => {
                            let _ = write(&mut c.wr, &bytes).await;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let why = if timed_out {
        ShareError::Timeout
    } else {
        ShareError::Disconnected
    };
    let left = c.client.drain();
    if !left.is_empty() {
        tracing::warn!(pool = %c.addr, shares = left.len(), "replaced pool connection closed with shares unanswered: {why}");
    }
    for seq in left {
        listener.on_result(seq, Err(why.clone().into()));
    }
    let _ = c.wr.shutdown().await;
}

fn addr_of(pool: &crate::PoolConfig) -> String {
    pool.host_port().to_string()
}

/// `host_port` with the scheme of `url` (so a TLS pool stays TLS after a reconnect).
fn with_scheme(url: &str, host_port: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://{host_port}"),
        None => host_port.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum_proto::sv1::{parse_client_line, ClientMessage};

    fn requests(bytes: &[u8]) -> Vec<(Id, ClientRequest)> {
        bytes
            .split_inclusive(|b| *b == b'\n')
            .map(|l| match parse_client_line(l) {
                Ok(ClientMessage::Request { id, request }) => (id, request),
                other => panic!("not a request: {other:?}"),
            })
            .collect()
    }

    fn sent(outs: &[Out]) -> Vec<u8> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Send(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// A client logged in with extranonce1 `08000002`, extranonce2 size 4, mask `1fffe000`.
    fn logged_in(now: Instant) -> Client {
        let mut c = Client::new("w", "x", "agent/1", 0x1fff_e000, true, now);
        let (_, outs) = c.handle_line(
            br#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffffff"},"error":null}"#,
            now,
        );
        assert!(outs.is_empty());
        c.handle_line(
            br#"{"id":2,"result":[[["mining.notify","ae68"]],"08000002",4],"error":null}"#,
            now,
        );
        let (_, outs) = c.handle_line(br#"{"id":4,"result":true,"error":null}"#, now);
        assert!(matches!(outs[0], Out::LoggedIn { .. }));
        c
    }

    #[test]
    fn the_handshake_configures_subscribes_then_authorizes_and_reports_what_came_early() {
        let now = Instant::now();
        let mut c = Client::new("w", "x", "agent/1", 0x1fff_e000, true, now);
        let first = requests(&c.start());
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].0, Id::from(1));
        match &first[0].1 {
            ClientRequest::Configure(conf) => {
                assert_eq!(
                    conf.version_rolling.as_ref().unwrap().mask,
                    Some(0x1fff_e000)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&first[1].1, ClientRequest::Subscribe(s) if s.user_agent.as_deref() == Some("agent/1"))
        );
        // The pool grants more than asked: we keep our mask's bits only.
        c.handle_line(
            br#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"ffffffff"},"error":null}"#,
            now,
        );
        let (_, outs) = c.handle_line(
            br#"{"id":2,"result":[[["mining.notify","ae68"]],"08000002",4],"error":null}"#,
            now,
        );
        let second = requests(&sent(&outs));
        assert!(matches!(second[0].1, ClientRequest::ExtranonceSubscribe));
        assert!(
            matches!(&second[1].1, ClientRequest::Authorize(a) if a.username == "w" && a.password.as_deref() == Some("x"))
        );
        // Difficulty and a job before the login's answer are reported after it.
        c.handle_line(
            br#"{"id":null,"method":"mining.set_difficulty","params":[2]}"#,
            now,
        );
        let (_, outs) = c.handle_line(test_support_notify().as_bytes(), now);
        assert!(outs.is_empty(), "{outs:?}");
        assert!(!c.ready());
        let (_, outs) = c.handle_line(br#"{"id":4,"result":true,"error":null}"#, now);
        assert_eq!(
            outs[0],
            Out::LoggedIn {
                extranonce1: vec![8, 0, 0, 2],
                extranonce2_size: 4,
                version_mask: 0x1fff_e000
            }
        );
        assert_eq!(outs[1], Out::Difficulty(2.0));
        assert!(matches!(&outs[2], Out::Job(j) if j.job_id == "bf"));
        assert!(c.ready());
        assert_eq!(c.extranonce2_size(), 4);
    }

    /// A session-1 share on job `bf` with a 4-byte zero extranonce2 and no version bits.
    fn plain_share() -> Sv1Share {
        Sv1Share {
            session: 1,
            job_id: "bf".into(),
            extranonce2: vec![0; 4],
            ntime: 1,
            nonce: 2,
            version_bits: None,
        }
    }

    fn test_support_notify() -> String {
        r#"{"params":["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"00000002","1c2ac4af","504e86b9",false],"id":null,"method":"mining.notify"}"#.to_string()
    }

    #[test]
    fn a_submit_line_is_the_bytes_the_request_encoder_writes() {
        use stratum_proto::sv1::Submit as WireSubmit;
        let wire = |user: &str, share: &Sv1Share| {
            ClientRequest::Submit(WireSubmit {
                worker: user.into(),
                job_id: share.job_id.clone(),
                extranonce2: share.extranonce2.clone(),
                ntime: share.ntime,
                nonce: share.nonce,
                version_bits: share.version_bits,
            })
            .encode(&Id::from(5u64))
        };
        let mut share = plain_share();
        for (user, job, en2, bits) in [
            ("w", "bf", vec![0u8; 4], None),
            (
                "bc1q.rig-1",
                "0000002a",
                (0..8).collect(),
                Some(0x1fff_e000),
            ),
            ("\"quoted\"\\ \u{1}é", "job \"x\"", vec![0xff; 32], Some(0)),
            ("", "", Vec::new(), None),
            ("w", "long", vec![0xab; 40], Some(0x2000)),
        ] {
            share.job_id = job.into();
            share.extranonce2 = en2;
            share.version_bits = bits;
            share.ntime = 0x504e_86ed;
            share.nonce = 0x0000_00ff;
            let ours = submit_line(5, user, &share);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&wire(user, &share))
            );
        }
    }

    #[test]
    fn a_plain_answer_read_the_short_way_is_what_the_general_parser_reads() {
        for line in [
            r#"{"id":5,"result":true,"error":null}"#,
            "{\"error\": null, \"result\": false, \"id\": 123456789012}\n",
            r#"{"id":7,"result":true}"#,
        ] {
            let short = plain_answer(line.as_bytes()).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(Ok(short), parse_server_line(line.as_bytes()), "{line}");
        }
        for line in [
            r#"{"id":5,"result":null,"error":[23,"Low difficulty share",null]}"#,
            r#"{"id":5,"result":true,"error":[21,"Job not found",null]}"#,
            r#"{"id":"5","result":true,"error":null}"#,
            r#"{"id":-1,"result":true,"error":null}"#,
            r#"{"id":5,"result":"true","error":null}"#,
            r#"{"id":5,"result":true,"error":null,"jsonrpc":"2.0"}"#,
            r#"{"id":5,"result":true,"result":false}"#,
            r#"{"id":null,"method":"mining.set_difficulty","params":[2]}"#,
            r#"{"id":5,"result":true,"error":null} trailing"#,
            "not json",
            "[5,true]",
            " [5,true,null]",
        ] {
            assert_eq!(plain_answer(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn refused_subscribe_or_authorize_end_the_attempt() {
        let now = Instant::now();
        let mut c = Client::new("w", "x", "a", 0, false, now);
        assert_eq!(requests(&c.start()).len(), 1, "no configure without a mask");
        let (_, outs) = c.handle_line(
            br#"{"id":2,"result":null,"error":[20,"go away",null]}"#,
            now,
        );
        assert!(matches!(&outs[0], Out::End(why) if why.contains("go away")));
        let mut c = Client::new("w", "x", "a", 0, false, now);
        c.handle_line(br#"{"id":2,"result":[[],"00",4],"error":null}"#, now);
        let (_, outs) = c.handle_line(br#"{"id":4,"result":false,"error":null}"#, now);
        assert!(matches!(&outs[0], Out::End(_)));
        assert!(!c.ready());
    }

    #[test]
    fn submits_are_answered_with_the_pools_verdict_code_and_message() {
        let now = Instant::now();
        let mut c = logged_in(now);
        let share = |en2: Vec<u8>| Sv1Share {
            session: 1,
            job_id: "bf".into(),
            extranonce2: en2,
            ntime: 0x504e_86ed,
            nonce: 0xb295_7c02,
            version_bits: Some(0x0000_2000),
        };
        let line = c.submit(7, &share(vec![0, 0, 0, 1]), now).unwrap();
        let (id, req) = requests(&line).remove(0);
        assert_eq!(id, Id::from(5));
        match req {
            ClientRequest::Submit(s) => {
                assert_eq!(s.worker, "w");
                assert_eq!(s.version_bits, Some(0x2000));
            }
            other => panic!("{other:?}"),
        }
        c.submit(8, &share(vec![0, 0, 0, 2]), now).unwrap();
        c.submit(9, &share(vec![0, 0, 0, 3]), now).unwrap();
        let (_, outs) = c.handle_line(br#"{"id":5,"result":true,"error":null}"#, now);
        assert_eq!(outs, vec![Out::Result(7, Ok(()))]);
        let (_, outs) = c.handle_line(
            br#"{"id":6,"result":null,"error":[23,"Low difficulty share",null]}"#,
            now,
        );
        assert_eq!(
            outs,
            vec![Out::Result(
                8,
                Err(Sv1ShareError::Refused {
                    code: 23,
                    message: "Low difficulty share".into()
                })
            )]
        );
        let (_, outs) = c.handle_line(br#"{"id":7,"result":false,"error":null}"#, now);
        assert!(matches!(
            &outs[0],
            Out::Result(9, Err(Sv1ShareError::Refused { code: 20, .. }))
        ));
        // A second answer to the same id is not a second outcome.
        let (_, outs) = c.handle_line(br#"{"id":5,"result":true,"error":null}"#, now);
        assert!(outs.is_empty());
        // A wrong-sized extranonce2 never reaches the pool.
        let e = c.submit(10, &share(vec![0; 8]), now).unwrap_err();
        assert!(matches!(e, Sv1ShareError::Refused { code: 20, .. }));
    }

    #[test]
    fn an_unauthorized_answer_ends_the_session_after_answering_the_share() {
        let now = Instant::now();
        let mut c = logged_in(now);
        let share = plain_share();
        c.submit(1, &share, now).unwrap();
        let (_, outs) = c.handle_line(
            br#"{"id":5,"result":null,"error":[24,"Unauthorized worker",null]}"#,
            now,
        );
        assert!(matches!(
            &outs[0],
            Out::Result(1, Err(Sv1ShareError::Refused { code: 24, .. }))
        ));
        assert!(matches!(&outs[1], Out::End(_)));
    }

    #[test]
    fn late_submits_time_out_and_a_silent_pool_is_found() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut c = logged_in(t0);
        let share = plain_share();
        c.submit(1, &share, t0).unwrap();
        c.submit(2, &share, t0 + Duration::from_secs(6)).unwrap();
        assert_eq!(
            c.tick(t0 + Duration::from_secs(5), timeout, None),
            (vec![], false)
        );
        // Heard at 8 s: not silent at 11 s although share 1 has expired.
        c.handle_line(
            br#"{"id":null,"method":"mining.set_difficulty","params":[4]}"#,
            t0 + Duration::from_secs(8),
        );
        assert_eq!(
            c.tick(t0 + Duration::from_secs(11), timeout, None),
            (vec![1], false)
        );
        // Nothing valid since 8 s, share 2 waiting since 6 s: silent at 18 s.
        let (garbage_alive, _) = c.handle_line(b"not json", t0 + Duration::from_secs(17));
        assert!(!garbage_alive);
        assert_eq!(
            c.tick(t0 + Duration::from_secs(18), timeout, None),
            (vec![2], true)
        );
        assert!(c.drain().is_empty());
    }

    #[test]
    fn a_quiet_limit_drops_a_pool_that_says_nothing_even_when_nothing_is_asked() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let limit = Some(Duration::from_secs(120));
        let mut c = logged_in(t0);
        assert_eq!(
            c.tick(t0 + Duration::from_secs(119), timeout, limit),
            (vec![], false)
        );
        assert_eq!(
            c.tick(t0 + Duration::from_secs(600), timeout, None),
            (vec![], false)
        );
        c.handle_line(
            test_support_notify().as_bytes(),
            t0 + Duration::from_secs(100),
        );
        assert_eq!(
            c.tick(t0 + Duration::from_secs(219), timeout, limit),
            (vec![], false)
        );
        assert_eq!(
            c.tick(t0 + Duration::from_secs(220), timeout, limit),
            (vec![], true)
        );
    }

    #[test]
    fn notifications_after_login_are_reported_and_get_version_is_answered() {
        let now = Instant::now();
        let mut c = logged_in(now);
        let (_, outs) = c.handle_line(
            br#"{"id":null,"method":"mining.set_extranonce","params":["0a0b0c0d",6]}"#,
            now,
        );
        assert_eq!(outs, vec![Out::Extranonce(vec![10, 11, 12, 13], 6)]);
        assert_eq!(c.extranonce2_size(), 6);
        let (_, outs) = c.handle_line(
            br#"{"id":null,"method":"mining.set_version_mask","params":["00ffe000"]}"#,
            now,
        );
        assert_eq!(outs, vec![Out::VersionMask(0x00ff_e000 & 0x1fff_e000)]);
        let (_, outs) = c.handle_line(
            br#"{"id":9,"method":"client.get_version","params":[]}"#,
            now,
        );
        assert_eq!(
            sent(&outs),
            br#"{"id":9,"result":"agent/1","error":null}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect::<Vec<u8>>()
        );
        let (_, outs) = c.handle_line(
            br#"{"id":null,"method":"client.reconnect","params":["other.example",3334,0]}"#,
            now,
        );
        assert!(matches!(&outs[0], Out::Reconnect(r) if r.port == Some(3334)));
    }
}
