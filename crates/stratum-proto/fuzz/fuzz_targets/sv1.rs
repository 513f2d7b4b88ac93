//! Stratum V1: `parse_client_line` and `parse_server_line` on arbitrary bytes never panic;
//! when the first line is a `mining.notify` and the second a `mining.submit`, the share
//! check runs on them and never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratum_proto::sv1::share::check_share;
use stratum_proto::sv1::{
    parse_client_line, parse_server_line, ClientMessage, ClientRequest, ServerMessage,
};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(2, |b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let second = lines.next().unwrap_or_default();
    let _ = parse_client_line(first);
    if let (
        Ok(ServerMessage::Notify(job)),
        Ok(ClientMessage::Request {
            request: ClientRequest::Submit(submit),
            ..
        }),
    ) = (parse_server_line(first), parse_client_line(second))
    {
        let _ = check_share(&job, &[0xa1, 0, 0, 1], &submit, 0x1fff_e000, 1.0);
    }
});
