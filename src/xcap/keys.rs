//! Document keys (RFC 4825 §6.2, URI-07): which document of which tree of which application
//! usage, the rules every storage backend relies on, and the canonical document selector a key
//! is named by in xcap-diff documents and generated listings (RFC 5874 §3). Pure (L0).

use crate::xcap::pct::encode_path_segment;

/// A key component breaks the storage rules (empty, NUL, empty path segment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid document key: {0}")]
pub struct KeyError(pub String);

/// The tree a document lives in: `global/` or `users/<XUI>/` (RFC 4825 §6.2, URI-07).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TreeKey {
    Global,
    /// Canonical XUI, e.g. `sip:alice@example.com`.
    User(String),
}

/// Identity of one document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    pub auid: String,
    pub tree: TreeKey,
    /// Document path relative to the home/global directory, segments joined by `/`, e.g. `index`
    /// or `oma_status-icon/rcs_status_icon` (URI-07).
    pub path: String,
}

impl DocKey {
    pub fn new(auid: impl Into<String>, tree: TreeKey, path: impl Into<String>) -> Self {
        Self {
            auid: auid.into(),
            tree,
            path: path.into(),
        }
    }

    /// The canonical document selector relative to the XCAP root (XD-04 form), e.g.
    /// `resource-lists/users/sip:alice@example.com/index`.
    pub fn document_selector(&self) -> String {
        let mut s = self.directory_selector();
        s.push_str(
            &self
                .path
                .split('/')
                .map(encode_path_segment)
                .collect::<Vec<_>>()
                .join("/"),
        );
        s
    }

    /// `auid/users/<xui>/` or `auid/global/`.
    pub fn directory_selector(&self) -> String {
        match &self.tree {
            TreeKey::Global => format!("{}/global/", self.auid),
            TreeKey::User(xui) => format!("{}/users/{}/", self.auid, encode_path_segment(xui)),
        }
    }

    /// Checks the rules every backend relies on: no NUL anywhere (NUL is the separator of encoded
    /// keys), non-empty AUID and XUI, and a path of non-empty `/`-separated segments.
    pub fn validate(&self) -> Result<(), KeyError> {
        validate_auid(&self.auid)?;
        if let TreeKey::User(xui) = &self.tree {
            validate_xui(xui)?;
        }
        validate_path(&self.path)
    }
}

pub fn validate_auid(auid: &str) -> Result<(), KeyError> {
    validate_component("AUID", auid)
}

pub fn validate_xui(xui: &str) -> Result<(), KeyError> {
    validate_component("XUI", xui)
}

pub fn validate_tree(tree: &TreeKey) -> Result<(), KeyError> {
    match tree {
        TreeKey::Global => Ok(()),
        TreeKey::User(xui) => validate_xui(xui),
    }
}

fn validate_component(what: &str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError(format!("empty {what}")));
    }
    if value.contains('\0') {
        return Err(KeyError(format!("NUL in {what}")));
    }
    Ok(())
}

pub fn validate_path(path: &str) -> Result<(), KeyError> {
    validate_component("document path", path)?;
    if path.split('/').any(str::is_empty) {
        return Err(KeyError("empty segment in document path".into()));
    }
    Ok(())
}

/// Normalizes the `dir` argument of `directory_exists` into the prefix every document below it
/// starts with: `""` for the tree root, otherwise `"<dir>/"`.
pub fn directory_prefix(dir: &str) -> Result<String, KeyError> {
    let dir = dir.strip_suffix('/').unwrap_or(dir);
    if dir.is_empty() {
        return Ok(String::new());
    }
    validate_path(dir)?;
    Ok(format!("{dir}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // URI-07: document paths are '/'-joined non-empty segments; NUL is reserved as separator.
    #[test]
    fn validate_rejects_nul_empty_and_empty_segments() {
        let ok = DocKey::new("rls-services", TreeKey::User("sip:a@b".into()), "a/b");
        assert_eq!(ok.validate(), Ok(()));
        for bad in [
            DocKey::new("", TreeKey::Global, "index"),
            DocKey::new("a\0b", TreeKey::Global, "index"),
            DocKey::new("auid", TreeKey::User(String::new()), "index"),
            DocKey::new("auid", TreeKey::User("sip:\0".into()), "index"),
            DocKey::new("auid", TreeKey::Global, ""),
            DocKey::new("auid", TreeKey::Global, "in\0dex"),
            DocKey::new("auid", TreeKey::Global, "/index"),
            DocKey::new("auid", TreeKey::Global, "dir/"),
            DocKey::new("auid", TreeKey::Global, "a//b"),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    // OP-03: the tree root is asked for with an empty dir; a trailing '/' is ignored.
    #[test]
    fn directory_prefix_normalizes() {
        assert_eq!(directory_prefix(""), Ok(String::new()));
        assert_eq!(directory_prefix("/"), Ok(String::new()));
        assert_eq!(directory_prefix("a/b"), Ok("a/b/".into()));
        assert_eq!(directory_prefix("a/b/"), Ok("a/b/".into()));
        assert!(directory_prefix("a//b").is_err());
        assert!(directory_prefix("a\0").is_err());
    }

    // XD-04: the document selector percent-encodes the XUI and each path segment.
    #[test]
    fn document_selector_encodes_segments() {
        let key = DocKey::new(
            "resource-lists",
            TreeKey::User("sip:a b@x".into()),
            "d/in dex",
        );
        assert_eq!(
            key.document_selector(),
            "resource-lists/users/sip:a%20b@x/d/in%20dex"
        );
        let global = DocKey::new("xcap-caps", TreeKey::Global, "index");
        assert_eq!(global.document_selector(), "xcap-caps/global/index");
    }
}
