//! The `tls` section's names and rules, checked without touching files (RFC §4
//! `TLSConfig`): `tls.protocols`, `tls.ciphers`, and `cert` with `cert_key`. Part of config
//! validation; `crate::tls` builds the rustls server from the same functions.

use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

use super::{ConfigError, TlsConfig};

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
pub(crate) fn protocol_versions(
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
pub(crate) fn cipher_suites(
    ciphers: Option<&str>,
) -> Result<Vec<SupportedCipherSuite>, ConfigError> {
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
pub(crate) fn check(tls: &TlsConfig) -> Result<(), ConfigError> {
    protocol_versions(tls.protocols.as_deref())?;
    cipher_suites(tls.cipher_list().as_deref())?;
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

pub(crate) fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
