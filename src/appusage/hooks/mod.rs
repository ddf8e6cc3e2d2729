//! Application-usage constraint hooks: the checks an XCAP server runs on the whole resulting
//! document after schema validation and before commit (RFC 4825 §5.3, §8.2.5). Each hook is a
//! pure function over a parsed `roxmltree` document; no I/O. A failed uniqueness constraint is
//! reported with `<exists field>` / `<alt-value>` data for `<uniqueness-failure>` (RFC 4825
//! §11.1, ER-11); any other failure carries the phrase for `<constraint-failure>` (ER-12).
//!
//! This module holds the public hook API, the conflict-report collector, the builder for
//! `exists/@field` node selectors, and the small URI helpers (percent-encoding, XUI
//! canonicalisation, XCAP-root-relative reference parsing) shared by the hook families:
//! - [`resource_lists`]: RFC 4826 §3.4.5 (RL-03..RL-06, RL-19, SX-01, SX-02);
//! - [`rls_services`]: RFC 4826 §4.4.5 (RL-11..RL-14);
//! - [`policy`]: common-policy based documents (CP-02, CP-24, CP-26, IX-08a).

pub mod policy;
pub mod resource_lists;
pub mod rls_services;
pub mod shared;

pub use rls_services::{alt_service_uri, service_uri_field, service_uris};

use crate::identity::split_scheme;
use crate::identity::xui::same_xui;
use crate::xcap::pct;
use roxmltree::Node;

/// `urn:ietf:params:xml:ns:resource-lists` (RFC 4826 §8.3.1).
pub const NS_RESOURCE_LISTS: &str = "urn:ietf:params:xml:ns:resource-lists";
/// `urn:ietf:params:xml:ns:rls-services` (RFC 4826 §8.3.2).
pub const NS_RLS_SERVICES: &str = "urn:ietf:params:xml:ns:rls-services";
/// `urn:ietf:params:xml:ns:common-policy` (RFC 4745 §15.1).
pub const NS_COMMON_POLICY: &str = "urn:ietf:params:xml:ns:common-policy";
/// `urn:ietf:params:xml:ns:pres-rules` (RFC 5025 §11.2).
pub const NS_PRES_RULES: &str = "urn:ietf:params:xml:ns:pres-rules";
/// `urn:oma:xml:xdm:common-policy` (OMA XDM common-policy extensions, CP-20).
pub const NS_OMA_COMMON_POLICY: &str = "urn:oma:xml:xdm:common-policy";
/// `urn:xcapd:xml:ns:im-rules`: this suite's IM access-policy extension (IX-07b).
pub const NS_IM_RULES: &str = "urn:xcapd:xml:ns:im-rules";

/// The AUID a list reference must name (RL-13, CP-26).
const AUID_RESOURCE_LISTS: &str = "resource-lists";

/// What a hook knows about the document being written.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    /// Absolute XCAP root URI, e.g. `http://xcap.example.com/xcap-root` (no trailing '/').
    pub xcap_root: &'a str,
    pub auid: &'a str,
    /// Canonical XUI of the document's home (`sip:alice@example.com`); `None` in the global tree.
    pub xui: Option<&'a str>,
    /// Document path below the home or global directory, e.g. `index`.
    pub document_path: &'a str,
    /// Config switch: allow references to other users' documents and to other XCAP roots.
    pub allow_foreign_references: bool,
    /// OMA mode (SX-01): `<list name>` is required.
    pub oma_compliant: bool,
}

/// One `<exists field="…">` of a `<uniqueness-failure>` with its `<alt-value>` proposals (ER-11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniquenessField {
    /// Relative, percent-encoded node selector from the root element to the attribute.
    pub field: String,
    pub alt_values: Vec<String>,
}

/// Why a document fails its application usage's constraints (RFC 4825 §8.2.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintViolation {
    /// 409 `<uniqueness-failure>`: one entry per non-unique value (ER-11).
    #[error("uniqueness failure")]
    Uniqueness(Vec<UniquenessField>),
    /// 409 `<constraint-failure phrase=…>` (ER-12).
    #[error("{0}")]
    Constraint(String),
}

/// A constraint hook: runs on the complete, schema-valid resulting document.
pub type Hook = fn(&roxmltree::Document, &HookContext) -> Result<(), ConstraintViolation>;

/// Hook names as used by the app-usage descriptors, with their implementations.
const HOOKS: &[(&str, Hook)] = &[
    ("resource-lists", resource_lists::resource_lists),
    ("group-usage-list", resource_lists::group_usage_list),
    ("rls-services", rls_services::rls_services),
    ("pres-rules", policy::pres_rules),
    ("oma-pres-rules", policy::oma_pres_rules),
    ("im-rules", policy::im_rules),
    ("user-profile", shared::user_profile),
    ("pres-content", shared::pres_content),
    ("groups", shared::groups),
];

const HOOK_NAMES: &[&str] = &[
    "resource-lists",
    "group-usage-list",
    "rls-services",
    "pres-rules",
    "oma-pres-rules",
    "im-rules",
    "user-profile",
    "pres-content",
    "groups",
];

/// Looks a hook up by the name an app-usage descriptor gives (AU-11d).
pub fn hook_by_name(name: &str) -> Option<Hook> {
    HOOKS.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}

/// Every hook name [`hook_by_name`] knows, so the registry can refuse unknown names at start.
pub fn hook_names() -> &'static [&'static str] {
    HOOK_NAMES
}

// ---------------------------------------------------------------------------------------------
// Conflict-report collector
// ---------------------------------------------------------------------------------------------

/// Gathers every uniqueness failure (one `<exists>` each) and the first other constraint
/// failure. Uniqueness wins when both occur, following the check order of §8.2.5 (OP-23).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    uniqueness: Vec<UniquenessField>,
    constraint: Option<String>,
}

impl Findings {
    pub(crate) fn uniqueness(&mut self, field: String, alt_values: Vec<String>) {
        self.uniqueness.push(UniquenessField { field, alt_values });
    }

    /// Records a constraint failure; only the first one in document order is reported.
    pub(crate) fn constraint(&mut self, phrase: &str) {
        if self.constraint.is_none() {
            self.constraint = Some(phrase.to_owned());
        }
    }

    pub(crate) fn finish(self) -> Result<(), ConstraintViolation> {
        if !self.uniqueness.is_empty() {
            Err(ConstraintViolation::Uniqueness(self.uniqueness))
        } else if let Some(phrase) = self.constraint {
            Err(ConstraintViolation::Constraint(phrase))
        } else {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small XML helpers
// ---------------------------------------------------------------------------------------------

/// True when `node` is an element with this namespace and local name.
pub(crate) fn is_element(node: &Node, ns: &str, local: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == local
}

/// Element children in namespace `ns`; elements of other namespaces are extension content
/// (RL-02c) and never take part in these constraints.
pub(crate) fn children_in<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    ns: &'a str,
) -> impl Iterator<Item = Node<'a, 'input>> + 'a {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().namespace() == Some(ns))
}

/// Concatenated text content of an element (comments and PIs skipped).
pub(crate) fn text_content(node: &Node) -> String {
    node.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect()
}

/// Value of an `xs:anyURI` item as the schema sees it (whitespace facet "collapse").
pub(crate) fn any_uri_value(raw: &str) -> &str {
    raw.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

// ---------------------------------------------------------------------------------------------
// exists/@field builder (ER-11, NS-15)
// ---------------------------------------------------------------------------------------------

/// Prefixes used in `field` selectors for namespaces other than the usage's default one.
const WELL_KNOWN_PREFIXES: &[(&str, &str)] = &[
    (NS_COMMON_POLICY, "cp"),
    (NS_PRES_RULES, "pr"),
    (NS_OMA_COMMON_POLICY, "ocp"),
    (NS_RESOURCE_LISTS, "rl"),
    (NS_RLS_SERVICES, "rls"),
    (NS_IM_RULES, "im"),
];

/// One step of a field selector: an element plus its 1-based position among the siblings
/// that its rendered name test counts (NS-15).
#[derive(Debug, Clone)]
pub(crate) struct FieldStep<'a, 'input> {
    node: Node<'a, 'input>,
    /// `None` for the root element, which is unique and carries no position.
    position: Option<usize>,
}

impl<'a, 'input> FieldStep<'a, 'input> {
    /// The root element's step: unique, so written without a position.
    pub(crate) fn root(node: Node<'a, 'input>) -> Self {
        FieldStep {
            node,
            position: None,
        }
    }

    /// A step whose same-name position the caller already counted.
    pub(crate) fn with_position(node: Node<'a, 'input>, position: usize) -> Self {
        FieldStep {
            node,
            position: Some(position),
        }
    }
}

/// Builds `exists/@field` values: a relative node selector starting at the root element,
/// percent-encoded, with an `xmlns()` query when prefixes are needed (RFC 4825 §11.1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldBuilder<'d> {
    /// The usage's default document namespace (URI-15): unprefixed names expand to it.
    pub(crate) default_ns: &'d str,
}

impl<'d> FieldBuilder<'d> {
    /// Steps from the root element down to `node` inclusive, positions counted here.
    pub(crate) fn steps_to<'a, 'input>(
        &self,
        node: Node<'a, 'input>,
    ) -> Vec<FieldStep<'a, 'input>> {
        let mut steps: Vec<FieldStep<'a, 'input>> = node
            .ancestors()
            .filter(|n| n.is_element())
            .map(|n| {
                let is_root = n.parent_element().is_none();
                FieldStep {
                    node: n,
                    position: if is_root {
                        None
                    } else {
                        Some(self.position_of(n))
                    },
                }
            })
            .collect();
        steps.reverse();
        steps
    }

    /// Position among element siblings with the same expanded name; among all element
    /// siblings when the name has to be written as `*` (no namespace under a default one).
    fn position_of(&self, node: Node) -> usize {
        let wildcard = self.needs_wildcard(&node);
        let name = node.tag_name();
        1 + node
            .prev_siblings()
            .skip(1)
            .filter(|s| s.is_element() && (wildcard || s.tag_name() == name))
            .count()
    }

    /// An element in no namespace cannot be named when unprefixed names expand to a default
    /// namespace and prefixes must be bound to a namespace: `*[n]` selects it instead.
    fn needs_wildcard(&self, node: &Node) -> bool {
        element_namespace(node).is_none() && !self.default_ns.is_empty()
    }

    /// Renders `steps` followed by `/@attr`.
    pub(crate) fn render(&self, steps: &[FieldStep], attr: &str) -> String {
        let mut bindings: Vec<(String, String)> = Vec::new();
        let mut parts: Vec<String> = Vec::with_capacity(steps.len() + 1);
        for step in steps {
            let node = &step.node;
            let local = node.tag_name().name();
            let mut name = match element_namespace(node) {
                Some(ns) if ns == self.default_ns => local.to_owned(),
                Some(ns) => {
                    let prefix = prefix_for(&mut bindings, ns, node);
                    format!("{prefix}:{local}")
                }
                None if self.default_ns.is_empty() => local.to_owned(),
                None => "*".to_owned(),
            };
            if let Some(pos) = step.position {
                name.push_str(&format!("[{pos}]"));
            }
            parts.push(pct::encode_path_segment(&name));
        }
        parts.push(format!("@{}", pct::encode_path_segment(attr)));
        let mut field = parts.join("/");
        if !bindings.is_empty() {
            field.push('?');
            for (prefix, ns) in &bindings {
                field.push_str(&pct::encode_query(&format!("xmlns({prefix}={ns})")));
            }
        }
        field
    }

    /// Convenience: field for attribute `attr` of `node`, all positions counted here.
    #[cfg(test)]
    pub(crate) fn field(&self, node: Node, attr: &str) -> String {
        self.render(&self.steps_to(node), attr)
    }
}

/// The element's namespace; `xmlns=""` undeclares the default, which is no namespace.
fn element_namespace<'a>(node: &Node<'a, '_>) -> Option<&'a str> {
    node.tag_name().namespace().filter(|ns| !ns.is_empty())
}

/// The prefix bound to `ns` in this field, choosing one on first use: a well-known prefix,
/// else the document's own prefix, else a generated `nsN`; never one already taken.
fn prefix_for(bindings: &mut Vec<(String, String)>, ns: &str, node: &Node) -> String {
    if let Some((p, _)) = bindings.iter().find(|(_, n)| n == ns) {
        return p.clone();
    }
    let taken = |p: &str, b: &[(String, String)]| b.iter().any(|(q, _)| q == p);
    let well_known = WELL_KNOWN_PREFIXES
        .iter()
        .find(|(n, _)| *n == ns)
        .map(|(_, p)| (*p).to_owned());
    let from_doc = node
        .lookup_prefix(ns)
        .filter(|p| is_ncname(p))
        .map(str::to_owned);
    let chosen = well_known
        .into_iter()
        .chain(from_doc)
        .find(|p| !taken(p, bindings))
        .unwrap_or_else(|| {
            (1usize..)
                .map(|i| format!("ns{i}"))
                .find(|p| !taken(p, bindings))
                .unwrap_or_default()
        });
    bindings.push((chosen.clone(), ns.to_owned()));
    chosen
}

/// XML NCName check, loose: enough to reuse a document prefix safely in a selector.
fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

// ---------------------------------------------------------------------------------------------
// Percent-encoding (RFC 3986 §2.1)
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// References into XCAP (RFC 4825 §6; RFC 4826 §3.4.5, §4.4.5)
// ---------------------------------------------------------------------------------------------

/// Characters that can never appear in a URI reference (RFC 3986 §2): controls, space and
/// the excluded delimiters. Non-ASCII is tolerated (IRI-style values pass `xs:anyURI`).
fn has_forbidden_uri_chars(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_ascii_control() || c.is_whitespace() || "\"<>\\^`{|}".contains(c))
}

/// An absolute `http`/`https` URI split into its lowercased origin and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUri<'u> {
    /// `scheme://authority`, lowercased, default port removed.
    origin: String,
    /// Path plus optional query, as written (starts with '/' or '?' or is empty).
    rest: &'u str,
}

/// Parses an absolute HTTP(S) URI (RL-06: `<external anchor>` must be one).
pub(crate) fn parse_http_uri(s: &str) -> Option<HttpUri<'_>> {
    if has_forbidden_uri_chars(s) {
        return None;
    }
    let (scheme, after) = split_scheme(s)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let hier = after.strip_prefix("//")?;
    let end = hier.find(['/', '?', '#']).unwrap_or(hier.len());
    let authority = hier[..end].to_ascii_lowercase();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if host_port.is_empty() || host_port.starts_with(':') {
        return None;
    }
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    let authority = authority
        .strip_suffix(default_port)
        .map(str::to_owned)
        .unwrap_or(authority);
    Some(HttpUri {
        origin: format!("{scheme}://{authority}"),
        rest: &hier[end..],
    })
}

/// The part of absolute `uri` after `xcap_root` + '/', when `uri` lies under that root
/// (same origin, compared case-insensitively; path compared exactly).
pub(crate) fn relative_to_root<'u>(uri: &'u str, xcap_root: &str) -> Option<&'u str> {
    let target = parse_http_uri(uri)?;
    let root = parse_http_uri(xcap_root)?;
    if target.origin != root.origin {
        return None;
    }
    let root_path = root.rest.trim_end_matches('/');
    target.rest.strip_prefix(root_path)?.strip_prefix('/')
}

/// True for an RFC 3986 relative-path reference: no scheme, no authority, no leading '/'
/// (RL-05: `entry-ref/@ref` is resolved against the XCAP root).
pub(crate) fn is_relative_path_reference(s: &str) -> bool {
    if s.is_empty() || s.starts_with('/') || has_forbidden_uri_chars(s) {
        return false;
    }
    let first_segment_end = s.find(['/', '?', '#']).unwrap_or(s.len());
    !s[..first_segment_end].contains(':')
}

/// A reference below the XCAP root split at the node-selector separator (URI-09, URI-11):
/// the percent-encoded document-selector segments and the node selector, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XcapReference<'u> {
    segments: Vec<&'u str>,
    node_selector: Option<&'u str>,
}

impl<'u> XcapReference<'u> {
    /// Splits `rel` (relative to the XCAP root, no leading '/').
    pub(crate) fn parse(rel: &'u str) -> Self {
        // The query is split off before anything else (URI-11); a fragment is not XCAP.
        let path = rel.split(['?', '#']).next().unwrap_or_default();
        let mut segments = Vec::new();
        let mut node_selector = None;
        let mut rest = path;
        loop {
            let (seg, tail) = match rest.find('/') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if seg == "~~" || seg.eq_ignore_ascii_case("%7E%7E") {
                node_selector = Some(tail.unwrap_or_default());
                break;
            }
            segments.push(seg);
            match tail {
                Some(t) => rest = t,
                None => break,
            }
        }
        XcapReference {
            segments,
            node_selector,
        }
    }

    pub(crate) fn has_node_selector(&self) -> bool {
        self.node_selector.is_some_and(|n| !n.is_empty())
    }

    /// For a URI under an unknown XCAP root: some segment is the AUID `resource-lists`
    /// followed by a tree segment (`users` or `global`).
    pub(crate) fn mentions_resource_lists(&self) -> bool {
        self.segments
            .windows(2)
            .any(|w| w[0] == AUID_RESOURCE_LISTS && (w[1] == "users" || w[1] == "global"))
    }

    /// Checks that the reference names a resource-lists document (RL-13, CP-26): AUID
    /// `resource-lists`, no dot segments, a non-empty document path, and — when `owner` is
    /// given — the users tree of that very XUI.
    pub(crate) fn names_list_document(&self, owner: Option<&str>) -> bool {
        let decoded_dot = |s: &&str| {
            let d = pct::decode(s).ok();
            matches!(d.as_deref(), Some(".") | Some("..") | None)
        };
        if self.segments.iter().any(decoded_dot) {
            return false;
        }
        let doc_start = match self.segments.as_slice() {
            [auid, tree, xui, ..]
                if *auid == AUID_RESOURCE_LISTS && *tree == "users" && !xui.is_empty() =>
            {
                if let Some(owner) = owner {
                    if !same_xui(xui, owner) {
                        return false;
                    }
                }
                3
            }
            [auid, tree, ..]
                if *auid == AUID_RESOURCE_LISTS && *tree == "global" && owner.is_none() =>
            {
                2
            }
            _ => return false,
        };
        let doc = &self.segments[doc_start..];
        !doc.is_empty() && doc.iter().all(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RL_DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="a"><entry uri="sip:x@example.com"/><entry uri="sip:y@example.com"/></list>
  <list name="b"><entry uri="sip:z@example.com"/></list>
</resource-lists>"#;

    #[test]
    fn hook_registry_knows_every_name_er12() {
        for name in hook_names() {
            assert!(hook_by_name(name).is_some(), "{name}");
        }
        assert_eq!(hook_names().len(), HOOKS.len());
        assert!(hook_by_name("xcap-caps").is_none());
    }

    #[test]
    fn http_uri_parsing_rl06() {
        assert!(parse_http_uri("http://xcap.example.com/x").is_some());
        assert!(parse_http_uri("HTTPS://XCAP.example.com").is_some());
        assert!(parse_http_uri("sip:alice@example.com").is_none());
        assert!(parse_http_uri("ftp://example.com/x").is_none());
        assert!(parse_http_uri("http:/relative").is_none());
        assert!(parse_http_uri("http:///nohost").is_none());
        assert!(parse_http_uri("http://host/with space").is_none());
        assert!(parse_http_uri("resource-lists/users/x/index").is_none());
    }

    #[test]
    fn relative_to_root_compares_origin_case_insensitively() {
        let root = "http://xcap.example.com/xcap-root";
        assert_eq!(
            relative_to_root(
                "HTTP://XCAP.example.com:80/xcap-root/resource-lists/x",
                root
            ),
            Some("resource-lists/x")
        );
        assert_eq!(
            relative_to_root("http://xcap.example.com/xcap-rootx/a", root),
            None
        );
        assert_eq!(
            relative_to_root("http://other.example.com/xcap-root/a", root),
            None
        );
        assert_eq!(
            relative_to_root("https://xcap.example.com/xcap-root/a", root),
            None
        );
        assert_eq!(
            relative_to_root(
                "http://xcap.example.com/resource-lists/a",
                "http://xcap.example.com"
            ),
            Some("resource-lists/a")
        );
    }

    #[test]
    fn relative_path_reference_rl05() {
        assert!(is_relative_path_reference(
            "resource-lists/users/sip:bill@example.com/index/~~/resource-lists/list%5b@name=%22list1%22%5d"
        ));
        assert!(!is_relative_path_reference("/resource-lists/users/x/index"));
        assert!(!is_relative_path_reference(
            "http://xcap.example.com/resource-lists/users/x/index"
        ));
        assert!(!is_relative_path_reference(
            "//xcap.example.com/resource-lists"
        ));
        assert!(!is_relative_path_reference("sip:bill@example.com/index"));
        assert!(!is_relative_path_reference(""));
        assert!(!is_relative_path_reference(
            "resource-lists/users/a b/index"
        ));
    }

    #[test]
    fn xcap_reference_split_uri09() {
        let r = XcapReference::parse("resource-lists/users/sip:a@b/index/~~/resource-lists/list%5B@name=%22x%22%5D?xmlns(a=b)");
        assert_eq!(
            r.segments,
            vec!["resource-lists", "users", "sip:a@b", "index"]
        );
        assert_eq!(
            r.node_selector,
            Some("resource-lists/list%5B@name=%22x%22%5D")
        );
        assert!(r.has_node_selector());
        assert!(r.names_list_document(Some("sip:a@b")));
        assert!(!r.names_list_document(Some("sip:c@b")));
        let r = XcapReference::parse("resource-lists/users/sip:a@b/index/%7e%7E/x");
        assert_eq!(r.node_selector, Some("x"));
        let r = XcapReference::parse("resource-lists/users/sip:a@b/index");
        assert!(!r.has_node_selector());
        assert!(r.names_list_document(Some("a@b")));
        assert!(!XcapReference::parse("resource-lists/users/sip:a@b/").names_list_document(None));
        assert!(
            !XcapReference::parse("resource-lists/users/sip:a@b/../sip:c@b/index")
                .names_list_document(None)
        );
        assert!(
            !XcapReference::parse("resource-lists/users/sip:a@b/%2E%2E/index")
                .names_list_document(None)
        );
        assert!(!XcapReference::parse("rls-services/users/sip:a@b/index").names_list_document(None));
        assert!(XcapReference::parse("resource-lists/global/index").names_list_document(None));
        assert!(!XcapReference::parse("resource-lists/global/index")
            .names_list_document(Some("sip:a@b")));
    }

    #[test]
    fn field_positions_count_same_name_siblings_ns15() {
        let doc = roxmltree::Document::parse(RL_DOC).unwrap_or_else(|e| panic!("{e}"));
        let entry = doc
            .descendants()
            .filter(|n| n.has_tag_name("entry"))
            .nth(1)
            .unwrap_or_else(|| panic!("no entry"));
        let fb = FieldBuilder {
            default_ns: NS_RESOURCE_LISTS,
        };
        assert_eq!(
            fb.field(entry, "uri"),
            "resource-lists/list%5B1%5D/entry%5B2%5D/@uri"
        );
        let list_b = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("b"))
            .unwrap_or_else(|| panic!("no list b"));
        assert_eq!(fb.field(list_b, "name"), "resource-lists/list%5B2%5D/@name");
    }

    #[test]
    fn field_uses_prefix_and_xmlns_query_off_default_namespace_er11() {
        let xml = r#"<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy"><cp:rule id="a"/><cp:rule id="a"/></cp:ruleset>"#;
        let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}"));
        let rule = doc
            .descendants()
            .filter(|n| n.has_tag_name("rule"))
            .nth(1)
            .unwrap_or_else(|| panic!());
        let fb = FieldBuilder {
            default_ns: NS_PRES_RULES,
        };
        assert_eq!(
            fb.field(rule, "id"),
            "cp:ruleset/cp:rule%5B2%5D/@id?xmlns(cp=urn:ietf:params:xml:ns:common-policy)"
        );
        let fb = FieldBuilder {
            default_ns: NS_COMMON_POLICY,
        };
        assert_eq!(fb.field(rule, "id"), "ruleset/rule%5B2%5D/@id");
    }

    #[test]
    fn field_prefix_falls_back_to_document_prefix_then_generated() {
        let xml = r#"<r xmlns="urn:d" xmlns:foo="urn:x" xmlns:p="urn:y"><foo:a/><foo:a><p:b v="1"/></foo:a></r>"#;
        let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}"));
        let b = doc
            .descendants()
            .find(|n| n.has_tag_name("b"))
            .unwrap_or_else(|| panic!());
        let fb = FieldBuilder {
            default_ns: "urn:d",
        };
        assert_eq!(
            fb.field(b, "v"),
            "r/foo:a%5B2%5D/p:b%5B1%5D/@v?xmlns(foo=urn:x)xmlns(p=urn:y)"
        );
    }

    #[test]
    fn field_wildcard_for_no_namespace_element_under_default_namespace() {
        let xml = r#"<r xmlns="urn:d"><x/><y xmlns=""/><y xmlns="" v="1"/></r>"#;
        let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}"));
        let y = doc
            .descendants()
            .find(|n| n.attribute("v").is_some())
            .unwrap_or_else(|| panic!());
        let fb = FieldBuilder {
            default_ns: "urn:d",
        };
        assert_eq!(fb.field(y, "v"), "r/*%5B3%5D/@v");
    }

    #[test]
    fn findings_uniqueness_wins_over_constraint_op23() {
        let mut f = Findings::default();
        f.constraint("first");
        f.constraint("second");
        assert_eq!(
            f.finish(),
            Err(ConstraintViolation::Constraint("first".into()))
        );
        let mut f = Findings::default();
        f.constraint("c");
        f.uniqueness("x/@y".into(), vec![]);
        assert!(matches!(f.finish(), Err(ConstraintViolation::Uniqueness(v)) if v.len() == 1));
        assert_eq!(Findings::default().finish(), Ok(()));
    }
}
