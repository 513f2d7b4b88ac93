//! TLS to pools (go-proxy RFC §10.1 `Connect`, §21 "TLS fingerprint mismatch").
//!
//! A pool entry with `"tls": true` (or a `stratum+ssl://` / `stratum+tls://` url) is reached
//! over TLS (rustls, *ring* provider, TLS 1.2 and 1.3). Without `tls-fingerprint` the pool's
//! certificate is verified the usual way: a chain to a root of the Mozilla set
//! (`webpki-roots`) that names the pool's host. With `tls-fingerprint` the pin is the only
//! check: the SHA-256 of the certificate the pool presents (its DER bytes) must equal the pin,
//! which is how xmrig pins pools that use self-signed certificates. The handshake signature is
//! still verified against that certificate's key, so a pinned pool must hold the private key.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use tokio_util::sync::CancellationToken;

use crate::{FailoverOptions, PoolConfig, SessionEnd, Sni};

/// The reading side of a pool connection, plain TCP or TLS.
pub(crate) type PoolReader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing side of a pool connection, plain TCP or TLS.
pub(crate) type PoolWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection opened by [`open`].
pub(crate) enum Opened {
    /// Plain TCP, split in halves (the direct submit path writes to the writing half from
    /// any thread).
    Tcp(OwnedReadHalf, OwnedWriteHalf),
    /// TLS, split in halves.
    Tls(PoolReader, PoolWriter),
}

/// TCP keepalive on pool sockets: first probe after this much quiet on the socket.
pub(crate) const TCP_KEEPALIVE_TIME: Duration = Duration::from_secs(60);
/// TCP keepalive on pool sockets: time between unanswered probes.
pub(crate) const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Opens the session's connection to the pool at `addr` (`host:port`): TCP, straight or
/// through the entry's `socks5` proxy (a SOCKS5 `CONNECT` without authentication, the host
/// name resolved by the proxy), with no delay and TCP keepalive after [`TCP_KEEPALIVE_TIME`]
/// of quiet, probes every [`TCP_KEEPALIVE_INTERVAL`]; then the TLS handshake when the entry
/// asks for TLS (server name from `sni`, see [`connect`]), all within the connect timeout. A pinned pool that presents another certificate is logged at
/// ERROR and ends as `NeverConnected` naming both fingerprints, so the failover loop moves
/// on to the next pool.
pub(crate) async fn open(
    pool: &PoolConfig,
    options: &FailoverOptions,
    cancel: &CancellationToken,
    addr: &str,
) -> Result<Opened, SessionEnd> {
    let tls = wants_tls(pool);
    let pin = pool.tls_fingerprint.as_deref();
    let work = async {
        let tcp = match pool.socks5.as_deref() {
            None => TcpStream::connect(addr)
                .await
                .map_err(|e| format!("{addr}: {e}"))?,
            Some(proxy) => tokio_socks::tcp::Socks5Stream::connect(proxy, addr)
                .await
                .map_err(|e| format!("{addr} through SOCKS5 proxy {proxy}: {e}"))?
                .into_inner(),
        };
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(TCP_KEEPALIVE_TIME)
            .with_interval(TCP_KEEPALIVE_INTERVAL);
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
            tracing::debug!(pool = %addr, "TCP keepalive not set: {e}");
        }
        if !tls {
            let (rd, wr) = tcp.into_split();
            return Ok(Opened::Tcp(rd, wr));
        }
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        match connect(tcp, host, pin, pool.sni.as_ref()).await {
            Ok(stream) => {
                let (rd, wr) = tokio::io::split(stream);
                Ok(Opened::Tls(Box::new(rd), Box::new(wr)))
            }
            Err(e) => {
                if matches!(e, TlsConnectError::FingerprintMismatch { .. }) {
                    tracing::error!(pool = %addr, "{e}; connection closed");
                }
                Err(format!("{addr}: {e}"))
            }
        }
    };
    let timed = tokio::time::timeout(options.connect_timeout, work);
    tokio::select! {
        () = cancel.cancelled() => Err(SessionEnd::Cancelled),
        r = timed => match r {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(why)) => Err(SessionEnd::NeverConnected(why)),
            Err(_) => Err(SessionEnd::NeverConnected(format!("{addr}: connect timed out"))),
        },
    }
}

/// SHA-256 of a certificate's DER bytes as 64 lowercase hex digits: the form of
/// `tls-fingerprint` and of the fingerprint the proxy logs for its own certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    stratum_proto::job::encode_hex(digest.as_ref())
}

/// Normalises a `tls-fingerprint` value: SHA-256 hex, any case, with or without `:` between
/// the bytes (`AB:CD:…`) and surrounding spaces. Returns 64 lowercase hex digits.
///
/// # Errors
/// A message saying what is wrong, when the value is not 32 bytes of hex.
pub fn parse_fingerprint(pin: &str) -> Result<String, String> {
    let hex: String = pin
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{pin:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        ));
    }
    Ok(hex)
}

/// True when the entry asks for TLS: `"tls": true`, or a url whose scheme is
/// `stratum+ssl://`, `stratum+tls://` (as xmrig writes them), `ssl://` or `tls://` (any case).
pub fn wants_tls(pool: &PoolConfig) -> bool {
    let scheme = pool
        .url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    pool.tls
        || matches!(
            scheme.as_deref(),
            Some("stratum+ssl" | "stratum+tls" | "ssl" | "tls")
        )
}

/// Why a TLS connection to a pool failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsConnectError {
    /// The pool's certificate is not the pinned one; the connection was closed.
    #[error("TLS fingerprint mismatch: expected {expected}, pool presented {actual}")]
    FingerprintMismatch {
        /// The pin, normalised.
        expected: String,
        /// SHA-256 of the certificate the pool sent.
        actual: String,
    },
    /// The pin in the config is malformed.
    #[error("tls-fingerprint {0}")]
    BadPin(String),
    /// The host cannot be a TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    BadName(String),
    /// Handshake or socket failure (certificate not trusted, not TLS, connection reset).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// Runs the client handshake over `tcp` to the pool at `host` (the url's host part: a DNS
/// name or an IP address). `pin` is the entry's `tls-fingerprint`; `sni` its `sni`: a name
/// replaces `host` (sent, and checked against the certificate unless pinned), `false`
/// sends no server name (the certificate is still checked against `host`).
pub(crate) async fn connect(
    tcp: TcpStream,
    host: &str,
    pin: Option<&str>,
    sni: Option<&Sni>,
) -> Result<TlsStream<TcpStream>, TlsConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConnectError::Handshake(std::io::Error::other(e)))?;
    let pin = pin.map(str::trim).filter(|p| !p.is_empty());
    let (mut config, seen) = match pin {
        Some(pin) => {
            let expected = parse_fingerprint(pin).map_err(TlsConnectError::BadPin)?;
            let seen = Arc::new(OnceLock::new());
            let verifier = PinVerifier {
                expected,
                seen: seen.clone(),
                provider,
            };
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            (config, Some(seen))
        }
        None => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = builder.with_root_certificates(roots).with_no_client_auth();
            (config, None)
        }
    };
    config.enable_sni = !matches!(sni, Some(Sni::Flag(false)));
    let host = match sni {
        Some(Sni::Name(name)) if !name.trim().is_empty() => name.trim(),
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| TlsConnectError::BadName(host.to_string()))?;
    let connector = TlsConnector::from(Arc::new(config));
    match connector.connect(name, tcp).await {
        Ok(stream) => Ok(stream),
        Err(e) => match seen.as_ref().and_then(|s| s.get()) {
            Some(Mismatch { expected, actual }) => Err(TlsConnectError::FingerprintMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            }),
            None => Err(TlsConnectError::Handshake(e)),
        },
    }
}

#[derive(Debug)]
struct Mismatch {
    expected: String,
    actual: String,
}

/// Accepts exactly the certificate whose SHA-256 is the pin; signatures are checked against
/// that certificate with the provider's algorithms.
#[derive(Debug)]
struct PinVerifier {
    expected: String,
    /// Set when the pool presented another certificate, for the error message.
    seen: Arc<OnceLock<Mismatch>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = fingerprint(end_entity);
        if actual == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            let _ = self.seen.set(Mismatch {
                expected: self.expected.clone(),
                actual,
            });
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pins_accept_case_and_colons_and_refuse_junk() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let colons: Vec<String> = hex
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
            .collect();
        assert_eq!(parse_fingerprint(&colons.join(":")).unwrap(), hex);
        assert_eq!(parse_fingerprint(&format!(" {hex} ")).unwrap(), hex);
        assert!(parse_fingerprint(&hex[2..]).is_err());
        assert!(parse_fingerprint(&hex.replace('a', "g")).is_err());
        assert!(parse_fingerprint("").is_err());
    }

    #[tokio::test]
    async fn a_pin_mismatch_names_both_fingerprints() {
        use test_support::mock_pool::{make_job, MockPool};
        let pool = MockPool::start_tls(make_job(1, 100)).await.unwrap();
        let actual = pool.fingerprint().unwrap();
        let wrong = "ab".repeat(32);
        let tcp = TcpStream::connect(pool.addr()).await.unwrap();
        let err = connect(tcp, "127.0.0.1", Some(&wrong), None)
            .await
            .unwrap_err();
        match &err {
            TlsConnectError::FingerprintMismatch {
                expected,
                actual: a,
            } => {
                assert_eq!((expected, a), (&wrong, &actual));
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&wrong) && msg.contains(&actual), "{msg}");
        // The right pin, in xmrig's uppercase form, connects.
        let tcp = TcpStream::connect(pool.addr()).await.unwrap();
        connect(tcp, "localhost", Some(&actual.to_uppercase()), None)
            .await
            .unwrap();
    }

    /// The server name the client sends with `sni` set as given: a TLS server that reads
    /// the ClientHello and closes.
    async fn sni_sent(host: &str, sni: Option<Sni>) -> Option<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let start = acceptor.await.unwrap();
            start.client_hello().server_name().map(String::from)
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let pin = "ab".repeat(32);
        // The handshake fails (the server stops after the hello); only the name matters.
        let _ = connect(tcp, host, Some(&pin), sni.as_ref()).await;
        server.await.unwrap()
    }

    #[tokio::test]
    async fn sni_is_the_url_host_a_configured_name_or_none() {
        assert_eq!(
            sni_sent("pool.example", None).await.as_deref(),
            Some("pool.example")
        );
        assert_eq!(
            sni_sent("pool.example", Some(Sni::Flag(true)))
                .await
                .as_deref(),
            Some("pool.example")
        );
        assert_eq!(
            sni_sent("10.1.2.3", Some(Sni::Name("front.example".into())))
                .await
                .as_deref(),
            Some("front.example")
        );
        assert_eq!(sni_sent("pool.example", Some(Sni::Flag(false))).await, None);
    }

    #[test]
    fn tls_from_flag_or_scheme() {
        let pool = |url: &str, tls: bool| PoolConfig {
            url: url.into(),
            tls,
            ..PoolConfig::default()
        };
        assert!(wants_tls(&pool("p:1", true)));
        assert!(wants_tls(&pool("stratum+ssl://p:1", false)));
        assert!(wants_tls(&pool("stratum+tls://p:1", false)));
        assert!(wants_tls(&pool("SSL://p:1", false)));
        assert!(wants_tls(&pool("tls://p:1", false)));
        assert!(!wants_tls(&pool("stratum+tcp://p:1", false)));
        assert!(!wants_tls(&pool("p:1", false)));
    }
}
