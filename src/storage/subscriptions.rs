//! SIP subscriptions that survive a restart (RFC 6665 §4.2: the notifier's subscription and
//! dialog state; RFC 5875 xcap-diff subscriptions): the [`SubscriptionStore`] trait, keyed by
//! dialog, the record encoding its persistent backends share, and its memory backend. A
//! subscription remembers how far the change feed was notified, so a restarted notifier
//! resumes from there (design.md §2).

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::sled_common::{len32, push_bytes, utf8, Reader};
use super::StorageError;
pub use super::StoreFuture;

/// A SIP dialog (RFC 3261 §12): Call-ID with the notifier's (local) and subscriber's (remote)
/// tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// One subscription and the dialog it lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub dialog: DialogId,
    /// The subscriber's canonical AOR (identity from authentication).
    pub subscriber: String,
    /// Event package, e.g. `xcap-diff` (RFC 5875 §4).
    pub event: String,
    /// What is watched: document or directory selectors, or a resource-list URI.
    pub resources: Vec<String>,
    /// Where in-dialog requests go (the subscriber's Contact) and through which routes.
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// Wall-clock end of the subscription (RFC 6665 §4.2.1.1 Expires).
    pub expires_at_ms: u64,
    /// The change-feed sequence number up to which NOTIFYs were sent.
    pub notified_seq: u64,
    /// Event-package state between NOTIFYs (e.g. ETags last reported), opaque to storage.
    pub package_state: Vec<u8>,
}

impl Subscription {
    /// The record as bytes (dialog included), as the stores write it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StorageError> {
        let key = dialog_key(&self.dialog);
        let record = encode(self)?;
        let mut out = Vec::with_capacity(4 + key.len() + record.len());
        out.extend_from_slice(&len32(key.len())?.to_le_bytes());
        out.extend_from_slice(&key);
        out.extend_from_slice(&record);
        Ok(out)
    }

    /// The record [`Subscription::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Subscription, StorageError> {
        let corrupt = || StorageError::Corrupt("short subscription record".into());
        let len = bytes.get(..4).ok_or_else(corrupt)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let key = bytes.get(4..4 + len).ok_or_else(corrupt)?;
        decode(key, &bytes[4 + len..])
    }
}

/// The stored form of a subscription, shared by the backends: the dialog as a key
/// (`call-id \0 local-tag \0 remote-tag`) and the rest as a versioned record.
const SEP: u8 = 0;
const RECORD_VERSION: u8 = 1;

pub(crate) fn dialog_key(d: &DialogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.call_id.len() + d.local_tag.len() + d.remote_tag.len() + 2);
    out.extend_from_slice(d.call_id.as_bytes());
    out.push(SEP);
    out.extend_from_slice(d.local_tag.as_bytes());
    out.push(SEP);
    out.extend_from_slice(d.remote_tag.as_bytes());
    out
}

pub(crate) fn encode(sub: &Subscription) -> Result<Vec<u8>, StorageError> {
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

pub(crate) fn decode(dkey: &[u8], bytes: &[u8]) -> Result<Subscription, StorageError> {
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

/// A subscription of Alice's with Call-ID `call_id` (the storage tests).
#[cfg(test)]
pub(crate) fn sample(call_id: &str, notified_seq: u64) -> Subscription {
    Subscription {
        dialog: DialogId {
            call_id: call_id.into(),
            local_tag: "l".into(),
            remote_tag: "r".into(),
        },
        subscriber: "sip:alice@example.com".into(),
        event: "xcap-diff".into(),
        resources: vec!["resource-lists/users/sip:alice@example.com/index".into()],
        remote_target: "sip:alice@127.0.0.1:5070".into(),
        route_set: vec!["<sip:p1.example.com;lr>".into()],
        local_cseq: 3,
        remote_cseq: 9,
        expires_at_ms: 99,
        notified_seq,
        package_state: vec![1, 2, 3],
    }
}

/// Durable subscription state. Every method resolves once its effect is durable.
pub trait SubscriptionStore: Send + Sync + 'static {
    /// Creates or replaces (refresh, new CSeq, new feed position) the subscription.
    fn put(&self, sub: Subscription) -> StoreFuture<'_, ()>;
    /// Like `put`, for progress (reported ETags, feed position) written after every NOTIFY:
    /// readable at once, durable by the backend's next background flush rather than before it
    /// resolves (a restart may then report the last changes again; `put` for what must last).
    fn checkpoint(&self, sub: Subscription) -> StoreFuture<'_, ()>;
    fn get(&self, dialog: DialogId) -> StoreFuture<'_, Option<Subscription>>;
    /// `false` when there was no such subscription.
    fn remove(&self, dialog: DialogId) -> StoreFuture<'_, bool>;
    /// The subscriptions of one subscriber, by dialog order.
    fn by_subscriber(&self, subscriber: String) -> StoreFuture<'_, Vec<Subscription>>;
    /// Every subscription, by dialog order (a restarted notifier re-arms them).
    fn all(&self) -> StoreFuture<'_, Vec<Subscription>>;
    /// Removes and returns the subscriptions expired at `now_ms` (they get a final NOTIFY).
    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<Subscription>>;
    /// A store several nodes share: marks this node alive at `now_ms`, and hands it the
    /// subscriptions of nodes not heard of for `lease_ms` (it ends them: their NOTIFYs and
    /// refreshes went through the node that stopped). A store of one node has none.
    fn orphaned(&self, now_ms: u64, lease_ms: u64) -> StoreFuture<'_, Vec<Subscription>> {
        let _ = (now_ms, lease_ms);
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// Subscriptions in memory (tests, ephemeral deployments).
#[derive(Debug, Default)]
pub struct MemorySubscriptions {
    subs: Mutex<BTreeMap<DialogId, Subscription>>,
}

impl MemorySubscriptions {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The checks every backend applies before storing.
pub(crate) fn validate(sub: &Subscription) -> Result<(), StorageError> {
    let d = &sub.dialog;
    for (what, v) in [
        ("Call-ID", &d.call_id),
        ("local tag", &d.local_tag),
        ("subscriber", &sub.subscriber),
        ("event", &sub.event),
    ] {
        if v.is_empty() || v.contains('\0') {
            return Err(StorageError::InvalidKey(format!(
                "subscription {what} is empty or contains NUL"
            )));
        }
    }
    if d.remote_tag.contains('\0') {
        return Err(StorageError::InvalidKey("remote tag contains NUL".into()));
    }
    Ok(())
}

impl SubscriptionStore for MemorySubscriptions {
    fn put(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            validate(&sub)?;
            self.subs.lock().insert(sub.dialog.clone(), sub);
            Ok(())
        })
    }

    fn get(&self, dialog: DialogId) -> StoreFuture<'_, Option<Subscription>> {
        Box::pin(async move { Ok(self.subs.lock().get(&dialog).cloned()) })
    }

    fn checkpoint(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        self.put(sub)
    }

    fn remove(&self, dialog: DialogId) -> StoreFuture<'_, bool> {
        Box::pin(async move { Ok(self.subs.lock().remove(&dialog).is_some()) })
    }

    fn by_subscriber(&self, subscriber: String) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            Ok(self
                .subs
                .lock()
                .values()
                .filter(|s| s.subscriber == subscriber)
                .cloned()
                .collect())
        })
    }

    fn all(&self) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move { Ok(self.subs.lock().values().cloned().collect()) })
    }

    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            let mut subs = self.subs.lock();
            let gone: Vec<DialogId> = subs
                .values()
                .filter(|s| s.expires_at_ms <= now_ms)
                .map(|s| s.dialog.clone())
                .collect();
            Ok(gone.iter().filter_map(|d| subs.remove(d)).collect())
        })
    }
}
