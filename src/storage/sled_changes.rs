//! The sled backend's change log (design.md §2, [`super::feed`]): the `changes` tree,
//! `seq` (u64 BE) → change record, written by the same journal frame as the document it
//! describes and applied with it, so a change is readable exactly when its document version
//! is. Also the record encoding and retention: the oldest records go once the log is over its
//! entry or age bound, and `meta/changes_trimmed` says up to where (written before the
//! removals, so a crash between them never shows a gap).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::feed::{check_window, ChangeRetention};
use super::sled_common::{from_sled, len32, push_bytes, push_opt, Reader};
use super::sled_records::{decode_doc_key, decode_seq, doc_key_bytes};
use super::{ChangeOrigin, ChangeRecord, DocKey, StorageError};
use crate::event::{Edit, EditKind, Placement};

/// `meta` key: every change up to this seq was trimmed.
const TRIMMED_KEY: &[u8] = b"changes_trimmed";
const RECORD_VERSION: u8 = 1;
/// Records removed per trim pass, so one pass never holds the flusher long.
const TRIM_BATCH: usize = 4096;

/// The change log of one sled store.
pub(crate) struct SledChanges {
    tree: sled::Tree,
    meta: sled::Tree,
    retention: ChangeRetention,
    trimmed_through: AtomicU64,
    /// When the age bound was last checked (ms since the epoch).
    last_age_check_ms: AtomicU64,
    /// The newest readable change (feed wake-up).
    changed: watch::Sender<u64>,
}

impl SledChanges {
    /// Opens the log of a store whose newest change is `last_seq`. A store from before the
    /// change log has none of its changes: they count as trimmed.
    pub(crate) fn open(
        tree: sled::Tree,
        meta: sled::Tree,
        retention: ChangeRetention,
        last_seq: u64,
    ) -> Result<SledChanges, StorageError> {
        let trimmed = match meta.get(TRIMMED_KEY).map_err(from_sled)? {
            Some(v) => decode_seq(Some(&v))?,
            None => {
                let first = tree.first().map_err(from_sled)?;
                let through = match first {
                    Some((k, _)) => decode_seq(Some(&k))?.saturating_sub(1),
                    None => last_seq,
                };
                meta.insert(TRIMMED_KEY, &through.to_be_bytes()[..])
                    .map_err(from_sled)?;
                through
            }
        };
        Ok(SledChanges {
            tree,
            meta,
            retention,
            trimmed_through: AtomicU64::new(trimmed),
            last_age_check_ms: AtomicU64::new(0),
            changed: watch::channel(last_seq).0,
        })
    }

    /// Records up to `seq` are applied: wake the readers and trim. The count bound is checked
    /// exactly on every batch (arithmetic only); the age bound, which needs the oldest record,
    /// at most every quarter of the age limit (and at least every second), so the journal
    /// thread does not walk the log on every batch.
    pub(crate) fn applied(&self, seq: u64, now_ms: u64) {
        self.changed.send_if_modified(|head| {
            let newer = seq > *head;
            *head = (*head).max(seq);
            newer
        });
        let held = seq.saturating_sub(self.trimmed_through.load(Ordering::Acquire));
        let over_count = held > self.retention.max_entries;
        let interval = (self.retention.max_age.as_millis() as u64 / 4).clamp(1, 1000);
        let age_due = now_ms >= self.last_age_check_ms.load(Ordering::Relaxed) + interval;
        if !over_count && !age_due {
            return;
        }
        if age_due {
            self.last_age_check_ms.store(now_ms, Ordering::Relaxed);
        }
        if let Err(e) = self.trim(seq, now_ms) {
            tracing::warn!(target: "xcapd::storage", error = %e, "cannot trim the change log");
        }
    }

    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChangeRecord>, StorageError> {
        check_window(after, self.trimmed_through.load(Ordering::Acquire))?;
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.tree.range(start..).take(limit) {
            let (k, v) = item.map_err(from_sled)?;
            out.push(decode(decode_seq(Some(&k))?, &v)?);
        }
        // Trimmed while we read: the first records may be gone.
        check_window(after, self.trimmed_through.load(Ordering::Acquire))?;
        Ok(out)
    }

    /// Removes the oldest records over the bounds (at most [`TRIM_BATCH`] per call), and any
    /// left below the trimmed point by a journal replay.
    fn trim(&self, newest: u64, now_ms: u64) -> Result<(), StorageError> {
        let mut through = self.trimmed_through.load(Ordering::Acquire);
        let mut doomed = Vec::new();
        for item in self.tree.iter().take(TRIM_BATCH) {
            let (k, v) = item.map_err(from_sled)?;
            let seq = decode_seq(Some(&k))?;
            if seq > through {
                let over = newest.saturating_sub(seq) >= self.retention.max_entries;
                if !over && !self.retention.expired(committed_at(&v)?, now_ms) {
                    break;
                }
                through = seq;
            }
            doomed.push(k);
        }
        if doomed.is_empty() {
            return Ok(());
        }
        if through > self.trimmed_through.load(Ordering::Acquire) {
            self.meta
                .insert(TRIMMED_KEY, &through.to_be_bytes()[..])
                .map_err(from_sled)?;
            self.trimmed_through.store(through, Ordering::Release);
        }
        for k in doomed {
            self.tree.remove(k).map_err(from_sled)?;
        }
        Ok(())
    }
}

/// Encodes a change record (without its seq, the tree key): version, commit time, key,
/// ETags, principal, edit.
pub(crate) fn encode(
    key: &DocKey,
    previous_etag: Option<&str>,
    new_etag: Option<&str>,
    at_ms: u64,
    origin: &ChangeOrigin,
) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&at_ms.to_be_bytes());
    push_bytes(&mut out, &doc_key_bytes(&key.auid, &key.tree, &key.path))?;
    push_opt(&mut out, previous_etag)?;
    push_opt(&mut out, new_etag)?;
    push_opt(&mut out, origin.principal.as_deref())?;
    match &origin.edit {
        None => out.push(0),
        Some(edit) => {
            out.push(edit.kind.code());
            out.push(u8::from(edit.created));
            push_bytes(&mut out, edit.node_selector.as_bytes())?;
            out.extend_from_slice(&len32(edit.namespaces.len())?.to_be_bytes());
            for (prefix, uri) in &edit.namespaces {
                push_bytes(&mut out, prefix.as_bytes())?;
                push_bytes(&mut out, uri.as_bytes())?;
            }
            push_opt(&mut out, edit.value.as_deref())?;
            match edit.position {
                None => out.push(0),
                Some(p) => {
                    out.push(1);
                    out.extend_from_slice(&p.to_be_bytes());
                }
            }
            out.push(edit.placement.map_or(0, Placement::code));
        }
    }
    Ok(out)
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<ChangeRecord, StorageError> {
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_VERSION {
        return Err(StorageError::Corrupt(
            "unknown change record version".into(),
        ));
    }
    let at_ms = r.u64()?;
    let key_len = r.u32()? as usize;
    let key = decode_doc_key(r.take(key_len)?)?;
    let previous_etag = r.opt_string("etag")?;
    let new_etag = r.opt_string("etag")?;
    let principal = r.opt_string("principal")?;
    let edit = match r.u8()? {
        0 => None,
        code => {
            let kind = EditKind::from_code(code)
                .ok_or_else(|| StorageError::Corrupt("unknown edit kind".into()))?;
            let created = r.u8()? != 0;
            let node_selector = r.string("node selector")?;
            let n = r.u32()? as usize;
            let mut namespaces = Vec::with_capacity(n.min(64));
            for _ in 0..n {
                namespaces.push((r.string("prefix")?, r.string("namespace")?));
            }
            let value = r.opt_string("value")?;
            let position = match r.u8()? {
                0 => None,
                _ => Some(r.u32()?),
            };
            let placement = match r.u8()? {
                0 => None,
                code => Some(
                    Placement::from_code(code)
                        .ok_or_else(|| StorageError::Corrupt("unknown placement".into()))?,
                ),
            };
            Some(Edit {
                kind,
                node_selector,
                namespaces,
                value,
                position,
                created,
                placement,
            })
        }
    };
    if !r.0.is_empty() {
        return Err(StorageError::Corrupt(
            "trailing bytes in change record".into(),
        ));
    }
    Ok(ChangeRecord {
        seq,
        key,
        previous_etag,
        new_etag,
        at_ms,
        origin: ChangeOrigin { principal, edit },
    })
}

/// The commit time of an encoded record, without decoding the rest.
fn committed_at(bytes: &[u8]) -> Result<u64, StorageError> {
    let mut r = Reader(bytes);
    r.u8()?;
    r.u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TreeKey;

    fn sample(edit: Option<Edit>) -> ChangeRecord {
        ChangeRecord {
            seq: 7,
            key: DocKey::new(
                "resource-lists",
                TreeKey::User("sip:alice@example.com".into()),
                "index",
            ),
            previous_etag: Some("a1".into()),
            new_etag: None,
            at_ms: 1_700_000_000_123,
            origin: ChangeOrigin {
                principal: Some("sip:alice@example.com".into()),
                edit,
            },
        }
    }

    fn round_trip(r: &ChangeRecord) -> ChangeRecord {
        let bytes = encode(
            &r.key,
            r.previous_etag.as_deref(),
            r.new_etag.as_deref(),
            r.at_ms,
            &r.origin,
        )
        .unwrap();
        assert_eq!(committed_at(&bytes).unwrap(), r.at_ms);
        decode(r.seq, &bytes).unwrap()
    }

    // RFC 5874 §4 / RFC 5261: a stored record keeps everything a patch is built from.
    #[test]
    fn records_round_trip() {
        let plain = sample(None);
        assert_eq!(round_trip(&plain), plain);
        let edited = sample(Some(Edit {
            kind: EditKind::PutElement,
            node_selector: "rl:resource-lists/rl:list[@name=\"f\"]/rl:entry[2]".into(),
            namespaces: vec![("rl".into(), "urn:ietf:params:xml:ns:resource-lists".into())],
            value: Some("<entry uri=\"sip:b@x\"/>".into()),
            position: Some(2),
            created: true,
            placement: Some(Placement::BeforeNext),
        }));
        assert_eq!(round_trip(&edited), edited);
    }

    // Every truncation of a record is reported as corruption, never a panic or a wrong record.
    #[test]
    fn truncations_are_corrupt() {
        let r = sample(Some(Edit {
            kind: EditKind::DeleteAttribute,
            node_selector: "a/@b".into(),
            namespaces: vec![],
            value: None,
            position: None,
            created: false,
            placement: None,
        }));
        let bytes = encode(&r.key, None, Some("e"), 1, &r.origin).unwrap();
        for n in 0..bytes.len() {
            assert!(decode(1, &bytes[..n]).is_err(), "prefix {n}");
        }
    }
}
