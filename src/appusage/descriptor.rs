//! The application-usage descriptor: one TOML file per AUID in `app-usages/` carrying the nine
//! items of RFC 4825 §5.9 that a server needs at run time (AU-02, AU-11). Pure parsing.

use crate::authz::{ReadPolicy, WritePolicy};
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DescriptorError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Which XCAP trees a usage has documents in (RFC 4825 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TreeKind {
    Users,
    Global,
}

/// Documents the server builds itself instead of storing (read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generated {
    /// `xcap-caps/global/index` from the registry (RFC 4825 §12, AU-07, AU-08).
    XcapCaps,
    /// `users/<xui>/directory.xml`: every document of the user with its ETag (AP-07, AP-08).
    XcapDirectory,
    /// `rls-services/global/index`: union of every user's `index` services (RL-15).
    RlsServicesGlobal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default)]
    pub read: ReadPolicy,
    #[serde(default)]
    pub write: WritePolicy,
    /// Read policy for the global tree when it differs (e.g. the rls-services global index).
    #[serde(default)]
    pub global_read: Option<ReadPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    /// AU-02a.
    pub auid: String,
    /// AU-02d.
    pub mime_type: String,
    /// AU-02c: expands unprefixed names in node selectors (URI-15). Absent = no namespace.
    #[serde(default)]
    pub default_namespace: Option<String>,
    /// AU-02b: main schema file in `schemas/`; absent only for generated usages.
    #[serde(default)]
    pub schema: Option<String>,
    /// Namespaces whose schemas this usage holds: advertised in xcap-caps (AU-08c).
    #[serde(default)]
    pub namespaces: Vec<String>,
    pub trees: Vec<TreeKind>,
    /// AU-02g: allowed document names in the users tree; empty = any name.
    #[serde(default)]
    pub document_names: Vec<String>,
    /// Subdirectories that always exist in a home directory (OP-03), e.g. `oma_status-icon`.
    #[serde(default)]
    pub directories: Vec<String>,
    #[serde(default)]
    pub generated: Option<Generated>,
    /// Documents of the global tree are generated (e.g. the rls-services global index).
    #[serde(default)]
    pub generated_global: Option<Generated>,
    /// AU-02e: named Rust constraint hooks (`appusage::hooks`).
    #[serde(default)]
    pub hooks: Vec<String>,
    /// AU-02i.
    pub authorization: Authorization,
    /// Which XDMS role serves this usage ("shared", "im", "core"); used by routing.
    #[serde(default)]
    pub role: Option<String>,
    /// AU-02f, AU-02h: prose for operators; not interpreted.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub data_semantics: Option<String>,
    #[serde(default)]
    pub naming: Option<String>,
    #[serde(default)]
    pub interdependencies: Option<String>,
    #[serde(default)]
    pub validation: Option<String>,
}

impl Descriptor {
    pub fn parse(file: &str, text: &str) -> Result<Descriptor, DescriptorError> {
        let d: Descriptor = toml::from_str(text).map_err(|e| DescriptorError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        d.check(file)?;
        Ok(d)
    }

    fn check(&self, file: &str) -> Result<(), DescriptorError> {
        let invalid = |message: String| DescriptorError::Invalid {
            file: file.to_string(),
            message,
        };
        if !valid_auid(&self.auid) {
            return Err(invalid(format!(
                "AUID {:?} is not a token or reverse-domain name (AU-01)",
                self.auid
            )));
        }
        if !self.mime_type.contains('/') {
            return Err(invalid(format!(
                "mime_type {:?} is not a media type",
                self.mime_type
            )));
        }
        if self.trees.is_empty() {
            return Err(invalid("trees must name users and/or global".into()));
        }
        if self.schema.is_none() && self.generated.is_none() {
            return Err(invalid("a stored usage needs a schema (AU-02b)".into()));
        }
        if self.generated.is_some() && self.authorization.write != WritePolicy::None {
            return Err(invalid(
                "generated usages are read-only: authorization.write must be \"none\"".into(),
            ));
        }
        for name in self.document_names.iter().chain(&self.directories) {
            if name.is_empty() || name.contains(['\0', '?', '#']) || name == "." || name == ".." {
                return Err(invalid(format!("bad document or directory name {name:?}")));
            }
        }
        Ok(())
    }

    pub fn read_only(&self) -> bool {
        self.generated.is_some() || self.authorization.write == WritePolicy::None
    }

    pub fn allows_tree(&self, tree: TreeKind) -> bool {
        self.trees.contains(&tree)
    }
}

/// AU-01: an IETF token (no '.') or reverse-domain name + '.' + token.
fn valid_auid(auid: &str) -> bool {
    !auid.is_empty()
        && auid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !auid.starts_with('.')
        && !auid.ends_with('.')
        && !auid.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
auid = "resource-lists"
mime_type = "application/resource-lists+xml"
default_namespace = "urn:ietf:params:xml:ns:resource-lists"
schema = "resource-lists.xsd"
namespaces = ["urn:ietf:params:xml:ns:resource-lists"]
trees = ["users"]
hooks = ["resource-lists"]
[authorization]
read = "owner"
write = "owner"
"#;

    #[test]
    fn au02_descriptor_parses() {
        let d = Descriptor::parse("x.toml", GOOD).unwrap();
        assert_eq!(d.auid, "resource-lists");
        assert!(d.allows_tree(TreeKind::Users));
        assert!(!d.read_only());
    }

    #[test]
    fn unknown_keys_rejected() {
        let bad = format!("{GOOD}\nfoo = 1\n");
        assert!(Descriptor::parse(
            "x.toml",
            &bad.replace("[authorization]", "bogus = 2\n[authorization]")
        )
        .is_err());
    }

    #[test]
    fn au01_auid_syntax() {
        assert!(valid_auid("org.openmobilealliance.pres-rules"));
        assert!(valid_auid("xcap-caps"));
        assert!(!valid_auid("a/b"));
        assert!(!valid_auid(".x"));
        assert!(!valid_auid(""));
    }

    #[test]
    fn stored_usage_needs_schema() {
        let bad = GOOD.replace("schema = \"resource-lists.xsd\"\n", "");
        assert!(matches!(
            Descriptor::parse("x.toml", &bad),
            Err(DescriptorError::Invalid { .. })
        ));
    }
}
