//! Element, attribute and namespace-binding resources over real HTTP (RFC 4825 §7.4–7.10,
//! §8.2–8.4; standards.md OP-06..OP-36, NS-*, ER-05..ER-11, IO-03, IO-07), and an application
//! usage added by dropping a descriptor and a schema into a directory (design.md §5).

mod common;
use common::*;

const LIST: &str = "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22friends%22%5D";

async fn seeded() -> (TestServer, String) {
    let s = TestServer::start().await;
    let r = s
        .put(
            ALICE_LISTS,
            RL,
            buddy_list(&["sip:bob@example.com", "sip:carol@example.com"]),
        )
        .await;
    assert_eq!(r.status, 201);
    let etag = r.etag();
    (s, etag)
}

#[tokio::test]
async fn op28_get_element_exact_bytes_and_shared_etag() {
    let (s, etag) = seeded().await;
    let r = s.get(&format!("{LIST}/entry%5B2%5D")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(EL));
    assert_eq!(r.body, "<entry uri=\"sip:carol@example.com\"/>");
    assert_eq!(r.etag(), etag, "ET-01: element shares the document ETag");
    // By attribute, raw (unencoded) characters accepted too (URI-13).
    let r = s
        .get(&format!("{LIST}/entry[@uri=\"sip:bob@example.com\"]"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "<entry uri=\"sip:bob@example.com\"/>");
    s.stop().await;
}

#[tokio::test]
async fn op29_get_attribute_quoted() {
    let (s, _) = seeded().await;
    let r = s.get(&format!("{LIST}/entry%5B1%5D/@uri")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(ATT));
    assert_eq!(r.body, "\"sip:bob@example.com\"");
    assert_eq!(
        s.get(&format!("{LIST}/entry%5B1%5D/@nope")).await.status,
        404,
        "NS-11"
    );
    s.stop().await;
}

#[tokio::test]
async fn op30_namespace_bindings() {
    let (s, _) = seeded().await;
    let r = s.get(&format!("{LIST}/namespace::*")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/xcap-ns+xml"));
    let doc = roxmltree::Document::parse(&r.body).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "list");
    assert!(r
        .body
        .contains("xmlns=\"urn:ietf:params:xml:ns:resource-lists\""));
    s.stop().await;
}

#[tokio::test]
async fn ns08_op31_no_match_and_ambiguous_are_404() {
    let (s, _) = seeded().await;
    assert_eq!(s.get(&format!("{LIST}/entry%5B9%5D")).await.status, 404);
    assert_eq!(
        s.get(&format!("{LIST}/entry")).await.status,
        404,
        "two entries: invalid"
    );
    assert_eq!(s.delete(&format!("{LIST}/entry")).await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn uri16_unbound_prefix_is_400() {
    let (s, _) = seeded().await;
    let r = s.get(&format!("{ALICE_LISTS}/~~/x:resource-lists")).await;
    assert_eq!(r.status, 400);
    s.stop().await;
}

#[tokio::test]
async fn ns09_prefixes_from_xmlns_query() {
    let (s, _) = seeded().await;
    let r = s
        .get(&format!(
            "{ALICE_LISTS}/~~/r:resource-lists/r:list/r:entry%5B1%5D?xmlns(r=urn:ietf:params:xml:ns:resource-lists)"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("sip:bob@example.com"));
    // IO-03: the '?' itself percent-encoded, as Doubango sends it.
    let r = s
        .get(&format!(
            "{ALICE_LISTS}/~~/r:resource-lists/r:list/r:entry%5B1%5D%3Fxmlns(r=%22urn:ietf:params:xml:ns:resource-lists%22)"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn op07_io07_rcs_entry_insert_inherits_namespace() {
    let (s, _) = seeded().await;
    let uri = format!("{LIST}/entry%5B@uri=%22sip%3Adave%40example.com%22%5D");
    let r = s
        .put(&uri, EL, "<entry uri='sip:dave@example.com'></entry>")
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.get(&uri).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body, "<entry uri='sip:dave@example.com'></entry>",
        "GET(PUT(x)) == x"
    );
    // Charset parameter on the media type (IO-13).
    let uri2 = format!("{LIST}/entry%5B@uri=%22sip%3Aerin%40example.com%22%5D");
    let r = s
        .put(
            &uri2,
            "application/xcap-el+xml; charset=\"utf-8\"",
            "<entry uri=\"sip:erin@example.com\"/>",
        )
        .await;
    assert_eq!(r.status, 201);
    s.stop().await;
}

#[tokio::test]
async fn op11_replace_in_place_returns_200() {
    let (s, _) = seeded().await;
    let uri = format!("{LIST}/entry%5B1%5D");
    let r = s
        .put(
            &uri,
            EL,
            "<entry uri=\"sip:bob@example.com\"><display-name>Bob</display-name></entry>",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = s.get(ALICE_LISTS).await.body;
    let bob = doc.find("Bob").unwrap();
    let carol = doc.find("carol").unwrap();
    assert!(bob < carol, "replacement keeps the position");
    s.stop().await;
}

#[tokio::test]
async fn op12_er08_cannot_insert_when_selector_would_not_select() {
    let (s, etag) = seeded().await;
    let uri = format!("{LIST}/entry%5B@uri=%22sip%3Azed%40example.com%22%5D");
    let r = s
        .put(&uri, EL, "<entry uri=\"sip:other@example.com\"/>")
        .await;
    assert_eq!(r.xcap_error(), "cannot-insert");
    // OP-22: attribute change that breaks the selector.
    let r = s
        .put(
            &format!("{LIST}/entry%5B@uri=%22sip%3Abob%40example.com%22%5D/@uri"),
            ATT,
            "\"sip:x@example.com\"",
        )
        .await;
    assert_eq!(r.xcap_error(), "cannot-insert");
    assert_eq!(s.get(ALICE_LISTS).await.etag(), etag, "nothing changed");
    s.stop().await;
}

/// NS-04 / RFC 4825 §6.3 `position = 1*DIGIT`: a `[0]` step is a valid selector that selects
/// nothing (issue #10 item 4): GET 404, PUT 409 cannot-insert (§8.2.3), never "not understood".
#[tokio::test]
async fn ns04_position_zero_selects_nothing() {
    let (s, etag) = seeded().await;
    let zero = "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B0%5D%5B@name=%22friends%22%5D";
    let r = s.get(zero).await;
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("not understood"), "{}", r.body);
    let r = s.get(&format!("{LIST}/entry%5B0%5D")).await;
    assert_eq!(r.status, 404);
    let r = s
        .put(
            &format!("{LIST}/entry%5B0%5D"),
            EL,
            "<entry uri=\"sip:zed@example.com\"/>",
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.xcap_error(), "cannot-insert");
    let r = s.put(zero, EL, "<list name=\"friends\"/>").await;
    assert_eq!(r.xcap_error(), "cannot-insert");
    assert_eq!(s.delete(&format!("{LIST}/entry%5B0%5D")).await.status, 404);
    assert_eq!(s.get(ALICE_LISTS).await.etag(), etag, "nothing changed");
    s.stop().await;
}

#[tokio::test]
async fn op21_attribute_create_and_replace() {
    let (s, _) = seeded().await;
    let uri = format!("{LIST}/entry%5B2%5D/@note");
    // Unknown attribute on entry: schema allows anyAttribute from other namespaces only, so a
    // no-namespace attribute is a schema error: use the list's name instead.
    let r = s.put(&uri, ATT, "\"x\"").await;
    assert_eq!(r.status, 409);
    let name_uri =
        "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B1%5D/@name";
    let r = s.put(name_uri, ATT, "\"buddies\"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get(name_uri).await.body, "\"buddies\"");
    // ER-06.
    let r = s.put(name_uri, ATT, "\"a<b\"").await;
    assert_eq!(r.xcap_error(), "not-xml-att-value");
    // OP-20: wrong media type.
    assert_eq!(s.put(name_uri, EL, "\"x\"").await.status, 415);
    s.stop().await;
}

#[tokio::test]
async fn er05_not_xml_frag() {
    let (s, _) = seeded().await;
    let uri = format!("{LIST}/entry%5B3%5D");
    for body in [
        "<entry uri=\"a\"/><entry uri=\"b\"/>",
        "plain text",
        "<entry>",
    ] {
        let r = s.put(&uri, EL, body).await;
        assert_eq!(r.xcap_error(), "not-xml-frag", "body {body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn er07_no_parent_with_ancestor() {
    let (s, etag) = seeded().await;
    let r = s
        .put(
            "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22nosuch%22%5D/entry%5B@uri=%22sip:x@example.com%22%5D",
            EL,
            "<entry uri=\"sip:x@example.com\"/>",
        )
        .await;
    assert_eq!(r.xcap_error(), "no-parent");
    let doc = roxmltree::Document::parse(&r.body).unwrap();
    let ancestor = doc
        .descendants()
        .find(|n| n.has_tag_name("ancestor"))
        .unwrap();
    assert!(
        ancestor.text().unwrap().ends_with("~~/resource-lists"),
        "{}",
        r.body
    );
    // Missing document: element PUT is no-parent too (OP-08).
    let r = s
        .put(
            "resource-lists/users/sip:nobody@example.com/index/~~/resource-lists/list",
            EL,
            "<list/>",
        )
        .await;
    assert_eq!(r.xcap_error(), "no-parent");
    assert_eq!(s.get(ALICE_LISTS).await.etag(), etag);
    s.stop().await;
}

#[tokio::test]
async fn er11_uniqueness_failure_on_duplicate_entry() {
    let (s, etag) = seeded().await;
    // Positional insert of a duplicate URI (RL-04).
    let r = s
        .put(
            &format!("{LIST}/entry%5B3%5D"),
            EL,
            "<entry uri=\"sip:bob@example.com\"/>",
        )
        .await;
    assert_eq!(r.xcap_error(), "uniqueness-failure");
    let doc = roxmltree::Document::parse(&r.body).unwrap();
    let exists = doc
        .descendants()
        .find(|n| n.has_tag_name("exists"))
        .unwrap();
    assert!(exists.attribute("field").unwrap().contains("@uri"));
    assert_eq!(s.get(ALICE_LISTS).await.etag(), etag);
    s.stop().await;
}

#[tokio::test]
async fn op34_op36_delete_element_and_cannot_delete() {
    let (s, etag) = seeded().await;
    // OP-34a: entry[1] is not the last same-name sibling: another would take its place.
    let r = s.delete(&format!("{LIST}/entry%5B1%5D")).await;
    assert_eq!(r.xcap_error(), "cannot-delete");
    // OP-34c: by attribute always works.
    let r = s
        .delete(&format!("{LIST}/entry%5B@uri=%22sip:bob@example.com%22%5D"))
        .await;
    assert_eq!(r.status, 200);
    let new = r.etag();
    assert_ne!(new, etag, "OP-36: new ETag");
    assert_eq!(s.get(ALICE_LISTS).await.etag(), new);
    // Whitespace around the removed element preserved (OP-33).
    let body = s.get(ALICE_LISTS).await.body;
    assert!(
        body.contains("<list name=\"friends\">\n    \n    <entry uri=\"sip:carol@example.com\"/>"),
        "{body}"
    );
    // Attribute delete.
    let r = s.delete(&format!("{LIST}/@name")).await;
    assert_eq!(r.status, 200);
    assert!(!s.get(ALICE_LISTS).await.body.contains("friends"));
    s.stop().await;
}

#[tokio::test]
async fn op35_delete_breaking_schema_is_refused() {
    let s = TestServer::start().await;
    s.put(ALICE_LISTS, RL, buddy_list(&["sip:bob@example.com"]))
        .await;
    let etag = s.get(ALICE_LISTS).await.etag();
    // uri is required on entry.
    let r = s.delete(&format!("{LIST}/entry%5B1%5D/@uri")).await;
    assert_eq!(r.xcap_error(), "schema-validation-error");
    assert_eq!(s.get(ALICE_LISTS).await.etag(), etag);
    s.stop().await;
}

/// An application usage added with no Rust code: one descriptor and one XSD dropped into
/// otherwise empty directories named by `server.app_usages_dir` / `server.schemas_dir`; the
/// shipped usages built into the binary stay (issue #10 item 6).
async fn server_with_dropped_usage() -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let au = tmp.path().join("app-usages");
    let sc = tmp.path().join("schemas");
    std::fs::create_dir_all(&au).unwrap();
    std::fs::create_dir_all(&sc).unwrap();
    std::fs::write(
        au.join("org.example.tree.toml"),
        r#"auid = "org.example.tree"
mime_type = "application/vnd.example.tree+xml"
schema = "example-tree.xsd"
trees = ["users"]
[authorization]
read = "owner"
write = "owner"
"#,
    )
    .unwrap();
    std::fs::write(
        sc.join("example-tree.xsd"),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="root">
    <xs:complexType mixed="true">
      <xs:sequence>
        <xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>
"#,
    )
    .unwrap();
    let keep = tmp.path().to_path_buf();
    let s = TestServer::start_with(move |c| {
        c.server.app_usages_dir = keep.join("app-usages");
        c.server.schemas_dir = keep.join("schemas");
    })
    .await;
    // Keep the temporary directory alive for the server's lifetime.
    std::mem::forget(tmp);
    s
}

const TREE: &str = "org.example.tree/users/sip:alice@example.com/doc";
const TREE_CT: &str = "application/vnd.example.tree+xml";
const START: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<root>\n  <el1 att=\"first\"/>\n  <el1 att=\"second\"/>\n  <!-- comment -->\n  <el2 att=\"first\"/>\n</root>";

async fn rfc_example(s: &TestServer, selector: &str, body: &str) -> String {
    assert_eq!(s.put(TREE, TREE_CT, START).await.status / 100, 2);
    let r = s.put(&format!("{TREE}/~~/{selector}"), EL, body).await;
    assert_eq!(r.status, 201, "{selector}: {}", r.body);
    s.get(TREE).await.body
}

#[tokio::test]
async fn au_schema_only_usage_and_op16_rfc4825_s8_2_3_examples_over_http() {
    let s = server_with_dropped_usage().await;
    let caps = s.get("xcap-caps/global/index").await.body;
    assert!(caps.contains("<auid>org.example.tree</auid>"));
    assert!(
        caps.contains("<auid>resource-lists</auid>"),
        "built-in usages stay"
    );
    // OP-16a
    let d = rfc_example(&s, "root/el1%5B@att=%22third%22%5D", "<el1 att=\"third\"/>").await;
    assert_eq!(
        d,
        START.replace(
            "<el1 att=\"second\"/>",
            "<el1 att=\"second\"/><el1 att=\"third\"/>"
        )
    );
    // OP-16b
    let d = rfc_example(&s, "root/el3", "<el3 att=\"first\"/>").await;
    assert_eq!(
        d,
        START.replace("\n</root>", "\n<el3 att=\"first\"/></root>")
    );
    // OP-16c
    let d = rfc_example(&s, "root/el2%5B@att=%222%22%5D", "<el2 att=\"2\"/>").await;
    assert_eq!(
        d,
        START.replace(
            "<el2 att=\"first\"/>",
            "<el2 att=\"first\"/><el2 att=\"2\"/>"
        )
    );
    // OP-16d
    let d = rfc_example(&s, "root/*%5B2%5D%5B@att=%222%22%5D", "<el2 att=\"2\"/>").await;
    assert_eq!(
        d,
        START.replacen(
            "<el1 att=\"first\"/>",
            "<el1 att=\"first\"/><el2 att=\"2\"/>",
            1
        )
    );
    // OP-16e
    let d = rfc_example(&s, "root/el2%5B1%5D%5B@att=%222%22%5D", "<el2 att=\"2\"/>").await;
    assert_eq!(
        d,
        START.replace(
            "<el2 att=\"first\"/>",
            "<el2 att=\"2\"/><el2 att=\"first\"/>"
        )
    );
    s.stop().await;
}
