//! The stores of the configured backend (design.md §4): memory, or sled with its side stores
//! (credentials, stored messages, registrations in the sled database; subscriptions in their
//! own log file; charging records as JSON Lines), or PostgreSQL for documents and the change
//! log with the same side stores in the node's sled database (issue #15 in progress), opened
//! once by the composition root.

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
}

/// Opens the configured storage backend.
pub async fn open_stores(config: &Config) -> Result<Stores, AppError> {
    Ok(match config.storage.backend {
        StorageBackend::Postgres => {
            let documents = crate::storage::pg_store::PgStore::open(
                &config.storage.postgres_url,
                config.storage.change_retention(),
            )
            .await?;
            tracing::warn!(
                "storage: documents and the change log in PostgreSQL; credentials, subscriptions, \
                 stored messages and registrations stay in this node's sled database (issue #15)"
            );
            let db = sled::Config::new()
                .path(config.server.data_dir.join("sled"))
                .cache_capacity(config.storage.cache_capacity_mb * 1024 * 1024)
                .open()
                .map_err(|e| crate::storage::StorageError::Backend(e.to_string()))?;
            Stores {
                credentials: Arc::new(SledCredentials::new(&db)?),
                subscriptions: Arc::new(open_subscriptions(config, &db)?),
                messages: Arc::new(SledMessages::new(&db)?),
                charging: Arc::new(crate::storage::charging::JsonlCharging::open(
                    &config.server.data_dir.join("charging"),
                )?),
                registrations: Arc::new(crate::storage::registrations::SledRegistrations::new(
                    &db,
                )?),
                documents: Arc::new(documents),
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
