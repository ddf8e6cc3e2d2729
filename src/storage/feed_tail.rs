//! The node's shared tail of the change log (design.md §2, issue #15): the changes read last,
//! kept in memory so that every consumer keeping up with the feed (parse cache, xcap-diff
//! notifier, IM Server) is served by one read of the log per commit instead of one read each.
//! On PostgreSQL a log read is a transaction of four statements, and with four consumers those
//! reads were most of the database's work per write.
//!
//! The tail is a cache of the log, never the record: it holds a gap-free run of changes
//! (checked as read), reads at most one page at a time (one reader; who waits gets what it
//! read), and a consumer behind its start reads the log itself, as before.

use std::collections::VecDeque;

use super::{ChangeRecord, DocumentStore, StorageError};

/// Changes the tail keeps at most.
const MAX_RECORDS: usize = 2048;
/// Approximate bytes of changes the tail keeps at most (an edit may carry an element).
const MAX_BYTES: usize = 8 << 20;

/// What the tail holds after a position.
#[derive(Debug, PartialEq)]
pub(super) enum Slice {
    /// The changes following the position (at most the limit asked for).
    Records(Vec<ChangeRecord>),
    /// The position lies before the tail's start: read the log.
    Behind,
    /// Nothing after the position is in the tail yet.
    NotYet,
}

#[derive(Default)]
struct Ring {
    /// The sequence number just before the first change held; `None` until the first read.
    base: Option<u64>,
    records: VecDeque<ChangeRecord>,
    bytes: usize,
}

impl Ring {
    fn last(&self) -> Option<u64> {
        self.base.map(|b| b + self.records.len() as u64)
    }

    /// Appends `page`, which continues the tail at `after` (restarting it there when it does
    /// not continue what is held), then drops the oldest changes beyond the bounds.
    fn append(&mut self, after: u64, page: Vec<ChangeRecord>) {
        if self.last() != Some(after) {
            self.base = Some(after);
            self.records.clear();
            self.bytes = 0;
        }
        for record in page {
            self.bytes += approx_bytes(&record);
            self.records.push_back(record);
        }
        while self.records.len() > MAX_RECORDS || (self.bytes > MAX_BYTES && self.records.len() > 1)
        {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= approx_bytes(&old);
                self.base = Some(old.seq);
            }
        }
    }
}

/// The heap bytes a change holds, roughly.
fn approx_bytes(r: &ChangeRecord) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let edit = r.origin.edit.as_ref().map_or(0, |e| {
        e.node_selector.len()
            + text(&e.value)
            + e.namespaces
                .iter()
                .map(|(p, n)| p.len() + n.len())
                .sum::<usize>()
    });
    std::mem::size_of::<ChangeRecord>()
        + r.key.auid.len()
        + r.key.path.len()
        + match &r.key.tree {
            super::TreeKey::Global => 0,
            super::TreeKey::User(xui) => xui.len(),
        }
        + text(&r.previous_etag)
        + text(&r.new_etag)
        + text(&r.origin.principal)
        + edit
}

#[derive(Default)]
pub(super) struct Tail {
    ring: parking_lot::Mutex<Ring>,
    /// Held by the one reader of the log.
    reading: tokio::sync::Mutex<()>,
}

impl Tail {
    /// The changes after `after` the tail holds (at most `limit`).
    pub(super) fn slice(&self, after: u64, limit: usize) -> Slice {
        let ring = self.ring.lock();
        let (Some(base), Some(last)) = (ring.base, ring.last()) else {
            return Slice::NotYet;
        };
        if after < base {
            return Slice::Behind;
        }
        if after >= last {
            return Slice::NotYet;
        }
        let from = (after - base) as usize;
        Slice::Records(ring.records.range(from..).take(limit).cloned().collect())
    }

    /// Reads the log after the tail's end into the tail (after `after` when the tail does not
    /// reach it), unless another reader brought changes after `after` meanwhile. `page` is the
    /// checked read of the log: gap-free from its argument on.
    pub(super) async fn extend<F, Fut>(&self, after: u64, page: F) -> Result<(), StorageError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<ChangeRecord>, StorageError>>,
    {
        let _one = self.reading.lock().await;
        let from = match self.ring.lock().last() {
            Some(last) if last > after => return Ok(()),
            Some(last) if last == after => last,
            _ => after,
        };
        let records = page(from).await?;
        self.ring.lock().append(from, records);
        Ok(())
    }
}

/// The log read [`Tail::extend`] uses: one page of `store`'s changes after `after`.
pub(super) async fn read_page(
    store: &dyn DocumentStore,
    after: u64,
    limit: usize,
) -> Result<Vec<ChangeRecord>, StorageError> {
    super::feed::checked(after, store.changes_since(after, limit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChangeOrigin;
    use crate::storage::{DocKey, TreeKey};

    fn record(seq: u64) -> ChangeRecord {
        ChangeRecord {
            seq,
            key: DocKey::new("a", TreeKey::User("sip:u@x".into()), "index"),
            previous_etag: None,
            new_etag: Some(format!("e{seq}")),
            at_ms: 0,
            origin: ChangeOrigin::default(),
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn seqs(slice: Slice) -> Vec<u64> {
        match slice {
            Slice::Records(r) => r.iter().map(|r| r.seq).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    // design.md §2: consumers get every change once, in order, from where they are.
    #[test]
    fn serves_from_any_position_it_holds() {
        let tail = Tail::default();
        assert_eq!(tail.slice(0, 10), Slice::NotYet);
        run(tail.extend(3, |from| async move {
            Ok((from + 1..=from + 4).map(record).collect())
        }))
        .unwrap();
        assert_eq!(
            tail.slice(2, 10),
            Slice::Behind,
            "before its start: read the log"
        );
        assert_eq!(seqs(tail.slice(3, 10)), vec![4, 5, 6, 7]);
        assert_eq!(seqs(tail.slice(5, 1)), vec![6]);
        assert_eq!(tail.slice(7, 10), Slice::NotYet);
    }

    #[test]
    fn extends_from_its_end_and_skips_a_read_another_made() {
        let tail = Tail::default();
        run(tail.extend(0, |_| async { Ok(vec![record(1), record(2)]) })).unwrap();
        // A consumer at 1 while the tail reaches 2: nothing to read.
        run(tail.extend(1, |_| async { panic!("the tail already holds change 2") })).unwrap();
        let mut asked = None;
        run(tail.extend(2, |from| {
            asked = Some(from);
            async move { Ok(vec![record(3)]) }
        }))
        .unwrap();
        assert_eq!(asked, Some(2));
        assert_eq!(seqs(tail.slice(0, 10)), vec![1, 2, 3]);
    }

    #[test]
    fn a_consumer_ahead_restarts_the_tail_there() {
        let tail = Tail::default();
        run(tail.extend(0, |_| async { Ok(vec![record(1)]) })).unwrap();
        run(tail.extend(10, |from| async move { Ok(vec![record(from + 1)]) })).unwrap();
        assert_eq!(tail.slice(1, 10), Slice::Behind);
        assert_eq!(seqs(tail.slice(10, 10)), vec![11]);
    }

    #[test]
    fn bounded_dropping_the_oldest() {
        let tail = Tail::default();
        let n = MAX_RECORDS as u64 + 10;
        run(tail.extend(0, |_| async move { Ok((1..=n).map(record).collect()) })).unwrap();
        assert_eq!(tail.slice(5, 1), Slice::Behind);
        assert_eq!(seqs(tail.slice(10, 1)), vec![11]);
        assert_eq!(seqs(tail.slice(n - 1, 5)), vec![n]);
    }

    #[test]
    fn a_failed_read_leaves_the_tail_as_it_was() {
        let tail = Tail::default();
        run(tail.extend(0, |_| async { Ok(vec![record(1)]) })).unwrap();
        let failed = run(tail.extend(1, |_| async {
            Err(StorageError::Unavailable("down".into()))
        }));
        assert!(failed.is_err());
        assert_eq!(seqs(tail.slice(0, 10)), vec![1]);
    }
}
