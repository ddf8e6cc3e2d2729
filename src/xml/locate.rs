//! Node-selector evaluation on a parsed document (RFC 4825 §6.3, §6.4) and the element and
//! attribute GETs built on it (§7.6, §7.9, §8.3).
//!
//! Standards items: NS-02..NS-11, NS-13, NS-15, OP-28, OP-29, OP-31.

use super::parse::{parse_document, Limits};
use super::XmlError;
use crate::xcap::selector::{
    ExpandedName, ResolvedNameTest, ResolvedSelector, ResolvedStep, ResolvedTerminal,
};
use roxmltree::{Attribute, Document, Node};

/// Why a run of steps failed, and how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Miss {
    /// True when the failing step selected several elements (invalid selector), false when none.
    pub ambiguous: bool,
    /// Leading steps that selected exactly one element before the failure.
    pub matched_steps: usize,
}

impl Miss {
    /// The GET/DELETE reading of a failed element selector (NS-08).
    pub fn into_error(self) -> XmlError {
        if self.ambiguous {
            XmlError::Ambiguous
        } else {
            XmlError::NoMatch
        }
    }

    /// The PUT reading: the parent is missing or ambiguous (OP-08, OP-21).
    pub fn into_no_parent(self) -> XmlError {
        XmlError::NoParent {
            matched_steps: self.matched_steps,
        }
    }
}

/// roxmltree reports `xmlns=""` as the empty namespace URI; XCAP names have no namespace then.
pub(crate) fn namespace_of(uri: Option<&str>) -> Option<&str> {
    uri.filter(|u| !u.is_empty())
}

/// Compares an element's expanded name with a name test (NS-09; `*` matches any element).
pub(crate) fn name_matches(node: Node<'_, '_>, test: &ResolvedNameTest) -> bool {
    match test {
        ResolvedNameTest::Any => true,
        ResolvedNameTest::Name(name) => expanded_name_is(node, name),
    }
}

pub(crate) fn expanded_name_is(node: Node<'_, '_>, name: &ExpandedName) -> bool {
    let tag = node.tag_name();
    tag.name() == name.local && namespace_of(tag.namespace()) == name.ns.as_deref()
}

/// The attribute with this expanded name. roxmltree never lists namespace declarations as
/// attributes, so `xmlns` can never be selected (NS-07).
pub(crate) fn find_attribute<'a, 'i>(
    node: Node<'a, 'i>,
    name: &ExpandedName,
) -> Option<Attribute<'a, 'i>> {
    node.attributes()
        .find(|a| a.name() == name.local && namespace_of(a.namespace()) == name.ns.as_deref())
}

/// Attribute test: same expanded name and exactly the same decoded value (NS-06).
fn attribute_test_passes(node: Node<'_, '_>, test: &Option<(ExpandedName, String)>) -> bool {
    match test {
        None => true,
        Some((name, value)) => find_attribute(node, name).is_some_and(|a| a.value() == value),
    }
}

/// Child elements of `context` that the step selects: name test, then `[n]`, then the
/// attribute test (NS-03, NS-04, NS-05, NS-15). Text, comments and PIs are never selected (NS-13).
pub(crate) fn select_children<'a, 'i>(
    context: Node<'a, 'i>,
    step: &'a ResolvedStep,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    let named = context
        .children()
        .filter(|n| n.is_element() && name_matches(*n, &step.name));
    let positioned: Box<dyn Iterator<Item = Node<'a, 'i>> + 'a> = match step.position {
        None => Box::new(named),
        // Positions are 1-based; `[0]` selects nothing.
        Some(0) => Box::new(std::iter::empty()),
        Some(n) => Box::new(named.skip(n - 1).take(1)),
    };
    positioned.filter(move |n| attribute_test_passes(*n, &step.attr))
}

/// How many elements a step selects, up to two (enough to tell one from several).
pub(crate) enum StepResult<'a, 'i> {
    None,
    One(Node<'a, 'i>),
    Several,
}

pub(crate) fn select_step<'a, 'i>(
    context: Node<'a, 'i>,
    step: &'a ResolvedStep,
) -> StepResult<'a, 'i> {
    let mut it = select_children(context, step);
    match (it.next(), it.next()) {
        (None, _) => StepResult::None,
        (Some(one), None) => StepResult::One(one),
        (Some(_), Some(_)) => StepResult::Several,
    }
}

/// Evaluates steps from the document node, so the first step tests the root element (NS-02).
/// Every step must leave exactly one element (NS-08). An empty step list selects the document
/// node itself.
pub(crate) fn locate<'a, 'i>(
    doc: &'a Document<'i>,
    steps: &'a [ResolvedStep],
) -> Result<Node<'a, 'i>, Miss> {
    let mut context = doc.root();
    for (index, step) in steps.iter().enumerate() {
        context = match select_step(context, step) {
            StepResult::One(node) => node,
            StepResult::None => {
                return Err(Miss {
                    ambiguous: false,
                    matched_steps: index,
                })
            }
            StepResult::Several => {
                return Err(Miss {
                    ambiguous: true,
                    matched_steps: index,
                })
            }
        };
    }
    Ok(context)
}

/// The element selected by a selector without a terminal; GET and DELETE errors (NS-08).
pub(crate) fn locate_element<'a, 'i>(
    doc: &'a Document<'i>,
    steps: &'a [ResolvedStep],
) -> Result<Node<'a, 'i>, XmlError> {
    if steps.is_empty() {
        return Err(XmlError::NoMatch);
    }
    locate(doc, steps).map_err(Miss::into_error)
}

/// The element a terminal-free selector selects, for in-process readers of the tree.
pub fn select_element<'a, 'i>(
    doc: &'a Document<'i>,
    sel: &'a ResolvedSelector,
) -> Result<Node<'a, 'i>, XmlError> {
    if sel.terminal.is_some() {
        return Err(XmlError::NoMatch);
    }
    locate_element(doc, &sel.steps)
}

/// Element GET (OP-28): the stored bytes from `<` of the start tag to `>` of the end tag, with
/// no declarations inherited from ancestors added. A selector with a terminal selects no element.
pub fn get_element(doc: &str, sel: &ResolvedSelector, limits: &Limits) -> Result<String, XmlError> {
    get_element_in(doc, &parse_document(doc, limits)?, sel)
}

/// [`get_element`] on an already parsed document.
pub fn get_element_in(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
) -> Result<String, XmlError> {
    select_element(parsed, sel).map(|node| doc[node.range()].to_string())
}

/// Attribute GET (OP-29, NS-11): the decoded (normalized) value; the caller quotes it.
pub fn get_attribute(
    doc: &str,
    sel: &ResolvedSelector,
    limits: &Limits,
) -> Result<String, XmlError> {
    get_attribute_in(&parse_document(doc, limits)?, sel)
}

/// [`get_attribute`] on an already parsed document.
pub fn get_attribute_in(parsed: &Document<'_>, sel: &ResolvedSelector) -> Result<String, XmlError> {
    let Some(ResolvedTerminal::Attribute(name)) = &sel.terminal else {
        return Err(XmlError::NoMatch);
    };
    let node = locate_element(parsed, &sel.steps)?;
    find_attribute(node, name)
        .map(|a| a.value().to_string())
        .ok_or(XmlError::NoMatch)
}

/// The element a terminal-free selector selects, as stored, with every namespace declaration
/// it inherits written on its start tag, so the text means the same wherever it is placed
/// (RFC 5874 §3 XD-11b; RFC 5261 §4.3: added content takes the patch document's context).
pub fn standalone_element_in(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
) -> Result<String, XmlError> {
    select_element(parsed, sel).map(|node| standalone_text(doc, node))
}

/// What a change record keeps of an element an edit created or replaced, read with one
/// selector evaluation: its standalone text, its position among its parent's element
/// children and its placement among sibling nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementFacts {
    pub text: String,
    pub position: Option<u32>,
    pub placement: Option<crate::event::Placement>,
}

/// [`ElementFacts`] of the element a terminal-free selector selects.
pub fn element_facts(
    doc: &str,
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
) -> Result<ElementFacts, XmlError> {
    let node = select_element(parsed, sel)?;
    Ok(ElementFacts {
        text: standalone_text(doc, node),
        position: position_of(node),
        placement: placement_of(node),
    })
}

/// The text of `node` as a document of its own: its in-scope namespace declarations that
/// an ancestor made are written on its start tag.
pub fn standalone_text(doc: &str, node: Node<'_, '_>) -> String {
    let text = &doc[node.range()];
    // The start tag's name ends at the first whitespace, '/' or '>'.
    let name_end = text
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(text.len());
    let declared = start_tag_attribute_names(text);
    let declared_here = |prefix: Option<&str>| {
        declared.iter().any(|n| match prefix {
            None => *n == "xmlns",
            Some(p) => n.strip_prefix("xmlns:") == Some(p),
        })
    };
    let mut extra = String::new();
    for ns in node.namespaces() {
        let prefix = ns.name();
        if prefix == Some("xml") || declared_here(prefix) {
            continue;
        }
        let value = ns
            .uri()
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;");
        match prefix {
            None => extra.push_str(&format!(" xmlns=\"{value}\"")),
            Some(p) => extra.push_str(&format!(" xmlns:{p}=\"{value}\"")),
        }
    }
    format!("{}{}{}", &text[..name_end], extra, &text[name_end..])
}

/// The attribute names written on an element's start tag (namespace declarations included),
/// read from its well-formed text: `name S? = S? "value"` pairs after the element name.
fn start_tag_attribute_names(element: &str) -> Vec<&str> {
    let b = element.as_bytes();
    let mut i = element
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(b.len());
    let mut names = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] == b'/' || b[i] == b'>' {
            return names;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        names.push(&element[start..i]);
        while i < b.len() && b[i] != b'"' && b[i] != b'\'' {
            i += 1;
        }
        let Some(&quote) = b.get(i) else { return names };
        i += 1;
        while i < b.len() && b[i] != quote {
            i += 1;
        }
        i += 1;
    }
}

/// Where the element the selector's steps select sits among its sibling nodes (see
/// [`Placement`]); `None` when it is found nowhere or only text and comments touch it.
pub fn element_placement(
    parsed: &Document<'_>,
    sel: &ResolvedSelector,
) -> Option<crate::event::Placement> {
    placement_of(locate(parsed, &sel.steps).ok()?)
}

fn placement_of(node: Node<'_, '_>) -> Option<crate::event::Placement> {
    use crate::event::Placement;
    let (prev, next) = (node.prev_sibling(), node.next_sibling());
    if prev.is_some_and(|n| n.is_element()) {
        Some(Placement::AfterPrevious)
    } else if next.is_some_and(|n| n.is_element()) {
        Some(Placement::BeforeNext)
    } else if next.is_none() {
        Some(Placement::Append)
    } else if prev.is_none() {
        Some(Placement::Prepend)
    } else {
        None
    }
}

/// The 1-based position of the element the selector's steps select among its parent's element
/// children (RFC 5261 §4.3 `pos` needs it to place an added element). `None` when the steps
/// select no single element.
pub fn element_position(parsed: &Document<'_>, sel: &ResolvedSelector) -> Option<u32> {
    if sel.steps.is_empty() {
        return None;
    }
    position_of(locate(parsed, &sel.steps).ok()?)
}

fn position_of(node: Node<'_, '_>) -> Option<u32> {
    let before = node
        .prev_siblings()
        .skip(1)
        .filter(Node::is_element)
        .count();
    u32::try_from(before + 1).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // RFC 5874 XD-11b: the text of a located element carries the declarations it inherits,
    // and not the ones it makes itself twice.
    #[test]
    fn standalone_element_declares_inherited_namespaces() {
        let text =
            r#"<r xmlns="urn:d" xmlns:p="urn:p"><a  xmlns:q = 'urn:q' q:x="1"><p:b/></a></r>"#;
        let doc = Document::parse(text).unwrap();
        let sel = ResolvedSelector {
            steps: vec![step_in("urn:d", "r", None), step_in("urn:d", "a", None)],
            terminal: None,
        };
        let out = standalone_element_in(text, &doc, &sel).unwrap();
        assert!(
            out.starts_with("<a xmlns=\"urn:d\" xmlns:p=\"urn:p\"  xmlns:q = 'urn:q'"),
            "{out}"
        );
        assert_eq!(out.matches("xmlns:q").count(), 1);
        let again = Document::parse(&out).unwrap();
        let b = again.root_element().first_element_child().unwrap();
        assert_eq!(b.tag_name().namespace(), Some("urn:p"));
        assert_eq!(again.root_element().tag_name().namespace(), Some("urn:d"));
    }

    // RFC 5261 §4.3: the placement of an element among sibling nodes of any kind.
    #[test]
    fn element_placement_reads_neighbour_nodes() {
        use crate::event::Placement;
        let text = "<r><a/><b/>t<c/><!--x--></r>";
        let doc = Document::parse(text).unwrap();
        assert_eq!(
            element_placement(&doc, &sel("r/b")),
            Some(Placement::AfterPrevious)
        );
        assert_eq!(
            element_placement(&doc, &sel("r/a")),
            Some(Placement::BeforeNext)
        );
        assert_eq!(
            element_placement(&doc, &sel("r/c")),
            None,
            "text before, comment after"
        );
        let last = Document::parse("<r>t<c/></r>").unwrap();
        assert_eq!(
            element_placement(&last, &sel("r/c")),
            Some(Placement::Append)
        );
        let first = Document::parse("<r><c/>t</r>").unwrap();
        assert_eq!(
            element_placement(&first, &sel("r/c")),
            Some(Placement::Prepend)
        );
    }

    // RFC 5261 §4.3: positions count element siblings only (text and comments are not counted).
    #[test]
    fn element_position_counts_element_siblings() {
        let text = "<r>\n <a/><!-- c --> <b/>\n <a/></r>";
        let doc = Document::parse(text).unwrap();
        assert_eq!(element_position(&doc, &sel("r/a[2]")), Some(3));
        assert_eq!(element_position(&doc, &sel("r/b")), Some(2));
        assert_eq!(element_position(&doc, &sel("r/a[1]")), Some(1));
        assert_eq!(element_position(&doc, &sel("r")), Some(1));
        assert_eq!(element_position(&doc, &sel("r/a")), None, "ambiguous");
        assert_eq!(element_position(&doc, &sel("r/c")), None);
    }

    /// Test-only selector builder: `"ns|local"` or `"local"` or `"*"`, optional position,
    /// optional attribute test `("ns|local", value)`.
    pub fn en(s: &str) -> ExpandedName {
        match s.split_once('|') {
            Some((ns, local)) => ExpandedName {
                ns: Some(ns.to_string()),
                local: local.to_string(),
            },
            None => ExpandedName {
                ns: None,
                local: s.to_string(),
            },
        }
    }

    pub fn step(name: &str, position: Option<usize>, attr: Option<(&str, &str)>) -> ResolvedStep {
        ResolvedStep {
            name: if name == "*" {
                ResolvedNameTest::Any
            } else {
                ResolvedNameTest::Name(en(name))
            },
            position,
            attr: attr.map(|(n, v)| (en(n), v.to_string())),
        }
    }

    /// Parses a tiny path syntax: `a/b[2]/c[@x=v]/*[1][@y=w]` with names in no namespace, or
    /// with `{ns}` prefixes like `{urn:x}a`. Optional terminal `/@att` or `/namespace::*`.
    pub fn step_in(ns: &str, local: &str, position: Option<usize>) -> ResolvedStep {
        ResolvedStep {
            name: ResolvedNameTest::Name(ExpandedName {
                ns: Some(ns.to_string()),
                local: local.to_string(),
            }),
            position,
            attr: None,
        }
    }

    pub fn sel(path: &str) -> ResolvedSelector {
        let mut steps = Vec::new();
        let mut terminal = None;
        for raw in split_steps(path) {
            if raw == "namespace::*" {
                terminal = Some(ResolvedTerminal::NamespaceBindings);
                continue;
            }
            if let Some(att) = raw.strip_prefix('@') {
                terminal = Some(ResolvedTerminal::Attribute(name_of(att)));
                continue;
            }
            let (name, mut rest) = match raw.find('[') {
                Some(i) => (&raw[..i], &raw[i..]),
                None => (raw, ""),
            };
            let mut position = None;
            let mut attr = None;
            while let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').expect("closing bracket");
                let pred = &r[..end];
                if let Some(a) = pred.strip_prefix('@') {
                    let (n, v) = a.split_once('=').expect("att=value");
                    attr = Some((name_of(n), v.to_string()));
                } else {
                    position = Some(pred.parse().expect("position"));
                }
                rest = &r[end + 1..];
            }
            steps.push(ResolvedStep {
                name: if name == "*" {
                    ResolvedNameTest::Any
                } else {
                    ResolvedNameTest::Name(name_of(name))
                },
                position,
                attr,
            });
        }
        ResolvedSelector { steps, terminal }
    }

    fn name_of(s: &str) -> ExpandedName {
        match s.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some((ns, local)) => ExpandedName {
                ns: Some(ns.to_string()),
                local: local.to_string(),
            },
            None => ExpandedName {
                ns: None,
                local: s.to_string(),
            },
        }
    }

    /// Splits on `/` outside `{…}` and `[…]`.
    fn split_steps(path: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let (mut depth, mut start) = (0i32, 0usize);
        for (i, c) in path.char_indices() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                '/' if depth == 0 => {
                    out.push(&path[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(&path[start..]);
        out
    }

    const L: Limits = Limits {
        max_depth: 64,
        max_nodes: 200_000,
        max_attributes_per_element: 256,
        max_attributes: 200_000,
    };

    /// RFC 4825 §6.4 example document (NS-16).
    pub const NS16_DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<foo xmlns="urn:test:default-namespace">
  <ns1:bar xmlns:ns1="urn:test:namespace1-uri"
           xmlns="urn:test:namespace1-uri">
    <baz/>
    <ns2:baz xmlns:ns2="urn:test:namespace2-uri"/>
  </ns1:bar>
  <ns3:hi xmlns:ns3="urn:test:namespace3-uri">
    <there/>
  </ns3:hi>
</foo>
"#;

    #[test]
    fn ns16a_both_prefixes_namespace1_select_first_baz() {
        // foo/a:bar/b:baz?xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace1-uri),
        // with urn:test:default-namespace as the default document namespace.
        let s = sel("{urn:test:default-namespace}foo/{urn:test:namespace1-uri}bar/{urn:test:namespace1-uri}baz");
        assert_eq!(get_element(NS16_DOC, &s, &L).as_deref(), Ok("<baz/>"));
    }

    #[test]
    fn ns16b_namespace2_selects_second_baz() {
        let s = sel("{urn:test:default-namespace}foo/{urn:test:namespace1-uri}bar/{urn:test:namespace2-uri}baz");
        assert_eq!(
            get_element(NS16_DOC, &s, &L).as_deref(),
            Ok(r#"<ns2:baz xmlns:ns2="urn:test:namespace2-uri"/>"#)
        );
    }

    #[test]
    fn ns09_unqualified_names_are_in_no_namespace_not_the_documents_default() {
        // URI-15 / NS-09: names compare as expanded names; `foo` in no namespace does not match.
        assert_eq!(
            get_element(NS16_DOC, &sel("foo"), &L),
            Err(XmlError::NoMatch)
        );
    }

    #[test]
    fn ns02_first_step_matches_root_element() {
        let doc = "<!-- c --><?pi x?><root><a/></root>";
        assert_eq!(
            get_element(doc, &sel("root"), &L).as_deref(),
            Ok("<root><a/></root>")
        );
        assert_eq!(get_element(doc, &sel("a"), &L), Err(XmlError::NoMatch));
        assert_eq!(
            get_element(doc, &sel("*"), &L).as_deref(),
            Ok("<root><a/></root>")
        );
    }

    const LIST: &str = r#"<r>
  <e uri="x" n="1"/>
  <f uri="x"/>
  <e uri="y" n="2">text<!-- c --><g/></e>
  <e uri='z&amp;"' n="3"></e>
</r>"#;

    #[test]
    fn ns04_ns15_positions_count_same_name_or_all_elements() {
        assert_eq!(
            get_element(LIST, &sel("r/e[2]"), &L).as_deref(),
            Ok(r#"<e uri="y" n="2">text<!-- c --><g/></e>"#)
        );
        assert_eq!(
            get_element(LIST, &sel("r/*[2]"), &L).as_deref(),
            Ok(r#"<f uri="x"/>"#)
        );
        assert_eq!(
            get_element(LIST, &sel("r/e[4]"), &L),
            Err(XmlError::NoMatch)
        );
        assert_eq!(
            get_element(LIST, &sel("r/e[0]"), &L),
            Err(XmlError::NoMatch)
        );
    }

    #[test]
    fn ns05_position_applies_before_attribute_test() {
        assert!(get_element(LIST, &sel("r/e[2][@uri=y]"), &L).is_ok());
        assert_eq!(
            get_element(LIST, &sel("r/e[2][@uri=x]"), &L),
            Err(XmlError::NoMatch)
        );
        assert!(get_element(LIST, &sel("r/*[2][@uri=x]"), &L).is_ok());
    }

    #[test]
    fn ns06_attribute_value_compared_decoded() {
        assert_eq!(
            get_element(LIST, &sel("r/e[@uri=z&\"]"), &L).as_deref(),
            Ok(r#"<e uri='z&amp;"' n="3"></e>"#)
        );
    }

    #[test]
    fn ns07_namespace_declarations_are_not_attributes() {
        let doc = r#"<r xmlns="urn:a"><x xmlns:p="urn:p"/></r>"#;
        assert_eq!(
            get_element(doc, &sel("{urn:a}r[@xmlns=urn:a]"), &L),
            Err(XmlError::NoMatch)
        );
        assert_eq!(
            get_element(doc, &sel("{urn:a}r/{urn:a}x[@xmlns:p=urn:p]"), &L),
            Err(XmlError::NoMatch)
        );
    }

    #[test]
    fn ns08_several_matches_are_ambiguous() {
        assert_eq!(get_element(LIST, &sel("r/e"), &L), Err(XmlError::Ambiguous));
        assert_eq!(
            get_element(LIST, &sel("r/*[@uri=x]"), &L),
            Err(XmlError::Ambiguous)
        );
        assert_eq!(
            get_element(LIST, &sel("r/e[@uri=x]/g"), &L),
            Err(XmlError::NoMatch)
        );
        assert_eq!(
            get_element(LIST, &sel("r/e/g"), &L),
            Err(XmlError::Ambiguous)
        );
    }

    #[test]
    fn ns10_ns11_attribute_terminal() {
        assert_eq!(
            get_attribute(LIST, &sel("r/e[3]/@uri"), &L).as_deref(),
            Ok("z&\"")
        );
        assert_eq!(
            get_attribute(LIST, &sel("r/f/@n"), &L),
            Err(XmlError::NoMatch)
        );
        let doc = r#"<r xmlns:p="urn:p" p:a="1" a="2"/>"#;
        assert_eq!(
            get_attribute(doc, &sel("r/@{urn:p}a"), &L).as_deref(),
            Ok("1")
        );
        assert_eq!(get_attribute(doc, &sel("r/@a"), &L).as_deref(), Ok("2"));
        assert_eq!(
            get_attribute(doc, &sel("r/@xmlns:p"), &L),
            Err(XmlError::NoMatch)
        );
    }

    #[test]
    fn op28_element_bytes_exact_without_inherited_namespaces() {
        let doc = "<a:r xmlns:a=\"urn:a\" xmlns=\"urn:d\">\n <x\n  k = 'v' >\t<y/> </x >\n</a:r>";
        assert_eq!(
            get_element(doc, &sel("{urn:a}r/{urn:d}x"), &L).as_deref(),
            Ok("<x\n  k = 'v' >\t<y/> </x >")
        );
    }

    #[test]
    fn xmlns_empty_undeclares_default_namespace() {
        let doc = r#"<r xmlns="urn:d"><x xmlns=""/></r>"#;
        assert_eq!(
            get_element(doc, &sel("{urn:d}r/x"), &L).as_deref(),
            Ok(r#"<x xmlns=""/>"#)
        );
    }
}
