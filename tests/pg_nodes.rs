//! Two `xcapd serve` processes on one PostgreSQL database (issue #15 scope 3; RFC 4825 §7.11
//! ETags, RFC 5875): writers split over the nodes never lose an update (8 clients × 15 element
//! inserts → 120 of 120), an If-Match edit through one node names the version the other just
//! wrote (412 never comes from a stale version), and the xcap-diff notifier of one node reports a write made through
//! the other (each node's change feed wakes on every commit: NOTIFY, then the log); a message
//! stored through one node reaches its recipient once when it registers on the other, one
//! node delivers to a user registered at the other, and one node's decisions follow a rule
//! written through the other at once; the subscriptions of a killed node are ended by a live
//! one; users added with the command line are known to every node.
//! Built when the tests have a database (`XCAPD_TEST_POSTGRES_URL`, cfg `xcapd_pg`).
#![cfg(xcapd_pg)]

mod common;
use common::sip_ua::*;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const CAROL: &str = "sip:carol@example.com";
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
    /// The admin API (metrics) and its token's file.
    admin: String,
    token: std::path::PathBuf,
}

impl Node {
    /// The node's Prometheus metrics.
    async fn metrics(&self) -> String {
        let token = std::fs::read_to_string(&self.token).unwrap();
        common::admin_metrics(&reqwest::Client::new(), &self.admin, &token).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn node(dir: &std::path::Path, name: &str, database: &str) -> Node {
    node_with(dir, name, database, "none", "").await
}

/// [`node`] with the authentication mode `auth` (`XCAPD_AUTH`) and `extra` configuration
/// lines (after the `[storage]` lines: more of them, or other sections).
async fn node_with(
    dir: &std::path::Path,
    name: &str,
    database: &str,
    auth: &str,
    extra: &str,
) -> Node {
    let (port, sip_port, admin_port) = (free_port(), free_port(), free_port());
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[storage]\nbackend = \"postgres\"\npostgres_url = \"{database}\"\n{extra}\n[sip]\nnotify_interval_ms = 0\n"
        ),
    )
    .unwrap();
    let child = xcapd_serve()
        .env("XCAPD_AUTH", auth)
        .env("XCAPD_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .arg("--config")
        .arg(&config)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--sip", &format!("127.0.0.1:{sip_port}")])
        .arg("--data")
        .arg(dir.join(format!("{name}-data")))
        .spawn()
        .unwrap();
    let root = format!("http://127.0.0.1:{port}/xcap-root");
    if auth == "none" {
        wait_ready(&reqwest::Client::new(), &root).await;
    } else {
        wait_listening(&reqwest::Client::new(), &root).await;
    }
    Node {
        child,
        root,
        sip: format!("127.0.0.1:{sip_port}").parse().unwrap(),
        admin: format!("http://127.0.0.1:{admin_port}"),
        token: dir.join(format!("{name}-data")).join("admin-token"),
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

/// The ETag (unquoted) of Alice's list at the node under `root`.
async fn etag_of(http: &reqwest::Client, root: &str) -> String {
    http.get(format!("{root}/{DOC}"))
        .send()
        .await
        .unwrap()
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_string())
        .unwrap()
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

/// `request` with If-Match `etag`: the status and the new ETag.
async fn send_if_match(request: reqwest::RequestBuilder, etag: &str) -> (u16, Option<String>) {
    let response = request
        .header("If-Match", format!("\"{etag}\""))
        .send()
        .await
        .unwrap();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_string());
    (response.status().as_u16(), etag)
}

// RFC 4825 §7.11 across nodes: a node edits the version it holds without first asking the
// database for its head, so it may hold one the other node just replaced; an If-Match naming
// the version the other node acknowledged must still succeed (the precondition is decided on
// the current version, never on a stale one: 412 here would be wrong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_edits_alternating_between_nodes_see_the_latest_version() {
    let (_dir, a, b) = two_nodes().await;
    let http = reqwest::Client::new();
    let rl = "application/resource-lists+xml";
    assert_eq!(put(&http, &a.root, DOC, rl, buddy_list(&[])).await, 201);
    let mut etag = etag_of(&http, &b.root).await;
    for n in 0..60 {
        let root = if n % 2 == 0 { &a.root } else { &b.root };
        let uri = format!("sip:alt{n}@example.com");
        let request = http
            .put(format!("{root}/{}", entry_selector(&uri)))
            .header("Content-Type", "application/xcap-el+xml")
            .body(format!("<entry uri=\"{uri}\"/>"));
        let (status, next) = send_if_match(request, &etag).await;
        assert_eq!(status, 201, "edit {n} through node {}", n % 2);
        etag = next.expect("an ETag");
    }
    let (status, _) = send_if_match(http.delete(format!("{}/{DOC}", a.root)), &etag).await;
    assert_eq!(
        status, 200,
        "the delete names the version node B wrote last"
    );
    let gone = http.get(format!("{}/{DOC}", b.root)).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 404);
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
    let etag = etag_of(&http, &a.root).await;
    assert!(
        notify.body().contains(&format!("new-etag=\"{etag}\"")),
        "{}",
        notify.body()
    );
    // Issue #15 scope 6: node B measured how long the change took to reach it, and shows its
    // database pool.
    let metrics = b.metrics().await;
    let lag = metrics
        .lines()
        .find_map(|l| l.strip_prefix("xcapd_change_feed_lag_seconds_count{feed=\"local\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(lag.is_some_and(|n| n >= 1), "{metrics}");
    assert!(
        metrics.contains("xcapd_storage_pool_connections{state=\"in_use\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("xcapd_storage_pool_max_connections 16"),
        "{metrics}"
    );
}

/// Alice's UA at `node`, having sent `text` to Bob, who is not registered (stored: 202).
async fn alice_stores(node: &Node, text: &str) -> Ua {
    let mut alice = Ua::new(node.sip, ALICE).await;
    let r = alice
        .request(&alice.message(1, BOB, "text/plain", "", text))
        .await
        .0;
    assert_eq!(r.status(), Some(202), "{}", r.text);
    alice
}

/// Bob's UA registered at `node` for 600 s, and the requests that came before the 200.
async fn bob_registers(node: &Node) -> (Ua, Vec<Msg>) {
    let mut bob = Ua::new(node.sip, BOB).await;
    let contact = format!("sip:bob@{}", bob.local());
    let register = bob.register(&[&contact], Some(600), "");
    let (resp, early) = bob.request(&register).await;
    assert_eq!(resp.status(), Some(200), "{}", resp.text);
    (bob, early)
}

/// The MESSAGE requests `ua` receives within `wait` (each answered 200), with `early` first.
async fn messages_within(ua: &Ua, early: Vec<Msg>, wait: Duration) -> Vec<Msg> {
    let mut got = Vec::new();
    for m in early {
        ua.answer(&m, 200).await;
        got.push(m);
    }
    let end = tokio::time::Instant::now() + wait;
    while let Some(left) = end.checked_duration_since(tokio::time::Instant::now()) {
        let Some(m) = ua.recv(left).await else { break };
        if m.status().is_none() {
            ua.answer(&m, 200).await;
            got.push(m);
        }
    }
    got
}

/// The Via branch of a request (a retransmission repeats it).
fn branch(m: &Msg) -> String {
    let via = m.header("Via").unwrap_or_default();
    via.split(";branch=")
        .nth(1)
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string()
}

// Issue #15 scope 3 (IM-15/IM-16 across nodes): Alice writes through node A to Bob, who is
// offline: stored (202). Bob registers on node B: node B claims the message from the shared
// store and delivers it, once; node A, where Bob is not registered, never does. Then Bob's
// rules, rewritten through node A, decide Alice's very next MESSAGE through node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_on_one_node_is_delivered_once_from_the_other() {
    let (_dir, a, b) = two_nodes().await;
    let http = reqwest::Client::new();
    put_im_rules(&http, &a.root, BOB, &allow_only(&[ALICE])).await;

    let text = "stored on node A";
    let alice = alice_stores(&a, text).await;

    let (bob, early) = bob_registers(&b).await;
    let got = messages_within(&bob, early, Duration::from_secs(4)).await;
    let mut branches: Vec<String> = got.iter().map(branch).collect();
    branches.dedup();
    assert_eq!(branches.len(), 1, "delivered once: {got:?}");
    assert!(got[0].text.starts_with("MESSAGE "), "{}", got[0].text);
    assert!(got[0].body().contains(text), "{}", got[0].body());
    assert_eq!(got[0].from.port(), b.sip.port(), "delivered by node B");
    let listed = format!(
        "{}/org.openmobilealliance.deferred-list/users/{BOB}/deferred-list",
        a.root
    );
    let mut left = usize::MAX;
    for _ in 0..50 {
        let r = http.get(&listed).send().await.unwrap();
        left = match r.status().as_u16() {
            404 => 0,
            _ => r.text().await.unwrap().matches("<history ").count(),
        };
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "nothing waits any more");

    // A rule written through node A decides the next MESSAGE through node B.
    let mut alice_b = Ua::new(b.sip, ALICE).await;
    put_im_rules(&http, &a.root, BOB, &allow_only(&[CAROL])).await;
    let r = alice_b
        .request(&alice_b.message(2, BOB, "text/plain", "", "now blocked"))
        .await
        .0;
    assert_eq!(r.status(), Some(403), "{}", r.text);
    put_im_rules(&http, &a.root, BOB, &allow_only(&[ALICE])).await;
    let message = alice_b.message(3, BOB, "text/plain", "", "allowed again");
    alice_b.send(&message).await;
    let live = messages_within(&bob, Vec::new(), Duration::from_secs(2)).await;
    assert!(
        live.iter().any(|m| m.body().contains("allowed again")),
        "{live:?}"
    );

    // Node A knows Bob is registered (at node B): its MESSAGE is delivered at once, not
    // stored for later.
    let message = alice.message(4, BOB, "text/plain", "", "live through node A");
    alice.send(&message).await;
    let live = messages_within(&bob, Vec::new(), Duration::from_secs(2)).await;
    assert!(
        live.iter()
            .any(|m| m.body().contains("live through node A") && m.from.port() == a.sip.port()),
        "{live:?}"
    );
    let answer = alice.recv(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(answer.status(), Some(200), "{}", answer.text);
}

/// `xcapd <args>` on the PostgreSQL database `database`: its standard output.
fn xcapd_on(database: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xcapd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XCAPD_STORAGE", "postgres")
        .env("XCAPD_POSTGRES_URL", database)
        .env("XCAPD_LOG", "warn")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

// Issue #15 scopes 1 and 6: `xcapd migrate` brings a new database to the binary's schema
// (then finds it up to date); a user added with `xcapd user add` while a node serves is
// authenticated by that node at once (users live in the database, not in a node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_users_added_while_nodes_serve() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database().await;
    assert!(xcapd_on(&database, &["migrate"]).contains("from version 0 to"));
    assert!(xcapd_on(&database, &["migrate"]).contains("up to date"));
    let a = node_with(dir.path(), "a", &database, "required", "").await;
    let http = reqwest::Client::new();
    let url = format!("{}/{DOC}", a.root);
    let mut alice = digest_client("alice@example.com", "secret 1");
    let body = buddy_list(&[]);
    assert_eq!(alice.send(&http, "PUT", &url, Some(&body)).await.0, 401);
    xcapd_on(&database, &["user", "add", ALICE, "--password", "secret 1"]);
    assert_eq!(alice.send(&http, "PUT", &url, Some(&body)).await.0, 201);
    assert!(xcapd_on(&database, &["user", "list"]).starts_with(ALICE));
}

// Issue #15 scope 3 (RFC 6665 §4.2.2): node A, serving Alice's subscription, is killed; node B
// notices that A is no longer heard of (lease 3 s) and ends the subscription with a final
// NOTIFY, `terminated;reason=deactivated`, carrying the change made through B meanwhile, so
// Alice subscribes again, at a live node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_of_a_dead_node_are_ended_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database().await;
    let lease = "node_lease_secs = 3";
    let a = node_with(dir.path(), "a", &database, "none", lease).await;
    let b = node_with(dir.path(), "b", &database, "none", lease).await;
    let http = reqwest::Client::new();
    let rl = "application/resource-lists+xml";
    assert_eq!(put(&http, &b.root, DOC, rl, buddy_list(&[])).await, 201);
    let mut ua = Ua::new(a.sip, ALICE).await;
    ua.subscribed("xcap-diff", "", &[DOC]).await;

    drop(a); // kill -9
    let uri = "sip:while-a-was-dead@example.com";
    let el = "application/xcap-el+xml";
    let body = format!("<entry uri=\"{uri}\"/>");
    assert_eq!(
        put(&http, &b.root, &entry_selector(uri), el, body).await,
        201
    );
    let etag = etag_of(&http, &b.root).await;

    let last = ua
        .next_notify(Duration::from_secs(20))
        .await
        .expect("a final NOTIFY from node B");
    ua.answer(&last, 200).await;
    assert_eq!(last.from.port(), b.sip.port(), "sent by node B");
    assert_eq!(
        last.header("Subscription-State"),
        Some("terminated;reason=deactivated")
    );
    assert!(
        last.body().contains(&format!("new-etag=\"{etag}\"")),
        "{}",
        last.body()
    );
    // Subscribing again at node B works.
    let mut again = Ua::new(b.sip, ALICE).await;
    let (_, first) = again.subscribed("xcap-diff", "", &[DOC]).await;
    assert!(first.body().contains(&etag), "{}", first.body());
}

// Issue #15 scope 5: `xcapd import openxcap --postgres` reads the incumbent's PostgreSQL tables
// (OpenSIPS layout: `doc` as bytea) into the nodes' database while a node serves; the node
// serves the document to its owner at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openxcap_postgres_database_is_imported_while_a_node_serves() {
    let dir = tempfile::tempdir().unwrap();
    let source = fresh_database().await;
    let (client, connection) = tokio_postgres::connect(&source, tokio_postgres::NoTls)
        .await
        .unwrap();
    let running = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE subscriber (id SERIAL PRIMARY KEY,
                 username VARCHAR(64) NOT NULL DEFAULT '', domain VARCHAR(64) NOT NULL DEFAULT '',
                 password VARCHAR(25) NOT NULL DEFAULT '', ha1 VARCHAR(64) NOT NULL DEFAULT '',
                 ha1b VARCHAR(64) NOT NULL DEFAULT '');
             CREATE TABLE xcap (id SERIAL PRIMARY KEY, username VARCHAR(64) NOT NULL,
                 domain VARCHAR(64) NOT NULL, doc BYTEA NOT NULL, doc_type INTEGER NOT NULL,
                 etag VARCHAR(64) NOT NULL, source INTEGER NOT NULL DEFAULT 0,
                 doc_uri VARCHAR(255) NOT NULL, port INTEGER NOT NULL DEFAULT 0);
             INSERT INTO subscriber (username, domain, password) VALUES ('bob', 'example.com', 'pw');",
        )
        .await
        .unwrap();
    let doc = buddy_list(&[ALICE]);
    client
        .execute(
            "INSERT INTO xcap (username, domain, doc, doc_type, etag, doc_uri) \
             VALUES ('bob', 'example.com', $1, 4, 'x', 'index')",
            &[&doc.as_bytes()],
        )
        .await
        .unwrap();
    drop(client);
    let _ = running.await;

    let database = fresh_database().await;
    let a = node(dir.path(), "a", &database).await;
    let data = dir.path().join("import-data");
    let out = xcapd_on(
        &database,
        &[
            "import",
            "openxcap",
            "--postgres",
            &source,
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.starts_with("imported 1 documents and 1 users; refused 0 documents and 0 users"),
        "{out}"
    );
    let got = reqwest::get(format!(
        "{}/resource-lists/users/sip:bob@example.com/index",
        a.root
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(got, doc);
    assert!(xcapd_on(&database, &["user", "list"]).contains("sip:bob@example.com"));
}

// Issue #15 scope 3: node A dies in the middle of a delivery it claimed (Bob's UA has not
// answered yet); once the claim's lease lapses (2 s here), node B offers the message again and
// Bob gets it from B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_a_dead_node_claimed_is_made_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let database = fresh_database().await;
    let lease = "[im]\ndelivery_lease_secs = 2";
    let a = node_with(dir.path(), "a", &database, "none", lease).await;
    let b = node_with(dir.path(), "b", &database, "none", lease).await;
    let http = reqwest::Client::new();
    put_im_rules(&http, &a.root, BOB, &allow_only(&[ALICE])).await;
    let text = "claimed by A";
    alice_stores(&a, text).await;

    // Bob registers at A with a UA that does not answer yet: A claims the message, sends it.
    let (bob, early) = bob_registers(&a).await;
    let mut first = early.into_iter().find(|m| m.status().is_none());
    while first.is_none() {
        let m = bob
            .recv(Duration::from_secs(5))
            .await
            .expect("A's delivery");
        first = m.status().is_none().then_some(m);
    }
    // Almost always from A (whose REGISTER woke the delivery); B's periodic pass may win the
    // claim in the instant between, and then it is B's retransmission that is answered below.
    drop(a); // kill -9, the claim held

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let from_b = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = bob
            .recv(left)
            .await
            .expect("the message again, from node B");
        if m.status().is_none() && m.from.port() == b.sip.port() {
            bob.answer(&m, 200).await;
            break m;
        }
    };
    assert!(from_b.body().contains(text), "{}", from_b.body());
}

// Issue #15 scope 3 (RFC 3261 §10.3): REGISTERs of one address of record at two nodes at once
// keep every contact: each node's registrar reads, updates and writes the bindings under a
// lock of the address of record in the database (without it, the later write dropped the
// other node's contact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_at_two_nodes_at_once_keep_every_contact() {
    let (_dir, a, b) = two_nodes().await;
    let mut uas = Vec::new();
    for _ in 0..8 {
        let (mut at_a, mut at_b) = (Ua::new(a.sip, BOB).await, Ua::new(b.sip, BOB).await);
        let register_a = at_a.register(&[&format!("sip:bob@{}", at_a.local())], Some(600), "");
        let register_b = at_b.register(&[&format!("sip:bob@{}", at_b.local())], Some(600), "");
        let (x, y) = tokio::join!(at_a.request(&register_a), at_b.request(&register_b));
        assert_eq!((x.0.status(), y.0.status()), (Some(200), Some(200)));
        uas.push(at_a);
        uas.push(at_b);
    }
    // A query (no Contact) at either node lists every contact registered at both.
    for node in [&a, &b] {
        let mut asker = Ua::new(node.sip, BOB).await;
        let query = asker.register(&[], None, "");
        let (answer, _) = asker.request(&query).await;
        assert_eq!(answer.status(), Some(200), "{}", answer.text);
        for ua in &uas {
            let contact = format!("sip:bob@{}", ua.local());
            assert!(
                answer.text.contains(&contact),
                "{contact} lost: {}",
                answer.text
            );
        }
    }
}
