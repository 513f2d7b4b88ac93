//! A scripted Stratum V1 pool for tests, as [`mock_pool`](crate::mock_pool) is for CryptoNote.
//!
//! It listens on `127.0.0.1:0` and serves `mining.configure` (version rolling: the miner's
//! mask AND the pool's), `mining.subscribe` (an extranonce1 of its own per connection),
//! `mining.authorize` (any worker), `mining.extranonce.subscribe` and
//! `mining.suggest_difficulty` (answered `true`, ignored). After a successful authorize it
//! sends `mining.set_difficulty` and the current job. Every submit is checked for real with
//! [`check_share`] and answered `true` or with the code the spec gives:
//!
//! | check, in order | error |
//! |---|---|
//! | the connection subscribed | 25 not subscribed |
//! | the worker authorized on this connection | 24 unauthorized |
//! | the job is one of the current jobs (a clean job voids the others) | 21 job not found |
//! | extranonce2 has the subscribed size | 20 other |
//! | the same (job, extranonce2, ntime, nonce, version bits) was not submitted before | 22 duplicate |
//! | version bits inside the negotiated mask (0 without configure) | 20 other |
//! | the hash meets the pool's current difficulty | 23 low difficulty |
//!
//! It does not check ntime's window. Every request is recorded with its answer
//! ([`Sv1Received`]). The per-connection logic ([`PoolConn`]) is sans-IO: lines in, lines
//! out; the socket loop only moves bytes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use stratum_proto::sv1::share::check_share;
use stratum_proto::sv1::{
    encode_bool_result, encode_configure_result, encode_error, encode_subscribe_result,
    parse_client_line, parse_server_line, ClientMessage, ClientRequest, ConfigureResult, ErrorCode,
    Notify, ServerMessage, SubscribeResult, VersionRollingResult,
};
use stratum_proto::{Id, LineCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify as Wake};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// The `mining.notify` line of the para 0.6.0 transcript
/// (`shared/docs/reference/sv1-para-miner-transcript.md`): a regtest job (nbits `207fffff`),
/// coinbase paying a P2PKH script, two merkle branch entries, version `20000000`, job id
/// `a000001`.
pub const PARA_NOTIFY_LINE: &str = r#"{"id":null,"method":"mining.notify","params":["a000001","c488987d58337b55b94478e8455ca3399eefbc00487f85961c7c5da756853076","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff10c488987d","ffffffff0100f2052a010000001976a91458337b55b94478e8455ca3399eefbc00487f859688ac00000000",["07961f775b3f9d73bcbb87538e23b6e2ed57d590e21a32d4a92ee6f4523fa8cf","0fe437305229ed54f1e20edcd7370dd28de61cb49bd8155bc3515d2b5cf3e3b5"],"20000000","207fffff","6b0d54b4",true]}"#;

/// The job of the para transcript ([`PARA_NOTIFY_LINE`]), with `clean_jobs` set.
pub fn para_job() -> Notify {
    match parse_server_line(PARA_NOTIFY_LINE.as_bytes()) {
        Ok(ServerMessage::Notify(n)) => n,
        // A constant that the tests read back: it parses, or every test says so.
        other => unreachable!("the para notify line does not parse: {other:?}"),
    }
}

/// The pool's settings.
#[derive(Debug, Clone)]
pub struct Sv1PoolConfig {
    /// The first connection's extranonce1; connection `n` gets this number plus `n`,
    /// big-endian, in `extranonce1_size` bytes.
    pub extranonce1_base: u64,
    /// extranonce1 length in bytes (1..=8).
    pub extranonce1_size: usize,
    /// extranonce2 length in bytes the miners must send.
    pub extranonce2_size: usize,
    /// Share difficulty, sent after authorize and used to check shares (may be fractional).
    pub difficulty: f64,
    /// The version bits the pool lets miners roll (answered `mask & this` to configure).
    pub version_mask: u32,
    /// The current job.
    pub job: Notify,
    /// A JSON `error` value (e.g. `[-5,"Stale"]` or `"rejected"`) answered to every share
    /// that would be accepted, to play a pool's non-standard refusal. Default none.
    pub refuse_with: Option<String>,
}

impl Default for Sv1PoolConfig {
    /// The para transcript's pool: extranonce1 `a1000001` (4 bytes), extranonce2 8 bytes,
    /// difficulty 2^-16, mask `1fffe000`, [`para_job`].
    fn default() -> Self {
        Self {
            extranonce1_base: 0xa100_0001,
            extranonce1_size: 4,
            extranonce2_size: 8,
            difficulty: 1.0 / 65536.0,
            version_mask: 0x1fff_e000,
            job: para_job(),
            refuse_with: None,
        }
    }
}

/// What the pool did with one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sv1Received {
    /// Which connection (0-based, in accept order).
    pub conn: usize,
    /// The request's id.
    pub id: Id,
    /// The request as parsed.
    pub request: ClientRequest,
    /// For submits: `Ok(())` when accepted, else the error code sent. `Ok(())` for the
    /// other requests that were answered with success.
    pub verdict: Result<(), ErrorCode>,
}

struct Shared {
    config: Sv1PoolConfig,
    /// The jobs shares may be for: the last clean job and those after it.
    jobs: Vec<Notify>,
    received: Vec<Sv1Received>,
    conns: Vec<Option<mpsc::Sender<Vec<u8>>>>,
    /// While `Some`: answers to submits kept back (with their connection's queue) until
    /// [`Sv1Pool::release_answers`], so that a test has shares in flight.
    held: Option<Vec<Held>>,
}

/// An answer kept back, with the queue of the connection it is for.
type Held = (mpsc::Sender<Vec<u8>>, Vec<u8>);

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// What makes a share a duplicate: (job id, extranonce2, ntime, nonce, version bits).
type ShareKey = (String, Vec<u8>, u32, u32, Option<u32>);

/// One miner connection's protocol state, sans-IO: feed it lines with
/// [`PoolConn::handle_line`], send what it returns.
#[derive(Debug)]
pub struct PoolConn {
    index: usize,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    /// The negotiated version mask; 0 until configure.
    version_mask: u32,
    subscribed: bool,
    workers: HashSet<String>,
    seen: HashSet<ShareKey>,
    refuse_with: Option<String>,
}

/// What [`PoolConn::handle_line`] produced.
#[derive(Debug, Default)]
pub struct Handled {
    /// The lines to send, in order (each ends in `\n`).
    pub out: Vec<Vec<u8>>,
    /// The request as recorded (`None` for lines that were no request).
    pub received: Option<Sv1Received>,
}

impl PoolConn {
    /// A connection numbered `index` under `config` (its extranonce1 is
    /// `extranonce1_base + index`).
    pub fn new(index: usize, config: &Sv1PoolConfig) -> Self {
        let size = config.extranonce1_size.clamp(1, 8);
        let n = config.extranonce1_base.wrapping_add(index as u64);
        Self {
            index,
            extranonce1: n.to_be_bytes()[8 - size..].to_vec(),
            extranonce2_size: config.extranonce2_size,
            version_mask: 0,
            subscribed: false,
            workers: HashSet::new(),
            seen: HashSet::new(),
            refuse_with: config.refuse_with.clone(),
        }
    }

    /// This connection's extranonce1.
    pub fn extranonce1(&self) -> &[u8] {
        &self.extranonce1
    }

    /// Handles one line from the miner, given the pool's current jobs (`jobs`), difficulty
    /// and allowed version mask. Malformed lines get a code-20 error (under id `null` when
    /// unreadable); answers to our requests are ignored.
    pub fn handle_line(
        &mut self,
        line: &[u8],
        jobs: &[Notify],
        difficulty: f64,
        pool_mask: u32,
    ) -> Handled {
        let (id, request) = match parse_client_line(line) {
            Ok(ClientMessage::Request { id, request }) => (id, request),
            Ok(ClientMessage::Response { .. }) => return Handled::default(),
            Err(e) => {
                return Handled {
                    out: vec![e.reply()],
                    received: None,
                }
            }
        };
        let mut out = Vec::new();
        let verdict = match &request {
            ClientRequest::Configure(c) => {
                let version_rolling = c.version_rolling.as_ref().map(|vr| {
                    self.version_mask = vr.mask.unwrap_or(u32::MAX) & pool_mask;
                    VersionRollingResult::Enabled {
                        mask: self.version_mask,
                    }
                });
                let r = ConfigureResult {
                    version_rolling,
                    ..ConfigureResult::default()
                };
                out.push(encode_configure_result(&id, &r));
                Ok(())
            }
            ClientRequest::Subscribe(_) => {
                self.subscribed = true;
                let s = format!("s{}", self.index);
                let r = SubscribeResult {
                    subscriptions: vec![
                        ("mining.set_difficulty".into(), s.clone()),
                        ("mining.notify".into(), s),
                    ],
                    extranonce1: self.extranonce1.clone(),
                    extranonce2_size: self.extranonce2_size,
                };
                out.push(encode_subscribe_result(&id, &r));
                Ok(())
            }
            ClientRequest::Authorize(a) => {
                self.workers.insert(a.username.clone());
                out.push(encode_bool_result(&id, true));
                out.push(ServerMessage::SetDifficulty(difficulty).encode());
                if let Some(job) = jobs.last() {
                    out.push(ServerMessage::Notify(job.clone()).encode());
                }
                Ok(())
            }
            ClientRequest::ExtranonceSubscribe | ClientRequest::SuggestDifficulty(_) => {
                out.push(encode_bool_result(&id, true));
                Ok(())
            }
            ClientRequest::Submit(s) => {
                let verdict = self.check_submit(s, jobs, difficulty);
                out.push(match (verdict, &self.refuse_with) {
                    (Ok(()), Some(error)) => format!(
                        "{{\"id\":{},\"result\":null,\"error\":{error}}}\n",
                        serde_json::to_string(&id).unwrap_or_else(|_| "null".into())
                    )
                    .into_bytes(),
                    (Ok(()), None) => encode_bool_result(&id, true),
                    (Err(code), _) => encode_error(&id, code),
                });
                verdict
            }
        };
        Handled {
            out,
            received: Some(Sv1Received {
                conn: self.index,
                id,
                request,
                verdict,
            }),
        }
    }

    fn check_submit(
        &mut self,
        s: &stratum_proto::sv1::Submit,
        jobs: &[Notify],
        difficulty: f64,
    ) -> Result<(), ErrorCode> {
        if !self.subscribed {
            return Err(ErrorCode::NotSubscribed);
        }
        if !self.workers.contains(&s.worker) {
            return Err(ErrorCode::Unauthorized);
        }
        let job = jobs
            .iter()
            .find(|j| j.job_id == s.job_id)
            .ok_or(ErrorCode::JobNotFound)?;
        if s.extranonce2.len() != self.extranonce2_size {
            return Err(ErrorCode::Other);
        }
        let key = (
            s.job_id.clone(),
            s.extranonce2.clone(),
            s.ntime,
            s.nonce,
            s.version_bits,
        );
        if !self.seen.insert(key) {
            return Err(ErrorCode::Duplicate);
        }
        let check = check_share(job, &self.extranonce1, s, self.version_mask, difficulty)
            .map_err(|_| ErrorCode::Other)?;
        if check.meets_share {
            Ok(())
        } else {
            Err(ErrorCode::LowDifficulty)
        }
    }
}

/// A running scripted SV1 pool; stops when dropped.
pub struct Sv1Pool {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Wake>,
    stop: CancellationToken,
}

impl Drop for Sv1Pool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sv1Pool {
    /// Starts a pool on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When binding fails.
    pub async fn start(config: Sv1PoolConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            jobs: vec![config.job.clone()],
            config,
            received: Vec::new(),
            conns: Vec::new(),
            held: None,
        }));
        let changed = Arc::new(Wake::new());
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            changed.clone(),
            stop.clone(),
        ));
        Ok(Self {
            addr,
            shared,
            changed,
            stop,
        })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `job` current and sends it to every open connection; a clean job voids the
    /// earlier ones (their shares get 21).
    pub fn push_job(&self, job: Notify) {
        let line = ServerMessage::Notify(job.clone()).encode();
        let mut st = lock(&self.shared);
        if job.clean_jobs {
            st.jobs.clear();
        }
        st.jobs.push(job);
        broadcast(&st, &line);
    }

    /// Sets the share difficulty, sends it to every open connection and checks shares
    /// against it from now on.
    pub fn set_difficulty(&self, difficulty: f64) {
        let mut st = lock(&self.shared);
        st.config.difficulty = difficulty;
        broadcast(&st, &ServerMessage::SetDifficulty(difficulty).encode());
    }

    /// Sends `line` (a newline is added) as it is to every open connection: for
    /// `mining.set_extranonce`, `mining.set_version_mask`, `client.reconnect` or garbage.
    /// The pool's own state does not change (shares are still checked with the
    /// connection's subscribed extranonce1 and negotiated mask).
    pub fn push_raw(&self, line: &str) {
        broadcast(&lock(&self.shared), format!("{line}\n").as_bytes());
    }

    /// Every request received, in order, with its verdict.
    pub fn received(&self) -> Vec<Sv1Received> {
        lock(&self.shared).received.clone()
    }

    /// The submits received, with their verdicts.
    pub fn submits(&self) -> Vec<Sv1Received> {
        lock(&self.shared)
            .received
            .iter()
            .filter(|r| matches!(r.request, ClientRequest::Submit(_)))
            .cloned()
            .collect()
    }

    /// Keeps the answers to submits received from now on back (the submits are checked and
    /// recorded at once) until [`Sv1Pool::release_answers`]: shares in flight on demand.
    pub fn hold_answers(&self) {
        lock(&self.shared).held.get_or_insert_with(Vec::new);
    }

    /// Sends the answers kept back since [`Sv1Pool::hold_answers`], in order, on the
    /// connections that are still open, and answers at once again. Returns how many.
    pub fn release_answers(&self) -> usize {
        let held = lock(&self.shared).held.take().unwrap_or_default();
        let n = held.len();
        for (tx, line) in held {
            let _ = tx.try_send(line);
        }
        n
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        lock(&self.shared).conns.iter().flatten().count()
    }

    /// Connections accepted so far.
    pub fn connections_total(&self) -> usize {
        lock(&self.shared).conns.len()
    }

    /// Waits until `cond` holds on the pool, up to `wait`. Returns whether it did.
    pub async fn wait_for(&self, wait: Duration, cond: impl Fn(&Sv1Pool) -> bool) -> bool {
        crate::wait_until(&self.changed, wait, || cond(self)).await
    }
}

fn broadcast(st: &Shared, line: &[u8]) {
    for tx in st.conns.iter().flatten() {
        // A connection whose queue is full is a test that stopped reading: it misses lines.
        let _ = tx.try_send(line.to_vec());
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Wake>,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let (tx, rx) = mpsc::channel(1024);
        let conn = {
            let mut st = lock(&shared);
            st.conns.push(Some(tx.clone()));
            PoolConn::new(st.conns.len() - 1, &st.config)
        };
        changed.notify_waiters();
        tokio::spawn(serve(
            stream,
            conn,
            shared.clone(),
            changed.clone(),
            tx,
            rx,
            stop.clone(),
        ));
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    mut conn: PoolConn,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Wake>,
    tx: mpsc::Sender<Vec<u8>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) {
    let (r, mut w) = stream.into_split();
    let mut lines = FramedRead::new(r, LineCodec::default());
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            out = rx.recv() => match out {
                Some(bytes) => if w.write_all(&bytes).await.is_err() { break },
                None => break,
            },
            line = lines.next() => {
                let Some(Ok(line)) = line else { break };
                // The answers are queued under the lock that records the request: a test that
                // sees the request and then pushes a line (`push_raw`, `push_job`) queues it
                // after them, never before.
                let queued = {
                    let mut st = lock(&shared);
                    let handled = conn.handle_line(
                        &line,
                        &st.jobs,
                        st.config.difficulty,
                        st.config.version_mask,
                    );
                    let submit = handled
                        .received
                        .as_ref()
                        .is_some_and(|r| matches!(r.request, ClientRequest::Submit(_)));
                    if let Some(r) = &handled.received {
                        st.received.push(r.clone());
                    }
                    match &mut st.held {
                        Some(held) if submit => {
                            held.extend(handled.out.into_iter().map(|l| (tx.clone(), l)));
                            true
                        }
                        _ => handled.out.into_iter().all(|l| tx.try_send(l).is_ok()),
                    }
                };
                changed.notify_waiters();
                if !queued {
                    break;
                }
            }
        }
    }
    if let Some(slot) = lock(&shared).conns.get_mut(conn.index) {
        *slot = None;
    }
    changed.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum_proto::sv1::{Authorize, Subscribe};

    fn submit_line(id: u64, en2: &str, nonce: &str, bits: &str) -> Vec<u8> {
        format!(
            r#"{{"id":{id},"method":"mining.submit","params":["w","a000001","{en2}","6b0d54b4","{nonce}","{bits}"]}}"#
        )
        .into_bytes()
    }

    fn ready_conn() -> (PoolConn, Vec<Notify>) {
        let config = Sv1PoolConfig::default();
        let mut c = PoolConn::new(0, &config);
        let jobs = vec![para_job()];
        let mask = config.version_mask;
        for req in [
            ClientRequest::Configure(stratum_proto::sv1::Configure {
                version_rolling: Some(stratum_proto::sv1::VersionRollingRequest {
                    mask: Some(u32::MAX),
                    min_bit_count: None,
                }),
                ..Default::default()
            }),
            ClientRequest::Subscribe(Subscribe::default()),
            ClientRequest::Authorize(Authorize {
                username: "w".into(),
                password: None,
            }),
        ] {
            c.handle_line(&req.encode(&Id::from(0)), &jobs, 1.0 / 65536.0, mask);
        }
        (c, jobs)
    }

    fn verdict(c: &mut PoolConn, jobs: &[Notify], line: &[u8]) -> Result<(), ErrorCode> {
        c.handle_line(line, jobs, 1.0 / 65536.0, 0x1fff_e000)
            .received
            .map(|r| r.verdict)
            .unwrap_or(Err(ErrorCode::Other))
    }

    #[test]
    fn the_para_transcript_shares_are_accepted_and_a_replay_is_a_duplicate() {
        let (mut c, jobs) = ready_conn();
        assert_eq!(c.extranonce1(), [0xa1, 0, 0, 1]);
        for (i, (en2, nonce, bits)) in [
            ("0000000000000000", "00000b07", "04534000"),
            ("0000000000000001", "000065e6", "1fe64000"),
            ("0000000000000002", "00004e93", "1f590000"),
        ]
        .into_iter()
        .enumerate()
        {
            let line = submit_line(3 + i as u64, en2, nonce, bits);
            assert_eq!(verdict(&mut c, &jobs, &line), Ok(()), "share {i}");
        }
        let again = submit_line(9, "0000000000000000", "00000b07", "04534000");
        assert_eq!(verdict(&mut c, &jobs, &again), Err(ErrorCode::Duplicate));
    }

    #[test]
    fn a_changed_nonce_is_low_difficulty_and_bits_outside_the_mask_are_refused() {
        let (mut c, jobs) = ready_conn();
        // The para share with its nonce changed: (almost surely, and for this nonce surely)
        // under difficulty 2^-16.
        let low = submit_line(3, "0000000000000000", "00000b08", "04534000");
        assert_eq!(verdict(&mut c, &jobs, &low), Err(ErrorCode::LowDifficulty));
        let outside = submit_line(4, "0000000000000000", "00000b07", "e4534000");
        assert_eq!(verdict(&mut c, &jobs, &outside), Err(ErrorCode::Other));
    }

    #[test]
    fn submits_before_subscribe_or_for_unknown_jobs_or_workers_get_their_codes() {
        let config = Sv1PoolConfig::default();
        let jobs = vec![para_job()];
        let mut fresh = PoolConn::new(0, &config);
        let line = submit_line(1, "0000000000000000", "00000b07", "04534000");
        assert_eq!(
            verdict(&mut fresh, &jobs, &line),
            Err(ErrorCode::NotSubscribed)
        );
        let (mut c, jobs) = ready_conn();
        let stranger = String::from_utf8(line.clone())
            .unwrap()
            .replace("[\"w\"", "[\"x\"");
        assert_eq!(
            verdict(&mut c, &jobs, stranger.as_bytes()),
            Err(ErrorCode::Unauthorized)
        );
        let unknown = String::from_utf8(line.clone())
            .unwrap()
            .replace("a000001", "b000002");
        assert_eq!(
            verdict(&mut c, &jobs, unknown.as_bytes()),
            Err(ErrorCode::JobNotFound)
        );
        let short = submit_line(2, "00000000", "00000b07", "04534000");
        assert_eq!(verdict(&mut c, &jobs, &short), Err(ErrorCode::Other));
    }
}
