//! Two `xcapd serve` processes on one PostgreSQL database (issue #15 scope 3; RFC 4825 §7.11
//! ETags, RFC 5875): writers split over the nodes never lose an update (8 clients × 15 element
//! inserts → 120 of 120), and the xcap-diff notifier of one node reports a write made through
//! the other (each node's change feed wakes on every commit: NOTIFY, then the log).
//! Built when the tests have a database (`XCAPD_TEST_POSTGRES_URL`, cfg `xcapd_pg`).
#![cfg(xcapd_pg)]

mod common;
use common::sip_ua::*;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

const ALICE: &str = "sip:alice@example.com";
const DOC: &str = "resource-lists/users/sip:alice@example.com/index";
const WAIT: Duration = Duration::from_secs(10);

/// A URL of the test database whose connections use a fresh schema of their own.
async fn fresh_database() -> String {
    let url = std::env::var("XCAPD_TEST_POSTGRES_URL").expect("XCAPD_TEST_POSTGRES_URL");
    let schema = format!("nodes_{}_{}", std::process::id(), free_port());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the test database");
    let running = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    drop(client);
    let _ = running.await;
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// One node: the real binary in development mode on its own ports and data directory.
struct Node {
    child: std::process::Child,
    root: String,
    sip: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn node(dir: &std::path::Path, name: &str, database: &str) -> Node {
    let (port, sip_port) = (free_port(), free_port());
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[storage]\nbackend = \"postgres\"\npostgres_url = \"{database}\"\n[sip]\nnotify_interval_ms = 0\n"
        ),
    )
    .unwrap();
    let child = xcapd_serve()
        .arg("--config")
        .arg(&config)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--sip", &format!("127.0.0.1:{sip_port}")])
        .arg("--data")
        .arg(dir.join(format!("{name}-data")))
        .spawn()
        .unwrap();
    let root = format!("http://127.0.0.1:{port}/xcap-root");
    wait_ready(&reqwest::Client::new(), &root).await;
    Node {
        child,
        root,
        sip: format!("127.0.0.1:{sip_port}").parse().unwrap(),
    }
}

/// PUT `body` (`content_type`) at `root`/`selector`: the status.
async fn put(http: &reqwest::Client, root: &str, selector: &str, ct: &str, body: String) -> u16 {
    http.put(format!("{root}/{selector}"))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Two nodes on a fresh schema (and the directory holding their data).
async fn two_nodes() -> (tempfile::TempDir, Node, Node) {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database().await;
    let a = node(dir.path(), "a", &database).await;
    let b = node(dir.path(), "b", &database).await;
    (dir, a, b)
}

fn entry_selector(uri: &str) -> String {
    format!("{DOC}/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B@uri=%22{uri}%22%5D")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_two_nodes_lose_no_update() {
    let (_dir, a, b) = two_nodes().await;
    let http = reqwest::Client::new();
    let rl = "application/resource-lists+xml";
    assert_eq!(put(&http, &a.root, DOC, rl, buddy_list(&[])).await, 201);

    let mut writers = tokio::task::JoinSet::new();
    for client in 0..8 {
        let root = if client % 2 == 0 {
            a.root.clone()
        } else {
            b.root.clone()
        };
        let http = http.clone();
        writers.spawn(async move {
            let mut codes = Vec::new();
            for n in 0..15 {
                let uri = format!("sip:w{client}_{n}@example.com");
                let body = format!("<entry uri=\"{uri}\"/>");
                let el = "application/xcap-el+xml";
                codes.push(put(&http, &root, &entry_selector(&uri), el, body).await);
            }
            codes
        });
    }
    while let Some(codes) = writers.join_next().await {
        let codes = codes.unwrap();
        assert!(codes.iter().all(|c| *c == 201), "{codes:?}");
    }
    for root in [&a.root, &b.root] {
        let doc = http
            .get(format!("{root}/{DOC}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(doc.matches("<entry ").count(), 120, "{doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_reports_a_write_made_on_another_node() {
    let (_dir, a, b) = two_nodes().await;
    let http = reqwest::Client::new();
    let rl = "application/resource-lists+xml";
    assert_eq!(
        put(&http, &a.root, DOC, rl, buddy_list(&["sip:x@example.com"])).await,
        201
    );

    // Alice subscribes at node B.
    let mut ua = Ua::new(b.sip, ALICE).await;
    let (_, first) = ua.subscribed("xcap-diff", "", &[DOC]).await;
    assert!(first.body().contains("new-etag="), "{}", first.body());

    // A write through node A reaches her from node B.
    let uri = "sip:y@example.com";
    let el = "application/xcap-el+xml";
    let status = put(
        &http,
        &a.root,
        &entry_selector(uri),
        el,
        format!("<entry uri=\"{uri}\"/>"),
    )
    .await;
    assert_eq!(status, 201);
    let notify = ua.next_notify(WAIT).await.expect("a NOTIFY from node B");
    ua.answer(&notify, 200).await;
    let etag = http
        .get(format!("{}/{DOC}", a.root))
        .send()
        .await
        .unwrap()
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_string())
        .unwrap();
    assert!(
        notify.body().contains(&format!("new-etag=\"{etag}\"")),
        "{}",
        notify.body()
    );
}
