//! Node selector model (RFC 4825 §6.3, §6.4): the parsed form of the part after `~~`, and its
//! namespace-resolved form that the XML locator evaluates. Pure; no I/O.
//!
//! Standards items: NS-01..NS-19, URI-14..URI-16.

use std::collections::BTreeMap;

/// A qualified name as written in the selector (`prefix:local` or `local`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QName {
    pub prefix: Option<String>,
    pub local: String,
}

/// The name test of a step: `*` or a QName (NS-01d).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameTest {
    Any,
    Name(QName),
}

/// `[@att="value"]`; `value` is the decoded AttValue: quotes removed, entities expanded (NS-06).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrTest {
    pub name: QName,
    pub value: String,
}

/// One step of the element selector (NS-01c). `raw` is the step exactly as it appeared in the
/// percent-decoded selector; it is used to build `<ancestor>` URIs in `no-parent` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: NameTest,
    /// Position predicate `[n]` (NS-04), 1-based; `[0]` is grammatical and selects nothing.
    pub position: Option<usize>,
    pub attr: Option<AttrTest>,
    pub raw: String,
}

/// The terminal selector (NS-01e).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    Attribute(QName),
    NamespaceBindings,
}

/// A parsed node selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelector {
    pub steps: Vec<Step>,
    pub terminal: Option<Terminal>,
}

/// Prefix → namespace URI bindings from the `xmlns()` query parts (URI-14).
pub type Bindings = BTreeMap<String, String>;

/// An expanded name: namespace URI (None = no namespace) plus local name (NS-09).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExpandedName {
    pub ns: Option<String>,
    pub local: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedNameTest {
    Any,
    Name(ExpandedName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedStep {
    pub name: ResolvedNameTest,
    pub position: Option<usize>,
    pub attr: Option<(ExpandedName, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedTerminal {
    Attribute(ExpandedName),
    NamespaceBindings,
}

/// A node selector whose names are expanded; this is what `xml::locate` evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSelector {
    pub steps: Vec<ResolvedStep>,
    pub terminal: Option<ResolvedTerminal>,
}

// ---------------------------------------------------------------------------------------------
// Parsing, namespace resolution and printing (RFC 4825 §6.3, §6.4).
// ---------------------------------------------------------------------------------------------

use std::fmt;

use thiserror::Error;

use crate::xml::attvalue;

/// The namespace the `xml` prefix is bound to without declaration (Namespaces in XML 1.0 §3).
pub const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";

/// Why a node selector cannot be used. `UnboundPrefix` is a client error (400, URI-16); every
/// other variant means the selector does not identify a node this server understands (404,
/// NS-14, NS-19; the 400-versus-404 choice of IO-11c is settled on 404).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("empty node selector")]
    Empty,
    #[error("malformed node selector: {0}")]
    Syntax(String),
    #[error("unsupported extension selector")]
    Unsupported,
    #[error("namespace::* is only allowed as the terminal selector")]
    NamespaceNotTerminal,
    #[error("namespace prefix {0:?} is not bound by an xmlns() query part")]
    UnboundPrefix(String),
}

impl SelectorError {
    /// True when the HTTP answer is 400 rather than 404 (RFC 4825 §8, URI-16).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, SelectorError::UnboundPrefix(_))
    }
}

fn syntax(msg: &str) -> SelectorError {
    SelectorError::Syntax(msg.to_owned())
}

impl NodeSelector {
    /// Parses a percent-decoded node selector (NS-01). A single leading `/` is tolerated
    /// (NS-01b). Steps are split on `/` outside quoted attribute values (URI-12).
    pub fn parse(decoded: &str) -> Result<NodeSelector, SelectorError> {
        let body = decoded.strip_prefix('/').unwrap_or(decoded);
        if body.is_empty() {
            return Err(SelectorError::Empty);
        }
        let tokens = split_steps(body)?;
        let last = tokens.len().saturating_sub(1);
        let mut steps = Vec::with_capacity(tokens.len());
        let mut terminal = None;
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(syntax("empty step"));
            }
            if *token == "namespace::*" {
                // NS-19: only as the terminal, and a terminal needs an element selector first.
                if i != last || i == 0 {
                    return Err(SelectorError::NamespaceNotTerminal);
                }
                terminal = Some(Terminal::NamespaceBindings);
            } else if let Some(name) = token.strip_prefix('@') {
                if i != last || i == 0 {
                    return Err(syntax(
                        "an attribute selector must be the terminal selector",
                    ));
                }
                // Not a QName: an extension terminal selector we do not understand (NS-14).
                let name = parse_qname(name).ok_or(SelectorError::Unsupported)?;
                terminal = Some(Terminal::Attribute(name));
            } else {
                steps.push(parse_step(token)?);
            }
        }
        Ok(NodeSelector { steps, terminal })
    }

    /// Expands every name (NS-09, NS-10, URI-15, URI-16): unprefixed element names take
    /// `default_ns` (the app usage's default document namespace; None = no namespace),
    /// unprefixed attribute names are in no namespace, prefixes come from `bindings`, and `xml`
    /// is always bound to [`XML_NAMESPACE`].
    pub fn resolve(
        &self,
        bindings: &Bindings,
        default_ns: Option<&str>,
    ) -> Result<ResolvedSelector, SelectorError> {
        let steps = self
            .steps
            .iter()
            .map(|step| {
                let name = match &step.name {
                    NameTest::Any => ResolvedNameTest::Any,
                    NameTest::Name(q) => ResolvedNameTest::Name(expand(q, bindings, default_ns)?),
                };
                let attr = match &step.attr {
                    Some(test) => Some((expand(&test.name, bindings, None)?, test.value.clone())),
                    None => None,
                };
                Ok(ResolvedStep {
                    name,
                    position: step.position,
                    attr,
                })
            })
            .collect::<Result<Vec<_>, SelectorError>>()?;
        let terminal = match &self.terminal {
            None => None,
            Some(Terminal::NamespaceBindings) => Some(ResolvedTerminal::NamespaceBindings),
            Some(Terminal::Attribute(q)) => {
                Some(ResolvedTerminal::Attribute(expand(q, bindings, None)?))
            }
        };
        Ok(ResolvedSelector { steps, terminal })
    }
}

impl Step {
    /// Builds a step whose `raw` text is its canonical form (for selectors the server writes
    /// itself, e.g. `<exists field>` in ER-11).
    pub fn new(name: NameTest, position: Option<usize>, attr: Option<AttrTest>) -> Step {
        let mut step = Step {
            name,
            position,
            attr,
            raw: String::new(),
        };
        step.raw = step.to_string();
        step
    }
}

fn expand(
    q: &QName,
    bindings: &Bindings,
    unprefixed_ns: Option<&str>,
) -> Result<ExpandedName, SelectorError> {
    let ns = match q.prefix.as_deref() {
        None => unprefixed_ns.map(str::to_owned),
        // The xml prefix cannot be rebound (Namespaces in XML 1.0 §3), so a query binding is ignored.
        Some("xml") => Some(XML_NAMESPACE.to_owned()),
        Some(p) => Some(
            bindings
                .get(p)
                .ok_or_else(|| SelectorError::UnboundPrefix(p.to_owned()))?
                .clone(),
        ),
    };
    Ok(ExpandedName {
        ns,
        local: q.local.clone(),
    })
}

/// Splits on `/` outside `"…"` / `'…'` (URI-12).
fn split_steps(s: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '/' => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    if quote.is_some() {
        return Err(syntax("unterminated quoted value"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// One element step: `NameorAny`, then optionally `[n]`, then optionally `[@att=val]` (NS-01c,
/// NS-05 fixes that order).
fn parse_step(token: &str) -> Result<Step, SelectorError> {
    let name_end = token.find('[').unwrap_or(token.len());
    let name_text = &token[..name_end];
    let name = if name_text == "*" {
        NameTest::Any
    } else {
        // Neither `*` nor a QName: an extension selector (NS-01c), which we do not support.
        NameTest::Name(parse_qname(name_text).ok_or(SelectorError::Unsupported)?)
    };
    let mut position = None;
    let mut attr = None;
    let mut rest = &token[name_end..];
    while !rest.is_empty() {
        let close = closing_bracket(rest)?;
        let inner = &rest[1..close];
        rest = &rest[close + 1..];
        if let Some(test) = inner.strip_prefix('@') {
            if attr.is_some() {
                return Err(syntax("more than one attribute test in a step"));
            }
            attr = Some(parse_attr_test(test)?);
        } else if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            if position.is_some() || attr.is_some() {
                return Err(syntax("a position predicate must come first and only once"));
            }
            let n: usize = inner
                .parse()
                .map_err(|_| syntax("position predicate out of range"))?;
            // RFC 4825 §6.3: `position = 1*DIGIT`, so `[0]` is valid and selects nothing
            // (XPath positions start at 1): GET 404, PUT 409 cannot-insert.
            position = Some(n);
        } else {
            return Err(syntax("unrecognized predicate"));
        }
        if !rest.is_empty() && !rest.starts_with('[') {
            return Err(syntax("unexpected text after a predicate"));
        }
    }
    Ok(Step {
        name,
        position,
        attr,
        raw: token.to_owned(),
    })
}

/// Byte index of the `]` closing the predicate that `s` starts with, skipping quoted text.
fn closing_bracket(s: &str) -> Result<usize, SelectorError> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices().skip(1) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                ']' => return Ok(i),
                '[' => return Err(syntax("nested '[' in a predicate")),
                _ => {}
            },
        }
    }
    Err(syntax("unbalanced '[' in a step"))
}

/// `att-name "=" AttValue` after the `@` (NS-01d); the value is decoded as NS-06 requires.
fn parse_attr_test(test: &str) -> Result<AttrTest, SelectorError> {
    let (name, value) = test
        .split_once('=')
        .ok_or_else(|| syntax("attribute test without '='"))?;
    let name = parse_qname(name).ok_or_else(|| syntax("attribute name is not a QName"))?;
    let value = attvalue::decode_quoted(value)
        .map_err(|e| SelectorError::Syntax(format!("attribute test value: {e}")))?;
    Ok(AttrTest { name, value })
}

/// Parses `prefix:local` or `local` (Namespaces in XML 1.0 §4, production 7).
pub fn parse_qname(s: &str) -> Option<QName> {
    match s.split_once(':') {
        Some((prefix, local)) if is_ncname(prefix) && is_ncname(local) => Some(QName {
            prefix: Some(prefix.to_owned()),
            local: local.to_owned(),
        }),
        Some(_) => None,
        None if is_ncname(s) => Some(QName {
            prefix: None,
            local: s.to_owned(),
        }),
        None => None,
    }
}

/// NCName: an XML 1.0 (5th edition) Name without ':' (Namespaces in XML 1.0 §3, production 4).
pub fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_name_start_char(c) => chars.all(is_name_char),
        _ => false,
    }
}

/// XML 1.0 §2.3 production 4 without ':'.
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 §2.3 production 4a without ':'.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Parses the query component: one or more XPointer `xmlns(prefix=uri)` parts (RFC 4825 §6.4,
/// URI-14). Parts of other schemes, `xmlns(=uri)`, empty URIs and malformed parts are ignored;
/// quotes around the URI are removed (Doubango, IO-03). A later binding of a prefix wins.
pub fn parse_xmlns_query(query: &str) -> Bindings {
    let mut bindings = Bindings::new();
    let mut rest = query.strip_prefix('?').unwrap_or(query);
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '&');
        let Some(open) = rest.find('(') else { break };
        let scheme = rest[..open].trim();
        let Some((data, after)) = scheme_data(&rest[open + 1..]) else {
            break;
        };
        if scheme == "xmlns" {
            if let Some((prefix, uri)) = xmlns_binding(&data) {
                bindings.insert(prefix, uri);
            }
        }
        rest = after;
    }
    bindings
}

/// Reads XPointer scheme data up to its closing `)` (XPointer Framework §3.3): parentheses
/// nest, `^` escapes `(`, `)` and `^`. Returns the unescaped data and the text after `)`.
fn scheme_data(s: &str) -> Option<(String, &str)> {
    let mut depth = 0usize;
    let mut data = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '^' => match chars.next() {
                Some((_, e @ ('(' | ')' | '^'))) => data.push(e),
                // A stray circumflex is kept as data rather than discarding the whole query.
                Some((_, other)) => {
                    data.push('^');
                    data.push(other);
                }
                None => data.push('^'),
            },
            '(' => {
                depth += 1;
                data.push(c);
            }
            ')' if depth == 0 => return Some((data, &s[i + 1..])),
            ')' => {
                depth -= 1;
                data.push(c);
            }
            _ => data.push(c),
        }
    }
    None
}

/// `NCName S? '=' S? EscapedNamespaceName` (XPointer xmlns() Scheme §2).
fn xmlns_binding(data: &str) -> Option<(String, String)> {
    let (prefix, uri) = data.split_once('=')?;
    let prefix = prefix.trim();
    if !is_ncname(prefix) || prefix == "xmlns" {
        return None;
    }
    let uri = uri.trim();
    let uri = ['"', '\'']
        .iter()
        .find_map(|q| uri.strip_prefix(*q).and_then(|u| u.strip_suffix(*q)))
        .unwrap_or(uri);
    if uri.is_empty() {
        return None;
    }
    Some((prefix.to_owned(), uri.to_owned()))
}

impl fmt::Display for QName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "{p}:{}", self.local),
            None => f.write_str(&self.local),
        }
    }
}

impl fmt::Display for NameTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTest::Any => f.write_str("*"),
            NameTest::Name(q) => q.fmt(f),
        }
    }
}

/// The canonical form of a step (double-quoted, escaped value); `raw` keeps the client's text.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)?;
        if let Some(n) = self.position {
            write!(f, "[{n}]")?;
        }
        if let Some(test) = &self.attr {
            write!(f, "[@{}={}]", test.name, attvalue::quote(&test.value))?;
        }
        Ok(())
    }
}

/// Prints the percent-decoded canonical selector; `NodeSelector::parse` reads it back to an
/// equal value whenever every step's `raw` is canonical.
impl fmt::Display for NodeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            step.fmt(f)?;
        }
        match &self.terminal {
            None => Ok(()),
            Some(Terminal::Attribute(q)) => write!(f, "/@{q}"),
            Some(Terminal::NamespaceBindings) => f.write_str("/namespace::*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEFAULT_NS: &str = "urn:test:default-namespace";
    const NS1: &str = "urn:test:namespace1-uri";
    const NS2: &str = "urn:test:namespace2-uri";

    fn qn(prefix: Option<&str>, local: &str) -> QName {
        QName {
            prefix: prefix.map(str::to_owned),
            local: local.to_owned(),
        }
    }

    fn en(ns: Option<&str>, local: &str) -> ExpandedName {
        ExpandedName {
            ns: ns.map(str::to_owned),
            local: local.to_owned(),
        }
    }

    fn names(r: &ResolvedSelector) -> Vec<ExpandedName> {
        r.steps
            .iter()
            .filter_map(|s| match &s.name {
                ResolvedNameTest::Name(n) => Some(n.clone()),
                ResolvedNameTest::Any => None,
            })
            .collect()
    }

    #[test]
    fn rfc4825_6_4_ns16a_both_prefixes_namespace1() {
        let sel = NodeSelector::parse("foo/a:bar/b:baz").unwrap();
        let b =
            parse_xmlns_query("xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace1-uri)");
        let r = sel.resolve(&b, Some(DEFAULT_NS)).unwrap();
        assert_eq!(
            names(&r),
            vec![
                en(Some(DEFAULT_NS), "foo"),
                en(Some(NS1), "bar"),
                en(Some(NS1), "baz")
            ]
        );
        assert_eq!(r.terminal, None);
    }

    #[test]
    fn rfc4825_6_4_ns16b_second_baz_namespace2() {
        let sel = NodeSelector::parse("foo/a:bar/b:baz").unwrap();
        let b =
            parse_xmlns_query("xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace2-uri)");
        let r = sel.resolve(&b, Some(DEFAULT_NS)).unwrap();
        assert_eq!(names(&r)[2], en(Some(NS2), "baz"));
    }

    #[test]
    fn rfc4825_6_4_ns16c_default_namespace_bound_to_prefix() {
        let sel = NodeSelector::parse("d:foo/a:bar/b:baz").unwrap();
        let b = parse_xmlns_query(
            "xmlns(a=urn:test:namespace1-uri)xmlns(b=urn:test:namespace2-uri)\
             xmlns(d=urn:test:default-namespace)",
        );
        // The prefixed name expands to the same name the unprefixed one does (NS-09).
        let r = sel.resolve(&b, None).unwrap();
        let unprefixed = NodeSelector::parse("foo/a:bar/b:baz")
            .unwrap()
            .resolve(&b, Some(DEFAULT_NS))
            .unwrap();
        assert_eq!(r, unprefixed);
        assert_eq!(names(&r)[0], en(Some(DEFAULT_NS), "foo"));
    }

    #[test]
    fn ns01_grammar_forms() {
        let sel = NodeSelector::parse(
            r#"/resource-lists/list[@name="friends"]/*[2]/entry[3][@uri='sip:b@x']/@uri"#,
        )
        .unwrap();
        assert_eq!(sel.steps.len(), 4);
        assert_eq!(
            sel.steps[0].name,
            NameTest::Name(qn(None, "resource-lists"))
        );
        assert_eq!(
            sel.steps[1].attr,
            Some(AttrTest {
                name: qn(None, "name"),
                value: "friends".into()
            })
        );
        assert_eq!(sel.steps[2].name, NameTest::Any);
        assert_eq!(sel.steps[2].position, Some(2));
        assert_eq!(sel.steps[3].position, Some(3));
        assert_eq!(sel.steps[3].attr.as_ref().unwrap().value, "sip:b@x");
        assert_eq!(sel.steps[3].raw, "entry[3][@uri='sip:b@x']");
        assert_eq!(sel.terminal, Some(Terminal::Attribute(qn(None, "uri"))));
    }

    #[test]
    fn uri12_slash_inside_quoted_value_is_data() {
        let sel = NodeSelector::parse(
            r#"rls-services/service[@uri="sip:a@b"]/resource-list[@x='http://h/p/q']/@anchor"#,
        )
        .unwrap();
        assert_eq!(sel.steps.len(), 3);
        assert_eq!(sel.steps[2].attr.as_ref().unwrap().value, "http://h/p/q");
        assert_eq!(sel.steps[2].raw, "resource-list[@x='http://h/p/q']");
        // Brackets and the other quote inside a value are data too.
        let sel = NodeSelector::parse(r#"a[@v="x]['/y"]"#).unwrap();
        assert_eq!(sel.steps[0].attr.as_ref().unwrap().value, "x]['/y");
    }

    #[test]
    fn ns05_position_then_attribute_only() {
        let sel = NodeSelector::parse(r#"l/entry[2][@uri="x"]"#).unwrap();
        assert_eq!(sel.steps[1].position, Some(2));
        assert!(sel.steps[1].attr.is_some());
        assert!(matches!(
            NodeSelector::parse(r#"l/entry[@uri="x"][2]"#),
            Err(SelectorError::Syntax(_))
        ));
        assert!(matches!(
            NodeSelector::parse("l/entry[1][2]"),
            Err(SelectorError::Syntax(_))
        ));
        assert!(matches!(
            NodeSelector::parse(r#"l/e[@a="1"][@b="2"]"#),
            Err(SelectorError::Syntax(_))
        ));
    }

    #[test]
    fn ns04_position_is_one_based_digits() {
        assert_eq!(
            NodeSelector::parse("a[01]").unwrap().steps[0].position,
            Some(1)
        );
        for bad in ["a[]", "a[-1]", "a[1", "a[1]x", "a[99999999999999999999999]"] {
            assert!(
                matches!(NodeSelector::parse(bad), Err(SelectorError::Syntax(_))),
                "{bad}"
            );
        }
    }

    /// RFC 4825 §6.3 `position = 1*DIGIT`: `[0]` parses (issue #10 item 4) and keeps its
    /// attribute test; it is `locate`/`splice` that make it select nothing.
    #[test]
    fn ns04_position_zero_is_grammatical() {
        let sel = NodeSelector::parse(r#"resource-lists/list[0][@name="x"]"#).unwrap();
        assert_eq!(sel.steps[1].position, Some(0));
        assert_eq!(sel.steps[1].attr.as_ref().unwrap().value, "x");
        assert_eq!(
            NodeSelector::parse("a[00]").unwrap().steps[0].position,
            Some(0)
        );
        assert_eq!(sel.to_string(), r#"resource-lists/list[0][@name="x"]"#);
    }

    #[test]
    fn ns06_attribute_value_decoded() {
        let sel = NodeSelector::parse(r#"a[@b="x&amp;y&quot;&#65;"]"#).unwrap();
        assert_eq!(sel.steps[0].attr.as_ref().unwrap().value, "x&y\"A");
        let sel = NodeSelector::parse(r#"a[@b='say "hi"']"#).unwrap();
        assert_eq!(sel.steps[0].attr.as_ref().unwrap().value, "say \"hi\"");
        for bad in [
            r#"a[@b=x]"#,
            r#"a[@b="x&y"]"#,
            r#"a[@b="<"]"#,
            r#"a[@b]"#,
            r#"a[@1="x"]"#,
        ] {
            assert!(
                matches!(NodeSelector::parse(bad), Err(SelectorError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ns19_namespace_selector_only_terminal() {
        let sel = NodeSelector::parse("a/b/namespace::*").unwrap();
        assert_eq!(sel.terminal, Some(Terminal::NamespaceBindings));
        assert_eq!(sel.steps.len(), 2);
        for bad in ["a/namespace::*/b", "namespace::*", "/namespace::*"] {
            let err = NodeSelector::parse(bad).unwrap_err();
            assert_eq!(err, SelectorError::NamespaceNotTerminal, "{bad}");
            assert!(!err.is_bad_request());
        }
    }

    #[test]
    fn ns01e_attribute_selector_only_terminal() {
        assert!(matches!(
            NodeSelector::parse("a/@b/c"),
            Err(SelectorError::Syntax(_))
        ));
        assert!(matches!(
            NodeSelector::parse("@b"),
            Err(SelectorError::Syntax(_))
        ));
        assert_eq!(
            NodeSelector::parse("a/@p:q").unwrap().terminal,
            Some(Terminal::Attribute(qn(Some("p"), "q")))
        );
    }

    #[test]
    fn ns14_extension_selectors_unsupported_404() {
        for ext in [
            "a/text()", "a/b c", "a/1b", "a/p:q:r", "a/:b", "a/@b()", "a/..", "a/.",
        ] {
            let err = NodeSelector::parse(ext).unwrap_err();
            assert_eq!(err, SelectorError::Unsupported, "{ext}");
            assert!(!err.is_bad_request());
        }
    }

    #[test]
    fn ns01b_empty_and_slashes() {
        assert_eq!(NodeSelector::parse(""), Err(SelectorError::Empty));
        assert_eq!(NodeSelector::parse("/"), Err(SelectorError::Empty));
        assert!(NodeSelector::parse("/a/b").is_ok());
        for bad in ["//a", "a//b", "a/", r#"a[@b="x]"#] {
            assert!(
                matches!(NodeSelector::parse(bad), Err(SelectorError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ns01d_qnames_allow_non_ascii_letters() {
        let sel = NodeSelector::parse("liste/é:ñandú-1.x[@π·2=\"ö\"]").unwrap();
        assert_eq!(
            sel.steps[1].name,
            NameTest::Name(qn(Some("é"), "ñandú-1.x"))
        );
        assert_eq!(sel.steps[1].attr.as_ref().unwrap().name, qn(None, "π·2"));
        assert!(is_ncname("_a.b-c"));
        assert!(!is_ncname("-a"));
        assert!(!is_ncname("a×b"));
        assert!(!is_ncname(""));
    }

    #[test]
    fn uri16_unbound_prefix_is_400() {
        let sel = NodeSelector::parse("a/p:b").unwrap();
        let err = sel.resolve(&Bindings::new(), None).unwrap_err();
        assert_eq!(err, SelectorError::UnboundPrefix("p".into()));
        assert!(err.is_bad_request());
        // Unbound prefixes in attribute tests and attribute terminals too.
        let sel = NodeSelector::parse(r#"a[@q:x="1"]"#).unwrap();
        assert_eq!(
            sel.resolve(&Bindings::new(), None),
            Err(SelectorError::UnboundPrefix("q".into()))
        );
        let sel = NodeSelector::parse("a/@r:x").unwrap();
        assert_eq!(
            sel.resolve(&Bindings::new(), None),
            Err(SelectorError::UnboundPrefix("r".into()))
        );
    }

    #[test]
    fn ns10_unprefixed_attributes_in_no_namespace_xml_prefix_implicit() {
        let sel = NodeSelector::parse(r#"a[@name="x"]/@xml:lang"#).unwrap();
        let r = sel.resolve(&Bindings::new(), Some(DEFAULT_NS)).unwrap();
        assert_eq!(
            r.steps[0].name,
            ResolvedNameTest::Name(en(Some(DEFAULT_NS), "a"))
        );
        assert_eq!(r.steps[0].attr, Some((en(None, "name"), "x".to_owned())));
        assert_eq!(
            r.terminal,
            Some(ResolvedTerminal::Attribute(en(Some(XML_NAMESPACE), "lang")))
        );
        // URI-15: None means unprefixed element names are in no namespace.
        let r = sel.resolve(&Bindings::new(), None).unwrap();
        assert_eq!(r.steps[0].name, ResolvedNameTest::Name(en(None, "a")));
    }

    #[test]
    fn uri14_xmlns_query_parts() {
        let b = parse_xmlns_query(
            "xmlns(a=urn:one) xpointer(/x[(1)]^)) xmlns( b = \"urn:two\" )&xmlns(c='urn:three')\
             xmlns(=urn:none)xmlns(d=)xmlns(1x=urn:bad)xmlns(nodelim)xmlns(a=urn:again)",
        );
        let expected: Bindings = [("a", "urn:again"), ("b", "urn:two"), ("c", "urn:three")]
            .into_iter()
            .map(|(p, u)| (p.to_owned(), u.to_owned()))
            .collect();
        assert_eq!(b, expected);
        // IO-03: Doubango's quotes, and an unterminated trailing part is dropped.
        let b = parse_xmlns_query("?xmlns(a=\"urn:x(1)\")xmlns(b=urn:y");
        assert_eq!(b.get("a").map(String::as_str), Some("urn:x(1)"));
        assert_eq!(b.get("b"), None);
        assert!(parse_xmlns_query("").is_empty());
        assert!(parse_xmlns_query("a=b&c=d").is_empty());
    }

    #[test]
    fn step_new_and_display_are_canonical() {
        let step = Step::new(
            NameTest::Name(qn(None, "entry")),
            Some(2),
            Some(AttrTest {
                name: qn(None, "uri"),
                value: "a\"b&c/d".into(),
            }),
        );
        assert_eq!(step.raw, r#"entry[2][@uri="a&quot;b&amp;c/d"]"#);
        let sel = NodeSelector {
            steps: vec![step],
            terminal: Some(Terminal::NamespaceBindings),
        };
        assert_eq!(
            sel.to_string(),
            r#"entry[2][@uri="a&quot;b&amp;c/d"]/namespace::*"#
        );
        assert_eq!(NodeSelector::parse(&sel.to_string()), Ok(sel));
    }

    fn ncname() -> impl Strategy<Value = String> {
        "[A-Za-z_À-ÖØ-öø-ÿ一-龥][A-Za-z0-9_.·À-ÖØ-öø-ÿ\u{300}-\u{36F}一-龥-]{0,6}"
    }

    fn qname() -> impl Strategy<Value = QName> {
        (proptest::option::of(ncname()), ncname())
            .prop_map(|(prefix, local)| QName { prefix, local })
    }

    fn step() -> impl Strategy<Value = Step> {
        let name = prop_oneof![Just(NameTest::Any), qname().prop_map(NameTest::Name)];
        let attr = proptest::option::of(
            (qname(), any::<String>()).prop_map(|(name, value)| AttrTest { name, value }),
        );
        (name, proptest::option::of(1usize..), attr)
            .prop_map(|(name, position, attr)| Step::new(name, position, attr))
    }

    fn selector() -> impl Strategy<Value = NodeSelector> {
        let terminal = proptest::option::of(prop_oneof![
            Just(Terminal::NamespaceBindings),
            qname().prop_map(Terminal::Attribute)
        ]);
        (proptest::collection::vec(step(), 1..5), terminal)
            .prop_map(|(steps, terminal)| NodeSelector { steps, terminal })
    }

    proptest! {
        #[test]
        fn ns01_display_parse_round_trip(sel in selector()) {
            let text = sel.to_string();
            prop_assert_eq!(NodeSelector::parse(&text), Ok(sel.clone()));
            // The leading slash variant parses to the same value (NS-01b).
            prop_assert_eq!(NodeSelector::parse(&format!("/{text}")), Ok(sel));
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            if let Ok(sel) = NodeSelector::parse(&s) {
                let _ = sel.resolve(&Bindings::new(), Some("urn:x"));
            }
            let _ = parse_xmlns_query(&s);
        }

        #[test]
        fn parse_never_panics_on_selector_alphabet(s in "[a-z:@*\\[\\]\"'/=0-9 &;#^()é]{0,40}") {
            if let Ok(sel) = NodeSelector::parse(&s) {
                // Whatever parses prints to something that parses back the same (ignoring raw).
                let reparsed = NodeSelector::parse(&sel.to_string());
                prop_assert!(reparsed.is_ok());
                let canon = |n: NodeSelector| NodeSelector {
                    steps: n.steps.into_iter().map(|s| Step::new(s.name, s.position, s.attr)).collect(),
                    terminal: n.terminal,
                };
                prop_assert_eq!(canon(reparsed.unwrap()), canon(sel));
            }
            let _ = parse_xmlns_query(&s);
        }
    }
}
