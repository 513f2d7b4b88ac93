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
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

pub use tokio_rustls::TlsAcceptor;

use crate::config::{BindAddr, Config, ConfigError, TlsConfig};

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The TLS versions of `tls.protocols`; all that rustls speaks (1.2 and 1.3) when unset or
/// empty. Names are xmrig's (`TLSv1.2`, `TLSv1.3`, any case), separated by spaces or commas.
///
/// # Errors
/// [`ConfigError::Invalid`] for `tls.protocols` naming the version rustls cannot speak
/// (`TLSv1`, `TLSv1.1`, `SSLv3`, …) or a name that is no TLS version.
pub fn protocol_versions(
    protocols: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, ConfigError> {
    let mut out = Vec::new();
    for name in protocols
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
    {
        let v = match name.to_ascii_lowercase().as_str() {
            "tlsv1.2" | "tls1.2" => &rustls::version::TLS12,
            "tlsv1.3" | "tls1.3" => &rustls::version::TLS13,
            "tlsv1" | "tlsv1.0" | "tls1.0" | "tlsv1.1" | "tls1.1" | "sslv2" | "sslv3" => {
                return Err(invalid(
                    "tls.protocols",
                    format!("{name:?} is not supported: this proxy speaks TLSv1.2 and TLSv1.3"),
                ))
            }
            _ => {
                return Err(invalid(
                    "tls.protocols",
                    format!("{name:?} is not a TLS version; expected TLSv1.2 and/or TLSv1.3"),
                ))
            }
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        out = rustls::ALL_VERSIONS.to_vec();
    }
    Ok(out)
}

/// The OpenSSL name of a suite rustls' *ring* provider has (TLS 1.3 suites are named as in
/// OpenSSL's `ciphersuites`, which are also their IANA names).
fn openssl_name(suite: CipherSuite) -> Option<&'static str> {
    Some(match suite {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => return None,
    })
}

/// The cipher suites to offer, from `tls.ciphers`: every suite rustls has when unset or empty.
///
/// The value is a list separated by `:` (OpenSSL's form), commas or spaces. Each entry names
/// one suite by its OpenSSL name (`ECDHE-RSA-AES128-GCM-SHA256`, `TLS_AES_256_GCM_SHA384`) or
/// its IANA name (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`; `TLS13_…` as rustls spells TLS 1.3
/// suites is accepted too). As in OpenSSL, where the TLS 1.2 list and the TLS 1.3
/// `ciphersuites` are separate settings, the list restricts only the versions it names suites
/// of: a list of TLS 1.2 suites leaves the TLS 1.3 suites as they are.
///
/// # Errors
/// [`ConfigError::Invalid`] for `tls.ciphers` naming the first entry that is not a suite
/// rustls supports (OpenSSL keywords such as `HIGH` or `!aNULL`, CBC or RSA-key-exchange
/// suites).
pub fn cipher_suites(ciphers: Option<&str>) -> Result<Vec<SupportedCipherSuite>, ConfigError> {
    let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for entry in ciphers
        .unwrap_or_default()
        .split(|c: char| c == ':' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let found = all.iter().find(|s| {
            let id = s.suite();
            let rustls_name = format!("{id:?}");
            openssl_name(id).is_some_and(|n| n.eq_ignore_ascii_case(entry))
                || rustls_name.eq_ignore_ascii_case(entry)
                || rustls_name
                    .replacen("TLS13_", "TLS_", 1)
                    .eq_ignore_ascii_case(entry)
        });
        let Some(suite) = found else {
            let known: Vec<&str> = all.iter().filter_map(|s| openssl_name(s.suite())).collect();
            return Err(invalid(
                "tls.ciphers",
                format!(
                    "{entry:?} is not a cipher suite this proxy can use; list suites from: {}",
                    known.join(":")
                ),
            ));
        };
        if !chosen.contains(suite) {
            chosen.push(*suite);
        }
    }
    let names_tls13 = chosen.iter().any(|s| s.tls13().is_some());
    let names_tls12 = chosen.iter().any(|s| s.tls13().is_none());
    // A version the list says nothing about keeps all its suites.
    for s in all {
        let is13 = s.tls13().is_some();
        if ((is13 && !names_tls13) || (!is13 && !names_tls12)) && !chosen.contains(s) {
            chosen.push(*s);
        }
    }
    Ok(chosen)
}

/// Checks the `tls` section without touching files: protocols and ciphers are usable, and
/// `cert` and `cert_key` are given together or not at all.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the key (`tls.protocols`, `tls.ciphers`, `tls.cert`,
/// `tls.cert_key`) and the bad value.
pub fn check(tls: &TlsConfig) -> Result<(), ConfigError> {
    protocol_versions(tls.protocols.as_deref())?;
    cipher_suites(tls.ciphers.as_deref())?;
    match (non_empty(&tls.cert), non_empty(&tls.cert_key)) {
        (Some(_), None) => Err(invalid(
            "tls.cert_key",
            "missing: `tls.cert` is set, give its private key too",
        )),
        (None, Some(_)) => Err(invalid(
            "tls.cert",
            "missing: `tls.cert_key` is set, give its certificate chain too",
        )),
        _ => Ok(()),
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// True when some listener serves TLS: a bind with `tls: true`, or `tls.enabled` (every plain
/// bind then detects TLS).
pub fn tls_wanted(config: &Config) -> bool {
    config.tls.enabled || config.bind.iter().any(|b| b.tls)
}

/// A freshly generated self-signed certificate and its key.
#[derive(Debug)]
pub struct SelfSigned {
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
pub fn self_signed(binds: &[BindAddr]) -> Result<SelfSigned, ConfigError> {
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
pub fn load_pem(
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
pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>, ConfigError> {
    let tls = &config.tls;
    check(tls)?;
    let versions = protocol_versions(tls.protocols.as_deref())?;
    let suites = cipher_suites(tls.ciphers.as_deref())?;
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
