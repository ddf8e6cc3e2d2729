//! Two processes: this test's proxy (in-process server) routes `resource-lists` to a remote
//! `xcapd` XDMS (the real binary), asserting the authenticated identity over a trusted hop;
//! xcap-caps and xcap-directory are aggregated; a stopped XDMS gives 502/503 with a reason
//! (issue #3 scope 4; AP-01, AP-04, AP-06, AP-08, AP-13, AU-10).

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xcapd::config::{AuthMode, RouteTarget};
use xcapd::storage::credentials::{make_credential, Role};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_routes_to_remote_xdms_and_reports_its_failure() {
    // The remote XDMS trusts identities asserted by 127.0.0.1 (the proxy).
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("xdms.toml");
    std::fs::write(
        &cfg,
        "[server]\nauth = \"required\"\n[auth]\ntrusted_peers = [\"127.0.0.1/32\"]\n",
    )
    .unwrap();
    let mut remote = Command::new(env!("CARGO_BIN_EXE_xcapd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--http", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.path().join("data"))
        .env("XCAPD_LOG", "warn")
        .env("XCAPD_ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let remote_root = format!("http://127.0.0.1:{port}/xcap-root");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{remote_root}/xcap-caps/global/index"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "remote XDMS did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let rr = remote_root.clone();
    let proxy = TestServer::start_with(move |c| {
        c.server.auth = AuthMode::Required;
        c.routing.targets = vec![RouteTarget {
            name: "shared".into(),
            url: rr,
            auids: vec!["resource-lists".into()],
            trusted_hop: true,
            timeout_secs: 5,
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
