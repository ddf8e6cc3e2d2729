//! The xcap-diff notifier service (RFC 5875 §4; RFC 6665 §4.2.1; standards.md XE-01…XE-09,
//! XE-16, XE-19, XE-20, XD-15): answers SUBSCRIBE requests the SIP endpoint hands over — who
//! is subscribing (P-Asserted-Identity from the SIP/IP core, else SIP Digest), what they may
//! watch (exactly what an HTTP GET with the same identity may read), the dialog and its
//! duration — and keeps each subscription's state ([`super::actor`]), woken by its mailbox
//! ([`super::mailbox`]) and fed from the change feed ([`super::registry`]). Subscriptions are stored, so a restart resumes them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::actor::Actor;
use super::dialog::{Dialog, PACKAGE};
use super::dormant::rebuild;
use super::mailbox::{Mailbox, Msg, Refresh, Timers};
use super::nodes::Nodes;
use super::registry::{dispatch, follow, Handle, Registry};
use super::report::Documents;
use super::request::{
    check_accept, diff_processing, grant_expires, parse_entries, DiffProcessing, Durations, Entry,
    SubscribeError, MIME_RESOURCE_LISTS,
};
use crate::authz::Principal;
use crate::metrics::Metrics;
use crate::sip::auth::{SipAuthenticator, SipIdentity};
use crate::sip::client::Client;
use crate::sip::endpoint::{Incoming, Reply, RequestHandler, Transport};
use crate::sip::header::{delta_seconds, CSeq, Event, NameAddr};
use crate::sip::message::Message;
use crate::storage::subscriptions::{DialogId, Subscription, SubscriptionStore};
use crate::storage::{now_ms, ChangeFeed, StorageError};
use crate::xcap::keys::DocKey;
use crate::xcap_diff::MIME_XCAP_DIFF;
use crate::xdms::Xdms;

/// Settings of the notifier.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// The absolute XCAP root (`xcap-root` of every diff, base of relative entries, XE-03).
    pub public_root: String,
    /// Its path, e.g. `/xcap-root`.
    pub root_path: String,
    pub default_domain: Option<String>,
    pub durations: Durations,
    /// XE-18: at most one NOTIFY per subscription this often.
    pub notify_interval: Duration,
    /// The notifier's Contact URI.
    pub contact: String,
    /// Live subscriptions at most, in all and per subscriber (503 beyond).
    pub max_subscriptions: usize,
    pub max_subscriptions_per_user: usize,
    /// A store several nodes share: a node not heard of for this long is taken for dead.
    pub node_lease: Duration,
}

/// What every subscription task shares: the parts it was built from and the live registry.
pub(super) struct Shared {
    pub parts: NotifierParts,
    pub registry: Mutex<Registry>,
    pub timers: Arc<Timers>,
}

/// The notifier; install it on the SIP endpoint for SUBSCRIBE (`Endpoint::set_handlers`).
pub struct Notifier {
    shared: Arc<Shared>,
    auth: SipAuthenticator,
}

/// The parts the notifier is built from.
pub struct NotifierParts {
    pub config: NotifierConfig,
    pub xdms: Arc<Xdms>,
    pub store: Arc<dyn SubscriptionStore>,
    pub feed: ChangeFeed,
    pub client: Arc<Client>,
    pub metrics: Arc<Metrics>,
    /// Remote XDMS nodes whose documents subscriptions may watch.
    pub nodes: Arc<Nodes>,
    pub shutdown: watch::Receiver<bool>,
}

impl Notifier {
    /// Resumes the stored subscriptions (expired ones get their final NOTIFY) and starts
    /// reading the change feed where the least advanced one stopped (XE-24, issue #13 scope 6).
    /// `auth` identifies subscribers.
    pub async fn start(
        parts: NotifierParts,
        auth: SipAuthenticator,
    ) -> Result<(Arc<Notifier>, JoinHandle<()>), StorageError> {
        let shared = Arc::new(Shared {
            parts,
            registry: Mutex::new(Registry::default()),
            timers: Arc::default(),
        });
        // This node is heard of before it serves (its subscriptions are not orphans).
        let orphans = shared
            .parts
            .store
            .orphaned(now_ms(), lease_ms(&shared))
            .await?;
        deactivate(&shared, orphans);
        let stored = shared.parts.store.all().await?;
        let mut from = shared.parts.feed.head();
        for sub in stored {
            match restore(&shared, sub) {
                Some((actor, dialog, entries)) => {
                    from = from.min(actor.notified_seq);
                    // Its first wake-up ends it if it expired meanwhile (with its final NOTIFY).
                    spawn(&shared, actor, dialog, &entries, Msg::Tick);
                }
                None => continue,
            }
        }
        let live = shared.registry.lock().len();
        shared.parts.metrics.sip.set_subscriptions(live);
        if live > 0 {
            tracing::info!(target: "xcapd::notifier", subscriptions = live, from, "xcap-diff subscriptions resumed");
        }
        let timers = Arc::clone(&shared.timers);
        let shutdown = shared.parts.shutdown.clone();
        tokio::spawn(async move { timers.run(shutdown).await });
        for node in shared.parts.nodes.all() {
            tokio::spawn(follow(Arc::clone(&shared), Arc::clone(node)));
        }
        tokio::spawn(adopt_orphans(Arc::clone(&shared)));
        let task = tokio::spawn(dispatch(Arc::clone(&shared), from));
        Ok((Arc::new(Notifier { shared, auth }), task))
    }

    /// Whether a subscription watches changes of `key` (then whole-document writes are
    /// recorded with their patch, [`crate::xdms::ChangeWatch`]).
    pub fn watches(&self, key: &DocKey) -> bool {
        self.shared.registry.lock().watches(key)
    }

    /// Live subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.shared.registry.lock().len()
    }

    async fn subscribe(&self, incoming: Incoming) -> Reply {
        let msg = &incoming.message;
        let now = now_ms() / 1000;
        // RFC 6665 §4.2.1.3: authenticate before anything is revealed (scope 2).
        let subscriber = match self.auth.identify(msg, incoming.source.ip(), now).await {
            SipIdentity::Authenticated(xui) => xui,
            SipIdentity::Challenge(challenges) => return Reply::unauthorized(challenges),
        };
        let event = msg.headers.get("Event").and_then(Event::parse);
        let mode = event
            .as_ref()
            .map_or(DiffProcessing::NoPatching, diff_processing);
        let event_id = event
            .as_ref()
            .and_then(|e| e.params.get("id").flatten().map(str::to_string));
        if let Err(e) = check_accept(&msg.headers.values("Accept")) {
            let mut r = refusal(&e);
            r.headers.push("Accept", MIME_XCAP_DIFF);
            return r;
        }
        let requested = match msg.headers.get("Expires") {
            None => None,
            Some(v) => match delta_seconds(v) {
                Some(n) => Some(n),
                None => return Reply::new(400, "Malformed Expires header"),
            },
        };
        let expires = match grant_expires(requested, &self.shared.parts.config.durations) {
            Ok(n) => n,
            Err(e) => return refusal(&e),
        };
        let principal = self.auth.principal(&subscriber).await;
        let asked = Asked {
            flow: (incoming.transport == Transport::Tcp).then_some(incoming.source),
            principal,
            subscriber,
            mode,
            expires,
            cseq: msg
                .headers
                .get("CSeq")
                .and_then(CSeq::parse)
                .map_or(0, |c| c.seq),
            event_id,
        };
        let to_tag = msg
            .headers
            .get("To")
            .and_then(NameAddr::parse)
            .and_then(|t| t.tag().map(str::to_string));
        match to_tag {
            Some(tag) => self.refresh(msg, tag, asked),
            None => self.create(msg, asked).await,
        }
    }

    /// The readable entries of the body (XD-15: unreadable ones are left out; 403 only when
    /// nothing is left). A refresh may come without a body (keeps its list, XE-09).
    fn entries(
        &self,
        msg: &Message,
        principal: &Principal,
        refresh: bool,
    ) -> Result<Option<Vec<Entry>>, Reply> {
        if msg.body.is_empty() {
            return if refresh {
                Ok(None)
            } else {
                Err(Reply::new(400, "Missing resource-lists body"))
            };
        }
        if let Some(ct) = msg.headers.get("Content-Type") {
            let media = ct.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case(MIME_RESOURCE_LISTS) {
                let mut r = Reply::new(415, "Unsupported Media Type");
                r.headers.push("Accept", MIME_RESOURCE_LISTS);
                return Err(r);
            }
        }
        let c = &self.shared.parts.config;
        let all = parse_entries(
            &msg.body,
            &c.public_root,
            &c.root_path,
            c.default_domain.as_deref(),
        )
        .map_err(|e| refusal(&e))?;
        let xdms = &self.shared.parts.xdms;
        let readable: Vec<Entry> = all
            .into_iter()
            .map(|e| e.generated(|k| xdms.generated_sources(k)))
            // A remote node's global tree cannot be listed from here: such a collection is
            // left out like an unreadable entry (its documents may be named one by one).
            .filter(|e| match e {
                Entry::Collection {
                    auid,
                    tree: crate::xcap::keys::TreeKey::Global,
                    ..
                } => self.shared.parts.nodes.serving(auid).is_none(),
                _ => true,
            })
            .filter(|e| {
                let (auid, tree) = match e {
                    Entry::Collection { auid, tree, .. } => (auid, tree),
                    Entry::Document { key, .. }
                    | Entry::Generated { key, .. }
                    | Entry::Component { key, .. } => (&key.auid, &key.tree),
                };
                self.shared.parts.xdms.may_read(principal, auid, tree)
            })
            .collect();
        if readable.is_empty() {
            return Err(Reply::new(403, "Forbidden"));
        }
        Ok(Some(readable))
    }

    /// A new subscription (RFC 6665 §4.2.1.1): a dialog, stored, then 200 and the full state.
    async fn create(&self, msg: &Message, asked: Asked) -> Reply {
        let entries = match self.entries(msg, &asked.principal, false) {
            Ok(e) => e.unwrap_or_default(),
            Err(r) => return r,
        };
        let c = &self.shared.parts.config;
        {
            let registry = self.shared.registry.lock();
            if registry.len() >= c.max_subscriptions
                || registry.count_of(&asked.subscriber) >= c.max_subscriptions_per_user
            {
                let mut r = Reply::new(503, "Too Many Subscriptions");
                r.headers.push("Retry-After", "60");
                return r;
            }
        }
        let local_tag = random_tag();
        let mut dialog = match Dialog::from_subscribe(msg, &local_tag) {
            Ok(d) => d,
            Err(e) => return Reply::new(400, e.to_string()),
        };
        dialog.flow = asked.flow;
        let id = dialog.id.clone();
        let (sent_tx, sent_rx) = oneshot::channel();
        let actor = Actor {
            shared: Arc::clone(&self.shared),
            dialog: dialog.clone(),
            subscriber: asked.subscriber,
            entries: entries.clone(),
            mode: asked.mode,
            expires_at_ms: now_ms() + u64::from(asked.expires) * 1000,
            docs: Documents::default(),
            components: Default::default(),
            dirty: Default::default(),
            unread: Default::default(),
            seen_seq: 0,
            notified_seq: 0,
            last_sent: None,
            failures: 0,
            resync_due: None,
        };
        let mut reply = self.accepted(&local_tag, asked.expires);
        reply.sent = Some(sent_tx);
        if asked.expires == 0 {
            // RFC 6665 §4.2.1.1: a fetch; one NOTIFY with the state, terminated.
            let mailbox = Mailbox::new(Box::new(actor));
            let refresh = Refresh {
                suppress: false,
                flow: asked.flow,
                remote_target: None,
                expires_at_ms: 0,
                entries: None,
                mode: asked.mode,
                remote_cseq: dialog.remote_cseq,
                sent: sent_rx,
            };
            mailbox.send(Msg::Refresh(Box::new(refresh)));
            return reply;
        }
        if let Err(e) = self.shared.parts.store.put(actor.record()).await {
            tracing::warn!(target: "xcapd::notifier", error = %e, "cannot store a subscription");
            let mut r = Reply::new(503, "Service Unavailable");
            r.headers.push("Retry-After", "5");
            return r;
        }
        spawn(&self.shared, actor, id, &entries, Msg::Start(sent_rx));
        let live = self.shared.registry.lock().len();
        self.shared.parts.metrics.sip.set_subscriptions(live);
        reply
    }

    /// A refresh (RFC 6665 §4.2.1.2; XE-09, XE-16), or `Expires: 0` (XE-23): the dialog is
    /// looked up first (481), then who asks (403) and the CSeq order (500, RFC 3261 §12.2.2),
    /// then the new list if there is one.
    fn refresh(&self, msg: &Message, to_tag: String, asked: Asked) -> Reply {
        let from_tag = msg
            .headers
            .get("From")
            .and_then(NameAddr::parse)
            .and_then(|f| f.tag().map(str::to_string))
            .unwrap_or_default();
        let id = DialogId {
            call_id: msg.headers.get("Call-ID").unwrap_or_default().to_string(),
            local_tag: to_tag.clone(),
            remote_tag: from_tag,
        };
        let (sent_tx, sent_rx) = oneshot::channel();
        {
            let mut registry = self.shared.registry.lock();
            let Some(handle) = registry
                .get_mut(&id)
                .filter(|h| h.event_id == asked.event_id)
            else {
                return Reply::new(481, "Subscription Does Not Exist");
            };
            if handle.subscriber != asked.subscriber {
                return Reply::new(403, "Forbidden");
            }
            if asked.cseq <= handle.remote_cseq {
                return Reply::new(500, "CSeq Out of Order");
            }
            let entries = match self.entries(msg, &asked.principal, true) {
                Ok(e) => e,
                Err(r) => return r,
            };
            // RFC 5839 §4 (XE-16): the subscriber holds the current state already.
            let suppress = asked.expires > 0
                && entries.is_none()
                && msg.headers.get("Suppress-If-Match").is_some_and(|v| {
                    let v = v.trim();
                    v == "*" || handle.entity_tag.as_deref() == Some(v)
                });
            let refresh = Refresh {
                suppress,
                flow: asked.flow,
                remote_target: Dialog::contact_of(msg),
                expires_at_ms: if asked.expires == 0 {
                    0
                } else {
                    now_ms() + u64::from(asked.expires) * 1000
                },
                entries: entries.clone(),
                mode: asked.mode,
                remote_cseq: asked.cseq,
                sent: sent_rx,
            };
            if !handle.mailbox.send(Msg::Refresh(Box::new(refresh))) {
                return Reply::new(481, "Subscription Does Not Exist");
            }
            handle.remote_cseq = asked.cseq;
            if let Some(entries) = &entries {
                registry.reindex(&id, entries);
            }
            if suppress {
                let mut reply = self.accepted(&to_tag, asked.expires);
                reply.code = 204;
                reply.reason = "No Notification".into();
                reply.sent = Some(sent_tx);
                return reply;
            }
        }
        let mut reply = self.accepted(&to_tag, asked.expires);
        reply.sent = Some(sent_tx);
        reply
    }

    /// 200 (never 202, RFC 6665 §8.3.1) with the granted duration and our Contact.
    fn accepted(&self, to_tag: &str, expires: u32) -> Reply {
        let mut r = Reply::new(200, "OK");
        r.to_tag = Some(to_tag.to_string());
        r.headers.push("Expires", expires.to_string());
        r.headers
            .push("Contact", format!("<{}>", self.shared.parts.config.contact));
        r
    }
}

impl RequestHandler for Notifier {
    fn event_packages(&self) -> &[&'static str] {
        &[PACKAGE]
    }

    fn handle(&self, request: Incoming) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        Box::pin(self.subscribe(request))
    }
}

/// What a SUBSCRIBE asks, once its sender is known.
struct Asked {
    /// The stream connection it came over, if any.
    flow: Option<std::net::SocketAddr>,
    /// Who reads (XD-15): the subscriber as a user, or as a service or admin by its roles.
    principal: Principal,
    subscriber: String,
    mode: DiffProcessing,
    expires: u32,
    cseq: u32,
    event_id: Option<String>,
}

/// The answer to a refused SUBSCRIBE.
fn refusal(e: &SubscribeError) -> Reply {
    match e {
        SubscribeError::BadBody | SubscribeError::NothingSubscribed => {
            Reply::new(400, e.to_string())
        }
        SubscribeError::NotAcceptable => Reply::new(406, "Not Acceptable"),
        SubscribeError::IntervalTooBrief { min } => {
            let mut r = Reply::new(423, "Interval Too Brief");
            r.headers.push("Min-Expires", min.to_string());
            r
        }
    }
}

/// Registers a subscription and hands it its first message.
fn spawn(shared: &Arc<Shared>, actor: Actor, id: DialogId, entries: &[Entry], first: Msg) {
    let (subscriber, cseq, event_id) = (
        actor.subscriber.clone(),
        actor.dialog.remote_cseq,
        actor.dialog.event_id.clone(),
    );
    let mailbox = Mailbox::new(Box::new(actor));
    let handle = Handle::new(Arc::clone(&mailbox), subscriber, cseq, event_id);
    // Under the registry lock: no change reaches it before its first message, and its end
    // (which takes the lock) cannot come before its registration.
    let mut registry = shared.registry.lock();
    registry.insert(id, handle, entries);
    mailbox.send(first);
}

/// A stored subscription live again; `None` (and removed) when it cannot be.
fn restore(shared: &Arc<Shared>, sub: Subscription) -> Option<(Actor, DialogId, Vec<Entry>)> {
    let dialog = sub.dialog.clone();
    let Some(mut actor) = rebuild(shared, sub) else {
        let store = Arc::clone(&shared.parts.store);
        tokio::spawn(async move { store.remove(dialog).await });
        return None;
    };
    // NOTIFYs sent after the last stored progress used CSeqs the subscriber has seen: go on
    // well above them (a CSeq may jump, RFC 3261 §12.2.1.1).
    actor.dialog.local_cseq = actor.dialog.local_cseq.saturating_add(CSEQ_MARGIN);
    let entries = actor.entries.clone();
    Some((actor, dialog, entries))
}

fn lease_ms(shared: &Shared) -> u64 {
    shared.parts.config.node_lease.as_millis() as u64
}

/// Several nodes on one store: this node says it is alive three times per lease, and ends
/// the subscriptions of nodes that stopped ([`deactivate`]), until shutdown.
async fn adopt_orphans(shared: Arc<Shared>) {
    let period = (shared.parts.config.node_lease / 3).max(Duration::from_millis(100));
    let mut shutdown = shared.parts.shutdown.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        match shared
            .parts
            .store
            .orphaned(now_ms(), lease_ms(&shared))
            .await
        {
            Ok(orphans) => deactivate(&shared, orphans),
            Err(e) => {
                tracing::warn!(target: "xcapd::notifier", error = %e, "cannot look for the subscriptions of stopped nodes")
            }
        }
    }
}

/// Subscriptions a stopped node served end here: each gets a final NOTIFY with what changed
/// since its last one, `terminated;reason=deactivated` (RFC 6665 §4.2.2: subscribe again at
/// once, which reaches a live node), and is removed.
fn deactivate(shared: &Arc<Shared>, orphans: Vec<Subscription>) {
    if !orphans.is_empty() {
        tracing::info!(target: "xcapd::notifier", subscriptions = orphans.len(), "ending the subscriptions of a stopped node");
    }
    for sub in orphans {
        if let Some((actor, dialog, entries)) = restore(shared, sub) {
            spawn(shared, actor, dialog, &entries, Msg::Deactivate);
        }
    }
}

/// How far a restored dialog's CSeq jumps.
const CSEQ_MARGIN: u32 = 1000;

/// A dialog tag with 64 random bits (RFC 3261 §19.3: at least 32).
fn random_tag() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        bytes = NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
