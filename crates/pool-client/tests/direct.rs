//! The direct submit path of a plain-TCP session: submits written by the submitting thread,
//! many at once, racing a disconnect, and against a pool that stops reading. The pool here is
//! a small blocking one on its own threads that keeps every raw line it reads, so the tests
//! can check the wire itself (one well-formed line per share, unique request ids) and can
//! stop reading or drop the connection at chosen points.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use pool_client::{FailoverOptions, PoolConfig, Share, ShareError, Upstream};
use serde_json::{json, Value};
use test_support::miner::result_for_difficulty;
use test_support::mock_pool::make_job;

mod common;

use common::{bounded, Harness, Recorder, WAIT};

const SESSION: &str = "raw-session";

#[derive(Default)]
struct PoolState {
    /// Every line read, from every connection, in order.
    lines: Vec<String>,
    /// Reading is stopped while this is set.
    paused: bool,
    /// Clones of the open connections, to drop them.
    conns: Vec<TcpStream>,
}

#[derive(Default)]
struct PoolShared {
    state: Mutex<PoolState>,
    changed: Condvar,
    stop: AtomicBool,
}

impl PoolShared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_paused(&self, paused: bool) {
        self.lock().paused = paused;
        self.changed.notify_all();
    }

    /// Closes every open connection.
    fn drop_connections(&self) {
        for c in self.lock().conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Blocks this thread until `cond` holds on the lines read, up to [`WAIT`].
    fn wait_lines(&self, cond: impl Fn(&[String]) -> bool) -> bool {
        let st = self.lock();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, WAIT, |st| !cond(&st.lines))
            .unwrap_or_else(|p| p.into_inner());
        cond(&st.lines)
    }
}

/// A stratum pool on blocking sockets: answers `login` with [`SESSION`] and job 1, and every
/// `submit` with OK, in the order it reads them.
struct RawPool {
    addr: SocketAddr,
    shared: Arc<PoolShared>,
}

impl RawPool {
    /// Listens on `127.0.0.1:0`; with `small_buffer` the accepted sockets get a small receive
    /// buffer, so a pool that stops reading fills up soon.
    async fn start(small_buffer: bool) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if small_buffer {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap().into_std().unwrap();
        listener.set_nonblocking(false).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(PoolShared::default());
        let accept_shared = shared.clone();
        std::thread::spawn(move || accept_loop(&listener, &accept_shared));
        Self { addr, shared }
    }

    fn entry(&self) -> PoolConfig {
        PoolConfig {
            url: self.addr.to_string(),
            user: "WALLET".into(),
            ..PoolConfig::default()
        }
    }

    fn set_paused(&self, paused: bool) {
        self.shared.set_paused(paused);
    }

    fn drop_connections(&self) {
        self.shared.drop_connections();
    }

    /// The `submit` requests read so far.
    fn submits(&self) -> Vec<Value> {
        self.shared
            .lock()
            .lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).expect("a well-formed line"))
            .filter(|v| v["method"] == "submit")
            .collect()
    }

    fn wait_lines(&self, cond: impl Fn(&[String]) -> bool) -> bool {
        self.shared.wait_lines(cond)
    }
}

impl Drop for RawPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set_paused(false);
        self.drop_connections();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<PoolShared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        shared.lock().conns.push(clone);
        let shared = shared.clone();
        std::thread::spawn(move || serve(stream, &shared));
    }
}

fn serve(stream: TcpStream, shared: &PoolShared) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        {
            let st = shared.lock();
            let _st = shared
                .changed
                .wait_while(st, |st| st.paused)
                .unwrap_or_else(|p| p.into_inner());
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = line.trim_end().to_string();
        let parsed = serde_json::from_str::<Value>(&text);
        shared.lock().lines.push(text);
        shared.changed.notify_all();
        let Ok(v) = parsed else { continue };
        let reply = match v["method"].as_str() {
            Some("login") => json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {
                "id": SESSION, "job": make_job(1, 500), "extensions": [], "status": "OK"}}),
            _ => {
                json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {"status": "OK"}})
            }
        };
        if out.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}

fn options() -> FailoverOptions {
    FailoverOptions {
        retries: 100,
        retry_pause: Duration::from_millis(50),
        reply_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
        keepalive_interval: Duration::from_secs(600),
        agent: "test-proxy/1".into(),
    }
}

/// A share whose nonce is `seq` in hex, so the pool side can tell shares apart.
fn share(seq: u64) -> Share<'static> {
    Share {
        session: 1,
        job_id: "job000001".into(),
        nonce: format!("{seq:08x}").into(),
        result: result_for_difficulty(500).into(),
        algo: None,
        extra_nonce: None,
    }
}

/// Waits until `count` results arrived; then checks that each came for a distinct `seq` of
/// `accepted` (no share answered twice, none answered that was refused).
async fn all_answered_once(
    recorder: &Recorder,
    accepted: &HashSet<u64>,
) -> HashMap<u64, Result<(), ShareError>> {
    let want = accepted.len();
    recorder
        .wait_for(&format!("{want} results"), |s| {
            (s.results.len() >= want).then_some(())
        })
        .await;
    let seen = recorder.seen();
    let mut by_seq = HashMap::new();
    for (seq, r) in &seen.results {
        assert!(accepted.contains(seq), "result for refused share {seq}");
        assert!(
            by_seq.insert(*seq, r.clone()).is_none(),
            "share {seq} answered twice"
        );
    }
    assert_eq!(by_seq.len(), want);
    by_seq
}

/// Every share line the pool read is well formed, carries a unique request id and the
/// session id, and each of `seqs` was sent exactly once.
fn pool_saw_each_once(pool: &RawPool, seqs: impl IntoIterator<Item = u64>) {
    let submits = pool.submits();
    let mut ids = HashSet::new();
    let mut nonces: HashMap<String, usize> = HashMap::new();
    for s in &submits {
        assert!(ids.insert(s["id"].as_u64().expect("numeric id")), "{s}");
        assert_eq!(s["params"]["id"], SESSION);
        assert_eq!(s["params"]["job_id"], "job000001");
        *nonces
            .entry(s["params"]["nonce"].as_str().unwrap().into())
            .or_default() += 1;
    }
    for seq in seqs {
        assert_eq!(
            nonces.get(&format!("{seq:08x}")),
            Some(&1),
            "share {seq} on the wire"
        );
    }
}

fn assert_all_ok(results: &HashMap<u64, Result<(), ShareError>>) {
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).take(5).collect();
    assert!(failed.is_empty(), "failed shares, first few: {failed:?}");
}

fn submit_all(upstream: &Upstream, seqs: impl Iterator<Item = u64>) -> Vec<u64> {
    seqs.filter(|seq| {
        upstream
            .submit(*seq, share(*seq), tokio::time::Instant::now())
            .is_ok()
    })
    .collect()
}

/// `n` OS threads submitting `per` shares each (thread `t`: seqs `t·per+1 ..= (t+1)·per`);
/// each returns the seqs that were taken.
fn submit_threads(upstream: &Upstream, n: u64, per: u64) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    (0..n)
        .map(|t| {
            let up = upstream.clone();
            std::thread::spawn(move || submit_all(&up, t * per + 1..=(t + 1) * per))
        })
        .collect()
}

/// A [`RawPool`] (`small_buffer` as [`RawPool::start`] takes it) and an upstream logged in
/// to it (its first job reported).
async fn logged_in(small_buffer: bool) -> (RawPool, Harness) {
    let pool = RawPool::start(small_buffer).await;
    let h = Harness::spawn(vec![pool.entry()], options());
    h.recorder.job(0).await;
    (pool, h)
}

/// Stops `pool` reading and submits [`STALLED`] shares (seqs `1..=STALLED`); checks every one
/// was taken and returns them.
fn stall(pool: &RawPool, h: &Harness) -> HashSet<u64> {
    pool.set_paused(true);
    let accepted: HashSet<u64> = submit_all(&h.upstream, 1..=STALLED).into_iter().collect();
    assert_eq!(accepted.len() as u64, STALLED, "every submit taken");
    accepted
}

#[tokio::test(flavor = "current_thread")]
async fn a_submit_reaches_the_pool_without_the_upstream_task_running() {
    bounded(async {
        let (pool, h) = logged_in(false).await;
        h.upstream
            .submit(1, share(1), tokio::time::Instant::now())
            .expect("taken");
        // This runtime has one thread and the test holds it: the upstream's task cannot run,
        // so the line can only have been written by `submit` itself.
        assert!(
            pool.wait_lines(|l| l.iter().any(|l| l.contains("\"submit\""))),
            "the submit line was not written by submit()"
        );
        assert_eq!(h.recorder.result(1).await, Ok(()));
        pool_saw_each_once(&pool, [1]);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_from_threads_and_tasks_are_each_sent_and_answered_once() {
    bounded(async {
        let (pool, h) = logged_in(false).await;
        const PER: u64 = 300;
        let threads = submit_threads(&h.upstream, 4, PER);
        let tasks: Vec<_> = (4..8u64)
            .map(|t| {
                let up = h.upstream.clone();
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for seq in t * PER + 1..=(t + 1) * PER {
                        if up
                            .submit(seq, share(seq), tokio::time::Instant::now())
                            .is_ok()
                        {
                            ok.push(seq);
                        }
                        if seq % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    ok
                })
            })
            .collect();
        let mut accepted = HashSet::new();
        for t in threads {
            accepted.extend(t.join().expect("submit thread"));
        }
        for t in tasks {
            accepted.extend(t.await.expect("submit task"));
        }
        assert_eq!(accepted.len() as u64, 8 * PER, "every submit taken");
        let results = all_answered_once(&h.recorder, &accepted).await;
        assert_all_ok(&results);
        pool_saw_each_once(&pool, accepted.iter().copied());
        assert_eq!(pool.submits().len() as u64, 8 * PER);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_racing_a_disconnect_are_each_answered_once() {
    bounded(async {
        let (pool, h) = logged_in(false).await;
        const PER: u64 = 1000;
        let threads = submit_threads(&h.upstream, 3, PER);
        // Drop the connection while the threads are still submitting.
        let shared = pool.shared.clone();
        let dropper = tokio::task::spawn_blocking(move || {
            let seen = shared.wait_lines(|l| l.len() > 300);
            shared.drop_connections();
            seen
        });
        let mut accepted = HashSet::new();
        for t in threads {
            accepted.extend(t.join().expect("submit thread"));
        }
        assert!(
            dropper.await.unwrap(),
            "the pool read submits before the drop"
        );
        let results = all_answered_once(&h.recorder, &accepted).await;
        for (seq, r) in &results {
            assert!(
                matches!(
                    r,
                    Ok(())
                        | Err(ShareError::Disconnected
                            | ShareError::NotConnected
                            | ShareError::SessionEnded)
                ),
                "share {seq}: {r:?}"
            );
        }
        // Every share the pool answered was read exactly once.
        pool_saw_each_once(
            &pool,
            results.iter().filter(|(_, r)| r.is_ok()).map(|(s, _)| *s),
        );
        h.stop().await;
    })
    .await;
}

/// Shares sent while the pool reads nothing: more than a submit queue holds (1024) and than
/// the sockets take (a few KiB with the pool's small receive buffer), less than the
/// out-buffer's 1 MiB (lines of about 230 bytes).
const STALLED: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_stops_reading_gets_every_share_once_it_reads_again() {
    bounded(async {
        let (pool, h) = logged_in(true).await;
        let accepted = stall(&pool, &h);
        pool.set_paused(false);
        let results = all_answered_once(&h.recorder, &accepted).await;
        assert_all_ok(&results);
        pool_saw_each_once(&pool, 1..=STALLED);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_stuck_behind_a_stalled_pool_fail_once_when_it_drops() {
    bounded(async {
        let (pool, h) = logged_in(true).await;
        let accepted = stall(&pool, &h);
        pool.drop_connections();
        let results = all_answered_once(&h.recorder, &accepted).await;
        // The pool may have read (and answered) the first line before the pause took hold.
        let read: HashSet<String> = pool
            .submits()
            .iter()
            .map(|s| s["params"]["nonce"].as_str().unwrap().to_string())
            .collect();
        assert!(read.len() < 100, "the pool read {} shares", read.len());
        for (seq, r) in &results {
            let was_read = read.contains(&format!("{seq:08x}"));
            assert!(
                *r == Err(ShareError::Disconnected) || (was_read && r.is_ok()),
                "share {seq} (read by the pool: {was_read}): {r:?}"
            );
        }
        pool.set_paused(false);
        h.stop().await;
    })
    .await;
}
