//! The daemon upstream's JSON-RPC reply parsers (`pool_client::daemon`) on arbitrary bodies:
//! never panic; a parsed template yields a job that passes the checks every pool job gets and
//! can be asked for any extra nonce; every error has a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_client::daemon::{
    parse_header_reply, parse_info_reply, parse_submit_reply, parse_template_reply, DaemonError,
};

fn check_error(e: &DaemonError) {
    assert!(!e.to_string().is_empty());
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the reply's method, the rest is the HTTP body.
    let Some((&method, body)) = data.split_first() else {
        return;
    };
    match method % 4 {
        0 => match parse_template_reply(body, "rx/0") {
            Ok(template) => {
                let mut job = template.job("rx/0");
                job.job_id = "000100000001".into();
                assert_eq!(job.validate(), Ok(()));
                let _ = template.holds_extra_nonce(&body[..body.len().min(8)]);
            }
            Err(e) => check_error(&e),
        },
        1 => {
            if let Err(e) = parse_info_reply(body) {
                check_error(&e);
            }
        }
        2 => {
            if let Err(e) = parse_submit_reply(body) {
                check_error(&e);
            }
        }
        _ => {
            if let Err(e) = parse_header_reply(body) {
                check_error(&e);
            }
        }
    }
});
