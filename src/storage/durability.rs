//! [`Durability`]: the promise a store gives with an applied write that it will be on disk,
//! so the XDMS acknowledges a write (RFC 4825 §7.10–§7.11, design §4) only once it is durable
//! without holding a thread while the disk syncs.

use std::time::Instant;

use tokio::sync::oneshot;

use super::StorageError;

type Observer = Box<dyn FnOnce(std::time::Duration) + Send>;

/// Resolves once an applied write is durable.
#[must_use = "a write is not durable until its Durability resolves"]
pub struct Durability {
    pending: Option<oneshot::Receiver<Result<(), StorageError>>>,
    observer: Option<(Instant, Observer)>,
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

impl Durability {
    /// Already durable (or a backend without durability, such as memory).
    pub fn done() -> Durability {
        Durability {
            pending: None,
            observer: None,
        }
    }

    /// Durable when the sender reports success.
    pub(crate) fn pending(rx: oneshot::Receiver<Result<(), StorageError>>) -> Durability {
        Durability {
            pending: Some(rx),
            observer: None,
        }
    }

    /// Calls `f` with the time from now until the write is durable (metrics).
    pub fn observed(mut self, f: impl FnOnce(std::time::Duration) + Send + 'static) -> Durability {
        self.observer = Some((Instant::now(), Box::new(f)));
        self
    }

    fn finish(
        observer: Option<(Instant, Observer)>,
        outcome: Option<Result<Result<(), StorageError>, oneshot::error::RecvError>>,
    ) -> Result<(), StorageError> {
        let result = match outcome {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StorageError::Backend(
                "durability of the write is unknown: the journal stopped".into(),
            )),
        };
        if let (Some((started, f)), Ok(())) = (observer, &result) {
            f(started.elapsed());
        }
        result
    }

    /// Waits without blocking the runtime thread.
    pub async fn wait(self) -> Result<(), StorageError> {
        let outcome = match self.pending {
            None => None,
            Some(rx) => Some(rx.await),
        };
        Self::finish(self.observer, outcome)
    }

    /// Waits by blocking this thread; must not be called from an async runtime thread.
    pub fn wait_blocking(self) -> Result<(), StorageError> {
        let outcome = self.pending.map(|rx| rx.blocking_recv());
        Self::finish(self.observer, outcome)
    }
}
