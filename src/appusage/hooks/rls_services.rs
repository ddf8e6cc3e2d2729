//! Constraint hook for rls-services documents (RFC 4826 §4.4.5) within one document:
//! `<service uri>` unique with an `<alt-value>` proposal (RL-12, RFC 4825 §11.1),
//! `<resource-list>` an absolute HTTP URI of a `<list>` in the owner's resource-lists
//! (RL-13), inline `<list>` under the resource-lists sibling rules (RL-14). Uniqueness of
//! service URIs across documents, users and roots (RL-12) needs storage, so the caller does
//! it with [`service_uris`], [`alt_service_uri`] and [`service_uri_field`].

use std::collections::{HashMap, HashSet};

use roxmltree::{Document, Node};

use super::resource_lists::{check_list_content, ListRules};
use super::{
    any_uri_value, children_in, is_element, parse_http_uri, relative_to_root, text_content,
    ConstraintViolation, FieldBuilder, FieldStep, Findings, HookContext, XcapReference,
    NS_RLS_SERVICES,
};

const PHRASE_RL_FORM: &str = "resource-list must be an absolute HTTP URI";
const PHRASE_RL_ROOT: &str = "resource-list must reference a list under this XCAP root";
const PHRASE_RL_OWNER: &str = "resource-list must reference the owner's own resource-lists";
const PHRASE_RL_SELECTOR: &str = "resource-list must select a list element";

/// Upper bound on `-N` candidates tried for an `<alt-value>`.
const MAX_ALT_CANDIDATES: usize = 10_000;

/// Hook `rls-services` (AUID `rls-services`, default namespace rls-services).
pub fn rls_services(doc: &Document, ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let root = doc.root_element();
    let mut findings = Findings::default();
    if !is_element(&root, NS_RLS_SERVICES, "rls-services") {
        return findings.finish();
    }
    let fields = FieldBuilder {
        default_ns: NS_RLS_SERVICES,
    };
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut repeats: Vec<(Node, usize, &str)> = Vec::new();

    for (index, service) in services(root).enumerate() {
        if let Some(uri) = service.attribute("uri") {
            let count = counts.entry(uri).or_insert(0);
            *count += 1;
            if *count == 2 {
                repeats.push((service, index + 1, uri));
            }
        }
        for child in children_in(service, NS_RLS_SERVICES) {
            match child.tag_name().name() {
                "resource-list" => check_resource_list(&text_content(&child), ctx, &mut findings),
                // RL-14: an inline list obeys RFC 4826 §3.4.5 like a resource-lists document.
                "list" => {
                    check_list_content(child, ctx, ListRules::default(), fields, &mut findings)
                }
                _ => {}
            }
        }
    }

    let mut proposed: HashSet<String> = HashSet::new();
    for (service, position, uri) in repeats {
        let field = fields.render(
            &[
                FieldStep::root(root),
                FieldStep::with_position(service, position),
            ],
            "uri",
        );
        let alt = alt_service_uri(uri, |c| counts.contains_key(c) || proposed.contains(c));
        if let Some(a) = &alt {
            proposed.insert(a.clone());
        }
        findings.uniqueness(field, alt.into_iter().collect());
    }
    findings.finish()
}

/// The `<service>` children of `<rls-services>`, in document order.
fn services<'a, 'input: 'a>(root: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    children_in(root, NS_RLS_SERVICES).filter(|c| c.tag_name().name() == "service")
}

/// Every `service/@uri` of an rls-services document in document order, for the caller's
/// server-wide uniqueness check (RL-12) and the global index (RL-15). For a schema-valid
/// document (every service has a `uri`) the value at index `i` belongs to the service at
/// position `i + 1`, see [`service_uri_field`].
pub fn service_uris(doc: &Document) -> Vec<String> {
    let root = doc.root_element();
    if !is_element(&root, NS_RLS_SERVICES, "rls-services") {
        return Vec::new();
    }
    services(root)
        .filter_map(|s| s.attribute("uri"))
        .map(str::to_owned)
        .collect()
}

/// `exists/@field` for the service at 1-based `position` (ER-11, RL-12a).
pub fn service_uri_field(position: usize) -> String {
    format!("rls-services/service%5B{position}%5D/@uri")
}

/// Proposes a free service URI for `<alt-value>` (RL-12b): `-1`, `-2`, … inserted before
/// the '@' (`sip:friends-1@example.com`), or before any parameters when there is no user
/// part. `is_taken` says whether a candidate is already in use.
pub fn alt_service_uri(uri: &str, is_taken: impl Fn(&str) -> bool) -> Option<String> {
    let scheme_end = uri.find(':').map_or(0, |i| i + 1);
    let insert_at = uri.find('@').unwrap_or_else(|| {
        uri[scheme_end..]
            .find([';', '?'])
            .map_or(uri.len(), |i| scheme_end + i)
    });
    let (head, tail) = uri.split_at(insert_at);
    (1..=MAX_ALT_CANDIDATES)
        .map(|i| format!("{head}-{i}{tail}"))
        .find(|candidate| !is_taken(candidate))
}

/// RL-13: the content of `<resource-list>` is an absolute HTTP URI naming a `<list>` of a
/// resource-lists document; in the users tree it must be the rls-services owner's document.
/// The XUI rule is an RFC 4826 §4.4.5 MUST, so `allow_foreign_references` relaxes only the
/// XCAP root.
fn check_resource_list(raw: &str, ctx: &HookContext, findings: &mut Findings) {
    let uri = any_uri_value(raw);
    let Some(parsed) = parse_http_uri(uri) else {
        findings.constraint(PHRASE_RL_FORM);
        return;
    };
    match relative_to_root(uri, ctx.xcap_root) {
        Some(rel) => {
            let reference = XcapReference::parse(rel);
            if !reference.names_list_document(ctx.xui) {
                findings.constraint(PHRASE_RL_OWNER);
            } else if !reference.has_node_selector() {
                findings.constraint(PHRASE_RL_SELECTOR);
            }
        }
        None if ctx.allow_foreign_references => {
            // Another server's root is unknown: look for the AUID segment and a selector.
            let reference = XcapReference::parse(parsed.rest.trim_start_matches('/'));
            if !reference.mentions_resource_lists() {
                findings.constraint(PHRASE_RL_OWNER);
            } else if !reference.has_node_selector() {
                findings.constraint(PHRASE_RL_SELECTOR);
            }
        }
        None => findings.constraint(PHRASE_RL_ROOT),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{hook_by_name, UniquenessField};
    use super::*;

    const ROOT: &str = "http://xcap.example.com/xcap-root";

    fn ctx() -> HookContext<'static> {
        HookContext {
            xcap_root: ROOT,
            auid: "rls-services",
            xui: Some("sip:alice@example.com"),
            document_path: "index",
            allow_foreign_references: false,
            oma_compliant: false,
        }
    }

    fn rls(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">{body}</rls-services>"#
        )
    }

    fn service_with_list(uri: &str, list_uri: &str) -> String {
        format!(
            r#"<service uri="{uri}"><resource-list>{list_uri}</resource-list><packages><package>presence</package></packages></service>"#
        )
    }

    fn own_list(name: &str) -> String {
        format!("{ROOT}/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22{name}%22%5D")
    }

    fn run(xml: &str, ctx: &HookContext) -> Result<(), ConstraintViolation> {
        let doc = Document::parse(xml).unwrap_or_else(|e| panic!("fixture: {e}"));
        rls_services(&doc, ctx)
    }

    fn constraint(phrase: &str) -> Result<(), ConstraintViolation> {
        Err(ConstraintViolation::Constraint(phrase.to_owned()))
    }

    #[test]
    fn rfc4826_section_4_3_example_passes() {
        let xml = rls(&format!(
            r#"<service uri="sip:mybuddies@example.com">
                 <resource-list>{}</resource-list>
                 <packages><package>presence</package></packages>
               </service>
               <service uri="sip:marketing@example.com">
                 <list name="marketing">
                   <rl:entry uri="sip:joe@example.com"/>
                   <rl:entry uri="sip:sudhir@example.com"/>
                 </list>
                 <packages><package>presence</package></packages>
               </service>"#,
            own_list("l1")
        ));
        assert_eq!(run(&xml, &ctx()), Ok(()));
    }

    #[test]
    fn rl12_rfc4825_11_1_duplicate_service_uri_with_alt_value() {
        // RFC 4825 §11.1 shape: <exists field="rls-services/service/@uri"> + <alt-value>.
        let xml = rls(&format!(
            "{}{}",
            service_with_list("sip:friends@example.com", &own_list("a")),
            service_with_list("sip:friends@example.com", &own_list("b"))
        ));
        assert_eq!(
            run(&xml, &ctx()),
            Err(ConstraintViolation::Uniqueness(vec![UniquenessField {
                field: "rls-services/service%5B2%5D/@uri".into(),
                alt_values: vec!["sip:friends-1@example.com".into()],
            }]))
        );
        assert_eq!(service_uri_field(2), "rls-services/service%5B2%5D/@uri");
    }

    #[test]
    fn rl12b_alt_value_is_free_in_the_document() {
        let xml = rls(&format!(
            "{}{}{}",
            service_with_list("sip:friends@example.com", &own_list("a")),
            service_with_list("sip:friends-1@example.com", &own_list("b")),
            service_with_list("sip:friends@example.com", &own_list("c"))
        ));
        let Err(ConstraintViolation::Uniqueness(f)) = run(&xml, &ctx()) else {
            panic!("expected uniqueness failure");
        };
        assert_eq!(f[0].field, "rls-services/service%5B3%5D/@uri");
        assert_eq!(
            f[0].alt_values,
            vec!["sip:friends-2@example.com".to_owned()]
        );
    }

    #[test]
    fn rl12b_alt_service_uri_shapes() {
        let none = |_: &str| false;
        assert_eq!(
            alt_service_uri("sip:friends@example.com", none).as_deref(),
            Some("sip:friends-1@example.com")
        );
        assert_eq!(
            alt_service_uri("sip:alice@example.com;pres-list=rcs", none).as_deref(),
            Some("sip:alice-1@example.com;pres-list=rcs")
        );
        assert_eq!(
            alt_service_uri("sip:example.com;x=y", none).as_deref(),
            Some("sip:example.com-1;x=y")
        );
        let taken = |c: &str| c == "sip:f-1@e.com" || c == "sip:f-2@e.com";
        assert_eq!(
            alt_service_uri("sip:f@e.com", taken).as_deref(),
            Some("sip:f-3@e.com")
        );
        assert_eq!(alt_service_uri("sip:f@e.com", |_| true), None);
    }

    #[test]
    fn service_uris_lists_every_service_in_order() {
        let xml = rls(&format!(
            r#"{}<x:service xmlns:x="urn:example" uri="sip:ignored@example.com"/>{}"#,
            service_with_list("sip:a@example.com", &own_list("a")),
            service_with_list("sip:b@example.com", &own_list("b"))
        ));
        let doc = Document::parse(&xml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            service_uris(&doc),
            vec!["sip:a@example.com", "sip:b@example.com"]
        );
        let other = Document::parse("<a/>").unwrap_or_else(|e| panic!("{e}"));
        assert!(service_uris(&other).is_empty());
    }

    #[test]
    fn rl13_resource_list_to_own_list_passes_for_every_xui_spelling() {
        for xui in [
            "sip:alice@example.com",
            "sip%3Aalice%40example.com",
            "alice@example.com",
            "sip:alice@EXAMPLE.COM",
        ] {
            let uri = format!("{ROOT}/resource-lists/users/{xui}/index/~~/resource-lists/list%5B@name=%22rcs%22%5D");
            let xml = rls(&service_with_list(
                "sip:alice@example.com;pres-list=rcs",
                &uri,
            ));
            assert_eq!(run(&xml, &ctx()), Ok(()), "{xui}");
        }
    }

    #[test]
    fn rl13_resource_list_must_be_absolute_http() {
        for bad in [
            "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B1%5D",
            "sip:alice@example.com",
            "",
        ] {
            let xml = rls(&service_with_list("sip:s@example.com", bad));
            assert_eq!(run(&xml, &ctx()), constraint(PHRASE_RL_FORM), "{bad:?}");
        }
    }

    #[test]
    fn rl13_resource_list_must_name_resource_lists_of_the_same_xui() {
        for bad in [
            format!("{ROOT}/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5B1%5D"),
            format!("{ROOT}/rls-services/users/sip:alice@example.com/index/~~/rls-services/service%5B1%5D"),
            format!("{ROOT}/resource-lists/global/index/~~/resource-lists/list%5B1%5D"),
        ] {
            let xml = rls(&service_with_list("sip:s@example.com", &bad));
            assert_eq!(run(&xml, &ctx()), constraint(PHRASE_RL_OWNER), "{bad}");
            // The XUI rule is an RFC MUST: the foreign-reference switch does not lift it.
            let open = HookContext {
                allow_foreign_references: true,
                ..ctx()
            };
            assert_eq!(run(&xml, &open), constraint(PHRASE_RL_OWNER), "{bad}");
        }
    }

    #[test]
    fn rl13_resource_list_needs_a_node_selector() {
        let uri = format!("{ROOT}/resource-lists/users/sip:alice@example.com/index");
        let xml = rls(&service_with_list("sip:s@example.com", &uri));
        assert_eq!(run(&xml, &ctx()), constraint(PHRASE_RL_SELECTOR));
    }

    #[test]
    fn rl13_resource_list_under_another_root_needs_the_switch() {
        let uri = "http://other.example.net/root/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B1%5D";
        let xml = rls(&service_with_list("sip:s@example.com", uri));
        assert_eq!(run(&xml, &ctx()), constraint(PHRASE_RL_ROOT));
        let open = HookContext {
            allow_foreign_references: true,
            ..ctx()
        };
        assert_eq!(run(&xml, &open), Ok(()));
        let no_selector = rls(&service_with_list(
            "sip:s@example.com",
            "http://other.example.net/root/resource-lists/users/sip:alice@example.com/index",
        ));
        assert_eq!(run(&no_selector, &open), constraint(PHRASE_RL_SELECTOR));
    }

    #[test]
    fn rl13_global_tree_document_may_reference_any_users_lists() {
        let global = HookContext { xui: None, ..ctx() };
        let uri = format!(
            "{ROOT}/resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5B1%5D"
        );
        let xml = rls(&service_with_list("sip:s@example.com", &uri));
        assert_eq!(run(&xml, &global), Ok(()));
    }

    #[test]
    fn rl14_inline_list_duplicate_entries_use_prefixed_field() {
        let xml = rls(r#"<service uri="sip:m@example.com"><list name="m">
                 <rl:entry uri="sip:joe@example.com"/><rl:entry uri="sip:joe@example.com"/>
               </list><packages><package>presence</package></packages></service>"#);
        assert_eq!(
            run(&xml, &ctx()),
            Err(ConstraintViolation::Uniqueness(vec![UniquenessField {
                field: "rls-services/service%5B1%5D/list%5B1%5D/rl:entry%5B2%5D/@uri?xmlns(rl=urn:ietf:params:xml:ns:resource-lists)".into(),
                alt_values: vec![],
            }]))
        );
    }

    #[test]
    fn rl14_inline_nested_list_names_and_references() {
        let xml = rls(r#"<service uri="sip:m@example.com"><list>
                 <rl:list name="x"/><rl:list name="x"/>
               </list></service>"#);
        let Err(ConstraintViolation::Uniqueness(f)) = run(&xml, &ctx()) else {
            panic!("expected uniqueness failure");
        };
        assert_eq!(f[0].alt_values, vec!["x-1".to_owned()]);
        let xml = rls(r#"<service uri="sip:m@example.com"><list>
                 <rl:external anchor="http://xcap.example.com/xcap-root/resource-lists/users/sip:bob@example.com/index"/>
               </list></service>"#);
        assert!(matches!(
            run(&xml, &ctx()),
            Err(ConstraintViolation::Constraint(_))
        ));
        let xml = rls(r#"<service uri="sip:m@example.com"><list>
                 <rl:entry-ref ref="/resource-lists/users/sip:alice@example.com/index"/>
               </list></service>"#);
        assert!(matches!(
            run(&xml, &ctx()),
            Err(ConstraintViolation::Constraint(_))
        ));
    }

    #[test]
    fn io06a_rcs_rls_services_document_passes() {
        let xml = rls(&format!(
            r#"<service uri="sip:alice@example.com;pres-list=rcs">
                 <resource-list>{ROOT}/resource-lists/users/sip%3Aalice%40example.com/index/~~/resource-lists/list%5B%40name%3D%22rcs%22%5D</resource-list>
                 <packages><package>presence</package></packages>
               </service>"#
        ));
        assert_eq!(run(&xml, &ctx()), Ok(()));
        let hook = hook_by_name("rls-services").unwrap_or_else(|| panic!("missing"));
        let doc = Document::parse(&xml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hook(&doc, &ctx()), Ok(()));
    }

    #[test]
    fn resource_list_whitespace_is_collapsed_like_xs_anyuri() {
        let xml = rls(&service_with_list(
            "sip:s@example.com",
            &format!("\n   {}\n ", own_list("a")),
        ));
        assert_eq!(run(&xml, &ctx()), Ok(()));
    }
}
