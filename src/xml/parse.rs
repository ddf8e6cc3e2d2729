//! Document checks and parsing with resource caps: UTF-8 only (RFC 4825 §5.3, §8.2.2; OP-01b,
//! ER-04), no DTD, bounded depth and node count (design.md §6), well-formedness (ER-03).
//!
//! roxmltree accepts any declared encoding and has no depth limit, so both are checked here.

use super::XmlError;
use roxmltree::{Document, ParsingOptions};

/// Resource caps applied to every parse of a stored document or a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum element nesting depth; the root element is at depth 1.
    pub max_depth: usize,
    /// Maximum number of nodes (elements, text, comments, PIs) roxmltree may create.
    pub max_nodes: u32,
    /// Maximum attributes (namespace declarations included) on one element. Both XML parsers
    /// check attribute uniqueness pairwise, so this bounds that quadratic work.
    pub max_attributes_per_element: usize,
    /// Maximum attributes in one document.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_nodes: 200_000,
            max_attributes_per_element: 256,
            max_attributes: 200_000,
        }
    }
}

const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Checks that a document (or a fragment or attribute body) is UTF-8 (OP-01b, ER-04).
///
/// UTF-16/UTF-32 byte order marks or signatures, invalid UTF-8 and an XML declaration naming
/// another encoding give `NotUtf8`. A UTF-8 BOM is allowed and kept in the returned text.
pub fn check_document(bytes: &[u8]) -> Result<&str, XmlError> {
    // XML 1.0 Appendix F autodetection: BOMs and the first four bytes of `<?xm` in other encodings.
    const FOREIGN_SIGNATURES: &[&[u8]] = &[
        &[0x00, 0x00, 0xFE, 0xFF],
        &[0xFE, 0xFF],
        &[0xFF, 0xFE],
        &[0x00, 0x00, 0x00, 0x3C],
        &[0x3C, 0x00, 0x00, 0x00],
        &[0x00, 0x3C, 0x00, 0x3F],
        &[0x3C, 0x00, 0x3F, 0x00],
        &[0x4C, 0x6F, 0xA7, 0x94],
    ];
    if FOREIGN_SIGNATURES.iter().any(|sig| bytes.starts_with(sig)) {
        return Err(XmlError::NotUtf8);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::NotUtf8)?;
    xml_declaration_end(text)?;
    Ok(text)
}

/// If `text` (after an optional BOM) opens with an XML declaration, checks that any encoding it
/// names is UTF-8 and returns the byte offset just after `?>`. Returns `Ok(None)` when there is
/// no declaration. A malformed declaration is left to the parser to report.
pub(crate) fn xml_declaration_end(text: &str) -> Result<Option<usize>, XmlError> {
    let bom = if text.as_bytes().starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    let rest = &text[bom..];
    let Some(after) = rest.strip_prefix("<?xml") else {
        return Ok(None);
    };
    if !after.starts_with(is_xml_space) {
        return Ok(None);
    }
    let Some(close) = after.find("?>") else {
        return Ok(None);
    };
    // Without the mandatory version this is no declaration; the parser will say so.
    if pseudo_attribute(&after[..close], "version").is_none() {
        return Ok(None);
    }
    if let Some(encoding) = pseudo_attribute(&after[..close], "encoding") {
        if !encoding.eq_ignore_ascii_case("UTF-8") {
            return Err(XmlError::NotUtf8);
        }
    }
    Ok(Some(bom + "<?xml".len() + close + "?>".len()))
}

/// Finds `name = 'value'` among the pseudo-attributes of an XML declaration body.
fn pseudo_attribute<'t>(mut decl: &'t str, name: &str) -> Option<&'t str> {
    loop {
        decl = decl.trim_start_matches(is_xml_space);
        let eq = decl.find('=')?;
        let key = decl[..eq].trim_end_matches(is_xml_space);
        let after_eq = decl[eq + 1..].trim_start_matches(is_xml_space);
        let quote = after_eq
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')?;
        let body = &after_eq[1..];
        let end = body.find(quote)?;
        if key == name {
            return Some(&body[..end]);
        }
        decl = &body[end + 1..];
    }
}

/// XML `S` production (§2.3): space, tab, CR, LF.
pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Parses a document with the DTD refused, the node cap passed to roxmltree and the depth cap
/// checked afterwards without recursion.
pub fn parse_document<'a>(text: &'a str, limits: &Limits) -> Result<Document<'a>, XmlError> {
    check_attribute_counts(text.as_bytes(), limits)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => XmlError::Doctype,
        roxmltree::Error::NodesLimitReached
        | roxmltree::Error::AttributesLimitReached
        | roxmltree::Error::NamespacesLimitReached => XmlError::TooManyNodes,
        // These carry no position of their own: they are detected at the end of the input.
        e @ (roxmltree::Error::NoRootNode
        | roxmltree::Error::UnclosedRootNode
        | roxmltree::Error::UnexpectedEndOfStream) => {
            XmlError::NotWellFormed(format!("{e} at {}", end_position(text)))
        }
        other => XmlError::NotWellFormed(other.to_string()),
    })?;
    check_depth(&doc, limits.max_depth)?;
    Ok(doc)
}

/// Counts attributes per start tag in one linear pass, before a parser spends quadratic time
/// on them (issue #11 item 5). Markup that is not a start tag (comments, CDATA, PIs, end tags,
/// declarations) is skipped; quoted values are skipped whole, so every `=` left inside a start
/// tag begins one attribute. Malformed input is left for the parser to report.
fn check_attribute_counts(text: &[u8], limits: &Limits) -> Result<(), XmlError> {
    let find = |from: usize, pat: &[u8]| -> usize {
        text[from.min(text.len())..]
            .windows(pat.len())
            .position(|w| w == pat)
            .map_or(text.len(), |p| from + p + pat.len())
    };
    let mut total = 0usize;
    let mut i = 0;
    while let Some(lt) = text[i..].iter().position(|b| *b == b'<') {
        i += lt + 1;
        let rest = &text[i..];
        if rest.starts_with(b"!--") {
            i = find(i + 3, b"-->");
        } else if rest.starts_with(b"![CDATA[") {
            i = find(i + 8, b"]]>");
        } else if rest.starts_with(b"?") {
            i = find(i + 1, b"?>");
        } else if rest.starts_with(b"!") || rest.starts_with(b"/") {
            i = find(i, b">");
        } else {
            let mut count = 0usize;
            let mut quote = None;
            while i < text.len() {
                let b = text[i];
                i += 1;
                match (quote, b) {
                    (Some(q), _) if b == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(b),
                    (None, b'=') => count += 1,
                    (None, b'>') => break,
                    _ => {}
                }
            }
            if count > limits.max_attributes_per_element {
                return Err(XmlError::TooManyAttributes(
                    limits.max_attributes_per_element,
                ));
            }
            total += count;
            if total > limits.max_attributes {
                return Err(XmlError::TooManyNodes);
            }
        }
    }
    Ok(())
}

/// `line:column` (1-based, columns in characters) of the end of `text`.
fn end_position(text: &str) -> String {
    let line = text.matches('\n').count() + 1;
    let last_line = text.rsplit('\n').next().unwrap_or("");
    format!("{line}:{}", last_line.chars().count() + 1)
}

/// Nodes are stored in document order, so a parent's depth is always known before its children.
fn check_depth(doc: &Document<'_>, max_depth: usize) -> Result<(), XmlError> {
    let mut depth: Vec<usize> = Vec::new();
    for node in doc.root().descendants() {
        let id = node.id().get_usize();
        if depth.len() <= id {
            depth.resize(id + 1, 0);
        }
        let d = match node.parent() {
            Some(parent) if node.is_element() => {
                depth.get(parent.id().get_usize()).copied().unwrap_or(0) + 1
            }
            _ => 0,
        };
        if d > max_depth {
            return Err(XmlError::TooDeep);
        }
        depth[id] = d;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), XmlError> {
        parse_document(text, &Limits::default()).map(|_| ())
    }

    #[test]
    fn er04_foreign_encodings_are_not_utf8() {
        // OP-01b / ER-04 fixture: a declaration naming ISO-8859-1.
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>";
        assert_eq!(check_document(latin1), Err(XmlError::NotUtf8));
        let single = b"<?xml version='1.0' encoding='us-ascii'?><a/>";
        assert_eq!(check_document(single), Err(XmlError::NotUtf8));
        // UTF-16 with BOMs, UTF-16 without BOM, UTF-32.
        assert_eq!(
            check_document(b"\xFF\xFE<\0a\0/\0>\0"),
            Err(XmlError::NotUtf8)
        );
        assert_eq!(
            check_document(b"\xFE\xFF\0<\0a\0/\0>"),
            Err(XmlError::NotUtf8)
        );
        assert_eq!(check_document(b"<\0?\0x\0m\0l\0"), Err(XmlError::NotUtf8));
        assert_eq!(
            check_document(b"\0\0\xFE\xFF\0\0\0<"),
            Err(XmlError::NotUtf8)
        );
        // Invalid UTF-8 (a Latin-1 e-acute).
        assert_eq!(check_document(b"<a>caf\xE9</a>"), Err(XmlError::NotUtf8));
    }

    #[test]
    fn op01b_utf8_accepted_with_or_without_bom_and_declaration() {
        for doc in [
            &b"<a/>"[..],
            b"\xEF\xBB\xBF<a/>",
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>",
            b"<?xml version=\"1.0\" encoding=\"utf-8\" standalone=\"yes\"?><a/>",
            b"\xEF\xBB\xBF<?xml version='1.0'?>\n<a>\xC3\xA9</a>",
        ] {
            let text = check_document(doc).expect("UTF-8 accepted");
            assert_eq!(text.as_bytes(), doc, "text is returned unchanged");
            parse(text).expect("well-formed");
        }
    }

    #[test]
    fn er03_unclosed_document_is_not_well_formed_with_position() {
        // ER-03 fixture: `<resource-lists><list>` (unclosed).
        match parse("<resource-lists><list>") {
            Err(XmlError::NotWellFormed(msg)) => assert!(msg.ends_with("at 1:23"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        match parse("<a>\n<b></a>") {
            Err(XmlError::NotWellFormed(msg)) => assert!(msg.contains("2:"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(parse(""), Err(XmlError::NotWellFormed(_))));
        assert!(matches!(parse("text"), Err(XmlError::NotWellFormed(_))));
    }

    #[test]
    fn design6_doctype_refused() {
        assert_eq!(parse("<!DOCTYPE a><a/>"), Err(XmlError::Doctype));
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaa\">]><l>&a;</l>";
        assert_eq!(parse(bomb), Err(XmlError::Doctype));
    }

    fn attrs(n: usize) -> String {
        (0..n).map(|i| format!(" a{i}=\"{i}\"")).collect()
    }

    /// Issue #11 item 5: attributes per element and per document are capped before parsing.
    #[test]
    fn attribute_caps_per_element_and_document() {
        let limits = Limits {
            max_attributes_per_element: 4,
            max_attributes: 10,
            ..Limits::default()
        };
        let ok = format!("<r{}><e{}/><e{}/></r>", attrs(4), attrs(3), attrs(3));
        assert!(parse_document(&ok, &limits).is_ok());
        let wide = format!("<r><e{}/></r>", attrs(5));
        assert_eq!(
            parse_document(&wide, &limits).err(),
            Some(XmlError::TooManyAttributes(4))
        );
        let xmlns = r#"<r xmlns="urn:a" xmlns:b="urn:b" xmlns:c="urn:c" a="1" b:x="2"/>"#;
        assert_eq!(
            parse_document(xmlns, &limits).err(),
            Some(XmlError::TooManyAttributes(4)),
            "namespace declarations count"
        );
        let many = format!("<r>{}</r>", format!("<e{}/>", attrs(3)).repeat(4));
        assert_eq!(
            parse_document(&many, &limits).err(),
            Some(XmlError::TooManyNodes)
        );
    }

    /// Only `=` in start tags, outside quoted values, counts: not in text, comments, CDATA,
    /// PIs, end tags or attribute values.
    #[test]
    fn attribute_count_skips_other_markup_and_values() {
        let limits = Limits {
            max_attributes_per_element: 2,
            ..Limits::default()
        };
        let doc = r#"<?pi a=1 b=2 c=3?><r a="x=y=z" b='p="q"'><!-- a=1 b=2 c=3 --><![CDATA[a=1 b=2 c=3]]>a=1 b=2 c=3<e
            k = "v" j='w'/></r >"#;
        assert!(parse_document(doc, &limits).is_ok());
        assert_eq!(
            check_attribute_counts(b"<r a='1' b='2' c='3'", &limits),
            Err(XmlError::TooManyAttributes(2)),
            "an unclosed tag still counts"
        );
        assert_eq!(
            check_attribute_counts(b"<!-- unclosed a=1 b=2 c=3", &limits),
            Ok(())
        );
    }

    proptest::proptest! {
        /// The scan never panics and agrees with roxmltree on well-formed documents.
        #[test]
        fn attribute_scan_agrees_with_the_parser(
            counts in proptest::collection::vec(0usize..6, 1..6),
            noise in "[a-z =<>!?\\[\\]'\"/-]{0,40}",
        ) {
            let _ = check_attribute_counts(noise.as_bytes(), &Limits::default());
            let body: String = counts.iter().map(|n| format!("<e{}>x=1</e>", attrs(*n))).collect();
            let doc = format!("<r><!--{}-->{body}</r>", noise.replace("--", "").trim_end_matches('-'));
            let max = *counts.iter().max().unwrap_or(&0);
            for cap in [max.saturating_sub(1), max] {
                let limits = Limits { max_attributes_per_element: cap, ..Limits::default() };
                let r = parse_document(&doc, &limits);
                if max > cap {
                    proptest::prop_assert_eq!(r.err(), Some(XmlError::TooManyAttributes(cap)));
                } else {
                    let d = r.unwrap();
                    let seen = d.descendants().map(|n| n.attributes().len()).max().unwrap_or(0);
                    proptest::prop_assert_eq!(seen, max);
                }
            }
        }
    }

    #[test]
    fn design6_depth_cap() {
        let limits = Limits {
            max_depth: 3,
            max_nodes: 1000,
            max_attributes_per_element: 256,
            max_attributes: 200_000,
        };
        assert!(parse_document("<a><b><c>t</c></b></a>", &limits).is_ok());
        assert_eq!(
            parse_document("<a><b><c><d/></c></b></a>", &limits).err(),
            Some(XmlError::TooDeep)
        );
        // Deep nesting well beyond any recursion limit is refused, not a crash.
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert_eq!(parse(&deep), Err(XmlError::TooDeep));
    }

    #[test]
    fn design6_node_cap() {
        let limits = Limits {
            max_depth: 64,
            max_nodes: 10,
            max_attributes_per_element: 256,
            max_attributes: 200_000,
        };
        let many = format!("<a>{}</a>", "<b/>".repeat(20));
        assert_eq!(
            parse_document(&many, &limits).err(),
            Some(XmlError::TooManyNodes)
        );
        let few = format!("<a>{}</a>", "<b/>".repeat(5));
        assert!(parse_document(&few, &limits).is_ok());
    }
}
