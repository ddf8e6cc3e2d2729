//! kill -9 during a mixed load of stores and deliveries (issue #14 acceptance; IM-14…IM-16,
//! RFC 3428 §8): the real binary takes Alice's messages for offline Carol (stored, 202) and for
//! Bob, whose UA registered after a backlog had built up and answers slowly (his backlog being
//! delivered while new messages arrive live or stored), and is killed with SIGKILL. Bob's UA
//! stays up through the restart, an RFC 3261 UA: a request it already answered (same Via
//! branch, §17.2.3) is answered again from its transaction, not shown twice. After the restart
//! Carol's deferred-list document lists what waits for her (reconciled at start), and every
//! message that got a 202 reaches its recipient's UA exactly once: none lost, none shown
//! twice (a delivery the kill cut short between the UA's 200 and its removal goes out again
//! as the same transaction). The lists empty.

mod common;
use common::sip_ua::*;
use common::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";

/// What a recipient's UA showed its user (body → times), and how many requests it answered
/// again as retransmissions.
#[derive(Default)]
struct Inbox {
    shown: HashMap<String, usize>,
    answered_again: usize,
}

type Received = Arc<Mutex<Inbox>>;

/// The branch of a request's top Via.
fn branch(m: &Msg) -> String {
    let via = m.header("Via").unwrap_or("");
    let start = via.find("branch=").map_or(via.len(), |i| i + 7);
    via[start..]
        .split([';', ',', ' '])
        .next()
        .unwrap_or("")
        .to_string()
}

/// A recipient UA that registers and answers every new MESSAGE with 200 after `delay`; one
/// whose transaction it answered already gets that answer again at once.
fn receiver(mut ua: Ua, delay: Duration, received: Received) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let contact = format!(
            "sip:{}@{}",
            &ua.user[4..ua.user.find('@').unwrap()],
            ua.local()
        );
        let register = ua.register(&[&contact], Some(600), "");
        ua.send(&register).await;
        let mut transactions: HashMap<String, String> = HashMap::new();
        while let Some(m) = ua.recv(Duration::from_secs(60)).await {
            if m.status().is_some() {
                continue;
            }
            if let Some(answer) = transactions.get(&branch(&m)) {
                ua.send(answer).await;
                received.lock().unwrap().answered_again += 1;
                continue;
            }
            tokio::time::sleep(delay).await;
            let answer = answer_text(&m, 200);
            ua.send(&answer).await;
            transactions.insert(branch(&m), answer);
            *received
                .lock()
                .unwrap()
                .shown
                .entry(m.body().to_string())
                .or_default() += 1;
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
    // The default lease (60 s): held deliveries resume at start, not when it lapses.
    let config = "[sip]\ntimer_t1_ms = 50\n";
    let spawn = || spawn_im_server(dir.path(), port, sip, config);
    let base = format!("http://127.0.0.1:{port}/xcap-root");
    let http = reqwest::Client::new();
    let mut server = KillOnDrop(spawn());
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
    while bob_got.lock().unwrap().shown.len() < 6 {
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
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    // After the restart, before Carol registers: her list matches what waits for her. Bob's
    // UA is registered still (the binding restored): what waits for him goes out at once.
    let mut server = KillOnDrop(spawn());
    wait_ready(&http, &base).await;
    let carol_listed = listed(&http, &base, CAROL).await;
    let carol_got: Received = Arc::default();
    let carol = receiver(Ua::new(sip, CAROL).await, Duration::ZERO, carol_got.clone());

    // Every 202 reaches its recipient.
    let delivered = |to: &str, body: &str| {
        let got = if to == CAROL { &carol_got } else { &bob_got };
        got.lock().unwrap().shown.contains_key(body)
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

    // Carol's list held exactly what she got; both lists are empty now.
    assert_eq!(carol_listed, carol_got.lock().unwrap().shown.len());
    assert_eq!(listed(&http, &base, BOB).await, 0);
    assert_eq!(listed(&http, &base, CAROL).await, 0);
    // Nothing was shown twice to the same UA.
    for got in [&bob_got, &carol_got] {
        let got = got.lock().unwrap();
        let twice: Vec<_> = got.shown.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "shown twice: {twice:?}");
    }
    eprintln!(
        "answered again as retransmissions: bob {}, carol {}",
        bob_got.lock().unwrap().answered_again,
        carol_got.lock().unwrap().answered_again
    );
    bob.abort();
    carol.abort();
    server.0.kill().unwrap();
    server.0.wait().unwrap();
}
