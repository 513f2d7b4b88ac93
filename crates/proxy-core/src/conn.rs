//! Listeners, and the socket side of a miner: reading lines, writing answers and jobs, over
//! plain TCP or TLS, without a task per connection.
//!
//! ```text
//! accept ─▶ rate limit (refused: dropped before any read)
//!   plain TCP: ──────────────────────────────────────────▶ Miner ─▶ drive()
//!   TLS:       task: [detect] handshake, within the login timeout ─▶ Miner ─▶ drive()
//!
//! socket readable/writable ─▶ the miner's waker ─▶ its dispatcher's ready queue
//! dispatcher task: for each ready miner: drive() = read and handle every complete line,
//!                  write what waits, register for the next readiness
//! splitter (job, pool answer): Miner::send ─▶ written to the socket at once when nothing
//!                  waits before it; the rest waits for writability
//! tick (1 s): miners past their login or inactivity deadline are closed
//! ```
//!
//! A connected miner costs no tokio task: its [`Miner`] is its own [`Waker`]. When the socket
//! becomes ready, tokio wakes the miner, which puts itself (once) in the ready queue of one of
//! the dispatcher tasks (one per runtime worker; miners are spread over them by id). The
//! dispatcher drives the miner: non-blocking reads until the socket has nothing more, each
//! complete line handled by [`Miner::handle_line`] outside the socket lock, then a
//! non-blocking vectored write of the outbox, then the socket's readiness is polled with the
//! miner's waker so the next event comes back the same way.
//!
//! Output is written by whoever produces it (the dispatcher for answers, the upstream's task
//! or a fan-out thread for jobs, the upstream's task for pool answers) straight to the socket
//! when nothing is queued before it, so a job reaches 256 miners without waking 256 tasks; only what the socket does not take waits
//! in the outbox, for writability. A miner that does not read keeps being served until its
//! outbox passes [`MAX_OUTBOX_BYTES`], its timeout strikes or the proxy stops.
//!
//! No read buffer is kept while a miner is idle (it is dropped once every complete line is
//! handled), and an empty outbox holds no allocation. A TLS connection still has rustls' own
//! record buffers.
//!
//! Lock order: a miner's socket lock is taken last and never held while calling out: lines
//! are handled, and closes run, after it is released.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use stratum_proto::LineCodec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::miner::{Flow, Miner, MinerPhase};
use crate::ratelimit::Decision;
use crate::{lock, Shared};

/// A miner must log in within this time (RFC §6); a TLS handshake counts against it.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A logged-in miner that sends nothing (submit, keepalived) for this long is closed (RFC §6).
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(600);
/// Most bytes a miner's outbox may hold before the miner is disconnected as too slow.
pub(crate) const MAX_OUTBOX_BYTES: usize = 256 * 1024;
/// Bytes offered to each read call.
const READ_CHUNK: usize = 1024;
/// Lines handled per drive before other miners get a turn (a miner sending without pause).
const LINES_PER_DRIVE: usize = 64;
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

/// Starts serving an accepted connection. Plain TCP is served at once, without a task; a
/// listener that may see TLS gets a short task for the detection and the handshake (within
/// the login timeout), which ends once the miner is served.
pub(crate) fn accept(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: &TlsMode,
    stop: &CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) {
    // TCP_NODELAY comes from the listen socket (Linux copies it to accepted sockets); set
    // it where that is not so.
    if !cfg!(target_os = "linux") {
        let _ = tcp.set_nodelay(true);
    }
    let deadline = Instant::now() + LOGIN_TIMEOUT;
    match tls {
        TlsMode::Off => start(shared, Io::Tcp(tcp), peer, deadline),
        TlsMode::Strict(a) | TlsMode::Detect(a) => {
            let detect = matches!(tls, TlsMode::Detect(_));
            tracker.spawn(handshake(
                shared.clone(),
                tcp,
                peer,
                a.clone(),
                detect,
                deadline,
                stop.clone(),
            ));
        }
    }
}

/// The TLS part of [`accept`]: with `detect`, a connection whose first byte is not a TLS
/// handshake is served as plain TCP; otherwise the handshake, then the miner.
async fn handshake(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    detect: bool,
    deadline: Instant,
    stop: CancellationToken,
) {
    if detect {
        let mut first = [0u8; 1];
        let peeked = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout_at(deadline, tcp.peek(&mut first)) => r,
        };
        match peeked {
            Ok(Ok(1..)) if first[0] == TLS_HANDSHAKE => {}
            Ok(Ok(1..)) => return start(&shared, Io::Tcp(tcp), peer, deadline),
            Ok(Ok(0) | Err(_)) | Err(_) => return,
        }
    }
    let done = tokio::select! {
        () = stop.cancelled() => return,
        r = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => r,
    };
    match done {
        Ok(Ok(stream)) => start(&shared, Io::Tls(Box::new(stream)), peer, deadline),
        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Registers a connected miner and serves what it may already have sent (a TLS handshake
/// can bring the miner's first lines with its last flight).
fn start(shared: &Arc<Shared>, io: Io, peer: SocketAddr, deadline: Instant) {
    let id = shared.next_miner_id.fetch_add(1, Relaxed);
    let ready = shared.dispatchers.pick(id);
    let miner = Arc::new(Miner::new(id, peer, Conn::new(io), ready));
    miner.set_deadline(shared, deadline);
    shared.register(&miner);
    miner.drive(shared);
}

/// The stream to a miner.
enum Io {
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
                let mut got = 0;
                let tcp = &*tcp;
                let r = tcp.try_io(Interest::READABLE, || {
                    let offered = buf.capacity() - buf.len();
                    let n = tcp.try_read_buf(buf)?;
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

/// The socket of one miner and what waits to be read from it or written to it. Lives in the
/// [`Miner`], behind its own lock.
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
    out_bytes: usize,
}

impl Bufs {
    fn is_empty(&self) -> bool {
        self.rbuf.is_empty() && self.outbox.is_empty()
    }
}

impl Conn {
    fn new(io: Io) -> Self {
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

    fn has_output(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.outbox.is_empty())
    }
}

/// What [`Conn::next_line`] found.
enum Next {
    /// A complete line.
    Line(BytesMut),
    /// Nothing more now; the waker is registered for readability.
    Idle,
    /// The connection must close, for this reason.
    Close(&'static str),
}

impl Conn {
    /// The next complete line: from what was read already, else from the socket. Registers
    /// `cx` for readability once the socket has nothing more.
    fn next_line(&mut self, miner: &Miner, cx: &mut Context<'_>) -> Next {
        if let Some(why) = self.failed {
            return Next::Close(why);
        }
        if self.is_closed() {
            return Next::Idle;
        }
        let Self { io, bufs, .. } = self;
        let b = bufs.get_or_insert_with(Box::default);
        loop {
            match b.codec.decode(&mut b.rbuf) {
                Ok(Some(line)) => return Next::Line(line),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(miner = miner.id, peer = %miner.peer, "{e}; closing");
                    return Next::Close("line too long");
                }
            }
            b.rbuf.reserve(READ_CHUNK);
            match io.read(&mut b.rbuf) {
                Ok(0) => return Next::Close("closed by miner"),
                Ok(n) => {
                    miner.rx.fetch_add(n as u64, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if b.rbuf.is_empty() {
                        // Idle miners hold no read buffer.
                        b.rbuf = BytesMut::new();
                    }
                    match io.poll_readable(cx) {
                        Poll::Pending => {
                            self.release_empty();
                            return Next::Idle;
                        }
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => return Next::Close("read error"),
                    }
                }
                Err(_) => return Next::Close("read error"),
            }
        }
    }

    /// Queues `chunks` and writes as much of the outbox as the socket takes now; registers
    /// `miner`'s waker for writability when some is left. `Err` names why the connection
    /// must close.
    fn push(&mut self, chunks: &[Bytes], miner: &Arc<Miner>) -> Result<(), &'static str> {
        let mut written = 0;
        if !self.has_output() && !self.is_closed() {
            // Nothing waits: write straight from the caller's chunks, no queue.
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let mut k = 0;
            for (slot, chunk) in slices.iter_mut().zip(chunks) {
                *slot = IoSlice::new(chunk);
                k += 1;
            }
            match self.io.write(&slices[..k]) {
                Ok(n) => {
                    miner.tx.fetch_add(n as u64, Relaxed);
                    written = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err("write error"),
            }
            if written == chunks.iter().map(Bytes::len).sum::<usize>() {
                return match self.io.flush() {
                    Ok(true) => Ok(()),
                    Ok(false) => self.wait_writable(miner),
                    Err(_) => Err("write error"),
                };
            }
        }
        let b = self.bufs.get_or_insert_with(Box::default);
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
        if b.out_bytes > MAX_OUTBOX_BYTES {
            tracing::warn!(miner = miner.id, peer = %miner.peer, "miner is not reading; send queue full");
            b.outbox = VecDeque::new();
            b.out_bytes = 0;
            self.release_empty();
            return Err("send queue full");
        }
        self.flush(miner)
    }

    /// Writes the outbox as far as the socket takes it now; registers `miner`'s waker for
    /// writability when some is left.
    fn flush(&mut self, miner: &Arc<Miner>) -> Result<(), &'static str> {
        if self.is_closed() {
            return Ok(());
        }
        let Self { io, bufs, .. } = self;
        if let Some(b) = bufs.as_mut() {
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
                        miner.tx.fetch_add(n as u64, Relaxed);
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

    fn wait_writable(&mut self, miner: &Arc<Miner>) -> Result<(), &'static str> {
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

/// Miners whose sockets became ready, waiting for their dispatcher.
pub(crate) struct ReadyQueue {
    queue: Mutex<Vec<Arc<Miner>>>,
    notify: Notify,
}

impl ReadyQueue {
    fn new() -> Self {
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

    fn push(&self, miner: Arc<Miner>) {
        let was_empty = {
            let mut q = lock(&self.queue);
            let e = q.is_empty();
            q.push(miner);
            e
        };
        if was_empty {
            self.notify.notify_one();
        }
    }
}

/// The dispatcher tasks: one ready queue each.
pub(crate) struct Dispatchers {
    queues: Vec<Arc<ReadyQueue>>,
}

impl Dispatchers {
    /// `n` queues (at least one), not served until [`Dispatchers::spawn`].
    pub(crate) fn new(n: usize) -> Self {
        Self {
            queues: (0..n.max(1)).map(|_| Arc::new(ReadyQueue::new())).collect(),
        }
    }

    /// The queue of miner `id`.
    fn pick(&self, id: u64) -> Arc<ReadyQueue> {
        let i = usize::try_from(id % self.queues.len() as u64).unwrap_or(0);
        self.queues[i].clone()
    }

    /// Starts one dispatcher task per queue; they end when `stop` is cancelled.
    pub(crate) fn spawn(
        shared: &Arc<Shared>,
        tracker: &tokio_util::task::TaskTracker,
        stop: &CancellationToken,
    ) {
        for q in &shared.dispatchers.queues {
            tracker.spawn(dispatch(shared.clone(), q.clone(), stop.clone()));
        }
    }
}

/// Drives every miner that its queue receives, until `stop`.
async fn dispatch(shared: Arc<Shared>, queue: Arc<ReadyQueue>, stop: CancellationToken) {
    let mut batch: Vec<Arc<Miner>> = Vec::new();
    loop {
        std::mem::swap(&mut *lock(&queue.queue), &mut batch);
        if batch.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = queue.notify.notified() => continue,
            }
        }
        for miner in batch.drain(..) {
            miner.queued.store(false, Release);
            miner.drive(&shared);
        }
        // Let the runtime's other tasks (upstreams, timers) in once this task used its
        // scheduling budget.
        tokio::task::consume_budget().await;
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

impl Miner {
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
            let next = self.conn().next_line(self, &mut cx);
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
        if c.is_closed() || c.failed.is_some() {
            return false;
        }
        match c.push(chunks, self) {
            Ok(()) => true,
            Err(why) => {
                c.failed = Some(why);
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
        if c.is_closed() || c.failed.is_some() {
            return false;
        }
        c.failed = Some(why);
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
    fn shut(&self) -> bool {
        let io = {
            let mut c = self.conn();
            if c.is_closed() {
                return false;
            }
            c.bufs = None;
            let mut io = std::mem::replace(&mut c.io, Io::Closed);
            io.close();
            io
        };
        drop(io);
        true
    }
}

/// Closes every miner whose login or inactivity deadline has passed. Called every second.
pub(crate) fn sweep_timeouts(shared: &Shared) {
    let now = Instant::now();
    let now_ms =
        u64::try_from(now.saturating_duration_since(shared.clock).as_millis()).unwrap_or(u64::MAX);
    let expired = shared.miners_where(|m| m.expired(now_ms));
    for m in expired {
        if m.phase() == MinerPhase::WaitLogin {
            m.close(shared, "login timeout");
        } else {
            tracing::warn!(miner = m.id, peer = %m.peer, "closing inactive miner");
            m.close(shared, "inactivity timeout");
        }
    }
}

/// Closes every miner when the proxy stops: gives the answers still queued up to
/// [`STOP_FLUSH`] to go out, then closes.
pub(crate) async fn close_all(shared: &Shared) {
    let deadline = Instant::now() + STOP_FLUSH;
    loop {
        let waiting = !shared.miners_where(Miner::has_output).is_empty();
        if !waiting || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for m in shared.live_miners() {
        m.close(shared, "proxy stopping");
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

    fn queued(m: &Miner) -> usize {
        lock(&m.ready.queue).len()
    }

    #[tokio::test]
    async fn readiness_queues_the_miner_once_and_its_lines_come_out() {
        let (m, client) = pair().await;
        let waker = Waker::from(m.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(m.conn().next_line(&m, &mut cx), Next::Idle));
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
        match m.conn().next_line(&m, &mut cx) {
            Next::Line(l) => assert_eq!(&l[..], b"{\"a\":1}"),
            _ => panic!("the complete line comes out"),
        }
        assert!(
            matches!(m.conn().next_line(&m, &mut cx), Next::Idle),
            "half a line waits"
        );
        assert_eq!(m.rx.load(Relaxed), 13);
        m.shut();
    }

    #[tokio::test]
    async fn shutting_a_miner_releases_the_references_its_socket_held() {
        let (m, _client) = pair().await;
        let waker = Waker::from(m.clone());
        let mut cx = Context::from_waker(&waker);
        // Register the miner as the socket's reader and writer waker.
        assert!(matches!(m.conn().next_line(&m, &mut cx), Next::Idle));
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
    /// stays within 240 bytes, and an idle connection holds no buffer.
    #[test]
    fn a_miner_stays_small() {
        assert!(std::mem::size_of::<crate::miner::Miner>() <= 240);
        assert!(std::mem::size_of::<super::Conn>() <= 64);
        assert!(std::mem::size_of::<crate::login::LoginInfo>() <= 64);
    }
}
