//! Remote XDMS nodes seen from the notifier at the Aggregation Proxy (issue #13 scope 7; RFC
//! 5875 §4.7; standards.md XE-24, XD-14, XD-15): each node's ordered change log is followed
//! over HTTP (`GET /changes`, long polling, asserting a service identity the node trusts) and
//! handed to the subscriptions watching its documents, so one subscription covers documents
//! on several nodes; the documents themselves are read from the node as the subscriber, so a
//! watcher sees exactly what its GET through the proxy returns. A log trimmed past the point
//! followed makes the subscriptions on the node compare with the documents themselves.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use serde_json::Value;
use tokio::sync::watch;

use crate::event::ChangeRecord;
use crate::storage::StorageError;
use crate::upstream::{Upstream, UpstreamConfig, UpstreamError};
use crate::xcap::keys::{DocKey, TreeKey};
use crate::xdms::changes::record_from_json;

/// One page of changes is waited for this long by the node (it answers sooner with changes).
const WAIT_SECS: u64 = 20;
/// A page read, its wait included, must end within this.
const FEED_TIMEOUT: Duration = Duration::from_secs(WAIT_SECS + 10);
/// Changes per page.
const PAGE: usize = 500;
/// Pause before asking a node that failed again.
const RETRY: Duration = Duration::from_secs(1);
/// The usage whose documents list a user's documents (OMA XDM Core).
const DIRECTORY: &str = "org.openmobilealliance.xcap-directory";
/// Bodies read from a node at most (a page of changes, a document).
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// A remote XDMS whose change log the notifier follows.
pub struct RemoteNode {
    pub name: String,
    auids: Vec<String>,
    /// The node's XCAP root (documents).
    documents: Upstream,
    /// The node's server root (`/changes`).
    feed: Upstream,
    /// The service identity asserted for the change log.
    identity: String,
}

/// The followed nodes, by the AUIDs they serve.
#[derive(Default)]
pub struct Nodes(Vec<Arc<RemoteNode>>);

impl Nodes {
    pub fn new(nodes: Vec<Arc<RemoteNode>>) -> Nodes {
        Nodes(nodes)
    }

    /// The node serving `auid`, if a remote one does.
    pub fn serving(&self, auid: &str) -> Option<&Arc<RemoteNode>> {
        self.0.iter().find(|n| n.auids.iter().any(|a| a == auid))
    }

    pub fn all(&self) -> &[Arc<RemoteNode>] {
        &self.0
    }
}

/// `scheme://authority` of a URL.
fn origin_of(url: &str) -> Option<&str> {
    let after_scheme = url.find("://")? + 3;
    Some(match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    })
}

fn unavailable(node: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(format!("remote XDMS {node}: {e}"))
}

impl RemoteNode {
    /// The node whose XCAP root is `url`, serving `auids`; its change log is read as
    /// `identity` (a service user there).
    pub fn new(
        name: String,
        auids: Vec<String>,
        url: &str,
        timeout: Duration,
        identity: String,
    ) -> Result<RemoteNode, UpstreamError> {
        let documents = Upstream::new(UpstreamConfig::target(url, timeout))?;
        let origin = origin_of(url)
            .ok_or_else(|| UpstreamError::BadConfig(format!("{name}: no origin in {url}")))?;
        let feed = Upstream::new(UpstreamConfig::target(origin, FEED_TIMEOUT))?;
        Ok(RemoteNode {
            name,
            auids,
            documents,
            feed,
            identity,
        })
    }

    pub fn auids(&self) -> &[String] {
        &self.auids
    }

    /// The document as `reader` reads it: its ETag and text; `None` when it does not exist or
    /// `reader` may not read it (XD-15: left out, as its GET would be refused).
    pub async fn document(
        &self,
        key: &DocKey,
        reader: &str,
    ) -> Result<Option<(String, String)>, StorageError> {
        let (status, headers, body) = self
            .documents
            .get(&key.document_selector(), Some(reader), MAX_BYTES)
            .await
            .map_err(|e| unavailable(&self.name, e))?;
        match status {
            StatusCode::OK => {
                let etag = headers
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"').to_string())
                    .ok_or_else(|| unavailable(&self.name, "a document without an ETag"))?;
                let text = String::from_utf8(body.to_vec())
                    .map_err(|_| unavailable(&self.name, "a document that is not UTF-8"))?;
                Ok(Some((etag, text)))
            }
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Ok(None),
            other => Err(unavailable(&self.name, format!("GET answered {other}"))),
        }
    }

    /// The documents of `auid` in `xui`'s home directory, with their ETags, from the node's
    /// xcap-directory as `reader` reads it (OMA XDM Core; a collection entry, XE-02a).
    pub async fn list_user(
        &self,
        auid: &str,
        xui: &str,
        reader: &str,
    ) -> Result<Vec<(DocKey, String)>, StorageError> {
        let dir = DocKey::new(DIRECTORY, TreeKey::User(xui.to_string()), "directory.xml");
        let Some((_, text)) = self.document(&dir, reader).await? else {
            return Ok(Vec::new());
        };
        let doc = roxmltree::Document::parse(&text)
            .map_err(|_| unavailable(&self.name, "an xcap-directory that does not parse"))?;
        let home = DocKey::new(auid, TreeKey::User(xui.to_string()), "").directory_selector();
        let mut out = Vec::new();
        let folders = doc
            .descendants()
            .filter(|n| n.has_tag_name("folder") && n.attribute("auid") == Some(auid));
        for entry in folders
            .flat_map(|f| f.children())
            .filter(|n| n.has_tag_name("entry"))
        {
            let (Some(uri), Some(etag)) = (entry.attribute("uri"), entry.attribute("etag")) else {
                continue;
            };
            let Some(at) = uri.find(&format!("/{home}")) else {
                continue;
            };
            let path: Result<Vec<String>, _> = uri[at + home.len() + 1..]
                .split('/')
                .map(crate::xcap::pct::decode)
                .collect();
            if let Ok(path) = path {
                let key = DocKey::new(auid, TreeKey::User(xui.to_string()), path.join("/"));
                out.push((key, etag.to_string()));
            }
        }
        Ok(out)
    }

    /// Follows the node's change log from its head until `shutdown`: every change goes to
    /// `deliver`, in order; `resync` is called once the position is known (changes made while
    /// no one followed) and whenever the log was trimmed past it.
    pub async fn follow(
        &self,
        deliver: impl Fn(ChangeRecord),
        resync: impl Fn(),
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut after: Option<u64> = None;
        // Records per page: halved while a page is too large to read, grown back after.
        let mut limit = PAGE;
        loop {
            let path = match after {
                None => "/changes?after=0&limit=1&wait=0".to_string(),
                Some(a) => format!("/changes?after={a}&limit={limit}&wait={WAIT_SECS}"),
            };
            let read = tokio::select! {
                r = self.feed.get(&path, Some(&self.identity), MAX_BYTES) => r,
                _ = shutdown.changed() => return,
            };
            let (status, page) = match read {
                Ok((status, _, body)) => (
                    status,
                    serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                ),
                Err(UpstreamError::TooLarge) => {
                    if limit > 1 {
                        limit /= 2;
                    } else if let Some(a) = after.as_mut() {
                        // One record larger than we read: the log has no gaps, so it is
                        // the next one; its documents are compared instead.
                        *a += 1;
                        tracing::warn!(target: "xcapd::notifier", node = %self.name, seq = *a, "a remote change record too large to read: resyncing");
                        resync();
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(target: "xcapd::notifier", node = %self.name, error = %e, "cannot read a remote change log");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let head = page.get("head").and_then(Value::as_u64);
            match (status, after, head) {
                (StatusCode::OK, None, Some(head)) | (StatusCode::GONE, _, Some(head)) => {
                    if status == StatusCode::GONE {
                        tracing::warn!(target: "xcapd::notifier", node = %self.name, "remote changes trimmed: resyncing its subscriptions");
                    }
                    after = Some(head);
                    resync();
                }
                // The node's log starts over (restored, or a new store): from its head.
                (StatusCode::OK, Some(a), Some(head)) if head < a => {
                    tracing::warn!(target: "xcapd::notifier", node = %self.name, "remote change log behind what was read: resyncing");
                    after = Some(head);
                    resync();
                }
                (StatusCode::OK, Some(_), _) => {
                    limit = (limit * 2).min(PAGE);
                    let changes = page.get("changes").and_then(Value::as_array);
                    let mut unread = false;
                    for record in changes.into_iter().flatten() {
                        if let Some(seq) = record.get("seq").and_then(Value::as_u64) {
                            after = Some(seq);
                        }
                        match record_from_json(record) {
                            Some(change) => deliver(change),
                            None => unread = true,
                        }
                    }
                    if unread {
                        // Not lost: the documents themselves are compared.
                        tracing::warn!(target: "xcapd::notifier", node = %self.name, "remote change records that cannot be read: resyncing");
                        resync();
                    }
                }
                (status, _, _) => {
                    tracing::warn!(target: "xcapd::notifier", node = %self.name, %status, "remote change log refused (is follow_changes_as a service user there?)");
                    tokio::time::sleep(RETRY * 5).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_a_target_url() {
        assert_eq!(
            origin_of("http://10.0.0.5:8080/xcap-root"),
            Some("http://10.0.0.5:8080")
        );
        assert_eq!(origin_of("http://h:1"), Some("http://h:1"));
        assert_eq!(origin_of("h/x"), None);
    }
}
