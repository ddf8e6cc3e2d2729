//! Parsed-document cache (design.md §3): one parse per document version, shared by reads
//! (element/attribute GET evaluate the selector on the cached tree) and by the next edit
//! (which splices against it). Keyed by document and ETag, so a stale entry is never used;
//! bounded by approximate bytes, evicting the least recently used half when full.

use crate::storage::DocKey;
use crate::xml::ParsedDoc;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

struct Entry {
    etag: String,
    doc: Arc<ParsedDoc>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<DocKey, Entry>,
    bytes: usize,
    tick: u64,
}

pub struct DocCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

impl DocCache {
    pub fn new(max_bytes: usize) -> DocCache {
        DocCache {
            inner: Mutex::new(Inner::default()),
            max_bytes,
        }
    }

    /// The cached parse of `key` at version `etag`, if any.
    pub fn get(&self, key: &DocKey, etag: &str) -> Option<Arc<ParsedDoc>> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.map.get_mut(key)?;
        if entry.etag != etag {
            return None;
        }
        entry.used = tick;
        Some(entry.doc.clone())
    }

    pub fn insert(&self, key: DocKey, etag: String, doc: Arc<ParsedDoc>) {
        let bytes = doc.approx_bytes();
        if bytes > self.max_bytes / 2 {
            // One huge document would flush everything else out.
            self.remove(&key);
            return;
        }
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner.map.insert(
            key,
            Entry {
                etag,
                doc,
                bytes,
                used,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        if inner.bytes > self.max_bytes {
            evict_half(&mut inner);
        }
    }

    pub fn remove(&self, key: &DocKey) {
        let mut inner = self.inner.lock();
        if let Some(old) = inner.map.remove(key) {
            inner.bytes -= old.bytes;
        }
    }

    /// Drops the parse of version `etag` of `key`, if that is the one held (a change from the
    /// feed replaced it); a newer version already cached stays.
    pub fn superseded(&self, key: &DocKey, etag: &str) {
        let mut inner = self.inner.lock();
        if inner.map.get(key).is_some_and(|e| e.etag == etag) {
            if let Some(old) = inner.map.remove(key) {
                inner.bytes -= old.bytes;
            }
        }
    }

    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.map.clear();
        inner.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

/// Drops the least recently used entries until half the budget is free; amortized O(1) per
/// insert because it runs only when the cache overflows.
fn evict_half(inner: &mut Inner) {
    let mut by_age: Vec<(u64, DocKey, usize)> = inner
        .map
        .iter()
        .map(|(k, e)| (e.used, k.clone(), e.bytes))
        .collect();
    by_age.sort_unstable_by_key(|(used, _, _)| *used);
    let target = inner.bytes / 2;
    for (_, key, bytes) in by_age {
        if inner.bytes <= target {
            break;
        }
        inner.map.remove(&key);
        inner.bytes -= bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TreeKey;
    use crate::xml::Limits;

    fn key(i: usize) -> DocKey {
        DocKey {
            auid: "a".into(),
            tree: TreeKey::User(format!("sip:u{i}@x")),
            path: "index".into(),
        }
    }

    fn doc() -> Arc<ParsedDoc> {
        Arc::new(ParsedDoc::parse(Arc::from("<a><b/><c/></a>"), &Limits::default()).unwrap())
    }

    #[test]
    fn superseded_drops_only_that_version() {
        let cache = DocCache::new(1 << 20);
        cache.insert(key(1), "b".into(), doc());
        cache.superseded(&key(1), "a");
        assert!(cache.get(&key(1), "b").is_some(), "a newer version stays");
        cache.superseded(&key(1), "b");
        assert!(cache.get(&key(1), "b").is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn hit_requires_same_etag() {
        let c = DocCache::new(1 << 20);
        c.insert(key(1), "e1".into(), doc());
        assert!(c.get(&key(1), "e1").is_some());
        assert!(
            c.get(&key(1), "e2").is_none(),
            "a stale version is never served"
        );
        c.remove(&key(1));
        assert!(c.get(&key(1), "e1").is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn bounded_and_keeps_recent_entries() {
        let one = doc().approx_bytes();
        let c = DocCache::new(one * 10);
        for i in 0..100 {
            c.insert(key(i), "e".into(), doc());
        }
        assert!(c.bytes() <= one * 10);
        assert!(
            c.get(&key(99), "e").is_some(),
            "the newest entry survives eviction"
        );
    }
}
