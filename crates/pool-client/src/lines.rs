//! The pool's lines, read with a buffer that exists only while a partial line waits.
//!
//! `tokio_util`'s `FramedRead` keeps an 8 KiB buffer for the life of the connection. A
//! NiceHash upstream serves 256 miners and does not mind; in simple mode every miner has an
//! upstream of its own, and 8 KiB per miner was about a third of the proxy's memory per miner.
//! [`PoolLines`] reads into a scratch array on the stack, decodes with the same
//! [`LineCodec`] (same maximum line length, same errors), and keeps heap bytes only for a
//! line whose end has not arrived yet: an idle pool connection holds no read buffer.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::Stream;
use stratum_proto::{CodecError, LineCodec};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

use crate::tls::PoolReader;

/// Bytes read from the socket at once: a pool's job line is under 1 KiB, a login reply
/// with its job under 2 KiB.
const READ_CHUNK: usize = 4096;

/// The lines of a pool connection, without their terminators (see [`LineCodec`]): a
/// `Stream` of `Result<BytesMut, CodecError>` that ends when the pool closes. A partial
/// line at the end of the stream is dropped. An over-long line is an error, after which
/// the connection must close.
pub(crate) struct PoolLines {
    reader: PoolReader,
    codec: LineCodec,
    /// Bytes of lines not yet complete; empty (unallocated) between lines.
    buf: BytesMut,
    eof: bool,
}

impl PoolLines {
    /// Lines read from `reader`, with the default maximum line length.
    pub(crate) fn new(reader: PoolReader) -> Self {
        Self {
            reader,
            codec: LineCodec::default(),
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// Bytes held for a partial line (0 between lines: no buffer is allocated then).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.capacity()
    }
}

impl Stream for PoolLines {
    type Item = Result<BytesMut, CodecError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let decoded = if this.eof {
                this.codec.decode_eof(&mut this.buf)
            } else {
                this.codec.decode(&mut this.buf)
            };
            match decoded {
                Ok(Some(line)) => return Poll::Ready(Some(Ok(line))),
                Ok(None) if this.eof => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            if this.buf.is_empty() {
                // No partial line: give back the buffer (the lines handed out keep theirs).
                this.buf = BytesMut::new();
            }
            // Not zeroed: the reader writes what it fills, and only that is read back.
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut this.reader).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(CodecError::Io(e)))),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => this.eof = true,
                Poll::Ready(Ok(())) => this.buf.extend_from_slice(rb.filled()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn pair() -> (tokio::io::DuplexStream, PoolLines) {
        let (pool, ours) = tokio::io::duplex(64 * 1024);
        (pool, PoolLines::new(Box::new(ours)))
    }

    #[tokio::test]
    async fn lines_split_across_reads_come_out_whole_and_idle_holds_no_buffer() {
        let (mut pool, mut lines) = pair();
        pool.write_all(b"{\"a\":1}\n{\"b\":").await.unwrap();
        assert_eq!(&lines.next().await.unwrap().unwrap()[..], b"{\"a\":1}");
        // The next poll reads nothing more: the partial line stays buffered.
        assert!(futures_util::poll!(lines.next()).is_pending());
        assert!(lines.held() > 0, "a partial line keeps its bytes");
        pool.write_all(b"2}\r\n\n").await.unwrap();
        assert_eq!(&lines.next().await.unwrap().unwrap()[..], b"{\"b\":2}");
        assert!(futures_util::poll!(lines.next()).is_pending());
        assert_eq!(lines.held(), 0, "between lines no buffer is held");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_drops_a_partial_line_and_ends() {
        let (mut pool, mut lines) = pair();
        pool.write_all(b"one\ntw").await.unwrap();
        drop(pool);
        assert_eq!(&lines.next().await.unwrap().unwrap()[..], b"one");
        assert!(lines.next().await.is_none());
    }

    #[tokio::test]
    async fn an_over_long_line_is_an_error() {
        let (mut pool, mut lines) = pair();
        let max = stratum_proto::MAX_LINE_LENGTH;
        let writer = tokio::spawn(async move {
            let _ = pool.write_all(&vec![b'x'; max + 2]).await;
            pool
        });
        match lines.next().await {
            Some(Err(CodecError::LineTooLong { max: m })) => assert_eq!(m, max),
            other => panic!("expected LineTooLong, got {other:?}"),
        }
        drop(writer.await.unwrap());
    }
}
