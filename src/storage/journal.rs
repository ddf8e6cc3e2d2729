//! Write-ahead journal of the sled backend: what makes an acknowledged XCAP write (RFC 4825
//! §7.10–§7.11, design §4 "a write is acknowledged only once durable") survive a crash at the
//! cost of one `write` + `fdatasync` per *group* of concurrent writers.
//!
//! sled's own `flush` costs several thread hand-offs and ~0.4 ms per call on this machine's
//! virtio disk (a bare append + fdatasync costs 0.17 ms), and every writer used to wait on it
//! from a blocking thread. Here a commit checks its precondition and appends a redo record to
//! an in-memory buffer under one lock (so journal order is commit order), and gets a
//! [`Durability`] that resolves once one background thread has written and synced the buffer
//! **and then applied it to the store** ([`Hooks::apply`]): readers only ever see durable
//! changes, so a write that fails is never visible, before or after a restart (issue #11).
//! sled is flushed only at checkpoints: when the current segment passes a size, the flusher
//! starts a new segment and a checkpoint thread flushes sled, then deletes the older segments,
//! whose every record sled now holds durably.
//!
//! Faults: a batch whose write or sync fails is cut off the segment again (truncate + sync)
//! and refused, with every commit queued behind it ([`Hooks::discard`]); commits are then
//! refused as [`StorageError::Unavailable`] for a second at a time, and the first batch that
//! syncs again ends the episode. What cannot be undone (the cut fails, the store cannot apply
//! or checkpoint a durable batch) is *fatal*: every later commit is refused and the process is
//! expected to stop (fail-stop); the journal replays at the next start.
//!
//! Records are full after-images of the sled entries a commit changed (no deltas), so
//! [`recover`] + replay in journal order is idempotent and correct whatever subset of later
//! transactions sled itself had flushed before the crash.
//!
//! On disk: `<dir>/<20-digit segment number>.wal`, each starting with [`SEGMENT_MAGIC`], then
//! frames `len u32 LE | crc32 u32 LE | payload` with payload `seq u64 | n u8 | n × op` and op
//! `tree u8 | kind u8 (0 remove, 1 insert) | klen u32 | key | [vlen u32 | value]`, then zeros
//! up to the end of the file. Once a segment is half full the checkpoint thread zero-fills
//! the next one in advance (`<n>.spare`): `fdatasync` after overwriting zeros costs half of
//! one after an append, which must also write the new file size (0.12 against 0.24 ms here).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::wal::{
    activate_spare, create_segment, decode_frames, io_error, prepare_spare, segment_path, segments,
    spare_path, SEGMENT_MAGIC,
};
pub(crate) use super::wal::{clear, encode_frame, recover, OpRef, Record, TreeId};
use super::{Durability, StorageError};

/// How long commits are refused after a failed journal write before one is let through to try.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Flushes the store the journal protects; run by the checkpoint thread.
pub(crate) type Checkpoint = Box<dyn Fn() -> Result<(), String> + Send>;

/// Applies a synced batch to the store; see [`Hooks::apply`].
pub(crate) type Apply = Box<dyn FnMut(&[Record]) -> Result<(), String> + Send>;

/// What the journal calls in the store it protects.
pub(crate) struct Hooks {
    /// Flushes the store; run by the checkpoint thread.
    pub checkpoint: Checkpoint,
    /// Applies a written and synced batch to the store, in commit order; run by the flusher
    /// before the batch's writers learn it is durable.
    pub apply: Apply,
    /// Forgets every commit not applied yet (their batch failed); run under the commit lock.
    pub discard: Box<dyn FnMut() + Send>,
}

/// The journal of one open store.
pub(crate) struct Journal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher: records are pending, or shutdown.
    work: Condvar,
    /// Forgets unapplied commits; locked only while `state` is held.
    discard: Mutex<Box<dyn FnMut() + Send>>,
    /// Tests: fail this many batches after writing them.
    #[cfg(test)]
    inject_failures: std::sync::atomic::AtomicU32,
}

#[derive(Default)]
struct State {
    /// Frames appended since the flusher last took the buffer.
    pending: Vec<u8>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), StorageError>>>,
    /// The last journal write failed (why, and when a commit may try again).
    failure: Option<(String, std::time::Instant)>,
    /// Something that cannot be undone in-process failed: refuse every commit.
    fatal: Option<String>,
    shutdown: bool,
    /// Batches written and synced (observability of the grouping).
    syncs: u64,
}

impl State {
    /// Refuses a commit while the journal cannot take it.
    fn admit(&self) -> Result<(), StorageError> {
        if let Some(e) = &self.fatal {
            return Err(StorageError::Backend(format!("journal: {e}")));
        }
        match &self.failure {
            Some((e, retry_at)) if std::time::Instant::now() < *retry_at => Err(
                StorageError::Unavailable(format!("the journal cannot write: {e}")),
            ),
            _ => Ok(()),
        }
    }
}

/// What [`Journal::commit`] did with a change.
pub(crate) enum Logged<T> {
    /// Applied and journaled; durable when the [`Durability`] resolves.
    Pending(T, Durability),
    /// Applied after the journal was closed: the caller must make it durable itself.
    Closed(T),
}

impl Journal {
    /// Starts a new journal in `dir`. Every segment already there is removed first: the caller
    /// has replayed them ([`recover`]) and made the store durable.
    /// Spare segments are only prepared while at least `min_free_bytes` would stay free.
    pub(crate) fn start(
        dir: &Path,
        checkpoint_bytes: u64,
        min_free_bytes: u64,
        hooks: Hooks,
    ) -> Result<Journal, StorageError> {
        let Hooks {
            checkpoint,
            mut apply,
            discard,
        } = hooks;
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let first = segments(dir)?.last().map_or(1, |n| n + 1);
        clear(dir)?;
        let file = create_segment(dir, first)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            discard: Mutex::new(discard),
            #[cfg(test)]
            inject_failures: std::sync::atomic::AtomicU32::new(0),
        });
        let (to_background, background) = mpsc::channel::<Background>();
        let spare = Arc::new(Mutex::new(None));
        let flusher = {
            let shared = Arc::clone(&shared);
            let mut writer = SegmentWriter {
                dir: dir.to_path_buf(),
                number: first,
                file,
                written: SEGMENT_MAGIC.len() as u64,
                checkpoint_bytes,
                to_background,
                spare: Arc::clone(&spare),
                spare_requested: false,
            };
            std::thread::Builder::new()
                .name("xcapd-journal".into())
                .spawn(move || shared.run_flusher(&mut writer, &mut apply))
                .map_err(|e| StorageError::Backend(format!("journal: spawn flusher: {e}")))?
        };
        let checkpointer = {
            let dir = dir.to_path_buf();
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("xcapd-checkpoint".into())
                .spawn(move || {
                    let sizes = (checkpoint_bytes, min_free_bytes);
                    run_background(&dir, &background, &checkpoint, &spare, sizes, &shared)
                })
                .map_err(|e| StorageError::Backend(format!("journal: spawn checkpoint: {e}")))?
        };
        Ok(Journal {
            shared,
            threads: Mutex::new(vec![flusher, checkpointer]),
        })
    }

    /// Journals a change: `apply` checks it and encodes its frame (with [`encode_frame`]) onto
    /// the buffer it is given, while no other commit can run, so journal order is commit
    /// order; the store applies it later, through [`Hooks::apply`], once it is durable. When
    /// `apply` fails nothing is journaled. After [`Journal::close`] `apply` gets no buffer:
    /// the caller must apply the change and make it durable itself ([`Logged::Closed`]).
    pub(crate) fn commit<T>(
        &self,
        apply: impl FnOnce(Option<&mut Vec<u8>>) -> Result<T, StorageError>,
    ) -> Result<Logged<T>, StorageError> {
        let mut st = self.shared.state.lock();
        st.admit()?;
        if st.shutdown {
            return apply(None).map(Logged::Closed);
        }
        let mark = st.pending.len();
        let value = match apply(Some(&mut st.pending)) {
            Ok(v) => v,
            Err(e) => {
                st.pending.truncate(mark);
                return Err(e);
            }
        };
        if st.pending.len() == mark {
            // Nothing changed (e.g. deleting an absent document): nothing to wait for.
            return Ok(Logged::Pending(value, Durability::done()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        st.waiters.push(tx);
        drop(st);
        self.shared.work.notify_one();
        Ok(Logged::Pending(value, Durability::pending(rx)))
    }

    /// Batches written and synced so far.
    pub(crate) fn sync_count(&self) -> u64 {
        self.shared.state.lock().syncs
    }

    /// Whether a commit would be admitted now: `Unavailable` during a write failure,
    /// `Backend` once fatal.
    pub(crate) fn health(&self) -> Result<(), StorageError> {
        self.shared.state.lock().admit()
    }

    /// Tests: the next `n` batches fail after their bytes were written.
    #[cfg(test)]
    pub(crate) fn inject_failures(&self, n: u32) {
        self.shared
            .inject_failures
            .store(n, std::sync::atomic::Ordering::Release);
    }

    /// Why the journal can no longer be used in this process, if it cannot.
    pub(crate) fn fatal(&self) -> Option<String> {
        self.shared.state.lock().fatal.clone()
    }

    /// Writes and syncs what is pending, then stops both threads (the checkpoint thread after
    /// any checkpoint it is running). Later commits report [`Logged::Closed`]. Idempotent.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        self.shared.state.lock().shutdown = true;
        self.shared.work.notify_all();
        for handle in self.threads.lock().drain(..) {
            handle
                .join()
                .map_err(|_| StorageError::Backend("journal thread panicked".into()))?;
        }
        // A transient failure left a clean segment; only a fatal one taints the close.
        match &self.shared.state.lock().fatal {
            Some(e) => Err(StorageError::Backend(format!("journal: {e}"))),
            None => Ok(()),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // As if the process had died after the last sync: every acknowledged write is on disk.
        let _ = self.close();
    }
}

/// Work for the background thread.
enum Background {
    /// Flush the store, then remove this segment and every older one.
    Checkpoint(u64),
    /// Zero-fill `<n>.spare` for segment `n`.
    PrepareSpare(u64),
}

/// The segment being appended to, owned by the flusher thread.
struct SegmentWriter {
    dir: PathBuf,
    number: u64,
    file: File,
    written: u64,
    checkpoint_bytes: u64,
    to_background: mpsc::Sender<Background>,
    /// The segment number whose zero-filled spare is ready, set by the background thread.
    spare: Arc<Mutex<Option<u64>>>,
    spare_requested: bool,
}

impl SegmentWriter {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Positioned: in a preallocated segment this overwrites zeros instead of appending.
        self.file.write_all_at(bytes, self.written)?;
        self.file.sync_data()?;
        self.written += bytes.len() as u64;
        if !self.spare_requested && self.written >= self.checkpoint_bytes / 2 {
            self.spare_requested = true;
            // The background thread only stops after the flusher: the channel is open.
            let _ = self
                .to_background
                .send(Background::PrepareSpare(self.number + 1));
        }
        Ok(())
    }

    /// After a failed append: cuts the segment back to its last good frame and syncs that, so
    /// no part of the refused batch can be replayed later. Shrinking needs no free space.
    fn cut_back(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.written)?;
        self.file.sync_all()
    }

    /// Past the size limit: continue in a new segment and have the older ones checkpointed.
    /// Every frame of the older segments was applied to sled before this runs (the flusher
    /// applies a batch right after syncing it), so a sled flush that starts now covers all.
    fn maybe_rotate(&mut self) -> Result<(), StorageError> {
        if self.written < self.checkpoint_bytes {
            return Ok(());
        }
        let next = self.number + 1;
        let spare_ready = match self.spare.lock().take() {
            Some(n) if n == next => true,
            // Finished after its segment had been created without it: not needed any more.
            Some(n) => {
                let _ = std::fs::remove_file(spare_path(&self.dir, n));
                false
            }
            None => false,
        };
        // A spare that cannot be activated (say, removed by hand) only costs the speed-up.
        let activated = spare_ready
            .then(|| activate_spare(&self.dir, next))
            .and_then(|r| {
                r.map_err(|e| tracing::warn!(target: "xcapd::storage", error = %e, "cannot use the prepared journal segment"))
                    .ok()
            });
        self.file = match activated {
            Some(file) => file,
            None => create_segment(&self.dir, next)?,
        };
        self.written = SEGMENT_MAGIC.len() as u64;
        self.spare_requested = false;
        let sealed = self.number;
        self.number = next;
        let _ = self.to_background.send(Background::Checkpoint(sealed));
        Ok(())
    }
}

impl Shared {
    fn run_flusher(&self, writer: &mut SegmentWriter, apply: &mut Apply) {
        let mut batch = Vec::new();
        loop {
            let waiters = {
                let mut st = self.state.lock();
                while st.pending.is_empty() && !st.shutdown {
                    self.work.wait(&mut st);
                }
                if st.pending.is_empty() {
                    return; // shutdown with nothing pending
                }
                std::mem::swap(&mut st.pending, &mut batch);
                std::mem::take(&mut st.waiters)
            };
            // A panic must not leave this and every later writer waiting: it is a failure.
            let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.inject_fault(writer, &batch)?;
                writer
                    .append(&batch)
                    .map_err(|e| format!("write segment {}: {e}", writer.number))
            }))
            .unwrap_or_else(|_| Err("journal write panicked".into()));
            match written {
                Ok(()) => {
                    let mut records = Vec::new();
                    decode_frames(&batch, &mut records);
                    let applied =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&records)))
                            .unwrap_or_else(|_| Err("applying a batch panicked".into()));
                    {
                        let mut st = self.state.lock();
                        st.syncs += 1;
                        if let Some((e, _)) = st.failure.take() {
                            tracing::warn!(target: "xcapd::storage", after = %e, "journal writes resumed");
                        }
                        if let Err(e) = &applied {
                            // The batch is durable (replay applies it at the next start) but
                            // the store refused it: this process cannot go on writing.
                            tracing::error!(target: "xcapd::storage", error = %e, "the store cannot apply durable journal records; xcapd must restart");
                            st.fatal = Some(format!("the store cannot apply journal records: {e}"));
                        }
                    }
                    // Durable either way: acknowledging is the truth.
                    for w in waiters {
                        // A dropped receiver is a caller that went away; nothing to tell it.
                        let _ = w.send(Ok(()));
                    }
                    if applied.is_err() {
                        self.fail_pending();
                        return;
                    }
                    if let Err(e) = writer.maybe_rotate() {
                        // The current segment goes on growing; rotation is tried again later.
                        tracing::warn!(target: "xcapd::storage", error = %e, "cannot start a new journal segment");
                    }
                }
                Err(e) => {
                    let cut = writer.cut_back();
                    let reply = {
                        let mut st = self.state.lock();
                        match cut {
                            Ok(()) => {
                                tracing::error!(target: "xcapd::storage", error = %e, "journal write failed: the batch is refused and writes pause");
                                st.failure =
                                    Some((e.clone(), std::time::Instant::now() + RETRY_AFTER));
                                StorageError::Unavailable(format!("the journal cannot write: {e}"))
                            }
                            Err(cut_error) => {
                                tracing::error!(target: "xcapd::storage", error = %e, %cut_error, "journal write failed and the segment cannot be cut back; xcapd must restart");
                                st.fatal =
                                    Some(format!("{e}; cannot cut the segment back: {cut_error}"));
                                StorageError::Backend(format!("journal: {e}"))
                            }
                        }
                    };
                    // Commits queued behind the failed batch were checked against it: drop
                    // them (and the store's unapplied state) before anyone hears back.
                    self.fail_pending();
                    for w in waiters {
                        let _ = w.send(Err(reply.clone()));
                    }
                    batch.clear();
                    if self.state.lock().fatal.is_some() {
                        return;
                    }
                }
            }
            if batch.len() >= crate::alloc::LARGE_BODY_BYTES {
                // Multi-megabyte bodies passed through: give the buffers back.
                batch = Vec::new();
                crate::alloc::release_freed_memory();
            }
            batch.clear();
        }
    }

    /// After a failure: drops every commit not yet written (their checks assumed the failed
    /// batch) and tells their writers, instead of leaving them hanging.
    fn fail_pending(&self) {
        let (waiters, reply) = {
            let mut st = self.state.lock();
            st.pending.clear();
            (self.discard.lock())();
            let reply = match (&st.fatal, &st.failure) {
                (Some(e), _) => StorageError::Backend(format!("journal: {e}")),
                (None, Some((e, _))) => {
                    StorageError::Unavailable(format!("the journal cannot write: {e}"))
                }
                (None, None) => StorageError::Backend("journal: earlier write failed".into()),
            };
            (std::mem::take(&mut st.waiters), reply)
        };
        for w in waiters {
            let _ = w.send(Err(reply.clone()));
        }
    }

    /// Marks the journal fatal from another thread (the checkpoint) and fails what waits.
    fn make_fatal(&self, why: String) {
        self.state.lock().fatal = Some(why);
        self.work.notify_all();
        self.fail_pending();
    }

    #[cfg(not(test))]
    fn inject_fault(&self, _: &mut SegmentWriter, _: &[u8]) -> Result<(), String> {
        Ok(())
    }

    /// Tests: `inject_failures` > 0 makes the next batch fail after its bytes were written
    /// (the worst case: a write that landed but whose sync failed).
    #[cfg(test)]
    fn inject_fault(&self, writer: &mut SegmentWriter, batch: &[u8]) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.inject_failures.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.inject_failures.fetch_sub(1, Ordering::AcqRel);
        use std::os::unix::fs::FileExt;
        let _ = writer.file.write_all_at(batch, writer.written);
        Err("injected fault: No space left on device".into())
    }
}

/// The background thread: checkpoints and spares. For a checkpoint it flushes the store, then
/// removes the sealed segment and every older one; a failed flush keeps them (recovery
/// replays them) and is retried with the next. Spares are prepared ahead of rotation.
fn run_background(
    dir: &Path,
    work: &mpsc::Receiver<Background>,
    checkpoint: &Checkpoint,
    spare: &Mutex<Option<u64>>,
    (segment_bytes, min_free_bytes): (u64, u64),
    shared: &Shared,
) {
    while let Ok(task) = work.recv() {
        match task {
            Background::PrepareSpare(n) => {
                // A spare takes a whole segment of space at once: never into the reserve.
                let room = super::space::free_bytes(dir)
                    .is_ok_and(|free| free >= segment_bytes.saturating_add(min_free_bytes));
                if min_free_bytes > 0 && !room {
                    continue;
                }
                match prepare_spare(dir, n, segment_bytes) {
                    Ok(()) => *spare.lock() = Some(n),
                    Err(e) => {
                        tracing::warn!(target: "xcapd::storage", error = %e, "cannot prepare a journal segment; appending instead");
                        let _ = std::fs::remove_file(spare_path(dir, n));
                    }
                }
            }
            Background::Checkpoint(upto) => {
                if let Err(e) = checkpoint_upto(dir, upto, checkpoint) {
                    // sled 0.34 keeps an I/O error for good: it cannot persist any more.
                    tracing::error!(target: "xcapd::storage", error = %e, "journal checkpoint failed (segments kept); xcapd must restart");
                    shared.make_fatal(format!("checkpoint failed: {e}"));
                }
            }
        }
    }
}

fn checkpoint_upto(dir: &Path, upto: u64, checkpoint: &Checkpoint) -> Result<(), String> {
    checkpoint()?;
    match segments(dir) {
        Ok(numbers) => {
            for n in numbers.into_iter().filter(|n| *n <= upto) {
                let path = segment_path(dir, n);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(target: "xcapd::storage", path = %path.display(), error = %e, "cannot remove checkpointed journal segment");
                }
            }
        }
        Err(e) => {
            tracing::warn!(target: "xcapd::storage", error = %e, "cannot list journal segments")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wal::tests::frame;

    fn journal(dir: &Path, checkpoint_bytes: u64) -> (Journal, Arc<Mutex<u32>>) {
        let checkpoints = Arc::new(Mutex::new(0));
        let counter = Arc::clone(&checkpoints);
        let j = Journal::start(
            dir,
            checkpoint_bytes,
            0,
            hooks(Box::new(move || {
                *counter.lock() += 1;
                Ok(())
            })),
        )
        .unwrap();
        (j, checkpoints)
    }

    /// A spare announced as ready but gone from the disk is no failure: rotation creates the
    /// next segment instead.
    #[test]
    fn rotation_survives_a_missing_spare() {
        let dir = tempfile::tempdir().unwrap();
        let (to_background, _background) = mpsc::channel();
        let mut writer = SegmentWriter {
            dir: dir.path().to_path_buf(),
            number: 1,
            file: create_segment(dir.path(), 1).unwrap(),
            written: SEGMENT_MAGIC.len() as u64,
            checkpoint_bytes: 16,
            to_background,
            spare: Arc::new(Mutex::new(Some(2))),
            spare_requested: true,
        };
        writer
            .append(&frame(1, &[(TreeId::Docs, b"k", Some(b"v"))]))
            .unwrap();
        writer.maybe_rotate().unwrap();
        assert_eq!(writer.number, 2);
        writer
            .append(&frame(2, &[(TreeId::Docs, b"k", None)]))
            .unwrap();
        let seqs: Vec<u64> = recover(dir.path()).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
    }

    fn hooks(checkpoint: Checkpoint) -> Hooks {
        Hooks {
            checkpoint,
            apply: Box::new(|_| Ok(())),
            discard: Box::new(|| {}),
        }
    }

    /// What the hooks saw: applied seqs, and how often unapplied commits were discarded.
    #[derive(Default)]
    struct Seen {
        applied: Vec<u64>,
        discards: u32,
    }

    fn watched_journal(dir: &Path, apply_fails: bool) -> (Journal, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (a, d) = (Arc::clone(&seen), Arc::clone(&seen));
        let j = Journal::start(
            dir,
            u64::MAX,
            0,
            Hooks {
                checkpoint: Box::new(|| Ok(())),
                apply: Box::new(move |records| {
                    if apply_fails {
                        return Err("sled: No space left on device".into());
                    }
                    a.lock().applied.extend(records.iter().map(|r| r.seq));
                    Ok(())
                }),
                discard: Box::new(move || d.lock().discards += 1),
            },
        )
        .unwrap();
        (j, seen)
    }

    fn recovered(dir: &Path) -> Vec<u64> {
        recover(dir).unwrap().iter().map(|r| r.seq).collect()
    }

    /// Issue #11 items 1 and 3: a batch whose write fails (here: after its bytes landed) is
    /// refused, cut off the segment so no restart can replay it, never applied, and the
    /// commits behind it are discarded; commits are refused (Unavailable, so 503) for a
    /// moment, then the journal writes again by itself.
    #[test]
    fn a_failed_batch_is_refused_cut_back_never_applied_and_writes_resume() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (j, seen) = watched_journal(dir.path(), false);
        commit(&j, 1).wait_blocking().unwrap();
        j.shared.inject_failures.store(1, Ordering::Release);
        let failed = commit(&j, 2).wait_blocking();
        assert!(
            matches!(failed, Err(StorageError::Unavailable(_))),
            "{failed:?}"
        );
        assert_eq!(
            recovered(dir.path()),
            vec![1],
            "the refused batch is cut off"
        );
        assert_eq!(seen.lock().applied, vec![1], "and never applied");
        assert!(seen.lock().discards >= 1);
        assert!(matches!(j.health(), Err(StorageError::Unavailable(_))));
        assert!(matches!(
            j.commit(|_| Ok(())),
            Err(StorageError::Unavailable(_))
        ));
        std::thread::sleep(RETRY_AFTER + std::time::Duration::from_millis(50));
        commit(&j, 3).wait_blocking().unwrap();
        assert_eq!(j.health(), Ok(()), "resumed without a restart");
        assert_eq!(seen.lock().applied, vec![1, 3]);
        assert_eq!(recovered(dir.path()), vec![1, 3]);
        j.close().unwrap();
    }

    /// A durable batch the store cannot apply is acknowledged (it is on disk, replay applies
    /// it) and makes the journal fatal: every later commit is refused.
    #[test]
    fn an_unappliable_durable_batch_is_acknowledged_and_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = watched_journal(dir.path(), true);
        commit(&j, 1).wait_blocking().unwrap();
        assert!(j.fatal().is_some());
        assert!(matches!(
            j.commit(|_| Ok(())),
            Err(StorageError::Backend(_))
        ));
        assert!(matches!(j.health(), Err(StorageError::Backend(_))));
        assert_eq!(recovered(dir.path()), vec![1]);
        assert!(
            j.close().is_err(),
            "close reports it, so sled is not flushed"
        );
    }

    fn commit(j: &Journal, seq: u64) -> Durability {
        match j
            .commit(|buf| {
                let buf = buf.expect("journal open");
                encode_frame(buf, seq, &[(TreeId::Docs, b"k", Some(&[7u8; 100][..]))]);
                Ok(())
            })
            .unwrap()
        {
            Logged::Pending((), d) => d,
            Logged::Closed(()) => panic!("journal closed"),
        }
    }

    #[test]
    fn committed_records_are_durable_when_acknowledged_and_recoverable() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = journal(dir.path(), u64::MAX);
        for seq in 1..=20 {
            commit(&j, seq).wait_blocking().unwrap();
        }
        // Read back while the journal is still open: acknowledged means on disk now.
        let seqs: Vec<u64> = recover(dir.path()).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        assert!(j.sync_count() >= 1);
        j.close().unwrap();
        // After close a commit is applied but reported as not journaled.
        assert!(matches!(
            j.commit(|buf| Ok(buf.is_none())),
            Ok(Logged::Closed(true))
        ));
    }

    #[test]
    fn failed_apply_journals_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = journal(dir.path(), u64::MAX);
        let r = j.commit(|buf| -> Result<(), StorageError> {
            encode_frame(buf.unwrap(), 1, &[(TreeId::Docs, b"k", None)]);
            Err(StorageError::PreconditionFailed)
        });
        assert!(matches!(r, Err(StorageError::PreconditionFailed)));
        commit(&j, 2).wait_blocking().unwrap();
        let seqs: Vec<u64> = recover(dir.path()).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2]);
    }

    /// Past the size limit the journal moves to a new segment and, after the checkpoint,
    /// removes the old ones; what is left still holds every record not checkpointed.
    #[test]
    fn segments_rotate_and_are_removed_after_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (j, checkpoints) = journal(dir.path(), 1000);
        for seq in 1..=30 {
            commit(&j, seq).wait_blocking().unwrap();
        }
        j.close().unwrap();
        assert!(*checkpoints.lock() >= 1, "no checkpoint ran");
        let left = segments(dir.path()).unwrap();
        assert!(
            !left.is_empty() && left[0] > 1,
            "old segments kept: {left:?}"
        );
        let seqs: Vec<u64> = recover(dir.path()).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(seqs.last(), Some(&30));
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    }

    /// sled keeps an I/O error for good, so a failed checkpoint is fatal; the segments stay
    /// and hold every acknowledged record.
    #[test]
    fn a_failing_checkpoint_is_fatal_and_keeps_segments() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::start(
            dir.path(),
            500,
            0,
            hooks(Box::new(|| Err("disk full".into()))),
        )
        .unwrap();
        let mut acknowledged = Vec::new();
        for seq in 1..=50 {
            match j.commit(|buf| {
                encode_frame(
                    buf.unwrap(),
                    seq,
                    &[(TreeId::Docs, b"k", Some(&[7u8; 100][..]))],
                );
                Ok(())
            }) {
                Ok(Logged::Pending((), d)) => {
                    if d.wait_blocking().is_ok() {
                        acknowledged.push(seq);
                    }
                }
                _ => break,
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(j.fatal().is_some(), "checkpoint failure is fatal");
        let _ = j.close();
        let seqs = recovered(dir.path());
        assert!(
            acknowledged.len() >= 4,
            "a segment filled before the checkpoint: {acknowledged:?}"
        );
        assert!(
            acknowledged.iter().all(|s| seqs.contains(s)),
            "{acknowledged:?} {seqs:?}"
        );
    }

    #[test]
    fn start_replaces_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = journal(dir.path(), u64::MAX);
            commit(&j, 1).wait_blocking().unwrap();
        }
        let (j, _) = journal(dir.path(), u64::MAX);
        assert!(recover(dir.path()).unwrap().is_empty());
        commit(&j, 2).wait_blocking().unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
    }
}
