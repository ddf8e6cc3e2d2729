//! PostgreSQL backends of the registrar's bindings ([`RegistrationStore`], RFC 3261 §10.3)
//! and of the charging data records ([`ChargingLog`]) (issue #15 scope 1): one row per
//! address of record (its bindings as the JSON array sled stores), one row per record (its
//! JSON line, with the UTC day it is filed under), so every node reads what any node wrote.

use super::charging::{day_of, line_of, valid_day, ChargingLog, ChargingRecord};
use super::pg_db::{clamped_i64, PgDb};
use super::pg_schema::backend;
use super::registrations::{RegistrationStore, StoredBinding};
use super::{DocumentLock, StorageError, StoreFuture};

pub struct PgRegistrations {
    db: PgDb,
}

impl PgRegistrations {
    pub fn new(db: PgDb) -> PgRegistrations {
        PgRegistrations { db }
    }
}

impl RegistrationStore for PgRegistrations {
    fn put(&self, aor: String, bindings: Vec<StoredBinding>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let value = serde_json::to_string(&bindings)
                .map_err(|e| StorageError::Backend(e.to_string()))?;
            self.db
                .with(move |client| async move {
                    if bindings.is_empty() {
                        client
                            .execute(
                &client.prepare_cached("DELETE FROM registrations WHERE aor = $1").await.map_err(backend)?, &[&aor])
                            .await
                    } else {
                        client
                            .execute(
                &client.prepare_cached("INSERT INTO registrations (aor, bindings) VALUES ($1, $2) \
                                 ON CONFLICT (aor) DO UPDATE SET bindings = EXCLUDED.bindings").await.map_err(backend)?,
                                &[&aor, &value],
                            )
                            .await
                    }
                    .map_err(backend)?;
                    Ok(())
                })
                .await
        })
    }

    fn all(&self) -> StoreFuture<'_, Vec<(String, Vec<StoredBinding>)>> {
        Box::pin(self.db.with(|client| async move {
            let rows = client
                .query(
                    &client
                        .prepare_cached("SELECT aor, bindings FROM registrations ORDER BY aor")
                        .await
                        .map_err(backend)?,
                    &[],
                )
                .await
                .map_err(backend)?;
            rows.iter()
                .map(|r| {
                    let bindings = serde_json::from_str(r.get::<_, &str>(1))
                        .map_err(|_| StorageError::Corrupt("bad registration record".into()))?;
                    Ok((r.get(0), bindings))
                })
                .collect()
        }))
    }

    /// A session advisory lock of the address of record in this schema (advisory locks are
    /// database-wide): 64 bits of a SHA-256.
    fn lock(&self, aor: String) -> StoreFuture<'_, Option<DocumentLock>> {
        Box::pin(async move {
            use sha2::{Digest, Sha256};
            let mut hash = Sha256::new();
            for part in ["xcapd registration", self.db.schema(), &aor] {
                hash.update(part.as_bytes());
                hash.update([0]);
            }
            let mut id = [0u8; 8];
            id.copy_from_slice(&hash.finalize()[..8]);
            let held = self.db.advisory_lock(i64::from_be_bytes(id)).await?;
            Ok(Some(held))
        })
    }

    fn get(&self, aor: String) -> StoreFuture<'_, Vec<StoredBinding>> {
        Box::pin(self.db.with(move |client| async move {
            let row = client
                .query_opt(
                    &client
                        .prepare_cached("SELECT bindings FROM registrations WHERE aor = $1")
                        .await
                        .map_err(backend)?,
                    &[&aor],
                )
                .await
                .map_err(backend)?;
            match row {
                None => Ok(Vec::new()),
                Some(r) => serde_json::from_str(r.get::<_, &str>(0))
                    .map_err(|_| StorageError::Corrupt("bad registration record".into())),
            }
        }))
    }
}

pub struct PgCharging {
    db: PgDb,
}

impl PgCharging {
    pub fn new(db: PgDb) -> PgCharging {
        PgCharging { db }
    }
}

impl ChargingLog for PgCharging {
    fn append(&self, record: ChargingRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (day, line) = (day_of(&record.time), line_of(&record)?);
            self.db
                .with(move |client| async move {
                    client
                        .execute(
                            &client
                                .prepare_cached("INSERT INTO charging (day, line) VALUES ($1, $2)")
                                .await
                                .map_err(backend)?,
                            &[&day, &line],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(())
                })
                .await
        })
    }

    fn read(&self, day: String, skip: usize, limit: usize) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            if !valid_day(&day) {
                return Err(StorageError::InvalidKey(format!("bad day {day:?}")));
            }
            let (skip, limit) = (clamped_i64(skip as u64), clamped_i64(limit as u64));
            self.db
                .with(move |client| async move {
                    let rows = client
                        .query(
                            &client
                                .prepare_cached(
                                    "SELECT line FROM charging WHERE day = $1 ORDER BY id \
                             OFFSET $2 LIMIT $3",
                                )
                                .await
                                .map_err(backend)?,
                            &[&day, &skip, &limit],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(rows.iter().map(|r| r.get(0)).collect())
                })
                .await
        })
    }
}
