//! The application-usage registry (AU-11): built once at start-up from `app-usages/*.toml` and
//! `schemas/*.xsd`; refuses to start on any mismatch (design.md §5). Drives xcap-caps (AU-08),
//! routing and default-namespace lookups.

use super::descriptor::{Descriptor, DescriptorError};
use super::hooks::{self, Hook};
use crate::xml::attvalue::escape;
use crate::xsd::SchemaFiles;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
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
    /// Loads every `*.toml` in `app_usages_dir` and every file in `schemas_dir`.
    pub fn load(
        app_usages_dir: &Path,
        schemas_dir: &Path,
    ) -> Result<(Registry, SchemaFiles), RegistryError> {
        let schemas = read_schema_dir(schemas_dir)?;
        let mut descriptors = Vec::new();
        for (name, text) in read_dir_files(app_usages_dir, Some("toml"))? {
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

fn read_schema_dir(dir: &Path) -> Result<SchemaFiles, RegistryError> {
    let mut files = HashMap::new();
    for (name, bytes) in read_dir_files(dir, Some("xsd"))? {
        files.insert(name, Arc::<[u8]>::from(bytes));
    }
    Ok(SchemaFiles { files })
}

/// Reads the regular files of a directory with the given extension, sorted by name.
fn read_dir_files(dir: &Path, ext: Option<&str>) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
    let io = |e: std::io::Error| RegistryError::Io {
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
        if let Some(ext) = ext {
            if path.extension().and_then(|e| e.to_str()) != Some(ext) {
                continue;
            }
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
