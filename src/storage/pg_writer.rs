//! The document writer of a PostgreSQL node (issue #15 throughput; RFC 4825 §7.10–§7.11
//! compare-and-swap, design.md §2 change log): the writes waiting when a commit ends are
//! committed together, in one transaction (group commit: one WAL flush for the batch, where a
//! transaction per write paid one each, one at a time, behind the `feed_head` lock).
//!
//! The transaction takes the row lock of `feed_head` first (so the nodes' batches commit one
//! after another, in sequence order), then checks each write's ETag precondition and applies
//! it in arrival order, drawing consecutive change numbers for the ones that hold; a refused
//! write is answered as refused and the others go on. `feed_head`, the retention trim and the
//! notice to the other nodes follow, then one commit: every write of the batch is durable
//! (`synchronous_commit = on`) before any is answered, and a failed commit answers every write
//! of the batch with its error (none of them visible).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::feed::ChangeRetention;
use super::pg_db::{to_i64, PgDb};
use super::pg_schema::backend;
use super::pg_store::{raise, tree_column};
use super::sled_changes::encode;
use super::{
    check_expect, now_ms, ChangeOrigin, Committed, DocKey, Expect, StorageError, WriteOutcome,
};

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 64;

/// Writes waiting for the writer at most (then writers wait for room).
const QUEUE: usize = 4096;

/// Changes the age bound removes per batch at most (the rest with the next batches).
const TRIM_BATCH: i64 = 1000;

/// One write: a new body (`Some((body, etag, modified_ms))`) or a delete (`None`).
pub(super) struct Write {
    pub key: DocKey,
    pub expect: Expect,
    pub change: Option<(String, String, u64)>,
    pub origin: ChangeOrigin,
}

type Answer = Result<Option<Committed>, StorageError>;

/// The writer task's queue.
pub(super) struct Writer {
    queue: mpsc::Sender<(Write, oneshot::Sender<Answer>)>,
    task: tokio::task::AbortHandle,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the writer task works with.
struct Context {
    db: PgDb,
    retention: ChangeRetention,
    channel: Arc<str>,
    changed: Arc<watch::Sender<u64>>,
}

impl Writer {
    /// Starts the writer of `db` on its runtime.
    pub fn start(
        db: PgDb,
        retention: ChangeRetention,
        channel: Arc<str>,
        changed: Arc<watch::Sender<u64>>,
    ) -> Writer {
        let (queue, received) = mpsc::channel(QUEUE);
        let context = Context {
            db: db.clone(),
            retention,
            channel,
            changed,
        };
        let task = db.runtime().spawn(run(context, received)).abort_handle();
        Writer { queue, task }
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

async fn run(context: Context, mut queue: mpsc::Receiver<(Write, oneshot::Sender<Answer>)>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (writes, waiting): (Vec<Write>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().unzip();
        match commit(&context, writes).await {
            Ok((answers, head)) => {
                raise(&context.changed, head);
                for (done, answer) in waiting.into_iter().zip(answers) {
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

/// One transaction for `writes`: each one's answer, and the feed head after it.
async fn commit(context: &Context, writes: Vec<Write>) -> Result<(Vec<Answer>, u64), StorageError> {
    let (retention, channel) = (context.retention, context.channel.clone());
    context
        .db
        .with(move |mut client| async move {
            let tx = client.transaction().await.map_err(backend)?;
            let head: i64 = tx
                .query_one(
                    &tx.prepare_cached("UPDATE feed_head SET seq = seq WHERE id = 1 RETURNING seq")
                        .await
                        .map_err(backend)?,
                    &[],
                )
                .await
                .map_err(backend)?
                .get(0);
            let now = now_ms();
            let mut seq = head;
            let mut answers = Vec::with_capacity(writes.len());
            for w in &writes {
                let answer = apply(&tx, w, seq + 1, now).await?;
                if let Ok(Some(c)) = &answer {
                    seq = c.seq as i64;
                }
                answers.push(answer);
            }
            if seq > head {
                tx.execute(
                    &tx.prepare_cached("UPDATE feed_head SET seq = $1 WHERE id = 1")
                        .await
                        .map_err(backend)?,
                    &[&seq],
                )
                .await
                .map_err(backend)?;
                trim(&tx, seq, now, &retention).await?;
                // Delivered at commit, to every node listening (this one included).
                tx.execute(
                    &tx.prepare_cached("SELECT pg_notify($1, $2)")
                        .await
                        .map_err(backend)?,
                    &[&&*channel, &seq.to_string()],
                )
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            Ok((answers, seq as u64))
        })
        .await
}

/// One write inside the batch's transaction as change number `seq`. The outer error fails
/// the batch (the database failed); the inner one refuses this write only.
async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    w: &Write,
    seq: i64,
    now: u64,
) -> Result<Answer, StorageError> {
    let (key, tree) = (&w.key, tree_column(&w.key.tree));
    let previous: Option<String> = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT etag FROM documents WHERE auid = $1 AND tree = $2 AND path = $3",
            )
            .await
            .map_err(backend)?,
            &[&key.auid, &tree, &key.path],
        )
        .await
        .map_err(backend)?
        .map(|row| row.get(0));
    if let Err(refused) = check_expect(&w.expect, previous.as_deref()) {
        return Ok(Err(refused));
    }
    let outcome = match &w.change {
        None if previous.is_none() => return Ok(Ok(None)),
        None => {
            tx.execute(
                &tx.prepare_cached(
                    "DELETE FROM documents WHERE auid = $1 AND tree = $2 AND path = $3",
                )
                .await
                .map_err(backend)?,
                &[&key.auid, &tree, &key.path],
            )
            .await
            .map_err(backend)?;
            WriteOutcome::Deleted
        }
        Some((body, etag, modified_ms)) => {
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO documents (auid, tree, path, body, etag, modified_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (auid, tree, path) DO UPDATE \
                 SET body = EXCLUDED.body, etag = EXCLUDED.etag, \
                     modified_ms = EXCLUDED.modified_ms",
                )
                .await
                .map_err(backend)?,
                &[
                    &key.auid,
                    &tree,
                    &key.path,
                    body,
                    etag,
                    &to_i64(*modified_ms)?,
                ],
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
    let new_etag = w.change.as_ref().map(|(_, etag, _)| etag.as_str());
    let record = encode(key, previous.as_deref(), new_etag, now, &w.origin)?;
    tx.execute(
        &tx.prepare_cached("INSERT INTO changes (seq, at_ms, record) VALUES ($1, $2, $3)")
            .await
            .map_err(backend)?,
        &[&seq, &to_i64(now)?, &record],
    )
    .await
    .map_err(backend)?;
    Ok(Ok(Some(Committed {
        outcome,
        previous_etag: previous,
        seq: seq as u64,
    })))
}

/// Retention (within the writer's transaction): changes beyond `max_entries` behind `seq`,
/// and the oldest past `max_age` (a prefix: commit times follow the sequence), are removed;
/// `trimmed_through` follows. Every write runs this: each part reads by the primary key from
/// the oldest change only, and the age part looks further only when the oldest is expired
/// (a filter on commit times alone would read the whole log when nothing is to go).
async fn trim(
    tx: &deadpool_postgres::Transaction<'_>,
    seq: i64,
    now: u64,
    retention: &ChangeRetention,
) -> Result<(), StorageError> {
    let by_count = seq.saturating_sub(to_i64(retention.max_entries)?);
    let cutoff = to_i64(now.saturating_sub(retention.max_age.as_millis() as u64))?;
    let gone: Option<i64> = tx
        .query_one(
            &tx.prepare_cached(
                "WITH gone AS (DELETE FROM changes WHERE seq IN ( \
                 SELECT seq FROM changes WHERE seq <= $1 \
                 UNION ALL \
                 SELECT seq FROM (SELECT seq, at_ms FROM changes ORDER BY seq LIMIT $3) oldest \
                 WHERE at_ms < $2 AND (SELECT at_ms FROM changes ORDER BY seq LIMIT 1) < $2) \
               RETURNING seq) \
             SELECT max(seq) FROM gone",
            )
            .await
            .map_err(backend)?,
            &[&by_count, &cutoff, &TRIM_BATCH],
        )
        .await
        .map_err(backend)?
        .get(0);
    if let Some(through) = gone {
        tx.execute(
            &tx.prepare_cached(
                "UPDATE feed_head SET trimmed_through = greatest(trimmed_through, $1) WHERE id = 1",
            )
            .await
            .map_err(backend)?,
            &[&through],
        )
        .await
        .map_err(backend)?;
    }
    Ok(())
}
