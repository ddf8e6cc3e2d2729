//! Element PUT bodies (RFC 4825 §7.4, §8.2.2): exactly one well-balanced element, read in the
//! namespace context of the insertion point (XML Fragment Interchange), so a body without
//! `xmlns` inherits the parent's default namespace.
//!
//! Standards items: OP-06, OP-07, OP-19, NS-17, ER-05, IO-07.
//!
//! A leading XML declaration is tolerated and dropped when it names UTF-8 or no encoding (some
//! clients send whole-document style bodies); one naming another encoding gives `NotUtf8`.

use super::nsbind::{declarations, Binding};
use super::parse::{is_xml_space, parse_document, xml_declaration_end, Limits};
use super::XmlError;
use crate::xcap::selector::ExpandedName;

/// A checked element body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment<'b> {
    /// The element's bytes, without surrounding whitespace or declaration; inserted verbatim.
    pub text: &'b str,
    /// The expanded name of the element, resolved in the insertion context (OP-17 uses it).
    pub name: ExpandedName,
}

/// Synthetic wrapper's name; it never reaches a document.
const WRAPPER: &str = "xcap-fragment-context";

/// Checks `body` as the content of an element carrying `context` (the bindings in scope at the
/// parent) and returns the element text trimmed of surrounding whitespace.
pub fn parse_fragment<'b>(
    body: &'b str,
    context: &[Binding<'_>],
    limits: &Limits,
) -> Result<Fragment<'b>, XmlError> {
    let core = strip_declaration(body)?;
    let trimmed = core.trim_matches(is_xml_space);
    if trimmed.is_empty() {
        return Err(XmlError::NotXmlFrag);
    }
    let open = format!("<{WRAPPER}{}>", declarations(context));
    let wrapped = format!("{open}{trimmed}</{WRAPPER}>");
    // The wrapper adds one level of nesting and two nodes.
    // Its namespace declarations are attributes of the wrapper; the spliced document is
    // checked against the real per-element limit afterwards.
    let wrapper_limits = Limits {
        max_depth: limits.max_depth.saturating_add(1),
        max_nodes: limits.max_nodes.saturating_add(2),
        max_attributes_per_element: limits.max_attributes_per_element.saturating_add(1024),
        max_attributes: limits.max_attributes.saturating_add(1024),
    };
    let doc = match parse_document(&wrapped, &wrapper_limits) {
        Ok(doc) => doc,
        Err(e @ (XmlError::TooDeep | XmlError::TooManyNodes | XmlError::TooManyAttributes(_))) => {
            return Err(e)
        }
        Err(_) => return Err(XmlError::NotXmlFrag),
    };
    let mut children = doc.root_element().children();
    // Exactly one child, which is an element spanning the whole trimmed body: text, comments,
    // PIs or a second element around it are refused (ER-05).
    let element = match (children.next(), children.next()) {
        (Some(el), None) if el.is_element() => el,
        _ => return Err(XmlError::NotXmlFrag),
    };
    if element.range() != (open.len()..open.len() + trimmed.len()) {
        return Err(XmlError::NotXmlFrag);
    }
    let tag = element.tag_name();
    Ok(Fragment {
        text: trimmed,
        name: ExpandedName {
            ns: super::locate::namespace_of(tag.namespace()).map(str::to_string),
            local: tag.name().to_string(),
        },
    })
}

/// Drops a UTF-8 BOM and a leading XML declaration.
fn strip_declaration(body: &str) -> Result<&str, XmlError> {
    let end = xml_declaration_end(body)?;
    let rest = match end {
        Some(end) => &body[end..],
        None => body,
    };
    Ok(rest.strip_prefix('\u{FEFF}').unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_depth: 64,
        max_nodes: 1000,
        max_attributes_per_element: 256,
        max_attributes: 200_000,
    };

    fn frag(body: &str) -> Result<Fragment<'_>, XmlError> {
        parse_fragment(body, &[], &L)
    }

    #[test]
    fn er05_not_exactly_one_element() {
        // ER-05 fixtures: `<a/><b/>`, plain text, `<a>`.
        for body in [
            "<a/><b/>",
            "plain text",
            "<a>",
            "",
            "   \n",
            "<a/>text",
            "<!-- c --><a/>",
            "<a/><?pi?>",
            "<![CDATA[ ]]><a/>",
            "&#32;<a/>",
            "</a>",
            "<a></b>",
            "<!DOCTYPE a><a/>",
            "<a/>\n<?xml version=\"1.0\"?>",
        ] {
            assert_eq!(frag(body), Err(XmlError::NotXmlFrag), "{body:?}");
        }
    }

    #[test]
    fn ns17_surrounding_whitespace_trimmed_inner_kept() {
        let f = frag(" \r\n\t<a x='1'>\n  <b/> </a>\n\n").expect("fragment");
        assert_eq!(f.text, "<a x='1'>\n  <b/> </a>");
        assert_eq!(
            f.name,
            ExpandedName {
                ns: None,
                local: "a".into()
            }
        );
    }

    #[test]
    fn op07_io07_default_namespace_and_prefixes_inherited_from_context() {
        // IO-07: `<entry uri='…'></entry>` without xmlns lands in the parent's namespace.
        let rl = "urn:ietf:params:xml:ns:resource-lists";
        let ctx = [
            Binding {
                prefix: None,
                uri: rl,
            },
            Binding {
                prefix: Some("cp"),
                uri: "urn:ietf:params:xml:ns:common-policy",
            },
        ];
        let f = parse_fragment("<entry uri='sip:bob@example.com'></entry>", &ctx, &L).expect("ok");
        assert_eq!(f.name.ns.as_deref(), Some(rl));
        let f = parse_fragment("<cp:rule id='a'/>", &ctx, &L).expect("ok");
        assert_eq!(
            f.name.ns.as_deref(),
            Some("urn:ietf:params:xml:ns:common-policy")
        );
        // An undeclared prefix is not a fragment that fits this context.
        assert_eq!(
            parse_fragment("<zz:rule/>", &ctx, &L),
            Err(XmlError::NotXmlFrag)
        );
        // OP-19: the body's own (even redundant) declarations are kept verbatim.
        let body = format!("<entry xmlns=\"{rl}\" uri='x'/>");
        assert_eq!(
            parse_fragment(&body, &ctx, &L).map(|f| f.text),
            Ok(body.as_str())
        );
    }

    #[test]
    fn declaration_tolerated_only_for_utf8() {
        let f = frag("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a/>\n").expect("ok");
        assert_eq!(f.text, "<a/>");
        assert_eq!(
            frag("\u{FEFF}<?xml version='1.0'?><a/>").map(|f| f.text),
            Ok("<a/>")
        );
        assert_eq!(
            frag("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>"),
            Err(XmlError::NotUtf8)
        );
    }

    #[test]
    fn fragment_limits_apply() {
        let limits = Limits {
            max_depth: 2,
            max_nodes: 1000,
            max_attributes_per_element: 256,
            max_attributes: 200_000,
        };
        assert!(parse_fragment("<a><b/></a>", &[], &limits).is_ok());
        assert_eq!(
            parse_fragment("<a><b><c/></b></a>", &[], &limits),
            Err(XmlError::TooDeep)
        );
    }
}
