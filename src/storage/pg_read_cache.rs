//! The node's cache of documents read from PostgreSQL (issue #15: reads served by the node,
//! still linearizable across nodes; RFC 4825 §7.11 ETags stay exact).
//!
//! A read first learns the database's change head by a read that started after the read
//! arrived ([`Barrier`]: one statement shared by every read waiting for it), waits until this
//! node applied the change log through that head (each change evicts its document), and only
//! then answers from the cache. So every write committed before the read began — on any
//! node — is seen, as a read of the table would see it. A miss reads the table and keeps the
//! result unless a change of that document was applied meanwhile (the fill's ticket is gone),
//! so a fill never stores a version older than one already evicted. Bounded by bytes,
//! dropping the least recently used half when full.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{DocKey, StorageError, StoredDocument};

enum Slot {
    /// A read of the table is on its way; its ticket.
    Filling(u64),
    Held {
        doc: StoredDocument,
        bytes: usize,
        used: u64,
        /// The version is that of change `seq` or newer: only later changes evict it.
        seq: u64,
    },
}

#[derive(Default)]
struct Inner {
    map: HashMap<DocKey, Slot>,
    bytes: usize,
    tick: u64,
    /// The change through which every change's eviction is applied.
    applied: u64,
}

pub(super) struct ReadCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    /// `Inner::applied`, for the reads waiting for it.
    applied: watch::Sender<u64>,
}

/// The memory a held version takes, near enough that the bound holds for the process: its
/// text plus the map's slot and the allocations of its key and version (measured: a million
/// documents of ~400 bytes filled a 32 MB budget with 38 MiB while only the text and 64 bytes
/// were counted).
fn size_of(key: &DocKey, doc: &StoredDocument) -> usize {
    let tree = match &key.tree {
        super::TreeKey::Global => 0,
        super::TreeKey::User(xui) => xui.len(),
    };
    256 + key.auid.len() + tree + key.path.len() + doc.body.len() + doc.etag.len()
}

impl ReadCache {
    /// An empty cache of at most `max_bytes`, whose log is applied through `applied`.
    pub(super) fn new(max_bytes: usize, applied: u64) -> ReadCache {
        ReadCache {
            inner: Mutex::new(Inner {
                applied,
                ..Inner::default()
            }),
            max_bytes,
            applied: watch::channel(applied).0,
        }
    }

    /// The cached version of `key`, if any (call after [`ReadCache::wait_applied`]).
    pub(super) fn lookup(&self, key: &DocKey) -> Option<StoredDocument> {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        match inner.map.get_mut(key)? {
            Slot::Held { doc, used, .. } => {
                *used = tick;
                Some(doc.clone())
            }
            Slot::Filling(_) => None,
        }
    }

    /// Whether a version of `key` is held (it may still need the log applied to be current).
    pub(super) fn holds(&self, key: &DocKey) -> bool {
        matches!(self.inner.lock().map.get(key), Some(Slot::Held { .. }))
    }

    /// Marks a read of `key` from the table as started: its ticket for [`ReadCache::fill`].
    pub(super) fn start_fill(&self, key: &DocKey) -> u64 {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let ticket = inner.tick;
        if let Some(Slot::Held { bytes, .. }) = inner.map.insert(key.clone(), Slot::Filling(ticket))
        {
            inner.bytes -= bytes;
        }
        ticket
    }

    /// Keeps what the read of ticket `ticket`, started once the log was applied through
    /// `seq`, found, unless a change of `key` was applied since it started (or another read
    /// started after it). Absent documents are not kept.
    pub(super) fn fill(&self, key: &DocKey, ticket: u64, seq: u64, doc: Option<&StoredDocument>) {
        let mut inner = self.inner.lock();
        if !matches!(inner.map.get(key), Some(Slot::Filling(t)) if *t == ticket) {
            return;
        }
        inner.map.remove(key);
        if let Some(doc) = doc {
            self.hold(&mut inner, key, doc, seq);
        }
    }

    /// Keeps version `doc` of `key` that this node's change `seq` wrote (`None`: deleted), so
    /// the next read or edit of it needs no read of the table. Only while the log is applied
    /// short of `seq`: then no later change of `key` can have been applied before it.
    pub(super) fn committed(&self, key: &DocKey, seq: u64, doc: Option<&StoredDocument>) {
        let mut inner = self.inner.lock();
        if inner.applied >= seq {
            return;
        }
        if let Some(Slot::Held { bytes, .. }) = inner.map.remove(key) {
            inner.bytes -= bytes;
        }
        if let Some(doc) = doc {
            self.hold(&mut inner, key, doc, seq);
        }
    }

    fn hold(&self, inner: &mut Inner, key: &DocKey, doc: &StoredDocument, seq: u64) {
        let bytes = size_of(key, doc);
        if bytes > self.max_bytes / 8 {
            return;
        }
        inner.tick += 1;
        let used = inner.tick;
        inner.map.insert(
            key.clone(),
            Slot::Held {
                doc: doc.clone(),
                bytes,
                used,
                seq,
            },
        );
        inner.bytes += bytes;
        if inner.bytes > self.max_bytes {
            evict_half(inner);
        }
    }

    /// Applies the changes `changes` (document, change number), the log's next ones through
    /// `through`: older versions held of those documents, and reads on their way, are dropped.
    pub(super) fn apply<'k>(
        &self,
        changes: impl IntoIterator<Item = (&'k DocKey, u64)>,
        through: u64,
    ) {
        {
            let mut inner = self.inner.lock();
            for (key, seq) in changes {
                let newer = matches!(inner.map.get(key), Some(Slot::Held { seq: held, .. }) if *held >= seq);
                if newer {
                    continue;
                }
                if let Some(Slot::Held { bytes, .. }) = inner.map.remove(key) {
                    inner.bytes -= bytes;
                }
            }
            inner.applied = inner.applied.max(through);
        }
        self.advance(through);
    }

    /// Forgets everything and counts the log applied through `seq` (after the log was trimmed
    /// past what this node applied: which documents changed is unknown).
    pub(super) fn reset(&self, seq: u64) {
        {
            let mut inner = self.inner.lock();
            inner.map.clear();
            inner.bytes = 0;
            inner.applied = inner.applied.max(seq);
        }
        self.advance(seq);
    }

    fn advance(&self, seq: u64) {
        self.applied.send_if_modified(|applied| {
            let newer = seq > *applied;
            if newer {
                *applied = seq;
            }
            newer
        });
    }

    pub(super) fn applied(&self) -> u64 {
        self.inner.lock().applied
    }

    /// Waits until the log is applied through `seq`, at most `patience`: whether it is.
    pub(super) async fn wait_applied(&self, seq: u64, patience: std::time::Duration) -> bool {
        if self.applied() >= seq {
            return true;
        }
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(patience, applied.wait_for(|a| *a >= seq)).await;
        matches!(reached, Ok(Ok(_)))
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

/// Drops the least recently used held versions until half the budget is free.
fn evict_half(inner: &mut Inner) {
    let mut by_age: Vec<(u64, DocKey)> = inner
        .map
        .iter()
        .filter_map(|(k, slot)| match slot {
            Slot::Held { used, .. } => Some((*used, k.clone())),
            Slot::Filling(_) => None,
        })
        .collect();
    by_age.sort_unstable_by_key(|(used, _)| *used);
    let target = inner.bytes / 2;
    for (_, key) in by_age {
        if inner.bytes <= target {
            break;
        }
        if let Some(Slot::Held { bytes, .. }) = inner.map.remove(&key) {
            inner.bytes -= bytes;
        }
    }
}

/// Reads of the change head shared by the reads waiting for one: each caller gets a head read
/// by a statement sent after it called (so it covers every commit acknowledged before), and
/// callers arriving while a statement is on its way share the next one.
#[derive(Default)]
pub(super) struct Barrier {
    /// Callers so far (each takes the next number).
    called: std::sync::atomic::AtomicU64,
    /// (the last caller a head read covers, that head).
    served: Mutex<(u64, u64)>,
    /// Held by the one caller reading.
    reading: tokio::sync::Mutex<()>,
}

impl Barrier {
    /// A change head read after this call began; `read_head` reads it.
    pub(super) async fn head<F, Fut>(&self, read_head: F) -> Result<u64, StorageError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<u64, StorageError>>,
    {
        use std::sync::atomic::Ordering;
        let me = self.called.fetch_add(1, Ordering::SeqCst) + 1;
        let covered = |served: &(u64, u64)| (served.0 >= me).then_some(served.1);
        if let Some(head) = covered(&self.served.lock()) {
            return Ok(head);
        }
        let _reading = self.reading.lock().await;
        if let Some(head) = covered(&self.served.lock()) {
            return Ok(head);
        }
        // Every caller numbered up to `last` called before the statement is sent.
        let last = self.called.load(Ordering::SeqCst);
        let head = read_head().await?;
        let mut served = self.served.lock();
        *served = (last.max(served.0), head.max(served.1));
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TreeKey;
    use std::sync::Arc;

    fn key(i: usize) -> DocKey {
        DocKey::new("a", TreeKey::User(format!("sip:u{i}@x")), "index")
    }

    fn doc(etag: &str) -> StoredDocument {
        StoredDocument {
            body: Arc::from("<a/>"),
            etag: etag.into(),
            modified_ms: 1,
        }
    }

    // ET-01: a read after a write never gets the version before it.
    #[test]
    fn a_fill_overtaken_by_a_change_is_not_kept() {
        let c = ReadCache::new(1 << 20, 0);
        let t = c.start_fill(&key(1));
        c.apply([(&key(1), 1)], 1);
        c.fill(&key(1), t, 0, Some(&doc("old")));
        assert!(c.lookup(&key(1)).is_none(), "the evicted version came back");
        let t = c.start_fill(&key(1));
        c.fill(&key(1), t, 1, Some(&doc("new")));
        assert_eq!(c.lookup(&key(1)).unwrap().etag, "new");
        c.apply([(&key(1), 2)], 2);
        assert!(c.lookup(&key(1)).is_none());
        assert_eq!(c.applied(), 2);
        assert_eq!(c.bytes(), 0);
    }

    // A version this node wrote is kept until a later change of it is applied, and only
    // while no later change can have been applied already.
    #[test]
    fn a_committed_version_is_kept_until_a_later_change() {
        let c = ReadCache::new(1 << 20, 4);
        c.committed(&key(1), 5, Some(&doc("mine")));
        c.apply([(&key(1), 5)], 5);
        assert_eq!(c.lookup(&key(1)).unwrap().etag, "mine", "its own change");
        c.apply([(&key(1), 6)], 6);
        assert!(c.lookup(&key(1)).is_none(), "a later change evicts it");
        c.committed(&key(1), 6, Some(&doc("late")));
        assert!(c.lookup(&key(1)).is_none(), "applied past it: not kept");
        c.committed(&key(2), 7, Some(&doc("x")));
        c.committed(&key(2), 8, None);
        assert!(c.lookup(&key(2)).is_none(), "deleted");
    }

    #[test]
    fn a_later_fill_wins_over_an_earlier_one() {
        let c = ReadCache::new(1 << 20, 0);
        let first = c.start_fill(&key(1));
        let second = c.start_fill(&key(1));
        c.fill(&key(1), first, 0, Some(&doc("first")));
        assert!(c.lookup(&key(1)).is_none());
        c.fill(&key(1), second, 0, Some(&doc("second")));
        assert_eq!(c.lookup(&key(1)).unwrap().etag, "second");
    }

    #[test]
    fn bounded_and_reset_forgets_all() {
        let one = size_of(&key(0), &doc("e"));
        let c = ReadCache::new(one * 10, 0);
        for i in 0..100 {
            let t = c.start_fill(&key(i));
            c.fill(&key(i), t, 0, Some(&doc("e")));
        }
        assert!(c.bytes() <= one * 10);
        assert!(c.lookup(&key(99)).is_some(), "the newest stays");
        c.reset(7);
        assert!(c.lookup(&key(99)).is_none());
        assert_eq!((c.bytes(), c.applied()), (0, 7));
    }

    #[tokio::test]
    async fn waits_for_the_log_to_be_applied() {
        let c = Arc::new(ReadCache::new(1 << 20, 3));
        let short = std::time::Duration::from_millis(20);
        assert!(c.wait_applied(3, short).await);
        assert!(!c.wait_applied(4, short).await);
        let later = c.clone();
        tokio::spawn(async move { later.apply(None, 5) });
        assert!(c.wait_applied(5, std::time::Duration::from_secs(5)).await);
    }

    // Callers waiting while a head read is on its way share the next one, which starts after
    // they called; a caller never gets a head read before it called.
    #[tokio::test]
    async fn barrier_reads_once_for_the_callers_waiting() {
        let barrier = Arc::new(Barrier::default());
        let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (gate, opened) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (barrier, reads) = (barrier.clone(), reads.clone());
            tokio::spawn(async move {
                barrier
                    .head(|| async move {
                        let _ = opened.await;
                        Ok(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let (barrier, reads) = (barrier.clone(), reads.clone());
                tokio::spawn(async move {
                    barrier
                        .head(|| async move {
                            Ok(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
                        })
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        for w in waiting {
            assert_eq!(
                w.await.unwrap().unwrap(),
                2,
                "one read after the first, shared"
            );
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
