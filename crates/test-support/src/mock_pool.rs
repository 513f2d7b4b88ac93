//! An in-process CryptoNote stratum pool for tests.
//!
//! It listens on `127.0.0.1:0`, answers `login` with a session id and its current job,
//! records every request, answers `submit` as told ([`Reply`]), and pushes jobs on demand. It
//! can drop its connections or stop listening to play a failing pool. [`MockPool::start_tls`]
//! serves TLS with a self-signed certificate, for pinning tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use stratum_proto::cryptonote::encode_job_notification;
use stratum_proto::{difficulty_to_target, Job, LineCodec};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// How the pool answers submits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{"status":"OK"}`.
    Ok,
    /// An error object with this message.
    Error(String),
    /// No answer at all.
    Silent,
    /// `{"status":"OK"}`, sent after this delay.
    OkAfter(Duration),
    /// A line that is not JSON.
    Garbage,
    /// No answer: the pool closes the connection.
    Close,
}

/// One request the pool received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which connection (0-based, in accept order).
    pub conn: usize,
    /// `method`.
    pub method: String,
    /// `params`.
    pub params: Value,
}

struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
}

struct State {
    job: Option<Job>,
    reply: Reply,
    extensions: Vec<String>,
    received: Vec<Received>,
    conns: Vec<Option<Conn>>,
    /// Logins are not answered.
    login_silent: bool,
    /// Nothing at all is answered (a pool that stopped talking, TCP still open).
    mute: bool,
}

/// A running mock pool; stops when dropped.
pub struct MockPool {
    addr: SocketAddr,
    cert: Option<CertificateDer<'static>>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    listen_stop: CancellationToken,
    all_stop: CancellationToken,
}

impl Drop for MockPool {
    fn drop(&mut self) {
        self.all_stop.cancel();
    }
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Monero-shaped job (76-byte blob) numbered `n` with difficulty `difficulty`.
pub fn make_job(n: u64, difficulty: u64) -> Job {
    let mut blob = String::from("1010b6d0e7b006");
    while blob.len() < 78 {
        blob.push_str(&format!("{:02x}", (n as usize + blob.len()) % 256));
    }
    blob.push_str("00000000"); // nonce, bytes 39..43
    while blob.len() < 152 {
        blob.push_str(&format!("{:02x}", (n as usize * 7 + blob.len()) % 256));
    }
    Job {
        blob,
        job_id: format!("job{n:06}"),
        target: difficulty_to_target(difficulty),
        algo: Some("rx/0".into()),
        height: Some(3_000_000 + n),
        seed_hash: Some("a".repeat(64)),
    }
}

/// Job notifications no upstream may pass on, each a raw line as [`MockPool::push_raw`]
/// takes it: `good` with a blob that is not hex, a blob cut short, a zero target, an empty
/// job id, job ids of 1,000 and 4,096 bytes; then a line that is not JSON and a `job` whose
/// params are not a job.
pub fn bad_job_lines(good: &Job) -> Vec<String> {
    let bad = |f: &dyn Fn(&mut Job)| {
        let mut j = good.clone();
        f(&mut j);
        json!({"jsonrpc": "2.0", "method": "job", "params": j}).to_string()
    };
    vec![
        bad(&|j| j.blob = "zz".repeat(76)),
        bad(&|j| j.blob.truncate(84)),
        bad(&|j| j.target = "00000000".into()),
        bad(&|j| j.job_id.clear()),
        bad(&|j| j.job_id = "x".repeat(1000)),
        bad(&|j| j.job_id = "x".repeat(4096)),
        "not json at all".into(),
        r#"{"method":"job","params":42}"#.into(),
    ]
}

impl MockPool {
    /// Starts a pool on `127.0.0.1:0` whose current job is `job`.
    ///
    /// # Errors
    /// When binding fails.
    pub async fn start(job: Job) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, job).await
    }

    /// Starts a pool on a given address (to bring a stopped pool back on its old port).
    ///
    /// # Errors
    /// When binding fails.
    pub async fn start_on(addr: SocketAddr, job: Job) -> anyhow::Result<Self> {
        Self::start_inner(addr, job, None).await
    }

    /// Starts a TLS pool on `127.0.0.1:0` with a fresh self-signed certificate for
    /// `localhost` and `127.0.0.1` (see [`MockPool::cert`], [`MockPool::fingerprint`]).
    ///
    /// # Errors
    /// When binding or generating the certificate fails.
    pub async fn start_tls(job: Job) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?
            .self_signed(&key)?;
        let cert = cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
        let tls = (TlsAcceptor::from(Arc::new(config)), cert);
        Self::start_inner("127.0.0.1:0".parse()?, job, Some(tls)).await
    }

    async fn start_inner(
        addr: SocketAddr,
        job: Job,
        tls: Option<(TlsAcceptor, CertificateDer<'static>)>,
    ) -> anyhow::Result<Self> {
        let (acceptor, cert) = tls.unzip();
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            job: Some(job),
            reply: Reply::Ok,
            extensions: vec!["algo".into(), "nicehash".into(), "keepalive".into()],
            received: Vec::new(),
            conns: Vec::new(),
            login_silent: false,
            mute: false,
        }));
        let changed = Arc::new(Notify::new());
        let all_stop = CancellationToken::new();
        let listen_stop = all_stop.child_token();
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            state.clone(),
            changed.clone(),
            listen_stop.clone(),
            all_stop.clone(),
        ));
        Ok(Self {
            addr,
            cert,
            state,
            changed,
            listen_stop,
            all_stop,
        })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate of a TLS pool (DER).
    pub fn cert(&self) -> Option<&CertificateDer<'static>> {
        self.cert.as_ref()
    }

    /// SHA-256 of a TLS pool's certificate, 64 lowercase hex digits (a `tls-fingerprint`).
    pub fn fingerprint(&self) -> Option<String> {
        self.cert.as_ref().map(|c| {
            let d = ring::digest::digest(&ring::digest::SHA256, c);
            d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        })
    }

    /// Sets how submits are answered from now on.
    pub fn set_reply(&self, reply: Reply) {
        lock(&self.state).reply = reply;
    }

    /// From now on, logins are left unanswered (`true`) or answered (`false`).
    pub fn set_login_silent(&self, silent: bool) {
        lock(&self.state).login_silent = silent;
    }

    /// From now on, nothing at all is answered (`true`): requests are recorded, the TCP
    /// connections stay open, not a byte comes back. `false` talks again.
    pub fn set_mute(&self, mute: bool) {
        lock(&self.state).mute = mute;
    }

    /// Sends `line` (a newline is added) as it is to every open connection: for bad jobs
    /// and garbage.
    pub fn push_raw(&self, line: &str) {
        let bytes = format!("{line}\n").into_bytes();
        for c in lock(&self.state).conns.iter().flatten() {
            let _ = c.tx.try_send(bytes.clone());
        }
    }

    /// Makes `job` current and sends it to every open connection.
    pub fn push_job(&self, job: Job) {
        let line = encode_job_notification(&job);
        let mut st = lock(&self.state);
        st.job = Some(job);
        for c in st.conns.iter().flatten() {
            let _ = c.tx.try_send(line.clone());
        }
    }

    /// Closes every open connection (the listener stays).
    pub fn drop_connections(&self) {
        let mut st = lock(&self.state);
        for c in st.conns.iter_mut() {
            if let Some(c) = c.take() {
                c.stop.cancel();
            }
        }
    }

    /// Stops listening and closes every connection: the pool is down.
    pub fn shut_down(&self) {
        self.listen_stop.cancel();
        self.drop_connections();
    }

    /// Connections accepted so far.
    pub fn connections_total(&self) -> usize {
        lock(&self.state).conns.len()
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        lock(&self.state).conns.iter().flatten().count()
    }

    /// Every request received with `method`.
    pub fn received(&self, method: &str) -> Vec<Received> {
        lock(&self.state)
            .received
            .iter()
            .filter(|r| r.method == method)
            .cloned()
            .collect()
    }

    /// Waits until `cond` holds on the pool, up to `wait`. Returns whether it did.
    pub async fn wait_for(&self, wait: Duration, cond: impl Fn(&MockPool) -> bool) -> bool {
        crate::wait_until(&self.changed, wait, || cond(self)).await
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    listen_stop: CancellationToken,
    all_stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = listen_stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let (tx, rx) = mpsc::channel(1024);
        let stop = all_stop.child_token();
        let index = {
            let mut st = lock(&state);
            st.conns.push(Some(Conn {
                tx: tx.clone(),
                stop: stop.clone(),
            }));
            st.conns.len() - 1
        };
        changed.notify_waiters();
        let (state, changed, acceptor) = (state.clone(), changed.clone(), acceptor.clone());
        tokio::spawn(async move {
            match acceptor {
                None => serve(stream, index, state, changed, tx, rx, stop).await,
                Some(a) => match a.accept(stream).await {
                    Ok(tls) => serve(tls, index, state, changed, tx, rx, stop).await,
                    // The client refused the certificate (a pin mismatch) or spoke no TLS.
                    Err(_) => closed(index, &state, &changed),
                },
            }
        });
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    conn: usize,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    tx: mpsc::Sender<Vec<u8>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) {
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = FramedRead::new(r, LineCodec::default());
    let session = format!("pool-session-{conn}");
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            out = rx.recv() => match out {
                Some(bytes) => if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() { break },
                None => break,
            },
            line = lines.next() => {
                let Some(Ok(line)) = line else { break };
                let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
                let method = v["method"].as_str().unwrap_or_default().to_string();
                let reply = {
                    let mut st = lock(&state);
                    st.received.push(Received { conn, method: method.clone(), params: v["params"].clone() });
                    if st.mute || (method == "login" && st.login_silent) {
                        None
                    } else if method == "submit" && st.reply == Reply::Close {
                        drop(st);
                        break;
                    } else {
                    match method.as_str() {
                        "login" => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {
                            "id": session, "job": st.job, "extensions": st.extensions, "status": "OK"}})),
                        "submit" => match &st.reply {
                            Reply::Ok => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {"status": "OK"}})),
                            Reply::Error(m) => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": {"code": -1, "message": m}})),
                            Reply::Silent | Reply::Close => None,
                            Reply::Garbage => Some(Value::String("}garbage{".into())),
                            Reply::OkAfter(delay) => {
                                let late = json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {"status": "OK"}});
                                let (tx, delay) = (tx.clone(), *delay);
                                tokio::spawn(async move {
                                    tokio::time::sleep(delay).await;
                                    let _ = tx.send(format!("{late}\n").into_bytes()).await;
                                });
                                None
                            }
                        },
                        "keepalived" => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {"status": "KEEPALIVED"}})),
                        _ => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": {"code": -1, "message": "Invalid method"}})),
                    }
                    }
                };
                changed.notify_waiters();
                if let Some(r) = reply {
                    let mut bytes = match r {
                        Value::String(raw) => raw.into_bytes(),
                        r => r.to_string().into_bytes(),
                    };
                    bytes.push(b'\n');
                    if tx.try_send(bytes).is_err() { break }
                }
            }
        }
    }
    closed(conn, &state, &changed);
}

fn closed(conn: usize, state: &Mutex<State>, changed: &Notify) {
    let mut st = lock(state);
    if let Some(slot) = st.conns.get_mut(conn) {
        *slot = None;
    }
    drop(st);
    changed.notify_waiters();
}
