//! The access log and the share log (go-proxy RFC §15): append-only text files, one event per
//! line, opened on first write.
//!
//! | log | line |
//! |---|---|
//! | access | `<RFC3339 time> CONNECT <ip> "<user>" "<agent>"` |
//! | access | `<RFC3339 time> CLOSE <ip> "<user>" rx=<bytes> tx=<bytes>` |
//! | share | `<RFC3339 time> ACCEPT "<user>" diff=<difficulty> latency=<ms>ms` |
//! | share | `<RFC3339 time> REJECT "<user>" reason="<message>"` |
//!
//! Every field that comes from outside the proxy (the miner's login and agent, and a reject
//! reason, which may come from the pool and echo what the miner sent) is written quoted and
//! escaped as Rust's `{:?}` writes a string ([`quoted`]): `"` and `\` as `\"` and `\\`,
//! newline, carriage return and tab as `\n`, `\r`, `\t`, and every other character that is
//! not printable (controls, DEL, C1, line and paragraph separators, bidi overrides, zero-width
//! characters) as `\u{..}`. A line therefore never holds a raw control character, and a
//! miner cannot end a line or forge another one. The IP and the numbers are the proxy's own.
//!
//! Lines are handed to a writer thread through a bounded queue ([`QUEUE`] lines) with
//! `try_send`, so a slow disk never holds up a miner or a share: a full queue drops the line
//! and counts it ([`LineLog::dropped`]), with one warning per streak of drops. A file that
//! cannot be opened or written costs a warning (once per failure streak) and the lines are
//! dropped; the proxy keeps serving. [`LineLog::close`] flushes what is queued (shutdown).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::lock;

/// Lines that may wait for the writer thread before new ones are dropped.
const QUEUE: usize = 8192;
/// How often buffered lines are flushed to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The running writer of one log: its path, its queue, and a signal that it has flushed and
/// ended.
struct Sink {
    path: PathBuf,
    tx: SyncSender<String>,
    done: oneshot::Receiver<()>,
}

/// One append-only line file whose path may change at run time (config reload).
#[derive(Default)]
pub(crate) struct LineLog {
    sink: Mutex<Option<Sink>>,
    /// Lines dropped since the start (queue full, or no writer thread).
    dropped: AtomicU64,
    /// The last line was dropped (a warning was logged for this streak).
    dropping: AtomicBool,
}

impl LineLog {
    /// Points the log at `path` (`None` or empty: off). A new path starts a new writer; the
    /// old one writes what it holds, flushes and ends.
    pub(crate) fn set_path(&self, path: Option<&str>) {
        let path = path.filter(|p| !p.is_empty()).map(PathBuf::from);
        if lock(&self.sink).as_ref().map(|s| &s.path) == path.as_ref() {
            return;
        }
        // The thread is started outside the lock: a miner's write never waits for it.
        let new = path.map(start_writer);
        *lock(&self.sink) = new;
    }

    /// Queues one line (without its newline); never blocks. Dropped, and counted, when the
    /// queue is full.
    pub(crate) fn write(&self, line: String) {
        let sent = {
            let sink = lock(&self.sink);
            let Some(sink) = sink.as_ref() else { return };
            match sink.tx.try_send(line) {
                Ok(()) => None,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    Some(sink.path.clone())
                }
            }
        };
        match sent {
            None => {
                // A load first: the common case (no streak) writes nothing shared.
                if self.dropping.load(Relaxed) && self.dropping.swap(false, Relaxed) {
                    tracing::info!(
                        dropped = self.dropped.load(Relaxed),
                        "log queue has room again"
                    );
                }
            }
            Some(path) => {
                let n = self.dropped.fetch_add(1, Relaxed) + 1;
                if !self.dropping.swap(true, Relaxed) {
                    tracing::warn!(
                        path = %path.display(),
                        dropped = n,
                        "log queue full ({QUEUE} lines): dropping lines until it drains"
                    );
                }
            }
        }
    }

    /// Whether a path is set.
    pub(crate) fn is_on(&self) -> bool {
        lock(&self.sink).is_some()
    }

    /// Lines dropped since the start because the writer could not keep up.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Turns the log off and waits up to `limit` for its writer to write what is queued,
    /// flush and end (shutdown: nothing queued is lost to the process exit).
    pub(crate) async fn close(&self, limit: Duration) {
        let sink = lock(&self.sink).take();
        if let Some(Sink { path, tx, done }) = sink {
            drop(tx);
            if tokio::time::timeout(limit, done).await.is_err() {
                tracing::warn!(path = %path.display(), "log writer still busy at shutdown");
            }
        }
    }
}

fn start_writer(path: PathBuf) -> Sink {
    let (tx, rx) = sync_channel(QUEUE);
    let (done_tx, done) = oneshot::channel();
    let for_thread = path.clone();
    let spawned = std::thread::Builder::new()
        .name("line-log".into())
        .spawn(move || {
            writer(for_thread, rx);
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(path = %path.display(), "cannot start the log writer: {e}");
    }
    Sink { path, tx, done }
}

fn writer(path: PathBuf, rx: Receiver<String>) {
    let mut file: Option<BufWriter<File>> = None;
    let mut failing = false;
    loop {
        let line = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let Some(line) = line else {
            if let Some(f) = file.as_mut() {
                let _ = f.flush();
            }
            continue;
        };
        if file.is_none() {
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => {
                    file = Some(BufWriter::new(f));
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(path = %path.display(), "cannot open log file: {e}");
                        failing = true;
                    }
                    continue;
                }
            }
        }
        if let Some(f) = file.as_mut() {
            if let Err(e) = writeln!(f, "{line}") {
                tracing::warn!(path = %path.display(), "cannot write log file: {e}");
                file = None;
                failing = true;
            }
        }
    }
    if let Some(mut f) = file {
        let _ = f.flush();
    }
}

/// `2026-04-04T12:00:00Z`.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// `text` in double quotes, escaped as Rust's `{:?}` writes a string: no control or other
/// non-printable character, no raw `"` or newline (see the module docs).
pub(crate) fn quoted(text: &str) -> impl fmt::Display + '_ {
    struct Quoted<'a>(&'a str);
    impl fmt::Display for Quoted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    Quoted(text)
}

/// An access-log CONNECT line; `user` and `agent` are the miner's, quoted.
pub(crate) fn connect_line(ip: &str, user: &str, agent: &str) -> String {
    format!(
        "{} CONNECT {ip} {} {}",
        now_rfc3339(),
        quoted(user),
        quoted(agent)
    )
}

/// An access-log CLOSE line; `user` is the miner's, quoted.
pub(crate) fn close_line(ip: &str, user: &str, rx: u64, tx: u64) -> String {
    format!(
        "{} CLOSE {ip} {} rx={rx} tx={tx}",
        now_rfc3339(),
        quoted(user)
    )
}

/// A share-log ACCEPT line; `user` is the miner's, quoted.
pub(crate) fn accept_line(user: &str, difficulty: u64, latency: Duration) -> String {
    format!(
        "{} ACCEPT {} diff={difficulty} latency={}ms",
        now_rfc3339(),
        quoted(user),
        latency.as_millis()
    )
}

/// A share-log REJECT line; `user` and `reason` (which may echo the pool or the miner) are
/// quoted.
pub(crate) fn reject_line(user: &str, reason: &str) -> String {
    format!(
        "{} REJECT {} reason={}",
        now_rfc3339(),
        quoted(user),
        quoted(reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a miner sends to forge a line of its own.
    const FORGED: &str = "\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 FORGED";

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("linelog-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// No raw control or other non-printable character, and nothing outside the quotes
    /// that the miner wrote.
    fn assert_clean(line: &str) {
        for c in line.chars() {
            assert!(
                !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}' | '\u{200b}'),
                "raw {c:?} in {line:?}"
            );
        }
    }

    #[test]
    fn lines_have_the_documented_shape() {
        let c = connect_line("10.0.0.1", "WALLET", "XMRig/6.21.0");
        let (time, rest) = c.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert_eq!(rest, "CONNECT 10.0.0.1 \"WALLET\" \"XMRig/6.21.0\"");
        assert!(close_line("1.2.3.4", "W", 10, 20).ends_with(" CLOSE 1.2.3.4 \"W\" rx=10 tx=20"));
        assert!(accept_line("W", 5000, Duration::from_millis(82))
            .ends_with(" ACCEPT \"W\" diff=5000 latency=82ms"));
        assert!(reject_line("W", "Low difficulty share")
            .ends_with(" REJECT \"W\" reason=\"Low difficulty share\""));
    }

    #[test]
    fn a_newline_in_a_field_cannot_forge_a_line() {
        let agent = format!("XMRig/6.21.0{FORGED}");
        let line = connect_line("10.0.0.1", "W", &agent);
        assert_eq!(line.lines().count(), 1, "{line:?}");
        assert!(
            line.ends_with(
                " CONNECT 10.0.0.1 \"W\" \"XMRig/6.21.0\\n2001-01-01T00:00:00Z CONNECT 6.6.6.6 FORGED\""
            ),
            "{line}"
        );
        assert_clean(&line);
        for line in [
            close_line("10.0.0.1", &agent, 1, 2),
            accept_line(&agent, 1, Duration::ZERO),
            reject_line(&agent, &agent),
        ] {
            assert_eq!(line.lines().count(), 1, "{line:?}");
            assert!(!line.contains('\n') && line.contains("\\n2001-"), "{line}");
        }
    }

    #[test]
    fn control_characters_and_quotes_are_escaped() {
        let user = "W\" rx=1 \u{1b}[31mred\r\t\0\u{7f}\u{85}\u{2028}\u{2029}\u{202e}\u{200b}\\end";
        let line = accept_line(user, 1000, Duration::from_millis(5));
        assert_clean(&line);
        let (_, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            rest,
            "ACCEPT \"W\\\" rx=1 \\u{1b}[31mred\\r\\t\\0\\u{7f}\\u{85}\\u{2028}\\u{2029}\\u{202e}\\u{200b}\\\\end\" \
             diff=1000 latency=5ms"
        );
        // Printable text beyond ASCII is kept as it is.
        assert!(connect_line("1.1.1.1", "wörker-日本", "-").contains("\"wörker-日本\""));
    }

    #[test]
    fn writes_appear_in_the_file_and_a_bad_path_does_not_panic() {
        let dir = temp_dir("file");
        let path = dir.join("a.log");
        let log = LineLog::default();
        log.set_path(Some(path.to_str().unwrap()));
        log.write("one".into());
        log.write("two".into());
        log.set_path(None); // the writer flushes and ends
        assert!(!log.is_on());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text == "one\ntwo\n" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "file holds {text:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let bad = LineLog::default();
        bad.set_path(Some("/nonexistent-dir/x/y.log"));
        bad.write("lost".into());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn close_writes_everything_queued_before_it_returns() {
        let dir = temp_dir("close");
        let path = dir.join("a.log");
        let log = LineLog::default();
        log.set_path(Some(path.to_str().unwrap()));
        for i in 0..1000 {
            log.write(format!("line {i}"));
        }
        log.close(Duration::from_secs(10)).await;
        assert!(!log.is_on());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1000);
        assert_eq!(text.lines().last(), Some("line 999"));
        log.write("after close".into()); // off: ignored, not counted
        assert_eq!(log.dropped(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A writer that never reads: the queue fills and stays full.
        let (tx, _rx) = sync_channel(QUEUE);
        let (_done_tx, done) = oneshot::channel();
        let log = LineLog::default();
        *lock(&log.sink) = Some(Sink {
            path: PathBuf::from("stuck.log"),
            tx,
            done,
        });
        // A blocking send would hang here on line QUEUE + 1.
        for i in 0..QUEUE + 100 {
            log.write(format!("line {i}"));
        }
        assert_eq!(log.dropped(), 100);
        assert!(log.dropping.load(Relaxed));
        // No writer thread at all (it could not start): every line is counted as dropped.
        let (tx, rx) = sync_channel(1);
        drop(rx);
        let (_done_tx, done) = oneshot::channel();
        *lock(&log.sink) = Some(Sink {
            path: PathBuf::from("gone.log"),
            tx,
            done,
        });
        log.write("x".into());
        assert_eq!(log.dropped(), 101);
    }
}
