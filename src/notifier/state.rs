//! The state an xcap-diff NOTIFY reports for a subscribed component (RFC 5875 §4.7; XE-10,
//! XE-10b, XE-12, XE-14; XD-11, XD-12): its current content read from one parsed document
//! version, or `exists="false"`. Pure.

use crate::xcap_diff::ComponentReport;
use crate::xdms::target::{Node, NodeTarget};
use crate::xml::{self, ParsedDoc};

/// The report for the component `node_selector` (with the entry's xmlns() `query`; unprefixed
/// names in the usage's `default_ns`, XE-12) of `doc` (`None`: the document does not exist).
/// A component that is missing, or whose selector no longer selects exactly one node, is
/// reported as not existing (XE-10b, XE-14).
pub fn component_report(
    sel: &str,
    node_selector: &str,
    query: Option<&str>,
    default_ns: Option<&str>,
    doc: Option<&ParsedDoc>,
) -> ComponentReport {
    let node = Node::resolve(node_selector, query, default_ns).ok();
    match node.as_ref().map(|n| &n.kind) {
        Some(NodeTarget::Attribute) => ComponentReport::Attribute {
            sel: sel.to_string(),
            value: node
                .as_ref()
                .zip(doc)
                .and_then(|(n, d)| xml::get_attribute_in(d.doc(), &n.selector).ok()),
        },
        _ => ComponentReport::Element {
            sel: sel.to_string(),
            content: node
                .as_ref()
                .zip(doc)
                .and_then(|(n, d)| xml::standalone_element_in(d.text(), d.doc(), &n.selector).ok()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Limits;
    use std::sync::Arc;

    const RL: &str = "urn:ietf:params:xml:ns:resource-lists";

    fn doc(text: &str) -> ParsedDoc {
        ParsedDoc::parse(Arc::from(text), &Limits::default()).unwrap()
    }

    // XE-10, XE-12: current content of element and attribute components, unprefixed names in
    // the usage's namespace, prefixed ones through the entry's xmlns() query.
    #[test]
    fn xe10_current_content() {
        let d = doc(
            r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:x="urn:x"><list name="f" x:k="v"><entry uri="sip:a@x"/></list></resource-lists>"#,
        );
        let list = component_report(
            "s1",
            "resource-lists/list[@name=\"f\"]",
            None,
            Some(RL),
            Some(&d),
        );
        match list {
            ComponentReport::Element {
                sel,
                content: Some(c),
            } => {
                assert_eq!(sel, "s1");
                assert!(c.starts_with("<list xmlns=\"urn:ietf:params:xml:ns:resource-lists\" xmlns:x=\"urn:x\" name=\"f\""), "{c}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            component_report(
                "s2",
                "resource-lists/list/@y:k",
                Some("xmlns(y=urn:x)"),
                Some(RL),
                Some(&d)
            ),
            ComponentReport::Attribute {
                sel: "s2".into(),
                value: Some("v".into())
            }
        );
    }

    // XE-10b, XE-14: missing components (or documents) are reported as not existing.
    #[test]
    fn xe14_missing_components() {
        let d = doc(r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>"#);
        assert_eq!(
            component_report("s", "resource-lists/list", None, Some(RL), Some(&d)),
            ComponentReport::Element {
                sel: "s".into(),
                content: None
            }
        );
        assert_eq!(
            component_report("s", "resource-lists/@a", None, Some(RL), None),
            ComponentReport::Attribute {
                sel: "s".into(),
                value: None
            }
        );
    }
}
