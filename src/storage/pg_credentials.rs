//! PostgreSQL backend of [`CredentialStore`] (issue #15 scope 1): users in `credential_users`
//! (the record encoding sled writes), their Digest lookup entries in `credential_usernames`
//! keyed by (username, realm, algorithm), so every node authenticates every user.
//!
//! A put is one transaction: the writers of one user take turns on a transaction advisory
//! lock of that user, drop its old entries and insert its new ones. An entry another user
//! holds is a unique violation, so the whole put is refused (`PreconditionFailed`, nothing
//! stored), also when two users race for one username on two nodes.

use super::credentials::{lookup_key, validate_credential, Credential, CredentialStore};
use super::pg_db::{is_unique_violation, PgDb};
use super::pg_schema::backend;
use super::sled_credentials::{decode_user, encode_user};
use super::{StorageError, StoreFuture};

pub struct PgCredentials {
    db: PgDb,
}

impl PgCredentials {
    pub fn new(db: PgDb) -> PgCredentials {
        PgCredentials { db }
    }
}

fn valid_xui(xui: &str) -> Result<(), StorageError> {
    if xui.is_empty() || xui.contains('\0') {
        return Err(StorageError::InvalidKey(
            "XUI is empty or contains NUL".into(),
        ));
    }
    Ok(())
}

/// Within a transaction: waits for the other writers of `xui` (on any node) and drops its
/// Digest lookup entries (a put writes the new ones, a delete none).
async fn take_user(tx: &tokio_postgres::Transaction<'_>, xui: &str) -> Result<(), StorageError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('xcapd user ' || $1, 0))",
        &[&xui],
    )
    .await
    .map_err(backend)?;
    tx.execute("DELETE FROM credential_usernames WHERE xui = $1", &[&xui])
        .await
        .map_err(backend)?;
    Ok(())
}

fn user_of(row: &tokio_postgres::Row) -> Result<Credential, StorageError> {
    decode_user(row.get::<_, &str>(0).as_bytes(), row.get::<_, &[u8]>(1))
}

impl CredentialStore for PgCredentials {
    fn get_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, Option<Credential>> {
        Box::pin(async move {
            valid_xui(xui)?;
            let xui = xui.to_string();
            self.db
                .with(move |client| async move {
                    let row = client
                        .query_opt(
                            &client
                                .prepare_cached(
                                    "SELECT xui, record FROM credential_users WHERE xui = $1",
                                )
                                .await
                                .map_err(backend)?,
                            &[&xui],
                        )
                        .await
                        .map_err(backend)?;
                    row.as_ref().map(user_of).transpose()
                })
                .await
        })
    }

    fn lookup_ha1<'a>(
        &'a self,
        username: &'a str,
        realm: &'a str,
        algorithm: &'a str,
    ) -> StoreFuture<'a, Option<(String, String)>> {
        Box::pin(async move {
            let Some((username, realm, algorithm)) = lookup_key(username, realm, algorithm) else {
                return Ok(None);
            };
            let key = (username.to_string(), realm.to_string(), algorithm);
            self.db
                .with(move |client| async move {
                    let row = client
                        .query_opt(
                            &client
                                .prepare_cached(
                                    "SELECT xui, ha1_hex FROM credential_usernames \
                             WHERE username = $1 AND realm = $2 AND algorithm = $3",
                                )
                                .await
                                .map_err(backend)?,
                            &[&key.0, &key.1, &key.2],
                        )
                        .await
                        .map_err(backend)?;
                    Ok(row.map(|r| (r.get(0), r.get(1))))
                })
                .await
        })
    }

    fn put_user<'a>(&'a self, cred: &'a Credential) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_credential(cred)?;
            let record = encode_user(cred)?;
            let cred = cred.clone();
            self.db
                .transaction(move |tx| {
                    Box::pin(async move {
                        take_user(tx, &cred.xui).await?;
                        for e in &cred.ha1 {
                            let inserted = tx
                                .execute(
                                    "INSERT INTO credential_usernames \
                                     (username, realm, algorithm, xui, ha1_hex) \
                                     VALUES ($1, $2, $3, $4, $5)",
                                    &[
                                        &e.username,
                                        &cred.realm,
                                        &e.algorithm,
                                        &cred.xui,
                                        &e.ha1_hex,
                                    ],
                                )
                                .await;
                            match inserted {
                                Err(e) if is_unique_violation(&e) => {
                                    return Err(StorageError::PreconditionFailed)
                                }
                                other => other.map_err(backend)?,
                            };
                        }
                        tx.execute(
                            "INSERT INTO credential_users (xui, record) VALUES ($1, $2) \
                             ON CONFLICT (xui) DO UPDATE SET record = EXCLUDED.record",
                            &[&cred.xui, &record],
                        )
                        .await
                        .map_err(backend)?;
                        Ok(())
                    })
                })
                .await
        })
    }

    fn delete_user<'a>(&'a self, xui: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            valid_xui(xui)?;
            let xui = xui.to_string();
            self.db
                .transaction(move |tx| {
                    Box::pin(async move {
                        take_user(tx, &xui).await?;
                        let gone = tx
                            .execute("DELETE FROM credential_users WHERE xui = $1", &[&xui])
                            .await
                            .map_err(backend)?;
                        Ok(gone > 0)
                    })
                })
                .await
        })
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<Credential>> {
        Box::pin(self.db.with(|client| async move {
            let rows = client
                .query(
                    &client
                        .prepare_cached("SELECT xui, record FROM credential_users ORDER BY xui")
                        .await
                        .map_err(backend)?,
                    &[],
                )
                .await
                .map_err(backend)?;
            rows.iter().map(user_of).collect()
        }))
    }
}
