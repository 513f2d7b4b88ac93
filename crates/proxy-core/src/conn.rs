//! The socket side of a miner: listeners, reading lines and writing answers and jobs over
//! plain TCP or TLS, and the ready queues its readiness goes to. It knows nothing of the
//! protocol: the owner of a [`Conn`] (the miner, `miner.rs`) is an [`Endpoint`], a waker
//! with byte counters; what the lines mean, and when to close, is the owner's business
//! (`miner.rs`), and who drives which connection is the driver's (`serve.rs`).
//!
//! A connection costs no tokio task: its owner is its own [`Waker`]. When the socket becomes
//! ready, tokio wakes the owner, which puts itself (once) in a [`ReadyQueue`]; a dispatcher
//! task takes it from there and drives it: [`Conn::next_line`] reads without blocking until
//! the socket has nothing more, and registers the owner's waker for the next readiness.
//!
//! Output is written by whoever produces it (the dispatcher for answers, the upstream's task
//! or a fan-out thread for jobs, the upstream's task for pool answers) straight to the socket
//! when nothing is queued before it ([`Conn::push_parts`]), so a job reaches 256 miners without
//! waking 256 tasks; only what the socket does not take waits in the outbox, for
//! writability. One exception: while the dispatcher handles lines that were read together
//! (a miner's pipelined login, [`Conn::next_line`] sees more after the one it hands over),
//! what is written to that miner is held and goes out in one write at the dispatcher's
//! [`Conn::flush`] after the drive (an SV1 login: one write for its three answers, not
//! three). A miner that does not read keeps being served until its outbox passes
//! [`MAX_OUTBOX_BYTES`], its timeout strikes or the proxy stops.
//!
//! No read buffer is kept while a miner is idle (it is dropped once every complete line is
//! handled), a read that is exactly one line (a share) is handled from a stack buffer and
//! takes none, and an empty outbox holds no allocation. A TLS connection still has rustls' own
//! record buffers.
//!
//! Lock order: a miner's socket lock is taken last and never held while calling out: lines
//! are handled, and closes run, after it is released.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Buf, Bytes, BytesMut};
use stratum_proto::LineCodec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Decoder;

use crate::lock;
use crate::ratelimit::Decision;
use crate::ratelimit::RateLimiter;

/// Most bytes a miner's outbox may hold before the miner is disconnected as too slow.
pub(crate) const MAX_OUTBOX_BYTES: usize = 256 * 1024;
/// Bytes offered to each read call; also the size of the stack buffer a read lands in when
/// nothing waits in the read buffer ([`Conn::next_line`]).
pub(crate) const READ_CHUNK: usize = 1024;
/// A read onto the stack holds at most [`READ_CHUNK`] bytes, so a line found there is never
/// too long for the codec.
const _: () = assert!(READ_CHUNK <= stratum_proto::MAX_LINE_LENGTH);
/// Chunks per vectored write.
const WRITE_BATCH: usize = 64;

/// The room first reserved for output held while a drive is corked ([`Bufs::corked`]): an
/// SV1 login's answers, difficulty and job fit (a mainnet job's `mining.notify` with a
/// 12-hash merkle branch is ~1.3 KB; 1 KB cost two reallocations a login). Given back at the
/// flush.
const HELD_START: usize = 4096;

/// The owner of a [`Conn`], as the socket side sees it: the waker its readiness wakes (which
/// queues it for a dispatcher), its byte counters and a name for the log. Implemented by the
/// miner; the calls are generic, so no indirection is paid on the share path.
pub(crate) trait Endpoint: Wake + Send + Sync + 'static {
    /// Bytes received, counted as they are read.
    fn rx_bytes(&self) -> &AtomicU64;
    /// Bytes sent, counted as the socket takes them.
    fn tx_bytes(&self) -> &AtomicU64;
    /// Process-unique id and remote address, for the log.
    fn who(&self) -> (u64, SocketAddr);
}

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
pub(crate) fn admit(limiter: &RateLimiter, peer: SocketAddr) -> bool {
    match limiter.check(peer.ip()) {
        Decision::Allow => true,
        Decision::Refuse => {
            tracing::debug!(%peer, "connection refused: rate limit");
            false
        }
        Decision::Ban(d) => {
            tracing::warn!(
                ip = %peer.ip(),
                "more than {} connections per minute: IP banned for {} s",
                limiter.settings().max_connections_per_minute,
                d.as_secs()
            );
            false
        }
    }
}

/// The stream to a miner.
pub(crate) enum Io {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS; boxed: a rustls connection is kilobytes.
    Tls(Box<TlsStream<TcpStream>>),
    /// Closed: the socket is gone (dropping it deregistered it and released the wakers).
    Closed,
}

/// Polls once with a waker that does nothing: readiness is waited for on the TCP socket
/// underneath, with the miner's waker.
fn poll_now<R>(f: impl FnOnce(&mut Context<'_>) -> Poll<R>) -> Poll<R> {
    f(&mut Context::from_waker(Waker::noop()))
}

/// One non-blocking read of `tcp` through `read` (at most `offered` bytes): a read shorter
/// than `offered` clears the socket's readiness, so the next read waits for an event instead
/// of returning EAGAIN; the bytes read are returned all the same. 0 at the end of the stream.
fn short_read(
    tcp: &TcpStream,
    offered: usize,
    mut read: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    let mut got = 0;
    let r = tcp.try_io(Interest::READABLE, || {
        let n = read()?;
        got = n;
        if n > 0 && n < offered {
            Err(would_block())
        } else {
            Ok(n)
        }
    });
    match r {
        Err(e) if got > 0 && e.kind() == io::ErrorKind::WouldBlock => Ok(got),
        r => r,
    }
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Io {
    /// Appends what can be read now to `buf`: the byte count, 0 at the end of the stream,
    /// `WouldBlock` when nothing is there.
    ///
    /// On TCP a read shorter than the space offered drains the socket; the read is then
    /// reported to tokio as `WouldBlock` (its bytes kept), which clears the socket's readiness
    /// so that the next poll registers for the next event instead of costing a read that
    /// returns EAGAIN. tokio keeps the readiness when an event arrived meanwhile, so no data
    /// is missed.
    fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Io::Tcp(tcp) => {
                let tcp = &*tcp;
                let offered = buf.capacity() - buf.len();
                short_read(tcp, offered, || tcp.try_read_buf(buf))
            }
            Io::Tls(tls) => {
                let mut chunk = [0u8; READ_CHUNK];
                let mut rb = ReadBuf::new(&mut chunk);
                match poll_now(|cx| Pin::new(&mut **tls).poll_read(cx, &mut rb)) {
                    Poll::Ready(Ok(())) => {
                        buf.extend_from_slice(rb.filled());
                        Ok(rb.filled().len())
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(would_block()),
                }
            }
            Io::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// [`Io::read`] onto a slice (the caller's stack buffer): the byte count, 0 at the end of
    /// the stream, `WouldBlock` when nothing is there. A short TCP read clears the socket's
    /// readiness as in [`Io::read`].
    fn read_into(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(tcp) => {
                let tcp = &*tcp;
                let offered = dst.len();
                short_read(tcp, offered, || tcp.try_read(dst))
            }
            Io::Tls(tls) => {
                let mut rb = ReadBuf::new(dst);
                match poll_now(|cx| Pin::new(&mut **tls).poll_read(cx, &mut rb)) {
                    Poll::Ready(Ok(())) => Ok(rb.filled().len()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(would_block()),
                }
            }
            Io::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Takes what it can of `bufs` now; `WouldBlock` when it takes nothing.
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Io::Tcp(tcp) => tcp.try_write_vectored(bufs),
            Io::Tls(tls) => match poll_now(|cx| Pin::new(&mut **tls).poll_write_vectored(cx, bufs))
            {
                Poll::Ready(r) => r,
                Poll::Pending => Err(would_block()),
            },
            Io::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Pushes out what TLS buffered itself; `Ok(true)` once nothing is left.
    fn flush(&mut self) -> io::Result<bool> {
        match self {
            Io::Tls(tls) => match poll_now(|cx| Pin::new(&mut **tls).poll_flush(cx)) {
                Poll::Ready(r) => r.map(|()| true),
                Poll::Pending => Ok(false),
            },
            Io::Tcp(_) | Io::Closed => Ok(true),
        }
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Io::Tcp(t) => Some(t),
            Io::Tls(t) => Some(t.get_ref().0),
            Io::Closed => None,
        }
    }

    /// Registers `cx`'s waker for readability; `Ready` when the socket is readable already.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp()
            .map_or(Poll::Ready(Err(io::ErrorKind::NotConnected.into())), |t| {
                t.poll_read_ready(cx)
            })
    }

    /// Registers `cx`'s waker for writability; `Ready` when the socket is writable already.
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp()
            .map_or(Poll::Ready(Err(io::ErrorKind::NotConnected.into())), |t| {
                t.poll_write_ready(cx)
            })
    }

    /// Starts an orderly close (TLS `close_notify`), without waiting.
    fn close(&mut self) {
        if let Io::Tls(tls) = self {
            tls.get_mut().1.send_close_notify();
            let _ = self.flush();
        }
    }
}

/// The socket of one miner and what waits to be read from it or written to it. Lives in its
/// [`Endpoint`] (the miner), behind its own lock.
pub(crate) struct Conn {
    io: Io,
    /// The buffers, only while something is in them: an idle miner holds none.
    bufs: Option<Box<Bufs>>,
    /// Why the connection must close, set where it cannot be closed at once (a write from
    /// another task failed, the outbox overflowed); the next drive closes it.
    failed: Option<&'static str>,
}

/// What a connection has read and not handled yet, and what waits to be written.
#[derive(Default)]
struct Bufs {
    /// Bytes read and not yet handled.
    rbuf: BytesMut,
    codec: LineCodec,
    /// Output the socket did not take yet, in order.
    outbox: VecDeque<Bytes>,
    /// Bytes in `held` and `outbox`.
    out_bytes: usize,
    /// Set while the dispatcher handles lines that were read together (a miner's pipelined
    /// login): what is written to the miner meanwhile is held, and goes out in one write at
    /// the dispatcher's [`Conn::flush`].
    corked: bool,
    /// Output held while `corked`, before anything in `outbox` (it is used only while the
    /// outbox is empty).
    held: BytesMut,
}

impl Bufs {
    fn is_empty(&self) -> bool {
        self.rbuf.is_empty() && self.outbox.is_empty() && self.held.is_empty()
    }
}

impl Conn {
    /// A connection on `io`, with empty buffers.
    pub(crate) fn new(io: Io) -> Self {
        Self {
            io,
            bufs: None,
            failed: None,
        }
    }

    /// A connection with no socket (a miner built by tests).
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        Self::new(Io::Closed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.io, Io::Closed)
    }

    /// Drops the buffers once nothing is in them.
    fn release_empty(&mut self) {
        if self.bufs.as_ref().is_some_and(|b| b.is_empty()) {
            self.bufs = None;
        }
    }

    /// True while output waits for the socket.
    pub(crate) fn has_output(&self) -> bool {
        self.bufs
            .as_ref()
            .is_some_and(|b| !b.outbox.is_empty() || !b.held.is_empty())
    }

    /// True while output is held for the dispatcher's flush ([`Bufs::corked`]).
    pub(crate) fn holds_output(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.held.is_empty())
    }

    /// False once the connection is closed or marked failed: nothing more is written.
    pub(crate) fn is_usable(&self) -> bool {
        !self.is_closed() && self.failed.is_none()
    }

    /// Marks the connection failed with `why`; the next [`Conn::next_line`] returns
    /// [`Next::Close`] with it.
    pub(crate) fn set_failed(&mut self, why: &'static str) {
        self.failed = Some(why);
    }

    /// Closes the connection (TLS `close_notify` started), drops its buffers and hands back
    /// the socket, for the caller to drop outside the lock (dropping it deregisters it and
    /// releases the wakers it held). `None` when it was closed already.
    pub(crate) fn shut(&mut self) -> Option<Io> {
        if self.is_closed() {
            return None;
        }
        self.bufs = None;
        let mut io = std::mem::replace(&mut self.io, Io::Closed);
        io.close();
        Some(io)
    }
}

/// The line `read` holds when it is exactly one line as [`LineCodec`] frames it (the only
/// `\n` is its last byte; a `\r` before it dropped) and not blank (the codec skips those):
/// its length. `None` for anything else.
fn lone_line(read: &[u8]) -> Option<usize> {
    let (&last, body) = read.split_last()?;
    if last != b'\n' || memchr::memchr(b'\n', body).is_some() {
        return None;
    }
    let line = body.strip_suffix(b"\r").unwrap_or(body);
    (!line.iter().all(u8::is_ascii_whitespace)).then_some(line.len())
}

/// What [`Conn::next_line`] found.
pub(crate) enum Next {
    /// A complete line.
    Line(BytesMut),
    /// A complete line that came alone in one read onto the caller's stack buffer: it is
    /// `scratch[..len]` (no heap buffer was taken for it).
    Short(usize),
    /// Nothing more now; the waker is registered for readability.
    Idle,
    /// The connection must close, for this reason.
    Close(&'static str),
}

impl Conn {
    /// The next complete line: from what was read already, else from the socket. Registers
    /// `cx` for readability once the socket has nothing more.
    ///
    /// When nothing read waits, the socket is read onto `scratch` first: a read holding
    /// exactly one line (a share, a keepalive: the usual case) is handed over there as
    /// [`Next::Short`], and no read buffer is allocated; anything else (several lines, part of
    /// one, a blank line) is copied into the read buffer and framed by the codec as before.
    pub(crate) fn next_line<E: Endpoint>(
        &mut self,
        miner: &E,
        cx: &mut Context<'_>,
        scratch: &mut [u8; READ_CHUNK],
    ) -> Next {
        if let Some(why) = self.failed {
            return Next::Close(why);
        }
        if self.is_closed() {
            return Next::Idle;
        }
        if self.bufs.as_ref().is_none_or(|b| b.rbuf.is_empty()) {
            // The codec holds no state over an empty buffer: what it would make of this read
            // alone is what it makes of it in the read buffer.
            match self.io.read_into(scratch) {
                Ok(0) => return Next::Close("closed by miner"),
                Ok(n) => {
                    miner.rx_bytes().fetch_add(n as u64, Relaxed);
                    if let Some(len) = lone_line(&scratch[..n]) {
                        return Next::Short(len);
                    }
                    let b = self.bufs.get_or_insert_with(Box::default);
                    b.rbuf.extend_from_slice(&scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(next) = self.wait_readable(cx) {
                        return next;
                    }
                }
                Err(_) => return Next::Close("read error"),
            }
        }
        loop {
            let b = self.bufs.get_or_insert_with(Box::default);
            match b.codec.decode(&mut b.rbuf) {
                Ok(Some(line)) => {
                    // More lines came with this one (a pipelined login): their answers
                    // go out together at the end of the drive.
                    if memchr::memchr(b'\n', &b.rbuf).is_some() {
                        b.corked = true;
                    }
                    return Next::Line(line);
                }
                Ok(None) => {}
                Err(e) => {
                    let (id, peer) = miner.who();
                    tracing::warn!(miner = id, %peer, "{e}; closing");
                    return Next::Close("line too long");
                }
            }
            b.rbuf.reserve(READ_CHUNK);
            match self.io.read(&mut b.rbuf) {
                Ok(0) => return Next::Close("closed by miner"),
                Ok(n) => {
                    miner.rx_bytes().fetch_add(n as u64, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(next) = self.wait_readable(cx) {
                        return next;
                    }
                }
                Err(_) => return Next::Close("read error"),
            }
        }
    }

    /// The socket had nothing to read: an empty read buffer is dropped (idle miners hold
    /// none) and `cx` registered for readability. `None` when the socket became readable
    /// meanwhile (read again), else what [`Conn::next_line`] returns: [`Next::Idle`] (the
    /// buffers released if empty) or [`Next::Close`] on a socket error.
    fn wait_readable(&mut self, cx: &mut Context<'_>) -> Option<Next> {
        if let Some(b) = self.bufs.as_mut().filter(|b| b.rbuf.is_empty()) {
            b.rbuf = BytesMut::new();
        }
        match self.io.poll_readable(cx) {
            Poll::Pending => {
                self.release_empty();
                Some(Next::Idle)
            }
            Poll::Ready(Ok(())) => None,
            Poll::Ready(Err(_)) => Some(Next::Close("read error")),
        }
    }

    /// Queues `head` then `chunks` and writes as much of the outbox as the socket takes now
    /// (in one write when nothing waits before them); registers `miner`'s waker for
    /// writability when some is left. `head` is borrowed (e.g. lines encoded into a reused
    /// buffer): only what the socket does not take of it at once is copied into the outbox.
    /// `Err` names why the connection must close.
    pub(crate) fn push_parts<E: Endpoint>(
        &mut self,
        head: &[u8],
        chunks: &[Bytes],
        miner: &Arc<E>,
    ) -> Result<(), &'static str> {
        if let Some(b) = self.bufs.as_mut().filter(|b| b.corked) {
            // Held for the dispatcher's flush, in order after what waits already.
            if b.outbox.is_empty() {
                if b.held.capacity() == 0 {
                    b.held.reserve(HELD_START);
                }
                b.held.extend_from_slice(head);
                for c in chunks {
                    b.held.extend_from_slice(c);
                }
            } else {
                if !head.is_empty() {
                    b.outbox.push_back(Bytes::copy_from_slice(head));
                }
                b.outbox.extend(chunks.iter().cloned());
            }
            b.out_bytes += head.len() + chunks.iter().map(Bytes::len).sum::<usize>();
            return self.check_outbox(miner);
        }
        let mut written = 0;
        if !self.has_output() && !self.is_closed() {
            // Nothing waits: write straight from the caller's bytes, no queue.
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let mut k = 0;
            let first = Some(head).filter(|h| !h.is_empty());
            let parts = first.into_iter().chain(chunks.iter().map(|c| &c[..]));
            for (slot, part) in slices.iter_mut().zip(parts) {
                *slot = IoSlice::new(part);
                k += 1;
            }
            match self.io.write(&slices[..k]) {
                Ok(n) => {
                    miner.tx_bytes().fetch_add(n as u64, Relaxed);
                    written = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err("write error"),
            }
            if written == head.len() + chunks.iter().map(Bytes::len).sum::<usize>() {
                return match self.io.flush() {
                    Ok(true) => Ok(()),
                    Ok(false) => self.wait_writable(miner),
                    Err(_) => Err("write error"),
                };
            }
        }
        let b = self.bufs.get_or_insert_with(Box::default);
        if written >= head.len() {
            written -= head.len();
        } else {
            let rest = Bytes::copy_from_slice(&head[written..]);
            written = 0;
            b.out_bytes += rest.len();
            b.outbox.push_back(rest);
        }
        for c in chunks {
            let c = if written >= c.len() {
                written -= c.len();
                continue;
            } else {
                let rest = c.slice(written..);
                written = 0;
                rest
            };
            b.out_bytes += c.len();
            b.outbox.push_back(c);
        }
        self.check_outbox(miner)?;
        self.flush(miner)
    }

    /// `Err` (and the queued output dropped) once more than [`MAX_OUTBOX_BYTES`] wait.
    fn check_outbox<E: Endpoint>(&mut self, miner: &Arc<E>) -> Result<(), &'static str> {
        let Some(b) = self
            .bufs
            .as_mut()
            .filter(|b| b.out_bytes > MAX_OUTBOX_BYTES)
        else {
            return Ok(());
        };
        let (id, peer) = miner.who();
        tracing::warn!(miner = id, %peer, "miner is not reading; send queue full");
        b.outbox = VecDeque::new();
        b.held = BytesMut::new();
        b.out_bytes = 0;
        self.release_empty();
        Err("send queue full")
    }

    /// Writes the output held and the outbox as far as the socket takes it now (and ends
    /// the hold: the dispatcher calls this after each drive); registers `miner`'s waker for
    /// writability when some is left.
    pub(crate) fn flush<E: Endpoint>(&mut self, miner: &Arc<E>) -> Result<(), &'static str> {
        if self.is_closed() {
            return Ok(());
        }
        let Self { io, bufs, .. } = self;
        if let Some(b) = bufs.as_mut() {
            b.corked = false;
            if !b.held.is_empty() {
                // Written from where it is when the socket takes it all (the usual case);
                // what it does not take goes to the front of the outbox.
                match io.write(&[IoSlice::new(&b.held)]) {
                    Ok(n) => {
                        miner.tx_bytes().fetch_add(n as u64, Relaxed);
                        b.out_bytes -= n;
                        b.held.advance(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err("write error"),
                }
                if !b.held.is_empty() {
                    b.outbox.push_front(b.held.split().freeze());
                }
                b.held = BytesMut::new();
            }
            while !b.outbox.is_empty() {
                let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
                let mut k = 0;
                for (slot, chunk) in slices.iter_mut().zip(b.outbox.iter()) {
                    *slot = IoSlice::new(chunk);
                    k += 1;
                }
                match io.write(&slices[..k]) {
                    Ok(0) => return Err("write error"),
                    Ok(n) => {
                        miner.tx_bytes().fetch_add(n as u64, Relaxed);
                        b.out_bytes -= n;
                        advance(&mut b.outbox, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if io.flush().is_err() {
                            return Err("write error");
                        }
                        return self.wait_writable(miner);
                    }
                    Err(_) => return Err("write error"),
                }
            }
            // Nothing left: give the queue's memory back.
            b.outbox = VecDeque::new();
        }
        self.release_empty();
        match self.io.flush() {
            Ok(true) => Ok(()),
            Ok(false) => self.wait_writable(miner),
            Err(_) => Err("write error"),
        }
    }

    fn wait_writable<E: Endpoint>(&mut self, miner: &Arc<E>) -> Result<(), &'static str> {
        let waker = Waker::from(miner.clone());
        match self.io.poll_writable(&mut Context::from_waker(&waker)) {
            Poll::Pending => Ok(()),
            // Writable again already: let the dispatcher write the rest.
            Poll::Ready(Ok(())) => {
                miner.wake_by_ref();
                Ok(())
            }
            Poll::Ready(Err(_)) => Err("write error"),
        }
    }
}

/// Drops `n` written bytes from the front of `out`.
fn advance(out: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = out.front_mut() else { return };
        if n >= front.len() {
            n -= front.len();
            out.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
}

/// Endpoints (miners) whose sockets became ready, waiting for their dispatcher. An endpoint
/// is pushed once per wake-up (its waker keeps the "queued" flag), so the queue holds at
/// most one entry per endpoint.
pub(crate) struct ReadyQueue<T> {
    queue: Mutex<Vec<Arc<T>>>,
    notify: Notify,
}

impl<T> ReadyQueue<T> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            notify: Notify::new(),
        }
    }

    /// A queue no dispatcher serves (a miner built by tests).
    #[cfg(test)]
    pub(crate) fn detached() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// Queues `item` and wakes the dispatcher when the queue was empty.
    pub(crate) fn push(&self, item: Arc<T>) {
        let was_empty = {
            let mut q = lock(&self.queue);
            let e = q.is_empty();
            q.push(item);
            e
        };
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Swaps what is queued into `batch` (empty on entry), keeping both allocations.
    pub(crate) fn take(&self, batch: &mut Vec<Arc<T>>) {
        std::mem::swap(&mut *lock(&self.queue), batch);
    }

    /// Completes after the next [`ReadyQueue::push`] into an empty queue (or at once when one
    /// happened since the last wait).
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A miner on the server side of a loopback connection, and the client side.
    async fn pair() -> (Arc<Miner>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, peer) = l.accept().await.unwrap();
        let m = Miner::new(1, peer, Conn::new(Io::Tcp(server)), ReadyQueue::detached());
        (Arc::new(m), client)
    }

    type Miner = crate::miner::Miner<crate::family::CryptoNote>;
    use std::time::Duration;

    fn queued(m: &Miner) -> usize {
        lock(&m.ready.queue).len()
    }

    #[tokio::test]
    async fn readiness_queues_the_miner_once_and_its_lines_come_out() {
        let (m, client) = pair().await;
        let waker = Waker::from(m.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            m.conn().next_line(&*m, &mut cx, &mut [0; READ_CHUNK]),
            Next::Idle
        ));
        assert_eq!(queued(&m), 0);
        client.try_write(b"{\"a\":1}\n{\"b\":").unwrap();
        for _ in 0..200 {
            if queued(&m) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(queued(&m), 1, "woken into its dispatcher's queue");
        m.wake_by_ref();
        assert_eq!(queued(&m), 1, "queued once until the dispatcher takes it");
        match m.conn().next_line(&*m, &mut cx, &mut [0; READ_CHUNK]) {
            Next::Line(l) => assert_eq!(&l[..], b"{\"a\":1}"),
            _ => panic!("the complete line comes out"),
        }
        assert!(
            matches!(
                m.conn().next_line(&*m, &mut cx, &mut [0; READ_CHUNK]),
                Next::Idle
            ),
            "half a line waits"
        );
        assert_eq!(m.rx.load(Relaxed), 13);
        m.shut();
    }

    #[tokio::test]
    async fn answers_to_lines_read_together_go_out_in_one_write_at_the_flush() {
        let (m, client) = pair().await;
        let waker = Waker::from(m.clone());
        let mut cx = Context::from_waker(&waker);
        let mut scratch = [0; READ_CHUNK];
        idle_then_sent(&m, &client, b"{\"a\":1}\n{\"b\":2}\n").await;
        assert!(matches!(
            m.conn().next_line(&*m, &mut cx, &mut scratch),
            Next::Line(_)
        ));
        let job = Bytes::from_static(b"job\n");
        assert!(m.send_parts(b"one\n", &[]));
        assert_eq!(m.tx.load(Relaxed), 0, "held while more lines wait");
        assert!(m.has_output());
        assert!(matches!(
            m.conn().next_line(&*m, &mut cx, &mut scratch),
            Next::Line(_)
        ));
        assert!(m.send_parts(b"two\n", std::slice::from_ref(&job)));
        assert_eq!(m.tx.load(Relaxed), 0, "held until the drive's flush");
        m.conn().flush(&m).unwrap();
        assert_eq!(m.tx.load(Relaxed), 12, "all of it in the flush");
        assert!(!m.has_output());
        let mut got = [0u8; 64];
        let mut n = 0;
        for _ in 0..200 {
            match client.try_read(&mut got[n..]) {
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if n >= 12 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(&got[..n], b"one\ntwo\njob\n");
        // A line read alone is answered at once.
        idle_then_sent(&m, &client, b"{\"c\":3}\n").await;
        assert!(matches!(
            m.conn().next_line(&*m, &mut cx, &mut scratch),
            Next::Short(_)
        ));
        assert!(m.send_parts(b"three\n", &[]));
        assert_eq!(m.tx.load(Relaxed), 18);
        m.shut();
    }

    #[tokio::test]
    async fn a_borrowed_head_goes_out_before_its_chunks_and_what_waits_is_a_copy() {
        let (m, client) = pair().await;
        if let Io::Tcp(s) = &m.conn().io {
            socket2::SockRef::from(s)
                .set_send_buffer_size(4096)
                .unwrap();
        }
        // More than the socket takes at once, less than the outbox's bound.
        let mut head: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let chunk = Bytes::from_static(b"{\"job\":1}\n");
        let mut expected = head.clone();
        expected.extend_from_slice(&chunk);
        assert!(m.send_parts(&head, std::slice::from_ref(&chunk)));
        assert!(m.has_output(), "the socket did not take it all");
        // The caller's buffer is its own again at once (the next lines are encoded there).
        head.fill(0);
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..2000 {
            if got.len() == expected.len() {
                break;
            }
            match client.try_read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    m.conn().flush(&m).unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), expected.len());
        assert!(
            got == expected,
            "the head's bytes, then the chunk's, in order"
        );
        assert!(!m.has_output());
        assert_eq!(m.tx.load(Relaxed), expected.len() as u64);
        m.shut();
    }

    /// Waits until the miner was woken for readability (queued), and takes it from its
    /// queue as the dispatcher does.
    /// Checks that `m` has no line yet (which registers its waker), has `client` send
    /// `bytes`, and waits for `m`'s wake-up.
    async fn idle_then_sent(m: &Arc<Miner>, client: &TcpStream, bytes: &[u8]) {
        let waker = Waker::from(m.clone());
        let mut cx = Context::from_waker(&waker);
        let mut scratch = [0; READ_CHUNK];
        assert!(matches!(
            m.conn().next_line(&**m, &mut cx, &mut scratch),
            Next::Idle
        ));
        client.try_write(bytes).unwrap();
        woken(m).await;
    }

    async fn woken(m: &Miner) {
        for _ in 0..200 {
            if queued(m) > 0 {
                lock(&m.ready.queue).clear();
                m.queued.store(false, std::sync::atomic::Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the miner was not woken");
    }

    #[tokio::test]
    async fn a_read_of_one_line_is_handed_over_on_the_stack_with_no_buffer_taken() {
        let (m, client) = pair().await;
        let waker = Waker::from(m.clone());
        let mut cx = Context::from_waker(&waker);
        let mut scratch = [0; READ_CHUNK];
        idle_then_sent(&m, &client, b"{\"a\":1}\r\n").await;
        match m.conn().next_line(&*m, &mut cx, &mut scratch) {
            Next::Short(len) => assert_eq!(&scratch[..len], b"{\"a\":1}"),
            _ => panic!("a lone line comes out of the stack buffer"),
        }
        assert!(m.conn().bufs.is_none(), "no read buffer was taken");
        assert!(matches!(
            m.conn().next_line(&*m, &mut cx, &mut scratch),
            Next::Idle
        ));
        assert!(m.conn().bufs.is_none(), "idle again, nothing held");

        // A blank line is skipped as the codec skips it; the next lines come out in order.
        client.try_write(b" \r\n").unwrap();
        woken(&m).await;
        assert!(matches!(
            m.conn().next_line(&*m, &mut cx, &mut scratch),
            Next::Idle
        ));
        assert!(m.conn().bufs.is_none(), "a blank line leaves nothing held");
        client.try_write(b"{\"b\":2}\n{\"c\"").unwrap();
        woken(&m).await;
        match m.conn().next_line(&*m, &mut cx, &mut scratch) {
            Next::Line(l) => assert_eq!(&l[..], b"{\"b\":2}"),
            _ => panic!("more than one line goes through the read buffer"),
        }
        idle_then_sent(&m, &client, b":3}\n").await;
        match m.conn().next_line(&*m, &mut cx, &mut scratch) {
            Next::Line(l) => assert_eq!(&l[..], b"{\"c\":3}", "the rest of a waiting line"),
            _ => panic!("a line begun in the read buffer ends there"),
        }
        assert_eq!(m.rx.load(Relaxed), 9 + 3 + 12 + 4);
        m.shut();
    }

    #[test]
    fn a_lone_line_is_what_the_codec_makes_of_the_read() {
        let reads: [&[u8]; 12] = [
            b"{}\n",
            b"{}\r\n",
            b"{}",
            b"\n",
            b"\r\n",
            b" \t\r\n",
            b"{}\n{}\n",
            b"{}\n{",
            b"a\rb\n",
            b"a\r\r\n",
            b"",
            b"\n{}\n",
        ];
        for read in reads {
            let mut buf = BytesMut::from(read);
            let mut codec = LineCodec::default();
            let first = codec.decode(&mut buf).unwrap();
            let alone = first.filter(|_| buf.is_empty()).map(|l| l.to_vec());
            // Anything else goes the long way, through the codec itself.
            if let Some(len) = lone_line(read) {
                let lone = read[..len].to_vec();
                assert_eq!(Some(lone), alone, "{:?}", String::from_utf8_lossy(read));
            }
        }
        assert_eq!(lone_line(b"{}\n"), Some(2));
        assert_eq!(lone_line(b"{}\r\n"), Some(2));
        assert_eq!(lone_line(b"a\r\r\n"), Some(2));
    }

    #[tokio::test]
    async fn shutting_a_miner_releases_the_references_its_socket_held() {
        let (m, _client) = pair().await;
        let waker = Waker::from(m.clone());
        let mut cx = Context::from_waker(&waker);
        // Register the miner as the socket's reader and writer waker.
        assert!(matches!(
            m.conn().next_line(&*m, &mut cx, &mut [0; READ_CHUNK]),
            Next::Idle
        ));
        let _ = m.conn().io.poll_writable(&mut cx);
        drop(waker);
        assert!(Arc::strong_count(&m) > 1, "the socket holds the miner");
        let weak = Arc::downgrade(&m);
        assert!(m.shut());
        assert!(!m.shut(), "shut once");
        drop(m);
        assert!(
            weak.upgrade().is_none(),
            "nothing keeps a closed miner alive"
        );
    }

    #[test]
    fn advance_drops_and_slices() {
        let mut v: VecDeque<Bytes> = [
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"f"),
        ]
        .into();
        advance(&mut v, 4);
        assert_eq!(v, [Bytes::from_static(b"e"), Bytes::from_static(b"f")]);
        advance(&mut v, 2);
        assert!(v.is_empty());
    }
}
#[cfg(test)]
mod size_budget {
    /// The per-miner memory budget (issue 5: ≤ 1,000 bytes of RSS per logged-in miner, of
    /// which tokio's socket registration takes 256): the miner itself, socket lock and all,
    /// stays within 240 bytes, an idle connection holds no buffer, and the login box is
    /// 40 bytes (a 48-byte malloc chunk; 64 bytes and an 80-byte chunk with `Arc<str>`'s
    /// two-word references).
    #[test]
    fn a_miner_stays_small() {
        assert!(std::mem::size_of::<crate::miner::Miner<crate::family::CryptoNote>>() <= 240);
        assert!(std::mem::size_of::<super::Conn>() <= 64);
        assert!(std::mem::size_of::<crate::login::LoginInfo>() <= 40);
    }
}
