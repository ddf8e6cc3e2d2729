//! Concurrent writers and change events over real HTTP (OP-39, ET-03, XE-24; issue #2 scope 7).

mod common;
use common::*;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn op39_eight_clients_fifteen_inserts_each_none_lost() {
    let s = TestServer::start().await;
    assert_eq!(s.put(ALICE_LISTS, RL, buddy_list(&[])).await.status, 201);
    let mut tasks = Vec::new();
    for c in 0..8 {
        let client = reqwest::Client::new();
        let root = s.root.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..15 {
                let uri = format!("sip:c{c}-{i}@example.com");
                let url = format!(
                    "{root}/{ALICE_LISTS}/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22{uri}%22%5D"
                );
                let r = client
                    .put(url)
                    .header("Content-Type", EL)
                    .body(format!("<entry uri=\"{uri}\"/>"))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    let mut created = 0;
    for t in tasks {
        for st in t.await.unwrap() {
            assert_eq!(st, 201);
            created += 1;
        }
    }
    assert_eq!(created, 120);
    let body = s.get(ALICE_LISTS).await.body;
    let doc = roxmltree::Document::parse(&body).unwrap();
    let uris: HashSet<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("entry"))
        .filter_map(|n| n.attribute("uri"))
        .collect();
    assert_eq!(uris.len(), 120, "every acknowledged insert is present");
    s.stop().await;
}

#[tokio::test]
async fn xe24_document_changed_events_in_commit_order() {
    let s = TestServer::start().await;
    let feed = &s.running().feed;
    let mut events = feed.subscribe_from(feed.head());
    let e1 = s.put(ALICE_LISTS, RL, buddy_list(&[])).await.etag();
    let e2 = s
        .put(
            &format!("{ALICE_LISTS}/~~/resource-lists/list%5B1%5D/entry%5B@uri=%22sip:b@example.com%22%5D"),
            EL,
            "<entry uri=\"sip:b@example.com\"/>",
        )
        .await
        .etag();
    assert_eq!(s.delete(ALICE_LISTS).await.status, 200);
    let unq = |e: &str| e.trim_matches('"').to_string();
    let a = events.next().await.unwrap();
    let b = events.next().await.unwrap();
    let c = events.next().await.unwrap();
    assert_eq!(
        a.document_selector(),
        "resource-lists/users/sip:alice@example.com/index"
    );
    // The change records say who wrote and, for the element PUT, what (RFC 5874 §4).
    assert_eq!(a.origin.principal.as_deref(), Some("sip:alice@example.com"));
    assert_eq!(a.origin.edit, None, "a whole-document PUT");
    let edit = b.origin.edit.clone().expect("element edit recorded");
    assert_eq!(edit.kind, xcapd::event::EditKind::PutElement);
    assert_eq!(
        edit.node_selector,
        "resource-lists/list[1]/entry[@uri=\"sip:b@example.com\"]"
    );
    assert_eq!(
        edit.value.as_deref(),
        Some("<entry xmlns=\"urn:ietf:params:xml:ns:resource-lists\" uri=\"sip:b@example.com\"/>")
    );
    assert_eq!((edit.position, edit.created), (Some(1), true));
    assert_eq!(c.origin.edit, None, "a document DELETE");
    assert_eq!(
        (a.previous_etag.clone(), a.new_etag.clone()),
        (None, Some(unq(&e1)))
    );
    assert_eq!(
        (b.previous_etag.clone(), b.new_etag.clone()),
        (Some(unq(&e1)), Some(unq(&e2)))
    );
    assert_eq!(
        (c.previous_etag.clone(), c.new_etag.clone()),
        (Some(unq(&e2)), None)
    );
    assert!(a.seq < b.seq && b.seq < c.seq);
    // Failed writes publish nothing.
    let _ = s.put(ALICE_LISTS, RL, "<broken").await;
    assert!(events.try_next().await.unwrap().is_none());
    s.stop().await;
}

/// Issue #12: the server-wide uniqueness index follows the change feed, so a write that did not
/// go through this XDMS (another process on the same store, here a write straight into the
/// store) still reserves its service URI (RL-12), and its deletion frees it again.
#[tokio::test]
async fn rl12_uniqueness_follows_writes_made_outside_this_xdms() {
    use xcapd::storage::{ChangeOrigin, DocKey, Expect, TreeKey};
    let s = TestServer::start().await;
    let rls = |owner: &str| {
        format!(
            "<rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\"><service uri=\"sip:friends@example.com\"><resource-list>{}/resource-lists/users/{owner}/index/~~/resource-lists/list%5B@name=%22friends%22%5D</resource-list><packages><package>presence</package></packages></service></rls-services>",
            s.root
        )
    };
    let bob = DocKey::new(
        "rls-services",
        TreeKey::User("sip:bob@example.com".into()),
        "index",
    );
    let store = s.running().xdms.store().clone();
    let body = rls("sip:bob@example.com");
    let outside = ChangeOrigin::default();
    store
        .put(&bob, &Expect::Absent, &body, "outside1", 0, &outside)
        .await
        .unwrap();
    let alice = "rls-services/users/sip:alice@example.com/index";
    let ct = "application/rls-services+xml";
    let mut refused = false;
    for _ in 0..100 {
        let r = s.put(alice, ct, rls("sip:alice@example.com")).await;
        if r.status == 409 {
            assert_eq!(r.xcap_error(), "uniqueness-failure");
            refused = true;
            break;
        }
        // Not followed yet: undo and try again.
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(s.delete(alice).await.status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the URI written outside this XDMS was never reserved"
    );
    // Deleted outside the XDMS: the URI is free again.
    store.delete(&bob, &Expect::Any, &outside).await.unwrap();
    let mut accepted = false;
    for _ in 0..100 {
        let r = s.put(alice, ct, rls("sip:alice@example.com")).await;
        if r.status == 201 {
            accepted = true;
            break;
        }
        assert_eq!(r.status, 409, "{}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(accepted, "the URI freed outside this XDMS stayed reserved");
    s.stop().await;
}
