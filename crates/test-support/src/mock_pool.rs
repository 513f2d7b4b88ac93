//! An in-process CryptoNote stratum pool for tests.
//!
//! It listens on `127.0.0.1:0`, answers `login` with a session id and its current job,
//! records every request, answers `submit` as told ([`Reply`]), and pushes jobs on demand. It
//! can drop its connections or stop listening to play a failing pool.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use stratum_proto::cryptonote::encode_job_notification;
use stratum_proto::{difficulty_to_target, Job, LineCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
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
}

/// A running mock pool; stops when dropped.
pub struct MockPool {
    addr: SocketAddr,
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
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            job: Some(job),
            reply: Reply::Ok,
            extensions: vec!["algo".into(), "nicehash".into(), "keepalive".into()],
            received: Vec::new(),
            conns: Vec::new(),
        }));
        let changed = Arc::new(Notify::new());
        let all_stop = CancellationToken::new();
        let listen_stop = all_stop.child_token();
        tokio::spawn(accept_loop(
            listener,
            state.clone(),
            changed.clone(),
            listen_stop.clone(),
            all_stop.clone(),
        ));
        Ok(Self {
            addr,
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

    /// Sets how submits are answered from now on.
    pub fn set_reply(&self, reply: Reply) {
        lock(&self.state).reply = reply;
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
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            if cond(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(self);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
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
        tokio::spawn(serve(
            stream,
            index,
            state.clone(),
            changed.clone(),
            tx,
            rx,
            stop,
        ));
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    conn: usize,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    tx: mpsc::Sender<Vec<u8>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) {
    let (r, mut w) = stream.into_split();
    let mut lines = FramedRead::new(r, LineCodec::default());
    let session = format!("pool-session-{conn}");
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            out = rx.recv() => match out {
                Some(bytes) => if w.write_all(&bytes).await.is_err() { break },
                None => break,
            },
            line = lines.next() => {
                let Some(Ok(line)) = line else { break };
                let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
                let method = v["method"].as_str().unwrap_or_default().to_string();
                let reply = {
                    let mut st = lock(&state);
                    st.received.push(Received { conn, method: method.clone(), params: v["params"].clone() });
                    match method.as_str() {
                        "login" => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {
                            "id": session, "job": st.job, "extensions": st.extensions, "status": "OK"}})),
                        "submit" => match &st.reply {
                            Reply::Ok => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": null, "result": {"status": "OK"}})),
                            Reply::Error(m) => Some(json!({"id": v["id"], "jsonrpc": "2.0", "error": {"code": -1, "message": m}})),
                            Reply::Silent => None,
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
                };
                changed.notify_waiters();
                if let Some(r) = reply {
                    let mut bytes = r.to_string().into_bytes();
                    bytes.push(b'\n');
                    if tx.try_send(bytes).is_err() { break }
                }
            }
        }
    }
    let mut st = lock(&state);
    if let Some(slot) = st.conns.get_mut(conn) {
        *slot = None;
    }
    drop(st);
    changed.notify_waiters();
}
