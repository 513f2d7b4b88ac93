//! The logged-in miners of the load generator: a few OS threads, each an event loop (mio's
//! `Poll`, i.e. epoll) over the sockets of the miners handed to it after their login.
//!
//! Why not a tokio task per miner, as the login phase uses: the generator shares the
//! machine's cores with the proxy it measures, so every microsecond it spends per job
//! receipt or per share is taken from the proxy and shows up in the proxy's fan-out and round
//! trip figures. Here a receipt costs one `epoll_wait` share, one `read` into the loop's
//! scratch buffer and a byte scan: no task wake-up, no cancellation or channel check, no
//! allocation per line, and no second `read` to learn that the socket is drained (a read that
//! returns less than the scratch buffer emptied the socket; epoll in edge-triggered mode
//! reports the next arrival again). Shares are sent by the loop that owns the miner, at the
//! times of the plan, with the poll timeout as the clock (1 ms resolution, as tokio's timer).
//!
//! Miner `i` belongs to loop `i mod loops`; only that loop reads or writes its socket, so a
//! share's send time can be stored per share index (`Ctx::share_sent`) and read back when its
//! answer arrives, with no per-miner list of pending shares.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use stratum_proto::cryptonote::{
    encode_pool_submit, is_status_ok, parse_pool_message, PoolMessage,
};
use stratum_proto::job::encode_hex;
use stratum_proto::sv1::{parse_server_line, ServerMessage};

use super::{
    blob_fixed_byte, job_number, lock, scan_job, sv1, Ctx, Plan, ALGO, FIRST_SHARE_ID, SHARE_ERROR,
    SHARE_OK, SHARE_SENT,
};

/// The token of a loop's waker (new miners in its inbox).
const WAKE: Token = Token(usize::MAX);
/// Bytes one `read` may bring; a shorter read drained the socket.
const SCRATCH: usize = 64 * 1024;
/// A line longer than this (without its newline) closes the miner: the proxy is broken.
const MAX_LINE: usize = 64 * 1024;
/// Longest sleep in `poll`, so that a stop is seen within this.
const POLL_MAX: Duration = Duration::from_millis(20);

/// A miner that has logged in, handed from its login task to the event loop that serves it
/// from then on.
pub(super) struct Handoff {
    /// The miner's index (0..miners).
    pub i: usize,
    /// Its connection, in non-blocking mode.
    pub stream: std::net::TcpStream,
    /// Bytes read after the login reply's line (the start of the next line, or whole lines).
    pub leftover: Vec<u8>,
    /// The login result's session id (sent with every share).
    pub session: String,
    /// The current job's id.
    pub job_id: String,
    /// The miner's fixed byte (blob byte 42); 0 for Stratum V1.
    pub slot: u8,
    /// Stratum V1: what its shares are made of (`None` for CryptoNote, whose `session` is
    /// the login's session id; for SV1 `session` is the worker name).
    pub sv1: Option<Box<Sv1Miner>>,
}

/// What a Stratum V1 miner keeps to make its shares.
pub(super) struct Sv1Miner {
    /// Its extranonce1 (the upstream's and its tail).
    pub extranonce1: Vec<u8>,
    /// Its extranonce2 size, at least 4.
    pub extranonce2_size: usize,
    /// The version mask granted.
    pub mask: u32,
    /// Its current difficulty (the last `mining.set_difficulty`).
    pub difficulty: f64,
    /// The number of its current job.
    pub job: u64,
}

/// The event-loop threads.
pub(super) struct Loops {
    inboxes: Vec<(mpsc::Sender<Handoff>, Arc<Waker>)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Loops {
    /// Starts `n` (at least one) loops; each runs until `ctx.stop` is cancelled.
    ///
    /// # Errors
    /// The poller, its waker or a thread cannot be created.
    pub(super) fn start(ctx: &Arc<Ctx>, n: usize) -> io::Result<Self> {
        let mut inboxes = Vec::new();
        let mut threads = Vec::new();
        for t in 0..n.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
            let (tx, rx) = mpsc::channel();
            let event_loop = EventLoop {
                ctx: ctx.clone(),
                poll,
                inbox: rx,
                miners: Vec::new(),
                free: Vec::new(),
                scratch: vec![0; SCRATCH].into_boxed_slice(),
                rtt: Vec::new(),
                shares: None,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("loadgen-miners-{t}"))
                    .spawn(move || event_loop.run())?,
            );
            inboxes.push((tx, waker));
        }
        Ok(Self {
            inboxes,
            threads: Mutex::new(threads),
        })
    }

    /// Gives a logged-in miner to its loop (`i mod loops`). A miner whose loop has ended (the
    /// run is stopping) is dropped, which closes its connection.
    pub(super) fn hand(&self, m: Handoff) {
        let (tx, waker) = &self.inboxes[m.i % self.inboxes.len()];
        if tx.send(m).is_ok() {
            let _ = waker.wake();
        }
    }

    /// Waits for every loop to end (after `ctx.stop` was cancelled: within [`POLL_MAX`]).
    pub(super) fn join(&self) {
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// One miner's connection in a loop.
struct Miner {
    i: usize,
    stream: TcpStream,
    /// The start of a line whose newline has not come yet.
    partial: Vec<u8>,
    /// What the socket did not take yet.
    out: Vec<u8>,
    session: String,
    job_id: String,
    slot: u8,
    sv1: Option<Box<Sv1Miner>>,
}

/// This loop's part of the share plan: share `k` is sent by the miner of rank `k mod active`,
/// so the loop walks `cycle × active + rank` over the ranks it owns, in order.
struct Shares {
    plan: Plan,
    /// (rank, token) of this loop's logged-in miners, by rank.
    own: Vec<(u64, usize)>,
    cycle: u64,
    at: usize,
}

impl Shares {
    /// The next share index this loop sends and the token of its miner.
    fn next(&self) -> Option<(u64, usize)> {
        let &(rank, token) = self.own.get(self.at)?;
        let k = self.cycle * self.plan.active + rank;
        (k < self.plan.total).then_some((k, token))
    }

    /// When the next share of this loop is due.
    fn next_due(&self) -> Option<Instant> {
        self.next().map(|(k, _)| self.plan.at(k))
    }

    fn advance(&mut self) {
        self.at += 1;
        if self.at == self.own.len() {
            self.at = 0;
            self.cycle += 1;
        }
    }
}

struct EventLoop {
    ctx: Arc<Ctx>,
    poll: Poll,
    inbox: mpsc::Receiver<Handoff>,
    /// By token.
    miners: Vec<Option<Miner>>,
    free: Vec<usize>,
    scratch: Box<[u8]>,
    /// Round trips measured since the last hand-over to `ctx.rtt_ns`, ns.
    rtt: Vec<u64>,
    shares: Option<Shares>,
}

impl EventLoop {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.ctx.stop.is_cancelled() {
            if self.shares.is_none() {
                self.take_plan();
            }
            let timeout = self
                .shares
                .as_ref()
                .and_then(Shares::next_due)
                .map_or(POLL_MAX, |due| {
                    due.saturating_duration_since(Instant::now()).min(POLL_MAX)
                });
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!("loadgen: miner event loop: poll failed: {e}");
                    break;
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    WAKE => self.accept(now),
                    Token(t) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(t, now);
                        }
                        if ev.is_writable() {
                            self.flush(t);
                        }
                    }
                }
            }
            self.send_due();
            if !self.rtt.is_empty() {
                lock(&self.ctx.rtt_ns).append(&mut self.rtt);
            }
        }
    }

    /// Registers the miners waiting in the inbox and handles the lines they already brought.
    fn accept(&mut self, now: Instant) {
        while let Ok(h) = self.inbox.try_recv() {
            let token = self.free.pop().unwrap_or(self.miners.len());
            let mut stream = TcpStream::from_std(h.stream);
            if self
                .poll
                .registry()
                .register(&mut stream, Token(token), Interest::READABLE)
                .is_err()
            {
                self.ctx.disconnected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut m = Miner {
                i: h.i,
                stream,
                partial: Vec::new(),
                out: Vec::new(),
                session: h.session,
                job_id: h.job_id,
                slot: h.slot,
                sv1: h.sv1,
            };
            let fed = feed(&self.ctx, &mut m, &h.leftover, now, &mut self.rtt);
            if token == self.miners.len() {
                self.miners.push(Some(m));
            } else {
                self.miners[token] = Some(m);
            }
            if fed.is_err() {
                self.close(token);
            }
        }
    }

    /// Reads what the socket holds and handles its lines; closes the miner at end of stream,
    /// on an error or on a line that is too long.
    fn read(&mut self, t: usize, now: Instant) {
        loop {
            let Some(m) = self.miners.get_mut(t).and_then(Option::as_mut) else {
                return;
            };
            match (&m.stream).read(&mut self.scratch) {
                Ok(0) => break,
                Ok(n) => {
                    if feed(&self.ctx, m, &self.scratch[..n], now, &mut self.rtt).is_err() {
                        break;
                    }
                    if n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(t);
    }

    /// Writes what waits in the miner's output; once it is all out, only readability is
    /// watched again.
    fn flush(&mut self, t: usize) {
        let Some(m) = self.miners.get_mut(t).and_then(Option::as_mut) else {
            return;
        };
        while !m.out.is_empty() {
            match (&m.stream).write(&m.out) {
                Ok(0) => return self.close(t),
                Ok(n) => {
                    m.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(t),
            }
        }
        if self
            .poll
            .registry()
            .reregister(&mut m.stream, Token(t), Interest::READABLE)
            .is_err()
        {
            self.close(t);
        }
    }

    fn close(&mut self, t: usize) {
        let Some(mut m) = self.miners.get_mut(t).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut m.stream);
        self.free.push(t);
        if !self.ctx.stop.is_cancelled() {
            self.ctx.disconnected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(miner = m.i, "miner connection ended");
        }
    }

    /// Takes the share plan once there is one: this loop's logged-in miners, by rank.
    fn take_plan(&mut self) {
        let Some(&plan) = self.ctx.plan.get() else {
            return;
        };
        // Miners handed over but not registered yet belong in the plan too.
        self.accept(Instant::now());
        let mut own: Vec<(u64, usize)> = self
            .miners
            .iter()
            .enumerate()
            .filter_map(|(t, m)| {
                let rank = self.ctx.ranks[m.as_ref()?.i].load(Ordering::Relaxed);
                (rank != u32::MAX).then_some((u64::from(rank), t))
            })
            .collect();
        own.sort_unstable();
        self.shares = Some(Shares {
            plan,
            own,
            cycle: 0,
            at: 0,
        });
    }

    /// Sends every share of this loop that is due.
    fn send_due(&mut self) {
        let Some(mut s) = self.shares.take() else {
            return;
        };
        let now = Instant::now();
        while let Some((k, token)) = s.next() {
            if s.plan.at(k) > now {
                break;
            }
            s.advance();
            self.send_share(token, k);
        }
        self.shares = Some(s);
    }

    fn send_share(&mut self, t: usize, k: u64) {
        let ctx = &*self.ctx;
        let Some(m) = self.miners.get_mut(t).and_then(Option::as_mut) else {
            return;
        };
        let line = match &m.sv1 {
            None => {
                let nonce = (u32::from(m.slot) << 24) | u32::try_from(k).unwrap_or(0);
                encode_pool_submit(
                    k + FIRST_SHARE_ID,
                    &m.session,
                    &m.job_id,
                    &encode_hex(&nonce.to_le_bytes()),
                    &ctx.result,
                    Some(ALGO),
                )
            }
            Some(s) => {
                let Some(job) = ctx.sv1.job(s.job) else {
                    return;
                };
                let submit = sv1::make_share(
                    job,
                    &m.job_id,
                    &s.extranonce1,
                    s.extranonce2_size,
                    s.mask,
                    s.difficulty,
                    &m.session,
                    u32::try_from(k).unwrap_or(u32::MAX),
                );
                sv1::share_line(submit, k)
            }
        };
        let now = Instant::now();
        let ku = k as usize;
        let at = ctx.nanos(now);
        if let (Some(sent), Some(state)) = (ctx.share_sent.get(ku), ctx.share_state.get(ku)) {
            sent.store(at + 1, Ordering::Relaxed);
            state.store(SHARE_SENT, Ordering::Relaxed);
        }
        ctx.first_send.fetch_min(at, Ordering::Relaxed);
        ctx.last_send.fetch_max(at, Ordering::Relaxed);
        ctx.sent.fetch_add(1, Ordering::Relaxed);
        if !m.out.is_empty() {
            m.out.extend_from_slice(&line);
            return;
        }
        let written = loop {
            match (&m.stream).write(&line) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(t),
            }
        };
        if written < line.len() {
            m.out.extend_from_slice(&line[written..]);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .reregister(&mut m.stream, Token(t), interest)
                .is_err()
            {
                self.close(t);
            }
        }
    }
}

/// Handles the lines of `data` (just read), the first completing what the miner kept of an
/// earlier read. `Err` when a line grows past [`MAX_LINE`].
fn feed(ctx: &Ctx, m: &mut Miner, data: &[u8], now: Instant, rtt: &mut Vec<u64>) -> Result<(), ()> {
    let mut partial = std::mem::take(&mut m.partial);
    let fed = split_lines(&mut partial, data, |line| {
        handle_line(ctx, m, line, now, rtt)
    });
    m.partial = partial;
    fed
}

/// Calls `each` on every complete line of `partial` + `data` (without its `\n`, nor a `\r`
/// before it; blank lines skipped) and keeps the incomplete rest in `partial`. `Err` when
/// the rest is longer than [`MAX_LINE`].
fn split_lines(partial: &mut Vec<u8>, data: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), ()> {
    let mut line = |l: &[u8]| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if !l.iter().all(u8::is_ascii_whitespace) {
            each(l);
        }
    };
    let mut rest = data;
    if !partial.is_empty() {
        let Some(end) = memchr::memchr(b'\n', rest) else {
            partial.extend_from_slice(rest);
            return if partial.len() > MAX_LINE {
                Err(())
            } else {
                Ok(())
            };
        };
        partial.extend_from_slice(&rest[..end]);
        line(partial);
        partial.clear();
        rest = &rest[end + 1..];
    }
    while let Some(end) = memchr::memchr(b'\n', rest) {
        line(&rest[..end]);
        rest = &rest[end + 1..];
    }
    if rest.len() > MAX_LINE {
        return Err(());
    }
    partial.extend_from_slice(rest);
    Ok(())
}

/// Handles one line the proxy sent to a logged-in miner, read at `now`: a job (its receipt
/// time, its fixed byte, the id later shares name) or a share's answer (its round trip).
fn handle_line(ctx: &Ctx, m: &mut Miner, line: &[u8], now: Instant, rtt: &mut Vec<u64>) {
    if m.sv1.is_some() {
        return handle_sv1_line(ctx, m, line, now, rtt);
    }
    if let Some((job_id, fixed)) = scan_job(line) {
        if fixed != Some(m.slot) {
            ctx.wrong_fixed_job.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(j) = job_number(job_id) {
            receipt(ctx, m.i, j, now);
        }
        m.job_id.clear();
        m.job_id.push_str(&String::from_utf8_lossy(job_id));
        return;
    }
    match parse_pool_message(line) {
        Ok(PoolMessage::Job(job)) => {
            // A job line the scan did not read (not compact JSON): no latency from it.
            if blob_fixed_byte(job.blob.as_bytes()) != Some(m.slot) {
                ctx.wrong_fixed_job.fetch_add(1, Ordering::Relaxed);
            }
            m.job_id = job.job_id;
        }
        Ok(PoolMessage::Response { id, outcome }) if id >= FIRST_SHARE_ID => {
            let verdict = match outcome {
                Ok(v) if is_status_ok(&v) => Ok(()),
                Ok(v) => Err(format!("result {v}")),
                Err(e) => Err(e.message),
            };
            answered(ctx, id - FIRST_SHARE_ID, verdict, now, rtt);
        }
        _ => {}
    }
}

/// Job number `j` (1..=jobs; others are not timed) reached miner `i` at `now`.
fn receipt(ctx: &Ctx, i: usize, j: usize, now: Instant) {
    if !(1..=ctx.opts.jobs).contains(&j) {
        return;
    }
    let slot = &ctx.receipts[(j - 1) * ctx.opts.miners + i];
    if slot
        .compare_exchange(0, ctx.nanos(now) + 1, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        ctx.received[j - 1].fetch_add(1, Ordering::Relaxed);
    }
}

/// Share `k` was answered at `now` (`Err`: the error's text): its round trip, once.
fn answered(ctx: &Ctx, k: u64, verdict: Result<(), String>, now: Instant, rtt: &mut Vec<u64>) {
    let k = usize::try_from(k).unwrap_or(usize::MAX);
    let (Some(sent), Some(state)) = (ctx.share_sent.get(k), ctx.share_state.get(k)) else {
        return;
    };
    let answered = match verdict {
        Ok(()) => SHARE_OK,
        Err(e) => {
            *lock(&ctx.errors).entry(e).or_default() += 1;
            SHARE_ERROR
        }
    };
    // Only the first answer to a sent share counts.
    if state
        .compare_exchange(SHARE_SENT, answered, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let sent_at = sent.load(Ordering::Relaxed).saturating_sub(1);
    rtt.push(ctx.nanos(now).saturating_sub(sent_at));
    ctx.answered.fetch_add(1, Ordering::Relaxed);
}

/// [`handle_line`] for a Stratum V1 miner: a `mining.notify` (byte scan: its job number
/// and receipt time), a new difficulty or version mask, or a share's answer.
fn handle_sv1_line(ctx: &Ctx, m: &mut Miner, line: &[u8], now: Instant, rtt: &mut Vec<u64>) {
    let Miner { i, sv1, job_id, .. } = m;
    let Some(s) = sv1.as_mut() else {
        return;
    };
    // The pool's job ids, passed on: a byte scan. Another proxy's own ids: a full parse
    // (the job is known by its ntime), below.
    if let Some(j) = sv1::scan_notify(line).and_then(|id| Some((sv1::job_number(id)?, id))) {
        receipt(ctx, *i, usize::try_from(j.0).unwrap_or(usize::MAX), now);
        s.job = j.0;
        job_id.clear();
        job_id.push_str(&String::from_utf8_lossy(j.1));
        return;
    }
    match parse_server_line(line) {
        Ok(ServerMessage::Notify(n)) => {
            if let Some(j) = sv1::job_of(&n) {
                receipt(ctx, *i, usize::try_from(j).unwrap_or(usize::MAX), now);
                s.job = j;
                *job_id = n.job_id;
            }
        }
        Ok(ServerMessage::SetDifficulty(d)) => s.difficulty = d,
        Ok(ServerMessage::SetVersionMask(mask)) => s.mask &= mask,
        Ok(ServerMessage::Response { id, outcome }) => {
            let Some(k) = id
                .as_u64()
                .and_then(|id| id.checked_sub(sv1::FIRST_SHARE_ID))
            else {
                return;
            };
            let verdict = match outcome {
                Ok(serde_json::Value::Bool(true)) => Ok(()),
                Ok(v) => Err(format!("result {v}")),
                Err(e) => Err(format!("{} {}", e.code, e.message)),
            };
            answered(ctx, k, verdict, now, rtt);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(reads: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let mut partial = Vec::new();
        let mut out = Vec::new();
        for r in reads {
            split_lines(&mut partial, r, |l| {
                out.push(String::from_utf8_lossy(l).into_owned())
            })
            .unwrap();
        }
        (out, partial)
    }

    #[test]
    fn lines_split_over_reads_are_joined_and_blank_ones_skipped() {
        let (lines, rest) =
            lines_of(&[b"{\"a\"", b":1}\r\n\n  \n{\"b\":2}\n{\"c\"", b":3", b"}\n{"]);
        assert_eq!(lines, [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        assert_eq!(rest, b"{");
    }

    #[test]
    fn a_line_past_the_limit_is_refused_whole_or_in_pieces() {
        let long = vec![b'x'; MAX_LINE + 1];
        assert!(split_lines(&mut Vec::new(), &long, |_| {}).is_err());
        let mut partial = Vec::new();
        assert!(split_lines(&mut partial, &long[..MAX_LINE], |_| {}).is_ok());
        assert!(split_lines(&mut partial, b"xx", |_| {}).is_err());
    }

    #[test]
    fn a_loop_sends_the_shares_of_its_ranks_in_order() {
        let start = Instant::now();
        let mut s = Shares {
            plan: Plan {
                start,
                rate: 1000,
                total: 12,
                active: 5,
            },
            own: vec![(1, 10), (3, 11)],
            cycle: 0,
            at: 0,
        };
        let mut sent = Vec::new();
        while let Some(next) = s.next() {
            sent.push(next);
            s.advance();
        }
        assert_eq!(sent, [(1, 10), (3, 11), (6, 10), (8, 11), (11, 10)]);
        let none = Shares {
            plan: s.plan,
            own: Vec::new(),
            cycle: 0,
            at: 0,
        };
        assert_eq!(none.next(), None);
    }
}
