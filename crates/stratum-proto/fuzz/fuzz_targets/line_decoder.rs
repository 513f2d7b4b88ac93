//! `LineCodec` on arbitrary bytes arriving in arbitrary pieces: it never panics, every line
//! it yields is at most the maximum length and holds no `\n`, and the lines are exactly the
//! input's complete lines (blank ones skipped, a `\r` before the `\n` dropped) up to the
//! first over-long one.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use stratum_proto::LineCodec;
use tokio_util::codec::Decoder;

const MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size, the rest is the stream.
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece % 16) + 1;
    let mut codec = LineCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    'feed: for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(line)) => {
                    assert!(line.len() <= MAX);
                    assert!(!line.contains(&b'\n'));
                    got.push(line.to_vec());
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    // What a plain split says the complete lines are, before any over-long one.
    let mut want: Vec<Vec<u8>> = Vec::new();
    let mut parts = stream.split(|b| *b == b'\n').peekable();
    while let Some(line) = parts.next() {
        if parts.peek().is_none() {
            break; // no newline after it: not complete
        }
        if line.len() > MAX {
            break; // the codec refuses it, and stops there
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        want.push(line.to_vec());
    }
    assert_eq!(got, want);
});
