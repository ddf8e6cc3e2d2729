//! Change events published after every committed write (design.md §2, standards.md XE-24):
//! the notifier and the IM Server consume them; the XDMS never knows who listens. Pure data.

use crate::storage::DocKey;

/// One committed change of one document, in commit order (`seq` strictly increases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentChanged {
    pub key: DocKey,
    /// The document selector relative to the XCAP root, e.g.
    /// `resource-lists/users/sip:alice@example.com/index` (RFC 5874 §3 `sel` form).
    pub document: String,
    /// None when the document was created.
    pub previous_etag: Option<String>,
    /// None when the document was deleted.
    pub new_etag: Option<String>,
    pub seq: u64,
}
