//! sled backend of [`SubscriptionStore`] (RFC 6665 §4.2 subscription state that survives a
//! restart): one tree in the document database, `subscriptions`: `call-id \0 local-tag \0
//! remote-tag` → record. No secondary indexes: the notifier keeps its own in memory and reads
//! the store whole only at start; listing per subscriber (admin API) and expiry scan the tree.
//! Two index trees kept earlier cost a sled entry each per subscription (RSS, issue #13) and
//! four more writes per NOTIFY checkpoint; they are dropped when found.
//!
//! Every write runs on the store's writer thread ([`super::sled_writer`]), so writes are
//! serialized; `put` and `remove` resolve once flushed (one flush per batch), `checkpoint` at
//! once (sled's background flush makes it durable within 500 ms).

use super::sled_common::from_sled;
use super::sled_writer::SledWriter;
use super::subscriptions::{
    decode, dialog_key, encode, validate, DialogId, StoreFuture, Subscription, SubscriptionStore,
};
use super::StorageError;

/// Index trees of earlier versions, removed at start.
const DROPPED_TREES: [&str; 2] = ["subscriptions_by_aor", "subscriptions_by_expiry"];
const TREE: &str = "subscriptions";

/// Subscriptions in a sled database (usually the document store's, `SledStore::db`).
pub struct SledSubscriptions {
    subs: sled::Tree,
    writer: SledWriter,
}

impl SledSubscriptions {
    pub fn new(db: &sled::Db) -> Result<SledSubscriptions, StorageError> {
        for name in DROPPED_TREES {
            db.drop_tree(name).map_err(from_sled)?;
        }
        Ok(SledSubscriptions {
            subs: db.open_tree(TREE).map_err(from_sled)?,
            writer: SledWriter::start(db.clone(), "xcapd-subscriptions")?,
        })
    }

    /// Runs `f` on the writer thread with the tree.
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&sled::Tree) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let subs = self.subs.clone();
        self.writer.run(durable, move || f(&subs)).await
    }

    /// Every record, decoded, in dialog order.
    fn scan(&self) -> impl Iterator<Item = Result<Subscription, StorageError>> + '_ {
        self.subs.iter().map(|item| {
            let (k, v) = item.map_err(from_sled)?;
            decode(&k, &v)
        })
    }
}

/// The subscriptions a database holds from before they moved to their own log
/// ([`super::subscription_log`]); none when it never held any.
pub fn legacy_records(db: &sled::Db) -> Result<Vec<Subscription>, StorageError> {
    if !db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == TREE.as_bytes())
    {
        return Ok(Vec::new());
    }
    let tree = db.open_tree(TREE).map_err(from_sled)?;
    tree.iter()
        .map(|item| {
            let (k, v) = item.map_err(from_sled)?;
            decode(&k, &v)
        })
        .collect()
}

/// Removes the subscription trees once their records are in the log (then flushed).
pub fn drop_legacy(db: &sled::Db) -> Result<(), StorageError> {
    let mut dropped = false;
    for name in DROPPED_TREES.iter().chain([&TREE]) {
        dropped |= db.drop_tree(name).map_err(from_sled)?;
    }
    if dropped {
        db.flush().map_err(from_sled)?;
    }
    Ok(())
}

/// Writes the record of `sub` (not yet flushed).
fn store(subs: &sled::Tree, sub: &Subscription) -> Result<(), StorageError> {
    subs.insert(dialog_key(&sub.dialog), encode(sub)?)
        .map_err(from_sled)?;
    Ok(())
}

impl SubscriptionStore for SledSubscriptions {
    fn put(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            validate(&sub)?;
            self.write(true, move |t| store(t, &sub)).await
        })
    }

    fn checkpoint(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        // Durable with sled's next background flush (every 500 ms).
        Box::pin(async move {
            validate(&sub)?;
            self.write(false, move |t| store(t, &sub)).await
        })
    }

    fn get(&self, dialog: DialogId) -> StoreFuture<'_, Option<Subscription>> {
        Box::pin(async move {
            let dkey = dialog_key(&dialog);
            match self.subs.get(&dkey).map_err(from_sled)? {
                Some(v) => decode(&dkey, &v).map(Some),
                None => Ok(None),
            }
        })
    }

    fn remove(&self, dialog: DialogId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let dkey = dialog_key(&dialog);
            self.write(true, move |t| {
                Ok(t.remove(dkey).map_err(from_sled)?.is_some())
            })
            .await
        })
    }

    fn by_subscriber(&self, subscriber: String) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for sub in self.scan() {
                let sub = sub?;
                if sub.subscriber == subscriber {
                    out.push(sub);
                }
            }
            Ok(out)
        })
    }

    fn all(&self) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move { self.scan().collect() })
    }

    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            self.write(true, move |t| {
                let mut expired = Vec::new();
                for item in t.iter() {
                    let (k, v) = item.map_err(from_sled)?;
                    let sub = decode(&k, &v)?;
                    // Writes are serialized on this thread: no refresh can come in between.
                    if sub.expires_at_ms <= now_ms {
                        t.remove(&k).map_err(from_sled)?;
                        expired.push(sub);
                    }
                }
                Ok(expired)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::messages::{Mailbox, MessageStore, NewMessage};
    use crate::storage::sled_messages::SledMessages;
    use crate::storage::{SledOptions, SledStore};

    fn sample() -> Subscription {
        crate::storage::subscriptions::sample("c@h", 1234)
    }

    // Upgrading: subscriptions an earlier version kept in sled move to the log (and stay
    // there after another restart), and sled no longer holds them.
    #[tokio::test]
    async fn earlier_subscriptions_move_to_the_log() {
        use crate::storage::subscription_log::LogSubscriptions;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db"), SledOptions::default()).unwrap();
        let mut sub = sample();
        SledSubscriptions::new(store.db())
            .unwrap()
            .put(sub.clone())
            .await
            .unwrap();
        let legacy = legacy_records(store.db()).unwrap();
        assert_eq!(legacy, vec![sub.clone()]);
        let log = LogSubscriptions::open_importing(&dir.path().join("sip"), legacy).unwrap();
        drop_legacy(store.db()).unwrap();
        assert!(legacy_records(store.db()).unwrap().is_empty());
        sub.notified_seq += 1;
        log.checkpoint(sub.clone()).await.unwrap();
        drop(log);
        let log = LogSubscriptions::open_importing(&dir.path().join("sip"), vec![]).unwrap();
        assert_eq!(log.all().await.unwrap(), vec![sub]);
    }

    // A database of an earlier version: its index trees go, its records stay readable.
    #[tokio::test]
    async fn index_trees_of_earlier_versions_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        for name in DROPPED_TREES {
            store
                .db()
                .open_tree(name)
                .unwrap()
                .insert(b"k", b"")
                .unwrap();
        }
        let _subs = SledSubscriptions::new(store.db()).unwrap();
        let names: Vec<Vec<u8>> = store.db().tree_names().iter().map(|n| n.to_vec()).collect();
        for name in DROPPED_TREES {
            assert!(
                !names.contains(&name.as_bytes().to_vec()),
                "{name} is still there"
            );
        }
    }

    // RFC 6665 §4.2 state and deferred messages outlive the process: both are in the
    // document database and read back after a close and reopen.
    #[tokio::test]
    async fn subscriptions_and_messages_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sub = sample();
        let dialog = sub.dialog.clone();
        let message = NewMessage {
            mailbox: Mailbox::Deferred,
            owner: "sip:bob@example.com".into(),
            sender: "sip:alice@example.com".into(),
            recipient: "sip:bob@example.com".into(),
            content_type: "text/plain".into(),
            body: b"hello".to_vec(),
            headers: vec![],
            created_ms: 1,
            expires_ms: u64::MAX,
        };
        let id = {
            let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
            let subs = SledSubscriptions::new(store.db()).unwrap();
            subs.put(sub.clone()).await.unwrap();
            let msgs = SledMessages::new(store.db()).unwrap();
            let id = msgs.append(message.clone()).await.unwrap();
            store.close().unwrap();
            id
        };
        let store = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        let subs = SledSubscriptions::new(store.db()).unwrap();
        assert_eq!(subs.get(dialog).await.unwrap(), Some(sub));
        let msgs = SledMessages::new(store.db()).unwrap();
        let claimed = msgs
            .claim("sip:bob@example.com".into(), 5, 10, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].id, &claimed[0].message), (id, &message));
        let next = msgs.append(message).await.unwrap();
        assert!(next > id, "ids keep increasing after a restart");
    }
}
