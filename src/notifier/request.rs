//! What an xcap-diff SUBSCRIBE asks for (RFC 5875 §4; standards.md XE-02…XE-08): the
//! resource-lists body read into collections, documents and components, the Accept check,
//! the `diff-processing` mode and the subscription duration. Pure: the endpoint answers the
//! errors (400, 406, 423) and the notifier keeps the rest.

use thiserror::Error;

use crate::appusage::hooks::{is_relative_path_reference, relative_to_root};
use crate::identity::xui::Xui;
use crate::sip::header::Event;
use crate::xcap::keys::{DocKey, TreeKey};
use crate::xcap::uri::{self, Tree};
use crate::xcap_diff::MIME_XCAP_DIFF;

/// `application/resource-lists+xml` (XE-02).
pub const MIME_RESOURCE_LISTS: &str = "application/resource-lists+xml";
const NS_RESOURCE_LISTS: &str = "urn:ietf:params:xml:ns:resource-lists";

/// Why a SUBSCRIBE cannot be accepted, with the SIP answer it gets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubscribeError {
    /// 400: no or unreadable body (XE-20).
    #[error("the body is not an application/resource-lists+xml list")]
    BadBody,
    /// 400: the list names nothing this server holds.
    #[error("no entry names an XCAP resource of this server")]
    NothingSubscribed,
    /// 406 (XE-05).
    #[error("Accept does not include application/xcap-diff+xml")]
    NotAcceptable,
    /// 423 with Min-Expires (RFC 6665 §4.2.1.1).
    #[error("subscription duration too brief")]
    IntervalTooBrief { min: u32 },
}

/// One subscribed resource; `sel` is the entry URI exactly as sent (XE-11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// XE-02a: every document below `auid/tree/prefix` (prefix empty: the whole tree).
    Collection {
        sel: String,
        auid: String,
        tree: TreeKey,
        prefix: String,
    },
    /// XE-02b.
    Document { sel: String, key: DocKey },
    /// XE-02b for a document the server builds (the user's xcap-directory, xcap-caps): it
    /// changes with the `(auid, tree)`s in `sources` (issue #13 scope 7).
    Generated {
        sel: String,
        key: DocKey,
        sources: Vec<(String, TreeKey)>,
    },
    /// XE-02c: an element or attribute of a document; `query` holds the xmlns() bindings.
    Component {
        sel: String,
        key: DocKey,
        node_selector: String,
        query: Option<String>,
    },
}

/// `diff-processing` (XE-06, XE-07), simplest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiffProcessing {
    NoPatching,
    XcapPatching,
    Aggregate,
}

/// XE-06/07: the mode asked for in the Event header; absent or unknown is `no-patching`.
pub fn diff_processing(event: &Event) -> DiffProcessing {
    match event.params.get("diff-processing").flatten() {
        Some(v) if v.eq_ignore_ascii_case("xcap-patching") => DiffProcessing::XcapPatching,
        Some(v) if v.eq_ignore_ascii_case("aggregate") => DiffProcessing::Aggregate,
        _ => DiffProcessing::NoPatching,
    }
}

/// XE-05: without Accept the type is implied; with one, it must list xcap-diff (or a range
/// covering it).
pub fn check_accept(accept: &[&str]) -> Result<(), SubscribeError> {
    if accept.is_empty() {
        return Ok(());
    }
    let covers = |value: &&str| {
        let media = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        media == MIME_XCAP_DIFF || media == "application/*" || media == "*/*"
    };
    if accept.iter().any(covers) {
        Ok(())
    } else {
        Err(SubscribeError::NotAcceptable)
    }
}

/// Durations (XE-08, RFC 6665 §4.2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durations {
    pub default_secs: u32,
    pub min_secs: u32,
    pub max_secs: u32,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            default_secs: 3600,
            min_secs: 60,
            max_secs: 86_400,
        }
    }
}

/// The granted duration: the default when none is asked, capped at the maximum, 0 kept
/// (unsubscribe), a positive value under the minimum refused with 423.
pub fn grant_expires(requested: Option<u32>, d: &Durations) -> Result<u32, SubscribeError> {
    match requested {
        None => Ok(d.default_secs),
        Some(0) => Ok(0),
        Some(n) if n < d.min_secs => Err(SubscribeError::IntervalTooBrief { min: d.min_secs }),
        Some(n) => Ok(n.min(d.max_secs)),
    }
}

/// XE-02…XE-04: the `<entry uri>` values of a resource-lists body, resolved against the XCAP
/// root (`public_root`, e.g. `http://xcap.example.com/xcap-root`; relative references are
/// relative to it, XE-03). Entries outside this root, malformed ones and `namespace::*`
/// components (XE-04) are left out; unknown elements are ignored.
pub fn parse_entries(
    body: &[u8],
    public_root: &str,
    root_path: &str,
    default_domain: Option<&str>,
) -> Result<Vec<Entry>, SubscribeError> {
    let text = std::str::from_utf8(body).map_err(|_| SubscribeError::BadBody)?;
    let doc = roxmltree::Document::parse(text).map_err(|_| SubscribeError::BadBody)?;
    let root = doc.root_element();
    if !root.has_tag_name((NS_RESOURCE_LISTS, "resource-lists")) {
        return Err(SubscribeError::BadBody);
    }
    let mut entries = Vec::new();
    for entry in root
        .descendants()
        .filter(|n| n.has_tag_name((NS_RESOURCE_LISTS, "entry")))
    {
        let Some(sel) = entry.attribute("uri") else {
            continue;
        };
        if let Some(e) = resolve(sel, public_root, root_path, default_domain) {
            if !entries.contains(&e) {
                entries.push(e);
            }
        }
    }
    if entries.is_empty() {
        return Err(SubscribeError::NothingSubscribed);
    }
    Ok(entries)
}

fn resolve(
    sel: &str,
    public_root: &str,
    root_path: &str,
    default_domain: Option<&str>,
) -> Option<Entry> {
    let relative = if is_relative_path_reference(sel) {
        sel
    } else {
        relative_to_root(sel, public_root)?
    };
    let document_part = relative.split('?').next().unwrap_or(relative);
    // XE-02a: a trailing '/' names a collection; the URI parser wants it without.
    let collection = !relative.contains("/~~/") && document_part.ends_with('/');
    let relative_path = if collection {
        relative.trim_end_matches('/')
    } else {
        relative
    };
    let path = format!("{}/{relative_path}", root_path.trim_end_matches('/'));
    let parsed = uri::parse(&path, root_path).ok()?;
    let tree = match &parsed.tree {
        Tree::Global => TreeKey::Global,
        Tree::Users(raw) => {
            TreeKey::User(Xui::parse(raw, default_domain).ok()?.as_str().to_string())
        }
    };
    if let Some(node) = &parsed.node_selector {
        // XE-04: namespace bindings are not subscribable.
        if node.ends_with("namespace::*") || parsed.doc_path.is_empty() {
            return None;
        }
        return Some(Entry::Component {
            sel: sel.to_string(),
            key: DocKey::new(parsed.auid, tree, parsed.doc_path.join("/")),
            node_selector: node.clone(),
            query: parsed.query,
        });
    }
    if collection || parsed.doc_path.is_empty() {
        let mut prefix = parsed.doc_path.join("/");
        if !prefix.is_empty() {
            prefix.push('/');
        }
        return Some(Entry::Collection {
            sel: sel.to_string(),
            auid: parsed.auid,
            tree,
            prefix,
        });
    }
    Some(Entry::Document {
        sel: sel.to_string(),
        key: DocKey::new(parsed.auid, tree, parsed.doc_path.join("/")),
    })
}

impl Entry {
    /// Whether a change of `key` concerns this entry (XE-02a: collections are recursive and
    /// include documents created later, XE-15).
    pub fn covers(&self, key: &DocKey) -> bool {
        match self {
            Entry::Collection {
                auid, tree, prefix, ..
            } => key.auid == *auid && key.tree == *tree && key.path.starts_with(prefix.as_str()),
            Entry::Document { key: k, .. }
            | Entry::Generated { key: k, .. }
            | Entry::Component { key: k, .. } => k == key,
        }
    }

    /// The `(auid, tree)`s whose changes concern this entry.
    pub fn watches(&self) -> Vec<(String, TreeKey)> {
        match self {
            Entry::Collection { auid, tree, .. } => vec![(auid.clone(), tree.clone())],
            Entry::Document { key, .. } | Entry::Component { key, .. } => {
                vec![(key.auid.clone(), key.tree.clone())]
            }
            Entry::Generated { sources, .. } => sources.clone(),
        }
    }

    /// A document entry naming a generated document becomes [`Entry::Generated`] with what
    /// `sources_of` says it is built from.
    pub fn generated(
        self,
        sources_of: impl Fn(&DocKey) -> Option<Vec<(String, TreeKey)>>,
    ) -> Entry {
        match self {
            Entry::Document { sel, key } => match sources_of(&key) {
                Some(sources) => Entry::Generated { sel, key, sources },
                None => Entry::Document { sel, key },
            },
            other => other,
        }
    }

    pub fn sel(&self) -> &str {
        match self {
            Entry::Collection { sel, .. }
            | Entry::Document { sel, .. }
            | Entry::Generated { sel, .. }
            | Entry::Component { sel, .. } => sel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "http://xcap.example.com/xcap-root";

    fn body(uris: &[&str]) -> Vec<u8> {
        let entries: String = uris
            .iter()
            .map(|u| format!("<entry uri=\"{u}\"/>"))
            .collect();
        format!("<?xml version=\"1.0\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>{entries}<x:ext xmlns:x=\"urn:x\"/></list></resource-lists>").into_bytes()
    }

    fn alice() -> TreeKey {
        TreeKey::User("sip:alice@example.com".into())
    }

    // XE-02a/b/c, XE-03: collections, documents and components, relative or absolute.
    #[test]
    fn xe02_entries_of_every_kind() {
        let sels = [
            "resource-lists/users/sip:alice@example.com/index",
            "http://xcap.example.com/xcap-root/rls-services/users/sip:alice@example.com/",
            "resource-lists/users/alice/index/~~/resource-lists/list%5B@name=%22f%22%5D",
            "pres-rules/users/sip:alice@example.com/dir/",
            "xcap-caps/global/index",
        ];
        let got = parse_entries(&body(&sels), ROOT, "/xcap-root", Some("example.com")).unwrap();
        assert_eq!(
            got[0],
            Entry::Document {
                sel: sels[0].into(),
                key: DocKey::new("resource-lists", alice(), "index")
            }
        );
        assert_eq!(
            got[1],
            Entry::Collection {
                sel: sels[1].into(),
                auid: "rls-services".into(),
                tree: alice(),
                prefix: String::new()
            }
        );
        match &got[2] {
            Entry::Component {
                sel,
                key,
                node_selector,
                ..
            } => {
                assert_eq!(sel, sels[2], "XE-11: sel kept as sent");
                assert_eq!(key, &DocKey::new("resource-lists", alice(), "index"));
                assert_eq!(node_selector, "resource-lists/list[@name=\"f\"]");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&got[3], Entry::Collection { prefix, .. } if prefix == "dir/"));
        assert!(matches!(&got[4], Entry::Document { key, .. } if key.tree == TreeKey::Global));
        assert!(got[1].covers(&DocKey::new("rls-services", alice(), "index")));
        assert!(got[3].covers(&DocKey::new("pres-rules", alice(), "dir/new")));
        assert!(!got[3].covers(&DocKey::new("pres-rules", alice(), "index")));
    }

    // XE-03, XE-04: foreign roots, namespace::* and junk are left out; nothing left is 400.
    #[test]
    fn xe04_entries_left_out() {
        let got = parse_entries(
            &body(&[
                "http://other.example.com/xcap-root/resource-lists/users/sip:a@x/index",
                "resource-lists/users/sip:a@x/index/~~/resource-lists/namespace::*",
                "/absolute/path",
                "resource-lists/users/sip:a@x/index",
            ]),
            ROOT,
            "/xcap-root",
            None,
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            parse_entries(&body(&["http://other/x"]), ROOT, "/xcap-root", None),
            Err(SubscribeError::NothingSubscribed)
        );
        assert_eq!(
            parse_entries(b"", ROOT, "/xcap-root", None),
            Err(SubscribeError::BadBody)
        );
        assert_eq!(
            parse_entries(b"<list xmlns=\"urn:x\"/>", ROOT, "/xcap-root", None),
            Err(SubscribeError::BadBody)
        );
    }

    // XE-05, XE-06/07, XE-08.
    #[test]
    fn accept_mode_and_duration() {
        assert_eq!(check_accept(&[]), Ok(()));
        assert_eq!(check_accept(&["application/xcap-diff+xml;q=0.5"]), Ok(()));
        assert_eq!(check_accept(&["application/*"]), Ok(()));
        assert_eq!(
            check_accept(&["application/pidf+xml"]),
            Err(SubscribeError::NotAcceptable)
        );
        let mode = |v: &str| diff_processing(&Event::parse(v).unwrap());
        assert_eq!(mode("xcap-diff"), DiffProcessing::NoPatching);
        assert_eq!(
            mode("xcap-diff;diff-processing=xcap-patching"),
            DiffProcessing::XcapPatching
        );
        assert_eq!(
            mode("xcap-diff;diff-processing=Aggregate"),
            DiffProcessing::Aggregate
        );
        assert_eq!(
            mode("xcap-diff;diff-processing=fancy"),
            DiffProcessing::NoPatching
        );
        let d = Durations::default();
        assert_eq!(grant_expires(None, &d), Ok(3600));
        assert_eq!(grant_expires(Some(0), &d), Ok(0));
        assert_eq!(
            grant_expires(Some(30), &d),
            Err(SubscribeError::IntervalTooBrief { min: 60 })
        );
        assert_eq!(grant_expires(Some(999_999), &d), Ok(86_400));
    }
}
