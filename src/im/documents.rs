//! The IM Server's documents of a user, projections of the message store written through the
//! XDMS as the IM Server (a service principal: the owner reads them and may delete them, and
//! their xcap-diff subscription sees every change; IX-01…IX-04): the recipient's
//! `org.openmobilealliance.deferred-list` (issue #14 scope 4; IM-15a, IM-16: one `<history>`
//! item per message waiting) and the owner's `org.openmobilealliance.conv-history` (scope 6;
//! IM-32: one item per conversation). A document is rewritten whole after each change for its
//! owner: rewrites are coalesced (one in flight per owner, the latest state wins), so it
//! catches up after any failure with the next change, and [`Projection::reconcile`] at start
//! catches up after a crash. The renderings are pure.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::deferred::{stripe, STRIPES};
use crate::authz::Principal;
use crate::storage::messages::{all_listed, all_owners, Mailbox, MessageStore, StoredMessage};
use crate::xcap::etag::{EntityTagList, Preconditions};
use crate::xcap::pct::encode_path_segment;
use crate::xdms::generated::rfc3339;
use crate::xdms::service::{Method, XcapRequest, Xdms};
use crate::xml::attvalue::escape;

/// Which document a projection writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Messages waiting for the owner (IX-02).
    DeferredList,
    /// The owner's recorded conversations (IX-01).
    ConvHistory,
}

impl Kind {
    pub fn auid(self) -> &'static str {
        match self {
            Kind::DeferredList => "org.openmobilealliance.deferred-list",
            Kind::ConvHistory => "org.openmobilealliance.conv-history",
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Kind::DeferredList => "application/vnd.oma.im.deferred-list+xml",
            Kind::ConvHistory => "application/vnd.oma.im.history-list+xml",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::DeferredList => "deferred-list",
            Kind::ConvHistory => "conv-history",
        }
    }

    fn mailbox(self) -> Mailbox {
        match self {
            Kind::DeferredList => Mailbox::Deferred,
            Kind::ConvHistory => Mailbox::History,
        }
    }

    fn render(self, owner: &str, messages: &[StoredMessage]) -> String {
        match self {
            Kind::DeferredList => document(messages),
            Kind::ConvHistory => conversations(owner, messages),
        }
    }

    /// The path of `owner`'s document under the XCAP root.
    pub fn path(self, root: &str, owner: &str) -> String {
        format!(
            "{}/{}/users/{}/{}",
            root.trim_end_matches('/'),
            self.auid(),
            encode_path_segment(owner),
            self.name()
        )
    }
}

/// One kind of document for all users.
pub struct Projection {
    kind: Kind,
    xdms: Arc<Xdms>,
    store: Arc<dyn MessageStore>,
    /// The XCAP root path (e.g. `/xcap-root`).
    root: String,
    /// Recipients with a rewrite in flight, and whether they changed again meanwhile.
    pending: Mutex<HashMap<String, bool>>,
    /// One rewrite per recipient at a time (so the last write read the latest state).
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Projection {
    pub fn new(
        kind: Kind,
        xdms: Arc<Xdms>,
        store: Arc<dyn MessageStore>,
        root: &str,
    ) -> Projection {
        Projection {
            kind,
            xdms,
            store,
            root: root.trim_end_matches('/').to_string(),
            pending: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// `owner`'s waiting messages changed: their document is rewritten soon.
    pub fn changed(self: &Arc<Self>, owner: &str) {
        {
            let mut pending = self.pending.lock();
            if let Some(again) = pending.get_mut(owner) {
                *again = true;
                return;
            }
            pending.insert(owner.to_string(), false);
        }
        let me = Arc::clone(self);
        let owner = owner.to_string();
        tokio::spawn(async move {
            loop {
                if let Err(why) = me.rewrite(&owner).await {
                    tracing::warn!(target: "xcapd::im", %owner, %why, document = me.kind.name(), "cannot write an IM document");
                }
                let mut pending = me.pending.lock();
                match pending.get_mut(&owner) {
                    Some(again) if *again => *again = false,
                    _ => {
                        pending.remove(&owner);
                        return;
                    }
                }
            }
        });
    }

    /// Brings every document in line with the store (at start: a crash may have come between
    /// a store change and its rewrite): the owners of documents and of waiting messages.
    pub async fn reconcile(&self) -> Result<usize, String> {
        let mut owners = std::collections::BTreeSet::new();
        let docs = self.xdms.store().list_auid(self.kind.auid()).await;
        for doc in docs.map_err(|e| e.to_string())? {
            if let crate::xcap::keys::TreeKey::User(xui) = doc.key.tree {
                owners.insert(xui);
            }
        }
        let stored = all_owners(self.store.as_ref(), self.kind.mailbox()).await;
        owners.extend(stored.map_err(|e| e.to_string())?);
        for owner in &owners {
            self.rewrite(owner).await?;
        }
        Ok(owners.len())
    }

    /// Writes `owner`'s document from the store: their items, or an empty list when the
    /// document exists and nothing waits (never created empty).
    pub async fn rewrite(&self, owner: &str) -> Result<(), String> {
        let _turn = self.stripes[stripe(owner)].lock().await;
        let waiting = all_listed(self.store.as_ref(), self.kind.mailbox(), owner)
            .await
            .map_err(|e| e.to_string())?;
        let preconditions = if waiting.is_empty() {
            Preconditions {
                if_match: Some(EntityTagList::Any),
                if_none_match: None,
            }
        } else {
            Preconditions::default()
        };
        let request = XcapRequest {
            method: Method::Put,
            path_and_query: self.kind.path(&self.root, owner),
            principal: Principal::Service(SERVICE.into()),
            preconditions,
            content_type: Some(self.kind.mime().into()),
            body: self.kind.render(owner, &waiting).into(),
        };
        match self.xdms.handle(request).await {
            Ok(r) if r.status < 300 || (r.status == 412 && waiting.is_empty()) => Ok(()),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The principal the IM Server writes as (its writes are told apart from the owner's by it).
pub const SERVICE: &str = "im-server";

/// The deferred-list document listing `waiting` (IX-03: date, subject, size, expiry, and the
/// pager item's time-stamp, from and to; `id` selects one item).
pub fn document(waiting: &[StoredMessage]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<history-list xmlns=\"urn:oma:xml:im:history-list\">\n",
    );
    for m in waiting {
        let msg = &m.message;
        let date = rfc3339(msg.created_ms);
        let header = |name: &str| {
            msg.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        // RFC 3323: a sender who asked for privacy is not named.
        let hidden = header("Privacy").is_some_and(|p| {
            p.split([';', ','])
                .any(|t| t.trim().eq_ignore_ascii_case("id"))
        });
        let from = if hidden {
            "sip:anonymous@anonymous.invalid"
        } else {
            msg.sender.as_str()
        };
        xml.push_str(&format!("  <history id=\"d-{}\">\n", m.id));
        xml.push_str(&format!("    <date>{date}</date>\n"));
        if let Some(subject) = header("Subject") {
            xml.push_str(&format!("    <subject>{}</subject>\n", escape(subject)));
        }
        xml.push_str(&format!("    <size>{}</size>\n", msg.body.len()));
        xml.push_str(&format!(
            "    <expiry>{}</expiry>\n",
            rfc3339(msg.expires_ms)
        ));
        xml.push_str(&format!(
            "    <pager><time-stamp>{date}</time-stamp><from>{}</from><to>{}</to></pager>\n",
            escape(from),
            escape(&msg.recipient)
        ));
        xml.push_str("  </history>\n");
    }
    xml.push_str("</history-list>\n");
    xml
}

/// The conv-history document of `owner` (IX-01, IX-03, IM-32): one item per conversation
/// (the other party), its latest time, total size, and a reference to read it
/// (`GET /im/v1/history/users/<owner>?peer=<peer>`).
pub fn conversations(owner: &str, messages: &[StoredMessage]) -> String {
    // (peer, first id, latest ms, bytes, count), in order of first message.
    let mut convs: Vec<(&str, u64, u64, usize, usize)> = Vec::new();
    for m in messages {
        let msg = &m.message;
        let peer = if msg.sender == owner {
            &msg.recipient
        } else {
            &msg.sender
        };
        match convs.iter_mut().find(|c| c.0 == peer.as_str()) {
            Some(c) => {
                c.2 = c.2.max(msg.created_ms);
                c.3 += msg.body.len();
                c.4 += 1;
            }
            None => convs.push((peer, m.id, msg.created_ms, msg.body.len(), 1)),
        }
    }
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<history-list xmlns=\"urn:oma:xml:im:history-list\">\n",
    );
    for (peer, first, latest, bytes, _) in convs {
        let date = rfc3339(latest);
        let reference = format!(
            "/im/v1/history/users/{}?peer={}",
            encode_path_segment(owner),
            crate::xcap::pct::encode_query(peer)
        );
        xml.push_str(&format!("  <history id=\"c-{first}\">\n"));
        xml.push_str(&format!(
            "    <history-reference>{}</history-reference>\n",
            escape(&reference)
        ));
        xml.push_str(&format!(
            "    <date>{date}</date>\n    <size>{bytes}</size>\n"
        ));
        xml.push_str(&format!(
            "    <pager><time-stamp>{date}</time-stamp><from>{}</from><to>{}</to></pager>\n",
            escape(owner),
            escape(peer)
        ));
        xml.push_str("  </history>\n");
    }
    xml.push_str("</history-list>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::messages::NewMessage;

    fn stored(id: u64, headers: &[(&str, &str)]) -> StoredMessage {
        StoredMessage {
            id,
            message: NewMessage {
                mailbox: Mailbox::Deferred,
                owner: "sip:bob@example.com".into(),
                sender: "sip:alice@example.com".into(),
                recipient: "sip:bob@example.com".into(),
                content_type: "text/plain".into(),
                body: b"hello".to_vec(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                created_ms: 1_796_000_000_000,
                expires_ms: 1_796_604_800_000,
            },
            claimed_until_ms: 0,
            attempts: 0,
        }
    }

    /// IM-15a, IX-03: one item per waiting message, the subject escaped, an anonymous
    /// sender not named.
    #[test]
    fn items_of_waiting_messages_im15a() {
        let doc = document(&[
            stored(7, &[("Subject", "a < b")]),
            stored(9, &[("Privacy", "id")]),
        ]);
        let parsed = roxmltree::Document::parse(&doc).unwrap();
        let items: Vec<_> = parsed
            .descendants()
            .filter(|n| n.has_tag_name("history"))
            .collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].attribute("id"), Some("d-7"));
        let text = |item: &roxmltree::Node, name: &str| {
            item.descendants()
                .find(|n| n.has_tag_name(name))
                .and_then(|n| n.text())
                .map(str::to_string)
        };
        assert_eq!(text(&items[0], "subject").as_deref(), Some("a < b"));
        assert_eq!(text(&items[0], "size").as_deref(), Some("5"));
        assert_eq!(
            text(&items[0], "from").as_deref(),
            Some("sip:alice@example.com")
        );
        assert_eq!(
            text(&items[1], "from").as_deref(),
            Some("sip:anonymous@anonymous.invalid")
        );
        assert!(document(&[]).contains("<history-list"));
    }

    /// IM-32, IX-03: one item per conversation, whichever side wrote.
    #[test]
    fn one_item_per_conversation_im32() {
        let mut from_carol = stored(11, &[]);
        from_carol.message.sender = "sip:carol@example.com".into();
        let mut to_alice = stored(12, &[]);
        to_alice.message.sender = "sip:bob@example.com".into();
        to_alice.message.recipient = "sip:alice@example.com".into();
        to_alice.message.created_ms += 60_000;
        let doc = conversations(
            "sip:bob@example.com",
            &[stored(10, &[]), from_carol, to_alice],
        );
        let parsed = roxmltree::Document::parse(&doc).unwrap();
        let items: Vec<_> = parsed
            .descendants()
            .filter(|n| n.has_tag_name("history"))
            .collect();
        assert_eq!(items.len(), 2, "{doc}");
        assert_eq!(items[0].attribute("id"), Some("c-10"));
        let text = |item: &roxmltree::Node, name: &str| {
            item.descendants()
                .find(|n| n.has_tag_name(name))
                .and_then(|n| n.text())
                .map(str::to_string)
        };
        assert_eq!(text(&items[0], "size").as_deref(), Some("10"));
        assert_eq!(
            text(&items[0], "to").as_deref(),
            Some("sip:alice@example.com")
        );
        assert_eq!(
            text(&items[1], "to").as_deref(),
            Some("sip:carol@example.com")
        );
        assert!(text(&items[0], "history-reference")
            .unwrap()
            .ends_with("?peer=sip:alice@example.com"));
    }
}
