//! Disposition notifications the IM Server expects (RFC 5438 §6, §7; standards.md IM-18,
//! IM-20, IM-22): when a sender asks for notices on a message it got through, the recipient's
//! notices about that message (its `<message-id>`, from that recipient, to that sender) pass
//! the sender's own IM policy, so a sender whose rules block by default still hears
//! `delivered` or `displayed` from the people they write to, while nobody else can use
//! "notifications" to get past a block: one notice per kind asked for (delivery, display,
//! processing), each let through once (IM-23: at most one IMDN per disposition type). Kept in memory, bounded in count and age (a restart
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
    /// Until when, and the kinds of notice still expected (bits below).
    until: HashMap<Key, (u64, u8)>,
    order: VecDeque<(Key, u64)>,
}

const DELIVERY: u8 = 1;
const DISPLAY: u8 = 2;
const PROCESSING: u8 = 4;

impl Expected {
    /// At most `max` messages remembered, each for `ttl_ms`.
    pub fn new(max: usize, ttl_ms: u64) -> Expected {
        Expected {
            max,
            ttl_ms,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// `sender`'s CPIM message to `recipient` was accepted: if it asks for notices, the
    /// recipient's notices about it are expected.
    pub fn accepted(&self, cpim: &Cpim, sender: &str, recipient: &str, now_ms: u64) {
        let asked = cpim.requested();
        let (Some(id), true) = (cpim.message_id(), asked.any()) else {
            return;
        };
        let kinds = [
            (asked.positive_delivery || asked.negative_delivery, DELIVERY),
            (asked.display, DISPLAY),
            (asked.processing, PROCESSING),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |all, (_, bit)| all | bit);
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
            if inner.until.get(&k).is_some_and(|(u, _)| *u == t) {
                inner.until.remove(&k);
            }
        }
        inner.until.insert(key.clone(), (until, kinds));
        inner.order.push_back((key, until));
    }

    /// Whether `cpim`, sent by `from` to `to`, is a notice `to` asked `from` for and has not
    /// had yet; if so it is used up.
    pub fn take(&self, cpim: &Cpim, from: &str, to: &str, now_ms: u64) -> bool {
        if self.inner.lock().until.is_empty() {
            return false;
        }
        let Some((id, kind)) = notice_about(cpim) else {
            return false;
        };
        let key = (to.to_string(), from.to_string(), id);
        let mut inner = self.inner.lock();
        let Some((until, open)) = inner.until.get_mut(&key) else {
            return false;
        };
        if *until <= now_ms || *open & kind == 0 {
            return false;
        }
        *open &= !kind;
        if *open == 0 {
            inner.until.remove(&key);
        }
        true
    }
}

/// The `<message-id>` a `message/cpim` notification body reports on, and its kind
/// (RFC 5438 §7.2).
fn notice_about(cpim: &Cpim) -> Option<(String, u8)> {
    const NS: &str = "urn:ietf:params:xml:ns:imdn";
    if !cpim.is_notification() {
        return None;
    }
    let xml = std::str::from_utf8(cpim.content).ok()?;
    let doc = roxmltree::Document::parse(xml).ok()?;
    let id = doc
        .descendants()
        .find(|n| n.has_tag_name((NS, "message-id")))?
        .text()?
        .trim()
        .to_string();
    let kind = doc.descendants().find_map(|n| {
        [
            ("delivery-notification", DELIVERY),
            ("display-notification", DISPLAY),
            ("processing-notification", PROCESSING),
        ]
        .iter()
        .find(|(name, _)| n.has_tag_name((NS, *name)))
        .map(|(_, bit)| *bit)
    })?;
    (!id.is_empty()).then_some((id, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpim(body: &str) -> Cpim<'_> {
        Cpim::parse(body.as_bytes()).unwrap()
    }

    const ALICE: &str = "sip:alice@example.com";
    const BOB: &str = "sip:bob@example.com";

    fn im(id: &str, asks: &str) -> String {
        format!("From: <{ALICE}>\r\nTo: <{BOB}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nimdn.Disposition-Notification: {asks}\r\n\r\nContent-Type: text/plain\r\n\r\nhi")
    }

    fn notice(id: &str) -> String {
        notice_of(id, "delivery-notification", "delivered")
    }

    fn notice_of(id: &str, kind: &str, status: &str) -> String {
        let xml = format!("<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>{id}</message-id><datetime>2026-12-07T10:00:00Z</datetime><{kind}><status><{status}/></status></{kind}></imdn>");
        format!("From: <{BOB}>\r\nTo: <{ALICE}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: n1\r\n\r\nContent-Type: message/imdn+xml\r\nContent-Disposition: notification\r\n\r\n{xml}")
    }

    /// IM-18, IM-20, IM-23: Bob's notice about Alice's message is expected by Alice, only from
    /// Bob, only about that message, only while remembered, once per kind she asked for.
    #[test]
    fn notices_about_accepted_messages_im20() {
        let e = Expected::new(10, 1_000);
        e.accepted(
            &cpim(&im("m1", "positive-delivery, display")),
            ALICE,
            BOB,
            0,
        );
        assert!(!e.take(&cpim(&notice("m1")), "sip:carol@example.com", ALICE, 10));
        assert!(!e.take(&cpim(&notice("m2")), BOB, ALICE, 10));
        assert!(
            !e.take(&cpim(&im("m1", "display")), BOB, ALICE, 10),
            "not a notice"
        );
        let processing = notice_of("m1", "processing-notification", "processed");
        assert!(!e.take(&cpim(&processing), BOB, ALICE, 10), "not asked for");
        assert!(e.take(&cpim(&notice("m1")), BOB, ALICE, 10));
        assert!(
            !e.take(&cpim(&notice("m1")), BOB, ALICE, 10),
            "one per kind"
        );
        let displayed = notice_of("m1", "display-notification", "displayed");
        assert!(!e.take(&cpim(&displayed), BOB, ALICE, 2_000), "expired");
        assert!(e.take(&cpim(&displayed), BOB, ALICE, 20));
        assert!(e.inner.lock().until.is_empty(), "nothing left to expect");
        // A message that asks for nothing expects nothing.
        e.accepted(&cpim(&im("m3", "bogus")), ALICE, BOB, 0);
        assert!(!e.take(&cpim(&notice("m3")), BOB, ALICE, 10));
    }

    /// Bounded: the oldest go first.
    #[test]
    fn bounded_in_count() {
        let e = Expected::new(2, 1_000_000);
        for id in ["a", "b", "c"] {
            e.accepted(&cpim(&im(id, "positive-delivery")), ALICE, BOB, 0);
        }
        assert!(!e.take(&cpim(&notice("a")), BOB, ALICE, 1));
        assert!(e.take(&cpim(&notice("b")), BOB, ALICE, 1));
        assert!(e.take(&cpim(&notice("c")), BOB, ALICE, 1));
        assert!(e.inner.lock().until.len() <= 2);
    }
}
