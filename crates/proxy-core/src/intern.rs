//! One shared copy of each login string that many miners send alike.
//!
//! In a farm thousands of miners log in with the same wallet, password and agent string
//! (an xmrig agent is about 60 bytes, a Monero wallet 95); each miner keeps a 16-byte
//! reference to the shared copy instead of its own. Strings no miner holds any more are
//! forgotten by [`Interner::purge`], which the proxy's tick calls once a minute.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::lock;

/// A set of shared strings.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    set: Mutex<HashSet<Arc<str>>>,
}

impl Interner {
    /// The shared copy of `s` (made on first use).
    pub(crate) fn get(&self, s: &str) -> Arc<str> {
        let mut set = lock(&self.set);
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        set.insert(a.clone());
        a
    }

    /// Forgets the strings that only the set itself still holds.
    pub(crate) fn purge(&self) {
        lock(&self.set).retain(|a| Arc::strong_count(a) > 1);
    }

    /// Number of strings held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.set).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy_until_unused() {
        let i = Interner::default();
        let a = i.get("wallet");
        let b = i.get("wallet");
        assert!(Arc::ptr_eq(&a, &b));
        let c = i.get("other");
        assert_eq!(&*c, "other");
        assert_eq!(i.len(), 2);
        drop(c);
        i.purge();
        assert_eq!(i.len(), 1, "unused string forgotten");
        drop((a, b));
        i.purge();
        assert_eq!(i.len(), 0);
    }
}
