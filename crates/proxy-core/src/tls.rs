//! Inbound TLS for miners (go-proxy RFC §4 `tls`, §21 "load certificate failed").
//!
//! TLS is served with rustls (*ring* provider) through tokio-rustls:
//!
//! | bind `tls` | `tls.enabled` | the listener                                            |
//! |------------|---------------|---------------------------------------------------------|
//! | `true`     | any           | TLS only; a plain client is closed at its first bytes   |
//! | `false`    | `true`        | both: a TLS ClientHello (first byte `0x16`) gets TLS     |
//! | `false`    | `false`       | plain TCP                                               |
//!
//! (The middle row is xmrig-proxy's behaviour: with `tls.enabled` every port detects TLS.)
//!
//! The certificate chain and key come from the PEM files `tls.cert` and `tls.cert_key`, loaded
//! with `rustls-pki-types`. When TLS is wanted and neither is set, a self-signed certificate
//! is generated at start (rcgen, ECDSA P-256) for `localhost` and every bind host that is a
//! specific address, and a WARN line gives its SHA-256 fingerprint, which xmrig miners can pin
//! with `tls-fingerprint`.
//!
//! `tls.protocols` lists the TLS versions to speak (`"TLSv1.2 TLSv1.3"`, or one of them);
//! rustls speaks no older version, so `TLSv1`, `TLSv1.1` or `SSLv3` are config errors.
//! `tls.ciphers` is an OpenSSL cipher list (`:`-separated) of suites rustls has, by their
//! OpenSSL or IANA names (see [`cipher_suites`]); anything else (`HIGH`, `!aNULL`, CBC
//! suites) is a config error naming the entry.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

pub(crate) use tokio_rustls::TlsAcceptor;

use crate::config::tls_settings::non_empty;
pub(crate) use crate::config::tls_settings::{check, cipher_suites, protocol_versions};
use crate::config::{BindAddr, Config, ConfigError};

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// True when some listener serves TLS: a bind with `tls: true`, or `tls.enabled` (every plain
/// bind then detects TLS).
pub(crate) fn tls_wanted(config: &Config) -> bool {
    config.tls.enabled || config.bind.iter().any(|b| b.tls)
}

/// A freshly generated self-signed certificate and its key.
#[derive(Debug)]
pub(crate) struct SelfSigned {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// Its PKCS#8 private key, DER.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// The subject alternative names it carries (DNS names and IP addresses).
    pub names: Vec<String>,
}

/// Generates a self-signed certificate (ECDSA P-256) for `localhost` and the given bind
/// hosts; unspecified addresses (`0.0.0.0`, `::`) are left out, a host that is no IP address
/// becomes a DNS name.
///
/// # Errors
/// [`ConfigError::Invalid`] for `tls.cert` when generation fails (a host that is no valid DNS
/// name).
pub(crate) fn self_signed(binds: &[BindAddr]) -> Result<SelfSigned, ConfigError> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    names.insert("localhost".into());
    for b in binds {
        match b.host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {}
            Ok(ip) => {
                names.insert(ip.to_string());
            }
            Err(_) => {
                names.insert(b.host.clone());
            }
        }
    }
    let names: Vec<String> = names.into_iter().collect();
    let fail = |e: rcgen::Error| {
        invalid(
            "tls.cert",
            format!("generating a self-signed certificate failed: {e}"),
        )
    };
    let mut params = rcgen::CertificateParams::new(names.clone()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stratum-proxy self-signed");
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok(SelfSigned {
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        names,
    })
}

fn load_failed(key: &str, path: &str, cause: impl std::fmt::Display) -> ConfigError {
    invalid(key, format!("load certificate failed: {path}: {cause}"))
}

/// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
/// SEC1).
///
/// # Errors
/// [`ConfigError::Invalid`] for `tls.cert` or `tls.cert_key` saying "load certificate
/// failed", the file, and why (missing file, no PEM section of the right kind, bad PEM).
pub(crate) fn load_pem(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let chain = CertificateDer::pem_file_iter(Path::new(cert))
        .map_err(|e| load_failed("tls.cert", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_failed("tls.cert", cert, e))?;
    if chain.is_empty() {
        return Err(load_failed("tls.cert", cert, "no CERTIFICATE in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(Path::new(key)).map_err(|e| {
        load_failed(
            "tls.cert_key",
            key,
            format!("{e} (expected a PEM private key)"),
        )
    })?;
    Ok((chain, key_der))
}

/// Builds the rustls server config of `config`: certificate from `tls.cert`/`tls.cert_key`
/// or self-signed (logged at WARN), versions from `tls.protocols`, suites from
/// `tls.ciphers`.
///
/// # Errors
/// [`ConfigError::Invalid`] for a bad `tls` section (see [`check`]), a certificate or key
/// that cannot be loaded, a key that does not match the certificate, or suites that cannot
/// be used with the key's type (`tls.ciphers`).
pub(crate) fn server_config(config: &Config) -> Result<Arc<ServerConfig>, ConfigError> {
    let tls = &config.tls;
    check(tls)?;
    let versions = protocol_versions(tls.protocols.as_deref())?;
    let suites = cipher_suites(tls.cipher_list().as_deref())?;
    let (chain, key, key_name) = match (non_empty(&tls.cert), non_empty(&tls.cert_key)) {
        (Some(cert), Some(key)) => {
            let (chain, key_der) = load_pem(cert, key)?;
            tracing::info!(cert, "TLS certificate loaded");
            (chain, key_der, key.to_string())
        }
        _ => {
            let s = self_signed(&config.bind)?;
            tracing::warn!(
                names = %s.names.join(", "),
                sha256 = %pool_client::tls::fingerprint(&s.cert),
                "no tls.cert configured: serving a self-signed TLS certificate generated at start"
            );
            (
                vec![s.cert],
                PrivateKeyDer::Pkcs8(s.key),
                "self-signed".into(),
            )
        }
    };

    let provider = CryptoProvider {
        cipher_suites: suites,
        ..rustls::crypto::ring::default_provider()
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| load_failed("tls.cert_key", &key_name, e))?;
    let algorithm = signing_key.algorithm();
    let usable = provider
        .cipher_suites
        .iter()
        .any(|s| versions.contains(&s.version()) && s.usable_for_signature_algorithm(algorithm));
    if !usable {
        return Err(invalid(
            "tls.ciphers",
            format!(
                "{:?}: no listed suite of {} can be used with the certificate's {algorithm:?} key",
                tls.ciphers.as_deref().unwrap_or_default(),
                versions
                    .iter()
                    .map(|v| format!("{:?}", v.version))
                    .collect::<Vec<_>>()
                    .join("/"),
            ),
        ));
    }
    let server = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("tls.protocols", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| load_failed("tls.cert_key", &key_name, e))?;
    Ok(Arc::new(server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsConfig;

    #[test]
    fn protocols_in_xmrig_forms() {
        let v = protocol_versions(Some("TLSv1.2 TLSv1.3")).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            protocol_versions(Some("TLSv1.3")).unwrap(),
            vec![&rustls::version::TLS13]
        );
        assert_eq!(
            protocol_versions(Some("tlsv1.2,")).unwrap(),
            vec![&rustls::version::TLS12]
        );
        assert_eq!(protocol_versions(None).unwrap().len(), 2);
        assert_eq!(protocol_versions(Some("  ")).unwrap().len(), 2);
        for bad in ["TLSv1", "TLSv1.1", "SSLv3", "TLSv1.2 TLSv1.1", "garbage"] {
            let e = protocol_versions(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("tls.protocols"), "{e}");
            let name = bad.split(' ').next_back().unwrap();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn ciphers_map_openssl_and_iana_names() {
        use rustls::crypto::ring::cipher_suite as cs;
        // A TLS 1.2 list restricts TLS 1.2 and leaves TLS 1.3 alone.
        let s = cipher_suites(Some(
            "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
        ))
        .unwrap();
        assert!(s.contains(&cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
        assert!(s.contains(&cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256));
        assert!(!s.contains(&cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384));
        assert!(s.contains(&cs::TLS13_AES_128_GCM_SHA256));
        assert_eq!(s.len(), 2 + 3);
        // IANA names, a TLS 1.3 name: only that TLS 1.3 suite.
        let s = cipher_suites(Some(
            "TLS_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ))
        .unwrap();
        assert_eq!(s[0], cs::TLS13_AES_256_GCM_SHA384);
        assert_eq!(s[1], cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384);
        assert_eq!(s.len(), 2);
        assert_eq!(cipher_suites(None).unwrap().len(), 9);
        for bad in [
            "HIGH:!aNULL",
            "AES256-SHA",
            "ECDHE-RSA-AES128-GCM-SHA256:RC4",
        ] {
            let e = cipher_suites(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("tls.ciphers"), "{e}");
        }
        let e = cipher_suites(Some("HIGH:!aNULL")).unwrap_err().to_string();
        assert!(e.contains("\"HIGH\""), "{e}");
    }

    #[test]
    fn cert_and_key_come_together() {
        let e = check(&TlsConfig {
            cert: Some("/c.pem".into()),
            ..TlsConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("tls.cert_key"), "{e}");
        let e = check(&TlsConfig {
            cert_key: Some("/k.pem".into()),
            ..TlsConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("`tls.cert`"), "{e}");
    }

    #[test]
    fn self_signed_names_localhost_and_specific_bind_hosts() {
        let bind = |host: &str| BindAddr {
            host: host.into(),
            port: 0,
            tls: true,
            protocol: None,
        };
        let s = self_signed(&[bind("0.0.0.0"), bind("127.0.0.1"), bind("::1")]).unwrap();
        assert_eq!(s.names, vec!["127.0.0.1", "::1", "localhost"]);
        assert!(!s.cert.is_empty());
    }

    #[test]
    fn an_rsa_only_suite_list_does_not_fit_an_ecdsa_key_on_tls12_only() {
        let config = Config {
            bind: vec![BindAddr {
                host: "127.0.0.1".into(),
                port: 0,
                tls: true,
                protocol: None,
            }],
            tls: TlsConfig {
                protocols: Some("TLSv1.2".into()),
                ciphers: Some("ECDHE-RSA-AES128-GCM-SHA256".into()),
                ..TlsConfig::default()
            },
            ..Config::default()
        };
        let e = server_config(&config).unwrap_err().to_string();
        assert!(e.contains("tls.ciphers"), "{e}");
        // With TLS 1.3 on, its suites work with any key.
        let mut ok = config.clone();
        ok.tls.protocols = None;
        server_config(&ok).unwrap();
    }

    #[test]
    fn missing_files_fail_to_load_naming_the_file() {
        let e = load_pem("/nonexistent/cert.pem", "/nonexistent/key.pem")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls.cert") && e.contains("load certificate failed"),
            "{e}"
        );
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
