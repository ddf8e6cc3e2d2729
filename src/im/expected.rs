//! Disposition notifications the IM Server expects (RFC 5438 §6, §7; standards.md IM-18,
//! IM-20, IM-22): when a sender asks for notices on a message it got through, the recipient's
//! notices about that message (its `<message-id>`, from that recipient, to that sender) pass
//! the sender's own IM policy, so a sender whose rules block by default still hears
//! `delivered` or `displayed` from the people they write to, while nobody else can use
//! "notifications" to get past a block. Kept in memory, bounded in count and age (a restart
//! forgets them; notices then go through the policy like any message). Pure apart from the
//! clock the caller passes.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use super::cpim::Cpim;

/// Longest `imdn.Message-ID` remembered.
const MAX_ID_BYTES: usize = 128;

/// (original sender, original recipient, imdn.Message-ID).
type Key = (String, String, String);

/// Expected notices, oldest first.
pub struct Expected {
    max: usize,
    ttl_ms: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    until: HashMap<Key, u64>,
    order: VecDeque<(Key, u64)>,
}

impl Expected {
    /// At most `max` messages remembered, each for `ttl_ms`.
    pub fn new(max: usize, ttl_ms: u64) -> Expected {
        Expected {
            max,
            ttl_ms,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// `sender`'s message `body` to `recipient` was accepted: if it asks for notices, the
    /// recipient's notices about it are expected.
    pub fn accepted(&self, body: &[u8], sender: &str, recipient: &str, now_ms: u64) {
        let Ok(cpim) = Cpim::parse(body) else {
            return;
        };
        let (Some(id), true) = (cpim.message_id(), cpim.requested().any()) else {
            return;
        };
        // RFC 5438 §6.3 ids are short tokens; a long one is not remembered (memory bound).
        if id.len() > MAX_ID_BYTES {
            return;
        }
        if cpim.is_notification() {
            return;
        }
        let key = (sender.to_string(), recipient.to_string(), id.to_string());
        let until = now_ms.saturating_add(self.ttl_ms);
        let mut inner = self.inner.lock();
        // Expired ones first, then the oldest beyond the bound.
        while let Some((k, t)) = inner.order.front().cloned() {
            if t > now_ms && inner.order.len() < self.max {
                break;
            }
            inner.order.pop_front();
            if inner.until.get(&k) == Some(&t) {
                inner.until.remove(&k);
            }
        }
        inner.until.insert(key.clone(), until);
        inner.order.push_back((key, until));
    }

    /// Whether `body`, sent by `from` to `to`, is a notice `to` asked `from` for.
    pub fn is_expected(&self, body: &[u8], from: &str, to: &str, now_ms: u64) -> bool {
        let Some(id) = notice_about(body) else {
            return false;
        };
        let key = (to.to_string(), from.to_string(), id);
        self.inner
            .lock()
            .until
            .get(&key)
            .is_some_and(|until| *until > now_ms)
    }
}

/// The `<message-id>` a `message/cpim` notification body reports on (RFC 5438 §7.2).
pub fn notice_about(body: &[u8]) -> Option<String> {
    let cpim = Cpim::parse(body).ok()?;
    if !cpim.is_notification() {
        return None;
    }
    let xml = std::str::from_utf8(cpim.content).ok()?;
    let doc = roxmltree::Document::parse(xml).ok()?;
    let id = doc
        .descendants()
        .find(|n| n.has_tag_name(("urn:ietf:params:xml:ns:imdn", "message-id")))?
        .text()?
        .trim()
        .to_string();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "sip:alice@example.com";
    const BOB: &str = "sip:bob@example.com";

    fn im(id: &str, asks: &str) -> String {
        format!("From: <{ALICE}>\r\nTo: <{BOB}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nimdn.Disposition-Notification: {asks}\r\n\r\nContent-Type: text/plain\r\n\r\nhi")
    }

    fn notice(id: &str) -> String {
        let xml = format!("<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>{id}</message-id><datetime>2026-12-07T10:00:00Z</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>");
        format!("From: <{BOB}>\r\nTo: <{ALICE}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: n1\r\n\r\nContent-Type: message/imdn+xml\r\nContent-Disposition: notification\r\n\r\n{xml}")
    }

    /// IM-18, IM-20: Bob's notice about Alice's message is expected by Alice, only from Bob,
    /// only about that message, only while remembered.
    #[test]
    fn notices_about_accepted_messages_im20() {
        let e = Expected::new(10, 1_000);
        e.accepted(im("m1", "positive-delivery").as_bytes(), ALICE, BOB, 0);
        assert!(e.is_expected(notice("m1").as_bytes(), BOB, ALICE, 10));
        assert!(!e.is_expected(notice("m1").as_bytes(), "sip:carol@example.com", ALICE, 10));
        assert!(!e.is_expected(notice("m2").as_bytes(), BOB, ALICE, 10));
        assert!(
            !e.is_expected(im("m1", "display").as_bytes(), BOB, ALICE, 10),
            "not a notice"
        );
        assert!(
            !e.is_expected(notice("m1").as_bytes(), BOB, ALICE, 2_000),
            "expired"
        );
        // A message that asks for nothing expects nothing.
        e.accepted(im("m3", "bogus").as_bytes(), ALICE, BOB, 0);
        assert!(!e.is_expected(notice("m3").as_bytes(), BOB, ALICE, 10));
    }

    /// Bounded: the oldest go first.
    #[test]
    fn bounded_in_count() {
        let e = Expected::new(2, 1_000_000);
        for id in ["a", "b", "c"] {
            e.accepted(im(id, "display").as_bytes(), ALICE, BOB, 0);
        }
        assert!(!e.is_expected(notice("a").as_bytes(), BOB, ALICE, 1));
        assert!(e.is_expected(notice("b").as_bytes(), BOB, ALICE, 1));
        assert!(e.is_expected(notice("c").as_bytes(), BOB, ALICE, 1));
        assert!(e.inner.lock().until.len() <= 2);
    }
}
