//! One writer thread for a side store (sled-backed: deferred messages, registrations; or a
//! log file: subscriptions): every write runs on it, one after another, and the durable ones
//! of a batch share one flush or sync (group commit); writes that need not be durable at once
//! are synced within about a second.
//! Why: a transaction per SUBSCRIBE and per NOTIFY from async tasks either blocks runtime
//! workers or parks a blocking thread each; under 10,000 subscriptions that grew tokio's
//! blocking pool to 512 threads and the RSS by ~100 MB (issue #13 benchmark). Callers await a
//! oneshot instead; nothing else blocks.

use std::any::Any;
use std::sync::mpsc;

use super::sled_common::{flush_gated, with_gate_exclusive};
use super::StorageError;

type Output = Result<Box<dyn Any + Send>, StorageError>;

struct Job {
    work: Box<dyn FnOnce() -> Output + Send>,
    durable: bool,
    done: tokio::sync::oneshot::Sender<Output>,
}

/// Jobs handled per batch at most (one flush covers them).
const BATCH: usize = 256;

/// The writer of one store; the thread ends when this is dropped.
pub(crate) struct SledWriter {
    jobs: mpsc::Sender<Job>,
}

/// What makes a batch durable, and whether jobs run under the sled gate.
pub(crate) struct Flusher {
    pub flush: Box<dyn FnMut() -> Result<(), StorageError> + Send>,
    pub sled_gate: bool,
}

impl SledWriter {
    pub(crate) fn start(db: sled::Db, name: &str) -> Result<SledWriter, StorageError> {
        let sync = Flusher {
            flush: Box::new(move || flush_gated(&db).map(drop)),
            sled_gate: true,
        };
        Self::start_with(name, sync)
    }

    /// A writer whose durable batches end with `sync.flush`.
    pub(crate) fn start_with(name: &str, sync: Flusher) -> Result<SledWriter, StorageError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(sync, &queue))
            .map_err(|e| StorageError::Backend(format!("cannot start {name}: {e}")))?;
        Ok(SledWriter { jobs })
    }

    /// Runs `work` on the writer thread (under the sled gate); with `durable`, resolves once
    /// flushed.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        durable: bool,
        work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job = Job {
            work: Box::new(move || work().map(|t| Box::new(t) as Box<dyn Any + Send>)),
            durable,
            done,
        };
        self.jobs
            .send(job)
            .map_err(|_| StorageError::Backend("a sled writer thread stopped".into()))?;
        let out = result
            .await
            .map_err(|_| StorageError::Backend("a sled writer thread stopped".into()))??;
        out.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StorageError::Backend("writer result of another type".into()))
    }
}

/// Quiet this long after writing, the thread gives back the memory it freed.
const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

/// A sync nobody waits for; on failure the writes stay unsynced (tried again later).
fn lazy_flush(sync: &mut Flusher, unsynced: &mut Option<std::time::Instant>) {
    match (sync.flush)() {
        Ok(()) => *unsynced = None,
        Err(e) => tracing::warn!(target: "xcapd::storage", error = %e, "background sync failed"),
    }
}

/// Writes that asked for no sync are synced at most this long after.
const LAZY_SYNC: std::time::Duration = std::time::Duration::from_millis(500);

fn run(mut sync: Flusher, queue: &mpsc::Receiver<Job>) {
    let mut wrote = false;
    // Since when writes wait for a sync nobody asked for.
    let mut unsynced: Option<std::time::Instant> = None;
    loop {
        let next = if wrote {
            queue.recv_timeout(QUIET)
        } else {
            queue
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        };
        let first = match next {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if unsynced.is_some() {
                    lazy_flush(&mut sync, &mut unsynced);
                }
                // A burst of subscription writes left freed pages on this thread's heap.
                crate::alloc::release_freed_memory();
                wrote = false;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The store is closing: what it wrote lazily is made durable now.
                if unsynced.is_some() {
                    lazy_flush(&mut sync, &mut unsynced);
                }
                return;
            }
        };
        wrote = true;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut results: Vec<(Job, Output)> = Vec::with_capacity(batch.len());
        for mut job in batch {
            let work = std::mem::replace(&mut job.work, Box::new(|| Ok(Box::new(()))));
            let out = if sync.sled_gate {
                with_gate_exclusive(work)
            } else {
                work()
            };
            results.push((job, out));
        }
        let wants_flush = results.iter().any(|(j, out)| j.durable && out.is_ok());
        // Even a failed job may have written (and undone) something: synced in any case.
        let since = *unsynced.get_or_insert_with(std::time::Instant::now);
        let flushed = if wants_flush || since.elapsed() >= LAZY_SYNC {
            let flushed = (sync.flush)();
            match &flushed {
                // Kept unsynced on failure: tried again later.
                Ok(()) => unsynced = None,
                Err(e) => tracing::warn!(target: "xcapd::storage", error = %e, "store sync failed"),
            }
            flushed
        } else {
            Ok(())
        };
        for (job, out) in results {
            let out = match (&flushed, job.durable, out) {
                (Err(e), true, Ok(_)) => Err(e.clone()),
                (_, _, out) => out,
            };
            let _ = job.done.send(out);
        }
    }
}
