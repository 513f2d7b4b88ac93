//! An xmrig-proxy `config.json` loads as it is: the keys that mean something here are
//! honoured, the rest are named.

use proxy_core::config::{Mode, WorkersMode};
use proxy_core::Config;

/// The shape of xmrig-proxy 6.x's default config.json (values changed to a usable setup).
const XMRIG_PROXY: &str = r#"{
    "access-log-file": null,
    "access-password": null,
    "algo-ext": true,
    "api": {"id": null, "worker-id": null},
    "http": {"enabled": false, "host": "127.0.0.1", "port": 0, "access-token": null, "restricted": true},
    "background": false,
    "bind": [{"host": "0.0.0.0", "port": 3333, "tls": false}, "127.0.0.1:3334"],
    "colors": true,
    "title": true,
    "custom-diff": 0,
    "custom-diff-stats": false,
    "donate-level": 0,
    "log-file": null,
    "mode": "nicehash",
    "pools": [
        {"algo": null, "coin": null, "url": "pool.example.com:3333", "user": "WALLET", "pass": "x",
         "rig-id": null, "nicehash": false, "keepalive": false, "enabled": true, "tls": false,
         "tls-fingerprint": null, "daemon": false, "socks5": null, "self-select": null, "submit-to-origin": false}
    ],
    "retries": 2,
    "retry-pause": 1,
    "reuse-timeout": 0,
    "tls": {"enabled": false, "protocols": null, "cert": null, "cert_key": null, "ciphers": null, "ciphersuites": null, "dhparam": null},
    "user-agent": null,
    "syslog": false,
    "verbose": false,
    "watch": true,
    "workers": true
}"#;

#[test]
fn xmrig_proxy_default_config_loads() {
    let c = Config::from_json(XMRIG_PROXY).unwrap();
    c.validate().unwrap();
    assert_eq!(c.mode, Mode::Nicehash);
    assert_eq!(c.bind.len(), 2);
    assert_eq!(
        (c.bind[1].host.as_str(), c.bind[1].port),
        ("127.0.0.1", 3334)
    );
    assert_eq!(c.pools[0].url, "pool.example.com:3333");
    assert_eq!(c.pools[0].rig_id, None);
    assert_eq!((c.retries, c.retry_pause), (2, 1));
    assert!(c.watch);
    assert_eq!(c.workers, WorkersMode::RigId);
    assert_eq!(c.access_password(), None);
    let unknown: Vec<&str> = c.unknown_keys.keys().map(String::as_str).collect();
    assert_eq!(
        unknown,
        vec![
            "api",
            "background",
            "donate-level",
            "syslog",
            "title",
            "verbose"
        ]
    );
}
