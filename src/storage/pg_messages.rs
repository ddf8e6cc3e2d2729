//! PostgreSQL backend of [`MessageStore`] (issue #15 scope 1 and 3: deferred messages shared
//! by every node): one row per message, its record in the encoding sled writes, with the
//! columns the queries select on (mailbox, owner, expiry, claim, attempts) beside it.
//!
//! A claim is one statement: it picks the owner's oldest unclaimed deferred messages `FOR
//! UPDATE SKIP LOCKED` and sets their lease, so deliverers on several nodes never claim one
//! message twice and never wait for each other; a deliverer that dies leaves its claims to
//! lapse after the lease. Ids come from a sequence (increasing in append order).

use super::messages::{validate, Mailbox, MessageStore, NewMessage, StoredMessage};
use super::pg_db::{clamped_i64, PgDb};
use super::pg_schema::backend;
use super::sled_messages::{decode, encode};
use super::{StorageError, StoreFuture};

pub struct PgMessages {
    db: PgDb,
}

impl PgMessages {
    pub fn new(db: PgDb) -> PgMessages {
        PgMessages { db }
    }
}

/// The columns every read selects, in the order [`message_of`] reads them.
const COLUMNS: &str = "id, claimed_until_ms, attempts, record";

/// A row of [`COLUMNS`] as a message (the claim and attempts from their columns).
fn message_of(row: &tokio_postgres::Row) -> Result<StoredMessage, StorageError> {
    let id = row.get::<_, i64>(0) as u64;
    let mut m = decode(id, row.get::<_, &[u8]>(3))?;
    m.claimed_until_ms = row.get::<_, i64>(1) as u64;
    m.attempts = row.get::<_, i32>(2) as u32;
    Ok(m)
}

fn messages_of(rows: &[tokio_postgres::Row]) -> Result<Vec<StoredMessage>, StorageError> {
    let mut out = rows.iter().map(message_of).collect::<Result<Vec<_>, _>>()?;
    // RETURNING has no order of its own.
    out.sort_by_key(|m| m.id);
    Ok(out)
}

fn mailbox_code(mailbox: Mailbox) -> i16 {
    i16::from(mailbox.code())
}

fn limit_of(limit: usize) -> i64 {
    clamped_i64(limit as u64)
}

impl MessageStore for PgMessages {
    fn append_held(&self, message: NewMessage, held_until_ms: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            validate(&message)?;
            let (mailbox, expires) = (
                mailbox_code(message.mailbox),
                clamped_i64(message.expires_ms),
            );
            let (held, owner) = (clamped_i64(held_until_ms), message.owner.clone());
            // The record's own claim and attempts are not read back: the columns are.
            let record = encode(&StoredMessage {
                id: 0,
                message,
                claimed_until_ms: 0,
                attempts: 0,
            })?;
            self.db
                .with(move |client| async move {
                    let row = client
                        .query_one(
                            &client
                                .prepare_cached(
                                    "INSERT INTO messages \
                             (mailbox, owner, expires_ms, claimed_until_ms, attempts, record) \
                             VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
                                )
                                .await
                                .map_err(backend)?,
                            &[&mailbox, &owner, &expires, &held, &record],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(row.get::<_, i64>(0) as u64)
                })
                .await
        })
    }

    fn claim(
        &self,
        owner: String,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(async move {
            let (now, until) = (
                clamped_i64(now_ms),
                clamped_i64(now_ms.saturating_add(lease_ms)),
            );
            let (limit, deferred) = (limit_of(limit), mailbox_code(Mailbox::Deferred));
            self.db
                .with(move |client| async move {
                    let rows = client
                        .query(
                            &format!(
                                "UPDATE messages SET claimed_until_ms = $4 WHERE id IN ( \
                                     SELECT id FROM messages \
                                     WHERE mailbox = $1 AND owner = $2 \
                                       AND claimed_until_ms <= $3 AND expires_ms > $3 \
                                     ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED) \
                                 RETURNING {COLUMNS}"
                            ),
                            &[&deferred, &owner, &now, &until, &limit],
                        )
                        .await
                        .map_err(backend)?;
                    messages_of(&rows)
                })
                .await
        })
    }

    fn acknowledge(&self, id: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let id = clamped_i64(id);
            self.db
                .with(move |client| async move {
                    let gone = client
                        .execute(
                            &client
                                .prepare_cached("DELETE FROM messages WHERE id = $1")
                                .await
                                .map_err(backend)?,
                            &[&id],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(gone > 0)
                })
                .await
        })
    }

    fn release(&self, ids: Vec<u64>, ended: bool) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let ids: Vec<i64> = ids.into_iter().map(clamped_i64).collect();
            let more = i32::from(ended);
            self.db
                .with(move |client| async move {
                    client
                        .execute(
                            &client
                                .prepare_cached(
                                    "UPDATE messages SET claimed_until_ms = 0, \
                             attempts = LEAST(attempts::bigint + $2, 2147483647)::int \
                             WHERE id = ANY($1)",
                                )
                                .await
                                .map_err(backend)?,
                            &[&ids, &i64::from(more)],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(())
                })
                .await
        })
    }

    fn list(
        &self,
        mailbox: Mailbox,
        owner: String,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(async move {
            let (after, limit, mailbox) =
                (clamped_i64(after), limit_of(limit), mailbox_code(mailbox));
            self.db
                .with(move |client| async move {
                    let rows = client
                        .query(
                            &format!(
                                "SELECT {COLUMNS} FROM messages \
                                 WHERE mailbox = $1 AND owner = $2 AND id > $3 \
                                 ORDER BY id LIMIT $4"
                            ),
                            &[&mailbox, &owner, &after, &limit],
                        )
                        .await
                        .map_err(backend)?;
                    messages_of(&rows)
                })
                .await
        })
    }

    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(async move {
            let now = clamped_i64(now_ms);
            self.db
                .with(move |client| async move {
                    let rows = client
                        .query(
                            &format!(
                                "DELETE FROM messages WHERE expires_ms <= $1 RETURNING {COLUMNS}"
                            ),
                            &[&now],
                        )
                        .await
                        .map_err(backend)?;
                    messages_of(&rows)
                })
                .await
        })
    }

    fn count(&self, mailbox: Mailbox) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mailbox = mailbox_code(mailbox);
            self.db
                .with(move |client| async move {
                    let row = client
                        .query_one(
                            &client
                                .prepare_cached("SELECT count(*) FROM messages WHERE mailbox = $1")
                                .await
                                .map_err(backend)?,
                            &[&mailbox],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(row.get::<_, i64>(0) as u64)
                })
                .await
        })
    }

    fn owners(
        &self,
        mailbox: Mailbox,
        after: Option<String>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let (limit, mailbox) = (limit_of(limit), mailbox_code(mailbox));
            self.db
                .with(move |client| async move {
                    let rows = client
                        .query(
                            &client
                                .prepare_cached(
                                    "SELECT DISTINCT owner FROM messages \
                             WHERE mailbox = $1 AND ($2::text IS NULL OR owner > $2) \
                             ORDER BY owner LIMIT $3",
                                )
                                .await
                                .map_err(backend)?,
                            &[&mailbox, &after, &limit],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(rows.iter().map(|r| r.get(0)).collect())
                })
                .await
        })
    }
}
