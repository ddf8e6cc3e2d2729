//! Conversation history (issue #14 scope 6; standards.md IM-32, IX-01): a message accepted
//! for a recipient (delivered or stored) is kept in the message store for each party who
//! records conversations with the other, each their own copy, for
//! `im.history_retention_days`. Who records: everybody (`im.history = "all"`), or, by
//! default (`"opt-in"`), a user whose im-rules carry `<im:record-history>true` in a rule that
//! matches the peer (the recipient's rules as for the message itself, the sender's with the
//! recipient as the peer; whether a sender's rules can ask at all is remembered until the
//! change feed shows them changed, milliseconds after the write); the owner's `org.openmobilealliance.conv-history` document
//! lists one item per conversation ([`super::documents`]), and the owner reads the messages
//! over HTTP ([`super::http`]). When the owner deletes that document, their stored history
//! goes too (found on the change feed: a deletion by anyone but the IM Server).

use std::sync::Arc;

use super::documents::{Kind, Projection, SERVICE};
use super::pager::END_TO_END;
use crate::config::HistoryMode;
use crate::decision::{DecideRequest, DecisionService};
use crate::sip::message::Message;
use crate::storage::messages::{Mailbox, MessageStore, NewMessage, StoredMessage};
use crate::storage::{ChangeFeed, StorageError, TreeKey};

/// Messages read per page when a history is searched or removed.
const PAGE: usize = 500;

/// Who a recorded message is between.
pub struct Parties<'a> {
    pub sender: &'a str,
    pub recipient: &'a str,
    /// The sender asked for privacy (evaluated as anonymous by the recipient's rules).
    pub hidden: bool,
    /// Whether the recipient's rules record the sender, when the message's own decision
    /// said so already.
    pub recipient_records: Option<bool>,
}

pub struct History {
    store: Arc<dyn MessageStore>,
    docs: Arc<Projection>,
    retention_ms: u64,
    mode: HistoryMode,
    decisions: Arc<DecisionService>,
    /// Whether a user's im-rules can ask for history at all (read once, dropped when the
    /// change feed shows their im-rules changed): most senders' cannot, and reading their
    /// rules for every message cost ~13% of the MESSAGE rate.
    asking: parking_lot::Mutex<std::collections::HashMap<String, bool>>,
    /// Bumped at each such change, so an answer read meanwhile is not kept.
    rules_changed: std::sync::atomic::AtomicU64,
}

/// Users whose answer is kept at most (all are forgotten beyond).
const MAX_ASKING: usize = 100_000;

/// The application usage whose changes can change who records.
const IM_RULES: &str = "im-rules";

impl History {
    pub fn new(
        store: Arc<dyn MessageStore>,
        docs: Arc<Projection>,
        retention_ms: u64,
        mode: HistoryMode,
        decisions: Arc<DecisionService>,
    ) -> History {
        History {
            store,
            docs,
            retention_ms,
            mode,
            decisions,
            asking: Default::default(),
            rules_changed: Default::default(),
        }
    }

    /// Whether some rule of `owner`'s im-rules can ask for history.
    fn asks(&self, owner: &str) -> bool {
        use std::sync::atomic::Ordering;
        if let Some(known) = self.asking.lock().get(owner) {
            return *known;
        }
        let before = self.rules_changed.load(Ordering::SeqCst);
        let asks = match self.decisions.asks_for_history(owner) {
            Ok(asks) => asks,
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot read history rules");
                return false;
            }
        };
        let mut asking = self.asking.lock();
        if self.rules_changed.load(Ordering::SeqCst) == before {
            if asking.len() >= MAX_ASKING {
                asking.clear();
            }
            asking.insert(owner.to_string(), asks);
        }
        asks
    }

    /// Whether `owner` records their conversations with `peer` (`hidden`: the peer asked
    /// for privacy, and is evaluated as anonymous).
    async fn records(&self, owner: &str, peer: &str, hidden: bool, now: u64) -> bool {
        match self.mode {
            HistoryMode::Off => false,
            HistoryMode::All => true,
            HistoryMode::OptIn => {
                if !self.asks(owner) {
                    return false;
                }
                let request = DecideRequest {
                    recipient: owner.to_string(),
                    sender: (!hidden).then(|| peer.to_string()),
                    media: Some("pager".into()),
                    anonymous: hidden,
                };
                match self
                    .decisions
                    .decide_async(&request, (now / 1000) as i64)
                    .await
                {
                    Ok(d) => d.record_history == Some(true),
                    Err(e) => {
                        tracing::warn!(target: "xcapd::im", error = %e, "cannot decide on recording history");
                        false
                    }
                }
            }
        }
    }

    /// Keeps an accepted message in the history of the sender and of the recipient, each
    /// when they record conversations with the other.
    pub async fn record(&self, msg: &Message, parties: Parties<'_>, now: u64) {
        let Parties {
            sender,
            recipient,
            hidden,
            recipient_records,
        } = parties;
        let mut headers = Vec::new();
        for name in END_TO_END {
            for value in msg.headers.get_all(name) {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        for (owner, peer, hidden) in [(sender, recipient, false), (recipient, sender, hidden)] {
            // The recipient's rules were evaluated for the message itself: not again.
            let known = (owner == recipient && self.mode == HistoryMode::OptIn)
                .then_some(recipient_records)
                .flatten();
            let records = match known {
                Some(r) => r,
                None => self.records(owner, peer, hidden, now).await,
            };
            if !records {
                continue;
            }
            let copy = NewMessage {
                mailbox: Mailbox::History,
                owner: owner.to_string(),
                sender: sender.to_string(),
                recipient: recipient.to_string(),
                content_type: msg.headers.get("Content-Type").unwrap_or("").to_string(),
                body: msg.body.clone(),
                headers: headers.clone(),
                created_ms: now,
                expires_ms: now.saturating_add(self.retention_ms),
            };
            match self.store.append(copy).await {
                Ok(_) => self.docs.changed(owner),
                Err(e) => {
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot record history")
                }
            }
        }
    }

    /// Up to `limit` of `owner`'s messages with an id above `after`, with `peer` only when
    /// given, oldest first; and the `after` of the next page, if any.
    pub async fn page(
        &self,
        owner: &str,
        peer: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, Option<u64>), StorageError> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let batch = self
                .store
                .list(Mailbox::History, owner.to_string(), after, PAGE)
                .await?;
            let full = batch.len() == PAGE;
            for m in batch {
                after = m.id;
                let with_peer = peer.is_none_or(|p| {
                    let other = if m.message.sender == owner {
                        &m.message.recipient
                    } else {
                        &m.message.sender
                    };
                    crate::identity::uri_equal(other, p)
                });
                if with_peer {
                    if out.len() == limit {
                        let next = out.last().map_or(0, |m: &StoredMessage| m.id);
                        return Ok((out, Some(next)));
                    }
                    out.push(m);
                }
            }
            if !full {
                return Ok((out, None));
            }
        }
    }

    /// Removes `owner`'s whole history; how many messages went.
    pub async fn forget(&self, owner: &str) -> Result<usize, StorageError> {
        let mut gone = 0;
        loop {
            let batch = self
                .store
                .list(Mailbox::History, owner.to_string(), 0, PAGE)
                .await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                if self.store.acknowledge(m.id).await? {
                    gone += 1;
                }
            }
        }
        Ok(gone)
    }

    /// History messages expired: their owners' documents follow.
    pub fn expired(&self, gone: &[StoredMessage]) {
        let mut owners: Vec<&str> = gone
            .iter()
            .filter(|m| m.message.mailbox == Mailbox::History)
            .map(|m| m.message.owner.as_str())
            .collect();
        owners.dedup();
        for owner in owners {
            self.docs.changed(owner);
        }
    }

    /// Follows the change feed from now on: an owner's deletion of their conv-history
    /// document removes their stored history (IX-04: the owner may delete it); a change of
    /// someone's im-rules makes their rules read again.
    pub async fn follow(
        self: Arc<Self>,
        feed: ChangeFeed,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut cursor = feed.subscribe_from(feed.head());
        let ours = format!("service:{SERVICE}");
        loop {
            let record = tokio::select! {
                r = cursor.next() => r,
                _ = shutdown.changed() => return,
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    // Trimmed past us: go on from the head (a missed deletion leaves the
                    // history until it expires).
                    tracing::warn!(target: "xcapd::im", error = %e, "history lost its place in the change feed");
                    cursor = feed.subscribe_from(feed.head());
                    continue;
                }
            };
            if let (IM_RULES, TreeKey::User(owner)) = (record.key.auid.as_str(), &record.key.tree) {
                self.rules_changed
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.asking.lock().remove(owner);
                continue;
            }
            let deleted = record.new_etag.is_none()
                && record.key.auid == Kind::ConvHistory.auid()
                && record.origin.principal.as_deref() != Some(ours.as_str());
            if let (true, TreeKey::User(owner)) = (deleted, &record.key.tree) {
                match self.forget(owner).await {
                    Ok(n) => {
                        tracing::info!(target: "xcapd::im", %owner, messages = n, "history deleted by its owner")
                    }
                    Err(e) => {
                        tracing::warn!(target: "xcapd::im", error = %e, "cannot delete a history")
                    }
                }
            }
        }
    }
}
