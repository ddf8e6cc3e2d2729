//! Owned model of a common-policy `<ruleset>` (RFC 4745 §6, §7, §13; CP-01..CP-04), with the
//! pres-rules action (RFC 5025 §3.2.1, CP-17), the OMA condition extensions (CP-20), the OMA
//! XDM 2.x media/service conditions and offline-storage action (CP-27) and this suite's IM
//! action (IX-07b).
//!
//! The model owns its data so that it can be cached beside the document's ETag.
//!
//! Parsing is strict about structure and lenient about content. The root must be
//! `{common-policy}ruleset`. Content the engine cannot use is kept in a form that can never
//! grant anything:
//! - unknown conditions and unusable identity children become "never TRUE" (CP-04);
//! - a malformed `<validity>` pair never holds;
//! - a malformed action value is dropped, so it counts as the permission's lowest value
//!   (CP-13d).
//!
//! Each of these adds a line to [`Ruleset::warnings`] for the operator's logs.
//! Documents reach this parser after XSD validation, so warnings are rare.

use roxmltree::Node;
use std::collections::HashSet;
use thiserror::Error;

mod parse;
use parse::{elements, is, is_xml_space, qname, Parser};

/// `urn:ietf:params:xml:ns:common-policy` (RFC 4745 §15.1).
pub const NS_COMMON_POLICY: &str = "urn:ietf:params:xml:ns:common-policy";
/// `urn:ietf:params:xml:ns:pres-rules` (RFC 5025 §9.3).
pub const NS_PRES_RULES: &str = "urn:ietf:params:xml:ns:pres-rules";
/// `urn:oma:xml:xdm:common-policy` (OMA XDM common-policy extensions, CP-20).
pub const NS_OMA_COMMON_POLICY: &str = "urn:oma:xml:xdm:common-policy";
/// `urn:oma:xml:xdm:extensions` (OMA XDM 2.x extensions, CP-27).
pub const NS_OMA_XDM_EXTENSIONS: &str = "urn:oma:xml:xdm:extensions";
/// `urn:xcapd:xml:ns:im-rules`: this suite's IM access-policy action (IX-07b).
pub const NS_IM_RULES: &str = "urn:xcapd:xml:ns:im-rules";
/// The iptel/SER im-rules namespace (IX-07c): `<im-handling>` block (0) or allow (1).
pub const NS_IPTEL_IM_RULES: &str = "urn:iptel:xml:ns:im-rules";

/// Nesting kept for generic extension elements (transformations, unknown actions).
pub const MAX_EXTENSION_DEPTH: usize = 32;

/// Why a document could not be turned into a [`Ruleset`].
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("not well-formed XML: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("root element is {{{namespace}}}{name}, not a common-policy <ruleset> (CP-01)")]
    NotRuleset { namespace: String, name: String },
    #[error("extension element nested deeper than {MAX_EXTENSION_DEPTH} levels")]
    TooDeep,
}

/// A parsed `<ruleset>` (CP-02). Rule order carries no meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
    /// Content that was ignored or neutralised while parsing, one line each.
    pub warnings: Vec<String>,
}

/// One `<rule id>` (RFC 4745 §6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// Children of `<conditions>`, all of which must hold (CP-03); empty matches every request.
    pub conditions: Vec<Condition>,
    pub actions: Actions,
    /// Children of `<transformations>`, kept verbatim for the consumers that apply them.
    pub transformations: Vec<Element>,
}

/// A child of `<conditions>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `<identity>`: TRUE when any item matches an authenticated identity (CP-05).
    Identity(Vec<IdentityItem>),
    /// `<sphere value>`: the whitespace-separated tokens (CP-11).
    Sphere(Vec<String>),
    /// `<validity>`: the well-formed `<from>`/`<until>` pairs (CP-12).
    Validity(Vec<ValidityInterval>),
    /// `ocp:external-list`: the `anc` of each `<entry>` (CP-20a, CP-21).
    ExternalList(Vec<String>),
    /// `ocp:anonymous-request` (CP-20b, CP-22).
    AnonymousRequest,
    /// `ocp:other-identity` (CP-20c, CP-23).
    OtherIdentity,
    /// `oxe:media-list` (CP-27a).
    MediaList(MediaList),
    /// `oxe:service-list` (CP-27a).
    ServiceList(ServiceList),
    /// An unknown or unusable condition: never TRUE (CP-04). The reason is for logs.
    Never { reason: String },
}

/// A child of `<identity>` (RFC 4745 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityItem {
    /// `<one id>` (CP-06).
    One(String),
    /// `<many [domain]>` with its `<except>` children (CP-07..CP-09).
    Many {
        domain: Option<String>,
        excepts: Vec<Except>,
    },
    /// Unknown or unusable child: never TRUE (CP-04).
    Never { reason: String },
}

/// An `<except>` inside `<many>`. An `<except>` carrying both attributes yields two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Except {
    Id(String),
    Domain(String),
}

/// A `<from>`/`<until>` pair as Unix seconds; it holds for `from <= now < until` (CP-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidityInterval {
    pub from: i64,
    pub until: i64,
}

/// Communication types of OMA XDM 2.x (`urn:oma:xml:xdm:extensions`, CP-27a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    PagerModeMessage,
    MessageSession,
    FileTransfer,
    Audio,
    Video,
    PocSpeech,
    GroupAdvertisement,
}

impl Media {
    /// The media element's local name in the OMA extensions namespace.
    pub fn from_local_name(name: &str) -> Option<Media> {
        Some(match name {
            "pager-mode-message" => Media::PagerModeMessage,
            "message-session" => Media::MessageSession,
            "file-transfer" => Media::FileTransfer,
            "audio" => Media::Audio,
            "video" => Media::Video,
            "poc-speech" => Media::PocSpeech,
            "group-advertisement" => Media::GroupAdvertisement,
            _ => return None,
        })
    }

    pub fn local_name(self) -> &'static str {
        match self {
            Media::PagerModeMessage => "pager-mode-message",
            Media::MessageSession => "message-session",
            Media::FileTransfer => "file-transfer",
            Media::Audio => "audio",
            Media::Video => "video",
            Media::PocSpeech => "poc-speech",
            Media::GroupAdvertisement => "group-advertisement",
        }
    }
}

/// `<media-list>` content. Unknown media are dropped: the request's media is always one of
/// [`Media`], so an unknown entry could neither match it nor except it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaList {
    /// The media listed.
    Only(Vec<Media>),
    /// `<all-media-except>`: every media but those listed.
    AllExcept(Vec<Media>),
}

/// `<service-list>` content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceList {
    Only(Vec<Service>),
    /// `<all-services-except>`.
    AllExcept(Vec<Service>),
}

/// `<service enabler>`, optionally narrowed to some media by `<group-media>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `None` when the attribute is missing: such an entry matches no service.
    pub enabler: Option<String>,
    pub group_media: Option<MediaList>,
}

/// The actions the engine understands (CP-13 combines each independently).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// pres-rules `<sub-handling>` (CP-17).
    pub sub_handling: Option<SubHandling>,
    /// `<im:im-handling>` (IX-07b).
    pub im_handling: Option<ImHandling>,
    /// `<oxe:allow-offline-storage allow>` (CP-27b).
    pub allow_offline_storage: Option<bool>,
    /// `<im:record-history>` (IM-32): the owner's conversations with the matching peers are
    /// recorded (where the operator leaves it to the users).
    pub record_history: Option<bool>,
    /// Other actions, kept verbatim; the engine ignores them (CP-27).
    pub other: Vec<Element>,
}

/// pres-rules `<sub-handling>` values; the order is the RFC 5025 §3.2.1 integer order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubHandling {
    Block,
    Confirm,
    PoliteBlock,
    Allow,
}

impl SubHandling {
    /// The integer RFC 5025 §3.2.1 assigns (CP-17).
    pub fn value(self) -> u8 {
        match self {
            SubHandling::Block => 0,
            SubHandling::Confirm => 10,
            SubHandling::PoliteBlock => 20,
            SubHandling::Allow => 30,
        }
    }

    pub fn from_token(token: &str) -> Option<SubHandling> {
        Some(match token.trim_matches(is_xml_space) {
            "block" => SubHandling::Block,
            "confirm" => SubHandling::Confirm,
            "polite-block" => SubHandling::PoliteBlock,
            "allow" => SubHandling::Allow,
            _ => return None,
        })
    }
}

/// `<im:im-handling>` values, lowest first (schemas/im-rules.xsd: 0, 10, 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImHandling {
    Block,
    PoliteBlock,
    Allow,
}

impl ImHandling {
    pub fn value(self) -> u8 {
        match self {
            ImHandling::Block => 0,
            ImHandling::PoliteBlock => 10,
            ImHandling::Allow => 20,
        }
    }

    pub fn from_token(token: &str) -> Option<ImHandling> {
        Some(match token.trim_matches(is_xml_space) {
            // The numbers are the iptel/SER encoding (IX-07c): block = 0, allow = 1.
            "block" | "0" => ImHandling::Block,
            "polite-block" => ImHandling::PoliteBlock,
            "allow" | "1" => ImHandling::Allow,
            _ => return None,
        })
    }
}

/// A generic owned XML element (extension actions, transformations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub namespace: Option<String>,
    pub name: String,
    pub attributes: Vec<Attribute>,
    /// The element's own text children, concatenated.
    pub text: String,
    pub children: Vec<Element>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub namespace: Option<String>,
    pub name: String,
    pub value: String,
}

impl Ruleset {
    /// Parses a whole document. DTDs are refused (roxmltree's default); callers holding
    /// untrusted text should parse it with the size and depth limits of `crate::xml` and
    /// use [`Ruleset::from_document`].
    pub fn from_xml(text: &str) -> Result<Ruleset, ModelError> {
        let doc = roxmltree::Document::parse(text)?;
        Ruleset::from_document(&doc)
    }

    pub fn from_document(doc: &roxmltree::Document<'_>) -> Result<Ruleset, ModelError> {
        Ruleset::from_element(doc.root_element())
    }

    /// Parses a `<ruleset>` element, which may also sit inside another document (e.g. an
    /// OMA group's `<list-service>`).
    pub fn from_element(node: Node<'_, '_>) -> Result<Ruleset, ModelError> {
        if !is(node, NS_COMMON_POLICY, "ruleset") {
            return Err(ModelError::NotRuleset {
                namespace: node.tag_name().namespace().unwrap_or("").to_owned(),
                name: node.tag_name().name().to_owned(),
            });
        }
        let mut parser = Parser::default();
        let mut rules = Vec::new();
        let mut seen = HashSet::new();
        for child in elements(node) {
            if !is(child, NS_COMMON_POLICY, "rule") {
                parser.warn(None, format!("ignored <{}> in <ruleset>", qname(child)));
                continue;
            }
            let rule = parser.rule(child)?;
            if !seen.insert(rule.id.clone()) {
                parser.warn(Some(&rule.id), "duplicate rule id (CP-02)".into());
            }
            rules.push(rule);
        }
        Ok(Ruleset {
            rules,
            warnings: parser.warnings,
        })
    }
}

#[cfg(test)]
mod iptel_tests {
    use super::*;

    /// IX-07c: iptel/SER im-rules documents (their namespace, numeric or named values) are
    /// understood by the engine.
    #[test]
    fn ix07c_iptel_im_handling_is_understood() {
        let doc = r#"<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules">
  <cr:rule id="a"><cr:conditions/><cr:actions><im:im-handling>1</im:im-handling></cr:actions></cr:rule>
  <cr:rule id="b"><cr:conditions/><cr:actions><im:im-handling>block</im:im-handling></cr:actions></cr:rule>
</cr:ruleset>"#;
        let rs = Ruleset::from_xml(doc).unwrap();
        assert_eq!(rs.rules[0].actions.im_handling, Some(ImHandling::Allow));
        assert_eq!(rs.rules[1].actions.im_handling, Some(ImHandling::Block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // CP-01, CP-02, RFC 4745 §13: structure, default namespace and prefixes.
    #[test]
    fn parses_rules_conditions_actions_cp02() {
        let rs = Ruleset::from_xml(
            r#"<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"
                    xmlns:pr="urn:ietf:params:xml:ns:pres-rules"
                    xmlns:ocp="urn:oma:xml:xdm:common-policy"
                    xmlns:oxe="urn:oma:xml:xdm:extensions"
                    xmlns:im="urn:xcapd:xml:ns:im-rules">
                 <cr:rule id="a">
                   <cr:conditions>
                     <cr:identity>
                       <cr:one id=" sip:alice@example.com "/>
                       <cr:many domain="example.org"><cr:except id="sip:eve@example.org" domain="x.example.org"/></cr:many>
                     </cr:identity>
                     <cr:sphere value="work  home"/>
                     <cr:validity>
                       <cr:from>2023-01-01T00:00:00Z</cr:from><cr:until>2024-01-01T00:00:00Z</cr:until>
                     </cr:validity>
                     <ocp:external-list><ocp:entry anc="http://x/l1"/></ocp:external-list>
                     <ocp:anonymous-request/>
                     <ocp:other-identity/>
                     <oxe:media-list><oxe:pager-mode-message/><oxe:audio><oxe:full-duplex/></oxe:audio></oxe:media-list>
                     <oxe:service-list><oxe:all-services-except><oxe:service enabler="e1"/></oxe:all-services-except></oxe:service-list>
                   </cr:conditions>
                   <cr:actions>
                     <pr:sub-handling> confirm </pr:sub-handling>
                     <im:im-handling>polite-block</im:im-handling>
                     <oxe:allow-offline-storage oxe:allow="true"/>
                     <oxe:allow-expelling>true</oxe:allow-expelling>
                   </cr:actions>
                   <cr:transformations><pr:provide-services><pr:all-services/></pr:provide-services></cr:transformations>
                 </cr:rule>
                 <cr:rule id="b"/>
               </cr:ruleset>"#,
        )
        .unwrap();
        assert!(rs.warnings.is_empty(), "{:?}", rs.warnings);
        assert_eq!(rs.rules.len(), 2);
        let a = &rs.rules[0];
        assert_eq!(a.id, "a");
        assert_eq!(
            a.conditions,
            vec![
                Condition::Identity(vec![
                    IdentityItem::One("sip:alice@example.com".into()),
                    IdentityItem::Many {
                        domain: Some("example.org".into()),
                        excepts: vec![
                            Except::Id("sip:eve@example.org".into()),
                            Except::Domain("x.example.org".into())
                        ],
                    },
                ]),
                Condition::Sphere(vec!["work".into(), "home".into()]),
                Condition::Validity(vec![ValidityInterval {
                    from: 1_672_531_200,
                    until: 1_704_067_200
                }]),
                Condition::ExternalList(vec!["http://x/l1".into()]),
                Condition::AnonymousRequest,
                Condition::OtherIdentity,
                Condition::MediaList(MediaList::Only(vec![Media::PagerModeMessage, Media::Audio])),
                Condition::ServiceList(ServiceList::AllExcept(vec![Service {
                    enabler: Some("e1".into()),
                    group_media: None
                }])),
            ]
        );
        assert_eq!(a.actions.sub_handling, Some(SubHandling::Confirm));
        assert_eq!(a.actions.im_handling, Some(ImHandling::PoliteBlock));
        assert_eq!(a.actions.allow_offline_storage, Some(true));
        assert_eq!(a.actions.other.len(), 1);
        assert_eq!(a.actions.other[0].name, "allow-expelling");
        assert_eq!(a.actions.other[0].text, "true");
        assert_eq!(a.transformations.len(), 1);
        assert_eq!(a.transformations[0].children[0].name, "all-services");
        assert_eq!(
            rs.rules[1],
            Rule {
                id: "b".into(),
                ..Rule::default()
            }
        );
    }

    // CP-01: the root must be common-policy <ruleset>.
    #[test]
    fn rejects_other_roots_cp01() {
        assert!(matches!(
            Ruleset::from_xml(r#"<ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"/>"#),
            Err(ModelError::NotRuleset { .. })
        ));
        assert!(matches!(
            Ruleset::from_xml("<ruleset/>"),
            Err(ModelError::NotRuleset { .. })
        ));
        assert!(matches!(
            Ruleset::from_xml("<ruleset"),
            Err(ModelError::Xml(_))
        ));
        assert!(matches!(
            Ruleset::from_xml(
                r#"<!DOCTYPE r [<!ENTITY e "x">]><ruleset xmlns="urn:ietf:params:xml:ns:common-policy"/>"#
            ),
            Err(ModelError::Xml(_))
        ));
    }

    // CP-04: unknown conditions and unknown identity children are never TRUE.
    #[test]
    fn unknown_conditions_are_never_cp04() {
        let rs = Ruleset::from_xml(
            r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:x="urn:x">
                 <rule id="r"><conditions>
                   <x:weather>sunny</x:weather>
                   <nosuch/>
                   <identity><x:any/><one/><many><x:narrow/></many><one id="sip:a@b"><x:ext/></one></identity>
                 </conditions></rule></ruleset>"#,
        )
        .unwrap();
        let conds = &rs.rules[0].conditions;
        assert!(matches!(conds[0], Condition::Never { .. }));
        assert!(matches!(conds[1], Condition::Never { .. }));
        let Condition::Identity(items) = &conds[2] else {
            panic!("{conds:?}")
        };
        assert_eq!(items.len(), 4);
        assert!(items
            .iter()
            .all(|i| matches!(i, IdentityItem::Never { .. })));
        assert_eq!(rs.warnings.len(), 6);
    }

    // CP-12 + erratum 1455: malformed pairs are dropped, good ones kept.
    #[test]
    fn validity_pairs_and_malformed_values() {
        let rs = Ruleset::from_xml(
            r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="r"><conditions><validity>
                 <from>2023-01-01T00:00:00</from><until>2024-01-01T00:00:00Z</until>
                 <from>1970-01-01T00:00:00Z</from><until>1970-01-01T01:00:00+01:00</until>
                 <until>2024-01-01T00:00:00Z</until>
                 <from>2023-01-01T00:00:00Z</from>
               </validity></conditions></rule></ruleset>"#,
        )
        .unwrap();
        assert_eq!(
            rs.rules[0].conditions,
            vec![Condition::Validity(vec![ValidityInterval {
                from: 0,
                until: 0
            }])]
        );
        assert_eq!(rs.warnings.len(), 3, "{:?}", rs.warnings);
    }

    // CP-13d: a malformed action value is dropped, i.e. counts as the lowest value.
    #[test]
    fn malformed_actions_dropped_and_repeats_combined() {
        let rs = Ruleset::from_xml(
            r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"
                        xmlns:pr="urn:ietf:params:xml:ns:pres-rules"
                        xmlns:im="urn:xcapd:xml:ns:im-rules"
                        xmlns:oxe="urn:oma:xml:xdm:extensions">
                 <rule id="r"><actions>
                   <pr:sub-handling>deny</pr:sub-handling>
                   <im:im-handling>allow</im:im-handling><im:im-handling>block</im:im-handling>
                   <oxe:allow-offline-storage allow="maybe"/>
                   <oxe:allow-offline-storage allow="0"/>
                   <oxe:allow-offline-storage oxe:allow=" 1 "/>
                   <im:record-history>often</im:record-history>
                   <im:record-history>false</im:record-history>
                   <im:record-history> true </im:record-history>
                 </actions></rule>
                 <rule id="r"/>
               </ruleset>"#,
        )
        .unwrap();
        let actions = &rs.rules[0].actions;
        assert_eq!(actions.sub_handling, None);
        assert_eq!(actions.im_handling, Some(ImHandling::Allow));
        assert_eq!(actions.allow_offline_storage, Some(true));
        // IM-32: a boolean, ORed like two rules' would be.
        assert_eq!(actions.record_history, Some(true));
        // deny, maybe, often, duplicate id
        assert_eq!(rs.warnings.len(), 4, "{:?}", rs.warnings);
    }

    #[test]
    fn media_and_service_lists_cp27a() {
        let rs = Ruleset::from_xml(
            r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:oxe="urn:oma:xml:xdm:extensions" xmlns:x="urn:x">
                 <rule id="r"><conditions>
                   <oxe:media-list><oxe:all-media-except><oxe:video/><x:hologram/></oxe:all-media-except></oxe:media-list>
                   <oxe:service-list><oxe:service enabler="org.openmobilealliance:IM-session">
                      <oxe:group-media><oxe:message-session/></oxe:group-media></oxe:service><oxe:service/></oxe:service-list>
                 </conditions></rule></ruleset>"#,
        )
        .unwrap();
        assert_eq!(
            rs.rules[0].conditions,
            vec![
                Condition::MediaList(MediaList::AllExcept(vec![Media::Video])),
                Condition::ServiceList(ServiceList::Only(vec![
                    Service {
                        enabler: Some("org.openmobilealliance:IM-session".into()),
                        group_media: Some(MediaList::Only(vec![Media::MessageSession])),
                    },
                    Service {
                        enabler: None,
                        group_media: None
                    },
                ])),
            ]
        );
    }

    #[test]
    fn extension_depth_is_capped() {
        let mut doc = String::from(
            r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="r"><transformations>"#,
        );
        for _ in 0..=MAX_EXTENSION_DEPTH {
            doc.push_str("<x>");
        }
        for _ in 0..=MAX_EXTENSION_DEPTH {
            doc.push_str("</x>");
        }
        doc.push_str("</transformations></rule></ruleset>");
        assert!(matches!(Ruleset::from_xml(&doc), Err(ModelError::TooDeep)));
    }

    #[test]
    fn enumerations_follow_rfc_integer_order_cp17() {
        assert!(SubHandling::Block < SubHandling::Confirm);
        assert!(SubHandling::Confirm < SubHandling::PoliteBlock);
        assert!(SubHandling::PoliteBlock < SubHandling::Allow);
        let values: Vec<u8> = [
            SubHandling::Block,
            SubHandling::Confirm,
            SubHandling::PoliteBlock,
            SubHandling::Allow,
        ]
        .iter()
        .map(|s| s.value())
        .collect();
        assert_eq!(values, vec![0, 10, 20, 30]);
        assert!(
            ImHandling::Block < ImHandling::PoliteBlock
                && ImHandling::PoliteBlock < ImHandling::Allow
        );
        assert_eq!(ImHandling::Allow.value(), 20);
        assert_eq!(
            Media::from_local_name(Media::FileTransfer.local_name()),
            Some(Media::FileTransfer)
        );
    }
}
