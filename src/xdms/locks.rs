//! Per-document serialization of read-modify-write cycles (OP-39): a fixed set of async mutexes
//! picked by hashing the document key, so writers to one document queue up while writers to
//! different documents rarely contend. The storage compare-and-swap stays the final guard.
//! Documents whose writes lately lost a compare-and-swap to another process sharing the
//! store (nodes on one database, issue #15) are remembered for a while: their writers then
//! take the store's lock across processes first instead of trying optimistically.

use crate::storage::DocKey;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

/// How long a document stays contended after a lost compare-and-swap.
const CONTENDED_FOR: Duration = Duration::from_secs(2);
/// Contended documents remembered at most.
const MAX_CONTENDED: usize = 4096;

pub struct DocLocks {
    stripes: Vec<Mutex<()>>,
    /// Contended documents and until when.
    contended: parking_lot::Mutex<HashMap<DocKey, Instant>>,
}

impl DocLocks {
    pub fn new(stripes: usize) -> DocLocks {
        DocLocks {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            contended: parking_lot::Mutex::default(),
        }
    }

    /// A write of `key` lost to another process's: its writers take turns across processes
    /// for a while.
    pub fn mark_contended(&self, key: &DocKey) {
        let now = Instant::now();
        let mut contended = self.contended.lock();
        if contended.len() >= MAX_CONTENDED {
            contended.retain(|_, until| *until > now);
            if contended.len() >= MAX_CONTENDED {
                contended.clear();
            }
        }
        contended.insert(key.clone(), now + CONTENDED_FOR);
    }

    pub fn is_contended(&self, key: &DocKey) -> bool {
        let contended = self.contended.lock();
        contended
            .get(key)
            .is_some_and(|until| *until > Instant::now())
    }

    pub async fn lock(&self, key: &DocKey) -> MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let idx = (h.finish() % self.stripes.len() as u64) as usize;
        self.stripes[idx].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TreeKey;

    #[test]
    fn contended_for_a_while_and_bounded() {
        let locks = DocLocks::new(4);
        let key = |i: usize| DocKey::new("a", TreeKey::User(format!("sip:u{i}@x")), "index");
        assert!(!locks.is_contended(&key(0)));
        locks.mark_contended(&key(0));
        assert!(locks.is_contended(&key(0)));
        assert!(!locks.is_contended(&key(1)));
        for i in 0..MAX_CONTENDED + 10 {
            locks.mark_contended(&key(i));
        }
        assert!(locks.contended.lock().len() <= MAX_CONTENDED);
        assert!(
            locks.is_contended(&key(MAX_CONTENDED + 9)),
            "the newest stays"
        );
    }
}
