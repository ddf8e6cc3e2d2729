//! The stores of the configured backend (design.md §4): memory, or sled with its side stores
//! (credentials, stored messages, registrations in the sled database; subscriptions in their
//! own log file; charging records as JSON Lines), or PostgreSQL for every store, shared by
//! every node on the database (issue #15), opened once by the composition root.

use std::sync::Arc;

use super::AppError;
use crate::config::{Config, StorageBackend};
use crate::storage::credentials::{CredentialStore, MemoryCredentials};
use crate::storage::memory::MemoryStore;
use crate::storage::messages::{MemoryMessages, MessageStore};
use crate::storage::sled_credentials::SledCredentials;
use crate::storage::sled_messages::SledMessages;
use crate::storage::sled_store::{SledOptions, SledStore};
use crate::storage::subscription_log::LogSubscriptions;
use crate::storage::subscriptions::{MemorySubscriptions, SubscriptionStore};
use crate::storage::DocumentStore;

/// Every store the roles use; with sled all live in one database.
pub struct Stores {
    pub documents: Arc<dyn DocumentStore>,
    pub credentials: Arc<dyn CredentialStore>,
    /// SIP subscriptions (the xcap-diff notifier).
    pub subscriptions: Arc<dyn SubscriptionStore>,
    /// Deferred messages, history and charging records (the IM Server).
    pub messages: Arc<dyn MessageStore>,
    /// The IM Server's charging data records.
    pub charging: Arc<dyn crate::storage::charging::ChargingLog>,
    /// The registrar's bindings.
    pub registrations: Arc<dyn crate::storage::registrations::RegistrationStore>,
    /// Whether other nodes use these stores too (PostgreSQL): then claims held at start may
    /// be another node's, not this process's last run's.
    pub shared: bool,
    /// The database the stores share (PostgreSQL; its pool's use is a metric).
    pub database: Option<crate::storage::pg_db::PgDb>,
}

/// This node's name among the nodes sharing a database: made once at random and kept in the
/// data directory (each node has its own), so a restarted node serves its subscriptions again.
pub fn node_name(data_dir: &std::path::Path) -> Result<String, AppError> {
    let path = data_dir.join("node-name");
    let io = |e: std::io::Error| {
        crate::storage::StorageError::Backend(format!("{}: {e}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e).into()),
    }
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| crate::storage::StorageError::Backend(format!("node name: {e}")))?;
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let partial = data_dir.join("node-name.partial");
    std::fs::write(&partial, &name).map_err(io)?;
    std::fs::rename(&partial, &path).map_err(io)?;
    Ok(name)
}

/// Opens the configured storage backend.
pub async fn open_stores(config: &Config) -> Result<Stores, AppError> {
    Ok(match config.storage.backend {
        StorageBackend::Postgres => {
            use crate::storage::pg_records::{PgCharging, PgRegistrations};
            let db = crate::storage::pg_db::PgDb::open(&config.storage.postgres_url).await?;
            let node = node_name(&config.server.data_dir)?;
            tracing::info!(node = %node, schema = db.schema(), "storage: PostgreSQL");
            Stores {
                documents: Arc::new(
                    crate::storage::pg_store::PgStore::open(
                        &db,
                        config.storage.change_retention(),
                        (config.storage.cache_capacity_mb as usize) << 20,
                    )
                    .await?,
                ),
                credentials: Arc::new(crate::storage::pg_credentials::PgCredentials::new(
                    db.clone(),
                )),
                subscriptions: Arc::new(crate::storage::pg_subscriptions::PgSubscriptions::new(
                    db.clone(),
                    &node,
                )),
                messages: Arc::new(crate::storage::pg_messages::PgMessages::new(db.clone())),
                charging: Arc::new(PgCharging::new(db.clone())),
                registrations: Arc::new(PgRegistrations::new(db.clone())),
                shared: true,
                database: Some(db),
            }
        }
        StorageBackend::Memory => Stores {
            documents: Arc::new(MemoryStore::with_retention(
                config.storage.change_retention(),
            )),
            credentials: Arc::new(MemoryCredentials::new()),
            subscriptions: Arc::new(MemorySubscriptions::new()),
            messages: Arc::new(MemoryMessages::new()),
            charging: Arc::new(crate::storage::charging::MemoryCharging::default()),
            registrations: Arc::new(crate::storage::registrations::MemoryRegistrations::default()),
            shared: false,
            database: None,
        },
        StorageBackend::Sled => {
            let store = SledStore::open_in_data_dir(
                &config.server.data_dir,
                SledOptions {
                    cache_capacity_bytes: config.storage.cache_capacity_mb * 1024 * 1024,
                    journal_segment_bytes: config.storage.journal_segment_mb * 1024 * 1024,
                    min_free_bytes: config.storage.min_free_mb * 1024 * 1024,
                    change_retention: config.storage.change_retention(),
                },
            )?;
            Stores {
                credentials: Arc::new(SledCredentials::new(store.db())?),
                subscriptions: Arc::new(open_subscriptions(config, store.db())?),
                messages: Arc::new(SledMessages::new(store.db())?),
                charging: Arc::new(crate::storage::charging::JsonlCharging::open(
                    &config.server.data_dir.join("charging"),
                )?),
                registrations: Arc::new(crate::storage::registrations::SledRegistrations::new(
                    store.db(),
                )?),
                documents: Arc::new(store),
                shared: false,
                database: None,
            }
        }
    })
}

/// The subscription log in the data directory, with the subscriptions an earlier version
/// kept in sled moved into it (then removed from sled).
fn open_subscriptions(config: &Config, db: &sled::Db) -> Result<LogSubscriptions, AppError> {
    use crate::storage::sled_subscriptions::{drop_legacy, legacy_records};
    let legacy = legacy_records(db)?;
    let log = LogSubscriptions::open_importing(&config.server.data_dir.join("sip"), legacy)?;
    drop_legacy(db)?;
    Ok(log)
}
