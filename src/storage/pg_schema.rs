//! The PostgreSQL schema of xcapd and its versioned migrations (issue #15 scope 1): applied in
//! order at start, each in its own transaction with its version; a database whose schema is
//! newer than this binary knows is refused (an older binary must not write it).
//!
//! Text columns that are keys use the "C" collation, so listings come back in byte order, the
//! order of [`super::DocKey`] in every other backend.

use super::StorageError;

/// Every migration, oldest first; the version of migration `i` is `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: documents and their change log (the feed, design.md §2).
    r#"
    CREATE TABLE documents (
        auid text COLLATE "C" NOT NULL,
        -- '' for the global tree, else the user's XUI.
        tree text COLLATE "C" NOT NULL,
        path text COLLATE "C" NOT NULL,
        body text NOT NULL,
        etag text NOT NULL,
        modified_ms bigint NOT NULL,
        PRIMARY KEY (auid, tree, path)
    );
    CREATE INDEX documents_by_tree ON documents (tree, auid, path);
    -- One row: the last change's sequence number and how far retention trimmed the log.
    -- Writers take its row lock first, so changes commit in sequence order, gap-free.
    CREATE TABLE feed_head (
        id int PRIMARY KEY CHECK (id = 1),
        seq bigint NOT NULL,
        trimmed_through bigint NOT NULL
    );
    INSERT INTO feed_head VALUES (1, 0, 0);
    CREATE TABLE changes (
        seq bigint PRIMARY KEY,
        at_ms bigint NOT NULL,
        record bytea NOT NULL
    );
    "#,
    // 2: the stores of the SIP side and the users (every storage trait on PostgreSQL).
    r#"
    CREATE TABLE credential_users (
        xui text COLLATE "C" PRIMARY KEY,
        record bytea NOT NULL
    );
    -- The Digest lookup path: (username, realm, algorithm) belongs to one user.
    CREATE TABLE credential_usernames (
        username text COLLATE "C" NOT NULL,
        realm text COLLATE "C" NOT NULL,
        algorithm text COLLATE "C" NOT NULL,
        xui text COLLATE "C" NOT NULL,
        ha1_hex text NOT NULL,
        PRIMARY KEY (username, realm, algorithm)
    );
    CREATE INDEX credential_usernames_by_xui ON credential_usernames (xui);
    -- SIP subscriptions; `node` serves the dialog (re-arms it at start, expires it).
    CREATE TABLE subscriptions (
        call_id text COLLATE "C" NOT NULL,
        local_tag text COLLATE "C" NOT NULL,
        remote_tag text COLLATE "C" NOT NULL,
        node text COLLATE "C" NOT NULL,
        subscriber text COLLATE "C" NOT NULL,
        expires_at_ms bigint NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (call_id, local_tag, remote_tag)
    );
    CREATE INDEX subscriptions_by_subscriber ON subscriptions (subscriber);
    CREATE INDEX subscriptions_by_node ON subscriptions (node, expires_at_ms);
    -- Stored messages; a claim is `claimed_until_ms` in the future.
    CREATE TABLE messages (
        id bigserial PRIMARY KEY,
        mailbox smallint NOT NULL,
        owner text COLLATE "C" NOT NULL,
        expires_ms bigint NOT NULL,
        claimed_until_ms bigint NOT NULL,
        attempts int NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX messages_by_owner ON messages (mailbox, owner, id);
    CREATE INDEX messages_by_expiry ON messages (expires_ms);
    -- Registrar bindings per address of record (JSON array).
    CREATE TABLE registrations (
        aor text COLLATE "C" PRIMARY KEY,
        bindings text NOT NULL
    );
    -- Charging data records as JSON lines, per UTC day in append order.
    CREATE TABLE charging (
        id bigserial PRIMARY KEY,
        day text COLLATE "C" NOT NULL,
        line text NOT NULL
    );
    CREATE INDEX charging_by_day ON charging (day, id);
    "#,
    // 3: the nodes serving subscriptions, and when each was last heard of.
    r#"
    CREATE TABLE nodes (
        node text COLLATE "C" PRIMARY KEY,
        seen_ms bigint NOT NULL
    );
    "#,
    // 4: document bodies (XML, compressed out of line from 2 kB on) with lz4 where the server
    // has it: a fraction of pglz's CPU per write (bench: PostgreSQL CPU per durable PUT of a
    // 4 kB list 0.63–0.70 ms with pglz, 0.56–0.59 ms with lz4). Servers without lz4 keep pglz.
    r#"
    DO $$
    BEGIN
        ALTER TABLE documents ALTER COLUMN body SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported OR syntax_error THEN
        NULL;
    END
    $$;
    "#,
    // 5: a writer's check, in the transaction of its batch, that documents are still in the
    // versions the batch assumed (ETag, NULL: absent) and that no other node's writer holds
    // the turn of one (`turns`: the session advisory locks of `lock_document`), so a batch
    // sends its checks and its writes in one round trip; either failing aborts the
    // transaction with SQLSTATE XC412 (the batch then reads first).
    r#"
    CREATE FUNCTION xcapd_expect_versions(auids text[], trees text[], paths text[],
                                          etags text[], turns bigint[]) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1
                   FROM unnest(auids, trees, paths, etags) AS k(auid, tree, path, etag)
                   LEFT JOIN documents d
                          ON d.auid = k.auid AND d.tree = k.tree AND d.path = k.path
                   WHERE d.etag IS DISTINCT FROM k.etag)
           OR EXISTS (SELECT 1 FROM unnest(turns) AS id
                      WHERE NOT pg_try_advisory_xact_lock_shared(id)) THEN
            RAISE EXCEPTION 'a document is not in the version the batch assumed'
                USING ERRCODE = 'XC412';
        END IF;
    END
    $$;
    "#,
];

/// The SQLSTATE of `xcapd_expect_versions` finding a document in another version.
pub(super) const STALE_VERSION: &str = "XC412";

/// The schema version this binary writes.
pub const CURRENT: i32 = MIGRATIONS.len() as i32;

/// Brings the database to [`CURRENT`]; the version it found.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32, StorageError> {
    // Two nodes starting at once: one migrates, the other waits for the lock of the schema
    // (taken before anything is created: concurrent CREATE TABLE IF NOT EXISTS can fail).
    let tx = client.transaction().await.map_err(backend)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtext('xcapd migrate ' || current_schema()));
         CREATE TABLE IF NOT EXISTS xcapd_schema (version int NOT NULL)",
    )
    .await
    .map_err(backend)?;
    let found: i32 = tx
        .query_opt("SELECT max(version) FROM xcapd_schema", &[])
        .await
        .map_err(backend)?
        .and_then(|row| row.get::<_, Option<i32>>(0))
        .unwrap_or(0);
    if found > CURRENT {
        return Err(StorageError::Backend(format!(
            "the database schema is version {found}, newer than this xcapd's {CURRENT}: \
             run a newer xcapd"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO xcapd_schema (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(found)
}

/// A database error as a storage error, with its causes (the server's message): the text is
/// for logs only (never shown to clients). A database that is gone or going (connection
/// closed or broken, shutting down, not accepting connections yet) is `Unavailable`: the
/// request gets 503 with Retry-After, and the pool connects again once it is back.
pub(crate) fn backend(e: impl std::error::Error + 'static) -> StorageError {
    let mut text = format!("postgres: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if unreachable(&e) {
        StorageError::Unavailable(text)
    } else {
        StorageError::Backend(text)
    }
}

/// Whether `e` says the database cannot be reached now (rather than refusing a statement).
fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        if let Some(pg) = c.downcast_ref::<tokio_postgres::Error>() {
            if pg.is_closed() {
                return true;
            }
            // 08: connection exception; 57P01-03: admin / crash shutdown, cannot connect now.
            if let Some(db) = pg.as_db_error() {
                let code = db.code().code();
                if code.starts_with("08") || code.starts_with("57P") {
                    return true;
                }
            }
        }
        cause = c.source();
    }
    false
}
