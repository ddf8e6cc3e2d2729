//! The SIP user agent server of xcapd (RFC 3261 §8.2, §17.2, §18.2; RFC 3581; RFC 6665 §4.2):
//! request validation, server transactions, and the answers of this endpoint: OPTIONS (200
//! with what we accept), SUBSCRIBE for a package a [`RequestHandler`] serves handed to it
//! (its answer comes later, [`Endpoint::finish`]), 489 for other packages, 405 for methods we
//! know but do not serve, 501 for the rest, 400 with a reason for malformed requests, 416 /
//! 420 for URI schemes and extensions we do not handle.
//! No sockets: the transport hands in bytes with their source and sends what comes back.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

use super::header::{Event, NameAddr};
use super::message::{parse, Headers, Limits, Message, Method, ParseError, StartLine};
use super::response::{reply_to, required, response, Answerable, Fields};
use super::transaction::{ServerState, ServerTransaction};

/// One sweep in this many visits every transaction (the others only the expired ones).
const FULL_SWEEP_EVERY: u64 = 64;

/// The methods this endpoint always answers (RFC 3261 §20.5 `Allow`); services add theirs.
pub const ALLOW: &str = "OPTIONS, SUBSCRIBE";

/// A service behind the endpoint (the xcap-diff notifier): it answers the requests it serves,
/// asynchronously (authentication and storage are I/O).
pub trait RequestHandler: Send + Sync + 'static {
    /// The event packages it serves with SUBSCRIBE (RFC 6665 §7.2: `Allow-Events`).
    fn event_packages(&self) -> &[&'static str];
    /// The option tags it supports when a request requires them (RFC 3261 §8.2.2.3), e.g.
    /// `recipient-list-message` (RFC 5365).
    fn extensions(&self) -> &[&'static str] {
        &[]
    }
    /// The final answer to `request` (a SUBSCRIBE for one of its packages).
    fn handle(&self, request: Incoming) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>>;
}

/// A request handed to a [`RequestHandler`].
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message: Message,
    pub source: SocketAddr,
    pub transport: Transport,
}

/// A handler's final answer.
#[derive(Debug, Default)]
pub struct Reply {
    pub code: u16,
    pub reason: String,
    /// Added after the headers copied from the request.
    pub headers: Headers,
    /// The To tag of a dialog this answer creates (RFC 3261 §12.1.1); otherwise one derived
    /// from the request.
    pub to_tag: Option<String>,
    /// Told once the answer was handed to the transport (a NOTIFY must follow the 2xx).
    pub sent: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Reply {
    pub fn new(code: u16, reason: impl Into<String>) -> Reply {
        Reply {
            code,
            reason: reason.into(),
            ..Reply::default()
        }
    }

    /// 401 with these `WWW-Authenticate` challenges (RFC 3261 §22.2).
    pub fn unauthorized(challenges: Vec<String>) -> Reply {
        let mut r = Reply::new(401, "Unauthorized");
        for c in challenges {
            r.headers.push("WWW-Authenticate", c);
        }
        r
    }
}

/// What the endpoint made of a received message.
pub enum Handled {
    /// Send this now.
    Reply(Outgoing),
    /// Hand [`Deferred::incoming`] to the handler and give its answer to [`Endpoint::finish`].
    Deferred(Box<Deferred>),
    /// Nothing to send (dropped, absorbed retransmission, ACK, response).
    Nothing,
}

impl Handled {
    /// The answer to send now, if any (no handler: nothing is ever deferred).
    pub fn reply(self) -> Option<Outgoing> {
        match self {
            Handled::Reply(out) => Some(out),
            _ => None,
        }
    }
}

/// A request whose server transaction waits for the handler's answer (RFC 3261 §17.2.1: a
/// retransmission meanwhile is absorbed).
pub struct Deferred {
    pub incoming: Incoming,
    key: TxKey,
    answerable: Answerable,
    destination: SocketAddr,
}

/// Transport a message came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// Settings of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub limits: Limits,
    /// `Server` header value.
    pub server: String,
    /// Server transactions kept at most (retransmission state): the oldest completed ones
    /// make room; beyond it (all still waiting for their answer) new requests get 503.
    pub max_transactions: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            limits: Limits::default(),
            server: format!("xcapd/{}", env!("CARGO_PKG_VERSION")),
            max_transactions: 100_000,
        }
    }
}

/// What to send in answer to a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where a UDP response goes (RFC 3261 §18.2.2, RFC 3581); TCP answers on the connection.
    pub destination: SocketAddr,
    pub bytes: Vec<u8>,
}

/// RFC 3261 §17.2.3: branch, sent-by and method identify a server transaction; requests
/// without the magic cookie (RFC 2543 peers) fall back to their dialog and CSeq.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TxKey {
    Branch {
        branch: String,
        sent_by: String,
        method: String,
    },
    Legacy {
        call_id: String,
        cseq: String,
        from_tag: String,
        sent_by: String,
    },
}

/// The endpoint: one per process, shared by the UDP and TCP transports.
pub struct Endpoint {
    config: EndpointConfig,
    transactions: Mutex<HashMap<TxKey, ServerTransaction>>,
    /// Transactions that sent their final answer, oldest first (locked after
    /// `transactions`): when the table is full the oldest of them make room, as they only
    /// absorb late retransmissions (§17.2.2 Timer J), rather than new requests getting 503.
    completed: Mutex<std::collections::VecDeque<TxKey>>,
    /// Sweeps done (every [`FULL_SWEEP_EVERY`]th visits the whole table).
    sweeps: std::sync::atomic::AtomicU64,
    /// The services by method (the notifier for SUBSCRIBE, the registrar for REGISTER…), set
    /// once they are built (they send through the transports this endpoint feeds).
    handlers: OnceLock<Vec<(Method, Arc<dyn RequestHandler>)>>,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            config,
            transactions: Mutex::new(HashMap::new()),
            completed: Mutex::new(std::collections::VecDeque::new()),
            sweeps: std::sync::atomic::AtomicU64::new(0),
            handlers: OnceLock::new(),
        }
    }

    /// Installs the services by the method they answer (once; later calls are ignored).
    pub fn set_handlers(&self, handlers: Vec<(Method, Arc<dyn RequestHandler>)>) {
        let _ = self.handlers.set(handlers);
    }

    /// The service a deferred request goes to.
    pub fn handler_for(&self, method: &Method) -> Option<Arc<dyn RequestHandler>> {
        self.handlers
            .get()?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, h)| Arc::clone(h))
    }

    /// `Allow`: ours and the installed services' methods.
    fn allow(&self) -> String {
        let mut allow = ALLOW.to_string();
        let others = self.handlers.get().into_iter().flatten();
        for (m, _) in others.filter(|(m, _)| *m != Method::Subscribe) {
            allow.push_str(", ");
            allow.push_str(m.as_str());
        }
        allow
    }

    /// Handles one received message (a datagram or a framed stream message).
    pub fn on_message(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Handled {
        match parse(bytes, &self.config.limits) {
            Ok(msg) => self.on_parsed(msg, source, transport, now),
            // Not even a message whose Via we can read: dropped (§18.3 says discard).
            Err(ParseError::Empty) => Handled::Nothing,
            Err(e) => self
                .reject(bytes, &e, source)
                .map_or(Handled::Nothing, Handled::Reply),
        }
    }

    /// Handles one parsed message.
    pub fn on_parsed(
        &self,
        msg: Message,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Handled {
        let StartLine::Request { method, uri } = &msg.start else {
            // Responses are the client's (§18.1.2), never the server's.
            return Handled::Nothing;
        };
        if *method == Method::Ack {
            return Handled::Nothing; // never answered (§17.1.1.3); no INVITE transactions here
        }
        let answerable = match required(&msg) {
            Fields::Valid(a) => a,
            Fields::Unanswerable => return Handled::Nothing,
            Fields::Invalid(partial, why) => {
                let bytes = response(
                    &partial,
                    source,
                    400,
                    why,
                    None,
                    &self.config.server,
                    &Headers::new(),
                );
                return Handled::Reply(Outgoing {
                    destination: reply_to(&partial.top_via, source, transport),
                    bytes,
                });
            }
        };
        let key = tx_key(&answerable, method);
        let destination = reply_to(&answerable.top_via, source, transport);
        let mut txs = self.transactions.lock();
        if let Some(tx) = txs.get(&key) {
            return tx.on_retransmission().map_or(Handled::Nothing, |b| {
                Handled::Reply(Outgoing {
                    destination,
                    bytes: b.to_vec(),
                })
            });
        }
        if txs.len() >= self.config.max_transactions {
            let mut order = self.completed.lock();
            while txs.len() >= self.config.max_transactions {
                let Some(oldest) = order.pop_front() else {
                    break;
                };
                if txs.get_mut(&oldest).is_some_and(|t| {
                    matches!(
                        t.poll(now),
                        ServerState::Completed | ServerState::Terminated
                    )
                }) {
                    txs.remove(&oldest);
                }
            }
        }
        if txs.len() >= self.config.max_transactions {
            // Every one still waits for its answer: full until some finish.
            let mut extra = Headers::new();
            extra.push("Retry-After", "5");
            let bytes = response(
                &answerable,
                source,
                503,
                "Service Unavailable",
                None,
                &self.config.server,
                &extra,
            );
            return Handled::Reply(Outgoing { destination, bytes });
        }
        let (code, reason, extra) = match self.answer(&msg, method, uri) {
            Answer::Now(code, reason, extra) => (code, reason, extra),
            Answer::Handler => {
                // The transaction exists from now on, so retransmissions are absorbed.
                txs.insert(key.clone(), ServerTransaction::new(transport.reliable()));
                return Handled::Deferred(Box::new(Deferred {
                    incoming: Incoming {
                        message: msg,
                        source,
                        transport,
                    },
                    key,
                    answerable,
                    destination,
                }));
            }
        };
        let bytes = response(
            &answerable,
            source,
            code,
            reason,
            None,
            &self.config.server,
            &extra,
        );
        let mut tx = ServerTransaction::new(transport.reliable());
        let sent = tx.on_response(code, bytes, now).map(<[u8]>::to_vec);
        if tx.poll(now) != ServerState::Terminated {
            self.completed.lock().push_back(key.clone());
            txs.insert(key, tx);
        }
        sent.map_or(Handled::Nothing, |bytes| {
            Handled::Reply(Outgoing { destination, bytes })
        })
    }

    /// The handler's answer to a deferred request: the bytes to send (also kept by the
    /// transaction for retransmissions of the request).
    pub fn finish(&self, deferred: &Deferred, reply: &Reply, now: Instant) -> Option<Outgoing> {
        let mut headers = Headers::new();
        if (200..300).contains(&reply.code) {
            // §12.1.1: a 2xx that creates a dialog carries the request's Record-Route.
            for rr in deferred.incoming.message.headers.values("Record-Route") {
                headers.push("Record-Route", rr);
            }
        }
        for (n, v) in reply.headers.iter() {
            headers.push(n, v);
        }
        self.allow_events(&mut headers);
        let bytes = response(
            &deferred.answerable,
            deferred.incoming.source,
            reply.code,
            &reply.reason,
            reply.to_tag.as_deref(),
            &self.config.server,
            &headers,
        );
        let mut txs = self.transactions.lock();
        let mut tx = txs
            .remove(&deferred.key)
            .unwrap_or_else(|| ServerTransaction::new(deferred.incoming.transport.reliable()));
        let sent = tx.on_response(reply.code, bytes, now).map(<[u8]>::to_vec);
        if tx.poll(now) != ServerState::Terminated {
            self.completed.lock().push_back(deferred.key.clone());
            txs.insert(deferred.key.clone(), tx);
        }
        sent.map(|bytes| Outgoing {
            destination: deferred.destination,
            bytes,
        })
    }

    /// RFC 6665 §7.2.2 (XE-01): the packages served, on answers to SUBSCRIBE and OPTIONS.
    fn allow_events(&self, headers: &mut Headers) {
        if let Some(h) = self.handler_for(&Method::Subscribe) {
            let packages = h.event_packages();
            if !packages.is_empty() {
                headers.push("Allow-Events", packages.join(", "));
            }
        }
    }

    /// Forgets transactions whose Timer J fired; called periodically by the transport.
    pub fn sweep(&self, now: Instant) {
        let mut txs = self.transactions.lock();
        let mut order = self.completed.lock();
        // Completed transactions end in the order they completed (one Timer J per
        // transport): only the expired front is visited, so a sweep costs what it removes
        // and does not stall the receive loop under a large table.
        while let Some(key) = order.front() {
            let ended = txs
                .get_mut(key)
                .map(|tx| tx.poll(now) == ServerState::Terminated);
            match ended {
                Some(false) => break,
                Some(true) => {
                    txs.remove(key);
                }
                None => {}
            }
            order.pop_front();
        }
        // Now and then a full pass, for anything the order does not cover.
        let sweeps = self
            .sweeps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if sweeps.is_multiple_of(FULL_SWEEP_EVERY) {
            txs.retain(|_, tx| tx.poll(now) != ServerState::Terminated);
            order.retain(|k| txs.contains_key(k));
        }
        super::release_spare(&mut txs);
        if order.capacity() > 1024 && order.len() < order.capacity() / 8 {
            let keep = order.len() * 2;
            order.shrink_to(keep);
        }
    }

    pub fn transactions(&self) -> usize {
        self.transactions.lock().len()
    }

    /// The final answer to a valid request, or the handler's turn.
    fn answer(&self, msg: &Message, method: &Method, uri: &str) -> Answer {
        let mut extra = Headers::new();
        // §8.2.1 first: the method.
        let served = method != &Method::Subscribe && self.handler_for(method).is_some();
        match method {
            Method::Options | Method::Subscribe => {}
            _ if served => {}
            // §9.2: no transaction of ours can be cancelled (every request is answered at once).
            Method::Cancel => return Answer::Now(481, "Call/Transaction Does Not Exist", extra),
            Method::Other(_) => {
                extra.push("Allow", self.allow());
                return Answer::Now(501, "Not Implemented", extra);
            }
            // Issue #14 scope 7: session-mode IM (RFC 4975 MSRP) is not offered yet; a client
            // that tries it hears why and falls back to pager mode.
            Method::Invite if self.handler_for(&Method::Message).is_some() => {
                extra.push("Allow", self.allow());
                return Answer::Now(
                    488,
                    "Not Acceptable Here: no session-mode messaging, use MESSAGE",
                    extra,
                );
            }
            _ => {
                extra.push("Allow", self.allow());
                return Answer::Now(405, "Method Not Allowed", extra);
            }
        }
        // §8.2.2.1: the Request-URI scheme.
        let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
        if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
            return Answer::Now(416, "Unsupported URI Scheme", extra);
        }
        // §8.2.2.3: only the extensions the serving handler supports.
        let handler = self.handler_for(method);
        let supported = handler.as_ref().map_or(&[][..], |h| h.extensions());
        let unsupported: Vec<&str> = msg
            .headers
            .values("Require")
            .into_iter()
            .filter(|tag| !supported.iter().any(|s| s.eq_ignore_ascii_case(tag)))
            .collect();
        if !unsupported.is_empty() {
            extra.push("Unsupported", unsupported.join(", "));
            return Answer::Now(420, "Bad Extension", extra);
        }
        if served {
            return Answer::Handler; // the service checks the rest (RFC 3261 §10.3 for REGISTER)
        }
        self.allow_events(&mut extra);
        if *method == Method::Options {
            extra.push("Allow", self.allow());
            extra.push("Accept", "application/resource-lists+xml");
            return Answer::Now(200, "OK", extra);
        }
        let events: Vec<&str> = msg.headers.get_all("Event").collect();
        match events.as_slice() {
            [one] => match Event::parse(one) {
                Some(event) => {
                    let served = self.handler_for(&Method::Subscribe).is_some_and(|h| {
                        h.event_packages()
                            .iter()
                            .any(|p| p.eq_ignore_ascii_case(&event.package))
                    });
                    if served {
                        Answer::Handler
                    } else {
                        // RFC 6665 §4.2.1.1 / XE-01.
                        Answer::Now(489, "Bad Event", extra)
                    }
                }
                None => Answer::Now(400, "Malformed Event header", extra),
            },
            [] => Answer::Now(400, "Missing Event header", extra),
            _ => Answer::Now(400, "Malformed Event header", extra),
        }
    }

    /// A message that does not parse (or, on a stream, cannot be framed): answered 400 (505
    /// for another SIP version) when its Via and the other fields a response copies can still
    /// be read line by line, else dropped. Responses are never answered.
    pub fn reject(&self, bytes: &[u8], e: &ParseError, source: SocketAddr) -> Option<Outgoing> {
        let text = String::from_utf8_lossy(
            &bytes[..bytes.len().min(self.config.limits.max_message_bytes)],
        );
        if text.starts_with("SIP/") {
            return None; // a response: never answered
        }
        let mut headers = Headers::new();
        for line in text.lines().skip(1).take(self.config.limits.max_headers) {
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
                    headers.push(name, value.trim());
                }
            }
        }
        let fake = Message {
            start: StartLine::Request {
                method: Method::Options,
                uri: "sip:x".into(),
            },
            headers,
            body: Vec::new(),
        };
        let (Fields::Valid(a) | Fields::Invalid(a, _)) = required(&fake) else {
            return None;
        };
        let (code, reason) = match e {
            ParseError::ContentLength => (400, "Bad Content-Length"),
            // §21.5.14 / §21.5.20.
            ParseError::TooLarge => (513, "Message Too Large"),
            ParseError::Version => (505, "Version Not Supported"),
            _ => (400, "Malformed Request"),
        };
        let destination = reply_to(&a.top_via, source, Transport::Udp);
        Some(Outgoing {
            destination,
            bytes: response(
                &a,
                source,
                code,
                reason,
                None,
                &self.config.server,
                &Headers::new(),
            ),
        })
    }
}

/// What [`Endpoint::answer`] decided.
enum Answer {
    Now(u16, &'static str, Headers),
    Handler,
}

fn tx_key(a: &Answerable, method: &Method) -> TxKey {
    let sent_by = format!("{}:{}", a.top_via.host, a.top_via.port.unwrap_or(5060));
    match a.top_via.branch() {
        Some(branch) => TxKey::Branch {
            branch: branch.to_string(),
            sent_by,
            method: method.as_str().to_string(),
        },
        None => TxKey::Legacy {
            call_id: a.call_id.clone(),
            cseq: a.cseq.clone(),
            from_tag: NameAddr::parse(&a.from)
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
            sent_by,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Parked;

    impl RequestHandler for Parked {
        fn event_packages(&self) -> &[&'static str] {
            &[]
        }

        fn handle(&self, _: Incoming) -> Pin<Box<dyn Future<Output = Reply> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    fn request(method: &str, branch: &str) -> Vec<u8> {
        format!(
            "{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: {branch}@x\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn status(h: &Handled) -> Option<String> {
        match h {
            Handled::Reply(o) => String::from_utf8_lossy(&o.bytes)
                .get(8..11)
                .map(str::to_string),
            _ => None,
        }
    }

    /// RFC 3261 §17.2.2 (Timer J) under a full table: completed transactions, which only absorb
    /// late retransmissions, make room for new requests, oldest first; only when every kept
    /// transaction still waits for its answer does a new request get 503.
    #[test]
    fn completed_transactions_make_room_before_503() {
        let e = Endpoint::new(EndpointConfig {
            max_transactions: 2,
            ..EndpointConfig::default()
        });
        e.set_handlers(vec![(
            Method::Message,
            Arc::new(Parked) as Arc<dyn RequestHandler>,
        )]);
        let (src, now) = ("127.0.0.1:5070".parse().unwrap(), Instant::now());
        for b in ["o1", "o2", "o3"] {
            let h = e.on_message(&request("OPTIONS", b), src, Transport::Udp, now);
            assert_eq!(status(&h).as_deref(), Some("200"), "{b}");
        }
        assert_eq!(e.transactions(), 2);
        // o3 is kept: its retransmission is absorbed (answered from the transaction).
        let again = e.on_message(&request("OPTIONS", "o3"), src, Transport::Udp, now);
        assert_eq!(status(&again).as_deref(), Some("200"));
        // Two requests waiting for their handler take the places of o2 and o3...
        for b in ["m1", "m2"] {
            let h = e.on_message(&request("MESSAGE", b), src, Transport::Udp, now);
            assert!(matches!(h, Handled::Deferred(_)), "{b}");
        }
        // ...and then nothing can make room.
        let full = e.on_message(&request("MESSAGE", "m3"), src, Transport::Udp, now);
        assert_eq!(status(&full).as_deref(), Some("503"));
    }

    /// §17.2.2: a completed UDP transaction ends with Timer J (64·T1); the sweep removes
    /// those, oldest first, and keeps the ones still waiting for their answer.
    #[test]
    fn sweep_ends_completed_transactions_after_timer_j() {
        let e = Endpoint::new(EndpointConfig::default());
        e.set_handlers(vec![(
            Method::Message,
            Arc::new(Parked) as Arc<dyn RequestHandler>,
        )]);
        let (src, now) = ("127.0.0.1:5070".parse().unwrap(), Instant::now());
        for b in ["o1", "o2"] {
            e.on_message(&request("OPTIONS", b), src, Transport::Udp, now);
        }
        let later = now + std::time::Duration::from_secs(10);
        e.on_message(&request("OPTIONS", "o3"), src, Transport::Udp, later);
        let h = e.on_message(&request("MESSAGE", "m1"), src, Transport::Udp, now);
        assert!(matches!(h, Handled::Deferred(_)));
        e.sweep(now + std::time::Duration::from_secs(5));
        e.sweep(now + std::time::Duration::from_secs(1)); // not a full pass either
        assert_eq!(e.transactions(), 4, "all within Timer J");
        e.sweep(now + std::time::Duration::from_secs(33));
        assert_eq!(
            e.transactions(),
            2,
            "o1 and o2 ended; o3 and the waiting m1 stay"
        );
        e.sweep(now + std::time::Duration::from_secs(43));
        assert_eq!(e.transactions(), 1, "m1 waits for its handler");
    }
}
