//! Pager-mode instant messages (RFC 3428; standards.md IM-01…IM-07, IM-24…IM-29; issue #14
//! scopes 2–3, first part): a MESSAGE from an authenticated sender to a user of the served
//! domains goes through the recipient's `im-rules` (the in-process decision service: block →
//! 403, polite-block → 202 and dropped, allow → delivered) and is delivered to every contact the
//! recipient registered, body and Content-Type byte for byte. One final answer upstream: 200 only
//! when a recipient UA answered 2xx. Offline recipients get 480 until store-and-forward lands.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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

/// Headers copied to the delivered request: the end-to-end ones a pager message carries.
const END_TO_END: &[&str] = &[
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
        if bindings.is_empty() {
            return Reply::new(480, "Temporarily Unavailable");
        }
        // RFC 3428 §7: fork to every contact; the first 2xx is the answer (the others run on).
        let mut forks = tokio::task::JoinSet::new();
        for b in &bindings {
            let Some(target) = UriTarget::parse(&b.uri) else {
                continue;
            };
            let request = delivered(msg, &b.uri, &sender);
            let client = Arc::clone(&p.client);
            forks.spawn(async move {
                let sent = client.request_to(request, &target);
                matches!(
                    tokio::time::timeout(DELIVERY_TIMEOUT, sent).await,
                    Ok(Some(Outcome::Final(ref r))) if r.status().is_some_and(|c| (200..300).contains(&c))
                )
            });
        }
        while let Some(done) = forks.join_next().await {
            if done.unwrap_or(false) {
                forks.detach_all();
                return Reply::new(200, "OK");
            }
        }
        Reply::new(480, "Temporarily Unavailable")
    }
}

/// The MESSAGE as delivered to `contact`: the end-to-end headers and the body unchanged, the
/// sender asserted (RFC 3325) for the recipient's UA.
fn delivered(msg: &Message, contact: &str, sender: &str) -> Message {
    let mut headers = Headers::new();
    headers.push("Max-Forwards", "70");
    for name in END_TO_END {
        for value in msg.headers.get_all(name) {
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
        body: msg.body.clone(),
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
