//! The admin API over real HTTP on its own listener (issue #3 scope 6): token checks, users,
//! document listing, export/import through the XDMS (RFC 4825 §8.2: validation, ETags, change
//! events), JWT issuance accepted by the proxy (RFC 7519, RFC 6750), health, readiness,
//! Prometheus metrics, and the curl scripts in `scripts/admin/`.

mod common;
use common::*;
use serde_json::{json, Value};
use xcapd::config::AuthMode;
use xcapd::storage::credentials::{compute_ha1, SHA_256};

const BOB_LISTS: &str = "resource-lists/users/sip:bob@example.com/index";

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let base = s.admin.as_ref().expect("admin listener");
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = s.client.request(m, format!("{base}{path}"));
    if let Some(t) = token {
        rb = rb.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

async fn admin(s: &TestServer, method: &str, path: &str, body: Option<&Value>) -> Answer {
    call(s, method, path, Some(ADMIN_TOKEN), body).await
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn health_and_ready_are_open_everything_else_needs_the_token() {
    let s = TestServer::start().await;
    let h = call(&s, "GET", "/health", None, None).await;
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let r = call(&s, "GET", "/ready", None, None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/users"),
        ("PUT", "/users/alice"),
        ("GET", "/users/alice/export"),
        ("POST", "/users/alice/import"),
        ("GET", "/no/such/thing"),
    ] {
        // No token, a wrong token, a token under another scheme: 401 with a JSON error and a
        // Bearer challenge (RFC 6750 §3).
        for token in [None, Some("wrong-token-0123456789"), Some("")] {
            let a = call(&s, method, path, token, None).await;
            assert_eq!(a.status, 401, "{method} {path} {token:?}");
            assert!(a.json()["error"].is_string());
            assert!(a.header("www-authenticate").starts_with("Bearer"));
        }
    }
    let base = s.admin.clone().unwrap();
    let basic = s
        .client
        .get(format!("{base}/users"))
        .header("Authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);

    // With the token an unknown path is a JSON 404.
    let a = admin(&s, "GET", "/no/such/thing", None).await;
    assert_eq!(a.status, 404);
    assert!(a.json()["error"].is_string());

    // Refused admin credentials are counted (an empty bearer and Basic too; no header is no
    // attempt).
    let m = admin(&s, "GET", "/metrics", None).await;
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .starts_with("text/plain; version=0.0.4"));
    assert_eq!(
        metric(&m.body, "xcapd_auth_failures_total{scheme=\"admin\"}"),
        Some(13.0),
        "{}",
        m.body
    );
    s.stop().await;
}

#[tokio::test]
async fn users_crud_stores_ha1_only_and_normalizes_xuis() {
    let s = TestServer::start().await;
    let creds = s.running().credentials.clone();

    // IO-01d: a bare name gets the default domain; realm defaults to the domain.
    let a = admin(
        &s,
        "PUT",
        "/users/alice",
        Some(&json!({"password": "pw-1"})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({"xui": "sip:alice@example.com", "realm": "example.com", "roles": ["user"]})
    );
    let (xui, ha1) = creds
        .lookup_ha1("alice", "example.com", SHA_256)
        .await
        .unwrap()
        .expect("HA1 for the bare spelling");
    assert_eq!(xui, "sip:alice@example.com");
    assert_eq!(
        Some(ha1),
        compute_ha1(SHA_256, "alice", "example.com", "pw-1")
    );

    // Replacing: 200; percent-encoded sip URI reaches the same user.
    let a = admin(
        &s,
        "PUT",
        "/users/sip%3Aalice%40example.com",
        Some(&json!({"password": "pw-2", "roles": ["admin", "user"]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["roles"], json!(["admin", "user"]));

    let a = admin(
        &s,
        "PUT",
        "/users/tel:+15551234",
        Some(&json!({"password": "pw-t", "realm": "tel.example.com", "roles": ["service"]})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);

    let list = admin(&s, "GET", "/users", None).await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json(),
        json!([
            {"xui": "sip:alice@example.com", "realm": "example.com", "roles": ["admin", "user"]},
            {"xui": "tel:+15551234", "realm": "tel.example.com", "roles": ["service"]},
        ])
    );
    assert!(!list.body.contains("ha1"), "no hashes in listings");

    // Password change keeps realm and roles.
    let a = admin(
        &s,
        "POST",
        "/users/alice@example.com/password",
        Some(&json!({"password": "pw-3"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["roles"], json!(["admin", "user"]));
    let (_, ha1) = creds
        .lookup_ha1("sip:alice@example.com", "example.com", SHA_256)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Some(ha1),
        compute_ha1(SHA_256, "sip:alice@example.com", "example.com", "pw-3")
    );

    // Bad input: 400 with a JSON reason; nothing stored.
    for (path, body) in [
        ("/users/bob", json!({"password": ""})),
        ("/users/bob", json!({"password": "x", "roles": ["root"]})),
        ("/users/bob", json!({"password": "x", "realm": "a\"b"})),
        ("/users/bob", json!({"password": "x", "extra": 1})),
        ("/users/bob", json!({"roles": ["user"]})),
        ("/users/%20", json!({"password": "x"})),
    ] {
        let a = admin(&s, "PUT", path, Some(&body)).await;
        assert_eq!(a.status, 400, "{path} {body}: {}", a.body);
        assert!(a.json()["error"].is_string());
    }
    assert!(creds
        .get_user("sip:bob@example.com")
        .await
        .unwrap()
        .is_none());

    // A username spelling of another user in the same realm: 409 naming the owner.
    let a = admin(
        &s,
        "PUT",
        "/users/sip:alice@other.example",
        Some(&json!({"password": "x", "realm": "example.com"})),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.json()["error"]
        .as_str()
        .unwrap()
        .contains("sip:alice@example.com"));

    let a = admin(&s, "GET", "/users/alice", None).await;
    assert_eq!(a.json()["xui"], "sip:alice@example.com");
    let a = admin(&s, "DELETE", "/users/alice", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), json!({"deleted": "sip:alice@example.com"}));
    assert!(creds
        .lookup_ha1("alice", "example.com", SHA_256)
        .await
        .unwrap()
        .is_none());
    for (method, path, body) in [
        ("DELETE", "/users/alice", None),
        ("GET", "/users/alice", None),
        (
            "POST",
            "/users/alice/password",
            Some(json!({"password": "x"})),
        ),
    ] {
        let a = admin(&s, method, path, body.as_ref()).await;
        assert_eq!(a.status, 404, "{method} {path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn export_and_import_round_trip_through_the_xdms() {
    let s = TestServer::start().await;
    let list = buddy_list(&["sip:bob@example.com", "sip:carol@example.com"]);
    assert_eq!(s.put(ALICE_LISTS, RL, list.clone()).await.status, 201);
    let pidf = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:alice@example.com\">\n  <tuple id=\"t1\"><status><basic>open</basic></status></tuple>\n</presence>\n";
    let pidf_uri = "pidf-manipulation/users/sip:alice@example.com/index";
    assert_eq!(
        s.put(pidf_uri, "application/pidf+xml", pidf).await.status,
        201
    );
    let spaced = "resource-lists/users/sip:alice@example.com/more lists";
    assert_eq!(
        s.put(&spaced.replace(' ', "%20"), RL, buddy_list(&[]))
            .await
            .status,
        201
    );

    let docs = admin(&s, "GET", "/users/alice/documents", None).await;
    assert_eq!(docs.status, 200);
    let docs = docs.json();
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 3, "{docs:?}");
    let index = docs
        .iter()
        .find(|d| d["auid"] == "resource-lists" && d["path"] == "index")
        .unwrap();
    assert_eq!(index["size"], list.len());
    assert_eq!(
        format!("\"{}\"", index["etag"].as_str().unwrap()),
        s.get(ALICE_LISTS).await.etag()
    );
    assert!(index["modified"].as_str().unwrap().ends_with('Z'));
    assert!(docs.iter().any(|d| d["path"] == "more lists"));

    let export = admin(&s, "GET", "/users/sip:alice@example.com/export", None).await;
    assert_eq!(export.status, 200);
    let export = export.json();
    assert_eq!(export["xui"], "sip:alice@example.com");
    let exported = export["documents"].as_array().unwrap();
    assert_eq!(exported.len(), 3);
    let pidf_doc = exported
        .iter()
        .find(|d| d["auid"] == "pidf-manipulation")
        .unwrap();
    assert_eq!(pidf_doc["content_type"], "application/pidf+xml");
    assert_eq!(pidf_doc["body"], pidf);

    // Restore into bob: every document goes through the XDMS as a PUT (201, fresh ETags,
    // change events).
    let feed = &s.running().feed;
    let mut events = feed.subscribe_from(feed.head());
    let report = admin(&s, "POST", "/users/bob/import", Some(&export)).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    assert_eq!(report["xui"], "sip:bob@example.com");
    assert_eq!(
        (report["imported"].as_u64(), report["failed"].as_u64()),
        (Some(3), Some(0))
    );
    for r in report["documents"].as_array().unwrap() {
        assert_eq!(r["status"], 201, "{r}");
    }
    let got = s.get(BOB_LISTS).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, list, "bytes survive the round trip");
    let bob_index = report["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["auid"] == "resource-lists" && r["path"] == "index")
        .unwrap();
    assert_eq!(
        format!("\"{}\"", bob_index["etag"].as_str().unwrap()),
        got.etag()
    );
    assert_ne!(got.etag(), s.get(ALICE_LISTS).await.etag());
    let mut changed = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.previous_etag, None, "created");
        changed.push(e.document_selector());
    }
    assert!(changed.contains(&BOB_LISTS.to_string()), "{changed:?}");
    assert_eq!(
        s.get("resource-lists/users/sip:bob@example.com/more%20lists")
            .await
            .status,
        200
    );

    // Importing again replaces (200); a broken document is refused by the schema (409 with the
    // xcap-error body), a path with `~~` never becomes a node selector, an unknown AUID is 404;
    // the others are still stored and the answer is 422.
    let bad = json!({"documents": [
        {"auid": "resource-lists", "path": "index", "body": buddy_list(&["sip:dave@example.com"])},
        {"auid": "resource-lists", "path": "broken",
         "body": "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><nope/></resource-lists>"},
        {"auid": "resource-lists", "path": "index/~~/resource-lists", "body": "<list/>"},
        {"auid": "no-such-usage", "path": "index", "body": "<x/>"},
        {"auid": "xcap-caps", "path": "index", "body": "<x/>"},
    ]});
    let report = admin(&s, "POST", "/users/bob/import", Some(&bad)).await;
    assert_eq!(report.status, 422, "{}", report.body);
    let report = report.json();
    let statuses: Vec<u64> = report["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses[..4], [200, 409, 400, 404], "{report}");
    assert!(statuses[4] >= 400, "{report}");
    assert!(report["documents"][1]["error"]
        .as_str()
        .unwrap()
        .contains("schema-validation-error"));
    assert_eq!(
        (report["imported"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(4))
    );
    assert!(s.get(BOB_LISTS).await.body.contains("sip:dave@example.com"));
    assert_eq!(
        s.get("resource-lists/users/sip:bob@example.com/broken")
            .await
            .status,
        404
    );

    let a = admin(&s, "POST", "/users/bob/import", Some(&json!({"nope": []}))).await;
    assert_eq!(a.status, 400);
    let empty = admin(&s, "GET", "/users/nobody/export", None).await;
    assert_eq!(empty.json()["documents"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn import_body_is_limited() {
    let s = TestServer::start_with(|c| c.admin.max_import_bytes = 2048).await;
    let big = json!({"documents": [{"auid": "resource-lists", "path": "index",
        "body": "x".repeat(4096)}]});
    let a = admin(&s, "POST", "/users/bob/import", Some(&big)).await;
    assert_eq!(a.status, 413);
    assert!(a.json()["error"].is_string());
    s.stop().await;
}

/// A server requiring authentication with an HS256 signing key (kept in the returned dir).
async fn jwt_server(
    adjust: impl FnOnce(&mut xcapd::config::Config),
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-secret\n").unwrap();
    let secret = secret.to_str().unwrap().to_string();
    let s = TestServer::start_with(|c| {
        c.server.auth = AuthMode::Required;
        c.auth.jwt_hs256_secret_file = secret;
        adjust(c);
    })
    .await;
    (s, dir)
}

#[tokio::test]
async fn issued_tokens_are_accepted_by_the_proxy() {
    let (s, _dir) = jwt_server(|c| c.auth.jwt_issuer = "xcapd-test".into()).await;
    let a = admin(
        &s,
        "PUT",
        "/users/bob",
        Some(&json!({"password": "bob-pw"})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = admin(
        &s,
        "POST",
        "/users/bob/token",
        Some(&json!({"ttl_secs": 600})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let issued = a.json();
    assert_eq!(issued["sub"], "sip:bob@example.com");
    assert_eq!(issued["expires_in"], 600);
    let token = issued["token"].as_str().unwrap();

    // RFC 6750 §2.1: the proxy verifies the token and bob may write his own list.
    let bearer = format!("Bearer {token}");
    let put = s
        .put_with(
            BOB_LISTS,
            RL,
            buddy_list(&[]),
            &[("Authorization", &bearer)],
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    // Not anyone else's.
    let other = s
        .put_with(
            ALICE_LISTS,
            RL,
            buddy_list(&[]),
            &[("Authorization", &bearer)],
        )
        .await;
    assert_eq!(other.status, 403);
    // A forged token fails and is counted as a bearer auth failure.
    let forged = s
        .get_with(
            BOB_LISTS,
            &[("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.AAAA")],
        )
        .await;
    assert_eq!(forged.status, 401);

    for body in [
        json!({"ttl_secs": 0}),
        json!({"ttl_secs": 100_000_000}),
        json!({"roles": ["superuser"]}),
    ] {
        let a = admin(&s, "POST", "/users/bob/token", Some(&body)).await;
        assert_eq!(a.status, 400, "{body}");
    }
    // An empty body takes the defaults.
    let a = admin(&s, "POST", "/users/bob/token", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["expires_in"], 3600);

    let m = admin(&s, "GET", "/metrics", None).await.body;
    assert_eq!(
        metric(&m, "xcapd_auth_failures_total{scheme=\"bearer\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "xcapd_requests_total{auid=\"resource-lists\",method=\"PUT\",status=\"403\"}"
        ),
        Some(1.0)
    );
    s.stop().await;
}

async fn bob_token(s: &TestServer) -> String {
    let a = admin(s, "POST", "/users/bob/token", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    format!("Bearer {}", a.json()["token"].as_str().unwrap())
}

async fn bob_get(s: &TestServer, bearer: String) -> u16 {
    s.get_with(BOB_LISTS, &[("Authorization", &bearer)])
        .await
        .status
}

/// Issue #11 item 7: a bearer token stops working when its user is deleted, and a password
/// change revokes the tokens issued before it (unless asked not to); tokens issued after it
/// work. `auth.jwt_require_user = false` (an external identity provider) skips both checks.
#[tokio::test]
async fn tokens_die_with_their_user_and_with_a_revoking_password_change() {
    let (s, _dir) = jwt_server(|_| {}).await;
    let a = admin(&s, "PUT", "/users/bob", Some(&json!({"password": "one"}))).await;
    assert_eq!(a.status, 201);
    let old = bob_token(&s).await;
    assert_eq!(
        bob_get(&s, old.clone()).await,
        404,
        "valid: bob has no document yet"
    );

    // A password change that keeps tokens, then one that revokes them.
    let a = admin(
        &s,
        "POST",
        "/users/bob/password",
        Some(&json!({"password": "two", "revoke_tokens": false})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(bob_get(&s, old.clone()).await, 404, "kept");
    let a = admin(
        &s,
        "POST",
        "/users/bob/password",
        Some(&json!({"password": "three"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        bob_get(&s, old.clone()).await,
        401,
        "revoked by the password change"
    );
    let new = bob_token(&s).await;
    assert_eq!(
        bob_get(&s, new.clone()).await,
        404,
        "a token issued after the change works"
    );

    // Deleting the user kills every token; re-creating the user does not revive old ones
    // issued before a revocation, and a token for a user never stored is refused.
    let a = admin(&s, "DELETE", "/users/bob", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(bob_get(&s, new.clone()).await, 401, "user deleted");
    let a = admin(&s, "POST", "/users/sip:nobody@example.com/token", None).await;
    let nobody = format!("Bearer {}", a.json()["token"].as_str().unwrap());
    let r = s
        .get_with("xcap-caps/global/index", &[("Authorization", &nobody)])
        .await;
    assert_eq!(r.status, 401, "no such user");
    s.stop().await;

    // Tokens of an external identity provider name users this node does not store.
    let (s, _dir) = jwt_server(|c| c.auth.jwt_require_user = false).await;
    let a = admin(&s, "POST", "/users/sip:nobody@example.com/token", None).await;
    let nobody = format!("Bearer {}", a.json()["token"].as_str().unwrap());
    let r = s
        .get_with("xcap-caps/global/index", &[("Authorization", &nobody)])
        .await;
    assert_eq!(r.status, 200, "jwt_require_user = false");
    s.stop().await;
}

#[tokio::test]
async fn token_without_a_signing_key_is_501() {
    let s = TestServer::start().await;
    let a = admin(&s, "POST", "/users/bob/token", None).await;
    assert_eq!(a.status, 501);
    assert!(a.json()["error"].as_str().unwrap().contains("jwt"));
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_xcap_requests_storage_and_documents() {
    let s = TestServer::start().await;
    assert_eq!(s.put(ALICE_LISTS, RL, buddy_list(&[])).await.status, 201);
    assert_eq!(s.put(ALICE_LISTS, RL, buddy_list(&[])).await.status, 200);
    assert_eq!(s.get(ALICE_LISTS).await.status, 200);
    assert_eq!(s.get("no-such-auid/global/index").await.status, 404);
    let m = admin(&s, "GET", "/metrics", None).await;
    assert_eq!(m.status, 200);
    let m = m.body;
    let requests = |method: &str, status: &str| {
        metric(
            &m,
            &format!(
                "xcapd_requests_total{{auid=\"resource-lists\",method=\"{method}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("PUT", "201"), Some(1.0), "{m}");
    assert_eq!(requests("PUT", "200"), Some(1.0));
    assert_eq!(requests("GET", "200"), Some(1.0));
    assert_eq!(
        metric(
            &m,
            "xcapd_requests_total{auid=\"other\",method=\"GET\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "xcapd_request_duration_seconds_count{auid=\"resource-lists\"}"
        ),
        Some(3.0)
    );
    assert!(metric(&m, "xcapd_storage_duration_seconds_count{op=\"put\"}").unwrap() >= 2.0);
    assert_eq!(metric(&m, "xcapd_documents"), Some(1.0));
    assert!(m.contains("# TYPE xcapd_request_duration_seconds histogram"));
    s.stop().await;
}

/// Runs one script of `scripts/admin/` against the test server; (exit code, stdout, stderr).
async fn script(
    s: &TestServer,
    name: &str,
    args: &[&str],
    stdin: Option<String>,
) -> (i32, String, String) {
    let path = repo_path(&format!("scripts/admin/{name}"));
    let admin = s.admin.clone().unwrap();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new("bash")
            .arg(path)
            .args(&args)
            .env("XCAPD_ADMIN", admin)
            .env("XCAPD_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bash runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

// Issue #3 acceptance: the admin scripts work against a running server as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_scripts_work_against_the_running_server() {
    let s = TestServer::start().await;
    let creds = s.running().credentials.clone();

    let (code, out, err) = script(&s, "health.sh", &[], None).await;
    assert_eq!((code, out.as_str()), (0, "ok\nready\n"), "{err}");

    // user-add.sh with a password that needs JSON escaping, and a role.
    let password = r#"p"w\1 x"#;
    let (code, out, err) = script(&s, "user-add.sh", &["carol", password, "admin"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["xui"], "sip:carol@example.com");
    assert_eq!(v["roles"], json!(["admin"]));
    let (_, ha1) = creds
        .lookup_ha1("carol", "example.com", SHA_256)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Some(ha1),
        compute_ha1(SHA_256, "carol", "example.com", password)
    );

    // Password from standard input.
    let (code, _, err) = script(
        &s,
        "user-passwd.sh",
        &["carol", "-"],
        Some("from-stdin\n".into()),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (_, ha1) = creds
        .lookup_ha1("carol", "example.com", SHA_256)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Some(ha1),
        compute_ha1(SHA_256, "carol", "example.com", "from-stdin")
    );

    let (code, out, _) = script(&s, "user-list.sh", &[], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("sip:carol@example.com"));

    // export.sh > file, then import.sh XUI file into another user.
    let list = buddy_list(&["sip:erin@example.com"]);
    assert_eq!(
        s.put(
            "resource-lists/users/sip:carol@example.com/index",
            RL,
            list.clone()
        )
        .await
        .status,
        201
    );
    let (code, out, _) = script(&s, "user-docs.sh", &["sip:carol@example.com"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("\"resource-lists\""));
    let (code, backup, err) = script(&s, "export.sh", &["carol"], None).await;
    assert_eq!(code, 0, "{err}");
    let file = s.dir.path().join("carol.json");
    std::fs::write(&file, &backup).unwrap();
    let (code, out, err) = script(&s, "import.sh", &["frank", file.to_str().unwrap()], None).await;
    assert_eq!(code, 0, "{out}{err}");
    let got = s
        .get("resource-lists/users/sip:frank@example.com/index")
        .await;
    assert_eq!((got.status, got.body), (200, list));

    // A refused import exits non-zero and still prints the report.
    let broken = r#"{"documents":[{"auid":"resource-lists","path":"index","body":"<oops"}]}"#;
    let (code, out, _) = script(&s, "import.sh", &["frank", "-"], Some(broken.into())).await;
    assert_ne!(code, 0);
    assert!(out.contains("not-well-formed"), "{out}");

    let (code, out, _) = script(&s, "metrics.sh", &["^xcapd_documents "], None).await;
    assert_eq!((code, out.as_str()), (0, "xcapd_documents 2\n"));

    // HTTP errors make the scripts fail: unknown user, no signing key, bad token.
    let (code, out, _) = script(&s, "user-del.sh", &["nobody"], None).await;
    assert_ne!(code, 0);
    assert!(out.contains("no such user"), "{out}");
    let (code, _, _) = script(&s, "token.sh", &["carol", "60"], None).await;
    assert_ne!(code, 0, "501 without a signing key");
    let (code, _, _) = script(&s, "user-del.sh", &["carol"], None).await;
    assert_eq!(code, 0);
    assert!(creds
        .get_user("sip:carol@example.com")
        .await
        .unwrap()
        .is_none());
    let (code, _, err) = script(&s, "user-add.sh", &["x"], None).await;
    assert_eq!(code, 2, "usage error");
    assert!(err.contains("usage"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_script_prints_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "fedcba9876543210fedcba9876543210").unwrap();
    let secret = secret.to_str().unwrap().to_string();
    let s = TestServer::start_with(|c| c.auth.jwt_hs256_secret_file = secret).await;
    let (code, out, err) = script(&s, "token.sh", &["sip:gina@example.com", "120"], None).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["expires_in"], 120);
    assert_eq!(v["token"].as_str().unwrap().split('.').count(), 3);
    s.stop().await;
}

#[tokio::test]
async fn admin_listener_can_be_disabled() {
    let s = TestServer::start_with(|c| c.admin.listen = String::new()).await;
    assert!(s.admin.is_none());
    assert!(s.running().admin_addr.is_none());
    s.stop().await;
}
