//! Where the IM Server's requests go (issue #14 scope 1; RFC 3428 §6–7, IM-07, IM-14a,
//! IM-31): one code path for both deployments. Standalone, a message forks to every contact
//! the recipient registered here, and the first 2xx is the answer. Behind a SIP/IP core
//! (`im.outbound_proxy`), registrations arrive third-party from the core, and a message for a
//! registered user goes back to the core addressed to the user's address of record; the core
//! finds the contacts. The IM Server's own notices (IMDN) take the same way and are never
//! stored: one that cannot be delivered is dropped (no loops, IM-15).

use std::sync::Arc;
use std::time::Duration;

use super::bindings::Binding;
use super::imdn::{notice, Disposition, Original};
use super::registrar::Registrar;
use crate::sip::client::{Client, Outcome};
use crate::sip::header::UriTarget;
use crate::sip::message::{Headers, Message, Method, StartLine};
use crate::storage::now_ms;
use crate::xdms::generated::rfc3339;

/// A safety bound on one attempt: the client transaction ends by Timer F (64·T1, 32 s with
/// the default T1) before it.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(40);

/// How a delivery to a recipient went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A UA answered 2xx.
    Delivered,
    /// No contact, or each timed out or answered 408, 480 or 503: worth keeping for later.
    Unreachable,
    /// A UA answered this final refusal (e.g. 486, 603, 415): not stored.
    Refused(u16),
}

/// The routing of the IM Server's outgoing requests.
pub struct Router {
    client: Arc<Client>,
    registrar: Arc<Registrar>,
    outbound_proxy: Option<UriTarget>,
    /// The IM Server's own URI (From of its notices).
    server_uri: String,
}

impl Router {
    pub fn new(
        client: Arc<Client>,
        registrar: Arc<Registrar>,
        outbound_proxy: Option<UriTarget>,
        server_uri: String,
    ) -> Router {
        Router {
            client,
            registrar,
            outbound_proxy,
            server_uri,
        }
    }

    /// Whether `aor` has a registration (here, or third-party from the core).
    pub async fn registered(&self, aor: &str) -> bool {
        !self.registrar.bindings(aor).await.is_empty()
    }

    /// Delivers the request `make(request_uri)` builds to `aor`: to each registered contact,
    /// or once through the outbound proxy to the address of record. `attempt`: how many
    /// attempts to deliver this message ended before (the transactions' identity).
    pub async fn deliver(
        &self,
        aor: &str,
        attempt: u32,
        make: impl Fn(&str) -> Message,
    ) -> Delivery {
        let bindings = self.registrar.bindings(aor).await;
        if bindings.is_empty() {
            return Delivery::Unreachable;
        }
        match &self.outbound_proxy {
            Some(proxy) => {
                let request = make(aor);
                // Third-party registrations from the core: a new one, new transactions.
                let registered: Vec<String> = bindings
                    .iter()
                    .map(|b| format!("{} {}", b.call_id, b.cseq))
                    .collect();
                let branch = delivery_branch(&request, aor, &registered.join(","), attempt);
                match send(&self.client, request, proxy, branch).await {
                    200..=299 => Delivery::Delivered,
                    408 | 480 | 503 => Delivery::Unreachable,
                    code => Delivery::Refused(code),
                }
            }
            None => fork(&self.client, &bindings, attempt, make).await,
        }
    }

    /// Sends the IM Server's `disposition` notice about `original` to its sender when asked
    /// for (RFC 5438 §6.3), in the background.
    pub fn notify(self: &Arc<Self>, original: &Original, disposition: Disposition) {
        if !disposition.requested(original.requested) {
            return;
        }
        let now = rfc3339(now_ms());
        let body = notice(original, disposition, &self.server_uri, &random_hex(), &now);
        let me = Arc::clone(self);
        let to = original.sender.clone();
        tokio::spawn(async move {
            let call_id = format!("{}@xcapd", random_hex());
            let tag = random_hex();
            let make = |uri: &str| {
                let mut headers = Headers::new();
                headers.push("Max-Forwards", "70");
                headers.push("From", format!("<{}>;tag={tag}", me.server_uri));
                headers.push("To", format!("<{to}>"));
                headers.push("Call-ID", call_id.as_str());
                headers.push("CSeq", "1 MESSAGE");
                headers.push("Content-Type", "message/cpim");
                headers.push("P-Asserted-Identity", format!("<{}>", me.server_uri));
                Message {
                    start: StartLine::Request {
                        method: Method::Message,
                        uri: uri.to_string(),
                    },
                    headers,
                    body: body.clone(),
                }
            };
            let outcome = me.deliver(&to, 0, make).await;
            tracing::debug!(target: "xcapd::im", ?disposition, ?outcome, %to, "IMDN sent");
        });
    }
}

/// One request to `target` as the transaction `branch`: its final status (408 when none came).
async fn send(client: &Client, request: Message, target: &UriTarget, branch: String) -> u16 {
    let sent = client.request_to_as(request, target, Some(branch));
    match tokio::time::timeout(DELIVERY_TIMEOUT, sent).await {
        Ok(Some(Outcome::Final(r))) => r.status().unwrap_or(500),
        _ => 408,
    }
}

/// Sends the request `make` builds for each binding's contact, all at once; delivered as soon
/// as one UA answered 2xx (the others run on).
async fn fork(
    client: &Arc<Client>,
    bindings: &[Binding],
    attempt: u32,
    make: impl Fn(&str) -> Message,
) -> Delivery {
    let mut forks = tokio::task::JoinSet::new();
    for b in bindings {
        let Some(target) = UriTarget::parse(&b.uri) else {
            continue;
        };
        let request = make(&b.uri);
        let registration = format!("{} {}", b.call_id, b.cseq);
        let branch = delivery_branch(&request, &b.uri, &registration, attempt);
        let client = Arc::clone(client);
        forks.spawn(async move { send(&client, request, &target, branch).await });
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

/// The Via branch of attempt number `attempt` to deliver `request` (its From, Call-ID and
/// CSeq: the message) to `contact` as bound by `registration` (the REGISTER's Call-ID and
/// CSeq). An attempt a crash cut short is made again by the next run under the same branch,
/// so a UA that took it and still holds the transaction (RFC 3261 §17.2.3; 32 s over UDP)
/// answers again instead of showing the message twice; an attempt that ended (no answer,
/// 408/480/503) is followed by a new transaction, as is a new registration.
fn delivery_branch(request: &Message, contact: &str, registration: &str, attempt: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let attempt = attempt.to_string();
    for part in [
        request.headers.get("From").unwrap_or(""),
        request.headers.get("Call-ID").unwrap_or(""),
        request.headers.get("CSeq").unwrap_or(""),
        contact,
        registration,
        &attempt,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("z9hG4bK{hex}")
}

/// 64 random bits in hex (tags, Call-IDs, IMDN Message-IDs: IM-18 asks for at least 64).
pub(super) fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        bytes = (NEXT.fetch_add(1, Ordering::Relaxed) ^ now_ms()).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::delivery_branch;
    use crate::sip::message::{Headers, Message, Method, StartLine};

    fn message(call_id: &str, cseq: &str) -> Message {
        let mut headers = Headers::new();
        headers.push("From", "<sip:alice@example.com>;tag=a1");
        headers.push("Call-ID", call_id);
        headers.push("CSeq", cseq);
        Message {
            start: StartLine::Request {
                method: Method::Message,
                uri: "sip:bob@192.0.2.1".into(),
            },
            headers,
            body: b"hi".to_vec(),
        }
    }

    /// IM-16 and RFC 3261 §17.2.3: an attempt made again (by the next run after a crash) to
    /// the same binding is the same transaction; a later attempt, another message or another
    /// binding is a new one.
    #[test]
    fn one_branch_per_message_and_binding_im16() {
        let m = message("c1@ua", "7 MESSAGE");
        let bob = "sip:bob@192.0.2.1";
        let first = delivery_branch(&m, bob, "r1 3", 0);
        assert!(first.starts_with("z9hG4bK") && first.len() == 7 + 24);
        assert_eq!(delivery_branch(&m, bob, "r1 3", 0), first);
        for other in [
            delivery_branch(&m, "sip:bob@192.0.2.2", "r1 3", 0),
            delivery_branch(&m, bob, "r1 4", 0),
            delivery_branch(&m, bob, "r1 3", 1),
            delivery_branch(&message("c2@ua", "7 MESSAGE"), bob, "r1 3", 0),
            delivery_branch(&message("c1@ua", "8 MESSAGE"), bob, "r1 3", 0),
        ] {
            assert_ne!(other, first);
        }
    }
}
