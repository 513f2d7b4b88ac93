//! The access log and the share log (go-proxy RFC §15): append-only text files, one event per
//! line, opened on first write.
//!
//! | log | line |
//! |---|---|
//! | access | `<RFC3339 time> CONNECT <ip> <user> <agent>` |
//! | access | `<RFC3339 time> CLOSE <ip> <user> rx=<bytes> tx=<bytes>` |
//! | share | `<RFC3339 time> ACCEPT <user> diff=<difficulty> latency=<ms>ms` |
//! | share | `<RFC3339 time> REJECT <user> reason="<message>"` |
//!
//! Lines are handed to a writer thread through a bounded queue, so a slow disk never holds up
//! a miner or a share. A file that cannot be opened or written costs a warning (once per
//! failure streak) and the lines are dropped; the proxy keeps serving.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::lock;

/// Lines that may wait for the writer thread before new ones are dropped.
const QUEUE: usize = 8192;
/// How often buffered lines are flushed to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One append-only line file whose path may change at run time (config reload).
#[derive(Default)]
pub(crate) struct LineLog {
    sink: Mutex<Option<(PathBuf, SyncSender<String>)>>,
}

impl LineLog {
    /// Points the log at `path` (`None` or empty: off). A new path starts a new writer; the
    /// old one flushes and ends.
    pub(crate) fn set_path(&self, path: Option<&str>) {
        let path = path.filter(|p| !p.is_empty()).map(PathBuf::from);
        let mut sink = lock(&self.sink);
        if sink.as_ref().map(|(p, _)| p) == path.as_ref() {
            return;
        }
        *sink = path.map(|p| {
            let (tx, rx) = sync_channel(QUEUE);
            let for_thread = p.clone();
            let spawned = std::thread::Builder::new()
                .name("line-log".into())
                .spawn(move || writer(for_thread, rx));
            if let Err(e) = spawned {
                tracing::warn!(path = %p.display(), "cannot start the log writer: {e}");
            }
            (p, tx)
        });
    }

    /// Queues one line (without its newline); dropped with a warning when the queue is full.
    pub(crate) fn write(&self, line: String) {
        let sink = lock(&self.sink);
        if let Some((path, tx)) = sink.as_ref() {
            if let Err(TrySendError::Full(_)) = tx.try_send(line) {
                tracing::warn!(path = %path.display(), "log queue full; line dropped");
            }
        }
    }

    /// Whether a path is set.
    pub(crate) fn is_on(&self) -> bool {
        lock(&self.sink).is_some()
    }
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

/// An access-log CONNECT line.
pub(crate) fn connect_line(ip: &str, user: &str, agent: &str) -> String {
    format!("{} CONNECT {ip} {user} {agent}", now_rfc3339())
}

/// An access-log CLOSE line.
pub(crate) fn close_line(ip: &str, user: &str, rx: u64, tx: u64) -> String {
    format!("{} CLOSE {ip} {user} rx={rx} tx={tx}", now_rfc3339())
}

/// A share-log ACCEPT line.
pub(crate) fn accept_line(user: &str, difficulty: u64, latency: Duration) -> String {
    format!(
        "{} ACCEPT {user} diff={difficulty} latency={}ms",
        now_rfc3339(),
        latency.as_millis()
    )
}

/// A share-log REJECT line.
pub(crate) fn reject_line(user: &str, reason: &str) -> String {
    format!("{} REJECT {user} reason={reason:?}", now_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_shape() {
        let c = connect_line("10.0.0.1", "WALLET", "XMRig/6.21.0");
        let (time, rest) = c.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert_eq!(rest, "CONNECT 10.0.0.1 WALLET XMRig/6.21.0");
        assert!(close_line("1.2.3.4", "W", 10, 20).ends_with(" CLOSE 1.2.3.4 W rx=10 tx=20"));
        assert!(accept_line("W", 5000, Duration::from_millis(82))
            .ends_with(" ACCEPT W diff=5000 latency=82ms"));
        assert!(reject_line("W", "Low difficulty share")
            .ends_with(" REJECT W reason=\"Low difficulty share\""));
    }

    #[test]
    fn writes_appear_in_the_file_and_a_bad_path_does_not_panic() {
        let dir = std::env::temp_dir().join(format!("linelog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
}
