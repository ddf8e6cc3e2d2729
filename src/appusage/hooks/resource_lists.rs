//! Constraint hooks for resource-lists documents (RFC 4826 §3.4.5) and the OMA group usage
//! list (SX-02): sibling uniqueness of `<list name>`, `<entry uri>`, `<entry-ref ref>` and
//! `<external anchor>` at every nesting level (RL-03..RL-06, case-sensitive per RL-19), the
//! URI form of references, the owner restriction on references (CP-26 style, switchable),
//! and the OMA rules SX-01 / SX-02. The sibling walker is shared with inline `<list>`
//! elements of rls-services documents (RL-14).

use std::collections::{HashMap, HashSet};

use roxmltree::{Document, Node};

use super::{
    any_uri_value, children_in, is_element, is_relative_path_reference, parse_http_uri,
    relative_to_root, ConstraintViolation, FieldBuilder, FieldStep, Findings, HookContext,
    XcapReference, NS_RESOURCE_LISTS,
};

/// SX-01 / SX-02a phrase (Mobicents wording).
pub(crate) const PHRASE_NAME_REQUIRED: &str = "Name attribute is required.";
/// SX-02b phrase.
pub(crate) const PHRASE_NOT_ALLOWED: &str = "Not allowed";
const PHRASE_REF_FORM: &str = "entry-ref must be a relative path reference to the XCAP root";
const PHRASE_REF_FOREIGN: &str = "entry-ref must reference the owner's own resource-lists";
const PHRASE_ANCHOR_FORM: &str = "external anchor must be an absolute HTTP URI";
const PHRASE_ANCHOR_FOREIGN: &str = "external anchor must reference the owner's own resource-lists";

/// Upper bound on `name-N` candidates tried for an `<alt-value>`.
const MAX_ALT_CANDIDATES: usize = 10_000;

/// Which optional list rules apply on top of RFC 4826 §3.4.5.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ListRules {
    /// `<list name>` is required (SX-01 in OMA mode, SX-02a).
    pub(crate) require_name: bool,
    /// `<entry-ref>` and `<external>` are refused (SX-02b).
    pub(crate) forbid_references: bool,
}

/// Hook `resource-lists` (AUID `resource-lists`, default namespace resource-lists).
pub fn resource_lists(doc: &Document, ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let rules = ListRules {
        require_name: ctx.oma_compliant,
        forbid_references: false,
    };
    check_document(doc, ctx, rules)
}

/// Hook `group-usage-list` (AUID `org.openmobilealliance.group-usage-list`, SX-02): the
/// resource-lists rules plus a required `name` and no `<entry-ref>` / `<external>`.
pub fn group_usage_list(doc: &Document, ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let rules = ListRules {
        require_name: true,
        forbid_references: true,
    };
    check_document(doc, ctx, rules)
}

fn check_document(
    doc: &Document,
    ctx: &HookContext,
    rules: ListRules,
) -> Result<(), ConstraintViolation> {
    let root = doc.root_element();
    let mut findings = Findings::default();
    // Another root element is the schema's business (validation runs first).
    if is_element(&root, NS_RESOURCE_LISTS, "resource-lists") {
        let fields = FieldBuilder {
            default_ns: NS_RESOURCE_LISTS,
        };
        check_list_content(root, ctx, rules, fields, &mut findings);
    }
    findings.finish()
}

/// Checks the resource-lists children of `container` and of every `<list>` below it.
/// Iterative, so nesting depth cannot exhaust the stack.
pub(crate) fn check_list_content(
    container: Node,
    ctx: &HookContext,
    rules: ListRules,
    fields: FieldBuilder,
    findings: &mut Findings,
) {
    let mut pending = vec![container];
    while let Some(parent) = pending.pop() {
        let nested = check_siblings(parent, ctx, rules, fields, findings);
        // Reversed so that nested lists are visited in document order.
        pending.extend(nested.into_iter().rev());
    }
}

/// A value seen among siblings for one attribute: how often, and where it repeated.
#[derive(Default)]
struct SiblingValues<'a, 'input> {
    counts: HashMap<&'a str, usize>,
    /// Second occurrence of each non-unique value, with its same-name position.
    repeats: Vec<(Node<'a, 'input>, usize, &'a str)>,
}

impl<'a, 'input: 'a> SiblingValues<'a, 'input> {
    fn add(&mut self, node: Node<'a, 'input>, position: usize, value: &'a str) {
        let count = self.counts.entry(value).or_insert(0);
        *count += 1;
        // One <exists> per non-unique value (ER-11), pointing at its first repetition.
        if *count == 2 {
            self.repeats.push((node, position, value));
        }
    }
}

/// Checks the direct resource-lists children of `parent`; returns the nested `<list>`s.
fn check_siblings<'a, 'input: 'a>(
    parent: Node<'a, 'input>,
    ctx: &HookContext,
    rules: ListRules,
    fields: FieldBuilder,
    findings: &mut Findings,
) -> Vec<Node<'a, 'input>> {
    let mut nested = Vec::new();
    let mut positions: HashMap<&str, usize> = HashMap::new();
    let mut names = SiblingValues::default();
    let mut uris = SiblingValues::default();
    let mut refs = SiblingValues::default();
    let mut anchors = SiblingValues::default();

    for child in children_in(parent, NS_RESOURCE_LISTS) {
        let local = child.tag_name().name();
        let position = {
            let p = positions.entry(local).or_insert(0);
            *p += 1;
            *p
        };
        match local {
            "list" => {
                match child.attribute("name") {
                    Some(name) => names.add(child, position, name),
                    None if rules.require_name => findings.constraint(PHRASE_NAME_REQUIRED),
                    None => {}
                }
                nested.push(child);
            }
            "entry" => {
                if let Some(uri) = child.attribute("uri") {
                    uris.add(child, position, uri);
                }
            }
            "entry-ref" => {
                if rules.forbid_references {
                    findings.constraint(PHRASE_NOT_ALLOWED);
                }
                if let Some(r) = child.attribute("ref") {
                    refs.add(child, position, r);
                    check_entry_ref(r, ctx, findings);
                }
            }
            "external" => {
                if rules.forbid_references {
                    findings.constraint(PHRASE_NOT_ALLOWED);
                }
                if let Some(anchor) = child.attribute("anchor") {
                    anchors.add(child, position, anchor);
                    check_external_anchor(anchor, ctx, findings);
                }
            }
            _ => {}
        }
    }

    let any_repeats = [&names, &uris, &refs, &anchors]
        .iter()
        .any(|v| !v.repeats.is_empty());
    if any_repeats {
        let parent_steps = fields.steps_to(parent);
        let field = |node: Node, position: usize, attr: &str| {
            let mut steps = parent_steps.clone();
            steps.push(FieldStep::with_position(node, position));
            fields.render(&steps, attr)
        };
        let mut proposed = HashSet::new();
        for &(node, position, name) in &names.repeats {
            let alt = propose_list_name(name, &names.counts, &mut proposed);
            findings.uniqueness(field(node, position, "name"), alt.into_iter().collect());
        }
        // No sensible alternative exists for a URI naming a person or a resource (ER-11).
        for (values, attr) in [(&uris, "uri"), (&refs, "ref"), (&anchors, "anchor")] {
            for &(node, position, _) in &values.repeats {
                findings.uniqueness(field(node, position, attr), Vec::new());
            }
        }
    }
    nested
}

/// First `name-N` not used by a sibling list nor already proposed in this report.
fn propose_list_name(
    name: &str,
    taken: &HashMap<&str, usize>,
    proposed: &mut HashSet<String>,
) -> Option<String> {
    let candidate = (1..=MAX_ALT_CANDIDATES)
        .map(|i| format!("{name}-{i}"))
        .find(|c| !taken.contains_key(c.as_str()) && !proposed.contains(c))?;
    proposed.insert(candidate.clone());
    Some(candidate)
}

/// RL-05: a relative path reference resolved against the XCAP root; by default it must
/// stay inside the owner's resource-lists documents.
fn check_entry_ref(raw: &str, ctx: &HookContext, findings: &mut Findings) {
    let r = any_uri_value(raw);
    if !is_relative_path_reference(r) {
        findings.constraint(PHRASE_REF_FORM);
        return;
    }
    if !ctx.allow_foreign_references && !XcapReference::parse(r).names_list_document(ctx.xui) {
        findings.constraint(PHRASE_REF_FOREIGN);
    }
}

/// RL-06: an absolute HTTP(S) URI; by default under this XCAP root and inside the owner's
/// resource-lists documents (CP-26).
fn check_external_anchor(raw: &str, ctx: &HookContext, findings: &mut Findings) {
    let anchor = any_uri_value(raw);
    if parse_http_uri(anchor).is_none() {
        findings.constraint(PHRASE_ANCHOR_FORM);
        return;
    }
    if ctx.allow_foreign_references {
        return;
    }
    let own = relative_to_root(anchor, ctx.xcap_root)
        .is_some_and(|rel| XcapReference::parse(rel).names_list_document(ctx.xui));
    if !own {
        findings.constraint(PHRASE_ANCHOR_FOREIGN);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{hook_by_name, UniquenessField};
    use super::*;

    const ROOT: &str = "http://xcap.example.com/xcap-root";
    const ALICE: &str = "sip:alice@example.com";

    fn ctx() -> HookContext<'static> {
        HookContext {
            xcap_root: ROOT,
            auid: "resource-lists",
            xui: Some(ALICE),
            document_path: "index",
            allow_foreign_references: false,
            oma_compliant: false,
        }
    }

    fn rl(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">{body}</resource-lists>"#
        )
    }

    fn run(xml: &str, ctx: &HookContext) -> Result<(), ConstraintViolation> {
        let doc = Document::parse(xml).unwrap_or_else(|e| panic!("fixture: {e}"));
        resource_lists(&doc, ctx)
    }

    fn run_group(xml: &str, ctx: &HookContext) -> Result<(), ConstraintViolation> {
        let doc = Document::parse(xml).unwrap_or_else(|e| panic!("fixture: {e}"));
        group_usage_list(&doc, ctx)
    }

    fn uniq(fields: &[(&str, &[&str])]) -> Result<(), ConstraintViolation> {
        Err(ConstraintViolation::Uniqueness(
            fields
                .iter()
                .map(|(f, alts)| UniquenessField {
                    field: (*f).to_owned(),
                    alt_values: alts.iter().map(|a| (*a).to_owned()).collect(),
                })
                .collect(),
        ))
    }

    fn constraint(phrase: &str) -> Result<(), ConstraintViolation> {
        Err(ConstraintViolation::Constraint(phrase.to_owned()))
    }

    #[test]
    fn rfc4826_example_document_passes() {
        // RFC 4826 §3.3 example shape: nested list, entry-ref and external.
        let xml = rl(r#"
          <list name="friends">
            <entry uri="sip:bill@example.com"><display-name>Bill Doe</display-name></entry>
            <entry-ref ref="resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5b@name=%22list1%22%5d/entry%5b@uri=%22sip:petri@example.com%22%5d"/>
            <list name="close-friends">
              <display-name>Close Friends</display-name>
              <entry uri="sip:joe@example.com"/>
              <entry uri="sip:nancy@example.com"/>
            </list>
            <external anchor="http://xcap.example.com/xcap-root/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5b@name=%22mkting%22%5d"/>
          </list>"#);
        assert_eq!(run(&xml, &ctx()), Ok(()));
    }

    #[test]
    fn rl03_duplicate_top_level_list_name_with_alt_value() {
        let xml = rl(r#"<list name="friends"/><list name="work"/><list name="friends"/>"#);
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[("resource-lists/list%5B3%5D/@name", &["friends-1"])])
        );
    }

    #[test]
    fn rl03_nested_duplicate_list_name() {
        let xml = rl(
            r#"<list name="a"/><list name="b"><entry uri="sip:x@example.com"/>
            <list name="c"/><list name="c"/></list>"#,
        );
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[("resource-lists/list%5B2%5D/list%5B2%5D/@name", &["c-1"])])
        );
    }

    #[test]
    fn rl03_same_name_at_different_levels_and_case_differences_pass() {
        let xml = rl(r#"<list name="a"><list name="a"/><list name="A"/></list><list name="A"/>"#);
        assert_eq!(run(&xml, &ctx()), Ok(()));
    }

    #[test]
    fn rl03_alt_value_skips_names_used_by_siblings_and_earlier_proposals() {
        let xml = rl(
            r#"<list name="a"/><list name="a"/><list name="a-1"/><list name="b"/><list name="b"/><list name="a-2"/>"#,
        );
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[
                ("resource-lists/list%5B2%5D/@name", &["a-3"]),
                ("resource-lists/list%5B5%5D/@name", &["b-1"]),
            ])
        );
    }

    #[test]
    fn rl03_triple_duplicate_reports_one_exists_per_value_er11() {
        let xml = rl(r#"<list name="x"/><list name="x"/><list name="x"/>"#);
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[("resource-lists/list%5B2%5D/@name", &["x-1"])])
        );
    }

    #[test]
    fn rl04_duplicate_entry_uri_has_no_alt_value() {
        let xml = rl(
            r#"<list name="l"><entry uri="sip:a@example.com"/><list name="n"/>
            <entry uri="sip:b@example.com"/><entry uri="sip:a@example.com"/></list>"#,
        );
        // Positions count same-name siblings only (NS-15): the inner <list> is not counted.
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[("resource-lists/list%5B1%5D/entry%5B3%5D/@uri", &[])])
        );
    }

    #[test]
    fn rl04_rl19_uri_comparison_is_case_sensitive_and_per_parent() {
        let xml = rl(
            r#"<list name="l"><entry uri="sip:a@example.com"/><entry uri="sip:A@example.com"/></list>
            <list name="m"><entry uri="sip:a@example.com"/></list>"#,
        );
        assert_eq!(run(&xml, &ctx()), Ok(()));
    }

    #[test]
    fn er11_several_failures_all_reported() {
        let xml = rl(
            r#"<list name="l"><entry uri="sip:a@example.com"/><entry uri="sip:a@example.com"/></list>
            <list name="l"><entry uri="sip:b@example.com"/><entry uri="sip:b@example.com"/></list>"#,
        );
        let Err(ConstraintViolation::Uniqueness(fields)) = run(&xml, &ctx()) else {
            panic!("expected uniqueness failure");
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "resource-lists/list%5B2%5D/@name",
                "resource-lists/list%5B1%5D/entry%5B2%5D/@uri",
                "resource-lists/list%5B2%5D/entry%5B2%5D/@uri",
            ]
        );
    }

    #[test]
    fn field_percent_encodes_non_ascii_and_quotes_in_names_er11() {
        // Positions, not values, identify the node, so the field stays plain ASCII.
        let xml = rl(r#"<list name="é &quot;x&quot;"/><list name="é &quot;x&quot;"/>"#);
        let Err(ConstraintViolation::Uniqueness(f)) = run(&xml, &ctx()) else {
            panic!("expected uniqueness failure");
        };
        assert_eq!(f[0].field, "resource-lists/list%5B2%5D/@name");
        assert_eq!(f[0].alt_values, vec!["é \"x\"-1".to_owned()]);
    }

    #[test]
    fn rl05_entry_ref_to_own_document_passes_in_plain_and_encoded_xui() {
        for xui in [
            "sip:alice@example.com",
            "sip%3Aalice%40example.com",
            "alice@EXAMPLE.com",
        ] {
            let xml = rl(&format!(
                r#"<list name="l"><entry-ref ref="resource-lists/users/{xui}/index/~~/resource-lists/list%5B@name=%22a%22%5D/entry%5B1%5D"/></list>"#
            ));
            assert_eq!(run(&xml, &ctx()), Ok(()), "{xui}");
        }
    }

    #[test]
    fn rl05_entry_ref_must_be_relative_path_reference() {
        for bad in [
            "http://xcap.example.com/xcap-root/resource-lists/users/sip:alice@example.com/index",
            "/resource-lists/users/sip:alice@example.com/index",
            "//xcap.example.com/resource-lists/users/sip:alice@example.com/index",
            "sip:alice@example.com",
        ] {
            let xml = rl(&format!(
                r#"<list name="l"><entry-ref ref="{bad}"/></list>"#
            ));
            assert_eq!(run(&xml, &ctx()), constraint(PHRASE_REF_FORM), "{bad}");
        }
    }

    #[test]
    fn rl05_entry_ref_to_other_user_fails_by_default_and_passes_when_allowed() {
        let xml = rl(
            r#"<list name="l"><entry-ref ref="resource-lists/users/sip:bob@example.com/index/~~/resource-lists/list%5B1%5D/entry%5B1%5D"/></list>"#,
        );
        assert_eq!(run(&xml, &ctx()), constraint(PHRASE_REF_FOREIGN));
        let open = HookContext {
            allow_foreign_references: true,
            ..ctx()
        };
        assert_eq!(run(&xml, &open), Ok(()));
        // Other AUIDs and dot segments escaping the home directory are foreign too.
        for bad in [
            "rls-services/users/sip:alice@example.com/index",
            "resource-lists/users/sip:alice@example.com/../sip:bob@example.com/index",
            "resource-lists/users/sip:alice@example.com/",
        ] {
            let xml = rl(&format!(
                r#"<list name="l"><entry-ref ref="{bad}"/></list>"#
            ));
            assert_eq!(run(&xml, &ctx()), constraint(PHRASE_REF_FOREIGN), "{bad}");
        }
    }

    #[test]
    fn rl05_duplicate_entry_ref_is_a_uniqueness_failure() {
        let r = "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B1%5D/entry%5B1%5D";
        let xml = rl(&format!(
            r#"<list name="l"><entry-ref ref="{r}"/><entry-ref ref="{r}"/></list>"#
        ));
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[("resource-lists/list%5B1%5D/entry-ref%5B2%5D/@ref", &[])])
        );
    }

    #[test]
    fn rl06_external_anchor_must_be_absolute_http_uri() {
        for bad in [
            "resource-lists/users/sip:alice@example.com/index",
            "sip:friends@example.com",
            "ftp://xcap.example.com/xcap-root/resource-lists/users/sip:alice@example.com/index",
        ] {
            let xml = rl(&format!(
                r#"<list name="l"><external anchor="{bad}"/></list>"#
            ));
            assert_eq!(run(&xml, &ctx()), constraint(PHRASE_ANCHOR_FORM), "{bad}");
        }
    }

    #[test]
    fn rl06_duplicate_external_anchor_is_a_uniqueness_failure() {
        let a = "http://xcap.example.com/xcap-root/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22rcs%22%5D";
        let xml = rl(&format!(
            r#"<list name="l"><external anchor="{a}"/><external anchor="{a}"/></list>"#
        ));
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[("resource-lists/list%5B1%5D/external%5B2%5D/@anchor", &[])])
        );
    }

    /// The RCS resource-lists document (IO-06b): OMA lists hold <external> anchors to the
    /// user's own rcs lists, written with the percent-encoded XUI as rcsjta does (IO-01c).
    fn rcs_document(owner_segment: &str) -> String {
        let anchor = |list: &str| {
            format!("{ROOT}/resource-lists/users/{owner_segment}/index/~~/resource-lists/list%5B@name=%22{list}%22%5D")
        };
        rl(&format!(
            r#"<list name="oma_buddylist"><external anchor="{}"/></list>
               <list name="oma_grantedcontacts"><external anchor="{}"/></list>
               <list name="oma_blockedcontacts"><external anchor="{}"/><external anchor="{}"/></list>
               <list name="rcs"><entry uri="tel:+33600000001"/><entry uri="sip:bob@example.com"/></list>
               <list name="rcs_blockedcontacts"/>
               <list name="rcs_revokedcontacts"/>"#,
            anchor("rcs"),
            anchor("rcs"),
            anchor("rcs_blockedcontacts"),
            anchor("rcs_revokedcontacts"),
        ))
    }

    #[test]
    fn io06b_rcs_lists_referencing_own_lists_pass() {
        assert_eq!(
            run(&rcs_document("sip%3Aalice%40example.com"), &ctx()),
            Ok(())
        );
        assert_eq!(run(&rcs_document("sip:alice@example.com"), &ctx()), Ok(()));
        // OMA mode (SX-01) is satisfied too: every list is named.
        let oma = HookContext {
            oma_compliant: true,
            ..ctx()
        };
        assert_eq!(
            run(&rcs_document("sip%3Aalice%40example.com"), &oma),
            Ok(())
        );
    }

    #[test]
    fn io06b_rcs_lists_referencing_another_users_lists_fail_unless_allowed_cp26() {
        let doc = rcs_document("sip%3Abob%40example.com");
        assert_eq!(run(&doc, &ctx()), constraint(PHRASE_ANCHOR_FOREIGN));
        let open = HookContext {
            allow_foreign_references: true,
            ..ctx()
        };
        assert_eq!(run(&doc, &open), Ok(()));
    }

    #[test]
    fn rl06_anchor_under_another_root_fails_unless_allowed() {
        let xml = rl(
            r#"<list name="l"><external anchor="http://other.example.net/xcap-root/resource-lists/users/sip:alice@example.com/index"/></list>"#,
        );
        assert_eq!(run(&xml, &ctx()), constraint(PHRASE_ANCHOR_FOREIGN));
        let open = HookContext {
            allow_foreign_references: true,
            ..ctx()
        };
        assert_eq!(run(&xml, &open), Ok(()));
    }

    #[test]
    fn global_tree_document_has_no_owner_restriction_but_keeps_the_root() {
        let global = HookContext { xui: None, ..ctx() };
        let xml = rl(&format!(
            r#"<list name="l"><external anchor="{ROOT}/resource-lists/users/sip:bob@example.com/index"/>
               <entry-ref ref="resource-lists/global/index/~~/resource-lists/list%5B1%5D/entry%5B1%5D"/></list>"#
        ));
        assert_eq!(run(&xml, &global), Ok(()));
        let xml = rl(
            r#"<list name="l"><external anchor="http://elsewhere.example/resource-lists/users/x/index"/></list>"#,
        );
        assert_eq!(run(&xml, &global), constraint(PHRASE_ANCHOR_FOREIGN));
    }

    #[test]
    fn elements_of_other_namespaces_are_ignored_rl02c() {
        let xml = rl(r#"<list name="l" xmlns:x="urn:example:other">
              <x:entry uri="sip:a@example.com"/><x:entry uri="sip:a@example.com"/>
              <x:list name="d"/><x:list name="d"/>
              <x:external anchor="not a uri"/>
              <x:wrap><list name="z"/><list name="z"/></x:wrap>
            </list>"#);
        assert_eq!(run(&xml, &ctx()), Ok(()));
    }

    #[test]
    fn foreign_root_element_is_left_to_the_schema() {
        let xml = r#"<other xmlns="urn:example"><list name="a"/><list name="a"/></other>"#;
        assert_eq!(run(xml, &ctx()), Ok(()));
    }

    #[test]
    fn sx01_oma_mode_requires_list_name_at_every_level() {
        let oma = HookContext {
            oma_compliant: true,
            ..ctx()
        };
        let top = rl(r#"<list><entry uri="sip:a@example.com"/></list>"#);
        assert_eq!(run(&top, &ctx()), Ok(()));
        assert_eq!(run(&top, &oma), constraint(PHRASE_NAME_REQUIRED));
        let nested = rl(r#"<list name="a"><list/></list>"#);
        assert_eq!(run(&nested, &oma), constraint(PHRASE_NAME_REQUIRED));
    }

    #[test]
    fn sx02_group_usage_list_rules() {
        let ok = rl(r#"<list name="g"><entry uri="sip:a@example.com"/><list name="h"/></list>"#);
        assert_eq!(run_group(&ok, &ctx()), Ok(()));
        let unnamed = rl(r#"<list name="g"><list><entry uri="sip:a@example.com"/></list></list>"#);
        assert_eq!(
            run_group(&unnamed, &ctx()),
            constraint(PHRASE_NAME_REQUIRED)
        );
        let entry_ref = rl(
            r#"<list name="g"><entry-ref ref="resource-lists/users/sip:alice@example.com/index"/></list>"#,
        );
        assert_eq!(
            run_group(&entry_ref, &ctx()),
            constraint(PHRASE_NOT_ALLOWED)
        );
        let external = rl(&format!(
            r#"<list name="g"><external anchor="{ROOT}/resource-lists/users/sip:alice@example.com/index"/></list>"#
        ));
        assert_eq!(run_group(&external, &ctx()), constraint(PHRASE_NOT_ALLOWED));
        let dup = rl(r#"<list name="g"/><list name="g"/>"#);
        assert_eq!(
            run_group(&dup, &ctx()),
            uniq(&[("resource-lists/list%5B2%5D/@name", &["g-1"])])
        );
    }

    #[test]
    fn op23_uniqueness_reported_before_constraint() {
        let xml = rl(r#"<list name="a"><external anchor="relative"/></list><list name="a"/>"#);
        assert!(matches!(
            run(&xml, &ctx()),
            Err(ConstraintViolation::Uniqueness(_))
        ));
    }

    #[test]
    fn hook_by_name_dispatches_to_resource_lists_rules() {
        let hook = hook_by_name("resource-lists").unwrap_or_else(|| panic!("missing"));
        let doc_text = rl(r#"<list name="a"/><list name="a"/>"#);
        let doc = Document::parse(&doc_text).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            hook(&doc, &ctx()),
            Err(ConstraintViolation::Uniqueness(_))
        ));
        let hook = hook_by_name("group-usage-list").unwrap_or_else(|| panic!("missing"));
        let doc_text = rl(r#"<list/>"#);
        let doc = Document::parse(&doc_text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hook(&doc, &ctx()), constraint(PHRASE_NAME_REQUIRED));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// RL-03 / ER-11: whatever sibling names exist, a repeated name is reported once,
            /// at its second occurrence, with an alt-value no sibling uses.
            #[test]
            fn alt_list_name_is_free(names in proptest::collection::vec("a(-[12]){0,2}", 1..12)) {
                let body: String = names.iter().map(|n| format!(r#"<list name="{n}"/>"#)).collect();
                let xml = rl(&body);
                let mut seen = std::collections::HashMap::new();
                let mut expected_fields = Vec::new();
                for (i, n) in names.iter().enumerate() {
                    let c = seen.entry(n.as_str()).or_insert(0);
                    *c += 1;
                    if *c == 2 {
                        expected_fields.push(format!("resource-lists/list%5B{}%5D/@name", i + 1));
                    }
                }
                match run(&xml, &ctx()) {
                    Ok(()) => prop_assert!(expected_fields.is_empty()),
                    Err(ConstraintViolation::Uniqueness(fields)) => {
                        let got: Vec<String> = fields.iter().map(|f| f.field.clone()).collect();
                        prop_assert_eq!(got, expected_fields);
                        let mut proposed = std::collections::HashSet::new();
                        for f in &fields {
                            prop_assert_eq!(f.alt_values.len(), 1);
                            let alt = &f.alt_values[0];
                            prop_assert!(!names.contains(alt));
                            prop_assert!(proposed.insert(alt.clone()));
                        }
                    }
                    Err(other) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        let depth = 2_000;
        let mut body = String::new();
        for i in 0..depth {
            body.push_str(&format!(r#"<list name="n{i}">"#));
        }
        body.push_str(r#"<entry uri="sip:a@example.com"/><entry uri="sip:a@example.com"/>"#);
        for _ in 0..depth {
            body.push_str("</list>");
        }
        let xml = rl(&body);
        let doc = Document::parse(&xml).unwrap_or_else(|e| panic!("{e}"));
        let Err(ConstraintViolation::Uniqueness(f)) = resource_lists(&doc, &ctx()) else {
            panic!("expected uniqueness failure");
        };
        assert!(f[0].field.ends_with("/list%5B1%5D/entry%5B2%5D/@uri"));
        assert_eq!(f[0].field.matches("list%5B1%5D").count(), depth);
    }

    #[test]
    fn large_list_without_duplicates_passes() {
        let entries: String = (0..10_000)
            .map(|i| format!(r#"<entry uri="sip:user{i}@example.com"/>"#))
            .collect();
        let xml = rl(&format!(r#"<list name="big">{entries}</list>"#));
        assert_eq!(run(&xml, &ctx()), Ok(()));
        let xml = rl(&format!(
            r#"<list name="big">{entries}<entry uri="sip:user9999@example.com"/></list>"#
        ));
        assert_eq!(
            run(&xml, &ctx()),
            uniq(&[("resource-lists/list%5B1%5D/entry%5B10001%5D/@uri", &[])])
        );
    }
}
