//! Test support for the proxy: an in-process mock pool, scripted stratum miners, a RandomX
//! light-mode miner that hashes for real, and a harness that runs a real `monerod` in regtest.
//!
//! Everything binds loopback addresses only and stops by itself (on drop or on a deadline).

pub mod miner;
pub mod mock_pool;
pub mod monerod;
pub mod rx_miner;
