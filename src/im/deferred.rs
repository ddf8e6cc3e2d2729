//! Store and forward (issue #14 scope 4, first part; standards.md IM-14…IM-17): a MESSAGE no
//! contact of its recipient took is kept durably in the message store's deferred list (the
//! sender gets 202 once it is durable); when the recipient registers, their messages are
//! delivered oldest first, one at a time (RFC 3428 §8), body and Content-Type as received, and
//! each is removed once a UA answered 2xx. A delivery claims messages for a lease, so one cut
//! short (a crash) is tried again later, never lost. Messages expire after
//! min(`Expires`, `im.deferred_ttl_secs`). Each recipient has a quota (count and bytes); a
//! CPIM message whose sender and `imdn.Message-ID` are stored already is kept once. The sender
//! gets the `stored` and `failed` notices it asked for (RFC 5438; IM-15b, IM-22), and the
//! recipient's deferred-list document follows the store ([`super::documents`], IM-15a).

use super::recipient_list::content;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use thiserror::Error;

use super::charging::{Charge, Charging};
use super::cpim::Cpim;
use super::documents::Projection;
use super::imdn::{Disposition, Original};
use super::pager::{anonymous, delivered, END_TO_END};
use super::route::{Delivery, Router};
use crate::sip::header::delta_seconds;
use crate::sip::message::{Headers, Message};
use crate::storage::messages::{
    all_listed, all_owners, Mailbox, MessageStore, NewMessage, StoredMessage,
};
use crate::storage::{now_ms, StorageError};
use crate::xdms::generated::rfc3339;

/// Messages claimed per round (each round holds them for the lease).
const BATCH: usize = 5;
/// Longest wait between delivery attempts for a registered recipient whose messages wait.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Stores for one recipient are checked against its stored messages one at a time; recipients
/// share these locks by hash.
pub(super) const STRIPES: usize = 64;

/// How much may wait for one recipient, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub ttl_secs: u64,
    /// How long a delivery attempt holds the messages it took (a crashed attempt's messages
    /// come back after it).
    pub lease_ms: u64,
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// Why a message was not stored.
#[derive(Debug, Error)]
pub enum DeferredError {
    /// The recipient's quota is used up (answered 480 with this reason).
    #[error("the recipient's stored messages are at their limit")]
    QuotaExceeded,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What storing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(u64),
    /// The same sender's message with this `imdn.Message-ID` waits already: kept once.
    Duplicate,
}

/// The deferred messages and their delivery.
pub struct Deferred {
    store: Arc<dyn MessageStore>,
    router: Arc<Router>,
    limits: Limits,
    /// The recipients' deferred-list documents (IM-15a), when the XDMS serves them.
    list: Option<Arc<Projection>>,
    /// Recipients being delivered to (one delivery per recipient at a time), and how to cut
    /// its wait before the next attempt short (a new registration).
    running: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    charging: Charging,
    /// This value's own handle (delivery tasks started from `&self`).
    me: std::sync::OnceLock<std::sync::Weak<Deferred>>,
}

impl Deferred {
    pub fn new(
        store: Arc<dyn MessageStore>,
        router: Arc<Router>,
        limits: Limits,
        list: Option<Arc<Projection>>,
        charging: Charging,
    ) -> Arc<Deferred> {
        let d = Arc::new(Deferred {
            store,
            router,
            limits,
            list,
            charging,
            running: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            me: std::sync::OnceLock::new(),
        });
        let _ = d.me.set(Arc::downgrade(&d));
        d
    }

    /// Keeps `msg` for `recipient` (durable when this returns), unless the quota is used up
    /// or it is kept already; the sender is told `stored` when it asked.
    /// With `hold` (a time, 0 for none) it is held for a delivery attempt still running
    /// until then, which settles it ([`Deferred::settle`]).
    pub async fn store(
        &self,
        msg: &Message,
        sender: &str,
        recipient: &str,
        now: u64,
        hold: u64,
    ) -> Result<Stored, DeferredError> {
        let asked = msg.headers.get("Expires").and_then(delta_seconds);
        let ttl = asked.map_or(self.limits.ttl_secs, |s| {
            u64::from(s).min(self.limits.ttl_secs)
        });
        let mut headers = Vec::new();
        for name in END_TO_END {
            for value in msg.headers.get_all(name) {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        let content_type = msg.headers.get("Content-Type").unwrap_or("");
        let (_, carried) = content(content_type, &msg.body);
        let id = message_id(carried);
        let _turn = self.stripes[stripe(recipient)].lock().await;
        let waiting = self
            .store
            .list(
                Mailbox::Deferred,
                recipient.to_string(),
                0,
                self.limits.max_messages + 1,
            )
            .await?;
        if let Some(id) = &id {
            let same = |m: &StoredMessage| {
                let (_, stored) = content(&m.message.content_type, &m.message.body);
                m.message.sender == sender && message_id(stored).as_ref() == Some(id)
            };
            if waiting.iter().any(same) {
                return Ok(Stored::Duplicate);
            }
        }
        let bytes: usize = waiting.iter().map(|m| m.message.body.len()).sum();
        if waiting.len() >= self.limits.max_messages
            || bytes + msg.body.len() > self.limits.max_bytes
        {
            return Err(DeferredError::QuotaExceeded);
        }
        let stored = self
            .store
            .append_held(
                NewMessage {
                    mailbox: Mailbox::Deferred,
                    owner: recipient.to_string(),
                    sender: sender.to_string(),
                    recipient: recipient.to_string(),
                    content_type: msg.headers.get("Content-Type").unwrap_or("").to_string(),
                    body: msg.body.clone(),
                    headers,
                    created_ms: now,
                    expires_ms: now + ttl * 1000,
                },
                hold,
            )
            .await?;
        self.listed(recipient);
        if hold == 0 && self.router.registered(recipient).await {
            // Stored although registered (every contact failed): that attempt ended (the next
            // is a new transaction), retried with backoff.
            if let Err(e) = self.store.release(vec![stored], true).await {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot count a delivery attempt");
            }
            self.wake_later(recipient);
        }
        if !anonymous(&msg.headers) {
            let received = rfc3339(now);
            if let Some(o) = Original::of(carried, sender, recipient, &received) {
                self.router.notify(&o, Disposition::Stored);
            }
        }
        Ok(Stored::New(stored))
    }

    /// At start, before anything is served: the holds the previous run left (delivery
    /// attempts a crash cut short) are void, since nothing attempts those messages any more.
    /// Released now, they go out as soon as their recipients are known to be registered,
    /// under the same transaction identity as before ([`super::route`]), rather than after
    /// the lease. Only for a store this process alone uses (sled, memory); how many held.
    pub async fn resume(&self) -> Result<usize, StorageError> {
        let mut released = 0;
        for owner in all_owners(self.store.as_ref(), Mailbox::Deferred).await? {
            let held: Vec<u64> = all_listed(self.store.as_ref(), Mailbox::Deferred, &owner)
                .await?
                .iter()
                .filter(|m| m.claimed_until_ms != 0)
                .map(|m| m.id)
                .collect();
            released += held.len();
            if !held.is_empty() {
                // Cut short: the next attempt is the same one again.
                self.store.release(held, false).await?;
            }
        }
        Ok(released)
    }

    /// Offers again what waits for every registered recipient (a store other nodes share: a
    /// node that stopped mid-delivery left its claims to lapse, and nothing else would wake
    /// those deliveries before the recipient registers again). Messages another node still
    /// holds are not claimed, so nothing is delivered twice.
    pub async fn retry_registered(self: &Arc<Self>) {
        let owners = match all_owners(self.store.as_ref(), Mailbox::Deferred).await {
            Ok(owners) => owners,
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot list deferred messages");
                return;
            }
        };
        for owner in owners {
            if self.router.registered(&owner).await {
                self.wake(&owner);
            }
        }
    }

    /// `recipient` may be reachable now (it registered): delivers what waits for it (or cuts
    /// the running delivery's wait short). While messages wait and the recipient has
    /// bindings, attempts repeat with a doubling pause (IM-16: retried with backoff).
    pub fn wake(self: &Arc<Self>, recipient: &str) {
        let notify = {
            let mut running = self.running.lock();
            if let Some(n) = running.get(recipient) {
                n.notify_one();
                return;
            }
            let n = Arc::new(tokio::sync::Notify::new());
            running.insert(recipient.to_string(), n.clone());
            n
        };
        let me = Arc::clone(self);
        let recipient = recipient.to_string();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(me.limits.lease_ms.min(5_000));
            loop {
                let waiting = me.deliver(&recipient).await;
                if !waiting || !me.router.registered(&recipient).await {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(pause) => pause = (pause * 2).min(MAX_RETRY),
                    () = notify.notified() => {}
                }
            }
            me.running.lock().remove(&recipient);
        });
    }

    /// The outcome of the attempt a held message `id` was stored for: delivered (removed),
    /// refused (removed; the sender told `failed` when asked) or no answer (kept, delivered
    /// later with backoff).
    pub async fn settle(&self, id: u64, recipient: &str, delivery: Delivery) {
        let stored = match self.waiting(recipient).await {
            Ok(all) => all.into_iter().find(|m| m.id == id),
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot settle a held message");
                None
            }
        };
        let Some(m) = stored else {
            return;
        };
        let (outcome, code) = match delivery {
            Delivery::Delivered => ("delivered", 200),
            Delivery::Refused(code) => ("failed", code),
            Delivery::Unreachable => {
                if let Err(e) = self.store.release(vec![id], true).await {
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot release a held message");
                }
                return self.wake_later(recipient);
            }
        };
        match self.store.acknowledge(id).await {
            Ok(true) => {
                if outcome == "failed" {
                    self.failed(&m);
                }
                self.charge(&m, outcome, code).await;
                self.listed(recipient);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot remove a delivered message")
            }
        }
    }

    /// Follows the change feed from now on: the owner's deletions in their deferred-list
    /// document discard messages (one item by an XCAP element DELETE, or all of them with
    /// the document: IX-04, the owner may delete). Senders who asked are told `failed`; the
    /// document is then rewritten from the store.
    pub async fn follow(
        self: Arc<Self>,
        feed: crate::storage::ChangeFeed,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        if self.list.is_none() {
            return;
        }
        let mut cursor = feed.subscribe_from(feed.head());
        let ours = format!("service:{}", super::documents::SERVICE);
        loop {
            let record = tokio::select! {
                r = cursor.next() => r,
                _ = shutdown.changed() => return,
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(target: "xcapd::im", error = %e, "deferred messages lost their place in the change feed");
                    cursor = feed.subscribe_from(feed.head());
                    continue;
                }
            };
            let by_owner = record.key.auid == "org.openmobilealliance.deferred-list"
                && record.origin.principal.as_deref() != Some(ours.as_str());
            let crate::storage::TreeKey::User(owner) = &record.key.tree else {
                continue;
            };
            if !by_owner {
                continue;
            }
            // Only what the owner deleted: the whole document (all of them), or one item by
            // an element DELETE naming its id. Messages stored meanwhile are not touched.
            let discard: Option<Vec<u64>> = match (&record.new_etag, &record.origin.edit) {
                (None, _) => None,
                (Some(_), Some(edit)) if edit.kind == crate::event::EditKind::DeleteElement => {
                    match item_id(&edit.node_selector) {
                        Some(id) => Some(vec![id]),
                        None => Some(Vec::new()),
                    }
                }
                _ => Some(Vec::new()),
            };
            match self.waiting(owner).await {
                Ok(waiting) => {
                    let chosen =
                        |m: &&StoredMessage| discard.as_ref().is_none_or(|ids| ids.contains(&m.id));
                    for m in waiting.iter().filter(chosen) {
                        if let Ok(true) = self.store.acknowledge(m.id).await {
                            self.failed(m);
                            self.charge(m, "failed", 0).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot read deferred messages")
                }
            }
            self.listed(owner);
        }
    }

    /// Every message waiting for `owner`, oldest first.
    pub async fn waiting(&self, owner: &str) -> Result<Vec<StoredMessage>, StorageError> {
        let mut out = Vec::new();
        loop {
            let after = out.last().map_or(0, |m: &StoredMessage| m.id);
            let page = self
                .store
                .list(Mailbox::Deferred, owner.to_string(), after, 500)
                .await?;
            let full = page.len() == 500;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// Removes every message waiting for `owner` undelivered (an operator's purge): charged
    /// `failed`, the sender told `failed` when asked (IM-22). How many went.
    pub async fn purge(&self, owner: &str) -> Result<usize, StorageError> {
        let mut purged = 0;
        for m in self.waiting(owner).await? {
            if self.store.acknowledge(m.id).await? {
                purged += 1;
                self.failed(&m);
                self.charge(&m, "failed", 0).await;
            }
        }
        self.listed(owner);
        Ok(purged)
    }

    /// Like [`Deferred::wake`], needing `&self` only (a store happens on `&self`).
    fn wake_later(&self, recipient: &str) {
        if let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) {
            me.wake(recipient);
        }
    }

    /// Removes the messages expired at `now` (deferred ones charged `expired`, their senders
    /// told `failed` when they asked: IM-05, IM-22); the removed ones (history included).
    pub async fn expire(&self, now: u64) -> Result<Vec<StoredMessage>, StorageError> {
        let gone = self.store.expire(now).await?;
        let mut owners = HashSet::new();
        for m in gone
            .iter()
            .filter(|m| m.message.mailbox == Mailbox::Deferred)
        {
            self.failed(m);
            // No SIP answer ends an expired message: code 0.
            self.charge(m, "expired", 0).await;
            owners.insert(m.message.owner.as_str());
        }
        for owner in owners {
            self.listed(owner);
        }
        Ok(gone)
    }

    /// `owner`'s waiting messages changed: their deferred-list document follows.
    fn listed(&self, owner: &str) {
        if let Some(list) = &self.list {
            list.changed(owner);
        }
    }

    /// The charging record of the end of a stored message.
    async fn charge(&self, m: &StoredMessage, outcome: &'static str, code: u16) {
        let msg = &m.message;
        let call_id = msg
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Call-ID"))
            .map_or("", |(_, v)| v.as_str());
        let charge = Charge {
            event: "deferred-delivery",
            sender: &msg.sender,
            recipient: &msg.recipient,
            content_type: &msg.content_type,
            body: &msg.body,
            call_id,
            outcome,
            code,
        };
        self.charging.record(charge, msg.created_ms).await;
    }

    /// The sender of `m` asked to hear of a final failure (IM-22).
    fn failed(&self, m: &StoredMessage) {
        let mut original = Headers::new();
        for (n, v) in &m.message.headers {
            original.push(n, v.as_str());
        }
        if anonymous(&original) {
            return; // IM-23
        }
        let received = rfc3339(m.message.created_ms);
        let (sender, recipient) = (&m.message.sender, &m.message.recipient);
        let (_, body) = content(&m.message.content_type, &m.message.body);
        if let Some(o) = Original::of(body, sender, recipient, &received) {
            self.router.notify(&o, Disposition::Failed);
        }
    }

    /// Oldest first, one at a time; stops at the first that no contact takes. Whether
    /// messages still wait (unreachable, or held by an earlier attempt's claim).
    async fn deliver(&self, recipient: &str) -> bool {
        loop {
            let claimed = self
                .store
                .claim(recipient.to_string(), now_ms(), self.limits.lease_ms, BATCH)
                .await;
            let batch = match claimed {
                Ok(batch) if !batch.is_empty() => batch,
                Ok(_) => {
                    let left = self
                        .store
                        .list(Mailbox::Deferred, recipient.to_string(), 0, 1)
                        .await;
                    return left.map_or(true, |l| !l.is_empty());
                }
                Err(e) => {
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot read deferred messages");
                    return true;
                }
            };
            let ids: Vec<u64> = batch.iter().map(|m| m.id).collect();
            for (n, m) in batch.into_iter().enumerate() {
                let mut original = Headers::new();
                for (n, v) in &m.message.headers {
                    original.push(n, v.as_str());
                }
                let sender = &m.message.sender;
                let body = &m.message.body;
                let request = |uri: &str| delivered(&original, body, uri, sender);
                match self.router.deliver(recipient, m.attempts, request).await {
                    Delivery::Delivered => self.charge(&m, "delivered", 200).await,
                    Delivery::Refused(code) => {
                        // A final answer of the recipient's UA: not offered again.
                        tracing::info!(target: "xcapd::im", code, id = m.id, "a deferred message refused by its recipient");
                        self.failed(&m);
                        self.charge(&m, "failed", code).await;
                    }
                    Delivery::Unreachable => {
                        // This attempt ended; the rest of the batch was not tried.
                        let released = async {
                            self.store.release(vec![ids[n]], true).await?;
                            self.store.release(ids[n + 1..].to_vec(), false).await
                        };
                        if let Err(e) = released.await {
                            tracing::warn!(target: "xcapd::im", error = %e, "cannot release deferred messages");
                        }
                        return true;
                    }
                }
                if let Err(e) = self.store.acknowledge(m.id).await {
                    // Delivered but still stored: sent again after the lease (at least once).
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot remove a delivered message");
                    return true;
                }
                self.listed(recipient);
            }
        }
    }
}

/// The message id a node selector names (`…/history[@id="d-5"]` → 5).
fn item_id(selector: &str) -> Option<u64> {
    let start = selector.find("d-")? + 2;
    let digits: String = selector[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The `imdn.Message-ID` of a CPIM body (duplicate detection, IM-18).
fn message_id(body: &[u8]) -> Option<String> {
    Cpim::parse(body).ok()?.message_id().map(str::to_string)
}

pub(super) fn stripe(recipient: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    recipient.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

/// Forgets expired registrations, removes expired stored messages and recounts the queue
/// depth now and then, until shutdown (IM-05, IM-15: a stored message lives min(Expires,
/// `im.deferred_ttl_secs`)). `shared`: other nodes use the store too, and a node that stops
/// leaves its claims to lapse; every delivery lease, the messages of registered recipients
/// are offered again ([`Deferred::retry_registered`]).
pub async fn maintain(
    registrar: Arc<super::Registrar>,
    deferred: Arc<Deferred>,
    history: Option<Arc<super::history::History>>,
    shared: bool,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut period = Duration::from_secs(60);
    if shared {
        period = period.min(Duration::from_millis(deferred.limits.lease_ms.max(1000)));
    }
    loop {
        if let Ok(n) = deferred.store.count(Mailbox::Deferred).await {
            deferred.charging.set_deferred(n);
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        if shared {
            deferred.retry_registered().await;
        }
        registrar.sweep();
        match deferred.expire(now_ms()).await {
            Ok(gone) => {
                let undelivered = gone
                    .iter()
                    .filter(|m| m.message.mailbox == Mailbox::Deferred)
                    .count();
                if undelivered > 0 {
                    tracing::info!(target: "xcapd::im", expired = undelivered, "stored messages expired undelivered");
                }
                if let Some(h) = &history {
                    h.expired(&gone);
                }
            }
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot expire stored messages")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::item_id;

    /// IX-04: the item an owner's element DELETE names, whatever the quoting.
    #[test]
    fn item_named_by_a_selector_ix04() {
        assert_eq!(item_id("history-list/history[@id=\"d-42\"]"), Some(42));
        assert_eq!(item_id("history-list/history[@id='d-7']"), Some(7));
        assert_eq!(item_id("history-list/history[3]"), None);
    }
}
