//! kill -9 during a mixed load of stores and deliveries (issue #14 acceptance; IM-14…IM-16,
//! RFC 3428 §8): the real binary takes Alice's messages for offline Carol (stored, 202) and for
//! Bob, whose UA registered after a backlog had built up and answers slowly (his backlog being
//! delivered while new messages arrive live or stored), and is killed with SIGKILL. After a
//! restart on the same data each recipient's deferred-list document lists what waits for
//! them (reconciled at start), and once both register every message that got a 202 reaches
//! its recipient, none lost. A message whose delivery was cut short by the kill may come
//! again, always with its original Call-ID and CSeq (so the UA can tell); the lists empty.

mod common;
use common::sip_ua::*;
use common::*;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";

/// What a recipient's UA received: body → the (Call-ID, CSeq) of each arrival.
type Received = Arc<Mutex<HashMap<String, Vec<(String, String)>>>>;

/// A recipient UA that registers and answers every MESSAGE with 200 after `delay`.
fn receiver(mut ua: Ua, delay: Duration, received: Received) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let contact = format!(
            "sip:{}@{}",
            &ua.user[4..ua.user.find('@').unwrap()],
            ua.local()
        );
        let register = ua.register(&[&contact], Some(600), "");
        ua.send(&register).await;
        while let Some(m) = ua.recv(Duration::from_secs(30)).await {
            if m.status().is_some() {
                continue;
            }
            tokio::time::sleep(delay).await;
            ua.send(&answer_text(&m, 200)).await;
            let id = (
                m.header("Call-ID").unwrap_or("").to_string(),
                m.header("CSeq").unwrap_or("").to_string(),
            );
            received
                .lock()
                .unwrap()
                .entry(m.body().to_string())
                .or_default()
                .push(id);
        }
    })
}

/// Sends `text` and waits up to 3 s for its final status (none: the server is gone).
async fn try_request(ua: &Ua, text: &str) -> Option<u16> {
    ua.send(text).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let m = ua.recv(left).await?;
        if let Some(code) = m.status().filter(|c| *c >= 200) {
            return Some(code);
        }
    }
}

/// The number of items in `user`'s deferred-list document, once two reads agree.
async fn listed(http: &reqwest::Client, base: &str, user: &str) -> usize {
    let url = format!("{base}/org.openmobilealliance.deferred-list/users/{user}/deferred-list");
    let mut last = None;
    for _ in 0..50 {
        let r = http.get(&url).send().await.unwrap();
        let n = match r.status().as_u16() {
            404 => 0,
            200 => r.text().await.unwrap().matches("<history ").count(),
            code => panic!("GET deferred-list: {code}"),
        };
        if last == Some(n) {
            return n;
        }
        last = Some(n);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("{user}'s deferred-list does not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_stores_and_deliveries_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (port, sip_port) = (free_port(), free_port());
    let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    // Short SIP timers: after the restart the restored binding of Bob's old (gone) UA costs
    // one Timer F (3.2 s) before his new contact is tried too.
    let config = "[im]\ndelivery_lease_secs = 2\n[sip]\ntimer_t1_ms = 50\n";
    let spawn = || spawn_im_server(dir.path(), port, sip, config);
    let base = format!("http://127.0.0.1:{port}/xcap-root");
    let http = reqwest::Client::new();
    let mut server = spawn();
    wait_ready(&http, &base).await;
    for user in [BOB, CAROL] {
        put_im_rules(&http, &base, user, &allow_only(&[ALICE])).await;
    }

    // A backlog for Bob, then Bob's slow UA registers and it is being delivered while Alice
    // goes on writing to Bob (live or stored) and to offline Carol (stored).
    let alice = Ua::new(sip, ALICE).await;
    let mut accepted: Vec<(String, String)> = Vec::new(); // (recipient, body) answered 202
    for n in 1..=15 {
        let body = format!("backlog {n}");
        let answer = try_request(&alice, &alice.message(n, BOB, "text/plain", "", &body)).await;
        assert_eq!(answer, Some(202));
        accepted.push((BOB.into(), body));
    }
    let bob_got: Received = Arc::default();
    let bob = receiver(
        Ua::new(sip, BOB).await,
        Duration::from_millis(40),
        bob_got.clone(),
    );
    let mut n = 100;
    while bob_got.lock().unwrap().len() < 6 {
        n += 1;
        let (to, body) = if n % 2 == 0 {
            (BOB, format!("live {n}"))
        } else {
            (CAROL, format!("for carol {n}"))
        };
        match try_request(&alice, &alice.message(n, to, "text/plain", "", &body)).await {
            Some(202) => accepted.push((to.into(), body)),
            Some(200) => {}
            other => panic!("{to}: {other:?}"),
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    bob.abort();

    // After the restart, before anyone registers: the lists match what waits.
    let mut server = spawn();
    wait_ready(&http, &base).await;
    let bob_listed = listed(&http, &base, BOB).await;
    let carol_listed = listed(&http, &base, CAROL).await;
    let before: HashSet<String> = bob_got.lock().unwrap().keys().cloned().collect();
    let bob_after: Received = Arc::default();
    let carol_got: Received = Arc::default();
    let bob = receiver(Ua::new(sip, BOB).await, Duration::ZERO, bob_after.clone());
    let carol = receiver(Ua::new(sip, CAROL).await, Duration::ZERO, carol_got.clone());

    // Every 202 reaches its recipient (claims cut short by the kill lapse after 2 s).
    let delivered = |to: &str, body: &str| {
        let got = if to == CAROL { &carol_got } else { &bob_after };
        before.contains(body) && to == BOB || got.lock().unwrap().contains_key(body)
    };
    for _ in 0..150 {
        if accepted.iter().all(|(to, body)| delivered(to, body)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost: Vec<_> = accepted
        .iter()
        .filter(|(to, body)| !delivered(to, body))
        .collect();
    assert!(lost.is_empty(), "lost after a 202: {lost:?}");

    // The lists held exactly what was delivered after the restart, and are empty now.
    assert_eq!(carol_listed, carol_got.lock().unwrap().len());
    assert_eq!(bob_listed, bob_after.lock().unwrap().len());
    assert_eq!(listed(&http, &base, BOB).await, 0);
    assert_eq!(listed(&http, &base, CAROL).await, 0);
    // A message delivered twice (the kill came between the UA's 200 and the removal) came
    // with the same Call-ID and CSeq; nothing else arrived twice.
    let mut all: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for got in [&bob_got, &bob_after, &carol_got] {
        for (body, ids) in got.lock().unwrap().iter() {
            all.entry(body.clone())
                .or_default()
                .extend(ids.iter().cloned());
        }
    }
    for (body, ids) in &all {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "{body} arrived as different requests: {ids:?}"
        );
    }
    bob.abort();
    carol.abort();
    server.kill().unwrap();
    server.wait().unwrap();
}
