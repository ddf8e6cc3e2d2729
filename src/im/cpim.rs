//! CPIM messages (RFC 3862) read for the IM Server, and the IMDN headers they carry (RFC 5438
//! §6; standards.md IM-02, IM-18, IM-20): the message headers with their namespaces (`NS:
//! prefix <uri>`, any prefix bound to `urn:ietf:params:imdn` counts), the encapsulated MIME
//! headers and where the content starts. Read-only: bodies are relayed as received, never
//! re-encoded (IM-01). Pure; no I/O.

use thiserror::Error;

/// RFC 3862 §3.3: the namespace of headers without a prefix.
pub const CPIM_NS: &str = "urn:ietf:params:cpim-headers:";
/// RFC 5438 §10: the IMDN header namespace.
pub const IMDN_NS: &str = "urn:ietf:params:imdn";
/// RFC 5438 §7: the notification document's media type.
pub const IMDN_XML: &str = "message/imdn+xml";

/// Why a `message/cpim` body cannot be read (answered 400 with this text).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CpimError {
    #[error("the CPIM headers are not UTF-8")]
    NotUtf8,
    #[error("no empty line after the CPIM headers")]
    Unterminated,
    #[error("a CPIM header line without a colon")]
    NoColon,
    #[error("a malformed CPIM header name")]
    BadName,
    #[error("a malformed NS header")]
    BadNamespace,
    #[error("an undeclared CPIM header prefix")]
    UndeclaredPrefix,
    #[error("no encapsulated Content-Type")]
    NoContentType,
}

/// One message header: its namespace URI, local name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimHeader<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub value: &'a str,
}

/// A parsed CPIM message borrowing the body it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpim<'a> {
    pub headers: Vec<CpimHeader<'a>>,
    /// The encapsulated MIME object's headers (`Content-Type`, `Content-Disposition`, ...).
    pub content_headers: Vec<(&'a str, &'a str)>,
    /// The encapsulated content, as received.
    pub content: &'a [u8],
}

/// The dispositions a sender may ask for (RFC 5438 §6.3, IM-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requested {
    pub positive_delivery: bool,
    pub negative_delivery: bool,
    pub processing: bool,
    pub display: bool,
}

impl Requested {
    pub fn any(self) -> bool {
        self.positive_delivery || self.negative_delivery || self.processing || self.display
    }
}

impl<'a> Cpim<'a> {
    /// Reads `body` (the whole `message/cpim` body).
    pub fn parse(body: &'a [u8]) -> Result<Cpim<'a>, CpimError> {
        let (message, rest) = split_block(body)?;
        let (content_part, content) = split_block(rest)?;
        let mut namespaces: Vec<(&str, &str)> = Vec::new();
        let mut headers = Vec::new();
        for (name, value) in lines(message)? {
            if name == "NS" {
                let (prefix, uri) = parse_ns(value).ok_or(CpimError::BadNamespace)?;
                namespaces.retain(|(p, _)| *p != prefix);
                namespaces.push((prefix, uri));
                continue;
            }
            let (namespace, local) = match name.split_once('.') {
                Some((prefix, local)) => {
                    let uri = namespaces
                        .iter()
                        .rev()
                        .find(|(p, _)| *p == prefix)
                        .map(|(_, u)| *u)
                        .ok_or(CpimError::UndeclaredPrefix)?;
                    (uri, local)
                }
                None => (CPIM_NS, name),
            };
            if local.is_empty() {
                return Err(CpimError::BadName);
            }
            headers.push(CpimHeader {
                namespace,
                name: local,
                value,
            });
        }
        let content_headers = lines(content_part)?;
        let cpim = Cpim {
            headers,
            content_headers,
            content,
        };
        if cpim.content_header("Content-Type").is_none() {
            return Err(CpimError::NoContentType);
        }
        Ok(cpim)
    }

    /// The first value of header `name` in `namespace` (names compared without case, as
    /// clients differ).
    pub fn header(&self, namespace: &str, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.namespace == namespace && h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    pub fn content_header(&self, name: &str) -> Option<&'a str> {
        self.content_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// `imdn.Message-ID` (IM-18).
    pub fn message_id(&self) -> Option<&'a str> {
        self.header(IMDN_NS, "Message-ID")
    }

    /// `DateTime` (RFC 3862 §3.3.8; RFC 5438 §6.3 requires it with an IMDN request).
    pub fn datetime(&self) -> Option<&'a str> {
        self.header(CPIM_NS, "DateTime")
    }

    /// The CPIM To and From URIs (without display name and brackets).
    pub fn to(&self) -> Option<&'a str> {
        self.header(CPIM_NS, "To").map(angle_uri)
    }

    pub fn from(&self) -> Option<&'a str> {
        self.header(CPIM_NS, "From").map(angle_uri)
    }

    /// What `imdn.Disposition-Notification` asks for; unknown values are ignored (§6.3).
    pub fn requested(&self) -> Requested {
        let mut r = Requested::default();
        for h in &self.headers {
            if h.namespace != IMDN_NS || !h.name.eq_ignore_ascii_case("Disposition-Notification") {
                continue;
            }
            for token in h.value.split(',').map(str::trim) {
                match token.to_ascii_lowercase().as_str() {
                    "positive-delivery" => r.positive_delivery = true,
                    "negative-delivery" => r.negative_delivery = true,
                    "processing" => r.processing = true,
                    "display" => r.display = true,
                    _ => {}
                }
            }
        }
        r
    }

    /// A delivery notification itself (RFC 5438 §7.1.1: `message/imdn+xml` with
    /// `Content-Disposition: notification`): never answered with another one (IM-20).
    pub fn is_notification(&self) -> bool {
        let media = |v: &str| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(IMDN_XML)
        };
        let disposition = |v: &str| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("notification")
        };
        self.content_header("Content-Type").is_some_and(media)
            || self
                .content_header("Content-Disposition")
                .is_some_and(disposition)
    }
}

/// The header block up to the first empty line, and what follows it. Lines end in CRLF (a
/// bare LF is tolerated, as some clients send it).
fn split_block(bytes: &[u8]) -> Result<(&str, &[u8]), CpimError> {
    let mut start = 0;
    loop {
        let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') else {
            return Err(CpimError::Unterminated);
        };
        let end = start + nl;
        let line = &bytes[start..end];
        if line.is_empty() || line == b"\r" {
            let block = std::str::from_utf8(&bytes[..start]).map_err(|_| CpimError::NotUtf8)?;
            return Ok((block, &bytes[end + 1..]));
        }
        start = end + 1;
    }
}

/// `Name: value` lines of a header block.
fn lines(block: &str) -> Result<Vec<(&str, &str)>, CpimError> {
    let mut out = Vec::new();
    for line in block.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(CpimError::NoColon)?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(CpimError::BadName);
        }
        out.push((name, value.trim()));
    }
    Ok(out)
}

/// `NS: [prefix] <uri>` (RFC 3862 §3.3.9; a missing prefix redeclares the default).
fn parse_ns(value: &str) -> Option<(&str, &str)> {
    let open = value.find('<')?;
    let uri = value[open + 1..].strip_suffix('>')?;
    let prefix = value[..open].trim();
    if uri.is_empty() || uri.contains(['<', '>']) || prefix.contains(char::is_whitespace) {
        return None;
    }
    Some((prefix, uri))
}

/// The URI inside `"Name" <uri>`, or the value as it is.
fn angle_uri(value: &str) -> &str {
    match (value.find('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IM: &str = "From: Alice <sip:alice@example.com>\r\nTo: <sip:bob@example.com>\r\nNS: x <urn:ietf:params:imdn>\r\nx.Message-ID: 34jk324j\r\nDateTime: 2026-12-07T10:00:00Z\r\nx.Disposition-Notification: positive-delivery, Processing, bogus\r\n\r\nContent-Type: text/plain\r\n\r\nhello\r\n";

    /// IM-18: any prefix bound to the IMDN namespace; unknown dispositions ignored.
    #[test]
    fn imdn_headers_under_any_prefix_im18() {
        let c = Cpim::parse(IM.as_bytes()).unwrap();
        assert_eq!(c.message_id(), Some("34jk324j"));
        assert_eq!(c.from(), Some("sip:alice@example.com"));
        assert_eq!(c.to(), Some("sip:bob@example.com"));
        assert_eq!(c.datetime(), Some("2026-12-07T10:00:00Z"));
        let r = c.requested();
        assert!(r.positive_delivery && r.processing && !r.negative_delivery && !r.display);
        assert_eq!(c.content, b"hello\r\n");
        assert!(!c.is_notification());
    }

    /// IM-20: a notification is recognised by its media type or disposition.
    #[test]
    fn notifications_recognised_im20() {
        let n = "From: <sip:bob@example.com>\nTo: <sip:alice@example.com>\n\nContent-type: message/imdn+xml\nContent-Disposition: notification\n\n<imdn/>";
        assert!(Cpim::parse(n.as_bytes()).unwrap().is_notification());
    }

    /// IM-02: malformed bodies are refused with a reason, never guessed at.
    #[test]
    fn malformed_bodies_im02() {
        let cases: &[(&str, CpimError)] = &[
            ("From: <sip:a@b>\r\n", CpimError::Unterminated),
            (
                "Subject hello\r\n\r\nContent-Type: text/plain\r\n\r\nx",
                CpimError::NoColon,
            ),
            (
                "From <sip:a@b>\r\n\r\nContent-Type: text/plain\r\n\r\nx",
                CpimError::BadName,
            ),
            (
                "y.Message-ID: 1\r\n\r\nContent-Type: text/plain\r\n\r\nx",
                CpimError::UndeclaredPrefix,
            ),
            (
                "NS: imdn urn:ietf:params:imdn\r\n\r\nContent-Type: text/plain\r\n\r\nx",
                CpimError::BadNamespace,
            ),
            (
                "From: <sip:a@b>\r\n\r\nSubject: x\r\n\r\nx",
                CpimError::NoContentType,
            ),
            (
                "From: <sip:a@b>\r\n\r\nContent-Type: text/plain\r\n",
                CpimError::Unterminated,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                Cpim::parse(body.as_bytes()).as_ref().err(),
                Some(want),
                "{body}"
            );
        }
        assert_eq!(Cpim::parse(b"From: \xff\r\n\r\n"), Err(CpimError::NotUtf8));
    }

    proptest! {
        /// Never a panic on arbitrary input (IM-02: bad input answered, never a crash).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Cpim::parse(&bytes);
        }

        /// Any prefix, header case and content round-trip: the content is the exact bytes
        /// after the second empty line (IM-01, IM-18).
        #[test]
        fn content_and_ids_are_exact(
            prefix in "[a-z][a-z0-9]{0,6}",
            id in "[A-Za-z0-9]{1,20}",
            content in proptest::collection::vec(any::<u8>(), 0..200),
            upper in any::<bool>(),
        ) {
            let name = if upper { "MESSAGE-ID" } else { "Message-ID" };
            let mut body = format!(
                "NS: {prefix} <urn:ietf:params:imdn>\r\n{prefix}.{name}: {id}\r\n\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).into_bytes();
            body.extend_from_slice(&content);
            let c = Cpim::parse(&body).unwrap();
            prop_assert_eq!(c.message_id(), Some(id.as_str()));
            prop_assert_eq!(c.content, &content[..]);
        }
    }
}
