//! `parse_miner_request` on arbitrary bytes: never panics; every refusal carries the message
//! the miner is answered with; and the answer (a status for a request, the error otherwise)
//! is one JSON line that echoes the request's id unchanged (`null` when there was none).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use stratum_proto::cryptonote::{encode_error, encode_status, parse_miner_request};

fuzz_target!(|data: &[u8]| {
    let (id, answer) = match parse_miner_request(data) {
        Ok((id, _)) => {
            let answer = encode_status(&id, "OK");
            (id, answer)
        }
        Err(e) => {
            assert!(!e.message().is_empty());
            (e.id().clone(), encode_error(e.id(), e.message()))
        }
    };
    assert_eq!(
        answer.iter().position(|b| *b == b'\n'),
        Some(answer.len() - 1)
    );
    let echoed: Value = serde_json::from_slice(&answer).expect("the answer is JSON");
    assert_eq!(echoed["id"], id);
});
