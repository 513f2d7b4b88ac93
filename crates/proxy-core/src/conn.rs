//! Listeners and the connection task of one miner: moves bytes between the socket and the
//! [`Miner`], over plain TCP or TLS.
//!
//! ```text
//! accept ─▶ rate limit (refused: dropped before any read) ─▶ task:
//!   [TLS: detect / handshake, within the login timeout] ─▶ Miner ─▶ loop {
//!       write the outbox as far as the socket takes it
//!       wait: stop | output queued | readable | writable (when blocked) | timeout
//!       read what is there, handle every complete line
//!   }
//! ```
//!
//! The loop is written once, over the small [`Transport`] trait: a non-blocking read, a
//! non-blocking vectored write and readiness waits of the TCP socket underneath. Plain TCP
//! implements it with tokio's `try_*` calls; TLS (`tokio_rustls::server::TlsStream`) by polling
//! the stream once with a no-op waker and waiting on the TCP socket's readiness when it is
//! pending (it is pending only after the socket said `WouldBlock`, so that readiness is the
//! right thing to wait for).
//!
//! No read buffer is kept while a miner is idle: the task waits for readability, reads what
//! is there, handles every complete line and drops the buffer when nothing is left over (a
//! TLS connection still has rustls' own record buffers). The outbox is written with vectored
//! writes, so a job shared by 256 miners is sent from one encoding without copying. Writing
//! never blocks the loop: a miner that does not read keeps being served until its outbox
//! overflows, its timeout strikes or the proxy stops.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use stratum_proto::LineCodec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::miner::{Flow, Miner, MinerPhase};
use crate::ratelimit::Decision;
use crate::Shared;

/// A miner must log in within this time (RFC §6); a TLS handshake counts against it.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A logged-in miner that sends nothing (submit, keepalived) for this long is closed (RFC §6).
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes read per read call.
const READ_CHUNK: usize = 2048;
/// Reads per wake-up before other work gets a turn (a miner sending without pause).
const READS_PER_WAKE: usize = 16;
/// Chunks per vectored write.
const WRITE_BATCH: usize = 64;
/// How long the last answers may take to go out when the proxy stops.
const STOP_FLUSH: Duration = Duration::from_secs(1);
/// First byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// How a listener treats TLS (see [`crate::tls`]).
#[derive(Clone)]
pub(crate) enum TlsMode {
    /// Plain TCP.
    Off,
    /// TLS only (`"tls": true` on the bind).
    Strict(TlsAcceptor),
    /// Both: a connection opening with a TLS handshake gets TLS (`tls.enabled`).
    Detect(TlsAcceptor),
}

/// A bound listen socket and what it serves.
pub(crate) struct Listener {
    tcp: TcpListener,
    tls: TlsMode,
}

impl Listener {
    /// `bind_tls` is the bind's `tls`, `detect` is `tls.enabled`; `acceptor` is there when
    /// either asks for TLS.
    pub(crate) fn new(
        tcp: TcpListener,
        bind_tls: bool,
        detect: bool,
        acceptor: Option<TlsAcceptor>,
    ) -> Self {
        let tls = match acceptor {
            Some(a) if bind_tls => TlsMode::Strict(a),
            Some(a) if detect => TlsMode::Detect(a),
            _ => TlsMode::Off,
        };
        Self { tcp, tls }
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Waits for the next connection.
    pub(crate) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.tcp.accept().await
    }

    /// What the listener serves.
    pub(crate) fn tls(&self) -> &TlsMode {
        &self.tls
    }

    /// A word for the log.
    pub(crate) fn describe(&self) -> &'static str {
        match self.tls {
            TlsMode::Off => "plain TCP",
            TlsMode::Strict(_) => "TLS",
            TlsMode::Detect(_) => "plain TCP and TLS",
        }
    }
}

/// Asks the rate limiter whether to serve a new connection from `peer`; logs refusals (a ban
/// once at WARN, each refusal at DEBUG). The caller drops a refused socket unread.
pub(crate) fn admit(shared: &Shared, peer: SocketAddr) -> bool {
    match shared.rate_limiter.check(peer.ip()) {
        Decision::Allow => true,
        Decision::Refuse => {
            tracing::debug!(%peer, "connection refused: rate limit");
            false
        }
        Decision::Ban(d) => {
            tracing::warn!(
                ip = %peer.ip(),
                "more than {} connections per minute: IP banned for {} s",
                shared.rate_limiter.settings().max_connections_per_minute,
                d.as_secs()
            );
            false
        }
    }
}

/// Serves one accepted connection: the TLS handshake when the listener asks for it (inside
/// this task, within the login timeout), then the miner until it leaves, times out,
/// misbehaves fatally or the proxy stops.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: TlsMode,
    stop: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + LOGIN_TIMEOUT;
    let acceptor = match tls {
        TlsMode::Off => None,
        TlsMode::Strict(a) => Some(a),
        TlsMode::Detect(a) => {
            let mut first = [0u8; 1];
            let peeked = tokio::select! {
                () = stop.cancelled() => return,
                r = tokio::time::timeout_at(deadline, tcp.peek(&mut first)) => r,
            };
            match peeked {
                Ok(Ok(1..)) if first[0] == TLS_HANDSHAKE => Some(a),
                Ok(Ok(1..)) => None,
                Ok(Ok(0) | Err(_)) | Err(_) => return,
            }
        }
    };
    match acceptor {
        None => serve_miner(shared, tcp, peer, deadline, stop).await,
        // Boxed: the handshake and a rustls connection are kilobytes of future state, which
        // would otherwise size every plain miner's task too.
        Some(acceptor) => {
            Box::pin(serve_tls(shared, tcp, peer, acceptor, deadline, stop)).await;
        }
    }
}

/// The TLS part of [`serve`]: handshake within the login deadline, then the miner loop.
async fn serve_tls(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    deadline: Instant,
    stop: CancellationToken,
) {
    let handshake = tokio::select! {
        () = stop.cancelled() => return,
        r = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => r,
    };
    match handshake {
        Ok(Ok(stream)) => serve_miner(shared, stream, peer, deadline, stop).await,
        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// A byte stream to a miner, driven without blocking: the loop asks for readiness, then does
/// non-blocking reads and writes.
trait Transport {
    /// True when a read shorter than the space offered means nothing more is there now (a
    /// socket). False when the transport may hold read data back (TLS), so reading goes on
    /// until `WouldBlock`.
    const SHORT_READ_DRAINS: bool;
    /// Waits until the socket underneath is readable.
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
    /// Waits until the socket underneath is writable.
    fn wait_writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
    /// Appends what can be read now to `buf`; `Ok(0)` at end of stream, `WouldBlock` when
    /// nothing is there.
    fn read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Takes what it can of `bufs` now; `WouldBlock` when it takes nothing.
    fn write_now(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Pushes out what the transport buffered itself; `Ok(true)` once nothing is left.
    fn flush_now(&mut self) -> io::Result<bool>;
    /// Starts an orderly close (TLS `close_notify`), without waiting.
    fn close_now(&mut self);
}

impl Transport for TcpStream {
    const SHORT_READ_DRAINS: bool = true;

    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.readable()
    }

    fn wait_writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.writable()
    }

    fn read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.try_read_buf(buf)
    }

    fn write_now(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.try_write_vectored(bufs)
    }

    fn flush_now(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn close_now(&mut self) {}
}

/// Polls once with a waker that does nothing: the caller waits on socket readiness instead.
fn poll_now<R>(f: impl FnOnce(&mut Context<'_>) -> Poll<R>) -> Poll<R> {
    f(&mut Context::from_waker(Waker::noop()))
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Transport for TlsStream<TcpStream> {
    const SHORT_READ_DRAINS: bool = false;

    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.readable()
    }

    fn wait_writable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.writable()
    }

    fn read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut rb = ReadBuf::new(&mut chunk);
        match poll_now(|cx| Pin::new(&mut *self).poll_read(cx, &mut rb)) {
            Poll::Ready(Ok(())) => {
                buf.extend_from_slice(rb.filled());
                Ok(rb.filled().len())
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(would_block()),
        }
    }

    fn write_now(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match poll_now(|cx| Pin::new(&mut *self).poll_write_vectored(cx, bufs)) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(would_block()),
        }
    }

    fn flush_now(&mut self) -> io::Result<bool> {
        match poll_now(|cx| Pin::new(&mut *self).poll_flush(cx)) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    fn close_now(&mut self) {
        self.get_mut().1.send_close_notify();
        let _ = self.flush_now();
    }
}

/// What woke the loop.
enum Wake {
    Stop,
    Output,
    Readable,
    Writable,
    Deadline,
    Failed(&'static str),
}

/// Serves one miner over `io` until it leaves, times out, misbehaves fatally or the proxy
/// stops. `deadline` is the login deadline, counted from the accept.
async fn serve_miner<T: Transport>(
    shared: Arc<Shared>,
    mut io: T,
    peer: SocketAddr,
    mut deadline: Instant,
    stop: CancellationToken,
) {
    let id = shared.next_miner_id.fetch_add(1, Relaxed);
    let miner = Arc::new(Miner::new(id, peer));
    shared.register(&miner);
    let mut buf = BytesMut::new();
    let mut codec = LineCodec::default();
    let mut out: Vec<Bytes> = Vec::new();
    // Read before the first wait: a TLS handshake may have brought in the miner's first
    // lines with its last flight, and they sit decrypted in rustls, not in the socket.
    let mut read_first = true;

    let reason = loop {
        let blocked = match write_out(&mut io, &miner, &mut out) {
            Ok(Written::All) => false,
            Ok(Written::Blocked) => true,
            Ok(Written::Overflow) => {
                tracing::warn!(miner = id, %peer, "miner is not reading; send queue full");
                break "send queue full";
            }
            Err(_) => break "write error",
        };
        let wake = if std::mem::take(&mut read_first) {
            Wake::Readable
        } else {
            tokio::select! {
                biased;
                () = stop.cancelled() => Wake::Stop,
                () = miner.notify.notified() => Wake::Output,
                r = io.wait_readable() => {
                    r.map_or(Wake::Failed("read error"), |()| Wake::Readable)
                }
                r = io.wait_writable(), if blocked => {
                    r.map_or(Wake::Failed("write error"), |()| Wake::Writable)
                }
                () = tokio::time::sleep_until(deadline) => Wake::Deadline,
            }
        };
        match wake {
            Wake::Output | Wake::Writable => {}
            Wake::Readable => {
                if let Err(why) = read_lines(
                    &shared,
                    &miner,
                    &mut io,
                    &mut buf,
                    &mut codec,
                    &mut deadline,
                ) {
                    break why;
                }
            }
            Wake::Stop => {
                // Let the last answers out, briefly.
                let _ = tokio::time::timeout(STOP_FLUSH, drain(&mut io, &miner, &mut out)).await;
                break "proxy stopping";
            }
            Wake::Deadline => {
                if miner.phase() == MinerPhase::WaitLogin {
                    break "login timeout";
                }
                tracing::warn!(miner = id, %peer, "closing inactive miner");
                break "inactivity timeout";
            }
            Wake::Failed(why) => break why,
        }
    };
    tracing::debug!(miner = id, %peer, "closing: {reason}");
    io.close_now();
    miner.state().phase = MinerPhase::Closing;
    miner.close_outbox();
    shared.splitter.on_close(&miner);
    shared.events.close(&miner);
    shared.unregister(&miner);
}

/// Reads what the transport has and handles every complete line. `Err` names why the
/// connection must close.
fn read_lines<T: Transport>(
    shared: &Shared,
    miner: &Arc<Miner>,
    io: &mut T,
    buf: &mut BytesMut,
    codec: &mut LineCodec,
    deadline: &mut Instant,
) -> Result<(), &'static str> {
    for _ in 0..READS_PER_WAKE {
        buf.reserve(READ_CHUNK);
        match io.read_now(buf) {
            Ok(0) => return Err("closed by miner"),
            Ok(n) => {
                miner.rx.fetch_add(n as u64, Relaxed);
                loop {
                    match codec.decode(buf) {
                        Ok(Some(line)) => {
                            if miner.handle_line(shared, &line) == Flow::Active
                                && miner.phase() != MinerPhase::WaitLogin
                            {
                                *deadline = Instant::now() + INACTIVITY_TIMEOUT;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(miner = miner.id, peer = %miner.peer, "{e}; closing");
                            return Err("line too long");
                        }
                    }
                }
                if T::SHORT_READ_DRAINS && n < READ_CHUNK {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Err("read error"),
        }
    }
    if buf.is_empty() {
        // Idle miners hold no read buffer.
        *buf = BytesMut::new();
    }
    Ok(())
}

/// How far [`write_out`] got.
enum Written {
    /// Everything queued went out.
    All,
    /// The socket is full; the rest waits for writability.
    Blocked,
    /// The miner's outbox overflowed: it is not reading.
    Overflow,
}

/// Writes queued output as far as the transport takes it now.
fn write_out<T: Transport>(io: &mut T, miner: &Miner, out: &mut Vec<Bytes>) -> io::Result<Written> {
    loop {
        // Topped up on every pass, blocked or not: this is also where an overflow shows.
        if miner.take_output(out, WRITE_BATCH).is_none() {
            return Ok(Written::Overflow);
        }
        if out.is_empty() {
            break;
        }
        let written = {
            let slices: Vec<IoSlice<'_>> = out.iter().map(|b| IoSlice::new(b)).collect();
            match io.write_now(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.flush_now()?;
                    return Ok(Written::Blocked);
                }
                Err(e) => return Err(e),
            }
        };
        miner.tx.fetch_add(written as u64, Relaxed);
        advance(out, written);
    }
    Ok(if io.flush_now()? {
        Written::All
    } else {
        Written::Blocked
    })
}

/// Writes everything queued, waiting for the socket as needed (bound it with a timeout).
async fn drain<T: Transport>(io: &mut T, miner: &Miner, out: &mut Vec<Bytes>) -> io::Result<()> {
    while let Written::Blocked = write_out(io, miner, out)? {
        io.wait_writable().await?;
    }
    Ok(())
}

/// Drops `n` written bytes from the front of `out`.
fn advance(out: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for chunk in out.iter_mut() {
        if n >= chunk.len() {
            n -= chunk.len();
            done += 1;
        } else {
            chunk.advance(n);
            break;
        }
    }
    out.drain(..done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_and_slices() {
        let mut v = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"f"),
        ];
        advance(&mut v, 4);
        assert_eq!(v, vec![Bytes::from_static(b"e"), Bytes::from_static(b"f")]);
        advance(&mut v, 2);
        assert!(v.is_empty());
    }
}
