//! The live subscriptions of the xcap-diff notifier and the one reader of the change feed that
//! hands each committed change to the subscriptions watching its document (RFC 5874 §6,
//! standards.md XE-13, XE-24; design.md §2: the feed is the record, nothing is missed).
//! Subscriptions are indexed by application usage and tree, the unit every entry covers.

use std::collections::HashMap;
use std::sync::Arc;

use super::mailbox::{Mailbox, Msg};
use super::nodes::RemoteNode;
use super::request::Entry;
use super::service::Shared;
use crate::storage::subscriptions::DialogId;
use crate::storage::StorageError;
use crate::xcap::keys::{DocKey, TreeKey};

/// How one live subscription is reached.
pub(super) struct Handle {
    pub mailbox: Arc<Mailbox>,
    /// The subscriber's canonical XUI (refreshes must come from the same identity).
    pub subscriber: String,
    /// The highest CSeq of the subscriber's requests (RFC 3261 §12.2.2: lower is stale).
    pub remote_cseq: u32,
    /// The Event header's `id` (RFC 6665 §8.2.1): refreshes must name the same.
    pub event_id: Option<String>,
    /// The entity-tag of the state the subscriber was last told, while nothing changed since
    /// (RFC 5839: a refresh with a matching `Suppress-If-Match` gets 204 and no NOTIFY).
    pub entity_tag: Option<String>,
    watched: Vec<Watched>,
}

/// An `(auid, tree)` the index holds once, shared with the handles watching it.
type Watched = Arc<(String, TreeKey)>;

impl Handle {
    pub fn new(
        mailbox: Arc<Mailbox>,
        subscriber: String,
        remote_cseq: u32,
        event_id: Option<String>,
    ) -> Handle {
        Handle {
            mailbox,
            subscriber,
            remote_cseq,
            event_id,
            entity_tag: None,
            watched: Vec::new(),
        }
    }
}

/// Live subscriptions by dialog, and which watch which `(auid, tree)`.
#[derive(Default)]
pub(super) struct Registry {
    actors: HashMap<DialogId, Handle>,
    /// Usually one or a few subscriptions per tree (a user's own clients): a Vec of their
    /// mailboxes is the smallest (10,000 idle subscriptions are a benchmark figure).
    by_tree: HashMap<Watched, Vec<Arc<Mailbox>>>,
    per_subscriber: HashMap<String, usize>,
}

impl Registry {
    pub fn insert(&mut self, dialog: DialogId, handle: Handle, entries: &[Entry]) {
        self.remove(&dialog);
        *self
            .per_subscriber
            .entry(handle.subscriber.clone())
            .or_default() += 1;
        self.actors.insert(dialog.clone(), handle);
        self.reindex(&dialog, entries);
    }

    pub fn get_mut(&mut self, dialog: &DialogId) -> Option<&mut Handle> {
        self.actors.get_mut(dialog)
    }

    /// Live subscriptions of one subscriber.
    pub fn count_of(&self, subscriber: &str) -> usize {
        self.per_subscriber.get(subscriber).copied().unwrap_or(0)
    }

    /// The subscription now watches `entries` (a refresh with a new list, XE-09).
    pub fn reindex(&mut self, dialog: &DialogId, entries: &[Entry]) {
        let Some(handle) = self.actors.get_mut(dialog) else {
            return;
        };
        for w in handle.watched.drain(..) {
            if let Some(set) = self.by_tree.get_mut(&w) {
                set.retain(|m| !Arc::ptr_eq(m, &handle.mailbox));
                if set.is_empty() {
                    self.by_tree.remove(&w);
                }
            }
        }
        for w in entries.iter().flat_map(Entry::watches) {
            if handle.watched.iter().any(|h| **h == w) {
                continue;
            }
            let shared = match self.by_tree.get_key_value(&w) {
                Some((k, _)) => Arc::clone(k),
                None => Arc::new(w),
            };
            self.by_tree
                .entry(Arc::clone(&shared))
                .or_default()
                .push(Arc::clone(&handle.mailbox));
            handle.watched.push(shared);
        }
    }

    pub fn remove(&mut self, dialog: &DialogId) {
        self.reindex(dialog, &[]);
        if let Some(h) = self.actors.remove(dialog) {
            h.mailbox.close();
            if let Some(n) = self.per_subscriber.get_mut(&h.subscriber) {
                *n -= 1;
                if *n == 0 {
                    self.per_subscriber.remove(&h.subscriber);
                }
            }
        }
    }

    /// The mailboxes of the subscriptions that may watch `key`.
    pub fn watching(&self, key: &DocKey) -> Vec<Arc<Mailbox>> {
        self.by_tree
            .get(&(key.auid.clone(), key.tree.clone()))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether any subscription watches `key`'s usage and tree.
    pub fn watches(&self, key: &DocKey) -> bool {
        self.by_tree
            .contains_key(&(key.auid.clone(), key.tree.clone()))
    }

    /// Stops every subscription's driver (shutdown: the stored state is where they resume;
    /// before the runtime goes, so no timer outlives it).
    pub fn stop_all(&self) {
        for h in self.actors.values() {
            h.mailbox.stop();
        }
    }

    /// The mailboxes of the subscriptions watching any of `auids`.
    pub fn watching_auids(&self, auids: &[String]) -> Vec<Arc<Mailbox>> {
        let mut out: Vec<Arc<Mailbox>> = Vec::new();
        for (w, set) in &self.by_tree {
            if auids.contains(&w.0) {
                for m in set {
                    if !out.iter().any(|o| Arc::ptr_eq(o, m)) {
                        out.push(Arc::clone(m));
                    }
                }
            }
        }
        out
    }

    pub fn mailboxes(&self) -> Vec<Arc<Mailbox>> {
        self.actors.values().map(|h| h.mailbox.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.actors.len()
    }
}

/// Pause before reading the feed again after an error (the store is unavailable).
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Reads every change after `after`, in order, and hands it to the subscriptions watching its
/// document. When retention trimmed changes the notifier had not read (a long stop), every
/// subscription is told to resync from the documents themselves and reading goes on from the
/// head of the log.
pub(super) async fn dispatch(shared: Arc<Shared>, after: u64) {
    let mut cursor = shared.parts.feed.subscribe_from(after);
    let mut shutdown = shared.parts.shutdown.clone();
    loop {
        let next = tokio::select! {
            next = cursor.next() => next,
            _ = shutdown.changed() => {
                shared.registry.lock().stop_all();
                return;
            }
        };
        match next {
            Ok(change) => {
                let lag = &shared.parts.metrics.cluster;
                lag.observe_feed_lag(false, change.at_ms, crate::storage::now_ms());
                let change = Arc::new(change);
                for mailbox in shared.registry.lock().watching(&change.key) {
                    mailbox.send(Msg::Change(Arc::clone(&change)));
                }
            }
            // A log that cannot be read past a point (trimmed, or a gap) is left behind: every
            // subscription compares with the documents themselves.
            Err(e @ (StorageError::ChangesTrimmed { .. } | StorageError::Corrupt(_))) => {
                tracing::warn!(target: "xcapd::notifier", error = %e, "changes cannot be read: resyncing every subscription");
                let head = shared.parts.feed.head();
                for mailbox in shared.registry.lock().mailboxes() {
                    mailbox.send(Msg::Resync);
                }
                cursor = shared.parts.feed.subscribe_from(head);
            }
            Err(e) => {
                tracing::warn!(target: "xcapd::notifier", error = %e, "cannot read the change feed");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Follows a remote node's change log (issue #13 scope 7) and hands each change to the
/// subscriptions watching its document; when changes may have been missed (start, a trimmed
/// log) the subscriptions on the node compare with the documents themselves.
pub(super) async fn follow(shared: Arc<Shared>, node: Arc<RemoteNode>) {
    let deliver = |change: crate::event::ChangeRecord| {
        let lag = &shared.parts.metrics.cluster;
        lag.observe_feed_lag(true, change.at_ms, crate::storage::now_ms());
        let change = Arc::new(change);
        for mailbox in shared.registry.lock().watching(&change.key) {
            mailbox.send(Msg::Remote(Arc::clone(&change)));
        }
    };
    let resync = || {
        for mailbox in shared.registry.lock().watching_auids(node.auids()) {
            mailbox.send(Msg::Resync);
        }
    };
    node.follow(deliver, resync, shared.parts.shutdown.clone())
        .await;
}
