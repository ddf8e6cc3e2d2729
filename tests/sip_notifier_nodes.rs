//! One xcap-diff subscription over documents on another node (issue #13 scope 7; RFC 5875
//! §4.7; XE-24, XD-14): `resource-lists` is routed to a remote XDMS (the real `xcapd` binary in
//! its own process) whose change log the proxy's notifier follows (`GET /changes`, as a
//! service user the node knows). Writes through the proxy and writes made at the node itself
//! both reach the subscriber at the proxy, chained, as patches; a subscription to a home
//! directory on the node lists it from the node's xcap-directory and sees documents created
//! there later.

mod common;
use common::sip_ua::*;
use common::*;
use std::time::Duration;
use xcapd::config::{AuthMode, RouteTarget};

const ALICE: &str = "sip:alice@example.com";
const DOC: &str = "resource-lists/users/sip:alice@example.com/index";
const WAIT: Duration = Duration::from_secs(10);

fn attr<'a>(text: &'a str, element_start: &str, name: &str) -> Option<&'a str> {
    let rest = &text[text.find(element_start)?..];
    let tag = &rest[..rest.find('>')?];
    let j = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag[j..].split('"').next()
}

/// An XCAP request as Alice, asserted by a trusted peer (127.0.0.1): status and ETag.
async fn as_alice(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    content: Option<(&str, String)>,
) -> (u16, String) {
    let mut rb = http
        .request(method, url)
        .header("X-XCAP-Asserted-Identity", ALICE);
    if let Some((ct, body)) = content {
        rb = rb.header("Content-Type", ct).body(body);
    }
    let r = rb.send().await.unwrap();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_string())
        .unwrap_or_default();
    (r.status().as_u16(), etag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_at_the_proxy_follows_a_remote_node() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node-data");
    add_user(&data, "sip:notifier@example.com", "x", &["service"]);
    let port = free_port();
    let mut node = spawn_configured(
        dir.path(),
        "node",
        port,
        "[server]\nauth = \"required\"\n[auth]\ntrusted_peers = [\"127.0.0.1/32\"]\n",
    );
    let node_root = format!("http://127.0.0.1:{port}/xcap-root");
    let http = reqwest::Client::new();
    wait_listening(&http, &node_root).await;

    let root = node_root.clone();
    let proxy = TestServer::start_with(move |c| {
        c.routing.targets = vec![RouteTarget {
            name: "shared".into(),
            url: root,
            auids: vec!["resource-lists".into()],
            trusted_hop: true,
            timeout_secs: 5,
            follow_changes_as: Some("sip:notifier@example.com".into()),
        }];
        c.server.auth = AuthMode::Required;
        c.auth.trusted_peers = vec!["127.0.0.1/32".into()];
        c.sip.trusted_peers = vec!["127.0.0.1/32".into()];
        c.sip.notify_interval_ms = 0;
        c.sip.timer_t1_ms = 50;
    })
    .await;
    let rl = "application/resource-lists+xml";
    let put = reqwest::Method::PUT;
    let body = buddy_list(&["sip:a@x", "sip:b@x"]);
    let (status, e0) = as_alice(&http, put.clone(), proxy.url(DOC), Some((rl, body))).await;
    assert_eq!(status, 201);

    let mut ua = Ua::new(proxy.running().sip_addr.unwrap(), ALICE).await;
    let pai = format!("P-Asserted-Identity: <{ALICE}>\r\n");
    let (_, first) = ua
        .subscribed("xcap-diff;diff-processing=xcap-patching", &pai, &[DOC])
        .await;
    assert_eq!(
        attr(first.body(), "<d:document", "new-etag"),
        Some(e0.as_str()),
        "XE-10: the remote document's ETag in the full state"
    );

    // A write through the proxy: stored on the node, reported from the node's log.
    let entry = format!(
        "{DOC}/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22sip:c@x%22%5D"
    );
    let el = (
        "application/xcap-el+xml",
        "<entry uri=\"sip:c@x\"/>".to_string(),
    );
    let (status, e1) = as_alice(&http, put.clone(), proxy.url(&entry), Some(el)).await;
    assert_eq!(status, 201);
    let n = ua
        .next_notify(WAIT)
        .await
        .expect("a NOTIFY for the proxied write");
    ua.answer(&n, 200).await;
    assert_eq!(
        attr(n.body(), "<d:document", "previous-etag"),
        Some(e0.as_str())
    );
    assert_eq!(attr(n.body(), "<d:document", "new-etag"), Some(e1.as_str()));
    assert!(n.body().contains("<d:add "), "XD-09: a patch: {}", n.body());

    // A write made at the node itself (another proxy, an admin) reaches the subscriber too.
    let at_node = format!("{node_root}/{DOC}");
    let (status, e2) = as_alice(
        &http,
        put.clone(),
        at_node,
        Some((rl, buddy_list(&["sip:z@x"]))),
    )
    .await;
    assert_eq!(status, 200);
    let n = ua
        .next_notify(WAIT)
        .await
        .expect("a NOTIFY for the write at the node");
    ua.answer(&n, 200).await;
    assert_eq!(
        attr(n.body(), "<d:document", "previous-etag"),
        Some(e1.as_str())
    );
    assert_eq!(attr(n.body(), "<d:document", "new-etag"), Some(e2.as_str()));

    // XE-02a, XE-15: Alice's whole resource-lists home directory on the node, listed from the
    // node's xcap-directory, and a document created there later.
    let mut dir_ua = Ua::new(proxy.running().sip_addr.unwrap(), ALICE).await;
    let home = "resource-lists/users/sip:alice@example.com/";
    let (_, first) = dir_ua.subscribed("xcap-diff", &pai, &[home]).await;
    assert_eq!(
        attr(first.body(), "<d:document", "sel"),
        Some(DOC),
        "{}",
        first.body()
    );
    assert_eq!(
        attr(first.body(), "<d:document", "new-etag"),
        Some(e2.as_str())
    );
    let work = format!("{node_root}/{home}work");
    let (status, w0) = as_alice(&http, put, work, Some((rl, buddy_list(&["sip:w@x"])))).await;
    assert_eq!(status, 201);
    let n = dir_ua
        .next_notify(WAIT)
        .await
        .expect("a NOTIFY for the new document");
    dir_ua.answer(&n, 200).await;
    assert!(
        n.body().contains(&format!("sel=\"{home}work\"")),
        "{}",
        n.body()
    );
    assert_eq!(attr(n.body(), "<d:document", "new-etag"), Some(w0.as_str()));
    assert_eq!(attr(n.body(), "<d:document", "previous-etag"), None);

    proxy.stop().await;
    let _ = node.kill();
    let _ = node.wait();
}
