//! Pager-mode MESSAGE through the IM Server over real UDP sockets (issue #14 scopes 2–3;
//! RFC 3428; IM-01, IM-24…IM-26): Bob registers, his `im-rules` allow Alice and block Carol;
//! Alice's message reaches Bob's UA byte for byte (CPIM with unusual header case included) and
//! she gets 200 only because his UA answered 200, and his UA's refusal comes back as it is;
//! Carol gets 403; a sender no rule names gets the operator default (block); a message for
//! Bob while he is offline is stored (202) and reaches him when he registers (IM-14); a
//! large body gets 413; a slow or silent recipient UA does not hold the sender up (202 while
//! it gets Timer F).

mod common;
use common::sip_ua::*;
use common::*;
use std::time::Duration;
use xcapd::storage::messages::Mailbox::Deferred;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";

const RULES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules">
  <cr:rule id="friends">
    <cr:conditions><cr:identity><cr:one id="sip:alice@example.com"/></cr:identity></cr:conditions>
    <cr:actions><im:im-handling>allow</im:im-handling></cr:actions>
  </cr:rule>
  <cr:rule id="pest">
    <cr:conditions><cr:identity><cr:one id="sip:carol@example.com"/></cr:identity></cr:conditions>
    <cr:actions><im:im-handling>block</im:im-handling></cr:actions>
  </cr:rule>
</cr:ruleset>
"#;

/// A MESSAGE from `ua`'s user to `to` with `content_type` and `body`.
fn message(ua: &Ua, n: u32, to: &str, content_type: &str, body: &str) -> String {
    ua.message(n, to, content_type, "", body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_through_policy_to_registered_contacts() {
    let s = TestServer::start_with(|c| c.sip.timer_t1_ms = 50).await;
    let r = s
        .put(
            &format!("im-rules/users/{BOB}/index"),
            "application/auth-policy+xml",
            RULES,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sip = s.running().sip_addr.unwrap();
    let mut alice = Ua::new(sip, ALICE).await;
    let mut bob = Ua::new(sip, BOB).await;

    // RFC 3994: an isComposing indication to an offline user is not stored.
    let typing = message(
        &alice,
        9,
        BOB,
        "application/im-iscomposing+xml",
        "<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>active</state></isComposing>",
    );
    let (r, _) = alice.request(&typing).await;
    assert_eq!(r.status(), Some(480), "{}", r.text);

    // IM-14: offline, so stored (202) and delivered when Bob registers.
    let first = message(
        &alice,
        1,
        BOB,
        "text/plain;charset=utf-8",
        "anyone there? é",
    );
    let (r, _) = alice.request(&first).await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    bob.send(&register).await;
    let (mut registered, mut stored) = (false, None);
    while !(registered && stored.is_some()) {
        let m = bob
            .recv(Duration::from_secs(5))
            .await
            .expect("the 200 and the stored MESSAGE");
        match m.status() {
            Some(code) => {
                assert_eq!(code, 200, "{}", m.text);
                registered = true;
            }
            None => {
                bob.send(&answer_text(&m, 200)).await;
                stored = Some(m);
            }
        }
    }
    let stored = stored.unwrap();
    assert_eq!(stored.body(), "anyone there? é");
    assert_eq!(
        stored.header("Content-Type"),
        Some("text/plain;charset=utf-8")
    );
    assert_eq!(
        stored.header("P-Asserted-Identity"),
        Some(format!("<{ALICE}>").as_str())
    );
    // Removed once Bob's UA answered 200 (the answer is on its way back meanwhile).
    let mut waiting = vec![()];
    for _ in 0..40 {
        let stored = s.running().messages.list(Deferred, BOB.into(), 0, 10).await;
        waiting = stored.unwrap().iter().map(|_| ()).collect();
        if waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waiting.is_empty(), "delivered, so no longer stored");

    // IM-01, byte for byte: CPIM with unusual header case and order, a 1 KB body.
    let cpim = format!(
        "to: <{BOB}>\r\nFROM: <{ALICE}>\r\nDateTime: 2026-12-07T10:00:00Z\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\n\r\nContent-Type: text/plain;charset=utf-8\r\n\r\n{}",
        "é ü <b>&amp;</b> ".repeat(50)
    );
    let send = message(&alice, 2, BOB, "message/cpim", &cpim);
    let at_bob = async {
        let m = bob
            .recv(Duration::from_secs(5))
            .await
            .expect("the MESSAGE at Bob's UA");
        bob.send(&answer_text(&m, 200)).await;
        m
    };
    let ((r, _), m) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(200), "{}", r.text);
    assert!(
        m.text.starts_with(&format!("MESSAGE {contact} SIP/2.0")),
        "{}",
        m.text
    );
    assert_eq!(m.body(), cpim, "the body arrives byte for byte");
    assert_eq!(m.header("Content-Type"), Some("message/cpim"));
    assert_eq!(
        m.header("P-Asserted-Identity"),
        Some(format!("<{ALICE}>").as_str())
    );

    // A recipient UA that refuses: its answer, not a 200 (RFC 3428 §7), and nothing stored.
    let send = message(&alice, 3, BOB, "text/plain", "are you there?");
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("the MESSAGE");
        bob.send(&answer_text(&m, 486)).await;
    };
    let ((r, _), ()) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(486), "{}", r.text);

    // IM-25/IM-24: Carol is blocked; Dave, whom no rule names, gets the default (block).
    for who in ["sip:carol@example.com", "sip:dave@example.com"] {
        let mut ua = Ua::new(sip, who).await;
        let hi = message(&ua, 1, BOB, "text/plain", "hi");
        let (r, _) = ua.request(&hi).await;
        assert_eq!(r.status(), Some(403), "{who}: {}", r.text);
    }
    assert!(
        bob.recv(Duration::from_millis(300)).await.is_none(),
        "nothing blocked reaches Bob"
    );

    // RFC 3428 §5: pager mode is for short messages.
    let big = "x".repeat(5000);
    let large = message(&alice, 4, BOB, "text/plain", &big);
    let (r, _) = alice.request(&large).await;
    assert_eq!(r.status(), Some(413), "{}", r.text);
    s.stop().await;
}

// IM-14, issue #14 scope 4 ("kill -9 after the 202 loses nothing"): the real binary stores a
// message for offline Bob and answers 202, is killed with SIGKILL, and after a restart on the
// same data Bob's registration brings him that message, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (port, sip_port) = (free_port(), free_port());
    let sip: std::net::SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let spawn = || spawn_im_server(dir.path(), port, sip, "");
    let base = format!("http://127.0.0.1:{port}/xcap-root");
    let http = reqwest::Client::new();
    let mut server = spawn();
    wait_ready(&http, &base).await;
    put_im_rules(&http, &base, BOB, RULES).await;
    let mut alice = Ua::new(sip, ALICE).await;
    let body = "kept across a crash: é";
    let send = message(&alice, 1, BOB, "text/plain;charset=utf-8", body);
    let (r, _) = alice.request(&send).await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    server.kill().unwrap();
    server.wait().unwrap();

    let mut server = spawn();
    wait_ready(&http, &base).await;
    let mut bob = Ua::new(sip, BOB).await;
    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    bob.send(&register).await;
    let mut delivered = None;
    while delivered.is_none() {
        let m = bob
            .recv(Duration::from_secs(10))
            .await
            .expect("the stored MESSAGE after the restart");
        if m.status().is_none() {
            bob.send(&answer_text(&m, 200)).await;
            delivered = Some(m);
        }
    }
    assert_eq!(delivered.unwrap().body(), body);
    server.kill().unwrap();
    server.wait().unwrap();
}

// IM-03, issue #14 scope 2: a recipient UA slower than `im.answer_within_ms` does not hold
// the sender up: the message is stored (202) while the attempt goes on. Bob's late 200 removes
// it (never delivered twice); a UA that never answers gets Timer F, then the message is offered
// again and taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_recipient_gets_timer_f_while_the_sender_has_its_202() {
    let s = TestServer::start_with(|c| {
        c.sip.timer_t1_ms = 50; // Timer F: 3.2 s
        c.im.answer_within_ms = 300;
    })
    .await;
    let r = s
        .put(
            &format!("im-rules/users/{BOB}/index"),
            "application/auth-policy+xml",
            RULES,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sip = s.running().sip_addr.unwrap();
    let mut alice = Ua::new(sip, ALICE).await;
    let mut bob = Ua::new(sip, BOB).await;
    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    assert_eq!(bob.request(&register).await.0.status(), Some(200));
    let waiting = || async {
        let stored = s.running().messages.list(Deferred, BOB.into(), 0, 10).await;
        stored.unwrap().len()
    };

    // A late 200 (after 1 s): Alice already had her 202; the stored copy goes away.
    let send = message(&alice, 1, BOB, "text/plain", "slow one");
    let late_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("the MESSAGE");
        tokio::time::sleep(Duration::from_secs(1)).await;
        bob.send(&answer_text(&m, 200)).await;
        m.header("Via").unwrap_or("").to_string()
    };
    let started = std::time::Instant::now();
    let (answer, first_offer) = tokio::join!(
        async {
            let a = alice.request(&send).await;
            (a, started.elapsed())
        },
        late_bob
    );
    let ((r, _), took) = answer;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    assert!(
        took < Duration::from_secs(1),
        "answered before Bob: {took:?}"
    );
    for _ in 0..40 {
        if waiting().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting().await, 0, "Bob's late 200 settled it");
    // Retransmissions of the first attempt may still arrive; a second offer (a new
    // transaction) must not.
    while let Some(m) = bob.recv(Duration::from_millis(1500)).await {
        if m.status().is_none() {
            assert_eq!(m.header("Via").unwrap_or(""), first_offer, "offered twice");
        }
    }

    // No answer at all: Timer F ends the attempt, the message is offered again and taken.
    let send = message(&alice, 2, BOB, "text/plain", "silent one");
    let (r, _) = alice.request(&send).await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    let first = bob
        .recv(Duration::from_secs(5))
        .await
        .expect("the first offer");
    let branch = |m: &Msg| m.header("Via").unwrap_or("").to_string();
    let first_branch = branch(&first);
    let retry = loop {
        let m = bob
            .recv(Duration::from_secs(10))
            .await
            .expect("offered again after Timer F");
        if m.status().is_none() && branch(&m) != first_branch {
            break m;
        }
    };
    bob.send(&answer_text(&retry, 200)).await;
    assert_eq!(retry.body(), "silent one");
    for _ in 0..40 {
        if waiting().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting().await, 0);
    s.stop().await;
}

// Issue #14 scope 1 (RFC 3261 §10.3, the location service is the registrar's state): Bob's
// registration survives a kill -9 of the real binary: after the restart Alice's message is
// delivered to his contact at once (200), and a message stored for him before the crash
// (his UA did not answer then) is delivered without his registering again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (port, sip_port) = (free_port(), free_port());
    let sip: std::net::SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    // A short answer deadline, so the message Bob's silent UA does not take is stored fast.
    let config = "[im]\nanswer_within_ms = 200\n[sip]\ntimer_t1_ms = 50\n";
    let spawn = || spawn_im_server(dir.path(), port, sip, config);
    let base = format!("http://127.0.0.1:{port}/xcap-root");
    let http = reqwest::Client::new();
    let mut server = spawn();
    wait_ready(&http, &base).await;
    put_im_rules(&http, &base, BOB, RULES).await;
    let mut alice = Ua::new(sip, ALICE).await;
    let mut bob = Ua::new(sip, BOB).await;
    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    assert_eq!(bob.request(&register).await.0.status(), Some(200));
    // Bob's UA stays silent: stored (202) while registered.
    let (r, _) = alice
        .request(&message(&alice, 1, BOB, "text/plain", "before the crash"))
        .await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    server.kill().unwrap();
    server.wait().unwrap();
    while bob.recv(Duration::from_millis(100)).await.is_some() {} // the old attempt's copies

    let mut server = spawn();
    wait_ready(&http, &base).await;
    // The stored one comes without a new REGISTER (the restored binding wakes its delivery).
    let m = loop {
        // Held for the cut attempt until Timer F (3.2 s here) and a margin lapsed.
        let m = bob
            .recv(Duration::from_secs(20))
            .await
            .expect("the stored message after the restart");
        if m.status().is_none() {
            bob.send(&answer_text(&m, 200)).await;
            break m;
        }
    };
    assert_eq!(m.body(), "before the crash");
    // And a new one is delivered live.
    let send = message(&alice, 2, BOB, "text/plain", "after the crash");
    let at_bob = async {
        loop {
            let m = bob.recv(Duration::from_secs(5)).await.expect("the MESSAGE");
            if m.status().is_none() && m.body() == "after the crash" {
                bob.send(&answer_text(&m, 200)).await;
                return;
            }
        }
    };
    let ((r, _), ()) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(200), "{}", r.text);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A delivery notice from Bob about the message `id` Alice sent him (RFC 5438 §7.2.1.1).
fn notice(id: &str) -> String {
    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>{id}</message-id><datetime>2026-12-07T10:00:00Z</datetime><delivery-notification><status><delivered/></status></delivery-notification></imdn>");
    format!("From: <{BOB}>\r\nTo: <{ALICE}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: n-{id}\r\nDateTime: 2026-12-07T10:00:01Z\r\n\r\nContent-Type: message/imdn+xml\r\nContent-Disposition: notification\r\nContent-Length: {}\r\n\r\n{xml}", xml.len())
}

// IM-20, IM-22, IM-23: Alice's own rules admit only Carol, yet Bob's delivery notice about the
// message she sent him (and asked notices for) reaches her, once; a second one, a notice about
// a message she never sent him, and a plain message from Bob meet her rules (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_a_sender_asked_for_pass_the_senders_rules() {
    let s = TestServer::start_with(|c| c.sip.timer_t1_ms = 50).await;
    s.put_im_rules(BOB, &allow_only(&[ALICE])).await;
    s.put_im_rules(ALICE, &allow_only(&["sip:carol@example.com"]))
        .await;
    let sip = s.running().sip_addr.unwrap();
    let (mut alice, _) = registered(sip, ALICE).await;
    let (mut bob, _) = registered(sip, BOB).await;

    let cpim = format!("From: <{ALICE}>\r\nTo: <{BOB}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: q7\r\nDateTime: 2026-12-07T10:00:00Z\r\nimdn.Disposition-Notification: positive-delivery\r\n\r\nContent-Type: text/plain\r\n\r\nlunch?");
    let send = message(&alice, 1, BOB, "message/cpim", &cpim);
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("the MESSAGE");
        bob.send(&answer_text(&m, 200)).await;
    };
    let ((r, _), ()) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(200), "{}", r.text);

    // The notice Alice asked for: delivered to her UA, Bob gets her UA's 200.
    let back = message(&bob, 1, ALICE, "message/cpim", &notice("q7"));
    let at_alice = async {
        let m = alice
            .recv(Duration::from_secs(5))
            .await
            .expect("the notice");
        alice.send(&answer_text(&m, 200)).await;
        m
    };
    let ((r, _), m) = tokio::join!(bob.request(&back), at_alice);
    assert_eq!(r.status(), Some(200), "{}", r.text);
    assert_eq!(m.body(), notice("q7"), "byte for byte");

    // Not asked for (another message; the same notice again, IM-23; a plain message):
    // Alice's rules apply.
    for (n, body, ct) in [
        (2, notice("other"), "message/cpim"),
        (3, notice("q7"), "message/cpim"),
        (4, "hello".to_string(), "text/plain"),
    ] {
        let (r, _) = bob.request(&message(&bob, n, ALICE, ct, &body)).await;
        assert_eq!(r.status(), Some(403), "{}", r.text);
    }
    assert!(alice.recv(Duration::from_millis(300)).await.is_none());
    s.stop().await;
}
