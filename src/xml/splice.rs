//! Element and attribute PUT and DELETE by splicing bytes into the stored document (RFC 4825
//! §7.4, §7.5, §7.7, §7.8, §8.2.1–§8.2.4, §8.4). Only the edited range changes; the result is
//! re-parsed and the request URI re-evaluated on it (GET(PUT(x)) == x, idempotent DELETE).
//!
//! Standards items: OP-08..OP-22, OP-33, OP-34, NS-17, ER-06..ER-09, IO-07, IO-11e.

use super::attvalue::{decode_quoted, decode_unquoted, escape, is_xml_char};
use super::fragment::parse_fragment;
use super::locate::{find_attribute, locate, locate_element, name_matches, select_children, Miss};
use super::nsbind::{in_scope, written_qname};
use super::parse::{is_xml_space, parse_document, Limits};
use super::parsed::ParsedDoc;
use super::XmlError;
use crate::xcap::selector::{
    ExpandedName, ResolvedNameTest, ResolvedSelector, ResolvedStep, ResolvedTerminal,
};
use roxmltree::{Document, Node};
use std::ops::Range;
use std::sync::Arc;

/// The document after a successful PUT; `created` tells 201 from 200 (OP-26).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub document: String,
    pub created: bool,
}

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// One splice: `range` of the old text is replaced by `before + content + after`.
struct Splice<'s> {
    range: Range<usize>,
    before: &'s str,
    content: &'s str,
    after: String,
}

impl Splice<'_> {
    fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(
            text.len() + self.before.len() + self.content.len() + self.after.len(),
        );
        out.push_str(&text[..self.range.start]);
        out.push_str(self.before);
        out.push_str(self.content);
        out.push_str(&self.after);
        out.push_str(&text[self.range.end..]);
        out
    }

    /// Where `content` starts in the new text.
    fn content_start(&self) -> usize {
        self.range.start + self.before.len()
    }
}

/// Element PUT (OP-06..OP-19): replaces the element the URI selects, or creates it at the
/// position §8.2.3 prescribes, inserting the trimmed body byte for byte (NS-17).
pub fn put_element(
    doc: &str,
    sel: &ResolvedSelector,
    body: &str,
    limits: &Limits,
) -> Result<Edit, XmlError> {
    let parsed = parse_document(doc, limits)?;
    let (new, created) = put_element_in(doc, &parsed, sel, body, limits)?;
    Ok(Edit {
        document: new.text().to_string(),
        created,
    })
}

/// [`put_element`] on an already parsed document; returns the new document parsed, so the
/// caller can reuse that parse (hooks, cache).
pub fn put_element_in(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
    body: &str,
    limits: &Limits,
) -> Result<(ParsedDoc, bool), XmlError> {
    put_element_pending(doc, parsed, sel, body, limits)?.verify(sel, limits)
}

/// The splice of [`put_element_in`] without its verification, so that the caller can start
/// validating the new text while [`PendingEdit::verify`] re-parses it.
pub fn put_element_pending(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
    body: &str,
    limits: &Limits,
) -> Result<PendingEdit, XmlError> {
    // A terminal selector here is a caller bug: attributes go through put_attribute and
    // namespace::* is answered 405 (OP-37).
    let Some((target, parent_steps)) = sel.steps.split_last() else {
        return Err(XmlError::CannotInsert);
    };
    if sel.terminal.is_some() {
        return Err(XmlError::CannotInsert);
    }
    // OP-08: the parent is what all steps but the last select; with a single step it is the
    // document node and the target is the root element.
    let parent = locate(parsed, parent_steps).map_err(Miss::into_no_parent)?;
    let fragment = parse_fragment(body, &in_scope(parent), limits)?;

    let mut matches = select_children(parent, target);
    let (splice, created) = match (matches.next(), matches.next()) {
        // OP-11: complete replacement at the same position.
        (Some(old), None) => (
            Splice {
                range: old.range(),
                before: "",
                content: fragment.text,
                after: String::new(),
            },
            false,
        ),
        // OP-10: a target matching several children is an invalid selector.
        (Some(_), Some(_)) => return Err(XmlError::CannotInsert),
        (None, _) => (
            creation_splice(doc, parent, target, &fragment.name, fragment.text)?,
            true,
        ),
    };

    let document = splice.apply(doc);
    let inserted = splice.content_start()..splice.content_start() + fragment.text.len();
    Ok(PendingEdit {
        text: Arc::from(document),
        created,
        check: Check::Inserted(inserted),
    })
}

/// Finds where a new element goes (RFC 4825 §8.2.3; OP-13..OP-17).
fn creation_splice<'s>(
    doc: &str,
    parent: Node<'_, '_>,
    target: &ResolvedStep,
    body_name: &ExpandedName,
    content: &'s str,
) -> Result<Splice<'s>, XmlError> {
    // The document node already has its one root element; a second cannot be added.
    if !parent.is_element() {
        return Err(XmlError::CannotInsert);
    }
    // OP-17: `*` without a position stands for the body's element name.
    let name_test = match (&target.name, target.position) {
        (ResolvedNameTest::Any, None) => ResolvedNameTest::Name(body_name.clone()),
        (test, _) => test.clone(),
    };
    let mut siblings = parent
        .children()
        .filter(|n| n.is_element() && name_matches(*n, &name_test));
    let at = |offset: usize| Splice {
        range: offset..offset,
        before: "",
        content,
        after: String::new(),
    };
    match target.position {
        // OP-14: directly after the last sibling of that name; OP-13 when there is none.
        None => match siblings.next_back() {
            Some(last) => Ok(at(last.range().end)),
            None => Ok(append_child(doc, parent, content)),
        },
        Some(0) => Err(XmlError::CannotInsert),
        // OP-15d, OP-15e: before the first qualifying sibling, else as the last child.
        Some(1) => match siblings.next() {
            Some(first) => Ok(at(first.range().start)),
            None => Ok(append_child(doc, parent, content)),
        },
        // OP-15a..c: directly after the (n-1)-th qualifying sibling, which must exist.
        Some(n) => match siblings.nth(n - 2) {
            Some(prev) => Ok(at(prev.range().end)),
            None => Err(XmlError::CannotInsert),
        },
    }
}

/// OP-13: the new element becomes the last child, after any trailing text, comments or PIs,
/// right before the end tag. An empty-element tag `<p/>` is opened up into `<p>…</p>`.
fn append_child<'s>(doc: &str, parent: Node<'_, '_>, content: &'s str) -> Splice<'s> {
    let range = parent.range();
    if doc[..range.end].ends_with("/>") {
        let slash = range.end - 2;
        Splice {
            range: slash..range.end,
            before: ">",
            content,
            after: format!("</{}>", written_qname(doc, parent)),
        }
    } else {
        // The end tag `</name S?>` holds no other `<`.
        let end_tag = doc[..range.end].rfind('<').unwrap_or(range.end);
        Splice {
            range: end_tag..end_tag,
            before: "",
            content,
            after: String::new(),
        }
    }
}

/// Attribute PUT (OP-20..OP-22, IO-11e): `body` is an AttValue, quoted or (for interop)
/// unquoted. Replaces only the value bytes of an existing attribute, or appends the attribute
/// at the end of the start tag.
pub fn put_attribute(
    doc: &str,
    sel: &ResolvedSelector,
    body: &str,
    limits: &Limits,
) -> Result<Edit, XmlError> {
    let parsed = parse_document(doc, limits)?;
    let (new, created) = put_attribute_in(doc, &parsed, sel, body, limits)?;
    Ok(Edit {
        document: new.text().to_string(),
        created,
    })
}

/// [`put_attribute`] on an already parsed document; returns the new document parsed.
pub fn put_attribute_in(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
    body: &str,
    limits: &Limits,
) -> Result<(ParsedDoc, bool), XmlError> {
    put_attribute_pending(doc, parsed, sel, body)?.verify(sel, limits)
}

/// The splice of [`put_attribute_in`] without its verification.
pub fn put_attribute_pending(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
    body: &str,
) -> Result<PendingEdit, XmlError> {
    let Some(ResolvedTerminal::Attribute(name)) = &sel.terminal else {
        return Err(XmlError::CannotInsert);
    };
    if sel.steps.is_empty() {
        return Err(XmlError::CannotInsert);
    }
    // `xmlns` and `xmlns:*` are namespace declarations, never attributes (NS-07).
    if (name.ns.is_none() && name.local == "xmlns") || name.ns.as_deref() == Some(XMLNS_NS) {
        return Err(XmlError::CannotInsert);
    }
    let value = attribute_body_value(body)?;
    let element = locate(parsed, &sel.steps).map_err(Miss::into_no_parent)?;
    let element_start = element.range().start;

    let (splice, created) = match find_attribute(element, name) {
        Some(existing) => {
            let value_range = existing.range_value();
            // Keep the quote character the document uses.
            let quote = doc[..value_range.start].chars().last().unwrap_or('"');
            (
                Splice {
                    range: value_range,
                    before: "",
                    content: "",
                    after: escape_for(&value, quote),
                },
                false,
            )
        }
        None => {
            let at = start_tag_last_token_end(doc, element_start).ok_or(XmlError::CannotInsert)?;
            let mut text = String::new();
            match name.ns.as_deref() {
                None => text.push_str(&format!(" {}=", name.local)),
                Some(ns) => {
                    let prefix = match prefix_for(element, ns) {
                        Some(p) => p.to_string(),
                        None => {
                            let p = fresh_prefix(element);
                            text.push_str(&format!(" xmlns:{p}=\"{}\"", escape(ns)));
                            p
                        }
                    };
                    text.push_str(&format!(" {prefix}:{}=", name.local));
                }
            }
            text.push('"');
            text.push_str(&escape_for(&value, '"'));
            text.push('"');
            (
                Splice {
                    range: at..at,
                    before: "",
                    content: "",
                    after: text,
                },
                true,
            )
        }
    };

    let document = splice.apply(doc);
    Ok(PendingEdit {
        text: Arc::from(document),
        created,
        check: Check::Attribute {
            element_start,
            name: name.clone(),
            value,
        },
    })
}

/// Decodes an attribute PUT body (OP-20, IO-11e). A quoted AttValue may be surrounded by
/// whitespace (a trailing newline from a file); an unquoted body is taken as it is.
fn attribute_body_value(body: &str) -> Result<String, XmlError> {
    let trimmed = body.trim_matches(is_xml_space);
    let decoded = if trimmed.starts_with(['"', '\'']) {
        decode_quoted(trimmed)
    } else {
        decode_unquoted(body)
    }
    .map_err(|_| XmlError::NotXmlAttValue)?;
    if decoded.chars().all(is_xml_char) {
        Ok(decoded)
    } else {
        Err(XmlError::NotXmlAttValue)
    }
}

/// Escapes for an attribute delimited by `quote`.
fn escape_for(value: &str, quote: char) -> String {
    let escaped = escape(value);
    if quote == '\'' {
        escaped.replace('\'', "&apos;")
    } else {
        escaped
    }
}

/// A prefix bound to `ns` at `element` (the default namespace never applies to attributes).
fn prefix_for<'a>(element: Node<'a, '_>, ns: &str) -> Option<&'a str> {
    if ns == XML_NS {
        return Some("xml");
    }
    in_scope(element)
        .into_iter()
        .find(|b| b.uri == ns && b.prefix.is_some())
        .and_then(|b| b.prefix)
}

/// A prefix not in scope at `element`. Descendants using a prefix that is not in scope here
/// declare it themselves, so a new declaration on `element` cannot capture their names.
fn fresh_prefix(element: Node<'_, '_>) -> String {
    let taken = in_scope(element);
    (0usize..)
        .map(|i| format!("a{i}"))
        .find(|p| !taken.iter().any(|b| b.prefix == Some(p.as_str())))
        .unwrap_or_else(|| "a".to_string())
}

/// Offset just after the element name or the last attribute (or namespace declaration) of the
/// start tag beginning at `start`: where a new attribute goes.
fn start_tag_last_token_end(doc: &str, start: usize) -> Option<usize> {
    let bytes = doc.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>') {
        i += 1;
    }
    let mut last = i;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        match bytes.get(i)? {
            b'/' | b'>' => return Some(last),
            _ => {
                i += doc[i..].find('=')? + 1;
                while matches!(bytes.get(i)?, b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                let quote = *bytes.get(i)?;
                if quote != b'"' && quote != b'\'' {
                    return None;
                }
                i += 1 + doc[i + 1..].find(char::from(quote))? + 1;
                last = i;
            }
        }
    }
}

/// Element or attribute DELETE (OP-33, OP-34): removes the node's bytes, leaving all others
/// intact, then checks that the URI selects nothing any more.
pub fn delete_node(doc: &str, sel: &ResolvedSelector, limits: &Limits) -> Result<String, XmlError> {
    let parsed = parse_document(doc, limits)?;
    delete_node_in(doc, &parsed, sel, limits).map(|new| new.text().to_string())
}

/// [`delete_node`] on an already parsed document; returns the new document parsed.
pub fn delete_node_in(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
    limits: &Limits,
) -> Result<ParsedDoc, XmlError> {
    delete_node_pending(doc, parsed, sel)?
        .verify(sel, limits)
        .map(|(p, _)| p)
}

/// The removal of [`delete_node_in`] without its verification.
pub fn delete_node_pending(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
) -> Result<PendingEdit, XmlError> {
    let element = locate_element(parsed, &sel.steps)?;
    let range = match &sel.terminal {
        // OP-37: the caller answers 405 before getting here.
        Some(ResolvedTerminal::NamespaceBindings) => return Err(XmlError::CannotDelete),
        Some(ResolvedTerminal::Attribute(name)) => {
            let attr = find_attribute(element, name).ok_or(XmlError::NoMatch)?;
            let r = attr.range();
            // Take the whitespace before the attribute with it.
            let ws_start = doc[..r.start].trim_end_matches(is_xml_space).len();
            ws_start..r.end
        }
        None => {
            // Without its root element the document would not be well-formed.
            if element.parent().is_some_and(|p| !p.is_element()) {
                return Err(XmlError::CannotDelete);
            }
            element.range()
        }
    };
    let mut document = String::with_capacity(doc.len() - range.len());
    document.push_str(&doc[..range.start]);
    document.push_str(&doc[range.end..]);
    Ok(PendingEdit {
        text: Arc::from(document),
        created: false,
        check: Check::Deleted,
    })
}

/// What must hold once an edited text is re-parsed (GET(PUT(x)) == x, idempotent DELETE).
#[derive(Debug)]
enum Check {
    /// OP-12, ER-08: the URI selects exactly the inserted element.
    Inserted(Range<usize>),
    /// OP-22, ER-08: the URI still selects this element's attribute, with the new value.
    Attribute {
        element_start: usize,
        name: ExpandedName,
        value: String,
    },
    /// OP-34, ER-09: the URI selects nothing any more.
    Deleted,
}

/// An edited document text, not yet re-parsed and verified.
#[derive(Debug)]
pub struct PendingEdit {
    pub text: Arc<str>,
    pub created: bool,
    check: Check,
}

impl PendingEdit {
    /// Re-parses the new text and checks the RFC 4825 idempotency rule for the edit.
    pub fn verify(
        self,
        sel: &ResolvedSelector,
        limits: &Limits,
    ) -> Result<(ParsedDoc, bool), XmlError> {
        let failure = match self.check {
            Check::Deleted => XmlError::CannotDelete,
            _ => XmlError::CannotInsert,
        };
        let reparsed = reparse(self.text, limits, failure.clone())?;
        let located = locate(reparsed.doc(), &sel.steps);
        let holds = match (&self.check, located) {
            (Check::Inserted(range), Ok(node)) => node.range() == *range,
            (
                Check::Attribute {
                    element_start,
                    name,
                    value,
                },
                Ok(node),
            ) => {
                node.range().start == *element_start
                    && find_attribute(node, name).is_some_and(|a| a.value() == value)
            }
            (Check::Deleted, Err(_)) => true,
            (Check::Deleted, Ok(node)) => match &sel.terminal {
                Some(ResolvedTerminal::Attribute(name)) => find_attribute(node, name).is_none(),
                _ => false,
            },
            _ => false,
        };
        if holds {
            Ok((reparsed, self.created))
        } else {
            Err(failure)
        }
    }
}

/// Re-parses an edited document. Caps still apply as such; any other failure means the edit
/// cannot be made (`otherwise`).
fn reparse(text: Arc<str>, limits: &Limits, otherwise: XmlError) -> Result<ParsedDoc, XmlError> {
    ParsedDoc::parse(text, limits).map_err(|e| match e {
        XmlError::TooDeep | XmlError::TooManyNodes | XmlError::TooManyAttributes(_) => e,
        _ => otherwise,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::locate::tests::sel;
    use crate::xml::{get_attribute, get_element};

    const L: Limits = Limits {
        max_depth: 64,
        max_nodes: 200_000,
        max_attributes_per_element: 256,
        max_attributes: 200_000,
    };

    fn put(doc: &str, path: &str, body: &str) -> Result<Edit, XmlError> {
        put_element(doc, &sel(path), body, &L)
    }

    /// RFC 4825 §8.2.3 example document, as printed in the RFC (page margin removed).
    const RFC_DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<root>
  <el1 att="first"/>
  <el1 att="second"/>
  <!-- comment -->
  <el2 att="first"/>
</root>"#;

    /// OP-16a: `root/el1[@att="third"]` ("earliest last", after the last el1).
    const OP16A: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<root>
  <el1 att="first"/>
  <el1 att="second"/><el1 att="third"/>
  <!-- comment -->
  <el2 att="first"/>
</root>"#;

    /// OP-16b: `root/el3` (no same-name sibling: last child, after the trailing text).
    const OP16B: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<root>
  <el1 att="first"/>
  <el1 att="second"/>
  <!-- comment -->
  <el2 att="first"/>
<el3 att="first"/></root>"#;

    /// OP-16c: `root/el2[@att="2"]`, same as `root/el2[2][@att="2"]`.
    const OP16C: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<root>
  <el1 att="first"/>
  <el1 att="second"/>
  <!-- comment -->
  <el2 att="first"/><el2 att="2"/>
</root>"#;

    /// OP-16d: `root/*[2][@att="2"]`, after the first element of any name.
    const OP16D: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<root>
  <el1 att="first"/><el2 att="2"/>
  <el1 att="second"/>
  <!-- comment -->
  <el2 att="first"/>
</root>"#;

    /// OP-16e: `root/el2[1][@att="2"]`, before the existing el2.
    const OP16E: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<root>
  <el1 att="first"/>
  <el1 att="second"/>
  <!-- comment -->
  <el2 att="2"/><el2 att="first"/>
</root>"#;

    fn op16_cases() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            ("root/el1[@att=third]", r#"<el1 att="third"/>"#, OP16A),
            // The same position reached with a position predicate (openxcap's variants).
            ("root/el1[3][@att=third]", r#"<el1 att="third"/>"#, OP16A),
            ("root/*[3][@att=third]", r#"<el1 att="third"/>"#, OP16A),
            ("root/el3", r#"<el3 att="first"/>"#, OP16B),
            ("root/el2[@att=2]", r#"<el2 att="2"/>"#, OP16C),
            ("root/el2[2][@att=2]", r#"<el2 att="2"/>"#, OP16C),
            ("root/*[2][@att=2]", r#"<el2 att="2"/>"#, OP16D),
            ("root/el2[1][@att=2]", r#"<el2 att="2"/>"#, OP16E),
        ]
    }

    #[test]
    fn op16_rfc_8_2_3_worked_examples() {
        // The fixtures are also run with one-space indentation: the insertion points must not
        // depend on the layout of the surrounding text.
        for indent in ["  ", " "] {
            let relayout = |s: &str| s.replace("\n  ", &format!("\n{indent}"));
            let doc = relayout(RFC_DOC);
            for (path, body, expected) in op16_cases() {
                let edit = put(&doc, path, body).unwrap_or_else(|e| panic!("{path}: {e:?}"));
                assert_eq!(edit.document, relayout(expected), "{path}");
                assert!(edit.created, "{path}");
                assert_eq!(
                    get_element(&edit.document, &sel(path), &L).as_deref(),
                    Ok(body)
                );
                // DELETE of the same URI restores the document byte for byte.
                assert_eq!(
                    delete_node(&edit.document, &sel(path), &L),
                    Ok(doc.clone()),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn op15c_op12_unreachable_positions_cannot_insert() {
        for path in [
            "root/el1[4][@att=third]",
            "root/*[0][@att=third]",
            "root/*[6]",
        ] {
            assert_eq!(
                put(RFC_DOC, path, r#"<el1 att="third"/>"#),
                Err(XmlError::CannotInsert),
                "{path}"
            );
        }
        // GET(PUT(x)) would not return x: the body does not match the selector.
        for path in [
            "root/el1[@att=third]",
            "root/el1[3][@att=third]",
            "root/*[3][@att=third]",
        ] {
            assert_eq!(
                put(RFC_DOC, path, r#"<el1 att="fourth"/>"#),
                Err(XmlError::CannotInsert),
                "{path}"
            );
        }
    }

    #[test]
    fn op17_star_with_attribute_uses_the_body_name() {
        let cases = [
            (r#"<el1 att="2"/>"#, r#"<el1 att="second"/><el1 att="2"/>"#),
            (r#"<el2 att="2"/>"#, r#"<el2 att="first"/><el2 att="2"/>"#),
            (
                r#"<el3 att="2"/>"#,
                "<el2 att=\"first\"/>\n<el3 att=\"2\"/></root>",
            ),
        ];
        for (body, expected) in cases {
            let edit = put(RFC_DOC, "root/*[@att=2]", body).expect("created");
            assert!(edit.document.contains(expected), "{}", edit.document);
            assert_eq!(edit.document.len(), RFC_DOC.len() + body.len());
        }
    }

    #[test]
    fn op11_replacement_is_complete_and_in_place() {
        let doc =
            "<r>\n <a k=\"1\" xmlns:p=\"urn:p\"><!-- c --><?pi?>text<b/></a>\n <a k=\"2\"/>\n</r>";
        let edit = put(doc, "r/a[1]", "<a k=\"9\"/>").expect("replaced");
        assert!(!edit.created);
        assert_eq!(edit.document, "<r>\n <a k=\"9\"/>\n <a k=\"2\"/>\n</r>");
    }

    #[test]
    fn op11_replacement_with_other_name_via_star_position() {
        // `*[2]` selects the second element whatever its name, so replacing it by <z/> works.
        let doc = "<r><a/><b/></r>";
        let edit = put(doc, "r/*[2]", "<z/>").expect("replaced");
        assert_eq!(
            edit,
            Edit {
                document: "<r><a/><z/></r>".into(),
                created: false
            }
        );
        // Replacing a[1] by <z/> would make a[1] select nothing: GET(PUT(x)) != x.
        assert_eq!(put(doc, "r/a[1]", "<z/>"), Err(XmlError::CannotInsert));
    }

    #[test]
    fn op10_target_matching_several_children_cannot_insert() {
        assert_eq!(
            put(RFC_DOC, "root/el1", "<el1/>"),
            Err(XmlError::CannotInsert)
        );
    }

    #[test]
    fn op12_fixture_service_uri_changed_cannot_insert() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"
   xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
 <service uri="sip:good-friends@example.com">
  <list name="my-friends"><rl:entry uri="sip:joe@example.com"/></list>
  <packages><package>presence</package></packages>
 </service>
</rls-services>"#;
        let ns = "urn:ietf:params:xml:ns:rls-services";
        let path =
            format!("{{{ns}}}rls-services/{{{ns}}}service[@uri=sip:good-friends@example.com]");
        let body = r#"<service uri="sip:mybuddies@example.com"><packages><package>presence</package></packages></service>"#;
        assert_eq!(put(doc, &path, body), Err(XmlError::CannotInsert));
        // The same on creation (no good-friends service yet).
        let other = doc.replace("good-friends", "others");
        assert_eq!(put(&other, &path, body), Err(XmlError::CannotInsert));
        // With the matching body, replacement works and keeps the prefix context (OP-07).
        let good = r#"<service uri="sip:good-friends@example.com"><list><rl:entry uri="sip:x"/></list></service>"#;
        let edit = put(doc, &path, good).expect("replaced");
        assert!(!edit.created);
        assert_eq!(
            get_element(&edit.document, &sel(&path), &L).as_deref(),
            Ok(good)
        );
    }

    const RL: &str = "urn:ietf:params:xml:ns:resource-lists";

    fn rl_doc() -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"{RL}\">\n  <list name=\"rcs\">\n    <entry uri=\"sip:a@example.com\"/>\n  </list>\n  <list name=\"empty\"/>\n</resource-lists>\n"
        )
    }

    #[test]
    fn io07_entry_without_xmlns_lands_in_resource_lists_namespace() {
        let doc = rl_doc();
        let path = format!(
            "{{{RL}}}resource-lists/{{{RL}}}list[@name=rcs]/{{{RL}}}entry[@uri=sip:b@example.com]"
        );
        let body = "<entry uri='sip:b@example.com'></entry>";
        let edit = put(&doc, &path, body).expect("created");
        assert!(edit.created);
        assert_eq!(
            edit.document,
            doc.replace(
                "sip:a@example.com\"/>",
                "sip:a@example.com\"/><entry uri='sip:b@example.com'></entry>"
            )
        );
        assert_eq!(
            get_element(&edit.document, &sel(&path), &L).as_deref(),
            Ok(body)
        );
    }

    #[test]
    fn op13_empty_element_parent_is_opened() {
        let doc = rl_doc();
        let path = format!("{{{RL}}}resource-lists/{{{RL}}}list[@name=empty]/{{{RL}}}entry");
        let edit = put(&doc, &path, "<entry uri=\"sip:c\"/>").expect("created");
        assert!(edit
            .document
            .contains("<list name=\"empty\"><entry uri=\"sip:c\"/></list>"));
        let edit = put("<r><p  a='1' /></r>", "r/p/q", "<q/>").expect("created");
        assert_eq!(edit.document, "<r><p  a='1' ><q/></p></r>");
        let edit = put(
            "<x:r xmlns:x='urn:x'><x:p></x:p ></x:r>",
            "{urn:x}r/{urn:x}p/q",
            "<q/>",
        )
        .expect("created");
        assert_eq!(edit.document, "<x:r xmlns:x='urn:x'><x:p><q/></x:p ></x:r>");
        let edit = put("<x:r xmlns:x='urn:x'/>", "{urn:x}r/{urn:x}p", "<x:p/>").expect("created");
        assert_eq!(edit.document, "<x:r xmlns:x='urn:x'><x:p/></x:r>");
    }

    #[test]
    fn op08_er07_missing_or_ambiguous_parent_reports_closest_ancestor() {
        let doc = rl_doc();
        let path =
            format!("{{{RL}}}resource-lists/{{{RL}}}list[@name=nosuch]/{{{RL}}}entry[@uri=x]");
        assert_eq!(
            put(&doc, &path, "<entry uri='x'/>"),
            Err(XmlError::NoParent { matched_steps: 1 })
        );
        let path = format!("{{{RL}}}resource-lists/{{{RL}}}list/{{{RL}}}entry");
        assert_eq!(
            put(&doc, &path, "<entry/>"),
            Err(XmlError::NoParent { matched_steps: 1 })
        );
        assert_eq!(
            put(&doc, "resource-lists/list/entry", "<entry/>"),
            Err(XmlError::NoParent { matched_steps: 0 })
        );
        let path = format!("{{{RL}}}resource-lists/{{{RL}}}list[@name=rcs]/{{{RL}}}entry/x/y");
        assert_eq!(
            put(&doc, &path, "<y/>"),
            Err(XmlError::NoParent { matched_steps: 3 })
        );
    }

    #[test]
    fn er05_body_not_a_fragment() {
        for body in ["<a/><b/>", "text", "<a>"] {
            assert_eq!(
                put(RFC_DOC, "root/a", body),
                Err(XmlError::NotXmlFrag),
                "{body}"
            );
        }
    }

    #[test]
    fn ns17_body_inserted_trimmed_byte_for_byte() {
        let body = "\n  <el3 att=\"x\">\n\t<inner/>  text &amp; more\n</el3>\n\n";
        let edit = put(RFC_DOC, "root/el3", body).expect("created");
        let trimmed = body.trim();
        assert_eq!(
            edit.document,
            RFC_DOC.replace("</root>", &format!("{trimmed}</root>"))
        );
        assert_eq!(
            get_element(&edit.document, &sel("root/el3"), &L).as_deref(),
            Ok(trimmed)
        );
    }

    #[test]
    fn root_element_replace_and_no_second_root() {
        let edit =
            put("<?xml version='1.0'?>\n<r><a/></r>\n", "r", "<r><b/></r>").expect("replaced");
        assert_eq!(
            edit,
            Edit {
                document: "<?xml version='1.0'?>\n<r><b/></r>\n".into(),
                created: false
            }
        );
        assert_eq!(put("<r/>", "s", "<s/>"), Err(XmlError::CannotInsert));
    }

    #[test]
    fn terminal_selector_is_not_an_element_put() {
        assert_eq!(
            put(RFC_DOC, "root/el2/@att", "<x/>"),
            Err(XmlError::CannotInsert)
        );
        assert_eq!(
            put(RFC_DOC, "root/namespace::*", "<x/>"),
            Err(XmlError::CannotInsert)
        );
    }

    #[test]
    fn design6_doctype_and_caps_apply_to_edits() {
        assert_eq!(
            put("<!DOCTYPE r><r/>", "r/a", "<a/>"),
            Err(XmlError::Doctype)
        );
        let limits = Limits {
            max_depth: 3,
            max_nodes: 1000,
            max_attributes_per_element: 256,
            max_attributes: 200_000,
        };
        assert_eq!(
            put_element("<r><a/></r>", &sel("r/a"), "<a><b><c/></b></a>", &limits),
            Err(XmlError::TooDeep)
        );
        assert!(put_element("<r><a/></r>", &sel("r/a"), "<a><b/></a>", &limits).is_ok());
        let limits = Limits {
            max_depth: 64,
            max_nodes: 6,
            max_attributes_per_element: 256,
            max_attributes: 200_000,
        };
        assert_eq!(
            put_element(
                "<r><a/></r>",
                &sel("r/b"),
                "<b><c/><c/><c/><c/></b>",
                &limits
            ),
            Err(XmlError::TooManyNodes)
        );
    }

    // ---- attributes ----

    fn put_att(doc: &str, path: &str, body: &str) -> Result<Edit, XmlError> {
        put_attribute(doc, &sel(path), body, &L)
    }

    #[test]
    fn op21_replace_keeps_quotes_and_only_value_bytes_change() {
        let doc = "<r>\n <e a = 'old' b=\"2\"/>\n</r>";
        let edit = put_att(doc, "r/e/@a", "\"it's <new> & \"").unwrap_err();
        assert_eq!(edit, XmlError::NotXmlAttValue, "unescaped < is refused");
        let edit = put_att(doc, "r/e/@a", "\"it's &lt;new&gt; &amp; \"").expect("replaced");
        assert!(!edit.created);
        assert_eq!(
            edit.document,
            "<r>\n <e a = 'it&apos;s &lt;new> &amp; ' b=\"2\"/>\n</r>"
        );
        assert_eq!(
            get_attribute(&edit.document, &sel("r/e/@a"), &L).as_deref(),
            Ok("it's <new> & ")
        );
    }

    #[test]
    fn op21_create_at_end_of_start_tag() {
        let cases = [
            ("<r><e/></r>", "<r><e n=\"v\"/></r>"),
            ("<r><e a='1' /></r>", "<r><e a='1' n=\"v\" /></r>"),
            (
                "<r><e\n  a=\"x>y\"\n>t</e></r>",
                "<r><e\n  a=\"x>y\" n=\"v\"\n>t</e></r>",
            ),
            (
                "<r><e xmlns='urn:q'></e></r>",
                "<r><e xmlns='urn:q' n=\"v\"></e></r>",
            ),
        ];
        for (doc, expected) in cases {
            let path = if doc.contains("urn:q") {
                "r/{urn:q}e/@n"
            } else {
                "r/e/@n"
            };
            let edit = put_att(doc, path, "\"v\"").expect("created");
            assert_eq!(
                edit,
                Edit {
                    document: expected.into(),
                    created: true
                }
            );
        }
    }

    #[test]
    fn io11e_quoted_and_unquoted_bodies() {
        let doc = "<r><e/></r>";
        for (body, value) in [
            ("'a\"b'", "a\"b"),
            ("\"x\"\n", "x"),
            ("plain", "plain"),
            ("a&amp;b", "a&b"),
            ("tab\tnl\n", "tab\tnl\n"),
            ("\"\"", ""),
        ] {
            let edit = put_att(doc, "r/e/@n", body).expect(body);
            assert_eq!(
                get_attribute(&edit.document, &sel("r/e/@n"), &L).as_deref(),
                Ok(value),
                "{body:?}"
            );
        }
    }

    #[test]
    fn er06_invalid_attribute_values() {
        for body in [
            "\"a<b\"", "\"a&b\"", "a<b", "a&b", "\"a\"b\"", "\"abc", "'\u{1}'", "&#0;",
        ] {
            assert_eq!(
                put_att("<r/>", "r/@n", body),
                Err(XmlError::NotXmlAttValue),
                "{body:?}"
            );
        }
    }

    #[test]
    fn op22_fixture_changing_the_predicate_attribute_cannot_insert() {
        let doc = r#"<rls-services><service uri="sip:good-friends@example.com"/></rls-services>"#;
        let path = "rls-services/service[@uri=sip:good-friends@example.com]/@uri";
        assert_eq!(
            put_att(doc, path, "\"sip:bad-friends@example.com\""),
            Err(XmlError::CannotInsert)
        );
        // Setting the same value is fine.
        let edit = put_att(doc, path, "\"sip:good-friends@example.com\"").expect("same");
        assert_eq!(
            edit,
            Edit {
                document: doc.into(),
                created: false
            }
        );
    }

    #[test]
    fn op21_missing_element_is_no_parent() {
        let doc = "<r><e/><e/></r>";
        assert_eq!(
            put_att(doc, "r/f/@n", "\"v\""),
            Err(XmlError::NoParent { matched_steps: 1 })
        );
        assert_eq!(
            put_att(doc, "r/e/@n", "\"v\""),
            Err(XmlError::NoParent { matched_steps: 1 })
        );
        assert_eq!(
            put_att(doc, "x/@n", "\"v\""),
            Err(XmlError::NoParent { matched_steps: 0 })
        );
        assert_eq!(put_att(doc, "r/e[1]", "\"v\""), Err(XmlError::CannotInsert));
        assert_eq!(
            put_att(doc, "r/@xmlns", "\"urn:x\""),
            Err(XmlError::CannotInsert)
        );
    }

    #[test]
    fn namespaced_attribute_reuses_or_declares_a_prefix() {
        let doc = "<r xmlns:p='urn:p'><e/></r>";
        let edit = put_att(doc, "r/e/@{urn:p}n", "\"v\"").expect("created");
        assert_eq!(edit.document, "<r xmlns:p='urn:p'><e p:n=\"v\"/></r>");
        let edit =
            put_att("<r xmlns:a0='urn:other'><e/></r>", "r/e/@{urn:p}n", "\"v\"").expect("created");
        assert_eq!(
            edit.document,
            "<r xmlns:a0='urn:other'><e xmlns:a1=\"urn:p\" a1:n=\"v\"/></r>"
        );
        assert_eq!(
            get_attribute(&edit.document, &sel("r/e/@{urn:p}n"), &L).as_deref(),
            Ok("v")
        );
        // The default namespace never applies to attributes, so it is not reused.
        let edit = put_att("<r xmlns='urn:p'/>", "{urn:p}r/@{urn:p}n", "\"v\"").expect("created");
        assert_eq!(
            edit.document,
            "<r xmlns='urn:p' xmlns:a0=\"urn:p\" a0:n=\"v\"/>"
        );
        let edit = put_att(
            "<r/>",
            "r/@{http://www.w3.org/XML/1998/namespace}lang",
            "\"en\"",
        )
        .expect("created");
        assert_eq!(edit.document, "<r xml:lang=\"en\"/>");
    }

    // ---- delete ----

    fn del(doc: &str, path: &str) -> Result<String, XmlError> {
        delete_node(doc, &sel(path), &L)
    }

    #[test]
    fn op33_element_delete_keeps_surrounding_whitespace() {
        assert_eq!(
            del(RFC_DOC, "root/el2").as_deref(),
            Ok(RFC_DOC.replace("<el2 att=\"first\"/>", "").as_str())
        );
        assert_eq!(del(RFC_DOC, "root/el3"), Err(XmlError::NoMatch));
        assert_eq!(del(RFC_DOC, "root/el1"), Err(XmlError::Ambiguous));
        assert_eq!(del(RFC_DOC, "root"), Err(XmlError::CannotDelete));
    }

    #[test]
    fn op34a_op34b_positional_delete_only_of_the_last() {
        assert_eq!(del(RFC_DOC, "root/el1[1]"), Err(XmlError::CannotDelete));
        assert!(del(RFC_DOC, "root/el1[2]").is_ok());
        assert_eq!(del(RFC_DOC, "root/*[1]"), Err(XmlError::CannotDelete));
        assert_eq!(del(RFC_DOC, "root/*[2]"), Err(XmlError::CannotDelete));
        assert!(del(RFC_DOC, "root/*[3]").is_ok());
    }

    #[test]
    fn op34c_delete_by_unique_attribute_works() {
        assert_eq!(
            del(RFC_DOC, "root/el1[@att=first]").as_deref(),
            Ok(RFC_DOC.replace("<el1 att=\"first\"/>", "").as_str())
        );
    }

    #[test]
    fn op33_attribute_delete_takes_preceding_whitespace() {
        let doc = "<r><e a='1'\n   b=\"2\" c='3'/></r>";
        assert_eq!(del(doc, "r/e/@b").as_deref(), Ok("<r><e a='1' c='3'/></r>"));
        assert_eq!(
            del(doc, "r/e/@a").as_deref(),
            Ok("<r><e\n   b=\"2\" c='3'/></r>")
        );
        assert_eq!(del(doc, "r/e/@z"), Err(XmlError::NoMatch));
        // Deleting the attribute a step tests leaves the URI selecting nothing: fine.
        assert_eq!(
            del(doc, "r/e[@a=1]/@a").as_deref(),
            Ok("<r><e\n   b=\"2\" c='3'/></r>")
        );
    }

    #[test]
    fn op37_namespace_terminal_cannot_be_deleted() {
        assert_eq!(
            del(RFC_DOC, "root/namespace::*"),
            Err(XmlError::CannotDelete)
        );
    }

    #[test]
    fn ten_thousand_entry_list_put_works() {
        // Micro check (not timed): a 10,000-entry list is edited like a small one.
        let mut doc = format!("<resource-lists xmlns=\"{RL}\"><list name=\"big\">");
        for i in 0..10_000 {
            doc.push_str(&format!(
                "\n <entry uri=\"sip:u{i}@example.com\"><display-name>U {i}</display-name></entry>"
            ));
        }
        doc.push_str("\n</list></resource-lists>");
        let list = format!("{{{RL}}}resource-lists/{{{RL}}}list[@name=big]");
        let path = format!("{list}/{{{RL}}}entry[@uri=sip:new@example.com]");
        let body = "<entry uri=\"sip:new@example.com\"/>";
        let edit = put(&doc, &path, body).expect("created");
        assert!(edit.created);
        assert_eq!(edit.document.len(), doc.len() + body.len());
        assert!(edit.document.contains(
            "U 9999</display-name></entry><entry uri=\"sip:new@example.com\"/>\n</list>"
        ));
        let path = format!("{list}/{{{RL}}}entry[5000]");
        let edit = put(&doc, &path, "<entry uri=\"sip:r@example.com\"/>").expect("replaced");
        assert!(!edit.created);
        assert_eq!(
            get_element(&edit.document, &sel(&path), &L).as_deref(),
            Ok("<entry uri=\"sip:r@example.com\"/>")
        );
        assert!(edit.document.contains("U 4998</display-name></entry>\n <entry uri=\"sip:r@example.com\"/>\n <entry uri=\"sip:u5000@"));
    }
}

/// Property tests: GET after PUT, bytes outside the edit untouched, DELETE undoes a creation,
/// and no input panics (design.md §8).
#[cfg(test)]
mod props {
    use super::*;
    use crate::xml::locate::tests::step;
    use crate::xml::{check_document, get_attribute, get_element, get_namespace_bindings};
    use proptest::prelude::*;

    const L: Limits = Limits {
        max_depth: 16,
        max_nodes: 10_000,
        max_attributes_per_element: 256,
        max_attributes: 200_000,
    };

    #[derive(Debug, Clone)]
    enum Item {
        Element {
            name: &'static str,
            k: Option<&'static str>,
            single_quote: bool,
            children: Vec<Item>,
            empty_tag: bool,
        },
        Text(&'static str),
        Comment,
    }

    fn write(item: &Item, out: &mut String) {
        match item {
            Item::Text(t) => out.push_str(t),
            Item::Comment => out.push_str("<!-- c -->"),
            Item::Element {
                name,
                k,
                single_quote,
                children,
                empty_tag,
            } => {
                out.push('<');
                out.push_str(name);
                if let Some(v) = k {
                    let q = if *single_quote { '\'' } else { '"' };
                    out.push_str(&format!(" k={q}{v}{q}"));
                }
                if children.is_empty() && *empty_tag {
                    out.push_str("/>");
                    return;
                }
                out.push('>');
                for c in children {
                    write(c, out);
                }
                out.push_str(&format!("</{name}>"));
            }
        }
    }

    fn item() -> impl Strategy<Value = Item> {
        let leaf = prop_oneof![
            prop::sample::select(vec![" ", "\n", "\n  ", "x"]).prop_map(Item::Text),
            Just(Item::Comment),
        ];
        let element = |children: BoxedStrategy<Vec<Item>>| {
            (
                prop::sample::select(vec!["a", "b", "c"]),
                prop::option::of(prop::sample::select(vec!["1", "2", "3"])),
                any::<bool>(),
                children,
                any::<bool>(),
            )
                .prop_map(|(name, k, single_quote, children, empty_tag)| {
                    Item::Element {
                        name,
                        k,
                        single_quote,
                        children,
                        empty_tag,
                    }
                })
        };
        let base = prop_oneof![leaf.clone(), element(Just(Vec::new()).boxed())];
        base.prop_recursive(3, 24, 5, move |inner| {
            prop_oneof![
                1 => leaf.clone(),
                3 => element(prop::collection::vec(inner, 0..5).boxed()),
            ]
        })
    }

    fn document() -> impl Strategy<Value = String> {
        (prop::collection::vec(item(), 0..7), any::<bool>()).prop_map(|(children, decl)| {
            let mut out = String::new();
            if decl {
                out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            }
            write(
                &Item::Element {
                    name: "r",
                    k: None,
                    single_quote: false,
                    children,
                    empty_tag: true,
                },
                &mut out,
            );
            out
        })
    }

    fn a_step() -> impl Strategy<Value = ResolvedStep> {
        (
            prop::sample::select(vec!["a", "b", "c", "*"]),
            prop::option::of(0usize..5),
            prop::option::of(prop::sample::select(vec!["1", "2", "3", "4"])),
        )
            .prop_map(|(name, position, v)| step(name, position, v.map(|v| ("k", v))))
    }

    fn selector() -> impl Strategy<Value = ResolvedSelector> {
        (
            prop::sample::select(vec!["r", "r", "r", "*", "a"]),
            prop::collection::vec(a_step(), 0..3),
        )
            .prop_map(|(root, rest)| {
                let mut steps = vec![step(root, None, None)];
                steps.extend(rest);
                ResolvedSelector {
                    steps,
                    terminal: None,
                }
            })
    }

    /// Element bodies; the name and `k` value usually agree with the selector's last step so
    /// that creations and replacements happen often, not only refusals.
    fn body_for(sel: &ResolvedSelector) -> impl Strategy<Value = String> {
        let last = sel.steps.last();
        let name = match last.map(|s| &s.name) {
            Some(ResolvedNameTest::Name(n)) => n.local.clone(),
            _ => "b".to_string(),
        };
        let k = last.and_then(|s| s.attr.as_ref()).map(|(_, v)| v.clone());
        (
            prop::sample::select(vec!["", " ", "\n\t"]),
            prop_oneof![3 => Just(name), 1 => prop::sample::select(vec!["a", "d"]).prop_map(String::from)],
            prop_oneof![
                3 => Just(k),
                1 => prop::option::of(prop::sample::select(vec!["1", "4"]).prop_map(String::from))
            ],
            prop::sample::select(vec!["", "x", " <e/> ", "<!-- n -->"]),
            prop::sample::select(vec!["", "\n", "  "]),
        )
            .prop_map(|(lead, name, k, inner, trail)| {
                let att = k.map(|v| format!(" k=\"{v}\"")).unwrap_or_default();
                if inner.is_empty() {
                    format!("{lead}<{name}{att}/>{trail}")
                } else {
                    format!("{lead}<{name}{att}>{inner}</{name}>{trail}")
                }
            })
    }

    fn put_case() -> impl Strategy<Value = (String, ResolvedSelector, String)> {
        (document(), selector()).prop_flat_map(|(doc, sel)| {
            let body = body_for(&sel);
            (Just(doc), Just(sel), body)
        })
    }

    /// Whether the parent of the last step is written as an empty-element tag `<p/>`.
    fn parent_is_empty_tag(doc: &str, sel: &ResolvedSelector) -> Option<Range<usize>> {
        let parsed = parse_document(doc, &L).ok()?;
        let (_, parent_steps) = sel.steps.split_last()?;
        let parent = locate(&parsed, parent_steps).ok()?;
        let r = parent.range();
        (parent.is_element() && doc[..r.end].ends_with("/>")).then_some(r)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn prop_put_then_get_returns_body_and_outside_bytes_unchanged(
            (doc, sel, body) in put_case()
        ) {
            let empty_parent = parent_is_empty_tag(&doc, &sel);
            if let Ok(edit) = put_element(&doc, &sel, &body, &L) {
                let trimmed = body.trim_matches(|c| " \t\r\n".contains(c));
                // (a) GET(PUT(x)) == x (OP-12, NS-17).
                prop_assert_eq!(get_element(&edit.document, &sel, &L), Ok(trimmed.to_string()));
                // (b) Everything outside the edited range is byte-identical.
                let new = &edit.document;
                let parsed = parse_document(new, &L).expect("re-parsed");
                let inserted = locate(&parsed, &sel.steps).expect("selected").range();
                match &empty_parent {
                    Some(parent) if edit.created => {
                        // `<p/>` was opened up into `<p>…</p>`.
                        let slash = parent.end - 2;
                        let qname = doc[parent.start + 1..].split(['/', ' ', '>']).next().unwrap_or("");
                        let expected = format!("{}>{}</{}>{}", &doc[..slash], trimmed, qname, &doc[parent.end..]);
                        prop_assert_eq!(new, &expected);
                    }
                    _ => {
                        let tail = new.len() - inserted.end;
                        prop_assert!(doc.len() >= tail && doc.len() - tail >= inserted.start);
                        prop_assert_eq!(&new[..inserted.start], &doc[..inserted.start]);
                        prop_assert_eq!(&new[inserted.end..], &doc[doc.len() - tail..]);
                    }
                }
                // (c) DELETE of a created element restores the document byte for byte.
                if edit.created && empty_parent.is_none() {
                    prop_assert_eq!(delete_node(new, &sel, &L), Ok(doc.clone()));
                }
            }
        }

        #[test]
        fn prop_attribute_put_get_and_delete_round_trip(
            doc in document(), sel in selector(),
            value in "[a-z<>&\"' \t\n\u{e9}]{0,8}", quote in any::<bool>()
        ) {
            let mut sel = sel;
            sel.terminal = Some(ResolvedTerminal::Attribute(ExpandedName { ns: None, local: "n".into() }));
            let q = if quote { '"' } else { '\'' };
            let body = format!("{q}{}{q}", escape_for(&value, q));
            if let Ok(edit) = put_attribute(&doc, &sel, &body, &L) {
                prop_assert_eq!(get_attribute(&edit.document, &sel, &L), Ok(value.clone()));
                prop_assert!(edit.created, "generated documents have no @n");
                prop_assert_eq!(delete_node(&edit.document, &sel, &L), Ok(doc.clone()));
            }
        }

        #[test]
        fn prop_no_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(text) = check_document(&bytes) {
                let _ = parse_document(text, &L);
            }
        }

        #[test]
        fn prop_no_panic_on_random_text_documents_and_selectors(
            doc in "[<>/a-c=\"' !?\\-x\n]{0,60}", sel in selector(), body in "[<>/a-d=\"' &;k1]{0,20}",
            terminal in 0u8..3
        ) {
            let mut sel = sel;
            sel.terminal = match terminal {
                0 => None,
                1 => Some(ResolvedTerminal::Attribute(ExpandedName { ns: None, local: "k".into() })),
                _ => Some(ResolvedTerminal::NamespaceBindings),
            };
            let _ = get_element(&doc, &sel, &L);
            let _ = get_attribute(&doc, &sel, &L);
            let _ = get_namespace_bindings(&doc, &sel, &L);
            let _ = put_element(&doc, &sel, &body, &L);
            let _ = put_attribute(&doc, &sel, &body, &L);
            let _ = delete_node(&doc, &sel, &L);
        }

        #[test]
        fn prop_no_panic_on_generated_documents_with_random_bodies(
            doc in document(), sel in selector(), body in "\\PC{0,30}", terminal in 0u8..3
        ) {
            let mut sel = sel;
            sel.terminal = match terminal {
                0 => None,
                1 => Some(ResolvedTerminal::Attribute(ExpandedName { ns: Some("urn:x".into()), local: "k".into() })),
                _ => Some(ResolvedTerminal::NamespaceBindings),
            };
            let _ = get_element(&doc, &sel, &L);
            let _ = get_attribute(&doc, &sel, &L);
            let _ = get_namespace_bindings(&doc, &sel, &L);
            if let Ok(edit) = put_element(&doc, &sel, &body, &L) {
                prop_assert!(parse_document(&edit.document, &L).is_ok());
            }
            if let Ok(edit) = put_attribute(&doc, &sel, &body, &L) {
                prop_assert!(parse_document(&edit.document, &L).is_ok());
            }
            if let Ok(after) = delete_node(&doc, &sel, &L) {
                prop_assert!(parse_document(&after, &L).is_ok());
            }
        }
    }
}
