//! Connection-level bounds of the XCAP listener over real sockets (issue #11 item 6): a
//! request head that never ends is closed after `limits.header_read_timeout_secs`, and an
//! address holding `limits.max_connections_per_address` connections gets no more.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes; the bytes read.
async fn read_to_close(c: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slow_request_head_is_closed_after_the_header_timeout() {
    let s = TestServer::start_with(|c| c.limits.header_read_timeout_secs = 1).await;
    let addr = s.running().http_addr;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One more header line every 300 ms: the head never ends. The server must hang up
    // (well before the 20 s this loop would otherwise last).
    let started = Instant::now();
    let mut closed = false;
    for i in 0..60 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow
            .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut b = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut b)).await {
            // Closed (0) or answered with an error status before closing.
            closed = n == 0 || String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 4");
            if closed {
                break;
            }
        }
    }
    assert!(
        closed,
        "a never-ending request head was held for {:?}",
        started.elapsed()
    );
    // A normal request on a new connection is served.
    assert_eq!(s.get("xcap-caps/global/index").await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_closed() {
    let s = TestServer::start_with(|c| c.limits.max_connections_per_address = 3).await;
    let addr = s.running().http_addr;
    // Three half-sent requests hold three connections.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_to_close(&mut fourth, Duration::from_secs(10)).await;
    assert_eq!(answer, Some(Vec::new()), "closed without an answer");
    // Releasing one makes room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = TcpStream::connect(addr).await.unwrap();
    again
        .write_all(b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut again, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(held);
    s.stop().await;
}
