//! Newline-delimited framing (go-proxy RFC §19).
//!
//! Every stratum message is one JSON document terminated by `\n` (a `\r` before it is
//! dropped). A line longer than the maximum is fatal to the connection: the decoder returns
//! [`CodecError::LineTooLong`] and the caller closes it.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The maximum length of one line in bytes, excluding the `\n` (RFC §19: 16384).
pub const MAX_LINE_LENGTH: usize = 16384;

/// Errors of the line codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer sent more than `max` bytes without a newline: close the connection; a retry
    /// cannot help.
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// The limit that was exceeded, in bytes.
        max: usize,
    },
    /// The underlying transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A `tokio_util` codec for `\n`-terminated lines with a maximum length.
///
/// Decoding yields each line without its terminator (and without a trailing `\r`). Empty lines
/// are skipped. Encoding writes the given bytes as they are: callers pass lines that already
/// end in `\n` (every encoder of [`crate::cryptonote`] does).
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_length: usize,
    /// How far the buffer has been searched for `\n` already.
    searched: usize,
}

impl LineCodec {
    /// A codec that accepts lines of up to `max_length` bytes.
    pub fn new(max_length: usize) -> Self {
        Self {
            max_length,
            searched: 0,
        }
    }

    /// The maximum line length in bytes.
    pub fn max_length(&self) -> usize {
        self.max_length
    }
}

impl Default for LineCodec {
    fn default() -> Self {
        Self::new(MAX_LINE_LENGTH)
    }
}

impl Decoder for LineCodec {
    type Item = BytesMut;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        loop {
            let window = buf.len().min(self.max_length + 1);
            let found = memchr::memchr(b'\n', &buf[self.searched..window]);
            match found {
                Some(rel) => {
                    let end = self.searched + rel;
                    self.searched = 0;
                    let mut line = buf.split_to(end + 1);
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Ok(Some(line));
                }
                None if buf.len() > self.max_length => {
                    return Err(CodecError::LineTooLong {
                        max: self.max_length,
                    });
                }
                None => {
                    self.searched = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        // A partial line at end of stream is not a message: drop it.
        let line = self.decode(buf)?;
        if line.is_none() {
            buf.clear();
            self.searched = 0;
        }
        Ok(line)
    }
}

impl Encoder<Bytes> for LineCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_strips_cr() {
        let mut c = LineCodec::default();
        let mut buf = BytesMut::from(&b"{\"a\":1}\r\n\n{\"b\":2}\n{\"c\""[..]);
        assert_eq!(&c.decode(&mut buf).unwrap().unwrap()[..], b"{\"a\":1}");
        assert_eq!(&c.decode(&mut buf).unwrap().unwrap()[..], b"{\"b\":2}");
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b":3}\n");
        assert_eq!(&c.decode(&mut buf).unwrap().unwrap()[..], b"{\"c\":3}");
        assert!(buf.is_empty());
    }

    #[test]
    fn line_of_exactly_max_is_accepted_one_more_is_fatal() {
        let mut c = LineCodec::new(8);
        let mut buf = BytesMut::from(&b"12345678\n"[..]);
        assert_eq!(&c.decode(&mut buf).unwrap().unwrap()[..], b"12345678");
        let mut buf = BytesMut::from(&b"123456789"[..]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(CodecError::LineTooLong { max: 8 })
        ));
    }

    #[test]
    fn long_line_without_newline_fails_before_it_is_complete() {
        let mut c = LineCodec::default();
        let mut buf = BytesMut::from(&vec![b'x'; MAX_LINE_LENGTH][..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"x");
        assert!(c.decode(&mut buf).is_err());
    }

    #[test]
    fn partial_line_at_eof_is_dropped() {
        let mut c = LineCodec::default();
        let mut buf = BytesMut::from(&b"{\"a\":"[..]);
        assert!(c.decode_eof(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
    }
}
