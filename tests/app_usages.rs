//! Every stored application usage validates its good fixtures and refuses its bad ones with
//! 409 `<schema-validation-error>` over HTTP (OP-23a, ER-10, AU-02b), plus the cross-document
//! rules of rls-services (RL-12, RL-15, RL-16) and the offline `xcapd validate` command.

mod common;
use common::*;

/// (fixture directory = AUID, MIME type, document name).
const USAGES: &[(&str, &str, &str)] = &[
    ("resource-lists", "application/resource-lists+xml", "index"),
    ("rls-services", "application/rls-services+xml", "index"),
    ("pres-rules", "application/auth-policy+xml", "index"),
    (
        "org.openmobilealliance.pres-rules",
        "application/auth-policy+xml",
        "pres-rules",
    ),
    ("pidf-manipulation", "application/pidf+xml", "index"),
    (
        "org.example.notes",
        "application/vnd.example.notes+xml",
        "index",
    ),
];

fn fixtures(auid: &str, prefix: &str) -> Vec<(String, String)> {
    let dir = repo_path(&format!("tests/fixtures/{auid}"));
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{auid} has {prefix}* fixtures");
    out
}

#[tokio::test]
async fn op23a_fixtures_valid_accepted_invalid_refused() {
    // Fixtures reference hosts of their own; reference checks are not under test here.
    let s = TestServer::start_with(|c| c.xcap.allow_foreign_references = true).await;
    for (i, (auid, mime, name)) in USAGES.iter().enumerate() {
        for (j, (file, body)) in fixtures(auid, "valid-").into_iter().enumerate() {
            let uri = format!("{auid}/users/sip:v{i}x{j}@example.com/{name}");
            let r = s.put(&uri, mime, body.clone()).await;
            assert_eq!(r.status, 201, "{auid}/{file}: {}", r.body);
            let got = s.get(&uri).await;
            assert_eq!(got.body, body, "{auid}/{file}: stored byte for byte");
        }
        for (j, (file, body)) in fixtures(auid, "invalid-").into_iter().enumerate() {
            let uri = format!("{auid}/users/sip:i{i}x{j}@example.com/{name}");
            let r = s.put(&uri, mime, body).await;
            assert_eq!(r.xcap_error(), "schema-validation-error", "{auid}/{file}");
            assert_eq!(
                s.get(&uri).await.status,
                404,
                "{auid}/{file}: nothing stored"
            );
        }
    }
    s.stop().await;
}

fn rls(service: &str, owner: &str, root: &str) -> String {
    format!(
        "<rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\"><service uri=\"{service}\"><resource-list>{root}/resource-lists/users/{owner}/index/~~/resource-lists/list%5B@name=%22friends%22%5D</resource-list><packages><package>presence</package></packages></service></rls-services>"
    )
}

#[tokio::test]
async fn rl12_service_uri_unique_across_users_with_alt_value() {
    let s = TestServer::start().await;
    let ct = "application/rls-services+xml";
    let a = "rls-services/users/sip:alice@example.com/index";
    let b = "rls-services/users/sip:bob@example.com/index";
    let r = s
        .put(
            a,
            ct,
            rls("sip:friends@example.com", "sip:alice@example.com", &s.root),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .put(
            b,
            ct,
            rls("sip:friends@example.com", "sip:bob@example.com", &s.root),
        )
        .await;
    assert_eq!(r.xcap_error(), "uniqueness-failure");
    let doc = roxmltree::Document::parse(&r.body).unwrap();
    let exists = doc
        .descendants()
        .find(|n| n.has_tag_name("exists"))
        .unwrap();
    assert_eq!(
        exists.attribute("field"),
        Some("rls-services/service%5B1%5D/@uri")
    );
    let alt = doc
        .descendants()
        .find(|n| n.has_tag_name("alt-value"))
        .unwrap()
        .text()
        .unwrap()
        .to_string();
    assert_ne!(alt, "sip:friends@example.com");
    // The proposal is free: using it succeeds.
    let r = s
        .put(b, ct, rls(&alt, "sip:bob@example.com", &s.root))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Alice may rewrite her own document with the same URI.
    let r = s
        .put(
            a,
            ct,
            rls("sip:friends@example.com", "sip:alice@example.com", &s.root),
        )
        .await;
    assert_eq!(r.status, 200);
    // Once alice deletes hers, the URI is free again.
    assert_eq!(s.delete(a).await.status, 200);
    let r = s
        .put(
            b,
            ct,
            rls("sip:friends@example.com", "sip:bob@example.com", &s.root),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn rl13_resource_list_must_point_at_owner_lists() {
    let s = TestServer::start().await;
    let r = s
        .put(
            "rls-services/users/sip:alice@example.com/index",
            "application/rls-services+xml",
            rls("sip:x@example.com", "sip:bob@example.com", &s.root),
        )
        .await;
    assert_eq!(r.xcap_error(), "constraint-failure");
    s.stop().await;
}

#[tokio::test]
async fn rl15_global_index_is_the_union_and_tracks_changes() {
    let s = TestServer::start().await;
    let ct = "application/rls-services+xml";
    s.put(
        "rls-services/users/sip:alice@example.com/index",
        ct,
        rls("sip:a-list@example.com", "sip:alice@example.com", &s.root),
    )
    .await;
    s.put(
        "rls-services/users/sip:bob@example.com/index",
        ct,
        rls("sip:b-list@example.com", "sip:bob@example.com", &s.root),
    )
    .await;
    // RL-15b: other document names are not included.
    s.put(
        "rls-services/users/sip:bob@example.com/other",
        ct,
        rls("sip:b-other@example.com", "sip:bob@example.com", &s.root),
    )
    .await;
    let g = s.get("rls-services/global/index").await;
    assert_eq!(g.status, 200);
    assert!(g.body.contains("sip:a-list@example.com") && g.body.contains("sip:b-list@example.com"));
    assert!(!g.body.contains("sip:b-other@example.com"));
    // RL-17: the RLS looks a service up by node selector.
    let one = s.get("rls-services/global/index/~~/rls-services/service%5B@uri=%22sip:b-list@example.com%22%5D").await;
    assert_eq!(one.status, 200);
    // RL-15c: the ETag changes with a contributing document.
    s.delete("rls-services/users/sip:alice@example.com/index")
        .await;
    let g2 = s.get("rls-services/global/index").await;
    assert_ne!(g2.etag(), g.etag());
    assert!(!g2.body.contains("sip:a-list@example.com"));
    // Clients never write it.
    assert_eq!(
        s.put("rls-services/global/index", ct, "<rls-services/>")
            .await
            .status,
        405
    );
    s.stop().await;
}

#[test]
fn cli_validate_reports_line_numbers_and_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_xcapd");
    let ok = std::process::Command::new(bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["validate", "resource-lists"])
        .arg(repo_path(
            "tests/fixtures/resource-lists/valid-rfc4826-s3.3-example.xml",
        ))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.xml");
    std::fs::write(&bad, "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n<list>\n<entry/>\n</list>\n</resource-lists>\n").unwrap();
    let out = std::process::Command::new(bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["validate", "resource-lists"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.xml:3:"),
        "line number of the bad entry: {text}"
    );
    let check = std::process::Command::new(bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
