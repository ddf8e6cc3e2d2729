//! `GET /changes` (issue #13 scope 7, issue #15): another node reads this node's change log
//! over HTTP in order, resumes from any sequence number, long-polls for new changes and is told
//! when retention trimmed what it asks for. Only service (and admin) principals may read it.

mod common;
use common::*;
use std::time::{Duration, Instant};
use xcapd::config::AuthMode;
use xcapd::storage::credentials::{make_credential, Role};

const SERVICE: &str = "<sip:notifier@example.com>";
const ALICE: &str = "<sip:alice@example.com>";

async fn server(adjust: impl FnOnce(&mut xcapd::config::Config) + Send + 'static) -> TestServer {
    let s = TestServer::start_with(|c| {
        c.server.auth = AuthMode::Required;
        c.auth.trusted_peers = vec!["127.0.0.1/32".into()];
        adjust(c);
    })
    .await;
    s.running()
        .credentials
        .put_user(&make_credential(
            "sip:notifier@example.com",
            "example.com",
            "x",
            vec![Role::Service],
            0,
        ))
        .await
        .unwrap();
    s
}

async fn put_as_alice(s: &TestServer, uri: &str) -> u16 {
    reqwest::Client::new()
        .put(s.url(ALICE_LISTS))
        .header("X-XCAP-Asserted-Identity", ALICE)
        .header("Content-Type", RL)
        .body(buddy_list(&[uri]))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn changes(s: &TestServer, who: &str, query: &str) -> (u16, serde_json::Value) {
    let url = s.root.replace("/xcap-root", &format!("/changes?{query}"));
    let r = reqwest::Client::new()
        .get(url)
        .header("X-XCAP-Asserted-Identity", who)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

// XE-24: every committed change, in order, with who made it; resumable from any seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_order_and_resumable() {
    let s = server(|_| {}).await;
    for i in 0..3 {
        assert_eq!(
            put_as_alice(&s, &format!("sip:f{i}@example.com")).await,
            200 + (i == 0) as u16
        );
    }
    let (status, v) = changes(&s, SERVICE, "after=0").await;
    assert_eq!(status, 200, "{v}");
    let list = v["changes"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let seqs: Vec<u64> = list.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(
        list[0]["document"],
        "resource-lists/users/sip:alice@example.com/index"
    );
    assert_eq!(list[0]["previous_etag"], serde_json::Value::Null);
    assert_eq!(list[1]["previous_etag"], list[0]["new_etag"], "ETag chain");
    assert_eq!(list[2]["principal"], "sip:alice@example.com");
    assert_eq!(v["head"], 3);
    let (_, v) = changes(&s, SERVICE, "after=1&limit=1").await;
    assert_eq!(v["changes"][0]["seq"], 2);
    // Users may not read the log; nobody may without credentials.
    assert_eq!(changes(&s, ALICE, "after=0").await.0, 403);
    let anonymous = reqwest::get(s.root.replace("/xcap-root", "/changes"))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(changes(&s, SERVICE, "after=x").await.0, 400);
    s.stop().await;
}

// A reader at the head waits for the next commit instead of polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_the_next_change() {
    let s = server(|_| {}).await;
    assert_eq!(put_as_alice(&s, "sip:a@example.com").await, 201);
    let started = Instant::now();
    let root = s.root.clone();
    let waiter = tokio::spawn(async move {
        let url = root.replace("/xcap-root", "/changes?after=1&wait=20");
        let r = reqwest::Client::new()
            .get(url)
            .header("X-XCAP-Asserted-Identity", SERVICE)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(put_as_alice(&s, "sip:b@example.com").await, 200);
    let text = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["changes"][0]["seq"], 2, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "woken by the commit, not the timeout"
    );
    s.stop().await;
}

// Retention: a reader behind the trimmed point gets 410 with where to resync from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_changes_are_gone() {
    let s = server(|c| c.storage.change_log_max_entries = 2).await;
    for i in 0..5 {
        put_as_alice(&s, &format!("sip:t{i}@example.com")).await;
    }
    let (status, v) = changes(&s, SERVICE, "after=0").await;
    assert_eq!(status, 410, "{v}");
    assert_eq!(v["trimmed_through"], 3);
    assert_eq!(v["head"], 5);
    let (status, v) = changes(&s, SERVICE, "after=3").await;
    assert_eq!(status, 200);
    assert_eq!(v["changes"].as_array().unwrap().len(), 2);
    s.stop().await;
}
