//! The SIP user agent server of xcapd (RFC 3261 §8.2, §17.2, §18.2; RFC 3581; RFC 6665 §4.2):
//! request validation, server transactions, and the answers of this endpoint: OPTIONS (200
//! with what we accept), SUBSCRIBE (489 for every event package until the xcap-diff notifier
//! serves `xcap-diff`), 405 for methods we know but do not serve, 501 for the rest, 400 with a
//! reason for malformed requests, 416 / 420 for URI schemes and extensions we do not handle.
//! No sockets: the transport hands in bytes with their source and sends what comes back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use parking_lot::Mutex;

use super::header::{delta_seconds, CSeq, Event, NameAddr, Via};
use super::message::{parse, Headers, Limits, Message, Method, ParseError, StartLine};
use super::transaction::{ServerState, ServerTransaction};

/// The methods this endpoint answers itself (RFC 3261 §20.5 `Allow`).
pub const ALLOW: &str = "OPTIONS, SUBSCRIBE";

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
    /// Server transactions kept at most (retransmission state); beyond it new requests get 503.
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
}

/// The fields every request must carry to be answered at all (§8.2.6.1: a response copies
/// them); a request missing one of the others gets a 400 naming it.
struct Answerable {
    via: Vec<String>,
    top_via: Via,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            config,
            transactions: Mutex::new(HashMap::new()),
        }
    }

    /// Handles one received message (a datagram or a framed stream message).
    pub fn on_message(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Option<Outgoing> {
        match parse(bytes, &self.config.limits) {
            Ok(msg) => self.on_parsed(&msg, source, transport, now),
            // Not even a message whose Via we can read: dropped (§18.3 says discard).
            Err(ParseError::Empty) => None,
            Err(e) => self.reject(bytes, &e, source),
        }
    }

    /// Handles one parsed message.
    pub fn on_parsed(
        &self,
        msg: &Message,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Option<Outgoing> {
        let StartLine::Request { method, uri } = &msg.start else {
            // No client transactions yet: stray responses are dropped (§18.1.2).
            return None;
        };
        if *method == Method::Ack {
            return None; // never answered (§17.1.1.3); no INVITE transactions here
        }
        let answerable = match required(msg) {
            Fields::Valid(a) => a,
            Fields::Unanswerable => return None,
            Fields::Invalid(partial, why) => {
                let bytes = response(
                    &partial,
                    source,
                    400,
                    why,
                    &self.config.server,
                    &Headers::new(),
                );
                return Some(Outgoing {
                    destination: reply_to(&partial.top_via, source, transport),
                    bytes,
                });
            }
        };
        let key = tx_key(&answerable, method);
        let destination = reply_to(&answerable.top_via, source, transport);
        let mut txs = self.transactions.lock();
        if let Some(tx) = txs.get(&key) {
            return tx.on_retransmission().map(|b| Outgoing {
                destination,
                bytes: b.to_vec(),
            });
        }
        if txs.len() >= self.config.max_transactions {
            // Full until the periodic sweep frees completed ones: no scan per request here.
            let mut extra = Headers::new();
            extra.push("Retry-After", "5");
            let bytes = response(
                &answerable,
                source,
                503,
                "Service Unavailable",
                &self.config.server,
                &extra,
            );
            return Some(Outgoing { destination, bytes });
        }
        let (code, reason, extra) = self.answer(msg, method, uri);
        let bytes = response(
            &answerable,
            source,
            code,
            reason,
            &self.config.server,
            &extra,
        );
        let mut tx = ServerTransaction::new(transport.reliable());
        let sent = tx.on_response(code, bytes, now).map(<[u8]>::to_vec);
        if tx.poll(now) != ServerState::Terminated {
            txs.insert(key, tx);
        }
        sent.map(|bytes| Outgoing { destination, bytes })
    }

    /// Forgets transactions whose Timer J fired; called periodically by the transport.
    pub fn sweep(&self, now: Instant) {
        self.transactions
            .lock()
            .retain(|_, tx| tx.poll(now) != ServerState::Terminated);
    }

    pub fn transactions(&self) -> usize {
        self.transactions.lock().len()
    }

    /// The final answer to a valid request (code, reason phrase, headers to add).
    fn answer(&self, msg: &Message, method: &Method, uri: &str) -> (u16, &'static str, Headers) {
        let mut extra = Headers::new();
        // §8.2.1 first: the method.
        match method {
            Method::Options | Method::Subscribe => {}
            // §9.2: no transaction of ours can be cancelled (every request is answered at once).
            Method::Cancel => return (481, "Call/Transaction Does Not Exist", extra),
            Method::Other(_) => {
                extra.push("Allow", ALLOW);
                return (501, "Not Implemented", extra);
            }
            _ => {
                extra.push("Allow", ALLOW);
                return (405, "Method Not Allowed", extra);
            }
        }
        // §8.2.2.1: the Request-URI scheme.
        let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
        if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
            return (416, "Unsupported URI Scheme", extra);
        }
        // §8.2.2.3: this endpoint supports no extension a client could require.
        let required: Vec<&str> = msg.headers.values("Require");
        if !required.is_empty() {
            extra.push("Unsupported", required.join(", "));
            return (420, "Bad Extension", extra);
        }
        if *method == Method::Options {
            extra.push("Allow", ALLOW);
            extra.push("Accept", "application/resource-lists+xml");
            return (200, "OK", extra);
        }
        let events: Vec<&str> = msg.headers.get_all("Event").collect();
        match events.as_slice() {
            // RFC 6665 §4.2.1.1 / XE-01: no package is served yet.
            [one] if Event::parse(one).is_some() => (489, "Bad Event", extra),
            [] => (400, "Missing Event header", extra),
            _ => (400, "Malformed Event header", extra),
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
                &self.config.server,
                &Headers::new(),
            ),
        })
    }
}

/// How far a request's mandatory fields (§8.1.1) hold.
enum Fields {
    Valid(Answerable),
    /// Answerable with 400 and this reason.
    Invalid(Answerable, &'static str),
    /// Not even a usable Via: dropped.
    Unanswerable,
}

/// Checks the mandatory fields (§8.1.1).
fn required(msg: &Message) -> Fields {
    let via: Vec<String> = msg
        .headers
        .values("Via")
        .iter()
        .map(|v| v.to_string())
        .collect();
    let Some(top_via) = via.first().and_then(|v| Via::parse(v)) else {
        return Fields::Unanswerable;
    };
    let mut a = Answerable {
        via,
        top_via,
        from: msg.headers.get("From").unwrap_or("").to_string(),
        to: msg.headers.get("To").unwrap_or("").to_string(),
        call_id: msg.headers.get("Call-ID").unwrap_or("").to_string(),
        cseq: msg.headers.get("CSeq").unwrap_or("").to_string(),
    };
    let problem = if NameAddr::parse(&a.from).is_none() {
        Some("Missing or malformed From header")
    } else if NameAddr::parse(&a.to).is_none() {
        Some("Missing or malformed To header")
    } else if a.call_id.is_empty() || a.call_id.contains(char::is_whitespace) {
        Some("Missing or malformed Call-ID header")
    } else {
        match (CSeq::parse(&a.cseq), msg.method()) {
            (Some(c), Some(m)) if c.method == *m => match msg.headers.get("Max-Forwards") {
                Some(v) if delta_seconds(v).is_none_or(|n| n > 255) => {
                    Some("Malformed Max-Forwards header")
                }
                _ => None,
            },
            (Some(_), _) => Some("CSeq method does not match the request"),
            (None, _) => Some("Missing or malformed CSeq header"),
        }
    };
    match problem {
        None => Fields::Valid(a),
        Some(why) => {
            // Whatever could not be read is echoed as received, or left out.
            if a.call_id.is_empty() {
                a.call_id = "-".into();
            }
            Fields::Invalid(a, why)
        }
    }
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

/// Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): over TCP back on the connection;
/// over UDP to the source address when `rport` was asked for, else to the source IP and the
/// port in Via (5060 by default).
fn reply_to(via: &Via, source: SocketAddr, transport: Transport) -> SocketAddr {
    if transport == Transport::Tcp || via.params.has("rport") {
        return source;
    }
    SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
}

/// A response to the request whose fields are `a` (§8.2.6): the Via list with `received` and
/// `rport` on the top value (§18.2.1, RFC 3581 §4), From, To (tagged when it was not), Call-ID,
/// CSeq.
fn response(
    a: &Answerable,
    source: SocketAddr,
    code: u16,
    reason: &str,
    server: &str,
    extra: &Headers,
) -> Vec<u8> {
    let mut headers = Headers::new();
    let mut top = a.top_via.clone();
    let rport = top.params.has("rport");
    if rport {
        top.params.set("rport", Some(source.port().to_string()));
    }
    let host = top.host.trim_matches(['[', ']']);
    if rport || host.parse::<std::net::IpAddr>().ok() != Some(source.ip()) {
        top.params.set("received", Some(source.ip().to_string()));
    }
    for (i, v) in a.via.iter().enumerate() {
        if i == 0 {
            headers.push("Via", top.to_value());
        } else {
            headers.push("Via", v.clone());
        }
    }
    headers.push("From", a.from.clone());
    let to = match NameAddr::parse(&a.to) {
        Some(mut to) if to.tag().is_none() && code > 100 => {
            to.params.set("tag", Some(local_tag(a)));
            to.to_value()
        }
        _ => a.to.clone(),
    };
    headers.push("To", to);
    headers.push("Call-ID", a.call_id.clone());
    headers.push("CSeq", a.cseq.clone());
    for (n, v) in extra.iter() {
        headers.push(n, v);
    }
    headers.push("Server", server);
    Message {
        start: StartLine::Response {
            code,
            reason: reason.to_string(),
        },
        headers,
        body: Vec::new(),
    }
    .to_bytes()
}

/// A To tag that is the same for every retransmission of one request (§8.2.6.2) without
/// keeping state: derived from the request's Call-ID, CSeq and branch.
fn local_tag(a: &Answerable) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(a.call_id.as_bytes());
    h.update(b"\0");
    h.update(a.cseq.as_bytes());
    h.update(b"\0");
    h.update(a.top_via.branch().unwrap_or("").as_bytes());
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
