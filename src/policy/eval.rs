//! Evaluation of common-policy rulesets against a request (RFC 4745 §10; CP-03..CP-14,
//! CP-18, CP-21..CP-23, CP-27). Pure: "now" and the request's facts are inputs, and
//! external lists are resolved through an injected [`ListResolver`].
//!
//! Outline:
//! 1. Every `ocp:external-list` anchor of the rulesets is looked up once for the requestor's
//!    identities, up front, including anchors of rules whose other conditions fail:
//!    `other-identity` needs them. An anchor is *unknown* when a lookup failed and no
//!    identity was found a member.
//! 2. Rules are evaluated with unknown anchors counted FALSE (CP-21); matching rules are
//!    combined per permission by maximum (CP-13).
//! 3. If some anchor is unknown, the evaluation is repeated for every other truth assignment
//!    of the unknown anchors. `Decision::unresolved_decisive` says whether any assignment
//!    changes the outcome. Because `other-identity` is not monotonic, "all FALSE" versus
//!    "all TRUE" would not be enough. Only list conditions and other-identity are
//!    re-evaluated per assignment. Above [`MAX_ENUMERATED_UNKNOWN`] unknown anchors the
//!    outcome is declared decisive without trying.

use super::model::{
    Condition, Except, IdentityItem, ImHandling, Media, MediaList, Rule, Ruleset, Service,
    ServiceList, SubHandling,
};
use crate::identity::{domain_equal, uri_domain, uri_equal};
use std::collections::HashMap;

/// The facts of one request that a policy can test.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Authenticated identities of the requestor (canonical URIs such as
    /// `sip:alice@example.com` or `tel:+123`); empty when unauthenticated (CP-18a/b).
    pub identities: &'a [String],
    /// The requestor asked for identity privacy, or the request is otherwise anonymous
    /// (CP-22). Identity conditions still match on `identities` (CP-18c).
    pub anonymous: bool,
    /// Communication type (CP-27a); `None` when the request has none, e.g. a presence
    /// subscription: a `<media-list>` condition is then FALSE.
    pub media: Option<Media>,
    /// Service enabler (CP-27a); `None` makes a `<service-list>` condition FALSE.
    pub service: Option<&'a str>,
    /// The owner's current sphere; `None` when undefined (CP-11).
    pub sphere: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
}

/// Answers whether an identity is in the list an `ocp:external-list` anchor references
/// (CP-21). Implementations resolve nested lists and `<external>` references with loop
/// protection; the engine only asks.
pub trait ListResolver {
    fn contains(&self, anchor: &str, identity: &str) -> ListLookup;
}

/// Result of one [`ListResolver::contains`] question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListLookup {
    Member,
    NotMember,
    /// The list (or a list it references) could not be resolved; the reason is for logs.
    Unresolved(String),
}

/// A resolver for callers without list support: every anchor is unresolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLists;

impl ListResolver for NoLists {
    fn contains(&self, _anchor: &str, _identity: &str) -> ListLookup {
        ListLookup::Unresolved("external lists are not supported here".into())
    }
}

/// Combined permissions of the matching rules (CP-13). `None` means no matching rule
/// carried the permission, which counts as its lowest value (CP-13d); the caller applies its
/// default when `matched_rules` is empty (IM-25).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Maximum `<sub-handling>` (CP-17).
    pub sub_handling: Option<SubHandling>,
    /// Maximum `<im-handling>` (IM-25).
    pub im_handling: Option<ImHandling>,
    /// OR of `<allow-offline-storage>` (CP-13a).
    pub allow_offline_storage: Option<bool>,
    /// OR of `<im:record-history>` (IM-32).
    pub record_history: Option<bool>,
    /// Ids of the matching rules, in document order (and ruleset order).
    pub matched_rules: Vec<String>,
    /// Anchors whose lookup failed, in first-seen order. The fields above count them FALSE.
    pub unresolved: Vec<String>,
    /// True when some truth value of the `unresolved` anchors would change the permissions
    /// or whether any rule matched: the result must not be trusted and the caller should
    /// apply its configured default.
    pub unresolved_decisive: bool,
}

/// Truth assignments are enumerated up to this many unknown anchors (2^10 evaluations).
pub const MAX_ENUMERATED_UNKNOWN: usize = 10;

/// Evaluates one ruleset (RFC 4745 §10).
pub fn evaluate(ruleset: &Ruleset, req: &Request<'_>, lists: &dyn ListResolver) -> Decision {
    evaluate_all(&[ruleset], req, lists)
}

/// Evaluates several documents that all apply (CP-16: every pres-rules document of the
/// user) and combines their matching rules as if they were one set (CP-13).
/// `other-identity` stays scoped to its own ruleset (CP-23).
pub fn evaluate_all(
    rulesets: &[&Ruleset],
    req: &Request<'_>,
    lists: &dyn ListResolver,
) -> Decision {
    let anchors = Anchors::resolve(rulesets, req, lists);
    let prepared: Vec<Vec<Prepared<'_>>> = rulesets.iter().map(|rs| prepare(rs, req)).collect();
    let primary = combine(&prepared, &anchors, 0);
    let unknown = anchors.unknown.len();
    let unresolved_decisive = match unknown {
        0 => false,
        n if n > MAX_ENUMERATED_UNKNOWN => true,
        n => {
            let reference = primary.outcome();
            (1..1u32 << n).any(|mask| combine(&prepared, &anchors, mask).outcome() != reference)
        }
    };
    Decision {
        sub_handling: primary.sub_handling,
        im_handling: primary.im_handling,
        allow_offline_storage: primary.allow_offline_storage,
        record_history: primary.record_history,
        matched_rules: primary.matched.iter().map(|r| r.id.clone()).collect(),
        unresolved: anchors.unknown.iter().map(|a| (*a).to_owned()).collect(),
        unresolved_decisive,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnchorState {
    Member,
    NotMember,
    /// Index of the anchor among the unknown ones (its bit in the assignment mask).
    Unknown(u32),
}

struct Anchors<'r> {
    state: HashMap<&'r str, AnchorState>,
    unknown: Vec<&'r str>,
}

impl<'r> Anchors<'r> {
    fn resolve(
        rulesets: &[&'r Ruleset],
        req: &Request<'_>,
        lists: &dyn ListResolver,
    ) -> Anchors<'r> {
        let mut anchors = Anchors {
            state: HashMap::new(),
            unknown: Vec::new(),
        };
        let referenced = rulesets
            .iter()
            .flat_map(|rs| rs.rules.iter())
            .flat_map(|rule| rule.conditions.iter())
            .filter_map(|c| match c {
                Condition::ExternalList(list) => Some(list),
                _ => None,
            })
            .flatten();
        for anchor in referenced {
            if anchors.state.contains_key(anchor.as_str()) {
                continue;
            }
            // Unauthenticated requestors are in no list (CP-21 needs an authenticated
            // identity), so nothing is looked up for them.
            let mut failed = false;
            let mut member = false;
            for identity in req.identities {
                match lists.contains(anchor, identity) {
                    ListLookup::Member => {
                        member = true;
                        break;
                    }
                    ListLookup::NotMember => {}
                    ListLookup::Unresolved(_) => failed = true,
                }
            }
            let state = if member {
                AnchorState::Member
            } else if failed {
                // The index fits: it is compared with MAX_ENUMERATED_UNKNOWN before use.
                let index = u32::try_from(anchors.unknown.len()).unwrap_or(u32::MAX);
                anchors.unknown.push(anchor);
                AnchorState::Unknown(index)
            } else {
                AnchorState::NotMember
            };
            anchors.state.insert(anchor, state);
        }
        anchors
    }

    /// Truth of "the requestor is in the list at `anchor`" under `mask` (bit i set: the
    /// i-th unknown anchor is taken as TRUE).
    fn holds(&self, anchor: &str, mask: u32) -> bool {
        match self.state.get(anchor) {
            Some(AnchorState::Member) => true,
            Some(AnchorState::Unknown(i)) => mask.checked_shr(*i).is_some_and(|m| m & 1 == 1),
            Some(AnchorState::NotMember) | None => false,
        }
    }
}

struct Combined<'r> {
    sub_handling: Option<SubHandling>,
    im_handling: Option<ImHandling>,
    allow_offline_storage: Option<bool>,
    record_history: Option<bool>,
    matched: Vec<&'r Rule>,
}

/// What `unresolved_decisive` compares between truth assignments.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    sub_handling: Option<SubHandling>,
    im_handling: Option<ImHandling>,
    allow_offline_storage: Option<bool>,
    record_history: Option<bool>,
    any_matched: bool,
}

impl Combined<'_> {
    fn outcome(&self) -> Outcome {
        Outcome {
            sub_handling: self.sub_handling,
            im_handling: self.im_handling,
            allow_offline_storage: self.allow_offline_storage,
            record_history: self.record_history,
            any_matched: !self.matched.is_empty(),
        }
    }
}

/// A rule with everything that does not depend on list membership already decided, so the
/// enumeration of unknown anchors only re-evaluates external lists and other-identity.
struct Prepared<'r> {
    rule: &'r Rule,
    /// Every condition other than external-list and other-identity holds.
    static_ok: bool,
    /// One of its `<identity>` conditions holds on its own (CP-23).
    identity_matches: bool,
    /// Its external-list conditions (each an OR of anchors; ANDed together, CP-03).
    external_lists: Vec<&'r [String]>,
    has_other_identity: bool,
}

fn prepare<'r>(ruleset: &'r Ruleset, req: &Request<'_>) -> Vec<Prepared<'r>> {
    ruleset
        .rules
        .iter()
        .map(|rule| {
            let mut prepared = Prepared {
                rule,
                static_ok: true,
                identity_matches: false,
                external_lists: Vec::new(),
                has_other_identity: false,
            };
            for condition in &rule.conditions {
                match condition {
                    Condition::ExternalList(list) => prepared.external_lists.push(list),
                    Condition::OtherIdentity => prepared.has_other_identity = true,
                    Condition::Identity(_) => {
                        let holds = static_condition_holds(condition, req);
                        prepared.identity_matches |= holds;
                        prepared.static_ok &= holds;
                    }
                    other => prepared.static_ok &= static_condition_holds(other, req),
                }
            }
            prepared
        })
        .collect()
}

fn combine<'r>(prepared: &[Vec<Prepared<'r>>], anchors: &Anchors<'_>, mask: u32) -> Combined<'r> {
    let mut out = Combined {
        sub_handling: None,
        im_handling: None,
        allow_offline_storage: None,
        record_history: None,
        matched: Vec::new(),
    };
    let list_holds = |list: &[String]| list.iter().any(|a| anchors.holds(a, mask));
    for rules in prepared {
        // CP-23: per rule, does one of its identity / external-list conditions hold on its
        // own, whatever its other conditions say?
        let identified: Vec<bool> = rules
            .iter()
            .map(|p| p.identity_matches || p.external_lists.iter().any(|l| list_holds(l)))
            .collect();
        let identified_count = identified.iter().filter(|b| **b).count();
        for (p, own) in rules.iter().zip(&identified) {
            let identified_elsewhere = identified_count > usize::from(*own);
            let matches = p.static_ok
                && p.external_lists.iter().all(|l| list_holds(l))
                && !(p.has_other_identity && identified_elsewhere);
            if matches {
                let actions = &p.rule.actions;
                // CP-13: max for enumerations (None < Some: CP-13d), OR for booleans.
                out.sub_handling = out.sub_handling.max(actions.sub_handling);
                out.im_handling = out.im_handling.max(actions.im_handling);
                out.allow_offline_storage =
                    out.allow_offline_storage.max(actions.allow_offline_storage);
                out.record_history = out.record_history.max(actions.record_history);
                out.matched.push(p.rule);
            }
        }
    }
    out
}

/// Conditions that depend only on the request (not on lists or other rules).
fn static_condition_holds(condition: &Condition, req: &Request<'_>) -> bool {
    match condition {
        Condition::Identity(items) => identity_holds(items, req.identities),
        Condition::Sphere(tokens) => req
            .sphere
            .is_some_and(|s| tokens.iter().any(|t| caseless_eq(t, s.trim()))),
        Condition::Validity(intervals) => intervals
            .iter()
            .any(|v| req.now >= v.from && req.now < v.until),
        Condition::AnonymousRequest => req.anonymous || req.identities.is_empty(),
        Condition::MediaList(list) => req.media.is_some_and(|m| media_holds(list, m)),
        Condition::ServiceList(list) => req
            .service
            .is_some_and(|s| service_list_holds(list, s, req.media)),
        // Decided in `combine`; never reached through `prepare`.
        Condition::ExternalList(_) | Condition::OtherIdentity => false,
        Condition::Never { .. } => false,
    }
}

/// `<identity>` (CP-05..CP-09, CP-18d): OR over its items; only authenticated identities
/// match. An item matches if one of the requestor's identities does. `<except>` applies to
/// the requestor as a whole: the asserted identities name one party, so an exception of any
/// of them excludes the party (otherwise `<except id="sip:eve@…">` could be bypassed through
/// Eve's tel URI).
fn identity_holds(items: &[IdentityItem], identities: &[String]) -> bool {
    if identities.is_empty() {
        return false;
    }
    items.iter().any(|item| match item {
        IdentityItem::One(id) => identities.iter().any(|x| uri_equal(x, id)),
        IdentityItem::Many { domain, excepts } => {
            let in_scope = match domain {
                None => true,
                Some(d) => identities
                    .iter()
                    .any(|x| uri_domain(x).is_some_and(|xd| domain_equal(&xd, d))),
            };
            in_scope && !identities.iter().any(|x| excepted(x, excepts))
        }
        IdentityItem::Never { .. } => false,
    })
}

fn excepted(identity: &str, excepts: &[Except]) -> bool {
    excepts.iter().any(|e| match e {
        Except::Id(id) => uri_equal(identity, id),
        Except::Domain(d) => uri_domain(identity).is_some_and(|xd| domain_equal(&xd, d)),
    })
}

fn media_holds(list: &MediaList, media: Media) -> bool {
    match list {
        MediaList::Only(listed) => listed.contains(&media),
        MediaList::AllExcept(excepted) => !excepted.contains(&media),
    }
}

fn service_list_holds(list: &ServiceList, service: &str, media: Option<Media>) -> bool {
    match list {
        ServiceList::Only(listed) => listed.iter().any(|s| service_holds(s, service, media)),
        ServiceList::AllExcept(excepted) => {
            !excepted.iter().any(|s| service_holds(s, service, media))
        }
    }
}

/// Enablers compare ASCII case-insensitively: they are URN- or IARI-like tokens whose
/// case carries no meaning in practice. `<group-media>` narrows the entry to those media.
fn service_holds(entry: &Service, service: &str, media: Option<Media>) -> bool {
    let enabler_ok = entry
        .enabler
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case(service.trim()));
    enabler_ok
        && match &entry.group_media {
            None => true,
            Some(list) => media.is_some_and(|m| media_holds(list, m)),
        }
}

/// CP-11: sphere tokens compare case-insensitively (full Unicode lowercase).
fn caseless_eq(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}
