//! Table-driven vectors and property tests for the common-policy engine (RFC 4745 §10;
//! CP-03..CP-27, IX-07, IX-09, IO-06c, IM-24..IM-27). Each vector's name cites the item it
//! checks; the whole [`Decision`] is compared, not just one field.

use super::*;
use crate::identity::{self, uri_equal};
use std::collections::{HashMap, HashSet};

const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

// ---------------------------------------------------------------------------------------
// Fake list resolution: nested lists with <external> references and loops, as the Shared
// XDMS resolver will see them (CP-21, IO-06b, IX-09).

const RCS_ROOT: &str = "http://xcap.example.com/services/resource-lists/users/sip:+15551230001@example.com/index/~~/resource-lists/";
const GRANTED: &str = "http://xcap.example.com/services/resource-lists/users/sip:+15551230001@example.com/index/~~/resource-lists/list%5B@name=%22oma_grantedcontacts%22%5D";
const BLOCKED: &str = "http://xcap.example.com/services/resource-lists/users/sip:+15551230001@example.com/index/~~/resource-lists/list%5B@name=%22oma_blockedcontacts%22%5D";
const RCS: &str = "http://x/rcs";
const FAMILY: &str = "http://x/family";
const RCS_BLOCKED: &str = "http://x/rcs_blockedcontacts";
const RCS_REVOKED: &str = "http://x/rcs_revokedcontacts";
const BROKEN: &str = "http://x/broken";
const MISSING: &str = "http://x/missing";
const PARTLY: &str = "http://x/partly";

enum Item {
    Entry(&'static str),
    External(&'static str),
}

struct FakeLists {
    lists: HashMap<&'static str, Vec<Item>>,
    broken: HashSet<&'static str>,
}

fn fake_lists() -> FakeLists {
    use Item::*;
    let mut lists = HashMap::new();
    assert!(GRANTED.starts_with(RCS_ROOT) && BLOCKED.starts_with(RCS_ROOT));
    lists.insert(GRANTED, vec![External(RCS), External(FAMILY)]);
    lists.insert(
        RCS,
        vec![Entry("sip:carol@example.com"), Entry("tel:+15550100")],
    );
    // FAMILY points back to GRANTED: the resolver must not loop.
    lists.insert(
        FAMILY,
        vec![Entry("sip:dave@example.org"), External(GRANTED)],
    );
    lists.insert(BLOCKED, vec![External(RCS_BLOCKED), External(RCS_REVOKED)]);
    lists.insert(RCS_BLOCKED, vec![Entry("sip:mallory@evil.example")]);
    lists.insert(RCS_REVOKED, vec![Entry("sip:trent@example.com")]);
    lists.insert(PARTLY, vec![Entry("sip:pat@example.com"), External(BROKEN)]);
    FakeLists {
        lists,
        broken: [BROKEN].into_iter().collect(),
    }
}

impl ListResolver for FakeLists {
    fn contains(&self, anchor: &str, identity: &str) -> ListLookup {
        let mut stack = vec![anchor.to_owned()];
        let mut visited = HashSet::new();
        let mut failure = None;
        while let Some(a) = stack.pop() {
            if !visited.insert(a.clone()) {
                continue;
            }
            if self.broken.contains(a.as_str()) {
                failure = Some(format!("{a}: upstream error"));
                continue;
            }
            let Some(items) = self.lists.get(a.as_str()) else {
                failure = Some(format!("{a}: no such list"));
                continue;
            };
            for item in items.iter().rev() {
                match item {
                    Item::Entry(uri) if uri_equal(uri, identity) => return ListLookup::Member,
                    Item::Entry(_) => {}
                    Item::External(next) => stack.push((*next).to_owned()),
                }
            }
        }
        match failure {
            Some(reason) => ListLookup::Unresolved(reason),
            None => ListLookup::NotMember,
        }
    }
}

#[test]
fn fake_resolver_models_nesting_and_loops() {
    let l = fake_lists();
    assert_eq!(
        l.contains(GRANTED, "sip:dave@example.org"),
        ListLookup::Member
    );
    assert_eq!(l.contains(FAMILY, "tel:+1-555-0100"), ListLookup::Member);
    assert_eq!(
        l.contains(GRANTED, "sip:zed@example.net"),
        ListLookup::NotMember
    );
    assert!(matches!(
        l.contains(MISSING, "sip:zed@example.net"),
        ListLookup::Unresolved(_)
    ));
    assert!(matches!(
        l.contains(PARTLY, "sip:zed@example.net"),
        ListLookup::Unresolved(_)
    ));
    assert_eq!(
        l.contains(PARTLY, "sip:pat@example.com"),
        ListLookup::Member
    );
}

// ---------------------------------------------------------------------------------------
// Documents.

/// Wraps rules in a `<cp:ruleset>` declaring every prefix the vectors use.
macro_rules! ruleset {
    ($($rule:literal)*) => {
        concat!(
            r#"<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules" xmlns:ocp="urn:oma:xml:xdm:common-policy" xmlns:oxe="urn:oma:xml:xdm:extensions" xmlns:im="urn:xcapd:xml:ns:im-rules" xmlns:x="urn:example:unknown">"#,
            $($rule,)*
            "</cp:ruleset>"
        )
    };
}

const CONFLICT: &str = ruleset!(
    r#"<cp:rule id="allow-domain"><cp:conditions><cp:identity><cp:many domain="example.com"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="block-bob"><cp:conditions><cp:identity><cp:one id="sip:bob@example.com"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>block</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="block-net"><cp:conditions><cp:identity><cp:many domain="example.net"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>block</pr:sub-handling></cp:actions></cp:rule>"#
);

const MANY_EXCEPT: &str = ruleset!(
    r#"<cp:rule id="all-but"><cp:conditions><cp:identity><cp:many>
         <cp:except id="sip:eve@example.com"/><cp:except domain="spam.example"/>
       </cp:many></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
);

const MANY_DOMAIN: &str = ruleset!(
    r#"<cp:rule id="colleagues"><cp:conditions><cp:identity>
         <cp:many domain="example.com"><cp:except id="sip:eve@example.com"/></cp:many>
       </cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>confirm</pr:sub-handling></cp:actions></cp:rule>"#
);

const VALIDITY: &str = ruleset!(
    r#"<cp:rule id="windows"><cp:conditions><cp:validity>
         <cp:from>2023-01-01T00:00:00Z</cp:from><cp:until>2023-02-01T00:00:00Z</cp:until>
         <cp:from>2023-06-01T00:00:00+02:00</cp:from><cp:until>2023-07-01T00:00:00+02:00</cp:until>
       </cp:validity></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
);

const SPHERE: &str = ruleset!(
    r#"<cp:rule id="at-work"><cp:conditions><cp:sphere value="work meeting"/></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
);

const ANONYMOUS: &str = ruleset!(
    r#"<cp:rule id="friends"><cp:conditions><cp:identity><cp:one id="sip:alice@example.com"/></cp:identity></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="authenticated"><cp:conditions><cp:identity><cp:many/></cp:identity></cp:conditions>
       <cp:actions><im:im-handling>polite-block</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="anonymous"><cp:conditions><ocp:anonymous-request/></cp:conditions>
       <cp:actions><im:im-handling>block</im:im-handling><oxe:allow-offline-storage oxe:allow="false"/></cp:actions></cp:rule>"#
);

const OTHER_IDENTITY: &str = ruleset!(
    r#"<cp:rule id="friends"><cp:conditions><cp:identity><cp:one id="sip:alice@example.com"/></cp:identity></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="granted"><cp:conditions><ocp:external-list><ocp:entry anc="http://xcap.example.com/services/resource-lists/users/sip:+15551230001@example.com/index/~~/resource-lists/list%5B@name=%22oma_grantedcontacts%22%5D"/></ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="unlisted"><cp:conditions><ocp:other-identity/></cp:conditions>
       <cp:actions><im:im-handling>polite-block</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="expired-friend"><cp:conditions>
         <cp:identity><cp:one id="sip:olivia@example.com"/></cp:identity>
         <cp:validity><cp:from>2020-01-01T00:00:00Z</cp:from><cp:until>2021-01-01T00:00:00Z</cp:until></cp:validity>
       </cp:conditions><cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
);

const LISTS: &str = ruleset!(
    r#"<cp:rule id="blocked"><cp:conditions><ocp:external-list><ocp:entry anc="http://xcap.example.com/services/resource-lists/users/sip:+15551230001@example.com/index/~~/resource-lists/list%5B@name=%22oma_blockedcontacts%22%5D"/></ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>block</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="either"><cp:conditions><ocp:external-list>
         <ocp:entry anc="http://x/missing"/><ocp:entry anc="http://x/rcs_revokedcontacts"/>
       </ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>block</im:im-handling></cp:actions></cp:rule>"#
);

const PARTLY_BROKEN: &str = ruleset!(
    r#"<cp:rule id="partly"><cp:conditions><ocp:external-list><ocp:entry anc="http://x/partly"/></ocp:external-list></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
);

const UNRESOLVED: &str = ruleset!(
    r#"<cp:rule id="granted-broken"><cp:conditions><ocp:external-list><ocp:entry anc="http://x/broken"/></ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="friends"><cp:conditions><cp:identity><cp:one id="sip:alice@example.com"/></cp:identity></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
);

const UNRESOLVED_OTHER: &str = ruleset!(
    r#"<cp:rule id="blocked-broken"><cp:conditions><ocp:external-list><ocp:entry anc="http://x/broken"/></ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>block</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="unlisted"><cp:conditions><ocp:other-identity/></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
);

const OWN_RULE_OTHER: &str = ruleset!(
    r#"<cp:rule id="colleagues-not-listed"><cp:conditions>
         <cp:identity><cp:many domain="example.com"/></cp:identity><ocp:other-identity/>
       </cp:conditions><cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="bob"><cp:conditions><cp:identity><cp:one id="sip:bob@example.com"/></cp:identity></cp:conditions>
       <cp:actions><im:im-handling>block</im:im-handling></cp:actions></cp:rule>"#
);

/// Two unknown anchors; only the second can change the outcome for an unknown sender.
const SECOND_UNKNOWN: &str = ruleset!(
    r#"<cp:rule id="alice-if-listed"><cp:conditions>
         <ocp:external-list><ocp:entry anc="http://x/missing"/></ocp:external-list>
         <cp:identity><cp:one id="sip:alice@example.com"/></cp:identity>
       </cp:conditions><cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="listed"><cp:conditions><ocp:external-list><ocp:entry anc="http://x/broken"/></ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
);

/// Non-monotonic case: "all unknown FALSE" and "all unknown TRUE" agree (allow), but
/// "granted FALSE, blocked TRUE" gives block.
const MIXED_UNKNOWN: &str = ruleset!(
    r#"<cp:rule id="granted"><cp:conditions><ocp:external-list><ocp:entry anc="http://x/missing"/></ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="unlisted"><cp:conditions><ocp:other-identity/></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="blocked"><cp:conditions><ocp:external-list><ocp:entry anc="http://x/broken"/></ocp:external-list></cp:conditions>
       <cp:actions><im:im-handling>block</im:im-handling></cp:actions></cp:rule>"#
);

const MEDIA: &str = ruleset!(
    r#"<cp:rule id="pager"><cp:conditions><oxe:media-list><oxe:pager-mode-message/></oxe:media-list></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="no-video"><cp:conditions><oxe:media-list><oxe:all-media-except><oxe:video/></oxe:all-media-except></oxe:media-list></cp:conditions>
       <cp:actions><im:im-handling>polite-block</im:im-handling></cp:actions></cp:rule>"#
);

const SERVICE: &str = ruleset!(
    r#"<cp:rule id="im-session"><cp:conditions><oxe:service-list>
         <oxe:service enabler="org.openmobilealliance:IM-session"><oxe:group-media><oxe:message-session/></oxe:group-media></oxe:service>
       </oxe:service-list></cp:conditions>
       <cp:actions><im:im-handling>allow</im:im-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="not-poc"><cp:conditions><oxe:service-list><oxe:all-services-except>
         <oxe:service enabler="org.openmobilealliance:PoC-session"/>
       </oxe:all-services-except></oxe:service-list></cp:conditions>
       <cp:actions><oxe:allow-offline-storage oxe:allow="true"/></cp:actions></cp:rule>"#
);

const SIP_TEL: &str = ruleset!(
    r#"<cp:rule id="by-tel"><cp:conditions><cp:identity><cp:one id="tel:+1-555-0100"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="by-sip"><cp:conditions><cp:identity><cp:one id="sip:+15550200@example.com;user=phone"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>confirm</pr:sub-handling></cp:actions></cp:rule>"#
);

/// After RFC 4745 §14 (as in tests/fixtures/pres-rules/valid-rfc4745-s14-example.xml):
/// sphere, identity and validity conditions, empty actions and transformations.
const RFC4745_S14: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ruleset xmlns="urn:ietf:params:xml:ns:common-policy">
    <rule id="f3g44r1">
        <conditions>
            <sphere value="work"/>
            <identity>
                <one id="sip:alice@example.com"/>
                <one id="tel:+1-212-555-1234" />
                <one id="mailto:bob@example.net" />
            </identity>
            <validity>
                <from>2003-12-24T17:00:00+01:00</from>
                <until>2003-12-24T19:00:00+01:00</until>
            </validity>
        </conditions>
        <actions/>
        <transformations/>
    </rule>
    <rule id="y6y55r2">
        <conditions>
            <sphere value="home"/>
            <identity>
                <many domain="example.com">
                    <except id="sip:eve@example.com"/>
                </many>
            </identity>
        </conditions>
        <actions/>
        <transformations/>
    </rule>
</ruleset>"#;

/// iptel im-rules style (IX-07c): an allow list, block as the default; plus an explicit
/// block rule for a domain. In this suite's namespace (IX-07b).
const IPTEL_STYLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:xcapd:xml:ns:im-rules">
  <rule id="allow-list">
    <conditions><identity>
      <one id="sip:friend1@iptel.org"/>
      <one id="sip:friend2@iptel.org"/>
    </identity></conditions>
    <actions><im:im-handling>allow</im:im-handling></actions>
  </rule>
  <rule id="spam">
    <conditions><identity><many domain="spam.example"/></identity></conditions>
    <actions><im:im-handling>block</im:im-handling></actions>
  </rule>
</ruleset>"#;

/// The RCS pres-rules document (IO-06c), as tests/fixtures/org.openmobilealliance.pres-rules/
/// valid-rcs-pres-rules.xml; owner sip:+15551230001@example.com.
const RCS_PRES_RULES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
            xmlns:cr="urn:ietf:params:xml:ns:common-policy"
            xmlns:pr="urn:ietf:params:xml:ns:pres-rules"
            xmlns:ocp="urn:oma:xml:xdm:common-policy"
            xmlns:op="urn:oma:xml:prs:pres-rules">
  <cr:rule id="wp_prs_allow_own">
    <cr:conditions><cr:identity><cr:one id="sip:+15551230001@example.com"/></cr:identity></cr:conditions>
    <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>
    <cr:transformations>
      <pr:provide-services><pr:all-services/></pr:provide-services>
      <pr:provide-persons><pr:all-persons/></pr:provide-persons>
      <pr:provide-devices><pr:all-devices/></pr:provide-devices>
      <pr:provide-all-attributes/>
    </cr:transformations>
  </cr:rule>
  <cr:rule id="rcs_allow_services_anonymous">
    <cr:conditions><ocp:anonymous-request/></cr:conditions>
    <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>
    <cr:transformations>
      <pr:provide-services><pr:all-services/></pr:provide-services>
      <pr:provide-all-attributes/>
    </cr:transformations>
  </cr:rule>
  <cr:rule id="wp_prs_unlisted">
    <cr:conditions><ocp:other-identity/></cr:conditions>
    <cr:actions><pr:sub-handling>confirm</pr:sub-handling></cr:actions>
  </cr:rule>
  <cr:rule id="wp_prs_grantedcontacts">
    <cr:conditions>
      <ocp:external-list>
        <ocp:entry anc="http://xcap.example.com/services/resource-lists/users/sip:+15551230001@example.com/index/~~/resource-lists/list%5B@name=%22oma_grantedcontacts%22%5D"/>
      </ocp:external-list>
    </cr:conditions>
    <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>
    <cr:transformations><op:provide-willingness>true</op:provide-willingness></cr:transformations>
  </cr:rule>
  <cr:rule id="wp_prs_blockedcontacts">
    <cr:conditions>
      <ocp:external-list>
        <ocp:entry anc="http://xcap.example.com/services/resource-lists/users/sip:+15551230001@example.com/index/~~/resource-lists/list%5B@name=%22oma_blockedcontacts%22%5D"/>
      </ocp:external-list>
    </cr:conditions>
    <cr:actions><pr:sub-handling>polite-block</pr:sub-handling></cr:actions>
  </cr:rule>
</cr:ruleset>"#;

const PRES_MAX: &str = ruleset!(
    r#"<cp:rule id="r1"><cp:conditions><cp:identity><cp:many/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>confirm</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="r2"><cp:conditions><cp:identity><cp:many domain="example.com"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>polite-block</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="r3"><cp:conditions><cp:identity><cp:one id="sip:alice@example.com"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="r4"><cp:conditions><cp:identity><cp:one id="sip:alice@example.com"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>block</pr:sub-handling></cp:actions></cp:rule>"#
);

/// CP-16: a second pres-rules document of the same user.
const PRES_DOC_A: &str = ruleset!(
    r#"<cp:rule id="a-alice"><cp:conditions><cp:identity><cp:one id="sip:alice@example.com"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>confirm</pr:sub-handling></cp:actions></cp:rule>"#
);
const PRES_DOC_B: &str = ruleset!(
    r#"<cp:rule id="b-unlisted"><cp:conditions><ocp:other-identity/></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="b-bob"><cp:conditions><cp:identity><cp:one id="sip:bob@example.com"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>polite-block</pr:sub-handling></cp:actions></cp:rule>"#
);

const STRUCTURE: &str = ruleset!(
    r#"<cp:rule id="everyone"><cp:actions><oxe:allow-offline-storage oxe:allow="false"/></cp:actions></cp:rule>"#
    r#"<cp:rule id="empty-conditions"><cp:conditions/><cp:actions><oxe:allow-offline-storage allow="true"/></cp:actions></cp:rule>"#
    r#"<cp:rule id="unknown-condition"><cp:conditions><x:weather>sunny</x:weather></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="unknown-identity-child"><cp:conditions><cp:identity><x:group name="friends"/></cp:identity></cp:conditions>
       <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"#
    r#"<cp:rule id="unknown-action"><cp:conditions><cp:identity><cp:one id="sip:alice@example.com"/></cp:identity></cp:conditions>
       <cp:actions><x:launch-rockets/><oxe:allow-expelling>true</oxe:allow-expelling></cp:actions></cp:rule>"#
);

// ---------------------------------------------------------------------------------------
// The table.

#[derive(Clone, Copy)]
struct Req {
    ids: &'static [&'static str],
    anonymous: bool,
    media: Option<Media>,
    service: Option<&'static str>,
    sphere: Option<&'static str>,
    now: i64,
}

const REQ: Req = Req {
    ids: &[],
    anonymous: false,
    media: None,
    service: None,
    sphere: None,
    now: NOW,
};

#[derive(Clone, Copy)]
struct Expect {
    sub: Option<SubHandling>,
    im: Option<ImHandling>,
    offline: Option<bool>,
    matched: &'static [&'static str],
    unresolved: &'static [&'static str],
    decisive: bool,
    /// `im_action` with default Block, checked when set.
    im_action: Option<ImAction>,
}

const NOTHING: Expect = Expect {
    sub: None,
    im: None,
    offline: None,
    matched: &[],
    unresolved: &[],
    decisive: false,
    im_action: None,
};

struct Vector {
    name: &'static str,
    docs: &'static [&'static str],
    req: Req,
    expect: Expect,
}

use ImHandling as I;
use SubHandling as S;

const fn ids(ids: &'static [&'static str]) -> Req {
    Req { ids, ..REQ }
}

const ALICE: &str = "sip:alice@example.com";
const OWNER: &str = "sip:+15551230001@example.com";

const VECTORS: &[Vector] = &[
    // --- CP-13 / CP-14: combining; no deny action.
    Vector {
        name: "CP-14 allow and block rules both match: maximum gives allow",
        docs: &[CONFLICT],
        req: ids(&["sip:bob@example.com"]),
        expect: Expect { sub: Some(S::Allow), matched: &["allow-domain", "block-bob"], ..NOTHING },
    },
    Vector {
        name: "CP-14 only a block rule matches: block",
        docs: &[CONFLICT],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect { sub: Some(S::Block), matched: &["block-net"], ..NOTHING },
    },
    Vector {
        name: "CP-13 no rule matches: no permission, nothing matched",
        docs: &[CONFLICT],
        req: ids(&["sip:zed@example.org"]),
        expect: NOTHING,
    },
    // --- CP-07 / CP-08: <many> with <except>.
    Vector {
        name: "CP-08 many: except by id excludes that identity",
        docs: &[MANY_EXCEPT],
        req: ids(&["sip:eve@example.com"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-08 many: except by domain excludes the domain (CP-10 case-insensitive)",
        docs: &[MANY_EXCEPT],
        req: ids(&["sip:spammer@SPAM.Example"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-08 many: except domain does not exclude subdomains or other domains",
        docs: &[MANY_EXCEPT],
        req: ids(&["sip:x@mail.spam.example"]),
        expect: Expect { sub: Some(S::Allow), matched: &["all-but"], ..NOTHING },
    },
    Vector {
        name: "CP-07 many: any other authenticated identity matches, tel included",
        docs: &[MANY_EXCEPT],
        req: ids(&["tel:+15559999"]),
        expect: Expect { sub: Some(S::Allow), matched: &["all-but"], ..NOTHING },
    },
    Vector {
        name: "CP-05 many never matches an unauthenticated requestor",
        docs: &[MANY_EXCEPT],
        req: REQ,
        expect: NOTHING,
    },
    Vector {
        name: "CP-18d except applies to the party: eve's tel identity does not bypass it",
        docs: &[MANY_EXCEPT],
        req: ids(&["tel:+15550199", "sip:eve@example.com"]),
        expect: NOTHING,
    },
    // --- CP-09: <many domain> with <except id>.
    Vector {
        name: "CP-09 many domain: identity in the domain matches (domain case-insensitive)",
        docs: &[MANY_DOMAIN],
        req: ids(&["sip:alice@Example.COM"]),
        expect: Expect { sub: Some(S::Confirm), matched: &["colleagues"], ..NOTHING },
    },
    Vector {
        name: "CP-09 many domain: except id removes one member of the domain",
        docs: &[MANY_DOMAIN],
        req: ids(&["sip:eve@example.com"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-09 many domain: other domains and subdomains do not match",
        docs: &[MANY_DOMAIN],
        req: ids(&["sip:alice@example.org", "sip:alice@sub.example.com"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-09 many domain: a tel URI has no domain",
        docs: &[MANY_DOMAIN],
        req: ids(&["tel:+15550100"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-18d several asserted identities: one in the domain is enough",
        docs: &[MANY_DOMAIN],
        req: ids(&["tel:+15550100", "sip:bob@example.com"]),
        expect: Expect { sub: Some(S::Confirm), matched: &["colleagues"], ..NOTHING },
    },
    // --- CP-12: validity.
    Vector {
        name: "CP-12 validity: inside the first pair",
        docs: &[VALIDITY],
        req: Req { now: 1_673_740_800, ..REQ },
        expect: Expect { im: Some(I::Allow), matched: &["windows"], ..NOTHING },
    },
    Vector {
        name: "CP-12 validity: not yet valid",
        docs: &[VALIDITY],
        req: Req { now: 1_672_527_600, ..REQ },
        expect: NOTHING,
    },
    Vector {
        name: "CP-12 validity: from is inclusive",
        docs: &[VALIDITY],
        req: Req { now: 1_672_531_200, ..REQ },
        expect: Expect { im: Some(I::Allow), matched: &["windows"], ..NOTHING },
    },
    Vector {
        name: "CP-12 validity: until is exclusive",
        docs: &[VALIDITY],
        req: Req { now: 1_675_209_600, ..REQ },
        expect: NOTHING,
    },
    Vector {
        name: "CP-12 validity: second pair, start given with a +02:00 offset",
        docs: &[VALIDITY],
        req: Req { now: 1_685_570_400, ..REQ },
        expect: Expect { im: Some(I::Allow), matched: &["windows"], ..NOTHING },
    },
    Vector {
        name: "CP-12 validity: between the pairs",
        docs: &[VALIDITY],
        req: Req { now: 1_685_570_399, ..REQ },
        expect: NOTHING,
    },
    Vector {
        name: "CP-12 validity: expired (now after every pair)",
        docs: &[VALIDITY],
        req: REQ,
        expect: NOTHING,
    },
    // --- CP-11: sphere.
    Vector {
        name: "CP-11 sphere: current sphere equals one of the tokens",
        docs: &[SPHERE],
        req: Req { sphere: Some("meeting"), ..REQ },
        expect: Expect { sub: Some(S::Allow), matched: &["at-work"], ..NOTHING },
    },
    Vector {
        name: "CP-11 sphere: comparison is case-insensitive",
        docs: &[SPHERE],
        req: Req { sphere: Some("WORK"), ..REQ },
        expect: Expect { sub: Some(S::Allow), matched: &["at-work"], ..NOTHING },
    },
    Vector {
        name: "CP-11 sphere: undefined sphere makes the condition FALSE",
        docs: &[SPHERE],
        req: REQ,
        expect: NOTHING,
    },
    Vector {
        name: "CP-11 sphere: another sphere does not match",
        docs: &[SPHERE],
        req: Req { sphere: Some("home"), ..REQ },
        expect: NOTHING,
    },
    // --- CP-05 / CP-22 / CP-18c: anonymous senders.
    Vector {
        name: "CP-05 CP-22 unauthenticated sender: only anonymous-request matches",
        docs: &[ANONYMOUS],
        req: REQ,
        expect: Expect {
            im: Some(I::Block),
            offline: Some(false),
            matched: &["anonymous"],
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
    Vector {
        name: "CP-18c CP-22 privacy requested with an asserted identity: identity rules still match",
        docs: &[ANONYMOUS],
        req: Req { ids: &[ALICE], anonymous: true, ..REQ },
        expect: Expect {
            im: Some(I::Allow),
            offline: Some(false),
            matched: &["friends", "authenticated", "anonymous"],
            im_action: Some(I::Allow),
            ..NOTHING
        },
    },
    Vector {
        name: "CP-22 authenticated, no privacy: anonymous-request is FALSE",
        docs: &[ANONYMOUS],
        req: ids(&["sip:bob@example.com"]),
        expect: Expect {
            im: Some(I::PoliteBlock),
            matched: &["authenticated"],
            im_action: Some(I::PoliteBlock),
            ..NOTHING
        },
    },
    // --- CP-23: other-identity.
    Vector {
        name: "CP-23 other-identity: unknown sender falls into the catch-all",
        docs: &[OTHER_IDENTITY],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect { im: Some(I::PoliteBlock), matched: &["unlisted"], ..NOTHING },
    },
    Vector {
        name: "CP-23 other-identity: FALSE when another rule's identity matches",
        docs: &[OTHER_IDENTITY],
        req: ids(&[ALICE]),
        expect: Expect { im: Some(I::Allow), matched: &["friends"], ..NOTHING },
    },
    Vector {
        name: "CP-23 CP-21 other-identity: FALSE when another rule matches by external-list (nested list)",
        docs: &[OTHER_IDENTITY],
        req: ids(&["sip:carol@example.com"]),
        expect: Expect { im: Some(I::Allow), matched: &["granted"], ..NOTHING },
    },
    Vector {
        name: "CP-23 other-identity: an identity condition counts on its own, even in an expired rule",
        docs: &[OTHER_IDENTITY],
        req: ids(&["sip:olivia@example.com"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-23 CP-05 other-identity: TRUE for an unauthenticated requestor",
        docs: &[OTHER_IDENTITY],
        req: REQ,
        expect: Expect { im: Some(I::PoliteBlock), matched: &["unlisted"], ..NOTHING },
    },
    Vector {
        name: "CP-21 external-list: member through a nested list that loops back",
        docs: &[OTHER_IDENTITY],
        req: ids(&["sip:dave@example.org"]),
        expect: Expect { im: Some(I::Allow), matched: &["granted"], ..NOTHING },
    },
    Vector {
        name: "CP-21 CP-06 external-list: tel entry matched despite visual separators",
        docs: &[OTHER_IDENTITY],
        req: ids(&["tel:+1-555-0100"]),
        expect: Expect { im: Some(I::Allow), matched: &["granted"], ..NOTHING },
    },
    // --- CP-21: external lists and unresolved anchors.
    Vector {
        name: "CP-21 IX-09 external-list: blocked through oma_blockedcontacts -> rcs_blockedcontacts",
        docs: &[LISTS],
        req: ids(&["sip:mallory@evil.example"]),
        expect: Expect {
            im: Some(I::Block),
            matched: &["blocked"],
            unresolved: &[MISSING],
            decisive: false,
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
    Vector {
        name: "CP-21 external-list entries are ORed: a missing list does not hide a member of the other",
        docs: &[LISTS],
        req: ids(&["sip:trent@example.com"]),
        expect: Expect {
            im: Some(I::Block),
            matched: &["blocked", "either"],
            unresolved: &[MISSING],
            decisive: false,
            ..NOTHING
        },
    },
    Vector {
        name: "CP-21 unresolved anchor that decides: reported, counted FALSE, flagged decisive",
        docs: &[LISTS],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect {
            unresolved: &[MISSING],
            decisive: true,
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
    Vector {
        name: "CP-21 external-list: member found before the broken nested part is a member",
        docs: &[PARTLY_BROKEN],
        req: ids(&["sip:pat@example.com"]),
        expect: Expect { sub: Some(S::Allow), matched: &["partly"], ..NOTHING },
    },
    Vector {
        name: "CP-21 external-list: non-member of a partly broken list is unresolved, not FALSE",
        docs: &[PARTLY_BROKEN],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect { unresolved: &[PARTLY], decisive: true, ..NOTHING },
    },
    Vector {
        name: "CP-21 unresolved anchor that cannot change the outcome is not decisive",
        docs: &[UNRESOLVED],
        req: ids(&[ALICE]),
        expect: Expect {
            im: Some(I::Allow),
            matched: &["friends"],
            unresolved: &[BROKEN],
            decisive: false,
            im_action: Some(I::Allow),
            ..NOTHING
        },
    },
    Vector {
        name: "CP-21 IM-25 unresolved granting list for an unknown sender: default applies",
        docs: &[UNRESOLVED],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect {
            unresolved: &[BROKEN],
            decisive: true,
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
    Vector {
        name: "CP-21 unauthenticated requestor: no list lookups, nothing unresolved",
        docs: &[UNRESOLVED],
        req: REQ,
        expect: NOTHING,
    },
    Vector {
        name: "CP-21 CP-23 unresolved blocked list flips other-identity: decisive, default applies",
        docs: &[UNRESOLVED_OTHER],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect {
            im: Some(I::Allow),
            matched: &["unlisted"],
            unresolved: &[BROKEN],
            decisive: true,
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
    Vector {
        name: "CP-23 other-identity ignores its own rule's identity condition",
        docs: &[OWN_RULE_OTHER],
        req: ids(&[ALICE]),
        expect: Expect { im: Some(I::Allow), matched: &["colleagues-not-listed"], ..NOTHING },
    },
    Vector {
        name: "CP-23 other-identity is FALSE for a requestor another rule names",
        docs: &[OWN_RULE_OTHER],
        req: ids(&["sip:bob@example.com"]),
        expect: Expect { im: Some(I::Block), matched: &["bob"], ..NOTHING },
    },
    Vector {
        name: "CP-21 every unknown anchor is tried: only the second one decides",
        docs: &[SECOND_UNKNOWN],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect { unresolved: &[MISSING, BROKEN], decisive: true, ..NOTHING },
    },
    Vector {
        name: "CP-03 CP-21 external-list ANDed with identity: for alice either unknown anchor could grant",
        docs: &[SECOND_UNKNOWN],
        req: ids(&[ALICE]),
        expect: Expect { unresolved: &[MISSING, BROKEN], decisive: true, ..NOTHING },
    },
    Vector {
        name: "CP-21 CP-23 mixed assignment of unknown anchors decides (all-FALSE equals all-TRUE)",
        docs: &[MIXED_UNKNOWN],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect {
            im: Some(I::Allow),
            matched: &["unlisted"],
            unresolved: &[MISSING, BROKEN],
            decisive: true,
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
    // --- CP-27a: media-list and service-list.
    Vector {
        name: "CP-27a IM-27g media-list: pager-mode message matches both rules",
        docs: &[MEDIA],
        req: Req { ids: &[ALICE], media: Some(Media::PagerModeMessage), ..REQ },
        expect: Expect { im: Some(I::Allow), matched: &["pager", "no-video"], ..NOTHING },
    },
    Vector {
        name: "CP-27a IM-29 media-list: session invite is not pager mode",
        docs: &[MEDIA],
        req: Req { ids: &[ALICE], media: Some(Media::MessageSession), ..REQ },
        expect: Expect { im: Some(I::PoliteBlock), matched: &["no-video"], ..NOTHING },
    },
    Vector {
        name: "CP-27a media-list: all-media-except excludes video",
        docs: &[MEDIA],
        req: Req { ids: &[ALICE], media: Some(Media::Video), ..REQ },
        expect: NOTHING,
    },
    Vector {
        name: "CP-27a media-list: FALSE when the request has no media",
        docs: &[MEDIA],
        req: ids(&[ALICE]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-27a service-list: enabler and group-media both match",
        docs: &[SERVICE],
        req: Req {
            service: Some("org.openmobilealliance:im-session"),
            media: Some(Media::MessageSession),
            ..REQ
        },
        expect: Expect {
            im: Some(I::Allow),
            offline: Some(true),
            matched: &["im-session", "not-poc"],
            ..NOTHING
        },
    },
    Vector {
        name: "CP-27a service-list: group-media narrows the service entry",
        docs: &[SERVICE],
        req: Req {
            service: Some("org.openmobilealliance:IM-session"),
            media: Some(Media::FileTransfer),
            ..REQ
        },
        expect: Expect { offline: Some(true), matched: &["not-poc"], ..NOTHING },
    },
    Vector {
        name: "CP-27a service-list: all-services-except excludes PoC",
        docs: &[SERVICE],
        req: Req { service: Some("org.openmobilealliance:PoC-session"), ..REQ },
        expect: NOTHING,
    },
    // --- CP-06: sip versus tel.
    Vector {
        name: "CP-06 a sip URI with user=phone never equals the tel URI of the same number",
        docs: &[SIP_TEL],
        req: ids(&["sip:+15550100@example.com;user=phone"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-06 tel URIs compare without visual separators",
        docs: &[SIP_TEL],
        req: ids(&["tel:+15550100"]),
        expect: Expect { sub: Some(S::Allow), matched: &["by-tel"], ..NOTHING },
    },
    Vector {
        name: "CP-06 a tel identity never equals a sip one-id",
        docs: &[SIP_TEL],
        req: ids(&["tel:+15550200"]),
        expect: NOTHING,
    },
    Vector {
        name: "CP-18d IM-24 several asserted identities: each rule matched by one of them",
        docs: &[SIP_TEL],
        req: ids(&["sip:+15550200@example.com;user=phone", "tel:+15550100"]),
        expect: Expect { sub: Some(S::Allow), matched: &["by-tel", "by-sip"], ..NOTHING },
    },
    // --- RFC 4745 §14 example.
    Vector {
        name: "RFC 4745 §14 f3g44r1: work sphere, listed identity, inside validity",
        docs: &[RFC4745_S14],
        req: Req { ids: &[ALICE], sphere: Some("work"), now: 1_072_285_200, ..REQ },
        expect: Expect { matched: &["f3g44r1"], ..NOTHING },
    },
    Vector {
        name: "RFC 4745 §14 f3g44r1: until 19:00+01:00 is exclusive",
        docs: &[RFC4745_S14],
        req: Req { ids: &[ALICE], sphere: Some("work"), now: 1_072_288_800, ..REQ },
        expect: NOTHING,
    },
    Vector {
        name: "RFC 4745 §14 f3g44r1: tel identity and case-insensitive sphere",
        docs: &[RFC4745_S14],
        req: Req { ids: &["tel:+12125551234"], sphere: Some("Work"), now: 1_072_281_600, ..REQ },
        expect: Expect { matched: &["f3g44r1"], ..NOTHING },
    },
    Vector {
        name: "RFC 4745 §14 y6y55r2: home sphere, example.com domain",
        docs: &[RFC4745_S14],
        req: Req { ids: &["sip:carol@example.com"], sphere: Some("home"), ..REQ },
        expect: Expect { matched: &["y6y55r2"], ..NOTHING },
    },
    Vector {
        name: "RFC 4745 §14 y6y55r2: eve is excepted",
        docs: &[RFC4745_S14],
        req: Req { ids: &["sip:eve@example.com"], sphere: Some("home"), ..REQ },
        expect: NOTHING,
    },
    // --- IX-07c: iptel im-rules style.
    Vector {
        name: "IX-07c iptel style: sender on the allow list is allowed",
        docs: &[IPTEL_STYLE],
        req: ids(&["sip:friend2@iptel.org"]),
        expect: Expect {
            im: Some(I::Allow),
            matched: &["allow-list"],
            im_action: Some(I::Allow),
            ..NOTHING
        },
    },
    Vector {
        name: "IX-07c IM-25 iptel style: unlisted sender gets the default (block)",
        docs: &[IPTEL_STYLE],
        req: ids(&["sip:stranger@iptel.org"]),
        expect: Expect { im_action: Some(I::Block), ..NOTHING },
    },
    Vector {
        name: "IX-07c IM-26a iptel style: explicit block rule",
        docs: &[IPTEL_STYLE],
        req: ids(&["sip:bulk@spam.example"]),
        expect: Expect {
            im: Some(I::Block),
            matched: &["spam"],
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
    // --- IO-06c: the RCS pres-rules document.
    Vector {
        name: "IO-06c RCS: the owner is allowed by wp_prs_allow_own",
        docs: &[RCS_PRES_RULES],
        req: ids(&[OWNER]),
        expect: Expect { sub: Some(S::Allow), matched: &["wp_prs_allow_own"], ..NOTHING },
    },
    Vector {
        name: "IO-06c RCS: granted contact through oma_grantedcontacts -> rcs",
        docs: &[RCS_PRES_RULES],
        req: ids(&["sip:carol@example.com"]),
        expect: Expect { sub: Some(S::Allow), matched: &["wp_prs_grantedcontacts"], ..NOTHING },
    },
    Vector {
        name: "IO-06c RCS: blocked contact gets polite-block, not the unlisted confirm",
        docs: &[RCS_PRES_RULES],
        req: ids(&["sip:mallory@evil.example"]),
        expect: Expect {
            sub: Some(S::PoliteBlock),
            matched: &["wp_prs_blockedcontacts"],
            ..NOTHING
        },
    },
    Vector {
        name: "IO-06c RCS: revoked contact is in oma_blockedcontacts too",
        docs: &[RCS_PRES_RULES],
        req: ids(&["sip:trent@example.com"]),
        expect: Expect {
            sub: Some(S::PoliteBlock),
            matched: &["wp_prs_blockedcontacts"],
            ..NOTHING
        },
    },
    Vector {
        name: "IO-06c CP-23 RCS: unknown watcher goes to wp_prs_unlisted (confirm)",
        docs: &[RCS_PRES_RULES],
        req: ids(&["sip:zed@example.net"]),
        expect: Expect { sub: Some(S::Confirm), matched: &["wp_prs_unlisted"], ..NOTHING },
    },
    Vector {
        name: "IO-06c CP-22 RCS: anonymous watcher gets allow from rcs_allow_services_anonymous",
        docs: &[RCS_PRES_RULES],
        req: Req { anonymous: true, ..REQ },
        expect: Expect {
            sub: Some(S::Allow),
            matched: &["rcs_allow_services_anonymous", "wp_prs_unlisted"],
            ..NOTHING
        },
    },
    Vector {
        name: "IO-06c CP-14 RCS: blocked contact asking for privacy is allowed by the anonymous rule",
        docs: &[RCS_PRES_RULES],
        req: Req { ids: &["sip:mallory@evil.example"], anonymous: true, ..REQ },
        expect: Expect {
            sub: Some(S::Allow),
            matched: &["rcs_allow_services_anonymous", "wp_prs_blockedcontacts"],
            ..NOTHING
        },
    },
    // --- CP-17: pres-rules sub-handling maximum.
    Vector {
        name: "CP-17 sub-handling: maximum of confirm, polite-block, allow, block is allow",
        docs: &[PRES_MAX],
        req: ids(&[ALICE]),
        expect: Expect { sub: Some(S::Allow), matched: &["r1", "r2", "r3", "r4"], ..NOTHING },
    },
    Vector {
        name: "CP-17 sub-handling: maximum of confirm and polite-block is polite-block",
        docs: &[PRES_MAX],
        req: ids(&["sip:bob@example.com"]),
        expect: Expect { sub: Some(S::PoliteBlock), matched: &["r1", "r2"], ..NOTHING },
    },
    Vector {
        name: "CP-17 sub-handling: only confirm",
        docs: &[PRES_MAX],
        req: ids(&["sip:bob@example.net"]),
        expect: Expect { sub: Some(S::Confirm), matched: &["r1"], ..NOTHING },
    },
    // --- CP-16: several documents.
    Vector {
        name: "CP-16 CP-23 two documents combine; other-identity is scoped to its own ruleset",
        docs: &[PRES_DOC_A, PRES_DOC_B],
        req: ids(&[ALICE]),
        expect: Expect { sub: Some(S::Allow), matched: &["a-alice", "b-unlisted"], ..NOTHING },
    },
    Vector {
        name: "CP-16 two documents: bob is identified in the second, so its catch-all is FALSE",
        docs: &[PRES_DOC_A, PRES_DOC_B],
        req: ids(&["sip:bob@example.com"]),
        expect: Expect { sub: Some(S::PoliteBlock), matched: &["b-bob"], ..NOTHING },
    },
    // --- CP-03 / CP-04 / CP-13a / CP-13d: structure.
    Vector {
        name: "CP-03 CP-04 CP-13a absent and empty conditions match all; unknown conditions never",
        docs: &[STRUCTURE],
        req: REQ,
        expect: Expect {
            offline: Some(true),
            matched: &["everyone", "empty-conditions"],
            ..NOTHING
        },
    },
    Vector {
        name: "CP-13d CP-27 unknown actions are ignored: the matching rule adds no permission",
        docs: &[STRUCTURE],
        req: ids(&[ALICE]),
        expect: Expect {
            offline: Some(true),
            matched: &["everyone", "empty-conditions", "unknown-action"],
            im_action: Some(I::Block),
            ..NOTHING
        },
    },
];

fn parse(doc: &str) -> Ruleset {
    match Ruleset::from_xml(doc) {
        Ok(rs) => rs,
        Err(e) => panic!("vector document does not parse: {e}\n{doc}"),
    }
}

fn run(v: &Vector, lists: &FakeLists) -> Decision {
    let rulesets: Vec<Ruleset> = v.docs.iter().map(|d| parse(d)).collect();
    let refs: Vec<&Ruleset> = rulesets.iter().collect();
    let identities: Vec<String> = v.req.ids.iter().map(|s| (*s).to_owned()).collect();
    let req = Request {
        identities: &identities,
        anonymous: v.req.anonymous,
        media: v.req.media,
        service: v.req.service,
        sphere: v.req.sphere,
        now: v.req.now,
    };
    evaluate_all(&refs, &req, lists)
}

#[test]
fn vectors() {
    assert!(VECTORS.len() >= 40, "only {} vectors", VECTORS.len());
    let lists = fake_lists();
    let mut failures = Vec::new();
    let mut names = HashSet::new();
    for v in VECTORS {
        assert!(names.insert(v.name), "duplicate vector name {}", v.name);
        let got = run(v, &lists);
        let want = Decision {
            sub_handling: v.expect.sub,
            im_handling: v.expect.im,
            allow_offline_storage: v.expect.offline,
            record_history: None,
            matched_rules: v.expect.matched.iter().map(|s| (*s).to_owned()).collect(),
            unresolved: v
                .expect
                .unresolved
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            unresolved_decisive: v.expect.decisive,
        };
        if got != want {
            failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", v.name));
        }
        if let Some(action) = v.expect.im_action {
            let got_action = im_action(&got, ImAction::Block);
            if got_action != action {
                failures.push(format!(
                    "{}: im_action {got_action:?}, want {action:?}",
                    v.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// IM-25: the default is the caller's, used only when nothing matched or lists decide.
#[test]
fn im_default_is_configurable_im25() {
    let lists = fake_lists();
    let rs = parse(IPTEL_STYLE);
    let stranger = vec!["sip:stranger@iptel.org".to_owned()];
    let req = Request {
        identities: &stranger,
        anonymous: false,
        media: Some(Media::PagerModeMessage),
        service: None,
        sphere: None,
        now: NOW,
    };
    let d = evaluate(&rs, &req, &lists);
    assert_eq!(im_action(&d, ImAction::Allow), ImAction::Allow);
    assert_eq!(im_action(&d, ImAction::PoliteBlock), ImAction::PoliteBlock);
    // A matched block rule is not overridden by a permissive default.
    let spammer = vec!["sip:bulk@spam.example".to_owned()];
    let d = evaluate(
        &rs,
        &Request {
            identities: &spammer,
            ..req
        },
        &lists,
    );
    assert_eq!(im_action(&d, ImAction::Allow), ImAction::Block);
}

// CP-21: NoLists makes every anchor unresolved, and the decision says whether it matters.
#[test]
fn no_lists_resolver_reports_every_anchor() {
    let rs = parse(RCS_PRES_RULES);
    let zed = vec!["sip:zed@example.net".to_owned()];
    let req = Request {
        identities: &zed,
        anonymous: false,
        media: None,
        service: None,
        sphere: None,
        now: NOW,
    };
    let d = evaluate(&rs, &req, &NoLists);
    assert_eq!(d.unresolved, vec![GRANTED.to_owned(), BLOCKED.to_owned()]);
    assert!(d.unresolved_decisive);
    assert_eq!(d.sub_handling, Some(SubHandling::Confirm));
    // The owner is allowed whatever the lists hold.
    let owner = vec![OWNER.to_owned()];
    let d = evaluate(
        &rs,
        &Request {
            identities: &owner,
            ..req
        },
        &NoLists,
    );
    assert_eq!(d.sub_handling, Some(SubHandling::Allow));
    assert!(!d.unresolved_decisive);
}

// Above MAX_ENUMERATED_UNKNOWN unknown anchors the decision is declared decisive unseen.
#[test]
fn many_unknown_anchors_are_decisive() {
    let mut doc = String::from(
        r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:ocp="urn:oma:xml:xdm:common-policy"><rule id="r"><conditions><ocp:external-list>"#,
    );
    for i in 0..=eval::MAX_ENUMERATED_UNKNOWN {
        doc.push_str(&format!(r#"<ocp:entry anc="http://x/u{i}"/>"#));
    }
    doc.push_str("</ocp:external-list></conditions></rule></ruleset>");
    let rs = parse(&doc);
    let zed = vec!["sip:zed@example.net".to_owned()];
    let req = Request {
        identities: &zed,
        anonymous: false,
        media: None,
        service: None,
        sphere: None,
        now: NOW,
    };
    let d = evaluate(&rs, &req, &NoLists);
    assert_eq!(d.unresolved.len(), eval::MAX_ENUMERATED_UNKNOWN + 1);
    assert!(d.unresolved_decisive);
}

// CP-21: each anchor is looked up once per identity, and not at all once a member is found.
#[test]
fn lookups_are_deduplicated() {
    use std::cell::RefCell;
    struct Counting<'l>(&'l FakeLists, RefCell<Vec<(String, String)>>);
    impl ListResolver for Counting<'_> {
        fn contains(&self, anchor: &str, identity: &str) -> ListLookup {
            self.1
                .borrow_mut()
                .push((anchor.to_owned(), identity.to_owned()));
            self.0.contains(anchor, identity)
        }
    }
    let lists = fake_lists();
    let counting = Counting(&lists, RefCell::new(Vec::new()));
    let rs1 = parse(OTHER_IDENTITY);
    let rs2 = parse(RCS_PRES_RULES);
    let carol = vec![
        "sip:carol@example.com".to_owned(),
        "tel:+15550100".to_owned(),
    ];
    let req = Request {
        identities: &carol,
        anonymous: false,
        media: None,
        service: None,
        sphere: None,
        now: NOW,
    };
    let d = evaluate_all(&[&rs1, &rs2], &req, &counting);
    assert_eq!(d.matched_rules, vec!["granted", "wp_prs_grantedcontacts"]);
    let calls = counting.1.into_inner();
    // GRANTED: member on the first identity; BLOCKED: both identities asked.
    assert_eq!(calls.len(), 3, "{calls:?}");
}

// ---------------------------------------------------------------------------------------
// Property tests.

mod properties {
    use super::*;
    use proptest::prelude::*;

    const ID_POOL: &[&str] = &[
        "sip:alice@example.com",
        "sip:bob@example.com",
        "sip:eve@example.org",
        "tel:+15550100",
        "sip:+15550100@example.com;user=phone",
        "sip:carol@example.com",
        "sip:mallory@evil.example",
        "sip:dave@example.org",
        "sip:pat@example.com",
    ];
    const DOMAIN_POOL: &[&str] = &["example.com", "example.org", "evil.example", "EXAMPLE.COM"];
    const ANCHOR_POOL: &[&str] = &[GRANTED, BLOCKED, BROKEN, MISSING, PARTLY, RCS, FAMILY];
    const SPHERE_POOL: &[&str] = &["work", "home", "Work"];
    const MEDIA_POOL: &[&str] = &[
        "pager-mode-message",
        "message-session",
        "file-transfer",
        "audio",
        "video",
        "poc-speech",
        "group-advertisement",
    ];
    const SERVICE_POOL: &[&str] = &["svc-a", "svc-b"];
    const SUB_POOL: &[&str] = &["block", "confirm", "polite-block", "allow", "bogus"];
    const IM_POOL: &[&str] = &["block", "polite-block", "allow", "bogus"];

    #[derive(Debug, Clone)]
    enum GenItem {
        One(usize),
        Many {
            domain: Option<usize>,
            except_ids: Vec<usize>,
            except_domains: Vec<usize>,
        },
        Unknown,
    }

    #[derive(Debug, Clone)]
    enum GenCond {
        Identity(Vec<GenItem>),
        Sphere(Vec<usize>),
        Validity(Vec<(i64, i64)>),
        External(Vec<usize>),
        Anonymous,
        Other,
        Media(bool, Vec<usize>),
        Service(bool, Vec<usize>),
        Unknown,
    }

    #[derive(Debug, Clone)]
    struct GenRule {
        conditions: Option<Vec<GenCond>>,
        sub: Option<usize>,
        im: Option<usize>,
        offline: Option<bool>,
    }

    fn item() -> impl Strategy<Value = GenItem> {
        prop_oneof![
            (0..ID_POOL.len()).prop_map(GenItem::One),
            (
                proptest::option::of(0..DOMAIN_POOL.len()),
                proptest::collection::vec(0..ID_POOL.len(), 0..3),
                proptest::collection::vec(0..DOMAIN_POOL.len(), 0..2)
            )
                .prop_map(|(domain, except_ids, except_domains)| GenItem::Many {
                    domain,
                    except_ids,
                    except_domains
                }),
            Just(GenItem::Unknown),
        ]
    }

    fn condition(with_other: bool) -> BoxedStrategy<GenCond> {
        let base = prop_oneof![
            proptest::collection::vec(item(), 0..4).prop_map(GenCond::Identity),
            proptest::collection::vec(0..SPHERE_POOL.len(), 0..3).prop_map(GenCond::Sphere),
            proptest::collection::vec((0i64..200, 0i64..200), 0..3).prop_map(GenCond::Validity),
            proptest::collection::vec(0..ANCHOR_POOL.len(), 0..3).prop_map(GenCond::External),
            Just(GenCond::Anonymous),
            (
                any::<bool>(),
                proptest::collection::vec(0..MEDIA_POOL.len(), 0..3)
            )
                .prop_map(|(e, m)| GenCond::Media(e, m)),
            (
                any::<bool>(),
                proptest::collection::vec(0..SERVICE_POOL.len(), 0..2)
            )
                .prop_map(|(e, s)| GenCond::Service(e, s)),
            Just(GenCond::Unknown),
        ];
        if with_other {
            prop_oneof![9 => base, 1 => Just(GenCond::Other)].boxed()
        } else {
            base.boxed()
        }
    }

    fn rule(with_other: bool) -> impl Strategy<Value = GenRule> {
        (
            proptest::option::of(proptest::collection::vec(condition(with_other), 0..4)),
            proptest::option::of(0..SUB_POOL.len()),
            proptest::option::of(0..IM_POOL.len()),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(conditions, sub, im, offline)| GenRule {
                conditions,
                sub,
                im,
                offline,
            })
    }

    /// Times in the generator are offsets in hours from NOW - 100 h.
    fn hour(h: i64) -> String {
        let t = NOW - 100 * 3600 + h * 3600;
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        // Civil date from days (inverse of the parser's algorithm), for rendering only.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }

    fn render(rules: &[GenRule]) -> String {
        let mut out = String::from(concat!(
            r#"<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules" "#,
            r#"xmlns:ocp="urn:oma:xml:xdm:common-policy" xmlns:oxe="urn:oma:xml:xdm:extensions" "#,
            r#"xmlns:im="urn:xcapd:xml:ns:im-rules" xmlns:x="urn:example:unknown">"#
        ));
        for (i, r) in rules.iter().enumerate() {
            out.push_str(&format!(r#"<cp:rule id="r{i}">"#));
            if let Some(conds) = &r.conditions {
                out.push_str("<cp:conditions>");
                for c in conds {
                    render_condition(&mut out, c);
                }
                out.push_str("</cp:conditions>");
            }
            out.push_str("<cp:actions>");
            if let Some(s) = r.sub {
                out.push_str(&format!(
                    "<pr:sub-handling>{}</pr:sub-handling>",
                    SUB_POOL[s]
                ));
            }
            if let Some(s) = r.im {
                out.push_str(&format!("<im:im-handling>{}</im:im-handling>", IM_POOL[s]));
            }
            if let Some(b) = r.offline {
                out.push_str(&format!(r#"<oxe:allow-offline-storage oxe:allow="{b}"/>"#));
            }
            out.push_str("</cp:actions></cp:rule>");
        }
        out.push_str("</cp:ruleset>");
        out
    }

    fn render_condition(out: &mut String, c: &GenCond) {
        match c {
            GenCond::Identity(items) => {
                out.push_str("<cp:identity>");
                for item in items {
                    match item {
                        GenItem::One(i) => {
                            out.push_str(&format!(r#"<cp:one id="{}"/>"#, ID_POOL[*i]))
                        }
                        GenItem::Many {
                            domain,
                            except_ids,
                            except_domains,
                        } => {
                            match domain {
                                Some(d) => out.push_str(&format!(
                                    r#"<cp:many domain="{}">"#,
                                    DOMAIN_POOL[*d]
                                )),
                                None => out.push_str("<cp:many>"),
                            }
                            for e in except_ids {
                                out.push_str(&format!(r#"<cp:except id="{}"/>"#, ID_POOL[*e]));
                            }
                            for e in except_domains {
                                out.push_str(&format!(
                                    r#"<cp:except domain="{}"/>"#,
                                    DOMAIN_POOL[*e]
                                ));
                            }
                            out.push_str("</cp:many>");
                        }
                        GenItem::Unknown => out.push_str("<x:group/>"),
                    }
                }
                out.push_str("</cp:identity>");
            }
            GenCond::Sphere(tokens) => {
                let v: Vec<&str> = tokens.iter().map(|t| SPHERE_POOL[*t]).collect();
                out.push_str(&format!(r#"<cp:sphere value="{}"/>"#, v.join(" ")));
            }
            GenCond::Validity(pairs) => {
                out.push_str("<cp:validity>");
                for (f, u) in pairs {
                    out.push_str(&format!(
                        "<cp:from>{}</cp:from><cp:until>{}</cp:until>",
                        hour(*f),
                        hour(*u)
                    ));
                }
                out.push_str("</cp:validity>");
            }
            GenCond::External(anchors) => {
                out.push_str("<ocp:external-list>");
                for a in anchors {
                    out.push_str(&format!(r#"<ocp:entry anc="{}"/>"#, ANCHOR_POOL[*a]));
                }
                out.push_str("</ocp:external-list>");
            }
            GenCond::Anonymous => out.push_str("<ocp:anonymous-request/>"),
            GenCond::Other => out.push_str("<ocp:other-identity/>"),
            GenCond::Media(except, media) => {
                out.push_str("<oxe:media-list>");
                if *except {
                    out.push_str("<oxe:all-media-except>");
                }
                for m in media {
                    out.push_str(&format!("<oxe:{}/>", MEDIA_POOL[*m]));
                }
                if *except {
                    out.push_str("</oxe:all-media-except>");
                }
                out.push_str("</oxe:media-list>");
            }
            GenCond::Service(except, services) => {
                out.push_str("<oxe:service-list>");
                if *except {
                    out.push_str("<oxe:all-services-except>");
                }
                for s in services {
                    out.push_str(&format!(r#"<oxe:service enabler="{}"/>"#, SERVICE_POOL[*s]));
                }
                if *except {
                    out.push_str("</oxe:all-services-except>");
                }
                out.push_str("</oxe:service-list>");
            }
            GenCond::Unknown => out.push_str("<x:weather/>"),
        }
    }

    #[derive(Debug, Clone)]
    struct GenReq {
        ids: Vec<String>,
        anonymous: bool,
        media: Option<Media>,
        service: Option<&'static str>,
        sphere: Option<&'static str>,
        now: i64,
    }

    fn request() -> impl Strategy<Value = GenReq> {
        (
            proptest::collection::vec(0..ID_POOL.len(), 0..3),
            any::<bool>(),
            proptest::option::of(0..MEDIA_POOL.len()),
            proptest::option::of(0..SERVICE_POOL.len()),
            proptest::option::of(0..SPHERE_POOL.len()),
            0i64..200,
        )
            .prop_map(|(ids, anonymous, media, service, sphere, h)| GenReq {
                ids: ids.into_iter().map(|i| ID_POOL[i].to_owned()).collect(),
                anonymous,
                media: media.and_then(|m| Media::from_local_name(MEDIA_POOL[m])),
                service: service.map(|s| SERVICE_POOL[s]),
                sphere: sphere.map(|s| SPHERE_POOL[s]),
                now: NOW - 100 * 3600 + h * 3600 + 1800,
            })
    }

    fn eval_with(rulesets: &[&Ruleset], r: &GenReq, lists: &FakeLists) -> Decision {
        let req = Request {
            identities: &r.ids,
            anonymous: r.anonymous,
            media: r.media,
            service: r.service,
            sphere: r.sphere,
            now: r.now,
        };
        evaluate_all(rulesets, &req, lists)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Generated documents parse, and evaluation never panics (CP-04 leniency).
        #[test]
        fn evaluate_never_panics(rules in proptest::collection::vec(rule(true), 0..6), r in request()) {
            let doc = render(&rules);
            let rs = Ruleset::from_xml(&doc).map_err(|e| TestCaseError::fail(format!("{e}: {doc}")))?;
            prop_assert_eq!(rs.rules.len(), rules.len());
            let d = eval_with(&[&rs], &r, &fake_lists());
            let _ = im_action(&d, ImAction::Block);
            // Everything reported matched is a rule of the document.
            prop_assert!(d.matched_rules.iter().all(|id| rs.rules.iter().any(|x| &x.id == id)));
        }

        /// CP-13: adding a rule never lowers a permission nor unmatches a rule, as long as no
        /// rule uses other-identity (CP-23 is non-monotonic by design).
        #[test]
        fn adding_a_rule_is_monotonic(
            rules in proptest::collection::vec(rule(false), 0..5),
            extra in rule(false),
            r in request(),
        ) {
            let lists = fake_lists();
            let base = Ruleset::from_xml(&render(&rules)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut more = rules.clone();
            more.push(extra);
            let extended = Ruleset::from_xml(&render(&more)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let before = eval_with(&[&base], &r, &lists);
            let after = eval_with(&[&extended], &r, &lists);
            prop_assert!(after.sub_handling >= before.sub_handling, "{before:?} -> {after:?}");
            prop_assert!(after.im_handling >= before.im_handling, "{before:?} -> {after:?}");
            prop_assert!(after.allow_offline_storage >= before.allow_offline_storage, "{before:?} -> {after:?}");
            prop_assert!(before.matched_rules.iter().all(|id| after.matched_rules.contains(id)));
        }

        /// CP-02: rule order carries no meaning, other-identity included.
        #[test]
        fn rule_order_does_not_matter(rules in proptest::collection::vec(rule(true), 0..6), r in request()) {
            let lists = fake_lists();
            let forward = Ruleset::from_xml(&render(&rules)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut reversed = forward.clone();
            reversed.rules.reverse();
            let a = eval_with(&[&forward], &r, &lists);
            let mut b = eval_with(&[&reversed], &r, &lists);
            b.matched_rules.reverse();
            let (mut ua, mut ub) = (a.unresolved.clone(), b.unresolved.clone());
            ua.sort();
            ub.sort();
            prop_assert_eq!(ua, ub);
            b.unresolved = a.unresolved.clone();
            prop_assert_eq!(a, b);
        }

        /// Arbitrary text never panics the parser or the evaluator.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}", r in request()) {
            if let Ok(rs) = Ruleset::from_xml(&text) {
                let _ = eval_with(&[&rs], &r, &fake_lists());
            }
            let wrapped = format!(r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy">{text}</ruleset>"#);
            if let Ok(rs) = Ruleset::from_xml(&wrapped) {
                let _ = eval_with(&[&rs], &r, &fake_lists());
            }
        }

        /// CP-06: URI equality is reflexive and symmetric on any input; helpers never panic.
        #[test]
        fn uri_equality_is_reflexive_and_symmetric(a in "[a-zA-Z:+@.;=%0-9()\\[\\]?&é-]{0,40}", b in "[a-zA-Z:+@.;=%0-9()\\[\\]?&é-]{0,40}") {
            prop_assert!(uri_equal(&a, &a));
            prop_assert_eq!(uri_equal(&a, &b), uri_equal(&b, &a));
            let _ = identity::uri_domain(&a);
            let _ = identity::domain_equal(&a, &b);
            let _ = datetime::parse_datetime(&a);
        }

        /// CP-12: the parser agrees with the renderer used above on every generated instant.
        #[test]
        fn datetime_round_trip(h in -1_000_000i64..1_000_000) {
            let text = hour(h);
            prop_assert_eq!(datetime::parse_datetime(&text), Ok(NOW - 100 * 3600 + h * 3600));
        }
    }
}

/// IM-32 (CP-13a): `<im:record-history>` is ORed over the rules that match the peer; a rule
/// for someone else does not count.
#[test]
fn record_history_follows_the_matching_rules_im32() {
    let doc = r#"<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:xcapd:xml:ns:im-rules">
      <cr:rule id="all"><cr:conditions/><cr:actions><im:im-handling>allow</im:im-handling><im:record-history>false</im:record-history></cr:actions></cr:rule>
      <cr:rule id="alice"><cr:conditions><cr:identity><cr:one id="sip:alice@example.com"/></cr:identity></cr:conditions><cr:actions><im:record-history>true</im:record-history></cr:actions></cr:rule>
    </cr:ruleset>"#;
    let rs = parse(doc);
    let decide = |who: &str| {
        let identities = vec![who.to_owned()];
        let req = Request {
            identities: &identities,
            anonymous: false,
            media: None,
            service: None,
            sphere: None,
            now: 0,
        };
        evaluate_all(&[&rs], &req, &fake_lists()).record_history
    };
    assert_eq!(decide("sip:alice@example.com"), Some(true));
    assert_eq!(decide("sip:bob@example.com"), Some(false));
}
