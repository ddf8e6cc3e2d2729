//! sled backend of [`SubscriptionStore`] (RFC 6665 §4.2 subscription state that survives a
//! restart). Trees in the document database:
//! - `subscriptions`: `call-id \0 local-tag \0 remote-tag` → record;
//! - `subscriptions_by_aor`: `aor \0 dialog` → empty (listing per subscriber);
//! - `subscriptions_by_expiry`: `expires (u64 BE) dialog` → empty (expiry without a scan).
//!
//! Each change is one sled transaction over the three trees on the store's writer thread
//! ([`super::sled_writer`]); `put` and `remove` resolve once flushed (one flush per batch),
//! `checkpoint` at once (sled's background flush makes it durable within 500 ms).

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::sled_common::{from_sled, from_tx, push_bytes, utf8, Reader, TxResult};
use super::sled_writer::SledWriter;
use super::subscriptions::{validate, DialogId, StoreFuture, Subscription, SubscriptionStore};
use super::StorageError;

const SEP: u8 = 0;
const RECORD_VERSION: u8 = 1;

/// Subscriptions in a sled database (usually the document store's, `SledStore::db`).
pub struct SledSubscriptions {
    trees: Trees,
    writer: SledWriter,
}

/// The three trees (cheap to clone: sled trees are shared handles).
#[derive(Clone)]
struct Trees {
    subs: sled::Tree,
    by_aor: sled::Tree,
    by_expiry: sled::Tree,
}

impl SledSubscriptions {
    pub fn new(db: &sled::Db) -> Result<SledSubscriptions, StorageError> {
        Ok(SledSubscriptions {
            trees: Trees {
                subs: db.open_tree("subscriptions").map_err(from_sled)?,
                by_aor: db.open_tree("subscriptions_by_aor").map_err(from_sled)?,
                by_expiry: db.open_tree("subscriptions_by_expiry").map_err(from_sled)?,
            },
            writer: SledWriter::start(db.clone(), "xcapd-subscriptions")?,
        })
    }

    /// Runs `f` on the writer thread with the trees.
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&Trees) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let trees = self.trees.clone();
        self.writer.run(durable, move || f(&trees)).await
    }
}

impl Trees {
    /// Removes one subscription inside a transaction; its old record if it existed.
    fn remove_in(
        (subs, by_aor, by_expiry): (&TransactionalTree, &TransactionalTree, &TransactionalTree),
        dkey: &[u8],
    ) -> TxResult<Option<Subscription>> {
        let Some(old) = subs.remove(dkey)? else {
            return Ok(None);
        };
        let old = decode(dkey, &old).map_err(ConflictableTransactionError::Abort)?;
        by_aor.remove(index_key(old.subscriber.as_bytes(), dkey))?;
        by_expiry.remove(index_key(&old.expires_at_ms.to_be_bytes(), dkey))?;
        Ok(Some(old))
    }

    /// One transaction over the three trees (on the writer thread, under the sled gate).
    fn transact<T>(
        &self,
        f: impl Fn((&TransactionalTree, &TransactionalTree, &TransactionalTree)) -> TxResult<T>,
    ) -> Result<T, StorageError> {
        (&self.subs, &self.by_aor, &self.by_expiry)
            .transaction(|(a, b, c)| f((a, b, c)))
            .map_err(from_tx)
    }

    /// The record and its index entries, in one transaction (not yet flushed).
    fn store(&self, sub: &Subscription) -> Result<(), StorageError> {
        let dkey = dialog_key(&sub.dialog);
        let record = encode(sub)?;
        self.transact(|trees| {
            Self::remove_in(trees, &dkey)?;
            let (subs, by_aor, by_expiry) = trees;
            subs.insert(dkey.as_slice(), record.as_slice())?;
            by_aor.insert(index_key(sub.subscriber.as_bytes(), &dkey), &[][..])?;
            by_expiry.insert(index_key(&sub.expires_at_ms.to_be_bytes(), &dkey), &[][..])?;
            Ok(())
        })
    }

    fn load(&self, dkey: &[u8]) -> Result<Option<Subscription>, StorageError> {
        match self.subs.get(dkey).map_err(from_sled)? {
            Some(v) => decode(dkey, &v).map(Some),
            None => Ok(None),
        }
    }
}

impl SubscriptionStore for SledSubscriptions {
    fn put(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            validate(&sub)?;
            self.write(true, move |t| t.store(&sub)).await
        })
    }

    fn checkpoint(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        // Durable with sled's next background flush (every 500 ms).
        Box::pin(async move {
            validate(&sub)?;
            self.write(false, move |t| t.store(&sub)).await
        })
    }

    fn get(&self, dialog: DialogId) -> StoreFuture<'_, Option<Subscription>> {
        Box::pin(async move { self.trees.load(&dialog_key(&dialog)) })
    }

    fn remove(&self, dialog: DialogId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let dkey = dialog_key(&dialog);
            self.write(true, move |t| {
                let removed = t.transact(|trees| Trees::remove_in(trees, &dkey))?;
                Ok(removed.is_some())
            })
            .await
        })
    }

    fn by_subscriber(&self, subscriber: String) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            let mut prefix = subscriber.into_bytes();
            prefix.push(SEP);
            let mut out = Vec::new();
            for item in self.trees.by_aor.scan_prefix(&prefix) {
                let (k, _) = item.map_err(from_sled)?;
                if let Some(sub) = self.trees.load(&k[prefix.len()..])? {
                    out.push(sub);
                }
            }
            Ok(out)
        })
    }

    fn all(&self) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            self.trees
                .subs
                .iter()
                .map(|item| {
                    let (k, v) = item.map_err(from_sled)?;
                    decode(&k, &v)
                })
                .collect()
        })
    }

    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            self.write(true, move |t| {
                let end = now_ms.saturating_add(1).to_be_bytes();
                let mut expired = Vec::new();
                for item in t.by_expiry.range(..&end[..]) {
                    let (k, _) = item.map_err(from_sled)?;
                    let dkey = k.get(9..).unwrap_or_default().to_vec();
                    let removed = t.transact(|trees| Trees::remove_in(trees, &dkey))?;
                    // Refreshed in between: its old expiry entry is gone with it.
                    if let Some(sub) = removed.filter(|s| s.expires_at_ms <= now_ms) {
                        expired.push(sub);
                    }
                }
                Ok(expired)
            })
            .await
        })
    }
}

fn dialog_key(d: &DialogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.call_id.len() + d.local_tag.len() + d.remote_tag.len() + 2);
    out.extend_from_slice(d.call_id.as_bytes());
    out.push(SEP);
    out.extend_from_slice(d.local_tag.as_bytes());
    out.push(SEP);
    out.extend_from_slice(d.remote_tag.as_bytes());
    out
}

fn index_key(head: &[u8], dkey: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 1 + dkey.len());
    out.extend_from_slice(head);
    out.push(SEP);
    out.extend_from_slice(dkey);
    out
}

fn encode(sub: &Subscription) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(256);
    out.push(RECORD_VERSION);
    push_bytes(&mut out, sub.subscriber.as_bytes())?;
    push_bytes(&mut out, sub.event.as_bytes())?;
    push_list(&mut out, &sub.resources)?;
    push_bytes(&mut out, sub.remote_target.as_bytes())?;
    push_list(&mut out, &sub.route_set)?;
    out.extend_from_slice(&sub.local_cseq.to_be_bytes());
    out.extend_from_slice(&sub.remote_cseq.to_be_bytes());
    out.extend_from_slice(&sub.expires_at_ms.to_be_bytes());
    out.extend_from_slice(&sub.notified_seq.to_be_bytes());
    push_bytes(&mut out, &sub.package_state)?;
    Ok(out)
}

fn push_list(out: &mut Vec<u8>, items: &[String]) -> Result<(), StorageError> {
    out.extend_from_slice(&super::sled_common::len32(items.len())?.to_be_bytes());
    for item in items {
        push_bytes(out, item.as_bytes())?;
    }
    Ok(())
}

fn read_list(r: &mut Reader<'_>, what: &str) -> Result<Vec<String>, StorageError> {
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(r.string(what)?);
    }
    Ok(out)
}

fn decode(dkey: &[u8], bytes: &[u8]) -> Result<Subscription, StorageError> {
    let mut parts = dkey.splitn(3, |b| *b == SEP);
    let (Some(call_id), Some(local_tag), Some(remote_tag)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(StorageError::Corrupt("bad dialog key".into()));
    };
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(StorageError::Corrupt(
            "unknown subscription record version".into(),
        ));
    }
    let sub = Subscription {
        dialog: DialogId {
            call_id: utf8(call_id, "Call-ID")?,
            local_tag: utf8(local_tag, "tag")?,
            remote_tag: utf8(remote_tag, "tag")?,
        },
        subscriber: r.string("subscriber")?,
        event: r.string("event")?,
        resources: read_list(&mut r, "resource")?,
        remote_target: r.string("remote target")?,
        route_set: read_list(&mut r, "route")?,
        local_cseq: r.u32()?,
        remote_cseq: r.u32()?,
        expires_at_ms: r.u64()?,
        notified_seq: r.u64()?,
        package_state: r.bytes()?,
    };
    if !r.0.is_empty() {
        return Err(StorageError::Corrupt(
            "trailing bytes in subscription record".into(),
        ));
    }
    Ok(sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::messages::{Mailbox, MessageStore, NewMessage};
    use crate::storage::sled_messages::SledMessages;
    use crate::storage::{SledOptions, SledStore};

    // RFC 6665 §4.2 state and deferred messages outlive the process: both are in the
    // document database and read back after a close and reopen.
    #[tokio::test]
    async fn subscriptions_and_messages_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let dialog = DialogId {
            call_id: "c@h".into(),
            local_tag: "l".into(),
            remote_tag: "r".into(),
        };
        let sub = Subscription {
            dialog: dialog.clone(),
            subscriber: "sip:alice@example.com".into(),
            event: "xcap-diff".into(),
            resources: vec!["resource-lists/users/sip:alice@example.com/index".into()],
            remote_target: "sip:alice@127.0.0.1:5070".into(),
            route_set: vec![],
            local_cseq: 3,
            remote_cseq: 9,
            expires_at_ms: 99,
            notified_seq: 1234,
            package_state: vec![],
        };
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
