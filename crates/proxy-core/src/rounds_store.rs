//! Solo rounds on disk (`stratum-v1.rounds-dir`): what a payout script reads, and what a
//! restart continues from.
//!
//! As bcoin-stratum dumps a round when its node takes a block
//! (`shared/spec/bcoin-stratum.md`, "Payouts": `shares/[height]-[hash].json`), each closed
//! round is written to `DIR/[height]-[hash].json` (the block's `GET /1/blocks` entry: height,
//! hash, times, reward, finder and its round's shares per user), and the round in progress
//! to `DIR/current.json`, at most every [`SAVE_EVERY`] while shares come in, at each block
//! and at shutdown. Every file is written whole to a temporary name, synced, then renamed
//! over the old one: a crash leaves the old file or the new one, never half of one, and loses
//! at most the shares of the last [`SAVE_EVERY`]. Block files are never deleted (payout
//! records; one a block found). At start the proxy reads `current.json` (its round goes on,
//! unless it is older than the newest block: then a crash came between that block's file
//! and its new round's, and the old round's shares are in the block's file already) and the
//! newest [`MAX_BLOCKS`] block files (listed by `GET /1/blocks` again); a file it cannot
//! read or parse is skipped with a warning.
//!
//! The files are written on tokio's blocking threads, one save at a time: what a save
//! writes is taken from the ledger once it holds the store's lock, so a later save never
//! writes an older round.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::lock;
use crate::rounds::{Round, Rounds, SoloBlock, Unsaved, MAX_BLOCKS};

/// How often the round in progress is written while shares come in: 10 s.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(10);

/// The round in progress, in the directory.
const CURRENT: &str = "current.json";

/// The file of a block: `[height]-[hash].json`.
fn block_file(b: &SoloBlock) -> String {
    format!("{}-{}.json", b.height, b.hash)
}

/// Whether `name` is a block's file: decimal height, `-`, 64 hex digits, `.json`.
fn is_block_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".json") else {
        return false;
    };
    let Some((height, hash)) = stem.split_once('-') else {
        return false;
    };
    !height.is_empty()
        && height.bytes().all(|c| c.is_ascii_digit())
        && hash.len() == 64
        && hash.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Writes `bytes` to `dir/name` whole: a temporary file, synced, renamed over `name`, and
/// the directory synced (so that the rename survives a power loss).
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes the blocks of `u` (each its own file) and then its round in progress.
///
/// # Errors
/// The first I/O error (the directory cannot be made, a file cannot be written or renamed).
pub(crate) fn save(dir: &Path, u: &Unsaved) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for b in &u.blocks {
        let json = serde_json::to_vec_pretty(b).map_err(std::io::Error::other)?;
        write_whole(dir, &block_file(b), &json)?;
    }
    let json = serde_json::to_vec_pretty(&u.current).map_err(std::io::Error::other)?;
    write_whole(dir, CURRENT, &json)
}

/// What [`load`] read back.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The round that was in progress, when `current.json` was there and readable.
    pub(crate) current: Option<Round>,
    /// The newest [`MAX_BLOCKS`] readable block files, newest first.
    pub(crate) blocks: Vec<SoloBlock>,
    /// Files skipped, each with why (path and error; printed escaped).
    pub(crate) skipped: Vec<String>,
}

/// Reads the directory back; a missing directory reads as empty.
///
/// # Errors
/// The directory exists but cannot be listed.
pub(crate) fn load(dir: &Path) -> std::io::Result<Loaded> {
    let mut out = Loaded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if is_block_file(name) {
            let height = name.split('-').next().and_then(|h| h.parse().ok());
            names.push((height.unwrap_or(u64::MAX), path));
        }
    }
    // Newest first; past the bound only by height, so that no more files than kept are read.
    names.sort_by_key(|n| std::cmp::Reverse(n.0));
    for (_, path) in names {
        if out.blocks.len() == MAX_BLOCKS {
            break;
        }
        match read_json::<SoloBlock>(&path) {
            Ok(b) => out.blocks.push(b),
            Err(why) => out.skipped.push(why),
        }
    }
    let current = dir.join(CURRENT);
    if current.exists() {
        match read_json::<Round>(&current) {
            Ok(r) => out.current = Some(r),
            Err(why) => out.skipped.push(why),
        }
    }
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The store of one process: its lock, held by the save under way, and whether the last
/// save failed.
#[derive(Debug, Default, Clone)]
pub(crate) struct RoundsStore {
    saving: Arc<Mutex<()>>,
    failing: Arc<AtomicBool>,
}

impl RoundsStore {
    /// Reads `dir` back into `rounds` (at start), warning of what it skips.
    pub(crate) fn restore(rounds: &Rounds, dir: &Path) {
        match load(dir) {
            Ok(l) => {
                for why in &l.skipped {
                    tracing::warn!("solo rounds: skipped {}", why.escape_debug());
                }
                tracing::info!(
                    dir = %dir.display(),
                    blocks = l.blocks.len(),
                    round = l.current.is_some(),
                    "solo rounds read back"
                );
                rounds.restore(l.current, l.blocks);
            }
            Err(e) => tracing::warn!(dir = %dir.display(), "solo rounds not read back: {e}"),
        }
    }

    /// Whether the last save failed (the tick then retries a block only at its regular
    /// [`SAVE_EVERY`], not every second).
    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Relaxed)
    }

    /// Writes what changed in `rounds` to `dir`, on a blocking thread, after any save under
    /// way; what it could not write is handed back to `rounds` for the next save.
    pub(crate) async fn save(&self, rounds: Arc<Rounds>, dir: PathBuf) {
        let saving = self.saving.clone();
        let failing = self.failing.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = lock(&saving);
            let Some(u) = rounds.take_unsaved() else {
                return;
            };
            match save(&dir, &u) {
                Ok(()) => failing.store(false, Relaxed),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "solo rounds not written: {e}");
                    rounds.unsaved_again(u.blocks);
                    failing.store(true, Relaxed);
                }
            }
        });
        let _ = job.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rounds::tests::found;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rounds-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn block_files_are_named_by_height_and_hash() {
        let hash = "ab".repeat(32);
        assert!(is_block_file(&format!("12-{hash}.json")));
        for name in [
            CURRENT.to_string(),
            format!("-{hash}.json"),
            format!("12-{}.json", &hash[2..]),
            format!("x2-{hash}.json"),
            format!("12-{hash}.json.tmp"),
            format!(".12-{hash}.json.tmp"),
        ] {
            assert!(!is_block_file(&name), "{name}");
        }
    }

    #[test]
    fn what_is_saved_is_read_back() {
        let dir = temp_dir("roundtrip");
        let r = Rounds::new(100);
        r.share("alice.rig1", 1.0, 2.0);
        r.block(&found(5), "alice.rig1", 110);
        r.share("bob.x", 0.5, 0.75);
        let u = r.take_unsaved().unwrap();
        save(&dir, &u).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [format!("5-{}.json", found(5).hash), CURRENT.into()]);
        let l = load(&dir).unwrap();
        assert!(l.skipped.is_empty(), "{:?}", l.skipped);
        let s = r.snapshot();
        assert_eq!(l.blocks, s.blocks);
        assert_eq!(l.current, Some(s.current));
        // A file a payout script reads: the block's API entry.
        let text = std::fs::read_to_string(dir.join(block_file(&s.blocks[0]))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["finder"], "alice");
        assert_eq!(v["round"]["users"][0]["user"], "alice");
        assert_eq!(v["round"]["users"][0]["shares"], 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_files_are_skipped_and_only_the_newest_blocks_read() {
        let dir = temp_dir("skip");
        let r = Rounds::new(0);
        for h in 1..=(MAX_BLOCKS as u64 + 3) {
            r.share("u.w", 1.0, 1.0);
            r.block(&found(h), "u.w", h);
        }
        save(&dir, &r.take_unsaved().unwrap()).unwrap();
        // Only the newest MAX_BLOCKS were held unsaved: the three oldest have no file.
        for h in 1..=3 {
            assert!(!dir.join(format!("{h}-{}.json", found(h).hash)).exists());
        }
        std::fs::write(
            dir.join(format!("999999-{}.json", "00".repeat(32))),
            b"{not json",
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
        let l = load(&dir).unwrap();
        assert_eq!(l.skipped.len(), 1, "{:?}", l.skipped);
        assert!(l.skipped[0].contains("999999-"), "{:?}", l.skipped);
        assert_eq!(l.blocks.len(), MAX_BLOCKS, "a skipped file takes no place");
        assert_eq!(l.blocks[0].height, MAX_BLOCKS as u64 + 3);
        assert!(l.blocks.windows(2).all(|w| w[0].height > w[1].height));
        std::fs::write(dir.join(CURRENT), b"[]").unwrap();
        let l = load(&dir).unwrap();
        assert_eq!(l.current, None);
        assert_eq!(l.skipped.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            load(&dir).unwrap().blocks.is_empty(),
            "no directory: nothing"
        );
    }

    #[tokio::test]
    async fn a_failed_save_is_written_by_the_next() {
        let dir = temp_dir("retry");
        // A file where the directory should be: the save fails.
        std::fs::write(&dir, b"").unwrap();
        let rounds = Arc::new(Rounds::new(0));
        rounds.share("u.w", 1.0, 1.0);
        rounds.block(&found(9), "u.w", 5);
        let store = RoundsStore::default();
        store.save(rounds.clone(), dir.clone()).await;
        assert!(store.failing());
        std::fs::remove_file(&dir).unwrap();
        store.save(rounds.clone(), dir.clone()).await;
        assert!(!store.failing());
        let l = load(&dir).unwrap();
        assert_eq!(l.blocks.len(), 1, "the block handed back was written");
        assert_eq!(l.current.unwrap().started, 5);
        assert_eq!(rounds.take_unsaved(), None, "nothing left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
