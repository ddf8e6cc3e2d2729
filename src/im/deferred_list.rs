//! The recipient's `org.openmobilealliance.deferred-list` document (issue #14 scope 4;
//! standards.md IM-15a, IM-16, IX-02, IX-03): one `<history>` item per message waiting in the
//! message store, written through the XDMS as the IM Server (a service principal: the owner
//! reads it and may delete it, and their xcap-diff subscription sees every change). The
//! document is a projection of the store, rewritten whole after each change for a recipient:
//! rewrites are coalesced (one in flight per recipient, the latest state wins), so it catches
//! up after any failure with the next change, and [`DeferredList::reconcile`] at start catches
//! up after a crash. [`document`] is pure.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::deferred::{stripe, STRIPES};
use crate::authz::Principal;
use crate::storage::messages::{Mailbox, MessageStore, StoredMessage};
use crate::xcap::etag::{EntityTagList, Preconditions};
use crate::xcap::pct::encode_path_segment;
use crate::xdms::generated::rfc3339;
use crate::xdms::service::{Method, XcapRequest, Xdms};
use crate::xml::attvalue::escape;

const AUID: &str = "org.openmobilealliance.deferred-list";
const MIME: &str = "application/vnd.oma.im.deferred-list+xml";
/// Messages read per page when the document is rebuilt.
const PAGE: usize = 200;

/// The deferred-list documents of all recipients.
pub struct DeferredList {
    xdms: Arc<Xdms>,
    store: Arc<dyn MessageStore>,
    /// The XCAP root path (e.g. `/xcap-root`).
    root: String,
    /// Recipients with a rewrite in flight, and whether they changed again meanwhile.
    pending: Mutex<HashMap<String, bool>>,
    /// One rewrite per recipient at a time (so the last write read the latest state).
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl DeferredList {
    pub fn new(xdms: Arc<Xdms>, store: Arc<dyn MessageStore>, root: &str) -> DeferredList {
        DeferredList {
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
                    tracing::warn!(target: "xcapd::im", %owner, %why, "cannot write the deferred-list document");
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
        let docs = self.xdms.store().list_auid(AUID).await;
        for doc in docs.map_err(|e| e.to_string())? {
            if let crate::xcap::keys::TreeKey::User(xui) = doc.key.tree {
                owners.insert(xui);
            }
        }
        let mut after = None;
        loop {
            let page = self
                .store
                .owners(Mailbox::Deferred, after.clone(), PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let full = page.len() == PAGE;
            after = page.last().cloned();
            owners.extend(page);
            if !full {
                break;
            }
        }
        for owner in &owners {
            self.rewrite(owner).await?;
        }
        Ok(owners.len())
    }

    /// Writes `owner`'s document from the store: their items, or an empty list when the
    /// document exists and nothing waits (never created empty).
    pub async fn rewrite(&self, owner: &str) -> Result<(), String> {
        let _turn = self.stripes[stripe(owner)].lock().await;
        let mut waiting = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .list(Mailbox::Deferred, owner.to_string(), after, PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let full = page.len() == PAGE;
            after = page.last().map_or(after, |m| m.id);
            waiting.extend(page);
            if !full {
                break;
            }
        }
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
            path_and_query: format!(
                "{}/{AUID}/users/{}/deferred-list",
                self.root,
                encode_path_segment(owner)
            ),
            principal: Principal::Service("im-server".into()),
            preconditions,
            content_type: Some(MIME.into()),
            body: document(&waiting).into(),
        };
        match self.xdms.handle(request).await {
            Ok(r) if r.status < 300 || (r.status == 412 && waiting.is_empty()) => Ok(()),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    }
}

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
}
