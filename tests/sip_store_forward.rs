//! Store and forward with its rules and notices, over real UDP sockets (issue #14 scopes 3–5;
//! IM-15…IM-16, IM-18…IM-23, IM-27c): Alice writes to Bob while he is offline. A malformed
//! CPIM body gets 400 and is not stored; a stored message brings Alice the `stored` notice
//! she asked for (message/cpim wrapping imdn+xml); the same message again is kept once; Bob's
//! quota refuses the next with 480; Carol, whom Bob's rules deny offline storage, gets 480;
//! Alice asking for privacy is evaluated as anonymous (Bob's default: block). When Bob
//! registers, his UA refuses the first message (Alice is told `failed`) and takes the second.
//! His `deferred-list` document lists what waits for him and empties as it is delivered.

mod common;
use common::sip_ua::*;
use common::*;
use std::time::Duration;
use xcapd::storage::messages::Mailbox::Deferred;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";

const RULES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules" xmlns:oxe="urn:oma:xml:xdm:extensions">
  <cr:rule id="friends">
    <cr:conditions><cr:identity><cr:one id="sip:alice@example.com"/></cr:identity></cr:conditions>
    <cr:actions><im:im-handling>allow</im:im-handling></cr:actions>
  </cr:rule>
  <cr:rule id="live-only">
    <cr:conditions><cr:identity><cr:one id="sip:carol@example.com"/></cr:identity></cr:conditions>
    <cr:actions><im:im-handling>allow</im:im-handling><oxe:allow-offline-storage oxe:allow="false"/></cr:actions>
  </cr:rule>
</cr:ruleset>
"#;

/// A CPIM message from Alice to Bob with `imdn.Message-ID: id` asking for `dispositions`.
fn cpim(id: &str, dispositions: &str, text: &str) -> String {
    format!(
        "From: <{ALICE}>\r\nTo: <{BOB}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\nDateTime: 2026-12-07T10:00:00Z\r\nimdn.Disposition-Notification: {dispositions}\r\n\r\nContent-Type: text/plain;charset=utf-8\r\n\r\n{text}"
    )
}

/// The next MESSAGE at `ua` (answered 200), skipping responses.
async fn next_message(ua: &Ua, kept: &mut Vec<Msg>) -> Msg {
    let m = match kept.pop() {
        Some(m) => m,
        None => loop {
            let m = ua.recv(Duration::from_secs(5)).await.expect("a MESSAGE");
            if m.status().is_none() {
                break m;
            }
        },
    };
    ua.send(&answer_text(&m, 200)).await;
    m
}

/// Asserts `m` is an IMDN about `id` reporting `status` (RFC 5438 §7; IM-20).
fn assert_notice(m: &Msg, id: &str, status: &str) {
    assert!(m.text.starts_with("MESSAGE sip:alice@"), "{}", m.text);
    assert_eq!(m.header("Content-Type"), Some("message/cpim"));
    let body = m.body();
    assert!(body.contains("Content-Disposition: notification"), "{body}");
    assert!(body.contains("message/imdn+xml"), "{body}");
    assert!(
        body.contains(&format!("<message-id>{id}</message-id>")),
        "{body}"
    );
    assert!(body.contains(&format!("<{status}/>")), "{body}");
    assert!(body.contains(&format!("To: <{ALICE}>")), "{body}");
}

/// The item ids of Bob's deferred-list document once it lists `want` items (IM-15a; it is
/// written shortly after the store changes), and the ids of his stored messages.
async fn bob_list(s: &TestServer, want: usize) -> (Vec<String>, Vec<String>) {
    let doc = format!("org.openmobilealliance.deferred-list/users/{BOB}/deferred-list");
    let mut ids = Vec::new();
    for _ in 0..100 {
        let r = s.get(&doc).await;
        // Written shortly after the store changes: not there yet right after the first one.
        assert!(r.status == 200 || r.status == 404, "{}", r.body);
        ids = r
            .body
            .split("<history id=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
            .collect();
        if ids.len() == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = s
        .running()
        .messages
        .list(Deferred, BOB.into(), 0, 100)
        .await;
    let stored = stored
        .unwrap()
        .iter()
        .map(|m| format!("d-{}", m.id))
        .collect();
    (ids, stored)
}

/// GET (or DELETE) on the admin API with the token: the JSON answer.
async fn admin(s: &TestServer, method: reqwest::Method, path: &str) -> serde_json::Value {
    let url = format!("{}{path}", s.admin.as_ref().unwrap());
    let r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn waiting_for_bob(s: &TestServer) -> usize {
    let stored = s
        .running()
        .messages
        .list(Deferred, BOB.into(), 0, 100)
        .await;
    stored.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_rules_quota_duplicates_and_notices() {
    let s = TestServer::start_with(|c| {
        c.sip.timer_t1_ms = 50;
        c.im.deferred_max_messages = 2;
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
    let alice_contact = format!("sip:alice@{}", alice.local());
    let register = alice.register(&[&alice_contact], Some(600), "");
    assert_eq!(alice.request(&register).await.0.status(), Some(200));

    // IM-02: a CPIM body that does not parse is refused with the reason, not stored.
    let bad =
        "From: <sip:alice@example.com>\r\nno colon here\r\n\r\nContent-Type: text/plain\r\n\r\nx";
    let (r, _) = alice
        .request(&alice.message(1, BOB, "message/cpim", "", bad))
        .await;
    assert_eq!(r.status(), Some(400), "{}", r.text);
    assert!(r.text.contains("CPIM"), "{}", r.text);
    assert_eq!(waiting_for_bob(&s).await, 0);

    // IM-15, IM-15b: stored (202) and Alice is told `stored` because she asked.
    let first = cpim("m-1", "processing, negative-delivery", "first");
    let send = alice.message(2, BOB, "message/cpim", "", &first);
    let (r, mut kept) = alice.request(&send).await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    let notice = next_message(&alice, &mut kept).await;
    assert_notice(&notice, "m-1", "stored");

    // The same sender and Message-ID again (a client's retry with a new Call-ID): kept once,
    // and no second notice.
    let again = alice.message(3, BOB, "message/cpim", "", &first);
    let (r, kept) = alice.request(&again).await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    assert!(kept.is_empty());
    assert_eq!(waiting_for_bob(&s).await, 1);

    // No notice asked for: none sent.
    let second = cpim("m-2", "positive-delivery", "second");
    let (r, _) = alice
        .request(&alice.message(4, BOB, "message/cpim", "", &second))
        .await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    assert!(alice.recv(Duration::from_millis(300)).await.is_none());

    // Bob's quota (2 messages) is used up: 480 with the reason, nothing more stored.
    let third = cpim("m-3", "processing", "third");
    let (r, _) = alice
        .request(&alice.message(5, BOB, "message/cpim", "", &third))
        .await;
    assert_eq!(r.status(), Some(480), "{}", r.text);
    assert!(r.text.contains("limit"), "{}", r.text);
    assert_eq!(waiting_for_bob(&s).await, 2);
    // IM-15a: Bob's deferred-list document lists exactly what waits.
    let (listed, stored) = bob_list(&s, 2).await;
    assert_eq!(listed, stored);
    // Scope 9: the operator sees the same through the admin API.
    let waiting = admin(
        &s,
        reqwest::Method::GET,
        &format!("/im/deferred?user={BOB}"),
    )
    .await;
    let ids: Vec<String> = waiting
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("d-{}", m["id"]))
        .collect();
    assert_eq!(ids, stored);
    assert_eq!(waiting[0]["sender"], ALICE);
    assert_eq!(waiting[0]["content_type"], "message/cpim");

    // IM-15c: Bob's rules deny Carol offline storage.
    let mut carol = Ua::new(sip, CAROL).await;
    let (r, _) = carol
        .request(&carol.message(1, BOB, "text/plain", "", "hi"))
        .await;
    assert_eq!(r.status(), Some(480), "{}", r.text);
    assert!(r.text.contains("offline storage"), "{}", r.text);

    // IM-27c: with Privacy: id Alice is anonymous to Bob's rules (default block).
    let (r, _) = alice
        .request(&alice.message(6, BOB, "text/plain", "Privacy: id\r\n", "guess who"))
        .await;
    assert_eq!(r.status(), Some(403), "{}", r.text);

    // IM-16: Bob registers; his UA refuses the first (Alice hears `failed`, IM-22) and takes
    // the second, in order.
    let mut bob = Ua::new(sip, BOB).await;
    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    bob.send(&register).await;
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let m = bob
            .recv(Duration::from_secs(5))
            .await
            .expect("Bob's messages");
        if m.status().is_some() {
            continue;
        }
        let code = if bodies.is_empty() { 415 } else { 200 };
        bob.send(&answer_text(&m, code)).await;
        bodies.push(m.body().to_string());
    }
    assert_eq!(bodies, [first, second]);
    let notice = next_message(&alice, &mut Vec::new()).await;
    assert_notice(&notice, "m-1", "failed");
    for _ in 0..40 {
        if waiting_for_bob(&s).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting_for_bob(&s).await, 0);
    // IM-16: delivered entries leave the document.
    let (listed, _) = bob_list(&s, 0).await;
    assert!(listed.is_empty(), "{listed:?}");
    let bindings = admin(
        &s,
        reqwest::Method::GET,
        &format!("/im/registrations?user={BOB}"),
    )
    .await;
    assert_eq!(bindings[0]["contact"], contact.as_str());

    // Scope 8: one charging record per outcome, in order: 400, stored, (duplicate: none),
    // stored, 480 quota, Carol's 480, the anonymous 403, then the two deliveries.
    let today = &xcapd::xdms::generated::rfc3339(xcapd::storage::now_ms())[..10];
    let records = admin(
        &s,
        reqwest::Method::GET,
        &format!("/im/charging?day={today}"),
    )
    .await;
    let outcomes: Vec<(String, String, u64)> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["recipient"] == BOB)
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["code"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("message", "failed", 400),
        ("message", "stored", 202),
        ("message", "stored", 202),
        ("message", "failed", 480),
        ("message", "failed", 480),
        ("message", "blocked", 403),
        ("deferred-delivery", "failed", 415),
        ("deferred-delivery", "delivered", 200),
    ];
    let expected: Vec<(String, String, u64)> = expected
        .iter()
        .map(|(e, o, c)| (e.to_string(), o.to_string(), *c))
        .collect();
    assert_eq!(outcomes, expected);
    let first = &records["records"][1];
    assert_eq!(first["message_id"], "m-1");
    assert_eq!(
        first["imdn_requested"],
        serde_json::json!(["negative-delivery", "processing"])
    );
    assert_eq!(first["sender"], ALICE);

    // Scope 9: the same outcomes counted in the metrics (Carol's 480 included).
    let metrics = common::admin_metrics(
        &reqwest::Client::new(),
        s.admin.as_ref().unwrap(),
        ADMIN_TOKEN,
    )
    .await;
    for line in [
        "xcapd_im_messages_total{outcome=\"stored\"} 2",
        "xcapd_im_messages_total{outcome=\"failed\"} 3",
        "xcapd_im_messages_total{outcome=\"blocked\"} 1",
        "xcapd_im_deferred_total{outcome=\"delivered\"} 1",
        "xcapd_im_deferred_total{outcome=\"failed\"} 1",
        "xcapd_im_deferred 0",
        "xcapd_im_delivery_seconds_count{mode=\"deferred\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    // An operator's purge: gone, listed nowhere, never delivered.
    let unregister = bob.register(&[&contact], Some(0), "");
    let (r, _) = bob.request(&unregister).await;
    assert_eq!(r.status(), Some(200), "{}", r.text);
    let (r, _) = alice
        .request(&alice.message(7, BOB, "text/plain", "", "to be purged"))
        .await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    let _ = bob_list(&s, 1).await;
    let purged = admin(
        &s,
        reqwest::Method::DELETE,
        &format!("/im/deferred?user={BOB}"),
    )
    .await;
    assert_eq!(purged["purged"], 1);
    assert_eq!(waiting_for_bob(&s).await, 0);
    let (listed, _) = bob_list(&s, 0).await;
    assert!(listed.is_empty(), "{listed:?}");
    s.stop().await;
}

// IX-04 (the owner may delete), IM-22: Bob discards one stored message by deleting its item
// from his deferred-list document (an XCAP element DELETE), and then all of them with the
// document; the sender who asked hears `failed`; messages he did not delete stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_discards_stored_messages_through_the_deferred_list() {
    let s = TestServer::start_with(|c| c.sip.timer_t1_ms = 50).await;
    s.put_im_rules(BOB, RULES).await;
    let sip = s.running().sip_addr.unwrap();
    let (mut alice, _) = registered(sip, ALICE).await;
    let first = cpim("x-1", "negative-delivery", "unwanted");
    for (n, body) in [(1, first.as_str()), (2, "keep me"), (3, "keep me too")] {
        let (ct, b) = if n == 1 {
            ("message/cpim", body.to_string())
        } else {
            ("text/plain", body.to_string())
        };
        let (r, _) = alice.request(&alice.message(n, BOB, ct, "", &b)).await;
        assert_eq!(r.status(), Some(202), "{}", r.text);
    }
    let (listed, stored) = bob_list(&s, 3).await;
    assert_eq!(listed, stored);
    let doc = format!("org.openmobilealliance.deferred-list/users/{BOB}/deferred-list");
    let item = format!("{doc}/~~/history-list/history%5b@id=%22{}%22%5d", stored[0]);
    let r = reqwest::Client::new()
        .delete(s.url(&item))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let notice = next_message(&alice, &mut Vec::new()).await;
    assert_notice(&notice, "x-1", "failed");
    let (listed, stored) = bob_list(&s, 2).await;
    assert_eq!(listed, stored);
    assert_eq!(waiting_for_bob(&s).await, 2, "the other two stay");

    let r = reqwest::Client::new()
        .delete(s.url(&doc))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for _ in 0..100 {
        if waiting_for_bob(&s).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiting_for_bob(&s).await, 0, "gone with the document");
    s.stop().await;
}
