//! `parse_miner_request` on arbitrary bytes: never panics, and every refusal carries the
//! message the miner is answered with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratum_proto::cryptonote::parse_miner_request;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_miner_request(data) {
        assert!(!e.message().is_empty());
    }
});
