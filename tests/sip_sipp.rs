//! SIPp (Debian `sip-tester`) as a real SIP peer against the endpoint over UDP and TCP: OPTIONS,
//! a SUBSCRIBE for an unserved package and an unserved method, 50 times each, all answered
//! as RFC 3261 §8.2 / RFC 6665 §4.2.1.1 say. `make deps` and `.ci/run` install SIPp.

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
            "sipp over {transport} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    s.stop().await;
}
