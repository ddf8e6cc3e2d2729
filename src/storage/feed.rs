//! The change feed (design.md §2; RFC 5875 §4 needs every change, in order, to notify
//! subscribers): every consumer (caches, the xcap-diff notifier, the IM Server) reads the
//! store's change log from a sequence number on. The log is the record, written in the same
//! commit as the document; the store's watch channel is only the wake-up. A consumer that
//! falls behind reads on from the log; one that asks for changes retention already trimmed
//! gets [`StorageError::ChangesTrimmed`] and resyncs from the current documents. Consumers
//! that keep up share one read of the log per commit ([`super::feed_tail`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::feed_tail::{read_page, Slice, Tail};
use super::{ChangeRecord, DocumentStore, StorageError};

/// Changes read from the log per page.
const PAGE: usize = 512;

/// How long the change log keeps records: a record goes once either bound is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeRetention {
    pub max_entries: u64,
    pub max_age: Duration,
}

impl Default for ChangeRetention {
    fn default() -> Self {
        ChangeRetention {
            max_entries: 1_000_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl ChangeRetention {
    /// Whether the record committed at `at_ms` is past the age bound at `now_ms`.
    pub fn expired(&self, at_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(at_ms) > self.max_age.as_millis() as u64
    }
}

/// `changes_since(after)` from a log whose changes up to `trimmed_through` are gone.
pub(crate) fn check_window(after: u64, trimmed_through: u64) -> Result<(), StorageError> {
    if after < trimmed_through {
        Err(StorageError::ChangesTrimmed {
            through: trimmed_through,
        })
    } else {
        Ok(())
    }
}

/// The change feed of one store.
#[derive(Clone)]
pub struct ChangeFeed {
    store: Arc<dyn DocumentStore>,
    tail: Arc<Tail>,
}

impl ChangeFeed {
    pub fn new(store: Arc<dyn DocumentStore>) -> ChangeFeed {
        ChangeFeed {
            store,
            tail: Arc::default(),
        }
    }

    /// A cursor yielding every committed change with a sequence number above `seq`, in order
    /// and without gaps, then live changes as they commit. When retention already trimmed
    /// change `seq + 1` (also for `subscribe_from(0)` once anything was trimmed), the cursor
    /// answers [`StorageError::ChangesTrimmed`]: resync from the documents and go on from
    /// [`ChangeFeed::head`]. (Changes the node's shared tail still holds are handed out even
    /// when retention trimmed them since: nothing was missed.)
    pub fn subscribe_from(&self, seq: u64) -> FeedCursor {
        FeedCursor {
            feed: self.clone(),
            after: seq,
            buffer: VecDeque::new(),
        }
    }

    /// The newest change a cursor can deliver now (start here to follow live changes only).
    pub fn head(&self) -> u64 {
        *self.store.watch_changes().borrow()
    }

    /// One page of changes after `after` (at most `limit`), read from the log (so trimmed
    /// changes are refused exactly), waiting up to `wait` for the first one when there is
    /// none yet (long polling by remote readers).
    pub async fn page(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<ChangeRecord>, StorageError> {
        self.read(after, limit, wait, false).await
    }

    /// [`ChangeFeed::page`], served from the shared tail when `shared` and it holds the
    /// changes after `after` (the in-process cursors).
    async fn read(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
        shared: bool,
    ) -> Result<Vec<ChangeRecord>, StorageError> {
        let mut wake = self.store.watch_changes();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Marked seen before the read, so a commit after it ends the wait below.
            let head = *wake.borrow_and_update();
            let held = if shared {
                self.tail.slice(after, limit)
            } else {
                Slice::Behind
            };
            match held {
                Slice::Records(page) => return Ok(page),
                Slice::Behind => {
                    let page = read_page(&*self.store, after, limit).await?;
                    if !page.is_empty() {
                        return Ok(page);
                    }
                }
                // The head is the newest change the log can give: read only when it is past
                // `after`, once for every consumer waiting there.
                Slice::NotYet if head > after => {
                    let store = &*self.store;
                    self.tail
                        .extend(after, |from| read_page(store, from, PAGE))
                        .await?;
                    continue;
                }
                Slice::NotYet => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            match tokio::time::timeout_at(deadline, wake.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StorageError::Backend("the store was closed".into())),
                Err(_) => return Ok(Vec::new()),
            }
        }
    }
}

/// A position in the change log; see [`ChangeFeed::subscribe_from`].
pub struct FeedCursor {
    feed: ChangeFeed,
    /// The last sequence number handed out (or the starting point).
    after: u64,
    buffer: VecDeque<ChangeRecord>,
}

/// How long one wait of a caught-up cursor lasts before it looks again (nothing is lost by
/// looking: the log is the record).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

impl FeedCursor {
    /// The sequence number of the last change handed out: where to resume after a restart.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// Changes already read from the log and not handed out yet.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next change, waiting for one to commit when the consumer is caught up.
    pub async fn next(&mut self) -> Result<ChangeRecord, StorageError> {
        loop {
            if let Some(record) = self.take_buffered() {
                return Ok(record);
            }
            let page = self.feed.read(self.after, PAGE, IDLE_WAIT, true).await?;
            self.buffer.extend(page);
        }
    }

    /// The next change if one is committed already; never waits for a commit (only for the
    /// log read).
    pub async fn try_next(&mut self) -> Result<Option<ChangeRecord>, StorageError> {
        if self.buffer.is_empty() {
            let page = self
                .feed
                .read(self.after, PAGE, Duration::ZERO, true)
                .await?;
            self.buffer.extend(page);
        }
        Ok(self.take_buffered())
    }

    fn take_buffered(&mut self) -> Option<ChangeRecord> {
        let record = self.buffer.pop_front()?;
        self.after = record.seq;
        Some(record)
    }
}

/// A page must continue exactly at `after + 1` and be gap-free: anything else is a broken log.
pub(super) fn checked(
    after: u64,
    page: Vec<ChangeRecord>,
) -> Result<Vec<ChangeRecord>, StorageError> {
    for (want, record) in (after + 1..).zip(&page) {
        if record.seq != want {
            return Err(StorageError::Corrupt(format!(
                "change log gap: expected change {want}, found {}",
                record.seq
            )));
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Retention: a record goes only once it is older than the bound.
    #[test]
    fn age_bound() {
        let r = ChangeRetention {
            max_entries: 10,
            max_age: Duration::from_secs(1),
        };
        assert!(!r.expired(1_000, 2_000));
        assert!(r.expired(1_000, 2_001));
        assert!(
            !r.expired(5_000, 1_000),
            "a clock step back expires nothing"
        );
    }

    #[test]
    fn window_refuses_trimmed_changes() {
        assert_eq!(check_window(5, 5), Ok(()));
        assert_eq!(check_window(6, 5), Ok(()));
        assert_eq!(
            check_window(4, 5),
            Err(StorageError::ChangesTrimmed { through: 5 })
        );
    }
}
