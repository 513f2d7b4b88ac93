//! Shared by the proxy-core integration tests.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use proxy_core::config::{BindAddr, PoolConfig};
use proxy_core::Config;

/// A config listening on `127.0.0.1:0` with `pools` in order (login `PROXYWALLET`), one
/// attempt per pool and a 1 s retry pause, everything else default.
pub fn local_config(pools: &[SocketAddr]) -> Config {
    Config {
        bind: vec![BindAddr {
            host: "127.0.0.1".into(),
            port: 0,
            tls: false,
        }],
        pools: pools
            .iter()
            .map(|a| PoolConfig {
                url: a.to_string(),
                user: "PROXYWALLET".into(),
                pass: "proxypass".into(),
                ..PoolConfig::default()
            })
            .collect(),
        retries: 1,
        retry_pause: 1,
        ..Config::default()
    }
}
