//! Parsing of a common-policy `<ruleset>` element tree into the owned model (RFC 4745 §6, §7,
//! §13; CP-01..CP-04, CP-13d, CP-17, CP-20, CP-27, IX-07b/c): strict about structure, lenient
//! about content, each leniency noted as a warning (see the parent module).

use super::super::datetime::parse_datetime;
use super::*;

#[derive(Default)]
pub(super) struct Parser {
    pub(super) warnings: Vec<String>,
}

impl Parser {
    pub(super) fn warn(&mut self, rule: Option<&str>, message: String) {
        match rule {
            Some(id) => self.warnings.push(format!("rule {id:?}: {message}")),
            None => self.warnings.push(message),
        }
    }

    pub(super) fn rule(&mut self, node: Node<'_, '_>) -> Result<Rule, ModelError> {
        let id = match node.attribute("id") {
            Some(id) => id.trim_matches(is_xml_space).to_owned(),
            None => {
                self.warn(None, "<rule> without id (CP-02)".into());
                String::new()
            }
        };
        let mut rule = Rule {
            id,
            ..Rule::default()
        };
        for child in elements(node) {
            if is(child, NS_COMMON_POLICY, "conditions") {
                // Several <conditions> are a schema violation; ANDing them all is the
                // reading that can only narrow the rule.
                for c in elements(child) {
                    let condition = self.condition(&rule.id, c);
                    rule.conditions.push(condition);
                }
            } else if is(child, NS_COMMON_POLICY, "actions") {
                for a in elements(child) {
                    self.action(&rule.id, a, &mut rule.actions)?;
                }
            } else if is(child, NS_COMMON_POLICY, "transformations") {
                for t in elements(child) {
                    rule.transformations.push(capture(t, 0)?);
                }
            } else {
                self.warn(
                    Some(&rule.id),
                    format!("ignored <{}> in <rule>", qname(child)),
                );
            }
        }
        Ok(rule)
    }

    fn condition(&mut self, rule: &str, node: Node<'_, '_>) -> Condition {
        let tag = node.tag_name();
        match (tag.namespace(), tag.name()) {
            (Some(NS_COMMON_POLICY), "identity") => Condition::Identity(
                elements(node)
                    .map(|c| self.identity_item(rule, c))
                    .collect(),
            ),
            (Some(NS_COMMON_POLICY), "sphere") => Condition::Sphere(
                node.attribute("value")
                    .unwrap_or("")
                    .split(is_xml_space)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            (Some(NS_COMMON_POLICY), "validity") => Condition::Validity(self.validity(rule, node)),
            (Some(NS_OMA_COMMON_POLICY), "external-list") => {
                let mut anchors = Vec::new();
                for entry in elements(node) {
                    match (
                        is(entry, NS_OMA_COMMON_POLICY, "entry"),
                        entry.attribute("anc"),
                    ) {
                        (true, Some(anc)) => {
                            anchors.push(anc.trim_matches(is_xml_space).to_owned())
                        }
                        _ => self.warn(
                            Some(rule),
                            format!("ignored <{}> in <external-list>", qname(entry)),
                        ),
                    }
                }
                Condition::ExternalList(anchors)
            }
            (Some(NS_OMA_COMMON_POLICY), "anonymous-request") => Condition::AnonymousRequest,
            (Some(NS_OMA_COMMON_POLICY), "other-identity") => Condition::OtherIdentity,
            (Some(NS_OMA_XDM_EXTENSIONS), "media-list") => {
                Condition::MediaList(self.media_list(rule, node))
            }
            (Some(NS_OMA_XDM_EXTENSIONS), "service-list") => {
                Condition::ServiceList(self.service_list(rule, node))
            }
            _ => {
                let reason = format!(
                    "unsupported condition <{}> is never TRUE (CP-04)",
                    qname(node)
                );
                self.warn(Some(rule), reason.clone());
                Condition::Never { reason }
            }
        }
    }

    fn identity_item(&mut self, rule: &str, node: Node<'_, '_>) -> IdentityItem {
        let never = |parser: &mut Parser, reason: String| {
            parser.warn(Some(rule), reason.clone());
            IdentityItem::Never { reason }
        };
        if is(node, NS_COMMON_POLICY, "one") {
            // Extension children could narrow the match in ways we cannot evaluate, so an
            // extended <one> is treated like an unknown identity child (CP-04).
            if let Some(ext) = elements(node).next() {
                return never(
                    self,
                    format!("<one> with extension <{}> is never TRUE", qname(ext)),
                );
            }
            return match node.attribute("id") {
                Some(id) => IdentityItem::One(id.trim_matches(is_xml_space).to_owned()),
                None => never(self, "<one> without id is never TRUE".into()),
            };
        }
        if is(node, NS_COMMON_POLICY, "many") {
            let mut excepts = Vec::new();
            for child in elements(node) {
                if !is(child, NS_COMMON_POLICY, "except") {
                    return never(
                        self,
                        format!("<many> with extension <{}> is never TRUE", qname(child)),
                    );
                }
                let id = child.attribute("id");
                let domain = child.attribute("domain");
                if id.is_none() && domain.is_none() {
                    self.warn(Some(rule), "<except> without id or domain ignored".into());
                }
                excepts.extend(id.map(|v| Except::Id(v.trim_matches(is_xml_space).to_owned())));
                excepts.extend(
                    domain.map(|v| Except::Domain(v.trim_matches(is_xml_space).to_owned())),
                );
            }
            return IdentityItem::Many {
                domain: node
                    .attribute("domain")
                    .map(|d| d.trim_matches(is_xml_space).to_owned()),
                excepts,
            };
        }
        never(
            self,
            format!(
                "unsupported identity child <{}> is never TRUE (CP-04)",
                qname(node)
            ),
        )
    }

    fn validity(&mut self, rule: &str, node: Node<'_, '_>) -> Vec<ValidityInterval> {
        let mut intervals = Vec::new();
        let mut pending_from: Option<Result<i64, String>> = None;
        for child in elements(node) {
            let text = own_text(child);
            if is(child, NS_COMMON_POLICY, "from") {
                if pending_from.is_some() {
                    self.warn(Some(rule), "<from> without <until> ignored".into());
                }
                pending_from = Some(parse_datetime(&text).map_err(|e| e.to_string()));
            } else if is(child, NS_COMMON_POLICY, "until") {
                let until = parse_datetime(&text).map_err(|e| e.to_string());
                match (pending_from.take(), until) {
                    (Some(Ok(from)), Ok(until)) => intervals.push(ValidityInterval { from, until }),
                    (None, _) => self.warn(Some(rule), "<until> without <from> ignored".into()),
                    (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => {
                        self.warn(Some(rule), format!("validity pair ignored: {e}"));
                    }
                }
            } else {
                self.warn(
                    Some(rule),
                    format!("ignored <{}> in <validity>", qname(child)),
                );
            }
        }
        if pending_from.is_some() {
            self.warn(Some(rule), "<from> without <until> ignored".into());
        }
        intervals
    }

    fn media_list(&mut self, rule: &str, node: Node<'_, '_>) -> MediaList {
        let mut listed = Vec::new();
        let mut except: Option<Vec<Media>> = None;
        for child in elements(node) {
            if is(child, NS_OMA_XDM_EXTENSIONS, "all-media-except") {
                except
                    .get_or_insert_with(Vec::new)
                    .extend(self.media_items(rule, child));
            } else {
                listed.extend(self.media_item(rule, child));
            }
        }
        match except {
            Some(excepted) => {
                if !listed.is_empty() {
                    self.warn(
                        Some(rule),
                        "media listed beside <all-media-except> ignored".into(),
                    );
                }
                MediaList::AllExcept(excepted)
            }
            None => MediaList::Only(listed),
        }
    }

    fn media_items(&mut self, rule: &str, node: Node<'_, '_>) -> Vec<Media> {
        elements(node)
            .filter_map(|c| self.media_item(rule, c))
            .collect()
    }

    fn media_item(&mut self, rule: &str, node: Node<'_, '_>) -> Option<Media> {
        let media = match node.tag_name().namespace() {
            Some(NS_OMA_XDM_EXTENSIONS) => Media::from_local_name(node.tag_name().name()),
            _ => None,
        };
        if media.is_none() {
            self.warn(
                Some(rule),
                format!("unknown media <{}> ignored", qname(node)),
            );
        }
        media
    }

    fn service_list(&mut self, rule: &str, node: Node<'_, '_>) -> ServiceList {
        let mut listed = Vec::new();
        let mut except: Option<Vec<Service>> = None;
        for child in elements(node) {
            if is(child, NS_OMA_XDM_EXTENSIONS, "all-services-except") {
                let services: Vec<Service> = elements(child)
                    .filter_map(|s| self.service(rule, s))
                    .collect();
                except.get_or_insert_with(Vec::new).extend(services);
            } else {
                listed.extend(self.service(rule, child));
            }
        }
        match except {
            Some(excepted) => {
                if !listed.is_empty() {
                    self.warn(
                        Some(rule),
                        "services listed beside <all-services-except> ignored".into(),
                    );
                }
                ServiceList::AllExcept(excepted)
            }
            None => ServiceList::Only(listed),
        }
    }

    fn service(&mut self, rule: &str, node: Node<'_, '_>) -> Option<Service> {
        if !is(node, NS_OMA_XDM_EXTENSIONS, "service") {
            self.warn(
                Some(rule),
                format!("unknown service entry <{}> ignored", qname(node)),
            );
            return None;
        }
        let group_media = elements(node)
            .find(|c| is(*c, NS_OMA_XDM_EXTENSIONS, "group-media"))
            .map(|g| self.media_list(rule, g));
        Some(Service {
            enabler: node
                .attribute("enabler")
                .map(|e| e.trim_matches(is_xml_space).to_owned()),
            group_media,
        })
    }

    fn action(
        &mut self,
        rule: &str,
        node: Node<'_, '_>,
        actions: &mut Actions,
    ) -> Result<(), ModelError> {
        let tag = node.tag_name();
        match (tag.namespace(), tag.name()) {
            (Some(NS_PRES_RULES), "sub-handling") => match SubHandling::from_token(&own_text(node))
            {
                // A repeated action combines like two rules would (CP-13).
                Some(v) => actions.sub_handling = actions.sub_handling.max(Some(v)),
                None => self.warn(Some(rule), "invalid <sub-handling> value ignored".into()),
            },
            (Some(NS_IM_RULES | NS_IPTEL_IM_RULES), "im-handling") => {
                match ImHandling::from_token(&own_text(node)) {
                    Some(v) => actions.im_handling = actions.im_handling.max(Some(v)),
                    None => self.warn(Some(rule), "invalid <im-handling> value ignored".into()),
                }
            }
            (Some(NS_IM_RULES), "record-history") => match parse_boolean(&own_text(node)) {
                Some(v) => {
                    actions.record_history = Some(actions.record_history.unwrap_or(false) || v)
                }
                None => self.warn(
                    Some(rule),
                    "<record-history> without a boolean ignored".into(),
                ),
            },
            (Some(NS_OMA_XDM_EXTENSIONS), "allow-offline-storage") => {
                // The OMA schema declares `allow` globally, so valid documents qualify it;
                // the unqualified spelling is accepted too.
                let raw = node
                    .attribute((NS_OMA_XDM_EXTENSIONS, "allow"))
                    .or_else(|| node.attribute("allow"));
                match raw.and_then(parse_boolean) {
                    Some(v) => {
                        actions.allow_offline_storage =
                            Some(actions.allow_offline_storage.unwrap_or(false) || v);
                    }
                    None => self.warn(
                        Some(rule),
                        "<allow-offline-storage> without a boolean allow ignored".into(),
                    ),
                }
            }
            _ => actions.other.push(capture(node, 0)?),
        }
        Ok(())
    }
}

/// `xs:boolean` lexical values.
fn parse_boolean(raw: &str) -> Option<bool> {
    match raw.trim_matches(is_xml_space) {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn capture(node: Node<'_, '_>, depth: usize) -> Result<Element, ModelError> {
    if depth >= MAX_EXTENSION_DEPTH {
        return Err(ModelError::TooDeep);
    }
    Ok(Element {
        namespace: node.tag_name().namespace().map(str::to_owned),
        name: node.tag_name().name().to_owned(),
        attributes: node
            .attributes()
            .map(|a| Attribute {
                namespace: a.namespace().map(str::to_owned),
                name: a.name().to_owned(),
                value: a.value().to_owned(),
            })
            .collect(),
        text: own_text(node),
        children: elements(node)
            .map(|c| capture(c, depth + 1))
            .collect::<Result<_, _>>()?,
    })
}

pub(super) fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

pub(super) fn is(node: Node<'_, '_>, namespace: &str, name: &str) -> bool {
    let tag = node.tag_name();
    tag.namespace() == Some(namespace) && tag.name() == name
}

/// `{namespace}name` (or the bare name) for warnings.
pub(super) fn qname(node: Node<'_, '_>) -> String {
    let tag = node.tag_name();
    match tag.namespace() {
        Some(ns) => format!("{{{ns}}}{}", tag.name()),
        None => tag.name().to_owned(),
    }
}

fn own_text(node: Node<'_, '_>) -> String {
    node.children()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect()
}

pub(super) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}
