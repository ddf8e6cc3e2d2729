//! One xcap-diff subscription at work (RFC 5875 §4.7, §4.10; RFC 6665 §4.2.2; standards.md
//! XE-10, XE-13…XE-18, XE-23, XD-14): the state of one dialog, woken by its mailbox
//! ([`super::mailbox`]), that takes the changes of the documents it watches, sends one NOTIFY
//! at a time, at most one per notify interval (changes
//! in between coalesced; the first after a quiet period at once), the full state after every
//! accepted SUBSCRIBE, and the final NOTIFY when the subscription ends. After each NOTIFY the
//! subscriber acknowledged, the reported state is stored, so a restart chains on from it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dialog::{ends_subscription, notify, Dialog, State};
use super::mailbox::{Mailbox, Msg};
use super::report::{state_tag, Documents};
use super::request::{DiffProcessing, Entry};
use super::saved::Saved;
use super::service::Shared;
use crate::event::ChangeRecord;
use crate::sip::client::{Outcome, Route};
use crate::storage::now_ms;
use crate::storage::subscriptions::Subscription;
use crate::xcap::keys::DocKey;
use crate::xcap_diff::{DocumentChange, DocumentReport, XcapDiff};

/// How a NOTIFY went.
enum Sent {
    Delivered,
    /// RFC 6665 §4.2.2: the subscription is gone (timeout or a final failure code).
    Gone,
    /// Another failure: the same changes are tried again after the notify interval.
    Retry,
}

/// NOTIFYs that fail with a code that does not end the subscription are tried this often.
const MAX_RETRIES: u32 = 3;
/// Reads of the documents a full state needs are tried this often, this far apart.
pub(super) const READ_ATTEMPTS: u32 = 3;
pub(super) const READ_RETRY: Duration = Duration::from_millis(300);
/// A resync that failed is tried again this much later.
const RESYNC_RETRY: Duration = Duration::from_secs(5);
/// The 2xx to a SUBSCRIBE goes out before its NOTIFY; this long at most is waited for it.
const AFTER_2XX: Duration = Duration::from_secs(2);

pub(super) struct Actor {
    pub shared: Arc<Shared>,
    pub dialog: Dialog,
    pub subscriber: String,
    pub entries: Vec<Entry>,
    pub mode: DiffProcessing,
    pub expires_at_ms: u64,
    pub docs: Documents,
    /// Component `sel` → digest of what was last reported (`None`: reported absent).
    pub components: BTreeMap<String, Option<String>>,
    /// Documents holding subscribed components that changed since the last NOTIFY.
    pub dirty: BTreeSet<DocKey>,
    /// Of those, the ones that could not be read for the last NOTIFY.
    pub unread: BTreeSet<DocKey>,
    /// The last change seen, and the last one covered by a delivered NOTIFY.
    pub seen_seq: u64,
    pub notified_seq: u64,
    pub last_sent: Option<Instant>,
    pub failures: u32,
    /// A resync that could not read the documents is tried again then.
    pub resync_due: Option<Instant>,
}

impl Actor {
    /// Does what is due: the queued messages, a NOTIFY of the pending changes when the
    /// notify interval allows (XE-18: changes in between coalesced; the first after a quiet
    /// period at once), the end at expiry. The time to be woken at next, or `None` when the
    /// subscription is over (then [`Actor::end`] follows). The work is boxed: the driver's
    /// future stays small while a NOTIFY waits for its answer.
    pub async fn work(&mut self, mailbox: &Mailbox) -> Option<Instant> {
        loop {
            // Coalesce: everything already queued counts for the next NOTIFY (XE-18).
            while let Some(msg) = mailbox.try_recv() {
                let alive = match msg {
                    Msg::Start(sent) => {
                        let _ = tokio::time::timeout(AFTER_2XX, sent).await;
                        Box::pin(self.full_state()).await || Box::pin(self.revived(mailbox)).await
                    }
                    msg => Box::pin(self.on_msg(msg)).await,
                };
                if !alive {
                    return None;
                }
            }
            if now_ms() >= self.expires_at_ms {
                Box::pin(self.expired()).await;
                return None;
            }
            if self.resync_due.is_some_and(|t| t <= Instant::now()) {
                Box::pin(self.resync()).await;
            }
            let pending = self.docs.has_pending() || !self.dirty.is_empty();
            let due = self
                .last_sent
                .map(|t| t + self.shared.parts.config.notify_interval);
            if pending && due.is_none_or(|t| t <= Instant::now()) {
                if !Box::pin(self.changes()).await && !Box::pin(self.revived(mailbox)).await {
                    return None;
                }
                continue;
            }
            // The coalescing deadline or the end of the subscription, whichever first.
            let expiry =
                Instant::now() + Duration::from_millis(self.expires_at_ms.saturating_sub(now_ms()));
            let wake = match due {
                Some(due) if pending => due.min(expiry),
                _ => expiry,
            };
            return Some(self.resync_due.map_or(wake, |r| r.min(wake)));
        }
    }

    /// A NOTIFY failed, but a refresh answered 200 meanwhile may be queued: the subscriber is
    /// there after all, so it gets the full state and the subscription goes on (instead of a
    /// 200 followed by silence). False when there is none, or that NOTIFY fails too.
    async fn revived(&mut self, mailbox: &Mailbox) -> bool {
        let mut refresh = None;
        while let Some(msg) = mailbox.try_recv() {
            match msg {
                Msg::Change(change) => self.on_change(&change, true),
                Msg::Remote(change) => self.on_change(&change, false),
                Msg::Refresh(r) => refresh = Some(r),
                Msg::Resync => self.resync().await,
                Msg::Start(_) | Msg::Tick | Msg::Deactivate => {}
            }
        }
        match refresh {
            Some(r) => self.on_msg(Msg::Refresh(r)).await,
            None => false,
        }
    }

    /// XE-23: the final NOTIFY carries what changed since the last one.
    async fn expired(&mut self) {
        let body = self.change_body().await;
        let _ = self
            .send(State::Terminated { reason: "timeout" }, body)
            .await;
    }

    /// False when the subscription ended.
    async fn on_msg(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Change(change) => {
                self.on_change(&change, true);
                true
            }
            Msg::Remote(change) => {
                self.on_change(&change, false);
                true
            }
            Msg::Refresh(r) => {
                let r = *r;
                self.expires_at_ms = r.expires_at_ms;
                self.mode = r.mode;
                self.dialog.remote_cseq = r.remote_cseq;
                if let Some(target) = r.remote_target {
                    self.dialog.remote_target = target;
                }
                if r.flow.is_some() {
                    self.dialog.flow = r.flow;
                }
                if let Some(entries) = r.entries {
                    self.entries = entries;
                    self.components.clear();
                }
                let _ = tokio::time::timeout(AFTER_2XX, r.sent).await;
                if r.suppress {
                    self.save().await;
                    return true;
                }
                if r.expires_at_ms == 0 {
                    // XE-23: unsubscribed; the current state with `terminated`.
                    let body = self.full_body().await.unwrap_or_default();
                    let _ = self
                        .send(State::Terminated { reason: "timeout" }, body)
                        .await;
                    return false;
                }
                self.full_state().await
            }
            Msg::Resync => {
                self.resync().await;
                true
            }
            Msg::Deactivate => {
                // What the stopped node may not have reported: compared with the documents.
                self.resync().await;
                let body = self.change_body().await;
                let state = State::Terminated {
                    reason: "deactivated",
                };
                let _ = self.send(state, body).await;
                false
            }
            Msg::Start(_) | Msg::Tick => true,
        }
    }

    /// A change of a watched usage and tree; `local`: from this node's feed, whose sequence
    /// numbers the stored progress counts (a remote node's count apart).
    fn on_change(&mut self, change: &ChangeRecord, local: bool) {
        if local && change.seq <= self.notified_seq {
            return; // reported before a restart
        }
        let before = self.docs.has_pending() || !self.dirty.is_empty();
        if local {
            self.seen_seq = self.seen_seq.max(change.seq);
        }
        let mut watched = false;
        for e in &self.entries {
            match e {
                Entry::Component { key, .. } if *key == change.key => {
                    self.dirty.insert(key.clone());
                }
                Entry::Collection { .. } | Entry::Document { .. } if e.covers(&change.key) => {
                    watched = true;
                }
                // Built from the changed tree: its ETag is read again for the next NOTIFY.
                Entry::Generated { key, sources, .. }
                    if sources
                        .iter()
                        .any(|(a, t)| *a == change.key.auid && *t == change.key.tree) =>
                {
                    self.dirty.insert(key.clone());
                }
                _ => {}
            }
        }
        if watched {
            self.docs.accept(change);
        }
        if !before && (self.docs.has_pending() || !self.dirty.is_empty()) {
            self.set_entity_tag(None); // the state moved on from what the subscriber holds
        }
    }

    /// What a `Suppress-If-Match` must name now (RFC 5839).
    fn set_entity_tag(&self, tag: Option<String>) {
        if let Some(h) = self.shared.registry.lock().get_mut(&self.dialog.id) {
            h.entity_tag = tag;
        }
    }

    /// The subscriber's documents and components now (XE-10): sent in full, and from now on
    /// the reported state.
    async fn full_state(&mut self) -> bool {
        let expires = self.remaining_secs();
        match self.full_body().await {
            Some(body) => self.send_and_save(State::Active { expires }, body).await,
            None => {
                // The state cannot be read: the subscriber is asked to subscribe again
                // (RFC 6665 §4.2.2 `deactivated`) rather than be told something untrue.
                let state = State::Terminated {
                    reason: "deactivated",
                };
                let _ = self.send(state, Vec::new()).await;
                false
            }
        }
    }

    /// The full state (XE-10); `None` when storage cannot be read. Changes up to the feed's
    /// head before the read are in it: they are not reported again.
    async fn full_body(&mut self) -> Option<Vec<u8>> {
        let head = self.shared.parts.feed.head();
        let current = self.read_documents().await?;
        self.seen_seq = self.seen_seq.max(head);
        let mut diff = XcapDiff::new(self.shared.parts.config.public_root.clone());
        for (sel, etag) in current.values() {
            diff.documents.push(DocumentReport {
                sel: sel.clone(),
                previous_etag: None,
                new_etag: Some(etag.clone()),
                change: DocumentChange::Fetch,
            });
        }
        self.docs
            .reset(current.into_iter().map(|(k, (_, etag))| (k, etag)));
        self.components.clear();
        let keys: BTreeSet<DocKey> = self.component_keys().collect();
        self.dirty.clear();
        diff.components = self.component_reports(&keys, true).await;
        Some(diff.to_xml().into_bytes())
    }

    /// The body reporting every pending change (and clearing them).
    async fn change_body(&mut self) -> Vec<u8> {
        // Generated documents whose sources changed: a step to their ETag now, reported in the
        // fetch form like any whole-document change (XD-14 chains hold).
        for e in &self.entries {
            let Entry::Generated { key, .. } = e else {
                continue;
            };
            if self.dirty.remove(key) {
                match self.shared.parts.xdms.generated_etag(key).await {
                    Ok(now) => self.docs.jump(key, now),
                    Err(_) => {
                        self.unread.insert(key.clone());
                    }
                }
            }
        }
        let mut diff = XcapDiff::new(self.shared.parts.config.public_root.clone());
        let registry = self.shared.parts.xdms.registry().clone();
        let entries = &self.entries;
        diff.documents = self.docs.take_reports(
            self.mode,
            |k| sel_of(entries, k),
            |auid| {
                registry
                    .get(auid)
                    .and_then(|u| u.descriptor.default_namespace.as_deref())
            },
            &mut diff.prefixes,
        );
        let dirty = std::mem::take(&mut self.dirty);
        diff.components = self.component_reports(&dirty, false).await;
        self.dirty.append(&mut self.unread);
        if diff.documents.is_empty() && diff.components.is_empty() {
            return Vec::new();
        }
        diff.to_xml().into_bytes()
    }

    /// One NOTIFY for the pending changes; false when the subscription ended.
    async fn changes(&mut self) -> bool {
        let before = (
            self.docs.clone(),
            self.components.clone(),
            self.dirty.clone(),
        );
        let body = self.change_body().await;
        if body.is_empty() {
            if !self.dirty.is_empty() {
                // Components that could not be read: not before a pause.
                self.last_sent = Some(Instant::now());
            }
            return true; // the changes cancelled out (or were not part of the chain)
        }
        let expires = self.remaining_secs();
        match self.send(State::Active { expires }, body).await {
            Sent::Delivered => {
                self.failures = 0;
                self.save().await;
                true
            }
            Sent::Gone => false,
            Sent::Retry => {
                (self.docs, self.components, self.dirty) = before;
                self.failures += 1;
                self.failures < MAX_RETRIES
            }
        }
    }

    /// Trimmed changes: whatever differs from the reported state is reported in the fetch
    /// form, still chained from where each document's chain ends (XD-14).
    /// When the documents cannot be read now (a remote node down), it is tried again at the
    /// next wake-up: the subscription stays.
    async fn resync(&mut self) {
        let head = self.shared.parts.feed.head();
        let Some(current) = self.read_documents().await else {
            self.resync_due = Some(Instant::now() + RESYNC_RETRY);
            return;
        };
        self.resync_due = None;
        self.seen_seq = self.seen_seq.max(head);
        for key in self.docs.known() {
            let now = current.get(&key).map(|(_, etag)| etag.clone());
            self.docs.jump(&key, now);
        }
        for (key, (_, etag)) in current {
            self.docs.jump(&key, Some(etag));
        }
        let keys: Vec<DocKey> = self.component_keys().collect();
        self.dirty.extend(keys);
    }

    async fn send_and_save(&mut self, state: State, body: Vec<u8>) -> bool {
        match self.send(state, body).await {
            Sent::Delivered => {
                self.save().await;
                true
            }
            Sent::Gone | Sent::Retry => false,
        }
    }

    /// Sends one NOTIFY and waits for its final answer (XE-17: one in flight).
    async fn send(&mut self, state: State, body: Vec<u8>) -> Sent {
        self.last_sent = Some(Instant::now());
        self.dialog.local_cseq = self.dialog.local_cseq.wrapping_add(1);
        let shared = &self.shared;
        let mut request = notify(
            &self.dialog,
            self.dialog.local_cseq,
            state,
            &shared.parts.config.contact,
            body,
        );
        // RFC 5839 §3: the entity-tag of the state this NOTIFY leaves the subscriber with.
        let tag = state_tag(&self.docs, self.components.iter());
        request.headers.push("SIP-ETag", tag.clone());
        let started = Instant::now();
        // Back on the subscriber's connection while it is open, else over UDP to the next hop.
        let on_flow = match self.dialog.flow {
            Some(peer) => {
                let r = shared
                    .parts
                    .client
                    .request_via(request.clone(), Route::Flow(peer))
                    .await;
                if r.is_none() {
                    self.dialog.flow = None;
                }
                r
            }
            None => None,
        };
        let outcome = match on_flow {
            Some(outcome) => outcome,
            None => {
                let outcome = match self.dialog.next_hop() {
                    Some(target) => shared.parts.client.request_to(request, &target).await,
                    None => None,
                };
                let Some(outcome) = outcome else {
                    tracing::info!(target: "xcapd::notifier", call_id = %self.dialog.id.call_id, "subscriber's contact does not resolve: subscription removed");
                    return Sent::Gone;
                };
                outcome
            }
        };
        let code = match &outcome {
            Outcome::Final(m) => m.status().unwrap_or(500),
            Outcome::Timeout => 408,
        };
        shared
            .parts
            .metrics
            .sip
            .observe_notify(code, started.elapsed().as_micros() as u64);
        match outcome {
            Outcome::Final(_) if (200..300).contains(&code) => {
                self.notified_seq = self.seen_seq;
                let unchanged = !self.docs.has_pending() && self.dirty.is_empty();
                self.set_entity_tag(unchanged.then_some(tag));
                Sent::Delivered
            }
            Outcome::Final(_) if !ends_subscription(code) => Sent::Retry,
            _ => {
                tracing::info!(target: "xcapd::notifier", call_id = %self.dialog.id.call_id, code, "NOTIFY failed: subscription removed");
                Sent::Gone
            }
        }
    }

    fn remaining_secs(&self) -> u32 {
        (self.expires_at_ms.saturating_sub(now_ms()) / 1000).min(u32::MAX as u64) as u32
    }

    /// The stored form of this subscription.
    pub fn record(&self) -> Subscription {
        let saved = Saved {
            remote_uri: self.dialog.remote_uri.clone(),
            local_uri: self.dialog.local_uri.clone(),
            mode: self.mode,
            event_id: self.dialog.event_id.clone(),
            documents: self
                .docs
                .reported()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
            components: self
                .components
                .iter()
                .map(|(s, d)| (s.clone(), d.clone()))
                .collect(),
        };
        Subscription {
            dialog: self.dialog.id.clone(),
            subscriber: self.subscriber.clone(),
            event: super::dialog::PACKAGE.to_string(),
            resources: self.entries.iter().map(|e| e.sel().to_string()).collect(),
            remote_target: self.dialog.remote_target.clone(),
            route_set: self.dialog.route_set.clone(),
            local_cseq: self.dialog.local_cseq,
            remote_cseq: self.dialog.remote_cseq,
            expires_at_ms: self.expires_at_ms,
            notified_seq: self.notified_seq,
            package_state: saved.encode(),
        }
    }

    async fn save(&self) {
        if let Err(e) = self.shared.parts.store.checkpoint(self.record()).await {
            tracing::warn!(target: "xcapd::notifier", error = %e, "cannot store a subscription's progress");
        }
    }

    /// The subscription is over: forgotten here and in the store.
    pub async fn end(self: Box<Self>) {
        self.shared.registry.lock().remove(&self.dialog.id);
        let live = self.shared.registry.lock().len();
        self.shared.parts.metrics.sip.set_subscriptions(live);
        if let Err(e) = self.shared.parts.store.remove(self.dialog.id.clone()).await {
            tracing::warn!(target: "xcapd::notifier", error = %e, "cannot remove a subscription");
        }
    }
}

/// The `sel` of a document report (XE-11): the URI of a document entry naming it, else its
/// document selector (a collection member).
fn sel_of(entries: &[Entry], key: &DocKey) -> String {
    entries
        .iter()
        .find_map(|e| match e {
            Entry::Document { sel, key: k } | Entry::Generated { sel, key: k, .. } if k == key => {
                Some(sel.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| key.document_selector())
}
