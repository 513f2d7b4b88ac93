//! Shared by the SV1 upstream tests: a listener that records what an [`Sv1Upstream`]
//! reports, a harness around one upstream, a scripted pool that misbehaves, and a
//! deterministic share grinder.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use pool_client::sv1::{Sv1Listener, Sv1Options, Sv1Share, Sv1ShareError, Sv1Upstream};
use pool_client::{FailoverOptions, PoolConfig, ShareError, UpstreamState};
use stratum_proto::sv1::share::check_share;
use stratum_proto::sv1::{
    encode_bool_result, encode_configure_result, encode_subscribe_result, parse_client_line,
    ClientMessage, ClientRequest, ConfigureResult, Notify, ServerMessage, Submit, SubscribeResult,
    VersionRollingResult,
};
use stratum_proto::LineCodec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

#[path = "../common/recording.rs"]
mod recording;
// Not every test file uses every one.
#[allow(unused_imports)]
pub use recording::{bounded, Recording, Reports, TEST_TIMEOUT, WAIT};

/// Everything an upstream reported, in order.
#[derive(Debug, Default)]
pub struct Seen {
    pub jobs: Vec<(Notify, u64)>,
    pub difficulties: Vec<(f64, u64)>,
    pub extranonces: Vec<(Vec<u8>, usize, u64)>,
    pub masks: Vec<(u32, u64)>,
    pub results: Vec<(u64, Result<(), Sv1ShareError>)>,
    /// The shares whose result came with the read time of the pool's line
    /// ([`Sv1Listener::on_result_at`]), with that time.
    pub read_at: Vec<(u64, tokio::time::Instant)>,
    pub states: Vec<(UpstreamState, Option<usize>)>,
}

impl Reports for Seen {
    type Job = Notify;
    type Outcome = Result<(), Sv1ShareError>;
    fn jobs(&self) -> &[(Notify, u64)] {
        &self.jobs
    }
    fn results(&self) -> &[(u64, Self::Outcome)] {
        &self.results
    }
    fn states(&self) -> &[(UpstreamState, Option<usize>)] {
        &self.states
    }
}

/// An [`Sv1Listener`] that records everything and wakes waiters.
pub type Recorder = Recording<Seen>;

impl Sv1Listener for Recorder {
    fn on_job(&self, job: Notify, session: u64) {
        self.record(|s| s.jobs.push((job, session)));
    }
    fn on_difficulty(&self, difficulty: f64, session: u64) {
        self.record(|s| s.difficulties.push((difficulty, session)));
    }
    fn on_extranonce(&self, extranonce1: &[u8], extranonce2_size: usize, session: u64) {
        self.record(|s| {
            s.extranonces
                .push((extranonce1.to_vec(), extranonce2_size, session))
        });
    }
    fn on_version_mask(&self, mask: u32, session: u64) {
        self.record(|s| s.masks.push((mask, session)));
    }
    fn on_result(&self, seq: u64, result: Result<(), Sv1ShareError>) {
        self.record(|s| s.results.push((seq, result)));
    }
    fn on_result_at(&self, seq: u64, result: Result<(), Sv1ShareError>, at: tokio::time::Instant) {
        self.record(|s| {
            s.read_at.push((seq, at));
            s.results.push((seq, result));
        });
    }
    fn on_state(&self, state: UpstreamState, pool: Option<usize>) {
        self.record(|s| s.states.push((state, pool)));
    }
}

/// An upstream with the recorder it reports to.
pub struct Harness {
    pub upstream: Sv1Upstream,
    pub recorder: Arc<Recorder>,
    pub cancel: CancellationToken,
    next_seq: u64,
}

impl Harness {
    pub fn spawn(pools: Vec<PoolConfig>, options: FailoverOptions, sv1: Sv1Options) -> Self {
        let recorder = Arc::new(Recorder::default());
        let cancel = CancellationToken::new();
        let upstream = Sv1Upstream::spawn(pools, options, sv1, recorder.clone(), cancel.clone());
        Self {
            upstream,
            recorder,
            cancel,
            next_seq: 0,
        }
    }

    /// Submits `share`; its sequence number, or why it was refused at once.
    pub fn submit(&mut self, share: Sv1Share) -> Result<u64, ShareError> {
        self.next_seq += 1;
        self.upstream.submit(self.next_seq, share)?;
        Ok(self.next_seq)
    }

    /// [`Harness::submit`] handed over as of `at` ([`Sv1Upstream::submit_at`]).
    pub fn submit_at(
        &mut self,
        share: Sv1Share,
        at: tokio::time::Instant,
    ) -> Result<u64, ShareError> {
        self.next_seq += 1;
        self.upstream.submit_at(self.next_seq, share, at)?;
        Ok(self.next_seq)
    }

    /// Cancels the upstream and waits until it reports `Stopped`.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.recorder.state(UpstreamState::Stopped).await;
        assert_eq!(self.upstream.state(), UpstreamState::Stopped);
    }
}

/// A pool entry for `addr`.
pub fn entry(addr: SocketAddr) -> PoolConfig {
    PoolConfig {
        url: format!("stratum+tcp://{addr}"),
        user: "proxy.worker".into(),
        pass: "x".into(),
        ..PoolConfig::default()
    }
}

/// The share of `job` with `extranonce2` and `nonce`, at the job's ntime and version.
pub fn share(job: &Notify, session: u64, extranonce2: Vec<u8>, nonce: u32) -> Sv1Share {
    Sv1Share {
        session,
        job_id: job.job_id.clone(),
        extranonce2,
        ntime: job.ntime,
        nonce,
        version_bits: None,
    }
}

/// The first nonce from 0 whose share meets (`meets` true) or misses `difficulty`; the
/// search is over fixed inputs, so the answer is the same on every run.
pub fn grind(
    job: &Notify,
    extranonce1: &[u8],
    extranonce2: &[u8],
    difficulty: f64,
    meets: bool,
) -> u32 {
    (0..u32::MAX)
        .find(|nonce| {
            let submit = Submit {
                worker: String::new(),
                job_id: job.job_id.clone(),
                extranonce2: extranonce2.to_vec(),
                ntime: job.ntime,
                nonce: *nonce,
                version_bits: None,
            };
            check_share(job, extranonce1, &submit, 0, difficulty)
                .expect("no version bits")
                .meets_share
                == meets
        })
        .expect("a nonce")
}

/// An address with nothing listening: bound, then released.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// What a [`ScriptedPool`] does after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Accepts connections and never sends a byte.
    Silent,
    /// Answers the handshake (extranonce1 `00000001`, extranonce2 size 4, the para job),
    /// then never answers a submit.
    Mute,
    /// Answers the handshake, then closes the connection once it has read this many submits.
    CloseAfter(usize),
}

/// A pool that misbehaves as its [`Script`] says; counts the submits it read.
pub struct ScriptedPool {
    pub addr: SocketAddr,
    pub submits: Arc<Mutex<usize>>,
    stop: CancellationToken,
}

impl Drop for ScriptedPool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ScriptedPool {
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let submits = Arc::new(Mutex::new(0));
        let (s, c) = (stop.clone(), submits.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = s.cancelled() => return,
                    r = listener.accept() => match r { Ok((st, _)) => st, Err(_) => continue },
                };
                tokio::spawn(serve(stream, script, c.clone(), s.clone()));
            }
        });
        Self {
            addr,
            submits,
            stop,
        }
    }

    pub fn submits(&self) -> usize {
        *self.submits.lock().unwrap()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    script: Script,
    submits: Arc<Mutex<usize>>,
    stop: CancellationToken,
) {
    let (r, mut w) = stream.into_split();
    let mut lines = FramedRead::new(r, LineCodec::default());
    let mut read = 0;
    loop {
        let line = tokio::select! {
            () = stop.cancelled() => return,
            l = lines.next() => match l { Some(Ok(l)) => l, _ => return },
        };
        if script == Script::Silent {
            continue;
        }
        let Ok(ClientMessage::Request { id, request }) = parse_client_line(&line) else {
            continue;
        };
        let reply = match request {
            ClientRequest::Configure(_) => encode_configure_result(
                &id,
                &ConfigureResult {
                    version_rolling: Some(VersionRollingResult::Enabled { mask: 0x1fff_e000 }),
                    ..ConfigureResult::default()
                },
            ),
            ClientRequest::Subscribe(_) => encode_subscribe_result(
                &id,
                &SubscribeResult {
                    subscriptions: Vec::new(),
                    extranonce1: vec![0, 0, 0, 1],
                    extranonce2_size: 4,
                },
            ),
            ClientRequest::Authorize(_) => [
                encode_bool_result(&id, true),
                ServerMessage::Notify(test_support::sv1_pool::para_job()).encode(),
            ]
            .concat(),
            ClientRequest::Submit(_) => {
                read += 1;
                *submits.lock().unwrap() += 1;
                if matches!(script, Script::CloseAfter(n) if read >= n) {
                    return;
                }
                continue;
            }
            _ => continue,
        };
        if w.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// A TLS front for a plain-TCP pool at `backend`: a fresh self-signed certificate for
/// `127.0.0.1`, each TLS connection relayed byte for byte to a new TCP connection to the
/// backend. Returns the listen address and the certificate's SHA-256 pin.
pub async fn tls_relay(backend: SocketAddr) -> (SocketAddr, String, CancellationToken) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert = cert.der().clone();
    let pin = pool_client::tls::fingerprint(&cert);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = s.cancelled() => return,
                r = listener.accept() => match r { Ok((st, _)) => st, Err(_) => continue },
            };
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(mut front) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                tokio::select! {
                    () = s.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut front, &mut back) => {}
                }
            });
        }
    });
    (addr, pin, stop)
}
