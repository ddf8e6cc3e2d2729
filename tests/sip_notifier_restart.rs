//! kill -9 and restart with live xcap-diff subscriptions (issue #13 acceptance, scope 6; XD-14,
//! XE-13, XE-24): the real `xcapd` binary as a child process; subscriptions resume from the
//! store, a change made while the notifier was down is still reported, chained from the last
//! reported ETag, and nothing is reported twice or out of chain.

mod common;
use common::sip_ua::{resource_lists, Msg, Ua};
use common::{buddy_list, free_port, wait_ready, xcapd_serve};

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

const DOC: &str = "resource-lists/users/sip:alice@example.com/index";
const WAIT: Duration = Duration::from_secs(10);

/// The server on `port` (HTTP) with SIP on `sip` ("" = no SIP, so no notifier runs).
fn spawn(port: u16, sip: &str, data: &std::path::Path, config: &std::path::Path) -> Child {
    xcapd_serve()
        .args(["--http", &format!("127.0.0.1:{port}"), "--sip", sip])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(config)
        .spawn()
        .expect("spawn xcapd")
}

async fn put(client: &reqwest::Client, base: &str, entry: &str) -> String {
    let r = client
        .put(format!("{base}/{DOC}"))
        .header("Content-Type", "application/resource-lists+xml")
        .body(buddy_list(&[entry]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

fn etags(n: &Msg) -> (Option<String>, Option<String>) {
    let body = n.body();
    let get = |name: &str| {
        let i = body.find(&format!(" {name}=\""))? + name.len() + 3;
        body[i..].split('"').next().map(str::to_string)
    };
    (get("previous-etag"), get("new-etag"))
}

fn kill(child: &mut Child) {
    // SIGKILL: no shutdown, no flush.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_resumes_subscriptions_in_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("xcapd.toml"));
    std::fs::write(&config, "[sip]\nnotify_interval_ms = 0\ntimer_t1_ms = 50\n").unwrap();
    let (port, sip_port) = (free_port(), free_port());
    let sip_addr: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let base = format!("http://127.0.0.1:{port}/xcap-root");
    let client = reqwest::Client::new();

    let mut child = spawn(port, &sip_addr.to_string(), &data, &config);
    wait_ready(&client, &base).await;
    let e0 = put(&client, &base, "sip:a@x").await;
    let mut ua = Ua::new(sip_addr, "sip:alice@example.com").await;
    let req = ua.subscribe(
        "xcap-diff",
        Some(3600),
        "",
        &resource_lists(&["resource-lists/users/sip:alice@example.com/"]),
    );
    let (resp, early) = ua.request(&req).await;
    assert_eq!(resp.status(), Some(200), "{}", resp.text);
    let first = match early.into_iter().next() {
        Some(n) => n,
        None => ua.next_notify(WAIT).await.expect("the initial NOTIFY"),
    };
    ua.answer(&first, 200).await;
    assert_eq!(etags(&first), (None, Some(e0.clone())));
    let e1 = put(&client, &base, "sip:b@x").await;
    let n = ua.next_notify(WAIT).await.expect("NOTIFY e0 → e1");
    ua.answer(&n, 200).await;
    assert_eq!(etags(&n), (Some(e0.clone()), Some(e1.clone())));
    // The progress is stored once the 2xx is in, durable with sled's next background flush
    // (every 500 ms): give it that, then kill.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(&mut child);

    // A change while no notifier runs (SIP off).
    let mut child = spawn(port, "", &data, &config);
    wait_ready(&client, &base).await;
    let e2 = put(&client, &base, "sip:c@x").await;
    kill(&mut child);

    // The notifier is back: the missed change is reported, chained from e1; the next too.
    let mut child = spawn(port, &sip_addr.to_string(), &data, &config);
    let n = ua
        .next_notify(WAIT)
        .await
        .expect("the change made while down");
    ua.answer(&n, 200).await;
    assert_eq!(
        etags(&n),
        (Some(e1.clone()), Some(e2.clone())),
        "{}",
        n.text
    );
    wait_ready(&client, &base).await;
    let e3 = put(&client, &base, "sip:d@x").await;
    let n = ua.next_notify(WAIT).await.expect("NOTIFY e2 → e3");
    ua.answer(&n, 200).await;
    assert_eq!(etags(&n), (Some(e2), Some(e3)), "{}", n.text);
    assert!(
        ua.next_notify(Duration::from_millis(500)).await.is_none(),
        "nothing reported twice"
    );
    kill(&mut child);
}
