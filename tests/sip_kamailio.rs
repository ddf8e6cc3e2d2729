//! xcapd's notifier behind a real Kamailio (Debian `kamailio`) as the SIP/IP core (issue #13
//! scope 8; RFC 3325, RFC 3261 §16.12 loose routing, RFC 5875): the subscriber talks to
//! Kamailio only; Kamailio asserts the identity and record-routes; xcapd (authentication on,
//! Kamailio a trusted peer) accepts the SUBSCRIBE without a Digest challenge and sends its
//! NOTIFYs back through Kamailio. `make deps` and `.ci/run` install Kamailio.

mod common;
use common::sip_ua::{resource_lists, Ua};
use common::*;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const DOC: &str = "resource-lists/users/sip:alice@example.com/index";

/// Alice's PUT of her buddy list (authentication is on: through the XDMS in process).
async fn put_as_alice(s: &TestServer, entry: &str) -> u16 {
    s.put_as("sip:alice@example.com", DOC, buddy_list(&[entry]))
        .await
}

struct Kamailio {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    fn start(port: u16, xcapd: SocketAddr) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let cfg = std::fs::read_to_string(repo_path("tests/fixtures/kamailio-xcap-diff.cfg"))
            .unwrap()
            .replace("KAMAILIO_PORT", &port.to_string())
            .replace("XCAPD_PORT", &xcapd.port().to_string());
        let path = dir.path().join("kamailio.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&path)
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kamailio is installed (Debian package kamailio; `make deps` installs it)");
        Kamailio { child, _dir: dir }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM, so the main process stops its children too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_through_kamailio_with_asserted_identity() {
    let s = TestServer::start_with(|c| {
        c.server.auth = xcapd::config::AuthMode::Required;
        c.sip.trusted_peers = vec!["127.0.0.1/32".into()];
        c.sip.notify_interval_ms = 0;
    })
    .await;
    let xcapd = s.running().sip_addr.unwrap();
    assert_eq!(put_as_alice(&s, "sip:bob@example.com").await, 201);
    let kport = free_port();
    let kamailio = Kamailio::start(kport, xcapd);
    let proxy: SocketAddr = format!("127.0.0.1:{kport}").parse().unwrap();
    let mut ua = Ua::new(proxy, "sip:alice@example.com").await;
    let body = resource_lists(&["resource-lists/users/sip:alice@example.com/"]);
    // Kamailio takes a moment to listen: retry the first SUBSCRIBE until it answers.
    let mut answered = None;
    for _ in 0..50 {
        let req = ua.subscribe("xcap-diff", Some(600), "", &body);
        ua.send(&req).await;
        if let Some(m) = ua.recv(Duration::from_millis(200)).await {
            answered = Some(m);
            break;
        }
    }
    let mut first = answered.expect("Kamailio answers");
    let mut notifies = Vec::new();
    while first.is_notify() || first.status().is_some_and(|c| c < 200) {
        if first.is_notify() {
            notifies.push(first);
        }
        first = ua
            .recv(Duration::from_secs(5))
            .await
            .expect("the final answer");
    }
    assert_eq!(
        first.status(),
        Some(200),
        "no Digest challenge: {}",
        first.text
    );
    assert!(
        first.header("Record-Route").is_some(),
        "the answer came through Kamailio: {}",
        first.text
    );
    let n = match notifies.pop() {
        Some(n) => n,
        None => ua
            .next_notify(Duration::from_secs(5))
            .await
            .expect("the initial NOTIFY"),
    };
    assert!(
        n.headers("Via").len() >= 2,
        "the NOTIFY was routed through Kamailio: {}",
        n.text
    );
    assert!(n.body().contains("new-etag"), "{}", n.text);
    ua.answer(&n, 200).await;

    // A change through XCAP reaches the subscriber through Kamailio too.
    assert_eq!(put_as_alice(&s, "sip:carol@example.com").await, 200);
    let n = ua
        .next_notify(Duration::from_secs(5))
        .await
        .expect("the change NOTIFY");
    ua.answer(&n, 200).await;
    assert!(n.body().contains("previous-etag"), "{}", n.text);
    assert_eq!(s.running().notifier.as_ref().unwrap().subscriptions(), 1);
    drop(kamailio);
    s.stop().await;
}
