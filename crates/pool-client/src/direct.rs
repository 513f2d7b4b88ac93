//! The direct submit path of a plain-TCP stratum session.
//!
//! While a stratum session is logged in over plain TCP, [`crate::Upstream::submit`] does not
//! hand the share to the session task: it encodes the submit line itself and writes it to
//! the pool socket with a non-blocking `try_write`, on the caller's thread. The session task
//! and the submitters share one [`Direct`]: a mutex over the [`Wire`] (the socket, the
//! [`Ledger`] of request ids and pending submits, the bytes not yet written) and a `Notify`
//! that asks the session task to flush those bytes when the socket is writable again.
//!
//! The rules that keep it sound:
//! - Lines never interleave: a line is written whole or its tail goes to the out-buffer, and
//!   while the out-buffer holds anything every new line is appended to it, never written
//!   past it. All of this happens under the wire's lock.
//! - A submit's pending entry is recorded under the same lock, before its line is written, so
//!   the session task (which takes the lock to match an answer) always finds it.
//! - The wire is in the slot only while the session is logged in. When the session ends it
//!   takes the wire out ([`Attached`]'s drop) and fails every pending submit with
//!   [`ShareError::Disconnected`]; a submit that finds the slot empty goes through the
//!   upstream's queue as before. So each accepted submit is answered exactly once.
//! - The listener is never called with the lock held: the listener takes the caller's own
//!   locks, and a caller may hold them while it calls `Upstream::submit`.
//! - A write error on any thread marks the wire lost; the session task sees it on its next
//!   wake-up and ends the session.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use stratum_proto::cryptonote::{encode_pool_keepalived, encode_pool_submit};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{Share, ShareError, UpstreamListener};

/// Bytes of lines the pool socket has not taken yet, at most; past it submits are refused
/// with [`ShareError::Busy`] (as a full submit queue is). About 4000 submit lines.
pub(crate) const MAX_UNSENT: usize = 1 << 20;

/// An out-buffer that grew past this is freed once empty.
const KEEP_OUT: usize = 32 * 1024;

/// A submit waiting for the pool's answer.
#[derive(Debug)]
struct Pending {
    /// The request id it was sent under.
    id: u64,
    seq: u64,
    sent: Instant,
}

/// Request ids and the submits waiting for their answers, of one logged-in session, and
/// whether the pool still talks.
///
/// Liveness, for a reply timeout `T`: the ledger remembers when the pool last sent a valid
/// line ([`Ledger::heard`]) and when the oldest request sent since then went out. A pool
/// quiet for `T/2` and asked nothing is [`Ledger::idle`]: the session probes it with
/// `keepalived`. A pool that sent nothing for `T` while a request has waited at least `T/2`
/// is [`Ledger::silent`] and the session ends. So a pool that stopped talking is found
/// within `T` of its last line even with no shares flowing, and a submit always has at
/// least `T/2` for its answer before its session can end under it.
#[derive(Debug)]
pub(crate) struct Ledger {
    session_id: String,
    /// The upstream session number of this login (see `UpstreamListener::on_job`).
    session: u64,
    next_id: u64,
    /// In request-id order (ids are taken in send order). Freed when empty: in simple mode
    /// there is a ledger per miner, and most of the time nothing waits.
    pending: VecDeque<Pending>,
    /// When the pool last sent a line (or the session started).
    last_heard: Instant,
    /// When the oldest request sent since `last_heard` went out.
    unheard_since: Option<Instant>,
}

impl Ledger {
    /// A ledger for the pool session `session_id` (upstream session number `session`),
    /// numbering requests from `first_id`; `now` counts as the last line heard.
    pub(crate) fn new(session_id: String, session: u64, first_id: u64, now: Instant) -> Self {
        Self {
            session_id,
            session,
            next_id: first_id,
            pending: VecDeque::new(),
            last_heard: now,
            unheard_since: None,
        }
    }

    fn take_id(&mut self, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.unheard_since.get_or_insert(now);
        id
    }

    /// Records `seq` as sent now under a fresh request id; its submit line.
    ///
    /// # Errors
    /// [`ShareError::SessionEnded`] when the share belongs to another session (nothing is
    /// recorded then).
    pub(crate) fn submit(
        &mut self,
        seq: u64,
        share: &Share,
        now: Instant,
    ) -> Result<Vec<u8>, ShareError> {
        if share.session != self.session {
            return Err(ShareError::SessionEnded);
        }
        let id = self.take_id(now);
        // `now` is the time the share's line was read, taken before the wire's lock: on a
        // multi-thread runtime a later line can reach the lock first. Never before the
        // previous entry's, so the entries stay in time order for `expire`.
        let sent = self.pending.back().map_or(now, |p| p.sent.max(now));
        self.pending.push_back(Pending { id, seq, sent });
        Ok(encode_pool_submit(
            id,
            &self.session_id,
            &share.job_id,
            &share.nonce,
            &share.result,
            share.algo.as_deref(),
        ))
    }

    /// A `keepalived` line under a fresh request id, sent `now`.
    pub(crate) fn keepalived(&mut self, now: Instant) -> Vec<u8> {
        let id = self.take_id(now);
        encode_pool_keepalived(id, &self.session_id)
    }

    /// The pool sent a line, read at `at`: it is alive. A request sent after `at` (by a
    /// submitting thread while the line was handled) still waits for a line of its own.
    pub(crate) fn heard(&mut self, at: Instant) {
        self.last_heard = self.last_heard.max(at);
        if self.unheard_since.is_some_and(|t| t <= at) {
            self.unheard_since = None;
        }
    }

    /// True when the pool sent nothing for `timeout` while a request has waited at least
    /// half of it.
    pub(crate) fn silent(&self, now: Instant, timeout: Duration) -> bool {
        self.unheard_since.is_some_and(|t| {
            now.duration_since(self.last_heard) >= timeout && now.duration_since(t) >= timeout / 2
        })
    }

    /// True when the pool sent nothing for half of `timeout` and nothing is waiting for it:
    /// time to ask it something (`keepalived`).
    pub(crate) fn idle(&self, now: Instant, timeout: Duration) -> bool {
        self.unheard_since.is_none() && now.duration_since(self.last_heard) >= timeout / 2
    }

    /// The sequence number of the submit sent under request `id`, which is answered now.
    pub(crate) fn answer(&mut self, id: u64) -> Option<u64> {
        // Pools answer in order: the answer is for the first entry but when one was lost.
        let at = self.pending.binary_search_by_key(&id, |p| p.id).ok()?;
        let seq = self.pending.remove(at).map(|p| p.seq);
        self.release_if_empty();
        seq
    }

    /// The timeout tick: removes the submits sent `timeout` or longer before `now`, and,
    /// when the pool is then [`silent`](Self::silent), every submit still waiting (the pool
    /// did not answer them in time either, whichever of the two came first in this tick);
    /// their sequence numbers, and whether the pool is silent.
    pub(crate) fn expire_or_silent(&mut self, now: Instant, timeout: Duration) -> (Vec<u64>, bool) {
        let mut expired = self.expire(now, timeout);
        let silent = self.silent(now, timeout);
        if silent {
            expired.extend(self.expire(now, Duration::ZERO));
        }
        (expired, silent)
    }

    /// Removes the submits sent `timeout` or longer before `now`; their sequence numbers.
    /// Ids are taken in send order (under the wire's lock) and their times never go back
    /// ([`Self::submit`]), so the late ones are the first entries: the scan stops at the first
    /// one still in time.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<u64> {
        let mut expired = Vec::new();
        while let Some(first) = self.pending.front() {
            if now.duration_since(first.sent) < timeout {
                break;
            }
            expired.extend(self.pending.pop_front().map(|p| p.seq));
        }
        self.release_if_empty();
        expired
    }

    /// Frees the table of pending submits once none is left.
    fn release_if_empty(&mut self) {
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = VecDeque::new();
        }
    }

    /// Whether no submit waits for an answer.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Removes every pending submit; their sequence numbers, in request order.
    pub(crate) fn drain(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|p| p.seq)
            .collect()
    }
}

/// The shared half of a logged-in plain-TCP session.
#[derive(Debug)]
pub(crate) struct Wire {
    stream: Arc<OwnedWriteHalf>,
    ledger: Ledger,
    /// Bytes of whole lines (the first maybe partly written) the socket has not taken yet.
    out: BytesMut,
    /// Set by the first write error; the session ends with it.
    lost: Option<String>,
}

impl Wire {
    /// Writes `line`, or queues what the socket does not take. True when the session task
    /// must be woken: the out-buffer was empty and is not any more, or the socket failed.
    fn push(&mut self, line: &[u8]) -> bool {
        if self.lost.is_some() {
            return false;
        }
        if !self.out.is_empty() {
            self.out.extend_from_slice(line);
            return false;
        }
        match self.stream.try_write(line) {
            Ok(n) if n == line.len() => false,
            Ok(n) => {
                self.out.extend_from_slice(&line[n..]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.out.extend_from_slice(line);
                true
            }
            Err(e) => {
                self.lost = Some(e.to_string());
                true
            }
        }
    }

    /// Writes from the out-buffer until it is empty or the socket is full.
    fn flush(&mut self) {
        while self.lost.is_none() && !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(0) => self.lost = Some("pool socket wrote zero bytes".into()),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => self.lost = Some(e.to_string()),
            }
        }
        if self.out.is_empty() && self.out.capacity() > KEEP_OUT {
            // A long stall is over: do not keep its buffer for the rest of the session.
            self.out = BytesMut::new();
        }
    }

    /// Writes the submit of `seq`, recorded in the ledger as sent at `now`.
    fn submit(&mut self, seq: u64, share: &Share, now: Instant) -> Result<bool, ShareError> {
        // A submit line is a few hundred bytes: check the room before taking a request id.
        if self.out.len() >= MAX_UNSENT {
            return Err(ShareError::Busy);
        }
        let line = self.ledger.submit(seq, share, now)?;
        Ok(self.push(&line))
    }

    /// The ledger, for a session that drains this wire after a hand-over.
    pub(crate) fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The socket's writing half.
    pub(crate) fn stream_arc(&self) -> Arc<OwnedWriteHalf> {
        self.stream.clone()
    }

    /// Writes what is waiting, as far as the socket takes it (see [`Attached::flush`]).
    pub(crate) fn flush_state(&mut self) -> Flushed {
        self.flush();
        match (&self.lost, self.out.is_empty()) {
            (Some(why), _) => Flushed::Lost(why.clone()),
            (None, true) => Flushed::Done,
            (None, false) => Flushed::More,
        }
    }
}

/// The direct path of one upstream: the slot of the current plain-TCP session's wire, and
/// the number of the live session (any transport).
#[derive(Debug, Default)]
pub(crate) struct Direct {
    /// The live (logged-in) upstream session number; 0 while none is.
    live: AtomicU64,
    wire: Mutex<Option<Wire>>,
    /// Wakes the session task to flush the out-buffer or to notice a lost socket.
    wake: Notify,
}

/// What the session task learns when it flushes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything is written.
    Done,
    /// Bytes are still waiting: flush again when the socket is writable.
    More,
    /// The socket failed (or the wire is gone); the reason.
    Lost(String),
}

impl Direct {
    fn lock(&self) -> MutexGuard<'_, Option<Wire>> {
        self.wire.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the live session number (0: none).
    pub(crate) fn set_live(&self, session: u64) {
        self.live.store(session, Ordering::Release);
    }

    /// The live session number; 0 while none is logged in.
    pub(crate) fn live(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// The direct submit, sent at `now` (the caller's clock read): `None` when no plain-TCP
    /// session is logged in (or its socket has failed), and the caller must queue the share
    /// for the session task instead.
    pub(crate) fn submit(
        &self,
        seq: u64,
        share: &Share,
        now: Instant,
    ) -> Option<Result<(), ShareError>> {
        let mut slot = self.lock();
        let wire = slot.as_mut().filter(|w| w.lost.is_none())?;
        let wake = match wire.submit(seq, share, now) {
            Ok(wake) => wake,
            Err(e) => return Some(Err(e)),
        };
        drop(slot);
        if wake {
            self.wake.notify_one();
        }
        Some(Ok(()))
    }

    /// Puts the session's wire in the slot; submits take the direct path until the returned
    /// guard is dropped.
    pub(crate) fn attach<'a>(
        &'a self,
        stream: Arc<OwnedWriteHalf>,
        ledger: Ledger,
        listener: &'a dyn UpstreamListener,
    ) -> Attached<'a> {
        let mut slot = self.lock();
        debug_assert!(slot.is_none(), "one session at a time");
        *slot = Some(Wire {
            stream,
            ledger,
            out: BytesMut::new(),
            lost: None,
        });
        Attached {
            direct: self,
            listener,
        }
    }
}

/// The session's hold on the direct path. Dropping it detaches the wire, so later submits
/// take the queue, and fails every submit still pending with [`ShareError::Disconnected`].
pub(crate) struct Attached<'a> {
    direct: &'a Direct,
    listener: &'a dyn UpstreamListener,
}

impl<'a> Attached<'a> {
    fn with<R>(&self, f: impl FnOnce(&mut Wire) -> R) -> Option<R> {
        self.direct.lock().as_mut().map(f)
    }

    /// The wake-up of submitters that left bytes in the out-buffer or lost the socket. It
    /// borrows the [`Direct`], not this guard, so the session can keep one across its turns.
    pub(crate) fn woken(&self) -> Notified<'a> {
        self.direct.wake.notified()
    }

    /// A submit that came through the queue: same path as a direct one. `Busy` when the
    /// out-buffer is full (the caller answers the share with it).
    pub(crate) fn submit(&self, seq: u64, share: &Share) -> Result<(), ShareError> {
        let wake = self
            .with(|w| w.submit(seq, share, Instant::now()))
            .unwrap_or(Err(ShareError::Disconnected))?;
        self.wake_if(wake);
        Ok(())
    }

    /// Sends `keepalived`.
    pub(crate) fn keepalived(&self) {
        let wake = self.with(|w| {
            let line = w.ledger.keepalived(Instant::now());
            w.push(&line)
        });
        self.wake_if(wake == Some(true));
    }

    /// Runs `f` on the ledger (liveness bookkeeping); `None` once detached.
    pub(crate) fn ledger<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> Option<R> {
        self.with(|w| f(&mut w.ledger))
    }

    /// Takes the wire out of the slot without failing its pending submits: later submits
    /// take the queue, and the caller answers the pending ones (a hand-over drains them).
    pub(crate) fn detach(self) -> Option<Wire> {
        let wire = self.direct.lock().take();
        // The drop finds the slot empty and answers nothing.
        drop(self);
        wire
    }

    /// Leaves a wake-up for [`Attached::woken`]: the session task's own writes left bytes
    /// to flush (or failed) and it learns so in its next turn.
    fn wake_if(&self, wake: bool) {
        if wake {
            self.direct.wake.notify_one();
        }
    }

    /// Writes what is waiting, as far as the socket takes it.
    pub(crate) fn flush(&self) -> Flushed {
        self.with(Wire::flush_state)
            .unwrap_or_else(|| Flushed::Lost("detached".into()))
    }
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        let wire = self.direct.lock().take();
        if let Some(mut wire) = wire {
            for seq in wire.ledger.drain() {
                self.listener.on_result(seq, Err(ShareError::Disconnected));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use stratum_proto::Job;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::UpstreamState;

    /// Counts `Disconnected` results.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl UpstreamListener for Count {
        fn on_job(&self, _: Job, _: u64) {}
        fn on_daemon_job(
            &self,
            _: Job,
            _: Result<Arc<crate::monero_block::BlockWork>, crate::monero_block::BlockError>,
            _: u64,
        ) {
        }
        fn on_result(&self, _: u64, result: Result<(), ShareError>) {
            assert_eq!(result, Err(ShareError::Disconnected));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn on_state(&self, _: UpstreamState, _: Option<usize>) {}
    }

    /// A connected loopback pair: (our side, the pool's side).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (theirs, _) = l.accept().await.unwrap();
        (ours, theirs)
    }

    fn share(n: u64) -> Share<'static> {
        Share {
            session: 1,
            job_id: "job1".into(),
            nonce: format!("{n:08x}").into(),
            result: "ab".repeat(32).into(),
            algo: None,
            extra_nonce: None,
        }
    }

    #[test]
    fn answers_in_any_order_find_their_submit_once_and_an_empty_ledger_holds_no_table() {
        let t0 = Instant::now();
        let mut l = Ledger::new("sess".into(), 1, 2, t0);
        for seq in 10..13 {
            l.submit(seq, &share(seq), t0).unwrap();
        }
        // Request ids 2, 3, 4 carry seqs 10, 11, 12.
        assert_eq!(l.answer(3), Some(11), "out of order");
        assert_eq!(l.answer(3), None, "never twice");
        assert_eq!(l.answer(99), None);
        assert_eq!(l.answer(2), Some(10));
        assert!(l.pending.capacity() > 0);
        assert_eq!(l.answer(4), Some(12));
        assert!(l.is_empty());
        assert_eq!(l.pending.capacity(), 0, "freed once nothing waits");
        // Expiry frees it too.
        l.submit(13, &share(13), t0).unwrap();
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.expire(later, Duration::from_secs(1)), vec![13]);
        assert_eq!(l.pending.capacity(), 0);
    }

    fn unsent(direct: &Direct) -> usize {
        direct.lock().as_ref().map_or(0, |w| w.out.len())
    }

    #[test]
    fn a_share_of_another_session_is_refused_and_never_recorded() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new("s".into(), 2, 2, t0);
        let mut old = share(1);
        old.session = 1;
        assert_eq!(ledger.submit(7, &old, t0), Err(ShareError::SessionEnded));
        assert!(ledger.is_empty());
        let mut live = share(2);
        live.session = 2;
        let line = ledger.submit(8, &live, t0).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], 2, "the refused share took no request id");
        assert_eq!(ledger.answer(2), Some(8));
    }

    #[test]
    fn a_pool_quiet_for_the_reply_timeout_while_asked_is_silent() {
        let t0 = Instant::now();
        let t = Duration::from_secs(30);
        let mut ledger = Ledger::new("s".into(), 1, 2, t0);
        // Nothing asked: never silent, however long; idle (probe time) after half the timeout.
        assert!(!ledger.silent(t0 + t * 10, t));
        assert!(!ledger.idle(t0 + t / 4, t));
        assert!(ledger.idle(t0 + t / 2, t));
        // The probe goes out: not idle any more; silent a whole timeout after the last line.
        let probe = t0 + t / 2;
        ledger.keepalived(probe);
        assert!(!ledger.idle(probe + t, t));
        assert!(!ledger.silent(t0 + t - Duration::from_millis(1), t));
        assert!(ledger.silent(t0 + t, t));
        // Any line resets it.
        let heard = t0 + t * 3 / 4;
        ledger.heard(heard);
        assert!(!ledger.silent(t0 + t, t));
        // But not for a request sent after the line was read.
        let mut racing = Ledger::new("s".into(), 1, 2, t0);
        racing.submit(1, &share(1), t0 + t / 2).unwrap();
        racing.heard(t0 + t / 4);
        assert!(racing.silent(t0 + t / 4 + t, t));
        // A submit long after the last line still gets half the timeout for its answer.
        let late = heard + t * 2;
        ledger.submit(1, &share(1), late).unwrap();
        assert!(!ledger.silent(late + t / 4, t));
        assert!(ledger.silent(late + t / 2, t));
    }

    #[test]
    fn a_silent_pool_times_out_every_share_still_waiting_in_the_same_tick() {
        let t0 = Instant::now();
        let t = Duration::from_secs(1);
        let mut ledger = Ledger::new("s".into(), 1, 2, t0);
        // Sent a little after the last line: silent (t after that line) before it expires.
        ledger.submit(5, &share(1), t0 + t / 4).unwrap();
        let now = t0 + t;
        assert_eq!(
            ledger.expire(now, t),
            Vec::<u64>::new(),
            "not due by itself"
        );
        assert_eq!(ledger.expire_or_silent(now, t), (vec![5], true));
        assert_eq!(
            ledger.expire_or_silent(now, t),
            (vec![], true),
            "each share once"
        );
    }

    #[tokio::test]
    async fn a_full_socket_queues_whole_lines_in_order_up_to_the_cap() {
        let (ours, mut theirs) = pair().await;
        let (_keep, ours) = ours.into_split();
        let ours = Arc::new(ours);
        let listener = Count::default();
        let direct = Direct::default();
        let wire = direct.attach(
            ours.clone(),
            Ledger::new("s".into(), 1, 2, Instant::now()),
            &listener,
        );
        // The pool reads nothing: the socket fills, then the out-buffer, then `Busy`.
        let mut sent = 0u64;
        loop {
            match direct.submit(sent, &share(sent), Instant::now()) {
                Some(Ok(())) => sent += 1,
                Some(Err(e)) => {
                    assert_eq!(e, ShareError::Busy);
                    break;
                }
                None => panic!("attached"),
            }
        }
        assert!(unsent(&direct) >= MAX_UNSENT);
        // The pool reads again; the session's flushing delivers every line once, whole.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = vec![0; 65536];
            while all.iter().filter(|b| **b == b'\n').count() < sent as usize {
                let n = theirs.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early");
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        while wire.flush() == Flushed::More {
            ours.writable().await.unwrap();
        }
        let all = reader.await.unwrap();
        for (i, line) in all
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["id"], i as u64 + 2);
            assert_eq!(v["params"]["nonce"], format!("{i:08x}"));
        }
        // Nothing was answered: every accepted submit fails once when the session ends.
        drop(wire);
        assert_eq!(listener.0.load(Ordering::SeqCst), sent as usize);
        assert!(
            direct.submit(0, &share(0), Instant::now()).is_none(),
            "detached"
        );
    }
}
