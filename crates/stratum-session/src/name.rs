//! A miner's login or worker name, kept as its account part and its own worker part.
//!
//! A farm's machines log in as `account.worker` (Stratum V1: a Bitcoin address or a pool
//! account, a dot, the rig's name, e.g. the 52-byte `bc1q….rig-00001`; CryptoNote: a
//! wallet, sometimes with a `.rig` tail). The account part is the same for thousands of
//! miners; only the worker part is the miner's own. [`WorkerName`] keeps the two apart so
//! that the driver can share one copy of the account between its miners
//! ([`WorkerName::with_account`]) while every miner keeps one small block for its worker
//! part: for `bc1q….rig-00001` a 25-byte block (16 bytes of counters and length, 9 of
//! text) instead of a 68-byte one for the whole name.
//!
//! Equality, ordering and hashing are those of the whole text: a name kept whole
//! ([`WorkerName::whole`], e.g. a rig id `a.b`) equals the same text split at its dot.

use std::fmt;
use std::hash::{Hash, Hasher};

use arcstr::ArcStr;

use crate::sv1::split_worker;

/// A login or worker name as `account[.worker]`, 16 bytes: two one-word shared strings.
///
/// Either split at its first dot (the account part has no dot; the worker part is the
/// text after the dot, possibly empty, possibly with more dots) or kept whole in the
/// account part with no worker part (a name without a dot, or one taken whole from a
/// string already shared, [`WorkerName::whole`]).
#[derive(Clone)]
pub struct WorkerName {
    account: ArcStr,
    /// The text after the first dot, when the name was split there.
    worker: Option<ArcStr>,
}

impl WorkerName {
    /// `name` split at its first dot, the account part made by `account` (e.g. the
    /// driver's shared copy of the same text) and the worker part a block of its own.
    pub fn with_account(name: &str, account: impl FnOnce(&str) -> ArcStr) -> Self {
        let (a, w) = split_worker(name);
        Self {
            account: account(a),
            worker: w.map(ArcStr::from),
        }
    }

    /// `name` kept whole, sharing its block (no copy): e.g. a rig id or a password a
    /// login already holds.
    pub fn whole(name: ArcStr) -> Self {
        Self {
            account: name,
            worker: None,
        }
    }

    /// The part before the first dot (the whole name when it has none): a Bitcoin address
    /// or a pool account, a wallet.
    pub fn account(&self) -> &str {
        self.parts().0
    }

    /// The part after the first dot, `None` for a name without a dot.
    pub fn worker(&self) -> Option<&str> {
        self.parts().1
    }

    /// The name as (account, worker part), split at the first dot whichever way it is
    /// kept.
    fn parts(&self) -> (&str, Option<&str>) {
        match &self.worker {
            Some(w) => (&self.account, Some(w)),
            None => split_worker(&self.account),
        }
    }

    /// Length of the whole name in bytes (with the dot).
    pub fn len(&self) -> usize {
        self.account.len() + self.worker.as_ref().map_or(0, |w| 1 + w.len())
    }

    /// Whether the name is the empty string.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap this name's blocks hold as asked of the allocator, each counted whole
    /// (a shared account part too): 16 bytes of length and count plus the text, per block
    /// (0 for a static one, as the empty name's).
    pub fn heap_bytes(&self) -> usize {
        let block = |s: &ArcStr| {
            if ArcStr::is_static(s) {
                0
            } else {
                16 + s.len()
            }
        };
        block(&self.account) + self.worker.as_ref().map_or(0, block)
    }

    /// Whether both names keep their account part in the same block (a shared copy).
    pub fn shares_account(&self, other: &Self) -> bool {
        ArcStr::ptr_eq(&self.account, &other.account)
    }
}

impl From<&str> for WorkerName {
    /// `name` split at its first dot, both parts copies of their own.
    fn from(name: &str) -> Self {
        Self::with_account(name, |a| ArcStr::from(a))
    }
}

impl PartialEq for WorkerName {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for WorkerName {}

impl PartialEq<str> for WorkerName {
    fn eq(&self, other: &str) -> bool {
        let (a, w) = self.parts();
        match w {
            None => a == other,
            Some(w) => {
                other.len() == a.len() + 1 + w.len()
                    && other.starts_with(a)
                    && other.as_bytes()[a.len()] == b'.'
                    && other.ends_with(w)
            }
        }
    }
}

impl PartialEq<&str> for WorkerName {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialOrd for WorkerName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WorkerName {
    /// The whole texts' byte order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn bytes(n: &WorkerName) -> impl Iterator<Item = u8> + '_ {
            let (a, w) = n.parts();
            let dot: &[u8] = if w.is_some() { b"." } else { b"" };
            a.bytes()
                .chain(dot.iter().copied())
                .chain(w.unwrap_or("").bytes())
        }
        bytes(self).cmp(bytes(other))
    }
}

impl Hash for WorkerName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl fmt::Display for WorkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.account)?;
        if let Some(w) = &self.worker {
            f.write_str(".")?;
            f.write_str(w)?;
        }
        Ok(())
    }
}

impl fmt::Debug for WorkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl Default for WorkerName {
    /// The empty name (no heap block).
    fn default() -> Self {
        Self::whole(ArcStr::new())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeSet, HashSet};

    use proptest::prelude::*;

    use super::*;

    fn hash(n: &WorkerName) -> u64 {
        let mut h = DefaultHasher::new();
        n.hash(&mut h);
        h.finish()
    }

    #[test]
    fn a_name_is_split_at_its_first_dot() {
        let n = WorkerName::from("bc1qaddr.rig.7");
        assert_eq!((n.account(), n.worker()), ("bc1qaddr", Some("rig.7")));
        assert_eq!(n.to_string(), "bc1qaddr.rig.7");
        assert_eq!(n.len(), 14);
        let n = WorkerName::from("alice");
        assert_eq!((n.account(), n.worker()), ("alice", None));
        let n = WorkerName::from("alice.");
        assert_eq!((n.account(), n.worker()), ("alice", Some("")));
        assert_eq!(n.to_string(), "alice.");
        assert_ne!(n, WorkerName::from("alice"), "a trailing dot is kept");
        assert!(WorkerName::default().is_empty());
        assert_eq!(WorkerName::default().heap_bytes(), 0);
    }

    #[test]
    fn the_account_part_comes_from_the_given_copy() {
        let shared = ArcStr::from("bc1qaddr");
        let a = WorkerName::with_account("bc1qaddr.rig-1", |_| shared.clone());
        let b = WorkerName::with_account("bc1qaddr.rig-2", |_| shared.clone());
        assert!(a.shares_account(&b));
        assert!(!a.shares_account(&WorkerName::from("bc1qaddr.rig-1")));
        assert_eq!(a.heap_bytes(), (16 + 8) + (16 + 5));
        assert_eq!(a, "bc1qaddr.rig-1");
    }

    #[test]
    fn a_name_kept_whole_equals_the_same_text_split() {
        let whole = WorkerName::whole(ArcStr::from("a.b.c"));
        let split = WorkerName::from("a.b.c");
        assert_eq!(whole, split);
        assert_eq!(hash(&whole), hash(&split));
        assert_eq!(whole.cmp(&split), std::cmp::Ordering::Equal);
        assert_eq!((whole.account(), whole.worker()), ("a", Some("b.c")));
        assert_eq!(whole.to_string(), "a.b.c");
        let set: HashSet<WorkerName> = [whole, split].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn comparing_with_text() {
        let n = WorkerName::from("addr.rig");
        assert!(n == "addr.rig");
        for other in [
            "addr",
            "addr.",
            "addr.ri",
            "addr.rigs",
            "addrxrig",
            "xddr.rig",
            "",
        ] {
            assert!(n != other, "{other}");
        }
        let trailing = WorkerName::from("addr.");
        assert!(trailing == "addr.");
        assert!(trailing != "addr");
    }

    proptest! {
        #[test]
        fn equality_order_and_hash_are_the_whole_texts(
            a in "[a.é]{0,6}",
            b in "[a.é]{0,6}",
            whole_a: bool,
            whole_b: bool,
        ) {
            let make = |s: &str, whole: bool| {
                if whole { WorkerName::whole(ArcStr::from(s)) } else { WorkerName::from(s) }
            };
            let (na, nb) = (make(&a, whole_a), make(&b, whole_b));
            prop_assert_eq!(na.to_string(), a.clone());
            prop_assert_eq!(na.len(), a.len());
            prop_assert_eq!(na == nb, a == b);
            prop_assert_eq!(na == *b.as_str(), a == b);
            prop_assert_eq!(na.cmp(&nb), a.cmp(&b));
            if a == b {
                prop_assert_eq!(hash(&na), hash(&nb));
            }
            let sorted: Vec<String> = [na, nb].into_iter().collect::<BTreeSet<_>>()
                .iter().map(ToString::to_string).collect();
            let want: Vec<String> = [a, b].into_iter().collect::<BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(sorted, want);
        }
    }
}
