//! SIPp (Debian `sip-tester`) as a real SIP peer: probes of the endpoint over UDP and TCP
//! (OPTIONS, a SUBSCRIBE for an unserved package and an unserved method, 50 times each, all
//! answered as RFC 3261 §8.2 / RFC 6665 §4.2.1.1 say), and xcap-diff subscribers (RFC 5875)
//! with an XCAP PUT by curl in between: one that unsubscribes at the end, one that answers a
//! NOTIFY 481 and one that never answers it; a UA registering with xcapd as its registrar
//! (issue #14), and SIPp sender and receiver of a pager-mode CPIM message through the IM
//! Server. `make deps` and `.ci/run` install SIPp.

mod common;
use common::*;
use std::process::Command;

fn sipp(server: std::net::SocketAddr, transport: &str) -> std::process::Output {
    let scenario = repo_path("tests/sipp/options_subscribe.xml");
    let port = free_port();
    Command::new("sipp")
        .arg(server.to_string())
        .args(["-sf"])
        .arg(&scenario)
        .args(["-t", transport, "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", "50", "-l", "10", "-r", "200"])
        .args([
            "-recv_timeout",
            "5000",
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
        ])
        .args(["-trace_err", "-error_file", "/dev/stderr"])
        .output()
        .expect("sipp is installed (Debian package sip-tester; `make deps` installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_probes_over_udp_and_tcp() {
    let s = TestServer::start().await;
    let server = s.running().sip_addr.unwrap();
    for transport in ["u1", "t1"] {
        let out = tokio::task::spawn_blocking(move || sipp(server, transport))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "sipp over {transport} failed: {}",
            report(&out)
        );
    }
    s.stop().await;
}

/// Runs `scenario` once against `server` with `keys` (`-key name value`).
fn sipp_once(
    server: std::net::SocketAddr,
    scenario: &str,
    transport: &str,
    keys: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = Command::new("sipp");
    cmd.arg(server.to_string())
        .arg("-sf")
        .arg(repo_path(scenario))
        .args([
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
        ])
        .args(["-m", "1", "-recv_timeout", "10000", "-timeout", "60s"])
        .args(["-timeout_error", "-nostdin"])
        .args(["-trace_err", "-error_file", "/dev/stderr"]);
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    cmd.output()
        .expect("sipp is installed (Debian package sip-tester; `make deps` installs it)")
}

fn report(out: &std::process::Output) -> String {
    format!(
        "{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    )
}

const ALICE_DOC: &str = "resource-lists/users/sip:alice@example.com/index";

/// A server with Alice's buddy list, quick NOTIFYs and short SIP timers.
async fn xcap_diff_server() -> TestServer {
    let s = TestServer::start_with(|c| {
        c.sip.notify_interval_ms = 0;
        c.sip.timer_t1_ms = 50;
    })
    .await;
    let r = s
        .put(
            ALICE_DOC,
            "application/resource-lists+xml",
            buddy_list(&["sip:bob@example.com"]),
        )
        .await;
    assert_eq!(r.status, 201);
    s
}

async fn wait_for_no_subscriptions(s: &TestServer, within: std::time::Duration) {
    let notifier = s.running().notifier.clone().unwrap();
    let deadline = std::time::Instant::now() + within;
    while notifier.subscriptions() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(notifier.subscriptions(), 0, "the subscription is gone");
    assert!(s.running().subscriptions.all().await.unwrap().is_empty());
}

// XE-10, XD-14, XE-23: SIPp subscribes (over UDP, then TCP), sees the initial state, the change
// a curl PUT made (chained from the reported ETag, with the new entry), unsubscribes and gets
// `terminated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_subscriber_sees_a_curl_put() {
    // Over TCP the NOTIFYs come back on SIPp's own connection (flow reuse).
    for transport in ["u1", "t1"] {
        let s = xcap_diff_server().await;
        let server = s.running().sip_addr.unwrap();
        let url = s.url(ALICE_DOC);
        let out = tokio::task::spawn_blocking(move || {
            sipp_once(
                server,
                "tests/sipp/xcap_diff_subscriber.xml",
                transport,
                &[("xcap", &url)],
            )
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "sipp subscriber over {transport} failed: {}",
            report(&out)
        );
        let r = s.get(ALICE_DOC).await;
        assert!(
            r.body.contains("sip:carol@example.com"),
            "curl's PUT landed"
        );
        wait_for_no_subscriptions(&s, std::time::Duration::from_secs(2)).await;
        s.stop().await;
    }
}

// RFC 6665 §4.2.2, XE-17: a NOTIFY answered 481, or never answered (Timer F: 64 × 50 ms here),
// removes the subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_subscriber_that_refuses_or_goes_silent() {
    for (scenario, within) in [
        ("tests/sipp/xcap_diff_refusing.xml", 2),
        ("tests/sipp/xcap_diff_silent.xml", 8),
    ] {
        let s = xcap_diff_server().await;
        let server = s.running().sip_addr.unwrap();
        let url = s.url(ALICE_DOC);
        let out = tokio::task::spawn_blocking(move || {
            sipp_once(server, scenario, "u1", &[("xcap", &url)])
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{scenario}: {}", report(&out));
        wait_for_no_subscriptions(&s, std::time::Duration::from_secs(within)).await;
        s.stop().await;
    }
}

// Issue #14 scope 1, RFC 3261 §10.3: SIPp registers with xcapd as its registrar (over UDP and
// TCP): a contact, a second one, both listed with their durations, then `Contact: *` removes
// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_and_unregisters() {
    let s = TestServer::start().await;
    let server = s.running().sip_addr.unwrap();
    for transport in ["u1", "t1"] {
        let out = tokio::task::spawn_blocking(move || {
            sipp_once(server, "tests/sipp/register.xml", transport, &[])
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "sipp register over {transport} failed: {}",
            report(&out)
        );
    }
    s.stop().await;
}

// Issue #14 scope 2 (RFC 3428, IM-01, IM-03): SIPp as both user agents of a pager-mode
// exchange. A SIPp receiver is registered as Bob (his rules allow the SIPp sender); a SIPp
// sender's CPIM MESSAGE reaches it byte for byte with the sender asserted and no Contact, and
// the sender gets the receiver's 200 (no Contact, no body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_sender_reaches_a_sipp_receiver() {
    let s = TestServer::start().await;
    let server = s.running().sip_addr.unwrap();
    let rules = r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules">
  <cr:rule id="sipp"><cr:conditions><cr:identity><cr:one id="sip:sipp-alice@example.com"/></cr:identity></cr:conditions>
  <cr:actions><im:im-handling>allow</im:im-handling></cr:actions></cr:rule>
</cr:ruleset>"#;
    let r = s
        .put(
            "im-rules/users/sip:bob@example.com/index",
            "application/auth-policy+xml",
            rules,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let receiver_port = free_port();
    let receiver = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .arg("-sf")
            .arg(repo_path("tests/sipp/im_receiver.xml"))
            .args([
                "-t",
                "u1",
                "-i",
                "127.0.0.1",
                "-p",
                &receiver_port.to_string(),
            ])
            .args(["-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-error_file", "/dev/stderr"])
            .output()
            .expect("sipp is installed")
    });
    // SIPp listens within moments; Bob's registration is made for it (development mode: the
    // From URI is the user).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut bob = common::sip_ua::Ua::new(server, "sip:bob@example.com").await;
    let contact = format!("sip:bob@127.0.0.1:{receiver_port}");
    let register = bob.register(&[&contact], Some(600), "");
    assert_eq!(bob.request(&register).await.0.status(), Some(200));
    // SIPp takes a moment to listen: the sender retries until its MESSAGE is answered 200.
    let mut sent = None;
    for _ in 0..10 {
        let out = tokio::task::spawn_blocking(move || {
            sipp_once(server, "tests/sipp/im_sender.xml", "u1", &[])
        })
        .await
        .unwrap();
        if out.status.success() {
            sent = Some(out);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(sent.is_some(), "the SIPp sender never got its 200");
    let received = receiver.await.unwrap();
    assert!(
        received.status.success(),
        "sipp receiver: {}",
        report(&received)
    );
    s.stop().await;
}
