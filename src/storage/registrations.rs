//! Registrar bindings that survive a restart (RFC 3261 §10.3: the location service is the
//! registrar's state; issue #14 scope 1): the [`RegistrationStore`] trait, a memory backend and
//! a sled backend (one tree keyed by address of record, written on its own writer thread). A
//! restarted registrar delivers to the contacts registered before, without waiting for every
//! user agent to register again.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::sled_common::from_sled;
use super::sled_writer::SledWriter;
use super::subscriptions::StoreFuture;
use super::{DocumentLock, StorageError};

/// One contact bound to an address of record (the registrar's `Binding`, stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBinding {
    pub uri: String,
    pub value: String,
    pub expires_at_ms: u64,
    pub call_id: String,
    pub cseq: u32,
}

/// Durable bindings by address of record. Every method resolves once its effect is durable.
pub trait RegistrationStore: Send + Sync + 'static {
    /// Replaces `aor`'s bindings (none: forgets the address of record).
    fn put(&self, aor: String, bindings: Vec<StoredBinding>) -> StoreFuture<'_, ()>;
    /// Every address of record with its bindings (at start).
    fn all(&self) -> StoreFuture<'_, Vec<(String, Vec<StoredBinding>)>>;
    /// The bindings of `aor` (none: not registered). A registrar whose store other nodes
    /// share reads them here (another node may have taken the REGISTER).
    fn get(&self, aor: String) -> StoreFuture<'_, Vec<StoredBinding>>;
    /// Holds `aor` against the registrars of the other nodes sharing the store until the
    /// guard drops (a REGISTER reads, computes and writes the bindings under it); `None` where
    /// no other node writes.
    fn lock(&self, aor: String) -> StoreFuture<'_, Option<DocumentLock>>;
}

/// Bindings in memory (tests, ephemeral deployments).
#[derive(Debug, Default)]
pub struct MemoryRegistrations {
    by_aor: Mutex<BTreeMap<String, Vec<StoredBinding>>>,
}

impl RegistrationStore for MemoryRegistrations {
    fn put(&self, aor: String, bindings: Vec<StoredBinding>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut map = self.by_aor.lock();
            if bindings.is_empty() {
                map.remove(&aor);
            } else {
                map.insert(aor, bindings);
            }
            Ok(())
        })
    }

    fn all(&self) -> StoreFuture<'_, Vec<(String, Vec<StoredBinding>)>> {
        Box::pin(async move {
            let map = self.by_aor.lock();
            Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        })
    }

    fn get(&self, aor: String) -> StoreFuture<'_, Vec<StoredBinding>> {
        Box::pin(async move { Ok(self.by_aor.lock().get(&aor).cloned().unwrap_or_default()) })
    }

    fn lock(&self, _aor: String) -> StoreFuture<'_, Option<DocumentLock>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Bindings in a sled database (usually the document store's).
pub struct SledRegistrations {
    tree: sled::Tree,
    writer: SledWriter,
}

impl SledRegistrations {
    pub fn new(db: &sled::Db) -> Result<SledRegistrations, StorageError> {
        Ok(SledRegistrations {
            tree: db.open_tree("registrations").map_err(from_sled)?,
            writer: SledWriter::start(db.clone(), "xcapd-registrations")?,
        })
    }
}

impl RegistrationStore for SledRegistrations {
    fn put(&self, aor: String, bindings: Vec<StoredBinding>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let value =
                serde_json::to_vec(&bindings).map_err(|e| StorageError::Backend(e.to_string()))?;
            let tree = self.tree.clone();
            self.writer
                .run(true, move || {
                    if bindings.is_empty() {
                        tree.remove(aor.as_bytes()).map_err(from_sled)?;
                    } else {
                        tree.insert(aor.as_bytes(), value).map_err(from_sled)?;
                    }
                    Ok(())
                })
                .await
        })
    }

    fn all(&self) -> StoreFuture<'_, Vec<(String, Vec<StoredBinding>)>> {
        Box::pin(async move {
            let tree = self.tree.clone();
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for entry in tree.iter() {
                    let (k, v) = entry.map_err(from_sled)?;
                    let aor = String::from_utf8(k.to_vec())
                        .map_err(|_| StorageError::Corrupt("bad registration key".into()))?;
                    let bindings = serde_json::from_slice(&v)
                        .map_err(|_| StorageError::Corrupt("bad registration record".into()))?;
                    out.push((aor, bindings));
                }
                Ok(out)
            })
            .await
            .map_err(|e| StorageError::Backend(e.to_string()))?
        })
    }

    fn get(&self, aor: String) -> StoreFuture<'_, Vec<StoredBinding>> {
        Box::pin(async move {
            match self.tree.get(aor.as_bytes()).map_err(from_sled)? {
                None => Ok(Vec::new()),
                Some(v) => serde_json::from_slice(&v)
                    .map_err(|_| StorageError::Corrupt("bad registration record".into())),
            }
        })
    }

    fn lock(&self, _aor: String) -> StoreFuture<'_, Option<DocumentLock>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(uri: &str) -> StoredBinding {
        StoredBinding {
            uri: uri.into(),
            value: format!("<{uri}>;q=0.5"),
            expires_at_ms: 10_000,
            call_id: "c".into(),
            cseq: 3,
        }
    }

    async fn replaced_and_forgotten(s: &dyn RegistrationStore) {
        let bob = "sip:bob@example.com".to_string();
        s.put(
            bob.clone(),
            vec![binding("sip:b@1.2.3.4"), binding("sip:b@5.6.7.8")],
        )
        .await
        .unwrap();
        s.put(
            "sip:carol@example.com".into(),
            vec![binding("sip:c@1.2.3.4")],
        )
        .await
        .unwrap();
        s.put(bob.clone(), vec![binding("sip:b@9.9.9.9")])
            .await
            .unwrap();
        assert_eq!(
            s.get(bob.clone()).await.unwrap(),
            vec![binding("sip:b@9.9.9.9")]
        );
        let all = s.all().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], (bob.clone(), vec![binding("sip:b@9.9.9.9")]));
        s.put(bob.clone(), Vec::new()).await.unwrap();
        assert!(s.get(bob).await.unwrap().is_empty());
        let all = s.all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "sip:carol@example.com");
    }

    /// RFC 3261 §10.3: a REGISTER replaces the bindings of its address of record; an empty set
    /// forgets it; both backends, and sled's are in its tree for the next process.
    #[tokio::test]
    async fn bindings_are_replaced_forgotten_and_kept() {
        let memory = MemoryRegistrations::default();
        let lock = memory.lock("sip:bob@example.com".into()).await.unwrap();
        assert!(lock.is_none(), "one node: nothing to hold");
        replaced_and_forgotten(&memory).await;
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        replaced_and_forgotten(&SledRegistrations::new(&db).unwrap()).await;
        let again = SledRegistrations::new(&db).unwrap().all().await.unwrap();
        assert_eq!(again.len(), 1, "read back by a new instance");
    }

    /// The same on PostgreSQL (issue #15 scope 1), read back by another node's store.
    #[cfg(xcapd_pg)]
    #[tokio::test]
    async fn bindings_are_replaced_forgotten_and_kept_on_postgres() {
        use crate::storage::pg_records::PgRegistrations;
        let db = crate::storage::pg_test::db();
        replaced_and_forgotten(&PgRegistrations::new(db.clone())).await;
        let again = PgRegistrations::new(db.clone()).all().await.unwrap();
        assert_eq!(again.len(), 1, "read back by a new instance");
        // Another registrar waits for the holder of an address of record, not of another.
        let (one, other) = (PgRegistrations::new(db.clone()), PgRegistrations::new(db));
        let held = one.lock("sip:bob@example.com".into()).await.unwrap();
        assert!(held.is_some());
        let other = std::sync::Arc::new(other);
        let elsewhere = other.lock("sip:carol@example.com".into());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), elsewhere).await;
        assert!(matches!(got, Ok(Ok(Some(_)))), "another AOR is free");
        let waiter = other.clone();
        let waiting = tokio::spawn(async move {
            waiter
                .lock("sip:bob@example.com".into())
                .await
                .map(|l| l.is_some())
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "held by the other registrar");
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(got, Ok(Ok(Ok(true)))), "released: {got:?}");
    }
}
