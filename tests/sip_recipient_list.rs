//! One-to-many pager messages through the IM Server over real UDP sockets (issue #14 scope 7;
//! RFC 5365, RFC 5364; IM-08): Alice sends one MESSAGE with `Require: recipient-list-message`
//! and a multipart body listing Bob (online), Carol (offline) and Dave (whose default policy
//! blocks her), Bob twice. She gets 202; Bob's UA gets one copy, the message part byte for
//! byte with To naming him and a recipient-list-history part naming the `to` and `cc`
//! recipients (the anonymized one as the anonymous URI, the `bcc` one not at all, IM-08d);
//! Carol's copy is stored for her; Dave gets nothing. Bad bodies (a malformed CPIM message
//! part, not multipart, no recipient list, a broken list) get 400 with the reason, a list over
//! `im.max_recipients` 413, and nothing is stored or sent. A MESSAGE to a pre-defined group
//! (Shared XDMS `org.openmobilealliance.groups`, IM-13) reaches its other members the same
//! way; non-members and oversized groups are refused.

mod common;
use common::sip_ua::*;
use common::*;
use std::time::Duration;
use xcapd::storage::messages::Mailbox::Deferred;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";

const MULTIPART: &str = "multipart/mixed;boundary=\"xcapd-b1\"";

/// The multipart body: the message part, then the recipient list of `uris` (each with its
/// copy control attributes after a space, e.g. `sip:x@y cp:copyControl="cc"`; plain: "to").
fn body(uris: &[&str], message: &str) -> String {
    let entries: String = uris
        .iter()
        .map(|u| match u.split_once(' ') {
            Some((u, attributes)) => format!("<entry uri=\"{u}\" {attributes}/>"),
            None => format!("<entry uri=\"{u}\" cp:copyControl=\"to\"/>"),
        })
        .collect();
    format!(
        "--xcapd-b1\r\nContent-Type: text/plain;charset=utf-8\r\n\r\n{message}\r\n--xcapd-b1\r\nContent-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\" xmlns:cp=\"urn:ietf:params:xml:ns:copycontrol\"><list>{entries}</list></resource-lists>\r\n--xcapd-b1--\r\n"
    )
}

fn exploding(ua: &Ua, n: u32, content_type: &str, body: &str) -> String {
    ua.message(
        n,
        "sip:im@example.com",
        content_type,
        "Require: recipient-list-message\r\n",
        body,
    )
}

/// The parts of a multipart/mixed copy: (headers, body) each.
fn parts(content_type: &str, body: &str) -> Vec<(String, String)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("\r\n--{boundary}");
    let body = format!("\r\n{body}");
    let end = body
        .find(&format!("{delimiter}--"))
        .expect("a close delimiter");
    body[..end]
        .split(&delimiter)
        .skip(1)
        .map(|p| {
            let p = p.strip_prefix("\r\n").unwrap();
            let (head, content) = p.split_once("\r\n\r\n").unwrap();
            (head.to_string(), content.to_string())
        })
        .collect()
}

/// IM-08d: a copy's message part (exactly as sent) and its recipient-list history.
fn check_copy(content_type: &str, body: &str, text: &str) {
    let parts = parts(content_type, body);
    assert_eq!(parts.len(), 2, "{body}");
    assert_eq!(
        parts[0],
        ("Content-Type: text/plain;charset=utf-8".into(), text.into())
    );
    let (head, history) = &parts[1];
    assert!(
        head.contains("Content-Disposition: recipient-list-history"),
        "{head}"
    );
    assert!(
        head.contains("Content-Type: application/resource-lists+xml"),
        "{head}"
    );
    assert!(
        history.contains(&format!("<entry uri=\"{BOB}\" cp:copyControl=\"to\"/>")),
        "{history}"
    );
    assert!(
        history.contains(
            "<entry uri=\"sip:anonymous@anonymous.invalid\" cp:copyControl=\"cc\" cp:count=\"1\"/>"
        ),
        "{history}"
    );
    for hidden in [CAROL, "sip:dave@example.com"] {
        assert!(!history.contains(hidden), "{hidden} named: {history}");
    }
}

async fn stored_for(s: &TestServer, user: &str) -> Vec<String> {
    let stored = s
        .running()
        .messages
        .list(Deferred, user.into(), 0, 100)
        .await;
    stored
        .unwrap()
        .into_iter()
        .map(|m| String::from_utf8(m.message.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_to_a_recipient_list() {
    let s = TestServer::start_with(|c| {
        c.sip.timer_t1_ms = 50;
        c.im.max_recipients = 5;
    })
    .await;
    for user in [BOB, CAROL] {
        s.put_im_rules(user, &allow_only(&[ALICE])).await;
    }
    let sip = s.running().sip_addr.unwrap();
    let mut alice = Ua::new(sip, ALICE).await;
    let (bob, _) = registered(sip, BOB).await;

    // Bad input first: each refused with its reason, nothing sent or stored.
    let list = body(&[BOB, CAROL], "x");
    let six = body(
        &[
            BOB,
            CAROL,
            "sip:a@example.com",
            "sip:b@example.com",
            "sip:c@example.com",
            "sip:d@example.com",
        ],
        "x",
    );
    let bad_cpim = list.replace("text/plain;charset=utf-8", "message/cpim");
    let bad: [(&str, String, u16, &str); 5] = [
        (MULTIPART, bad_cpim, 400, "CPIM"),
        ("text/plain", list.clone(), 400, "multipart"),
        (
            MULTIPART,
            list.replace("recipient-list", "inline"),
            400,
            "recipient-list",
        ),
        (
            MULTIPART,
            list.replace("<list>", "<list"),
            400,
            "resource-lists",
        ),
        (MULTIPART, six, 413, "Too many recipients"),
    ];
    for (n, (ct, b, code, why)) in bad.iter().enumerate() {
        let (r, _) = alice.request(&exploding(&alice, n as u32 + 1, ct, b)).await;
        assert_eq!(r.status(), Some(*code), "{why}: {}", r.text);
        assert!(r.text.contains(why), "{why}: {}", r.text);
    }
    assert!(bob.recv(Duration::from_millis(200)).await.is_none());
    assert!(stored_for(&s, CAROL).await.is_empty());

    // IM-08c: 202, one copy each; Bob listed twice gets one. Carol is an anonymized cc,
    // Dave a bcc (IM-08d).
    let text = "to all of you: é\r\nline two";
    let carol = format!("{CAROL} cp:copyControl=\"cc\" cp:anonymize=\"true\"");
    let dave = "sip:dave@example.com cp:copyControl=\"bcc\"";
    let b = body(&[BOB, &carol, dave, BOB], text);
    let send = exploding(&alice, 10, MULTIPART, &b);
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("Bob's copy");
        bob.send(&answer_text(&m, 200)).await;
        m
    };
    let ((r, _), copy) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(202), "{}", r.text);
    let content_type = copy.header("Content-Type").unwrap_or("");
    assert!(
        content_type.starts_with("multipart/mixed;"),
        "{content_type}"
    );
    check_copy(content_type, copy.body(), text);
    assert_eq!(copy.header("To"), Some(format!("<{BOB}>").as_str()));
    assert!(copy.header("Require").is_none(), "{}", copy.text);
    assert!(
        bob.recv(Duration::from_millis(300)).await.is_none(),
        "one copy only"
    );
    let carols = s
        .running()
        .messages
        .list(Deferred, CAROL.into(), 0, 100)
        .await
        .unwrap();
    assert_eq!(carols.len(), 1);
    let stored = &carols[0].message;
    check_copy(
        &stored.content_type,
        std::str::from_utf8(&stored.body).unwrap(),
        text,
    );
    assert!(stored_for(&s, "sip:dave@example.com").await.is_empty());
    s.stop().await;
}

/// Alice's club: Alice, Bob and Carol; only members may write (SX-04).
const CLUB: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<group xmlns="urn:oma:xml:poc:list-service" xmlns:cp="urn:ietf:params:xml:ns:common-policy">
  <list-service uri="sip:club@example.com">
    <display-name>Club</display-name>
    <list>
      <entry uri="sip:alice@example.com"/>
      <entry uri="sip:bob@example.com"/>
      <entry uri="sip:carol@example.com"/>
    </list>
    <max-participant-count>5</max-participant-count>
    <cp:ruleset>
      <cp:rule id="members">
        <cp:conditions><is-list-member/></cp:conditions>
        <cp:actions><join-handling>true</join-handling></cp:actions>
      </cp:rule>
    </cp:ruleset>
  </list-service>
</group>
"#;

// IM-13, IM-11, SX-04: a MESSAGE to a pre-defined group URI of the Shared XDMS reaches every
// other member through their own policy and storing; a non-member is refused with the reason;
// a group that outgrew its max-participant-count is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_group_reaches_its_members() {
    let s = TestServer::start_with(|c| c.sip.timer_t1_ms = 50).await;
    for user in [BOB, CAROL] {
        s.put_im_rules(user, &allow_only(&[ALICE])).await;
    }
    let club = format!("org.openmobilealliance.groups/users/{ALICE}/club");
    let r = s
        .put(&club, "application/vnd.oma.poc.groups+xml", CLUB)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sip = s.running().sip_addr.unwrap();
    let mut alice = Ua::new(sip, ALICE).await;
    let (bob, _) = registered(sip, BOB).await;

    let send = alice.message(1, "sip:club@example.com", "text/plain", "", "hello club");
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("Bob's copy");
        bob.send(&answer_text(&m, 200)).await;
        m
    };
    let ((r, _), copy) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(202), "{}", r.text);
    assert_eq!(copy.body(), "hello club");
    assert_eq!(copy.header("To"), Some(format!("<{BOB}>").as_str()));
    assert_eq!(stored_for(&s, CAROL).await, ["hello club"]);
    assert!(
        alice.recv(Duration::from_millis(200)).await.is_none(),
        "no copy to the sender"
    );

    // SX-04: Dave is not a member of a members-only group.
    let mut dave = Ua::new(sip, "sip:dave@example.com").await;
    let (r, _) = dave
        .request(&dave.message(1, "sip:club@example.com", "text/plain", "", "let me in"))
        .await;
    assert_eq!(r.status(), Some(403), "{}", r.text);
    assert!(r.text.contains("not a member"), "{}", r.text);

    // max-participant-count enforced: more members than allowed, refused.
    let r = s
        .put(
            &club,
            "application/vnd.oma.poc.groups+xml",
            CLUB.replace("<max-participant-count>5", "<max-participant-count>2"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (r, _) = alice
        .request(&alice.message(2, "sip:club@example.com", "text/plain", "", "again"))
        .await;
    assert_eq!(r.status(), Some(403), "{}", r.text);
    assert!(r.text.contains("max-participant-count"), "{}", r.text);
    assert!(bob.recv(Duration::from_millis(200)).await.is_none());

    // An unknown group is nobody who accepts Alice: refused with the policy's reason (the
    // default blocks; a 404 would tell who exists), nothing stored, and the server goes on.
    let unknown = "sip:no-such-club@example.com";
    let (r, _) = alice
        .request(&alice.message(3, unknown, "text/plain", "", "anyone?"))
        .await;
    assert_eq!(r.status(), Some(403), "{}", r.text);
    assert!(stored_for(&s, unknown).await.is_empty());
    let (r, _) = alice
        .request(&alice.message(4, "sip:club@example.com", "text/plain", "", "still here"))
        .await;
    assert_eq!(r.status(), Some(403), "the server goes on: {}", r.text);
    s.stop().await;
}

// SX-03, IM-13 (resource-lists RFC 4826 §3.2.2): group members through `<external>` lists of
// a resource-lists document (themselves with an `<entry-ref>`) count as members: they get the
// message and may write to a members-only group; a reference that does not resolve leaves out
// only its members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_by_reference() {
    const DAVE: &str = "sip:dave@example.com";
    let s = TestServer::start_with(|c| c.sip.timer_t1_ms = 50).await;
    for user in [BOB, CAROL, DAVE] {
        s.put_im_rules(user, &allow_only(&[ALICE, DAVE])).await;
    }
    s.put_im_rules(ALICE, &allow_only(&[DAVE])).await;
    let lists = format!("resource-lists/users/{ALICE}/index");
    let carol_ref = format!("{lists}/~~/resource-lists/list%5b@name=%22others%22%5d/entry%5b1%5d");
    let r = s
        .put(
            &lists,
            "application/resource-lists+xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"pals\"><entry uri=\"{BOB}\"/><entry uri=\"{DAVE}\"/><entry-ref ref=\"{carol_ref}\"/></list><list name=\"others\"><entry uri=\"{CAROL}\"/></list></resource-lists>"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let pals = s.url(&format!(
        "{lists}/~~/resource-lists/list%5b@name=%22pals%22%5d"
    ));
    let missing = s.url(&format!(
        "{lists}/~~/resource-lists/list%5b@name=%22gone%22%5d"
    ));
    let team = CLUB
        .replace("sip:club@example.com", "sip:team@example.com")
        .replace(
            &format!("<entry uri=\"{BOB}\"/>\n      <entry uri=\"{CAROL}\"/>"),
            &format!("<external anchor=\"{pals}\"/><external anchor=\"{missing}\"/>"),
        );
    assert!(team.contains("gone"), "{team}");
    let doc = format!("org.openmobilealliance.groups/users/{ALICE}/team");
    let r = s
        .put(&doc, "application/vnd.oma.poc.groups+xml", team)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let sip = s.running().sip_addr.unwrap();
    let mut alice = Ua::new(sip, ALICE).await;
    let (bob, _) = registered(sip, BOB).await;

    let send = alice.message(1, "sip:team@example.com", "text/plain", "", "hello team");
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("Bob's copy");
        bob.send(&answer_text(&m, 200)).await;
        m
    };
    let ((r, _), copy) = tokio::join!(alice.request(&send), at_bob);
    assert_eq!(r.status(), Some(202), "{}", r.text);
    assert_eq!(copy.body(), "hello team");
    assert_eq!(
        stored_for(&s, CAROL).await,
        ["hello team"],
        "through the entry-ref"
    );
    assert_eq!(
        stored_for(&s, DAVE).await,
        ["hello team"],
        "through the external list"
    );

    // Dave is a member through the list: the members-only group lets him write.
    let mut dave = Ua::new(sip, DAVE).await;
    let at_bob = async {
        let m = bob.recv(Duration::from_secs(5)).await.expect("Bob's copy");
        bob.send(&answer_text(&m, 200)).await;
    };
    let send = dave.message(1, "sip:team@example.com", "text/plain", "", "from dave");
    let ((r, _), ()) = tokio::join!(dave.request(&send), at_bob);
    assert_eq!(r.status(), Some(202), "{}", r.text);
    assert_eq!(stored_for(&s, ALICE).await, ["from dave"]);
    // Someone in no list is still refused.
    let mut eve = Ua::new(sip, "sip:eve@example.com").await;
    let (r, _) = eve
        .request(&eve.message(1, "sip:team@example.com", "text/plain", "", "me too"))
        .await;
    assert_eq!(r.status(), Some(403), "{}", r.text);
    s.stop().await;
}
