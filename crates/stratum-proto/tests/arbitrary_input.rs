//! Whatever bytes a miner or a pool sends, the decoders answer with a value or an error and
//! never panic; and whatever lines are written, the codec gives them back unchanged.

use bytes::BytesMut;
use proptest::prelude::*;
use stratum_proto::cryptonote::{parse_miner_request, parse_pool_message, RequestError};
use stratum_proto::{result_difficulty, target_to_difficulty, LineCodec};
use tokio_util::codec::Decoder;

/// JSON-ish text: mostly the characters stratum lines are made of.
fn jsonish() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[{}\[\]":,a-z0-9 .\-]{0,200}"#).unwrap()
}

proptest! {
    #[test]
    fn miner_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_miner_request(&bytes);
        let _ = parse_pool_message(&bytes);
        let _ = stratum_proto::sv1::parse_client_line(&bytes);
        let _ = stratum_proto::sv1::parse_server_line(&bytes);
    }

    #[test]
    fn jsonish_lines_never_panic_and_errors_carry_an_id(text in jsonish()) {
        match parse_miner_request(text.as_bytes()) {
            Ok(_) => {}
            Err(e @ RequestError::Parse) => prop_assert!(e.id().is_null()),
            Err(e) => prop_assert!(!e.message().is_empty()),
        }
        let _ = parse_pool_message(text.as_bytes());
        match stratum_proto::sv1::parse_client_line(text.as_bytes()) {
            Err(e @ stratum_proto::sv1::RequestError::Parse) => prop_assert!(e.id().is_null()),
            Err(e) => prop_assert!(e.reply().ends_with(b"\n")),
            Ok(_) => {}
        }
        let _ = stratum_proto::sv1::parse_server_line(text.as_bytes());
        let _ = target_to_difficulty(&text);
        let _ = result_difficulty(&text);
    }

    #[test]
    fn codec_returns_every_line_whatever_the_chunking(
        lines in proptest::collection::vec("[a-z0-9{}\":,]{1,64}", 1..20),
        cut in 1usize..50,
    ) {
        let stream: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain(std::iter::once(b'\n'))).collect();
        let mut codec = LineCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(cut) {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                got.push(String::from_utf8(line.to_vec()).unwrap());
            }
        }
        prop_assert_eq!(got, lines);
    }
}
