//! The document writer of a PostgreSQL node (issue #15 throughput; RFC 4825 §7.10–§7.11
//! compare-and-swap, design.md §2 change log): the writes waiting when a writer is free are
//! committed together, in one transaction (group commit: one WAL flush for the batch, where a
//! transaction per write paid one each, one at a time).
//!
//! A batch first takes transaction advisory locks of its documents (in key order: batches of
//! several writers and nodes never wait on each other in a cycle), reads their ETags, checks
//! each write's precondition in arrival order against them and the batch's earlier writes, and
//! stores the documents' final states; a refused write is answered as refused and the others
//! go on. Then, in one round trip, it stores the documents' final states, takes the row lock of
//! `feed_head` (last, so it is held only for the rest of that round trip), draws consecutive
//! change numbers and logs the changes with them (numbered by the database, one statement),
//! trims the log, notifies the other nodes and commits, holding that lock to the end: changes
//! commit in number order, with no gaps. One batch per node is in flight: the
//! writes arriving meanwhile make the next one larger. Every write of a batch is durable
//! (`synchronous_commit = on`) before any is answered, and a failed commit answers every write
//! of the batch with its error (none of them visible).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;

use super::feed::ChangeRetention;
use super::feed_tail::Tail;
use super::pg_batch::{
    assumed_versions, change_records, numbered, plan, turns_to_check, Answer, Done, Expected, Plan,
    Write, TURN_ELSEWHERE,
};
use super::pg_db::{to_i64, PgDb};
use super::pg_read_cache::ReadCache;
use super::pg_schema::{backend, STALE_VERSION};
use super::pg_store::{lock_id, raise, tree_column};
use super::{now_ms, DocKey, StorageError, TreeKey};

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 64;

/// Batches in flight at once. With the statements of a batch pipelined (then three round trips),
/// a second batch in flight made the batches smaller and cost more database CPU per write
/// than it gained in overlap (4 clients: 0.75 ms of PostgreSQL CPU per PUT with one,
/// 0.93–1.04 ms with two; 16 clients: 1,869/s vs 1,596/s on the 2-core bench machine).
const WRITERS: usize = 1;

/// Writes waiting for the writer at most (then writers wait for room).
const QUEUE: usize = 4096;

/// Changes the age bound removes per batch at most (the rest with the next batches).
const TRIM_BATCH: i64 = 1000;

/// The writer task's queue.
pub(super) struct Writer {
    queue: mpsc::Sender<Queued>,
    tasks: Vec<tokio::task::AbortHandle>,
}

type Queued = (Write, oneshot::Sender<Answer>);

impl Drop for Writer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Drops from `recent` what the retention applied with the commit of change `head` at `now`
/// removed from the log (the same bounds as the trim statement of [`store_log_and_commit`]).
fn forget_trimmed(recent: &Tail, retention: &ChangeRetention, head: u64, now: u64) {
    let cutoff = now.saturating_sub(retention.max_age.as_millis() as u64);
    recent.forget(head.saturating_sub(retention.max_entries), cutoff);
}

/// What the writer task works with.
struct Context {
    db: PgDb,
    retention: ChangeRetention,
    notice: Notice,
    changed: Arc<watch::Sender<u64>>,
    /// The node's tail of the log: each batch's records go there as committed, so this
    /// node's readers of the log need not read them back.
    recent: Arc<Tail>,
    /// The node's read cache: each batch's versions go there as committed.
    cache: Arc<ReadCache>,
    turns: Arc<Turns>,
}

/// What a writer shares with the rest of its node's store.
pub(super) struct NodeParts {
    /// The node's tail of the log: each batch's records go there as committed.
    pub recent: Arc<Tail>,
    /// The node's read cache: each batch's new versions go there as committed.
    pub cache: Arc<ReadCache>,
    /// The documents whose turn this node's writers hold.
    pub turns: Arc<Turns>,
    /// The writer's name in its notices (its node's listener skips them).
    pub id: Arc<str>,
}

/// The documents whose turn (`DocumentStore::lock_document`) this node's writers hold, with
/// how many holds each.
#[derive(Default)]
pub(super) struct Turns(parking_lot::Mutex<HashMap<DocKey, usize>>);

impl Turns {
    /// Counts a hold of `key`'s turn until the guard drops.
    pub(super) fn hold(self: &Arc<Self>, key: &DocKey) -> TurnHeld {
        *self.0.lock().entry(key.clone()).or_default() += 1;
        TurnHeld(self.clone(), key.clone())
    }

    fn held(&self, key: &DocKey) -> bool {
        self.0.lock().contains_key(key)
    }
}

/// One hold counted in [`Turns`].
pub(super) struct TurnHeld(Arc<Turns>, DocKey);

impl Drop for TurnHeld {
    fn drop(&mut self) {
        let mut held = self.0 .0.lock();
        if let Some(n) = held.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.1);
            }
        }
    }
}

/// The notice of a commit to every node listening: on the schema's channel, naming the
/// new head and the writer (its node's listener skips its own).
#[derive(Clone)]
struct Notice {
    channel: Arc<str>,
    writer: Arc<str>,
}

impl Writer {
    /// Starts the writer of `db` on its runtime.
    pub fn start(
        db: PgDb,
        retention: ChangeRetention,
        channel: Arc<str>,
        changed: Arc<watch::Sender<u64>>,
        node: NodeParts,
    ) -> Writer {
        let (queue, received) = mpsc::channel(QUEUE);
        let received = Arc::new(tokio::sync::Mutex::new(received));
        let context = Arc::new(Context {
            db: db.clone(),
            retention,
            notice: Notice {
                channel,
                writer: node.id,
            },
            changed,
            recent: node.recent,
            cache: node.cache,
            turns: node.turns,
        });
        let tasks = (0..WRITERS)
            .map(|_| {
                db.runtime()
                    .spawn(run(context.clone(), received.clone()))
                    .abort_handle()
            })
            .collect();
        Writer { queue, tasks }
    }

    /// Commits `write` (with whatever else waits); its outcome once durable. `None`: a delete
    /// of a document that was not there.
    pub async fn write(&self, write: Write) -> Answer {
        // PostgreSQL text cannot hold NUL; a document never has one (XML 1.0 §2.2), so this
        // only keeps a malformed caller from failing the whole batch.
        if write
            .change
            .as_ref()
            .is_some_and(|(b, _, _)| b.contains('\0'))
        {
            return Err(StorageError::Backend("a document body with NUL".into()));
        }
        let (done, answer) = oneshot::channel();
        let stopped = || StorageError::Backend("the PostgreSQL writer stopped".into());
        self.queue
            .send((write, done))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One writer: takes what waits (up to [`MAX_BATCH`]) and commits it, until the queue closes.
async fn run(context: Arc<Context>, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let (writes, waiting): (Vec<Write>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().unzip();
        match commit(&context, writes).await {
            Ok(done) => {
                // The node's cache and tail learn the batch before its follower is woken
                // (a version applied first could not be held: see ReadCache::committed).
                for (record, version) in done.records.iter().zip(&done.versions) {
                    context
                        .cache
                        .committed(&record.key, record.seq, version.as_ref());
                }
                if let Some(first) = done.records.first() {
                    let (after, now) = (first.seq - 1, first.at_ms);
                    context.recent.offer(after, done.records);
                    forget_trimmed(&context.recent, &context.retention, done.head, now);
                }
                raise(&context.changed, done.head);
                for (done, answer) in waiting.into_iter().zip(done.answers) {
                    let _ = done.send(answer);
                }
            }
            Err(e) => {
                for done in waiting {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One transaction for `writes`: each one's answer, and the feed head after it (0 when none
/// was stored). Two round trips whatever the batch's size, the statements of a step sent
/// together (pipelined): (1) `BEGIN`, the documents' locks (in key order, so batches never
/// wait on each other in a cycle) and their current ETags, after which the preconditions are
/// checked here in arrival order; (2) the documents' final states, the change numbers (whose
/// lock is held from there to the commit) with the change records, the trim, the notice and
/// `COMMIT`. A statement that fails aborts the transaction (its `COMMIT` then rolls back) and
/// fails the batch.
async fn commit(context: &Context, writes: Vec<Write>) -> Result<Done, StorageError> {
    let (retention, notice) = (context.retention, context.notice.clone());
    let turns = turns_to_check(
        &writes,
        |key| context.turns.held(key),
        |key| lock_id(&notice.channel, key),
    );
    context
        .db
        .with(move |client| async move {
            let outcome = transact(&client, &writes, &turns, &retention, &notice).await;
            if outcome.is_err() && !client.is_closed() {
                // The transaction may still be open: end it before the connection goes back
                // to the pool, or keep the connection out of the pool.
                if client.batch_execute("ROLLBACK").await.is_err() {
                    drop(deadpool_postgres::Object::take(client));
                }
            }
            outcome
        })
        .await
}

/// The statements of [`commit`] on `client`.
async fn transact(
    client: &Client,
    writes: &[Write],
    turns: &[(i64, DocKey)],
    retention: &ChangeRetention,
    notice: &Notice,
) -> Result<Done, StorageError> {
    // Apart from the session locks of `lock_document` (same documents, other holders).
    let space = format!("{} batch", notice.channel);
    let mut ids: Vec<i64> = writes.iter().map(|w| lock_id(&space, &w.key)).collect();
    ids.sort_unstable();
    ids.dedup();
    // Commit times follow the numbers on a node (one batch in flight); across nodes, as
    // closely as their clocks agree (retention by age tolerates the difference).
    let now = now_ms();
    // Optimistic: every write names the version it replaces, so the batch can be planned on
    // those and checked by the database in the same round trip as its writes.
    if let Some(mut assumed) = assumed_versions(writes) {
        let expected = Expected::of(&assumed, turns.iter().map(|(id, _)| *id).collect());
        let plan = plan(writes, &mut assumed);
        if !plan.changes.is_empty() {
            let records = change_records(writes, &plan, now)?;
            let opening = Some((&ids[..], &expected));
            match store_log_and_commit(client, opening, &plan, records, now, retention, notice)
                .await
            {
                Ok(last) => return Ok(numbered(plan, last, writes, now)),
                // Rolled back (its COMMIT ended the aborted transaction): read, then plan.
                Err(StorageError::PreconditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut current = current_etags(client, writes, &ids, turns).await?;
    let plan = plan(writes, &mut current);
    if plan.changes.is_empty() {
        client.batch_execute("COMMIT").await.map_err(backend)?;
        return Ok(Done::nothing(plan));
    }
    let records = change_records(writes, &plan, now)?;
    let last = store_log_and_commit(client, None, &plan, records, now, retention, notice).await?;
    Ok(numbered(plan, last, writes, now))
}

type Client = deadpool_postgres::Object;

/// Takes the transaction advisory locks of a batch's documents (`$1`, in key order).
const LOCK_DOCUMENTS: &str = "SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS id";

/// `sql`, prepared once per connection (a round trip only the first time).
async fn prepared(client: &Client, sql: &str) -> Result<tokio_postgres::Statement, StorageError> {
    client.prepare_cached(sql).await.map_err(backend)
}

/// Begins the transaction, takes the transaction advisory locks `ids` of the documents
/// `writes` touch and reads their stored ETags (absent: not stored; [`TURN_ELSEWHERE`]: one
/// of `turns` another node's writer holds), in one round trip.
async fn current_etags(
    client: &Client,
    writes: &[Write],
    ids: &[i64],
    turns: &[(i64, DocKey)],
) -> Result<HashMap<DocKey, Option<String>>, StorageError> {
    let mut columns: [Vec<&str>; 3] = Default::default();
    for w in writes {
        columns[0].push(&w.key.auid);
        columns[1].push(tree_column(&w.key.tree));
        columns[2].push(&w.key.path);
    }
    let lock = prepared(client, LOCK_DOCUMENTS).await?;
    let read = prepared(
        client,
        "SELECT d.auid, d.tree, d.path, d.etag FROM documents d \
         JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(auid, tree, path) \
         ON d.auid = k.auid AND d.tree = k.tree AND d.path = k.path",
    )
    .await?;
    let taken = prepared(
        client,
        "SELECT id FROM unnest($1::bigint[]) AS id WHERE NOT pg_try_advisory_xact_lock_shared(id)",
    )
    .await?;
    let turn_ids: Vec<i64> = turns.iter().map(|(id, _)| *id).collect();
    // Statements prepared first: each query below is sent when first polled, in this order.
    let (_, _, rows, taken) = tokio::try_join!(
        client.batch_execute("BEGIN"),
        async { client.execute(&lock, &[&ids]).await },
        async {
            client
                .query(&read, &[&columns[0], &columns[1], &columns[2]])
                .await
        },
        async { client.query(&taken, &[&turn_ids]).await },
    )
    .map_err(backend)?;
    let mut current: HashMap<DocKey, Option<String>> =
        writes.iter().map(|w| (w.key.clone(), None)).collect();
    for row in rows {
        let tree: String = row.get(1);
        let tree = if tree.is_empty() {
            TreeKey::Global
        } else {
            TreeKey::User(tree)
        };
        let key = DocKey::new(row.get::<_, String>(0), tree, row.get::<_, String>(2));
        current.insert(key, Some(row.get(3)));
    }
    for row in taken {
        let id: i64 = row.get(0);
        for (_, key) in turns.iter().filter(|(turn, _)| *turn == id) {
            current.insert(key.clone(), Some(TURN_ELSEWHERE.to_string()));
        }
    }
    Ok(current)
}

/// In one round trip: with `opening` (document locks, versions assumed), begins the
/// transaction, takes those locks and has the database check the versions (a difference:
/// `PreconditionFailed`, nothing stored, the transaction rolled back); writes the plan's
/// documents (stored and deleted), takes the
/// change-number lock, draws one number per record and logs the records with them (one
/// statement: the numbers never travel), applies retention, sends the notice of the new head
/// to every node listening (delivered at commit, this one included) and commits. The last
/// number drawn.
///
/// Retention: changes beyond `max_entries` behind the head, and the oldest past `max_age` (a
/// prefix: commit times follow the sequence), are removed and `trimmed_through` follows.
/// Every batch runs this: each part reads by the primary key from the oldest change only, and
/// the age part looks further only when the oldest is expired (a filter on commit times alone
/// would read the whole log when nothing is to go).
#[allow(clippy::too_many_arguments)] // one batch's plan, records and settings
async fn store_log_and_commit(
    client: &Client,
    opening: Option<(&[i64], &Expected)>,
    plan: &Plan,
    records: Vec<Vec<u8>>,
    now: u64,
    retention: &ChangeRetention,
    notice: &Notice,
) -> Result<i64, StorageError> {
    let (mut put, mut gone): ([Vec<&str>; 5], [Vec<&str>; 3]) = Default::default();
    let mut modified: Vec<i64> = Vec::new();
    for (key, state) in &plan.documents {
        let tree = tree_column(&key.tree);
        match state {
            Some((body, etag, modified_ms)) => {
                for (column, value) in put
                    .iter_mut()
                    .zip([&key.auid, tree, &key.path, &**body, etag])
                {
                    column.push(value);
                }
                modified.push(to_i64(*modified_ms)?);
            }
            None => {
                for (column, value) in gone.iter_mut().zip([&key.auid, tree, &key.path]) {
                    column.push(value);
                }
            }
        }
    }
    let upsert = prepared(
        client,
        "INSERT INTO documents (auid, tree, path, body, etag, modified_ms) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                              $5::text[], $6::bigint[]) \
         ON CONFLICT (auid, tree, path) DO UPDATE \
         SET body = EXCLUDED.body, etag = EXCLUDED.etag, modified_ms = EXCLUDED.modified_ms",
    )
    .await?;
    let delete = prepared(
        client,
        "DELETE FROM documents d \
         USING unnest($1::text[], $2::text[], $3::text[]) AS k(auid, tree, path) \
         WHERE d.auid = k.auid AND d.tree = k.tree AND d.path = k.path",
    )
    .await?;
    // The records are numbered head + 1 … head + n in their order (WITH ORDINALITY).
    let log = prepared(
        client,
        "WITH head AS (UPDATE feed_head SET seq = seq + cardinality($1::bytea[]) \
                       WHERE id = 1 RETURNING seq), \
              logged AS (INSERT INTO changes (seq, at_ms, record) \
                         SELECT head.seq - cardinality($1::bytea[]) + r.n, $2, r.record \
                         FROM head, unnest($1::bytea[]) WITH ORDINALITY AS r(record, n)) \
         SELECT seq FROM head",
    )
    .await?;
    let trim = prepared(
        client,
        "WITH gone AS (DELETE FROM changes WHERE seq IN ( \
             SELECT seq FROM changes \
             WHERE seq <= (SELECT seq FROM feed_head WHERE id = 1) - $1 \
             UNION ALL \
             SELECT seq FROM (SELECT seq, at_ms FROM changes ORDER BY seq LIMIT $3) oldest \
             WHERE at_ms < $2 AND (SELECT at_ms FROM changes ORDER BY seq LIMIT 1) < $2) \
           RETURNING seq) \
         UPDATE feed_head SET trimmed_through = greatest(trimmed_through, \
                                                         (SELECT max(seq) FROM gone)) \
         WHERE id = 1 AND EXISTS (SELECT 1 FROM gone)",
    )
    .await?;
    let notify = prepared(
        client,
        "SELECT pg_notify($1, (SELECT seq::text FROM feed_head WHERE id = 1) || ' ' || $2)",
    )
    .await?;
    let lock = prepared(client, LOCK_DOCUMENTS).await?;
    let check = prepared(
        client,
        "SELECT xcapd_expect_versions($1::text[], $2::text[], $3::text[], $4::text[], \
                                      $5::bigint[])",
    )
    .await?;
    let begin = async {
        match opening {
            Some(_) => client.batch_execute("BEGIN").await,
            None => Ok(()),
        }
    };
    let locked = async {
        match opening {
            Some((ids, _)) => client.execute(&lock, &[&ids]).await,
            None => Ok(0),
        }
    };
    let checked = async {
        match opening {
            Some((_, e)) => {
                let columns = [
                    &e.auids as &(dyn ToSql + Sync),
                    &e.trees,
                    &e.paths,
                    &e.etags,
                    &e.turns,
                ];
                client.execute(&check, &columns).await
            }
            None => Ok(0),
        }
    };
    let at = to_i64(now)?;
    let max_entries = to_i64(retention.max_entries)?;
    let cutoff = to_i64(now.saturating_sub(retention.max_age.as_millis() as u64))?;
    let stored = async {
        if modified.is_empty() {
            return Ok(0);
        }
        client
            .execute(
                &upsert,
                &[&put[0], &put[1], &put[2], &put[3], &put[4], &modified],
            )
            .await
    };
    let deleted = async {
        if gone[0].is_empty() {
            return Ok(0);
        }
        client
            .execute(&delete, &[&gone[0], &gone[1], &gone[2]])
            .await
    };
    // Each query is sent when first polled, in this order (statements prepared above).
    // Every answer is awaited (`join!`, not `try_join!`, which may see a later statement's
    // "transaction aborted" first): the first failure in statement order is the cause.
    let (begun, locked, checked, stored, deleted, logged, trimmed, notified, committed) = tokio::join!(
        begin,
        locked,
        checked,
        stored,
        deleted,
        async { client.query_one(&log, &[&records, &at]).await },
        async {
            client
                .execute(&trim, &[&max_entries, &cutoff, &TRIM_BATCH])
                .await
        },
        async {
            let (channel, writer) = (&*notice.channel, &*notice.writer);
            client.execute(&notify, &[&channel, &writer]).await
        },
        client.batch_execute("COMMIT"),
    );
    let in_order = || -> Result<i64, tokio_postgres::Error> {
        begun?;
        locked?;
        checked?;
        stored?;
        deleted?;
        let last = logged?.get(0);
        trimmed?;
        notified?;
        committed?;
        Ok(last)
    };
    in_order().map_err(|e| match e.code() {
        Some(code) if code.code() == STALE_VERSION => StorageError::PreconditionFailed,
        _ => backend(e),
    })
}
