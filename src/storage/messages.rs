//! Stored instant messages (OMA IM: deferred delivery, history, charging records): the
//! [`MessageStore`] trait and its memory backend. Deferred messages wait for their recipient:
//! a delivery attempt *claims* them for a lease (a crashed or slow deliverer's claim lapses, so
//! a message is never lost, only possibly retried) and *acknowledges* each delivered one;
//! every message expires. History and charging records are appended and read in pages.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::subscriptions::StoreFuture;
use super::StorageError;

/// Which list a message is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mailbox {
    /// Waiting for the recipient (store and forward).
    Deferred,
    /// Conversation history of the owner.
    History,
    /// Charging data records (owner: the charged party).
    Charging,
}

impl Mailbox {
    pub fn code(self) -> u8 {
        match self {
            Mailbox::Deferred => 1,
            Mailbox::History => 2,
            Mailbox::Charging => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Mailbox> {
        Some(match code {
            1 => Mailbox::Deferred,
            2 => Mailbox::History,
            3 => Mailbox::Charging,
            _ => return None,
        })
    }
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub mailbox: Mailbox,
    /// Whose list it is in: the recipient for deferred messages.
    pub owner: String,
    pub sender: String,
    pub recipient: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Headers worth keeping (e.g. IMDN Message-ID, Date), in order.
    pub headers: Vec<(String, String)>,
    pub created_ms: u64,
    /// Removed by [`MessageStore::expire`] from this time on.
    pub expires_ms: u64,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Store-wide, strictly increasing in append order.
    pub id: u64,
    pub message: NewMessage,
    /// Deferred messages: claimed by a delivery attempt until then (0: not claimed).
    pub claimed_until_ms: u64,
    /// Deferred messages: delivery attempts that ended without the message being taken. The
    /// next attempt's transaction identity derives from it, so an attempt a crash cut short
    /// is repeated as the same transaction (`im::route`).
    pub attempts: u32,
}

/// Durable message lists. Every method resolves once its effect is durable.
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a message; its id.
    fn append(&self, message: NewMessage) -> StoreFuture<'_, u64> {
        self.append_held(message, 0)
    }
    /// Stores a deferred message already claimed until `held_until_ms` (a delivery attempt
    /// still running when the sender had to be answered); its id.
    fn append_held(&self, message: NewMessage, held_until_ms: u64) -> StoreFuture<'_, u64>;
    /// Up to `limit` deferred messages of `owner`, oldest first, that nobody holds a claim on
    /// at `now_ms`; they are claimed until `now_ms + lease_ms`.
    fn claim(
        &self,
        owner: String,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredMessage>>;
    /// The message was delivered: removes it. `false` when it is gone already.
    fn acknowledge(&self, id: u64) -> StoreFuture<'_, bool>;
    /// Drops the claims on these messages (claimable again at once). `ended`: the attempt
    /// holding them ended without delivering them (their `attempts` count one more); else it
    /// never ran or was cut short (the next attempt is the same one again). Ids that are gone
    /// are skipped.
    fn release(&self, ids: Vec<u64>, ended: bool) -> StoreFuture<'_, ()>;
    /// Messages of one owner's list with an id above `after`, oldest first, at most `limit`.
    fn list(
        &self,
        mailbox: Mailbox,
        owner: String,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredMessage>>;
    /// Removes every message expired at `now_ms`; returns them (deferred ones are reported
    /// undeliverable to their sender).
    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<StoredMessage>>;
    /// How many messages `mailbox` holds (metrics: the deferred queue depth).
    fn count(&self, mailbox: Mailbox) -> StoreFuture<'_, u64>;
    /// Owners with messages in `mailbox`, in byte order, after `after` (exclusive; `None`:
    /// from the start), at most `limit` (start-up reconciliation pages through them).
    fn owners(
        &self,
        mailbox: Mailbox,
        after: Option<String>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<String>>;
}

/// Messages read per call by the helpers below.
const PAGE: usize = 500;

/// Every owner with messages in `mailbox`, in byte order (paging through
/// [`MessageStore::owners`]).
pub async fn all_owners(
    store: &dyn MessageStore,
    mailbox: Mailbox,
) -> Result<Vec<String>, StorageError> {
    let mut all: Vec<String> = Vec::new();
    loop {
        let page = store.owners(mailbox, all.last().cloned(), PAGE).await?;
        let full = page.len() == PAGE;
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// Every message of `owner` in `mailbox`, oldest first (paging through
/// [`MessageStore::list`]).
pub async fn all_listed(
    store: &dyn MessageStore,
    mailbox: Mailbox,
    owner: &str,
) -> Result<Vec<StoredMessage>, StorageError> {
    let mut all: Vec<StoredMessage> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m.id);
        let page = store.list(mailbox, owner.to_string(), after, PAGE).await?;
        let full = page.len() == PAGE;
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// The checks every backend applies before storing.
pub(crate) fn validate(m: &NewMessage) -> Result<(), StorageError> {
    if m.owner.is_empty() || m.owner.contains('\0') {
        return Err(StorageError::InvalidKey(
            "message owner is empty or contains NUL".into(),
        ));
    }
    Ok(())
}

/// Messages in memory (tests, ephemeral deployments).
#[derive(Debug, Default)]
pub struct MemoryMessages {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    next_id: u64,
    messages: BTreeMap<u64, StoredMessage>,
}

impl MemoryMessages {
    pub fn new() -> Self {
        Self::default()
    }
}

impl MessageStore for MemoryMessages {
    fn append_held(&self, message: NewMessage, held_until_ms: u64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            validate(&message)?;
            let mut state = self.state.lock();
            state.next_id += 1;
            let id = state.next_id;
            state.messages.insert(
                id,
                StoredMessage {
                    id,
                    message,
                    claimed_until_ms: held_until_ms,
                    attempts: 0,
                },
            );
            Ok(id)
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
            let mut state = self.state.lock();
            let mut out = Vec::new();
            for m in state.messages.values_mut() {
                if out.len() == limit {
                    break;
                }
                let mine = m.message.mailbox == Mailbox::Deferred && m.message.owner == owner;
                if mine && m.claimed_until_ms <= now_ms && m.message.expires_ms > now_ms {
                    m.claimed_until_ms = now_ms.saturating_add(lease_ms);
                    out.push(m.clone());
                }
            }
            Ok(out)
        })
    }

    fn acknowledge(&self, id: u64) -> StoreFuture<'_, bool> {
        Box::pin(async move { Ok(self.state.lock().messages.remove(&id).is_some()) })
    }

    fn release(&self, ids: Vec<u64>, ended: bool) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut state = self.state.lock();
            for id in ids {
                if let Some(m) = state.messages.get_mut(&id) {
                    m.claimed_until_ms = 0;
                    m.attempts = m.attempts.saturating_add(u32::from(ended));
                }
            }
            Ok(())
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
            let state = self.state.lock();
            Ok(state
                .messages
                .range(after.saturating_add(1)..)
                .map(|(_, m)| m)
                .filter(|m| m.message.mailbox == mailbox && m.message.owner == owner)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn count(&self, mailbox: Mailbox) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let state = self.state.lock();
            Ok(state
                .messages
                .values()
                .filter(|m| m.message.mailbox == mailbox)
                .count() as u64)
        })
    }

    fn owners(
        &self,
        mailbox: Mailbox,
        after: Option<String>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let state = self.state.lock();
            let owners: std::collections::BTreeSet<&str> = state
                .messages
                .values()
                .filter(|m| m.message.mailbox == mailbox)
                .map(|m| m.message.owner.as_str())
                .filter(|o| after.as_deref().is_none_or(|a| *o > a))
                .collect();
            Ok(owners.into_iter().take(limit).map(str::to_string).collect())
        })
    }

    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(async move {
            let mut state = self.state.lock();
            let gone: Vec<u64> = state
                .messages
                .values()
                .filter(|m| m.message.expires_ms <= now_ms)
                .map(|m| m.id)
                .collect();
            Ok(gone
                .iter()
                .filter_map(|id| state.messages.remove(id))
                .collect())
        })
    }
}
