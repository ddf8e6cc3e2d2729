//! PostgreSQL backend of [`DocumentStore`] (issue #15, first step; RFC 4825 §7.10–§7.11
//! compare-and-swap, design.md §2 change log): documents and their change records in one
//! database, each write one transaction that commits both (`synchronous_commit = on`: durable
//! when the commit returns, so before the 2xx).
//!
//! Every writer first takes the row lock of `feed_head` and draws the next sequence number
//! there: changes therefore commit in sequence order, so a reader of `seq > n` never misses a
//! change committed later with a smaller number (the trap of a plain serial column), and a
//! refused write rolls its number back (no gap). The precondition is checked under that lock.
//! This serializes writers (one commit at a time); a later step may relax it. Work runs on the
//! runtime the store was opened on, so the store is usable from any thread.
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

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::feed::{check_window, ChangeRetention};
use super::pg_db::{to_i64, unavailable, PgDb};
use super::pg_schema::backend;
use super::sled_changes::{decode, encode};
use super::{
    check_expect, directory_prefix, now_ms, validate_auid, validate_tree, validate_xui,
    ChangeOrigin, ChangeRecord, Committed, DocKey, DocMeta, DocumentLock, DocumentStore, Expect,
    StorageError, StoreFuture, StoredDocument, TreeKey, WriteOutcome,
};

/// Changes the age bound removes per write at most (the rest with the next writes).
const TRIM_BATCH: i64 = 1000;

pub struct PgStore {
    db: PgDb,
    /// Connections holding document locks.
    locks: Pool,
    retention: ChangeRetention,
    changed: Arc<watch::Sender<u64>>,
    /// The listening connection's task (ends with the store).
    listener: tokio::task::AbortHandle,
    /// The notice channel of the store's schema.
    channel: Arc<str>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
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
fn raise(changed: &watch::Sender<u64>, seq: u64) {
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
) {
    loop {
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (notices, mut received) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                while let Some(Ok(message)) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message {
                        if notices.send(n.payload().parse::<u64>().ok()).is_err() {
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
fn tree_column(tree: &TreeKey) -> &str {
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

impl PgStore {
    /// The document store of `db`, listening for other nodes' commits from now on.
    pub async fn open(db: &PgDb, retention: ChangeRetention) -> Result<PgStore, StorageError> {
        let head: i64 = db
            .with(|client| async move {
                let row = client
                    .query_one("SELECT seq FROM feed_head WHERE id = 1", &[])
                    .await
                    .map_err(backend)?;
                Ok(row.get(0))
            })
            .await?;
        let channel: Arc<str> = Arc::from(channel_of(db.schema()));
        let changed = Arc::new(watch::channel(head as u64).0);
        let listener = db
            .runtime()
            .spawn(listen(
                db.config().clone(),
                channel.clone(),
                changed.clone(),
            ))
            .abort_handle();
        Ok(PgStore {
            locks: db.new_pool()?,
            db: db.clone(),
            retention,
            changed,
            listener,
            channel,
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
            let rows = client.query(sql, &[&value]).await.map_err(backend)?;
            Ok(rows.iter().map(meta).collect())
        })
        .await
    }

    /// One write: takes the feed lock and the next number, checks `expect`, applies `change`
    /// (`None`: delete) and logs it, trims the log, commits.
    async fn write(
        &self,
        key: &DocKey,
        expect: &Expect,
        change: Option<(String, String, u64)>,
        origin: &ChangeOrigin,
    ) -> Result<Option<Committed>, StorageError> {
        key.validate()?;
        let (key, expect, origin) = (key.clone(), expect.clone(), origin.clone());
        let (retention, channel) = (self.retention, self.channel.clone());
        let committed = self
            .with(move |mut client| async move {
                let tx = client.transaction().await.map_err(backend)?;
                let seq: i64 = tx
                    .query_one(
                        "UPDATE feed_head SET seq = seq + 1 WHERE id = 1 RETURNING seq",
                        &[],
                    )
                    .await
                    .map_err(backend)?
                    .get(0);
                let tree = tree_column(&key.tree);
                let previous: Option<String> = tx
                    .query_opt(
                        "SELECT etag FROM documents WHERE auid = $1 AND tree = $2 AND path = $3",
                        &[&key.auid, &tree, &key.path],
                    )
                    .await
                    .map_err(backend)?
                    .map(|row| row.get(0));
                // A refused write rolls back with the transaction, its number included.
                check_expect(&expect, previous.as_deref())?;
                let now = now_ms();
                let outcome =
                    match &change {
                        None if previous.is_none() => return Ok(None),
                        None => {
                            tx.execute(
                                "DELETE FROM documents WHERE auid = $1 AND tree = $2 AND path = $3",
                                &[&key.auid, &tree, &key.path],
                            )
                            .await
                            .map_err(backend)?;
                            WriteOutcome::Deleted
                        }
                        Some((body, etag, modified_ms)) => {
                            tx.execute(
                            "INSERT INTO documents (auid, tree, path, body, etag, modified_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6) \
                             ON CONFLICT (auid, tree, path) DO UPDATE \
                             SET body = EXCLUDED.body, etag = EXCLUDED.etag, \
                                 modified_ms = EXCLUDED.modified_ms",
                            &[&key.auid, &tree, &key.path, body, etag, &to_i64(*modified_ms)?],
                        )
                        .await
                        .map_err(backend)?;
                            if previous.is_some() {
                                WriteOutcome::Replaced
                            } else {
                                WriteOutcome::Created
                            }
                        }
                    };
                let new_etag = change.as_ref().map(|(_, etag, _)| etag.as_str());
                let record = encode(&key, previous.as_deref(), new_etag, now, &origin)?;
                tx.execute(
                    "INSERT INTO changes (seq, at_ms, record) VALUES ($1, $2, $3)",
                    &[&seq, &to_i64(now)?, &record],
                )
                .await
                .map_err(backend)?;
                trim(&tx, seq, now, &retention).await?;
                // Delivered at commit, to every node listening (this one included).
                tx.execute("SELECT pg_notify($1, $2)", &[&&*channel, &seq.to_string()])
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                Ok(Some(Committed {
                    outcome,
                    previous_etag: previous,
                    seq: seq as u64,
                }))
            })
            .await?;
        if let Some(c) = &committed {
            raise(&self.changed, c.seq);
        }
        Ok(committed)
    }
}

/// Retention (within the writer's transaction): changes beyond `max_entries` behind `seq`,
/// and the oldest past `max_age` (a prefix: commit times follow the sequence), are removed;
/// `trimmed_through` follows. Every write runs this: each part reads by the primary key from
/// the oldest change only, and the age part looks further only when the oldest is expired
/// (a filter on commit times alone would read the whole log when nothing is to go).
async fn trim(
    tx: &tokio_postgres::Transaction<'_>,
    seq: i64,
    now: u64,
    retention: &ChangeRetention,
) -> Result<(), StorageError> {
    let by_count = seq.saturating_sub(to_i64(retention.max_entries)?);
    let cutoff = to_i64(now.saturating_sub(retention.max_age.as_millis() as u64))?;
    let gone: Option<i64> = tx
        .query_one(
            "WITH gone AS (DELETE FROM changes WHERE seq IN ( \
                 SELECT seq FROM changes WHERE seq <= $1 \
                 UNION ALL \
                 SELECT seq FROM (SELECT seq, at_ms FROM changes ORDER BY seq LIMIT $3) oldest \
                 WHERE at_ms < $2 AND (SELECT at_ms FROM changes ORDER BY seq LIMIT 1) < $2) \
               RETURNING seq) \
             SELECT max(seq) FROM gone",
            &[&by_count, &cutoff, &TRIM_BATCH],
        )
        .await
        .map_err(backend)?
        .get(0);
    if let Some(through) = gone {
        tx.execute(
            "UPDATE feed_head SET trimmed_through = greatest(trimmed_through, $1) WHERE id = 1",
            &[&through],
        )
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// A held advisory lock: its connection goes back to the pool once unlocked (or is closed,
/// which releases it, when unlocking fails).
struct AdvisoryLock {
    client: Option<deadpool_postgres::Object>,
    id: i64,
    runtime: Handle,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let (Some(client), id) = (self.client.take(), self.id) else {
            return;
        };
        self.runtime.spawn(async move {
            if client
                .execute("SELECT pg_advisory_unlock($1)", &[&id])
                .await
                .is_err()
            {
                drop(deadpool_postgres::Object::take(client));
            }
        });
    }
}

/// The advisory lock number of `key` in the schema whose notice channel is `channel`
/// (advisory locks are database-wide): 64 bits of a SHA-256.
fn lock_id(channel: &str, key: &DocKey) -> i64 {
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
    fn get<'a>(&'a self, key: &'a DocKey) -> StoreFuture<'a, Option<StoredDocument>> {
        Box::pin(async move {
            key.validate()?;
            let key = key.clone();
            self.with(move |client| async move {
                let row = client
                    .query_opt(
                        "SELECT body, etag, modified_ms FROM documents \
                         WHERE auid = $1 AND tree = $2 AND path = $3",
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
            let change = Some((body.to_string(), etag.to_string(), modified_ms));
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
        Box::pin(self.write(key, expect, None, origin))
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
                        "SELECT 1 FROM documents WHERE auid = $1 AND tree = $2 \
                         AND starts_with(path, $3) LIMIT 1",
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
        Box::pin(self.with(|client| async move {
            let row = client
                .query_one("SELECT seq FROM feed_head WHERE id = 1", &[])
                .await
                .map_err(backend)?;
            Ok(row.get::<_, i64>(0) as u64)
        }))
    }

    fn changes_since(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<ChangeRecord>> {
        Box::pin(async move {
            let (from, limit) = (to_i64(after)?, to_i64(limit as u64)?);
            self.with(move |mut client| async move {
                // One snapshot for the window and the rows.
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(backend)?;
                let trimmed: i64 = tx
                    .query_one("SELECT trimmed_through FROM feed_head WHERE id = 1", &[])
                    .await
                    .map_err(backend)?
                    .get(0);
                check_window(after, trimmed as u64)?;
                let rows = tx
                    .query(
                        "SELECT seq, record FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                        &[&from, &limit],
                    )
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                rows.iter()
                    .map(|r| decode(r.get::<_, i64>(0) as u64, r.get::<_, &[u8]>(1)))
                    .collect()
            })
            .await
        })
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
            let id = lock_id(&self.channel, key);
            let locks = self.locks.clone();
            // The guard is made in the task: if this request is dropped meanwhile, the lock
            // it got is still released.
            let held = self
                .db
                .runtime()
                .spawn(async move {
                    let client = locks.get().await.map_err(unavailable)?;
                    client
                        .execute("SELECT pg_advisory_lock($1)", &[&id])
                        .await
                        .map_err(backend)?;
                    Ok::<_, StorageError>(AdvisoryLock {
                        client: Some(client),
                        id,
                        runtime: Handle::current(),
                    })
                })
                .await
                .map_err(|e| StorageError::Backend(format!("database task: {e}")))??;
            Ok(Some(DocumentLock::new(held)))
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
