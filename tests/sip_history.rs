//! Conversation history over real sockets (issue #14 scope 6; IM-32, IX-01, IX-04): with
//! `im.history` on, Alice's message to Bob (delivered) and Bob's reply (stored: Alice is
//! offline) are kept for both; each owner's conv-history document lists the conversation; the
//! owner reads it over HTTP in pages, filtered by peer; with authentication on, nobody else
//! may (403); the owner's DELETE of the document removes the stored history.

mod common;
use common::sip_ua::*;
use common::*;
use std::time::Duration;
use xcapd::storage::credentials::{make_credential, Role};

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";

/// The history page of `owner` as `user` (Digest-free: Basic is not on, so the test uses the
/// in-process principal-free path in development mode, or `auth` for the checked server).
async fn page(
    s: &TestServer,
    owner: &str,
    query: &str,
    auth: Option<(&str, &str)>,
) -> (u16, serde_json::Value) {
    let url = format!(
        "http://{}/im/v1/history/users/{owner}{query}",
        s.running().http_addr
    );
    let mut req = reqwest::Client::new().get(url);
    if let Some((user, pw)) = auth {
        req = req.basic_auth(user, Some(pw));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// The ids of `owner`'s conv-history items, once there are `want`.
async fn conversations(s: &TestServer, owner: &str, want: usize) -> Vec<String> {
    let doc = format!("org.openmobilealliance.conv-history/users/{owner}/conv-history");
    let mut ids = Vec::new();
    for _ in 0..100 {
        let r = s.get(&doc).await;
        if r.status == 200 {
            ids = r
                .body
                .split("<history id=\"")
                .skip(1)
                .map(|rest| rest.split('"').next().unwrap().to_string())
                .collect();
            if ids.len() == want {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_kept_listed_read_and_deleted() {
    let s = TestServer::start_with(|c| {
        c.sip.timer_t1_ms = 50;
        c.im.history = xcapd::config::HistoryMode::All;
    })
    .await;
    for (owner, friend) in [(BOB, ALICE), (ALICE, BOB)] {
        s.put_im_rules(owner, &allow_only(&[friend])).await;
    }
    let sip = s.running().sip_addr.unwrap();
    let mut alice = Ua::new(sip, ALICE).await;
    let (mut bob, _) = registered(sip, BOB).await;

    let send = alice.message(1, BOB, "text/plain", "", "hi Bob");
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("the MESSAGE");
        bob.send(&answer_text(&m, 200)).await;
    };
    let ((r, _), ()) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(200), "{}", r.text);
    // Alice is not registered: Bob's reply is stored, and kept in history too.
    let (r, _) = bob
        .request(&bob.message(2, ALICE, "text/plain", "", "hi Alice"))
        .await;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    // Blocked messages are not history: Carol is nobody's friend.
    let mut carol = Ua::new(sip, "sip:carol@example.com").await;
    let (r, _) = carol
        .request(&carol.message(1, BOB, "text/plain", "", "psst"))
        .await;
    assert_eq!(r.status(), Some(403), "{}", r.text);

    // IX-01: one conversation each.
    assert_eq!(conversations(&s, BOB, 1).await.len(), 1);
    assert_eq!(conversations(&s, ALICE, 1).await.len(), 1);

    // The owner reads it, oldest first, in pages.
    let (status, first) = page(&s, BOB, "?peer=sip:alice@example.com&limit=1", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["messages"][0]["body"], "hi Bob");
    assert_eq!(first["messages"][0]["direction"], "received");
    let next = first["next_after"].as_u64().expect("a second page");
    let (_, second) = page(&s, BOB, &format!("?peer={ALICE}&after={next}"), None).await;
    assert_eq!(second["messages"][0]["body"], "hi Alice");
    assert_eq!(second["messages"][0]["direction"], "sent");
    assert!(second["next_after"].is_null());
    let (_, none) = page(&s, BOB, "?peer=sip:carol@example.com", None).await;
    assert_eq!(none["messages"].as_array().unwrap().len(), 0);

    // IX-04: the owner deletes the document; the stored history goes with it.
    let r = reqwest::Client::new()
        .delete(s.url(&format!(
            "org.openmobilealliance.conv-history/users/{BOB}/conv-history"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut left = usize::MAX;
    for _ in 0..100 {
        let (_, all) = page(&s, BOB, "", None).await;
        left = all["messages"].as_array().unwrap().len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "Bob's history is gone");
    let (_, alices) = page(&s, ALICE, "", None).await;
    assert_eq!(
        alices["messages"].as_array().unwrap().len(),
        2,
        "Alice keeps hers"
    );
    s.stop().await;
}

// Owner only: with authentication on, Alice reads her history and not Bob's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_reads_a_history() {
    let s = TestServer::start_with(|c| {
        c.server.auth = xcapd::config::AuthMode::Required;
        c.auth.basic = true;
        c.auth.basic_without_tls = true;
        c.im.history = xcapd::config::HistoryMode::All;
    })
    .await;
    let alice = make_credential(ALICE, "example.com", "pw", vec![Role::User], 0);
    s.running().credentials.put_user(&alice).await.unwrap();
    let creds = Some(("alice@example.com", "pw"));
    let (status, mine) = page(&s, ALICE, "", creds).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["owner"], ALICE);
    let (status, _) = page(&s, BOB, "", creds).await;
    assert_eq!(status, 403);
    let (status, _) = page(&s, ALICE, "", None).await;
    assert_eq!(status, 401);
    s.stop().await;
}

/// Allows `friend`; with `record`, also asks for the conversations with them to be kept.
fn allow_recording(friend: &str, record: bool) -> String {
    let record = if record {
        "<im:record-history>true</im:record-history>"
    } else {
        ""
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" xmlns:im=\"urn:xcapd:xml:ns:im-rules\"><cr:rule id=\"friends\"><cr:conditions><cr:identity><cr:one id=\"{friend}\"/></cr:identity></cr:conditions><cr:actions><im:im-handling>allow</im:im-handling>{record}</cr:actions></cr:rule></cr:ruleset>\n"
    )
}

/// Alice's message `text` to Bob, delivered (200).
async fn say(alice: &mut Ua, bob: &Ua, n: u32, text: &str) {
    let send = alice.message(n, BOB, "text/plain", "", text);
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("the MESSAGE");
        bob.send(&answer_text(&m, 200)).await;
    };
    let ((r, _), ()) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(200), "{}", r.text);
}

/// The bodies in `owner`'s history, once there are `want` (or what there is after 2 s).
async fn bodies(s: &TestServer, owner: &str, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..40 {
        let (status, page) = page(s, owner, "", None).await;
        assert_eq!(status, 200, "{page}");
        got = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap_or("").to_string())
            .collect();
        if got.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got
}

// IM-32, issue #14 scope 6 ("when the user or operator enables it"): by default
// (`im.history = "opt-in"`) a user's conversations are kept when a rule of their im-rules
// that matches the peer says `<im:record-history>true`: Bob's are, Alice's (who does not ask)
// are not; Bob's next rule change takes effect with the next message, and so does Alice's
// when she asks too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_opt_in_to_history_with_their_rules() {
    // The default mode (opt-in).
    let s = TestServer::start_with(|c| c.sip.timer_t1_ms = 50).await;
    s.put_im_rules(BOB, &allow_recording(ALICE, true)).await;
    s.put_im_rules(ALICE, &allow_recording(BOB, false)).await;
    let sip = s.running().sip_addr.unwrap();
    let mut alice = Ua::new(sip, ALICE).await;
    let (bob, _) = registered(sip, BOB).await;

    say(&mut alice, &bob, 1, "kept for Bob").await;
    assert_eq!(bodies(&s, BOB, 1).await, ["kept for Bob"]);
    assert!(bodies(&s, ALICE, 1).await.is_empty(), "Alice did not ask");

    s.put_im_rules(BOB, &allow_recording(ALICE, false)).await;
    say(&mut alice, &bob, 2, "not kept").await;
    assert_eq!(bodies(&s, BOB, 2).await, ["kept for Bob"]);

    // Alice asks too (for the sender's side, once the change feed carried her new rules).
    s.put_im_rules(ALICE, &allow_recording(BOB, true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    say(&mut alice, &bob, 3, "kept for Alice").await;
    assert_eq!(bodies(&s, ALICE, 1).await, ["kept for Alice"]);
    assert_eq!(bodies(&s, BOB, 2).await, ["kept for Bob"]);
    s.stop().await;
}
