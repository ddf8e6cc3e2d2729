//! XCAP request URI parsing (RFC 4825 §6, §6.1–§6.4): splits
//! `<xcap-root><document-selector>[/~~/<node-selector>][?<query>]` into the AUID, the tree, the
//! XUI, the document path, the node selector and the xmlns() query. Pure; no I/O.
//!
//! Standards items: URI-01, URI-03..URI-05, URI-07..URI-14, URI-17, IO-03, IO-07.

use thiserror::Error;

use super::pct;
use super::selector::{parse_xmlns_query, Bindings, NodeSelector, SelectorError};

/// The tree the document selector names (RFC 4825 §6.2, URI-04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    /// `users/<xui>`: the percent-decoded XUI as received, not normalized (URI-05; see
    /// `xui::Xui` for the home-directory key).
    Users(String),
    /// `global` (URI-17).
    Global,
}

/// A parsed XCAP request URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XcapUri {
    pub auid: String,
    pub tree: Tree,
    /// Decoded segments after `global/` or `users/<xui>/`; empty = no document named (URI-08).
    pub doc_path: Vec<String>,
    /// Percent-decoded node selector (after `~~/`).
    pub node_selector: Option<String>,
    /// The node selector as received, still percent-encoded.
    pub raw_node_selector: Option<String>,
    /// Percent-decoded query, also when recovered from an encoded `?` (IO-03).
    pub query: Option<String>,
    /// The document selector as received, without a leading '/', e.g.
    /// `resource-lists/users/sip:a@b/index`.
    pub raw_document_selector: String,
}

/// Why a request URI does not address anything. Only `BadEncoding` is a client error (400);
/// every other variant means "no such resource" (404; RFC 4825 §6.2, URI-03, URI-04, URI-08).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("request path is not under the XCAP root")]
    NotUnderRoot,
    #[error("no application unique ID in the request path")]
    MissingAuid,
    #[error("the segment after the AUID must be `users` or `global`")]
    BadTree,
    #[error("no XUI after `users/`")]
    MissingXui,
    #[error("invalid document path segment")]
    BadDocumentName,
    #[error("empty node selector after `~~`")]
    EmptyNodeSelector,
    #[error("malformed percent-encoding or non-UTF-8 octets in the request URI")]
    BadEncoding,
}

impl UriError {
    /// True when the HTTP answer is 400; every other error is 404.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, UriError::BadEncoding)
    }
}

impl From<pct::PctError> for UriError {
    fn from(_: pct::PctError) -> Self {
        UriError::BadEncoding
    }
}

impl XcapUri {
    /// The decoded XUI for the `users` tree.
    pub fn xui(&self) -> Option<&str> {
        match &self.tree {
            Tree::Users(xui) => Some(xui),
            Tree::Global => None,
        }
    }

    /// The document's file name: the last segment of the document path (URI-07).
    pub fn document_name(&self) -> Option<&str> {
        self.doc_path.last().map(String::as_str)
    }

    /// Parses the node selector, if any (NS-01).
    pub fn parse_node_selector(&self) -> Result<Option<NodeSelector>, SelectorError> {
        self.node_selector
            .as_deref()
            .map(NodeSelector::parse)
            .transpose()
    }

    /// The prefix bindings of the query's xmlns() parts (URI-14); empty without a query.
    pub fn bindings(&self) -> Bindings {
        self.query
            .as_deref()
            .map(parse_xmlns_query)
            .unwrap_or_default()
    }
}

/// Parses an origin-form request target against the configured XCAP root path (`/xcap-root`,
/// `/services`, `/`; a trailing slash is optional).
pub fn parse(path_and_query: &str, root: &str) -> Result<XcapUri, UriError> {
    // URI-11: the query is split off at the first literal '?' before anything is decoded.
    let (path, raw_query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let rest = strip_root(path, root).ok_or(UriError::NotUnderRoot)?;

    // URI-09/URI-10: the first segment equal to `~~` (after %7E normalization) ends the
    // document selector; anything after it, later `~~` included, is node-selector data.
    let (raw_document_selector, raw_selector) = split_at_separator(rest);

    let mut segments = raw_document_selector.split('/');
    let auid = match segments.next() {
        Some(s) if !s.is_empty() => pct::decode(s)?,
        _ => return Err(UriError::MissingAuid),
    };
    let tree_segment = segments.next().ok_or(UriError::BadTree)?;
    let tree = match pct::decode(tree_segment)?.as_str() {
        "users" => {
            // URI-05: the XUI is percent-decoded (SIP URI characters such as '/' and '?' arrive
            // encoded).
            let xui = pct::decode(segments.next().ok_or(UriError::MissingXui)?)?;
            if xui.is_empty() {
                return Err(UriError::MissingXui);
            }
            Tree::Users(xui)
        }
        "global" => Tree::Global,
        _ => return Err(UriError::BadTree),
    };
    let rest: Vec<&str> = segments.collect();
    // URI-08: `users/<xui>/` or `global/` names no document; any other empty segment is invalid.
    let doc_path = if rest == [""] {
        Vec::new()
    } else {
        rest.iter()
            .map(|s| decode_document_segment(s))
            .collect::<Result<Vec<_>, _>>()?
    };

    let mut query = raw_query.map(pct::decode).transpose()?;
    let (node_selector, raw_node_selector) = match raw_selector {
        None => (None, None),
        Some(raw) => {
            let (decoded, offsets) = pct::decode_with_offsets(raw)?;
            // IO-03: Doubango encodes the '?' before its xmlns() parts.
            let (decoded, raw) = match embedded_query(&decoded).filter(|_| query.is_none()) {
                Some(at) => {
                    query = Some(decoded[at + 1..].to_owned());
                    let raw_end = offsets.get(at).copied().unwrap_or(raw.len());
                    (decoded[..at].to_owned(), &raw[..raw_end])
                }
                None => (decoded, raw),
            };
            if decoded.is_empty() {
                return Err(UriError::EmptyNodeSelector);
            }
            (Some(decoded), Some(raw.to_owned()))
        }
    };

    Ok(XcapUri {
        auid,
        tree,
        doc_path,
        node_selector,
        raw_node_selector,
        query,
        raw_document_selector: raw_document_selector.to_owned(),
    })
}

/// URI-01: returns what follows `<root>/`.
fn strip_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_matches('/');
    let path = path.strip_prefix('/')?;
    if root.is_empty() {
        Some(path)
    } else {
        path.strip_prefix(root)?.strip_prefix('/')
    }
}

/// Splits at the first `~~` segment: (document selector, node selector). A trailing `~~` gives
/// an empty node selector.
fn split_at_separator(rest: &str) -> (&str, Option<&str>) {
    let mut start = 0;
    loop {
        let end = rest[start..].find('/').map(|i| start + i);
        let segment = &rest[start..end.unwrap_or(rest.len())];
        if is_separator(segment) {
            let document = rest[..start].strip_suffix('/').unwrap_or(&rest[..start]);
            let selector = end.map_or("", |e| &rest[e + 1..]);
            return (document, Some(selector));
        }
        match end {
            Some(e) => start = e + 1,
            None => return (rest, None),
        }
    }
}

/// `~~`, with either tilde possibly written `%7E` / `%7e` (URI-09).
fn is_separator(segment: &str) -> bool {
    let mut rest = segment;
    for _ in 0..2 {
        if let Some(r) = rest.strip_prefix('~') {
            rest = r;
        } else if rest
            .as_bytes()
            .get(..3)
            .is_some_and(|b| b.eq_ignore_ascii_case(b"%7e"))
        {
            // The three bytes are ASCII, so index 3 is a char boundary.
            rest = &rest[3..];
        } else {
            return false;
        }
    }
    rest.is_empty()
}

/// URI-07: a decoded document path segment must be a usable name.
fn decode_document_segment(raw: &str) -> Result<String, UriError> {
    let name = pct::decode(raw)?;
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(UriError::BadDocumentName);
    }
    Ok(name)
}

/// IO-03: byte index of a '?' outside quotes that is followed by `xmlns(`.
fn embedded_query(decoded: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in decoded.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '?' if decoded[i + 1..].starts_with("xmlns(") => return Some(i),
                _ => {}
            },
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xcap::selector::{ExpandedName, ResolvedNameTest};
    use proptest::prelude::*;

    const ROOT: &str = "/xcap-root";

    fn ok(uri: &str) -> XcapUri {
        parse(uri, ROOT).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    #[test]
    fn rfc4825_6_4_example_uri() {
        // http://xcap.example.com is the XCAP root; `test` is the AUID.
        let uri = parse(
            "/test/users/sip:joe@example.com/index/~~/foo/a:bar/b:baz\
             ?xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace1-uri)",
            "/",
        )
        .unwrap();
        assert_eq!(uri.auid, "test");
        assert_eq!(uri.tree, Tree::Users("sip:joe@example.com".into()));
        assert_eq!(uri.doc_path, vec!["index"]);
        assert_eq!(uri.node_selector.as_deref(), Some("foo/a:bar/b:baz"));
        assert_eq!(uri.raw_node_selector.as_deref(), Some("foo/a:bar/b:baz"));
        assert_eq!(
            uri.raw_document_selector,
            "test/users/sip:joe@example.com/index"
        );
        // NS-16a: both prefixes bound to namespace1.
        let sel = uri.parse_node_selector().unwrap().unwrap();
        let resolved = sel
            .resolve(&uri.bindings(), Some("urn:test:default-namespace"))
            .unwrap();
        let ns: Vec<_> = resolved
            .steps
            .iter()
            .map(|s| match &s.name {
                ResolvedNameTest::Name(ExpandedName { ns, .. }) => ns.clone().unwrap(),
                ResolvedNameTest::Any => unreachable!(),
            })
            .collect();
        assert_eq!(
            ns,
            [
                "urn:test:default-namespace",
                "urn:test:namespace1-uri",
                "urn:test:namespace1-uri"
            ]
        );
    }

    #[test]
    fn uri01_root_variants() {
        for (root, path) in [
            ("/xcap-root", "/xcap-root/resource-lists/global/index"),
            ("/xcap-root/", "/xcap-root/resource-lists/global/index"),
            ("/services", "/services/resource-lists/global/index"),
            ("services", "/services/resource-lists/global/index"),
            ("/", "/resource-lists/global/index"),
            ("", "/resource-lists/global/index"),
            ("/a/b", "/a/b/resource-lists/global/index"),
        ] {
            let uri = parse(path, root).unwrap_or_else(|e| panic!("{root} {path}: {e}"));
            assert_eq!(uri.auid, "resource-lists");
            assert_eq!(uri.tree, Tree::Global);
        }
        for path in [
            "/xcap-rootx/resource-lists/global/index",
            "/other/resource-lists/global/index",
            "/xcap-root",
            "xcap-root/resource-lists/global/index",
            "",
        ] {
            let err = parse(path, ROOT).unwrap_err();
            assert_eq!(err, UriError::NotUnderRoot, "{path}");
            assert!(!err.is_bad_request());
        }
    }

    #[test]
    fn uri03_missing_auid() {
        for path in [
            "/xcap-root/",
            "/xcap-root//users/x/index",
            "/xcap-root/~~/a",
        ] {
            assert_eq!(parse(path, ROOT), Err(UriError::MissingAuid), "{path}");
        }
    }

    #[test]
    fn uri04_tree_must_be_users_or_global() {
        for path in [
            "/xcap-root/resource-lists",
            "/xcap-root/resource-lists/",
            "/xcap-root/resource-lists/Users/sip:a@b/index",
            "/xcap-root/resource-lists/user/sip:a@b/index",
            "/xcap-root/resource-lists/GLOBAL/index",
            "/xcap-root/resource-lists/index",
        ] {
            let err = parse(path, ROOT).unwrap_err();
            assert_eq!(err, UriError::BadTree, "{path}");
            assert!(!err.is_bad_request());
        }
        assert_eq!(
            parse("/xcap-root/resource-lists/users", ROOT),
            Err(UriError::MissingXui)
        );
        assert_eq!(
            parse("/xcap-root/resource-lists/users/", ROOT),
            Err(UriError::MissingXui)
        );
    }

    #[test]
    fn uri05_xui_percent_decoded_not_normalized() {
        let uri = ok("/xcap-root/resource-lists/users/sip%3AAlice%40Example.COM/index");
        assert_eq!(uri.xui(), Some("sip:Alice@Example.COM"));
        assert_eq!(
            uri.raw_document_selector,
            "resource-lists/users/sip%3AAlice%40Example.COM/index"
        );
        let uri = ok("/xcap-root/resource-lists/users/sip:a%2Fb%3Fc@x/index");
        assert_eq!(uri.xui(), Some("sip:a/b?c@x"));
        assert_eq!(uri.doc_path, vec!["index"]);
    }

    #[test]
    fn uri07_document_path_with_subdirectories() {
        let uri = ok("/xcap-root/org.openmobilealliance.pres-content/users/sip:a@b/oma_status-icon/rcs_status_icon");
        assert_eq!(uri.doc_path, vec!["oma_status-icon", "rcs_status_icon"]);
        assert_eq!(uri.document_name(), Some("rcs_status_icon"));
        let uri = ok("/xcap-root/resource-lists/users/sip:a@b/my%20list.xml");
        assert_eq!(uri.doc_path, vec!["my list.xml"]);
        for bad in [
            "/xcap-root/a/users/x/dir/",
            "/xcap-root/a/users/x//index",
            "/xcap-root/a/users/x/.",
            "/xcap-root/a/users/x/..",
            "/xcap-root/a/users/x/%2E%2E",
            "/xcap-root/a/users/x/a%2Fb",
            "/xcap-root/a/users/x/a%00b",
            "/xcap-root/a/global/../index",
        ] {
            assert_eq!(parse(bad, ROOT), Err(UriError::BadDocumentName), "{bad}");
        }
    }

    #[test]
    fn uri08_no_document_named() {
        for path in [
            "/xcap-root/resource-lists/users/sip:a@b",
            "/xcap-root/resource-lists/users/sip:a@b/",
            "/xcap-root/xcap-caps/global",
            "/xcap-root/xcap-caps/global/",
        ] {
            let uri = ok(path);
            assert!(uri.doc_path.is_empty(), "{path}");
            assert_eq!(uri.document_name(), None);
        }
    }

    #[test]
    fn uri17_global_document() {
        let uri = ok("/xcap-root/xcap-caps/global/index");
        assert_eq!(uri.tree, Tree::Global);
        assert_eq!(uri.xui(), None);
        assert_eq!(uri.doc_path, vec!["index"]);
        assert_eq!(uri.node_selector, None);
        assert_eq!(uri.query, None);
    }

    #[test]
    fn uri09_uri10_separator_normalized_and_first_only() {
        for sep in ["~~", "%7E%7E", "%7e~", "~%7E"] {
            let uri = ok(&format!("/xcap-root/a/users/x/index/{sep}/b/~~/c"));
            assert_eq!(uri.doc_path, vec!["index"], "{sep}");
            assert_eq!(uri.node_selector.as_deref(), Some("b/~~/c"));
            assert_eq!(uri.raw_document_selector, "a/users/x/index");
        }
        // `~~~` and `a~~` are not separators; a segment like that is a document name.
        let uri = ok("/xcap-root/a/users/x/~~~/a~~");
        assert_eq!(uri.doc_path, vec!["~~~", "a~~"]);
        assert_eq!(uri.node_selector, None);
        // A separator right after the XUI: the document is missing (handled as 404 later).
        let uri = ok("/xcap-root/a/users/x/~~/b");
        assert!(uri.doc_path.is_empty());
        assert_eq!(uri.node_selector.as_deref(), Some("b"));
    }

    #[test]
    fn empty_node_selector_rejected() {
        for path in [
            "/xcap-root/a/users/x/index/~~",
            "/xcap-root/a/users/x/index/~~/",
            "/xcap-root/a/users/x/index/%7E%7E?xmlns(p=urn:p)",
            "/xcap-root/a/users/x/index/~~/%3Fxmlns(p=urn:p)",
        ] {
            let err = parse(path, ROOT).unwrap_err();
            assert_eq!(err, UriError::EmptyNodeSelector, "{path}");
            assert!(!err.is_bad_request());
        }
    }

    #[test]
    fn uri11_query_split_before_decoding() {
        let uri = ok("/xcap-root/a/users/x/index/~~/r/l%5B@n=%22x%3Fy%22%5D?xmlns(p=urn:p%3Aq)");
        assert_eq!(uri.node_selector.as_deref(), Some(r#"r/l[@n="x?y"]"#));
        assert_eq!(
            uri.raw_node_selector.as_deref(),
            Some("r/l%5B@n=%22x%3Fy%22%5D")
        );
        assert_eq!(uri.query.as_deref(), Some("xmlns(p=urn:p:q)"));
        assert_eq!(uri.bindings().get("p").map(String::as_str), Some("urn:p:q"));
        // A query on a document URI is kept too.
        let uri = ok("/xcap-root/a/users/x/index?xmlns(p=urn:p)");
        assert_eq!(uri.doc_path, vec!["index"]);
        assert_eq!(uri.query.as_deref(), Some("xmlns(p=urn:p)"));
    }

    #[test]
    fn uri11_bad_encoding_is_400() {
        for path in [
            "/xcap-root/a/users/x/index/~~/b%ZZ",
            "/xcap-root/a/users/x/index/~~/b%C3",
            "/xcap-root/a/users/x/index/~~/b%",
            "/xcap-root/a/users/x%FF/index",
            "/xcap-root/a/users/x/in%2dex%G0",
            "/xcap-root/a%/users/x/index",
            "/xcap-root/a/users/x/index/~~/b?xmlns(p=%FF)",
        ] {
            let err = parse(path, ROOT).unwrap_err();
            assert_eq!(err, UriError::BadEncoding, "{path}");
            assert!(err.is_bad_request());
        }
    }

    #[test]
    fn uri12_slash_inside_quoted_value() {
        let uri = ok(
            r#"/xcap-root/rls-services/users/x/index/~~/rls-services/service[@uri="sip:a@b"]/resource-list[@a="http://h/x/~~/y"]"#,
        );
        let sel = uri.parse_node_selector().unwrap().unwrap();
        assert_eq!(sel.steps.len(), 3);
        assert_eq!(sel.steps[2].attr.as_ref().unwrap().value, "http://h/x/~~/y");
        // The same with the slash percent-encoded.
        let uri = ok("/xcap-root/r/users/x/index/~~/r/l%5B@a=%22h%3A%2F%2Fx%2Fy%22%5D");
        let sel = uri.parse_node_selector().unwrap().unwrap();
        assert_eq!(sel.steps.len(), 2);
        assert_eq!(sel.steps[1].attr.as_ref().unwrap().value, "h://x/y");
    }

    #[test]
    fn uri13_raw_and_encoded_characters_agree() {
        let encoded = ok("/xcap-root/r/users/x/index/~~/r/l%5B@name=%22my%20fr%C3%BCnde%22%5D/e%5B@u='a:b@c*(1),=;'%5D");
        let raw = ok("/xcap-root/r/users/x/index/~~/r/l[@name=\"my fründe\"]/e[@u='a:b@c*(1),=;']");
        assert_eq!(encoded.node_selector, raw.node_selector);
        assert_eq!(
            raw.node_selector.as_deref(),
            Some("r/l[@name=\"my fründe\"]/e[@u='a:b@c*(1),=;']")
        );
        assert_ne!(encoded.raw_node_selector, raw.raw_node_selector);
        let sel = raw.parse_node_selector().unwrap().unwrap();
        assert_eq!(sel.steps[1].attr.as_ref().unwrap().value, "my fründe");
        assert_eq!(sel.steps[2].attr.as_ref().unwrap().value, "a:b@c*(1),=;");
    }

    #[test]
    fn io03_encoded_question_mark_before_xmlns() {
        let uri = parse(
            "/services/test/users/sip:joe@example.com/index/~~/foo/a:bar/b:baz\
             %3Fxmlns(a=%22urn:test:namespace1-uri%22)xmlns(b=%22urn:test:namespace2-uri%22)",
            "/services",
        )
        .unwrap();
        assert_eq!(uri.node_selector.as_deref(), Some("foo/a:bar/b:baz"));
        assert_eq!(uri.raw_node_selector.as_deref(), Some("foo/a:bar/b:baz"));
        assert_eq!(
            uri.query.as_deref(),
            Some(r#"xmlns(a="urn:test:namespace1-uri")xmlns(b="urn:test:namespace2-uri")"#)
        );
        let b = uri.bindings();
        assert_eq!(
            b.get("a").map(String::as_str),
            Some("urn:test:namespace1-uri")
        );
        assert_eq!(
            b.get("b").map(String::as_str),
            Some("urn:test:namespace2-uri")
        );
        // Lower-case escape, and an encoded selector before it.
        let uri = ok("/xcap-root/t/users/x/index/~~/a%5B1%5D%3fxmlns(p=urn:p)");
        assert_eq!(uri.node_selector.as_deref(), Some("a[1]"));
        assert_eq!(uri.raw_node_selector.as_deref(), Some("a%5B1%5D"));
        // A '?' inside a quoted value is data, and a literal query takes precedence.
        let uri = ok("/xcap-root/t/users/x/index/~~/a%5B@v=%22x%3Fxmlns(y)%22%5D");
        assert_eq!(uri.node_selector.as_deref(), Some(r#"a[@v="x?xmlns(y)"]"#));
        assert_eq!(uri.query, None);
        let uri = ok("/xcap-root/t/users/x/index/~~/a%3Fxmlns(p=urn:p)?xmlns(q=urn:q)");
        assert_eq!(uri.node_selector.as_deref(), Some("a?xmlns(p=urn:p)"));
        assert_eq!(uri.query.as_deref(), Some("xmlns(q=urn:q)"));
    }

    #[test]
    fn io07_rcs_encoded_entry_selector() {
        let uri = ok("/xcap-root/resource-lists/users/sip%3Aalice%40x/index/~~/resource-lists/list%5B@name=%22rcs%22%5D/entry%5B@uri=%22sip%3Abob%40x%22%5D");
        assert_eq!(uri.xui(), Some("sip:alice@x"));
        assert_eq!(
            uri.node_selector.as_deref(),
            Some(r#"resource-lists/list[@name="rcs"]/entry[@uri="sip:bob@x"]"#)
        );
        let sel = uri.parse_node_selector().unwrap().unwrap();
        assert_eq!(sel.steps.len(), 3);
        assert_eq!(sel.steps[1].attr.as_ref().unwrap().value, "rcs");
        assert_eq!(sel.steps[2].attr.as_ref().unwrap().value, "sip:bob@x");
        assert_eq!(sel.steps[2].raw, r#"entry[@uri="sip:bob@x"]"#);
    }

    /// A document path segment that `parse` accepts back unchanged.
    fn doc_segment() -> impl Strategy<Value = String> {
        any::<String>().prop_filter("not a usable name", |s| {
            !s.is_empty() && s != "." && s != ".." && s != "~~" && !s.contains(['/', '\0'])
        })
    }

    proptest! {
        #[test]
        fn uri_built_from_parts_parses_back(
            auid in "[a-z][a-z0-9.-]{0,20}",
            xui in proptest::option::of(any::<String>().prop_filter("empty or separator", |s| !s.is_empty() && s != "~~")),
            doc in proptest::collection::vec(doc_segment(), 0..4),
            selector in proptest::option::of(any::<String>().prop_filter("no selector", |s| !s.is_empty() && !s.contains('?'))),
            query in proptest::option::of(any::<String>()),
        ) {
            let mut path = format!("/xcap-root/{auid}");
            match &xui {
                Some(x) => path.push_str(&format!("/users/{}", pct::encode_path_segment(x))),
                None => path.push_str("/global"),
            }
            for segment in &doc {
                path.push('/');
                path.push_str(&pct::encode_path_segment(segment));
            }
            let raw_selector = selector.as_deref().map(pct::encode_node_selector);
            if let Some(raw) = &raw_selector {
                path.push_str("/~~/");
                path.push_str(raw);
            }
            let raw_document_selector = path["/xcap-root/".len()..]
                .split("/~~/")
                .next()
                .unwrap_or_default()
                .to_owned();
            if let Some(q) = &query {
                path.push('?');
                path.push_str(&pct::encode_path_segment(q));
            }
            let uri = parse(&path, ROOT).unwrap();
            prop_assert_eq!(uri.auid, auid);
            prop_assert_eq!(uri.tree, xui.map_or(Tree::Global, Tree::Users));
            prop_assert_eq!(uri.doc_path, doc);
            prop_assert_eq!(uri.node_selector, selector);
            prop_assert_eq!(uri.raw_node_selector, raw_selector);
            prop_assert_eq!(uri.query, query);
            prop_assert_eq!(uri.raw_document_selector, raw_document_selector);
        }

        #[test]
        fn parse_never_panics(s in any::<String>(), root in "/?[a-z~]{0,3}/?") {
            let _ = parse(&s, &root);
            let _ = parse(&format!("/xcap-root/{s}"), ROOT);
        }

        #[test]
        fn parse_never_panics_on_uri_alphabet(s in "[a-z/~%7eE3fF?\"'\\[\\]@:x(=)]{0,40}") {
            if let Ok(uri) = parse(&format!("/xcap-root/a/users/x/{s}"), ROOT) {
                if let (Some(raw), Some(decoded)) = (&uri.raw_node_selector, &uri.node_selector) {
                    // The raw selector always decodes to the decoded one (IO-03 cut included).
                    prop_assert_eq!(&pct::decode(raw).unwrap(), decoded);
                }
            }
        }
    }
}
