//! Pager-mode instant messages (RFC 3428; standards.md IM-01…IM-07, IM-24…IM-29; issue #14
//! scopes 2–3, first part): a MESSAGE from an authenticated sender to a user of the served
//! domains goes through the recipient's `im-rules` (the in-process decision service: block →
//! 403, polite-block → 202 and dropped, allow → delivered) and is delivered to every contact the
//! recipient registered, body and Content-Type byte for byte. One final answer upstream: 200 only
//! when a recipient UA answered 2xx. A recipient no contact of whom took it gets the message
//! stored for later ([`super::deferred`], 202) when their rules (`allow-offline-storage`) or
//! the operator's default allow it. A `message/cpim` body must parse (400 with the reason);
//! `Privacy: id` makes the sender anonymous to the policy (IM-27c) and to the recipient (no
//! P-Asserted-Identity outside the trust domain, IM-30).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::charging::{Charge, Charging};
use super::cpim::Cpim;
use super::deferred::{Deferred, DeferredError, Stored};
use super::groups;
use super::recipient_list::{content, explode, ListError};
use super::route::{Delivery, Router};
use crate::decision::{DecideRequest, DecisionService};
use crate::identity::Xui;
use crate::policy::ImAction;
use crate::sip::auth::{SipAuthenticator, SipIdentity};
use crate::sip::endpoint::{Incoming, Reply, RequestHandler};
use crate::sip::message::{Headers, Message, Method, StartLine};
use crate::storage::now_ms;
use crate::xdms::service::Xdms;

/// RFC 3994 message-composition indications.
const IS_COMPOSING: &str = "application/im-iscomposing+xml";

/// Headers copied to the delivered request: the end-to-end ones a pager message carries.
pub(super) const END_TO_END: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Content-Type",
    "Content-Encoding",
    "Content-Language",
    "Date",
    "Subject",
    "Priority",
    "Require",
    "Supported",
    "Expires",
    "Privacy",
];

/// What the pager needs.
pub struct PagerParts {
    pub auth: SipAuthenticator,
    pub router: Arc<Router>,
    pub decisions: Arc<DecisionService>,
    pub default_domain: Option<String>,
    /// Larger bodies get 413 (RFC 3428 §5: pager mode is for short messages).
    pub max_pager_bytes: usize,
    /// Where messages for offline recipients wait (none: 480).
    pub deferred: Option<Arc<Deferred>>,
    /// Whether storing is allowed when the recipient's rules do not say (IM-15).
    pub offline_storage_default: bool,
    /// Recipients of one recipient-list MESSAGE at most (413 beyond).
    pub max_recipients: usize,
    /// The sender is answered within this; a slower recipient UA has its message stored
    /// (202) while the attempt goes on (IM-03).
    pub answer_within: std::time::Duration,
    /// How long a stored message stays held for its running attempt: Timer F (64·T1) and a
    /// margin (after a crash it is offered again once this lapsed).
    pub attempt_lasts: std::time::Duration,
    /// Where pre-defined groups are found (IM-13), when the Shared XDMS is served here.
    pub groups: Option<Arc<Xdms>>,
    /// Conversation history, when enabled (IM-32).
    pub history: Option<Arc<super::history::History>>,
    /// Notices recipients owe senders who asked (they pass the senders' rules).
    pub expected: super::expected::Expected,
    pub charging: Charging,
}

/// The MESSAGE handler; install it on the endpoint for `MESSAGE`.
pub struct Pager(Arc<PagerParts>);

/// Pre-defined groups (Shared XDMS, SX-03).
const GROUPS: &str = "org.openmobilealliance.groups";

/// RFC 5365 option tag: the MESSAGE carries a recipient list to explode.
const RECIPIENT_LIST: &str = "recipient-list-message";

impl Pager {
    pub fn new(parts: PagerParts) -> Pager {
        Pager(Arc::new(parts))
    }

    async fn message(&self, incoming: Incoming) -> Reply {
        let p = &self.0;
        let msg = &incoming.message;
        let now = now_ms();
        // IM-24: the sender is who authenticated (or was asserted), never the From header.
        let sender = match p.auth.identify(msg, incoming.source.ip(), now / 1000).await {
            SipIdentity::Authenticated(xui) => xui,
            SipIdentity::Challenge(challenges) => return Reply::unauthorized(challenges),
        };
        let StartLine::Request { uri, .. } = &msg.start else {
            return Reply::new(400, "Not a request");
        };
        let exploding = msg
            .headers
            .values("Require")
            .iter()
            .any(|t| t.eq_ignore_ascii_case(RECIPIENT_LIST));
        if exploding {
            return self.explode(msg, &sender, now).await;
        }
        if let Some(members) = self.group(uri, &sender, now).await {
            return match members {
                Ok(members) => self.fan_out(msg, &sender, &members, None, now).await,
                Err(refusal) => refusal,
            };
        }
        let Ok(recipient) = Xui::parse(uri, p.default_domain.as_deref()) else {
            return Reply::new(404, "Not Found: no such user");
        };
        let recipient = recipient.as_str().to_string();
        let mut records = None;
        let (reply, outcome) = if msg.body.len() > p.max_pager_bytes {
            (too_large(), Some("failed"))
        } else {
            p.route(msg, &sender, &recipient, now, &mut records).await
        };
        p.charge(msg, &sender, &recipient, (&reply, outcome, records), now)
            .await;
        reply
    }

    /// A recipient-list MESSAGE (RFC 5365, IM-08): one copy per recipient, each through that
    /// recipient's policy, delivery and storing, all at once; 202 once each is delivered,
    /// stored or refused (so nothing accepted is lost).
    async fn explode(&self, msg: &Message, sender: &str, now: u64) -> Reply {
        let p = &self.0;
        if msg.body.len() > p.max_pager_bytes {
            return too_large();
        }
        let content_type = msg.headers.get("Content-Type").unwrap_or("");
        let exploded = match explode(content_type, &msg.body, p.max_recipients) {
            Ok(e) => e,
            Err(e @ ListError::TooMany(_)) => {
                return Reply::new(413, format!("Too many recipients: {e}"))
            }
            Err(e) => return Reply::new(400, format!("Bad Request: {e}")),
        };
        // IM-08d: each copy tells who else it went to (a boundary in neither part).
        let boundary = loop {
            let b = format!("xcapd-{}", super::route::random_hex());
            if !contains(&msg.body, b.as_bytes()) {
                break b;
            }
        };
        let (content_type, body) = exploded.copy(&boundary);
        let uris: Vec<String> = exploded.recipients.into_iter().map(|r| r.uri).collect();
        self.fan_out(msg, sender, &uris, Some((&content_type, &body)), now)
            .await
    }

    /// One copy of `msg` (or of `content`: its Content-Type and bytes) per recipient, each
    /// through that recipient's policy, delivery and storing, all at once; 202 once each is
    /// delivered, stored or refused (so nothing accepted is lost).
    async fn fan_out(
        &self,
        msg: &Message,
        sender: &str,
        recipients: &[String],
        content: Option<(&str, &[u8])>,
        now: u64,
    ) -> Reply {
        let p = &self.0;
        if msg.body.len() > p.max_pager_bytes {
            return too_large(); // the copies are not measured again (a history part adds)
        }
        let mut users = Vec::new();
        for uri in recipients {
            let Ok(user) = Xui::parse(uri, p.default_domain.as_deref()) else {
                return Reply::new(
                    400,
                    format!("Bad Request: recipient {uri:?} is not a user URI"),
                );
            };
            users.push((uri, user.as_str().to_string()));
        }
        let (content_type, body) =
            content.unwrap_or((msg.headers.get("Content-Type").unwrap_or(""), &msg.body));
        // A malformed CPIM message is refused once, not accepted and dropped per copy.
        let (media, message) = super::recipient_list::content(content_type, body);
        if media.eq_ignore_ascii_case("message/cpim") {
            if let Err(e) = Cpim::parse(message) {
                return Reply::new(400, format!("Bad Request: {e}"));
            }
        }
        let mut copies = tokio::task::JoinSet::new();
        for (uri, recipient) in users {
            let copy = copy_for(msg, uri, content_type, body);
            let (p, sender) = (Arc::clone(p), sender.to_string());
            copies.spawn(async move {
                let mut records = None;
                let (reply, outcome) = p.route(&copy, &sender, &recipient, now, &mut records).await;
                p.charge(&copy, &sender, &recipient, (&reply, outcome, records), now)
                    .await;
            });
        }
        while copies.join_next().await.is_some() {}
        Reply::new(202, "Accepted")
    }

    /// When `uri` is a pre-defined group's (IM-13): its members but the sender, or the
    /// refusal (403: not admitted, or more members than `max-participant-count`).
    async fn group(&self, uri: &str, sender: &str, now: u64) -> Option<Result<Vec<String>, Reply>> {
        let xdms = self.0.groups.as_ref()?;
        let bare = uri.split(';').next().unwrap_or(uri);
        let key = match xdms.unique_holder(GROUPS, uri).await {
            Some(key) => key,
            None => xdms.unique_holder(GROUPS, bare).await?,
        };
        let doc = match xdms.store().get(&key).await {
            Ok(Some(doc)) => doc,
            // Deleted meanwhile: not a group any more.
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot read a group document");
                return Some(Err(Reply::new(500, "Group unavailable")));
            }
        };
        let mut group = groups::read(&doc.body, bare, sender, (now / 1000) as i64)?;
        if !group.externals.is_empty() {
            let externals = std::mem::take(&mut group.externals);
            let (more, unresolved) = self.0.decisions.list_members(externals).await;
            for why in unresolved {
                // Those that resolve still get the message; the operator hears of the rest.
                tracing::warn!(target: "xcapd::im", group = bare, reason = %why, "a group member reference does not resolve");
            }
            group.add_members(more);
        }
        if !group.admits(sender) {
            return Some(Err(Reply::new(403, "Forbidden: not a member of the group")));
        }
        if group
            .max_participants
            .is_some_and(|max| group.members.len() > max)
        {
            return Some(Err(Reply::new(
                403,
                "Forbidden: the group has more members than its max-participant-count",
            )));
        }
        let others = group
            .members
            .into_iter()
            .filter(|m| !crate::identity::uri_equal(m, sender))
            .collect();
        Some(Ok(others))
    }
}

impl PagerParts {
    /// Issue #14 scope 8: every outcome but an isComposing indication or a duplicate; an
    /// accepted message also goes to the parties' history. `routed`: the answer, its outcome
    /// and whether the recipient's rules record the sender (when they were evaluated).
    async fn charge(
        &self,
        msg: &Message,
        sender: &str,
        recipient: &str,
        routed: (&Reply, Option<&'static str>, Option<bool>),
        now: u64,
    ) {
        let (reply, outcome, records) = routed;
        if let (Some(outcome), false) = (outcome, is_media(&msg.headers, IS_COMPOSING)) {
            if matches!(outcome, "delivered" | "stored") {
                if let Some(h) = &self.history {
                    let parties = super::history::Parties {
                        sender,
                        recipient,
                        hidden: anonymous(&msg.headers),
                        recipient_records: records,
                    };
                    h.record(msg, parties, now).await;
                }
            }
            let charge = Charge {
                event: "message",
                sender,
                recipient,
                content_type: msg.headers.get("Content-Type").unwrap_or(""),
                body: &msg.body,
                call_id: msg.headers.get("Call-ID").unwrap_or(""),
                outcome,
                code: reply.code,
            };
            self.charging.record(charge, now).await;
        }
    }

    /// The answer to an authenticated MESSAGE and its charged outcome (none: not charged);
    /// `records` gets whether the recipient's rules record conversations with the sender,
    /// when they are evaluated (IM-32).
    async fn route(
        &self,
        msg: &Message,
        sender: &str,
        recipient: &str,
        now: u64,
        records: &mut Option<bool>,
    ) -> (Reply, Option<&'static str>) {
        let p = self;
        let failed = |code: u16, reason: String| (Reply::new(code, reason), Some("failed"));
        let cpim = match carried_cpim(msg).map(Cpim::parse) {
            Some(Err(e)) => return failed(400, format!("Bad Request: {e}")),
            Some(Ok(cpim)) => Some(cpim),
            None => None,
        };
        // A notice the recipient asked the sender for passes the recipient's rules (IM-20);
        // anything else goes through them.
        let expected = cpim
            .as_ref()
            .is_some_and(|c| p.expected.take(c, sender, recipient, now));
        let offline = if expected {
            None
        } else {
            // IM-27c: a sender asking for privacy is evaluated as anonymous.
            let hidden = anonymous(&msg.headers);
            let request = DecideRequest {
                recipient: recipient.to_string(),
                sender: (!hidden).then(|| sender.to_string()),
                media: Some("pager".into()),
                anonymous: hidden,
            };
            let decision = match p
                .decisions
                .decide_async(&request, (now / 1000) as i64)
                .await
            {
                Ok(decision) => decision,
                Err(e) => {
                    tracing::warn!(target: "xcapd::im", error = %e, "cannot decide on a MESSAGE");
                    return failed(500, "Policy unavailable".into());
                }
            };
            match decision.action {
                ImAction::Block => return (Reply::new(403, "Forbidden"), Some("blocked")),
                // IM-26: accepted as if delivered, and dropped (no IMDN).
                ImAction::PoliteBlock => return (Reply::new(202, "Accepted"), Some("blocked")),
                ImAction::Allow => {}
            }
            *records = Some(decision.record_history == Some(true));
            // Accepted: the recipient's notices about it are expected from now on, before
            // a UA quick to send one has taken it (IM-20).
            if let Some(c) = &cpim {
                p.expected.accepted(c, sender, recipient, now);
            }
            decision.allow_offline_storage
        };
        let allowed = offline.unwrap_or(p.offline_storage_default);
        let storable = allowed && p.deferred.is_some() && !is_media(&msg.headers, IS_COMPOSING);
        // RFC 3428 §7: fork to every contact; the first 2xx is the answer. A UA gets Timer F
        // to answer; the sender is answered sooner (IM-03: 202 once the message is stored).
        let (router, copy) = (Arc::clone(&p.router), msg.clone());
        let (to, from) = (recipient.to_string(), sender.to_string());
        let mut attempt = tokio::spawn(async move {
            let request = |uri: &str| delivered(&copy.headers, &copy.body, uri, &from);
            router.deliver(&to, 0, request).await
        });
        let delivery = if storable {
            match tokio::time::timeout(p.answer_within, &mut attempt).await {
                Ok(done) => done.unwrap_or(Delivery::Unreachable),
                Err(_) => return self.pending(msg, sender, recipient, now, attempt).await,
            }
        } else {
            attempt.await.unwrap_or(Delivery::Unreachable)
        };
        match delivery {
            Delivery::Delivered => (Reply::new(200, "OK"), Some("delivered")),
            Delivery::Refused(code) => failed(code, "Refused by the recipient".into()),
            Delivery::Unreachable if !allowed => {
                // IM-15c.
                failed(
                    480,
                    "Temporarily Unavailable: offline storage not allowed".into(),
                )
            }
            Delivery::Unreachable => {
                let (reply, outcome, _) = self.offline(msg, sender, recipient, now, 0).await;
                (reply, outcome)
            }
        }
    }

    /// The recipient's UA has not answered yet: the message is stored, held for the running
    /// attempt, and the sender gets 202; the attempt's outcome settles it (delivered: removed;
    /// refused: removed, the sender told `failed`; no answer: kept for later delivery).
    async fn pending(
        &self,
        msg: &Message,
        sender: &str,
        recipient: &str,
        now: u64,
        attempt: tokio::task::JoinHandle<Delivery>,
    ) -> (Reply, Option<&'static str>) {
        let hold = now.saturating_add(self.attempt_lasts.as_millis() as u64);
        let (reply, outcome, stored) = self.offline(msg, sender, recipient, now, hold).await;
        match (stored, &self.deferred) {
            (Some(id), Some(deferred)) => {
                let (deferred, recipient) = (Arc::clone(deferred), recipient.to_string());
                tokio::spawn(async move {
                    let delivery = attempt.await.unwrap_or(Delivery::Unreachable);
                    deferred.settle(id, &recipient, delivery).await;
                });
            }
            // Not stored (a duplicate, the quota, storage down): the attempt runs on alone.
            _ => drop(attempt),
        }
        (reply, outcome)
    }

    /// No contact took it: stored for later delivery (202), or 480 without a store and for
    /// an isComposing indication (RFC 3994 §6: relayed, never stored; stale once late). With
    /// `hold` the stored message is held for a running attempt until then. The answer, its
    /// charged outcome, and the stored message's id.
    async fn offline(
        &self,
        msg: &Message,
        sender: &str,
        recipient: &str,
        now: u64,
        hold: u64,
    ) -> (Reply, Option<&'static str>, Option<u64>) {
        let composing = is_media(&msg.headers, IS_COMPOSING);
        let (Some(deferred), false) = (&self.deferred, composing) else {
            return (
                Reply::new(480, "Temporarily Unavailable"),
                Some("failed"),
                None,
            );
        };
        let reply = match deferred.store(msg, sender, recipient, now, hold).await {
            Ok(Stored::New(id)) => {
                let reply = Reply::new(202, "Accepted: stored for delivery");
                return (reply, Some("stored"), Some(id));
            }
            Ok(Stored::Duplicate) => {
                return (Reply::new(202, "Accepted: stored already"), None, None)
            }
            Err(DeferredError::QuotaExceeded) => Reply::new(
                480,
                "Temporarily Unavailable: the recipient's stored messages are at their limit",
            ),
            Err(DeferredError::Storage(e)) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot store a deferred MESSAGE");
                let mut r = Reply::new(503, "Service Unavailable");
                r.headers.push("Retry-After", "5");
                r
            }
        };
        (reply, Some("failed"), None)
    }
}

/// The copy of a recipient-list MESSAGE for `recipient` (RFC 5365 §4.2): its end-to-end
/// headers with To naming the recipient, no Require, the message part as body.
fn copy_for(original: &Message, recipient: &str, content_type: &str, content: &[u8]) -> Message {
    let mut headers = Headers::new();
    for (name, value) in original.headers.iter() {
        let skip = ["To", "Require", "Content-Type", "Content-Length"];
        if !skip.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            headers.push(name, value);
        }
    }
    headers.push("To", format!("<{recipient}>"));
    headers.push("Content-Type", content_type);
    Message {
        start: StartLine::Request {
            method: Method::Message,
            uri: recipient.to_string(),
        },
        headers,
        body: content.to_vec(),
    }
}

/// 413 (RFC 3428 §5: pager mode is for short messages, IM-06).
fn too_large() -> Reply {
    Reply::new(413, "Message Too Large: send it in a session")
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The bytes of the `message/cpim` message `msg` carries (the body, or the message part of
/// a copy with a recipient-list history); `None` for another type.
fn carried_cpim(msg: &Message) -> Option<&[u8]> {
    let (media, body) = content(msg.headers.get("Content-Type").unwrap_or(""), &msg.body);
    media.eq_ignore_ascii_case("message/cpim").then_some(body)
}

/// Whether the Content-Type's media type is `media` (parameters ignored).
fn is_media(headers: &Headers, media: &str) -> bool {
    headers.get("Content-Type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(media))
    })
}

/// `Privacy: id` (RFC 3323 §4.2, RFC 3325 §7): the sender asks to stay anonymous.
pub(super) fn anonymous(headers: &Headers) -> bool {
    headers.get_all("Privacy").any(|v| {
        v.split([';', ','])
            .any(|t| t.trim().eq_ignore_ascii_case("id"))
    })
}

/// The MESSAGE as delivered to `contact`: the end-to-end headers of `original` and the body
/// unchanged, the sender asserted (RFC 3325) for the recipient's UA unless they asked for
/// privacy (IM-30: the UA is outside the trust domain).
pub(super) fn delivered(original: &Headers, body: &[u8], contact: &str, sender: &str) -> Message {
    let mut headers = Headers::new();
    headers.push("Max-Forwards", "70");
    for name in END_TO_END {
        for value in original.get_all(name) {
            headers.push(name, value);
        }
    }
    if !anonymous(original) {
        headers.push("P-Asserted-Identity", format!("<{sender}>"));
    }
    Message {
        start: StartLine::Request {
            method: Method::Message,
            uri: contact.to_string(),
        },
        headers,
        body: body.to_vec(),
    }
}

impl RequestHandler for Pager {
    fn event_packages(&self) -> &[&'static str] {
        &[]
    }

    fn extensions(&self) -> &[&'static str] {
        &[RECIPIENT_LIST]
    }

    fn handle(&self, request: Incoming) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        Box::pin(self.message(request))
    }
}
