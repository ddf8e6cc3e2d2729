//! Large document bodies as files beside the sled database (issue #11 item 4; RFC 4825 §6
//! documents, design §4 storage). sled 0.34 keeps every value it has seen in memory whatever
//! its `cache_capacity` (measured: 402 MB of 1–4 MB values → 435 MB RSS with sled alone, see
//! BENCHMARKS.md), and a lookup may even write (it splits oversized leaves into blob files).
//! Bodies over the inline limit therefore live in `xcapd-bodies/<name>`, one file per document
//! *version*: the name is a hash of the primary key and the ETag, so a new version never
//! overwrites the file a reader of the old record may be opening, and the old file is removed
//! only after the record stopped pointing at it.
//!
//! Durability is the journal's: a body file is written (temporary file + rename, no sync) when
//! its journal batch is applied; every file written since the last checkpoint is synced before
//! the checkpoint lets the journal segments go, and replay writes them again after a crash.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

/// Suffix of a body file being written; such files are debris after a crash.
const TMP_SUFFIX: &str = ".tmp";

/// The body files of one store.
#[derive(Debug)]
pub(crate) struct BodyFiles {
    dir: PathBuf,
    /// Names written since the last [`BodyFiles::sync`].
    dirty: Mutex<HashSet<String>>,
}

/// The identity of one body version inside journal ops: primary key length (u32 BE), primary
/// key, ETag.
pub(crate) fn file_key(pkey: &[u8], etag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + pkey.len() + etag.len());
    k.extend_from_slice(&(pkey.len() as u32).to_be_bytes());
    k.extend_from_slice(pkey);
    k.extend_from_slice(etag.as_bytes());
    k
}

/// The file name of a body version: hex SHA-256 of its [`file_key`] (keys hold any bytes;
/// names must not).
fn name(file_key: &[u8]) -> String {
    Sha256::digest(file_key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl BodyFiles {
    pub(crate) fn open(dir: &Path) -> std::io::Result<BodyFiles> {
        std::fs::create_dir_all(dir)?;
        Ok(BodyFiles {
            dir: dir.to_path_buf(),
            dirty: Mutex::new(HashSet::new()),
        })
    }

    /// Writes a body version (complete or not at all, for readers: temporary file + rename).
    pub(crate) fn write(&self, file_key: &[u8], body: &[u8]) -> std::io::Result<()> {
        let name = name(file_key);
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let mut f = File::create(&tmp)?;
        if let Err(e) = f.write_all(body) {
            drop(f);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        drop(f);
        std::fs::rename(&tmp, self.dir.join(&name))?;
        self.dirty.lock().insert(name);
        Ok(())
    }

    /// Removes a body version; an absent one is fine (replay removes again).
    pub(crate) fn remove(&self, file_key: &[u8]) -> std::io::Result<()> {
        let name = name(file_key);
        self.dirty.lock().remove(&name);
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads a body version; `None` when it is not there (removed by a newer version).
    pub(crate) fn read(&self, pkey: &[u8], etag: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join(name(&file_key(pkey, etag)))) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes every body written since the last call durable, with the directory entries.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        let names: Vec<String> = self.dirty.lock().drain().collect();
        for n in &names {
            match File::open(self.dir.join(n)) {
                Ok(f) => f.sync_all()?,
                // Replaced and removed since: nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.dirty.lock().extend(names.iter().cloned());
                    return Err(e);
                }
            }
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Number of body files (tests).
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |d| d.count())
    }

    /// Removes files no record points at (a removal lost in a crash, an interrupted write).
    /// `live` are the [`file_key`]s of every stored record's body; returns the files removed.
    pub(crate) fn remove_orphans(&self, live: &[Vec<u8>]) -> std::io::Result<u64> {
        let keep: HashSet<String> = live.iter().map(|k| name(k)).collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !keep.contains(&file) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_separate_files_written_whole_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let files = BodyFiles::open(&dir.path().join("b")).unwrap();
        let (v1, v2) = (file_key(b"doc", "e1"), file_key(b"doc", "e2"));
        files.write(&v1, b"one").unwrap();
        files.write(&v2, b"two").unwrap();
        assert_eq!(
            files.read(b"doc", "e1").unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            files.read(b"doc", "e2").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        files.remove(&v1).unwrap();
        files.remove(&v1).unwrap();
        assert_eq!(files.read(b"doc", "e1").unwrap(), None);
        files.sync().unwrap();
        assert!(files.dirty.lock().is_empty());
        // Keys and ETags that would concatenate alike name different files.
        assert_ne!(name(&file_key(b"a", "b\0c")), name(&file_key(b"a\0b", "c")));
    }

    #[test]
    fn orphans_and_debris_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let files = BodyFiles::open(dir.path()).unwrap();
        let live = file_key(b"doc", "e2");
        files.write(&file_key(b"doc", "e1"), b"old").unwrap();
        files.write(&live, b"new").unwrap();
        std::fs::write(
            dir.path().join(format!("{}{TMP_SUFFIX}", name(&live))),
            b"x",
        )
        .unwrap();
        assert_eq!(
            files.remove_orphans(std::slice::from_ref(&live)).unwrap(),
            2
        );
        assert_eq!(
            files.read(b"doc", "e2").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
