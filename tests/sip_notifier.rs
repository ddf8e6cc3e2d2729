//! The xcap-diff notifier over real UDP sockets on port 0 (RFC 5875, RFC 5874, RFC 6665):
//! SUBSCRIBE answers, the initial state, change NOTIFYs from real XCAP writes with chained
//! ETags and exact patches, coalescing, unsubscription, failures, authentication, restart.

mod common;
use common::sip_ua::{answer_text, digest_authorization, read_message, resource_lists, Msg, Ua};
use common::*;
use std::time::Duration;

const ALICE: &str = "sip:alice@example.com";
const DOC: &str = "resource-lists/users/sip:alice@example.com/index";
const LIST: &str = "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22friends%22%5D";
const WAIT: Duration = Duration::from_secs(5);

async fn server(interval_ms: u64) -> TestServer {
    TestServer::start_with(|c| {
        c.sip.notify_interval_ms = interval_ms;
        c.sip.timer_t1_ms = 50;
    })
    .await
}

fn attr<'a>(text: &'a str, element_start: &str, name: &str) -> Option<&'a str> {
    let i = text.find(element_start)?;
    let rest = &text[i..];
    let end = rest.find('>')?;
    let tag = &rest[..end];
    let j = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[j..].split('"').next()
}

/// Alice's buddy list with `entries` (development mode: over HTTP).
async fn put_doc(s: &TestServer, entries: &[&str]) -> Resp {
    s.put(DOC, "application/resource-lists+xml", buddy_list(entries))
        .await
}

/// Subscribes and returns the 2xx and the initial NOTIFY (answered 200).
async fn subscribe(ua: &mut Ua, event: &str, uris: &[&str]) -> (Msg, Msg) {
    ua.subscribed(event, "", uris).await
}

// XE-01, XE-08, XE-10, XE-11, XE-13, XD-05a/d/e, XD-14: 200 with the duration and a dialog;
// the first NOTIFY lists the existing document with its ETag; element edits arrive as chained
// patches, the deletion as previous-etag only.
#[tokio::test]
async fn xe10_initial_state_then_chained_patches() {
    let s = server(0).await;
    let r = s
        .put(
            DOC,
            "application/resource-lists+xml",
            buddy_list(&["sip:bob@example.com"]),
        )
        .await;
    let e0 = r.etag().trim_matches('"').to_string();
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    let (resp, first) = subscribe(&mut ua, "xcap-diff;diff-processing=xcap-patching", &[DOC]).await;
    assert_eq!(resp.status(), Some(200), "{}", resp.text);
    assert_eq!(resp.header("Expires"), Some("600"));
    assert!(resp.header("Contact").is_some());
    assert!(resp.tag("To").is_some());
    assert!(resp.header("Allow-Events").unwrap().contains("xcap-diff"));
    assert_eq!(first.header("Event"), Some("xcap-diff"));
    assert!(first
        .header("Subscription-State")
        .unwrap()
        .starts_with("active;expires="));
    assert_eq!(
        first.header("Content-Type"),
        Some("application/xcap-diff+xml")
    );
    assert_eq!(first.tag("From"), resp.tag("To"), "the dialog's tags");
    let body = first.body();
    assert_eq!(
        attr(body, "<d:document", "sel"),
        Some(DOC),
        "XE-11: sel as subscribed"
    );
    assert_eq!(attr(body, "<d:document", "new-etag"), Some(e0.as_str()));
    assert_eq!(attr(body, "<d:document", "previous-etag"), None);

    let r = s
        .put(
            &format!("{DOC}/~~/resource-lists/list/entry%5B@uri=%22sip:carol@example.com%22%5D"),
            "application/xcap-el+xml",
            "<entry uri=\"sip:carol@example.com\"/>",
        )
        .await;
    assert_eq!(r.status, 201);
    let e1 = r.etag().trim_matches('"').to_string();
    let n = ua.next_notify(WAIT).await.expect("a NOTIFY for the edit");
    ua.answer(&n, 200).await;
    let body = n.body();
    assert_eq!(
        attr(body, "<d:document", "previous-etag"),
        Some(e0.as_str())
    );
    assert_eq!(attr(body, "<d:document", "new-etag"), Some(e1.as_str()));
    assert!(body.contains("<d:add"), "XD-05a: a patch\n{body}");
    assert!(body.contains("sip:carol@example.com"), "{body}");

    let r = s.delete(DOC).await;
    assert_eq!(r.status, 200);
    let n = ua
        .next_notify(WAIT)
        .await
        .expect("a NOTIFY for the deletion");
    ua.answer(&n, 200).await;
    let body = n.body();
    assert_eq!(
        attr(body, "<d:document", "previous-etag"),
        Some(e1.as_str())
    );
    assert_eq!(
        attr(body, "<d:document", "new-etag"),
        None,
        "XD-05e\n{body}"
    );
    s.stop().await;
}

// XE-18, XE-13, XD-14: with a notify interval, the first change goes out at once and the
// next ones are coalesced into one chained report (no-patching: fetch form, XE-07).
#[tokio::test]
async fn xe18_changes_coalesced_within_the_interval() {
    let s = server(800).await;
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    let (_, first) = subscribe(
        &mut ua,
        "xcap-diff",
        &["resource-lists/users/sip:alice@example.com/"],
    )
    .await;
    assert!(
        !first.body().contains("<d:document"),
        "XE-10: nothing exists yet"
    );
    let e1 = s
        .put(
            DOC,
            "application/resource-lists+xml",
            buddy_list(&["sip:a@x"]),
        )
        .await
        .etag()
        .trim_matches('"')
        .to_string();
    let n1 = ua
        .next_notify(WAIT)
        .await
        .expect("the first change at once");
    ua.answer(&n1, 200).await;
    assert_eq!(
        attr(n1.body(), "<d:document", "new-etag"),
        Some(e1.as_str()),
        "XD-05d"
    );
    let e2 = s
        .put(
            DOC,
            "application/resource-lists+xml",
            buddy_list(&["sip:b@x"]),
        )
        .await
        .etag()
        .trim_matches('"')
        .to_string();
    let e3 = s
        .put(
            DOC,
            "application/resource-lists+xml",
            buddy_list(&["sip:c@x"]),
        )
        .await
        .etag()
        .trim_matches('"')
        .to_string();
    let n2 = ua.next_notify(WAIT).await.expect("the coalesced NOTIFY");
    ua.answer(&n2, 200).await;
    let body = n2.body();
    assert_eq!(body.matches("<d:document").count(), 1, "{body}");
    assert_eq!(
        attr(body, "<d:document", "previous-etag"),
        Some(e1.as_str())
    );
    assert_eq!(attr(body, "<d:document", "new-etag"), Some(e3.as_str()));
    assert!(
        !body.contains("<d:add") && !body.contains("<d:replace"),
        "XE-07: no patch"
    );
    assert_ne!(e2, e3);
    assert!(
        ua.next_notify(Duration::from_millis(1200)).await.is_none(),
        "nothing else"
    );
    s.stop().await;
}

// XE-10, XE-14, XD-11: a component's content at first, its new content after a change, and
// exists="false" once its ancestor is gone.
#[tokio::test]
async fn xe14_component_reports() {
    let s = server(0).await;
    put_doc(&s, &["sip:bob@example.com"]).await;
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    let (_, first) = subscribe(&mut ua, "xcap-diff", &[LIST]).await;
    let body = first.body();
    assert_eq!(attr(body, "<d:element", "sel"), Some(LIST), "{body}");
    assert!(body.contains("sip:bob@example.com"), "{body}");
    assert!(!body.contains("<d:document"), "a component only: {body}");
    put_doc(&s, &["sip:dave@example.com"]).await;
    let n = ua.next_notify(WAIT).await.expect("the component changed");
    ua.answer(&n, 200).await;
    assert!(n.body().contains("sip:dave@example.com"), "{}", n.body());
    s.delete(DOC).await;
    let n = ua.next_notify(WAIT).await.expect("the component is gone");
    ua.answer(&n, 200).await;
    assert!(n.body().contains("exists=\"false\""), "{}", n.body());
    s.stop().await;
}

// XD-15, XE-10a, XE-20: what the subscriber may not read is left out; nothing readable is 403.
#[tokio::test]
async fn xd15_unreadable_entries() {
    let s = server(0).await;
    let bob_doc = "resource-lists/users/sip:bob@example.com/index";
    put_doc(&s, &["sip:x@x"]).await;
    s.put(
        bob_doc,
        "application/resource-lists+xml",
        buddy_list(&["sip:y@x"]),
    )
    .await;
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    let req = ua.subscribe("xcap-diff", Some(600), "", &resource_lists(&[bob_doc]));
    let (resp, _) = ua.request(&req).await;
    assert_eq!(resp.status(), Some(403), "{}", resp.text);
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    let (resp, first) = subscribe(&mut ua, "xcap-diff", &[bob_doc, DOC]).await;
    assert_eq!(resp.status(), Some(200));
    assert!(first.body().contains(DOC));
    assert!(!first.body().contains("sip:bob"), "{}", first.body());
    // Bob's later changes never reach Alice.
    s.put(
        bob_doc,
        "application/resource-lists+xml",
        buddy_list(&["sip:z@x"]),
    )
    .await;
    assert!(ua.next_notify(Duration::from_millis(500)).await.is_none());
    s.stop().await;
}

// XE-05, XE-08, XE-20, RFC 6665 §4.2.1.1 / §4.2.1.2: 406, 423 with Min-Expires, 400 without
// a body, 481 for an unknown dialog; XE-16, XE-23: a refresh gets the full state again,
// Expires: 0 a final NOTIFY with terminated.
#[tokio::test]
async fn xe23_refusals_refresh_and_unsubscribe() {
    let s = server(0).await;
    put_doc(&s, &["sip:x@x"]).await;
    let sip = s.running().sip_addr.unwrap();
    let mut ua = Ua::new(sip, ALICE).await;
    let body = resource_lists(&[DOC]);
    let req = ua.subscribe("xcap-diff", Some(600), "Accept: text/plain\r\n", &body);
    assert_eq!(ua.request(&req).await.0.status(), Some(406));
    let req = ua.subscribe("xcap-diff", Some(5), "", &body);
    let (r, _) = ua.request(&req).await;
    assert_eq!(r.status(), Some(423));
    assert_eq!(r.header("Min-Expires"), Some("60"));
    let req = ua.subscribe("xcap-diff", Some(600), "", "");
    assert_eq!(ua.request(&req).await.0.status(), Some(400));
    ua.to_tag = Some("nosuchdialog".into());
    let req = ua.subscribe("xcap-diff", Some(600), "", &body);
    assert_eq!(ua.request(&req).await.0.status(), Some(481));
    ua.to_tag = None;

    let (resp, _) = subscribe(&mut ua, "xcap-diff", &[DOC]).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(s.running().notifier.as_ref().unwrap().subscriptions(), 1);
    let req = ua.subscribe("xcap-diff", Some(900), "", "");
    let (r, early) = ua.request(&req).await;
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.header("Expires"), Some("900"));
    let n = ua.notify_after(early).await;
    ua.answer(&n, 200).await;
    assert!(n.body().contains("new-etag"), "XE-16: full state again");
    let req = ua.subscribe("xcap-diff", Some(0), "", "");
    let (r, early) = ua.request(&req).await;
    assert_eq!(r.status(), Some(200));
    let n = ua.notify_after(early).await;
    ua.answer(&n, 200).await;
    assert_eq!(
        n.header("Subscription-State"),
        Some("terminated;reason=timeout")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.running().notifier.as_ref().unwrap().subscriptions(), 0);
    s.stop().await;
}

// XE-17, RFC 6665 §4.2.2: a NOTIFY answered 481, or never answered, removes the subscription.
#[tokio::test]
async fn xe17_failed_notify_removes_the_subscription() {
    let s = server(0).await;
    let sip = s.running().sip_addr.unwrap();
    let notifier = s.running().notifier.clone().unwrap();
    let mut gone = Ua::new(sip, ALICE).await;
    let req = gone.subscribe("xcap-diff", Some(600), "", &resource_lists(&[DOC]));
    let (resp, early) = gone.request(&req).await;
    assert_eq!(resp.status(), Some(200));
    let n = gone.notify_after(early).await;
    gone.answer(&n, 481).await;
    let mut silent = Ua::new(sip, ALICE).await;
    let req = silent.subscribe("xcap-diff", Some(600), "", &resource_lists(&[DOC]));
    assert_eq!(silent.request(&req).await.0.status(), Some(200));
    // Timer F is 64 × T1 = 3.2 s here; the NOTIFY is never answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while notifier.subscriptions() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(notifier.subscriptions(), 0);
    assert!(
        s.running().subscriptions.all().await.unwrap().is_empty(),
        "removed from the store"
    );
    s.stop().await;
}

// Issue #13 scope 2, XE-20: with authentication on, a SUBSCRIBE gets a Digest challenge and
// no state; the answer with the user's password is accepted; a P-Asserted-Identity counts
// from a trusted peer only.
#[tokio::test]
async fn scope2_digest_and_asserted_identity() {
    for trusted in [false, true] {
        let s = auth_server(trusted, "alice-pw").await;
        let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
        let body = resource_lists(&[DOC]);
        let pai = "P-Asserted-Identity: <sip:alice@example.com>\r\n";
        let req = ua.subscribe("xcap-diff", Some(600), pai, &body);
        let (r, _) = ua.request(&req).await;
        if trusted {
            assert_eq!(r.status(), Some(200), "{}", r.text);
            s.stop().await;
            continue;
        }
        assert_eq!(
            r.status(),
            Some(401),
            "PAI from an untrusted peer is ignored"
        );
        let auth = digest_authorization(
            &r.headers("WWW-Authenticate"),
            "alice",
            "alice-pw",
            "SUBSCRIBE",
            ALICE,
        );
        let req = ua.subscribe("xcap-diff", Some(600), &auth, &body);
        let (r, _) = ua.request(&req).await;
        assert_eq!(r.status(), Some(200), "{}", r.text);
        s.stop().await;
    }
}

// Issue #13 scope 9: operators see the stored subscriptions in the admin API, per user; the
// metrics count them and the NOTIFYs.
#[tokio::test]
async fn scope9_admin_lists_subscriptions() {
    let s = server(0).await;
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    subscribe(&mut ua, "xcap-diff", &[DOC]).await;
    let admin = s.admin.clone().unwrap();
    let get = |q: &'static str| {
        s.client
            .get(format!("{admin}/subscriptions{q}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let list = |q: &'static str| async move {
        let text = get(q).await.unwrap().text().await.unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let all = list("").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["call_id"], ua.call_id.as_str());
    assert_eq!(all[0]["subscriber"], ALICE);
    assert_eq!(all[0]["resources"][0], DOC);
    let alice = list("?user=alice").await;
    assert_eq!(alice.as_array().unwrap().len(), 1, "{alice}");
    let bob = list("?user=sip:bob@example.com").await;
    assert!(bob.as_array().unwrap().is_empty());
    assert_eq!(get("?who=x").await.unwrap().status().as_u16(), 400);
    let metrics = common::admin_metrics(&s.client, &admin, ADMIN_TOKEN).await;
    assert!(metrics.contains("xcapd_sip_subscriptions 1"), "{metrics}");
    assert!(
        metrics.contains("xcapd_sip_notify_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    s.stop().await;
}

// RFC 3261 §12.2.2: a refresh with a CSeq not above the last one is 500; RFC 6665 §8.2.1: the
// Event `id` is echoed in NOTIFYs and must match on refresh (481 otherwise); the per-user cap
// refuses further subscriptions with 503.
#[tokio::test]
async fn refresh_order_event_id_and_caps() {
    let s = TestServer::start_with(|c| {
        c.sip.notify_interval_ms = 0;
        c.sip.max_subscriptions_per_user = 1;
    })
    .await;
    let sip = s.running().sip_addr.unwrap();
    let mut ua = Ua::new(sip, ALICE).await;
    let (resp, first) = subscribe(&mut ua, "xcap-diff;id=5", &[DOC]).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(first.header("Event"), Some("xcap-diff;id=5"));
    // Same CSeq again (after a new branch): out of order.
    ua.cseq -= 1;
    let req = ua.subscribe("xcap-diff;id=5", Some(600), "", "");
    assert_eq!(ua.request(&req).await.0.status(), Some(500));
    let req = ua.subscribe("xcap-diff;id=6", Some(600), "", "");
    assert_eq!(ua.request(&req).await.0.status(), Some(481), "another id");
    let mut other = Ua::new(sip, ALICE).await;
    let req = other.subscribe("xcap-diff", Some(600), "", &resource_lists(&[DOC]));
    let (r, _) = other.request(&req).await;
    assert_eq!(r.status(), Some(503), "{}", r.text);
    assert!(r.header("Retry-After").is_some());
    s.stop().await;
}

/// Subscribes to Alice's list over a new TCP connection with Contact `<{contact};transport=tcp>`;
/// the connection, its read buffer, and the 200 and the initial NOTIFY read from it.
async fn tcp_subscribe(
    sip: std::net::SocketAddr,
    n: &str,
    contact: &str,
) -> (tokio::net::TcpStream, Vec<u8>, Vec<String>) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(sip).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let body = resource_lists(&[DOC]);
    let subscribe = format!(
        "SUBSCRIBE {ALICE} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp{n}\r\nMax-Forwards: 70\r\nFrom: <{ALICE}>;tag=t{n}\r\nTo: <{ALICE}>\r\nCall-ID: tcp-{n}@x\r\nCSeq: 1 SUBSCRIBE\r\nContact: <{contact};transport=tcp>\r\nEvent: xcap-diff\r\nContent-Type: application/resource-lists+xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(subscribe.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(read_message(&mut tcp, &mut buf).await.expect("a message"));
    }
    assert!(got[0].starts_with("SIP/2.0 200"), "{}", got[0]);
    (tcp, buf, got)
}

/// A 200 to a NOTIFY received as text from `sip`.
fn answer_on(sip: std::net::SocketAddr, notify: &str) -> String {
    let m = Msg {
        text: notify.to_string(),
        from: sip,
    };
    answer_text(&m, 200)
}

// RFC 3261 §18, RFC 5923 / RFC 5626 flow reuse: a subscriber on TCP gets its 200 and every
// NOTIFY on its own connection (behind NAT its Contact is unreachable), and answers them there.
#[tokio::test]
async fn notifies_over_the_subscribers_tcp_connection() {
    use tokio::io::AsyncWriteExt;
    let s = server(0).await;
    put_doc(&s, &["sip:x@x"]).await;
    let sip = s.running().sip_addr.unwrap();
    let (mut tcp, mut buf, got) = tcp_subscribe(sip, "1", "sip:ua@192.0.2.1:5999").await;
    assert!(got[1].starts_with("NOTIFY "), "{}", got[1]);
    assert!(got[1].contains("Via: SIP/2.0/TCP "), "{}", got[1]);
    let answer = |notify: &str| answer_on(sip, notify);
    tcp.write_all(answer(&got[1]).as_bytes()).await.unwrap();
    put_doc(&s, &["sip:y@x"]).await;
    let n = read_message(&mut tcp, &mut buf)
        .await
        .expect("the change NOTIFY");
    assert!(
        n.starts_with("NOTIFY ") && n.contains("previous-etag"),
        "{n}"
    );
    tcp.write_all(answer(&n).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.running().notifier.as_ref().unwrap().subscriptions(),
        1,
        "the answer on the connection counts"
    );
    s.stop().await;
}

// RFC 5839, XE-16: NOTIFYs carry SIP-ETag; a refresh whose Suppress-If-Match names the state
// the subscriber holds gets 204 and no NOTIFY; once a change was reported the old tag no longer
// matches, and that refresh gets 200 and the full state again.
#[tokio::test]
async fn xe16_conditional_refresh() {
    let s = server(0).await;
    put_doc(&s, &["sip:x@x"]).await;
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    let (_, first) = subscribe(&mut ua, "xcap-diff", &[DOC]).await;
    let tag = first.header("SIP-ETag").expect("SIP-ETag").to_string();
    let held = format!("Suppress-If-Match: {tag}\r\n");
    let req = ua.subscribe("xcap-diff", Some(600), &held, "");
    let (r, early) = ua.request(&req).await;
    assert_eq!(r.status(), Some(204), "{}", r.text);
    assert!(early.is_empty());
    assert!(ua.next_notify(Duration::from_millis(500)).await.is_none());
    put_doc(&s, &["sip:y@x"]).await;
    let n = ua.next_notify(WAIT).await.expect("the change");
    ua.answer(&n, 200).await;
    let changed = n.header("SIP-ETag").unwrap().to_string();
    assert_ne!(changed, tag);
    let req = ua.subscribe("xcap-diff", Some(600), &held, "");
    let (r, early) = ua.request(&req).await;
    assert_eq!(r.status(), Some(200));
    let full = ua.notify_after(early).await;
    ua.answer(&full, 200).await;
    assert!(full.body().contains("new-etag"), "{}", full.text);
    assert_eq!(
        full.header("SIP-ETag"),
        Some(changed.as_str()),
        "same state"
    );
    s.stop().await;
}

// RFC 6665 §4.2.2 with a refresh in between: a NOTIFY answered 481 ends the subscription, but a
// refresh the notifier accepted (200) while that NOTIFY was out shows the subscriber is there:
// it gets the full state and the subscription goes on, never a 200 followed by silence.
#[tokio::test]
async fn a_refresh_during_a_failing_notify_keeps_the_subscription() {
    let s = server(0).await;
    put_doc(&s, &["sip:x@x"]).await;
    let mut ua = Ua::new(s.running().sip_addr.unwrap(), ALICE).await;
    subscribe(&mut ua, "xcap-diff", &[DOC]).await;
    put_doc(&s, &["sip:y@x"]).await;
    let change = ua.next_notify(WAIT).await.expect("the change");
    // Refresh first (answered 200 while the NOTIFY is out), then refuse the NOTIFY.
    let req = ua.subscribe("xcap-diff", Some(600), "", "");
    let (r, early) = ua.request(&req).await;
    assert_eq!(r.status(), Some(200));
    assert!(early.is_empty());
    ua.answer(&change, 481).await;
    let full = ua
        .next_notify(WAIT)
        .await
        .expect("the full state for the refresh");
    ua.answer(&full, 200).await;
    assert!(full.body().contains("new-etag"), "{}", full.text);
    assert!(!full.body().contains("previous-etag"), "{}", full.text);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.running().notifier.as_ref().unwrap().subscriptions(), 1);
    s.stop().await;
}

// Issue #13 scope 4, XD-15: a `service` user (the IM Server) may watch any user's documents,
// exactly as it may read them over HTTP; a plain user may not (403).
#[tokio::test]
async fn scope4_service_principals_watch_any_user() {
    use xcapd::storage::credentials::{make_credential, Role};
    let s = TestServer::start_with(|c| {
        c.server.auth = xcapd::config::AuthMode::Required;
        c.sip.trusted_peers = vec!["127.0.0.1/32".into()];
        c.sip.notify_interval_ms = 0;
    })
    .await;
    let creds = &s.running().credentials;
    for (xui, role) in [
        ("sip:im-server@example.com", Role::Service),
        ("sip:bob@example.com", Role::User),
    ] {
        creds
            .put_user(&make_credential(xui, "example.com", "pw", vec![role], 0))
            .await
            .unwrap();
    }
    assert_eq!(s.put_as(ALICE, DOC, buddy_list(&["sip:x@x"])).await, 201);
    let sip = s.running().sip_addr.unwrap();
    for (who, expected) in [
        ("sip:im-server@example.com", 200),
        ("sip:bob@example.com", 403),
    ] {
        let mut ua = Ua::new(sip, who).await;
        let pai = format!("P-Asserted-Identity: <{who}>\r\n");
        let req = ua.subscribe("xcap-diff", Some(600), &pai, &resource_lists(&[DOC]));
        let (resp, early) = ua.request(&req).await;
        assert_eq!(resp.status(), Some(expected), "{who}: {}", resp.text);
        if expected == 200 {
            let n = ua.notify_after(early).await;
            ua.answer(&n, 200).await;
            assert!(n.body().contains(DOC), "{}", n.text);
        }
    }
    s.stop().await;
}

// XE-23, XE-18, RFC 6665 §4.2.2: a subscription that is not refreshed ends at its expiry with
// a final NOTIFY `terminated;reason=timeout`, which carries the change still held back by the
// notify interval; the subscription is then gone.
#[tokio::test]
async fn xe23_expiry_ends_with_the_held_back_change() {
    let s = TestServer::start_with(|c| {
        c.sip.notify_interval_ms = 60_000;
        c.sip.timer_t1_ms = 50;
        c.sip.subscription_min_secs = 1;
    })
    .await;
    put_doc(&s, &["sip:x@x"]).await;
    let sip = s.running().sip_addr.unwrap();
    let mut ua = Ua::new(sip, ALICE).await;
    let req = ua.subscribe("xcap-diff", Some(2), "", &resource_lists(&[DOC]));
    let (resp, early) = ua.request(&req).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.header("Expires"), Some("2"));
    let initial = ua.notify_after(early).await;
    ua.answer(&initial, 200).await;
    assert!(initial
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));
    // Within the interval: held back until the end.
    let changed = put_doc(&s, &["sip:x@x", "sip:y@y"]).await;
    let new_etag = changed.etag();
    let last = ua.next_notify(WAIT).await.expect("the final NOTIFY");
    ua.answer(&last, 200).await;
    assert_eq!(
        last.header("Subscription-State"),
        Some("terminated;reason=timeout")
    );
    assert_eq!(
        attr(last.body(), "<d:document", "new-etag"),
        Some(new_etag.trim_matches('"'))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.running().notifier.as_ref().unwrap().subscriptions(), 0);
    assert!(ua.next_notify(Duration::from_millis(300)).await.is_none());
    s.stop().await;
}

// XE-02b, XD-14, issue #13 scope 7 (changes from every writer, generated documents too): the
// user's xcap-directory is built by the server, never written; a subscription to it gets its
// ETag first, then a chained report whenever one of the user's documents changes, with the
// ETag an HTTP GET returns.
#[tokio::test]
async fn generated_xcap_directory_is_reported_when_a_document_changes() {
    const DIR: &str =
        "org.openmobilealliance.xcap-directory/users/sip:alice@example.com/directory.xml";
    let s = server(0).await;
    let sip = s.running().sip_addr.unwrap();
    let mut ua = Ua::new(sip, ALICE).await;
    let (resp, initial) = subscribe(&mut ua, "xcap-diff", &[DIR]).await;
    assert_eq!(resp.status(), Some(200));
    let e0 = s.get(DIR).await.etag();
    assert_eq!(
        attr(initial.body(), "<d:document", "new-etag"),
        Some(e0.trim_matches('"'))
    );
    put_doc(&s, &["sip:x@x"]).await;
    let n = ua
        .next_notify(WAIT)
        .await
        .expect("a NOTIFY for the directory");
    ua.answer(&n, 200).await;
    let e1 = s.get(DIR).await.etag();
    assert_ne!(e0, e1);
    assert_eq!(
        attr(n.body(), "<d:document", "sel"),
        Some(DIR),
        "{}",
        n.body()
    );
    assert_eq!(
        attr(n.body(), "<d:document", "previous-etag"),
        Some(e0.trim_matches('"'))
    );
    assert_eq!(
        attr(n.body(), "<d:document", "new-etag"),
        Some(e1.trim_matches('"'))
    );
    // A document of another user does not concern Alice's directory.
    s.put(
        "resource-lists/users/sip:bob@example.com/index",
        "application/resource-lists+xml",
        buddy_list(&["sip:y@y"]),
    )
    .await;
    assert!(ua.next_notify(Duration::from_millis(500)).await.is_none());
    s.stop().await;
}

// XD-05a, XD-05c, XD-14 (issue #13 scope 5): a whole-document PUT of a watched document is
// reported as the patch from the version before (here one `<add>` of the new entry with its
// whitespace), and the same body PUT again as `<body-not-changed/>`, chained as ever.
#[tokio::test]
async fn whole_document_puts_are_reported_as_patches() {
    let s = server(0).await;
    let e0 = put_doc(&s, &["sip:a@x", "sip:b@x", "sip:c@x", "sip:d@x"])
        .await
        .etag();
    let sip = s.running().sip_addr.unwrap();
    let mut ua = Ua::new(sip, ALICE).await;
    subscribe(&mut ua, "xcap-diff;diff-processing=xcap-patching", &[DOC]).await;
    let e1 = put_doc(&s, &["sip:a@x", "sip:b@x", "sip:c@x", "sip:d@x", "sip:e@x"])
        .await
        .etag();
    let n = ua.next_notify(WAIT).await.expect("a NOTIFY");
    ua.answer(&n, 200).await;
    let body = n.body();
    assert_eq!(
        attr(body, "<d:document", "previous-etag"),
        Some(e0.trim_matches('"'))
    );
    assert_eq!(
        attr(body, "<d:document", "new-etag"),
        Some(e1.trim_matches('"'))
    );
    assert!(
        body.contains("<d:add sel=\"*/*[1]/*[4]\" pos=\"after\">") && body.contains("sip:e@x"),
        "{body}"
    );
    let e2 = put_doc(&s, &["sip:a@x", "sip:b@x", "sip:c@x", "sip:d@x", "sip:e@x"])
        .await
        .etag();
    let n = ua.next_notify(WAIT).await.expect("a NOTIFY");
    ua.answer(&n, 200).await;
    assert_eq!(
        attr(n.body(), "<d:document", "previous-etag"),
        Some(e1.trim_matches('"'))
    );
    assert_eq!(
        attr(n.body(), "<d:document", "new-etag"),
        Some(e2.trim_matches('"'))
    );
    assert!(n.body().contains("body-not-changed"), "{}", n.body());
    s.stop().await;
}

// RFC 3261 §18.1.1, RFC 6665 §4.2.2: once the subscriber's connection is gone, NOTIFYs to a
// `transport=tcp` Contact go over a new TCP connection to it (not over UDP), and the answer on
// that connection keeps the subscription.
#[tokio::test]
async fn notifies_over_a_new_tcp_connection_once_the_first_closed() {
    use tokio::io::AsyncWriteExt;
    let s = server(0).await;
    put_doc(&s, &["sip:x@x"]).await;
    let sip = s.running().sip_addr.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let contact = listener.local_addr().unwrap();
    let (mut tcp, _, got) = tcp_subscribe(sip, "2", &format!("sip:ua@{contact}")).await;
    let answer = |notify: &str| answer_on(sip, notify);
    tcp.write_all(answer(&got[1]).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(100)).await;
    put_doc(&s, &["sip:y@x"]).await;
    let (mut conn, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("xcapd connects to the Contact")
        .unwrap();
    let mut buf = Vec::new();
    let n = read_message(&mut conn, &mut buf)
        .await
        .expect("the change NOTIFY");
    assert!(
        n.starts_with("NOTIFY ") && n.contains("Via: SIP/2.0/TCP ") && n.contains("previous-etag"),
        "{n}"
    );
    conn.write_all(answer(&n).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.running().notifier.as_ref().unwrap().subscriptions(), 1);
    s.stop().await;
}
