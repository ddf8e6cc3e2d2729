//! The change-feed part of the behaviour suite (design.md §2, [`super::feed`]): every backend
//! logs each committed change once, in `seq` order, with its ETags, principal and edit; a
//! consumer reads from any sequence number, catches up after stalling, and is told when
//! retention trimmed what it asks for.
//!
//! `change_feed_suite!(name, |retention| make_store(retention))` expands to a test module.

macro_rules! change_feed_suite {
    ($suite:ident, $make:expr) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            use std::collections::HashMap;
            use std::sync::Arc;
            use std::time::Duration;
            use $crate::event::{ChangeOrigin, Edit, EditKind, Placement};
            use $crate::storage::{
                block_on, Blocking, ChangeFeed, ChangeRecord, ChangeRetention, DocKey,
                DocumentStore, Expect, StorageError, TreeKey,
            };

            type Store = Blocking<dyn DocumentStore>;

            fn store_with(retention: ChangeRetention) -> Store {
                Blocking(Arc::new(($make)(retention)))
            }

            fn store() -> Store {
                store_with(ChangeRetention::default())
            }

            fn feed(s: &Store) -> ChangeFeed {
                ChangeFeed::new(Arc::clone(&s.0))
            }

            fn key(user: usize, doc: usize) -> DocKey {
                DocKey::new(
                    "resource-lists",
                    TreeKey::User(format!("sip:user{user}@example.com")),
                    format!("doc{doc}"),
                )
            }

            fn all_changes(s: &Store, after: u64) -> Vec<ChangeRecord> {
                let mut out: Vec<ChangeRecord> = Vec::new();
                loop {
                    let from = out.last().map_or(after, |r| r.seq);
                    let page = s.changes_since(from, 100).unwrap();
                    if page.is_empty() {
                        return out;
                    }
                    out.extend(page);
                }
            }

            /// Every key's records form an unbroken ETag chain ending at the stored version.
            fn check_etag_chains(s: &Store, records: &[ChangeRecord]) {
                let mut last: HashMap<&DocKey, Option<&str>> = HashMap::new();
                for r in records {
                    let before = last.get(&r.key).copied().flatten();
                    assert_eq!(r.previous_etag.as_deref(), before, "chain of {:?}", r.key);
                    last.insert(&r.key, r.new_etag.as_deref());
                }
                for (k, etag) in last {
                    let stored = s.get(k).unwrap().map(|d| d.etag);
                    assert_eq!(stored.as_deref(), etag, "stored version of {k:?}");
                }
            }

            // XE-24: each committed change is logged once with what it did; refused writes
            // and deletes of absent documents log nothing.
            #[test]
            fn records_describe_each_commit() {
                let s = store();
                let k = key(1, 1);
                let edit = Edit {
                    kind: EditKind::PutElement,
                    node_selector: "resource-lists/list/entry[2]".into(),
                    namespaces: vec![("p".into(), "urn:x".into())],
                    value: Some("<entry uri=\"sip:b@x\"/>".into()),
                    position: Some(2),
                    created: true,
                    placement: Some(Placement::AfterPrevious),
                };
                let by = |edit: Option<Edit>| ChangeOrigin {
                    principal: Some("sip:user1@example.com".into()),
                    edit,
                };
                let c1 = s
                    .put_by(&k, &Expect::Absent, "<a/>", "e1", 5, &by(None))
                    .unwrap();
                let refused = s.put_by(&k, &Expect::Absent, "<b/>", "x", 6, &by(None));
                assert!(matches!(refused, Err(StorageError::PreconditionFailed)));
                let e1 = Expect::Etag("e1".into());
                let c2 = s
                    .put_by(&k, &e1, "<b/>", "e2", 7, &by(Some(edit.clone())))
                    .unwrap();
                assert!(s.delete(&key(9, 9), &Expect::Any).unwrap().is_none());
                let e2 = Expect::Etag("e2".into());
                let c3 = s
                    .delete_by(&k, &e2, &ChangeOrigin::default())
                    .unwrap()
                    .unwrap();
                let log = all_changes(&s, 0);
                let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
                assert_eq!(seqs, vec![c1.seq, c2.seq, c3.seq]);
                assert_eq!(seqs, vec![1, 2, 3]);
                assert!(log.iter().all(|r| r.key == k));
                assert_eq!(
                    log.iter()
                        .map(|r| (r.previous_etag.as_deref(), r.new_etag.as_deref()))
                        .collect::<Vec<_>>(),
                    vec![
                        (None, Some("e1")),
                        (Some("e1"), Some("e2")),
                        (Some("e2"), None)
                    ]
                );
                assert_eq!(log[0].origin, by(None));
                assert_eq!(log[1].origin, by(Some(edit)));
                assert_eq!(log[2].origin, ChangeOrigin::default());
                assert_eq!(
                    log[0].document_selector(),
                    "resource-lists/users/sip:user1@example.com/doc1"
                );
                assert_eq!(s.changes_since(1, 1).unwrap().len(), 1);
                assert!(s.changes_since(3, 10).unwrap().is_empty());
                assert_eq!(*s.0.watch_changes().borrow(), 3);
            }

            // Must-show of issue #12: 10,000 writes from 8 concurrent writers to different
            // documents; a consumer from seq 0 sees each exactly once, in strictly
            // increasing order, and a consumer that stalled while the writes went on catches
            // up from the log with no gap.
            #[test]
            fn ten_thousand_concurrent_writes_read_back_in_order() {
                const WRITERS: usize = 8;
                const PER_WRITER: usize = 1250;
                let s = store();
                let feed = feed(&s);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                // The stalled consumer: reads 10 changes, then stops until the writers end.
                let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();
                let mut stalled = feed.subscribe_from(0);
                let stalled = rt.spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..10 {
                        seen.push(stalled.next().await.unwrap());
                    }
                    resume_rx.await.unwrap();
                    while seen.len() < WRITERS * PER_WRITER {
                        let next = tokio::time::timeout(Duration::from_secs(30), stalled.next())
                            .await
                            .expect("caught up")
                            .unwrap();
                        seen.push(next);
                    }
                    seen
                });
                let writers: Vec<_> = (0..WRITERS)
                    .map(|w| {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let origin = ChangeOrigin {
                                principal: Some(format!("sip:user{w}@example.com")),
                                edit: None,
                            };
                            let mut etags: HashMap<usize, String> = HashMap::new();
                            for i in 0..PER_WRITER {
                                let doc = i % 25;
                                let expect = match etags.get(&doc) {
                                    Some(e) => Expect::Etag(e.clone()),
                                    None => Expect::Absent,
                                };
                                let etag = format!("w{w}i{i}");
                                s.put_by(&key(w, doc), &expect, "<r/>", &etag, 0, &origin)
                                    .unwrap();
                                etags.insert(doc, etag);
                            }
                        })
                    })
                    .collect();
                for w in writers {
                    w.join().unwrap();
                }
                resume_tx.send(()).unwrap();
                let total = (WRITERS * PER_WRITER) as u64;
                assert_eq!(s.last_seq().unwrap(), total);
                let stalled = rt.block_on(stalled).unwrap();
                // A consumer started from seq 0 after the writes.
                let mut late = feed.subscribe_from(0);
                let read = rt.block_on(async {
                    let mut out = Vec::new();
                    for _ in 0..total {
                        out.push(late.next().await.unwrap());
                    }
                    out
                });
                assert_eq!(
                    rt.block_on(late.try_next()).unwrap(),
                    None,
                    "nothing after the last write"
                );
                for seen in [&stalled, &read] {
                    let seqs: Vec<u64> = seen.iter().map(|r| r.seq).collect();
                    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
                }
                assert_eq!(stalled, read);
                check_etag_chains(&s, &read);
                for w in 0..WRITERS {
                    let by_w = read
                        .iter()
                        .filter(|r| {
                            r.origin.principal.as_deref()
                                == Some(&format!("sip:user{w}@example.com"))
                        })
                        .count();
                    assert_eq!(by_w, PER_WRITER);
                }
                // A cursor from the middle resumes right after its position.
                let mut mid = feed.subscribe_from(4321);
                assert_eq!(block_on(mid.try_next()).unwrap().map(|r| r.seq), Some(4322));
                assert_eq!(mid.position(), 4322);
            }

            // A consumer waiting at the head is woken by the next commit.
            #[test]
            fn live_consumer_is_woken() {
                let s = store();
                let feed = feed(&s);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let mut cursor = feed.subscribe_from(feed.head());
                let waiting = rt.spawn(async move { cursor.next().await });
                std::thread::sleep(Duration::from_millis(50));
                s.put(&key(1, 1), &Expect::Absent, "<a/>", "e1", 0).unwrap();
                let got = rt
                    .block_on(async {
                        tokio::time::timeout(Duration::from_secs(10), waiting).await
                    })
                    .expect("woken")
                    .unwrap()
                    .unwrap();
                assert_eq!((got.seq, got.new_etag.as_deref()), (1, Some("e1")));
            }

            // Retention by count: asking for trimmed changes says so (resync), the rest read.
            #[test]
            fn trimmed_changes_are_refused_by_count() {
                let s = store_with(ChangeRetention {
                    max_entries: 5,
                    max_age: Duration::from_secs(3600),
                });
                for i in 0..20 {
                    s.put(&key(1, i), &Expect::Absent, "<a/>", "e", 0).unwrap();
                }
                assert_eq!(
                    s.changes_since(0, 10),
                    Err(StorageError::ChangesTrimmed { through: 15 })
                );
                assert_eq!(
                    s.changes_since(14, 10),
                    Err(StorageError::ChangesTrimmed { through: 15 })
                );
                let kept: Vec<u64> = all_changes(&s, 15).iter().map(|r| r.seq).collect();
                assert_eq!(kept, vec![16, 17, 18, 19, 20]);
                let mut cursor = feed(&s).subscribe_from(3);
                assert_eq!(
                    block_on(cursor.try_next()),
                    Err(StorageError::ChangesTrimmed { through: 15 })
                );
            }

            // Retention by age: records older than the bound go at the next commit.
            #[test]
            fn trimmed_changes_are_refused_by_age() {
                let s = store_with(ChangeRetention {
                    max_entries: 1000,
                    max_age: Duration::from_millis(300),
                });
                for i in 0..3 {
                    s.put(&key(1, i), &Expect::Absent, "<a/>", "e", 0).unwrap();
                }
                assert_eq!(all_changes(&s, 0).len(), 3);
                std::thread::sleep(Duration::from_millis(700));
                s.put(&key(1, 3), &Expect::Absent, "<a/>", "e", 0).unwrap();
                assert_eq!(
                    s.changes_since(0, 10),
                    Err(StorageError::ChangesTrimmed { through: 3 })
                );
                assert_eq!(all_changes(&s, 3).len(), 1);
            }
        }
    };
}

pub(crate) use change_feed_suite;
