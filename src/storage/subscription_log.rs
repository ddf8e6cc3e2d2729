//! Log-file backend of [`SubscriptionStore`] (RFC 6665 §4.2 subscription state that survives
//! a restart), the default of the sled deployment. Subscriptions are written on every NOTIFY
//! (checkpoints) and read back whole only at start, so they do not belong in sled's page
//! cache, which kept a copy of every record in memory (~1 KB RSS per subscription, issue #13
//! benchmark): here one append-only file holds them, and memory holds only where each live
//! record is.
//!
//! Layout: `<dir>/subscriptions.log`, [`MAGIC`] then frames `len u32 LE | crc32 u32 LE |
//! payload`, payload `kind u8 (1 put, 0 remove) | klen u32 LE | dialog key | record` (the
//! encodings of `storage::subscriptions`). At open the frames are read in order and a torn
//! or corrupt tail (a crash in the middle of an append) is cut off. When dead frames
//! outweigh live ones the live records are copied to a new file that replaces the old one by
//! rename, so the file stays within about twice the live size.
//!
//! Writes run on one writer thread ([`SledWriter::start_with`]): `put` and `remove` resolve
//! once synced (one `fdatasync` per batch), `checkpoint` at once (synced within a second).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::sled_writer::{Flusher, SledWriter};
use super::subscriptions::{
    decode, dialog_key, encode, validate, DialogId, StoreFuture, Subscription, SubscriptionStore,
};
use super::StorageError;

pub(super) const MAGIC: &[u8; 8] = b"XCAPDS01";
const FILE: &str = "subscriptions.log";
const FRAME_HEADER: u64 = 8;
/// A subscription record is a few hundred bytes; a larger length is a torn header.
const MAX_PAYLOAD: u32 = 16 << 20;
/// Below this size the file is never compacted.
const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// More than a writer batch of records: a cut this large is damage, not a torn append.
const TORN_TAIL_BYTES: usize = 1 << 20;
const PUT: u8 = 1;
const REMOVE: u8 = 0;

/// Subscriptions in an append-only file.
pub struct LogSubscriptions {
    log: Arc<Mutex<Log>>,
    writer: SledWriter,
    /// Tests: the scratch directory, removed with the store.
    #[cfg(test)]
    temporary: Option<tempfile::TempDir>,
}

/// The open file and where each live record is.
struct Log {
    dir: PathBuf,
    file: File,
    end: u64,
    /// Dialog key → (frame offset, payload length).
    index: HashMap<Box<[u8]>, (u64, u32)>,
    /// Bytes of the frames the index points at.
    live: u64,
    /// A sync failed: what was written since may be lost, so nothing more is accepted (the
    /// next start reads what reached the disk).
    failed: bool,
    /// A rename (compaction) whose directory entry still needs a sync.
    dir_unsynced: bool,
    /// No compaction is tried before the file reaches this size (after a failed one).
    compact_after: u64,
}

fn io(e: std::io::Error) -> StorageError {
    // A full disk is a passing condition (503 at the edge); anything else a backend failure.
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            StorageError::Unavailable(format!("subscription log: {e}"))
        }
        _ => StorageError::Backend(format!("subscription log: {e}")),
    }
}

impl LogSubscriptions {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail.
    pub fn open(dir: &Path) -> Result<LogSubscriptions, StorageError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let log = Arc::new(Mutex::new(Log::open(dir)?));
        let synced = Arc::clone(&log);
        let flusher = Flusher {
            flush: Box::new(move || synced.lock().sync()),
            sled_gate: false,
        };
        Ok(LogSubscriptions {
            log,
            writer: SledWriter::start_with("xcapd-subscriptions", flusher)?,
            #[cfg(test)]
            temporary: None,
        })
    }

    /// A log in a scratch directory removed with it (the behaviour suite).
    #[cfg(test)]
    pub fn open_temporary() -> Result<LogSubscriptions, StorageError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let mut log = Self::open(dir.path())?;
        log.temporary = Some(dir);
        Ok(log)
    }

    /// Opens the log in `dir`; when there is none yet, it is first written whole with
    /// `legacy` (subscriptions of an earlier version's sled trees) under another name, synced
    /// and renamed into place, so a crash leaves either no log (the import runs again) or all
    /// of it. An existing log is never overwritten by `legacy`.
    pub fn open_importing(
        dir: &Path,
        legacy: Vec<Subscription>,
    ) -> Result<LogSubscriptions, StorageError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let path = dir.join(FILE);
        if !path.exists() && !legacy.is_empty() {
            let mut out = MAGIC.to_vec();
            for sub in legacy.iter().filter(|s| validate(s).is_ok()) {
                out.extend_from_slice(&frame(PUT, &dialog_key(&sub.dialog), &encode(sub)?)?);
            }
            replace_log(dir, &out)?;
            sync_dir(dir)?;
        }
        Self::open(dir)
    }

    /// Runs `f` on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let log = Arc::clone(&self.log);
        self.writer.run(durable, move || f(&mut log.lock())).await
    }

    fn all_now(&self) -> Result<Vec<Subscription>, StorageError> {
        let log = self.log.lock();
        let mut out = Vec::with_capacity(log.index.len());
        for (key, &(at, len)) in &log.index {
            out.push(decode(key, &log.record(at, len, key.len())?)?);
        }
        out.sort_by(|a, b| a.dialog.cmp(&b.dialog));
        Ok(out)
    }
}

impl Log {
    fn open(dir: &Path) -> Result<Log, StorageError> {
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut log = Log {
            dir: dir.to_path_buf(),
            file,
            end: MAGIC.len() as u64,
            index: HashMap::new(),
            live: 0,
            failed: false,
            dir_unsynced: false,
            compact_after: 0,
        };
        if bytes.len() < MAGIC.len() {
            // New (or torn before its first frame).
            log.file.set_len(0).map_err(io)?;
            log.file.write_all_at(MAGIC, 0).map_err(io)?;
            log.file.sync_all().map_err(io)?;
            sync_dir(dir)?;
            return Ok(log);
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(StorageError::Corrupt(format!(
                "{} is not a subscription log",
                path.display()
            )));
        }
        let mut at = MAGIC.len();
        while let Some((kind, key, len)) = frame_at(&bytes, at) {
            let frame = FRAME_HEADER + u64::from(len);
            if kind == PUT {
                log.track(key.into(), at as u64, len);
            } else {
                log.untrack(key);
            }
            at += frame as usize;
        }
        if at < bytes.len() {
            let cut = &bytes[at..];
            tracing::warn!(target: "xcapd::storage", file = %path.display(), kept = at, cut = cut.len(), "cutting a torn tail off the subscription log");
            if cut.len() > TORN_TAIL_BYTES {
                // More than the last batch can tear: damage, not a crash. Kept for recovery.
                let aside = dir.join(format!("{FILE}.cut-{at}"));
                std::fs::write(&aside, cut).map_err(io)?;
                tracing::error!(target: "xcapd::storage", file = %aside.display(), "the subscription log was damaged before its tail; the records after the damage were set aside");
            }
            log.file.set_len(at as u64).map_err(io)?;
            log.file.sync_all().map_err(io)?;
        }
        log.end = at as u64;
        Ok(log)
    }

    fn track(&mut self, key: Box<[u8]>, at: u64, len: u32) {
        self.live += FRAME_HEADER + u64::from(len);
        if let Some((_, old)) = self.index.insert(key, (at, len)) {
            self.live -= FRAME_HEADER + u64::from(old);
        }
    }

    fn untrack(&mut self, key: &[u8]) {
        if let Some((_, len)) = self.index.remove(key) {
            self.live -= FRAME_HEADER + u64::from(len);
        }
    }

    /// The record bytes of the frame at `at` (payload `len`, key `klen` bytes long).
    fn record(&self, at: u64, len: u32, klen: usize) -> Result<Vec<u8>, StorageError> {
        let mut payload = vec![0; len as usize];
        self.file
            .read_exact_at(&mut payload, at + FRAME_HEADER)
            .map_err(io)?;
        Ok(payload.split_off(5 + klen))
    }

    /// Appends one frame; on failure the file is cut back so no partial frame stays.
    fn append(&mut self, kind: u8, key: &[u8], record: &[u8]) -> Result<(u64, u32), StorageError> {
        if self.failed {
            return Err(StorageError::Backend(
                "subscription log: a sync failed earlier; restart to recover".into(),
            ));
        }
        let frame = frame(kind, key, record)?;
        let at = self.end;
        if let Err(e) = self.file.write_all_at(&frame, at) {
            let _ = self.file.set_len(at);
            return Err(io(e));
        }
        self.end += frame.len() as u64;
        Ok((at, (frame.len() as u64 - FRAME_HEADER) as u32))
    }

    fn put(&mut self, sub: &Subscription) -> Result<(), StorageError> {
        let key = dialog_key(&sub.dialog);
        let (at, len) = self.append(PUT, &key, &encode(sub)?)?;
        self.track(key.into_boxed_slice(), at, len);
        self.maybe_compact();
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<bool, StorageError> {
        if !self.index.contains_key(key) {
            return Ok(false);
        }
        self.append(REMOVE, key, &[])?;
        self.untrack(key);
        self.maybe_compact();
        Ok(true)
    }

    /// Makes what was written durable: the file's data, and a renamed file's directory entry.
    fn sync(&mut self) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Backend(
                "subscription log: a sync failed earlier".into(),
            ));
        }
        let synced = self.file.sync_data().map_err(io).and_then(|()| {
            if self.dir_unsynced {
                sync_dir(&self.dir)?;
                self.dir_unsynced = false;
            }
            Ok(())
        });
        if let Err(e) = &synced {
            // After a failed fsync the kernel may drop the dirty pages: nothing later can be
            // trusted to follow them to disk.
            tracing::error!(target: "xcapd::storage", error = %e, "subscription log sync failed; no more subscription writes until a restart");
            self.failed = true;
        }
        synced
    }

    /// Copies the live records to a new file when dead frames outweigh them; best effort (a
    /// failure is logged and tried again after the file has grown further).
    fn maybe_compact(&mut self) {
        if self.end < COMPACT_MIN_BYTES.max(self.compact_after) || self.live * 2 > self.end {
            return;
        }
        if let Err(e) = self.compact() {
            tracing::warn!(target: "xcapd::storage", error = %e, "cannot compact the subscription log");
            self.compact_after = self.end.saturating_add(COMPACT_MIN_BYTES);
        }
    }

    fn compact(&mut self) -> Result<(), StorageError> {
        let mut out = Vec::with_capacity(self.live as usize + MAGIC.len());
        out.extend_from_slice(MAGIC);
        let mut moved = Vec::with_capacity(self.index.len());
        for (key, &(at, len)) in &self.index {
            let mut frame = vec![0; (FRAME_HEADER + u64::from(len)) as usize];
            self.file.read_exact_at(&mut frame, at).map_err(io)?;
            if frame_at(&frame, 0).is_none_or(|(kind, k, _)| kind != PUT || k != &key[..]) {
                return Err(StorageError::Corrupt(format!(
                    "subscription log record at {at} does not read back"
                )));
            }
            moved.push((key.clone(), out.len() as u64, len));
            out.extend_from_slice(&frame);
        }
        // Renamed: from here on the new file is the log, whatever the directory sync does.
        self.file = replace_log(&self.dir, &out)?;
        self.end = out.len() as u64;
        for (key, at, len) in moved {
            self.index.insert(key, (at, len));
        }
        self.dir_unsynced = true;
        if sync_dir(&self.dir).is_ok() {
            self.dir_unsynced = false;
        }
        Ok(())
    }
}

/// One frame: header, then `kind | klen | key | record`.
fn frame(kind: u8, key: &[u8], record: &[u8]) -> Result<Vec<u8>, StorageError> {
    let len = 5 + key.len() + record.len();
    let klen = u32::try_from(key.len()).map_err(|_| StorageError::InvalidKey("key".into()))?;
    if len as u64 > u64::from(MAX_PAYLOAD) {
        return Err(StorageError::InvalidKey(
            "subscription record too large".into(),
        ));
    }
    let mut out = Vec::with_capacity(FRAME_HEADER as usize + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&klen.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(record);
    let crc = crc32fast::hash(&out[FRAME_HEADER as usize..]).to_le_bytes();
    out[4..8].copy_from_slice(&crc);
    Ok(out)
}

/// The frame at `at`: kind, key and payload length; `None` at the end or at a torn or
/// corrupt frame.
fn frame_at(bytes: &[u8], at: usize) -> Option<(u8, &[u8], u32)> {
    let header = bytes.get(at..at + FRAME_HEADER as usize)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if !(5..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let start = at + FRAME_HEADER as usize;
    let payload = bytes.get(start..start + len as usize)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let kind = payload[0];
    let klen = u32::from_le_bytes(payload[1..5].try_into().ok()?) as usize;
    let key = payload.get(5..5 + klen)?;
    (kind == PUT || kind == REMOVE).then_some((kind, key, len))
}

/// Makes `bytes` the log in `dir` whole: written under another name, synced, renamed over
/// the log (so a crash leaves the old file or the new one, never a mix); the new file, open
/// for reading and appending. The directory entry is the caller's to sync.
fn replace_log(dir: &Path, bytes: &[u8]) -> Result<File, StorageError> {
    let tmp_path = dir.join(format!("{FILE}.new"));
    let mut tmp = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.sync_all().map_err(io)?;
    std::fs::rename(&tmp_path, dir.join(FILE)).map_err(io)?;
    Ok(tmp)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

impl SubscriptionStore for LogSubscriptions {
    fn put(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            validate(&sub)?;
            self.write(true, move |log| log.put(&sub)).await
        })
    }

    fn checkpoint(&self, sub: Subscription) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            validate(&sub)?;
            self.write(false, move |log| log.put(&sub)).await
        })
    }

    fn get(&self, dialog: DialogId) -> StoreFuture<'_, Option<Subscription>> {
        Box::pin(async move {
            let key = dialog_key(&dialog);
            let log = self.log.lock();
            match log.index.get(key.as_slice()) {
                Some(&(at, len)) => decode(&key, &log.record(at, len, key.len())?).map(Some),
                None => Ok(None),
            }
        })
    }

    fn remove(&self, dialog: DialogId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let key = dialog_key(&dialog);
            self.write(true, move |log| log.remove(&key)).await
        })
    }

    fn by_subscriber(&self, subscriber: String) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            let mut all = self.all_now()?;
            all.retain(|s| s.subscriber == subscriber);
            Ok(all)
        })
    }

    fn all(&self) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move { self.all_now() })
    }

    fn expire(&self, now_ms: u64) -> StoreFuture<'_, Vec<Subscription>> {
        Box::pin(async move {
            let due: Vec<Subscription> = self
                .all_now()?
                .into_iter()
                .filter(|s| s.expires_at_ms <= now_ms)
                .collect();
            self.write(true, move |log| {
                let mut expired = Vec::new();
                for sub in due {
                    // Refreshed in between: its record moved on, so it stays.
                    let key = dialog_key(&sub.dialog);
                    let still = match log.index.get(key.as_slice()) {
                        Some(&(at, len)) => decode(&key, &log.record(at, len, key.len())?)?,
                        None => continue,
                    };
                    if still.expires_at_ms <= now_ms && log.remove(&key)? {
                        expired.push(still);
                    }
                }
                Ok(expired)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(call_id: &str, seq: u64) -> Subscription {
        crate::storage::subscriptions::sample(call_id, seq)
    }

    // RFC 6665 §4.2: subscription state outlives the process; a torn last append (a crash
    // in the middle of a write) is cut off and everything before it is kept.
    #[tokio::test]
    async fn reopened_with_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = LogSubscriptions::open(dir.path()).unwrap();
            log.put(sub("a", 1)).await.unwrap();
            log.put(sub("b", 1)).await.unwrap();
            log.checkpoint(sub("a", 7)).await.unwrap();
            assert!(log.remove(sub("b", 1).dialog).await.unwrap());
            log.put(sub("c", 1)).await.unwrap();
        }
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        // The last frame ("c") half written.
        std::fs::write(&path, &whole[..whole.len() - 10]).unwrap();
        let log = LogSubscriptions::open(dir.path()).unwrap();
        let all = log.all().await.unwrap();
        assert_eq!(all, vec![sub("a", 7)]);
        assert!(std::fs::metadata(&path).unwrap().len() < whole.len() as u64);
        // Appends after the cut are read back.
        log.put(sub("d", 2)).await.unwrap();
        drop(log);
        let log = LogSubscriptions::open(dir.path()).unwrap();
        assert_eq!(log.all().await.unwrap(), vec![sub("a", 7), sub("d", 2)]);
    }

    // A flipped byte in a frame ends the readable log there (crc), never a wrong record.
    #[tokio::test]
    async fn a_corrupt_frame_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = LogSubscriptions::open(dir.path()).unwrap();
            log.put(sub("a", 1)).await.unwrap();
            log.put(sub("b", 1)).await.unwrap();
        }
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let log = LogSubscriptions::open(dir.path()).unwrap();
        assert_eq!(log.all().await.unwrap(), vec![sub("a", 1)]);
        std::fs::write(dir.path().join("other"), b"").unwrap();
        std::fs::write(&path, b"NOTALOG!garbage").unwrap();
        assert!(LogSubscriptions::open(dir.path()).is_err());
    }

    // Checkpoints after every NOTIFY keep appending: the file is compacted to the live
    // records and stays bounded, and what it holds is still right after a reopen.
    #[tokio::test]
    async fn compaction_keeps_the_file_bounded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = LogSubscriptions::open(dir.path()).unwrap();
            for seq in 0..8_000 {
                log.checkpoint(sub(&format!("s{}", seq % 10), seq))
                    .await
                    .unwrap();
            }
            log.put(sub("s0", 99_999)).await.unwrap();
        }
        let size = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert!(size < 2 * COMPACT_MIN_BYTES, "{size} bytes");
        let log = LogSubscriptions::open(dir.path()).unwrap();
        let all = log.all().await.unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], sub("s0", 99_999));
        assert_eq!(all[1].notified_seq, 7_991);
    }

    // Upgrading imports the sled records once, into a new log; a log that exists already is
    // never overwritten by them (a downgrade and upgrade again must not bring back removed
    // subscriptions or older progress).
    #[tokio::test]
    async fn legacy_records_are_imported_only_into_a_new_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogSubscriptions::open_importing(dir.path(), vec![sub("a", 1)]).unwrap();
        log.checkpoint(sub("a", 5)).await.unwrap();
        assert!(log.remove(sub("a", 5).dialog).await.unwrap());
        drop(log);
        let log = LogSubscriptions::open_importing(dir.path(), vec![sub("a", 1)]).unwrap();
        assert_eq!(log.all().await.unwrap(), vec![]);
    }

    // Damage before the tail (more than a batch can tear) keeps the records before it and
    // sets the rest aside in a file of its own instead of dropping it silently.
    #[tokio::test]
    async fn damage_before_the_tail_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = LogSubscriptions::open(dir.path()).unwrap();
            for n in 0..12_000 {
                log.checkpoint(sub(&format!("s{n:05}"), n)).await.unwrap();
            }
            log.put(sub("last", 0)).await.unwrap();
        }
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 2 * TORN_TAIL_BYTES, "{} bytes", bytes.len());
        bytes[MAGIC.len() + 20] ^= 0x01; // inside the first frame
        std::fs::write(&path, &bytes).unwrap();
        let log = LogSubscriptions::open(dir.path()).unwrap();
        assert!(log.all().await.unwrap().is_empty());
        let aside = dir.path().join(format!("{FILE}.cut-{}", MAGIC.len()));
        assert_eq!(std::fs::read(aside).unwrap(), bytes[MAGIC.len()..]);
    }
}
