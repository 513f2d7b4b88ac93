//! The driver's loop around miners, top to bottom: an accepted socket becomes a [`Miner`],
//! dispatcher tasks drive the miners their sockets woke, the tick closes miners past their
//! deadlines, and the stop closes them all. The socket side is `conn.rs`, a miner's line
//! handling `miner.rs`; this module is the only one that sees both ends.
//!
//! ```text
//! accept ─▶ rate limit (conn::admit; refused: dropped before any read)
//!   plain TCP: ──────────────────────────────────────────▶ Miner ─▶ drive()
//!   TLS:       task: [detect] handshake, within the login timeout ─▶ Miner ─▶ drive()
//!
//! socket readable/writable ─▶ the miner's waker ─▶ its dispatcher's ready queue
//! dispatcher task: for each ready miner: drive() = read and handle every complete line,
//!                  write what waits, register for the next readiness
//! splitter (job, pool answer): Miner::send ─▶ written to the socket at once when nothing
//!                  waits before it; the rest waits for writability
//! tick (1 s): the miners whose check came (deadlines.rs, at most TICK_BUDGET a tick):
//!             closed when past their login or inactivity deadline, else checked again later
//! ```
//!
//! There is one dispatcher task per runtime worker; miners are spread over them by id.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::conn::{Conn, Io, ReadyQueue, TlsMode, READ_CHUNK};
use crate::deadlines::TICK_BUDGET;
use crate::miner::{Miner, MinerPhase, MinerProtocol, LOGIN_TIMEOUT};
use crate::splitter::Family;
use crate::{lock, Shared};

/// How long the last answers may take to go out when the proxy stops.
const STOP_FLUSH: Duration = Duration::from_secs(1);
/// First byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// Starts serving an accepted connection. Plain TCP is served at once, without a task; a
/// listener that may see TLS gets a short task for the detection and the handshake (within
/// the login timeout), which ends once the miner is served.
pub(crate) fn accept<F: MinerProtocol>(
    shared: &Arc<Shared<F>>,
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
        TlsMode::Off => {
            forget_assumed_readability(&tcp);
            start(shared, Io::Tcp(tcp), peer, deadline);
        }
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

/// tokio marks a socket it accepts readable (and writable) before any event, so that its
/// first read tries the socket at once. A miner is accepted the moment its connection
/// completes and has seldom sent its login yet: at 10,000 miners logging in, 0.4 to 0.95
/// reads per login returned EAGAIN (docs/BENCHMARKS.md, "Session 8"). Forgetting that
/// readability makes the miner's first read wait for the event of its login instead; a
/// login that came before the socket was registered is not missed, as registering a socket
/// reports the readiness it already has. Only on the current-thread runtime (proxy-cli's
/// default), where no other thread runs the I/O driver meanwhile: there, nothing can have
/// set real readability since the accept, and clearing it cannot lose an event. On a
/// multi-thread runtime the socket is left as tokio made it.
fn forget_assumed_readability(tcp: &TcpStream) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread {
        // A `WouldBlock` from the closure clears the readiness it was called with; no
        // system call is made.
        let _ = tcp.try_io(Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
    }
}

/// The TLS part of [`accept`]: with `detect`, a connection whose first byte is not a TLS
/// handshake is served as plain TCP; otherwise the handshake, then the miner.
async fn handshake<F: MinerProtocol>(
    shared: Arc<Shared<F>>,
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
fn start<F: MinerProtocol>(shared: &Arc<Shared<F>>, io: Io, peer: SocketAddr, deadline: Instant) {
    let id = shared.next_miner_id.fetch_add(1, Relaxed);
    let ready = shared.dispatchers.pick(id);
    let miner = Arc::new(Miner::new(id, peer, Conn::new(io), ready));
    miner.set_deadline(shared, deadline);
    shared.deadlines.schedule(miner.deadline_ms(), id);
    shared.register(&miner);
    miner.drive(shared, &mut [0; READ_CHUNK]);
}

/// The dispatcher tasks: one ready queue each.
pub(crate) struct Dispatchers<F: Family> {
    queues: Vec<Arc<ReadyQueue<Miner<F>>>>,
}

impl<F: Family> Dispatchers<F> {
    /// `n` queues (at least one), not served until [`Dispatchers::spawn`].
    pub(crate) fn new(n: usize) -> Self {
        Self {
            queues: (0..n.max(1)).map(|_| Arc::new(ReadyQueue::new())).collect(),
        }
    }

    /// The queue of miner `id`.
    fn pick(&self, id: u64) -> Arc<ReadyQueue<Miner<F>>> {
        let i = usize::try_from(id % self.queues.len() as u64).unwrap_or(0);
        self.queues[i].clone()
    }
}

impl<F: MinerProtocol> Dispatchers<F> {
    /// Starts one dispatcher task per queue; they end when `stop` is cancelled.
    pub(crate) fn spawn(
        shared: &Arc<Shared<F>>,
        tracker: &tokio_util::task::TaskTracker,
        stop: &CancellationToken,
    ) {
        for q in &shared.dispatchers.queues {
            tracker.spawn(dispatch(shared.clone(), q.clone(), stop.clone()));
        }
    }
}

/// Drives every miner that its queue receives, until `stop`.
async fn dispatch<F: MinerProtocol>(
    shared: Arc<Shared<F>>,
    queue: Arc<ReadyQueue<Miner<F>>>,
    stop: CancellationToken,
) {
    let mut batch: Vec<Arc<Miner<F>>> = Vec::new();
    // The miners' reads land here first (a lone line is handled from it); what a miner
    // leaves in it is overwritten by the next read and never read again.
    let mut scratch = [0; READ_CHUNK];
    loop {
        queue.take(&mut batch);
        if batch.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = queue.notified() => continue,
            }
        }
        for miner in batch.drain(..) {
            miner.queued.store(false, Release);
            miner.drive(&shared, &mut scratch);
        }
        // Let the runtime's other tasks (upstreams, timers) in once this task used its
        // scheduling budget.
        tokio::task::consume_budget().await;
    }
}

/// Closes the miners whose login or inactivity deadline has passed. Called every second; it
/// touches only the miners whose scheduled check came (at most [`TICK_BUDGET`], looked up by
/// id under one short registry lock, never acted on under it), and schedules the ones still
/// in time again at their current deadline.
pub(crate) fn sweep_timeouts<F: MinerProtocol>(shared: &Shared<F>) {
    let now = Instant::now();
    let now_ms =
        u64::try_from(now.saturating_duration_since(shared.clock).as_millis()).unwrap_or(u64::MAX);
    let mut due = Vec::new();
    shared.deadlines.take_due(now_ms, TICK_BUDGET, &mut due);
    if due.is_empty() {
        return;
    }
    // A closed miner's id finds nothing: it is gone from the registry.
    let live: Vec<Arc<Miner<F>>> = {
        let miners = lock(&shared.miners);
        due.iter()
            .filter_map(|id| miners.get(id).cloned())
            .collect()
    };
    let mut again = Vec::new();
    for m in live {
        if m.conn().is_closed() {
            continue;
        }
        if !m.expired(now_ms) {
            again.push((m.deadline_ms(), m.id));
        } else if m.phase() == MinerPhase::WaitLogin {
            m.close(shared, "login timeout");
        } else {
            tracing::warn!(miner = m.id, peer = %m.peer, "closing inactive miner");
            m.close(shared, "inactivity timeout");
        }
    }
    shared.deadlines.schedule_all(again);
}

/// Closes every miner when the proxy stops: gives the answers still queued up to
/// [`STOP_FLUSH`] to go out, then closes.
pub(crate) async fn close_all<F: MinerProtocol>(shared: &Shared<F>) {
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
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// A socket accepted by tokio, and the client side.
    async fn accepted() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (server, client)
    }

    fn readable_now(tcp: &TcpStream) -> bool {
        tcp.poll_read_ready(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_accepted_socket_waits_for_its_first_readability_event_instead_of_a_read() {
        let (server, client) = accepted().await;
        assert!(
            readable_now(&server),
            "tokio assumes an accepted socket readable"
        );
        forget_assumed_readability(&server);
        assert!(!readable_now(&server), "nothing read, nothing assumed");
        client.try_write(b"{\"id\":1}\n").unwrap();
        let ready = tokio::time::timeout(Duration::from_secs(5), server.readable()).await;
        assert!(ready.is_ok(), "the login's event makes it readable");
        let mut buf = [0u8; 64];
        assert_eq!(server.try_read(&mut buf).unwrap(), 9);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_login_sent_before_the_accept_is_not_missed() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        client.writable().await.unwrap();
        client.try_write(b"{\"id\":2}\n").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (server, _) = l.accept().await.unwrap();
        forget_assumed_readability(&server);
        let ready = tokio::time::timeout(Duration::from_secs(5), server.readable()).await;
        assert!(ready.is_ok(), "registering reports the data already there");
        let mut buf = [0u8; 64];
        assert_eq!(server.try_read(&mut buf).unwrap(), 9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_thread_runtime_the_socket_is_left_as_tokio_made_it() {
        let (server, _client) = accepted().await;
        forget_assumed_readability(&server);
        assert!(
            matches!(
                server.poll_read_ready(&mut Context::from_waker(Waker::noop())),
                Poll::Ready(Ok(()))
            ),
            "another worker may have set real readability: not cleared"
        );
    }
}
