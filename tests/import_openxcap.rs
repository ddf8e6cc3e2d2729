//! `xcapd import openxcap` (issue #15 scope 5) against a database built here from the
//! published OpenSIPS / OpenXCAP table layout (`xcap`, `subscriber`), in SQLite: the users
//! become credentials (HA1 columns or the password), every document is validated through the
//! XDMS, refusals are named with their reason, and the server then serves what was imported
//! to its owners, authenticated by the imported credentials (MD5 from `ha1`, SHA-256 from the
//! password).

mod common;
use common::*;
use md5::{Digest as _, Md5};

const REALM: &str = "example.com";

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const RLS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
  <service uri="sip:bob-buddies@example.com">
    <list><rl:entry uri="sip:alice@example.com"/></list>
    <packages><package>presence</package></packages>
  </service>
</rls-services>
"#;

/// The OpenSIPS tables (SQLite flavour of the published layout) with three subscribers and
/// five documents, two of which cannot be imported.
fn build_database(path: &std::path::Path) -> (String, String) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE subscriber (
            id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
            username CHAR(64) DEFAULT '' NOT NULL,
            domain CHAR(64) DEFAULT '' NOT NULL,
            password CHAR(25) DEFAULT '' NOT NULL,
            email_address CHAR(64) DEFAULT '' NOT NULL,
            ha1 CHAR(64) DEFAULT '' NOT NULL,
            ha1b CHAR(64) DEFAULT '' NOT NULL,
            rpid CHAR(64) DEFAULT NULL,
            CONSTRAINT account_idx UNIQUE (username, domain));
         CREATE TABLE xcap (
            id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
            username CHAR(64) NOT NULL,
            domain CHAR(64) NOT NULL,
            doc BLOB NOT NULL,
            doc_type INTEGER NOT NULL,
            etag CHAR(64) NOT NULL,
            source INTEGER NOT NULL,
            doc_uri CHAR(255) NOT NULL,
            port INTEGER NOT NULL,
            CONSTRAINT account_doc_type_idx UNIQUE (username, domain, doc_type, doc_uri));",
    )
    .unwrap();
    let subscriber = "INSERT INTO subscriber (username, domain, password, ha1, ha1b) \
                      VALUES (?1, ?2, ?3, ?4, ?5)";
    // Alice: hashes only (the password column emptied, as operators do).
    let ha1 = md5_hex(&format!("alice:{REALM}:alice pw"));
    let ha1b = md5_hex(&format!("alice@{REALM}:{REALM}:alice pw"));
    db.execute(subscriber, ["alice", REALM, "", &ha1, &ha1b])
        .unwrap();
    db.execute(subscriber, ["bob", REALM, "bob pw", "", ""])
        .unwrap();
    db.execute(subscriber, ["mallory", REALM, "", "not-a-hash", ""])
        .unwrap();
    let xcap = "INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, port) \
                VALUES (?1, ?2, ?3, ?4, 'e', 0, ?5, 0)";
    let buddies = buddy_list(&["sip:bob@example.com"]);
    let rules = std::fs::read(repo_path(
        "tests/fixtures/pres-rules/valid-rfc5025-s8-example.xml",
    ))
    .unwrap();
    let rows: [(&str, Vec<u8>, i64, &str); 5] = [
        ("alice", buddies.clone().into_bytes(), 4, "index"),
        ("alice", rules, 2, "index"),
        ("bob", RLS.as_bytes().to_vec(), 8, "index"),
        ("carol", b"<resource-lists><list>".to_vec(), 4, "index"),
        ("dave", b"<dialog-rules/>".to_vec(), 128, "index"),
    ];
    for (user, doc, doc_type, uri) in rows {
        db.execute(xcap, rusqlite::params![user, REALM, doc, doc_type, uri])
            .unwrap();
    }
    (buddies, RLS.to_string())
}

/// GET `url` with Digest MD5 as `user` (its HA1 is all the server has of Alice).
async fn get_md5(http: &reqwest::Client, url: &str, user: &str, password: &str) -> (u16, String) {
    let first = http.get(url).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 401);
    let challenge = first
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("Digest") && v.contains("algorithm=MD5"))
        .expect("an MD5 challenge");
    let param = |name: &str| {
        let at = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        challenge[at..].split('"').next().unwrap().to_string()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("GET:{path}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c1:auth:{ha2}"));
    let mut header = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{path}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c1\", response=\"{response}\""
    );
    if challenge.contains("opaque=\"") {
        header.push_str(&format!(", opaque=\"{}\"", param("opaque")));
    }
    let r = http
        .get(url)
        .header("Authorization", header)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openxcap_database_is_imported_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("openxcap.sqlite");
    let (buddies, rls) = build_database(&source);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xcapd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["import", "openxcap", "--sqlite"])
        .arg(&source)
        .arg("--data")
        .arg(dir.path().join("x-data"))
        .env("XCAPD_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "refusals: {stdout}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("imported 3 documents and 2 users; refused 2 documents and 1 users")
    );
    let refused: Vec<&str> = lines.collect();
    assert_eq!(refused.len(), 3, "{stdout}");
    assert!(
        refused[0].starts_with("refused user mallory@example.com: "),
        "{stdout}"
    );
    let carol = refused.iter().find(|l| l.contains("carol@")).unwrap();
    assert!(carol.contains("not-well-formed"), "{carol}");
    let dave = refused.iter().find(|l| l.contains("dave@")).unwrap();
    assert!(dave.contains("doc_type 128"), "{dave}");

    let port = free_port();
    let _server = KillOnDrop(spawn_configured(
        dir.path(),
        "x",
        port,
        "[server]\nauth = \"required\"\n",
    ));
    let root = format!("http://127.0.0.1:{port}/xcap-root");
    let http = reqwest::Client::new();
    wait_listening(&http, &root).await;
    let alice_doc = format!("{root}/resource-lists/users/sip:alice@example.com/index");
    let (status, body) = get_md5(&http, &alice_doc, "alice", "alice pw").await;
    assert_eq!((status, body), (200, buddies));
    let (status, _) = get_md5(&http, &alice_doc, "alice", "wrong").await;
    assert_eq!(status, 401);
    let mut bob = digest_client("bob@example.com", "bob pw");
    let bob_doc = format!("{root}/rls-services/users/sip:bob@example.com/index");
    let r = {
        let (status, _) = bob.send(&http, "GET", &bob_doc, None).await;
        status
    };
    assert_eq!(r, 200);
    let h = bob.header(
        "GET",
        "/xcap-root/rls-services/users/sip:bob@example.com/index",
    );
    let text = http
        .get(&bob_doc)
        .header("Authorization", h.unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, rls);
}
