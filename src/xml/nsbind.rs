//! Namespace bindings in scope at an element: the `namespace::*` GET body (RFC 4825 §7.10, §10)
//! and the context used to read element fragments and prefixed attributes (§8.2.2).
//!
//! Standards items: NS-12, NS-18, OP-07, OP-30.

use super::attvalue::escape;
use super::locate::locate_element;
use super::parse::{parse_document, Limits};
use super::XmlError;
use crate::xcap::selector::{ResolvedSelector, ResolvedTerminal};
use roxmltree::Node;

/// One namespace binding: `prefix` None is the default namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    pub prefix: Option<&'a str>,
    pub uri: &'a str,
}

/// Bindings in scope at `node` as declared in the document, the default namespace first, then
/// prefixes in alphabetical order. The implicit `xml` prefix is left out, and so is an
/// undeclared default namespace (`xmlns=""`). The document node has no bindings.
pub fn in_scope<'a>(node: Node<'a, '_>) -> Vec<Binding<'a>> {
    let mut out: Vec<Binding<'a>> = node
        .namespaces()
        .filter(|ns| !ns.uri().is_empty() && ns.name() != Some("xml"))
        .map(|ns| Binding {
            prefix: ns.name(),
            uri: ns.uri(),
        })
        .collect();
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    out
}

/// Writes bindings as ` xmlns="…" xmlns:p="…"` (each with a leading space).
pub(crate) fn declarations(bindings: &[Binding<'_>]) -> String {
    let mut out = String::new();
    for b in bindings {
        match b.prefix {
            None => out.push_str(" xmlns=\""),
            Some(p) => {
                out.push_str(" xmlns:");
                out.push_str(p);
                out.push_str("=\"");
            }
        }
        out.push_str(&escape(b.uri));
        out.push('"');
    }
    out
}

/// The qualified name of an element exactly as written in its start tag.
pub(crate) fn written_qname<'t>(text: &'t str, node: Node<'_, '_>) -> &'t str {
    let start = node.range().start + 1;
    let rest = text.get(start..).unwrap_or("");
    let end = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// `namespace::*` GET (NS-18, OP-30): one empty element with the selected element's prefix and
/// local name, carrying every binding in scope there as the document declares it (not the
/// request's xmlns() prefixes).
pub fn get_namespace_bindings(
    doc: &str,
    sel: &ResolvedSelector,
    limits: &Limits,
) -> Result<String, XmlError> {
    get_namespace_bindings_in(doc, &parse_document(doc, limits)?, sel)
}

/// [`get_namespace_bindings`] on an already parsed document.
pub fn get_namespace_bindings_in(
    doc: &str,
    parsed: &roxmltree::Document<'_>,
    sel: &ResolvedSelector,
) -> Result<String, XmlError> {
    if sel.terminal != Some(ResolvedTerminal::NamespaceBindings) {
        return Err(XmlError::NoMatch);
    }
    let node = locate_element(parsed, &sel.steps)?;
    Ok(format!(
        "<{}{}/>",
        written_qname(doc, node),
        declarations(&in_scope(node))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::locate::tests::{sel, NS16_DOC};

    const L: Limits = Limits {
        max_depth: 64,
        max_nodes: 1000,
        max_attributes_per_element: 256,
        max_attributes: 200_000,
    };

    #[test]
    fn ns18_section10_bindings_of_baz() {
        // RFC 4825 §10 example on the §6.4 document: the bindings actually in scope at <baz>,
        // where the inner default namespace shadows foo's.
        let s = sel("{urn:test:default-namespace}foo/{urn:test:namespace1-uri}bar/{urn:test:namespace1-uri}baz/namespace::*");
        assert_eq!(
            get_namespace_bindings(NS16_DOC, &s, &L).as_deref(),
            Ok(r#"<baz xmlns="urn:test:namespace1-uri" xmlns:ns1="urn:test:namespace1-uri"/>"#)
        );
    }

    #[test]
    fn ns18_prefix_of_selected_element_kept_and_xml_prefix_excluded() {
        let s = sel("{urn:test:default-namespace}foo/{urn:test:namespace1-uri}bar/{urn:test:namespace2-uri}baz/namespace::*");
        assert_eq!(
            get_namespace_bindings(NS16_DOC, &s, &L).as_deref(),
            Ok(
                r#"<ns2:baz xmlns="urn:test:namespace1-uri" xmlns:ns1="urn:test:namespace1-uri" xmlns:ns2="urn:test:namespace2-uri"/>"#
            )
        );
        let doc = r#"<r xml:lang="en" xmlns:q="a&amp;&quot;b"/>"#;
        assert_eq!(
            get_namespace_bindings(doc, &sel("r/namespace::*"), &L).as_deref(),
            Ok(r#"<r xmlns:q="a&amp;&quot;b"/>"#)
        );
    }

    #[test]
    fn ns12_no_bindings_and_undeclared_default() {
        assert_eq!(
            get_namespace_bindings("<r><x/></r>", &sel("r/x/namespace::*"), &L).as_deref(),
            Ok("<x/>")
        );
        let doc = r#"<r xmlns="urn:d" xmlns:p="urn:p"><x xmlns=""/></r>"#;
        assert_eq!(
            get_namespace_bindings(doc, &sel("{urn:d}r/x/namespace::*"), &L).as_deref(),
            Ok(r#"<x xmlns:p="urn:p"/>"#)
        );
    }

    #[test]
    fn ns12_missing_element_is_no_match() {
        assert_eq!(
            get_namespace_bindings("<r/>", &sel("r/x/namespace::*"), &L),
            Err(XmlError::NoMatch)
        );
    }
}
