//! The connection task of one miner: moves bytes between the socket and the [`Miner`].
//!
//! No read buffer is kept while a miner is idle: the task waits for readability, reads what
//! is there, handles every complete line and drops the buffer when nothing is left over. The
//! outbox is written with vectored writes, so a job shared by 256 miners is sent from one
//! encoding without copying.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use stratum_proto::LineCodec;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::miner::{Flow, Miner, MinerPhase};
use crate::Shared;

/// A miner must log in within this time (RFC §6).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A logged-in miner that sends nothing (submit, keepalived) for this long is closed (RFC §6).
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes read per read call.
const READ_CHUNK: usize = 2048;
/// Chunks per vectored write.
const WRITE_BATCH: usize = 64;

enum Step {
    Go,
    Stop(&'static str),
}

/// Serves one miner until it leaves, times out, misbehaves fatally or the proxy stops.
pub(crate) async fn serve_miner(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let id = shared.next_miner_id.fetch_add(1, Relaxed);
    let miner = Arc::new(Miner::new(id, peer));
    shared.register(&miner);
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::new();
    let mut codec = LineCodec::default();
    let mut deadline = Instant::now() + LOGIN_TIMEOUT;
    let mut out: Vec<Bytes> = Vec::new();

    let reason = loop {
        let step = tokio::select! {
            biased;
            () = stop.cancelled() => {
                // Let the last answers out, briefly.
                let _ = tokio::time::timeout(Duration::from_secs(1), flush(&stream, &miner, &mut out)).await;
                Step::Stop("proxy stopping")
            }
            () = miner.notify.notified() => Step::Go,
            r = stream.readable() => match r {
                Err(_) => Step::Stop("read error"),
                Ok(()) => read_lines(&shared, &miner, &stream, &mut buf, &mut codec, &mut deadline),
            },
            () = tokio::time::sleep_until(deadline) => {
                if miner.phase() == MinerPhase::WaitLogin {
                    Step::Stop("login timeout")
                } else {
                    tracing::warn!(miner = id, %peer, "closing inactive miner");
                    Step::Stop("inactivity timeout")
                }
            }
        };
        if let Step::Stop(why) = step {
            break why;
        }
        match flush(&stream, &miner, &mut out).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(miner = id, %peer, "miner is not reading; send queue full");
                break "send queue full";
            }
            Err(_) => break "write error",
        }
    };
    tracing::debug!(miner = id, %peer, "closing: {reason}");
    miner.state().phase = MinerPhase::Closing;
    miner.close_outbox();
    shared.splitter.on_close(&miner);
    shared.events.close(&miner);
    shared.unregister(&miner);
}

/// Reads what the socket has and handles every complete line.
fn read_lines(
    shared: &Shared,
    miner: &Arc<Miner>,
    stream: &TcpStream,
    buf: &mut BytesMut,
    codec: &mut LineCodec,
    deadline: &mut Instant,
) -> Step {
    loop {
        buf.reserve(READ_CHUNK);
        match stream.try_read_buf(buf) {
            Ok(0) => return Step::Stop("closed by miner"),
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
                            return Step::Stop("line too long");
                        }
                    }
                }
                if n < READ_CHUNK {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Step::Stop("read error"),
        }
    }
    if buf.is_empty() {
        // Idle miners hold no read buffer.
        *buf = BytesMut::new();
    }
    Step::Go
}

/// Writes everything queued for the miner. `Ok(false)` when its outbox overflowed.
async fn flush(stream: &TcpStream, miner: &Miner, out: &mut Vec<Bytes>) -> io::Result<bool> {
    loop {
        if out.is_empty() {
            if miner.take_output(out, WRITE_BATCH).is_none() {
                return Ok(false);
            }
            if out.is_empty() {
                return Ok(true);
            }
        }
        let written = {
            let slices: Vec<IoSlice<'_>> = out.iter().map(|b| IoSlice::new(b)).collect();
            match stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    stream.writable().await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        miner.tx.fetch_add(written as u64, Relaxed);
        advance(out, written);
    }
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
