//! Pure XML engine of the XCAP server: checks stored documents and request bodies, evaluates
//! resolved node selectors on them and edits them by splicing bytes, so that everything outside an
//! edit stays byte-identical (RFC 4825 §6.3, §7, §8.2–§8.4, §10; design.md §3, §6).
//!
//! Standards items: NS-02..NS-18, OP-01b, OP-06..OP-36, ER-03..ER-09.

pub mod attvalue;
pub mod fragment;
pub mod locate;
pub mod nsbind;
pub mod parse;
pub mod parsed;
pub mod splice;

pub use locate::{
    element_facts, element_placement, element_position, get_attribute, get_attribute_in,
    get_element, get_element_in, select_element, standalone_element_in, standalone_text,
    ElementFacts,
};
pub use nsbind::{get_namespace_bindings, get_namespace_bindings_in};
pub use parse::{check_document, parse_document, Limits};
pub use parsed::ParsedDoc;
pub use splice::{
    delete_node, delete_node_in, delete_node_pending, put_attribute, put_attribute_in,
    put_attribute_pending, put_element, put_element_in, put_element_pending, Edit, PendingEdit,
};

use thiserror::Error;

/// Outcomes of the XML engine. Each variant maps to one RFC 4825 result: the caller turns
/// them into 404 or a 409 `xcap-error` body (§11).
#[derive(Error, Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    /// The document is not well-formed XML (ER-03, `<not-well-formed>`).
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    /// The body is not UTF-8 or declares another encoding (ER-04, `<not-utf-8>`).
    #[error("not UTF-8")]
    NotUtf8,
    /// An element body is not exactly one balanced element (ER-05, `<not-xml-frag>`).
    #[error("not an XML fragment holding exactly one element")]
    NotXmlFrag,
    /// An attribute body is not a valid AttValue (ER-06, `<not-xml-att-value>`).
    #[error("not an XML attribute value")]
    NotXmlAttValue,
    /// The document carries a DTD, which the server refuses (design.md §6).
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    /// Elements are nested deeper than `Limits::max_depth`.
    #[error("document nested too deep")]
    TooDeep,
    /// The document has more nodes than `Limits::max_nodes` (or attributes than
    /// `Limits::max_attributes`).
    #[error("document has too many nodes")]
    TooManyNodes,
    /// An element has more attributes than the limit given.
    #[error("an element has more than {0} attributes")]
    TooManyAttributes(usize),
    /// A step or the terminal selects nothing (404 on GET and DELETE).
    #[error("the node selector selects nothing")]
    NoMatch,
    /// A step selects more than one element: the selector is invalid (404 on GET and DELETE).
    #[error("the node selector is ambiguous")]
    Ambiguous,
    /// PUT: the parent is missing or ambiguous. `matched_steps` counts the leading steps that
    /// selected exactly one element (the closest existing ancestor); 0 means not even the root.
    #[error("no parent (closest ancestor after {matched_steps} steps)")]
    NoParent { matched_steps: usize },
    /// GET(PUT(x)) would not return x, or the insertion point does not exist (ER-08).
    #[error("cannot insert")]
    CannotInsert,
    /// After removal the URI would still select a node (ER-09).
    #[error("cannot delete")]
    CannotDelete,
}
