//! Test support for the proxy: an in-process mock pool, scripted stratum miners, a RandomX
//! light-mode miner that hashes for real, a Stratum V1 CPU miner (sha256d) with a scripted
//! SV1 pool that checks its shares, and harnesses that run a real `monerod` and a real
//! bcoin node (Bitcoin, Node.js) in regtest, and the independent SV1 miner `para` (built and
//! cached by [`para::install`]).
//!
//! Everything binds loopback addresses only and stops by itself (on drop or on a deadline).

pub mod bcoin;
pub mod loadgen;
pub mod miner;
pub mod mock_pool;
pub mod monerod;
mod node;
pub mod para;
pub mod rx_miner;
pub mod sv1_miner;
pub mod sv1_pool;

/// Sends `tracing` output of the code under test to the test's captured output; honours
/// `RUST_LOG` (default `info`). Safe to call more than once.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// Waits until `cond` holds, looking again each time `changed` is notified, up to `wait`.
/// Returns whether it did (the mock pools' `wait_for`).
async fn wait_until(
    changed: &tokio::sync::Notify,
    wait: std::time::Duration,
    cond: impl Fn() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = changed.notified();
        if cond() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return cond();
        }
    }
}
