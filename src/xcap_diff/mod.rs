//! xcap-diff documents (RFC 5874; standards.md §8, XD-01…XD-14) and the RFC 5261 patch of a
//! recorded edit ([`patch`]). Pure (layer L0): change records in, XML text out.
//!
//! The diff document binds its own namespace to the prefix `d` and declares no default
//! namespace, so that unprefixed names in patch `sel` values mean "no namespace" (RFC 5261
//! §4.2.1, XD-08); every document namespace a selector needs gets a prefix of its own
//! (`x1`, `x2`, …) on the root element.

pub mod patch;
pub mod tree;

use std::fmt::Write as _;

use crate::xcap::error::escape_text;
use crate::xml::attvalue::escape as escape_attr;

/// `urn:ietf:params:xml:ns:xcap-diff` (XD-01).
pub const NS_XCAP_DIFF: &str = "urn:ietf:params:xml:ns:xcap-diff";
/// The media type of diff documents (XD-01).
pub const MIME_XCAP_DIFF: &str = "application/xcap-diff+xml";

/// Prefixes for the namespaces named in `sel` values, in order of first use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefixes(Vec<String>);

impl Prefixes {
    /// The prefix bound to `ns`, assigning the next one on first use.
    pub fn prefix_for(&mut self, ns: &str) -> String {
        let i = match self.0.iter().position(|n| n == ns) {
            Some(i) => i,
            None => {
                self.0.push(ns.to_string());
                self.0.len() - 1
            }
        };
        format!("x{}", i + 1)
    }

    fn declarations(&self, out: &mut String) {
        for (i, ns) in self.0.iter().enumerate() {
            let _ = write!(out, " xmlns:x{}=\"{}\"", i + 1, escape_attr(ns));
        }
    }
}

/// One RFC 5261 patch operation (XD-07, XD-09, XD-10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOp {
    /// `<add sel [pos] [type]>content</add>`: `content` is element text (for `type` absent)
    /// or an attribute value (for `type="@name"`).
    Add {
        sel: String,
        pos: Option<AddPos>,
        attribute: Option<String>,
        content: String,
    },
    /// `<replace sel>content</replace>`: an element's text, or an attribute value when `sel`
    /// ends in `/@name`.
    Replace {
        sel: String,
        content: String,
        attribute: bool,
    },
    /// `<remove sel [ws="before"]>`: `ws_before` removes the whitespace text node before the
    /// element too (RFC 5261 §4.5).
    Remove { sel: String, ws_before: bool },
}

/// `pos` of `<add>` (XD-09b, XD-09c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddPos {
    Prepend,
    Before,
    After,
}

impl AddPos {
    fn as_str(self) -> &'static str {
        match self {
            AddPos::Prepend => "prepend",
            AddPos::Before => "before",
            AddPos::After => "after",
        }
    }
}

/// What a `<document>` element says (XD-05).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentChange {
    /// XD-05a: the patch turns `previous` into `new`.
    Patched(Vec<PatchOp>),
    /// XD-05b / XD-05d / XD-05e: fetch it (or it is gone), no patch.
    Fetch,
    /// XD-05c: only the ETag changed.
    BodyNotChanged,
}

/// One `<document>` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentReport {
    /// The document selector relative to the XCAP root, percent-encoded (XD-04).
    pub sel: String,
    pub previous_etag: Option<String>,
    pub new_etag: Option<String>,
    pub change: DocumentChange,
}

/// One `<element>` or `<attribute>` report (XD-11, XD-12): `sel` is the subscribed component
/// URI as sent (XE-11); `None` content means the component does not exist (`exists="false"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentReport {
    /// `content`: the element with the namespace declarations it needs (XD-11b).
    Element {
        sel: String,
        content: Option<String>,
    },
    /// `value`: the attribute value.
    Attribute { sel: String, value: Option<String> },
}

/// An xcap-diff document under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XcapDiff {
    pub xcap_root: String,
    pub documents: Vec<DocumentReport>,
    pub components: Vec<ComponentReport>,
    pub prefixes: Prefixes,
}

impl XcapDiff {
    pub fn new(xcap_root: impl Into<String>) -> XcapDiff {
        XcapDiff {
            xcap_root: xcap_root.into(),
            ..XcapDiff::default()
        }
    }

    /// The diff document (XD-01, XD-02): UTF-8 XML with `xcap-root` on the root.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(
            out,
            "<d:xcap-diff xmlns:d=\"{NS_XCAP_DIFF}\" xcap-root=\"{}\"",
            escape_attr(&self.xcap_root)
        );
        self.prefixes.declarations(&mut out);
        out.push_str(">\n");
        for doc in &self.documents {
            let _ = write!(out, "  <d:document sel=\"{}\"", escape_attr(&doc.sel));
            if let Some(e) = &doc.previous_etag {
                let _ = write!(out, " previous-etag=\"{}\"", escape_attr(e));
            }
            if let Some(e) = &doc.new_etag {
                let _ = write!(out, " new-etag=\"{}\"", escape_attr(e));
            }
            match &doc.change {
                DocumentChange::Fetch => out.push_str("/>\n"),
                DocumentChange::BodyNotChanged => {
                    out.push_str("><d:body-not-changed/></d:document>\n")
                }
                DocumentChange::Patched(ops) => {
                    out.push_str(">\n");
                    for op in ops {
                        write_op(&mut out, op);
                    }
                    out.push_str("  </d:document>\n");
                }
            }
        }
        for component in &self.components {
            match component {
                ComponentReport::Element {
                    sel,
                    content: Some(c),
                } => {
                    let _ = writeln!(
                        out,
                        "  <d:element sel=\"{}\">{c}</d:element>",
                        escape_attr(sel)
                    );
                }
                ComponentReport::Element { sel, content: None } => {
                    let _ = writeln!(
                        out,
                        "  <d:element sel=\"{}\" exists=\"false\"/>",
                        escape_attr(sel)
                    );
                }
                ComponentReport::Attribute {
                    sel,
                    value: Some(v),
                } => {
                    let _ = writeln!(
                        out,
                        "  <d:attribute sel=\"{}\">{}</d:attribute>",
                        escape_attr(sel),
                        escape_text(v)
                    );
                }
                ComponentReport::Attribute { sel, value: None } => {
                    let _ = writeln!(
                        out,
                        "  <d:attribute sel=\"{}\" exists=\"false\"/>",
                        escape_attr(sel)
                    );
                }
            }
        }
        out.push_str("</d:xcap-diff>\n");
        out
    }
}

fn write_op(out: &mut String, op: &PatchOp) {
    match op {
        PatchOp::Add {
            sel,
            pos,
            attribute,
            content,
        } => {
            let _ = write!(out, "    <d:add sel=\"{}\"", escape_attr(sel));
            if let Some(p) = pos {
                let _ = write!(out, " pos=\"{}\"", p.as_str());
            }
            match attribute {
                Some(name) => {
                    let _ = write!(
                        out,
                        " type=\"@{}\">{}</d:add>",
                        escape_attr(name),
                        escape_text(content)
                    );
                }
                None => {
                    let _ = write!(out, ">{content}</d:add>");
                }
            }
        }
        PatchOp::Replace {
            sel,
            content,
            attribute,
        } => {
            let body = if *attribute {
                escape_text(content)
            } else {
                content.clone()
            };
            let _ = write!(
                out,
                "    <d:replace sel=\"{}\">{body}</d:replace>",
                escape_attr(sel)
            );
        }
        PatchOp::Remove { sel, ws_before } => {
            let ws = if *ws_before { " ws=\"before\"" } else { "" };
            let _ = write!(out, "    <d:remove sel=\"{}\"{ws}/>", escape_attr(sel));
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    // XD-02, XD-04, XD-05: root with xcap-root, one document per form, prefixes declared.
    #[test]
    fn document_forms() {
        let mut diff = XcapDiff::new("http://xcap.example.com/xcap-root");
        let p = diff
            .prefixes
            .prefix_for("urn:ietf:params:xml:ns:resource-lists");
        assert_eq!(p, "x1");
        assert_eq!(
            diff.prefixes
                .prefix_for("urn:ietf:params:xml:ns:resource-lists"),
            "x1"
        );
        diff.documents.push(DocumentReport {
            sel: "resource-lists/users/sip:joe@example.com/index".into(),
            previous_etag: None,
            new_etag: Some("a\"1".into()),
            change: DocumentChange::Fetch,
        });
        diff.documents.push(DocumentReport {
            sel: "x/users/y/index".into(),
            previous_etag: Some("1".into()),
            new_etag: Some("2".into()),
            change: DocumentChange::BodyNotChanged,
        });
        diff.documents.push(DocumentReport {
            sel: "x/users/y/index".into(),
            previous_etag: Some("2".into()),
            new_etag: Some("3".into()),
            change: DocumentChange::Patched(vec![
                PatchOp::Remove {
                    sel: "x1:a/*[2]".into(),
                    ws_before: false,
                },
                PatchOp::Add {
                    sel: "x1:a".into(),
                    pos: Some(AddPos::Prepend),
                    attribute: None,
                    content: "<e xmlns=\"urn:x\"/>".into(),
                },
                PatchOp::Add {
                    sel: "x1:a".into(),
                    pos: None,
                    attribute: Some("n".into()),
                    content: "a<b&c".into(),
                },
            ]),
        });
        let xml = diff.to_xml();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().namespace(), Some(NS_XCAP_DIFF));
        assert_eq!(
            root.attribute("xcap-root"),
            Some("http://xcap.example.com/xcap-root")
        );
        assert_eq!(
            root.lookup_namespace_uri(Some("x1")),
            Some("urn:ietf:params:xml:ns:resource-lists")
        );
        assert_eq!(
            root.lookup_namespace_uri(None),
            None,
            "no default namespace (XD-08)"
        );
        let docs: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(docs[0].attribute("new-etag"), Some("a\"1"));
        assert!(docs[1]
            .first_element_child()
            .unwrap()
            .has_tag_name((NS_XCAP_DIFF, "body-not-changed")));
        let ops: Vec<_> = docs[2].children().filter(|n| n.is_element()).collect();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[2].attribute("type"), Some("@n"));
        assert_eq!(ops[2].text(), Some("a<b&c"));
        assert_eq!(
            ops[1].first_element_child().unwrap().tag_name().namespace(),
            Some("urn:x")
        );
    }

    // XD-11, XD-12, XE-14: components with their content, or exists="false".
    #[test]
    fn component_reports() {
        let mut diff = XcapDiff::new("http://x/xcap-root");
        diff.components = vec![
            ComponentReport::Element {
                sel: "a/users/u/index/~~/r/l".into(),
                content: Some("<l xmlns=\"urn:r\"/>".into()),
            },
            ComponentReport::Element {
                sel: "a/~~/gone".into(),
                content: None,
            },
            ComponentReport::Attribute {
                sel: "a/~~/r/@n".into(),
                value: Some("x&y".into()),
            },
            ComponentReport::Attribute {
                sel: "a/~~/r/@m".into(),
                value: None,
            },
        ];
        let xml = diff.to_xml();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let kids: Vec<_> = doc
            .root_element()
            .children()
            .filter(|n| n.is_element())
            .collect();
        assert_eq!(
            kids[0]
                .first_element_child()
                .unwrap()
                .tag_name()
                .namespace(),
            Some("urn:r")
        );
        assert_eq!(kids[1].attribute("exists"), Some("false"));
        assert_eq!(kids[2].text(), Some("x&y"));
        assert!(kids[3].has_tag_name((NS_XCAP_DIFF, "attribute")));
        assert_eq!(kids[3].attribute("exists"), Some("false"));
    }
}
