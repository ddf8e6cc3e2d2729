//! The behaviour suites of the stores the SIP side stands on (design.md §4): subscriptions
//! that survive a restart (RFC 6665 §4.2) and stored messages (deferred delivery with claims
//! and acknowledgements, history and charging pages, expiry). Every backend must pass them.
//!
//! `subscription_store_suite!(name, || make())` and `message_store_suite!(name, || make())`
//! expand to test modules; `make` returns a fresh, empty store each time.

macro_rules! subscription_store_suite {
    ($suite:ident, $make:expr) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            use $crate::storage::subscriptions::{DialogId, Subscription, SubscriptionStore};
            use $crate::storage::StorageError;

            fn store() -> impl SubscriptionStore {
                ($make)()
            }

            fn dialog(n: u32) -> DialogId {
                DialogId {
                    call_id: format!("call{n}@127.0.0.1"),
                    local_tag: format!("l{n}"),
                    remote_tag: format!("r{n}"),
                }
            }

            fn sub(n: u32, subscriber: &str, expires_at_ms: u64) -> Subscription {
                Subscription {
                    dialog: dialog(n),
                    subscriber: subscriber.into(),
                    event: "xcap-diff".into(),
                    resources: vec![
                        "resource-lists/users/sip:alice@example.com/index".into(),
                        "rls-services/users/sip:alice@example.com/".into(),
                    ],
                    remote_target: "sip:alice@127.0.0.1:5070;transport=udp".into(),
                    route_set: vec!["<sip:127.0.0.1:5060;lr>".into()],
                    local_cseq: 1,
                    remote_cseq: 7,
                    expires_at_ms,
                    notified_seq: 0,
                    package_state: vec![0, 1, 2, 255],
                }
            }

            // RFC 6665 §4.2.1: a subscription is created, refreshed (replaced) and removed.
            #[tokio::test]
            async fn put_get_refresh_remove() {
                let s = store();
                let a = sub(1, "sip:alice@example.com", 1_000);
                s.put(a.clone()).await.unwrap();
                assert_eq!(s.get(dialog(1)).await.unwrap(), Some(a.clone()));
                assert_eq!(s.get(dialog(2)).await.unwrap(), None);
                let refreshed = Subscription {
                    expires_at_ms: 5_000,
                    local_cseq: 2,
                    notified_seq: 42,
                    ..a.clone()
                };
                s.put(refreshed.clone()).await.unwrap();
                assert_eq!(s.get(dialog(1)).await.unwrap(), Some(refreshed.clone()));
                assert_eq!(s.all().await.unwrap().len(), 1);
                // Progress after a NOTIFY: readable at once, indexes moved with it.
                let progressed = Subscription {
                    notified_seq: 43,
                    expires_at_ms: 6_000,
                    ..refreshed
                };
                s.checkpoint(progressed.clone()).await.unwrap();
                assert_eq!(s.get(dialog(1)).await.unwrap(), Some(progressed));
                assert!(s.expire(5_999).await.unwrap().is_empty());
                assert!(s.remove(dialog(1)).await.unwrap());
                assert!(!s.remove(dialog(1)).await.unwrap());
                assert_eq!(s.get(dialog(1)).await.unwrap(), None);
            }

            #[tokio::test]
            async fn listings_by_subscriber_and_all() {
                let s = store();
                s.put(sub(3, "sip:bob@example.com", 10)).await.unwrap();
                s.put(sub(1, "sip:alice@example.com", 10)).await.unwrap();
                s.put(sub(2, "sip:alice@example.com", 10)).await.unwrap();
                let alice: Vec<DialogId> = s
                    .by_subscriber("sip:alice@example.com".into())
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|x| x.dialog)
                    .collect();
                assert_eq!(alice, vec![dialog(1), dialog(2)]);
                let all: Vec<DialogId> = s
                    .all()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|x| x.dialog)
                    .collect();
                assert_eq!(all, vec![dialog(1), dialog(2), dialog(3)]);
                s.remove(dialog(1)).await.unwrap();
                assert_eq!(
                    s.by_subscriber("sip:alice@example.com".into())
                        .await
                        .unwrap()
                        .len(),
                    1
                );
            }

            // RFC 6665 §4.2.2: expired subscriptions are removed once, and a refresh before
            // expiry keeps one alive.
            #[tokio::test]
            async fn expiry_removes_only_expired_and_follows_refreshes() {
                let s = store();
                s.put(sub(1, "sip:a@x", 100)).await.unwrap();
                s.put(sub(2, "sip:a@x", 200)).await.unwrap();
                s.put(sub(3, "sip:a@x", 300)).await.unwrap();
                s.put(sub(1, "sip:a@x", 400)).await.unwrap(); // refreshed
                let gone: Vec<DialogId> = s
                    .expire(200)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|x| x.dialog)
                    .collect();
                assert_eq!(gone, vec![dialog(2)]);
                assert!(s.expire(200).await.unwrap().is_empty());
                let left: Vec<DialogId> = s
                    .all()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|x| x.dialog)
                    .collect();
                assert_eq!(left, vec![dialog(1), dialog(3)]);
                assert_eq!(s.expire(1_000).await.unwrap().len(), 2);
                assert!(s.all().await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn invalid_subscriptions_are_refused() {
                let s = store();
                let mut bad = sub(1, "sip:a@x", 1);
                bad.dialog.call_id.clear();
                assert!(matches!(s.put(bad).await, Err(StorageError::InvalidKey(_))));
                let mut bad = sub(1, "sip:a@x", 1);
                bad.subscriber = "sip:a\0@x".into();
                assert!(matches!(s.put(bad).await, Err(StorageError::InvalidKey(_))));
                assert!(s.all().await.unwrap().is_empty());
            }
        }
    };
}

macro_rules! message_store_suite {
    ($suite:ident, $make:expr) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            use std::collections::HashSet;
            use std::sync::Arc;
            use $crate::storage::messages::{Mailbox, MessageStore, NewMessage};

            fn store() -> impl MessageStore {
                ($make)()
            }

            fn msg(mailbox: Mailbox, owner: &str, text: &str, expires_ms: u64) -> NewMessage {
                NewMessage {
                    mailbox,
                    owner: owner.into(),
                    sender: "sip:alice@example.com".into(),
                    recipient: owner.into(),
                    content_type: "text/plain".into(),
                    body: text.as_bytes().to_vec(),
                    headers: vec![("imdn.Message-ID".into(), format!("id-{text}"))],
                    created_ms: 10,
                    expires_ms,
                }
            }

            const BOB: &str = "sip:bob@example.com";

            // A message stored while its delivery attempt still runs is held until then.
            #[tokio::test]
            async fn a_held_message_is_claimed_only_after_its_hold() {
                let s = store();
                let id = s
                    .append_held(msg(Mailbox::Deferred, BOB, "held", 10_000), 500)
                    .await
                    .unwrap();
                assert!(s
                    .claim(BOB.into(), 100, 1_000, 10)
                    .await
                    .unwrap()
                    .is_empty());
                let later = s.claim(BOB.into(), 600, 1_000, 10).await.unwrap();
                assert_eq!(later.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
                assert_eq!(later[0].attempts, 0);
                // Released: claimable again at once (and a gone id is skipped); an ended
                // attempt counts, a claim dropped unattempted does not.
                s.release(vec![id, 999_999], true).await.unwrap();
                let again = s.claim(BOB.into(), 700, 1_000, 10).await.unwrap();
                assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
                assert_eq!(again[0].attempts, 1);
                s.release(vec![id], false).await.unwrap();
                let third = s.claim(BOB.into(), 800, 1_000, 10).await.unwrap();
                assert_eq!(third[0].attempts, 1);
                let listed = s.list(Mailbox::Deferred, BOB.into(), 0, 10).await.unwrap();
                assert_eq!((listed[0].attempts, listed[0].claimed_until_ms), (1, 1_800));
            }

            // Start-up reconciliation pages through the owners of one mailbox, each once.
            #[tokio::test]
            async fn owners_of_a_mailbox_are_listed_once_in_order() {
                let s = store();
                for owner in ["sip:carol@example.com", BOB, BOB, "sip:a@example.com"] {
                    s.append(msg(Mailbox::Deferred, owner, "x", 10_000))
                        .await
                        .unwrap();
                }
                s.append(msg(Mailbox::History, "sip:zed@example.com", "h", 10_000))
                    .await
                    .unwrap();
                let all = s.owners(Mailbox::Deferred, None, 10).await.unwrap();
                assert_eq!(all, ["sip:a@example.com", BOB, "sip:carol@example.com"]);
                let first = s.owners(Mailbox::Deferred, None, 1).await.unwrap();
                assert_eq!(first, ["sip:a@example.com"]);
                let rest = s
                    .owners(Mailbox::Deferred, Some(first[0].clone()), 10)
                    .await
                    .unwrap();
                assert_eq!(rest, [BOB, "sip:carol@example.com"]);
                let history = s.owners(Mailbox::History, None, 10).await.unwrap();
                assert_eq!(history, ["sip:zed@example.com"]);
                assert_eq!(s.count(Mailbox::Deferred).await.unwrap(), 4);
                assert_eq!(s.count(Mailbox::History).await.unwrap(), 1);
                assert_eq!(s.count(Mailbox::Charging).await.unwrap(), 0);
            }

            // Store and forward: messages wait in order; a claim holds them for its lease,
            // an acknowledgement removes a delivered one, a lapsed claim frees the rest.
            #[tokio::test]
            async fn deferred_messages_are_claimed_acknowledged_and_reclaimed() {
                let s = store();
                let mut ids = Vec::new();
                for text in ["one", "two", "three"] {
                    ids.push(
                        s.append(msg(Mailbox::Deferred, BOB, text, 10_000))
                            .await
                            .unwrap(),
                    );
                }
                s.append(msg(Mailbox::Deferred, "sip:carol@example.com", "x", 10_000))
                    .await
                    .unwrap();
                s.append(msg(Mailbox::History, BOB, "h", 10_000))
                    .await
                    .unwrap();
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
                let first = s.claim(BOB.into(), 100, 1_000, 2).await.unwrap();
                let texts: Vec<&[u8]> = first.iter().map(|m| &m.message.body[..]).collect();
                assert_eq!(texts, vec![&b"one"[..], &b"two"[..]]);
                assert!(first.iter().all(|m| m.claimed_until_ms == 1_100));
                assert_eq!(first[0].message, msg(Mailbox::Deferred, BOB, "one", 10_000));
                let rest = s.claim(BOB.into(), 200, 1_000, 10).await.unwrap();
                assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[2]]);
                assert!(s
                    .claim(BOB.into(), 300, 1_000, 10)
                    .await
                    .unwrap()
                    .is_empty());
                assert!(s.acknowledge(ids[0]).await.unwrap());
                assert!(!s.acknowledge(ids[0]).await.unwrap(), "acknowledged once");
                // The deliverer of "two" and "three" died: their claims lapse.
                let again = s.claim(BOB.into(), 1_200, 1_000, 10).await.unwrap();
                assert_eq!(
                    again.iter().map(|m| m.id).collect::<Vec<_>>(),
                    vec![ids[1], ids[2]]
                );
            }

            // Two deliverers claiming at once never get the same message.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_claims_are_disjoint() {
                let s = Arc::new(store());
                for i in 0..200 {
                    s.append(msg(Mailbox::Deferred, BOB, &i.to_string(), 10_000))
                        .await
                        .unwrap();
                }
                let claimers: Vec<_> = (0..4)
                    .map(|_| {
                        let s = Arc::clone(&s);
                        tokio::spawn(async move {
                            let mut got = Vec::new();
                            loop {
                                let batch = s.claim(BOB.into(), 1, 5_000, 7).await.unwrap();
                                if batch.is_empty() {
                                    return got;
                                }
                                got.extend(batch.into_iter().map(|m| m.id));
                            }
                        })
                    })
                    .collect();
                let mut seen = HashSet::new();
                for c in claimers {
                    for id in c.await.unwrap() {
                        assert!(seen.insert(id), "message {id} claimed twice");
                    }
                }
                assert_eq!(seen.len(), 200);
            }

            // History and charging records read in pages per owner and list.
            #[tokio::test]
            async fn lists_page_per_owner_and_mailbox() {
                let s = store();
                let mut history = Vec::new();
                for i in 0..5 {
                    history.push(
                        s.append(msg(Mailbox::History, BOB, &i.to_string(), 10_000))
                            .await
                            .unwrap(),
                    );
                    s.append(msg(Mailbox::Charging, BOB, "cdr", 10_000))
                        .await
                        .unwrap();
                    s.append(msg(Mailbox::History, "sip:carol@example.com", "c", 10_000))
                        .await
                        .unwrap();
                }
                let page1 = s.list(Mailbox::History, BOB.into(), 0, 3).await.unwrap();
                assert_eq!(page1.iter().map(|m| m.id).collect::<Vec<_>>(), history[..3]);
                let page2 = s
                    .list(Mailbox::History, BOB.into(), page1[2].id, 3)
                    .await
                    .unwrap();
                assert_eq!(page2.iter().map(|m| m.id).collect::<Vec<_>>(), history[3..]);
                let cdrs = s.list(Mailbox::Charging, BOB.into(), 0, 100).await.unwrap();
                assert_eq!(cdrs.len(), 5);
                assert!(cdrs.iter().all(|m| m.message.mailbox == Mailbox::Charging));
            }

            // Expired messages are removed once and returned; an expired deferred message is
            // never claimed.
            #[tokio::test]
            async fn expiry() {
                let s = store();
                let old = s
                    .append(msg(Mailbox::Deferred, BOB, "old", 100))
                    .await
                    .unwrap();
                let new = s
                    .append(msg(Mailbox::Deferred, BOB, "new", 1_000))
                    .await
                    .unwrap();
                s.append(msg(Mailbox::History, BOB, "h", 100))
                    .await
                    .unwrap();
                let claimable = s.claim(BOB.into(), 100, 10, 10).await.unwrap();
                assert_eq!(
                    claimable.iter().map(|m| m.id).collect::<Vec<_>>(),
                    vec![new]
                );
                let gone = s.expire(100).await.unwrap();
                assert_eq!(gone.len(), 2);
                assert!(gone.iter().any(|m| m.id == old));
                assert!(s.expire(100).await.unwrap().is_empty());
                assert_eq!(
                    s.list(Mailbox::Deferred, BOB.into(), 0, 10)
                        .await
                        .unwrap()
                        .len(),
                    1
                );
            }
        }
    };
}

pub(crate) use message_store_suite;
pub(crate) use subscription_store_suite;
