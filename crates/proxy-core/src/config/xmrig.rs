//! The keys of a config file this proxy does not honour, for the one start-up warning
//! (issue 13 item 2: every key of xmrig-proxy's config is honoured or named with a reason).
//!
//! The keys a section honours are the fields of its struct, read from serde itself
//! ([`field_names`]), so a field added later is honoured here without a list to update. A key
//! outside them is named with the reason from [`REASONS`] when it is an xmrig-proxy key, and
//! as `unknown key` otherwise. A key whose value asks for nothing (`null`, `false`, `0`, `""`,
//! an empty list or object) is not named: xmrig-proxy's default config holds many such.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::Value;

use super::{HttpConfig, PoolConfig, RateLimit, TlsConfig};

/// xmrig-proxy keys that are not honoured, by section (`""` top level, `pools`, `tls`,
/// `api`), with the reason given to the operator.
const REASONS: &[(&str, &str, &str)] = &[
    (
        "",
        "background",
        "not a daemon: run it under a service manager",
    ),
    ("", "syslog", "logs go to stderr and log-file"),
    ("", "title", "no console title"),
    ("", "donate-level", "this proxy takes no donation"),
    ("", "donate-over-proxy", "this proxy takes no donation"),
    (
        "",
        "verbose",
        "pool, job and summary lines are always logged; RUST_LOG=debug for more",
    ),
    ("", "debug", "use RUST_LOG=debug"),
    (
        "",
        "dns",
        "host names are resolved by the system resolver at each connect",
    ),
    ("", "autosave", "the file is written only by PUT /1/config"),
    ("pools", "coin", "name the algorithm with algo"),
    (
        "pools",
        "nicehash",
        "a miner's option; the proxy splits by its own mode",
    ),
    (
        "pools",
        "self-select",
        "self-select mining is not supported; use daemon: true",
    ),
    (
        "pools",
        "submit-to-origin",
        "self-select mining is not supported",
    ),
    (
        "pools",
        "daemon-job-timeout",
        "a daemon job lasts until the chain tip moves",
    ),
    (
        "pools",
        "daemon-zmq-port",
        "the daemon is polled (daemon-poll-interval), not followed over ZMQ",
    ),
    (
        "pools",
        "spend-secret-key",
        "not needed by a daemon upstream here",
    ),
    (
        "tls",
        "dhparam",
        "rustls has no finite-field DHE suites, ECDHE is used",
    ),
    (
        "tls",
        "gen",
        "a self-signed certificate is generated when cert and cert_key are unset",
    ),
    ("api", "port", "the API is set up in http"),
    ("api", "access-token", "the API is set up in http"),
    ("api", "restricted", "the API is set up in http"),
    ("api", "ipv6", "the API is set up in http (host)"),
];

/// The keys of `raw` (the whole file) that are not honoured, each as `key (reason)`.
pub(super) fn ignored_keys(raw: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(top) = raw.as_object() else {
        return out;
    };
    let config_fields = config_field_names();
    for (key, value) in top {
        let path = key.clone();
        match key.as_str() {
            "$schema" => {}
            "api" => section(&mut out, "api", &path, value, &["id", "worker-id"]),
            "pools" => {
                let fields = field_names::<PoolConfig>();
                for (i, pool) in value.as_array().into_iter().flatten().enumerate() {
                    section(&mut out, "pools", &format!("pools[{i}]"), pool, fields);
                }
            }
            "tls" => section(&mut out, "tls", &path, value, field_names::<TlsConfig>()),
            "http" => section(&mut out, "http", &path, value, field_names::<HttpConfig>()),
            "rate-limit" => {
                section(
                    &mut out,
                    "rate-limit",
                    &path,
                    value,
                    field_names::<RateLimit>(),
                );
            }
            _ if config_fields.contains(&key.as_str()) => {}
            _ => name(&mut out, "", &path, key, value),
        }
    }
    out
}

/// The top-level keys of `Config` (a struct with a flattened map, which serde reads as a
/// map, so its field list cannot be asked for): each struct field, kebab-case.
fn config_field_names() -> Vec<&'static str> {
    vec![
        "mode",
        "bind",
        "pools",
        "tls",
        "http",
        "access-password",
        "custom-diff",
        "custom-diff-min",
        "custom-diff-stats",
        "algo-ext",
        "workers",
        "workers-idle-timeout",
        "workers-max",
        "access-log-file",
        "share-log-file",
        "reuse-timeout",
        "retries",
        "retry-pause",
        "watch",
        "rate-limit",
        "pool-reply-timeout",
        "user-agent",
        "log-file",
        "colors",
        "print-time",
        "dry-run",
        "protocol",
        "stratum-v1",
    ]
}

/// Names the keys of the object `value` (at `path`, in `section` of [`REASONS`]) that are
/// not in `honoured`.
fn section(out: &mut Vec<String>, section: &str, path: &str, value: &Value, honoured: &[&str]) {
    for (key, v) in value.as_object().into_iter().flatten() {
        if !honoured.contains(&key.as_str()) {
            name(out, section, &format!("{path}.{key}"), key, v);
        }
    }
}

fn name(out: &mut Vec<String>, section: &str, path: &str, key: &str, value: &Value) {
    if asks_nothing(value) {
        return;
    }
    let reason = REASONS
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map_or("unknown key", |(_, _, r)| r);
    out.push(format!("{path} ({reason})"));
}

fn asks_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The JSON field names of a struct deriving `Deserialize` (after `rename_all`), as serde's
/// derive hands them to `deserialize_struct`. Empty for a type that is no plain struct.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

/// A deserializer that records the field list it is asked for and fails.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field names only"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use serde_json::json;

    #[test]
    fn field_names_come_from_serde() {
        let pool = field_names::<PoolConfig>();
        for key in [
            "url",
            "rig-id",
            "tls-fingerprint",
            "keepalive",
            "sni",
            "socks5",
        ] {
            assert!(pool.contains(&key), "{key} in {pool:?}");
        }
        assert!(field_names::<TlsConfig>().contains(&"cert_key"));
        assert!(field_names::<HttpConfig>().contains(&"access-token"));
    }

    #[test]
    fn every_top_level_field_of_config_is_listed() {
        // Each listed key round-trips through the serialized default config, and every key
        // of it is listed: the list cannot drift from the struct.
        let v = serde_json::to_value(Config::default()).unwrap();
        let mut serialized: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = config_field_names();
        serialized.sort_unstable();
        listed.sort_unstable();
        assert_eq!(serialized, listed);
    }

    #[test]
    fn only_keys_that_ask_for_something_are_named_with_their_reason() {
        let raw = json!({
            "background": false, "syslog": true, "donate-level": 0, "title": true,
            "api": {"id": "x", "worker-id": null, "port": 8080},
            "pools": [{"url": "p:1", "coin": "monero", "nicehash": false, "self-select": null,
                       "sni": true, "socks5": "h:1", "frobnicate": 1}],
            "tls": {"dhparam": "/etc/dh.pem", "ciphersuites": "TLS_AES_128_GCM_SHA256"},
            "mode": "nicehash", "typo-key": "x"
        });
        let got = ignored_keys(&raw);
        let keys: Vec<&str> = got.iter().map(|s| s.split_once(' ').unwrap().0).collect();
        assert_eq!(
            keys,
            vec![
                "api.port",
                "pools[0].coin",
                "pools[0].frobnicate",
                "syslog",
                "title",
                "tls.dhparam",
                "typo-key"
            ],
            "{got:?}"
        );
        assert!(got[1].contains("algo"), "{got:?}");
        assert!(got[2].ends_with("(unknown key)"), "{got:?}");
        assert!(got[6].ends_with("(unknown key)"), "{got:?}");
    }
}
