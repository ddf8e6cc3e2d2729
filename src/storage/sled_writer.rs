//! One writer thread for a sled-backed side store (subscriptions, deferred messages): every
//! transaction runs on it, one after another, and the durable ones of a batch share one flush
//! (group commit).
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

impl SledWriter {
    pub(crate) fn start(db: sled::Db, name: &str) -> Result<SledWriter, StorageError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&db, &queue))
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

fn run(db: &sled::Db, queue: &mpsc::Receiver<Job>) {
    let mut wrote = false;
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
                // A burst of subscription writes left freed pages on this thread's heap.
                crate::alloc::release_freed_memory();
                wrote = false;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
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
            let out = with_gate_exclusive(work);
            results.push((job, out));
        }
        let wants_flush = results.iter().any(|(j, out)| j.durable && out.is_ok());
        let flushed = if wants_flush {
            flush_gated(db).map(drop)
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
