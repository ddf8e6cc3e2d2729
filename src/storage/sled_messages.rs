//! sled backend of [`MessageStore`] (deferred IMs, history, charging records). Trees in the
//! document database:
//! - `messages`: id (u64 BE) → record;
//! - `messages_by_owner`: `mailbox owner \0 id` → empty (claims and pages per owner);
//! - `messages_by_expiry`: `expires id` (u64 BE each) → empty (expiry without a scan).
//!
//! Appends and removals are sled transactions over the three trees; a claim is a
//! compare-and-swap of the record, so two deliverers never claim one message. Each change is
//! flushed before it resolves.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::messages::{validate, Mailbox, MessageStore, NewMessage, StoredMessage};
use super::sled_common::{from_sled, from_tx, len32, push_bytes, Reader, TxResult};
use super::sled_writer::SledWriter;
use super::subscriptions::StoreFuture;
use super::StorageError;

const SEP: u8 = 0;
/// Version 2 adds the ended attempts (a version 1 record has none).
const RECORD_VERSION: u8 = 2;

/// Messages in a sled database (usually the document store's, `SledStore::db`).
pub struct SledMessages {
    db: sled::Db,
    trees: Owned,
    /// Transactions and flushes run here (one thread, group flushes: `sled_writer`).
    writer: SledWriter,
}

/// The three trees (cheap to clone: sled trees are shared handles).
#[derive(Clone)]
struct Owned {
    messages: sled::Tree,
    by_owner: sled::Tree,
    by_expiry: sled::Tree,
}

type Trees<'a> = (
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
);

impl SledMessages {
    pub fn new(db: &sled::Db) -> Result<SledMessages, StorageError> {
        Ok(SledMessages {
            db: db.clone(),
            trees: Owned {
                messages: db.open_tree("messages").map_err(from_sled)?,
                by_owner: db.open_tree("messages_by_owner").map_err(from_sled)?,
                by_expiry: db.open_tree("messages_by_expiry").map_err(from_sled)?,
            },
            writer: SledWriter::start(db.clone(), "xcapd-messages")?,
        })
    }

    /// Runs `f` on the writer thread with the trees; `durable`: resolves once flushed.
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&Owned) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let trees = self.trees.clone();
        self.writer.run(durable, move || f(&trees)).await
    }
}

impl Owned {
    /// One transaction over the three trees (on the writer thread, under the sled gate).
    fn transact<T>(&self, f: impl Fn(Trees<'_>) -> TxResult<T>) -> Result<T, StorageError> {
        (&self.messages, &self.by_owner, &self.by_expiry)
            .transaction(|(a, b, c)| f((a, b, c)))
            .map_err(from_tx)
    }

    fn remove_in(
        (messages, by_owner, by_expiry): Trees<'_>,
        id: u64,
    ) -> TxResult<Option<StoredMessage>> {
        let Some(old) = messages.remove(&id.to_be_bytes())? else {
            return Ok(None);
        };
        let old = decode(id, &old).map_err(ConflictableTransactionError::Abort)?;
        by_owner.remove(owner_key(old.message.mailbox, &old.message.owner, id))?;
        by_expiry.remove(expiry_key(old.message.expires_ms, id))?;
        Ok(Some(old))
    }

    fn load(&self, id: u64) -> Result<Option<(sled::IVec, StoredMessage)>, StorageError> {
        match self.messages.get(id.to_be_bytes()).map_err(from_sled)? {
            Some(raw) => {
                let m = decode(id, &raw)?;
                Ok(Some((raw, m)))
            }
            None => Ok(None),
        }
    }

    /// Ids in one owner's list above `after`, in order.
    fn owner_ids(
        &self,
        mailbox: Mailbox,
        owner: &str,
        after: u64,
    ) -> impl Iterator<Item = Result<u64, StorageError>> + '_ {
        let prefix = owner_key(mailbox, owner, 0);
        let prefix = prefix[..prefix.len() - 8].to_vec();
        let start = owner_key(mailbox, owner, after.saturating_add(1));
        self.by_owner
            .range(start..)
            .keys()
            .take_while(move |k| k.as_ref().map_or(true, |k| k.starts_with(&prefix)))
            .map(|k| {
                let k = k.map_err(from_sled)?;
                be_u64(&k[k.len().saturating_sub(8)..])
            })
    }
}

impl MessageStore for SledMessages {
    fn append_held(&self, message: NewMessage, held_until_ms: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            validate(&message)?;
            let id = self.db.generate_id().map_err(from_sled)? + 1;
            let stored = StoredMessage {
                id,
                message,
                claimed_until_ms: held_until_ms,
                attempts: 0,
            };
            let record = encode(&stored)?;
            self.write(true, move |t| {
                let m = &stored.message;
                t.transact(|(messages, by_owner, by_expiry)| {
                    messages.insert(&id.to_be_bytes(), record.as_slice())?;
                    by_owner.insert(owner_key(m.mailbox, &m.owner, id), &[][..])?;
                    by_expiry.insert(expiry_key(m.expires_ms, id), &[][..])?;
                    Ok(())
                })?;
                Ok(id)
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
            self.write(true, move |t| {
                let mut claimed = Vec::new();
                for id in t.owner_ids(Mailbox::Deferred, &owner, 0) {
                    if claimed.len() == limit {
                        break;
                    }
                    let Some((raw, mut m)) = t.load(id?)? else {
                        continue;
                    };
                    if m.claimed_until_ms > now_ms || m.message.expires_ms <= now_ms {
                        continue;
                    }
                    m.claimed_until_ms = now_ms.saturating_add(lease_ms);
                    let swapped = t
                        .messages
                        .compare_and_swap(m.id.to_be_bytes(), Some(raw), Some(encode(&m)?))
                        .map_err(from_sled)?;
                    // Lost to another deliverer (or acknowledged meanwhile): not ours.
                    if swapped.is_ok() {
                        claimed.push(m);
                    }
                }
                Ok(claimed)
            })
            .await
        })
    }

    fn release(&self, ids: Vec<u64>, ended: bool) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.write(true, move |t| {
                for id in ids {
                    let Some((raw, mut m)) = t.load(id)? else {
                        continue;
                    };
                    m.claimed_until_ms = 0;
                    m.attempts = m.attempts.saturating_add(u32::from(ended));
                    // Acknowledged or claimed anew meanwhile: left as it is.
                    let _ = t
                        .messages
                        .compare_and_swap(id.to_be_bytes(), Some(raw), Some(encode(&m)?))
                        .map_err(from_sled)?;
                }
                Ok(())
            })
            .await
        })
    }

    fn acknowledge(&self, id: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            self.write(true, move |t| {
                Ok(t.transact(|trees| Owned::remove_in(trees, id))?.is_some())
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
            let mut out = Vec::new();
            for id in self.trees.owner_ids(mailbox, &owner, after).take(limit) {
                if let Some((_, m)) = self.trees.load(id?)? {
                    out.push(m);
                }
            }
            Ok(out)
        })
    }

    fn count(&self, mailbox: Mailbox) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut n = 0u64;
            for key in self.trees.by_owner.scan_prefix([mailbox.code()]).keys() {
                key.map_err(from_sled)?;
                n += 1;
            }
            Ok(n)
        })
    }

    fn owners(
        &self,
        mailbox: Mailbox,
        after: Option<String>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            // Owner keys are `code owner SEP id`: after each owner found, skip past its ids.
            let past = |owner: &str| {
                let mut k = owner_key(mailbox, owner, u64::MAX);
                k.push(0);
                k
            };
            let mut start = after.as_deref().map_or(vec![mailbox.code()], past);
            let mut out = Vec::new();
            while out.len() < limit {
                let Some(entry) = self.trees.by_owner.range(start.clone()..).keys().next() else {
                    break;
                };
                let key = entry.map_err(from_sled)?;
                if key.first() != Some(&mailbox.code()) || key.len() < 10 {
                    break;
                }
                let owner = std::str::from_utf8(&key[1..key.len() - 9])
                    .map_err(|_| StorageError::Corrupt("bad message owner key".into()))?
                    .to_string();
                start = past(&owner);
                out.push(owner);
            }
            Ok(out)
        })
    }

    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(async move {
            self.write(true, move |t| {
                let end = expiry_key(now_ms.saturating_add(1), 0);
                let mut expired = Vec::new();
                for key in t.by_expiry.range(..end).keys() {
                    let key = key.map_err(from_sled)?;
                    let id = be_u64(key.get(8..).unwrap_or_default())?;
                    if let Some(m) = t.transact(|trees| Owned::remove_in(trees, id))? {
                        expired.push(m);
                    }
                }
                Ok(expired)
            })
            .await
        })
    }
}

fn be_u64(b: &[u8]) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(b)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt("bad message index key".into()))
}

fn owner_key(mailbox: Mailbox, owner: &str, id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(owner.len() + 10);
    out.push(mailbox.code());
    out.extend_from_slice(owner.as_bytes());
    out.push(SEP);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

fn expiry_key(expires_ms: u64, id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out
}

pub(super) fn encode(m: &StoredMessage) -> Result<Vec<u8>, StorageError> {
    let n = &m.message;
    let mut out = Vec::with_capacity(128 + n.body.len());
    out.push(RECORD_VERSION);
    out.push(n.mailbox.code());
    for s in [&n.owner, &n.sender, &n.recipient, &n.content_type] {
        push_bytes(&mut out, s.as_bytes())?;
    }
    push_bytes(&mut out, &n.body)?;
    out.extend_from_slice(&len32(n.headers.len())?.to_be_bytes());
    for (name, value) in &n.headers {
        push_bytes(&mut out, name.as_bytes())?;
        push_bytes(&mut out, value.as_bytes())?;
    }
    out.extend_from_slice(&n.created_ms.to_be_bytes());
    out.extend_from_slice(&n.expires_ms.to_be_bytes());
    out.extend_from_slice(&m.claimed_until_ms.to_be_bytes());
    out.extend_from_slice(&m.attempts.to_be_bytes());
    Ok(out)
}

pub(super) fn decode(id: u64, bytes: &[u8]) -> Result<StoredMessage, StorageError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != 1 && version != RECORD_VERSION {
        return Err(StorageError::Corrupt(
            "unknown message record version".into(),
        ));
    }
    let mailbox = Mailbox::from_code(r.u8()?)
        .ok_or_else(|| StorageError::Corrupt("unknown mailbox".into()))?;
    let owner = r.string("owner")?;
    let sender = r.string("sender")?;
    let recipient = r.string("recipient")?;
    let content_type = r.string("content type")?;
    let body = r.bytes()?;
    let n = r.u32()? as usize;
    let mut headers = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        headers.push((r.string("header name")?, r.string("header value")?));
    }
    let message = NewMessage {
        mailbox,
        owner,
        sender,
        recipient,
        content_type,
        body,
        headers,
        created_ms: r.u64()?,
        expires_ms: r.u64()?,
    };
    let claimed_until_ms = r.u64()?;
    let attempts = if version == 1 { 0 } else { r.u32()? };
    if !r.0.is_empty() {
        return Err(StorageError::Corrupt(
            "trailing bytes in message record".into(),
        ));
    }
    Ok(StoredMessage {
        id,
        message,
        claimed_until_ms,
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written before attempts were counted (version 1) still reads, with none.
    #[test]
    fn version_1_records_read_with_no_attempts() {
        let m = StoredMessage {
            id: 7,
            message: NewMessage {
                mailbox: Mailbox::Deferred,
                owner: "sip:bob@example.com".into(),
                sender: "sip:alice@example.com".into(),
                recipient: "sip:bob@example.com".into(),
                content_type: "text/plain".into(),
                body: b"hi".to_vec(),
                headers: vec![("Call-ID".into(), "c1".into())],
                created_ms: 1,
                expires_ms: 2,
            },
            claimed_until_ms: 3,
            attempts: 4,
        };
        let v2 = encode(&m).unwrap();
        assert_eq!(decode(7, &v2).unwrap(), m);
        let mut v1 = v2[..v2.len() - 4].to_vec();
        v1[0] = 1;
        assert_eq!(decode(7, &v1).unwrap().attempts, 0);
        assert!(decode(7, &v2[..v2.len() - 2]).is_err(), "a torn record");
    }
}
