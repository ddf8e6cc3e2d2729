//! Fresh PostgreSQL stores for the storage suites (issue #15): each in a schema of its own in
//! the database of `XCAPD_TEST_POSTGRES_URL` (a scratch cluster: `scripts/pg-scratch.sh`),
//! served by one runtime shared by the test binary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::feed::ChangeRetention;
use super::pg_db::PgDb;
use super::pg_store::PgStore;
use super::StorageError;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the PostgreSQL tests")
    })
}

/// The configuration of an empty schema of its own.
fn fresh_schema() -> tokio_postgres::Config {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url = std::env::var("XCAPD_TEST_POSTGRES_URL").expect("XCAPD_TEST_POSTGRES_URL");
    let schema = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    block_on(async move {
        let mut config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("the test database");
        let running = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("a schema");
        drop(client);
        let _ = running.await;
        config.options(format!("-c search_path={schema}"));
        config
    })
}

/// Runs `work` on the shared runtime, from a thread of its own (so also from inside the
/// runtime of a `#[tokio::test]`).
fn block_on<T: Send + 'static>(work: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || runtime().block_on(work))
        .join()
        .expect("the PostgreSQL test task")
}

/// A node's database on the schema of `config`.
fn open_db(config: &tokio_postgres::Config) -> Result<PgDb, StorageError> {
    let config = config.clone();
    block_on(async move { PgDb::open_config(config).await })
}

fn open(
    config: &tokio_postgres::Config,
    retention: ChangeRetention,
) -> Result<PgStore, StorageError> {
    let db = open_db(config)?;
    block_on(async move { PgStore::open(&db, retention, 8 << 20).await })
}

/// A store on an empty schema of its own.
pub fn store(retention: ChangeRetention) -> PgStore {
    open(&fresh_schema(), retention).expect("a PostgreSQL store")
}

/// A database on an empty schema of its own (for the SIP-side stores).
pub fn db() -> PgDb {
    open_db(&fresh_schema()).expect("a PostgreSQL database")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        Blocking, ChangeOrigin, DocKey, DocumentStore, Expect, StorageError, TreeKey,
    };
    use std::sync::Arc;

    // Committed documents and the change sequence outlive the process that wrote them
    // (a restart is a new store on the same database).
    #[test]
    fn a_reopened_store_keeps_documents_and_numbers() {
        let config = fresh_schema();
        let key = DocKey::new(
            "resource-lists",
            TreeKey::User("sip:a@example.com".into()),
            "index",
        );
        let first =
            Blocking(Arc::new(open(&config, ChangeRetention::default()).unwrap())
                as Arc<dyn DocumentStore>);
        first.put(&key, &Expect::Absent, "<a/>", "e1", 1).unwrap();
        first
            .put(&key, &Expect::Etag("e1".into()), "<b/>", "e2", 2)
            .unwrap();
        drop(first);
        let again =
            Blocking(Arc::new(open(&config, ChangeRetention::default()).unwrap())
                as Arc<dyn DocumentStore>);
        assert_eq!(&*again.get(&key).unwrap().unwrap().body, "<b/>");
        assert_eq!(again.last_seq().unwrap(), 2);
        let c = again.delete(&key, &Expect::Any).unwrap().unwrap();
        assert_eq!(c.seq, 3);
    }

    // Issue #15 (node cache, ET-01): a read on node B right after a write acknowledged by
    // node A returns that write, though B holds the previous version in its cache and A's
    // notice may not have reached B yet; and a read of B's own write likewise.
    #[test]
    fn a_read_on_another_node_sees_the_write_just_acknowledged() {
        let config = fresh_schema();
        let node = || {
            Blocking(Arc::new(open(&config, ChangeRetention::default()).unwrap())
                as Arc<dyn DocumentStore>)
        };
        let (a, b) = (node(), node());
        let key = DocKey::new(
            "resource-lists",
            TreeKey::User("sip:a@example.com".into()),
            "index",
        );
        a.put(&key, &Expect::Absent, "<v0/>", "e0", 1).unwrap();
        for i in 1..=200 {
            // B caches the current version...
            assert_eq!(b.get(&key).unwrap().unwrap().etag, format!("e{}", i - 1));
            let (writer, reader) = if i % 4 == 0 { (&b, &a) } else { (&a, &b) };
            let expect = Expect::Etag(format!("e{}", i - 1));
            writer
                .put(&key, &expect, &format!("<v{i}/>"), &format!("e{i}"), 1)
                .unwrap();
            // ...and must not serve it once the write is acknowledged.
            let read = reader.get(&key).unwrap().unwrap();
            assert_eq!(read.etag, format!("e{i}"), "write {i}: a stale read");
            assert_eq!(&*read.body, format!("<v{i}/>"));
        }
        a.delete(&key, &Expect::Any).unwrap();
        assert!(b.get(&key).unwrap().is_none(), "a deleted document is gone");
    }

    // Issue #15 scope 1: a database whose schema is newer than the binary is refused, and
    // nothing is changed in it.
    #[test]
    fn a_newer_schema_is_refused() {
        let config = fresh_schema();
        drop(open(&config, ChangeRetention::default()).unwrap());
        runtime().block_on(async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
            let running = tokio::spawn(connection);
            let next = crate::storage::pg_schema::CURRENT + 1;
            client
                .execute("INSERT INTO xcapd_schema (version) VALUES ($1)", &[&next])
                .await
                .unwrap();
            drop(client);
            let _ = running.await;
        });
        match open(&config, ChangeRetention::default()) {
            Err(StorageError::Backend(why)) => assert!(why.contains("newer"), "{why}"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a newer schema was accepted"),
        }
    }

    // Issue #15 scope 3: a node's change feed wakes for another node's commit (NOTIFY at
    // commit, one listening connection per store), and reads it.
    #[test]
    fn another_node_hears_of_each_commit() {
        let config = fresh_schema();
        let a = Arc::new(open(&config, ChangeRetention::default()).unwrap());
        let b = Arc::new(open(&config, ChangeRetention::default()).unwrap());
        let mut woken = b.watch_changes();
        let a = Blocking(a as Arc<dyn DocumentStore>);
        let key = DocKey::new(
            "resource-lists",
            TreeKey::User("sip:a@example.com".into()),
            "index",
        );
        std::thread::sleep(std::time::Duration::from_millis(200)); // b's listener is up
        let seq = a.put(&key, &Expect::Absent, "<a/>", "e1", 1).unwrap().seq;
        let heard = runtime().block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                woken.wait_for(|head| *head >= seq),
            )
            .await
            .map(|r| r.map(|h| *h))
        });
        assert_eq!(heard.ok().and_then(Result::ok), Some(seq));
        let b = Blocking(b as Arc<dyn DocumentStore>);
        let changes = b.changes_since(0, 10).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].new_etag.as_deref(), Some("e1"));
    }

    // Issue #15 scope 3: a writer's document lock holds across stores (nodes) on one
    // database, for that document only, until it is dropped.
    #[test]
    fn document_locks_hold_across_nodes() {
        let config = fresh_schema();
        let a = open(&config, ChangeRetention::default()).unwrap();
        let b = Arc::new(open(&config, ChangeRetention::default()).unwrap());
        let key = |p: &str| {
            DocKey::new(
                "resource-lists",
                TreeKey::User("sip:a@example.com".into()),
                p,
            )
        };
        let (k1, k2) = (key("index"), key("other"));
        runtime().block_on(async {
            let held = a.lock_document(&k1).await.unwrap().expect("a lock");
            let other = b.lock_document(&k2);
            assert!(
                tokio::time::timeout(std::time::Duration::from_secs(5), other)
                    .await
                    .is_ok(),
                "another document is not held"
            );
            let b2 = b.clone();
            let k = k1.clone();
            let waiting =
                tokio::spawn(async move { b2.lock_document(&k).await.map(|l| l.is_some()) });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(
                !waiting.is_finished(),
                "the same document is held by the other node"
            );
            drop(held);
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
            assert!(matches!(got, Ok(Ok(Ok(true)))), "released: {got:?}");
        });
    }

    // Issue #15 scope 3 (no writer starves): while a node's writer holds a document's turn, a
    // write of it from another node that names a version loses its compare-and-swap (so that
    // writer takes turns too instead of overtaking the holder again and again); the holder's
    // own write, and a write naming no version, commit.
    #[test]
    fn a_write_naming_a_version_loses_while_another_node_holds_the_turn() {
        let config = fresh_schema();
        let a = Arc::new(open(&config, ChangeRetention::default()).unwrap());
        let b = Arc::new(open(&config, ChangeRetention::default()).unwrap());
        let key = DocKey::new(
            "resource-lists",
            TreeKey::User("sip:a@example.com".into()),
            "index",
        );
        let origin = ChangeOrigin::default();
        runtime().block_on(async {
            let put = |store: &Arc<PgStore>, expect: Expect, etag: &'static str| {
                let (store, key, origin) = (store.clone(), key.clone(), origin.clone());
                async move { store.put(&key, &expect, "<v/>", etag, 1, &origin).await }
            };
            put(&a, Expect::Absent, "e0").await.unwrap();
            let turn = a.lock_document(&key).await.unwrap().expect("a turn");
            let refused = put(&b, Expect::Etag("e0".into()), "b1").await;
            assert_eq!(
                refused,
                Err(StorageError::PreconditionFailed),
                "A holds the turn"
            );
            put(&a, Expect::Etag("e0".into()), "e1").await.unwrap();
            put(&b, Expect::Any, "b2").await.unwrap();
            // The turn is given back by a statement sent as the lock drops.
            drop(turn);
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while put(&b, Expect::Etag("b2".into()), "b3").await.is_err() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the turn is given back"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
    }

    // Two nodes starting together on an empty schema: one migrates, both open.
    #[test]
    fn nodes_starting_together_migrate_once() {
        for _ in 0..3 {
            let config = fresh_schema();
            let opened = runtime().block_on(async {
                let (a, b) = tokio::join!(
                    PgDb::open_config(config.clone()),
                    PgDb::open_config(config.clone()),
                );
                (
                    a.err().map(|e| e.to_string()),
                    b.err().map(|e| e.to_string()),
                )
            });
            assert_eq!(opened, (None, None));
        }
    }

    // Issue #15 scope 3: each node re-arms and expires the subscriptions it serves only (two
    // nodes must not notify one dialog), reads any; a refresh on another node moves it there.
    #[tokio::test]
    async fn subscriptions_are_served_by_one_node() {
        use crate::storage::pg_subscriptions::PgSubscriptions;
        use crate::storage::subscriptions::{sample, SubscriptionStore};
        let config = fresh_schema();
        let (a, b) = (open_db(&config).unwrap(), open_db(&config).unwrap());
        let (a, b) = (PgSubscriptions::new(a, "a"), PgSubscriptions::new(b, "b"));
        let (one, two) = (sample("one", 1), sample("two", 2));
        a.put(one.clone()).await.unwrap();
        b.put(two.clone()).await.unwrap();
        assert_eq!(a.all().await.unwrap(), vec![one.clone()]);
        assert_eq!(b.all().await.unwrap(), vec![two.clone()]);
        assert_eq!(b.get(one.dialog.clone()).await.unwrap(), Some(one.clone()));
        assert_eq!(b.expire(u64::MAX).await.unwrap(), vec![two]);
        assert_eq!(
            a.all().await.unwrap(),
            vec![one.clone()],
            "not b's to expire"
        );
        b.checkpoint(one.clone()).await.unwrap();
        assert!(a.all().await.unwrap().is_empty());
        assert_eq!(b.all().await.unwrap(), vec![one]);
    }

    // Issue #15 scope 3: a node not heard of for a lease has its subscriptions handed to one
    // live node (once), not before; a node never heard of counts as stopped.
    #[tokio::test]
    async fn a_stopped_nodes_subscriptions_go_to_one_live_node() {
        use crate::storage::pg_subscriptions::PgSubscriptions;
        use crate::storage::subscriptions::{sample, SubscriptionStore};
        let config = fresh_schema();
        let node = |name: &str| PgSubscriptions::new(open_db(&config).unwrap(), name);
        let (a, b, c, ghost) = (node("a"), node("b"), node("c"), node("ghost"));
        assert!(a.orphaned(1_000, 500).await.unwrap().is_empty());
        a.put(sample("one", 1)).await.unwrap();
        ghost.put(sample("never-heard-of", 1)).await.unwrap();
        let taken = b.orphaned(1_400, 500).await.unwrap();
        assert_eq!(
            taken,
            vec![sample("never-heard-of", 1)],
            "a is within its lease"
        );
        assert!(c.orphaned(1_400, 500).await.unwrap().is_empty());
        let (b_took, c_took) = tokio::join!(b.orphaned(1_600, 500), c.orphaned(1_600, 500));
        let mut took = b_took.unwrap();
        took.extend(c_took.unwrap());
        assert_eq!(took, vec![sample("one", 1)], "taken once");
        assert!(a.all().await.unwrap().is_empty());
    }

    // Issue #15 scope 3: deliverers on two nodes claim one recipient's messages at once:
    // every message is claimed by exactly one of them.
    #[tokio::test]
    async fn claims_on_two_nodes_are_disjoint() {
        use crate::storage::messages::{Mailbox, MessageStore, NewMessage};
        use crate::storage::pg_messages::PgMessages;
        let config = fresh_schema();
        let a = Arc::new(PgMessages::new(open_db(&config).unwrap()));
        let b = Arc::new(PgMessages::new(open_db(&config).unwrap()));
        for n in 0..40 {
            a.append(NewMessage {
                mailbox: Mailbox::Deferred,
                owner: "sip:bob@example.com".into(),
                sender: "sip:alice@example.com".into(),
                recipient: "sip:bob@example.com".into(),
                content_type: "text/plain".into(),
                body: format!("m{n}").into_bytes(),
                headers: Vec::new(),
                created_ms: 1,
                expires_ms: u64::MAX >> 2,
            })
            .await
            .unwrap();
        }
        let mut claimers = tokio::task::JoinSet::new();
        for store in [a.clone(), b.clone(), a, b] {
            claimers.spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let batch = store
                        .claim("sip:bob@example.com".into(), 10, 60_000, 3)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return ids;
                    }
                    ids.extend(batch.iter().map(|m| m.id));
                }
            });
        }
        let mut all = Vec::new();
        while let Some(ids) = claimers.join_next().await {
            all.extend(ids.unwrap());
        }
        all.sort_unstable();
        let claimed = all.len();
        all.dedup();
        assert_eq!((claimed, all.len()), (40, 40));
    }

    // Writes committed together (one transaction per batch): refused ones take no number,
    // the others get consecutive ones, gap-free, in the log in the same order.
    #[tokio::test]
    async fn concurrent_writes_batch_without_gaps() {
        let store = Arc::new(store(ChangeRetention::default()));
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..64u32 {
            let store = store.clone();
            writers.spawn(async move {
                let key = DocKey::new(
                    "resource-lists",
                    TreeKey::User(format!("sip:u{}@example.com", n % 32)),
                    "index",
                );
                store
                    .put(
                        &key,
                        &Expect::Absent,
                        "<a/>",
                        &format!("e{n}"),
                        1,
                        &Default::default(),
                    )
                    .await
            });
        }
        let (mut seqs, mut refused) = (Vec::new(), 0);
        while let Some(done) = writers.join_next().await {
            match done.unwrap() {
                Ok(c) => seqs.push(c.seq),
                Err(StorageError::PreconditionFailed) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        seqs.sort_unstable();
        assert_eq!(refused, 32);
        assert_eq!(seqs, (1..=32).collect::<Vec<u64>>());
        let log = store.changes_since(0, 100).await.unwrap();
        let logged: Vec<u64> = log.iter().map(|c| c.seq).collect();
        assert_eq!(logged, seqs);
        assert_eq!(store.last_seq().await.unwrap(), 32);
    }
}
