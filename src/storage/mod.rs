//! Document storage adapter (layer L1): the domain-level [`DocumentStore`] trait that holds XCAP
//! documents (RFC 4825 §6: one document per AUID, tree — `global` or `users/<XUI>` — and document
//! path, §6.2 / URI-07), with ETag compare-and-swap writes (§7.10–§7.11, OP-02, OP-05) and a
//! store-wide change sequence number, plus its backends: [`MemoryStore`] (tests, ephemeral
//! deployments) and [`SledStore`] (the embedded default).
//!
//! Every backend passes the one behaviour suite in `suite.rs`. Keys are never file paths: each
//! backend encodes [`DocKey`] itself after [`DocKey::validate`] has checked it.

mod body_files;
pub mod credentials;
mod durability;
pub(crate) mod journal;
pub mod memory;
mod sled_apply;
pub(crate) mod sled_common;
pub mod sled_credentials;
mod sled_overlay;
mod sled_records;
pub mod sled_store;
pub mod space;
#[cfg(test)]
mod suite;
mod wal;

pub use durability::Durability;
pub use memory::MemoryStore;
pub use sled_store::{SledOptions, SledStore};

use std::sync::Arc;

/// Errors of the storage layer. `Backend` and `Corrupt` carry internal text for logs only; the
/// HTTP layer maps them to a bare 500 and never shows the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The [`Expect`] precondition did not hold; nothing was stored.
    #[error("precondition failed")]
    PreconditionFailed,
    /// A key component is empty, contains NUL, or the document path has an empty segment.
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    /// The backend failed (I/O, flush, closed store).
    #[error("storage backend error: {0}")]
    Backend(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt stored record: {0}")]
    Corrupt(String),
    /// Writes cannot be made now (disk space under the reserve, the journal cannot write);
    /// nothing was stored, reads still work, and writes resume once the cause clears (503 with
    /// Retry-After at the edge).
    #[error("storage cannot accept writes now: {0}")]
    Unavailable(String),
}

/// The tree a document lives in: `global/` or `users/<XUI>/` (RFC 4825 §6.2, URI-07).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TreeKey {
    Global,
    /// Canonical XUI, e.g. `sip:alice@example.com`.
    User(String),
}

/// Identity of one document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    pub auid: String,
    pub tree: TreeKey,
    /// Document path relative to the home/global directory, segments joined by `/`, e.g. `index`
    /// or `oma_status-icon/rcs_status_icon` (URI-07).
    pub path: String,
}

/// A stored document. The body is shared so that readers do not copy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    pub body: Arc<str>,
    pub etag: String,
    pub modified_ms: u64,
}

/// Listing entry: everything about a document except its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocMeta {
    pub key: DocKey,
    pub etag: String,
    pub modified_ms: u64,
    /// Body length in bytes (UTF-8).
    pub size: u64,
}

/// Compare-and-swap precondition of a write (RFC 4825 §7.10–§7.11: If-Match / If-None-Match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No precondition.
    Any,
    /// The document must not exist.
    Absent,
    /// The document must exist with exactly this ETag.
    Etag(String),
}

/// What a committed change did (OP-02: 201 for creation, 200 for replacement; OP-05: delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    Replaced,
    Deleted,
}

/// Result of a committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub outcome: WriteOutcome,
    pub previous_etag: Option<String>,
    /// Store-wide change sequence number: strictly increasing across puts and deletes, and
    /// across restarts of a persistent backend.
    pub seq: u64,
}

/// Domain-level document storage. Listings are sorted by [`DocKey`] order.
///
/// A write is durable, and only then visible to readers, when the [`Durability`] returned by
/// `put_nowait`/`delete_nowait` resolves; the server acknowledges only after that. An error
/// from the durability wait means the write was refused and is never visible (issue #11);
/// `Unavailable` says writes may succeed again later.
pub trait DocumentStore: Send + Sync + 'static {
    fn get(&self, key: &DocKey) -> Result<Option<StoredDocument>, StorageError>;
    /// Atomic: fails with [`StorageError::PreconditionFailed`] (storing nothing) when `expect`
    /// does not hold. Cheap enough to call on a runtime thread: it never waits for the disk.
    fn put_nowait(
        &self,
        key: &DocKey,
        expect: &Expect,
        body: &str,
        etag: &str,
        modified_ms: u64,
    ) -> Result<(Committed, Durability), StorageError>;
    /// `Ok(None)` when the document did not exist and `expect` allowed that (`Any` or `Absent`);
    /// `PreconditionFailed` when `expect` fails.
    fn delete_nowait(
        &self,
        key: &DocKey,
        expect: &Expect,
    ) -> Result<Option<(Committed, Durability)>, StorageError>;
    /// [`DocumentStore::put_nowait`], returning once durable. Blocks: not for runtime threads.
    fn put(
        &self,
        key: &DocKey,
        expect: &Expect,
        body: &str,
        etag: &str,
        modified_ms: u64,
    ) -> Result<Committed, StorageError> {
        let (committed, durable) = self.put_nowait(key, expect, body, etag, modified_ms)?;
        durable.wait_blocking()?;
        Ok(committed)
    }
    /// [`DocumentStore::delete_nowait`], returning once durable. Blocks: not for runtime threads.
    fn delete(&self, key: &DocKey, expect: &Expect) -> Result<Option<Committed>, StorageError> {
        match self.delete_nowait(key, expect)? {
            Some((committed, durable)) => {
                durable.wait_blocking()?;
                Ok(Some(committed))
            }
            None => Ok(None),
        }
    }
    /// Every document of one user (all AUIDs).
    fn list_user(&self, xui: &str) -> Result<Vec<DocMeta>, StorageError>;
    /// Every document of one AUID (all users and the global tree).
    fn list_auid(&self, auid: &str) -> Result<Vec<DocMeta>, StorageError>;
    /// True if any document lies under `auid/tree/dir/` (URI-07 subdirectories, OP-03 no-parent).
    /// `dir` uses the same `/`-joined form as [`DocKey::path`]; a trailing `/` is ignored and an
    /// empty `dir` asks about the tree root (the caller treats that as always existing, OP-03).
    fn directory_exists(&self, auid: &str, tree: &TreeKey, dir: &str)
        -> Result<bool, StorageError>;
    /// Sequence number of the last committed change (0 when nothing was ever committed).
    fn last_seq(&self) -> Result<u64, StorageError>;
    /// Makes everything written so far durable; used at shutdown.
    fn flush(&self) -> Result<(), StorageError>;
    /// Whether the store can serve reads and accept writes now (readiness probes).
    fn health(&self) -> Result<(), StorageError> {
        self.last_seq().map(drop)
    }
    /// Why this process can no longer write, if something that cannot be undone in-process
    /// failed; the server then stops (fail-stop) and the next start recovers.
    fn fatal(&self) -> Option<String> {
        None
    }
}

impl DocKey {
    pub fn new(auid: impl Into<String>, tree: TreeKey, path: impl Into<String>) -> Self {
        Self {
            auid: auid.into(),
            tree,
            path: path.into(),
        }
    }

    /// Checks the rules every backend relies on: no NUL anywhere (NUL is the separator of encoded
    /// keys), non-empty AUID and XUI, and a path of non-empty `/`-separated segments.
    pub fn validate(&self) -> Result<(), StorageError> {
        validate_auid(&self.auid)?;
        if let TreeKey::User(xui) = &self.tree {
            validate_xui(xui)?;
        }
        validate_path(&self.path)
    }
}

pub(crate) fn validate_auid(auid: &str) -> Result<(), StorageError> {
    validate_component("AUID", auid)
}

pub(crate) fn validate_xui(xui: &str) -> Result<(), StorageError> {
    validate_component("XUI", xui)
}

pub(crate) fn validate_tree(tree: &TreeKey) -> Result<(), StorageError> {
    match tree {
        TreeKey::Global => Ok(()),
        TreeKey::User(xui) => validate_xui(xui),
    }
}

fn validate_component(what: &str, value: &str) -> Result<(), StorageError> {
    if value.is_empty() {
        return Err(StorageError::InvalidKey(format!("empty {what}")));
    }
    if value.contains('\0') {
        return Err(StorageError::InvalidKey(format!("NUL in {what}")));
    }
    Ok(())
}

pub(crate) fn validate_path(path: &str) -> Result<(), StorageError> {
    validate_component("document path", path)?;
    if path.split('/').any(str::is_empty) {
        return Err(StorageError::InvalidKey(
            "empty segment in document path".into(),
        ));
    }
    Ok(())
}

/// Normalizes the `dir` argument of `directory_exists` into the prefix every document below it
/// starts with: `""` for the tree root, otherwise `"<dir>/"`.
pub(crate) fn directory_prefix(dir: &str) -> Result<String, StorageError> {
    let dir = dir.strip_suffix('/').unwrap_or(dir);
    if dir.is_empty() {
        return Ok(String::new());
    }
    validate_path(dir)?;
    Ok(format!("{dir}/"))
}

/// Checks `expect` against the current ETag (`None`: document absent).
pub(crate) fn check_expect(expect: &Expect, current: Option<&str>) -> Result<(), StorageError> {
    let holds = match (expect, current) {
        (Expect::Any, _) => true,
        (Expect::Absent, current) => current.is_none(),
        (Expect::Etag(want), Some(have)) => want == have,
        (Expect::Etag(_), None) => false,
    };
    if holds {
        Ok(())
    } else {
        Err(StorageError::PreconditionFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // URI-07: document paths are '/'-joined non-empty segments; NUL is reserved as separator.
    #[test]
    fn validate_rejects_nul_empty_and_empty_segments() {
        let ok = DocKey::new("rls-services", TreeKey::User("sip:a@b".into()), "a/b");
        assert_eq!(ok.validate(), Ok(()));
        for bad in [
            DocKey::new("", TreeKey::Global, "index"),
            DocKey::new("a\0b", TreeKey::Global, "index"),
            DocKey::new("auid", TreeKey::User(String::new()), "index"),
            DocKey::new("auid", TreeKey::User("sip:\0".into()), "index"),
            DocKey::new("auid", TreeKey::Global, ""),
            DocKey::new("auid", TreeKey::Global, "in\0dex"),
            DocKey::new("auid", TreeKey::Global, "/index"),
            DocKey::new("auid", TreeKey::Global, "dir/"),
            DocKey::new("auid", TreeKey::Global, "a//b"),
        ] {
            assert!(
                matches!(bad.validate(), Err(StorageError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }

    // OP-03: the tree root is asked for with an empty dir; a trailing '/' is ignored.
    #[test]
    fn directory_prefix_normalizes() {
        assert_eq!(directory_prefix(""), Ok(String::new()));
        assert_eq!(directory_prefix("/"), Ok(String::new()));
        assert_eq!(directory_prefix("a/b"), Ok("a/b/".into()));
        assert_eq!(directory_prefix("a/b/"), Ok("a/b/".into()));
        assert!(directory_prefix("a//b").is_err());
        assert!(directory_prefix("a\0").is_err());
    }

    // RFC 4825 §7.10/§7.11: If-Match / If-None-Match semantics of the CAS precondition.
    #[test]
    fn check_expect_table() {
        use Expect::*;
        assert!(check_expect(&Any, None).is_ok());
        assert!(check_expect(&Any, Some("x")).is_ok());
        assert!(check_expect(&Absent, None).is_ok());
        assert!(check_expect(&Absent, Some("x")).is_err());
        assert!(check_expect(&Etag("x".into()), Some("x")).is_ok());
        assert!(check_expect(&Etag("x".into()), Some("y")).is_err());
        assert!(check_expect(&Etag("x".into()), None).is_err());
    }
}

#[cfg(test)]
mod backend_suites {
    //! The behaviour suite (`suite.rs`) run against every backend.
    use super::suite::document_store_suite;

    document_store_suite!(memory_suite, MemoryStore::new);
    document_store_suite!(sled_suite, || SledStore::open_temporary()
        .expect("temporary sled store"));
    document_store_suite!(sled_small_segments_suite, || {
        SledStore::open_temporary_with(SledOptions {
            journal_segment_bytes: 4096,
            ..SledOptions::default()
        })
        .expect("temporary sled store")
    });
}
