//! xcapd's notifier behind a real Kamailio (Debian `kamailio`) as the SIP/IP core (issue #13
//! scope 8; RFC 3325, RFC 3261 §16.12 loose routing, RFC 5875): the subscriber talks to
//! Kamailio only; Kamailio asserts the identity and record-routes; xcapd (authentication on,
//! Kamailio a trusted peer) accepts the SUBSCRIBE without a Digest challenge and sends its
//! NOTIFYs back through Kamailio. The IM Server behind the same kind of core (issue #14 scope
//! 1; IM-14a, IM-30, IM-31): Kamailio registers the users and copies each REGISTER to xcapd,
//! sends their MESSAGEs to xcapd as the application server, and delivers what xcapd sends back
//! through it (`im.outbound_proxy`). `make deps` and `.ci/run` install Kamailio.

mod common;
use common::sip_ua::{allow_only, answer_text, resource_lists, Msg, Ua};
use common::*;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOC: &str = "resource-lists/users/sip:alice@example.com/index";

/// Alice's PUT of her buddy list (authentication is on: through the XDMS in process).
async fn put_as_alice(s: &TestServer, entry: &str) -> u16 {
    s.put_as("sip:alice@example.com", DOC, buddy_list(&[entry]))
        .await
}

struct Kamailio {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Kamailio on `port` with the fixture configuration `fixture`, in front of `xcapd`.
    fn start(fixture: &str, port: u16, xcapd: SocketAddr) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let cfg = std::fs::read_to_string(repo_path(&format!("tests/fixtures/{fixture}")))
            .unwrap()
            .replace("KAMAILIO_PORT", &port.to_string())
            .replace("XCAPD_PORT", &xcapd.port().to_string());
        let path = dir.path().join("kamailio.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&path)
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kamailio is installed (Debian package kamailio; `make deps` installs it)");
        Kamailio { child, _dir: dir }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM, so the main process stops its children too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_through_kamailio_with_asserted_identity() {
    let s = TestServer::start_with(|c| {
        c.server.auth = xcapd::config::AuthMode::Required;
        c.sip.trusted_peers = vec!["127.0.0.1/32".into()];
        c.sip.notify_interval_ms = 0;
    })
    .await;
    let xcapd = s.running().sip_addr.unwrap();
    assert_eq!(put_as_alice(&s, "sip:bob@example.com").await, 201);
    let kport = free_port();
    let kamailio = Kamailio::start("kamailio-xcap-diff.cfg", kport, xcapd);
    let proxy: SocketAddr = format!("127.0.0.1:{kport}").parse().unwrap();
    let mut ua = Ua::new(proxy, "sip:alice@example.com").await;
    let body = resource_lists(&["resource-lists/users/sip:alice@example.com/"]);
    // Kamailio takes a moment to listen: retry the first SUBSCRIBE until it answers.
    let mut answered = None;
    for _ in 0..50 {
        let req = ua.subscribe("xcap-diff", Some(600), "", &body);
        ua.send(&req).await;
        if let Some(m) = ua.recv(Duration::from_millis(200)).await {
            answered = Some(m);
            break;
        }
    }
    let mut first = answered.expect("Kamailio answers");
    let mut notifies = Vec::new();
    while first.is_notify() || first.status().is_some_and(|c| c < 200) {
        if first.is_notify() {
            notifies.push(first);
        }
        first = ua
            .recv(Duration::from_secs(5))
            .await
            .expect("the final answer");
    }
    assert_eq!(
        first.status(),
        Some(200),
        "no Digest challenge: {}",
        first.text
    );
    assert!(
        first.header("Record-Route").is_some(),
        "the answer came through Kamailio: {}",
        first.text
    );
    let n = match notifies.pop() {
        Some(n) => n,
        None => ua
            .next_notify(Duration::from_secs(5))
            .await
            .expect("the initial NOTIFY"),
    };
    assert!(
        n.headers("Via").len() >= 2,
        "the NOTIFY was routed through Kamailio: {}",
        n.text
    );
    assert!(n.body().contains("new-etag"), "{}", n.text);
    ua.answer(&n, 200).await;

    // A change through XCAP reaches the subscriber through Kamailio too.
    assert_eq!(put_as_alice(&s, "sip:carol@example.com").await, 200);
    let n = ua
        .next_notify(Duration::from_secs(5))
        .await
        .expect("the change NOTIFY");
    ua.answer(&n, 200).await;
    assert!(n.body().contains("previous-etag"), "{}", n.text);
    assert_eq!(s.running().notifier.as_ref().unwrap().subscriptions(), 1);
    drop(kamailio);
    s.stop().await;
}

const BOB: &str = "sip:bob@example.com";

/// Sends `text` until Kamailio answers it finally (it takes a moment to listen); the answer.
async fn first_answer(ua: &Ua, text: &str) -> Msg {
    for _ in 0..50 {
        ua.send(text).await;
        while let Some(m) = ua.recv(Duration::from_millis(300)).await {
            if m.status().is_some_and(|c| c >= 200) {
                return m;
            }
        }
    }
    panic!("Kamailio does not answer");
}

/// Bob's UA: the next MESSAGE, answered with `code`.
async fn bob_takes(bob: &Ua, code: u16) -> Msg {
    loop {
        let m = bob
            .recv(Duration::from_secs(10))
            .await
            .expect("a MESSAGE at Bob's UA");
        if m.status().is_none() {
            bob.send(&answer_text(&m, code)).await;
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn im_server_as_application_server_behind_kamailio() {
    let kport = free_port();
    let s = TestServer::start_with(|c| {
        c.server.auth = xcapd::config::AuthMode::Required;
        c.sip.trusted_peers = vec!["127.0.0.1/32".into()];
        c.im.outbound_proxy = Some(format!("sip:127.0.0.1:{kport}"));
    })
    .await;
    let rules = format!("im-rules/users/{BOB}/index");
    let allow = allow_only(&["sip:alice@example.com"]);
    let put = s.put_typed_as(BOB, &rules, "application/auth-policy+xml", allow);
    assert_eq!(put.await, 201);
    let xcapd = s.running().sip_addr.unwrap();
    let kamailio = Kamailio::start("kamailio-im.cfg", kport, xcapd);
    let proxy: SocketAddr = format!("127.0.0.1:{kport}").parse().unwrap();

    // Bob registers with Kamailio only; xcapd learns of it from the copied REGISTER.
    let mut bob = Ua::new(proxy, BOB).await;
    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    let r = first_answer(&bob, &register).await;
    assert_eq!(r.status(), Some(200), "{}", r.text);

    // Alice's message goes Kamailio → xcapd (policy: allowed) → Kamailio → Bob, byte for
    // byte; the 200 Alice gets is Bob's UA's (IM-03). Until xcapd has the copied binding the
    // message is stored instead (202) and delivered; either way Bob gets it exactly once.
    let mut alice = Ua::new(proxy, "sip:alice@example.com").await;
    let text = "through the core: é";
    let send = alice.message(1, BOB, "text/plain;charset=utf-8", "", text);
    let (answer, at_bob) = tokio::join!(alice.request(&send), bob_takes(&bob, 200));
    assert!(
        matches!(answer.0.status(), Some(200 | 202)),
        "{}",
        answer.0.text
    );
    assert_eq!(at_bob.body(), text);
    assert!(
        at_bob.headers("Via").len() >= 2,
        "delivered through Kamailio: {}",
        at_bob.text
    );
    assert_eq!(
        at_bob.header("P-Asserted-Identity"),
        Some("<sip:alice@example.com>")
    );
    // Now the binding is known: the next one is a live delivery, 200 from Bob's UA.
    let send = alice.message(2, BOB, "text/plain", "", "second");
    let (answer, at_bob) = tokio::join!(alice.request(&send), bob_takes(&bob, 200));
    assert_eq!(answer.0.status(), Some(200), "{}", answer.0.text);
    assert_eq!(at_bob.body(), "second");

    // IM-24/IM-25: Carol, asserted by the core, is not allowed by Bob's rules.
    let mut carol = Ua::new(proxy, "sip:carol@example.com").await;
    let (r, _) = carol
        .request(&carol.message(1, BOB, "text/plain", "", "hi"))
        .await;
    assert_eq!(r.status(), Some(403), "{}", r.text);

    // IM-14a: Bob deregisters (copied with Expires 0): Alice's next message is stored (202)
    // and reaches him through Kamailio when he registers again.
    let unregister = bob.register(&[&contact], Some(0), "");
    let (r, _) = bob.request(&unregister).await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    let mut stored = None;
    for n in 3..40 {
        let send = alice.message(n, BOB, "text/plain", "", "while you were away");
        let (r, _) = alice.request(&send).await;
        if r.status() == Some(202) {
            stored = Some(n);
            break;
        }
        // The copy of the deregistration may still be on its way: Kamailio answered 480.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored.is_some(), "stored once xcapd saw the deregistration");
    let register = bob.register(&[&contact], Some(600), "");
    bob.send(&register).await;
    let m = bob_takes(&bob, 200).await;
    assert_eq!(m.body(), "while you were away");
    drop(kamailio);
    s.stop().await;
}
