//! Applying journal records to the embedded store (design §4): the sled trees and the body
//! files ([`super::body_files`]). Used by the journal's flusher for each synced batch, by
//! replay at open, and by writes that arrive after close. Records hold after-images, so
//! applying one again is harmless.

use std::sync::Arc;

use super::body_files::BodyFiles;
use super::journal::{Record, TreeId};
use super::sled_common::from_sled;
use super::StorageError;

/// Where the change sequence number is kept in the `meta` tree.
pub(crate) const SEQ_KEY: &[u8] = b"seq";

/// What journal ops write to.
#[derive(Clone)]
pub(crate) struct ApplyTarget {
    pub docs: sled::Tree,
    pub by_user: sled::Tree,
    /// Large bodies written by binaries before body files (read and removed, never written).
    pub bodies: sled::Tree,
    pub meta: sled::Tree,
    /// The change log (`sled_changes.rs`).
    pub changes: sled::Tree,
    pub files: Arc<BodyFiles>,
}

impl ApplyTarget {
    /// Applies one op: a sled insert or removal, or a body file written or removed.
    pub(crate) fn apply_op(
        &self,
        tree: TreeId,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let sled_tree = match tree {
            TreeId::Docs => &self.docs,
            TreeId::ByUser => &self.by_user,
            TreeId::Bodies => &self.bodies,
            TreeId::Changes => &self.changes,
            TreeId::Files => {
                let done = match value {
                    Some(body) => self.files.write(key, body),
                    None => self.files.remove(key),
                };
                return done.map_err(|e| StorageError::Backend(format!("document body file: {e}")));
            }
        };
        match value {
            Some(v) => sled_tree.insert(key, v).map(drop),
            None => sled_tree.remove(key).map(drop),
        }
        .map_err(from_sled)
    }

    /// Re-applies journal records in commit order; the change sequence ends at least at the
    /// newest record.
    pub(crate) fn replay(&self, records: &[Record]) -> Result<(), StorageError> {
        let mut newest = 0;
        for record in records {
            for op in &record.ops {
                self.apply_op(op.tree, &op.key, op.value.as_deref())?;
            }
            newest = newest.max(record.seq);
        }
        let current = self
            .meta
            .get(SEQ_KEY)
            .map_err(from_sled)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        if newest > current {
            self.meta
                .insert(SEQ_KEY, &newest.to_be_bytes()[..])
                .map_err(from_sled)?;
        }
        Ok(())
    }

    /// Makes everything applied so far durable: body files first, then sled (checkpoints,
    /// close).
    pub(crate) fn flush(&self, db: &sled::Db) -> Result<(), StorageError> {
        self.files
            .sync()
            .map_err(|e| StorageError::Backend(format!("document body files: cannot sync: {e}")))?;
        super::sled_common::flush_gated(db).map(drop)
    }
}
