//! SIP message syntax (RFC 3261 §7, §18.3, §20, §25): parsing and printing of requests and
//! responses. Pure (layer L0): bytes in, a [`Message`] out, never a panic. Header names are
//! case-insensitive and compact forms are expanded (§7.3.3, RFC 6665 §8.2 `o`/`u`); folded
//! header lines are joined (§7.3.1); a datagram's body is cut to its Content-Length (§18.3);
//! stream transports find message boundaries with [`frame`].

use std::fmt;

use thiserror::Error;

/// Bounds every parse (a datagram or a framed stream message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message, headers and body.
    pub max_message_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_headers: 128,
        }
    }
}

/// Why bytes are not a SIP message. All of them are answered 400 when the request can still be
/// answered (its Via, From, To, Call-ID and CSeq parse), else the message is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("malformed start line")]
    StartLine,
    #[error("unsupported SIP version")]
    Version,
    #[error("malformed header line")]
    HeaderLine,
    #[error("too many headers")]
    TooManyHeaders,
    #[error("message too large")]
    TooLarge,
    #[error("malformed or inconsistent Content-Length")]
    ContentLength,
    #[error("message not complete")]
    Incomplete,
}

/// SIP methods (RFC 3261 §7.1 and the extensions we meet).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Options,
    Bye,
    Cancel,
    Register,
    Subscribe,
    Notify,
    Message,
    Publish,
    Info,
    Refer,
    Update,
    Prack,
    /// Any other token, kept as received (methods are case-sensitive, §7.1).
    Other(String),
}

impl Method {
    pub fn parse(token: &str) -> Option<Method> {
        if token.is_empty() || !token.bytes().all(is_token_char) {
            return None;
        }
        Some(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "OPTIONS" => Method::Options,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            other => Method::Other(other.to_string()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Options => "OPTIONS",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: String },
    Response { code: u16, reason: String },
}

/// Header fields in received order; names in canonical spelling, values trimmed and unfolded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The first value of `name` (any case, compact form or not).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = canonical_name(name);
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header line named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical_name(name);
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }

    /// Every comma-separated value of `name` over all its lines (§7.3.1), commas inside quotes
    /// or angle brackets kept.
    pub fn values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.get_all(name).flat_map(split_list).collect()
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((canonical_name(name), value.into()));
    }

    /// Replaces every `name` line with one.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.push(name, value);
    }

    pub fn remove(&mut self, name: &str) {
        let name = canonical_name(name);
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Message {
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The wire form; Content-Length always matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes());
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
            }
        }
        for (name, value) in self.headers.iter() {
            if name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// The canonical spelling of a header name: compact forms expanded (RFC 3261 §7.3.3, RFC 6665
/// §8.2), well-known names capitalized as the RFCs write them, others as given.
pub fn canonical_name(name: &str) -> String {
    const COMPACT: [(&str, &str); 14] = [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("x", "Session-Expires"),
    ];
    const KNOWN: [&str; 24] = [
        "Accept",
        "Allow",
        "Authorization",
        "Call-ID",
        "Contact",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Event",
        "Expires",
        "From",
        "Max-Forwards",
        "Min-Expires",
        "P-Asserted-Identity",
        "Proxy-Authorization",
        "Record-Route",
        "Route",
        "Server",
        "Subscription-State",
        "To",
        "Unsupported",
        "Via",
        "WWW-Authenticate",
        "Allow-Events",
    ];
    if name.len() == 1 {
        if let Some((_, full)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) {
            return (*full).to_string();
        }
    }
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |k| (*k).to_string())
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Splits a header value at top-level commas (not inside `"…"` or `<…>`), trimming each part.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|v| !v.is_empty());
    out
}

/// Where the header block ends: the index just past the empty line.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Stream framing (RFC 3261 §18.3): the length of the first complete message in `buf`, `None`
/// when more bytes are needed. Leading CRLFs (keep-alives, §7.5) are part of what is consumed
/// and count against the size limit. A stream message must carry Content-Length; the header
/// block is read as [`parse`] reads it (folded lines joined, every Content-Length equal), so
/// the framer and the parser never disagree about where a message ends.
pub fn frame(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    let skipped = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let rest = &buf[skipped..];
    let Some(head_len) = header_end(rest) else {
        if buf.len() > limits.max_message_bytes {
            return Err(ParseError::TooLarge);
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&rest[..head_len]).map_err(|_| ParseError::HeaderLine)?;
    let mut length: Option<usize> = None;
    for line in head.split('\n').skip(1) {
        if line.starts_with([' ', '\t']) {
            continue; // a folded continuation belongs to the header before it
        }
        if let Some((name, value)) = line.split_once(':') {
            if canonical_name(name.trim()) == "Content-Length" {
                let n = parse_length(value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::ContentLength);
                }
                length = Some(n);
            }
        }
    }
    let length = length.ok_or(ParseError::ContentLength)?;
    let total = skipped
        .checked_add(head_len)
        .and_then(|t| t.checked_add(length))
        .ok_or(ParseError::ContentLength)?;
    if total > limits.max_message_bytes {
        return Err(ParseError::TooLarge);
    }
    Ok((buf.len() >= total).then_some(total))
}

fn parse_length(value: &str) -> Result<usize, ParseError> {
    let v = value.trim();
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::ContentLength);
    }
    v.parse().map_err(|_| ParseError::ContentLength)
}

/// Parses one message: a datagram, or a stream message cut out with [`frame`]. Leading CRLFs
/// are skipped. Without Content-Length the body is the rest (datagrams, §18.3); a
/// Content-Length beyond the data is an error; bytes past it are dropped.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Message, ParseError> {
    if buf.len() > limits.max_message_bytes {
        return Err(ParseError::TooLarge);
    }
    let skipped = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let buf = &buf[skipped..];
    if buf.is_empty() {
        return Err(ParseError::Empty);
    }
    let head_len = header_end(buf).ok_or(ParseError::Incomplete)?;
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| ParseError::HeaderLine)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = parse_start_line(lines.next().ok_or(ParseError::StartLine)?)?;
    let mut headers = Headers::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous header (§7.3.1).
            let last = headers.0.last_mut().ok_or(ParseError::HeaderLine)?;
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::HeaderLine)?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ParseError::HeaderLine);
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        headers.push(name, value.trim());
    }
    let available = &buf[head_len..];
    let body = match headers.get("Content-Length") {
        None => available.to_vec(),
        Some(v) => {
            let n = parse_length(v)?;
            if n > available.len() {
                return Err(ParseError::ContentLength);
            }
            available[..n].to_vec()
        }
    };
    // Every Content-Length line must agree (a smuggling guard on streams).
    let lengths: Vec<&str> = headers.get_all("Content-Length").collect();
    if lengths.windows(2).any(|w| w[0].trim() != w[1].trim()) {
        return Err(ParseError::ContentLength);
    }
    Ok(Message {
        start,
        headers,
        body,
    })
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or(ParseError::StartLine)?;
        if version != "2.0" {
            return Err(ParseError::Version);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::StartLine);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::StartLine)?;
        if !(100..700).contains(&code) {
            return Err(ParseError::StartLine);
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine);
    };
    let method = Method::parse(method).ok_or(ParseError::StartLine)?;
    if uri.is_empty() || !uri.contains(':') || uri.bytes().any(|b| b.is_ascii_control()) {
        return Err(ParseError::StartLine);
    }
    if version != "SIP/2.0" {
        return Err(ParseError::Version);
    }
    Ok(StartLine::Request {
        method,
        uri: uri.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPTIONS: &str = "OPTIONS sip:xcapd@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
        Max-Forwards: 70\r\n\
        To: <sip:xcapd@127.0.0.1>\r\n\
        From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 63104 OPTIONS\r\n\
        Accept: application/sdp\r\n\
        Content-Length: 0\r\n\r\n";

    // RFC 3261 §7.1, §7.3: start line and headers of a request.
    #[test]
    fn parses_a_request() {
        let m = parse(OPTIONS.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(
            m.start,
            StartLine::Request {
                method: Method::Options,
                uri: "sip:xcapd@127.0.0.1".into()
            }
        );
        assert_eq!(
            m.headers.get("call-id"),
            Some("a84b4c76e66710@pc33.example.com")
        );
        assert_eq!(m.headers.get("CSEQ"), Some("63104 OPTIONS"));
        assert!(m.body.is_empty());
    }

    // RFC 3261 §7.3.3 compact forms, §7.3.1 folding and comma lists.
    #[test]
    fn compact_forms_folding_and_lists() {
        let text = "SUBSCRIBE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1,\r\n SIP/2.0/TCP h2;branch=z9hG4bK2\r\ni: x@y\r\nf: <sip:a@b>;tag=1\r\nt: <sip:a@b>\r\no: xcap-diff;\r\n\tdiff-processing=aggregate\r\nm: <sip:a@h:5060>, \"x,y\" <sip:b@h>\r\nl: 4\r\n\r\nbody";
        let m = parse(text.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(
            m.headers.get("Event"),
            Some("xcap-diff; diff-processing=aggregate")
        );
        assert_eq!(
            m.headers.values("Via"),
            vec![
                "SIP/2.0/UDP h1;branch=z9hG4bK1",
                "SIP/2.0/TCP h2;branch=z9hG4bK2"
            ]
        );
        assert_eq!(
            m.headers.values("Contact"),
            vec!["<sip:a@h:5060>", "\"x,y\" <sip:b@h>"]
        );
        assert_eq!(m.body, b"body");
    }

    // RFC 3261 §18.3: Content-Length bounds the body; more than the datagram holds is an error.
    #[test]
    fn content_length_rules() {
        let base = "NOTIFY sip:a@b SIP/2.0\r\nCall-ID: x\r\n";
        let lim = Limits::default();
        let cut = parse(
            format!("{base}Content-Length: 2\r\n\r\nabcd").as_bytes(),
            &lim,
        )
        .unwrap();
        assert_eq!(cut.body, b"ab");
        for bad in [
            "Content-Length: 9\r\n\r\nabc",
            "Content-Length: -1\r\n\r\n",
            "Content-Length: x\r\n\r\n",
            "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            assert_eq!(
                parse(format!("{base}{bad}").as_bytes(), &lim),
                Err(ParseError::ContentLength),
                "{bad}"
            );
        }
    }

    #[test]
    fn responses_and_bad_start_lines() {
        let m = parse(
            b"SIP/2.0 489 Bad Event\r\nCall-ID: x\r\n\r\n",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(m.status(), Some(489));
        for bad in [
            "SIP/2.0 99 x\r\n\r\n",
            "SIP/3.0 200 OK\r\n\r\n",
            "OPTIONS sip:a@b SIP/3.0\r\n\r\n",
            "OPTIONS  sip:a@b SIP/2.0\r\n\r\n",
            "OPT(IONS sip:a@b SIP/2.0\r\n\r\n",
            "OPTIONS nocolon SIP/2.0\r\n\r\n",
            "just text\r\n\r\n",
        ] {
            assert!(
                parse(bad.as_bytes(), &Limits::default()).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(b"\r\n\r\n", &Limits::default()),
            Err(ParseError::Empty)
        );
    }

    // RFC 3261 §18.3: stream framing by Content-Length, keep-alive CRLFs consumed.
    #[test]
    fn framing() {
        let lim = Limits::default();
        let one = OPTIONS.as_bytes();
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(one);
        two.extend_from_slice(one);
        assert_eq!(frame(&two, &lim), Ok(Some(4 + one.len())));
        assert_eq!(frame(&one[..one.len() - 3], &lim), Ok(None));
        let no_length = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n";
        assert_eq!(frame(no_length, &lim), Err(ParseError::ContentLength));
        let huge = Limits {
            max_message_bytes: 100,
            ..lim
        };
        assert_eq!(frame(&[b'a'; 200], &huge), Err(ParseError::TooLarge));
    }

    // The framer reads Content-Length as the parser does: a folded line is no header, and
    // two different lengths are an error, never a second message.
    #[test]
    fn framing_agrees_with_parsing() {
        let lim = Limits::default();
        let two = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 60\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(frame(two, &lim), Err(ParseError::ContentLength));
        let folded =
            b"OPTIONS sip:a@b SIP/2.0\r\nX-A: 1\r\n Content-Length: 9\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(frame(folded, &lim), Ok(Some(folded.len())));
        let flood = vec![b'\n'; 70_000];
        assert_eq!(frame(&flood, &lim), Err(ParseError::TooLarge));
    }

    #[test]
    fn printing_round_trips() {
        let m = parse(OPTIONS.as_bytes(), &Limits::default()).unwrap();
        let again = parse(&m.to_bytes(), &Limits::default()).unwrap();
        assert_eq!(again, m);
    }

    proptest! {
        // Any bytes: an error or a message, never a panic; a parsed message prints and parses
        // back to itself.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let lim = Limits::default();
            let _ = frame(&bytes, &lim);
            if let Ok(m) = parse(&bytes, &lim) {
                let again = parse(&m.to_bytes(), &lim);
                prop_assert!(again.is_ok());
            }
        }

        #[test]
        fn requests_round_trip(
            method in "[A-Z]{3,9}",
            user in "[a-z0-9]{1,8}",
            value in "[ -~&&[^,\"<>]]{0,20}",
            body in "[a-z]{0,30}",
        ) {
            let text = format!("{method} sip:{user}@h SIP/2.0\r\nX-Test: {}\r\nCall-ID: c\r\nContent-Length: {}\r\n\r\n{body}", value.trim(), body.len());
            let m = parse(text.as_bytes(), &Limits::default()).unwrap();
            prop_assert_eq!(m.headers.get("x-test"), Some(value.trim()));
            prop_assert_eq!(&m.body, body.as_bytes());
            prop_assert_eq!(parse(&m.to_bytes(), &Limits::default()).unwrap(), m);
        }
    }
}
