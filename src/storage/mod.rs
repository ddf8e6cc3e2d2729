//! Storage adapter (layer L1), async domain traits and their backends (design.md §4):
//! - [`DocumentStore`]: XCAP documents (RFC 4825 §6: AUID, tree — `global` or `users/<XUI>` —
//!   and document path, §6.2 / URI-07) with ETag compare-and-swap writes (§7.10–§7.11, OP-02,
//!   OP-05), each committed with its change record; read back in order through
//!   [`feed::ChangeFeed`];
//! - [`credentials::CredentialStore`], [`subscriptions::SubscriptionStore`] (SIP
//!   subscriptions), [`messages::MessageStore`] (deferred IMs, history, charging records);
//! - backends: memory (tests, ephemeral deployments), sled (the embedded default) and
//!   PostgreSQL ([`pg_store`], issue #15: documents and the change log so far);
//!   [`Blocking`] is the synchronous view for code outside the runtime.
//!
//! Every backend passes the behaviour suites (`suite.rs`, `suite_feed.rs`, `suite_sip.rs`), so a
//! new backend (PostgreSQL) implements the traits and runs the same suites. Keys are never file
//! paths: each backend encodes [`DocKey`] itself after [`DocKey::validate`] has checked it.

mod blocking;
mod body_files;
pub mod charging;
pub mod credentials;
mod durability;
pub mod feed;
mod feed_tail;
pub(crate) mod journal;
pub mod memory;
pub mod messages;
mod pg_batch;
pub mod pg_credentials;
pub mod pg_db;
pub mod pg_messages;
mod pg_read_cache;
pub mod pg_records;
pub mod pg_schema;
pub mod pg_store;
pub mod pg_subscriptions;
#[cfg(all(test, xcapd_pg))]
mod pg_test;
mod pg_writer;
pub mod registrations;
mod sled_apply;
mod sled_changes;
pub(crate) mod sled_common;
pub mod sled_credentials;
pub mod sled_messages;
mod sled_overlay;
mod sled_records;
pub mod sled_store;
pub mod sled_subscriptions;
mod sled_writer;
pub mod space;
pub mod subscription_log;
pub mod subscriptions;
#[cfg(test)]
mod suite;
#[cfg(test)]
mod suite_feed;
#[cfg(test)]
mod suite_sip;
mod wal;

pub use blocking::{block_on, off_runtime, Blocking};
pub use durability::Durability;
pub use feed::{ChangeFeed, ChangeRetention, FeedCursor};
pub use memory::MemoryStore;
pub use sled_store::{SledOptions, SledStore};

use std::sync::Arc;

pub use crate::event::{ChangeOrigin, ChangeRecord};

pub(crate) use crate::xcap::keys::{
    directory_prefix, validate_auid, validate_tree, validate_xui, KeyError,
};
pub use crate::xcap::keys::{DocKey, TreeKey};

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
    /// The change log no longer holds the changes asked for: every change up to and including
    /// `through` was trimmed (retention). The consumer must resync from current documents.
    #[error("changes up to {through} were trimmed from the change log")]
    ChangesTrimmed { through: u64 },
}

impl From<KeyError> for StorageError {
    fn from(e: KeyError) -> Self {
        StorageError::InvalidKey(e.0)
    }
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

/// What every storage method that may do I/O returns: the domain stores are async because a
/// database call is I/O (design.md §4); the future is boxed so the traits stay usable as `dyn`.
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// Domain-level document storage. Listings are sorted by [`DocKey`] order.
///
/// A write resolves once it is durable, and only then is it visible to readers; the server
/// acknowledges only after that. An error means the write was refused and is never visible
/// (issue #11); `Unavailable` says writes may succeed again later. No method blocks the
/// calling thread on I/O: a backend that must wait does so in its future.
pub trait DocumentStore: Send + Sync + 'static {
    /// The current version of `key`: a read that starts after a write was acknowledged (by
    /// any process sharing the store) sees that write or a later one.
    fn get<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, Option<StoredDocument>>;
    /// A version of `key` for a read-modify-write whose commit compares and swaps on it: it
    /// may lag a write acknowledged by another process (a stale version only loses the
    /// compare-and-swap), which spares a store shared by several processes the round trip
    /// that makes [`get`](Self::get) current. [`SpeculativeRead::current`] says whether it can
    /// lag: a caller must not answer an error from a version that can.
    fn get_speculative<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, SpeculativeRead> {
        Box::pin(async move {
            let doc = self.get(key).await?;
            Ok(SpeculativeRead { doc, current: true })
        })
    }
    /// Atomic: fails with [`StorageError::PreconditionFailed`] (storing nothing) when `expect`
    /// does not hold. The change record (with `origin`) is written in the same commit as the
    /// document.
    #[allow(clippy::too_many_arguments)] // one document version and its precondition
    fn put<'a>(
        &'a self,
        key: &'a DocKey,
        expect: &'a Expect,
        body: &'a str,
        etag: &'a str,
        modified_ms: u64,
        origin: &'a ChangeOrigin,
    ) -> StoreFuture<'a, Committed>;
    /// `Ok(None)` when the document did not exist and `expect` allowed that (`Any` or `Absent`);
    /// `PreconditionFailed` when `expect` fails.
    fn delete<'a>(
        &'a self,
        key: &'a DocKey,
        expect: &'a Expect,
        origin: &'a ChangeOrigin,
    ) -> StoreFuture<'a, Option<Committed>>;
    /// Every document of one user (all AUIDs).
    fn list_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, Vec<DocMeta>>;
    /// Every document of one AUID (all users and the global tree).
    fn list_auid<'a>(&'a self, auid: &'a str) -> StoreFuture<'a, Vec<DocMeta>>;
    /// True if any document lies under `auid/tree/dir/` (URI-07 subdirectories, OP-03 no-parent).
    /// `dir` uses the same `/`-joined form as [`DocKey::path`]; a trailing `/` is ignored and an
    /// empty `dir` asks about the tree root (the caller treats that as always existing, OP-03).
    fn directory_exists<'a>(
        &'a self,
        auid: &'a str,
        tree: &'a TreeKey,
        dir: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// Sequence number of the last committed change (0 when nothing was ever committed).
    fn last_seq(&self) -> StoreFuture<'_, u64>;
    /// The change log (design.md §2): committed, durable changes with `seq > after`, oldest
    /// first, at most `limit`, gap-free. [`StorageError::ChangesTrimmed`] when retention
    /// already removed change `after + 1`. Read through [`feed::ChangeFeed`].
    fn changes_since(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<ChangeRecord>>;
    /// The wake-up of feed readers: holds the newest seq `changes_since` can return. Only a
    /// hint (the log is the record); it never goes backwards.
    fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Makes everything written so far durable; used at shutdown.
    fn flush(&self) -> StoreFuture<'_, ()>;
    /// A writer's hold on `key` across the processes sharing this store (several nodes on one
    /// database): while it lives no other process's writer of that document holds one, so
    /// read-modify-write edits from several nodes take turns instead of losing their
    /// compare-and-swap. `None` from a store one process uses (its writers' own per-document
    /// lock is enough). No default: a wrapper must pass it on.
    fn lock_document<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, Option<DocumentLock>>;
    /// Whether the store can serve reads and accept writes now (readiness probes).
    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.last_seq().await.map(drop) })
    }
    /// Why this process can no longer write, if something that cannot be undone in-process
    /// failed; the server then stops (fail-stop) and the next start recovers.
    fn fatal(&self) -> Option<String> {
        None
    }
}

/// What [`DocumentStore::get_speculative`] read.
#[derive(Debug, Clone)]
pub struct SpeculativeRead {
    pub doc: Option<StoredDocument>,
    /// True when `doc` is as current as [`DocumentStore::get`]'s answer would be.
    pub current: bool,
}

/// A held [`DocumentStore::lock_document`]; released when dropped.
pub struct DocumentLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl DocumentLock {
    pub fn new(held: impl Send + Sync + 'static) -> DocumentLock {
        DocumentLock(Box::new(held))
    }
}

/// Wall-clock milliseconds since the Unix epoch (document mtimes, change records).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
    use super::suite_feed::change_feed_suite;
    use super::suite_sip::{message_store_suite, subscription_store_suite};
    use super::{MemoryStore, SledOptions, SledStore};

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
    change_feed_suite!(memory_feed, MemoryStore::with_retention);
    #[cfg(xcapd_pg)]
    document_store_suite!(pg_suite, || crate::storage::pg_test::store(
        crate::storage::ChangeRetention::default()
    ));
    #[cfg(xcapd_pg)]
    change_feed_suite!(pg_feed, crate::storage::pg_test::store);
    change_feed_suite!(sled_feed, |retention: ChangeRetention| {
        SledStore::open_temporary_with(SledOptions {
            change_retention: retention,
            ..SledOptions::default()
        })
        .expect("temporary sled store")
    });

    subscription_store_suite!(
        memory_subscriptions,
        crate::storage::subscriptions::MemorySubscriptions::new
    );
    message_store_suite!(
        memory_messages,
        crate::storage::messages::MemoryMessages::new
    );
    /// A sled database removed when its last handle drops (the SIP-side stores normally
    /// share the document store's, `SledStore::db`).
    fn sled_db() -> sled::Db {
        sled::Config::new()
            .temporary(true)
            .open()
            .expect("temporary sled database")
    }
    subscription_store_suite!(sled_subscriptions, || {
        crate::storage::sled_subscriptions::SledSubscriptions::new(&sled_db())
            .expect("subscriptions")
    });
    subscription_store_suite!(log_subscriptions, || {
        crate::storage::subscription_log::LogSubscriptions::open_temporary().expect("subscriptions")
    });
    #[cfg(xcapd_pg)]
    subscription_store_suite!(pg_subscriptions, || {
        crate::storage::pg_subscriptions::PgSubscriptions::new(
            crate::storage::pg_test::db(),
            "node-a",
        )
    });
    #[cfg(xcapd_pg)]
    message_store_suite!(pg_messages, || {
        crate::storage::pg_messages::PgMessages::new(crate::storage::pg_test::db())
    });
    message_store_suite!(sled_messages, || {
        crate::storage::sled_messages::SledMessages::new(&sled_db()).expect("messages")
    });
}
