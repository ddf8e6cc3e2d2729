//! The application-usage registry (AU-11): built once at start-up from `app-usages/*.toml` and
//! `schemas/*.xsd` (the shipped set is compiled into the binary; configured directories add to
//! it or replace files of the same name); refuses to start on any mismatch (design.md §5).
//! Drives xcap-caps (AU-08), routing and default-namespace lookups.

use super::descriptor::{Descriptor, DescriptorError};
use super::hooks::{self, Hook};
use crate::xml::attvalue::escape;
use crate::xsd::SchemaFiles;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error(
        "cannot read the directory {path} named by server.{key}: {message} (leave server.{key} \
         empty to use only the set built into xcapd)"
    )]
    Dir {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    #[error("{file}: AUID {auid} is defined twice")]
    Duplicate { file: String, auid: String },
    #[error("{file}: schema {schema} not found in the schemas directory")]
    MissingSchema { file: String, schema: String },
    #[error("{file}: unknown constraint hook {hook} (known: {known})")]
    UnknownHook {
        file: String,
        hook: String,
        known: String,
    },
    #[error("no descriptor defines the mandatory xcap-caps usage (RFC 4825 §12, AU-07)")]
    NoXcapCaps,
}

/// One registered application usage.
pub struct AppUsage {
    pub descriptor: Descriptor,
    pub hooks: Vec<(String, Hook)>,
}

impl AppUsage {
    pub fn auid(&self) -> &str {
        &self.descriptor.auid
    }
}

pub struct Registry {
    usages: BTreeMap<String, Arc<AppUsage>>,
}

impl Registry {
    /// Loads the descriptors and schemas built into the binary, then every `*.toml` in
    /// `app_usages_dir` and every `*.xsd` in `schemas_dir`; a file there replaces the built-in
    /// one of the same name. An empty path means no directory.
    pub fn load(
        app_usages_dir: &Path,
        schemas_dir: &Path,
    ) -> Result<(Registry, SchemaFiles), RegistryError> {
        let schemas = SchemaFiles {
            files: overlay(embedded::SCHEMAS, schemas_dir, "schemas_dir", "xsd")?
                .into_iter()
                .map(|(name, bytes)| (name, Arc::<[u8]>::from(bytes)))
                .collect(),
        };
        let mut descriptors = Vec::new();
        for (name, text) in overlay(
            embedded::APP_USAGES,
            app_usages_dir,
            "app_usages_dir",
            "toml",
        )? {
            let text = String::from_utf8(text).map_err(|_| RegistryError::Io {
                path: name.clone(),
                message: "not UTF-8".into(),
            })?;
            descriptors.push((name.clone(), Descriptor::parse(&name, &text)?));
        }
        let registry = Registry::from_descriptors(descriptors, &schemas)?;
        Ok((registry, schemas))
    }

    pub fn from_descriptors(
        descriptors: Vec<(String, Descriptor)>,
        schemas: &SchemaFiles,
    ) -> Result<Registry, RegistryError> {
        let mut usages = BTreeMap::new();
        for (file, d) in descriptors {
            if let Some(schema) = &d.schema {
                if !schemas.files.contains_key(schema) {
                    return Err(RegistryError::MissingSchema {
                        file,
                        schema: schema.clone(),
                    });
                }
            }
            let mut bound = Vec::new();
            for name in &d.hooks {
                let hook = hooks::hook_by_name(name).ok_or_else(|| RegistryError::UnknownHook {
                    file: file.clone(),
                    hook: name.clone(),
                    known: hooks::hook_names().join(", "),
                })?;
                bound.push((name.clone(), hook));
            }
            if usages.contains_key(&d.auid) {
                return Err(RegistryError::Duplicate {
                    file,
                    auid: d.auid.clone(),
                });
            }
            usages.insert(
                d.auid.clone(),
                Arc::new(AppUsage {
                    descriptor: d,
                    hooks: bound,
                }),
            );
        }
        if !usages.contains_key("xcap-caps") {
            return Err(RegistryError::NoXcapCaps);
        }
        Ok(Registry { usages })
    }

    /// Keeps only the usages of the given XDMS roles ("shared", "im", ...); usages of the
    /// "core" role (xcap-caps, xcap-directory) and usages without a role always stay.
    pub fn retain_roles(&mut self, roles: &[String]) {
        self.usages
            .retain(|_, u| match u.descriptor.role.as_deref() {
                None | Some("core") => true,
                Some(r) => roles.iter().any(|x| x == r),
            });
    }

    pub fn get(&self, auid: &str) -> Option<&Arc<AppUsage>> {
        self.usages.get(auid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<AppUsage>> {
        self.usages.values()
    }

    /// (key, main schema) pairs for the validator: one per stored usage.
    pub fn validator_mains(&self) -> Vec<(String, String)> {
        self.iter()
            .filter_map(|u| {
                u.descriptor
                    .schema
                    .clone()
                    .map(|s| (u.auid().to_string(), s))
            })
            .collect()
    }

    /// The xcap-caps document (RFC 4825 §12.2, AU-08): every AUID, and every namespace whose
    /// schema the server holds (the xcap-caps namespace always included).
    pub fn xcap_caps_document(&self) -> String {
        let mut namespaces: BTreeSet<&str> = BTreeSet::new();
        namespaces.insert("urn:ietf:params:xml:ns:xcap-caps");
        for u in self.iter() {
            for ns in &u.descriptor.namespaces {
                namespaces.insert(ns);
            }
        }
        let mut s = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-caps xmlns=\"urn:ietf:params:xml:ns:xcap-caps\">\n  <auids>\n",
        );
        for auid in self.usages.keys() {
            s.push_str(&format!("    <auid>{}</auid>\n", escape(auid)));
        }
        s.push_str("  </auids>\n  <namespaces>\n");
        for ns in namespaces {
            s.push_str(&format!("    <namespace>{}</namespace>\n", escape(ns)));
        }
        s.push_str("  </namespaces>\n</xcap-caps>\n");
        s
    }
}

/// The shipped `app-usages/*.toml` and `schemas/*.xsd`, compiled in by `build.rs`.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_usages.rs"));
}

/// The built-in files, then those of `dir` (when not empty) replacing or adding by name;
/// sorted by name.
fn overlay(
    builtin: &[(&str, &[u8])],
    dir: &Path,
    key: &'static str,
    ext: &str,
) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
    let mut files: BTreeMap<String, Vec<u8>> = builtin
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect();
    if !dir.as_os_str().is_empty() {
        files.extend(read_dir_files(dir, key, ext)?);
    }
    Ok(files.into_iter().collect())
}

/// Reads the regular files of a directory with the given extension, sorted by name.
fn read_dir_files(
    dir: &Path,
    key: &'static str,
    ext: &str,
) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
    let io = |e: std::io::Error| RegistryError::Dir {
        key,
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|e| RegistryError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        out.push((name, bytes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #10 item 6: with no directories configured, the usages built into the binary load
    /// (AU-07: xcap-caps among them), whatever the working directory.
    #[test]
    fn au11_builtin_set_loads_without_directories() {
        let (registry, schemas) = Registry::load(Path::new(""), Path::new("")).unwrap();
        for auid in [
            "xcap-caps",
            "resource-lists",
            "rls-services",
            "org.openmobilealliance.groups",
        ] {
            assert!(registry.get(auid).is_some(), "{auid}");
        }
        assert!(schemas.files.contains_key("xml.xsd"));
        assert_eq!(
            schemas.files.len(),
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension() == Some("xsd".as_ref()))
                .count(),
            "every shipped schema is built in"
        );
    }

    /// A configured directory that cannot be read names itself and the config key to set.
    #[test]
    fn missing_directory_error_names_path_and_key() {
        let err = Registry::load(Path::new("/nonexistent/xcapd-au"), Path::new(""))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/xcapd-au"), "{err}");
        assert!(err.contains("server.app_usages_dir"), "{err}");
        let err = Registry::load(Path::new(""), Path::new("/nonexistent/xcapd-sc"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("server.schemas_dir"), "{err}");
    }

    /// A file in the configured directory replaces the built-in one of the same name.
    #[test]
    fn directory_file_replaces_builtin_of_same_name() {
        let dir = std::env::temp_dir().join(format!("xcapd-reg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let builtin = embedded::APP_USAGES
            .iter()
            .find(|(n, _)| *n == "xcap-caps.toml")
            .unwrap()
            .1;
        let text = String::from_utf8(builtin.to_vec()).unwrap();
        let text = text.replace("auid = \"xcap-caps\"", "auid = \"xcap-caps\"\n# replaced");
        std::fs::write(dir.join("xcap-caps.toml"), &text).unwrap();
        std::fs::write(dir.join("ignored.txt"), "not a descriptor").unwrap();
        let files = overlay(embedded::APP_USAGES, &dir, "app_usages_dir", "toml").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(files.len(), embedded::APP_USAGES.len());
        let replaced = files.iter().find(|(n, _)| n == "xcap-caps.toml").unwrap();
        assert_eq!(replaced.1, text.as_bytes());
    }
}
