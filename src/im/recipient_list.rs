//! One-to-many pager messages (RFC 5365, RFC 5364, RFC 2046 §5.1; standards.md IM-08): the
//! multipart body of a MESSAGE with `Require: recipient-list-message` read into the
//! recipients (a `resource-lists` part with `Content-Disposition: recipient-list`, entries
//! with `copyControl` to/cc/bcc and `anonymize`) and the message itself (the other part, its
//! Content-Type and bytes as received). Bad bodies are refused with a reason.
//!
//! Each recipient's copy tells who else it went to (IM-08d): when the list has `to` or `cc`
//! entries, the copy is multipart/mixed with the message part as received and a
//! `recipient-list-history` part listing them; `bcc` recipients are left out, and those to
//! be anonymized are counted under the anonymous URI (RFC 3323) instead of named. Pure.

use thiserror::Error;

const RESOURCE_LISTS_NS: &str = "urn:ietf:params:xml:ns:resource-lists";
const COPY_CONTROL_NS: &str = "urn:ietf:params:xml:ns:copycontrol";

/// Why a recipient-list MESSAGE cannot be exploded (answered 400, or 413 for too many).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ListError {
    #[error("the body is not multipart/mixed with a boundary")]
    NotMultipart,
    #[error("a malformed multipart body")]
    BadMultipart,
    #[error("no recipient-list part")]
    NoList,
    #[error("no message part beside the recipient list")]
    NoMessage,
    #[error("the recipient list is not a resource-lists document")]
    BadList,
    #[error("the recipient list names nobody")]
    Empty,
    #[error("more than {0} recipients")]
    TooMany(usize),
}

/// How a recipient gets its copy (RFC 5364 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyControl {
    To,
    Cc,
    Bcc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub uri: String,
    pub copy: CopyControl,
    pub anonymize: bool,
}

/// An exploded request: who gets a copy, and the copy's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exploded<'a> {
    pub recipients: Vec<Recipient>,
    pub content_type: String,
    pub content: &'a [u8],
    /// The message part's MIME headers, as received (kept in a copy with a history).
    pub part_headers: Vec<(&'a str, &'a str)>,
}

/// The URI of recipients the sender asked to keep anonymous (RFC 3323 §4.1.1.3).
const ANONYMOUS: &str = "sip:anonymous@anonymous.invalid";

/// RFC 5365 §4: the disposition of the part that tells a recipient who else got the message.
const HISTORY: &str = "recipient-list-history";

impl Exploded<'_> {
    /// The Content-Type and body of every recipient's copy: the message part alone, or
    /// (when there are `to` or `cc` recipients) multipart/mixed with the message part and
    /// the `recipient-list-history` part, delimited by `boundary` (found in neither).
    pub fn copy(&self, boundary: &str) -> (String, Vec<u8>) {
        let Some(history) = history(&self.recipients) else {
            return (self.content_type.clone(), self.content.to_vec());
        };
        let mut body = Vec::with_capacity(self.content.len() + history.len() + 256);
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for (name, value) in &self.part_headers {
            body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(self.content);
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/resource-lists+xml\r\n\
                 Content-Disposition: {HISTORY}; handling=optional\r\n\r\n{history}\r\n\
                 --{boundary}--\r\n"
            )
            .as_bytes(),
        );
        (format!("multipart/mixed;boundary=\"{boundary}\""), body)
    }
}

/// The `recipient-list-history` document (IM-08d, RFC 5364 §4): the `to` and `cc`
/// recipients in order, each anonymized one counted under the anonymous URI (one entry
/// per copy control, in a list of its own: entry URIs are unique per list); `None` when
/// there are none (only `bcc`).
fn history(recipients: &[Recipient]) -> Option<String> {
    let shown: Vec<&Recipient> = recipients
        .iter()
        .filter(|r| r.copy != CopyControl::Bcc)
        .collect();
    if shown.is_empty() {
        return None;
    }
    let kind = |c: CopyControl| if c == CopyControl::Cc { "cc" } else { "to" };
    let mut named = String::new();
    let mut hidden = [(CopyControl::To, 0usize), (CopyControl::Cc, 0usize)];
    for r in shown {
        if r.anonymize {
            hidden[usize::from(r.copy == CopyControl::Cc)].1 += 1;
            continue;
        }
        named.push_str(&format!(
            "    <entry uri=\"{}\" cp:copyControl=\"{}\"/>\n",
            crate::xml::attvalue::escape(&r.uri),
            kind(r.copy)
        ));
    }
    let mut more = String::new();
    for (copy, count) in hidden.into_iter().filter(|(_, n)| *n > 0) {
        let entry = format!(
            "    <entry uri=\"{ANONYMOUS}\" cp:copyControl=\"{}\" cp:count=\"{count}\"/>\n",
            kind(copy)
        );
        // The first goes with the named ones; a second anonymous URI needs a list of its own.
        if copy == CopyControl::Cc && hidden[0].1 > 0 {
            more = format!("  <list>\n{entry}  </list>\n");
        } else {
            named.push_str(&entry);
        }
    }
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"{RESOURCE_LISTS_NS}\" \
         xmlns:cp=\"{COPY_CONTROL_NS}\">\n  <list>\n{named}  </list>\n{more}"
    );
    xml.push_str("</resource-lists>");
    Some(xml)
}

/// The message a body carries (its Content-Type's media type and bytes): the message part
/// of a copy with a `recipient-list-history` part, else the body itself.
pub fn content<'a>(content_type: &'a str, body: &'a [u8]) -> (&'a str, &'a [u8]) {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let whole = (media, body);
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return whole;
    }
    let Some(parts) = boundary(content_type).and_then(|b| split(body, &b).ok()) else {
        return whole;
    };
    let is_history = |p: &Part| p.media("Content-Disposition") == HISTORY;
    if !parts.iter().any(is_history) {
        return whole;
    }
    match parts.into_iter().find(|p| !is_history(p)) {
        Some(message) => {
            let ct = message
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
                .map_or("text/plain", |(_, v)| *v);
            (ct.split(';').next().unwrap_or("").trim(), message.body)
        }
        None => whole,
    }
}

/// One MIME part: its headers and body.
struct Part<'a> {
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

impl Part<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn media(&self, name: &str) -> String {
        self.header(name)
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }
}

/// Reads a recipient-list MESSAGE's body (`content_type` is its Content-Type); at most `max`
/// recipients (after removing duplicates, RFC 5365 §4.2).
pub fn explode<'a>(
    content_type: &str,
    body: &'a [u8],
    max: usize,
) -> Result<Exploded<'a>, ListError> {
    let boundary = boundary(content_type).ok_or(ListError::NotMultipart)?;
    let parts = split(body, &boundary)?;
    let is_list = |p: &Part| {
        p.media("Content-Disposition") == "recipient-list"
            && p.media("Content-Type") == "application/resource-lists+xml"
    };
    let list = parts.iter().find(|p| is_list(p)).ok_or(ListError::NoList)?;
    let message = parts
        .iter()
        .find(|p| !is_list(p))
        .ok_or(ListError::NoMessage)?;
    let recipients = recipients(list.body, max)?;
    Ok(Exploded {
        recipients,
        content_type: message
            .header("Content-Type")
            .unwrap_or("text/plain")
            .to_string(),
        content: message.body,
        part_headers: message.headers.clone(),
    })
}

/// The `boundary` parameter of a multipart/mixed Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// The parts between `--boundary` lines (RFC 2046 §5.1.1): preamble and epilogue ignored; the
/// CRLF before each delimiter belongs to it, not to the part.
fn split<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, ListError> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        let at_line_start = i == 0 || body[i - 1] == b'\n';
        if at_line_start && &body[i..i + d.len()] == d {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for pair in starts.windows(2) {
        let (start, next) = (pair[0] + d.len(), pair[1]);
        if body[start..].starts_with(b"--") {
            return Err(ListError::BadMultipart); // a close delimiter before the last
        }
        let line_end = body[start..next]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(ListError::BadMultipart)?;
        let mut end = next;
        if end > 0 && body[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let part = &body[(start + line_end + 1).min(end)..end];
        parts.push(parse_part(part)?);
    }
    let closed = starts
        .last()
        .is_some_and(|&last| body[last + d.len()..].starts_with(b"--"));
    if parts.is_empty() || !closed {
        return Err(ListError::BadMultipart);
    }
    Ok(parts)
}

fn parse_part(part: &[u8]) -> Result<Part<'_>, ListError> {
    // Headers up to the first empty line (a part may have none: then it starts with one).
    let (head, body) = if part.starts_with(b"\r\n") {
        (&part[..0], &part[2..])
    } else if part.starts_with(b"\n") {
        (&part[..0], &part[1..])
    } else {
        let end = part
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, p + 4))
            .or_else(|| {
                part.windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|p| (p, p + 2))
            })
            .ok_or(ListError::BadMultipart)?;
        (&part[..end.0], &part[end.1..])
    };
    let head = std::str::from_utf8(head).map_err(|_| ListError::BadMultipart)?;
    let mut headers = Vec::new();
    for line in head.lines().filter(|l| !l.trim().is_empty()) {
        let (n, v) = line.split_once(':').ok_or(ListError::BadMultipart)?;
        headers.push((n.trim(), v.trim()));
    }
    Ok(Part { headers, body })
}

/// The entries of a resource-lists document (nested lists included), duplicates removed.
fn recipients(xml: &[u8], max: usize) -> Result<Vec<Recipient>, ListError> {
    let text = std::str::from_utf8(xml).map_err(|_| ListError::BadList)?;
    let doc = roxmltree::Document::parse(text).map_err(|_| ListError::BadList)?;
    let root = doc.root_element();
    if root.tag_name().name() != "resource-lists"
        || root.tag_name().namespace() != Some(RESOURCE_LISTS_NS)
    {
        return Err(ListError::BadList);
    }
    let mut out: Vec<Recipient> = Vec::new();
    for entry in root.descendants().filter(|n| {
        n.tag_name().name() == "entry" && n.tag_name().namespace() == Some(RESOURCE_LISTS_NS)
    }) {
        let uri = entry.attribute("uri").ok_or(ListError::BadList)?.trim();
        if uri.is_empty() {
            return Err(ListError::BadList);
        }
        let copy = match entry.attribute((COPY_CONTROL_NS, "copyControl")) {
            None | Some("to") => CopyControl::To,
            Some("cc") => CopyControl::Cc,
            Some("bcc") => CopyControl::Bcc,
            Some(_) => return Err(ListError::BadList),
        };
        let anonymize = matches!(
            entry.attribute((COPY_CONTROL_NS, "anonymize")),
            Some("true" | "1")
        );
        if out.iter().any(|r| r.uri.eq_ignore_ascii_case(uri)) {
            continue;
        }
        if out.len() == max {
            return Err(ListError::TooMany(max));
        }
        out.push(Recipient {
            uri: uri.to_string(),
            copy,
            anonymize,
        });
    }
    if out.is_empty() {
        return Err(ListError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CT: &str = "multipart/mixed;boundary=\"boundary1\"";

    fn body(list: &str, message: &str) -> String {
        format!(
            "preamble\r\n--boundary1\r\nContent-Type: text/plain\r\n\r\n{message}\r\n--boundary1\r\nContent-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\n\r\n{list}\r\n--boundary1--\r\n"
        )
    }

    const LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:cp="urn:ietf:params:xml:ns:copycontrol">
  <list>
    <entry uri="sip:bill@example.com" cp:copyControl="to"/>
    <entry uri="sip:randy@example.net" cp:copyControl="cc" cp:anonymize="true"/>
    <list><entry uri="sip:eddy@example.com" cp:copyControl="bcc"/></list>
    <entry uri="sip:bill@example.com"/>
  </list>
</resource-lists>"#;

    /// IM-08a…c (RFC 5365 §4.2, RFC 5364 §4): recipients with their copy control, nested
    /// lists, duplicates once; the message part's bytes exactly.
    #[test]
    fn recipients_and_message_im08() {
        let b = body(LIST, "Hello world\r\nsecond line");
        let e = explode(CT, b.as_bytes(), 10).unwrap();
        let uris: Vec<_> = e.recipients.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "sip:bill@example.com",
                "sip:randy@example.net",
                "sip:eddy@example.com"
            ]
        );
        assert_eq!(e.recipients[1].copy, CopyControl::Cc);
        assert!(e.recipients[1].anonymize);
        assert_eq!(e.recipients[2].copy, CopyControl::Bcc);
        assert_eq!(e.content, b"Hello world\r\nsecond line");
        assert_eq!(e.content_type, "text/plain");
    }

    /// IM-08: bad bodies are refused with the reason; a list over the limit is too many.
    #[test]
    fn bad_bodies_im08() {
        let cases: Vec<(String, String, ListError)> = vec![
            (
                "text/plain".into(),
                body(LIST, "x"),
                ListError::NotMultipart,
            ),
            (
                CT.into(),
                "no delimiters at all".into(),
                ListError::BadMultipart,
            ),
            (
                CT.into(),
                body(LIST, "x").replace("--boundary1--", "--boundary1"),
                ListError::BadMultipart,
            ),
            (
                CT.into(),
                body(LIST, "x").replace("recipient-list", "inline"),
                ListError::NoList,
            ),
            (CT.into(), body("<not-a-list/>", "x"), ListError::BadList),
            (
                CT.into(),
                body(
                    r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list/></resource-lists>"#,
                    "x",
                ),
                ListError::Empty,
            ),
            (CT.into(), body(LIST, "x"), ListError::TooMany(2)),
        ];
        for (ct, b, want) in cases {
            let max = if want == ListError::TooMany(2) { 2 } else { 10 };
            assert_eq!(
                explode(&ct, b.as_bytes(), max).err(),
                Some(want.clone()),
                "{want}"
            );
        }
    }

    /// The history part of a copy, parsed: (list index, uri, copyControl, count).
    fn history_of(content_type: &str, body: &[u8]) -> Vec<(usize, String, String, String)> {
        let b = boundary(content_type).unwrap();
        let parts = split(body, &b).unwrap();
        let h = parts
            .iter()
            .find(|p| p.media("Content-Disposition") == HISTORY)
            .unwrap();
        assert_eq!(
            h.header("Content-Disposition"),
            Some("recipient-list-history; handling=optional")
        );
        assert_eq!(h.media("Content-Type"), "application/resource-lists+xml");
        let text = std::str::from_utf8(h.body).unwrap();
        let doc = roxmltree::Document::parse(text).unwrap();
        let mut out = Vec::new();
        for (i, list) in doc
            .root_element()
            .children()
            .filter(|n| n.is_element())
            .enumerate()
        {
            for e in list.children().filter(|n| n.is_element()) {
                let a = |name| {
                    e.attribute((COPY_CONTROL_NS, name))
                        .unwrap_or("")
                        .to_string()
                };
                out.push((
                    i,
                    e.attribute("uri").unwrap().to_string(),
                    a("copyControl"),
                    a("count"),
                ));
            }
        }
        out
    }

    /// IM-08d (RFC 5365 §4, RFC 5364 §4): every copy carries the message part as received
    /// and a history of the to and cc recipients: bcc left out, anonymized ones counted
    /// under the anonymous URI.
    #[test]
    fn copies_carry_the_to_and_cc_history_im08d() {
        let b = body(LIST, "Hello world");
        let e = explode(CT, b.as_bytes(), 10).unwrap();
        let (ct, copy) = e.copy("xcapd-b1");
        assert_eq!(ct, "multipart/mixed;boundary=\"xcapd-b1\"");
        assert_eq!(content(&ct, &copy), ("text/plain", &b"Hello world"[..]));
        let s = |x: &str| x.to_string();
        assert_eq!(
            history_of(&ct, &copy),
            [
                (0, s("sip:bill@example.com"), s("to"), s("")),
                (0, s(ANONYMOUS), s("cc"), s("1")),
            ]
        );
        // Anonymized to and cc: one anonymous entry each, in lists of their own.
        let list = LIST.replace(
            r#"cp:copyControl="to""#,
            r#"cp:copyControl="to" cp:anonymize="true""#,
        );
        let b = body(&list, "x");
        let e = explode(CT, b.as_bytes(), 10).unwrap();
        let (ct, copy) = e.copy("xcapd-b2");
        assert_eq!(
            history_of(&ct, &copy),
            [
                (0, s(ANONYMOUS), s("to"), s("1")),
                (1, s(ANONYMOUS), s("cc"), s("1"))
            ]
        );
        // Only bcc recipients: the message part alone.
        let bcc = LIST
            .replace(r#""to""#, r#""bcc""#)
            .replace(r#""cc""#, r#""bcc""#);
        let b = body(&bcc, "quiet");
        let e = explode(CT, b.as_bytes(), 10).unwrap();
        assert_eq!(e.copy("xcapd-b3"), (s("text/plain"), b"quiet".to_vec()));
        // A body that is no copy is its own content.
        assert_eq!(
            content("text/plain;charset=utf-8", b"hi"),
            ("text/plain", &b"hi"[..])
        );
        assert_eq!(
            content(CT, b"--boundary1--"),
            ("multipart/mixed", &b"--boundary1--"[..])
        );
    }

    proptest! {
        /// Never a panic, whatever the body (bad input answered, never a crash).
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = explode(CT, &bytes, 10);
        }

        /// Any message bytes without a delimiter line come back exactly, from the request
        /// and from each copy.
        #[test]
        fn message_bytes_are_exact(text in "[ -~\r\n]{0,200}") {
            prop_assume!(!text.contains("--boundary1") && !text.contains("--xcapd-b"));
            let b = body(LIST, &text);
            let e = explode(CT, b.as_bytes(), 10).unwrap();
            prop_assert_eq!(e.content, text.as_bytes());
            let (ct, copy) = e.copy("xcapd-b");
            prop_assert_eq!(content(&ct, &copy).1, text.as_bytes());
        }
    }
}
