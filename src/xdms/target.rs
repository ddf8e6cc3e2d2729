//! Turns a request URI into the resource it names (RFC 4825 §6, §8; URI-01..URI-18): the
//! application usage, the document key, and the resolved node selector. Pure apart from the
//! registry lookup.

use crate::appusage::{AppUsage, Registry, TreeKind};
use crate::identity::xui::Xui;
use crate::storage::{DocKey, TreeKey};
use crate::xcap::error::XcapError;
use crate::xcap::pct::encode_node_selector;
use crate::xcap::selector::{
    parse_xmlns_query, Bindings, NodeSelector, ResolvedSelector, ResolvedTerminal,
};
use crate::xcap::uri::{self, Tree};
use std::sync::Arc;

/// What part of the document a request addresses.
#[derive(Debug, Clone)]
pub enum NodeTarget {
    Element,
    Attribute,
    Namespaces,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeTarget,
    pub selector: ResolvedSelector,
    /// The parsed selector, kept for its raw steps (`<ancestor>` URIs).
    pub parsed: NodeSelector,
    /// Prefix bindings of the request's `xmlns()` query (URI-14).
    pub bindings: Bindings,
}

/// Why a node selector names nothing this server can address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeError {
    /// Not the RFC 4825 §6.3 grammar (400).
    Malformed,
    /// A prefix no `xmlns()` part binds (URI-16, 400).
    UnboundPrefix,
    /// Valid but outside what XCAP selects (NS-14, 404).
    NotUnderstood,
}

impl Node {
    /// Resolves a percent-decoded node selector against the request's `xmlns()` query and the
    /// usage's default namespace (RFC 4825 §6.3, §6.4; URI-14, URI-16). The XDMS and the
    /// decision service's references into XCAP both resolve through here.
    pub fn resolve(
        text: &str,
        query: Option<&str>,
        default_ns: Option<&str>,
    ) -> Result<Node, NodeError> {
        let parsed = NodeSelector::parse(text).map_err(|e| {
            if e.is_bad_request() {
                NodeError::Malformed
            } else {
                NodeError::NotUnderstood
            }
        })?;
        let bindings = query.map(parse_xmlns_query).unwrap_or_default();
        let selector = parsed.resolve(&bindings, default_ns).map_err(|e| {
            if e.is_bad_request() {
                NodeError::UnboundPrefix
            } else {
                NodeError::NotUnderstood
            }
        })?;
        let kind = match selector.terminal {
            None => NodeTarget::Element,
            Some(ResolvedTerminal::Attribute(_)) => NodeTarget::Attribute,
            Some(ResolvedTerminal::NamespaceBindings) => NodeTarget::Namespaces,
        };
        Ok(Node {
            kind,
            selector,
            parsed,
            bindings,
        })
    }
}

pub struct Target {
    pub usage: Arc<AppUsage>,
    pub key: DocKey,
    /// Canonical XUI of the home directory; None in the global tree.
    pub owner: Option<String>,
    /// The document selector exactly as the client sent it (no leading '/').
    pub raw_document_selector: String,
    pub node: Option<Node>,
}

impl Target {
    /// Resolves `path_and_query` (the request target as received, still percent-encoded).
    pub fn resolve(
        registry: &Registry,
        path_and_query: &str,
        root: &str,
        default_domain: Option<&str>,
    ) -> Result<Target, XcapError> {
        let parsed = uri::parse(path_and_query, root).map_err(|e| {
            if e.is_bad_request() {
                XcapError::BadRequest("malformed XCAP URI".into())
            } else {
                XcapError::NotFound("no such XCAP resource")
            }
        })?;
        let usage = registry
            .get(&parsed.auid)
            .cloned()
            .ok_or(XcapError::NotFound("unknown application usage (AUID)"))?;
        let (tree, owner) = match &parsed.tree {
            Tree::Users(raw) => {
                if !usage.descriptor.allows_tree(TreeKind::Users) {
                    return Err(XcapError::NotFound(
                        "this application usage has no users tree",
                    ));
                }
                let xui = Xui::parse(raw, default_domain)
                    .map_err(|_| XcapError::NotFound("unknown or malformed XUI"))?;
                let s = xui.as_str().to_string();
                (TreeKey::User(s.clone()), Some(s))
            }
            Tree::Global => {
                if !usage.descriptor.allows_tree(TreeKind::Global) {
                    return Err(XcapError::NotFound(
                        "this application usage has no global tree",
                    ));
                }
                (TreeKey::Global, None)
            }
        };
        if parsed.doc_path.is_empty() {
            // URI-08: a directory is not a document.
            return Err(XcapError::NotFound("the URI names no document"));
        }
        let node = match &parsed.node_selector {
            None => None,
            Some(text) => Some(
                Node::resolve(
                    text,
                    parsed.query.as_deref(),
                    usage.descriptor.default_namespace.as_deref(),
                )
                .map_err(|e| match e {
                    NodeError::Malformed => XcapError::BadRequest("malformed node selector".into()),
                    // URI-16: prefix not bound by an xmlns() part.
                    NodeError::UnboundPrefix => XcapError::BadRequest(
                        "node selector uses a prefix not bound by the xmlns() query".into(),
                    ),
                    NodeError::NotUnderstood => {
                        XcapError::NotFound("node selector not understood (NS-14)")
                    }
                })?,
            ),
        };
        let key = DocKey {
            auid: parsed.auid.clone(),
            tree,
            path: parsed.doc_path.join("/"),
        };
        Ok(Target {
            usage,
            key,
            owner,
            raw_document_selector: parsed.raw_document_selector,
            node,
        })
    }

    /// Directories in the document path (all segments but the file name).
    pub fn directory(&self) -> Option<&str> {
        self.key.path.rsplit_once('/').map(|(dir, _)| dir)
    }

    pub fn file_name(&self) -> &str {
        self.key.path.rsplit('/').next().unwrap_or(&self.key.path)
    }

    /// URI of the closest existing ancestor for a `<no-parent>` report (ER-07): the document
    /// plus the first `matched_steps` steps, or the home/global directory when the document
    /// itself is missing (`matched_steps` None).
    pub fn ancestor_uri(&self, public_root: &str, matched_steps: Option<usize>) -> String {
        match matched_steps {
            None => format!("{public_root}/{}", self.key.directory_selector()),
            Some(0) => format!("{public_root}/{}", self.raw_document_selector),
            Some(n) => {
                let steps: Vec<&str> = self
                    .node
                    .as_ref()
                    .map(|node| {
                        node.parsed
                            .steps
                            .iter()
                            .take(n)
                            .map(|s| s.raw.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "{public_root}/{}/~~/{}",
                    self.raw_document_selector,
                    encode_node_selector(&steps.join("/"))
                )
            }
        }
    }
}
