//! What the dashboard reads besides the counters: a bounded ring of notable events (shares
//! refused, bans, upstreams lost and regained).
//!
//! Fed by [`crate::events::Events`] and by the 1 s tick's upstream watch (`monitor.rs`);
//! bounded: the ring holds [`JOURNAL_CAPACITY`] notices. (The hashes per upstream are a
//! counter on each mapper, `splitter.rs`.)

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pool_client::UpstreamState;
use serde::Serialize;

use crate::lock;

/// Most notices kept; the oldest goes first.
pub const JOURNAL_CAPACITY: usize = 100;

/// Most characters of a notice's message (after escaping); longer ones are cut and end in `…`.
pub const NOTICE_MAX_CHARS: usize = 240;

/// What a [`Notice`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A pool refused a share, or it could not be delivered (timeout, lost connection).
    Rejected,
    /// The proxy refused a share before the pool saw it (stale job ids are not noted).
    Invalid,
    /// A miner was cut off and its IP banned for invalid shares.
    Ban,
    /// An upstream connection was lost or logged in again.
    Upstream,
}

/// One notable event, for the dashboard's "recent errors". Strings that came from a miner or
/// a pool are escaped (`char::escape_debug`: control characters, quotes and backslashes) and
/// cut to [`NOTICE_MAX_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// Process-unique, increasing from 1.
    pub seq: u64,
    /// Unix time in seconds of the latest occurrence.
    pub unix: u64,
    /// What it is about.
    pub kind: NoticeKind,
    /// What happened.
    pub message: String,
    /// Occurrences in a row (the same kind and message is counted, not repeated).
    pub count: u64,
}

/// `s` escaped for a log or a page (`escape_debug`), cut to [`NOTICE_MAX_CHARS`].
pub(crate) fn escaped(s: &str) -> String {
    let mut out: String = s
        .chars()
        .flat_map(char::escape_debug)
        .take(NOTICE_MAX_CHARS + 1)
        .collect();
    if out.chars().count() > NOTICE_MAX_CHARS {
        out = out.chars().take(NOTICE_MAX_CHARS - 1).collect();
        out.push('…');
    }
    out
}

/// Unix time in whole seconds (0 before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Default)]
struct Ring {
    notices: VecDeque<Notice>,
    next_seq: u64,
    /// The state each upstream was in at the last look, and whether it was ever active, by
    /// upstream id.
    upstreams: HashMap<u64, (UpstreamState, bool)>,
}

/// The ring of notices.
#[derive(Default)]
pub(crate) struct Journal {
    ring: Mutex<Ring>,
}

impl Journal {
    /// Notes `message` (already escaped) now.
    pub(crate) fn note(&self, kind: NoticeKind, message: String) {
        self.note_at(kind, message, unix_now());
    }

    fn note_at(&self, kind: NoticeKind, message: String, unix: u64) {
        let mut r = lock(&self.ring);
        if let Some(last) = r
            .notices
            .back_mut()
            .filter(|n| n.kind == kind && n.message == message)
        {
            last.count += 1;
            last.unix = unix;
            return;
        }
        r.next_seq += 1;
        let seq = r.next_seq;
        if r.notices.len() == JOURNAL_CAPACITY {
            r.notices.pop_front();
        }
        r.notices.push_back(Notice {
            seq,
            unix,
            kind,
            message,
            count: 1,
        });
    }

    /// The notices, oldest first.
    pub(crate) fn notices(&self) -> Vec<Notice> {
        lock(&self.ring).notices.iter().cloned().collect()
    }

    /// Compares the upstreams' states (`(id, state, pool)`) with the last look and notes each
    /// upstream lost (it was active and is not) and each one logged in again after a loss
    /// (a first login is not news). Forgets upstreams that are gone.
    pub(crate) fn watch_upstreams(&self, now: &[(u64, UpstreamState, Option<String>)]) {
        let mut changes = Vec::new();
        {
            let mut r = lock(&self.ring);
            r.upstreams
                .retain(|id, _| now.iter().any(|(i, _, _)| i == id));
            for (id, state, pool) in now {
                let active = *state == UpstreamState::Active;
                let (before, ever_active) = r
                    .upstreams
                    .get(id)
                    .map_or((None, false), |&(s, e)| (Some(s), e));
                r.upstreams.insert(*id, (*state, ever_active || active));
                let pool = || pool.as_deref().map_or_else(|| "-".into(), escaped);
                match before {
                    Some(UpstreamState::Active) if !active => changes.push(format!(
                        "upstream #{id} ({}) lost: now {}",
                        pool(),
                        state_name(*state)
                    )),
                    Some(b) if b != UpstreamState::Active && active && ever_active => {
                        changes.push(format!("upstream #{id} logged in again to {}", pool()));
                    }
                    _ => {}
                }
            }
        }
        for c in changes {
            self.note(NoticeKind::Upstream, c);
        }
    }
}

fn state_name(s: UpstreamState) -> &'static str {
    match s {
        UpstreamState::Connecting => "connecting",
        UpstreamState::Active => "active",
        UpstreamState::Error => "failing",
        UpstreamState::Stopped => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_notices_and_counts_repeats() {
        let j = Journal::default();
        j.note_at(NoticeKind::Rejected, "a".into(), 10);
        j.note_at(NoticeKind::Rejected, "a".into(), 11);
        j.note_at(NoticeKind::Invalid, "a".into(), 12);
        let n = j.notices();
        assert_eq!(n.len(), 2);
        assert_eq!((n[0].seq, n[0].count, n[0].unix), (1, 2, 11));
        assert_eq!((n[1].seq, n[1].kind), (2, NoticeKind::Invalid));
        for i in 0..JOURNAL_CAPACITY as u64 + 5 {
            j.note_at(NoticeKind::Ban, format!("ban {i}"), 20 + i);
        }
        let n = j.notices();
        assert_eq!(n.len(), JOURNAL_CAPACITY);
        assert_eq!(n[0].message, "ban 5");
        assert_eq!(
            n.last().unwrap().message,
            format!("ban {}", JOURNAL_CAPACITY + 4)
        );
    }

    #[test]
    fn messages_are_escaped_and_cut() {
        assert_eq!(escaped("a\n\"b\"\u{1b}[31m"), "a\\n\\\"b\\\"\\u{1b}[31m");
        let long = escaped(&"x".repeat(1000));
        assert_eq!(long.chars().count(), NOTICE_MAX_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(
            escaped(&"y".repeat(NOTICE_MAX_CHARS)),
            "y".repeat(NOTICE_MAX_CHARS)
        );
    }

    #[test]
    fn upstreams_lost_and_regained_are_noted() {
        use UpstreamState::*;
        let j = Journal::default();
        let pool = Some("pool:3333".to_string());
        j.watch_upstreams(&[(1, Active, pool.clone()), (2, Connecting, None)]);
        j.watch_upstreams(&[(1, Error, pool.clone()), (2, Active, pool.clone())]);
        j.watch_upstreams(&[(1, Active, pool.clone()), (3, Active, pool.clone())]);
        // Upstream 3 went away while active: gone, not lost.
        j.watch_upstreams(&[(1, Connecting, pool.clone()), (2, Active, pool.clone())]);
        let m: Vec<String> = j.notices().into_iter().map(|n| n.message).collect();
        assert_eq!(
            m,
            [
                "upstream #1 (pool:3333) lost: now failing",
                "upstream #1 logged in again to pool:3333",
                "upstream #1 (pool:3333) lost: now connecting",
            ],
            "first logins are not news"
        );
    }
}
