//! A scripted CryptoNote stratum miner for tests: sends requests, reads replies and jobs,
//! over plain TCP or TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::{json, Value};
use stratum_proto::{Job, LineCodec};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// Default time a test miner waits for one message.
pub const WAIT: Duration = Duration::from_secs(5);

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One scripted miner connection.
pub struct TestMiner {
    reader: FramedRead<Reader, LineCodec>,
    writer: Writer,
    /// The certificate the server presented, on a TLS connection.
    pub peer_certificate: Option<CertificateDer<'static>>,
    next_id: u64,
    /// Session id from the login result.
    pub session: Option<String>,
    /// The latest job received (login result or notification).
    pub job: Option<Job>,
    /// Every job notification received, in order.
    pub jobs: Vec<Job>,
}

impl TestMiner {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// When the TCP connect fails.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        Self::connect_from(addr, None).await
    }

    /// Connects to `addr` from a chosen local IP (e.g. 127.0.0.2).
    ///
    /// # Errors
    /// When binding or connecting fails.
    pub async fn connect_from(
        addr: SocketAddr,
        local: Option<std::net::IpAddr>,
    ) -> anyhow::Result<Self> {
        let stream = match local {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(SocketAddr::new(ip, 0))?;
                sock.connect(addr).await?
            }
        };
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Self::from_halves(Box::new(r), Box::new(w), None))
    }

    /// Connects to `addr` over TLS with `config`, presenting `server_name` (a DNS name or an
    /// IP address) for SNI and verification. See [`tls_client_trusting`] and
    /// [`tls_client_any_cert`].
    ///
    /// # Errors
    /// When the TCP connect or the TLS handshake fails (certificate not trusted, not TLS).
    pub async fn connect_tls(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .context("TLS handshake")?;
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        let (r, w) = tokio::io::split(tls);
        Ok(Self::from_halves(Box::new(r), Box::new(w), cert))
    }

    fn from_halves(
        r: Reader,
        w: Writer,
        peer_certificate: Option<CertificateDer<'static>>,
    ) -> Self {
        Self {
            reader: FramedRead::new(r, LineCodec::new(1 << 20)),
            writer: w,
            peer_certificate,
            next_id: 1,
            session: None,
            job: None,
            jobs: Vec::new(),
        }
    }

    /// Sends raw bytes.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Sends `{"id":N,"jsonrpc":"2.0","method":M,"params":P}` and returns N.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line =
            json!({"id": id, "jsonrpc": "2.0", "method": method, "params": params}).to_string();
        line.push('\n');
        self.send_raw(line.as_bytes()).await?;
        Ok(id)
    }

    /// The next line from the server as JSON, within `wait`. Jobs are recorded on the way.
    ///
    /// # Errors
    /// Timeout, connection closed, or a line that is not JSON.
    pub async fn recv(&mut self, wait: Duration) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(wait, self.reader.next())
            .await
            .map_err(|_| anyhow!("no message within {wait:?}"))?
            .ok_or_else(|| anyhow!("connection closed"))??;
        let v: Value = serde_json::from_slice(&line).context("server sent non-JSON")?;
        if v["method"] == "job" {
            let job: Job = serde_json::from_value(v["params"].clone())?;
            self.job = Some(job.clone());
            self.jobs.push(job);
        }
        Ok(v)
    }

    /// Waits for the reply with id `id`, recording jobs that arrive first.
    ///
    /// # Errors
    /// Timeout or connection closed.
    pub async fn reply(&mut self, id: u64, wait: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.recv(left).await?;
            if v["id"] == json!(id) && v.get("method").is_none() {
                return Ok(v);
            }
        }
    }

    /// Waits for the next `job` notification.
    ///
    /// # Errors
    /// Timeout or connection closed.
    pub async fn next_job(&mut self, wait: Duration) -> anyhow::Result<Job> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.recv(left).await?;
            if v["method"] == "job" {
                return Ok(serde_json::from_value(v["params"].clone())?);
            }
        }
    }

    /// [`nicehash_nonce`] for share `low` on this miner's current job.
    ///
    /// # Panics
    /// When the miner has no job yet.
    pub fn nonce(&self, low: u32) -> String {
        nicehash_nonce(&self.job.as_ref().expect("a job").blob, low)
    }

    /// Logs in with `login` and waits for the reply; records the session and job.
    ///
    /// # Errors
    /// Timeout, closed connection, or an error reply (its message).
    pub async fn login(&mut self, login: &str) -> anyhow::Result<Value> {
        let id = self
            .request(
                "login",
                json!({"login": login, "pass": "x", "agent": "test-miner/0.1", "algo": ["rx/0"], "rigid": "rig"}),
            )
            .await?;
        let v = self.reply(id, WAIT).await?;
        if !v["error"].is_null() {
            bail!("login refused: {}", v["error"]["message"]);
        }
        self.session = v["result"]["id"].as_str().map(String::from);
        if let Some(job) = v["result"].get("job").filter(|j| !j.is_null()) {
            self.job = Some(serde_json::from_value(job.clone())?);
        }
        Ok(v)
    }

    /// Submits a share under this miner's session and waits for the reply.
    ///
    /// # Errors
    /// Timeout or connection closed (an error reply is returned as `Ok`).
    pub async fn submit(
        &mut self,
        job_id: &str,
        nonce: &str,
        result: &str,
    ) -> anyhow::Result<Value> {
        let session = self.session.clone().unwrap_or_default();
        let id = self
            .request(
                "submit",
                json!({"id": session, "job_id": job_id, "nonce": nonce, "result": result}),
            )
            .await?;
        self.reply(id, WAIT).await
    }

    /// True when the server closes the connection within `wait` (messages before that are
    /// read and dropped).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.reader.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// The error message of a reply, if it is an error.
pub fn error_message(reply: &Value) -> Option<&str> {
    reply["error"]["message"].as_str()
}

/// The NiceHash fixed byte of a job blob: blob byte 42 (hex chars 84..86).
///
/// # Panics
/// When the blob is shorter than 43 bytes or not hex there (test data is expected to be valid).
pub fn fixed_byte(blob_hex: &str) -> u8 {
    let at = stratum_proto::job::NICEHASH_BYTE_OFFSET * 2;
    u8::from_str_radix(&blob_hex[at..at + 2], 16).expect("a hex blob of at least 43 bytes")
}

/// The nonce a NiceHash miner working on `blob_hex` submits for share `low`, as sent
/// (8 hex chars, blob bytes 39..43, little-endian): the blob's fixed byte as the top byte,
/// the low 24 bits of `low` below.
pub fn nicehash_nonce(blob_hex: &str, low: u32) -> String {
    let n = (low & 0x00ff_ffff) | (u32::from(fixed_byte(blob_hex)) << 24);
    n.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A 64-hex `result` whose difficulty is at least `difficulty` (last 8 bytes LE =
/// `u64::MAX / difficulty`).
pub fn result_for_difficulty(difficulty: u64) -> String {
    let h = u64::MAX / difficulty.max(1);
    let mut s = "0".repeat(48);
    for b in h.to_le_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client config that trusts exactly `roots` (e.g. a test's self-signed certificate)
/// and verifies names and chains as usual.
///
/// # Panics
/// When a root is not a parseable certificate.
pub fn tls_client_trusting(roots: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).expect("a root certificate");
    }
    Arc::new(
        ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

/// A TLS client config that accepts whatever certificate the server presents (handshake
/// signatures are still checked), restricted to `versions` when given. For tests that look
/// at the certificate afterwards ([`TestMiner::peer_certificate`]).
pub fn tls_client_any_cert(
    versions: Option<&[&'static rustls::SupportedProtocolVersion]>,
) -> Arc<ClientConfig> {
    let provider = ring_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone());
    let builder = match versions {
        Some(v) => builder.with_protocol_versions(v),
        None => builder.with_safe_default_protocol_versions(),
    }
    .expect("ring supports the versions");
    Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
