//! Every stored application usage validates its good fixtures and refuses its bad ones with
//! 409 `<schema-validation-error>` over HTTP (OP-23a, ER-10, AU-02b), plus the cross-document
//! rules of rls-services (RL-12, RL-15, RL-16) and the offline `xcapd validate` command.

mod common;
use common::*;

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

/// Server-written usages: their fixtures are written by the IM Server's service principal.
const SERVER_WRITTEN: &[(&str, &str, &str)] = &[
    (
        "org.openmobilealliance.conv-history",
        "application/vnd.oma.im.history-list+xml",
        "conv-history",
    ),
    (
        "org.openmobilealliance.deferred-list",
        "application/vnd.oma.im.deferred-list+xml",
        "deferred-list",
    ),
];

/// Every usage's fixtures through the proxy front (authentication required): the owner, or
/// the IM Server for server-written usages, is asserted by a trusted peer (AP-04).
#[tokio::test]
async fn op23a_fixtures_valid_accepted_invalid_refused_through_the_proxy() {
    use xcapd::storage::credentials::{make_credential, Role};
    // Fixtures reference hosts of their own; reference checks are not under test here.
    let s = TestServer::start_with(|c| {
        c.xcap.allow_foreign_references = true;
        c.server.auth = xcapd::config::AuthMode::Required;
        c.auth.trusted_peers = vec!["127.0.0.1/32".into()];
        // No SIP side, so no IM Server: its deferred-list and conv-history documents mirror
        // its message store and would be rewritten under this test (a race with its GETs);
        // that is tested in tests/sip_store_forward.rs and tests/sip_history.rs.
        c.sip.listen = String::new();
    })
    .await;
    s.running()
        .credentials
        .put_user(&make_credential(
            "sip:im-server@example.com",
            "example.com",
            "x",
            vec![Role::Service],
            0,
        ))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let put = |uri: String, who: String, mime: &'static str, body: String| {
        let client = client.clone();
        async move {
            Resp::from(
                client
                    .put(uri)
                    .header("X-XCAP-Asserted-Identity", format!("<{who}>"))
                    .header("Content-Type", mime)
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let get = |uri: String, who: String| {
        let client = client.clone();
        async move {
            Resp::from(
                client
                    .get(uri)
                    .header("X-XCAP-Asserted-Identity", format!("<{who}>"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let all = USER_WRITABLE_USAGES
        .iter()
        .map(|u| (u, false))
        .chain(SERVER_WRITTEN.iter().map(|u| (u, true)));
    for (i, ((auid, mime, name), server_written)) in all.enumerate() {
        for (j, (file, body)) in fixtures(auid, "valid-").into_iter().enumerate() {
            let owner = format!("sip:v{i}x{j}@example.com");
            let writer = if server_written {
                "sip:im-server@example.com".to_string()
            } else {
                owner.clone()
            };
            let uri = s.url(&format!("{auid}/users/{owner}/{name}"));
            let r = put(uri.clone(), writer, mime, body.clone()).await;
            assert_eq!(r.status, 201, "{auid}/{file}: {}", r.body);
            let got = get(uri, owner).await;
            assert_eq!(got.body, body, "{auid}/{file}: stored byte for byte");
        }
        for (j, (file, body)) in fixtures(auid, "invalid-").into_iter().enumerate() {
            let owner = format!("sip:i{i}x{j}@example.com");
            let writer = if server_written {
                "sip:im-server@example.com".to_string()
            } else {
                owner.clone()
            };
            let uri = s.url(&format!("{auid}/users/{owner}/{name}"));
            let r = put(uri.clone(), writer, mime, body).await;
            assert_eq!(r.xcap_error(), "schema-validation-error", "{auid}/{file}");
            assert_eq!(
                get(uri, owner).await.status,
                404,
                "{auid}/{file}: nothing stored"
            );
        }
    }
    // Every usage is advertised (AU-08a).
    let caps = get(
        s.url("xcap-caps/global/index"),
        "sip:v0x0@example.com".into(),
    )
    .await
    .body;
    for (auid, _, _) in USER_WRITABLE_USAGES.iter().chain(SERVER_WRITTEN) {
        assert!(
            caps.contains(&format!("<auid>{auid}</auid>")),
            "xcap-caps lists {auid}"
        );
    }
    assert!(caps.contains("<auid>org.openmobilealliance.user-profile</auid>"));
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

#[tokio::test]
async fn sx07_user_profile_only_named_document_and_owner_uri() {
    let s = TestServer::start().await;
    let ct = "application/vnd.oma.user-profile+xml";
    let body = std::fs::read_to_string(repo_path(
        "tests/fixtures/org.openmobilealliance.user-profile/valid-full-profile.xml",
    ))
    .or_else(|_| {
        std::fs::read_to_string(repo_path(
            "tests/fixtures/org.openmobilealliance.user-profile/valid-minimal.xml",
        ))
    })
    .unwrap();
    let uri_in_doc = if body.contains("sip:alice@example.com") {
        "sip:alice@example.com"
    } else {
        "tel:+15551230001"
    };
    let home = format!("org.openmobilealliance.user-profile/users/{uri_in_doc}");
    let r = s
        .put(&format!("{home}/user-profile"), ct, body.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // SX-07a: only that document name.
    assert_eq!(
        s.put(&format!("{home}/other"), ct, body.clone())
            .await
            .xcap_error(),
        "constraint-failure"
    );
    // SX-07c: the profile URI must be the owner's.
    let r = s
        .put(
            "org.openmobilealliance.user-profile/users/sip:mallory@example.com/user-profile",
            ct,
            body,
        )
        .await;
    assert_eq!(r.xcap_error(), "constraint-failure");
    assert!(r.body.contains("Wrong User Profile URI"));
    s.stop().await;
}

#[tokio::test]
async fn sx05_group_uri_unique_across_users() {
    let s = TestServer::start().await;
    let ct = "application/vnd.oma.poc.groups+xml";
    let group = |uri: &str| {
        format!("<group xmlns=\"urn:oma:xml:poc:list-service\"><list-service uri=\"{uri}\"><display-name>G</display-name></list-service></group>")
    };
    let r = s
        .put(
            "org.openmobilealliance.groups/users/sip:alice@example.com/friends",
            ct,
            group("sip:friends@conf.example.com"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .put(
            "org.openmobilealliance.groups/users/sip:bob@example.com/mine",
            ct,
            group("sip:friends@conf.example.com"),
        )
        .await;
    assert_eq!(r.xcap_error(), "uniqueness-failure");
    assert!(
        r.body
            .contains("<alt-value>sip:friends-1@conf.example.com</alt-value>"),
        "{}",
        r.body
    );
    s.stop().await;
}

#[tokio::test]
async fn sx09_pres_content_in_status_icon_directory_and_constraints() {
    let s = TestServer::start().await;
    let ct = "application/vnd.oma.pres-content+xml";
    let icon = std::fs::read_to_string(repo_path(
        "tests/fixtures/org.openmobilealliance.pres-content/valid-status-icon.xml",
    ))
    .unwrap();
    // SX-09c: the declared directory exists without any document in it (OP-03).
    let r = s.put("org.openmobilealliance.pres-content/users/sip:alice@example.com/oma_status-icon/rcs_status_icon", ct, icon.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bad = icon.replace("image/png", "text/html");
    let r = s.put("org.openmobilealliance.pres-content/users/sip:alice@example.com/oma_status-icon/rcs_status_icon", ct, bad).await;
    assert_eq!(r.xcap_error(), "constraint-failure");
    s.stop().await;
}

/// IX-04 and issue #4 acceptance: server-written usages refuse the owner's PUT (403) and accept
/// the owner's GET and DELETE; the IM Server (a service principal) writes them.
#[tokio::test]
async fn ix04_server_written_usages() {
    use xcapd::storage::credentials::{make_credential, Role};
    let s = TestServer::start_with(|c| {
        c.server.auth = xcapd::config::AuthMode::Required;
        c.auth.trusted_peers = vec!["127.0.0.1/32".into()];
    })
    .await;
    s.running()
        .credentials
        .put_user(&make_credential(
            "sip:im-server@example.com",
            "example.com",
            "x",
            vec![Role::Service],
            0,
        ))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for (auid, name, ct) in [
        (
            "org.openmobilealliance.conv-history",
            "conv-history",
            "application/vnd.oma.im.history-list+xml",
        ),
        (
            "org.openmobilealliance.deferred-list",
            "deferred-list",
            "application/vnd.oma.im.deferred-list+xml",
        ),
    ] {
        let fixture = std::fs::read_dir(repo_path(&format!("tests/fixtures/{auid}")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("valid-")
            })
            .unwrap();
        let body = std::fs::read_to_string(fixture).unwrap();
        let url = s.url(&format!("{auid}/users/sip:alice@example.com/{name}"));
        let as_ = |who: &str| ("X-XCAP-Asserted-Identity", format!("<{who}>"));
        let (h, alice) = as_("sip:alice@example.com");
        let r = client
            .put(&url)
            .header(h, &alice)
            .header("Content-Type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{auid}: the owner may not create");
        let (h, im) = as_("sip:im-server@example.com");
        let r = client
            .put(&url)
            .header(h, &im)
            .header("Content-Type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{auid}: the IM Server writes");
        let r = client.get(&url).header(h, &alice).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{auid}: the owner reads");
        let (h2, bob) = as_("sip:bob@example.com");
        let r = client.get(&url).header(h2, &bob).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{auid}: others do not");
        let r = client.delete(&url).header(h, &alice).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{auid}: the owner deletes");
    }
    s.stop().await;
}

#[tokio::test]
async fn xdms_roles_select_the_usages_a_process_serves() {
    let s = TestServer::start_with(|c| c.server.roles = vec!["im".into()]).await;
    let caps = s.get("xcap-caps/global/index").await.body;
    assert!(caps.contains("<auid>im-rules</auid>"));
    assert!(
        caps.contains("<auid>org.openmobilealliance.xcap-directory</auid>"),
        "core usages stay"
    );
    assert!(
        !caps.contains("<auid>resource-lists</auid>"),
        "Shared XDMS usages are not served"
    );
    assert_eq!(
        s.get(ALICE_LISTS).await.status,
        404,
        "unknown AUID here (URI-03)"
    );
    s.stop().await;
}
