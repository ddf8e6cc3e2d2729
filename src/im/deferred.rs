//! Store and forward (issue #14 scope 4, first part; standards.md IM-14…IM-17): a MESSAGE no
//! contact of its recipient took is kept durably in the message store's deferred list (the
//! sender gets 202 once it is durable); when the recipient registers, their messages are
//! delivered oldest first, one at a time (RFC 3428 §8), body and Content-Type as received, and
//! each is removed once a UA answered 2xx. A delivery claims messages for a lease, so one cut
//! short (a crash) is tried again later, never lost. Messages expire after
//! min(`Expires`, `im.deferred_ttl_secs`).

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use super::pager::{delivered, fork, Delivery, END_TO_END};
use super::registrar::Registrar;
use crate::sip::client::Client;
use crate::sip::header::delta_seconds;
use crate::sip::message::{Headers, Message};
use crate::storage::messages::{Mailbox, MessageStore, NewMessage};
use crate::storage::{now_ms, StorageError};

/// A delivery holds its messages this long (then another may take them).
const LEASE_MS: u64 = 60_000;
/// Messages claimed per round.
const BATCH: usize = 20;

/// The deferred messages and their delivery.
pub struct Deferred {
    store: Arc<dyn MessageStore>,
    client: Arc<Client>,
    registrar: Arc<Registrar>,
    ttl_secs: u64,
    /// Recipients being delivered to (one delivery per recipient at a time).
    running: Mutex<HashSet<String>>,
}

impl Deferred {
    pub fn new(
        store: Arc<dyn MessageStore>,
        client: Arc<Client>,
        registrar: Arc<Registrar>,
        ttl_secs: u64,
    ) -> Deferred {
        Deferred {
            store,
            client,
            registrar,
            ttl_secs,
            running: Mutex::new(HashSet::new()),
        }
    }

    /// Keeps `msg` for `recipient` (durable when this returns); its id.
    pub async fn store(
        &self,
        msg: &Message,
        sender: &str,
        recipient: &str,
        now: u64,
    ) -> Result<u64, StorageError> {
        let asked = msg.headers.get("Expires").and_then(delta_seconds);
        let ttl = asked.map_or(self.ttl_secs, |s| u64::from(s).min(self.ttl_secs));
        let mut headers = Vec::new();
        for name in END_TO_END {
            for value in msg.headers.get_all(name) {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        self.store
            .append(NewMessage {
                mailbox: Mailbox::Deferred,
                owner: recipient.to_string(),
                sender: sender.to_string(),
                recipient: recipient.to_string(),
                content_type: msg.headers.get("Content-Type").unwrap_or("").to_string(),
                body: msg.body.clone(),
                headers,
                created_ms: now,
                expires_ms: now + ttl * 1000,
            })
            .await
    }

    /// `recipient` may be reachable now (it registered): delivers what waits for it, unless a
    /// delivery to it runs already.
    pub fn wake(self: &Arc<Self>, recipient: &str) {
        if self.running.lock().insert(recipient.to_string()) {
            let me = Arc::clone(self);
            let recipient = recipient.to_string();
            tokio::spawn(async move {
                me.deliver(&recipient).await;
                me.running.lock().remove(&recipient);
            });
        }
    }

    /// Oldest first, one at a time; stops at the first that no contact takes (tried again at
    /// the next registration or once its claim lapsed).
    async fn deliver(&self, recipient: &str) {
        loop {
            let claimed = self
                .store
                .claim(recipient.to_string(), now_ms(), LEASE_MS, BATCH)
                .await;
            let batch = match claimed {
                Ok(batch) if !batch.is_empty() => batch,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot read deferred messages");
                    return;
                }
            };
            for m in batch {
                let bindings = self.registrar.bindings(recipient);
                let mut original = Headers::new();
                for (n, v) in &m.message.headers {
                    original.push(n, v.as_str());
                }
                let sender = &m.message.sender;
                let body = &m.message.body;
                let request = |contact: &str| delivered(&original, body, contact, sender);
                match fork(&self.client, &bindings, request).await {
                    Delivery::Delivered => {}
                    Delivery::Refused(code) => {
                        // A final answer of the recipient's UA: not offered again.
                        tracing::info!(target: "xcapd::im", code, id = m.id, "a deferred message refused by its recipient");
                    }
                    Delivery::Unreachable => return,
                }
                if let Err(e) = self.store.acknowledge(m.id).await {
                    // Delivered but still stored: sent again after the lease (at least once).
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot remove a delivered message");
                    return;
                }
            }
        }
    }
}
