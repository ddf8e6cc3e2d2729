//! Server-wide URI uniqueness across documents of different users: RLS service URIs (RFC 4826
//! §4.4.5, RL-12) and group URIs (SX-05). The index maps (AUID, URI) to the document holding
//! it; it is built from the store at start and updated under its lock by every commit, so two
//! writers can never claim one URI, and by the change feed for commits of other processes.

use crate::appusage::hooks;
use crate::storage::{DocKey, DocumentStore, StorageError, TreeKey};
use crate::xcap::error::{Conflict, ExistsField, XcapError};
use crate::xml::ParsedDoc;
use std::collections::HashMap;
use tokio::sync::{Mutex, MutexGuard};

type Index = HashMap<(String, String), DocKey>;

struct Kind {
    extract: fn(&roxmltree::Document) -> Vec<String>,
    field: fn(usize) -> String,
}

fn kind(auid: &str) -> Option<Kind> {
    match auid {
        "rls-services" => Some(Kind {
            extract: hooks::service_uris,
            field: hooks::service_uri_field,
        }),
        "org.openmobilealliance.groups" => Some(Kind {
            extract: hooks::shared::group_uris,
            field: |n| format!("group/list-service%5B{n}%5D/@uri"),
        }),
        _ => None,
    }
}

pub struct UniqueUris {
    index: Mutex<Index>,
}

pub struct Guard<'a>(MutexGuard<'a, Index>);

impl UniqueUris {
    pub async fn build(store: &dyn DocumentStore) -> Result<UniqueUris, StorageError> {
        Ok(UniqueUris {
            index: Mutex::new(scan(store).await?),
        })
    }

    /// Rebuilds the index from the store (a change-feed consumer that fell behind retention
    /// cannot know what changed). Scans under the lock, so no commit interleaves.
    pub async fn rebuild(&self, store: &dyn DocumentStore) -> Result<(), StorageError> {
        let mut index = self.index.lock().await;
        *index = scan(store).await?;
        Ok(())
    }

    /// The document holding `uri` for `auid`.
    pub async fn holder(&self, auid: &str, uri: &str) -> Option<DocKey> {
        let index = self.index.lock().await;
        index.get(&(auid.to_string(), uri.to_string())).cloned()
    }

    /// Locks the index when `auid` has a server-wide uniqueness rule.
    pub async fn lock_for(&self, auid: &str) -> Option<Guard<'_>> {
        match kind(auid) {
            Some(_) => Some(Guard(self.index.lock().await)),
            None => None,
        }
    }
}

/// Every URI with a uniqueness rule in the store, and the document holding it.
async fn scan(store: &dyn DocumentStore) -> Result<Index, StorageError> {
    let mut index = Index::new();
    for auid in ["rls-services", "org.openmobilealliance.groups"] {
        let Some(k) = kind(auid) else { continue };
        for meta in store.list_auid(auid).await? {
            if meta.key.tree == TreeKey::Global {
                continue;
            }
            if let Some(doc) = store.get(&meta.key).await? {
                if let Ok(parsed) = roxmltree::Document::parse(&doc.body) {
                    for uri in (k.extract)(&parsed) {
                        index.insert((auid.to_string(), uri), meta.key.clone());
                    }
                }
            }
        }
    }
    Ok(index)
}

impl Guard<'_> {
    /// 409 `<uniqueness-failure>` with a free `<alt-value>` for every URI another document
    /// holds (RL-12a/b, ER-11).
    pub fn check(&self, key: &DocKey, doc: &ParsedDoc) -> Result<(), XcapError> {
        let Some(k) = kind(&key.auid) else {
            return Ok(());
        };
        let uris = (k.extract)(doc.doc());
        let held_elsewhere = |u: &str| {
            self.0
                .get(&(key.auid.clone(), u.to_string()))
                .is_some_and(|holder| holder != key)
        };
        let taken = |c: &str| held_elsewhere(c) || uris.iter().any(|u| u == c);
        let fields: Vec<ExistsField> = uris
            .iter()
            .enumerate()
            .filter(|(_, uri)| held_elsewhere(uri))
            .map(|(i, uri)| ExistsField {
                field: (k.field)(i + 1),
                alt_values: hooks::alt_service_uri(uri, taken).into_iter().collect(),
            })
            .collect();
        if fields.is_empty() {
            Ok(())
        } else {
            Err(XcapError::conflict(Conflict::Uniqueness(fields)))
        }
    }

    /// Records the URIs of a committed version (None: the document was deleted).
    pub fn record(&mut self, key: &DocKey, doc: Option<&ParsedDoc>) {
        self.0.retain(|_, holder| holder != key);
        if let (Some(k), Some(doc)) = (kind(&key.auid), doc) {
            for uri in (k.extract)(doc.doc()) {
                self.0.insert((key.auid.clone(), uri), key.clone());
            }
        }
    }
}
