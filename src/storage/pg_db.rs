//! The PostgreSQL database of one node (issue #15 scope 1): the connection pool every
//! PostgreSQL store of the node shares, the migrations applied once at open, and the runtime
//! their work runs on (so a store is usable from any thread or runtime, the test runtimes
//! included). Connections are made with `synchronous_commit = on`, whatever the server's
//! default: a commit that returned is durable, so every write is durable before its answer.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::NoTls;

use super::pg_schema::{backend, migrate};
use super::{DocumentLock, StorageError};

/// Connections per pool.
const POOL_SIZE: usize = 16;

/// How long a request waits for a connection, or for one to be made, before it is refused.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A node's database: cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgDb {
    pool: Pool,
    /// Connections holding session advisory locks (so lock holders never starve the pool
    /// their writes need).
    locks: Pool,
    /// How to connect (for pools and connections of a store's own).
    config: tokio_postgres::Config,
    runtime: Handle,
    schema: Arc<str>,
}

impl PgDb {
    /// Connects to `url` (a libpq URL or key=value string) and applies the migrations; the
    /// stores opened on it work on the current runtime.
    pub async fn open(url: &str) -> Result<PgDb, StorageError> {
        Self::open_config(url.parse().map_err(backend)?).await
    }

    /// [`PgDb::open`] with a parsed configuration.
    pub async fn open_config(mut config: tokio_postgres::Config) -> Result<PgDb, StorageError> {
        let options = config.get_options().unwrap_or("").to_string();
        config.options(format!("{options} -c synchronous_commit=on").trim());
        let pool = pool_of(config.clone())?;
        let mut client = pool.get().await.map_err(backend)?;
        migrate(&mut client).await?;
        let schema: String = client
            .query_one("SELECT current_schema()::text", &[])
            .await
            .map_err(backend)?
            .get(0);
        drop(client);
        Ok(PgDb {
            pool,
            locks: pool_of(config.clone())?,
            config,
            runtime: Handle::current(),
            schema: Arc::from(schema),
        })
    }

    /// The schema the stores live in (two deployments may share a database).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// The pool's use now (metrics).
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Holds the session advisory lock `id` (waiting for it) until the guard is dropped:
    /// another node's holder of `id` waits meanwhile. The guard is made in a task of the
    /// database's runtime, so a caller dropped while waiting still releases what it got.
    pub async fn advisory_lock(&self, id: i64) -> Result<DocumentLock, StorageError> {
        let locks = self.locks.clone();
        let held = self
            .runtime
            .spawn(async move {
                let client = locks.get().await.map_err(unavailable)?;
                let lock = client
                    .prepare_cached("SELECT pg_advisory_lock($1)")
                    .await
                    .map_err(backend)?;
                client.execute(&lock, &[&id]).await.map_err(backend)?;
                Ok::<_, StorageError>(AdvisoryLock {
                    client: Some(client),
                    id,
                    runtime: Handle::current(),
                })
            })
            .await
            .map_err(|e| StorageError::Backend(format!("database task: {e}")))??;
        Ok(DocumentLock::new(held))
    }

    /// Runs `work` with a pooled connection on the database's runtime.
    pub async fn with<T, F, Fut>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, StorageError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let task = self.runtime.spawn(async move {
            let client = pool.get().await.map_err(unavailable)?;
            work(client).await
        });
        task.await
            .map_err(|e| StorageError::Backend(format!("database task: {e}")))?
    }

    /// [`PgDb::with`] inside one transaction, committed when `work` succeeds (rolled back
    /// otherwise).
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t tokio_postgres::Transaction<'t>) -> TxFuture<'t, T> + Send + 'static,
    {
        self.with(move |mut client| async move {
            let tx = client.transaction().await.map_err(backend)?;
            let out = work(&tx).await?;
            tx.commit().await.map_err(backend)?;
            Ok(out)
        })
        .await
    }
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
            let unlocked = match client.prepare_cached("SELECT pg_advisory_unlock($1)").await {
                Ok(unlock) => client.execute(&unlock, &[&id]).await.is_ok(),
                Err(_) => false,
            };
            if !unlocked {
                drop(deadpool_postgres::Object::take(client));
            }
        });
    }
}

/// The future of a [`PgDb::transaction`] body.
pub type TxFuture<'t, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StorageError>> + Send + 't>>;

/// No connection from the pool: the database is unreachable or every connection is busy.
pub fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("no database connection: {e}"))
}

/// A pool of [`POOL_SIZE`] connections whose waits are bounded by [`POOL_WAIT`] (then
/// `Unavailable`: 503, never a hang).
fn pool_of(config: tokio_postgres::Config) -> Result<Pool, StorageError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .build()
        .map_err(backend)
}

/// Whether `e` is a unique-constraint violation (another writer took the key first).
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// `n` as a PostgreSQL bigint.
pub fn to_i64(n: u64) -> Result<i64, StorageError> {
    i64::try_from(n).map_err(|_| StorageError::Backend("a number beyond i64".into()))
}

/// A time, id or limit as a bigint: past the bigint range (times hundreds of millions of
/// years ahead, ids and limits no table reaches) is the same as its end, so "never", "no
/// limit" and "everything until now" compare as they should.
pub fn clamped_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
