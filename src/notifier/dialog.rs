//! The notifier's side of a subscription dialog (RFC 3261 §12.1.1, §12.2.1.1; RFC 6665
//! §4.2.1, §4.2.2; standards.md XE-01, XE-23): the dialog fields a SUBSCRIBE establishes, and
//! the NOTIFY requests sent in it. Pure.

use crate::sip::header::{NameAddr, UriTarget};
use crate::sip::message::{Headers, Message, Method, StartLine};
use crate::storage::subscriptions::DialogId;
use crate::xcap_diff::MIME_XCAP_DIFF;

/// The event package served (XE-01).
pub const PACKAGE: &str = "xcap-diff";

/// A subscription dialog as the notifier (UAS) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    /// The SUBSCRIBE's From URI: the NOTIFY's To.
    pub remote_uri: String,
    /// The SUBSCRIBE's To URI: the NOTIFY's From.
    pub local_uri: String,
    /// The subscriber's Contact URI: the NOTIFY's Request-URI (§12.1.1).
    pub remote_target: String,
    /// Record-Route values in the order received (§12.1.1: the UAS keeps them as they are).
    pub route_set: Vec<String>,
    /// The last CSeq number the notifier used (NOTIFYs count up from it).
    pub local_cseq: u32,
    /// The highest CSeq number of the subscriber's requests (§12.2.2: lower ones are stale).
    pub remote_cseq: u32,
    /// The Event header's `id` parameter, echoed in every NOTIFY (RFC 6665 §8.2.1).
    pub event_id: Option<String>,
    /// The TCP or TLS connection the subscriber (or its proxy) sent from: NOTIFYs go back on it
    /// while it is open (RFC 5923 / RFC 5626 flow reuse; NAT keeps the Contact unreachable).
    /// Not stored: after a restart NOTIFYs follow the Contact.
    pub flow: Option<std::net::SocketAddr>,
}

/// Why a SUBSCRIBE cannot set up a dialog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("Missing or malformed Contact header")]
    Contact,
    #[error("Malformed Record-Route header")]
    RecordRoute,
}

impl Dialog {
    /// The dialog a SUBSCRIBE sets up with the notifier's tag `local_tag` (§12.1.1).
    pub fn from_subscribe(request: &Message, local_tag: &str) -> Result<Dialog, DialogError> {
        let h = &request.headers;
        let from = h.get("From").and_then(NameAddr::parse);
        let to = h.get("To").and_then(NameAddr::parse);
        let (Some(from), Some(to)) = (from, to) else {
            return Err(DialogError::Contact); // the endpoint checked both already
        };
        let contact = Dialog::contact_of(request).ok_or(DialogError::Contact)?;
        let mut route_set = Vec::new();
        for value in h.values("Record-Route") {
            let hop = NameAddr::parse(value).ok_or(DialogError::RecordRoute)?;
            route_set.push(hop.to_value());
        }
        let event_id = h
            .get("Event")
            .and_then(crate::sip::header::Event::parse)
            .and_then(|e| e.params.get("id").flatten().map(str::to_string));
        let remote_cseq = h
            .get("CSeq")
            .and_then(crate::sip::header::CSeq::parse)
            .map_or(0, |c| c.seq);
        Ok(Dialog {
            id: DialogId {
                call_id: h.get("Call-ID").unwrap_or_default().to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: from.tag().unwrap_or_default().to_string(),
            },
            remote_uri: from.uri,
            local_uri: to.uri,
            remote_target: contact,
            route_set,
            local_cseq: 0,
            remote_cseq,
            event_id,
            flow: None,
        })
    }

    /// The Contact URI of a request in the dialog (a refresh is a target refresh, §12.2.2).
    pub fn contact_of(request: &Message) -> Option<String> {
        request
            .headers
            .values("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c))
            .filter(|c| UriTarget::parse(&c.uri).is_some())
            .map(|c| c.uri)
    }

    /// Where the next NOTIFY goes first: the first route when there is a route set (loose
    /// routing, §12.2.1.1 / §16.12), else the remote target.
    pub fn next_hop(&self) -> Option<UriTarget> {
        match self.route_set.first() {
            Some(route) => NameAddr::parse(route).and_then(|r| UriTarget::parse(&r.uri)),
            None => UriTarget::parse(&self.remote_target),
        }
    }
}

/// `Subscription-State` (RFC 6665 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active {
        expires: u32,
    },
    /// `timeout` (expired or unsubscribed, XE-23), `noresource`, `deactivated`, `rejected`.
    Terminated {
        reason: &'static str,
    },
}

impl State {
    fn value(self) -> String {
        match self {
            State::Active { expires } => format!("active;expires={expires}"),
            State::Terminated { reason } => format!("terminated;reason={reason}"),
        }
    }
}

/// The NOTIFY with CSeq `cseq` in `dialog` carrying `body` (an xcap-diff document); the
/// transport sets Via. `contact` is the notifier's own Contact URI.
pub fn notify(dialog: &Dialog, cseq: u32, state: State, contact: &str, body: Vec<u8>) -> Message {
    let mut h = Headers::new();
    for route in &dialog.route_set {
        h.push("Route", route.clone());
    }
    h.push("Max-Forwards", "70");
    h.push(
        "From",
        format!("<{}>;tag={}", dialog.local_uri, dialog.id.local_tag),
    );
    let to = if dialog.id.remote_tag.is_empty() {
        format!("<{}>", dialog.remote_uri)
    } else {
        format!("<{}>;tag={}", dialog.remote_uri, dialog.id.remote_tag)
    };
    h.push("To", to);
    h.push("Call-ID", dialog.id.call_id.clone());
    h.push("CSeq", format!("{cseq} NOTIFY"));
    h.push("Contact", format!("<{contact}>"));
    match &dialog.event_id {
        Some(id) => h.push("Event", format!("{PACKAGE};id={id}")),
        None => h.push("Event", PACKAGE),
    }
    h.push("Subscription-State", state.value());
    h.push("Allow-Events", PACKAGE);
    if !body.is_empty() {
        h.push("Content-Type", MIME_XCAP_DIFF);
    }
    Message {
        start: StartLine::Request {
            method: Method::Notify,
            uri: dialog.remote_target.clone(),
        },
        headers: h,
        body,
    }
}

/// RFC 6665 §4.2.2: answers to a NOTIFY after which the subscription is gone.
pub fn ends_subscription(code: u16) -> bool {
    matches!(code, 404 | 405 | 410 | 416 | 480..=485 | 489 | 501 | 604)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Limits};

    fn subscribe(extra: &str) -> Message {
        let text = format!(
            "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1\r\nFrom: \"A\" <sip:alice@example.com>;tag=abc\r\nTo: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 7 SUBSCRIBE\r\nEvent: xcap-diff\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes(), &Limits::default()).unwrap()
    }

    // RFC 3261 §12.1.1: the dialog from the SUBSCRIBE: Contact is the remote target,
    // Record-Route the route set in received order; NOTIFY goes to the first route.
    #[test]
    fn dialog_from_subscribe_and_notify() {
        let s = subscribe(
            "Contact: <sip:alice@10.0.0.1:5070;transport=udp>\r\nRecord-Route: <sip:10.0.0.9;lr>\r\nRecord-Route: <sip:10.0.0.8;lr>\r\n",
        );
        let d = Dialog::from_subscribe(&s, "xyz").unwrap();
        assert_eq!(d.remote_target, "sip:alice@10.0.0.1:5070;transport=udp");
        assert_eq!(d.route_set, ["<sip:10.0.0.9;lr>", "<sip:10.0.0.8;lr>"]);
        assert_eq!(d.remote_cseq, 7);
        assert_eq!(d.next_hop().unwrap().host, "10.0.0.9");
        let n = notify(
            &d,
            1,
            State::Active { expires: 3600 },
            "sip:127.0.0.1:5060",
            b"<x/>".to_vec(),
        );
        let h = &n.headers;
        assert_eq!(h.get("To"), Some("<sip:alice@example.com>;tag=abc"));
        assert_eq!(h.get("From"), Some("<sip:alice@example.com>;tag=xyz"));
        assert_eq!(h.get("CSeq"), Some("1 NOTIFY"));
        assert_eq!(h.get("Subscription-State"), Some("active;expires=3600"));
        assert_eq!(h.values("Route").len(), 2);
        assert_eq!(h.get("Content-Type"), Some(MIME_XCAP_DIFF));
        assert_eq!(h.get("Event"), Some("xcap-diff"));
        let mut with_id = d.clone();
        with_id.event_id = Some("7".into());
        let n = notify(
            &with_id,
            2,
            State::Active { expires: 1 },
            "sip:x",
            Vec::new(),
        );
        assert_eq!(
            n.headers.get("Event"),
            Some("xcap-diff;id=7"),
            "RFC 6665 §8.2.1"
        );
        // Without routes the Contact is the next hop.
        let d =
            Dialog::from_subscribe(&subscribe("Contact: <sip:a@10.0.0.1:5070>\r\n"), "t").unwrap();
        assert_eq!(d.next_hop().unwrap().port, Some(5070));
    }

    // RFC 6665 §4.1.1: a SUBSCRIBE without a usable Contact cannot set up a dialog.
    #[test]
    fn contact_required() {
        assert_eq!(
            Dialog::from_subscribe(&subscribe(""), "t"),
            Err(DialogError::Contact)
        );
        assert_eq!(
            Dialog::from_subscribe(&subscribe("Contact: <mailto:a@x>\r\n"), "t"),
            Err(DialogError::Contact)
        );
    }

    // RFC 6665 §4.2.2: which NOTIFY answers end the subscription.
    #[test]
    fn failure_codes() {
        for c in [404, 405, 410, 416, 480, 481, 485, 489, 501, 604] {
            assert!(ends_subscription(c), "{c}");
        }
        for c in [200, 202, 408, 500, 503] {
            assert!(!ends_subscription(c), "{c}");
        }
    }
}
