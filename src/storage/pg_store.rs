//! PostgreSQL backend of [`DocumentStore`] (issue #15; RFC 4825 §7.10–§7.11 compare-and-swap,
//! design.md §2 change log): documents and their change records in one database, written
//! together (`synchronous_commit = on`: durable when the commit returns, so before the 2xx)
//! by the node's writer ([`super::pg_writer`]), which commits the writes waiting at once.
//!
//! Every write transaction draws its change numbers under the row lock of `feed_head` and
//! holds it through its commit: changes therefore commit in sequence order, so a reader of
//! `seq > n` never misses a change committed later with a smaller number (the trap of a plain
//! serial column), and a refused write takes no number (no gap). Preconditions are checked
//! under transaction advisory locks of the documents. Work runs on the runtime the store was
//! opened on, so the store is usable from any thread.
//!
//! Several nodes on one database: each commit also sends a notice with its number on the
//! channel of its schema (`xcapd_changes_<schema>`: notices are database-wide, and two
//! deployments may share a database in different schemas), and every store keeps one connection of its own (outside the pool, whose
//! connections would drop notifications) listening, so the change feed of every node wakes
//! for every node's writes; after a lost connection it reads the head again (catch-up: the
//! log is the record, the notice only a wake-up).
//!
//! A writer of a document on one node holds a session advisory lock keyed by the schema and
//! the document ([`DocumentStore::lock_document`]) on a connection of a pool of its own (so
//! lock holders never starve the pool their writes need), so writers on several nodes take
//! turns on a document instead of losing their compare-and-swap. Pool waits are bounded: no
//! connection within the pool wait (`pg_db`) is `Unavailable` (503), never a hang.
//!
//! Reads are served from the node's cache ([`super::pg_read_cache`]) once the node applied
//! the log through a change head read after the read arrived: a task of the store follows the
//! log (each change evicts its document), and this node's own writes keep the version they
//! wrote.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::feed::{check_window, ChangeRetention};
use super::feed_tail::{Slice, Tail};
use super::pg_batch::Write;
use super::pg_db::{to_i64, PgDb};
use super::pg_read_cache::{Barrier, ReadCache};
use super::pg_schema::backend;
use super::pg_writer::{NodeParts, Turns, Writer};
use super::sled_changes::decode;
use super::{
    directory_prefix, validate_auid, validate_tree, validate_xui, ChangeOrigin, ChangeRecord,
    Committed, DocKey, DocMeta, DocumentLock, DocumentStore, Expect, SpeculativeRead, StorageError,
    StoreFuture, StoredDocument, TreeKey,
};

pub struct PgStore {
    db: PgDb,
    /// Commits the writes (batched).
    writer: Writer,
    changed: Arc<watch::Sender<u64>>,
    /// The listening connection's task (ends with the store).
    listener: tokio::task::AbortHandle,
    /// The notice channel of the store's schema.
    channel: Arc<str>,
    /// Documents read, kept while no change of theirs is applied ([`super::pg_read_cache`]).
    cache: Arc<ReadCache>,
    barrier: Barrier,
    /// The task applying the change log to the cache (ends with the store).
    follower: tokio::task::AbortHandle,
    log: NodeLog,
    /// The documents whose turn this node's writers hold (their writes skip the check that
    /// no other node's writer holds it).
    turns: Arc<Turns>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.follower.abort();
    }
}

/// How long a read waits for this node to apply the change log through the head it read
/// before it reads the table instead (the log is read again after a failure).
const APPLY_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Changes the cache's follower reads per page.
const FOLLOW_PAGE: usize = 512;

/// Applies the change log to `cache` (each change evicts its document) whenever the head
/// rises, until the store ends.
async fn follow(db: PgDb, cache: Arc<ReadCache>, log: NodeLog) {
    let mut wake = log.changed.subscribe();
    loop {
        let target = *wake.borrow_and_update();
        while cache.applied() < target {
            match log.read(&db, cache.applied(), FOLLOW_PAGE).await {
                Ok(page) if !page.is_empty() => {
                    let last = page.last().map_or(0, |r| r.seq);
                    cache.apply(page.iter().map(|r| (&r.key, r.seq)), last);
                }
                Err(StorageError::ChangesTrimmed { .. }) => match feed_head(&db).await {
                    Ok(head) => {
                        log.recent.forget(head, 0);
                        cache.reset(head);
                    }
                    Err(_) => tokio::time::sleep(RELISTEN / 10).await,
                },
                // Not readable yet, or the database is away: look again shortly.
                Ok(_) | Err(_) => tokio::time::sleep(RELISTEN / 10).await,
            }
        }
        if wake.changed().await.is_err() {
            return;
        }
    }
}

/// The change log as this node sees it: its tail of the log in memory (what its writer
/// committed and what it read, with what retention removed dropped as the database drops it)
/// before the table, and the wake-up of its readers.
#[derive(Clone)]
struct NodeLog {
    recent: Arc<Tail>,
    changed: Arc<watch::Sender<u64>>,
}

impl NodeLog {
    /// Up to `limit` changes after `after`, in order: from the tail when it holds the next
    /// one (a change another node committed is read from the table, then kept).
    async fn read(
        &self,
        db: &PgDb,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>, StorageError> {
        if let Slice::Records(page) = self.recent.slice(after, limit) {
            return Ok(page);
        }
        let (trimmed, page) = read_changes(db, after, limit).await?;
        if !page.is_empty() {
            self.recent.append(after, page.clone());
            // The log's own word on what retention removed, as of this read.
            self.recent.forget(trimmed, 0);
        }
        Ok(page)
    }
}

/// Up to `limit` changes after `after`, in order, and how far retention trimmed the log;
/// refused when retention trimmed some of them.
async fn read_changes(
    db: &PgDb,
    after: u64,
    limit: usize,
) -> Result<(u64, Vec<ChangeRecord>), StorageError> {
    let (from, limit) = (to_i64(after)?, to_i64(limit as u64)?);
    db.with(move |client| async move {
        // One statement, so one snapshot for the window and the rows; the window comes
        // with every row (and alone when there is none).
        let sql = "SELECT f.trimmed_through, c.seq, c.record FROM feed_head f \
                   LEFT JOIN LATERAL (SELECT seq, record FROM changes WHERE seq > $1 \
                                      ORDER BY seq LIMIT $2) c ON true \
                   WHERE f.id = 1 ORDER BY c.seq";
        let rows = client
            .query(
                &client.prepare_cached(sql).await.map_err(backend)?,
                &[&from, &limit],
            )
            .await
            .map_err(backend)?;
        let trimmed = rows.first().map_or(0, |r| r.get::<_, i64>(0));
        check_window(after, trimmed as u64)?;
        let page = rows
            .iter()
            .filter_map(|r| {
                let seq = r.get::<_, Option<i64>>(1)?;
                Some(decode(seq as u64, r.get::<_, &[u8]>(2)))
            })
            .collect::<Result<_, _>>()?;
        Ok((trimmed as u64, page))
    })
    .await
}

/// The change notice channel of `schema`.
fn channel_of(schema: &str) -> String {
    format!("xcapd_changes_{schema}")
}

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How long a node waits before it connects again to listen.
const RELISTEN: std::time::Duration = std::time::Duration::from_secs(1);

/// Raises the head the feed readers watch to `seq` (never lowers it).
pub(super) fn raise(changed: &watch::Sender<u64>, seq: u64) {
    changed.send_if_modified(|head| {
        let newer = seq > *head;
        if newer {
            *head = seq;
        }
        newer
    });
}

/// Listens for other nodes' commits until the store ends: one connection of its own; after
/// each (re)connection the head is read again, so notices lost meanwhile are caught up.
async fn listen(
    config: tokio_postgres::Config,
    channel: Arc<str>,
    changed: Arc<watch::Sender<u64>>,
    writer: Arc<str>,
) {
    loop {
        let own = writer.clone();
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (notices, mut received) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                while let Some(Ok(message)) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message {
                        // "<head> <writer>": this node's writer raises its own heads itself,
                        // once its cache and tail hold the batch (so its readers need not
                        // read the batch back from the log).
                        let mut parts = n.payload().split(' ');
                        let head = parts.next().and_then(|h| h.parse::<u64>().ok());
                        if parts.next() == Some(&*own) {
                            continue;
                        }
                        if notices.send(head).is_err() {
                            break;
                        }
                    }
                }
            });
            let listening = client
                .batch_execute(&format!("LISTEN {}", quoted(&channel)))
                .await;
            let head = client
                .query_one("SELECT seq FROM feed_head WHERE id = 1", &[])
                .await;
            if let (Ok(()), Ok(head)) = (listening, head) {
                raise(&changed, head.get::<_, i64>(0) as u64);
                while let Some(notice) = received.recv().await {
                    if let Some(seq) = notice {
                        raise(&changed, seq);
                    }
                }
            }
            driver.abort();
            tracing::warn!(target: "xcapd::storage", "the PostgreSQL change listener lost its connection");
        }
        tokio::time::sleep(RELISTEN).await;
    }
}

/// The `tree` column of a tree: '' for the global tree, else the XUI (never empty).
pub(super) fn tree_column(tree: &TreeKey) -> &str {
    match tree {
        TreeKey::Global => "",
        TreeKey::User(xui) => xui,
    }
}

fn tree_of(column: String) -> TreeKey {
    if column.is_empty() {
        TreeKey::Global
    } else {
        TreeKey::User(column)
    }
}

/// The last change's number.
async fn feed_head(db: &PgDb) -> Result<u64, StorageError> {
    db.with(|client| async move {
        let sql = "SELECT seq FROM feed_head WHERE id = 1";
        let row = client
            .query_one(&client.prepare_cached(sql).await.map_err(backend)?, &[])
            .await
            .map_err(backend)?;
        Ok(row.get::<_, i64>(0) as u64)
    })
    .await
}

impl PgStore {
    /// The document store of `db`, listening for other nodes' commits from now on.
    /// `cache_bytes` bounds the documents kept for reads.
    pub async fn open(
        db: &PgDb,
        retention: ChangeRetention,
        cache_bytes: usize,
    ) -> Result<PgStore, StorageError> {
        let head = feed_head(db).await?;
        let cache = Arc::new(ReadCache::new(cache_bytes, head));
        let channel: Arc<str> = Arc::from(channel_of(db.schema()));
        let changed = Arc::new(watch::channel(head).0);
        // Names this store's writer in its notices.
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id)
            .map_err(|e| StorageError::Backend(format!("no random writer id: {e}")))?;
        let writer_id: Arc<str> = Arc::from(format!("{:016x}", u64::from_be_bytes(id)));
        let listener = db
            .runtime()
            .spawn(listen(
                db.config().clone(),
                channel.clone(),
                changed.clone(),
                writer_id.clone(),
            ))
            .abort_handle();
        let log = NodeLog {
            recent: Arc::default(),
            changed: changed.clone(),
        };
        let follower = db
            .runtime()
            .spawn(follow(db.clone(), cache.clone(), log.clone()))
            .abort_handle();
        let turns: Arc<Turns> = Arc::default();
        let writer = Writer::start(
            db.clone(),
            retention,
            channel.clone(),
            changed.clone(),
            NodeParts {
                recent: log.recent.clone(),
                cache: cache.clone(),
                turns: turns.clone(),
                id: writer_id,
            },
        );
        Ok(PgStore {
            writer,
            db: db.clone(),
            changed,
            listener,
            channel,
            cache,
            barrier: Barrier::default(),
            follower,
            log,
            turns,
        })
    }

    async fn with<T, F, Fut>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        self.db.with(work).await
    }

    /// The listing `sql` selects with `value` as its one parameter, each row made an entry
    /// by `meta`.
    async fn list_by(
        &self,
        sql: &'static str,
        value: String,
        meta: impl Fn(&tokio_postgres::Row) -> DocMeta + Send + 'static,
    ) -> Result<Vec<DocMeta>, StorageError> {
        self.with(move |client| async move {
            let sql = client.prepare_cached(sql).await.map_err(backend)?;
            let rows = client.query(&sql, &[&value]).await.map_err(backend)?;
            Ok(rows.iter().map(meta).collect())
        })
        .await
    }

    /// `key`'s stored version, read from the table.
    async fn read(&self, key: &DocKey) -> Result<Option<StoredDocument>, StorageError> {
        let key = key.clone();
        self.with(move |client| async move {
            let sql = "SELECT body, etag, modified_ms FROM documents \
                       WHERE auid = $1 AND tree = $2 AND path = $3";
            let row = client
                .query_opt(
                    &client.prepare_cached(sql).await.map_err(backend)?,
                    &[&key.auid, &tree_column(&key.tree), &key.path],
                )
                .await
                .map_err(backend)?;
            Ok(row.map(|row| StoredDocument {
                body: Arc::from(row.get::<_, &str>(0)),
                etag: row.get(1),
                modified_ms: row.get::<_, i64>(2) as u64,
            }))
        })
        .await
    }

    /// `key`'s version read from the table (current), kept in the cache unless a change of it
    /// is applied meanwhile; held as of the change applied when the read began, so any later
    /// change evicts it.
    async fn fill(&self, key: &DocKey) -> Result<Option<StoredDocument>, StorageError> {
        let applied = self.cache.applied();
        let ticket = self.cache.start_fill(key);
        let doc = self.read(key).await?;
        self.cache.fill(key, ticket, applied, doc.as_ref());
        Ok(doc)
    }

    /// One write, committed by the writer with whatever else waits.
    async fn write(
        &self,
        key: &DocKey,
        expect: &Expect,
        change: Option<(Arc<str>, String, u64)>,
        origin: &ChangeOrigin,
    ) -> Result<Option<Committed>, StorageError> {
        key.validate()?;
        self.writer
            .write(Write {
                key: key.clone(),
                expect: expect.clone(),
                change,
                origin: origin.clone(),
            })
            .await
    }
}

/// The advisory lock number of `key` in the schema whose notice channel is `channel`
/// (advisory locks are database-wide): 64 bits of a SHA-256.
pub(super) fn lock_id(channel: &str, key: &DocKey) -> i64 {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [channel, &key.auid, tree_column(&key.tree), &key.path] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(id)
}

fn meta_of(row: &tokio_postgres::Row, auid: String, tree: TreeKey) -> DocMeta {
    let path: String = row.get("path");
    DocMeta {
        key: DocKey::new(auid, tree, path),
        etag: row.get("etag"),
        modified_ms: row.get::<_, i64>("modified_ms") as u64,
        size: row.get::<_, i32>("size") as u64,
    }
}

impl DocumentStore for PgStore {
    /// A held version is served once the log is applied through the change head read after
    /// the call; a miss reads the table, which is current without that head read (one round
    /// trip, as without the cache).
    fn get<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, Option<StoredDocument>> {
        Box::pin(async move {
            key.validate()?;
            if !self.cache.holds(key) {
                return self.fill(key).await;
            }
            let head = self.barrier.head(|| feed_head(&self.db)).await?;
            // The notice of that head may not have arrived yet: wake the follower now.
            raise(&self.changed, head);
            if self.cache.applied() < head {
                // Timed on the database's runtime: the caller may run on any.
                let cache = self.cache.clone();
                let wait = async move { cache.wait_applied(head, APPLY_PATIENCE).await };
                if !self.db.runtime().spawn(wait).await.unwrap_or(false) {
                    return self.read(key).await;
                }
            }
            if let Some(doc) = self.cache.lookup(key) {
                return Ok(Some(doc));
            }
            self.fill(key).await
        })
    }

    /// The cached version without the head read (a version another node replaced may still
    /// be held for the moment its change takes to reach this node); else the table's.
    fn get_speculative<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, SpeculativeRead> {
        Box::pin(async move {
            key.validate()?;
            if let Some(doc) = self.cache.lookup(key) {
                return Ok(SpeculativeRead {
                    doc: Some(doc),
                    current: false,
                });
            }
            let doc = self.get(key).await?;
            Ok(SpeculativeRead { doc, current: true })
        })
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
        Box::pin(async move {
            // One copy of the body, shared by the batch and the node's cache (the writer
            // holds the new version there).
            let change = Some((Arc::from(body), etag.to_string(), modified_ms));
            self.write(key, expect, change, origin)
                .await?
                .ok_or_else(|| StorageError::Backend("a put committed nothing".into()))
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a DocKey,
        expect: &'a Expect,
        origin: &'a ChangeOrigin,
    ) -> StoreFuture<'a, Option<Committed>> {
        Box::pin(async move { self.write(key, expect, None, origin).await })
    }

    fn list_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, Vec<DocMeta>> {
        Box::pin(async move {
            validate_xui(xui)?;
            let tree = TreeKey::User(xui.to_string());
            let sql = "SELECT auid, path, etag, modified_ms, octet_length(body) AS size \
                       FROM documents WHERE tree = $1 ORDER BY auid, path";
            self.list_by(sql, xui.to_string(), move |r| {
                meta_of(r, r.get("auid"), tree.clone())
            })
            .await
        })
    }

    fn list_auid<'a>(&'a self, auid: &'a str) -> StoreFuture<'a, Vec<DocMeta>> {
        Box::pin(async move {
            validate_auid(auid)?;
            let owned = auid.to_string();
            let sql = "SELECT tree, path, etag, modified_ms, octet_length(body) AS size \
                       FROM documents WHERE auid = $1 ORDER BY tree, path";
            self.list_by(sql, auid.to_string(), move |r| {
                meta_of(r, owned.clone(), tree_of(r.get("tree")))
            })
            .await
        })
    }

    fn directory_exists<'a>(
        &'a self,
        auid: &'a str,
        tree: &'a TreeKey,
        dir: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_auid(auid)?;
            validate_tree(tree)?;
            let prefix = directory_prefix(dir)?;
            let (auid, tree) = (auid.to_string(), tree_column(tree).to_string());
            self.with(move |client| async move {
                let row = client
                    .query_opt(
                        &client
                            .prepare_cached(
                                "SELECT 1 FROM documents WHERE auid = $1 AND tree = $2 \
                         AND starts_with(path, $3) LIMIT 1",
                            )
                            .await
                            .map_err(backend)?,
                        &[&auid, &tree, &prefix],
                    )
                    .await
                    .map_err(backend)?;
                Ok(row.is_some())
            })
            .await
        })
    }

    fn last_seq(&self) -> StoreFuture<'_, u64> {
        Box::pin(feed_head(&self.db))
    }

    fn changes_since(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<ChangeRecord>> {
        Box::pin(self.log.read(&self.db, after, limit))
    }

    fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        // Every commit was durable when it returned.
        Box::pin(std::future::ready(Ok(())))
    }

    fn lock_document<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, Option<DocumentLock>> {
        Box::pin(async move {
            key.validate()?;
            let held = self.db.advisory_lock(lock_id(&self.channel, key)).await?;
            // Counted after the lock is held, and dropped before it is released.
            let counted = self.turns.hold(key);
            Ok(Some(DocumentLock::new((counted, held))))
        })
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.with(|client| async move {
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| StorageError::Unavailable(format!("database: {e}")))?;
            Ok(())
        }))
    }
}
