//! sled 0.34.7 [`DocumentStore`] backend, the embedded default (design §4, §10). Holds XCAP
//! documents (RFC 4825 §6) with ETag compare-and-swap writes (§7.10–§7.11) that are
//! acknowledged only once durable.
//!
//! Layout, all in one sled `Db` (one log, so one `flush` covers every tree):
//! - `docs`: `auid \0 tree \0 path` → document record, where `tree` is `G` (global) or `U<xui>`.
//!   NUL is rejected in every component (`DocKey::validate`), so the split is unambiguous, and
//!   since NUL is the smallest byte the encoding sorts exactly like `DocKey`. An AUID is the key
//!   prefix `auid \0`, a directory the prefix `auid \0 tree \0 dir/`.
//! - `docs_by_user`: `xui \0 auid \0 path` → metadata (ETag, mtime, size), the secondary index
//!   that makes `list_user` a prefix scan.
//! - `meta`: `seq` (u64 BE, last change sequence number) and `format`.
//!
//! Every mutation is one sled transaction over the three trees, so the primary record, the index
//! entry and `seq` change together or not at all, also across a crash. sled transactions are
//! serializable (0.34.7 runs each one under a process-wide write lock), which is what makes the
//! ETag check-then-write atomic and makes `seq` order equal commit order.
//!
//! Durability (design §10: without `flush` a kill -9 lost acknowledged writes): after its
//! transaction a writer waits until a flush that *started after* its commit has finished. With
//! group commit one background thread runs those flushes, and every writer that committed
//! before a flush began is released by it, so N concurrent writers share one fsync.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::sled_common::{abort, from_sled, from_tx, open_waiting, utf8, Reader, TxResult};
use super::{
    check_expect, directory_prefix, validate_auid, validate_tree, validate_xui, Committed, DocKey,
    DocMeta, DocumentStore, Expect, StorageError, StoredDocument, TreeKey, WriteOutcome,
};

const SEP: u8 = 0;
const RECORD_VERSION: u8 = 1;
const FORMAT_KEY: &[u8] = b"format";
const FORMAT_VERSION: &[u8] = b"xcapd-docs-1";
const SEQ_KEY: &[u8] = b"seq";

/// Tuning of the sled backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledOptions {
    /// sled page cache size; small by default to keep RSS low (sled's own default is 1 GiB).
    pub cache_capacity_bytes: u64,
    /// Share one background flush among concurrent writers instead of one flush per write.
    pub group_commit: bool,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 64 * 1024 * 1024,
            group_commit: true,
        }
    }
}

/// Documents in an embedded sled database.
pub struct SledStore {
    db: sled::Db,
    docs: sled::Tree,
    by_user: sled::Tree,
    meta: sled::Tree,
    group: Option<Arc<GroupCommit>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("group_commit", &self.group.is_some())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the database in directory `path`.
    pub fn open(path: &Path, opts: SledOptions) -> Result<SledStore, StorageError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_capacity_bytes);
        let db = open_waiting(&config).map_err(from_sled)?;
        Self::from_db(db, &opts)
    }

    /// A database in a fresh temporary location, removed on drop (tests).
    pub fn open_temporary() -> Result<SledStore, StorageError> {
        Self::open_temporary_with(SledOptions::default())
    }

    /// Like [`SledStore::open_temporary`] with explicit options.
    pub fn open_temporary_with(opts: SledOptions) -> Result<SledStore, StorageError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(opts.cache_capacity_bytes)
            .open()
            .map_err(from_sled)?;
        Self::from_db(db, &opts)
    }

    fn from_db(db: sled::Db, opts: &SledOptions) -> Result<SledStore, StorageError> {
        let docs = db.open_tree("docs").map_err(from_sled)?;
        let by_user = db.open_tree("docs_by_user").map_err(from_sled)?;
        let meta = db.open_tree("meta").map_err(from_sled)?;
        match meta.get(FORMAT_KEY).map_err(from_sled)? {
            Some(v) if v.as_ref() == FORMAT_VERSION => {}
            Some(v) => {
                return Err(StorageError::Corrupt(format!(
                    "unsupported storage format {:?}",
                    String::from_utf8_lossy(&v)
                )))
            }
            None => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(from_sled)?;
                db.flush().map_err(from_sled)?;
            }
        }
        let (group, flusher) = if opts.group_commit {
            let group = Arc::new(GroupCommit::default());
            let handle = {
                let group = Arc::clone(&group);
                let db = db.clone();
                std::thread::Builder::new()
                    .name("xcapd-sled-flush".into())
                    .spawn(move || group.run_flusher(&db))
                    .map_err(|e| StorageError::Backend(format!("spawn flusher: {e}")))?
            };
            (Some(group), Some(handle))
        } else {
            (None, None)
        };
        Ok(SledStore {
            db,
            docs,
            by_user,
            meta,
            group,
            flusher: Mutex::new(flusher),
        })
    }

    /// Stops the group-commit flusher (after it has flushed what writers wait for) and flushes.
    /// Idempotent; later writes still work and flush synchronously. Also run by `Drop`.
    pub fn close(&self) -> Result<(), StorageError> {
        if let Some(group) = &self.group {
            group.state.lock().shutdown = true;
            group.flusher_wake.notify_one();
        }
        if let Some(handle) = self.flusher.lock().take() {
            handle
                .join()
                .map_err(|_| StorageError::Backend("flusher thread panicked".into()))?;
        }
        self.db.flush().map_err(from_sled)?;
        Ok(())
    }

    /// The underlying sled database, for other stores sharing it (e.g. `SledCredentials`).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Number of group-commit flushes run so far (0 without group commit).
    pub fn group_flush_count(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.state.lock().flushes)
    }

    /// Returns once everything committed before this call is on disk.
    fn make_durable(&self) -> Result<(), StorageError> {
        match &self.group {
            Some(group) => match group.wait_durable()? {
                Durable::Flushed => Ok(()),
                Durable::FlusherStopped => self.db.flush().map(drop).map_err(from_sled),
            },
            None => self.db.flush().map(drop).map_err(from_sled),
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Nothing to report to: a failure here is as if the process had died before the last
        // flush, which every acknowledged write has already survived.
        let _ = self.close();
    }
}

/// State shared between writers and the group-commit flusher thread.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<FlushState>,
    flusher_wake: Condvar,
    writers_wake: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Tickets handed out: writer n committed its transaction before taking ticket n.
    requested: u64,
    /// Every ticket up to this one is covered by a finished flush.
    completed: u64,
    /// A failed flush leaves the durability of later writes unknown: refuse them from then on.
    failure: Option<String>,
    shutdown: bool,
    /// Flushes run by the flusher thread (observability of the batching).
    flushes: u64,
}

enum Durable {
    Flushed,
    FlusherStopped,
}

impl GroupCommit {
    fn wait_durable(&self) -> Result<Durable, StorageError> {
        let mut st = self.state.lock();
        if let Some(e) = &st.failure {
            return Err(StorageError::Backend(format!("earlier flush failed: {e}")));
        }
        if st.shutdown {
            return Ok(Durable::FlusherStopped);
        }
        st.requested += 1;
        let ticket = st.requested;
        self.flusher_wake.notify_one();
        while st.completed < ticket && st.failure.is_none() {
            self.writers_wake.wait(&mut st);
        }
        if st.completed >= ticket {
            Ok(Durable::Flushed)
        } else {
            let e = st.failure.as_deref().unwrap_or_default();
            Err(StorageError::Backend(format!("flush failed: {e}")))
        }
    }

    fn run_flusher(&self, db: &sled::Db) {
        loop {
            let target = {
                let mut st = self.state.lock();
                while st.requested == st.completed && !st.shutdown {
                    self.flusher_wake.wait(&mut st);
                }
                if st.requested == st.completed {
                    return; // shutdown with nobody waiting
                }
                st.requested
            };
            // Every ticket <= target was taken after its writer's commit, and this flush starts
            // after target was read, so it covers all of them.
            // A panic inside sled must not leave writers waiting forever: treat it as failure.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.flush()));
            let mut st = self.state.lock();
            match result {
                Ok(Ok(_)) => {
                    st.completed = target;
                    st.flushes += 1;
                }
                Ok(Err(e)) => st.failure = Some(e.to_string()),
                Err(_) => st.failure = Some("flush panicked".into()),
            }
            let failed = st.failure.is_some();
            drop(st);
            self.writers_wake.notify_all();
            if failed {
                return;
            }
        }
    }
}

// ---- key and record encoding ----

fn push_tree(out: &mut Vec<u8>, tree: &TreeKey) {
    match tree {
        TreeKey::Global => out.push(b'G'),
        TreeKey::User(xui) => {
            out.push(b'U');
            out.extend_from_slice(xui.as_bytes());
        }
    }
}

/// `auid \0 tree \0 path-prefix`; with the full path it is the primary key.
fn doc_key_bytes(auid: &str, tree: &TreeKey, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(auid.len() + path.len() + 64);
    out.extend_from_slice(auid.as_bytes());
    out.push(SEP);
    push_tree(&mut out, tree);
    out.push(SEP);
    out.extend_from_slice(path.as_bytes());
    out
}

fn user_index_key(xui: &str, auid: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(xui.len() + auid.len() + path.len() + 2);
    out.extend_from_slice(xui.as_bytes());
    out.push(SEP);
    out.extend_from_slice(auid.as_bytes());
    out.push(SEP);
    out.extend_from_slice(path.as_bytes());
    out
}

/// The three NUL-separated components of an encoded key.
type KeyParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn split3(bytes: &[u8]) -> Result<KeyParts<'_>, StorageError> {
    let mut parts = bytes.splitn(3, |b| *b == SEP);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(StorageError::Corrupt("key without two separators".into())),
    }
}

fn decode_doc_key(bytes: &[u8]) -> Result<DocKey, StorageError> {
    let (auid, tree, path) = split3(bytes)?;
    let tree = match tree.split_first() {
        Some((b'G', [])) => TreeKey::Global,
        Some((b'U', xui)) => TreeKey::User(utf8(xui, "xui")?),
        _ => return Err(StorageError::Corrupt("bad tree tag in key".into())),
    };
    Ok(DocKey {
        auid: utf8(auid, "auid")?,
        tree,
        path: utf8(path, "path")?,
    })
}

fn decode_user_index_key(bytes: &[u8]) -> Result<DocKey, StorageError> {
    let (xui, auid, path) = split3(bytes)?;
    Ok(DocKey {
        auid: utf8(auid, "auid")?,
        tree: TreeKey::User(utf8(xui, "xui")?),
        path: utf8(path, "path")?,
    })
}

fn push_string(out: &mut Vec<u8>, s: &str) -> Result<(), StorageError> {
    let len = u32::try_from(s.len())
        .map_err(|_| StorageError::InvalidKey("etag longer than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Primary record: version, mtime, ETag, body.
fn encode_doc(body: &str, etag: &str, modified_ms: u64) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(1 + 8 + 4 + etag.len() + body.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&modified_ms.to_be_bytes());
    push_string(&mut out, etag)?;
    out.extend_from_slice(body.as_bytes());
    Ok(out)
}

/// Decodes the header of a primary record; returns (etag, modified_ms, body bytes).
fn decode_doc(bytes: &[u8]) -> Result<(String, u64, &[u8]), StorageError> {
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(StorageError::Corrupt(
            "unknown document record version".into(),
        ));
    }
    let modified_ms = r.u64()?;
    let etag = r.string("etag")?;
    Ok((etag, modified_ms, r.0))
}

/// Index record: version, mtime, size, ETag.
fn encode_index(etag: &str, modified_ms: u64, size: u64) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(1 + 16 + 4 + etag.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&modified_ms.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    push_string(&mut out, etag)?;
    Ok(out)
}

fn decode_index(key: DocKey, bytes: &[u8]) -> Result<DocMeta, StorageError> {
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(StorageError::Corrupt("unknown index record version".into()));
    }
    let modified_ms = r.u64()?;
    let size = r.u64()?;
    let etag = r.string("etag")?;
    Ok(DocMeta {
        key,
        etag,
        modified_ms,
        size,
    })
}

fn decode_seq(bytes: Option<&[u8]>) -> Result<u64, StorageError> {
    match bytes {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| StorageError::Corrupt("bad seq record".into())),
    }
}

/// Inside a transaction: the ETag of the current record, if any.
fn current_etag(docs: &TransactionalTree, key: &[u8]) -> TxResult<Option<String>> {
    match docs.get(key)? {
        None => Ok(None),
        Some(v) => match decode_doc(&v) {
            Ok((etag, _, _)) => Ok(Some(etag)),
            Err(e) => abort(e),
        },
    }
}

/// Inside a transaction: allocates the next change sequence number.
fn next_seq(meta: &TransactionalTree) -> TxResult<u64> {
    let current = match decode_seq(meta.get(SEQ_KEY)?.as_deref()) {
        Ok(s) => s,
        Err(e) => return abort(e),
    };
    let next = current + 1;
    meta.insert(SEQ_KEY, &next.to_be_bytes()[..])?;
    Ok(next)
}

impl DocumentStore for SledStore {
    fn get(&self, key: &DocKey) -> Result<Option<StoredDocument>, StorageError> {
        key.validate()?;
        let raw = self
            .docs
            .get(doc_key_bytes(&key.auid, &key.tree, &key.path))
            .map_err(from_sled)?;
        let Some(raw) = raw else { return Ok(None) };
        let (etag, modified_ms, body) = decode_doc(&raw)?;
        let body = std::str::from_utf8(body)
            .map_err(|_| StorageError::Corrupt("document body: bad UTF-8".into()))?;
        Ok(Some(StoredDocument {
            body: Arc::from(body),
            etag,
            modified_ms,
        }))
    }

    fn put(
        &self,
        key: &DocKey,
        expect: &Expect,
        body: &str,
        etag: &str,
        modified_ms: u64,
    ) -> Result<Committed, StorageError> {
        key.validate()?;
        let pkey = doc_key_bytes(&key.auid, &key.tree, &key.path);
        let record = encode_doc(body, etag, modified_ms)?;
        let index = match &key.tree {
            TreeKey::User(xui) => Some((
                user_index_key(xui, &key.auid, &key.path),
                encode_index(etag, modified_ms, body.len() as u64)?,
            )),
            TreeKey::Global => None,
        };
        let committed = (&self.docs, &self.by_user, &self.meta)
            .transaction(|(docs, by_user, meta)| {
                let previous_etag = current_etag(docs, &pkey)?;
                if let Err(e) = check_expect(expect, previous_etag.as_deref()) {
                    return abort(e);
                }
                let seq = next_seq(meta)?;
                docs.insert(pkey.as_slice(), record.as_slice())?;
                if let Some((ikey, ivalue)) = &index {
                    by_user.insert(ikey.as_slice(), ivalue.as_slice())?;
                }
                let outcome = if previous_etag.is_some() {
                    WriteOutcome::Replaced
                } else {
                    WriteOutcome::Created
                };
                Ok(Committed {
                    outcome,
                    previous_etag,
                    seq,
                })
            })
            .map_err(from_tx)?;
        self.make_durable()?;
        Ok(committed)
    }

    fn delete(&self, key: &DocKey, expect: &Expect) -> Result<Option<Committed>, StorageError> {
        key.validate()?;
        let pkey = doc_key_bytes(&key.auid, &key.tree, &key.path);
        let ikey = match &key.tree {
            TreeKey::User(xui) => Some(user_index_key(xui, &key.auid, &key.path)),
            TreeKey::Global => None,
        };
        let committed = (&self.docs, &self.by_user, &self.meta)
            .transaction(|(docs, by_user, meta)| {
                let previous_etag = current_etag(docs, &pkey)?;
                if let Err(e) = check_expect(expect, previous_etag.as_deref()) {
                    return abort(e);
                }
                if previous_etag.is_none() {
                    return Ok(None);
                }
                let seq = next_seq(meta)?;
                docs.remove(pkey.as_slice())?;
                if let Some(ikey) = &ikey {
                    by_user.remove(ikey.as_slice())?;
                }
                Ok(Some(Committed {
                    outcome: WriteOutcome::Deleted,
                    previous_etag,
                    seq,
                }))
            })
            .map_err(from_tx)?;
        if committed.is_some() {
            self.make_durable()?;
        }
        Ok(committed)
    }

    fn list_user(&self, xui: &str) -> Result<Vec<DocMeta>, StorageError> {
        validate_xui(xui)?;
        let mut prefix = xui.as_bytes().to_vec();
        prefix.push(SEP);
        self.by_user
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                decode_index(decode_user_index_key(&k)?, &v)
            })
            .collect()
    }

    fn list_auid(&self, auid: &str) -> Result<Vec<DocMeta>, StorageError> {
        validate_auid(auid)?;
        let mut prefix = auid.as_bytes().to_vec();
        prefix.push(SEP);
        self.docs
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(from_sled)?;
                let key = decode_doc_key(&k)?;
                let (etag, modified_ms, body) = decode_doc(&v)?;
                Ok(DocMeta {
                    key,
                    etag,
                    modified_ms,
                    size: body.len() as u64,
                })
            })
            .collect()
    }

    fn directory_exists(
        &self,
        auid: &str,
        tree: &TreeKey,
        dir: &str,
    ) -> Result<bool, StorageError> {
        validate_auid(auid)?;
        validate_tree(tree)?;
        let prefix = doc_key_bytes(auid, tree, &directory_prefix(dir)?);
        match self.docs.scan_prefix(prefix).keys().next() {
            None => Ok(false),
            Some(k) => k.map(|_| true).map_err(from_sled),
        }
    }

    fn last_seq(&self) -> Result<u64, StorageError> {
        decode_seq(self.meta.get(SEQ_KEY).map_err(from_sled)?.as_deref())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map(drop).map_err(from_sled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // URI-07: components may hold '/', ':', '@', '%'; the NUL-separated encoding decodes back.
    #[test]
    fn doc_key_encoding_round_trips_and_sorts_like_dockey() {
        let keys = [
            DocKey::new("a", TreeKey::Global, "x"),
            DocKey::new("a", TreeKey::User("sip:b@c".into()), "d/e"),
            DocKey::new("a", TreeKey::User("sip:b@c%2F".into()), "d"),
            DocKey::new("a b", TreeKey::Global, "z"),
            DocKey::new("ab", TreeKey::User("tel:+1/2".into()), "ü/%41"),
        ];
        for k in &keys {
            let enc = doc_key_bytes(&k.auid, &k.tree, &k.path);
            assert_eq!(decode_doc_key(&enc).as_ref(), Ok(k));
        }
        for a in &keys {
            for b in &keys {
                let ea = doc_key_bytes(&a.auid, &a.tree, &a.path);
                let eb = doc_key_bytes(&b.auid, &b.tree, &b.path);
                assert_eq!(a.cmp(b), ea.cmp(&eb), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn records_round_trip_and_truncation_is_corrupt() {
        let rec = encode_doc("<a/>", "etag-1", 42).unwrap();
        assert_eq!(
            decode_doc(&rec).unwrap(),
            ("etag-1".into(), 42, &b"<a/>"[..])
        );
        assert!(matches!(
            decode_doc(&rec[..5]),
            Err(StorageError::Corrupt(_))
        ));
        let key = DocKey::new("x", TreeKey::User("u".into()), "p");
        let idx = encode_index("e", 7, 99).unwrap();
        let m = decode_index(key.clone(), &idx).unwrap();
        assert_eq!((m.etag.as_str(), m.modified_ms, m.size), ("e", 7, 99));
        assert!(matches!(
            decode_index(key, &idx[..idx.len() - 1]),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            decode_seq(Some(b"123")),
            Err(StorageError::Corrupt(_))
        ));
    }

    /// A store opened on a directory written by something else is refused, not misread.
    #[test]
    fn foreign_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(FORMAT_KEY, &b"other"[..])
                .unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            SledStore::open(dir.path(), SledOptions::default()),
            Err(StorageError::Corrupt(_))
        ));
    }

    /// Reopening keeps documents, the user index and seq (seq persists: design §4).
    #[test]
    fn reopen_after_drop_keeps_data_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let alice = DocKey::new(
            "resource-lists",
            TreeKey::User("sip:alice@example.com".into()),
            "index",
        );
        let global = DocKey::new("xcap-caps", TreeKey::Global, "index");
        let seq = {
            let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
            store.put(&alice, &Expect::Absent, "<a/>", "e1", 1).unwrap();
            store
                .put(&global, &Expect::Absent, "<g/>", "g1", 2)
                .unwrap();
            let gone = DocKey::new(
                "pres-rules",
                TreeKey::User("sip:alice@example.com".into()),
                "index",
            );
            store.put(&gone, &Expect::Absent, "<p/>", "p1", 3).unwrap();
            store.delete(&gone, &Expect::Any).unwrap().unwrap().seq
        };
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        assert_eq!(store.last_seq().unwrap(), seq);
        let doc = store.get(&alice).unwrap().unwrap();
        assert_eq!(
            (&*doc.body, doc.etag.as_str(), doc.modified_ms),
            ("<a/>", "e1", 1)
        );
        assert_eq!(store.get(&global).unwrap().unwrap().etag, "g1");
        let listed: Vec<_> = store
            .list_user("sip:alice@example.com")
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(listed, vec![alice.clone()]);
        let next = store
            .put(&alice, &Expect::Etag("e1".into()), "<b/>", "e2", 4)
            .unwrap();
        assert!(next.seq > seq);
    }

    /// Writes after close() still succeed (synchronous flush) and persist.
    #[test]
    fn writes_after_close_flush_synchronously() {
        let dir = tempfile::tempdir().unwrap();
        let key = DocKey::new("a", TreeKey::Global, "d");
        {
            let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
            store.close().unwrap();
            store.close().unwrap();
            store.put(&key, &Expect::Absent, "x", "e", 0).unwrap();
        }
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        assert_eq!(store.get(&key).unwrap().unwrap().etag, "e");
    }
}

#[cfg(test)]
mod durability_tests {
    //! Durability and throughput of the acknowledged-write path (design §4, §10).
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    const CHILD_DIR_VAR: &str = "XCAPD_STORAGE_ABORT_CHILD_DIR";

    fn key(t: usize, i: usize) -> DocKey {
        DocKey::new(
            "resource-lists",
            TreeKey::User(format!("sip:user{t}@example.com")),
            format!("doc{i}"),
        )
    }

    /// Child half: writes from 4 threads, reports each acknowledged key on stdout, and aborts
    /// (no Drop, no final flush: what kill -9 leaves) while writers are still running.
    fn abort_child(dir: &str) -> ! {
        let store = Arc::new(SledStore::open(Path::new(dir), SledOptions::default()).unwrap());
        let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for t in 0..4 {
            let store = Arc::clone(&store);
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for i in 0.. {
                    store
                        .put(&key(t, i), &Expect::Absent, "<resource-lists/>", "e", 0)
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {t} {i}");
                    let _ = out.flush();
                    acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        while acked.load(std::sync::atomic::Ordering::SeqCst) < 400 {
            std::thread::yield_now();
        }
        std::process::abort();
    }

    /// design §10: every write acknowledged before an abrupt process death is there after
    /// reopening. The child is this test binary re-run in child mode.
    #[test]
    fn acknowledged_writes_survive_abort() {
        if let Ok(dir) = std::env::var(CHILD_DIR_VAR) {
            abort_child(&dir);
        }
        let dir = tempfile::tempdir().unwrap();
        // libtest names tests by module path without the crate name.
        let module = module_path!().split_once("::").unwrap().1;
        let child_test = format!("{module}::acknowledged_writes_survive_abort");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([&child_test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_VAR, dir.path())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "child must die by abort");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let acked: Vec<(usize, usize)> = stdout
            .lines()
            .filter_map(|l| {
                // libtest may print "test <name> ... " before the first line.
                let (_, rest) = l.split_once("ack ")?;
                let mut w = rest.split(' ');
                Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
            })
            .collect();
        assert!(
            acked.len() >= 400,
            "child acknowledged only {}",
            acked.len()
        );
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        let lost: Vec<_> = acked
            .iter()
            .filter(|(t, i)| store.get(&key(*t, *i)).unwrap().is_none())
            .collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost",
            lost.len(),
            acked.len()
        );
        let listed: usize = (0..4)
            .map(|t| {
                store
                    .list_user(&format!("sip:user{t}@example.com"))
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(listed >= acked.len());
        println!(
            "abort test: {} acknowledged, all present after reopen",
            acked.len()
        );
    }

    fn timed_puts(
        opts: SledOptions,
        threads: usize,
        total: usize,
    ) -> (std::time::Duration, u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path(), opts).unwrap());
        let body = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list/></resource-lists>";
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..total / threads {
                        store
                            .put(&key(t, i), &Expect::Absent, body, "e", 0)
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let elapsed = start.elapsed();
        assert_eq!(store.last_seq().unwrap(), total as u64);
        (
            elapsed,
            store.last_seq().unwrap(),
            store.group_flush_count(),
        )
    }

    /// Measures durable puts on the real disk (tempdir, not /dev/shm). Prints only: timing on
    /// a shared 2-core machine is no pass/fail criterion.
    #[test]
    fn measure_durable_put_throughput() {
        for group_commit in [true, false] {
            for threads in [1, 4] {
                let opts = SledOptions {
                    group_commit,
                    ..SledOptions::default()
                };
                let (elapsed, n, flushes) = timed_puts(opts, threads, 1000);
                println!(
                    "sled durable puts: group_commit={group_commit} threads={threads} n={n} \
                     total={elapsed:?} per_put={:?} group_flushes={flushes}",
                    elapsed / n as u32
                );
            }
        }
    }
}
