//! Per-document serialization of read-modify-write cycles (OP-39): a fixed set of async mutexes
//! picked by hashing the document key, so writers to one document queue up while writers to
//! different documents rarely contend. The storage compare-and-swap stays the final guard.

use crate::storage::DocKey;
use std::hash::{Hash, Hasher};
use tokio::sync::{Mutex, MutexGuard};

pub struct DocLocks {
    stripes: Vec<Mutex<()>>,
}

impl DocLocks {
    pub fn new(stripes: usize) -> DocLocks {
        DocLocks {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, key: &DocKey) -> MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let idx = (h.finish() % self.stripes.len() as u64) as usize;
        self.stripes[idx].lock().await
    }
}
