//! IM policy decisions end to end (issue #4 acceptance; IX-09, CP-21, CP-23, IM-24..IM-28):
//! bob blocks alice through an RCS-style external list in the Shared XDMS, the decision is
//! block; bob removes alice from that list and the very next decision is allow (no sleep).

mod common;
use common::*;
use xcapd::config::AuthMode;
use xcapd::decision::DecideRequest;
use xcapd::policy::ImAction;
use xcapd::storage::credentials::{make_credential, Role};

const BOB: &str = "sip:bob@example.com";

fn lists(blocked: &[&str], root: &str) -> String {
    let _ = root;
    let mut s = String::from(
        "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n  <list name=\"oma_blockedcontacts\">\n",
    );
    for b in blocked {
        s.push_str(&format!("    <entry uri=\"{b}\"/>\n"));
    }
    s.push_str("  </list>\n  <list name=\"oma_grantedcontacts\">\n    <external anchor=\"ANCHOR\"/>\n  </list>\n  <list name=\"friends\"><entry uri=\"sip:carol@example.com\"/></list>\n</resource-lists>\n");
    s
}

fn rules(root: &str) -> String {
    let list = |name: &str| {
        format!("{root}/resource-lists/users/{BOB}/index/~~/resource-lists/list%5B@name=%22{name}%22%5D")
    };
    format!(
        r#"<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:ocp="urn:oma:xml:xdm:common-policy" xmlns:im="urn:xcapd:xml:ns:im-rules">
  <cp:rule id="blocked">
    <cp:conditions><ocp:external-list><ocp:entry anc="{}"/></ocp:external-list></cp:conditions>
    <cp:actions><im:im-handling>block</im:im-handling></cp:actions>
  </cp:rule>
  <cp:rule id="granted">
    <cp:conditions><ocp:external-list><ocp:entry anc="{}"/></ocp:external-list></cp:conditions>
    <cp:actions><im:im-handling>allow</im:im-handling></cp:actions>
  </cp:rule>
  <cp:rule id="unlisted">
    <cp:conditions><ocp:other-identity/></cp:conditions>
    <cp:actions><im:im-handling>allow</im:im-handling></cp:actions>
  </cp:rule>
</cp:ruleset>
"#,
        list("oma_blockedcontacts"),
        list("oma_grantedcontacts")
    )
}

#[tokio::test]
async fn ix09_block_via_external_list_then_unblock_is_visible_immediately() {
    let s = TestServer::start().await;
    let root = s.root.clone();
    let friends_anchor = format!(
        "{root}/resource-lists/users/{BOB}/index/~~/resource-lists/list%5B@name=%22friends%22%5D"
    );
    let doc = lists(&["sip:alice@example.com"], &root).replace("ANCHOR", &friends_anchor);
    let r = s
        .put(&format!("resource-lists/users/{BOB}/index"), RL, doc)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .put(
            &format!("im-rules/users/{BOB}/index"),
            "application/auth-policy+xml",
            rules(&root),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let decisions = &s.running().decisions;
    let ask = |sender: &str| DecideRequest {
        recipient: BOB.into(),
        sender: Some(sender.into()),
        media: Some("pager".into()),
        anonymous: false,
    };
    let d = decisions.decide(&ask("sip:alice@example.com"), 0).unwrap();
    assert_eq!(d.action, ImAction::Block);
    assert_eq!(d.matched_rules, vec!["blocked".to_string()]);
    assert!(d
        .documents
        .iter()
        .any(|x| x.uri.ends_with("im-rules/users/sip:bob@example.com/index")));
    assert!(d.documents.iter().any(|x| x
        .uri
        .ends_with("resource-lists/users/sip:bob@example.com/index")));
    // carol is granted through a nested external list; dave falls to other-identity.
    assert_eq!(
        decisions
            .decide(&ask("sip:carol@example.com"), 0)
            .unwrap()
            .action,
        ImAction::Allow
    );
    let dave = decisions.decide(&ask("sip:dave@example.com"), 0).unwrap();
    assert_eq!(
        (dave.action, dave.matched_rules.clone()),
        (ImAction::Allow, vec!["unlisted".to_string()])
    );
    // Bob unblocks alice: the very next decision sees it.
    let r = s
        .delete(&format!(
            "resource-lists/users/{BOB}/index/~~/resource-lists/list%5B@name=%22oma_blockedcontacts%22%5D/entry%5B@uri=%22sip:alice@example.com%22%5D"
        ))
        .await;
    assert_eq!(r.status, 200);
    let d = decisions.decide(&ask("sip:alice@example.com"), 0).unwrap();
    assert_eq!(d.action, ImAction::Allow);
    // And blocks her again.
    let r = s
        .put(
            &format!("resource-lists/users/{BOB}/index/~~/resource-lists/list%5B@name=%22oma_blockedcontacts%22%5D/entry%5B@uri=%22sip:alice@example.com%22%5D"),
            EL,
            "<entry uri=\"sip:alice@example.com\"/>",
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        decisions
            .decide(&ask("sip:alice@example.com"), 0)
            .unwrap()
            .action,
        ImAction::Block
    );
    s.stop().await;
}

#[tokio::test]
async fn im25_no_rules_and_broken_reference_apply_the_default() {
    let s = TestServer::start_with(|c| c.policy.im_default = "polite-block".into()).await;
    let ask = DecideRequest {
        recipient: BOB.into(),
        sender: Some("sip:alice@example.com".into()),
        media: None,
        anonymous: false,
    };
    let d = s.running().decisions.decide(&ask, 0).unwrap();
    assert_eq!((d.action, d.default_applied), (ImAction::PoliteBlock, true));
    // Rules whose only list does not exist: the reference is reported, the default applies.
    let root = s.root.clone();
    let r = s
        .put(
            &format!("im-rules/users/{BOB}/index"),
            "application/auth-policy+xml",
            rules(&root),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let d = s.running().decisions.decide(&ask, 0).unwrap();
    assert!(!d.unresolved.is_empty(), "{d:?}");
    assert!(d.default_applied);
    assert_eq!(d.action, ImAction::PoliteBlock);
    s.stop().await;
}

#[tokio::test]
async fn decide_over_http_is_for_service_principals_only() {
    let s = TestServer::start_with(|c| {
        c.server.auth = AuthMode::Required;
        c.auth.trusted_peers = vec!["127.0.0.1/32".into()];
    })
    .await;
    s.running()
        .credentials
        .put_user(&make_credential(
            "sip:im@example.com",
            "example.com",
            "x",
            vec![Role::Service],
            0,
        ))
        .await
        .unwrap();
    let url = s.root.replace("/xcap-root", "/policy/v1/im/decide");
    let body = r#"{"recipient":"sip:bob@example.com","sender":"sip:alice@example.com","media":"pager","anonymous":false}"#;
    let client = reqwest::Client::new();
    let r = client
        .post(&url)
        .header("X-XCAP-Asserted-Identity", "<sip:im@example.com>")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["action"], "block", "no rules: the default (block)");
    assert!(v["documents"].is_array());
    let r = client
        .post(&url)
        .header("X-XCAP-Asserted-Identity", "<sip:alice@example.com>")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = client.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    s.stop().await;
}

/// IX-07c: an iptel/SER-style im-rules document (iptel namespace, block/allow, RFC 4745
/// identity syntax) is stored and drives decisions.
#[tokio::test]
async fn ix07c_iptel_style_im_rules_document() {
    let s = TestServer::start().await;
    let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules">
  <cr:rule id="friends">
    <cr:conditions><cr:identity><cr:one id="sip:carol@example.com"/></cr:identity></cr:conditions>
    <cr:actions><im:im-handling>allow</im:im-handling></cr:actions>
  </cr:rule>
</cr:ruleset>
"#;
    let r = s
        .put(
            &format!("im-rules/users/{BOB}/index"),
            "application/auth-policy+xml",
            doc,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ask = |sender: &str| DecideRequest {
        recipient: BOB.into(),
        sender: Some(sender.into()),
        media: None,
        anonymous: false,
    };
    let decisions = &s.running().decisions;
    assert_eq!(
        decisions
            .decide(&ask("sip:carol@example.com"), 0)
            .unwrap()
            .action,
        ImAction::Allow
    );
    assert_eq!(
        decisions
            .decide(&ask("sip:mallory@example.com"), 0)
            .unwrap()
            .action,
        ImAction::Block
    );
    s.stop().await;
}
