//! Disposition notifications the IM Server sends as an intermediary (RFC 5438 §7, §8.1, §9.1;
//! standards.md IM-15b, IM-19, IM-20, IM-22): `processing`/`stored` when it keeps a message
//! for an offline recipient, `delivery`/`failed` when a kept message expires or its recipient
//! finally refuses it. A notice is a `message/cpim` body wrapping `message/imdn+xml`, sent to
//! the original sender; never `delivered` (only the recipient's UA knows that, IM-17). Pure.

use super::cpim::{Cpim, Requested, IMDN_XML};
use crate::xml::attvalue::escape;

/// What a notice reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// processing-notification / stored (§7.2.1.2).
    Stored,
    /// delivery-notification / failed (§7.2.1.1).
    Failed,
}

impl Disposition {
    /// Whether the sender asked for this kind of notice (§6.3).
    pub fn requested(self, asked: Requested) -> bool {
        match self {
            Disposition::Stored => asked.processing,
            Disposition::Failed => asked.negative_delivery,
        }
    }

    fn element(self) -> (&'static str, &'static str) {
        match self {
            Disposition::Stored => ("processing-notification", "stored"),
            Disposition::Failed => ("delivery-notification", "failed"),
        }
    }
}

/// What a notice needs from the message it reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub message_id: String,
    pub datetime: String,
    /// Whom the notice goes to: the authenticated sender (IM-20 says the SIP From; the
    /// authenticated identity is that From once verified, and cannot be pointed elsewhere).
    pub sender: String,
    pub recipient: String,
    pub requested: Requested,
}

impl Original {
    /// The notice details of a `message/cpim` body that asks for notices: none for a body
    /// that is not CPIM, asks for nothing, has no Message-ID, or is a notification itself
    /// (never a notice about a notice, IM-20).
    pub fn of(body: &[u8], sender: &str, recipient: &str, received: &str) -> Option<Original> {
        let cpim = Cpim::parse(body).ok()?;
        let requested = cpim.requested();
        if !requested.any() || cpim.is_notification() {
            return None;
        }
        Some(Original {
            message_id: cpim.message_id()?.to_string(),
            datetime: cpim.datetime().unwrap_or(received).to_string(),
            sender: sender.to_string(),
            recipient: recipient.to_string(),
            requested,
        })
    }
}

/// The `message/cpim` body of a notice from `server` (the IM Server's URI) about `original`;
/// `message_id` is the notice's own id (at least 64 random bits, IM-18) and `now` its time.
pub fn notice(
    original: &Original,
    disposition: Disposition,
    server: &str,
    message_id: &str,
    now: &str,
) -> Vec<u8> {
    let (kind, status) = disposition.element();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\r\n<message-id>{}</message-id>\r\n<datetime>{}</datetime>\r\n<recipient-uri>{}</recipient-uri>\r\n<original-recipient-uri>{}</original-recipient-uri>\r\n<{kind}><status><{status}/></status></{kind}>\r\n</imdn>\r\n",
        escape(&original.message_id),
        escape(&original.datetime),
        escape(&original.recipient),
        escape(&original.recipient),
    );
    format!(
        "From: <{server}>\r\nTo: <{}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {message_id}\r\nDateTime: {now}\r\n\r\nContent-Type: {IMDN_XML}; charset=utf-8\r\nContent-Disposition: notification\r\nContent-Length: {}\r\n\r\n{xml}",
        original.sender,
        xml.len(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IM: &str = "From: <sip:alice@example.com>\r\nTo: <sip:bob@example.com>\r\nNS: i <urn:ietf:params:imdn>\r\ni.Message-ID: 34jk324j\r\nDateTime: 2026-12-07T10:00:00Z\r\ni.Disposition-Notification: negative-delivery, processing\r\n\r\nContent-Type: text/plain\r\n\r\nhi";

    /// IM-20: the notice is CPIM wrapping imdn+xml with the original's id and datetime, sent
    /// to the original sender; it reads back as a notification (so it never gets one).
    #[test]
    fn stored_notice_im15b_im20() {
        let o = Original::of(
            IM.as_bytes(),
            "sip:alice@example.com",
            "sip:bob@example.com",
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(o.sender, "sip:alice@example.com");
        assert!(Disposition::Stored.requested(o.requested));
        assert!(Disposition::Failed.requested(o.requested));
        let body = notice(
            &o,
            Disposition::Stored,
            "sip:im@example.com",
            "n1",
            "2026-12-07T10:00:01Z",
        );
        let c = Cpim::parse(&body).unwrap();
        assert!(c.is_notification());
        assert_eq!(c.to(), Some("sip:alice@example.com"));
        assert_eq!(c.from(), Some("sip:im@example.com"));
        assert_eq!(c.message_id(), Some("n1"));
        let xml = std::str::from_utf8(c.content).unwrap();
        let doc = roxmltree::Document::parse(xml).unwrap();
        let text = |n: &str| {
            doc.descendants()
                .find(|e| e.has_tag_name(n))
                .and_then(|e| e.text())
        };
        assert_eq!(text("message-id"), Some("34jk324j"));
        assert_eq!(text("datetime"), Some("2026-12-07T10:00:00Z"));
        assert!(doc.descendants().any(|e| e.has_tag_name("stored")));
        assert_eq!(
            c.content_header("Content-Length"),
            Some(xml.len().to_string().as_str())
        );
    }

    /// IM-20/IM-18: no notice for a notification, for no request, or without a Message-ID.
    #[test]
    fn nothing_to_report_im20() {
        let none = |b: &str| Original::of(b.as_bytes(), "sip:a@b", "sip:c@d", "t").is_none();
        assert!(none(
            "From: <sip:a@b>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"
        ));
        assert!(none(&IM.replace("i.Message-ID: 34jk324j\r\n", "")));
        assert!(none(&IM.replace("text/plain", IMDN_XML)));
        assert!(none("not cpim at all"));
    }
}
