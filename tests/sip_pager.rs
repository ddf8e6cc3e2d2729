//! Pager-mode MESSAGE through the IM Server over real UDP sockets (issue #14 scopes 2–3;
//! RFC 3428; IM-01, IM-24…IM-26): Bob registers, his `im-rules` allow Alice and block Carol;
//! Alice's message reaches Bob's UA byte for byte (CPIM with unusual header case included) and
//! she gets 200 only because his UA answered 200; Carol gets 403; a sender no rule names gets
//! the operator default (block); an offline recipient 480; a large body 413.

mod common;
use common::sip_ua::*;
use common::*;
use std::time::Duration;

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
    let local = ua.local();
    format!(
        "MESSAGE {to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKm{port}x{n};rport\r\nMax-Forwards: 70\r\nFrom: <{from}>;tag=m{port}\r\nTo: <{to}>\r\nCall-ID: msg-{port}-{n}@127.0.0.1\r\nCSeq: {n} MESSAGE\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n{body}",
        port = local.port(),
        from = ua_user(ua),
        len = body.len(),
    )
}

fn ua_user(ua: &Ua) -> String {
    ua.user.clone()
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

    // Offline: no binding yet.
    let first = message(&alice, 1, BOB, "text/plain", "anyone there?");
    let (r, _) = alice.request(&first).await;
    assert_eq!(r.status(), Some(480), "{}", r.text);

    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    let (r, _) = bob.request(&register).await;
    assert_eq!(r.status(), Some(200));

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

    // A recipient UA that refuses: no 200 upstream (RFC 3428 §7: 200 only for a 2xx).
    let send = message(&alice, 3, BOB, "text/plain", "are you there?");
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("the MESSAGE");
        bob.send(&answer_text(&m, 486)).await;
    };
    let ((r, _), ()) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(480), "{}", r.text);

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
