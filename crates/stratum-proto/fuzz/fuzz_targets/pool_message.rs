//! `parse_pool_message` on arbitrary bytes: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratum_proto::cryptonote::parse_pool_message;

fuzz_target!(|data: &[u8]| {
    let _ = parse_pool_message(data);
});
