//! What an xcap-diff subscription reads (RFC 5875 §4.3, §4.7; standards.md XE-10, XE-11,
//! XE-14, XD-15): the ETags of the documents its entries name and the content of the
//! components it watches, from this node's store or from the remote node serving the usage
//! ([`super::nodes`], read as the subscriber). Storage errors are never taken for absence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::actor::{Actor, READ_ATTEMPTS, READ_RETRY};
use super::request::Entry;
use super::state::component_report;
use crate::storage::StorageError;
use crate::xcap::keys::{DocKey, TreeKey};
use crate::xcap_diff::ComponentReport;

impl Actor {
    /// The documents now, retried a few times over a transient storage error.
    pub(super) async fn read_documents(&self) -> Option<BTreeMap<DocKey, (String, String)>> {
        for attempt in 0..READ_ATTEMPTS {
            match self.current_documents().await {
                Ok(docs) => return Some(docs),
                Err(e) => {
                    tracing::warn!(target: "xcapd::notifier", error = %e, attempt, "cannot read a subscription's documents");
                    tokio::time::sleep(READ_RETRY).await;
                }
            }
        }
        None
    }

    /// Every existing document the entries name, with the `sel` it is reported under
    /// (XE-11: a document entry's own URI; collection members by document selector).
    pub(super) async fn current_documents(
        &self,
    ) -> Result<BTreeMap<DocKey, (String, String)>, StorageError> {
        let store = self.shared.parts.xdms.store();
        let mut out = BTreeMap::new();
        for e in &self.entries {
            match e {
                Entry::Collection { auid, tree, .. } => {
                    let node = self.shared.parts.nodes.serving(auid);
                    let listed: Vec<(DocKey, String)> = match (tree, node) {
                        // A remote node's documents: its xcap-directory lists a home directory
                        // (its global trees are not followed here).
                        (TreeKey::User(xui), Some(node)) => {
                            node.list_user(auid, xui, &self.subscriber).await?
                        }
                        (TreeKey::Global, Some(_)) => Vec::new(),
                        (TreeKey::User(xui), None) => {
                            let metas = store.list_user(xui).await?;
                            metas.into_iter().map(|m| (m.key, m.etag)).collect()
                        }
                        (TreeKey::Global, None) => {
                            let metas = store.list_auid(auid).await?;
                            metas.into_iter().map(|m| (m.key, m.etag)).collect()
                        }
                    };
                    for (key, etag) in listed {
                        if e.covers(&key) && !out.contains_key(&key) {
                            let sel = key.document_selector();
                            out.insert(key, (sel, etag));
                        }
                    }
                }
                Entry::Document { sel, key } => {
                    let etag = match self.shared.parts.nodes.serving(&key.auid) {
                        Some(node) => node.document(key, &self.subscriber).await?.map(|d| d.0),
                        None => store.get(key).await?.map(|d| d.etag),
                    };
                    if let Some(etag) = etag {
                        out.insert(key.clone(), (sel.clone(), etag));
                    }
                }
                Entry::Generated { sel, key, .. } => {
                    let xdms = &self.shared.parts.xdms;
                    if let Some(etag) = xdms.generated_etag(key).await? {
                        out.insert(key.clone(), (sel.clone(), etag));
                    }
                }
                Entry::Component { .. } => {}
            }
        }
        Ok(out)
    }

    /// A document with its parse, from this node's store or the remote node serving it.
    pub(super) async fn parsed_document(
        &self,
        key: &DocKey,
    ) -> Result<Option<Arc<crate::xml::ParsedDoc>>, StorageError> {
        let Some(node) = self.shared.parts.nodes.serving(&key.auid) else {
            let local = self.shared.parts.xdms.current_document(key).await;
            return local
                .map(|d| d.map(|(_, parsed)| parsed))
                .map_err(|e| StorageError::Unavailable(e.to_string()));
        };
        let Some((_, text)) = node.document(key, &self.subscriber).await? else {
            return Ok(None);
        };
        let limits = &self.shared.parts.xdms.settings().limits;
        crate::xml::ParsedDoc::parse(Arc::from(text), limits)
            .map(|p| Some(Arc::new(p)))
            .map_err(|_| StorageError::Corrupt("a remote document that does not parse".into()))
    }

    pub(super) fn component_keys(&self) -> impl Iterator<Item = DocKey> + '_ {
        self.entries.iter().filter_map(|e| match e {
            Entry::Component { key, .. } => Some(key.clone()),
            _ => None,
        })
    }

    /// Reports for the components in `keys` whose state differs from the last report
    /// (XE-10b: one that never existed is not reported; XE-14: a removal is, once).
    pub(super) async fn component_reports(
        &mut self,
        keys: &BTreeSet<DocKey>,
        initial: bool,
    ) -> Vec<ComponentReport> {
        let mut out = Vec::new();
        let registry = self.shared.parts.xdms.registry().clone();
        for e in &self.entries {
            let Entry::Component {
                sel,
                key,
                node_selector,
                query,
            } = e
            else {
                continue;
            };
            if !keys.contains(key) {
                continue;
            }
            let doc = match self.parsed_document(key).await {
                Ok(d) => d,
                Err(_) => {
                    // Unreadable now: tried again with the next NOTIFY.
                    self.unread.insert(key.clone());
                    continue;
                }
            };
            let default_ns = registry
                .get(&key.auid)
                .and_then(|u| u.descriptor.default_namespace.as_deref());
            let report = component_report(
                sel,
                node_selector,
                query.as_deref(),
                default_ns,
                doc.as_deref(),
            );
            let digest = match &report {
                ComponentReport::Element { content, .. } => content.as_deref().map(digest),
                ComponentReport::Attribute { value, .. } => value.as_deref().map(digest),
            };
            let before = self.components.get(sel).cloned().flatten();
            if before == digest || (initial && digest.is_none()) {
                continue;
            }
            self.components.insert(sel.clone(), digest);
            out.push(report);
        }
        out
    }
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
