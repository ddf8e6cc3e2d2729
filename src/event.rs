//! Change records (design.md §2, standards.md XE-24): what one committed write did, as the
//! storage change feed hands it to the notifier, the IM Server and caches. Each record carries
//! enough to build the RFC 5874 xcap-diff document and an RFC 5261 patch for element and
//! attribute edits from the log alone (also after a restart). Pure data.

use crate::xcap::keys::DocKey;

/// Which node-level XCAP operation made a change (RFC 4825 §7.4–§7.9), or a whole-document
/// PUT recorded as the patch from the version it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    PutElement,
    DeleteElement,
    PutAttribute,
    DeleteAttribute,
    /// RFC 4825 §7.4 replacing a document: `value` holds the RFC 5261 operations
    /// (`xcap_diff::tree::encode`), computed when the change was made.
    ReplaceDocument,
}

impl EditKind {
    pub fn code(self) -> u8 {
        match self {
            EditKind::PutElement => 1,
            EditKind::DeleteElement => 2,
            EditKind::PutAttribute => 3,
            EditKind::DeleteAttribute => 4,
            EditKind::ReplaceDocument => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<EditKind> {
        Some(match code {
            1 => EditKind::PutElement,
            2 => EditKind::DeleteElement,
            3 => EditKind::PutAttribute,
            4 => EditKind::DeleteAttribute,
            5 => EditKind::ReplaceDocument,
            _ => return None,
        })
    }
}

/// Where a created element sits among its siblings' nodes (text and comments included), as
/// RFC 5261 `<add>` needs it to place the element exactly (RFC 4825 §8.2.3 inserts it after
/// its previous sibling element, before its next one, or as the first or last child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Right after the preceding element sibling.
    AfterPrevious,
    /// Right before the following element sibling.
    BeforeNext,
    /// The parent's last child node.
    Append,
    /// The parent's first child node.
    Prepend,
}

impl Placement {
    pub fn code(self) -> u8 {
        match self {
            Placement::AfterPrevious => 1,
            Placement::BeforeNext => 2,
            Placement::Append => 3,
            Placement::Prepend => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Placement> {
        Some(match code {
            1 => Placement::AfterPrevious,
            2 => Placement::BeforeNext,
            3 => Placement::Append,
            4 => Placement::Prepend,
            _ => return None,
        })
    }
}

/// An element or attribute edit (RFC 4825 §7.4–§7.9), as the XDMS made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub kind: EditKind,
    /// The node selector as the client sent it, percent-decoded (RFC 4825 §6.3).
    pub node_selector: String,
    /// Prefix → namespace bindings of the request's `xmlns()` query (URI-14), so the selector
    /// can be resolved again (RFC 5874 §4 namespace declarations).
    pub namespaces: Vec<(String, String)>,
    /// PUT element: the element as stored, with the namespace declarations it inherits written
    /// on it (so it reads the same anywhere); PUT attribute: the value; deletes: `None`.
    pub value: Option<String>,
    /// Element edits: the element's 1-based position among its parent's element children, in
    /// the new document for a PUT and in the old one for a DELETE (RFC 5261 `pos` needs it).
    pub position: Option<u32>,
    /// PUT: whether the node was created (true) or replaced (false).
    pub created: bool,
    /// A created element: where it sits between its sibling nodes; `None` when no sibling
    /// element or parent edge touches it (text or comments on both sides).
    pub placement: Option<Placement>,
}

/// Who made a write and how, passed to the store with the write (design.md §2: the record is
/// written in the same commit as the document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeOrigin {
    /// The authenticated principal (canonical XUI or admin name); `None` for the server itself.
    pub principal: Option<String>,
    /// `None` for whole-document writes.
    pub edit: Option<Edit>,
}

/// One committed change of one document. Records of one store have gap-free, strictly
/// increasing `seq` numbers in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub seq: u64,
    pub key: DocKey,
    /// `None` when the document was created.
    pub previous_etag: Option<String>,
    /// `None` when the document was deleted.
    pub new_etag: Option<String>,
    /// Commit time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub origin: ChangeOrigin,
}

impl ChangeRecord {
    /// The document selector relative to the XCAP root (RFC 5874 §3 `sel` form).
    pub fn document_selector(&self) -> String {
        self.key.document_selector()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4825 §7.4–§7.9: every node-level operation has a stable code in stored records.
    #[test]
    fn edit_kind_codes_round_trip() {
        for kind in [
            EditKind::PutElement,
            EditKind::DeleteElement,
            EditKind::PutAttribute,
            EditKind::DeleteAttribute,
            EditKind::ReplaceDocument,
        ] {
            assert_eq!(EditKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(EditKind::from_code(0), None);
        assert_eq!(EditKind::from_code(6), None);
    }
}
