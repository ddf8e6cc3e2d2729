//! Proxy and remote XDMS in separate processes: routing of `resource-lists` to a remote `xcapd`
//! XDMS (the real binary) with the authenticated identity asserted over a trusted hop;
//! xcap-caps and xcap-directory aggregated; a stopped XDMS gives 502/503 with a reason (issue #3
//! scope 4; AP-01, AP-04, AP-06, AP-08, AP-13, AU-10). One test runs the proxy in the test
//! process (to look at its store), one runs both as `xcapd` processes.

mod common;
use common::*;
use std::time::{Duration, Instant};
use xcapd::config::{AuthMode, RouteTarget};
use xcapd::storage::credentials::{make_credential, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_routes_to_remote_xdms_and_reports_its_failure() {
    // The remote XDMS trusts identities asserted by 127.0.0.1 (the proxy).
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut remote = spawn_configured(
        dir.path(),
        "xdms",
        port,
        "[server]\nauth = \"required\"\n[auth]\ntrusted_peers = [\"127.0.0.1/32\"]\n",
    );
    let remote_root = format!("http://127.0.0.1:{port}/xcap-root");
    let client = reqwest::Client::new();
    wait_listening(&client, &remote_root).await;

    let rr = remote_root.clone();
    let proxy = TestServer::start_with(move |c| {
        c.server.auth = AuthMode::Required;
        c.routing.targets = vec![RouteTarget {
            name: "shared".into(),
            url: rr,
            auids: vec!["resource-lists".into()],
            trusted_hop: true,
            timeout_secs: 5,
            follow_changes_as: None,
        }];
    })
    .await;
    proxy
        .running()
        .credentials
        .put_user(&make_credential(
            "sip:alice@example.com",
            "example.com",
            "pw",
            vec![Role::User],
            0,
        ))
        .await
        .unwrap();
    let mut alice = digest_client("alice@example.com", "pw");
    let url = proxy.url(ALICE_LISTS);
    let body = buddy_list(&["sip:bob@example.com"]);
    let (st, _) = alice.send(&client, "PUT", &url, Some(&body)).await;
    assert_eq!(st, 201);
    let (st, _) = alice.send(&client, "GET", &url, None).await;
    assert_eq!(st, 200);
    // The document lives on the remote XDMS, not in the proxy's store.
    let direct = client
        .get(format!("{remote_root}/{ALICE_LISTS}"))
        .header("X-XCAP-Asserted-Identity", "<sip:alice@example.com>")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status().as_u16(), 200);
    assert_eq!(direct.text().await.unwrap(), body);
    let local_key = xcapd::storage::DocKey {
        auid: "resource-lists".into(),
        tree: xcapd::storage::TreeKey::User("sip:alice@example.com".into()),
        path: "index".into(),
    };
    assert!(proxy
        .running()
        .xdms
        .store()
        .get(&local_key)
        .await
        .unwrap()
        .is_none());
    // Node selectors and conflicts pass through unchanged (AP-13).
    let el = format!("{url}/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B1%5D");
    let (st, _) = alice.send(&client, "GET", &el, None).await;
    assert_eq!(st, 200);
    // The remote does not honour identities asserted by others: without the proxy, 401.
    let r = client
        .get(format!("{remote_root}/{ALICE_LISTS}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // AP-08: alice's directory through the proxy lists the remote document.
    let dir_url = proxy
        .url("org.openmobilealliance.xcap-directory/users/sip:alice@example.com/directory.xml");
    let h = {
        alice.send(&client, "GET", &dir_url, None).await;
        alice.header("GET", "/xcap-root/org.openmobilealliance.xcap-directory/users/sip:alice@example.com/directory.xml").unwrap()
    };
    let listing = client
        .get(&dir_url)
        .header("Authorization", h)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains("resource-lists/users/sip:alice@example.com/index"),
        "{listing}"
    );

    // Stop the remote: a reason, quickly, not a hang.
    remote.kill().unwrap();
    remote.wait().unwrap();
    let started = Instant::now();
    let mut fresh = digest_client("alice@example.com", "pw");
    let (st, _) = fresh.send(&client, "GET", &url, None).await;
    assert!(st == 502 || st == 503, "status {st}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let h = fresh
        .header(
            "GET",
            "/xcap-root/resource-lists/users/sip:alice@example.com/index",
        )
        .unwrap();
    let r = client
        .get(&url)
        .header("Authorization", h)
        .send()
        .await
        .unwrap();
    assert!(
        r.text().await.unwrap().contains("XDMS"),
        "the body says what failed"
    );
    proxy.stop().await;
}

/// Issue #4 scope 5: an IM XDMS process (roles = ["im"]) decides with external lists kept by a
/// separate Shared XDMS process, fetched fresh for every decision as the IM Server's service
/// identity; a list change on the Shared XDMS is visible to the very next decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn im_xdms_decides_with_lists_of_a_remote_shared_xdms() {
    use xcapd::decision::DecideRequest;
    use xcapd::policy::ImAction;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared-data");
    add_user(&data, "sip:im-server@example.com", "x", &["service"]);
    let port = free_port();
    let mut shared = spawn_configured(
        dir.path(),
        "shared",
        port,
        "[server]\nauth = \"required\"\nroles = [\"shared\"]\n[auth]\ntrusted_peers = [\"127.0.0.1/32\"]\n",
    );
    let shared_root = format!("http://127.0.0.1:{port}/xcap-root");
    let client = reqwest::Client::new();
    wait_listening(&client, &shared_root).await;
    let sr = shared_root.clone();
    let im = TestServer::start_with(move |c| {
        c.server.roles = vec!["im".into()];
        c.policy.service_identity = "sip:im-server@example.com".into();
        c.routing.targets = vec![RouteTarget {
            name: "shared".into(),
            url: sr,
            auids: vec!["resource-lists".into()],
            trusted_hop: true,
            timeout_secs: 5,
            follow_changes_as: None,
        }];
    })
    .await;
    let bob = "sip:bob@example.com";
    let as_bob =
        |rb: reqwest::RequestBuilder| rb.header("X-XCAP-Asserted-Identity", format!("<{bob}>"));
    let lists = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"oma_blockedcontacts\"><entry uri=\"sip:alice@example.com\"/></list></resource-lists>";
    let r = as_bob(client.put(format!("{shared_root}/resource-lists/users/{bob}/index")))
        .header("Content-Type", RL)
        .body(lists)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // The anchor names the IM XDMS's own XCAP root: clients see one root (the proxy's).
    let anchor = format!("{}/resource-lists/users/{bob}/index/~~/resource-lists/list%5B@name=%22oma_blockedcontacts%22%5D", im.root);
    let rules = format!(
        r#"<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:ocp="urn:oma:xml:xdm:common-policy" xmlns:im="urn:xcapd:xml:ns:im-rules"><cp:rule id="blocked"><cp:conditions><ocp:external-list><ocp:entry anc="{anchor}"/></ocp:external-list></cp:conditions><cp:actions><im:im-handling>block</im:im-handling></cp:actions></cp:rule><cp:rule id="rest"><cp:conditions><ocp:other-identity/></cp:conditions><cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule></cp:ruleset>"#
    );
    let r = im
        .put(
            &format!("im-rules/users/{bob}/index"),
            "application/auth-policy+xml",
            rules,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ask = DecideRequest {
        recipient: bob.into(),
        sender: Some("sip:alice@example.com".into()),
        media: Some("pager".into()),
        anonymous: false,
    };
    let d = im.running().decisions.decide_async(&ask, 0).await.unwrap();
    assert_eq!(d.action, ImAction::Block, "{d:?}");
    // Bob unblocks alice on the Shared XDMS; the IM XDMS sees it at once.
    let r = as_bob(client.delete(format!(
        "{shared_root}/resource-lists/users/{bob}/index/~~/resource-lists/list%5B@name=%22oma_blockedcontacts%22%5D/entry%5B@uri=%22sip:alice@example.com%22%5D"
    )))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let d = im.running().decisions.decide_async(&ask, 0).await.unwrap();
    assert_eq!(d.action, ImAction::Allow, "{d:?}");
    // With the Shared XDMS gone the reference is unresolved and the default (block) applies.
    shared.kill().unwrap();
    shared.wait().unwrap();
    let d = im.running().decisions.decide_async(&ask, 0).await.unwrap();
    assert!(
        !d.unresolved.is_empty() && d.default_applied && d.action == ImAction::Block,
        "{d:?}"
    );
    im.stop().await;
}

/// Issue #3 scope 4 as written: two `xcapd` processes, a proxy and a remote XDMS, and a client
/// that only talks to the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_xcapd_processes_proxy_and_remote_xdms() {
    let dir = tempfile::tempdir().unwrap();
    let (xdms_port, proxy_port) = (free_port(), free_port());
    add_user(
        &dir.path().join("proxy-data"),
        "sip:alice@example.com",
        "pw",
        &[],
    );
    let mut xdms = spawn_configured(
        dir.path(),
        "xdms",
        xdms_port,
        "[server]\nauth = \"required\"\n[auth]\ntrusted_peers = [\"127.0.0.1/32\"]\n",
    );
    let mut proxy = spawn_configured(
        dir.path(),
        "proxy",
        proxy_port,
        &format!(
            "[server]\nauth = \"required\"\n[[routing.targets]]\nname = \"shared\"\nurl = \"http://127.0.0.1:{xdms_port}/xcap-root\"\nauids = [\"resource-lists\", \"rls-services\"]\ntrusted_hop = true\ntimeout_secs = 5\n"
        ),
    );
    let client = reqwest::Client::new();
    let proxy_root = format!("http://127.0.0.1:{proxy_port}/xcap-root");
    wait_listening(&client, &format!("http://127.0.0.1:{xdms_port}/xcap-root")).await;
    wait_listening(&client, &proxy_root).await;
    let url = format!("{proxy_root}/{ALICE_LISTS}");
    let mut alice = digest_client("alice@example.com", "pw");
    let body = buddy_list(&["sip:bob@example.com"]);
    assert_eq!(alice.send(&client, "PUT", &url, Some(&body)).await.0, 201);
    assert_eq!(alice.send(&client, "GET", &url, None).await.0, 200);
    // A 409 from the XDMS passes through the proxy unchanged (AP-13).
    let bad = format!("{url}/~~/resource-lists/list%5B@name=%22nosuch%22%5D/entry");
    let h = alice
        .header(
            "PUT",
            &format!(
                "/xcap-root/{ALICE_LISTS}/~~/resource-lists/list%5B@name=%22nosuch%22%5D/entry"
            ),
        )
        .unwrap();
    let r = client
        .put(&bad)
        .header("Authorization", h)
        .header("Content-Type", EL)
        .body("<entry uri=\"sip:x@example.com\"/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().await.unwrap().contains("<no-parent>"));
    // The proxy's xcap-caps lists what it routes.
    let h = alice
        .header("GET", "/xcap-root/xcap-caps/global/index")
        .unwrap();
    let caps = client
        .get(format!("{proxy_root}/xcap-caps/global/index"))
        .header("Authorization", h)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(caps.contains("<auid>rls-services</auid>"));
    // The XDMS goes away: a reason, quickly.
    xdms.kill().unwrap();
    xdms.wait().unwrap();
    let started = Instant::now();
    let (st, _) = alice.send(&client, "GET", &url, None).await;
    assert!(st == 502 || st == 503, "status {st}");
    assert!(started.elapsed() < Duration::from_secs(5));
    proxy.kill().unwrap();
    proxy.wait().unwrap();
}
