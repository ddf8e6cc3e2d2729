//! The node's shared tail of the change log (design.md §2, issue #15): the changes read last,
//! kept in memory so that every consumer keeping up with the feed (parse cache, xcap-diff
//! notifier, IM Server) is served by one read of the log per commit instead of one read each.
//! On PostgreSQL a log read is a transaction of four statements, and with four consumers those
//! reads were most of the database's work per write.
//!
//! A PostgreSQL node keeps one more below its change feed (`pg_store`): its writer appends each
//! committed batch and its follower what it reads of other nodes' commits, dropping what
//! retention removed, so on one node the log is never read back at all.
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

    /// Appends `records`, the changes following `after` already known to be committed (a
    /// node's own), when they continue what the tail holds or it holds nothing yet;
    /// otherwise the tail stays as it is (a reader fills the gap from the log).
    pub(super) fn offer(&self, after: u64, records: Vec<ChangeRecord>) {
        let mut ring = self.ring.lock();
        if ring.last().is_none_or(|last| last == after) {
            ring.append(after, records);
        }
    }

    /// Appends `page`, read from the log after `after` (restarting the tail there when it
    /// does not continue what is held).
    pub(super) fn append(&self, after: u64, page: Vec<ChangeRecord>) {
        self.ring.lock().append(after, page);
    }

    /// Forgets what retention removed from the log: the changes through `through` and the
    /// oldest ones committed before `cutoff_ms`.
    pub(super) fn forget(&self, through: u64, cutoff_ms: u64) {
        let mut ring = self.ring.lock();
        while let Some(old) = ring.records.front() {
            if old.seq > through && old.at_ms >= cutoff_ms {
                break;
            }
            if let Some(old) = ring.records.pop_front() {
                ring.bytes -= approx_bytes(&old);
                ring.base = Some(old.seq);
            }
        }
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

    // design.md §2 (gap-free): a node's own commits join the tail only where they continue it.
    #[test]
    fn an_offer_joins_only_where_it_continues_the_tail() {
        let tail = Tail::default();
        tail.offer(4, vec![record(5), record(6)]);
        assert_eq!(
            seqs(tail.slice(4, 10)),
            vec![5, 6],
            "an empty tail takes it"
        );
        tail.offer(8, vec![record(9)]);
        assert_eq!(
            tail.slice(6, 10),
            Slice::NotYet,
            "7 and 8 are missing: not taken"
        );
        tail.offer(6, vec![record(7)]);
        assert_eq!(seqs(tail.slice(4, 10)), vec![5, 6, 7]);
    }

    // Retention (design.md §2): what the log no longer holds, the tail does not serve.
    #[test]
    fn forgets_what_retention_removed() {
        let tail = Tail::default();
        let aged = |seq: u64, at_ms: u64| ChangeRecord {
            at_ms,
            ..record(seq)
        };
        tail.append(0, vec![aged(1, 10), aged(2, 20), aged(3, 30), aged(4, 40)]);
        tail.forget(1, 0);
        assert_eq!(tail.slice(0, 10), Slice::Behind, "change 1 is gone");
        assert_eq!(seqs(tail.slice(1, 10)), vec![2, 3, 4]);
        tail.forget(0, 35);
        assert_eq!(
            tail.slice(2, 10),
            Slice::Behind,
            "committed before the cutoff"
        );
        assert_eq!(seqs(tail.slice(3, 10)), vec![4]);
        tail.forget(9, 0);
        assert_eq!(tail.slice(3, 10), Slice::Behind);
        assert_eq!(tail.slice(4, 10), Slice::NotYet);
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
