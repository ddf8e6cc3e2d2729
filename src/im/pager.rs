//! Pager-mode instant messages (RFC 3428; standards.md IM-01…IM-07, IM-24…IM-29; issue #14
//! scopes 2–3, first part): a MESSAGE from an authenticated sender to a user of the served
//! domains goes through the recipient's `im-rules` (the in-process decision service: block →
//! 403, polite-block → 202 and dropped, allow → delivered) and is delivered to every contact the
//! recipient registered, body and Content-Type byte for byte. One final answer upstream: 200 only
//! when a recipient UA answered 2xx. A recipient no contact of whom took it gets the message
//! stored for later ([`super::deferred`], 202).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::bindings::Binding;
use super::deferred::Deferred;
use super::registrar::Registrar;
use crate::decision::{DecideRequest, DecisionService};
use crate::identity::Xui;
use crate::policy::ImAction;
use crate::sip::auth::{SipAuthenticator, SipIdentity};
use crate::sip::client::{Client, Outcome};
use crate::sip::endpoint::{Incoming, Reply, RequestHandler};
use crate::sip::header::UriTarget;
use crate::sip::message::{Headers, Message, Method, StartLine};
use crate::storage::now_ms;

/// A recipient UA has this long to answer (the upstream transaction is answered within the
/// endpoint's deadline; Timer F and storing follow with store-and-forward).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

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
];

/// What the pager needs.
pub struct PagerParts {
    pub auth: SipAuthenticator,
    pub registrar: Arc<Registrar>,
    pub decisions: Arc<DecisionService>,
    pub client: Arc<Client>,
    pub default_domain: Option<String>,
    /// Larger bodies get 413 (RFC 3428 §5: pager mode is for short messages).
    pub max_pager_bytes: usize,
    /// Where messages for offline recipients wait (none: 480).
    pub deferred: Option<Arc<Deferred>>,
}

/// The MESSAGE handler; install it on the endpoint for `MESSAGE`.
pub struct Pager(PagerParts);

impl Pager {
    pub fn new(parts: PagerParts) -> Pager {
        Pager(parts)
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
        if msg.body.len() > p.max_pager_bytes {
            return Reply::new(413, "Message Too Large: send it in a session");
        }
        let StartLine::Request { uri, .. } = &msg.start else {
            return Reply::new(400, "Not a request");
        };
        let Ok(recipient) = Xui::parse(uri, p.default_domain.as_deref()) else {
            return Reply::new(404, "Not Found: no such user");
        };
        let recipient = recipient.as_str().to_string();
        let request = DecideRequest {
            recipient: recipient.clone(),
            sender: Some(sender.clone()),
            media: Some("pager".into()),
            anonymous: false,
        };
        let action = match p
            .decisions
            .decide_async(&request, (now / 1000) as i64)
            .await
        {
            Ok(decision) => decision.action,
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot decide on a MESSAGE");
                return Reply::new(500, "Policy unavailable");
            }
        };
        match action {
            ImAction::Block => return Reply::new(403, "Forbidden"),
            // IM-26: accepted as if delivered, and dropped (no IMDN).
            ImAction::PoliteBlock => return Reply::new(202, "Accepted"),
            ImAction::Allow => {}
        }
        let bindings = p.registrar.bindings(&recipient);
        // RFC 3428 §7: fork to every contact; the first 2xx is the answer.
        let request = |contact: &str| delivered(&msg.headers, &msg.body, contact, &sender);
        match fork(&p.client, &bindings, request).await {
            Delivery::Delivered => Reply::new(200, "OK"),
            Delivery::Refused(code) => Reply::new(code, "Refused by the recipient"),
            Delivery::Unreachable => self.offline(msg, &sender, &recipient, now).await,
        }
    }

    /// No contact took it: stored for later delivery (202), or 480 without a store and for
    /// an isComposing indication (RFC 3994 §6: relayed, never stored; stale once late).
    async fn offline(&self, msg: &Message, sender: &str, recipient: &str, now: u64) -> Reply {
        let composing = msg.headers.get("Content-Type").is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(IS_COMPOSING))
        });
        let (Some(deferred), false) = (&self.0.deferred, composing) else {
            return Reply::new(480, "Temporarily Unavailable");
        };
        match deferred.store(msg, sender, recipient, now).await {
            Ok(_) => Reply::new(202, "Accepted: stored for delivery"),
            Err(e) => {
                tracing::warn!(target: "xcapd::im", error = %e, "cannot store a deferred MESSAGE");
                let mut r = Reply::new(503, "Service Unavailable");
                r.headers.push("Retry-After", "5");
                r
            }
        }
    }
}

/// How a delivery to a recipient's contacts went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// A UA answered 2xx.
    Delivered,
    /// No contact, or each timed out or answered 408, 480 or 503: worth keeping for later.
    Unreachable,
    /// A UA answered this final refusal (e.g. 486, 603, 415): not stored.
    Refused(u16),
}

/// Sends the request `make` builds for each binding's contact, all at once; delivered as soon
/// as one UA answered 2xx (the others run on).
pub(super) async fn fork(
    client: &Arc<Client>,
    bindings: &[Binding],
    make: impl Fn(&str) -> Message,
) -> Delivery {
    let mut forks = tokio::task::JoinSet::new();
    for b in bindings {
        let Some(target) = UriTarget::parse(&b.uri) else {
            continue;
        };
        let request = make(&b.uri);
        let client = Arc::clone(client);
        forks.spawn(async move {
            let sent = client.request_to(request, &target);
            match tokio::time::timeout(DELIVERY_TIMEOUT, sent).await {
                Ok(Some(Outcome::Final(r))) => r.status().unwrap_or(500),
                _ => 408,
            }
        });
    }
    let mut refused = None;
    while let Some(done) = forks.join_next().await {
        match done.unwrap_or(500) {
            200..=299 => {
                forks.detach_all();
                return Delivery::Delivered;
            }
            408 | 480 | 503 => {}
            code => refused = refused.or(Some(code)),
        }
    }
    refused.map_or(Delivery::Unreachable, Delivery::Refused)
}

/// The MESSAGE as delivered to `contact`: the end-to-end headers of `original` and the body
/// unchanged, the sender asserted (RFC 3325) for the recipient's UA.
pub(super) fn delivered(original: &Headers, body: &[u8], contact: &str, sender: &str) -> Message {
    let mut headers = Headers::new();
    headers.push("Max-Forwards", "70");
    for name in END_TO_END {
        for value in original.get_all(name) {
            headers.push(name, value);
        }
    }
    headers.push("P-Asserted-Identity", format!("<{sender}>"));
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

    fn handle(&self, request: Incoming) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
        Box::pin(self.message(request))
    }
}
