//! Pager messages to a pre-defined group (standards.md IM-11, IM-13, SX-03, SX-04; issue #14
//! scope 7): the group's `list-service` in its Shared XDMS `org.openmobilealliance.groups`
//! document gives the members (direct `<entry>`s, and the lists its `<external>` elements
//! point at, which the caller resolves like `ocp:external-list`, CP-21; the OMA list-service
//! schema has no `<entry-ref>`), `max-participant-count` and the join
//! ruleset. A member may always write to the group; anyone else only when a rule of the
//! ruleset that matches them as a non-member (common-policy evaluation, `is-list-member`
//! FALSE for them, media pager-mode-message) has `join-handling` allow/true (members-only
//! otherwise). Pure; the caller reads the document.

use crate::identity::uri_equal;
use crate::policy::eval::{evaluate, NoLists, Request};
use crate::policy::model::{Media, Ruleset};

const NS_LIST_SERVICE: &str = "urn:oma:xml:poc:list-service";
const NS_COMMON_POLICY: &str = "urn:ietf:params:xml:ns:common-policy";

/// What a group document says about one group URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Direct `<entry>` members (the caller adds those of the references).
    pub members: Vec<String>,
    /// `<external anchor>` URIs (lists), unresolved.
    pub externals: Vec<String>,
    pub max_participants: Option<usize>,
    /// Whether the ruleset lets the sender write as a non-member (evaluated at read time).
    pub admits_non_member: bool,
}

impl Group {
    /// A member may always write; anyone else when the ruleset admits them.
    pub fn admits(&self, sender: &str) -> bool {
        self.admits_non_member || self.members.iter().any(|m| uri_equal(m, sender))
    }

    /// Adds members (from resolved references), once each.
    pub fn add_members(&mut self, more: impl IntoIterator<Item = String>) {
        for m in more {
            if !self.members.iter().any(|x| uri_equal(x, &m)) {
                self.members.push(m);
            }
        }
    }
}

/// Reads the `list-service` of `uri` from a group document, for `sender` at `now` (Unix
/// seconds). None when the document has no such group.
pub fn read(xml: &str, uri: &str, sender: &str, now: i64) -> Option<Group> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let service = doc.descendants().find(|n| {
        is(n, NS_LIST_SERVICE, "list-service")
            && n.attribute("uri").is_some_and(|u| uri_equal(u, uri))
    })?;
    let mut group = Group {
        members: Vec::new(),
        externals: Vec::new(),
        max_participants: service
            .children()
            .find(|n| is(n, NS_LIST_SERVICE, "max-participant-count"))
            .and_then(|n| n.text())
            .and_then(|t| t.trim().parse().ok()),
        admits_non_member: admits_non_member(service, sender, now),
    };
    for list in service
        .children()
        .filter(|n| is(n, NS_LIST_SERVICE, "list"))
    {
        for item in list.children().filter(|n| n.is_element()) {
            match (item.tag_name().name(), item.attribute("uri")) {
                ("entry", Some(u)) => group.add_members([u.to_string()]),
                ("external", _) => group
                    .externals
                    .extend(item.attribute("anchor").map(|a| a.trim().to_string())),
                _ => {}
            }
        }
    }
    Some(group)
}

fn is(n: &roxmltree::Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
}

/// SX-04: the ruleset admits `sender` as a non-member pager sender.
fn admits_non_member(service: roxmltree::Node, sender: &str, now: i64) -> bool {
    let Some(node) = service
        .children()
        .find(|n| is(n, NS_COMMON_POLICY, "ruleset"))
    else {
        return false;
    };
    let Ok(ruleset) = Ruleset::from_element(node) else {
        return false;
    };
    let identities = [sender.to_string()];
    let request = Request {
        identities: &identities,
        anonymous: false,
        media: Some(Media::PagerModeMessage),
        service: None,
        sphere: None,
        now,
    };
    let decision = evaluate(&ruleset, &request, &NoLists);
    if decision.unresolved_decisive {
        return false;
    }
    // `join-handling` is combined by maximum over the matching rules (allow > block).
    decision.matched_rules.iter().any(|id| {
        node.children()
            .filter(|r| is(r, NS_COMMON_POLICY, "rule") && r.attribute("id") == Some(id.as_str()))
            .flat_map(|r| r.descendants())
            .filter(|a| is(a, NS_LIST_SERVICE, "join-handling"))
            .any(|a| matches!(a.text().map(str::trim), Some("true" | "allow" | "1")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(ruleset: &str) -> String {
        format!(
            r#"<group xmlns="urn:oma:xml:poc:list-service" xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:oxe="urn:oma:xml:xdm:extensions">
  <list-service uri="sip:club@example.com">
    <list><entry uri="sip:alice@example.com"/><entry uri="sip:bob@example.com"/><entry uri="sip:alice@example.com"/></list>
    <max-participant-count>10</max-participant-count>
    {ruleset}
  </list-service>
</group>"#
        )
    }

    const MEMBERS_ONLY: &str = r#"<cp:ruleset><cp:rule id="m"><cp:conditions><is-list-member/></cp:conditions><cp:actions><join-handling>true</join-handling></cp:actions></cp:rule></cp:ruleset>"#;
    const PUBLIC_PAGER: &str = r#"<cp:ruleset><cp:rule id="all"><cp:conditions><cp:identity><cp:many/></cp:identity><oxe:media-list><oxe:pager-mode-message/></oxe:media-list></cp:conditions><cp:actions><join-handling>allow</join-handling></cp:actions></cp:rule></cp:ruleset>"#;
    const PUBLIC_SESSIONS: &str = r#"<cp:ruleset><cp:rule id="all"><cp:conditions><cp:identity><cp:many/></cp:identity><oxe:media-list><oxe:message-session/></oxe:media-list></cp:conditions><cp:actions><join-handling>allow</join-handling></cp:actions></cp:rule></cp:ruleset>"#;

    /// SX-03, IM-13: members once each, the participant limit; members may always write.
    #[test]
    fn members_and_limit_sx03() {
        let g = read(
            &group(MEMBERS_ONLY),
            "sip:club@example.com",
            "sip:bob@example.com",
            0,
        )
        .unwrap();
        assert_eq!(g.members, ["sip:alice@example.com", "sip:bob@example.com"]);
        assert_eq!(g.max_participants, Some(10));
        assert!(g.admits("sip:bob@example.com"));
        assert!(g.externals.is_empty());
        assert!(read(
            &group(""),
            "sip:other@example.com",
            "sip:bob@example.com",
            0
        )
        .is_none());
    }

    /// SX-04, IM-11: a non-member needs a rule admitting them for pager messages.
    #[test]
    fn non_members_need_a_rule_sx04() {
        let carol = "sip:carol@example.com";
        let admits = |rules: &str| {
            read(&group(rules), "sip:club@example.com", carol, 0)
                .unwrap()
                .admits(carol)
        };
        assert!(!admits(""));
        assert!(!admits(MEMBERS_ONLY));
        assert!(admits(PUBLIC_PAGER));
        assert!(
            !admits(PUBLIC_SESSIONS),
            "a rule for sessions does not admit pager messages"
        );
        assert!(!admits(&PUBLIC_PAGER.replace("allow", "block")));
    }

    /// SX-03: `<external>` lists are handed to the caller to resolve; a sender who is a member
    /// through them is admitted once their members are added.
    #[test]
    fn references_are_kept_for_the_caller() {
        let xml = group(MEMBERS_ONLY).replace(
            "<list>",
            "<list><external anchor=\" http://xcap.example.com/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5b@name=%22friends%22%5d \"/>",
        );
        let carol = "sip:carol@example.com";
        let mut g = read(&xml, "sip:club@example.com", carol, 0).unwrap();
        assert_eq!(g.externals, ["http://xcap.example.com/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5b@name=%22friends%22%5d"]);
        assert!(!g.admits(carol));
        g.add_members([carol.to_string(), "sip:bob@example.com".to_string()]);
        assert!(g.admits(carol));
        assert_eq!(g.members.len(), 3, "bob once");
    }
}
