//! A document text together with its parsed tree, kept as one owned value so that a parse can
//! be reused: by the edit that produced it (idempotency check), by the constraint hooks, and by
//! later requests on the same version through the XDMS document cache (design.md §3: parse
//! once per version instead of once per step).

use super::parse::{parse_document, Limits};
use super::XmlError;
use roxmltree::Document;
use std::sync::Arc;

self_cell::self_cell!(
    struct Inner {
        owner: Arc<str>,
        #[covariant]
        dependent: Document,
    }
);

/// An immutable parsed document.
pub struct ParsedDoc(Inner);

impl ParsedDoc {
    /// Parses with the same checks as [`parse_document`] (DTD refused, caps applied).
    pub fn parse(text: Arc<str>, limits: &Limits) -> Result<ParsedDoc, XmlError> {
        Inner::try_new(text, |t| parse_document(t, limits)).map(ParsedDoc)
    }

    pub fn text(&self) -> &str {
        self.0.borrow_owner()
    }

    pub fn shared_text(&self) -> &Arc<str> {
        self.0.borrow_owner()
    }

    pub fn doc(&self) -> &Document<'_> {
        self.0.borrow_dependent()
    }

    /// Rough memory use, for cache accounting: the text plus the node table.
    pub fn approx_bytes(&self) -> usize {
        self.text().len() + self.doc().descendants().len() * 96
    }
}

impl std::fmt::Debug for ParsedDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedDoc")
            .field("bytes", &self.text().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_text_and_tree() {
        let p = ParsedDoc::parse(Arc::from("<a><b/></a>"), &Limits::default()).unwrap();
        assert_eq!(p.text(), "<a><b/></a>");
        assert_eq!(
            p.doc()
                .root_element()
                .first_element_child()
                .unwrap()
                .tag_name()
                .name(),
            "b"
        );
        assert!(p.approx_bytes() > p.text().len());
    }

    #[test]
    fn parse_errors_are_the_engine_errors() {
        assert_eq!(
            ParsedDoc::parse(Arc::from("<!DOCTYPE a><a/>"), &Limits::default()).unwrap_err(),
            XmlError::Doctype
        );
    }
}
