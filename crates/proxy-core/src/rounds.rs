//! Solo mining's share rounds, as bcoin-stratum keeps them (`shared/spec/bcoin-stratum.md`,
//! "Payouts"): the shares of the current round per user, and when a block is found the
//! round is closed under that block (its height, hash, time and finder) and a new one starts.
//!
//! bcoin-stratum sums, per username, the difficulty each accepted share's hash met, with the
//! round's total and its number of users, and writes them to `shares/[height]-[hash].json`
//! when the node takes a block; then it clears the round. Here the same round is kept in
//! memory and served by the API (`GET /1/blocks`), with these choices:
//! - a user is the authorized worker name's part before the first `.` (`addr.rig1` →
//!   `addr`), the payout key of solo pools; bcoin-stratum keys by the whole name;
//! - per user: the share count, the sum of the difficulties the shares were accepted at
//!   (the work credited, what a payout divides by) and, as bcoin-stratum's figure, the sum of
//!   the difficulties their hashes met (dominated by lucky shares; the block's own share
//!   counts, as there);
//! - bounded: [`MAX_ROUND_USERS`] users a round (the shares of more go to one `others`
//!   tally), and the last [`MAX_BLOCKS`] blocks.
//!
//! Only shares on a solo upstream (a Bitcoin node) are counted: behind a pool, the pool keeps
//! the rounds. Pure bookkeeping: time is passed in (Unix seconds), nothing is read. With
//! `stratum-v1.rounds-dir` set, `rounds_store.rs` writes each closed round under its block
//! (`[height]-[hash].json`, as bcoin-stratum) and the round in progress, and reads them back
//! at start: what [`Rounds::take_unsaved`] and [`Rounds::restore`] are for.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::{lock, Monitor};

/// Blocks kept (the oldest is dropped past it).
pub const MAX_BLOCKS: usize = 100;

/// Users tallied apart in one round; the shares of more users go to [`Round::others`].
pub const MAX_ROUND_USERS: usize = 1024;

/// The user part of an authorized worker name: before the first `.`.
pub fn user_of(worker: &str) -> &str {
    stratum_session::sv1::split_worker(worker).0
}

/// One user's shares in a round.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoundTally {
    /// Shares accepted.
    pub shares: u64,
    /// Sum of the difficulties they were accepted at (SV1 difficulty units, 1 = 2^32
    /// hashes).
    pub difficulty: f64,
    /// Sum of the difficulties their hashes met (bcoin-stratum's figure).
    pub hash_difficulty: f64,
}

impl RoundTally {
    fn add(&mut self, difficulty: f64, hash_difficulty: f64) {
        self.shares += 1;
        self.difficulty += difficulty;
        self.hash_difficulty += hash_difficulty;
    }
}

/// A user's line of a round.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserShares {
    /// The user (the worker name's part before the first `.`).
    pub user: String,
    /// Their shares.
    #[serde(flatten)]
    pub tally: RoundTally,
}

/// A round: the shares between two blocks found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Round {
    /// When it started (Unix seconds): the previous block found, or the proxy's start.
    pub started: u64,
    /// Every share of the round.
    #[serde(flatten)]
    pub total: RoundTally,
    /// Per user, most difficulty first (at most [`MAX_ROUND_USERS`]).
    pub users: Vec<UserShares>,
    /// The shares of users past [`MAX_ROUND_USERS`].
    pub others: RoundTally,
}

/// A block a node accepted, with the round it closed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SoloBlock {
    /// Its height.
    pub height: u64,
    /// Its hash (hex, as block explorers show it).
    pub hash: String,
    /// The header's time (Unix seconds).
    pub ntime: u32,
    /// When the node accepted it (Unix seconds).
    pub time: u64,
    /// The coinbase's value, in satoshis.
    pub reward: u64,
    /// The user whose share it was.
    pub finder: String,
    /// The round it closed (it counts the block's own share).
    pub round: Round,
}

/// What `GET /1/blocks` shows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct BlocksSnapshot {
    /// Blocks found since the start (also those no longer kept).
    pub found: u64,
    /// The round in progress.
    pub current: Round,
    /// The last [`MAX_BLOCKS`] blocks, newest first.
    pub blocks: Vec<SoloBlock>,
}

/// The round in progress.
#[derive(Debug, Default)]
struct OpenRound {
    started: u64,
    total: RoundTally,
    users: HashMap<Box<str>, RoundTally>,
    others: RoundTally,
}

impl OpenRound {
    /// An empty round that starts at `now` (Unix seconds).
    fn starting(now: u64) -> Self {
        Self {
            started: now,
            ..Self::default()
        }
    }

    /// The round `saved` (read back from its file) continued: its start, tallies and users
    /// (at most [`MAX_ROUND_USERS`]; the shares of more go to `others`).
    fn resumed(saved: Round) -> Self {
        let mut round = Self {
            started: saved.started,
            total: saved.total,
            users: HashMap::with_capacity(saved.users.len().min(MAX_ROUND_USERS)),
            others: saved.others,
        };
        for u in saved.users {
            if round.users.len() < MAX_ROUND_USERS {
                let t = round.users.entry(u.user.into_boxed_str()).or_default();
                t.shares += u.tally.shares;
                t.difficulty += u.tally.difficulty;
                t.hash_difficulty += u.tally.hash_difficulty;
            } else {
                round.others.shares += u.tally.shares;
                round.others.difficulty += u.tally.difficulty;
                round.others.hash_difficulty += u.tally.hash_difficulty;
            }
        }
        round
    }

    fn snapshot(&self) -> Round {
        let mut users: Vec<UserShares> = self
            .users
            .iter()
            .map(|(u, t)| UserShares {
                user: u.to_string(),
                tally: *t,
            })
            .collect();
        users.sort_by(|a, b| {
            b.tally
                .difficulty
                .total_cmp(&a.tally.difficulty)
                .then_with(|| a.user.cmp(&b.user))
        });
        Round {
            started: self.started,
            total: self.total,
            users,
            others: self.others,
        }
    }
}

#[derive(Debug, Default)]
struct Ledger {
    round: OpenRound,
    blocks: VecDeque<SoloBlock>,
    found: u64,
    /// The round changed since [`Rounds::take_unsaved`] last took it.
    dirty: bool,
    /// Blocks found and not taken by [`Rounds::take_unsaved`] yet, oldest first (at most
    /// [`MAX_BLOCKS`]: the oldest is dropped past it).
    unsaved: Vec<SoloBlock>,
}

/// What [`Rounds::take_unsaved`] hands to the store: the blocks found since the last take
/// (oldest first) and the round in progress.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unsaved {
    /// Blocks to write, each with the round it closed.
    pub(crate) blocks: Vec<SoloBlock>,
    /// The round in progress.
    pub(crate) current: Round,
}

/// The rounds of one proxy, behind one short lock (taken once per share on a solo
/// upstream only).
#[derive(Debug, Default)]
pub(crate) struct Rounds {
    ledger: Mutex<Ledger>,
}

impl Rounds {
    /// A ledger whose first round starts at `now` (Unix seconds).
    pub(crate) fn new(now: u64) -> Self {
        Self {
            ledger: Mutex::new(Ledger {
                round: OpenRound::starting(now),
                ..Ledger::default()
            }),
        }
    }

    /// A share of `worker` accepted at `difficulty`, its hash meeting `hash_difficulty`.
    pub(crate) fn share(&self, worker: &str, difficulty: f64, hash_difficulty: f64) {
        let user = user_of(worker);
        let mut l = lock(&self.ledger);
        l.dirty = true;
        let round = &mut l.round;
        round.total.add(difficulty, hash_difficulty);
        if let Some(t) = round.users.get_mut(user) {
            t.add(difficulty, hash_difficulty);
        } else if round.users.len() < MAX_ROUND_USERS {
            round
                .users
                .entry(user.into())
                .or_default()
                .add(difficulty, hash_difficulty);
        } else {
            round.others.add(difficulty, hash_difficulty);
        }
    }

    /// A node accepted `block`, found by `worker`, at `now` (Unix seconds): the round closes
    /// under it and a new one starts.
    pub(crate) fn block(&self, block: &pool_client::sv1::FoundBlock, worker: &str, now: u64) {
        let mut l = lock(&self.ledger);
        let round = std::mem::replace(&mut l.round, OpenRound::starting(now));
        if l.blocks.len() == MAX_BLOCKS {
            l.blocks.pop_back();
        }
        let block = SoloBlock {
            height: block.height,
            hash: block.hash.to_string(),
            ntime: block.ntime,
            time: now,
            reward: block.reward,
            finder: user_of(worker).to_owned(),
            round: round.snapshot(),
        };
        if l.unsaved.len() == MAX_BLOCKS {
            l.unsaved.remove(0);
        }
        l.unsaved.push(block.clone());
        l.blocks.push_front(block);
        l.found += 1;
        l.dirty = true;
    }

    /// Continues from what a store read back at start: `current`, the round that was in
    /// progress, and `blocks`, the blocks found before (any order; the newest
    /// [`MAX_BLOCKS`] by height are kept, before any found since). A `current` that
    /// started before the newest block's time is dropped: that block's file was written
    /// and its new round's was not (a crash between the two), so its shares are already
    /// in the block's round. `found` still counts only the blocks found since the start.
    pub(crate) fn restore(&self, current: Option<Round>, mut blocks: Vec<SoloBlock>) {
        blocks.sort_by_key(|b| std::cmp::Reverse((b.height, b.time)));
        let newest = blocks.iter().map(|b| b.time).max();
        let current = current.filter(|c| newest.is_none_or(|t| c.started >= t));
        let mut l = lock(&self.ledger);
        if let Some(saved) = current {
            l.round = OpenRound::resumed(saved);
        }
        for b in blocks {
            if l.blocks.len() == MAX_BLOCKS {
                break;
            }
            l.blocks.push_back(b);
        }
    }

    /// Whether blocks found wait for [`Rounds::take_unsaved`].
    pub(crate) fn has_unsaved_blocks(&self) -> bool {
        !lock(&self.ledger).unsaved.is_empty()
    }

    /// What changed since the last call: the blocks found (oldest first) and the round in
    /// progress; `None` when nothing did. Taking it marks it saved: a store that fails
    /// hands it back with [`Rounds::unsaved_again`].
    pub(crate) fn take_unsaved(&self) -> Option<Unsaved> {
        let mut l = lock(&self.ledger);
        if !l.dirty {
            return None;
        }
        l.dirty = false;
        Some(Unsaved {
            blocks: std::mem::take(&mut l.unsaved),
            current: l.round.snapshot(),
        })
    }

    /// `blocks` (taken by [`Rounds::take_unsaved`]) were not written: they are taken again
    /// next time, before any found since, and the round in progress is written again.
    pub(crate) fn unsaved_again(&self, mut blocks: Vec<SoloBlock>) {
        let mut l = lock(&self.ledger);
        blocks.append(&mut l.unsaved);
        let past = blocks.len().saturating_sub(MAX_BLOCKS);
        blocks.drain(..past);
        l.unsaved = blocks;
        l.dirty = true;
    }

    pub(crate) fn snapshot(&self) -> BlocksSnapshot {
        let l = lock(&self.ledger);
        BlocksSnapshot {
            found: l.found,
            current: l.round.snapshot(),
            blocks: l.blocks.iter().cloned().collect(),
        }
    }
}

impl Monitor {
    /// Solo mining's rounds (`GET /1/blocks`): the current round's shares per user and the
    /// last [`MAX_BLOCKS`] blocks the node accepted, each with the round it closed. Empty
    /// behind a pool.
    pub fn solo_blocks(&self) -> BlocksSnapshot {
        self.driver().events().rounds.snapshot()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    /// A block found at `height` (its hash `height` repeated), for the rounds' tests.
    pub(crate) fn found(height: u64) -> pool_client::sv1::FoundBlock {
        pool_client::sv1::FoundBlock {
            height,
            hash: bitcoin::BlockHash::from_byte_array([height as u8; 32]),
            ntime: 1_700_000_000,
            reward: 5_000_000_000,
        }
    }

    #[test]
    fn a_user_is_the_worker_names_part_before_the_first_dot() {
        assert_eq!(user_of("bc1qaddr.rig1"), "bc1qaddr");
        assert_eq!(user_of("bc1qaddr.rig.1"), "bc1qaddr");
        assert_eq!(user_of("bc1qaddr"), "bc1qaddr");
        assert_eq!(user_of(".rig"), "");
    }

    #[test]
    fn shares_are_tallied_per_user_and_a_block_closes_the_round() {
        let r = Rounds::new(100);
        r.share("alice.rig1", 2.0, 3.0);
        r.share("alice.rig2", 2.0, 5.0);
        r.share("bob", 1.0, 1.5);
        let s = r.snapshot();
        assert_eq!(s.found, 0);
        assert!(s.blocks.is_empty());
        assert_eq!(s.current.started, 100);
        assert_eq!(s.current.total.shares, 3);
        assert_eq!(s.current.total.difficulty, 5.0);
        assert_eq!(s.current.total.hash_difficulty, 9.5);
        assert_eq!(s.current.users.len(), 2);
        assert_eq!(s.current.users[0].user, "alice", "most difficulty first");
        assert_eq!(
            s.current.users[0].tally,
            RoundTally {
                shares: 2,
                difficulty: 4.0,
                hash_difficulty: 8.0
            }
        );
        assert_eq!(s.current.users[1].user, "bob");
        assert_eq!(s.current.users[1].tally.shares, 1);

        r.block(&found(7), "bob.x", 160);
        r.share("carol.a", 1.0, 1.0);
        let s = r.snapshot();
        assert_eq!(s.found, 1);
        let b = &s.blocks[0];
        assert_eq!((b.height, b.time, b.ntime), (7, 160, 1_700_000_000));
        assert_eq!(b.finder, "bob");
        assert_eq!(b.reward, 5_000_000_000);
        assert_eq!(b.hash, found(7).hash.to_string());
        assert_eq!(b.round.started, 100);
        assert_eq!(b.round.total.shares, 3, "the closed round keeps its shares");
        assert_eq!(s.current.started, 160, "a new round from the block on");
        assert_eq!(s.current.total.shares, 1);
        assert_eq!(s.current.users[0].user, "carol");
    }

    #[test]
    fn blocks_are_kept_newest_first_up_to_the_bound() {
        let r = Rounds::new(0);
        for h in 1..=(MAX_BLOCKS as u64 + 5) {
            r.share("u.w", 1.0, 1.0);
            r.block(&found(h), "u.w", h);
        }
        let s = r.snapshot();
        assert_eq!(s.found, MAX_BLOCKS as u64 + 5);
        assert_eq!(s.blocks.len(), MAX_BLOCKS);
        assert_eq!(s.blocks[0].height, MAX_BLOCKS as u64 + 5);
        assert_eq!(s.blocks[MAX_BLOCKS - 1].height, 6, "the oldest dropped");
        assert!(s.blocks.iter().all(|b| b.round.total.shares == 1));
    }

    #[test]
    fn what_changed_is_taken_once_and_can_be_handed_back() {
        let r = Rounds::new(10);
        assert_eq!(r.take_unsaved(), None, "nothing happened");
        r.share("alice.rig1", 1.0, 2.0);
        let u = r.take_unsaved().unwrap();
        assert!(u.blocks.is_empty());
        assert_eq!(u.current.total.shares, 1);
        assert_eq!(r.take_unsaved(), None, "taken");
        r.block(&found(5), "alice.rig1", 20);
        r.block(&found(6), "bob", 30);
        let u = r.take_unsaved().unwrap();
        let heights: Vec<u64> = u.blocks.iter().map(|b| b.height).collect();
        assert_eq!(heights, [5, 6], "oldest first");
        assert_eq!((u.current.started, u.current.total.shares), (30, 0));
        // A failed write: handed back, taken again before a block found since.
        r.unsaved_again(u.blocks);
        r.block(&found(7), "bob", 40);
        let heights: Vec<u64> = r
            .take_unsaved()
            .unwrap()
            .blocks
            .iter()
            .map(|b| b.height)
            .collect();
        assert_eq!(heights, [5, 6, 7]);
        assert_eq!(r.snapshot().found, 3);
    }

    #[test]
    fn a_restored_ledger_continues_the_saved_round_and_lists_the_saved_blocks() {
        let before = Rounds::new(100);
        for h in 1..=(MAX_BLOCKS as u64 + 2) {
            before.share("alice.rig1", 1.0, 1.0);
            before.block(&found(h), "alice.rig1", 100 + h);
        }
        before.share("alice.rig1", 2.0, 3.0);
        before.share("bob.x", 1.0, 1.0);
        let saved = before.snapshot();
        // What a store hands back: the round in progress and the blocks in file order.
        let mut files = saved.blocks.clone();
        files.reverse();
        let mut older = files[0].clone();
        older.height = 0;
        files.push(older); // older than every block kept: past the bound
        let after = Rounds::new(500);
        after.restore(Some(saved.current.clone()), files);
        let s = after.snapshot();
        assert_eq!(s.current, saved.current, "the round goes on where it was");
        assert_eq!(s.blocks, saved.blocks, "newest first, up to the bound");
        assert_eq!(s.found, 0, "found counts this run's blocks");
        after.share("bob.y", 1.0, 1.0);
        let s = after.snapshot();
        let bob = s.current.users.iter().find(|u| u.user == "bob").unwrap();
        assert_eq!(bob.tally.shares, 2, "a restored user's tally grows");
        after.block(&found(200), "bob.y", 600);
        let s = after.snapshot();
        assert_eq!(
            (s.blocks[0].height, s.blocks[1].height),
            (200, MAX_BLOCKS as u64 + 2)
        );
        assert_eq!(
            s.blocks[0].round.total.shares, 3,
            "the two restored shares and one since"
        );
        assert_eq!(s.blocks.len(), MAX_BLOCKS);
    }

    #[test]
    fn a_saved_round_older_than_the_newest_block_is_not_counted_again() {
        let before = Rounds::new(100);
        before.share("alice.rig1", 1.0, 1.0);
        let stale = before.snapshot().current;
        before.block(&found(5), "alice.rig1", 150);
        let blocks = before.snapshot().blocks;
        // The block's file written, the new round's not: the old round is on disk.
        let after = Rounds::new(500);
        after.restore(Some(stale), blocks);
        let s = after.snapshot();
        assert_eq!(
            s.current.total.shares, 0,
            "alice's share is in block 5's round only"
        );
        assert_eq!(s.current.started, 500);
        assert_eq!(s.blocks[0].round.total.shares, 1);
    }

    #[test]
    fn a_saved_round_past_the_user_bound_is_summed_in_others() {
        let saved = Round {
            started: 1,
            total: RoundTally {
                shares: MAX_ROUND_USERS as u64 + 2,
                difficulty: 0.0,
                hash_difficulty: 0.0,
            },
            users: (0..MAX_ROUND_USERS + 2)
                .map(|i| UserShares {
                    user: format!("u{i}"),
                    tally: RoundTally {
                        shares: 1,
                        difficulty: 1.0,
                        hash_difficulty: 1.0,
                    },
                })
                .collect(),
            others: RoundTally::default(),
        };
        let r = Rounds::new(0);
        r.restore(Some(saved), Vec::new());
        let s = r.snapshot();
        assert_eq!(s.current.users.len(), MAX_ROUND_USERS);
        assert_eq!(s.current.others.shares, 2);
    }

    #[test]
    fn users_past_the_bound_share_one_others_tally() {
        let r = Rounds::new(0);
        for i in 0..MAX_ROUND_USERS + 3 {
            r.share(&format!("user{i}.w"), 1.0, 1.0);
        }
        r.share("user0.w", 1.0, 1.0);
        let s = r.snapshot();
        assert_eq!(s.current.users.len(), MAX_ROUND_USERS);
        assert_eq!(s.current.others.shares, 3);
        assert_eq!(s.current.total.shares, MAX_ROUND_USERS as u64 + 4);
        let u0 = s.current.users.iter().find(|u| u.user == "user0").unwrap();
        assert_eq!(u0.tally.shares, 2, "a known user still counts apart");
    }
}
