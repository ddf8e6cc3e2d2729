//! Document-level XCAP over real HTTP (RFC 4825 §7.1–7.3, §8; standards.md OP-01..OP-05,
//! ET-01..ET-09, HT-05..HT-07, URI-03..URI-08, IO-01, AU-07..AU-09, AP-07..AP-10).

mod common;
use common::*;

#[tokio::test]
async fn op02_op04_op05_document_lifecycle() {
    let s = TestServer::start().await;
    let body = buddy_list(&["sip:bob@example.com"]);
    let r = s.put(ALICE_LISTS, RL, body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let etag1 = r.etag();
    let r = s.get(ALICE_LISTS).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body, "GET returns the document byte for byte");
    assert_eq!(r.header("content-type"), Some(RL));
    assert_eq!(r.etag(), etag1);
    assert_eq!(r.header("cache-control"), Some("no-cache"), "HT-05");
    let r = s
        .put(ALICE_LISTS, RL, buddy_list(&["sip:carol@example.com"]))
        .await;
    assert_eq!(r.status, 200, "replace");
    assert_ne!(r.etag(), etag1, "ET-01: every change gives a new ETag");
    let r = s.delete(ALICE_LISTS).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("etag").is_none(),
        "OP-05: no ETag for a deleted document"
    );
    assert_eq!(s.get(ALICE_LISTS).await.status, 404);
    assert_eq!(s.delete(ALICE_LISTS).await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn et03_etag_never_reused_when_content_returns() {
    let s = TestServer::start().await;
    let a = buddy_list(&["sip:bob@example.com"]);
    let b = buddy_list(&["sip:carol@example.com"]);
    let e1 = s.put(ALICE_LISTS, RL, a.clone()).await.etag();
    let e2 = s.put(ALICE_LISTS, RL, b).await.etag();
    let e3 = s.put(ALICE_LISTS, RL, a).await.etag();
    assert_ne!(e1, e2);
    assert_ne!(e1, e3, "same content, new version, new tag");
    s.stop().await;
}

#[tokio::test]
async fn op01_body_checks_leave_storage_unchanged() {
    let s = TestServer::start().await;
    let good = buddy_list(&["sip:bob@example.com"]);
    let etag = s.put(ALICE_LISTS, RL, good.clone()).await.etag();
    // ER-03 not well-formed.
    let r = s.put(ALICE_LISTS, RL, "<resource-lists><list>").await;
    assert_eq!(r.xcap_error(), "not-well-formed");
    // ER-04 another encoding declared.
    let r = s
        .put(
            ALICE_LISTS,
            RL,
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
        )
        .await;
    assert_eq!(r.xcap_error(), "not-utf-8");
    // OP-01b raw non-UTF-8 bytes.
    let r = s
        .client
        .put(s.url(ALICE_LISTS))
        .header("Content-Type", RL)
        .body(b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list name=\"\xe9\"/></resource-lists>".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(Resp::from(r).await.xcap_error(), "not-utf-8");
    // OP-01c wrong media type.
    let r = s.put(ALICE_LISTS, "application/xml", good.clone()).await;
    assert_eq!(r.status, 415);
    // ER-10 schema violation: entry without uri.
    let bad = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry/></list></resource-lists>";
    let r = s.put(ALICE_LISTS, RL, bad).await;
    assert_eq!(r.xcap_error(), "schema-validation-error");
    assert!(r.body.contains("phrase="), "validator message in phrase");
    // DOCTYPE refused, nothing read.
    let r = s
        .put(
            ALICE_LISTS,
            RL,
            "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">&x;</resource-lists>",
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(!r.body.contains("root:"));
    let r = s.get(ALICE_LISTS).await;
    assert_eq!(r.body, good);
    assert_eq!(r.etag(), etag);
    s.stop().await;
}

#[tokio::test]
async fn ht06_content_type_parameters_ignored() {
    let s = TestServer::start().await;
    let r = s
        .put(
            ALICE_LISTS,
            "Application/Resource-Lists+XML; charset=\"utf-8\"",
            buddy_list(&[]),
        )
        .await;
    assert_eq!(r.status, 201);
    s.stop().await;
}

#[tokio::test]
async fn et04_et05_et07_conditional_requests() {
    let s = TestServer::start().await;
    let body = buddy_list(&["sip:bob@example.com"]);
    // ET-05: If-None-Match: * creates only when absent.
    let r = s
        .put_with(ALICE_LISTS, RL, body.clone(), &[("If-None-Match", "*")])
        .await;
    assert_eq!(r.status, 201);
    let etag = r.etag();
    let r = s
        .put_with(ALICE_LISTS, RL, body.clone(), &[("If-None-Match", "*")])
        .await;
    assert_eq!(r.status, 412);
    // ET-04.
    let r = s
        .put_with(ALICE_LISTS, RL, body.clone(), &[("If-Match", "\"nope\"")])
        .await;
    assert_eq!(r.status, 412);
    let r = s
        .put_with(
            ALICE_LISTS,
            RL,
            body.clone(),
            &[("If-Match", etag.as_str())],
        )
        .await;
    assert_eq!(r.status, 200);
    let etag2 = r.etag();
    // IO-11b: unquoted If-Match accepted.
    let unquoted = etag2.trim_matches('"').to_string();
    let r = s
        .put_with(
            ALICE_LISTS,
            RL,
            body.clone(),
            &[("If-Match", unquoted.as_str())],
        )
        .await;
    assert_eq!(r.status, 200);
    let etag3 = r.etag();
    // ET-07 conditional GET.
    let r = s
        .get_with(ALICE_LISTS, &[("If-None-Match", etag3.as_str())])
        .await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.etag(), etag3);
    let r = s
        .get_with(ALICE_LISTS, &[("If-None-Match", etag2.as_str())])
        .await;
    assert_eq!(r.status, 200);
    // ET-04 on DELETE and GET.
    assert_eq!(
        s.delete_with(ALICE_LISTS, &[("If-Match", "\"x\"")])
            .await
            .status,
        412
    );
    assert_eq!(
        s.get_with(ALICE_LISTS, &[("If-Match", "\"x\"")])
            .await
            .status,
        412
    );
    // If-Match: * on an absent document.
    let other = "resource-lists/users/sip:zed@example.com/index";
    assert_eq!(
        s.put_with(other, RL, body.clone(), &[("If-Match", "*")])
            .await
            .status,
        412
    );
    s.stop().await;
}

#[tokio::test]
async fn et08_precondition_checked_before_body() {
    let s = TestServer::start().await;
    s.put(ALICE_LISTS, RL, buddy_list(&[])).await;
    let r = s
        .put_with(
            ALICE_LISTS,
            RL,
            "<not-closed>",
            &[("If-Match", "\"stale\"")],
        )
        .await;
    assert_eq!(r.status, 412, "412 wins over 409");
    s.stop().await;
}

#[tokio::test]
async fn io01_xui_spellings_reach_one_home() {
    let s = TestServer::start().await;
    let r = s
        .put(
            "resource-lists/users/alice@example.com/index",
            RL,
            buddy_list(&[]),
        )
        .await;
    assert_eq!(r.status, 201);
    for xui in [
        "sip:alice@example.com",
        "sip%3Aalice%40example.com",
        "alice@EXAMPLE.com",
        "alice",
    ] {
        let r = s.get(&format!("resource-lists/users/{xui}/index")).await;
        assert_eq!(r.status, 200, "XUI spelling {xui}");
    }
    s.stop().await;
}

#[tokio::test]
async fn uri03_uri04_uri08_not_found_cases() {
    let s = TestServer::start().await;
    assert_eq!(
        s.get("no-such-auid/users/sip:alice@example.com/index")
            .await
            .status,
        404
    );
    assert_eq!(
        s.get("resource-lists/people/sip:alice@example.com/index")
            .await
            .status,
        404
    );
    assert_eq!(
        s.get("resource-lists/users/sip:alice@example.com/")
            .await
            .status,
        404
    );
    assert_eq!(
        s.get("resource-lists/global/index").await.status,
        404,
        "no global tree"
    );
    let outside = s
        .client
        .get(s.url("").replace("/xcap-root/", "/other/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status().as_u16(), 404);
    s.stop().await;
}

#[tokio::test]
async fn op03_put_into_missing_subdirectory_is_no_parent() {
    let s = TestServer::start().await;
    let r = s
        .put(
            "resource-lists/users/sip:alice@example.com/nodir/index",
            RL,
            buddy_list(&[]),
        )
        .await;
    assert_eq!(r.xcap_error(), "no-parent");
    assert!(r.body.contains("<ancestor>"));
    s.stop().await;
}

#[tokio::test]
async fn op38_ht07_methods_not_allowed() {
    let s = TestServer::start().await;
    s.put(ALICE_LISTS, RL, buddy_list(&[])).await;
    let r = s.request("POST", ALICE_LISTS).await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
    // AU-09 / HT-07b: read-only usage.
    let r = s
        .put(
            "xcap-caps/global/index",
            "application/xcap-caps+xml",
            "<x/>",
        )
        .await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
    assert_eq!(s.delete("xcap-caps/global/index").await.status, 405);
    // OP-37 / HT-07a: namespace::* writes.
    let r = s
        .delete(&format!("{ALICE_LISTS}/~~/resource-lists/namespace::*"))
        .await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("GET"));
    s.stop().await;
}

#[tokio::test]
async fn head_returns_headers_without_body() {
    let s = TestServer::start().await;
    let etag = s.put(ALICE_LISTS, RL, buddy_list(&[])).await.etag();
    let r = s.request("HEAD", ALICE_LISTS).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.etag(), etag);
    assert!(r.body.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn au07_au08_xcap_caps_generated_from_registry() {
    let s = TestServer::start().await;
    let r = s.get("xcap-caps/global/index").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/xcap-caps+xml"));
    let doc = roxmltree::Document::parse(&r.body).unwrap();
    let auids: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("auid"))
        .filter_map(|n| n.text())
        .collect();
    for a in [
        "xcap-caps",
        "resource-lists",
        "rls-services",
        "pres-rules",
        "org.openmobilealliance.pres-rules",
        "pidf-manipulation",
        "org.openmobilealliance.xcap-directory",
        "org.example.notes",
    ] {
        assert!(auids.contains(&a), "xcap-caps lists {a}");
    }
    let namespaces: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("namespace"))
        .filter_map(|n| n.text())
        .collect();
    assert!(namespaces.contains(&"urn:ietf:params:xml:ns:xcap-caps"));
    assert!(
        namespaces.contains(&"urn:ietf:params:xml:ns:pres-rules"),
        "IO-09a"
    );
    // AU-07: no xcap-caps document in user trees.
    assert_eq!(
        s.get("xcap-caps/users/sip:alice@example.com/index")
            .await
            .status,
        404
    );
    // Node selectors work on generated documents too.
    let r = s
        .get("xcap-caps/global/index/~~/xcap-caps/auids/auid%5B1%5D")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("<auid>"));
    s.stop().await;
}

#[tokio::test]
async fn ap07_ap09_xcap_directory_lists_documents_with_etags() {
    let s = TestServer::start().await;
    let etag = s.put(ALICE_LISTS, RL, buddy_list(&[])).await.etag();
    let dir = "org.openmobilealliance.xcap-directory/users/sip:alice@example.com/directory.xml";
    let r = s.get(dir).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oma.xcap-directory+xml")
    );
    let doc = roxmltree::Document::parse(&r.body).unwrap();
    let entry = doc
        .descendants()
        .find(|n| n.has_tag_name("entry"))
        .expect("an entry for the resource list");
    assert_eq!(
        Some(entry.attribute("etag").unwrap()),
        Some(etag.trim_matches('"'))
    );
    assert!(entry.attribute("uri").unwrap().ends_with(ALICE_LISTS));
    assert!(
        entry.attribute("uri").unwrap().starts_with("http://"),
        "AP-08: absolute URIs"
    );
    // AP-09: a single folder by node selector.
    let r = s
        .get(&format!(
            "{dir}/~~/xcap-directory/folder%5B@auid=%22resource-lists%22%5D"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(EL));
    assert!(r.body.contains(ALICE_LISTS));
    // AP-10: read-only.
    assert_eq!(
        s.put(dir, "application/vnd.oma.xcap-directory+xml", "<x/>")
            .await
            .status,
        405
    );
    // Another user's directory is not alice's business... in dev mode the URI's XUI is the
    // principal, so bob reads only bob's (empty) directory.
    let r = s
        .get("org.openmobilealliance.xcap-directory/users/sip:bob@example.com/directory.xml")
        .await;
    assert!(!r.body.contains("alice"));
    s.stop().await;
}

#[tokio::test]
async fn safety_body_limit_gives_413() {
    let s = TestServer::start_with(|c| c.limits.max_body_bytes = 2048).await;
    let many: Vec<String> = (0..200).map(|i| format!("sip:u{i}@example.com")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = s.put(ALICE_LISTS, RL, buddy_list(&refs)).await;
    assert_eq!(r.status, 413);
    assert_eq!(s.get(ALICE_LISTS).await.status, 404);
    s.stop().await;
}

/// Issue #11 item 8: broken chunked framing (RFC 9112 §7.1) is a malformed request, 400, not
/// 413; nothing is stored, and a chunked body over the limit is still 413.
#[tokio::test]
async fn chunked_framing_errors_are_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(|c| c.limits.max_body_bytes = 2048).await;
    let addr = s.running().http_addr;
    let doc = r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>"#;
    let big = "x".repeat(4000);
    let cases = [
        (
            "negative chunk size",
            format!("-5\r\n{doc}\r\n0\r\n\r\n"),
            "400",
        ),
        (
            "chunk longer than its size",
            format!("3\r\n{doc}\r\n0\r\n\r\n"),
            "400",
        ),
        ("bare LF", format!("{:x}\n{doc}\n0\n\n", doc.len()), "400"),
        (
            "over the limit",
            format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()),
            "413",
        ),
    ];
    for (what, body, want) in cases {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PUT /xcap-root/{ALICE_LISTS} HTTP/1.1\r\nHost: x\r\nContent-Type: {RL}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(body.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {want}")),
            "{what}: {text}"
        );
    }
    assert_eq!(s.get(ALICE_LISTS).await.status, 404, "nothing stored");
    s.stop().await;
}

/// Issue #11 item 5: a document with 40,000 attributes on one element (under the body limit)
/// is refused cleanly with 409 constraint-failure before any parser spends quadratic time on
/// it; an attribute PUT past the per-element limit likewise; the stored document stays.
#[tokio::test]
async fn attribute_limit_per_element_is_409() {
    let s = TestServer::start_with(|c| c.limits.max_attributes_per_element = 8).await;
    let r = s
        .put(ALICE_LISTS, RL, buddy_list(&["sip:bob@example.com"]))
        .await;
    assert_eq!(r.status, 201);
    let etag = r.etag();
    let attrs: String = (0..40_000).map(|i| format!(" x{i}=\"\"")).collect();
    let wide = format!(
        r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list{attrs}/></resource-lists>"#
    );
    let r = s.put(ALICE_LISTS, RL, wide).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.xcap_error(), "constraint-failure");
    assert!(r.body.contains("more than 8 attributes"), "{}", r.body);
    let entry = "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list/entry";
    let seven: String = (0..7)
        .map(|i| format!(" xmlns:p{i}=\"urn:p{i}\""))
        .collect();
    let r = s
        .put(
            entry,
            EL,
            format!(r#"<entry uri="sip:bob@example.com"{seven}/>"#),
        )
        .await;
    assert_eq!(r.status, 200, "8 attributes fit: {}", r.body);
    let r = s.put(&format!("{entry}/@extra"), ATT, "\"x\"").await;
    assert_eq!(r.status, 409, "a ninth does not: {}", r.body);
    assert_eq!(r.xcap_error(), "constraint-failure");
    assert_ne!(s.get(ALICE_LISTS).await.etag(), etag);
    s.stop().await;
}

#[tokio::test]
async fn safety_depth_limit() {
    let s = TestServer::start_with(|c| c.limits.max_depth = 8).await;
    let mut body = String::from("<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">");
    for _ in 0..20 {
        body.push_str("<list>");
    }
    for _ in 0..20 {
        body.push_str("</list>");
    }
    body.push_str("</resource-lists>");
    let r = s.put(ALICE_LISTS, RL, body).await;
    assert_eq!(r.status, 409);
    assert_eq!(s.get(ALICE_LISTS).await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn ap14_gzip_when_asked_and_io09c_bogus_content_encoding_ignored() {
    let s = TestServer::start().await;
    let many: Vec<String> = (0..50).map(|i| format!("sip:u{i}@example.com")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let body = buddy_list(&refs);
    // IO-09c: Jitsi's "Content-Encoding: UTF-8" is not a content-coding; ignore it.
    let r = s
        .put_with(
            ALICE_LISTS,
            RL,
            body.clone(),
            &[("Content-Encoding", "UTF-8")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // reqwest (gzip feature) asks for gzip and decodes transparently; check the header raw.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(s.url(ALICE_LISTS))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let compressed = r.bytes().await.unwrap();
    assert!(compressed.len() < body.len() / 2);
    let plain = raw.get(s.url(ALICE_LISTS)).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(
        plain.headers().get("x-request-id").is_some(),
        "per-request ID (access log)"
    );
    assert_eq!(plain.text().await.unwrap(), body);
    s.stop().await;
}

#[tokio::test]
async fn uri01_configurable_xcap_root() {
    // Doubango's root (IO-04d).
    let s = TestServer::start_with(|c| c.server.xcap_root = "/services".into()).await;
    let base = s.root.replace("/xcap-root", "/services");
    let r = s
        .client
        .put(format!("{base}/{ALICE_LISTS}"))
        .header("Content-Type", RL)
        .body(buddy_list(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        s.get(ALICE_LISTS).await.status,
        404,
        "the old root serves nothing"
    );
    s.stop().await;
}

#[tokio::test]
async fn cp24a_oma_complex_rules_refused_over_http() {
    let s = TestServer::start().await;
    let doc = r#"<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:ocp="urn:oma:xml:xdm:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
  <cp:rule id="r1">
    <cp:conditions><ocp:other-identity/><ocp:anonymous-request/><ocp:other-identity/></cp:conditions>
    <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions>
  </cp:rule>
</cp:ruleset>"#;
    let r = s
        .put(
            "org.openmobilealliance.pres-rules/users/sip:alice@example.com/pres-rules",
            "application/auth-policy+xml",
            doc,
        )
        .await;
    assert_eq!(r.xcap_error(), "constraint-failure", "{}", r.body);
    assert!(
        r.body.contains("Complex rules are not allowed"),
        "{}",
        r.body
    );
    s.stop().await;
}
