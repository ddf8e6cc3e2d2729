//! One document change of the sled store before it is durable (design §4: readers see
//! durable versions only): the ops it journals, in an order that never lets a reader find a
//! record without its body, and the overlay of journaled-but-unapplied versions that the next
//! commit checks its ETag precondition against.

use std::collections::HashMap;

use super::journal::{self, OpRef, TreeId};

/// The sled entries one write changes: the primary record, the user index entry (`None`
/// values remove) and a large body for the `bodies` tree (an old one there is removed when
/// the new version has none).
pub(super) struct Change<'a> {
    pub pkey: &'a [u8],
    pub record: Option<&'a [u8]>,
    /// The new version's ETag (`None`: a delete).
    pub etag: Option<&'a str>,
    pub index: Option<(&'a [u8], Option<&'a [u8]>)>,
    pub external_body: Option<&'a [u8]>,
}

impl<'a> Change<'a> {
    /// The ops in the order they are applied: a new large body before the record that points
    /// at it, the old one removed after the record stopped pointing at it, so a reader
    /// between two ops never finds a record without its body. `new_file` / `old_file` are the
    /// body-file keys of the new version (if its body is a file) and of the old one.
    pub(super) fn ops(
        &self,
        new_file: Option<&'a [u8]>,
        old_body: BodyAt,
        old_file: Option<&'a [u8]>,
    ) -> Vec<OpRef<'a>> {
        let mut ops: Vec<OpRef<'a>> = Vec::with_capacity(4);
        if let (Some(key), Some(body)) = (new_file, self.external_body) {
            ops.push((TreeId::Files, key, Some(body)));
        }
        ops.push((TreeId::Docs, self.pkey, self.record));
        if let Some((ikey, ivalue)) = self.index {
            ops.push((TreeId::ByUser, ikey, ivalue));
        }
        match (old_body, old_file) {
            (BodyAt::Tree, _) => ops.push((TreeId::Bodies, self.pkey, None)),
            (BodyAt::File, Some(key)) => ops.push((TreeId::Files, key, None)),
            _ => {}
        }
        ops
    }
}

/// Where a version's body is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyAt {
    Inline,
    /// The `bodies` tree (stores written before body files).
    Tree,
    File,
}

/// Journaled changes not yet applied to sled (design: readers see only durable data). The
/// flusher applies a synced batch to sled and then drops its entries here; commits check
/// their precondition against these first. A failed batch drops every entry (its commits and
/// every later one are refused) and rewinds the sequence.
pub(super) struct Overlay {
    pub docs: HashMap<Vec<u8>, Pending>,
    /// The last sequence number handed out.
    pub next_seq: u64,
    /// The last sequence number applied to sled.
    pub applied_seq: u64,
}

/// A journaled, unapplied version of one document.
pub(super) struct Pending {
    pub etag: Option<String>,
    pub body: BodyAt,
    pub seq: u64,
}

impl Overlay {
    /// `records` are in sled now: forget the entries they wrote (not newer ones).
    pub(super) fn applied(&mut self, records: &[journal::Record]) {
        for r in records {
            for op in &r.ops {
                if op.tree == TreeId::Docs && self.docs.get(&op.key).is_some_and(|p| p.seq == r.seq)
                {
                    self.docs.remove(&op.key);
                }
            }
            self.applied_seq = self.applied_seq.max(r.seq);
        }
    }

    pub(super) fn discard(&mut self) {
        self.docs.clear();
        self.next_seq = self.applied_seq;
    }
}
