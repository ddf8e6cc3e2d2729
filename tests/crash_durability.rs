//! kill -9 during a write load loses no acknowledged write (issue #2 acceptance; design.md §4:
//! a write is acknowledged only once durable). Runs the real `xcapd` binary as a child process.

mod common;
use common::{free_port, wait_ready, xcapd_serve};

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const RL: &str = "application/resource-lists+xml";
const EL: &str = "application/xcap-el+xml";

fn spawn(port: u16, data: &std::path::Path) -> Child {
    xcapd_serve()
        .env("XCAPD_SIP", "127.0.0.1:0")
        .args(["--http", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .spawn()
        .expect("spawn xcapd")
}

fn doc(counter: u32) -> String {
    format!(
        "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"v{counter}\"/></resource-lists>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_dash_nine_loses_no_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/xcap-root");
    let client = reqwest::Client::new();
    let mut child = spawn(port, data.path());
    wait_ready(&client, &base).await;
    // The list that element inserts go to.
    let list_doc = format!("{base}/resource-lists/users/sip:ins@example.com/index");
    let r = client
        .put(&list_doc)
        .header("Content-Type", RL)
        .body("<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"l\"/></resource-lists>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4u32 {
        let client = client.clone();
        let base = base.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            // (document URL -> last acknowledged counter and ETag), acknowledged inserts.
            let mut acked: HashMap<String, (u32, String)> = HashMap::new();
            let mut inserts = Vec::new();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let url = format!("{base}/resource-lists/users/sip:w{w}-{}@example.com/index", n % 5);
                let res = client.put(&url).header("Content-Type", RL).body(doc(n)).send().await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        let etag = r.headers()["etag"].to_str().unwrap().trim_matches('"').to_string();
                        acked.insert(url, (n, etag));
                    }
                    _ => break,
                }
                let uri = format!("sip:w{w}-{n}@example.com");
                let ins = format!("{base}/resource-lists/users/sip:ins@example.com/index/~~/resource-lists/list/entry%5B@uri=%22{uri}%22%5D");
                match client.put(&ins).header("Content-Type", EL).body(format!("<entry uri=\"{uri}\"/>")).send().await {
                    Ok(r) if r.status().as_u16() == 201 => inserts.push(uri),
                    _ => break,
                }
            }
            (acked, inserts)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL mid-load: no chance to flush.
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = HashMap::new();
    let mut inserts = Vec::new();
    for t in tasks {
        let (a, i) = t.await.unwrap();
        acked.extend(a);
        inserts.extend(i);
    }
    assert!(
        acked.len() >= 4 && inserts.len() >= 4,
        "the load ran ({} docs, {} inserts)",
        acked.len(),
        inserts.len()
    );

    let mut child = spawn(port, data.path());
    wait_ready(&client, &base).await;
    for (url, (counter, etag)) in &acked {
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{url} lost");
        let got_etag = r.headers()["etag"]
            .to_str()
            .unwrap()
            .trim_matches('"')
            .to_string();
        let body = r.text().await.unwrap();
        let stored: u32 = body
            .split("name=\"v")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        // The document holds the acknowledged version, or a later one whose 2xx was cut off
        // by the kill; never an older one.
        assert!(
            stored >= *counter,
            "{url}: acknowledged v{counter}, found v{stored}"
        );
        if stored == *counter {
            assert_eq!(&got_etag, etag);
        }
    }
    let list = client
        .get(&list_doc)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for uri in &inserts {
        assert!(
            list.contains(uri.as_str()),
            "acknowledged insert {uri} lost"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue #2 scope 1: SIGTERM stops the server gracefully (exit status 0, storage flushed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/xcap-root");
    let client = reqwest::Client::new();
    let mut child = spawn(port, data.path());
    wait_ready(&client, &base).await;
    let url = format!("{base}/resource-lists/users/sip:t@example.com/index");
    let r = client
        .put(&url)
        .header("Content-Type", RL)
        .body(doc(7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "graceful exit: {status:?}");
    let mut child = spawn(port, data.path());
    wait_ready(&client, &base).await;
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("name=\"v7\""));
    child.kill().unwrap();
    child.wait().unwrap();
}
