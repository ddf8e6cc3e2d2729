//! PostgreSQL backend of [`SubscriptionStore`] (issue #15 scope 1 and 3; RFC 6665 §4.2
//! subscription state): one row per dialog with the record [`Subscription::to_bytes`]
//! writes and the node serving it.
//!
//! A node re-arms ([`SubscriptionStore::all`]) and expires only the subscriptions it serves
//! (its NOTIFYs leave from its address, and two nodes must not notify one dialog twice);
//! any node reads or removes any dialog. `put` makes the writing node the one serving the
//! dialog. Checkpoints commit with `synchronous_commit = off`: visible at once, on disk with
//! the next WAL flush, as the trait allows.

use std::sync::Arc;

use tokio_postgres::types::ToSql;

use super::pg_db::{clamped_i64, PgDb};
use super::pg_schema::backend;
use super::subscriptions::{validate, DialogId, Subscription, SubscriptionStore};
use super::{StorageError, StoreFuture};

/// A statement parameter that can move to the database's runtime.
type Param = Box<dyn ToSql + Send + Sync>;

pub struct PgSubscriptions {
    db: PgDb,
    /// This node's name (`subscriptions.node`).
    node: Arc<str>,
}

impl PgSubscriptions {
    /// The subscriptions of `db`, serving as `node` (unique per node, stable across restarts).
    pub fn new(db: PgDb, node: &str) -> PgSubscriptions {
        PgSubscriptions {
            db,
            node: Arc::from(node),
        }
    }

    /// Creates or replaces `sub` as served by this node; `durable`: waits for the WAL flush.
    async fn upsert(&self, sub: Subscription, durable: bool) -> Result<(), StorageError> {
        validate(&sub)?;
        let record = sub.to_bytes()?;
        let expires = clamped_i64(sub.expires_at_ms);
        let node = self.node.clone();
        self.db
            .transaction(move |tx| {
                Box::pin(async move {
                    if !durable {
                        tx.batch_execute("SET LOCAL synchronous_commit = off")
                            .await
                            .map_err(backend)?;
                    }
                    let d = &sub.dialog;
                    tx.execute(
                        "INSERT INTO subscriptions \
                         (call_id, local_tag, remote_tag, node, subscriber, expires_at_ms, record) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (call_id, local_tag, remote_tag) DO UPDATE \
                         SET node = EXCLUDED.node, subscriber = EXCLUDED.subscriber, \
                             expires_at_ms = EXCLUDED.expires_at_ms, record = EXCLUDED.record",
                        &[
                            &d.call_id,
                            &d.local_tag,
                            &d.remote_tag,
                            &&*node,
                            &sub.subscriber,
                            &expires,
                            &record,
                        ],
                    )
                    .await
                    .map_err(backend)?;
                    Ok(())
                })
            })
            .await
    }

    /// The subscriptions `sql` selects (their record first) with `params`, by dialog order.
    async fn select(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<Subscription>, StorageError> {
        self.db
            .with(move |client| async move {
                let params: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let rows = client.query(sql, &params).await.map_err(backend)?;
                let mut subs = rows
                    .iter()
                    .map(|r| Subscription::from_bytes(r.get::<_, &[u8]>(0)))
                    .collect::<Result<Vec<_>, _>>()?;
                subs.sort_by(|a, b| a.dialog.cmp(&b.dialog));
                Ok(subs)
            })
            .await
    }
}

impl SubscriptionStore for PgSubscriptions {
    fn put(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        Box::pin(self.upsert(sub, true))
    }

    fn checkpoint(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        Box::pin(self.upsert(sub, false))
    }

    fn get(&self, dialog: DialogId) -> StoreFuture<'_, Option<Subscription>> {
        Box::pin(self.db.with(move |client| async move {
            let row = client
                .query_opt(
                    &client
                        .prepare_cached(
                            "SELECT record FROM subscriptions \
                     WHERE call_id = $1 AND local_tag = $2 AND remote_tag = $3",
                        )
                        .await
                        .map_err(backend)?,
                    &[&dialog.call_id, &dialog.local_tag, &dialog.remote_tag],
                )
                .await
                .map_err(backend)?;
            row.map(|r| Subscription::from_bytes(r.get::<_, &[u8]>(0)))
                .transpose()
        }))
    }

    fn remove(&self, dialog: DialogId) -> StoreFuture<'_, bool> {
        Box::pin(self.db.with(move |client| async move {
            let gone = client
                .execute(
                    &client
                        .prepare_cached(
                            "DELETE FROM subscriptions \
                     WHERE call_id = $1 AND local_tag = $2 AND remote_tag = $3",
                        )
                        .await
                        .map_err(backend)?,
                    &[&dialog.call_id, &dialog.local_tag, &dialog.remote_tag],
                )
                .await
                .map_err(backend)?;
            Ok(gone > 0)
        }))
    }

    fn by_subscriber(&self, subscriber: String) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(self.select(
            "SELECT record FROM subscriptions WHERE subscriber = $1",
            vec![Box::new(subscriber)],
        ))
    }

    /// The subscriptions this node serves.
    fn all(&self) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(self.select(
            "SELECT record FROM subscriptions WHERE node = $1",
            vec![Box::new(self.node.to_string())],
        ))
    }

    /// Marks this node alive; hands it the subscriptions of nodes not heard of for `lease_ms`
    /// (and of nodes never heard of: each node is heard of before it serves). One statement
    /// removes the dead nodes and moves their subscriptions, so two live nodes never both
    /// take one.
    fn orphaned(&self, now_ms: u64, lease_ms: u64) -> StoreFuture<'_, Vec<Subscription>> {
        let node = self.node.clone();
        let (now, lease) = (clamped_i64(now_ms), clamped_i64(lease_ms));
        Box::pin(async move {
            let adopted = self
                .db
                .transaction(move |tx| {
                    Box::pin(async move {
                        tx.execute(
                            "INSERT INTO nodes (node, seen_ms) VALUES ($1, $2) \
                             ON CONFLICT (node) DO UPDATE SET seen_ms = EXCLUDED.seen_ms",
                            &[&&*node, &now],
                        )
                        .await
                        .map_err(backend)?;
                        let rows = tx
                            .query(
                                "WITH dead AS (DELETE FROM nodes \
                                     WHERE seen_ms < $2::bigint - $3::bigint AND node <> $1 RETURNING node) \
                                 UPDATE subscriptions SET node = $1 \
                                 WHERE node IN (SELECT node FROM dead) \
                                    OR node NOT IN (SELECT node FROM nodes) \
                                 RETURNING record",
                                &[&&*node, &now, &lease],
                            )
                            .await
                            .map_err(backend)?;
                        rows.iter()
                            .map(|r| Subscription::from_bytes(r.get::<_, &[u8]>(0)))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .await?;
            let mut adopted = adopted;
            adopted.sort_by(|a, b| a.dialog.cmp(&b.dialog));
            Ok(adopted)
        })
    }

    /// The subscriptions this node serves that expired.
    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            self.select(
                "DELETE FROM subscriptions WHERE node = $1 AND expires_at_ms <= $2 \
                 RETURNING record",
                vec![
                    Box::new(self.node.to_string()),
                    Box::new(clamped_i64(now_ms)),
                ],
            )
            .await
        })
    }
}
