//! The fields of a request its responses echo, and the responses built from them (RFC 3261
//! §8.1.1, §8.2.6, §18.2.1, §18.2.2; RFC 3581 §4): which mandatory fields a request lacks (400
//! naming it), where a response goes, and its bytes. Pure.

use std::net::SocketAddr;

use super::endpoint::Transport;
use super::header::{delta_seconds, CSeq, NameAddr, Via};
use super::message::{Headers, Message, StartLine};

/// The fields every request must carry to be answered at all (§8.2.6.1: a response copies
/// them); a request missing one of the others gets a 400 naming it.
#[derive(Debug, Clone)]
pub(super) struct Answerable {
    pub via: Vec<String>,
    pub top_via: Via,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: String,
}

/// How far a request's mandatory fields (§8.1.1) hold.
pub(super) enum Fields {
    Valid(Answerable),
    /// Answerable with 400 and this reason.
    Invalid(Answerable, &'static str),
    /// Not even a usable Via: dropped.
    Unanswerable,
}

/// Checks the mandatory fields (§8.1.1).
pub(super) fn required(msg: &Message) -> Fields {
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

/// Where a response goes (RFC 3261 §18.2.2, RFC 3581 §4): over TCP back on the connection;
/// over UDP to the source address when `rport` was asked for, else to the source IP and the
/// port in Via (5060 by default).
pub(super) fn reply_to(via: &Via, source: SocketAddr, transport: Transport) -> SocketAddr {
    if transport == Transport::Tcp || via.params.has("rport") {
        return source;
    }
    SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
}

/// A response to the request whose fields are `a` (§8.2.6): the Via list with `received` and
/// `rport` on the top value (§18.2.1, RFC 3581 §4), From, To (tagged when it was not), Call-ID,
/// CSeq.
#[allow(clippy::too_many_arguments)] // the parts of one response
pub(super) fn response(
    a: &Answerable,
    source: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
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
            let tag = to_tag.map_or_else(|| local_tag(a), str::to_string);
            to.params.set("tag", Some(tag));
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
