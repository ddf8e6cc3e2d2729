//! Constraint hooks for common-policy based documents (RFC 4745, RFC 5025, OMA XDM):
//! IETF pres-rules, OMA pres-rules and this suite's IM rules. Rule ids unique within the
//! ruleset (CP-02, reported as a uniqueness failure), the OMA one-of-each condition rule
//! (CP-24a), transformations only with `sub-handling` allow (CP-24b), `ocp:external-list`
//! anchors restricted to the owner's own resource-lists (CP-26, IX-08a), and the closed set
//! of `<im-handling>` values (IX-08a).

use std::collections::{HashMap, HashSet};

use roxmltree::{Document, Node};

use super::{
    any_uri_value, children_in, is_element, parse_http_uri, relative_to_root, text_content,
    ConstraintViolation, FieldBuilder, FieldStep, Findings, HookContext, XcapReference,
    NS_COMMON_POLICY, NS_IM_RULES, NS_OMA_COMMON_POLICY, NS_PRES_RULES,
};

/// CP-24a phrase (openxcap wording).
pub(crate) const PHRASE_COMPLEX_RULES: &str = "Complex rules are not allowed";
/// CP-24b phrase.
pub(crate) const PHRASE_TRANSFORMATIONS: &str =
    "Transformations are only allowed when sub-handling is allow";
/// CP-26 / IX-08a phrase.
pub(crate) const PHRASE_EXTERNAL_LIST: &str =
    "external list must reference the owner's own resource-lists";
/// CP-26 with foreign references allowed: the anchor must still be an absolute HTTP URI.
pub(crate) const PHRASE_EXTERNAL_LIST_FORM: &str =
    "external list anchor must be an absolute HTTP URI";
/// IX-08a phrase.
pub(crate) const PHRASE_IM_HANDLING: &str = "im-handling must be block, polite-block or allow";

/// `<im-handling>` values of this suite's IM policy (IX-07b, IM-26).
const IM_HANDLING_VALUES: &[&str] = &["block", "polite-block", "allow"];

/// Upper bound on `id-N` candidates tried for an `<alt-value>`.
const MAX_ALT_CANDIDATES: usize = 10_000;

/// Which checks a policy usage runs on top of rule-id uniqueness and CP-26.
#[derive(Debug, Clone, Copy)]
struct PolicyRules {
    /// The usage's default document namespace, for `exists/@field` (URI-15).
    default_ns: &'static str,
    /// CP-24a: one each of identity / external-list / other-identity / anonymous-request.
    one_of_each_condition: bool,
    /// CP-24b: transformations only when `pr:sub-handling` is `allow`.
    transformations_need_allow: bool,
    /// IX-08a: `<im-handling>` within its closed value set.
    im_handling: bool,
}

/// Hook `pres-rules` (AUID `pres-rules`; default document namespace pres-rules, CP-15).
pub fn pres_rules(doc: &Document, ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let rules = PolicyRules {
        default_ns: NS_PRES_RULES,
        one_of_each_condition: false,
        transformations_need_allow: false,
        im_handling: false,
    };
    check_ruleset(doc, ctx, rules)
}

/// Hook `oma-pres-rules` (AUID `org.openmobilealliance.pres-rules`; default namespace
/// common-policy, CP-25): adds CP-24a and CP-24b.
pub fn oma_pres_rules(doc: &Document, ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let rules = PolicyRules {
        default_ns: NS_COMMON_POLICY,
        one_of_each_condition: true,
        transformations_need_allow: true,
        im_handling: false,
    };
    check_ruleset(doc, ctx, rules)
}

/// Hook `im-rules` (this suite's IM access policy, IX-07b/IX-08; default namespace
/// common-policy): CP-24a, CP-26 and the `<im-handling>` value set.
pub fn im_rules(doc: &Document, ctx: &HookContext) -> Result<(), ConstraintViolation> {
    let rules = PolicyRules {
        default_ns: NS_COMMON_POLICY,
        one_of_each_condition: true,
        transformations_need_allow: false,
        im_handling: true,
    };
    check_ruleset(doc, ctx, rules)
}

/// One document-order pass over the `<ruleset>`.
fn check_ruleset(
    doc: &Document,
    ctx: &HookContext,
    rules: PolicyRules,
) -> Result<(), ConstraintViolation> {
    let root = doc.root_element();
    let mut findings = Findings::default();
    if !is_element(&root, NS_COMMON_POLICY, "ruleset") {
        return findings.finish();
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut repeats: Vec<(Node, usize, &str)> = Vec::new();
    let mut rule_position = 0usize;

    for node in root.descendants().filter(Node::is_element) {
        let name = node.tag_name();
        match (name.namespace(), name.name()) {
            (Some(NS_COMMON_POLICY), "rule") if node.parent_element() == Some(root) => {
                rule_position += 1;
                if let Some(id) = node.attribute("id") {
                    let count = ids.entry(id).or_insert(0);
                    *count += 1;
                    if *count == 2 {
                        repeats.push((node, rule_position, id));
                    }
                }
                if rules.transformations_need_allow && !transformations_allowed(node) {
                    findings.constraint(PHRASE_TRANSFORMATIONS);
                }
            }
            (Some(NS_COMMON_POLICY), "conditions")
                if rules.one_of_each_condition && is_complex(node) =>
            {
                findings.constraint(PHRASE_COMPLEX_RULES);
            }
            (Some(NS_OMA_COMMON_POLICY), "external-list") => {
                for entry in children_in(node, NS_OMA_COMMON_POLICY) {
                    if entry.tag_name().name() == "entry" {
                        if let Some(anc) = entry.attribute("anc") {
                            check_external_list_anchor(anc, ctx, &mut findings);
                        }
                    }
                }
            }
            (Some(NS_IM_RULES), "im-handling") if rules.im_handling => {
                let value = text_content(&node);
                if !IM_HANDLING_VALUES.contains(&value.trim()) {
                    findings.constraint(PHRASE_IM_HANDLING);
                }
            }
            _ => {}
        }
    }

    if !repeats.is_empty() {
        let fields = FieldBuilder {
            default_ns: rules.default_ns,
        };
        let mut proposed: HashSet<String> = HashSet::new();
        for (rule, position, id) in repeats {
            let steps = [
                FieldStep::root(root),
                FieldStep::with_position(rule, position),
            ];
            let alt = (1..=MAX_ALT_CANDIDATES)
                .map(|i| format!("{id}-{i}"))
                .find(|c| !ids.contains_key(c.as_str()) && !proposed.contains(c));
            if let Some(a) = &alt {
                proposed.insert(a.clone());
            }
            findings.uniqueness(fields.render(&steps, "id"), alt.into_iter().collect());
        }
    }
    findings.finish()
}

/// CP-24a: a `<conditions>` holding two of the same identity-like condition.
fn is_complex(conditions: Node) -> bool {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    conditions
        .children()
        .filter(Node::is_element)
        .filter_map(|c| {
            let name = c.tag_name();
            let ns = name.namespace()?;
            let counted = matches!(
                (ns, name.name()),
                (NS_COMMON_POLICY, "identity")
                    | (NS_OMA_COMMON_POLICY, "external-list")
                    | (NS_OMA_COMMON_POLICY, "other-identity")
                    | (NS_OMA_COMMON_POLICY, "anonymous-request")
            );
            counted.then_some((ns, name.name()))
        })
        .any(|key| !seen.insert(key))
}

/// CP-24b: a rule carrying transformations (a `<transformations>` with element content)
/// must grant `pr:sub-handling` allow; an absent sub-handling means block (CP-17).
fn transformations_allowed(rule: Node) -> bool {
    let has_transformations = children_in(rule, NS_COMMON_POLICY)
        .filter(|c| c.tag_name().name() == "transformations")
        .any(|t| t.children().any(|c| c.is_element()));
    if !has_transformations {
        return true;
    }
    children_in(rule, NS_COMMON_POLICY)
        .filter(|c| c.tag_name().name() == "actions")
        .flat_map(|a| children_in(a, NS_PRES_RULES))
        .filter(|c| c.tag_name().name() == "sub-handling")
        .any(|s| text_content(&s).trim() == "allow")
}

/// CP-26 / IX-08a: `ocp:external-list/ocp:entry/@anc` selects a list in the owner's own
/// resource-lists under this XCAP root, unless foreign references are allowed.
fn check_external_list_anchor(raw: &str, ctx: &HookContext, findings: &mut Findings) {
    let anc = any_uri_value(raw);
    if ctx.allow_foreign_references {
        if parse_http_uri(anc).is_none() {
            findings.constraint(PHRASE_EXTERNAL_LIST_FORM);
        }
        return;
    }
    let own = relative_to_root(anc, ctx.xcap_root).is_some_and(|rel| {
        let reference = XcapReference::parse(rel);
        reference.names_list_document(ctx.xui) && reference.has_node_selector()
    });
    if !own {
        findings.constraint(PHRASE_EXTERNAL_LIST);
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
            auid: "org.openmobilealliance.pres-rules",
            xui: Some("sip:alice@example.com"),
            document_path: "pres-rules",
            allow_foreign_references: false,
            oma_compliant: true,
        }
    }

    fn ruleset(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:pr="urn:ietf:params:xml:ns:pres-rules"
  xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:ocp="urn:oma:xml:xdm:common-policy"
  xmlns:im="urn:xcapd:xml:ns:im-rules">{body}</cr:ruleset>"#
        )
    }

    fn list_anchor(xui: &str, list: &str) -> String {
        format!("{ROOT}/resource-lists/users/{xui}/index/~~/resource-lists/list%5B@name=%22{list}%22%5D")
    }

    fn external_list_rule(id: &str, anc: &str) -> String {
        format!(
            r#"<cr:rule id="{id}"><cr:conditions><ocp:external-list><ocp:entry anc="{anc}"/></ocp:external-list></cr:conditions>
               <cr:actions><pr:sub-handling>block</pr:sub-handling></cr:actions></cr:rule>"#
        )
    }

    fn run(hook: &str, xml: &str, ctx: &HookContext) -> Result<(), ConstraintViolation> {
        let doc = Document::parse(xml).unwrap_or_else(|e| panic!("fixture: {e}"));
        let hook = hook_by_name(hook).unwrap_or_else(|| panic!("no hook {hook}"));
        hook(&doc, ctx)
    }

    fn constraint(phrase: &str) -> Result<(), ConstraintViolation> {
        Err(ConstraintViolation::Constraint(phrase.to_owned()))
    }

    fn duplicate_ids() -> String {
        ruleset(r#"<cr:rule id="a"/><cr:rule id="b"/><cr:rule id="a"/><cr:rule id="a-1"/>"#)
    }

    #[test]
    fn cp02_duplicate_rule_id_in_pres_rules_uses_cp_prefix_er11() {
        assert_eq!(
            run("pres-rules", &duplicate_ids(), &ctx()),
            Err(ConstraintViolation::Uniqueness(vec![UniquenessField {
                field:
                    "cp:ruleset/cp:rule%5B3%5D/@id?xmlns(cp=urn:ietf:params:xml:ns:common-policy)"
                        .into(),
                alt_values: vec!["a-2".into()],
            }]))
        );
    }

    #[test]
    fn cp02_duplicate_rule_id_in_oma_and_im_rules_is_unprefixed() {
        for hook in ["oma-pres-rules", "im-rules"] {
            assert_eq!(
                run(hook, &duplicate_ids(), &ctx()),
                Err(ConstraintViolation::Uniqueness(vec![UniquenessField {
                    field: "ruleset/rule%5B3%5D/@id".into(),
                    alt_values: vec!["a-2".into()],
                }])),
                "{hook}"
            );
        }
    }

    #[test]
    fn cp02_distinct_ids_pass_everywhere() {
        let xml = ruleset(r#"<cr:rule id="a"/><cr:rule id="A"/><cr:rule id="b"/>"#);
        for hook in ["pres-rules", "oma-pres-rules", "im-rules"] {
            assert_eq!(run(hook, &xml, &ctx()), Ok(()), "{hook}");
        }
    }

    #[test]
    fn cp24a_two_identities_in_one_conditions_are_complex() {
        let xml = ruleset(
            r#"<cr:rule id="r"><cr:conditions>
                 <cr:identity><cr:one id="sip:bob@example.com"/></cr:identity>
                 <cr:identity><cr:many/></cr:identity>
               </cr:conditions></cr:rule>"#,
        );
        assert_eq!(
            run("oma-pres-rules", &xml, &ctx()),
            constraint(PHRASE_COMPLEX_RULES)
        );
        assert_eq!(
            run("im-rules", &xml, &ctx()),
            constraint(PHRASE_COMPLEX_RULES)
        );
        // IETF pres-rules has no such rule.
        assert_eq!(run("pres-rules", &xml, &ctx()), Ok(()));
    }

    #[test]
    fn cp24a_each_oma_condition_counts_separately() {
        let own = list_anchor("sip:alice@example.com", "oma_grantedcontacts");
        let mixed = ruleset(&format!(
            r#"<cr:rule id="r"><cr:conditions>
                 <cr:identity><cr:many/></cr:identity>
                 <ocp:external-list><ocp:entry anc="{own}"/></ocp:external-list>
                 <ocp:other-identity/><ocp:anonymous-request/>
                 <cr:sphere value="work"/><cr:sphere value="home"/>
               </cr:conditions></cr:rule>"#
        ));
        assert_eq!(run("oma-pres-rules", &mixed, &ctx()), Ok(()));
        for dup in [
            "<ocp:other-identity/><ocp:other-identity/>",
            "<ocp:anonymous-request/><ocp:anonymous-request/>",
        ] {
            let xml = ruleset(&format!(
                r#"<cr:rule id="r"><cr:conditions>{dup}</cr:conditions></cr:rule>"#
            ));
            assert_eq!(
                run("oma-pres-rules", &xml, &ctx()),
                constraint(PHRASE_COMPLEX_RULES),
                "{dup}"
            );
        }
        let two_lists = ruleset(&format!(
            r#"<cr:rule id="r"><cr:conditions>
                 <ocp:external-list><ocp:entry anc="{own}"/></ocp:external-list>
                 <ocp:external-list><ocp:entry anc="{own}"/></ocp:external-list>
               </cr:conditions></cr:rule>"#
        ));
        assert_eq!(
            run("im-rules", &two_lists, &ctx()),
            constraint(PHRASE_COMPLEX_RULES)
        );
    }

    #[test]
    fn cp24b_transformations_need_sub_handling_allow() {
        let rule = |handling: &str, transformations: &str| {
            ruleset(&format!(
                r#"<cr:rule id="r"><cr:conditions/><cr:actions>{handling}</cr:actions>
                   <cr:transformations>{transformations}</cr:transformations></cr:rule>"#
            ))
        };
        let provide = "<pr:provide-all-attributes/>";
        let confirm = rule("<pr:sub-handling>confirm</pr:sub-handling>", provide);
        assert_eq!(
            run("oma-pres-rules", &confirm, &ctx()),
            constraint(PHRASE_TRANSFORMATIONS)
        );
        assert_eq!(
            run("oma-pres-rules", &rule("", provide), &ctx()),
            constraint(PHRASE_TRANSFORMATIONS)
        );
        assert_eq!(
            run(
                "oma-pres-rules",
                &rule("<pr:sub-handling> allow </pr:sub-handling>", provide),
                &ctx()
            ),
            Ok(())
        );
        // An empty <transformations/> carries no transformation.
        assert_eq!(
            run(
                "oma-pres-rules",
                &rule("<pr:sub-handling>block</pr:sub-handling>", ""),
                &ctx()
            ),
            Ok(())
        );
        // Only the OMA pres-rules usage enforces CP-24b.
        assert_eq!(run("pres-rules", &confirm, &ctx()), Ok(()));
        assert_eq!(run("im-rules", &confirm, &ctx()), Ok(()));
    }

    #[test]
    fn cp26_external_list_to_own_list_passes() {
        for xui in [
            "sip:alice@example.com",
            "sip%3Aalice%40example.com",
            "alice@example.com",
        ] {
            let xml = ruleset(&external_list_rule(
                "r",
                &list_anchor(xui, "oma_blockedcontacts"),
            ));
            for hook in ["pres-rules", "oma-pres-rules", "im-rules"] {
                assert_eq!(run(hook, &xml, &ctx()), Ok(()), "{hook} {xui}");
            }
        }
    }

    #[test]
    fn cp26_ix08a_external_list_to_other_user_fails_unless_allowed() {
        let xml = ruleset(&external_list_rule(
            "r",
            &list_anchor("sip:bob@example.com", "friends"),
        ));
        for hook in ["pres-rules", "oma-pres-rules", "im-rules"] {
            assert_eq!(
                run(hook, &xml, &ctx()),
                constraint(PHRASE_EXTERNAL_LIST),
                "{hook}"
            );
        }
        let open = HookContext {
            allow_foreign_references: true,
            ..ctx()
        };
        assert_eq!(run("im-rules", &xml, &open), Ok(()));
    }

    #[test]
    fn cp26_external_list_needs_root_list_document_and_node_selector() {
        for bad in [
            format!("{ROOT}/resource-lists/users/sip:alice@example.com/index"),
            format!("{ROOT}/rls-services/users/sip:alice@example.com/index/~~/rls-services/service%5B1%5D"),
            "http://other.example.net/xcap-root/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B1%5D".to_owned(),
            "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B1%5D".to_owned(),
        ] {
            let xml = ruleset(&external_list_rule("r", &bad));
            assert_eq!(run("oma-pres-rules", &xml, &ctx()), constraint(PHRASE_EXTERNAL_LIST), "{bad}");
        }
        let open = HookContext {
            allow_foreign_references: true,
            ..ctx()
        };
        let relative = ruleset(&external_list_rule("r", "resource-lists/users/x/index"));
        assert_eq!(
            run("oma-pres-rules", &relative, &open),
            constraint(PHRASE_EXTERNAL_LIST_FORM)
        );
    }

    #[test]
    fn ix08a_im_handling_closed_value_set() {
        let rule = |v: &str| {
            ruleset(&format!(
                r#"<cr:rule id="r"><cr:conditions/><cr:actions><im:im-handling>{v}</im:im-handling></cr:actions></cr:rule>"#
            ))
        };
        for ok in ["block", "polite-block", "allow", " allow\n"] {
            assert_eq!(run("im-rules", &rule(ok), &ctx()), Ok(()), "{ok:?}");
        }
        for bad in ["deny", "Allow", "", "1"] {
            assert_eq!(
                run("im-rules", &rule(bad), &ctx()),
                constraint(PHRASE_IM_HANDLING),
                "{bad:?}"
            );
        }
        // Other usages leave foreign actions to the schema.
        assert_eq!(run("oma-pres-rules", &rule("deny"), &ctx()), Ok(()));
    }

    #[test]
    fn io06c_rcs_oma_pres_rules_document_passes() {
        let own = |list: &str| list_anchor("sip%3Aalice%40example.com", list);
        let transformations = r#"<cr:transformations><pr:provide-services><pr:all-services/></pr:provide-services>
            <pr:provide-persons><pr:all-persons/></pr:provide-persons>
            <pr:provide-devices><pr:all-devices/></pr:provide-devices><pr:provide-all-attributes/></cr:transformations>"#;
        let xml = ruleset(&format!(
            r#"<cr:rule id="wp_prs_allow_own">
                 <cr:conditions><cr:identity><cr:one id="sip:alice@example.com"/></cr:identity></cr:conditions>
                 <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>{transformations}</cr:rule>
               <cr:rule id="rcs_allow_services_anonymous">
                 <cr:conditions><ocp:anonymous-request/></cr:conditions>
                 <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>{transformations}</cr:rule>
               <cr:rule id="wp_prs_unlisted">
                 <cr:conditions><ocp:other-identity/></cr:conditions>
                 <cr:actions><pr:sub-handling>confirm</pr:sub-handling></cr:actions></cr:rule>
               <cr:rule id="wp_prs_grantedcontacts">
                 <cr:conditions><ocp:external-list><ocp:entry anc="{}"/></ocp:external-list></cr:conditions>
                 <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>{transformations}</cr:rule>
               <cr:rule id="wp_prs_blockedcontacts">
                 <cr:conditions><ocp:external-list><ocp:entry anc="{}"/></ocp:external-list></cr:conditions>
                 <cr:actions><pr:sub-handling>block</pr:sub-handling></cr:actions></cr:rule>"#,
            own("oma_grantedcontacts"),
            own("oma_blockedcontacts"),
        ));
        assert_eq!(run("oma-pres-rules", &xml, &ctx()), Ok(()));
        // The same document owned by someone else references foreign lists (CP-26).
        let bob = HookContext {
            xui: Some("sip:bob@example.com"),
            ..ctx()
        };
        assert_eq!(
            run("oma-pres-rules", &xml, &bob),
            constraint(PHRASE_EXTERNAL_LIST)
        );
    }

    #[test]
    fn global_tree_policy_may_reference_any_users_list_under_the_root() {
        let global = HookContext { xui: None, ..ctx() };
        let xml = ruleset(&external_list_rule(
            "r",
            &list_anchor("sip:bob@example.com", "x"),
        ));
        assert_eq!(run("oma-pres-rules", &xml, &global), Ok(()));
    }

    #[test]
    fn non_ruleset_root_is_left_to_the_schema() {
        assert_eq!(
            run(
                "pres-rules",
                r#"<x xmlns="urn:example"><rule id="a"/><rule id="a"/></x>"#,
                &ctx()
            ),
            Ok(())
        );
    }
}
