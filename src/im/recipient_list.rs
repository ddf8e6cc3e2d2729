//! One-to-many pager messages (RFC 5365, RFC 5364, RFC 2046 §5.1; standards.md IM-08): the
//! multipart body of a MESSAGE with `Require: recipient-list-message` read into the
//! recipients (a `resource-lists` part with `Content-Disposition: recipient-list`, entries
//! with `copyControl` to/cc/bcc and `anonymize`) and the message itself (the other part, its
//! Content-Type and bytes as received). Bad bodies are refused with a reason. Pure.

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

    proptest! {
        /// Never a panic, whatever the body (bad input answered, never a crash).
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = explode(CT, &bytes, 10);
        }

        /// Any message bytes without a delimiter line come back exactly.
        #[test]
        fn message_bytes_are_exact(content in "[ -~\r\n]{0,200}") {
            prop_assume!(!content.contains("--boundary1"));
            let b = body(LIST, &content);
            let e = explode(CT, b.as_bytes(), 10).unwrap();
            prop_assert_eq!(e.content, content.as_bytes());
        }
    }
}
