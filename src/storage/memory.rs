//! In-memory [`DocumentStore`] backend (RFC 4825 §6 document model) for tests and ephemeral
//! deployments: same semantics as the sled backend, nothing survives the process.
//!
//! One `RwLock` guards the documents, the per-user index, the change sequence and the change
//! log, so every compare-and-swap (§7.10–§7.11) and its change record are one critical section.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::ready;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use super::feed::{check_window, ChangeRetention};
use super::{
    check_expect, directory_prefix, now_ms, validate_auid, validate_tree, validate_xui,
    ChangeOrigin, ChangeRecord, Committed, DocKey, DocMeta, DocumentStore, Durability, Expect,
    StorageError, StoreFuture, StoredDocument, TreeKey, WriteOutcome,
};

/// Documents held in memory.
#[derive(Debug)]
pub struct MemoryStore {
    state: RwLock<State>,
    retention: ChangeRetention,
    /// The newest change in the log (feed wake-up).
    changed: watch::Sender<u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_retention(ChangeRetention::default())
    }
}

#[derive(Debug, Default)]
struct State {
    /// Primary map; `DocKey` order (auid, tree, path) makes an AUID or directory a key range.
    docs: BTreeMap<DocKey, StoredDocument>,
    /// Secondary index (xui, auid, path) so a user's listing is a range, not a full scan.
    by_user: BTreeSet<(String, String, String)>,
    seq: u64,
    /// The change log, oldest first; every change up to `trimmed_through` is gone.
    changes: VecDeque<ChangeRecord>,
    trimmed_through: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose change log keeps what `retention` allows.
    pub fn with_retention(retention: ChangeRetention) -> Self {
        MemoryStore {
            state: RwLock::default(),
            retention,
            changed: watch::channel(0).0,
        }
    }

    /// Appends the change record of a commit and trims the log (inside the write lock).
    fn log(&self, state: &mut State, record: ChangeRecord) {
        let (seq, now) = (record.seq, now_ms());
        state.changes.push_back(record);
        while let Some(oldest) = state.changes.front() {
            let over = state.changes.len() as u64 > self.retention.max_entries;
            if !over && !self.retention.expired(oldest.at_ms, now) {
                break;
            }
            state.trimmed_through = oldest.seq;
            state.changes.pop_front();
        }
        self.changed.send_replace(seq);
    }
}

fn meta(key: &DocKey, doc: &StoredDocument) -> DocMeta {
    DocMeta {
        key: key.clone(),
        etag: doc.etag.clone(),
        modified_ms: doc.modified_ms,
        size: doc.body.len() as u64,
    }
}

/// Smallest key of `auid`/`tree` whose path starts with `prefix`.
fn range_start(auid: &str, tree: &TreeKey, prefix: &str) -> DocKey {
    DocKey {
        auid: auid.to_owned(),
        tree: tree.clone(),
        path: prefix.to_owned(),
    }
}

impl MemoryStore {
    fn get_now(&self, key: &DocKey) -> Result<Option<StoredDocument>, StorageError> {
        key.validate()?;
        Ok(self.state.read().docs.get(key).cloned())
    }

    fn put_nowait(
        &self,
        key: &DocKey,
        expect: &Expect,
        body: &str,
        etag: &str,
        modified_ms: u64,
        origin: &ChangeOrigin,
    ) -> Result<(Committed, Durability), StorageError> {
        key.validate()?;
        let mut state = self.state.write();
        let previous_etag = state.docs.get(key).map(|d| d.etag.clone());
        check_expect(expect, previous_etag.as_deref())?;
        state.seq += 1;
        let seq = state.seq;
        state.docs.insert(
            key.clone(),
            StoredDocument {
                body: Arc::from(body),
                etag: etag.to_owned(),
                modified_ms,
            },
        );
        if let TreeKey::User(xui) = &key.tree {
            state
                .by_user
                .insert((xui.clone(), key.auid.clone(), key.path.clone()));
        }
        let outcome = if previous_etag.is_some() {
            WriteOutcome::Replaced
        } else {
            WriteOutcome::Created
        };
        let record = ChangeRecord {
            seq,
            key: key.clone(),
            previous_etag: previous_etag.clone(),
            new_etag: Some(etag.to_owned()),
            at_ms: now_ms(),
            origin: origin.clone(),
        };
        self.log(&mut state, record);
        let committed = Committed {
            outcome,
            previous_etag,
            seq,
        };
        Ok((committed, Durability::done()))
    }

    fn delete_nowait(
        &self,
        key: &DocKey,
        expect: &Expect,
        origin: &ChangeOrigin,
    ) -> Result<Option<(Committed, Durability)>, StorageError> {
        key.validate()?;
        let mut state = self.state.write();
        let previous_etag = state.docs.get(key).map(|d| d.etag.clone());
        check_expect(expect, previous_etag.as_deref())?;
        if previous_etag.is_none() {
            return Ok(None);
        }
        state.docs.remove(key);
        if let TreeKey::User(xui) = &key.tree {
            state
                .by_user
                .remove(&(xui.clone(), key.auid.clone(), key.path.clone()));
        }
        state.seq += 1;
        let record = ChangeRecord {
            seq: state.seq,
            key: key.clone(),
            previous_etag: previous_etag.clone(),
            new_etag: None,
            at_ms: now_ms(),
            origin: origin.clone(),
        };
        self.log(&mut state, record);
        let committed = Committed {
            outcome: WriteOutcome::Deleted,
            previous_etag,
            seq: state.seq,
        };
        Ok(Some((committed, Durability::done())))
    }

    fn list_user_now(&self, xui: &str) -> Result<Vec<DocMeta>, StorageError> {
        validate_xui(xui)?;
        let state = self.state.read();
        let start = (xui.to_owned(), String::new(), String::new());
        let mut out = Vec::new();
        for (x, auid, path) in state.by_user.range(start..) {
            if x != xui {
                break;
            }
            let key = DocKey::new(auid.clone(), TreeKey::User(x.clone()), path.clone());
            match state.docs.get(&key) {
                Some(doc) => out.push(meta(&key, doc)),
                None => {
                    return Err(StorageError::Corrupt(format!(
                        "user index entry without document: {key:?}"
                    )))
                }
            }
        }
        Ok(out)
    }

    fn list_auid_now(&self, auid: &str) -> Result<Vec<DocMeta>, StorageError> {
        validate_auid(auid)?;
        let state = self.state.read();
        Ok(state
            .docs
            .range(range_start(auid, &TreeKey::Global, "")..)
            .take_while(|(k, _)| k.auid == auid)
            .map(|(k, d)| meta(k, d))
            .collect())
    }

    fn directory_exists_now(
        &self,
        auid: &str,
        tree: &TreeKey,
        dir: &str,
    ) -> Result<bool, StorageError> {
        validate_auid(auid)?;
        validate_tree(tree)?;
        let prefix = directory_prefix(dir)?;
        let state = self.state.read();
        let first = state
            .docs
            .range(range_start(auid, tree, &prefix)..)
            .next()
            .map(|(k, _)| k);
        Ok(first.is_some_and(|k| k.auid == auid && &k.tree == tree && k.path.starts_with(&prefix)))
    }

    fn last_seq_now(&self) -> Result<u64, StorageError> {
        Ok(self.state.read().seq)
    }

    fn changes_since_now(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>, StorageError> {
        let state = self.state.read();
        check_window(after, state.trimmed_through)?;
        let skip = after.saturating_sub(state.trimmed_through) as usize;
        Ok(state
            .changes
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect())
    }

    fn flush_now(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl DocumentStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, Option<StoredDocument>> {
        Box::pin(ready(self.get_now(key)))
    }

    fn put<'a>(
        &'a self,
        key: &'a DocKey,
        expect: &'a Expect,
        body: &'a str,
        etag: &'a str,
        modified_ms: u64,
        origin: &'a ChangeOrigin,
    ) -> StoreFuture<'a, Committed> {
        let done = self.put_nowait(key, expect, body, etag, modified_ms, origin);
        Box::pin(ready(done.map(|(committed, _)| committed)))
    }

    fn delete<'a>(
        &'a self,
        key: &'a DocKey,
        expect: &'a Expect,
        origin: &'a ChangeOrigin,
    ) -> StoreFuture<'a, Option<Committed>> {
        let done = self.delete_nowait(key, expect, origin);
        Box::pin(ready(done.map(|d| d.map(|(committed, _)| committed))))
    }

    fn list_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, Vec<DocMeta>> {
        Box::pin(ready(self.list_user_now(xui)))
    }

    fn list_auid<'a>(&'a self, auid: &'a str) -> StoreFuture<'a, Vec<DocMeta>> {
        Box::pin(ready(self.list_auid_now(auid)))
    }

    fn directory_exists<'a>(
        &'a self,
        auid: &'a str,
        tree: &'a TreeKey,
        dir: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(ready(self.directory_exists_now(auid, tree, dir)))
    }

    fn last_seq(&self) -> StoreFuture<'_, u64> {
        Box::pin(ready(self.last_seq_now()))
    }

    fn changes_since(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<ChangeRecord>> {
        Box::pin(ready(self.changes_since_now(after, limit)))
    }

    fn lock_document<'a>(
        &'a self,
        _key: &'a DocKey,
    ) -> StoreFuture<'a, Option<super::DocumentLock>> {
        // One process uses this store: the writers' own per-document lock suffices.
        Box::pin(std::future::ready(Ok(None)))
    }

    fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(ready(self.flush_now()))
    }
}
