//! The proxy's own log (`tracing`): to stderr, and to `log-file` when set.
//!
//! Two rules hold whatever the rest of the code logs:
//! - **Logging never blocks a runtime worker.** Each output is a `tracing-appender`
//!   non-blocking writer: an event is formatted on the caller's thread and queued (at most
//!   [`QUEUE_LINES`] lines) for a writer thread. The writers are *lossy*: when the queue is
//!   full (stderr piped to a stalled reader, a slow disk), a line is dropped and counted
//!   ([`DroppedLines`], shown in the status line), never waited for. A blocking
//!   writer would stall the runtime worker that logs, and with one worker (the default) every
//!   miner with it. The guards in [`Logging`] flush what is queued when it is dropped at the
//!   end of `main` (up to a second per output).
//! - **One event, one line, no raw control characters.** Field values and messages go
//!   through [`escaping_fields`]: every control character (C0, DEL, C1) and every Unicode
//!   line or paragraph separator and bidirectional or zero-width format character is written
//!   as Rust's `escape_debug` writes it (`\n`, `\u{1b}`, `\u{202e}`). Code that logs a string
//!   from a miner or a pool still logs it as a `?` (Debug) field, quoted; this catches what a
//!   `%` field or a message may carry.

use std::fmt::{self, Write as _};
use std::io::Write;

use tracing::field::Field;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// Log lines that may wait for an output's writer thread before new ones are dropped. At a
/// few hundred bytes a line, a few MiB at most per output.
pub(crate) const QUEUE_LINES: usize = 16_384;

/// Keeps the log writers alive; dropping it flushes them.
pub(crate) struct Logging {
    _guards: Vec<WorkerGuard>,
    dropped: DroppedLines,
}

impl Logging {
    /// The drop counters of the outputs, for the status line.
    pub(crate) fn dropped(&self) -> DroppedLines {
        self.dropped.clone()
    }
}

/// The drop counters of the log outputs.
#[derive(Clone)]
pub(crate) struct DroppedLines(Vec<ErrorCounter>);

impl DroppedLines {
    /// Log lines dropped so far because an output's queue was full.
    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|c| c.dropped_lines() as u64).sum()
    }
}

/// A lossy non-blocking writer to `out` on a thread of its own named `name`, queueing at most
/// `lines` lines.
pub(crate) fn non_blocking<W: Write + Send + 'static>(
    out: W,
    name: &str,
    lines: usize,
) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name(name)
        .finish(out)
}

/// True for the characters a log line must not hold raw: controls, line and paragraph
/// separators, and the format characters that reorder or hide text.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Writes `text` with every [`must_escape`] character escaped (`escape_debug`).
fn write_escaped(w: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(i) = rest.find(must_escape) {
        w.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        write!(w, "{}", c.escape_debug())?;
        rest = &rest[i + c.len_utf8()..];
    }
    w.write_str(rest)
}

/// The field formatter of every output: as tracing-subscriber's default (the message bare,
/// then `name=value`, space-separated; `log.*` fields of bridged `log` records left out),
/// with every value escaped (see the module docs).
pub(crate) fn escaping_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            let name = field.name();
            if name.starts_with("log.") {
                return Ok(());
            }
            let mut text = String::new();
            write!(text, "{value:?}")?;
            if name != "message" {
                write!(w, "{name}=")?;
            }
            write_escaped(w, &text)
        },
    )
    .delimited(" ")
}

/// Logs to stderr (with colour when `colors`), and to `log_file` too when set, each through
/// a lossy non-blocking writer. `RUST_LOG` sets the level (default `info`).
///
/// # Errors
/// When `log_file` cannot be opened for appending.
pub(crate) fn init(colors: bool, log_file: Option<&str>) -> anyhow::Result<Logging> {
    use anyhow::Context;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let mut guards = Vec::new();
    let mut counters = Vec::new();
    let (stderr, guard) = non_blocking(std::io::stderr(), "log-stderr", QUEUE_LINES);
    counters.push(stderr.error_counter());
    guards.push(guard);
    let stderr = tracing_subscriber::fmt::layer()
        .fmt_fields(escaping_fields())
        .with_writer(stderr)
        .with_ansi(colors)
        .with_filter(filter());
    let file = match log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log-file {path:?}"))?;
            let (file, guard) = non_blocking(f, "log-file", QUEUE_LINES);
            counters.push(file.error_counter());
            guards.push(guard);
            Some(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(escaping_fields())
                    .with_writer(file)
                    .with_ansi(false)
                    .with_filter(filter()),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    Ok(Logging {
        _guards: guards,
        dropped: DroppedLines(counters),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(escaping_fields())
            .with_writer(buf.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(sub, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    const AGENT: &str = "XMRig\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 FORGED\u{1b}[2J\r\u{202e}";

    #[test]
    fn miner_text_in_a_message_or_a_display_field_stays_on_one_escaped_line() {
        let out = logged(|| {
            tracing::warn!(agent = %AGENT, "login from {AGENT}");
        });
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(
            !out.trim_end_matches('\n').chars().any(must_escape),
            "{out:?}"
        );
        let escaped = r"XMRig\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 FORGED\u{1b}[2J\r\u{202e}";
        assert_eq!(
            out,
            format!(" WARN login from {escaped} agent={escaped}\n"),
            "{out:?}"
        );
    }

    #[test]
    fn debug_fields_keep_their_quotes_and_plain_text_is_untouched() {
        let out = logged(|| {
            tracing::info!(miner = 7, user = ?"W\"\n", ip = %"10.0.0.1", "logged in: wörker 日本");
        });
        assert_eq!(
            out,
            " INFO logged in: wörker 日本 miner=7 user=\"W\\\"\\n\" ip=10.0.0.1\n"
        );
    }

    /// A writer that takes nothing until told to.
    struct Stuck(mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_instead_of_blocking() {
        let (release, stuck) = mpsc::channel();
        let (writer, guard) = non_blocking(Stuck(stuck), "log-test", 8);
        let counter = writer.error_counter();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(escaping_fields())
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        // A blocking writer would hang on the ninth or tenth line.
        tracing::subscriber::with_default(sub, || {
            for i in 0..100 {
                tracing::info!("line {i}");
            }
        });
        // The writer thread holds at most one line, the queue eight: the rest were dropped.
        assert!(
            counter.dropped_lines() >= 100 - 8 - 1,
            "{}",
            counter.dropped_lines()
        );
        drop(release); // the writer thread ends; the guard's drop returns
        drop(guard);
    }
}
