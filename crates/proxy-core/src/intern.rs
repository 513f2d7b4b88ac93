//! One shared copy of each login string that many miners send alike.
//!
//! In a farm thousands of miners log in with the same wallet, password and agent string
//! (an xmrig agent is about 60 bytes, a Monero wallet 95, a Bitcoin address 42–62 as the
//! account part of `address.worker`); each miner keeps an 8-byte reference to the shared
//! copy instead of its own. Strings no miner holds any more are
//! forgotten by [`Interner::purge_step`], which the proxy's tick calls every second: each
//! call walks one of [`SHARDS`] shards, so no call holds a lock over every string (a login
//! waits at most for one shard's purge), and every shard is purged every 16 s.

use std::collections::HashSet;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use arcstr::ArcStr;
use stratum_session::WorkerName;

use crate::lock;

/// Number of independently locked parts of the set.
pub(crate) const SHARDS: usize = 16;

/// A set of shared strings.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    shards: [Mutex<HashSet<ArcStr, RandomState>>; SHARDS],
    /// Picks a string's shard (foldhash with a random seed per table, as the sets: SipHash
    /// was a tenth of a login's instructions). foldhash claims no HashDoS resistance
    /// against an attacker who sees the hashes; a miner sees neither a hash nor a table's
    /// order, and the sets hold at most one entry per connected miner.
    hasher: RandomState,
    /// The shard the next [`Interner::purge_step`] walks.
    cursor: AtomicUsize,
}

impl Interner {
    fn shard(&self, s: &str) -> &Mutex<HashSet<ArcStr, RandomState>> {
        // The remainder is below SHARDS: the cast cannot truncate.
        let i = (self.hasher.hash_one(s) % SHARDS as u64) as usize;
        &self.shards[i]
    }

    /// The shared copy of `s` (made on first use).
    pub(crate) fn get(&self, s: &str) -> ArcStr {
        let mut set = lock(self.shard(s));
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        let a = ArcStr::from(s);
        set.insert(a.clone());
        a
    }

    /// `name` split at its first dot ([`WorkerName`]), the account part the shared copy
    /// (a farm's miners log in with one address or wallet and a worker name each).
    pub(crate) fn name(&self, name: &str) -> WorkerName {
        WorkerName::with_account(name, |account| self.get(account))
    }

    /// Forgets the strings of the next shard that only the set itself still holds.
    pub(crate) fn purge_step(&self) {
        let i = self.cursor.fetch_add(1, Relaxed) % SHARDS;
        lock(&self.shards[i]).retain(|a| ArcStr::strong_count(a).is_none_or(|n| n > 1));
    }

    /// Number of strings held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge_all(i: &Interner) {
        for _ in 0..SHARDS {
            i.purge_step();
        }
    }

    #[test]
    fn equal_strings_share_one_copy_until_unused() {
        let i = Interner::default();
        let a = i.get("wallet");
        let b = i.get("wallet");
        assert!(ArcStr::ptr_eq(&a, &b));
        let c = i.get("other");
        assert_eq!(&*c, "other");
        assert_eq!(i.len(), 2);
        drop(c);
        purge_all(&i);
        assert_eq!(i.len(), 1, "unused string forgotten");
        drop((a, b));
        purge_all(&i);
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn a_name_shares_its_account_part_only() {
        let i = Interner::default();
        let a = i.name("bc1qaddr.rig-1");
        let b = i.name("bc1qaddr.rig-2");
        let c = i.name("bc1qaddr");
        assert!(a.shares_account(&b) && a.shares_account(&c));
        assert_eq!(
            (a.to_string(), c.to_string()),
            ("bc1qaddr.rig-1".into(), "bc1qaddr".into())
        );
        assert_eq!(i.len(), 1, "the worker parts are not interned");
        drop((a, b));
        purge_all(&i);
        assert_eq!(i.len(), 1, "held by c");
        drop(c);
        purge_all(&i);
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn a_purge_step_walks_one_shard() {
        let i = Interner::default();
        // Enough strings that several shards hold some.
        let held: Vec<ArcStr> = (0..200).map(|n| i.get(&format!("w{n}"))).collect();
        let before: Vec<usize> = i.shards.iter().map(|s| lock(s).len()).collect();
        assert!(before.iter().filter(|&&n| n > 0).count() > 1);
        drop(held);
        i.purge_step();
        let after: Vec<usize> = i.shards.iter().map(|s| lock(s).len()).collect();
        assert_eq!(after[0], 0, "the first step purges shard 0");
        assert_eq!(after[1..], before[1..], "and touches no other shard");
        purge_all(&i);
        assert_eq!(i.len(), 0, "every shard is purged within {SHARDS} steps");
    }
}
