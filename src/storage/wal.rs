//! The journal on disk (see `journal` for its use): numbered segment files, each a header
//! then checksummed frames of after-images, the zero-filled spares prepared ahead, and the
//! reading of every segment back in order at open ([`recover`]). Layout:
//! `<dir>/<20-digit segment number>.wal`, starting with [`SEGMENT_MAGIC`], then frames
//! `len u32 LE | crc32 u32 LE | payload` with payload `seq u64 | n u8 | n × op` and op
//! `tree u8 | kind u8 (0 remove, 1 insert) | klen u32 | key | [vlen u32 | value]`, then zeros
//! up to the end of the file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StorageError;

pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"XCAPDJ01";
const SEGMENT_SUFFIX: &str = ".wal";
const SPARE_SUFFIX: &str = ".spare";
const FRAME_HEADER: usize = 8;
/// Smallest payload: seq and op count.
const MIN_PAYLOAD: usize = 9;
/// Larger frames cannot come from a commit (documents are capped far below): a torn length.
const MAX_PAYLOAD: usize = 1 << 30;

/// The sled trees a journal op can touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TreeId {
    Docs = 0,
    ByUser = 1,
    /// Large bodies in sled, as written before body files (removals only, now).
    Bodies = 2,
    /// Body files (key: see `body_files::file_key`).
    Files = 3,
    /// The change log (`sled_changes.rs`): seq → change record.
    Changes = 4,
}

impl TreeId {
    fn from_u8(b: u8) -> Option<TreeId> {
        match b {
            0 => Some(TreeId::Docs),
            1 => Some(TreeId::ByUser),
            2 => Some(TreeId::Bodies),
            3 => Some(TreeId::Files),
            4 => Some(TreeId::Changes),
            _ => None,
        }
    }
}

/// One sled entry after a commit: `Some(value)` inserted, `None` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Op {
    pub tree: TreeId,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// One committed change as read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub seq: u64,
    pub ops: Vec<Op>,
}

/// One op to encode: tree, key, and the new value (`None`: removed).
pub(crate) type OpRef<'a> = (TreeId, &'a [u8], Option<&'a [u8]>);

/// Encodes one frame for a commit with change number `seq` onto `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, seq: u64, ops: &[OpRef<'_>]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(ops.len() as u8);
    for (tree, key, value) in ops {
        out.push(*tree as u8);
        out.push(u8::from(value.is_some()));
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        if let Some(v) = value {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
    let payload = &out[start + FRAME_HEADER..];
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

/// Why reading a segment stopped before its end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// Clean end of the bytes.
    End,
    /// A frame that is incomplete or fails its checksum: a write the crash interrupted.
    Torn,
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn decode_payload(mut p: &[u8]) -> Option<Record> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if p.len() < n {
            return None;
        }
        let (head, rest) = p.split_at(n);
        *p = rest;
        Some(head)
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(take(&mut p, 8)?);
    let n = take(&mut p, 1)?[0];
    let mut ops = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let head = take(&mut p, 2)?;
        let tree = TreeId::from_u8(head[0])?;
        let klen = le_u32(take(&mut p, 4)?) as usize;
        let key = take(&mut p, klen)?.to_vec();
        let value = match head[1] {
            0 => None,
            1 => {
                let vlen = le_u32(take(&mut p, 4)?) as usize;
                Some(take(&mut p, vlen)?.to_vec())
            }
            _ => return None,
        };
        ops.push(Op { tree, key, value });
    }
    p.is_empty().then_some(Record {
        seq: u64::from_le_bytes(seq),
        ops,
    })
}

/// Decodes the frames of one segment body (after the magic).
pub(super) fn decode_frames(mut bytes: &[u8], out: &mut Vec<Record>) -> Stop {
    loop {
        if bytes.is_empty() {
            return Stop::End;
        }
        if bytes.len() < FRAME_HEADER {
            return Stop::Torn;
        }
        let len = le_u32(bytes) as usize;
        if len == 0 {
            // The zero-filled rest of a preallocated segment; anything else there is damage.
            return if bytes.iter().all(|b| *b == 0) {
                Stop::End
            } else {
                Stop::Torn
            };
        }
        let crc = le_u32(&bytes[4..]);
        if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) || bytes.len() < FRAME_HEADER + len {
            return Stop::Torn;
        }
        let payload = &bytes[FRAME_HEADER..FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            return Stop::Torn;
        }
        match decode_payload(payload) {
            Some(r) => out.push(r),
            // A checksummed frame we cannot read was written by something else.
            None => return Stop::Torn,
        }
        bytes = &bytes[FRAME_HEADER + len..];
    }
}

pub(super) fn io_error(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("journal: {what} {}: {e}", path.display()))
}

pub(super) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}{SEGMENT_SUFFIX}"))
}

pub(super) fn spare_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}{SPARE_SUFFIX}"))
}

/// Segment numbers present in `dir`, ascending.
pub(super) fn segments(dir: &Path) -> Result<Vec<u64>, StorageError> {
    numbered(dir, SEGMENT_SUFFIX)
}

/// Numbers of the files `<20 digits><suffix>` in `dir`, ascending.
fn numbered(dir: &Path, suffix: &str) -> Result<Vec<u64>, StorageError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_error("cannot list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = stem.parse() {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Every record of the journal in `dir`, in commit order. A torn tail of the newest segment is
/// what a crash mid-write leaves and is dropped (nothing in it was acknowledged); damage
/// anywhere else means records that were acknowledged are unreadable, which is reported as
/// corruption instead of being skipped silently.
pub(crate) fn recover(dir: &Path) -> Result<Vec<Record>, StorageError> {
    let numbers = segments(dir)?;
    let mut records = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        let path = segment_path(dir, *n);
        let bytes = std::fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
        let last = i + 1 == numbers.len();
        let body = match bytes.strip_prefix(SEGMENT_MAGIC) {
            Some(body) => body,
            // A segment created just before a crash may not have its header yet.
            None if last && SEGMENT_MAGIC.starts_with(&bytes) => &[][..],
            None => {
                return Err(StorageError::Corrupt(format!(
                    "journal segment {} has no journal header",
                    path.display()
                )))
            }
        };
        if decode_frames(body, &mut records) == Stop::Torn && !last {
            return Err(StorageError::Corrupt(format!(
                "journal segment {} is damaged before its end",
                path.display()
            )));
        }
    }
    Ok(records)
}

/// Removes every segment in `dir` (their records are in the flushed store) and syncs the
/// directory, so that none of them comes back to be replayed over later writes.
pub(crate) fn clear(dir: &Path) -> Result<(), StorageError> {
    let numbers = segments(dir)?;
    for n in numbered(dir, SPARE_SUFFIX)? {
        let path = spare_path(dir, n);
        std::fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, e))?;
    }
    if numbers.is_empty() {
        return Ok(());
    }
    for n in numbers {
        let path = segment_path(dir, n);
        std::fs::remove_file(&path).map_err(|e| io_error("cannot remove", &path, e))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync", dir, e))
}

/// Turns the zero-filled spare into segment `n`: header written and synced, then renamed, so
/// a crash leaves either a spare (ignored) or a segment with its header.
pub(super) fn activate_spare(dir: &Path, n: u64) -> Result<File, StorageError> {
    use std::os::unix::fs::FileExt;
    let spare = spare_path(dir, n);
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .write(true)
        .open(&spare)
        .map_err(|e| io_error("cannot open", &spare, e))?;
    file.write_all_at(SEGMENT_MAGIC, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_error("cannot write", &spare, e))?;
    std::fs::rename(&spare, &path).map_err(|e| io_error("cannot rename", &spare, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync", dir, e))?;
    Ok(file)
}

/// Zero-fills `<n>.spare` to `bytes` and syncs it. Not yet a segment: recovery ignores it.
pub(super) fn prepare_spare(dir: &Path, n: u64, bytes: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(spare_path(dir, n))?;
    let mut left = bytes;
    while left > 0 {
        let step = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..step])?;
        left -= step as u64;
    }
    file.sync_all()?;
    File::open(dir)?.sync_all()
}

/// Creates segment `n` with its header, durable together with its directory entry before any
/// record in it is acknowledged.
pub(super) fn create_segment(dir: &Path, n: u64) -> Result<File, StorageError> {
    let path = segment_path(dir, n);
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("cannot create", &path, e))?;
    if let Err(e) = file.write_all(SEGMENT_MAGIC).and_then(|()| file.sync_all()) {
        // Leave nothing behind that would make the next try's `create_new` fail.
        let _ = std::fs::remove_file(&path);
        return Err(io_error("cannot write", &path, e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync", dir, e))?;
    Ok(file)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::storage) fn frame(seq: u64, ops: &[OpRef<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, seq, ops);
        out
    }

    #[test]
    fn frames_round_trip() {
        let mut bytes = frame(
            7,
            &[
                (TreeId::Docs, b"k1", Some(b"v1")),
                (TreeId::ByUser, b"k2", None),
            ],
        );
        bytes.extend(frame(8, &[(TreeId::Docs, b"", Some(b""))]));
        let mut out = Vec::new();
        assert_eq!(decode_frames(&bytes, &mut out), Stop::End);
        assert_eq!(
            out,
            vec![
                Record {
                    seq: 7,
                    ops: vec![
                        Op {
                            tree: TreeId::Docs,
                            key: b"k1".to_vec(),
                            value: Some(b"v1".to_vec())
                        },
                        Op {
                            tree: TreeId::ByUser,
                            key: b"k2".to_vec(),
                            value: None
                        },
                    ]
                },
                Record {
                    seq: 8,
                    ops: vec![Op {
                        tree: TreeId::Docs,
                        key: Vec::new(),
                        value: Some(Vec::new())
                    }]
                }
            ]
        );
    }

    /// Every prefix of a valid journal decodes to a prefix of its records; a cut inside a
    /// frame is reported as torn, never misread.
    #[test]
    fn every_truncation_is_a_clean_prefix_or_torn() {
        let frames: Vec<Vec<u8>> = (1..=4)
            .map(|s| frame(s, &[(TreeId::Docs, b"key", Some(&[s as u8; 40][..]))]))
            .collect();
        let all: Vec<u8> = frames.concat();
        let mut boundaries = vec![0];
        for f in &frames {
            boundaries.push(boundaries.last().unwrap() + f.len());
        }
        for cut in 0..=all.len() {
            let mut out = Vec::new();
            let stop = decode_frames(&all[..cut], &mut out);
            let whole = boundaries.iter().filter(|b| **b <= cut).count() - 1;
            assert_eq!(out.len(), whole, "cut at {cut}");
            let expected = if boundaries.contains(&cut) {
                Stop::End
            } else {
                Stop::Torn
            };
            assert_eq!(stop, expected, "cut at {cut}");
        }
    }

    /// A preallocated segment: frames, then zeros to the end of the file. Zeros end the
    /// segment; anything non-zero after a zero length is damage.
    #[test]
    fn a_zero_filled_tail_ends_the_segment() {
        let mut bytes = frame(1, &[(TreeId::Docs, b"k", Some(b"v"))]);
        bytes.extend(frame(2, &[(TreeId::Docs, b"k", None)]));
        bytes.resize(bytes.len() + 4096, 0);
        let mut out = Vec::new();
        assert_eq!(decode_frames(&bytes, &mut out), Stop::End);
        assert_eq!(out.len(), 2);
        let last = bytes.len() - 100;
        bytes[last] = 1;
        let mut out = Vec::new();
        assert_eq!(decode_frames(&bytes, &mut out), Stop::Torn);
        assert_eq!(out.len(), 2);
    }

    /// A spare becomes a segment with its header; records written into it read back, and the
    /// zeros after them are no records. A spare that never became a segment is ignored.
    #[test]
    fn spare_segments_are_preallocated_and_read_back() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        prepare_spare(dir.path(), 5, 64 * 1024).unwrap();
        prepare_spare(dir.path(), 6, 4096).unwrap();
        assert!(recover(dir.path()).unwrap().is_empty());
        let file = activate_spare(dir.path(), 5).unwrap();
        let mut frames = frame(9, &[(TreeId::Docs, b"k", Some(b"v"))]);
        frames.extend(frame(10, &[(TreeId::ByUser, b"i", None)]));
        file.write_all_at(&frames, SEGMENT_MAGIC.len() as u64)
            .unwrap();
        file.sync_data().unwrap();
        let len = std::fs::metadata(segment_path(dir.path(), 5))
            .unwrap()
            .len();
        assert_eq!(len, 64 * 1024, "writes went into the preallocated space");
        let seqs: Vec<u64> = recover(dir.path()).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![9, 10]);
        clear(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn recover_reads_segments_in_order_and_drops_only_a_torn_newest_tail() {
        let dir = tempfile::tempdir().unwrap();
        let write = |n: u64, body: &[u8]| {
            let mut bytes = SEGMENT_MAGIC.to_vec();
            bytes.extend_from_slice(body);
            std::fs::write(segment_path(dir.path(), n), bytes).unwrap();
        };
        let f = |s| frame(s, &[(TreeId::Docs, b"k", Some(b"v"))]);
        write(3, &[f(1), f(2)].concat());
        let mut torn = f(3);
        torn.extend_from_slice(&f(4)[..10]);
        write(10, &torn);
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let seqs: Vec<u64> = recover(dir.path()).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);

        // The same damage in an older segment hides acknowledged records: refuse.
        write(11, &f(5));
        assert!(matches!(recover(dir.path()), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn recover_accepts_a_newest_segment_without_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = SEGMENT_MAGIC.to_vec();
        bytes.extend(frame(1, &[(TreeId::Docs, b"k", None)]));
        std::fs::write(segment_path(dir.path(), 1), bytes).unwrap();
        std::fs::write(segment_path(dir.path(), 2), &SEGMENT_MAGIC[..3]).unwrap();
        assert_eq!(recover(dir.path()).unwrap().len(), 1);
        std::fs::write(segment_path(dir.path(), 2), b"garbage!").unwrap();
        assert!(matches!(recover(dir.path()), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn a_flipped_bit_is_torn_not_misread() {
        let good = frame(1, &[(TreeId::Docs, b"key", Some(b"value"))]);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            let mut out = Vec::new();
            let stop = decode_frames(&bad, &mut out);
            assert!(
                out.is_empty() || out[0].ops[0].value.as_deref() == Some(&b"value"[..]),
                "byte {i}: misread {out:?}"
            );
            if out.is_empty() {
                assert_eq!(stop, Stop::Torn, "byte {i}");
            }
        }
    }
}
