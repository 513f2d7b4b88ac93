//! The load generator's Bitcoin Stratum V1 side (`--protocol stratum-v1`): the same phases
//! and figures as for CryptoNote, with SV1 miners and an SV1 pool.
//!
//! - **pool**: each proxy connection is served by [`PoolConn`] (the scripted pool of
//!   [`crate::sv1_pool`]): configure (mask AND `1fffe000`), subscribe (an extranonce1 of 4
//!   bytes per connection, 8 bytes of extranonce2), authorize (then `mining.set_difficulty`
//!   and the current job), and every submit checked for real with sha256d at the pool's
//!   difficulty ([`DIFFICULTY`]) before it is answered `true`.
//! - **login**: a miner sends `mining.configure` (version rolling, mask `ffffffff`),
//!   `mining.subscribe` and `mining.authorize` at once (as cgminer and bitaxe pipeline them)
//!   and is logged in once it has its extranonce1, the authorize `true`, a difficulty and a
//!   `mining.notify`.
//! - **jobs**: job `j` has the id `{j:08x}` ([`job_id`]); a miner reads its id with a byte
//!   scan (`scan_notify`) and takes the job itself from the generator's table
//!   (`State::jobs`), so a receipt costs no JSON parse (a proxy that numbers jobs its own
//!   way, as ckpool does, keeps the pool's ntime: then the job is found by its ntime, after
//!   a full parse). Every job is `clean_jobs` and has
//!   a merkle branch of [`BRANCH_LEN`] hashes, as a mainnet block of a few thousand
//!   transactions, so the proxy's check hashes what it would in production.
//! - **shares**: share `k` carries `k` in the last 4 bytes of the miner's extranonce2 (the
//!   bytes before are 0; a proxy must leave at least 4), so the pool reads back which share
//!   it got, and the pool remembers the extranonce1 and tail it was forwarded with
//!   (compared at the end with the miner's own extranonce1: the SV1 form of "the miner's
//!   fixed byte"). Its nonce is the first from 0 whose header hash meets the miner's
//!   difficulty and does **not** meet the job's network target (`nbits` `1d00ffff`): no
//!   share can be a block, whatever the hashes. At the pool's difficulty of 2^-32 the first
//!   nonce almost always passes (a hash fails only when its top 16 bits are all ones), so a
//!   share costs the generator a coinbase hash, the branch and one header hash.
//!
//! Every line the generator sends is made by `stratum_proto::sv1`'s encoders, and every
//! line it reads except a job notification goes through its parsers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use stratum_proto::sv1::share::{build_header, hash_difficulty, network_target};
use stratum_proto::sv1::{
    parse_server_line, ClientRequest, Configure, ConfigureResult, Notify, PrevHash, ServerMessage,
    Submit, Subscribe, SubscribeResult, VersionRollingRequest, VersionRollingResult,
};
use stratum_proto::{Id, LineCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::{lock, read_some, Ctx, RigIds};
use crate::sv1_pool::{PoolConn, Sv1PoolConfig};

/// The pool's share difficulty: 2^-32. The proxy's vardiff never goes above the upstream's
/// difficulty, so every miner works at it too, and nearly every nonce meets it.
pub const DIFFICULTY: f64 = 1.0 / 4_294_967_296.0;

/// The jobs' network target in compact form: difficulty 1 (a hash under 2^224), which the
/// generator's shares are chosen never to meet.
pub const NBITS: u32 = 0x1d00_ffff;

/// Merkle branch length of every job: 12 hashes, a block of 2,049 to 4,096 transactions.
pub const BRANCH_LEN: usize = 12;

/// The payout address the miners name before their worker (a mainnet bech32 address).
pub const ADDRESS: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";

/// The user agent every miner subscribes with.
pub const USER_AGENT: &str = "cgminer/4.12.1";

/// The mask the miners ask to roll (bitaxe's).
const MINER_MASK: u32 = 0xffff_ffff;

/// The pause between a pool's authorize answer and the difficulty and job it sends after.
const AFTER_AUTHORIZE: Duration = Duration::from_millis(100);

/// Request ids of the login.
const CONFIGURE_ID: u64 = 1;
const SUBSCRIBE_ID: u64 = 2;
const AUTHORIZE_ID: u64 = 3;
/// Request id of share `k` is `k + FIRST_SHARE_ID`.
pub(super) const FIRST_SHARE_ID: u64 = 16;

/// Most nonces tried for one share before it is sent as it is: at [`DIFFICULTY`] one nonce
/// in 65,536 fails, so the first almost always passes. A miner held at a difficulty the
/// generator cannot meet cheaply (ckpool gives at least 1: 2^32 hashes a share) sends its
/// shares unsolved after this many tries, and the proxy refuses them after its sha256d
/// check (the report counts them as errors).
const MAX_NONCES: u32 = 256;

/// The SV1 part of the run's shared state (empty in a CryptoNote run).
pub(super) struct State {
    /// Job `j`, once made (0 is the job of the logins, 1..=K those of the job phase).
    pub(super) jobs: Vec<OnceLock<Notify>>,
    /// Per miner: [`en_key`] of the bytes its shares' coinbases have before the share
    /// index: its extranonce1 and the zero bytes of its extranonce2 (0 until it logged in).
    pub(super) miner_key: Vec<AtomicU64>,
    /// Per share index: [`en_key`] of the same bytes as the pool got them: its
    /// connection's extranonce1 and the forwarded extranonce2 but its last 4 bytes.
    pub(super) pool_key: Vec<AtomicU64>,
}

impl State {
    pub(super) fn new(sv1: bool, miners: usize, jobs: usize, shares: usize) -> Self {
        if !sv1 {
            return Self {
                jobs: Vec::new(),
                miner_key: Vec::new(),
                pool_key: Vec::new(),
            };
        }
        let jobs: Vec<OnceLock<Notify>> = std::iter::repeat_with(OnceLock::new)
            .take(jobs + 1)
            .collect();
        let _ = jobs[0].set(make_job(0));
        Self {
            jobs,
            miner_key: super::atomics(miners),
            pool_key: super::atomics(shares),
        }
    }

    /// Job number `j`, when made.
    pub(super) fn job(&self, j: u64) -> Option<&Notify> {
        self.jobs.get(usize::try_from(j).ok()?)?.get()
    }
}

/// A key of extranonce bytes (FNV-1a, never 0): equal bytes, equal keys.
pub(super) fn en_key(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h.max(1)
}

/// The id of job `j`: 8 hex digits (`para` and others want hex ids).
pub fn job_id(j: u64) -> String {
    format!("{j:08x}")
}

/// The first job's ntime; job `j` has `NTIME + j`.
const NTIME: u32 = 0x6b0d_54b4;

/// The number of job `n` as the miners get it: from its id when the proxy passed the
/// pool's on ([`job_id`]), else from its ntime (a proxy that numbers jobs its own way, as
/// ckpool does, keeps the pool's ntime).
pub(super) fn job_of(n: &Notify) -> Option<u64> {
    job_number(n.job_id.as_bytes()).or_else(|| n.ntime.checked_sub(NTIME).map(u64::from))
}

/// The job number of an id made by [`job_id`].
pub(super) fn job_number(id: &[u8]) -> Option<u64> {
    if id.len() != 8 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(id).ok()?, 16).ok()
}

/// Job `j`: a mainnet-shaped job (version `20000000`, [`NBITS`], a coinbase of about 150
/// bytes around the extranonce, [`BRANCH_LEN`] branch hashes), different for each `j`.
pub fn make_job(j: u64) -> Notify {
    let mut prev = [0u8; 32];
    prev[..8].copy_from_slice(&j.to_le_bytes());
    prev[31] = 0x5a;
    // Version 1 tx, one input spending nothing, a scriptSig of 4 height bytes before the
    // extranonce (its length byte counts 4 + 12 extranonce bytes + 8 tag bytes).
    let mut coinb1 = hex(
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff1803",
    );
    coinb1.extend_from_slice(&(j as u32).to_le_bytes()[..3]);
    // After the extranonce: a tag, the sequence, two outputs (payout and witness commitment).
    let coinb2 = hex(
        "2f62656e63682f2fffffffff0200f2052a010000001976a91458337b55b94478e8455ca3399eefbc00487f859688ac0000000000000000266a24aa21a9ed5b4c9f1c3ad3f0f5b3b1d0c6f5b1f5e4a2e4c6d8a9b7c5d3e1f2a4b6c8d0e2f400000000",
    );
    let merkle_branch = (0..BRANCH_LEN)
        .map(|i| {
            let mut h = [0u8; 32];
            h[0] = i as u8;
            h[1..9].copy_from_slice(&j.to_le_bytes());
            h[31] = 0xb7;
            h
        })
        .collect();
    Notify {
        job_id: job_id(j),
        prevhash: PrevHash(prev),
        coinb1,
        coinb2,
        merkle_branch,
        version: 0x2000_0000,
        nbits: NBITS,
        ntime: NTIME + j as u32,
        clean_jobs: true,
    }
}

fn hex(s: &str) -> Vec<u8> {
    // The constants above are even-length hex.
    stratum_proto::job::decode_hex(s).unwrap_or_default()
}

/// The worker name miner `i` authorizes as: `ADDRESS.rig-00000` (unique), `ADDRESS.rig`
/// (shared) or `ADDRESS` (none).
pub(super) fn worker_name(rig_ids: RigIds, i: usize) -> String {
    match rig_ids {
        RigIds::Unique => format!("{ADDRESS}.rig-{i:05}"),
        RigIds::Shared => format!("{ADDRESS}.rig"),
        RigIds::None => ADDRESS.to_string(),
    }
}

/// The login lines, pipelined: configure (when `version_rolling`), subscribe, authorize.
pub(super) fn login_lines(worker: &str, version_rolling: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if version_rolling {
        out = ClientRequest::Configure(Configure {
            version_rolling: Some(VersionRollingRequest {
                mask: Some(MINER_MASK),
                min_bit_count: Some(2),
            }),
            ..Configure::default()
        })
        .encode(&Id::from(CONFIGURE_ID));
    }
    out.extend(
        ClientRequest::Subscribe(Subscribe {
            user_agent: Some(USER_AGENT.into()),
            session_id: None,
        })
        .encode(&Id::from(SUBSCRIBE_ID)),
    );
    out.extend(
        ClientRequest::Authorize(stratum_proto::sv1::Authorize {
            username: worker.to_string(),
            password: Some("x".into()),
        })
        .encode(&Id::from(AUTHORIZE_ID)),
    );
    out
}

/// What a miner has once logged in.
pub(super) struct LoggedIn {
    pub(super) stream: TcpStream,
    /// Bytes read after the line that completed the login.
    pub(super) buf: BytesMut,
    pub(super) extranonce1: Vec<u8>,
    pub(super) extranonce2_size: usize,
    /// The version mask granted (0: none).
    pub(super) mask: u32,
    pub(super) difficulty: f64,
    /// The number of the job last notified.
    pub(super) job: u64,
    /// Its id as the proxy sent it (shares name it).
    pub(super) job_id: String,
}

/// What the login has read so far.
#[derive(Default)]
struct Progress {
    extranonce: Option<(Vec<u8>, usize)>,
    mask: u32,
    authorized: bool,
    difficulty: Option<f64>,
    job: Option<(u64, String)>,
}

/// Connects from `ip` to the proxy, sends the login lines for `worker` (with
/// `mining.configure` when `version_rolling`) and reads until
/// the miner has its extranonce, its authorization, a difficulty and a job.
///
/// # Errors
/// The reason, for the report (as the CryptoNote login's).
pub(super) async fn connect_login(
    ip: std::net::Ipv4Addr,
    proxy: std::net::SocketAddr,
    worker: &str,
    version_rolling: bool,
) -> Result<LoggedIn, String> {
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
    sock.bind(std::net::SocketAddr::new(std::net::IpAddr::V4(ip), 0))
        .map_err(|e| format!("bind {ip}: {}", e.kind()))?;
    let mut stream = sock
        .connect(proxy)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&login_lines(worker, version_rolling))
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut codec = LineCodec::default();
    let mut p = Progress::default();
    loop {
        read_some(&mut stream, &mut buf).await?;
        while let Some(line) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            login_line(&mut p, &line)?;
            if let (Some((en1, en2)), true, Some(d), Some((j, id))) =
                (&p.extranonce, p.authorized, p.difficulty, &p.job)
            {
                if *en2 < 4 {
                    return Err(format!(
                        "extranonce2_size {en2}: below the 4 bytes shares use"
                    ));
                }
                return Ok(LoggedIn {
                    stream,
                    buf,
                    extranonce1: en1.clone(),
                    extranonce2_size: *en2,
                    mask: p.mask,
                    difficulty: d,
                    job: *j,
                    job_id: id.clone(),
                });
            }
        }
    }
}

/// One line read during the login.
fn login_line(p: &mut Progress, line: &[u8]) -> Result<(), String> {
    match parse_server_line(line).map_err(|e| format!("bad line: {e}"))? {
        // A proxy that does not know `mining.configure` (BIP 310) refuses it: no rolling.
        ServerMessage::Response {
            id,
            outcome: Err(_),
        } if id.as_u64() == Some(CONFIGURE_ID) => {}
        ServerMessage::Response { id, outcome } => {
            let v = outcome.map_err(|e| format!("refused: {}", e.message))?;
            match id.as_u64() {
                Some(CONFIGURE_ID) => {
                    let r = ConfigureResult::from_value(&v)
                        .map_err(|e| format!("configure result: {e}"))?;
                    if let Some(VersionRollingResult::Enabled { mask }) = r.version_rolling {
                        p.mask = mask;
                    }
                }
                Some(SUBSCRIBE_ID) => {
                    let r = SubscribeResult::from_value(&v)
                        .map_err(|e| format!("subscribe result: {e}"))?;
                    p.extranonce = Some((r.extranonce1, r.extranonce2_size));
                }
                Some(AUTHORIZE_ID) => {
                    if v != serde_json::Value::Bool(true) {
                        return Err(format!("authorize answered {v}"));
                    }
                    p.authorized = true;
                }
                _ => {}
            }
        }
        ServerMessage::SetDifficulty(d) => p.difficulty = Some(d),
        ServerMessage::SetVersionMask(m) => p.mask &= m,
        ServerMessage::Notify(n) => {
            let j = job_of(&n).ok_or("a job neither by id nor by ntime of ours")?;
            p.job = Some((j, n.job_id));
        }
        _ => {}
    }
    Ok(())
}

/// A `mining.notify` line's job id (its first param), read with a byte scan whatever the
/// order of the keys; `None` when the line is not a notify or its params do not start with
/// a string.
pub(super) fn scan_notify(line: &[u8]) -> Option<&[u8]> {
    memchr::memmem::find(line, b"\"mining.notify\"")?;
    let params = memchr::memmem::find(line, b"\"params\"")? + b"\"params\"".len();
    let mut rest = line[params..].iter();
    let mut at = params;
    for expect in [b':', b'[', b'"'] {
        loop {
            let &b = rest.next()?;
            at += 1;
            if b == expect {
                break;
            }
            if !b.is_ascii_whitespace() {
                return None;
            }
        }
    }
    let len = memchr::memchr(b'"', &line[at..])?;
    Some(&line[at..at + len])
}

/// The extranonce2 of share `k` for a miner with `size` bytes (at least 4): zeros, then `k`
/// big-endian in the last 4 bytes.
pub(super) fn extranonce2(size: usize, k: u32) -> Vec<u8> {
    let mut e = vec![0u8; size.max(4)];
    let n = e.len();
    e[n - 4..].copy_from_slice(&k.to_be_bytes());
    e
}

/// The share index an extranonce2 made by [`extranonce2`] carries (its last 4 bytes).
pub(super) fn share_index(extranonce2: &[u8]) -> Option<u32> {
    let at = extranonce2.len().checked_sub(4)?;
    Some(u32::from_be_bytes(extranonce2[at..].try_into().ok()?))
}

/// Share `k` of a miner on `job` (named `job_id`, as the proxy sent it): its extranonce2
/// ([`extranonce2`]), the job's ntime,
/// version bits 0 when rolling was granted, and the first nonce from 0 whose hash meets
/// `difficulty` and not the network target (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(super) fn make_share(
    job: &Notify,
    job_id: &str,
    extranonce1: &[u8],
    extranonce2_size: usize,
    mask: u32,
    difficulty: f64,
    worker: &str,
    k: u32,
) -> Submit {
    let mut submit = Submit {
        worker: worker.to_string(),
        job_id: job_id.to_string(),
        extranonce2: extranonce2(extranonce2_size, k),
        ntime: job.ntime,
        nonce: 0,
        version_bits: (mask != 0).then_some(0),
    };
    let Ok(mut header) = build_header(job, extranonce1, &submit, mask) else {
        return submit;
    };
    let network = network_target(job.nbits);
    for nonce in 0..MAX_NONCES {
        header.nonce = nonce;
        let hash = header.block_hash();
        if hash_difficulty(hash) >= difficulty && !network.is_met_by(hash) {
            submit.nonce = nonce;
            return submit;
        }
    }
    submit
}

/// The line of share `k` (request id `k + FIRST_SHARE_ID`).
pub(super) fn share_line(submit: Submit, k: u64) -> Vec<u8> {
    ClientRequest::Submit(submit).encode(&Id::from(k + FIRST_SHARE_ID))
}

// ----- the pool side -----

/// The pool's settings: `difficulty` ([`DIFFICULTY`] unless the run asks for more), mask
/// `1fffe000`, extranonce1 `b0000000 + n` for connection `n`, 8 bytes of extranonce2, job 0.
fn pool_config(difficulty: f64) -> Sv1PoolConfig {
    Sv1PoolConfig {
        extranonce1_base: 0xb000_0000,
        extranonce1_size: 4,
        extranonce2_size: 8,
        difficulty,
        version_mask: 0x1fff_e000,
        job: make_job(0),
        refuse_with: None,
    }
}

/// Makes job `j` current at the pool (the only job: each is clean) and sends it to every
/// pool connection; returns the send time.
pub(super) fn push_job(ctx: &Ctx, j: u64) -> std::time::Instant {
    let job = make_job(j);
    let line = Bytes::from(ServerMessage::Notify(job.clone()).encode());
    if let Some(slot) = ctx.sv1.jobs.get(j as usize) {
        let _ = slot.set(job.clone());
    }
    let mut pool = lock(&ctx.pool);
    pool.sv1_jobs = vec![job];
    let t0 = std::time::Instant::now();
    super::send_job(&mut pool.conns, &line);
    t0
}

/// One proxy connection to the SV1 pool.
pub(super) async fn pool_conn(ctx: Arc<Ctx>, stream: TcpStream, index: u64) {
    let config = pool_config(ctx.opts.sv1_pool_difficulty);
    let mut conn = PoolConn::new(usize::try_from(index).unwrap_or(usize::MAX), &config);
    // The difficulty and job after an authorize answer come apart from it, as from a real
    // pool: ckpool 0.9 in proxy mode does not read lines that arrive in the same read as the
    // answer until more bytes come.
    super::serve_pool_conn(&ctx, stream, AFTER_AUTHORIZE, |line, tx, out, later| {
        pool_line(&ctx, &mut conn, &config, line, tx, out, later);
    })
    .await;
}

/// Answers one line the proxy sent to the pool, into `out`; counts the submits by share
/// index and registers the connection for job pushes at its authorize.
#[allow(clippy::too_many_arguments)]
fn pool_line(
    ctx: &Ctx,
    conn: &mut PoolConn,
    config: &Sv1PoolConfig,
    line: &[u8],
    tx: &mut Option<mpsc::Sender<Bytes>>,
    out: &mut Vec<u8>,
    later: &mut Vec<u8>,
) {
    // Under the pool's lock, so that a job push is either in the authorize's answer or
    // sent after it.
    let mut pool = lock(&ctx.pool);
    let handled = conn.handle_line(line, &pool.sv1_jobs, config.difficulty, config.version_mask);
    let mut lines = handled.out.into_iter();
    match handled.received.as_ref().map(|r| &r.request) {
        Some(ClientRequest::Authorize(_)) => {
            if let Some(tx) = tx.take() {
                pool.conns.push(tx);
                ctx.pool_logins.fetch_add(1, Ordering::Relaxed);
            }
            // The answer now, the difficulty and job after a pause.
            if let Some(answer) = lines.next() {
                out.extend_from_slice(&answer);
            }
            for l in lines.by_ref() {
                later.extend_from_slice(&l);
            }
        }
        Some(ClientRequest::Submit(s)) => {
            drop(pool);
            let index = share_index(&s.extranonce2).map(|k| k as usize);
            match index.and_then(|k| Some((k, ctx.pool_count.get(k)?))) {
                Some((k, count)) => {
                    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                        Some(c.saturating_add(1))
                    });
                    let mut en = conn.extranonce1().to_vec();
                    en.extend_from_slice(&s.extranonce2[..s.extranonce2.len() - 4]);
                    ctx.sv1.pool_key[k].store(en_key(&en), Ordering::Relaxed);
                }
                None => {
                    ctx.pool_unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        _ => {}
    }
    for l in lines {
        out.extend_from_slice(&l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum_proto::sv1::parse_client_line;
    use stratum_proto::sv1::share::check_share;
    use stratum_proto::sv1::ClientMessage;

    #[test]
    fn a_share_meets_the_difficulty_and_is_never_a_block() {
        let job = make_job(3);
        let en1 = [0xb0, 0, 0, 1, 0, 7];
        // A difficulty at which about one nonce in 16 passes: the search must skip the
        // others, and every share found must pass stratum-proto's check.
        let d = 1.0 / 268_435_456.0;
        for k in 0..64 {
            let s = make_share(&job, "0003", &en1, 6, 0x1fff_e000, d, "w", k);
            let c = check_share(&job, &en1, &s, 0x1fff_e000, d).unwrap();
            assert!(c.meets_share, "share {k}");
            assert!(!c.meets_network, "share {k}");
            assert_eq!(share_index(&s.extranonce2), Some(k));
            assert_eq!(s.extranonce2.len(), 6);
        }
    }

    #[test]
    fn a_share_line_reads_back_with_its_index_and_version_bits() {
        let job = make_job(1);
        let s = make_share(
            &job,
            "0001",
            &[1, 2, 3, 4],
            8,
            0x1fff_e000,
            DIFFICULTY,
            "a.b",
            77,
        );
        let line = share_line(s.clone(), 77);
        match parse_client_line(&line[..line.len() - 1]).unwrap() {
            ClientMessage::Request { id, request } => {
                assert_eq!(id.as_u64(), Some(77 + FIRST_SHARE_ID));
                assert_eq!(request, ClientRequest::Submit(s));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_notify_line_is_scanned_for_its_job_number() {
        let line = ServerMessage::Notify(make_job(0x2a)).encode();
        let id = scan_notify(&line).unwrap();
        assert_eq!(id, b"0000002a");
        assert_eq!(job_number(id), Some(0x2a));
        assert!(scan_notify(&ServerMessage::SetDifficulty(2.0).encode()).is_none());
        // Other key orders and spacing, as other proxies write them.
        let other = br#"{"params": [ "0000002b", "00"], "id": null, "method": "mining.notify"}"#;
        assert_eq!(scan_notify(other), Some(&b"0000002b"[..]));
        assert_eq!(
            scan_notify(br#"{"method":"mining.notify","params":[1]}"#),
            None
        );
        assert_eq!(job_number(b"a000001"), None);
    }

    #[test]
    fn jobs_are_mainnet_shaped_and_differ_and_are_known_by_id_or_ntime() {
        let (a, b) = (make_job(1), make_job(2));
        assert_eq!((job_of(&a), job_of(&b)), (Some(1), Some(2)));
        let renamed = Notify {
            job_id: "1f".into(),
            ..make_job(7)
        };
        assert_eq!(job_of(&renamed), Some(7));
        assert_ne!(a, b);
        assert_eq!(a.merkle_branch.len(), BRANCH_LEN);
        assert_eq!(a.nbits, NBITS);
        assert!(a.coinb1.len() + a.coinb2.len() > 120);
    }

    #[test]
    fn the_login_lines_are_configure_subscribe_authorize() {
        let lines = login_lines("a.w", true);
        let methods: Vec<&'static str> = lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| match parse_client_line(l).unwrap() {
                ClientMessage::Request { request, .. } => request.method(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            methods,
            ["mining.configure", "mining.subscribe", "mining.authorize"]
        );
        let lines = login_lines("a.w", false);
        assert!(!String::from_utf8(lines).unwrap().contains("configure"));
    }

    #[test]
    fn extranonce_keys_tell_bytes_apart() {
        assert_eq!(en_key(&[1, 2]), en_key(&[1, 2]));
        assert_ne!(en_key(&[1, 2]), en_key(&[2, 1]));
        assert_ne!(en_key(&[]), 0);
    }
}
