//! The behaviour suite every [`DocumentStore`](super::DocumentStore) backend must pass (design §4):
//! compare-and-swap writes (RFC 4825 §7.10–§7.11, OP-02, OP-05), the change sequence, listings
//! and their secondary indexes, directories (URI-07, OP-03), key encoding, and concurrency.
//!
//! `document_store_suite!(name, || make_store())` expands to a test module `name`; `make_store`
//! must return a fresh, empty store each time it is called.

macro_rules! document_store_suite {
    ($suite:ident, $make:expr) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use $crate::storage::{
                Committed, DocKey, DocMeta, DocumentStore, Expect, MemoryStore, SledOptions,
                SledStore, StorageError, TreeKey, WriteOutcome,
            };
            use std::collections::BTreeMap;
            use std::sync::Arc;

            /// The backend under test, used through the blocking facade.
            fn store() -> $crate::storage::Blocking<dyn DocumentStore> {
                $crate::storage::Blocking(Arc::new(($make)()))
            }

            const ALICE: &str = "sip:alice@example.com";
            const BOB: &str = "sip:bob@example.com";

            fn user(xui: &str, auid: &str, path: &str) -> DocKey {
                DocKey::new(auid, TreeKey::User(xui.to_owned()), path)
            }

            fn global(auid: &str, path: &str) -> DocKey {
                DocKey::new(auid, TreeKey::Global, path)
            }

            fn keys(list: Vec<DocMeta>) -> Vec<DocKey> {
                list.into_iter().map(|m| m.key).collect()
            }

            // OP-04: a missing document reads as absent, not as an error.
            #[test]
            fn get_missing_is_none() {
                let s = store();
                assert_eq!(s.get(&user(ALICE, "resource-lists", "index")).unwrap(), None);
                assert_eq!(s.last_seq().unwrap(), 0);
            }

            // OP-02: PUT with If-None-Match: * semantics creates; the stored fields read back.
            #[test]
            fn put_absent_creates() {
                let s = store();
                let k = user(ALICE, "resource-lists", "index");
                let c = s.put(&k, &Expect::Absent, "<resource-lists/>", "e1", 1234).unwrap();
                assert_eq!(c.outcome, WriteOutcome::Created);
                assert_eq!(c.previous_etag, None);
                let d = s.get(&k).unwrap().unwrap();
                assert_eq!(&*d.body, "<resource-lists/>");
                assert_eq!(d.etag, "e1");
                assert_eq!(d.modified_ms, 1234);
            }

            // RFC 4825 §7.11 If-None-Match: a failed precondition stores nothing and uses no seq.
            #[test]
            fn put_absent_on_existing_fails_and_stores_nothing() {
                let s = store();
                let k = user(ALICE, "resource-lists", "index");
                s.put(&k, &Expect::Absent, "<a/>", "e1", 1).unwrap();
                let seq = s.last_seq().unwrap();
                assert_eq!(
                    s.put(&k, &Expect::Absent, "<b/>", "e2", 2),
                    Err(StorageError::PreconditionFailed)
                );
                let d = s.get(&k).unwrap().unwrap();
                assert_eq!((&*d.body, d.etag.as_str(), d.modified_ms), ("<a/>", "e1", 1));
                assert_eq!(s.last_seq().unwrap(), seq);
                assert_eq!(s.list_user(ALICE).unwrap()[0].etag, "e1");
            }

            // RFC 4825 §7.10 If-Match: replace only when the ETag matches (OP-02 replace = 200).
            #[test]
            fn put_etag_match_replaces_and_mismatch_fails() {
                let s = store();
                let k = global("xcap-caps", "index");
                assert_eq!(
                    s.put(&k, &Expect::Etag("e0".into()), "<x/>", "e1", 1),
                    Err(StorageError::PreconditionFailed),
                    "If-Match on a missing document must fail"
                );
                assert_eq!(s.get(&k).unwrap(), None);
                s.put(&k, &Expect::Absent, "<a/>", "e1", 1).unwrap();
                assert_eq!(
                    s.put(&k, &Expect::Etag("other".into()), "<b/>", "e2", 2),
                    Err(StorageError::PreconditionFailed)
                );
                assert_eq!(s.get(&k).unwrap().unwrap().etag, "e1");
                let c = s.put(&k, &Expect::Etag("e1".into()), "<c/>", "e3", 3).unwrap();
                assert_eq!(c.outcome, WriteOutcome::Replaced);
                assert_eq!(c.previous_etag.as_deref(), Some("e1"));
                let d = s.get(&k).unwrap().unwrap();
                assert_eq!((&*d.body, d.etag.as_str(), d.modified_ms), ("<c/>", "e3", 3));
            }

            // OP-02: an unconditional PUT creates, then replaces, reporting the previous ETag.
            #[test]
            fn put_any_creates_then_replaces_reporting_previous_etag() {
                let s = store();
                let k = user(BOB, "pres-rules", "index");
                let c1 = s.put(&k, &Expect::Any, "<a/>", "e1", 1).unwrap();
                assert_eq!((c1.outcome, c1.previous_etag), (WriteOutcome::Created, None));
                let c2 = s.put(&k, &Expect::Any, "<b/>", "e2", 2).unwrap();
                assert_eq!(c2.outcome, WriteOutcome::Replaced);
                assert_eq!(c2.previous_etag.as_deref(), Some("e1"));
                let c3 = s.put(&k, &Expect::Any, "<c/>", "e3", 3).unwrap();
                assert_eq!(c3.previous_etag.as_deref(), Some("e2"));
            }

            // OP-05 and §7.10: DELETE honours the precondition; missing documents give None.
            #[test]
            fn delete_with_expect() {
                let s = store();
                let k = user(ALICE, "rls-services", "index");
                assert_eq!(s.delete(&k, &Expect::Any).unwrap(), None);
                assert_eq!(s.delete(&k, &Expect::Absent).unwrap(), None);
                assert_eq!(
                    s.delete(&k, &Expect::Etag("e1".into())),
                    Err(StorageError::PreconditionFailed)
                );
                assert_eq!(s.last_seq().unwrap(), 0, "no-op deletes commit nothing");
                s.put(&k, &Expect::Absent, "<a/>", "e1", 1).unwrap();
                assert_eq!(
                    s.delete(&k, &Expect::Etag("e0".into())),
                    Err(StorageError::PreconditionFailed)
                );
                assert_eq!(s.delete(&k, &Expect::Absent), Err(StorageError::PreconditionFailed));
                assert!(s.get(&k).unwrap().is_some());
                let c = s.delete(&k, &Expect::Etag("e1".into())).unwrap().unwrap();
                assert_eq!(c.outcome, WriteOutcome::Deleted);
                assert_eq!(c.previous_etag.as_deref(), Some("e1"));
                assert_eq!(s.get(&k).unwrap(), None);
                assert_eq!(s.delete(&k, &Expect::Any).unwrap(), None);
                // Re-creation after delete is a creation again.
                let c = s.put(&k, &Expect::Absent, "<b/>", "e2", 2).unwrap();
                assert_eq!((c.outcome, c.previous_etag), (WriteOutcome::Created, None));
            }

            // design §4 change sequence: strictly increasing over puts and deletes, untouched
            // by failed or no-op operations, and last_seq names the latest change.
            #[test]
            fn seq_strictly_increases() {
                let s = store();
                let a = user(ALICE, "resource-lists", "index");
                let b = global("xcap-caps", "index");
                let mut seqs = vec![
                    s.put(&a, &Expect::Absent, "1", "e1", 1).unwrap().seq,
                    s.put(&b, &Expect::Any, "2", "g1", 1).unwrap().seq,
                    s.put(&a, &Expect::Etag("e1".into()), "3", "e2", 1).unwrap().seq,
                ];
                let _ = s.put(&a, &Expect::Absent, "x", "x", 1).unwrap_err();
                let _ = s.delete(&b, &Expect::Etag("zz".into())).unwrap_err();
                seqs.push(s.delete(&b, &Expect::Any).unwrap().unwrap().seq);
                seqs.push(s.put(&b, &Expect::Any, "4", "g2", 1).unwrap().seq);
                assert!(seqs[0] >= 1);
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
                assert_eq!(s.last_seq().unwrap(), *seqs.last().unwrap());
            }

            // Listings and the per-user secondary index stay consistent through create,
            // replace (new ETag, new size) and delete.
            #[test]
            fn listings_follow_puts_replaces_and_deletes() {
                let s = store();
                let a_rl = user(ALICE, "resource-lists", "index");
                let a_rl2 = user(ALICE, "resource-lists", "friends/work");
                let a_pr = user(ALICE, "pres-rules", "index");
                let b_rl = user(BOB, "resource-lists", "index");
                let g_rl = global("resource-lists", "index");
                // An XUI that extends ALICE must not leak into her listing.
                let a_long = user("sip:alice@example.com.evil", "resource-lists", "index");
                for (k, body) in [
                    (&a_rl, "<a/>"),
                    (&a_rl2, "<ab/>"),
                    (&a_pr, "<p/>"),
                    (&b_rl, "<b/>"),
                    (&g_rl, "<g/>"),
                    (&a_long, "<e/>"),
                ] {
                    s.put(k, &Expect::Absent, body, "v1", 10).unwrap();
                }
                // An AUID that extends another must not leak either.
                s.put(&global("resource-lists-x", "index"), &Expect::Absent, "<x/>", "v1", 1)
                    .unwrap();

                assert_eq!(
                    keys(s.list_user(ALICE).unwrap()),
                    vec![a_pr.clone(), a_rl2.clone(), a_rl.clone()]
                );
                assert_eq!(
                    keys(s.list_auid("resource-lists").unwrap()),
                    vec![g_rl.clone(), a_rl2.clone(), a_rl.clone(), a_long.clone(), b_rl.clone()]
                );

                s.put(&a_rl, &Expect::Etag("v1".into()), "<longer/>", "v2", 20).unwrap();
                let listed = s.list_user(ALICE).unwrap();
                let m = listed.iter().find(|m| m.key == a_rl).unwrap();
                assert_eq!((m.etag.as_str(), m.modified_ms, m.size), ("v2", 20, 9));
                let listed = s.list_auid("resource-lists").unwrap();
                let m = listed.iter().find(|m| m.key == a_rl).unwrap();
                assert_eq!((m.etag.as_str(), m.modified_ms, m.size), ("v2", 20, 9));

                s.delete(&a_rl2, &Expect::Any).unwrap().unwrap();
                s.delete(&g_rl, &Expect::Any).unwrap().unwrap();
                assert_eq!(keys(s.list_user(ALICE).unwrap()), vec![a_pr.clone(), a_rl.clone()]);
                assert_eq!(
                    keys(s.list_auid("resource-lists").unwrap()),
                    vec![a_rl.clone(), a_long, b_rl.clone()]
                );
                assert_eq!(keys(s.list_user(BOB).unwrap()), vec![b_rl]);
                assert!(s.list_user("sip:nobody@example.com").unwrap().is_empty());
                assert!(s.list_auid("nope").unwrap().is_empty());
            }

            // Sizes are body bytes (UTF-8), and non-ASCII bodies round-trip exactly.
            #[test]
            fn unicode_body_round_trips_and_size_is_bytes() {
                let s = store();
                let k = user(ALICE, "resource-lists", "index");
                let body = "<l><e n=\"Zoë 中文 😀\"/></l>";
                s.put(&k, &Expect::Absent, body, "e", 1).unwrap();
                assert_eq!(&*s.get(&k).unwrap().unwrap().body, body);
                assert_eq!(s.list_user(ALICE).unwrap()[0].size, body.len() as u64);
            }

            // URI-07 subdirectories and OP-03 <no-parent>: a directory exists while any
            // document lies below it; a document of the same name is not a directory.
            #[test]
            fn directory_exists_tracks_documents_below() {
                let s = store();
                let tree = TreeKey::User(ALICE.into());
                let k = user(ALICE, "oma_status-icon", "a/b/icon");
                assert!(!s.directory_exists("oma_status-icon", &tree, "a").unwrap());
                s.put(&k, &Expect::Absent, "<i/>", "e", 1).unwrap();
                s.put(&user(ALICE, "oma_status-icon", "ab"), &Expect::Absent, "<i/>", "e", 1)
                    .unwrap();
                assert!(s.directory_exists("oma_status-icon", &tree, "a").unwrap());
                assert!(s.directory_exists("oma_status-icon", &tree, "a/").unwrap());
                assert!(s.directory_exists("oma_status-icon", &tree, "a/b").unwrap());
                assert!(s.directory_exists("oma_status-icon", &tree, "").unwrap());
                assert!(!s.directory_exists("oma_status-icon", &tree, "a/b/icon").unwrap());
                assert!(!s.directory_exists("oma_status-icon", &tree, "ab").unwrap());
                assert!(!s.directory_exists("oma_status-icon", &tree, "a/bc").unwrap());
                assert!(!s.directory_exists("oma_status-icon", &TreeKey::Global, "a").unwrap());
                assert!(!s
                    .directory_exists("oma_status-icon", &TreeKey::User(BOB.into()), "a")
                    .unwrap());
                assert!(!s.directory_exists("other", &tree, "a").unwrap());
                s.delete(&k, &Expect::Any).unwrap().unwrap();
                assert!(!s.directory_exists("oma_status-icon", &tree, "a").unwrap());
                assert!(s.directory_exists("oma_status-icon", &tree, "").unwrap());
            }

            // Keys are never file paths: NUL, empty components and empty path segments are
            // rejected by every operation, before anything is stored.
            #[test]
            fn invalid_keys_are_rejected() {
                let s = store();
                let bad = [
                    global("a\0b", "index"),
                    global("", "index"),
                    user("sip:a\0@b", "x", "index"),
                    user("", "x", "index"),
                    global("x", "in\0dex"),
                    global("x", ""),
                    global("x", "a//b"),
                    global("x", "/a"),
                    global("x", "a/"),
                ];
                for k in &bad {
                    let inv = |r: Result<(), StorageError>| {
                        assert!(matches!(r, Err(StorageError::InvalidKey(_))), "{k:?}")
                    };
                    inv(s.get(k).map(drop));
                    inv(s.put(k, &Expect::Any, "<a/>", "e", 1).map(drop));
                    inv(s.delete(k, &Expect::Any).map(drop));
                }
                assert!(matches!(s.list_user("a\0"), Err(StorageError::InvalidKey(_))));
                assert!(matches!(s.list_auid(""), Err(StorageError::InvalidKey(_))));
                assert!(matches!(
                    s.directory_exists("x", &TreeKey::Global, "a\0"),
                    Err(StorageError::InvalidKey(_))
                ));
                assert!(matches!(
                    s.directory_exists("x", &TreeKey::User("\0".into()), "a"),
                    Err(StorageError::InvalidKey(_))
                ));
                assert_eq!(s.last_seq().unwrap(), 0);
            }

            // design §3 "concurrent writers never lose each other's updates": 8 threads × 50
            // read-modify-write increments with If-Match retry end at exactly 400.
            #[test]
            fn concurrent_etag_increments_lose_no_update() {
                const THREADS: u64 = 8;
                const ROUNDS: u64 = 50;
                let s = Arc::new(store());
                let k = user(ALICE, "counter", "index");
                let first = s.put(&k, &Expect::Absent, "0", "init", 0).unwrap().seq;
                let handles: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let s = Arc::clone(&s);
                        let k = k.clone();
                        std::thread::spawn(move || {
                            let mut seqs = Vec::new();
                            let mut conflicts = 0u64;
                            for i in 0..ROUNDS {
                                for attempt in 0u64.. {
                                    let d = s.get(&k).unwrap().unwrap();
                                    let n: u64 = d.body.parse().unwrap();
                                    let etag = format!("t{t}-i{i}-a{attempt}");
                                    match s.put(
                                        &k,
                                        &Expect::Etag(d.etag.clone()),
                                        &(n + 1).to_string(),
                                        &etag,
                                        0,
                                    ) {
                                        Ok(c) => {
                                            assert_eq!(c.previous_etag, Some(d.etag));
                                            seqs.push(c.seq);
                                            break;
                                        }
                                        Err(StorageError::PreconditionFailed) => conflicts += 1,
                                        Err(e) => panic!("{e}"),
                                    }
                                }
                            }
                            (seqs, conflicts)
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for h in handles {
                    let (seqs, _conflicts) = h.join().unwrap();
                    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
                    all.extend(seqs);
                }
                let d = s.get(&k).unwrap().unwrap();
                assert_eq!(&*d.body, (THREADS * ROUNDS).to_string());
                all.sort_unstable();
                all.dedup();
                assert_eq!(all.len() as u64, THREADS * ROUNDS, "every commit has its own seq");
                assert!(all[0] > first);
                assert_eq!(s.last_seq().unwrap(), *all.last().unwrap());
            }

            // OP-02 under contention: of many concurrent creations exactly one wins.
            #[test]
            fn concurrent_absent_creates_exactly_one() {
                let s = Arc::new(store());
                let k = global("xcap-caps", "index");
                let wins: usize = (0..8)
                    .map(|t| {
                        let s = Arc::clone(&s);
                        let k = k.clone();
                        std::thread::spawn(move || {
                            match s.put(&k, &Expect::Absent, "<a/>", &format!("e{t}"), 0) {
                                Ok(c) => {
                                    assert_eq!(c.outcome, WriteOutcome::Created);
                                    1
                                }
                                Err(StorageError::PreconditionFailed) => 0,
                                Err(e) => panic!("{e}"),
                            }
                        })
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .sum();
                assert_eq!(wins, 1);
                assert_eq!(s.last_seq().unwrap(), 1);
            }

            mod prop {
                use super::*;
                use proptest::prelude::*;

                fn tree() -> impl Strategy<Value = TreeKey> {
                    prop_oneof![
                        1 => Just(TreeKey::Global),
                        3 => "[a-c:@%/é中😀.+]{1,5}".prop_map(TreeKey::User),
                    ]
                }

                fn doc_key() -> impl Strategy<Value = DocKey> {
                    (
                        "[a-c%:/@ü-]{1,3}",
                        tree(),
                        proptest::collection::vec("[a-c:@%é中😀.]{1,3}", 1..4),
                    )
                        .prop_map(|(auid, tree, segs)| DocKey::new(auid, tree, segs.join("/")))
                }

                fn same_dir(k: &DocKey, auid: &str, tree: &TreeKey) -> bool {
                    k.auid == auid && &k.tree == tree
                }

                /// Checks every listing, get and directory of the store against the model.
                fn check(s: &$crate::storage::Blocking<dyn DocumentStore>, model: &BTreeMap<DocKey, String>, probes: &[DocKey]) {
                    for k in probes {
                        assert_eq!(
                            s.get(k).unwrap().map(|d| d.body.to_string()),
                            model.get(k).cloned(),
                            "{k:?}"
                        );
                        let want: Vec<DocKey> =
                            model.keys().filter(|m| m.auid == k.auid).cloned().collect();
                        assert_eq!(keys(s.list_auid(&k.auid).unwrap()), want);
                        if let TreeKey::User(xui) = &k.tree {
                            let want: Vec<DocKey> =
                                model.keys().filter(|m| m.tree == k.tree).cloned().collect();
                            assert_eq!(keys(s.list_user(xui).unwrap()), want);
                        }
                        // Every segment prefix of the path, including the whole path.
                        let segs: Vec<&str> = k.path.split('/').collect();
                        for n in 1..=segs.len() {
                            let dir = segs[..n].join("/");
                            let below = format!("{dir}/");
                            let want = model
                                .keys()
                                .any(|m| same_dir(m, &k.auid, &k.tree) && m.path.starts_with(&below));
                            assert_eq!(
                                s.directory_exists(&k.auid, &k.tree, &dir).unwrap(),
                                want,
                                "{k:?} dir {dir}"
                            );
                        }
                    }
                }

                proptest! {
                    #![proptest_config(ProptestConfig::with_cases(24))]

                    // URI-07: components with '/', ':', '@', '%' and non-ASCII characters
                    // round-trip and never collide; listings equal the model exactly,
                    // also after deletes (secondary index consistency).
                    #[test]
                    fn random_keys_round_trip_and_list_exactly(
                        entries in proptest::collection::vec(doc_key(), 1..24),
                        delete_mask in proptest::collection::vec(any::<bool>(), 24),
                    ) {
                        let s = store();
                        let mut model = BTreeMap::new();
                        for (i, k) in entries.iter().enumerate() {
                            let body = format!("<d n=\"{i}\">{}</d>", k.path);
                            s.put(k, &Expect::Any, &body, &format!("e{i}"), i as u64).unwrap();
                            model.insert(k.clone(), body);
                        }
                        check(&s, &model, &entries);
                        for (k, del) in entries.iter().zip(&delete_mask) {
                            if *del {
                                let was = model.remove(k).is_some();
                                prop_assert_eq!(s.delete(k, &Expect::Any).unwrap().is_some(), was);
                            }
                        }
                        check(&s, &model, &entries);
                    }
                }
            }
        }
    };
}

/// Path-based export so other modules (e.g. a future PostgreSQL backend) can
/// `use crate::storage::suite::document_store_suite;`.
pub(crate) use document_store_suite;
